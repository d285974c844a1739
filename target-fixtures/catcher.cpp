/* catcher: exceptions caught in the direct caller, in a loop.
 *
 * Exercises: a call unwound by an exception whose catch handler is in its
 * caller's frame. After the catch the caller's stack pointer is the one a
 * normal return would leave, and at -O2 the handler's code goes on through
 * the return site of the call that threw: only knowing that a catch handler
 * started tells the unwound call from a returning one.
 *
 * f(x) throws for even x and returns 10x otherwise; caller(n) adds f(i) for
 * i = 0..n-1, counting -1 for each exception it catches.
 *
 * Usage: catcher   (no arguments)
 * Output (stdout), exactly: "s=87\n" (caller(6): -1 + 10 - 1 + 30 - 1 + 50).
 * Exit status 0. */
#include <cstdio>
#include <stdexcept>

#include "fixture.h"

PROBED int f(int x)
{
    BARRIER();
    if (x % 2 == 0)
        throw std::runtime_error("even");
    return 10 * x;
}

PROBED int caller(int n)
{
    int s = 0;
    for (int i = 0; i < n; i++) {
        try {
            s += f(i);
        } catch (const std::exception &) {
            s -= 1;
        }
    }
    return s;
}

int main()
{
    std::printf("s=%d\n", caller(6));
    return 0;
}
