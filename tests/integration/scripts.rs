//! Scripts (`--script FILE`, `-x 'PROBE { … }'`) against real programs:
//! filters print exactly the calls they let through, maps and histograms
//! count exactly, errors name their line, and a runaway script ends tracing
//! with the program unharmed.

use std::fs;

use crate::events::{
    assert_one_error_line, assert_same_as_untraced, of_kind, temp_path, trace_json,
};
use crate::fixtures::{fixture, run_rtrace, run_untraced, source_dir, Variant};
use crate::launch::assert_ran_on;

/// The lines of rtrace's stderr that report calls of `symbol`.
fn calls<'a>(stderr: &'a str, symbol: &str) -> Vec<&'a str> {
    let needle = format!("] {symbol}(");
    stderr.lines().filter(|l| l.contains(&needle)).collect()
}

/// `[pid N] rest` → `rest`.
fn without_pid(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, rest)| rest)
}

#[test]
fn an_entry_filter_prints_only_the_calls_it_lets_through() {
    for variant in [
        Variant::Pie,
        Variant::NoPie,
        Variant::Static,
        Variant::NoDebug,
    ] {
        let prog = fixture("count", variant);
        let untraced = run_untraced(&prog, &["30", "4"]);
        let run = run_rtrace(
            &["-x", "count:work { arg(0) % 10 == 0 }"],
            &prog,
            &["30", "4"],
        );
        assert_same_as_untraced(&run, &untraced, "filtered count");
        let lines: Vec<&str> = calls(&run.stderr, "work")
            .into_iter()
            .map(|l| without_pid(l).split(" <").next().unwrap())
            .collect();
        let expected: Vec<String> = [0, 10, 20]
            .iter()
            .map(|x| match variant {
                Variant::NoDebug => format!(
                    "work({x:#x}, {}) = {}",
                    lines_rest(&run.stderr, *x),
                    2 * x + 1
                ),
                _ => format!("work(x={x}) = {}", 2 * x + 1),
            })
            .collect();
        assert_eq!(lines, expected, "{variant}\n{}", run.stderr);
    }
}

/// Without DWARF the call shows six registers; the five after the first are
/// whatever the caller left there, so they are taken from the line itself.
fn lines_rest(stderr: &str, x: u64) -> String {
    let head = format!("work({x:#x}, ");
    let line = stderr
        .lines()
        .find(|l| l.contains(&head))
        .unwrap_or_else(|| panic!("no call of work({x:#x}):\n{stderr}"));
    let rest = &line[line.find(&head).unwrap() + head.len()..];
    rest.split(')').next().unwrap().to_string()
}

#[test]
fn a_return_filter_prints_whole_calls_of_its_choice() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-x", "work:return { retval > 53 }"], &prog, &["30", "0"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<&str> = calls(&run.stderr, "work")
        .into_iter()
        .map(|l| without_pid(l).split(" <").next().unwrap())
        .collect();
    assert_eq!(
        lines,
        ["work(x=27) = 55", "work(x=28) = 57", "work(x=29) = 59"],
        "{}",
        run.stderr
    );
}

#[test]
fn maps_count_opens_and_failures_per_path_from_a_script_file() {
    let prog = fixture("opener", Variant::Pie);
    let path = source_dir().join("opener.c");
    let path = path.to_str().unwrap();
    let script = temp_path("opens.rhai");
    fs::write(
        &script,
        "// opens per path, and which failed\n\
         libc:open*:return {\n\
         \x20   let p = str(if func.starts_with(\"openat\") { arg(1) } else { arg(0) });\n\
         \x20   opens[p] += 1;\n\
         \x20   if retval < 0 { failed[p] += 1; print(`failed: ${p}`); }\n\
         }\n\
         END { print(`${opens.len()} paths`) }\n",
    )
    .unwrap();
    let untraced = run_untraced(&prog, &[path]);
    let run = run_rtrace(&["--script", script.to_str().unwrap()], &prog, &[path]);
    assert_same_as_untraced(&run, &untraced, "opener under a script");
    let mut lines = run.stderr.lines().filter(|l| !l.starts_with("rtrace: "));
    assert_eq!(
        lines.next(),
        Some("failed: /nonexistent/x"),
        "{}",
        run.stderr
    );
    assert_eq!(lines.next(), Some("+++ exited with 0 +++"));
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        rest,
        [
            "2 paths".to_string(),
            "opens[/nonexistent/x]: 1".into(),
            format!("opens[{path}]: 2"),
            "".into(),
            "failed[/nonexistent/x]: 1".into(),
            "".into(),
        ],
        "{}",
        run.stderr
    );
}

#[test]
fn per_thread_counts_are_exact_under_four_threads() {
    let prog = fixture("threads", Variant::Pie);
    let (run, events) = trace_json(
        "script_threads",
        &[
            "-x",
            "threads:work { count[tid] += 1; all += 1 }",
            "-x",
            "work:return { hist(\"x\", arg(0)) }",
        ],
        &prog,
        &["4", "1000"],
    );
    assert_eq!(run.stdout, "total=4000000\n", "{}", run.stderr);
    assert_eq!(run.code(), 0);
    assert!(
        of_kind(&events, "entry").is_empty(),
        "nothing returned true"
    );
    let maps = of_kind(&events, "map");
    assert_eq!(maps.len(), 2, "{maps:?}");
    let count = maps.iter().find(|m| m["name"] == "count").unwrap();
    let entries = count["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "four threads: {count}");
    for e in entries {
        assert_eq!(e["value"], 1000, "{count}");
        assert!(e["key"].as_i64().unwrap() > 0, "a tid: {count}");
    }
    let all = maps.iter().find(|m| m["name"] == "all").unwrap();
    assert_eq!(all["value"], 4000);
    let hists = of_kind(&events, "hist");
    assert_eq!(hists.len(), 1);
    // arg(0) is 0..999 on each of 4 threads: 4 zeros, 4 ones, 8 in [2, 4), ….
    let buckets = hists[0]["buckets"].as_array().unwrap();
    let counts: Vec<i64> = buckets
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .collect();
    assert_eq!(
        counts,
        [4, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1952],
        "{}",
        hists[0]
    );
}

#[test]
fn a_runtime_error_is_reported_once_with_its_line_and_tracing_goes_on() {
    let prog = fixture("count", Variant::Pie);
    let untraced = run_untraced(&prog, &["20", "0"]);
    let run = run_rtrace(
        &[
            "-x",
            "work {\n  let n = str(arg(0));\n  true\n}",
            "-s",
            "twice",
        ],
        &prog,
        &["20", "0"],
    );
    assert_same_as_untraced(&run, &untraced, "a failing script");
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("rtrace: warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", run.stderr);
    // work(0) reads "(null)"; work(1) reads address 1, which is not mapped.
    assert_eq!(
        warnings[0],
        "rtrace: warning: -x #1:2: cannot read tracee memory at 0x1 \
         (reported once for this block; later errors are counted)"
    );
    assert_eq!(
        warnings[1],
        "rtrace: warning: -x #1:1: block work failed 19 times"
    );
    // The failing runs printed nothing; the first did, and -s twice still does.
    assert_eq!(calls(&run.stderr, "work").len(), 1, "{}", run.stderr);
    assert_eq!(calls(&run.stderr, "twice").len(), 1, "{}", run.stderr);
}

#[test]
fn a_runaway_loop_ends_tracing_and_the_program_runs_on() {
    let prog = fixture("count", Variant::Pie);
    let untraced = run_untraced(&prog, &["50", "3"]);
    let run = run_rtrace(
        &[
            "--script-ops",
            "5000",
            "-x",
            "work { if arg(0) == 7 { loop { } } }",
        ],
        &prog,
        &["50", "3"],
    );
    // The tracee's own output and status are its own; rtrace says what
    // happened, waits for it, says how it ended and exits 1.
    assert_eq!(run.stdout, untraced.stdout, "{}", run.stderr);
    let error = assert_ran_on(&run, "", "exited with 3", "a runaway script");
    assert_eq!(
        error,
        "rtrace: -x #1:1: block work ran past its limit of 5000 operations \
         (a loop that never ends?); raise --script-ops if it is meant to",
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("+++ detached +++"), "{}", run.stderr);
}

#[test]
fn bad_scripts_are_one_error_line() {
    let prog = fixture("count", Variant::Pie);
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["-x", "work {\n  let = 1;\n}"],
            2,
            "rtrace: -x #1:2: Expecting name of a variable",
        ),
        (
            &["-x", "work { retval }"],
            2,
            "rtrace: -x #1:1: `retval` is only known in a :return block",
        ),
        (
            &["-x", "work { 1"],
            2,
            "rtrace: -x #1:1: this block is never closed (`}`)",
        ),
        (
            &["-x", "BEGIN { 1 }"],
            2,
            "rtrace: give at least one probe with -s SPEC",
        ),
        (
            &["--script", "/nonexistent/s.rhai"],
            1,
            "rtrace: cannot read script /nonexistent/s.rhai",
        ),
    ];
    for (args, code, start) in cases {
        let run = run_rtrace(args, &prog, &[]);
        let line = assert_one_error_line(&run, code, &format!("{args:?}"));
        assert!(line.starts_with(start), "{args:?}: {line}");
        assert!(run.stdout.is_empty(), "the program never ran: {args:?}");
    }
}

#[test]
fn begin_and_end_frame_the_trace() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            "BEGIN { let every = 5; print(\"tracing\") }",
            "-x",
            "work { if arg(0) % every == 0 { print(`work ${arg(0)} on ${tid == pid}`) } }",
            "-x",
            "END { print(\"done\") }",
        ],
        &prog,
        &["12", "0"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines[0].starts_with("rtrace: attached to pid"),
        "{}",
        run.stderr
    );
    assert_eq!(
        &lines[1..],
        [
            "tracing",
            "work 0 on true",
            "work 5 on true",
            "work 10 on true",
            "+++ exited with 0 +++",
            "done"
        ],
        "{}",
        run.stderr
    );
}

/// END sums up a run: when setup fails before tracing begins (a probe that
/// cannot be placed), it does not run; rtrace says the error alone.
#[test]
fn end_does_not_run_after_a_setup_error() {
    let prog = fixture("count", Variant::Pie);
    for args in [
        &["-x", "END { print(\"end\") }", "-s", "nosuchfn"][..],
        &[
            "-x",
            "END { print(\"end\") }",
            "-x",
            "nosuchfn { print(\"x\") }",
        ][..],
    ] {
        let run = run_rtrace(args, &prog, &["3"]);
        let line = assert_one_error_line(&run, 1, &format!("{args:?}"));
        assert!(line.contains("no function \"nosuchfn\""), "{line}");
        assert_eq!(run.stdout, "", "{args:?}: the program never ran");
    }
    // And it does run when tracing began.
    let run = run_rtrace(
        &["-x", "END { print(\"end\") }", "-s", "work"],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        run.stderr.lines().filter(|l| *l == "end").count(),
        1,
        "{}",
        run.stderr
    );
}

/// printf as bpftrace and C have it: widths, flags, conversions, one line
/// per call; a conversion without its value is the block's error, said once.
#[test]
fn printf_formats_as_c_does() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            r#"work { printf("x=%-3d|%04x|%s|%p|%5.1f%%\n", arg(0), arg(0) * 100, func, 4096, 0.25) }"#,
        ],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("x=")).collect();
    assert_eq!(
        lines,
        [
            "x=0  |0000|work|0x1000|  0.2%",
            "x=1  |0064|work|0x1000|  0.2%",
            "x=2  |00c8|work|0x1000|  0.2%"
        ],
        "{}",
        run.stderr
    );
    let run = run_rtrace(
        &["-x", r#"work { printf("%d %d\n", arg(0)) }"#],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("rtrace: warning: -x #1:1: printf: no argument for %d (reported once"),
        "{}",
        run.stderr
    );
}

/// bpftrace's `comm` (the process's name, a new one after an exec) and
/// `nsecs` (the hit's time in nanoseconds).
#[test]
fn comm_and_nsecs_as_bpftrace_has_them() {
    let execer = fixture("execer", Variant::Pie);
    let count = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &["-x", r#"work { printf("%s %d\n", comm, nsecs > 0) }"#],
        &execer,
        &[count.to_str().unwrap(), "2"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.ends_with(" 1") && !l.starts_with('['))
        .collect();
    assert_eq!(lines, ["execer 1", "count 1", "count 1"], "{}", run.stderr);
}

/// bpftrace's predicates: a block runs only on the hits its `/…/` lets
/// through, on entries and on returns.
#[test]
fn predicates_choose_the_hits_a_block_runs_on() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            r#"work /arg(0) >= 2/ { printf("in %d\n", arg(0)) }
               work:return /retval > 5/ { printf("out %d\n", retval) }"#,
        ],
        &prog,
        &["4"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("in ") || l.starts_with("out "))
        .collect();
    assert_eq!(lines, ["in 2", "in 3", "out 7"], "{}", run.stderr);
}

/// bpftrace's exit(): tracing ends as if rtrace had a SIGTERM, END runs
/// once, and a launched program gets the SIGTERM (spin ends on it by
/// itself, after work(0), work(1), work(2)).
#[test]
fn exit_ends_tracing_as_sigterm_does() {
    let prog = fixture("spin", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            r#"work /arg(0) == 2/ { exit() } END { print("end") }"#,
        ],
        &prog,
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[2..], ["calls=3", "done"], "{}", run.stdout);
    let tail: Vec<&str> = run.stderr.lines().skip(1).collect();
    assert_eq!(
        tail,
        ["+++ detached +++", "+++ exited with 0 +++", "end"],
        "{}",
        run.stderr
    );
}
