//! Return instances: one per call in flight whose return address was rewritten.
//!
//! At a function probe's entry the return address on the stack (at `sp`) is
//! replaced by the trampoline; the instance remembers the slot and the original.
//! When the thread comes back through the trampoline, its stack pointer is just
//! above the slot it returned through (`ret` popped it), which identifies the
//! instance. Instances whose slot is below that (deeper frames abandoned by
//! longjmp or an exception) can never return: they are dropped, as the kernel's
//! `cleanup_return_instances` does.

use std::any::Any;
use std::rc::Rc;
use std::time::Duration;

use crate::addr::RuntimeAddr;
use crate::arch::WORD;
use crate::handler::Site;

/// What a handler kept at entry with `Hit::set_data`.
pub type HandlerData = Option<Box<dyn Any>>;

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
}

impl std::fmt::Debug for ReturnInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnInstance")
            .field("slot", &self.slot)
            .field("orig_ret", &self.orig_ret)
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
                })
                .collect(),
        }
    }

    /// Takes every instance (detach, exec, thread exit).
    pub fn take_all(&mut self) -> Vec<ReturnInstance> {
        std::mem::take(&mut self.instances)
    }

    /// A thread arrived at the trampoline with stack pointer `sp`: it returned
    /// through the slot at `sp - WORD`. Returns the abandoned instances (slots below
    /// that one) and the returning instance, if it is found.
    pub fn pop_returning(
        &mut self,
        sp: RuntimeAddr,
    ) -> (Vec<ReturnInstance>, Option<ReturnInstance>) {
        let slot = sp.offset(-(WORD as i64));
        let mut dropped = Vec::new();
        while let Some(top) = self.instances.last() {
            if top.slot < slot {
                dropped.extend(self.instances.pop());
            } else {
                break;
            }
        }
        let found = match self.instances.last() {
            Some(top) if top.slot == slot => self.instances.pop(),
            _ => None,
        };
        (dropped, found)
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
        }
    }

    #[test]
    fn recursion_returns_innermost_first() {
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        s.push(inst(0x7fd0, 0x401100));
        s.push(inst(0x7fb0, 0x401100));
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7fb8));
        assert!(dropped.is_empty());
        assert_eq!(found.unwrap().slot, RuntimeAddr(0x7fb0));
        let (_, found) = s.pop_returning(RuntimeAddr(0x7fd8));
        assert_eq!(found.unwrap().orig_ret, RuntimeAddr(0x401100));
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
        assert_eq!(found.unwrap().orig_ret, RuntimeAddr(0x401000));
        assert!(s.is_empty());
    }

    #[test]
    fn unknown_slot_finds_nothing() {
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7fe0));
        assert!(dropped.is_empty() && found.is_none());
        assert_eq!(s.len(), 1);
    }
}
