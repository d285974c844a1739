//! rtrace: kprobes and kretprobes for ordinary processes, through ptrace.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod arch;
mod engine;
pub mod error;
pub mod handler;
pub mod output;
pub mod probe;
pub mod symbols;
#[allow(unsafe_code)]
pub mod sys;

pub use addr::{FileOffset, LinkAddr, Pid, RuntimeAddr, Tid};
pub use engine::{find_program, Options, Outcome, Tracer};
pub use error::{Error, Result};
pub use handler::{signal_name, Event, ForkKind, Handler, Hit, ProbeId, ProbeKind, Return, Site};
pub use symbols::ProbeSpec;
