/* blocker: threads blocked in system calls while another hits probes.
 *
 * Exercises: a tracer must never make blocked threads hang or fail. One
 * thread blocks in read() on a pipe, one in pthread_cond_wait() (futex),
 * while the main thread calls work() N times; then the main thread writes
 * to the pipe and signals the condition, and both wake up.
 *
 * Usage: blocker [N]   N calls of work (default 2000).
 * Output (stdout), exactly: "read=x cond=1 sum=<N*N>\n", exit status 0. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fixture.h"

static int fds[2];
static char got = '?';
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int flag, woke;

PROBED int work(int x)
{
    BARRIER();
    return 2 * x + 1;
}

static void *reader(void *arg)
{
    (void)arg;
    if (read(fds[0], &got, 1) != 1)
        got = '!';
    return NULL;
}

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!flag)
        pthread_cond_wait(&cond, &lock);
    woke = 1;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    if (pipe(fds) != 0)
        return 1;
    pthread_t r, w;
    pthread_create(&r, NULL, reader, NULL);
    pthread_create(&w, NULL, waiter, NULL);
    long sum = 0;
    for (int i = 0; i < n; i++)
        sum += work(i);
    if (write(fds[1], "x", 1) != 1)
        return 1;
    pthread_mutex_lock(&lock);
    flag = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    pthread_join(r, NULL);
    pthread_join(w, NULL);
    printf("read=%c cond=%d sum=%ld\n", got, woke, sum);
    return 0;
}
