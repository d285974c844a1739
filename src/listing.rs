//! `--list`: the probe points specs match, without tracing anything.
//!
//! It reads the modules of a running process (its maps, and its memory for the
//! GOT slots that name IFUNC implementations) or of a program on disk, and
//! resolves each spec against them. Nothing is armed and nothing runs.

use std::path::Path;

use crate::addr::{Pid, RuntimeAddr};
use crate::error::Result;
use crate::symbols::resolve::Listed;
use crate::symbols::{maps, resolve, ElfCache, ModuleMap, ProbeSpec};
use crate::sys::mem::ProcMem;

/// Where [`list`] finds the modules.
#[derive(Clone, Copy, Debug)]
pub enum ListIn<'a> {
    /// A running process: the modules it has loaded. IFUNCs are listed at
    /// the implementation their GOT slot names when its memory can be read,
    /// else at their resolver.
    Process(Pid),
    /// A program on disk (found with [`crate::find_program`]) and the
    /// libraries it names.
    Program(&'a Path),
}

/// The probe points of each spec, in order: what `rtrace --list` prints.
pub fn list(specs: &[ProbeSpec], within: ListIn<'_>) -> Result<Vec<Listed>> {
    let mut cache = ElfCache::new();
    let (map, mem) = match within {
        ListIn::Process(pid) => {
            let maps = maps::read(pid)?;
            let exe = std::path::PathBuf::from(format!("/proc/{pid}/exe"));
            let map = ModuleMap::new(&maps, &exe, &mut cache)?;
            // Without access to its memory, IFUNCs are listed at their resolver.
            (map, ProcMem::open(pid).ok())
        }
        ListIn::Program(program) => (ModuleMap::from_program(program, &mut cache)?, None),
    };
    let read = |a: RuntimeAddr| mem.as_ref().and_then(|m| m.read_u64(a).ok());
    let mut out = Vec::new();
    for spec in specs {
        let reader: Option<&dyn Fn(RuntimeAddr) -> Option<u64>> = mem.as_ref().map(|_| &read as _);
        out.extend(resolve::list(spec, &map, reader)?);
    }
    Ok(out)
}
