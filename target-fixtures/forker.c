/* forker: a child that inherits armed breakpoints.
 *
 * Exercises: fork() while probes are armed. Without --follow-forks the child
 * must run untraced and unharmed (the breakpoints it inherited are removed
 * from its memory); with it, the child's work() calls are reported too.
 * No shell and no exec: the child is a plain fork of this program.
 *
 * Usage: forker   (no arguments)
 * The child calls work(10), work(11), work(12) and exits with status 7; the
 * parent calls work(1), work(2), then waits for it.
 * Output (stdout), exactly: "child=7\n", exit status 0.
 * If the child dies by a signal (e.g. SIGTRAP from a leftover breakpoint):
 * "child=signal <N>\n", exit status 1. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

int main(void)
{
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        work(10);
        work(11);
        work(12);
        _exit(7);
    }

    work(1);
    work(2);

    int status;
    if (waitpid(child, &status, 0) != child) {
        perror("waitpid");
        return 1;
    }
    if (WIFSIGNALED(status)) {
        printf("child=signal %d\n", WTERMSIG(status));
        return 1;
    }
    printf("child=%d\n", WEXITSTATUS(status));
    return 0;
}
