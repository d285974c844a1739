/* shapes: the sites of `shapes` (its driver is shapes.c), each a function
 * whose first bytes are a shape a 5-byte `jmp rel32` cannot simply
 * replace. Hand-written so the compiler cannot change the bytes; each
 * function starts on a 16-byte boundary and is followed by the padding a
 * compiler leaves: `.p2align 4` (the assembler fills it with nops), or,
 * after `three`, int3 fill.
 *
 *   ret1   c3                        a lone `ret`, 1 byte, then 15 bytes of
 *                                    nop fill. Called through call_ret1(v),
 *                                    which returns v (rax goes through
 *                                    ret1 untouched).
 *   three  89 f8 c3                  mov %edi,%eax; ret: 3 bytes, then 13
 *                                    bytes of int3 fill. Returns x.
 *   loop2  31 c0 | 01 f8 ff cf 75 fa c3
 *                                    xor %eax,%eax (2 bytes), then a loop
 *                                    whose head is byte 2 (the jnz at byte 6
 *                                    goes back there), 9 bytes, 7 of nop
 *                                    fill. Returns x + (x-1) + ... + 1,
 *                                    x(x+1)/2 (x >= 1).
 *   call0  e8 rel32 | 01 f8 c3       call helper at byte 0 (5 bytes), then
 *                                    add %edi,%eax; ret. Returns x + 10.
 *   call2  89 fa | e8 rel32 | 01 d0 c3
 *                                    mov %edi,%edx (2 bytes), then call
 *                                    helper at byte 2 (its return address
 *                                    is byte 7, past a jump's 5 bytes),
 *                                    then add %edx,%eax; ret. Returns x + 10.
 *   jtab   89 f8 | 83 e0 03 | lea table(%rip),%rdx | movslq (%rdx,%rax,4),%rax
 *          | add %rdx,%rax | ff e0 (jmp *%rax) | four cases
 *                                    a switch on x & 3 through a table of
 *                                    case offsets in .rodata (as GCC emits
 *                                    one), first instruction 2 bytes, 37
 *                                    bytes, 11 of nop fill. Returns
 *                                    x + 11 * ((x & 3) + 1).
 *   push1  53 | 31 db | 01 fb ff cf 75 fa 89 d8 5b c3
 *                                    push %rbx (1 byte), xor %ebx,%ebx, then
 *                                    a loop whose head is byte 3: a branch
 *                                    target inside a jump's 5 bytes behind a
 *                                    1-byte first instruction (no 2-byte
 *                                    jump fits either). Returns x(x+1)/2
 *                                    (x >= 1), rbx kept.
 *   evict  53 | bb 00 00 00 00 | 01 fe ff cf 75 f5 89 f0 5b c3
 *                                    push %rbx (1 byte), then a loop whose
 *                                    head is byte 1, mov $0,%ebx (5 bytes):
 *                                    a pun's jump at byte 0 would lead to
 *                                    evict+0xc0 (its displacement the bytes
 *                                    bb 00 00 00), inside this code, where
 *                                    no page can be mapped; the loop head
 *                                    is a whole instruction that can be
 *                                    evicted. evict(x, acc) returns
 *                                    acc + x(x+1)/2 (x >= 1), rbx kept.
 *
 * helper (not a site) returns 10 when its return address is where call0 or
 * call2 called it from (the byte past the call), 0 otherwise: a call
 * moved elsewhere must still return into the original code.
 *
 * call_ret1(v) (not a site): mov %rdi,%rax; call ret1; ret.
 *
 * Nothing outside a function jumps into it; only call instructions (to a
 * function's first byte) and helper's RIP-relative `lea`s (to the bytes
 * past the calls: call0+5, call2+7) name addresses of these functions. */

        .section .note.GNU-stack, "", @progbits

        .text

        .p2align 4
        .globl evict
        .type evict, @function
evict:
        pushq %rbx
.Levict_head:
        movl $0, %ebx
        addl %edi, %esi
        decl %edi
        jnz .Levict_head
        movl %esi, %eax
        popq %rbx
        ret
        .size evict, .-evict

        .p2align 4
        .globl helper
        .type helper, @function
helper:
        movq (%rsp), %rax
        leaq .Lcall0_back(%rip), %rcx
        cmpq %rcx, %rax
        je 1f
        leaq .Lcall2_back(%rip), %rcx
        cmpq %rcx, %rax
        je 1f
        xorl %eax, %eax
        ret
1:      movl $10, %eax
        ret
        .size helper, .-helper

        .p2align 4
        .globl ret1
        .type ret1, @function
ret1:
        ret
        .size ret1, .-ret1

        .p2align 4
        .globl three
        .type three, @function
three:
        movl %edi, %eax
        ret
        .size three, .-three
        .fill 13, 1, 0xcc

        .p2align 4
        .globl loop2
        .type loop2, @function
loop2:
        xorl %eax, %eax
.Lloop2_head:
        addl %edi, %eax
        decl %edi
        jnz .Lloop2_head
        ret
        .size loop2, .-loop2

        .p2align 4
        .globl call0
        .type call0, @function
call0:
        call helper
.Lcall0_back:
        addl %edi, %eax
        ret
        .size call0, .-call0

        .p2align 4
        .globl call2
        .type call2, @function
call2:
        movl %edi, %edx
        call helper
.Lcall2_back:
        addl %edx, %eax
        ret
        .size call2, .-call2

        .p2align 4
        .globl jtab
        .type jtab, @function
jtab:
        movl %edi, %eax
        andl $3, %eax
        leaq .Ljtab_table(%rip), %rdx
        movslq (%rdx,%rax,4), %rax
        addq %rdx, %rax
        jmp *%rax
.Ljtab_case0:
        leal 11(%rdi), %eax
        ret
.Ljtab_case1:
        leal 22(%rdi), %eax
        ret
.Ljtab_case2:
        leal 33(%rdi), %eax
        ret
.Ljtab_case3:
        leal 44(%rdi), %eax
        ret
        .size jtab, .-jtab

        .section .rodata
        .p2align 2
.Ljtab_table:
        .long .Ljtab_case0 - .Ljtab_table
        .long .Ljtab_case1 - .Ljtab_table
        .long .Ljtab_case2 - .Ljtab_table
        .long .Ljtab_case3 - .Ljtab_table
        .text

        .p2align 4
        .globl push1
        .type push1, @function
push1:
        pushq %rbx
        xorl %ebx, %ebx
.Lpush1_head:
        addl %edi, %ebx
        decl %edi
        jnz .Lpush1_head
        movl %ebx, %eax
        popq %rbx
        ret
        .size push1, .-push1

        .p2align 4
        .globl call_ret1
        .type call_ret1, @function
call_ret1:
        movq %rdi, %rax
        call ret1
        ret
        .size call_ret1, .-call_ret1

        .p2align 4
