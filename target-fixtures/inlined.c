/* inlined: one source line with code in two functions.
 *
 * Exercises: line probes (`inlined.c:LINE`) on a line of a function that is
 * inlined into two callers (one breakpoint in each), and on a `for` line
 * whose code is in three places of one function (one breakpoint, at the
 * lowest address).
 *
 * Usage: inlined [N]   N defaults to 5.
 * Calls first(i) and second(i) for i = 0..N-1; first(x) = 3x+1,
 * second(x) = 3x-1, so the sum is 6 * N(N-1)/2 = 3N(N-1).
 *
 * Output (stdout), exactly:
 *     sum=<3N(N-1)>
 * Exit status: 0.   `inlined 5` prints "sum=60\n". */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static inline __attribute__((always_inline)) int helper(int x)
{
    return x * 3; /* helper body */
}

PROBED int first(int x)
{
    return helper(x) + 1;
}

PROBED int second(int x)
{
    return helper(x) - 1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5;
    long sum = 0;

    for (int i = 0; i < n; i++) /* the loop */
        sum += first(i) + second(i);
    printf("sum=%ld\n", sum);
    return 0;
}
