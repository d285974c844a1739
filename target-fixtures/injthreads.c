/* injthreads: fault injection seen by each thread in its own errno.
 *
 * Exercises: --inject errno= in a multi-threaded program (errno is per
 * thread, found from each thread's thread pointer).
 *
 * Usage: injthreads PATH
 * Four threads each clear errno, call openat(AT_FDCWD, PATH, O_RDONLY) once
 * and record "ok" or "-1 errno=NAME"; main joins them in order and prints
 * "thread I: RESULT" for each, then does the same itself as "main: RESULT".
 * Untraced, with an existing PATH: every result "ok", exit status 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define THREADS 4

static const char *path;
static char results[THREADS + 1][64];

static void attempt(char *out)
{
    errno = 0;
    int fd = openat(AT_FDCWD, path, O_RDONLY);
    if (fd >= 0) {
        snprintf(out, 64, "ok");
        close(fd);
    } else {
        const char *name = strerrorname_np(errno);
        snprintf(out, 64, "%d errno=%s", fd, name ? name : "0");
    }
}

static void *run(void *arg)
{
    attempt(results[(long)arg]);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: injthreads PATH\n");
        return 64;
    }
    path = argv[1];
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, run, (void *)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        printf("thread %d: %s\n", i, results[i]);
    }
    attempt(results[THREADS]);
    printf("main: %s\n", results[THREADS]);
    return 0;
}
