/* threadexec: exec from a thread that is not the thread-group leader.
 *
 * Exercises: execve() from a second thread while probes are armed. The
 * kernel kills every other thread and the exec'ing thread takes over the
 * process id (its thread id changes to the pid); rtrace must follow the
 * thread under its new id, resolve the probes again in the new image and
 * forget the threads that are gone.
 *
 * Usage: threadexec [--leader-exits] PROGRAM [ARG]...
 * work(x) returns 5*x+2. The main thread calls work(1) (= 7) and prints
 * "main=7"; it starts a thread that blocks until it is killed, and the
 * exec'ing thread, which calls work(2) (= 12), prints "thread=12" and
 * execv()s PROGRAM with the given arguments (argv[0] is PROGRAM). Meanwhile
 * the main thread waits in pthread_join; with --leader-exits it ends itself
 * with pthread_exit() instead (a zombie leader), and the exec'ing thread
 * joins it before calling work(2).
 * Output (stdout) before the exec, exactly: "main=7\nthread=12\n"; after it,
 * whatever PROGRAM prints, and PROGRAM's exit status. If the exec fails: a
 * message on stderr and exit status 127. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return x * 5 + 2;
}

static char **program;
static int leader_exits;
static pthread_t leader;
static int block_pipe[2];

static void *blocker(void *arg)
{
    (void)arg;
    char c;
    /* Nobody ever writes: it blocks until the exec kills it. */
    while (read(block_pipe[0], &c, 1) != 0)
        ;
    return NULL;
}

static void *execer(void *arg)
{
    (void)arg;
    /* The initial thread can be joined once it has called pthread_exit. */
    if (leader_exits)
        pthread_join(leader, NULL);
    printf("thread=%d\n", work(2));
    fflush(stdout);
    execv(program[0], program);
    perror(program[0]);
    _exit(127);
}

int main(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--leader-exits") == 0) {
        leader_exits = 1;
        first = 2;
    }
    if (argc <= first) {
        fprintf(stderr, "usage: threadexec [--leader-exits] PROGRAM [ARG]...\n");
        return 64;
    }
    program = argv + first;
    leader = pthread_self();
    if (pipe2(block_pipe, O_CLOEXEC) != 0) {
        perror("pipe");
        return 1;
    }

    printf("main=%d\n", work(1));
    fflush(stdout);
    pthread_t blocked, exec_thread;
    if (pthread_create(&blocked, NULL, blocker, NULL) != 0 ||
        pthread_create(&exec_thread, NULL, execer, NULL) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 1;
    }
    if (leader_exits)
        pthread_exit(NULL);
    pthread_join(exec_thread, NULL);
    /* Not reached: the exec replaces the process. */
    return 1;
}
