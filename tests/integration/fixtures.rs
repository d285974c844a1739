//! Test harness: fixture programs built from `target-fixtures/` on demand,
//! bounded runs of them with and without rtrace, and checks on a live
//! process (its code matches its files, its state).
//!
//! What it owns: compiling fixtures (once per test process, rebuilt when the
//! source or the compiler command changed, under a file lock and renamed
//! into place atomically so parallel tests and parallel test processes never
//! see half a binary nor have one replaced under them),
//! spawning processes with a hard timeout, running in-process tracing
//! sessions (`Tracer::launch`, `Tracer::attach`) under one too ([`bounded`]),
//! and normalizing output for golden comparisons. What it must not do:
//! sleep-and-retry for synchronisation. Every wait here is on an event (a
//! line, end of file, exit, a stop or continue reported by `waitid`) with a
//! deadline that fails the test loudly, showing what the process printed so
//! far.
//!
//! Everything assumes the tests run as root (reading another process's
//! memory, attaching).

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How many rounds a race test runs: `quick` by default (CI), `full` when
/// the environment variable `RTRACE_STRESS_ROUNDS` is set (to anything but
/// `0`), as the stress runs behind the numbers in the README's "Safety"
/// section do.
pub fn rounds(full: usize, quick: usize) -> usize {
    match std::env::var("RTRACE_STRESS_ROUNDS") {
        Ok(v) if !v.is_empty() && v != "0" => full,
        _ => quick,
    }
}

/// The hard limit on any one process a test runs. Every fixture finishes in
/// well under a second untraced; spin and stopper give up after 60 s.
pub const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Building fixtures
// ---------------------------------------------------------------------------

/// How a fixture is compiled and linked. Every variant disables CET
/// (`-fcf-protection=none`) except [`Variant::Cet`], so the matrix does not
/// depend on the compiler's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `-O0 -g -fPIE -pie`: the usual distribution default.
    Pie,
    /// `-O0 -g -fno-pie -no-pie`: fixed link-time addresses (ET_EXEC).
    NoPie,
    /// `-O0 -g -static`: no dynamic linker, no shared libraries.
    Static,
    /// `-O2 -g`: optimized code with debug info.
    O2,
    /// `-O0` without `-g`: symbols but no DWARF.
    NoDebug,
    /// `-O0 -rdynamic`, then `strip --strip-all`: no `.symtab`, no DWARF;
    /// the fixture's functions are found only in `.dynsym`.
    Stripped,
    /// `-O0 -g -fcf-protection=full`: functions start with `endbr64`.
    Cet,
    /// `-O0 -g -fPIE -pie`, then the DWARF moved to a separate file as
    /// distributions do: `objcopy --only-keep-debug` into `<name>.debug` next
    /// to the binary, `objcopy --strip-debug`, `objcopy --add-gnu-debuglink`.
    /// `.symtab` stays; `.debug_*` is only in the debug file.
    Debuglink,
    /// `-O0 -g -static-pie`: no dynamic linker, but ET_DYN at a random base
    /// (the program relocates itself).
    StaticPie,
    /// `-O0 -g -fPIE -pie -Wl,-z,now`: every PLT slot is bound before `main`.
    BindNow,
    /// `-O0 -g -fno-plt -fPIE -pie`: calls to library functions go through
    /// the GOT (`call *puts@GOTPCREL(%rip)`), never through a PLT stub.
    NoPlt,
}

impl Variant {
    /// Every variant, in a fixed order.
    pub const ALL: [Variant; 11] = [
        Variant::Pie,
        Variant::NoPie,
        Variant::Static,
        Variant::O2,
        Variant::NoDebug,
        Variant::Stripped,
        Variant::Cet,
        Variant::Debuglink,
        Variant::StaticPie,
        Variant::BindNow,
        Variant::NoPlt,
    ];

    /// The directory the variant's builds go to; also its display name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Variant::Pie => "pie",
            Variant::NoPie => "nopie",
            Variant::Static => "static",
            Variant::O2 => "o2",
            Variant::NoDebug => "nodebug",
            Variant::Stripped => "stripped",
            Variant::Cet => "cet",
            Variant::Debuglink => "debuglink",
            Variant::StaticPie => "static-pie",
            Variant::BindNow => "bind-now",
            Variant::NoPlt => "no-plt",
        }
    }

    /// Code generation flags (used for programs and libraries alike).
    fn compile_flags(self) -> &'static [&'static str] {
        match self {
            Variant::Pie => &["-O0", "-g", "-fcf-protection=none"],
            Variant::NoPie => &["-O0", "-g", "-fcf-protection=none"],
            Variant::Static => &["-O0", "-g", "-fcf-protection=none"],
            Variant::O2 => &["-O2", "-g", "-fcf-protection=none"],
            Variant::NoDebug => &["-O0", "-fcf-protection=none"],
            Variant::Stripped => &["-O0", "-fcf-protection=none"],
            Variant::Cet => &["-O0", "-g", "-fcf-protection=full"],
            Variant::Debuglink | Variant::StaticPie | Variant::BindNow => {
                &["-O0", "-g", "-fcf-protection=none"]
            }
            Variant::NoPlt => &["-O0", "-g", "-fcf-protection=none", "-fno-plt"],
        }
    }

    /// Flags that decide what kind of executable comes out.
    fn program_flags(self) -> &'static [&'static str] {
        match self {
            Variant::Pie | Variant::Debuglink | Variant::NoPlt => &["-fPIE", "-pie"],
            Variant::NoPie => &["-fno-pie", "-no-pie"],
            Variant::Static => &["-static"],
            Variant::StaticPie => &["-fPIE", "-static-pie"],
            Variant::BindNow => &["-fPIE", "-pie", "-Wl,-z,now"],
            Variant::O2 | Variant::NoDebug | Variant::Cet => &[],
            Variant::Stripped => &["-rdynamic"],
        }
    }

    fn stripped(self) -> bool {
        self == Variant::Stripped
    }

    fn split_debug(self) -> bool {
        self == Variant::Debuglink
    }

    /// Whether a shared library can be built this way (a library is always
    /// position-independent and never static).
    pub fn allows_library(self) -> bool {
        match self {
            Variant::NoPie | Variant::Static | Variant::StaticPie => false,
            Variant::Pie
            | Variant::O2
            | Variant::NoDebug
            | Variant::Stripped
            | Variant::Cet
            | Variant::Debuglink
            | Variant::BindNow
            | Variant::NoPlt => true,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The fixture programs in `target-fixtures/` (each `<name>.c`, `<name>.cpp`,
/// `<name>.S` or `<name>.rs`, with the [`extra_sources`] linked in).
pub const PROGRAMS: [&str; 77] = [
    "count",
    "sigtrap",
    "signals",
    "spin",
    "threads",
    "opener",
    "forker",
    "stopper",
    "dlopener",
    "recurse",
    "longjmper",
    "insns",
    "execer",
    "faulter",
    "sigstorm",
    "waves",
    "churn",
    "exiter",
    "blocker",
    "thrower",
    "tailcall",
    "backtracer",
    "deep",
    "retaddr",
    "sleepers",
    "forkin",
    "spawner",
    "threadexec",
    "inlined",
    "typed",
    "injectee",
    "injthreads",
    "leaker",
    "catcher",
    "coroutine",
    "stalejmp",
    "sigqueuer",
    "orphaner",
    "abi",
    "clones",
    "lazyifunc",
    "peeker",
    "stacker",
    "execloop",
    "forkloop",
    "dlhammer",
    "throwloop",
    "dlloop",
    "rewriter",
    "interposer",
    "pluginhost",
    "seccomp",
    "stdfds",
    "scribbler",
    "profiler",
    "trapret",
    "coldsplit",
    "hot",
    "litter",
    "chain",
    "tailsym",
    "forktail",
    "symlayer",
    "buffers",
    "vdsoifunc",
    "ctrlc",
    "naps",
    "shapes",
    "far",
    "gate",
    "upcount",
    "fills",
    "dlfill",
    "sigfix",
    "stackstr",
    "mixtail",
    "exitrace",
];

/// The fixture libraries in `target-fixtures/` (each `<name>.c`, built into
/// `<name>.so`, whose soname is its file name).
pub const LIBRARIES: [&str; 7] = [
    "libplug",
    "libinterpose",
    "libloader",
    "libsecond",
    "libvdso",
    "libfilla",
    "libfillb",
];

/// The fixture libraries a program links against: they come before libc
/// in its search order, as LD_PRELOAD libraries would, and are found
/// through its RUNPATH (the build directory). Built as the program's
/// variant, or as [`Variant::Pie`] when there is no library of it.
fn linked_libraries(name: &str) -> &'static [&'static str] {
    match name {
        "interposer" => &["libinterpose"],
        "vdsoifunc" => &["libvdso"],
        _ => &[],
    }
}

/// More sources of a fixture, in `target-fixtures/`, compiled and linked
/// with its own: hand-written assembly beside a C driver.
fn extra_sources(name: &str) -> &'static [&'static str] {
    match name {
        "shapes" => &["shapes.S"],
        _ => &[],
    }
}

/// Whether `name` can be built as `variant`. dlopen and shared libraries
/// need the dynamic linker, so `dlopener`, `pluginhost` and `interposer`
/// have no static build.
pub fn supports(name: &str, variant: Variant) -> bool {
    let dynamic = matches!(
        name,
        "dlopener" | "pluginhost" | "interposer" | "dlhammer" | "dlloop" | "vdsoifunc" | "dlfill"
    );
    !(dynamic && matches!(variant, Variant::Static | Variant::StaticPie))
}

/// The separate debug file of a [`Variant::Debuglink`] build at `path`:
/// `<file name>.debug` next to it.
pub fn debug_file_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file").to_os_string();
    name.push(".debug");
    path.with_file_name(name)
}

/// The path of fixture program `name` built as `variant`, building it first
/// if needed. Panics with the compiler's message if it does not build.
pub fn fixture(name: &str, variant: Variant) -> PathBuf {
    assert!(
        supports(name, variant),
        "fixture {name} has no {variant} build"
    );
    built(Kind::Program, name, variant)
}

/// The path of fixture shared library `name` (e.g. `"libplug"`, giving
/// `libplug.so`) built as `variant`, building it first if needed.
pub fn library(name: &str, variant: Variant) -> PathBuf {
    assert!(
        variant.allows_library(),
        "a shared library has no {variant} build"
    );
    built(Kind::Library, name, variant)
}

/// The probe spec of `function` in fixture library `name` built as
/// `variant`, the library named by its path: a library that a program loads
/// by a path of its own (dlopen) can only be named so before it is loaded.
pub fn in_library(name: &str, variant: Variant, function: &str) -> String {
    format!("{}:{function}", library(name, variant).display())
}

/// The rtrace binary under test.
pub fn rtrace_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rtrace"))
}

/// Where the fixture sources live.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target-fixtures")
}

/// Where the builds go: `<target>/tmp/fixtures/<variant>/`. Never committed.
pub fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Program,
    Library,
}

type BuildCache = Mutex<HashMap<(Kind, String, Variant), Arc<OnceLock<PathBuf>>>>;

/// Builds once per test process. The map lock is held only to find the
/// entry; the build itself runs under the entry's `OnceLock`, so different
/// fixtures build in parallel and the same one is built by one thread while
/// the others wait for it.
fn built(kind: Kind, name: &str, variant: Variant) -> PathBuf {
    static CACHE: OnceLock<BuildCache> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry((kind, name.to_owned(), variant))
        .or_default()
        .clone();
    cell.get_or_init(|| build(kind, name, variant)).clone()
}

fn build(kind: Kind, name: &str, variant: Variant) -> PathBuf {
    let src_dir = source_dir();
    // C, C++, or hand-written assembly where the exact instructions matter;
    // Rust for Rust's own mangling (a single file, built by rustc).
    let source = ["c", "cpp", "S", "rs"]
        .map(|ext| src_dir.join(format!("{name}.{ext}")))
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("no {name}.c, .cpp, .S or .rs in {}", src_dir.display()));
    let is_rust = source.extension().is_some_and(|e| e == "rs");
    let compiler = if is_rust {
        "rustc"
    } else if source.extension().is_some_and(|e| e == "cpp") {
        "g++"
    } else {
        "gcc"
    };
    let out_dir = build_dir().join(variant.dir_name());
    fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out_dir.display()));
    let out = out_dir.join(match kind {
        Kind::Program => name.to_owned(),
        Kind::Library => format!("{name}.so"),
    });

    let mut args: Vec<String> = Vec::new();
    if is_rust {
        // The variant's optimisation and debug info; Rust programs are PIE.
        let opt = if variant == Variant::O2 { "2" } else { "0" };
        let debug = if matches!(variant, Variant::NoDebug | Variant::Stripped) {
            "0"
        } else {
            "2"
        };
        args.extend(
            [
                "-C",
                &format!("opt-level={opt}"),
                "-C",
                &format!("debuginfo={debug}"),
            ]
            .map(String::from),
        );
        args.extend(["--edition", "2021"].map(String::from));
        if variant == Variant::Static {
            args.extend(["-C", "target-feature=+crt-static"].map(String::from));
        }
        if kind == Kind::Library {
            args.extend(["--crate-type", "cdylib"].map(String::from));
        }
        args.push(source.display().to_string());
    } else {
        args.extend(variant.compile_flags().iter().map(|s| s.to_string()));
        args.extend(["-Wall", "-Wextra", "-Werror", "-pthread"].map(String::from));
        match kind {
            Kind::Program => args.extend(variant.program_flags().iter().map(|s| s.to_string())),
            Kind::Library => {
                args.extend(["-shared", "-fPIC"].map(String::from));
                args.push(format!("-Wl,-soname,{name}.so"));
            }
        }
        args.push(format!("-I{}", src_dir.display()));
        args.push(source.display().to_string());
        for extra in extra_sources(name) {
            args.push(src_dir.join(extra).display().to_string());
        }
        if matches!(name, "dlopener" | "dlhammer" | "dlloop" | "dlfill") {
            args.push("-ldl".into());
        }
        // The plugin loader finds what it loads next to itself.
        if name == "libloader" {
            args.extend(["-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"].map(String::from));
        }
        // The point of stacker: stacks walked by CFI, not frame pointers.
        if name == "stacker" {
            args.push("-fomit-frame-pointer".into());
        }
    }
    let mut linked = Vec::new();
    for lib in linked_libraries(name) {
        let lib_variant = match variant.allows_library() {
            true => variant,
            false => Variant::Pie,
        };
        let path = library(lib, lib_variant);
        let dir = path
            .parent()
            .expect("a build directory")
            .display()
            .to_string();
        args.push(path.display().to_string());
        args.push(format!("-Wl,-rpath,{dir}"));
        linked.push(path);
    }
    // The stamp records how the output was made, so a change of flags here
    // rebuilds even when the source is older than the output.
    let recipe = format!(
        "{compiler} {}{}\n",
        args.join(" "),
        if variant.stripped() {
            " && strip --strip-all"
        } else if variant.split_debug() {
            " && objcopy --only-keep-debug && objcopy --strip-debug && objcopy --add-gnu-debuglink"
        } else {
            ""
        }
    );
    let mut stamp = out.clone().into_os_string();
    stamp.push(".recipe");
    let stamp = PathBuf::from(stamp);
    // Another test process may be building the same file. Without this
    // lock both would build, and the second rename would replace the binary
    // under a fixture the first one had already started (its mapping then
    // shows as "(deleted)"). With it, the second finds the output fresh.
    let mut lock_path = out.clone().into_os_string();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let lock_file = fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("flock {}: {e}", lock_path.display()));
    // A split build is whole only with its debug file.
    let debug_present = !variant.split_debug() || debug_file_of(&out).is_file();
    let header = src_dir.join("fixture.h");
    let extras: Vec<PathBuf> = extra_sources(name)
        .iter()
        .map(|extra| src_dir.join(extra))
        .collect();
    let mut inputs = vec![source.as_path(), header.as_path()];
    inputs.extend(extras.iter().map(PathBuf::as_path));
    inputs.extend(linked.iter().map(PathBuf::as_path));
    if debug_present && is_fresh(&out, &stamp, &recipe, &inputs) {
        return out;
    }

    let tmp = unique_temp(&out);
    let output = Command::new(compiler)
        .args(&args)
        .arg("-o")
        .arg(&tmp)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    if !output.status.success() {
        let _ = fs::remove_file(&tmp);
        panic!(
            "building fixture {name} ({variant}) failed: {recipe}{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if variant.stripped() {
        let output = Command::new("strip")
            .arg("--strip-all")
            .arg(&tmp)
            .output()
            .unwrap_or_else(|e| panic!("cannot run strip: {e}"));
        if !output.status.success() {
            let _ = fs::remove_file(&tmp);
            panic!(
                "strip --strip-all {} failed: {}",
                tmp.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    if variant.split_debug() {
        // The debug file goes into place first: the link records its name and
        // the CRC of its contents, so it must be the final file.
        let debug = debug_file_of(&out);
        let tmp_debug = unique_temp(&debug);
        let keep = [
            "--only-keep-debug".into(),
            tmp.clone().into_os_string(),
            tmp_debug.clone().into_os_string(),
        ];
        let strip = ["--strip-debug".into(), tmp.clone().into_os_string()];
        let mut link_arg = std::ffi::OsString::from("--add-gnu-debuglink=");
        link_arg.push(&debug);
        let link = [link_arg, tmp.clone().into_os_string()];
        for (i, step) in [&keep[..], &strip[..], &link[..]].into_iter().enumerate() {
            let output = Command::new("objcopy")
                .args(step)
                .output()
                .unwrap_or_else(|e| panic!("cannot run objcopy: {e}"));
            if !output.status.success() {
                let _ = fs::remove_file(&tmp);
                let _ = fs::remove_file(&tmp_debug);
                panic!(
                    "objcopy {step:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            if i == 0 {
                fs::rename(&tmp_debug, &debug).expect("rename debug file into place");
            }
        }
    }
    let tmp_stamp = unique_temp(&stamp);
    fs::write(&tmp_stamp, &recipe).expect("write recipe stamp");
    fs::rename(&tmp, &out).expect("rename fixture into place");
    fs::rename(&tmp_stamp, &stamp).expect("rename recipe stamp into place");
    out
}

/// The output is fresh when it exists, was made by the same recipe and is
/// not older than any input.
pub fn is_fresh(out: &Path, stamp: &Path, recipe: &str, inputs: &[&Path]) -> bool {
    let Ok(built) = fs::metadata(out).and_then(|m| m.modified()) else {
        return false;
    };
    if fs::read_to_string(stamp).ok().as_deref() != Some(recipe) {
        return false;
    }
    inputs.iter().all(|input| {
        let modified = fs::metadata(input)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::now());
        modified <= built
    })
}

/// A name next to `path` that no other thread or process uses.
fn unique_temp(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let file = path.file_name().unwrap().to_string_lossy();
    path.with_file_name(format!(".{file}.{}.{n}.tmp", std::process::id()))
}

/// The value of symbol `name` in the ELF file `path` (link-time address),
/// looked up in `.symtab`, then `.dynsym`. Panics if it is not there.
pub fn symbol_value(path: &Path, name: &str) -> u64 {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let elf =
        goblin::elf::Elf::parse(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let in_symtab = elf
        .syms
        .iter()
        .find(|sym| elf.strtab.get_at(sym.st_name) == Some(name));
    let in_dynsym = || {
        elf.dynsyms
            .iter()
            .find(|sym| elf.dynstrtab.get_at(sym.st_name) == Some(name))
    };
    in_symtab
        .or_else(in_dynsym)
        .map(|sym| sym.st_value)
        .unwrap_or_else(|| panic!("no symbol {name} in {}", path.display()))
}

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

/// What a finished process printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

impl Run {
    /// The exit status as a shell reports it (128+N for signal N).
    pub fn code(&self) -> i32 {
        exit_code(self.status)
    }
}

/// The exit status as a shell reports it: the exit code, or 128+N when
/// signal N killed the process.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => panic!("{status:?} is neither an exit nor a signal death"),
    }
}

/// Runs `prog args` without rtrace, to completion (at most [`TIMEOUT`]).
pub fn run_untraced(prog: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    run_command(cmd, TIMEOUT)
}

/// Runs `rtrace <rtrace_args> -- prog args` to completion (at most
/// [`TIMEOUT`]).
pub fn run_rtrace(rtrace_args: &[&str], prog: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(rtrace_args).arg("--").arg(prog).args(args);
    run_command(cmd, TIMEOUT)
}

/// Runs `cmd` with no stdin, its output captured, in a process group of its
/// own. When `timeout` passes first, the whole group (a tracer and its
/// tracees) is killed and the test panics with what it printed so far.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Run {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id() as i32;
    let stdout = Collector::start(child.stdout.take().unwrap());
    let stderr = Collector::start(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });

    let deadline = Instant::now() + timeout;
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => status.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(RecvTimeoutError::Timeout) => {
            // The waiter thread has not reaped it, so the group id is still
            // ours to kill.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = rx.recv();
            panic!(
                "{what} did not finish within {timeout:?}; killed.\n--- stdout so far:\n{}\n--- stderr so far:\n{}",
                stdout.snapshot(),
                stderr.snapshot()
            );
        }
        Err(RecvTimeoutError::Disconnected) => panic!("waiter thread for {what} died"),
    };
    // A process the child left behind may still hold the pipes open; do not
    // wait for it past the deadline.
    let out = stdout.finish(deadline);
    let err = stderr.finish(deadline);
    match (out, err) {
        (Some(stdout), Some(stderr)) => Run {
            stdout,
            stderr,
            status,
        },
        _ => panic!("{what} exited ({status:?}) but something kept its output open"),
    }
}

/// What [`bounded`] hands its body: the way to start an in-process tracer
/// so that the tracee is known, and killed if the body does not finish in
/// time.
pub struct Session {
    tracees: Arc<Mutex<Vec<Pid>>>,
}

impl Session {
    /// `Tracer::launch`, the launched program noted as this session's.
    pub fn launch(&self, cmd: &Command, opts: rtrace::Options) -> rtrace::Result<rtrace::Tracer> {
        let tracer = rtrace::Tracer::launch(cmd, opts)?;
        self.note(tracer.pid());
        Ok(tracer)
    }

    /// `Tracer::attach`, the process noted as this session's.
    pub fn attach(&self, pid: Pid, opts: rtrace::Options) -> rtrace::Result<rtrace::Tracer> {
        self.note(pid);
        rtrace::Tracer::attach(pid, opts)
    }

    fn note(&self, pid: Pid) {
        self.tracees
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(pid);
    }
}

/// Runs `body`, an in-process tracing session (the tracer started through
/// the [`Session`] it is given), within [`TIMEOUT`]: see [`bounded_for`].
pub fn bounded<T: Send + 'static>(body: impl FnOnce(&Session) -> T + Send + 'static) -> T {
    bounded_for(TIMEOUT, body)
}

/// Runs `body` on a thread of its own (the tracer's: ptrace requests come
/// from the thread that attached) and waits for it at most `limit`. A panic
/// in the body is the test's panic. When the limit passes first, every
/// process the session launched or attached to is killed with SIGKILL, so
/// none is left behind, and the test fails saying so; the tracer, seeing
/// its tracee die, then ends on its own.
pub fn bounded_for<T: Send + 'static>(
    limit: Duration,
    body: impl FnOnce(&Session) -> T + Send + 'static,
) -> T {
    let tracees = Arc::new(Mutex::new(Vec::new()));
    let session = Session {
        tracees: tracees.clone(),
    };
    let name = thread::current()
        .name()
        .unwrap_or("an in-process tracing test")
        .to_owned();
    let (tx, rx) = mpsc::channel();
    let tracer = thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let _ = tx.send(body(&session));
        })
        .unwrap_or_else(|e| panic!("{name}: cannot start the tracer thread: {e}"));
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = tracer.join();
            value
        }
        // The body panicked before it sent anything: its panic is the test's.
        Err(RecvTimeoutError::Disconnected) => match tracer.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body sends its value before it ends"),
        },
        Err(RecvTimeoutError::Timeout) => {
            let pids = tracees
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            for &pid in &pids {
                let _ = kill(pid, Signal::SIGKILL);
            }
            panic!(
                "{name}: in-process tracing did not finish within {limit:?}; \
                 killed its tracees {pids:?}"
            );
        }
    }
}

/// Reads a pipe to its end on a thread of its own, keeping what it read
/// visible for error messages.
struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Receiver<()>,
}

impl Collector {
    fn start(mut pipe: impl Read + Send + 'static) -> Collector {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = buf.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
        Collector { buf, done }
    }

    fn snapshot(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Everything read, once the pipe reached end of file before `deadline`.
    fn finish(self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(left) {
            Ok(()) => Some(self.snapshot()),
            Err(_) => None,
        }
    }
}

/// Why a line did not come.
#[derive(Debug, PartialEq, Eq)]
pub enum NoLine {
    /// The stream ended (the process closed it, usually by exiting).
    Eof,
    /// The deadline passed first.
    Timeout,
}

/// One output stream of a [`Spawned`] process, read line by line.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
    eof: bool,
}

impl Lines {
    fn start(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        let text = String::from_utf8_lossy(&line).into_owned();
                        if tx.send(text).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            eof: false,
        }
    }

    fn next(&mut self, deadline: Instant) -> Result<String, NoLine> {
        if self.eof {
            return Err(NoLine::Eof);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Ok(line)
            }
            Err(RecvTimeoutError::Timeout) => Err(NoLine::Timeout),
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                Err(NoLine::Eof)
            }
        }
    }

    /// Reads up to end of file; false if the deadline came first.
    fn drain(&mut self, deadline: Instant) -> bool {
        loop {
            match self.next(deadline) {
                Ok(_) => {}
                Err(NoLine::Eof) => return true,
                Err(NoLine::Timeout) => return false,
            }
        }
    }

    fn text(&self) -> String {
        self.seen.iter().map(|line| format!("{line}\n")).collect()
    }
}

/// A process running in the background while the test does something else:
/// a fixture to attach to, or an `rtrace -p` session. Its stdout and stderr
/// are read line by line. Dropping it kills the process if it still runs.
pub struct Spawned {
    child: Child,
    pid: i32,
    what: String,
    stdout: Lines,
    stderr: Lines,
    /// Its stdin, when started with [`Spawned::with_stdin`].
    stdin: Option<ChildStdin>,
}

impl Spawned {
    /// Starts fixture `prog args` and waits (at most [`TIMEOUT`]) until it
    /// prints the line `ready`.
    pub fn start(prog: &Path, args: &[&str]) -> Spawned {
        let mut cmd = Command::new(prog);
        cmd.args(args);
        let mut spawned = Spawned::command(cmd);
        spawned.wait_stdout_line(|line| line == "ready");
        spawned
    }

    /// Starts `rtrace <rtrace_args> -p pid` without waiting for anything.
    /// Wait for `rtrace: attached …` with [`Spawned::wait_stderr_line`].
    pub fn rtrace_attach(rtrace_args: &[&str], pid: i32) -> Spawned {
        let mut cmd = Command::new(rtrace_bin());
        if crate::events::fast_mode() {
            crate::events::note_attached();
            cmd.arg("--fast");
        }
        cmd.args(rtrace_args).arg("-p").arg(pid.to_string());
        Spawned::command(cmd)
    }

    /// Starts `cmd` with no stdin and both outputs read line by line.
    pub fn command(cmd: Command) -> Spawned {
        Spawned::spawn(cmd, false)
    }

    /// Starts `cmd` with a pipe for stdin (see [`Spawned::send`]) and both
    /// outputs read line by line: for a program that waits for a go-ahead
    /// (a process rtrace launches reads rtrace's stdin).
    pub fn with_stdin(cmd: Command) -> Spawned {
        Spawned::spawn(cmd, true)
    }

    /// Writes `text` to the process's stdin (started with
    /// [`Spawned::with_stdin`]).
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("started with_stdin");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to the stdin of {}: {e}", self.what));
    }

    /// Closes the process's stdin (started with [`Spawned::with_stdin`]):
    /// it reads end of file.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    fn spawn(mut cmd: Command, stdin: bool) -> Spawned {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = Lines::start(child.stdout.take().unwrap());
        let stderr = Lines::start(child.stderr.take().unwrap());
        Spawned {
            pid: child.id() as i32,
            stdin: child.stdin.take(),
            child,
            what,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The stdout lines read so far, each with its newline.
    pub fn stdout_so_far(&self) -> String {
        self.stdout.text()
    }

    /// The stderr lines read so far, each with its newline.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    /// The next stdout line, waiting at most `timeout`.
    pub fn next_stdout_line(&mut self, timeout: Duration) -> Result<String, NoLine> {
        self.stdout.next(Instant::now() + timeout)
    }

    /// The next stderr line, waiting at most `timeout`.
    pub fn next_stderr_line(&mut self, timeout: Duration) -> Result<String, NoLine> {
        self.stderr.next(Instant::now() + timeout)
    }

    /// Reads stdout until a line satisfies `want` and returns it; panics
    /// after [`TIMEOUT`] or at end of file.
    pub fn wait_stdout_line(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.stdout.next(deadline) {
                Ok(line) if want(&line) => return line,
                Ok(_) => {}
                Err(why) => self.fail(&format!("expected stdout line not seen ({why:?})")),
            }
        }
    }

    /// Reads stderr until a line satisfies `want` and returns it; panics
    /// after [`TIMEOUT`] or at end of file.
    pub fn wait_stderr_line(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.stderr.next(deadline) {
                Ok(line) if want(&line) => return line,
                Ok(_) => {}
                Err(why) => self.fail(&format!("expected stderr line not seen ({why:?})")),
            }
        }
    }

    /// Waits (at most [`TIMEOUT`]) until the process, this test's child, has
    /// stopped by a signal, as a shell's `wait` learns it: `waitid(WSTOPPED)`,
    /// which the kernel answers once the whole group has stopped (also when
    /// another process traces it: `do_notify_parent_cldstop` tells the real
    /// parent too). Consumes that report; returns the stopping signal.
    pub fn wait_stopped(&mut self) -> Signal {
        match self.waitid(WaitPidFlag::WSTOPPED) {
            WaitStatus::Stopped(_, signal) => signal,
            other => self.fail(&format!("expected a stop, waitid said {other:?}")),
        }
    }

    /// Whether a SIGCONT has ended a stop of the process since the last
    /// report of one was taken (`waitid(WCONTINUED | WNOHANG)`, without
    /// waiting). False while a stop is still in force.
    pub fn continued(&mut self) -> bool {
        let id = Id::Pid(Pid::from_raw(self.pid));
        match waitid(id, WaitPidFlag::WCONTINUED | WaitPidFlag::WNOHANG) {
            Ok(WaitStatus::Continued(_)) => true,
            Ok(WaitStatus::StillAlive) => false,
            other => self.fail(&format!("waitid(WCONTINUED | WNOHANG) said {other:?}")),
        }
    }

    /// Waits (at most [`TIMEOUT`]) until a SIGCONT has ended a stop of the
    /// process (`waitid(WCONTINUED)`), and takes that report.
    pub fn wait_continued(&mut self) {
        match self.waitid(WaitPidFlag::WCONTINUED) {
            WaitStatus::Continued(_) => {}
            other => self.fail(&format!("expected a continue, waitid said {other:?}")),
        }
    }

    /// Waits (at most [`TIMEOUT`]) until the process has ended, and returns
    /// how; it stays to be reaped by [`Spawned::wait`] (`WNOWAIT`), which
    /// also collects its output (still open in a child it left behind, say).
    pub fn wait_ended(&mut self) -> WaitStatus {
        self.waitid(WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
    }

    /// `waitid(P_PID, pid, flags)` on a thread of its own, waited for at
    /// most [`TIMEOUT`]. Should the time pass, the thread stays blocked until
    /// the process is reaped (dropping `self` kills and reaps it), then
    /// ends with ECHILD.
    fn waitid(&mut self, flags: WaitPidFlag) -> WaitStatus {
        let id = Id::Pid(Pid::from_raw(self.pid));
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(waitid(id, flags));
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => self.fail(&format!("waitid({flags:?}): {e}")),
            Err(_) => self.fail(&format!("no waitid({flags:?}) report within {TIMEOUT:?}")),
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal)
            .unwrap_or_else(|e| panic!("kill({}, {signal}): {e}", self.pid));
    }

    /// Sends SIGTERM and waits for the process to end (see [`Spawned::wait`]).
    pub fn terminate(mut self) -> Run {
        self.signal(Signal::SIGTERM);
        self.finish()
    }

    /// Waits (at most [`TIMEOUT`]) for the process to close its output and
    /// exit; returns everything it printed, including lines already read.
    pub fn wait(mut self) -> Run {
        self.finish()
    }

    fn finish(&mut self) -> Run {
        let deadline = Instant::now() + TIMEOUT;
        if !self.stdout.drain(deadline) || !self.stderr.drain(deadline) {
            self.fail("did not close its output in time");
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.what));
        Run {
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
            status,
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let status = self.child.try_wait().ok().flatten();
        panic!(
            "{} (pid {}): {why}; exit status {status:?}\n--- stdout so far:\n{}--- stderr so far:\n{}",
            self.what,
            self.pid,
            self.stdout.text(),
            self.stderr.text()
        );
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Looking at a live process
// ---------------------------------------------------------------------------

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// e.g. `r-xp`
    pub perms: String,
    /// File offset of `start`.
    pub offset: u64,
    /// The file or pseudo-name (`[stack]`), empty for anonymous memory.
    pub path: String,
}

/// The memory map of `pid`.
pub fn maps(pid: i32) -> Result<Vec<Mapping>, String> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("read /proc/{pid}/maps: {e}"))?;
    text.lines().map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Result<Mapping, String> {
    let bad = || format!("unexpected maps line {line:?}");
    let mut fields = line.splitn(6, ' ');
    let mut next = || fields.next().ok_or_else(bad);
    let (start, end) = next()?.split_once('-').ok_or_else(bad)?;
    let perms = next()?.to_owned();
    let offset = next()?;
    let _dev = next()?;
    let _inode = next()?;
    let path = fields.next().unwrap_or("").trim_start().to_owned();
    let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|_| bad());
    Ok(Mapping {
        start: hex(start)?,
        end: hex(end)?,
        perms,
        offset: hex(offset)?,
        path,
    })
}

/// Reads `len` bytes at `addr` from the memory of `pid`.
pub fn read_memory(pid: i32, addr: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mem = fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = vec![0; len];
    mem.read_exact_at(&mut buf, addr)?;
    Ok(buf)
}

/// Writes `bytes` at `addr` into the memory of `pid` through
/// `/proc/PID/mem`. The kernel forces the write into read-only text (a
/// private copy of the page, the file is untouched) unless it was built with
/// `CONFIG_PROC_MEM_FORCE_PTRACE`/`NO_FORCE` or booted with
/// `proc_mem.force_override`; under `FORCE_PTRACE` the caller must be
/// ptrace-attached to `pid` first.
pub fn write_memory(pid: i32, addr: u64, bytes: &[u8]) -> std::io::Result<()> {
    let mem = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/mem"))?;
    mem.write_all_at(bytes, addr)
}

/// Checks that the code `pid` runs is the code in its files: for every
/// private read+execute mapping of a file that exists, the mapped bytes
/// (clipped to the file's length) equal the file's bytes at the mapping's
/// offset. After a detach this proves every breakpoint was removed.
/// The error names the file and the first differing address.
pub fn code_matches_files(pid: i32) -> Result<(), String> {
    let mut checked = 0;
    for map in maps(pid)? {
        if map.perms != "r-xp" || !map.path.starts_with('/') {
            continue;
        }
        // A file replaced since it was mapped shows as "(deleted)"; its
        // bytes are no longer on disk to compare with.
        let Ok(file) = fs::File::open(&map.path) else {
            continue;
        };
        let file_len = file
            .metadata()
            .map_err(|e| format!("stat {}: {e}", map.path))?
            .len();
        if map.offset >= file_len {
            continue;
        }
        let len = (map.end - map.start).min(file_len - map.offset) as usize;
        let mut on_disk = vec![0; len];
        file.read_exact_at(&mut on_disk, map.offset)
            .map_err(|e| format!("read {} at {:#x}: {e}", map.path, map.offset))?;
        let in_memory = read_memory(pid, map.start, len).map_err(|e| {
            format!(
                "read /proc/{pid}/mem at {:#x} ({}): {e}",
                map.start, map.path
            )
        })?;
        if let Some(i) = (0..len).find(|&i| on_disk[i] != in_memory[i]) {
            return Err(format!(
                "{}: code at {:#x} (file offset {:#x}) is {:#04x} in memory but {:#04x} in the file",
                map.path,
                map.start + i as u64,
                map.offset + i as u64,
                in_memory[i],
                on_disk[i]
            ));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(format!(
            "pid {pid} has no file-backed code mapping to check"
        ));
    }
    Ok(())
}

/// [`code_matches_files`] for a process that may be replacing its image
/// meanwhile (execve): the check counts only when the mappings were the same
/// before and after it, and held the program's code (in the middle of an
/// exec, they may hold nothing yet); it is made again otherwise.
pub fn code_matches_files_settled(pid: i32) -> Result<(), String> {
    for _ in 0..10_000 {
        let before = maps(pid)?;
        let result = code_matches_files(pid);
        let has_code = before
            .iter()
            .any(|m| m.perms == "r-xp" && m.path.starts_with('/'));
        // A mapping unmapped and mapped again at the same place between
        // the two reads of the maps (a library loaded in a loop) reads as an
        // error of memory: looked at again.
        let unreadable = matches!(&result, Err(e) if e.contains("read /proc/"));
        if has_code && !unreadable && maps(pid)? == before {
            return result;
        }
    }
    Err(format!("pid {pid} never kept its mappings for one check"))
}

/// The state letter of `pid` from `/proc/PID/stat` (`R`, `S`, `T` stopped,
/// `t` tracing stop, `Z`, …), or None once the process is gone.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain anything; the state
    // follows the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// The thread ids of `pid`.
pub fn threads_of(pid: i32) -> Vec<i32> {
    let mut tids: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

// ---------------------------------------------------------------------------
// Golden comparisons
// ---------------------------------------------------------------------------

/// How the rtrace under test sees int3 probes' returns (`--returns`): the
/// suite runs once as is (`stub`, the default) and once with
/// `RTRACE_RETURNS=stop` in its environment, which rtrace reads.
pub fn returns_mode() -> String {
    std::env::var("RTRACE_RETURNS").unwrap_or_else(|_| "stub".into())
}

/// True when the rtrace under test makes every probe an int3 breakpoint
/// unless told `--fast`: the suite runs once as is (fast probes, the
/// default) and once with `RTRACE_INT3=1` in its environment, which rtrace
/// reads.
pub fn int3_by_default() -> bool {
    std::env::var("RTRACE_INT3").is_ok_and(|v| v == "1")
}

/// Replaces what changes from run to run so outputs can be compared with a
/// golden text:
/// - the attach line's `, returns: stub` (or `stop`) → `, returns: R`
/// - `pid 1234` (as in `[pid 1234]`, `attached to pid 1234`) → `pid N`
/// - durations `<0.000011>` → `<T>`
/// - hex numbers of 6 or more digits (`0x7f12…`, `0x401136`) → `0xADDR`;
///   shorter ones (`0x10`, offsets like `work+0x8`) are kept
/// - in JSON, `"pid"`, `"tid"`, `"child"` values → `N`, and every `"…_ns"`
///   value → `T`
pub fn normalize(text: &str) -> String {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    let digits_at = |from: usize, pred: fn(&u8) -> bool| -> usize {
        b[from..].iter().take_while(|c| pred(c)).count()
    };
    let word_start = |i: usize| i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    while i < b.len() {
        let rest = &b[i..];
        // How int3 probes' returns are seen (the attach line's last words):
        // the suite runs once as is and once with RTRACE_RETURNS=stop.
        if rest.starts_with(b", returns: stub") || rest.starts_with(b", returns: stop") {
            out.extend_from_slice(b", returns: R");
            i += b", returns: stub".len();
            continue;
        }
        // pid 1234
        if rest.starts_with(b"pid ") && word_start(i) {
            let n = digits_at(i + 4, u8::is_ascii_digit);
            if n > 0 {
                out.extend_from_slice(b"pid N");
                i += 4 + n;
                continue;
            }
        }
        // <0.000011>
        if rest[0] == b'<' {
            let int = digits_at(i + 1, u8::is_ascii_digit);
            if int > 0 && b.get(i + 1 + int) == Some(&b'.') {
                let frac = digits_at(i + 2 + int, u8::is_ascii_digit);
                if frac > 0 && b.get(i + 2 + int + frac) == Some(&b'>') {
                    out.extend_from_slice(b"<T>");
                    i += 3 + int + frac;
                    continue;
                }
            }
        }
        // 0x7ffd1234abcd
        if rest.starts_with(b"0x") && word_start(i) {
            let n = digits_at(i + 2, u8::is_ascii_hexdigit);
            let ends = b
                .get(i + 2 + n)
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
            if n >= 6 && ends {
                out.extend_from_slice(b"0xADDR");
                i += 2 + n;
                continue;
            }
        }
        // "pid": 1234, "duration_ns": 5678
        if rest[0] == b'"' {
            if let Some(len) = rest[1..].iter().position(|&c| c == b'"') {
                let key = &rest[1..1 + len];
                let after_key = i + 2 + len;
                let colon = b.get(after_key) == Some(&b':');
                let spaces = if colon {
                    digits_at(after_key + 1, |c| *c == b' ')
                } else {
                    0
                };
                let value_at = after_key + 1 + spaces;
                let n = if colon {
                    digits_at(value_at, u8::is_ascii_digit)
                } else {
                    0
                };
                let replacement: Option<&[u8]> = match key {
                    b"pid" | b"tid" | b"child" => Some(b"N"),
                    _ if key.ends_with(b"_ns") => Some(b"T"),
                    _ => None,
                };
                if let (true, Some(replacement)) = (n > 0, replacement) {
                    out.extend_from_slice(&b[i..value_at]);
                    out.extend_from_slice(replacement);
                    i = value_at + n;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII runs were replaced, so the text is still UTF-8.
    String::from_utf8(out).expect("normalize keeps UTF-8")
}
