//! The tracer's own signals: SIGINT, SIGTERM and SIGHUP ask it to detach.
//!
//! The handler only records the signal. To wait without a race (a signal landing
//! between the check of the flag and a blocking `waitpid` would go unnoticed
//! until the tracee next stops, which may be never), the signals and SIGCHLD
//! stay blocked, and the tracer sleeps in `ppoll`, which unblocks them atomically:
//! a tracee stop (SIGCHLD) or a detach request wakes it.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static REQUESTED: AtomicI32 = AtomicI32::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn record(sig: libc::c_int) {
    REQUESTED.store(sig, Ordering::SeqCst);
}

extern "C" fn nothing(_: libc::c_int) {}

const WATCHED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD];

/// Installs the handlers (process-wide) and blocks the signals in the calling
/// thread, which must be the one that traces. Call once, from the command line
/// tool, before launching or attaching.
pub fn install_detach_handlers() {
    for sig in WATCHED {
        // SAFETY: `sa` is fully initialised (zeroed, then the handler and an empty
        // mask set) before sigaction reads it; `record` is async-signal-safe (one
        // atomic store).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int) = if sig == libc::SIGCHLD {
                nothing
            } else {
                record
            };
            sa.sa_sigaction = handler as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    block_watched();
}

/// The mask with the watched signals, for sigprocmask / ppoll.
fn watched_set() -> libc::sigset_t {
    // SAFETY: `set` is initialised by sigemptyset before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in WATCHED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the watched signals in the calling thread (after the handlers are in).
fn block_watched() {
    let set = watched_set();
    // SAFETY: `set` is a valid sigset; the old mask is not wanted.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    INSTALLED.store(true, Ordering::SeqCst);
}

/// True when [`install_detach_handlers`] was called: waits must use [`sleep`].
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// Sleeps until a watched signal arrives (a tracee stop, or a detach request),
/// with those signals unblocked only for the duration of the sleep.
pub(crate) fn sleep() {
    let mut mask: libc::sigset_t = watched_set();
    // SAFETY: `mask` is a valid sigset (current mask minus the watched signals);
    // ppoll with no fds and no timeout only sleeps until a signal handler runs.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        for sig in WATCHED {
            libc::sigdelset(&mut mask, sig);
        }
        libc::ppoll(std::ptr::null_mut(), 0, std::ptr::null(), &mask);
    }
}

/// The signal that asked us to stop, if one arrived.
pub fn detach_requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The name of signal `sig` (`SIGUSR1`, `SIGRTMIN+3`), or `SIG<n>`.
pub fn name(sig: i32) -> String {
    if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
        return s.as_str().to_string();
    }
    let rtmin = libc::SIGRTMIN();
    let rtmax = libc::SIGRTMAX();
    if (rtmin..=rtmax).contains(&sig) {
        if sig == rtmin {
            return "SIGRTMIN".into();
        }
        return format!("SIGRTMIN+{}", sig - rtmin);
    }
    format!("SIG{sig}")
}

/// True when two processes share one address space (`kcmp(KCMP_VM)`): a vfork
/// child, or a clone with CLONE_VM. None when the kernel cannot tell.
pub fn same_address_space(a: crate::Pid, b: crate::Pid) -> Option<bool> {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp with KCMP_VM takes no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a.as_raw() as libc::c_long,
            b.as_raw() as libc::c_long,
            KCMP_VM,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    match r {
        0 => Some(true),
        1..=3 => Some(false),
        _ => None,
    }
}

/// Sends `sig` to thread `tid` of process `pid` (tgkill). Failures are ignored:
/// the thread may be gone.
pub fn tgkill(pid: crate::Pid, tid: crate::Tid, sig: i32) {
    // SAFETY: tgkill takes no pointers.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            pid.as_raw() as libc::c_long,
            tid.as_raw() as libc::c_long,
            sig as libc::c_long,
        );
    }
}
