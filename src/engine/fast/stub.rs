//! The return stub: watched returns through it, a thread stepped through
//! it, the orphan trap (a slot the table had no entry for), the calls it
//! watches moved to their return sites when an unwinder starts, and the
//! table's return addresses put back on the stacks ([`restore_stub_slots`]).

use crate::addr::{RuntimeAddr, Tid};
use crate::arch::detour::{self, table, Stub, StubMove};
use crate::arch::Regs;
use crate::arch::StepMode;
use crate::engine::step::StepEnd;
use crate::engine::tracer::Tracer;
use crate::error::Result;
use crate::handler::Event;
use crate::probe::Owner;
use crate::probe::Watch;
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

/// The calls timed in the program (see `table::TIMED`) of the thread with
/// thread pointer `tp` (stopped at `sp`), as the table at `table` (in
/// `mem`) lists them, when an unwinder starts: rtrace knows nothing of
/// them but their entries. A call below `sp` (at `sp` too when
/// `inclusive`) on the same stack was unwound: its entry is freed. One
/// whose slot above still holds the stub gets its original return address
/// back (the unwinder must see real frames) and its entry freed: it will
/// return unseen. Returns the site indexes of those (a chained call's
/// too), to be counted missed.
pub(crate) fn release_timed_calls(
    mem: &crate::sys::mem::ProcMem,
    stub: u64,
    table: RuntimeAddr,
    (tp, sp): (u64, RuntimeAddr),
    inclusive: bool,
    same_stack: &mut dyn FnMut(RuntimeAddr, RuntimeAddr) -> bool,
) -> Result<Vec<u32>> {
    let entries = mem.read_vec(table, table::SIZE as usize)?;
    let mut unseen = Vec::new();
    for e in 0..table::ENTRIES {
        let field = |off| table::word(&entries, e, off).unwrap_or(0);
        let slot = RuntimeAddr(field(table::KEY));
        let timed = field(table::TIMED);
        if slot.get() == 0 || timed as u32 == 0 || field(table::TP) != tp {
            continue;
        }
        let key = table.offset((e * table::ENTRY + table::KEY) as i64);
        let same = same_stack(slot, sp);
        if same && (slot < sp || (inclusive && slot == sp)) {
            mem.write_u64(key, 0)?;
            continue;
        }
        if mem.read_u64(slot).ok() != Some(stub) {
            continue;
        }
        mem.write_u64(slot, field(table::ORIG))?;
        mem.write_u64(key, 0)?;
        unseen.push(field(table::INDEX) as u32);
        if (timed >> 32) as u32 != 0 {
            unseen.push(field(table::CHAIN_INDEX) as u32);
        }
    }
    Ok(unseen)
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
        let task = self.world.tasks.get_mut(&tid).expect("a known task");
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
        let maps = &mut space.maps;
        if space.fast.sites.iter().any(|f| f.timed.is_some()) {
            let tp = ptrace::getregs(tid)?.thread_pointer();
            let unseen =
                release_timed_calls(&space.mem, stub, table, (tp, sp), inclusive, &mut |a, b| {
                    maps.same_mapping(pid, a, b)
                })?;
            let mut missed = Vec::new();
            for i in unseen {
                if let Some(f) = space.fast.sites.get(i as usize) {
                    missed.extend(f.probes.iter().cloned());
                }
            }
            let tpid = task.pid;
            for site in missed {
                self.emit(Event::Missed {
                    pid: tpid,
                    tid,
                    probe: site.probe.clone(),
                    symbol: site.symbol.clone(),
                })?;
            }
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
        let mut missed = Vec::new();
        for inst in calls {
            free(inst.slot)?;
            if Some(inst.orig_ret.get()) == tramp {
                // A fast call made over an int3 probe's call in the same slot
                // (a tail call): the slot gets the trampoline back, and the
                // int3 call reports its return; this one's is not watched.
                space.mem.write_u64(inst.slot, inst.orig_ret.get())?;
                missed.extend(inst.probes.iter().map(|(s, _)| s.clone()));
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
        // have, the fast call is the outer one (see above).
        let mut all = converted;
        all.extend(task.returns.take_all());
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
