/* chain: calls made by tail calls, one and two deep, each function long
 * enough for a jump.
 *
 * Exercises: fast return probes on tail calls. outer(x) tail-jumps to
 * middle, which tail-jumps to inner: a call of outer is three calls that
 * all return with inner's `ret`. middle is also called directly (one tail
 * call deep). Counted in the program (`--fast -c`), the calls chained to a
 * timed call are timed with it.
 *
 * inner(x) = x + 100, middle(x) = inner(x + 1), outer(x) = middle(x + 2)
 * (written in assembly so the compiler cannot change the tail calls).
 *
 * Usage: chain [N]   N (default 1000) rounds of middle(i) and outer(i),
 * i = 0..N-1.
 * Output (stdout), exactly: "chain=<sum of all results>\n", exit status 0;
 * 64 for a bad argument. */
#include <stdio.h>
#include <stdlib.h>

__asm__(".text\n"
        ".globl inner\n"
        ".type inner, @function\n"
        "inner:\n"
        "    mov %edi, %eax\n"
        "    add $100, %eax\n"
        "    ret\n"
        ".size inner, .-inner\n"
        ".globl middle\n"
        ".type middle, @function\n"
        "middle:\n"
        "    add $1, %edi\n"
        "    jmp inner\n"
        ".size middle, .-middle\n"
        ".globl outer\n"
        ".type outer, @function\n"
        "outer:\n"
        "    add $2, %edi\n"
        "    jmp middle\n"
        ".size outer, .-outer\n");
int inner(int x);
int middle(int x);
int outer(int x);

int main(int argc, char **argv)
{
    long n = 1000;
    if (argc > 1) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (*end || n < 0)
            return 64;
    }
    long sum = 0;
    for (long i = 0; i < n; i++)
        sum += middle((int)i) + outer((int)i);
    printf("chain=%ld\n", sum);
    return 0;
}
