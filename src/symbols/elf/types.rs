//! The values an ELF file is read into: symbols, segments, relocations and
//! what the dynamic section asks for. Plain data, shared by the reader
//! (`read`), the symbol index (`symtab`) and the queries (`mod.rs`).
use crate::addr::{FileOffset, LinkAddr};

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
    /// The offset in the module's TLS block its symbol stands for: the
    /// symbol's value when it is thread-local (STT_TLS), 0 when the
    /// relocation has no symbol (the addend alone is the offset), None for
    /// any other symbol.
    pub tls_offset: Option<u64>,
}

pub use goblin::elf::reloc::{
    R_X86_64_GLOB_DAT, R_X86_64_IRELATIVE, R_X86_64_JUMP_SLOT, R_X86_64_TPOFF64,
};

/// What a file's dynamic section asks of the dynamic linker: the libraries
/// it needs and where to look for them, as written (`$ORIGIN` unexpanded),
/// in the order they appear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dependencies {
    /// DT_NEEDED: library names (`libc.so.6`), or paths when they hold a `/`.
    pub needed: Vec<String>,
    /// DT_RPATH: colon-separated directory lists.
    pub rpath: Vec<String>,
    /// DT_RUNPATH: colon-separated directory lists.
    pub runpath: Vec<String>,
}
