//! The hit path: breakpoint → rtrace's own consumers → pre handlers →
//! return probe → displaced instruction → post handlers → resume
//! ([`Tracer::on_breakpoint`]); the trampoline. The steps of the displaced
//! instruction are in `step`, rtrace's own consumers in `own` and `ifunc`.

use std::any::Any;
use std::rc::Rc;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::StepMode;
use crate::arch::{self, Regs, Strategy, BREAKPOINT_LEN, WORD};
use crate::error::{Error, Result};
use crate::handler::{Hit, ProbeKind, Return, ReturnAddrs, Site};
use crate::probe::{Owner, ReturnInstance, Watch};
use crate::sys::ptrace;
use crate::sys::wait::{self, TrapCause};

use super::fast;
use super::guards::HitInProgress;
use super::own::{OwnEnd, SiteHit};
use super::step::StepEnd;
use super::task::{Hijack, PendingHit, XolStep};
use super::tracer::{guarded, Tracer};

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

impl Tracer {
    /// A SIGTRAP stopped `tid`: ours (a probe, the trampoline, a breakpoint just
    /// removed, the end of an out-of-line step) or the tracee's own (delivered as
    /// if untraced). `stray_step` is set when a step trap left over from a step
    /// completed at a signal stop may come now.
    pub(super) fn on_trap(&mut self, tid: Tid, stray_step: bool) -> Result<()> {
        if let Some(step) = self.world.tasks.get(&tid).and_then(|t| t.step.clone()) {
            return self.on_trap_in_step(tid, wait::trap_cause(tid), &step);
        }
        let regs = match ptrace::getregs(tid) {
            Ok(r) => r,
            Err(e) if e.is_tracee_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        let key = self.world.tasks[&tid].space;
        // Fast records made before this trap are handled before it, so that
        // a thread's fast and int3 events keep their order. A handler's
        // error there (its output gone) is returned once the trap is
        // handled: the thread is never left just past an int3 of ours.
        let drained = fast::before_trap(&mut self.reader(), key);
        let handled = self.handle_trap(tid, key, regs, stray_step);
        drained.and(handled)
    }

    /// [`Tracer::on_trap`], once the records before the trap are read.
    fn handle_trap(&mut self, tid: Tid, key: Pid, mut regs: Regs, stray_step: bool) -> Result<()> {
        let site = RuntimeAddr(regs.ip()).offset(-(BREAKPOINT_LEN as i64));
        // Just past the trampoline, or past a live breakpoint whose displaced
        // instruction is longer than one byte, no instruction boundary exists
        // where a SIGTRAP sent by someone could have stopped the thread: the
        // trap is our int3, and the kernel need not be asked.
        let ours_for_sure = !stray_step
            && !self.halting
            && (Some(site) == self.trampoline_of(tid)
                || self
                    .world
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
        let Some(space) = self.world.spaces.get(&key) else {
            return self.deliver_signal(tid, libc::SIGTRAP);
        };
        if space.sites.get(site).is_some_and(|s| s.fast.is_none()) && !self.halting {
            return self.on_breakpoint(tid, site, regs);
        }
        if space.is_our_trap(site) {
            // Ours, but removed since (or we are detaching): run the original
            // instruction as if the breakpoint had never been there. Or a
            // jump was written over it after this thread trapped there (the
            // trap not handled yet: see `Tracer::patch_planned`): the
            // thread goes back to the site and takes the jump, its hit the
            // detour's to record.
            regs.set_ip(site.get());
            ptrace::setregs(tid, &regs)?;
            return self.resume(tid, 0);
        }
        // The fast return stub's, for a slot it has no entry for.
        if fast::on_stray_trap(self, tid, regs)? {
            return self.resume(tid, 0);
        }
        // The program's own int3.
        self.deliver_signal(tid, libc::SIGTRAP)
    }

    /// The hit path (the kernel's `handle_swbp`): `tid` is stopped just past
    /// the breakpoint at `addr`. The site is read once; then, top to bottom:
    ///
    /// 0. rtrace's own consumers of the breakpoint (`own.rs`), when the site
    ///    has any: a return site's calls return, an IFUNC resolver is
    ///    entered or returns, an unwinder or a function that reads its own
    ///    return address is entered. When that was the breakpoint's last
    ///    reason, the original instruction is back: the thread runs it;
    /// 1. the user's pre handlers;
    /// 2. the return probe (the return address rewritten, or the return site
    ///    watched);
    /// 3. the displaced instruction: emulated, set up out of line (the step
    ///    trap completes the hit), or stepped in place (`step.rs`);
    /// 4. the post handlers (`finish_hit`), and the dynamic linker's
    ///    breakpoint, rtrace's own consumer that runs after the user's;
    /// 5. the thread resumes.
    ///
    /// Until the registers are set for what follows, an error anywhere
    /// leaves the thread at `addr` ([`HitInProgress`]).
    fn on_breakpoint(&mut self, tid: Tid, addr: RuntimeAddr, mut regs: Regs) -> Result<()> {
        let time = self.start.elapsed();
        let in_progress = HitInProgress::new(tid, addr);
        regs.set_ip(addr.get());
        let task = &self.world.tasks[&tid];
        let (key, pid, silent) = (task.space, task.pid, task.silent);
        let site = SiteHit::of(
            self.world.spaces[&key]
                .sites
                .get(addr)
                .expect("caller checked the site"),
            silent,
        );

        // 0. rtrace's own consumers.
        let tail_call = match self.own_consumers(tid, addr, &mut regs, &site, time)? {
            OwnEnd::SiteGone => {
                ptrace::setregs(tid, &regs)?;
                in_progress.done();
                return self.resume(tid, 0);
            }
            OwnEnd::Go { tail_call } => tail_call,
        };
        let SiteHit {
            probes,
            own,
            plan,
            slot,
            ..
        } = site;
        let space = &self.world.spaces[&key];
        let mut datas: Vec<Option<Box<dyn Any>>> = probes.iter().map(|_| None).collect();
        // A handler error is kept and returned once the hit is complete, so the
        // thread is never left half-way.
        let mut failed: Option<Error> = None;

        // 1. Pre handlers, in registration order. This call's own return
        // address is not rewritten yet; the ones of calls in flight may be.
        let mut dirty = false;
        let returns = ReturnAddrs {
            trampoline: space.trampoline(),
            calls: Some(&self.world.tasks[&tid].returns),
            stub: space.fast.stub_entry().map(RuntimeAddr),
            stub_calls: Some(&self.world.tasks[&tid].fast_calls),
            pending: None,
        };
        run_handlers(
            &mut self.consumers.probes,
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
            in_progress.done();
            self.resume(tid, 0)?;
            return match failed {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }

        // 2. Return probe: rewrite the return address, now, while `sp` points at it.
        let wants_return = probes
            .iter()
            .any(|p| p.kind == ProbeKind::Function { returns: true });
        let return_site_only = self.world.spaces[&key].unknown_unwinder || own.reads_return_address;
        // Through the return stub (one stop per call) where the handlers
        // take their returns from a record; else the trampoline's int3.
        let by_stub = match wants_return && !return_site_only && !tail_call {
            true => self.stub_want(key, addr, &probes),
            false => None,
        };
        let by_stub = match by_stub {
            Some(want) => {
                let watching: Vec<Rc<Site>> = probes
                    .iter()
                    .filter(|p| p.kind == ProbeKind::Function { returns: true })
                    .cloned()
                    .collect();
                match fast::stub_return(self, tid, addr, &regs, &watching, want) {
                    Ok(h) => h,
                    Err(e) => {
                        ptrace::setregs(tid, &regs)?;
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let hijacked = match by_stub {
            Some(h) => Ok(Some(h)),
            None => self.hijack_return(tid, &regs, wants_return, return_site_only, tail_call),
        };
        let hijacked = match hijacked {
            Ok(h) => h,
            Err(e) => {
                // Nothing changed but the registers: back to the site.
                ptrace::setregs(tid, &regs)?;
                return Err(e);
            }
        };
        // Chained to a call whose return the stub records: its return is
        // recorded with that one, and what it wants copied then goes into
        // that call's table entry.
        if hijacked.as_ref().is_some_and(|h| h.by_stub && h.chained) {
            if let Err(e) = fast::chained_wants(self, tid, addr, &regs, &probes) {
                if !e.is_tracee_gone() {
                    failed.get_or_insert(e);
                }
            }
        }
        let missed = wants_return && hijacked.is_none();
        let hit = PendingHit {
            probes,
            datas,
            time,
            hijacked,
            missed,
            rtld: own.rtld,
            failed,
            resume: None,
        };
        // 3. The displaced instruction; 4. and 5. in `finish_hit`, or when
        // the step out of line completes. At a site's first hit, the jump
        // may be written now: the thread then runs the detour's copy of
        // the probed instruction, stepped, and goes on through the copies
        // of the rest.
        match fast::patch_at_hit(self, tid, key, addr, &regs) {
            Ok(Some(patched)) => {
                return self.run_patched(
                    tid,
                    (key, pid),
                    addr,
                    regs,
                    hit,
                    &plan,
                    patched,
                    in_progress,
                )
            }
            Ok(None) => {}
            Err(e) => {
                self.unhijack(key, hit.hijacked);
                return Err(e);
            }
        }
        let space = &self.world.spaces[&key];
        let len = u64::from(plan.len);
        match &plan.strategy {
            Strategy::Emulate(e) => {
                if let Err(err) = arch::emulate(*e, addr, len, &mut regs, &space.mem) {
                    self.unhijack(key, hit.hijacked);
                    if err.is_tracee_gone() {
                        return Ok(());
                    }
                    // The thread goes back to the site (`in_progress`): after
                    // the detach that this error causes, it runs the
                    // instruction for real.
                    return Err(err);
                }
                // Its effects are in memory and in `regs`: they are the
                // thread's now.
                in_progress.done();
                self.finish_hit(tid, key, pid, regs, hit)
            }
            Strategy::Xol(xol) => {
                let slot = slot.expect("an out-of-line site has a slot");
                let saved_reg = arch::xol_prepare(xol, slot, &mut regs);
                ptrace::setregs(tid, &regs)?;
                in_progress.done();
                let task = self.world.tasks.get_mut(&tid).expect("task of the hit");
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
                in_progress.done();
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

    /// Step 3 of a hit at which its site was patched (`patched`, see
    /// `fast::patch_at_hit`): the probed instruction runs, emulated as an
    /// int3 hit would (no stop), or as the detour's copy of it, stepped;
    /// the post handlers see it done, the instruction pointer where the
    /// original code has the next instruction; the thread goes on at the
    /// detour's copy of that one when the jump covers it.
    #[allow(clippy::too_many_arguments)]
    fn run_patched(
        &mut self,
        tid: Tid,
        (key, pid): (Pid, Pid),
        addr: RuntimeAddr,
        mut regs: Regs,
        hit: PendingHit,
        plan: &arch::InsnPlan,
        patched: fast::Patched,
        in_progress: HitInProgress,
    ) -> Result<()> {
        let len = u64::from(plan.len);
        let next = addr.get() + len;
        match &plan.strategy {
            Strategy::Emulate(e) => {
                let space = &self.world.spaces[&key];
                if let Err(err) = arch::emulate(*e, addr, len, &mut regs, &space.mem) {
                    self.unhijack(key, hit.hijacked);
                    if err.is_tracee_gone() {
                        return Ok(());
                    }
                    // Back to the site (`in_progress`): the detach this
                    // error causes puts its bytes back.
                    return Err(err);
                }
                in_progress.done();
            }
            _ => {
                in_progress.done();
                match fast::run_copy(self, tid, &regs, &patched)? {
                    fast::AtHit::Ran(after) => {
                        regs = *after;
                        if regs.ip() == patched.after_first {
                            regs.set_ip(next);
                        }
                    }
                    fast::AtHit::Gone => return Ok(()),
                    fast::AtHit::Faulted(signal) => {
                        // As a fault of the instruction stepped in place:
                        // the program gets the signal at the site.
                        self.unhijack(key, hit.hijacked);
                        return self.deliver_signal(tid, signal);
                    }
                }
            }
        }
        // Past the probed instruction, inside the jump: the thread goes on
        // at the copy of the next one (unless a post handler moves it).
        let resume =
            (regs.ip() == next && len < patched.len).then_some((next, patched.after_first));
        self.finish_hit(tid, key, pid, regs, PendingHit { resume, ..hit })
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
        let task = &self.world.tasks[&tid];
        let space = &self.world.spaces[&task.space];
        if !wanted {
            return Ok(None);
        }
        let slot = RuntimeAddr(regs.sp());
        let orig = space.mem.read_u64(slot)?;
        // A tail call from a fast call whose return the stub watches: the
        // slot holds the stub, and that call's table entry is keyed by it.
        // This one returns with it, through the stub (its return recorded,
        // as the stub records every call of that slot); the trampoline
        // written there would send the stub's return to nowhere.
        if space.fast.stub_entry() == Some(orig) {
            if let Some(chained) = Hijack::chained_to_fast(&task.fast_calls, slot) {
                return Ok(Some(chained));
            }
        }
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
                    by_stub: false,
                    entry: None,
                }));
            }
        };
        if orig == tramp.get() {
            return Ok(task.returns.in_slot(slot).map(|below| Hijack {
                slot,
                orig: below.orig_ret,
                chained: true,
                watch: below.watch,
                by_stub: false,
                entry: None,
            }));
        }
        space.mem.write_u64(slot, tramp.get())?;
        Ok(Some(Hijack {
            slot,
            orig: RuntimeAddr(orig),
            chained: false,
            watch: Watch::Trampoline,
            by_stub: false,
            entry: None,
        }))
    }

    /// What the handlers of the return probes among `probes` (at `addr` of
    /// space `key`) want of a return recorded by the stub; None when one
    /// of them wants the thread stopped at the return, or `--returns stop`.
    /// Each handler's answer is asked once per probe and address.
    fn stub_want(
        &mut self,
        key: Pid,
        addr: RuntimeAddr,
        probes: &[Rc<Site>],
    ) -> Option<fast::StubWant> {
        if self.opts.returns != super::tracer::ReturnMode::Stub {
            return None;
        }
        let space = self.world.spaces.get(&key)?;
        let mut want = crate::handler::Returns::Record {
            string: 0,
            errno: false,
        };
        for site in probes
            .iter()
            .filter(|p| p.kind == ProbeKind::Function { returns: true })
        {
            let asked = (site.id, addr);
            let answer = match self.consumers.returns_wanted.get(&asked) {
                Some((symbol, answer)) if *symbol == site.symbol => *answer,
                _ => {
                    let module = space.modules.module_at(addr);
                    let probe = self.consumers.probes.get_mut(site.id.0)?.as_mut()?;
                    // (A handler that panics here wants what is always right.)
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        probe.handler.returns(site, module)
                    }))
                    .unwrap_or(crate::handler::Returns::Stop);
                    self.consumers
                        .returns_wanted
                        .insert(asked, (site.symbol.clone(), answer));
                    answer
                }
            };
            want = crate::handler::Returns::both(want, answer);
        }
        match want {
            crate::handler::Returns::Record { string, errno } => {
                Some(fast::StubWant { string, errno })
            }
            crate::handler::Returns::Stop => None,
        }
    }

    /// Puts back a return address rewritten for a hit that did not complete.
    pub(super) fn unhijack(&mut self, key: Pid, hijacked: Option<Hijack>) {
        if let Some(h) = hijacked.as_ref().filter(|h| h.by_stub) {
            return fast::undo_stub_return(self, key, h);
        }
        let (Some(h), Some(space)) = (hijacked, self.world.spaces.get(&key)) else {
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

    /// Instances leaving a thread's return stack: their return sites are released.
    pub(super) fn release_instances(&mut self, tid: Tid, gone: &[ReturnInstance]) -> Result<()> {
        let key = self.world.tasks[&tid].space;
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return Ok(());
        };
        for inst in gone.iter().filter(|i| i.watch == Watch::ReturnSite) {
            space.release_return_site(inst.orig_ret)?;
        }
        Ok(())
    }

    /// Runs the return handlers of `returning` (innermost first) on `regs`.
    /// Returns the first handler error, after all have run.
    pub(super) fn report_returns(
        &mut self,
        tid: Tid,
        regs: &mut Regs,
        returning: Vec<ReturnInstance>,
        time: std::time::Duration,
    ) -> Result<()> {
        let task = &self.world.tasks[&tid];
        let (pid, key) = (task.pid, task.space);
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(());
        };
        let mut dirty = false;
        let mut failed = None;
        for inst in returning {
            for (site, data) in inst.probes {
                let Some(probe) = self
                    .consumers
                    .probes
                    .get_mut(site.id.0)
                    .and_then(Option::as_mut)
                else {
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
                    errno: None,
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
    pub(super) fn finish_hit(
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
            resume,
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
        if let Some(space) = self.world.spaces.get(&key) {
            let mut dirty = false;
            // The return address rewritten for this call is recorded below,
            // after the post handlers: until then it is `pending`.
            let pending = hijacked
                .filter(|h| h.watch == Watch::Trampoline && !h.chained)
                .map(|h| (h.slot, h.orig));
            let task = self.world.tasks.get(&tid);
            let returns = ReturnAddrs {
                trampoline: space.trampoline(),
                calls: task.map(|t| &t.returns),
                stub: space.fast.stub_entry().map(RuntimeAddr),
                stub_calls: task.map(|t| &t.fast_calls),
                pending,
            };
            run_handlers(
                &mut self.consumers.probes,
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
        // Where the post handlers saw the next instruction, the thread goes
        // on at the detour's copy of it (unless they moved it).
        if let Some((shown, real)) = resume {
            if regs.ip() == shown {
                regs.set_ip(real);
            }
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
            if let (Some(task), Some(space)) = (
                self.world.tasks.get_mut(&tid),
                self.world.spaces.get_mut(&key),
            ) {
                let mut inst = ReturnInstance {
                    slot: h.slot,
                    orig_ret: h.orig,
                    entered,
                    probes,
                    chained: h.chained,
                    watch: h.watch,
                    after: 0,
                };
                match h.by_stub {
                    // With the fast calls, whose rules it keeps (as
                    // `drain::deliver` pushes a fast entry's): calls below
                    // its slot, or in it, cannot return any more. Unless
                    // records wait unread in the ring (behind another
                    // thread's unfinished one): this thread's earlier
                    // calls may have returned there, and are not dropped
                    // now; their records are older than this call (its
                    // time stamp counter, `after`) and do not take it.
                    true => {
                        let calls = &mut task.fast_calls;
                        if fast::all_read(space) {
                            let (pid, maps) = (space.pid, &mut space.maps);
                            calls.drop_abandoned(h.slot, false, &mut |a, b| {
                                maps.same_mapping(pid, a, b)
                            });
                            if !h.chained {
                                calls.drop_overwritten(h.slot);
                            }
                        }
                        inst.after = crate::sys::shm::tsc();
                        calls.push(inst);
                    }
                    false => task.returns.push(inst),
                }
            }
            if h.watch == Watch::ReturnSite {
                fast::before_arm(self, key, h.orig)?;
                if let Some(space) = self.world.spaces.get_mut(&key) {
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

    /// A thread returned into the trampoline: report the return, send it on to
    /// the real return address.
    pub(super) fn on_trampoline(&mut self, tid: Tid, mut regs: Regs) -> Result<()> {
        let time = self.start.elapsed();
        let task = self
            .world
            .tasks
            .get_mut(&tid)
            .expect("trap of a known task");
        let sp = RuntimeAddr(regs.sp());
        let (abandoned, returning) = match self.world.spaces.get_mut(&task.space) {
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
        // The call is off the thread's list: an error from here on sends
        // the thread to its caller, as the trampoline would have.
        let in_progress = HitInProgress::new(tid, orig);
        regs.set_ip(orig.get());
        self.release_instances(tid, &abandoned)?;
        let failed = self.report_returns(tid, &mut regs, returning, time);
        ptrace::setregs(tid, &regs)?;
        in_progress.done();
        self.resume(tid, 0)?;
        failed
    }
}
