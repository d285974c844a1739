/* far: a probed function with no free address within reach of a
 * `jmp rel32` (±2 GiB) of the program's code.
 *
 * Exercises: fast probes whose detour cannot be placed where a 5-byte
 * jump reaches it, attached to after the address space around the code
 * was filled.
 *
 * Before anything else it fills every free gap of its address space that
 * intersects [text start - 2 GiB, text end + 2 GiB] (text: the executable
 * mapping holding far_work) with PROT_NONE mappings (MAP_FIXED_NOREPLACE,
 * MAP_NORESERVE: no memory is used), except the 64 MiB above the heap
 * (where brk grows; the executable's end when there is no heap yet) and
 * what lies below vm.mmap_min_addr. Then it reads its map again and checks
 * that no other gap is left there (else "far: gap left ..." on stderr,
 * exit 3).
 *
 * Usage: far N
 *   Prints "ready" (flushed) once the space is filled, then reads
 *   commands from stdin, one a line:
 *     go     8 threads (started together at a barrier) each call
 *            far_work(x) N times (call i of thread t: x = 1 + (7t + i) % 13;
 *            far_work returns 2x + 1, checked); prints
 *                far_work calls=<8N> sum=<sum of the values> bad=<wrong values>
 *     stop (or end of file)
 *            prints "done" and exits 0, or 1 when a value was wrong.
 * Bad usage: a message on stderr, exit 64. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fixture.h"

#define THREADS 8
#define REACH (2ul << 30)
#define HEAP_ROOM (64ul << 20)
#define MAX_MAPS 1024

PROBED int far_work(int x)
{
    BARRIER();
    return 2 * x + 1;
}

struct map {
    uintptr_t lo, hi;
    char path[256];
};

static struct map maps[MAX_MAPS];
static int nmaps;

/* Reads /proc/self/maps into `maps` (sorted, as the kernel lists them). */
static void read_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    if (!f) {
        perror("far: /proc/self/maps");
        exit(3);
    }
    nmaps = 0;
    while (fgets(line, sizeof line, f)) {
        struct map *m = &maps[nmaps];
        m->path[0] = '\0';
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255[^\n]", &m->lo, &m->hi, m->path) < 2)
            continue;
        if (++nmaps == MAX_MAPS)
            break;
    }
    fclose(f);
}

static uintptr_t mmap_min_addr(void)
{
    unsigned long min = 65536;
    FILE *f = fopen("/proc/sys/vm/mmap_min_addr", "r");
    if (f) {
        if (fscanf(f, "%lu", &min) != 1)
            min = 65536;
        fclose(f);
    }
    return (min + 4095) & ~4095ul;
}

/* The range to fill: [*lo, *hi), and the heap's room [*room_lo, *room_hi). */
static void bounds(uintptr_t *lo, uintptr_t *hi, uintptr_t *room_lo, uintptr_t *room_hi)
{
    uintptr_t code = (uintptr_t)far_work, text_lo = 0, text_hi = 0, exe_end = 0, heap_end = 0;
    const char *exe = NULL;
    for (int i = 0; i < nmaps; i++)
        if (maps[i].lo <= code && code < maps[i].hi) {
            text_lo = maps[i].lo;
            text_hi = maps[i].hi;
            exe = maps[i].path;
        }
    if (!exe) {
        fprintf(stderr, "far: far_work is in no mapping\n");
        exit(3);
    }
    for (int i = 0; i < nmaps; i++) {
        if (strcmp(maps[i].path, exe) == 0 && maps[i].hi > exe_end)
            exe_end = maps[i].hi;
        if (strcmp(maps[i].path, "[heap]") == 0)
            heap_end = maps[i].hi;
    }
    uintptr_t min = mmap_min_addr();
    *lo = text_lo > min + REACH ? text_lo - REACH : min;
    *hi = text_hi + REACH;
    *room_lo = heap_end ? heap_end : exe_end;
    *room_hi = *room_lo + HEAP_ROOM;
}

/* Calls `each` for every gap of `maps` within [lo, hi) outside the room. */
static int for_each_gap(uintptr_t lo, uintptr_t hi, uintptr_t room_lo, uintptr_t room_hi,
                        int (*each)(uintptr_t, uintptr_t))
{
    uintptr_t prev = lo;
    for (int i = 0; i <= nmaps; i++) {
        uintptr_t start = i < nmaps ? maps[i].lo : hi;
        uintptr_t a = prev > lo ? prev : lo;
        uintptr_t b = start < hi ? start : hi;
        /* The gap [a, b) minus [room_lo, room_hi): at most two pieces. */
        uintptr_t pieces[2][2] = {{a, b < room_lo ? b : room_lo}, {a > room_hi ? a : room_hi, b}};
        for (int p = 0; p < 2; p++)
            if (pieces[p][0] < pieces[p][1] && each(pieces[p][0], pieces[p][1]) != 0)
                return -1;
        if (i < nmaps && maps[i].hi > prev)
            prev = maps[i].hi;
    }
    return 0;
}

static int fill(uintptr_t a, uintptr_t b)
{
    void *got = mmap((void *)a, b - a, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (got == MAP_FAILED || (uintptr_t)got != a) {
        fprintf(stderr, "far: mmap %#lx-%#lx: %s\n", (unsigned long)a, (unsigned long)b,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int left(uintptr_t a, uintptr_t b)
{
    fprintf(stderr, "far: gap left %#lx-%#lx\n", (unsigned long)a, (unsigned long)b);
    return -1;
}

static void fill_around_code(void)
{
    uintptr_t lo, hi, room_lo, room_hi;
    /* The heap first (stdio's buffers come from it), so its end is known. */
    free(malloc(1));
    read_maps();
    bounds(&lo, &hi, &room_lo, &room_hi);
    if (for_each_gap(lo, hi, room_lo, room_hi, fill) != 0)
        exit(3);
    read_maps();
    if (for_each_gap(lo, hi, room_lo, room_hi, left) != 0)
        exit(3);
}

static pthread_barrier_t start;
static long per_thread;

struct result {
    long sum;
    long bad;
};

static void *worker(void *arg)
{
    int t = (int)(long)arg;
    struct result *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    pthread_barrier_wait(&start);
    for (long i = 0; i < per_thread; i++) {
        int x = 1 + (7 * t + i) % 13;
        int v = far_work(x);
        if (v != 2 * x + 1)
            r->bad++;
        r->sum += v;
    }
    return r;
}

static long go(void)
{
    pthread_t tids[THREADS];
    long sum = 0, bad = 0;
    pthread_barrier_init(&start, NULL, THREADS);
    for (long t = 0; t < THREADS; t++)
        if (pthread_create(&tids[t], NULL, worker, (void *)t) != 0)
            abort();
    for (int t = 0; t < THREADS; t++) {
        void *ret;
        pthread_join(tids[t], &ret);
        struct result *r = ret;
        sum += r->sum;
        bad += r->bad;
        free(r);
    }
    pthread_barrier_destroy(&start);
    printf("far_work calls=%ld sum=%ld bad=%ld\n", THREADS * per_thread, sum, bad);
    fflush(stdout);
    return bad;
}

int main(int argc, char **argv)
{
    char *end, line[64];
    long bad = 0;
    if (argc != 2 || (per_thread = strtol(argv[1], &end, 10)) < 0 || *end != '\0') {
        fprintf(stderr, "usage: far N\n");
        return 64;
    }
    fill_around_code();
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "stop") == 0)
            break;
        if (strcmp(line, "go") == 0)
            bad += go();
        else
            fprintf(stderr, "far: unknown command %s\n", line);
    }
    printf("done\n");
    return bad != 0;
}
