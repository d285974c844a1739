/* gate: waits for a go-ahead, then becomes another program.
 *
 * Exercises: nothing of its own. It is how the oracle suite starts a real
 * program under rtrace with a second observer (the kernel's uprobe
 * counters, see upcount.c) already attached to the process before the
 * program makes its first call: rtrace launches gate, the test learns its
 * pid, attaches the observer, then lets it go. Built static, gate has no
 * libc.so.6 of its own: probes on libc count nothing of it, only the
 * program it becomes (same pid, so the observer follows the exec).
 *
 * Usage: gate IN OUT PROGRAM [ARG]...
 * Prints "gate: pid <pid>\n" on stderr, then reads its stdin up to the first
 * newline or end of file (the go-ahead), then takes its stdin from the file
 * IN and sends its stdout to the file OUT (created or truncated, 0644), then
 * execv(PROGRAM, {PROGRAM, ARG..., NULL}). On any error: a message on
 * stderr and exit status 127. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int redirect(const char *path, int flags, int to)
{
    int fd = open(path, flags, 0644);
    if (fd < 0) {
        perror(path);
        return -1;
    }
    if (fd != to) {
        if (dup2(fd, to) < 0) {
            perror("dup2");
            return -1;
        }
        close(fd);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: gate IN OUT PROGRAM [ARG]...\n");
        return 127;
    }
    fprintf(stderr, "gate: pid %d\n", (int)getpid());
    char c;
    while (read(0, &c, 1) == 1 && c != '\n') {
    }
    if (redirect(argv[1], O_RDONLY, 0) < 0 ||
        redirect(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 1) < 0) {
        return 127;
    }
    execv(argv[3], argv + 3);
    perror(argv[3]);
    return 127;
}
