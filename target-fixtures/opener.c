/* opener: probes on libc functions with string arguments.
 *
 * Exercises: probes on libc (openat, libc:open*), C-string argument
 * decoding, a negative return value (a failed open).
 *
 * Usage: opener PATH
 * Opens PATH with open(PATH, O_RDONLY) and with
 * openat(AT_FDCWD, PATH, O_RDONLY|O_CLOEXEC), closing both, then
 * open("/nonexistent/x", O_RDONLY), which must fail with ENOENT.
 * Output (stdout), exactly: "ok\n", exit status 0.
 * If PATH cannot be opened or the bad path opens: a message on stderr, exit 1. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: opener PATH\n");
        return 64;
    }

    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    close(fd);

    fd = openat(AT_FDCWD, argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror("openat");
        return 1;
    }
    close(fd);

    fd = open("/nonexistent/x", O_RDONLY);
    if (fd >= 0 || errno != ENOENT) {
        fprintf(stderr, "/nonexistent/x: expected ENOENT\n");
        return 1;
    }

    printf("ok\n");
    return 0;
}
