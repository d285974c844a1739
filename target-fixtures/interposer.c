/* interposer: a program whose malloc is libinterpose's, which forwards
 * to libc's through dlsym(RTLD_NEXT, "malloc") (linked against
 * libinterpose.so, which comes before libc in the search order, as an
 * LD_PRELOAD library would).
 *
 * Exercises: return probes on dlsym (-s dlsym, -s 'libc:*', --fast) must
 * leave it its return address: it finds the caller's module with it.
 *
 * Usage: interposer   (no arguments)
 * Allocates 4242 bytes three times and frees them.
 * Output (stdout), exactly: "interposed=3\n", exit status 0. When dlsym
 * fails: libinterpose's line on stderr, exit status 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned long interposed(void);

int main(void)
{
    for (int i = 0; i < 3; i++) {
        char *p = malloc(4242);
        if (p == NULL)
            return 1;
        memset(p, i, 4242);
        /* p escapes: the allocation cannot be optimised away. */
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
    printf("interposed=%lu\n", interposed());
    return 0;
}
