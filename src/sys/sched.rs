//! CPU placement of the tracer itself.
//!
//! A ptrace stop is a switch from the tracee to the tracer and back; when the
//! two run on different CPUs, each switch is a cross-CPU wake-up, which costs
//! more than the switch. Pinning the tracer to the CPU the tracee runs on
//! lets the scheduler wake each on the other's CPU only if the tracee stays
//! there too: pinning the tracer alone changes nothing measurable (the
//! scheduler keeps the tracee on its own idle CPU), so `--pin` pins both,
//! and the engine gives the tracee's threads their own affinity back when it
//! lets them go.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use crate::addr::Tid;
use crate::error::{Error, Result};

/// The CPU thread `tid` last ran on (field 39 of /proc/TID/stat).
pub fn cpu_of(tid: Tid) -> Option<usize> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its closing ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(36)?.parse().ok()
}

/// Pins the calling thread to `cpu`.
pub fn pin_self(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
        .map_err(|e| Error::io(format!("cannot pin rtrace to CPU {cpu}"), e.into()))
}

/// A thread's CPU affinity.
pub type CpuMask = CpuSet;

/// The CPU affinity of thread `tid`.
pub fn affinity(tid: Tid) -> Option<CpuMask> {
    sched_getaffinity(tid).ok()
}

/// Sets the CPU affinity of thread `tid` (0: the caller). Failures (the
/// thread is gone) are ignored.
pub fn set_affinity(tid: Tid, mask: &CpuMask) {
    let _ = sched_setaffinity(tid, mask);
}

/// The mask of `cpu` alone.
pub fn only(cpu: usize) -> Result<CpuMask> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .map_err(|e| Error::io(format!("no CPU {cpu}"), e.into()))?;
    Ok(set)
}

/// A process of rtrace's own that gives the threads rtrace pinned to its CPU
/// (`--pin`) their own CPU affinity back if rtrace dies without doing it: a
/// SIGKILL leaves nothing of rtrace to run, and the threads would stay on one
/// CPU for the rest of their lives. rtrace tells it each thread it pins and
/// that thread's own affinity, over a pipe; at the end of a clean run it
/// says so and the guardian leaves without a word. End of file without that
/// (rtrace is gone, its end of the pipe closed by the kernel) makes the
/// guardian set each thread's affinity back, if that thread is still the
/// one it was told about (same start time: thread ids are reused), and
/// leave.
///
/// It is forked twice (so it is no child of rtrace's: the tracer's
/// `waitpid(-1)` never sees it), closes every descriptor but its end of the
/// pipe (it must hold no output of rtrace's open: a reader waiting for the
/// end of rtrace's output would wait for it too), and ignores the signals a
/// terminal sends to its group.
#[derive(Debug)]
pub struct Guardian {
    writer: std::fs::File,
}

/// One record on the pipe: the operation, the thread, its start time, its
/// mask.
const GUARD_RECORD: usize = 1 + 4 + 8 + std::mem::size_of::<libc::cpu_set_t>();
const GUARD_PIN: u8 = b'P';
const GUARD_DONE: u8 = b'D';
/// Threads the guardian remembers (the oldest are forgotten past it).
const GUARD_THREADS: usize = 1 << 16;

impl Guardian {
    /// Starts the guardian.
    pub fn start() -> Result<Guardian> {
        let fail = |e: std::io::Error| Error::io("cannot start rtrace's affinity guardian", e);
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        let (read_end, write_end) = (fds[0], fds[1]);
        // What the guardian keeps, made before the fork: it allocates
        // nothing itself.
        let mut threads: Vec<[u8; GUARD_RECORD]> = Vec::with_capacity(GUARD_THREADS);
        // SAFETY: fork has no memory-safety precondition; the child only
        // makes system calls and writes memory it owns a copy of (glibc's
        // fork leaves malloc usable, but the child does not allocate), and
        // leaves with _exit.
        let first = unsafe { libc::fork() };
        if first < 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        if first == 0 {
            // SAFETY: as above: a second fork, then the guardian's loop,
            // which never returns (it ends with _exit); the intermediate
            // child leaves at once, so the guardian is orphaned.
            unsafe {
                if libc::fork() == 0 {
                    guard(read_end, &mut threads);
                }
                libc::_exit(0);
            }
        }
        // SAFETY: waits for the intermediate child (it exits at once), and
        // closes our copy of the read end; no pointer but a null status.
        unsafe {
            libc::waitpid(first, std::ptr::null_mut(), libc::__WALL);
            libc::close(read_end);
        }
        use std::os::fd::FromRawFd;
        // SAFETY: `write_end` is a descriptor we own (pipe2 made it) and give
        // to the File, which closes it.
        let writer = unsafe { std::fs::File::from_raw_fd(write_end) };
        Ok(Guardian { writer })
    }

    /// Thread `tid` is pinned to rtrace's CPU; `own` is its own affinity.
    pub fn pinned(&mut self, tid: Tid, own: &CpuMask) {
        let Some(start) = start_time(tid.as_raw()) else {
            return;
        };
        let mut record = [0u8; GUARD_RECORD];
        record[0] = GUARD_PIN;
        record[1..5].copy_from_slice(&tid.as_raw().to_ne_bytes());
        record[5..13].copy_from_slice(&start.to_ne_bytes());
        // SAFETY: CpuSet wraps a cpu_set_t (nix: `#[repr(C)]` with one
        // field), which is plain bytes of exactly the size copied.
        let mask: &[u8] = unsafe {
            std::slice::from_raw_parts(
                (own as *const CpuMask).cast::<u8>(),
                std::mem::size_of::<libc::cpu_set_t>(),
            )
        };
        record[13..].copy_from_slice(mask);
        use std::io::Write;
        let _ = self.writer.write_all(&record);
    }
}

impl Drop for Guardian {
    /// A clean end: the guardian leaves without touching anything.
    fn drop(&mut self) {
        let mut record = [0u8; GUARD_RECORD];
        record[0] = GUARD_DONE;
        use std::io::Write;
        let _ = self.writer.write_all(&record);
    }
}

/// The start time of thread `tid` (field 22 of /proc/TID/stat), which tells
/// a thread from a later one with its id.
fn start_time(tid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The guardian's loop (see [`Guardian`]): in the doubly forked child,
/// reading records from `fd` until rtrace says it is done or goes.
fn guard(fd: libc::c_int, threads: &mut Vec<[u8; GUARD_RECORD]>) -> ! {
    // SAFETY: every call here is a system call on integers or on buffers
    // this function owns; the process leaves with _exit and never returns
    // to code that expects rtrace's state.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Every descriptor but the pipe's read end.
        libc::syscall(libc::SYS_close_range, 0u32, (fd - 1).max(0) as u32, 0u32);
        if fd == 0 {
            libc::close(0);
        }
        libc::syscall(libc::SYS_close_range, (fd + 1) as u32, u32::MAX, 0u32);
        loop {
            let mut record = [0u8; GUARD_RECORD];
            let mut got = 0;
            while got < GUARD_RECORD {
                let n = libc::read(fd, record[got..].as_mut_ptr().cast(), GUARD_RECORD - got);
                if n <= 0 {
                    if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                    {
                        continue;
                    }
                    // rtrace is gone: give the threads back their own.
                    for t in threads.iter() {
                        let tid = i32::from_ne_bytes(t[1..5].try_into().unwrap_or_default());
                        let start = u64::from_ne_bytes(t[5..13].try_into().unwrap_or_default());
                        if start_time(tid) == Some(start) {
                            libc::sched_setaffinity(
                                tid,
                                std::mem::size_of::<libc::cpu_set_t>(),
                                t[13..].as_ptr().cast(),
                            );
                        }
                    }
                    libc::_exit(0);
                }
                got += n as usize;
            }
            match record[0] {
                GUARD_DONE => libc::_exit(0),
                GUARD_PIN => {
                    let seen = threads.iter().position(|t| t[1..5] == record[1..5]);
                    match seen {
                        Some(i) => threads[i] = record,
                        None if threads.len() < GUARD_THREADS => threads.push(record),
                        // Full (pushing stays within the capacity reserved
                        // before the fork): the oldest goes.
                        None => {
                            threads.remove(0);
                            threads.push(record);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
