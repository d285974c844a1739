/* libinterpose: a malloc interposer, the LD_PRELOAD kind: its malloc and
 * free find the next ones in the search order (libc's) with
 * dlsym(RTLD_NEXT, ...), and count the allocations of INTERPOSE_MARK bytes.
 *
 * Exercises: dlsym finds the module RTLD_NEXT starts after from its own
 * return address. Were that the trampoline (a return probe on dlsym), it
 * would find no module and return NULL.
 *
 * Built with -shared -fPIC into libinterpose.so; `interposer` links
 * against it, before libc. Exports malloc, free and interposed() (how many
 * allocations of INTERPOSE_MARK bytes it saw). When dlsym fails: one line
 * on stderr and exit status 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <unistd.h>

#include "fixture.h"

#define INTERPOSE_MARK 4242

static void *(*next_malloc)(size_t);
static void (*next_free)(void *);
static int resolving;
static unsigned long marked;

/* What dlsym itself allocates while it looks (its error, when it fails)
 * comes from here: the next malloc is not known yet. */
static char early[8192] __attribute__((aligned(16)));
static size_t early_used;

static void *next(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        static const char msg[] = "libinterpose: dlsym(RTLD_NEXT) found no malloc or free\n";
        if (write(2, msg, sizeof msg - 1) < 0)
            _exit(2);
        _exit(1);
    }
    return f;
}

static void resolve(void)
{
    resolving = 1;
    next_malloc = (void *(*)(size_t))next("malloc");
    next_free = (void (*)(void *))next("free");
    resolving = 0;
}

void *malloc(size_t n)
{
    if (next_malloc == NULL) {
        if (resolving) {
            size_t at = (early_used + 15) & ~(size_t)15;
            if (at + n > sizeof early)
                return NULL;
            early_used = at + n;
            return early + at;
        }
        resolve();
    }
    if (n == INTERPOSE_MARK)
        marked++;
    return next_malloc(n);
}

void free(void *p)
{
    if ((char *)p >= early && (char *)p < early + sizeof early)
        return;
    if (next_free == NULL) {
        if (resolving)
            return;
        resolve();
    }
    next_free(p);
}

PROBED unsigned long interposed(void)
{
    return marked;
}
