//! What a script cannot do to rtrace: keep it from stopping. A script
//! block that never ends (with `--script-ops 0`, no budget) is stopped by
//! SIGINT or SIGTERM, rtrace detaches and the program runs on.
//!
//! Every wait is on a line, an event or a process state, with a deadline.

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::attach::{tracer_pid, wait_detach, wait_event};
use crate::events::{of_kind, of_symbol, parse_events, show, str_field};
use crate::fixtures::{code_matches_files, fixture, process_state, rtrace_bin, Spawned, Variant};

/// A block that counts its runs and, from the second, never ends.
const RUNAWAY: &str = "work { n += 1; if n >= 2 { loop { } } }";

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
            "-x #1:1: block work stopped by {}",
            signal.as_str()
        )],
        "{what}\n{}",
        show(&events)
    );
    let maps = of_kind(&events, "map");
    assert_eq!(maps.len(), 1, "{what}\n{}", show(&events));
    assert_eq!(maps[0]["name"], "n", "{what}");
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

/// The same in launch mode: SIGINT to rtrace stops the block and detaches,
/// as Ctrl-C does without a script; rtrace then waits for the program it
/// launched, which runs on untraced, and exits with its status.
#[test]
fn a_runaway_block_in_a_launched_program_stops_at_sigint() {
    let what = "launched, SIGINT";
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
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, what);
    assert_eq!(tracer_pid(pid), 0, "{what}");
    // rtrace waits for its child meanwhile: it ends when spin does.
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let run = rtrace.wait();
    assert_stopped_cleanly(&run, Signal::SIGINT, what);
    assert_spin_ended(&run, what);
}
