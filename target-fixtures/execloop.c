/* execloop: a process that replaces its own image over and over.
 *
 * Exercises: attaching (and detaching) while the process execs: the image
 * rtrace reads at attach may be gone, or already the new one, by the time
 * its threads stop.
 *
 * Usage: execloop STOPFILE [N [SUM]]
 * Each image calls work(N) (= 2N + 7), adds it to SUM, and, unless STOPFILE
 * exists, execs itself (/proc/self/exe) with N + 1 and the new sum. The
 * first image (started without N) prints "ready" once on stdout. When
 * STOPFILE exists the image prints "execs=N sum=S ok" (or "... bad" when SUM
 * is not the sum of work(0..N-1), i.e. some image computed a wrong value)
 * and exits with status 0 (1 when bad). If an exec fails: a message on
 * stderr and exit status 127. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fixture.h"

PROBED long work(long x)
{
    BARRIER();
    return x * 2 + 7;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: execloop STOPFILE [N [SUM]]\n");
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 0;
    long sum = argc > 3 ? atol(argv[3]) : 0;
    if (argc == 2) {
        printf("ready\n");
        fflush(stdout);
    }
    if (access(argv[1], F_OK) == 0) {
        /* sum of 2k + 7 for k in 0..n-1 */
        long want = n * (n - 1) + 7 * n;
        printf("execs=%ld sum=%ld %s\n", n, sum, sum == want ? "ok" : "bad");
        return sum == want ? 0 : 1;
    }
    sum += work(n);
    char nbuf[32], sbuf[32];
    snprintf(nbuf, sizeof nbuf, "%ld", n + 1);
    snprintf(sbuf, sizeof sbuf, "%ld", sum);
    char *args[] = {argv[0], argv[1], nbuf, sbuf, NULL};
    execv("/proc/self/exe", args);
    perror("execv");
    return 127;
}
