//! Seccomp as a tracer meets it: the mode a thread runs in (`Seccomp:` in
//! `/proc/TID/status`), and [`Suspension`], which lets one stopped thread's
//! system calls skip its filters while rtrace makes it run calls of its own
//! (PTRACE_O_SUSPEND_SECCOMP).
//!
//! Seccomp is per thread: a filter is installed by the thread itself
//! (`seccomp(SECCOMP_SET_MODE_FILTER)`, inherited across fork, clone and
//! execve) or by another thread of its process with
//! `SECCOMP_FILTER_FLAG_TSYNC`, so the thread that is to run a call is the
//! one whose mode counts.

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};

use crate::addr::Tid;
use crate::error::{Error, Result};

/// A thread's seccomp mode (`seccomp(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No seccomp: every system call is the kernel's to judge.
    Disabled,
    /// SECCOMP_MODE_STRICT: only read, write, _exit and sigreturn; any other
    /// call kills the thread with SIGKILL.
    Strict,
    /// SECCOMP_MODE_FILTER: BPF programs decide each call (allow, an errno,
    /// SIGSYS, kill, a notification…), `filters` of them.
    Filter {
        /// `Seccomp_filters:` (0 on kernels before 5.9, which do not say).
        filters: u32,
    },
}

/// The seccomp mode `status` (the text of `/proc/TID/status`) reports. A
/// kernel built without CONFIG_SECCOMP prints no `Seccomp:` line: disabled.
pub fn parse_mode(status: &str) -> Mode {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    match field("Seccomp:") {
        Some(1) => Mode::Strict,
        Some(2) => Mode::Filter {
            filters: field("Seccomp_filters:").unwrap_or(0),
        },
        _ => Mode::Disabled,
    }
}

/// The seccomp mode of thread `tid` (any thread: `/proc/TID` exists for
/// every thread id, listed in its process's `task/` or not).
pub fn mode(tid: Tid) -> Result<Mode> {
    match std::fs::read_to_string(format!("/proc/{tid}/status")) {
        Ok(status) => Ok(parse_mode(&status)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::NoSuchProcess { pid: tid })
        }
        Err(e) => Err(Error::io(format!("cannot read /proc/{tid}/status"), e)),
    }
}

/// The seccomp mode rtrace itself runs in: a tracer under seccomp may not
/// suspend a tracee's filters (see [`Suspension::begin`]).
pub fn own_mode() -> Mode {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| parse_mode(&s))
        .unwrap_or(Mode::Disabled)
}

/// PTRACE_O_SUSPEND_SECCOMP (`<linux/ptrace.h>`).
const SUSPEND: Options = Options::from_bits_retain(libc::PTRACE_O_SUSPEND_SECCOMP);

/// While it lives, the system calls of one stopped thread skip its seccomp
/// filters (and strict mode): PTRACE_O_SUSPEND_SECCOMP is among its ptrace
/// options. The kernel's `__secure_computing` returns at once for a task
/// whose `ptrace` flags hold PT_SUSPEND_SECCOMP, for every call the task
/// makes, its own included, so the option is set on the one thread that
/// runs rtrace's call, only while it does, and taken off again by
/// [`Suspension::end`] (or, should that not be called, by `Drop`).
///
/// Nothing can outlive rtrace: a detach clears every ptrace option of the
/// thread (`__ptrace_unlink` sets `child->ptrace = 0`), and so does the
/// tracer's exit (`exit_ptrace`). A task created while the option is set
/// would inherit it (`ptrace_init_task` copies the creator's flags to an
/// auto-attached child): rtrace's calls never create one.
#[derive(Debug)]
pub struct Suspension {
    tid: Tid,
    /// The thread's options without the suspension.
    base: Options,
    ended: bool,
}

impl Suspension {
    /// Suspends the seccomp filters of stopped thread `tid`, whose ptrace
    /// options are `base`. The kernel (`ptrace_setoptions`) refuses with
    /// EPERM unless rtrace has CAP_SYS_ADMIN in the initial user namespace
    /// (`capable()`, not `ns_capable()`) and runs under no seccomp mode of
    /// its own; with EINVAL when it was built without
    /// CONFIG_CHECKPOINT_RESTORE.
    pub fn begin(tid: Tid, base: Options) -> std::result::Result<Suspension, Errno> {
        ptrace::setoptions(tid, base | SUSPEND)?;
        Ok(Suspension {
            tid,
            base,
            ended: false,
        })
    }

    /// Puts the thread's filters back in force. A thread that is gone has
    /// nothing to put back.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        match ptrace::setoptions(self.tid, self.base) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(Error::Ptrace {
                op: "PTRACE_SETOPTIONS",
                tid: self.tid,
                errno,
            }),
        }
    }
}

impl Drop for Suspension {
    fn drop(&mut self) {
        if !self.ended {
            let _ = ptrace::setoptions(self.tid, self.base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_from_status() {
        let filter = "Name:\tx\nSeccomp:\t2\nSeccomp_filters:\t3\nSpeculation_Store_Bypass:\tx\n";
        assert_eq!(parse_mode(filter), Mode::Filter { filters: 3 });
        assert_eq!(parse_mode("Seccomp:\t1\n"), Mode::Strict);
        assert_eq!(
            parse_mode("Seccomp:\t0\nSeccomp_filters:\t0\n"),
            Mode::Disabled
        );
        // Before 5.9 there is no count; without CONFIG_SECCOMP, no line.
        assert_eq!(parse_mode("Seccomp:\t2\n"), Mode::Filter { filters: 0 });
        assert_eq!(parse_mode("Name:\tx\n"), Mode::Disabled);
    }
}
