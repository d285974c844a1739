/* threads: many threads hitting the same probe at the same time.
 *
 * Exercises: breakpoint hits from concurrent threads (each must be reported
 * once, with its own tid), return probes per thread, threads created after
 * tracing started.
 *
 * Usage: threads [N [M]]   N threads (default 4, at most 256) each call
 *                          work(i) for i = 0..M-1 (default M = 1000).
 * work(x) = 2*x+1, so each thread's sum is M*M.
 * Output (stdout), exactly: "total=<N*M*M>\n" (default "total=4000000").
 * Exit status 0. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

#define MAX_THREADS 256

static int calls_per_thread = 1000;

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

static void *thread_main(void *arg)
{
    long sum = 0;
    for (int i = 0; i < calls_per_thread; i++)
        sum += work(i);
    *(long *)arg = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        calls_per_thread = atoi(argv[2]);
    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: threads [N [M]]   (1 <= N <= %d)\n", MAX_THREADS);
        return 64;
    }

    pthread_t threads[MAX_THREADS];
    long sums[MAX_THREADS];
    for (int i = 0; i < n; i++)
        pthread_create(&threads[i], NULL, thread_main, &sums[i]);

    long total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(threads[i], NULL);
        total += sums[i];
    }
    printf("total=%ld\n", total);
    return 0;
}
