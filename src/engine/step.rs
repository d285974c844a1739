//! Running the instruction a breakpoint displaced, when it is neither
//! emulated nor already set up: out of line (a copy in the scratch page,
//! single-stepped, then fixed up: the kernel's `arch_uprobe_post_xol`) and
//! in place (the original bytes back for one step, every other thread of
//! the process stopped meanwhile). Signals that arrive during a step are
//! held for after it.

use crate::addr::{RuntimeAddr, Tid};
use crate::arch::{Regs, Strategy, XolEnd, BREAKPOINT, BREAKPOINT_LEN};
use crate::error::Result;
use crate::sys::ptrace::{self, Restart};
use crate::sys::wait::{self, Stop, TrapCause, Waited, Which};

use super::guards::World;
use super::task::{HeldSignal, XolStep};
use super::tracer::Tracer;

/// What an in-place single-step of one thread ended with.
pub(super) enum StepEnd {
    /// The instruction executed; the thread is stopped after it.
    Done,
    /// The thread died, or exec'd (the stop is deferred).
    Gone,
    /// The instruction raised this signal (a fault) and did not complete.
    Faulted(i32),
}

/// The length of the slot's copy of the instruction of an out-of-line step.
fn xol_code_len(step: &XolStep) -> usize {
    match &step.plan.strategy {
        Strategy::Xol(xol) => xol.code.len(),
        Strategy::Emulate(_) | Strategy::InPlace => 0,
    }
}

impl Tracer {
    /// A SIGTRAP stopped `tid` while it steps out of line.
    pub(super) fn on_trap_in_step(
        &mut self,
        tid: Tid,
        cause: TrapCause,
        step: &XolStep,
    ) -> Result<()> {
        let regs = match ptrace::getregs(tid) {
            Ok(r) => r,
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        let guard = step.slot.get() + xol_code_len(step) as u64 + BREAKPOINT_LEN;
        match cause {
            TrapCause::Step => self.complete_step(tid, regs),
            // Something ran on past the instruction onto the slot's guard (a
            // task created by the stepped system call, which is not stepping).
            TrapCause::Breakpoint if regs.ip() == guard => self.complete_step(tid, regs),
            TrapCause::Breakpoint | TrapCause::Sent => self.on_signal_in_step(tid, libc::SIGTRAP),
        }
    }

    /// The out-of-line step of `tid` ended (`regs`, just read): fix the registers
    /// up, and finish the hit. A `rep` instruction between iterations is stepped
    /// again.
    fn complete_step(&mut self, tid: Tid, mut regs: Regs) -> Result<()> {
        let task = self.world.tasks.get_mut(&tid).expect("a stepping task");
        let step = task.step.clone().expect("a stepping task");
        let (key, pid) = (task.space, task.pid);
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(());
        };
        match step.finish(&mut regs, &space.mem) {
            Ok(XolEnd::Again) => return self.resume(tid, 0),
            Ok(XolEnd::Done) => {}
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        }
        let task = self.world.tasks.get_mut(&tid).expect("a stepping task");
        task.step = None;
        match task.pending_hit.take() {
            Some(hit) => self.finish_hit(tid, key, pid, regs, *hit),
            // A task that inherited the step (created by the stepped call).
            None => {
                ptrace::setregs(tid, &regs)?;
                self.resume(tid, 0)
            }
        }
    }

    /// A signal stopped `tid` while it steps out of line. A fault raised by the
    /// instruction cancels the step: the thread goes back to the site and gets
    /// the signal there, as it would untraced. Any other signal waits for the
    /// step to complete, then is delivered, once.
    pub(super) fn on_signal_in_step(&mut self, tid: Tid, signal: i32) -> Result<()> {
        let mut regs = match ptrace::getregs(tid) {
            Ok(r) => r,
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        let task = self.world.tasks.get_mut(&tid).expect("a stepping task");
        let step = task.step.clone().expect("a stepping task");
        if regs.ip() != step.slot.get() {
            // The instruction ran (a system call the signal interrupted): the
            // step is over; the signal follows it.
            task.stray_step = true;
            self.hold_signal(tid, signal)?;
            return self.complete_step(tid, regs);
        }
        if !wait::is_fault(tid, signal) {
            self.hold_signal(tid, signal)?;
            return self.resume(tid, 0);
        }
        step.cancel(&mut regs);
        task.step = None;
        let hit = task.pending_hit.take();
        let key = task.space;
        ptrace::setregs(tid, &regs)?;
        if let Some(hit) = hit {
            self.unhijack(key, hit.hijacked);
        }
        self.deliver_signal(tid, signal)
    }

    /// Detaching: a thread caught in an out-of-line step leaves the slot, either
    /// back at the site (the instruction has not run) or after it, and a return
    /// address rewritten for its hit gets its original back.
    pub(super) fn abandon_step(&mut self, tid: Tid) -> Result<()> {
        let Some(task) = self.world.tasks.get_mut(&tid) else {
            return Ok(());
        };
        let (Some(step), hit) = (task.step.take(), task.pending_hit.take()) else {
            return Ok(());
        };
        let key = task.space;
        if let Some(hit) = hit {
            self.unhijack(key, hit.hijacked);
        }
        let mut regs = ptrace::getregs(tid)?;
        if regs.ip() == step.slot.get() {
            step.cancel(&mut regs);
        } else if let Some(space) = self.world.spaces.get(&key) {
            step.finish(&mut regs, &space.mem)?;
        }
        ptrace::setregs(tid, &regs)
    }

    /// Executes the instruction displaced by the breakpoint at `addr`, in place:
    /// every other thread of the address space is stopped, the original bytes go
    /// back, `tid` single-steps, the breakpoint is re-armed, the others resume.
    /// Signals that arrive during the step are kept for after it.
    pub(super) fn step_displaced(&mut self, tid: Tid, addr: RuntimeAddr) -> Result<StepEnd> {
        let key = self.world.tasks[&tid].space;
        self.with_world_stopped(World::SpaceBut(key, tid), |t, _| {
            let saved = t.world.spaces[&key]
                .sites
                .get(addr)
                .map(|s| s.saved.clone())
                .expect("site armed");
            t.world.spaces[&key].mem.write(addr, &saved)?;
            let mut end = t.single_step(tid);
            // A `rep` instruction stops between iterations, still at the site,
            // and is stepped on: its count is the program's, without bound, so a
            // detach signal ends the stepping (the thread stays between two
            // iterations, at the site; its trap there is rewound at the detach
            // that follows, and the rest runs untraced).
            while let Ok(StepEnd::Done) = end {
                match ptrace::getregs(tid) {
                    Ok(regs)
                        if regs.ip() == addr.get() && !crate::sys::signal::stop_requested() =>
                    {
                        end = t.single_step(tid)
                    }
                    _ => break,
                }
            }
            // Re-arm whatever happened, unless the address space is gone.
            if let Some(space) = t.world.spaces.get(&key) {
                if matches!(end, Ok(StepEnd::Done | StepEnd::Faulted(_)))
                    || space.sites.get(addr).is_some()
                {
                    match space.mem.write(addr, &BREAKPOINT) {
                        Err(e) if !e.is_tracee_gone() => return Err(e),
                        _ => {}
                    }
                }
            }
            end
        })
    }

    /// Single-steps `tid` once, keeping signals that arrive for later delivery.
    /// A fault raised by the instruction itself ends the step (it did not run).
    pub(super) fn single_step(&mut self, tid: Tid) -> Result<StepEnd> {
        loop {
            match ptrace::restart(tid, Restart::Step(0)) {
                Err(e) if e.is_tracee_gone() => return Ok(StepEnd::Gone),
                r => r?,
            }
            let stop = loop {
                match self.wait_stop(Which::Tid(tid), true, false)? {
                    Waited::Stop(s) => break s,
                    Waited::NotReady | Waited::Interrupted => continue,
                    Waited::NoTracee => return Ok(StepEnd::Gone),
                }
            };
            match stop {
                Stop::Trap { .. } if wait::trap_cause(tid) == TrapCause::Step => {
                    return Ok(StepEnd::Done)
                }
                Stop::Trap { .. } => self.hold_signal(tid, libc::SIGTRAP)?,
                Stop::Signal { signal, .. } if wait::is_fault(tid, signal) => {
                    return Ok(StepEnd::Faulted(signal))
                }
                Stop::Signal { signal, .. } => self.hold_signal(tid, signal)?,
                Stop::GroupStop { .. } | Stop::Interrupt { .. } => {}
                Stop::Exited { .. } | Stop::Killed { .. } => {
                    self.world.deferred.push_back(stop);
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
                    wait::Event::Exit => {
                        self.on_exiting(tid)?;
                        return Ok(StepEnd::Gone);
                    }
                    wait::Event::Exec { .. } => {
                        self.world.deferred.push_back(stop);
                        return Ok(StepEnd::Gone);
                    }
                },
            }
        }
    }

    /// Keeps a signal that arrived while `tid` was stepping (`tid` is in its
    /// signal-delivery stop), with its siginfo, to deliver when the step is
    /// over. It is reported when it is delivered.
    pub(super) fn hold_signal(&mut self, tid: Tid, signal: i32) -> Result<()> {
        let Some(task) = self.world.tasks.get_mut(&tid) else {
            return Ok(());
        };
        let info = ptrace::getsiginfo(tid).ok();
        task.held.push(HeldSignal {
            signal,
            info,
            reported: false,
        });
        Ok(())
    }
}
