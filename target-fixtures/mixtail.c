/* mixtail: a chain of tail calls through a probe that stays an int3
 * breakpoint, between two that are fast.
 *
 * Exercises: an int3 entry whose return slot holds the fast return stub
 * (its caller, a fast call, jumped to it), itself jumping to a fast probe:
 * all three return together through the stub, each reported once, and no
 * return lost (the int3 call once wrote its trampoline over the stub, and
 * the last call's detour then took over the first call's table entry).
 *
 * outer(x) = middle(x) by a tail call (jmp), middle(x) = inner(x) by a tail
 * call, inner(x) = x + 1; middle begins with pushfq/popfq (a first
 * instruction that moves the flags through the stack never runs in a
 * detour: it stays an int3 probe). main calls outer(i) for i = 0..N-1.
 *
 * Usage: mixtail [N]   (default 1000)
 * Output (stdout), exactly: "sum=<N(N+1)/2>". Exit status 0. */
#include <stdio.h>
#include <stdlib.h>

long outer(long x), middle(long x), inner(long x);

__asm__(".intel_syntax noprefix\n"
        ".text\n"
        ".p2align 4\n"
        ".globl outer\n"
        ".type outer,@function\n"
        "outer:\n"
        "mov rax, rdi\n"
        "nop dword ptr [rax]\n"
        "jmp middle\n"
        ".size outer,.-outer\n"
        ".p2align 4\n"
        ".globl middle\n"
        ".type middle,@function\n"
        "middle:\n"
        "pushfq\n"
        "popfq\n"
        "mov rax, rdi\n"
        "jmp inner\n"
        ".size middle,.-middle\n"
        ".p2align 4\n"
        ".globl inner\n"
        ".type inner,@function\n"
        "inner:\n"
        "lea rax, [rdi + 1]\n"
        "nop dword ptr [rax]\n"
        "ret\n"
        ".size inner,.-inner\n"
        ".att_syntax prefix\n");

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    long sum = 0;
    for (long i = 0; i < n; i++)
        sum += outer(i);
    printf("sum=%ld\n", sum);
    return 0;
}
