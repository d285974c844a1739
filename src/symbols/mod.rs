//! Symbols: from files and `/proc/PID/maps` to owned indices.
//!
//! This layer is pure: it reads files and the text of `/proc/PID/maps`, and answers
//! questions about them. It never touches a tracee (no ptrace, no tracee memory), so
//! all of it is unit-testable without a process.
//!
//! Its public part is what a handler meets: the [`Module`] a site is in (given
//! to `Handler::fast`, with its symbols and DWARF), a [`Symbolized`] address,
//! and the [`ProbeSpec`] a probe is added with. The files below are the
//! engine's.
//!
//! - `spec`: parsing probe specs (`openat`, `libc:str*`, `work+0x8`, `count.c:12`, …)
//! - `glob`: shell-style `*` / `?` matching
//! - `maps`: `/proc/PID/maps` parsing
//! - `elf`: one ELF file: symbols (.symtab, else .dynsym), segments, code bytes,
//!   DWARF line tables (lazy)
//! - `cfi`: call frame information (`.eh_frame`, `.debug_frame`): the rule that
//!   finds a caller's frame, lazy and cached per file
//! - `debugfile`: where a stripped binary's separate debug file is (build-id,
//!   `.gnu_debuglink`)
//! - `dwarf`: function signatures (parameter names and types) from DWARF, lazy and
//!   cached per function, and where the SysV convention puts each argument
//! - `modules`: the loaded modules of a process, with their load bias
//! - `location`: a place a spec resolved to (shared by `resolve` and `ifunc`)
//! - `resolve`: a spec against the module map → runtime addresses
//!   (and `--list`'s probe points)
//! - `demangle`: C++ and Rust names, for output and for matching specs
//! - `ifunc`: where an IFUNC's implementation is written (the engine reads it)

pub(crate) mod cfi;
pub(crate) mod debugfile;
pub(crate) mod demangle;
pub(crate) mod dwarf;
pub(crate) mod elf;
pub(crate) mod glob;
pub(crate) mod ifunc;
pub(crate) mod location;
pub(crate) mod maps;
pub(crate) mod modules;
pub(crate) mod resolve;
pub(crate) mod spec;
#[cfg(test)]
mod test_support;

pub use modules::{Module, Symbolized};
pub use spec::{ProbeSpec, Target};

// The file reader behind `Module`, for tests that check what it reads.
#[doc(hidden)]
pub use elf::ElfFile;

pub(crate) use elf::ElfCache;
pub(crate) use modules::ModuleMap;
pub(crate) use resolve::{reserved, resolve, short_name, Location, Resolution};
