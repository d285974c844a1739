/* abi: arguments and return values whose place the SysV convention fixes by
 * size, class and alignment.
 *
 * Exercises: a 16-byte-aligned aggregate on the stack after an odd number
 * of eightbytes (`struct w` holds an __int128; `struct al` is aligned by a
 * member's _Alignas), so it starts 16 bytes in and the next argument after
 * it; a struct of two integers returned in rax:rdx; an __int128 returned in
 * rax:rdx; a struct passed in memory (its address is shown); a struct
 * returned in memory (rax is its buffer); a struct split between a vector
 * and an integer register.
 *
 * Usage: abi   (no arguments)
 * Output (stdout), exactly (BIG is the address of in_memory's parameter `b`
 * as in_memory sees it, RES the address of main's `res`, both %p):
 *     wide_on_stack=80
 *     aligned_on_stack=91
 *     pair=4,5
 *     wide_ret=1:7
 *     in_memory_at=BIG
 *     in_memory=36
 *     res_at=RES
 *     make_big=7,8,9
 *     mixed_regs=45
 * Exit status: 0. */
#include <stdio.h>

#include "fixture.h"

struct w {
    __int128 v;
};

struct al {
    _Alignas(16) long a;
    long b;
};

struct two {
    long a, b;
};

struct big {
    long a, b, c;
};

struct mix {
    double d;
    long l;
};

/* a..f fill the six registers; s is the first stack eightbyte, x (16-byte
 * aligned) the next two after padding, h the one after. */
PROBED long wide_on_stack(long a, long b, long c, long d, long e, long f, int s, struct w x,
                          int h)
{
    BARRIER();
    return a + b + c + d + e + f + s + (long)x.v + h;
}

PROBED long aligned_on_stack(long a, long b, long c, long d, long e, long f, int s, struct al x,
                             short h)
{
    BARRIER();
    return a + b + c + d + e + f + s + x.a + x.b + h;
}

PROBED struct two pair(long a)
{
    BARRIER();
    struct two t = {a, a + 1};
    return t;
}

PROBED unsigned __int128 wide_ret(unsigned long hi, unsigned long lo)
{
    BARRIER();
    return ((unsigned __int128)hi << 64) | lo;
}

PROBED long in_memory(struct big b, long x)
{
    BARRIER();
    printf("in_memory_at=%p\n", (void *)&b);
    return b.a + b.b + b.c + x;
}

PROBED struct big make_big(long a)
{
    BARRIER();
    struct big t = {a, a + 1, a + 2};
    return t;
}

PROBED long mixed_regs(struct mix m, int k)
{
    BARRIER();
    return (long)m.d + m.l + k;
}

int main(void)
{
    struct w x = {7};
    printf("wide_on_stack=%ld\n", wide_on_stack(1, 2, 3, 4, 5, 6, 50, x, 2));
    struct al y = {11, 12};
    printf("aligned_on_stack=%ld\n", aligned_on_stack(1, 2, 3, 4, 5, 6, 50, y, -3));
    struct two t = pair(4);
    printf("pair=%ld,%ld\n", t.a, t.b);
    unsigned __int128 v = wide_ret(1, 7);
    printf("wide_ret=%lu:%lu\n", (unsigned long)(v >> 64), (unsigned long)v);
    struct big b = {10, 11, 12};
    printf("in_memory=%ld\n", in_memory(b, 3));
    struct big res = make_big(7);
    printf("res_at=%p\n", (void *)&res);
    printf("make_big=%ld,%ld,%ld\n", res.a, res.b, res.c);
    struct mix m = {1.5, 42};
    printf("mixed_regs=%ld\n", mixed_regs(m, 2));
    return 0;
}
