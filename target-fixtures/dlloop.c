/* dlloop: a library loaded and unloaded in a loop.
 *
 * Exercises: rtrace killed (SIGKILL) while it traces with fast probes a
 * program whose dynamic linker keeps reporting new link maps: rtrace's own
 * hook at `_dl_debug_state` must go on without it, and no probe of the
 * library may be left an int3 (rtrace places them as jumps straight away).
 *
 * Usage: dlloop PATH_TO_LIBPLUG_SO STOPFILE
 * Prints "ready" once. Then, until STOPFILE exists: dlopens the library
 * (RTLD_NOW), calls plugin_fn(i) (= i + 100) and work(i) (= 2i + 1),
 * dlcloses it. At the end it prints "loads=N ok" (or "bad" when a result
 * is wrong) and exits 0 (1 when bad). If the library or the symbol cannot
 * be found: the dl error on stderr, exit status 1. */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: dlloop PATH_TO_LIBPLUG_SO STOPFILE\n");
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    long loads = 0, sum = 0, want = 0;
    for (int i = 0; access(argv[2], F_OK) != 0; i = (i + 1) % 1000) {
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
        sum += plugin_fn(i) + work(i);
        want += i + 100 + 2 * i + 1;
        dlclose(lib);
        loads++;
    }
    printf("loads=%ld %s\n", loads, sum == want ? "ok" : "bad");
    return sum == want ? 0 : 1;
}
