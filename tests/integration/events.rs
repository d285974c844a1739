//! Helpers shared by the tracer tests: running rtrace with `--json -o FILE`
//! and reading the events back, counting them, and checking that an error
//! is reported the way the README says (one `rtrace: ` line, no panic).
//!
//! What it must not do: wait by sleeping. Everything here runs a process to
//! completion (bounded by the harness's timeout) and then reads files.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::fixtures::{run_rtrace, Run};

/// A fresh path for a test's output file: `<target tmp>/it/<name>`. Each
/// test passes its own name, so parallel tests never share a file. Any file
/// left there by an earlier run is removed.
pub fn temp_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("it");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let path = dir.join(name);
    let _ = fs::remove_file(&path);
    path
}

/// Parses JSON Lines; panics naming the line that is not a JSON object.
pub fn parse_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n--- all:\n{text}"));
            assert!(v.is_object(), "not a JSON object: {line:?}");
            v
        })
        .collect()
}

/// The events rtrace wrote to `path`.
pub fn read_events(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_events(&text)
}

/// Runs `rtrace --json -o <temp file named after test> <args> -- prog
/// prog_args` to completion; returns the run (the tracee's own stdout and
/// stderr, rtrace's stderr) and the events.
pub fn trace_json(test: &str, args: &[&str], prog: &Path, prog_args: &[&str]) -> (Run, Vec<Value>) {
    let fast = FAST.with(|f| f.get());
    let test = match fast {
        true => format!("{test}_fast"),
        false => test.to_string(),
    };
    let out = temp_path(&format!("{test}.jsonl"));
    let out_str = out.to_str().expect("UTF-8 temp path");
    let mut all = vec!["--json", "-o", out_str];
    if fast {
        all.push("--fast");
    }
    all.extend_from_slice(args);
    let run = run_rtrace(&all, prog, prog_args);
    let events = read_events(&out);
    if fast {
        assert_all_fast(&events);
    }
    (run, events)
}

thread_local! {
    static FAST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `test` with `--fast` added to every [`trace_json`] and
/// [`crate::fixtures::Spawned::rtrace_attach`] of this thread, each of which
/// then also checks that every probe was patched (see [`assert_all_fast`]):
/// the same test, the same expectations, through jump-patched detours.
pub fn with_fast(test: fn()) {
    FAST.with(|f| f.set(true));
    FAST_PROBES.with(|n| n.set(0));
    let r = std::panic::catch_unwind(test);
    FAST.with(|f| f.set(false));
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
    // Attach tests read their events from rtrace's output as it goes.
    let seen = FAST_PROBES.with(|n| n.get());
    assert!(
        seen > 0 || ATTACHED.with(|a| a.get()),
        "no probe was patched"
    );
}

thread_local! {
    static FAST_PROBES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static ATTACHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes that an attached rtrace ran with `--fast` (its probe modes are
/// checked by the test itself).
pub fn note_attached() {
    ATTACHED.with(|a| a.set(true));
}

/// True inside [`with_fast`].
pub fn fast_mode() -> bool {
    FAST.with(|f| f.get())
}

/// Every `probe` event of a `--fast` run says `fast`, or `int3` only
/// because the site's own instructions cannot be replaced by a jump (a
/// `call` among the first five bytes at -O2, a function shorter than a
/// jump): never because of its handler or its return.
pub fn assert_all_fast(events: &[Value]) {
    let modes = of_kind(events, "probe");
    assert!(
        !modes.is_empty(),
        "no probe mode reported: {}",
        show(events)
    );
    for m in modes {
        if str_field(m, "mode") == "fast" {
            FAST_PROBES.with(|n| n.set(n.get() + 1));
            continue;
        }
        for reason in m["reasons"].as_array().into_iter().flatten() {
            let reason = reason.as_str().unwrap_or("");
            let about_the_code = [
                "is a call",
                "bytes a jump needs",
                "jumps into the bytes",
                "jumps indirectly",
                "takes an address inside",
                // (A probe on the next function: a pun would write over
                // its first bytes.)
                "another breakpoint is in the bytes",
            ]
            .iter()
            .any(|r| reason.contains(r));
            assert!(about_the_code, "{m}\n{}", show(events));
        }
    }
}

/// The value of `key` as a string, or "" when absent or not a string.
pub fn str_field<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Events of kind `kind` (`entry`, `return`, …).
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| str_field(e, "event") == kind)
        .collect()
}

/// Events of kind `kind` whose `symbol` is `symbol`.
pub fn of_symbol<'a>(events: &'a [Value], kind: &str, symbol: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| str_field(e, "event") == kind && str_field(e, "symbol") == symbol)
        .collect()
}

/// The `retval` of each `return` event for `symbol`, in order.
pub fn retvals(events: &[Value], symbol: &str) -> Vec<i64> {
    of_symbol(events, "return", symbol)
        .iter()
        .map(|e| {
            e["retval"]
                .as_i64()
                .unwrap_or_else(|| panic!("return without an integer retval: {e}"))
        })
        .collect()
}

/// A short listing of the events for failure messages (at most 40 lines).
pub fn show(events: &[Value]) -> String {
    let mut s: String = events.iter().take(40).map(|e| format!("{e}\n")).collect();
    if events.len() > 40 {
        s.push_str(&format!("… {} more\n", events.len() - 40));
    }
    s
}

/// Checks a traced run against the untraced one: same stdout, same status.
pub fn assert_same_as_untraced(traced: &Run, untraced: &Run, what: &str) {
    assert_eq!(
        traced.stdout, untraced.stdout,
        "{what}: tracee stdout differs from the untraced run\n--- rtrace stderr:\n{}",
        traced.stderr
    );
    assert_eq!(
        traced.code(),
        untraced.code(),
        "{what}: exit status differs from the untraced run\n--- rtrace stderr:\n{}",
        traced.stderr
    );
}

/// Checks that `run` failed the way the README says errors fail: exit status
/// `code`, stderr exactly one line starting `rtrace: `, no panic, no
/// backtrace. Returns that line.
pub fn assert_one_error_line(run: &Run, code: i32, what: &str) -> String {
    assert_eq!(
        run.code(),
        code,
        "{what}: exit status\n--- stdout:\n{}--- stderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "{what}: rtrace panicked:\n{}",
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("rtrace: "),
        "{what}: stderr must be exactly one line starting `rtrace: `, got:\n{}",
        run.stderr
    );
    lines[0].to_owned()
}
