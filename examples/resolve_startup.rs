//! Startup cost of resolving one function in a large binary: rtrace's symbol
//! layer against gdb.
//!
//! ```text
//! cargo run --release --example resolve_startup -- FILE FUNCTION [RUNS]
//! ```
//!
//! With no arguments it builds its own large binary with full DWARF first (a
//! debug build of rtrace, about 30 MB, with cargo's dev profile into
//! `target/bench-debug`) and resolves `main` in it. Any other binary works too;
//! one is at hand after `cargo build`:
//!
//! ```text
//! cargo build
//! cargo run --release --example resolve_startup -- target/debug/rtrace main 10
//! ```
//!
//! Each measurement is the wall time of a whole process, start to exit, run
//! RUNS times (default 5); the median is reported:
//!
//! - `rtrace symbol`: this example run again as `--once FILE FUNCTION`, which
//!   opens FILE with `rtrace::symbols::ElfFile` (headers and both symbol
//!   tables) and finds FUNCTION, as `rtrace -s FUNCTION` does before arming;
//! - `rtrace symbol+lines`: the same, then the whole DWARF line table parsed (what
//!   the first `FILE:LINE` probe costs);
//! - `gdb`: `gdb -nx -batch -ex 'info address FUNCTION' FILE`, which reads
//!   the symbols and indexes the DWARF before answering.
//!
//! It prints each median and the ratios gdb / rtrace. gdb must be installed
//! (`apt-get install gdb`).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use rtrace::symbols::ElfFile;

/// `--once FILE FUNCTION [lines]`: resolve and exit (0 found, 1 not found).
fn once(file: &str, function: &str, lines: bool) -> ExitCode {
    let elf = match ElfFile::open(Path::new(file)) {
        Ok(elf) => elf,
        Err(e) => {
            eprintln!("resolve_startup: {e}");
            return ExitCode::from(1);
        }
    };
    let Some(sym) = elf.function_named(function) else {
        eprintln!("resolve_startup: no function {function} in {file}");
        return ExitCode::from(1);
    };
    if lines {
        // A file no line program has: every line program is parsed to learn that.
        let _ = elf.line_addresses("resolve-startup-no-such-file.c", 1);
    }
    println!("{function} at {}", sym.addr);
    ExitCode::SUCCESS
}

/// The median wall time of `runs` runs of `make()`, which must succeed.
fn median(runs: usize, what: &str, make: impl Fn() -> Command) -> Result<Duration, String> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut cmd = make();
        let start = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {what}: {e}"))?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(format!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
        }
        times.push(took);
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// With no FILE: a debug build (full DWARF) of rtrace itself, a Rust program
/// of about 30 MB, built with cargo's dev profile into its own target
/// directory next to this example's.
fn build_large_binary() -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/examples/resolve_startup → target/
    let target = me
        .ancestors()
        .nth(3)
        .ok_or("cannot locate the target directory")?
        .join("bench-debug");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building a debug rtrace into {} …", target.display());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--bin", "rtrace", "--target-dir"])
        .arg(&target)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed: {status}"));
    }
    Ok(target.join("debug/rtrace").display().to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--once", file, function] => return once(file, function, false),
        ["--once", file, function, "lines"] => return once(file, function, true),
        _ => {}
    }
    let built;
    let (file, function, runs) = match args.as_slice() {
        [] | ["--build"] => match build_large_binary() {
            Ok(path) => {
                built = path;
                (built.as_str(), "main", 5)
            }
            Err(e) => {
                eprintln!("resolve_startup: {e}");
                return ExitCode::from(1);
            }
        },
        [file, function] => (*file, *function, 5),
        [file, function, runs] => match runs.parse::<usize>() {
            Ok(n) if n > 0 => (*file, *function, n),
            _ => {
                eprintln!("resolve_startup: RUNS must be a positive number");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: resolve_startup [FILE FUNCTION [RUNS]]");
            return ExitCode::from(2);
        }
    };
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(e) => {
            eprintln!("resolve_startup: cannot find my own executable: {e}");
            return ExitCode::from(1);
        }
    };
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    println!(
        "{file} ({:.1} MiB), function {function}, median of {runs} runs",
        size as f64 / (1 << 20) as f64
    );
    let rtrace = |lines: bool| {
        let me = me.clone();
        move || {
            let mut cmd = Command::new(&me);
            cmd.args(["--once", file, function]);
            if lines {
                cmd.arg("lines");
            }
            cmd
        }
    };
    let gdb = || {
        let mut cmd = Command::new("gdb");
        cmd.args(["-nx", "-batch", "-ex"])
            .arg(format!("info address {function}"))
            .arg(file);
        cmd
    };
    let results = median(runs, "rtrace symbol", rtrace(false)).and_then(|sym| {
        let lines = median(runs, "rtrace symbol+lines", rtrace(true))?;
        let gdb = median(runs, "gdb", gdb)?;
        Ok((sym, lines, gdb))
    });
    let (sym, lines, gdb) = match results {
        Ok(r) => r,
        Err(e) => {
            eprintln!("resolve_startup: {e}");
            return ExitCode::from(1);
        }
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("rtrace symbol        {:>10.1} ms", ms(sym));
    println!("rtrace symbol+lines  {:>10.1} ms", ms(lines));
    println!("gdb info address     {:>10.1} ms", ms(gdb));
    println!(
        "gdb / rtrace symbol: {:.1}x; gdb / rtrace symbol+lines: {:.1}x",
        gdb.as_secs_f64() / sym.as_secs_f64(),
        gdb.as_secs_f64() / lines.as_secs_f64()
    );
    ExitCode::SUCCESS
}
