/* libfillb: libfilla's layout, with a system call where libfilla has
 * padding.
 *
 * Exercises: see libfilla and dlfill.
 *
 * Built with -shared -fPIC into libfillb.so. First in its text
 * (`.text.hot`): lib_hop(fd, buf, n) is read(2) made by its own `syscall`,
 * which ends at lib_hop+7 (where libfilla's padding begins): a thread
 * blocked in it is there. lib_into(x) = 2x, at libfilla's lib_into's
 * place. */
#include "fixture.h"

#define FUNC(name) ".globl " #name "\n.type " #name ",@function\n" #name ":\n"
#define SIZE(name) ".size " #name ",.-" #name "\n"

__asm__(".intel_syntax noprefix\n"
        ".section .text.hot,\"ax\",@progbits\n"
        ".p2align 6\n"
        FUNC(lib_hop)
        "xor eax, eax\n"
        "nop dword ptr [rax]\n"
        "syscall\n"
        "ret\n"
        SIZE(lib_hop)
        ".p2align 5\n"
        FUNC(lib_into)
        "mov rax, rdi\n"
        "add rax, rdi\n"
        "ret\n"
        SIZE(lib_into)
        FUNC(lib_spacer)
        ".fill 252,1,0xc3\n"
        SIZE(lib_spacer)
        ".att_syntax prefix\n");
