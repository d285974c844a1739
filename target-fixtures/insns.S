/* insns: functions whose first instruction is each kind a breakpoint at
 * function entry must displace and step (or emulate) correctly.
 *
 * Exercises: probes on functions starting with a RIP-relative load, a call,
 * a jmp, a conditional jump (flags set by the caller), a ret, and a push.
 * Hand-written so the compiler cannot change the instructions.
 *
 *   rip_relative  movl answer(%rip), %eax     returns 42
 *   call_first    call helper                 returns helper() + 1 = 11
 *   jmp_first     jmp over a ud2              returns 3
 *   jcc_first     je taken (ZF=1 from caller) returns 4 (0 if not taken)
 *   ret_first     ret (caller put 5 in eax)   returns 5
 *   push_first    push %rbx                   returns 6
 *
 * Usage: insns   (no arguments)
 * Output (stdout), exactly, one line per function in that order:
 *     rip=42
 *     call=11
 *     jmp=3
 *     jcc=4
 *     ret=5
 *     push=6
 * Exit status 0. A wrongly stepped instruction shows as a wrong value, a
 * crash (ud2: SIGILL) or a jump into the weeds. */

        .section .note.GNU-stack, "", @progbits

        .data
answer: .long 42

        .section .rodata
fmt:        .string "%s=%d\n"
name_rip:   .string "rip"
name_call:  .string "call"
name_jmp:   .string "jmp"
name_jcc:   .string "jcc"
name_ret:   .string "ret"
name_push:  .string "push"

        .text

        .globl helper
        .type helper, @function
helper:
        movl $10, %eax
        ret
        .size helper, .-helper

        .globl rip_relative
        .type rip_relative, @function
rip_relative:
        movl answer(%rip), %eax
        ret
        .size rip_relative, .-rip_relative

        .globl call_first
        .type call_first, @function
call_first:
        call helper
        addl $1, %eax
        ret
        .size call_first, .-call_first

        .globl jmp_first
        .type jmp_first, @function
jmp_first:
        jmp 1f
        ud2
1:      movl $3, %eax
        ret
        .size jmp_first, .-jmp_first

        .globl jcc_first
        .type jcc_first, @function
jcc_first:
        je 1f
        movl $0, %eax
        ret
1:      movl $4, %eax
        ret
        .size jcc_first, .-jcc_first

        .globl ret_first
        .type ret_first, @function
ret_first:
        ret
        .size ret_first, .-ret_first

        .globl push_first
        .type push_first, @function
push_first:
        push %rbx
        movl $6, %eax
        pop %rbx
        ret
        .size push_first, .-push_first

/* report NAME: printf("%s=%d\n", NAME, eax) */
.macro report name
        movl %eax, %edx
        leaq \name(%rip), %rsi
        leaq fmt(%rip), %rdi
        xorl %eax, %eax
        call printf@PLT
.endm

        .globl main
        .type main, @function
main:
        push %rbx               /* 16-byte stack alignment for printf */

        call rip_relative
        report name_rip

        call call_first
        report name_call

        call jmp_first
        report name_jmp

        xorl %eax, %eax         /* sets ZF: jcc_first's je is taken */
        call jcc_first
        report name_jcc

        movl $5, %eax
        call ret_first
        report name_ret

        call push_first
        report name_push

        xorl %eax, %eax
        pop %rbx
        ret
        .size main, .-main
