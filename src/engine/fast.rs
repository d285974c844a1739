//! Fast probes: sites patched with a jump to a detour that records the hit
//! into a ring shared with rtrace and goes on, without a stop (the
//! kernel's optprobes, in userspace; the code is `arch::detour`'s).
//!
//! What this file owns, per address space ([`FastState`], kept in the
//! `Space` with everything else written into the tracee):
//!
//! - **the ring**: a memfd the tracee creates (an injected `memfd_create`),
//!   mapped shared in the tracee (injected `mmap`) and in rtrace (through
//!   `/proc/PID/fd/N`), then closed in the tracee: no descriptor of ours is
//!   left there. Unmapped at detach, in a forked child that is not followed,
//!   and gone with the image at exec.
//! - **detour areas**: anonymous `r-x` mappings placed within ±2 GiB of the
//!   code they serve (`jmp rel32` reaches them), each holding many detours.
//! - **fast sites**: a probe site whose first bytes are the jump. Its
//!   `ProbeSite` stays in the probe table, with `saved` holding every byte
//!   the jump replaced, so removing it (detach, a forked child's scrub) puts
//!   them all back. Index `i` of [`FastState::sites`] is the record's site
//!   id; entries are never reused, so a record drained late still names its
//!   probes.
//!
//! Patching and unpatching happen with every thread of the address space
//! stopped ([`Tracer::patch_fast`], [`Tracer::unpatch_fast`]). A site is
//! patched only when no thread's instruction pointer lies strictly inside
//! the bytes replaced (else it waits for the next try); a site loses its
//! jump (back to an int3) when anything but a fast-capable probe needs the
//! address, or an address inside the jump. A thread inside a detour at that
//! moment finishes it unharmed (the detour stays mapped and returns to an
//! instruction boundary). Only when detours go away (detach) must threads
//! leave them first ([`Tracer::leave_detour`]), and a signal is delivered
//! only once its thread is out of any detour, so no signal frame ever holds
//! a detour address (the stepped thread's signal waits, as during a step).
//!
//! Records are drained ([`Tracer::drain`]) before the tracer blocks, every
//! [`DRAIN_INTERVAL`] while it is busy, and before anything that would make
//! a record meaningless: a thread's id reused, an exec, the process's end,
//! the detach. Each becomes a [`Hit`] handed to the probes' `on_entry`, its
//! memory reads answered from the record's captures.
//!
//! **The ring is untrusted input.** The tracee can write anything into it
//! at any time (a wild `memset`, a program that goes looking for it in
//! `/proc/self/maps`). Every loop over it is bounded by its capacity and
//! the drain's budget, every length read from it is clamped to the field it
//! describes, and what no detour writes is recognised
//! ([`take_records`], [`check_record`], [`read_losses`]): a sequence word that
//! is neither free nor published, an enqueue position more than a ring's
//! length from the records read, a published record that changes while it
//! is copied, a site index, kind or watch no detour writes, a time stamp
//! outside the run, a lost counter that goes back or leaps further than
//! records can be lost. Then the ring is **corrupt**
//! ([`Tracer::ring_corrupt`]): said once, never read again (its records and
//! counts are not believed), its sites go back to int3 breakpoints, which
//! report the calls made from then on, and the calls in flight it knew of
//! are counted missed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::{
    self, ring, table, CaptureField, CaptureKind, Detour, DetourSpec, Patch, ReturnSpec,
    RingLayout, Stub, StubSpec, ThreadPointer,
};
use crate::arch::Regs;
use crate::arch::SCRATCH_SYSCALL_OFFSET;
use crate::error::{Error, Result};
use crate::handler::{
    Capture, Captured, CapturedStr, Event, Fast, Hit, Memory, ProbeId, ProbeKind, Return,
};
use crate::handler::{Site, SkipReason};
use crate::probe::{ReturnInstance, Watch};
use crate::symbols::maps::Mapping;
use crate::sys::ptrace;
use crate::sys::shm::{self, SharedMap};

use super::space::Placement;
use super::step::StepEnd;
use super::task::TaskState;
use super::{guarded, Tracer};
use crate::arch::StepMode;
use crate::probe::Owner;

/// The size of one detour area.
pub(crate) const AREA_SIZE: u64 = 256 << 10;
/// Room left free above the heap (or where `brk` starts) and below the
/// stack, which grow into it.
const GROWTH_ROOM: u64 = 1 << 30;
/// Room kept for one detour: the longest one rtrace generates (a few
/// captures, five displaced instructions) is well under this.
const DETOUR_ROOM: u64 = 1024;
/// The largest record (captures included) a fast site may need.
const MAX_RECORD: u64 = 4096;
/// About how much shared memory a ring takes.
const RING_BYTES: u64 = 16 << 20;
/// Bounds of a ring's slot count.
const MIN_SLOTS: u64 = 1024;
const MAX_SLOTS: u64 = 65536;
/// How often records are drained while the tracer is busy, and the longest
/// it sleeps while fast sites may be recording.
pub(crate) const DRAIN_INTERVAL: Duration = Duration::from_millis(2);
/// The most records one drain reads while the tracee runs (about 2 ms of
/// printing): stops waiting meanwhile are not kept waiting longer.
const DRAIN_BUDGET: u64 = 4096;
/// Thread pointers no thread had, remembered so that the threads are not
/// stopped again for them; past this many (a ring written over with
/// garbage) no more are looked for.
const MAX_UNKNOWN_TPS: usize = 1024;
/// More records than this lost per nanosecond cannot be: a lost record is
/// a detour's forty-odd instructions and two locked increments (tens of
/// nanoseconds on one CPU), and this allows for thousands of CPUs. A lost
/// counter that leaps further is not a count.
const MAX_LOSSES_PER_NS: u64 = 4096;
/// How far (in time) a record's time stamp may lie outside the run and
/// still be believed: counters of different CPUs differ slightly.
const TSC_SLACK: Duration = Duration::from_secs(1);

/// Why a function that reads its own return address (`dlsym`, `dlopen`…:
/// `symbols::resolve::reads_return_address`) keeps its int3: its returns
/// are watched at their return sites, and it is hooked for tail calls into
/// it (see `Tracer::own_return_address_back`). The detour would swap the
/// return address for the return stub, which lies in no module.
const READS_RETURN_ADDRESS: &str =
    "the function reads its own return address: its returns are watched at their return \
     sites, by int3";
/// The memfd's name, written into the scratch page for `memfd_create`
/// (bytes 8..20: past the scratch code, before the out-of-line slots).
const RING_NAME: &[u8] = b"rtrace-ring\0";
const RING_NAME_OFFSET: i64 = 8;
/// The most single-steps taken to bring a thread out of a detour (a capture
/// loop of a few KiB is some thousands).
const STEP_BUDGET: usize = 1 << 20;
/// Why a site is int3 while a task shares its memory and thread pointer.
const SUSPENDED: &str = "a process sharing the memory runs on the same thread pointer \
                         (clone with CLONE_VM and no TLS of its own)";
/// Lowest address an area may take (`vm.mmap_min_addr`'s usual value).
const MIN_ADDR: u64 = 0x10000;
/// rflags' trap flag.
const TRAP_FLAG: u64 = 0x100;
const PAGE: u64 = 4096;

/// The ring of one address space, as rtrace reads it.
#[derive(Debug)]
pub(crate) struct Ring {
    /// rtrace's own mapping of the memfd (shared with its watchman).
    pub map: std::sync::Arc<SharedMap>,
    /// The thread that keeps rtrace's side of the hooks' protocol (see
    /// `hooks`); it stops when the ring goes (dropped after `map`, whose
    /// mapping it shares).
    pub _watchman: Option<super::hooks::Watchman>,
    /// Where the tracee has it, and its shape.
    pub layout: RingLayout,
    /// The next position to read (Vyukov's dequeue position; rtrace is the
    /// only consumer).
    pub consumed: u64,
    /// The total lost counter as last seen.
    pub lost_seen: u64,
    /// When `lost_seen` was read (how many records could have been lost
    /// since is bounded by the time).
    pub lost_at: Instant,
}

/// A detour area.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Area {
    pub base: RuntimeAddr,
    pub used: u64,
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
    pub captures: Vec<CaptureField>,
    /// The probes it records for.
    pub probes: Vec<Rc<Site>>,
    /// The most bytes of the returned C string its return records hold.
    pub ret_string: u32,
    /// Its lost counter as last seen.
    pub lost: u64,
    /// Still patched.
    pub live: bool,
    /// One of rtrace's own hooks (see `hooks`), not a user probe's site.
    pub hook: Option<crate::arch::hook::HookKind>,
}

impl FastSite {
    fn contains_ip(&self, ip: u64) -> bool {
        (self.at.get()..self.at.get() + self.detour.code.len() as u64).contains(&ip)
    }
}

/// The return stub of an address space and the table it reads.
#[derive(Clone, Debug)]
pub(crate) struct ReturnStub {
    pub stub: Stub,
    /// The table (a private mapping of [`table::SIZE`] bytes).
    pub table: RuntimeAddr,
    /// Its lost counter as last seen.
    pub lost: u64,
}

impl ReturnStub {
    fn contains_ip(&self, ip: u64) -> bool {
        (self.stub.entry..self.stub.entry + self.stub.code.len() as u64).contains(&ip)
    }
}

/// The stub's lost-record counter: the last one of the ring (no site has
/// its index).
const STUB_LOST_INDEX: u32 = (ring::MAX_SITES - 1) as u32;

/// Fast probes in one address space.
#[derive(Debug, Default)]
pub(crate) struct FastState {
    pub ring: Option<Ring>,
    /// A forked child's ring, to be made (at its parent's address, with its
    /// parent's layout) before the child runs: until then it shares its
    /// parent's.
    pub ring_wanted: Option<RingLayout>,
    /// Why no ring could be made here (every site stays int3).
    pub broken: Option<String>,
    pub areas: Vec<Area>,
    pub sites: Vec<FastSite>,
    /// Why a site address cannot be fast (judged once per set of owners).
    pub refused: HashMap<RuntimeAddr, String>,
    /// rtrace's own sites whose bytes a hook's jump cannot replace.
    pub hooks_refused: HashSet<RuntimeAddr>,
    /// Thread pointer (`fs_base`) → thread.
    pub threads: HashMap<u64, Tid>,
    /// Thread pointers lent to a vfork child while its parent waits in the
    /// kernel (the child runs on its parent's TLS): the child, and whether
    /// it is silent.
    pub lent: HashMap<u64, (Tid, bool)>,
    /// Thread pointers no thread had at a refresh.
    pub unknown: HashSet<u64>,
    /// Sites may be waiting to be patched.
    pub dirty: bool,
    /// The return stub, once a fast site watches returns (or why it could
    /// not be made).
    pub stub: Option<ReturnStub>,
    pub stub_failed: Option<String>,
    /// Tasks that share this memory and a thread pointer with another
    /// (CLONE_VM without TLS of their own): while any lives, nothing here is
    /// fast.
    pub suspended_by: HashSet<Tid>,
    /// Why the ring is no longer read: the program wrote over it (see the
    /// module's docs). Its sites go back to int3.
    pub corrupt: Option<String>,
}

impl FastState {
    /// The live fast sites whose replaced bytes contain `addr`.
    pub fn covering(&self, addr: RuntimeAddr) -> Vec<RuntimeAddr> {
        self.sites
            .iter()
            .filter(|s| s.live && (s.addr.get()..s.addr.get() + s.len as u64).contains(&addr.get()))
            .map(|s| s.addr)
            .collect()
    }

    /// True when `ip` is in fast code: a detour or the return stub.
    pub fn in_fast_code(&self, ip: u64) -> bool {
        self.detour_at(ip).is_some() || self.stub.as_ref().is_some_and(|s| s.contains_ip(ip))
    }

    /// The fast site (live or not) whose detour holds `ip`.
    pub fn detour_at(&self, ip: u64) -> Option<&FastSite> {
        self.sites.iter().find(|s| s.contains_ip(ip))
    }

    /// The fix-up of a capture load at `ip`.
    pub fn fixup(&self, ip: u64) -> Option<u64> {
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
    pub fn active(&self) -> bool {
        !self.sites.is_empty() || self.ring.is_some()
    }

    /// Everything mapped into the tracee for fast probes: (address, length).
    pub fn mappings(&self) -> Vec<(RuntimeAddr, u64)> {
        let mut v: Vec<(RuntimeAddr, u64)> =
            self.areas.iter().map(|a| (a.base, AREA_SIZE)).collect();
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
    pub fn for_child(&self) -> FastState {
        FastState {
            ring: None,
            ring_wanted: self.ring.as_ref().map(|r| r.layout),
            broken: self.broken.clone(),
            areas: self.areas.clone(),
            // Its ring's counters start from zero.
            sites: self
                .sites
                .iter()
                .map(|f| FastSite {
                    lost: 0,
                    ..f.clone()
                })
                .collect(),
            refused: self.refused.clone(),
            hooks_refused: self.hooks_refused.clone(),
            threads: HashMap::new(),
            lent: HashMap::new(),
            unknown: HashSet::new(),
            dirty: false,
            // The child's table is a copy of its parent's (a private
            // mapping), matching its copy of the stack.
            stub: self.stub.clone().map(|s| ReturnStub { lost: 0, ..s }),
            stub_failed: self.stub_failed.clone(),
            suspended_by: HashSet::new(),
            // A ring of its own, new.
            corrupt: None,
        }
    }

    /// The thread a record with thread pointer `tp` came from, and whether
    /// it is silent.
    /// The thread whose thread pointer is `tp`, if known.
    pub fn thread_of(&self, tp: u64) -> Option<Tid> {
        self.thread(tp).map(|(t, _)| t)
    }

    fn thread(&self, tp: u64) -> Option<(Tid, bool)> {
        self.lent
            .get(&tp)
            .copied()
            .or_else(|| self.threads.get(&tp).map(|&t| (t, false)))
    }
}

/// Time stamp counter readings → time since the tracer started: a line
/// through the first reading, its slope measured at the start (a 2 ms spin)
/// and refined at every drain (the longer the baseline, the better).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TscClock {
    tsc0: u64,
    t0: Duration,
    ns_per_tick: f64,
}

impl TscClock {
    pub fn calibrate(start: Instant) -> TscClock {
        let (tsc0, t0) = (shm::tsc(), start.elapsed());
        let mut clock = TscClock {
            tsc0,
            t0,
            ns_per_tick: 1.0,
        };
        while start.elapsed() < t0 + Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        clock.refine(start);
        clock
    }

    pub fn refine(&mut self, start: Instant) {
        let (tsc, t) = (shm::tsc(), start.elapsed());
        if tsc > self.tsc0 && t > self.t0 {
            self.ns_per_tick = (t - self.t0).as_nanos() as f64 / (tsc - self.tsc0) as f64;
        }
    }

    /// The time stamps a record read when the counter is at `now` may
    /// carry: from the clock's first reading (before any ring existed) to
    /// `now`, give or take [`TSC_SLACK`].
    pub fn plausible(&self, now: u64) -> std::ops::RangeInclusive<u64> {
        let slack = (TSC_SLACK.as_nanos() as f64 / self.ns_per_tick.max(1e-3)) as u64;
        self.tsc0.saturating_sub(slack)..=now.saturating_add(slack)
    }

    pub fn time(&self, tsc: u64) -> Duration {
        let ticks = tsc.wrapping_sub(self.tsc0) as i64;
        let ns = self.t0.as_nanos() as f64 + ticks as f64 * self.ns_per_tick;
        Duration::from_nanos(ns.max(0.0) as u64)
    }
}

/// How a drain treats slots claimed but not yet published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drain {
    /// Leave them for later; thread pointers not known yet may be looked
    /// up by stopping the threads (the tracer is between two stops).
    Safe,
    /// Leave them for later; no thread is stopped for it.
    Quick,
    /// No thread will publish them any more (the process is gone, or every
    /// thread has left the detours): skip them.
    Final,
}

/// A site judged patchable, with what its detour must capture.
struct Planned {
    addr: RuntimeAddr,
    patch: Patch,
    kinds: Vec<CaptureKind>,
    probes: Vec<Rc<Site>>,
    /// The detour swaps the return address for the stub.
    returns: bool,
    /// The most bytes of the returned C string its return record copies.
    ret_string: u32,
}

/// The address for an area of `size` bytes nearest `near` among the gaps of
/// `maps` (sorted), or None when no gap within reach of a `jmp rel32` has
/// room. Room is left where a mapping grows: above the heap (or, with no
/// heap yet, above the executable's last mapping, where `brk` starts), and
/// below the stack.
pub(crate) fn place_area(maps: &[Mapping], exe: &Path, near: u64, size: u64) -> Option<u64> {
    let reach = (1u64 << 31) - 2 * AREA_SIZE;
    let exe_last = maps
        .iter()
        .filter(|m| Path::new(&m.name) == exe)
        .map(|m| m.end.get())
        .max();
    let mut best: Option<u64> = None;
    let mut consider = |lo: u64, hi: u64| {
        // One page free on each side.
        let (lo, hi) = (lo + PAGE, hi.saturating_sub(PAGE));
        if hi < lo + size {
            return;
        }
        let want = near & !(PAGE - 1);
        let at = want.clamp(lo, hi - size);
        let far = at.abs_diff(near).max((at + size).abs_diff(near));
        if far >= reach {
            return;
        }
        if best.is_none_or(|b| at.abs_diff(near) < b.abs_diff(near)) {
            best = Some(at);
        }
    };
    let mut prev_end = MIN_ADDR;
    let mut prev: Option<&Mapping> = None;
    for m in maps {
        let grows_up = prev.is_some_and(|p| p.name == "[heap]" || Some(p.end.get()) == exe_last);
        let grows_down = m.name == "[stack]";
        let lo = match grows_up {
            true => prev_end.saturating_add(GROWTH_ROOM),
            false => prev_end,
        };
        let hi = match grows_down {
            true => m.start.get().saturating_sub(GROWTH_ROOM),
            false => m.start.get(),
        };
        if hi > lo {
            consider(lo, hi);
        }
        prev_end = prev_end.max(m.end.get());
        prev = Some(m);
    }
    best
}

impl Tracer {
    /// The TSC clock, calibrated once.
    fn clock(&mut self) -> TscClock {
        let start = self.start;
        *self
            .tsc_clock
            .get_or_insert_with(|| TscClock::calibrate(start))
    }

    /// Takes the jump off any fast site of space `key` whose replaced bytes
    /// hold `addr`, before a breakpoint is armed there (an int3 written into
    /// a jump would break it; a site that gets another owner is an int3).
    pub(super) fn clear_jumps_at(&mut self, key: Pid, addr: RuntimeAddr) -> Result<()> {
        let covering = self
            .spaces
            .get(&key)
            .map(|s| s.fast.covering(addr))
            .unwrap_or_default();
        if covering.is_empty() {
            return Ok(());
        }
        self.unpatch_fast(key, &covering)
    }

    /// Patches every site of space `key` that can be fast and is not yet:
    /// judges each (its probes' handlers, [`detour::plan_patch`]), then, with
    /// every thread of the space stopped, makes the ring if there is none,
    /// writes the detours and the jumps. A site with a thread inside its
    /// replaced bytes waits for the next call.
    pub(super) fn patch_fast(&mut self, key: Pid) -> Result<()> {
        if !self.opts.fast || self.halting {
            return Ok(());
        }
        let Some(space) = self.spaces.get_mut(&key) else {
            return Ok(());
        };
        if !space.fast.dirty {
            return Ok(());
        }
        if let Some(why) = space.fast.corrupt.clone() {
            // The ring is not read any more: every jump comes off, and no
            // site is patched here again.
            let live: Vec<RuntimeAddr> = space
                .fast
                .sites
                .iter()
                .filter(|s| s.live)
                .map(|s| s.addr)
                .collect();
            self.unpatch_fast(key, &live)?;
            let space = self.space_mut(key)?;
            space.fast.dirty = false;
            let reason = format!("the fast probes' ring is corrupt ({why})");
            let sites: Vec<RuntimeAddr> = space
                .sites
                .iter()
                .filter(|(_, s)| s.fast.is_none() && !s.probes.is_empty())
                .map(|(a, _)| a)
                .collect();
            for a in sites {
                space.fast.refused.insert(a, reason.clone());
            }
            return Ok(());
        }
        if space.scratch.is_none() {
            // No code may be injected (the process's seccomp mode): no ring,
            // no detour. Every site stays int3, and says why.
            if let Some(why) = space.no_injection.clone() {
                space.fast.dirty = false;
                let sites: Vec<RuntimeAddr> = space
                    .sites
                    .iter()
                    .filter(|(_, s)| s.fast.is_none() && !s.probes.is_empty())
                    .map(|(a, _)| a)
                    .collect();
                for a in sites {
                    space.fast.refused.entry(a).or_insert_with(|| why.clone());
                }
            }
            return Ok(());
        }
        space.fast.dirty = false;
        let candidates: Vec<RuntimeAddr> = space
            .sites
            .iter()
            .filter(|(a, s)| {
                s.fast.is_none() && !s.probes.is_empty() && !space.fast.refused.contains_key(a)
            })
            .map(|(a, _)| a)
            .collect();
        let mut plans = Vec::new();
        for addr in candidates {
            match self.plan_fast(key, addr) {
                Ok(p) => plans.push(p),
                Err(why) => {
                    self.space_mut(key)?.fast.refused.insert(addr, why);
                }
            }
        }
        // rtrace's own hooks: back to int3s if an int3 probe now watches
        // returns, else fast where they can be (see `hooks`).
        self.unfast_hooks(key)?;
        if plans.is_empty() && self.plan_hooks(key).is_empty() {
            return Ok(());
        }
        let running: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.space == key && t.state == TaskState::Running && !t.exiting)
            .map(|(tid, _)| *tid)
            .collect();
        let quiet = self.interrupt_and_collect(&running)?;
        let mut r = match plans.is_empty() {
            true => Ok(()),
            false => self.patch_planned(key, plans, &quiet),
        };
        if r.is_ok() {
            // After the user's sites: the ring and the stub exist now.
            r = self.patch_planned_hooks(key, &quiet);
        }
        for t in quiet {
            self.resume(t, 0)?;
        }
        r
    }

    /// With every thread of space `key` stopped, patches rtrace's hooks
    /// that can be fast.
    fn patch_planned_hooks(&mut self, key: Pid, quiet: &[Tid]) -> Result<()> {
        let hooks = self.plan_hooks(key);
        if hooks.is_empty() {
            return Ok(());
        }
        let Some(tid) = self.injector(key, quiet) else {
            self.space_mut(key)?.fast.dirty = true;
            return Ok(());
        };
        let ips: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.space == key && t.state == TaskState::Stopped && !t.exiting)
            .filter_map(|(t, _)| ptrace::getregs(*t).ok())
            .map(|r| r.ip())
            .collect();
        let tp = if shm::has_fsgsbase() {
            ThreadPointer::Rdfsbase
        } else {
            ThreadPointer::FsSelf
        };
        self.patch_hooks(key, tid, hooks, &ips, tp)
    }

    /// Judges the site at `addr` of space `key`: the reason it cannot be
    /// fast, or what to patch and capture.
    fn plan_fast(&mut self, key: Pid, addr: RuntimeAddr) -> std::result::Result<Planned, String> {
        let Tracer { spaces, probes, .. } = self;
        let space = spaces.get(&key).ok_or("the process is gone")?;
        let site = space.sites.get(addr).ok_or("the site is gone")?;
        if site.caller_hook {
            return Err(READS_RETURN_ADDRESS.into());
        }
        if site.rtld
            || site.unwind
            || site.ret_refs > 0
            || site.resolver
            || site.resolver_returns > 0
        {
            return Err("rtrace watches this address with a breakpoint of its own".into());
        }
        let module = space.modules.module_at(addr);
        let mut capture = Capture::default();
        let mut returns = false;
        for s in &site.probes {
            if s.kind == (ProbeKind::Function { returns: true }) {
                if space.unknown_unwinder {
                    return Err("the program's unwinder could not be found: returns are \
                                watched at their return sites, by int3"
                        .into());
                }
                if site.reads_return_address {
                    return Err(READS_RETURN_ADDRESS.into());
                }
                if let Some(why) = &space.fast.stub_failed {
                    return Err(format!("no return stub: {why}"));
                }
                returns = true;
            }
            let Some(probe) = probes.get_mut(s.id.0).and_then(Option::as_mut) else {
                continue;
            };
            match probe.handler.fast(s, module) {
                Fast::Yes(c) => capture.merge(&c),
                Fast::No(why) => return Err(why),
            }
        }
        let probes_here = site.probes.clone();
        let patch = self.plan_bytes(key, addr, false)?;
        let mut kinds: Vec<CaptureKind> = capture
            .strings
            .iter()
            .map(|&(reg, max)| CaptureKind::CStr {
                reg,
                max: u32::try_from(max).unwrap_or(u32::MAX),
            })
            .collect();
        if capture.stack > 0 {
            kinds.push(CaptureKind::Stack {
                len: u32::try_from(capture.stack).unwrap_or(u32::MAX),
            });
        }
        if returns && ring::CAPTURES + 8 + capture.ret_string as u64 > MAX_RECORD {
            return Err(format!(
                "the string its return value points to does not fit a fast record \
                 ({MAX_RECORD} bytes)"
            ));
        }
        if detour::layout_captures(&kinds).1 > MAX_RECORD {
            return Err(format!(
                "what its handlers capture does not fit a fast record ({MAX_RECORD} bytes)"
            ));
        }
        Ok(Planned {
            addr,
            patch,
            kinds,
            probes: probes_here,
            returns,
            ret_string: match returns {
                true => u32::try_from(capture.ret_string).unwrap_or(u32::MAX),
                false => 0,
            },
        })
    }

    /// The patch a jump at `addr` of space `key` would make: the displaced
    /// instructions judged by [`detour::plan_patch`], with the whole
    /// function and module scanned for branches into the replaced bytes
    /// and the other sites checked, or why there is none.
    pub(super) fn plan_bytes(
        &self,
        key: Pid,
        addr: RuntimeAddr,
        hook: bool,
    ) -> std::result::Result<Patch, String> {
        let space = self.spaces.get(&key).ok_or("the process is gone")?;
        let module = space.modules.module_at(addr);
        let m = module.ok_or("no module maps the address")?;
        let (sym, offset) = m
            .elf
            .function_at(m.to_link(addr))
            .ok_or("no symbol covers the address")?;
        if sym.size == 0 {
            return Err("the size of its function is unknown".into());
        }
        if sym.size > 1 << 20 {
            return Err("its function is too large to scan".into());
        }
        // Landing pads (where an unwinder jumps, in the function's LSDA) are
        // not checked: a function with one is refused, past its entry.
        if offset > 0
            && m.elf.has_exception_tables()
            && m.elf.has_landing_pads(m.to_link(addr)) != Some(false)
        {
            return Err("exception landing pads inside the function are not checked".into());
        }
        let start = addr.offset(-(offset as i64));
        let end = start.offset(sym.size as i64);
        let mut bytes = space
            .mem
            .read_vec(start, sym.size as usize)
            .map_err(|e| format!("its code cannot be read ({e})"))?;
        // The original bytes, under our breakpoints and jumps.
        for (a, s) in space.sites.iter() {
            if a >= start && a < end {
                let at = (a.get() - start.get()) as usize;
                let n = s.saved.len().min(bytes.len() - at);
                bytes[at..at + n].copy_from_slice(&s.saved[..n]);
            }
        }
        let patch = match hook {
            false => detour::plan_patch(&bytes, start.get(), addr.get())?,
            true => {
                // What follows the function up to the next one (at most a
                // jump's length is needed).
                let next = m
                    .elf
                    .functions()
                    .iter()
                    .map(|f| f.addr)
                    .filter(|a| *a >= m.to_link(end))
                    .min()
                    .map_or(0, |a| (a.get() - m.to_link(end).get()).min(16));
                let padding = space.mem.read_vec(end, next as usize).unwrap_or_default();
                detour::plan_hook_patch(&bytes, &padding, start.get(), addr.get())?
            }
        };
        let replaced = addr.get()..addr.get() + patch.len as u64;
        // Code elsewhere in the module (another function) may jump in too.
        let inside = m.to_link(addr.offset(1))..m.to_link(addr.offset(patch.len as i64));
        if let Some((at, to)) = m.elf.code_ref_into(inside.start, inside.end) {
            let whose = m
                .elf
                .function_at(at)
                .map(|(s, off)| format!(" ({}+{off:#x})", m.elf.shown_name(s)))
                .unwrap_or_default();
            return Err(format!(
                "code at {:#x}{whose} jumps to {:#x}, inside the bytes a jump would replace",
                m.to_runtime(at).get(),
                m.to_runtime(to).get()
            ));
        }
        // Nor may another function begin there.
        let starts = m
            .elf
            .functions()
            .iter()
            .any(|f| f.addr > inside.start.offset(-1) && f.addr < inside.end);
        if starts {
            return Err("another function begins inside the bytes a jump would replace".into());
        }
        if space
            .sites
            .iter()
            .any(|(a, _)| a != addr && replaced.contains(&a.get()))
        {
            return Err("another breakpoint is in the bytes a jump would replace".into());
        }
        let overlaps = space.fast.sites.iter().any(|f| {
            f.live && f.addr.get() < replaced.end && replaced.start < f.addr.get() + f.len as u64
        });
        if overlaps {
            return Err("another fast probe's jump overlaps the bytes".into());
        }
        Ok(patch)
    }

    /// The thread of space `key` to make system calls with: stopped, not
    /// stepping, with nothing waiting to be handled (one of `quiet` first).
    fn injector(&self, key: Pid, quiet: &[Tid]) -> Option<Tid> {
        let waiting: Vec<Tid> = self.deferred.iter().map(|s| s.tid()).collect();
        let usable = |tid: &Tid| {
            self.tasks.get(tid).is_some_and(|t| {
                t.space == key
                    && t.state == TaskState::Stopped
                    && !t.exiting
                    && t.step.is_none()
                    && t.scrub.is_none()
            }) && !waiting.contains(tid)
        };
        quiet
            .iter()
            .copied()
            .find(|t| usable(t))
            .or_else(|| self.tasks.keys().copied().find(|t| usable(t)))
    }

    /// With every thread of space `key` stopped: makes the ring if needed,
    /// and patches `plans`.
    fn patch_planned(&mut self, key: Pid, mut plans: Vec<Planned>, quiet: &[Tid]) -> Result<()> {
        let Some(tid) = self.injector(key, quiet) else {
            // Try again later.
            self.space_mut(key)?.fast.dirty = true;
            return Ok(());
        };
        // Where every thread is, and its thread pointer.
        let mut ips = Vec::new();
        let stopped: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.space == key && t.state == TaskState::Stopped && !t.exiting)
            .map(|(t, _)| *t)
            .collect();
        for t in stopped {
            if let Ok(regs) = ptrace::getregs(t) {
                ips.push(regs.ip());
                let fs_base = regs.raw().fs_base;
                if fs_base != 0 {
                    self.space_mut(key)?.fast.threads.insert(fs_base, t);
                }
            }
        }
        let stepping: Vec<RuntimeAddr> = self
            .tasks
            .values()
            .filter(|t| t.space == key)
            .filter_map(|t| t.step.as_ref().map(|s| s.site))
            .collect();
        if self.spaces[&key].fast.ring.is_none() {
            let slot = plans
                .iter()
                .map(|p| {
                    let ret = (ring::CAPTURES + 8 + u64::from(p.ret_string)).div_ceil(64) * 64;
                    detour::layout_captures(&p.kinds).1.max(ret)
                })
                .max()
                .unwrap_or(ring::CAPTURES)
                .max(ring::CAPTURES);
            if let Err(why) = self.make_ring(key, tid, slot, None) {
                let space = self.space_mut(key)?;
                space.fast.broken = Some(why.clone());
                for p in plans {
                    space.fast.refused.insert(p.addr, format!("no ring: {why}"));
                }
                return Ok(());
            }
        }
        let tp = if shm::has_fsgsbase() {
            ThreadPointer::Rdfsbase
        } else {
            ThreadPointer::FsSelf
        };
        let stub_wanted = plans.iter().any(|p| p.returns);
        if stub_wanted && self.spaces[&key].fast.stub.is_none() {
            if let Some(near) = plans.first().map(|p| p.addr) {
                if let Err(why) = self.make_stub(key, tid, near, tp) {
                    let space = self.space_mut(key)?;
                    space.fast.stub_failed = Some(why.clone());
                    let mut kept = Vec::new();
                    for p in plans {
                        match p.returns {
                            true => {
                                space
                                    .fast
                                    .refused
                                    .insert(p.addr, format!("no return stub: {why}"));
                            }
                            false => kept.push(p),
                        }
                    }
                    plans = kept;
                }
            }
        }
        for plan in plans {
            let addr = plan.addr;
            let inside = addr.get() + 1..addr.get() + plan.patch.len as u64;
            if ips.iter().any(|ip| inside.contains(ip)) || stepping.contains(&addr) {
                self.space_mut(key)?.fast.dirty = true;
                continue;
            }
            if let Err(why) = self.patch_one(key, tid, plan, tp) {
                self.space_mut(key)?.fast.refused.insert(addr, why);
            }
        }
        Ok(())
    }

    /// Writes the detour of `plan` and its jump.
    fn patch_one(
        &mut self,
        key: Pid,
        tid: Tid,
        plan: Planned,
        tp: ThreadPointer,
    ) -> std::result::Result<(), String> {
        let layout = self.ring_layout(key)?;
        let (captures, record) = detour::layout_captures(&plan.kinds);
        let record = record.max(ring::CAPTURES + 8 + u64::from(plan.ret_string));
        if record > layout.slot_size {
            return Err(format!(
                "its captures do not fit the ring's records ({} bytes)",
                layout.slot_size
            ));
        }
        let (area, at) = self.room_near(key, tid, plan.addr)?;
        let space = self.spaces.get_mut(&key).ok_or("the process is gone")?;
        let index = space.fast.sites.len() as u32;
        let spec = DetourSpec {
            at: at.get(),
            ring: layout,
            index,
            captures: &captures,
            tp,
            returns: match plan.returns {
                true => space.fast.stub.as_ref().map(|s| ReturnSpec {
                    stub: s.stub.entry,
                    table: s.table.get(),
                    ret_string: plan.ret_string,
                }),
                false => None,
            },
        };
        if plan.returns && spec.returns.is_none() {
            return Err("no return stub".into());
        }
        let code = detour::assemble_detour(&plan.patch, &spec)?;
        let jump =
            detour::jump(&plan.patch, at.get()).ok_or("its detour is out of a jump's reach")?;
        write_code(space, area, at, &code.code, "its detour")?;
        space
            .mem
            .write(plan.addr, &jump)
            .map_err(|e| format!("the jump cannot be written ({e})"))?;
        let site = space.sites.get_mut(plan.addr).ok_or("the site is gone")?;
        site.saved = plan.patch.saved.clone();
        site.written = jump.clone();
        site.deferred = false;
        site.fast = Some(index);
        space.fast.sites.push(FastSite {
            addr: plan.addr,
            len: plan.patch.len,
            at,
            detour: code,
            captures,
            probes: plan.probes,
            ret_string: plan.ret_string,
            lost: 0,
            live: true,
            hook: None,
        });
        Ok(())
    }

    /// Makes the return stub of space `key` (by `tid`, stopped): the table,
    /// a private anonymous mapping, and the stub's code in a detour area
    /// (near `near`, as good as anywhere: the stub is reached by `ret`).
    fn make_stub(
        &mut self,
        key: Pid,
        tid: Tid,
        near: RuntimeAddr,
        tp: ThreadPointer,
    ) -> std::result::Result<(), String> {
        let layout = self.ring_layout(key)?;
        let scratch = self.spaces[&key].scratch.ok_or("no scratch page")?;
        let table = self
            .inject_syscall(
                tid,
                scratch.offset(SCRATCH_SYSCALL_OFFSET),
                libc::SYS_mmap,
                &[
                    0,
                    table::SIZE,
                    (libc::PROT_READ | libc::PROT_WRITE) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                    u64::MAX,
                    0,
                ],
            )
            .map_err(|e| format!("the table of return addresses cannot be mapped ({e})"))?
            as u64;
        let made = (|| {
            let (area, at) = self.room_near(key, tid, near)?;
            let space = self.spaces.get_mut(&key).ok_or("the process is gone")?;
            let stub = detour::assemble_stub(&StubSpec {
                at: at.get(),
                ring: layout,
                table,
                tp,
                lost_index: STUB_LOST_INDEX,
            })?;
            write_code(space, area, at, &stub.code, "the return stub")?;
            space.fast.stub = Some(ReturnStub {
                stub,
                table: RuntimeAddr(table),
                lost: 0,
            });
            Ok(())
        })();
        if made.is_err() {
            let _ = self.munmap_in(tid, key, RuntimeAddr(table), table::SIZE);
        }
        made
    }

    /// The layout of space `key`'s ring.
    pub(super) fn ring_layout(&self, key: Pid) -> std::result::Result<RingLayout, String> {
        self.spaces
            .get(&key)
            .and_then(|s| s.fast.ring.as_ref())
            .map(|r| r.layout)
            .ok_or_else(|| "no ring".to_string())
    }

    /// An area of space `key` with room for code within reach of `near`, and
    /// the address where that room begins.
    pub(super) fn room_near(
        &mut self,
        key: Pid,
        tid: Tid,
        near: RuntimeAddr,
    ) -> std::result::Result<(usize, RuntimeAddr), String> {
        let area = self.area_near(key, tid, near)?;
        let a = self.spaces[&key].fast.areas[area];
        Ok((area, a.base.offset(a.used as i64)))
    }

    /// An area of space `key` with room for a detour within reach of `addr`,
    /// mapped (by `tid`) if there is none.
    fn area_near(
        &mut self,
        key: Pid,
        tid: Tid,
        addr: RuntimeAddr,
    ) -> std::result::Result<usize, String> {
        let reach = (1u64 << 31) - 2 * AREA_SIZE;
        let space = &self.spaces[&key];
        if let Some(i) = space.fast.areas.iter().position(|a| {
            a.used + DETOUR_ROOM <= AREA_SIZE && a.base.get().abs_diff(addr.get()) < reach
        }) {
            return Ok(i);
        }
        let maps = crate::symbols::maps::read(space.pid).map_err(|e| e.to_string())?;
        let at = place_area(&maps, &space.exe, addr.get(), AREA_SIZE)
            .ok_or("no free address range within reach of a jump")?;
        let scratch = space.scratch.ok_or("no scratch page")?;
        let got = self
            .inject_syscall(
                tid,
                scratch.offset(SCRATCH_SYSCALL_OFFSET),
                libc::SYS_mmap,
                &[
                    at,
                    AREA_SIZE,
                    (libc::PROT_READ | libc::PROT_EXEC) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                    u64::MAX,
                    0,
                ],
            )
            .map_err(|e| format!("no detour area could be mapped ({e})"))? as u64;
        if got != at {
            // A kernel without MAP_FIXED_NOREPLACE took it as a hint.
            let _ = self.munmap_in(tid, key, RuntimeAddr(got), AREA_SIZE);
            return Err("no detour area could be mapped where a jump reaches".into());
        }
        let space = self.spaces.get_mut(&key).ok_or("the process is gone")?;
        space.fast.areas.push(Area {
            base: RuntimeAddr(at),
            used: 0,
        });
        Ok(space.fast.areas.len() - 1)
    }

    /// Unmaps `len` bytes at `addr` in space `key`, by `tid` (stopped).
    fn munmap_in(&mut self, tid: Tid, key: Pid, addr: RuntimeAddr, len: u64) -> Result<()> {
        let scratch = self.spaces[&key]
            .scratch
            .ok_or(Error::NoSuchProcess { pid: key })?;
        self.inject_syscall(
            tid,
            scratch.offset(SCRATCH_SYSCALL_OFFSET),
            libc::SYS_munmap,
            &[addr.get(), len],
        )?;
        Ok(())
    }

    /// Makes the ring of space `key` by `tid` (stopped): `memfd_create` in the
    /// tracee, mapped there (at `fixed`, for a forked child taking its
    /// parent's place, else where the kernel likes) and here, then closed
    /// there. `slot` is the record size.
    pub(super) fn make_ring(
        &mut self,
        key: Pid,
        tid: Tid,
        slot: u64,
        fixed: Option<RingLayout>,
    ) -> std::result::Result<(), String> {
        let scratch = self.spaces[&key].scratch.ok_or("no scratch page")?;
        let pid = self.spaces[&key].pid;
        let gadget = scratch.offset(SCRATCH_SYSCALL_OFFSET);
        let name = scratch.offset(RING_NAME_OFFSET);
        let mut layout = fixed.unwrap_or_else(|| {
            let slot_size = slot.div_ceil(64) * 64;
            let slots = (RING_BYTES / slot_size).clamp(MIN_SLOTS, MAX_SLOTS);
            RingLayout {
                base: 0,
                capacity: 1 << (63 - slots.leading_zeros()),
                slot_size,
            }
        });
        self.spaces[&key]
            .mem
            .write(name, RING_NAME)
            .map_err(|e| e.to_string())?;
        let fd = self
            .inject_syscall(
                tid,
                gadget,
                libc::SYS_memfd_create,
                &[name.get(), libc::MFD_CLOEXEC as u64],
            )
            .map_err(|e| e.to_string())?;
        let made = (|| -> std::result::Result<(SharedMap, u64), String> {
            let path = format!("/proc/{pid}/fd/{fd}");
            let map = SharedMap::open(Path::new(&path), layout.size() as usize)
                .map_err(|e| e.to_string())?;
            let flags = match fixed {
                // Populated: a page fault per 4 KiB of records, in the
                // tracee's detours, would cost more than the records.
                Some(_) => libc::MAP_SHARED | libc::MAP_FIXED | libc::MAP_POPULATE,
                None => libc::MAP_SHARED | libc::MAP_POPULATE,
            };
            let base = self
                .inject_syscall(
                    tid,
                    gadget,
                    libc::SYS_mmap,
                    &[
                        layout.base,
                        layout.size(),
                        (libc::PROT_READ | libc::PROT_WRITE) as u64,
                        flags as u64,
                        fd as u64,
                        0,
                    ],
                )
                .map_err(|e| format!("the ring cannot be mapped in the tracee ({e})"))?;
            Ok((map, base as u64))
        })();
        let closed = self.inject_syscall(tid, gadget, libc::SYS_close, &[fd as u64]);
        let (map, base) = made?;
        closed.map_err(|e| e.to_string())?;
        if fixed.is_some() && base != layout.base {
            return Err("the ring could not take its parent's place".into());
        }
        layout.base = base;
        self.clock();
        let space = self.spaces.get_mut(&key).ok_or("the process is gone")?;
        let map = std::sync::Arc::new(map);
        let watchman = super::hooks::Watchman::start(map.clone(), nix::unistd::gettid())
            .map_err(|e| format!("rtrace's watchman thread cannot start ({e})"))?;
        space.fast.ring = Some(Ring {
            map,
            _watchman: Some(watchman),
            layout,
            consumed: 0,
            lost_seen: 0,
            lost_at: Instant::now(),
        });
        space.fast.ring_wanted = None;
        Ok(())
    }

    /// Takes the jumps off the fast sites at `addrs` of space `key`, with
    /// every thread of the space stopped: each gets its original bytes back,
    /// and its int3 (it stays a breakpoint until its owners say otherwise).
    /// A thread inside a detour finishes it: the detour stays mapped and
    /// returns past the replaced bytes, to an instruction boundary.
    pub(super) fn unpatch_fast(&mut self, key: Pid, addrs: &[RuntimeAddr]) -> Result<()> {
        let live: Vec<RuntimeAddr> = match self.spaces.get(&key) {
            Some(space) => addrs
                .iter()
                .copied()
                .filter(|a| space.sites.get(*a).is_some_and(|s| s.fast.is_some()))
                .collect(),
            None => return Ok(()),
        };
        if live.is_empty() {
            return Ok(());
        }
        let running: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.space == key && t.state == TaskState::Running && !t.exiting)
            .map(|(tid, _)| *tid)
            .collect();
        let quiet = if self.halting {
            Vec::new()
        } else {
            self.interrupt_and_collect(&running)?
        };
        let mut first = Ok(());
        if let Some(space) = self.spaces.get_mut(&key) {
            for addr in live {
                let Some(site) = space.sites.get_mut(addr) else {
                    continue;
                };
                let Some(index) = site.fast.take() else {
                    continue;
                };
                let mut bytes = site.saved.clone();
                bytes[..crate::arch::BREAKPOINT.len()].copy_from_slice(&crate::arch::BREAKPOINT);
                site.saved.truncate(crate::arch::BREAKPOINT.len());
                site.written = crate::arch::BREAKPOINT.to_vec();
                let r = space.mem.write(addr, &bytes);
                if first.is_ok() {
                    first = r;
                }
                if let Some(f) = space.fast.sites.get_mut(index as usize) {
                    f.live = false;
                }
                space.fast.refused.remove(&addr);
                space.fast.dirty = true;
            }
        }
        for t in quiet {
            self.resume(t, 0)?;
        }
        first
    }

    /// Brings stopped thread `tid` out of any detour: at a detour's first
    /// instruction (or its `pushfq`) it is sent back to the probed address,
    /// as if it had not got there yet; among the restoring pops rtrace does
    /// the rest of them itself; elsewhere it is single-stepped until it
    /// leaves (a capture load that faults goes to its fix-up). `pushfq` and
    /// `popfq` are never stepped: the kernel would leave the trap flag set. False when
    /// it could not be (it died, or a displaced instruction faulted: its
    /// signal is then held for it).
    pub(super) fn leave_detour(&mut self, tid: Tid) -> Result<bool> {
        let Some(key) = self.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        for _ in 0..STEP_BUDGET {
            let mut regs = match ptrace::getregs(tid) {
                Ok(r) => r,
                Err(e) if e.is_tracee_gone() => return Ok(false),
                Err(e) => return Err(e),
            };
            let ip = regs.ip();
            let Some(space) = self.spaces.get(&key) else {
                return Ok(true);
            };
            if let Some(stub) = space.fast.stub.as_ref().filter(|s| s.contains_ip(ip)) {
                let stub = stub.stub.clone();
                match self.stub_step(tid, &stub, regs)? {
                    Some(out) => return Ok(out),
                    None => continue,
                }
            }
            let Some(hook) = space.fast.detour_at(ip).map(|s| s.hook.is_some()) else {
                return Ok(true);
            };
            // In a hook's body (its loops, its waits): back to its site.
            if hook && self.abandon_hook(tid)? {
                return Ok(true);
            }
            let Some(space) = self.spaces.get(&key) else {
                return Ok(true);
            };
            let Some(site) = space.fast.detour_at(ip) else {
                return Ok(true);
            };
            if ip == site.detour.entry || ip == site.detour.pushf {
                if ip == site.detour.pushf {
                    regs.set_sp(regs.sp().wrapping_add(detour::RED_ZONE));
                }
                regs.set_ip(site.addr.get());
                ptrace::setregs(tid, &regs)?;
                return Ok(true);
            }
            // The restore is finished here, not stepped (see
            // `Detour::restore`); the displaced instructions are stepped.
            if detour::finish_restore(&site.detour, &mut regs, &space.mem)? {
                ptrace::setregs(tid, &regs)?;
                continue;
            }
            match self.single_step(tid)? {
                StepEnd::Done => {}
                StepEnd::Gone => return Ok(false),
                StepEnd::Faulted(signal) if self.emulate_rdtsc(tid, signal)? => {}
                StepEnd::Faulted(signal) => {
                    let regs = ptrace::getregs(tid)?;
                    let fix = self.spaces.get(&key).and_then(|s| s.fast.fixup(regs.ip()));
                    match fix {
                        Some(fix) if matches!(signal, libc::SIGSEGV | libc::SIGBUS) => {
                            let mut regs = regs;
                            regs.set_ip(fix);
                            ptrace::setregs(tid, &regs)?;
                        }
                        _ => {
                            self.hold_signal(tid, signal)?;
                            return Ok(false);
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    /// One move of stopped thread `tid` (with `regs`) through the return
    /// stub: `lea` and `pushfq` emulated (a stepped `pushfq` would push the
    /// trap flag), the restore finished by rtrace, the final `ret`
    /// emulated, the rest stepped. Some(true) once it is out, Some(false)
    /// when it cannot be brought out, None to go on.
    fn stub_step(&mut self, tid: Tid, stub: &Stub, mut regs: Regs) -> Result<Option<bool>> {
        let key = self.tasks[&tid].space;
        let ip = regs.ip();
        if ip == stub.entry {
            regs.set_sp(regs.sp().wrapping_sub(detour::RED_ZONE + 8));
            regs.set_ip(stub.pushf);
        } else if ip == stub.pushf {
            let sp = regs.sp().wrapping_sub(8);
            self.spaces[&key]
                .mem
                .write_u64(RuntimeAddr(sp), regs.raw().eflags & !TRAP_FLAG)?;
            regs.set_sp(sp);
            regs.set_ip(stub.pushf + 1);
        } else if ip == stub.ret {
            let to = self.spaces[&key].mem.read_u64(RuntimeAddr(regs.sp()))?;
            regs.set_sp(regs.sp() + 8);
            regs.set_ip(to);
            ptrace::setregs(tid, &regs)?;
            return Ok(Some(true));
        } else if ip == stub.orphan {
            regs.set_ip(stub.orphan + 1);
            ptrace::setregs(tid, &regs)?;
            return Ok(Some(self.orphan_return(tid, regs)?));
        } else if detour::finish_stub_restore(stub, &mut regs, &self.spaces[&key].mem)? {
            // At the `ret` (or the orphan's trap) now.
        } else {
            return match self.single_step(tid)? {
                StepEnd::Done => Ok(None),
                StepEnd::Gone => Ok(Some(false)),
                StepEnd::Faulted(signal) if self.emulate_rdtsc(tid, signal)? => Ok(None),
                StepEnd::Faulted(signal) => {
                    self.hold_signal(tid, signal)?;
                    Ok(Some(false))
                }
            };
        }
        ptrace::setregs(tid, &regs)?;
        Ok(None)
    }

    /// `tid` trapped at the return stub's orphan `int3` (`regs` just past
    /// it, rsp at the slot): the table had no entry for its slot. When a
    /// call rtrace knows of returns through that slot, the thread goes on
    /// at its return address, the return counted missed. True when the
    /// trap was that one and the thread could go on.
    pub(super) fn orphan_return(&mut self, tid: Tid, mut regs: Regs) -> Result<bool> {
        let Some(key) = self.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        let is_orphan = self.spaces.get(&key).is_some_and(|s| {
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
        let Some(task) = self.tasks.get_mut(&tid) else {
            return Ok(false);
        };
        let (pid, space) = (task.pid, self.spaces.get_mut(&key).expect("checked above"));
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

    /// `tid` (stopped) faulted with `signal` at the `rdtsc` of a detour or
    /// of the return stub: the thread has disabled the time stamp counter
    /// (seccomp strict mode does, as `prctl(PR_SET_TSC, PR_TSC_SIGSEGV)`
    /// does), after its fast probes were made. rtrace reads the counter for
    /// it (its own reading: the same counter, a few microseconds later) and
    /// moves it past the instruction; the program never sees the fault.
    /// True when that was it (the thread's registers are set, it is not
    /// resumed).
    fn emulate_rdtsc(&mut self, tid: Tid, signal: i32) -> Result<bool> {
        const RDTSC: [u8; 2] = [0x0f, 0x31];
        if signal != libc::SIGSEGV {
            return Ok(false);
        }
        let Some(key) = self.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        let Some(space) = self.spaces.get(&key) else {
            return Ok(false);
        };
        let mut regs = ptrace::getregs(tid)?;
        let ip = regs.ip();
        if !space.fast.in_fast_code(ip) || space.mem.read_vec(RuntimeAddr(ip), 2)? != RDTSC {
            return Ok(false);
        }
        let tsc = shm::tsc();
        let r = regs.raw_mut();
        r.rax = tsc & 0xffff_ffff;
        r.rdx = tsc >> 32;
        regs.set_ip(ip + RDTSC.len() as u64);
        ptrace::setregs(tid, &regs)?;
        let pid = space.pid;
        if self.tsc_warned.insert(pid) {
            self.warnings.push(Event::ProcessWarning {
                pid,
                message: format!(
                    "pid {pid} disabled the time stamp counter the fast probes' records read \
                     (seccomp strict mode, or PR_SET_TSC): rtrace reads it for them, at a stop \
                     per record"
                ),
            });
        }
        Ok(true)
    }

    /// `tid` is in a signal-delivery stop for `signal`: when it is a capture
    /// load of a detour faulting on a bad pointer, the thread goes to the
    /// load's fix-up (the capture is marked unreadable) and the signal is
    /// not delivered; when it is the `rdtsc` of fast code, rtrace reads the
    /// counter for it (`emulate_rdtsc`). True when that was it.
    pub(super) fn fix_capture_fault(&mut self, tid: Tid, signal: i32) -> Result<bool> {
        if !matches!(signal, libc::SIGSEGV | libc::SIGBUS) {
            return Ok(false);
        }
        let Some(key) = self.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        if !self.spaces.get(&key).is_some_and(|s| s.fast.active()) {
            return Ok(false);
        }
        if !crate::sys::wait::is_fault(tid, signal) {
            return Ok(false);
        }
        if self.emulate_rdtsc(tid, signal)? {
            self.resume(tid, 0)?;
            return Ok(true);
        }
        let mut regs = ptrace::getregs(tid)?;
        let Some(fix) = self.spaces[&key].fast.fixup(regs.ip()) else {
            return Ok(false);
        };
        regs.set_ip(fix);
        ptrace::setregs(tid, &regs)?;
        self.resume(tid, 0)?;
        Ok(true)
    }

    /// A signal is about to be delivered to `tid` (stopped for it): a thread
    /// inside a detour leaves it first, so the signal frame holds a program
    /// address. True when the signal was held for that (it is delivered
    /// when the thread resumes, out of the detour).
    pub(super) fn signal_in_detour(&mut self, tid: Tid, signal: i32) -> Result<bool> {
        let Some(key) = self.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        if !self.spaces.get(&key).is_some_and(|s| s.fast.active()) {
            return Ok(false);
        }
        let Ok(regs) = ptrace::getregs(tid) else {
            return Ok(false);
        };
        if !self.spaces[&key].fast.in_fast_code(regs.ip()) {
            return Ok(false);
        }
        self.hold_signal(tid, signal)?;
        self.leave_detour(tid)?;
        self.resume(tid, 0)?;
        Ok(true)
    }

    /// Reads the thread pointer of every thread of space `key`, stopping
    /// the running ones for it.
    fn refresh_threads(&mut self, key: Pid) -> Result<()> {
        let running: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.space == key && t.state == TaskState::Running && !t.exiting)
            .map(|(tid, _)| *tid)
            .collect();
        let quiet = self.interrupt_and_collect(&running)?;
        let stopped: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.space == key && t.state == TaskState::Stopped && !t.exiting)
            .map(|(t, _)| *t)
            .collect();
        for t in stopped {
            if let Ok(regs) = ptrace::getregs(t) {
                let tp = regs.raw().fs_base;
                if tp != 0 {
                    if let Some(space) = self.spaces.get_mut(&key) {
                        space.fast.threads.insert(tp, t);
                    }
                }
            }
        }
        for t in quiet {
            self.resume(t, 0)?;
        }
        Ok(())
    }

    /// Notes thread `tid`'s thread pointer `tp` (read at its first stop):
    /// records already made under that pointer (a thread that ended, whose
    /// TLS the new one reuses) are drained first.
    pub(super) fn note_thread(&mut self, tid: Tid, tp: u64) -> Result<()> {
        let Some(key) = self.tasks.get(&tid).map(|t| t.space) else {
            return Ok(());
        };
        let Some(space) = self.spaces.get(&key) else {
            return Ok(());
        };
        if tp == 0 || !space.fast.active() || space.fast.lent.contains_key(&tp) {
            return Ok(());
        }
        let Some(&other) = space.fast.threads.get(&tp).filter(|&&t| t != tid) else {
            if let Some(space) = self.spaces.get_mut(&key) {
                space.fast.threads.insert(tp, tid);
                space.fast.unknown.remove(&tp);
            }
            return Ok(());
        };
        if self.tasks.get(&other).is_some_and(|t| !t.exiting) {
            // Two live tasks on one thread pointer: a child made with
            // CLONE_VM but no TLS of its own, running beside its parent.
            // Their records could not be told apart: no fast probe in this
            // memory while it lives.
            return self.suspend_fast(key, tid);
        }
        // A thread that ended, whose TLS the new one reuses: its records
        // are read first.
        self.drain(key, Drain::Quick)?;
        if let Some(space) = self.spaces.get_mut(&key) {
            space.fast.threads.insert(tp, tid);
            space.fast.unknown.remove(&tp);
        }
        Ok(())
    }

    /// Takes every jump of space `key` off while `by` (a task sharing its
    /// memory and a thread pointer) lives.
    fn suspend_fast(&mut self, key: Pid, by: Tid) -> Result<()> {
        self.drain(key, Drain::Quick)?;
        let live: Vec<RuntimeAddr> = match self.spaces.get_mut(&key) {
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
        if let Some(space) = self.spaces.get_mut(&key) {
            for a in live {
                space.fast.refused.insert(a, SUSPENDED.into());
            }
        }
        Ok(())
    }

    /// Task `tid` is gone from space `key` (it died or exec'd): if it had
    /// suspended the fast probes there and was the last to, they may come
    /// back.
    pub(super) fn end_suspension(&mut self, key: Pid, tid: Tid) {
        let Some(space) = self.spaces.get_mut(&key) else {
            return;
        };
        if !space.fast.suspended_by.remove(&tid) || !space.fast.suspended_by.is_empty() {
            return;
        }
        space.fast.refused.retain(|_, why| why != SUSPENDED);
        space.fast.dirty = true;
    }

    /// While vfork child `child` runs on its parent `parent`'s TLS, records
    /// under the parent's thread pointer are the child's (the parent waits in
    /// the kernel); `lend` false gives it back. Records made before are
    /// drained first.
    pub(super) fn lend_thread_pointer(
        &mut self,
        parent: Tid,
        child: Tid,
        lend: bool,
    ) -> Result<()> {
        let Some(key) = self.tasks.get(&child).map(|t| t.space) else {
            return Ok(());
        };
        if !self.spaces.get(&key).is_some_and(|s| s.fast.active()) {
            return Ok(());
        }
        let Ok(regs) = ptrace::getregs(parent) else {
            return Ok(());
        };
        let tp = regs.raw().fs_base;
        self.drain(key, Drain::Quick)?;
        let silent = self.tasks.get(&child).is_some_and(|t| t.silent);
        if let Some(space) = self.spaces.get_mut(&key) {
            if lend {
                space.fast.lent.insert(tp, (child, silent));
            } else {
                space.fast.lent.remove(&tp);
            }
        }
        Ok(())
    }

    /// Drains every ring.
    pub(super) fn drain_all(&mut self, mode: Drain) -> Result<()> {
        self.last_drain = Instant::now();
        self.more_records = false;
        let keys: Vec<Pid> = self
            .spaces
            .iter()
            .filter(|(_, s)| s.fast.ring.is_some())
            .map(|(k, _)| *k)
            .collect();
        let mut first = Ok(());
        for key in keys {
            let r = self.drain(key, mode);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// True when a ring was found corrupt and its sites still wait to go
    /// back to int3 ([`Tracer::patch_fast`] does it).
    pub(super) fn fast_switch_pending(&self) -> bool {
        self.opts.fast
            && self.attach_reported
            && self
                .spaces
                .values()
                .any(|s| s.fast.corrupt.is_some() && s.fast.dirty)
    }

    /// True when some ring may hold records (and is read: not corrupt).
    pub(super) fn draining(&self) -> bool {
        self.spaces
            .values()
            .any(|s| s.fast.ring.is_some() && s.fast.corrupt.is_none())
    }

    /// Hands every record published in the ring of space `key` to its
    /// probes' `on_entry`, in ring order, and reports records lost.
    pub(super) fn drain(&mut self, key: Pid, mode: Drain) -> Result<()> {
        if !self
            .spaces
            .get(&key)
            .is_some_and(|s| s.fast.ring.is_some() && s.fast.corrupt.is_none())
        {
            return Ok(());
        }
        if mode != Drain::Final && self.spaces[&key].fast.ring.as_ref().is_some_and(ring_idle) {
            return Ok(());
        }
        if mode == Drain::Safe && self.unknown_thread_pointers(key) {
            self.refresh_threads(key)?;
            if let Some(space) = self.spaces.get_mut(&key) {
                let room = MAX_UNKNOWN_TPS.saturating_sub(space.fast.unknown.len());
                let unknown: Vec<u64> = published_tps(space.fast.ring.as_ref())
                    .into_iter()
                    .filter(|tp| space.fast.thread(*tp).is_none())
                    .take(room)
                    .collect();
                space.fast.unknown.extend(unknown);
            }
        }
        let mut clock = self.clock();
        clock.refine(self.start);
        self.tsc_clock = Some(clock);
        let (taken, slot) = {
            let space = self.spaces.get_mut(&key).expect("checked above");
            let sites = space.fast.sites.len();
            let stub = space.fast.stub.is_some();
            let ring = space.fast.ring.as_mut().expect("checked above");
            let budget = match mode {
                Drain::Final => ring.layout.capacity,
                Drain::Safe | Drain::Quick => DRAIN_BUDGET,
            };
            let slot = ring.layout.slot_size as usize;
            let taken = take_records(ring, mode == Drain::Final, budget).and_then(|records| {
                // Read after the records were: none is later than this.
                let stamps = clock.plausible(shm::tsc());
                records
                    .chunks(slot)
                    .try_for_each(|rec| check_record(rec, sites, stub, &stamps))
                    .map(|()| records)
            });
            if let Ok(records) = &taken {
                // Stopped at the budget: more may wait (the tracer then
                // only polls for stops before reading on).
                self.more_records |= records.len() / slot >= budget as usize;
            }
            (taken, slot)
        };
        let records = match taken {
            Ok(records) => records,
            // None of this batch is believed.
            Err(why) => return self.ring_corrupt(key, why),
        };
        let mut failed = None;
        if !records.is_empty() {
            self.deliver(key, &records, slot, clock, &mut failed);
        }
        if let Err(why) = self.report_lost(key, &mut failed) {
            self.ring_corrupt(key, why)?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The ring of space `key` holds what no detour writes (`why`): the
    /// program wrote over it. Said once; the ring is not read again (it
    /// stays mapped: detours a thread is in and the return stub still write
    /// to it, unread); its sites go back to int3 at the next
    /// [`Tracer::patch_fast`], which never patches there again; the calls in
    /// flight known from its records are counted missed (their returns would
    /// be recorded there).
    pub(super) fn ring_corrupt(&mut self, key: Pid, why: String) -> Result<()> {
        let Some(space) = self.spaces.get_mut(&key) else {
            return Ok(());
        };
        if space.fast.corrupt.is_some() {
            return Ok(());
        }
        space.fast.corrupt = Some(why.clone());
        space.fast.dirty = true;
        self.more_records = false;
        let pid = space.pid;
        let mut events = vec![Event::ProcessWarning {
            pid,
            message: format!(
                "the fast probes' ring of pid {pid} is corrupt ({why}): the program wrote over \
                 it; what it holds is not read any more, and its fast probes go back to int3 \
                 breakpoints"
            ),
        }];
        for (&tid, task) in self.tasks.iter_mut().filter(|(_, t)| t.space == key) {
            for inst in task.fast_calls.take_all() {
                for (site, _) in inst.probes {
                    events.push(Event::Missed {
                        pid: task.pid,
                        tid,
                        probe: site.probe.clone(),
                        symbol: site.symbol.clone(),
                    });
                }
            }
        }
        for e in events {
            self.emit(e)?;
        }
        Ok(())
    }

    /// True when a record waiting in the ring of `key` has a thread pointer
    /// no thread is known by (and that was not looked for already, unless
    /// too many were: see [`MAX_UNKNOWN_TPS`]).
    fn unknown_thread_pointers(&self, key: Pid) -> bool {
        let Some(space) = self.spaces.get(&key) else {
            return false;
        };
        if space.fast.unknown.len() >= MAX_UNKNOWN_TPS {
            return false;
        }
        published_tps(space.fast.ring.as_ref())
            .into_iter()
            .any(|tp| space.fast.thread(tp).is_none() && !space.fast.unknown.contains(&tp))
    }

    /// Runs the entry handlers for `records` (each `slot` bytes) of space
    /// `key`, and the return handlers of the calls they return from. The
    /// first handler error is kept in `failed`.
    fn deliver(
        &mut self,
        key: Pid,
        records: &[u8],
        slot: usize,
        clock: TscClock,
        failed: &mut Option<Error>,
    ) {
        let mut events = Vec::new();
        let Tracer {
            probes,
            spaces,
            tasks,
            ..
        } = self;
        let Some(space) = spaces.get_mut(&key) else {
            return;
        };
        let space_pid = space.pid;
        for rec in records.chunks(slot) {
            let word = |off: u64| {
                let at = off as usize;
                u64::from_le_bytes(rec[at..at + 8].try_into().expect("8 bytes"))
            };
            let index = word(ring::INDEX) as u32;
            let kind = word(ring::KIND) as u32;
            let tp = word(ring::TP);
            let (tid, silent) = space.fast.thread(tp).unwrap_or((space_pid, false));
            if silent {
                continue;
            }
            // A vfork child is a process of its own, and may be gone from
            // the tasks already (its records are read as it dies).
            let own = match space.fast.lent.contains_key(&tp) {
                true => tid,
                false => space_pid,
            };
            let pid = tasks.get(&tid).map_or(own, |t| t.pid);
            let time = clock.time(word(ring::TSC));
            let maps = &mut space.maps;
            let mut same_stack = |a, b| maps.same_mapping_known(space_pid, a, b);
            if kind == detour::KIND_RETURN {
                let Some(task) = tasks.get_mut(&tid) else {
                    continue;
                };
                let mut regs = detour::record_regs(rec, word(ring::RET_ADDR));
                let sp = RuntimeAddr(regs.sp());
                let (_, returning) = task.fast_calls.pop_returning(sp, &mut same_stack);
                let mut dirty = false;
                let string = space
                    .fast
                    .sites
                    .get(index as usize)
                    .map_or(0, |f| f.ret_string);
                let field = CaptureField {
                    kind: CaptureKind::CStr {
                        reg: crate::arch::Gpr(0),
                        max: string,
                    },
                    offset: ring::CAPTURES as u32,
                };
                let fields = if string > 0 { &[field][..] } else { &[][..] };
                let captured = captured(rec, fields, &regs);
                for inst in returning {
                    for (site, data) in inst.probes {
                        let Some(probe) = probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                            continue;
                        };
                        let mut ret = Return {
                            pid,
                            tid,
                            site: &site,
                            regs: &mut regs,
                            regs_dirty: &mut dirty,
                            mem: Memory::Captured(&captured),
                            modules: &space.modules,
                            time,
                            entered: inst.entered,
                            data,
                        };
                        if let Err(e) = guarded(|| probe.handler.on_return(&mut ret)) {
                            failed.get_or_insert(e);
                        }
                    }
                }
                continue;
            }
            if kind == detour::KIND_CATCH {
                // A catch handler began (rtrace's hook at `__cxa_begin_catch`):
                // the calls at or below its stack pointer were unwound.
                let sp = RuntimeAddr(word(ring::GPRS + 8 * 4));
                if let Some(task) = tasks.get_mut(&tid) {
                    task.fast_calls.drop_abandoned(sp, true, &mut same_stack);
                }
                continue;
            }
            let Some(fs) = space.fast.sites.get(index as usize) else {
                continue;
            };
            let mut regs = detour::record_regs(rec, fs.addr.get());
            let captured = captured(rec, &fs.captures, &regs);
            let watch = word(ring::RET_WATCH) as u32;
            let mut kept = Vec::new();
            for site in &fs.probes {
                let Some(probe) = probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                    continue;
                };
                let mut dirty = false;
                let mut data = None;
                let mut hit = Hit {
                    pid,
                    tid,
                    site,
                    regs: &mut regs,
                    regs_dirty: &mut dirty,
                    mem: Memory::Captured(&captured),
                    modules: &space.modules,
                    time,
                    data: &mut data,
                    returns: Default::default(),
                    stack: Default::default(),
                };
                if let Err(e) = guarded(|| probe.handler.on_entry(&mut hit)) {
                    failed.get_or_insert(e);
                }
                if site.kind == (ProbeKind::Function { returns: true }) {
                    kept.push((site.clone(), data));
                }
            }
            if kept.is_empty() {
                continue;
            }
            let Some(task) = tasks.get_mut(&tid) else {
                continue;
            };
            let slot = RuntimeAddr(regs.sp());
            // Calls below this one's slot, or in it, cannot return any more
            // (left by longjmp or an exception): dropped, unreported.
            let chained = watch == detour::WATCH_CHAINED;
            task.fast_calls.drop_abandoned(slot, false, &mut same_stack);
            if !chained {
                task.fast_calls.drop_overwritten(slot);
            }
            let orig = match watch {
                detour::WATCH_STUB => Some(RuntimeAddr(word(ring::RET_ADDR))),
                detour::WATCH_CHAINED => task.fast_calls.in_slot(slot).map(|i| i.orig_ret),
                _ => None,
            };
            let Some(orig) = orig else {
                // The table was full (or the call it chains to was lost):
                // this return is not watched.
                for (site, _) in &kept {
                    events.push(Event::Missed {
                        pid,
                        tid,
                        probe: site.probe.clone(),
                        symbol: site.symbol.clone(),
                    });
                }
                continue;
            };
            task.fast_calls.push(ReturnInstance {
                slot,
                orig_ret: orig,
                entered: time,
                probes: kept,
                chained,
                watch: Watch::Trampoline,
            });
        }
        for event in events {
            if let Err(e) = self.emit(event) {
                failed.get_or_insert(e);
            }
        }
    }

    /// Reports records of space `key` lost since the last look (an emit
    /// error goes to `failed`). Err when the counters cannot be counts (see
    /// [`read_losses`]): nothing is reported then.
    fn report_lost(
        &mut self,
        key: Pid,
        failed: &mut Option<Error>,
    ) -> std::result::Result<(), String> {
        let mut events = Vec::new();
        if let Some(space) = self.spaces.get_mut(&key) {
            let pid = space.pid;
            let Some(ring) = space.fast.ring.as_mut() else {
                return Ok(());
            };
            let seen: Vec<u64> = space.fast.sites.iter().map(|f| f.lost).collect();
            let stub_seen = space.fast.stub.as_ref().map(|s| s.lost);
            let now = Instant::now();
            let Some(losses) = read_losses(ring, &seen, stub_seen, now - ring.lost_at)? else {
                return Ok(());
            };
            ring.lost_seen = losses.total;
            ring.lost_at = now;
            for (i, lost) in losses.sites {
                let fs = &mut space.fast.sites[i];
                for site in &fs.probes {
                    events.push(Event::Lost {
                        pid,
                        probe: site.probe.clone(),
                        symbol: site.symbol.clone(),
                        count: lost - fs.lost,
                    });
                }
                fs.lost = lost;
            }
            if let (Some(lost), Some(stub)) = (losses.stub, space.fast.stub.as_mut()) {
                events.push(Event::Warning {
                    probe: String::new(),
                    message: format!(
                        "{} fast returns lost: the ring was full when they were made \
                         (those calls show no return)",
                        lost - stub.lost
                    ),
                });
                stub.lost = lost;
            }
        }
        for e in events {
            if let Err(e) = self.emit(e) {
                failed.get_or_insert(e);
            }
        }
        Ok(())
    }

    /// Detaching from space `key` (its threads `tids` all stopped): every
    /// thread leaves the detours, the ring is drained to its end. The jumps
    /// go with the other breakpoints (`disarm_all`); then
    /// [`Tracer::unmap_fast`].
    pub(super) fn quiesce_fast(&mut self, key: Pid, tids: &[Tid]) -> Result<()> {
        if !self.spaces.get(&key).is_some_and(|s| s.fast.active()) {
            return Ok(());
        }
        let mut first = Ok(());
        let mut stuck = false;
        for &tid in tids {
            match self.leave_detour(tid) {
                Ok(true) => {}
                // Not brought out: stuck there only if it lives on (a
                // thread that exited meanwhile needs the detours no more).
                Ok(false) => stuck |= self.still_in_fast_code(key, tid),
                Err(e) if e.is_tracee_gone() => {}
                Err(e) => {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        if stuck {
            // A detour still in use stays mapped (its code no longer
            // reached from the program's once the jumps are gone).
            if let Some(space) = self.spaces.get_mut(&key) {
                space.fast.areas.clear();
            }
        }
        let r = self.drain(key, Drain::Final);
        // Every slot that holds the stub gets its return address back: the
        // stub goes with the areas.
        let restored = self.restore_fast_returns(key, tids);
        first.and(r).and(restored)
    }

    /// True when `tid` lives, is not exiting, and its instruction pointer
    /// is in a detour or the return stub of space `key`.
    fn still_in_fast_code(&self, key: Pid, tid: Tid) -> bool {
        if self.tasks.get(&tid).is_none_or(|t| t.exiting) {
            return false;
        }
        let Ok(regs) = ptrace::getregs(tid) else {
            return false;
        };
        self.spaces
            .get(&key)
            .is_some_and(|s| s.fast.in_fast_code(regs.ip()))
    }

    /// Gives back, in space `key` whose threads `tids` are stopped, the
    /// return addresses the detours swapped for the stub, as the table has
    /// them; the calls in flight are forgotten (no return is reported).
    fn restore_fast_returns(&mut self, key: Pid, tids: &[Tid]) -> Result<()> {
        for tid in tids {
            if let Some(t) = self.tasks.get_mut(tid) {
                t.fast_calls.take_all();
            }
        }
        let Some(space) = self.spaces.get_mut(&key) else {
            return Ok(());
        };
        let Some(stub) = space.fast.stub.as_ref().map(|s| (s.stub.entry, s.table)) else {
            return Ok(());
        };
        let threads: Vec<(u64, RuntimeAddr)> = tids
            .iter()
            .filter_map(|t| ptrace::getregs(*t).ok())
            .map(|r| (r.raw().fs_base, RuntimeAddr(r.sp())))
            .collect();
        let pid = space.pid;
        let maps = &mut space.maps;
        restore_stub_slots(&space.mem, stub.0, stub.1, &threads, &mut |a, b| {
            maps.same_mapping(pid, a, b)
        })?;
        Ok(())
    }

    /// Reads the ring of space `key` until it is empty (as far as records
    /// published by now go), budget after budget.
    pub(super) fn drain_through(&mut self, key: Pid) -> Result<()> {
        let Some(capacity) = self
            .spaces
            .get(&key)
            .and_then(|s| s.fast.ring.as_ref())
            .map(|r| r.layout.capacity)
        else {
            return Ok(());
        };
        for _ in 0..=capacity / DRAIN_BUDGET {
            self.more_records = false;
            self.drain(key, Drain::Quick)?;
            if !self.more_records {
                break;
            }
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
        let Some(key) = self.tasks.get(&tid).map(|t| t.space) else {
            return Ok(());
        };
        let Some((stub, table)) = self
            .spaces
            .get(&key)
            .and_then(|s| s.fast.stub.as_ref())
            .map(|s| (s.stub.entry, s.table))
        else {
            return Ok(());
        };
        self.drain_through(key)?;
        let task = self.tasks.get_mut(&tid).expect("a known task");
        let space = self.spaces.get_mut(&key).expect("checked above");
        let pid = space.pid;
        if space.fast.corrupt.is_some() {
            // The calls in flight were forgotten with the ring, and some
            // were never read: the table (the program's private memory,
            // not the ring) says which slots of this thread hold the stub.
            // They get their return address back, unwatched.
            let tp = ptrace::getregs(tid)?.raw().fs_base;
            let maps = &mut space.maps;
            restore_stub_slots(&space.mem, stub, table, &[(tp, sp)], &mut |a, b| {
                maps.same_mapping(pid, a, b)
            })?;
            return Ok(());
        }
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
        let space = self.spaces.get_mut(&key).expect("checked above");
        let task = self.tasks.get_mut(&tid).expect("a known task");
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

    /// A forked child traced with `-f` (`tid`, at its first stop) still
    /// shares its parent's ring: it gets one of its own at the same address,
    /// so the detours it inherited write there. If that fails, its jumps go
    /// (it has one thread, stopped, outside any detour: it was in `fork`).
    pub(super) fn give_child_ring(&mut self, tid: Tid) -> Result<()> {
        let Some(key) = self.tasks.get(&tid).map(|t| t.space) else {
            return Ok(());
        };
        let Some(layout) = self.spaces.get(&key).and_then(|s| s.fast.ring_wanted) else {
            return Ok(());
        };
        if let Ok(regs) = ptrace::getregs(tid) {
            if let Some(space) = self.spaces.get_mut(&key) {
                space.fast.threads.insert(regs.raw().fs_base, tid);
            }
        }
        if let Err(why) = self.make_ring(key, tid, layout.slot_size, Some(layout)) {
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
            let reason = "the child could not get a ring of its own".to_string();
            for a in live {
                space.fast.refused.insert(a, reason.clone());
            }
        }
        Ok(())
    }

    /// Tells the listeners how the sites of each probe armed in the traced
    /// process run, once per probe.
    pub(super) fn report_modes(&mut self) -> Result<()> {
        if !self.opts.fast {
            return Ok(());
        }
        let Some(space) = self.spaces.get(&self.root) else {
            return Ok(());
        };
        let mut events = Vec::new();
        for (i, p) in self.probes.iter().enumerate() {
            let id = ProbeId(i);
            let Some(p) = p else {
                continue;
            };
            if self.modes_reported.contains(&id) {
                continue;
            }
            let Some(Placement::Armed(addrs)) = space.placed.get(&id) else {
                continue;
            };
            if addrs.is_empty() {
                continue;
            }
            let mut fast = 0;
            let mut int3 = Vec::new();
            for &a in addrs {
                match space.fast.refused.get(&a) {
                    Some(why) => {
                        let symbol = space
                            .sites
                            .get(a)
                            .and_then(|s| s.probes.first().map(|p| p.symbol.clone()))
                            .unwrap_or_else(|| a.to_string());
                        // A glob's many sites are grouped by what refused
                        // them, not by the instruction or address.
                        let why = match addrs.len() {
                            1 => why.clone(),
                            _ => general_reason(why),
                        };
                        SkipReason::add(&mut int3, &why, &symbol);
                    }
                    None => fast += 1,
                }
            }
            events.push((
                id,
                Event::ProbeMode {
                    probe: p.spec.as_str().to_string(),
                    fast,
                    int3,
                },
            ));
        }
        for (id, e) in events {
            self.modes_reported.insert(id);
            self.emit(e)?;
        }
        Ok(())
    }
}

/// `why` without what differs from one site to the next: quoted
/// instructions become `'…'`, addresses `…`, and a parenthesized
/// `function+offset` goes.
fn general_reason(why: &str) -> String {
    let mut out = String::with_capacity(why.len());
    let mut rest = why;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            if let Some(end) = rest[1..].find('\'') {
                out.push_str("'…'");
                rest = &rest[end + 2..];
                continue;
            }
        }
        if rest.starts_with("0x") {
            let hex = rest[2..]
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(rest.len() - 2);
            out.push('…');
            rest = &rest[2 + hex..];
            continue;
        }
        if rest.starts_with(" (") && !rest.starts_with(" ('") {
            if let Some(end) = rest.find(')') {
                if rest[..end].contains('+') {
                    rest = &rest[end + 1..];
                    continue;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// True when `ring` has nothing new: the slot at the next position is free
/// (not published, and not something no detour writes), no record lost
/// since the last look (two loads).
fn ring_idle(ring: &Ring) -> bool {
    let l = ring.layout;
    let pos = ring.consumed;
    let off = ring::SLOTS + (pos & (l.capacity - 1)) * l.slot_size;
    ring.map.load_u64(off + ring::SEQ) == pos & !(l.capacity - 1)
        && ring.map.load_u64(ring::LOST_TOTAL) == ring.lost_seen
}

/// Thread pointers of the records published in `ring` and not read yet
/// (at most a drain's budget of records looked at).
fn published_tps(ring: Option<&Ring>) -> HashSet<u64> {
    let Some(ring) = ring else {
        return HashSet::new();
    };
    let l = ring.layout;
    let mut out = HashSet::new();
    for pos in ring.consumed..ring.consumed + l.capacity.min(DRAIN_BUDGET) {
        let off = ring::SLOTS + (pos & (l.capacity - 1)) * l.slot_size;
        if ring.map.load_u64(off + ring::SEQ) != (pos & !(l.capacity - 1)) + 1 {
            break;
        }
        out.insert(ring.map.load_u64(off + ring::TP));
    }
    out
}

/// Copies the published records out of `ring` and frees their slots, in
/// order, at most `budget` (and never more than the ring holds); with
/// `skip_unpublished`, a slot claimed but never published (its writer is
/// gone) is passed over. Err, with what was found, when the ring holds what
/// no detour writes (the records copied so far are not to be believed
/// either):
///
/// - an enqueue position below the records read, or more than a ring's
///   length above them (a producer claims position `p` only once rtrace
///   has freed `p - capacity`);
/// - a slot whose sequence word is neither free for this lap nor published
///   in it (rtrace freed it for this lap itself);
/// - a published record that changed while it was copied (producers never
///   write a published slot; only rtrace frees it).
fn take_records(
    ring: &mut Ring,
    skip_unpublished: bool,
    budget: u64,
) -> std::result::Result<Vec<u8>, String> {
    let l = ring.layout;
    let slot = l.slot_size as usize;
    let enqueued = ring.map.load_u64(ring::ENQUEUE);
    if enqueued < ring.consumed || enqueued - ring.consumed > l.capacity {
        return Err(format!(
            "its enqueue position is {enqueued}, with {} records read from a ring of {}",
            ring.consumed, l.capacity
        ));
    }
    let mut out = Vec::new();
    let mut taken = 0;
    while taken < l.capacity.min(budget) {
        let pos = ring.consumed;
        let off = ring::SLOTS + (pos & (l.capacity - 1)) * l.slot_size;
        let lap = pos & !(l.capacity - 1);
        let seq = ring.map.load_u64(off + ring::SEQ);
        if seq == lap && skip_unpublished && pos < enqueued {
            ring.map.store_u64(off + ring::SEQ, lap + l.capacity);
            ring.consumed += 1;
            taken += 1;
            continue;
        }
        if seq == lap {
            break;
        }
        if seq != lap + 1 {
            return Err(format!(
                "the slot of record {pos} has sequence word {seq:#x}, where {lap:#x} (free) or \
                 {:#x} (published) belongs",
                lap + 1
            ));
        }
        let at = out.len();
        out.resize(at + slot, 0);
        ring.map.read(off, &mut out[at..]);
        if ring.map.load_u64(off + ring::SEQ) != seq {
            return Err(format!("record {pos} was written while it was read"));
        }
        ring.map.store_u64(off + ring::SEQ, lap + l.capacity);
        ring.consumed += 1;
        taken += 1;
    }
    Ok(out)
}

/// Checks what a detour, the stub or a hook writes into record `rec` of a ring
/// serving `sites` fast sites (and a return stub, with `stub`): its kind,
/// its site index, an entry's watch, and its time stamp (within `stamps`).
/// Err says what no detour writes.
fn check_record(
    rec: &[u8],
    sites: usize,
    stub: bool,
    stamps: &std::ops::RangeInclusive<u64>,
) -> std::result::Result<(), String> {
    let word = |off: u64| {
        let at = off as usize;
        rec.get(at..at + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let (index, kind) = (word(ring::INDEX) as u32, word(ring::KIND) as u32);
    match kind {
        detour::KIND_ENTRY => {
            let watch = word(ring::RET_WATCH) as u32;
            if watch > detour::WATCH_FULL {
                return Err(format!("a record says its return is watched as {watch}"));
            }
        }
        detour::KIND_RETURN if stub => {}
        // rtrace's hook at `__cxa_begin_catch` (see `hooks`).
        detour::KIND_CATCH => {}
        _ => return Err(format!("a record is of kind {kind}")),
    }
    if index as usize >= sites {
        return Err(format!(
            "a record is of fast site {index}, of {sites} patched"
        ));
    }
    let tsc = word(ring::TSC);
    if !stamps.contains(&tsc) {
        return Err(format!(
            "a record's time stamp {tsc:#x} is outside the run ({:#x} to {:#x})",
            stamps.start(),
            stamps.end()
        ));
    }
    Ok(())
}

/// The lost counters of a ring that moved since they were last seen.
#[derive(Debug, Default, PartialEq, Eq)]
struct Losses {
    /// The total now.
    total: u64,
    /// (site index, its count now) of the sites whose counter moved.
    sites: Vec<(usize, u64)>,
    /// The return stub's count now, when it moved.
    stub: Option<u64>,
}

/// Reads the lost counters of `ring` when its total has moved since
/// `ring.lost_seen` (None when it has not): `seen` has each site's count as
/// last seen, `stub_seen` the return stub's (None: there is no stub, and
/// its counter must be 0), `elapsed` the time since they were read. Err
/// when they cannot be counts of lost records: a counter that went back, one
/// that leapt further than records can be lost in `elapsed`
/// ([`MAX_LOSSES_PER_NS`]), or a total above the sum of the counters (each
/// detour counts its own before the total).
fn read_losses(
    ring: &Ring,
    seen: &[u64],
    stub_seen: Option<u64>,
    elapsed: Duration,
) -> std::result::Result<Option<Losses>, String> {
    let total = ring.map.load_u64(ring::LOST_TOTAL);
    if total == ring.lost_seen {
        return Ok(None);
    }
    let most = u64::try_from(elapsed.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1_000_000)
        .saturating_mul(MAX_LOSSES_PER_NS);
    let moved = |what: &dyn Fn() -> String, before: u64, now: u64| {
        if now < before {
            Err(format!("{} went back from {before} to {now}", what()))
        } else if now - before > most {
            Err(format!(
                "{} leapt from {before} to {now} in {} ms",
                what(),
                elapsed.as_millis()
            ))
        } else {
            Ok(())
        }
    };
    moved(
        &|| "its count of lost records".into(),
        ring.lost_seen,
        total,
    )?;
    let mut sum = 0u128;
    let mut sites = Vec::new();
    for (i, &before) in seen.iter().enumerate() {
        let now = ring.map.load_u64(ring::LOST + 8 * i as u64);
        moved(&|| format!("the lost count of fast site {i}"), before, now)?;
        sum += u128::from(now);
        if now != before {
            sites.push((i, now));
        }
    }
    let stub_now = ring
        .map
        .load_u64(ring::LOST + 8 * u64::from(STUB_LOST_INDEX));
    moved(
        &|| "the return stub's lost count".into(),
        stub_seen.unwrap_or(0),
        stub_now,
    )?;
    if stub_seen.is_none() && stub_now != 0 {
        return Err(format!(
            "the return stub's lost count is {stub_now}, with no return stub"
        ));
    }
    sum += u128::from(stub_now);
    if sum < u128::from(total) {
        return Err(format!(
            "{total} records lost in all, {sum} by the counts of its sites"
        ));
    }
    Ok(Some(Losses {
        total,
        sites,
        stub: (Some(stub_now) != stub_seen && stub_seen.is_some()).then_some(stub_now),
    }))
}

/// Writes `code` (assembled for `at`, the room of area `area`) into the
/// tracee and takes its room; `what` names it in an error.
pub(super) fn write_code(
    space: &mut super::space::Space,
    area: usize,
    at: RuntimeAddr,
    code: &[u8],
    what: &str,
) -> std::result::Result<(), String> {
    if code.len() as u64 > DETOUR_ROOM {
        return Err(format!("{what} is too long"));
    }
    space
        .mem
        .write(at, code)
        .map_err(|e| format!("{what} cannot be written ({e})"))?;
    space.fast.areas[area].used += (code.len() as u64).div_ceil(16) * 16;
    Ok(())
}

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

/// What record `rec` captured, as `Hit` reads it.
fn captured(rec: &[u8], fields: &[CaptureField], regs: &crate::arch::Regs) -> Captured {
    let mut c = Captured::default();
    for f in fields {
        let at = f.offset as usize;
        let Some(status) = rec.get(at..at + 8) else {
            continue;
        };
        let status = u64::from_le_bytes(status.try_into().expect("8 bytes"));
        let len = ((status & detour::CAPTURE_LEN_MASK) as usize).min(f.max() as usize);
        let readable = status & detour::CAPTURE_UNREADABLE == 0;
        let bytes = rec.get(at + 8..at + 8 + len).unwrap_or_default().to_vec();
        match f.kind {
            CaptureKind::CStr { reg, .. } => c.strings.push(CapturedStr {
                ptr: regs.gpr(reg),
                bytes,
                terminated: status & detour::CAPTURE_TERMINATED != 0,
                readable,
            }),
            CaptureKind::Stack { .. } if readable => {
                c.stack = Some((regs.sp().wrapping_add(8), bytes));
            }
            CaptureKind::Stack { .. } => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::FileOffset;

    fn map(start: u64, end: u64, name: &str) -> Mapping {
        Mapping {
            start: RuntimeAddr(start),
            end: RuntimeAddr(end),
            read: true,
            write: false,
            exec: true,
            offset: FileOffset(0),
            dev: "00:00".into(),
            inode: 0,
            name: name.into(),
        }
    }

    #[test]
    fn areas_go_below_a_non_pie_executable() {
        let maps = [
            map(0x40_0000, 0x40_1000, "/bin/count"),
            map(0x40_1000, 0x40_2000, "/bin/count"),
            map(0x40_2000, 0x40_5000, "/bin/count"),
            map(0x7f00_0000_0000, 0x7f00_0010_0000, "/usr/lib/libc.so.6"),
            map(0x7ffd_0000_0000, 0x7ffd_0002_1000, "[stack]"),
        ];
        let at = place_area(&maps, Path::new("/bin/count"), 0x40_1136, AREA_SIZE).unwrap();
        // Right below it (one page free), not above it where brk starts.
        assert_eq!(at, 0x40_0000 - PAGE - AREA_SIZE);
        // Near libc: the gap below it.
        let at = place_area(&maps, Path::new("/bin/count"), 0x7f00_0000_5000, AREA_SIZE).unwrap();
        assert!(at + AREA_SIZE < 0x7f00_0000_0000);
        assert!(0x7f00_0000_5000 - at < 1 << 31);
        // Not right below the stack, which grows down.
        let at = place_area(&maps, Path::new("/bin/count"), 0x7ffd_0000_1000, AREA_SIZE).unwrap();
        assert!(at + AREA_SIZE <= 0x7ffd_0000_0000 - GROWTH_ROOM, "{at:#x}");
    }

    #[test]
    fn no_area_when_nothing_within_reach_is_free() {
        let maps = [
            map(0x10000, 0x1_0000_0000, "/bin/huge"),
            map(0x1_0000_0000, 0x2_0000_0000, "[heap]"),
        ];
        assert_eq!(
            place_area(&maps, Path::new("/bin/huge"), 0x8000_0000, AREA_SIZE),
            None
        );
    }

    #[test]
    fn the_heap_keeps_room_to_grow() {
        let maps = [
            map(0x55_0000_0000, 0x55_0000_5000, "/bin/pie"),
            map(0x55_0001_0000, 0x55_0002_0000, "[heap]"),
            map(0x7f00_0000_0000, 0x7f00_0010_0000, "/usr/lib/libc.so.6"),
        ];
        let at = place_area(&maps, Path::new("/bin/pie"), 0x55_0000_1000, AREA_SIZE).unwrap();
        assert!(at + AREA_SIZE < 0x55_0000_0000, "{at:#x}");
    }

    #[test]
    fn reasons_of_many_sites_are_grouped_by_what_refused_them() {
        assert_eq!(
            general_reason(
                "the function jumps indirectly ('jmp rax' at 0x7ff98328a7b4): a jump \
                 table could land inside the bytes a jump would replace"
            ),
            "the function jumps indirectly ('…' at …): a jump table could land inside \
             the bytes a jump would replace"
        );
        assert_eq!(
            general_reason("'call 00007F2710DC8690h' is a call (its return address would point into the detour)"),
            "'…' is a call (its return address would point into the detour)"
        );
        assert_eq!(
            general_reason(
                "code at 0x7fdc4327c7c6 (__mempcpy_avx512_unaligned_erms+0x6) jumps to \
                 0x7fdc4327c803, inside the bytes a jump would replace"
            ),
            "code at … jumps to …, inside the bytes a jump would replace"
        );
        assert_eq!(general_reason("no ring: it failed"), "no ring: it failed");
    }

    /// A ring of `capacity` slots of 256 bytes over a file of its own (as
    /// the memfd is), all zero: empty.
    fn test_ring(capacity: u64) -> Ring {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("rtrace-ring-{}-{n}", std::process::id()));
        std::fs::File::create(&path).unwrap();
        let layout = RingLayout {
            base: 0x7f00_0000_0000,
            capacity,
            slot_size: 256,
        };
        let map = SharedMap::open(&path, layout.size() as usize).unwrap();
        std::fs::remove_file(&path).unwrap();
        Ring {
            map: std::sync::Arc::new(map),
            _watchman: None,
            layout,
            consumed: 0,
            lost_seen: 0,
            lost_at: Instant::now(),
        }
    }

    /// Writes and publishes the record of position `pos`, as a detour does
    /// (the enqueue position claimed past it).
    fn publish(ring: &Ring, pos: u64, index: u32, tp: u64, tsc: u64) {
        let l = ring.layout;
        let off = ring::SLOTS + (pos & (l.capacity - 1)) * l.slot_size;
        ring.map.store_u64(off + ring::INDEX, u64::from(index));
        ring.map.store_u64(off + ring::TP, tp);
        ring.map.store_u64(off + ring::TSC, tsc);
        ring.map
            .store_u64(off + ring::SEQ, (pos & !(l.capacity - 1)) + 1);
        let enq = ring.map.load_u64(ring::ENQUEUE).max(pos + 1);
        ring.map.store_u64(ring::ENQUEUE, enq);
    }

    /// Fills the whole ring as a program that writes over it would.
    fn scribble(ring: &Ring, seed: &mut u64, byte: Option<u8>) {
        let mut bytes = vec![0u8; ring.map.len()];
        for b in &mut bytes {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = byte.unwrap_or((*seed >> 56) as u8);
        }
        ring.map.write(0, &bytes);
    }

    #[test]
    fn published_records_are_taken_in_order_and_their_slots_freed() {
        let mut r = test_ring(16);
        for pos in 0..20 {
            publish(&r, pos, pos as u32, 7, 100 + pos);
            if pos == 9 {
                let got = take_records(&mut r, false, 64).unwrap();
                assert_eq!(got.len(), 10 * 256);
                assert_eq!(r.consumed, 10);
            }
        }
        let got = take_records(&mut r, false, 64).unwrap();
        let tscs: Vec<u64> = got
            .chunks(256)
            .map(|rec| u64::from_le_bytes(rec[24..32].try_into().unwrap()))
            .collect();
        assert_eq!(tscs, (110..120).collect::<Vec<_>>());
        // Freed for the next lap: nothing more, and the ring is idle.
        assert!(take_records(&mut r, false, 64).unwrap().is_empty());
        assert!(ring_idle(&r));
        // A slot claimed but never published stops a drain, and is passed
        // over by the last one.
        r.map.store_u64(ring::ENQUEUE, 21);
        publish(&r, 21, 0, 7, 0);
        assert!(take_records(&mut r, false, 64).unwrap().is_empty());
        assert_eq!(take_records(&mut r, true, 64).unwrap().len(), 256);
        assert_eq!(r.consumed, 22);
    }

    #[test]
    fn a_ring_written_over_is_corrupt_and_nothing_of_it_is_read() {
        // Every value no detour writes, one at a time.
        let mut r = test_ring(16);
        publish(&r, 0, 0, 7, 100);
        take_records(&mut r, false, 64).unwrap();
        let cases: [(&str, u64, u64); 4] = [
            ("enqueue position", ring::ENQUEUE, u64::MAX),
            ("enqueue position", ring::ENQUEUE, 0),
            ("enqueue position", ring::ENQUEUE, 1 + 16 + 1),
            ("sequence word", ring::SLOTS + 256 + ring::SEQ, 0xdead_beef),
        ];
        for (what, off, value) in cases {
            let mut r = test_ring(16);
            publish(&r, 0, 0, 7, 100);
            take_records(&mut r, false, 64).unwrap();
            publish(&r, 1, 0, 7, 100);
            r.map.store_u64(off, value);
            let e = take_records(&mut r, false, 64).expect_err(what);
            assert!(e.contains(what), "{e}");
            assert_eq!(r.consumed, 1, "{what}: nothing taken");
            assert!(!ring_idle(&r) || off == ring::ENQUEUE, "{what}");
        }
        // All 0xff, all zeros, and random bytes, many times: an error every
        // time, never a panic, never more than the budget looked at.
        let mut seed = 1;
        for round in 0..200 {
            let mut r = test_ring(16);
            publish(&r, 0, 0, 7, 100);
            take_records(&mut r, false, 64).unwrap();
            let byte = match round % 3 {
                0 => Some(0xff),
                1 => Some(0),
                _ => None,
            };
            scribble(&r, &mut seed, byte);
            let taken = take_records(&mut r, round % 2 == 0, 8);
            assert!(taken.is_err(), "round {round}: {taken:?}");
            assert!(published_tps(Some(&r)).len() <= 16);
        }
    }

    #[test]
    fn a_full_looking_ring_is_read_a_ring_at_a_time() {
        // Every slot published, the position a ring ahead: legal, and read
        // in budgets, never more than the ring holds.
        let mut r = test_ring(16);
        for pos in 0..16 {
            publish(&r, pos, 0, pos, 100);
        }
        assert_eq!(published_tps(Some(&r)).len(), 16);
        assert_eq!(take_records(&mut r, false, 5).unwrap().len(), 5 * 256);
        assert_eq!(take_records(&mut r, true, 100).unwrap().len(), 11 * 256);
        assert!(take_records(&mut r, true, 100).unwrap().is_empty());
    }

    #[test]
    fn records_no_detour_writes_are_refused() {
        let stamps = 1000..=2000;
        let rec = |index: u32, kind: u32, watch: u32, tsc: u64| {
            let mut rec = vec![0u8; 256];
            rec[8..12].copy_from_slice(&index.to_le_bytes());
            rec[12..16].copy_from_slice(&kind.to_le_bytes());
            rec[24..32].copy_from_slice(&tsc.to_le_bytes());
            rec[176..180].copy_from_slice(&watch.to_le_bytes());
            rec
        };
        assert_eq!(check_record(&rec(2, 0, 1, 1500), 3, false, &stamps), Ok(()));
        assert_eq!(check_record(&rec(2, 1, 9, 1500), 3, true, &stamps), Ok(()));
        assert_eq!(check_record(&rec(2, 2, 0, 1500), 3, true, &stamps), Ok(()));
        let bad = [
            (rec(3, 0, 0, 1500), false, "fast site 3, of 3"),
            (rec(u32::MAX, 0, 0, 1500), false, "fast site"),
            (rec(0, 7, 0, 1500), false, "kind 7"),
            (rec(0, 1, 0, 1500), false, "kind 1"),
            (rec(0, 0, 4, 1500), false, "watched as 4"),
            (rec(0, 0, 0, 999), false, "time stamp"),
            (rec(0, 0, 0, u64::MAX), true, "time stamp"),
        ];
        for (rec, stub, what) in bad {
            let e = check_record(&rec, 3, stub, &stamps).expect_err(what);
            assert!(e.contains(what), "{e}");
        }
        // A truncated record reads as zeros, never panics.
        assert!(check_record(&[0xff; 10], 3, true, &stamps).is_err());
    }

    #[test]
    fn lost_counters_that_cannot_be_counts_are_refused() {
        let ms = Duration::from_millis(2);
        let r = test_ring(16);
        // Nothing lost: nothing to read.
        assert_eq!(read_losses(&r, &[0, 0], Some(0), ms), Ok(None));
        // Five of site 1, two of the stub.
        r.map.store_u64(ring::LOST + 8, 5);
        r.map
            .store_u64(ring::LOST + 8 * u64::from(STUB_LOST_INDEX), 2);
        r.map.store_u64(ring::LOST_TOTAL, 7);
        let l = read_losses(&r, &[0, 0], Some(0), ms).unwrap().unwrap();
        assert_eq!(
            l,
            Losses {
                total: 7,
                sites: vec![(1, 5)],
                stub: Some(2)
            }
        );
        // A site counted before the total: fine.
        r.map.store_u64(ring::LOST, 1);
        assert!(read_losses(&r, &[0, 0], Some(0), ms).unwrap().is_some());
        let cases: [(&str, u64, u64); 4] = [
            ("leapt", ring::LOST_TOTAL, u64::MAX),
            ("leapt", ring::LOST + 8, u64::MAX),
            ("in all", ring::LOST_TOTAL, 100),
            ("went back", ring::LOST + 8, 4),
        ];
        for (what, off, value) in cases {
            let r = test_ring(16);
            r.map.store_u64(ring::LOST + 8, 5);
            r.map.store_u64(ring::LOST_TOTAL, 6);
            r.map.store_u64(off, value);
            let e = read_losses(&r, &[0, 5], Some(0), ms)
                .map(|_| ())
                .expect_err(what);
            assert!(e.contains(what), "{what}: {e}");
        }
        // The stub's counter, with no stub.
        let r = test_ring(16);
        r.map.store_u64(ring::LOST_TOTAL, 1);
        r.map
            .store_u64(ring::LOST + 8 * u64::from(STUB_LOST_INDEX), 1);
        let e = read_losses(&r, &[0], None, ms).unwrap_err();
        assert!(e.contains("no return stub"), "{e}");
        // The total going back.
        let mut r = test_ring(16);
        r.lost_seen = 10;
        r.map.store_u64(ring::LOST_TOTAL, 3);
        let e = read_losses(&r, &[10], Some(0), ms).unwrap_err();
        assert!(e.contains("went back from 10 to 3"), "{e}");
    }

    #[test]
    fn the_clock_maps_ticks_to_time() {
        let clock = TscClock {
            tsc0: 1000,
            t0: Duration::from_micros(5),
            ns_per_tick: 0.5,
        };
        assert_eq!(clock.time(3000), Duration::from_nanos(6000));
        assert_eq!(clock.time(0), Duration::from_nanos(4500));
    }
}
