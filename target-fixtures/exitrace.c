/* exitrace: exit_group while another thread is creating threads, or
 * forking.
 *
 * Exercises: a thread or a process created just as its creator's process
 * exits. A creator killed by the group exit in the middle of clone never
 * reports the creation event (or reports a fork with no child pid); the
 * new task stops for its tracer all the same, and (a thread) its process
 * is reaped only after it. A tracer that waits for the event, or for a
 * child numbered 0, before it lets the task go holds it (and itself) for
 * ever.
 *
 * Usage: exitrace [K]        the main thread creates short-lived threads
 *                            (running brief()) until the process ends, at
 *                            most K + 1000 of them; another thread waits
 *                            until K were made (default 20), then calls
 *                            _exit(7).
 *        exitrace fork [K]   the same with child processes (each calls
 *                            brief() and exits 0; none is waited for).
 * The bound keeps the machine's process ids: a tracer slow to let the new
 * tasks go, while the quitter waits for its turn, must not let the
 * program make thousands (other programs could not fork).
 * Output: none, exit status 7. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
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
    int forks = argc > 1 && strcmp(argv[1], "fork") == 0;
    if (forks) {
        argc--;
        argv++;
    }
    target = argc > 1 ? atoi(argv[1]) : 20;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t t;
    if (pthread_create(&t, &attr, quitter, NULL) != 0)
        return 1;
    for (;;) {
        if (atomic_load(&made) >= target + 1000) {
            sched_yield();
            continue;
        }
        if (forks) {
            pid_t child = fork();
            if (child == 0) {
                brief(NULL);
                _exit(0);
            }
            if (child > 0)
                atomic_fetch_add(&made, 1);
        } else if (pthread_create(&t, &attr, brief, NULL) == 0) {
            atomic_fetch_add(&made, 1);
        }
    }
}
