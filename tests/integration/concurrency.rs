//! Threads under tracing, in every step strategy: signals that arrive during
//! a hit, faults raised by the displaced instruction, threads that come and
//! go (the main thread first), exit_group in the middle of hits, threads
//! blocked in system calls. The strategies are int3 probes' (how a
//! breakpoint's displaced instruction runs): every probe here is one
//! (`--int3`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::events::{
    assert_same_as_untraced, of_kind, of_symbol, retvals, show, str_field, trace_json,
};
use crate::fixtures::{fixture, run_untraced, Variant};

const MODES: [&str; 3] = ["auto", "xol", "inplace"];

fn signals_named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    of_kind(events, "signal")
        .into_iter()
        .filter(|e| str_field(e, "signal") == name)
        .collect()
}

/// 2000 queued real-time signals at a thread that hits a probe 20000 times:
/// every signal arrives while a hit is in progress (it is pending when the
/// thread is resumed to step), is held, and is delivered after the step:
/// the program receives exactly 2000, rtrace reports exactly 2000.
#[test]
fn signals_during_steps_are_delivered_once() {
    let prog = fixture("sigstorm", Variant::Pie);
    let args = ["2000", "20000"];
    let untraced = run_untraced(&prog, &args);
    assert_eq!(untraced.stdout, "received=2000 calls=20000\n");
    for mode in MODES {
        let (run, events) = trace_json(
            &format!("sigstorm_{mode}"),
            &["--int3", "--step", mode, "-s", "work", "--entry-only"],
            &prog,
            &args,
        );
        assert_same_as_untraced(&run, &untraced, mode);
        assert_eq!(of_symbol(&events, "entry", "work").len(), 20000, "{mode}");
        assert_eq!(signals_named(&events, "SIGRTMIN").len(), 2000, "{mode}");
    }
}

/// Queued signals with values at four threads that keep hitting a probe,
/// at -O0 (emulated first instruction) and -O2 (stepped out of line): each
/// arrives once, in order, with the code and value it was sent with, in
/// every step mode, and is reported once.
#[test]
fn queued_signals_keep_their_siginfo_and_order_on_every_thread() {
    for variant in [Variant::Pie, Variant::O2] {
        let prog = fixture("sigqueuer", variant);
        let args = ["4", "1500"];
        let untraced = run_untraced(&prog, &args);
        assert_eq!(untraced.stdout, "received=1500 bad=0\n");
        for mode in MODES {
            let (run, events) = trace_json(
                &format!("sigqueuer_{variant}_{mode}"),
                &["--int3", "--step", mode, "-s", "work", "--entry-only"],
                &prog,
                &args,
            );
            assert_same_as_untraced(&run, &untraced, &format!("{variant} {mode}"));
            assert_eq!(
                signals_named(&events, "SIGRTMIN").len(),
                1500,
                "{variant} {mode}"
            );
        }
    }
}

/// The probed function's first instruction faults: the program gets SIGSEGV
/// at the probed address each time, once, and recovers as it does untraced;
/// the faulting calls never return and are not reported as returning.
#[test]
fn fault_in_the_displaced_instruction_reaches_the_program() {
    let prog = fixture("faulter", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "faults=3 sum=15\n");
    for mode in MODES {
        let (run, events) = trace_json(
            &format!("faulter_{mode}"),
            &["--int3", "--step", mode, "-s", "load_first"],
            &prog,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, mode);
        assert_eq!(
            of_symbol(&events, "entry", "load_first").len(),
            8,
            "{mode}\n{}",
            show(&events)
        );
        assert_eq!(
            retvals(&events, "load_first"),
            vec![1, 2, 3, 4, 5],
            "{mode}"
        );
        assert_eq!(signals_named(&events, "SIGSEGV").len(), 3, "{mode}");
    }
}

/// The same fault, fixed up by a handler that returns (it points rdi at a
/// 0): the load is retried, and the handler runs once per fault, fast and
/// int3, as untraced, and sees the fault at the probed address. (A fast
/// probe's detour holds the faulting copy; the step that brings the thread
/// out of it faults again, the same fault, and the signal is delivered at
/// the site, where the return runs the probe again, as a breakpoint's
/// would be hit again.)
#[test]
fn a_fault_fixed_up_by_its_handler_is_delivered_once() {
    let prog = fixture("faulter", Variant::Pie);
    let untraced = run_untraced(&prog, &["retry"]);
    assert_eq!(untraced.stdout, "faults=3 sum=15 off_site=0\n");
    for mode in ["--fast", "--int3"] {
        let (run, events) = trace_json(
            &format!("faulter_retry{mode}"),
            &[mode, "-s", "load_first"],
            &prog,
            &["retry"],
        );
        assert_same_as_untraced(&run, &untraced, mode);
        assert_eq!(signals_named(&events, "SIGSEGV").len(), 3, "{mode}");
        // Eight calls returned; the three faulted runs are entries that
        // never return (the call's return is its retried run's).
        let show = || show(&events);
        assert_eq!(
            of_symbol(&events, "entry", "load_first").len(),
            11,
            "{mode}\n{}",
            show()
        );
        assert_eq!(
            retvals(&events, "load_first"),
            vec![1, 0, 2, 3, 0, 4, 5, 0],
            "{mode}\n{}",
            show()
        );
    }
}

/// The same fault with no handler kills the program as it does untraced.
#[test]
fn unhandled_fault_in_the_displaced_instruction_kills_as_untraced() {
    let prog = fixture("faulter", Variant::Pie);
    let untraced = run_untraced(&prog, &["crash"]);
    for mode in MODES {
        let (run, events) = trace_json(
            &format!("faulter_crash_{mode}"),
            &["--int3", "--step", mode, "-s", "load_first"],
            &prog,
            &["crash"],
        );
        assert_same_as_untraced(&run, &untraced, mode);
        assert_eq!(run.code(), 128 + libc::SIGSEGV, "{mode}");
        assert_eq!(of_symbol(&events, "entry", "load_first").len(), 1, "{mode}");
        assert_eq!(
            of_symbol(&events, "return", "load_first").len(),
            0,
            "{mode}"
        );
        let killed = of_kind(&events, "killed");
        assert_eq!(killed.len(), 1, "{mode}\n{}", show(&events));
        assert_eq!(str_field(killed[0], "signal"), "SIGSEGV");
    }
}

/// 5 waves of 4 threads, each thread calling work 100 times, started by a
/// coordinator after the main thread has called pthread_exit: 20 threads,
/// each with exactly its 100 calls and returns, in order.
#[test]
fn threads_come_and_go_after_the_main_thread_left() {
    let prog = fixture("waves", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "threads=20 total=200000\n");
    for mode in MODES {
        let (run, events) = trace_json(
            &format!("waves_{mode}"),
            &["--int3", "--step", mode, "-s", "work"],
            &prog,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, mode);
        let mut per_thread: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for e in of_symbol(&events, "return", "work") {
            per_thread
                .entry(e["tid"].as_i64().unwrap())
                .or_default()
                .push(e["retval"].as_i64().unwrap());
        }
        assert_eq!(per_thread.len(), 20, "{mode}: {:?}", per_thread.keys());
        let expected: Vec<i64> = (0..100).map(|i| 2 * i + 1).collect();
        for (tid, values) in &per_thread {
            assert_eq!(values, &expected, "{mode}: thread {tid}");
        }
        assert_eq!(of_symbol(&events, "entry", "work").len(), 2000, "{mode}");
        let exits = of_kind(&events, "exit");
        assert_eq!(exits.len(), 1, "{mode}\n{}", show(&events));
        assert_eq!(exits[0]["code"].as_i64(), Some(0));
    }
}

/// exit(3) while three threads hit a probe in a tight loop (some are at a
/// breakpoint or mid-step when the exit comes): rtrace reports status 3 and
/// ends. Five rounds per strategy, for different interleavings.
#[test]
fn exit_group_in_the_middle_of_hits() {
    let prog = fixture("exiter", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    for mode in MODES {
        for round in 0..5 {
            let (run, events) = trace_json(
                &format!("exiter_{mode}_{round}"),
                &["--int3", "--step", mode, "-s", "work"],
                &prog,
                &[],
            );
            assert_same_as_untraced(&run, &untraced, mode);
            let exits = of_kind(&events, "exit");
            assert_eq!(exits.len(), 1, "{mode}\n{}", show(&events));
            assert_eq!(exits[0]["code"].as_i64(), Some(3), "{mode}");
            assert!(of_symbol(&events, "entry", "work").len() >= 3000, "{mode}");
        }
    }
}

/// _exit(7) from one thread while the main thread creates threads: a thread
/// made just as the exit comes stops for rtrace without its creator's clone
/// event (a task killed in the middle of clone does not stop for it).
/// rtrace lets it go, reports status 7 and ends. Before, it waited for the
/// event for ever, and the process with it, in about half of the runs.
/// Twelve rounds each, fast and int3.
#[test]
fn exit_group_while_threads_are_being_created() {
    for mode in ["--fast", "--int3"] {
        for round in 0..12 {
            exits_7(&format!("exitrace{mode}_{round}"), mode, &[]);
        }
    }
}

/// `rtrace --json MODE -s brief -- exitrace ARGS`: the program's output
/// and status are the untraced run's (7), and one exit event says 7.
fn exits_7(test: &str, mode: &str, args: &[&str]) {
    let prog = fixture("exitrace", Variant::Pie);
    let untraced = run_untraced(&prog, args);
    assert_eq!(untraced.code(), 7);
    let (run, events) = trace_json(test, &[mode, "-s", "brief"], &prog, args);
    assert_same_as_untraced(&run, &untraced, test);
    let exits = of_kind(&events, "exit");
    assert_eq!(exits.len(), 1, "{test}\n{}", show(&events));
    assert_eq!(exits[0]["code"].as_i64(), Some(7), "{test}");
}

/// The same `_exit` while the main thread forks: a parent killed in the
/// middle of fork may report the fork event with no child (pid 0). rtrace
/// finds the child among the thread's own, scrubs it and lets it go, and
/// ends with status 7. Before, it registered a task 0 and waited for its
/// first stop for ever (in about 3% of the runs: the stress rounds).
#[test]
fn exit_group_while_children_are_being_forked() {
    for round in 0..crate::fixtures::rounds(200, 30) {
        exits_7(&format!("exitrace_fork_{round}"), "--fast", &["fork"]);
    }
}

/// One thread blocked in read() on a pipe and one in a futex wait while the
/// main thread makes 2000 probed calls, then wakes them: nothing hangs, the
/// blocked read completes once (and is reported once), values are exact.
#[test]
fn threads_blocked_in_system_calls_do_not_hang() {
    let prog = fixture("blocker", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "read=x cond=1 sum=4000000\n");
    for mode in MODES {
        let (run, events) = trace_json(
            &format!("blocker_{mode}"),
            &["--int3", "--step", mode, "-s", "work", "-s", "libc:read"],
            &prog,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, mode);
        let expected: Vec<i64> = (0..2000).map(|i| 2 * i + 1).collect();
        assert_eq!(retvals(&events, "work"), expected, "{mode}");
        assert_eq!(
            retvals(&events, "read"),
            vec![1],
            "{mode}\n{}",
            show(&events)
        );
    }
}
