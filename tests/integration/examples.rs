//! The programs in `examples/`, run on fixtures: exact output and the traced
//! program's exit status passed through.

use std::path::PathBuf;
use std::process::Command;

use crate::fixtures::{
    fixture, rtrace_bin, run_command, run_untraced, source_dir, Variant, TIMEOUT,
};

/// The built example `name`, next to the rtrace binary under test. `cargo
/// test` builds the examples with the tests; when only this test target
/// was built, it is built here with the same profile.
fn example(name: &str) -> PathBuf {
    let profile_dir = rtrace_bin().parent().unwrap().to_path_buf();
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--example", name]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build --example");
        assert!(status.success(), "cargo build --example {name}: {status}");
    }
    path
}

#[test]
fn open_counter_counts_opens_per_path() {
    let prog = fixture("opener", Variant::Pie);
    let path = source_dir().join("opener.c");
    let path = path.to_str().unwrap();
    let mut cmd = Command::new(example("open_counter"));
    cmd.arg(&prog).arg(path);
    let run = run_command(cmd, TIMEOUT);
    // The opener's own "ok" line, then the table. Its open() and openat()
    // of PATH both count; the open of /nonexistent/x counts as failed.
    // The dynamic linker's opens (ld.so.cache, libc) do not go through
    // libc's open and openat, so they are not there. The most opened path
    // comes first, whatever directory the checkout is in.
    let expected = format!(
        "ok\n  opens  failed  path\n      2       0  {path}\n      1       1  /nonexistent/x\n"
    );
    assert_eq!(run.stdout, expected, "{run:?}");
    assert_eq!(run.code(), 0, "{run:?}");
}

#[test]
fn open_counter_passes_the_exit_status_through() {
    let prog = fixture("opener", Variant::Pie);
    let untraced = run_untraced(&prog, &["/nonexistent/y"]);
    let mut cmd = Command::new(example("open_counter"));
    cmd.arg(&prog).arg("/nonexistent/y");
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), untraced.code(), "{run:?}");
    assert_eq!(
        run.stdout, "  opens  failed  path\n      1       1  /nonexistent/y\n",
        "{run:?}"
    );
}

#[test]
fn latency_histogram_counts_every_call_once() {
    let prog = fixture("count", Variant::Pie);
    let mut cmd = Command::new(example("latency_histogram"));
    cmd.args(["count:work", "--"]).arg(&prog).args(["50", "3"]);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 3, "the traced program's status: {run:?}");
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("sum=2500"));
    assert_eq!(lines.next(), Some("twice=41"));
    assert_eq!(lines.next(), Some("count:work: 50 calls, nanoseconds"));
    // Every bucket line: `[LOW, HIGH)  COUNT |BAR|`, consecutive powers of
    // two, counts adding up to the calls, the bar proportional to the count.
    let mut total = 0;
    let mut previous_high = None;
    let buckets: Vec<&str> = lines.collect();
    assert!(!buckets.is_empty(), "{run:?}");
    let max: u64 = buckets
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap();
    for line in buckets {
        let (range, rest) = line.split_once(')').unwrap();
        let (low, high) = range.trim_start_matches('[').split_once(", ").unwrap();
        if let Some(previous) = previous_high {
            assert_eq!(low, previous, "buckets follow each other: {line}");
        }
        previous_high = Some(high.to_string());
        let (count, bar) = rest.trim().split_once(' ').unwrap();
        let count: u64 = count.parse().unwrap();
        let bar = bar.trim().trim_matches('|');
        assert_eq!(bar.len(), 40, "{line}");
        let ats = bar.chars().filter(|&c| c == '@').count() as u64;
        assert_eq!(ats, (count * 40).div_ceil(max), "{line}");
        total += count;
    }
    assert_eq!(total, 50, "{run:?}");
}

/// The benchmark's small mode: it writes and builds its Rust program (20
/// functions, full DWARF), times `rtrace -l`, `rtrace -s` and gdb on it once
/// each (each checked to have done its job), and prints the table.
#[test]
fn resolve_startup_small_mode_measures_rtrace_and_gdb() {
    let run = run_command(
        {
            let mut cmd = Command::new(example("resolve_startup"));
            cmd.arg("--small");
            cmd
        },
        TIMEOUT,
    );
    assert_eq!(run.code(), 0, "{run:?}");
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("building "))
        .collect();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    assert!(
        lines[0].contains("bench_startup_20 (")
            && lines[0].ends_with("MiB), function bench_startup::main, median of 1 runs"),
        "{}",
        lines[0]
    );
    for (line, name) in lines[1..4].iter().zip([
        "rtrace -l bench_startup::main",
        "rtrace -s bench_startup::main",
        "gdb info address bench_startup::main",
    ]) {
        let (head, ms) = line.rsplit_once(' ').unwrap_or_default();
        assert_eq!(ms, "ms", "{line}");
        let (label, value) = head.trim_end().rsplit_once(' ').unwrap_or_default();
        assert_eq!(label.trim_end(), name, "{line}");
        assert!(value.parse::<f64>().is_ok_and(|v| v > 0.0), "{line}");
    }
    assert!(
        lines[4].starts_with("gdb / rtrace -l: ") && lines[4].ends_with('x'),
        "{}",
        lines[4]
    );
}

/// `leak_a+0x1f` → `leak_a+OFF`: call-site offsets depend on the compiler.
fn without_offsets(report: &str) -> String {
    report
        .lines()
        .map(|line| match line.rsplit_once("+0x") {
            Some((head, off)) if off.chars().all(|c| c.is_ascii_hexdigit()) => {
                format!("{head}+OFF\n")
            }
            _ => format!("{line}\n"),
        })
        .collect()
}

#[test]
fn leak_report_groups_outstanding_blocks_by_call_site() {
    for variant in [Variant::Pie, Variant::NoPie, Variant::O2] {
        let prog = fixture("leaker", variant);
        let mut cmd = Command::new(example("leak_report"));
        cmd.arg(&prog);
        let run = run_command(cmd, TIMEOUT);
        // leak_a's three mallocs of 100 and leak_b's calloc of 20 grown to 50
        // by realloc (its call site is the realloc's); tidy() frees all it
        // allocates, and stdio's buffer is libc's own allocation.
        let expected = "kept 4 blocks\n\
                        leaked 4 blocks, 350 bytes\n \
                        blocks   bytes  site\n      \
                        3     300  leak_a+OFF\n      \
                        1      50  leak_b+OFF\n";
        assert_eq!(without_offsets(&run.stdout), expected, "{variant}: {run:?}");
        assert_eq!(run.code(), 0, "{variant}: {run:?}");
    }
}

#[test]
fn leak_report_without_leaks_says_so() {
    let prog = fixture("count", Variant::Pie);
    let mut cmd = Command::new(example("leak_report"));
    cmd.arg(&prog);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.stdout, "sum=100\ntwice=41\nno leaks\n", "{run:?}");
    assert_eq!(run.code(), 0, "{run:?}");
}

#[test]
fn fake_retval_replaces_every_return_value() {
    let prog = fixture("count", Variant::Pie);
    let mut cmd = Command::new(example("fake_retval"));
    cmd.args(["count:twice", "-7", "--"])
        .arg(&prog)
        .args(["5", "3"]);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.stdout, "sum=25\ntwice=-7\n", "{run:?}");
    assert_eq!(
        run.stderr, "fake_retval: count:twice returned 41, 1 times; replaced by -7\n",
        "{run:?}"
    );
    assert_eq!(run.code(), 3, "{run:?}");
}

#[test]
fn fake_retval_changes_what_the_caller_computes() {
    // work(i) returns 2i+1; forced to 0x10, the sum of 4 calls is 64.
    let prog = fixture("count", Variant::O2);
    let mut cmd = Command::new(example("fake_retval"));
    cmd.args(["count:work", "0x10", "--"]).arg(&prog).arg("4");
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.stdout, "sum=64\ntwice=41\n", "{run:?}");
    assert_eq!(
        run.stderr, "fake_retval: count:work returned 7, 4 times; replaced by 16\n",
        "{run:?}"
    );
    assert_eq!(run.code(), 0, "{run:?}");
}
