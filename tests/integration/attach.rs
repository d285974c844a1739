//! Attach mode (`-p PID`) and detach: rtrace attaches to a running fixture,
//! reports its calls, and on SIGINT, SIGTERM or SIGHUP removes every trace
//! of itself. The process must carry on untouched: same code as its files,
//! no tracer, every thread alive, and a normal end when asked to stop.
//!
//! rtrace writes JSON events to its stderr here, so the test waits on lines
//! (events), never on time.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::events::{of_kind, parse_events, show, str_field};
use crate::fixtures::{
    code_matches_files, fixture, process_state, rtrace_bin, threads_of, Run, Spawned, Variant,
};

/// The `TracerPid:` of `pid` from `/proc/PID/status`.
pub fn tracer_pid(pid: i32) -> i32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("TracerPid line")
}

/// Reads JSON events from rtrace's stderr until one satisfies `want`;
/// panics after `timeout` or at end of output.
pub fn wait_event(rtrace: &mut Spawned, timeout: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rtrace.next_stderr_line(left) {
            Ok(line) => {
                if let Some(e) = parse_events(&line).into_iter().find(|e| want(e)) {
                    return e;
                }
            }
            Err(why) => panic!(
                "expected event not seen ({why:?})\n--- stderr so far:\n{}",
                rtrace.stderr_so_far()
            ),
        }
    }
}

/// After a detach signal was sent: waits at most 10 s for the `detach`
/// event, so a lost signal fails quickly and says so.
pub fn wait_detach(rtrace: &mut Spawned, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rtrace.next_stderr_line(left) {
            Ok(line) if line.contains("\"event\":\"detach\"") => return,
            Ok(_) => {}
            Err(why) => panic!(
                "{what}: no detach event within 10 s of the signal ({why:?}); rtrace still running: {}\n--- stderr so far:\n{}",
                matches!(rtrace.child().try_wait(), Ok(None)),
                rtrace.stderr_so_far()
            ),
        }
    }
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |e| str_field(e, "event") == kind
}

/// Attaches to `pid` with `-s work --json`, waits for the attach event and
/// `entries` entry events, stops rtrace with `signal` and checks the detach:
/// exit 0, a detach event, code intact, no tracer, still running. Returns
/// rtrace's run.
fn attach_and_detach(pid: i32, signal: Signal, entries: usize) -> Run {
    let what = format!("rtrace -p {pid} -s work --json, stopped by {signal}");
    let mut rtrace = Spawned::rtrace_attach(&["-s", "work", "--json"], pid);
    let attach = wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
    assert_eq!(attach["pid"], pid, "{what}: {attach}");
    assert_eq!(attach["probes"], 1, "{what}: {attach}");
    for _ in 0..entries {
        wait_event(&mut rtrace, Duration::from_secs(30), is("entry"));
    }
    assert_eq!(
        tracer_pid(pid),
        rtrace.pid(),
        "{what}: the tracer while attached"
    );
    rtrace.signal(signal);
    wait_detach(&mut rtrace, &what);
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{what}: exit status\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{what}\n{}", run.stderr);
    let events = parse_events(&run.stderr);
    assert_eq!(
        of_kind(&events, "detach").len(),
        1,
        "{what}: one detach event\n{}",
        show(&events)
    );
    assert!(
        of_kind(&events, "exit").is_empty() && of_kind(&events, "killed").is_empty(),
        "{what}: the process must not have ended\n{}",
        show(&events)
    );
    // Returns pair with entries by tid; a call in flight at detach has no
    // return, so returns <= entries.
    let n_entries = of_kind(&events, "entry").len();
    let n_returns = of_kind(&events, "return").len();
    assert!(n_entries >= entries && n_returns <= n_entries, "{what}");
    if let Err(e) = code_matches_files(pid) {
        panic!("{what}: after detach: {e}");
    }
    assert_eq!(tracer_pid(pid), 0, "{what}: TracerPid after detach");
    let state = process_state(pid);
    assert!(
        matches!(state, Some('R' | 'S' | 'D')),
        "{what}: state after detach {state:?}"
    );
    run
}

/// SIGTERM to spin: it prints `calls=N` then `done` and exits 0.
fn stop_spin(spin: Spawned) {
    let run = spin.terminate();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(run.code(), 0, "spin status; stdout:\n{}", run.stdout);
    assert_eq!(lines.len(), 4, "spin stdout:\n{}", run.stdout);
    assert!(
        lines[2].starts_with("calls="),
        "spin stdout:\n{}",
        run.stdout
    );
    assert_eq!(lines[3], "done");
    assert_eq!(run.stderr, "");
}

#[test]
fn attach_detach_sigint_five_times() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    for _ in 0..5 {
        attach_and_detach(spin.pid(), Signal::SIGINT, 3);
    }
    stop_spin(spin);
}

#[test]
fn attach_detach_sigterm() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    attach_and_detach(spin.pid(), Signal::SIGTERM, 3);
    attach_and_detach(spin.pid(), Signal::SIGTERM, 3);
    stop_spin(spin);
}

#[test]
fn attach_detach_sighup() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    attach_and_detach(spin.pid(), Signal::SIGHUP, 3);
    attach_and_detach(spin.pid(), Signal::SIGHUP, 3);
    stop_spin(spin);
}

#[test]
fn attach_values_are_consecutive() {
    // spin calls work(i) for i = 0, 1, 2, …: the returns seen while
    // attached are 2*i+1 for consecutive i.
    let prog = fixture("spin", Variant::NoPie);
    let spin = Spawned::start(&prog, &[]);
    let run = attach_and_detach(spin.pid(), Signal::SIGINT, 10);
    let events = parse_events(&run.stderr);
    let rets: Vec<i64> = of_kind(&events, "return")
        .iter()
        .map(|e| e["retval"].as_i64().unwrap())
        .collect();
    assert!(rets.len() >= 5, "{}", show(&events));
    for w in rets.windows(2) {
        assert_eq!(w[1], w[0] + 2, "returns {rets:?}");
    }
    stop_spin(spin);
}

#[test]
fn attach_threads_detach_leaves_all_alive() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &["threads", "4"]);
    let pid = spin.pid();
    let before = threads_of(pid);
    assert_eq!(before.len(), 5, "main + 4 threads: {before:?}");

    let mut rtrace = Spawned::rtrace_attach(&["-s", "work", "--json"], pid);
    let attach = wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
    assert_eq!(attach["threads"], 5, "{attach}");
    let mut tids = BTreeSet::new();
    while tids.len() < 4 {
        let e = wait_event(&mut rtrace, Duration::from_secs(30), is("entry"));
        tids.insert(e["tid"].as_i64().unwrap());
    }
    assert!(
        tids.iter()
            .all(|t| before.contains(&(*t as i32)) && *t != pid as i64),
        "entries from the 4 worker threads: {tids:?} of {before:?}"
    );
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, "SIGINT to rtrace");
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        of_kind(&parse_events(&run.stderr), "detach").len(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(threads_of(pid), before, "threads after detach");
    for tid in &before {
        assert_eq!(tracer_pid(*tid), 0, "thread {tid} still traced");
    }
    code_matches_files(pid).unwrap_or_else(|e| panic!("after detach: {e}"));
    stop_spin(spin);
}

#[test]
fn attach_text_mode_status_line() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let pid = spin.pid();
    let mut rtrace = Spawned::rtrace_attach(&["-s", "work", "--color", "never"], pid);
    let line = rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached"));
    assert_eq!(
        line,
        format!(
            "rtrace: attached to pid {pid} (1 thread), 1 probe armed, returns: {}",
            crate::fixtures::returns_mode()
        )
    );
    rtrace.wait_stderr_line(|l| l.contains("work("));
    rtrace.signal(Signal::SIGINT);
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.lines().any(|l| l == "+++ detached +++"),
        "{}",
        run.stderr
    );
    code_matches_files(pid).unwrap_or_else(|e| panic!("after detach: {e}"));
    stop_spin(spin);
}

#[test]
fn attach_summary_on_detach() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let pid = spin.pid();
    // `--json -c` writes no call, only the summary: a script counts the
    // entries and says when the tenth is seen.
    let mut rtrace = Spawned::rtrace_attach(
        &[
            "-s",
            "work",
            "--json",
            "-c",
            "-x",
            r#"work { @n += 1; if @n == 10 { print("tenth") } }"#,
        ],
        pid,
    );
    wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
    wait_event(&mut rtrace, Duration::from_secs(30), is("print"));
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, "SIGINT to rtrace");
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let events = parse_events(&run.stderr);
    for kind in ["entry", "return"] {
        assert!(of_kind(&events, kind).is_empty(), "{}", show(&events));
    }
    let summary = of_kind(&events, "summary");
    assert_eq!(summary.len(), 1, "{}", show(&events));
    // A completed call is one with a return: every entry the script
    // counted, but one still in flight at the detach.
    let entries = of_kind(&events, "map")
        .iter()
        .find(|m| m["name"] == "@n")
        .and_then(|m| m["value"].as_u64())
        .expect("the script's count");
    assert!(entries >= 10, "{}", show(&events));
    let calls = summary[0]["calls"].as_u64().expect("calls");
    assert!(
        calls == entries || calls + 1 == entries,
        "{}",
        show(&events)
    );
    assert_eq!(summary[0]["missed"], 0, "{}", summary[0]);
    code_matches_files(pid).unwrap_or_else(|e| panic!("after detach: {e}"));
    stop_spin(spin);
}

#[test]
fn sigstop_while_attached_left_stopped_after_detach() {
    let prog = fixture("stopper", Variant::Pie);
    let mut stopper = Spawned::start(&prog, &[]);
    let pid = stopper.pid();
    let mut rtrace = Spawned::rtrace_attach(&["-s", "work", "--json"], pid);
    wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
    wait_event(&mut rtrace, Duration::from_secs(30), is("entry"));
    stopper.signal(Signal::SIGSTOP);
    // The group-stop completes while traced: the kernel reports it to us,
    // the real parent, too.
    assert_eq!(stopper.wait_stopped(), Signal::SIGSTOP);
    assert!(matches!(process_state(pid), Some('T' | 't')));
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, "SIGINT to rtrace");
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(tracer_pid(pid), 0);
    // SPEC: a stopped tracee is left stopped after detach. PTRACE_DETACH
    // wakes the thread, which re-enters the group-stop on its own as long as
    // the stop is in force (`__ptrace_unlink` sets JOBCTL_STOP_PENDING); only
    // a SIGCONT ends it, and ending it leaves a report for the parent. None
    // is there now, and our SIGCONT below is the one that ends it.
    assert!(
        !stopper.continued(),
        "SPEC: a stopped tracee is left stopped after detach"
    );
    code_matches_files(pid).unwrap_or_else(|e| panic!("after detach: {e}"));
    stopper.signal(Signal::SIGCONT);
    stopper.wait_continued();
    let run = stopper.terminate();
    assert_eq!(run.code(), 0, "{}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    assert_eq!(lines[2], "conts=1", "{}", run.stdout);
    assert_eq!(lines[4], "done");
}

/// Attached to a process that is stopped already (SIGSTOP): it stays
/// stopped while traced and after a detach; continued while traced, its hits
/// are reported; it counts the one SIGCONT it got, as untraced.
#[test]
fn attach_to_a_stopped_process() {
    let prog = fixture("stopper", Variant::Pie);
    for cont_while_traced in [false, true] {
        let what = format!("continued while traced: {cont_while_traced}");
        let mut stopper = Spawned::start(&prog, &[]);
        let pid = stopper.pid();
        stopper.signal(Signal::SIGSTOP);
        assert_eq!(stopper.wait_stopped(), Signal::SIGSTOP, "{what}");
        assert_eq!(process_state(pid), Some('T'), "{what}");
        let mut rtrace = Spawned::rtrace_attach(&["-s", "work", "--json"], pid);
        wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
        assert!(matches!(process_state(pid), Some('T' | 't')), "{what}");
        if cont_while_traced {
            stopper.signal(Signal::SIGCONT);
            wait_event(&mut rtrace, Duration::from_secs(30), is("entry"));
        }
        rtrace.signal(Signal::SIGINT);
        wait_detach(&mut rtrace, &what);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        assert_eq!(tracer_pid(pid), 0, "{what}");
        code_matches_files(pid).unwrap_or_else(|e| panic!("{what}: after detach: {e}"));
        if !cont_while_traced {
            // Left stopped: the stop is still in force (no SIGCONT has ended
            // it, see sigstop_while_attached_left_stopped_after_detach), and
            // ours ends it.
            assert!(!stopper.continued(), "{what}: left stopped");
            stopper.signal(Signal::SIGCONT);
            stopper.wait_continued();
        }
        let run = stopper.terminate();
        assert_eq!(run.code(), 0, "{what}: {}", run.stdout);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 5, "{what}: {}", run.stdout);
        assert_eq!(lines[2], "conts=1", "{what}: {}", run.stdout);
        assert_eq!(lines[4], "done");
    }
}

/// The CPUs thread `tid` may run on (`Cpus_allowed_list`).
fn cpus_allowed(tid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

/// `--pin`: while traced, every thread of the process runs on one CPU (the
/// tracer's); after the detach each has its own affinity back.
#[test]
fn pinned_while_traced_and_unpinned_after() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &["threads", "3"]);
    let pid = spin.pid();
    let threads = threads_of(pid);
    let before: Vec<String> = threads.iter().map(|&t| cpus_allowed(t)).collect();
    let mut rtrace = Spawned::rtrace_attach(&["--pin", "-s", "work", "--json"], pid);
    wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
    wait_event(&mut rtrace, Duration::from_secs(30), is("entry"));
    let during: Vec<String> = threads.iter().map(|&t| cpus_allowed(t)).collect();
    assert!(
        during
            .iter()
            .all(|c| c == &during[0] && c.parse::<usize>().is_ok()),
        "one CPU for all: {during:?}"
    );
    assert_eq!(cpus_allowed(rtrace.pid()), during[0], "rtrace's own CPU");
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, "--pin detach");
    assert_eq!(rtrace.wait().code(), 0);
    let after: Vec<String> = threads.iter().map(|&t| cpus_allowed(t)).collect();
    assert_eq!(after, before, "affinity given back");
    let run = spin.terminate();
    assert_eq!(run.code(), 0);
}

/// A probe that is armed but never hit (spin never calls getpid): the
/// tracee makes no ptrace stops, so only the signal itself can wake rtrace.
/// SIGINT sent as soon as the attach event is out must still detach.
#[test]
fn attach_idle_probe_sigint_right_after_attach() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let pid = spin.pid();
    for _ in 0..3 {
        let mut rtrace = Spawned::rtrace_attach(&["-s", "libc:getpid", "--json"], pid);
        let attach = wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
        assert_eq!(attach["probes"], 1, "{attach}");
        rtrace.signal(Signal::SIGINT);
        let what = format!("rtrace -p {pid} -s libc:getpid --json, SIGINT right after attach");
        wait_detach(&mut rtrace, &what);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        assert_eq!(tracer_pid(pid), 0, "{what}");
        code_matches_files(pid).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    stop_spin(spin);
}

/// Several processes at once, as `strace -p A -p B` (and `-p A,B`): each is
/// attached to and said, their calls carry their pids, SIGINT detaches from
/// both (the first's line without a pid, as its other lines), and both run
/// on with their code as in their files. A pid that cannot be attached to
/// fails the whole command, leaving the others untouched.
#[test]
fn several_processes_attached_to_at_once() {
    let prog = fixture("spin", Variant::Pie);
    for form in ["-p A -p B", "-p A,B"] {
        let a = Spawned::start(&prog, &[]);
        let b = Spawned::start(&prog, &[]);
        let (pa, pb) = (a.pid(), b.pid());
        let mut args = vec![
            "-s".to_string(),
            "work".into(),
            "--color".into(),
            "never".into(),
        ];
        match form {
            "-p A -p B" => args.extend(["-p".into(), pa.to_string(), "-p".into(), pb.to_string()]),
            _ => args.extend(["-p".into(), format!("{pa},{pb}")]),
        }
        let mut cmd = std::process::Command::new(crate::fixtures::rtrace_bin());
        cmd.args(&args);
        let mut rtrace = Spawned::command(cmd);
        for pid in [pa, pb] {
            let line = rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached to pid"));
            assert_eq!(
                line,
                format!(
                    "rtrace: attached to pid {pid} (1 thread), 1 probe armed, returns: {}",
                    crate::fixtures::returns_mode()
                ),
                "{form}"
            );
        }
        // A call of each.
        rtrace.wait_stderr_line(|l| l.starts_with(&format!("[pid {pa}] work(")));
        rtrace.wait_stderr_line(|l| l.starts_with(&format!("[pid {pb}] work(")));
        assert_eq!(
            (tracer_pid(pa), tracer_pid(pb)),
            (rtrace.pid(), rtrace.pid())
        );
        rtrace.signal(Signal::SIGINT);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{form}: {}", run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines[lines.len() - 2..],
            [
                "+++ detached +++".to_string(),
                format!("[pid {pb}] +++ detached +++")
            ],
            "{form}: {}",
            run.stderr
        );
        for pid in [pa, pb] {
            code_matches_files(pid).unwrap_or_else(|e| panic!("{form}: pid {pid}: {e}"));
            assert_eq!(tracer_pid(pid), 0, "{form}");
        }
        stop_spin(a);
        stop_spin(b);
    }
    // One that cannot be: an error, and the other is never stopped.
    let a = Spawned::start(&prog, &[]);
    let mut cmd = std::process::Command::new(crate::fixtures::rtrace_bin());
    cmd.args(["-s", "work", "-p", &a.pid().to_string(), "-p", "999999999"]);
    let run = crate::fixtures::run_command(cmd, crate::fixtures::TIMEOUT);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("rtrace: no process with pid 999999999"),
        "{}",
        run.stderr
    );
    assert_eq!(tracer_pid(a.pid()), 0);
    stop_spin(a);
    // --list reads one process.
    let mut cmd = std::process::Command::new(crate::fixtures::rtrace_bin());
    cmd.args(["-l", "work", "-p", "1,2"]);
    let run = crate::fixtures::run_command(cmd, crate::fixtures::TIMEOUT);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "rtrace: --list reads one process: give one -p PID (see 'rtrace --help')\n"
    );
}

/// A program's SIGSEGV handler, entered from a fault of a probed function's
/// first or second instruction, still runs when rtrace detaches. When it
/// returns (the load retried), the program goes on as untraced, fast and
/// int3: the first instruction's fault was delivered at the function's own
/// address, and the second's, in a fast probe's copy of it, returns into
/// that copy, which the detach leaves mapped. Before, the copy was unmapped
/// under the handler, and its return faulted again.
#[test]
fn a_detach_while_a_fault_handler_runs_leaves_it_its_way_back() {
    let prog = fixture("faulter", Variant::Pie);
    for function in ["load_first", "load_second"] {
        for mode in ["--fast", "--int3"] {
            let what = format!("faulter hold {function}, rtrace {mode}");
            let mut cmd = Command::new(&prog);
            cmd.args(["hold", function]);
            let mut program = Spawned::with_stdin(cmd);
            program.wait_stdout_line(|line| line == "ready");
            let pid = program.pid();
            let mut cmd = Command::new(rtrace_bin());
            cmd.args([mode, "-s", function, "--json", "-p", &pid.to_string()]);
            let mut rtrace = Spawned::command(cmd);
            wait_event(&mut rtrace, Duration::from_secs(30), is("attach"));
            program.send("go\n");
            program.wait_stdout_line(|line| line == "in handler");
            rtrace.signal(Signal::SIGINT);
            wait_detach(&mut rtrace, &what);
            let run = rtrace.wait();
            assert_eq!(run.code(), 0, "{what}: rtrace's status\n{}", run.stderr);
            if let Err(e) = code_matches_files(pid) {
                panic!("{what}: after detach: {e}");
            }
            assert_eq!(tracer_pid(pid), 0, "{what}: TracerPid after detach");
            program.send("\n");
            let run = program.wait();
            assert_eq!(
                run.stdout, "ready\nin handler\nfaults=1 got=0\n",
                "{what}: the program's output"
            );
            assert_eq!(run.code(), 0, "{what}: the program's status");
        }
    }
}
