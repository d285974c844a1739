//! Fast probes: sites patched with a jump to a detour that records the hit
//! into a ring shared with rtrace and goes on, without a stop (the
//! kernel's optprobes, in userspace; the code is `arch::detour`'s).
//!
//! What this component owns, per address space ([`FastState`], kept in the
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
//!
//! # Files
//!
//! | file | owns |
//! | --- | --- |
//! | `state.rs` | [`FastState`]: the ring, areas, fast sites, stub, threads, refusals of one space |
//! | `plan.rs` | which sites can be fast, and why not; the attach line's grouping |
//! | `patch.rs` | detour areas, the ring's making, the stub's, the jumps written and undone |
//! | `drain.rs` | reading the ring: records → hits and returns, losses, corruption; the clock |
//! | `threads.rs` | thread pointers: threads seen, vfork lending, `CLONE_VM` suspension, a child's ring |
//! | `leave.rs` | leaving fast code: detours, faults of fast code, signals, the detach's quiesce |
//! | `stub.rs` | the return stub: stepping through it, orphans, calls moved to return sites |
//! | `hooks.rs` | rtrace's own hooks as fast sites, and the watchman |

mod clock;
mod drain;
mod hooks;
mod leave;
mod patch;
mod plan;
mod refusal;
mod state;
mod stub;
mod threads;
mod watchman;

pub(crate) use clock::{Drain, TscClock, DRAIN_INTERVAL};
pub(crate) use refusal::Refusal;
pub(crate) use state::FastState;
pub(crate) use stub::restore_stub_slots;
