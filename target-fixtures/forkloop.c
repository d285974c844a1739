/* forkloop: a process that forks in a tight loop.
 *
 * Exercises: a detach (or an attach) while a fork is in flight: the child
 * is created with rtrace's breakpoints, scratch page and rewritten return
 * addresses in its copy of the memory, and must be let go with none of
 * them, whichever moment the detach comes.
 *
 * Usage: forkloop STOPFILE
 * Prints "ready" once. Then, until STOPFILE exists: spawn(i) forks from
 * inside a probed function (so a call with a return probe is in flight in
 * the child's copy of the stack); the child calls work(i) and exits with
 * status work(i) % 100; the parent calls work(i) too, waits for the child
 * and checks its exit status. At the end it prints "forks=N bad=B" (B
 * children that did not exit with their own status, each also reported on
 * stderr) and exits with status 0 when B is 0, else 1. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

PROBED pid_t spawn(void)
{
    BARRIER();
    return fork();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: forkloop STOPFILE\n");
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    long forks = 0, bad = 0;
    for (int i = 0; access(argv[1], F_OK) != 0; i = (i + 1) % 1000) {
        pid_t child = spawn();
        if (child < 0) {
            perror("fork");
            return 2;
        }
        if (child == 0)
            _exit(work(i) % 100);
        int expected = work(i) % 100;
        int status;
        if (waitpid(child, &status, 0) != child) {
            perror("waitpid");
            return 2;
        }
        forks++;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != expected) {
            bad++;
            if (WIFSIGNALED(status))
                fprintf(stderr, "child %d: killed by signal %d\n", (int)child, WTERMSIG(status));
            else
                fprintf(stderr, "child %d: status %d, not %d\n", (int)child, WEXITSTATUS(status),
                        expected);
        }
    }
    printf("forks=%ld bad=%ld\n", forks, bad);
    return bad == 0 ? 0 : 1;
}
