/* faulter: a probed function whose first instruction faults.
 *
 * Exercises: a displaced instruction that raises SIGSEGV. The program must
 * get the signal at the probed address, as untraced: its handler runs once
 * per fault (and here siglongjmps out), and a fault it does not handle
 * kills it the same way.
 *
 * load_first(p) is `movl (%rdi), %eax; ret`: it loads *p.
 *
 * Usage: faulter            calls load_first(&v[i]) for i = 0..4 (v[i] =
 *                           i+1) and load_first(NULL) three times in
 *                           between, recovering from each SIGSEGV.
 *        faulter crash      calls load_first(NULL) without a handler.
 * Output (stdout), exactly: "faults=3 sum=15\n", exit status 0.
 * In crash mode: "crashing\n", then death by SIGSEGV. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

__asm__(".text\n"
        ".globl load_first\n"
        ".type load_first, @function\n"
        "load_first:\n"
        "    movl (%rdi), %eax\n"
        "    ret\n"
        ".size load_first, .-load_first\n");
int load_first(const int *p);

static sigjmp_buf recover;
static volatile int faults;

static void on_segv(int sig)
{
    (void)sig;
    faults++;
    siglongjmp(recover, 1);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "crash") == 0) {
        printf("crashing\n");
        fflush(stdout);
        return load_first(NULL);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);

    int v[5] = {1, 2, 3, 4, 5};
    volatile int sum = 0;
    for (int i = 0; i < 5; i++) {
        sum += load_first(&v[i]);
        if (i % 2 == 0) {
            if (sigsetjmp(recover, 1) == 0)
                sum += load_first(NULL);
        }
    }
    printf("faults=%d sum=%d\n", faults, (int)sum);
    return 0;
}
