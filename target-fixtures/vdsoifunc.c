/* vdsoifunc: calls an IFUNC of a library whose resolver returns the vDSO's
 * time (libvdso's kernel_time), through the PLT, lazily bound.
 *
 * Exercises: a probe on an IFUNC whose implementation is the kernel's code
 * in the vDSO: rtrace cannot place it there, says so in those words, and
 * the program runs as untraced.
 *
 * Usage: vdsoifunc
 * Output (stdout), exactly: "ok\n" (kernel_time agreed with time within a
 * second, three calls); exit status 0. */
#include <stdio.h>
#include <time.h>

time_t kernel_time(time_t *t);

int main(void)
{
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        time_t k = kernel_time(NULL);
        time_t t = time(NULL);
        if (t - k > 1 || k - t > 1)
            ok = 0;
    }
    printf(ok ? "ok\n" : "differ\n");
    return ok ? 0 : 1;
}
