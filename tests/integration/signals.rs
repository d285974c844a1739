//! Threads, signals, fork and job control under tracing, in launch mode:
//! the traced program must behave exactly as it does untraced, and every
//! probe hit must be reported once.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::events::{
    assert_same_as_untraced, of_kind, of_symbol, parse_events, retvals, show, str_field, trace_json,
};
use crate::fixtures::{fixture, rtrace_bin, run_untraced, Spawned, Variant};

#[test]
fn threads_every_call_reported_once_per_thread() {
    let prog = fixture("threads", Variant::Pie);
    let untraced = run_untraced(&prog, &["4", "1000"]);
    assert_eq!(untraced.stdout, "total=4000000\n");
    let (run, events) = trace_json("threads_4x1000", &["-s", "work"], &prog, &["4", "1000"]);
    assert_same_as_untraced(&run, &untraced, "rtrace -s work -- threads 4 1000");
    let entries = of_symbol(&events, "entry", "work");
    let returns = of_symbol(&events, "return", "work");
    assert_eq!(entries.len(), 4000, "entries");
    assert_eq!(returns.len(), 4000, "returns");
    let tids = |evs: &[&Value]| -> BTreeSet<i64> {
        evs.iter().map(|e| e["tid"].as_i64().unwrap()).collect()
    };
    let entry_tids = tids(&entries);
    assert_eq!(entry_tids.len(), 4, "distinct tids: {entry_tids:?}");
    assert_eq!(tids(&returns), entry_tids);
    // Per thread, the returns are 2*i+1 for i in 0..1000, in order.
    let expected: Vec<i64> = (0..1000).map(|i| 2 * i + 1).collect();
    for tid in &entry_tids {
        let per: Vec<i64> = returns
            .iter()
            .filter(|e| e["tid"].as_i64() == Some(*tid))
            .map(|e| e["retval"].as_i64().unwrap())
            .collect();
        assert_eq!(per, expected, "return values of thread {tid}");
    }
}

#[test]
fn sigtrap_own_traps_pass_through() {
    let prog = fixture("sigtrap", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "traps=5\n");
    let (run, events) = trace_json("sigtrap_handled", &["-s", "work"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "rtrace -s work -- sigtrap");
    assert_eq!(
        retvals(&events, "work"),
        vec![3, 5, 7, 9, 11],
        "{}",
        show(&events)
    );
}

/// SPEC: a `signal` event for each signal delivered to the tracee; the
/// program's own SIGTRAPs are delivered to it like any other signal.
#[test]
fn sigtrap_own_traps_reported_as_signals() {
    let prog = fixture("sigtrap", Variant::Pie);
    let (run, events) = trace_json("sigtrap_signal_events", &["-s", "work"], &prog, &[]);
    assert_eq!(run.stdout, "traps=5\n");
    let traps = of_kind(&events, "signal")
        .into_iter()
        .filter(|e| str_field(e, "signal") == "SIGTRAP")
        .count();
    assert_eq!(traps, 5, "the program's 5 SIGTRAPs\n{}", show(&events));
}

#[test]
fn sigtrap_default_still_kills() {
    let prog = fixture("sigtrap", Variant::Pie);
    let untraced = run_untraced(&prog, &["default"]);
    assert_eq!(untraced.code(), 133);
    assert_eq!(untraced.stdout, "");
    let (run, events) = trace_json("sigtrap_default", &["-s", "work"], &prog, &["default"]);
    assert_same_as_untraced(&run, &untraced, "rtrace -s work -- sigtrap default");
    let killed = of_kind(&events, "killed");
    assert_eq!(killed.len(), 1, "{}", show(&events));
    assert_eq!(str_field(killed[0], "signal"), "SIGTRAP");
}

#[test]
fn signals_delivered_once_with_probe_in_handler() {
    let prog = fixture("signals", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "usr1=5\nusr2=1\n");
    let (run, events) = trace_json(
        "signals_in_handler",
        &["-s", "work", "-s", "in_handler"],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "rtrace -s work -s in_handler -- signals");
    assert_eq!(
        retvals(&events, "in_handler"),
        vec![1, 2, 3, 4, 5],
        "{}",
        show(&events)
    );
    assert_eq!(of_symbol(&events, "entry", "in_handler").len(), 5);
    assert_eq!(
        retvals(&events, "work"),
        vec![3, 5, 7, 9, 11],
        "{}",
        show(&events)
    );
    let count = |name: &str| {
        of_kind(&events, "signal")
            .into_iter()
            .filter(|e| str_field(e, "signal") == name)
            .count()
    };
    assert_eq!(count("SIGUSR1"), 5, "{}", show(&events));
    assert_eq!(count("SIGUSR2"), 1, "{}", show(&events));
}

#[test]
fn fork_child_untraced_and_unharmed() {
    let prog = fixture("forker", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "child=7\n");
    let (run, events) = trace_json("forker_nofollow", &["-s", "work"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "rtrace -s work -- forker");
    let attach = of_kind(&events, "attach");
    assert_eq!(attach.len(), 1, "{}", show(&events));
    let parent = attach[0]["pid"].as_i64().unwrap();
    let entries = of_symbol(&events, "entry", "work");
    assert_eq!(
        entries.len(),
        2,
        "only the parent's calls\n{}",
        show(&events)
    );
    assert!(
        entries.iter().all(|e| e["tid"].as_i64() == Some(parent)),
        "{}",
        show(&events)
    );
    assert_eq!(retvals(&events, "work"), vec![3, 5], "{}", show(&events));
}

/// Reads JSON events from the stderr of `rtrace`, until one satisfies
/// `want`; panics after `timeout`.
fn wait_event(
    rtrace: &mut Spawned,
    timeout: Duration,
    seen: &mut Vec<Value>,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rtrace.next_stderr_line(left) {
            Ok(line) => {
                for e in parse_events(&line) {
                    seen.push(e.clone());
                    if want(&e) {
                        return e;
                    }
                }
            }
            Err(why) => panic!(
                "expected event not seen ({why:?})\n--- stderr so far:\n{}",
                rtrace.stderr_so_far()
            ),
        }
    }
}

#[test]
fn sigstop_sigcont_launch_mode() {
    let prog = fixture("stopper", Variant::Pie);
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["--json", "-s", "work", "--"]).arg(&prog);
    let mut rtrace = Spawned::command(cmd);
    let pid_line = rtrace.wait_stdout_line(|l| l.starts_with("pid="));
    let pid: i32 = pid_line["pid=".len()..].parse().unwrap();
    rtrace.wait_stdout_line(|l| l == "ready");
    let mut seen = Vec::new();
    wait_event(&mut rtrace, Duration::from_secs(30), &mut seen, |e| {
        str_field(e, "event") == "entry"
    });

    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    wait_event(&mut rtrace, Duration::from_secs(30), &mut seen, |e| {
        str_field(e, "event") == "signal" && str_field(e, "signal") == "SIGSTOP"
    });
    kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    wait_event(&mut rtrace, Duration::from_secs(30), &mut seen, |e| {
        str_field(e, "event") == "signal" && str_field(e, "signal") == "SIGCONT"
    });
    wait_event(&mut rtrace, Duration::from_secs(30), &mut seen, |e| {
        str_field(e, "event") == "entry"
    });
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "rtrace status\n{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "stdout:\n{}", run.stdout);
    assert_eq!(lines[0], format!("pid={pid}"));
    assert_eq!(lines[1], "ready");
    assert_eq!(lines[2], "conts=1", "stdout:\n{}", run.stdout);
    assert!(lines[3].starts_with("calls="), "stdout:\n{}", run.stdout);
    assert_eq!(lines[4], "done");
    let events = parse_events(&run.stderr);
    let exits = of_kind(&events, "exit");
    assert_eq!(exits.len(), 1, "{}", show(&events));
    assert_eq!(exits[0]["code"], 0);
    // Every call was reported: the number printed equals the entries seen.
    let calls: usize = lines[3]["calls=".len()..].parse().unwrap();
    assert_eq!(of_symbol(&events, "entry", "work").len(), calls);
    // Stopped as untraced: SIGSTOP and SIGCONT each delivered once, and from
    // the one to the other the program made no call (the thread sat in its
    // group-stop until SIGCONT woke it).
    let signals: Vec<&str> = of_kind(&events, "signal")
        .into_iter()
        .map(|e| str_field(e, "signal"))
        .collect();
    assert_eq!(
        signals,
        ["SIGSTOP", "SIGCONT", "SIGTERM"],
        "{}",
        show(&events)
    );
    let at = |name: &str| {
        events
            .iter()
            .position(|e| str_field(e, "event") == "signal" && str_field(e, "signal") == name)
            .unwrap()
    };
    let while_stopped: Vec<&Value> = events[at("SIGSTOP")..at("SIGCONT")]
        .iter()
        .filter(|e| str_field(e, "event") == "entry")
        .collect();
    assert!(
        while_stopped.is_empty(),
        "calls while stopped: {while_stopped:?}\n{}",
        show(&events)
    );
}

/// exec replaces the image: the probes are resolved again in the new one.
/// `work` exists in both execer and count, so the one spec gives execer's
/// single call (207) and then count's five (1, 3, 5, 7, 9).
#[test]
fn exec_resolves_probes_again_in_the_new_image() {
    for target_variant in [Variant::Pie, Variant::Static] {
        let prog = fixture("execer", Variant::Pie);
        let target = fixture("count", target_variant);
        let target_str = target.to_str().unwrap();
        let args = [target_str, "5", "3"];
        let untraced = run_untraced(&prog, &args);
        assert_eq!(untraced.stdout, "before=207\nsum=25\ntwice=41\n");
        let test = format!("exec_{target_variant}");
        let (run, events) = trace_json(&test, &["-s", "work"], &prog, &args);
        assert_same_as_untraced(&run, &untraced, "rtrace -s work -- execer count 5 3");
        assert_eq!(
            retvals(&events, "work"),
            vec![207, 1, 3, 5, 7, 9],
            "{target_variant}\n{}",
            show(&events)
        );
        assert_eq!(of_symbol(&events, "entry", "work").len(), 6);
        let execs = of_kind(&events, "exec");
        assert_eq!(execs.len(), 1, "{}", show(&events));
        assert_eq!(str_field(execs[0], "path"), target_str);
        // The exec event comes after execer's call and before count's.
        let position = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
        let exec_at = position(&|e| str_field(e, "event") == "exec");
        let first_count_call = position(&|e| {
            // count's work(0): typed from DWARF, or in hex without it.
            str_field(e, "event") == "entry" && (e["args"][0] == "0" || e["args"][0] == "0x0")
        });
        assert!(exec_at < first_count_call, "{}", show(&events));
    }
}

/// A spec naming the new image's module is pending until the exec.
#[test]
fn exec_arms_a_spec_pending_on_the_new_module() {
    let prog = fixture("execer", Variant::Pie);
    let target = fixture("count", Variant::NoPie);
    let args = [target.to_str().unwrap(), "4"];
    let untraced = run_untraced(&prog, &args);
    // (Named by its path: no directory of PATH holds it.)
    let spec = format!("{}:work", target.display());
    let (run, events) = trace_json("exec_pending", &["-s", &spec], &prog, &args);
    assert_same_as_untraced(&run, &untraced, "rtrace -s count:work -- execer count 4");
    assert_eq!(
        retvals(&events, "work"),
        vec![1, 3, 5, 7],
        "{}",
        show(&events)
    );
    assert!(!run.stderr.contains("never"), "{}", run.stderr);
}
