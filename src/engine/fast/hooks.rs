//! rtrace's own hooks as fast sites, and rtrace's side of their protocol.
//!
//! With fast probes, the breakpoints rtrace keeps for itself (the dynamic
//! linker's `_dl_debug_state`, the unwinders, `__cxa_begin_catch`, the
//! functions that read their own return address) become jumps to hooks
//! (`arch::hook`) that do their work in the thread that reaches them and go
//! on without rtrace when it is gone: an int3 left behind by a killed
//! rtrace would kill the program with SIGTRAP.
//!
//! What this file owns:
//!
//! - which of rtrace's sites can be hooks ([`Tracer::hook_kind`]): only in a
//!   process where every probe with returns is fast (an int3 return probe
//!   needs rtrace at the unwinders: there the hooks stay int3s);
//! - patching them ([`Tracer::patch_hooks`]) and taking them back to int3s
//!   when an int3 return probe comes ([`Tracer::unfast_hooks`]);
//! - the liveness words the watchman keeps (`watchman.rs`: rtrace's thread
//!   per ring that holds `ALIVE` as a robust futex and wakes the tracing
//!   thread when a hook rings the doorbell);
//! - serving the requests hooks post ([`Tracer::serve_requests`]): a new
//!   link map (arm the probes of new libraries before their code runs), a
//!   backtrace (hook the return site of `_Unwind_Backtrace` with an unpark);
//! - the records hooks make: a catch drops the calls it unwound, a caller
//!   hook's record says a call's return goes unseen.
//!
//! It must not block the program on a dead or stopped rtrace: every wait is
//! the hook's, bounded by the liveness words; rtrace never holds a thread.

use std::sync::Arc;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::{self, ring, table, ThreadPointer};
use crate::arch::hook::{self, request, HookKind, HookSpec};
use crate::arch::StepMode;
use crate::engine::space::Space;
use crate::engine::tracer::{Overflow, Tracer};
use crate::error::Result;
use crate::handler::{Event, ProbeKind};
use crate::probe::Owner;
use crate::sys::ptrace;
use crate::sys::shm::SharedMap;

use super::state::FastSite;

/// A hook to patch.
pub(super) struct PlannedHook {
    pub addr: RuntimeAddr,
    pub kind: HookKind,
    pub patch: detour::Patch,
}

impl Tracer {
    /// The hook the site at `addr` of space `key` can be: a site of
    /// rtrace's own (no user probe), with one owner that has a hook.
    pub(super) fn hook_kind(&self, key: Pid, addr: RuntimeAddr) -> Option<HookKind> {
        let space = self.world.spaces.get(&key)?;
        let site = space.sites.get(addr)?;
        if !site.probes.is_empty()
            || site.resolver
            || site.resolver_returns > 0
            || site.ret_refs > 0
        {
            return None;
        }
        let owners = [
            site.rtld,
            site.unwind,
            site.caller_hook,
            site.unpark,
            site.returned,
        ];
        if owners.iter().filter(|o| **o).count() != 1 {
            return None;
        }
        if site.rtld {
            return Some(HookKind::Rtld);
        }
        if site.caller_hook {
            return Some(HookKind::Caller);
        }
        if site.unpark {
            return Some(HookKind::Unpark);
        }
        if site.returned {
            return Some(HookKind::Returned);
        }
        let m = space.modules.module_at(addr)?;
        let (sym, offset) = m.elf.function_at(m.to_link(addr))?;
        if offset != 0 {
            return None;
        }
        Some(match sym.name.as_str() {
            crate::symbols::resolve::CATCH_HOOK => HookKind::Catch,
            "_Unwind_Backtrace" => HookKind::Backtrace,
            _ => HookKind::Unwind,
        })
    }

    /// Why rtrace's hooks cannot be fast in space `key`, if they cannot:
    /// no ring; a probe with returns that is an int3 (its calls in flight
    /// need rtrace at the unwinders); no return stub yet for the hooks that
    /// read the table.
    pub(super) fn hooks_refused(&self, key: Pid, kind: HookKind) -> Option<&'static str> {
        let space = self.world.spaces.get(&key)?;
        if space.fast.ring.is_none() {
            return Some("no ring");
        }
        if space.unknown_unwinder || int3_returns(space) {
            return Some("an int3 probe watches returns");
        }
        if kind != HookKind::Rtld && space.fast.stub.is_none() {
            return Some("no return stub");
        }
        None
    }

    /// The hooks of space `key` that can be patched now (not yet patched,
    /// not refused), planned.
    pub(super) fn plan_hooks(&mut self, key: Pid) -> Vec<PlannedHook> {
        let Some(space) = self.world.spaces.get(&key) else {
            return Vec::new();
        };
        let addrs: Vec<RuntimeAddr> = space
            .sites
            .iter()
            .filter(|(a, s)| {
                s.fast.is_none() && s.probes.is_empty() && !space.fast.hooks_refused.contains(a)
            })
            .map(|(a, _)| a)
            .collect();
        let mut plans = Vec::new();
        for addr in addrs {
            let Some(kind) = self.hook_kind(key, addr) else {
                continue;
            };
            if self.hooks_refused(key, kind).is_some() {
                continue;
            }
            match self.plan_bytes(key, addr, true) {
                Ok(patch) => plans.push(PlannedHook { addr, kind, patch }),
                Err(_) => {
                    if let Some(space) = self.world.spaces.get_mut(&key) {
                        space.fast.hooks_refused.insert(addr);
                    }
                }
            }
        }
        plans
    }

    /// Patches `plans` in space `key` (every thread stopped, `tid` the one
    /// that makes system calls, `ips` where the threads are): a hook whose
    /// bytes a thread is inside waits for the next try.
    pub(super) fn patch_hooks(
        &mut self,
        key: Pid,
        tid: Tid,
        plans: Vec<PlannedHook>,
        ips: &[u64],
        tp: ThreadPointer,
    ) -> Result<()> {
        for plan in plans {
            let inside = plan.addr.get() + 1..plan.addr.get() + plan.patch.len as u64;
            if ips.iter().any(|ip| inside.contains(ip)) {
                self.space_mut(key)?.fast.dirty = true;
                continue;
            }
            if self.patch_hook(key, tid, &plan, tp).is_err() {
                self.space_mut(key)?.fast.hooks_refused.insert(plan.addr);
            }
        }
        Ok(())
    }

    pub(super) fn patch_hook(
        &mut self,
        key: Pid,
        tid: Tid,
        plan: &PlannedHook,
        tp: ThreadPointer,
    ) -> std::result::Result<(), String> {
        let layout = self.ring_layout(key)?;
        let (area, at) = self.room_near(key, tid, plan.addr)?;
        let space = self
            .world
            .spaces
            .get_mut(&key)
            .ok_or("the process is gone")?;
        let index = space.fast.sites.len() as u32;
        let (table, stub) = space
            .fast
            .stub
            .as_ref()
            .map_or((0, 0), |s| (s.table.get(), s.stub.entry));
        let spec = HookSpec {
            at: at.get(),
            at_site: plan.addr.get(),
            kind: plan.kind,
            ring: layout,
            index,
            tp,
            table,
            stub,
            block: self.opts.overflow == Overflow::Block,
        };
        let code = hook::assemble_hook(&plan.patch, &spec)?;
        detour::jump(&plan.patch, at.get()).ok_or("its detour is out of a jump's reach")?;
        super::patch::write_code(space, area, at, &code.code, "its hook")?;
        let jump = super::patch::write_jump(space, &plan.patch, at)?;
        let site = space.sites.get_mut(plan.addr).ok_or("the site is gone")?;
        site.saved = plan.patch.saved.clone();
        site.written = jump;
        site.fast = Some(index);
        space.fast.sites.push(FastSite {
            addr: plan.addr,
            len: plan.patch.len,
            at,
            detour: code,
            // (Its records are catches and returns, of fixed fields.)
            regs: detour::entry_regs(crate::arch::RegSet::NONE),
            captures: Vec::new(),
            probes: Vec::new(),
            lost: 0,
            ret_lost: 0,
            count_only: false,
            counted: 0,
            timed: None,
            timed_seen: None,
            live: true,
            hook: Some(plan.kind),
            outside: Vec::new(),
            trampoline: None,
        });
        Ok(())
    }

    /// Takes the hooks of space `key` back to int3s when they may no longer
    /// be fast (an int3 probe with returns came: its calls need rtrace at
    /// the unwinders), and lets the others be judged again.
    pub(super) fn unfast_hooks(&mut self, key: Pid) -> Result<()> {
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(());
        };
        let refused =
            self.hooks_refused(key, HookKind::Unwind).is_some() && space.fast.ring.is_some();
        if !refused {
            return Ok(());
        }
        let live: Vec<RuntimeAddr> = space
            .fast
            .sites
            .iter()
            .filter(|f| f.live && matches!(f.hook, Some(k) if k != HookKind::Rtld))
            .map(|f| f.addr)
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        self.unpatch_fast(key, &live)
    }

    /// Serves the requests rtrace's hooks posted in every ring.
    pub(super) fn serve_requests(&mut self) -> Result<()> {
        let keys: Vec<Pid> = self
            .world
            .spaces
            .iter()
            .filter(|(_, s)| s.fast.ring.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.serve_requests_of(key)?;
        }
        Ok(())
    }

    pub(super) fn serve_requests_of(&mut self, key: Pid) -> Result<()> {
        let Some(map) = self.ring_map(key) else {
            return Ok(());
        };
        let posted: Vec<u64> = (0..ring::REQUEST_COUNT)
            .map(|i| ring::REQUESTS + i * ring::REQUEST_SIZE)
            .filter(|at| map.load_u32(at + hook::REQ_STATE) == request::POSTED)
            .collect();
        drop(map);
        for at in posted {
            // (Serving one may have dropped the ring: an exec, an error.)
            let Some(map) = self.ring_map(key) else {
                return Ok(());
            };
            let kind = map.load_u32(at + hook::REQ_KIND);
            let tp = map.load_u64(at + hook::REQ_TP);
            let addr = RuntimeAddr(map.load_u64(at + hook::REQ_ADDR));
            let sp = RuntimeAddr(map.load_u64(at + hook::REQ_SP));
            match kind {
                request::KIND_RTLD => {
                    // Its records first: calls made before the new library.
                    self.reader().drain_through(key)?;
                    // The new libraries' probes are fast before their code
                    // runs, and never int3s first (a killed rtrace would
                    // leave one behind): probes placed now are written when
                    // they are patched, or as int3s if they cannot be.
                    self.space_mut(key)?.defer_probes = true;
                    let placed = self.on_rtld_event(key);
                    let patched = placed.and_then(|()| self.patch_fast(key));
                    let armed = match self.world.spaces.get_mut(&key) {
                        Some(space) => {
                            space.defer_probes = false;
                            space.arm_deferred()
                        }
                        None => Ok(()),
                    };
                    patched?;
                    armed?;
                    if self.opts.fast {
                        super::plan::report_modes(
                            &self.world,
                            &mut self.consumers,
                            self.root,
                            self.start,
                        )?;
                    }
                }
                request::KIND_BACKTRACE => self.watch_backtrace_return(key, tp, addr, sp)?,
                request::KIND_RETURN_SITE => self.watch_return_site(key, tp, addr, sp)?,
                _ => {}
            }
            if let Some(map) = self.ring_map(key) {
                if map.compare_exchange_u32(at + hook::REQ_STATE, request::POSTED, request::DONE) {
                    map.futex_wake(at + hook::REQ_STATE);
                }
            }
        }
        Ok(())
    }

    pub(super) fn ring_map(&self, key: Pid) -> Option<Arc<SharedMap>> {
        self.world
            .spaces
            .get(&key)?
            .fast
            .ring
            .as_ref()
            .map(|r| r.map.clone())
    }

    /// A thread of space `key` (thread pointer `tp`) parked its calls for
    /// `_Unwind_Backtrace`, entered with stack pointer `sp`, which returns
    /// to `ret`: the return site gets an unpark hook (an int3 until it is
    /// patched, or for good when it cannot be), so that those calls get the
    /// stub back once the walk is over.
    pub(super) fn watch_backtrace_return(
        &mut self,
        key: Pid,
        tp: u64,
        ret: RuntimeAddr,
        sp: RuntimeAddr,
    ) -> Result<()> {
        let known = self
            .world
            .spaces
            .get(&key)
            .is_some_and(|s| s.sites.get(ret).is_some_and(|site| site.unpark));
        if known {
            return Ok(());
        }
        self.clear_jumps_at(key, ret)?;
        let armed = self.space_mut(key)?.arm(ret, Owner::Unpark, StepMode::Auto);
        if armed.is_err() {
            // An instruction that cannot be stepped there: the calls go to
            // int3 return sites, as with int3 hooks.
            let tid = self
                .world
                .spaces
                .get(&key)
                .and_then(|s| s.fast.thread_of(tp));
            if let Some(tid) = tid {
                self.fast_calls_to_return_sites(tid, sp, true)?;
            }
            return Ok(());
        }
        self.patch_fast(key)
    }

    /// A thread of space `key` (thread pointer `tp`) entered a function that
    /// reads its own return address by a tail call from a watched call (its
    /// slot, at `sp`, held the stub, which the hook took out): that call's
    /// return is seen at its return site `ret`, hooked with a `Returned`
    /// hook; where that cannot be, it is counted missed.
    pub(super) fn watch_return_site(
        &mut self,
        key: Pid,
        tp: u64,
        ret: RuntimeAddr,
        sp: RuntimeAddr,
    ) -> Result<()> {
        let hooked = |t: &Tracer| {
            t.world.spaces.get(&key).is_some_and(|s| {
                s.sites
                    .get(ret)
                    .is_some_and(|site| site.returned && site.fast.is_some())
            })
        };
        if !hooked(self) {
            self.clear_jumps_at(key, ret)?;
            if self
                .space_mut(key)?
                .arm(ret, Owner::Returned, StepMode::Auto)
                .is_ok()
            {
                self.patch_fast(key)?;
            }
        }
        if hooked(self) {
            return Ok(());
        }
        // No hook there: no int3 stays for it (a return site of rtrace's
        // own must not outlive rtrace), and the call goes unseen.
        if let Some(space) = self.world.spaces.get_mut(&key) {
            let unused = space.sites.get_mut(ret).is_some_and(|site| {
                site.returned = false;
                site.is_unused()
            });
            if unused {
                space.remove_site(ret)?;
            }
        }
        let tid = self
            .world
            .spaces
            .get(&key)
            .and_then(|s| s.fast.thread_of(tp));
        match tid {
            Some(tid) => self.fast_caller(tid, sp),
            None => Ok(()),
        }
    }

    /// `tid` (stopped, stack pointer `sp`) is at an unpark site reached as
    /// an int3 (not patched): what the unpark hook does, done by rtrace.
    pub(super) fn unpark_calls(&mut self, tid: Tid, sp: RuntimeAddr) -> Result<()> {
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(());
        };
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(());
        };
        let Some((stub, tbl)) = space.fast.stub.as_ref().map(|s| (s.stub.entry, s.table)) else {
            return Ok(());
        };
        let tp = ptrace::getregs(tid)?.thread_pointer() | table::PARKED;
        let entries = space.mem.read_vec(tbl, table::SIZE as usize)?;
        let limit = sp.get().wrapping_sub(8);
        for e in 0..table::ENTRIES {
            let field = |off| table::word(&entries, e, off).unwrap_or(0);
            let slot = field(table::KEY);
            // Parked by an unwinder entered further out, still at work (see
            // `table::PARK_SP`): it stays parked.
            if slot == 0 || field(table::TP) != tp || field(table::PARK_SP) > limit {
                continue;
            }
            let at = |off: u64| tbl.offset((e * table::ENTRY + off) as i64);
            let live = slot > limit
                && space.mem.read_u64(RuntimeAddr(slot)).ok() == Some(field(table::ORIG));
            if live {
                space.mem.write_u64(RuntimeAddr(slot), stub)?;
                space.mem.write_u64(at(table::TP), tp & !table::PARKED)?;
            } else {
                space.mem.write_u64(at(table::KEY), 0)?;
            }
        }
        Ok(())
    }

    /// The call of thread `tid` in the slot at `sp` (and the tail calls
    /// chained to it) returns unseen: counted missed.
    pub(super) fn fast_caller(&mut self, tid: Tid, sp: RuntimeAddr) -> Result<()> {
        let Some(task) = self.world.tasks.get_mut(&tid) else {
            return Ok(());
        };
        let pid = task.pid;
        let Some(space) = self.world.spaces.get_mut(&task.space) else {
            return Ok(());
        };
        let space_pid = space.pid;
        let maps = &mut space.maps;
        let (_, gone) = task.fast_calls.pop_returning(sp.offset(8), &mut |a, b| {
            maps.same_mapping_known(space_pid, a, b)
        });
        for inst in gone {
            for (site, _) in inst.probes {
                self.emit(Event::Missed {
                    pid,
                    tid,
                    probe: site.probe.clone(),
                    symbol: site.symbol.clone(),
                })?;
            }
        }
        Ok(())
    }

    /// Sends `tid` (stopped) out of a hook's body, or a detour's wait for
    /// room, back to its site, and frees the requests it posted. False when
    /// it is not in such a body.
    pub(super) fn abandon_body(&mut self, tid: Tid) -> Result<bool> {
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        let mut regs = ptrace::getregs(tid)?;
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(false);
        };
        let Some(site) = space.fast.detour_at(regs.ip()) else {
            return Ok(false);
        };
        let (detour, addr) = (site.detour.clone(), site.addr);
        if !hook::abandon(&detour, addr.get(), &mut regs, &space.mem)? {
            return Ok(false);
        }
        let tp = regs.thread_pointer();
        if let Some(map) = space.fast.ring.as_ref().map(|r| r.map.clone()) {
            for i in 0..ring::REQUEST_COUNT {
                let at = ring::REQUESTS + i * ring::REQUEST_SIZE;
                let state = map.load_u32(at + hook::REQ_STATE);
                let mine = map.load_u64(at + hook::REQ_TP) == tp;
                if mine && matches!(state, request::POSTED | request::DONE) {
                    map.compare_exchange_u32(at + hook::REQ_STATE, state, request::FREE);
                }
            }
        }
        ptrace::setregs(tid, &regs)?;
        Ok(true)
    }
}

/// True when a site of `space` with a probe that watches returns stays an
/// int3 breakpoint (judged so: a site about to be patched is not one): its
/// calls in flight return through the trampoline, and an unwinder needs
/// rtrace to see real frames.
fn int3_returns(space: &Space) -> bool {
    space.sites.iter().any(|(a, s)| {
        s.fast.is_none()
            && space.fast.refused.contains_key(&a)
            && s.probes
                .iter()
                .any(|p| p.kind == (ProbeKind::Function { returns: true }))
    })
}
