//! Resolving a probe spec against the loaded modules.
use std::path::PathBuf;

use super::modules::ModuleMap;
use super::spec::ProbeSpec;
use crate::addr::RuntimeAddr;
use crate::error::Result;

/// One place a spec resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The runtime address of the probed instruction.
    pub addr: RuntimeAddr,
    /// The module's path.
    pub module: PathBuf,
    /// The function containing it (or `0x…` when there is none).
    pub symbol: String,
    /// Bytes into `symbol`.
    pub offset: u64,
    /// True when this is a function's first instruction and the spec is a function
    /// spec: it reports entries and returns.
    pub function_entry: bool,
}

/// The outcome of resolving a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// It resolved to these locations (never empty).
    Found(Vec<Location>),
    /// It names a module that is not loaded (yet).
    Pending,
    /// An unqualified name or pattern was not found in any loaded module; the
    /// caller decides whether to wait (libraries still loading) or fail.
    NotFound {
        /// The modules searched, by file name.
        searched: Vec<String>,
    },
}

/// Resolves `spec` against `map`. Errors are for specs that can never resolve here
/// (offset not on an instruction boundary, line without code, …).
pub fn resolve(spec: &ProbeSpec, map: &ModuleMap) -> Result<Resolution> {
    todo!("{spec:?}{map:?}")
}
