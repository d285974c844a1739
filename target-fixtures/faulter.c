/* faulter: a probed function whose first instruction faults.
 *
 * Exercises: a displaced instruction that raises SIGSEGV. The program must
 * get the signal at the probed address, as untraced: its handler runs once
 * per fault (and here siglongjmps out), and a fault it does not handle
 * kills it the same way.
 *
 * load_first(p) is `movl (%rdi), %eax; ret`: it loads *p.
 * load_second(p) is `mov %rdi, %rax; movl (%rax), %eax; ret`: the load is
 * its second instruction (a fast probe's jump displaces both).
 *
 * Usage: faulter            calls load_first(&v[i]) for i = 0..4 (v[i] =
 *                           i+1) and load_first(NULL) three times in
 *                           between, recovering from each SIGSEGV.
 *        faulter retry      the same, the handler fixing the fault up
 *                           instead (rdi pointed at a 0, in the signal's
 *                           context) and returning: the load is retried.
 *                           The handler counts the faults whose context's
 *                           rip is not load_first's address (off_site).
 *        faulter crash      calls load_first(NULL) without a handler.
 *        faulter hold F     prints "ready", waits for a line on stdin,
 *                           then calls F(NULL) once (F: load_first or
 *                           load_second). Its handler prints "in handler"
 *                           and waits for another line before it fixes
 *                           the fault up (rdi and rax at a 0) and returns:
 *                           a tracer can be stopped while the handler
 *                           runs. A second fault prints "again" and exits
 *                           3.
 * Output (stdout), exactly: "faults=3 sum=15\n", exit status 0; in retry
 * mode "faults=3 sum=15 off_site=0\n". In crash mode: "crashing\n", then
 * death by SIGSEGV. In hold mode: "ready\n", "in handler\n", then
 * "faults=1 got=0\n", exit status 0. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

__asm__(".text\n"
        ".globl load_first\n"
        ".type load_first, @function\n"
        "load_first:\n"
        "    movl (%rdi), %eax\n"
        "    ret\n"
        ".size load_first, .-load_first\n");
int load_first(const int *p);

__asm__(".text\n"
        ".globl load_second\n"
        ".type load_second, @function\n"
        "load_second:\n"
        "    mov %rdi, %rax\n"
        "    movl (%rax), %eax\n"
        "    ret\n"
        ".size load_second, .-load_second\n");
int load_second(const int *p);

static sigjmp_buf recover;
static volatile int faults;

static void on_segv(int sig)
{
    (void)sig;
    faults++;
    siglongjmp(recover, 1);
}

static int zero;
static volatile int off_site;

static void on_segv_retry(int sig, siginfo_t *si, void *context)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = context;
    if (uc->uc_mcontext.gregs[REG_RIP] != (greg_t)load_first)
        off_site++;
    uc->uc_mcontext.gregs[REG_RDI] = (greg_t)&zero;
    faults++;
}

static void wait_line(void)
{
    char c;
    while (read(0, &c, 1) == 1 && c != '\n')
        ;
}

static void say(const char *s)
{
    if (write(1, s, strlen(s)) < 0)
        _exit(4);
}

static void on_segv_hold(int sig, siginfo_t *si, void *context)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = context;
    if (faults++ > 0) {
        say("again\n");
        _exit(3);
    }
    say("in handler\n");
    wait_line();
    uc->uc_mcontext.gregs[REG_RDI] = (greg_t)&zero;
    uc->uc_mcontext.gregs[REG_RAX] = (greg_t)&zero;
}

static int hold(const char *which)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv_hold;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    int (*f)(const int *) = strcmp(which, "load_second") == 0 ? load_second : load_first;
    say("ready\n");
    wait_line();
    int got = f(NULL);
    printf("faults=%d got=%d\n", faults, got);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "hold") == 0)
        return hold(argv[2]);
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
    if (retry)
        printf("faults=%d sum=%d off_site=%d\n", faults, (int)sum, off_site);
    else
        printf("faults=%d sum=%d\n", faults, (int)sum);
    return 0;
}
