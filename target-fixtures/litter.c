/* litter: many children alive at once, each having called a probed function.
 *
 * Exercises: fast probes with --follow-forks over hundreds of live children
 * (each gets a ring of its own): what rtrace's memory and time grow with.
 *
 * Usage: litter [N]   N children (default 10) are forked; each calls
 *                     work(i) for i = 0..99 and waits. Once all are forked,
 *                     the parent calls work(i) for i = 0..99 too, prints
 *                     "forked N", waits for a line on stdin (or its end),
 *                     lets the children end and waits for them.
 * work(x) = 2*x+1: each process's sum is 10000.
 * Output (stdout), exactly: "forked <N>\ndone <10000*(N+1)>\n"; exit status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

PROBED long work(long x)
{
    BARRIER();
    return 2 * x + 1;
}

static long calls(void)
{
    long sum = 0;
    for (long i = 0; i < 100; i++)
        sum += work(i);
    return sum;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10;
    int release[2], sums[2];
    if (n < 0 || pipe(release) || pipe(sums))
        return 64;
    for (int i = 0; i < n; i++) {
        pid_t child = fork();
        if (child < 0)
            return 65;
        if (child == 0) {
            close(release[1]);
            close(sums[0]);
            long sum = calls();
            char c;
            (void)read(release[0], &c, 1);
            (void)write(sums[1], &sum, sizeof sum);
            _exit(0);
        }
    }
    close(release[0]);
    close(sums[1]);
    long total = calls();
    printf("forked %d\n", n);
    fflush(stdout);
    char line[16];
    (void)fgets(line, sizeof line, stdin);
    close(release[1]);
    long sum;
    while (read(sums[0], &sum, sizeof sum) == sizeof sum)
        total += sum;
    while (wait(NULL) > 0)
        ;
    printf("done %ld\n", total);
    return 0;
}
