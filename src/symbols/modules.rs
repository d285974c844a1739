//! The modules loaded in a process.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::elf::{ElfCache, ElfFile};
use super::maps::Mapping;
use crate::addr::{LinkAddr, RuntimeAddr};
use crate::error::Result;

/// One loaded ELF object (the executable, the dynamic linker, a library).
#[derive(Clone, Debug)]
pub struct Module {
    /// The mapped file.
    pub path: PathBuf,
    /// Runtime address = link address + bias.
    pub bias: u64,
    /// The runtime ranges mapped from the file.
    pub ranges: Vec<(RuntimeAddr, RuntimeAddr)>,
    /// The parsed file.
    pub elf: Arc<ElfFile>,
}

impl Module {
    /// The file name (`libc.so.6`).
    pub fn name(&self) -> &str {
        todo!()
    }
    /// True when a spec's module qualifier names this module: an absolute path equal
    /// to `path`, or a file name equal to `q`, or starting with `q.` or `q-`.
    pub fn matches(&self, qualifier: &str) -> bool {
        todo!("{qualifier}")
    }
    /// Link address → runtime address.
    pub fn to_runtime(&self, a: LinkAddr) -> RuntimeAddr {
        RuntimeAddr(a.0.wrapping_add(self.bias))
    }
    /// Runtime address → link address.
    pub fn to_link(&self, a: RuntimeAddr) -> LinkAddr {
        LinkAddr(a.0.wrapping_sub(self.bias))
    }
    /// True when `a` lies in one of the module's mapped ranges.
    pub fn contains(&self, a: RuntimeAddr) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= a && a < e)
    }
}

/// An address named by function: `work+0x8 in /path/count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbolized<'a> {
    /// The module's path.
    pub module: &'a Path,
    /// The function's name.
    pub symbol: &'a str,
    /// Bytes into the function.
    pub offset: u64,
}

/// The modules of one address space: the executable first, then the others in the
/// order they appear in the maps.
#[derive(Clone, Debug, Default)]
pub struct ModuleMap {
    modules: Vec<Module>,
}

impl ModuleMap {
    /// Builds the map from parsed maps; `exe` is the main executable's path
    /// (`/proc/PID/exe`). Files that cannot be parsed as ELF are skipped.
    pub fn new(maps: &[Mapping], exe: &Path, cache: &mut ElfCache) -> Result<ModuleMap> {
        todo!("{}{}{}", maps.len(), exe.display(), cache.get(exe).is_ok())
    }
    /// The modules.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }
    /// The module mapping `a`.
    pub fn module_at(&self, a: RuntimeAddr) -> Option<&Module> {
        self.modules.iter().find(|m| m.contains(a))
    }
    /// The module for a qualifier (see [`Module::matches`]).
    pub fn find(&self, qualifier: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.matches(qualifier))
    }
    /// Names `a` by function.
    pub fn symbolize(&self, a: RuntimeAddr) -> Option<Symbolized<'_>> {
        todo!("{a}")
    }
}
