//! `--perfetto FILE`: the timeline of a real run, read back with serde_json.
//!
//! Each test traces a fixture whose calls are known, and checks the file
//! exactly: how many slices each thread's track has, their names, arguments
//! and return values, that the slices of a track nest (any two are disjoint,
//! or one is inside the other), and the instants and names around them. The
//! file must be one valid JSON object however tracing ended.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::attach::{wait_detach, wait_event};
use crate::events::{of_kind, parse_events, read_events, show, str_field, temp_path};
use crate::fixtures::{fixture, run_rtrace, Run, Spawned, Variant};

/// A slice of the file, its times back in nanoseconds.
#[derive(Clone, Debug)]
struct Slice {
    name: String,
    pid: i64,
    tid: i64,
    start: u64,
    end: u64,
    args: Value,
}

/// Microseconds with three decimals, as written, back to nanoseconds.
fn nanos(v: &Value) -> u64 {
    let us = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    (us * 1000.0).round() as u64
}

/// Parses the file: one JSON object, `traceEvents` and `displayTimeUnit`.
fn read_timeline(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()));
    assert_eq!(v["displayTimeUnit"], "ns", "{text}");
    v["traceEvents"]
        .as_array()
        .unwrap_or_else(|| panic!("no traceEvents array:\n{text}"))
        .clone()
}

/// Runs `rtrace --perfetto FILE --json -o FILE2 <args> -- prog prog_args`:
/// the timeline, and the JSON Lines events of the same run to compare with.
fn trace_timeline(
    test: &str,
    args: &[&str],
    prog: &Path,
    prog_args: &[&str],
) -> (Run, Vec<Value>, Vec<Value>) {
    let timeline = temp_path(&format!("{test}.trace.json"));
    let jsonl = temp_path(&format!("{test}.jsonl"));
    let mut all = vec![
        "--perfetto",
        timeline.to_str().expect("UTF-8 temp path"),
        "--json",
        "-o",
        jsonl.to_str().expect("UTF-8 temp path"),
    ];
    all.extend_from_slice(args);
    let run = run_rtrace(&all, prog, prog_args);
    (run, read_timeline(&timeline), read_events(&jsonl))
}

fn of_ph<'a>(events: &'a [Value], ph: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["ph"] == ph).collect()
}

fn slices(events: &[Value]) -> Vec<Slice> {
    of_ph(events, "X")
        .into_iter()
        .map(|e| {
            let start = nanos(&e["ts"]);
            Slice {
                name: str_field(e, "name").to_string(),
                pid: e["pid"].as_i64().expect("pid"),
                tid: e["tid"].as_i64().expect("tid"),
                start,
                end: start + nanos(&e["dur"]),
                args: e["args"].clone(),
            }
        })
        .collect()
}

/// The slices of each thread, in file order (the order the calls returned).
fn by_thread(slices: &[Slice]) -> BTreeMap<i64, Vec<Slice>> {
    let mut m: BTreeMap<i64, Vec<Slice>> = BTreeMap::new();
    for s in slices {
        m.entry(s.tid).or_default().push(s.clone());
    }
    m
}

/// Every pair of slices on one track is disjoint or nested.
fn assert_nested(track: &[Slice], what: &str) {
    for (i, a) in track.iter().enumerate() {
        assert!(a.start <= a.end, "{what}: {a:?} ends before it starts");
        for b in &track[i + 1..] {
            let disjoint = a.end <= b.start || b.end <= a.start;
            let a_in_b = b.start <= a.start && a.end <= b.end;
            let b_in_a = a.start <= b.start && b.end <= a.end;
            assert!(
                disjoint || a_in_b || b_in_a,
                "{what}: slices overlap without nesting:\n{a:?}\n{b:?}"
            );
        }
    }
}

/// `inner` lies strictly inside `outer`.
fn assert_inside(inner: &Slice, outer: &Slice, what: &str) {
    assert!(
        outer.start < inner.start && inner.end < outer.end,
        "{what}: {inner:?} is not inside {outer:?}"
    );
}

/// The `args.name` of each metadata event called `kind`, as (tid, name).
fn names(events: &[Value], kind: &str) -> Vec<(i64, String)> {
    of_ph(events, "M")
        .into_iter()
        .filter(|e| e["name"] == kind)
        .map(|e| {
            (
                e["tid"].as_i64().expect("tid"),
                e["args"]["name"].as_str().expect("name").to_string(),
            )
        })
        .collect()
}

fn arg<'a>(s: &'a Slice, key: &str) -> &'a str {
    s.args[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string arg {key}: {s:?}"))
}

fn retval(s: &Slice) -> i64 {
    s.args["retval"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer retval: {s:?}"))
}

#[test]
fn timeline_recursion_nests_each_call_inside_its_caller() {
    let prog = fixture("recurse", Variant::Pie);
    let (run, events, _) = trace_timeline("tl_recurse", &["-s", "fact"], &prog, &["5"]);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        ("fact=120\n", 0),
        "{}",
        run.stderr
    );
    let all = slices(&events);
    let tracks = by_thread(&all);
    assert_eq!(tracks.len(), 1, "one thread: {all:?}");
    let track = &tracks[&all[0].tid];
    assert_eq!(track.len(), 6, "fact(5) … fact(0)");
    assert_eq!(all[0].tid, all[0].pid, "the main thread");
    assert_nested(track, "recurse");
    // Written as they return: fact(0) first.
    let factorial = [1, 1, 2, 6, 24, 120];
    for (n, s) in track.iter().enumerate() {
        assert_eq!(s.name, "fact");
        assert_eq!(arg(s, "n"), n.to_string(), "{s:?}");
        assert_eq!(retval(s), factorial[n], "{s:?}");
        assert_eq!(arg(s, "return"), factorial[n].to_string(), "{s:?}");
        if n > 0 {
            assert_inside(&track[n - 1], s, "fact(n-1) inside fact(n)");
        }
    }
    assert_eq!(
        names(&events, "process_name"),
        [(all[0].pid, "recurse".into())]
    );
    assert_eq!(
        names(&events, "thread_name"),
        [(all[0].tid, "recurse".into())]
    );
}

#[test]
fn timeline_ten_thousand_nested_calls() {
    let prog = fixture("deep", Variant::Pie);
    let (run, events, _) = trace_timeline("tl_deep", &["-s", "depth"], &prog, &[]);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        ("depth=10000\n", 0),
        "{}",
        run.stderr
    );
    let all = slices(&events);
    assert_eq!(all.len(), 10_001);
    assert_eq!(by_thread(&all).len(), 1);
    assert_nested(&all, "deep");
    for (n, s) in all.iter().enumerate() {
        assert_eq!(arg(s, "n"), n.to_string());
        assert_eq!(retval(s), n as i64);
        if n > 0 {
            assert_inside(&all[n - 1], s, "depth(n-1) inside depth(n)");
        }
    }
}

#[test]
fn timeline_calls_left_by_longjmp_have_no_slice() {
    let prog = fixture("longjmper", Variant::Pie);
    let args = ["-s", "main", "-s", "escape", "-s", "work"];
    let (run, events, jsonl) = trace_timeline("tl_longjmp", &args, &prog, &[]);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        ("jumps=3\nwork=15\n", 0),
        "{}",
        run.stderr
    );
    // escape was entered 12 times (3 rounds of escape(3) … escape(0)) and
    // never returned.
    let escapes = of_kind(&jsonl, "entry")
        .into_iter()
        .filter(|e| str_field(e, "symbol") == "escape")
        .count();
    assert_eq!(escapes, 12, "{}", show(&jsonl));
    let all = slices(&events);
    let got: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(got, ["work", "main"], "{all:?}");
    assert_nested(&all, "longjmper");
    assert_inside(&all[0], &all[1], "work inside main");
    assert_eq!(arg(&all[0], "x"), "7");
    assert_eq!(retval(&all[0]), 15);
    assert_eq!(retval(&all[1]), 0);
    assert!(of_ph(&events, "i").is_empty(), "{events:?}");
}

#[test]
fn timeline_one_track_per_thread() {
    let prog = fixture("threads", Variant::Pie);
    let (run, events, _) = trace_timeline("tl_threads", &["-s", "work"], &prog, &["4", "50"]);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        ("total=10000\n", 0),
        "{}",
        run.stderr
    );
    let all = slices(&events);
    let tracks = by_thread(&all);
    assert_eq!(tracks.len(), 4, "four workers; main calls no work()");
    let pid = all[0].pid;
    for (tid, track) in &tracks {
        assert_ne!(*tid, pid, "a worker is not the main thread");
        assert_eq!(track.len(), 50, "thread {tid}");
        assert_nested(track, "threads");
        for (i, s) in track.iter().enumerate() {
            assert_eq!(s.pid, pid);
            assert_eq!(arg(s, "x"), i.to_string(), "thread {tid}: {s:?}");
            assert_eq!(retval(s), 2 * i as i64 + 1, "thread {tid}: {s:?}");
        }
    }
    let thread_names = names(&events, "thread_name");
    let named: BTreeSet<i64> = thread_names.iter().map(|(t, _)| *t).collect();
    assert_eq!(thread_names.len(), 4, "once per thread: {thread_names:?}");
    assert_eq!(named, tracks.keys().copied().collect());
    assert!(
        thread_names.iter().all(|(_, n)| n == "threads"),
        "{thread_names:?}"
    );
    assert_eq!(names(&events, "process_name"), [(pid, "threads".into())]);
}

#[test]
fn timeline_instruction_hits_are_instants() {
    let prog = fixture("count", Variant::Pie);
    let (run, events, _) = trace_timeline("tl_hits", &["-s", "work+0x4"], &prog, &["3"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let hits = of_ph(&events, "i");
    assert_eq!(hits.len(), 3, "{events:?}");
    for h in &hits {
        assert_eq!(
            (h["name"].as_str(), h["cat"].as_str()),
            (Some("work+0x4"), Some("hit"))
        );
        assert_eq!(h["s"], "t");
        assert_eq!(h["args"]["probe"], "work+0x4");
    }
    assert!(slices(&events).is_empty());
}

#[test]
fn timeline_signals_are_instants_on_their_thread() {
    let prog = fixture("signals", Variant::Pie);
    let (run, events, _) = trace_timeline("tl_signals", &["-s", "in_handler"], &prog, &[]);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        ("usr1=5\nusr2=1\n", 0),
        "{}",
        run.stderr
    );
    let signals: Vec<&str> = of_ph(&events, "i")
        .iter()
        .map(|e| {
            assert_eq!(
                (e["cat"].as_str(), e["s"].as_str()),
                (Some("signal"), Some("t"))
            );
            assert_eq!(e["tid"], e["pid"], "the main thread: {e}");
            e["name"].as_str().expect("name")
        })
        .collect();
    assert_eq!(
        signals,
        ["SIGUSR1"; 5]
            .iter()
            .chain(&["SIGUSR2"])
            .copied()
            .collect::<Vec<_>>()
    );
    let all = slices(&events);
    assert_eq!(all.len(), 5, "in_handler once per SIGUSR1");
    for (n, s) in all.iter().enumerate() {
        assert_eq!(retval(s), n as i64 + 1);
    }
}

#[test]
fn timeline_forked_child_gets_its_own_process() {
    let prog = fixture("forker", Variant::Pie);
    let (run, events, _) = trace_timeline("tl_fork", &["-f", "-s", "work"], &prog, &[]);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        ("child=7\n", 0),
        "{}",
        run.stderr
    );
    let instants = of_ph(&events, "i");
    let forks: Vec<&Value> = instants
        .iter()
        .copied()
        .filter(|e| e["cat"] == "process")
        .collect();
    assert_eq!(forks.len(), 1, "{events:?}");
    let (parent, child) = (
        forks[0]["pid"].as_i64().unwrap(),
        forks[0]["args"]["child"].as_i64().unwrap(),
    );
    assert_eq!(
        (forks[0]["name"].as_str(), forks[0]["s"].as_str()),
        (Some("fork"), Some("p"))
    );
    let all = slices(&events);
    let values =
        |pid: i64| -> Vec<i64> { all.iter().filter(|s| s.pid == pid).map(retval).collect() };
    assert_eq!(values(parent), [3, 5]);
    assert_eq!(values(child), [21, 23, 25]);
    assert!(all.iter().all(|s| s.tid == s.pid), "{all:?}");
    let processes = names(&events, "process_name");
    assert_eq!(
        processes,
        [(parent, "forker".into()), (child, "forker".into())]
    );
    // The parent hears of its child's end.
    let signals: Vec<(i64, &str)> = instants
        .iter()
        .filter(|e| e["cat"] == "signal")
        .map(|e| (e["tid"].as_i64().unwrap(), e["name"].as_str().unwrap()))
        .collect();
    assert_eq!(signals, [(parent, "SIGCHLD")]);
}

#[test]
fn timeline_exec_renames_the_process() {
    let prog = fixture("execer", Variant::Pie);
    let count = fixture("count", Variant::Pie);
    let args = [count.to_str().unwrap(), "3"];
    let (run, events, _) = trace_timeline("tl_exec", &["-s", "work"], &prog, &args);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        ("before=207\nsum=9\ntwice=41\n", 0),
        "{}",
        run.stderr
    );
    let execs = of_ph(&events, "i");
    assert_eq!(execs.len(), 1, "{events:?}");
    assert_eq!(
        (execs[0]["name"].as_str(), execs[0]["s"].as_str()),
        (Some("exec"), Some("p"))
    );
    let path = fs::canonicalize(&count).unwrap();
    assert_eq!(execs[0]["args"]["path"], path.to_str().unwrap());
    let values: Vec<i64> = slices(&events).iter().map(retval).collect();
    assert_eq!(values, [207, 1, 3, 5]);
    let pid = execs[0]["pid"].as_i64().unwrap();
    assert_eq!(
        names(&events, "process_name"),
        [(pid, "execer".into()), (pid, "count".into())]
    );
    assert_eq!(
        names(&events, "thread_name"),
        [(pid, "execer".into()), (pid, "count".into())]
    );
}

#[test]
fn timeline_is_valid_json_after_a_detach_on_sigint() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let path = temp_path("tl_sigint.trace.json");
    let args = ["--perfetto", path.to_str().unwrap(), "--json", "-s", "work"];
    let mut rtrace = Spawned::rtrace_attach(&args, spin.pid());
    let is = |kind: &'static str| move |e: &Value| str_field(e, "event") == kind;
    wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
    for _ in 0..3 {
        wait_event(&mut rtrace, Duration::from_secs(30), is("return"));
    }
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, "SIGINT to rtrace --perfetto");
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let jsonl = parse_events(&run.stderr);
    let returns: Vec<i64> = of_kind(&jsonl, "return")
        .iter()
        .map(|e| e["retval"].as_i64().unwrap())
        .collect();
    let events = read_timeline(&path);
    let values: Vec<i64> = slices(&events).iter().map(retval).collect();
    assert!(values.len() >= 3, "{events:?}");
    assert_eq!(values, returns, "one slice per return reported");
    drop(spin);
}

#[test]
fn timeline_is_valid_json_after_an_output_error() {
    // The event stream cannot be written (a full disk): rtrace detaches and
    // exits 1, and the timeline is still closed.
    let prog = fixture("count", Variant::Pie);
    let path = temp_path("tl_output_error.trace.json");
    let args = [
        "--perfetto",
        path.to_str().unwrap(),
        "-o",
        "/dev/full",
        "-s",
        "work",
    ];
    let run = run_rtrace(&args, &prog, &["2000"]);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert_eq!(run.stdout, "sum=4000000\ntwice=41\n", "the program runs on");
    let events = read_timeline(&path);
    let values: Vec<i64> = slices(&events).iter().map(retval).collect();
    let expected: Vec<i64> = (0..values.len() as i64).map(|i| 2 * i + 1).collect();
    assert_eq!(values, expected, "the calls up to the error, in order");
}

#[test]
fn timeline_is_valid_json_when_tracing_never_began() {
    let prog = fixture("count", Variant::Pie);
    let path = temp_path("tl_never.trace.json");
    let args = [
        "--perfetto",
        path.to_str().unwrap(),
        "-s",
        "no_such_function",
    ];
    let run = run_rtrace(&args, &prog, &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(read_timeline(&path).is_empty());
}
