//! Scripts (`--script FILE`, `-x 'PROBE { … }'`) against real programs:
//! filters print exactly the calls they let through, maps and histograms
//! count exactly, errors name their line, and a runaway script ends tracing
//! with the program unharmed.

use std::fs;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::events::{
    assert_one_error_line, assert_same_as_untraced, of_kind, temp_path, trace_json,
};
use crate::fixtures::{
    fixture, rounds, rtrace_bin, run_rtrace, run_untraced, source_dir, Run, Spawned, Variant,
};
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
         \x20   @opens[p] = count();\n\
         \x20   if retval < 0 { @failed[p] = count(); print(`failed: ${p}`); }\n\
         }\n\
         END { print(`${@opens.len()} paths`) }\n",
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
            "@failed[/nonexistent/x]: 1".into(),
            "".into(),
            "@opens[/nonexistent/x]: 1".into(),
            format!("@opens[{path}]: 2"),
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
            "threads:work { @count[tid] = count(); @all += 1 }",
            "-x",
            "work:return { @x = hist(arg(0)) }",
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
    let count = maps.iter().find(|m| m["name"] == "@count").unwrap();
    let entries = count["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "four threads: {count}");
    for e in entries {
        assert_eq!(e["value"], 1000, "{count}");
        assert!(e["key"].as_i64().unwrap() > 0, "a tid: {count}");
    }
    let all = maps.iter().find(|m| m["name"] == "@all").unwrap();
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
        "rtrace: warning: script line 2, column 11: cannot read tracee memory at 0x1 \
         (reported once for this block; later errors are counted)"
    );
    assert_eq!(
        warnings[1],
        "rtrace: warning: script line 1, column 1: block work failed 19 times"
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
        "rtrace: script line 1, column 30: block work ran past its limit of 5000 operations \
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
            "rtrace: script line 2, column 7: Expecting name of a variable",
        ),
        (
            &["-x", "work { retval }"],
            2,
            "rtrace: script line 1, column 8: `retval` is only known in a :return block",
        ),
        (
            &["-x", "work { 1"],
            2,
            "rtrace: script line 1, column 6: this block is never closed (`}`)",
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

/// What rtrace says of a script's probe `probe` after the attach line:
/// that it stays an int3 probe, with fast probes (the default); nothing
/// when every probe is an int3 anyway.
fn said_int3(probe: &str) -> Vec<String> {
    match crate::fixtures::int3_by_default() {
        true => Vec::new(),
        false => vec![format!(
            "rtrace: probe {probe}: int3 (a script may read any memory of the stopped thread)"
        )],
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
    // BEGIN runs before the probes' modes are said.
    let expected: Vec<String> = ["tracing".to_string()]
        .into_iter()
        .chain(said_int3("work"))
        .chain(
            [
                "work 0 on true",
                "work 5 on true",
                "work 10 on true",
                "+++ exited with 0 +++",
                "done",
            ]
            .map(String::from),
        )
        .collect();
    assert_eq!(&lines[1..], expected, "{}", run.stderr);
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
        run.stderr.contains(
            "rtrace: warning: script line 1, column 8: printf: no argument for %d (reported once"
        ),
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
    // Three traced calls; spin may make one more, untraced, between the
    // detach and the SIGTERM's arrival (it calls work every millisecond).
    assert!(["calls=3", "calls=4"].contains(&lines[2]), "{}", run.stdout);
    assert_eq!(lines[3..], ["done"], "{}", run.stdout);
    let tail: Vec<&str> = run.stderr.lines().skip(1).collect();
    let expected: Vec<String> = said_int3("work")
        .into_iter()
        .chain(["+++ detached +++", "+++ exited with 0 +++", "end"].map(String::from))
        .collect();
    assert_eq!(tail, expected, "{}", run.stderr);
}

/// Every script error is one exact line, with the line and the column,
/// and exit 2; nothing runs.
#[test]
fn script_errors_are_one_exact_line_with_line_and_column() {
    let prog = fixture("count", Variant::Pie);
    let script = temp_path("typo.rhai");
    fs::write(
        &script,
        "work {\n  @calls = count();\n}\nEND { print(@cals) }\n",
    )
    .unwrap();
    let script = script.to_str().unwrap();
    // Templates nested far deeper than rtrace's bound (64), from a file
    // (an argument is at most 128 KiB).
    let nested = temp_path("nested.rhai");
    fs::write(
        &nested,
        format!(
            "work {{ let s = {}1{}; }}",
            "`${".repeat(30_000),
            "}`".repeat(30_000)
        ),
    )
    .unwrap();
    let nested = nested.to_str().unwrap();
    let cases: [(&[&str], String); 9] = [
        (
            &["-x", "work { @cnt[tdi] += 1 }"],
            "rtrace: script line 1, column 13: unknown name \"tdi\" (did you mean tid?)".into(),
        ),
        (
            &["-x", "BEGIN { let limit = 3 } work /arg(0) > limt/ { }"],
            "rtrace: script line 1, column 40: unknown name \"limt\" (did you mean limit?)".into(),
        ),
        (
            &["-x", "work { @total += 1 } END { print(totl) }"],
            "rtrace: script line 1, column 34: unknown name \"totl\" (did you mean @total?)".into(),
        ),
        (
            &["-x", "work { @n = count() }", "-x", "END {\n  print(@m)\n}"],
            "rtrace: script #2 line 2, column 9: unknown map \"@m\": no block assigns it".into(),
        ),
        (
            &["-x", "work { @n = = 1 }"],
            "rtrace: script line 1, column 13: Unexpected '='".into(),
        ),
        (
            &["-x", "interval:5x { }"],
            "rtrace: script line 1, column 1: interval:5x: a period is a number and a unit, s, ms or us (interval:1s, interval:500ms)".into(),
        ),
        (
            &["-x", "work { @n = count() } interval:18446744073709551615s { }"],
            "rtrace: script line 1, column 23: interval:18446744073709551615s: the period must be at most 1 day (86400s)".into(),
        ),
        (
            &["--script", nested],
            format!("rtrace: {nested} line 1, column 209: templates nest `${{…}}` at most 64 deep"),
        ),
        (
            &["--script", script],
            format!("rtrace: {script} line 4, column 13: unknown map \"@cals\": no block assigns it (did you mean @calls?)"),
        ),
    ];
    for (args, want) in cases {
        let run = run_rtrace(args, &prog, &[]);
        let line = assert_one_error_line(&run, 2, &format!("{args:?}"));
        assert_eq!(line, want, "{args:?}");
        assert!(run.stdout.is_empty(), "the program never ran: {args:?}");
    }
}

/// A map without its `@` still counts, with one warning line for its name,
/// where it is first assigned.
#[test]
fn a_map_without_its_sigil_is_deprecated_with_one_warning() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &["-x", "work { cnt[arg(0) % 2] += 1; cnt[2] += 1 }"],
        &prog,
        &["5"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "rtrace: warning: script line 1, column 8: map \"cnt\" without its @ is deprecated; write @cnt"
    );
    assert!(lines[1].starts_with("rtrace: attached"), "{}", run.stderr);
    let expected: Vec<String> = said_int3("work")
        .into_iter()
        .chain(
            [
                "+++ exited with 0 +++",
                "cnt[1]: 2",
                "cnt[0]: 3",
                "cnt[2]: 5",
                "",
            ]
            .map(String::from),
        )
        .collect();
    assert_eq!(lines[2..], expected, "{}", run.stderr);
    // With --json, a warning event once tracing has begun.
    let (run, events) = trace_json(
        "script_deprecated",
        &["-x", "work { n += 1 }"],
        &prog,
        &["5"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let warnings = of_kind(&events, "warning");
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert_eq!(
        warnings[0]["message"],
        "script line 1, column 8: map \"n\" without its @ is deprecated; write @n"
    );
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[..2], ["attach", "warning"], "{kinds:?}");
}

/// The lines of a run's stderr that are not rtrace's own or its `+++` lines.
fn script_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| !l.starts_with("rtrace: ") && !l.starts_with("+++ "))
        .collect()
}

/// The README's one-liners (as bpftrace's one-liner tutorial has them), run
/// as written on the fixtures they name: exact counts and maps.
#[test]
fn one_liners_count_calls_by_function() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-x", "count:* { @[func] = count() }"], &prog, &["5"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines = script_lines(&run);
    // Each function of the program once, but work five times: by value,
    // then by name, work last.
    assert_eq!(lines.last(), Some(&""), "{}", run.stderr);
    assert_eq!(lines[lines.len() - 2], "@[work]: 5", "{}", run.stderr);
    let ones = &lines[..lines.len() - 2];
    for f in ["main", "twice"] {
        assert!(
            ones.contains(&format!("@[{f}]: 1").as_str()),
            "{f}: {}",
            run.stderr
        );
    }
    assert!(ones.iter().all(|l| l.ends_with("]: 1")), "{}", run.stderr);
    let mut sorted = ones.to_vec();
    sorted.sort();
    assert_eq!(sorted, ones, "equal values in key order");
}

/// Calls by thread, under four threads: exactly 1000 each.
#[test]
fn one_liners_count_calls_by_thread() {
    let prog = fixture("threads", Variant::Pie);
    let run = run_rtrace(&["-x", "work { @[tid] = count() }"], &prog, &["4", "1000"]);
    assert_eq!(run.stdout, "total=4000000\n", "{}", run.stderr);
    let lines = script_lines(&run);
    assert_eq!(lines.len(), 5, "{}", run.stderr);
    let mut tids = Vec::new();
    for l in &lines[..4] {
        let (key, value) = l.split_once("]: ").unwrap();
        assert_eq!(value, "1000", "{}", run.stderr);
        tids.push(key.strip_prefix("@[").unwrap().parse::<i32>().unwrap());
    }
    tids.sort();
    tids.dedup();
    assert_eq!(tids.len(), 4, "four threads: {}", run.stderr);
    assert_eq!(lines[4], "");
}

/// An lhist whose bounds are near `i64::MAX`: the last step ends at `max`,
/// no bound wraps to a negative.
#[test]
fn lhist_bounds_near_i64_max_do_not_wrap() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            "work { @n = lhist(9223372036854775806, 9223372036854775800, 9223372036854775807, 5) }",
        ],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        script_lines(&run),
        [
            "@n:",
            "[9223372036854775805, 9223372036854775807)       3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
            "",
        ],
        "{}",
        run.stderr
    );
}

/// Histograms of durations (every call counted once) and of return values
/// (exact buckets), a linear histogram of an argument.
#[test]
fn one_liners_histograms() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &["-x", "work:return { @ns = hist(duration) }"],
        &prog,
        &["100"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines = script_lines(&run);
    assert_eq!(lines[0], "@ns:", "{}", run.stderr);
    let total: u64 = lines[1..]
        .iter()
        .take_while(|l| l.starts_with('['))
        .map(|l| l[16..24].trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 100, "{}", run.stderr);

    let run = run_rtrace(
        &["-x", "work:return { @ret = hist(retval) }"],
        &prog,
        &["10"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    // 1, 3, 5 … 19.
    assert_eq!(
        script_lines(&run),
        [
            "@ret:",
            "[1]                    1 |@@@@@@@@@@@@@                                       |",
            "[2, 4)                 1 |@@@@@@@@@@@@@                                       |",
            "[4, 8)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |",
            "[8, 16)                4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
            "[16, 32)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |",
            "",
        ],
        "{}",
        run.stderr
    );

    let run = run_rtrace(
        &["-x", "work { @x = lhist(arg(0), 0, 100, 25) }"],
        &prog,
        &["120"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        script_lines(&run),
        [
            "@x:",
            "[0, 25)               25 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
            "[25, 50)              25 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
            "[50, 75)              25 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
            "[75, 100)             25 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
            "[100, ...)            20 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@           |",
            "",
        ],
        "{}",
        run.stderr
    );
}

/// The bytes a program writes, by process name (the fixture's stdout is a
/// pipe: one write of its 16 bytes at exit); printf per call; a predicate
/// on an argument.
#[test]
fn one_liners_sum_printf_and_predicate() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            "libc:write:return /retval > 0/ { @bytes[comm] = sum(retval) }",
        ],
        &prog,
        &["5"],
    );
    assert_eq!(run.stdout, "sum=25\ntwice=41\n", "{}", run.stderr);
    assert_eq!(
        script_lines(&run),
        ["@bytes[count]: 16", ""],
        "{}",
        run.stderr
    );

    let run = run_rtrace(
        &[
            "-x",
            r#"work { printf("%s(%d) in %s\n", func, arg(0), comm) }"#,
        ],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        script_lines(&run),
        ["work(0) in count", "work(1) in count", "work(2) in count"],
        "{}",
        run.stderr
    );

    let run = run_rtrace(
        &["-x", "work /arg(0) % 10 == 0/ { @tens = count() }"],
        &prog,
        &["100"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(script_lines(&run), ["@tens: 10", ""], "{}", run.stderr);
}

/// Stacks as map keys, as bpftrace's ustack prints them: one frame a line,
/// `func+offset`. stacker calls c through a → b three times, and once each
/// through through_fp → b and qsort → cmp: by count, those last.
#[test]
fn one_liners_top_stacks_with_ustack() {
    let prog = fixture("stacker", Variant::Pie);
    let run = run_rtrace(&["-x", "c { @[ustack] = count() }"], &prog, &["3"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let text: String = script_lines(&run).join("\n");
    let stacks: Vec<&str> = text.split("\n]: ").collect();
    assert_eq!(stacks.len(), 4, "three stacks:\n{text}");
    let frames = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("        "))
            .map(|l| l.trim().split('+').next().unwrap().to_string())
            .collect()
    };
    let counts: Vec<&str> = stacks[1..]
        .iter()
        .map(|s| s.lines().next().unwrap())
        .collect();
    assert_eq!(counts, ["1", "1", "3"], "{text}");
    assert!(stacks[0].starts_with("@[\n        c+"), "{text}");
    assert_eq!(frames(stacks[2])[..4], ["c", "b", "a", "main"], "{text}");
    let ones = [frames(stacks[0]), frames(stacks[1])];
    assert!(
        ones.iter()
            .any(|f| f[..4] == ["c", "b", "through_fp", "main"]),
        "{text}"
    );
    assert!(ones.iter().any(|f| f[..2] == ["c", "cmp"]), "{text}");
    for s in &stacks[..3] {
        for l in s.lines().filter(|l| l.starts_with("        ")) {
            let (_, offset) = l.rsplit_once('+').unwrap_or(("", "x"));
            assert!(offset.parse::<u64>().is_ok(), "a decimal offset: {l}");
        }
    }
}

/// The rate per interval, printed and cleared each time (spin, until two
/// intervals have printed and Ctrl-C, which spin dies of); END runs once.
#[test]
fn one_liners_interval_prints_a_rate_and_clears() {
    let mut cmd = Command::new(rtrace_bin());
    cmd.args([
        "-x",
        "work { @calls = count() } interval:1s { print(@calls); clear(@calls) }",
        "-x",
        r#"END { print("end") }"#,
        "--",
    ])
    .arg(fixture("spin", Variant::Pie));
    let mut rtrace = Spawned::command(cmd);
    rtrace.wait_stderr_line(|l| l.starts_with("@calls: "));
    rtrace.wait_stderr_line(|l| l.starts_with("@calls: "));
    rtrace.signal(Signal::SIGINT);
    let run = rtrace.wait();
    assert!(
        run.stderr.contains("+++ killed by SIGINT"),
        "{}",
        run.stderr
    );
    let printed: Vec<u64> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("@calls: "))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(printed.len() >= 2, "{}", run.stderr);
    assert!(
        printed.iter().all(|&n| n > 0),
        "spin calls work every ms: {}",
        run.stderr
    );
    assert_eq!(ends(&run), 1, "{}", run.stderr);
}

/// exit() after N calls: exactly N counted, END once, and the program
/// gets the SIGTERM (spin ends on it by itself).
#[test]
fn one_liners_exit_after_n_calls() {
    let prog = fixture("spin", Variant::Pie);
    let run = run_rtrace(
        &["-x", "work { @n = count(); if @n == 5 { exit() } }"],
        &prog,
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let out: Vec<&str> = run.stdout.lines().collect();
    // spin goes on calling work until the SIGTERM reaches it, after the
    // detach: 5 traced calls, and maybe one more untraced.
    let calls: u64 = out[2]
        .strip_prefix("calls=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!((5..=7).contains(&calls), "{}", run.stdout);
    assert_eq!(out[3..], ["done"], "{}", run.stdout);
    assert_eq!(script_lines(&run), ["@n: 5", ""], "{}", run.stderr);
}

/// interval blocks run on the tracer's thread while the program runs: the
/// third run asks for the exit; END sees exactly three runs, and the
/// program gets the SIGTERM.
#[test]
fn an_interval_block_runs_until_exit() {
    let prog = fixture("spin", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            "work { } interval:50ms { @n += 1; if @n == 3 { exit() } } END { printf(\"END n=%d\\n\", @n) }",
        ],
        &prog,
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let out: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(out.last(), Some(&"done"), "{}", run.stdout);
    assert_eq!(
        script_lines(&run),
        ["END n=3", "@n: 3", ""],
        "{}",
        run.stderr
    );
}

/// The number of `end` lines END printed.
fn ends(run: &Run) -> usize {
    run.stderr.lines().filter(|l| *l == "end").count()
}

/// END runs exactly once on every way tracing ends: the program's exit,
/// exit(), Ctrl-C to rtrace with a launched program, the detach of an
/// attached one; the maps after it, once.
#[test]
fn end_runs_exactly_once_on_every_exit_path() {
    const END: &str = r#"END { print("end") }"#;
    // The program exits.
    let run = run_rtrace(
        &["-x", "work { }", "-x", END],
        &fixture("count", Variant::Pie),
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(ends(&run), 1, "program exit: {}", run.stderr);

    // exit().
    let run = run_rtrace(
        &["-x", "work { exit() }", "-x", END],
        &fixture("spin", Variant::Pie),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(ends(&run), 1, "exit(): {}", run.stderr);

    // The signal comes at any point of the trace: several rounds
    // (RTRACE_STRESS_ROUNDS for many).
    const FIRST: &str = r#"work { @n = count(); if @n == 1 { print("first") } }"#;
    for round in 0..rounds(50, 3) {
        // Ctrl-C to rtrace, launch mode: passed on to spin, which dies of it.
        let mut cmd = Command::new(rtrace_bin());
        cmd.args(["-x", FIRST, "-x", END, "--"])
            .arg(fixture("spin", Variant::Pie));
        let mut rtrace = Spawned::command(cmd);
        rtrace.wait_stderr_line(|l| l == "first");
        rtrace.signal(Signal::SIGINT);
        let run = rtrace.wait();
        assert_eq!(
            ends(&run),
            1,
            "SIGINT, launched, round {round}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("+++ killed by SIGINT"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.lines().any(|l| l.starts_with("@n: ")),
            "{}",
            run.stderr
        );

        // The detach of an attached program (Ctrl-C to rtrace).
        let spin = Spawned::start(&fixture("spin", Variant::Pie), &[]);
        let mut rtrace = Spawned::rtrace_attach(&["-x", FIRST, "-x", END], spin.pid());
        rtrace.wait_stderr_line(|l| l == "first");
        rtrace.signal(Signal::SIGINT);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{}", run.stderr);
        assert_eq!(ends(&run), 1, "detach, round {round}: {}", run.stderr);
        assert!(run.stderr.contains("+++ detached +++"), "{}", run.stderr);
        assert!(
            run.stderr.lines().any(|l| l.starts_with("@n: ")),
            "{}",
            run.stderr
        );
        let spun = spin.terminate();
        assert!(spun.stdout.contains("done"), "{}", spun.stdout);
    }
}

/// `exit()` in BEGIN ends the script before any probe fires, as in
/// bpftrace: the program is never launched, BEGIN's output and END's are
/// printed once, the maps too, and rtrace exits 0.
#[test]
fn exit_in_begin_ends_before_anything_is_launched() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            "BEGIN { @b = 7; print(\"b\"); exit() } work { @n = count() } END { print(\"e\") }",
        ],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.stdout, "", "the program never ran");
    assert_eq!(run.stderr, "b\ne\n@b: 7\n\n");
}

/// Predicates hold as bpftrace's do: a non-zero number, a non-empty
/// string, true; not 0, "", false or an unset map entry. And the standard
/// latency script, with `delete(@m[k])`, counts every call once and leaves
/// no start behind.
#[test]
fn predicates_are_values_as_in_bpftrace() {
    let prog = fixture("count", Variant::Pie);
    // work(k) returns 2k + 1: retval - 1 is 0 once, for k = 0.
    let run = run_rtrace(
        &[
            "-x",
            "work:return /retval - 1/ { @r = count() } work /1/ { @one = count() } \
             work /arg(0) % 2/ { @odd = count() } work /\"x\"/ { @s = count() } \
             work /0/ { @zero = count() } work /\"\"/ { @empty = count() } \
             work /false/ { @no = count() } work /@zero/ { @unset = count() }",
        ],
        &prog,
        &["10"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        script_lines(&run),
        ["@odd: 5", "", "@one: 10", "", "@r: 9", "", "@s: 10", ""],
        "{}",
        run.stderr
    );

    let run = run_rtrace(
        &[
            "-x",
            "work { @start[tid] = nsecs } work:return /@start[tid]/ { @ns = hist(nsecs - @start[tid]); delete(@start[tid]) } END { print(len(@start)) }",
        ],
        &prog,
        &["25"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines = script_lines(&run);
    assert_eq!(lines[..2], ["0", "@ns:"], "{}", run.stderr);
    let total: u64 = lines[2..]
        .iter()
        .take_while(|l| l.starts_with('['))
        .map(|l| l[16..24].trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 25, "{}", run.stderr);
    assert!(!run.stderr.contains("@start"), "{}", run.stderr);
}

/// A header's strings and comments are skipped as bpftrace's lexer skips
/// them: braces and slashes in a predicate's strings, a comment between
/// the header and its body.
#[test]
fn headers_hold_strings_and_comments() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &[
            "-x",
            "work /* c */ { @a = count() } work /**/ { @b = count() } \
             work /arg(0) > 4/ /* c */ { @c = count() } \
             work /\"{\" != \"}\"/ { @d = count() } work /\"/\" == \"}\"/ { @e = count() }",
        ],
        &prog,
        &["10"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        script_lines(&run),
        ["@a: 10", "", "@b: 10", "", "@c: 5", "", "@d: 10", ""],
        "{}",
        run.stderr
    );
}
