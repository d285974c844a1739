/* tailsym: a probed function that reaches dlsym by a tail call.
 *
 * Exercises: fast return probes when the function a watched call
 * tail-jumps to reads its own return address (dlsym finds its caller's
 * module with it, for RTLD_NEXT): the call's return address must be the
 * real one by then, and the call still counted when it returns.
 *
 * top(name) calls wrapsym(name), which calls findsym(name), which returns
 * dlsym(RTLD_NEXT, name) by a tail call at -O2 (a jmp: the slot dlsym sees
 * is findsym's).
 *
 * Usage: tailsym [N]   N (default 1000) rounds of top("puts").
 * Output (stdout), exactly: "found=<N>\n" (each result equals what
 * dlsym(RTLD_NEXT, "puts") gives main), exit status 0; 64 for a bad
 * argument. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

volatile long sink;

PROBED void *findsym(const char *name)
{
    sink = (long)name;
    return dlsym(RTLD_NEXT, name);
}

PROBED void *wrapsym(const char *name)
{
    void *p = findsym(name);
    sink += (long)p;
    return p;
}

PROBED void *top(const char *name)
{
    void *p = wrapsym(name);
    sink += (long)p;
    return p;
}

int main(int argc, char **argv)
{
    long n = 1000;
    if (argc > 1) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (*end || n < 0)
            return 64;
    }
    void *puts_next = dlsym(RTLD_NEXT, "puts");
    long found = 0;
    for (long i = 0; i < n; i++)
        found += top("puts") == puts_next;
    printf("found=%ld\n", found);
    return 0;
}
