//! ptrace(2) requests, each a typed call that names the request and the thread in
//! its error.
//!
//! Signals travel as raw numbers (`i32`), not `nix::sys::signal::Signal`: a tracee
//! may receive real-time signals (SIGRTMIN+n), which must be delivered unchanged.

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};

use crate::addr::Tid;
use crate::arch::Regs;
use crate::error::{Error, Result};

fn fail(op: &'static str, tid: Tid) -> impl Fn(Errno) -> Error {
    move |errno| Error::Ptrace { op, tid, errno }
}

/// The options rtrace always sets: report clone/fork/vfork/exec as events, so
/// that new threads and children are traced from their first instruction and a
/// new image is noticed, the end of a vfork parent's wait (its child, let go
/// untraced, no longer runs in its memory), and thread exits, so that a thread
/// that will never stop again (a thread-group leader that called pthread_exit
/// stays a zombie until the last thread ends) is never waited for. `exit_kill` adds PTRACE_O_EXITKILL
/// (launch mode).
pub fn options(exit_kill: bool) -> Options {
    let mut o = Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        | Options::PTRACE_O_TRACEVFORKDONE
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACEEXIT;
    if exit_kill {
        o |= Options::PTRACE_O_EXITKILL;
    }
    o
}

/// PTRACE_SEIZE: attach without stopping the thread.
pub fn seize(tid: Tid, options: Options) -> Result<(), Errno> {
    ptrace::seize(tid, options)
}

/// PTRACE_INTERRUPT: make a seized, running thread stop (PTRACE_EVENT_STOP).
pub fn interrupt(tid: Tid) -> Result<()> {
    ptrace::interrupt(tid).map_err(fail("PTRACE_INTERRUPT", tid))
}

fn request(req: libc::c_uint, op: &'static str, tid: Tid, sig: i32) -> Result<()> {
    // SAFETY: CONT, SINGLESTEP, DETACH and LISTEN take no pointer: `addr` is
    // ignored and `data` is a signal number (ptrace(2)), so no memory of ours is
    // read or written by the kernel.
    let r = unsafe {
        libc::ptrace(
            req,
            tid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            sig as libc::c_long as *mut libc::c_void,
        )
    };
    if r == -1 {
        Err(Error::Ptrace {
            op,
            tid,
            errno: Errno::last(),
        })
    } else {
        Ok(())
    }
}

/// Every way rtrace lets a stopped thread go on: ptrace(2)'s restarting
/// requests. A signal of 0 delivers none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// PTRACE_CONT, delivering a signal.
    Continue(i32),
    /// PTRACE_SINGLESTEP, delivering a signal: the thread stops again after
    /// one instruction (or at a signal handler's first).
    Step(i32),
    /// PTRACE_LISTEN: a thread in group-stop stays stopped, but reports when
    /// SIGCONT (or a kill) arrives. Only valid after a group-stop.
    Listen,
    /// PTRACE_DETACH, delivering a signal: the thread is no longer traced.
    /// A thread in group-stop stays stopped.
    Detach(i32),
}

/// Restarts stopped thread `tid` as `how` says.
pub fn restart(tid: Tid, how: Restart) -> Result<()> {
    match how {
        Restart::Continue(sig) => request(libc::PTRACE_CONT, "PTRACE_CONT", tid, sig),
        Restart::Step(sig) => request(libc::PTRACE_SINGLESTEP, "PTRACE_SINGLESTEP", tid, sig),
        Restart::Listen => request(libc::PTRACE_LISTEN, "PTRACE_LISTEN", tid, 0),
        Restart::Detach(sig) => request(libc::PTRACE_DETACH, "PTRACE_DETACH", tid, sig),
    }
}

/// PTRACE_GETREGS.
pub fn getregs(tid: Tid) -> Result<Regs> {
    ptrace::getregs(tid)
        .map(Regs::from_raw)
        .map_err(fail("PTRACE_GETREGS", tid))
}

/// PTRACE_GETFPREGS: the low 64 bits of each of the 16 xmm registers (a
/// float or double argument or return value of the SysV ABI).
pub fn xmm_low(tid: Tid) -> Result<[u64; 16]> {
    // SAFETY: `fp` is plain data, ours, of the size PTRACE_GETFPREGS writes
    // (user_fpregs_struct, asm/user.h); the kernel writes only it.
    let mut fp: libc::user_fpregs_struct = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETFPREGS,
            tid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            &mut fp as *mut libc::user_fpregs_struct as *mut libc::c_void,
        )
    };
    if r == -1 {
        return Err(Error::Ptrace {
            op: "PTRACE_GETFPREGS",
            tid,
            errno: Errno::last(),
        });
    }
    // Each xmm register is four u32 words, low first.
    Ok(std::array::from_fn(|n| {
        u64::from(fp.xmm_space[4 * n]) | u64::from(fp.xmm_space[4 * n + 1]) << 32
    }))
}

/// PTRACE_SETREGS.
pub fn setregs(tid: Tid, regs: &Regs) -> Result<()> {
    ptrace::setregs(tid, *regs.raw()).map_err(fail("PTRACE_SETREGS", tid))
}

/// PTRACE_GETSIGINFO: the `si_code` of the signal the thread is stopped for.
pub fn siginfo_code(tid: Tid) -> Result<i32> {
    ptrace::getsiginfo(tid)
        .map(|si| si.si_code)
        .map_err(fail("PTRACE_GETSIGINFO", tid))
}

/// The `siginfo_t` of the signal a thread is stopped for, kept so the signal
/// can be delivered later exactly as it came.
#[derive(Clone, Copy)]
pub struct SigInfo(libc::siginfo_t);

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigInfo")
            .field("signo", &self.0.si_signo)
            .field("code", &self.0.si_code)
            .finish_non_exhaustive()
    }
}

impl SigInfo {
    /// `si_code`: who raised it (SI_USER, SI_TKILL, SI_QUEUE, a kernel reason).
    pub fn code(&self) -> i32 {
        self.0.si_code
    }

    /// True when it was sent by `pid` with tgkill (`SI_TKILL`).
    pub fn tkill_from(&self, pid: nix::unistd::Pid) -> bool {
        // SAFETY: for SI_TKILL the kernel fills the `_kill` member, whose
        // si_pid the accessor reads.
        self.0.si_code == libc::SI_TKILL && unsafe { self.0.si_pid() } == pid.as_raw()
    }

    pub(crate) fn raw(&self) -> &libc::siginfo_t {
        &self.0
    }
}

/// PTRACE_GETSIGINFO: the signal the thread is stopped for.
pub fn getsiginfo(tid: Tid) -> Result<SigInfo> {
    ptrace::getsiginfo(tid)
        .map(SigInfo)
        .map_err(fail("PTRACE_GETSIGINFO", tid))
}

/// PTRACE_SETSIGINFO: what the signal the thread is stopped for will carry
/// when it is delivered.
pub fn setsiginfo(tid: Tid, info: &SigInfo) -> Result<()> {
    ptrace::setsiginfo(tid, &info.0).map_err(fail("PTRACE_SETSIGINFO", tid))
}

/// PTRACE_GETEVENTMSG: the new child's pid at a clone/fork/vfork event, the
/// former thread id at an exec event.
pub fn event_msg(tid: Tid) -> Result<i64> {
    ptrace::getevent(tid).map_err(fail("PTRACE_GETEVENTMSG", tid))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use nix::sys::wait::{waitpid, WaitStatus};

    use super::*;

    /// The state letter of `tid` in `/proc` (`t`: a tracing stop).
    fn state(tid: Tid) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).expect("its stat");
        let after = &stat[stat.rfind(')').expect("comm ends") + 2..];
        after.chars().next().expect("a state")
    }

    /// Each `Restart` does what its ptrace(2) request does, on a real
    /// thread: a step stops again after one instruction, a continue lets it
    /// run, a detach lets it go untraced.
    #[test]
    fn every_restart_restarts() {
        // A shell spinning in user space once it said so: no system call to
        // be stopped in.
        let mut child = Command::new("sh")
            .args(["-c", "echo ready; while :; do :; done"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut out = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read");
        assert_eq!(line, "ready\n");
        let tid = Tid::from_raw(child.id() as i32);
        // Bounded: a wait that never ends kills sh, and the test fails.
        let (done, finished) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if finished
                .recv_timeout(std::time::Duration::from_secs(30))
                .is_err()
            {
                let _ = nix::sys::signal::kill(tid, nix::sys::signal::Signal::SIGKILL);
            }
        });
        seize(tid, Options::empty()).expect("seize");

        interrupt(tid).expect("interrupt");
        assert!(matches!(
            waitpid(tid, None),
            Ok(WaitStatus::PtraceEvent(..))
        ));
        let before = getregs(tid).expect("registers");
        restart(tid, Restart::Step(0)).expect("step");
        match waitpid(tid, None) {
            Ok(WaitStatus::Stopped(_, nix::sys::signal::Signal::SIGTRAP)) => {}
            other => panic!("after a step: {other:?}"),
        }
        let after = getregs(tid).expect("registers");
        assert_ne!(before.ip(), after.ip(), "one instruction ran");

        restart(tid, Restart::Continue(0)).expect("continue");
        assert_ne!(state(tid), 't');

        interrupt(tid).expect("interrupt");
        assert!(matches!(
            waitpid(tid, None),
            Ok(WaitStatus::PtraceEvent(..))
        ));
        restart(tid, Restart::Detach(0)).expect("detach");
        let status = std::fs::read_to_string(format!("/proc/{tid}/status")).expect("status");
        assert!(status.contains("TracerPid:\t0\n"), "{status}");
        assert_ne!(state(tid), 't');
        child.kill().expect("kill");
        child.wait().expect("wait");
        let _ = done.send(());
    }
}
