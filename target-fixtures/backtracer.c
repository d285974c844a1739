/* backtracer: glibc backtrace() called inside probed functions.
 *
 * Exercises: a program walking its own stack while return probes have
 * rewritten return addresses in it. It must see the frames it sees
 * untraced, never the trampoline.
 *
 * main -> level1 -> level2, which calls backtrace(). Each frame in the
 * executable is printed as its distance from main's address (the same in
 * every run of one build, whatever the load address), other frames as
 * "lib" (libc's start code) or "other" (anywhere else: a trampoline).
 *
 * Usage: backtracer   (no arguments)
 * Output (stdout): one line "frames=" and the list, the same traced and
 * untraced; then "level1=3". Exit status 0. */
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"

extern char __executable_start[], etext[];
int main(void);

static void show(void)
{
    void *frames[32];
    int n = backtrace(frames, 32);
    printf("frames=");
    for (int i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)frames[i];
        if (a >= (uintptr_t)__executable_start && a < (uintptr_t)etext)
            printf("%s%+ld", i ? "," : "", (long)(a - (uintptr_t)main));
        else {
            FILE *maps = fopen("/proc/self/maps", "r");
            char line[512];
            const char *what = "other";
            while (maps && fgets(line, sizeof line, maps)) {
                uintptr_t lo, hi;
                char path[256] = "";
                if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &lo, &hi, path) >= 2 &&
                    a >= lo && a < hi && path[0] == '/') {
                    what = "lib";
                    break;
                }
            }
            if (maps)
                fclose(maps);
            printf("%s%s", i ? "," : "", what);
        }
    }
    printf("\n");
}

PROBED int level2(int x)
{
    show();
    return x + 1;
}

PROBED int level1(int x)
{
    return level2(x) + 1;
}

int main(void)
{
    printf("level1=%d\n", level1(1));
    return 0;
}
