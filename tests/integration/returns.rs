//! Return probes in the cases that break naive ones: deep recursion,
//! longjmp, C++ exceptions, tail calls, a program walking its own stack.
//! The program must behave exactly as untraced, and exactly the calls that
//! return must be reported as returning, with their values.

use serde_json::Value;

use crate::events::{assert_same_as_untraced, of_symbol, retvals, show, str_field, trace_json};
use crate::fixtures::{fixture, run_untraced, Variant};

/// The return events, in order, as (symbol, retval).
fn returns(events: &[Value]) -> Vec<(String, i64)> {
    events
        .iter()
        .filter(|e| str_field(e, "event") == "return")
        .map(|e| {
            (
                str_field(e, "symbol").to_string(),
                e["retval"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn recursion_ten_thousand_deep() {
    let prog = fixture("deep", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "depth=10000\n");
    let (run, events) = trace_json("deep_10000", &["-s", "depth"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "rtrace -s depth -- deep");
    assert_eq!(of_symbol(&events, "entry", "depth").len(), 10001);
    // Innermost first: depth(0) = 0 up to depth(10000) = 10000.
    let expected: Vec<i64> = (0..=10000).collect();
    assert_eq!(retvals(&events, "depth"), expected);
}

#[test]
fn longjmp_out_of_probed_calls_drops_them() {
    let prog = fixture("longjmper", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    let (run, events) = trace_json("longjmp", &["-s", "escape", "-s", "work"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "longjmper");
    // 3 rounds of escape(3) → … → escape(0), which longjmps out of all four.
    assert_eq!(
        of_symbol(&events, "entry", "escape").len(),
        12,
        "{}",
        show(&events)
    );
    assert_eq!(retvals(&events, "escape"), Vec::<i64>::new());
    assert_eq!(retvals(&events, "work"), vec![15]);
}

const THROWER_PROBES: [&str; 5] = [
    "_Z5inneri",
    "_Z6middlei",
    "_Z5outeri",
    "_Z9rethroweri",
    "_Z6outer2i",
];

#[test]
fn exceptions_through_return_probes() {
    for variant in [Variant::Pie, Variant::Static] {
        let prog = fixture("thrower", variant);
        let untraced = run_untraced(&prog, &[]);
        assert_eq!(
            untraced.stdout,
            "outer=-1,3,5,-1,9,11\ncleanups=6\nrethrown=2\n"
        );
        let mut args = Vec::new();
        for p in THROWER_PROBES {
            args.extend(["-s", p]);
        }
        let (run, events) = trace_json(&format!("thrower_{variant}"), &args, &prog, &[]);
        assert_same_as_untraced(&run, &untraced, &format!("thrower ({variant})"));
        // Probed by their mangled names, shown demangled.
        let entries = |s| of_symbol(&events, "entry", s).len();
        assert_eq!(entries("outer(int)"), 6);
        assert_eq!(entries("middle(int)"), 6);
        assert_eq!(entries("inner(int)"), 9);
        assert_eq!(entries("outer2(int)"), 3);
        // Unwound calls (inner of 0, 3, 6 and the middle and rethrower
        // frames above them) never return; the catching ones do.
        let int = |v: &[i64]| v.iter().map(|&x| x as i32 as i64).collect::<Vec<_>>();
        assert_eq!(
            int(&retvals(&events, "outer(int)")),
            vec![-1, 3, 5, -1, 9, 11]
        );
        assert_eq!(retvals(&events, "middle(int)"), vec![3, 5, 9, 11]);
        assert_eq!(retvals(&events, "inner(int)"), vec![2, 4, 8, 10, 2]);
        assert_eq!(retvals(&events, "rethrower(int)"), vec![2]);
        assert_eq!(retvals(&events, "outer2(int)"), vec![1, 1, 2]);
    }
}

#[test]
fn tail_call_reports_both_returns() {
    let prog = fixture("tailcall", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "tail=106,108,101\n");
    let (run, events) = trace_json("tailcall", &["-s", "mid", "-s", "leaf"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "tailcall");
    let expected: Vec<(String, i64)> = [
        ("leaf", 106),
        ("mid", 106),
        ("leaf", 108),
        ("mid", 108),
        ("leaf", 101),
    ]
    .iter()
    .map(|(s, v)| (s.to_string(), *v))
    .collect();
    assert_eq!(returns(&events), expected, "{}", show(&events));
}

#[test]
fn backtrace_inside_probed_functions_sees_real_frames() {
    for variant in [Variant::Pie, Variant::Static] {
        let prog = fixture("backtracer", variant);
        let untraced = run_untraced(&prog, &[]);
        assert!(untraced.stdout.starts_with("frames="), "{untraced:?}");
        let (run, events) = trace_json(
            &format!("backtracer_{variant}"),
            &["-s", "level1", "-s", "level2"],
            &prog,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, &format!("backtracer ({variant})"));
        assert_eq!(retvals(&events, "level2"), vec![2]);
        assert_eq!(retvals(&events, "level1"), vec![3]);
    }
}

/// Detach while four threads are inside a probed function that sleeps: every
/// rewritten return address gets its original back, the code is the files',
/// and every call returns where it should: the program finishes with the
/// total it computes untraced.
#[test]
fn detach_with_calls_in_flight_on_four_threads() {
    use crate::attach::{tracer_pid, wait_detach, wait_event};
    use crate::fixtures::{code_matches_files, Spawned};
    use std::collections::BTreeSet;
    use std::time::Duration;

    let prog = fixture("sleepers", Variant::Pie);
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let sleepers = Spawned::start(&prog, &["4", "60"]);
        let pid = sleepers.pid();
        let mut rtrace = Spawned::rtrace_attach(&["-s", "nap", "--json"], pid);
        let mut tids = BTreeSet::new();
        while tids.len() < 4 {
            let e = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                str_field(e, "event") == "entry"
            });
            tids.insert(e["tid"].as_i64().unwrap());
        }
        // Each thread is now inside nap (sleeping) or about to return.
        rtrace.signal(signal);
        wait_detach(&mut rtrace, "detach with calls in flight");
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{}", run.stderr);
        code_matches_files(pid).unwrap_or_else(|e| panic!("after detach: {e}"));
        assert_eq!(tracer_pid(pid), 0);
        let run = sleepers.wait();
        assert_eq!(run.stdout, "ready\ntotal=247080\n", "{run:?}");
        assert_eq!(run.code(), 0);
    }
}

/// fork() inside a probed call: without -f the child gets the original
/// return address back and runs on untraced; with -f it is traced with its
/// own copy of the call in flight, whose return is reported under its pid.
#[test]
fn fork_while_a_call_is_in_flight() {
    let prog = fixture("forkin", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "child=18 work=3\n");

    let (run, events) = trace_json(
        "forkin_nofollow",
        &["-s", "spawn", "-s", "work"],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "forkin without -f");
    let parent = events[0]["pid"].as_i64().unwrap();
    assert!(events
        .iter()
        .all(|e| e.get("pid").is_none_or(|p| p.as_i64() == Some(parent))));
    assert_eq!(retvals(&events, "work"), vec![3]);
    assert_eq!(retvals(&events, "spawn").len(), 1);

    let (run, events) = trace_json(
        "forkin_follow",
        &["-f", "-s", "spawn", "-s", "work"],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "forkin with -f");
    let parent = events[0]["pid"].as_i64().unwrap();
    let of_pid = |symbol: &str, pid: i64| -> Vec<i64> {
        of_symbol(&events, "return", symbol)
            .iter()
            .filter(|e| e["pid"].as_i64() == Some(pid))
            .map(|e| e["retval"].as_i64().unwrap())
            .collect()
    };
    let forks: Vec<&Value> = events
        .iter()
        .filter(|e| str_field(e, "event") == "fork")
        .collect();
    assert_eq!(forks.len(), 1, "{}", show(&events));
    let child = forks[0]["child"].as_i64().unwrap();
    assert_eq!(of_pid("spawn", child), vec![7]);
    assert_eq!(of_pid("spawn", parent), vec![child]);
    assert_eq!(of_pid("work", child), vec![11]);
    assert_eq!(of_pid("work", parent), vec![3]);
}

/// In Go code (a `.go.buildinfo` section) return addresses are never
/// rewritten: the function that reads its own return address sees the real
/// one, and the returns are still reported, from the return site.
#[test]
fn go_code_keeps_its_return_addresses() {
    let built = fixture("retaddr", Variant::Pie);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("it");
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("go_buildinfo");
    std::fs::write(&marker, b"\xff Go buildinf:go1.22").unwrap();
    let prog = dir.join("retaddr_go");
    let out = std::process::Command::new("objcopy")
        .arg(format!("--add-section=.go.buildinfo={}", marker.display()))
        .arg(&built)
        .arg(&prog)
        .output()
        .expect("run objcopy");
    assert!(out.status.success(), "{out:?}");
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "inside=3\n");
    let (run, events) = trace_json("retaddr_go", &["-s", "check"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "retaddr with .go.buildinfo");
    assert_eq!(retvals(&events, "check"), vec![1, 1, 1]);
}
