/* pluginhost: loads the plugin loader libloader.so (by path), which loads
 * libsecond.so by bare name through its RUNPATH ($ORIGIN), once by a call
 * to dlopen and once through a tail call, closing it in between.
 *
 * Exercises: dlopen finds its caller's module (and so its $ORIGIN) from
 * its return address; see libloader.c.
 *
 * Usage: pluginhost PATH_TO_LIBLOADER_SO   (libsecond.so next to it)
 * Output (stdout), exactly: "second=42 again=42\n", exit status 0. When a
 * library or a symbol cannot be found: the dl error on stderr, exit
 * status 1. */
#include <dlfcn.h>
#include <stdio.h>

/* Loads libsecond.so with `load`, calls its second_value and closes it:
 * second_value's result, or -1 (the error on stderr). */
static int second(void *(*load)(const char *), const char *what)
{
    void *h = load("libsecond.so");
    if (h == NULL) {
        fprintf(stderr, "%s: %s\n", what, dlerror());
        return -1;
    }
    int (*second_value)(void) = (int (*)(void))dlsym(h, "second_value");
    if (second_value == NULL) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return -1;
    }
    int v = second_value();
    dlclose(h);
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: pluginhost PATH_TO_LIBLOADER_SO\n");
        return 64;
    }
    void *loader = dlopen(argv[1], RTLD_NOW);
    if (loader == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    void *(*load_plugin)(const char *) =
        (void *(*)(const char *))dlsym(loader, "load_plugin");
    void *(*load_again)(const char *) =
        (void *(*)(const char *))dlsym(loader, "load_again");
    if (load_plugin == NULL || load_again == NULL) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 1;
    }
    /* Each load finds libsecond afresh (it is closed in between, and a
     * library already loaded would be found by its name alone). */
    int first = second(load_plugin, "load_plugin");
    int again = second(load_again, "load_again");
    if (first < 0 || again < 0)
        return 1;
    printf("second=%d again=%d\n", first, again);
    return 0;
}
