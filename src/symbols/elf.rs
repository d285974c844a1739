//! One ELF file.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::addr::{FileOffset, LinkAddr};
use crate::error::Result;

/// The kind of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymKind {
    /// STT_FUNC.
    Func,
    /// STT_GNU_IFUNC: the address is the resolver's.
    IFunc,
    /// Anything else with an address (objects, notype).
    Other,
}

/// A symbol with its version suffix (`@@GLIBC_2.4`) removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// The name, without version.
    pub name: String,
    /// Its link-time address.
    pub addr: LinkAddr,
    /// Its size in bytes (0 when unknown).
    pub size: u64,
    /// Its kind.
    pub kind: SymKind,
}

/// A parsed ELF file.
#[derive(Debug)]
pub struct ElfFile {
    path: PathBuf,
}

impl ElfFile {
    /// Reads and parses `path`.
    pub fn open(path: &Path) -> Result<ElfFile> {
        todo!("{}", path.display())
    }

    /// Parses `bytes`, read from `path`.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<ElfFile> {
        todo!("{}{}", path.display(), bytes.len())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for ET_DYN (PIE executables and shared libraries).
    pub fn is_dyn(&self) -> bool {
        todo!()
    }

    /// The entry point (e_entry).
    pub fn entry(&self) -> LinkAddr {
        todo!()
    }

    /// The program interpreter (PT_INTERP), when there is one.
    pub fn interpreter(&self) -> Option<&str> {
        todo!()
    }

    /// All function symbols (Func and IFunc), sorted by address, deduplicated
    /// (one per address, preferring a global name).
    pub fn functions(&self) -> &[Symbol] {
        todo!()
    }

    /// The symbols named exactly `name` (version suffixes ignored), of any kind.
    pub fn symbols_named(&self, name: &str) -> Vec<&Symbol> {
        todo!("{name}")
    }

    /// The function containing `addr`, and the offset into it.
    pub fn function_at(&self, addr: LinkAddr) -> Option<(&Symbol, u64)> {
        todo!("{addr}")
    }

    /// The link address that file offset `off` is loaded at, from PT_LOAD segments.
    pub fn link_addr_of_offset(&self, off: FileOffset) -> Option<LinkAddr> {
        todo!("{off}")
    }

    /// The file bytes loaded at `addr..addr+len`, when they lie in one PT_LOAD's file part.
    pub fn bytes_at(&self, addr: LinkAddr, len: usize) -> Option<&[u8]> {
        todo!("{addr}{len}")
    }

    /// Addresses of the first instruction of source line `line` of `file`
    /// (one per sequence/function that has it), from the DWARF line table.
    pub fn line_addresses(&self, file: &str, line: u32) -> Result<Vec<LinkAddr>> {
        todo!("{file}{line}")
    }
}

/// Parsed files shared between module maps, keyed by path; parse each file once.
#[derive(Default, Debug)]
pub struct ElfCache {
    files: HashMap<PathBuf, Arc<ElfFile>>,
}

impl ElfCache {
    /// The parsed file at `path`, parsed on first use.
    pub fn get(&mut self, path: &Path) -> Result<Arc<ElfFile>> {
        todo!("{}{}", path.display(), self.files.len())
    }
}
