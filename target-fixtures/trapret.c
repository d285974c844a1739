/* trapret: a tail call into a function that reads its own return address,
 * from a call whose return address is an int3 of the program's own.
 *
 * call_then_trap (assembly) calls relay(x), and the instruction its call
 * returns to is an int3: the program's SIGTRAP handler counts it, and the
 * program goes on past it. relay tail-calls _dl_mcount_wrapper_check, one of
 * the names of functions that read their own return address (glibc's own is
 * never called by this program; this one is the program's). Its first
 * instruction is `push %rbp`: run from its second byte, the function
 * returns to the wrong address.
 *
 * Usage: trapret N
 * Runs call_then_trap(i) for i = 0..N-1. Output (stdout), exactly:
 * "sum=S traps=N\n" where S is the sum of i + 1. Exit status 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int call_then_trap(int x);
__asm__(".text\n"
        ".globl call_then_trap\n"
        ".type call_then_trap, @function\n"
        "call_then_trap:\n"
        "    .cfi_startproc\n"
        "    sub $8, %rsp\n"
        "    .cfi_adjust_cfa_offset 8\n"
        "    call relay\n"
        "    int3\n"
        "    add $8, %rsp\n"
        "    .cfi_adjust_cfa_offset -8\n"
        "    ret\n"
        "    .cfi_endproc\n"
        ".size call_then_trap, .-call_then_trap\n"
        "\n"
        ".globl relay\n"
        ".type relay, @function\n"
        "relay:\n"
        "    jmp _dl_mcount_wrapper_check\n"
        ".size relay, .-relay\n"
        "\n"
        ".globl _dl_mcount_wrapper_check\n"
        ".type _dl_mcount_wrapper_check, @function\n"
        "_dl_mcount_wrapper_check:\n"
        "    push %rbp\n"
        "    mov %rsp, %rbp\n"
        "    lea 1(%rdi), %eax\n"
        "    pop %rbp\n"
        "    ret\n"
        ".size _dl_mcount_wrapper_check, .-_dl_mcount_wrapper_check\n");

static volatile sig_atomic_t traps;

static void on_trap(int sig)
{
    (void)sig;
    traps = traps + 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: trapret N\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_trap;
    sigaction(SIGTRAP, &sa, NULL);
    long n = atol(argv[1]), sum = 0;
    for (long i = 0; i < n; i++)
        sum += call_then_trap((int)i);
    printf("sum=%ld traps=%d\n", sum, (int)traps);
    return 0;
}
