//! One ELF file: its segments, its function symbols, its code bytes and (lazily)
//! its DWARF line table.
//!
//! Owns reading and indexing a file on disk. It knows nothing of processes: every
//! address here is a [`LinkAddr`] or a [`FileOffset`]; turning them into runtime
//! addresses is `modules`' job, which knows the load bias.
//!
//! Files come from the tracee's maps and may be anything: truncated, corrupt, or
//! written by an adversary. Parsing must therefore never panic and never trust a
//! count or an offset: every read of the file goes through `get`/checked
//! arithmetic, and goblin's own sanity checks bound the table sizes before anything
//! is allocated.
//!
//! Cost model: [`ElfFile::parse`] reads the headers and both symbol tables once
//! (O(symbols · log symbols)); the DWARF line table is parsed on the first
//! [`ElfFile::line_addresses`] call and cached, failure included, so a program
//! without `FILE:LINE` probes never pays for it.
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
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};
use goblin::elf::section_header::{self, SectionHeader};
use goblin::elf::sym;

use super::cfi::{CfiCache, CfiSection, FrameRule, SectionKind};
use super::debugfile::{self, DebugLink};
use super::demangle::{demangle, Demangled};
use crate::addr::{FileOffset, LinkAddr};
use crate::error::{Error, Result};

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

impl SymKind {
    /// True for functions and IFUNC resolvers: what a function probe can name.
    pub fn is_function(self) -> bool {
        matches!(self, SymKind::Func | SymKind::IFunc)
    }
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

/// A PT_LOAD segment: how a range of the file is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where the segment starts in memory (p_vaddr).
    pub vaddr: LinkAddr,
    /// Its size in memory (p_memsz); the part past `filesz` is zero-filled.
    pub memsz: u64,
    /// Where its bytes start in the file (p_offset).
    pub offset: FileOffset,
    /// How many bytes come from the file (p_filesz).
    pub filesz: u64,
    /// PF_X: mapped executable.
    pub exec: bool,
}

impl Segment {
    /// True when `addr` lies in the segment's memory image.
    pub fn contains(&self, addr: LinkAddr) -> bool {
        addr.distance_from(self.vaddr)
            .is_some_and(|d| d < self.memsz)
    }
}

/// A section header, kept for loading DWARF sections by name.
#[derive(Clone, Debug)]
struct Section {
    name: String,
    kind: u32,
    flags: u64,
    /// sh_addr: where an allocated section is loaded (link address).
    addr: u64,
    offset: u64,
    size: u64,
    /// sh_link: for a relocation section, its symbol table's index.
    link: u32,
    /// The inflated contents of a compressed section, made on first use; the
    /// reason it could not be inflated is kept the same way.
    inflated: OnceLock<std::result::Result<Vec<u8>, String>>,
}

/// A separate debug file: only its sections are used (its program headers
/// describe segments whose bytes it does not have).
#[derive(Debug)]
struct DebugFile {
    path: PathBuf,
    bytes: Vec<u8>,
    sections: Vec<Section>,
}

/// One dynamic relocation (Elf64_Rela of an allocated SHT_RELA section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// The place it patches (r_offset).
    pub offset: LinkAddr,
    /// R_X86_64_* (ELF64_R_TYPE).
    pub kind: u32,
    /// The name of the symbol it refers to (version removed), if any.
    pub symbol: Option<String>,
    /// r_addend.
    pub addend: i64,
}

/// R_X86_64_GLOB_DAT.
pub const R_X86_64_GLOB_DAT: u32 = 6;
/// R_X86_64_JUMP_SLOT.
pub const R_X86_64_JUMP_SLOT: u32 = 7;
/// R_X86_64_IRELATIVE.
pub const R_X86_64_IRELATIVE: u32 = 37;

/// One row of a DWARF line program, reduced to what `FILE:LINE` probes and
/// naming an address by its line need.
#[derive(Clone, Copy, Debug)]
struct LineRow {
    /// Index into [`LineTable::files`].
    file: u32,
    /// 0 when the row's code has no source line (compiler-generated code).
    line: u32,
    addr: u64,
    /// Which sequence (contiguous run of code, typically one function or one CU's
    /// `.text`) the row belongs to; unique across the whole file.
    seq: u32,
    /// `is_stmt`: a place a breakpoint on the line should stop at. The other
    /// rows only name the line of the code they start.
    stmt: bool,
}

/// One sequence of a line program: the code `[start, end)`, described by
/// `rows[first..last]` in address order.
#[derive(Clone, Copy, Debug)]
struct LineSequence {
    start: u64,
    end: u64,
    first: usize,
    last: usize,
}

/// Every line program of the file, flattened.
#[derive(Debug, Default)]
struct LineTable {
    /// Full source paths (comp dir + include dir + file name), interned.
    files: Vec<PathBuf>,
    rows: Vec<LineRow>,
    /// The sequences that cover code, sorted by start: the index for naming
    /// an address by its line.
    sequences: Vec<LineSequence>,
}

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
    /// The symbols of the separate debug file's `.symtab`, read on the first
    /// question the file's own symbols cannot answer (`None`: no debug file,
    /// or no symbols in it).
    debug_symbols: OnceLock<Option<SymbolIndex>>,
    /// The DWARF line table, parsed on first use; `Err` holds the reason it could
    /// not be parsed, cached like a success so a corrupt file is not re-parsed.
    lines: OnceLock<std::result::Result<LineTable, String>>,
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
    code_refs: OnceLock<Vec<(u64, u64)>>,
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

/// Symbols of one table set, indexed.
struct SymbolIndex {
    /// Functions, one per address, sorted by address.
    functions: Vec<Symbol>,
    /// Every defined symbol, sorted by name then address.
    by_name: Vec<Symbol>,
    /// The demangled forms of the mangled function names in `by_name` (index,
    /// forms), built on first use: C programs never pay for it.
    demangled: OnceLock<Vec<(usize, Demangled)>>,
}

impl SymbolIndex {
    fn new(raw: Vec<RawSym>) -> SymbolIndex {
        let (functions, by_name) = index_symbols(raw);
        SymbolIndex {
            functions,
            by_name,
            demangled: OnceLock::new(),
        }
    }

    fn named(&self, name: &str) -> Vec<&Symbol> {
        let start = self.by_name.partition_point(|s| s.name.as_str() < name);
        self.by_name
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|s| s.name == name)
            .collect()
    }

    fn demangled(&self) -> impl Iterator<Item = (&Symbol, &Demangled)> {
        self.demangled
            .get_or_init(|| {
                self.by_name
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.kind.is_function())
                    .filter_map(|(i, s)| Some((i, demangle(&s.name)?)))
                    .collect()
            })
            .iter()
            .filter_map(|(i, d)| Some((self.by_name.get(*i)?, d)))
    }

    /// See [`ElfFile::function_at`]; `segments` bound an unsized last symbol.
    fn function_at(&self, segments: &[Segment], addr: LinkAddr) -> Option<(&Symbol, u64)> {
        let idx = self.functions.partition_point(|f| f.addr <= addr);
        // Sized symbols may nest (a local label inside its function), so look a few
        // entries back for one that really contains the address.
        let lower = idx.saturating_sub(8);
        for i in (lower..idx).rev() {
            let f = self.functions.get(i)?;
            let off = addr.distance_from(f.addr)?;
            let end = if f.size > 0 {
                f.size
            } else if i + 1 == idx {
                let next = self.functions.get(idx).map(|n| n.addr);
                let seg_end = segments
                    .iter()
                    .find(|s| s.contains(f.addr))
                    .map(|s| s.vaddr.get().saturating_add(s.memsz));
                match (next, seg_end) {
                    (Some(n), _) => n.get().saturating_sub(f.addr.get()),
                    (None, Some(e)) => e.saturating_sub(f.addr.get()),
                    (None, None) => 0,
                }
            } else {
                // An unsized symbol is only a candidate when it is the nearest one.
                0
            };
            if off < end {
                return Some((f, off));
            }
        }
        None
    }
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

/// Binding preference when several functions share an address: the name a user
/// would recognise is the global one.
fn bind_rank(bind: u8) -> u8 {
    match bind {
        sym::STB_GLOBAL => 0,
        sym::STB_WEAK => 1,
        _ => 2,
    }
}

/// A symbol as read from a table, before deduplication.
struct RawSym {
    sym: Symbol,
    bind: u8,
    /// A version that is not the default (`name@VER`, not `name@@VER`).
    hidden: bool,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// sizeof(Elf64_Sym).
const SYM_SIZE: usize = 24;

impl ElfFile {
    /// Reads and parses `path`.
    ///
    /// The magic number is checked before the rest is read, so that asking about a
    /// large non-ELF file that a process happens to map (a locale archive, a font)
    /// costs four bytes, not the whole file.
    pub fn open(path: &Path) -> Result<ElfFile> {
        let context = || format!("cannot read {}", path.display());
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(context(), e))?;
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
        let corrupt = |reason: String| Error::CorruptElf {
            path: path.into(),
            reason,
        };
        let parsed = Parsed::new(&bytes).map_err(corrupt)?;
        let Parsed {
            is_dyn,
            entry,
            interpreter,
            segments,
            sections,
            raw_symbols,
        } = parsed;
        let own = SymbolIndex::new(raw_symbols);
        let build_id = sections
            .iter()
            .filter(|s| s.kind == section_header::SHT_NOTE)
            .find_map(|s| debugfile::parse_build_id(section_bytes(&bytes, s).ok()?));
        let debuglink = sections
            .iter()
            .find(|s| s.name == ".gnu_debuglink")
            .and_then(|s| DebugLink::parse(section_bytes(&bytes, s).ok()?));
        Ok(ElfFile {
            path: path.into(),
            bytes,
            is_dyn,
            entry,
            interpreter,
            segments,
            sections,
            own,
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
        let data = self.section_data(".eh_frame").ok()?;
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

    /// The call frame rule for the code at `addr`: from `.eh_frame`, else
    /// from `.debug_frame` (the file's own, or its separate debug file's).
    /// None where no FDE covers `addr` or the CFI does not parse. The first
    /// call indexes the FDEs; rules are kept per address (see
    /// [`super::cfi`]).
    pub fn frame_rule(&self, addr: LinkAddr) -> Option<Arc<FrameRule>> {
        let eh = || self.eh_frame_section();
        let debug = || {
            let data = self.section_data(".debug_frame").ok()?;
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
                            debugfile::parse_build_id(section_bytes(&debug.bytes, s).ok()?)
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
        let refs = self.code_refs.get_or_init(|| self.scan_code_refs());
        let (lo, hi) = (from.get(), to.get());
        let i = refs.partition_point(|&(t, _)| t <= lo);
        refs.get(i)
            .filter(|&&(t, _)| t < hi)
            .map(|&(t, at)| (LinkAddr(at), LinkAddr(t)))
    }

    fn scan_code_refs(&self) -> Vec<(u64, u64)> {
        use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind};
        let mut refs = Vec::new();
        let exec: Vec<&Segment> = self.segments.iter().filter(|s| s.exec).collect();
        let in_code = |a: u64| {
            exec.iter()
                .any(|s| a >= s.vaddr.get() && a - s.vaddr.get() < s.memsz)
        };
        for seg in &exec {
            let start = seg.offset.get() as usize;
            let Some(code) = self
                .bytes
                .get(start..start.saturating_add(seg.filesz as usize))
            else {
                continue;
            };
            let mut decoder = Decoder::with_ip(64, code, seg.vaddr.get(), DecoderOptions::NONE);
            let mut insn = Instruction::default();
            while decoder.can_decode() {
                decoder.decode_out(&mut insn);
                if insn.is_invalid() {
                    continue;
                }
                let target = match insn.op0_kind() {
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                        Some(insn.near_branch_target())
                    }
                    _ if insn.is_ip_rel_memory_operand() => Some(insn.ip_rel_memory_address()),
                    _ => None,
                };
                if let Some(t) = target.filter(|&t| in_code(t)) {
                    refs.push((t, insn.ip()));
                }
            }
        }
        refs.sort_unstable();
        refs
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
                let raw = parse_symbols(&debug.bytes, &debug.sections).ok()?;
                (!raw.is_empty()).then(|| SymbolIndex::new(raw))
            })
            .as_ref()
    }

    /// The dynamic relocations: every entry of the allocated SHT_RELA sections
    /// (`.rela.dyn`, `.rela.plt`), with the names of their symbols. Parsed on
    /// each call; entries that do not parse are skipped.
    pub fn relocations(&self) -> Vec<Relocation> {
        const RELA_SIZE: usize = 24;
        let mut out = Vec::new();
        for s in &self.sections {
            if s.kind != section_header::SHT_RELA
                || s.flags & u64::from(section_header::SHF_ALLOC) == 0
            {
                continue;
            }
            let Some(table) = file_range(&self.bytes, s.offset, s.size) else {
                continue;
            };
            // The symbol table it refers to, and that table's strings.
            let symtab = self.sections.get(s.link as usize);
            let syms = symtab.and_then(|t| file_range(&self.bytes, t.offset, t.size));
            let strs = symtab
                .and_then(|t| self.sections.get(t.link as usize))
                .and_then(|t| file_range(&self.bytes, t.offset, t.size));
            for e in table.chunks_exact(RELA_SIZE) {
                let u64_at = |o: usize| -> Option<u64> {
                    Some(u64::from_le_bytes(e.get(o..o + 8)?.try_into().ok()?))
                };
                let (Some(offset), Some(info), Some(addend)) = (u64_at(0), u64_at(8), u64_at(16))
                else {
                    continue;
                };
                let index = usize::try_from(info >> 32).unwrap_or(0);
                let symbol = if index == 0 {
                    None
                } else {
                    syms.zip(strs).and_then(|(syms, strs)| {
                        let entry = syms.get(index.checked_mul(SYM_SIZE)?..)?;
                        let name = u32::from_le_bytes(entry.get(..4)?.try_into().ok()?);
                        let full = strtab_get(strs, usize::try_from(name).ok()?)?;
                        Some(full.split('@').next().unwrap_or_default().to_string())
                    })
                };
                out.push(Relocation {
                    offset: LinkAddr(offset),
                    kind: (info & 0xffff_ffff) as u32,
                    symbol,
                    addend: addend as i64,
                });
            }
        }
        out
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
        let table = match self.lines.get_or_init(|| {
            self.parse_lines()
                .map_err(|reason| self.in_debug_file(reason))
        }) {
            Ok(table) => table,
            Err(reason) => {
                return Err(Error::CorruptElf {
                    path: self.path.clone(),
                    reason: reason.clone(),
                })
            }
        };
        let wanted: PathBuf = Path::new(file)
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        let file_matches: Vec<bool> = table
            .files
            .iter()
            .map(|f| !wanted.as_os_str().is_empty() && f.ends_with(&wanted))
            .collect();
        /// Where a row's code belongs: its function, else its sequence.
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        enum Owner {
            Function(LinkAddr),
            Sequence(u32),
        }
        let mut first_by_owner: HashMap<Owner, u64> = HashMap::new();
        let mut lines_with_code: Vec<u32> = Vec::new();
        for row in table.rows.iter().filter(|r| r.stmt && r.line != 0) {
            let is_file = file_matches
                .get(row.file as usize)
                .copied()
                .unwrap_or(false);
            let addr = LinkAddr(row.addr);
            if !is_file || !self.is_code(addr) {
                continue;
            }
            if row.line != line {
                lines_with_code.push(row.line);
                continue;
            }
            let owner = match self.function_at(addr) {
                Some((f, _)) => Owner::Function(f.addr),
                None => Owner::Sequence(row.seq),
            };
            first_by_owner
                .entry(owner)
                .and_modify(|a| *a = (*a).min(row.addr))
                .or_insert(row.addr);
        }
        let mut addrs: Vec<LinkAddr> = first_by_owner.into_values().map(LinkAddr).collect();
        addrs.sort_unstable();
        addrs.dedup();
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        if lines_with_code.is_empty() {
            return Err(Error::NoLineInfo {
                file: file.to_string(),
                line,
                searched: Vec::new(),
                unbuilt: None,
            });
        }
        lines_with_code.sort_unstable();
        lines_with_code.dedup();
        Err(Error::NoCodeAtLine {
            file: file.to_string(),
            line,
            nearest: nearest_lines(&lines_with_code, line),
        })
    }

    /// The contents of the DWARF section called `name` (`.debug_info`, …): empty
    /// when it is absent, an error when it cannot be used (see `section_data`).
    pub(crate) fn debug_section(&self, name: &str) -> std::result::Result<&[u8], String> {
        self.section_data(name)
    }

    /// The source file and line of the instruction at `addr`, when a line
    /// table row starts exactly there (function entries and line starts do).
    /// Parses the line table on first use, like [`ElfFile::line_addresses`].
    pub fn line_of(&self, addr: LinkAddr) -> Option<(PathBuf, u32)> {
        let table = self
            .lines
            .get_or_init(|| self.parse_lines())
            .as_ref()
            .ok()?;
        let row = table
            .rows
            .iter()
            .find(|r| r.stmt && r.line != 0 && r.addr == addr.get())?;
        Some((table.files.get(row.file as usize)?.clone(), row.line))
    }

    /// The source file and line of the code at `addr`: the last row at or
    /// before it in the line-table sequence that covers it, as `addr2line`
    /// answers. None without a line table, outside every sequence, or in code
    /// that has no line (line 0). Parses the line table on first use; each
    /// call after that is two binary searches.
    pub fn line_at(&self, addr: LinkAddr) -> Option<(&Path, u32)> {
        let table = self
            .lines
            .get_or_init(|| self.parse_lines())
            .as_ref()
            .ok()?;
        let a = addr.get();
        let i = table.sequences.partition_point(|s| s.start <= a);
        // Sequences do not overlap in a linked file, but a corrupt or unusual
        // one may nest them: the nearest few that start before `a` are tried.
        let candidates = table.sequences.get(i.saturating_sub(4)..i)?;
        let seq = candidates.iter().rev().find(|s| a < s.end)?;
        let rows = table.rows.get(seq.first..seq.last)?;
        let k = rows.partition_point(|r| r.addr <= a);
        let row = rows.get(k.checked_sub(1)?)?;
        if row.line == 0 {
            return None;
        }
        Some((table.files.get(row.file as usize)?.as_path(), row.line))
    }

    /// The contents of the section called `name`: empty when it is absent or has no
    /// file bytes, an error when it cannot be inflated or lies outside the file.
    ///
    /// A DWARF section (`.debug_*`) of a file without DWARF of its own comes from
    /// its separate debug file, when there is one.
    fn section_data(&self, name: &str) -> std::result::Result<&[u8], String> {
        if name.starts_with(".debug_") && !has_dwarf(&self.sections) {
            return match self.debug_file() {
                Some(debug) => find_section_data(&debug.bytes, &debug.sections, name)
                    .map_err(|e| format!("{}: {e}", debug.path.display())),
                None => Ok(&[]),
            };
        }
        find_section_data(&self.bytes, &self.sections, name)
    }

    /// Parses every line program reachable from `.debug_info`'s units.
    fn parse_lines(&self) -> std::result::Result<LineTable, String> {
        use gimli::{EndianSlice, LittleEndian};

        let load = |id: gimli::SectionId| -> std::result::Result<_, String> {
            Ok(EndianSlice::new(
                self.section_data(id.name())?,
                LittleEndian,
            ))
        };
        let dwarf = gimli::Dwarf::load(load)?;
        let dwarf_err = |e: gimli::Error| format!("DWARF: {e}");

        let mut table = LineTable::default();
        let mut interned: HashMap<PathBuf, u32> = HashMap::new();
        let mut seq: u32 = 0;
        let mut units = dwarf.units();
        while let Some(header) = units.next().map_err(dwarf_err)? {
            let unit = dwarf.unit(header).map_err(dwarf_err)?;
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            // File index → interned id, per unit (indices are per line program).
            let mut unit_files: HashMap<u64, u32> = HashMap::new();
            let mut rows = program.rows();
            // Where the current sequence's rows begin in `table.rows`.
            let mut first = table.rows.len();
            while let Some((header, row)) = rows.next_row().map_err(dwarf_err)? {
                if row.end_sequence() {
                    let start = table.rows.get(first).map(|r| r.addr);
                    if let Some(start) = start.filter(|&a| self.is_code(LinkAddr(a))) {
                        table.sequences.push(LineSequence {
                            start,
                            end: row.address(),
                            first,
                            last: table.rows.len(),
                        });
                    }
                    first = table.rows.len();
                    seq = seq.wrapping_add(1);
                    continue;
                }
                let line = row
                    .line()
                    .map_or(0, |l| u32::try_from(l.get()).unwrap_or(0));
                let file = match unit_files.get(&row.file_index()) {
                    Some(&id) => id,
                    None => {
                        let path = match row.file(header) {
                            Some(entry) => file_path(&dwarf, &unit, header, entry)?,
                            None => PathBuf::new(),
                        };
                        let next = u32::try_from(table.files.len())
                            .map_err(|_| "too many source files".to_string())?;
                        let id = *interned.entry(path.clone()).or_insert(next);
                        if id == next {
                            table.files.push(path);
                        }
                        unit_files.insert(row.file_index(), id);
                        id
                    }
                };
                table.rows.push(LineRow {
                    file,
                    line,
                    addr: row.address(),
                    seq,
                    stmt: row.is_stmt(),
                });
            }
            // A sequence never spans units, even if a program forgets its end.
            seq = seq.wrapping_add(1);
        }
        table.sequences.sort_by_key(|s| (s.start, s.end));
        Ok(table)
    }
}

/// The lines of `sorted` (ascending, unique, without `line`) to suggest for
/// `line`: the nearest before and the nearest after; when one side has none, the
/// two nearest on the other side.
fn nearest_lines(sorted: &[u32], line: u32) -> Vec<u32> {
    let split = sorted.partition_point(|&l| l < line);
    let (before, after) = sorted.split_at(split);
    match (before, after) {
        ([.., b], [a, ..]) => vec![*b, *a],
        ([], after) => after.iter().take(2).copied().collect(),
        (before, []) => before.iter().rev().take(2).rev().copied().collect(),
    }
}

/// True when `sections` hold DWARF: a `.debug_info` or `.debug_line` (or their
/// `.zdebug_` forms) with contents in the file.
fn has_dwarf(sections: &[Section]) -> bool {
    sections.iter().any(|s| {
        matches!(
            s.name.as_str(),
            ".debug_info" | ".debug_line" | ".zdebug_info" | ".zdebug_line"
        ) && s.kind != section_header::SHT_NOBITS
            && s.size > 0
    })
}

/// The contents of the section called `name` in a file's `bytes`: empty when it
/// is absent or has no file bytes; inflated when it is compressed, either way.
fn find_section_data<'a>(
    bytes: &'a [u8],
    sections: &'a [Section],
    name: &str,
) -> std::result::Result<&'a [u8], String> {
    if let Some(section) = sections.iter().find(|s| s.name == name) {
        return section_bytes(bytes, section);
    }
    // `.zdebug_*`: the pre-SHF_COMPRESSED GNU convention.
    let zname = name.strip_prefix('.').map(|n| format!(".z{n}"));
    match sections.iter().find(|s| Some(&s.name) == zname.as_ref()) {
        Some(section) => section_bytes(bytes, section),
        None => Ok(&[]),
    }
}

/// Sizeof(Elf64_Chdr): `ch_type u32, ch_reserved u32, ch_size u64, ch_addralign u64`.
const CHDR_SIZE: usize = 24;
/// `ELFCOMPRESS_ZLIB`.
const ELFCOMPRESS_ZLIB: u32 = 1;
/// The largest inflated section accepted: a corrupt header must not make us
/// allocate without bound.
const MAX_INFLATED: u64 = 1 << 32;

/// The bytes of `section` (empty for SHT_NOBITS), inflated when it is compressed
/// (`SHF_COMPRESSED` with zlib, or a `.zdebug_*` section) and kept inflated in
/// the section.
fn section_bytes<'a>(
    bytes: &'a [u8],
    section: &'a Section,
) -> std::result::Result<&'a [u8], String> {
    if section.kind == section_header::SHT_NOBITS {
        return Ok(&[]);
    }
    let name = &section.name;
    let raw = file_range(bytes, section.offset, section.size)
        .ok_or_else(|| format!("{name} extends past the end of the file"))?;
    let compressed = section.flags & u64::from(section_header::SHF_COMPRESSED) != 0;
    let gnu_zdebug = name.starts_with(".zdebug_");
    if !compressed && !gnu_zdebug {
        return Ok(raw);
    }
    let inflated = section.inflated.get_or_init(|| {
        let (size, stream) = if compressed {
            let u32_at = |o: usize| {
                raw.get(o..o + 4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
            };
            let ch_type =
                u32_at(0).ok_or_else(|| format!("{name}: truncated compression header"))?;
            if ch_type != ELFCOMPRESS_ZLIB {
                return Err(format!(
                    "{name} is compressed with method {ch_type} (only zlib is supported); \
                     relink with --compress-debug-sections=zlib or none"
                ));
            }
            let size = raw
                .get(8..16)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
                .ok_or_else(|| format!("{name}: truncated compression header"))?;
            (size, raw.get(CHDR_SIZE..).unwrap_or_default())
        } else {
            // "ZLIB", the inflated size as a big-endian u64, a zlib stream.
            let size = match (raw.get(..4), raw.get(4..12)) {
                (Some(b"ZLIB"), Some(size)) => {
                    u64::from_be_bytes(size.try_into().unwrap_or_default())
                }
                _ => return Err(format!("{name}: bad .zdebug header")),
            };
            (size, raw.get(12..).unwrap_or_default())
        };
        if size > MAX_INFLATED {
            return Err(format!("{name}: inflated size {size} is too large"));
        }
        let limit = usize::try_from(size).map_err(|_| format!("{name}: too large"))?;
        let out = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(stream, limit)
            .map_err(|e| format!("{name}: cannot inflate: {:?}", e.status))?;
        if out.len() != limit {
            return Err(format!(
                "{name}: inflated to {} bytes, the header says {size}",
                out.len()
            ));
        }
        Ok(out)
    });
    inflated.as_deref().map_err(Clone::clone)
}

impl DebugFile {
    /// Parses the header and section headers of a candidate debug file; `None`
    /// when it is not a well-formed x86-64 ELF file (the candidate is then
    /// passed over, like one that does not exist).
    fn parse(path: &Path, bytes: Vec<u8>) -> Option<DebugFile> {
        if bytes.get(..4) != Some(&ELF_MAGIC[..])
            || bytes.get(header::EI_CLASS) != Some(&header::ELFCLASS64)
            || bytes.get(header::EI_DATA) != Some(&header::ELFDATA2LSB)
        {
            return None;
        }
        let hdr: Header = goblin::elf::Elf::parse_header(&bytes).ok()?;
        if hdr.e_machine != header::EM_X86_64 {
            return None;
        }
        let ctx = Ctx::new(Container::Big, Endian::Little);
        let sections = parse_sections(&bytes, &hdr, ctx).ok()?;
        Some(DebugFile {
            path: path.to_path_buf(),
            sections: sections.into_iter().map(|(s, _)| s).collect(),
            bytes,
        })
    }
}

/// The full path of a line program's file entry: the unit's compilation directory,
/// then the entry's include directory (unless it is directory 0, the
/// compilation directory), then its name, each replacing what came before when
/// it is absolute (as `addr2line` and gdb render it).
fn file_path<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    header: &gimli::LineProgramHeader<R>,
    entry: &gimli::FileEntry<R>,
) -> std::result::Result<PathBuf, String> {
    let string = |attr| -> std::result::Result<String, String> {
        let r = dwarf
            .attr_string(unit, attr)
            .map_err(|e| format!("DWARF: {e}"))?;
        let s = r.to_string_lossy().map_err(|e| format!("DWARF: {e}"))?;
        Ok(s.into_owned())
    };
    let mut path = PathBuf::new();
    if let Some(comp_dir) = &unit.comp_dir {
        path.push(
            comp_dir
                .to_string_lossy()
                .map_err(|e| format!("DWARF: {e}"))?
                .as_ref(),
        );
    }
    // Directory 0 is the compilation directory itself (DWARF 5 lists it
    // again as entry 0; gimli hands back DW_AT_comp_dir for it in DWARF 4):
    // pushed twice, a relative one (`./stdio-common`, as Debian's
    // -fdebug-prefix-map leaves it) would be doubled.
    if entry.directory_index() != 0 {
        if let Some(dir) = entry.directory(header) {
            path.push(string(dir)?);
        }
    }
    path.push(string(entry.path_name())?);
    Ok(path)
}

/// What [`ElfFile::parse`] extracts from the headers, before indexing.
struct Parsed {
    is_dyn: bool,
    entry: LinkAddr,
    interpreter: Option<String>,
    segments: Vec<Segment>,
    sections: Vec<Section>,
    raw_symbols: Vec<RawSym>,
}

impl Parsed {
    /// Reads the headers and symbol tables of `bytes` (which start with the magic).
    /// Errors are reasons for [`Error::CorruptElf`].
    fn new(bytes: &[u8]) -> std::result::Result<Parsed, String> {
        let ident = |i: usize| bytes.get(i).copied();
        if ident(header::EI_CLASS) != Some(header::ELFCLASS64) {
            return Err("not a 64-bit ELF file; rtrace supports x86-64 only".into());
        }
        if ident(header::EI_DATA) != Some(header::ELFDATA2LSB) {
            return Err("not a little-endian ELF file; rtrace supports x86-64 only".into());
        }
        let hdr: Header = goblin::elf::Elf::parse_header(bytes).map_err(|e| e.to_string())?;
        if hdr.e_machine != header::EM_X86_64 {
            return Err(format!(
                "machine is {}, not x86-64",
                header::machine_to_str(hdr.e_machine)
            ));
        }
        let is_dyn = match hdr.e_type {
            header::ET_DYN => true,
            header::ET_EXEC => false,
            other => {
                return Err(format!(
                    "{} is not an executable or shared object",
                    header::et_to_str(other)
                ))
            }
        };
        let ctx = Ctx::new(Container::Big, Endian::Little);

        if hdr.e_phnum > 0 && usize::from(hdr.e_phentsize) != ProgramHeader::size(ctx) {
            return Err(format!("bad program header size {}", hdr.e_phentsize));
        }
        let phoff = usize::try_from(hdr.e_phoff).map_err(|_| "program headers out of range")?;
        let phdrs = ProgramHeader::parse(bytes, phoff, usize::from(hdr.e_phnum), ctx)
            .map_err(|e| format!("program headers: {e}"))?;
        let mut segments = Vec::new();
        let mut interpreter = None;
        for ph in &phdrs {
            let file_range = file_range(bytes, ph.p_offset, ph.p_filesz);
            match ph.p_type {
                program_header::PT_LOAD => {
                    if file_range.is_none() {
                        return Err(format!(
                            "PT_LOAD at offset {:#x} extends past the end of the file",
                            ph.p_offset
                        ));
                    }
                    if ph.p_filesz > ph.p_memsz {
                        return Err(format!(
                            "PT_LOAD at {:#x} has more file bytes than memory",
                            ph.p_vaddr
                        ));
                    }
                    segments.push(Segment {
                        vaddr: LinkAddr(ph.p_vaddr),
                        memsz: ph.p_memsz,
                        offset: FileOffset(ph.p_offset),
                        filesz: ph.p_filesz,
                        exec: ph.p_flags & program_header::PF_X != 0,
                    });
                }
                program_header::PT_INTERP => {
                    let raw = file_range.ok_or("PT_INTERP extends past the end of the file")?;
                    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
                    interpreter = Some(String::from_utf8_lossy(raw).into_owned());
                }
                _ => {}
            }
        }

        let sections: Vec<Section> = parse_sections(bytes, &hdr, ctx)?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let raw_symbols = parse_symbols(bytes, &sections)?;
        Ok(Parsed {
            is_dyn,
            entry: LinkAddr(hdr.e_entry),
            interpreter,
            segments,
            sections,
            raw_symbols,
        })
    }
}

/// `bytes[offset..offset + len]`, when it is all in the file.
fn file_range(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// The NUL-terminated string at `offset` in a string table (lossily decoded: one bad
/// name must not cost the whole table).
fn strtab_get(strtab: &[u8], offset: usize) -> Option<String> {
    let tail = strtab.get(offset..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(tail.get(..end)?).into_owned())
}

/// The section headers with their names, each with its `sh_link`.
fn parse_sections(
    bytes: &[u8],
    hdr: &Header,
    ctx: Ctx,
) -> std::result::Result<Vec<(Section, u32)>, String> {
    if hdr.e_shoff == 0 {
        // No section header table: legal (sstrip'ed files); no symbols then.
        return Ok(Vec::new());
    }
    if usize::from(hdr.e_shentsize) != SectionHeader::size(ctx) {
        return Err(format!("bad section header size {}", hdr.e_shentsize));
    }
    let shoff = usize::try_from(hdr.e_shoff).map_err(|_| "section headers out of range")?;
    let shdrs = SectionHeader::parse(bytes, shoff, usize::from(hdr.e_shnum), ctx)
        .map_err(|e| format!("section headers: {e}"))?;
    // With many sections the real index lives in the first header's sh_link.
    let shstrndx = match u32::from(hdr.e_shstrndx) {
        section_header::SHN_XINDEX => shdrs.first().map_or(0, |s| s.sh_link),
        n => n,
    };
    let shstrtab = match shdrs.get(shstrndx as usize) {
        Some(s) if shstrndx != section_header::SHN_UNDEF => {
            file_range(bytes, s.sh_offset, s.sh_size)
                .ok_or("the section name table extends past the end of the file")?
        }
        _ => &[],
    };
    shdrs
        .iter()
        .map(|s| {
            if s.sh_type != section_header::SHT_NOBITS
                && file_range(bytes, s.sh_offset, s.sh_size).is_none()
            {
                return Err(format!(
                    "section at offset {:#x} extends past the end of the file",
                    s.sh_offset
                ));
            }
            let name = strtab_get(shstrtab, s.sh_name).unwrap_or_default();
            Ok((
                Section {
                    name,
                    kind: s.sh_type,
                    flags: s.sh_flags,
                    addr: s.sh_addr,
                    offset: s.sh_offset,
                    size: s.sh_size,
                    inflated: OnceLock::new(),
                    link: s.sh_link,
                },
                s.sh_link,
            ))
        })
        .collect()
}

/// The defined, named symbols of `.symtab` and `.dynsym`.
fn parse_symbols(bytes: &[u8], sections: &[Section]) -> std::result::Result<Vec<RawSym>, String> {
    /// SHT_GNU_versym: one u16 per .dynsym entry, bit 15 set for a version
    /// that is not the default one (`name@VER`, kept for old binaries).
    const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;
    let mut out = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        if section.kind != section_header::SHT_SYMTAB && section.kind != section_header::SHT_DYNSYM
        {
            continue;
        }
        let versym = sections
            .iter()
            .find(|v| v.kind == SHT_GNU_VERSYM && v.link as usize == index)
            .and_then(|v| file_range(bytes, v.offset, v.size))
            .unwrap_or_default();
        let table = file_range(bytes, section.offset, section.size)
            .ok_or_else(|| format!("{} extends past the end of the file", section.name))?;
        let strtab = match sections.get(section.link as usize) {
            Some(s) => file_range(bytes, s.offset, s.size).ok_or_else(|| {
                format!("{}'s strings extend past the end of the file", section.name)
            })?,
            None => return Err(format!("{} links to a missing string table", section.name)),
        };
        for (i, entry) in table.chunks_exact(SYM_SIZE).enumerate() {
            if let Some(mut raw) = parse_sym(entry, strtab) {
                if let Some(v) = versym.get(2 * i..2 * i + 2) {
                    raw.hidden |= u16::from_le_bytes([v[0], v[1]]) & 0x8000 != 0;
                }
                out.push(raw);
            }
        }
    }
    Ok(out)
}

/// One Elf64_Sym: `st_name u32, st_info u8, st_other u8, st_shndx u16,
/// st_value u64, st_size u64`. Undefined, unnamed, section, file and TLS symbols
/// (whose value is not an address) are dropped.
fn parse_sym(entry: &[u8], strtab: &[u8]) -> Option<RawSym> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(entry.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(entry.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(entry.get(o..o + 8)?.try_into().ok()?));
    let st_name = u32_at(0)?;
    let st_info = *entry.get(4)?;
    let st_shndx = u16_at(6)?;
    let st_value = u64_at(8)?;
    let st_size = u64_at(16)?;
    if u32::from(st_shndx) == section_header::SHN_UNDEF {
        return None;
    }
    let kind = match sym::st_type(st_info) {
        sym::STT_FUNC => SymKind::Func,
        sym::STT_GNU_IFUNC => SymKind::IFunc,
        sym::STT_SECTION | sym::STT_FILE | sym::STT_TLS => return None,
        _ => SymKind::Other,
    };
    if kind.is_function() && st_value == 0 {
        return None;
    }
    let full = strtab_get(strtab, usize::try_from(st_name).ok()?)?;
    // `memcpy@@GLIBC_2.14`, `memcpy@GLIBC_2.2.5`: the version is not part of
    // the name, but a single `@` marks a version that is not the default.
    let hidden = full.contains('@') && !full.contains("@@");
    let name = match full.split_once('@') {
        Some((base, _)) => base.to_string(),
        None => full,
    };
    if name.is_empty() {
        return None;
    }
    Some(RawSym {
        sym: Symbol {
            name,
            addr: LinkAddr(st_value),
            size: st_size,
            kind,
        },
        bind: sym::st_bind(st_info),
        hidden,
    })
}

/// Builds the two indices: functions by address (one per address) and every
/// symbol by name.
fn index_symbols(raw: Vec<RawSym>) -> (Vec<Symbol>, Vec<Symbol>) {
    let mut funcs: Vec<&RawSym> = raw.iter().filter(|r| r.sym.kind.is_function()).collect();
    funcs.sort_by(|a, b| {
        (a.sym.addr, bind_rank(a.bind), a.sym.name.len(), &a.sym.name).cmp(&(
            b.sym.addr,
            bind_rank(b.bind),
            b.sym.name.len(),
            &b.sym.name,
        ))
    });
    let mut functions: Vec<Symbol> = Vec::new();
    for r in funcs {
        match functions.last_mut() {
            Some(last) if last.addr == r.sym.addr => {
                // An alias: keep the preferred name, but learn a size it lacked.
                if last.size == 0 {
                    last.size = r.sym.size;
                }
            }
            _ => functions.push(r.sym.clone()),
        }
    }
    // By name, the default version first: `pthread_cond_signal` is the
    // `@@GLIBC_2.3.2` one the linker binds, not the old `@GLIBC_2.2.5` copy
    // at a lower address.
    let mut raw = raw;
    raw.sort_by(|a, b| {
        (&a.sym.name, a.hidden, a.sym.addr, a.sym.size).cmp(&(
            &b.sym.name,
            b.hidden,
            b.sym.addr,
            b.sym.size,
        ))
    });
    let mut by_name: Vec<Symbol> = raw.into_iter().map(|r| r.sym).collect();
    // The same symbol in .symtab and .dynsym.
    by_name.dedup_by(|a, b| a.name == b.name && a.addr == b.addr && a.kind == b.kind);
    (functions, by_name)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::test_support::{compile, compile_in, temp_dir, LINES_C};

    const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";
    /// A small real executable, for the corruption tests.
    const SMALL: &str = "/bin/true";

    /// A function of this test binary, to find in its own symbol table (by the
    /// mangled name's substring: `no_mangle` is refused under `deny(unsafe_code)`).
    #[inline(never)]
    fn rtrace_elf_test_marker(x: u64) -> u64 {
        x.wrapping_mul(3)
    }

    fn open(path: &str) -> ElfFile {
        ElfFile::open(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn assert_sorted_unique(functions: &[Symbol]) {
        assert!(!functions.is_empty());
        assert!(
            functions.windows(2).all(|w| w[0].addr < w[1].addr),
            "functions must be sorted by address, one per address"
        );
        assert!(functions
            .iter()
            .all(|f| f.kind.is_function() && f.addr.get() != 0));
    }

    #[test]
    fn own_executable() {
        let elf = open("/proc/self/exe");
        assert_sorted_unique(elf.functions());
        assert_eq!(elf.interpreter(), Some(LD_SO));
        let marker = elf
            .functions()
            .iter()
            .find(|f| f.name.contains("rtrace_elf_test_marker"))
            .expect("marker");
        assert_eq!(marker.kind, SymKind::Func);
        assert!(marker.size > 0);
        let (f, off) = elf.function_at(marker.addr.offset(1)).expect("inside");
        assert_eq!((f, off), (marker, 1));
        let code = elf
            .bytes_at(marker.addr, marker.size as usize)
            .expect("code");
        assert_eq!(code.len() as u64, marker.size);
        assert!(elf.is_code(marker.addr));
        // Its bytes are where the segment table says.
        let seg = elf
            .segments()
            .iter()
            .find(|s| s.contains(marker.addr))
            .expect("seg");
        let file_off = seg.offset.get() + (marker.addr.get() - seg.vaddr.get());
        assert_eq!(
            elf.link_addr_of_offset(FileOffset(file_off)),
            Some(marker.addr)
        );
        assert_eq!(
            elf.offset_of_link_addr(marker.addr),
            Some(FileOffset(file_off))
        );
        assert_eq!(elf.offset_of_link_addr(LinkAddr(u64::MAX)), None);
        let f: fn(u64) -> u64 = rtrace_elf_test_marker;
        assert_eq!(std::hint::black_box(f)(1), 3);
    }

    #[test]
    fn libc_symbols() {
        let elf = open(LIBC);
        assert!(elf.is_dyn());
        assert_sorted_unique(elf.functions());
        let openat = elf.symbols_named("openat");
        assert!(!openat.is_empty());
        assert!(openat.iter().all(|s| s.name == "openat"));
        assert!(openat.iter().any(|s| s.kind == SymKind::Func));
        // Aliases are all findable by name, even if `functions` lists another name.
        for name in ["getpid", "__getpid", "write", "__write", "malloc", "printf"] {
            assert!(elf.function_named(name).is_some(), "{name}");
        }
        // glibc's string functions are IFUNCs.
        assert_eq!(
            elf.function_named("strlen").map(|s| s.kind),
            Some(SymKind::IFunc)
        );
        // Versioned names are stripped.
        assert!(elf.symbols().iter().all(|s| !s.name.contains('@')));
        assert!(elf.symbols_named("no_such_symbol_here").is_empty());
        // The first PT_LOAD of a shared object maps offset 0 at address 0.
        assert_eq!(elf.link_addr_of_offset(FileOffset(0)), Some(LinkAddr(0)));
        // function_at is consistent with the function list.
        for f in elf.functions().iter().step_by(97) {
            let (g, off) = elf.function_at(f.addr).expect("its own start");
            assert_eq!((g.addr, off), (f.addr, 0));
        }
    }

    #[test]
    fn dynamic_linker_debug_symbols() {
        let elf = open(LD_SO);
        assert!(elf.is_dyn());
        assert!(elf.interpreter().is_none());
        let state = elf.symbols_named("_dl_debug_state");
        assert!(state.iter().any(|s| s.kind == SymKind::Func), "{state:?}");
        let r_debug = elf.symbols_named("_r_debug");
        assert!(
            r_debug.iter().any(|s| s.kind == SymKind::Other),
            "{r_debug:?}"
        );
        assert_ne!(elf.entry(), LinkAddr(0));
    }

    #[test]
    fn bytes_at_stays_in_file_part() {
        let elf = open(SMALL);
        let seg = *elf.segments().last().expect("segments");
        let end = seg.vaddr.get() + seg.filesz;
        assert!(elf.bytes_at(LinkAddr(end - 1), 1).is_some());
        assert!(elf.bytes_at(LinkAddr(end - 1), 2).is_none());
        assert!(elf.bytes_at(LinkAddr(u64::MAX), 2).is_none());
        assert!(elf
            .bytes_at(LinkAddr(seg.vaddr.get()), usize::MAX)
            .is_none());
        assert!(elf.link_addr_of_offset(FileOffset(u64::MAX)).is_none());
        assert!(elf.function_at(LinkAddr(u64::MAX)).is_none());
        assert!(elf.function_at(LinkAddr(0)).is_none());
    }

    #[test]
    fn version_suffixes_and_aliases_in_symtab() {
        // A .symver'ed definition appears in .symtab as `name@VERSION`.
        let dir = temp_dir("symver");
        std::fs::write(dir.join("v.map"), "V_1 { global: vfun; local: *; };\n").unwrap();
        let src = "\
int vfun_impl(void) { return 1; }
__asm__(\".symver vfun_impl, vfun@@V_1\");
int helper(void) { return 2; }
int alias_helper(void) __attribute__((weak, alias(\"helper\")));
";
        let so = compile_in(
            &dir,
            "v.c",
            src,
            &["-shared", "-fPIC", "-Wl,--version-script=v.map"],
        );
        let elf = ElfFile::open(&so).expect("parse .so");
        assert!(elf.function_named("vfun").is_some(), "{:?}", elf.symbols());
        assert!(elf.symbols().iter().all(|s| !s.name.contains('@')));
        // Two names at one address: the global one wins in `functions`.
        let helper = elf.function_named("helper").expect("helper");
        let alias = elf.function_named("alias_helper").expect("alias");
        assert_eq!(helper.addr, alias.addr);
        let (f, _) = elf.function_at(helper.addr).expect("at helper");
        assert_eq!(f.name, "helper");
    }

    #[test]
    fn the_default_version_of_a_name_wins() {
        // vfun@V_1 (an old copy, at the lower address) and vfun@@V_2 (the
        // default, what a program links to), in .symtab and in .dynsym.
        let dir = temp_dir("symver2");
        std::fs::write(
            dir.join("v.map"),
            "V_1 { global: vfun; local: *; };\nV_2 { global: vfun; } V_1;\n",
        )
        .unwrap();
        let src = "\
int vfun_old(void) { return 1; }
__asm__(\".symver vfun_old, vfun@V_1\");
int vfun_new(void) { return 2; }
__asm__(\".symver vfun_new, vfun@@V_2\");
";
        let so = compile_in(
            &dir,
            "v.c",
            src,
            &["-shared", "-fPIC", "-Wl,--version-script=v.map"],
        );
        for stripped in [false, true] {
            let path = if stripped {
                let out = dir.join("v-stripped.so");
                let ok = std::process::Command::new("strip")
                    .arg("-o")
                    .arg(&out)
                    .arg(&so)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
                out
            } else {
                so.clone()
            };
            let elf = ElfFile::open(&path).expect("parse .so");
            let new = elf.function_named("vfun_new").map(|s| s.addr);
            let chosen = elf.function_named("vfun").expect("vfun").addr;
            if stripped {
                // Only .dynsym is left: the two copies, told apart by .gnu.version.
                let copies: Vec<_> = elf.symbols().iter().filter(|s| s.name == "vfun").collect();
                assert_eq!(copies.len(), 2, "{copies:?}");
                let high = copies.iter().map(|s| s.addr).max().unwrap();
                assert_eq!(chosen, high, "the default version is the second copy");
            } else {
                assert_eq!(Some(chosen), new, "{:?}", elf.symbols());
            }
        }
        // The same in libc, for a name with a compat version.
        let libc = ElfFile::open(Path::new("/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
        let out = std::process::Command::new("nm")
            .args(["-D", "/lib/x86_64-linux-gnu/libc.so.6"])
            .output()
            .unwrap();
        let default = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.ends_with(" pthread_cond_signal@@GLIBC_2.3.2"))
            .and_then(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
            .expect("pthread_cond_signal@@GLIBC_2.3.2 in nm -D");
        assert_eq!(
            libc.function_named("pthread_cond_signal").unwrap().addr,
            LinkAddr(default)
        );
    }

    fn corrupt_or_not_elf(r: Result<ElfFile>) -> bool {
        matches!(r, Err(Error::CorruptElf { .. }) | Err(Error::NotElf { .. }))
    }

    #[test]
    fn non_elf_inputs() {
        let p = Path::new("/x");
        assert!(matches!(
            ElfFile::parse(p, vec![]),
            Err(Error::NotElf { .. })
        ));
        assert!(matches!(
            ElfFile::parse(p, b"hello".to_vec()),
            Err(Error::NotElf { .. })
        ));
        assert!(matches!(
            ElfFile::parse(p, b"\x7fEL".to_vec()),
            Err(Error::NotElf { .. })
        ));
        assert!(matches!(
            ElfFile::parse(p, b"\x7fELF".to_vec()),
            Err(Error::CorruptElf { .. })
        ));
        // open() refuses on the magic alone, and reports missing files as I/O errors.
        let dir = temp_dir("notelf");
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(ElfFile::open(&empty), Err(Error::NotElf { .. })));
        let text = dir.join("text");
        std::fs::write(&text, b"hello, world").unwrap();
        assert!(matches!(ElfFile::open(&text), Err(Error::NotElf { .. })));
        assert!(matches!(
            ElfFile::open(&dir.join("missing")),
            Err(Error::Io { .. })
        ));
        assert!(matches!(ElfFile::open(&dir), Err(Error::Io { .. })));
    }

    #[test]
    fn other_architectures_are_refused() {
        let mut bytes = std::fs::read(SMALL).unwrap();
        bytes[4] = 1; // ELFCLASS32
        assert!(matches!(ElfFile::parse(Path::new("/x"), bytes.clone()),
            Err(Error::CorruptElf { reason, .. }) if reason.contains("64-bit")));
        bytes[4] = 2;
        bytes[5] = 2; // big-endian
        assert!(matches!(ElfFile::parse(Path::new("/x"), bytes.clone()),
            Err(Error::CorruptElf { reason, .. }) if reason.contains("little-endian")));
        bytes[5] = 1;
        bytes[18] = 183; // EM_AARCH64
        bytes[19] = 0;
        assert!(matches!(ElfFile::parse(Path::new("/x"), bytes.clone()),
            Err(Error::CorruptElf { reason, .. }) if reason.contains("x86-64")));
        bytes[18] = 62;
        bytes[16] = 1; // ET_REL
        assert!(matches!(ElfFile::parse(Path::new("/x"), bytes),
            Err(Error::CorruptElf { reason, .. }) if reason.contains("not an executable")));
    }

    #[test]
    fn truncated_files_are_errors() {
        let full = std::fs::read(SMALL).unwrap();
        assert!(ElfFile::parse(Path::new(SMALL), full.clone()).is_ok());
        let mut lengths: Vec<usize> = vec![20, 64, 100, 1000, full.len() / 2, full.len() - 1];
        lengths.extend((0..2048).step_by(7));
        lengths.extend((2048..full.len()).step_by(331));
        for len in lengths {
            let r = ElfFile::parse(Path::new(SMALL), full[..len].to_vec());
            // The section header table is at the end, so every truncation loses it.
            assert!(corrupt_or_not_elf(r), "truncated at {len}");
        }
    }

    /// A deterministic xorshift generator: reproducible "random" corruption.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Uses every query on a file that parsed, so lazily parsed parts get exercised.
    fn exercise(elf: &ElfFile) {
        for f in elf.functions().iter().take(50) {
            let _ = elf.function_at(f.addr.offset(1));
            let _ = elf.bytes_at(f.addr, f.size.min(4096) as usize);
        }
        let _ = elf.symbols_named("main");
        let _ = elf.link_addr_of_offset(FileOffset(0x1000));
        let _ = elf.line_addresses("x.c", 5);
    }

    #[test]
    fn random_bytes_after_the_magic() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for round in 0..300 {
            let len = (rng.next() % 4096) as usize;
            let mut bytes: Vec<u8> = ELF_MAGIC.to_vec();
            bytes.extend((0..len).map(|_| rng.next() as u8));
            // Half the rounds get a plausible x86-64 header so parsing goes deeper.
            if round % 2 == 0 && bytes.len() >= 20 {
                bytes[4] = 2;
                bytes[5] = 1;
                bytes[16] = 3;
                bytes[18] = 62;
                bytes[19] = 0;
            }
            if let Ok(elf) = ElfFile::parse(Path::new("/random"), bytes) {
                exercise(&elf);
            }
        }
    }

    #[test]
    fn flipped_header_bytes_never_panic() {
        let full = std::fs::read(SMALL).unwrap();
        let shoff = u64::from_le_bytes(full[0x28..0x30].try_into().unwrap()) as usize;
        let mut rng = Rng(42);
        // Every byte of the ELF header and program headers, and of the section
        // header table, set to a few interesting values.
        let targets = (0..0x40 + 13 * 56).chain(shoff..full.len());
        for i in targets {
            for v in [0x00u8, 0xff, 0x7f, rng.next() as u8] {
                let mut bytes = full.clone();
                bytes[i] = v;
                if let Ok(elf) = ElfFile::parse(Path::new(SMALL), bytes) {
                    exercise(&elf);
                }
            }
        }
    }

    /// Where gcc puts the lines of [`LINES_C`] at -O0 without CET (hand-computed
    /// from the code gcc emits; `objdump --dwarf=decodedline` agrees):
    /// - line 4 `{` is `work`'s prologue: `push rbp; mov rbp,rsp; mov [rbp-0x14],edi`
    ///   (1 + 3 + 3 bytes), so line 5 starts 7 bytes in;
    /// - line 10 `{` is `main`'s first instruction.
    fn check_line_table(elf: &ElfFile, file: &str) {
        let work = elf.function_named("work").expect("work").addr;
        let main = elf.function_named("main").expect("main").addr;
        assert_eq!(elf.line_addresses(file, 4).unwrap(), vec![work]);
        assert_eq!(elf.line_addresses(file, 5).unwrap(), vec![work.offset(7)]);
        assert_eq!(elf.line_addresses(file, 10).unwrap(), vec![main]);
        let l12 = elf.line_addresses(file, 12).unwrap();
        assert_eq!(l12.len(), 1);
        let (f, off) = elf.function_at(l12[0]).unwrap();
        assert_eq!(f.name, "main");
        assert!(off > 0);
        // Lines with code: 4 5 6 7, 10, 12 13 14.
        for (no_code, nearest) in [
            (1, vec![4, 5]),
            (2, vec![4, 5]),
            (8, vec![7, 10]),
            (11, vec![10, 12]),
            (15, vec![13, 14]),
            (1000, vec![13, 14]),
        ] {
            match elf.line_addresses(file, no_code) {
                Err(Error::NoCodeAtLine {
                    file: f,
                    line,
                    nearest: n,
                }) => assert_eq!((f.as_str(), line, n), (file, no_code, nearest)),
                other => panic!("line {no_code}: {other:?}"),
            }
        }
    }

    #[test]
    fn no_code_error_names_the_nearest_lines() {
        let e = Error::NoCodeAtLine {
            file: "count.c".into(),
            line: 3,
            nearest: vec![20, 21],
        };
        assert_eq!(
            e.to_string(),
            "no code at count.c:3; nearest lines with code: 20, 21"
        );
        assert!(e.hint().is_none());
        let e = Error::NoCodeAtLine {
            file: "x.c".into(),
            line: 9,
            nearest: vec![4],
        };
        assert_eq!(e.to_string(), "no code at x.c:9; nearest line with code: 4");
        assert_eq!(nearest_lines(&[], 5), Vec::<u32>::new());
        assert_eq!(nearest_lines(&[7], 5), vec![7]);
        assert_eq!(nearest_lines(&[3], 5), vec![3]);
        assert_eq!(nearest_lines(&[1, 2, 3], 5), vec![2, 3]);
        assert_eq!(nearest_lines(&[6, 8, 9], 5), vec![6, 8]);
        assert_eq!(nearest_lines(&[1, 4, 6, 9], 5), vec![4, 6]);
    }

    /// A line of a function inlined into two callers, and a `for` line whose code
    /// is in three places of one function. Line numbers matter.
    const INLINED_C: &str = "\
#include <stdio.h>

static inline __attribute__((always_inline)) int helper(int x)
{
    return x * 3;
}

int first(int x)
{
    return helper(x) + 1;
}

int second(int x)
{
    return helper(x) - 1;
}

int main(void)
{
    int s = 0;
    for (int i = 0; i < 3; i++)
        s += first(i) + second(i);
    printf(\"%d\\n\", s);
    return 0;
}
";

    #[test]
    fn a_line_in_several_functions_gives_one_address_in_each() {
        for opt in ["-O0", "-O1"] {
            let exe = compile("inlined", "x.c", INLINED_C, &[opt, "-g"]);
            let elf = ElfFile::open(&exe).unwrap();
            let addrs = elf.line_addresses("x.c", 5).unwrap();
            let names: Vec<&str> = addrs
                .iter()
                .map(|&a| elf.function_at(a).expect("in a function").0.name.as_str())
                .collect();
            assert_eq!(names, ["first", "second"], "{opt}: {addrs:?}");
        }
        // The `for` line has code for the initialisation, the increment and the
        // test, all in main: one address, the lowest.
        let exe = compile("forline", "x.c", INLINED_C, &["-O0", "-g"]);
        let elf = ElfFile::open(&exe).unwrap();
        let addrs = elf.line_addresses("x.c", 21).unwrap();
        assert_eq!(addrs.len(), 1, "{addrs:?}");
        let main = elf.function_named("main").unwrap();
        let (f, _) = elf.function_at(addrs[0]).unwrap();
        assert_eq!(f, main);
    }

    #[test]
    fn line_table_dwarf5_and_dwarf4() {
        for version in ["-gdwarf-5", "-gdwarf-4"] {
            let exe = compile("lines", "fixtures/x.c", LINES_C, &["-O0", version]);
            let elf = ElfFile::open(&exe).unwrap();
            check_line_table(&elf, "x.c");
            check_line_table(&elf, "fixtures/x.c");
            check_line_table(&elf, "./fixtures/x.c");
            let abs = exe.parent().unwrap().join("fixtures/x.c");
            check_line_table(&elf, abs.to_str().unwrap());
            // Whole components only.
            assert!(matches!(
                elf.line_addresses("tures/x.c", 5),
                Err(Error::NoLineInfo { .. })
            ));
            assert!(matches!(
                elf.line_addresses("y.c", 5),
                Err(Error::NoLineInfo { .. })
            ));
            assert!(matches!(
                elf.line_addresses("", 5),
                Err(Error::NoLineInfo { .. })
            ));
        }
    }

    #[test]
    fn line_table_agrees_with_addr2line() {
        let exe = compile("addr2line", "x.c", LINES_C, &["-O0", "-g"]);
        let elf = ElfFile::open(&exe).unwrap();
        for line in [4, 5, 6, 7, 10, 12, 13, 14] {
            let addrs = elf.line_addresses("x.c", line).unwrap();
            assert_eq!(addrs.len(), 1, "line {line}");
            let out = std::process::Command::new("addr2line")
                .arg("-e")
                .arg(&exe)
                .arg(format!("{:#x}", addrs[0].get()))
                .output()
                .expect("addr2line");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.trim_end().ends_with(&format!("x.c:{line}")),
                "line {line}: {text}"
            );
        }
    }

    #[test]
    fn no_debug_info_is_no_line_info() {
        let exe = compile("nodebug", "x.c", LINES_C, &["-O0"]);
        let elf = ElfFile::open(&exe).unwrap();
        assert!(matches!(
            elf.line_addresses("x.c", 5),
            Err(Error::NoLineInfo { .. })
        ));
        // Stripped: no .symtab, but .dynsym and segments still work.
        let stripped = exe.with_file_name("stripped");
        let ok = std::process::Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&exe)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            let elf = ElfFile::open(&stripped).unwrap();
            assert!(elf.function_named("work").is_none());
            assert!(matches!(
                elf.line_addresses("x.c", 5),
                Err(Error::NoLineInfo { .. })
            ));
        }
    }

    /// Runs `prog args`, panicking with its stderr when it fails.
    fn run_tool(prog: &str, args: &[&std::ffi::OsStr]) {
        let out = std::process::Command::new(prog)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn compressed_debug_sections_are_inflated() {
        // SHF_COMPRESSED (what Debian's debug files use) and GNU .zdebug_*.
        for flag in ["-gz=zlib", "-gz=zlib-gnu"] {
            let exe = compile("zdebug", "x.c", LINES_C, &["-O0", "-g", flag]);
            let elf = ElfFile::open(&exe).unwrap();
            assert!(elf.has_dwarf(), "{flag}");
            check_line_table(&elf, "x.c");
        }
    }

    #[test]
    fn unsupported_compression_is_reported() {
        let exe = compile("zstd", "x.c", LINES_C, &["-O0", "-g"]);
        let mut bytes = std::fs::read(&exe).unwrap();
        let good = ElfFile::parse(&exe, bytes.clone()).unwrap();
        // Mark .debug_line compressed with method 2 (zstd).
        let idx = good
            .sections
            .iter()
            .position(|s| s.name == ".debug_line")
            .unwrap();
        let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
        let flags_at = shoff + idx * 64 + 8;
        let flags = u64::from_le_bytes(bytes[flags_at..flags_at + 8].try_into().unwrap())
            | u64::from(section_header::SHF_COMPRESSED);
        bytes[flags_at..flags_at + 8].copy_from_slice(&flags.to_le_bytes());
        let at = good.sections[idx].offset as usize;
        bytes[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
        let elf = ElfFile::parse(&exe, bytes.clone()).unwrap();
        match elf.line_addresses("x.c", 5) {
            Err(Error::CorruptElf { reason, .. }) => {
                assert!(reason.contains("only zlib"), "{reason}")
            }
            other => panic!("expected an unsupported-compression error, got {other:?}"),
        }
        // The failure is cached and reported again, not re-parsed into a panic.
        assert!(matches!(
            elf.line_addresses("x.c", 6),
            Err(Error::CorruptElf { .. })
        ));
        // A zlib header whose stream is garbage, or whose size lies.
        bytes[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
        for size in [0u64, 3, u64::MAX] {
            bytes[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
            let elf = ElfFile::parse(&exe, bytes.clone()).unwrap();
            assert!(
                matches!(elf.line_addresses("x.c", 5), Err(Error::CorruptElf { .. })),
                "size {size}"
            );
        }
    }

    /// Builds [`LINES_C`] with `-g`, moves its DWARF into `x.debug` with
    /// `objcopy --only-keep-debug`, strips it from the binary and links the two
    /// with `--add-gnu-debuglink`. Returns (binary, debug file).
    fn split_debug(tag: &str) -> (PathBuf, PathBuf) {
        let exe = compile(tag, "x.c", LINES_C, &["-O0", "-g"]);
        let dir = exe.parent().unwrap().to_path_buf();
        let debug = dir.join("x.debug");
        run_tool(
            "objcopy",
            &["--only-keep-debug".as_ref(), exe.as_ref(), debug.as_ref()],
        );
        run_tool("objcopy", &["--strip-debug".as_ref(), exe.as_ref()]);
        // objcopy records the name and CRC of the file as given, found by name
        // from the current directory: use an absolute path.
        let link = format!("--add-gnu-debuglink={}", debug.display());
        run_tool("objcopy", &[link.as_ref(), exe.as_ref()]);
        (exe, debug)
    }

    #[test]
    fn debuglink_next_to_the_binary() {
        let (exe, debug) = split_debug("debuglink");
        let elf = ElfFile::open(&exe).unwrap();
        assert!(!has_dwarf(&elf.sections), "the binary lost its DWARF");
        assert_eq!(elf.debug_link().map(|l| l.name.as_str()), Some("x.debug"));
        // Nothing is looked for before DWARF is needed.
        assert!(elf.debug_file.get().is_none());
        check_line_table(&elf, "x.c");
        assert_eq!(elf.separate_debug_file(), Some(debug.as_path()));
        assert!(elf.has_dwarf());
        // Symbols still come from the binary's own .symtab.
        assert!(elf.function_named("work").is_some());
    }

    #[test]
    fn debuglink_naming_a_fifo_is_passed_over() {
        let (exe, debug) = split_debug("fifo");
        std::fs::remove_file(&debug).unwrap();
        run_tool("mkfifo", &[debug.as_ref()]);
        let elf = ElfFile::open(&exe).unwrap();
        assert!(matches!(
            elf.line_addresses("x.c", 5),
            Err(Error::NoLineInfo { .. })
        ));
        assert_eq!(elf.separate_debug_file(), None);
    }

    #[test]
    fn debuglink_in_dot_debug_subdirectory() {
        let (exe, debug) = split_debug("dotdebug");
        let sub = exe.parent().unwrap().join(".debug");
        std::fs::create_dir_all(&sub).unwrap();
        let moved = sub.join("x.debug");
        std::fs::rename(&debug, &moved).unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        check_line_table(&elf, "x.c");
        assert_eq!(elf.separate_debug_file(), Some(moved.as_path()));
    }

    #[test]
    fn debuglink_with_wrong_crc_is_not_used() {
        let (exe, debug) = split_debug("badcrc");
        // Same name, other contents: a debug file from another build.
        let mut bytes = std::fs::read(&debug).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&debug, bytes).unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        assert!(matches!(
            elf.line_addresses("x.c", 5),
            Err(Error::NoLineInfo { .. })
        ));
        assert_eq!(elf.separate_debug_file(), None);
        assert!(!elf.has_dwarf());
    }

    #[test]
    fn corrupt_debug_file_never_panics() {
        let (exe, debug) = split_debug("baddebug");
        let full = std::fs::read(&debug).unwrap();
        let mut rng = Rng(99);
        let mut lengths: Vec<usize> = (0..full.len()).step_by(97).collect();
        lengths.push(full.len() - 1);
        for round in 0..120 {
            let mut bytes = full.clone();
            if round % 2 == 0 {
                bytes.truncate(lengths[round % lengths.len()]);
            } else {
                for _ in 0..8 {
                    let i = (rng.next() as usize) % bytes.len();
                    bytes[i] ^= (rng.next() as u8) | 1;
                }
            }
            // A corrupt file never passes the CRC check: parse it directly.
            if let Some(file) = DebugFile::parse(&debug, bytes) {
                for s in &file.sections {
                    let _ = section_bytes(&file.bytes, s);
                }
            }
        }
        // Through the lookup: a corrupt file in place of the real one.
        std::fs::write(&debug, &full[..full.len() / 2]).unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        let _ = elf.line_addresses("x.c", 5);
        assert_eq!(elf.separate_debug_file(), None);
    }

    #[test]
    fn libc_dwarf_from_build_id_debug_file() {
        // Debian's libc6-dbg installs /usr/lib/debug/.build-id/xx/yyyy.debug for
        // the libc it was built with (.ci/run installs it).
        let elf = open(LIBC);
        let id = elf.build_id().expect("libc has a build-id");
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let expected = PathBuf::from(format!(
            "/usr/lib/debug/.build-id/{}/{}.debug",
            &hex[..2],
            &hex[2..]
        ));
        assert!(
            expected.is_file(),
            "{} is missing: install libc6-dbg (apt-get install libc6-dbg)",
            expected.display()
        );
        assert!(elf.has_dwarf());
        assert_eq!(elf.separate_debug_file(), Some(expected.as_path()));
        // fputs (alias _IO_fputs) is defined in libio/iofputs.c; its first line
        // with code is its own first address.
        let fputs = elf.function_named("fputs").expect("fputs").addr;
        let lines = elf.line_addresses("iofputs.c", 33).unwrap();
        assert!(lines.contains(&fputs), "{lines:?} vs fputs at {fputs}");
        let lines = elf.line_addresses("libio/iofputs.c", 33).unwrap();
        assert!(lines.contains(&fputs));
        // Internal functions are only in the debug file's .symtab: found by
        // name, and naming their addresses; globs and `functions()` stay
        // with libc's own tables.
        let internal = elf
            .function_named("__libc_start_call_main")
            .expect("in libc6-dbg's .symtab")
            .clone();
        assert!(elf.functions().iter().all(|f| f.addr != internal.addr));
        let (f, off) = elf.function_at(internal.addr.offset(1)).unwrap();
        assert_eq!((f.name.as_str(), off), ("__libc_start_call_main", 1));
    }

    #[test]
    fn a_relative_compilation_directory_is_not_doubled() {
        // Debian builds libc with -fdebug-prefix-map, leaving relative
        // compilation directories (`./stdio-common`), which DWARF 5 repeats as
        // directory 0 of the line table: gdb shows ./stdio-common/printf.c.
        let printf = open(LIBC).function_named("printf").expect("printf").addr;
        let (file, _) = open(LIBC).line_of(printf).expect("libc6-dbg has lines");
        assert_eq!(file, Path::new("./stdio-common/printf.c"));
        for version in ["-gdwarf-5", "-gdwarf-4"] {
            let dir = temp_dir("reldir");
            let map = format!("-fdebug-prefix-map={}=./sub", dir.display());
            let exe = compile_in(&dir, "x.c", LINES_C, &["-O0", version, &map]);
            let elf = ElfFile::open(&exe).unwrap();
            let work = elf.function_named("work").unwrap().addr;
            assert_eq!(
                elf.line_of(work),
                Some((PathBuf::from("./sub/x.c"), 4)),
                "{version}"
            );
        }
    }

    #[test]
    fn corrupt_dwarf_is_an_error_not_a_panic() {
        let exe = compile("baddwarf", "x.c", LINES_C, &["-O0", "-g"]);
        let full = std::fs::read(&exe).unwrap();
        let good = ElfFile::parse(&exe, full.clone()).unwrap();
        let mut rng = Rng(7);
        for name in [
            ".debug_line",
            ".debug_info",
            ".debug_abbrev",
            ".debug_line_str",
            ".debug_str",
        ] {
            let Some(s) = good.sections.iter().find(|s| s.name == name) else {
                continue;
            };
            let (start, len) = (s.offset as usize, s.size as usize);
            for i in 0..len.min(400) {
                let mut bytes = full.clone();
                bytes[start + i] ^= (rng.next() as u8) | 1;
                let elf = ElfFile::parse(&exe, bytes).unwrap();
                let _ = elf.line_addresses("x.c", 5);
            }
            // Truncating the section's declared size.
            let mut bytes = full.clone();
            let elf_shdr = good.sections.iter().position(|x| x.name == name).unwrap();
            let shoff = u64::from_le_bytes(full[0x28..0x30].try_into().unwrap()) as usize;
            let size_at = shoff + elf_shdr * 64 + 0x20;
            bytes[size_at..size_at + 8].copy_from_slice(&((len / 3) as u64).to_le_bytes());
            let elf = ElfFile::parse(&exe, bytes).unwrap();
            let _ = elf.line_addresses("x.c", 5);
        }
    }

    #[test]
    fn cache_parses_once() {
        let mut cache = ElfCache::new();
        let a = cache.get(Path::new(SMALL)).unwrap();
        let b = cache.get(Path::new(SMALL)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(cache.get(Path::new("/nonexistent/file")).is_err());
        assert!(matches!(
            cache.get(Path::new("/etc/hostname")),
            Err(Error::NotElf { .. }) | Err(Error::Io { .. })
        ));
    }

    /// CFA = register + offset, as a rule says.
    fn cfa_of(rule: &FrameRule) -> (u16, i64) {
        match rule.cfa {
            crate::symbols::cfi::CfaRule::RegisterOffset { register, offset } => (register, offset),
            ref other => panic!("not register + offset: {other:?}"),
        }
    }

    #[test]
    fn frame_rules_of_optimised_code_without_frame_pointers() {
        use crate::symbols::cfi::RegisterRule;
        let exe = compile(
            "cfi-o2",
            "x.c",
            LINES_C,
            &["-O2", "-fomit-frame-pointer", "-g"],
        );
        let elf = ElfFile::open(&exe).unwrap();
        for name in ["work", "main"] {
            let f = elf.function_named(name).unwrap().clone();
            let entry = elf.frame_rule(f.addr).expect("an FDE covers the entry");
            assert_eq!(cfa_of(&entry), (7, 8), "{name}: CFA = rsp + 8 at entry");
            assert_eq!(entry.register(16), Some(&RegisterRule::Offset(-8)));
            // Asked again: the same rule, from the cache.
            let again = elf.frame_rule(f.addr).unwrap();
            assert!(Arc::ptr_eq(&entry, &again));
        }
        // main calls printf with its stack realigned (`sub $8,%rsp`): somewhere
        // in it the CFA is rsp + 16, never rbp-based (no frame pointer).
        let main = elf.function_named("main").unwrap().clone();
        let cfas: Vec<(u16, i64)> = (0..main.size)
            .filter_map(|k| elf.frame_rule(main.addr.offset(k as i64)))
            .map(|r| cfa_of(&r))
            .collect();
        assert_eq!(
            cfas.len() as u64,
            main.size,
            "every byte of main is covered"
        );
        assert!(cfas.contains(&(7, 16)), "{cfas:?}");
        assert!(cfas.iter().all(|&(reg, _)| reg == 7), "{cfas:?}");
        // Outside any FDE: no rule.
        assert!(elf.frame_rule(LinkAddr(0x10)).is_none());
    }

    #[test]
    fn line_at_agrees_with_addr2line_on_every_byte() {
        for opt in ["-O0", "-O2"] {
            let exe = compile("line-at", "x.c", LINES_C, &[opt, "-g"]);
            let elf = ElfFile::open(&exe).unwrap();
            let mut addrs = Vec::new();
            for name in ["work", "main"] {
                let f = elf.function_named(name).unwrap();
                addrs.extend((0..f.size).map(|k| f.addr.get() + k));
            }
            let out = std::process::Command::new("addr2line")
                .arg("-e")
                .arg(&exe)
                .args(addrs.iter().map(|a| format!("{a:#x}")))
                .output()
                .expect("run addr2line");
            let text = String::from_utf8_lossy(&out.stdout);
            let expected: Vec<&str> = text.lines().collect();
            assert_eq!(expected.len(), addrs.len());
            for (a, want) in addrs.iter().zip(expected) {
                // `/dir/x.c:5`, maybe followed by ` (discriminator 1)`.
                let want = want.split(' ').next().unwrap();
                let got = match elf.line_at(LinkAddr(*a)) {
                    Some((file, line)) => format!("{}:{line}", file.display()),
                    None => "??:0".to_string(),
                };
                assert_eq!(got, want, "{opt} at {a:#x}");
            }
        }
    }

    #[test]
    fn debug_frame_in_the_file_and_in_its_separate_debug_file() {
        let flags = [
            "-O0",
            "-g",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
        ];
        let exe = compile("debug-frame", "x.c", LINES_C, &flags);
        let check = |elf: &ElfFile| {
            let work = elf.function_named("work").unwrap().clone();
            // After `push %rbp; mov %rsp,%rbp` (-O0 keeps the frame pointer).
            let rule = elf
                .frame_rule(work.addr.offset(4))
                .expect("from .debug_frame");
            assert_eq!(cfa_of(&rule), (6, 16));
            assert_eq!(cfa_of(&elf.frame_rule(work.addr).unwrap()), (7, 8));
        };
        let elf = ElfFile::open(&exe).unwrap();
        assert!(!elf.section_data(".debug_frame").unwrap().is_empty());
        check(&elf);

        let dir = exe.parent().unwrap().to_path_buf();
        let debug = dir.join("x.debug");
        run_tool(
            "objcopy",
            &["--only-keep-debug".as_ref(), exe.as_ref(), debug.as_ref()],
        );
        run_tool("objcopy", &["--strip-debug".as_ref(), exe.as_ref()]);
        let link = format!("--add-gnu-debuglink={}", debug.display());
        run_tool("objcopy", &[link.as_ref(), exe.as_ref()]);
        let elf = ElfFile::open(&exe).unwrap();
        assert!(
            !elf.sections.iter().any(|s| s.name == ".debug_frame"),
            "stripped"
        );
        check(&elf);
        assert_eq!(elf.separate_debug_file(), Some(debug.as_path()));
    }
}
