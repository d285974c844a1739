/* naps: calls a probed function for the durations the command line gives,
 * then waits to be told to end.
 *
 * Exercises: the live view's detail of a row (--tui): the durations of
 * calls known in advance land in known powers of two, and the last calls
 * are listed with their arguments and return values; `q` in launch mode,
 * where rtrace passes the program a SIGINT and waits for it to end.
 *
 * Usage: naps MS...   calls nap(ms) for each argument in turn; nap sleeps
 *                     ms milliseconds and returns ms * 2. Then it waits.
 * Prints nothing until it ends. A SIGINT is counted and otherwise ignored
 * (it goes on waiting); SIGTERM ends it: it prints "sigints=<count>" and
 * exits 0.
 * Safety net: after 60 s without SIGTERM it prints "deadline" and exits 2. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

static volatile sig_atomic_t sigints;
static volatile sig_atomic_t term;

static void on_int(int sig)
{
    (void)sig;
    sigints++;
}

static void on_term(int sig)
{
    (void)sig;
    term = 1;
}

PROBED long nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 2L * ms;
}

int main(int argc, char **argv)
{
    signal(SIGINT, on_int);
    signal(SIGTERM, on_term);
    for (int i = 1; i < argc; i++)
        nap(atoi(argv[i]));
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!term) {
        /* pause() would miss a SIGTERM that came just before it: wake up
         * now and then to look at the flag. */
        struct timespec tick = {0, 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 60) {
            printf("deadline\n");
            return 2;
        }
    }
    printf("sigints=%d\n", (int)sigints);
    return 0;
}
