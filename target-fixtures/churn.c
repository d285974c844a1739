/* churn: threads made and joined as fast as the main thread can.
 *
 * Exercises: attaching while a thread is inside clone3 (stopped at its
 * clone event): whatever rtrace makes the tracee do then, the call must
 * return the new thread's id, or glibc would make the thread again.
 *
 * Usage: churn [N]   N rounds (default 1000) of two threads, each calling
 *                    work(i) for i = 0..9 and keeping the sum in its own
 *                    slot; each round checks both threads ran once.
 * Output (stdout), exactly: "rounds=<N> total=<N*200>\n", exit 0; a round
 * that finds a thread ran twice or not at all prints "bad round" and exits
 * 1. On stderr, "ready" as the first round begins (past the dynamic
 * linker, about to make threads). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return 2 * x + 1;
}

struct slot {
    long sum;
    int runs;
};

static void *worker(void *arg)
{
    struct slot *s = arg;
    long sum = 0;
    for (int i = 0; i < 10; i++)
        sum += work(i);
    s->sum += sum;
    __atomic_add_fetch(&s->runs, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    long total = 0;
    fprintf(stderr, "ready\n");
    for (int r = 0; r < n; r++) {
        struct slot slots[2] = {{0, 0}, {0, 0}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, worker, &slots[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < 2; i++) {
            if (slots[i].runs != 1) {
                printf("bad round %d: thread %d ran %d times\n", r, i, slots[i].runs);
                return 1;
            }
            total += slots[i].sum;
        }
    }
    printf("rounds=%d total=%ld\n", n, total);
    return 0;
}
