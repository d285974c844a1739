/* profiler: a sampling profiler's signal handler over a throwing program.
 *
 * Exercises: a signal handler that walks the stack (backtrace()) or throws
 * and catches an exception of its own, interrupting the thread anywhere,
 * often inside the unwinder of an exception the program is throwing. The
 * handler's walk, or its catch, must leave the interrupted unwinder's
 * frames as that unwinder left them: it goes on walking them when the
 * handler returns, and a return address it cannot find in any module ends
 * the program in std::terminate.
 *
 * outer(x) calls middle(x), which keeps an object whose destructor counts
 * cleanups and returns inner(x) + 1; inner(x) throws for x % 3 == 0 and
 * returns 2x otherwise; outer catches and returns -1 for those. SIGPROF
 * (ITIMER_PROF, every 200 µs of CPU time) runs the handler.
 *
 * Usage: profiler backtrace|throw N
 * Calls outer(i % 1000) for i = 0..N-1 with the timer running; the handler
 * calls backtrace() (backtrace) or throws and catches an int (throw).
 * Output (stdout), exactly: "calls=N ok\n" ("bad" when a result, the count
 * of cleanups or a handler's catch is wrong: exit status 1). The number of
 * samples taken varies: it is not printed. Usage errors: exit status 2. */
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <execinfo.h>
#include <stdexcept>
#include <sys/time.h>

#include "fixture.h"

static long cleanups;
static volatile sig_atomic_t bad_catches;
static bool walk;

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

static void on_prof(int)
{
    if (walk) {
        void *frames[64];
        backtrace(frames, 64);
        return;
    }
    try {
        throw 7;
    } catch (int v) {
        if (v != 7)
            bad_catches = 1;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "backtrace") != 0 && strcmp(argv[1], "throw") != 0)) {
        fprintf(stderr, "usage: profiler backtrace|throw N\n");
        return 2;
    }
    walk = strcmp(argv[1], "backtrace") == 0;
    long n = atol(argv[2]);
    // Load what the handler needs (libgcc_s for backtrace) before it runs.
    void *frames[4];
    backtrace(frames, 4);
    signal(SIGPROF, on_prof);
    struct itimerval every = {{0, 200}, {0, 200}};
    setitimer(ITIMER_PROF, &every, nullptr);
    long sum = 0, want = 0;
    for (long i = 0; i < n; i++) {
        int x = (int)(i % 1000);
        sum += outer(x);
        want += x % 3 == 0 ? -1 : 2 * x + 1;
    }
    struct itimerval off = {};
    setitimer(ITIMER_PROF, &off, nullptr);
    bool ok = sum == want && cleanups == n && !bad_catches;
    printf("calls=%ld %s\n", n, ok ? "ok" : "bad");
    return ok ? 0 : 1;
}
