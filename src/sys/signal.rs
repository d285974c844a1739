//! The tracer's own signals: SIGINT, SIGTERM and SIGHUP ask it to detach.
//!
//! The handler only records the signal. To wait without a race (a signal landing
//! between the check of the flag and a blocking `waitpid` would go unnoticed
//! until the tracee next stops, which may be never), these signals and SIGCHLD
//! stay blocked, and the tracer sleeps in `ppoll`, which unblocks the detach
//! signals atomically. SIGCHLD (a tracee stopped or died) is not handled: it is
//! read from a signalfd that `ppoll` watches, so a tracee stop costs no signal
//! frame (on a machine with AVX-512, saving and restoring the FPU state for a
//! handler is a measurable part of a hit).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static REQUESTED: AtomicI32 = AtomicI32::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The signalfd SIGCHLD is read from.
static CHLD_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal mask `sleep` unblocks the detach signals with, made once.
static SLEEP_MASK: std::sync::OnceLock<libc::sigset_t> = std::sync::OnceLock::new();

extern "C" fn record(sig: libc::c_int) {
    REQUESTED.store(sig, Ordering::SeqCst);
}

/// SIGCHLD's handler, for when no signalfd could be made: it only has to
/// exist, so that the signal interrupts `ppoll`.
extern "C" fn nothing(_: libc::c_int) {}

const DETACH: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Installs the handlers (process-wide) and blocks the signals in the calling
/// thread, which must be the one that traces. Call once, from the command line
/// tool, before launching or attaching.
pub fn install_detach_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD] {
        // SAFETY: `sa` is fully initialised (zeroed, then the handler and an empty
        // mask set) before sigaction reads it; `record` is async-signal-safe (one
        // atomic store), `nothing` does nothing.
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
    let set = set_of(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD]);
    // SAFETY: `set` is a valid sigset; the old mask is not wanted.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // The mask to sleep with: the thread's mask now, minus the detach signals
    // (and SIGCHLD too when there is no signalfd for it).
    let mut sleep_mask: libc::sigset_t = set_of(&[]);
    // SAFETY: `sleep_mask` is a valid sigset, written by pthread_sigmask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut sleep_mask);
        for sig in DETACH {
            libc::sigdelset(&mut sleep_mask, sig);
        }
    }
    let chld = set_of(&[libc::SIGCHLD]);
    // SAFETY: `chld` is a valid sigset; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &chld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    CHLD_FD.store(fd, Ordering::SeqCst);
    if fd < 0 {
        // SAFETY: `sleep_mask` is a valid sigset.
        unsafe {
            libc::sigdelset(&mut sleep_mask, libc::SIGCHLD);
        }
    }
    let _ = SLEEP_MASK.set(sleep_mask);
    INSTALLED.store(true, Ordering::SeqCst);
}

/// A signal set holding `sigs`.
fn set_of(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: `set` is initialised by sigemptyset before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in sigs {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// True when [`install_detach_handlers`] was called: waits must use [`sleep`].
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// Sleeps until a tracee changes state (SIGCHLD), a detach is requested, or
/// `timeout` passes, with the detach signals unblocked only for the duration of
/// the sleep.
pub(crate) fn sleep(timeout: Option<std::time::Duration>) {
    let fd = CHLD_FD.load(Ordering::SeqCst);
    let Some(mask) = SLEEP_MASK.get() else {
        return;
    };
    // SAFETY: `mask` is a valid sigset (the tracing thread's mask minus the
    // detach signals); `pfd` is a valid pollfd array of length 1 (or 0 without
    // a signalfd, when ppoll only waits for a handler); `ts_ptr` is null or
    // points at `ts`, alive for the call; `buf` is writable for its length.
    unsafe {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let n = libc::c_ulong::from(fd >= 0);
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        libc::ppoll(&mut pfd, n, ts_ptr, mask);
        if fd >= 0 && pfd.revents & libc::POLLIN != 0 {
            // Drain it (SIGCHLD is pending once however many tracees
            // stopped, so one read does): the waits that follow find every
            // stop with WNOHANG.
            let mut buf = [0u8; 4 * std::mem::size_of::<libc::signalfd_siginfo>()];
            while libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) == buf.len() as isize {}
        }
    }
}

/// Asks for a detach, as a SIGINT to rtrace would (a key in the live view).
pub fn request_detach() {
    REQUESTED.store(libc::SIGINT, Ordering::SeqCst);
}

/// The signal that asked us to stop (or the request), if one arrived.
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

/// Queues `sig` for thread `tid` of process `pid` again, with its original
/// `siginfo_t` when the kernel lets a tracer forge it (a negative `si_code`
/// other than SI_TKILL: sigqueue, mq_notify, AIO), else as a tgkill. Used for
/// signals held back while rtrace had the thread, once it lets it go.
pub fn requeue(
    pid: crate::Pid,
    tid: crate::Tid,
    sig: i32,
    info: Option<&crate::sys::ptrace::SigInfo>,
) {
    match info {
        Some(info) if info.code() < 0 && info.code() != libc::SI_TKILL => {
            let mut raw = *info.raw();
            // SAFETY: rt_tgsigqueueinfo reads a siginfo_t from the pointer,
            // which points at a valid local copy for the duration of the call.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_rt_tgsigqueueinfo,
                    pid.as_raw() as libc::c_long,
                    tid.as_raw() as libc::c_long,
                    sig as libc::c_long,
                    &mut raw as *mut libc::siginfo_t,
                )
            };
            if r != 0 {
                tgkill(pid, tid, sig);
            }
        }
        _ => tgkill(pid, tid, sig),
    }
}
