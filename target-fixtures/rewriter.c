/* rewriter: a program that rewrites its own probed code.
 *
 * Exercises: a detach after the program replaced the code of a probed
 * function (a JIT, a hot patcher, a self-modifying program): rtrace must
 * leave the program's new code as it is, not write the bytes it saved back
 * over it (kernel uprobes check the same before they remove a breakpoint).
 *
 * Usage: rewriter   (commands on stdin, one per line)
 * Prints "ready" once; then for each line:
 *   call      prints work(7): 15 as compiled, 42 once rewritten
 *   rewrite   replaces work's code with `mov eax, 42; ret` (mprotect,
 *             write, mprotect back) and prints "rewritten"
 *   quit      exits 0
 * Anything else: a message on stderr, exit status 2. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fixture.h"

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

/* Read at run time, so that no instruction of this program takes an
 * address inside work's first bytes (which would keep a fast probe off). */
static volatile size_t code_len = 6;

static int rewrite(void)
{
    static const unsigned char code[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};
    size_t len = code_len;
    uintptr_t at = (uintptr_t)work;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = at & ~(uintptr_t)(page - 1);
    uintptr_t end = (at + len + page - 1) & ~(uintptr_t)(page - 1);
    if (mprotect((void *)start, end - start, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
        return -1;
    memcpy((void *)at, code, len);
    __builtin___clear_cache((char *)at, (char *)at + len);
    return mprotect((void *)start, end - start, PROT_READ | PROT_EXEC);
}

int main(void)
{
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strcmp(line, "call\n") == 0) {
            printf("%d\n", work(7));
        } else if (strcmp(line, "rewrite\n") == 0) {
            if (rewrite() != 0) {
                perror("mprotect");
                return 1;
            }
            printf("rewritten\n");
        } else if (strcmp(line, "quit\n") == 0) {
            return 0;
        } else {
            fprintf(stderr, "rewriter: unknown command %s", line);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
