//! The hit path: breakpoint → pre handlers → return probe → displaced
//! instruction → post handlers → resume; the trampoline; single steps.

use std::any::Any;
use std::rc::Rc;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::StepMode;
use crate::arch::{self, Regs, Strategy, XolEnd, BREAKPOINT, BREAKPOINT_LEN, WORD};
use crate::error::{Error, Result};
use crate::handler::{Hit, ProbeKind, Return, ReturnAddrs, Site};
use crate::probe::{Owner, ReturnInstance, Watch};
use crate::sys::ptrace;
use crate::sys::wait::{self, Stop, TrapCause, Waited, Which};

use super::space::ResolverCall;
use super::task::{HeldSignal, Hijack, PendingHit, TaskState, XolStep};
use super::{guarded, Tracer};

/// Which handler method a hit runs.
#[derive(Clone, Copy)]
enum Phase {
    Entry,
    Post,
}

/// Runs `phase` of the handler of every probe in `sites` (registration order),
/// each with its own data slot. The first error is kept in `failed`; the others
/// still run, so one failing handler does not silence the rest.
#[allow(clippy::too_many_arguments)]
fn run_handlers(
    probes: &mut [Option<super::Probe>],
    phase: Phase,
    sites: &[Rc<Site>],
    datas: &mut [crate::probe::HandlerData],
    (pid, tid, time): (Pid, Tid, std::time::Duration),
    (regs, dirty): &mut (&mut Regs, &mut bool),
    space: &super::space::Space,
    returns: ReturnAddrs<'_>,
    failed: &mut Option<Error>,
) {
    for (site, data) in sites.iter().zip(datas.iter_mut()) {
        let Some(probe) = probes.get_mut(site.id.0).and_then(Option::as_mut) else {
            continue;
        };
        let mut hit = Hit {
            pid,
            tid,
            site,
            regs,
            regs_dirty: dirty,
            mem: crate::handler::Memory::Live(&space.mem),
            modules: &space.modules,
            time,
            data,
            returns,
            stack: Default::default(),
        };
        let r = match phase {
            Phase::Entry => guarded(|| probe.handler.on_entry(&mut hit)),
            Phase::Post => guarded(|| probe.handler.on_post(&mut hit)),
        };
        if let Err(e) = r {
            failed.get_or_insert(e);
        }
    }
}

/// What an in-place single-step of one thread ended with.
pub(super) enum StepEnd {
    /// The instruction executed; the thread is stopped after it.
    Done,
    /// The thread died, or exec'd (the stop is deferred).
    Gone,
    /// The instruction raised this signal (a fault) and did not complete.
    Faulted(i32),
}

/// The length of the slot's copy of the instruction of an out-of-line step.
fn xol_code_len(step: &XolStep) -> usize {
    match &step.plan.strategy {
        Strategy::Xol(xol) => xol.code.len(),
        Strategy::Emulate(_) | Strategy::InPlace => 0,
    }
}

impl Tracer {
    /// A SIGTRAP stopped `tid`: ours (a probe, the trampoline, a breakpoint just
    /// removed, the end of an out-of-line step) or the tracee's own (delivered as
    /// if untraced). `stray_step` is set when a step trap left over from a step
    /// completed at a signal stop may come now.
    pub(super) fn on_trap(&mut self, tid: Tid, stray_step: bool) -> Result<()> {
        if let Some(step) = self.tasks.get(&tid).and_then(|t| t.step.clone()) {
            return self.on_trap_in_step(tid, wait::trap_cause(tid), &step);
        }
        let mut regs = match ptrace::getregs(tid) {
            Ok(r) => r,
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        let key = self.tasks[&tid].space;
        // Fast records made before this trap are handled before it, so that
        // a thread's fast and int3 events keep their order.
        self.drain(key, super::fast::Drain::Quick)?;
        let site = RuntimeAddr(regs.ip()).offset(-(BREAKPOINT_LEN as i64));
        // Just past the trampoline, or past a live breakpoint whose displaced
        // instruction is longer than one byte, no instruction boundary exists
        // where a SIGTRAP sent by someone could have stopped the thread: the
        // trap is our int3, and the kernel need not be asked.
        let ours_for_sure = !stray_step
            && !self.halting
            && (Some(site) == self.trampoline_of(tid)
                || self
                    .spaces
                    .get(&key)
                    .and_then(|s| s.sites.get(site))
                    .is_some_and(|s| s.plan.len > 1));
        if !ours_for_sure {
            match wait::trap_cause(tid) {
                TrapCause::Step if stray_step => return self.resume(tid, 0),
                TrapCause::Breakpoint => {}
                TrapCause::Step | TrapCause::Sent => {
                    return self.deliver_signal(tid, libc::SIGTRAP)
                }
            }
        }
        if Some(site) == self.trampoline_of(tid) {
            return self.on_trampoline(tid, regs);
        }
        let Some(space) = self.spaces.get(&key) else {
            return self.deliver_signal(tid, libc::SIGTRAP);
        };
        if space.sites.get(site).is_some() && !self.halting {
            return self.on_breakpoint(tid, site, regs);
        }
        if space.is_our_trap(site) {
            // Ours, but removed since (or we are detaching): run the original
            // instruction as if the breakpoint had never been there.
            regs.set_ip(site.get());
            ptrace::setregs(tid, &regs)?;
            return self.resume(tid, 0);
        }
        // The fast return stub's, for a slot it has no entry for.
        if self.orphan_return(tid, regs)? {
            return self.resume(tid, 0);
        }
        // The program's own int3.
        self.deliver_signal(tid, libc::SIGTRAP)
    }

    /// The hit path proper. `tid` is stopped just past the breakpoint at `addr`.
    fn on_breakpoint(&mut self, tid: Tid, addr: RuntimeAddr, mut regs: Regs) -> Result<()> {
        let time = self.start.elapsed();
        regs.set_ip(addr.get());
        let key = self.tasks[&tid].space;
        let (ret_refs, unwind, resolver, resolver_returns, reads_ret, unpark) = {
            let site = self.spaces[&key].sites.get(addr).expect("caller checked");
            (
                site.ret_refs,
                site.unwind,
                site.resolver,
                site.resolver_returns,
                site.reads_return_address,
                site.unpark,
            )
        };
        if unpark {
            // A return site of `_Unwind_Backtrace` that is not a hook yet:
            // the calls parked for it get the stub back.
            self.unpark_calls(tid, RuntimeAddr(regs.sp()))?;
        }
        if ret_refs > 0 {
            self.on_return_site(tid, addr, &mut regs, time)?;
        }
        if resolver_returns > 0 {
            self.on_resolver_return(tid, addr, &regs)?;
        }
        if (ret_refs > 0 || resolver_returns > 0) && self.spaces[&key].sites.get(addr).is_none() {
            // That was the last reason for the breakpoint: the original
            // instruction is back, run it.
            ptrace::setregs(tid, &regs)?;
            return self.resume(tid, 0);
        }
        if resolver {
            self.on_resolver_entry(tid, addr, &regs)?;
        }
        if unwind {
            // An unwinder is about to walk this thread's stack (or a catch
            // handler has just been landed in): it must see only real return
            // addresses. The call it is making overwrites the slot at `sp`:
            // whatever was in flight there or below was unwound.
            self.forget_dead_calls(tid, RuntimeAddr(regs.sp()), true)?;
            self.fast_calls_to_return_sites(tid, RuntimeAddr(regs.sp()), true)?;
            self.watch_at_return_sites(tid)?;
        } else if self.tasks[&tid]
            .returns
            .may_have_dead(RuntimeAddr(regs.sp()))
            && self.spaces[&key].sites.get(addr).is_some_and(|s| {
                s.caller_hook || s.probes.iter().any(|p| p.kind != ProbeKind::Instruction)
            })
        {
            // A function entry: `sp` holds the return address this call just
            // pushed, so calls in flight below it, or in its slot but no longer
            // returning through the trampoline, were left without returning.
            self.forget_dead_calls(tid, RuntimeAddr(regs.sp()), false)?;
        }
        // A function that reads its own return address must find the real
        // one in its slot, even when it was reached by a tail call.
        let tail_call = reads_ret && self.own_return_address_back(tid, RuntimeAddr(regs.sp()))?;
        let task = &self.tasks[&tid];
        let (key, pid, silent) = (task.space, task.pid, task.silent);
        let space = &self.spaces[&key];
        let site = space.sites.get(addr).expect("caller checked the site");
        let probes: Vec<Rc<Site>> = if silent {
            Vec::new()
        } else {
            site.probes.clone()
        };
        let (rtld, plan, slot) = (site.rtld, site.plan.clone(), site.slot);
        let mut datas: Vec<Option<Box<dyn Any>>> = probes.iter().map(|_| None).collect();
        // A handler error is kept and returned once the hit is complete, so the
        // thread is never left half-way.
        let mut failed: Option<Error> = None;

        // Pre handlers, in registration order. This call's own return
        // address is not rewritten yet; the ones of calls in flight may be.
        let mut dirty = false;
        let returns = ReturnAddrs {
            trampoline: space.trampoline(),
            calls: Some(&self.tasks[&tid].returns),
            pending: None,
        };
        run_handlers(
            &mut self.probes,
            Phase::Entry,
            &probes,
            &mut datas,
            (pid, tid, time),
            &mut (&mut regs, &mut dirty),
            space,
            returns,
            &mut failed,
        );

        // A pre handler that moved the instruction pointer takes the thread
        // elsewhere (as a kprobe pre handler returning 1 does): the displaced
        // instruction, the return probe and the post handlers are skipped.
        if regs.ip() != addr.get() {
            ptrace::setregs(tid, &regs)?;
            self.resume(tid, 0)?;
            return match failed {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }

        // Return probe: rewrite the return address, now, while `sp` points at it.
        let wants_return = probes
            .iter()
            .any(|p| p.kind == ProbeKind::Function { returns: true });
        let return_site_only = self.spaces[&key].unknown_unwinder || reads_ret;
        let hijacked =
            match self.hijack_return(tid, &regs, wants_return, return_site_only, tail_call) {
                Ok(h) => h,
                Err(e) => {
                    // Nothing changed but the registers: back to the site.
                    ptrace::setregs(tid, &regs)?;
                    return Err(e);
                }
            };
        let missed = wants_return && hijacked.is_none();
        let hit = PendingHit {
            probes,
            datas,
            time,
            hijacked,
            missed,
            rtld,
            failed,
        };
        let len = u64::from(plan.len);
        match &plan.strategy {
            Strategy::Emulate(e) => {
                if let Err(err) = arch::emulate(*e, addr.get(), len, &mut regs, &space.mem) {
                    self.unhijack(key, hit.hijacked);
                    if err.is_tracee_gone() {
                        return Ok(());
                    }
                    // The thread goes back to the site: after the detach that
                    // this error causes, it runs the instruction for real.
                    regs.set_ip(addr.get());
                    ptrace::setregs(tid, &regs)?;
                    return Err(err);
                }
                self.finish_hit(tid, key, pid, regs, hit)
            }
            Strategy::Xol(xol) => {
                let slot = slot.expect("an out-of-line site has a slot");
                let saved_reg = arch::xol_prepare(xol, slot.get(), &mut regs);
                ptrace::setregs(tid, &regs)?;
                let task = self.tasks.get_mut(&tid).expect("task of the hit");
                task.step = Some(XolStep {
                    site: addr,
                    slot,
                    plan: plan.clone(),
                    saved_reg,
                });
                task.pending_hit = Some(Box::new(hit));
                // Single-steps it (see `resume`); the step trap completes the hit.
                self.resume(tid, 0)
            }
            Strategy::InPlace => {
                ptrace::setregs(tid, &regs)?;
                match self.step_displaced(tid, addr)? {
                    StepEnd::Done => {}
                    StepEnd::Gone => return Ok(()),
                    StepEnd::Faulted(signal) => {
                        // The instruction raised a fault and did not complete:
                        // the program gets the signal at the site, as untraced.
                        self.unhijack(key, hit.hijacked);
                        return self.deliver_signal(tid, signal);
                    }
                }
                let regs = ptrace::getregs(tid)?;
                self.finish_hit(tid, key, pid, regs, hit)
            }
        }
    }

    /// Rewrites the return address at the stack pointer to the trampoline, when
    /// `wanted` and the space has one. When the slot holds the trampoline already
    /// (a tail call from a function whose return is watched), the new call is
    /// chained to that one and nothing is written.
    /// When return addresses must stay as they are (`return_site_only`: the
    /// program has an unwinder rtrace cannot hook, or the function reads its
    /// own return address), or there is no trampoline (no scratch page: the
    /// program's seccomp filter keeps rtrace from mapping one), the return is
    /// watched at the return site instead, from the start. After `tail_call`
    /// (the slot held the trampoline or the fast return stub, which
    /// `own_return_address_back` gave back), the call is chained to the one
    /// it was made for: they return together, through the same slot.
    fn hijack_return(
        &self,
        tid: Tid,
        regs: &Regs,
        wanted: bool,
        return_site_only: bool,
        tail_call: bool,
    ) -> Result<Option<Hijack>> {
        let task = &self.tasks[&tid];
        let space = &self.spaces[&task.space];
        if !wanted {
            return Ok(None);
        }
        let slot = RuntimeAddr(regs.sp());
        let orig = space.mem.read_u64(slot)?;
        let tramp = match space.trampoline() {
            Some(tramp) if !return_site_only || orig == tramp.get() => tramp,
            _ => {
                let chained = tail_call
                    && task.returns.in_slot(slot).is_some_and(|below| {
                        below.watch == Watch::ReturnSite && below.orig_ret.get() == orig
                    });
                return Ok(Some(Hijack {
                    slot,
                    orig: RuntimeAddr(orig),
                    chained,
                    watch: Watch::ReturnSite,
                }));
            }
        };
        if orig == tramp.get() {
            return Ok(task.returns.in_slot(slot).map(|below| Hijack {
                slot,
                orig: below.orig_ret,
                chained: true,
                watch: below.watch,
            }));
        }
        space.mem.write_u64(slot, tramp.get())?;
        Ok(Some(Hijack {
            slot,
            orig: RuntimeAddr(orig),
            chained: false,
            watch: Watch::Trampoline,
        }))
    }

    /// Puts back a return address rewritten for a hit that did not complete.
    fn unhijack(&self, key: Pid, hijacked: Option<Hijack>) {
        let (Some(h), Some(space)) = (hijacked, self.spaces.get(&key)) else {
            return;
        };
        if h.chained || h.watch != Watch::Trampoline {
            return;
        }
        if let Some(tramp) = space.trampoline() {
            if space.mem.read_u64(h.slot).ok() == Some(tramp.get()) {
                let _ = space.mem.write_u64(h.slot, h.orig.get());
            }
        }
    }

    /// Drops the calls in flight of `tid` that a call made with stack pointer
    /// `sp` proves dead (the kernel's `cleanup_return_instances` at hijack
    /// time): those below `sp` on the same stack, those at `sp` itself when
    /// `inclusive` (the caller knows the slot is being reused), and a
    /// trampoline-watched one at `sp` whose slot no longer holds the
    /// trampoline (a call instruction wrote a real return address over it).
    /// Called with `tid` stopped at a function's first instruction.
    fn forget_dead_calls(&mut self, tid: Tid, sp: RuntimeAddr, inclusive: bool) -> Result<()> {
        let task = self.tasks.get_mut(&tid).expect("a known task");
        let Some(space) = self.spaces.get_mut(&task.space) else {
            return Ok(());
        };
        let pid = space.pid;
        let maps = &mut space.maps;
        let mut gone = task
            .returns
            .drop_abandoned(sp, inclusive, &mut |a, b| maps.same_mapping(pid, a, b));
        if !inclusive && task.returns.in_slot(sp).is_some() {
            let tramp = space.trampoline().map(RuntimeAddr::get);
            if Some(space.mem.read_u64(sp)?) != tramp {
                gone.extend(task.returns.drop_overwritten(sp));
            }
        }
        self.release_instances(tid, &gone)
    }

    /// A thread is entering an unwinder (`_Unwind_RaiseException`,
    /// `_Unwind_Backtrace`…): every call of it in flight gets its real return
    /// address back on the stack and is watched at its return site from now on,
    /// gdb's `finish` way. The unwinder then finds the frames it would find
    /// untraced; a frame it unwinds never reaches its return site, and is dropped
    /// later by stack-pointer comparison.
    fn watch_at_return_sites(&mut self, tid: Tid) -> Result<()> {
        let key = self.tasks[&tid].space;
        let sites: Vec<RuntimeAddr> = self.tasks[&tid]
            .returns
            .iter()
            .filter(|i| i.watch == Watch::Trampoline)
            .map(|i| i.orig_ret)
            .collect();
        for a in sites {
            self.clear_jumps_at(key, a)?;
        }
        let task = self.tasks.get_mut(&tid).expect("a known task");
        let Some(space) = self.spaces.get_mut(&task.space) else {
            return Ok(());
        };
        let Some(tramp) = space.trampoline() else {
            return Ok(());
        };
        for inst in task.returns.iter_mut() {
            if inst.watch != Watch::Trampoline {
                continue;
            }
            if space.mem.read_u64(inst.slot)? == tramp.get() {
                space.mem.write_u64(inst.slot, inst.orig_ret.get())?;
            }
            inst.watch = Watch::ReturnSite;
            space.arm(inst.orig_ret, Owner::ReturnSite, StepMode::Auto)?;
        }
        Ok(())
    }

    /// `tid` is at the first instruction of a function that reads its own
    /// return address (`dlsym` finds its caller's module with it), `sp` at
    /// that return address. When the slot holds the trampoline or the fast
    /// return stub, the function was reached by a tail call from one whose
    /// return is watched: as when an unwinder starts, the thread's calls in
    /// flight get their real return addresses back and are watched at their
    /// return sites from now on (the one at `sp` stays: the jump did not
    /// end it). Returns true then.
    fn own_return_address_back(&mut self, tid: Tid, sp: RuntimeAddr) -> Result<bool> {
        let Some(space) = self.tasks.get(&tid).and_then(|t| self.spaces.get(&t.space)) else {
            return Ok(false);
        };
        let held = space.mem.read_u64(sp)?;
        let tramp = space.trampoline().map(RuntimeAddr::get);
        let stub = space.fast.stub.as_ref().map(|s| s.stub.entry);
        if Some(held) != tramp && Some(held) != stub {
            return Ok(false);
        }
        self.fast_calls_to_return_sites(tid, sp, false)?;
        self.watch_at_return_sites(tid)?;
        Ok(true)
    }

    /// `tid` hit a return site watched for calls in flight. Calls whose frames
    /// are gone are dropped; the one returning here (its slot just below the stack
    /// pointer) is reported. `regs` are the registers at the site.
    fn on_return_site(
        &mut self,
        tid: Tid,
        addr: RuntimeAddr,
        regs: &mut Regs,
        time: std::time::Duration,
    ) -> Result<()> {
        let task = self.tasks.get_mut(&tid).expect("a known task");
        let Some(space) = self.spaces.get_mut(&task.space) else {
            return Ok(());
        };
        let pid = space.pid;
        let maps = &mut space.maps;
        let mut same_stack = |a, b| maps.same_mapping(pid, a, b);
        let sp = RuntimeAddr(regs.sp());
        // Below the slot a return here would have come through, frames are gone
        // (unwound by the exception): dropped, unreported.
        let slot = sp.offset(-(WORD as i64));
        let abandoned = task.returns.drop_abandoned(slot, false, &mut same_stack);
        let returning_here = task
            .returns
            .in_slot(slot)
            .is_some_and(|i| i.watch == Watch::ReturnSite && i.orig_ret == addr);
        let returning = if returning_here {
            task.returns.pop_returning(sp, &mut same_stack).1
        } else {
            Vec::new()
        };
        self.release_instances(tid, &abandoned)?;
        self.release_instances(tid, &returning)?;
        self.report_returns(tid, regs, returning, time)
    }

    /// `tid` entered the watched IFUNC resolver at `addr` (`regs` at its first
    /// instruction: `[sp]` is its return address). Its return is watched at
    /// the return address, for this thread and this stack pointer.
    fn on_resolver_entry(&mut self, tid: Tid, addr: RuntimeAddr, regs: &Regs) -> Result<()> {
        let key = self.tasks[&tid].space;
        let Some(space) = self.spaces.get(&key) else {
            return Ok(());
        };
        let ret = RuntimeAddr(space.mem.read_u64(RuntimeAddr(regs.sp()))?);
        self.clear_jumps_at(key, ret)?;
        let Some(space) = self.spaces.get_mut(&key) else {
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
                    if let Some(p) = self.probes.get(id.0).and_then(Option::as_ref) {
                        self.warnings.push(crate::handler::Event::Warning {
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
    fn on_resolver_return(&mut self, tid: Tid, addr: RuntimeAddr, regs: &Regs) -> Result<()> {
        let key = self.tasks[&tid].space;
        let Some(space) = self.spaces.get_mut(&key) else {
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

    /// Instances leaving a thread's return stack: their return sites are released.
    fn release_instances(&mut self, tid: Tid, gone: &[ReturnInstance]) -> Result<()> {
        let key = self.tasks[&tid].space;
        let Some(space) = self.spaces.get_mut(&key) else {
            return Ok(());
        };
        for inst in gone.iter().filter(|i| i.watch == Watch::ReturnSite) {
            space.release_return_site(inst.orig_ret)?;
        }
        Ok(())
    }

    /// Runs the return handlers of `returning` (innermost first) on `regs`.
    /// Returns the first handler error, after all have run.
    fn report_returns(
        &mut self,
        tid: Tid,
        regs: &mut Regs,
        returning: Vec<ReturnInstance>,
        time: std::time::Duration,
    ) -> Result<()> {
        let task = &self.tasks[&tid];
        let (pid, key) = (task.pid, task.space);
        let Some(space) = self.spaces.get(&key) else {
            return Ok(());
        };
        let mut dirty = false;
        let mut failed = None;
        for inst in returning {
            for (site, data) in inst.probes {
                let Some(probe) = self.probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                    continue;
                };
                let mut ret = Return {
                    pid,
                    tid,
                    site: &site,
                    regs,
                    regs_dirty: &mut dirty,
                    mem: crate::handler::Memory::Live(&space.mem),
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
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The end of a hit, once the displaced instruction has executed (`regs` are
    /// the registers after it): post handlers, the registers written back, the
    /// return instance pushed, the dynamic linker's news, and the thread resumed.
    fn finish_hit(
        &mut self,
        tid: Tid,
        key: Pid,
        pid: Pid,
        mut regs: Regs,
        hit: PendingHit,
    ) -> Result<()> {
        let PendingHit {
            probes,
            mut datas,
            time,
            hijacked,
            missed,
            rtld,
            mut failed,
        } = hit;
        if missed {
            for site in probes
                .iter()
                .filter(|p| p.kind == ProbeKind::Function { returns: true })
            {
                let event = crate::handler::Event::Missed {
                    pid,
                    tid,
                    probe: site.probe.clone(),
                    symbol: site.symbol.clone(),
                };
                if let Err(e) = self.emit(event) {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(space) = self.spaces.get(&key) {
            let mut dirty = false;
            // The return address rewritten for this call is recorded below,
            // after the post handlers: until then it is `pending`.
            let pending = hijacked
                .filter(|h| h.watch == Watch::Trampoline && !h.chained)
                .map(|h| (h.slot, h.orig));
            let returns = ReturnAddrs {
                trampoline: space.trampoline(),
                calls: self.tasks.get(&tid).map(|t| &t.returns),
                pending,
            };
            run_handlers(
                &mut self.probes,
                Phase::Post,
                &probes,
                &mut datas,
                (pid, tid, time),
                &mut (&mut regs, &mut dirty),
                space,
                returns,
                &mut failed,
            );
        }
        match ptrace::setregs(tid, &regs) {
            Err(e) if e.is_tracee_gone() => return Ok(()),
            r => r?,
        }
        if let Some(h) = hijacked {
            let probes = probes
                .into_iter()
                .zip(datas)
                .filter(|(p, _)| p.kind == ProbeKind::Function { returns: true })
                .collect();
            // The call's time starts now, when the thread goes on into the
            // function: what the handlers took at the entry (the first
            // call of a function parses its debug information) is not the
            // function's.
            let entered = self.start.elapsed().max(time);
            if let Some(task) = self.tasks.get_mut(&tid) {
                task.returns.push(ReturnInstance {
                    slot: h.slot,
                    orig_ret: h.orig,
                    entered,
                    probes,
                    chained: h.chained,
                    watch: h.watch,
                });
            }
            if h.watch == Watch::ReturnSite {
                self.clear_jumps_at(key, h.orig)?;
                if let Some(space) = self.spaces.get_mut(&key) {
                    space.arm(h.orig, Owner::ReturnSite, StepMode::Auto)?;
                }
            }
        }
        if rtld {
            self.on_rtld_event(key)?;
        }
        self.resume(tid, 0)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A SIGTRAP stopped `tid` while it steps out of line.
    fn on_trap_in_step(&mut self, tid: Tid, cause: TrapCause, step: &XolStep) -> Result<()> {
        let regs = match ptrace::getregs(tid) {
            Ok(r) => r,
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        let guard = step.slot.get() + xol_code_len(step) as u64 + BREAKPOINT_LEN;
        match cause {
            TrapCause::Step => self.complete_step(tid, regs),
            // Something ran on past the instruction onto the slot's guard (a
            // task created by the stepped system call, which is not stepping).
            TrapCause::Breakpoint if regs.ip() == guard => self.complete_step(tid, regs),
            TrapCause::Breakpoint | TrapCause::Sent => self.on_signal_in_step(tid, libc::SIGTRAP),
        }
    }

    /// The out-of-line step of `tid` ended (`regs`, just read): fix the registers
    /// up, and finish the hit. A `rep` instruction between iterations is stepped
    /// again.
    fn complete_step(&mut self, tid: Tid, mut regs: Regs) -> Result<()> {
        let task = self.tasks.get_mut(&tid).expect("a stepping task");
        let step = task.step.clone().expect("a stepping task");
        let (key, pid) = (task.space, task.pid);
        let Some(space) = self.spaces.get(&key) else {
            return Ok(());
        };
        match step.finish(&mut regs, &space.mem) {
            Ok(XolEnd::Again) => return self.resume(tid, 0),
            Ok(XolEnd::Done) => {}
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        }
        let task = self.tasks.get_mut(&tid).expect("a stepping task");
        task.step = None;
        match task.pending_hit.take() {
            Some(hit) => self.finish_hit(tid, key, pid, regs, *hit),
            // A task that inherited the step (created by the stepped call).
            None => {
                ptrace::setregs(tid, &regs)?;
                self.resume(tid, 0)
            }
        }
    }

    /// A signal stopped `tid` while it steps out of line. A fault raised by the
    /// instruction cancels the step: the thread goes back to the site and gets
    /// the signal there, as it would untraced. Any other signal waits for the
    /// step to complete, then is delivered, once.
    pub(super) fn on_signal_in_step(&mut self, tid: Tid, signal: i32) -> Result<()> {
        let mut regs = match ptrace::getregs(tid) {
            Ok(r) => r,
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        let task = self.tasks.get_mut(&tid).expect("a stepping task");
        let step = task.step.clone().expect("a stepping task");
        if regs.ip() != step.slot.get() {
            // The instruction ran (a system call the signal interrupted): the
            // step is over; the signal follows it.
            task.stray_step = true;
            self.hold_signal(tid, signal)?;
            return self.complete_step(tid, regs);
        }
        if !wait::is_fault(tid, signal) {
            self.hold_signal(tid, signal)?;
            return self.resume(tid, 0);
        }
        step.cancel(&mut regs);
        task.step = None;
        let hit = task.pending_hit.take();
        let key = task.space;
        ptrace::setregs(tid, &regs)?;
        if let Some(hit) = hit {
            self.unhijack(key, hit.hijacked);
        }
        self.deliver_signal(tid, signal)
    }

    /// Detaching: a thread caught in an out-of-line step leaves the slot, either
    /// back at the site (the instruction has not run) or after it, and a return
    /// address rewritten for its hit gets its original back.
    pub(super) fn abandon_step(&mut self, tid: Tid) -> Result<()> {
        let Some(task) = self.tasks.get_mut(&tid) else {
            return Ok(());
        };
        let (Some(step), hit) = (task.step.take(), task.pending_hit.take()) else {
            return Ok(());
        };
        let key = task.space;
        if let Some(hit) = hit {
            self.unhijack(key, hit.hijacked);
        }
        let mut regs = ptrace::getregs(tid)?;
        if regs.ip() == step.slot.get() {
            step.cancel(&mut regs);
        } else if let Some(space) = self.spaces.get(&key) {
            step.finish(&mut regs, &space.mem)?;
        }
        ptrace::setregs(tid, &regs)
    }

    /// Executes the instruction displaced by the breakpoint at `addr`, in place:
    /// every other thread of the address space is stopped, the original bytes go
    /// back, `tid` single-steps, the breakpoint is re-armed, the others resume.
    /// Signals that arrive during the step are kept for after it.
    fn step_displaced(&mut self, tid: Tid, addr: RuntimeAddr) -> Result<StepEnd> {
        let key = self.tasks[&tid].space;
        let others: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|(t, k)| {
                k.space == key && **t != tid && k.state == TaskState::Running && !k.exiting
            })
            .map(|(t, _)| *t)
            .collect();
        let stopped = self.interrupt_and_collect(&others)?;
        let saved = self.spaces[&key]
            .sites
            .get(addr)
            .map(|s| s.saved.clone())
            .expect("site armed");
        self.spaces[&key].mem.write(addr, &saved)?;
        let mut end = self.single_step(tid);
        // A `rep` instruction stops between iterations, still at the site,
        // and is stepped on: its count is the program's, without bound, so a
        // detach signal ends the stepping (the thread stays between two
        // iterations, at the site; its trap there is rewound at the detach
        // that follows, and the rest runs untraced).
        while let Ok(StepEnd::Done) = end {
            match ptrace::getregs(tid) {
                Ok(regs) if regs.ip() == addr.get() && !crate::sys::signal::stop_requested() => {
                    end = self.single_step(tid)
                }
                _ => break,
            }
        }
        // Re-arm whatever happened, unless the address space is gone.
        if let Some(space) = self.spaces.get(&key) {
            if matches!(end, Ok(StepEnd::Done | StepEnd::Faulted(_)))
                || space.sites.get(addr).is_some()
            {
                match space.mem.write(addr, &BREAKPOINT) {
                    Err(e) if !e.is_tracee_gone() => return Err(e),
                    _ => {}
                }
            }
        }
        for t in stopped {
            self.resume(t, 0)?;
        }
        end
    }

    /// Single-steps `tid` once, keeping signals that arrive for later delivery.
    /// A fault raised by the instruction itself ends the step (it did not run).
    pub(super) fn single_step(&mut self, tid: Tid) -> Result<StepEnd> {
        loop {
            match ptrace::step(tid, 0) {
                Err(e) if e.is_tracee_gone() => return Ok(StepEnd::Gone),
                r => r?,
            }
            let stop = loop {
                match self.wait_stop(Which::Tid(tid), true, false)? {
                    Waited::Stop(s) => break s,
                    Waited::NotReady | Waited::Interrupted => continue,
                    Waited::NoTracee => return Ok(StepEnd::Gone),
                }
            };
            match stop {
                Stop::Trap { .. } if wait::trap_cause(tid) == TrapCause::Step => {
                    return Ok(StepEnd::Done)
                }
                Stop::Trap { .. } => self.hold_signal(tid, libc::SIGTRAP)?,
                Stop::Signal { signal, .. } if wait::is_fault(tid, signal) => {
                    return Ok(StepEnd::Faulted(signal))
                }
                Stop::Signal { signal, .. } => self.hold_signal(tid, signal)?,
                Stop::GroupStop { .. } | Stop::Interrupt { .. } => {}
                Stop::Exited { .. } | Stop::Killed { .. } => {
                    self.deferred.push_back(stop);
                    return Ok(StepEnd::Gone);
                }
                Stop::Event { event, .. } => match event {
                    wait::Event::Clone { child } => {
                        self.on_new_child(tid, child, crate::ForkKind::Clone)?
                    }
                    wait::Event::Fork { child } => {
                        self.on_new_child(tid, child, crate::ForkKind::Fork)?
                    }
                    wait::Event::Vfork { child } => {
                        self.on_new_child(tid, child, crate::ForkKind::Vfork)?
                    }
                    wait::Event::VforkDone => {}
                    wait::Event::Exit => {
                        self.on_exiting(tid)?;
                        return Ok(StepEnd::Gone);
                    }
                    wait::Event::Exec { .. } => {
                        self.deferred.push_back(stop);
                        return Ok(StepEnd::Gone);
                    }
                },
            }
        }
    }

    /// Keeps a signal that arrived while `tid` was stepping (`tid` is in its
    /// signal-delivery stop), with its siginfo, to deliver when the step is
    /// over. It is reported when it is delivered.
    pub(super) fn hold_signal(&mut self, tid: Tid, signal: i32) -> Result<()> {
        let Some(task) = self.tasks.get_mut(&tid) else {
            return Ok(());
        };
        let info = ptrace::getsiginfo(tid).ok();
        task.held.push(HeldSignal {
            signal,
            info,
            reported: false,
        });
        Ok(())
    }

    /// A thread returned into the trampoline: report the return, send it on to
    /// the real return address.
    pub(super) fn on_trampoline(&mut self, tid: Tid, mut regs: Regs) -> Result<()> {
        let time = self.start.elapsed();
        let task = self.tasks.get_mut(&tid).expect("trap of a known task");
        let sp = RuntimeAddr(regs.sp());
        let (abandoned, returning) = match self.spaces.get_mut(&task.space) {
            Some(space) => {
                let pid = space.pid;
                let maps = &mut space.maps;
                task.returns
                    .pop_returning(sp, &mut |a, b| maps.same_mapping(pid, a, b))
            }
            None => (Vec::new(), Vec::new()),
        };
        let orig = match returning.first() {
            Some(innermost) => innermost.orig_ret,
            // A call judged abandoned, that was not: it goes where it was
            // going, unreported, rather than nowhere.
            None => match task.returns.recover(sp.offset(-(WORD as i64))) {
                Some(orig) => orig,
                None => return Err(Error::LostReturn { tid, sp }),
            },
        };
        regs.set_ip(orig.get());
        self.release_instances(tid, &abandoned)?;
        let failed = self.report_returns(tid, &mut regs, returning, time);
        ptrace::setregs(tid, &regs)?;
        self.resume(tid, 0)?;
        failed
    }
}
