//! Rendering of arguments and return values, shared by the text and JSON printers.
//!
//! This file owns the mapping from raw register and stack values to the strings
//! a user reads. Four sources, best first:
//!
//! 0. **The user's prototypes** ([`Prototypes`], `--proto`): C declarations
//!    made into the [`Signature`] DWARF would give, and rendered as DWARF's
//!    ([`Known::Dwarf`]); they win over everything below, in any module.
//! 1. **DWARF** ([`Signatures`]): parameter names and types of a function with
//!    debug info. Integers by their width and sign, `char *` as a quoted
//!    string, enums by name, `bool` as `true`/`false`, other pointers in hex, a
//!    struct or union passed by value as `{struct point: 0x300000002}`: its
//!    raw register eightbytes when it travels in registers (`?` for one in a
//!    vector register), `{struct big @ 0x7ffd…}` when it is in memory (its
//!    fields are never decoded).
//!    Arguments are found where the SysV convention put them
//!    ([`sysv::locate`]), or for a compiler clone where its own debug info
//!    says ([`Signature::locations`]): registers, the stack above the return
//!    address, a constant; one in a vector register (a `float`, a `double`),
//!    which rtrace does not read, is `?`. Return values come from rax, and
//!    rdx for the high eightbyte of a two-register value.
//! 2. **Built-in prototypes** ([`PROTOTYPES`]) of common libc functions, which
//!    libc's own DWARF (when a debug file provides it) would render less well
//!    (`O_RDONLY` rather than `0`); they win over DWARF in the C library only.
//! 3. **Nothing known**: the six SysV argument registers in hex, as ltrace
//!    shows a function it has no prototype for.
//!
//! It must not fail: tracee memory that cannot be read renders as the pointer
//! in hex, never as an error, because a bad pointer passed by the tracee is
//! exactly what a user may be tracing for.

use std::path::PathBuf;
use std::sync::Arc;

use crate::addr::{AddrMap, RuntimeAddr};
use crate::arch::{Gpr, RegSet, Regs};
use crate::error::Result;
use crate::handler::{Capture, Fast, Hit, ProbeKind, Return, Returns, Site};
use crate::symbols::dwarf::sysv::{self, Loc};
use crate::symbols::dwarf::{Signature, Signatures, Type};
use crate::symbols::Module;

use super::cproto::Prototypes;

/// How many bytes of a C string are shown by default, like strace's `-s`
/// (`--string-limit`).
pub const DEFAULT_STRING_LIMIT: usize = 64;

/// The most bytes of stack arguments a fast probe captures for the printer.
const MAX_STACK_CAPTURE: usize = 256;

/// Reads a C string of at most `max` bytes from tracee memory; the flag is true
/// when the terminating NUL was found. [`Hit::read_cstr`](crate::Hit::read_cstr)
/// and [`Return::read_cstr`](crate::Return::read_cstr) have this shape.
pub(crate) type ReadCstr<'a> = &'a dyn Fn(RuntimeAddr, usize) -> Result<(Vec<u8>, bool)>;

/// Reads `len` bytes of tracee memory. [`Hit::read_bytes`](crate::Hit::read_bytes)
/// and [`Return::read_bytes`](crate::Return::read_bytes) have this shape.
pub(crate) type ReadBytes<'a> = &'a dyn Fn(RuntimeAddr, usize) -> Result<Vec<u8>>;

/// Reads `len` bytes of the entry stack at `sp + 8 + offset` (the first stack
/// argument is at offset 0); None when it cannot be read.
pub(crate) type ReadStack<'a> = &'a dyn Fn(u64, usize) -> Option<Vec<u8>>;

/// How one argument of a prototype is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    /// A C `int`: the low 32 bits, signed.
    Int,
    /// A `long`, `ssize_t` or `off_t`: signed 64 bits.
    Long,
    /// A directory fd for the `*at` calls: `AT_FDCWD` or an int.
    DirFd,
    /// A `const char *`: quoted and escaped.
    Str,
    /// A pointer shown as an address (`NULL` when 0).
    Ptr,
    /// A `size_t`: unsigned decimal.
    Size,
    /// Flags with no names here, in hex (`mmap`'s prot and flags, `send`'s).
    Hex,
    /// `open(2)` flags by name.
    OpenFlags,
    /// A `mode_t` in octal.
    Mode,
    /// The `mode_t` of `open`/`openat`: only passed, and so only shown, when the
    /// flags (the previous argument) ask for a file to be created.
    OpenMode,
    /// The mode of `access(2)`: `F_OK` or `R_OK|W_OK|X_OK`.
    AccessMode,
    /// Bytes the function reads (`write`'s buf), as strace shows them: the
    /// first `--string-limit` of them, quoted and escaped, `...` after when
    /// there are more. Their count is argument `len`, times argument `times`
    /// when there is one (`fwrite`'s size × nmemb).
    Buf { len: usize, times: Option<usize> },
    /// Bytes the function fills (`read`'s buf): shown at its return, as many
    /// as it says it filled (its return value, times argument `times`:
    /// `fread`'s size); the pointer at the entry.
    OutBuf { times: Option<usize> },
}

/// How a prototype's return value is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ret {
    /// A C `int`.
    Int,
    /// A `ssize_t`.
    Long,
    /// A `size_t`.
    Size,
    /// A `char *`: the string it points to.
    Str,
    /// A pointer.
    Ptr,
    /// Nothing (`free`, `exit`).
    Void,
}

/// A known function's signature: name, arguments with their names (as the
/// manual pages call them), return value.
pub(crate) struct Prototype {
    name: &'static str,
    args: &'static [(Arg, &'static str)],
    ret: Ret,
}

const fn proto(name: &'static str, args: &'static [(Arg, &'static str)], ret: Ret) -> Prototype {
    Prototype { name, args, ret }
}

/// Built-in prototypes for common libc functions, used when a module has no
/// debug info for them (libc usually has none) and in the C library itself.
const PROTOTYPES: &[Prototype] = {
    use Arg::*;
    const OPENAT: &[(Arg, &str)] = &[
        (DirFd, "dirfd"),
        (Str, "pathname"),
        (OpenFlags, "flags"),
        (OpenMode, "mode"),
    ];
    const OPEN: &[(Arg, &str)] = &[(Str, "pathname"), (OpenFlags, "flags"), (OpenMode, "mode")];
    const IN: Arg = Buf {
        len: 2,
        times: None,
    };
    const OUT: Arg = OutBuf { times: None };
    const READ: &[(Arg, &str)] = &[(Int, "fd"), (OUT, "buf"), (Size, "count")];
    const WRITE: &[(Arg, &str)] = &[(Int, "fd"), (IN, "buf"), (Size, "count")];
    const PREAD: &[(Arg, &str)] = &[(Int, "fd"), (OUT, "buf"), (Size, "count"), (Long, "offset")];
    const PWRITE: &[(Arg, &str)] = &[(Int, "fd"), (IN, "buf"), (Size, "count"), (Long, "offset")];
    const FREAD: &[(Arg, &str)] = &[
        (OutBuf { times: Some(1) }, "ptr"),
        (Size, "size"),
        (Size, "nmemb"),
        (Ptr, "stream"),
    ];
    const FWRITE: &[(Arg, &str)] = &[
        (
            Buf {
                len: 2,
                times: Some(1),
            },
            "ptr",
        ),
        (Size, "size"),
        (Size, "nmemb"),
        (Ptr, "stream"),
    ];
    const SOCKADDR: &[(Arg, &str)] = &[(Int, "sockfd"), (Ptr, "addr"), (Size, "addrlen")];
    const SEND: &[(Arg, &str)] = &[(Int, "sockfd"), (IN, "buf"), (Size, "len"), (Hex, "flags")];
    const RECV: &[(Arg, &str)] = &[(Int, "sockfd"), (OUT, "buf"), (Size, "len"), (Hex, "flags")];
    &[
        proto("openat", OPENAT, Ret::Int),
        proto("openat64", OPENAT, Ret::Int),
        proto("open", OPEN, Ret::Int),
        proto("open64", OPEN, Ret::Int),
        proto("creat", &[(Str, "pathname"), (Mode, "mode")], Ret::Int),
        proto("creat64", &[(Str, "pathname"), (Mode, "mode")], Ret::Int),
        proto("read", READ, Ret::Long),
        proto("write", WRITE, Ret::Long),
        proto("pread", PREAD, Ret::Long),
        proto("pread64", PREAD, Ret::Long),
        proto("pwrite", PWRITE, Ret::Long),
        proto("pwrite64", PWRITE, Ret::Long),
        proto("close", &[(Int, "fd")], Ret::Int),
        proto("malloc", &[(Size, "size")], Ret::Ptr),
        proto("calloc", &[(Size, "nmemb"), (Size, "size")], Ret::Ptr),
        proto("realloc", &[(Ptr, "ptr"), (Size, "size")], Ret::Ptr),
        proto("free", &[(Ptr, "ptr")], Ret::Void),
        proto(
            "memcpy",
            &[(Ptr, "dest"), (IN, "src"), (Size, "n")],
            Ret::Ptr,
        ),
        proto("memset", &[(Ptr, "s"), (Int, "c"), (Size, "n")], Ret::Ptr),
        proto("strlen", &[(Str, "s")], Ret::Size),
        proto("strcmp", &[(Str, "s1"), (Str, "s2")], Ret::Int),
        proto("strcpy", &[(Ptr, "dest"), (Str, "src")], Ret::Ptr),
        proto("fopen", &[(Str, "pathname"), (Str, "mode")], Ret::Ptr),
        proto("fopen64", &[(Str, "pathname"), (Str, "mode")], Ret::Ptr),
        proto("fclose", &[(Ptr, "stream")], Ret::Int),
        proto("fread", FREAD, Ret::Size),
        proto("fwrite", FWRITE, Ret::Size),
        proto("getenv", &[(Str, "name")], Ret::Str),
        proto(
            "setenv",
            &[(Str, "name"), (Str, "value"), (Int, "overwrite")],
            Ret::Int,
        ),
        proto(
            "socket",
            &[(Int, "domain"), (Int, "type"), (Int, "protocol")],
            Ret::Int,
        ),
        proto("connect", SOCKADDR, Ret::Int),
        proto("bind", SOCKADDR, Ret::Int),
        proto(
            "accept",
            &[(Int, "sockfd"), (Ptr, "addr"), (Ptr, "addrlen")],
            Ret::Int,
        ),
        proto("send", SEND, Ret::Long),
        proto("recv", RECV, Ret::Long),
        proto(
            "mmap",
            &[
                (Ptr, "addr"),
                (Size, "length"),
                (Hex, "prot"),
                (Hex, "flags"),
                (Int, "fd"),
                (Long, "offset"),
            ],
            Ret::Ptr,
        ),
        proto("munmap", &[(Ptr, "addr"), (Size, "length")], Ret::Int),
        proto("exit", &[(Int, "status")], Ret::Void),
        proto("puts", &[(Str, "s")], Ret::Int),
        proto("unlink", &[(Str, "pathname")], Ret::Int),
        proto(
            "access",
            &[(Str, "pathname"), (AccessMode, "mode")],
            Ret::Int,
        ),
    ]
};

fn prototype(symbol: &str) -> Option<&'static Prototype> {
    // A versioned name (`openat@@GLIBC_2.2.5`) is the same function.
    let name = symbol.split('@').next().unwrap_or(symbol);
    let name = if name == "mmap64" { "mmap" } else { name };
    PROTOTYPES.iter().find(|p| p.name == name)
}

/// What is known about a probed function's signature.
#[derive(Clone)]
pub(crate) enum Known {
    /// Its DWARF signature.
    Dwarf(Arc<Signature>),
    /// A built-in prototype.
    Proto(&'static Prototype),
    /// Nothing.
    Raw,
}

/// The rendered arguments of one call: values, and the parameter names when
/// known (same length).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) names: Vec<Option<String>>,
    pub(crate) values: Vec<String>,
    /// Each argument as a raw 64-bit integer (its register, or its first
    /// eightbyte on the stack), `None` where it is not one: an aggregate,
    /// a float or a double, the `...` of a variadic function (same length).
    pub(crate) raw: Vec<Option<u64>>,
    /// True when the text format shows `name=value` (DWARF); prototypes are
    /// shown strace style, by value only.
    pub(crate) named: bool,
}

impl Args {
    /// `x=41, s="hi"` (DWARF) or `3, 0x7ffd1000, 4096`.
    pub(crate) fn text(&self) -> String {
        let len: usize = self.values.iter().map(|v| v.len() + 8).sum();
        let mut s = String::with_capacity(len);
        for (i, (name, value)) in self.names.iter().zip(&self.values).enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            if let (Some(n), true) = (name, self.named) {
                s.push_str(n);
                s.push('=');
            }
            s.push_str(value);
        }
        s
    }

    /// Where value `i` is in [`Args::text`]: after each argument before it
    /// and its `, `, and its own `name=`.
    pub(crate) fn span(&self, i: usize) -> Option<std::ops::Range<usize>> {
        if i >= self.values.len() || i >= self.names.len() {
            return None;
        }
        let label = |k: usize| match (&self.names[k], self.named) {
            (Some(n), true) => n.len() + 1,
            _ => 0,
        };
        let start = (0..i)
            .map(|k| label(k) + self.values[k].len() + 2)
            .sum::<usize>()
            + label(i);
        Some(start..start + self.values[i].len())
    }
}

/// A rendered return value: the text, and the number for JSON's `retval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetVal {
    pub(crate) text: String,
    pub(crate) number: Number,
    /// The errno a failing libc function left (see [`RetVal::mark_errno`]).
    pub(crate) errno: Option<i32>,
    /// An argument the call filled (`read`'s buf), rendered at the return:
    /// its index, its name, its value (see [`Renderer::filled`]).
    pub(crate) filled: Option<(usize, &'static str, String)>,
}

impl RetVal {
    /// Marks the errno a libc function that returned -1 left, as strace
    /// shows a failed system call: `-1 ENOENT (No such file or directory)`.
    pub(crate) fn mark_errno(&mut self, errno: i32) {
        self.errno = Some(errno);
        self.text.push(' ');
        self.text.push_str(&crate::inject::errno_name(errno));
        let e = nix::errno::Errno::from_raw(errno);
        if e != nix::errno::Errno::UnknownErrno {
            self.text.push_str(&format!(" ({})", e.desc()));
        }
    }

    /// Whether this is what a libc function returns on failure, an integer
    /// -1 (its errno then says why).
    pub(crate) fn is_failure(&self) -> bool {
        self.number == Number::Signed(-1)
    }

    /// Marks a value fault injection returned: `-1 ENOENT (injected)`, or
    /// `-1 (injected)` when no errno was set.
    pub(crate) fn mark_injected(&mut self, errno: Option<i32>) {
        if let Some(e) = errno {
            self.text.push(' ');
            self.text.push_str(&crate::inject::errno_name(e));
        }
        self.text.push_str(" (injected)");
    }
}

/// A return value as an integer: typed when the type is an integer or a
/// pointer, rax as a signed 64-bit integer when the type is not known, nothing
/// when the function returns no integer (`void`, a `double`, a struct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Number {
    Signed(i64),
    Unsigned(u64),
    None,
}

impl From<Number> for serde_json::Value {
    fn from(n: Number) -> serde_json::Value {
        match n {
            Number::Signed(v) => v.into(),
            Number::Unsigned(v) => v.into(),
            Number::None => serde_json::Value::Null,
        }
    }
}

/// Renders calls: the signatures found so far and the string limit.
pub(crate) struct Renderer {
    signatures: Signatures,
    string_limit: usize,
    /// What was found for each probed address (with the module and symbol
    /// there: aliases may have different prototypes): the
    /// hit path's shortcut, and the answer for a return whose entry left
    /// nothing (a child traced with `-f` inherits calls in flight, not the
    /// handlers' data).
    by_site: AddrMap<u64, (PathBuf, String, Known)>,
    /// The user's prototypes, which win over every other source.
    prototypes: Prototypes,
}

impl Renderer {
    pub(crate) fn new(string_limit: usize) -> Renderer {
        Renderer::with_prototypes(string_limit, Prototypes::new())
    }

    /// A renderer that renders the functions `prototypes` names by them.
    pub(crate) fn with_prototypes(string_limit: usize, prototypes: Prototypes) -> Renderer {
        Renderer {
            signatures: Signatures::new(),
            string_limit,
            by_site: AddrMap::default(),
            prototypes,
        }
    }

    /// Renders the functions `prototypes` names by them from now on.
    pub(crate) fn set_prototypes(&mut self, prototypes: Prototypes) {
        self.prototypes = prototypes;
        // What was found before them no longer holds.
        self.by_site = AddrMap::default();
    }

    fn seen(&self, site: &Site) -> Option<&Known> {
        match self.by_site.get(&site.address.get()) {
            // (The paths as bytes: comparing them component by component
            // costs more than the rest of a call's rendering.)
            Some((module, symbol, known))
                if module.as_os_str() == site.module.as_os_str() && *symbol == site.symbol =>
            {
                Some(known)
            }
            _ => None,
        }
    }

    /// What is known about the function `hit` stopped at the entry of. The
    /// first hit of a function parses its DWARF; later ones find it cached.
    pub(crate) fn known(&mut self, hit: &Hit<'_>) -> Known {
        self.known_at(hit.site(), hit.module())
    }

    /// What is known about the function at `site` (in `module`).
    pub(crate) fn known_at(&mut self, site: &Site, module: Option<&Module>) -> Known {
        if site.kind == ProbeKind::Instruction {
            return Known::Raw;
        }
        if let Some(known) = self.seen(site) {
            return known.clone();
        }
        let known = self.look_up(site, module);
        let key = (site.module.clone(), site.symbol.clone(), known.clone());
        self.by_site.insert(site.address.get(), key);
        known
    }

    fn look_up(&mut self, site: &Site, module: Option<&Module>) -> Known {
        if let Some(sig) = self.prototypes.get(site) {
            return Known::Dwarf(sig);
        }
        // An IFUNC's implementation (`__memcpy_avx_unaligned_erms` for
        // `libc:memcpy`) has the prototype of the function the probe names.
        let named = Some(site.probe.rsplit(':').next().unwrap_or_default())
            .filter(|n| !site.probe.contains("::") && !n.contains(['*', '?', '[']));
        let proto = prototype(&site.symbol).or_else(|| named.and_then(prototype));
        let in_libc = module.is_some_and(|m| m.matches("libc"));
        if let (Some(p), true) = (proto, in_libc) {
            return Known::Proto(p);
        }
        if let Some(m) = module {
            if let Some(sig) = self.signatures.get(&m.elf, m.to_link(site.address)) {
                return Known::Dwarf(sig);
            }
        }
        match proto {
            Some(p) => Known::Proto(p),
            None => Known::Raw,
        }
    }

    /// What a fast probe must capture for [`Renderer::args`] to render the
    /// entry of the function at `site` as it would live, and
    /// [`Renderer::filled`] its return: the C strings its arguments point
    /// to (one byte past the string limit, as `cstr_arg` reads), those
    /// passed on the stack too, the stack arguments, the data buffers it is
    /// given (as many bytes as shown), and the buffer it fills (`read`'s),
    /// copied at its return. A buffer whose length is a product (`fwrite`'s
    /// size × nmemb) is read at a stop.
    pub(crate) fn capture(&mut self, site: &Site, module: Option<&Module>) -> Fast {
        let max = self.string_limit.saturating_add(1);
        // The arguments are read from the argument registers (and from a
        // compiler clone's own, below), and from the stack: nothing else.
        let mut capture = Capture::default();
        capture.registers(RegSet::NONE.with_args());
        match self.known_at(site, module) {
            Known::Raw => {}
            Known::Proto(p) => {
                for (i, (kind, _)) in p.args.iter().enumerate() {
                    match *kind {
                        Arg::Str => {
                            capture.string_arg(i, max);
                        }
                        Arg::Buf { len, times: None } => {
                            if let (Some(ptr), Some(len)) = (Gpr::arg(i), Gpr::arg(len)) {
                                capture.buffer(ptr, len, self.string_limit);
                            }
                        }
                        Arg::OutBuf { times: None } => {
                            capture.ret_buffer = Gpr::arg(i).map(|r| (r, self.string_limit));
                        }
                        Arg::Buf { .. } | Arg::OutBuf { .. } => {
                            return Fast::No(
                                "its data buffer's length is a product, read at the stop".into(),
                            )
                        }
                        _ => {}
                    }
                }
                if p.ret == Ret::Str {
                    capture.ret_string = max;
                }
            }
            Known::Dwarf(sig) => {
                for (p, loc) in sig.params.iter().zip(sig.locations().iter().cloned()) {
                    let string = matches!(p.ty, Type::Pointer { string: true });
                    match loc {
                        Loc::Gp(ns) if string => {
                            for n in ns {
                                capture.string_arg(n, max);
                            }
                        }
                        Loc::Reg(r) => {
                            if let Some(reg) = crate::arch::Gpr::from_dwarf(r) {
                                capture.registers = capture.registers.with(reg);
                                if string {
                                    capture.string(reg, max);
                                }
                            }
                        }
                        Loc::Stack { offset, .. } if string => {
                            capture.stack_string(offset as usize, max);
                        }
                        Loc::Stack { offset, size } => {
                            let end = offset.saturating_add(size.min(16));
                            capture.stack = capture.stack.max(end as usize);
                        }
                        // Nothing to copy: the argument registers come with every
                        // record, and the rest cannot be read.
                        Loc::Vector(n) => capture.registers = capture.registers.with_xmm(n),
                        Loc::Gp(_)
                        | Loc::Split(_)
                        | Loc::Const(_)
                        | Loc::Unavailable
                        | Loc::Nowhere => {}
                    }
                }
                if matches!(sig.ret, Type::Pointer { string: true }) {
                    capture.ret_string = max;
                }
                if capture.stack > MAX_STACK_CAPTURE {
                    return Fast::No(format!(
                        "its stack arguments take more than {MAX_STACK_CAPTURE} bytes"
                    ));
                }
            }
        }
        Fast::Yes(capture)
    }

    /// What [`Renderer::retval`] and [`Renderer::filled`] read at the
    /// return of the function at `site` (an int3 probe's call): the
    /// returned C string (one byte past the string limit) and errno (a
    /// libc function's), which the return stub copies; a buffer the call
    /// fills (`read`'s) is read at a stop.
    pub(crate) fn returns(&mut self, site: &Site, module: Option<&Module>) -> Returns {
        let max = self.string_limit.saturating_add(1);
        let errno = super::in_libc(site);
        let string = match self.known_at(site, module) {
            Known::Raw => 0,
            Known::Proto(p) => {
                if p.args
                    .iter()
                    .any(|(kind, _)| matches!(kind, Arg::OutBuf { .. }))
                {
                    return Returns::Stop;
                }
                match p.ret == Ret::Str {
                    true => max,
                    false => 0,
                }
            }
            Known::Dwarf(sig) => match matches!(sig.ret, Type::Pointer { string: true }) {
                true => max,
                false => 0,
            },
        };
        Returns::Record { string, errno }
    }

    /// The arguments of the call `hit` stopped at, rendered.
    pub(crate) fn args(&self, known: &Known, hit: &Hit<'_>) -> Args {
        let regs: [u64; 6] = std::array::from_fn(|n| hit.arg(n).unwrap_or(0));
        let read = |addr, max| hit.read_cstr(addr, max);
        match known {
            Known::Dwarf(sig) => {
                let sp = hit.sp().get();
                let stack = |offset: u64, len: usize| {
                    let at = sp.checked_add(8)?.checked_add(offset)?;
                    hit.read_bytes(RuntimeAddr(at), len).ok()
                };
                let xmm = |n| hit.xmm(n);
                dwarf_args(sig, hit.regs(), &xmm, &stack, &read, self.string_limit)
            }
            Known::Proto(p) => {
                let bytes = |addr, len| hit.read_bytes(addr, len);
                proto_args(p, regs, &read, &bytes, self.string_limit)
            }
            Known::Raw => raw_args(regs),
        }
    }

    /// The argument of a call of `known` that is filled by the call
    /// (`read`'s buf), if it has one: its index, and what its entry
    /// `args` say of it (the pointer, and the size its count is in).
    pub(crate) fn fill(&self, known: &Known, args: &Args) -> Option<Fill> {
        let Known::Proto(p) = known else { return None };
        let (index, (kind, name)) = p
            .args
            .iter()
            .enumerate()
            .find(|(_, (kind, _))| matches!(kind, Arg::OutBuf { .. }))?;
        let Arg::OutBuf { times } = kind else {
            return None;
        };
        Some(Fill {
            index,
            name,
            ptr: args.raw.get(index).copied().flatten()?,
            unit: match times {
                Some(t) => args.raw.get(*t).copied().flatten()?,
                None => 1,
            },
        })
    }

    /// What `fill` holds once its call returned `value`: as many bytes as
    /// the call says it filled, quoted as [`Arg::Buf`] is; None when it
    /// filled nothing it says (a failure).
    pub(crate) fn filled(&self, fill: &Fill, ret: &Return<'_>, value: &RetVal) -> Option<String> {
        let count = match value.number {
            Number::Signed(n) if n >= 0 => n as u64,
            Number::Unsigned(n) => n,
            _ => return None,
        };
        let bytes = |addr, len| ret.read_bytes(addr, len);
        Some(buffer(
            fill.ptr,
            count.saturating_mul(fill.unit),
            &bytes,
            self.string_limit,
        ))
    }

    /// Whether a call of the function at `site` can count as failed (see
    /// [`Renderer::failed`]): its built-in prototype returns an integer or
    /// a pointer, or it is a libc function whose DWARF returns a signed
    /// `int` or `long`.
    pub(crate) fn may_fail(&mut self, site: &Site, module: Option<&Module>) -> bool {
        let in_libc = module.is_some_and(|m| m.matches("libc"));
        match self.known_at(site, module) {
            Known::Proto(p) => matches!(p.ret, Ret::Int | Ret::Long | Ret::Ptr),
            Known::Dwarf(sig) => {
                in_libc
                    && matches!(
                        sig.ret,
                        Type::Int {
                            size: 4 | 8,
                            signed: true,
                        }
                    )
            }
            Known::Raw => false,
        }
    }

    /// Whether the call `ret` returned from failed, by the errno rule
    /// (a libc function's integer -1) or by its built-in prototype (a
    /// pointer that is NULL, or `MAP_FAILED`): what `-c` counts as errors.
    pub(crate) fn failed(&mut self, ret: &Return<'_>) -> bool {
        let rax = ret.retval() as u64;
        let in_libc = ret.module().is_some_and(|m| m.matches("libc"));
        match self.known_at(ret.site(), ret.module()) {
            Known::Proto(p) => match p.ret {
                Ret::Int => rax as i32 == -1,
                Ret::Long => rax as i64 == -1,
                Ret::Ptr => rax == 0 || rax as i64 == -1,
                Ret::Size | Ret::Str | Ret::Void => false,
            },
            Known::Dwarf(sig) => {
                in_libc
                    && match sig.ret {
                        Type::Int {
                            size: 4,
                            signed: true,
                        } => rax as i32 == -1,
                        Type::Int {
                            size: 8,
                            signed: true,
                        } => rax as i64 == -1,
                        _ => false,
                    }
            }
            Known::Raw => false,
        }
    }

    /// The value the call `ret` stopped at returns, rendered; `known` is what
    /// its entry found (None when the entry was not seen by this printer).
    pub(crate) fn retval(&self, known: Option<&Known>, ret: &Return<'_>) -> RetVal {
        let rax = ret.retval() as u64;
        // The registers at the return are all read (PTRACE_GETREGS): rdx is
        // the high eightbyte of a two-register value.
        let rdx = Some(ret.regs().retval_high());
        let read = |addr, max| ret.read_cstr(addr, max);
        let known = match known.or_else(|| self.seen(ret.site())) {
            Some(k) => k.clone(),
            None => match self.prototypes.get(ret.site()) {
                Some(sig) => Known::Dwarf(sig),
                None => prototype(&ret.site().symbol).map_or(Known::Raw, Known::Proto),
            },
        };
        render_ret(&known, rax, rdx, ret.xmm(0), &read, self.string_limit)
    }
}

/// An argument a call fills, to be shown at its return (see
/// [`Renderer::fill`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fill {
    /// Its index among the arguments.
    pub(crate) index: usize,
    /// Its name.
    pub(crate) name: &'static str,
    /// The pointer it was at the entry.
    pub(crate) ptr: u64,
    /// The bytes of one unit of the count the call returns.
    pub(crate) unit: u64,
}

/// The six argument registers in hex, names unknown.
fn raw_args(regs: [u64; 6]) -> Args {
    Args {
        names: vec![None; 6],
        values: regs.iter().map(|v| format!("{v:#x}")).collect(),
        raw: regs.iter().map(|&v| Some(v)).collect(),
        named: false,
    }
}

/// Renders the arguments of a call to `symbol` (by prototype, else raw), given
/// the six SysV argument registers at its entry.
#[cfg(test)]
pub(crate) fn render_args(symbol: &str, regs: [u64; 6], read: ReadCstr<'_>) -> Vec<String> {
    let bytes = |addr: RuntimeAddr, len: usize| -> Result<Vec<u8>> {
        let (mut b, _) = read(addr, len)?;
        b.resize(len, 0);
        Ok(b)
    };
    match prototype(symbol) {
        Some(p) => proto_args(p, regs, read, &bytes, DEFAULT_STRING_LIMIT).values,
        None => raw_args(regs).values,
    }
}

fn proto_args(
    p: &Prototype,
    regs: [u64; 6],
    read: ReadCstr<'_>,
    bytes: ReadBytes<'_>,
    limit: usize,
) -> Args {
    let mut out = Args::default();
    for (i, (&(kind, name), &v)) in p.args.iter().zip(regs.iter()).enumerate() {
        let s = match kind {
            Arg::Int => (v as i32).to_string(),
            Arg::Long => (v as i64).to_string(),
            Arg::DirFd => dirfd(v),
            Arg::Str => cstr_arg(v, read, limit),
            Arg::Ptr => pointer(v),
            Arg::Size => v.to_string(),
            Arg::Hex => format!("{v:#x}"),
            Arg::OpenFlags => open_flags(v),
            Arg::Mode => mode(v),
            Arg::OpenMode => {
                let flags = if i > 0 { regs[i - 1] } else { 0 };
                if flags & (O_CREAT | O_TMPFILE) == 0 {
                    continue;
                }
                mode(v)
            }
            Arg::AccessMode => access_mode(v),
            Arg::Buf { len, times } => {
                let count = regs.get(len).copied().unwrap_or(0);
                let unit = times.map_or(1, |t| regs.get(t).copied().unwrap_or(0));
                buffer(v, count.saturating_mul(unit), bytes, limit)
            }
            Arg::OutBuf { .. } => pointer(v),
        };
        out.names.push(Some(name.to_string()));
        out.values.push(s);
        out.raw.push(Some(v));
    }
    out
}

/// Renders the arguments of a function with a DWARF signature: `regs` are
/// the registers at its entry, `stack` reads the stack arguments.
pub(crate) fn dwarf_args(
    sig: &Signature,
    regs: &Regs,
    xmm: &dyn Fn(usize) -> Option<u64>,
    stack: ReadStack<'_>,
    read: ReadCstr<'_>,
    limit: usize,
) -> Args {
    let mut out = Args {
        named: true,
        ..Args::default()
    };
    for (p, loc) in sig.params.iter().zip(sig.locations()) {
        let value = match *loc {
            Loc::Gp(ref ns) => Found::Words(ns.iter().map(|n| regs.arg(*n)).collect()),
            Loc::Split(ref ws) => {
                Found::Words(ws.iter().map(|w| w.and_then(|n| regs.arg(n))).collect())
            }
            Loc::Reg(r) => Found::Words(vec![regs.dwarf(r)]),
            Loc::Vector(n) => Found::Words(vec![xmm(n)]),
            Loc::Const(v) => Found::Words(vec![Some(v as u64), Some((v >> 64) as u64)]),
            Loc::Stack { offset, size } => {
                let at = regs.sp().checked_add(8).and_then(|a| a.checked_add(offset));
                let len = size.min(16) as usize;
                let bytes = stack(offset, len).filter(|b| b.len() == len);
                let words = match bytes {
                    Some(b) => b
                        .chunks(8)
                        .map(|c| {
                            let mut w = [0u8; 8];
                            w[..c.len()].copy_from_slice(c);
                            Some(u64::from_le_bytes(w))
                        })
                        .collect(),
                    None => vec![None],
                };
                Found::Stack { at, words }
            }
            Loc::Unavailable | Loc::Nowhere => Found::Nothing,
        };
        out.names.push(p.name.clone());
        out.values.push(argument(&p.ty, &value, read, limit));
        out.raw.push(match (&p.ty, &value) {
            (Type::Aggregate { .. } | Type::Void | Type::Float { .. }, _) | (_, Found::Nothing) => {
                None
            }
            (_, Found::Words(w) | Found::Stack { words: w, .. }) => w.first().copied().flatten(),
        });
    }
    if sig.variadic {
        out.names.push(None);
        out.values.push("...".into());
        out.raw.push(None);
    }
    out
}

/// What was found of one argument at the entry.
enum Found {
    /// Its eightbytes, low first (`None`: one that cannot be read, a vector
    /// register).
    Words(Vec<Option<u64>>),
    /// In the stack argument area at `at`, whose first eightbytes are
    /// `words`.
    Stack {
        at: Option<u64>,
        words: Vec<Option<u64>>,
    },
    /// Nothing: not placed, or in a vector register.
    Nothing,
}

/// One argument of type `ty`, from what was found of it.
fn argument(ty: &Type, value: &Found, read: ReadCstr<'_>, limit: usize) -> String {
    if let Type::Aggregate {
        keyword,
        name,
        passing,
        ..
    } = ty
    {
        let label = aggregate_label(keyword, name.as_deref());
        return match (passing, value) {
            // In memory: where it is, never its bytes as if they were
            // registers.
            (sysv::Passing::Memory { .. }, Found::Stack { at: Some(at), .. }) => {
                format!("{{{label} @ {at:#x}}}")
            }
            (sysv::Passing::Regs(classes), Found::Words(words) | Found::Stack { words, .. }) => {
                aggregate_words(&label, classes.len(), words)
            }
            (
                sysv::Passing::Memory { .. },
                Found::Stack { at: None, .. } | Found::Words(_) | Found::Nothing,
            )
            | (sysv::Passing::Regs(_), Found::Nothing)
            | (sysv::Passing::ByReference | sysv::Passing::Nothing | sysv::Passing::Unknown, _) => {
                format!("{{{label}}}")
            }
        };
    }
    if matches!(ty, Type::Void) {
        // A parameter has a type; one that reads as void was not described.
        return "?".into();
    }
    let words = match value {
        Found::Words(w) | Found::Stack { words: w, .. } => w.as_slice(),
        Found::Nothing => &[],
    };
    // As many eightbytes as the type has: all of them known, or nothing.
    let needed = if matches!(ty, Type::Int { size: 16, .. }) {
        2
    } else {
        1
    };
    let raw = match words.get(..needed) {
        Some(w) if w.iter().all(Option::is_some) => {
            Some(w.iter().enumerate().fold(0u128, |v, (k, x)| {
                v | u128::from(x.unwrap_or(0)) << (64 * k)
            }))
        }
        _ => None,
    };
    typed(ty, raw, read, limit)
}

/// `struct point`, `union`.
fn aggregate_label(keyword: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{keyword} {n}"),
        None => keyword.to_string(),
    }
}

/// `{struct point: 0x300000002}`: the raw eightbytes of an aggregate that
/// travels in registers, low first, `?` for one rtrace cannot read (a vector
/// register); its fields are not decoded.
fn aggregate_words(label: &str, n: usize, words: &[Option<u64>]) -> String {
    let words: Vec<String> = (0..n)
        .map(|k| match words.get(k).copied().flatten() {
            Some(w) => format!("{w:#x}"),
            None => "?".into(),
        })
        .collect();
    format!("{{{label}: {}}}", words.join(", "))
}

/// One scalar value of type `ty` whose bytes (little-endian, as in a
/// register) are `raw`; None when it could not be read. An aggregate is only
/// labelled here (see [`argument`] for what is shown of one).
pub(crate) fn typed(ty: &Type, raw: Option<u128>, read: ReadCstr<'_>, limit: usize) -> String {
    if let Type::Aggregate { keyword, name, .. } = ty {
        return format!("{{{}}}", aggregate_label(keyword, name.as_deref()));
    }
    if matches!(ty, Type::Void) {
        return "void".into();
    }
    let Some(raw) = raw else {
        return "?".into();
    };
    match ty {
        Type::Int { size, signed: true } => sign_extend(raw, *size).to_string(),
        Type::Int {
            size,
            signed: false,
        } => truncate(raw, *size).to_string(),
        Type::Octal { size } => format!("0{:03o}", truncate(raw, *size)),
        Type::Char => char_literal(raw as u8),
        Type::Bool { size } => match truncate(raw, *size) {
            0 => "false".into(),
            1 => "true".into(),
            v => v.to_string(),
        },
        Type::Float {
            size: 4,
            complex: false,
            ..
        } => format!("{:?}", f32::from_bits(raw as u32)),
        Type::Float {
            size: 8,
            complex: false,
            ..
        } => format!("{:?}", f64::from_bits(raw as u64)),
        Type::Float { .. } => "?".into(),
        Type::Pointer { string: true } => cstr_arg(raw as u64, read, limit),
        Type::Pointer { string: false } => pointer(raw as u64),
        Type::Enum {
            size,
            signed,
            values,
        } => {
            let v = truncate(raw, *size) as u64;
            match values.iter().find(|(value, _)| *value == v) {
                Some((_, name)) => name.clone(),
                None if *signed => sign_extend(raw, *size).to_string(),
                None => v.to_string(),
            }
        }
        Type::Unknown => format!("{:#x}", raw as u64),
        Type::Aggregate { .. } | Type::Void => unreachable!("handled above"),
    }
}

fn sign_extend(raw: u128, size: u64) -> i128 {
    let bits = (size.clamp(1, 16) * 8) as u32;
    let shift = 128 - bits;
    ((raw << shift) as i128) >> shift
}

fn truncate(raw: u128, size: u64) -> u128 {
    let bits = (size.clamp(1, 16) * 8) as u32;
    if bits == 128 {
        raw
    } else {
        raw & ((1u128 << bits) - 1)
    }
}

/// A `char` as C writes it: `'a'`, `'\n'`, `'\x01'`.
fn char_literal(b: u8) -> String {
    match b {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        _ => {
            let q = quote(&[b], false);
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

/// The integer JSON shows as `retval` for a value of type `ty` in rax.
fn typed_number(ty: &Type, rax: u64) -> Number {
    let raw = u128::from(rax);
    match ty {
        Type::Int {
            size: 1 | 2 | 4 | 8,
            signed: true,
        }
        | Type::Enum { signed: true, .. } => {
            let size = match ty {
                Type::Int { size, .. } | Type::Enum { size, .. } => *size,
                Type::Void
                | Type::Octal { .. }
                | Type::Char
                | Type::Bool { .. }
                | Type::Float { .. }
                | Type::Pointer { .. }
                | Type::Aggregate { .. }
                | Type::Unknown => 8,
            };
            Number::Signed(sign_extend(raw, size) as i64)
        }
        Type::Int {
            size: size @ (1 | 2 | 4 | 8),
            signed: false,
        }
        | Type::Enum { size, .. }
        | Type::Octal { size }
        | Type::Bool { size } => Number::Unsigned(truncate(raw, *size) as u64),
        Type::Char => Number::Signed(i64::from(rax as u8 as i8)),
        Type::Pointer { .. } => Number::Unsigned(rax),
        Type::Unknown => Number::Signed(rax as i64),
        Type::Void | Type::Float { .. } | Type::Aggregate { .. } | Type::Int { .. } => Number::None,
    }
}

/// The value a function returned, from rax and, when the registers at the
/// return are known, rdx (the high eightbyte of a two-register value) and
/// xmm0 (a `float` or `double`).
fn render_ret(
    known: &Known,
    rax: u64,
    rdx: Option<u64>,
    xmm0: Option<u64>,
    read: ReadCstr<'_>,
    limit: usize,
) -> RetVal {
    let raw_number = Number::Signed(rax as i64);
    match known {
        Known::Dwarf(sig) => {
            let text = match &sig.ret {
                // A float or a double is returned in xmm0 (read at an int3
                // return; not at a fast one).
                Type::Float {
                    size: 4 | 8,
                    complex: false,
                    x87: false,
                } => typed(&sig.ret, xmm0.map(u128::from), read, limit),
                Type::Float { .. } => "?".into(),
                Type::Int { size: 16, .. } => match rdx {
                    Some(rdx) => typed(
                        &sig.ret,
                        Some(u128::from(rax) | u128::from(rdx) << 64),
                        read,
                        limit,
                    ),
                    None => "?".into(),
                },
                Type::Aggregate {
                    keyword,
                    name,
                    passing,
                    ..
                } => {
                    let label = aggregate_label(keyword, name.as_deref());
                    match passing {
                        // INTEGER eightbytes come back in rax then rdx, SSE
                        // ones in xmm0 then xmm1 (psABI 3.2.3, "Returning of
                        // Values").
                        sysv::Passing::Regs(classes) => {
                            let mut ints = [Some(rax), rdx].into_iter();
                            let words: Vec<Option<u64>> = classes
                                .iter()
                                .map(|c| match c {
                                    sysv::Class::Integer => ints.next().flatten(),
                                    sysv::Class::Sse | sysv::Class::Memory => None,
                                })
                                .collect();
                            aggregate_words(&label, classes.len(), &words)
                        }
                        // rax holds the address of the buffer the caller
                        // passed (the hidden first argument).
                        sysv::Passing::Memory { .. } | sysv::Passing::ByReference => {
                            format!("{{{label} @ {rax:#x}}}")
                        }
                        sysv::Passing::Nothing | sysv::Passing::Unknown => format!("{{{label}}}"),
                    }
                }
                Type::Unknown => return render_ret(&Known::Raw, rax, rdx, xmm0, read, limit),
                ty @ (Type::Void
                | Type::Int { .. }
                | Type::Octal { .. }
                | Type::Char
                | Type::Bool { .. }
                | Type::Pointer { .. }
                | Type::Enum { .. }) => typed(ty, Some(u128::from(rax)), read, limit),
            };
            RetVal {
                text,
                number: typed_number(&sig.ret, rax),
                errno: None,
                filled: None,
            }
        }
        Known::Proto(p) => {
            let (text, number) = match p.ret {
                Ret::Int => {
                    let v = i64::from(rax as i32);
                    (v.to_string(), Number::Signed(v))
                }
                Ret::Long => ((rax as i64).to_string(), raw_number),
                Ret::Size => (rax.to_string(), Number::Unsigned(rax)),
                Ret::Str => (cstr_arg(rax, read, limit), Number::Unsigned(rax)),
                Ret::Ptr => (pointer(rax), Number::Unsigned(rax)),
                Ret::Void => ("void".into(), Number::None),
            };
            RetVal {
                text,
                number,
                errno: None,
                filled: None,
            }
        }
        Known::Raw => {
            // Without a prototype we do not know the width: a value that reads as
            // a small signed number most likely is one (an int, an error code);
            // anything else is more likely a pointer or a mask.
            let v = rax as i64;
            let text = if (i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(&v) {
                v.to_string()
            } else {
                format!("{rax:#x}")
            };
            RetVal {
                text,
                number: raw_number,
                errno: None,
                filled: None,
            }
        }
    }
}

/// Renders the value a call to `symbol` returned (rax), by prototype or raw.
#[cfg(test)]
pub(crate) fn render_retval(symbol: &str, rax: u64, read: ReadCstr<'_>) -> String {
    let known = prototype(symbol).map_or(Known::Raw, Known::Proto);
    render_ret(&known, rax, None, None, read, DEFAULT_STRING_LIMIT).text
}

fn pointer(v: u64) -> String {
    if v == 0 {
        "NULL".into()
    } else {
        format!("{v:#x}")
    }
}

/// `AT_FDCWD` (-100, `linux/fcntl.h`) or the fd.
fn dirfd(v: u64) -> String {
    match v as i32 {
        -100 => "AT_FDCWD".into(),
        fd => fd.to_string(),
    }
}

fn mode(v: u64) -> String {
    // strace's style: octal with a leading 0, at least three digits.
    format!("0{:03o}", v as u32)
}

fn access_mode(v: u64) -> String {
    let v = v as u32;
    if v == 0 {
        return "F_OK".into();
    }
    let mut parts = Vec::new();
    for (bit, name) in [(4, "R_OK"), (2, "W_OK"), (1, "X_OK")] {
        if v & bit != 0 {
            parts.push(name.to_string());
        }
    }
    let rest = v & !7;
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// A `const char *` argument: `NULL`, the quoted string (at most `limit`
/// bytes, then `...`), or the pointer in hex when it cannot be read.
/// `len` bytes at `ptr` as strace shows a buffer: the first `limit`,
/// quoted, `...` after when there are more; the pointer when they cannot be
/// read.
fn buffer(ptr: u64, len: u64, read: ReadBytes<'_>, limit: usize) -> String {
    if ptr == 0 {
        return "NULL".into();
    }
    let shown = len.min(limit as u64) as usize;
    match read(RuntimeAddr(ptr), shown) {
        Ok(b) if b.len() == shown => quote(&b, len > shown as u64),
        _ => format!("{ptr:#x}"),
    }
}

fn cstr_arg(ptr: u64, read: ReadCstr<'_>, limit: usize) -> String {
    if ptr == 0 {
        return "NULL".into();
    }
    // One byte more than shown, so that a string of exactly `limit` bytes is not
    // taken for a longer one.
    match read(RuntimeAddr(ptr), limit.saturating_add(1)) {
        Ok((mut bytes, complete)) => {
            let cut = !complete || bytes.len() > limit;
            bytes.truncate(limit);
            quote(&bytes, cut)
        }
        Err(_) => format!("{ptr:#x}"),
    }
}

/// Quotes bytes as strace does: `"…"`, with `...` after the closing quote when the
/// string was cut.
pub(crate) fn quote(bytes: &[u8], cut: bool) -> String {
    let mut s = String::with_capacity(bytes.len() + 5);
    s.push('"');
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    if cut {
        s.push_str("...");
    }
    s
}

// open(2) flags as the x86-64 kernel ABI defines them (asm-generic/fcntl.h). They
// are spelled out here rather than taken from `libc` because glibc's headers
// define O_LARGEFILE as 0 on 64-bit targets, while the tracee's libc does pass
// the kernel's bit.
const O_ACCMODE: u64 = 0o3;
const O_CREAT: u64 = 0o100;
const O_DSYNC: u64 = 0o10000;
const O_DIRECTORY: u64 = 0o200000;
const O_SYNC: u64 = 0o4000000 | O_DSYNC;
const O_TMPFILE: u64 = 0o20000000 | O_DIRECTORY;

/// Flag names in the order they are shown (after the access mode).
const OPEN_FLAGS: &[(u64, &str)] = &[
    (O_CREAT, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (O_DSYNC, "O_DSYNC"),
    (O_DIRECTORY, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o2000000, "O_CLOEXEC"),
    (O_SYNC, "O_SYNC"),
    (0o10000000, "O_PATH"),
    (O_TMPFILE, "O_TMPFILE"),
    (0o100000, "O_LARGEFILE"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o1000000, "O_NOATIME"),
];

/// `O_RDONLY|O_CLOEXEC|…`, with unknown bits in hex at the end.
pub(crate) fn open_flags(v: u64) -> String {
    let flags = v & 0xffff_ffff;
    let mut parts = vec![match flags & O_ACCMODE {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }
    .to_string()];
    // O_SYNC and O_TMPFILE are several bits, one of which is a flag of its own
    // (O_DSYNC, O_DIRECTORY): names claim bits widest first so that O_SYNC is not
    // shown as O_DSYNC plus a stray bit; they are then listed in table order.
    let mut rest = flags & !O_ACCMODE;
    let mut by_width: Vec<&(u64, &str)> = OPEN_FLAGS.iter().collect();
    by_width.sort_by_key(|(bits, _)| std::cmp::Reverse(bits.count_ones()));
    let mut matched = Vec::new();
    for &(bits, name) in by_width {
        if rest & bits == bits {
            rest &= !bits;
            matched.push(name);
        }
    }
    for (_, name) in OPEN_FLAGS {
        if matched.contains(name) {
            parts.push((*name).to_string());
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// Seconds with microseconds, like `strace -T`: `0.000011`.
pub(crate) fn seconds(d: std::time::Duration) -> String {
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_where_its_value_is_in_the_text() {
        for named in [true, false] {
            let args = Args {
                names: vec![Some("fd".into()), Some("buf".into()), None],
                values: vec!["3".into(), "0x7ffd1000".into(), "64".into()],
                raw: vec![Some(3), Some(0x7ffd1000), Some(64)],
                named,
            };
            let text = args.text();
            for (i, v) in args.values.iter().enumerate() {
                assert_eq!(&text[args.span(i).unwrap()], v, "{text}");
            }
            assert_eq!(args.span(3), None);
        }
    }
    use crate::addr::RuntimeAddr;
    use crate::error::Error;
    use nix::errno::Errno;

    fn no_memory(addr: RuntimeAddr, _max: usize) -> Result<(Vec<u8>, bool)> {
        Err(Error::Memory {
            pid: nix::unistd::getpid(),
            addr,
            errno: Errno::EFAULT,
        })
    }

    fn fixed(s: &'static [u8]) -> impl Fn(RuntimeAddr, usize) -> Result<(Vec<u8>, bool)> {
        move |_, max| {
            let n = s.len().min(max);
            Ok((s[..n].to_vec(), s.len() <= max))
        }
    }

    #[test]
    fn unknown_function_shows_six_registers_in_hex() {
        let args = render_args("work", [0x29, 0, 1, 2, 3, u64::MAX], &no_memory);
        assert_eq!(
            args,
            ["0x29", "0x0", "0x1", "0x2", "0x3", "0xffffffffffffffff"]
        );
    }

    #[test]
    fn unknown_function_retval_is_decimal_when_it_fits_an_int() {
        assert_eq!(render_retval("work", 83, &no_memory), "83");
        assert_eq!(render_retval("work", (-1i64) as u64, &no_memory), "-1");
        assert_eq!(render_retval("work", 0x7fff_ffff, &no_memory), "2147483647");
        assert_eq!(render_retval("work", 0x8000_0000, &no_memory), "0x80000000");
        assert_eq!(
            render_retval("work", 0x55d0_c6a0_d141, &no_memory),
            "0x55d0c6a0d141"
        );
        assert_eq!(
            render_retval("work", (i64::from(i32::MIN)) as u64, &no_memory),
            "-2147483648"
        );
    }

    #[test]
    fn openat_with_fdcwd_and_flags() {
        let read = fixed(b"/etc/hostname");
        let args = render_args(
            "openat",
            [(-100i64) as u64, 0x1000, 0x80000, 0, 0, 0],
            &read,
        );
        assert_eq!(
            args,
            ["AT_FDCWD", "\"/etc/hostname\"", "O_RDONLY|O_CLOEXEC"]
        );
    }

    #[test]
    fn openat_shows_mode_only_when_creating() {
        let read = fixed(b"out.txt");
        // O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644
        let flags = 0o1 | 0o100 | 0o1000 | 0o2000000;
        let args = render_args("openat", [3, 0x1000, flags, 0o644, 0, 0], &read);
        assert_eq!(
            args,
            [
                "3",
                "\"out.txt\"",
                "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC",
                "0644"
            ]
        );
        let args = render_args("open", [0x1000, 0o2, 0o644, 0, 0, 0], &read);
        assert_eq!(args, ["\"out.txt\"", "O_RDWR"]);
        let args = render_args(
            "open64@GLIBC_2.2.5",
            [0x1000, 0o2 | O_TMPFILE, 0o600, 0, 0, 0],
            &read,
        );
        assert_eq!(args, ["\"out.txt\"", "O_RDWR|O_TMPFILE", "0600"]);
        let args = render_args("creat", [0x1000, 0o755, 9, 9, 9, 9], &read);
        assert_eq!(args, ["\"out.txt\"", "0755"]);
    }

    #[test]
    fn open_flags_by_name() {
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(open_flags(0o100000), "O_RDONLY|O_LARGEFILE");
        assert_eq!(open_flags(O_SYNC | 1), "O_WRONLY|O_SYNC");
        assert_eq!(open_flags(O_DSYNC | 1), "O_WRONLY|O_DSYNC");
        assert_eq!(
            open_flags(O_DIRECTORY | 0o2000000),
            "O_RDONLY|O_DIRECTORY|O_CLOEXEC"
        );
        assert_eq!(
            open_flags(0o4 | 0o200 | 0o100),
            "O_RDONLY|O_CREAT|O_EXCL|0x4"
        );
        assert_eq!(open_flags(3), "O_ACCMODE");
    }

    #[test]
    fn strings_escaped_like_strace() {
        assert_eq!(
            quote(b"a\nb\tc\"d\\e\x01\xff", false),
            r#""a\nb\tc\"d\\e\x01\xff""#
        );
        assert_eq!(quote(b"abc", true), "\"abc\"...");
    }

    #[test]
    fn string_arguments_null_unreadable_and_cut() {
        assert_eq!(
            render_args("strlen", [0, 0, 0, 0, 0, 0], &no_memory),
            ["NULL"]
        );
        assert_eq!(
            render_args("strlen", [0xdead_0000, 0, 0, 0, 0, 0], &no_memory),
            ["0xdead0000"]
        );
        let long = [b'x'; 300];
        let read = move |_: RuntimeAddr, max: usize| -> Result<(Vec<u8>, bool)> {
            Ok((long[..max.min(300)].to_vec(), max > 300))
        };
        let args = render_args("puts", [0x1000, 0, 0, 0, 0, 0], &read);
        assert_eq!(
            args[0],
            format!("\"{}\"...", "x".repeat(DEFAULT_STRING_LIMIT))
        );
    }

    #[test]
    fn libc_prototypes() {
        let read = fixed(b"HOME");
        assert_eq!(
            render_args("read", [3, 0x7ffd_1000, 4096, 0, 0, 0], &read),
            ["3", "0x7ffd1000", "4096"]
        );
        assert_eq!(
            render_args("write", [1, 0, 5, 0, 0, 0], &read),
            ["1", "NULL", "5"]
        );
        assert_eq!(
            render_args("close", [(-1i64) as u64, 7, 7, 7, 7, 7], &read),
            ["-1"]
        );
        assert_eq!(
            render_args("getenv", [0x1000, 7, 7, 7, 7, 7], &read),
            ["\"HOME\""]
        );
        assert_eq!(
            render_args("unlink", [0x1000, 7, 7, 7, 7, 7], &read),
            ["\"HOME\""]
        );
        assert_eq!(
            render_args("access", [0x1000, 6, 7, 7, 7, 7], &read),
            ["\"HOME\"", "R_OK|W_OK"]
        );
        assert_eq!(
            render_args("access", [0x1000, 0, 7, 7, 7, 7], &read),
            ["\"HOME\"", "F_OK"]
        );
        assert_eq!(render_retval("read", (-1i64) as u64, &read), "-1");
        assert_eq!(render_retval("close", 0xffff_ffff, &read), "-1");
        assert_eq!(render_retval("strlen", 4, &read), "4");
        assert_eq!(render_retval("getenv", 0, &read), "NULL");
        assert_eq!(
            render_retval("getenv", 0x1000, &fixed(b"/root")),
            "\"/root\""
        );
    }

    use crate::symbols::dwarf::{Param, Passing};

    fn t(ty: &Type, raw: u128) -> String {
        typed(ty, Some(raw), &fixed(b"hi"), DEFAULT_STRING_LIMIT)
    }

    #[test]
    fn integers_by_width_and_sign_ignore_upper_register_bits() {
        let garbage = 0xdead_beef_0000_0000_u128;
        let i = |size, signed| Type::Int { size, signed };
        assert_eq!(t(&i(1, true), garbage | 0xfb), "-5");
        assert_eq!(t(&i(1, false), garbage | 0xfb), "251");
        assert_eq!(t(&i(2, true), garbage | 0xfed4), "-300");
        assert_eq!(t(&i(2, false), garbage | 0xfde8), "65000");
        assert_eq!(t(&i(4, true), garbage | 0xffff_ffff), "-1");
        assert_eq!(t(&i(4, false), garbage | 0xffff_ffff), "4294967295");
        assert_eq!(t(&i(8, true), u128::from(u64::MAX)), "-1");
        assert_eq!(
            t(&i(8, false), u128::from(u64::MAX)),
            "18446744073709551615"
        );
        assert_eq!(t(&i(16, true), u128::MAX), "-1");
    }

    #[test]
    fn bool_char_enum_float_pointer_aggregate() {
        assert_eq!(t(&Type::Bool { size: 1 }, 0x100), "false");
        assert_eq!(t(&Type::Bool { size: 1 }, 1), "true");
        assert_eq!(t(&Type::Bool { size: 1 }, 7), "7");
        assert_eq!(t(&Type::Char, u128::from(b'a')), "'a'");
        assert_eq!(t(&Type::Char, u128::from(b'\n')), r"'\n'");
        assert_eq!(t(&Type::Char, u128::from(b'\'')), r"'\''");
        assert_eq!(t(&Type::Char, 0xff), r"'\xff'");
        let e = Type::Enum {
            size: 4,
            signed: true,
            values: vec![(0, "RED".into()), (0xffff_fffd, "BLUE".into())],
        };
        assert_eq!(t(&e, 0), "RED");
        assert_eq!(t(&e, 0xffff_ffff_ffff_fffd), "BLUE");
        assert_eq!(t(&e, 42), "42");
        assert_eq!(t(&e, 0xffff_fff0), "-16");
        let f = |size| Type::Float {
            size,
            complex: false,
            x87: false,
        };
        assert_eq!(t(&f(8), u128::from(1.5f64.to_bits())), "1.5");
        assert_eq!(t(&f(4), u128::from(0.25f32.to_bits())), "0.25");
        assert_eq!(typed(&f(8), None, &no_memory, DEFAULT_STRING_LIMIT), "?");
        assert_eq!(t(&Type::Pointer { string: false }, 0), "NULL");
        assert_eq!(t(&Type::Pointer { string: false }, 0x1000), "0x1000");
        assert_eq!(t(&Type::Pointer { string: true }, 0x1000), "\"hi\"");
        assert_eq!(t(&Type::Pointer { string: true }, 0), "NULL");
        let agg = |name: Option<&str>| Type::Aggregate {
            keyword: "union",
            name: name.map(String::from),
            align: 4,
            passing: Passing::Unknown,
        };
        assert_eq!(t(&agg(Some("u")), 0), "{union u}");
        assert_eq!(
            typed(&agg(None), None, &no_memory, DEFAULT_STRING_LIMIT),
            "{union}"
        );
    }

    #[test]
    fn strings_cut_at_the_limit_but_not_at_exactly_the_limit() {
        let read = fixed(b"hello");
        assert_eq!(cstr_arg(0x1000, &read, 5), "\"hello\"");
        assert_eq!(cstr_arg(0x1000, &read, 4), "\"hell\"...");
        assert_eq!(cstr_arg(0x1000, &read, 0), "\"\"...");
        assert_eq!(cstr_arg(0x1000, &no_memory, 4), "0x1000");
    }

    /// Registers at a function's entry: the six integer argument registers,
    /// and sp at 0x7ffd_0000 (the return address there, stack arguments
    /// from 0x7ffd_0008).
    fn entry_regs(args: [u64; 6]) -> Regs {
        let mut regs = Regs::default();
        for (n, v) in args.into_iter().enumerate() {
            regs.set_arg(n, v);
        }
        regs.set_sp(0x7ffd_0000);
        regs
    }

    fn param(name: &str, ty: Type) -> Param {
        Param {
            name: Some(name.into()),
            ty,
        }
    }

    #[test]
    fn dwarf_arguments_from_registers_and_stack() {
        let int = Type::Int {
            size: 4,
            signed: true,
        };
        let double = Type::Float {
            size: 8,
            complex: false,
            x87: false,
        };
        let mut params: Vec<Param> = ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .map(|n| param(n, int.clone()))
            .collect();
        params.insert(1, param("x", double));
        params.push(Param {
            name: None,
            ty: Type::Int {
                size: 8,
                signed: false,
            },
        });
        let sig = Signature {
            params,
            variadic: true,
            ret: Type::Void,
            described: None,
            located: Default::default(),
        };
        // g is the first stack argument (offset 0), the unnamed one the second.
        let stack = |offset: u64, len: usize| -> Option<Vec<u8>> {
            let v: u64 = match offset {
                0 => 0xaaaa_aaaa_ffff_fff9,
                8 => 77,
                _ => return None,
            };
            Some(v.to_le_bytes()[..len].to_vec())
        };
        let regs = entry_regs([1, 0xffff_fffe, 3, 4, 5, 6]);
        let args = dwarf_args(
            &sig,
            &regs,
            &|_| None,
            &stack,
            &no_memory,
            DEFAULT_STRING_LIMIT,
        );
        assert_eq!(
            args.text(),
            "a=1, x=?, b=-2, c=3, d=4, e=5, f=6, g=-7, 77, ..."
        );
        assert_eq!(args.names.len(), args.values.len());
        assert_eq!(args.names[1].as_deref(), Some("x"));
        assert_eq!(args.names[8], None);
        // A stack that cannot be read: unavailable, never made up.
        let none = |_: u64, _: usize| -> Option<Vec<u8>> { None };
        let args = dwarf_args(
            &sig,
            &regs,
            &|_| None,
            &none,
            &no_memory,
            DEFAULT_STRING_LIMIT,
        );
        assert_eq!(args.values[7], "?");
    }

    #[test]
    fn typed_return_values() {
        let sig = |ret| {
            Known::Dwarf(Arc::new(Signature {
                params: vec![],
                variadic: false,
                ret,
                described: None,
                located: Default::default(),
            }))
        };
        let int = sig(Type::Int {
            size: 4,
            signed: true,
        });
        let r = render_ret(&int, 0xffff_ffff, None, None, &no_memory, 64);
        assert_eq!((r.text.as_str(), r.number), ("-1", Number::Signed(-1)));
        let r = render_ret(&sig(Type::Void), 10, None, None, &no_memory, 64);
        assert_eq!((r.text.as_str(), r.number), ("void", Number::None));
        let r = render_ret(
            &sig(Type::Bool { size: 1 }),
            0x100,
            None,
            None,
            &no_memory,
            64,
        );
        assert_eq!((r.text.as_str(), r.number), ("false", Number::Unsigned(0)));
        let u64_max = sig(Type::Int {
            size: 8,
            signed: false,
        });
        let r = render_ret(&u64_max, u64::MAX, None, None, &no_memory, 64);
        assert_eq!(r.number, Number::Unsigned(u64::MAX));
        let r = render_ret(&Known::Raw, 0xffff_ffff, None, None, &no_memory, 64);
        assert_eq!(
            (r.text.as_str(), r.number),
            ("0xffffffff", Number::Signed(0xffff_ffff))
        );
        let free = Known::Proto(prototype("free").unwrap());
        assert_eq!(
            render_ret(&free, 3, None, None, &no_memory, 64).text,
            "void"
        );
    }

    #[test]
    fn aggregates_by_where_they_travel_and_two_register_returns() {
        use crate::symbols::dwarf::Class;
        let agg = |name: &str, passing| Type::Aggregate {
            keyword: "struct",
            name: Some(name.into()),
            align: 8,
            passing,
        };
        let two = agg("two", Passing::Regs(vec![Class::Integer, Class::Integer]));
        let big = agg("big", Passing::Memory { size: 24, align: 8 });
        let mix = agg("mix", Passing::Regs(vec![Class::Sse, Class::Integer]));
        let sig = |params: Vec<Param>, ret| Signature {
            params,
            variadic: false,
            ret,
            described: None,
            located: Default::default(),
        };
        // big: in memory at sp + 8; two: rdi, rsi; mix: xmm0 and rdx.
        let s = sig(
            vec![
                param("b", big.clone()),
                param("t", two.clone()),
                param("m", mix.clone()),
            ],
            Type::Void,
        );
        let none = |_: u64, _: usize| -> Option<Vec<u8>> { None };
        let args = dwarf_args(
            &s,
            &entry_regs([4, 5, 0x2a, 0, 0, 0]),
            &|_| None,
            &none,
            &no_memory,
            DEFAULT_STRING_LIMIT,
        );
        assert_eq!(
            args.text(),
            "b={struct big @ 0x7ffd0008}, t={struct two: 0x4, 0x5}, m={struct mix: ?, 0x2a}"
        );
        // Returned in rax:rdx; the high half unknown without rdx, never 0.
        let known = |ret| Known::Dwarf(Arc::new(sig(vec![], ret)));
        let r = render_ret(&known(two.clone()), 4, Some(5), None, &no_memory, 64);
        assert_eq!(
            (r.text.as_str(), r.number),
            ("{struct two: 0x4, 0x5}", Number::None)
        );
        let r = render_ret(&known(two), 4, None, None, &no_memory, 64);
        assert_eq!(r.text, "{struct two: 0x4, ?}");
        let r = render_ret(&known(mix), 0x2a, Some(9), None, &no_memory, 64);
        assert_eq!(r.text, "{struct mix: ?, 0x2a}");
        // In memory: rax is the buffer's address.
        let r = render_ret(&known(big), 0x7ffd_0100, Some(9), None, &no_memory, 64);
        assert_eq!(r.text, "{struct big @ 0x7ffd0100}");
        let i128 = known(Type::Int {
            size: 16,
            signed: true,
        });
        assert_eq!(
            render_ret(&i128, 7, Some(1), None, &no_memory, 64).text,
            "18446744073709551623"
        );
        assert_eq!(
            render_ret(&i128, u64::MAX, Some(u64::MAX), None, &no_memory, 64).text,
            "-1"
        );
        assert_eq!(render_ret(&i128, 7, None, None, &no_memory, 64).text, "?");
    }

    #[test]
    fn more_libc_prototypes() {
        let read = fixed(b"r");
        assert_eq!(
            render_args("mmap", [0, 4096, 3, 0x22, (-1i64) as u64, 0], &read),
            ["NULL", "4096", "0x3", "0x22", "-1", "0"]
        );
        assert_eq!(
            render_args("pread64", [3, 0x1000, 10, 1 << 40, 0, 0], &read),
            ["3", "0x1000", "10", "1099511627776"]
        );
        assert_eq!(
            render_args("fopen", [0x1000, 0x2000, 0, 0, 0, 0], &read),
            ["\"r\"", "\"r\""]
        );
        assert_eq!(render_args("exit", [3, 0, 0, 0, 0, 0], &read), ["3"]);
        assert_eq!(render_args("free", [0, 0, 0, 0, 0, 0], &read), ["NULL"]);
        assert_eq!(render_retval("malloc", 0x5555_0000, &read), "0x55550000");
        assert_eq!(render_retval("memcpy", 0, &read), "NULL");
        assert_eq!(render_retval("recv", (-1i64) as u64, &read), "-1");
        assert_eq!(render_retval("fread", 4, &read), "4");
        for name in [
            "open", "openat", "creat", "read", "write", "pread", "pwrite", "pread64", "pwrite64",
            "close", "malloc", "calloc", "realloc", "free", "memcpy", "memset", "strlen", "strcmp",
            "strcpy", "fopen", "fclose", "fread", "fwrite", "getenv", "setenv", "socket",
            "connect", "bind", "accept", "send", "recv", "mmap", "mmap64", "munmap", "exit",
        ] {
            assert!(prototype(name).is_some(), "{name}");
        }
    }

    #[test]
    fn seconds_like_strace_t() {
        assert_eq!(seconds(std::time::Duration::from_nanos(11_400)), "0.000011");
        assert_eq!(seconds(std::time::Duration::from_millis(2500)), "2.500000");
    }
}
