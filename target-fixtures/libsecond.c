/* libsecond: the library libloader opens by its bare name, found only
 * through libloader's RUNPATH ($ORIGIN): it lies next to libloader.so, in
 * no directory the program or the system searches.
 *
 * Built with -shared -fPIC into libsecond.so. Exports second_value() = 42. */
#include "fixture.h"

PROBED int second_value(void)
{
    BARRIER();
    return 42;
}
