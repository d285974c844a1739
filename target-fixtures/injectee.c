/* injectee: fault injection into a libc function and into a probed one.
 *
 * Exercises: --inject on libc:openat (return value and errno seen by the
 * program, call counting with when=), and on a function of the program
 * (return value only, body skipped).
 *
 * Usage: injectee PATH N
 * Calls openat(AT_FDCWD, PATH, O_RDONLY) N times, errno cleared before each,
 * and prints one line per call: "openat I: ok" (closing the descriptor) or
 * "openat I: -1 errno=NAME". Then calls answer(20), which returns 21 and
 * prints nothing itself, and prints "answer: V" and "body ran: yes|no".
 * Untraced, with an existing PATH: N "ok" lines, "answer: 21",
 * "body ran: yes", exit status 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

static volatile int body_ran;

PROBED int answer(int x)
{
    body_ran = 1;
    BARRIER();
    return x + 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: injectee PATH N\n");
        return 64;
    }
    int n = atoi(argv[2]);
    for (int i = 1; i <= n; i++) {
        errno = 0;
        int fd = openat(AT_FDCWD, argv[1], O_RDONLY);
        if (fd >= 0) {
            printf("openat %d: ok\n", i);
            close(fd);
        } else {
            const char *name = strerrorname_np(errno);
            printf("openat %d: %d errno=%s\n", i, fd, name ? name : "0");
        }
    }
    int v = answer(20);
    printf("answer: %d\n", v);
    printf("body ran: %s\n", body_ran ? "yes" : "no");
    return 0;
}
