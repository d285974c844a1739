/* retaddr: a function that looks at its own return address.
 *
 * Exercises: code that reads its return address (as Go's runtime does when
 * it copies stacks). A return probe that rewrites the return address is
 * visible to it; one watched at the return site (what rtrace does in Go
 * code) is not.
 *
 * check() returns 1 when __builtin_return_address(0) is inside this
 * executable's code, 0 otherwise.
 *
 * Usage: retaddr   (no arguments)
 * Calls check() three times. Output (stdout), untraced: "inside=3\n",
 * exit status 0. */
#include <stdint.h>
#include <stdio.h>

#include "fixture.h"

extern char __executable_start[], etext[];

PROBED int check(void)
{
    uintptr_t ra = (uintptr_t)__builtin_return_address(0);
    return ra >= (uintptr_t)__executable_start && ra < (uintptr_t)etext;
}

int main(void)
{
    int inside = 0;
    for (int i = 0; i < 3; i++)
        inside += check();
    printf("inside=%d\n", inside);
    return 0;
}
