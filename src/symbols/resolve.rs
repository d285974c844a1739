//! Resolving a probe spec against the loaded modules: from what the user wrote to
//! the runtime addresses where breakpoints go.
//!
//! Owns the search policy of the README's "Probe specs": the executable first, then the
//! libraries in load order; the first module with the name wins. It reads only the
//! module map (a snapshot); whether to wait for a library that is not loaded yet is
//! the caller's decision, which is why "not here (yet)" is a [`Resolution`] and not
//! an error.
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use super::demangle::{demangle, display_name};
use super::elf::{SymKind, Symbol, Tables};
use super::glob;
pub use super::location::Location;
use super::modules::{Module, ModuleMap};
use super::spec::{ProbeSpec, Target};
use crate::addr::{LinkAddr, RuntimeAddr};
use crate::error::{Error, Result};

/// The outcome of resolving a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// It resolved to these locations (never empty).
    Found(Vec<Location>),
    /// It names a module that is not loaded (yet).
    Pending,
    /// An unqualified name or pattern was not found in any loaded module; the
    /// caller decides whether to wait (libraries still loading) or fail.
    NotFound {
        /// The modules searched, by file name (for a `FILE:LINE` spec, those
        /// that have a line table: the others could not have had it).
        searched: Vec<String>,
    },
}

/// The stack unwinders' entry points (libgcc's, in libgcc_s or linked
/// statically), which rtrace hooks when return probes are in use.
pub const UNWINDERS: [&str; 5] = [
    "_Unwind_RaiseException",
    "_Unwind_Resume",
    "_Unwind_Resume_or_Rethrow",
    "_Unwind_ForcedUnwind",
    "_Unwind_Backtrace",
];

/// Called at the start of every C++ catch handler (libstdc++'s, or linked
/// statically): rtrace hooks it with the unwinders, to forget the calls the
/// exception unwound.
pub const CATCH_HOOK: &str = "__cxa_begin_catch";

/// The dynamic linker's function that reports library loads: rtrace's own
/// breakpoint (gdb's solib event), hit before rtrace knows the new map.
pub const RTLD_HOOK: &str = "_dl_debug_state";

/// Why a `.cold` fragment is never probed (see [`cold_fragment`]).
pub const COLD_FRAGMENT: &str = "a .cold fragment: part of a function, jumped to, not called";

/// True for a part of a function that GCC moved out of line for paths it
/// judged unlikely (`work.cold`, `_Z7throwerl.cold`, `work.cold.3`; shown
/// as `thrower(long) [clone .cold]`). It is jumped to from its function,
/// never called: it has no entry, and its "arguments" are whatever the
/// registers hold. The functions GCC clones for real calls (`.part.N`,
/// `.isra.N`, `.constprop.N`, `.clone.N`) are entries, and stay.
pub fn cold_fragment(linkage_name: &str) -> bool {
    linkage_name.split('.').skip(1).any(|part| part == "cold")
}

/// Why a glob leaves the function `linkage_name` alone, when it does: rtrace's
/// own machinery runs there. The unwinders' entries are hooked to move calls in
/// flight off the trampoline before a frame is read; a return probe on the
/// unwinder itself would put the trampoline back under it. `_dl_debug_state` is
/// where library loads are noticed. (IFUNC resolvers are never probed: an IFUNC
/// resolves to the implementation the process uses.) Named alone, they can still
/// be probed.
pub fn reserved(linkage_name: &str) -> Option<&'static str> {
    if linkage_name == RTLD_HOOK {
        return Some("used by rtrace's library-load hook");
    }
    if UNWINDERS.contains(&linkage_name) {
        return Some("used by rtrace's unwinder hooks");
    }
    None
}

/// The functions that find out who called them from their own return
/// address (`RETURN_ADDRESS (0)` in glibc 2.36's sources), and that any
/// function may reach by a tail call: `dlopen`, `dlmopen` and
/// `__libc_dlopen_mode` (`dlfcn/dlopen.c`, `dlfcn/dlmopen.c`,
/// `elf/dl-libc.c`) search the caller's RUNPATH (`$ORIGIN`) and open in its
/// namespace; `dlsym` and `dlvsym` (`dlfcn/dlsym.c`, `dlfcn/dlvsym.c`) look
/// `RTLD_NEXT` up after the caller's module, and fail when the address is in
/// no module; `dl_iterate_phdr` (`elf/dl-iteratephdr.c`) lists the caller's
/// namespace; `_dl_mcount_wrapper` and `_dl_mcount_wrapper_check`
/// (`elf/dl-profstub.c`) record the caller for `LD_PROFILE`. With the
/// trampoline in their return address slot they would take rtrace's scratch
/// page for their caller. rtrace hooks their entries whenever return probes
/// are in use, and watches their own returns at the return site (see
/// [`reads_return_address`]).
pub const CALLER_LOOKUPS: [&str; 8] = [
    "dlopen",
    "dlmopen",
    "dlsym",
    "dlvsym",
    "dl_iterate_phdr",
    "__libc_dlopen_mode",
    "_dl_mcount_wrapper",
    "_dl_mcount_wrapper_check",
];

/// Functions that read their own return address but are only ever reached
/// by a call the compiler emits at the start of a function, never by a tail
/// call: the profiling entries of `-pg` code (glibc's
/// `sysdeps/x86_64/_mcount.S`: `selfpc` is the return address) and libgcc's
/// split-stack `__morestack` family (`config/i386/morestack.S`: it goes on
/// with the caller's prologue one byte past its return address).
const PROLOGUE_CALLEES: [&str; 6] = [
    "mcount",
    "_mcount",
    "__fentry__",
    "__morestack",
    "__morestack_non_split",
    "__morestack_large_model",
];

/// The library whose allocators pass their return address to the legacy
/// `__malloc_hook` family and to mtrace's log (`malloc/malloc-debug.c`; the
/// allocators of `libc.so.6` no longer use theirs), and those allocators.
const MALLOC_DEBUG: (&str, [&str; 9]) = (
    "libc_malloc_debug.so",
    [
        "malloc",
        "free",
        "realloc",
        "calloc",
        "memalign",
        "aligned_alloc",
        "valloc",
        "pvalloc",
        "posix_memalign",
    ],
);

/// True when the function `name` of the module file `file` reads its own
/// return address: [`CALLER_LOOKUPS`], the profiling and split-stack entries
/// (`mcount`, `__fentry__`, `__morestack`…), the unwinders (libgcc's
/// `uw_init_context` starts the walk from it), and `libc_malloc_debug.so`'s
/// allocators. A return probe there leaves the return address alone and
/// watches the return site in the caller (gdb's `finish`); a fast probe
/// keeps its int3.
pub fn reads_return_address(file: &str, name: &str) -> bool {
    CALLER_LOOKUPS.contains(&name)
        || PROLOGUE_CALLEES.contains(&name)
        || UNWINDERS.contains(&name)
        || (file.starts_with(MALLOC_DEBUG.0) && MALLOC_DEBUG.1.contains(&name))
}

/// [`reads_return_address`] for the function at `addr` of `m`, whatever
/// alias named it (`___dlsym` from libc6-dbg is `dlsym`; `dlopen@GLIBC_2.2.5`
/// and `dlopen@@GLIBC_2.34` are one function): the names of the module's own
/// symbol tables at that address are asked too.
pub fn function_reads_return_address(m: &Module, addr: LinkAddr, name: &str) -> bool {
    let file = m.name();
    reads_return_address(file, name)
        || CALLER_LOOKUPS
            .iter()
            .chain(&PROLOGUE_CALLEES)
            .chain(&UNWINDERS)
            .chain(match file.starts_with(MALLOC_DEBUG.0) {
                true => &MALLOC_DEBUG.1[..],
                false => &[],
            })
            .any(|n| {
                m.elf
                    .symbols_named(n)
                    .iter()
                    .any(|s| s.kind.is_function() && s.addr == addr)
            })
}

/// True for the functions a return probe would break because they return
/// twice on one stack, or are never called: the `setjmp` family, `getcontext`
/// and `swapcontext` save their return address (which would be the
/// trampoline) for a later jump, `vfork`'s child returns on its parent's
/// stack, and `__restore_rt` is returned into by a signal handler, not
/// called. They are probed entry-only, whatever the spec.
pub fn returns_twice(linkage_name: &str) -> bool {
    const TWICE: [&str; 10] = [
        "setjmp",
        "_setjmp",
        "__sigsetjmp",
        "sigsetjmp",
        "getcontext",
        "swapcontext",
        "savectx",
        "vfork",
        "__vfork",
        "__restore_rt",
    ];
    TWICE.contains(&linkage_name)
}

/// True for the functions that never return to their caller (`exit`,
/// `__libc_start_main`, `longjmp`, …) or are never called (`_start`, entered
/// by the kernel with `argc` where a return address would be): probed
/// entry-only, whatever the spec. A return probe there would never fire, and
/// the instruction after the call may not even be code (`hlt` after `call
/// __libc_start_main`), so it could not be watched as a return site when an
/// unwinder runs; at `_start` it would overwrite `argc`.
pub fn never_returns(linkage_name: &str) -> bool {
    const NORETURN: [&str; 28] = [
        "_start",
        "_dl_start",
        "_dl_start_user",
        "__libc_start_main",
        "__libc_start_call_main",
        "exit",
        "_exit",
        "_Exit",
        "quick_exit",
        "abort",
        "pthread_exit",
        "thrd_exit",
        "longjmp",
        "_longjmp",
        "siglongjmp",
        "__longjmp_chk",
        "__stack_chk_fail",
        "__chk_fail",
        "__fortify_fail",
        "__assert_fail",
        "__assert_perror_fail",
        "__libc_fatal",
        "err",
        "errx",
        "verr",
        "verrx",
        "__cxa_throw",
        "__cxa_rethrow",
    ];
    NORETURN.contains(&linkage_name)
}

/// Resolves `spec` against `map`. Errors are for specs that can never resolve here
/// (offset not on an instruction boundary, line without code, …).
///
/// - A module-qualified spec whose module is not loaded is [`Resolution::Pending`].
/// - A function name resolves in the first module (executable, then libraries in
///   load order) that defines it: the function with that symbol name, else every
///   function whose demangled name is it (C++ `ns::Class::method` with or
///   without its parameter list, so every overload; Rust `app::parse` with or
///   without its hash). A glob resolves to every function of every searched
///   module whose symbol name or demangled name matches, one location per
///   address. Both report entries and returns. An IFUNC resolves to its resolver,
///   marked [`Location::ifunc`]: which implementation it picks is only known in
///   the running process.
/// - `name+off` is refused unless `off` is inside the function and on an
///   instruction boundary (decoding from the function's start).
/// - An absolute address must lie in a loaded module; a module-relative one is a
///   link address of that module.
/// - `file:line` takes the first module (executable first) whose line table has
///   code for it.
///
/// A name not found is [`Resolution::NotFound`] when unqualified (a library loaded
/// later may have it) and [`Error::UnknownSymbol`] when the named module is loaded
/// and lacks it.
pub fn resolve(spec: &ProbeSpec, map: &ModuleMap) -> Result<Resolution> {
    let searched: Vec<&Module> = match &spec.module {
        Some(q) => match map.find(q) {
            Some(m) => vec![m],
            None => return Ok(Resolution::Pending),
        },
        None => map.modules().iter().collect(),
    };
    match &spec.target {
        Target::Function { name } if glob::is_glob(name) => {
            let found = resolve_glob(name, &searched);
            found_or(spec, name, &searched, found)
        }
        Target::Function { name } => {
            let found = first_functions(name, &searched, spec.module.is_some())
                .map(|(m, syms)| {
                    syms.into_iter()
                        .map(|s| entry_location(m, s))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            found_or(spec, name, &searched, found)
        }
        Target::Offset { function, offset } => {
            let Some((m, syms)) = first_functions(function, &searched, spec.module.is_some())
            else {
                return found_or(spec, function, &searched, Vec::new());
            };
            if syms.len() > 1 {
                return Err(Error::InvalidSpec {
                    spec: spec.as_str().to_string(),
                    reason: format!(
                        "{function} names {} functions ({}); give one by its full name",
                        syms.len(),
                        syms.iter()
                            .map(|s| display_name(&s.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            let loc = offset_location(spec, m, syms[0], *offset)?;
            Ok(Resolution::Found(vec![loc]))
        }
        Target::Address { addr } => match &spec.module {
            None => {
                let at = RuntimeAddr(*addr);
                Ok(match map.module_at(at) {
                    Some(m) => Resolution::Found(vec![address_location(spec, m, at)?]),
                    None => Resolution::NotFound {
                        searched: names(&searched),
                    },
                })
            }
            Some(_) => {
                let Some(m) = searched.first() else {
                    return Ok(Resolution::Pending);
                };
                let at = m.to_runtime(LinkAddr(*addr));
                // Outside the module's mappings there is nothing to probe.
                Ok(if m.contains(at) {
                    Resolution::Found(vec![address_location(spec, m, at)?])
                } else {
                    Resolution::NotFound {
                        searched: names(&searched),
                    }
                })
            }
        },
        Target::Line { file, line } => resolve_line(file, *line, &searched),
    }
}

/// The modules of `map` that define a function named `name` (by symbol name or
/// demangled name), in search order. The first one is what an unqualified spec
/// resolves to; more than one means the name is ambiguous, which the caller may
/// want to warn about.
#[cfg(test)]
pub fn modules_defining<'a>(name: &str, map: &'a ModuleMap) -> Vec<&'a Module> {
    map.modules()
        .iter()
        .enumerate()
        .filter(|(i, m)| !functions_named(m, name, tables_for(*i, false)).is_empty())
        .map(|(_, m)| m)
        .collect()
}

/// The symbol tables a name is looked up in, in the `i`th module searched.
/// A separate debug file's symbols (a stripped program's static functions,
/// a library's internal ones) are consulted for the executable (searched
/// first) and for a module the spec names; a library's internal function
/// is never what an unqualified name means: ld.so's own `strlen` would
/// otherwise shadow libc's (ld.so is mapped, and its debug file read, before
/// libc is loaded).
fn tables_for(i: usize, qualified: bool) -> Tables {
    if qualified || i == 0 {
        Tables::WithDebugFile
    } else {
        Tables::Own
    }
}

/// The error for a spec found nowhere in `searched` (module file names, as
/// [`Resolution::NotFound`] gives them) of `map`.
pub fn not_found(spec: &ProbeSpec, searched: Vec<String>, map: &ModuleMap) -> Error {
    let name = match &spec.target {
        Target::Function { name } => name.clone(),
        Target::Offset { function, .. } => function.clone(),
        Target::Address { addr } if spec.module.is_none() => {
            return Error::UnmappedAddress {
                addr: RuntimeAddr(*addr),
            }
        }
        Target::Address { addr } => format!("{addr:#x}"),
        Target::Line { file, line } => {
            let first = match &spec.module {
                Some(q) => map.find(q),
                None => map.modules().first(),
            };
            return Error::NoLineInfo {
                file: file.clone(),
                line: *line,
                searched,
                unbuilt: first
                    .filter(|m| !m.elf.has_dwarf())
                    .map(|m| m.name().to_string()),
            };
        }
    };
    Error::UnknownSymbol { name, searched }
}

/// One probe point a spec would match, for `--list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Where the probe would go (for an IFUNC whose implementation is known,
    /// the implementation).
    pub location: Location,
    /// The IFUNC this is the implementation of, or the IFUNC itself when
    /// `at_resolver`.
    pub ifunc: Option<String>,
    /// True for an IFUNC whose implementation is not known (no process, or
    /// not relocated yet): `location` is its resolver.
    pub at_resolver: bool,
    /// The source line of the address, when the module has a line table.
    pub line: Option<(PathBuf, u32)>,
    /// Why a function the spec names is not probed ([`COLD_FRAGMENT`]).
    pub skipped: Option<&'static str>,
}

/// The probe points `spec` matches in `map`, without arming anything: what
/// `--list` prints. `read` reads a u64 of the process's memory, when there is
/// a process (IFUNCs are then shown at their implementation). A spec that
/// matches nothing, or names a module that is not loaded, is an error.
pub fn list(
    spec: &ProbeSpec,
    map: &ModuleMap,
    read: Option<&dyn Fn(RuntimeAddr) -> Option<u64>>,
) -> Result<Vec<Listed>> {
    let locations = match resolve(spec, map)? {
        Resolution::Found(locations) => locations,
        Resolution::Pending => {
            return Err(Error::UnknownModule {
                module: spec.module.clone().unwrap_or_default(),
                loaded: map.names(),
            })
        }
        Resolution::NotFound { searched } => return Err(not_found(spec, searched, map)),
    };
    let mut out = Vec::with_capacity(locations.len());
    for loc in locations {
        let implementation = match (loc.ifunc, read) {
            (true, Some(read)) => super::ifunc::read_implementation(map, &loc, read),
            _ => None,
        };
        let ifunc = loc.ifunc.then(|| loc.symbol.clone());
        let at_resolver = loc.ifunc && implementation.is_none();
        let location = implementation.unwrap_or(loc);
        let line = map
            .module_at(location.addr)
            .and_then(|m| m.elf.line_of(m.to_link(location.addr)));
        out.push(Listed {
            location,
            ifunc,
            at_resolver,
            line,
            skipped: None,
        });
    }
    // What the spec names but rtrace leaves alone, said rather than hidden.
    if let Target::Function { name } = &spec.target {
        let searched: Vec<&Module> = match &spec.module {
            Some(q) => map.find(q).into_iter().collect(),
            None => map.modules().iter().collect(),
        };
        for loc in cold_fragments_named(name, &searched) {
            let line = map
                .module_at(loc.addr)
                .and_then(|m| m.elf.line_of(m.to_link(loc.addr)));
            out.push(Listed {
                location: loc,
                ifunc: None,
                at_resolver: false,
                line,
                skipped: Some(COLD_FRAGMENT),
            });
        }
    }
    Ok(out)
}

/// The `.cold` fragments of the functions `name` (a name or a glob) names
/// in `searched`, by symbol name (without the suffix) or demangled name.
fn cold_fragments_named(name: &str, searched: &[&Module]) -> Vec<Location> {
    let glob = glob::is_glob(name);
    let mut out = Vec::new();
    for m in searched {
        let mut by_addr: BTreeMap<LinkAddr, &Symbol> = BTreeMap::new();
        for s in m.elf.symbols() {
            if !s.kind.is_function() || !cold_fragment(&s.name) {
                continue;
            }
            let base = s.name.split('.').next().unwrap_or(&s.name);
            let named = match glob {
                true => {
                    glob::matches(name, base)
                        || demangle(&s.name).is_some_and(|d| d.matches_glob(name))
                }
                false => base == name || demangle(&s.name).is_some_and(|d| d.is(name)),
            };
            if named {
                by_addr.entry(s.addr).or_insert(s);
            }
        }
        out.extend(by_addr.values().map(|s| entry_location(m, s)));
    }
    out
}

fn names(modules: &[&Module]) -> Vec<String> {
    modules.iter().map(|m| m.name().to_string()).collect()
}

/// `Found(locations)`, or what "not found" means for this spec: a `NotFound` the
/// caller may wait on when unqualified, an error when the named module lacks it.
fn found_or(
    spec: &ProbeSpec,
    name: &str,
    searched: &[&Module],
    found: Vec<Location>,
) -> Result<Resolution> {
    if !found.is_empty() {
        return Ok(Resolution::Found(found));
    }
    if spec.module.is_some() {
        return Err(Error::UnknownSymbol {
            name: name.to_string(),
            searched: names(searched),
        });
    }
    Ok(Resolution::NotFound {
        searched: names(searched),
    })
}

/// The functions of `m` that `name` names: the one with that symbol name, else
/// every function (one per address, lowest address first) whose demangled name
/// is `name`; in the symbol tables `tables` says.
fn functions_named<'m>(m: &'m Module, name: &str, tables: Tables) -> Vec<&'m Symbol> {
    if let Some(s) = m.elf.function_named_in(name, tables) {
        return vec![s];
    }
    let mut by_addr: BTreeMap<LinkAddr, &Symbol> = BTreeMap::new();
    for s in m.elf.functions_demangled(|d| d.is(name), tables) {
        if !cold_fragment(&s.name) {
            by_addr.entry(s.addr).or_insert(s);
        }
    }
    by_addr.into_values().collect()
}

/// How text output names function `linkage` of `m`: its demangled name
/// without parameter types (`thrower`, as gdb and uftrace show it, not
/// `thrower(long)`), unless another function of `m` has that name (an
/// overload: its types tell them apart); C and Rust names as
/// [`display_name`] has them.
pub(crate) fn short_name(m: &Module, linkage: &str) -> String {
    let Some(d) = demangle(linkage) else {
        return linkage.to_string();
    };
    if d.base == d.display || d.base.is_empty() {
        return d.display;
    }
    let namesakes: HashSet<LinkAddr> = m
        .elf
        .functions_demangled(|o| o.base == d.base, Tables::WithDebugFile)
        .into_iter()
        .filter(|s| !cold_fragment(&s.name))
        .map(|s| s.addr)
        .collect();
    match namesakes.len() {
        0 | 1 => d.base,
        _ => d.display,
    }
}

/// The first module (in search order) with functions named `name`, and them.
fn first_functions<'m>(
    name: &str,
    searched: &[&'m Module],
    qualified: bool,
) -> Option<(&'m Module, Vec<&'m Symbol>)> {
    searched.iter().enumerate().find_map(|(i, m)| {
        let syms = functions_named(m, name, tables_for(i, qualified));
        (!syms.is_empty()).then_some((*m, syms))
    })
}

/// The entry of function `s` of `m`.
fn entry_location(m: &Module, s: &Symbol) -> Location {
    Location {
        addr: m.to_runtime(s.addr),
        module: m.path.clone(),
        symbol: display_name(&s.name),
        linkage_name: s.name.clone(),
        offset: 0,
        function_entry: true,
        ifunc: s.kind == SymKind::IFunc,
    }
}

/// Every function matching `pattern` by symbol name or demangled name, one
/// location per runtime address, in module order then address order. Where
/// several aliases match at one address the name `functions()` prefers is used,
/// else the alphabetically first alias.
fn resolve_glob(pattern: &str, searched: &[&Module]) -> Vec<Location> {
    let mut out = Vec::new();
    let mut seen: HashSet<RuntimeAddr> = HashSet::new();
    for m in searched {
        let mut by_addr: BTreeMap<LinkAddr, &Symbol> = BTreeMap::new();
        for s in m.elf.symbols() {
            if s.kind.is_function() && !cold_fragment(&s.name) && glob::matches(pattern, &s.name) {
                by_addr.entry(s.addr).or_insert(s);
            }
        }
        for (s, d) in m.elf.demangled_functions() {
            if !cold_fragment(&s.name) && d.matches_glob(pattern) {
                by_addr.entry(s.addr).or_insert(s);
            }
        }
        for (addr, alias) in by_addr {
            let preferred = m
                .elf
                .function_at(addr)
                .filter(|(f, off)| *off == 0 && f.kind == alias.kind && f.name != alias.name)
                .filter(|(f, _)| {
                    glob::matches(pattern, &f.name)
                        || demangle(&f.name).is_some_and(|d| d.matches_glob(pattern))
                })
                .map(|(f, _)| f);
            let at = m.to_runtime(addr);
            if seen.insert(at) {
                out.push(entry_location(m, preferred.unwrap_or(alias)));
            }
        }
    }
    out
}

/// The location `offset` bytes into function `f` of `m`, refused unless it is
/// inside the function and starts an instruction.
fn offset_location(spec: &ProbeSpec, m: &Module, f: &Symbol, offset: u64) -> Result<Location> {
    let invalid = |reason: String| Error::InvalidSpec {
        spec: spec.as_str().to_string(),
        reason,
    };
    let function = display_name(&f.name);
    let size = f.size;
    if size > 0 && offset >= size {
        return Err(invalid(format!(
            "offset {offset:#x} is past the end of {function} ({size:#x} bytes)"
        )));
    }
    // Without a size, decoding up to the offset is enough to know whether an
    // instruction starts there.
    let len = if size > 0 {
        size
    } else {
        offset.saturating_add(1)
    };
    let code = usize::try_from(len)
        .ok()
        .and_then(|len| m.elf.bytes_at(f.addr, len))
        .ok_or_else(|| {
            invalid(format!(
                "the code of {function} is not in {} (cannot check the offset)",
                m.name()
            ))
        })?;
    if !crate::arch::is_insn_boundary(code, offset) {
        return Err(Error::NotInstructionBoundary {
            spec: spec.as_str().to_string(),
            symbol: function,
            offset,
        });
    }
    Ok(Location {
        addr: m.to_runtime(LinkAddr(f.addr.get().wrapping_add(offset))),
        module: m.path.clone(),
        symbol: function,
        linkage_name: f.name.clone(),
        offset,
        function_entry: false,
        ifunc: false,
    })
}

/// An entry-only location at runtime address `at` of `m`, named by the function
/// containing it (or by the address itself when no function does).
/// The location of an address probe at `at` in `m`, checked as the offset of
/// a `name+off` spec is: it must be code (in an executable segment of the
/// file, so a breakpoint there is executed rather than read as data), and an
/// instruction boundary of the function containing it, when a symbol says
/// where that function starts (without one, nothing can tell).
fn address_location(spec: &ProbeSpec, m: &Module, at: RuntimeAddr) -> Result<Location> {
    let link = m.to_link(at);
    let in_code = m.elf.segments().iter().any(|seg| {
        seg.exec
            && (seg.vaddr.get()..seg.vaddr.get().saturating_add(seg.memsz)).contains(&link.get())
    });
    if !in_code {
        return Err(Error::InvalidSpec {
            spec: spec.as_str().to_string(),
            reason: format!(
                "the address is in the data of {}, not in its code",
                m.name()
            ),
        });
    }
    if let Some((f, offset)) = m.elf.function_at(link) {
        if offset > 0 {
            return offset_location(spec, m, f, offset);
        }
    }
    Ok(location_at(m, at))
}

fn location_at(m: &Module, at: RuntimeAddr) -> Location {
    let (linkage_name, offset) = match m.elf.function_at(m.to_link(at)) {
        Some((f, off)) => (f.name.clone(), off),
        None => (at.to_string(), 0),
    };
    Location {
        addr: at,
        module: m.path.clone(),
        symbol: display_name(&linkage_name),
        linkage_name,
        offset,
        function_entry: false,
        ifunc: false,
    }
}

/// `file:line` in the first module that has code for it.
///
/// A module without line information for the file is passed over. When no
/// module has code for the line, the answer is, in this order: the first
/// module (in search order) whose line table has the file but no code at the
/// line ([`Error::NoCodeAtLine`], naming the nearest lines that have code,
/// whichever module it is: `printf.c:27` is libc's); an error that says why
/// the first module's lines could not be read at all (corrupt or compressed
/// DWARF: the executable, or the named module, is where the user's source
/// most likely is); else [`Resolution::NotFound`], whose `searched` lists the
/// modules that have line tables (the caller may wait for libraries, as for a
/// function name).
fn resolve_line(file: &str, line: u32, searched: &[&Module]) -> Result<Resolution> {
    let mut no_code = None;
    let mut first_error = None;
    let mut with_lines = Vec::new();
    for (i, m) in searched.iter().enumerate() {
        match m.elf.line_addresses(file, line) {
            Ok(addrs) => {
                let locations = addrs
                    .into_iter()
                    .map(|a| location_at(m, m.to_runtime(a)))
                    .collect();
                return Ok(Resolution::Found(locations));
            }
            Err(e @ Error::NoCodeAtLine { .. }) => {
                no_code.get_or_insert(e);
            }
            Err(Error::NoLineInfo { .. }) => {
                if m.elf.has_dwarf() {
                    with_lines.push(m.name().to_string());
                }
            }
            Err(e) if i == 0 => first_error = Some(e),
            Err(_) => {}
        }
    }
    match no_code.or(first_error) {
        Some(e) => Err(e),
        None => Ok(Resolution::NotFound {
            searched: with_lines,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::elf::ElfCache;
    use crate::symbols::test_support::{compile, fake_maps, LINES_C};
    use std::path::Path;
    use std::sync::OnceLock;

    const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    const EXE_BIAS: u64 = 0x5555_5555_4000;
    const LIBC_BIAS: u64 = 0x7f00_0000_0000;

    /// A PIE built from [`LINES_C`] with -g -O0 at `EXE_BIAS`, and the real libc at
    /// `LIBC_BIAS`, as a process would map them (built once for all tests here).
    fn map() -> &'static ModuleMap {
        static MAP: OnceLock<ModuleMap> = OnceLock::new();
        MAP.get_or_init(|| {
            let exe = compile("resolve", "x.c", LINES_C, &["-g", "-O0", "-pie"]);
            let mut cache = ElfCache::default();
            let mut maps = fake_maps(&cache.get(&exe).unwrap(), EXE_BIAS);
            maps.extend(fake_maps(&cache.get(Path::new(LIBC)).unwrap(), LIBC_BIAS));
            ModuleMap::new(&maps, &exe, &mut cache).unwrap()
        })
    }

    fn exe() -> &'static Module {
        &map().modules()[0]
    }

    fn libc() -> &'static Module {
        map().find("libc").unwrap()
    }

    fn run(spec: &str) -> Result<Resolution> {
        resolve(&spec.parse().unwrap(), map())
    }

    fn found(spec: &str) -> Vec<Location> {
        match run(spec) {
            Ok(Resolution::Found(locs)) => {
                assert!(!locs.is_empty());
                locs
            }
            other => panic!("{spec}: expected locations, got {other:?}"),
        }
    }

    fn link(m: &Module, name: &str) -> LinkAddr {
        m.elf.function_named(name).unwrap().addr
    }

    fn all_names() -> Vec<String> {
        vec!["a.out".to_string(), "libc.so.6".to_string()]
    }

    #[test]
    fn function_in_executable_and_library() {
        let work = found("work");
        assert_eq!(
            work,
            vec![Location {
                addr: RuntimeAddr(EXE_BIAS + link(exe(), "work").get()),
                module: exe().path.clone(),
                symbol: "work".into(),
                linkage_name: "work".into(),
                offset: 0,
                function_entry: true,
                ifunc: false,
            }]
        );
        let openat = found("openat");
        assert_eq!(openat.len(), 1);
        assert_eq!(openat[0].module, Path::new(LIBC));
        assert_eq!(openat[0].addr, libc().to_runtime(link(libc(), "openat")));
        assert!(openat[0].function_entry);
        assert_eq!(found("libc:openat"), openat);
        assert_eq!(found(&format!("{LIBC}:openat")), openat);
    }

    #[test]
    fn a_librarys_internal_functions_need_its_name() {
        // Known only to libc6-dbg's symbol table: found when libc is named,
        // never by an unqualified name.
        let locs = found("libc:__libc_start_call_main");
        assert_eq!(locs[0].module, Path::new(LIBC));
        assert_eq!(locs[0].symbol, "__libc_start_call_main");
        assert_eq!(
            run("__libc_start_call_main").unwrap(),
            Resolution::NotFound {
                searched: all_names()
            }
        );
    }

    #[test]
    fn executable_wins_over_libraries() {
        // `main` is defined by the executable only, but `printf` by libc only; a name
        // in both would resolve to the executable's, which comes first.
        assert_eq!(found("main")[0].module, exe().path);
        let defining = modules_defining("printf", map());
        assert_eq!(defining.len(), 1);
        assert_eq!(defining[0].name(), "libc.so.6");
        assert!(modules_defining("no_such_fn", map()).is_empty());
    }

    #[test]
    fn not_found_and_pending() {
        assert_eq!(
            run("no_such_function").unwrap(),
            Resolution::NotFound {
                searched: all_names()
            }
        );
        assert_eq!(run("libplug:plugin_fn").unwrap(), Resolution::Pending);
        assert_eq!(run("libplug:0x10").unwrap(), Resolution::Pending);
        assert_eq!(run("libplug:f+1").unwrap(), Resolution::Pending);
        match run("libc:work") {
            Err(Error::UnknownSymbol { name, searched }) => {
                assert_eq!(name, "work");
                assert_eq!(searched, ["libc.so.6"]);
            }
            other => panic!("{other:?}"),
        }
        // Objects are not functions.
        assert!(matches!(
            run("libc:stdout"),
            Err(Error::UnknownSymbol { .. })
        ));
    }

    #[test]
    fn globs() {
        let locs = found("a.out:wor*");
        assert_eq!(locs.len(), 1);
        assert_eq!(locs[0].symbol, "work");
        // Unqualified: the executable's first, then libc's (wordexp, …).
        let locs = found("wor*");
        assert_eq!(locs[0].symbol, "work");
        assert!(locs[1..].iter().all(|l| l.module == Path::new(LIBC)));
        let memcpy = found("libc:mem?py");
        assert!(memcpy.iter().any(|l| l.symbol == "memcpy"), "{memcpy:?}");
        assert!(memcpy.iter().all(|l| l.function_entry && l.offset == 0));
        let str_fns = found("libc:str*");
        assert!(str_fns.len() > 10);
        let unique: HashSet<RuntimeAddr> = str_fns.iter().map(|l| l.addr).collect();
        assert_eq!(unique.len(), str_fns.len(), "one location per address");
        assert!(str_fns.iter().all(|l| l.symbol.starts_with("str")));
        // Unqualified globs search every module.
        let everywhere = found("*ain");
        assert!(everywhere
            .iter()
            .any(|l| l.symbol == "main" && l.module == exe().path));
        assert_eq!(
            run("zzz_nothing*").unwrap(),
            Resolution::NotFound {
                searched: all_names()
            }
        );
        assert!(matches!(
            run("libc:zzz_nothing*"),
            Err(Error::UnknownSymbol { .. })
        ));
    }

    #[test]
    fn offsets() {
        // work: push rbp (1 byte); mov rbp,rsp (3 bytes); … (see elf's line tests).
        let work = link(exe(), "work");
        let locs = found("work+1");
        assert_eq!(
            locs,
            vec![Location {
                addr: exe().to_runtime(work).offset(1),
                module: exe().path.clone(),
                symbol: "work".into(),
                linkage_name: "work".into(),
                offset: 1,
                function_entry: false,
                ifunc: false,
            }]
        );
        assert_eq!(found("work+0x4")[0].offset, 4);
        assert!(!found("work+0")[0].function_entry);
        match run("work+2") {
            Err(Error::NotInstructionBoundary {
                spec,
                symbol,
                offset,
            }) => assert_eq!(
                (spec.as_str(), symbol.as_str(), offset),
                ("work+2", "work", 2)
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(run("work+0x10000"), Err(Error::InvalidSpec { reason, .. }) if reason.contains("past the end"))
        );
        assert_eq!(
            run("nosuch+1").unwrap(),
            Resolution::NotFound {
                searched: all_names()
            }
        );
        assert!(matches!(
            run("libc:nosuch+1"),
            Err(Error::UnknownSymbol { .. })
        ));
        // A library function: offset 0 is always a boundary.
        assert_eq!(found("libc:getpid+0")[0].module, Path::new(LIBC));
    }

    #[test]
    fn addresses() {
        let work = link(exe(), "work");
        let at = exe().to_runtime(work).offset(4);
        let locs = found(&format!("{at}"));
        assert_eq!(
            locs,
            vec![Location {
                addr: at,
                module: exe().path.clone(),
                symbol: "work".into(),
                linkage_name: "work".into(),
                offset: 4,
                function_entry: false,
                ifunc: false,
            }]
        );
        // Module-relative: the link address, as nm prints it.
        assert_eq!(found(&format!("a.out:{:#x}", work.get() + 4)), locs);
        let getpid = link(libc(), "getpid");
        let l = &found(&format!("libc:{getpid}"))[0];
        assert_eq!(l.addr, RuntimeAddr(LIBC_BIAS + getpid.get()));
        assert!(l.symbol.contains("getpid"));
        // Not mapped anywhere.
        assert_eq!(
            run("0x10").unwrap(),
            Resolution::NotFound {
                searched: all_names()
            }
        );
        assert_eq!(
            run("a.out:0x7fffffffffff").unwrap(),
            Resolution::NotFound {
                searched: vec!["a.out".into()]
            }
        );
        // Mapped, but not code: the ELF header at the module's start.
        let start = RuntimeAddr(EXE_BIAS);
        match run(&format!("{start}")) {
            Err(Error::InvalidSpec { reason, .. }) => {
                assert_eq!(
                    reason,
                    "the address is in the data of a.out, not in its code"
                )
            }
            other => panic!("the ELF header probed: {other:?}"),
        }
        // Inside an instruction of work (push %rbp; mov %rsp,%rbp): refused
        // as the offset would be.
        let inside = exe().to_runtime(work).offset(2);
        let r = run(&format!("{inside}"));
        assert!(
            matches!(r, Err(Error::NotInstructionBoundary { offset: 2, .. })),
            "{r:?}"
        );
    }

    #[test]
    fn lines() {
        let work = exe().to_runtime(link(exe(), "work"));
        let locs = found("x.c:5");
        assert_eq!(
            locs,
            vec![Location {
                addr: work.offset(7),
                module: exe().path.clone(),
                symbol: "work".into(),
                linkage_name: "work".into(),
                offset: 7,
                function_entry: false,
                ifunc: false,
            }]
        );
        assert_eq!(found("x.c:4")[0].addr, work);
        assert!(matches!(
            run("x.c:11"),
            Err(Error::NoCodeAtLine { line: 11, .. })
        ));
        // A file no loaded module has: not found (yet), as for a function name.
        // Both modules have line tables (libc's from libc6-dbg): the error
        // names them instead of asking for -g.
        let other: ProbeSpec = "other.c:5".parse().unwrap();
        let Ok(Resolution::NotFound { searched }) = resolve(&other, map()) else {
            panic!("other.c:5 should be not found");
        };
        assert_eq!(searched, all_names());
        let e = not_found(&other, searched, map());
        assert_eq!(
            e.to_string(),
            "no code for other.c:5 (not a file of the line tables of a.out, libc.so.6)"
        );
        assert!(!e.hint().unwrap().contains("-g"), "{:?}", e.hint());
    }

    #[test]
    fn a_line_without_code_in_a_library_names_the_nearest_lines() {
        // printf.c is libc's, the second module searched: its nearest lines
        // are reported, not "no code for".
        match run("printf.c:27") {
            Err(e @ Error::NoCodeAtLine { .. }) => assert_eq!(
                e.to_string(),
                "no code at printf.c:27; nearest lines with code: 28, 29"
            ),
            other => panic!("{other:?}"),
        }
        let locs = found("printf.c:28");
        assert_eq!(locs[0].module, Path::new(LIBC));
        assert_eq!(locs[0].symbol, "printf");
    }

    #[test]
    fn without_any_line_table_the_hint_asks_for_debug_info() {
        let exe = compile("resolve_nodebug", "x.c", LINES_C, &["-O0"]);
        let mut cache = ElfCache::default();
        let maps = fake_maps(&cache.get(&exe).unwrap(), EXE_BIAS);
        let map = ModuleMap::new(&maps, &exe, &mut cache).unwrap();
        let spec: ProbeSpec = "x.c:5".parse().unwrap();
        let Ok(Resolution::NotFound { searched }) = resolve(&spec, &map) else {
            panic!("x.c:5 without -g should be not found");
        };
        assert!(searched.is_empty());
        let e = not_found(&spec, searched, &map);
        assert_eq!(e.to_string(), "no code for x.c:5 (a.out has no line table)");
        assert!(e.hint().unwrap().contains("-g"));
    }

    #[test]
    fn ifuncs_are_marked_and_have_slots() {
        let strlen = found("libc:strlen");
        assert_eq!(strlen.len(), 1);
        assert!(strlen[0].ifunc && strlen[0].function_entry);
        // libc calls strlen itself through an IRELATIVE slot.
        let slots = crate::symbols::ifunc::slots(map(), &strlen[0]);
        assert!(!slots.is_empty());
        assert!(slots.iter().all(|s| libc().contains(s.addr)));
        assert!(!found("libc:openat")[0].ifunc);
    }

    #[test]
    fn cold_fragments_are_told_from_clones() {
        for cold in [
            "work.cold",
            "_Z7throwerl.cold",
            "work.cold.3",
            "_Z1fv.part.0.cold",
        ] {
            assert!(cold_fragment(cold), "{cold}");
        }
        for entry in [
            "work",
            "work.part.0",
            "work.isra.0",
            "work.constprop.0",
            "cold",
            "coldstart",
        ] {
            assert!(!cold_fragment(entry), "{entry}");
        }
    }

    #[test]
    fn reserved_functions() {
        assert!(reserved("_dl_debug_state").is_some());
        assert!(reserved("_Unwind_RaiseException").is_some());
        assert!(reserved("setjmp").is_none());
        assert!(returns_twice("setjmp") && returns_twice("swapcontext"));
        assert!(!returns_twice("strlen"));
        assert!(reserved("strlen").is_none());
        assert!(never_returns("exit") && never_returns("__libc_start_main"));
        assert!(never_returns("_start"));
        assert!(!never_returns("strlen"));
    }

    #[test]
    fn functions_that_read_their_return_address() {
        let libc_file = "libc.so.6";
        for name in [
            "dlopen",
            "dlmopen",
            "dlsym",
            "dlvsym",
            "dl_iterate_phdr",
            "__libc_dlopen_mode",
            "_dl_mcount_wrapper",
            "_dl_mcount_wrapper_check",
            "mcount",
            "_mcount",
            "__fentry__",
            "__morestack",
            "_Unwind_RaiseException",
            "_Unwind_Backtrace",
        ] {
            assert!(reads_return_address(libc_file, name), "{name}");
        }
        // libc's allocators no longer pass it on; libc_malloc_debug's do.
        assert!(!reads_return_address(libc_file, "malloc"));
        assert!(!reads_return_address(libc_file, "dlerror"));
        assert!(!reads_return_address(libc_file, "dladdr"));
        assert!(!reads_return_address("libc.so.6", "_dl_find_object"));
        assert!(reads_return_address("libc_malloc_debug.so.0", "malloc"));
        assert!(reads_return_address(
            "libc_malloc_debug.so.0",
            "posix_memalign"
        ));
        assert!(!reads_return_address("libc_malloc_debug.so.0", "mallopt"));
        // Every hooked name is on the list.
        assert!(CALLER_LOOKUPS
            .iter()
            .all(|n| reads_return_address(libc_file, n)));

        // In this machine's libc, under every name of the function: dlsym
        // and dlopen have two versions (2.2.5 and 2.34) at one address.
        let m = libc();
        for name in ["dlsym", "dlopen", "dlvsym", "dlmopen", "dl_iterate_phdr"] {
            let syms = m.elf.symbols_named(name);
            assert!(!syms.is_empty(), "libc has no {name}");
            for s in syms {
                assert!(function_reads_return_address(m, s.addr, name), "{name}");
                // Named otherwise (a debug file's internal alias), the
                // address still says it.
                assert!(function_reads_return_address(m, s.addr, "___alias"));
            }
        }
        let dlopen = found("libc:dl*")
            .into_iter()
            .find(|l| l.linkage_name == "dlopen")
            .expect("libc:dl* has dlopen");
        assert!(function_reads_return_address(
            m,
            m.to_link(dlopen.addr),
            &dlopen.linkage_name
        ));
        let malloc = link(m, "malloc");
        assert!(!function_reads_return_address(m, malloc, "malloc"));
        let dlerror = link(m, "dlerror");
        assert!(!function_reads_return_address(m, dlerror, "dlerror"));
    }

    /// A C++ program (compiled by gcc's C++ front end, no library needed) at
    /// `EXE_BIAS`, alone in its map.
    fn cpp_map() -> &'static ModuleMap {
        static MAP: OnceLock<ModuleMap> = OnceLock::new();
        MAP.get_or_init(|| {
            let src = "\
namespace ns {
struct C { int m(int x); int k() const; };
int C::m(int x) { return x; }
int C::k() const { return 1; }
int over(int x) { return x; }
int over(double x) { return (int)x; }
}
int inner(int x) { return x; }
int main() { ns::C c; return c.m(1) + c.k() + ns::over(1) + ns::over(1.0) + inner(0); }
";
            let exe = compile("resolve_cpp", "x.cpp", src, &["-O0", "-pie"]);
            let mut cache = ElfCache::default();
            let maps = fake_maps(&cache.get(&exe).unwrap(), EXE_BIAS);
            ModuleMap::new(&maps, &exe, &mut cache).unwrap()
        })
    }

    fn cpp_symbols(spec: &str) -> Vec<String> {
        match resolve(&spec.parse().unwrap(), cpp_map()) {
            Ok(Resolution::Found(locs)) => locs.into_iter().map(|l| l.symbol).collect(),
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn demangled_names_match() {
        assert_eq!(cpp_symbols("inner"), ["inner(int)"]);
        assert_eq!(cpp_symbols("_Z5inneri"), ["inner(int)"]);
        assert_eq!(cpp_symbols("inner(int)"), ["inner(int)"]);
        assert_eq!(cpp_symbols("ns::C::m"), ["ns::C::m(int)"]);
        assert_eq!(cpp_symbols("ns::C::k() const"), ["ns::C::k() const"]);
        // An overload set is probed whole; one overload by its parameters.
        let mut over = cpp_symbols("ns::over");
        over.sort();
        assert_eq!(over, ["ns::over(double)", "ns::over(int)"]);
        assert_eq!(cpp_symbols("ns::over(double)"), ["ns::over(double)"]);
        // Globs see demangled names, with or without parameters.
        let mut ns = cpp_symbols("ns::*");
        ns.sort();
        assert_eq!(
            ns,
            [
                "ns::C::k() const",
                "ns::C::m(int)",
                "ns::over(double)",
                "ns::over(int)"
            ]
        );
        assert_eq!(cpp_symbols("*::m(int)"), ["ns::C::m(int)"]);
        // A part of a name is not the name.
        assert!(matches!(
            resolve(&"over".parse().unwrap(), cpp_map()),
            Ok(Resolution::NotFound { .. })
        ));
        assert!(matches!(
            resolve(&"ns::over+0".parse().unwrap(), cpp_map()),
            Err(Error::InvalidSpec { .. })
        ));
        let m = &cpp_map().modules()[0];
        let at = m.to_runtime(m.elf.function_named("_ZN2ns1C1mEi").unwrap().addr);
        match resolve(&format!("{at}").parse().unwrap(), cpp_map()) {
            Ok(Resolution::Found(locs)) => {
                assert_eq!(locs[0].symbol, "ns::C::m(int)");
                assert_eq!(locs[0].linkage_name, "_ZN2ns1C1mEi");
            }
            other => panic!("{other:?}"),
        }
    }
}
