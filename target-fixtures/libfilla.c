/* libfilla: a library whose first function needs a hop into the padding
 * after it; libfillb has the same layout, with code where that padding
 * is.
 *
 * Exercises: a library holding a hop's jump in its padding unloaded, and
 * another loaded at the same address (see dlfill): what rtrace knew of
 * the jump must go with the library.
 *
 * Built with -shared -fPIC into libfilla.so. First in its text
 * (`.text.hot`): lib_hop(x) = 2x, whose first instruction (3 bytes)
 * lib_into jumps past, 25 bytes of padding after it (at lib_hop+7), then
 * lib_into(x) = 2x. */
#include "fixture.h"

#define FUNC(name) ".globl " #name "\n.type " #name ",@function\n" #name ":\n"
#define SIZE(name) ".size " #name ",.-" #name "\n"

__asm__(".intel_syntax noprefix\n"
        ".section .text.hot,\"ax\",@progbits\n"
        ".p2align 6\n"
        FUNC(lib_hop)
        "mov rax, rdi\n"
        "add rax, rdi\n"
        "ret\n"
        SIZE(lib_hop)
        ".p2align 5\n"
        FUNC(lib_into)
        "mov rax, rdi\n"
        "jmp lib_hop + 3\n"
        SIZE(lib_into)
        FUNC(lib_spacer)
        ".fill 256,1,0xc3\n"
        SIZE(lib_spacer)
        ".att_syntax prefix\n");
