/* exiter: exit_group while other threads are in the middle of hits.
 *
 * Exercises: the process exiting (exit_group) while other threads hit a
 * probe in a tight loop, so some are stopped at a breakpoint or mid-step
 * when the exit comes. rtrace must report the exit status and end, not
 * hang or crash.
 *
 * Usage: exiter [T [K]]   T threads (default 3) call work() forever; the
 *                         main thread waits until they made K calls in all
 *                         (default 3000), then exits with status 3.
 * Output (stdout), exactly: "exiting\n", exit status 3. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static atomic_long total;

PROBED int work(int x)
{
    BARRIER();
    return x + 1;
}

static void *spinner(void *arg)
{
    (void)arg;
    for (int i = 0;; i++) {
        work(i);
        atomic_fetch_add(&total, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 3;
    long target = argc > 2 ? atol(argv[2]) : 3000;
    pthread_t t;
    for (int i = 0; i < threads; i++)
        pthread_create(&t, NULL, spinner, NULL);
    while (atomic_load(&total) < target)
        ;
    printf("exiting\n");
    fflush(stdout);
    exit(3);
}
