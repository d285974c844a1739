//! The tracer's own signals: SIGINT, SIGTERM and SIGHUP ask it to detach.
//!
//! The tracer blocks in `waitpid`, one system call per stop, as the smallest
//! ptrace tracer does. The handlers are installed without SA_RESTART, so a
//! signal that arrives during the wait ends it with EINTR, and the event loop
//! looks at the flag the handler set. One that arrives just before the wait
//! (after the flag was looked at) would leave it waiting for the tracee's
//! next stop, which may never come: so the handler also sets the timer below
//! to fire a millisecond later (timer_settime is async-signal-safe), which
//! ends the wait. (Interrupting a tracee instead would add a stop to
//! whatever rtrace was doing with it.)
//!
//! A handler that runs long on the tracer's thread (a script's loop, with
//! `--script-ops 0`) keeps the event loop from looking at the flag: it asks
//! [`stop_requested`] as it goes, and returns early when a request arrived
//! that the tracer has not acted on yet (`honour` marks those it has: a
//! block in END, run after a detach that SIGINT asked for, stops at the
//! next one).
//!
//! Waits with a deadline (a printer's flush, the live view's redraws) use a
//! POSIX timer aimed at the tracing thread: its signal (SIGALRM, whose handler
//! does nothing) interrupts the wait the same way. The timer repeats while it
//! is armed and is armed once per interval, not once per stop, so a stop
//! costs no timer call, and an expiry that lands just before a wait delays
//! the next wake-up by one period at most.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

static REQUESTED: AtomicI32 = AtomicI32::new(0);
/// How many detach signals arrived.
static REQUESTS: AtomicUsize = AtomicUsize::new(0);
/// How many of them the tracer had acted on (a detach begun) when it last
/// looked.
static HONOURED: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The timer (a `timer_t`, which may well be 0), once made.
static TIMER: AtomicUsize = AtomicUsize::new(0);
static TIMER_MADE: AtomicBool = AtomicBool::new(false);
/// True when the last detach signal came from the kernel (`SI_KERNEL`): a
/// terminal's Ctrl-C, hangup or the like, sent to the whole foreground
/// process group, rather than `kill` from a process.
static FROM_KERNEL: AtomicBool = AtomicBool::new(false);
/// The signal mask rtrace started with, as [`install_detach_handlers`]
/// found it: a program rtrace launches starts with it.
static ORIGINAL_MASK: std::sync::OnceLock<[u64; 16]> = std::sync::OnceLock::new();
// The copies between them read and write exactly a sigset_t's bytes.
const _: () = assert!(std::mem::size_of::<libc::sigset_t>() == std::mem::size_of::<[u64; 16]>());

extern "C" fn record(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { info.as_ref().map_or(0, |i| i.si_code) };
    FROM_KERNEL.store(code == libc::SI_KERNEL, Ordering::SeqCst);
    REQUESTED.store(sig, Ordering::SeqCst);
    REQUESTS.fetch_add(1, Ordering::SeqCst);
    // If this landed after the event loop looked at the flag but before it
    // blocked, the timer ends that wait in a millisecond.
    if TIMER_MADE.load(Ordering::SeqCst) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            },
        };
        // SAFETY: timer_settime is a system call, async-signal-safe; the timer
        // exists (TIMER_MADE) and `spec` is a valid itimerspec.
        unsafe {
            libc::timer_settime(
                TIMER.load(Ordering::SeqCst) as libc::timer_t,
                0,
                &spec,
                std::ptr::null_mut(),
            );
        }
    }
}

/// The timer's handler: it only has to exist (and not restart the wait).
extern "C" fn nothing(_: libc::c_int) {}

const DETACH: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Installs the handlers (process-wide) and the timer of the calling thread,
/// which must be the one that traces. Call once, from the command line tool,
/// before launching or attaching.
///
/// A detach signal rtrace was started with ignored (`nohup` ignores SIGHUP,
/// a shell's background job SIGINT) stays ignored, as strace leaves it: it
/// asks nothing of rtrace, and a program rtrace launches inherits it
/// ignored, as it would untraced. The mask rtrace started with is kept for
/// that program too (`original_mask`).
pub fn install_detach_handlers() {
    // SAFETY: `mask` is written by pthread_sigmask (no change asked) before
    // it is read as 16 u64s, which sigset_t (128 bytes) is.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        let words: [u64; 16] = std::mem::transmute_copy(&mask);
        let _ = ORIGINAL_MASK.set(words);
    }
    let mut handled = Vec::new();
    for sig in DETACH.into_iter().chain([libc::SIGALRM]) {
        // SAFETY: sigaction only writes `old`, a zeroed sigaction.
        let ignored = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        };
        if ignored && sig != libc::SIGALRM {
            continue;
        }
        handled.push(sig);
        // SAFETY: `sa` is fully initialised (zeroed, then the handler and an
        // empty mask set) before sigaction reads it; both handlers are
        // async-signal-safe (atomics and one system call). No SA_RESTART: the
        // wait the signal lands in must return.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            if sig == libc::SIGALRM {
                sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = 0;
            } else {
                sa.sa_sigaction = record
                    as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                    as usize;
                sa.sa_flags = libc::SA_SIGINFO;
            }
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let set = set_of(&handled);
    // SAFETY: `set` is a valid sigset; the old mask is not wanted.
    unsafe {
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: `sev` is zeroed, then filled for a thread-directed signal to
    // this thread; `timer` is written by timer_create.
    unsafe {
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGALRM;
        sev.sigev_notify_thread_id = libc::gettid();
        let mut timer: libc::timer_t = std::ptr::null_mut();
        if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) == 0 {
            TIMER.store(timer as usize, Ordering::SeqCst);
            TIMER_MADE.store(true, Ordering::SeqCst);
        }
    }
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

/// True when [`install_detach_handlers`] was called: a detach request or the
/// timer ends a blocking wait with EINTR.
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// Arms the timer to interrupt the tracer's waits every `period`, or disarms
/// it (`None`). False when there is no timer (the signals are not
/// installed): waits then have no deadline.
pub(crate) fn set_timer(period: Option<Duration>) -> bool {
    if !TIMER_MADE.load(Ordering::SeqCst) {
        return false;
    }
    let timer = TIMER.load(Ordering::SeqCst);
    let ts = |d: Duration| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    // A zero period would disarm it: the shortest is a microsecond.
    let p = period.map(|p| p.max(Duration::from_micros(1)));
    let spec = libc::itimerspec {
        it_interval: ts(p.unwrap_or_default()),
        it_value: ts(p.unwrap_or_default()),
    };
    // SAFETY: `timer` was made by timer_create; `spec` is a valid itimerspec.
    unsafe { libc::timer_settime(timer as libc::timer_t, 0, &spec, std::ptr::null_mut()) == 0 }
}

/// Asks for a detach, as a SIGINT to rtrace would (a key in the live view).
pub fn request_detach() {
    FROM_KERNEL.store(false, Ordering::SeqCst);
    REQUESTED.store(libc::SIGINT, Ordering::SeqCst);
}

/// Asks for a detach as a SIGTERM to rtrace would, from within rtrace (a
/// script's `exit()`): a launched program is passed the SIGTERM. Not a
/// signal that arrived: a running block is not stopped by it.
pub fn request_exit() {
    FROM_KERNEL.store(false, Ordering::SeqCst);
    REQUESTED.store(libc::SIGTERM, Ordering::SeqCst);
}

/// True when the last detach signal came from the kernel (a terminal's
/// Ctrl-C or hangup, sent to every process of the foreground group), not
/// from a process's `kill`.
pub fn from_kernel() -> bool {
    FROM_KERNEL.load(Ordering::SeqCst)
}

/// The signal mask rtrace started with (all unblocked before
/// [`install_detach_handlers`]), as a `sigset_t`.
pub(crate) fn original_mask() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is the empty set; the saved words are a
    // sigset_t's bytes (written by `install_detach_handlers`).
    unsafe {
        match ORIGINAL_MASK.get() {
            Some(words) => std::mem::transmute_copy(words),
            None => std::mem::zeroed(),
        }
    }
}

/// How many detach signals (SIGINT, SIGTERM, SIGHUP) have arrived so far:
/// a wait that outlives tracing (the launched program's end, after a
/// detach) goes on through an EINTR unless another one came.
pub fn requests() -> usize {
    REQUESTS.load(Ordering::SeqCst)
}

/// Notes that the tracer is acting on every detach signal that has arrived
/// so far (it is detaching): [`stop_requested`] is false again until
/// another one comes. Returns how many it acts on now (two: a second
/// Ctrl-C came before the detach began).
pub(crate) fn honour() -> usize {
    let now = REQUESTS.load(Ordering::SeqCst);
    now.saturating_sub(HONOURED.swap(now, Ordering::SeqCst))
}

/// True when a detach signal (SIGINT, SIGTERM, SIGHUP) arrived that the
/// tracer has not acted on yet: a handler that may run long (a script's
/// loop) should return as soon as it can, so that the tracer detaches. Two
/// atomic loads: cheap enough to ask every few thousand operations.
pub fn stop_requested() -> bool {
    REQUESTS.load(Ordering::Relaxed) > HONOURED.load(Ordering::Relaxed)
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

/// Blocks every signal in the calling thread (a helper thread of rtrace's:
/// the tracer's signals go to the tracing thread, never to it).
pub fn block_all_here() {
    // SAFETY: `set` is initialised by sigfillset before pthread_sigmask
    // reads it; the old mask is not wanted.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wakes the tracing thread `tracer` of this process from a blocking wait
/// (the timer's signal, SIGALRM, whose handler does nothing), when the
/// handlers are installed; driven as a library, the tracer's waits end by
/// themselves every few milliseconds while fast probes run.
pub fn kick(tracer: crate::Tid) {
    if installed() {
        tgkill(nix::unistd::getpid(), tracer, libc::SIGALRM);
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
