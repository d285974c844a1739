//! The timeline's file, exact: calls in, trace events out.

use std::time::Duration;

use serde_json::Value;

use super::{arg_pairs, micros, Named, Timeline};
use crate::addr::Pid;
use crate::error::Error;
use crate::handler::{Event, ForkKind, Handler, ProbeKind};
use crate::output::render::Args;
use crate::output::testutil::{function, site, BrokenPipe, SharedBuf, Tracee, PID};

fn timeline() -> (Timeline, SharedBuf) {
    let out = SharedBuf::default();
    let t = Timeline::with_names(
        Box::new(out.clone()),
        crate::output::DEFAULT_STRING_LIMIT,
        Box::new(|n| match n {
            Named::Process(_) => Some("count".into()),
            Named::Thread(_, tid) => Some(format!("worker-{tid}")),
        }),
    );
    (t, out)
}

/// The events of a finished file; panics unless it is one valid JSON object
/// of the documented shape.
fn events(out: &SharedBuf) -> Vec<Value> {
    let text = out.text();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(v["displayTimeUnit"], "ns", "{text}");
    v["traceEvents"].as_array().expect("traceEvents").clone()
}

fn of_ph<'a>(events: &'a [Value], ph: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["ph"] == ph).collect()
}

/// (name, ts, dur) of each slice, in file order (the order calls returned).
fn slices(events: &[Value]) -> Vec<(String, String, String)> {
    of_ph(events, "X")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["ts"].to_string(),
                e["dur"].to_string(),
            )
        })
        .collect()
}

const RAW: &str = r#""arg1":"0x0","arg2":"0x0","arg3":"0x0","arg4":"0x0","arg5":"0x0""#;

#[test]
fn nested_calls_are_nested_slices_with_their_args_and_values() {
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let fact = function("fact");
    let outer = t.enter(&mut tl, &fact, 7, 100, [2, 0, 0, 0, 0, 0]).unwrap();
    let inner = t.enter(&mut tl, &fact, 7, 110, [1, 0, 0, 0, 0, 0]).unwrap();
    t.leave(&mut tl, &fact, 7, 110, 120, 1, inner).unwrap();
    t.leave(&mut tl, &fact, 7, 100, 130, 2, outer).unwrap();
    tl.on_finish().unwrap();
    assert_eq!(
        out.text(),
        format!(
            "{{\"traceEvents\":[\n\
             {{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{PID},\"tid\":{PID},\"args\":{{\"name\":\"count\"}}}},\n\
             {{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{PID},\"tid\":7,\"args\":{{\"name\":\"worker-7\"}}}},\n\
             {{\"name\":\"fact\",\"cat\":\"call\",\"ph\":\"X\",\"ts\":110.000,\"dur\":10.000,\"pid\":{PID},\"tid\":7,\
             \"args\":{{\"arg0\":\"0x1\",{RAW},\"return\":\"1\",\"retval\":1}}}},\n\
             {{\"name\":\"fact\",\"cat\":\"call\",\"ph\":\"X\",\"ts\":100.000,\"dur\":30.000,\"pid\":{PID},\"tid\":7,\
             \"args\":{{\"arg0\":\"0x2\",{RAW},\"return\":\"2\",\"retval\":2}}}}\n\
             ],\"displayTimeUnit\":\"ns\"}}\n"
        )
    );
    events(&out);
}

#[test]
fn a_call_the_engine_drops_gets_no_slice_and_leaves_the_list() {
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let f = function("f");
    let a = t.enter(&mut tl, &f, 7, 100, [0; 6]).unwrap();
    // b's frame is left by longjmp: the engine drops what its entry kept.
    let b = t.enter(&mut tl, &f, 7, 110, [0; 6]).unwrap();
    drop(b);
    let c = t.enter(&mut tl, &f, 7, 120, [0; 6]).unwrap();
    assert_eq!(tl.tracks[&Pid::from_raw(7)].open.len(), 2, "a and c");
    t.leave(&mut tl, &f, 7, 120, 125, 0, c).unwrap();
    t.leave(&mut tl, &f, 7, 100, 130, 0, a).unwrap();
    tl.on_finish().unwrap();
    assert_eq!(
        slices(&events(&out)),
        [
            ("f".into(), "120.0".into(), "5.0".into()),
            ("f".into(), "100.0".into(), "30.0".into())
        ]
    );
}

#[test]
fn calls_left_without_returning_in_a_loop_keep_the_list_short() {
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let f = function("f");
    for i in 0..1000 {
        drop(t.enter(&mut tl, &f, 7, 100 + i, [0; 6]).unwrap());
    }
    let last = t.enter(&mut tl, &f, 7, 2000, [0; 6]).unwrap();
    assert_eq!(tl.tracks[&Pid::from_raw(7)].open.len(), 1);
    t.leave(&mut tl, &f, 7, 2000, 2001, 0, last).unwrap();
    assert!(tl.tracks[&Pid::from_raw(7)].open.is_empty());
    tl.on_finish().unwrap();
    assert_eq!(of_ph(&events(&out), "X").len(), 1);
}

#[test]
fn a_return_ends_the_calls_entered_after_it_without_slices() {
    // A coroutine: y is entered on another stack, then x (on the first one)
    // returns before y does. Slices of x and y would overlap; only x's is
    // written.
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let (x, y) = (function("x"), function("y"));
    let dx = t.enter(&mut tl, &x, 7, 100, [0; 6]).unwrap();
    let dy = t.enter(&mut tl, &y, 7, 110, [0; 6]).unwrap();
    t.leave(&mut tl, &x, 7, 100, 120, 0, dx).unwrap();
    t.leave(&mut tl, &y, 7, 110, 130, 0, dy).unwrap();
    tl.on_finish().unwrap();
    assert_eq!(
        slices(&events(&out)),
        [("x".into(), "100.0".into(), "20.0".into())]
    );
}

#[test]
fn two_probes_of_one_call_give_two_equal_slices() {
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let p1 = function("work");
    let p2 = site("w*", "work", ProbeKind::Function { returns: true }, 0);
    let d1 = t.enter(&mut tl, &p1, 7, 100, [0; 6]).unwrap();
    let d2 = t.enter(&mut tl, &p2, 7, 100, [0; 6]).unwrap();
    // The engine reports a call's probes in registration order.
    t.leave(&mut tl, &p1, 7, 100, 120, 0, d1).unwrap();
    t.leave(&mut tl, &p2, 7, 100, 120, 0, d2).unwrap();
    tl.on_finish().unwrap();
    let work = ("work".to_string(), "100.0".to_string(), "20.0".to_string());
    assert_eq!(slices(&events(&out)), [work.clone(), work]);
}

#[test]
fn threads_get_tracks_named_once() {
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let work = function("work");
    for (tid, at) in [(7, 100), (8, 101), (7, 102), (8, 103)] {
        let d = t.enter(&mut tl, &work, tid, at, [0; 6]).unwrap();
        t.leave(&mut tl, &work, tid, at, at + 1, 0, d).unwrap();
    }
    tl.on_finish().unwrap();
    let evs = events(&out);
    let names: Vec<String> = of_ph(&evs, "M")
        .iter()
        .map(|e| format!("{} {} {}", e["name"], e["tid"], e["args"]["name"]))
        .collect();
    assert_eq!(
        names,
        [
            format!("\"process_name\" {PID} \"count\""),
            "\"thread_name\" 7 \"worker-7\"".into(),
            "\"thread_name\" 8 \"worker-8\"".into(),
        ]
    );
    let per_thread = |tid: i64| of_ph(&evs, "X").iter().filter(|e| e["tid"] == tid).count();
    assert_eq!((per_thread(7), per_thread(8)), (2, 2));
}

#[test]
fn hits_entries_signals_forks_and_execs_are_instants() {
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let hit = site("work+0x4", "work", ProbeKind::Instruction, 4);
    let entry = site("twice", "twice", ProbeKind::Function { returns: false }, 0);
    assert!(t.enter(&mut tl, &hit, 7, 50, [0; 6]).unwrap().is_none());
    assert!(t
        .enter(&mut tl, &entry, 7, 60, [20, 0, 0, 0, 0, 0])
        .unwrap()
        .is_none());
    let pid = Pid::from_raw(PID);
    let at = Duration::from_micros;
    let events_in = [
        Event::Signal {
            pid,
            tid: Pid::from_raw(7),
            signal: libc::SIGUSR1,
        },
        Event::Fork {
            pid,
            child: Pid::from_raw(4300),
            kind: ForkKind::Vfork,
        },
        Event::Exec {
            pid,
            path: "/usr/bin/true".into(),
        },
        Event::Exited { pid, code: 0 },
    ];
    for (i, e) in events_in.iter().enumerate() {
        tl.on_event(e, at(70 + i as u64)).unwrap();
    }
    tl.on_finish().unwrap();
    let evs = events(&out);
    let instants: Vec<String> = of_ph(&evs, "i").iter().map(|e| e.to_string()).collect();
    let address = hit.address.to_string();
    assert_eq!(
        instants,
        [
            format!(
                r#"{{"args":{{"address":"{address}","probe":"work+0x4"}},"cat":"hit","name":"work+0x4","ph":"i","pid":{PID},"s":"t","tid":7,"ts":50.0}}"#
            ),
            format!(
                r#"{{"args":{{"arg0":"0x14",{RAW}}},"cat":"entry","name":"twice","ph":"i","pid":{PID},"s":"t","tid":7,"ts":60.0}}"#
            ),
            format!(
                r#"{{"cat":"signal","name":"SIGUSR1","ph":"i","pid":{PID},"s":"t","tid":7,"ts":70.0}}"#
            ),
            format!(
                r#"{{"args":{{"child":4300}},"cat":"process","name":"vfork","ph":"i","pid":{PID},"s":"p","tid":{PID},"ts":71.0}}"#
            ),
            format!(
                r#"{{"args":{{"path":"/usr/bin/true"}},"cat":"process","name":"exec","ph":"i","pid":{PID},"s":"p","tid":{PID},"ts":72.0}}"#
            ),
        ]
    );
    let process_names: Vec<&Value> = of_ph(&evs, "M")
        .into_iter()
        .filter(|e| e["name"] == "process_name")
        .map(|e| &e["args"]["name"])
        .collect();
    assert_eq!(process_names, ["count", "true"], "renamed by the exec");
}

#[test]
fn an_injected_call_is_marked() {
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let f = function("f");
    let d = t.enter(&mut tl, &f, 7, 100, [0; 6]).unwrap();
    tl.mark_injected(Some(libc::ENOENT));
    t.leave(&mut tl, &f, 7, 100, 101, u64::MAX, d).unwrap();
    tl.on_finish().unwrap();
    let evs = events(&out);
    let args = &of_ph(&evs, "X")[0]["args"];
    assert_eq!(args["return"], "-1 ENOENT (injected)");
    assert_eq!(args["retval"], -1);
    assert_eq!(args["injected"], true);
}

#[test]
fn a_return_without_its_entry_makes_no_slice() {
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let f = function("f");
    t.leave(&mut tl, &f, 7, 100, 101, 0, None).unwrap();
    tl.on_finish().unwrap();
    assert!(of_ph(&events(&out), "X").is_empty());
}

#[test]
fn the_file_is_valid_json_however_it_ends() {
    // Nothing traced.
    let (mut tl, out) = timeline();
    tl.on_finish().unwrap();
    tl.on_finish().unwrap();
    assert_eq!(
        out.text(),
        "{\"traceEvents\":[\n\n],\"displayTimeUnit\":\"ns\"}\n"
    );
    // Dropped without on_finish, with a call still in flight.
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let f = function("f");
    let d = t.enter(&mut tl, &f, 7, 100, [0; 6]).unwrap();
    drop(tl);
    drop(d);
    let evs = events(&out);
    assert_eq!(evs.len(), 2, "the names only: {evs:?}");
    // Events after the end are not written.
    let (mut tl, out) = timeline();
    tl.on_finish().unwrap();
    let d = t.enter(&mut tl, &f, 7, 100, [0; 6]).unwrap();
    t.leave(&mut tl, &f, 7, 100, 101, 0, d).unwrap();
    assert!(events(&out).is_empty());
}

#[test]
fn a_write_error_is_an_output_error() {
    let mut tl = Timeline::with_names(Box::new(BrokenPipe), 64, Box::new(|_| None));
    assert!(matches!(tl.on_finish(), Err(Error::Output(_))));
}

#[test]
fn argument_keys_are_names_unique_and_never_the_value_keys() {
    let args = Args {
        names: vec![
            Some("x".into()),
            None,
            Some("x".into()),
            Some("return".into()),
            Some("arg1".into()),
        ],
        values: ["1", "2", "3", "4", "5"].map(String::from).to_vec(),
        raw: vec![Some(1), Some(2), Some(3), Some(4), Some(5)],
        named: true,
    };
    let keys: Vec<String> = arg_pairs(&args).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["x", "arg1", "x#2", "return#3", "arg1#4"]);
}

#[test]
fn times_are_exact_microseconds() {
    assert_eq!(micros(Duration::from_nanos(1_520_031)), "1520.031");
    assert_eq!(micros(Duration::from_nanos(5)), "0.005");
    assert_eq!(micros(Duration::ZERO), "0.000");
}

#[test]
fn a_slice_is_timed_as_the_engine_times_the_call() {
    // Hit at 100 µs; the handlers took 4 µs before the thread went on.
    let (mut tl, out) = timeline();
    let t = Tracee::new();
    let f = function("f");
    let d = t.enter(&mut tl, &f, 7, 100, [0; 6]).unwrap();
    t.leave(&mut tl, &f, 7, 104, 120, 0, d).unwrap();
    tl.on_finish().unwrap();
    assert_eq!(
        slices(&events(&out)),
        [("f".into(), "104.0".into(), "16.0".into())]
    );
}
