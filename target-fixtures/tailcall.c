/* tailcall: a probed function that tail-jumps to another probed function.
 *
 * Exercises: return probes on both ends of a tail call. mid's return
 * address was rewritten when leaf is entered through a jmp, so leaf finds
 * the trampoline in its return slot: both returns must be reported, leaf's
 * first, with the same value, and the program must run as untraced.
 *
 * mid(x) is `add $1, %edi; jmp leaf` and leaf(x) returns x + 100 (written
 * in assembly so the compiler cannot change the tail call).
 *
 * Usage: tailcall   (no arguments)
 * Calls mid(5), mid(7) and leaf(1).
 * Output (stdout), exactly: "tail=106,108,101\n", exit status 0. */
#include <stdio.h>

__asm__(".text\n"
        ".globl leaf\n"
        ".type leaf, @function\n"
        "leaf:\n"
        "    lea 100(%rdi), %eax\n"
        "    ret\n"
        ".size leaf, .-leaf\n"
        ".globl mid\n"
        ".type mid, @function\n"
        "mid:\n"
        "    add $1, %edi\n"
        "    jmp leaf\n"
        ".size mid, .-mid\n");
int leaf(int x);
int mid(int x);

int main(void)
{
    int a = mid(5);
    int b = mid(7);
    int c = leaf(1);
    printf("tail=%d,%d,%d\n", a, b, c);
    return 0;
}
