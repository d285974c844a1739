//! Probe spec parsing.
use std::str::FromStr;

use crate::error::{Error, Result};

/// What a probe spec points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A function by name, or every function matching a glob (`*`, `?`).
    Function {
        /// The name or glob.
        name: String,
    },
    /// An instruction at `offset` bytes into `function` (entry-only).
    Offset {
        /// The function.
        function: String,
        /// Bytes from its first instruction.
        offset: u64,
    },
    /// An address: absolute when the spec names no module, else a link-time address
    /// in that module (as `nm` and `objdump` print it).
    Address {
        /// The address.
        addr: u64,
    },
    /// The first instruction of a source line.
    Line {
        /// The source file as given (matched against the end of DWARF file paths).
        file: String,
        /// The line number.
        line: u32,
    },
}

/// A parsed probe spec. See SPEC's "Probe specs".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    text: String,
    /// The module qualifier: a file name prefix (`libc`) or an absolute path.
    pub module: Option<String>,
    /// What the spec points at.
    pub target: Target,
}

impl ProbeSpec {
    /// The spec exactly as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for function probes, which report entry and return.
    pub fn is_function(&self) -> bool {
        matches!(self.target, Target::Function { .. })
    }
}

impl FromStr for ProbeSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        todo!("{s}")
    }
}
