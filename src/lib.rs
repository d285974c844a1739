//! rtrace: kprobes and kretprobes for ordinary processes, through ptrace.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod arch;
pub mod error;
pub mod handler;
pub mod output;
pub mod symbols;
#[allow(unsafe_code)]
pub mod sys;

pub use addr::{FileOffset, LinkAddr, Pid, RuntimeAddr, Tid};
pub use error::{Error, Result};
pub use handler::{Event, ForkKind, Handler, Hit, ProbeId, ProbeKind, Return, Site};
pub use symbols::ProbeSpec;
