/* floor: the smallest ptrace tracer that does what rtrace does per hit, the
 * baseline of rtrace's hit-cost benchmark (benches/hit_cost.rs).
 *
 * Usage: floor MODE ADDR PROGRAM [ARG]...
 *   ADDR     the absolute address of a function whose first instruction is
 *            `push %rbp` (a non-PIE build, so no load bias)
 *   MODE     emulate      int3 at ADDR; each hit emulates the push: 1 stop
 *            step         restore the byte, single-step, re-arm: 2 stops
 *            emulate-ret  emulate, and rewrite the return address to a
 *                         trampoline int3 (the program's entry point, which
 *                         never runs again): 2 stops per call
 *            step-ret     step, and the trampoline: 3 stops per call
 * Prints "hits=N" on stderr at the end and exits with the program's status.
 * No error recovery: this is a measuring stick, not a tool. */
#include <errno.h>
#include <elf.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t entry_point(const char *path)
{
    FILE *f = fopen(path, "rb");
    Elf64_Ehdr eh;
    if (!f || fread(&eh, sizeof eh, 1, f) != 1) {
        perror(path);
        exit(2);
    }
    fclose(f);
    return eh.e_entry;
}

static void poke_byte(pid_t pid, uint64_t addr, uint8_t byte)
{
    long word = ptrace(PTRACE_PEEKTEXT, pid, (void *)addr, NULL);
    word = (word & ~0xffL) | byte;
    ptrace(PTRACE_POKETEXT, pid, (void *)addr, (void *)word);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: floor emulate|step|emulate-ret|step-ret ADDR PROGRAM [ARG]...\n");
        return 2;
    }
    const char *mode = argv[1];
    int step = strncmp(mode, "step", 4) == 0;
    int ret = strstr(mode, "-ret") != NULL;
    uint64_t addr = strtoull(argv[2], NULL, 0);
    uint64_t tramp = entry_point(argv[3]);

    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        execv(argv[3], argv + 3);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0); /* the exec stop */
    ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)PTRACE_O_EXITKILL);
    long orig = ptrace(PTRACE_PEEKTEXT, pid, (void *)addr, NULL);
    poke_byte(pid, addr, 0xcc);
    int tramp_armed = 0;
    uint64_t returns[65536];
    int depth = 0;
    long hits = 0;
    struct user_regs_struct regs;
    ptrace(PTRACE_CONT, pid, NULL, NULL);

    for (;;) {
        if (waitpid(pid, &status, 0) < 0)
            break;
        if (WIFEXITED(status) || WIFSIGNALED(status))
            break;
        int sig = WSTOPSIG(status);
        if (sig != SIGTRAP) {
            ptrace(PTRACE_CONT, pid, NULL, (void *)(long)sig);
            continue;
        }
        ptrace(PTRACE_GETREGS, pid, NULL, &regs);
        if (regs.rip - 1 == addr) {
            hits++;
            if (ret) {
                if (!tramp_armed) {
                    poke_byte(pid, tramp, 0xcc);
                    tramp_armed = 1;
                }
                returns[depth++] = ptrace(PTRACE_PEEKDATA, pid, (void *)regs.rsp, NULL);
                ptrace(PTRACE_POKEDATA, pid, (void *)regs.rsp, (void *)tramp);
            }
            if (step) {
                ptrace(PTRACE_POKETEXT, pid, (void *)addr, (void *)orig);
                regs.rip = addr;
                ptrace(PTRACE_SETREGS, pid, NULL, &regs);
                ptrace(PTRACE_SINGLESTEP, pid, NULL, NULL);
                waitpid(pid, &status, 0);
                poke_byte(pid, addr, 0xcc);
            } else {
                regs.rsp -= 8;
                ptrace(PTRACE_POKEDATA, pid, (void *)regs.rsp, (void *)regs.rbp);
                regs.rip = addr + 1;
                ptrace(PTRACE_SETREGS, pid, NULL, &regs);
            }
        } else if (ret && regs.rip - 1 == tramp && depth > 0) {
            regs.rip = returns[--depth];
            ptrace(PTRACE_SETREGS, pid, NULL, &regs);
        } else {
            ptrace(PTRACE_CONT, pid, NULL, (void *)(long)SIGTRAP);
            continue;
        }
        ptrace(PTRACE_CONT, pid, NULL, NULL);
    }
    fprintf(stderr, "hits=%ld\n", hits);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
