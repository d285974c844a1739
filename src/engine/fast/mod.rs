//! Fast probes: sites patched with a jump to a detour that records the hit
//! into a ring shared with rtrace and goes on, without a stop (the
//! kernel's optprobes, in userspace; the code is `arch::detour`'s).
//!
//! What this component owns, per address space ([`FastState`], kept in the
//! `Space` with everything else written into the tracee; its fields are
//! the component's alone), besides its timing ([`Pace`], kept by the
//! tracer):
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
//! Records are drained ([`Reader::drain`]) before the tracer blocks, every
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
//! ([`Reader::ring_corrupt`]): said once, never read again (its records and
//! counts are not believed), its sites go back to int3 breakpoints, which
//! report the calls made from then on, and the calls in flight it knew of
//! are counted missed.
//!
//! # Files
//!
//! | file | owns |
//! | --- | --- |
//! | `state.rs` | [`FastState`]: the ring, areas, fast sites, stub, threads, refusals of one space; its per-space side of the hooks (`on_arm`, `on_unload`, `keep_mapped`, `on_jump_missing`, `for_child`, `scrub`, `stub_entry`, `release`) |
//! | `plan.rs` | which sites can be fast, and why not; the attach line's grouping |
//! | `patch.rs` | detour areas, the ring's making, the stub's, the jumps written and undone |
//! | `evict.rs` | successor eviction: where a pun's jump and its evicted successor's trampoline go |
//! | `drain.rs` | reading the ring: records → hits and returns, losses, corruption |
//! | `threads.rs` | thread pointers: threads seen, vfork lending, `CLONE_VM` suspension, a child's ring |
//! | `leave.rs` | leaving fast code: detours, faults of fast code, signals, the detach's quiesce |
//! | `stub.rs` | the return stub: stepping through it, orphans, calls moved to return sites |
//! | `clock.rs` | the clock (`TscClock`), the pace ([`DRAIN_INTERVAL`], [`Drain`], [`Pace`]) |
//! | `refusal.rs` | why a site stays an int3 (`Refusal`) |
//! | `hooks.rs` | rtrace's own hooks as fast sites, and their requests |
//! | `int3.rs` | int3 probes' returns through the stub: the table entry claimed at the entry stop |
//! | `watchman.rs` | the thread that keeps a ring's liveness words |
//!
//! # Hooks
//!
//! The rest of the engine calls this component only through the functions
//! at the end of this file (the table of docs/ARCHITECTURE.md, "The
//! fast-probe component", says when each is called and what it may touch).
//! Everything else here is `pub(super)`.

mod clock;
mod copier;
mod drain;
mod evict;
mod hooks;
mod int3;
mod leave;
mod patch;
mod plan;
mod refusal;
mod state;
mod stub;
mod threads;
mod watchman;

pub(crate) use clock::{Drain, Pace, DRAIN_INTERVAL};
pub(in crate::engine) use drain::Reader;
pub(in crate::engine) use int3::StubWant;
pub(crate) use state::FastState;
pub(crate) use stub::restore_stub_slots;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::Regs;
use crate::engine::tracer::{Consumers, Tracer, World};
use crate::error::Result;
use crate::sys::ptrace;

// The hooks: the only ways the int3 engine reaches into this component
// (docs/ARCHITECTURE.md, "The fast-probe component", has when each is
// called and what it may touch). Each takes the parts it touches: those
// that only read rings a `Reader` (the world, the consumers, the pace);
// those that stop a space's threads, step or resume one, or inject a
// system call the whole `Tracer`, whose services those are; the others
// the world or the consumers, read-only where they only look.

/// A thread of space `key` stopped at an int3, before the trap is handled:
/// the records made before it are read, so that a thread's fast and int3
/// events keep their order. Touches the ring, the handlers, the tasks' fast
/// calls in flight.
pub(in crate::engine) fn before_trap(r: &mut Reader, key: Pid) -> Result<()> {
    r.drain_through(key)
}

/// A signal of the program's is delivered to a thread of space `key`, to
/// be reported by `event` (at `time`): when the ring holds records made
/// before it, the report waits until they are read (so that the thread's
/// calls the detours and the stub recorded come before its signal line),
/// and None is returned; else the event is handed back, to report now.
/// Touches the space's pending signals.
pub(in crate::engine) fn defer_signal(
    r: &mut Reader,
    key: Pid,
    event: crate::handler::Event,
    time: std::time::Duration,
) -> Option<(crate::handler::Event, std::time::Duration)> {
    r.defer_signal(key, event, time)
}

/// Thread `tid` of space `key` hit the int3 of `addr` (its registers
/// `regs`, at `addr`), its handlers run and its return arranged: when the
/// site waits for its first hit to be patched, it is patched now (stops
/// the space's world), and where its detour's copies of the displaced
/// instructions are is returned: the thread runs the probed instruction
/// (emulated, or its copy stepped: [`run_copy`]) and goes on through the
/// copies of the rest. Touches that space's fast state and code.
pub(in crate::engine) fn patch_at_hit(
    t: &mut Tracer,
    tid: Tid,
    key: Pid,
    addr: RuntimeAddr,
    regs: &crate::arch::Regs,
) -> Result<Option<Patched>> {
    match t.opts.fast {
        true => t.patch_at_hit(tid, key, addr, regs),
        false => Ok(None),
    }
}

/// A site patched at a thread's hit ([`patch_at_hit`]).
#[derive(Clone, Copy, Debug)]
pub(in crate::engine) struct Patched {
    /// The bytes the jump replaced.
    pub len: u64,
    /// Where its detour's copy of the probed instruction is.
    pub displaced: u64,
    /// What follows that copy: the copy of the next displaced instruction,
    /// or the jump back (`Detour::after_first`).
    pub after_first: u64,
    /// The detour's code: where it is, and its length.
    pub detour: (u64, u64),
}

/// Thread `tid` (registers `regs`, at the site just patched, `patched`)
/// runs the probed instruction as the detour's copy of
/// it, single-stepped (two steps for a call moved as a push and a jump; a
/// few for a branch the block encoder made longer), so that the post
/// handlers see it done as at any int3 hit. Touches that thread.
pub(in crate::engine) fn run_copy(
    t: &mut Tracer,
    tid: Tid,
    regs: &crate::arch::Regs,
    patched: &Patched,
) -> Result<AtHit> {
    t.run_copy(tid, regs, patched)
}

/// How [`run_copy`] went.
#[derive(Debug)]
pub(in crate::engine) enum AtHit {
    /// The copy ran: the thread's registers after it (at `after_first`,
    /// or where a branch took it).
    Ran(Box<Regs>),
    /// It raised this signal and did not complete: the thread is at the
    /// site again, as before it.
    Faulted(i32),
    /// The thread died, or exec'd.
    Gone,
}

/// A trap that is no probe's and none of rtrace's breakpoints: true when it
/// is the return stub's orphan `int3` (the thread is then moved on; the
/// caller resumes it). Touches that thread's registers and calls in flight.
pub(in crate::engine) fn on_stray_trap(t: &mut Tracer, tid: Tid, regs: Regs) -> Result<bool> {
    t.orphan_return(tid, regs)
}

/// Thread `tid`, stopped at the entry of int3 site `addr` (registers
/// `regs`), has its return watched by the return stub, when the process
/// can have one (made now, by `tid`, if need be) and no detour there
/// claims table entries: the entry claimed and the stub written into the
/// return address slot. Ok(None): it cannot be, and the int3 engine watches
/// the return itself. Touches the ring and the stub (made), the table, the
/// thread's slot, `FastState::threads`.
pub(in crate::engine) fn stub_return(
    t: &mut Tracer,
    tid: Tid,
    addr: RuntimeAddr,
    regs: &Regs,
    probes: &[std::rc::Rc<crate::handler::Site>],
    want: StubWant,
) -> Result<Option<crate::engine::task::Hijack>> {
    t.stub_return(tid, addr, regs, probes, want)
}

/// Thread `tid`, stopped at the entry of int3 site `addr` (registers
/// `regs`), made a call chained to one whose return the stub records (a
/// tail call from it): what `probes`' handlers take of its return from a
/// record goes into that call's table entry. Touches the table.
pub(in crate::engine) fn chained_wants(
    t: &mut Tracer,
    tid: Tid,
    addr: RuntimeAddr,
    regs: &Regs,
    probes: &[std::rc::Rc<crate::handler::Site>],
) -> Result<()> {
    t.chained_wants(tid, addr, regs, probes)
}

/// True when every record of space `space`'s ring has been read (none
/// waits behind a record another thread has not finished). Reads the
/// ring's enqueue position only.
pub(in crate::engine) fn all_read(space: &crate::engine::space::Space) -> bool {
    space
        .fast
        .ring
        .as_ref()
        .is_none_or(|r| r.map.load_u64(crate::arch::detour::ring::ENQUEUE) <= r.consumed)
}

/// A hit whose return [`stub_return`] watched did not complete: the slot
/// and the table entry are given back. Touches them only.
pub(in crate::engine) fn undo_stub_return(
    t: &mut Tracer,
    key: Pid,
    hijack: &crate::engine::task::Hijack,
) {
    t.undo_stub_return(key, hijack)
}

/// An int3 is about to be armed at `addr` in space `key` (a user probe, a
/// return site, an IFUNC's implementation, rtrace's own): a jump covering
/// the address comes off first (with the world of that space stopped).
pub(in crate::engine) fn before_arm(t: &mut Tracer, key: Pid, addr: RuntimeAddr) -> Result<()> {
    t.clear_jumps_at(key, addr)
}

/// A probe's sites at `addrs` of space `key` are about to be disarmed: their
/// jumps come off first (with the world of that space stopped).
pub(in crate::engine) fn before_disarm(
    t: &mut Tracer,
    key: Pid,
    addrs: &[RuntimeAddr],
) -> Result<()> {
    t.unpatch_fast(key, addrs)
}

/// A signal-delivery stop outside a step: true when the signal is fast
/// code's own fault (a capture's bad pointer, a disabled `rdtsc`), fixed up
/// and not to be delivered. Touches that thread's registers.
pub(in crate::engine) fn on_signal(t: &mut Tracer, tid: Tid, signal: i32) -> Result<bool> {
    t.fix_capture_fault(tid, signal)
}

/// A signal is about to be delivered to `tid`: a thread inside fast code
/// leaves it first (the signal waits meanwhile); true when it was moved and
/// the delivery is left for later. Touches that thread's registers.
pub(in crate::engine) fn before_deliver(t: &mut Tracer, tid: Tid, signal: i32) -> Result<bool> {
    t.signal_in_detour(tid, signal)
}

/// What made a thread enter an unwinder, for [`on_unwinder_entry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum Unwinding {
    /// An unwinder's entry (or a catch landed in): the slot at `sp` was
    /// overwritten by its call, so calls in flight there or below are gone.
    Unwinder,
    /// A function that reads its own return address, entered by a tail
    /// call: the call whose slot holds the stub at `sp` is alive.
    ReadsReturnAddress,
    /// The return site of `_Unwind_Backtrace` reached as an int3 before its
    /// hook was patched: the calls parked for the backtrace come back.
    BacktraceDone,
}

/// Thread `tid` at stack pointer `sp` enters an unwinder (see
/// [`Unwinding`]): its fast calls in flight move to int3 return sites, so
/// the unwinder sees real return addresses. Touches the ring (read
/// through), the stub's table, that thread's slots and return stack, the
/// return sites' breakpoints.
pub(in crate::engine) fn on_unwinder_entry(
    t: &mut Tracer,
    tid: Tid,
    sp: RuntimeAddr,
    why: Unwinding,
) -> Result<()> {
    match why {
        Unwinding::Unwinder => t.fast_calls_to_return_sites(tid, sp, true),
        Unwinding::ReadsReturnAddress => t.fast_calls_to_return_sites(tid, sp, false),
        Unwinding::BacktraceDone => t.unpark_calls(tid, sp),
    }
}

/// A task's first stop, in space `key`: a followed child's own ring, and
/// the thread pointer its records will carry (a reused one drains first; a
/// shared one suspends fast probes in that space). Touches
/// `FastState::threads`, the ring, the jumps.
pub(in crate::engine) fn on_thread_seen(t: &mut Tracer, key: Pid, tid: Tid) -> Result<()> {
    if !t.world.spaces.get(&key).is_some_and(|s| s.fast.active()) {
        return Ok(());
    }
    t.give_child_ring(tid)?;
    if let Ok(regs) = ptrace::getregs(tid) {
        t.note_thread(tid, regs.thread_pointer())?;
    }
    Ok(())
}

/// Thread `parent` (stopped at its clone event) made a child that shares
/// its memory without being one of its threads (CLONE_VM): the parent's
/// thread pointer is noted now, so that a child on the same one (no TLS of
/// its own) is seen to share it at its first stop, and fast probes are
/// suspended while it lives. Noted later, or never (a program fresh from
/// its exec has no thread pointer yet at its first stop), the pointer went
/// to the child, and the parent's records were the child's, after its
/// death too. Touches `FastState::threads`.
pub(in crate::engine) fn on_shared_child(t: &mut Tracer, parent: Tid) -> Result<()> {
    let Some(key) = t.world.tasks.get(&parent).map(|task| task.space) else {
        return Ok(());
    };
    if !t.world.spaces.get(&key).is_some_and(|s| s.fast.active()) {
        return Ok(());
    }
    match ptrace::getregs(parent) {
        Ok(regs) => t.note_thread(parent, regs.thread_pointer()),
        Err(e) if e.is_tracee_gone() => Ok(()),
        Err(e) => Err(e),
    }
}

/// What happened at a fork, for [`on_fork`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum Fork {
    /// A child is being made (any kind): the parent's records up to it.
    Child,
    /// A vfork child that runs on its parent's thread pointer until it
    /// execs or exits.
    Vfork { child: Tid },
    /// That vfork child exec'd or died: the parent goes on with its pointer.
    VforkDone,
}

/// Thread `parent` of space `key` forked (see [`Fork`]). Touches the ring
/// (drained) and `FastState::lent`.
pub(in crate::engine) fn on_fork(r: &mut Reader, key: Pid, parent: Tid, what: Fork) -> Result<()> {
    match what {
        Fork::Child => r.drain_through(key),
        Fork::Vfork { child } => r.lend_thread_pointer(parent, child),
        Fork::VforkDone => {
            if r.world.spaces.values().all(|s| s.fast.lent.is_empty()) {
                return Ok(());
            }
            let Ok(regs) = ptrace::getregs(parent) else {
                return Ok(());
            };
            r.drain_through(key)?;
            if let Some(space) = r.world.spaces.get_mut(&key) {
                let tp = regs.thread_pointer();
                space.fast.lent.remove(&tp);
                if let Some(ring) = space.fast.ring.as_ref() {
                    if ring.map.load_u64(crate::arch::detour::ring::SILENT_TP) == tp {
                        ring.map.store_u64(crate::arch::detour::ring::SILENT_TP, 0);
                    }
                }
            }
            Ok(())
        }
    }
}

/// A thread of process `pid` exec'd: the old image's records are read to
/// their end, before its ring goes with the image (the thread's own
/// suspension ended first: [`on_thread_gone`]). Touches the ring, handlers.
pub(in crate::engine) fn on_exec(r: &mut Reader, pid: Pid) -> Result<()> {
    r.drain(pid, Drain::Final)
}

/// What happened at a thread's end, for [`on_exit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum Exit {
    /// It is exiting (its memory still there): its records are read.
    Exiting,
    /// It died; it is still known, so the returns its records report are
    /// its calls'.
    Died,
    /// The leader of the space died: the last records (`heir`: a thread of
    /// another process still runs in the memory, and may yet publish).
    Leader { heir: bool },
}

/// A thread of space `key` ends (see [`Exit`]); when it is forgotten,
/// [`on_thread_gone`]. Touches the ring and the handlers.
pub(in crate::engine) fn on_exit(r: &mut Reader, key: Pid, what: Exit) -> Result<()> {
    match what {
        Exit::Exiting | Exit::Died => r.drain_through(key),
        Exit::Leader { heir: true } => r.drain(key, Drain::Quick),
        Exit::Leader { heir: false } => r.drain(key, Drain::Final),
    }
}

/// Every thread of space `key` (`tids`) is stopped for the detach: each
/// leaves fast code, the ring is read to its end, the stub's slots get
/// their return addresses back. Everything of the component.
pub(in crate::engine) fn quiesce(t: &mut Tracer, key: Pid, tids: &[Tid]) -> Result<()> {
    t.quiesce_fast(key, tids)
}

/// The event loop's pass begins: requests rtrace's own hooks posted (a new
/// link map, a backtrace) are served; the thread that posted one waits for
/// it. Touches everything of the component.
pub(in crate::engine) fn on_requests(t: &mut Tracer) -> Result<()> {
    t.serve_requests()
}

/// The event loop's pass, before it waits for a stop (after a detach
/// request was looked for): once tracing has begun (`begun`), dirty spaces
/// patched (stops their worlds) and each probe's mode said once; the rings
/// read every [`DRAIN_INTERVAL`] while the tracer is busy, and at once when
/// a thread waits for room.
pub(in crate::engine) fn on_pass(t: &mut Tracer, begun: bool) -> Result<()> {
    if t.opts.fast && begun {
        // A space none of whose threads will run again (each has reported
        // its exit: its memory may be gone already) is not patched: its
        // sites would be refused for code that cannot be read, and its hooks
        // taken off by writes that fail.
        let dirty: Vec<Pid> = t
            .world
            .spaces
            .iter()
            .filter(|(k, s)| {
                s.fast.dirty
                    && t.world
                        .tasks
                        .values()
                        .any(|task| task.space == **k && !task.exiting)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in dirty {
            match t.patch_fast(key) {
                // The process died meanwhile (SIGKILL): its end is reported
                // next, and nothing of it is to be patched or undone.
                Err(e) if e.is_tracee_gone() => {}
                r => r?,
            }
        }
        plan::report_modes(&t.world, &mut t.consumers, t.root, t.start)?;
    }
    if drain::draining(&t.world)
        && (t.pace.more_records
            || t.pace.last_drain.elapsed() >= DRAIN_INTERVAL
            || drain::waiting(&t.world))
    {
        t.drain_all_safely()?;
    }
    Ok(())
}

/// Tracing is about to be said to begin in space `key`: its sites are
/// patched, so the attach line can be followed by each probe's mode.
pub(in crate::engine) fn on_attach(t: &mut Tracer, key: Pid) -> Result<()> {
    t.patch_fast(key)
}

/// Each probe's mode in the root process, said once (after the attach
/// line). Touches the consumers only.
pub(in crate::engine) fn report_modes(
    world: &World,
    consumers: &mut Consumers,
    root: Pid,
    start: std::time::Instant,
) -> Result<()> {
    plan::report_modes(world, consumers, root, start)
}

/// Thread `tid` (of process `pid`) of space `key` died and is about to be
/// forgotten, with `calls`, its fast calls in flight: when records of its
/// may still wait unread in the ring (behind a slot another thread claimed
/// and has not published yet), the calls are kept until the ring has been
/// read past its death, so that its last records still find them. Touches
/// that space's `FastState::departed`.
pub(in crate::engine) fn on_thread_died(
    world: &mut World,
    key: Pid,
    tid: Tid,
    pid: Pid,
    calls: crate::probe::ReturnStack,
) {
    let Some(space) = world.spaces.get_mut(&key) else {
        return;
    };
    let Some(ring) = space.fast.ring.as_ref() else {
        return;
    };
    let upto = ring.map.load_u64(crate::arch::detour::ring::ENQUEUE);
    if space.fast.corrupt.is_none() && upto > ring.consumed {
        let departed = state::Departed { pid, calls, upto };
        space.fast.departed.insert(tid, departed);
    }
}

/// Thread `tid` of space `key` is gone and forgotten: a suspension of fast
/// probes for it (a `CLONE_VM` thread sharing a thread pointer) ends when it
/// was the last. Touches that space's `FastState` (refusals, `dirty`).
pub(in crate::engine) fn on_thread_gone(world: &mut World, key: Pid, tid: Tid) {
    if let Some(space) = world.spaces.get_mut(&key) {
        space.fast.end_suspension(tid);
    }
}

/// The tracer is about to block (or tell the listeners it is idle): the
/// rings are read, when some may record. Touches the rings and the
/// handlers.
pub(in crate::engine) fn drain(t: &mut Tracer) -> Result<()> {
    match drain::draining(&t.world) {
        true => t.drain_all_safely(),
        false => Ok(()),
    }
}

/// The longest the tracer may block: [`DRAIN_INTERVAL`] while a ring may
/// be recording, else no limit of the component's.
pub(in crate::engine) fn pace(world: &World) -> Option<std::time::Duration> {
    drain::draining(world).then_some(DRAIN_INTERVAL)
}

/// A ring found corrupt since the last pass: its jumps must come off before
/// the tracer blocks (fast sites make no stops that would wake it).
/// `begun`: fast probes are on and tracing has begun.
pub(in crate::engine) fn switch_pending(world: &World, begun: bool) -> bool {
    drain::switch_pending(world, begun)
}
