/* thrower: C++ exceptions thrown through functions with return probes.
 *
 * Exercises: the unwinder walking frames whose return addresses a return
 * probe rewrote. The exception must be caught where it is caught untraced,
 * and the calls it unwound must produce no return event.
 *
 * inner(x) throws for x % 3 == 0 and returns 2x otherwise; middle(x)
 * returns inner(x) + 1 (an object with a destructor lives in its frame, so
 * the unwinder runs a cleanup there); outer(x) catches and returns -1, or
 * returns middle(x). rethrower(x) catches inner's exception and rethrows
 * it (`throw;`) to outer2, which catches it.
 *
 * Usage: thrower   (no arguments)
 * Output (stdout), exactly:
 *     outer=-1,3,5,-1,9,11
 *     cleanups=6
 *     rethrown=2
 * Exit status 0. */
#include <cstdio>
#include <stdexcept>

#include "fixture.h"

static int cleanups;

struct Cleanup {
    ~Cleanup() { cleanups++; }
};

PROBED int inner(int x)
{
    BARRIER();
    if (x % 3 == 0)
        throw std::runtime_error("multiple of 3");
    return 2 * x;
}

PROBED int middle(int x)
{
    Cleanup c;
    return inner(x) + 1;
}

PROBED int outer(int x)
{
    try {
        return middle(x);
    } catch (const std::exception &) {
        return -1;
    }
}

PROBED int rethrower(int x)
{
    try {
        return inner(x);
    } catch (...) {
        throw;
    }
}

PROBED int outer2(int x)
{
    try {
        return rethrower(x);
    } catch (const std::runtime_error &) {
        return 1;
    }
}

int main()
{
    std::printf("outer=");
    for (int x = 0; x < 6; x++)
        std::printf("%s%d", x ? "," : "", outer(x));
    std::printf("\ncleanups=%d\n", cleanups);
    int rethrown = outer2(3) + outer2(6) + (outer2(1) == 2 ? 0 : 100);
    std::printf("rethrown=%d\n", rethrown);
    return 0;
}
