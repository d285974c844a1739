//! End-to-end tests of the printers: events in, exact bytes out.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::testutil::{function, site, BrokenPipe, SharedBuf, Tracee, PID};
use super::{Format, Printer, PrinterOptions};
use crate::addr::Pid;
use crate::error::Error;
use crate::handler::{Event, ForkKind, Handler, ProbeKind};

fn printer(format: Format, color: bool, summary: bool) -> (Printer, SharedBuf, SharedBuf) {
    let out = SharedBuf::default();
    let diag = SharedBuf::default();
    let p = Printer::with_diag(
        Box::new(out.clone()),
        Box::new(diag.clone()),
        PrinterOptions {
            format,
            color,
            summary,
            hist: false,
            order: Default::default(),
            timestamps: Default::default(),
            tree: false,
            string_limit: super::DEFAULT_STRING_LIMIT,
            flush_interval: None,
            stack_depth: None,
            prototypes: Default::default(),
        },
    );
    (p, out, diag)
}

fn text() -> (Printer, SharedBuf, SharedBuf) {
    printer(Format::Text, false, false)
}

const ARGS: [u64; 6] = [0x29, 0, 0, 0, 0, 0];
const WORK_ARGS: &str = "0x29, 0x0, 0x0, 0x0, 0x0, 0x0";

fn ev(p: &mut Printer, e: Event) {
    p.on_event(&e, Duration::from_micros(500)).unwrap();
}

#[test]
fn entry_and_return_make_one_line() {
    let (mut p, out, _) = text();
    let t = Tracee::new();
    let work = function("work");
    let data = t.enter(&mut p, &work, 4243, 100, ARGS).unwrap();
    t.leave(&mut p, &work, 4243, 100, 111, 83, data).unwrap();
    p.on_finish().unwrap();
    assert_eq!(
        out.text(),
        format!("[pid 4243] work({WORK_ARGS}) = 83 <0.000011>\n")
    );
}

#[test]
fn interleaved_threads_are_unfinished_then_resumed() {
    let (mut p, out, _) = text();
    let t = Tracee::new();
    let work = function("work");
    let a = t.enter(&mut p, &work, 1, 100, ARGS).unwrap();
    let b = t.enter(&mut p, &work, 2, 101, [7, 0, 0, 0, 0, 0]).unwrap();
    t.leave(&mut p, &work, 2, 101, 105, 15, b).unwrap();
    t.leave(&mut p, &work, 1, 100, 120, (-3i64) as u64, a)
        .unwrap();
    p.on_finish().unwrap();
    assert_eq!(
        out.text(),
        format!(
            "[pid 1] work({WORK_ARGS}) ...\n\
             [pid 2] work(0x7, 0x0, 0x0, 0x0, 0x0, 0x0) = 15 <0.000004>\n\
             [pid 1] ... work resumed = -3 <0.000020>\n"
        )
    );
}

#[test]
fn a_signal_between_entry_and_return_splits_the_call() {
    let (mut p, out, _) = text();
    let t = Tracee::new();
    let work = function("work");
    let a = t.enter(&mut p, &work, 7, 100, ARGS).unwrap();
    ev(
        &mut p,
        Event::Signal {
            pid: Pid::from_raw(7),
            tid: Pid::from_raw(7),
            signal: libc::SIGUSR1,
        },
    );
    t.leave(&mut p, &work, 7, 100, 200, 1, a).unwrap();
    p.on_finish().unwrap();
    assert_eq!(
        out.text(),
        format!(
            "[pid 7] work({WORK_ARGS}) ...\n\
             [pid 7] --- SIGUSR1 ---\n\
             [pid 7] ... work resumed = 1 <0.000100>\n"
        )
    );
}

#[test]
fn flush_shows_a_pending_entry_and_the_line_completes_later() {
    let (mut p, out, _) = text();
    let t = Tracee::new();
    let work = function("work");
    let a = t.enter(&mut p, &work, 7, 100, ARGS).unwrap();
    assert_eq!(out.text(), "");
    // Held for less than a while, it waits for its return.
    p.flush().unwrap();
    assert_eq!(out.text(), "");
    assert!(p.tick_interval().is_some());
    p.age_held(super::text::SHOW_HELD_AFTER);
    p.flush().unwrap();
    assert_eq!(out.text(), format!("[pid 7] work({WORK_ARGS})"));
    assert_eq!(p.tick_interval(), None);
    p.flush().unwrap();
    t.leave(&mut p, &work, 7, 100, 111, 83, a).unwrap();
    let b = t.enter(&mut p, &work, 7, 200, ARGS).unwrap();
    p.flush().unwrap();
    ev(
        &mut p,
        Event::Exited {
            pid: Pid::from_raw(7),
            code: 0,
        },
    );
    drop(b); // the return never comes
    p.on_finish().unwrap();
    assert_eq!(
        out.text(),
        format!(
            "[pid 7] work({WORK_ARGS}) = 83 <0.000011>\n\
             [pid 7] work({WORK_ARGS}) ...\n\
             +++ exited with 0 +++\n"
        )
    );
}

#[test]
fn an_entry_left_open_at_the_end_is_printed_unfinished() {
    let (mut p, out, _) = text();
    let t = Tracee::new();
    t.enter(&mut p, &function("work"), 7, 100, ARGS).unwrap();
    p.on_finish().unwrap();
    assert_eq!(out.text(), format!("[pid 7] work({WORK_ARGS}) ...\n"));
}

#[test]
fn entry_only_and_instruction_probes_print_at_once() {
    let (mut p, out, _) = text();
    let t = Tracee::new();
    let entry_only = site("work", "work", ProbeKind::Function { returns: false }, 0);
    let at8 = site("work+0x8", "work", ProbeKind::Instruction, 8);
    let at0 = site("count:0x1139", "work", ProbeKind::Instruction, 0);
    let mut nowhere = site("0x401136", "", ProbeKind::Instruction, 0);
    nowhere.address = crate::RuntimeAddr(0x401136);
    t.enter(&mut p, &entry_only, 7, 1, ARGS).unwrap();
    t.enter(&mut p, &at8, 7, 2, ARGS).unwrap();
    t.enter(&mut p, &at0, 7, 3, ARGS).unwrap();
    t.enter(&mut p, &nowhere, 7, 4, ARGS).unwrap();
    p.flush().unwrap();
    assert_eq!(
        out.text(),
        format!(
            "[pid 7] work({WORK_ARGS})\n\
             [pid 7] hit work+0x8 (0x55d0c6a0d141)\n\
             [pid 7] hit work (0x55d0c6a0d139)\n\
             [pid 7] hit 0x401136\n"
        )
    );
}

#[test]
fn openat_reads_the_path_from_tracee_memory() {
    let (mut p, out, _) = text();
    let mut t = Tracee::new();
    let path = t.cstr("/etc/host\"name\n");
    let long = t.cstr(&"y".repeat(300));
    let openat = function("openat");
    // O_RDONLY|O_CLOEXEC, as glibc passes it (with O_LARGEFILE on x86-64).
    let d = t
        .enter(
            &mut p,
            &openat,
            7,
            0,
            [(-100i64) as u64, path, 0o2100000, 0, 0, 0],
        )
        .unwrap();
    t.leave(&mut p, &openat, 7, 0, 11, 3, d).unwrap();
    let d = t
        .enter(&mut p, &openat, 7, 20, [5, long, 0o1101, 0o644, 0, 0])
        .unwrap();
    t.leave(&mut p, &openat, 7, 20, 22, (-2i64) as u64, d)
        .unwrap();
    // A pointer into the unmapped first page: shown as the pointer.
    let d = t
        .enter(&mut p, &openat, 7, 30, [3, 0x10, 0, 0, 0, 0])
        .unwrap();
    t.leave(&mut p, &openat, 7, 30, 31, (-14i64) as u64, d)
        .unwrap();
    p.on_finish().unwrap();
    let y = "y".repeat(super::DEFAULT_STRING_LIMIT);
    assert_eq!(
        out.text(),
        format!(
            "[pid 7] openat(AT_FDCWD, \"/etc/host\\\"name\\n\", O_RDONLY|O_CLOEXEC|O_LARGEFILE) = 3 <0.000011>\n\
             [pid 7] openat(5, \"{y}\"..., O_WRONLY|O_CREAT|O_TRUNC, 0644) = -2 <0.000002>\n\
             [pid 7] openat(3, 0x10, O_RDONLY) = -14 <0.000001>\n"
        )
    );
}

#[test]
fn lifecycle_lines_and_status_lines() {
    let (mut p, out, diag) = text();
    let pid = Pid::from_raw(PID);
    let child = Pid::from_raw(4243);
    ev(
        &mut p,
        Event::Attached {
            pid,
            threads: 2,
            probes: 3,
            pending: 0,
            returns: None,
            realtime: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        },
    );
    ev(
        &mut p,
        Event::Fork {
            pid,
            child,
            kind: ForkKind::Vfork,
        },
    );
    ev(
        &mut p,
        Event::Exec {
            pid: child,
            path: "/usr/bin/ls".into(),
        },
    );
    ev(
        &mut p,
        Event::Exited {
            pid: child,
            code: 0,
        },
    );
    ev(
        &mut p,
        Event::Killed {
            pid,
            signal: libc::SIGSEGV,
            core_dumped: true,
        },
    );
    ev(
        &mut p,
        Event::NeverArmed {
            probe: "libplug:plugin_fn".into(),
        },
    );
    ev(&mut p, Event::Detached { pid });
    p.on_finish().unwrap();
    assert_eq!(
        out.text(),
        "[pid 4242] --- vfork: child 4243 ---\n\
         [pid 4243] --- exec /usr/bin/ls ---\n\
         [pid 4243] +++ exited with 0 +++\n\
         +++ killed by SIGSEGV (core dumped) +++\n\
         +++ detached +++\n"
    );
    assert_eq!(
        diag.text(),
        "rtrace: attached to pid 4242 (2 threads), 3 probes armed\n\
         rtrace: warning: probe libplug:plugin_fn never armed (its module was never loaded)\n"
    );

    let (mut p, _, diag) = text();
    ev(
        &mut p,
        Event::Attached {
            pid,
            threads: 1,
            probes: 1,
            pending: 2,
            returns: None,
            realtime: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        },
    );
    assert_eq!(
        diag.text(),
        "rtrace: attached to pid 4242 (1 thread), 1 probe armed, 2 pending\n"
    );
}

/// Drives one of every event through `p`.
fn everything(p: &mut Printer) {
    let mut t = Tracee::new();
    let pid = Pid::from_raw(PID);
    let path = t.cstr("/etc/hostname");
    ev(
        p,
        Event::Attached {
            pid,
            threads: 1,
            probes: 2,
            pending: 0,
            returns: None,
            realtime: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        },
    );
    let work = function("work");
    let openat = site(
        "libc:openat",
        "openat",
        ProbeKind::Function { returns: true },
        0,
    );
    let hit = site("work+0x8", "work", ProbeKind::Instruction, 8);
    for i in 0..3 {
        let d = t.enter(p, &work, PID, 1000 * i, ARGS).unwrap();
        t.enter(p, &hit, PID, 1000 * i + 1, ARGS).unwrap();
        t.leave(p, &work, PID, 1000 * i, 1000 * i + 10 * (i + 1), 83, d)
            .unwrap();
    }
    let d = t
        .enter(p, &openat, PID, 5000, [(-100i64) as u64, path, 0, 0, 0, 0])
        .unwrap();
    t.leave(p, &openat, PID, 5000, 5100, (-1i64) as u64, d)
        .unwrap();
    ev(
        p,
        Event::Signal {
            pid,
            tid: pid,
            signal: libc::SIGUSR1,
        },
    );
    ev(
        p,
        Event::Fork {
            pid,
            child: Pid::from_raw(4243),
            kind: ForkKind::Fork,
        },
    );
    ev(
        p,
        Event::Exec {
            pid,
            path: "/usr/bin/ls".into(),
        },
    );
    ev(
        p,
        Event::NeverArmed {
            probe: "libplug:f".into(),
        },
    );
    ev(p, Event::Exited { pid, code: 3 });
    ev(
        p,
        Event::Killed {
            pid,
            signal: libc::SIGKILL,
            core_dumped: false,
        },
    );
    ev(p, Event::Detached { pid });
    p.on_finish().unwrap();
}

#[test]
fn no_escape_bytes_without_colour_and_some_with_it() {
    let (mut p, out, diag) = printer(Format::Text, false, false);
    everything(&mut p);
    assert!(!out.text().contains('\x1b'), "{}", out.text());
    assert!(!diag.text().contains('\x1b'));
    assert!(out
        .text()
        .contains("] openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY) = -1 <"));

    let (mut p, out, diag) = printer(Format::Text, true, false);
    everything(&mut p);
    // Bold and dim too: the caller decides whether there is colour at all
    // (NO_COLOR is read where `--color auto` is resolved).
    assert!(
        out.text().contains("\x1b[1mwork\x1b[0m"),
        "{:?}",
        out.text()
    );
    assert!(out.text().contains("\x1b[2m[pid 4242]\x1b[0m"));
    assert!(!diag.text().contains('\x1b'));
    let (mut p, out, _) = printer(Format::Json, true, false);
    everything(&mut p);
    assert!(!out.text().contains('\x1b'));
}

#[test]
fn summary_in_text_mode_prints_only_the_table_and_exits() {
    let (mut p, out, diag) = printer(Format::Text, false, true);
    everything(&mut p);
    let expected = "\
+++ exited with 3 +++
+++ killed by SIGKILL +++
+++ detached +++
  calls     total(s)     avg(us)     min(us)     max(us)  missed  errors  % time  function [probe]
------- ------------ ----------- ----------- ----------- ------- ------- -------  ----------------
      1     0.000100     100.000     100.000     100.000       0       1   62.50  openat [libc:openat]
      3     0.000060      20.000      10.000      30.000       0       0   37.50  work [work]
      3            -           -           -           -       0       -       -  work [work+0x8]
------- ------------ ----------- ----------- ----------- ------- ------- -------  ----------------
      7     0.000160                                           0       1  100.00  total
";
    assert_eq!(out.text(), expected);
    assert!(diag.text().starts_with("rtrace: attached to pid 4242"));
    // on_finish twice does not print the table twice.
    p.on_finish().unwrap();
    assert_eq!(out.text(), expected);
}

fn json_lines(out: &SharedBuf) -> Vec<Value> {
    out.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn set(ks: &[&'static str]) -> BTreeSet<&'static str> {
    ["event", "time_ns", "pid"]
        .iter()
        .chain(ks)
        .copied()
        .collect()
}

#[test]
fn json_events_have_exactly_the_spec_fields() {
    let (mut p, out, diag) = printer(Format::Json, false, false);
    everything(&mut p);
    assert_eq!(diag.text(), "", "JSON mode writes nothing to stderr");
    // `-c` writes the lifecycle events and the summaries, no call: those
    // are taken from a second printer.
    let (mut counted, counted_out, _) = printer(Format::Json, false, true);
    everything(&mut counted);
    let summaries: Vec<Value> = json_lines(&counted_out);
    for call in ["entry", "return", "hit"] {
        assert!(
            summaries.iter().all(|e| e["event"] != call),
            "-c wrote a {call}"
        );
    }
    let mut events = json_lines(&out);
    events.extend(summaries.into_iter().filter(|e| e["event"] == "summary"));
    let hits_summary = events
        .iter()
        .find(|e| e["event"] == "summary" && e["probe"] == "work+0x8")
        .expect("a summary of hits");
    assert_eq!(
        keys(hits_summary),
        set(&["probe", "symbol", "calls", "missed"]),
        "hits have no time"
    );
    let first = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} event"))
    };
    let site = ["tid", "probe", "symbol", "module"];
    let expect: &[(&str, Vec<&'static str>)] = &[
        (
            "attach",
            vec!["threads", "probes", "pending", "realtime_ns"],
        ),
        (
            "entry",
            [&site[..], &["address", "args", "arg_names", "values"]].concat(),
        ),
        (
            "return",
            [
                &site[..],
                &["address", "retval", "rendered", "duration_ns", "entered_ns"],
            ]
            .concat(),
        ),
        ("hit", [&site[..], &["address"]].concat()),
        ("signal", vec!["tid", "signal"]),
        ("fork", vec!["child", "kind"]),
        ("exec", vec!["path"]),
        ("warning", vec!["message", "probe"]),
        ("exit", vec!["code"]),
        ("killed", vec!["signal"]),
        ("detach", vec![]),
        (
            "summary",
            vec![
                "probe", "symbol", "calls", "total_ns", "min_ns", "max_ns", "avg_ns", "missed",
                "errors",
            ],
        ),
    ];
    for (name, fields) in expect {
        assert_eq!(keys(first(name)), set(fields), "{name}");
    }
    let names: BTreeSet<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, expect.iter().map(|(n, _)| *n).collect());
    // Every line starts with the common fields, in order.
    for line in out.text().lines().chain(counted_out.text().lines()) {
        assert!(line.starts_with("{\"event\":"), "{line}");
    }

    let entry = first("entry");
    assert_eq!(entry["time_ns"], 0);
    assert_eq!(entry["pid"], PID);
    assert_eq!(entry["tid"], PID);
    assert_eq!(entry["probe"], "work");
    assert_eq!(entry["symbol"], "work");
    assert_eq!(entry["module"], "/usr/bin/count");
    assert_eq!(entry["address"], "0x55d0c6a0d139");
    assert_eq!(entry["args"][0], "0x29");
    assert_eq!(entry["args"].as_array().unwrap().len(), 6);
    assert_eq!(entry["values"], serde_json::json!([0x29, 0, 0, 0, 0, 0]));
    assert_eq!(
        entry["arg_names"],
        serde_json::json!([null, null, null, null, null, null])
    );

    let ret = first("return");
    assert_eq!(ret["time_ns"], 10_000);
    assert_eq!(ret["retval"], 83);
    assert_eq!(ret["rendered"], "83");
    assert_eq!(ret["duration_ns"], 10_000);
    assert_eq!(ret["entered_ns"], 0);

    let open = events
        .iter()
        .find(|e| e["symbol"] == "openat" && e["event"] == "entry");
    let open = open.unwrap();
    assert_eq!(open["probe"], "libc:openat");
    assert_eq!(
        open["args"],
        serde_json::json!(["AT_FDCWD", "\"/etc/hostname\"", "O_RDONLY"])
    );
    assert_eq!(
        open["arg_names"],
        serde_json::json!(["dirfd", "pathname", "flags"])
    );
    // The raw integers beside: AT_FDCWD is -100 as a 64-bit register.
    assert_eq!(open["values"][0], (-100i64) as u64);
    assert_eq!(open["values"][2], 0);
    assert!(open["values"][1].as_u64().unwrap() > 0);
    let open_ret = events
        .iter()
        .find(|e| e["symbol"] == "openat" && e["event"] == "return");
    assert_eq!(open_ret.unwrap()["retval"], -1);

    let hit = first("hit");
    assert_eq!(hit["probe"], "work+0x8");
    assert_eq!(hit["address"], "0x55d0c6a0d141");
    assert_eq!(hit["time_ns"], 1_000);

    assert_eq!(first("signal")["signal"], "SIGUSR1");
    assert_eq!(first("fork")["child"], 4243);
    assert_eq!(first("fork")["kind"], "fork");
    assert_eq!(first("exec")["path"], "/usr/bin/ls");
    assert_eq!(first("exit")["code"], 3);
    assert_eq!(first("exit")["time_ns"], 500_000);
    assert_eq!(first("killed")["signal"], "SIGKILL");
    assert_eq!(first("attach")["threads"], 1);
    assert_eq!(first("attach")["probes"], 2);
    assert_eq!(first("attach")["pending"], 0);
    assert_eq!(first("warning")["probe"], "libplug:f");
    assert_eq!(first("warning")["pid"], PID);
    assert_eq!(
        first("warning")["message"],
        "probe libplug:f never armed (its module was never loaded)"
    );

    let summaries: Vec<&Value> = events.iter().filter(|e| e["event"] == "summary").collect();
    assert_eq!(summaries.len(), 3);
    let work = summaries
        .iter()
        .find(|s| s["probe"] == "work")
        .expect("work summary");
    assert_eq!(work["symbol"], "work");
    assert_eq!(work["calls"], 3);
    assert_eq!(work["total_ns"], 60_000);
    assert_eq!(work["min_ns"], 10_000);
    assert_eq!(work["max_ns"], 30_000);
    assert_eq!(work["avg_ns"], 20_000);
    assert_eq!(work["missed"], 0);
    let hits = summaries.iter().find(|s| s["probe"] == "work+0x8").unwrap();
    assert_eq!(hits["calls"], 3);
    assert_eq!(hits["total_ns"], Value::Null);
    // Summaries come last.
    assert!(events[events.len() - 3..]
        .iter()
        .all(|e| e["event"] == "summary"));
}

#[test]
fn missed_returns_are_counted_and_said_once_per_probe() {
    for format in [Format::Text, Format::Json] {
        let (mut p, out, diag) = printer(format, false, true);
        let t = Tracee::new();
        let work = function("work");
        let data = t.enter(&mut p, &work, 7, 100, ARGS).unwrap();
        t.leave(&mut p, &work, 7, 100, 110, 83, data).unwrap();
        for _ in 0..3 {
            t.enter(&mut p, &work, 7, 200, ARGS).unwrap();
            ev(
                &mut p,
                Event::Missed {
                    pid: Pid::from_raw(PID),
                    tid: Pid::from_raw(7),
                    probe: "work".into(),
                    symbol: "work".into(),
                },
            );
        }
        p.on_finish().unwrap();
        match format {
            Format::Text => {
                assert_eq!(
                    diag.text(),
                    "rtrace: warning: probe work: the return of a call of work could not be \
                     watched; such calls are counted as missed in the summary (-c)\n"
                );
                let row = out
                    .text()
                    .lines()
                    .find(|l| l.contains(" work [work]"))
                    .unwrap()
                    .to_string();
                let fields: Vec<&str> = row.split_whitespace().collect();
                assert_eq!(
                    (fields[0], fields[5]),
                    ("1", "3"),
                    "calls and missed: {row}"
                );
            }
            Format::Json => {
                let events = json_lines(&out);
                let warnings = events.iter().filter(|e| e["event"] == "warning").count();
                assert_eq!(warnings, 1);
                let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
                assert_eq!(summary["calls"], 1);
                assert_eq!(summary["missed"], 3);
            }
        }
    }
}

#[test]
fn json_without_summary_has_no_summary_events() {
    let (mut p, out, _) = printer(Format::Json, false, false);
    everything(&mut p);
    let events = json_lines(&out);
    assert!(events.iter().all(|e| e["event"] != "summary"));
    assert_eq!(events.iter().filter(|e| e["event"] == "entry").count(), 4);
}

#[test]
fn json_escapes_strings() {
    let (mut p, out, _) = printer(Format::Json, false, false);
    ev(
        &mut p,
        Event::Exec {
            pid: Pid::from_raw(1),
            path: "/tmp/a \"b\"\n\\c".into(),
        },
    );
    p.flush().unwrap();
    assert_eq!(json_lines(&out)[0]["path"], "/tmp/a \"b\"\n\\c");
}

fn is_broken_pipe(r: crate::Result<()>) -> bool {
    matches!(r, Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe)
}

#[test]
fn a_closed_output_is_an_output_error() {
    for format in [Format::Text, Format::Json] {
        let opts = PrinterOptions {
            format,
            color: false,
            summary: false,
            hist: false,
            order: Default::default(),
            timestamps: Default::default(),
            tree: false,
            string_limit: super::DEFAULT_STRING_LIMIT,
            flush_interval: None,
            stack_depth: None,
            prototypes: Default::default(),
        };
        let mut p = Printer::with_diag(Box::new(BrokenPipe), Box::new(SharedBuf::default()), opts);
        let t = Tracee::new();
        let work = site("work", "work", ProbeKind::Function { returns: false }, 0);
        // Buffered: the first writes succeed, the flush reports the failure.
        t.enter(&mut p, &work, 7, 0, ARGS).unwrap();
        assert!(is_broken_pipe(p.flush()));
        // More than a buffer's worth fails on the write itself.
        let mut failed = None;
        for i in 0..10_000 {
            if let Err(e) = t.enter(&mut p, &work, 7, i, ARGS) {
                failed = Some(e);
                break;
            }
        }
        assert!(matches!(failed, Some(Error::Output(_))));
        assert!(is_broken_pipe(p.on_finish()));
    }
    // A closed stderr fails the status line.
    let opts = PrinterOptions {
        format: Format::Text,
        color: false,
        summary: false,
        hist: false,
        order: Default::default(),
        timestamps: Default::default(),
        tree: false,
        string_limit: super::DEFAULT_STRING_LIMIT,
        flush_interval: None,
        stack_depth: None,
        prototypes: Default::default(),
    };
    let mut p = Printer::with_diag(Box::new(SharedBuf::default()), Box::new(BrokenPipe), opts);
    let r = p.on_event(
        &Event::NeverArmed {
            probe: "libplug:plugin_fn".into(),
        },
        Duration::ZERO,
    );
    assert!(is_broken_pipe(r));
}

#[test]
fn recursion_on_one_thread_nests_like_ltrace() {
    let (mut p, out, _) = text();
    let t = Tracee::new();
    let fib = function("fib");
    let outer = t.enter(&mut p, &fib, 7, 0, [2, 0, 0, 0, 0, 0]).unwrap();
    let inner = t.enter(&mut p, &fib, 7, 1, [1, 0, 0, 0, 0, 0]).unwrap();
    t.leave(&mut p, &fib, 7, 1, 2, 1, inner).unwrap();
    t.leave(&mut p, &fib, 7, 0, 3, 2, outer).unwrap();
    // A return whose entry this printer never saw (no data) is still shown.
    t.leave(&mut p, &fib, 7, 0, 4, 0, None).unwrap();
    p.on_finish().unwrap();
    assert_eq!(
        out.text(),
        "[pid 7] fib(0x2, 0x0, 0x0, 0x0, 0x0, 0x0) ...\n\
         [pid 7] fib(0x1, 0x0, 0x0, 0x0, 0x0, 0x0) = 1 <0.000001>\n\
         [pid 7] ... fib resumed = 2 <0.000003>\n\
         [pid 7] ... fib resumed = 0 <0.000004>\n"
    );
}

#[test]
fn hist_adds_buckets_to_the_summary() {
    for format in [Format::Text, Format::Json] {
        let out = SharedBuf::default();
        let mut p = Printer::with_diag(
            Box::new(out.clone()),
            Box::new(SharedBuf::default()),
            PrinterOptions {
                format,
                color: false,
                summary: true,
                hist: true,
                order: Default::default(),
                timestamps: Default::default(),
                tree: false,
                string_limit: super::DEFAULT_STRING_LIMIT,
                stack_depth: None,
                prototypes: Default::default(),
                flush_interval: None,
            },
        );
        let t = Tracee::new();
        let work = function("work");
        for (at, took) in [(0, 3), (10, 5), (20, 6), (30, 40)] {
            let d = t.enter(&mut p, &work, 7, at, ARGS).unwrap();
            t.leave(&mut p, &work, 7, at, at + took, 0, d).unwrap();
        }
        p.on_finish().unwrap();
        match format {
            Format::Text => assert!(
                out.text().ends_with(
                    "      4     0.000054                                           0       0  100.00  total

work [work], ns:
[2K, 4K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
[4K, 8K)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[8K, 16K)              0 |                                                    |
[16K, 32K)             0 |                                                    |
[32K, 64K)             1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
"
                ),
                "{}",
                out.text()
            ),
            Format::Json => {
                let events = json_lines(&out);
                let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
                assert_eq!(
                    summary["hist"].to_string(),
                    r#"[{"count":1,"high":4096,"low":2048},{"count":2,"high":8192,"low":4096},{"count":0,"high":16384,"low":8192},{"count":0,"high":32768,"low":16384},{"count":1,"high":65536,"low":32768}]"#
                );
            }
        }
    }
}

#[test]
fn stack_lines_name_every_frame() {
    use crate::addr::RuntimeAddr;
    use crate::unwind::{Frame, FrameSource, Stack};
    let frame =
        |addr, symbol: Option<&str>, offset, module: Option<&str>, line: Option<u32>| Frame {
            address: RuntimeAddr(addr),
            symbol: symbol.map(std::sync::Arc::from),
            offset,
            module: module.map(std::path::PathBuf::from),
            file: line.map(|_| std::path::PathBuf::from("/src/stacker.c")),
            line,
            source: FrameSource::Cfi,
        };
    let mut stack = Stack {
        frames: vec![
            frame(0x401136, Some("c"), 0, Some("/tmp/stacker"), Some(21)),
            frame(0x7f00_0000_1234, None, 0, Some("/lib/libc.so.6"), None),
            frame(0xdead_0000, None, 0, None, None),
        ],
        truncated: false,
    };
    assert_eq!(
        super::text::stack_lines(&stack),
        "    #0 0x401136 c+0x0 (/tmp/stacker) /src/stacker.c:21\n\
         \x20   #1 0x7f0000001234 ?? (/lib/libc.so.6)\n\
         \x20   #2 0xdead0000 ?? ([unknown])\n"
    );
    stack.truncated = true;
    stack.frames.truncate(1);
    assert_eq!(
        super::text::stack_lines(&stack),
        "    #0 0x401136 c+0x0 (/tmp/stacker) /src/stacker.c:21\n    ...\n"
    );
}

/// A text printer with `stamps` and `tree`, and its output.
fn text_with(stamps: super::Timestamps, tree: bool) -> (Printer, SharedBuf) {
    let out = SharedBuf::default();
    let p = Printer::with_diag(
        Box::new(out.clone()),
        Box::new(SharedBuf::default()),
        PrinterOptions {
            format: Format::Text,
            color: false,
            summary: false,
            hist: false,
            order: Default::default(),
            timestamps: stamps,
            tree,
            string_limit: super::DEFAULT_STRING_LIMIT,
            flush_interval: None,
            stack_depth: None,
            prototypes: Default::default(),
        },
    );
    (p, out)
}

/// `-ttt -r`: each line's wall clock is the attach event's plus the time
/// since it (an entry's line at its entry, a `+++` line at its event), and
/// `-r` the time since the previous line's event, the first 0.
#[test]
fn timestamps_place_each_line_in_real_time() {
    let (mut p, out) = text_with(
        super::Timestamps {
            clock: Some(super::WallClock::Epoch),
            relative: true,
        },
        false,
    );
    let pid = Pid::from_raw(7);
    p.on_event(
        &Event::Attached {
            pid,
            threads: 1,
            probes: 1,
            pending: 0,
            returns: None,
            realtime: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        },
        Duration::from_micros(500),
    )
    .unwrap();
    let t = Tracee::new();
    let work = function("work");
    let a = t.enter(&mut p, &work, 7, 1000, ARGS).unwrap();
    t.leave(&mut p, &work, 7, 1000, 1011, 83, a).unwrap();
    let b = t.enter(&mut p, &work, 7, 2500, ARGS).unwrap();
    t.leave(&mut p, &work, 7, 2500, 2504, 1, b).unwrap();
    p.on_event(&Event::Exited { pid, code: 0 }, Duration::from_micros(3000))
        .unwrap();
    p.on_finish().unwrap();
    assert_eq!(
        out.text(),
        format!(
            "[pid 7] 1700000000.000500      0.000000 work({WORK_ARGS}) = 83 <0.000011>\n\
             [pid 7] 1700000000.002000      0.001500 work({WORK_ARGS}) = 1 <0.000004>\n\
             1700000000.002500      0.000500 +++ exited with 0 +++\n"
        )
    );
}

/// `--tree`: a call whose inner calls never returned (longjmp) is closed
/// where it was opened, and what comes after is back at its depth; another
/// thread's calls nest on their own.
#[test]
fn a_tree_closes_a_call_where_it_was_opened() {
    let (mut p, out) = text_with(Default::default(), true);
    let t = Tracee::new();
    let work = function("work");
    let outer = t.enter(&mut p, &work, 1, 100, [1, 0, 0, 0, 0, 0]).unwrap();
    let _lost = t.enter(&mut p, &work, 1, 101, [2, 0, 0, 0, 0, 0]).unwrap();
    let other = t.enter(&mut p, &work, 2, 102, [3, 0, 0, 0, 0, 0]).unwrap();
    t.leave(&mut p, &work, 2, 102, 103, 7, other).unwrap();
    t.leave(&mut p, &work, 1, 100, 110, 5, outer).unwrap();
    let next = t.enter(&mut p, &work, 1, 120, [4, 0, 0, 0, 0, 0]).unwrap();
    t.leave(&mut p, &work, 1, 120, 121, 9, next).unwrap();
    p.on_finish().unwrap();
    let z = "0x0, 0x0, 0x0, 0x0, 0x0";
    assert_eq!(
        out.text(),
        format!(
            "[pid 1] work(0x1, {z}) {{\n\
             [pid 1]   work(0x2, {z}) {{\n\
             [pid 2] work(0x3, {z}) = 7 <0.000001>\n\
             [pid 1] }} = 5 <0.000010>\n\
             [pid 1] work(0x4, {z}) = 9 <0.000001>\n"
        )
    );
}
