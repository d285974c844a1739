/* hot: a function called as fast as threads can call it, started on cue.
 *
 * Exercises: fast probes under sustained load (millions of calls, many
 * threads): every call counted, whatever the rate; a ring that fills up;
 * rtrace stopped, slowed or killed while the threads run.
 *
 * Usage: hot [THREADS [CALLS]]   THREADS (default 1, at most 64) each call
 *                                work(i) for i = 0..CALLS-1 (default 1000).
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
 * Exit status 0; 64 for bad arguments. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

#define MAX_THREADS 64

static long calls_per_thread = 1000;
static int threads;
static long sums[MAX_THREADS];
static atomic_int finished;
static pthread_barrier_t start;

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
    return NULL;
}

int main(int argc, char **argv)
{
    threads = argc > 1 ? atoi(argv[1]) : 1;
    if (argc > 2)
        calls_per_thread = atol(argv[2]);
    if (threads < 1 || threads > MAX_THREADS || calls_per_thread < 0) {
        fprintf(stderr, "usage: hot [THREADS [CALLS]]   (1 <= THREADS <= %d)\n", MAX_THREADS);
        return 64;
    }
    char line[16];
    printf("ready\n");
    fflush(stdout);
    (void)fgets(line, sizeof line, stdin);

    pthread_barrier_init(&start, NULL, threads + 1);
    pthread_t tids[MAX_THREADS];
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, thread_main, &sums[i]);
    printf("started\n");
    fflush(stdout);
    (void)fgets(line, sizeof line, stdin);
    pthread_barrier_wait(&start);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
