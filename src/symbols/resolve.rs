//! Resolving a probe spec against the loaded modules: from what the user wrote to
//! the runtime addresses where breakpoints go.
//!
//! Owns the search policy of SPEC's "Probe specs": the executable first, then the
//! libraries in load order; the first module with the name wins. It reads only the
//! module map (a snapshot); whether to wait for a library that is not loaded yet is
//! the caller's decision, which is why "not here (yet)" is a [`Resolution`] and not
//! an error.
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use super::glob;
use super::modules::{Module, ModuleMap};
use super::spec::{ProbeSpec, Target};
use crate::addr::{LinkAddr, RuntimeAddr};
use crate::error::{Error, Result};

/// One place a spec resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The runtime address of the probed instruction.
    pub addr: RuntimeAddr,
    /// The module's path.
    pub module: PathBuf,
    /// The function containing it (or `0x…` when there is none).
    pub symbol: String,
    /// Bytes into `symbol`.
    pub offset: u64,
    /// True when this is a function's first instruction and the spec is a function
    /// spec: it reports entries and returns.
    pub function_entry: bool,
}

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
        /// The modules searched, by file name.
        searched: Vec<String>,
    },
}

/// Resolves `spec` against `map`. Errors are for specs that can never resolve here
/// (offset not on an instruction boundary, line without code, …).
///
/// - A module-qualified spec whose module is not loaded is [`Resolution::Pending`].
/// - A function name resolves to its first definition (executable, then libraries
///   in load order); a glob to every matching function of every searched module,
///   one location per address. Both report entries and returns. IFUNC symbols
///   resolve to the resolver: which implementation it picks is only known in the
///   running process.
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
            let found = first_function(name, &searched)
                .map(|(m, addr)| {
                    vec![Location {
                        addr: m.to_runtime(addr),
                        module: m.path.clone(),
                        symbol: name.clone(),
                        offset: 0,
                        function_entry: true,
                    }]
                })
                .unwrap_or_default();
            found_or(spec, name, &searched, found)
        }
        Target::Offset { function, offset } => {
            let Some((m, addr)) = first_function(function, &searched) else {
                return found_or(spec, function, &searched, Vec::new());
            };
            let loc = offset_location(spec, m, function, addr, *offset)?;
            Ok(Resolution::Found(vec![loc]))
        }
        Target::Address { addr } => match &spec.module {
            None => {
                let at = RuntimeAddr(*addr);
                Ok(match map.module_at(at) {
                    Some(m) => Resolution::Found(vec![location_at(m, at)]),
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
                    Resolution::Found(vec![location_at(m, at)])
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

/// The modules of `map` that define a function named exactly `name`, in search
/// order. The first one is what an unqualified spec resolves to; more than one
/// means the name is ambiguous, which the caller may want to warn about.
pub fn modules_defining<'a>(name: &str, map: &'a ModuleMap) -> Vec<&'a Module> {
    map.modules()
        .iter()
        .filter(|m| m.elf.function_named(name).is_some())
        .collect()
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

/// The first module (in search order) with a function named `name`, and its
/// link address there.
fn first_function<'m>(name: &str, searched: &[&'m Module]) -> Option<(&'m Module, LinkAddr)> {
    searched
        .iter()
        .find_map(|m| Some((*m, m.elf.function_named(name)?.addr)))
}

/// Every function matching `pattern`, one location per runtime address, in module
/// order then address order. Where several aliases match at one address the name
/// `functions()` prefers is used, else the alphabetically first alias.
fn resolve_glob(pattern: &str, searched: &[&Module]) -> Vec<Location> {
    let mut out = Vec::new();
    let mut seen: HashSet<RuntimeAddr> = HashSet::new();
    for m in searched {
        let mut by_addr: BTreeMap<LinkAddr, &str> = BTreeMap::new();
        for s in m.elf.symbols() {
            if s.kind.is_function() && glob::matches(pattern, &s.name) {
                by_addr.entry(s.addr).or_insert(&s.name);
            }
        }
        for (addr, alias) in by_addr {
            let preferred = m
                .elf
                .function_at(addr)
                .filter(|(f, off)| *off == 0 && glob::matches(pattern, &f.name))
                .map(|(f, _)| f.name.as_str());
            let at = m.to_runtime(addr);
            if seen.insert(at) {
                out.push(Location {
                    addr: at,
                    module: m.path.clone(),
                    symbol: preferred.unwrap_or(alias).to_string(),
                    offset: 0,
                    function_entry: true,
                });
            }
        }
    }
    out
}

/// The location `offset` bytes into `function` (at link address `start` in `m`),
/// refused unless it is inside the function and starts an instruction.
fn offset_location(
    spec: &ProbeSpec,
    m: &Module,
    function: &str,
    start: LinkAddr,
    offset: u64,
) -> Result<Location> {
    let invalid = |reason: String| Error::InvalidSpec {
        spec: spec.as_str().to_string(),
        reason,
    };
    let size = m
        .elf
        .function_named(function)
        .map(|s| s.size)
        .unwrap_or_default();
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
        .and_then(|len| m.elf.bytes_at(start, len))
        .ok_or_else(|| {
            invalid(format!(
                "the code of {function} is not in {} (cannot check the offset)",
                m.name()
            ))
        })?;
    if !crate::arch::is_insn_boundary(code, offset) {
        return Err(Error::NotInstructionBoundary {
            spec: spec.as_str().to_string(),
            symbol: function.to_string(),
            offset,
        });
    }
    Ok(Location {
        addr: m.to_runtime(LinkAddr(start.get().wrapping_add(offset))),
        module: m.path.clone(),
        symbol: function.to_string(),
        offset,
        function_entry: false,
    })
}

/// An entry-only location at runtime address `at` of `m`, named by the function
/// containing it (or by the address itself when no function does).
fn location_at(m: &Module, at: RuntimeAddr) -> Location {
    let (symbol, offset) = match m.elf.function_at(m.to_link(at)) {
        Some((f, off)) => (f.name.clone(), off),
        None => (at.to_string(), 0),
    };
    Location {
        addr: at,
        module: m.path.clone(),
        symbol,
        offset,
        function_entry: false,
    }
}

/// `file:line` in the first module that has code for it.
///
/// A module without line information for it is passed over. An error that says why
/// the line could not be looked up at all (corrupt or compressed DWARF) is
/// reported when it comes from the first module searched (the executable, or the
/// named module), where the user's source most likely is; otherwise the answer is
/// "no code for that line".
fn resolve_line(file: &str, line: u32, searched: &[&Module]) -> Result<Resolution> {
    let mut first_error = None;
    for (i, m) in searched.iter().enumerate() {
        match m.elf.line_addresses(file, line) {
            Ok(addrs) => {
                let locations = addrs
                    .into_iter()
                    .map(|a| location_at(m, m.to_runtime(a)))
                    .collect();
                return Ok(Resolution::Found(locations));
            }
            Err(Error::NoLineInfo { .. }) => {}
            Err(e) if i == 0 => first_error = Some(e),
            Err(_) => {}
        }
    }
    Err(first_error.unwrap_or_else(|| Error::NoLineInfo {
        file: file.to_string(),
        line,
    }))
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
                offset: 0,
                function_entry: true,
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
                offset: 1,
                function_entry: false,
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
                offset: 4,
                function_entry: false,
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
        // Mapped but in no function: named by its address. The ELF header is
        // mapped at the module's start and is code of no function.
        let start = RuntimeAddr(EXE_BIAS);
        let l = &found(&format!("{start}"))[0];
        assert_eq!((l.symbol.as_str(), l.offset), ("0x555555554000", 0));
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
                offset: 7,
                function_entry: false,
            }]
        );
        assert_eq!(found("x.c:4")[0].addr, work);
        assert!(matches!(
            run("x.c:11"),
            Err(Error::NoLineInfo { line: 11, .. })
        ));
        assert!(matches!(run("other.c:5"), Err(Error::NoLineInfo { .. })));
    }
}
