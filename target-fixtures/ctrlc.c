/* ctrlc: counts the SIGINTs it gets, as a program that aborts on a second
 * Ctrl-C would.
 *
 * Exercises: a Ctrl-C at the terminal reaches every process of the
 * foreground group: a tracer that launched the program must not send it the
 * same signal again.
 *
 * Usage: ctrlc
 * Prints "ready" (flushed), then calls work(i) every millisecond. From the
 * first SIGINT on it goes on for 200 more milliseconds (so a second one,
 * sent soon after, is counted), then prints "sigints=<count>" and exits 0.
 * Safety net: after 60 s without SIGINT it prints "deadline" and exits 2. */
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "fixture.h"

static volatile sig_atomic_t sigints;

static void count(int sig)
{
    (void)sig;
    sigints++;
}

PROBED int work(int x)
{
    BARRIER();
    return x + 1;
}

int main(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = count;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    printf("ready\n");
    fflush(stdout);
    struct timespec ms = {0, 1000000};
    int after = 0;
    for (int i = 0; i < 60000; i++) {
        work(i);
        nanosleep(&ms, NULL);
        if (sigints && ++after >= 200) {
            printf("sigints=%d\n", (int)sigints);
            return 0;
        }
    }
    printf("deadline\n");
    return 2;
}
