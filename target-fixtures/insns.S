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
 *   endbr_first   endbr64                     returns 7
 *   frame_first   mov %rsp,%rbp (rbp saved by the caller)   returns 8
 *   sub_first     sub $0x18,%rsp              returns 9
 *   store_first   movl %edi, slot(%rip)       returns 10 (reads it back)
 *   lea_first     leaq answer(%rip), %rax     returns 42 (through the pointer)
 *   icall_first   call *helper_ptr(%rip)      returns helper() + 2 = 12
 *   ijmp_first    jmp *%rax (rax = its label) returns 13
 *   syscall_first syscall (getpid, rax = 39)  returns 1 when it matches getpid()
 *   rep_first     rep movsb (3 bytes)         returns 14 (copied bytes' sum)
 *   jnc_first     jne not taken (ZF=1)        returns 15
 *   xor_first     xor %eax,%eax               returns 16 (0 + 16)
 *   pushf_first   pushfq                      returns 17 when the pushed flags
 *                                             have no trap flag (0 otherwise)
 *   nop_first     nopl 0(%rax,%rax,1)         returns 18
 *
 * Usage: insns   (no arguments)
 * Output (stdout), exactly, one line per function in that order:
 *     rip=42
 *     call=11
 *     jmp=3
 *     jcc=4
 *     ret=5
 *     push=6
 *     endbr=7
 *     frame=8
 *     sub=9
 *     store=10
 *     lea=42
 *     icall=12
 *     ijmp=13
 *     syscall=1
 *     rep=14
 *     jnc=15
 *     xor=16
 *     pushf=17
 *     nop=18
 * Exit status 0. A wrongly stepped instruction shows as a wrong value, a
 * crash (ud2: SIGILL) or a jump into the weeds. */

        .section .note.GNU-stack, "", @progbits

        .data
answer: .long 42
slot:   .long 0
helper_ptr: .quad helper
src_bytes: .byte 3, 5, 6
dst_bytes: .byte 0, 0, 0

        .section .rodata
fmt:        .string "%s=%d\n"
name_rip:   .string "rip"
name_call:  .string "call"
name_jmp:   .string "jmp"
name_jcc:   .string "jcc"
name_ret:   .string "ret"
name_push:  .string "push"
name_endbr: .string "endbr"
name_frame: .string "frame"
name_sub:   .string "sub"
name_store: .string "store"
name_lea:   .string "lea"
name_icall: .string "icall"
name_ijmp:  .string "ijmp"
name_syscall: .string "syscall"
name_rep:   .string "rep"
name_jnc:   .string "jnc"
name_xor:   .string "xor"
name_pushf: .string "pushf"
name_nop:   .string "nop"

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

        .globl endbr_first
        .type endbr_first, @function
endbr_first:
        endbr64
        movl $7, %eax
        ret
        .size endbr_first, .-endbr_first

/* Called with rbp already pushed by the caller: moves rsp into rbp and
 * returns rsp-derived proof that rbp == rsp. */
        .globl frame_first
        .type frame_first, @function
frame_first:
        mov %rsp, %rbp
        movl $8, %eax
        cmp %rsp, %rbp
        je 1f
        movl $0, %eax
1:      ret
        .size frame_first, .-frame_first

        .globl sub_first
        .type sub_first, @function
sub_first:
        sub $0x18, %rsp
        movl $9, (%rsp)
        movl (%rsp), %eax
        add $0x18, %rsp
        ret
        .size sub_first, .-sub_first

        .globl store_first
        .type store_first, @function
store_first:
        movl %edi, slot(%rip)
        movl slot(%rip), %eax
        ret
        .size store_first, .-store_first

        .globl lea_first
        .type lea_first, @function
lea_first:
        leaq answer(%rip), %rax
        movl (%rax), %eax
        ret
        .size lea_first, .-lea_first

        .globl icall_first
        .type icall_first, @function
icall_first:
        call *helper_ptr(%rip)
        addl $2, %eax
        ret
        .size icall_first, .-icall_first

/* The caller puts the address of ijmp_target in rax. */
        .globl ijmp_first
        .type ijmp_first, @function
ijmp_first:
        jmp *%rax
        ud2
ijmp_target:
        movl $13, %eax
        ret
        .size ijmp_first, .-ijmp_first

/* getpid through the syscall instruction; returns it. */
        .globl syscall_first
        .type syscall_first, @function
syscall_first:
        syscall
        ret
        .size syscall_first, .-syscall_first

        .globl rep_first
        .type rep_first, @function
rep_first:
        rep movsb
        movzbl dst_bytes(%rip), %eax
        movzbl dst_bytes+1(%rip), %ecx
        addl %ecx, %eax
        movzbl dst_bytes+2(%rip), %ecx
        addl %ecx, %eax
        ret
        .size rep_first, .-rep_first

        .globl jnc_first
        .type jnc_first, @function
jnc_first:
        jne 1f
        movl $15, %eax
        ret
1:      movl $0, %eax
        ret
        .size jnc_first, .-jnc_first

        .globl xor_first
        .type xor_first, @function
xor_first:
        xor %eax, %eax
        addl $16, %eax
        ret
        .size xor_first, .-xor_first

/* A debugger that single-steps this pushf pushes its own trap flag. */
        .globl pushf_first
        .type pushf_first, @function
pushf_first:
        pushfq
        popq %rax
        testl $0x100, %eax
        jnz 1f
        movl $17, %eax
        ret
1:      movl $0, %eax
        ret
        .size pushf_first, .-pushf_first

        .globl nop_first
        .type nop_first, @function
nop_first:
        nopl 0(%rax,%rax,1)
        movl $18, %eax
        ret
        .size nop_first, .-nop_first

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

        call endbr_first
        report name_endbr

        push %rbp
        call frame_first
        pop %rbp
        report name_frame

        call sub_first
        report name_sub

        movl $10, %edi
        call store_first
        report name_store

        call lea_first
        report name_lea

        call icall_first
        report name_icall

        leaq ijmp_target(%rip), %rax
        call ijmp_first
        report name_ijmp

        call getpid@PLT
        movl %eax, %ebx
        movl $39, %eax
        call syscall_first
        cmpl %eax, %ebx
        sete %al
        movzbl %al, %eax
        report name_syscall

        leaq src_bytes(%rip), %rsi
        leaq dst_bytes(%rip), %rdi
        movl $3, %ecx
        call rep_first
        report name_rep

        xorl %eax, %eax         /* ZF=1: jne not taken */
        call jnc_first
        report name_jnc

        movl $99, %eax
        call xor_first
        report name_xor

        call pushf_first
        report name_pushf

        call nop_first
        report name_nop

        xorl %eax, %eax
        pop %rbx
        ret
        .size main, .-main
