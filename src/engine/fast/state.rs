//! Fast probes' state in one address space ([`FastState`], kept in the
//! `Space` with everything else written into the tracee): the ring as
//! rtrace reads it, the detour areas, the fast sites (index `i` of
//! [`FastState::sites`] is a record's site id, never reused), the return
//! stub and its table, the threads known by their thread pointer, and why
//! sites were refused.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Instant;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::{ring, table, CaptureField, Detour, RingLayout, Stub};
use crate::handler::Site;
use crate::sys::shm::SharedMap;

use super::refusal::Refusal;

/// The size of one detour area.
pub(crate) const AREA_SIZE: u64 = 256 << 10;

/// The ring of one address space, as rtrace reads it.
#[derive(Debug)]
pub(crate) struct Ring {
    /// rtrace's own mapping of the memfd (shared with its watchman).
    pub map: std::sync::Arc<SharedMap>,
    /// The thread that keeps rtrace's side of the hooks' protocol (see
    /// `hooks`); it stops when the ring goes (dropped after `map`, whose
    /// mapping it shares).
    pub _watchman: Option<super::watchman::Watchman>,
    /// Where the tracee has it, and its shape.
    pub layout: RingLayout,
    /// The records handed to the handlers, in all: the ring's position up
    /// to which they are.
    pub consumed: u64,
    /// The ring as the copier shares it (its dequeue position, the batches
    /// taken out and not yet handed over).
    pub copying: std::sync::Arc<super::copier::Copying>,
    /// The total lost counter as last seen.
    pub lost_seen: u64,
    /// When `lost_seen` was read (how many records could have been lost
    /// since is bounded by the time).
    pub lost_at: Instant,
    /// When the hit counters were last read (how far they can have moved
    /// since is bounded by the time).
    pub counted_at: Instant,
}

/// A detour area.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Area {
    pub base: RuntimeAddr,
    pub used: u64,
}

/// Pages mapped where instruction puns' jumps lead (see
/// `detour::plan_pun`): each holds the `jmp rel32`s to their detours, at
/// the addresses the puns chose, and evicted instructions' trampolines
/// (`detour::Evict`), at the addresses chosen for them: `used`, as
/// (address, length).
#[derive(Clone, Debug)]
pub(crate) struct PunPage {
    pub base: RuntimeAddr,
    pub size: u64,
    pub used: Vec<(u64, u64)>,
}

impl PunPage {
    /// True when the `len` bytes at `at` are in the page and free.
    pub(super) fn free(&self, at: u64, len: u64) -> bool {
        at >= self.base.get()
            && at + len <= self.base.get() + self.size
            && self.used.iter().all(|&(u, n)| at + len <= u || u + n <= at)
    }
}

/// A signal's report waiting for the records made before it (see
/// `FastState::signals`).
#[derive(Debug)]
pub(crate) struct PendingSignal {
    /// The ring's enqueue position when it was delivered.
    pub upto: u64,
    /// Its event, and when it was delivered.
    pub event: crate::handler::Event,
    pub time: std::time::Duration,
}

/// A thread that died with records possibly unread (see
/// [`FastState::departed`]).
#[derive(Debug)]
pub(crate) struct Departed {
    /// Its process.
    pub pid: Pid,
    /// Its calls in flight.
    pub calls: crate::probe::ReturnStack,
    /// The ring's enqueue position when it died: every record of its is
    /// below.
    pub upto: u64,
}

/// A site that was patched with a jump (or still is: `live`).
#[derive(Clone, Debug)]
pub(crate) struct FastSite {
    pub addr: RuntimeAddr,
    /// Bytes the jump replaced.
    pub len: usize,
    /// Where its detour is, and what it is.
    pub at: RuntimeAddr,
    pub detour: Detour,
    /// The registers its entry records carry (the stack pointer added).
    pub regs: crate::arch::RegSet,
    pub captures: Vec<CaptureField>,
    /// The probes it records for.
    pub probes: Vec<Rc<Site>>,
    /// Its lost counter as last seen.
    pub lost: u64,
    /// Its lost-return counter as last seen.
    pub ret_lost: u64,
    /// Its detour counts its hits in the ring's header, records nothing.
    pub count_only: bool,
    /// Its hit counters' sum as last seen.
    pub counted: u64,
    /// Its calls are timed in the program, in this row of the ring's
    /// `TIMED` blocks: its detour and the stub record nothing.
    pub timed: Option<u32>,
    /// Its row's totals as last seen.
    pub timed_seen: Option<Box<super::drain::RowTotals>>,
    /// Still patched.
    pub live: bool,
    /// One of rtrace's own hooks (see `hooks`), not a user probe's site.
    pub hook: Option<crate::arch::hook::HookKind>,
    /// The jumps outside the site that lead to its detour (address,
    /// length): a hop's fill, a pun's, a far detour's indirect jump.
    pub outside: Vec<(RuntimeAddr, u64)>,
    /// The trampoline of the instructions its pun evicted: a thread there
    /// runs them, and is stepped out at a detach. It stays when the site
    /// goes back to int3 (a thread in it goes on into the original code).
    pub trampoline: Option<Trampoline>,
}

/// Where the instructions a pun evicted run (see [`FastSite::trampoline`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trampoline {
    pub at: RuntimeAddr,
    /// The most bytes it takes.
    pub room: u64,
    /// The first evicted instruction's address in the program's code.
    pub successor: RuntimeAddr,
}

impl FastSite {
    /// True when `ip` is in its detour, or at one of the jumps that lead
    /// there (a thread at one has done nothing yet: it is stepped to the
    /// detour's first instruction, and brought out from there).
    pub(super) fn contains_ip(&self, ip: u64) -> bool {
        let outside = self
            .outside
            .iter()
            .copied()
            .chain(self.trampoline.map(|t| (t.at, t.room)))
            .any(|(a, len)| (a.get()..a.get() + len).contains(&ip));
        outside || (self.at.get()..self.at.get() + self.detour.code.len() as u64).contains(&ip)
    }

    /// The program's address of the instruction whose relocated copy
    /// starts at `ip`, when a thread there stands exactly as it would at
    /// that address (the registers the program's, nothing of the
    /// instruction done): the site for the copy of the first displaced
    /// instruction, the successor for the start of the trampoline. A fault
    /// there is the program's instruction's, and is delivered at the
    /// program's address: its handler sees the instruction it knows, and
    /// returns to the program's code, not into rtrace's (which a detach
    /// unmaps). Returning there runs the probe again, as a breakpoint
    /// would be hit again.
    pub(super) fn program_address(&self, ip: u64) -> Option<RuntimeAddr> {
        if ip == self.detour.displaced {
            return Some(self.addr);
        }
        self.trampoline
            .filter(|t| t.at.get() == ip)
            .map(|t| t.successor)
    }
}

/// The return stub of an address space and the table it reads.
#[derive(Clone, Debug)]
pub(crate) struct ReturnStub {
    pub stub: Stub,
    /// The table (a private mapping of [`table::SIZE`] bytes).
    pub table: RuntimeAddr,
}

impl ReturnStub {
    pub(super) fn contains_ip(&self, ip: u64) -> bool {
        (self.stub.entry..self.stub.entry + self.stub.code.len() as u64).contains(&ip)
    }
}

/// The site index of the return stub's `KIND_NONE` records: the last one
/// of the ring (no site has it).
pub(super) const STUB_INDEX: u32 = (ring::MAX_SITES - 1) as u32;

/// Fast probes in one address space.
#[derive(Debug, Default)]
pub(crate) struct FastState {
    pub(super) ring: Option<Ring>,
    /// A forked child's ring, to be made (at its parent's address, with its
    /// parent's layout) before the child runs: until then it shares its
    /// parent's.
    pub(super) ring_wanted: Option<RingLayout>,
    /// Why no ring could be made here (every site stays int3).
    pub(super) broken: Option<String>,
    pub(super) areas: Vec<Area>,
    pub(super) puns: Vec<PunPage>,
    /// The bytes the sites planned in one batch will write, until the
    /// batch is written: each site's replaced bytes, and its hop's fill. No
    /// fill is chosen there (a far detour's, chosen as its site is
    /// written, included), and no jump runs over a fill planned.
    pub(super) planned: Vec<std::ops::Range<u64>>,
    /// Sites judged fast that stay int3 until their first hit, patched
    /// from that stop (see `Tracer::patch_at_hit`).
    pub(super) first_hit: HashSet<RuntimeAddr>,
    pub(super) sites: Vec<FastSite>,
    /// Why a site address cannot be fast (judged once per set of owners).
    pub(super) refused: HashMap<RuntimeAddr, Refusal>,
    /// rtrace's own sites whose bytes a hook's jump cannot replace.
    pub(super) hooks_refused: HashSet<RuntimeAddr>,
    /// Thread pointer (`fs_base`) → thread.
    pub(super) threads: HashMap<u64, Tid>,
    /// Thread pointers lent to a vfork child while its parent waits in the
    /// kernel (the child runs on its parent's TLS): the child, and whether
    /// it is silent.
    pub(super) lent: HashMap<u64, (Tid, bool)>,
    /// Thread pointers no thread had at a refresh.
    pub(super) unknown: HashSet<u64>,
    /// Threads that died while records of theirs may still wait in the ring
    /// behind a slot another thread has claimed and not yet published: their
    /// calls in flight, kept (with the enqueue position at their death)
    /// until the ring has been read that far, so that those records still
    /// find them.
    pub(super) departed: HashMap<Tid, Departed>,
    /// Signals delivered to the program's threads, to be reported once the
    /// ring has been read up to the enqueue position at their delivery
    /// (the records made before them), in delivery order: the thread goes
    /// on at once, its signal line after the calls it made before it.
    pub(super) signals: std::collections::VecDeque<PendingSignal>,
    /// Sites may be waiting to be patched.
    pub(super) dirty: bool,
    /// The return stub, once a fast site watches returns (or why it could
    /// not be made).
    pub(super) stub: Option<ReturnStub>,
    pub(super) stub_failed: Option<String>,
    /// Tasks that share this memory and a thread pointer with another
    /// (CLONE_VM without TLS of their own): while any lives, nothing here is
    /// fast.
    pub(super) suspended_by: HashSet<Tid>,
    /// Why the ring is no longer read: the program wrote over it (see the
    /// module's docs). Its sites go back to int3.
    pub(super) corrupt: Option<String>,
    /// A detour that claims table entries (a fast site watching returns,
    /// or timing calls) was patched here: int3 probes' returns no longer
    /// go through the stub (see `int3`).
    pub(super) detours_claim: bool,
    /// The int3 sites whose calls returned through the stub: index `i` is
    /// site index `int3::int3_index(i)` (never reused).
    pub(super) int3_sites: Vec<super::int3::Int3Site>,
    /// Their places in `int3_sites`, by address.
    pub(super) int3_index: HashMap<RuntimeAddr, usize>,
    /// Where errno is, from the thread pointer, once looked up with libc
    /// loaded (0: nowhere rtrace knows).
    pub(super) errno_tpoff: Option<u64>,
    /// The table entries rtrace claimed for int3 probes' calls.
    pub(super) int3_claims: super::int3::Claims,
}

impl FastState {
    /// The live fast sites whose replaced bytes contain `addr`.
    pub(super) fn covering(&self, addr: RuntimeAddr) -> Vec<RuntimeAddr> {
        self.sites
            .iter()
            .filter(|s| s.live && (s.addr.get()..s.addr.get() + s.len as u64).contains(&addr.get()))
            .map(|s| s.addr)
            .collect()
    }

    /// True when `ip` is in fast code: a detour or the return stub.
    pub(super) fn in_fast_code(&self, ip: u64) -> bool {
        self.detour_at(ip).is_some() || self.stub.as_ref().is_some_and(|s| s.contains_ip(ip))
    }

    /// The fast site (live or not) whose detour holds `ip`.
    pub(super) fn detour_at(&self, ip: u64) -> Option<&FastSite> {
        self.sites.iter().find(|s| s.contains_ip(ip))
    }

    /// The fix-up of a capture load at `ip`.
    pub(super) fn fixup(&self, ip: u64) -> Option<u64> {
        if let Some(stub) = self.stub.as_ref().filter(|s| s.contains_ip(ip)) {
            return stub
                .stub
                .faults
                .iter()
                .find(|(load, _)| *load == ip)
                .map(|(_, fix)| *fix);
        }
        let site = self.detour_at(ip)?;
        site.detour
            .faults
            .iter()
            .find(|(load, _)| *load == ip)
            .map(|(_, fix)| *fix)
    }

    /// True once anything of ours is in the tracee.
    pub(super) fn active(&self) -> bool {
        !self.sites.is_empty() || self.ring.is_some() || self.ring_wanted.is_some()
    }

    /// Everything mapped into the tracee for fast probes: (address, length).
    pub(super) fn mappings(&self) -> Vec<(RuntimeAddr, u64)> {
        let mut v: Vec<(RuntimeAddr, u64)> =
            self.areas.iter().map(|a| (a.base, AREA_SIZE)).collect();
        v.extend(self.puns.iter().map(|p| (p.base, p.size)));
        let layout = self.ring.as_ref().map(|r| r.layout).or(self.ring_wanted);
        if let Some(l) = layout {
            v.push((RuntimeAddr(l.base), l.size()));
        }
        if let Some(stub) = &self.stub {
            v.push((stub.table, table::SIZE));
        }
        v
    }

    /// The state a forked child starts with: the same patches and areas
    /// (copied with its memory), and a ring of its own to be made.
    pub(in crate::engine) fn for_child(&self) -> FastState {
        FastState {
            ring: None,
            ring_wanted: self.ring.as_ref().map(|r| r.layout),
            broken: self.broken.clone(),
            areas: self.areas.clone(),
            puns: self.puns.clone(),
            planned: Vec::new(),
            first_hit: self.first_hit.clone(),
            // Its ring's counters start from zero.
            sites: self
                .sites
                .iter()
                .map(|f| FastSite {
                    lost: 0,
                    ret_lost: 0,
                    counted: 0,
                    timed_seen: None,
                    ..f.clone()
                })
                .collect(),
            refused: self.refused.clone(),
            hooks_refused: self.hooks_refused.clone(),
            threads: HashMap::new(),
            lent: HashMap::new(),
            unknown: HashSet::new(),
            departed: HashMap::new(),
            signals: Default::default(),
            dirty: false,
            // The child's table is a copy of its parent's (a private
            // mapping), matching its copy of the stack.
            stub: self.stub.clone(),
            stub_failed: self.stub_failed.clone(),
            suspended_by: HashSet::new(),
            // A ring of its own, new.
            corrupt: None,
            detours_claim: self.detours_claim,
            int3_sites: self
                .int3_sites
                .iter()
                .map(|s| super::int3::Int3Site {
                    ret_lost: 0,
                    ..s.clone()
                })
                .collect(),
            int3_index: self.int3_index.clone(),
            errno_tpoff: self.errno_tpoff,
            // Its table is a copy of this one's.
            int3_claims: self.int3_claims.clone(),
        }
    }

    /// The thread whose thread pointer is `tp`, if known.
    pub(super) fn thread_of(&self, tp: u64) -> Option<Tid> {
        self.thread(tp).map(|(t, _)| t)
    }

    pub(super) fn thread(&self, tp: u64) -> Option<(Tid, bool)> {
        self.lent
            .get(&tp)
            .copied()
            .or_else(|| self.threads.get(&tp).map(|&t| (t, false)))
    }

    /// Task `tid` is gone from this space (it died or exec'd): if it had
    /// suspended the fast probes there and was the last to, they may come
    /// back.
    pub(super) fn end_suspension(&mut self, tid: Tid) {
        if !self.suspended_by.remove(&tid) || !self.suspended_by.is_empty() {
            return;
        }
        self.refused.retain(|_, why| *why != Refusal::Suspended);
        self.dirty = true;
    }

    // What the address space (`engine::space`), a fork and a detach tell
    // this state, or ask of it: the per-space side of the hooks, each
    // given this state alone.

    /// An int3 is armed at `addr` (`user`: for a user probe, whose site is
    /// judged afresh): sites wait to be judged again.
    pub(in crate::engine) fn on_arm(&mut self, addr: RuntimeAddr, user: bool) {
        if user {
            self.refused.remove(&addr);
            self.first_hit.remove(&addr);
        }
        self.dirty = true;
    }

    /// The code at `addr` was unloaded: a site there is gone, and so are
    /// the jumps outside it that led to its detour (a hop's fill, a far
    /// jump: in the module's padding, unmapped with it). Another library
    /// may be mapped there next, whose code is not ours: a thread found
    /// there is not to be stepped out as from a detour (one blocked in a
    /// system call would be stepped into it again, and the detach wait
    /// for it).
    pub(in crate::engine) fn on_unload(&mut self, addr: RuntimeAddr) {
        for f in self.sites.iter_mut().filter(|f| f.addr == addr) {
            f.live = false;
            f.outside.clear();
        }
        self.refused.remove(&addr);
        self.first_hit.remove(&addr);
    }

    /// A forked child's memory: what of the copied state is not `mapped`
    /// there is forgotten.
    pub(in crate::engine) fn keep_mapped(&mut self, mapped: impl Fn(RuntimeAddr) -> bool) {
        self.areas.retain(|a| mapped(a.base));
        self.puns.retain(|p| mapped(p.base));
        if self.stub.as_ref().is_some_and(|s| !mapped(s.table)) {
            self.stub = None;
        }
        if self
            .ring_wanted
            .is_some_and(|l| !mapped(RuntimeAddr(l.base)))
        {
            self.ring_wanted = None;
        }
    }

    /// Site `index`'s jump at `addr` came after a fork and is not in the
    /// child: the site is an int3 there, never patched again.
    pub(in crate::engine) fn on_jump_missing(&mut self, index: u32, addr: RuntimeAddr) {
        if let Some(f) = self.sites.get_mut(index as usize) {
            f.live = false;
        }
        self.refused.insert(addr, Refusal::PatchedAfterFork);
    }

    /// The return stub's entry, where a slot may hold it instead of a
    /// return address.
    pub(in crate::engine) fn stub_entry(&self) -> Option<u64> {
        self.stub.as_ref().map(|s| s.stub.entry)
    }

    /// What a slot of the program's stack holds under the return stub:
    /// `held` itself unless it is the stub, else the return address the
    /// table keeps for the slot (`held` when it keeps none). An int3
    /// return probe's trampoline may be under the stub (a fast call
    /// reached by a tail call from an int3-watched one).
    pub(in crate::engine) fn under_stub(
        &self,
        mem: &crate::sys::mem::ProcMem,
        slot: RuntimeAddr,
        held: u64,
    ) -> crate::error::Result<u64> {
        let Some(stub) = self.stub.as_ref().filter(|s| s.stub.entry == held) else {
            return Ok(held);
        };
        let home = table::home(slot.get());
        for e in (home..home + table::PROBES).map(|e| e % table::ENTRIES) {
            let entry = stub.table.offset((e * table::ENTRY) as i64);
            if mem.read_u64(entry.offset(table::KEY as i64))? == slot.get() {
                return mem.read_u64(entry.offset(table::ORIG as i64));
            }
        }
        Ok(held)
    }

    /// What an unfollowed child must undo: the stub and its table (the
    /// slots holding the stub get their return addresses back,
    /// [`restore_stub_slots`](super::restore_stub_slots)), and the mappings.
    pub(in crate::engine) fn scrub(&self) -> FastScrub {
        FastScrub {
            returns: self.stub.as_ref().map(|s| (s.stub.entry, s.table)),
            unmap: self.mappings(),
        }
    }

    /// A thread is still in the detours, the trampolines or the pun pages,
    /// or a signal handler will return there: the detach leaves them
    /// mapped (the ring and the stub's table go).
    pub(super) fn keep_code_mapped(&mut self) {
        self.areas.clear();
        self.puns.clear();
    }

    /// The detach: the mappings to unmap, forgotten here (the jumps went
    /// with the breakpoints).
    pub(in crate::engine) fn release(&mut self) -> Vec<(RuntimeAddr, u64)> {
        let fast = self.mappings();
        self.ring = None;
        self.ring_wanted = None;
        self.areas.clear();
        self.puns.clear();
        fast
    }
}

/// What a forked child that is not followed must undo of the component
/// ([`FastState::scrub`]).
#[derive(Debug, Clone)]
pub(crate) struct FastScrub {
    /// The return stub's entry and its table.
    pub returns: Option<(u64, RuntimeAddr)>,
    /// rtrace's mappings: (address, length).
    pub unmap: Vec<(RuntimeAddr, u64)>,
}
