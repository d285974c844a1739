/* waves: threads created and exiting while traced; the main thread leaves
 * first.
 *
 * Exercises: thread creation and exit during tracing (each new thread is
 * traced from its first instruction and its hits counted), and a main
 * thread that calls pthread_exit() while others still run: the process
 * lives on until the last thread ends.
 *
 * Usage: waves [W [T [K]]]   W waves (default 5) of T threads (default 4),
 *                            each calling work(i) for i = 0..K-1 (default
 *                            100); the waves run one after another, from a
 *                            coordinator thread; the main thread calls
 *                            pthread_exit() right after starting it.
 * Output (stdout), exactly, from the coordinator at the end:
 * "threads=<W*T> total=<W*T*K*K>\n", then the process exits 0. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static int waves = 5, per_wave = 4, calls = 100;

PROBED int work(int x)
{
    BARRIER();
    return 2 * x + 1;
}

static void *worker(void *arg)
{
    long sum = 0;
    for (int i = 0; i < calls; i++)
        sum += work(i);
    *(long *)arg = sum;
    return NULL;
}

static void *coordinator(void *arg)
{
    (void)arg;
    long total = 0;
    int started = 0;
    pthread_t t[64];
    long sums[64];
    for (int w = 0; w < waves; w++) {
        for (int i = 0; i < per_wave; i++)
            pthread_create(&t[i], NULL, worker, &sums[i]);
        for (int i = 0; i < per_wave; i++) {
            pthread_join(t[i], NULL);
            total += sums[i];
            started++;
        }
    }
    printf("threads=%d total=%ld\n", started, total);
    fflush(stdout);
    exit(0);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        waves = atoi(argv[1]);
    if (argc > 2)
        per_wave = atoi(argv[2]);
    if (argc > 3)
        calls = atoi(argv[3]);
    if (per_wave > 64)
        per_wave = 64;
    pthread_t c;
    pthread_create(&c, NULL, coordinator, NULL);
    pthread_exit(NULL);
}
