//! Return instances: one per call in flight whose return is watched.
//!
//! At a function probe's entry the return address on the stack (at `sp`) is
//! replaced by the trampoline; the instance remembers the slot and the original.
//! When the thread comes back through the trampoline, its stack pointer is just
//! above the slot it returned through (`ret` popped it), which identifies the
//! instance. Instances whose slot is below that (deeper frames abandoned by
//! longjmp or an exception) can never return: they are dropped, as the kernel's
//! `cleanup_return_instances` does.
//!
//! A tail call enters a probed function with the trampoline already in the slot:
//! its instance is *chained* to the one below (same slot, same original), and
//! both return together, innermost first (the kernel's `chained` flag).
//!
//! An instance can also be watched at its return site instead ([`Watch::ReturnSite`],
//! gdb's `finish`): the original return address stays on the stack, and a
//! breakpoint at it reports the return when the stack pointer matches. Instances
//! move there when the thread starts unwinding its stack (an exception, a
//! backtrace), since an unwinder must never see the trampoline.

use std::any::Any;
use std::rc::Rc;
use std::time::Duration;

use crate::addr::RuntimeAddr;
use crate::arch::WORD;
use crate::handler::Site;

/// What a handler kept at entry with `Hit::set_data`.
pub type HandlerData = Option<Box<dyn Any>>;

/// How the return of a call in flight is caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// The slot holds the trampoline.
    Trampoline,
    /// The slot holds the original return address, where a breakpoint waits.
    ReturnSite,
}

/// A call in flight.
pub struct ReturnInstance {
    /// The stack slot holding the rewritten return address.
    pub slot: RuntimeAddr,
    /// The return address the trampoline replaced.
    pub orig_ret: RuntimeAddr,
    /// When the call was entered.
    pub entered: Duration,
    /// The function probes to report, with what each handler kept at entry.
    pub probes: Vec<(Rc<Site>, HandlerData)>,
    /// Entered by a tail call: the slot was already the trampoline's, for the
    /// instance below, and this one returns with it.
    pub chained: bool,
    /// How its return is caught.
    pub watch: Watch,
}

impl std::fmt::Debug for ReturnInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnInstance")
            .field("slot", &self.slot)
            .field("orig_ret", &self.orig_ret)
            .field("chained", &self.chained)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

/// The return instances of one thread, innermost last.
#[derive(Debug, Default)]
pub struct ReturnStack {
    instances: Vec<ReturnInstance>,
}

impl ReturnStack {
    /// Records a call.
    pub fn push(&mut self, inst: ReturnInstance) {
        self.instances.push(inst);
    }

    /// The calls in flight, outermost first.
    pub fn iter(&self) -> impl Iterator<Item = &ReturnInstance> {
        self.instances.iter()
    }

    /// The number of calls in flight.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// True when no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// A copy for a forked child, whose stack is a copy of this thread's: the same
    /// slots, the same return addresses; what handlers kept stays with the parent.
    pub fn clone_without_data(&self) -> ReturnStack {
        ReturnStack {
            instances: self
                .instances
                .iter()
                .map(|i| ReturnInstance {
                    slot: i.slot,
                    orig_ret: i.orig_ret,
                    entered: i.entered,
                    probes: i.probes.iter().map(|(s, _)| (s.clone(), None)).collect(),
                    chained: i.chained,
                    watch: i.watch,
                })
                .collect(),
        }
    }

    /// The calls in flight, writable (to change how they are watched).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ReturnInstance> {
        self.instances.iter_mut()
    }

    /// The innermost instance whose slot is `slot`, if any.
    pub fn in_slot(&self, slot: RuntimeAddr) -> Option<&ReturnInstance> {
        self.instances.iter().rev().find(|i| i.slot == slot)
    }

    /// Drops the instances whose frames are gone for a thread whose stack
    /// pointer is `sp` (their slots are below it), and returns them.
    pub fn drop_abandoned(&mut self, sp: RuntimeAddr) -> Vec<ReturnInstance> {
        let mut dropped = Vec::new();
        while let Some(top) = self.instances.last() {
            if top.slot < sp {
                dropped.extend(self.instances.pop());
            } else {
                break;
            }
        }
        dropped
    }

    /// Takes every instance (detach, exec, thread exit).
    pub fn take_all(&mut self) -> Vec<ReturnInstance> {
        std::mem::take(&mut self.instances)
    }

    /// A thread returned with stack pointer `sp` (at the trampoline, or at a return
    /// site): it returned through the slot at `sp - WORD`. Returns the abandoned
    /// instances (slots below that one) and the returning ones, innermost first:
    /// one, or several when tail calls chained them on the same slot.
    pub fn pop_returning(&mut self, sp: RuntimeAddr) -> (Vec<ReturnInstance>, Vec<ReturnInstance>) {
        let slot = sp.offset(-(WORD as i64));
        let dropped = self.drop_abandoned(slot);
        let mut returning = Vec::new();
        while let Some(top) = self.instances.last() {
            if top.slot != slot {
                break;
            }
            let chained = top.chained;
            returning.extend(self.instances.pop());
            if !chained {
                break;
            }
        }
        (dropped, returning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(slot: u64, ret: u64) -> ReturnInstance {
        ReturnInstance {
            slot: RuntimeAddr(slot),
            orig_ret: RuntimeAddr(ret),
            entered: Duration::ZERO,
            probes: Vec::new(),
            chained: false,
            watch: Watch::Trampoline,
        }
    }

    #[test]
    fn tail_calls_return_together_innermost_first() {
        // outer → mid (slot 0x7fd0) → tail-jumps to leaf (same slot, chained).
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        s.push(inst(0x7fd0, 0x401100));
        let mut leaf = inst(0x7fd0, 0x401100);
        leaf.chained = true;
        leaf.entered = Duration::from_nanos(1);
        s.push(leaf);
        let (dropped, returning) = s.pop_returning(RuntimeAddr(0x7fd8));
        assert!(dropped.is_empty());
        assert_eq!(returning.len(), 2);
        assert!(returning[0].chained && !returning[1].chained, "leaf first");
        assert_eq!(s.len(), 1);
        // A second call through the same slot later is not part of the chain.
        s.push(inst(0x7fd0, 0x401100));
        let (_, returning) = s.pop_returning(RuntimeAddr(0x7fd8));
        assert_eq!(returning.len(), 1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn recursion_returns_innermost_first() {
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        s.push(inst(0x7fd0, 0x401100));
        s.push(inst(0x7fb0, 0x401100));
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7fb8));
        assert!(dropped.is_empty());
        assert_eq!(found[0].slot, RuntimeAddr(0x7fb0));
        let (_, found) = s.pop_returning(RuntimeAddr(0x7fd8));
        assert_eq!(found[0].orig_ret, RuntimeAddr(0x401100));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn abandoned_frames_are_dropped() {
        // longjmp from the innermost call straight back to the outermost frame.
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        s.push(inst(0x7fd0, 0x401100));
        s.push(inst(0x7fb0, 0x401200));
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7ff8));
        let slots: Vec<_> = dropped.iter().map(|i| i.slot.get()).collect();
        assert_eq!(slots, vec![0x7fb0, 0x7fd0]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].orig_ret, RuntimeAddr(0x401000));
        assert!(s.is_empty());
    }

    #[test]
    fn unknown_slot_finds_nothing() {
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7fe0));
        assert!(dropped.is_empty() && found.is_empty());
        assert_eq!(s.len(), 1);
    }
}
