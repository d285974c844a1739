/* clones: functions GCC clones at -O2 with a calling convention of its own.
 *
 * Exercises: `scale` is cloned by IPA-SRA and constant propagation
 * (scale.constprop.0.isra.0 at -O2): its unused first parameter is dropped,
 * `c` is replaced by the `c->b` it is read for, `k` moves to another
 * register; `pick` is cloned for its constant first argument
 * (pick.constprop.0): `mode` is always 3 and not passed at all. At -O0
 * neither is cloned.
 *
 * Usage: clones [B]   (B: the value of c.b, default 5)
 * Output (stdout), exactly: the sum, over i = 0, 1, 2, of B * (i + 1) and
 * 2 * i: 36 by default, then a newline.
 * Exit status: 0. */
#include <stdio.h>
#include <stdlib.h>

struct cfg {
    int a;
    int b;
    long pad[8];
};

static __attribute__((noinline)) int scale(__attribute__((unused)) int unused, const struct cfg *c, int k)
{
    return c->b * k;
}

static __attribute__((noinline)) int pick(int mode, int v)
{
    return mode == 3 ? v * 2 : v - 1;
}

int main(int argc, char **argv)
{
    struct cfg c = {1, atoi(argc > 1 ? argv[1] : "5"), {0}};
    int r = 0;
    for (int i = 0; i < 3; i++)
        r += scale(i, &c, i + 1) + pick(3, i);
    printf("%d\n", r);
    return 0;
}
