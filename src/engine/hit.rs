//! The hit path: breakpoint → pre handlers → return probe → displaced
//! instruction → post handlers → resume; the trampoline; syscall injection.

use std::any::Any;
use std::rc::Rc;

use nix::errno::Errno;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::{
    Regs, BREAKPOINT, BREAKPOINT_LEN, SCRATCH_CODE, SCRATCH_SYSCALL_OFFSET, SYSCALL_INSN,
};
use crate::error::{Error, Result};
use crate::handler::{Hit, ProbeKind, Return, Site};
use crate::probe::ReturnInstance;
use crate::sys::ptrace;
use crate::sys::wait::{self, Stop, TrapCause, Which};

use super::space::SCRATCH_SIZE;
use super::task::TaskState;
use super::Tracer;

/// What a single-step of one thread ended with.
enum StepEnd {
    /// The instruction executed; the thread is stopped after it.
    Done,
    /// The thread died, or exec'd (the stop is deferred).
    Gone,
}

impl Tracer {
    /// A SIGTRAP stopped `tid`: ours (a probe, the trampoline, a breakpoint just
    /// removed) or the tracee's own (delivered as if untraced).
    pub(super) fn on_trap(&mut self, tid: Tid, cause: TrapCause) -> Result<()> {
        if cause != TrapCause::Breakpoint {
            return self.deliver_signal(tid, libc::SIGTRAP);
        }
        let mut regs = match ptrace::getregs(tid) {
            Ok(r) => r,
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        let key = self.tasks[&tid].space;
        let site = RuntimeAddr(regs.ip()).offset(-(BREAKPOINT_LEN as i64));
        if Some(site) == self.trampoline_of(tid) {
            return self.on_trampoline(tid, regs);
        }
        let Some(space) = self.spaces.get(&key) else {
            return self.deliver_signal(tid, libc::SIGTRAP);
        };
        if space.sites.get(site).is_some() && !self.halting {
            return self.on_breakpoint(tid, site, regs);
        }
        if space.is_our_trap(site) {
            // Ours, but removed since (or we are detaching): run the original
            // instruction as if the breakpoint had never been there.
            regs.set_ip(site.get());
            ptrace::setregs(tid, &regs)?;
            return self.resume(tid, 0);
        }
        // The program's own int3.
        self.deliver_signal(tid, libc::SIGTRAP)
    }

    /// The hit path proper. `tid` is stopped just past the breakpoint at `addr`.
    fn on_breakpoint(&mut self, tid: Tid, addr: RuntimeAddr, mut regs: Regs) -> Result<()> {
        let time = self.start.elapsed();
        regs.set_ip(addr.get());
        let mut dirty = true;
        let task = &self.tasks[&tid];
        let (key, pid, silent) = (task.space, task.pid, task.silent);
        let space = &self.spaces[&key];
        let site = space.sites.get(addr).expect("caller checked the site");
        let probes: Vec<Rc<Site>> = if silent {
            Vec::new()
        } else {
            site.probes.clone()
        };
        let rtld = site.rtld;
        let mut datas: Vec<Option<Box<dyn Any>>> = probes.iter().map(|_| None).collect();
        // A handler error is kept and returned once the hit is complete, so the
        // thread is never left half-way (breakpoint lifted, registers unwritten).
        let mut failed: Option<Error> = None;

        // Pre handlers, in registration order.
        for (site, data) in probes.iter().zip(datas.iter_mut()) {
            let Some(probe) = self.probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                continue;
            };
            let mut hit = Hit {
                pid,
                tid,
                site,
                regs: &mut regs,
                regs_dirty: &mut dirty,
                mem: &space.mem,
                modules: &space.modules,
                time,
                data,
            };
            if let Err(e) = probe.handler.on_entry(&mut hit) {
                failed.get_or_insert(e);
            }
        }

        // The registers go back first (ip rewound to the site, and whatever the
        // pre handlers changed), so that from here on any failure leaves a thread
        // that simply re-executes the site once the breakpoint is removed.
        if dirty {
            ptrace::setregs(tid, &regs)?;
        }

        // Return probe: rewrite the return address, now, while `sp` points at it.
        let wants_return = probes
            .iter()
            .any(|p| p.kind == ProbeKind::Function { returns: true });
        let mut hijacked = None;
        if wants_return {
            if let Some(tramp) = space.trampoline() {
                let slot = RuntimeAddr(regs.sp());
                let orig = space.mem.read_u64(slot)?;
                space.mem.write_u64(slot, tramp.get())?;
                hijacked = Some((slot, RuntimeAddr(orig)));
            }
        }

        // The displaced instruction.
        match self.step_displaced(tid, addr)? {
            StepEnd::Done => {}
            StepEnd::Gone => return Ok(()),
        }
        let mut regs = ptrace::getregs(tid)?;
        let mut dirty = false;

        // Post handlers.
        let space = &self.spaces[&key];
        for (site, data) in probes.iter().zip(datas.iter_mut()) {
            let Some(probe) = self.probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                continue;
            };
            let mut hit = Hit {
                pid,
                tid,
                site,
                regs: &mut regs,
                regs_dirty: &mut dirty,
                mem: &space.mem,
                modules: &space.modules,
                time,
                data,
            };
            if let Err(e) = probe.handler.on_post(&mut hit) {
                failed.get_or_insert(e);
            }
        }
        if dirty {
            ptrace::setregs(tid, &regs)?;
        }
        if let Some((slot, orig_ret)) = hijacked {
            let probes = probes
                .into_iter()
                .zip(datas)
                .filter(|(p, _)| p.kind == ProbeKind::Function { returns: true })
                .collect();
            let task = self.tasks.get_mut(&tid).expect("task alive after step");
            task.returns.push(ReturnInstance {
                slot,
                orig_ret,
                entered: time,
                probes,
            });
        }
        if rtld {
            self.on_rtld_event(key)?;
        }
        self.resume(tid, 0)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Executes the instruction displaced by the breakpoint at `addr`, in place:
    /// every other thread of the address space is stopped, the original bytes go
    /// back, `tid` single-steps, the breakpoint is re-armed, the others resume.
    /// Signals that arrive during the step are kept for after it.
    fn step_displaced(&mut self, tid: Tid, addr: RuntimeAddr) -> Result<StepEnd> {
        let key = self.tasks[&tid].space;
        let others: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|(t, k)| k.space == key && **t != tid && k.state == TaskState::Running)
            .map(|(t, _)| *t)
            .collect();
        let stopped = self.interrupt_and_collect(&others)?;
        let saved = self.spaces[&key]
            .sites
            .get(addr)
            .map(|s| s.saved.clone())
            .expect("site armed");
        self.spaces[&key].mem.write(addr, &saved)?;
        let end = self.single_step(tid);
        // Re-arm whatever happened, unless the address space is gone.
        if let Some(space) = self.spaces.get(&key) {
            if matches!(end, Ok(StepEnd::Done)) || space.sites.get(addr).is_some() {
                match space.mem.write(addr, &BREAKPOINT) {
                    Err(e) if !e.is_tracee_gone() => return Err(e),
                    _ => {}
                }
            }
        }
        for t in stopped {
            self.resume(t, 0)?;
        }
        end
    }

    /// Single-steps `tid` once, keeping signals that arrive for later delivery.
    fn single_step(&mut self, tid: Tid) -> Result<StepEnd> {
        loop {
            match ptrace::step(tid, 0) {
                Err(e) if e.is_tracee_gone() => return Ok(StepEnd::Gone),
                r => r?,
            }
            let stop = loop {
                match wait::wait(Which::Tid(tid), true, false) {
                    Ok(Some(s)) => break s,
                    Ok(None) | Err(Errno::EINTR) => continue,
                    Err(Errno::ECHILD) => return Ok(StepEnd::Gone),
                    Err(e) => return Err(wait::wait_error(e)),
                }
            };
            match stop {
                Stop::Trap {
                    cause: TrapCause::Step,
                    ..
                } => return Ok(StepEnd::Done),
                Stop::Trap { .. } => self.keep_signal(tid, libc::SIGTRAP),
                Stop::Signal { signal, .. } => self.keep_signal(tid, signal),
                Stop::GroupStop { .. } | Stop::Interrupt { .. } => {}
                Stop::Exited { .. } | Stop::Killed { .. } => {
                    self.deferred.push_back(stop);
                    return Ok(StepEnd::Gone);
                }
                Stop::Event { event, .. } => match event {
                    wait::Event::Clone { child } => {
                        self.on_new_child(tid, child, crate::ForkKind::Clone)?
                    }
                    wait::Event::Fork { child } => {
                        self.on_new_child(tid, child, crate::ForkKind::Fork)?
                    }
                    wait::Event::Vfork { child } => {
                        self.on_new_child(tid, child, crate::ForkKind::Vfork)?
                    }
                    wait::Event::VforkDone => {}
                    wait::Event::Exec { .. } => {
                        self.deferred.push_back(stop);
                        return Ok(StepEnd::Gone);
                    }
                },
            }
        }
    }

    fn keep_signal(&mut self, tid: Tid, sig: i32) {
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.pending_signals.push(sig);
        }
    }

    /// A thread returned into the trampoline: report the return, send it on to
    /// the real return address.
    pub(super) fn on_trampoline(&mut self, tid: Tid, mut regs: Regs) -> Result<()> {
        let time = self.start.elapsed();
        let task = self.tasks.get_mut(&tid).expect("trap of a known task");
        let (pid, key) = (task.pid, task.space);
        let (_abandoned, found) = task.returns.pop_returning(RuntimeAddr(regs.sp()));
        let Some(inst) = found else {
            return Err(Error::LostReturn {
                tid,
                sp: RuntimeAddr(regs.sp()),
            });
        };
        regs.set_ip(inst.orig_ret.get());
        let mut dirty = true;
        let mut failed = None;
        if let Some(space) = self.spaces.get(&key) {
            for (site, data) in inst.probes {
                let Some(probe) = self.probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                    continue;
                };
                let mut ret = Return {
                    pid,
                    tid,
                    site: &site,
                    regs: &mut regs,
                    regs_dirty: &mut dirty,
                    mem: &space.mem,
                    time,
                    entered: inst.entered,
                    data,
                };
                if let Err(e) = probe.handler.on_return(&mut ret) {
                    failed.get_or_insert(e);
                }
            }
        }
        ptrace::setregs(tid, &regs)?;
        self.resume(tid, 0)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Maps the scratch page into process `pid` by making `tid` (stopped) call
    /// mmap, with a `syscall` instruction written over its current instruction for
    /// the duration. Every other thread of the process must be stopped.
    pub(super) fn map_scratch(&mut self, tid: Tid, pid: Pid) -> Result<RuntimeAddr> {
        let regs = ptrace::getregs(tid)?;
        let at = RuntimeAddr(regs.ip());
        let mem = &self.spaces[&pid].mem;
        let saved = mem.read_vec(at, SYSCALL_INSN.len())?;
        mem.write(at, &SYSCALL_INSN)?;
        let r = self.inject_syscall(
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
        self.spaces[&pid].mem.write(at, &saved)?;
        let page = RuntimeAddr(r? as u64);
        self.spaces[&pid].mem.write(page, &SCRATCH_CODE)?;
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
    /// (negative errno values become errors).
    fn inject_syscall(&mut self, tid: Tid, at: RuntimeAddr, nr: i64, args: &[u64]) -> Result<i64> {
        let saved = ptrace::getregs(tid)?;
        let mut regs = saved;
        regs.setup_syscall(at.get(), nr, args);
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
                Err(ref e) => Err(Error::Handler(e.to_string())),
            };
            match &result {
                // The pending return also overwrote rax: set the call up again.
                Ok(r) if r.ip() == at.get() => ptrace::setregs(tid, &regs)?,
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
            return Err(Error::Memory {
                pid: tid,
                addr: at,
                errno: Errno::from_raw(-r as i32),
            });
        }
        Ok(r)
    }
}
