//! Writing and undoing the jumps: the detour areas (placed within a
//! `jmp rel32`'s reach of the code they serve, [`place_area`]), the ring
//! (a memfd mapped in the tracee and here), the return stub and its table,
//! the detours, the jumps (`Tracer::patch_fast`) and taking them off again
//! (`Tracer::unpatch_fast`), always with every thread of the space
//! stopped.

use std::path::Path;
use std::time::Instant;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::{
    self, ring, table, DetourSpec, ReturnSpec, RingLayout, StubSpec, ThreadPointer,
};
use crate::arch::{BREAKPOINT_LEN, SCRATCH_SYSCALL_OFFSET};
use crate::engine::guards::World;
use crate::engine::task::TaskState;
use crate::engine::tracer::{Overflow, Tracer};
use crate::error::{Error, Result};
use crate::symbols::maps::Mapping;
use crate::sys::ptrace;
use crate::sys::shm::{self, SharedMap};

use super::plan::Planned;
use super::refusal::Refusal;
use super::state::{Area, FastSite, ReturnStub, Ring, Trampoline, AREA_SIZE, STUB_INDEX};

/// Room left free above the heap (or where `brk` starts) and below the
/// stack, which grow into it.
pub(super) const GROWTH_ROOM: u64 = 1 << 30;

/// Room kept for one detour: the longest one rtrace generates (a few
/// captures, five displaced instructions) is well under this.
pub(super) const DETOUR_ROOM: u64 = 2048;

/// About how much shared memory a ring takes.
pub(super) const RING_BYTES: u64 = 16 << 20;

/// Bounds of a ring's slot count.
pub(super) const MIN_SLOTS: u64 = 1024;

pub(super) const MAX_SLOTS: u64 = 65536;

/// The memfd's name, written into the scratch page for `memfd_create`
/// (bytes 8..20: past the scratch code, before the out-of-line slots).
pub(super) const RING_NAME: &[u8] = b"rtrace-ring\0";

pub(super) const RING_NAME_OFFSET: i64 = 8;

/// The end of the user address space mappings go below without asking
/// for more (x86-64's 47 bits, less the guard page: `TASK_SIZE_MAX`).
pub(super) const USER_END: u64 = (1 << 47) - PAGE;

/// Lowest address an area may take (`vm.mmap_min_addr`'s usual value).
pub(super) const MIN_ADDR: u64 = 0x10000;

pub(super) const PAGE: u64 = 4096;

/// The address for an area of `size` bytes nearest `near` among the gaps of
/// `maps` (sorted), or None when no gap within reach of a `jmp rel32` has
/// room. Room is left where a mapping grows: above the heap (or, with no
/// heap yet, above the executable's last mapping, where `brk` starts), and
/// below the stack.
pub(crate) fn place_area(maps: &[Mapping], exe: &Path, near: u64, size: u64) -> Option<u64> {
    place_area_within(maps, exe, near, size, NEAR)
}

/// How far from the code it serves a detour area may be, for a `jmp rel32`
/// to reach every detour in it.
pub(super) const NEAR: u64 = (1u64 << 31) - 2 * AREA_SIZE;

/// [`place_area`] within `reach` of `near` (anywhere: `u64::MAX`).
pub(crate) fn place_area_within(
    maps: &[Mapping],
    exe: &Path,
    near: u64,
    size: u64,
    reach: u64,
) -> Option<u64> {
    let mut best: Option<u64> = None;
    for (lo, hi) in gaps(maps, exe) {
        if hi < lo + size {
            continue;
        }
        let want = near & !(PAGE - 1);
        let at = want.clamp(lo, hi - size);
        let far = at.abs_diff(near).max((at + size).abs_diff(near));
        if far >= reach {
            continue;
        }
        if best.is_none_or(|b| at.abs_diff(near) < b.abs_diff(near)) {
            best = Some(at);
        }
    }
    best
}

/// The stretches of the address space between `maps` (sorted) where
/// rtrace may map something: a page kept free on each side, and room left
/// where a mapping grows (above the heap, or, with no heap yet, above the
/// executable's last mapping, where `brk` starts; below the stack).
pub(super) fn gaps(maps: &[Mapping], exe: &Path) -> Vec<(u64, u64)> {
    let exe_last = maps
        .iter()
        .filter(|m| Path::new(&m.name) == exe)
        .map(|m| m.end.get())
        .max();
    let mut gaps = Vec::new();
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
        // (Past the user address space: the vsyscall page, the kernel's.)
        let hi = hi.min(USER_END);
        // One page free on each side.
        let (lo, hi) = (lo + PAGE, hi.saturating_sub(PAGE));
        if hi > lo {
            gaps.push((lo, hi));
        }
        prev_end = prev_end.max(m.end.get());
        prev = Some(m);
    }
    gaps
}

/// Writes `code` (assembled for `at`, the room of area `area`) into the
/// tracee and takes its room; `what` names it in an error.
pub(super) fn write_code(
    space: &mut crate::engine::space::Space,
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

/// Writes the jump of `patch` to `detour` into the tracee (a hop's fill
/// first, kept in the space's fills), and returns the bytes now at the
/// site.
pub(super) fn write_jump(
    space: &mut crate::engine::space::Space,
    patch: &detour::Patch,
    detour: RuntimeAddr,
) -> std::result::Result<Vec<u8>, String> {
    let writes = detour::jump(patch, detour.get()).ok_or("its detour is out of a jump's reach")?;
    let mut at_site = Vec::new();
    for (at, bytes) in writes {
        space
            .mem
            .write(RuntimeAddr(at), &bytes)
            .map_err(|e| format!("the jump cannot be written ({e})"))?;
        match at == patch.addr {
            true => at_site = bytes,
            false => {
                let saved = patch
                    .fill
                    .as_ref()
                    .map(|f| f.saved.clone())
                    .unwrap_or_default();
                let undo = crate::engine::space::Undo {
                    saved,
                    written: bytes,
                };
                space.fills.insert(RuntimeAddr(at), undo);
            }
        }
    }
    Ok(at_site)
}

impl Tracer {
    /// Takes the jump off any fast site of space `key` whose replaced bytes
    /// hold `addr`, before a breakpoint is armed there (an int3 written into
    /// a jump would break it; a site that gets another owner is an int3).
    pub(super) fn clear_jumps_at(&mut self, key: Pid, addr: RuntimeAddr) -> Result<()> {
        let covering = self
            .world
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
        let Some(space) = self.world.spaces.get_mut(&key) else {
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
            let reason = Refusal::RingCorrupt(why);
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
                    space
                        .fast
                        .refused
                        .entry(a)
                        .or_insert_with(|| Refusal::NoInjection(why.clone()));
                }
            }
            return Ok(());
        }
        space.fast.dirty = false;
        let candidates: Vec<RuntimeAddr> = space
            .sites
            .iter()
            .filter(|(a, s)| {
                s.fast.is_none()
                    && !s.probes.is_empty()
                    && !space.fast.refused.contains_key(a)
                    && !space.fast.first_hit.contains(a)
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
        let written = match self.unfast_hooks(key) {
            Ok(()) if plans.is_empty() && self.plan_hooks(key).is_empty() => Ok(()),
            Ok(()) => self.with_world_stopped(World::Space(key), |t, quiet| {
                if !plans.is_empty() {
                    t.patch_planned(key, plans, quiet, false)?;
                }
                // After the user's sites: the ring and the stub exist now.
                t.patch_planned_hooks(key, quiet)
            }),
            Err(e) => Err(e),
        };
        // The batch is written (a far detour's fill, chosen as its site
        // was, kept clear of the others' bytes and fills): what was
        // planned and not written is free again for the next batch.
        if let Some(space) = self.world.spaces.get_mut(&key) {
            space.fast.planned.clear();
        }
        written
    }

    /// Thread `tid` (of space `key`) is stopped at the int3 of `addr`, a
    /// site waiting for its first hit to be patched (see
    /// [`FastState::first_hit`]), its registers `regs` (the instruction
    /// pointer at `addr`): with every other thread of the space stopped, the
    /// site is patched, as the kernel optimises a uprobe at its first hit.
    /// The thread is at the site, not inside the bytes; it runs the probed
    /// instruction (the caller's) and goes on through the detour's copies
    /// of the rest (the hit itself is this stop's). None when the site
    /// stays an int3 (a thread is inside its bytes again: the next hit
    /// tries; or it was refused since).
    pub(super) fn patch_at_hit(
        &mut self,
        tid: Tid,
        key: Pid,
        addr: RuntimeAddr,
        regs: &crate::arch::Regs,
    ) -> Result<Option<super::Patched>> {
        let waiting = self
            .world
            .spaces
            .get_mut(&key)
            .is_some_and(|s| s.fast.first_hit.remove(&addr));
        if !waiting || self.halting {
            return Ok(None);
        }
        ptrace::setregs(tid, regs)?;
        self.with_world_stopped(World::Space(key), |t, quiet| {
            let written = match t.plan_fast(key, addr) {
                Ok(plan) => t.patch_planned(key, vec![plan], quiet, true),
                Err(why) => t.space_mut(key).map(|s| {
                    s.fast.refused.insert(addr, why);
                }),
            };
            let space = t.space_mut(key)?;
            space.fast.planned.clear();
            written?;
            let index = space.sites.get(addr).and_then(|s| s.fast);
            Ok(index
                .and_then(|i| space.fast.sites.get(i as usize))
                .map(|f| super::Patched {
                    len: f.len as u64,
                    displaced: f.detour.displaced,
                    after_first: f.detour.after_first,
                    detour: (f.at.get(), f.detour.code.len() as u64),
                }))
        })
    }

    /// See [`super::run_copy`].
    pub(super) fn run_copy(
        &mut self,
        tid: Tid,
        regs: &crate::arch::Regs,
        patched: &super::Patched,
    ) -> Result<super::AtHit> {
        use crate::engine::step::StepEnd;
        let mut at_copy = *regs;
        at_copy.set_ip(patched.displaced);
        ptrace::setregs(tid, &at_copy)?;
        let (at, len) = patched.detour;
        for _ in 0..16 {
            let ip = ptrace::getregs(tid)?.ip();
            if ip == patched.after_first || !(at..at + len).contains(&ip) {
                break;
            }
            match self.single_step(tid)? {
                StepEnd::Done => {}
                StepEnd::Gone => return Ok(super::AtHit::Gone),
                StepEnd::Faulted(signal) if self.emulate_rdtsc(tid, signal)? => {}
                StepEnd::Faulted(signal) => {
                    // It did not complete (x86 faults are precise; a moved
                    // call's push is undone with the registers): the
                    // thread goes back to the site, where the program gets
                    // the signal as untraced.
                    ptrace::setregs(tid, regs)?;
                    return Ok(super::AtHit::Faulted(signal));
                }
            }
        }
        Ok(super::AtHit::Ran(Box::new(ptrace::getregs(tid)?)))
    }

    /// With every thread of space `key` stopped, patches rtrace's hooks
    /// that can be fast.
    pub(super) fn patch_planned_hooks(&mut self, key: Pid, quiet: &[Tid]) -> Result<()> {
        let hooks = self.plan_hooks(key);
        if hooks.is_empty() {
            return Ok(());
        }
        let Some(tid) = self.injector(key, quiet) else {
            self.space_mut(key)?.fast.dirty = true;
            return Ok(());
        };
        let ips: Vec<u64> = self
            .world
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

    /// The thread of space `key` to make system calls with: stopped, not
    /// stepping, with nothing waiting to be handled (one of `quiet` first).
    pub(super) fn injector(&self, key: Pid, quiet: &[Tid]) -> Option<Tid> {
        let waiting: Vec<Tid> = self.world.deferred.iter().map(|s| s.tid()).collect();
        let usable = |tid: &Tid| {
            self.world.tasks.get(tid).is_some_and(|t| {
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
            .or_else(|| self.world.tasks.keys().copied().find(|t| usable(t)))
    }

    /// With every thread of space `key` stopped: makes the ring if needed,
    /// and patches `plans`.
    pub(super) fn patch_planned(
        &mut self,
        key: Pid,
        mut plans: Vec<Planned>,
        quiet: &[Tid],
        at_hit: bool,
    ) -> Result<()> {
        let Some(tid) = self.injector(key, quiet) else {
            // Try again later.
            self.space_mut(key)?.fast.dirty = true;
            return Ok(());
        };
        // Where every thread is (and its thread pointer), and where the
        // signal handlers they are in will return to.
        let (mut ips, past_traps) = self.note_stopped_threads(key);
        ips.extend(self.signal_returns(key));
        let stepping: Vec<RuntimeAddr> = self
            .world
            .tasks
            .values()
            .filter(|t| t.space == key)
            .filter_map(|t| t.step.as_ref().map(|s| s.site))
            .collect();
        if self.world.spaces[&key].fast.ring.is_none() {
            let slot = plans
                .iter()
                .map(|p| {
                    let ret = (ring::RET_STRING + 8 + u64::from(p.ret_string)).div_ceil(64) * 64;
                    detour::layout_captures(&p.kinds, p.regs).1.max(ret)
                })
                .max()
                .unwrap_or(ring::MIN_SLOT)
                .max(ring::MIN_SLOT);
            if let Err(why) = self.make_ring(key, tid, slot, None, false) {
                let space = self.space_mut(key)?;
                space.fast.broken = Some(why.clone());
                for p in plans {
                    space
                        .fast
                        .refused
                        .insert(p.addr, Refusal::NoRing(why.clone()));
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
        if stub_wanted && self.world.spaces[&key].fast.stub.is_none() {
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
                                    .insert(p.addr, Refusal::NoStub(why.clone()));
                            }
                            false => kept.push(p),
                        }
                    }
                    plans = kept;
                }
            }
        }
        // Calls are timed in the program only while every site of the batch
        // that watches returns can be: a call timed and one recorded cannot
        // share a slot (a tail call from one to the other), and its return
        // would be missed. Nor where a function jumps out of itself: a tail
        // call into a function that reads its own return address (dlsym)
        // has that given back by its hook, past the stub, and a timed call
        // could not be followed to its return, where a recorded one is.
        let rows = self.world.spaces[&key]
            .fast
            .sites
            .iter()
            .filter(|f| f.timed.is_some())
            .count();
        let watching = plans.iter().filter(|p| p.returns);
        let untimed = watching.clone().any(|p| !p.timed || p.patch.tail_calls);
        if untimed || rows + watching.filter(|p| p.timed).count() > ring::MAX_TIMED as usize {
            for p in plans.iter_mut() {
                p.timed = false;
            }
        }
        for plan in plans {
            let addr = plan.addr;
            // A thread inside the bytes (or stepping over the site's int3,
            // or in a signal handler that will return inside them) now: the
            // site is an int3 until its first hit, whose stop shows that
            // thread out of them. So too every site, when asked.
            // A thread stopped by a trap not yet handled just past this
            // site's int3 is not inside: it goes back to the site when its
            // trap is (a hit the int3 way), wherever it trapped.
            let trapped_elsewhere = past_traps
                .iter()
                .any(|&ip| ip != addr.get() + BREAKPOINT_LEN && plan.patch.splits(ip));
            if ips.iter().any(|&ip| plan.patch.splits(ip))
                || trapped_elsewhere
                || stepping.contains(&addr)
                || (self.opts.first_hit && !at_hit)
            {
                self.space_mut(key)?.fast.first_hit.insert(addr);
                continue;
            }
            if let Err(why) = self.patch_one(key, tid, plan, tp) {
                self.space_mut(key)?
                    .fast
                    .refused
                    .insert(addr, Refusal::Failed(why));
            }
        }
        Ok(())
    }

    /// Writes the detour of `plan` and its jump.
    pub(super) fn patch_one(
        &mut self,
        key: Pid,
        tid: Tid,
        mut plan: Planned,
        tp: ThreadPointer,
    ) -> std::result::Result<(), String> {
        let near = match plan.patch.pun_free {
            0 => plan.addr,
            _ => match self.pun_at(key, tid, &plan.patch) {
                Ok(at) => {
                    plan.patch.pun = Some(at.get());
                    at
                }
                // Nowhere for the pun's jump: the successor is evicted,
                // if it can be.
                Err(why) if plan.patch.evict.is_some() => self
                    .evict_at(key, tid, &mut plan.patch)
                    .map_err(|e| format!("{why}; {e}"))?,
                Err(why) => return Err(why),
            },
        };
        let layout = self.ring_layout(key)?;
        let (captures, record) = detour::layout_captures(&plan.kinds, plan.regs);
        let record = record.max(ring::RET_STRING + 8 + u64::from(plan.ret_string));
        if record > layout.slot_size {
            return Err(format!(
                "its captures do not fit the ring's records ({} bytes)",
                layout.slot_size
            ));
        }
        // No room within a jump's reach (the address space around the code
        // is taken): the detour goes anywhere, and the site's jump leads to
        // an indirect jump written into the module's dead fill.
        let (area, at, far) = match self.room_near(key, tid, near) {
            Ok((area, at)) => (area, at, None),
            Err(why) => {
                let space = &self.world.spaces[&key];
                let m = space.modules.module_at(plan.addr).ok_or(why.clone())?;
                let far = super::plan::far_fill(space, m, plan.addr).ok_or(why)?;
                let (area, at) = self.room_within(key, tid, near, u64::MAX)?;
                (area, at, Some(far))
            }
        };
        let space = self
            .world
            .spaces
            .get_mut(&key)
            .ok_or("the process is gone")?;
        // Where errno is, for a site whose handlers read it (0 without
        // libc: not copied), as the int3 probes' claims have it.
        let errno_tpoff = match plan.errno {
            true => super::int3::errno_tpoff(space),
            false => 0,
        };
        let index = space.fast.sites.len() as u32;
        // (The ring's counters above are the int3 sites'.)
        if index >= super::int3::int3_index(super::int3::MAX_INT3_SITES) {
            return Err("the ring has no counters left for it".into());
        }
        // Timed in the program while the ring has rows left; recorded past
        // that.
        let timed = match plan.timed {
            true => {
                let rows = space
                    .fast
                    .sites
                    .iter()
                    .filter(|f| f.timed.is_some())
                    .count();
                u32::try_from(rows)
                    .ok()
                    .filter(|&r| u64::from(r) < ring::MAX_TIMED)
            }
            false => None,
        };
        let spec = DetourSpec {
            at: at.get(),
            ring: layout,
            index,
            regs: plan.regs,
            captures: &captures,
            tp,
            returns: match plan.returns {
                true => space.fast.stub.as_ref().map(|s| ReturnSpec {
                    stub: s.stub.entry,
                    table: s.table.get(),
                    ret_string: plan.ret_string,
                    errno: errno_tpoff,
                    ret_buffer: plan.ret_buffer,
                }),
                false => None,
            },
            block: self.opts.overflow == Overflow::Block,
            count_only: plan.count_only,
            timed,
        };
        if plan.returns && spec.returns.is_none() {
            return Err("no return stub".into());
        }
        let code = detour::assemble_detour(&plan.patch, &spec)?;
        let to = far.as_ref().map_or(at, |f| RuntimeAddr(f.at));
        detour::jump(&plan.patch, to.get()).ok_or("its detour is out of a jump's reach")?;
        write_code(space, area, at, &code.code, "its detour")?;
        let mut outside = Vec::new();
        if let Some(f) = far {
            let bytes = detour::far_jump(at.get());
            space
                .mem
                .write(RuntimeAddr(f.at), &bytes)
                .map_err(|e| format!("the jump cannot be written ({e})"))?;
            outside.push((RuntimeAddr(f.at), bytes.len() as u64));
            let undo = crate::engine::space::Undo {
                saved: f.saved,
                written: bytes,
            };
            space.fills.insert(RuntimeAddr(f.at), undo);
        }
        let jump = write_jump(space, &plan.patch, to)?;
        if let Some(at) = plan.patch.pun {
            outside.push((RuntimeAddr(at), detour::JMP_LEN as u64));
        }
        let trampoline = plan.patch.evict.as_ref().and_then(|e| {
            Some(Trampoline {
                at: RuntimeAddr(e.at?),
                room: e.trampoline_room(),
                successor: RuntimeAddr(e.addr()),
            })
        });
        if let Some(f) = &plan.patch.fill {
            outside.push((RuntimeAddr(f.at), detour::JMP_LEN as u64));
        }
        let site = space.sites.get_mut(plan.addr).ok_or("the site is gone")?;
        site.saved = plan.patch.saved.clone();
        site.written = jump;
        site.deferred = false;
        site.fast = Some(index);
        space.fast.sites.push(FastSite {
            addr: plan.addr,
            len: plan.patch.len,
            at,
            detour: code,
            regs: detour::entry_regs(plan.regs),
            captures,
            probes: plan.probes,
            lost: 0,
            ret_lost: 0,
            count_only: plan.count_only,
            counted: 0,
            timed,
            timed_seen: None,
            live: true,
            hook: None,
            outside,
            trampoline,
        });
        // From now on rtrace claims no table entry from outside (see
        // `int3`): this detour claims them in the program.
        space.fast.detours_claim |= plan.returns || plan.timed;
        Ok(())
    }

    /// Makes the return stub of space `key` (by `tid`, stopped): the table,
    /// a private anonymous mapping, and the stub's code in a detour area
    /// (near `near`, as good as anywhere: the stub is reached by `ret`).
    pub(super) fn make_stub(
        &mut self,
        key: Pid,
        tid: Tid,
        near: RuntimeAddr,
        tp: ThreadPointer,
    ) -> std::result::Result<(), String> {
        let layout = self.ring_layout(key)?;
        let scratch = self.world.spaces[&key].scratch.ok_or("no scratch page")?;
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
        let block = self.opts.overflow == Overflow::Block;
        let made = (|| {
            let (area, at) = self
                .room_near(key, tid, near)
                .or_else(|_| self.room_within(key, tid, near, u64::MAX))?;
            let space = self
                .world
                .spaces
                .get_mut(&key)
                .ok_or("the process is gone")?;
            let stub = detour::assemble_stub(&StubSpec {
                at: at.get(),
                ring: layout,
                table,
                tp,
                none_index: STUB_INDEX,
                block,
            })?;
            write_code(space, area, at, &stub.code, "the return stub")?;
            space.fast.stub = Some(ReturnStub {
                stub,
                table: RuntimeAddr(table),
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
        self.world
            .spaces
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
        self.room_within(key, tid, near, NEAR)
    }

    /// [`Tracer::room_near`] within `reach` of `near` (`u64::MAX`:
    /// anywhere).
    pub(super) fn room_within(
        &mut self,
        key: Pid,
        tid: Tid,
        near: RuntimeAddr,
        reach: u64,
    ) -> std::result::Result<(usize, RuntimeAddr), String> {
        let area = self.area_near(key, tid, near, reach)?;
        let a = self.world.spaces[&key].fast.areas[area];
        Ok((area, a.base.offset(a.used as i64)))
    }

    /// An area of space `key` with room for a detour within `reach` of
    /// `addr`, mapped (by `tid`) if there is none.
    pub(super) fn area_near(
        &mut self,
        key: Pid,
        tid: Tid,
        addr: RuntimeAddr,
        reach: u64,
    ) -> std::result::Result<usize, String> {
        let space = &self.world.spaces[&key];
        if let Some(i) = space.fast.areas.iter().position(|a| {
            a.used + DETOUR_ROOM <= AREA_SIZE && a.base.get().abs_diff(addr.get()) < reach
        }) {
            return Ok(i);
        }
        let maps = crate::symbols::maps::read(space.pid).map_err(|e| e.to_string())?;
        let at = place_area_within(&maps, space.exe(), addr.get(), AREA_SIZE, reach)
            .ok_or("no free address range within reach of a jump")?;
        self.map_code(key, tid, at, AREA_SIZE)
            .map_err(|e| format!("no detour area could be mapped where a jump reaches ({e})"))?;
        let space = self
            .world
            .spaces
            .get_mut(&key)
            .ok_or("the process is gone")?;
        space.fast.areas.push(Area {
            base: RuntimeAddr(at),
            used: 0,
        });
        Ok(space.fast.areas.len() - 1)
    }

    /// Where the jump of pun `patch` (space `key`) leads: a free place in
    /// its window, in a page of puns already mapped, or in one mapped (by
    /// `tid`) in a gap of the address space. Taken.
    fn pun_at(
        &mut self,
        key: Pid,
        tid: Tid,
        patch: &detour::Patch,
    ) -> std::result::Result<RuntimeAddr, String> {
        const LEN: u64 = detour::JMP_LEN as u64;
        let (lo, hi) = patch.pun_window().ok_or("not a pun")?;
        if lo < MIN_ADDR || hi >= USER_END {
            return Err("an instruction pun's jump would leave the address space".into());
        }
        let space = &self.world.spaces[&key];
        for (i, page) in space.fast.puns.iter().enumerate() {
            let (from, to) = (
                lo.max(page.base.get()),
                hi.min(page.base.get() + page.size - LEN),
            );
            if let Some(at) = (from..=to).find(|&at| page.free(at, LEN)) {
                self.world
                    .spaces
                    .get_mut(&key)
                    .ok_or("the process is gone")?
                    .fast
                    .puns[i]
                    .used
                    .push((at, LEN));
                return Ok(RuntimeAddr(at));
            }
        }
        let maps = crate::symbols::maps::read(space.pid).map_err(|e| e.to_string())?;
        let size = 2 * PAGE;
        let base = place_area(&maps, space.exe(), lo & !(PAGE - 1), size)
            .filter(|&b| b <= hi && lo.max(b) + LEN <= b + size)
            .ok_or("no free address where an instruction pun's jump leads")?;
        self.map_code(key, tid, base, size).map_err(|e| {
            format!("no page could be mapped where an instruction pun's jump leads ({e})")
        })?;
        let at = lo.max(base);
        self.world
            .spaces
            .get_mut(&key)
            .ok_or("the process is gone")?
            .fast
            .puns
            .push(super::state::PunPage {
                base: RuntimeAddr(base),
                size,
                used: vec![(at, LEN)],
            });
        Ok(RuntimeAddr(at))
    }

    /// Maps `len` bytes of anonymous `r-x` memory at exactly `at` in space
    /// `key`, by `tid` (stopped), never over anything (`MAP_FIXED_NOREPLACE`;
    /// a kernel without it takes the address as a hint: that mapping is
    /// undone).
    pub(super) fn map_code(
        &mut self,
        key: Pid,
        tid: Tid,
        at: u64,
        len: u64,
    ) -> std::result::Result<(), String> {
        let scratch = self.world.spaces[&key].scratch.ok_or("no scratch page")?;
        let got = self
            .inject_syscall(
                tid,
                scratch.offset(SCRATCH_SYSCALL_OFFSET),
                libc::SYS_mmap,
                &[
                    at,
                    len,
                    (libc::PROT_READ | libc::PROT_EXEC) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                    u64::MAX,
                    0,
                ],
            )
            .map_err(|e| e.to_string())? as u64;
        if got != at {
            let _ = self.munmap_in(tid, key, RuntimeAddr(got), len);
            return Err("the kernel placed it elsewhere".into());
        }
        Ok(())
    }

    /// Unmaps `len` bytes at `addr` in space `key`, by `tid` (stopped).
    pub(super) fn munmap_in(
        &mut self,
        tid: Tid,
        key: Pid,
        addr: RuntimeAddr,
        len: u64,
    ) -> Result<()> {
        let scratch = self.world.spaces[&key]
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
    /// there. `slot` is the record size. A `small` ring ([`MIN_SLOTS`],
    /// its pages allocated as they are written) serves only the returns of
    /// int3 probes, which come no faster than their entries' stops.
    pub(super) fn make_ring(
        &mut self,
        key: Pid,
        tid: Tid,
        slot: u64,
        fixed: Option<RingLayout>,
        small: bool,
    ) -> std::result::Result<(), String> {
        let scratch = self.world.spaces[&key].scratch.ok_or("no scratch page")?;
        let pid = self.world.spaces[&key].pid;
        let gadget = scratch.offset(SCRATCH_SYSCALL_OFFSET);
        let name = scratch.offset(RING_NAME_OFFSET);
        let mut layout = fixed.unwrap_or_else(|| {
            let slot_size = slot.div_ceil(64) * 64;
            let slots = match small {
                true => MIN_SLOTS,
                false => (RING_BYTES / slot_size).clamp(MIN_SLOTS, MAX_SLOTS),
            };
            RingLayout {
                base: 0,
                capacity: 1 << (63 - slots.leading_zeros()),
                slot_size,
            }
        });
        self.world.spaces[&key]
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
            // A followed child's ring (at its parent's place) is not
            // populated: thousands of children may live at once, most of
            // them making few calls; their pages come as they are written.
            let populate = fixed.is_none() && !small;
            let map = SharedMap::open(Path::new(&path), layout.size() as usize, populate)
                .map_err(|e| e.to_string())?;
            let flags = match (fixed, small) {
                (Some(_), _) => libc::MAP_SHARED | libc::MAP_FIXED,
                (None, true) => libc::MAP_SHARED,
                // The root's ring populated: no page fault in its detours
                // on the first lap.
                (None, false) => libc::MAP_SHARED | libc::MAP_POPULATE,
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
        self.reader().clock().share(&map);
        let space = self
            .world
            .spaces
            .get_mut(&key)
            .ok_or("the process is gone")?;
        let map = std::sync::Arc::new(map);
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let watchman =
            super::watchman::Watchman::start(map.clone(), nix::unistd::gettid(), taken.clone())
                .map_err(|e| format!("rtrace's watchman thread cannot start ({e})"))?;
        // The copier thread reads the fast probes' rings; a ring made for
        // int3 probes' returns alone (no `--fast`) is read by the tracing
        // thread, at each stop and every few milliseconds.
        let copying = match self.opts.fast {
            true => super::copier::Copying::start(map.clone(), layout, taken.clone()),
            false => super::copier::Copying::unregistered(map.clone(), layout, taken.clone()),
        };
        space.fast.ring = Some(Ring {
            map,
            _watchman: Some(watchman),
            layout,
            consumed: 0,
            copying,
            lost_seen: 0,
            lost_at: Instant::now(),
            counted_at: Instant::now(),
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
        let live: Vec<RuntimeAddr> = match self.world.spaces.get(&key) {
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
        let world = match self.halting {
            true => World::Stopped,
            false => World::Space(key),
        };
        self.with_world_stopped(world, |t, _| t.take_jumps_off(key, live))
    }

    /// With every thread of space `key` stopped, puts the breakpoint back in
    /// place of the jump at each of `live` (fast sites): the first byte an
    /// int3, the rest the original bytes.
    fn take_jumps_off(&mut self, key: Pid, live: Vec<RuntimeAddr>) -> Result<()> {
        let mut first = Ok(());
        let stopped = self.stopped_threads(key);
        if let Some(space) = self.world.spaces.get_mut(&key) {
            for addr in live {
                let Some(site) = space.sites.get_mut(addr) else {
                    continue;
                };
                let Some(index) = site.fast.take() else {
                    continue;
                };
                // The jumps outside the site that lead to its detour go too:
                // a thread at one has done nothing yet, and goes back to
                // the site (an int3 again); a hop's fill and a far jump get
                // their bytes back, a pun's place is free again.
                let outside = space
                    .fast
                    .sites
                    .get_mut(index as usize)
                    .map(|f| std::mem::take(&mut f.outside))
                    .unwrap_or_default();
                for &tid in &stopped {
                    let Ok(mut regs) = ptrace::getregs(tid) else {
                        continue;
                    };
                    let ip = regs.ip();
                    if outside
                        .iter()
                        .any(|&(a, n)| (a.get()..a.get() + n).contains(&ip))
                    {
                        regs.set_ip(addr.get());
                        let r = ptrace::setregs(tid, &regs);
                        if first.is_ok() {
                            first = r;
                        }
                    }
                }
                for &(a, _) in &outside {
                    let r = space.remove_fill(a);
                    if first.is_ok() {
                        first = r;
                    }
                    for page in space.fast.puns.iter_mut() {
                        page.used.retain(|&(u, _)| u != a.get());
                    }
                }
                let Some(site) = space.sites.get_mut(addr) else {
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
        first
    }
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
}
