/* forkin: fork() from inside a probed function.
 *
 * Exercises: a fork while a call with a return probe is in flight: the
 * child's copy of the stack holds the rewritten return address. Without
 * -f it must get the original back before it runs on; with -f the child
 * is traced with its own copy of the calls in flight, and its return is
 * reported under its pid.
 *
 * spawn() forks; in the child it returns 7, in the parent the child's pid.
 * The child then calls work(5) and exits with status spawn() + work(5) =
 * 7 + 11 = 18. The parent calls work(1) and waits.
 *
 * Usage: forkin   (no arguments)
 * Output (stdout), exactly: "child=18 work=3\n", exit status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return 2 * x + 1;
}

PROBED int spawn(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        return 7;
    return pid;
}

int main(void)
{
    int r = spawn();
    if (r == 7) {
        int w = work(5);
        _exit(r + w);
    }
    int w = work(1);
    int status;
    if (waitpid(r, &status, 0) != r)
        return 1;
    if (!WIFEXITED(status)) {
        printf("child killed by %d\n", WTERMSIG(status));
        return 1;
    }
    printf("child=%d work=%d\n", WEXITSTATUS(status), w);
    return 0;
}
