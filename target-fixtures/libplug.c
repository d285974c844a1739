/* libplug: the shared library that dlopener loads at run time.
 *
 * Exercises: a probe on a module that is not loaded at startup
 * (libplug:plugin_fn stays pending and arms at dlopen).
 *
 * Built with -shared -fPIC into libplug.so. Exports plugin_fn(x) = x + 100. */
#include "fixture.h"

PROBED int plugin_fn(int x)
{
    BARRIER();
    return x + 100;
}
