/* dlhammer: threads hitting a probe while libraries come and go.
 *
 * Exercises: rtrace changing the process (arming the probes of a library
 * dlopen brings, and with --fast writing detours near it, by system calls
 * it makes the program run) while other threads keep hitting breakpoints
 * and returning through the trampoline. A thread interrupted just after
 * one of rtrace's int3s has that trap pending, and must not be handed it as
 * the program's own.
 *
 * Usage: dlhammer PATH_TO_LIBPLUG_SO THREADS LOADS
 * THREADS threads (1..64) call hot(i) for i = 0, 1, 2… until the main
 * thread is done; hot(x) returns x and begins with pushfq (so a fast
 * probe cannot replace it: it stays an int3 breakpoint, and its returns go
 * through the trampoline). Once every thread has made a call, the main
 * thread LOADS times dlopens the library (RTLD_NOW), calls plugin_fn(1),
 * plugin_fn(2), plugin_fn(3) and dlcloses it.
 * Output (stdout), exactly: "calls=<hot() calls made> plug=<306 * LOADS>
 * ok\n" (or "bad" for "ok" when some hot() returned a wrong value), exit
 * status 0 (1 when bad). If the library or the symbol cannot be found: the
 * dl error on stderr, exit status 1. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static atomic_int started;
static atomic_int done;
static atomic_long calls;
static atomic_int bad;

/* long hot(long x) { return x; }, after a pushfq/popfq pair: a first
 * instruction that moves the flags through the stack never runs in a
 * detour, so hot stays an int3 probe. */
long hot(long x);
__asm__(".text\n"
        ".globl hot\n"
        ".type hot, @function\n"
        "hot:\n"
        "\tpushfq\n"
        "\tpopfq\n"
        "\tmov %rdi, %rax\n"
        "\tret\n"
        ".size hot, .-hot\n");

static void *worker(void *arg)
{
    (void)arg;
    long i = 0;
    do {
        if (hot(i) != i)
            atomic_store(&bad, 1);
        if (i++ == 0)
            atomic_fetch_add(&started, 1);
    } while (!atomic_load(&done));
    atomic_fetch_add(&calls, i);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: dlhammer PATH_TO_LIBPLUG_SO THREADS LOADS\n");
        return 64;
    }
    int threads = atoi(argv[2]);
    int loads = atoi(argv[3]);
    if (threads < 1 || threads > 64 || loads < 1) {
        fprintf(stderr, "dlhammer: bad THREADS or LOADS\n");
        return 64;
    }
    pthread_t tids[64];
    for (int t = 0; t < threads; t++)
        pthread_create(&tids[t], NULL, worker, NULL);
    while (atomic_load(&started) < threads)
        ;
    long plug = 0;
    for (int r = 0; r < loads; r++) {
        void *lib = dlopen(argv[1], RTLD_NOW);
        if (lib == NULL) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        int (*plugin_fn)(int) = (int (*)(int))dlsym(lib, "plugin_fn");
        if (plugin_fn == NULL) {
            fprintf(stderr, "dlsym: %s\n", dlerror());
            return 1;
        }
        for (int i = 1; i <= 3; i++)
            plug += plugin_fn(i);
        dlclose(lib);
    }
    atomic_store(&done, 1);
    for (int t = 0; t < threads; t++)
        pthread_join(tids[t], NULL);
    int ok = !atomic_load(&bad);
    printf("calls=%ld plug=%ld %s\n", atomic_load(&calls), plug, ok ? "ok" : "bad");
    return ok ? 0 : 1;
}
