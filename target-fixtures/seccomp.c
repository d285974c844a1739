/* seccomp: a program under a seccomp filter of its own, as many services
 * run (systemd's SystemCallFilter=, MemoryDenyWriteExecute=, container
 * runtimes' profiles).
 *
 * Exercises: rtrace never makes a system call through the program's filter
 * (its scratch page, fast probes' ring and detour areas, their unmapping):
 * suspended for rtrace's own calls where it may (CAP_SYS_ADMIN), none made
 * where it may not. The program is never killed, never sees a failing call
 * of its own, and its filter is still in force once rtrace has gone.
 *
 * Usage: seccomp FILTER N [wait | loop THREADS]
 *   FILTER is one of
 *     none    no filter;
 *     memfd   memfd_create kills the process (SECCOMP_RET_KILL_PROCESS);
 *     wx      mmap, mprotect and pkey_mprotect with PROT_EXEC fail with
 *             EPERM (MemoryDenyWriteExecute style);
 *     allow   an allow-list: read, write, exit, exit_group, rt_sigreturn
 *             and restart_syscall; any other call kills the process;
 *     strict  SECCOMP_MODE_STRICT (read, write, _exit, sigreturn; any other
 *             call is SIGKILL).
 *   The filter is a hand-written BPF program, installed after
 *   PR_SET_NO_NEW_PRIVS, as the first thing main does (after setting
 *   RLIMIT_CORE to 0, so a kill dumps no core, and ignoring SIGINT). Then
 *   it prints "ready"; with
 *   `wait` it reads a line from stdin (the go-ahead), calls work(i) for
 *   i = 0..N-1 and prints "sum=<N*N>"; with `wait` it reads a line again.
 *   Last, it makes the call its filter forbids, which shows the filter is
 *   still in force:
 *     none:   nothing; exits 3;
 *     memfd:  memfd_create: killed by SIGSYS (status 159);
 *     wx:     mmap(PROT_READ|PROT_EXEC) fails with EPERM: prints
 *             "exec mmap: EPERM", exits 3 (else "exec mmap: ok", exits 1);
 *     allow:  getppid: killed by SIGSYS (status 159);
 *     strict: getppid: killed by SIGKILL (status 137).
 *   Everything after the filter uses read, write and exit only (no stdio),
 *   so that every filter allows the program's own calls.
 *
 *   With `loop THREADS` (filters none, memfd and wx: making threads needs
 *   clone and mmap), the main thread and THREADS-1 others call work() over
 *   and over, each making the forbidden call after every N calls when it
 *   is a call that fails (wx: an executable mmap must fail with EPERM, else
 *   the program prints "exec mmap: ok" and exits 1 at once), while one
 *   more thread waits in read() for a line on stdin; then they stop, and
 *   the program prints "loops=ok" and ends as above. A seccomp suspension
 *   left on any looping thread shows at once.
 *
 * Output (stdout), exactly: "ready\nsum=<N*N>\n" (with `loop`:
 * "ready\nloops=ok\n"), then for wx "exec mmap: EPERM\n". */
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fixture.h"

#define ARCH offsetof(struct seccomp_data, arch)
#define NR offsetof(struct seccomp_data, nr)
/* The low 32 bits of the third argument (x86-64 is little-endian). */
#define ARG2 offsetof(struct seccomp_data, args[2])

#define LOAD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define JEQ(k, jt, jf) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (jt), (jf))
#define JSET(k, jt, jf) BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, (k), (jt), (jf))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
/* Any other architecture's calls (i386 through int 0x80) are killed. */
#define X86_64_ONLY LOAD(ARCH), JEQ(AUDIT_ARCH_X86_64, 1, 0), RET(SECCOMP_RET_KILL_PROCESS)

static struct sock_filter memfd[] = {
    X86_64_ONLY,
    LOAD(NR),
    JEQ(__NR_memfd_create, 0, 1),
    RET(SECCOMP_RET_KILL_PROCESS),
    RET(SECCOMP_RET_ALLOW),
};

static struct sock_filter wx[] = {
    X86_64_ONLY,
    /* 3 */ LOAD(NR),
    /* 4 */ JEQ(__NR_mmap, 3, 0),
    /* 5 */ JEQ(__NR_mprotect, 2, 0),
    /* 6 */ JEQ(__NR_pkey_mprotect, 1, 0),
    /* 7 */ RET(SECCOMP_RET_ALLOW),
    /* 8 */ LOAD(ARG2),
    /* 9 */ JSET(PROT_EXEC, 0, 1),
    /* 10 */ RET(SECCOMP_RET_ERRNO | EPERM),
    /* 11 */ RET(SECCOMP_RET_ALLOW),
};

static struct sock_filter allow[] = {
    X86_64_ONLY,
    /* 3 */ LOAD(NR),
    /* 4 */ JEQ(__NR_read, 6, 0),
    /* 5 */ JEQ(__NR_write, 5, 0),
    /* 6 */ JEQ(__NR_exit, 4, 0),
    /* 7 */ JEQ(__NR_exit_group, 3, 0),
    /* 8 */ JEQ(__NR_rt_sigreturn, 2, 0),
    /* 9 */ JEQ(__NR_restart_syscall, 1, 0),
    /* 10 */ RET(SECCOMP_RET_KILL_PROCESS),
    /* 11 */ RET(SECCOMP_RET_ALLOW),
};

PROBED int work(int x)
{
    BARRIER();
    return 2 * x + 1;
}

static volatile int stop;

/* The wx filter's forbidden call, which must fail with EPERM. */
static int exec_mmap_refused(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED && errno == EPERM;
}

static void say(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(1, s, len);
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

/* Reads one line (or up to end of file) from stdin. */
static void wait_for_go(void)
{
    char c;
    while (read(0, &c, 1) == 1 && c != '\n')
        ;
}

static int n;
static int wx_filter;

static void *looper(void *arg)
{
    (void)arg;
    while (!stop) {
        long sum = 0;
        for (int i = 0; i < n; i++)
            sum += work(i);
        if (sum != (long)n * n) {
            say("bad sum\n");
            syscall(SYS_exit_group, 1);
        }
        if (wx_filter && !exec_mmap_refused()) {
            say("exec mmap: ok\n");
            syscall(SYS_exit_group, 1);
        }
    }
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    wait_for_go();
    stop = 1;
    return NULL;
}

static int install(const char *name)
{
    struct sock_fprog prog;
    if (strcmp(name, "none") == 0)
        return 0;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    if (strcmp(name, "strict") == 0)
        return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, NULL);
    if (strcmp(name, "memfd") == 0) {
        prog.filter = memfd;
        prog.len = sizeof memfd / sizeof memfd[0];
    } else if (strcmp(name, "wx") == 0) {
        prog.filter = wx;
        prog.len = sizeof wx / sizeof wx[0];
    } else if (strcmp(name, "allow") == 0) {
        prog.filter = allow;
        prog.len = sizeof allow / sizeof allow[0];
    } else {
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: seccomp none|memfd|wx|allow|strict N [wait]\n");
        return 2;
    }
    const char *filter = argv[1];
    n = atoi(argv[2]);
    wx_filter = strcmp(filter, "wx") == 0;
    int wait = argc > 3 && strcmp(argv[3], "wait") == 0;
    int threads = argc > 4 && strcmp(argv[3], "loop") == 0 ? atoi(argv[4]) : 0;
    pthread_t tids[64];
    if (threads > 64)
        threads = 64;
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    /* A Ctrl-C passed on by a tracer that launched it leaves it running, so
     * that a test can look at it after the tracer let go. */
    signal(SIGINT, SIG_IGN);
    char line[64];
    if (install(filter) != 0) {
        perror("seccomp");
        return 1;
    }
    say("ready\n");
    if (threads > 0) {
        if (pthread_create(&tids[0], NULL, reader, NULL) != 0)
            return 1;
        for (int t = 1; t < threads; t++)
            if (pthread_create(&tids[t], NULL, looper, NULL) != 0)
                return 1;
        looper(NULL);
        for (int t = 0; t < threads; t++)
            pthread_join(tids[t], NULL);
        say("loops=ok\n");
    } else {
        if (wait)
            wait_for_go();
        long sum = 0;
        for (int i = 0; i < n; i++)
            sum += work(i);
        /* snprintf makes no system call. */
        snprintf(line, sizeof line, "sum=%ld\n", sum);
        say(line);
        if (wait)
            wait_for_go();
    }
    if (strcmp(filter, "memfd") == 0)
        syscall(SYS_memfd_create, "forbidden", 0);
    if (strcmp(filter, "allow") == 0 || strcmp(filter, "strict") == 0)
        syscall(SYS_getppid);
    if (wx_filter) {
        if (!exec_mmap_refused()) {
            say("exec mmap: ok\n");
            syscall(SYS_exit, 1);
        }
        say("exec mmap: EPERM\n");
    }
    /* exit_group is not allowed in strict mode; the process has one thread. */
    syscall(SYS_exit, 3);
    return 3;
}
