/* sigqueuer: queued signals with values, at several threads hitting a probe.
 *
 * Exercises: signals that arrive while probe hits are being handled on
 * several threads at once (held during a step, then delivered). Each must
 * reach its thread once, in order, and with its siginfo unchanged: the
 * sigqueue() code and value the sender gave it, as untraced. The handler
 * calls work() too, so hits also happen with the signal blocked.
 *
 * Usage: sigqueuer [T [N [C]]] T worker threads (default 4, at most 16) call
 *                            work() in a loop; the main thread queues N
 *                            SIGRTMIN signals (default 2000) at them, round
 *                            robin, with values 0..N-1, a few in flight at a
 *                            time, then stops them. With C, each worker
 *                            makes at most C calls of its own, then waits
 *                            (taking its signals) until it is stopped: the
 *                            calls a trace holds are bounded, however slow
 *                            the machine.
 * A signal whose si_code is not SI_QUEUE, or whose value is not the next one
 * its thread expects, counts as bad.
 * Output (stdout), exactly: "received=<N> bad=0\n", exit status 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fixture.h"

#define MAX_THREADS 16

static int threads = 4;
static long budget = -1;
static pthread_t workers[MAX_THREADS];
static volatile int next_value[MAX_THREADS];
static volatile int received, bad, stop, started;

PROBED int work(int x)
{
    BARRIER();
    return x + 1;
}

static int index_of_self(void)
{
    for (int i = 0; i < threads; i++)
        if (pthread_equal(workers[i], pthread_self()))
            return i;
    return -1;
}

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    int i = index_of_self();
    if (i < 0 || si->si_code != SI_QUEUE || si->si_value.sival_int != next_value[i])
        __atomic_add_fetch(&bad, 1, __ATOMIC_SEQ_CST);
    if (i >= 0)
        next_value[i] = work(si->si_value.sival_int) - 1 + threads;
    __atomic_add_fetch(&received, 1, __ATOMIC_SEQ_CST);
}

static void *worker(void *arg)
{
    long n = 0;
    (void)arg;
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    for (long calls = 0; !stop && calls != budget; calls++)
        n += work((int)(n & 7));
    while (!stop)
        usleep(100);
    return (void *)n;
}

int main(int argc, char **argv)
{
    int n = 2000;
    if (argc > 1)
        threads = atoi(argv[1]);
    if (argc > 2)
        n = atoi(argv[2]);
    if (argc > 3)
        budget = atol(argv[3]);
    if (threads < 1 || threads > MAX_THREADS)
        return 64;
    struct sigaction sa = {0};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    for (int i = 0; i < threads; i++)
        next_value[i] = i;
    /* The main thread never takes the signal itself. */
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    for (int i = 0; i < threads; i++)
        pthread_create(&workers[i], NULL, worker, NULL);
    pthread_sigmask(SIG_BLOCK, &rt, NULL);
    while (started < threads)
        usleep(1000);
    for (int v = 0; v < n; v++) {
        union sigval value = {.sival_int = v};
        while (pthread_sigqueue(workers[v % threads], SIGRTMIN, value) != 0)
            usleep(100);
        /* At most a few in flight, so no queue overflows. */
        while (v - received > 4 * threads)
            usleep(50);
    }
    for (int waited = 0; received < n && waited < 10000; waited++)
        usleep(1000);
    stop = 1;
    for (int i = 0; i < threads; i++)
        pthread_join(workers[i], NULL);
    printf("received=%d bad=%d\n", received, bad);
    return received == n && bad == 0 ? 0 : 1;
}
