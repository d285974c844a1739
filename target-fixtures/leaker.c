/* leaker: a known pattern of heap allocations, some never freed.
 *
 * Exercises: malloc, calloc, realloc and free probed together, the call
 * site of an allocation read from the return address at entry.
 *
 * Usage: leaker
 * leak_a() allocates 3 x 100 bytes with malloc and keeps them (never freed);
 * leak_b() allocates 20 bytes with calloc and grows them to 50 with realloc
 * (never freed); tidy() allocates with malloc, calloc and realloc, and frees
 * everything. Each leaking function has a single allocation call, so it is
 * one call site.
 *
 * Output (stdout), exactly:
 *     kept 4 blocks
 * Exit status: 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static void *kept[4];

PROBED void leak_a(void)
{
    for (int i = 0; i < 3; i++) {
        kept[i] = malloc(100);
        BARRIER();
    }
}

PROBED void leak_b(void)
{
    char *p = calloc(1, 20);
    BARRIER();
    kept[3] = realloc(p, 50);
    BARRIER();
}

PROBED void tidy(void)
{
    char *a = malloc(10);
    char *b = calloc(4, 8);
    BARRIER();
    a = realloc(a, 1000);
    memset(a, 1, 1000);
    BARRIER();
    free(b);
    free(a);
}

int main(void)
{
    tidy();
    leak_a();
    leak_b();
    tidy();
    int n = 0;
    for (int i = 0; i < 4; i++)
        n += kept[i] != NULL;
    printf("kept %d blocks\n", n);
    return 0;
}
