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
    /// For a call an int3 probe stopped at the entry of whose return the
    /// return stub records: the time stamp counter at that stop (0
    /// otherwise). The thread's records stamped before it (returns of its
    /// earlier calls, which may be read later, behind another thread's
    /// unfinished record) are older than this call, and never take it.
    pub after: u64,
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

/// How many dropped instances a thread remembers (see [`ReturnStack::recover`]).
const REMEMBERED: usize = 256;

/// The return instances of one thread, innermost last.
#[derive(Debug, Default)]
pub struct ReturnStack {
    instances: Vec<ReturnInstance>,
    /// (slot, original return address) of the instances dropped lately, the
    /// latest last.
    dropped: std::collections::VecDeque<(RuntimeAddr, RuntimeAddr)>,
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

    /// The number of calls in flight (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.instances.len()
    }

    /// True when no call is in flight (for tests).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// A copy for a forked child, whose stack is a copy of this thread's: the same
    /// slots, the same return addresses; what handlers kept stays with the parent.
    pub fn clone_without_data(&self) -> ReturnStack {
        ReturnStack {
            dropped: self.dropped.clone(),
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
                    after: i.after,
                })
                .collect(),
        }
    }

    /// Takes out the calls entered after time stamp `tsc` (see
    /// [`ReturnInstance::after`]): the innermost ones, since calls are
    /// pushed as they are entered. A record stamped `tsc` is then applied
    /// to the calls before it, and [`ReturnStack::put_back`] returns these.
    pub fn newer_than(&mut self, tsc: u64) -> Vec<ReturnInstance> {
        let keep = self
            .instances
            .iter()
            .rposition(|i| i.after <= tsc)
            .map_or(0, |i| i + 1);
        self.instances.split_off(keep)
    }

    /// Puts back the calls [`ReturnStack::newer_than`] took out.
    pub fn put_back(&mut self, newer: Vec<ReturnInstance>) {
        self.instances.extend(newer);
    }

    /// The calls in flight, writable (to change how they are watched).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ReturnInstance> {
        self.instances.iter_mut()
    }

    /// True when a call made with stack pointer `sp` may prove an instance
    /// dead: the innermost one's slot is at or below it. (In the common case,
    /// a call deeper than every call in flight, this is one comparison.)
    pub fn may_have_dead(&self, sp: RuntimeAddr) -> bool {
        self.instances.last().is_some_and(|i| i.slot <= sp)
    }

    fn remember(&mut self, dropped: &[ReturnInstance]) {
        for i in dropped {
            if self.dropped.len() == REMEMBERED {
                self.dropped.pop_front();
            }
            self.dropped.push_back((i.slot, i.orig_ret));
        }
    }

    /// The original return address of the latest instance dropped from slot
    /// `slot`: the safety net for a thread that comes back through the
    /// trampoline when rtrace judged its call abandoned (a stack rtrace could
    /// not tell apart). Its return goes unreported, but it goes to the right
    /// place.
    pub fn recover(&self, slot: RuntimeAddr) -> Option<RuntimeAddr> {
        self.dropped
            .iter()
            .rev()
            .find(|(s, _)| *s == slot)
            .map(|(_, orig)| *orig)
    }

    /// The real return address of the call whose return address slot is
    /// `slot` and holds the trampoline: the innermost instance watched there
    /// by the trampoline, else one dropped from that slot lately (see
    /// [`ReturnStack::recover`]). For walking a stack that the trampoline
    /// appears on.
    pub fn original_at(&self, slot: RuntimeAddr) -> Option<RuntimeAddr> {
        self.instances
            .iter()
            .rev()
            .find(|i| i.slot == slot && i.watch == Watch::Trampoline)
            .map(|i| i.orig_ret)
            .or_else(|| self.recover(slot))
    }

    /// The innermost instance whose slot is `slot`, if any.
    pub fn in_slot(&self, slot: RuntimeAddr) -> Option<&ReturnInstance> {
        self.instances.iter().rev().find(|i| i.slot == slot)
    }

    /// Drops the instances whose frames are gone: those whose slot is below
    /// `below` (or at it, when `inclusive`) on the same stack, as
    /// `same_stack(slot, below)` tells. A slot on another stack (a coroutine's
    /// after `swapcontext`, a signal handler's alternate stack) says nothing
    /// about this stack pointer, and its instance is kept. Returns the dropped
    /// instances, innermost first.
    pub fn drop_abandoned(
        &mut self,
        below: RuntimeAddr,
        inclusive: bool,
        same_stack: &mut dyn FnMut(RuntimeAddr, RuntimeAddr) -> bool,
    ) -> Vec<ReturnInstance> {
        let mut dropped = Vec::new();
        let mut k = self.instances.len();
        // Innermost first; the first call in flight above `below` ends the
        // search (what is under it is older, and alive if it is).
        while k > 0 {
            k -= 1;
            let slot = self.instances[k].slot;
            if slot > below || (!inclusive && slot == below) {
                break;
            }
            if same_stack(slot, below) {
                dropped.push(self.instances.remove(k));
            }
        }
        self.remember(&dropped);
        dropped
    }

    /// Drops the instance of slot `slot` that a new call has just overwritten
    /// (its return address is no longer the trampoline), with those chained to
    /// it; returns them, innermost first.
    pub fn drop_overwritten(&mut self, slot: RuntimeAddr) -> Vec<ReturnInstance> {
        let mut dropped = Vec::new();
        let mut k = self.instances.len();
        while k > 0 {
            k -= 1;
            let i = &self.instances[k];
            if i.slot == slot && i.watch == Watch::Trampoline {
                dropped.push(self.instances.remove(k));
            }
        }
        self.remember(&dropped);
        dropped
    }

    /// Takes every instance (detach, exec, thread exit).
    pub fn take_all(&mut self) -> Vec<ReturnInstance> {
        std::mem::take(&mut self.instances)
    }

    /// The slots to give their return addresses back, innermost first and each
    /// slot once: an instance left behind by a `longjmp` may share its slot
    /// with a live call made since, and only the innermost is the slot's.
    pub fn restorations(&self) -> Vec<(RuntimeAddr, RuntimeAddr)> {
        let mut out: Vec<(RuntimeAddr, RuntimeAddr)> = Vec::new();
        for i in self.instances.iter().rev() {
            if !out.iter().any(|(slot, _)| *slot == i.slot) {
                out.push((i.slot, i.orig_ret));
            }
        }
        out
    }

    /// A thread returned with stack pointer `sp` (at the trampoline, or at a return
    /// site): it returned through the slot at `sp - WORD`. Returns the abandoned
    /// instances (below that slot on the same stack) and the returning ones,
    /// innermost first: one, or several when tail calls chained them on the
    /// same slot. The returning instance need not be the innermost: calls on
    /// another stack (a coroutine switched away from) stay in flight above it.
    pub fn pop_returning(
        &mut self,
        sp: RuntimeAddr,
        same_stack: &mut dyn FnMut(RuntimeAddr, RuntimeAddr) -> bool,
    ) -> (Vec<ReturnInstance>, Vec<ReturnInstance>) {
        let mut returning = Vec::new();
        let dropped = self.pop_returning_into(sp, same_stack, &mut returning);
        (dropped, returning)
    }

    /// [`ReturnStack::pop_returning`], the returning instances appended to
    /// `returning` (a vector kept from one return to the next).
    pub fn pop_returning_into(
        &mut self,
        sp: RuntimeAddr,
        same_stack: &mut dyn FnMut(RuntimeAddr, RuntimeAddr) -> bool,
        returning: &mut Vec<ReturnInstance>,
    ) -> Vec<ReturnInstance> {
        let slot = sp.offset(-(WORD as i64));
        let dropped = self.drop_abandoned(slot, false, same_stack);
        let Some(mut k) = self.instances.iter().rposition(|i| i.slot == slot) else {
            return dropped;
        };
        loop {
            let inst = self.instances.remove(k);
            let chained = inst.chained;
            returning.push(inst);
            if !chained || k == 0 || self.instances[k - 1].slot != slot {
                break;
            }
            k -= 1;
        }
        dropped
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
            after: 0,
        }
    }

    /// A thread's return read late (stamped 150) after it entered a call
    /// in the same slot (at 200) and one deeper (at 300): the return is the
    /// older call's, and leaves the newer ones alone.
    #[test]
    fn a_return_read_late_takes_only_the_calls_entered_before_it() {
        let mut s = ReturnStack::default();
        let at = |slot, ret, after| ReturnInstance {
            after,
            ..inst(slot, ret)
        };
        s.push(at(0x7f00, 1, 100));
        s.push(at(0x7f00, 2, 200));
        s.push(at(0x7e00, 3, 300));
        let newer = s.newer_than(150);
        assert_eq!(newer.len(), 2);
        let (gone, returning) = s.pop_returning(RuntimeAddr(0x7f08), &mut |_, _| true);
        assert!(gone.is_empty());
        assert_eq!(returning.len(), 1);
        assert_eq!(returning[0].orig_ret, RuntimeAddr(1));
        s.put_back(newer);
        let left: Vec<u64> = s.iter().map(|i| i.orig_ret.get()).collect();
        assert_eq!(left, [2, 3]);
        // Calls of no int3 stop (after 0) are never newer.
        let mut s = ReturnStack::default();
        s.push(inst(0x7f00, 4));
        assert!(s.newer_than(0).is_empty());
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
        let (dropped, returning) = s.pop_returning(RuntimeAddr(0x7fd8), &mut one_stack);
        assert!(dropped.is_empty());
        assert_eq!(returning.len(), 2);
        assert!(returning[0].chained && !returning[1].chained, "leaf first");
        assert_eq!(s.len(), 1);
        // A second call through the same slot later is not part of the chain.
        s.push(inst(0x7fd0, 0x401100));
        let (_, returning) = s.pop_returning(RuntimeAddr(0x7fd8), &mut one_stack);
        assert_eq!(returning.len(), 1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn recursion_returns_innermost_first() {
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        s.push(inst(0x7fd0, 0x401100));
        s.push(inst(0x7fb0, 0x401100));
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7fb8), &mut one_stack);
        assert!(dropped.is_empty());
        assert_eq!(found[0].slot, RuntimeAddr(0x7fb0));
        let (_, found) = s.pop_returning(RuntimeAddr(0x7fd8), &mut one_stack);
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
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7ff8), &mut one_stack);
        let slots: Vec<_> = dropped.iter().map(|i| i.slot.get()).collect();
        assert_eq!(slots, vec![0x7fb0, 0x7fd0]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].orig_ret, RuntimeAddr(0x401000));
        assert!(s.is_empty());
    }

    fn one_stack(_: RuntimeAddr, _: RuntimeAddr) -> bool {
        true
    }

    /// Two stacks: the main one at 0x7f.., a coroutine's at 0x55...
    fn two_stacks(a: RuntimeAddr, b: RuntimeAddr) -> bool {
        (a.get() >> 40) == (b.get() >> 40)
    }

    #[test]
    fn a_call_on_another_stack_stays_in_flight() {
        // main: resume_co (slot 0x7f..f0) switches to the coroutine, which
        // calls yield (slot 0x55..f0) and switches back; resume_co returns.
        let mut s = ReturnStack::default();
        s.push(inst(0x7f00_0000_fff0, 0x401000));
        s.push(inst(0x5500_0000_fff0, 0x402000));
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7f00_0000_fff8), &mut two_stacks);
        assert!(dropped.is_empty(), "the coroutine's call is alive");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].orig_ret, RuntimeAddr(0x401000));
        // Back on the coroutine, yield returns.
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x5500_0000_fff8), &mut two_stacks);
        assert!(dropped.is_empty());
        assert_eq!(found[0].orig_ret, RuntimeAddr(0x402000));
        assert!(s.is_empty());
    }

    #[test]
    fn entries_drop_what_they_prove_dead() {
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        s.push(inst(0x7fd0, 0x401100));
        s.push(inst(0x7fb0, 0x401200));
        // A catch handler's call at sp 0x7fd0: the slot there is overwritten.
        let dropped = s.drop_abandoned(RuntimeAddr(0x7fd0), true, &mut one_stack);
        let slots: Vec<_> = dropped.iter().map(|i| i.slot.get()).collect();
        assert_eq!(slots, vec![0x7fb0, 0x7fd0], "innermost first");
        assert_eq!(s.len(), 1);
        // Not inclusive: the slot at the stack pointer stays.
        s.push(inst(0x7fd0, 0x401100));
        assert!(s
            .drop_abandoned(RuntimeAddr(0x7fd0), false, &mut one_stack)
            .is_empty());
        // A new call wrote its own return address over a trampoline slot.
        let mut chained = inst(0x7fd0, 0x401100);
        chained.chained = true;
        s.push(chained);
        assert_eq!(s.drop_overwritten(RuntimeAddr(0x7fd0)).len(), 2);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn restorations_are_innermost_first_one_per_slot() {
        // A call abandoned by longjmp left its instance at 0x7fd0; a live call
        // made since from elsewhere uses the same slot.
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        s.push(inst(0x7fd0, 0x401100));
        s.push(inst(0x7fd0, 0x401900));
        assert_eq!(
            s.restorations(),
            vec![
                (RuntimeAddr(0x7fd0), RuntimeAddr(0x401900)),
                (RuntimeAddr(0x7ff0), RuntimeAddr(0x401000))
            ]
        );
    }

    #[test]
    fn original_return_addresses_by_slot() {
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        s.push(inst(0x7fd0, 0x401100));
        let mut chained = inst(0x7fd0, 0x401100);
        chained.chained = true;
        s.push(chained);
        let mut at_site = inst(0x7fb0, 0x401200);
        at_site.watch = Watch::ReturnSite;
        s.push(at_site);
        assert_eq!(
            s.original_at(RuntimeAddr(0x7ff0)),
            Some(RuntimeAddr(0x401000))
        );
        assert_eq!(
            s.original_at(RuntimeAddr(0x7fd0)),
            Some(RuntimeAddr(0x401100))
        );
        // Watched at its return site, the slot holds the real address already.
        assert_eq!(s.original_at(RuntimeAddr(0x7fb0)), None);
        assert_eq!(s.original_at(RuntimeAddr(0x7f00)), None);
        // Dropped, but remembered.
        s.drop_abandoned(RuntimeAddr(0x7fe0), true, &mut one_stack);
        assert_eq!(
            s.original_at(RuntimeAddr(0x7fd0)),
            Some(RuntimeAddr(0x401100))
        );
    }

    #[test]
    fn unknown_slot_finds_nothing() {
        let mut s = ReturnStack::default();
        s.push(inst(0x7ff0, 0x401000));
        let (dropped, found) = s.pop_returning(RuntimeAddr(0x7fe0), &mut one_stack);
        assert!(dropped.is_empty() && found.is_empty());
        assert_eq!(s.len(), 1);
    }
}
