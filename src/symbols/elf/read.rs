//! Reading the file formats: the ELF header, program and section headers,
//! symbol tables, relocations, and section contents (inflated when
//! compressed).
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};
use goblin::elf::section_header::{self, SectionHeader};
use goblin::elf::sym;

use super::symtab::RawSym;
use super::{Relocation, Segment, SymKind, Symbol, ELF_MAGIC};
use crate::addr::{FileOffset, LinkAddr};

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
    /// reason it could not be inflated is kept the same way.
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

/// sizeof(Elf64_Sym).
const SYM_SIZE: usize = 24;

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
pub(super) fn section_bytes<'a>(
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
        let ctx = Ctx::new(Container::Big, Endian::Little);
        let sections = parse_sections(&bytes, &hdr, ctx).ok()?;
        Some(DebugFile {
            path: path.to_path_buf(),
            sections: sections.into_iter().map(|(s, _)| s).collect(),
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
}

impl Parsed {
    /// Reads the headers and symbol tables of `bytes` (which start with the magic).
    /// Errors are reasons for [`Error::CorruptElf`].
    pub(super) fn new(bytes: &[u8]) -> std::result::Result<Parsed, String> {
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
pub(super) fn file_range(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// The NUL-terminated string at `offset` in a string table (lossily decoded: one bad
/// name must not cost the whole table).
pub(super) fn strtab_get(strtab: &[u8], offset: usize) -> Option<String> {
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
pub(super) fn parse_symbols(
    bytes: &[u8],
    sections: &[Section],
) -> std::result::Result<Vec<RawSym>, String> {
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

/// The dynamic relocations: every entry of the allocated SHT_RELA sections
/// (`.rela.dyn`, `.rela.plt`), with the names of their symbols; entries that
/// do not parse are skipped.
pub(super) fn relocations(bytes: &[u8], sections: &[Section]) -> Vec<Relocation> {
    const RELA_SIZE: usize = 24;
    let mut out = Vec::new();
    for s in sections {
        if s.kind != section_header::SHT_RELA || s.flags & u64::from(section_header::SHF_ALLOC) == 0
        {
            continue;
        }
        let Some(table) = file_range(bytes, s.offset, s.size) else {
            continue;
        };
        // The symbol table it refers to, and that table's strings.
        let symtab = sections.get(s.link as usize);
        let syms = symtab.and_then(|t| file_range(bytes, t.offset, t.size));
        let strs = symtab
            .and_then(|t| sections.get(t.link as usize))
            .and_then(|t| file_range(bytes, t.offset, t.size));
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
