//! Function signatures from DWARF: parameter names and types, and the return
//! type, of the function starting at a given link-time address.
//!
//! What it owns: finding the compile unit that holds an address (through
//! `.debug_aranges` when the file has it, else through the units' own ranges,
//! indexed once per file), finding the function's `DW_TAG_subprogram` in that
//! unit only, and reducing DWARF types to the few shapes the printers render
//! ([`Type`]). Typedefs and cv-qualifiers are followed; a struct or union keeps
//! its name, alignment and SysV classification, never its field values. For a
//! compiler clone ([`is_clone`]), where the clone's own debug info puts each
//! parameter at its entry (`location`). DWARF that does not describe the
//! parameters (an assembler unit, an unprototyped or `-g1` function, a
//! reference into another unit) gives no signature, not an empty one.
//!
//! Cost model: nothing is parsed until a signature is asked for; then the
//! file's unit index is built once, and each function's unit is parsed once.
//! [`Signatures`] caches every answer per (file, address), failures included, so
//! a probe hit in a loop parses nothing after its first hit.
//!
//! It must not panic on any input and must not touch a tracee: corrupt or
//! unsupported DWARF is an `Err` (a reason string), which callers treat as "no
//! debug info".

mod location;
pub mod sysv;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gimli::{AttributeValue, EndianSlice, LittleEndian, UnitOffset};

use super::elf::ElfFile;
use crate::addr::LinkAddr;
use crate::error::{Error, Result};
pub use sysv::{Class, Loc, Passing};

type R<'a> = EndianSlice<'a, LittleEndian>;
type Die<'a> = gimli::DebuggingInformationEntry<R<'a>>;

/// How deep type references are followed (typedef chains, nested members):
/// far more than real code needs, and a bound on malicious cycles.
const MAX_DEPTH: usize = 24;

/// A parameter or return type, reduced to what rendering needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// `void` (a return type only).
    Void,
    /// An integer of `size` bytes (1, 2, 4, 8 or 16).
    Int {
        /// Bytes.
        size: u64,
        /// Signed (`int`, `int8_t`) or unsigned (`unsigned`, `uint8_t`).
        signed: bool,
    },
    /// An unsigned integer of `size` bytes shown in octal, as strace shows a
    /// `mode_t` (`0644`). Only a user prototype (`--proto`) gives one: DWARF
    /// describes a `mode_t` as the integer it is.
    Octal {
        /// Bytes.
        size: u64,
    },
    /// Plain `char` (not `signed char` nor `unsigned char`, which are integers).
    Char,
    /// `bool` / `_Bool`.
    Bool {
        /// Bytes.
        size: u64,
    },
    /// A floating-point type (`float`, `double`, `long double`, complex ones).
    Float {
        /// Bytes.
        size: u64,
        /// `_Complex`.
        complex: bool,
        /// The x87 80-bit `long double`.
        x87: bool,
    },
    /// A pointer or C++ reference.
    Pointer {
        /// True when it points to a one-byte character type (`char *`,
        /// `const char *`, `unsigned char *`, through typedefs): a C string.
        string: bool,
    },
    /// An enumeration.
    Enum {
        /// Bytes.
        size: u64,
        /// Whether its values are signed.
        signed: bool,
        /// Enumerators: value (truncated to `size` bytes), name.
        values: Vec<(u64, String)>,
    },
    /// A struct, union or class passed or returned by value.
    Aggregate {
        /// `struct`, `union` or `class`.
        keyword: &'static str,
        /// Its tag name, when it has one.
        name: Option<String>,
        /// Its alignment in bytes (members' and `DW_AT_alignment`s), 1 when
        /// its layout is not known.
        align: u64,
        /// How the SysV ABI passes it.
        passing: Passing,
    },
    /// Anything else (an array, a type in another unit, a broken reference).
    Unknown,
}

/// One formal parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Its name, when the declaration gives one.
    pub name: Option<String>,
    /// Its type.
    pub ty: Type,
}

/// A function's signature as its debug info declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The parameters, in order.
    pub params: Vec<Param>,
    /// True for a variadic function (`...`).
    pub variadic: bool,
    /// The return type ([`Type::Void`] when there is none).
    pub ret: Type,
    /// Where each parameter is at the function's entry as its own debug info
    /// says, for a compiler clone (`work.isra.0`, `cp.constprop.0`,
    /// `f.part.0`): GCC does not keep the SysV convention for those (an
    /// argument may be dropped, replaced by what it pointed to, or fixed to a
    /// constant). None for every other function: the SysV convention.
    pub described: Option<Vec<Loc>>,
    /// [`Signature::locations`], worked out at the first call.
    pub located: std::sync::OnceLock<Vec<Loc>>,
}

impl Signature {
    /// Where each parameter is at the function's first instruction.
    pub fn locations(&self) -> &[Loc] {
        self.located.get_or_init(|| match &self.described {
            Some(locs) => locs.clone(),
            None => sysv::locate(self),
        })
    }
}

/// True for the symbol of a function the compiler cloned with a calling
/// convention of its own: GCC's IPA-SRA (`.isra.N`), constant propagation
/// (`.constprop.N`) and function splitting (`.part.N`) clones, clang's
/// function specialisation (`.specialized.N`). (`.cold` parts are never
/// called, and `.lto_priv.N` only renames.)
pub fn is_clone(symbol: &str) -> bool {
    [".isra.", ".constprop.", ".part.", ".specialized."]
        .iter()
        .any(|c| symbol.contains(c))
}

/// The compile units of one file by address range: `(begin, end, unit offset in
/// .debug_info)`, sorted by `begin`.
type UnitIndex = Vec<(u64, u64, usize)>;

/// Signatures of probed functions, parsed on first use and cached, per file.
#[derive(Default)]
pub struct Signatures {
    files: HashMap<PathBuf, FileEntry>,
}

struct FileEntry {
    /// The file the answers came from: a new parse of the same path (the file was
    /// replaced, a new process) starts over.
    elf: Arc<ElfFile>,
    units: Option<Result<UnitIndex>>,
    functions: HashMap<u64, Option<Arc<Signature>>>,
}

impl Signatures {
    /// A cache with nothing parsed.
    pub fn new() -> Signatures {
        Signatures::default()
    }

    /// The signature of the function starting at `addr` in `elf`, or None when
    /// the file has no usable debug info for it. Parses at most one unit, once.
    pub fn get(&mut self, elf: &Arc<ElfFile>, addr: LinkAddr) -> Option<Arc<Signature>> {
        // The hit path: a function seen before costs two lookups, no allocation.
        if let Some(entry) = self.files.get(elf.path()) {
            if Arc::ptr_eq(&entry.elf, elf) {
                if let Some(known) = entry.functions.get(&addr.0) {
                    return known.clone();
                }
            }
        }
        let fresh = || FileEntry {
            elf: elf.clone(),
            units: None,
            functions: HashMap::new(),
        };
        let entry = self
            .files
            .entry(elf.path().to_path_buf())
            .or_insert_with(fresh);
        if !Arc::ptr_eq(&entry.elf, elf) {
            *entry = fresh();
        }
        let units = entry.units.get_or_insert_with(|| unit_index(elf));
        // The symbol says whether the function is a clone (its debug info
        // does not: a clone's DIE looks like any out-of-line instance).
        let clone = match elf.function_at(addr) {
            Some((f, 0)) => CloneKind::of(&f.name),
            _ => None,
        };
        let sig = match units {
            Ok(units) => signature(elf, units, addr.0, clone)
                .ok()
                .flatten()
                .map(Arc::new),
            Err(_) => None,
        };
        entry.functions.insert(addr.0, sig.clone());
        sig
    }
}

/// The error of `path`'s DWARF, for `reason`.
fn dwarf_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Dwarf {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The file's DWARF sections (only slices of the file: cheap to make).
fn load(elf: &ElfFile) -> Result<gimli::Dwarf<R<'_>>> {
    gimli::Dwarf::load(|id: gimli::SectionId| -> Result<R<'_>> {
        Ok(EndianSlice::new(
            elf.debug_section(id.name())?,
            LittleEndian,
        ))
    })
}

/// Which unit covers which addresses: from `.debug_aranges` when present (no unit
/// is parsed), else from each unit's root DIE.
fn unit_index(elf: &ElfFile) -> Result<UnitIndex> {
    let info = elf.debug_section(".debug_info")?;
    if info.is_empty() {
        return Err(dwarf_err(elf.path(), "no .debug_info"));
    }
    let mut index = UnitIndex::new();
    let aranges = elf.debug_section(".debug_aranges")?;
    if !aranges.is_empty() {
        let aranges = gimli::DebugAranges::new(aranges, LittleEndian);
        let mut headers = aranges.headers();
        while let Some(header) = headers.next().map_err(|e| dwarf_err(elf.path(), e))? {
            let unit = header.debug_info_offset().0;
            let mut entries = header.entries();
            while let Some(e) = entries.next().map_err(|e| dwarf_err(elf.path(), e))? {
                let r = e.range();
                if r.begin < r.end {
                    index.push((r.begin, r.end, unit));
                }
            }
        }
    }
    // Units the aranges do not describe (some toolchains leave some out) are
    // found by their own ranges.
    let covered: std::collections::HashSet<usize> = index.iter().map(|&(_, _, u)| u).collect();
    let dwarf = load(elf)?;
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| dwarf_err(elf.path(), e))? {
        let Some(offset) = header.debug_info_offset() else {
            continue;
        };
        if covered.contains(&offset.0) {
            continue;
        }
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut ranges = dwarf
            .unit_ranges(&unit)
            .map_err(|e| dwarf_err(elf.path(), e))?;
        while let Some(r) = ranges.next().map_err(|e| dwarf_err(elf.path(), e))? {
            if r.begin < r.end {
                index.push((r.begin, r.end, offset.0));
            }
        }
    }
    index.sort_unstable();
    Ok(index)
}

/// What kind of compiler clone a function is (see [`is_clone`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloneKind {
    /// IPA-SRA may also have dropped the return value (every caller ignored
    /// it): rax is then whatever the clone left there.
    Isra,
    /// The return value is the original's.
    Other,
}

impl CloneKind {
    fn of(symbol: &str) -> Option<CloneKind> {
        if symbol.contains(".isra.") {
            Some(CloneKind::Isra)
        } else {
            is_clone(symbol).then_some(CloneKind::Other)
        }
    }
}

/// The signature of the function whose entry is `addr`, from the unit(s) whose
/// ranges contain it.
fn signature(
    elf: &ElfFile,
    index: &UnitIndex,
    addr: u64,
    clone: Option<CloneKind>,
) -> Result<Option<Signature>> {
    let dwarf = load(elf)?;
    let mut tried = Vec::new();
    for &(begin, end, unit) in index {
        if !(begin <= addr && addr < end) || tried.contains(&unit) {
            continue;
        }
        tried.push(unit);
        let header = dwarf
            .unit_header(gimli::DebugInfoOffset(unit))
            .map_err(|e| dwarf_err(elf.path(), e))?;
        let unit = dwarf.unit(header).map_err(|e| dwarf_err(elf.path(), e))?;
        let reader = UnitReader {
            path: elf.path(),
            dwarf: &dwarf,
            unit: &unit,
        };
        if let Some(sig) = reader.find_function(addr, clone)? {
            return Ok(Some(sig));
        }
    }
    Ok(None)
}

/// Reads DIEs of one unit.
struct UnitReader<'d, 'a> {
    /// The file, for errors.
    path: &'d Path,
    dwarf: &'d gimli::Dwarf<R<'a>>,
    unit: &'d gimli::Unit<R<'a>>,
}

impl<'a> UnitReader<'_, 'a> {
    /// The error of this file's DWARF, for `reason`.
    fn err(&self, reason: impl std::fmt::Display) -> Error {
        dwarf_err(self.path, reason)
    }

    fn find_function(&self, addr: u64, clone: Option<CloneKind>) -> Result<Option<Signature>> {
        let mut cursor = self.unit.entries();
        while let Some(die) = cursor.next_dfs().map_err(|e| self.err(e))? {
            if die.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let mut ranges = self
                .dwarf
                .die_ranges(self.unit, die)
                .map_err(|e| self.err(e))?;
            let mut starts_here = false;
            while let Some(r) = ranges.next().map_err(|e| self.err(e))? {
                if r.begin == addr {
                    starts_here = true;
                    break;
                }
            }
            if starts_here {
                let die = die.clone();
                return self.signature_of(&die, addr, clone).map(Some);
            }
        }
        Ok(None)
    }

    fn entry(&self, offset: UnitOffset) -> Result<Die<'a>> {
        self.unit.entry(offset).map_err(|e| self.err(e))
    }

    /// The DIE an attribute refers to, when it has the attribute. A
    /// reference into another unit (`DW_FORM_ref_addr`, as LTO writes them)
    /// is an error: what it names is not read, and a signature missing it
    /// would be made up.
    fn reference(&self, die: &Die<'a>, at: gimli::DwAt) -> Result<Option<Die<'a>>> {
        match die.attr_value(at) {
            Some(AttributeValue::UnitRef(off)) => self.entry(off).map(Some),
            Some(AttributeValue::DebugInfoRef(_) | AttributeValue::DebugInfoRefSup(_)) => {
                Err(self.err(CROSS_UNIT))
            }
            _ => Ok(None),
        }
    }

    /// An attribute of `die`, or of the DIE it is a concrete instance or the
    /// definition of (`DW_AT_abstract_origin`, `DW_AT_specification`).
    fn inherited(&self, die: &Die<'a>, at: gimli::DwAt) -> Result<Option<AttributeValue<R<'a>>>> {
        let mut die = die.clone();
        for _ in 0..MAX_DEPTH {
            if let Some(v) = die.attr_value(at) {
                return Ok(Some(v));
            }
            let next = match self.reference(&die, gimli::DW_AT_abstract_origin)? {
                Some(d) => d,
                None => match self.reference(&die, gimli::DW_AT_specification)? {
                    Some(d) => d,
                    None => return Ok(None),
                },
            };
            die = next;
        }
        Ok(None)
    }

    fn name(&self, die: &Die<'a>) -> Result<Option<String>> {
        match self.inherited(die, gimli::DW_AT_name)? {
            Some(v) => {
                let s = self
                    .dwarf
                    .attr_string(self.unit, v)
                    .map_err(|e| self.err(e))?;
                Ok(Some(s.to_string_lossy().into_owned()))
            }
            None => Ok(None),
        }
    }

    /// The type of a DIE's `DW_AT_type` (followed through its origin), or
    /// `none` when it has none: `void` for a function's return, but nothing
    /// known for a parameter.
    fn type_or(&self, die: &Die<'a>, none: Type) -> Result<Type> {
        match self.inherited(die, gimli::DW_AT_type)? {
            None => Ok(none),
            Some(AttributeValue::UnitRef(off)) => self.resolve(off, 0),
            Some(AttributeValue::DebugInfoRef(_) | AttributeValue::DebugInfoRefSup(_)) => {
                Err(self.err(CROSS_UNIT))
            }
            Some(_) => Ok(Type::Unknown),
        }
    }

    /// The signature of the subprogram `die` whose entry is `addr`: the formal
    /// parameters of the declaration (its own children, or those of the
    /// abstract instance or declaration it is a concrete copy of when it lists
    /// none) and its return type.
    ///
    /// Refused (an error, so the caller falls back to a prototype or raw
    /// registers) when the debug info does not say what the parameters are:
    /// an assembler unit (its DIEs only name the code), a function listing no
    /// parameter that is not known to take none (a C function not
    /// `DW_AT_prototyped` is K&R or built with -g1; in another language, one
    /// whose unit has no type at all is -g1), a reference into another unit.
    fn signature_of(
        &self,
        die: &Die<'a>,
        addr: u64,
        clone: Option<CloneKind>,
    ) -> Result<Signature> {
        let language = self.language();
        if language == Some(gimli::DW_LANG_Mips_Assembler) {
            return Err(self.err("an assembler unit: no parameters described"));
        }
        let own = self.children(die.offset())?;
        let origin = match self.reference(die, gimli::DW_AT_abstract_origin)? {
            Some(d) => Some(d),
            None => self.reference(die, gimli::DW_AT_specification)?,
        };
        let declared = match &origin {
            Some(o) if own.params.is_empty() || clone.is_some() => self.children(o.offset())?,
            _ => own.clone(),
        };
        if declared.params.is_empty() && !declared.variadic {
            let prototyped = matches!(
                self.inherited(die, gimli::DW_AT_prototyped)?,
                Some(AttributeValue::Flag(true))
            );
            let void_known = if is_c(language) {
                prototyped
            } else {
                prototyped
                    || self.inherited(die, gimli::DW_AT_type)?.is_some()
                    || self.unit_has_types()?
            };
            if !void_known {
                return Err(self.err("no parameters described (unprototyped, or -g1)"));
            }
        }
        let mut params = Vec::with_capacity(declared.params.len());
        for p in &declared.params {
            let die = self.entry(*p)?;
            params.push(Param {
                name: self.name(&die)?,
                ty: self.type_or(&die, Type::Unknown)?,
            });
        }
        let mut ret = self.type_or(die, Type::Void)?;
        let described = match clone {
            None => None,
            Some(kind) => {
                if kind == CloneKind::Isra && ret != Type::Void {
                    ret = Type::Unknown;
                }
                Some(self.clone_locations(die, addr, &own, &declared, &mut params)?)
            }
        };
        Ok(Signature {
            params,
            variadic: declared.variadic,
            ret,
            described,
            located: Default::default(),
        })
    }

    /// Where each parameter of a clone is at its entry `addr`, from the
    /// clone's own formal parameters (each names the declared one it stands
    /// for with `DW_AT_abstract_origin`): in the declared order, a parameter
    /// the clone does not list being [`Loc::Unavailable`]. A parameter of the
    /// clone's own (no origin) is added after the declared ones. A clone that
    /// lists none of its parameters says nothing: an error.
    fn clone_locations(
        &self,
        die: &Die<'a>,
        addr: u64,
        own: &Children,
        declared: &Children,
        params: &mut Vec<Param>,
    ) -> Result<Vec<Loc>> {
        if own.params.is_empty() && !declared.params.is_empty() {
            return Err(self.err("a clone whose debug info lists no parameter"));
        }
        let cfa_based = self.frame_base_is_cfa(die);
        let mut locs = vec![Loc::Unavailable; declared.params.len()];
        for &p in &own.params {
            let param = self.entry(p)?;
            let origin = match param.attr_value(gimli::DW_AT_abstract_origin) {
                Some(AttributeValue::UnitRef(off)) => Some(off),
                Some(AttributeValue::DebugInfoRef(_) | AttributeValue::DebugInfoRefSup(_)) => {
                    return Err(self.err(CROSS_UNIT))
                }
                _ => None,
            };
            let loc = location::at_entry(self.dwarf, self.unit, &param, addr, cfa_based)
                .map_err(|e| self.err(e))?;
            let i = match origin.and_then(|o| declared.params.iter().position(|&d| d == o)) {
                Some(i) => i,
                None => {
                    params.push(Param {
                        name: self.name(&param)?,
                        ty: self.type_or(&param, Type::Unknown)?,
                    });
                    locs.push(Loc::Unavailable);
                    params.len() - 1
                }
            };
            // A stack slot holds as many bytes as the parameter's type.
            locs[i] = match loc {
                Loc::Stack { offset, .. } => match sysv::stack_size(&params[i].ty) {
                    Some(size) => Loc::Stack { offset, size },
                    None => Loc::Unavailable,
                },
                other @ (Loc::Gp(_)
                | Loc::Split(_)
                | Loc::Reg(_)
                | Loc::Vector(_)
                | Loc::Const(_)
                | Loc::Unavailable
                | Loc::Nowhere) => other,
            };
        }
        Ok(locs)
    }

    /// True when the subprogram's frame base is the call frame address
    /// (`DW_OP_call_frame_cfa`, what GCC writes): `sp + 8` at its entry.
    fn frame_base_is_cfa(&self, die: &Die<'a>) -> bool {
        let Some(AttributeValue::Exprloc(expr)) = die.attr_value(gimli::DW_AT_frame_base) else {
            return false;
        };
        let mut ops = expr.operations(self.unit.encoding());
        matches!(ops.next(), Ok(Some(gimli::Operation::CallFrameCFA)))
            && matches!(ops.next(), Ok(None))
    }

    /// The formal parameters (their DIEs) and `...` of the subprogram at
    /// `offset`.
    fn children(&self, offset: UnitOffset) -> Result<Children> {
        let mut tree = self
            .unit
            .entries_tree(Some(offset))
            .map_err(|e| self.err(e))?;
        let root = tree.root().map_err(|e| self.err(e))?;
        let mut children = root.children();
        let mut out = Children::default();
        while let Some(child) = children.next().map_err(|e| self.err(e))? {
            let die = child.entry();
            match die.tag() {
                gimli::DW_TAG_formal_parameter => out.params.push(die.offset()),
                gimli::DW_TAG_unspecified_parameters => out.variadic = true,
                _ => {}
            }
        }
        Ok(out)
    }

    /// The unit's source language.
    fn language(&self) -> Option<gimli::DwLang> {
        let mut cursor = self.unit.entries();
        let root = cursor.next_dfs().ok()??;
        match root.attr_value(gimli::DW_AT_language) {
            Some(AttributeValue::Language(l)) => Some(l),
            _ => None,
        }
    }

    /// True when the unit describes any type (-g1 describes none).
    fn unit_has_types(&self) -> Result<bool> {
        let mut tree = self.unit.entries_tree(None).map_err(|e| self.err(e))?;
        let root = tree.root().map_err(|e| self.err(e))?;
        let mut children = root.children();
        while let Some(child) = children.next().map_err(|e| self.err(e))? {
            if matches!(
                child.entry().tag(),
                gimli::DW_TAG_base_type
                    | gimli::DW_TAG_pointer_type
                    | gimli::DW_TAG_structure_type
                    | gimli::DW_TAG_class_type
                    | gimli::DW_TAG_union_type
                    | gimli::DW_TAG_typedef
            ) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn size(die: &Die<'a>) -> Option<u64> {
        die.attr_value(gimli::DW_AT_byte_size)?.udata_value()
    }

    /// `DW_AT_alignment` (DWARF 5, written for `_Alignas` and `aligned`), when
    /// it is a power of two.
    fn alignment(die: &Die<'a>) -> Option<u64> {
        let a = die.attr_value(gimli::DW_AT_alignment)?.udata_value()?;
        a.is_power_of_two().then_some(a)
    }

    /// The type at `offset`, typedefs and qualifiers followed.
    fn resolve(&self, offset: UnitOffset, depth: usize) -> Result<Type> {
        if depth > MAX_DEPTH {
            return Ok(Type::Unknown);
        }
        let die = self.entry(offset)?;
        Ok(match die.tag() {
            gimli::DW_TAG_typedef
            | gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_restrict_type
            | gimli::DW_TAG_atomic_type => match die.attr_value(gimli::DW_AT_type) {
                Some(AttributeValue::UnitRef(off)) => self.resolve(off, depth + 1)?,
                // `const void`: only reachable behind a pointer.
                None => Type::Void,
                Some(_) => Type::Unknown,
            },
            gimli::DW_TAG_base_type => self.base_type(&die)?,
            gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_reference_type
            | gimli::DW_TAG_rvalue_reference_type => Type::Pointer {
                string: match die.attr_value(gimli::DW_AT_type) {
                    Some(AttributeValue::UnitRef(off)) => self.is_char(off, depth + 1)?,
                    _ => false,
                },
            },
            gimli::DW_TAG_enumeration_type => self.enumeration(&die, depth)?,
            gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type | gimli::DW_TAG_union_type => {
                let keyword = match die.tag() {
                    gimli::DW_TAG_union_type => "union",
                    gimli::DW_TAG_class_type => "class",
                    _ => "struct",
                };
                let layout = self.layout(&die, depth);
                Type::Aggregate {
                    keyword,
                    name: self.name(&die)?,
                    align: layout.as_ref().map_or(1, |l| l.align),
                    passing: match layout {
                        Some(l) if l.by_reference => Passing::ByReference,
                        Some(l) => sysv::aggregate(l.size, l.align, &l.fields),
                        None => Passing::Unknown,
                    },
                }
            }
            _ => Type::Unknown,
        })
    }

    /// True when the type at `offset` is a one-byte character type (through
    /// typedefs and qualifiers). Only that is asked of a pointer's target, never
    /// its full type: a struct that points to itself must not be expanded.
    fn is_char(&self, offset: UnitOffset, depth: usize) -> Result<bool> {
        if depth > MAX_DEPTH {
            return Ok(false);
        }
        let die = self.entry(offset)?;
        Ok(match die.tag() {
            gimli::DW_TAG_typedef
            | gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_restrict_type
            | gimli::DW_TAG_atomic_type => match die.attr_value(gimli::DW_AT_type) {
                Some(AttributeValue::UnitRef(off)) => self.is_char(off, depth + 1)?,
                _ => false,
            },
            gimli::DW_TAG_base_type => {
                Self::size(&die) == Some(1)
                    && matches!(
                        die.attr_value(gimli::DW_AT_encoding),
                        Some(AttributeValue::Encoding(
                            gimli::DW_ATE_signed_char | gimli::DW_ATE_unsigned_char
                        ))
                    )
            }
            _ => false,
        })
    }

    fn base_type(&self, die: &Die<'a>) -> Result<Type> {
        let Some(size) = Self::size(die) else {
            return Ok(Type::Unknown);
        };
        let encoding = match die.attr_value(gimli::DW_AT_encoding) {
            Some(AttributeValue::Encoding(e)) => e,
            _ => return Ok(Type::Unknown),
        };
        let name = self.name(die)?.unwrap_or_default();
        Ok(match encoding {
            gimli::DW_ATE_signed_char | gimli::DW_ATE_unsigned_char
                if size == 1 && name == "char" =>
            {
                Type::Char
            }
            gimli::DW_ATE_signed | gimli::DW_ATE_signed_char
                if matches!(size, 1 | 2 | 4 | 8 | 16) =>
            {
                Type::Int { size, signed: true }
            }
            gimli::DW_ATE_unsigned | gimli::DW_ATE_unsigned_char | gimli::DW_ATE_UTF
                if matches!(size, 1 | 2 | 4 | 8 | 16) =>
            {
                Type::Int {
                    size,
                    signed: false,
                }
            }
            gimli::DW_ATE_boolean if matches!(size, 1 | 2 | 4 | 8) => Type::Bool { size },
            gimli::DW_ATE_float => Type::Float {
                size,
                complex: false,
                x87: name.contains("long double"),
            },
            gimli::DW_ATE_complex_float => Type::Float {
                size,
                complex: true,
                x87: name.contains("long double"),
            },
            _ => Type::Unknown,
        })
    }

    fn enumeration(&self, die: &Die<'a>, depth: usize) -> Result<Type> {
        let underlying = match die.attr_value(gimli::DW_AT_type) {
            Some(AttributeValue::UnitRef(off)) => Some(self.resolve(off, depth + 1)?),
            _ => None,
        };
        let size = match (Self::size(die), &underlying) {
            (Some(s), _) => s,
            (None, Some(Type::Int { size, .. })) => *size,
            (None, _) => return Ok(Type::Unknown),
        };
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Ok(Type::Unknown);
        }
        let mask = if size == 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        };
        let mut values = Vec::new();
        let mut negative = false;
        let mut tree = self
            .unit
            .entries_tree(Some(die.offset()))
            .map_err(|e| self.err(e))?;
        let root = tree.root().map_err(|e| self.err(e))?;
        let mut children = root.children();
        while let Some(child) = children.next().map_err(|e| self.err(e))? {
            let e = child.entry();
            if e.tag() != gimli::DW_TAG_enumerator {
                continue;
            }
            let v = match e.attr_value(gimli::DW_AT_const_value) {
                Some(AttributeValue::Sdata(v)) => {
                    negative |= v < 0;
                    v as u64
                }
                Some(AttributeValue::Udata(v)) => v,
                Some(AttributeValue::Data1(v)) => u64::from(v),
                Some(AttributeValue::Data2(v)) => u64::from(v),
                Some(AttributeValue::Data4(v)) => u64::from(v),
                Some(AttributeValue::Data8(v)) => v,
                _ => continue,
            };
            if let Some(name) = self.name(e)? {
                values.push((v & mask, name));
            }
        }
        let signed = match underlying {
            Some(Type::Int { signed, .. }) => signed,
            Some(
                Type::Void
                | Type::Octal { .. }
                | Type::Char
                | Type::Bool { .. }
                | Type::Float { .. }
                | Type::Pointer { .. }
                | Type::Enum { .. }
                | Type::Aggregate { .. }
                | Type::Unknown,
            )
            | None => negative,
        };
        Ok(Type::Enum {
            size,
            signed,
            values,
        })
    }

    /// The scalar fields of an aggregate at their byte offsets (nested
    /// aggregates and arrays flattened), with its size and alignment. None when
    /// its layout cannot be known.
    fn layout(&self, die: &Die<'a>, depth: usize) -> Option<Layout> {
        if depth > MAX_DEPTH || die.attr_value(gimli::DW_AT_declaration).is_some() {
            return None;
        }
        // C++: a class with a non-trivial copy constructor or destructor is
        // passed by invisible reference (Itanium C++ ABI 3.1.2). Clang says
        // which with DW_AT_calling_convention; GCC does not, so without it only
        // a class that declares no member function at all (every user-declared
        // one is listed in its DIE), has no base class and whose members are
        // such classes or scalars is taken to be passed by value.
        let plain_only = match die.attr_value(gimli::DW_AT_calling_convention) {
            Some(AttributeValue::CallingConvention(gimli::DW_CC_pass_by_reference)) => {
                return Some(Layout::by_reference())
            }
            Some(AttributeValue::CallingConvention(gimli::DW_CC_pass_by_value)) => false,
            Some(_) => return None,
            None => self.is_cplusplus(),
        };
        let size = Self::size(die)?;
        let mut layout = Layout {
            size,
            // `struct __attribute__((aligned(16))) s`: DWARF 5's
            // DW_AT_alignment on the type itself.
            align: Self::alignment(die).unwrap_or(1),
            fields: Vec::new(),
            by_reference: false,
        };
        let is_union = die.tag() == gimli::DW_TAG_union_type;
        let mut tree = self.unit.entries_tree(Some(die.offset())).ok()?;
        let root = tree.root().ok()?;
        let mut children = root.children();
        while let Some(child) = children.next().ok()? {
            let m = child.entry();
            if m.tag() == gimli::DW_TAG_inheritance
                || (plain_only && m.tag() == gimli::DW_TAG_subprogram)
            {
                return None;
            }
            if m.tag() != gimli::DW_TAG_member || m.attr_value(gimli::DW_AT_external).is_some() {
                continue;
            }
            let ty = match m.attr_value(gimli::DW_AT_type) {
                Some(AttributeValue::UnitRef(off)) => off,
                _ => return None,
            };
            if let Some(bits) = m
                .attr_value(gimli::DW_AT_bit_size)
                .and_then(|v| v.udata_value())
            {
                // A bit-field: INTEGER over the bytes it touches.
                let (first, last) = match m.attr_value(gimli::DW_AT_data_bit_offset) {
                    Some(v) => {
                        let start = v.udata_value()?;
                        (start / 8, start.checked_add(bits)?.div_ceil(8))
                    }
                    // DWARF 2/3 bit-fields: the whole storage unit they live in.
                    None => {
                        let at = m
                            .attr_value(gimli::DW_AT_data_member_location)
                            .and_then(|v| v.udata_value())
                            .unwrap_or(0);
                        let unit = Self::size(m)
                            .or_else(|| self.field_layout(ty, depth + 1).map(|l| l.size))?;
                        (at, at.checked_add(unit)?)
                    }
                };
                for b in first..last.min(first.saturating_add(64)) {
                    layout.fields.push((b, 1, Class::Integer));
                }
                layout.align = layout.align.max(1);
                continue;
            }
            let offset = if is_union {
                0
            } else {
                m.attr_value(gimli::DW_AT_data_member_location)?
                    .udata_value()?
            };
            let sub = self.field_layout(ty, depth + 1)?;
            if sub.by_reference {
                return None;
            }
            if sub.align > 0 && offset % sub.align != 0 {
                // Unaligned (packed) fields: passed in memory.
                layout.fields.push((offset, sub.size.max(1), Class::Memory));
            }
            // `_Alignas(16) long a;`: the member's own DW_AT_alignment raises
            // the aggregate's alignment beyond its type's.
            let member_align = Self::alignment(m).unwrap_or(1);
            layout.align = layout.align.max(sub.align).max(member_align);
            for (o, s, c) in sub.fields {
                layout.fields.push((offset.checked_add(o)?, s, c));
            }
        }
        Some(layout)
    }

    /// The layout of a field's type: a scalar is one field at offset 0.
    fn field_layout(&self, offset: UnitOffset, depth: usize) -> Option<Layout> {
        if depth > MAX_DEPTH {
            return None;
        }
        let die = self.entry(offset).ok()?;
        match die.tag() {
            gimli::DW_TAG_typedef
            | gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_atomic_type => match die.attr_value(gimli::DW_AT_type) {
                Some(AttributeValue::UnitRef(off)) => {
                    // `typedef long wide __attribute__((aligned(16)))`.
                    let mut l = self.field_layout(off, depth + 1)?;
                    l.align = l.align.max(Self::alignment(&die).unwrap_or(1));
                    Some(l)
                }
                _ => None,
            },
            gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type | gimli::DW_TAG_union_type => {
                self.layout(&die, depth + 1)
            }
            gimli::DW_TAG_array_type => {
                let elem = match die.attr_value(gimli::DW_AT_type) {
                    Some(AttributeValue::UnitRef(off)) => self.field_layout(off, depth + 1)?,
                    _ => return None,
                };
                let count = self.array_count(&die)?;
                let mut layout = Layout {
                    size: elem.size.checked_mul(count)?,
                    align: elem.align,
                    fields: Vec::new(),
                    by_reference: false,
                };
                // Beyond 16 bytes the aggregate is in memory whatever its fields;
                // do not expand huge arrays.
                for i in 0..count.min(16) {
                    for &(o, s, c) in &elem.fields {
                        layout
                            .fields
                            .push((i.checked_mul(elem.size)?.checked_add(o)?, s, c));
                    }
                }
                Some(layout)
            }
            _ => {
                let ty = self.resolve(offset, depth + 1).ok()?;
                let (size, class) = match ty {
                    Type::Int { size, .. }
                    | Type::Octal { size }
                    | Type::Bool { size }
                    | Type::Enum { size, .. } => (size, Class::Integer),
                    Type::Char => (1, Class::Integer),
                    Type::Pointer { .. } => (8, Class::Integer),
                    Type::Float {
                        x87: true, size, ..
                    } => (size, Class::Memory),
                    Type::Float { size, .. } => (size, Class::Sse),
                    Type::Void | Type::Aggregate { .. } | Type::Unknown => return None,
                };
                let align = match ty {
                    Type::Float {
                        complex: true,
                        size,
                        ..
                    } => size / 2,
                    Type::Float { .. }
                    | Type::Int { .. }
                    | Type::Octal { .. }
                    | Type::Bool { .. }
                    | Type::Enum { .. }
                    | Type::Char
                    | Type::Pointer { .. }
                    | Type::Void
                    | Type::Aggregate { .. }
                    | Type::Unknown => size,
                }
                .clamp(1, 16);
                Some(Layout {
                    size,
                    align,
                    fields: vec![(0, size, class)],
                    by_reference: false,
                })
            }
        }
    }

    /// The element count of a one-dimensional array (multi-dimensional arrays
    /// multiply their subranges).
    fn array_count(&self, die: &Die<'a>) -> Option<u64> {
        let mut tree = self.unit.entries_tree(Some(die.offset())).ok()?;
        let root = tree.root().ok()?;
        let mut children = root.children();
        let mut total: u64 = 1;
        let mut any = false;
        while let Some(child) = children.next().ok()? {
            let e = child.entry();
            if e.tag() != gimli::DW_TAG_subrange_type {
                continue;
            }
            any = true;
            let n = match e.attr_value(gimli::DW_AT_count) {
                Some(v) => v.udata_value()?,
                None => match e.attr_value(gimli::DW_AT_upper_bound) {
                    Some(v) => v.udata_value()?.checked_add(1)?,
                    // A flexible array member: no bytes of its own.
                    None => 0,
                },
            };
            total = total.checked_mul(n)?;
        }
        any.then_some(total)
    }

    fn is_cplusplus(&self) -> bool {
        matches!(
            self.language(),
            Some(
                gimli::DW_LANG_C_plus_plus
                    | gimli::DW_LANG_C_plus_plus_03
                    | gimli::DW_LANG_C_plus_plus_11
                    | gimli::DW_LANG_C_plus_plus_14
            )
        )
    }
}

/// Why a signature naming a DIE of another unit is refused.
const CROSS_UNIT: &str = "a reference into another unit (LTO)";

/// The formal parameters of a subprogram DIE, by offset, and whether it is
/// variadic.
#[derive(Clone, Default)]
struct Children {
    params: Vec<UnitOffset>,
    variadic: bool,
}

/// True for the C dialects, where a function that lists no parameter takes
/// none only when it is `DW_AT_prototyped` (`int f(void)`, not `int f()`).
fn is_c(language: Option<gimli::DwLang>) -> bool {
    matches!(
        language,
        Some(
            gimli::DW_LANG_C
                | gimli::DW_LANG_C89
                | gimli::DW_LANG_C99
                | gimli::DW_LANG_C11
                | gimli::DW_LANG_C17
                | gimli::DW_LANG_ObjC
        )
    )
}

/// An aggregate's layout: scalar fields as `(offset, size, class)`.
struct Layout {
    size: u64,
    align: u64,
    fields: Vec<(u64, u64, Class)>,
    /// A C++ type passed by invisible reference.
    by_reference: bool,
}

impl Layout {
    fn by_reference() -> Layout {
        Layout {
            size: 8,
            align: 8,
            fields: Vec::new(),
            by_reference: true,
        }
    }
}

#[cfg(test)]
mod tests;
