/* deep: deep recursion of one probed function.
 *
 * Exercises: a return probe on 10,000 nested calls: every return is
 * reported, innermost first, with its value, and nothing is dropped.
 *
 * Usage: deep [N]   depth(N) with depth(n) = depth(n-1) + 1, depth(0) = 0
 *                   (N defaults to 10000).
 * Output (stdout), exactly: "depth=<N>\n", exit status 0. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

PROBED long depth(int n)
{
    BARRIER();
    if (n <= 0)
        return 0;
    return depth(n - 1) + 1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    printf("depth=%ld\n", depth(n));
    return 0;
}
