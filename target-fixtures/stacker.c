/* stacker: known call chains, for walking user stacks.
 *
 * Exercises: --stack, --folded and --flamegraph on code built without
 * frame pointers (the harness always adds -fomit-frame-pointer, at -O0
 * and -O2 through the variant matrix), through libc, and through a
 * function that has a frame pointer but no call frame information.
 * c is the function to probe; every chain ends in it:
 *
 *   main -> a -> b -> c                    N times
 *   main -> through_fp -> b -> c           once (through_fp is hand-written:
 *            push %rbp; mov %rsp,%rbp; call b; no CFI, no line)
 *   main -> qsort (libc) -> cmp -> c       once (two elements: exactly one
 *            comparison)
 *
 * Lines of the calls, which the return addresses name: main calls a at
 * line 77, through_fp at 80, qsort at 83; a calls b at 44; b calls c at 37;
 * cmp calls c at 53. c's first instruction is on line 30 at -O0, on line
 * 32 (its body) at -O2. Every call is followed by BARRIER(), so none is a
 * tail call and every caller keeps its frame.
 *
 * Usage: stacker [N]   (N defaults to 1)
 * Output (stdout), exactly: "sum=<9*N>\nfp=12\nsorted=1,2\n"; exit status 0.
 * (c(x) = 3x, b(x) = c(x+1), a(x) = b(2x): a(1) = 9; through_fp(3) = b(3).) */
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

PROBED int c(int x)
{
    BARRIER();
    return 3 * x;
}

PROBED int b(int x)
{
    int r = c(x + 1);
    BARRIER();
    return r;
}

PROBED int a(int x)
{
    int r = b(2 * x);
    BARRIER();
    return r;
}

int through_fp(int x);

PROBED int cmp(const void *p, const void *q)
{
    int r = c(*(const int *)p - *(const int *)q);
    BARRIER();
    return r;
}

/* In a section of its own, so no line-table sequence of this file covers
 * it: no line, no CFI, a frame pointer. */
__asm__(".pushsection .text.through_fp, \"ax\", @progbits\n"
        ".globl through_fp\n"
        ".type through_fp, @function\n"
        "through_fp:\n"
        "    push %rbp\n"
        "    mov %rsp, %rbp\n"
        "    call b\n"
        "    pop %rbp\n"
        "    ret\n"
        ".size through_fp, .-through_fp\n"
        ".popsection\n");

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    int sum = 0;
    for (int i = 0; i < n; i++) {
        sum += a(1);
        BARRIER();
    }
    int fp = through_fp(3);
    BARRIER();
    int v[2] = {2, 1};
    qsort(v, 2, sizeof v[0], cmp);
    BARRIER();
    printf("sum=%d\nfp=%d\nsorted=%d,%d\n", sum, fp, v[0], v[1]);
    return 0;
}
