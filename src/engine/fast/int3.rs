//! The returns of int3 probes' calls through the return stub: one stop per
//! call. At the entry stop rtrace does what a recording detour's hijack
//! does (`detour::hijack`), from outside: it claims the call's entry in the
//! table of return addresses, writes the original return address, the
//! thread pointer and a site index there, and puts the stub in the return
//! address slot. The call goes with the thread's fast calls in flight
//! (`Task::fast_calls`), so its return, recorded by the stub without a
//! stop, is delivered to `on_return` as a fast probe's is, under every
//! rule those keep (longjmp, tail calls, unwinders, fork, exec, detach).
//!
//! Claiming from outside is safe only while no detour of the process
//! claims entries (a detour's `lock cmpxchg` and rtrace's write through
//! `/proc/PID/mem` are not atomic together): once a fast site that watches
//! returns (or times calls) is patched there, int3 probes go back to the
//! trampoline. rtrace's own hooks never claim entries. The thread whose
//! slot it is stays stopped while rtrace writes, so no return can find the
//! entry half-written.
//!
//! Each int3 site gets a site index of its own, from the top of the ring's
//! counters down (below the stub's own index), for the stub to count the
//! returns it could not record (`ring::RET_LOST`) under.

use std::collections::HashMap;
use std::rc::Rc;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::{ring, table, ThreadPointer};
use crate::arch::Regs;
use crate::engine::task::Hijack;
use crate::engine::tracer::Tracer;
use crate::error::Result;
use crate::handler::Site;
use crate::probe::Watch;
use crate::sys::shm;

/// An int3 site whose calls return through the stub.
#[derive(Clone, Debug)]
pub(crate) struct Int3Site {
    /// Its probes that watch returns, as when it was given its index.
    pub probes: Vec<Rc<Site>>,
    /// Its lost-return counter as last seen.
    pub ret_lost: u64,
}

/// The most int3 sites one process gives indices to (the fast sites keep
/// the rest of the ring's counters).
pub(super) const MAX_INT3_SITES: usize = 4096;

/// The site index of the `i`th int3 site: the ring's counters from the top
/// down, below the stub's own index (`STUB_INDEX`, the last).
pub(super) fn int3_index(i: usize) -> u32 {
    (ring::MAX_SITES - 2) as u32 - i as u32
}

/// Which int3 site (its place in `FastState::int3_sites`) `index` is, if it
/// is one of the `count` given.
pub(super) fn int3_position(index: u32, count: usize) -> Option<usize> {
    let top = (ring::MAX_SITES - 2) as u32;
    let i = top.checked_sub(index)? as usize;
    (i < count).then_some(i)
}

/// What the handlers of an int3 hit want of its return, when it is
/// recorded by the stub.
#[derive(Clone, Copy, Debug)]
pub(in crate::engine) struct StubWant {
    /// Bytes of the returned C string to copy (0: none).
    pub string: usize,
    /// errno is copied too.
    pub errno: bool,
}

impl Tracer {
    /// Thread `tid`, stopped at the entry of int3 site `addr` (registers
    /// `regs`, the stack pointer at the return address), has its return
    /// watched by the stub when it can be: Ok(None) when it cannot (no
    /// stub can be made here, a detour claims table entries, the table has
    /// no free entry near the slot, the slot holds the trampoline), and the
    /// caller watches it the int3 way.
    pub(super) fn stub_return(
        &mut self,
        tid: Tid,
        addr: RuntimeAddr,
        regs: &Regs,
        probes: &[Rc<Site>],
        want: StubWant,
    ) -> Result<Option<Hijack>> {
        let key = self.world.tasks[&tid].space;
        if !self.stub_ready(key, tid, addr, want.string) {
            return Ok(None);
        }
        let slot = RuntimeAddr(regs.sp());
        let space = &self.world.spaces[&key];
        let Some(stub) = space.fast.stub.as_ref() else {
            return Ok(None);
        };
        let (stub_at, table_at) = (stub.stub.entry, stub.table);
        let orig = space.mem.read_u64(slot)?;
        if orig == stub_at {
            // A tail call from a call whose return the stub watches: this
            // one returns with it, through the same slot.
            return Ok(Hijack::chained_to_fast(
                &self.world.tasks[&tid].fast_calls,
                slot,
            ));
        }
        if space.trampoline().map(RuntimeAddr::get) == Some(orig) {
            // A tail call from a call the trampoline watches: chained to
            // it, the int3 way.
            return Ok(None);
        }
        let home = table::home(slot.get());
        let index_of = |e: u64| table_at.offset((e * table::ENTRY) as i64);
        let entry = match space.fast.int3_claims.pick(slot.get(), home) {
            Some(e) => e,
            None => {
                // rtrace's own claims fill the entries the stub looks at:
                // the table says which of them the stub has freed since.
                let keys = window(&space.mem, table_at, home)?;
                let claims = &mut self
                    .world
                    .spaces
                    .get_mut(&key)
                    .expect("looked up")
                    .fast
                    .int3_claims;
                claims.resync(&keys);
                match claims.pick(slot.get(), home) {
                    Some(e) => e,
                    None => return Ok(None),
                }
            }
        };
        let entry_at = index_of(entry);
        let Some(index) = self.int3_site_index(key, addr, probes) else {
            return Ok(None);
        };
        let space = &self.world.spaces[&key];
        let room = space.fast.ring.as_ref().map_or(0, |r| {
            r.layout.slot_size.saturating_sub(ring::RET_STRING + 8)
        });
        // A returned string longer than the ring's records hold (the ring
        // was made for a shorter one): the trampoline reads it whole.
        if want.string as u64 > room {
            return Ok(None);
        }
        let string = want.string as u32;
        let errno = match want.errno {
            true => errno_tpoff(self.world.spaces.get_mut(&key).expect("looked up")),
            false => 0,
        };
        let space = &self.world.spaces[&key];
        let tp = regs.thread_pointer();
        let mut bytes = [0u8; table::ENTRY as usize];
        let mut put = |off: u64, v: &[u8]| {
            bytes[off as usize..off as usize + v.len()].copy_from_slice(v);
        };
        put(table::KEY, &slot.get().to_le_bytes());
        put(table::ORIG, &orig.to_le_bytes());
        put(table::TP, &tp.to_le_bytes());
        put(table::INDEX, &index.to_le_bytes());
        put(table::RET_STRING, &string.to_le_bytes());
        put(table::ERRNO, &errno.to_le_bytes());
        // The entry, then the slot (the key first: nothing reads the entry
        // before the slot holds the stub).
        space
            .mem
            .write_two((entry_at, &bytes), (slot, &stub_at.to_le_bytes()))?;
        let known = space.fast.threads.get(&tp) == Some(&tid);
        let space = self.world.spaces.get_mut(&key).expect("looked up");
        space.fast.int3_claims.claim(entry, slot.get(), shm::tsc());
        if !known {
            self.note_thread(tid, tp)?;
        }
        Ok(Some(Hijack {
            slot,
            orig: RuntimeAddr(orig),
            chained: false,
            watch: Watch::Trampoline,
            by_stub: true,
            entry: Some(entry_at),
        }))
    }

    /// Thread `tid` (stopped at the entry of int3 site `addr`, registers
    /// `regs`) made a call chained to the one whose return the stub records
    /// through `slot` (a tail call from it): what the handlers of `probes`
    /// take of its return from a record (a buffer the call fills, a longer
    /// returned string: [`Handler::fast`](crate::handler::Handler::fast)'s
    /// capture) goes into that call's table entry, as a fast tail call's
    /// detour puts it there, for the stub to copy. Nothing when that call
    /// is timed (its entry holds its entry time) or the entry is not found.
    /// The entry's call is the thread's own, so nothing else writes it.
    pub(super) fn chained_wants(
        &mut self,
        tid: Tid,
        addr: RuntimeAddr,
        regs: &Regs,
        probes: &[Rc<Site>],
    ) -> Result<()> {
        let key = self.world.tasks[&tid].space;
        let mut buffer = None;
        let mut string = 0;
        for site in probes
            .iter()
            .filter(|p| p.kind == crate::handler::ProbeKind::Function { returns: true })
        {
            let module = self.world.spaces[&key].modules.module_at(addr);
            let Some(probe) = self
                .consumers
                .probes
                .get_mut(site.id.0)
                .and_then(Option::as_mut)
            else {
                continue;
            };
            // (A handler that panics here takes nothing fast.)
            let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                probe.handler.fast(site, module)
            }));
            if let Ok(crate::handler::Fast::Yes(c)) = fast {
                buffer = buffer.or(c.ret_buffer);
                string = string.max(c.ret_string);
            }
        }
        if buffer.is_none() && string == 0 {
            return Ok(());
        }
        let space = &self.world.spaces[&key];
        let (Some(stub), Some(ring)) = (space.fast.stub.as_ref(), space.fast.ring.as_ref()) else {
            return Ok(());
        };
        let room = ring.layout.slot_size.saturating_sub(ring::RET_STRING + 8);
        let table_at = stub.table;
        let keys = window(&space.mem, table_at, table::home(slot_of(regs).get()))?;
        let Some(&(e, _)) = keys.iter().find(|&&(_, k)| k == slot_of(regs).get()) else {
            return Ok(());
        };
        let entry_at = table_at.offset((e * table::ENTRY) as i64);
        let entry = space.mem.read_vec(entry_at, table::ENTRY as usize)?;
        let word32 = |off: u64| {
            u32::from_le_bytes(entry[off as usize..off as usize + 4].try_into().expect("4"))
        };
        if word32(table::TIMED) != 0 {
            return Ok(());
        }
        let limit = |max: usize| u32::try_from((max as u64).min(room)).unwrap_or(0);
        match buffer {
            Some((reg, max)) => {
                let pointer = regs.gpr(reg).to_le_bytes();
                let limit = (limit(max) | table::BUFFER).to_le_bytes();
                space.mem.write_two(
                    (entry_at.offset(table::ENTERED as i64), &pointer),
                    (entry_at.offset(table::RET_STRING as i64), &limit),
                )?;
            }
            None => {
                let had = word32(table::RET_STRING);
                if had & table::BUFFER == 0 && had < limit(string) {
                    space.mem.write(
                        entry_at.offset(table::RET_STRING as i64),
                        &limit(string).to_le_bytes(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Undoes [`Tracer::stub_return`] for a hit that did not complete: the
    /// slot gets its return address back, the entry is freed.
    pub(super) fn undo_stub_return(&mut self, key: Pid, h: &Hijack) {
        let (Some(space), Some(entry)) = (self.world.spaces.get_mut(&key), h.entry) else {
            return;
        };
        if let Some(stub) = space.fast.stub_entry() {
            if space.mem.read_u64(h.slot).ok() == Some(stub) {
                let _ = space.mem.write_u64(h.slot, h.orig.get());
            }
        }
        let _ = space.mem.write_u64(entry, 0);
        space.fast.int3_claims.returned(h.slot.get(), u64::MAX);
    }

    /// True when space `key` has a return stub int3 probes may use, made
    /// now if need be (by `tid`, stopped at `near`; `string`: the returned
    /// string its first user copies, for the ring's slot size).
    fn stub_ready(&mut self, key: Pid, tid: Tid, near: RuntimeAddr, string: usize) -> bool {
        let Some(space) = self.world.spaces.get(&key) else {
            return false;
        };
        let fast = &space.fast;
        if fast.detours_claim
            || fast.corrupt.is_some()
            || !fast.suspended_by.is_empty()
            || fast.ring_wanted.is_some()
            || space.unknown_unwinder
        {
            return false;
        }
        if space.fast.stub.is_some() {
            return true;
        }
        if space.fast.stub_failed.is_some()
            || space.fast.broken.is_some()
            || space.scratch.is_none()
        {
            return false;
        }
        if space.fast.ring.is_none() {
            let ret = (ring::RET_STRING + 8 + string as u64).div_ceil(64) * 64;
            // (With `--fast` the ring is the fast probes', made full size.)
            let small = !self.opts.fast;
            if let Err(why) = self.make_ring(key, tid, ret.max(ring::MIN_SLOT), None, small) {
                if let Some(space) = self.world.spaces.get_mut(&key) {
                    space.fast.broken = Some(why);
                }
                return false;
            }
        }
        let tp = match shm::has_fsgsbase() {
            true => ThreadPointer::Rdfsbase,
            false => ThreadPointer::FsSelf,
        };
        if let Err(why) = self.make_stub(key, tid, near, tp) {
            if let Some(space) = self.world.spaces.get_mut(&key) {
                space.fast.stub_failed = Some(why);
            }
            return false;
        }
        true
    }

    /// The site index of int3 site `addr` of space `key` (given one the
    /// first time), None when the ring's counters have no more to give.
    fn int3_site_index(&mut self, key: Pid, addr: RuntimeAddr, probes: &[Rc<Site>]) -> Option<u32> {
        let fast = &mut self.world.spaces.get_mut(&key)?.fast;
        if let Some(&i) = fast.int3_index.get(&addr) {
            return Some(int3_index(i));
        }
        let i = fast.int3_sites.len();
        if i >= MAX_INT3_SITES || int3_index(i) as usize <= fast.sites.len() {
            return None;
        }
        fast.int3_sites.push(Int3Site {
            probes: probes.to_vec(),
            ret_lost: 0,
        });
        fast.int3_index.insert(addr, i);
        Some(int3_index(i))
    }
}

/// Where errno is in space `space`'s threads, as an offset from the thread
/// pointer (libc's `R_X86_64_TPOFF64` slot for it); 0 (not copied) without
/// libc. Looked up once libc is loaded, and kept. (For the return stub of
/// int3 probes' calls, and the detours of fast sites.)
pub(super) fn errno_tpoff(space: &mut crate::engine::space::Space) -> u64 {
    if let Some(tpoff) = space.fast.errno_tpoff {
        return tpoff;
    }
    let Some(libc) = space.modules.modules().iter().find(|m| m.matches("libc")) else {
        return 0;
    };
    let tpoff = libc
        .elf
        .tls_offset_slot("errno")
        .and_then(|slot| space.mem.read_u64(libc.to_runtime(slot)).ok())
        .unwrap_or(0);
    space.fast.errno_tpoff = Some(tpoff);
    tpoff
}

/// The slot of the return address of a call stopped at its entry.
fn slot_of(regs: &Regs) -> RuntimeAddr {
    RuntimeAddr(regs.sp())
}

/// The keys of the [`table::PROBES`] entries the stub looks at from
/// `home`, in the table at `table_at`: (entry index, key).
fn window(
    mem: &crate::sys::mem::ProcMem,
    table_at: RuntimeAddr,
    home: u64,
) -> Result<Vec<(u64, u64)>> {
    // In at most two runs: the table wraps.
    let first = (table::ENTRIES - home).min(table::PROBES);
    let mut keys = Vec::with_capacity(table::PROBES as usize);
    for (start, count) in [(home, first), (0, table::PROBES - first)] {
        if count == 0 {
            continue;
        }
        let run = mem.read_vec(
            table_at.offset((start * table::ENTRY) as i64),
            (count * table::ENTRY) as usize,
        )?;
        for e in 0..count {
            let key = table::word(&run, e, table::KEY).unwrap_or(u64::MAX);
            keys.push((start + e, key));
        }
    }
    Ok(keys)
}

/// The table entries rtrace claimed for int3 probes' calls, as it knows
/// them: it claims them itself, and learns that the stub freed one from
/// the return's record. A record may be read after the thread's next entry
/// stop (behind another thread's unfinished record), when that entry has
/// claimed the slot's entry again: so each claim keeps the time stamp
/// counter of its entry stop, and only a record stamped after it frees it.
/// Entries freed otherwise (a return the ring had no room for, an
/// unwinder's calls moved to their return sites) stay claimed here until a
/// full window makes rtrace read the table ([`Claims::resync`]). While
/// rtrace claims entries no detour claims any (see the module's docs), so
/// nothing else takes a free one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Claims {
    /// Entry index → the slot it holds.
    by_entry: HashMap<u64, u64>,
    /// Slot → its entry, and the time stamp counter of the claim.
    by_slot: HashMap<u64, (u64, u64)>,
}

impl Claims {
    /// The entry for the call whose return address slot is `slot` (its
    /// entries looked at from `home`): the one holding the slot already
    /// (left by a call that never returned, or by one whose return is not
    /// read yet), else the first rtrace has not claimed.
    pub(super) fn pick(&self, slot: u64, home: u64) -> Option<u64> {
        if let Some(&(e, _)) = self.by_slot.get(&slot) {
            return Some(e);
        }
        (0..table::PROBES)
            .map(|i| (home + i) & (table::ENTRIES - 1))
            .find(|e| !self.by_entry.contains_key(e))
    }

    /// Entry `e` now holds `slot`, claimed at time stamp `tsc`.
    pub(super) fn claim(&mut self, e: u64, slot: u64, tsc: u64) {
        if let Some(old) = self.by_entry.insert(e, slot) {
            self.by_slot.remove(&old);
        }
        if let Some((old, _)) = self.by_slot.insert(slot, (e, tsc)) {
            if old != e {
                self.by_entry.remove(&old);
            }
        }
    }

    /// A call whose slot is `slot` returned, by a record stamped `tsc` (or
    /// was taken back: `u64::MAX`): the slot's entry is free, unless it was
    /// claimed again after that.
    pub(super) fn returned(&mut self, slot: u64, tsc: u64) {
        // (No int3 call in flight, the common case: no hashing.)
        if self.by_slot.is_empty() {
            return;
        }
        if let Some(&(e, claimed)) = self.by_slot.get(&slot) {
            if claimed < tsc {
                self.by_slot.remove(&slot);
                self.by_entry.remove(&e);
            }
        }
    }

    /// The table's own `keys` (entry, key) of a window: an entry free
    /// there is free.
    pub(super) fn resync(&mut self, keys: &[(u64, u64)]) {
        for &(e, key) in keys {
            if key == 0 {
                if let Some(slot) = self.by_entry.remove(&e) {
                    self.by_slot.remove(&slot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_take_over_a_slot_s_entry_and_skip_claimed_ones() {
        let mut c = Claims::default();
        let home = table::ENTRIES - 1;
        assert_eq!(c.pick(0x1000, home), Some(home));
        c.claim(home, 0x1000, 10);
        // The same slot (a call left by longjmp): its entry again.
        assert_eq!(c.pick(0x1000, home), Some(home));
        // Another slot with the same home: the next entry, wrapping.
        assert_eq!(c.pick(0x2000, home), Some(0));
        c.claim(0, 0x2000, 20);
        c.returned(0x1000, 30);
        assert_eq!(c.pick(0x3000, home), Some(home));
        // A full window: nothing, until the table says what is free.
        for i in 0..table::PROBES {
            c.claim((home + i) & (table::ENTRIES - 1), 0x10_000 + 8 * i, 40);
        }
        assert_eq!(c.pick(0x4000, home), None);
        c.resync(&[(3, 0), (4, 0x10_000 + 8 * 5)]);
        assert_eq!(c.pick(0x4000, home), Some(3));
        // An entry given to another slot is that slot's only.
        c.claim(3, 0x4000, 50);
        c.claim(3, 0x5000, 60);
        assert_eq!(c.pick(0x4000, home), None);
        assert_eq!(c.pick(0x5000, home), Some(3));
    }

    /// A return read after the slot's entry was claimed again (its record
    /// stamped before the new claim) frees nothing: the entry is the new
    /// call's.
    #[test]
    fn a_return_read_late_does_not_free_the_entry_claimed_since() {
        let mut c = Claims::default();
        c.claim(7, 0x1000, 100);
        // Returned at 150; the thread entered again at 200, same slot.
        c.claim(7, 0x1000, 200);
        c.returned(0x1000, 150);
        assert_eq!(c.pick(0x2000, 7), Some(8), "entry 7 is still claimed");
        c.returned(0x1000, 250);
        assert_eq!(c.pick(0x2000, 7), Some(7));
    }
}
