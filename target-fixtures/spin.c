/* spin: a long-running process to attach to.
 *
 * Exercises: attach (-p PID) to a process that is already running, possibly
 * with several threads, tracing work() while it runs, and a clean detach
 * after which the process carries on and ends normally.
 *
 * Usage: spin              one thread calls work(i), sleeping 1 ms between
 *                          calls
 *        spin threads N    N threads (1..64) each run that loop; the main
 *                          thread only waits
 * Prints "pid=<pid>" and "ready" (flushed) once the loop(s) are running. On
 * SIGTERM every loop stops; it prints "calls=<total work() calls>" and
 * "done" and exits 0.
 * Safety net: after 60 s without SIGTERM it prints "deadline" before those
 * lines and exits 2, so a test that forgot to stop it fails instead of
 * hanging. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

#define DEADLINE_SECONDS 60
#define MAX_THREADS 64

static volatile sig_atomic_t stop;
static volatile sig_atomic_t deadline_hit;
static time_t deadline;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

static time_t now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* Runs until SIGTERM or the deadline; returns how many times it called work. */
static long loop(void)
{
    long calls = 0;
    while (!stop) {
        if (now() >= deadline) {
            deadline_hit = 1;
            break;
        }
        work((int)calls);
        calls++;
        usleep(1000);
    }
    return calls;
}

static void *thread_main(void *arg)
{
    *(long *)arg = loop();
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = 0;
    if (argc > 2 && strcmp(argv[1], "threads") == 0)
        nthreads = atoi(argv[2]);
    if (argc > 1 && (nthreads < 1 || nthreads > MAX_THREADS)) {
        fprintf(stderr, "usage: spin [threads N]   (1 <= N <= %d)\n", MAX_THREADS);
        return 64;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    deadline = now() + DEADLINE_SECONDS;

    long total = 0;
    printf("pid=%d\n", (int)getpid());
    if (nthreads == 0) {
        printf("ready\n");
        fflush(stdout);
        total = loop();
    } else {
        pthread_t threads[MAX_THREADS];
        long calls[MAX_THREADS];
        for (int i = 0; i < nthreads; i++)
            pthread_create(&threads[i], NULL, thread_main, &calls[i]);
        printf("ready\n");
        fflush(stdout);
        for (int i = 0; i < nthreads; i++) {
            pthread_join(threads[i], NULL);
            total += calls[i];
        }
    }

    if (deadline_hit)
        printf("deadline\n");
    printf("calls=%ld\n", total);
    printf("done\n");
    return deadline_hit ? 2 : 0;
}
