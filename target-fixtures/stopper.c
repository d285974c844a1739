/* stopper: a process that is stopped and continued from outside.
 *
 * Exercises: SIGSTOP / SIGCONT sent by someone else while the process is
 * traced (group-stop must look the same as without a tracer, and a process
 * stopped when the tracer detaches stays stopped), and that SIGCONT still
 * reaches the program: it has a SIGCONT handler that counts.
 *
 * Usage: stopper   (no arguments)
 * Prints "pid=<pid>" and "ready" (flushed), then calls work(i) with a 1 ms
 * sleep between calls until SIGTERM. Then prints "conts=<SIGCONTs handled>",
 * "calls=<work() calls>" and "done", and exits 0.
 * Safety net: after 60 s without SIGTERM it prints "deadline" before those
 * lines and exits 2. Time spent stopped counts against the 60 s. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

#define DEADLINE_SECONDS 60

static volatile sig_atomic_t stop;
static volatile sig_atomic_t conts;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static void on_cont(int sig)
{
    (void)sig;
    conts++;
}

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

static void handle(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

int main(void)
{
    handle(SIGTERM, on_term);
    handle(SIGCONT, on_cont);

    struct timespec start, t;
    clock_gettime(CLOCK_MONOTONIC, &start);

    printf("pid=%d\n", (int)getpid());
    printf("ready\n");
    fflush(stdout);

    long calls = 0;
    int deadline_hit = 0;
    while (!stop) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - start.tv_sec >= DEADLINE_SECONDS) {
            deadline_hit = 1;
            break;
        }
        work((int)calls);
        calls++;
        usleep(1000);
    }

    if (deadline_hit)
        printf("deadline\n");
    printf("conts=%d\n", (int)conts);
    printf("calls=%ld\n", calls);
    printf("done\n");
    return deadline_hit ? 2 : 0;
}
