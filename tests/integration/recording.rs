//! Record now, read later: `rtrace record` writes the calls into a file,
//! `rtrace replay` renders them as the live run would have, `rtrace report`
//! prints the `-c` table. Each round trip runs the program twice with
//! address space randomisation off (`setarch -R`), once traced live and once
//! recorded, so that both runs see the same addresses; what differs between
//! two runs (times, process ids) is set aside before the comparison.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::events::temp_path;
use crate::fixtures::{fixture, rtrace_bin, run_command, Run, Variant, TIMEOUT};

/// `rtrace ARGS` under `setarch -R`.
fn norandom(args: &[&str]) -> Run {
    let mut cmd = Command::new("setarch");
    cmd.arg("-R").arg(rtrace_bin()).args(args);
    run_command(cmd, TIMEOUT)
}

/// `rtrace ARGS` as it is.
fn rtrace(args: &[&str]) -> Run {
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(args);
    run_command(cmd, TIMEOUT)
}

/// `rtrace record -o DATA -s SPEC -- PROG ARGS`, run to its end: status 0.
fn record(data: &Path, spec: &str, prog: &Path, args: &[&str]) -> Run {
    let mut a = vec!["record", "-o", data.to_str().unwrap(), "-s", spec, "--"];
    a.push(prog.to_str().unwrap());
    a.extend(args);
    let run = rtrace(&a);
    assert_eq!(run.code(), 0, "{a:?}\n{}", run.stderr);
    run
}

/// Text output with its process ids numbered in order of first appearance
/// (`[pid 123]`, and the same numbers elsewhere: `fork: child 123`) and its
/// durations left out.
fn normalize_text(text: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for l in text.lines() {
        if let Some((pid, _)) = l.strip_prefix("[pid ").and_then(|r| r.split_once(']')) {
            if !ids.iter().any(|p| p == pid) {
                ids.push(pid.to_string());
            }
        }
    }
    // An entry shown alone while it waited for its return (`work(x=1)
    // ...`), then its return (`... work resumed = 3`), is one line when the
    // return comes soon enough: a live run's timing decides, a replay has
    // none. The pair is made the one line.
    let mut lines: Vec<String> = Vec::new();
    let mut held: HashMap<String, usize> = HashMap::new();
    for l in text.lines() {
        let (who, rest) = match l.split_once("] ") {
            Some((pid, rest)) if l.starts_with("[pid ") => (format!("{pid}]"), rest),
            _ => (String::new(), l),
        };
        if let Some(done) = rest.strip_prefix("... ") {
            if let (Some(&i), Some((_, after))) = (held.get(&who), done.split_once(" resumed")) {
                let entry = lines[i].trim_end_matches(" ...").to_string();
                lines[i] = format!("{entry}{after}");
                held.remove(&who);
                continue;
            }
        }
        if rest.ends_with(" ...") && rest.contains('(') {
            held.insert(who, lines.len());
        }
        lines.push(l.to_string());
    }
    lines
        .iter()
        .map(|l| {
            let mut line = l.to_string();
            // ` <0.000012>` at the end.
            if let Some((call, time)) = line.rsplit_once(" <") {
                if time.ends_with('>') && time[..time.len() - 1].parse::<f64>().is_ok() {
                    line = call.to_string();
                }
            }
            line.split(' ')
                .map(|w| {
                    let digits = w.trim_end_matches([']', ',', ')']);
                    match ids.iter().position(|p| p == digits) {
                        Some(i) => w.replacen(digits, &format!("P{i}"), 1),
                        None => w.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// JSON Lines with the times left out and process and thread ids numbered
/// in order of first appearance.
fn normalize_json(text: &str) -> Vec<Value> {
    let mut ids: HashMap<u64, usize> = HashMap::new();
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let o = v.as_object_mut().expect("an object");
            for k in ["time_ns", "duration_ns", "entered_ns", "realtime_ns"] {
                o.remove(k);
            }
            for k in ["pid", "tid", "child"] {
                if let Some(p) = o.get(k).and_then(Value::as_u64) {
                    let n = ids.len();
                    let id = *ids.entry(p).or_insert(n);
                    o.insert(k.to_string(), Value::from(format!("P{id}")));
                }
            }
            v
        })
        .collect()
}

/// Runs `prog ARGS` traced live (`rtrace RENDER -o FILE SPECS`) and
/// recorded (`rtrace record -o FILE SPECS`), replays the recording with
/// `RENDER`, and returns (live, replayed) output.
fn round_trip(
    name: &str,
    render: &[&str],
    specs: &[&str],
    prog: &Path,
    args: &[&str],
) -> (String, String) {
    round_trip_keeping(name, render, &[], specs, prog, args)
}

/// [`round_trip`], recording with `keep` too (`--stack`).
fn round_trip_keeping(
    name: &str,
    render: &[&str],
    keep: &[&str],
    specs: &[&str],
    prog: &Path,
    args: &[&str],
) -> (String, String) {
    let live = temp_path(&format!("rec_{name}_live"));
    let data = temp_path(&format!("rec_{name}.data"));
    let replayed = temp_path(&format!("rec_{name}_replayed"));
    let (live_s, data_s, replayed_s) = (
        live.to_str().unwrap(),
        data.to_str().unwrap(),
        replayed.to_str().unwrap(),
    );
    let untraced = {
        let mut cmd = Command::new("setarch");
        cmd.arg("-R").arg(prog).args(args);
        run_command(cmd, TIMEOUT)
    };
    let mut a = vec!["-o", live_s];
    a.extend(render);
    a.extend(specs);
    a.push("--");
    a.push(prog.to_str().unwrap());
    a.extend(args);
    let run = norandom(&a);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        (untraced.stdout.as_str(), untraced.code()),
        "{name}, live\n{}",
        run.stderr
    );
    let mut a = vec!["record", "-o", data_s];
    a.extend(keep);
    a.extend(specs);
    a.push("--");
    a.push(prog.to_str().unwrap());
    a.extend(args);
    let run = norandom(&a);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        (untraced.stdout.as_str(), untraced.code()),
        "{name}, recorded\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("rtrace: recorded ")),
        "{}",
        run.stderr
    );
    let mut a = vec!["replay", data_s, "-o", replayed_s];
    a.extend(render);
    let run = rtrace(&a);
    assert_eq!(run.code(), 0, "{name}, replay\n{}", run.stderr);
    (
        std::fs::read_to_string(&live).unwrap(),
        std::fs::read_to_string(&replayed).unwrap(),
    )
}

/// Text and JSON, replayed, are what the live run printed: strings and
/// buffers (fast sites, and `fwrite`/`fread`, which stop), typed DWARF
/// arguments and values.
#[test]
fn a_replay_prints_what_the_live_run_printed() {
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "buffers",
            &["-s", "libc:write,libc:read,libc:fwrite,libc:fread,libc:memcpy"],
            "buffers",
        ),
        (
            "typed",
            &["-s", "narrow,wide,wide_max,negate,measure,upper,paint,name_of,flip,move,area,mixed,eight,nothing"],
            "typed",
        ),
        ("recurse", &["-s", "fact"], "recurse"),
    ];
    for (name, specs, fixture_name) in cases {
        let prog = fixture(fixture_name, Variant::Pie);
        let (live, replayed) = round_trip(name, &[], specs, &prog, &[]);
        let (live, replayed) = (normalize_text(&live), normalize_text(&replayed));
        assert!(live.len() > 3, "{name}: {live:?}");
        assert_eq!(replayed, live, "{name}: text");
        let (live, replayed) = round_trip(&format!("{name}_json"), &["--json"], specs, &prog, &[]);
        let (live, replayed) = (normalize_json(&live), normalize_json(&replayed));
        assert_eq!(replayed, live, "{name}: JSON");
        let (live, replayed) = round_trip(&format!("{name}_tree"), &["--tree"], specs, &prog, &[]);
        assert_eq!(
            normalize_text(&replayed),
            normalize_text(&live),
            "{name}: --tree"
        );
    }
}

/// Stacks kept by `rtrace record --stack` are replayed: each hit's stack
/// under its line (text and JSON, as the live `--stack` run printed them),
/// the folded stacks of `--folded` as the live run counted them, and a
/// flame graph. A recording without stacks is said to hold none.
#[test]
fn recorded_stacks_are_replayed() {
    let prog = fixture("recurse", Variant::Pie);
    let specs = ["-s", "fact"];
    let (live, replayed) =
        round_trip_keeping("stack", &["--stack"], &["--stack"], &specs, &prog, &[]);
    let (live, replayed) = (normalize_text(&live), normalize_text(&replayed));
    assert!(
        live.iter().filter(|l| l.contains(" main+0x")).count() >= 6,
        "{live:?}"
    );
    assert_eq!(replayed, live, "--stack, text");
    let (live, replayed) = round_trip_keeping(
        "stack_json",
        &["--stack", "--json"],
        &["--stack"],
        &specs,
        &prog,
        &[],
    );
    assert_eq!(
        normalize_json(&replayed),
        normalize_json(&live),
        "--stack, JSON"
    );

    let data = temp_path("rec_stack_folded.data");
    let live_folded = temp_path("rec_stack_live.folded");
    let replayed_folded = temp_path("rec_stack_replayed.folded");
    let svg = temp_path("rec_stack_replayed.svg");
    // `rtrace FIRST… -s fact -- recurse`, to its end.
    let traced = |first: &[&str]| {
        let mut a = first.to_vec();
        a.extend(["-s", "fact", "--", prog.to_str().unwrap()]);
        let run = rtrace(&a);
        assert_eq!(run.code(), 0, "{a:?}\n{}", run.stderr);
    };
    traced(&["--folded", live_folded.to_str().unwrap()]);
    traced(&["record", "--stack", "-o", data.to_str().unwrap()]);
    let run = rtrace(&[
        "replay",
        data.to_str().unwrap(),
        "--folded",
        replayed_folded.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let live = std::fs::read_to_string(&live_folded).unwrap();
    let replayed = std::fs::read_to_string(&replayed_folded).unwrap();
    assert_eq!(live.lines().count(), 6, "{live}");
    assert!(live.contains("main;fact;fact;fact;fact;fact 1\n"), "{live}");
    assert_eq!(replayed, live, "--folded");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("fact"), "{svg}");

    // Without stacks: said, status 1.
    let bare = temp_path("rec_stack_bare.data");
    record(&bare, "fact", &prog, &[]);
    let run = rtrace(&["replay", bare.to_str().unwrap(), "--folded", "/dev/null"]);
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.stderr,
        format!(
            "rtrace: {} holds no stacks: record them with `rtrace record --stack` \
             (see `rtrace --help` for --stack)\n",
            bare.display()
        )
    );
}

/// A timeline drawn from a recording (`rtrace replay --perfetto`) is the
/// live run's: the same slices, instants and names (processes and threads,
/// the program an exec brings), times and ids set aside. Threads, and an
/// exec.
#[test]
fn a_timeline_drawn_from_a_recording_is_the_live_one() {
    let threads = fixture("threads", Variant::Pie);
    let execer = fixture("execer", Variant::Pie);
    let count = fixture("count", Variant::Pie);
    let cases: [(&str, &Path, Vec<&str>); 2] = [
        ("threads", &threads, vec![]),
        ("exec", &execer, vec![count.to_str().unwrap(), "3"]),
    ];
    for (name, prog, args) in cases {
        let live = temp_path(&format!("rec_tl_{name}_live.json"));
        let replayed = temp_path(&format!("rec_tl_{name}_replayed.json"));
        let data = temp_path(&format!("rec_tl_{name}.data"));
        let mut a = vec![
            "--perfetto",
            live.to_str().unwrap(),
            "-o",
            "/dev/null",
            "-s",
            "work",
            "--",
        ];
        a.push(prog.to_str().unwrap());
        a.extend(&args);
        let run = norandom(&a);
        assert_eq!(run.code(), 0, "{name}, live\n{}", run.stderr);
        let mut a = vec!["record", "-o", data.to_str().unwrap(), "-s", "work", "--"];
        a.push(prog.to_str().unwrap());
        a.extend(&args);
        let run = norandom(&a);
        assert_eq!(run.code(), 0, "{name}, recorded\n{}", run.stderr);
        let run = rtrace(&[
            "replay",
            data.to_str().unwrap(),
            "-o",
            "/dev/null",
            "--perfetto",
            replayed.to_str().unwrap(),
        ]);
        assert_eq!(run.code(), 0, "{name}, replay\n{}", run.stderr);
        let (live, replayed) = (timeline_events(&live), timeline_events(&replayed));
        assert!(
            live.iter().any(|e| e.contains("thread_name")) && live.len() > 4,
            "{name}: {live:?}"
        );
        assert_eq!(replayed, live, "{name}");
    }
}

/// The events of a `--perfetto` file, each without its times and ids, in
/// a sorted list (threads interleave differently in two runs).
fn timeline_events(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut events: Vec<String> = v["traceEvents"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"))
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Some(o) = e.as_object_mut() {
                for key in ["ts", "dur", "pid", "tid", "id"] {
                    o.remove(key);
                }
            }
            e.to_string()
        })
        .collect();
    events.sort();
    events
}

/// Threads, fork and exec: every call of each process and thread, and the
/// lifecycle events, are replayed (the threads' lines in any order).
#[test]
fn threads_forks_and_execs_are_replayed() {
    // (JSON: a call's entry and return are lines of their own, however the
    // threads' lines interleave; the threads, numbered as they come, are
    // left out.)
    let threads = fixture("threads", Variant::Pie);
    let (live, replayed) = round_trip(
        "threads",
        &["--json"],
        &["-s", "work"],
        &threads,
        &["4", "50"],
    );
    let events = |text: &str| {
        let mut v: Vec<String> = normalize_json(text)
            .into_iter()
            .map(|mut e| {
                let o = e.as_object_mut().unwrap();
                o.remove("tid");
                o.remove("pid");
                e.to_string()
            })
            .collect();
        v.sort();
        v
    };
    let (live, replayed) = (events(&live), events(&replayed));
    let entries = replayed
        .iter()
        .filter(|e| e.contains(r#""event":"entry""#))
        .count();
    assert_eq!(entries, 200, "{replayed:?}");
    assert_eq!(replayed, live, "threads");

    let forker = fixture("forker", Variant::Pie);
    let (live, replayed) = round_trip("forker", &["--json"], &["-f", "-s", "work"], &forker, &[]);
    let (live, replayed) = (events(&live), events(&replayed));
    assert!(
        live.iter().any(|e| e.contains(r#""event":"fork""#)),
        "{live:?}"
    );
    assert_eq!(replayed, live, "forker");

    // A followed child returns from the calls its parent made before the
    // fork (their entries are its parent's records): shown as live.
    let forktail = fixture("forktail", Variant::Pie);
    let (live, replayed) = round_trip(
        "forktail",
        &["--json"],
        &["-f", "-s", "outer", "-s", "forkret"],
        &forktail,
        &["3"],
    );
    let (live, replayed) = (events(&live), events(&replayed));
    let returns = |v: &[String]| {
        v.iter()
            .filter(|e| e.contains(r#""event":"return""#))
            .count()
    };
    assert_eq!(returns(&live), 12, "{live:?}");
    assert_eq!(replayed, live, "forktail");

    let execer = fixture("execer", Variant::Pie);
    let target = fixture("forker", Variant::Pie);
    let (live, replayed) = round_trip(
        "execer",
        &["--json"],
        &["-s", "work"],
        &execer,
        &[target.to_str().unwrap()],
    );
    let (live, replayed) = (events(&live), events(&replayed));
    assert!(
        live.iter().any(|e| e.contains(r#""event":"exec""#)),
        "{live:?}"
    );
    assert_eq!(replayed, live, "execer");

    // The new image's `work` at the address the old one's had (both
    // programs built alike, without address randomisation): its calls are
    // the new program's, as live.
    let (live, replayed) = round_trip(
        "execer_same",
        &["--json"],
        &["-s", "work"],
        &execer,
        &[threads.to_str().unwrap(), "2", "3"],
    );
    let (live, replayed) = (events(&live), events(&replayed));
    let module = format!(r#""module":"{}""#, threads.display());
    assert_eq!(
        live.iter().filter(|e| e.contains(&module)).count(),
        12,
        "{live:?}"
    );
    assert_eq!(replayed, live, "execer into threads");
}

/// `rtrace report` prints the `-c` table of the recording: the calls and
/// errors of the live `-c` run of the same program.
#[test]
fn a_report_is_the_c_table() {
    let prog = fixture("threads", Variant::Pie);
    let data = temp_path("rec_report.data");
    let run = record(&data, "work", &prog, &["4", "250"]);
    assert!(
        run.stderr.lines().any(|l| l.starts_with(&format!(
            "rtrace: recorded 1000 entries and 1000 returns in {}",
            data.display()
        ))),
        "{}",
        run.stderr
    );
    let report = rtrace(&["report", data.to_str().unwrap()]);
    assert_eq!(report.code(), 0, "{}", report.stderr);
    assert_eq!(report.stderr, "", "a report says nothing else");
    let row = report
        .stdout
        .lines()
        .find(|l| l.ends_with("work [work]"))
        .unwrap_or_else(|| panic!("{}", report.stdout));
    let cols: Vec<&str> = row.split_whitespace().collect();
    // calls, …, missed, errors.
    assert_eq!((cols[0], cols[5], cols[6]), ("1000", "0", "0"), "{row}");
    // Filters: one thread's calls, by --tid.
    let replay = rtrace(&["replay", data.to_str().unwrap()]);
    let tid: String = replay
        .stdout
        .lines()
        .find(|l| l.contains("work("))
        .and_then(|l| l.strip_prefix("[pid "))
        .and_then(|l| l.split_once(']'))
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| panic!("{}", replay.stdout));
    // By probe (or function name), and by time: the calls of the second
    // half of the run, from the time of the middle entry on.
    let by_name = rtrace(&["replay", data.to_str().unwrap(), "-s", "work"]);
    assert_eq!(by_name.stdout, replay.stdout);
    let none = rtrace(&["replay", data.to_str().unwrap(), "-s", "other"]);
    assert_eq!(
        none.stdout.lines().filter(|l| l.contains("work(")).count(),
        0
    );
    let json = rtrace(&["replay", "--json", data.to_str().unwrap()]);
    let times: Vec<u64> = json
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "entry")
        .filter_map(|e| e["time_ns"].as_u64())
        .collect();
    assert_eq!(times.len(), 1000);
    let mut sorted = times.clone();
    sorted.sort_unstable();
    let middle = sorted[500];
    let from = format!("{:.9}", middle as f64 / 1e9);
    let later = rtrace(&["replay", "--json", data.to_str().unwrap(), "--from", &from]);
    let kept = later
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "entry")
        .count();
    let want = times.iter().filter(|&&t| t >= middle).count();
    // (Seconds with 9 decimals can round a nanosecond either way.)
    assert!(
        kept.abs_diff(want) <= 1 && kept >= 499,
        "{kept} kept, {want} at or after"
    );
    let one = rtrace(&["replay", data.to_str().unwrap(), "--tid", &tid]);
    let calls = one.stdout.lines().filter(|l| l.contains("work(")).count();
    assert_eq!(calls, 250, "{}", one.stdout);
    assert!(one
        .stdout
        .lines()
        .filter(|l| l.contains("work("))
        .all(|l| l.starts_with(&format!("[pid {tid}]"))));
}

/// A cut recording (rtrace killed while it wrote) is read up to its last
/// whole record, and says so; a damaged, foreign or missing file is one
/// line and status 1.
#[test]
fn cut_damaged_and_foreign_files() {
    let prog = fixture("recurse", Variant::Pie);
    let data = temp_path("rec_cut.data");
    let data_s = data.to_str().unwrap();
    record(&data, "fact", &prog, &[]);
    let bytes = std::fs::read(&data).unwrap();
    let whole = rtrace(&["replay", data_s]);
    let whole_calls = whole.stdout.lines().count();
    assert!(whole_calls > 5, "{}", whole.stdout);
    let cut = temp_path("rec_cut_part.data");
    let cut_s = cut.to_str().unwrap();
    // (Cut in its end, the last record: every call is still there.)
    for at in [bytes.len() - 1, bytes.len() * 2 / 3, bytes.len() / 2] {
        std::fs::write(&cut, &bytes[..at]).unwrap();
        let run = rtrace(&["replay", cut_s]);
        assert_eq!(run.code(), 0, "cut at {at}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim_end().lines().last().unwrap_or_default(),
            format!(
                "rtrace: warning: {cut_s} ends inside a record (the recording was cut): what came before it is shown"
            ),
            "cut at {at}"
        );
        // What it shows is the start of the whole replay.
        let shown: Vec<&str> = run.stdout.lines().collect();
        let all: Vec<&str> = whole.stdout.lines().collect();
        match at == bytes.len() - 1 {
            true => assert_eq!(shown, all, "cut at {at}"),
            false => assert!(shown.len() < all.len(), "cut at {at}"),
        }
        assert_eq!(
            shown[..shown.len().saturating_sub(1)],
            all[..shown.len().saturating_sub(1)]
        );
    }
    let bad = |bytes: &[u8], name: &str| {
        let p = temp_path(name);
        std::fs::write(&p, bytes).unwrap();
        let run = rtrace(&["replay", p.to_str().unwrap()]);
        (run.code(), run.stdout, run.stderr, p)
    };
    // Foreign: a program.
    let elf = std::fs::read(&prog).unwrap();
    let (code, out, err, p) = bad(&elf, "rec_foreign.data");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        format!(
            "rtrace: {}: cannot be replayed: it is not an rtrace recording (its first bytes are not rtrace's) \
             (give a file `rtrace record` wrote; a cut one is read up to its last whole record)\n",
            p.display()
        )
    );
    // A damaged header, and a record of no kind rtrace writes.
    let mut header = bytes.clone();
    header[18] ^= 0xff;
    let (code, _, err, _) = bad(&header, "rec_header.data");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("rtrace: ") && err.contains("cannot be replayed: it is damaged"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // A newer format.
    let mut newer = bytes.clone();
    newer[8] = 9;
    let (code, _, err, _) = bad(&newer, "rec_newer.data");
    assert_eq!(code, 1);
    assert!(err.contains("newer rtrace (format version 9"), "{err}");
    // No such file: one line, what to do.
    let run = rtrace(&["replay", "/nonexistent/rtrace.data"]);
    assert_eq!(
        (run.code(), run.stderr.as_str()),
        (
            1,
            "rtrace: /nonexistent/rtrace.data: cannot be replayed: No such file or directory \
             (os error 2) (give a file `rtrace record` wrote; a cut one is read up to its last \
             whole record)\n"
        )
    );
}

/// The frames of a recording (`bytes`), each its kind and payload, after
/// its twelve bytes of start.
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 12;
    while at < bytes.len() {
        let kind = bytes[at];
        at += 1;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = bytes[at];
            at += 1;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        out.push((kind, bytes[at..at + len].to_vec()));
        at += len;
    }
    out
}

/// A recording of `frames` after the start `start` (twelve bytes).
fn unframe(start: &[u8], frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = start[..12].to_vec();
    for (kind, payload) in frames {
        out.push(*kind);
        let mut len = payload.len();
        while len >= 0x80 {
            out.push(len as u8 | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(payload);
    }
    out
}

/// A recording ends with its end, the entries and returns it holds: a
/// file without it was cut at a record's end (rtrace killed between two
/// writes, the usual way), and its replay says so, showing every call it
/// holds. A file of the first version, which had no end, is not said to
/// be cut.
#[test]
fn a_recording_without_its_end_is_said_to_be_cut() {
    let prog = fixture("recurse", Variant::Pie);
    let data = temp_path("rec_unfinished.data");
    record(&data, "fact", &prog, &[]);
    let bytes = std::fs::read(&data).unwrap();
    let whole = rtrace(&["replay", data.to_str().unwrap()]);
    assert_eq!(whole.code(), 0, "{}", whole.stderr);
    assert!(!whole.stderr.contains("warning"), "{}", whole.stderr);
    let mut all = frames(&bytes);
    let (kind, end) = all.pop().unwrap();
    let calls = whole.stdout.lines().filter(|l| l.contains("fact(")).count();
    assert_eq!(
        (kind, String::from_utf8(end).unwrap()),
        (9, format!("{{\"entries\":{calls},\"returns\":{calls}}}"))
    );
    let cut = temp_path("rec_unfinished_cut.data");
    let cut_s = cut.to_str().unwrap();
    std::fs::write(&cut, unframe(&bytes, &all)).unwrap();
    let run = rtrace(&["replay", cut_s]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        run.stderr.lines().last().unwrap_or_default(),
        format!(
            "rtrace: warning: {cut_s} ends before its recording did (rtrace was killed, or the \
             file was cut): what came before is shown"
        )
    );
    assert_eq!(run.stdout, whole.stdout);
    // The first version of the layout.
    let mut first = unframe(&bytes, &all);
    first[8] = 1;
    std::fs::write(&cut, first).unwrap();
    let run = rtrace(&["replay", cut_s]);
    assert_eq!(
        (run.code(), run.stdout.as_str()),
        (0, whole.stdout.as_str())
    );
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    // A record after the end is damage.
    let mut after = frames(&bytes);
    after.push(after[after.len() - 2].clone());
    std::fs::write(&cut, unframe(&bytes, &after)).unwrap();
    let run = rtrace(&["replay", cut_s]);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("it is damaged: a record after the recording's end at byte"),
        "{}",
        run.stderr
    );
}

/// Input that is no recording is refused at its first bytes, not read to
/// its end first: `/dev/zero` has none.
#[test]
fn an_endless_input_is_refused_at_its_first_bytes() {
    for path in ["/dev/zero", "/dev/urandom"] {
        let run = rtrace(&["replay", path]);
        assert_eq!(
            (run.code(), run.stdout.as_str(), run.stderr.as_str()),
            (
                1,
                "",
                format!(
                    "rtrace: {path}: cannot be replayed: it is not an rtrace recording (its first \
                     bytes are not rtrace's) (give a file `rtrace record` wrote; a cut one is read \
                     up to its last whole record)\n"
                )
                .as_str()
            )
        );
    }
}

/// A recording takes the place of the one at its path only once tracing
/// begins: a `record` that fails before (a probe that names nothing, a
/// program that cannot be run, a process that is not there) says why in
/// one line, says nothing of a recording, and leaves the last one as it
/// was, with nothing beside it. The header names the command as text.
#[test]
fn a_record_that_never_began_leaves_the_last_recording() {
    let prog = fixture("recurse", Variant::Pie);
    let prog_s = prog.to_str().unwrap();
    let data = temp_path("rec_unborn.data");
    let data_s = data.to_str().unwrap();
    record(&data, "fact", &prog, &[]);
    let bytes = std::fs::read(&data).unwrap();
    let header = rtrace::record::header(&bytes).expect("a header");
    assert_eq!(header["command"], serde_json::json!([prog_s]));
    for args in [
        vec![
            "record",
            "-o",
            data_s,
            "-s",
            "no_such_function",
            "--",
            prog_s,
        ],
        vec![
            "record",
            "-o",
            data_s,
            "-s",
            "fact",
            "--",
            "/nonexistent/program",
        ],
        vec!["record", "-o", data_s, "-s", "fact", "-p", "999999999"],
    ] {
        let run = rtrace(&args);
        assert_eq!(run.code(), 1, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("recorded"), "{}", run.stderr);
        assert!(std::fs::read(&data).unwrap() == bytes, "{args:?}");
        let dir = data.parent().unwrap();
        let name = data.file_name().unwrap().to_str().unwrap();
        let beside: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&format!(".{name}.")))
            .collect();
        assert!(beside.is_empty(), "{args:?}: {beside:?}");
    }
}

/// A recording replaces only a file of its own at its path: written
/// through a symbolic link (the link stays, its target holds the
/// recording), refused at once where the path cannot be a file (ending in
/// `/`), with the mode of the file it replaces.
#[test]
fn a_recording_replaces_only_a_file_of_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let prog = fixture("recurse", Variant::Pie);
    let target = temp_path("rec_own_target.data");
    let link = temp_path("rec_own_link.data");
    let _ = std::fs::remove_file(&link);
    std::fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    record(&link, "fact", &prog, &[]);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let run = rtrace(&["replay", target.to_str().unwrap()]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(run.stdout.contains("fact("), "{}", run.stdout);
    // The mode of the file replaced.
    let own = temp_path("rec_own_mode.data");
    std::fs::write(&own, b"old").unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o600)).unwrap();
    record(&own, "fact", &prog, &[]);
    let mode = std::fs::metadata(&own).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A path that names a directory-to-be.
    let dir = temp_path("rec_own_no_dir");
    let _ = std::fs::remove_dir_all(&dir);
    let slash = format!("{}/", dir.display());
    let run = rtrace(&[
        "record",
        "-o",
        &slash,
        "-s",
        "fact",
        "--",
        prog.to_str().unwrap(),
    ]);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert_eq!(run.stdout, "", "the program ran: {}", run.stderr);
    assert!(
        run.stderr.starts_with("rtrace: cannot create"),
        "{}",
        run.stderr
    );
}

/// `--from` and `--to` past what a duration holds (some 584 years) mean
/// after the end of any recording; a `-s` that names nothing recorded is
/// said; a module path that names a FIFO (a hand-made file) is not waited
/// on: it is said to have changed.
#[test]
fn far_times_and_odd_module_paths_are_replayed() {
    let prog = fixture("recurse", Variant::Pie);
    let data = temp_path("rec_far.data");
    let data_s = data.to_str().unwrap();
    record(&data, "fact", &prog, &[]);
    let whole = rtrace(&["replay", data_s]);
    let run = rtrace(&["replay", "--from", "1e20", data_s]);
    assert_eq!((run.code(), run.stdout.as_str()), (0, ""), "{}", run.stderr);
    let run = rtrace(&["replay", "--to", "18446744073709551616", data_s]);
    assert_eq!(
        (run.code(), &run.stdout),
        (0, &whole.stdout),
        "{}",
        run.stderr
    );
    let run = rtrace(&["report", "--from", "2e19", data_s]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    // A -s that names nothing recorded is said; one that names is not.
    let run = rtrace(&["replay", "-s", "fac*", data_s]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(!run.stdout.contains("fact("), "{}", run.stdout);
    assert_eq!(
        run.stderr.lines().last().unwrap_or_default(),
        format!(
            "rtrace: warning: -s fac* names no probe or function of {data_s} (give a probe \
             spec as recorded, or a function's name: `rtrace report` lists them)"
        )
    );
    let run = rtrace(&["replay", "-s", "fact", data_s]);
    assert_eq!(
        (run.code(), &run.stdout),
        (0, &whole.stdout),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    // The program's path in the modules made a FIFO's.
    let fifo = temp_path("rec_far.fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let bytes = std::fs::read(&data).unwrap();
    let mut all = frames(&bytes);
    let (_, modules) = all.iter_mut().find(|(k, _)| *k == 3).expect("modules");
    let text = String::from_utf8(modules.clone()).unwrap();
    let json_path = |p: &Path| serde_json::to_string(p.to_str().unwrap()).unwrap();
    assert!(text.contains(&json_path(&prog)), "{text}");
    *modules = text
        .replace(&json_path(&prog), &json_path(&fifo))
        .into_bytes();
    let odd = temp_path("rec_far_fifo.data");
    std::fs::write(&odd, unframe(&bytes, &all)).unwrap();
    let run = rtrace(&["replay", odd.to_str().unwrap()]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "rtrace: warning: {} changed since it was recorded",
            fifo.display()
        )),
        "{}",
        run.stderr
    );
}

/// A reader that has seen enough (`| head -1`) ends a replay quietly, status
/// 0, long before its end, as it ends `cat`.
#[test]
fn a_replay_into_a_pipe_closed_early_ends_quietly() {
    let prog = fixture("hot", Variant::O2);
    let data = temp_path("rec_head.data");
    let data_s = data.to_str().unwrap();
    record(&data, "work", &prog, &["1", "200000"]);
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!(
        "{} replay --json {data_s} | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
        rtrace_bin().display()
    ));
    let run = run_command(cmd, TIMEOUT);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].starts_with("{\"event\":\"attach\""),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "status=0", "{}", run.stderr);
    assert!(!run.stderr.contains("Broken pipe"), "{}", run.stderr);
    let _ = std::fs::remove_file(&data);
}

/// A replay after the traced program was rebuilt says so.
#[test]
fn a_rebuilt_program_is_said() {
    let built = fixture("recurse", Variant::Pie);
    let prog = temp_path("rec_rebuilt_prog");
    std::fs::copy(&built, &prog).unwrap();
    let data = temp_path("rec_rebuilt.data");
    record(&data, "fact", &prog, &[]);
    let same = rtrace(&["replay", data.to_str().unwrap()]);
    assert_eq!(
        (same.code(), same.stderr.contains("changed")),
        (0, false),
        "{}",
        same.stderr
    );
    // Another build in its place (another program: another build-id).
    std::fs::copy(fixture("threads", Variant::Pie), &prog).unwrap();
    let run = rtrace(&["replay", data.to_str().unwrap()]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.lines().any(|l| l
            == format!(
                "rtrace: warning: {} changed since it was recorded (its build-id differs, or it is gone): \
                 its calls are shown without what its symbols and debug information say",
                prog.display()
            )),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stdout.lines().filter(|l| l.contains("fact(")).count(),
        same.stdout.lines().filter(|l| l.contains("fact(")).count()
    );
}

/// `rtrace record` takes the tracing options only: one line, status 2.
#[test]
fn record_refuses_what_renders() {
    let run = rtrace(&["record", "--json", "-s", "work", "--", "/bin/true"]);
    assert_eq!(run.code(), 2);
    assert_eq!(
        run.stderr,
        "rtrace: rtrace record takes no --json: it writes the calls as they come; \
         `rtrace replay FILE` and `rtrace report FILE` render them (see 'rtrace --help')\n"
    );
    for what in ["--json", "--stack", "--perfetto"] {
        let mut a = vec!["report", "x.data", what];
        if what == "--perfetto" {
            a.push("t.json");
        }
        let run = rtrace(&a);
        assert_eq!(run.code(), 2, "{what}");
        assert!(
            run.stderr
                .contains(&format!("{what} is for `rtrace replay`")),
            "{}",
            run.stderr
        );
    }
    let run = rtrace(&["report", "x.data", "--json"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr
            .starts_with("rtrace: rtrace report prints the -c table"),
        "{}",
        run.stderr
    );
}

/// The reader never panics on a damaged file: bytes of a real recording
/// changed at random (a fixed seed; 3000 files), each read to its end or
/// refused.
#[test]
fn damaged_recordings_never_panic_the_reader() {
    let prog = fixture("buffers", Variant::Pie);
    let data = temp_path("rec_fuzz.data");
    record(&data, "libc:write,libc:read,libc:fwrite", &prog, &[]);
    let bytes = std::fs::read(&data).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut read, mut refused) = (0, 0);
    for round in 0..3000 {
        let mut b = bytes.clone();
        let changes = 1 + next() % 8;
        for _ in 0..changes {
            let at = (next() % b.len() as u64) as usize;
            match next() % 3 {
                0 => b[at] ^= 1 << (next() % 8),
                1 => b[at] = next() as u8,
                _ => b.truncate(at.max(1)),
            }
            if b.is_empty() {
                break;
            }
        }
        let got = std::panic::catch_unwind(|| {
            let mut sink = rtrace::output::Printer::with_diag(
                Box::new(std::io::sink()),
                Box::new(std::io::sink()),
                rtrace::output::PrinterOptions {
                    format: rtrace::output::Format::Json,
                    color: false,
                    summary: false,
                    hist: false,
                    order: rtrace::output::SummaryOrder::Time,
                    timestamps: Default::default(),
                    tree: false,
                    string_limit: 32,
                    flush_interval: None,
                    stack_depth: None,
                    prototypes: Default::default(),
                },
            );
            rtrace::record::replay(
                Path::new("fuzzed"),
                &b,
                &mut sink,
                &rtrace::record::Filter::default(),
                &rtrace::record::Names::default(),
            )
            .map(|_| ())
        });
        match got {
            Ok(Ok(())) => read += 1,
            Ok(Err(e)) => {
                refused += 1;
                assert!(
                    e.to_string().starts_with("fuzzed: cannot be replayed: "),
                    "{e}"
                );
            }
            Err(_) => panic!("round {round}: the reader panicked"),
        }
    }
    assert!(read > 0 && refused > 0, "{read} read, {refused} refused");
}

/// 8 threads × 125,000 calls of a function that does almost nothing,
/// recorded: the file holds every entry and every return (the recorder's
/// count), and the report counts each call once, none missed.
#[test]
fn a_recording_of_a_million_calls_holds_every_one() {
    let prog = fixture("hot", Variant::O2);
    let data = temp_path("rec_hot.data");
    let data_s = data.to_str().unwrap();
    let run = record(&data, "work", &prog, &["8", "125000"]);
    assert!(
        run.stdout.ends_with("calls=1000000 sum=125000000000\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.lines().any(|l| l.starts_with(&format!(
            "rtrace: recorded 1000000 entries and 1000000 returns in {data_s}"
        ))),
        "{}",
        run.stderr
    );
    let report = rtrace(&["report", data_s]);
    assert_eq!(report.code(), 0, "{}", report.stderr);
    let row = report
        .stdout
        .lines()
        .find(|l| l.ends_with("work [work]"))
        .unwrap_or_else(|| panic!("{}", report.stdout));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cols[0], cols[5]), ("1000000", "0"), "{row}");
    let _ = std::fs::remove_file(&data);
}

/// What a script's run printed on stderr (a live run's output), less
/// rtrace's own lines (the attach, the probes' modes).
fn script_output(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("rtrace: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A script run over a recording prints what it printed over the live run:
/// its maps and histograms from the arguments and return values of 4000
/// calls on four threads; strings the printers captured (`str(arg(0))` of
/// `open`), `comm` as recorded, a predicate on the return value, `printf`.
/// Memory the record does not hold is said, never read from a process.
#[test]
fn a_script_runs_over_a_recording_as_over_the_live_run() {
    let cases: [(&str, &str, &[&str], &str); 3] = [
        (
            "threads",
            "work",
            &["4", "1000"],
            "work { @calls = count(); @args = sum(arg(0)); } \
             work:return { @ret = sum(retval); @h = hist(retval); }",
        ),
        (
            "opener",
            "open",
            &["/etc/hostname"],
            "open { @paths[str(arg(0))] = count(); } \
             open:return /retval < 0/ { printf(\"%s: open failed: %d\\n\", comm, retval); }",
        ),
        // Three probes on one call, each run; the entry's string read at
        // the return.
        (
            "opener",
            "open",
            &["/etc/hostname"],
            "open { @a = count(); } libc:open { @b = count(); } o?en { @c = count(); } \
             open:return { printf(\"%s = %d\\n\", str(arg(0)), retval); }",
        ),
    ];
    for (n, (name, spec, args, script)) in cases.into_iter().enumerate() {
        let prog = fixture(name, Variant::Pie);
        let mut live = vec!["-x", script, "--", prog.to_str().unwrap()];
        live.extend(args);
        let live = rtrace(&live);
        assert_eq!(live.code(), 0, "{name}: {}", live.stderr);
        let data = temp_path(&format!("rec_script_{name}_{n}.data"));
        let data_s = data.to_str().unwrap();
        record(&data, spec, &prog, args);
        let replay = rtrace(&["replay", data_s, "-x", script]);
        assert_eq!(replay.code(), 0, "{name}: {}", replay.stderr);
        assert_eq!(replay.stdout, script_output(&live.stderr), "{name}");
        let _ = std::fs::remove_file(&data);
    }
    // The exact output, once: the sums of 4000 calls, and the failed open.
    let prog = fixture("opener", Variant::Pie);
    let data = temp_path("rec_script_open.data");
    let data_s = data.to_str().unwrap();
    record(&data, "open", &prog, &["/etc/hostname"]);
    let replay = rtrace(&["replay", data_s, "-x", cases[1].3]);
    assert_eq!(
        replay.stdout,
        "opener: open failed: -1\n+++ exited with 0 +++\n\
         @paths[/etc/hostname]: 1\n@paths[/nonexistent/x]: 1\n\n"
    );
    assert_eq!(
        rtrace(&["replay", data_s, "-x", cases[2].3]).stdout,
        "/etc/hostname = 3\n/nonexistent/x = -1\n+++ exited with 0 +++\n\
         @a: 2\n\n@b: 2\n\n@c: 2\n\n"
    );
    // BEGIN, END and the maps when the filters leave the attach out.
    let replay = rtrace(&[
        "replay",
        data_s,
        "--from",
        "0.000001",
        "-x",
        "BEGIN { print(\"begin\"); } open { @n = count(); } END { print(\"end\"); }",
    ]);
    assert_eq!(
        replay.stdout,
        "begin\n+++ exited with 0 +++\nend\n@n: 2\n\n"
    );
    // Memory no record holds is said (the path from its second byte: a
    // record keeps each string it copied by its pointer).
    let replay = rtrace(&["replay", data_s, "-x", "open { print(str(arg(0) + 1)) }"]);
    assert_eq!(replay.code(), 0, "{}", replay.stderr);
    assert!(
        replay.stderr.contains(
            "is not in the record of this hit (a recording keeps what the printers show of a \
             call: its string and buffer arguments)"
        ),
        "{}",
        replay.stderr
    );
    assert!(
        replay
            .stderr
            .contains("rtrace: warning: script line 1, column 1: block open failed 2 times"),
        "{}",
        replay.stderr
    );
    // exit() ends the replay; END runs.
    let replay = rtrace(&[
        "replay",
        data_s,
        "-x",
        "open { printf(\"%s\\n\", str(arg(0))); exit(); } END { print(\"end\"); }",
    ]);
    assert_eq!(replay.stdout, "/etc/hostname\nend\n", "{}", replay.stderr);
    // (Stopped before the recording's end: not said to be cut.)
    assert!(!replay.stderr.contains("ends before"), "{}", replay.stderr);
    // A probe the recording does not have is said.
    let replay = rtrace(&["replay", data_s, "-x", "close { @n = count(); }"]);
    assert_eq!(replay.code(), 0);
    assert!(
        replay.stderr.contains(&format!(
            "rtrace: warning: the script's probe close names no call in {data_s} (a probe is \
             named as it was recorded, or by its function)\n"
        )),
        "{}",
        replay.stderr
    );
    // What a replay cannot run, one line each, status 2.
    let refused: [(&[&str], &str); 4] = [
        (
            &["replay", data_s, "-x", "interval:1s { print(1); }"],
            "rtrace: interval blocks run on a live run's clock, which a replay has not: take \
             them out of the script\n",
        ),
        (
            &["report", data_s, "-x", "open { }"],
            "rtrace: rtrace report prints the -c table: a script (--script, -x) is for `rtrace \
             replay` (see 'rtrace --help')\n",
        ),
        (
            &["replay", data_s, "-x", "open { }", "--perfetto", "t.json"],
            "rtrace: --perfetto is drawn from the whole recording: replay it without the script \
             (see 'rtrace --help')\n",
        ),
        (
            &["record", "-x", "open { }", "-s", "open", "--", "/bin/true"],
            "rtrace: rtrace record takes no script (--script, -x): it writes the calls as they \
             come; `rtrace replay FILE` and `rtrace report FILE` render them (see 'rtrace \
             --help')\n",
        ),
    ];
    for (args, said) in refused {
        let run = rtrace(args);
        assert_eq!((run.code(), run.stderr.as_str()), (2, said), "{args:?}");
    }
    let _ = std::fs::remove_file(&data);
}

/// A program that execs itself (no PIE: its site at the same address, as
/// many modules) has its new image's modules recorded again: libc, mapped
/// elsewhere in each image, names the frames of each image's stacks (where
/// the first image's modules would leave them unknown).
#[test]
fn an_exec_of_the_same_program_records_its_modules_again() {
    let execer = fixture("execer", Variant::NoPie);
    let count = fixture("count", Variant::NoPie);
    let (e, c) = (execer.to_str().unwrap(), count.to_str().unwrap());
    let data = temp_path("rec_reexec.data");
    let data_s = data.to_str().unwrap();
    let recorded = rtrace(&[
        "record", "-o", data_s, "--stack", "-s", "work", "--", e, e, c, "2",
    ]);
    assert_eq!(recorded.code(), 0, "{}", recorded.stderr);
    let replay = rtrace(&["replay", "--stack", data_s]);
    assert_eq!(replay.code(), 0, "{}", replay.stderr);
    let frames: Vec<&str> = replay
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect();
    // work's five frames in each of the four calls: work, main, libc's
    // two, _start.
    assert_eq!(frames.len(), 20, "{}", replay.stdout);
    assert_eq!(
        frames
            .iter()
            .filter(|l| l.contains(" __libc_start_main+0x") && l.contains("libc.so.6"))
            .count(),
        4,
        "{}",
        replay.stdout
    );
    assert!(!replay.stdout.contains("??"), "{}", replay.stdout);
    let _ = std::fs::remove_file(&data);
}
