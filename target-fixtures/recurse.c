/* recurse: nested calls of one probed function.
 *
 * Exercises: return probes on a recursive function: one return instance per
 * live call, returns matched to entries innermost first.
 *
 * Usage: recurse [N]   N defaults to 5, at most 20.
 * fact(n) = n * fact(n - 1), fact(0) = 1, computed with N+1 nested calls.
 * Output (stdout), exactly: "fact=<N!>\n" (default "fact=120"), exit 0. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

PROBED long fact(int n)
{
    BARRIER();
    if (n <= 0)
        return 1;
    return n * fact(n - 1);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5;
    if (n < 0 || n > 20) {
        fprintf(stderr, "usage: recurse [N]   (0 <= N <= 20)\n");
        return 64;
    }
    printf("fact=%ld\n", fact(n));
    return 0;
}
