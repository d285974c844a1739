/* stdfds: which standard descriptors a program starts with; work to trace,
 * with the result written to a file.
 *
 * Exercises: a launched program gets exactly the descriptors rtrace was
 * given (one closed stays closed: a write to it fails with EBADF), and a
 * program that runs on after rtrace stopped tracing it (an error once
 * tracing began) completes, its result in a file, out of the way of
 * whatever a test did to stdout and stderr.
 *
 * Usage: stdfds FILE [N [STATUS]]   N defaults to 10, STATUS to 0.
 * First looks at fds 0, 1 and 2 (fcntl F_GETFD) and writes zero bytes to
 * fd 2 (which fails with EBADF when it is closed, and prints nothing when
 * it is open); then calls work(i) for i = 0..N-1 (work(x) = 2*x+1, so the
 * sum is N*N); then creates FILE and writes to it, exactly:
 *     fd0=open|closed fd1=open|closed fd2=open|closed write2=ok|<errno name>
 *     sum=<N*N>
 * Nothing goes to stdout or stderr. Exit status: STATUS; 120 when FILE
 * cannot be written. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

static const char *state(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF ? "closed" : "open";
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    /* Looked at before anything is opened: FILE may land on a closed one. */
    const char *fd0 = state(0), *fd1 = state(1), *fd2 = state(2);
    const char *write2 = "ok";
    if (write(2, "", 0) == -1)
        write2 = errno == EBADF ? "EBADF" : strerror(errno);
    int n = argc > 2 ? atoi(argv[2]) : 10;
    int status = argc > 3 ? atoi(argv[3]) : 0;
    long sum = 0;
    for (int i = 0; i < n; i++)
        sum += work(i);
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out == -1)
        return 120;
    if (dprintf(out, "fd0=%s fd1=%s fd2=%s write2=%s\nsum=%ld\n", fd0, fd1, fd2, write2, sum) < 0
        || close(out) == -1)
        return 120;
    return status;
}
