//! The modules loaded in a process: which ELF file is mapped where, and at what
//! load bias.
//!
//! Owns the one conversion between [`LinkAddr`] and [`RuntimeAddr`] (a module's
//! bias) and naming runtime addresses by function. It is built from a snapshot of
//! `/proc/PID/maps` and never reads tracee memory, so a new map is built after every
//! change to the address space (exec, dlopen) rather than patched.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::elf::{Dependencies, ElfCache, ElfFile, Segment};
use super::maps::Mapping;
use crate::addr::{LinkAddr, RuntimeAddr};
use crate::error::{Error, Result};

/// The granularity of mappings: `mmap` maps whole pages, so a segment's mapping
/// starts at its page-aligned address and file offset. x86-64 pages are 4 KiB
/// (huge pages never back file mappings made by ld.so).
const PAGE: u64 = 4096;

const fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

/// One loaded ELF object (the executable, the dynamic linker, a library).
#[derive(Clone, Debug)]
pub struct Module {
    /// The mapped file.
    pub path: PathBuf,
    /// Runtime address = link address + bias. Private: every conversion
    /// goes through [`Module::to_runtime`] and [`Module::to_link`].
    bias: u64,
    /// The runtime ranges mapped from the file.
    pub ranges: Vec<(RuntimeAddr, RuntimeAddr)>,
    /// The parsed file.
    pub(crate) elf: Arc<ElfFile>,
}

impl Module {
    /// The module a recording describes: `path`'s file (parsed already),
    /// at `bias`, over `ranges`.
    pub(crate) fn recorded(
        path: PathBuf,
        bias: u64,
        ranges: Vec<(RuntimeAddr, RuntimeAddr)>,
        elf: Arc<ElfFile>,
    ) -> Module {
        Module {
            path,
            bias,
            ranges,
            elf,
        }
    }

    /// The file name (`libc.so.6`); empty if it is not UTF-8.
    pub fn name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }
    /// True when a spec's module qualifier names this module: an absolute path of
    /// `path` (through symbolic links too), or a file name equal to `q`, or
    /// starting with `q.` or `q-`.
    ///
    /// So `libc` names `libc.so.6` and `libc-2.31.so`, and `ld-linux-x86-64` names
    /// `ld-linux-x86-64.so.2`, but `lib` names neither.
    pub fn matches(&self, qualifier: &str) -> bool {
        if qualifier.is_empty() {
            return false;
        }
        let canonical = canonical_qualifier(qualifier);
        self.matches_with(qualifier, canonical.as_deref())
    }

    /// [`Module::matches`], with the qualifier's canonical path (for an
    /// absolute one) found already.
    fn matches_with(&self, qualifier: &str, canonical: Option<&Path>) -> bool {
        if qualifier.starts_with('/') {
            return Path::new(qualifier) == self.path || canonical == Some(self.path.as_path());
        }
        names(qualifier, self.name())
    }
    /// Link address → runtime address.
    pub fn to_runtime(&self, a: LinkAddr) -> RuntimeAddr {
        RuntimeAddr(a.0.wrapping_add(self.bias))
    }
    /// Runtime address → link address.
    pub fn to_link(&self, a: RuntimeAddr) -> LinkAddr {
        LinkAddr(a.0.wrapping_sub(self.bias))
    }
    /// True when `a` lies in one of the module's mapped ranges.
    pub fn contains(&self, a: RuntimeAddr) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= a && a < e)
    }
}

/// The canonical path of an absolute qualifier: the maps name a file by its
/// canonical path (`/usr/lib/…`), the user may give it through a symbolic
/// link (`/lib/…`).
fn canonical_qualifier(qualifier: &str) -> Option<PathBuf> {
    match qualifier.starts_with('/') {
        true => std::fs::canonicalize(qualifier).ok(),
        false => None,
    }
}

/// True when a spec's module qualifier names the module file at `path`,
/// as [`Module::matches`] has it (a recording's module, known by its path).
pub(crate) fn qualifies(qualifier: &str, path: &Path) -> bool {
    if qualifier.starts_with('/') {
        return Path::new(qualifier) == path
            || canonical_qualifier(qualifier).as_deref() == Some(path);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !qualifier.is_empty() && names(qualifier, name)
}

/// True when the name qualifier `q` names the file called `name`: equal, or
/// followed in it by `.` or `-` (see [`Module::matches`]).
fn names(q: &str, name: &str) -> bool {
    match name.strip_prefix(q) {
        Some(rest) => rest.is_empty() || rest.starts_with(['.', '-']),
        None => false,
    }
}

/// An address named by function: `work+0x8 in /path/count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbolized<'a> {
    /// The module's path.
    pub module: &'a Path,
    /// The function's name.
    pub symbol: &'a str,
    /// Bytes into the function.
    pub offset: u64,
}

/// The modules of one address space: the executable first, then the others in the
/// order they appear in the maps.
#[derive(Clone, Debug, Default)]
pub struct ModuleMap {
    modules: Vec<Module>,
}

impl ModuleMap {
    /// Builds the map from parsed maps; `exe` is the main executable's path
    /// (`/proc/PID/exe`). Files that cannot be parsed as ELF are skipped.
    ///
    /// `exe` may also be the `/proc/PID/exe` link itself; it is then read to find the
    /// executable's path. Mappings are grouped by file, so a file is one module.
    /// Pseudo-mappings (`[vdso]`, `[heap]`, anonymous memory) are not modules, and
    /// files that cannot be parsed as ELF (a mapped font, a locale archive, a file
    /// deleted since it was mapped) are skipped quietly. Only the executable must
    /// parse: when it is corrupt or not ELF, that error is returned, since nothing
    /// in it could be probed.
    pub fn new(maps: &[Mapping], exe: &Path, cache: &mut ElfCache) -> Result<ModuleMap> {
        let mut groups: Vec<(PathBuf, Vec<&Mapping>)> = Vec::new();
        for m in maps {
            let Some(path) = m.path() else { continue };
            match groups.iter_mut().find(|(p, _)| *p == path) {
                Some((_, group)) => group.push(m),
                None => groups.push((path, vec![m])),
            }
        }
        let exe = executable_path(exe, &groups);
        if let Some(i) = groups.iter().position(|(p, _)| Some(p) == exe.as_ref()) {
            let group = groups.remove(i);
            groups.insert(0, group);
        }

        let mut modules = Vec::with_capacity(groups.len());
        for (path, group) in groups {
            let is_exe = Some(&path) == exe.as_ref();
            let elf = match cache.get(&path) {
                Ok(elf) => elf,
                Err(
                    e @ (Error::NotElf { .. }
                    | Error::UnsupportedElf { .. }
                    | Error::CorruptElf { .. }),
                ) if is_exe => return Err(e),
                Err(_) => continue,
            };
            // A file mapped by the program itself rather than loaded (a data file
            // that happens to be ELF) may match no segment; it is no module then.
            let Some(bias) = load_bias(elf.segments(), &group) else {
                continue;
            };
            modules.push(Module {
                path,
                bias,
                ranges: group.iter().map(|m| (m.start, m.end)).collect(),
                elf,
            });
        }
        Ok(ModuleMap { modules })
    }
    /// The map of `modules` (the executable first).
    pub(crate) fn from_modules(modules: Vec<Module>) -> ModuleMap {
        ModuleMap { modules }
    }

    /// The modules.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }
    /// The module mapping `a`.
    pub fn module_at(&self, a: RuntimeAddr) -> Option<&Module> {
        self.modules.iter().find(|m| m.contains(a))
    }
    /// The module for a qualifier (see [`Module::matches`]).
    pub fn find(&self, qualifier: &str) -> Option<&Module> {
        // (Canonicalised once, not once per module.)
        let canonical = canonical_qualifier(qualifier);
        self.modules
            .iter()
            .find(|m| m.matches_with(qualifier, canonical.as_deref()))
    }
    /// Names `a` by function.
    pub fn symbolize(&self, a: RuntimeAddr) -> Option<Symbolized<'_>> {
        let module = self.module_at(a)?;
        let (symbol, offset) = module.elf.function_at(module.to_link(a))?;
        Some(Symbolized {
            module: &module.path,
            symbol: &symbol.name,
            offset,
        })
    }

    /// The modules a program would load, read from files without running it:
    /// the executable, then its DT_NEEDED libraries breadth first (the dynamic
    /// linker's load order), then its interpreter. Every module is at bias 0,
    /// so addresses are link-time addresses, as `nm` prints them.
    ///
    /// Libraries are looked for the way ld.so mostly does: DT_RPATH (when there
    /// is no DT_RUNPATH), `LD_LIBRARY_PATH`, DT_RUNPATH (`$ORIGIN` expanded),
    /// then the directories of `/etc/ld.so.conf.d/*.conf` and the default ones.
    /// A library found nowhere is left out: what it defines cannot be listed.
    pub fn from_program(program: &Path, cache: &mut ElfCache) -> Result<ModuleMap> {
        let exe = cache.get(program)?;
        let mut paths = vec![program.to_path_buf()];
        let mut queue = std::collections::VecDeque::from([program.to_path_buf()]);
        while let Some(path) = queue.pop_front() {
            // A library that does not parse needs nothing that could be found.
            let Ok(elf) = cache.get(&path) else { continue };
            for lib in needed(&path, elf.dependencies()) {
                if paths.iter().any(|p| p == &lib) {
                    continue;
                }
                paths.push(lib.clone());
                queue.push_back(lib);
            }
        }
        if let Some(interp) = exe.interpreter() {
            let interp = PathBuf::from(interp);
            let canon = std::fs::canonicalize(&interp).ok();
            let loaded = paths
                .iter()
                .any(|p| std::fs::canonicalize(p).ok() == canon && canon.is_some());
            if !loaded {
                paths.push(interp);
            }
        }
        let mut modules = Vec::new();
        for path in paths {
            let elf = match cache.get(&path) {
                Ok(elf) => elf,
                Err(e) if path == program => return Err(e),
                Err(_) => continue,
            };
            let ranges = elf
                .segments()
                .iter()
                .map(|s| {
                    (
                        RuntimeAddr(s.vaddr.get()),
                        RuntimeAddr(s.vaddr.get().saturating_add(s.memsz)),
                    )
                })
                .collect();
            modules.push(Module {
                path,
                bias: 0,
                ranges,
                elf,
            });
        }
        Ok(ModuleMap { modules })
    }

    /// The modules' file names, in map order (for "searched: …" messages).
    pub fn names(&self) -> Vec<String> {
        self.modules.iter().map(|m| m.name().to_string()).collect()
    }
}

impl ModuleMap {
    /// Why a module qualifier that names no loaded module can never name one
    /// in this process, or `None` when it may: a spec on it then waits for
    /// the library to be loaded (dlopen). It may when it is
    /// - an absolute path to a 64-bit x86 ELF file, or
    /// - a name (see [`Module::matches`]) of a file that the dynamic linker
    ///   would find by name: in a directory of the DT_RPATH or DT_RUNPATH of
    ///   a loaded module (`$ORIGIN` expanded), of `ld_library_path` (the
    ///   process's `LD_LIBRARY_PATH`), of `/etc/ld.so.conf.d` or the default
    ///   ones, or in the dynamic linker's cache (`/etc/ld.so.cache`); or
    /// - the name of a program in a directory of `path` (the process's
    ///   `PATH`): the process may exec it.
    ///
    /// A library a program loads by a path of its own (a plugin) is named by
    /// that path.
    pub fn never_loads(
        &self,
        qualifier: &str,
        ld_library_path: Option<&str>,
        path: Option<&str>,
    ) -> Option<String> {
        if qualifier.starts_with('/') {
            return not_loadable(Path::new(qualifier));
        }
        if qualifier.contains('/') {
            return Some(format!(
                "{qualifier} is a relative path (give the absolute one)"
            ));
        }
        let mut dirs = Vec::new();
        for m in &self.modules {
            let deps = m.elf.dependencies();
            let origin = m.path.parent().unwrap_or(Path::new("/"));
            if deps.runpath.is_empty() {
                dirs.extend(search_dirs(&deps.rpath, origin));
            }
            dirs.extend(search_dirs(&deps.runpath, origin));
        }
        for list in [ld_library_path, path].into_iter().flatten() {
            dirs.extend(search_dirs(&[list.to_string()], Path::new("/")));
        }
        dirs.extend(system_library_dirs());
        dirs.dedup();
        let found = |name: &str| names(qualifier, name);
        let in_dirs = dirs.iter().any(|d| {
            std::fs::read_dir(d).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_str().is_some_and(found) && e.path().is_file())
            })
        });
        if in_dirs
            || ld_cache()
                .iter()
                .any(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(found))
        {
            return None;
        }
        Some("no library or program of that name can be found".into())
    }

    /// The loaded module whose name is closest to `qualifier`, as a name
    /// qualifier (`libc` for `libc.so.6`): a typo's likely meaning.
    pub fn closest(&self, qualifier: &str) -> Option<String> {
        let stem = |name: &str| -> String {
            let end = name.find(".so").unwrap_or(name.len());
            name[..end].to_string()
        };
        let stems: Vec<String> = self
            .modules
            .iter()
            .map(|m| stem(m.name()))
            .filter(|s| !s.is_empty())
            .collect();
        closest(qualifier, stems.iter().map(String::as_str)).map(str::to_string)
    }
}

/// The candidate closest to `word` by edit distance, if one is close enough
/// to be a typo of it (at most a third of its characters, and at least 2,
/// differ, and fewer than `word` has): a did-you-mean for module qualifiers and script names. The
/// first of equally close candidates wins.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(2) && *d < word.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Why `path` cannot be loaded into an x86-64 process, if it cannot.
fn not_loadable(path: &Path) -> Option<String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("{shown} does not exist"))
        }
        Err(e) => return Some(format!("{shown} cannot be read ({e})")),
    };
    if meta.is_dir() {
        return Some(format!("{shown} is a directory"));
    }
    if !meta.is_file() {
        return Some(format!("{shown} is not a regular file"));
    }
    let mut head = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read;
        f.read(&mut head)
    });
    match read {
        Err(e) => Some(format!("{shown} cannot be read ({e})")),
        Ok(n) if n < head.len() || head[..4] != *b"\x7fELF" => {
            Some(format!("{shown} is not an ELF file"))
        }
        // EI_CLASS 2 (64-bit), e_machine 62 (EM_X86_64), little-endian.
        Ok(_) if head[4] != 2 || u16::from_le_bytes([head[18], head[19]]) != 62 => {
            Some(format!("{shown} is not a 64-bit x86 ELF file"))
        }
        Ok(_) => None,
    }
}

/// The directories of colon-separated lists `dirs`, `$ORIGIN` being `origin`.
fn search_dirs(dirs: &[String], origin: &Path) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|d| d.split(':'))
        .filter(|d| !d.is_empty())
        .map(|d| {
            let d = d
                .replace("${ORIGIN}", &origin.to_string_lossy())
                .replace("$ORIGIN", &origin.to_string_lossy());
            PathBuf::from(d)
        })
        .collect()
}

/// The libraries in the dynamic linker's cache, `/etc/ld.so.cache`: every
/// absolute path among its strings (both of its formats keep the paths as
/// NUL-terminated strings).
fn ld_cache() -> Vec<PathBuf> {
    let bytes = std::fs::read("/etc/ld.so.cache").unwrap_or_default();
    bytes
        .split(|&b| b == 0)
        .filter(|s| s.first() == Some(&b'/'))
        .filter_map(|s| std::str::from_utf8(s).ok())
        .map(PathBuf::from)
        .collect()
}

/// The Levenshtein distance between `a` and `b`, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The libraries `path` needs (DT_NEEDED of its `deps`), found on disk; see
/// [`ModuleMap::from_program`] for the search order.
fn needed(path: &Path, deps: &Dependencies) -> Vec<PathBuf> {
    let origin = path.parent().unwrap_or(Path::new("/"));
    let expand = |dirs: &[String]| search_dirs(dirs, origin);
    let mut dirs = Vec::new();
    if deps.runpath.is_empty() {
        dirs.extend(expand(&deps.rpath));
    }
    if let Ok(env) = std::env::var("LD_LIBRARY_PATH") {
        dirs.extend(expand(&[env]));
    }
    dirs.extend(expand(&deps.runpath));
    dirs.extend(system_library_dirs());
    deps.needed
        .iter()
        .filter_map(|lib| {
            if lib.contains('/') {
                return Some(PathBuf::from(lib));
            }
            dirs.iter().map(|d| d.join(lib)).find(|p| p.is_file())
        })
        .collect()
}

/// The directories of `/etc/ld.so.conf.d/*.conf` (lines that are paths), then
/// the usual defaults.
fn system_library_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/ld.so.conf.d") {
        let mut confs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        confs.sort();
        for conf in confs {
            if conf.extension().is_some_and(|e| e == "conf") {
                let text = std::fs::read_to_string(&conf).unwrap_or_default();
                dirs.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| l.starts_with('/'))
                        .map(PathBuf::from),
                );
            }
        }
    }
    for d in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The executable's path as it appears in the maps: `exe` itself, or the target of
/// the `/proc/PID/exe` link (without the ` (deleted)` the kernel appends to the
/// link of an unlinked file, as it does in the maps).
fn executable_path(exe: &Path, groups: &[(PathBuf, Vec<&Mapping>)]) -> Option<PathBuf> {
    if groups.iter().any(|(p, _)| p == exe) {
        return Some(exe.to_path_buf());
    }
    let target = std::fs::read_link(exe).ok()?;
    let target = match target.to_str().and_then(|t| t.strip_suffix(" (deleted)")) {
        Some(t) => PathBuf::from(t),
        None => target,
    };
    groups.iter().any(|(p, _)| *p == target).then_some(target)
}

/// The load bias of a file mapped as `group`: runtime address minus link address.
///
/// The mapping with the lowest file offset is matched with the PT_LOAD segment whose
/// page-aligned file range contains that offset; that segment was mapped at
/// `page_down(p_vaddr) + bias`, shifted by how far into the segment's first page the
/// mapping starts. Using offsets (not "the first mapping is at link address 0")
/// keeps this right for ET_EXEC (bias 0), for PIE and libraries (bias = base), and
/// for files whose first PT_LOAD does not start at offset 0.
fn load_bias(segments: &[Segment], group: &[&Mapping]) -> Option<u64> {
    let first = group.iter().min_by_key(|m| (m.offset, m.start))?;
    let off = first.offset.get();
    let seg = segments.iter().find(|s| {
        let start = page_down(s.offset.get());
        let end = s.offset.get().saturating_add(s.filesz);
        s.filesz > 0 && start <= off && off < end
    })?;
    let link = page_down(seg.vaddr.get()).wrapping_add(off - page_down(seg.offset.get()));
    Some(first.start.get().wrapping_sub(link))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::FileOffset;
    use crate::symbols::maps;
    use crate::symbols::test_support::{compile, fake_maps, LINES_C};

    #[inline(never)]
    fn rtrace_modules_test_marker(x: u64) -> u64 {
        x.wrapping_add(7)
    }

    fn own_map() -> ModuleMap {
        let maps = maps::read(crate::addr::Pid::this()).expect("own maps");
        ModuleMap::new(&maps, Path::new("/proc/self/exe"), &mut ElfCache::default())
            .expect("own module map")
    }

    #[test]
    fn own_process() {
        let map = own_map();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let first = map.modules().first().expect("modules");
        assert_eq!(first.path, exe, "the executable comes first");
        assert!(map.modules().iter().all(|m| m.path.is_absolute()));
        assert!(map.modules().iter().all(|m| !m.name().starts_with('[')));

        // The bias is right if a function's runtime address names that function.
        let f = std::hint::black_box(rtrace_modules_test_marker as fn(u64) -> u64);
        let here = RuntimeAddr(f as *const () as usize as u64);
        let sym = map.symbolize(here).expect("symbolize our own function");
        assert!(sym.symbol.contains("rtrace_modules_test_marker"), "{sym:?}");
        assert_eq!((sym.module, sym.offset), (exe.as_path(), 0));
        assert_eq!(f(1), 8);

        let getpid = RuntimeAddr(libc::getpid as *const () as usize as u64);
        let sym = map.symbolize(getpid).expect("symbolize getpid");
        assert!(sym.symbol.contains("getpid"), "{sym:?}");
        assert!(sym.module.to_string_lossy().contains("libc"));

        let libc = map.find("libc").expect("libc is loaded");
        assert_eq!(libc.name(), "libc.so.6");
        assert!(libc.contains(getpid));
        let link = libc.elf.function_named("getpid").expect("getpid").addr;
        assert_eq!(libc.to_runtime(link), getpid);
        assert_eq!(libc.to_link(getpid), link);
        assert!(map.find("ld-linux-x86-64").is_some());
        assert!(map.names().contains(&"libc.so.6".to_string()));
    }

    #[test]
    fn exe_given_by_its_real_path() {
        let maps = maps::read(crate::addr::Pid::this()).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let map = ModuleMap::new(&maps, &exe, &mut ElfCache::default()).unwrap();
        assert_eq!(map.modules()[0].path, exe);
    }

    #[test]
    fn bias_of_fabricated_loads() {
        let mut cache = ElfCache::default();
        for (flags, bias) in [(&["-no-pie"][..], 0u64), (&["-pie"][..], 0x5555_5555_4000)] {
            let exe = compile("bias", "x.c", LINES_C, flags);
            let elf = cache.get(&exe).unwrap();
            assert_eq!(elf.is_dyn(), bias != 0);
            let maps = fake_maps(&elf, bias);
            let map = ModuleMap::new(&maps, &exe, &mut cache).unwrap();
            let m = &map.modules()[0];
            assert_eq!(m.bias, bias, "{flags:?}");
            assert_eq!(m.ranges.len(), maps.len());
            let work = elf.function_named("work").unwrap().addr;
            let sym = map.symbolize(m.to_runtime(work).offset(3)).unwrap();
            assert_eq!((sym.symbol, sym.offset), ("work", 3));
        }
    }

    #[test]
    fn bias_when_first_mapping_is_not_offset_zero() {
        // A mapping list that lacks the first segment (e.g. the head was unmapped):
        // the bias must come from the segment that really contains the offset.
        let mut cache = ElfCache::default();
        let exe = compile("bias2", "x.c", LINES_C, &["-pie"]);
        let elf = cache.get(&exe).unwrap();
        let bias = 0x7f00_0000_0000;
        let maps: Vec<Mapping> = fake_maps(&elf, bias)
            .into_iter()
            .filter(|m| m.offset != FileOffset(0))
            .collect();
        let map = ModuleMap::new(&maps, &exe, &mut cache).unwrap();
        assert_eq!(map.modules()[0].bias, bias);
    }

    #[test]
    fn executable_first_and_junk_skipped() {
        let mut cache = ElfCache::default();
        let lib = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
        let libc = cache.get(lib).unwrap();
        let exe = compile("order", "x.c", LINES_C, &["-pie"]);
        let elf = cache.get(&exe).unwrap();
        let mut maps = fake_maps(&libc, 0x7f00_0000_0000);
        maps.extend(fake_maps(&elf, 0x5555_5555_4000));
        let junk = |name: &str, inode: u64| Mapping {
            start: RuntimeAddr(0x1000),
            end: RuntimeAddr(0x2000),
            read: true,
            write: false,
            exec: false,
            offset: FileOffset(0),
            dev: "fd:01".into(),
            inode,
            name: name.into(),
        };
        maps.insert(0, junk("/etc/hostname", 5));
        maps.push(junk("/nonexistent/lib.so", 6));
        maps.push(junk("[vdso]", 0));
        maps.push(junk("", 0));
        let map = ModuleMap::new(&maps, &exe, &mut cache).unwrap();
        let names: Vec<&str> = map.modules().iter().map(Module::name).collect();
        assert_eq!(names, ["a.out", "libc.so.6"]);
        assert!(map.module_at(RuntimeAddr(0x1000)).is_none());
        assert!(map.symbolize(RuntimeAddr(0x1000)).is_none());
    }

    #[test]
    fn corrupt_executable_is_an_error() {
        let dir = crate::symbols::test_support::temp_dir("badexe");
        let exe = dir.join("bad");
        std::fs::write(&exe, b"\x7fELF-but-not-really").unwrap();
        let maps = vec![Mapping {
            start: RuntimeAddr(0x400000),
            end: RuntimeAddr(0x401000),
            read: true,
            write: false,
            exec: true,
            offset: FileOffset(0),
            dev: "fd:01".into(),
            inode: 9,
            name: exe.display().to_string(),
        }];
        let r = ModuleMap::new(&maps, &exe, &mut ElfCache::default());
        assert!(matches!(r, Err(Error::CorruptElf { .. })), "{r:?}");
    }

    #[test]
    fn qualifiers() {
        let elf = Arc::new(ElfFile::open(Path::new("/bin/true")).unwrap());
        let module = |path: &str| Module {
            path: path.into(),
            bias: 0,
            ranges: vec![],
            elf: Arc::clone(&elf),
        };
        let libc6 = module("/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(libc6.name(), "libc.so.6");
        assert!(libc6.matches("libc"));
        assert!(libc6.matches("libc.so"));
        assert!(libc6.matches("libc.so.6"));
        assert!(libc6.matches("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        // Through a symbolic link (`/lib` → `usr/lib` on a merged /usr).
        let linked = "/lib/x86_64-linux-gnu/libc.so.6";
        assert_eq!(
            libc6.matches(linked),
            std::fs::canonicalize(linked).is_ok_and(|c| c == libc6.path)
        );
        assert!(!libc6.matches("/lib64/ld-linux-x86-64.so.2"));
        assert!(!libc6.matches("lib"));
        assert!(!libc6.matches("libc.so.6.1"));
        assert!(!libc6.matches(""));
        assert!(module("/lib/libc-2.31.so").matches("libc"));
        assert!(!module("/lib/libcrypt.so.1").matches("libc"));
        let ld = module("/lib64/ld-linux-x86-64.so.2");
        assert!(ld.matches("ld-linux-x86-64"));
        assert!(ld.matches("ld-linux"));
        // By the rule, `ld` names it too (`ld-` prefix); `l` does not.
        assert!(ld.matches("ld"));
        assert!(!ld.matches("l"));
        assert!(module("/tmp/count").matches("count"));
    }
}
