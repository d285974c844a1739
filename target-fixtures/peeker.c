/* peeker: string arguments a fast probe's detour must copy, good and bad.
 *
 * Exercises: the C strings behind pointer arguments captured at a fast
 * probe's entry, as a live read would see them: a short string, one of
 * exactly 64 bytes (the default limit), one of 65 (cut), NULL, a pointer to
 * unmapped memory (the capture's load faults and is fixed up: the program
 * gets no signal), and a string running into an unmapped page (read in
 * part, then the fault). peek() never reads its argument itself.
 *
 * Usage: peeker [N]   calls the sequence N times (default 1).
 * Output (stdout), exactly: "peeks=<6*N>\n". Exit status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fixture.h"

static int peeks;

PROBED int peek(const char *s, int n)
{
    (void)s;
    BARRIER();
    peeks++;
    return n;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    long page = sysconf(_SC_PAGESIZE);
    char *two = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (two == MAP_FAILED)
        return 1;
    munmap(two + page, page);
    /* "abc" with no NUL before the unmapped page. */
    char *edge = two + page - 3;
    memcpy(edge, "abc", 3);
    char exact[65], longer[66];
    memset(exact, 'x', 64);
    exact[64] = 0;
    memset(longer, 'y', 65);
    longer[65] = 0;
    for (int i = 0; i < rounds; i++) {
        peek("hello", 5);
        peek(exact, 64);
        peek(longer, 65);
        peek(NULL, 0);
        peek((const char *)16, 0);
        peek(edge, 3);
    }
    printf("peeks=%d\n", peeks);
    return 0;
}
