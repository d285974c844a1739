/* stalejmp: a call abandoned by longjmp, whose stack slot a live call reuses.
 *
 * Exercises: the return instance longjmp left behind must never be taken
 * for the live call made since from another call site in the same frame
 * (same stack pointer, same slot, another return address): not when the
 * live call returns, not at a detach while it is in flight, not when the
 * process forks inside it.
 *
 * step() calls jump_away(), which longjmps straight back into step(); then,
 * from another call site:
 *   MODE 0: nap(SECS), which sleeps SECS seconds and returns 42;
 *   MODE 1: forker(), which forks: the child's forker returns 7 and the
 *           child prints "child ok" and exits 5; the parent's returns
 *           100 + the child's status.
 *
 * Usage: stalejmp MODE [SECS]   (SECS defaults to 0)
 * Prints "ready" (flushed) first; with SECS > 0 it then waits for SIGUSR1
 * before step() (so a tracer can attach first). Output (stdout), exactly:
 *     MODE 0: "ready\nnapped=42 naps=1\nend\n"
 *     MODE 1: "ready\nchild ok\nparent=105\nend\n"
 * Exit status 0. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

static jmp_buf env;
static int naps;

PROBED void jump_away(void)
{
    BARRIER();
    longjmp(env, 1);
}

PROBED int nap(int secs)
{
    naps++;
    if (secs)
        sleep(secs);
    return 42;
}

PROBED int forker(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0)
        return 7;
    int status;
    waitpid(p, &status, 0);
    return WIFEXITED(status) ? 100 + WEXITSTATUS(status) : -1;
}

PROBED void step(int mode, int secs)
{
    if (setjmp(env) == 0)
        jump_away();
    if (mode == 0) {
        int r = nap(secs);
        printf("napped=%d naps=%d\n", r, naps);
    } else {
        int r = forker();
        if (r == 7) {
            printf("child ok\n");
            fflush(stdout);
            _exit(5);
        }
        printf("parent=%d\n", r);
    }
}

int main(int argc, char **argv)
{
    int mode = argc > 1 ? atoi(argv[1]) : 0;
    int secs = argc > 2 ? atoi(argv[2]) : 0;
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    printf("ready\n");
    fflush(stdout);
    if (secs > 0) {
        int sig;
        sigwait(&usr1, &sig);
    }
    step(mode, secs);
    printf("end\n");
    return 0;
}
