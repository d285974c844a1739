/* sigtrap: SIGTRAPs that belong to the program, not to the tracer.
 *
 * Exercises: a tracer must tell its own breakpoints from the tracee's own
 * traps and hand the latter back: raise(SIGTRAP) (a SI_TKILL SIGTRAP) and a
 * compiled-in int3 (a SI_KERNEL SIGTRAP at an address with no probe), with
 * the probed function work() called between them.
 *
 * Usage and output:
 *   sigtrap          installs a SIGTRAP handler, traps 5 times (3 raise, 2
 *                    int3), calls work(1..5) in between.
 *                    stdout "traps=5\n", exit status 0.
 *   sigtrap default  no handler: raise(SIGTRAP) kills the process.
 *                    stdout "", killed by SIGTRAP (128+5 = 133 in a shell).
 *                    Core dumps are disabled first so no core file is left
 *                    behind and the wait status carries no core flag. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "fixture.h"

static volatile sig_atomic_t traps;

static void on_trap(int sig)
{
    (void)sig;
    traps++;
}

PROBED int work(int x)
{
    BARRIER();
    return x * 2 + 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "default") == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        raise(SIGTRAP);
        printf("still alive\n");
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_trap;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTRAP, &sa, NULL);

    raise(SIGTRAP);
    work(1);
    __asm__ volatile("int3");   /* execution resumes after the int3 */
    work(2);
    raise(SIGTRAP);
    work(3);
    __asm__ volatile("int3");
    work(4);
    raise(SIGTRAP);
    work(5);

    printf("traps=%d\n", (int)traps);
    return 0;
}
