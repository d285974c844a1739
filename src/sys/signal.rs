//! The tracer's own signals: SIGINT, SIGTERM and SIGHUP ask it to detach.
//!
//! The handler only records the signal; it is installed without SA_RESTART, so a
//! blocking `waitpid` returns EINTR and the event loop notices at once.

use std::sync::atomic::{AtomicI32, Ordering};

static REQUESTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(sig: libc::c_int) {
    REQUESTED.store(sig, Ordering::SeqCst);
}

/// Installs the handlers (process-wide). Call once, from the command line tool.
pub fn install_detach_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `sa` is fully initialised (zeroed, then the handler and an empty
        // mask set) before sigaction reads it; `record` is async-signal-safe (one
        // atomic store).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = record as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
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
