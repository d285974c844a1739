/* sigfix: a signal handler that returns into the middle of a probed
 * function's first five bytes, while rtrace attaches and probes it.
 *
 * Exercises: a site whose replaced bytes a signal frame on a thread's
 * stack will return into. A jump written over them while the handler runs
 * would be returned into in its middle.
 *
 * work (hand-laid) is `xor eax, eax` (2 bytes), `mov rax, [rdi]` (3 bytes,
 * at work+2), `add rax, 1`, `ret`: work(p) = *p + 1, its first two
 * instructions exactly five bytes. main calls work(NULL) first: the load
 * at work+2 faults, and the SIGSEGV handler says "fault" (flushed), reads
 * a line from stdin (an attach comes meanwhile), points rdi at 41 and
 * returns into work+2, where the load runs again. Then main calls work
 * with 0..N-1.
 *
 * Usage: sigfix [N]   (default 1000)
 * Output (stdout), exactly: "fault", then "first=42 sum=<N(N+1)/2>".
 * Exit status 0. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

long work(const long *p);

__asm__(".intel_syntax noprefix\n"
        ".text\n"
        ".p2align 4\n"
        ".globl work\n"
        ".type work,@function\n"
        "work:\n"
        "xor eax, eax\n"
        "mov rax, [rdi]\n"
        "add rax, 1\n"
        "ret\n"
        ".size work,.-work\n"
        ".att_syntax prefix\n");

static const long fixed = 41;

static void on_segv(int sig, siginfo_t *info, void *context)
{
    static const char said[] = "fault\n";
    ucontext_t *uc = context;
    char c;
    (void)sig;
    (void)info;
    if (write(1, said, sizeof said - 1) < 0)
        _exit(3);
    while (read(0, &c, 1) == 1 && c != '\n') {
    }
    uc->uc_mcontext.gregs[REG_RDI] = (greg_t)&fixed;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    long first = work(NULL);
    long sum = 0;
    for (long i = 0; i < n; i++)
        sum += work(&i);
    printf("first=%ld sum=%ld\n", first, sum);
    return 0;
}
