//! Detaching: every change rtrace made to the tracee is undone, and every thread
//! is let go with the signals that were meant for it.
//!
//! 1. Halt: every thread is brought to a ptrace-stop (PTRACE_INTERRUPT) and its
//!    stops are handled in "halting" mode: a thread that trapped at one of our
//!    breakpoints is rewound to re-execute the original instruction, one that
//!    returned into the trampoline is sent on to its real return address, a
//!    signal is kept for the detach, a group-stopped thread stays stopped.
//! 2. Undo, per address space: every rewritten return address still holding the
//!    trampoline gets its original back, every breakpoint its original bytes, and
//!    the scratch page is unmapped (unless a seccomp filter that arrived since,
//!    and that rtrace may not suspend, would see the munmap: it then stays,
//!    unused, and a warning says so).
//! 3. Release: PTRACE_DETACH each thread, delivering its pending signal.

use crate::addr::{RuntimeAddr, Tid};
use crate::arch::{BREAKPOINT_LEN, WORD};
use crate::error::Result;
use crate::handler::Event;
use crate::sys::ptrace::{self, Restart};
use crate::sys::{signal, wait};

use super::fast;
use super::space::SCRATCH_SIZE;
use super::task::{self, TaskState};
use super::tracer::{guarded, Outcome, Tracer};

impl Tracer {
    /// Detaches from everything. Tries every step even when one fails, and
    /// returns the first error.
    pub(super) fn detach_all(&mut self) -> Result<()> {
        if self.world.tasks.is_empty() {
            return Ok(());
        }
        // The other processes attached to (`-p A -p B`) that still run.
        let others: Vec<_> = self
            .extra_roots
            .iter()
            .copied()
            .filter(|&pid| self.world.tasks.values().any(|t| t.pid == pid))
            .collect();
        self.halting = true;
        let halted = self.halt().and_then(|()| self.take_pending_traps());
        let undone = self.undo_all();
        // (The program has not ended: its pid is its own still.)
        if let Some(sig) = self
            .signal_at_release
            .take()
            .filter(|_| self.root_end.is_none())
        {
            let _ = nix::sys::signal::Signal::try_from(sig)
                .and_then(|s| nix::sys::signal::kill(self.root, s));
        }
        let released = self.release_all();
        self.halting = false;
        // What could not be undone, said before the detach is.
        let warned = self.flush_warnings();
        self.emit(Event::Detached { pid: self.root })?;
        for pid in others {
            self.emit(Event::Detached { pid })?;
        }
        halted.and(undone).and(released).and(warned)
    }

    /// After a detach asked for by a signal (SIGINT, SIGTERM, SIGHUP), which
    /// the program rtrace launched had at its release (`signal_at_release`)
    /// or from the terminal: waits for the program, which runs untraced
    /// now, to end (if `wait`). Its end is told to the listeners as if it
    /// had been traced to it, and becomes the outcome. A second detach
    /// signal to rtrace ends the wait, leaving the program to run on (the
    /// outcome stays `Detached`).
    pub(super) fn wait_for_program(&mut self, wait: bool) -> Result<()> {
        use nix::sys::wait::WaitStatus;
        let root = self.root;
        // The events so far are out before the program's last words.
        for l in &mut self.consumers.listeners {
            guarded(|| l.on_idle())?;
        }
        let mut said_stopped = false;
        let (event, end) = loop {
            // Another signal came before or during the detach: no wait.
            if !wait || signal::stop_requested() {
                return Ok(());
            }
            match wait::wait_program(root, true) {
                // Stopped (SIGSTOP, a terminal's SIGTSTP): the signal waits
                // with it, as untraced; rtrace says why it waits.
                Ok(WaitStatus::Stopped(_, stop)) if !said_stopped => {
                    said_stopped = true;
                    self.emit(Event::ProcessWarning {
                        pid: root,
                        message: format!(
                            "pid {root} is stopped ({}): rtrace waits for it to end; SIGCONT \
                             it, or send rtrace another signal to leave it",
                            stop.as_str()
                        ),
                    })?;
                    for l in &mut self.consumers.listeners {
                        guarded(|| l.on_idle())?;
                    }
                }
                Ok(WaitStatus::Exited(_, code)) => {
                    break (Event::Exited { pid: root, code }, Outcome::Exited(code))
                }
                Ok(WaitStatus::Signaled(_, signal, core_dumped)) => {
                    let signal = signal as i32;
                    break (
                        Event::Killed {
                            pid: root,
                            signal,
                            core_dumped,
                        },
                        Outcome::Killed {
                            signal,
                            core_dumped,
                        },
                    );
                }
                Ok(_) => continue,
                // The timer, say: wait on, unless another signal came since
                // the detach began (one that lands just before the wait
                // blocks arms the timer, which ends the wait).
                Err(nix::errno::Errno::EINTR) if !signal::stop_requested() => continue,
                Err(_) => return Ok(()),
            }
        };
        self.outcome = Some(end);
        self.emit(event)
    }

    fn halt(&mut self) -> Result<()> {
        loop {
            while let Some(stop) = self.world.deferred.pop_front() {
                match self.dispatch(stop) {
                    Err(e) if e.is_tracee_gone() => {}
                    r => r?,
                }
            }
            let running: Vec<Tid> = self
                .world
                .tasks
                .iter()
                .filter(|(_, t)| {
                    !t.exiting && matches!(t.state, TaskState::Running | TaskState::Listening)
                })
                .map(|(tid, _)| *tid)
                .collect();
            let starting = self
                .world
                .tasks
                .values()
                .any(|t| t.state == TaskState::Starting);
            if running.is_empty() && !starting && self.world.deferred.is_empty() {
                return Ok(());
            }
            if !running.is_empty() {
                // The quiet ones are stopped now, with nothing to handle.
                self.interrupt_and_collect(&running)?;
                continue;
            }
            // Only new tasks whose first stop is still to come.
            match self.wait_stop(wait::Which::Any, true, false) {
                Ok(wait::Waited::Stop(stop)) => self.world.deferred.push_back(stop),
                Ok(wait::Waited::NotReady | wait::Waited::Interrupted) => {}
                Ok(wait::Waited::NoTracee) | Err(_) => return Ok(()),
            }
        }
    }

    /// A thread that executed one of our `int3`s just as it was interrupted
    /// reports the interrupt first, with the SIGTRAP still pending (the kernel
    /// handles PTRACE_INTERRUPT before it dequeues signals). Detached like that,
    /// it would die of that SIGTRAP. Each such thread is resumed to take it now
    /// (it runs no instruction before: a pending signal is dequeued on the way
    /// out of the kernel) and the trap is handled as ours: the thread is rewound
    /// to the site, or sent on from the trampoline to its return address, or
    /// (the trap of a completed out-of-line step) moved out of the slot.
    fn take_pending_traps(&mut self) -> Result<()> {
        for tid in self.world.stopped() {
            if !task::signal_pending(tid, libc::SIGTRAP) {
                continue;
            }
            let Ok(regs) = ptrace::getregs(tid) else {
                continue;
            };
            let at = RuntimeAddr(regs.ip()).offset(-(BREAKPOINT_LEN as i64));
            let key = self.world.tasks[&tid].space;
            // A thread stepping out of line whose step completed as it was
            // interrupted has the step's SIGTRAP pending the same way.
            let ours = self.world.tasks[&tid].step.is_some()
                || Some(at) == self.trampoline_of(tid)
                || self
                    .world
                    .spaces
                    .get(&key)
                    .is_some_and(|s| s.is_our_trap(at));
            if !ours {
                continue;
            }
            match ptrace::restart(tid, Restart::Continue(0)) {
                Err(e) if e.is_tracee_gone() => continue,
                r => r?,
            }
            self.world.tasks.get_mut(&tid).expect("listed above").state = TaskState::Running;
            let stop = loop {
                match wait::wait(wait::Which::Tid(tid), true, false) {
                    Ok(wait::Waited::Stop(stop)) => break Some(stop),
                    Ok(wait::Waited::NotReady | wait::Waited::Interrupted) => {}
                    Ok(wait::Waited::NoTracee) | Err(_) => break None,
                }
            };
            if let Some(stop) = stop {
                self.dispatch(stop)?;
            }
        }
        Ok(())
    }

    fn undo_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        let keys: Vec<_> = self.world.spaces.keys().copied().collect();
        for key in keys {
            let r = self.undo_space(key);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn undo_space(&mut self, key: crate::Pid) -> Result<()> {
        let tids: Vec<Tid> = self
            .world
            .tasks
            .iter()
            .filter(|(_, t)| t.space == key)
            .map(|(tid, _)| *tid)
            .collect();
        // Out of the slots first: the scratch area goes below.
        let mut stepped = Ok(());
        for &tid in &tids {
            if let Err(e) = self.abandon_step(tid) {
                if !e.is_tracee_gone() && stepped.is_ok() {
                    stepped = Err(e);
                }
            }
        }
        // Fast probes: every thread out of the detours and the return stub,
        // every record read, every slot holding the stub given its return
        // address back (which may be the trampoline: before the
        // trampoline's slots are), before the jumps go with the breakpoints.
        let fast = match fast::quiesce(self, key, &tids) {
            Err(e) if e.is_tracee_gone() => Ok(()),
            r => r,
        };
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return stepped.and(fast);
        };
        let tramp = space.trampoline();
        let mut first = stepped.and(fast);
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                if !e.is_tracee_gone() && first.is_ok() {
                    first = Err(e);
                }
            }
        };
        if let Some(tramp) = tramp {
            for &tid in &tids {
                let task = self.world.tasks.get_mut(&tid).expect("listed above");
                // A thread stopped on the trampoline, about to execute it: it has
                // returned already; send it where it was going.
                let pid = space.pid;
                let maps = &mut space.maps;
                let mut same_stack = |a, b| maps.same_mapping(pid, a, b);
                if let Ok(mut regs) = ptrace::getregs(tid) {
                    let sp = RuntimeAddr(regs.sp());
                    if regs.ip() == tramp.get() {
                        let (_, found) = task.returns.pop_returning(sp, &mut same_stack);
                        let orig = found
                            .first()
                            .map(|i| i.orig_ret)
                            .or_else(|| task.returns.recover(sp.offset(-(WORD as i64))));
                        if let Some(orig) = orig {
                            regs.set_ip(orig.get());
                            keep(ptrace::setregs(tid, &regs));
                        }
                    } else {
                        // Calls below the stack pointer were left by longjmp:
                        // their slots are free stack now (maybe a leaf
                        // function's red zone), not to be written.
                        task.returns.drop_abandoned(sp, false, &mut same_stack);
                    }
                }
                // Innermost first, each slot once: a slot an abandoned call
                // shares with a live one is the live one's.
                for (slot, orig) in task.returns.restorations() {
                    keep((|| {
                        if space.mem.read_u64(slot)? == tramp.get() {
                            space.mem.write_u64(slot, orig.get())?;
                        }
                        Ok(())
                    })());
                }
                task.returns.take_all();
            }
        }
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return first;
        };
        keep(space.disarm_all());
        // Code the program rewrote since rtrace changed it stays the
        // program's: said, not undone.
        let rewritten = space.rewritten_report();
        let scratch = space.scratch;
        let fast = space.fast.release();
        space.scratch = None;
        // rtrace's mappings: the fast probes' ring and detour areas, then the
        // scratch page, whose `syscall` instruction every munmap uses (so it
        // goes last). A seccomp filter that arrived after they were made (a
        // launched program installs its own), and that rtrace may not
        // suspend, refuses the munmaps: the mappings stay, unused (no return
        // address, thread or jump leads there any more), and the user is
        // told. A SIGSYS or a failing call in the program would be worse.
        let mut left = Vec::new();
        let mut refused = None;
        if let Some(page) = scratch {
            let unmaps = fast
                .iter()
                .map(|&(addr, len)| (addr, len, "fast probes' ring and detour areas"))
                .chain([(page, SCRATCH_SIZE, "rtrace's scratch page")]);
            for (addr, len, what) in unmaps {
                match self.munmap_by_any(&tids, page, addr, len) {
                    Err(e @ crate::Error::Seccomp { .. }) => {
                        // Said scratch page first.
                        if !left.contains(&what) {
                            match addr == page {
                                true => left.insert(0, what),
                                false => left.push(what),
                            }
                        }
                        refused = Some(e);
                    }
                    r => keep(r),
                }
            }
        }
        if let Some(e) = refused {
            self.warn_left_mapped(&e, &left);
        }
        if let Some(event) = rewritten {
            keep(self.emit(event));
        }
        first
    }

    /// Unmaps `len` bytes at `addr` by a system call (with the `syscall`
    /// instruction of the scratch page at `page`) made by a stopped thread
    /// among `tids`. Threads come and go while rtrace detaches: one that is
    /// gone (it exited between its stop and the call, or during the call)
    /// leaves the call to the next, so nothing of rtrace's is left mapped
    /// while a thread of the process can still make it.
    fn munmap_by_any(
        &mut self,
        tids: &[Tid],
        page: RuntimeAddr,
        addr: RuntimeAddr,
        len: u64,
    ) -> Result<()> {
        let mut callers: Vec<Tid> = tids
            .iter()
            .copied()
            .filter(|t| {
                self.world
                    .tasks
                    .get(t)
                    .is_some_and(|t| t.state == TaskState::Stopped && !t.exiting)
            })
            .collect();
        // The thread-group leader first: it is the last to go.
        callers.sort_by_key(|t| self.world.tasks.get(t).is_none_or(|k| k.pid != *t));
        let mut last = Ok(());
        for tid in callers {
            let r = self.inject_syscall(
                tid,
                page.offset(crate::arch::SCRATCH_SYSCALL_OFFSET),
                libc::SYS_munmap,
                &[addr.get(), len],
            );
            match r {
                Err(e) if e.is_tracee_gone() => last = Err(e),
                r => return r.map(|_| ()),
            }
        }
        last
    }

    fn release_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        let tasks = std::mem::take(&mut self.world.tasks);
        self.world.spaces.clear();
        for (tid, task) in tasks {
            if let Some(mask) = &task.affinity {
                crate::sys::sched::set_affinity(tid, mask);
            }
            // A thread in a signal-delivery stop gets the oldest held signal
            // from the detach itself, with its siginfo; the others are queued
            // again once it is free. A nudge still pending stands for the
            // oldest.
            let mut held = task.held.into_iter();
            let mut sig = 0;
            if task.nudge.is_some() {
                held.next();
            } else if task.in_delivery_stop {
                if let Some(h) = held.next() {
                    if let Some(info) = &h.info {
                        let _ = ptrace::setsiginfo(tid, info);
                    }
                    sig = h.signal;
                }
            }
            let r = ptrace::restart(tid, Restart::Detach(sig));
            if let Err(e) = r {
                if !e.is_tracee_gone() && first.is_ok() {
                    first = Err(e);
                }
            }
            for h in held {
                signal::requeue(task.pid, tid, h.signal, h.info.as_ref());
            }
        }
        first
    }
}
