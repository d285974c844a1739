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
//! # Layers
//!
//! Dependencies point one way: the `rtrace` binary → this library's API;
//! [`output`] → [`handler`], [`symbols`]; the engine → [`probe`], [`symbols`],
//! [`sys`], [`arch`], [`handler`].
//!
//! - [`sys`]: the only module with `unsafe` and raw system calls (ptrace, waitpid
//!   classified into a closed `Stop` enum, tracee memory, launching, signals).
//! - [`arch`]: registers, the SysV calling convention, instruction analysis
//!   (iced-x86). Generic code never names a register or an opcode.
//! - [`symbols`]: pure: probe specs, ELF, DWARF line tables, module maps, resolution.
//! - [`probe`]: the kprobes mirror: the 64-bucket [`probe::ProbeTable`], probe
//!   sites, return instances. No system calls.
//! - the engine ([`Tracer`]): the event loop, tasks, the hit path, the lifecycle
//!   (clone, fork, vfork, exec, library loads, exit) and detach.
//! - [`unwind`]: user stacks, walked from a stopped thread's registers with
//!   the modules' call frame information ([`Hit::user_stack`]).
//! - [`handler`]: the plugin surface; [`output`]: the command line's printers,
//!   themselves handlers.
//!
//! `docs/ARCHITECTURE.md` walks through one hit and the decisions behind it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod arch;
mod engine;
pub mod error;
pub mod handler;
pub mod inject;
pub mod output;
pub mod probe;
pub mod script;
pub mod symbols;
#[allow(unsafe_code)]
pub mod sys;
pub mod unwind;

pub use addr::{FileOffset, LinkAddr, Pid, RuntimeAddr, Tid};
pub use arch::StepMode;
pub use engine::{find_program, Options, Outcome, Progress, Tracer};
pub use error::{Error, Result};
pub use handler::{
    signal_name, Both, Capture, Event, Fast, ForkKind, Handler, Hit, ProbeId, ProbeKind, Return,
    Site, SkipReason,
};
pub use symbols::ProbeSpec;
