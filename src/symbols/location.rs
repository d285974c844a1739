//! A place a probe spec resolved to: the one type resolution, IFUNC
//! lookup and the engine share.
//!
//! Its own module so that `resolve` (which makes locations and asks `ifunc`
//! about IFUNCs) and `ifunc` (which makes the location of an implementation)
//! both depend on it, and not on each other.
use std::path::PathBuf;

use crate::addr::RuntimeAddr;

/// One place a spec resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The runtime address of the probed instruction.
    pub addr: RuntimeAddr,
    /// The module's path.
    pub module: PathBuf,
    /// The function containing it as output shows it: demangled when the symbol
    /// is a mangled C++ or Rust name (see [`demangle`](super::demangle)), or
    /// `0x…` when there is no function.
    pub symbol: String,
    /// The symbol's name in the ELF file (mangled, when it is): what `symbol`
    /// was made from.
    pub linkage_name: String,
    /// Bytes into `symbol`.
    pub offset: u64,
    /// True when this is a function's first instruction and the spec is a function
    /// spec: it reports entries and returns.
    pub function_entry: bool,
    /// True when the symbol is an IFUNC: `addr` is its resolver's, and which
    /// implementation the process calls is only known from its memory (see
    /// [`ifunc`](super::ifunc)). Only function entries are IFUNCs.
    pub ifunc: bool,
}
