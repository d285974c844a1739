/* buffers: data passed to and filled by the calls that move bytes.
 *
 * Exercises: buffer arguments shown as strace shows them: the bytes a call
 * reads (write, fwrite, memcpy's src) at its entry, the bytes a call fills
 * (read, fread) at its return, as many as it says it filled; escapes, a
 * cut at the string limit, binary bytes, and a failed read.
 *
 * pull(fd, buf, n) is read's tail call (`jmp read`), as glibc's
 * _IO_file_read makes one: the read returns through pull's return address.
 *
 * Usage: buffers
 * Output (stdout), exactly: "hello\n" (written by write(1, "hello\n", 6)),
 * then "done\n"; exit status 0. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

ssize_t pull(int fd, void *buf, size_t n);
__asm__(".text\n"
        ".globl pull\n"
        ".type pull, @function\n"
        "pull:\n"
        "\tjmp read@PLT\n"
        ".size pull, .-pull\n");

int main(void)
{
    write(1, "hello\n", 6);
    int null = open("/dev/null", O_WRONLY);
    /* Binary bytes, a NUL among them. */
    static const unsigned char bin[] = {'a', 0, 1, 0x7f, 0xff, '"', '\\', 'z'};
    write(null, bin, sizeof bin);
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    write(fds[1], "hello world\n", 12);
    char buf[64];
    /* Asks for 64, gets the 12 in the pipe. */
    ssize_t got = read(fds[0], buf, sizeof buf);
    /* A failed read fills nothing. */
    read(-1, buf, sizeof buf);
    write(fds[1], "pulled\n", 7);
    ssize_t pulled = pull(fds[0], buf, sizeof buf);
    FILE *out = fdopen(null, "w");
    fwrite("abcdefghijkl", 4, 3, out);
    fclose(out);
    write(fds[1], "0123456789", 10);
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    /* Units of 2 bytes: 5 of them. */
    size_t units = fread(buf, 2, 8, in);
    fclose(in);
    /* 100 bytes: cut at the limit. */
    char big[100], copy[100];
    memset(big, 'x', sizeof big);
    /* (A size the compiler does not know: a real call.) */
    volatile size_t n = sizeof big;
    memcpy(copy, big, n);
    printf("done\n");
    return got == 12 && pulled == 7 && units == 5 && copy[99] == 'x' ? 0 : 1;
}
