/* shapes: eight threads calling functions whose first bytes a plain 5-byte
 * jump cannot replace (the sites, hand-written in shapes.S: see its header
 * for each function's bytes and what it returns).
 *
 * Exercises: fast probes on short functions, on functions with a branch
 * target, a call or a jump table in their first bytes, launched and
 * attached while threads hit them, counted exactly, detached from while
 * threads run through them.
 *
 * Sites (SITE): ret1 three loop2 call0 call2 jtab push1 evict, and plain, the
 * control: an ordinary C function (2x + 1) whose first bytes a jump
 * replaces as they are. Call i of thread
 * t passes x = 1 + (7t + i) % 13 and checks the value returned against
 * what the function computes (a wrongly relocated instruction shows as a
 * bad value, a crash or a hang).
 *
 * Usage:
 *   shapes launch N SITE...   for each SITE in turn, 8 threads (started
 *                             together at a barrier) each call it N times;
 *                             prints per SITE
 *                                 SITE calls=<8N> sum=<sum of the values> bad=<wrong values>
 *                             exits 0, or 1 when a value was wrong.
 *   shapes one N SITE         the main thread alone calls mark(1), SITE N
 *                             times (N may be 0), then mark(2), no other
 *                             thread; prints
 *                                 SITE calls=<N> sum=<sum> bad=<wrong values>
 *                             exits 0, or 1 when a value was wrong.
 *   shapes attach SITE...     8 threads call the SITEs in turn, back to
 *                             back, without end ("hammering"); once they
 *                             run it prints "ready" (flushed). Then reads
 *                             commands from stdin, one a line:
 *                               count N   every thread leaves the hammer
 *                                         loop; all wait at a barrier;
 *                                         the main thread calls mark(1);
 *                                         each thread makes exactly N
 *                                         calls of each SITE; all wait at a
 *                                         barrier; the main thread calls
 *                                         mark(2); the threads hammer
 *                                         again; then, once they were let
 *                                         go, it prints per SITE
 *                                             counted SITE calls=<8N> sum=<sum>
 *                                         So every call between mark(1) and
 *                                         mark(2) is one of those 8N per
 *                                         SITE, and every hammer call is
 *                                         before mark(1) or after mark(2).
 *                               stop (or end of file: a test that
 *                               ends closes the pipe)
 *                                         the threads stop; it prints
 *                                             done bad=<wrong values of every call>
 *                                         and exits 0, or 1 when a value
 *                                         was wrong.
 * mark(phase) is an ordinary C function (PROBED) that does nothing.
 * Bad usage: a message on stderr, exit 64. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define THREADS 8

/* shapes.S */
long call_ret1(long v);
int three(int x);
int loop2(int x);
int call0(int x);
int call2(int x);
int jtab(int x);
int push1(int x);
int evict(int x, int acc);

PROBED void mark(int phase)
{
    (void)phase;
    BARRIER();
}

PROBED int plain(int x)
{
    BARRIER();
    return 2 * x + 1;
}

static long do_ret1(long x) { return call_ret1(x); }
static long do_three(long x) { return three((int)x); }
static long do_loop2(long x) { return loop2((int)x); }
static long do_call0(long x) { return call0((int)x); }
static long do_call2(long x) { return call2((int)x); }
static long do_jtab(long x) { return jtab((int)x); }
static long do_push1(long x) { return push1((int)x); }
static long do_evict(long x) { return evict((int)x, 0); }
static long do_plain(long x) { return plain((int)x); }

static long same(long x) { return x; }
static long triangle(long x) { return x * (x + 1) / 2; }
static long plus10(long x) { return x + 10; }
static long cases(long x) { return x + 11 * ((x & 3) + 1); }
static long odd(long x) { return 2 * x + 1; }

struct site {
    const char *name;
    long (*call)(long x);
    long (*expect)(long x);
};

static const struct site SITES[] = {
    {"ret1", do_ret1, same},
    {"three", do_three, same},
    {"loop2", do_loop2, triangle},
    {"call0", do_call0, plus10},
    {"call2", do_call2, plus10},
    {"jtab", do_jtab, cases},
    {"push1", do_push1, triangle},
    {"evict", do_evict, triangle},
    {"plain", do_plain, odd},
};

#define NSITES (sizeof SITES / sizeof SITES[0])

static const struct site *chosen[NSITES];
static int nchosen;

__attribute__((noreturn)) static void usage(void)
{
    fprintf(stderr, "usage: shapes launch N SITE... | one N SITE | attach SITE...\n");
    exit(64);
}

static const struct site *site_named(const char *name)
{
    for (size_t i = 0; i < NSITES; i++)
        if (strcmp(SITES[i].name, name) == 0)
            return &SITES[i];
    fprintf(stderr, "shapes: no site %s\n", name);
    exit(64);
}

static long parse_count(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || n < 0 || n > 100000000)
        usage();
    return n;
}

static void choose(int argc, char **argv)
{
    if (argc < 1 || argc > (int)NSITES)
        usage();
    for (int i = 0; i < argc; i++)
        chosen[nchosen++] = site_named(argv[i]);
}

/* Call i of thread t. */
static long input(int t, long i)
{
    return 1 + (7 * t + i) % 13;
}

/* Calls `s` with input(t, i) and checks the value; adds it to *sum. */
static void call_once(const struct site *s, int t, long i, long *sum, long *bad)
{
    long x = input(t, i);
    long v = s->call(x);
    if (v != s->expect(x))
        (*bad)++;
    *sum += v;
}

/* ---- launch: each site in turn, 8 threads, N calls each ---- */

static pthread_barrier_t start;
static const struct site *current;
static long per_thread;

struct result {
    long sum;
    long bad;
};

static void *launch_thread(void *arg)
{
    int t = (int)(long)arg;
    struct result *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    pthread_barrier_wait(&start);
    for (long i = 0; i < per_thread; i++)
        call_once(current, t, i, &r->sum, &r->bad);
    return r;
}

static int run_launch(long n)
{
    long all_bad = 0;
    per_thread = n;
    for (int k = 0; k < nchosen; k++) {
        pthread_t tids[THREADS];
        long sum = 0, bad = 0;
        current = chosen[k];
        pthread_barrier_init(&start, NULL, THREADS);
        for (long t = 0; t < THREADS; t++)
            if (pthread_create(&tids[t], NULL, launch_thread, (void *)t) != 0)
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
        printf("%s calls=%ld sum=%ld bad=%ld\n", current->name, THREADS * n, sum, bad);
        all_bad += bad;
    }
    return all_bad != 0;
}

/* ---- one: the main thread alone ---- */

static int run_one(long n)
{
    long sum = 0, bad = 0;
    mark(1);
    for (long i = 0; i < n; i++)
        call_once(chosen[0], 0, i, &sum, &bad);
    mark(2);
    printf("%s calls=%ld sum=%ld bad=%ld\n", chosen[0]->name, n, sum, bad);
    return bad != 0;
}

/* ---- attach: hammering, counted phases, stop ---- */

enum phase { HAMMER, COUNT, STOP };

static _Atomic int phase = HAMMER;
static _Atomic long running;
static pthread_barrier_t sync_all; /* the workers and the main thread */
static long count_n;
static long counted_sum[THREADS][NSITES];
static long bad_total[THREADS];

static void *attach_thread(void *arg)
{
    int t = (int)(long)arg;
    long i = 0, ignored = 0;
    atomic_fetch_add(&running, 1);
    for (;;) {
        while (atomic_load_explicit(&phase, memory_order_relaxed) == HAMMER) {
            for (int k = 0; k < nchosen; k++)
                call_once(chosen[k], t, i, &ignored, &bad_total[t]);
            i++;
        }
        pthread_barrier_wait(&sync_all); /* A: out of the hammer loop */
        if (atomic_load(&phase) == STOP)
            return NULL;
        pthread_barrier_wait(&sync_all); /* B: mark(1) called */
        for (int k = 0; k < nchosen; k++) {
            long sum = 0;
            for (long j = 0; j < count_n; j++)
                call_once(chosen[k], t, j, &sum, &bad_total[t]);
            counted_sum[t][k] = sum;
        }
        pthread_barrier_wait(&sync_all); /* C: every call made */
        pthread_barrier_wait(&sync_all); /* D: mark(2) called, HAMMER again */
    }
}

/* Stops the hammering: every worker is out of its loop, at barrier A. */
static void gather(enum phase next)
{
    atomic_store(&phase, next);
    pthread_barrier_wait(&sync_all);
}

static int run_attach(void)
{
    pthread_t tids[THREADS];
    char line[128];
    pthread_barrier_init(&sync_all, NULL, THREADS + 1);
    for (long t = 0; t < THREADS; t++)
        if (pthread_create(&tids[t], NULL, attach_thread, (void *)t) != 0)
            abort();
    while (atomic_load(&running) < THREADS)
        ;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        if (!fgets(line, sizeof line, stdin))
            break;
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "stop") == 0)
            break;
        if (strncmp(line, "count ", 6) != 0) {
            fprintf(stderr, "shapes: unknown command %s\n", line);
            continue;
        }
        count_n = parse_count(line + 6);
        gather(COUNT);                   /* A */
        mark(1);
        pthread_barrier_wait(&sync_all); /* B */
        pthread_barrier_wait(&sync_all); /* C */
        mark(2);
        atomic_store(&phase, HAMMER);
        pthread_barrier_wait(&sync_all); /* D */
        for (int k = 0; k < nchosen; k++) {
            long sum = 0;
            for (int t = 0; t < THREADS; t++)
                sum += counted_sum[t][k];
            printf("counted %s calls=%ld sum=%ld\n", chosen[k]->name, THREADS * count_n, sum);
        }
        fflush(stdout);
    }
    gather(STOP);
    long bad = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(tids[t], NULL);
        bad += bad_total[t];
    }
    printf("done bad=%ld\n", bad);
    return bad != 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    if (strcmp(argv[1], "launch") == 0 && argc >= 4) {
        long n = parse_count(argv[2]);
        choose(argc - 3, argv + 3);
        return run_launch(n);
    }
    if (strcmp(argv[1], "one") == 0 && argc == 4) {
        long n = parse_count(argv[2]);
        choose(1, argv + 3);
        return run_one(n);
    }
    if (strcmp(argv[1], "attach") == 0 && argc >= 3) {
        choose(argc - 2, argv + 2);
        return run_attach();
    }
    usage();
}
