/* stackstr: C strings passed on the stack (the seventh argument on).
 *
 * Exercises: a fast probe's detour copying the string a stack argument
 * points to, as a printer shows it; a NULL one, and one that points at
 * unmapped memory (its copy faults: shown as the pointer, as a live read
 * would).
 *
 * seven(a..f, g, h) returns a + b + c + d + e + f + the lengths of g and
 * h (0 for NULL; h is not read when it is `bad`). main calls it four
 * times: with "seventh" and "eighth", with "" and NULL, with a 40-byte
 * string and "x", and with "g" and an unmapped address (h not read).
 *
 * Output (stdout), exactly: "sum=292" (the four results added up).
 * Exit status 0. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "fixture.h"

static const char *bad;

PROBED long seven(long a, long b, long c, long d, long e, long f, const char *g, const char *h)
{
    long n = a + b + c + d + e + f;
    if (g)
        n += (long)strlen(g);
    if (h && h != bad)
        n += (long)strlen(h);
    return n;
}

int main(void)
{
    /* An address with nothing mapped: a page mapped, then unmapped. */
    void *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return 1;
    munmap(page, 4096);
    bad = page;
    long sum = 0;
    sum += seven(1, 2, 3, 4, 5, 6, "seventh", "eighth");
    sum += seven(1, 1, 1, 1, 1, 1, "", NULL);
    sum += seven(10, 20, 30, 40, 50, 60, "0123456789012345678901234567890123456789", "x");
    sum += seven(0, 0, 0, 0, 0, 0, "g", bad);
    printf("sum=%ld\n", sum);
    return 0;
}
