/* forktail: a fork made in a function reached by a tail call from a
 * function whose return an int3 probe watches.
 *
 * Exercises: a forked child that is not followed (no -f) gets every
 * return address rtrace changed back, in whatever order the two kinds of
 * return probes stacked them in one slot: outer's slot holds the int3
 * trampoline, and forkret, reached by outer's tail jump, puts the fast
 * probes' return stub over it.
 *
 * outer(x) jumps to forkret through a register (an indirect jump),
 * after a pushfq/popfq pair: a first instruction that moves the flags
 * through the stack never runs in a detour, so outer stays an int3. forkret(x) forks:
 * the child returns x + 1 through outer to main, which exits with it;
 * the parent waits for the child and returns x + 1 when the child exited
 * with (x + 1) % 100.
 *
 * Usage: forktail [N]   N rounds (default 3).
 * Output (stdout), exactly: "children=<N> ok=<N>\n", exit status 0 (ok
 * counts the children that returned and exited as they should); 64 for a
 * bad argument. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

PROBED int forkret(int x)
{
    pid_t child = fork();
    if (child <= 0)
        return x + 1;
    int status = 0;
    if (waitpid(child, &status, 0) != child)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == (x + 1) % 100 ? x + 1 : -1;
}

__asm__(".text\n"
        ".globl outer\n"
        ".type outer, @function\n"
        "outer:\n"
        "    pushfq\n"
        "    popfq\n"
        "    lea forkret(%rip), %rax\n"
        "    jmp *%rax\n"
        ".size outer, .-outer\n");
int outer(int x);

int main(int argc, char **argv)
{
    long n = 3;
    if (argc > 1) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (*end || n < 0)
            return 64;
    }
    pid_t parent = getpid();
    long ok = 0;
    for (long i = 0; i < n; i++) {
        int r = outer((int)i);
        if (getpid() != parent)
            _exit(r % 100);
        ok += r == i + 1;
    }
    printf("children=%ld ok=%ld\n", n, ok);
    return 0;
}
