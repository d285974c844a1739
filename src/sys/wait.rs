//! waitpid(2), classified once into the closed [`Stop`] enum.
//!
//! Raw wait statuses and `si_code`s never leave this module.

use nix::errno::Errno;

use crate::addr::Tid;
use crate::error::{Error, Result};
use crate::sys::ptrace;

/// Why a SIGTRAP stopped a thread, from its `si_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapCause {
    /// An `int3` executed (si_code SI_KERNEL).
    Breakpoint,
    /// A single-step finished (TRAP_TRACE, or TRAP_BRKPT after stepping a `syscall`).
    Step,
    /// Someone sent SIGTRAP (kill, tgkill, raise…): it belongs to the tracee.
    Sent,
}

/// A ptrace event stop (`status >> 16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new thread (or clone without CLONE_VFORK whose exit signal is not SIGCHLD).
    Clone {
        /// The new task.
        child: Tid,
    },
    /// fork(2) (or clone with SIGCHLD).
    Fork {
        /// The new process.
        child: Tid,
    },
    /// vfork(2) (or clone with CLONE_VFORK, as posix_spawn does).
    Vfork {
        /// The new process.
        child: Tid,
    },
    /// The vfork child exec'ed or exited: the parent resumes.
    VforkDone,
    /// The thread is exiting (PTRACE_EVENT_EXIT): it runs no more user code.
    Exit,
    /// execve succeeded; the thread now runs the new image.
    Exec {
        /// The thread id the exec'ing thread had (differs when a non-leader exec'ed).
        former: Tid,
    },
}

/// Everything `waitpid` can report about a traced thread.
// `GroupStop` is ptrace(2)'s name for that stop.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The thread exited.
    Exited {
        /// The thread.
        tid: Tid,
        /// Its exit status.
        code: i32,
    },
    /// The thread was killed by a signal.
    Killed {
        /// The thread.
        tid: Tid,
        /// The signal.
        signal: i32,
        /// Core dumped.
        core: bool,
    },
    /// A SIGTRAP signal-delivery-stop. Where it came from is asked with
    /// [`trap_cause`] only when the registers do not already tell (a
    /// PTRACE_GETSIGINFO less per hit).
    Trap {
        /// The thread.
        tid: Tid,
    },
    /// A signal-delivery-stop for any other signal.
    Signal {
        /// The thread.
        tid: Tid,
        /// The signal.
        signal: i32,
    },
    /// A group-stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU took effect).
    GroupStop {
        /// The thread.
        tid: Tid,
        /// The stop signal.
        signal: i32,
    },
    /// PTRACE_EVENT_STOP outside a group-stop: a PTRACE_INTERRUPT took effect, a new
    /// task made its first stop, or a PTRACE_LISTEN-ing thread was woken.
    Interrupt {
        /// The thread.
        tid: Tid,
    },
    /// A ptrace event.
    Event {
        /// The thread.
        tid: Tid,
        /// The event.
        event: Event,
    },
}

impl Stop {
    /// The thread the stop is about.
    pub fn tid(&self) -> Tid {
        match *self {
            Stop::Exited { tid, .. }
            | Stop::Killed { tid, .. }
            | Stop::Trap { tid, .. }
            | Stop::Signal { tid, .. }
            | Stop::GroupStop { tid, .. }
            | Stop::Interrupt { tid }
            | Stop::Event { tid, .. } => tid,
        }
    }

    /// True when the thread no longer exists.
    pub fn is_death(&self) -> bool {
        matches!(self, Stop::Exited { .. } | Stop::Killed { .. })
    }
}

/// Which threads to wait for.
#[derive(Clone, Copy, Debug)]
pub enum Which {
    /// Any tracee of this OS thread.
    Any,
    /// One thread.
    Tid(Tid),
}

/// What a [`wait`] came back with: errno is classified here, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// A thread stopped, or ended.
    Stop(Stop),
    /// A non-blocking wait found no stop ready (`waitpid` returned 0).
    NotReady,
    /// An interruptible wait was ended by a detach request or the tracer's
    /// timer (EINTR): the event loop looks at why.
    Interrupted,
    /// No tracee is left to wait for (ECHILD): every thread of this tracer
    /// (or the one thread named) has been reaped, or was never ours.
    NoTracee,
}

/// Waits for the next stop. `block: false` answers [`Waited::NotReady`] when
/// nothing is ready; [`Waited::Interrupted`] when a signal interrupted an
/// interruptible wait; any errno other than EINTR and ECHILD is an error.
///
/// `__WALL` waits for threads as well as processes; `__WNOTHREAD` keeps each
/// tracer to the tracees of its own OS thread, so several tracers can live in one
/// process.
///
/// `interruptible`: a blocking wait returns EINTR once a detach was requested,
/// or when the tracer's timer fires (the event loop's wait); inner waits for
/// one thread's step pass `false` and go on waiting.
pub fn wait(which: Which, block: bool, interruptible: bool) -> Result<Waited> {
    match wait_inner(which, block, interruptible) {
        Ok(Some(stop)) => Ok(Waited::Stop(stop)),
        Ok(None) => Ok(Waited::NotReady),
        Err(Errno::EINTR) => Ok(Waited::Interrupted),
        Err(Errno::ECHILD) => Ok(Waited::NoTracee),
        Err(e) => Err(wait_error(e)),
    }
}

fn wait_inner(which: Which, block: bool, interruptible: bool) -> Result<Option<Stop>, Errno> {
    let pid = match which {
        Which::Any => -1,
        Which::Tid(t) => t.as_raw(),
    };
    let mut flags = libc::__WALL | libc::__WNOTHREAD;
    if !block {
        flags |= libc::WNOHANG;
    }
    if block && interruptible && super::signal::detach_requested().is_some() {
        return Err(Errno::EINTR);
    }
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable c_int for the duration of the call.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == -1 {
            match Errno::last() {
                // A detach request or the timer (see `signal`): the event loop
                // looks at why; an inner wait for one thread's step goes on.
                Errno::EINTR if !interruptible => continue,
                e => return Err(e),
            }
        }
        if r == 0 {
            return Ok(None);
        }
        if let Some(stop) = classify(Tid::from_raw(r), status) {
            return Ok(Some(stop));
        }
    }
}

/// A wait of at most `timeout`, for a tracer without the signal handling
/// (a library user's, with no timer to end a blocking wait): SIGCHLD is
/// blocked in this thread around a `waitpid` poll and a `sigtimedwait`, so
/// a stop that comes after the poll leaves SIGCHLD pending and ends the
/// sleep at once. `Ok(None)` when the time passes with no stop; every errno
/// is an error here (the wait neither blocks in `waitpid` nor is
/// interruptible).
pub fn wait_timeout(which: Which, timeout: std::time::Duration) -> Result<Option<Stop>> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let pid = match which {
        Which::Any => -1,
        Which::Tid(t) => t.as_raw(),
    };
    let flags = libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG;
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let old = chld
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(wait_error)?;
    let deadline = std::time::Instant::now() + timeout;
    let result = loop {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable c_int for the duration of the call.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == -1 {
            break Err(wait_error(Errno::last()));
        }
        if r > 0 {
            match classify(Tid::from_raw(r), status) {
                Some(stop) => break Ok(Some(stop)),
                None => continue,
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break Ok(None);
        }
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the set and the timespec are valid for the call; no
        // siginfo is asked for (NULL).
        unsafe {
            libc::sigtimedwait(chld.as_ref(), std::ptr::null_mut(), &ts);
        }
    };
    let _ = old.thread_set_mask();
    result
}

fn classify(tid: Tid, status: i32) -> Option<Stop> {
    if libc::WIFEXITED(status) {
        return Some(Stop::Exited {
            tid,
            code: libc::WEXITSTATUS(status),
        });
    }
    if libc::WIFSIGNALED(status) {
        return Some(Stop::Killed {
            tid,
            signal: libc::WTERMSIG(status),
            core: libc::WCOREDUMP(status),
        });
    }
    if !libc::WIFSTOPPED(status) {
        return None;
    }
    let sig = libc::WSTOPSIG(status);
    let event = (status >> 16) & 0xff;
    let msg = || ptrace::event_msg(tid).unwrap_or(0);
    let child = || Tid::from_raw(msg() as i32);
    Some(match event {
        0 if sig == libc::SIGTRAP => Stop::Trap { tid },
        0 => Stop::Signal { tid, signal: sig },
        libc::PTRACE_EVENT_STOP => {
            if matches!(
                sig,
                libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
            ) {
                Stop::GroupStop { tid, signal: sig }
            } else {
                Stop::Interrupt { tid }
            }
        }
        libc::PTRACE_EVENT_CLONE => Stop::Event {
            tid,
            event: Event::Clone { child: child() },
        },
        libc::PTRACE_EVENT_FORK => Stop::Event {
            tid,
            event: Event::Fork { child: child() },
        },
        libc::PTRACE_EVENT_VFORK => Stop::Event {
            tid,
            event: Event::Vfork { child: child() },
        },
        libc::PTRACE_EVENT_VFORK_DONE => Stop::Event {
            tid,
            event: Event::VforkDone,
        },
        libc::PTRACE_EVENT_EXIT => Stop::Event {
            tid,
            event: Event::Exit,
        },
        libc::PTRACE_EVENT_EXEC => Stop::Event {
            tid,
            event: Event::Exec { former: child() },
        },
        // No other event is enabled; treat one as an interrupt (resume it).
        _ => Stop::Interrupt { tid },
    })
}

/// True when `signal`, at `tid`'s signal-delivery stop, is a fault raised by the
/// instruction the thread was executing (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP
/// with a kernel `si_code`), not a signal someone sent.
pub fn is_fault(tid: Tid, signal: i32) -> bool {
    matches!(
        signal,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
    ) && ptrace::siginfo_code(tid).is_ok_and(|code| code > 0)
}

/// Why the SIGTRAP at `tid`'s signal-delivery stop was raised, from its `si_code`.
pub fn trap_cause(tid: Tid) -> TrapCause {
    const TRAP_BRKPT: i32 = 1;
    const TRAP_TRACE: i32 = 2;
    match ptrace::siginfo_code(tid) {
        Ok(libc::SI_KERNEL) => TrapCause::Breakpoint,
        Ok(TRAP_TRACE | TRAP_BRKPT) => TrapCause::Step,
        Ok(_) => TrapCause::Sent,
        // The thread vanished between the stop and the query: its death is
        // reported next; what we call the trap does not matter.
        Err(_) => TrapCause::Sent,
    }
}

/// What a caller that needs a tracee makes of [`Waited::NoTracee`]: the
/// error an unexpected ECHILD is.
pub fn no_tracee_error() -> Error {
    wait_error(Errno::ECHILD)
}

/// The error of a wait that failed unexpectedly.
fn wait_error(errno: Errno) -> Error {
    Error::io("waitpid", std::io::Error::from_raw_os_error(errno as i32))
}

/// Waits for process `pid`, rtrace's child and no longer its tracee, to
/// change state: to end, or (with `stopped`) to stop. A thread rtrace
/// could not let go at its detach (it was exiting: PTRACE_DETACH fails on
/// it with ESRCH) is still its tracee, and its death is rtrace's to reap
/// first: the kernel hands a ptraced zombie to its real parent only once
/// its tracer has reaped it (`wait_task_zombie`, `do_notify_parent`). Such
/// deaths are reaped on the way, so that a parent waiting for that child
/// (popen's `pclose`) is not kept waiting as long as rtrace waits for it.
/// Such a thread may also stop at its exit (PTRACE_EVENT_EXIT: the program
/// was killed while its threads were being let go): it is let go there,
/// or the program could not end.
/// ECHILD when `pid` is not rtrace's child.
pub fn wait_program(pid: crate::Pid, stopped: bool) -> nix::Result<nix::sys::wait::WaitStatus> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut flags = WaitPidFlag::empty();
    if stopped {
        flags |= WaitPidFlag::WUNTRACED;
    }
    // Not a child (attached to): no tracee's death is waited for either.
    match waitpid(pid, Some(flags | WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => {}
        r => return r,
    }
    flags |= WaitPidFlag::__WALL;
    loop {
        let status = waitpid(crate::Pid::from_raw(-1), Some(flags))?;
        match status {
            WaitStatus::PtraceEvent(tid, ..) | WaitStatus::PtraceSyscall(tid) if tid != pid => {
                let _ = nix::sys::ptrace::detach(tid, None);
            }
            _ if status.pid() == Some(pid) => return Ok(status),
            _ => {}
        }
    }
}
