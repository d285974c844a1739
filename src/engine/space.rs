//! One address space: its memory, modules, probe sites and scratch page.
//!
//! Everything rtrace writes into a tracee's memory is recorded here, so that it
//! can be undone: the breakpoints (each [`ProbeSite`] keeps the bytes it
//! replaced: one for an int3, all the jump replaced for a fast probe), the
//! scratch page (which holds the return trampoline), and fast probes' ring
//! and detour areas ([`FastState`]).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::{
    self, StepMode, Strategy, BREAKPOINT, MAX_INSN_LEN, XOL_SLOTS_OFFSET, XOL_SLOT_SIZE,
};
use crate::error::Result;
use crate::handler::ProbeId;
use crate::probe::{Owner, ProbeSite, ProbeTable};
use crate::symbols::{self, ElfCache, Location, ModuleMap};
use crate::sys::mem::ProcMem;

use super::fast::FastState;

/// Size of the scratch area: the trampoline, the syscall gadget, then 32767
/// out-of-line slots. Only the pages written to take memory.
pub(crate) const SCRATCH_SIZE: u64 = 1 << 20;

/// The dynamic linker's rendezvous: where it reports library loads (gdb's solib
/// event breakpoint).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rtld {
    /// `_dl_debug_state`, called at every change of the link map.
    pub r_brk: RuntimeAddr,
    /// `_r_debug`, whose `r_state` says whether the map is consistent.
    pub r_debug: Option<RuntimeAddr>,
    /// Hits so far.
    pub hits: u32,
}

/// `r_state` offset in `struct r_debug` (int r_version; link_map *r_map;
/// ElfW(Addr) r_brk; enum r_state …) on LP64.
pub(crate) const R_STATE_OFFSET: i64 = 24;
/// `RT_CONSISTENT`.
pub(crate) const RT_CONSISTENT: i32 = 0;

/// Where a probe stands in one address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Armed at these addresses.
    Armed(Vec<RuntimeAddr>),
    /// Its module is not loaded; it arms when a library load brings it.
    Pending,
}

/// An IFUNC whose implementation no GOT slot holds yet (its PLT slots are
/// bound lazily): its resolver is watched, and when a call of it returns,
/// its answer is armed for these probes before the caller runs on.
#[derive(Clone, Debug)]
pub(crate) struct ResolverWatch {
    /// The IFUNC (its location is the resolver's).
    pub ifunc: Location,
    /// The probes waiting for its implementation.
    pub probes: Vec<ProbeId>,
}

/// A watched resolver call in flight on one thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResolverCall {
    /// The resolver.
    pub resolver: RuntimeAddr,
    /// Where it returns to.
    pub ret: RuntimeAddr,
    /// The stack pointer once it has returned (its entry sp + 8): tells its
    /// return from another call through the same return site.
    pub sp_after: u64,
}

/// The address ranges of a process's mappings, read from `/proc/PID/maps`
/// only when a question needs them (a call abandoned by `longjmp`, a
/// coroutine switch: never on the ordinary return path), and again when the
/// answer may have changed.
#[derive(Clone, Debug, Default)]
pub(crate) struct MapCache(Vec<(u64, u64)>);

impl MapCache {
    /// True when `a` and `b` lie in one mapping of process `pid` (the same
    /// stack), or when `a` is not mapped at all (nothing lives there).
    pub fn same_mapping(&mut self, pid: Pid, a: RuntimeAddr, b: RuntimeAddr) -> bool {
        self.same(pid, a, b, true)
    }

    /// As [`MapCache::same_mapping`], for a question asked after the fact
    /// (fast records are read later than they were made, maybe once the
    /// process is gone): an address no mapping holds any more, or maps that
    /// cannot be read, answer false, so nothing is judged abandoned on the
    /// strength of memory that was unmapped since.
    pub fn same_mapping_known(&mut self, pid: Pid, a: RuntimeAddr, b: RuntimeAddr) -> bool {
        self.same(pid, a, b, false)
    }

    /// `unknown`: the answer when `a` is in no mapping, or the maps cannot
    /// be read.
    fn same(&mut self, pid: Pid, a: RuntimeAddr, b: RuntimeAddr, unknown: bool) -> bool {
        let find = |ranges: &[(u64, u64)], x: u64| {
            ranges
                .iter()
                .copied()
                .find(|&(start, end)| (start..end).contains(&x))
        };
        if let Some((start, end)) = find(&self.0, a.get()) {
            if (start..end).contains(&b.get()) {
                return true;
            }
        }
        // Not known, or known to differ: stacks grow, so ask again.
        match symbols::maps::read(pid) {
            Ok(maps) if !maps.is_empty() => {
                self.0 = maps.iter().map(|m| (m.start.get(), m.end.get())).collect();
                match find(&self.0, a.get()) {
                    Some((start, end)) => (start..end).contains(&b.get()),
                    None => unknown,
                }
            }
            _ => unknown,
        }
    }
}

/// One address space.
#[derive(Debug)]
pub(crate) struct Space {
    pub(super) pid: Pid,
    pub(super) mem: ProcMem,
    exe: PathBuf,
    pub(super) modules: ModuleMap,
    pub(super) sites: ProbeTable<ProbeSite>,
    /// Addresses whose breakpoint was removed, with what was undone there: a
    /// thread that trapped there just before the removal is rewound, not
    /// handed a SIGTRAP; and a child forked before the removal still has the
    /// breakpoint in its copy of the memory, which must be undone there too.
    tombstones: HashMap<RuntimeAddr, Undo>,
    /// Addresses whose code the program rewrote after rtrace changed it:
    /// left as the program wrote them, and reported (see [`undo_write`]).
    rewritten: Vec<RuntimeAddr>,
    /// The dead fill (alignment padding between functions) that holds a
    /// hop's `jmp rel32` (see `detour::plan_site`), with what was there:
    /// code rtrace wrote outside any site, undone at the detach with the
    /// sites, and in a forked child that is not followed, or when its site
    /// goes back to an int3 ([`Space::remove_fill`]).
    pub(super) fills: HashMap<RuntimeAddr, Undo>,
    /// The scratch area, once mapped.
    pub(super) scratch: Option<RuntimeAddr>,
    /// Why no scratch area could be mapped (the process's seccomp mode), if
    /// that is why: then no code is injected into it at all.
    pub(super) no_injection: Option<String>,
    /// Out-of-line slots given out: site → (slot, the code in it). A site keeps
    /// its slot for the life of the space (a thread may be stepping in it when
    /// the probe goes), unless different code is armed at the same address.
    slots: HashMap<RuntimeAddr, (RuntimeAddr, Vec<u8>)>,
    /// Slots used so far.
    slots_used: u64,
    pub(super) rtld: Option<Rtld>,
    /// True once the libraries loaded at startup are mapped: an unqualified
    /// name not found from then on is an error, not something to wait for.
    pub(super) ready: bool,
    pub(super) placed: HashMap<ProbeId, Placement>,
    /// Mapping ranges, to tell stacks apart.
    pub(super) maps: MapCache,
    /// True while the program has C++ exception tables but no unwinder entry
    /// could be found to hook (a stripped program with the unwinder linked
    /// in): every return is then watched at its return site, so an exception
    /// never meets the trampoline.
    pub(super) unknown_unwinder: bool,
    /// Watched IFUNC resolvers, by address.
    pub(super) resolvers: HashMap<RuntimeAddr, ResolverWatch>,
    /// Watched resolver calls in flight, by thread.
    pub(super) resolving: HashMap<Tid, ResolverCall>,
    /// Fast probes: the ring, the detour areas, the patched sites.
    pub(super) fast: FastState,
    /// New user probes' sites are not written at once (see
    /// `ProbeSite::deferred`): set while rtrace places the probes of the
    /// libraries the dynamic linker is loading, with fast probes.
    pub(super) defer_probes: bool,
}

impl Space {
    /// The address space of a forked child that has this one's scratch
    /// page: a copy of everything rtrace wrote (the child's memory is a
    /// copy), with nothing of the parent's threads.
    pub fn for_child(&self, child: Pid) -> Result<Space> {
        Ok(Space {
            pid: child,
            mem: crate::sys::mem::ProcMem::open(child)?,
            exe: self.exe.clone(),
            modules: self.modules.clone(),
            sites: self.sites.clone(),
            tombstones: self.tombstones.clone(),
            rewritten: Vec::new(),
            fills: self.fills.clone(),
            scratch: self.scratch,
            no_injection: self.no_injection.clone(),
            slots: self.slots.clone(),
            slots_used: self.slots_used,
            rtld: self.rtld,
            ready: self.ready,
            placed: self.placed.clone(),
            maps: self.maps.clone(),
            unknown_unwinder: self.unknown_unwinder,
            // The child has the parent's breakpoints, resolvers included; a
            // resolver call in flight is the forking thread's, not the child's.
            resolvers: self.resolvers.clone(),
            resolving: HashMap::new(),
            // The same jumps and detours (copied with the memory); a ring
            // of its own, made at its first stop.
            fast: self.fast.for_child(),
            defer_probes: false,
        })
    }

    /// The executable this space runs.
    pub fn exe(&self) -> &std::path::Path {
        &self.exe
    }

    /// Opens the address space of `pid` and maps its modules.
    pub fn open(pid: Pid, cache: &mut ElfCache) -> Result<Space> {
        let mem = ProcMem::open(pid)?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map_err(|e| crate::Error::io(format!("cannot read /proc/{pid}/exe"), e))?;
        let maps = symbols::maps::read(pid)?;
        let modules = ModuleMap::new(&maps, &exe, cache)?;
        Ok(Space {
            pid,
            mem,
            exe,
            modules,
            sites: ProbeTable::new(),
            tombstones: HashMap::new(),
            rewritten: Vec::new(),
            fills: HashMap::new(),
            scratch: None,
            no_injection: None,
            slots: HashMap::new(),
            slots_used: 0,
            rtld: None,
            ready: false,
            placed: HashMap::new(),
            maps: MapCache::default(),
            unknown_unwinder: false,
            resolvers: HashMap::new(),
            resolving: HashMap::new(),
            fast: FastState::default(),
            defer_probes: false,
        })
    }

    /// Re-reads the module map (after the dynamic linker reported a change).
    /// Sites in modules that are gone are forgotten without writing: their memory
    /// is unmapped.
    pub fn rescan(&mut self, cache: &mut ElfCache) -> Result<()> {
        let maps = symbols::maps::read(self.pid)?;
        self.modules = ModuleMap::new(&maps, &self.exe, cache)?;
        let gone: Vec<RuntimeAddr> = self
            .sites
            .iter()
            .filter(|(a, _)| self.modules.module_at(*a).is_none())
            .map(|(a, _)| a)
            .collect();
        for a in gone {
            self.fast.on_unload(a);
            if let Some(site) = self.sites.remove(a) {
                for p in &site.probes {
                    self.placed.remove(&p.id);
                }
            }
            // A resolver unloaded with its library: its probes resolve
            // afresh.
            if let Some(watch) = self.resolvers.remove(&a) {
                for id in watch.probes {
                    self.placed.remove(&id);
                }
            }
        }
        // A tombstone in memory unmapped since means nothing there any more
        // (another library may come to the same address).
        let modules = &self.modules;
        self.tombstones
            .retain(|a, _| modules.module_at(*a).is_some());
        self.fills.retain(|a, _| modules.module_at(*a).is_some());
        self.resolving
            .retain(|_, call| self.sites.get(call.ret).is_some());
        Ok(())
    }

    /// True when a breakpoint of rtrace's is written in this memory (a
    /// probe that is not fast, or rtrace's own): a thread that ran into it
    /// untraced would die of its trap.
    pub(super) fn has_breakpoints(&self) -> bool {
        self.sites
            .iter()
            .any(|(_, s)| s.written.first() == Some(&crate::arch::BREAKPOINT[0]))
    }

    /// The return trampoline's address.
    pub fn trampoline(&self) -> Option<RuntimeAddr> {
        self.scratch
    }

    /// Plants a breakpoint at `addr` (or joins the one there) for `owner`. The
    /// displaced instruction is analysed first; one that cannot be executed in
    /// `mode` is refused.
    /// A site that gets a new user probe is judged again for fast probes.
    /// (The caller has taken any fast probe's jump off the address first:
    /// `Tracer::clear_jumps_at`.)
    pub fn arm(&mut self, addr: RuntimeAddr, owner: Owner, mode: StepMode) -> Result<()> {
        // A new owner: the site is judged again (a user probe's site, or
        // one of rtrace's own that may be a hook).
        self.fast.on_arm(addr, matches!(owner, Owner::Probe(_)));
        if let Some(site) = self.sites.get_mut(addr) {
            site.own(owner);
            return Ok(());
        }
        let code = self.read_code(addr)?;
        if let Some(e) = self.foreign_breakpoint(addr, &code) {
            return Err(e);
        }
        let mut plan = arch::analyze(&code, addr, mode)?;
        let mut slot = None;
        if let Strategy::Xol(xol) = &plan.strategy {
            slot = self.slot_for(addr, &xol.code)?;
            if slot.is_none() {
                // No scratch area (the process's seccomp mode), or it is
                // full. A system call is never stepped in place: it could
                // block with every other thread stopped.
                if arch::analyze(&code, addr, StepMode::InPlace).is_err() {
                    return Err(crate::Error::UnsupportedInstruction {
                        addr,
                        reason: "a system call is stepped out of line only, and no \
                                 out-of-line slot is free (the process has no scratch page, \
                                 or it is full)"
                            .into(),
                    });
                }
                plan.strategy = Strategy::InPlace;
            }
        }
        let saved = code[..BREAKPOINT.len()].to_vec();
        let deferred = self.defer_probes && matches!(owner, Owner::Probe(_));
        let written = match deferred {
            true => saved.clone(),
            false => BREAKPOINT.to_vec(),
        };
        let mut site = ProbeSite::new(addr, saved, written, plan);
        site.slot = slot;
        site.deferred = deferred;
        site.own(owner);
        if !deferred {
            self.mem.write(addr, &BREAKPOINT)?;
        }
        self.sites.insert(addr, site);
        self.tombstones.remove(&addr);
        Ok(())
    }

    /// Writes the breakpoints of the sites whose writing was deferred and
    /// that no fast probe's jump took (see `ProbeSite::deferred`).
    pub fn arm_deferred(&mut self) -> Result<()> {
        let deferred: Vec<RuntimeAddr> = self
            .sites
            .iter()
            .filter(|(_, s)| s.deferred)
            .map(|(a, _)| a)
            .collect();
        for addr in deferred {
            self.mem.write(addr, &BREAKPOINT)?;
            if let Some(site) = self.sites.get_mut(addr) {
                site.deferred = false;
                site.written = BREAKPOINT.to_vec();
            }
        }
        Ok(())
    }

    /// The out-of-line slot of the site at `addr`, holding `code` then a guard
    /// breakpoint; None when there is no scratch area or no slot left.
    fn slot_for(&mut self, addr: RuntimeAddr, code: &[u8]) -> Result<Option<RuntimeAddr>> {
        if let Some((slot, held)) = self.slots.get(&addr) {
            if held == code {
                return Ok(Some(*slot));
            }
        }
        let Some(scratch) = self.scratch else {
            return Ok(None);
        };
        let offset = XOL_SLOTS_OFFSET + self.slots_used * XOL_SLOT_SIZE;
        if offset + XOL_SLOT_SIZE > SCRATCH_SIZE {
            return Ok(None);
        }
        let slot = scratch.offset(offset as i64);
        let mut bytes = code.to_vec();
        bytes.extend_from_slice(&BREAKPOINT);
        self.mem.write(slot, &bytes)?;
        self.slots_used += 1;
        self.slots.insert(addr, (slot, code.to_vec()));
        Ok(Some(slot))
    }

    /// Up to MAX_INSN_LEN bytes at `addr`, fewer near the end of a mapping.
    /// Another tool's breakpoint at `addr` (`code` read there): an int3
    /// in memory where the module's file has another byte (rtrace's own
    /// are in its sites, never read here).
    fn foreign_breakpoint(&self, addr: RuntimeAddr, code: &[u8]) -> Option<crate::Error> {
        if code.first() != Some(&BREAKPOINT[0]) {
            return None;
        }
        let m = self.modules.module_at(addr)?;
        let byte = *m.elf.bytes_at(m.to_link(addr), 1)?.first()?;
        (byte != BREAKPOINT[0]).then(|| crate::Error::ForeignBreakpoint {
            addr,
            file: m.path.clone(),
            byte,
        })
    }

    fn read_code(&self, addr: RuntimeAddr) -> Result<Vec<u8>> {
        let mut len = MAX_INSN_LEN;
        loop {
            match self.mem.read_vec(addr, len) {
                Ok(v) => return Ok(v),
                Err(e) if len == 1 => return Err(e),
                Err(_) => len /= 2,
            }
        }
    }

    /// Removes `id` from every site; breakpoints nothing else needs are removed.
    pub fn disarm_probe(&mut self, id: ProbeId) -> Result<()> {
        let mut unwatched = Vec::new();
        for (addr, watch) in self.resolvers.iter_mut() {
            watch.probes.retain(|p| *p != id);
            if watch.probes.is_empty() {
                unwatched.push(*addr);
            }
        }
        for addr in unwatched {
            self.unwatch_resolver(addr)?;
        }
        let addrs = match self.placed.remove(&id) {
            Some(Placement::Armed(addrs)) => addrs,
            Some(Placement::Pending) | None => return Ok(()),
        };
        for addr in addrs {
            let unused = match self.sites.get_mut(addr) {
                Some(site) => {
                    site.remove(id);
                    site.is_unused()
                }
                None => false,
            };
            if unused {
                self.remove_site(addr)?;
            }
        }
        Ok(())
    }

    /// Restores the original bytes at `addr` and forgets the site.
    pub fn remove_site(&mut self, addr: RuntimeAddr) -> Result<()> {
        if let Some(site) = self.sites.remove(addr) {
            self.bury(site)?;
        }
        Ok(())
    }

    /// Puts back the bytes of the fill at `addr` (a hop's `jmp rel32`, a far
    /// detour's indirect jump), if rtrace wrote there, and keeps its
    /// tombstone (a child forked before has the jump).
    pub fn remove_fill(&mut self, addr: RuntimeAddr) -> Result<()> {
        let Some(undo) = self.fills.remove(&addr) else {
            return Ok(());
        };
        let r = undo_write(&self.mem, addr, &undo);
        if let Ok(Undone::Rewritten) = r {
            self.rewritten.push(addr);
        }
        self.tombstones.insert(addr, undo);
        r.map(|_| ())
    }

    /// Undoes a site taken out of the table, and keeps its tombstone.
    fn bury(&mut self, site: ProbeSite) -> Result<()> {
        let undo = Undo {
            saved: site.saved,
            written: site.written,
        };
        let r = undo_write(&self.mem, site.addr, &undo);
        if let Ok(Undone::Rewritten) = r {
            self.rewritten.push(site.addr);
        }
        self.tombstones.insert(site.addr, undo);
        r.map(|_| ())
    }

    /// Stops watching the resolver at `addr` (no probe waits for it).
    pub fn unwatch_resolver(&mut self, addr: RuntimeAddr) -> Result<()> {
        self.resolvers.remove(&addr);
        let unused = self.sites.get_mut(addr).is_some_and(|site| {
            site.resolver = false;
            site.is_unused()
        });
        if unused {
            self.remove_site(addr)?;
        }
        Ok(())
    }

    /// A watched resolver call returned, or will not: its return site at
    /// `addr` is no longer needed for it.
    pub fn release_resolver_return(&mut self, addr: RuntimeAddr) -> Result<()> {
        let unused = self.sites.get_mut(addr).is_some_and(|site| {
            site.resolver_returns = site.resolver_returns.saturating_sub(1);
            site.is_unused()
        });
        if unused {
            self.remove_site(addr)?;
        }
        Ok(())
    }

    /// A call in flight no longer needs the return site at `addr`.
    pub fn release_return_site(&mut self, addr: RuntimeAddr) -> Result<()> {
        let unused = match self.sites.get_mut(addr) {
            Some(site) => {
                site.ret_refs = site.ret_refs.saturating_sub(1);
                site.is_unused()
            }
            None => false,
        };
        if unused {
            self.remove_site(addr)?;
        }
        Ok(())
    }

    /// Removes the unwinder hooks and the hooks of the functions that find
    /// their caller from their return address (no return probe is left).
    pub fn drop_unwind_hooks(&mut self) -> Result<()> {
        let hooked: Vec<RuntimeAddr> = self
            .sites
            .iter()
            .filter(|(_, s)| s.unwind || s.caller_hook)
            .map(|(a, _)| a)
            .collect();
        for addr in hooked {
            let unused = self.sites.get_mut(addr).is_some_and(|site| {
                site.unwind = false;
                site.caller_hook = false;
                site.is_unused()
            });
            if unused {
                self.remove_site(addr)?;
            }
        }
        Ok(())
    }

    /// Removes every breakpoint (detach). Tries them all, returns the first error.
    pub fn disarm_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        let sites: Vec<ProbeSite> = self
            .sites
            .drain()
            .into_iter()
            .map(|(_, site)| site)
            .collect();
        for site in sites {
            let r = self.bury(site);
            if first.is_ok() {
                first = r;
            }
        }
        for (addr, undo) in std::mem::take(&mut self.fills) {
            let r = undo_write(&self.mem, addr, &undo);
            if let Ok(Undone::Rewritten) = r {
                self.rewritten.push(addr);
            }
            self.tombstones.insert(addr, undo);
            if first.is_ok() {
                first = r.map(|_| ());
            }
        }
        self.placed.clear();
        self.resolvers.clear();
        self.resolving.clear();
        first
    }

    /// Sites with user probes, and the IFUNC resolvers watched for them
    /// (what "probes armed" counts).
    pub fn armed_sites(&self) -> usize {
        self.sites
            .iter()
            .filter(|(_, s)| !s.probes.is_empty() || s.resolver)
            .count()
    }

    /// True when `ip` is a trap just past one of our breakpoints (armed, or removed
    /// since the thread trapped).
    pub fn is_our_trap(&self, site: RuntimeAddr) -> bool {
        self.sites.get(site).is_some() || self.tombstones.contains_key(&site)
    }

    /// Makes this space, copied from a forked child's parent, agree with
    /// the child's memory (`mapped` tells what the child has mapped): the
    /// copy was taken at the fork, and rtrace may have changed the parent
    /// since, before it heard of the fork. The scratch page is there
    /// (the caller checked). Out-of-line slots written since are written
    /// into it; breakpoints armed since are armed; breakpoints removed since
    /// are removed; a fast site whose jump the child lacks is an int3 there;
    /// fast probes' mappings it lacks are forgotten.
    pub fn reconcile(&mut self, mapped: &dyn Fn(RuntimeAddr) -> bool) -> Result<()> {
        if let Some(scratch) = self.scratch {
            self.mem.write(scratch, &arch::SCRATCH_CODE)?;
        }
        for (slot, code) in self.slots.values() {
            let mut bytes = code.clone();
            bytes.extend_from_slice(&BREAKPOINT);
            self.mem.write(*slot, &bytes)?;
        }
        for (addr, undo) in self.tombstones.iter() {
            if mapped(*addr) {
                undo_write(&self.mem, *addr, undo)?;
            }
        }
        self.fast.keep_mapped(mapped);
        let addrs: Vec<RuntimeAddr> = self.sites.iter().map(|(a, _)| a).collect();
        for addr in addrs {
            let Some(site) = self.sites.get_mut(addr) else {
                continue;
            };
            let current = self.mem.read_vec(addr, site.written.len())?;
            if current == site.written {
                continue;
            }
            if let Some(index) = site.fast.take() {
                // The jump came after the fork: an int3 here instead.
                site.saved.truncate(BREAKPOINT.len());
                site.written = BREAKPOINT.to_vec();
                self.fast.on_jump_missing(index, addr);
            }
            self.mem.write(addr, &BREAKPOINT)?;
        }
        Ok(())
    }

    /// The warning that says where the program rewrote code rtrace had
    /// changed (see [`undo_write`]), once: None when it did not.
    pub fn rewritten_report(&mut self) -> Option<crate::handler::Event> {
        if self.rewritten.is_empty() {
            return None;
        }
        let mut addrs = std::mem::take(&mut self.rewritten);
        addrs.sort();
        addrs.dedup();
        let shown: Vec<String> = addrs
            .iter()
            .take(8)
            .map(|&a| {
                let name = self.modules.module_at(a).and_then(|m| {
                    let (sym, off) = m.elf.function_at(m.to_link(a))?;
                    Some(format!(" ({}+{off:#x})", m.elf.shown_name(sym)))
                });
                format!("{:#x}{}", a.get(), name.unwrap_or_default())
            })
            .collect();
        let more = match addrs.len() {
            n if n > 8 => format!(" and {} more", n - 8),
            _ => String::new(),
        };
        Some(crate::handler::Event::ProcessWarning {
            pid: self.pid,
            message: format!(
                "pid {} rewrote its own code where rtrace had probed it, at {}{more}:                  left as the program wrote it",
                self.pid,
                shown.join(", ")
            ),
        })
    }

    /// Every change made to code in this space, the ones undone since
    /// included, for scrubbing a forked child: its copy of the memory was
    /// taken at the fork, which may be older than the last of them.
    pub fn code_changes(&self) -> Vec<(RuntimeAddr, Undo)> {
        let live = self.sites.iter().map(|(a, s)| {
            let undo = Undo {
                saved: s.saved.clone(),
                written: s.written.clone(),
            };
            (a, undo)
        });
        let fills = self.fills.iter().map(|(a, u)| (*a, u.clone()));
        let undone = self.tombstones.iter().map(|(a, u)| (*a, u.clone()));
        live.chain(fills).chain(undone).collect()
    }
}

/// A change rtrace made to code: the bytes it replaced, and the bytes it
/// wrote over them last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Undo {
    pub saved: Vec<u8>,
    pub written: Vec<u8>,
}

/// What undoing a change to code found at its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Undone {
    /// rtrace's bytes were there; the original ones are back.
    Restored,
    /// The original bytes were there already (the memory of a child forked
    /// before the change, or a change undone before).
    Original,
    /// Neither: the program rewrote its code there since rtrace changed it.
    /// It is left as the program wrote it.
    Rewritten,
    /// The address is not mapped any more.
    Unmapped,
}

/// Puts `undo.saved` back at `addr` in `mem` when the address holds what
/// rtrace wrote there: `undo.written`, or a breakpoint, which every site
/// began as before a fast probe's jump could replace it (a child forked in
/// between has the breakpoint). Anything else is the program's own code
/// now, and is not touched: kernel uprobes check the same before they
/// remove a breakpoint (`verify_opcode`).
pub(crate) fn undo_write(mem: &ProcMem, addr: RuntimeAddr, undo: &Undo) -> Result<Undone> {
    let current = match mem.read_vec(addr, undo.saved.len()) {
        Ok(bytes) => bytes,
        // Unmapped since (a library closed whose unloading rtrace has not
        // heard of yet): nothing of rtrace's is left there.
        Err(crate::Error::Memory {
            errno: nix::errno::Errno::EIO,
            ..
        }) => return Ok(Undone::Unmapped),
        Err(e) => return Err(e),
    };
    if current == undo.saved {
        return Ok(Undone::Original);
    }
    if current.starts_with(&undo.written) || current.starts_with(&BREAKPOINT) {
        mem.write(addr, &undo.saved)?;
        return Ok(Undone::Restored);
    }
    Ok(Undone::Rewritten)
}
