/* scribbler: a program that writes over rtrace's fast-probe ring.
 *
 * Exercises: the ring shared with rtrace (`--fast`) is untrusted input. The
 * program finds it in /proc/self/maps (a memfd mapping named
 * `/memfd:rtrace-ring (deleted)`) and fills it with garbage while it calls
 * the probed work(); rtrace must notice, say so once, print nothing it made
 * up, go back to int3 breakpoints, and let the program end as untraced.
 * Untraced there is no ring: the same calls are made, nothing is written.
 *
 * Usage: scribbler          calls work(i) for i = 0..9, prints "ready"
 *                           (flushed), reads one line from stdin; then, if
 *                           the ring is there, fills all of it with 0xff,
 *                           pseudo-random bytes, zeros, 0xff, random, zeros
 *                           (one round each), calling work(100 + round)
 *                           after each; waits (at most 10 s) until work's
 *                           first byte is no longer a jump (rtrace took
 *                           the jump off); then calls work(i) for
 *                           i = 20..29.
 *        scribbler forever  prints "pid=<pid>" and "ready" (flushed), then
 *                           until SIGTERM: looks for the ring (once it is
 *                           found, through /proc/self/map_files, so the
 *                           writes go on harmlessly once rtrace has
 *                           unmapped it), writes its first MiB over with a
 *                           pattern that changes every call (0xff, random,
 *                           zeros), calls work(i), sleeps 1 ms.
 * Output (stdout), exactly:
 *     one-shot:  ready, then sum=<sum of work's results> (work(x) = 2x+1:
 *                100 + 1236 + 500 = 1836)
 *     forever:   pid=<pid>, ready, then on SIGTERM calls=<work() calls>, done
 * Exit status: 0; 3 when the jump was never taken off (a message on
 * stderr); forever after 60 s without SIGTERM: prints "deadline" first and
 * exits 2. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

#define ROUNDS 6
#define FOREVER_BYTES (1 << 20)

static volatile sig_atomic_t stop;

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

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The ring's mapping, if rtrace made one: its bounds. */
static int find_ring(uintptr_t *start, uintptr_t *end)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (strstr(line, "rtrace-ring") && sscanf(line, "%lx-%lx", &s, &e) == 2) {
            *start = s;
            *end = e;
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* Fills `len` bytes at `p` as round `round` says: 0xff, random, zeros. */
static void garbage(unsigned char *p, size_t len, unsigned round, uint64_t *seed)
{
    switch (round % 3) {
    case 0:
        memset(p, 0xff, len);
        break;
    case 1:
        for (size_t i = 0; i < len; i++) {
            *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
            p[i] = (unsigned char)(*seed >> 56);
        }
        break;
    default:
        memset(p, 0, len);
        break;
    }
}

static int jump_at_work(void)
{
    return *(volatile unsigned char *)(uintptr_t)&work == 0xe9;
}

static int one_shot(void)
{
    long sum = 0;
    uint64_t seed = 1;
    uintptr_t start, end;
    char line[64];

    for (int i = 0; i < 10; i++)
        sum += work(i);
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        line[0] = 0;

    int ring = find_ring(&start, &end);
    for (int round = 0; round < ROUNDS; round++) {
        if (ring)
            garbage((unsigned char *)start, end - start, round, &seed);
        sum += work(100 + round);
    }
    double deadline = now() + 10;
    while (jump_at_work()) {
        if (now() > deadline) {
            fprintf(stderr, "scribbler: work still starts with a jump after 10 s\n");
            return 3;
        }
        usleep(1000);
    }
    for (int i = 20; i < 30; i++)
        sum += work(i);
    printf("sum=%ld\n", sum);
    return 0;
}

static int forever(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);

    static unsigned char buf[FOREVER_BYTES];
    uint64_t seed = 1;
    int fd = -1;
    long calls = 0;
    double deadline = now() + 60;
    printf("pid=%d\n", (int)getpid());
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        if (now() > deadline) {
            printf("deadline\ncalls=%ld\ndone\n", calls);
            return 2;
        }
        uintptr_t start, end;
        if (fd < 0 && find_ring(&start, &end)) {
            char path[128];
            snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)start,
                     (unsigned long)end);
            fd = open(path, O_RDWR);
        }
        if (fd >= 0) {
            garbage(buf, sizeof buf, (unsigned)calls, &seed);
            if (pwrite(fd, buf, sizeof buf, 0) < 0) {
                close(fd);
                fd = -1;
            }
        }
        work((int)calls);
        calls++;
        usleep(1000);
    }
    printf("calls=%ld\ndone\n", calls);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "forever") == 0)
        return forever();
    return one_shot();
}
