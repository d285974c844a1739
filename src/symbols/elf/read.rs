//! Reading the file formats, with goblin: the ELF header, program and
//! section headers, symbol tables and their versions (`.gnu.version`),
//! relocations, notes, the dynamic section and compression headers. What is
//! kept of them is rtrace's (segments, sections by name, raw symbols); what
//! is chosen from them is the parent module's.
//!
//! goblin's `Elf::parse` is not used: it reads every part a file has (every
//! relocation section, `.dynsym` sized through the hash tables) and fails the
//! whole file for any part it rejects, where a probe needs only the parts
//! below, each checked on its own. goblin's pieces are used one by one
//! instead: `Header`, `ProgramHeader`, `SectionHeader`, `Symtab`,
//! `VersymSection`, `RelocSection`, `Dynamic`, `CompressionHeader` and the
//! note iterator (in `debugfile`).
//!
//! Two parts are not goblin's, and why:
//! - names in string tables ([`strtab_get`]): goblin's `Strtab` refuses a
//!   whole table for one name that is not UTF-8 and indexes every string
//!   before the first lookup; a name here is read when its symbol is, and
//!   decoded lossily, so one bad name costs only itself;
//! - `.zdebug_*` sections: the GNU convention older than `SHF_COMPRESSED`
//!   (a `ZLIB` magic and a big-endian size), which goblin does not know.
//!
//! Every offset and size comes from the file and is checked against it
//! ([`file_range`]) before goblin is handed a table, so a corrupt file is an
//! error or a missing part, never a panic.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::compression_header::{CompressionHeader, ELFCOMPRESS_ZLIB};
use goblin::elf::dynamic::{self, Dynamic};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};
use goblin::elf::section_header::{self, SectionHeader};
use goblin::elf::sym::{self, Sym, Symtab};
use goblin::elf::{RelocSection, VersymSection};

use super::symtab::RawSym;
use super::types::{Dependencies, Relocation, Segment, SymKind, Symbol};
use crate::addr::{FileOffset, LinkAddr};
use crate::error::{Error, Result};

/// The first four bytes of every ELF file.
pub(super) const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// sizeof(Elf64_Sym).
const SYM_SIZE: usize = 24;

/// ELF64, little-endian: the only layout rtrace reads (x86-64).
const CTX: Ctx = Ctx {
    container: Container::Big,
    le: Endian::Little,
};

/// How a reader of a part of a file reports a part it cannot use: the
/// reason (`.debug_line extends past the end of the file`) goes into the
/// caller's error, [`Error::CorruptElf`] when the file is opened, its DWARF
/// error when DWARF is read ([`corrupt_elf`] makes the first).
pub(super) type Corrupt<'a> = &'a dyn Fn(String) -> Error;

/// [`Error::CorruptElf`] of the file at `path`, for a reason.
pub(super) fn corrupt_elf(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::CorruptElf {
        path: path.to_path_buf(),
        reason,
    }
}

/// A section header, kept for loading DWARF sections by name.
#[derive(Clone, Debug)]
pub(super) struct Section {
    pub(super) name: String,
    pub(super) kind: u32,
    pub(super) flags: u64,
    /// sh_addr: where an allocated section is loaded (link address).
    pub(super) addr: u64,
    pub(super) offset: u64,
    pub(super) size: u64,
    /// sh_link: for a relocation section, its symbol table's index.
    pub(super) link: u32,
    /// The inflated contents of a compressed section, made on first use; the
    /// reason it could not be inflated is kept the same way, as text: each
    /// reader wraps it in its own error ([`Corrupt`]).
    pub(super) inflated: OnceLock<std::result::Result<Vec<u8>, String>>,
}

/// A separate debug file: only its sections are used (its program headers
/// describe segments whose bytes it does not have).
#[derive(Debug)]
pub(super) struct DebugFile {
    pub(super) path: PathBuf,
    pub(super) bytes: Vec<u8>,
    pub(super) sections: Vec<Section>,
}

/// True when `sections` hold DWARF: a `.debug_info` or `.debug_line` (or their
/// `.zdebug_` forms) with contents in the file.
pub(super) fn has_dwarf(sections: &[Section]) -> bool {
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
pub(super) fn find_section_data<'a>(
    bytes: &'a [u8],
    sections: &'a [Section],
    name: &str,
    corrupt: Corrupt<'_>,
) -> Result<&'a [u8]> {
    if let Some(section) = sections.iter().find(|s| s.name == name) {
        return section_bytes(bytes, section, corrupt);
    }
    // `.zdebug_*`: the pre-SHF_COMPRESSED GNU convention.
    let zname = name.strip_prefix('.').map(|n| format!(".z{n}"));
    match sections.iter().find(|s| Some(&s.name) == zname.as_ref()) {
        Some(section) => section_bytes(bytes, section, corrupt),
        None => Ok(&[]),
    }
}

/// The largest inflated section accepted: a corrupt header must not make us
/// allocate without bound.
const MAX_INFLATED: u64 = 1 << 32;

/// The bytes of `section` (empty for SHT_NOBITS), inflated when it is compressed
/// (`SHF_COMPRESSED` with zlib, or a `.zdebug_*` section) and kept inflated in
/// the section.
pub(super) fn section_bytes<'a>(
    bytes: &'a [u8],
    section: &'a Section,
    corrupt: Corrupt<'_>,
) -> Result<&'a [u8]> {
    if section.kind == section_header::SHT_NOBITS {
        return Ok(&[]);
    }
    let name = &section.name;
    let raw = file_range(bytes, section.offset, section.size)
        .ok_or_else(|| corrupt(format!("{name} extends past the end of the file")))?;
    let compressed = section.flags & u64::from(section_header::SHF_COMPRESSED) != 0;
    let gnu_zdebug = name.starts_with(".zdebug_");
    if !compressed && !gnu_zdebug {
        return Ok(raw);
    }
    let inflated = section.inflated.get_or_init(|| {
        let (size, stream) = if compressed {
            let chdr = CompressionHeader::parse(raw, 0, CTX)
                .map_err(|_| format!("{name}: truncated compression header"))?;
            if chdr.ch_type != ELFCOMPRESS_ZLIB {
                return Err(format!(
                    "{name} is compressed with method {} (only zlib is supported); \
                     relink with --compress-debug-sections=zlib or none",
                    chdr.ch_type
                ));
            }
            let stream = raw.get(CompressionHeader::size(CTX)..).unwrap_or_default();
            (chdr.ch_size, stream)
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
    inflated
        .as_deref()
        .map_err(|reason| corrupt(reason.clone()))
}

impl DebugFile {
    /// Parses the header and section headers of a candidate debug file; `None`
    /// when it is not a well-formed x86-64 ELF file (the candidate is then
    /// passed over, like one that does not exist).
    pub(super) fn parse(path: &Path, bytes: Vec<u8>) -> Option<DebugFile> {
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
        let sections = parse_sections(path, &bytes, &hdr).ok()?;
        Some(DebugFile {
            path: path.to_path_buf(),
            sections,
            bytes,
        })
    }
}

/// What [`ElfFile::parse`] extracts from the headers, before indexing.
pub(super) struct Parsed {
    pub(super) is_dyn: bool,
    pub(super) entry: LinkAddr,
    pub(super) interpreter: Option<String>,
    pub(super) segments: Vec<Segment>,
    pub(super) sections: Vec<Section>,
    pub(super) raw_symbols: Vec<RawSym>,
    pub(super) tls_symbols: Vec<(String, u64)>,
    pub(super) dependencies: Dependencies,
}

impl Parsed {
    /// Reads the headers, symbol tables and dynamic section of `bytes` (which
    /// start with the magic), read from `path`: [`Error::CorruptElf`] for a
    /// part that does not parse.
    pub(super) fn new(path: &Path, bytes: &[u8]) -> Result<Parsed> {
        let corrupt = corrupt_elf(path);
        let ident = |i: usize| bytes.get(i).copied();
        let unsupported = |what: String| Error::UnsupportedElf {
            path: path.to_path_buf(),
            what,
        };
        match ident(header::EI_CLASS) {
            Some(header::ELFCLASS64) => {}
            Some(header::ELFCLASS32) => return Err(unsupported("a 32-bit ELF file".into())),
            _ => return Err(corrupt("its class is neither 32- nor 64-bit".into())),
        }
        match ident(header::EI_DATA) {
            Some(header::ELFDATA2LSB) => {}
            Some(header::ELFDATA2MSB) => return Err(unsupported("a big-endian ELF file".into())),
            _ => {
                return Err(corrupt(
                    "its byte order is neither little- nor big-endian".into(),
                ))
            }
        }
        let hdr: Header =
            goblin::elf::Elf::parse_header(bytes).map_err(|e| corrupt(e.to_string()))?;
        if hdr.e_machine != header::EM_X86_64 {
            return Err(unsupported(format!(
                "an ELF file for {}",
                header::machine_to_str(hdr.e_machine)
            )));
        }
        let is_dyn = match hdr.e_type {
            header::ET_DYN => true,
            header::ET_EXEC => false,
            other => {
                return Err(corrupt(format!(
                    "{} is not an executable or shared object",
                    header::et_to_str(other)
                )))
            }
        };

        if hdr.e_phnum > 0 && usize::from(hdr.e_phentsize) != ProgramHeader::size(CTX) {
            return Err(corrupt(format!(
                "bad program header size {}",
                hdr.e_phentsize
            )));
        }
        let phoff = usize::try_from(hdr.e_phoff)
            .map_err(|_| corrupt("program headers out of range".into()))?;
        let phdrs = ProgramHeader::parse(bytes, phoff, usize::from(hdr.e_phnum), CTX)
            .map_err(|e| corrupt(format!("program headers: {e}")))?;
        let mut segments = Vec::new();
        let mut interpreter = None;
        for ph in &phdrs {
            let file_range = file_range(bytes, ph.p_offset, ph.p_filesz);
            match ph.p_type {
                program_header::PT_LOAD => {
                    if file_range.is_none() {
                        return Err(corrupt(format!(
                            "PT_LOAD at offset {:#x} extends past the end of the file",
                            ph.p_offset
                        )));
                    }
                    if ph.p_filesz > ph.p_memsz {
                        return Err(corrupt(format!(
                            "PT_LOAD at {:#x} has more file bytes than memory",
                            ph.p_vaddr
                        )));
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
                    let raw = file_range.ok_or_else(|| {
                        corrupt("PT_INTERP extends past the end of the file".into())
                    })?;
                    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
                    interpreter = Some(String::from_utf8_lossy(raw).into_owned());
                }
                _ => {}
            }
        }

        let sections = parse_sections(path, bytes, &hdr)?;
        let (raw_symbols, tls_symbols) = parse_symbols(path, bytes, &sections)?;
        Ok(Parsed {
            is_dyn,
            entry: LinkAddr(hdr.e_entry),
            interpreter,
            segments,
            sections,
            raw_symbols,
            tls_symbols,
            dependencies: dependencies(bytes, &phdrs),
        })
    }
}

/// `bytes[offset..offset + len]`, when it is all in the file.
pub(super) fn file_range(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
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

/// The section headers, with their names.
fn parse_sections(path: &Path, bytes: &[u8], hdr: &Header) -> Result<Vec<Section>> {
    let corrupt = corrupt_elf(path);
    if hdr.e_shoff == 0 {
        // No section header table: legal (sstrip'ed files); no symbols then.
        return Ok(Vec::new());
    }
    if usize::from(hdr.e_shentsize) != SectionHeader::size(CTX) {
        return Err(corrupt(format!(
            "bad section header size {}",
            hdr.e_shentsize
        )));
    }
    let shoff =
        usize::try_from(hdr.e_shoff).map_err(|_| corrupt("section headers out of range".into()))?;
    let shdrs = SectionHeader::parse(bytes, shoff, usize::from(hdr.e_shnum), CTX)
        .map_err(|e| corrupt(format!("section headers: {e}")))?;
    // With many sections the real index lives in the first header's sh_link.
    let shstrndx = match u32::from(hdr.e_shstrndx) {
        section_header::SHN_XINDEX => shdrs.first().map_or(0, |s| s.sh_link),
        n => n,
    };
    let shstrtab = match shdrs.get(shstrndx as usize) {
        Some(s) if shstrndx != section_header::SHN_UNDEF => {
            file_range(bytes, s.sh_offset, s.sh_size).ok_or_else(|| {
                corrupt("the section name table extends past the end of the file".into())
            })?
        }
        _ => &[],
    };
    shdrs
        .iter()
        .map(|s| {
            if s.sh_type != section_header::SHT_NOBITS
                && file_range(bytes, s.sh_offset, s.sh_size).is_none()
            {
                return Err(corrupt(format!(
                    "section at offset {:#x} extends past the end of the file",
                    s.sh_offset
                )));
            }
            Ok(Section {
                name: strtab_get(shstrtab, s.sh_name).unwrap_or_default(),
                kind: s.sh_type,
                flags: s.sh_flags,
                addr: s.sh_addr,
                offset: s.sh_offset,
                size: s.sh_size,
                inflated: OnceLock::new(),
                link: s.sh_link,
            })
        })
        .collect()
}

/// The symbol table `section` and its string table, when both lie in the
/// file.
fn symbol_table<'a>(
    path: &Path,
    bytes: &'a [u8],
    sections: &[Section],
    section: &Section,
) -> Result<(Symtab<'a>, &'a [u8])> {
    let corrupt = corrupt_elf(path);
    let name = &section.name;
    let table = file_range(bytes, section.offset, section.size)
        .ok_or_else(|| corrupt(format!("{name} extends past the end of the file")))?;
    // Whole entries only; goblin refuses a table that starts at its end.
    let count = table.len() / SYM_SIZE;
    let symtab = match count {
        0 => Symtab::default(),
        n => Symtab::parse(table, 0, n, CTX).map_err(|e| corrupt(format!("{name}: {e}")))?,
    };
    let strtab = match sections.get(section.link as usize) {
        Some(s) => file_range(bytes, s.offset, s.size)
            .ok_or_else(|| corrupt(format!("{name}'s strings extend past the end of the file")))?,
        None => return Err(corrupt(format!("{name} links to a missing string table"))),
    };
    Ok((symtab, strtab))
}

/// The defined, named symbols of `.symtab` and `.dynsym`, and the
/// thread-local ones of `.dynsym` (name, offset in the module's TLS block).
#[allow(clippy::type_complexity)]
pub(super) fn parse_symbols(
    path: &Path,
    bytes: &[u8],
    sections: &[Section],
) -> Result<(Vec<RawSym>, Vec<(String, u64)>)> {
    let mut out = Vec::new();
    let mut tls = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        let dynamic = section.kind == section_header::SHT_DYNSYM;
        if section.kind != section_header::SHT_SYMTAB && !dynamic {
            continue;
        }
        // `.gnu.version`: one entry per symbol of the table it links to, its
        // hidden bit set for a version that is not the default one
        // (`name@VER`, kept for old binaries).
        let versym = sections
            .iter()
            .find(|v| v.kind == section_header::SHT_GNU_VERSYM && v.link as usize == index)
            .and_then(|v| {
                let shdr = SectionHeader {
                    sh_type: v.kind,
                    sh_offset: v.offset,
                    sh_size: v.size,
                    ..SectionHeader::default()
                };
                VersymSection::parse(bytes, &[shdr], CTX).ok().flatten()
            });
        let (symtab, strtab) = symbol_table(path, bytes, sections, section)?;
        for (i, sym) in symtab.iter().enumerate() {
            if dynamic && sym.st_type() == sym::STT_TLS {
                if let Some(name) = strtab_get(strtab, sym.st_name) {
                    tls.push((name, sym.st_value));
                }
            }
            if let Some(mut raw) = raw_symbol(&sym, strtab) {
                raw.hidden |= versym
                    .as_ref()
                    .and_then(|v| v.get_at(i))
                    .is_some_and(|v| v.is_hidden());
                out.push(raw);
            }
        }
    }
    Ok((out, tls))
}

/// One symbol, as rtrace keeps it. Undefined, unnamed, section, file and TLS
/// symbols (whose value is not an address) are dropped.
fn raw_symbol(sym: &Sym, strtab: &[u8]) -> Option<RawSym> {
    if sym.st_shndx == section_header::SHN_UNDEF as usize {
        return None;
    }
    let kind = match sym.st_type() {
        sym::STT_FUNC => SymKind::Func,
        sym::STT_GNU_IFUNC => SymKind::IFunc,
        sym::STT_SECTION | sym::STT_FILE | sym::STT_TLS => return None,
        _ => SymKind::Other,
    };
    if kind.is_function() && sym.st_value == 0 {
        return None;
    }
    let full = strtab_get(strtab, sym.st_name)?;
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
            addr: LinkAddr(sym.st_value),
            size: sym.st_size,
            kind,
        },
        bind: sym.st_bind(),
        hidden,
    })
}

/// The dynamic relocations: every entry of the allocated SHT_RELA sections
/// (`.rela.dyn`, `.rela.plt`), with the names of their symbols. A section
/// that is not in the file is skipped, and so is a symbol table that is not.
pub(super) fn relocations(path: &Path, bytes: &[u8], sections: &[Section]) -> Vec<Relocation> {
    let mut out = Vec::new();
    for s in sections {
        if s.kind != section_header::SHT_RELA || s.flags & u64::from(section_header::SHF_ALLOC) == 0
        {
            continue;
        }
        let Some(table) = file_range(bytes, s.offset, s.size) else {
            continue;
        };
        let Ok(relocs) = RelocSection::parse(table, 0, table.len(), true, CTX) else {
            continue;
        };
        // The symbol table it refers to, and that table's strings.
        let symbols = sections
            .get(s.link as usize)
            .and_then(|t| symbol_table(path, bytes, sections, t).ok());
        for r in relocs.iter() {
            let sym = match r.r_sym {
                0 => None,
                i => symbols
                    .as_ref()
                    .and_then(|(syms, strs)| Some((syms.get(i)?, *strs))),
            };
            let symbol = sym.as_ref().and_then(|(sym, strs)| {
                let full = strtab_get(strs, sym.st_name)?;
                Some(full.split('@').next().unwrap_or_default().to_string())
            });
            let tls_offset = match &sym {
                None if r.r_sym == 0 => Some(0),
                Some((sym, _)) if sym.st_type() == sym::STT_TLS => Some(sym.st_value),
                None | Some(_) => None,
            };
            out.push(Relocation {
                offset: LinkAddr(r.r_offset),
                kind: r.r_type,
                symbol,
                addend: r.r_addend.unwrap_or(0),
                tls_offset,
            });
        }
    }
    out
}

/// The libraries a file names in its dynamic section (`DT_NEEDED`) and where
/// it asks for them to be looked for (`DT_RPATH`, `DT_RUNPATH`), in the
/// order they appear. Empty when there is no dynamic section or it does not
/// parse: such a file needs nothing that could be found.
fn dependencies(bytes: &[u8], phdrs: &[ProgramHeader]) -> Dependencies {
    let mut deps = Dependencies::default();
    let Some(dynamic) = Dynamic::parse(bytes, phdrs, CTX).ok().flatten() else {
        return deps;
    };
    // DT_STRTAB, turned into a file offset by goblin (0 when it is not in a
    // PT_LOAD, or missing).
    let info = &dynamic.info;
    let strtab = (info.strtab != 0)
        .then(|| file_range(bytes, info.strtab as u64, info.strsz as u64))
        .flatten()
        .unwrap_or_default();
    for d in &dynamic.dyns {
        let list = match d.d_tag {
            dynamic::DT_NEEDED => &mut deps.needed,
            dynamic::DT_RPATH => &mut deps.rpath,
            dynamic::DT_RUNPATH => &mut deps.runpath,
            _ => continue,
        };
        if let Some(name) = usize::try_from(d.d_val)
            .ok()
            .and_then(|at| strtab_get(strtab, at))
        {
            list.push(name);
        }
    }
    deps
}
