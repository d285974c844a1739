/* exitrace: exit_group while another thread is creating threads.
 *
 * Exercises: a thread created just as its process exits. Its creator,
 * killed by the group exit in the middle of clone, never reports the
 * creation event; the new thread stops for its tracer all the same, and
 * its process is reaped only after it. A tracer that waits for the event
 * before it lets the thread go holds the process (and itself) for ever.
 *
 * Usage: exitrace [K]   the main thread creates short-lived threads
 *                       (running brief()) without end; another thread
 *                       waits until K were made (default 20), then calls
 *                       _exit(7).
 * Output: none, exit status 7. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "fixture.h"

static atomic_int made;
static int target;

PROBED void *brief(void *arg)
{
    BARRIER();
    return arg;
}

static void *quitter(void *arg)
{
    (void)arg;
    while (atomic_load(&made) < target)
        sched_yield();
    _exit(7);
}

int main(int argc, char **argv)
{
    target = argc > 1 ? atoi(argv[1]) : 20;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t t;
    if (pthread_create(&t, &attr, quitter, NULL) != 0)
        return 1;
    for (;;) {
        if (pthread_create(&t, &attr, brief, NULL) == 0)
            atomic_fetch_add(&made, 1);
    }
}
