/* hot: a function called as fast as threads can call it, started on cue.
 *
 * Exercises: fast probes under sustained load (millions of calls, many
 * threads): every call counted, whatever the rate; a ring that fills up;
 * rtrace stopped, slowed or killed while the threads run.
 *
 * Usage: hot [THREADS [CALLS [SIGNALS]]]
 *                      THREADS (default 1, at most 64) each call work(i)
 *                      for i = 0..CALLS-1 (default 1000); meanwhile the main
 *                      thread sends SIGNALS SIGUSR1s (default 0) to the
 *                      threads in turn, each once the one before was handled.
 * Prints "ready", waits for a line on stdin (or its end), starts the
 * threads, prints "started" once they all exist, waits for another line
 * (or the end), and lets them run. The last thread to finish its calls
 * prints the result (before any thread exits, so that it is out while a
 * tracer that would have to see the exits is stopped). work(x) = 2*x+1,
 * so each thread's sum is CALLS*CALLS.
 * Output (stdout), exactly:
 *     ready
 *     started
 *     calls=<THREADS*CALLS> sum=<THREADS*CALLS*CALLS>
 * and, with SIGNALS, "signals=<SIGNALS>" once every one was handled (the
 * threads wait for it before they end).
 * Exit status 0; 64 for bad arguments. */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

#define MAX_THREADS 64

static long calls_per_thread = 1000;
static int threads;
static long sums[MAX_THREADS];
static atomic_int finished;
static pthread_barrier_t start, end;
static sem_t handled;

static void on_usr1(int sig)
{
    (void)sig;
    sem_post(&handled);
}

PROBED long work(long x)
{
    BARRIER();
    return 2 * x + 1;
}

static void *thread_main(void *arg)
{
    long *mine = arg;
    pthread_barrier_wait(&start);
    long sum = 0;
    for (long i = 0; i < calls_per_thread; i++)
        sum += work(i);
    *mine = sum;
    if (atomic_fetch_add(&finished, 1) + 1 == threads) {
        long total = 0;
        for (int i = 0; i < threads; i++)
            total += sums[i];
        printf("calls=%ld sum=%ld\n", (long)threads * calls_per_thread, total);
        fflush(stdout);
    }
    pthread_barrier_wait(&end);
    return NULL;
}

int main(int argc, char **argv)
{
    threads = argc > 1 ? atoi(argv[1]) : 1;
    if (argc > 2)
        calls_per_thread = atol(argv[2]);
    int signals = argc > 3 ? atoi(argv[3]) : 0;
    if (threads < 1 || threads > MAX_THREADS || calls_per_thread < 0 || signals < 0) {
        fprintf(stderr, "usage: hot [THREADS [CALLS [SIGNALS]]]   (1 <= THREADS <= %d)\n",
                MAX_THREADS);
        return 64;
    }
    sem_init(&handled, 0, 0);
    signal(SIGUSR1, on_usr1);
    char line[16];
    printf("ready\n");
    fflush(stdout);
    (void)fgets(line, sizeof line, stdin);

    pthread_barrier_init(&start, NULL, threads + 1);
    pthread_barrier_init(&end, NULL, threads + 1);
    pthread_t tids[MAX_THREADS];
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, thread_main, &sums[i]);
    printf("started\n");
    fflush(stdout);
    (void)fgets(line, sizeof line, stdin);
    pthread_barrier_wait(&start);
    for (int i = 0; i < signals; i++) {
        pthread_kill(tids[i % threads], SIGUSR1);
        while (sem_wait(&handled) != 0)
            ;
    }
    if (signals > 0) {
        printf("signals=%d\n", signals);
        fflush(stdout);
    }
    pthread_barrier_wait(&end);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
