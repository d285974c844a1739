/* spawner: children made every way a program makes them.
 *
 * Exercises: fork, vfork, clone without CLONE_THREAD, posix_spawn, system()
 * and popen() while probes are armed, and a vfork child traced by its own
 * parent, as a debugger's is. Without --follow-forks every child must
 * run untraced and unharmed; with it, the children's work() calls are
 * reported too, and a child that execs has its probes resolved again in the
 * new image.
 *
 * Usage: spawner MODE [PROGRAM [ARG]...]
 * work(x) returns 3*x+1. The parent calls work(1) (= 4) before it makes the
 * child and work(2) (= 7) once the child has ended, then prints
 * "child=<exit status>" and exits 0. MODE is one of:
 *     fork       fork(); the child calls work(10), work(11), work(12) and
 *                _exits 7
 *     vfork      vfork(); the child, still in the parent's memory, calls
 *                work(20), work(21) and _exits 8
 *     vforkexec  vfork(); the child calls work(20), then execv()s PROGRAM
 *                with ARGs (argv[0] is PROGRAM)
 *     traceme    as a debugger starts its program: vfork(); the child calls
 *                work(20), asks its parent to trace it (PTRACE_TRACEME; on
 *                failure it _exits 100 + errno) and execv()s PROGRAM; the
 *                parent sees it stop at the exec, prints "traced child
 *                stopped at its exec by signal <N>", lets it go on
 *                (PTRACE_DETACH) and waits for its end
 *     clone      raw clone(2) with SIGCHLD, no CLONE_VM, a separate stack;
 *                the child calls work(30), work(31), work(32) and exits 9
 *     clonevm    clone(2) with CLONE_VM | SIGCHLD, a separate stack: the
 *                child shares the parent's memory without being a thread;
 *                it calls work(40), work(41) and exits 10
 *     spawn      posix_spawn() of PROGRAM ARGs
 *     system     system("exec PROGRAM ARG...")
 *     popen      popen("exec PROGRAM ARG...", "r"); each line the program
 *                prints is printed as "read: <line>"
 * Output (stdout), exactly: for fork "child=7\n", vfork "child=8\n", clone
 * "child=9\n", clonevm "child=10\n"; for vforkexec, spawn and system what
 * PROGRAM prints, then "child=<its status>\n"; for traceme the line of its
 * stop, then the same; for popen the "read: " lines,
 * then "child=<its status>\n". Exit status 0.
 * With PROGRAM = count and ARGs "3 5": "sum=9\ntwice=41\nchild=5\n".
 * If the child dies by a signal (e.g. SIGTRAP from a leftover breakpoint):
 * "child=signal <N>\n", exit status 1. Usage errors exit 64; a failure to
 * make the child exits 1 with a message on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

extern char **environ;

#define CHILD_STACK (256 * 1024)

PROBED int work(int x)
{
    BARRIER();
    return x * 3 + 1;
}

static int in_clone(void *arg)
{
    (void)arg;
    work(30);
    work(31);
    work(32);
    return 9;
}

static int in_clone_vm(void *arg)
{
    (void)arg;
    work(40);
    work(41);
    return 10;
}

/* Kept apart so no local of the caller lives across vfork's second return. */
static pid_t vfork_work(void)
{
    pid_t child = vfork();
    if (child == 0) {
        work(20);
        work(21);
        _exit(8);
    }
    return child;
}

static pid_t vfork_exec(char **argv)
{
    pid_t child = vfork();
    if (child == 0) {
        work(20);
        execv(argv[0], argv);
        _exit(127);
    }
    return child;
}

static int wait_for(pid_t child, const char *what);

static pid_t vfork_traced(char **argv)
{
    pid_t child = vfork();
    if (child == 0) {
        work(20);
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
            _exit(100 + errno);
        execv(argv[0], argv);
        _exit(127);
    }
    return child;
}

/* A debugger's first steps with a child that asked to be traced: it stops
 * at its exec, and is let go. The status of its end. */
static int debug_child(pid_t child)
{
    int status = wait_for(child, "vfork");
    if (!WIFSTOPPED(status))
        return status;
    printf("traced child stopped at its exec by signal %d\n", WSTOPSIG(status));
    fflush(stdout);
    if (ptrace(PTRACE_DETACH, child, NULL, NULL) != 0) {
        perror("PTRACE_DETACH");
        exit(1);
    }
    return wait_for(child, "waitpid");
}

static pid_t clone_child(int (*fn)(void *), int flags)
{
    char *stack = malloc(CHILD_STACK);
    if (stack == NULL)
        return -1;
    /* The stack grows down: pass its top, 16-byte aligned. */
    return clone(fn, stack + CHILD_STACK, flags | SIGCHLD, NULL);
}

/* "exec PROGRAM ARG..." for the shell, so the shell becomes PROGRAM. */
static char *shell_command(char **argv)
{
    size_t len = sizeof "exec";
    for (char **a = argv; *a != NULL; a++)
        len += strlen(*a) + 1;
    char *cmd = malloc(len);
    if (cmd == NULL)
        return NULL;
    strcpy(cmd, "exec");
    for (char **a = argv; *a != NULL; a++) {
        strcat(cmd, " ");
        strcat(cmd, *a);
    }
    return cmd;
}

static int report(int status)
{
    if (WIFSIGNALED(status)) {
        printf("child=signal %d\n", WTERMSIG(status));
        return 1;
    }
    printf("child=%d\n", WEXITSTATUS(status));
    return 0;
}

static int wait_for(pid_t child, const char *what)
{
    if (child < 0) {
        perror(what);
        exit(1);
    }
    int status;
    if (waitpid(child, &status, 0) != child) {
        perror("waitpid");
        exit(1);
    }
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: spawner MODE [PROGRAM [ARG]...]\n");
        return 64;
    }
    const char *mode = argv[1];
    char **program = argv + 2;
    int needs_program = strcmp(mode, "vforkexec") == 0 || strcmp(mode, "traceme") == 0 ||
                        strcmp(mode, "spawn") == 0 || strcmp(mode, "system") == 0 ||
                        strcmp(mode, "popen") == 0;
    if (needs_program && argc < 3) {
        fprintf(stderr, "spawner %s: PROGRAM missing\n", mode);
        return 64;
    }

    work(1);
    fflush(stdout);
    int status;
    if (strcmp(mode, "fork") == 0) {
        pid_t child = fork();
        if (child == 0) {
            work(10);
            work(11);
            work(12);
            _exit(7);
        }
        status = wait_for(child, "fork");
    } else if (strcmp(mode, "vfork") == 0) {
        status = wait_for(vfork_work(), "vfork");
    } else if (strcmp(mode, "vforkexec") == 0) {
        status = wait_for(vfork_exec(program), "vfork");
    } else if (strcmp(mode, "traceme") == 0) {
        status = debug_child(vfork_traced(program));
    } else if (strcmp(mode, "clone") == 0) {
        status = wait_for(clone_child(in_clone, 0), "clone");
    } else if (strcmp(mode, "clonevm") == 0) {
        status = wait_for(clone_child(in_clone_vm, CLONE_VM), "clone");
    } else if (strcmp(mode, "spawn") == 0) {
        pid_t child;
        int err = posix_spawn(&child, program[0], NULL, NULL, program, environ);
        if (err != 0) {
            fprintf(stderr, "posix_spawn %s: %s\n", program[0], strerror(err));
            return 1;
        }
        status = wait_for(child, "posix_spawn");
    } else if (strcmp(mode, "system") == 0) {
        char *cmd = shell_command(program);
        status = cmd == NULL ? -1 : system(cmd);
        if (status == -1) {
            perror("system");
            return 1;
        }
    } else if (strcmp(mode, "popen") == 0) {
        char *cmd = shell_command(program);
        FILE *pipe = cmd == NULL ? NULL : popen(cmd, "r");
        if (pipe == NULL) {
            perror("popen");
            return 1;
        }
        char line[256];
        while (fgets(line, sizeof line, pipe) != NULL)
            printf("read: %s", line);
        status = pclose(pipe);
        if (status == -1) {
            perror("pclose");
            return 1;
        }
    } else {
        fprintf(stderr, "spawner: unknown mode %s\n", mode);
        return 64;
    }
    work(2);
    return report(status);
}
