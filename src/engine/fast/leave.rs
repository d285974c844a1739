//! Leaving fast code: a stopped thread brought out of a detour or the
//! return stub (`Tracer::leave_detour`), the faults of fast code that are
//! rtrace's own (a capture's bad pointer, a disabled `rdtsc`), a signal held
//! until its thread is out of a detour, and the detach: every thread out,
//! the ring read to its end, the stub's return addresses given back
//! (`Tracer::quiesce_fast`).

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::{self, table};
use crate::arch::Regs;
use crate::engine::step::StepEnd;
use crate::engine::tracer::Tracer;
use crate::error::Result;
use crate::handler::Event;
use crate::sys::ptrace;
use crate::sys::shm::{self};

use super::clock::Drain;
use super::stub::restore_stub_slots;

/// The most single-steps taken to bring a thread out of a detour (a capture
/// loop of a few KiB is some thousands).
pub(super) const STEP_BUDGET: usize = 1 << 20;

impl Tracer {
    /// Brings stopped thread `tid` out of any detour: at a detour's first
    /// instruction (or its `pushfq`) it is sent back to the probed address,
    /// as if it had not got there yet; among the restoring pops rtrace does
    /// the rest of them itself; elsewhere it is single-stepped until it
    /// leaves (a capture load that faults goes to its fix-up). `pushfq` and
    /// `popfq` are never stepped: the kernel would leave the trap flag set.
    /// A displaced instruction that faults has its signal held for it, and
    /// is left at the program's address when it has one
    /// (`FastSite::program_address`). False when it could not be brought
    /// out (it died, or it faulted in a copy with no program address).
    pub(super) fn leave_detour(&mut self, tid: Tid) -> Result<bool> {
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        for _ in 0..STEP_BUDGET {
            let mut regs = match ptrace::getregs(tid) {
                Ok(r) => r,
                Err(e) if e.is_tracee_gone() => return Ok(false),
                Err(e) => return Err(e),
            };
            let ip = regs.ip();
            let Some(space) = self.world.spaces.get(&key) else {
                return Ok(true);
            };
            if let Some(stub) = space.fast.stub.as_ref().filter(|s| s.contains_ip(ip)) {
                let stub = stub.stub.clone();
                let waiting = stub.body.is_some_and(|(from, to)| (from..to).contains(&ip));
                if let (true, Some(give_up)) = (waiting, stub.give_up) {
                    // Waiting for room: it goes on from where the wait
                    // gives up (its return counted lost), a bounded way
                    // out, and not into a system call again.
                    regs.set_ip(give_up);
                    regs.raw_mut().orig_rax = u64::MAX;
                    ptrace::setregs(tid, &regs)?;
                    continue;
                }
                match self.stub_step(tid, &stub, regs)? {
                    Some(out) => return Ok(out),
                    None => continue,
                }
            }
            if space.fast.detour_at(ip).is_none() {
                return Ok(true);
            }
            // In a hook's body (its loops, its waits), or a detour's wait for
            // room: back to its site.
            if self.abandon_body(tid)? {
                return Ok(true);
            }
            let Some(space) = self.world.spaces.get(&key) else {
                return Ok(true);
            };
            let Some(site) = space.fast.detour_at(ip) else {
                return Ok(true);
            };
            if detour::back_to_site(&site.detour, site.addr.get(), &mut regs) {
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
                    let fix = self
                        .world
                        .spaces
                        .get(&key)
                        .and_then(|s| s.fast.fixup(regs.ip()));
                    match fix {
                        Some(fix) if matches!(signal, libc::SIGSEGV | libc::SIGBUS) => {
                            let mut regs = regs;
                            regs.set_ip(fix);
                            ptrace::setregs(tid, &regs)?;
                        }
                        _ => {
                            // The program's own instruction faulted, as it
                            // would have at its address: delivered there
                            // (`FastSite::program_address`), where its
                            // handler returns to the program's code.
                            let ip = regs.ip();
                            let moved = self.world.spaces.get(&key).and_then(|s| {
                                let index = s.fast.sites.iter().position(|f| f.contains_ip(ip))?;
                                let site = &s.fast.sites[index];
                                let addr = site.program_address(ip)?;
                                Some((addr, (addr == site.addr).then_some(index as u32)))
                            });
                            if let Some((addr, first)) = moved {
                                let mut regs = regs;
                                regs.set_ip(addr.get());
                                ptrace::setregs(tid, &regs)?;
                                if let Some(index) = first {
                                    // The probe runs again there: the
                                    // return address is the call's own
                                    // again, as before its first run.
                                    self.undo_detour_return(key, index, &regs)?;
                                }
                            }
                            // Stepped, the instruction faults again: when the
                            // signal that stopped the thread there is held
                            // already (`signal_in_detour`), this is the same
                            // fault, and a standard signal is pending once,
                            // as the kernel would have it: held twice, a
                            // handler that fixes the fault up and returns ran
                            // twice.
                            let held = self
                                .world
                                .tasks
                                .get(&tid)
                                .is_some_and(|t| t.held.iter().any(|h| h.signal == signal));
                            if !held || signal >= libc::SIGRTMIN() {
                                self.hold_signal(tid, signal)?;
                            }
                            return Ok(moved.is_some());
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    /// The detour of fast site `index` (of space `key`) ran for a call it
    /// will run for again (its first displaced instruction faulted; the
    /// thread, `regs`, is back at the site): when it swapped the return
    /// address at the stack pointer for the stub, the slot gets it back and
    /// the call's table entry is freed, so that the call's next run watches
    /// its return as its own (not as a tail call chained to itself). Its
    /// first run's entry is left without a return, as an int3 probe's hit
    /// whose instruction faulted is. Only the thread's own entry is touched
    /// (the slot is on its stack), so the program's other threads may run.
    fn undo_detour_return(&mut self, key: Pid, index: u32, regs: &Regs) -> Result<()> {
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(());
        };
        let Some(stub) = space.fast.stub.as_ref() else {
            return Ok(());
        };
        let slot = RuntimeAddr(regs.sp());
        if space.mem.read_u64(slot)? != stub.stub.entry {
            return Ok(());
        }
        let home = table::home(slot.get());
        for i in 0..table::PROBES {
            let at = stub
                .table
                .offset((((home + i) & (table::ENTRIES - 1)) * table::ENTRY) as i64);
            let entry = space.mem.read_vec(at, table::ENTRY as usize)?;
            let field = |off| table::word(&entry, 0, off).unwrap_or(0);
            if field(table::KEY) != slot.get() {
                continue;
            }
            // A tail call's slot holds the entry of the call it came from
            // (another site), or of a timed call with calls chained to it:
            // not this call's to undo.
            let ours = field(table::INDEX) as u32 == index
                && field(table::TP) == regs.thread_pointer()
                && field(table::CHAIN) as u32 == 0;
            if ours {
                space.mem.write_u64(slot, field(table::ORIG))?;
                space.mem.write_u64(at, 0)?;
            }
            return Ok(());
        }
        Ok(())
    }

    /// `tid` (stopped) faulted with `signal` at the `rdtsc` of a detour or
    /// of the return stub: the thread has disabled the time stamp counter
    /// (seccomp strict mode does, as `prctl(PR_SET_TSC, PR_TSC_SIGSEGV)`
    /// does), after its fast probes were made. rtrace reads the counter for
    /// it (its own reading: the same counter, a few microseconds later) and
    /// moves it past the instruction; the program never sees the fault.
    /// True when that was it (the thread's registers are set, it is not
    /// resumed).
    pub(super) fn emulate_rdtsc(&mut self, tid: Tid, signal: i32) -> Result<bool> {
        if signal != libc::SIGSEGV {
            return Ok(false);
        }
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        let Some(space) = self.world.spaces.get(&key) else {
            return Ok(false);
        };
        let mut regs = ptrace::getregs(tid)?;
        let ip = regs.ip();
        if !space.fast.in_fast_code(ip) {
            return Ok(false);
        }
        let code = space.mem.read_vec(RuntimeAddr(ip), 2)?;
        if !detour::emulate_rdtsc(&code, shm::tsc(), &mut regs) {
            return Ok(false);
        }
        ptrace::setregs(tid, &regs)?;
        let pid = space.pid;
        if self.pace.tsc_warned.insert(pid) {
            self.consumers.warnings.push(Event::ProcessWarning {
                pid,
                message: format!(
                    "pid {pid} disabled the time stamp counter that {} read \
                     (seccomp strict mode, or PR_SET_TSC): rtrace reads it for them, at a stop \
                     per record",
                    match self.opts.fast {
                        true => "the fast probes' records",
                        false => "the return stub's records of int3 probes' returns",
                    }
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
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        if !self.world.spaces.get(&key).is_some_and(|s| s.fast.active()) {
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
        let Some(fix) = self.world.spaces[&key].fast.fixup(regs.ip()) else {
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
        let Some(key) = self.world.tasks.get(&tid).map(|t| t.space) else {
            return Ok(false);
        };
        if !self.world.spaces.get(&key).is_some_and(|s| s.fast.active()) {
            return Ok(false);
        }
        let Ok(regs) = ptrace::getregs(tid) else {
            return Ok(false);
        };
        if !self.world.spaces[&key].fast.in_fast_code(regs.ip()) {
            return Ok(false);
        }
        self.hold_signal(tid, signal)?;
        self.leave_detour(tid)?;
        self.resume(tid, 0)?;
        Ok(true)
    }

    /// Detaching from space `key` (its threads `tids` all stopped): every
    /// thread leaves the detours, the ring is drained to its end. The jumps
    /// go with the other breakpoints (`disarm_all`); then
    /// [`Tracer::unmap_fast`].
    pub(super) fn quiesce_fast(&mut self, key: Pid, tids: &[Tid]) -> Result<()> {
        if !self.world.spaces.get(&key).is_some_and(|s| s.fast.active()) {
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
        // A handler entered from a fault in a copy with no program address
        // (`FastSite::program_address`) returns into that copy.
        let framed = self.signal_returns(key).into_iter().any(|ip| {
            self.world
                .spaces
                .get(&key)
                .is_some_and(|s| s.fast.in_fast_code(ip))
        });
        if stuck || framed {
            // Code still in use stays mapped (no longer reached from the
            // program's once the jumps are gone).
            if let Some(space) = self.world.spaces.get_mut(&key) {
                space.fast.keep_code_mapped();
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
    pub(super) fn still_in_fast_code(&self, key: Pid, tid: Tid) -> bool {
        if self.world.tasks.get(&tid).is_none_or(|t| t.exiting) {
            return false;
        }
        let Ok(regs) = ptrace::getregs(tid) else {
            return false;
        };
        self.world
            .spaces
            .get(&key)
            .is_some_and(|s| s.fast.in_fast_code(regs.ip()))
    }

    /// Gives back, in space `key` whose threads `tids` are stopped, the
    /// return addresses the detours swapped for the stub, as the table has
    /// them; the calls in flight are forgotten (no return is reported).
    pub(super) fn restore_fast_returns(&mut self, key: Pid, tids: &[Tid]) -> Result<()> {
        for tid in tids {
            if let Some(t) = self.world.tasks.get_mut(tid) {
                t.fast_calls.take_all();
            }
        }
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return Ok(());
        };
        let Some(stub) = space.fast.stub.as_ref().map(|s| (s.stub.entry, s.table)) else {
            return Ok(());
        };
        let threads: Vec<(u64, RuntimeAddr)> = tids
            .iter()
            .filter_map(|t| ptrace::getregs(*t).ok())
            .map(|r| (r.thread_pointer(), RuntimeAddr(r.sp())))
            .collect();
        let pid = space.pid;
        let maps = &mut space.maps;
        restore_stub_slots(&space.mem, stub.0, stub.1, &threads, &mut |a, b| {
            maps.same_mapping(pid, a, b)
        })?;
        Ok(())
    }
}
