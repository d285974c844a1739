//! Startup cost of probing one function of a large binary with full DWARF:
//! the `rtrace` command against gdb.
//!
//! ```text
//! cargo run --release --example resolve_startup                       # builds its 50+ MB program
//! cargo run --release --example resolve_startup -- --small            # a small one, in seconds
//! cargo run --release --example resolve_startup -- FILE FUNCTION [RUNS]
//! ```
//!
//! With no arguments it writes a Rust program of its own (700 functions, each
//! with its own struct, closure and `HashMap` instantiation, so that the
//! compiler emits a great deal of code and DWARF for them) into
//! `target/bench-startup/`, and builds it with `rustc` at `-C debuginfo=2`
//! (full DWARF, no optimisation): a binary of about 65 MB, nothing
//! downloaded. The function probed is `bench_startup::main`, a Rust path
//! (every symbol of the binary is demangled to find it; gdb reads
//! `bench_startup::f350` as the namespace of the struct declared in it).
//! `--small` does the same with 20 functions and one run (what the test
//! runs). Any other binary works too, with a function of it.
//!
//! Each measurement is the wall time of a whole process, start to exit, run
//! RUNS times (default 5), interleaved; the median is reported:
//!
//! - `rtrace -l FUNCTION -- FILE`: reads FILE (and the libraries it needs)
//!   from disk, resolves FUNCTION and prints its probe point with its source
//!   line (so the whole DWARF line table is parsed); nothing runs;
//! - `rtrace -s FUNCTION -- FILE`: launches FILE, resolves and arms
//!   FUNCTION at the exec stop, and traces it to its exit (the generated
//!   program's `main`, hit once, calls nothing when given no argument);
//! - `gdb -nx -batch -ex 'info address FUNCTION' FILE`: reads the symbols
//!   and indexes the DWARF before answering.
//!
//! It prints each median and the ratios gdb / rtrace. rtrace is the
//! `rtrace` next to this example's directory (`target/release/rtrace`), built
//! first when it is missing; gdb must be installed (`apt-get install gdb`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// The crate name of the generated program, and so the first component of
/// its functions' paths.
const CRATE: &str = "bench_startup";

/// The source of a program of `n` functions, `f0` to `f{n-1}`, each with its
/// own struct and closure types and its own `HashMap` instantiation: every
/// one brings its monomorphised code and its DWARF types. `main` calls them
/// only when given more than five arguments, so a run does nothing.
fn program(n: usize) -> String {
    let mut src = String::from("use std::collections::HashMap;\n");
    for i in 0..n {
        let _ = write!(
            src,
            r#"
#[inline(never)]
pub fn f{i}(x: u64) -> u64 {{
    struct S{i} {{ a: u64, b: String, c: Vec<u64> }}
    let v: Vec<u64> = (0..x % 7).map(|k| k * {i} + 1).collect();
    let mut m: HashMap<u64, S{i}> = HashMap::new();
    m.insert(x, S{i} {{ a: x, b: format!("{{}}", x + {i}), c: v.clone() }});
    m.values().map(|s| s.a + s.b.len() as u64 + s.c.iter().sum::<u64>()).sum::<u64>() + v.len() as u64
}}
"#
        );
    }
    src.push_str("\nfn main() {\n    let mut t = 0u64;\n    if std::env::args().count() > 5 {\n");
    for i in 0..n {
        let _ = writeln!(src, "        t = t.wrapping_add(f{i}(t));");
    }
    src.push_str("    }\n    println!(\"{t}\");\n}\n");
    src
}

/// The target directory this example runs from (`target/`).
fn target_dir() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    // target/<profile>/examples/resolve_startup → target/
    me.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| "cannot locate the target directory".into())
}

/// Writes and builds the program of `n` functions (unless the build is
/// there already, from the same source), returning its path.
fn build_program(n: usize) -> Result<PathBuf, String> {
    let dir = target_dir()?.join("bench-startup");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join(format!("{CRATE}_{n}.rs"));
    let bin = dir.join(format!("{CRATE}_{n}"));
    let text = program(n);
    let fresh = std::fs::read_to_string(&src).is_ok_and(|old| old == text) && bin.is_file();
    if fresh {
        return Ok(bin);
    }
    std::fs::write(&src, &text).map_err(|e| format!("{}: {e}", src.display()))?;
    println!("building {} ({n} functions, full DWARF) …", bin.display());
    let status = Command::new("rustc")
        .args(["--edition", "2021", "--crate-name", CRATE])
        .args([
            "-C",
            "debuginfo=2",
            "-C",
            "opt-level=0",
            "-C",
            "codegen-units=16",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .status()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if !status.success() {
        return Err(format!("rustc failed: {status}"));
    }
    Ok(bin)
}

/// The `rtrace` binary of this build, built first when it is missing.
fn rtrace_binary() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    // target/<profile>/examples/resolve_startup → target/<profile>/rtrace
    let profile_dir = me
        .ancestors()
        .nth(2)
        .ok_or("cannot locate the profile directory")?;
    let rtrace = profile_dir.join("rtrace");
    if rtrace.is_file() {
        return Ok(rtrace);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--bin", "rtrace"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() || !rtrace.is_file() {
        return Err(format!("cargo build --bin rtrace failed: {status}"));
    }
    Ok(rtrace)
}

/// Whether a command's stdout and stderr show it did its job.
type Check = Box<dyn Fn(&str, &str) -> bool>;

/// One measured command: how to make it, and how to tell it did its job.
struct Measured {
    name: String,
    make: Box<dyn Fn() -> Command>,
    check: Check,
    times: Vec<Duration>,
}

impl Measured {
    fn run(&mut self) -> Result<(), String> {
        let mut cmd = (self.make)();
        let start = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.name))?;
        let took = start.elapsed();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if !out.status.success() || !(self.check)(&stdout, &stderr) {
            return Err(format!(
                "{} failed ({}): {}{}",
                self.name,
                out.status,
                stdout.trim_end(),
                stderr.trim_end()
            ));
        }
        self.times.push(took);
        Ok(())
    }

    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort_unstable();
        t[t.len() / 2]
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resolve_startup: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (file, function, runs) = match args.as_slice() {
        [] => (build_program(700)?, format!("{CRATE}::main"), 5),
        ["--small"] => (build_program(20)?, format!("{CRATE}::main"), 1),
        [file, function] => (PathBuf::from(file), function.to_string(), 5),
        [file, function, runs] => match runs.parse::<usize>() {
            Ok(n) if n > 0 => (PathBuf::from(file), function.to_string(), n),
            _ => return Err("RUNS must be a positive number".into()),
        },
        _ => return Err("usage: resolve_startup [--small | FILE FUNCTION [RUNS]]".into()),
    };
    let rtrace = rtrace_binary()?;
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} ({:.1} MiB), function {function}, median of {runs} runs",
        file.display(),
        size as f64 / (1 << 20) as f64
    );
    let list = {
        let (rtrace, file, spec) = (rtrace.clone(), file.clone(), function.clone());
        let name = function.clone();
        Measured {
            name: format!("rtrace -l {function}"),
            make: Box::new(move || {
                let mut cmd = Command::new(&rtrace);
                cmd.args(["-l", &spec, "--"]).arg(&file);
                cmd
            }),
            // One probe point, with its source line (the line table parsed).
            check: Box::new(move |out, _| {
                out.lines().count() == 1 && out.contains(&name) && out.contains(".rs:")
            }),
            times: Vec::new(),
        }
    };
    let trace = {
        let (rtrace, file, function) = (rtrace.clone(), file.clone(), function.clone());
        Measured {
            name: format!("rtrace -s {function}"),
            make: Box::new(move || {
                let mut cmd = Command::new(&rtrace);
                cmd.args(["-s", &function, "--color", "never", "--"])
                    .arg(&file);
                cmd
            }),
            check: Box::new(|_, err| {
                err.contains("1 probe armed") && err.contains("+++ exited with 0 +++")
            }),
            times: Vec::new(),
        }
    };
    let gdb = {
        let (file, function) = (file.clone(), function.clone());
        Measured {
            name: format!("gdb info address {function}"),
            make: Box::new(move || {
                let mut cmd = Command::new("gdb");
                cmd.args(["-nx", "-batch", "-ex"])
                    .arg(format!("info address {function}"))
                    .arg(&file);
                cmd
            }),
            check: Box::new(|out, _| out.contains("is a function at address")),
            times: Vec::new(),
        }
    };
    let mut all = [list, trace, gdb];
    // Interleaved, so that a machine busy with something else slows them
    // alike.
    for _ in 0..runs {
        for m in all.iter_mut() {
            m.run()?;
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for m in &all {
        println!("{:<48} {:>10.1} ms", m.name, ms(m.median()));
    }
    let [list, trace, gdb] = &all;
    println!(
        "gdb / rtrace -l: {:.1}x; gdb / rtrace -s: {:.1}x",
        gdb.median().as_secs_f64() / list.median().as_secs_f64(),
        gdb.median().as_secs_f64() / trace.median().as_secs_f64()
    );
    Ok(())
}
