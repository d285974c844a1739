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
 *        faulter retry      the same, the handler fixing the fault up
 *                           instead (rdi pointed at a 0, in the signal's
 *                           context) and returning: the load is retried.
 *        faulter crash      calls load_first(NULL) without a handler.
 * Output (stdout), exactly: "faults=3 sum=15\n", exit status 0.
 * In crash mode: "crashing\n", then death by SIGSEGV. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

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

static int zero;

static void on_segv_retry(int sig, siginfo_t *si, void *context)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = context;
    uc->uc_mcontext.gregs[REG_RDI] = (greg_t)&zero;
    faults++;
}

int main(int argc, char **argv)
{
    int retry = argc > 1 && strcmp(argv[1], "retry") == 0;
    if (argc > 1 && strcmp(argv[1], "crash") == 0) {
        printf("crashing\n");
        fflush(stdout);
        return load_first(NULL);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (retry) {
        sa.sa_sigaction = on_segv_retry;
        sa.sa_flags = SA_SIGINFO;
    } else {
        sa.sa_handler = on_segv;
    }
    sigaction(SIGSEGV, &sa, NULL);

    int v[5] = {1, 2, 3, 4, 5};
    volatile int sum = 0;
    for (int i = 0; i < 5; i++) {
        sum += load_first(&v[i]);
        if (i % 2 == 0) {
            if (retry)
                sum += load_first(NULL);
            else if (sigsetjmp(recover, 1) == 0)
                sum += load_first(NULL);
        }
    }
    printf("faults=%d sum=%d\n", faults, (int)sum);
    return 0;
}
