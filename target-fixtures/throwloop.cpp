/* throwloop: C++ exceptions thrown through probed functions, in a loop.
 *
 * Exercises: rtrace killed (SIGKILL) while it traces with fast probes a
 * program that throws: rtrace's own hooks at the unwinders and at
 * `__cxa_begin_catch` must go on without it, and the calls whose return
 * addresses the fast probes swapped must still return where they should.
 *
 * Usage: throwloop STOPFILE
 * Prints "ready" once. Then, until STOPFILE exists, calls outer(i) for
 * i = 0, 1, … 999, 0, …: outer catches what middle lets through; middle
 * keeps an object whose destructor counts cleanups; inner(x) throws for
 * x % 3 == 0 and returns 2x otherwise. At the end it prints
 * "rounds=N ok" (or "bad" when a result or the count of cleanups is not
 * what the calls made give) and exits 0 (1 when bad). */
#include <cstdio>
#include <stdexcept>
#include <unistd.h>

#include "fixture.h"

static long cleanups;

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

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: throwloop STOPFILE\n");
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    long rounds = 0, sum = 0, want = 0;
    for (int i = 0; access(argv[1], F_OK) != 0; i = (i + 1) % 1000) {
        sum += outer(i);
        want += i % 3 == 0 ? -1 : 2 * i + 1;
        rounds++;
    }
    bool ok = sum == want && cleanups == rounds;
    printf("rounds=%ld %s\n", rounds, ok ? "ok" : "bad");
    return ok ? 0 : 1;
}
