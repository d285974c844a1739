/* coroutine: probed calls in flight on two stacks at once.
 *
 * Exercises: swapcontext between the main stack and a coroutine's stack
 * (malloc'd, far below it) while probed calls are in flight on both. A
 * return on one stack says nothing about the calls on the other: they
 * stay in flight, and each returns, exactly once, when its stack runs
 * again.
 *
 * resume_co(x) switches to the coroutine and returns 2x when it yields
 * back; in the coroutine, co_body() calls co_yield_in(i) for i = 0..2,
 * which yields to main and returns i + 1 when resumed.
 *
 * Usage: coroutine   (no arguments)
 * Output (stdout), exactly:
 *     co s=6
 *     t=12 yields=3
 * Exit status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include "fixture.h"

static ucontext_t main_ctx, co_ctx;
static int yields;

PROBED int co_yield_in(int x)
{
    yields++;
    swapcontext(&co_ctx, &main_ctx);
    return x + 1;
}

PROBED void co_body(void)
{
    int s = 0;
    for (int i = 0; i < 3; i++)
        s += co_yield_in(i);
    printf("co s=%d\n", s);
}

PROBED int resume_co(int x)
{
    swapcontext(&main_ctx, &co_ctx);
    return x * 2;
}

int main(void)
{
    size_t size = 256 * 1024;
    char *stack = malloc(size);
    getcontext(&co_ctx);
    co_ctx.uc_stack.ss_sp = stack;
    co_ctx.uc_stack.ss_size = size;
    co_ctx.uc_link = &main_ctx;
    makecontext(&co_ctx, co_body, 0);
    int t = 0;
    for (int i = 0; i < 4; i++)
        t += resume_co(i);
    printf("t=%d yields=%d\n", t, yields);
    free(stack);
    return 0;
}
