//! Watching IFUNC resolvers: an IFUNC no GOT slot has resolved yet has no
//! implementation to probe. Its resolver's entry is an int3 of rtrace's
//! own (`Owner::Resolver`); at each entry the call's return site is armed
//! for that thread and stack pointer (`Owner::ResolverReturn`), and there
//! the answer in rax is the implementation, armed for the waiting probes
//! before the caller (the dynamic linker binding a PLT slot, or a static
//! executable's start code) can jump to it.

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::{Regs, StepMode, WORD};
use crate::error::{Error, Result};
use crate::handler::{Event, ProbeId, SkipReason};
use crate::probe::Owner;
use crate::symbols::{ifunc, Location};

use super::fast;
use super::space::{Placement, ResolverCall, ResolverWatch};
use super::tracer::Tracer;

impl Tracer {
    /// Watches the resolver of the IFUNC at `loc` for probe `id` (see
    /// `on_resolver_return`). A resolver whose first instruction cannot be
    /// probed leaves the IFUNC unresolvable: skipped by a glob, an error for a
    /// name.
    pub(super) fn watch_resolver(
        &mut self,
        key: Pid,
        id: ProbeId,
        loc: Location,
        glob: bool,
        skipped: &mut Vec<SkipReason>,
    ) -> Result<()> {
        fast::before_arm(self, key, loc.addr)?;
        let space = self
            .world
            .spaces
            .get_mut(&key)
            .ok_or(Error::NoSuchProcess { pid: key })?;
        match space.arm(loc.addr, Owner::Resolver, crate::arch::StepMode::Auto) {
            Ok(()) => {
                let watch = space
                    .resolvers
                    .entry(loc.addr)
                    .or_insert_with(|| ResolverWatch {
                        ifunc: loc,
                        probes: Vec::new(),
                    });
                if !watch.probes.contains(&id) {
                    watch.probes.push(id);
                }
                Ok(())
            }
            Err(Error::UnsupportedInstruction { reason, .. }) if glob => {
                let why = format!(
                    "IFUNCs no GOT slot resolves whose resolver cannot be watched ({reason})"
                );
                SkipReason::add(skipped, &why, &loc.symbol);
                Ok(())
            }
            Err(Error::UnsupportedInstruction { .. }) => {
                Err(Error::UnresolvedIfunc { name: loc.symbol })
            }
            Err(e) => Err(e),
        }
    }

    /// A watched resolver returned to `ret` on `tid` (stopped there, `rax`
    /// its answer): its implementation is armed for the probes waiting for
    /// it, now, before the caller (the dynamic linker binding a PLT slot, or
    /// the start code of a static executable) can jump to it. An answer that
    /// is not code, or cannot be probed, is reported: calls of the IFUNC are
    /// then not traced, and the user is told so.
    pub(super) fn on_resolver_returned(
        &mut self,
        key: Pid,
        resolver: RuntimeAddr,
        answer: u64,
    ) -> Result<()> {
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(());
        };
        let Some(watch) = space.resolvers.get(&resolver).cloned() else {
            return Ok(());
        };
        let Some(implementation) = ifunc::answer(&space.modules, &watch.ifunc, answer) else {
            let what = unprobed_answer(key, answer);
            for id in &watch.probes {
                if let Some(p) = self.consumers.probes.get(id.0).and_then(Option::as_ref) {
                    self.consumers.warnings.push(Event::Warning {
                        probe: p.spec.as_str().to_string(),
                        message: format!(
                            "the resolver of the IFUNC {} returned {answer:#x}, {what}: its \
                             calls through that binding are not traced",
                            watch.ifunc.symbol
                        ),
                    });
                }
            }
            return Ok(());
        };
        for id in watch.probes {
            let armed_there = matches!(
                self.world.spaces.get(&key).and_then(|s| s.placed.get(&id)),
                Some(Placement::Armed(addrs)) if addrs.contains(&implementation.addr)
            );
            let Some(spec) = self.consumers.probes.get(id.0).and_then(Option::as_ref) else {
                continue;
            };
            if armed_there {
                continue;
            }
            let spec = spec.spec.as_str().to_string();
            let mut skipped = Vec::new();
            // The program is running: what cannot be armed now is told, not
            // fatal.
            if let Err(e) =
                self.arm_locations(key, id, vec![implementation.clone()], true, &mut skipped)
            {
                if e.is_tracee_gone() {
                    return Ok(());
                }
                return Err(e);
            }
            self.report_skipped(id, spec, skipped);
        }
        Ok(())
    }

    /// `tid` entered the watched IFUNC resolver at `addr` (`regs` at its first
    /// instruction: `[sp]` is its return address). Its return is watched at
    /// the return address, for this thread and this stack pointer.
    pub(super) fn on_resolver_entry(
        &mut self,
        tid: Tid,
        addr: RuntimeAddr,
        regs: &Regs,
    ) -> Result<()> {
        let key = self.world.tasks[&tid].space;
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(());
        };
        let ret = RuntimeAddr(space.mem.read_u64(RuntimeAddr(regs.sp()))?);
        fast::before_arm(self, key, ret)?;
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return Ok(());
        };
        // A call this thread never returned from (it cannot nest: a
        // resolver calls no resolver) no longer needs its return site.
        if let Some(old) = space.resolving.remove(&tid) {
            space.release_resolver_return(old.ret)?;
        }
        match space.arm(ret, Owner::ResolverReturn, StepMode::Auto) {
            Ok(()) => {
                space.resolving.insert(
                    tid,
                    ResolverCall {
                        resolver: addr,
                        ret,
                        sp_after: regs.sp().wrapping_add(WORD),
                    },
                );
                Ok(())
            }
            Err(e) if e.is_tracee_gone() => Ok(()),
            Err(Error::UnsupportedInstruction { reason, .. }) => {
                let (symbol, probes) = match space.resolvers.get(&addr) {
                    Some(w) => (w.ifunc.symbol.clone(), w.probes.clone()),
                    None => return Ok(()),
                };
                for id in probes {
                    if let Some(p) = self.consumers.probes.get(id.0).and_then(Option::as_ref) {
                        self.consumers
                            .warnings
                            .push(crate::handler::Event::Warning {
                                probe: p.spec.as_str().to_string(),
                                message: format!(
                                "the answer of a call of the resolver of the IFUNC {symbol} cannot \
                                 be watched (its return site: {reason}): calls of {symbol} through \
                                 that binding are not traced"
                            ),
                            });
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `tid` is at a return site of watched resolver calls (`regs` there):
    /// when it is the return of its own call (same return address, the stack
    /// pointer just above the return address), the answer in rax is armed.
    /// Other threads and other calls through the same return site pass by.
    pub(super) fn on_resolver_return(
        &mut self,
        tid: Tid,
        addr: RuntimeAddr,
        regs: &Regs,
    ) -> Result<()> {
        let key = self.world.tasks[&tid].space;
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return Ok(());
        };
        let Some(call) = space.resolving.get(&tid).copied() else {
            return Ok(());
        };
        if call.ret != addr || regs.sp() != call.sp_after {
            return Ok(());
        }
        space.resolving.remove(&tid);
        space.release_resolver_return(addr)?;
        self.on_resolver_returned(key, call.resolver, regs.retval())
    }
}

/// What the address an IFUNC resolver returned is, when it is no function
/// of a loaded module rtrace could probe: the vDSO (the kernel's code,
/// mapped into every process: `time`, `gettimeofday`), code in no module
/// (made at run time), or no code at all.
fn unprobed_answer(pid: Pid, answer: u64) -> &'static str {
    let at = RuntimeAddr(answer);
    let maps = crate::symbols::maps::read(pid).unwrap_or_default();
    match maps.iter().find(|m| m.start <= at && at < m.end) {
        Some(m) if m.name == "[vdso]" => {
            "in the vDSO (the kernel's code in every process, which rtrace does not probe)"
        }
        Some(m) if m.exec => "code in no module (made at run time), which rtrace does not probe",
        Some(_) => "which is not code",
        None => "which is not mapped",
    }
}
