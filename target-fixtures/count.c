/* count: the basic function-probe target.
 *
 * Exercises: entry and return probes on two functions, argument and return
 * value decoding, offset probes (work has several instruction boundaries),
 * the exit status passing through the tracer.
 *
 * Usage: count [N [STATUS]]   N defaults to 10, STATUS to 0.
 * Calls work(i) for i = 0..N-1 (work(x) = 2*x+1, so the sum is N*N), then
 * twice(20) = 41 once.
 *
 * Output (stdout), exactly:
 *     sum=<N*N>
 *     twice=41
 * Exit status: STATUS.   `count 5 3` prints "sum=25\ntwice=41\n", exits 3. */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

PROBED int work(int x)
{
    int doubled = x * 2;
    /* Makes `doubled` live in a register: even at -O2 the body stays three
     * instructions (lea, add, ret) rather than folding into one lea. */
    __asm__ volatile("" : "+r"(doubled));
    return doubled + 1;
}

PROBED int twice(int x)
{
    BARRIER();
    return x + x + 1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10;
    int status = argc > 2 ? atoi(argv[2]) : 0;
    long sum = 0;

    for (int i = 0; i < n; i++)
        sum += work(i);
    printf("sum=%ld\n", sum);
    printf("twice=%d\n", twice(20));
    return status;
}
