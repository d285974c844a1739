//! One ELF file: its segments, its function symbols, its relocations and
//! dynamic section, its code bytes and (lazily) its DWARF line table.
//!
//! Owns reading and indexing a file on disk. It knows nothing of processes: every
//! address here is a [`LinkAddr`] or a [`FileOffset`]; turning them into runtime
//! addresses is `modules`' job, which knows the load bias.
//!
//! The file formats are goblin's (`read`: headers, sections, symbol tables and
//! versions, relocations, notes, the dynamic section, compression headers;
//! what goblin does not read, and why, is said there). On top of them sits
//! rtrace's own logic: which symbol names an address and which copy a
//! versioned name means (`symtab`), the line table (`lines`), the separate
//! debug file, and the code-reference scan, which is the architecture's
//! ([`crate::arch::code_refs`]).
//!
//! Files come from the tracee's maps and may be anything: truncated, corrupt, or
//! written by an adversary. Parsing must therefore never panic and never trust a
//! count or an offset: every table is checked to lie in the file before goblin
//! reads it, every other read goes through `get`/checked arithmetic, and a part
//! that does not parse is an error ([`Error::CorruptElf`]) or, for the parts a
//! probe can do without (relocations, the dynamic section, versions, notes),
//! missing.
//!
//! Cost model: [`ElfFile::parse`] reads the file once, from disk into memory,
//! then its headers, both symbol tables and the dynamic section
//! (O(symbols · log symbols)); the relocations are read on the first question
//! about them, and the DWARF line table on the first
//! [`ElfFile::line_addresses`] call, each cached (failure included), so a
//! program without IFUNC or `FILE:LINE` probes never pays for them.
//!
//! DWARF sections come from the file itself when it has any, else from its
//! separate debug file (see [`super::debugfile`]: build-id, then
//! `.gnu_debuglink`). That file is looked for, read and checked the first time a
//! DWARF section is asked for, and kept (or its absence) for the life of the
//! `ElfFile`. Compressed sections (`SHF_COMPRESSED` with zlib, as Debian ships
//! its debug files, and the older `.zdebug_*`) are inflated on first use and
//! kept too.
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use goblin::elf::section_header;

use super::cfi::{CfiCache, CfiSection, FrameRule, SectionKind};
use super::debugfile::{self, DebugLink};
use super::demangle::Demangled;
use crate::addr::{FileOffset, LinkAddr};
use crate::error::{Error, Result};
use lines::LineTable;
use read::{
    corrupt_elf, find_section_data, has_dwarf, parse_symbols, section_bytes, Corrupt, DebugFile,
    Parsed, Section, ELF_MAGIC,
};
use symtab::SymbolIndex;
pub use types::{
    Dependencies, Relocation, Segment, SymKind, Symbol, R_X86_64_GLOB_DAT, R_X86_64_IRELATIVE,
    R_X86_64_JUMP_SLOT, R_X86_64_TPOFF64,
};

mod lines;
mod read;
mod symtab;
#[cfg(test)]
mod tests;
mod types;

/// A parsed ELF file.
pub struct ElfFile {
    path: PathBuf,
    /// The whole file, so that [`ElfFile::bytes_at`] can hand out slices and DWARF
    /// can be parsed later without reading it again.
    bytes: Vec<u8>,
    is_dyn: bool,
    entry: LinkAddr,
    interpreter: Option<String>,
    segments: Vec<Segment>,
    sections: Vec<Section>,
    /// The file's own symbols (`.symtab` and `.dynsym`).
    own: SymbolIndex,
    /// The thread-local symbols of `.dynsym`: name, offset in the TLS block.
    tls_symbols: Vec<(String, u64)>,
    /// The dynamic section's libraries and search paths.
    dependencies: Dependencies,
    /// The dynamic relocations, read on first use (IFUNC slots, `errno`).
    relocations: OnceLock<Vec<Relocation>>,
    /// The symbols of the separate debug file's `.symtab`, read on the first
    /// question the file's own symbols cannot answer (`None`: no debug file,
    /// or no symbols in it).
    debug_symbols: OnceLock<Option<SymbolIndex>>,
    /// The DWARF line table, parsed on first use; `Err` holds the reason it could
    /// not be parsed, cached like a success so a corrupt file is not re-parsed.
    lines: OnceLock<Result<LineTable>>,
    /// The `NT_GNU_BUILD_ID` note's descriptor.
    build_id: Option<Vec<u8>>,
    /// The `.gnu_debuglink` section.
    debuglink: Option<DebugLink>,
    /// The separate debug file, looked for on first use (`None`: there is none,
    /// or the file has DWARF of its own).
    debug_file: OnceLock<Option<DebugFile>>,
    /// Every direct branch target and RIP-relative address in the
    /// executable segments, with where it is taken, sorted by target: built
    /// on first use (by fast probes, which must not replace bytes that code
    /// elsewhere in the module jumps into).
    code_refs: OnceLock<Vec<(LinkAddr, LinkAddr)>>,
    /// Call frame information, indexed on first use, and the rules found.
    cfi: CfiCache,
    /// The names shown for mangled functions (by address), demangled once
    /// each when a stack first names them.
    shown_names: std::sync::Mutex<HashMap<u64, Arc<str>>>,
}

/// Which symbol tables a lookup by name consults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tables {
    /// The file's own `.symtab` and `.dynsym`.
    Own,
    /// Those, then, for a name they lack, the separate debug file's `.symtab`.
    WithDebugFile,
}

impl fmt::Debug for ElfFile {
    // Not derived: the file bytes and the symbol tables would flood any log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElfFile")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("is_dyn", &self.is_dyn)
            .field("entry", &self.entry)
            .field("interpreter", &self.interpreter)
            .field("segments", &self.segments)
            .field("functions", &self.own.functions.len())
            .field("symbols", &self.own.by_name.len())
            .finish_non_exhaustive()
    }
}

impl ElfFile {
    /// Reads and parses `path`.
    ///
    /// The magic number is checked before the rest is read, so that asking about a
    /// large non-ELF file that a process happens to map (a locale archive, a font)
    /// costs four bytes, not the whole file.
    pub fn open(path: &Path) -> Result<ElfFile> {
        let context = || format!("cannot read {}", path.display());
        // (Opened without waiting: a FIFO named where a module was, in a
        // recording, would block the open until someone wrote to it.)
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io(context(), e))?;
        // (A directory fails at the read, as it always did.)
        if file.metadata().is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            return Err(Error::NotElf { path: path.into() });
        }
        let mut magic = [0u8; 4];
        match file.read_exact(&mut magic) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Error::NotElf { path: path.into() })
            }
            Err(e) => return Err(Error::io(context(), e)),
        }
        if &magic != ELF_MAGIC {
            return Err(Error::NotElf { path: path.into() });
        }
        let mut bytes = magic.to_vec();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(context(), e))?;
        Self::parse(path, bytes)
    }

    /// Parses `bytes`, read from `path`.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<ElfFile> {
        if bytes.get(..4) != Some(&ELF_MAGIC[..]) {
            return Err(Error::NotElf { path: path.into() });
        }
        let parsed = Parsed::new(path, &bytes)?;
        let Parsed {
            is_dyn,
            entry,
            interpreter,
            segments,
            sections,
            raw_symbols,
            tls_symbols,
            dependencies,
        } = parsed;
        let own = SymbolIndex::new(raw_symbols);
        let build_id = sections
            .iter()
            .filter(|s| s.kind == section_header::SHT_NOTE)
            .find_map(|s| {
                debugfile::parse_build_id(section_bytes(&bytes, s, &corrupt_elf(path)).ok()?)
            });
        let debuglink = sections
            .iter()
            .find(|s| s.name == ".gnu_debuglink")
            .and_then(|s| DebugLink::parse(section_bytes(&bytes, s, &corrupt_elf(path)).ok()?));
        Ok(ElfFile {
            path: path.into(),
            bytes,
            is_dyn,
            entry,
            interpreter,
            segments,
            sections,
            own,
            tls_symbols,
            dependencies,
            relocations: OnceLock::new(),
            debug_symbols: OnceLock::new(),
            lines: OnceLock::new(),
            build_id,
            debuglink,
            debug_file: OnceLock::new(),
            code_refs: OnceLock::new(),
            cfi: CfiCache::default(),
            shown_names: Default::default(),
        })
    }

    /// Whether the function at `addr` has an exception table (an LSDA in
    /// its `.eh_frame` FDE: C++ landing pads, which the unwinder jumps to);
    /// None when no FDE covers it.
    pub fn has_landing_pads(&self, addr: LinkAddr) -> Option<bool> {
        let section = self.eh_frame_section()?;
        super::cfi::has_lsda(&section, addr.get())
    }

    /// The `.eh_frame` section with the bases its pointers are relative to.
    fn eh_frame_section(&self) -> Option<CfiSection<'_>> {
        let data = self
            .section_data(".eh_frame", &corrupt_elf(&self.path))
            .ok()?;
        let addr_of = |name: &str| {
            self.sections
                .iter()
                .find(|s| s.name == name && s.kind != section_header::SHT_NOBITS)
                .map(|s| s.addr)
        };
        let mut bases = gimli::BaseAddresses::default();
        for (name, set) in [
            (
                ".eh_frame",
                gimli::BaseAddresses::set_eh_frame as fn(_, _) -> _,
            ),
            (".eh_frame_hdr", gimli::BaseAddresses::set_eh_frame_hdr),
            (".text", gimli::BaseAddresses::set_text),
            (".got", gimli::BaseAddresses::set_got),
        ] {
            if let Some(a) = addr_of(name) {
                bases = set(bases, a);
            }
        }
        (!data.is_empty()).then_some(CfiSection {
            kind: SectionKind::EhFrame,
            data,
            bases,
        })
    }

    /// Whether call frame information (an FDE of `.eh_frame`) covers `addr`:
    /// the code of a function, named by the symbols or not (a stripped
    /// static one). None when the file has no `.eh_frame`.
    pub fn cfi_covers(&self, addr: LinkAddr) -> Option<bool> {
        self.cfi.covers(addr, || self.eh_frame_section())
    }

    /// The call frame rule for the code at `addr`: from `.eh_frame`, else
    /// from `.debug_frame` (the file's own, or its separate debug file's).
    /// None where no FDE covers `addr` or the CFI does not parse. The first
    /// call indexes the FDEs; rules are kept per address (see
    /// [`super::cfi`]).
    pub fn frame_rule(&self, addr: LinkAddr) -> Option<Arc<FrameRule>> {
        let eh = || self.eh_frame_section();
        let debug = || {
            let data = self
                .section_data(".debug_frame", &corrupt_elf(&self.path))
                .ok()?;
            (!data.is_empty()).then_some(CfiSection {
                kind: SectionKind::DebugFrame,
                data,
                bases: gimli::BaseAddresses::default(),
            })
        };
        self.cfi.rule(addr, eh, debug)
    }

    /// The name output shows for `symbol`, one of this file's functions: the
    /// demangled form of a C++ or Rust name (computed once per function), the
    /// name itself otherwise.
    pub fn shown_name(&self, symbol: &Symbol) -> Arc<str> {
        if !(symbol.name.starts_with("_Z")
            || symbol.name.starts_with("_R")
            || symbol.name.starts_with("__Z"))
        {
            return Arc::from(symbol.name.as_str());
        }
        let mut names = self.shown_names.lock().unwrap_or_else(|p| p.into_inner());
        names
            .entry(symbol.addr.get())
            .or_insert_with(|| Arc::from(super::demangle::display_name(&symbol.name)))
            .clone()
    }

    /// The build-id (the `NT_GNU_BUILD_ID` note), when the file has one.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The `.gnu_debuglink` section (debug file name and CRC), when there is one.
    pub fn debug_link(&self) -> Option<&DebugLink> {
        self.debuglink.as_ref()
    }

    /// The separate debug file that DWARF is read from, when the file has no
    /// DWARF of its own and one was found (by build-id or `.gnu_debuglink`,
    /// checked). The first call looks for it.
    pub fn separate_debug_file(&self) -> Option<&Path> {
        self.debug_file().map(|d| d.path.as_path())
    }

    /// True when DWARF (a `.debug_info` or `.debug_line` section with contents)
    /// is available, in the file or in its separate debug file.
    pub fn has_dwarf(&self) -> bool {
        has_dwarf(&self.sections) || self.debug_file().is_some()
    }

    /// `reason` (a DWARF error) saying which file the DWARF came from when it is
    /// the separate debug file.
    fn in_debug_file(&self, reason: String) -> String {
        match self.separate_debug_file() {
            Some(path) if !reason.contains(&*path.to_string_lossy()) => {
                format!("{reason} (in {})", path.display())
            }
            _ => reason,
        }
    }

    /// The separate debug file, looked for on the first call: only when the file
    /// has no DWARF of its own, and only a candidate that passes its check
    /// (build-id or CRC) and has DWARF is taken.
    fn debug_file(&self) -> Option<&DebugFile> {
        self.debug_file
            .get_or_init(|| {
                if has_dwarf(&self.sections) {
                    return None;
                }
                let dirs = debugfile::debug_dirs();
                debugfile::candidates(
                    &self.path,
                    self.build_id.as_deref(),
                    self.debuglink.as_ref(),
                    &dirs,
                )
                .into_iter()
                .find_map(|c| {
                    // Regular files only: a FIFO or a device would block or
                    // never end.
                    if !std::fs::metadata(&c.path).is_ok_and(|m| m.is_file()) {
                        return None;
                    }
                    let bytes = std::fs::read(&c.path).ok()?;
                    let debug = DebugFile::parse(&c.path, bytes)?;
                    let id = debug
                        .sections
                        .iter()
                        .filter(|s| s.kind == section_header::SHT_NOTE)
                        .find_map(|s| {
                            let corrupt = corrupt_elf(&debug.path);
                            debugfile::parse_build_id(
                                section_bytes(&debug.bytes, s, &corrupt).ok()?,
                            )
                        });
                    (c.accepts(&debug.bytes, id.as_deref()) && has_dwarf(&debug.sections))
                        .then_some(debug)
                })
            })
            .as_ref()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for ET_DYN (PIE executables and shared libraries).
    pub fn is_dyn(&self) -> bool {
        self.is_dyn
    }

    /// The entry point (e_entry).
    pub fn entry(&self) -> LinkAddr {
        self.entry
    }

    /// True for a Go program (it has a `.go.buildinfo` section). Go's runtime
    /// copies goroutine stacks and reads its own return addresses, so rtrace
    /// never rewrites a return address in Go code.
    pub fn is_go(&self) -> bool {
        self.sections.iter().any(|s| s.name == ".go.buildinfo")
    }

    /// True when the file has C++ exception tables (`.gcc_except_table`):
    /// its code can be unwound through by an exception.
    pub fn has_exception_tables(&self) -> bool {
        self.sections.iter().any(|s| s.name == ".gcc_except_table")
    }

    /// The program interpreter (PT_INTERP), when there is one.
    pub fn interpreter(&self) -> Option<&str> {
        self.interpreter.as_deref()
    }

    /// The PT_LOAD segments, in program header order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// A direct branch, call or RIP-relative address anywhere in the file's
    /// executable segments that lands strictly inside `from..to` (link
    /// addresses): (where it is taken, where it lands). The segments are
    /// decoded once, linearly, on the first question (about 30 ms for libc):
    /// hand-written code jumps from one function into another (glibc's
    /// `mempcpy` into `memmove` just past its first instruction), which a
    /// scan of the probed function alone cannot see.
    pub fn code_ref_into(&self, from: LinkAddr, to: LinkAddr) -> Option<(LinkAddr, LinkAddr)> {
        let refs = self.code_refs.get_or_init(|| {
            let code = self.segments.iter().filter(|s| s.exec).filter_map(|s| {
                let start = usize::try_from(s.offset.get()).ok()?;
                let len = usize::try_from(s.filesz).ok()?;
                Some((s.vaddr, self.bytes.get(start..start.checked_add(len)?)?))
            });
            crate::arch::code_refs(code, |a| self.is_code(a))
        });
        let i = refs.partition_point(|&(t, _)| t <= from);
        refs.get(i)
            .filter(|&&(t, _)| t < to)
            .map(|&(t, at)| (at, t))
    }

    /// All function symbols (Func and IFunc) of the file's own tables, sorted
    /// by address, deduplicated (one per address, preferring a global name).
    ///
    /// Symbols come from `.symtab` and `.dynsym` together: `.dynsym` is a subset of
    /// `.symtab` in an unstripped file, and all there is in a stripped one, so the
    /// union is never worse than either. At one address the name kept is GLOBAL
    /// before WEAK before LOCAL, then the shortest (`openat` over `__openat64`).
    /// The separate debug file's symbols are not here (see
    /// [`ElfFile::function_named`], [`ElfFile::function_at`]).
    pub fn functions(&self) -> &[Symbol] {
        &self.own.functions
    }

    /// The symbols named exactly `name` (version suffixes ignored), of any kind.
    ///
    /// Unlike [`ElfFile::functions`], aliases are all here: `openat` is found even
    /// when its address is listed under another name. Only the file's own
    /// tables: what the dynamic linker and the program can reach by name
    /// (rtrace's own hooks are looked up here).
    pub fn symbols_named(&self, name: &str) -> Vec<&Symbol> {
        self.own.named(name)
    }

    /// The function (Func or IFunc) named exactly `name`: of a versioned
    /// name, the default version (`@@`, the one a program links to); else the
    /// lowest address when there are several (local functions of different
    /// object files). When
    /// the file's own tables have none, the separate debug file's `.symtab` is
    /// asked (a program stripped with `--strip-all` keeps its local functions
    /// there; libc6-dbg has libc's internal ones, `__strlen_evex`): read once,
    /// on the first such question.
    pub fn function_named(&self, name: &str) -> Option<&Symbol> {
        self.function_named_in(name, Tables::WithDebugFile)
    }

    /// [`ElfFile::function_named`], in the tables `tables` says.
    pub fn function_named_in(&self, name: &str, tables: Tables) -> Option<&Symbol> {
        fn function(syms: Vec<&Symbol>) -> Option<&Symbol> {
            syms.into_iter().find(|s| s.kind.is_function())
        }
        function(self.own.named(name)).or_else(|| match tables {
            Tables::Own => None,
            Tables::WithDebugFile => function(self.debug_symbols()?.named(name)),
        })
    }

    /// Every symbol of the file's own tables with an address, sorted by name
    /// (aliases included, version suffixes removed).
    pub fn symbols(&self) -> &[Symbol] {
        &self.own.by_name
    }

    /// The functions (Func or IFunc, aliases included) of the file's own
    /// tables whose name is mangled, with its demangled forms. Built on the
    /// first call (demangling every mangled name once) and cached.
    pub fn demangled_functions(&self) -> impl Iterator<Item = (&Symbol, &Demangled)> {
        self.own.demangled()
    }

    /// The functions whose demangled forms `matches`: those of the file's own
    /// tables, else (when `tables` says so) those of its separate debug file.
    pub fn functions_demangled(
        &self,
        matches: impl Fn(&Demangled) -> bool,
        tables: Tables,
    ) -> Vec<&Symbol> {
        fn pick<'s>(
            index: &'s SymbolIndex,
            matches: &dyn Fn(&Demangled) -> bool,
        ) -> Vec<&'s Symbol> {
            index
                .demangled()
                .filter(|(_, d)| matches(d))
                .map(|(s, _)| s)
                .collect()
        }
        let own = pick(&self.own, &matches);
        if !own.is_empty() || tables == Tables::Own {
            return own;
        }
        self.debug_symbols()
            .map(|d| pick(d, &matches))
            .unwrap_or_default()
    }

    /// The separate debug file's symbols, read on first use.
    fn debug_symbols(&self) -> Option<&SymbolIndex> {
        self.debug_symbols
            .get_or_init(|| {
                let debug = self.debug_file()?;
                let (raw, _) = parse_symbols(&debug.path, &debug.bytes, &debug.sections).ok()?;
                (!raw.is_empty()).then(|| SymbolIndex::new(raw))
            })
            .as_ref()
    }

    /// The dynamic relocations: every entry of the allocated SHT_RELA sections
    /// (`.rela.dyn`, `.rela.plt`), with the names of their symbols. Read on
    /// the first call and kept; entries that do not parse are skipped.
    pub fn relocations(&self) -> &[Relocation] {
        self.relocations
            .get_or_init(|| read::relocations(&self.path, &self.bytes, &self.sections))
    }

    /// The GOT slot that the dynamic linker fills with the offset of the
    /// thread-local variable `name` (a `.dynsym` symbol of this file) from
    /// the thread pointer: the R_X86_64_TPOFF64 relocation whose target
    /// (its TLS symbol's value, or 0 without a symbol, plus the addend) is
    /// `name`'s. A library's own accesses to its TLS variables use such
    /// slots (glibc's `errno`).
    pub fn tls_offset_slot(&self, name: &str) -> Option<LinkAddr> {
        let (_, value) = self.tls_symbols.iter().find(|(n, _)| n == name)?;
        self.relocations()
            .iter()
            .filter(|r| r.kind == R_X86_64_TPOFF64)
            .find(|r| r.tls_offset.map(|b| b.wrapping_add(r.addend as u64)) == Some(*value))
            .map(|r| r.offset)
    }

    /// The libraries the file needs and where it asks for them to be
    /// looked for (its dynamic section).
    pub fn dependencies(&self) -> &Dependencies {
        &self.dependencies
    }

    /// The function containing `addr`, and the offset into it, from the
    /// file's own symbols or, where they have none, its separate debug file's.
    ///
    /// A function with a size contains `[addr, addr + size)`. One without (some
    /// hand-written assembly) is taken to run up to the next function or to the end
    /// of its segment, as `addr2line` and `perf` do.
    pub fn function_at(&self, addr: LinkAddr) -> Option<(&Symbol, u64)> {
        // The file's own symbols first; the debug file's for what they do not
        // cover (a static function of a stripped program, libc's internal
        // ones): it is read only when an address falls outside them.
        self.own
            .function_at(&self.segments, addr)
            .or_else(|| self.debug_symbols()?.function_at(&self.segments, addr))
    }

    /// The function containing `addr` for naming a stack frame: as
    /// [`ElfFile::function_at`], which asks the separate debug file's symbol
    /// table for what the file's own do not name (the local functions a
    /// distribution strips from the file itself, `msort_with_tmp` in libc).
    pub fn frame_function(&self, addr: LinkAddr) -> Option<(&Symbol, u64)> {
        self.function_at(addr)
    }
}

impl ElfFile {
    /// The link address that file offset `off` is loaded at, from PT_LOAD segments.
    pub fn link_addr_of_offset(&self, off: FileOffset) -> Option<LinkAddr> {
        self.segments.iter().find_map(|s| {
            let d = off.distance_from(s.offset)?;
            (d < s.filesz).then(|| LinkAddr(s.vaddr.get().wrapping_add(d)))
        })
    }

    /// The file offset whose byte is loaded at `addr` (the inverse of
    /// [`ElfFile::link_addr_of_offset`]), when `addr` is in a PT_LOAD's file part.
    /// A probe site is identified by module and file offset, like a kernel uprobe.
    pub fn offset_of_link_addr(&self, addr: LinkAddr) -> Option<FileOffset> {
        self.segments.iter().find_map(|s| {
            let d = addr.distance_from(s.vaddr)?;
            (d < s.filesz).then(|| FileOffset(s.offset.get().wrapping_add(d)))
        })
    }

    /// The file bytes loaded at `addr..addr+len`, when they lie in one PT_LOAD's file part.
    pub fn bytes_at(&self, addr: LinkAddr, len: usize) -> Option<&[u8]> {
        let len = u64::try_from(len).ok()?;
        self.segments.iter().find_map(|s| {
            let d = addr.distance_from(s.vaddr)?;
            if d.checked_add(len)? > s.filesz {
                return None;
            }
            let start = usize::try_from(s.offset.get().checked_add(d)?).ok()?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            self.bytes.get(start..end)
        })
    }

    /// True when `addr` lies in an executable segment.
    pub fn is_code(&self, addr: LinkAddr) -> bool {
        self.segments.iter().any(|s| s.exec && s.contains(addr))
    }

    /// Addresses of the first instruction of source line `line` of `file`: one
    /// per function that has code for the line, from the DWARF line table.
    ///
    /// `file` matches a line program's file when it is a suffix of the full path by
    /// whole components: `count.c` and `fixtures/count.c` both match
    /// `/src/fixtures/count.c`; `unt.c` does not. In each function (the symbol
    /// containing the row's address; the line-table sequence when no symbol
    /// does) the lowest `is_stmt` address of the line is taken: that is where a
    /// breakpoint on the line stops first in that function, as in gdb. A line
    /// can have code in several functions: a `static inline` function inlined
    /// into two callers, a macro, code duplicated by the compiler. Addresses
    /// outside executable segments (functions discarded by the linker, whose
    /// rows point at 0) are ignored.
    ///
    /// Errors: [`Error::NoLineInfo`] when no line of `file` has code (no DWARF,
    /// or another file); [`Error::NoCodeAtLine`] with the nearest lines that do
    /// when the file has code but not at `line`.
    ///
    /// The first call parses every line program of the file and caches the table.
    pub fn line_addresses(&self, file: &str, line: u32) -> Result<Vec<LinkAddr>> {
        let table = match self.lines.get_or_init(|| self.parse_lines()) {
            Ok(table) => table,
            // Reported at every use, parsed once.
            Err(e) => return Err(e.again()),
        };
        table.addresses(
            file,
            line,
            |a| self.is_code(a),
            |a| self.function_at(a).map(|(f, _)| f.addr),
        )
    }

    /// The source file and line of the instruction at `addr`, when a line
    /// table row starts exactly there (function entries and line starts do).
    /// Parses the line table on first use, like [`ElfFile::line_addresses`].
    pub fn line_of(&self, addr: LinkAddr) -> Option<(PathBuf, u32)> {
        self.lines
            .get_or_init(|| self.parse_lines())
            .as_ref()
            .ok()?
            .line_of(addr)
    }

    /// The source file and line of the code at `addr`: the last row at or
    /// before it in the line-table sequence that covers it, as `addr2line`
    /// answers. None without a line table, outside every sequence, or in code
    /// that has no line (line 0). Parses the line table on first use; each
    /// call after that is two binary searches.
    pub fn line_at(&self, addr: LinkAddr) -> Option<(&Path, u32)> {
        self.lines
            .get_or_init(|| self.parse_lines())
            .as_ref()
            .ok()?
            .line_at(addr)
    }

    /// Parses every line program of the file (or of its separate debug
    /// file): [`Error::CorruptElf`] of this file when one does not parse,
    /// naming the debug file the DWARF came from.
    fn parse_lines(&self) -> Result<LineTable> {
        let corrupt = |reason| Error::CorruptElf {
            path: self.path.clone(),
            reason: self.in_debug_file(reason),
        };
        LineTable::parse(
            |name| self.section_data(name, &corrupt),
            |a| self.is_code(a),
            &corrupt,
        )
    }

    /// The contents of the DWARF section called `name` (`.debug_info`, …): empty
    /// when it is absent, [`Error::Dwarf`] of this file when it cannot be
    /// used (see `section_data`).
    pub(crate) fn debug_section(&self, name: &str) -> Result<&[u8]> {
        self.section_data(name, &|reason| Error::Dwarf {
            path: self.path.clone(),
            reason,
        })
    }

    /// The contents of the section called `name`: empty when it is absent or has no
    /// file bytes, an error when it cannot be inflated or lies outside the file.
    ///
    /// A DWARF section (`.debug_*`) of a file without DWARF of its own comes from
    /// its separate debug file, when there is one (whose path then begins the
    /// reason given to `corrupt`).
    fn section_data(&self, name: &str, corrupt: Corrupt<'_>) -> Result<&[u8]> {
        if name.starts_with(".debug_") && !has_dwarf(&self.sections) {
            return match self.debug_file() {
                Some(debug) => {
                    let in_debug = |reason| corrupt(format!("{}: {reason}", debug.path.display()));
                    find_section_data(&debug.bytes, &debug.sections, name, &in_debug)
                }
                None => Ok(&[]),
            };
        }
        find_section_data(&self.bytes, &self.sections, name, corrupt)
    }
}

/// Parsed files shared between module maps, keyed by path; parse each file once.
#[derive(Default, Debug)]
pub struct ElfCache {
    files: HashMap<PathBuf, Arc<ElfFile>>,
}

impl ElfCache {
    /// An empty cache.
    pub fn new() -> ElfCache {
        ElfCache::default()
    }

    /// The parsed file at `path`, parsed on first use.
    ///
    /// Failures are not cached: a file that was missing or being written may be
    /// fine at the next rescan of the maps, and a non-ELF file costs only the four
    /// bytes of its magic number to refuse again.
    pub fn get(&mut self, path: &Path) -> Result<Arc<ElfFile>> {
        if let Some(file) = self.files.get(path) {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(ElfFile::open(path)?);
        self.files.insert(path.to_path_buf(), Arc::clone(&file));
        Ok(file)
    }
}
