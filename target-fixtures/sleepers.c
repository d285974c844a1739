/* sleepers: threads that spend their time inside a probed function.
 *
 * Exercises: a detach while calls are in flight on several threads: their
 * rewritten return addresses must be restored (and a thread stopped at the
 * trampoline sent to its real return address), so every call still returns
 * where it should after rtrace is gone.
 *
 * Usage: sleepers [T [K]]   T threads (default 4), each calling nap(r) for
 *                           r = 0..K-1 (default 60); nap sleeps 20 ms and
 *                           returns r + 1000.
 * Prints "ready" (flushed) once the threads run; at the end
 * "total=<T * sum(r + 1000)>\n". Exit status 0. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fixture.h"

static int rounds = 60;

PROBED long nap(int r)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return r + 1000;
}

static void *sleeper(void *arg)
{
    long sum = 0;
    for (int r = 0; r < rounds; r++)
        sum += nap(r);
    *(long *)arg = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        rounds = atoi(argv[2]);
    if (threads > 64)
        threads = 64;
    pthread_t t[64];
    long sums[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, sleeper, &sums[i]);
    printf("ready\n");
    fflush(stdout);
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += sums[i];
    }
    printf("total=%ld\n", total);
    return 0;
}
