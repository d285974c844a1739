//! What a program or a script cannot do to rtrace: keep it from stopping.
//! A script block that never ends (with `--script-ops 0`, no budget) is
//! stopped by SIGINT or SIGTERM, rtrace detaches and the program runs on; a
//! program that writes over its fast-probe ring gets a warning, its probes
//! back as int3 breakpoints, nothing made up in the trace, and a clean
//! detach.
//!
//! Every wait is on a line, an event or a process state, with a deadline.

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::attach::{tracer_pid, wait_detach, wait_event};
use crate::events::{of_kind, of_symbol, parse_events, show, str_field};
use crate::fast::our_mappings;
use crate::fixtures::{
    code_matches_files, fixture, process_state, rounds, rtrace_bin, run_untraced, Spawned, Variant,
};

/// A block that counts its runs and, from the second, never ends.
const RUNAWAY: &str = "work { @n += 1; if @n >= 2 { loop { } } }";

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |e| str_field(e, "event") == kind
}

/// Waits (at most 10 s) until thread `pid` is in a tracing stop: the hit
/// whose handler is running keeps it there.
fn wait_traced_stop(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = process_state(pid);
        if state == Some('t') {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: pid {pid} never stopped at the runaway hit (state {state:?})"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What rtrace said after the signal: exit 0, one detach, the stopped
/// block named with the signal, and the script's global as it was (the
/// block ran twice).
fn assert_stopped_cleanly(run: &crate::fixtures::Run, signal: Signal, what: &str) {
    assert_eq!(run.code(), 0, "{what}: rtrace's status\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{what}\n{}", run.stderr);
    let events = parse_events(&run.stderr);
    assert_eq!(
        of_kind(&events, "detach").len(),
        1,
        "{what}\n{}",
        show(&events)
    );
    let warnings: Vec<&str> = of_kind(&events, "warning")
        .iter()
        .map(|e| str_field(e, "message"))
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "script line 1, column 35: block work stopped by {}",
            signal.as_str()
        )],
        "{what}\n{}",
        show(&events)
    );
    let maps = of_kind(&events, "map");
    assert_eq!(maps.len(), 1, "{what}\n{}", show(&events));
    assert_eq!(maps[0]["name"], "@n", "{what}");
    assert_eq!(maps[0]["value"], 2, "{what}");
    // The first call was printed whole; the second's entry too (`-s`), and
    // its return when the call, let go once the block stopped, returned
    // before the detach.
    assert_eq!(
        of_symbol(&events, "entry", "work").len(),
        2,
        "{what}\n{}",
        show(&events)
    );
    let returns = of_symbol(&events, "return", "work").len();
    assert!((1..=2).contains(&returns), "{what}\n{}", show(&events));
}

/// spin, asked to end: `calls=N`, `done`, exit 0.
fn assert_spin_ended(run: &crate::fixtures::Run, what: &str) {
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(run.code(), 0, "{what}: spin's status\n{}", run.stdout);
    assert_eq!(lines.len(), 4, "{what}: spin's stdout\n{}", run.stdout);
    assert!(lines[0].starts_with("pid="), "{what}: {}", run.stdout);
    assert_eq!(lines[1], "ready", "{what}");
    assert!(lines[2].starts_with("calls="), "{what}: {}", run.stdout);
    assert_eq!(lines[3], "done", "{what}");
}

/// `--script-ops 0` and a loop that never ends, attached to spin: SIGINT,
/// then (another time) SIGTERM, stops the block, rtrace detaches within the
/// wait for its detach event and exits 0, the program's code is its files'
/// again, it has no tracer and runs on to its own end.
#[test]
fn a_runaway_block_without_a_budget_stops_at_sigint_or_sigterm() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let what = format!("attached, {signal}");
        let spin = Spawned::start(&fixture("spin", Variant::Pie), &[]);
        let pid = spin.pid();
        let mut rtrace = Spawned::rtrace_attach(
            &["--script-ops", "0", "-x", RUNAWAY, "-s", "work", "--json"],
            pid,
        );
        wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
        // The first call's return is out: the next hit is the runaway one.
        wait_event(&mut rtrace, Duration::from_secs(30), is("return"));
        wait_traced_stop(pid, &what);
        rtrace.signal(signal);
        wait_detach(&mut rtrace, &what);
        let run = rtrace.wait();
        assert_stopped_cleanly(&run, signal, &what);
        if let Err(e) = code_matches_files(pid) {
            panic!("{what}: after detach: {e}");
        }
        assert_eq!(tracer_pid(pid), 0, "{what}");
        assert!(
            matches!(process_state(pid), Some('R' | 'S')),
            "{what}: {:?}",
            process_state(pid)
        );
        let run = spin.terminate();
        assert_spin_ended(&run, &what);
    }
}

/// The same in launch mode: SIGTERM to rtrace stops the block and detaches,
/// as it does without a script, then is passed on to the program rtrace
/// launched (as strace does). spin ends on SIGTERM as it does untraced, and
/// rtrace exits with its status; the program's end is the last event.
#[test]
fn a_runaway_block_in_a_launched_program_stops_at_sigterm() {
    let what = "launched, SIGTERM";
    let mut cmd = Command::new(rtrace_bin());
    cmd.args([
        "--script-ops",
        "0",
        "-x",
        RUNAWAY,
        "-s",
        "work",
        "--json",
        "--",
    ])
    .arg(fixture("spin", Variant::Pie));
    let mut rtrace = Spawned::command(cmd);
    let line = rtrace.wait_stdout_line(|l| l.starts_with("pid="));
    let pid: i32 = line["pid=".len()..].parse().unwrap();
    wait_event(&mut rtrace, Duration::from_secs(30), is("return"));
    wait_traced_stop(pid, what);
    rtrace.signal(Signal::SIGTERM);
    let run = rtrace.wait();
    assert_stopped_cleanly(&run, Signal::SIGTERM, what);
    assert_spin_ended(&run, what);
    let events = parse_events(&run.stderr);
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| ["detach", "exit", "killed"].contains(&str_field(e, "event")))
        .collect();
    let kinds: Vec<&str> = ends.iter().map(|e| str_field(e, "event")).collect();
    assert_eq!(kinds, ["detach", "exit"], "{what}\n{}", show(&events));
    assert_eq!(ends[1]["code"], 0, "{what}");
}

/// The `work` entries of `events`, by argument.
fn work_args(events: &[Value], kind: &str) -> Vec<i64> {
    of_symbol(events, kind, "work")
        .iter()
        .map(|e| {
            let arg = e["args"][0].as_str().unwrap_or_default();
            arg.trim_start_matches("x=").parse().unwrap_or(-1)
        })
        .collect()
}

/// scribbler fills its ring with 0xff, random bytes and zeros between
/// calls. rtrace says once that the ring is corrupt, reports nothing it
/// did not see made (no lost count, no call twice or made up: the calls
/// before the scribbling, then whatever calls came after the probe went
/// back to int3, each once), and the calls after the switch exactly; the
/// program's output and status are its own.
#[test]
fn a_ring_written_over_is_reported_once_and_its_probes_go_back_to_int3() {
    let prog = fixture("scribbler", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "ready\nsum=1836\n");
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["--fast", "-s", "work", "--json", "--"])
        .arg(&prog);
    let mut rtrace = Spawned::with_stdin(cmd);
    rtrace.wait_stdout_line(|l| l == "ready");
    // Every record of the first ten calls read before the ring is
    // written over.
    for _ in 0..10 {
        wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "return" && str_field(e, "symbol") == "work"
        });
    }
    rtrace.send("go\n");
    let run = rtrace.wait();
    assert_eq!(run.stdout, untraced.stdout, "{}", run.stderr);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let events = parse_events(&run.stderr);
    let modes = of_kind(&events, "probe");
    assert_eq!(modes.len(), 1, "{}", show(&events));
    assert_eq!(modes[0]["mode"], "fast", "{}", show(&events));
    let pid = of_kind(&events, "attach")[0]["pid"].as_i64().unwrap();
    let warnings = of_kind(&events, "warning");
    assert_eq!(warnings.len(), 1, "{}", show(&events));
    let message = str_field(warnings[0], "message");
    let head = format!("the fast probes' ring of pid {pid} is corrupt (");
    assert!(message.starts_with(&head), "{message}");
    assert!(
        message.ends_with(
            "): the program wrote over it; what it holds is not read any more, and its fast \
             probes go back to int3 breakpoints"
        ),
        "{message}"
    );
    // Before the scribbling: 0..9. Then, once the probe is an int3 again,
    // the rest of the scribbling rounds' calls (100..105, each once, a
    // suffix: none made through the ring is believed). Then 20..29.
    let args = work_args(&events, "entry");
    let during: Vec<i64> = args
        .iter()
        .copied()
        .filter(|a| (100..106).contains(a))
        .collect();
    let first = 106 - during.len() as i64;
    let expected: Vec<i64> = (0..10).chain(first..106).chain(20..30).collect();
    assert_eq!(args, expected, "{}", show(&events));
    let retvals = crate::events::retvals(&events, "work");
    let expected: Vec<i64> = expected.iter().map(|x| 2 * x + 1).collect();
    assert_eq!(retvals, expected, "{}", show(&events));
}

/// scribbler writes over its ring on and on while rtrace is attached: the
/// warning comes, calls are reported again (by int3), SIGINT detaches
/// cleanly (no mapping or byte of rtrace's left, no tracer), and the
/// program ends as it would have, having made at least as many calls as
/// were reported, and none lost.
#[test]
fn a_program_writing_over_its_ring_on_and_on_is_detached_cleanly() {
    for round in 0..rounds(20, 3) {
        let what = format!("round {round}");
        let program = Spawned::start(&fixture("scribbler", Variant::Pie), &["forever"]);
        let pid = program.pid();
        let before = our_mappings(pid);
        let mut rtrace = Spawned::rtrace_attach(&["--fast", "-s", "work", "--json"], pid);
        wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "warning" && str_field(e, "message").contains("is corrupt")
        });
        // Reported again, by int3.
        for _ in 0..3 {
            wait_event(&mut rtrace, Duration::from_secs(30), is("return"));
        }
        rtrace.signal(Signal::SIGINT);
        wait_detach(&mut rtrace, &what);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        if let Err(e) = code_matches_files(pid) {
            panic!("{what}: after detach: {e}");
        }
        assert_eq!(our_mappings(pid), before, "{what}: mappings after detach");
        assert_eq!(tracer_pid(pid), 0, "{what}");
        let events = parse_events(&run.stderr);
        let warnings = of_kind(&events, "warning");
        assert_eq!(warnings.len(), 1, "{what}: {}", show(&events));
        let entries = work_args(&events, "entry");
        let run = program.terminate();
        assert_eq!(run.code(), 0, "{what}: {}", run.stdout);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{what}: {}", run.stdout);
        assert_eq!(lines[3], "done", "{what}");
        let calls: i64 = lines[2].trim_start_matches("calls=").parse().unwrap();
        assert!(
            entries.len() as i64 <= calls,
            "{what}: {} entries of {calls} calls",
            entries.len()
        );
        let mut seen = entries.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), entries.len(), "{what}: a call reported twice");
        assert!(
            entries.iter().all(|&x| (0..calls).contains(&x)),
            "{what}: a call never made: {entries:?}"
        );
    }
}
