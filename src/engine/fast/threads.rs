//! Threads as fast records name them: by thread pointer. A thread seen at
//! its first stop (`Tracer::note_thread`), thread pointers looked up by
//! stopping the threads, a vfork child on its parent's TLS, a `CLONE_VM`
//! task sharing one (fast probes suspended while it lives), and a forked
//! child's own ring.

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::engine::guards::World;
use crate::engine::task::TaskState;
use crate::engine::tracer::Tracer;
use crate::error::Result;
use crate::sys::ptrace;

use std::collections::{HashMap, HashSet};

use crate::arch::unwind;

use super::clock::Drain;
use super::refusal::Refusal;

/// How far above a stopped thread's stack pointer its signal frames are
/// looked for: deeper than any handler's own frames go.
const SIGNAL_SCAN: usize = 1 << 20;
/// How much of a stack one read takes.
const CHUNK: usize = 64 << 10;

impl Tracer {
    /// Reads the thread pointer of every thread of space `key`, stopping
    /// the running ones for it.
    pub(super) fn refresh_threads(&mut self, key: Pid) -> Result<()> {
        self.with_world_stopped(World::Space(key), |this, _| {
            this.note_stopped_threads(key);
            Ok(())
        })
    }

    /// The stopped threads of space `key` that are not exiting.
    pub(super) fn stopped_threads(&self, key: Pid) -> Vec<Tid> {
        self.world
            .tasks
            .iter()
            .filter(|(_, t)| t.space == key && t.state == TaskState::Stopped && !t.exiting)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Notes the thread pointer of every stopped thread of space `key`, and
    /// returns where each of them is (their instruction pointers), but for
    /// the threads just past an int3 of a site by a trap not yet handled,
    /// which go back to the site when it is: their instruction pointers are
    /// returned apart. Such a trap is a stop put off (`World::deferred`),
    /// or a SIGTRAP still pending in the thread's own queue (the thread
    /// trapped as it was interrupted: the interrupt's stop came first).
    pub(super) fn note_stopped_threads(&mut self, key: Pid) -> (Vec<u64>, Vec<u64>) {
        let stopped = self.stopped_threads(key);
        let trapped: HashSet<Tid> = self
            .world
            .deferred
            .iter()
            .filter_map(|s| match s {
                crate::sys::wait::Stop::Trap { tid } => Some(*tid),
                _ => None,
            })
            .collect();
        let mut ips = Vec::with_capacity(stopped.len());
        let mut past_traps = Vec::new();
        for t in stopped {
            if let Ok(regs) = ptrace::getregs(t) {
                let site = RuntimeAddr(regs.ip().wrapping_sub(crate::arch::BREAKPOINT_LEN));
                let past_int3 = self
                    .world
                    .spaces
                    .get(&key)
                    .and_then(|s| s.sites.get(site))
                    .is_some_and(|s| s.fast.is_none());
                let trap_waits = trapped.contains(&t)
                    || (past_int3 && crate::engine::task::signal_pending(t, libc::SIGTRAP));
                match past_int3 && trap_waits {
                    true => past_traps.push(regs.ip()),
                    false => ips.push(regs.ip()),
                }
                let tp = regs.thread_pointer();
                let Some(space) = self.world.spaces.get(&key).filter(|_| tp != 0) else {
                    continue;
                };
                // A pointer another live task has keeps it: a CLONE_VM child
                // on its parent's TLS (fast probes are suspended while it
                // lives) must not be taken for the parent once it is gone.
                let taken = space.fast.threads.get(&tp).is_some_and(|&other| {
                    other != t && self.world.tasks.get(&other).is_some_and(|o| !o.exiting)
                });
                if !taken {
                    if let Some(space) = self.world.spaces.get_mut(&key) {
                        space.fast.threads.insert(tp, t);
                    }
                }
            }
        }
        (ips, past_traps)
    }

    /// Where the stopped threads of space `key` will return to from the
    /// signal handlers they are in: the interrupted instruction pointers of
    /// the signal frames on their stacks (up to [`SIGNAL_SCAN`] bytes above
    /// each stack pointer). A handler that returns there must find the
    /// instructions it left, as a thread stopped there must.
    pub(super) fn signal_returns(&self, key: Pid) -> Vec<u64> {
        let Some(space) = self.world.spaces.get(&key) else {
            return Vec::new();
        };
        // A restorer is in a module; each candidate's code is read once.
        let mut restorers: HashMap<u64, bool> = HashMap::new();
        let mut restorer = |w: u64| {
            *restorers.entry(w).or_insert_with(|| {
                let mut code = [0; 9];
                space.modules.module_at(RuntimeAddr(w)).is_some() && {
                    let n = space.mem.read_partial(RuntimeAddr(w), &mut code);
                    unwind::is_restorer(&code[..n])
                }
            })
        };
        let mut stack = Vec::new();
        let mut returns = Vec::new();
        for t in self.stopped_threads(key) {
            let Ok(regs) = ptrace::getregs(t) else {
                continue;
            };
            stack.clear();
            let mut chunk = vec![0; CHUNK];
            while stack.len() < SIGNAL_SCAN {
                let at = RuntimeAddr(regs.sp().wrapping_add(stack.len() as u64));
                let n = space.mem.read_partial(at, &mut chunk);
                stack.extend_from_slice(&chunk[..n]);
                if n < chunk.len() {
                    break;
                }
            }
            returns.extend(unwind::signal_returns(&stack, &mut restorer));
        }
        returns
    }

    /// Notes thread `tid`'s thread pointer `tp` (read at its first stop):
    /// records already made under that pointer (a thread that ended, whose
    /// TLS the new one reuses) are drained first.
    pub(super) fn note_thread(&mut self, tid: Tid, tp: u64) -> Result<()> {
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(());
        };
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(());
        };
        if tp == 0 || !space.fast.active() || space.fast.lent.contains_key(&tp) {
            return Ok(());
        }
        let Some(&other) = space.fast.threads.get(&tp).filter(|&&t| t != tid) else {
            if let Some(space) = self.world.spaces.get_mut(&key) {
                space.fast.threads.insert(tp, tid);
                space.fast.unknown.remove(&tp);
            }
            return Ok(());
        };
        if self.world.tasks.get(&other).is_some_and(|t| !t.exiting) {
            // Two live tasks on one thread pointer: a child made with
            // CLONE_VM but no TLS of its own, running beside its parent.
            // Their records could not be told apart: no fast probe in this
            // memory while it lives.
            return self.suspend_fast(key, tid);
        }
        // A thread that ended, whose TLS the new one reuses: its records
        // are read first.
        self.reader().drain_through(key)?;
        if let Some(space) = self.world.spaces.get_mut(&key) {
            space.fast.threads.insert(tp, tid);
            space.fast.unknown.remove(&tp);
        }
        Ok(())
    }

    /// Takes every jump of space `key` off while `by` (a task sharing its
    /// memory and a thread pointer) lives.
    pub(super) fn suspend_fast(&mut self, key: Pid, by: Tid) -> Result<()> {
        self.drain(key, Drain::Quick)?;
        let live: Vec<RuntimeAddr> = match self.world.spaces.get_mut(&key) {
            Some(space) => {
                space.fast.suspended_by.insert(by);
                space
                    .fast
                    .sites
                    .iter()
                    .filter(|s| s.live)
                    .map(|s| s.addr)
                    .collect()
            }
            None => return Ok(()),
        };
        self.unpatch_fast(key, &live)?;
        if let Some(space) = self.world.spaces.get_mut(&key) {
            for a in live {
                space.fast.refused.insert(a, Refusal::Suspended);
            }
        }
        Ok(())
    }

    /// A forked child traced with `-f` (`tid`, at its first stop) still
    /// shares its parent's ring: it gets one of its own at the same address,
    /// so the detours it inherited write there. If that fails, its jumps go
    /// (it has one thread, stopped, outside any detour: it was in `fork`).
    pub(super) fn give_child_ring(&mut self, tid: Tid) -> Result<()> {
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(());
        };
        let Some(layout) = self.world.spaces.get(&key).and_then(|s| s.fast.ring_wanted) else {
            return Ok(());
        };
        if let Ok(regs) = ptrace::getregs(tid) {
            if let Some(space) = self.world.spaces.get_mut(&key) {
                space.fast.threads.insert(regs.thread_pointer(), tid);
            }
        }
        if let Err(why) = self.make_ring(key, tid, layout.slot_size, Some(layout), false) {
            let space = self.space_mut(key)?;
            space.fast.broken = Some(why);
            space.fast.ring_wanted = None;
            let live: Vec<RuntimeAddr> = space
                .fast
                .sites
                .iter()
                .filter(|s| s.live)
                .map(|s| s.addr)
                .collect();
            let halting = std::mem::replace(&mut self.halting, true);
            let r = self.unpatch_fast(key, &live);
            self.halting = halting;
            r?;
            // Nothing is patched any more: no new attempt in the child.
            let space = self.space_mut(key)?;
            let reason = Refusal::ChildWithoutRing;
            for a in live {
                space.fast.refused.insert(a, reason.clone());
            }
        }
        Ok(())
    }
}
