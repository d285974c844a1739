//! Symbols: from files and `/proc/PID/maps` to owned indices.
//!
//! This layer is pure: it reads files and the text of `/proc/PID/maps`, and answers
//! questions about them. It never touches a tracee (no ptrace, no tracee memory), so
//! all of it is unit-testable without a process.
//!
//! - [`spec`]: parsing probe specs (`openat`, `libc:str*`, `work+0x8`, `count.c:12`, …)
//! - [`glob`]: shell-style `*` / `?` matching
//! - [`maps`]: `/proc/PID/maps` parsing
//! - [`elf`]: one ELF file: symbols (.symtab, else .dynsym), segments, code bytes,
//!   DWARF line tables (lazy)
//! - [`cfi`]: call frame information (`.eh_frame`, `.debug_frame`): the rule that
//!   finds a caller's frame, lazy and cached per file
//! - [`debugfile`]: where a stripped binary's separate debug file is (build-id,
//!   `.gnu_debuglink`)
//! - [`dwarf`]: function signatures (parameter names and types) from DWARF, lazy and
//!   cached per function, and where the SysV convention puts each argument
//! - [`modules`]: the loaded modules of a process, with their load bias
//! - [`location`]: a place a spec resolved to (shared by `resolve` and `ifunc`)
//! - [`resolve`](mod@resolve): a spec against the module map → runtime addresses
//!   (and `--list`'s probe points)
//! - [`demangle`]: C++ and Rust names, for output and for matching specs
//! - [`ifunc`]: where an IFUNC's implementation is written (the engine reads it)

pub mod cfi;
pub mod debugfile;
pub mod demangle;
pub mod dwarf;
pub mod elf;
pub mod glob;
pub mod ifunc;
pub mod location;
pub mod maps;
pub mod modules;
pub mod resolve;
pub mod spec;
#[cfg(test)]
mod test_support;

pub use elf::{ElfCache, ElfFile, Segment, SymKind, Symbol};
pub use maps::Mapping;
pub use modules::{Module, ModuleMap, Symbolized};
pub use resolve::{modules_defining, reserved, resolve, Location, Resolution};
pub use spec::{ProbeSpec, Target};
