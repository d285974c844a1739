/* longjmper: probed calls that never return normally.
 *
 * Exercises: return probes skipped by longjmp: an entry whose return is
 * never seen produces no return event, and the stale return instances must
 * be dropped (kretprobe longjmp cleanup) so later calls still pair up.
 *
 * Usage: longjmper   (no arguments)
 * Three rounds: setjmp, then escape(3) -> escape(2) -> escape(1) ->
 * escape(0), which longjmps back to main. Then work(7) returns 15 normally.
 * Output (stdout), exactly:
 *     jumps=3
 *     work=15
 * Exit status 0. */
#include <setjmp.h>
#include <stdio.h>

#include "fixture.h"

static jmp_buf env;
static volatile int armed;   /* set while a setjmp target is live */

PROBED int escape(int depth)
{
    BARRIER();
    if (depth > 0)
        return escape(depth - 1) + 1;
    if (armed)
        longjmp(env, 1);
    return 0;
}

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

int main(void)
{
    volatile int jumps = 0;
    volatile int round;
    for (round = 0; round < 3; round++) {
        armed = 1;
        if (setjmp(env) == 0)
            escape(3);
        else
            jumps++;
        armed = 0;
    }
    printf("jumps=%d\n", jumps);
    printf("work=%d\n", work(7));
    return 0;
}
