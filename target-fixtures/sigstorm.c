/* sigstorm: queued signals arriving while a thread hits a probe.
 *
 * Exercises: signals that arrive while a hit is being handled (and its
 * displaced instruction stepped). Each must be delivered after the step,
 * once: not lost, not duplicated. Real-time signals queue, so the count
 * received must equal the count sent exactly.
 *
 * Usage: sigstorm [N [M]]   a sender thread queues N SIGRTMIN signals
 *                           (default 2000) at the worker thread, which
 *                           calls work(i) M times (default 20000) and then
 *                           waits for the signals still in flight.
 * Output (stdout), exactly: "received=<N> calls=<M>\n", exit status 0.
 * If signals are missing after 10 s: "received=<fewer> ..." and exit 1. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

static volatile sig_atomic_t received;
static pid_t worker_tid;
static int to_send = 2000;
static volatile int worker_ready;

PROBED int work(int x)
{
    BARRIER();
    return x + 1;
}

static void on_signal(int sig)
{
    (void)sig;
    received++;
}

static void *sender(void *arg)
{
    (void)arg;
    while (!worker_ready)
        ;
    siginfo_t si = {0};
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    for (int i = 0; i < to_send; i++) {
        /* The queue is bounded (RLIMIT_SIGPENDING): retry when it is full. */
        while (syscall(SYS_rt_tgsigqueueinfo, getpid(), worker_tid, SIGRTMIN, &si) != 0)
            sched_yield();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    to_send = argc > 1 ? atoi(argv[1]) : 2000;
    int calls = argc > 2 ? atoi(argv[2]) : 20000;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    worker_tid = (pid_t)syscall(SYS_gettid);

    pthread_t t;
    pthread_create(&t, NULL, sender, NULL);
    worker_ready = 1;
    long sum = 0;
    for (int i = 0; i < calls; i++)
        sum += work(i);
    pthread_join(t, NULL);

    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (received < to_send) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 10)
            break;
        sched_yield();
    }
    printf("received=%d calls=%d\n", (int)received, calls);
    return received == to_send && sum > 0 ? 0 : 1;
}
