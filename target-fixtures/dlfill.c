/* dlfill: a library unloaded, and another loaded at its address with a
 * thread blocked where the first had padding.
 *
 * Exercises: a fast probe's hop into a library's padding (libfilla's
 * lib_hop), the library unloaded, and libfillb (the same layout, a
 * system call ending where libfilla's padding begins) loaded in its
 * place: rtrace must not take that code for the hop's jump (a thread
 * there was single-stepped at the detach as if it were leaving a detour,
 * into its blocking read again).
 *
 * Usage: dlfill PATH_TO_LIBFILLA_SO PATH_TO_LIBFILLB_SO
 * Loads libfilla, calls lib_hop(i) for i = 0..99, prints "loaded" and
 * waits for a line on stdin. Unloads it, loads libfillb (at the same
 * address, or prints "moved" and exits 3), starts a thread that calls
 * its lib_hop (a read(2) of a pipe), and, once that thread is blocked in
 * it, prints "ready" and waits for another line. Then writes to the pipe,
 * waits for the thread, prints "done" and exits 0. Exit status 1 when a
 * value is wrong or a library cannot be loaded (the dl error on stderr).
 * SIGINT is ignored: the one a test sends rtrace to detach, which rtrace
 * passes on to the program it launched, leaves it running. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fixture.h"

static int fds[2];
static long (*lib_read)(long, void *, long);
static volatile pid_t reader_tid;

static void *reader(void *arg)
{
    (void)arg;
    char c;
    reader_tid = (pid_t)syscall(SYS_gettid);
    return (void *)lib_read(fds[0], &c, 1);
}

static uintptr_t base_of(void *handle)
{
    struct link_map *map = NULL;
    dlinfo(handle, RTLD_DI_LINKMAP, &map);
    return map ? map->l_addr : 0;
}

/* True once thread `tid` sleeps in read(2). */
static int blocked(pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int read_now = fgets(line, sizeof line, f) && strncmp(line, "0 ", 2) == 0;
    fclose(f);
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    char *state = fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
    fclose(f);
    return read_now && state && state[2] == 'S';
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: dlfill LIBFILLA LIBFILLB\n");
        return 2;
    }
    signal(SIGINT, SIG_IGN);
    char line[64];
    void *a = dlopen(argv[1], RTLD_NOW);
    long (*hop)(long) = a ? (long (*)(long))dlsym(a, "lib_hop") : NULL;
    if (!hop) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    for (long i = 0; i < 100; i++) {
        if (hop(i) != 2 * i) {
            fprintf(stderr, "lib_hop(%ld) = %ld\n", i, hop(i));
            return 1;
        }
    }
    uintptr_t base = base_of(a);
    printf("loaded\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    dlclose(a);
    void *b = dlopen(argv[2], RTLD_NOW);
    lib_read = b ? (long (*)(long, void *, long))dlsym(b, "lib_hop") : NULL;
    if (!lib_read) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    if (base_of(b) != base) {
        printf("moved\n");
        return 3;
    }
    if (pipe(fds) != 0)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    while (reader_tid == 0 || !blocked(reader_tid))
        sched_yield();
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    if (write(fds[1], "x", 1) != 1)
        return 1;
    void *got;
    pthread_join(t, &got);
    if ((long)got != 1)
        return 1;
    printf("done\n");
    return 0;
}
