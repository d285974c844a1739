/* symlayer: dlsym reached by tail calls through both kinds of return
 * probe in one slot.
 *
 * Exercises: a function that reads its own return address (dlsym finds
 * its caller's module with it, for RTLD_NEXT) entered when its slot holds
 * the fast probes' return stub over an int3 probe's trampoline: outer,
 * an int3 probe, jumps to findsym, a fast one, which jumps to dlsym. The
 * int3 call in that slot is alive (the stub is not a return address a
 * call wrote over the trampoline), and dlsym must find the real return
 * address, into main, in the slot.
 *
 * outer(name) jumps to findsym through a register (an indirect jump),
 * after a pushfq/popfq pair: a first instruction that moves the flags
 * through the stack never runs in a detour, so outer stays an int3. findsym(name)
 * returns dlsym(RTLD_NEXT, name) by a tail call at -O2.
 *
 * Usage: symlayer [N]   N (default 1000) rounds of outer("puts").
 * Output (stdout), exactly: "found=<N>\n" (each result equals what
 * dlsym(RTLD_NEXT, "puts") gives main), exit status 0; 64 for a bad
 * argument. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

volatile long sink;

PROBED void *findsym(const char *name)
{
    sink = (long)name;
    return dlsym(RTLD_NEXT, name);
}

__asm__(".text\n"
        ".globl outer\n"
        ".type outer, @function\n"
        "outer:\n"
        "    pushfq\n"
        "    popfq\n"
        "    lea findsym(%rip), %rax\n"
        "    jmp *%rax\n"
        ".size outer, .-outer\n");
void *outer(const char *name);

int main(int argc, char **argv)
{
    long n = 1000;
    if (argc > 1) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (*end || n < 0)
            return 64;
    }
    void *puts_next = dlsym(RTLD_NEXT, "puts");
    long found = 0;
    for (long i = 0; i < n; i++)
        found += outer("puts") == puts_next;
    printf("found=%ld\n", found);
    return 0;
}
