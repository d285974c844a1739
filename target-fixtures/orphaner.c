/* orphaner: a child that outlives its parent.
 *
 * Exercises: the traced program exits while a child it made still runs,
 * and calls the probed function after that. With -f the child stays traced
 * until it exits; without -f it must be left unharmed, even when it shares
 * the parent's memory (CLONE_VM), where the breakpoints are.
 *
 * Usage: orphaner fork|vm [N]   makes a child with fork(), or with
 *                               clone(CLONE_VM | SIGCHLD) on a stack of its
 *                               own, and exits at once; the child waits
 *                               until its parent has exited, then calls
 *                               work(i) for i = 0..N-1 (default 200) and
 *                               exits 0.
 * Output (stdout), exactly: "parent done\nchild sum=<N*N>\n" (the child's
 * line after the parent's); the parent's exit status is 0. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

static int calls = 200;
static pid_t parent;
static char child_stack[256 * 1024] __attribute__((aligned(16)));

PROBED int work(int x)
{
    BARRIER();
    return 2 * x + 1;
}

static int child(void *arg)
{
    (void)arg;
    /* Reparented once the parent is gone. */
    while (getppid() == parent)
        usleep(1000);
    long sum = 0;
    for (int i = 0; i < calls; i++)
        sum += work(i);
    char line[64];
    int n = snprintf(line, sizeof line, "child sum=%ld\n", sum);
    if (write(1, line, (size_t)n) != n)
        _exit(1);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 64;
    if (argc > 2)
        calls = atoi(argv[2]);
    parent = getpid();
    printf("parent done\n");
    fflush(stdout);
    if (strcmp(argv[1], "vm") == 0) {
        if (clone(child, child_stack + sizeof child_stack, CLONE_VM | SIGCHLD, NULL) < 0)
            return 1;
    } else if (fork() == 0) {
        child(NULL);
    }
    return 0;
}
