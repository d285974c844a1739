/* coldsplit: a C++ function whose unlikely path GCC moves out of line.
 *
 * Exercises: at -O2, thrower's throw is moved into the fragment
 * `thrower(long) [clone .cold]` (symbol `_Z7throwerl.cold`), which is jumped
 * to from thrower, never called: a probe on `thrower` must not arm it.
 *
 * thrower(x) throws for x < 0 and returns 2x otherwise.
 *
 * Usage: coldsplit N
 * Calls thrower(i) for i = -1..N-1, catching the throw. Output (stdout),
 * exactly: "sum=S\n" where S is the sum of the results, -1 for the throw.
 * Exit status 0. */
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "fixture.h"

PROBED long thrower(long x)
{
    if (__builtin_expect(x < 0, 0))
        throw std::runtime_error("negative");
    return x * 2;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: coldsplit N\n");
        return 2;
    }
    long n = atol(argv[1]), sum = 0;
    for (long i = -1; i < n; i++) {
        try {
            sum += thrower(i);
        } catch (const std::exception &) {
            sum -= 1;
        }
    }
    printf("sum=%ld\n", sum);
    return 0;
}
