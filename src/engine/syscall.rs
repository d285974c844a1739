//! System calls rtrace makes a stopped tracee thread run: `mmap` of the
//! scratch page, fast probes' `memfd_create`, `mmap` and `close` for the
//! ring, `mmap` of detour areas and of the table of return addresses, and
//! the `munmap`s that take them away again (detach, a forked child that is
//! not followed). Every one goes through [`Tracer::inject_syscall`].
//!
//! None of them may meet the program's seccomp filter: a filter that kills
//! on `memfd_create` would kill the program, one that refuses executable
//! `mmap` (systemd's MemoryDenyWriteExecute) would fail the call, an
//! allow-list would kill on the first call not listed. So before each call
//! the thread's mode is read (`/proc/TID/status`; a filter may arrive at any
//! time, the program installs its own after rtrace has mapped things):
//!
//! - no seccomp: the call is made;
//! - a filter, and rtrace may suspend it (CAP_SYS_ADMIN, not itself under
//!   seccomp): PTRACE_O_SUSPEND_SECCOMP is set on that thread for the call
//!   and cleared right after, on every path ([`Suspension`]);
//! - a filter rtrace may not suspend, or strict mode: no call is made, and
//!   the caller gets [`Error::Seccomp`]; each caller has its way without
//!   (no scratch page: instructions emulated or stepped in place, returns
//!   watched at their return sites; no fast probe; a mapping left in place
//!   at detach, said in a warning).

use nix::errno::Errno;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::{SCRATCH_CODE, SCRATCH_SYSCALL_OFFSET, SYSCALL_INSN};
use crate::error::{Error, Result};
use crate::handler::Event;
use crate::sys::ptrace::{self, Restart};
use crate::sys::seccomp::{self, Mode, Suspension};
use crate::sys::wait::{Stop, Waited, Which};

use super::guards::InjectedCode;
use super::space::SCRATCH_SIZE;
use super::step::StepEnd;
use super::tracer::Tracer;

/// The name of system call `nr`, for errors (only the calls rtrace makes).
fn call_name(nr: i64) -> &'static str {
    match nr {
        libc::SYS_mmap => "mmap",
        libc::SYS_munmap => "munmap",
        libc::SYS_memfd_create => "memfd_create",
        libc::SYS_close => "close",
        _ => "a system call",
    }
}

impl Tracer {
    /// Maps the scratch page into process `pid` by making `tid` (stopped) call
    /// mmap, with a `syscall` instruction written over its current instruction for
    /// the duration. Every other thread of the process must be stopped.
    /// `Error::Seccomp` when it may not: nothing was written then.
    pub(super) fn map_scratch(&mut self, tid: Tid, pid: Pid) -> Result<RuntimeAddr> {
        let page = self.with_seccomp_gate(tid, |t| {
            let regs = ptrace::getregs(tid)?;
            let at = RuntimeAddr(regs.ip());
            let code =
                InjectedCode::write(t.world.spaces[&pid].mem.try_clone()?, at, &SYSCALL_INSN)?;
            let r = t.run_syscall(
                tid,
                at,
                libc::SYS_mmap,
                &[
                    0,
                    SCRATCH_SIZE,
                    (libc::PROT_READ | libc::PROT_EXEC) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                    u64::MAX,
                    0,
                ],
            );
            code.undo()?;
            r
        })?;
        let page = RuntimeAddr(page as u64);
        self.world.spaces[&pid].mem.write(page, &SCRATCH_CODE)?;
        Ok(page)
    }

    /// Unmaps the scratch page at `page` from the process of `tid` (stopped), using
    /// the `syscall` instruction kept in the page itself.
    pub(super) fn unmap_scratch(&mut self, tid: Tid, page: RuntimeAddr) -> Result<()> {
        self.inject_syscall(
            tid,
            page.offset(SCRATCH_SYSCALL_OFFSET),
            libc::SYS_munmap,
            &[page.get(), SCRATCH_SIZE],
        )?;
        Ok(())
    }

    /// Makes stopped thread `tid` execute system call `nr` with a `syscall`
    /// instruction at `at`, and restores its registers. Returns the result
    /// (a negative errno value is `Error::Syscall`). Never through the
    /// thread's seccomp filter: suspended for the call, or `Error::Seccomp`
    /// and no call (see the module's documentation).
    pub(super) fn inject_syscall(
        &mut self,
        tid: Tid,
        at: RuntimeAddr,
        nr: i64,
        args: &[u64],
    ) -> Result<i64> {
        self.with_seccomp_gate(tid, |t| t.run_syscall(tid, at, nr, args))
    }

    /// Runs `f` (which makes `tid` run system calls) when seccomp lets rtrace:
    /// with the thread's filter suspended when it has one, put back in force
    /// as soon as `f` returns, whatever it returns. A failure to put it back
    /// is an error (the tracer then detaches, which clears it too).
    fn with_seccomp_gate<T>(
        &mut self,
        tid: Tid,
        f: impl FnOnce(&mut Tracer) -> Result<T>,
    ) -> Result<T> {
        let suspension = self.seccomp_gate(tid)?;
        let r = f(self);
        let ended = suspension.map_or(Ok(()), Suspension::end);
        let r = r?;
        ended?;
        Ok(r)
    }

    /// Whether stopped thread `tid` may run a system call of rtrace's: None
    /// when no seccomp mode applies to it, a suspension of its filter to hold
    /// for the call, or `Error::Seccomp`. The kernel's refusal to suspend
    /// (no privilege) is remembered: it will not change while rtrace runs.
    fn seccomp_gate(&mut self, tid: Tid) -> Result<Option<Suspension>> {
        let pid = self.world.tasks.get(&tid).map_or(tid, |t| t.pid);
        match seccomp::mode(tid)? {
            Mode::Disabled => Ok(None),
            // Suspension would let calls through strict mode too, but a
            // strict program expects nothing of the kind in its memory.
            Mode::Strict => Err(Error::Seccomp {
                pid,
                tid,
                why: None,
            }),
            Mode::Filter { .. } => {
                if let Some(why) = &self.seccomp_refused {
                    return Err(Error::Seccomp {
                        pid,
                        tid,
                        why: Some(why.clone()),
                    });
                }
                let options = ptrace::options(self.exit_kill);
                let errno = match Suspension::begin(tid, options) {
                    Ok(s) => return Ok(Some(s)),
                    Err(errno) => errno,
                };
                let why = match errno {
                    Errno::ESRCH => {
                        return Err(Error::Ptrace {
                            op: "PTRACE_SETOPTIONS",
                            tid,
                            errno,
                        })
                    }
                    Errno::EPERM if seccomp::own_mode() != Mode::Disabled => {
                        "rtrace itself runs under seccomp".to_string()
                    }
                    Errno::EPERM => "no CAP_SYS_ADMIN".to_string(),
                    Errno::EINVAL => {
                        "the kernel was built without CONFIG_CHECKPOINT_RESTORE".into()
                    }
                    other => format!("PTRACE_O_SUSPEND_SECCOMP: {other}"),
                };
                self.seccomp_refused = Some(why.clone());
                Err(Error::Seccomp {
                    pid,
                    tid,
                    why: Some(why),
                })
            }
        }
    }

    /// Says, once per process, that `refused` (an `Error::Seccomp` from
    /// setting up process `pid`) leaves it without the scratch page, and
    /// what rtrace does instead.
    pub(super) fn warn_no_injection(&mut self, pid: Pid, refused: &Error) {
        if !self.seccomp_warned.insert(pid) {
            return;
        }
        let mut instead = vec!["probed instructions are emulated or stepped in place"];
        if !self.opts.entry_only {
            instead.push("returns are watched at their return sites");
        }
        if self.opts.fast {
            instead.push("fast probes stay int3 probes");
        }
        self.consumers.warnings.push(Event::ProcessWarning {
            pid,
            message: format!(
                "{refused}: rtrace maps nothing into it; {}",
                instead.join(", ")
            ),
        });
    }

    /// Says that `refused` (an `Error::Seccomp` met at a detach, or in a
    /// forked child let go) leaves `left` mapped in the process.
    pub(super) fn warn_left_mapped(&mut self, refused: &Error, left: &[&str]) {
        let Error::Seccomp { pid, .. } = refused else {
            return;
        };
        let (what, verb) = match left {
            [one] => (one.to_string(), "stays"),
            _ => (left.join(" and "), "stay"),
        };
        self.consumers.warnings.push(Event::ProcessWarning {
            pid: *pid,
            message: format!(
                "{refused}: rtrace makes no munmap there, so {what} {verb} mapped, unused \
                 (nothing leads there any more)"
            ),
        });
    }

    /// A thread interrupted just after it executed one of rtrace's `int3`s
    /// reports the interrupt first, with the SIGTRAP still pending (the
    /// kernel handles PTRACE_INTERRUPT before it dequeues signals). Stepped
    /// now for rtrace's own purposes, it would take that trap as the step's
    /// and rtrace would hold it for the program. It is taken here instead
    /// (the thread runs no instruction before: a pending signal is dequeued
    /// on the way out of the kernel), and the thread is put back on the
    /// `int3`, which it executes again when it runs on: the hit, or the
    /// return through the trampoline, is seen then. A trap that is not ours
    /// stays pending for the program.
    fn rewind_pending_trap(&mut self, tid: Tid) -> Result<()> {
        if !super::task::signal_pending(tid, libc::SIGTRAP) {
            return Ok(());
        }
        let regs = ptrace::getregs(tid)?;
        let at = RuntimeAddr(regs.ip()).offset(-(crate::arch::BREAKPOINT_LEN as i64));
        let key = self.world.tasks[&tid].space;
        let ours = Some(at) == self.trampoline_of(tid)
            || self
                .world
                .spaces
                .get(&key)
                .is_some_and(|s| s.is_our_trap(at));
        if !ours {
            return Ok(());
        }
        ptrace::restart(tid, Restart::Continue(0))?;
        let stop = loop {
            match self.wait_stop(Which::Tid(tid), true, false)? {
                Waited::Stop(stop) => break stop,
                Waited::NotReady | Waited::Interrupted => continue,
                Waited::NoTracee => return Err(Error::NoSuchProcess { pid: tid }),
            }
        };
        match stop {
            Stop::Trap { .. } => {
                let mut regs = ptrace::getregs(tid)?;
                regs.set_ip(at.get());
                ptrace::setregs(tid, &regs)
            }
            // Anything else (its death, a stop that came first) is handled
            // as it comes.
            other @ (Stop::Exited { .. }
            | Stop::Killed { .. }
            | Stop::Signal { .. }
            | Stop::GroupStop { .. }
            | Stop::Interrupt { .. }
            | Stop::Event { .. }) => {
                let gone = other.is_death();
                self.world.deferred.push_back(other);
                match gone {
                    true => Err(Error::NoSuchProcess { pid: tid }),
                    false => Ok(()),
                }
            }
        }
    }

    /// The steps of [`Tracer::inject_syscall`], with seccomp already seen to.
    fn run_syscall(&mut self, tid: Tid, at: RuntimeAddr, nr: i64, args: &[u64]) -> Result<i64> {
        self.rewind_pending_trap(tid)?;
        let mut saved = ptrace::getregs(tid)?;
        let mut regs = saved;
        regs.setup_syscall(at, nr, args);
        ptrace::setregs(tid, &regs)?;
        // A thread stopped inside a system call (at an exec event, or interrupted
        // in a blocking call) reports a first step trap when that call returns,
        // before our instruction ran (and wrote that call's result into rax):
        // set the registers again and step until the instruction pointer moved.
        let mut end;
        let mut result;
        loop {
            end = self.single_step(tid);
            result = match end {
                Ok(StepEnd::Done) => ptrace::getregs(tid),
                Ok(StepEnd::Gone) => Err(Error::NoSuchProcess { pid: tid }),
                Ok(StepEnd::Faulted(signal)) => {
                    self.hold_signal(tid, signal)?;
                    Err(Error::Memory {
                        pid: tid,
                        addr: at,
                        errno: Errno::EFAULT,
                    })
                }
                Err(ref e) => Err(Error::Handler(e.to_string())),
            };
            match &result {
                // The pending return also overwrote rax: set the call up again.
                // That value is the interrupted call's result, which the
                // thread must find when it goes on (a `clone3` stopped at its
                // clone event returns the child's id there: given back the
                // -ENOSYS of the stop, glibc would call `clone` again and
                // make a second thread on the same stack).
                Ok(r) if r.ip() == at.get() => {
                    saved.set_retval(r.retval());
                    ptrace::setregs(tid, &regs)?
                }
                _ => break,
            }
        }
        let gone = matches!(end, Ok(StepEnd::Gone));
        let result = match end {
            Err(e) => Err(e),
            Ok(_) => result.map(|r| r.retval() as i64),
        };
        if !gone {
            ptrace::setregs(tid, &saved)?;
        }
        let r = result?;
        if (-4095..0).contains(&r) {
            return Err(Error::Syscall {
                tid,
                call: call_name(nr),
                errno: Errno::from_raw(-r as i32),
            });
        }
        Ok(r)
    }
}
