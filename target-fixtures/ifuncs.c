/* ifuncs: IFUNCs, libc's and the program's own.
 *
 * Exercises: probing `strlen` (a glibc IFUNC) must trace the implementation
 * the dynamic linker picked, for calls through the PLT and through a
 * function pointer alike; probing the program's own IFUNC `pick` must trace
 * `pick_impl`, the implementation its resolver returns (`pick_unused` is
 * never chosen).
 *
 * Calls, exactly: strlen 6 times (5 direct, through the PLT, and 1 through a
 * pointer); pick 4 times.
 *
 * Usage: ifuncs   (no arguments)
 * Output (stdout), exactly:
 *     total=18
 *     picked=10
 * Exit status 0. */
#include <stdio.h>
#include <string.h>

#include "fixture.h"

PROBED int pick_impl(int x) { return x; }
PROBED int pick_unused(int x) { return -x; }

typedef int pick_fn(int);
static pick_fn *resolve_pick(void) { return pick_impl; }
int pick(int x) __attribute__((ifunc("resolve_pick")));

int main(void) {
    const char *words[] = {"a", "bb", "ccc", "dddd", "eeeee"};
    size_t total = 0;
    for (int i = 0; i < 5; i++)
        total += strlen(words[i]);
    size_t (*volatile by_pointer)(const char *) = strlen;
    total += by_pointer("xyz");
    int picked = 0;
    for (int i = 1; i <= 4; i++)
        picked += pick(i);
    printf("total=%zu\npicked=%d\n", total, picked);
    return 0;
}
