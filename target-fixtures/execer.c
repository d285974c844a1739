/* execer: a process that changes image while traced.
 *
 * Exercises: exec while probes are armed. The probes of the old image are
 * gone with it; rtrace must resolve the probe specs again in the new image
 * (and its libraries) and report an `exec` event.
 *
 * Usage: execer PROGRAM [ARG]...
 * Calls its own work(100) once (= 207), then execv()s PROGRAM with the given
 * arguments (argv[0] is PROGRAM). Output (stdout) before the exec, exactly:
 * "before=207\n"; after it, whatever PROGRAM prints, and PROGRAM's exit
 * status. If the exec fails: a message on stderr and exit status 127. */
#include <stdio.h>
#include <unistd.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 7;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: execer PROGRAM [ARG]...\n");
        return 2;
    }
    printf("before=%d\n", work(100));
    fflush(stdout);
    execv(argv[1], argv + 1);
    perror(argv[1]);
    return 127;
}
