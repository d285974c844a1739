/* fills: hand-laid code around the dead fill (alignment padding) between
 * functions, where fast probes write the jumps of hops and run short
 * functions' jumps over.
 *
 * Exercises: what a fast probe may write into padding, in four regions,
 * each followed by a 256-byte spacer (a function made of `ret`s, never
 * called) so that no other code's padding is within a hop's reach, and,
 * last, ten functions (`ret`) with 31 bytes of padding after each, far
 * from any site, for far detours' indirect jumps:
 *
 *   0. hop0 (first instruction 3 bytes, and into0 jumps past it) needs a
 *      hop, into the padding after it; first in the module (`.text.hot`
 *      comes before `.text`), that padding is also the first a far
 *      detour's indirect jump could take (see `crowd` below).
 *   1. chk_add1 ends with a conditional jump and falls through its padding
 *      into add1 (glibc's `__memcpy_chk_*` fall into `__memcpy_*` so):
 *      that padding runs. twice (first instruction 3 bytes, and thrice
 *      jumps past it) needs a hop, and that padding is the nearest.
 *   2. short2 (`lea; ret`, 4 bytes) takes its jump over the first byte of
 *      the padding after it, the nearest padding for hop2's hop.
 *   3. tailpop's last `pop rbx` (tailpop+0x17) is a branch target's
 *      neighbour (a jump lands on the `ret` after it): it can only be an
 *      instruction pun, whose displacement ends in the three `int3` bytes
 *      of padding after tailpop; the nearest padding for hop3's hop.
 *
 *   hop0(x) = 2x     into0(x) = 2x
 *   thrice(x) = 3x   twice(x) = 2x   chk_add1(x) = x<0 ? -1 : x+1
 *   add1(x) = x+1    short2(x) = (uint32_t)(x+2)  hop2(x) = 2x  into2(x) = 2x
 *   tailpop(x) = x<0 ? -1 : x+1      hop3(x) = 2x     into3(x) = 2x
 *
 * Usage: fills [ROUNDS [crowd]]   (default 3; 0: until SIGTERM, at most
 *                                  60 s)
 * Each round r calls the twelve functions with x = r and x = -1 - r.
 * With `crowd`, after the first round, every gap of the address space
 * within 2 GiB and 16 MiB of the program's code is filled with
 * inaccessible mappings: a detour then cannot be placed within a jump's
 * reach of it (no mapping in reach may be made or grow any more: malloc
 * uses mmap).
 * Output (stdout), exactly: for each of the first three rounds
 *     r=<r> <the values for x = r> <the values for x = -1 - r>
 * (space-separated), "ready" (flushed) after the first round, then, at
 * the end, "sum=<the sum of every value, wrapping>" and "done". Each
 * value is checked: a wrong one is said on stderr ("wrong: F(X) = V", the
 * first 8). Exit status 0; 1 when a value was wrong; 2 when 60 s passed
 * without SIGTERM. A jump written where code runs, or two writes over
 * each other, shows as a wrong value, a crash or a trap. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

long hop0(long), into0(long), thrice(long), twice(long), chk_add1(long), add1(long), short2(long), hop2(long),
    into2(long), tailpop(long), hop3(long), into3(long);

#define FUNC(name) ".globl " #name "\n.type " #name ",@function\n" #name ":\n"
#define SIZE(name) ".size " #name ",.-" #name "\n"
#define SPACER(name) FUNC(name) ".fill 256,1,0xc3\n" SIZE(name)
#define FAR_PAD(name) ".p2align 5\n" FUNC(name) "ret\n" SIZE(name)

__asm__(".intel_syntax noprefix\n"
        ".section .text.hot,\"ax\",@progbits\n"
        ".p2align 6\n"
        /* Region 0. */
        FUNC(hop0)
        "mov rax, rdi\n"
        "add rax, rdi\n"
        "ret\n"
        SIZE(hop0)
        ".p2align 5\n"
        FUNC(into0)
        "mov rax, rdi\n"
        "jmp hop0 + 3\n"
        SIZE(into0)
        SPACER(spacer0)
        ".text\n"
        ".p2align 6\n"
        /* Region 1. */
        SPACER(spacer1)
        FUNC(thrice)
        "mov rax, rdi\n"
        "add rax, rdi\n"
        "jmp twice + 3\n"
        SIZE(thrice)
        FUNC(twice)
        "mov rax, rdi\n"
        "add rax, rdi\n"
        "ret\n"
        SIZE(twice)
        FUNC(chk_add1)
        "test rdi, rdi\n"
        "js fail1\n"
        SIZE(chk_add1)
        /* Runs: chk_add1 falls through it into add1. */
        ".p2align 5\n"
        FUNC(add1)
        "lea rax, [rdi + 1]\n"
        "ret\n"
        SIZE(add1)
        FUNC(fail1)
        "mov rax, -1\n"
        "ret\n"
        SIZE(fail1)
        SPACER(spacer2)
        /* Region 2. */
        FUNC(short2)
        "lea eax, [rdi + 2]\n"
        "ret\n"
        SIZE(short2)
        ".p2align 4\n"
        FUNC(hop2)
        "mov rax, rdi\n"
        "add rax, rdi\n"
        "ret\n"
        SIZE(hop2)
        FUNC(into2)
        "mov rax, rdi\n"
        "jmp hop2 + 3\n"
        SIZE(into2)
        SPACER(spacer3)
        /* Region 3. */
        FUNC(tailpop)
        "push rbx\n"
        "lea rbx, [rdi + 1]\n"
        "mov rax, rbx\n"
        "test rdi, rdi\n"
        "jns 1f\n"
        "pop rbx\n"
        "mov rax, -1\n"
        "jmp 2f\n"
        "1: pop rbx\n"
        "2: ret\n"
        SIZE(tailpop)
        ".fill 12,1,0xcc\n"
        FUNC(hop3)
        "mov rax, rdi\n"
        "add rax, rdi\n"
        "ret\n"
        SIZE(hop3)
        FUNC(into3)
        "mov rax, rdi\n"
        "jmp hop3 + 3\n"
        SIZE(into3)
        SPACER(spacer4)
        /* Padding for far detours' indirect jumps (14 bytes each). */
        FAR_PAD(farpad0) FAR_PAD(farpad1) FAR_PAD(farpad2) FAR_PAD(farpad3)
        FAR_PAD(farpad4) FAR_PAD(farpad5) FAR_PAD(farpad6) FAR_PAD(farpad7)
        FAR_PAD(farpad8) FAR_PAD(farpad9) ".p2align 5\n"
        ".att_syntax prefix\n");

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static const char *const names[] = {"hop0", "into0", "thrice", "twice", "chk_add1", "add1",
                                    "short2", "hop2", "into2", "tailpop", "hop3", "into3"};

/* What fns[i](x) returns. */
static long expected(size_t i, long x)
{
    switch (i) {
    case 2:
        return 3 * x;
    case 4:
    case 9:
        return x < 0 ? -1 : x + 1;
    case 5:
        return x + 1;
    case 6:
        return (long)(unsigned)(x + 2);
    default:
        return 2 * x;
    }
}

/* Fills every gap within 2 GiB and 16 MiB of the code with PROT_NONE
 * mappings (from a snapshot of /proc/self/maps read without malloc). */
static void crowd(void)
{
    static char maps[1 << 16];
    const uintptr_t reach = (1UL << 31) + (16UL << 20);
    uintptr_t code = (uintptr_t)hop0 & ~(uintptr_t)0xfff;
    uintptr_t lo = code > reach + 0x10000 ? code - reach : 0x10000, hi = code + reach;
    int fd = open("/proc/self/maps", O_RDONLY);
    size_t len = 0;
    ssize_t n;
    while (fd >= 0 && len < sizeof maps - 1 && (n = read(fd, maps + len, sizeof maps - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    maps[len] = 0;
    uintptr_t prev = lo;
    for (char *line = maps; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : 0) {
        uintptr_t start = strtoul(line, NULL, 16), end = strtoul(strchr(line, '-') + 1, NULL, 16);
        uintptr_t from = prev, to = start < hi ? start : hi;
        if (to > from)
            mmap((void *)from, to - from, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
        if (end > prev)
            prev = end;
    }
    if (hi > prev)
        mmap((void *)prev, hi - prev, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
}

static int wrong;

static unsigned long values(long x, int print)
{
    long (*const fns[])(long) = {hop0,   into0, thrice,  twice, chk_add1, add1,
                                 short2, hop2,  into2,   tailpop, hop3,     into3};
    unsigned long sum = 0;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        long v = fns[i](x);
        sum += (unsigned long)v;
        if (print)
            printf(" %ld", v);
        if (v != expected(i, x) && wrong++ < 8)
            fprintf(stderr, "wrong: %s(%ld) = %ld\n", names[i], x, v);
    }
    return sum;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 3;
    int crowded = argc > 2 && strcmp(argv[2], "crowd") == 0;
    signal(SIGTERM, on_term);
    time_t deadline = time(NULL) + 60;
    unsigned long sum = 0;
    int status = 0;
    for (long r = 0; rounds == 0 || r < rounds; r++) {
        if (stop)
            break;
        if (rounds == 0 && (r & 0xfff) == 0 && time(NULL) > deadline) {
            printf("deadline\n");
            status = 2;
            break;
        }
        int print = r < 3;
        if (print)
            printf("r=%ld", r);
        sum += values(r, print);
        sum += values(-1 - r, print);
        if (print)
            printf("\n");
        if (r == 0) {
            if (crowded)
                crowd();
            printf("ready\n");
            fflush(stdout);
        }
    }
    printf("sum=%lu\ndone\n", sum);
    return wrong ? 1 : status;
}
