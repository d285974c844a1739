//! The return stub: watched returns through it, a thread stepped through
//! it, the orphan trap (a slot the table had no entry for), the calls it
//! watches moved to their return sites when an unwinder starts, and the
//! table's return addresses put back on the stacks ([`restore_stub_slots`]).

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::{self, table, Stub, StubMove};
use crate::arch::Regs;
use crate::arch::StepMode;
use crate::engine::step::StepEnd;
use crate::engine::tracer::Tracer;
use crate::error::Result;
use crate::handler::Event;
use crate::probe::Owner;
use crate::probe::{ReturnInstance, Watch};
use crate::sys::ptrace;

use super::clock::Drain;

/// Puts back the return addresses the detours swapped for the stub `stub`,
/// as the table at `table` (in `mem`) lists them, on the stacks of the
/// threads `threads` (thread pointer, stack pointer; all stopped): a slot
/// whose entry is a thread's, at or above its stack pointer (or on another
/// stack of it), and that still holds the stub. Returns how many.
pub(crate) fn restore_stub_slots(
    mem: &crate::sys::mem::ProcMem,
    stub: u64,
    table: RuntimeAddr,
    threads: &[(u64, RuntimeAddr)],
    same_stack: &mut dyn FnMut(RuntimeAddr, RuntimeAddr) -> bool,
) -> Result<usize> {
    let entries = mem.read_vec(table, table::SIZE as usize)?;
    let mut restored = 0;
    for e in 0..table::ENTRIES {
        let field = |off| table::word(&entries, e, off).unwrap_or(0);
        let slot = RuntimeAddr(field(table::KEY));
        if slot.get() == 0 {
            continue;
        }
        let tp = field(table::TP);
        let live = threads
            .iter()
            .any(|&(t, sp)| t == tp && (slot >= sp || !same_stack(slot, sp)));
        if live && mem.read_u64(slot).ok() == Some(stub) {
            mem.write_u64(slot, field(table::ORIG))?;
            restored += 1;
        }
    }
    Ok(restored)
}

/// A call timed in the program, as its table entry has it (see
/// [`take_timed_calls`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimedCall {
    /// Its stack slot.
    pub slot: RuntimeAddr,
    /// The return address the stub replaced.
    pub orig: RuntimeAddr,
    /// Its site's index.
    pub index: u32,
    /// The time stamp counter at its entry.
    pub entered: u64,
    /// Reached by a tail call from the call in the same slot.
    pub chained: bool,
}

/// Whose timed calls [`take_timed_calls`] takes out of the table: the
/// thread with thread pointer `tp`, stopped at `sp`, entering an unwinder.
/// Its calls whose slot holds the stub are taken; those below `sp` (at it
/// too when `inclusive`) on the same stack were unwound, and are dropped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimedOf {
    pub tp: u64,
    pub sp: RuntimeAddr,
    pub inclusive: bool,
}

/// Takes calls timed in the program (see `table::TIMED`) out of the table
/// at `table` (in `mem`), as `of` says, so that rtrace watches them as it
/// watches recorded calls: each entry taken is freed, with the entries of
/// the calls chained to it. Returns those kept, each followed by the calls
/// chained to it, in their order; outermost first.
pub(crate) fn take_timed_calls(
    mem: &crate::sys::mem::ProcMem,
    stub: u64,
    table: RuntimeAddr,
    of: TimedOf,
    same_stack: &mut dyn FnMut(RuntimeAddr, RuntimeAddr) -> bool,
) -> Result<Vec<TimedCall>> {
    let entries = mem.read_vec(table, table::SIZE as usize)?;
    let field = |e: u64, off| table::word(&entries, e, off).unwrap_or(0);
    let key_at = |e: u64| table.offset((e * table::ENTRY + table::KEY) as i64);
    let call = |e: u64, slot: u64, chained: bool| TimedCall {
        slot: RuntimeAddr(slot),
        orig: RuntimeAddr(field(e, table::ORIG)),
        index: field(e, table::INDEX) as u32,
        entered: field(e, table::ENTERED),
        chained,
    };
    let TimedOf { tp, sp, inclusive } = of;
    // The calls taken out (by slot): kept, or dropped (unwound).
    let mut taken: std::collections::BTreeMap<u64, Option<TimedCall>> = Default::default();
    for e in 0..table::ENTRIES {
        let slot = RuntimeAddr(field(e, table::KEY));
        let timed = field(e, table::TIMED) as u32 != 0;
        if slot.get() == 0 || !slot.get().is_multiple_of(8) || !timed || field(e, table::TP) != tp {
            continue;
        }
        let unwound = same_stack(slot, sp) && (slot < sp || (inclusive && slot == sp));
        if !unwound && mem.read_u64(slot).ok() != Some(stub) {
            continue;
        }
        mem.write_u64(key_at(e), 0)?;
        taken.insert(slot.get(), (!unwound).then(|| call(e, slot.get(), false)));
    }
    // The chained calls' entries (keyed by their call's slot plus 1 to
    // MAX_CHAIN) go with their call.
    let mut chained: Vec<(u64, u64, TimedCall)> = Vec::new();
    for e in 0..table::ENTRIES {
        let key = field(e, table::KEY);
        let place = key % 8;
        if key == 0 || place == 0 || place > table::MAX_CHAIN || field(e, table::TIMED) as u32 == 0
        {
            continue;
        }
        if let Some(kept) = taken.get(&(key - place)) {
            mem.write_u64(key_at(e), 0)?;
            if let Some(c) = kept {
                let mut chained_call = call(e, c.slot.get(), true);
                chained_call.orig = c.orig;
                chained.push((c.slot.get(), place, chained_call));
            }
        }
    }
    chained.sort_by_key(|&(slot, place, _)| (std::cmp::Reverse(slot), place));
    let mut out = Vec::new();
    for (slot, kept) in taken.into_iter().rev() {
        let Some(c) = kept else {
            continue;
        };
        out.push(c);
        out.extend(chained.iter().filter(|x| x.0 == slot).map(|x| x.2));
    }
    Ok(out)
}

impl Tracer {
    /// One move of stopped thread `tid` (with `regs`) through the return
    /// stub: `lea` and `pushfq` emulated (a stepped `pushfq` would push the
    /// trap flag), the restore finished by rtrace, the final `ret`
    /// emulated, the rest stepped. Some(true) once it is out, Some(false)
    /// when it cannot be brought out, None to go on.
    pub(super) fn stub_step(
        &mut self,
        tid: Tid,
        stub: &Stub,
        mut regs: Regs,
    ) -> Result<Option<bool>> {
        let key = self.world.tasks[&tid].space;
        match detour::stub_move(stub, &mut regs, &self.world.spaces[&key].mem)? {
            StubMove::Moved => {
                ptrace::setregs(tid, &regs)?;
                Ok(None)
            }
            StubMove::Out => {
                ptrace::setregs(tid, &regs)?;
                Ok(Some(true))
            }
            StubMove::Orphan => {
                ptrace::setregs(tid, &regs)?;
                Ok(Some(self.orphan_return(tid, regs)?))
            }
            StubMove::Step => match self.single_step(tid)? {
                StepEnd::Done => Ok(None),
                StepEnd::Gone => Ok(Some(false)),
                StepEnd::Faulted(signal) if self.emulate_rdtsc(tid, signal)? => Ok(None),
                StepEnd::Faulted(signal) => {
                    self.hold_signal(tid, signal)?;
                    Ok(Some(false))
                }
            },
        }
    }

    /// `tid` trapped at the return stub's orphan `int3` (`regs` just past
    /// it, rsp at the slot): the table had no entry for its slot. When a
    /// call rtrace knows of returns through that slot, the thread goes on
    /// at its return address, the return counted missed. True when the
    /// trap was that one and the thread could go on.
    pub(super) fn orphan_return(&mut self, tid: Tid, mut regs: Regs) -> Result<bool> {
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        let is_orphan = self.world.spaces.get(&key).is_some_and(|s| {
            s.fast
                .stub
                .as_ref()
                .is_some_and(|st| regs.ip() == st.stub.orphan + 1)
        });
        if !is_orphan {
            return Ok(false);
        }
        self.drain(key, Drain::Quick)?;
        let slot = RuntimeAddr(regs.sp());
        let Some(task) = self.world.tasks.get_mut(&tid) else {
            return Ok(false);
        };
        let (pid, space) = (
            task.pid,
            self.world.spaces.get_mut(&key).expect("checked above"),
        );
        let maps = &mut space.maps;
        let space_pid = space.pid;
        let orig = task
            .fast_calls
            .in_slot(slot)
            .map(|i| i.orig_ret)
            .or_else(|| task.fast_calls.recover(slot));
        let (_, returning) = task.fast_calls.pop_returning(slot.offset(8), &mut |a, b| {
            maps.same_mapping(space_pid, a, b)
        });
        let Some(orig) = orig else {
            self.emit(Event::Warning {
                probe: String::new(),
                message: format!(
                    "thread {tid} returned through the fast return stub from stack slot {slot} \
                     with no return address known for it"
                ),
            })?;
            return Ok(false);
        };
        for inst in returning {
            for (site, _) in inst.probes {
                self.emit(Event::Missed {
                    pid,
                    tid,
                    probe: site.probe.clone(),
                    symbol: site.symbol.clone(),
                })?;
            }
        }
        regs.set_ip(orig.get());
        regs.set_sp(slot.get() + 8);
        ptrace::setregs(tid, &regs)?;
        Ok(true)
    }

    /// Takes the calls timed in the program that `of` says out of the
    /// table of space `key` (see [`take_timed_calls`]) and makes them
    /// calls in flight of thread `tid`, as recorded calls are, to be
    /// watched as those are (a library handler gets their returns through
    /// `on_return`).
    pub(super) fn adopt_timed_calls(&mut self, key: Pid, tid: Tid, of: TimedOf) -> Result<()> {
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return Ok(());
        };
        let Some((stub, table)) = space.fast.stub.as_ref().map(|s| (s.stub.entry, s.table)) else {
            return Ok(());
        };
        let (pid, maps) = (space.pid, &mut space.maps);
        let timed = take_timed_calls(&space.mem, stub, table, of, &mut |a, b| {
            maps.same_mapping(pid, a, b)
        })?;
        if timed.is_empty() {
            return Ok(());
        }
        let clock = self.reader().clock();
        let (Some(task), Some(space)) =
            (self.world.tasks.get_mut(&tid), self.world.spaces.get(&key))
        else {
            return Ok(());
        };
        let mut all = task.fast_calls.take_all();
        for c in timed {
            let Some(f) = space.fast.sites.get(c.index as usize) else {
                continue;
            };
            all.push(ReturnInstance {
                slot: c.slot,
                orig_ret: c.orig,
                entered: clock.time(c.entered),
                probes: f.probes.iter().map(|s| (s.clone(), None)).collect(),
                chained: c.chained,
                watch: Watch::Trampoline,
                after: 0,
            });
        }
        // Outermost first; in one slot, the call before those chained to
        // it (a stable sort keeps their order).
        all.sort_by_key(|i| std::cmp::Reverse(i.slot));
        for inst in all {
            task.fast_calls.push(inst);
        }
        Ok(())
    }

    /// `tid` (stopped) is entering an unwinder (an exception, a
    /// `backtrace`): its calls in flight whose slot holds the stub get
    /// their real return address back and are watched at their return
    /// sites from now on, as the trampoline's are
    /// (`watch_at_return_sites`); the unwinder sees only real frames.
    /// Calls below `sp` (and at `sp` when `inclusive`: the unwinder's own
    /// call overwrote that slot) are gone. Not inclusive at the entry of a
    /// function that reads its own return address, reached by a tail call:
    /// the call whose slot it found the stub in is alive.
    pub(super) fn fast_calls_to_return_sites(
        &mut self,
        tid: Tid,
        sp: RuntimeAddr,
        inclusive: bool,
    ) -> Result<()> {
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(());
        };
        let Some((stub, table)) = self
            .world
            .spaces
            .get(&key)
            .and_then(|s| s.fast.stub.as_ref())
            .map(|s| (s.stub.entry, s.table))
        else {
            return Ok(());
        };
        self.reader().drain_through(key)?;
        let space = self.world.spaces.get_mut(&key).expect("checked above");
        let pid = space.pid;
        if space.fast.corrupt.is_some() {
            // The calls in flight were forgotten with the ring, and some
            // were never read: the table (the program's private memory,
            // not the ring) says which slots of this thread hold the stub.
            // They get their return address back, unwatched.
            let tp = ptrace::getregs(tid)?.thread_pointer();
            let maps = &mut space.maps;
            restore_stub_slots(&space.mem, stub, table, &[(tp, sp)], &mut |a, b| {
                maps.same_mapping(pid, a, b)
            })?;
            return Ok(());
        }
        if space.fast.sites.iter().any(|f| f.timed.is_some()) {
            let tp = ptrace::getregs(tid)?.thread_pointer();
            let of = TimedOf { tp, sp, inclusive };
            self.adopt_timed_calls(key, tid, of)?;
        }
        let task = self.world.tasks.get_mut(&tid).expect("a known task");
        let space = self.world.spaces.get_mut(&key).expect("checked above");
        let maps = &mut space.maps;
        let dead = task
            .fast_calls
            .drop_abandoned(sp, inclusive, &mut |a, b| maps.same_mapping(pid, a, b));
        let calls = task.fast_calls.take_all();
        if calls.is_empty() && dead.is_empty() {
            return Ok(());
        }
        // Each slot's entry is among the few after its home entry: those are
        // read, not the whole table.
        let free = |slot: RuntimeAddr| -> Result<()> {
            let home = table::home(slot.get());
            for e in (home..home + table::PROBES).map(|e| e % table::ENTRIES) {
                let key = table.offset((e * table::ENTRY + table::KEY) as i64);
                if space.mem.read_u64(key)? == slot.get() {
                    space.mem.write_u64(key, 0)?;
                    break;
                }
            }
            Ok(())
        };
        for inst in &dead {
            free(inst.slot)?;
        }
        let tramp = space.trampoline().map(RuntimeAddr::get);
        let mut converted = Vec::new();
        let mut layered: Vec<ReturnInstance> = Vec::new();
        let mut missed = Vec::new();
        for mut inst in calls {
            free(inst.slot)?;
            let head = Some(inst.orig_ret.get()) == tramp;
            if head || (inst.chained && layered.last().is_some_and(|l| l.slot == inst.slot)) {
                // A fast call made over an int3 probe's call in the same
                // slot (a tail call), and those chained to it: the slot gets
                // the trampoline back, and they are chained to the int3
                // call, returning with it through the trampoline, as an
                // int3 probe's tail call is.
                if head {
                    space.mem.write_u64(inst.slot, inst.orig_ret.get())?;
                }
                match task.returns.in_slot(inst.slot) {
                    Some(below) if below.watch == Watch::Trampoline => {
                        inst.orig_ret = below.orig_ret;
                        inst.chained = true;
                        inst.watch = Watch::Trampoline;
                        layered.push(inst);
                    }
                    _ => missed.extend(inst.probes.iter().map(|(s, _)| s.clone())),
                }
                continue;
            }
            match space.mem.read_u64(inst.slot)? {
                v if v == stub => space.mem.write_u64(inst.slot, inst.orig_ret.get())?,
                v if Some(v) == tramp => {
                    // An int3 probe's tail call over this one: its call took
                    // the stub for the return address; it is this call's,
                    // and it returns with this one.
                    for i in task.returns.iter_mut() {
                        if i.slot == inst.slot && i.orig_ret.get() == stub {
                            i.orig_ret = inst.orig_ret;
                            i.chained = true;
                        }
                    }
                }
                _ => {}
            }
            converted.push(inst);
        }
        let pid = task.pid;
        for a in converted.iter().map(|i| i.orig_ret).collect::<Vec<_>>() {
            self.clear_jumps_at(key, a)?;
        }
        let space = self.world.spaces.get_mut(&key).expect("checked above");
        let task = self.world.tasks.get_mut(&tid).expect("a known task");
        for inst in &mut converted {
            inst.watch = Watch::ReturnSite;
            space.arm(inst.orig_ret, Owner::ReturnSite, StepMode::Auto)?;
        }
        // One return stack, outermost (highest slot) first; in a slot both
        // have, the outer call is the one made first: the fast one under an
        // int3 probe's tail call, the int3 one under a fast probe's (a
        // stable sort keeps each slot's order).
        let mut all = converted;
        all.extend(task.returns.take_all());
        all.extend(layered);
        all.sort_by_key(|i| std::cmp::Reverse(i.slot));
        for inst in all {
            task.returns.push(inst);
        }
        for site in missed {
            self.emit(Event::Missed {
                pid,
                tid,
                probe: site.probe.clone(),
                symbol: site.symbol.clone(),
            })?;
        }
        Ok(())
    }
}
