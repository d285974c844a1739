//! rtrace's own consumers of breakpoints: the reasons rtrace has for a
//! breakpoint beside the user's probes (`probe::Owner`), run by the hit path
//! before the user's pre handlers, in this order:
//!
//! 1. a return site of `_Unwind_Backtrace` not hooked yet: the calls parked
//!    for the unwinder get the fast return stub back;
//! 2. a return site watched for calls in flight: the call returning here is
//!    reported, the calls whose frames are gone are dropped;
//! 3. a return site of a watched IFUNC resolver call: the answer is armed
//!    (`ifunc.rs`);
//!
//! then, unless that released the breakpoint's last reason,
//!
//! 4. an IFUNC resolver's entry: its return site is watched (`ifunc.rs`);
//! 5. an unwinder's entry: the thread's calls in flight get their real
//!    return addresses back and are watched at their return sites; at any
//!    other function entry, the calls below the stack pointer are dropped
//!    (the kernel's `cleanup_return_instances`);
//! 6. a function that reads its own return address, reached by a tail call
//!    from a watched call: its slot gets the real return address back.
//!
//! The dynamic linker's breakpoint (`Owner::Rtld`) runs after the user's
//! post handlers (`finish_hit`): the libraries it reports are read once the
//! hit is complete.

use std::rc::Rc;

use crate::addr::{RuntimeAddr, Tid};
use crate::arch::{InsnPlan, Regs, StepMode, WORD};
use crate::error::Result;
use crate::handler::{ProbeKind, Site};
use crate::probe::{Owner, ProbeSite, Watch};

use super::fast::{self, Unwinding};
use super::tracer::Tracer;

/// rtrace's own reasons for one breakpoint, read from its site.
#[derive(Clone, Copy)]
pub(super) struct Own {
    /// A return site of `_Unwind_Backtrace` (`ProbeSite::unpark`).
    pub unpark: bool,
    /// Calls in flight are watched at this return site.
    pub return_site: bool,
    /// Watched IFUNC resolver calls return here.
    pub resolver_return: bool,
    /// A watched IFUNC resolver's entry.
    pub resolver: bool,
    /// An unwinder's entry.
    pub unwind: bool,
    /// The entry of a function that reads its own return address.
    pub reads_return_address: bool,
    /// A function entry: a user probe that is not on an instruction, or the
    /// hook of a function that reads its own return address.
    pub function_entry: bool,
    /// The dynamic linker's breakpoint.
    pub rtld: bool,
}

/// What one hit needs of its site, read once at the trap.
pub(super) struct SiteHit {
    /// The user probes, in registration order (none for a silent thread).
    pub probes: Vec<Rc<Site>>,
    /// rtrace's own reasons for the breakpoint.
    pub own: Own,
    /// How the displaced instruction runs.
    pub plan: Rc<InsnPlan>,
    /// Its out-of-line slot.
    pub slot: Option<RuntimeAddr>,
}

impl SiteHit {
    /// Reads `site` for a hit of a thread that is `silent` or not.
    pub(super) fn of(site: &ProbeSite, silent: bool) -> SiteHit {
        SiteHit {
            probes: match silent {
                true => Vec::new(),
                false => site.probes.clone(),
            },
            own: Own {
                unpark: site.unpark,
                return_site: site.ret_refs > 0,
                resolver_return: site.resolver_returns > 0,
                resolver: site.resolver,
                unwind: site.unwind,
                reads_return_address: site.reads_return_address,
                function_entry: site.caller_hook
                    || site.probes.iter().any(|p| p.kind != ProbeKind::Instruction),
                rtld: site.rtld,
            },
            plan: site.plan.clone(),
            slot: site.slot,
        }
    }
}

/// How rtrace's own consumers of a breakpoint ended.
pub(super) enum OwnEnd {
    /// The breakpoint's last reason is gone with them: its original
    /// instruction is back, for the thread to run.
    SiteGone,
    /// The hit goes on; `tail_call` when the function was reached by a tail
    /// call from a watched call (see `own_return_address_back`).
    Go { tail_call: bool },
}

impl Tracer {
    /// Runs rtrace's own consumers of the breakpoint at `addr` that `tid`
    /// hit (`regs` there, the instruction pointer at `addr`), in the order
    /// of the module documentation.
    pub(super) fn own_consumers(
        &mut self,
        tid: Tid,
        addr: RuntimeAddr,
        regs: &mut Regs,
        site: &SiteHit,
        time: std::time::Duration,
    ) -> Result<OwnEnd> {
        let own = site.own;
        let sp = RuntimeAddr(regs.sp());
        if own.unpark {
            fast::on_unwinder_entry(self, tid, sp, Unwinding::BacktraceDone)?;
        }
        if own.return_site {
            self.on_return_site(tid, addr, regs, time)?;
        }
        if own.resolver_return {
            self.on_resolver_return(tid, addr, regs)?;
        }
        let key = self.world.tasks[&tid].space;
        if (own.return_site || own.resolver_return)
            && self.world.spaces[&key].sites.get(addr).is_none()
        {
            return Ok(OwnEnd::SiteGone);
        }
        if own.resolver {
            self.on_resolver_entry(tid, addr, regs)?;
        }
        if own.unwind {
            // An unwinder is about to walk this thread's stack (or a catch
            // handler has just been landed in): it must see only real return
            // addresses. The call it is making overwrites the slot at `sp`:
            // whatever was in flight there or below was unwound.
            self.forget_dead_calls(tid, sp, true)?;
            fast::on_unwinder_entry(self, tid, sp, Unwinding::Unwinder)?;
            self.watch_at_return_sites(tid)?;
        } else if own.function_entry && self.world.tasks[&tid].returns.may_have_dead(sp) {
            // A function entry: `sp` holds the return address this call just
            // pushed, so calls in flight below it, or in its slot but no longer
            // returning through the trampoline, were left without returning.
            self.forget_dead_calls(tid, sp, false)?;
        }
        // A function that reads its own return address must find the real
        // one in its slot, even when it was reached by a tail call.
        let tail_call = own.reads_return_address && self.own_return_address_back(tid, sp)?;
        Ok(OwnEnd::Go { tail_call })
    }

    /// Drops the calls in flight of `tid` that a call made with stack pointer
    /// `sp` proves dead (the kernel's `cleanup_return_instances` at hijack
    /// time): those below `sp` on the same stack, those at `sp` itself when
    /// `inclusive` (the caller knows the slot is being reused), and a
    /// trampoline-watched one at `sp` whose slot no longer holds the
    /// trampoline (a call instruction wrote a real return address over it).
    /// Called with `tid` stopped at a function's first instruction.
    fn forget_dead_calls(&mut self, tid: Tid, sp: RuntimeAddr, inclusive: bool) -> Result<()> {
        let task = self.world.tasks.get_mut(&tid).expect("a known task");
        let Some(space) = self.world.spaces.get_mut(&task.space) else {
            return Ok(());
        };
        let pid = space.pid;
        let maps = &mut space.maps;
        let mut gone = task
            .returns
            .drop_abandoned(sp, inclusive, &mut |a, b| maps.same_mapping(pid, a, b));
        if !inclusive && task.returns.in_slot(sp).is_some() {
            // (The fast return stub over the trampoline is the trampoline:
            // a fast function reached by a tail call from the watched one.)
            let tramp = space.trampoline().map(RuntimeAddr::get);
            let held = space.mem.read_u64(sp)?;
            if Some(space.fast.under_stub(&space.mem, sp, held)?) != tramp {
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
        let key = self.world.tasks[&tid].space;
        let sites: Vec<RuntimeAddr> = self.world.tasks[&tid]
            .returns
            .iter()
            .filter(|i| i.watch == Watch::Trampoline)
            .map(|i| i.orig_ret)
            .collect();
        for a in sites {
            fast::before_arm(self, key, a)?;
        }
        let task = self.world.tasks.get_mut(&tid).expect("a known task");
        let Some(space) = self.world.spaces.get_mut(&task.space) else {
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
        let Some(space) = self
            .world
            .tasks
            .get(&tid)
            .and_then(|t| self.world.spaces.get(&t.space))
        else {
            return Ok(false);
        };
        let held = space.mem.read_u64(sp)?;
        let tramp = space.trampoline().map(RuntimeAddr::get);
        let stub = space.fast.stub_entry();
        if Some(held) != tramp && Some(held) != stub {
            return Ok(false);
        }
        fast::on_unwinder_entry(self, tid, sp, Unwinding::ReadsReturnAddress)?;
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
        let task = self.world.tasks.get_mut(&tid).expect("a known task");
        let Some(space) = self.world.spaces.get_mut(&task.space) else {
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
}
