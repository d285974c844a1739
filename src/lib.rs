//! rtrace: kprobes and kretprobes for ordinary processes, through ptrace.
//!
//! A [`Tracer`] launches a program (from its first instruction) or attaches to a
//! running process (every thread), resolves probe specs against the ELF symbols
//! and DWARF line tables of the executable and every loaded library, and plants an
//! `int3` at each probe address. On every hit it runs the [`Handler`]s of the
//! probes there: `on_entry` before the displaced instruction executes (the
//! kprobe pre handler), `on_post` after it (the post handler), and for function
//! probes `on_return` when the call returns through a trampoline that replaced the
//! return address (the kretprobe handler).
//!
//! ```no_run
//! use std::process::Command;
//! use rtrace::{Handler, Hit, Options, Return, Tracer};
//!
//! struct Logger;
//!
//! impl Handler for Logger {
//!     fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
//!         println!("{}({:#x})", hit.site().symbol, hit.arg(0).unwrap_or(0));
//!         Ok(())
//!     }
//!     fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
//!         println!("= {} after {:?}", ret.retval(), ret.duration());
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> rtrace::Result<()> {
//! let mut tracer = Tracer::launch(Command::new("ls").arg("/"), Options::default())?;
//! tracer.add_probe("libc:opendir".parse()?, Logger)?;
//! let outcome = tracer.run()?;
//! # let _ = outcome;
//! # Ok(())
//! # }
//! ```
//!
//! # Handlers
//!
//! The [`handler`] module docs are the contract every [`Handler`] can rely on:
//! the order of the calls at a probe site and at a return, which thread they
//! run on (the tracer's, with the tracee thread stopped), what a handler may
//! change (registers at entry, the return value at return), what an error does
//! (tracing stops, rtrace detaches cleanly, `run` returns it, the tracee runs
//! on), what a panic does, and how to remove a probe from a handler's decision.
//! `examples/` holds complete handlers: per-path open counts, a latency
//! histogram, a heap leak report, a return value override.
//!
//! # The public surface
//!
//! What a plugin author needs, and nothing of the machinery behind it:
//!
//! - [`Tracer`] with its [`Options`] (launch or attach, add probes and
//!   listeners, run), the [`Outcome`] of a run and the [`Progress`] of its
//!   start;
//! - [`Handler`] and what its methods are given: [`Hit`] (with [`Regs`],
//!   [`Gpr`]), [`Return`], the probe's [`Site`], lifecycle [`Event`]s; for
//!   fast probes [`Fast`] and [`Capture`]; [`Both`] to put two handlers on
//!   one probe;
//! - [`Error`] and [`Result`];
//! - the symbol types a handler meets, in [`symbols`]: the [`symbols::Module`]
//!   of a site, a [`symbols::Symbolized`] address, the [`ProbeSpec`] a probe
//!   is added with; the user stacks of [`unwind`];
//! - [`output`]: the command line's printers, themselves handlers, for a
//!   front end that wants the same text, JSON, timeline or live view;
//! - [`install_detach_handlers`] and [`stop_requested`]: Ctrl-C (SIGINT,
//!   SIGTERM, SIGHUP) ends tracing with a clean detach.
//!
//! Addresses are typed: [`RuntimeAddr`] in the traced process, [`LinkAddr`]
//! in an ELF file ([`symbols::Module`] converts between them). [`Hit`] and
//! [`Return`] read memory at a `RuntimeAddr` ([`Hit::read_cstr`],
//! [`Hit::read_u64`] at [`Hit::sp`], …); a register or an argument is a
//! plain `u64`, made an address with `RuntimeAddr::from` (or `.into()`).
//!
//! Inside, dependencies point one way: the `rtrace` binary → this library's
//! API; `output` → `handler`, `symbols`; the engine → `probe`, `symbols`,
//! `sys`, `arch`, `handler`. `sys` is the only module with `unsafe` and raw
//! system calls (ptrace, waitpid classified into a closed `Stop` enum,
//! tracee memory, launching, signals); `arch` holds registers, the SysV
//! calling convention and instruction analysis, so generic code never names
//! a register or an opcode; `symbols` is pure (probe specs, ELF, DWARF,
//! module maps, resolution); `probe` mirrors kprobes (the 64-bucket probe
//! table, probe sites, return instances). None of them is public.
//!
//! `docs/ARCHITECTURE.md` walks through one hit and the decisions behind it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod addr;
pub(crate) mod arch;
mod engine;
mod error;
pub mod handler;
#[doc(hidden)]
pub mod inject;
#[doc(hidden)]
pub mod listing;
pub mod output;
pub(crate) mod probe;
pub mod record;
#[doc(hidden)]
pub mod script;
pub mod symbols;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod unwind;

pub use addr::{LinkAddr, Pid, RuntimeAddr, Tid};
pub use arch::{Gpr, RegSet, Regs, StepMode};
pub use engine::{find_program, Options, Outcome, Overflow, Progress, ReturnMode, Tracer};
pub use error::{Error, Result};
pub use handler::{
    signal_name, Aggregate, Both, CallTimes, Capture, Event, Fast, ForkKind, Handler, Hit, ProbeId,
    ProbeKind, Return, Returns, Site, SiteMode, SkipReason,
};
pub use symbols::ProbeSpec;
pub use sys::signal::{install_detach_handlers, stop_requested};
// The command line's wait for the program it launched, after a detach.
#[doc(hidden)]
pub use sys::signal::{detach_requested, requests};
// The command line's wait for the program it launched, after a detach that
// left an exiting tracee to reap.
#[doc(hidden)]
pub use sys::wait::wait_program;
