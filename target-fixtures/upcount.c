/* upcount: counts the hits of kernel uprobes in one process, as bpftrace
 * does.
 *
 * Exercises: nothing of rtrace. It is the oracle suite's second observer:
 * the kernel's own count of how often a process ran an instruction. Each
 * uprobe is what bpftrace's `uprobe:` probe with `-p PID` is made of: a
 * perf_event_open(2) event of the uprobe PMU on the task PID, with a BPF
 * program attached (PERF_EVENT_IOC_SET_BPF) that adds one to the probe's
 * slot of an array map. The kernel writes the breakpoint only into the
 * address space of PID (uprobe_perf_filter compares the event's task's mm)
 * and runs the program for every thread of that address space, including
 * threads created later; it follows an execve of PID into its new image,
 * and removes the breakpoint from a forked child at its first hit there
 * (the child is not counted). The program counts in a map, not in the perf
 * event's own counter: that counter counts only the task it was opened on,
 * and an `inherit` event for the other threads would have the kernel read
 * the uprobe's path again, at each clone, from the cloning process's memory
 * (perf_uprobe_init's strndup_user), failing the clone with EFAULT.
 *
 * Usage: upcount PID FILE OFFSET...
 * OFFSET is a file offset in FILE (hex with 0x, or decimal). Opens one
 * counting uprobe per OFFSET, prints "attached <n>\n" on stdout once all are
 * in force, then reads its stdin to end of file, then prints one line per
 * OFFSET, in order: "<offset as given> <count>\n", and exits 0. Errors: a
 * message on stderr naming what failed, exit status 1 (2 for usage). With
 * no OFFSET it only prints "attached 0" and waits: a live process with libc
 * loaded and relocated. PID 0 is upcount itself. */
#include <errno.h>
#include <inttypes.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The uprobe PMU's type number (dynamic; the kernel lists it in sysfs). */
static int uprobe_type(void)
{
    FILE *f = fopen("/sys/bus/event_source/devices/uprobe/type", "r");
    int type = -1;
    if (!f) {
        fprintf(stderr, "upcount: no uprobe PMU: /sys/bus/event_source/devices/uprobe/type: %s\n",
                strerror(errno));
        return -1;
    }
    if (fscanf(f, "%d", &type) != 1) {
        fprintf(stderr, "upcount: cannot read the uprobe PMU's type\n");
        type = -1;
    }
    fclose(f);
    return type;
}

static long bpf(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

/* A program that adds one to slot `key` of the array map `map`:
 *   *(u32 *)(r10 - 4) = key; r2 = r10 - 4; r1 = map;
 *   r0 = bpf_map_lookup_elem(r1, r2); if r0 != 0: lock *(u64 *)r0 += 1;
 *   return 0 (nothing more: no perf record). */
static int counting_program(int map, int key)
{
    struct bpf_insn insns[] = {
        INSN(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, -4, key),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0),
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4),
        INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map),
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
        INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 2, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1),
        INSN(BPF_STX | BPF_ATOMIC | BPF_DW, BPF_REG_0, BPF_REG_1, 0, BPF_ADD),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    static char log[4096];
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_KPROBE;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = sizeof insns / sizeof insns[0];
    attr.license = (uint64_t)(uintptr_t) "GPL";
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = sizeof log;
    attr.log_level = 1;
    int fd = (int)bpf(BPF_PROG_LOAD, &attr);
    if (fd < 0) {
        fprintf(stderr, "upcount: BPF_PROG_LOAD: %s\n%s\n", strerror(errno), log);
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: upcount PID FILE OFFSET...\n");
        return 2;
    }
    pid_t pid = (pid_t)strtol(argv[1], NULL, 10);
    const char *file = argv[2];
    int n = argc - 3;
    int map = -1;
    if (n > 0) {
        int type = uprobe_type();
        if (type < 0) {
            return 1;
        }
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 8;
        attr.max_entries = (uint32_t)n;
        map = (int)bpf(BPF_MAP_CREATE, &attr);
        if (map < 0) {
            fprintf(stderr, "upcount: BPF_MAP_CREATE: %s\n", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int prog = counting_program(map, i);
            if (prog < 0) {
                return 1;
            }
            struct perf_event_attr pattr;
            memset(&pattr, 0, sizeof pattr);
            pattr.size = sizeof pattr;
            pattr.type = (uint32_t)type;
            pattr.config = 0; /* an entry probe: the "retprobe" bit (config:0) clear */
            pattr.config1 = (uint64_t)(uintptr_t)file; /* uprobe_path */
            pattr.config2 = strtoull(argv[3 + i], NULL, 0); /* probe_offset */
            pattr.sample_period = 1;
            pattr.disabled = 1;
            int fd = (int)syscall(SYS_perf_event_open, &pattr, pid, -1, -1, PERF_FLAG_FD_CLOEXEC);
            if (fd < 0) {
                fprintf(stderr, "upcount: perf_event_open(uprobe %s:%s, pid %d): %s\n", file,
                        argv[3 + i], (int)pid, strerror(errno));
                return 1;
            }
            if (ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog) < 0 ||
                ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) < 0) {
                fprintf(stderr, "upcount: attach the program to uprobe %s:%s: %s\n", file,
                        argv[3 + i], strerror(errno));
                return 1;
            }
        }
    }
    printf("attached %d\n", n);
    fflush(stdout);
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    for (int i = 0; i < n; i++) {
        uint32_t key = (uint32_t)i;
        uint64_t count = 0;
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&key;
        attr.value = (uint64_t)(uintptr_t)&count;
        if (bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0) {
            fprintf(stderr, "upcount: read the count of %s: %s\n", argv[3 + i], strerror(errno));
            return 1;
        }
        printf("%s %" PRIu64 "\n", argv[3 + i], count);
    }
    return 0;
}
