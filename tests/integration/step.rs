//! How the instruction under a breakpoint runs (`--step auto|emulate|xol|
//! inplace`): every kind of first instruction in `insns` gives the values it
//! gives untraced, in every strategy; emulation costs no extra stop; many
//! threads hitting one probe are each counted exactly.

use std::collections::BTreeMap;
use std::process::Command;

use rtrace::{Handler, Options, Outcome, StepMode};

use crate::events::{assert_same_as_untraced, of_symbol, retvals, show, str_field, trace_json};
use crate::fixtures::{bounded, fixture, run_rtrace, run_untraced, Variant};
use crate::harness_selftest::INSNS_OUTPUT;

/// The functions of `insns` with the value each returns.
const INSNS: [(&str, i64); 19] = [
    ("rip_relative", 42),
    ("call_first", 11),
    ("jmp_first", 3),
    ("jcc_first", 4),
    ("ret_first", 5),
    ("push_first", 6),
    ("endbr_first", 7),
    ("frame_first", 8),
    ("sub_first", 9),
    ("store_first", 10),
    ("lea_first", 42),
    ("icall_first", 12),
    ("ijmp_first", 13),
    ("syscall_first", -1), // the pid: checked apart
    ("rep_first", 14),
    ("jnc_first", 15),
    ("xor_first", 16),
    ("pushf_first", 17),
    ("nop_first", 18),
];

/// Those whose first instruction is emulated.
const EMULATED: [&str; 12] = [
    "call_first",
    "jmp_first",
    "jcc_first",
    "ret_first",
    "push_first",
    "endbr_first",
    "frame_first",
    "sub_first",
    "jnc_first",
    "xor_first",
    "pushf_first",
    "nop_first",
];

fn check_insns(mode: &str, variant: Variant, names: &[&str]) {
    let prog = fixture("insns", variant);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, INSNS_OUTPUT);
    let mut args = vec!["--int3", "--step", mode];
    for name in names {
        args.extend(["-s", name]);
    }
    let test = format!("insns_{mode}_{variant}_{}", names.len());
    let (run, events) = trace_json(&test, &args, &prog, &[]);
    assert_same_as_untraced(&run, &untraced, &format!("--step {mode} insns ({variant})"));
    for name in names {
        let entries = of_symbol(&events, "entry", name);
        assert_eq!(
            entries.len(),
            1,
            "{mode} {variant} {name}\n{}",
            show(&events)
        );
        let values = retvals(&events, name);
        let expected = INSNS.iter().find(|(n, _)| n == name).unwrap().1;
        if expected >= 0 {
            assert_eq!(values, vec![expected], "{mode} {variant} {name}");
        } else {
            let pid = events[0]["pid"].as_i64().unwrap();
            assert_eq!(values, vec![pid], "{mode} {variant} {name}: getpid");
        }
    }
}

fn all_insns() -> Vec<&'static str> {
    INSNS.iter().map(|(n, _)| *n).collect()
}

#[test]
fn every_first_instruction_auto() {
    for variant in [Variant::Pie, Variant::NoPie, Variant::Static] {
        check_insns("auto", variant, &all_insns());
    }
}

#[test]
fn every_first_instruction_out_of_line() {
    for variant in [Variant::Pie, Variant::Static] {
        check_insns("xol", variant, &all_insns());
    }
}

#[test]
fn every_first_instruction_in_place() {
    // All but the system call, which is refused (below).
    let names: Vec<&str> = all_insns()
        .into_iter()
        .filter(|&n| n != "syscall_first")
        .collect();
    check_insns("inplace", Variant::Pie, &names);
}

/// A system call stepped in place could block for good with every other
/// thread stopped: refused, before the program runs, in one line.
#[test]
fn a_system_call_is_never_stepped_in_place() {
    let prog = fixture("insns", Variant::Pie);
    let run = run_rtrace(&["--step", "inplace", "-s", "syscall_first"], &prog, &[]);
    assert_eq!(run.code(), 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(
        lines[0].starts_with("rtrace: ") && lines[0].contains("cannot be stepped in place"),
        "{run:?}"
    );
    assert_eq!(run.stdout, "", "the program never ran");
}

#[test]
fn every_emulated_first_instruction_emulated() {
    check_insns("emulate", Variant::Pie, &EMULATED);
}

#[test]
fn forced_emulation_refuses_what_it_cannot_emulate() {
    let prog = fixture("insns", Variant::Pie);
    let run = run_rtrace(&["--step", "emulate", "-s", "rip_relative"], &prog, &[]);
    assert_eq!(run.code(), 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(lines[0].starts_with("rtrace: "), "{run:?}");
    assert!(
        lines[0].contains("mov eax,"),
        "names the instruction: {run:?}"
    );
    assert!(lines[0].contains("--step auto"), "says what to do: {run:?}");
    assert_eq!(run.stdout, "", "the program never ran");
}

#[test]
fn step_mode_is_checked_by_the_command_line() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["--step", "sideways", "-s", "work"], &prog, &[]);
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(run.stderr.starts_with("rtrace: "), "{run:?}");
}

/// A handler that does nothing: only the stops are counted.
struct Nothing;
impl Handler for Nothing {}

/// The stops of `count N` traced with a probe on `work` in `step` mode.
fn stops(variant: Variant, n: u32, step: StepMode, entry_only: bool) -> u64 {
    bounded(move |session| {
        let mut cmd = Command::new(fixture("count", variant));
        cmd.arg(n.to_string());
        let opts = Options {
            entry_only,
            step,
            ..Options::default()
        };
        let mut tracer = session.launch(&cmd, opts).expect("launch");
        tracer.add_probe("work".parse().unwrap(), Nothing).unwrap();
        assert_eq!(tracer.run().unwrap(), Outcome::Exited(0));
        tracer.stops()
    })
}

/// Per hit: the breakpoint is one stop; stepping the displaced instruction
/// (out of line or in place) is a second; emulating it costs nothing; a
/// return is one more. Measured as the difference between 300 and 100 calls,
/// so the startup's own stops cancel out.
#[test]
fn stops_per_hit_by_strategy() {
    // -O0: work starts with push rbp; CET: with endbr64. Both are emulated.
    for variant in [Variant::Pie, Variant::Cet] {
        let per_hit = |step, entry_only| {
            let extra =
                stops(variant, 300, step, entry_only) - stops(variant, 100, step, entry_only);
            assert_eq!(
                extra % 200,
                0,
                "{variant} {step:?}: {extra} stops for 200 hits"
            );
            extra / 200
        };
        assert_eq!(per_hit(StepMode::Auto, true), 1, "{variant}");
        assert_eq!(per_hit(StepMode::Emulate, true), 1, "{variant}");
        assert_eq!(per_hit(StepMode::Xol, true), 2, "{variant}");
        assert_eq!(per_hit(StepMode::InPlace, true), 2, "{variant}");
        assert_eq!(
            per_hit(StepMode::Auto, false),
            2,
            "{variant}: entry + return"
        );
        assert_eq!(
            per_hit(StepMode::Xol, false),
            3,
            "{variant}: entry, step, return"
        );
    }
}

/// 16 threads × 300 calls of one probed function, in each strategy: every
/// call is reported once, on its own thread, with its return value, in order.
#[test]
fn sixteen_threads_exact_per_thread_in_every_strategy() {
    let prog = fixture("threads", Variant::Pie);
    let untraced = run_untraced(&prog, &["16", "300"]);
    assert_eq!(untraced.stdout, "total=1440000\n");
    for mode in ["auto", "xol", "inplace"] {
        let (run, events) = trace_json(
            &format!("threads16_{mode}"),
            &["--int3", "--step", mode, "-s", "work"],
            &prog,
            &["16", "300"],
        );
        assert_same_as_untraced(&run, &untraced, mode);
        let mut per_thread: BTreeMap<i64, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
        for e in &events {
            let tid = e["tid"].as_i64().unwrap_or(0);
            match str_field(e, "event") {
                "entry" => {
                    let arg = e["args"][0].as_str().unwrap();
                    // `x=N` from DWARF, or the register in hex without it.
                    let arg = match arg.strip_prefix("0x") {
                        Some(hex) => i64::from_str_radix(hex, 16).unwrap(),
                        None => arg.parse().unwrap(),
                    };
                    per_thread.entry(tid).or_default().0.push(arg);
                }
                "return" => per_thread
                    .entry(tid)
                    .or_default()
                    .1
                    .push(e["retval"].as_i64().unwrap()),
                _ => {}
            }
        }
        assert_eq!(
            per_thread.len(),
            16,
            "{mode}: threads {:?}",
            per_thread.keys()
        );
        let args: Vec<i64> = (0..300).collect();
        let rets: Vec<i64> = (0..300).map(|i| 2 * i + 1).collect();
        for (tid, (a, r)) in &per_thread {
            assert_eq!(a, &args, "{mode}: entries of thread {tid}");
            assert_eq!(r, &rets, "{mode}: returns of thread {tid}");
        }
    }
}
