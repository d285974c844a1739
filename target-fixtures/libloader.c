/* libloader: a plugin loader whose RUNPATH is $ORIGIN (built with
 * -Wl,-rpath,'$ORIGIN' -Wl,--enable-new-dtags): it dlopens "libsecond.so"
 * by bare name, which only its own RUNPATH finds.
 *
 * Exercises: dlopen takes the RUNPATH of its caller's module, the module
 * its return address lies in. Were that the trampoline (a return probe on
 * dlopen), or the fast return stub, or the trampoline left there by a
 * probed function that jumps to dlopen (a tail call), dlopen would search
 * the program's paths and fail.
 *
 * Built with -shared -fPIC into libloader.so. Exports:
 * - load_plugin(name): dlopen(name, RTLD_NOW), by a call;
 * - load_tail(name): `mov $RTLD_NOW, %esi; jmp dlopen@PLT` (assembly, so
 *   every build keeps the tail call);
 * - load_again(name): calls load_tail(name), so that dlopen's caller is
 *   load_again, in this library.
 * Each returns the handle, or NULL. */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "fixture.h"

__asm__(".text\n"
        ".globl load_tail\n"
        ".type load_tail, @function\n"
        "load_tail:\n"
        "    mov $2, %esi\n" /* RTLD_NOW */
        "    jmp dlopen@PLT\n"
        ".size load_tail, .-load_tail\n");
void *load_tail(const char *name);

PROBED void *load_plugin(const char *name)
{
    void *h = dlopen(name, RTLD_NOW);
    BARRIER();
    return h;
}

PROBED void *load_again(const char *name)
{
    void *h = load_tail(name);
    BARRIER();
    return h;
}
