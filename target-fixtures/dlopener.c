/* dlopener: loads a library after startup.
 *
 * Exercises: pending probes that arm when their library is dlopen()ed.
 *
 * Usage: dlopener PATH_TO_LIBPLUG_SO
 * dlopens the library (RTLD_NOW), finds plugin_fn with dlsym and calls
 * plugin_fn(1), plugin_fn(2), plugin_fn(3) (each returns x + 100).
 * Output (stdout), exactly: "plug=306\n", exit status 0.
 * If the library or the symbol cannot be found: the dl error on stderr,
 * exit status 1. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: dlopener PATH_TO_LIBPLUG_SO\n");
        return 64;
    }

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

    int sum = 0;
    for (int i = 1; i <= 3; i++)
        sum += plugin_fn(i);
    printf("plug=%d\n", sum);
    return 0;
}
