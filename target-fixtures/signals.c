/* signals: ordinary signals delivered while probes are armed.
 *
 * Exercises: signal pass-through (each one delivered exactly once), a probed
 * function called from a signal handler (in_handler), and a blocked signal
 * that stays pending until it is unblocked.
 *
 * Sends itself SIGUSR1 five times: twice with kill(getpid()), twice with
 * pthread_kill(pthread_self()), once with raise(), calling work() between
 * them. The handler calls in_handler(n) and counts. Then SIGUSR2 is blocked,
 * raised (must not be delivered yet), and unblocked (delivered now).
 *
 * Usage: signals   (no arguments)
 * Output (stdout), exactly:
 *     usr1=5
 *     usr2=1
 * Exit status 0; 1 (with a message on stderr) if a signal was delivered at
 * the wrong time. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

static volatile sig_atomic_t usr1;
static volatile sig_atomic_t usr2;

PROBED int in_handler(int n)
{
    BARRIER();
    return n + 1;
}

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

static void on_usr1(int sig)
{
    (void)sig;
    usr1 = in_handler(usr1);
}

static void on_usr2(int sig)
{
    (void)sig;
    usr2++;
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
    handle(SIGUSR1, on_usr1);
    handle(SIGUSR2, on_usr2);

    kill(getpid(), SIGUSR1);
    work(1);
    pthread_kill(pthread_self(), SIGUSR1);
    work(2);
    raise(SIGUSR1);
    work(3);
    kill(getpid(), SIGUSR1);
    work(4);
    pthread_kill(pthread_self(), SIGUSR1);
    work(5);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR2);
    if (usr2 != 0) {
        fprintf(stderr, "SIGUSR2 delivered while blocked\n");
        return 1;
    }
    sigprocmask(SIG_UNBLOCK, &set, NULL);   /* delivered before this returns */

    printf("usr1=%d\n", (int)usr1);
    printf("usr2=%d\n", (int)usr2);
    return 0;
}
