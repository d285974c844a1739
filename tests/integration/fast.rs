//! Fast probes (`--fast`): sites patched with a jump to a detour that
//! records each hit into a ring shared with rtrace. Every hit counted
//! exactly and rendered as an int3 hit would be; the program's output and
//! status unchanged; what cannot be fast falls back to int3 and says why;
//! forks, execs, longjmp, exceptions and threads; a detach while detours are
//! running leaves the code as its files and no mapping of ours behind.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use rtrace::{Capture, Fast, Handler, Hit, Options, Outcome, Site, Tracer};

use crate::attach::{tracer_pid, wait_detach, wait_event};
use crate::events::{
    assert_same_as_untraced, of_kind, of_symbol, show, str_field, temp_path, trace_json,
};
use crate::fixtures::{
    bounded, code_matches_files, fixture, maps, normalize, process_state, rtrace_bin, run_command,
    run_rtrace, run_untraced, symbol_value, Spawned, Variant, TIMEOUT,
};
use crate::harness_selftest::INSNS_OUTPUT;

/// The functions of `insns` that are fast in every build: their first
/// instructions move into a detour, a call among them as a push of its
/// return address and a jump.
const FAST_INSNS: [&str; 14] = [
    "rip_relative",
    "call_first",
    "jcc_first",
    "push_first",
    "endbr_first",
    "frame_first",
    "sub_first",
    "store_first",
    "lea_first",
    "icall_first",
    "rep_first",
    "jnc_first",
    "xor_first",
    "nop_first",
];
/// The functions of `insns` whose first instruction never runs elsewhere: a
/// system call, `pushfq`.
const INT3_INSNS: [&str; 2] = ["syscall_first", "pushf_first"];
/// The functions of `insns` whose second instruction is a `ud2` or that are
/// a lone `ret`, packed with no padding between them (no hop): `jmp_first`
/// and `ijmp_first` take an instruction pun, whose jump lands 2 GiB or so
/// before the code: above a PIE, below the address space for an executable
/// at 0x400000; `ret_first` would pun over the next function's first bytes,
/// where another probe's breakpoint is.
const PUN_INSNS: [(&str, &str); 3] = [
    ("jmp_first", "would leave the address space"),
    ("ret_first", "another breakpoint is in the bytes"),
    ("ijmp_first", "would leave the address space"),
];

/// The `probe` events, by probe: its mode.
fn modes(events: &[Value]) -> BTreeMap<String, String> {
    of_kind(events, "probe")
        .into_iter()
        .map(|e| {
            (
                str_field(e, "probe").to_string(),
                str_field(e, "mode").to_string(),
            )
        })
        .collect()
}

/// Every kind of first instruction in `insns`, at once: the ones a jump can
/// replace are fast (RIP-relative loads and stores, relative branches,
/// `rep movsb` relocated into the detour), the others int3 with a reason;
/// each function is hit exactly once and computes what it does untraced.
#[test]
fn every_first_instruction_fast_or_int3() {
    for variant in [Variant::Pie, Variant::NoPie, Variant::Static] {
        let prog = fixture("insns", variant);
        let untraced = run_untraced(&prog, &[]);
        assert_eq!(untraced.stdout, INSNS_OUTPUT);
        let mut args = vec!["--fast", "--entry-only"];
        let puns = PUN_INSNS.map(|(name, _)| name);
        for name in FAST_INSNS.iter().chain(&INT3_INSNS).chain(&puns) {
            args.extend(["-s", name]);
        }
        let (run, events) = trace_json(&format!("fast_insns_{variant}"), &args, &prog, &[]);
        assert_same_as_untraced(&run, &untraced, &format!("--fast insns ({variant})"));
        let modes = modes(&events);
        for name in FAST_INSNS {
            assert_eq!(modes[name], "fast", "{variant} {name}\n{}", show(&events));
        }
        for name in INT3_INSNS {
            assert_eq!(modes[name], "int3", "{variant} {name}");
            let e = of_kind(&events, "probe")
                .into_iter()
                .find(|e| str_field(e, "probe") == name)
                .unwrap();
            assert!(!e["reasons"][0].as_str().unwrap().is_empty(), "{e}");
        }
        for (name, why) in PUN_INSNS {
            let e = of_kind(&events, "probe")
                .into_iter()
                .find(|e| str_field(e, "probe") == name)
                .unwrap();
            let fast = variant == Variant::Pie && name != "ret_first";
            match fast {
                true => assert_eq!(modes[name], "fast", "{variant} {name}: {e}"),
                false => {
                    assert_eq!(modes[name], "int3", "{variant} {name}");
                    assert!(e["reasons"][0].as_str().unwrap().contains(why), "{e}");
                }
            }
        }
        for name in FAST_INSNS.iter().chain(&INT3_INSNS).chain(&puns) {
            assert_eq!(
                of_symbol(&events, "entry", name).len(),
                1,
                "{variant} {name}\n{}",
                show(&events)
            );
        }
    }
}

/// Each site of a probe says how it runs. `pu*_first` matches push_first
/// (fast) and pushf_first (int3: `pushfq` moves the flags through the
/// stack), `lea_first` has one fast site: the JSON `probe` event of the
/// glob lists both sites in address order, with their symbol, address,
/// mode and, for the int3 one, why; the text says the glob once, and
/// nothing of the probe whose sites are all fast. With `--int3` nothing is
/// said at all. Every call is traced either way.
#[test]
fn each_site_of_a_probe_says_how_it_runs() {
    let prog = fixture("insns", Variant::NoPie);
    let untraced = run_untraced(&prog, &[]);
    let push = symbol_value(&prog, "push_first");
    let pushf = symbol_value(&prog, "pushf_first");
    let lea = symbol_value(&prog, "lea_first");
    assert!(push < pushf, "the fixture's layout");
    let specs = ["--entry-only", "-s", "pu*_first", "-s", "lea_first"];
    let why = "'pushfq' moves the flags through the stack (a thread stepped out of the detour \
               would get the trap flag)";

    let (run, events) = trace_json(
        "fast_site_modes",
        &[&["--fast"], &specs[..]].concat(),
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "--fast pu*_first");
    let probes = of_kind(&events, "probe");
    assert_eq!(probes.len(), 2, "{}", show(&events));
    let glob = probes
        .iter()
        .find(|e| e["probe"] == "pu*_first")
        .expect("pu*_first");
    assert_eq!(glob["mode"], "mixed", "{glob}");
    assert_eq!(
        (glob["fast_sites"].as_u64(), glob["int3_sites"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        glob["sites"],
        json!([
            {"symbol": "push_first", "address": format!("{push:#x}"), "mode": "fast"},
            {"symbol": "pushf_first", "address": format!("{pushf:#x}"), "mode": "int3", "reason": why},
        ]),
        "{glob}"
    );
    let one = probes
        .iter()
        .find(|e| e["probe"] == "lea_first")
        .expect("lea_first");
    assert_eq!(
        one["sites"],
        json!([{"symbol": "lea_first", "address": format!("{lea:#x}"), "mode": "fast"}]),
        "{one}"
    );
    for f in ["push_first", "pushf_first", "lea_first"] {
        assert_eq!(
            of_symbol(&events, "entry", f).len(),
            1,
            "{f}\n{}",
            show(&events)
        );
    }

    let said = |run: &crate::fixtures::Run| -> Vec<String> {
        run.stderr
            .lines()
            .filter(|l| l.starts_with("rtrace: probe "))
            .map(str::to_string)
            .collect()
    };
    let run = run_rtrace(&[&["--fast"], &specs[..]].concat(), &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "--fast pu*_first, text");
    assert_eq!(
        said(&run),
        ["rtrace: probe pu*_first: fast at 1 site, int3 at 1 (1 '…' moves the flags through the \
          stack (a thread stepped out of the detour would get the trap flag): pushf_first)"],
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("_first(").count(), 3, "{}", run.stderr);

    let run = run_rtrace(&[&["--int3"], &specs[..]].concat(), &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "--int3 pu*_first, text");
    assert_eq!(said(&run), Vec::<String>::new(), "{}", run.stderr);
    assert_eq!(run.stderr.matches("_first(").count(), 3, "{}", run.stderr);
    let (_, events) = trace_json(
        "int3_site_modes",
        &[&["--int3"], &specs[..]].concat(),
        &prog,
        &[],
    );
    assert!(of_kind(&events, "probe").is_empty(), "{}", show(&events));
    assert_eq!(of_kind(&events, "entry").len(), 3, "{}", show(&events));
}

/// The text rtrace prints for `args -- prog prog_args`, normalized, without
/// the lines that say which probes are fast.
fn trace_text(args: &[&str], prog: &std::path::Path, prog_args: &[&str]) -> String {
    let run = run_rtrace(args, prog, prog_args);
    assert_eq!(run.code(), 0, "{args:?}\n{}", run.stderr);
    normalize(&run.stderr)
        .lines()
        .filter(|l| !l.starts_with("rtrace: probe "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Fast hits are printed exactly as int3 hits: DWARF-typed arguments
/// (integers of every width, enums, bools, stack arguments, C strings:
/// long, cut, NULL) and, for strings the detour could not read (a pointer to
/// nothing, a string running into an unmapped page), the pointer, with no
/// signal reaching the program.
#[test]
fn fast_hits_render_as_int3_hits() {
    for (name, prog_args, specs) in [
        (
            "typed",
            &[][..],
            &[
                "narrow", "wide", "wide_max", "negate", "measure", "upper", "paint", "name_of",
                "flip", "move", "area", "mixed", "eight", "nothing",
            ][..],
        ),
        ("peeker", &["3"][..], &["peek"][..]),
    ] {
        let prog = fixture(name, Variant::Pie);
        // Entries alone, then calls with their typed return values.
        for entry_only in [true, false] {
            let mut int3 = vec!["--int3"];
            if entry_only {
                int3.push("--entry-only");
            }
            for s in specs {
                int3.extend(["-s", s]);
            }
            let mut fast = int3.clone();
            fast[0] = "--fast";
            let slow_text = trace_text(&int3, &prog, prog_args);
            let fast_text = trace_text(&fast, &prog, prog_args);
            assert_eq!(fast_text, slow_text, "{name}");
            assert!(!fast_text.contains("SIGSEGV"), "{fast_text}");
            if !entry_only {
                assert!(fast_text.contains(") = "), "{fast_text}");
            }
            // Every site fast: no probe is said to stay int3.
            let run = run_rtrace(&fast, &prog, prog_args);
            for s in specs {
                assert!(
                    !run.stderr.contains(&format!("rtrace: probe {s}:")),
                    "{name} {s}\n{}",
                    run.stderr
                );
            }
        }
    }
}

/// 16 threads × 1000 calls, at -O0 and -O2, entries alone and with their
/// returns: every call recorded once, by the thread that made it, and
/// every return with the value it returned (the sum of a thread's is
/// 1000²).
#[test]
fn sixteen_threads_are_counted_exactly() {
    for (variant, entry_only) in [
        (Variant::Pie, true),
        (Variant::O2, true),
        (Variant::Pie, false),
        (Variant::O2, false),
    ] {
        let prog = fixture("threads", variant);
        let args = ["16", "1000"];
        let untraced = run_untraced(&prog, &args);
        let mut rtrace_args = vec!["--fast", "-s", "work"];
        if entry_only {
            rtrace_args.push("--entry-only");
        }
        let (run, events) = trace_json(
            &format!("fast_threads_{variant}_{entry_only}"),
            &rtrace_args,
            &prog,
            &args,
        );
        assert_same_as_untraced(&run, &untraced, &format!("threads {variant}"));
        assert_eq!(modes(&events)["work"], "fast");
        let entries = of_symbol(&events, "entry", "work");
        assert_eq!(entries.len(), 16000, "{variant}");
        let pid = events[0]["pid"].as_i64().unwrap();
        let mut by_tid: BTreeMap<i64, usize> = BTreeMap::new();
        for e in &entries {
            *by_tid.entry(e["tid"].as_i64().unwrap()).or_default() += 1;
        }
        assert_eq!(by_tid.len(), 16, "{variant}: {by_tid:?}");
        assert!(by_tid.values().all(|&n| n == 1000), "{variant}: {by_tid:?}");
        assert!(
            !by_tid.contains_key(&pid),
            "the main thread calls no work()"
        );
        assert!(of_kind(&events, "warning").is_empty(), "{}", show(&events));
        if !entry_only {
            let mut sums: BTreeMap<i64, i64> = BTreeMap::new();
            for e in of_symbol(&events, "return", "work") {
                *sums.entry(e["tid"].as_i64().unwrap()).or_default() +=
                    e["retval"].as_i64().unwrap();
            }
            assert_eq!(sums.len(), 16, "{variant}: {sums:?}");
            assert!(
                sums.values().all(|&s| s == 1_000_000),
                "{variant}: {sums:?}"
            );
        }
    }
}

/// fork without -f: the child runs unharmed (its jump and ring are gone:
/// it records nothing into its parent's ring); with -f it gets a ring of
/// its own, and its calls are its own.
#[test]
fn fork_children_have_their_own_ring_or_none() {
    let prog = fixture("forker", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "child=7\n");
    for (follow, entry_only) in [(false, true), (true, true), (false, false), (true, false)] {
        let mut args = vec!["--fast", "-s", "work"];
        if follow {
            args.push("-f");
        }
        if entry_only {
            args.push("--entry-only");
        }
        let (run, events) = trace_json(
            &format!("fast_forker_{follow}_{entry_only}"),
            &args,
            &prog,
            &[],
        );
        assert_eq!(modes(&events)["work"], "fast");
        if !entry_only {
            // Each call returns once, in the process that made it.
            let calls = |kind| {
                let mut v: Vec<i64> = of_symbol(&events, kind, "work")
                    .iter()
                    .map(|e| e["pid"].as_i64().unwrap())
                    .collect();
                v.sort();
                v
            };
            assert_eq!(calls("entry"), calls("return"), "{}", show(&events));
        }
        assert_same_as_untraced(&run, &untraced, &format!("forker -f={follow}"));
        let entries = of_symbol(&events, "entry", "work");
        let pid = events[0]["pid"].as_i64().unwrap();
        let parent: Vec<i64> = entries
            .iter()
            .filter(|e| e["pid"] == pid)
            .map(|e| e["tid"].as_i64().unwrap())
            .collect();
        assert_eq!(parent, vec![pid, pid], "{}", show(&events));
        let child: Vec<&&Value> = entries.iter().filter(|e| e["pid"] != pid).collect();
        if follow {
            let child_pid = of_kind(&events, "fork")[0]["child"].as_i64().unwrap();
            assert_eq!(child.len(), 3, "{}", show(&events));
            assert!(child
                .iter()
                .all(|e| e["pid"] == child_pid && e["tid"] == child_pid));
        } else {
            assert!(child.is_empty(), "{}", show(&events));
        }
    }
}

/// Children made every way (fork, vfork, clone with and without CLONE_VM,
/// posix_spawn, system, popen), followed or not: the calls reported, and
/// whose they are, are those int3 probes report. A vfork child runs on its
/// parent's thread pointer while the parent waits: its records are its own
/// (or, not followed, silent); a CLONE_VM child on its parent's thread
/// pointer beside it suspends the fast probes while it lives.
#[test]
fn spawned_children_are_seen_as_with_int3() {
    let prog = fixture("spawner", Variant::Pie);
    let count = fixture("count", Variant::Pie);
    let count = count.to_str().unwrap();
    // (whose: the root process or another, the argument or the value
    // returned), sorted.
    let calls = |events: &[Value], kind: &str| {
        let root = events[0]["pid"].as_i64().unwrap();
        let mut v: Vec<(bool, String)> = of_symbol(events, kind, "work")
            .iter()
            .map(|e| {
                assert_eq!(e["pid"], e["tid"], "{e}");
                let value = match kind {
                    "entry" => e["args"][0].as_str().unwrap().to_string(),
                    _ => e["retval"].to_string(),
                };
                (e["pid"] == root, value)
            })
            .collect();
        v.sort();
        v
    };
    for mode in [
        "fork",
        "vfork",
        "vforkexec",
        "clone",
        "clonevm",
        "spawn",
        "system",
        "popen",
    ] {
        let args = [mode, count, "3", "5"];
        let untraced = run_untraced(&prog, &args);
        for (follow, entry_only) in [(false, true), (true, true), (false, false), (true, false)] {
            let mut int3 = vec!["--int3", "-s", "work"];
            if entry_only {
                int3.push("--entry-only");
            }
            if follow {
                int3.push("-f");
            }
            let mut fast = int3.clone();
            fast[0] = "--fast";
            let what = format!("spawner {mode} -f={follow} --entry-only={entry_only}");
            let (_, slow) = trace_json(
                &format!("fast_spawner_{mode}_{follow}_{entry_only}_int3"),
                &int3,
                &prog,
                &args,
            );
            let (run, events) = trace_json(
                &format!("fast_spawner_{mode}_{follow}_{entry_only}"),
                &fast,
                &prog,
                &args,
            );
            assert_same_as_untraced(&run, &untraced, &what);
            for kind in ["entry", "return"] {
                assert_eq!(
                    calls(&events, kind),
                    calls(&slow, kind),
                    "{what} {kind}\n{}",
                    show(&events)
                );
            }
        }
    }
}

/// An untraced vfork child runs through its parent's detours in its
/// parent's memory: those that count or time calls in the program (`-c`;
/// with `--entry-only`, counted only) count none of its calls, as its
/// records are not reported. Followed (`-f`), its calls are counted. The
/// counts are those int3 probes make.
#[test]
fn a_vfork_childs_calls_are_counted_only_when_followed() {
    let prog = fixture("spawner", Variant::Pie);
    let count = fixture("count", Variant::Pie);
    let count = count.to_str().unwrap();
    let calls = |stderr: &str| -> u64 {
        let line = stderr
            .lines()
            .find(|l| l.ends_with(" [work]"))
            .unwrap_or_else(|| panic!("no summary row for work:\n{stderr}"));
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    for mode in ["vfork", "vforkexec"] {
        let args = [mode, count, "3", "5"];
        let untraced = run_untraced(&prog, &args);
        for (follow, entry_only) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut given = vec!["-c", "-s", "work"];
            if follow {
                given.push("-f");
            }
            if entry_only {
                given.push("--entry-only");
            }
            let what = format!("spawner {mode} {given:?}");
            let fast = run_rtrace(&[&["--fast"][..], &given].concat(), &prog, &args);
            let int3 = run_rtrace(&[&["--int3"][..], &given].concat(), &prog, &args);
            assert_same_as_untraced(&fast, &untraced, &what);
            let (fast, int3) = (calls(&fast.stderr), calls(&int3.stderr));
            // The parent's work(1) and work(2); followed, a vfork child's
            // work(20) and work(21).
            let expected = match (follow, mode) {
                (false, _) => Some(2),
                (true, "vfork") => Some(4),
                _ => None,
            };
            assert_eq!(fast, int3, "{what}");
            if let Some(n) = expected {
                assert_eq!(fast, n, "{what}");
            }
        }
    }
}

/// exec: the old image's records are read before it goes, the new image's
/// probes are patched afresh.
#[test]
fn exec_gives_the_new_image_its_own_fast_probes() {
    let prog = fixture("execer", Variant::Pie);
    let count = fixture("count", Variant::Pie);
    let args = [count.to_str().unwrap(), "5"];
    let untraced = run_untraced(&prog, &args);
    for entry_only in [true, false] {
        let mut rtrace_args = vec!["--fast", "-s", "work"];
        if entry_only {
            rtrace_args.push("--entry-only");
        }
        let (run, events) = trace_json(
            &format!("fast_execer_{entry_only}"),
            &rtrace_args,
            &prog,
            &args,
        );
        assert_same_as_untraced(&run, &untraced, "execer");
        let exec_at = events
            .iter()
            .position(|e| str_field(e, "event") == "exec")
            .expect("an exec event");
        for kind in ["entry", "return"] {
            let before = of_symbol(&events[..exec_at], kind, "work");
            let after = of_symbol(&events[exec_at..], kind, "work");
            let (b, a) = match (kind, entry_only) {
                ("return", true) => (0, 0),
                _ => (1, 5),
            };
            assert_eq!(before.len(), b, "{kind}\n{}", show(&events));
            assert_eq!(after.len(), a, "{kind}\n{}", show(&events));
        }
    }
}

/// longjmp out of probed calls, and C++ exceptions thrown through them:
/// entries are counted as with int3 probes, and the program's results are
/// its own (the detours leave nothing on the stack).
#[test]
fn longjmp_and_exceptions_through_fast_probes() {
    for (name, specs) in [
        ("longjmper", &["escape", "work"][..]),
        (
            "thrower",
            &["inner", "middle", "outer", "rethrower", "outer2"][..],
        ),
    ] {
        let prog = fixture(name, Variant::Pie);
        let untraced = run_untraced(&prog, &[]);
        let mut int3 = vec!["--int3", "--entry-only"];
        for s in specs {
            int3.extend(["-s", s]);
        }
        let mut fast = int3.clone();
        fast[0] = "--fast";
        let (_, slow) = trace_json(&format!("fast_{name}_int3"), &int3, &prog, &[]);
        let (run, events) = trace_json(&format!("fast_{name}"), &fast, &prog, &[]);
        assert_same_as_untraced(&run, &untraced, name);
        for s in specs {
            assert_eq!(modes(&events)[*s], "fast", "{name} {s}");
            assert_eq!(
                of_symbol(&events, "entry", s).len(),
                of_symbol(&slow, "entry", s).len(),
                "{name} {s}"
            );
        }
    }
}

/// What cannot be fast says why: a return probe (without --entry-only), a
/// handler that changes registers (--inject), a probe in the middle of
/// another's jump.
#[test]
fn what_falls_back_to_int3_says_why() {
    let prog = fixture("count", Variant::NoPie);
    let run = run_rtrace(
        &[
            "--fast",
            "--entry-only",
            "--inject",
            "twice:retval=5",
            "-s",
            "work",
        ],
        &prog,
        &["3"],
    );
    assert_eq!(run.stdout, "sum=9\ntwice=5\n");
    assert!(
        run.stderr
            .contains("rtrace: probe twice: int3 (fault injection changes registers)"),
        "{}",
        run.stderr
    );
    // work is fast: nothing is said of it.
    assert!(
        !run.stderr.contains("rtrace: probe work:"),
        "{}",
        run.stderr
    );
    // work+0x1 is inside the bytes a jump at work would replace.
    let (run, events) = trace_json(
        "fast_nested",
        &["--fast", "--entry-only", "-s", "work", "-s", "work+0x1"],
        &prog,
        &["4"],
    );
    assert_eq!(run.stdout, "sum=16\ntwice=41\n");
    assert_eq!(modes(&events)["work"], "int3", "{}", show(&events));
    assert_eq!(of_symbol(&events, "entry", "work").len(), 4);
    assert_eq!(of_symbol(&events, "hit", "work").len(), 4);
}

/// Counts hits, fast or not, and keeps their first arguments; takes fast
/// hits with no captures.
#[derive(Default)]
struct Seen {
    fast: u64,
    int3: u64,
    args: Vec<u64>,
}

struct Counter(Rc<RefCell<Seen>>);

impl Handler for Counter {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let mut c = self.0.borrow_mut();
        if hit.is_fast() {
            c.fast += 1;
        } else {
            c.int3 += 1;
        }
        c.args.push(hit.arg(0).unwrap());
        Ok(())
    }
    fn fast(&mut self, _: &Site, _: Option<&rtrace::symbols::Module>) -> Fast {
        Fast::Yes(Capture::default())
    }
}

const FAST_ENTRIES: Options = Options {
    entry_only: true,
    follow_forks: false,
    step: rtrace::StepMode::Auto,
    fast: true,
    first_hit: false,
    overflow: rtrace::Overflow::Block,
    pass_signal_on: false,
    returns: rtrace::ReturnMode::Stub,
};

/// A fast hit takes no stop: the stops of a run do not grow with its calls.
#[test]
fn fast_hits_take_no_stops() {
    let run = |n: u32| {
        bounded(move |session| {
            let mut cmd = Command::new(fixture("count", Variant::Pie));
            cmd.arg(n.to_string());
            let mut tracer = session.launch(&cmd, FAST_ENTRIES).expect("launch");
            let seen = Rc::new(RefCell::new(Seen::default()));
            tracer
                .add_probe("work".parse().unwrap(), Counter(seen.clone()))
                .unwrap();
            assert_eq!(tracer.run().expect("run"), Outcome::Exited(0));
            let s = seen.borrow();
            (s.fast, s.int3, tracer.stops())
        })
    };
    let (fast_small, slow_small, stops_small) = run(100);
    let (fast_big, slow_big, stops_big) = run(20000);
    assert_eq!((fast_small, slow_small), (100, 0));
    assert_eq!((fast_big, slow_big), (20000, 0));
    assert!(
        stops_big < stops_small + 50,
        "stops: {stops_small} for 100 calls, {stops_big} for 20000"
    );
}

/// Steps the tracer until `done` holds; panics if tracing ends first.
fn step_until(tracer: &mut Tracer, done: impl Fn() -> bool) {
    while !done() {
        if let Some(outcome) = tracer.process_next().expect("process_next") {
            panic!("tracing ended early: {outcome:?}");
        }
    }
}

/// A probe added inside a fast probe's jump while the program runs (spin
/// calls work(0), work(1), … every millisecond) takes the jump off: from
/// then on work is an int3 (the new probe, at an instruction boundary past
/// it, may be fast itself), and every call is seen exactly once.
#[test]
fn a_breakpoint_inside_a_jump_takes_it_off() {
    bounded(move |session| {
        let cmd = Command::new(fixture("spin", Variant::Pie));
        let mut tracer = session.launch(&cmd, FAST_ENTRIES).expect("launch");
        let work = Rc::new(RefCell::new(Seen::default()));
        tracer
            .add_probe("work".parse().unwrap(), Counter(work.clone()))
            .unwrap();
        step_until(&mut tracer, || work.borrow().fast >= 20);
        let inside = Rc::new(RefCell::new(Seen::default()));
        tracer
            .add_probe("work+0x1".parse().unwrap(), Counter(inside.clone()))
            .unwrap();
        step_until(&mut tracer, || {
            let i = inside.borrow();
            i.fast + i.int3 >= 20 && work.borrow().int3 >= 20
        });
        nix::sys::signal::kill(tracer.pid(), Signal::SIGTERM).unwrap();
        assert_eq!(tracer.run().expect("run"), Outcome::Exited(0));
        let w = work.borrow();
        assert!(
            w.fast >= 20 && w.int3 >= 20,
            "fast {}, int3 {}",
            w.fast,
            w.int3
        );
        let mut args = w.args.clone();
        args.sort_unstable();
        let n = args.len() as u64;
        assert_eq!(args, (0..n).collect::<Vec<_>>(), "every call once");
    });
}

/// The anonymous executable mappings and memfds of `pid`.
pub fn our_mappings(pid: i32) -> (usize, usize) {
    let maps = maps(pid).unwrap();
    let anon_x = maps
        .iter()
        .filter(|m| m.perms.contains('x') && m.path.is_empty())
        .count();
    let memfd = maps.iter().filter(|m| m.path.contains("memfd:")).count();
    (anon_x, memfd)
}

/// Attach to spin's four threads with fast probes and detach, 21 times:
/// each time the code equals its files again, the ring and the detour areas
/// are gone, the process has no tracer and runs on; at the end it stops
/// normally.
#[test]
fn detach_while_detours_are_hot() {
    let spin = Spawned::start(&fixture("spin", Variant::Pie), &["threads", "4"]);
    let pid = spin.pid();
    let before = our_mappings(pid);
    for round in 0..21 {
        let what = format!("round {round}");
        let mut rtrace =
            Spawned::rtrace_attach(&["--fast", "--entry-only", "-s", "work", "--json"], pid);
        let mode = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "probe"
        });
        assert_eq!(mode["mode"], "fast", "{what}: {mode}");
        let during = our_mappings(pid);
        assert_eq!(during.1, 1, "{what}: the ring while attached");
        assert!(during.0 > before.0, "{what}: a detour area while attached");
        for _ in 0..20 {
            wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                str_field(e, "event") == "entry"
            });
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
        assert!(matches!(process_state(pid), Some('R' | 'S')), "{what}");
    }
    let run = spin.terminate();
    assert_eq!(run.code(), 0, "{}", run.stdout);
    assert!(run.stdout.ends_with("done\n"), "{}", run.stdout);
}

/// Four threads calling work() back to back (each call spends much of its
/// time in the detour or the return stub, where a detach is likely to find
/// a thread): attach
/// with fast probes and detach, again and again while the program runs.
/// Each time the code is its files' again, and at the end every one of the
/// 4 × 10⁹ calls computed what it does untraced (the total), with no trap
/// flag or detour address left behind.
#[test]
fn detach_from_threads_inside_their_detours() {
    let prog = fixture("threads", Variant::Pie);
    let mut cmd = Command::new(&prog);
    cmd.args(["4", "1000000000"]);
    let program = Spawned::command(cmd);
    let pid = program.pid();
    let before = our_mappings(pid);
    let mut rounds = 0;
    // (Alive: running or asleep, in the kernel's disk sleep too: a program
    // just started may be paging its code in.)
    while rounds < 10 && matches!(process_state(pid), Some('R' | 'S' | 'D')) {
        // Every other round with returns: threads are then found in the
        // return stub too, and slots holding it get their return address
        // back.
        let args: &[&str] = match rounds % 2 {
            0 => &["--fast", "--entry-only", "-c", "-s", "work"],
            _ => &["--fast", "-c", "-s", "work"],
        };
        let mut rtrace = Spawned::rtrace_attach(args, pid);
        // The jump is written before the attach line.
        let line = rtrace
            .wait_stderr_line(|l| l.starts_with("rtrace: attached") || l.contains("no process"));
        if line.contains("no process") {
            break;
        }
        rtrace.signal(Signal::SIGINT);
        let run = rtrace.wait();
        // work was fast: nothing is said of it.
        assert!(
            !run.stderr.contains("rtrace: probe work:"),
            "{}",
            run.stderr
        );
        if !run.stderr.contains("+++ detached +++") {
            // The program ended first.
            assert!(
                run.stderr.contains("+++ exited with 0 +++"),
                "{}",
                run.stderr
            );
            break;
        }
        assert_eq!(run.code(), 0, "round {rounds}: {}", run.stderr);
        if let Err(e) = code_matches_files(pid) {
            panic!("round {rounds}: {e}");
        }
        assert_eq!(our_mappings(pid), before, "round {rounds}");
        rounds += 1;
    }
    assert!(rounds >= 3, "only {rounds} rounds before the program ended");
    let run = program.wait();
    assert_eq!(run.stdout, "total=4000000000000000000\n", "{run:?}");
    assert_eq!(run.code(), 0);
}

/// Signals at threads that keep running through detours: each is
/// delivered once, in order, with its siginfo (a thread inside a detour
/// leaves it first), as untraced; and every hit of the single-threaded storm
/// is recorded.
#[test]
fn signals_reach_threads_out_of_their_detours() {
    let prog = fixture("sigqueuer", Variant::Pie);
    let run = run_rtrace(
        &["--fast", "--entry-only", "-c", "-s", "work"],
        &prog,
        &["4", "1500"],
    );
    assert_eq!(run.stdout, "received=1500 bad=0\n", "{}", run.stderr);
    assert_eq!(run.code(), 0);
    // work is fast: nothing is said of it.
    assert!(
        !run.stderr.contains("rtrace: probe work:"),
        "{}",
        run.stderr
    );
    let prog = fixture("sigstorm", Variant::Pie);
    let args = ["2000", "20000"];
    let untraced = run_untraced(&prog, &args);
    let (run, events) = trace_json(
        "fast_sigstorm",
        &["--fast", "--entry-only", "-s", "work"],
        &prog,
        &args,
    );
    assert_same_as_untraced(&run, &untraced, "sigstorm");
    assert_eq!(of_symbol(&events, "entry", "work").len(), 20000);
    let signals = of_kind(&events, "signal")
        .into_iter()
        .filter(|e| str_field(e, "signal") == "SIGRTMIN")
        .count();
    assert_eq!(signals, 2000);
}

/// Attach and detach again and again while a program creates threads as
/// fast as it can: rtrace's system calls in the tracee (the scratch page,
/// the ring, the detour areas) are made by a thread that may be stopped at
/// its `clone3` event, inside the call. That thread must go on with the
/// call's own result (the new thread's id): given anything else, glibc
/// would make the thread a second time, on the same stack. The program's
/// output is its untraced output, with int3 probes and fast ones.
#[test]
fn attach_while_threads_are_being_created() {
    let prog = fixture("churn", Variant::Pie);
    let untraced = run_untraced(&prog, &["100"]);
    assert_eq!(untraced.stdout, "rounds=100 total=20000\n");
    for fast in [false, true] {
        let mut cmd = Command::new(&prog);
        cmd.arg("40000");
        let mut program = Spawned::command(cmd);
        let pid = program.pid();
        // Past its dynamic linker: making threads.
        program.wait_stderr_line(|l| l == "ready");
        let mut rounds = 0;
        while rounds < 12 && matches!(process_state(pid), Some('R' | 'S' | 'D')) {
            let mut rtrace_args = vec!["-c", "-s", "work"];
            rtrace_args.push(if fast { "--fast" } else { "--int3" });
            let mut rtrace = Spawned::rtrace_attach(&rtrace_args, pid);
            let line = rtrace.wait_stderr_line(|l| {
                l.starts_with("rtrace: attached") || l.contains("no process")
            });
            if line.contains("no process") {
                break;
            }
            rtrace.signal(Signal::SIGINT);
            let run = rtrace.wait();
            if !run.stderr.contains("+++ detached +++") {
                break;
            }
            assert_eq!(run.code(), 0, "round {rounds}: {}", run.stderr);
            rounds += 1;
        }
        assert!(rounds >= 5, "only {rounds} rounds before the program ended");
        let run = program.wait();
        assert_eq!(
            run.stdout, "rounds=40000 total=8000000\n",
            "fast={fast}: {run:?}"
        );
        assert_eq!(run.code(), 0);
    }
}

/// All of libc, fast, under a real program: its output and status are its
/// untraced ones. glibc's hand-written string functions jump into each
/// other (`mempcpy` into `memmove` just past its first instruction), and
/// many functions begin with a 1-byte instruction, have a jump table or a
/// call among their first bytes: hops, puns and moved calls make them fast
/// all the same. At least 99.5% of the sites are fast: with returns
/// watched, all but the functions that read their own return address
/// (their returns are watched at their return sites, by int3); entries
/// alone, every one (under `-c`, which needs no capture).
#[test]
fn all_of_libc_fast_under_a_real_program() {
    let ls = std::path::Path::new("/bin/ls");
    let args = ["-la", "/usr/lib", "/usr/bin"];
    let untraced = run_untraced(ls, &args);
    assert_eq!(untraced.code(), 0);
    for (extra, int3) in [(&["--entry-only"][..], 0), (&[][..], 9)] {
        let mut rtrace_args = vec!["--fast", "-c", "-s", "libc:*"];
        rtrace_args.extend(extra);
        let name = format!("libc_all_{}", extra.len());
        let (run, events) = trace_json(&name, &rtrace_args, ls, &args);
        assert_same_as_untraced(&run, &untraced, &format!("libc:* {extra:?}"));
        let probe = of_kind(&events, "probe");
        assert_eq!(probe.len(), 1, "{extra:?}");
        let fast = probe[0]["fast_sites"].as_u64().unwrap();
        assert_eq!(probe[0]["int3_sites"], int3, "{extra:?}: {}", probe[0]);
        assert!(
            fast * 1000 >= (fast + int3) * 995,
            "{extra:?}: {fast} fast, {int3} int3"
        );
        if int3 > 0 {
            let reasons = probe[0]["reasons"].to_string();
            assert!(
                reasons.contains("9 the function reads its own return address"),
                "{reasons}"
            );
        }
    }
    // With the JSON printer rendering every call (of a shorter listing):
    // the strings and buffers it shows are copied by the detours and the
    // stub, and the same nine stay int3.
    let args = ["/"];
    let untraced = run_untraced(ls, &args);
    let (run, events) = trace_json("libc_all_printed", &["--fast", "-s", "libc:*"], ls, &args);
    assert_same_as_untraced(&run, &untraced, "libc:* printed");
    let probe = of_kind(&events, "probe");
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0]["int3_sites"], 9, "{}", probe[0]);
    let reasons = probe[0]["reasons"].to_string();
    assert!(
        reasons.contains("9 the function reads its own return address"),
        "{reasons}"
    );
    // Each call of read and write, with the bytes it read or wrote; ls's
    // reads of /proc/filesystems are tail calls of another libc function
    // (their returns share its slot: what they filled is copied all the
    // same).
    let written = of_symbol(&events, "entry", "write");
    assert!(!written.is_empty(), "{}", show(&events));
    for w in written {
        assert!(w["args"][1].as_str().unwrap().starts_with('"'), "{w}");
    }
    let read = of_symbol(&events, "return", "read");
    assert!(!read.is_empty(), "{}", show(&events));
    for r in read {
        assert!(
            r["filled"].as_str().is_some_and(|f| f.starts_with('"')),
            "{r}"
        );
    }
}

/// All of libc with address space randomisation off (as under gdb or
/// `setarch -R`), where libc lies just under the stack: a pun whose next
/// bytes make a large displacement would jump past the top of the address
/// space, so its next instruction is evicted where it can be (`psiginfo`,
/// `_IO_sgetn`, `dlinfo`: one instruction of 5 bytes or more after the
/// first). Nine more sites stay int3 than with randomisation on: their
/// next instruction is shorter than a jump, in a function that jumps
/// through a register. The output is the untraced run's, and `_IO_sgetn`
/// (md5sum reads its file with it), evicted, counts the calls the int3
/// probe counts.
#[test]
fn all_of_libc_with_randomisation_off() {
    let norandom = |args: &[&str]| {
        let mut cmd = Command::new("setarch");
        cmd.arg("-R").args(args);
        cmd
    };
    let ls = ["/bin/ls", "/"];
    let untraced = run_command(norandom(&ls), TIMEOUT);
    assert_eq!(untraced.code(), 0, "{}", untraced.stderr);
    let out = temp_path("libc_all_norandom.jsonl");
    let rtrace = rtrace_bin();
    let mut args = vec![rtrace.to_str().unwrap(), "--json", "-o"];
    args.extend([out.to_str().unwrap(), "--fast", "-s", "libc:*", "--"]);
    args.extend(ls);
    let run = run_command(norandom(&args), TIMEOUT);
    assert_same_as_untraced(&run, &untraced, "setarch -R rtrace -s libc:* -- ls /");
    let events = crate::events::read_events(&out);
    let probe = of_kind(&events, "probe");
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0]["int3_sites"], 18, "{}", probe[0]);
    let reasons = probe[0]["reasons"].to_string();
    for want in [
        "9 the function reads its own return address",
        "9 an instruction pun's jump would leave the address space",
    ] {
        assert!(reasons.contains(want), "{reasons}");
    }
    let modes: BTreeMap<&str, &str> = probe[0]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["symbol"].as_str().unwrap(), s["mode"].as_str().unwrap()))
        .collect();
    for evicted in ["psiginfo", "_IO_sgetn", "dlinfo"] {
        assert_eq!(modes.get(evicted), Some(&"fast"), "{evicted}");
    }

    // A file read through _IO_sgetn, counted both ways.
    let file = temp_path("libc_norandom.bin");
    let bytes: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let md5 = ["/usr/bin/md5sum", file.to_str().unwrap()];
    let untraced = run_command(norandom(&md5), TIMEOUT);
    assert_eq!(untraced.code(), 0, "{}", untraced.stderr);
    let mut counts = Vec::new();
    for mode in ["--fast", "--int3"] {
        let out = temp_path(&format!("libc_norandom_sgetn{mode}.jsonl"));
        let mut args = vec![rtrace.to_str().unwrap(), "--json", "-o"];
        args.extend([out.to_str().unwrap(), mode, "-s", "libc:_IO_sgetn", "--"]);
        args.extend(md5);
        let run = run_command(norandom(&args), TIMEOUT);
        assert_same_as_untraced(&run, &untraced, &format!("setarch -R rtrace {mode} md5sum"));
        let events = crate::events::read_events(&out);
        let entries = of_symbol(&events, "entry", "_IO_sgetn").len();
        let returns = of_symbol(&events, "return", "_IO_sgetn").len();
        if mode == "--fast" {
            let probe = of_kind(&events, "probe");
            assert_eq!(probe[0]["mode"], "fast", "{}", probe[0]);
        }
        counts.push((mode, entries, returns));
    }
    assert!(counts[0].1 > 10, "{counts:?}");
    assert_eq!(
        (counts[0].1, counts[0].2),
        (counts[1].1, counts[1].2),
        "{counts:?}"
    );
}

/// All of libstdc++ under a C++ program that throws, catches and rethrows:
/// its output and status are its untraced ones, and at least 99% of the
/// sites are fast; the ones that are not are rtrace's own breakpoints
/// (`__cxa_begin_catch`, where the calls an exception abandons are given
/// their return addresses back).
#[test]
fn all_of_libstdcxx_fast_under_a_cpp_program() {
    let prog = fixture("thrower", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.code(), 0);
    let (run, events) = trace_json(
        "libstdcxx_all",
        &["--fast", "-c", "-s", "libstdc++:*"],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "libstdc++:*");
    let probe = of_kind(&events, "probe");
    assert_eq!(probe.len(), 1);
    let fast = probe[0]["fast_sites"].as_u64().unwrap();
    let int3 = probe[0]["int3_sites"].as_u64().unwrap();
    assert!(fast > 1000, "{}", probe[0]);
    assert!(fast * 100 >= (fast + int3) * 99, "{fast} fast, {int3} int3");
    for reason in probe[0]["reasons"].as_array().unwrap() {
        let reason = reason.as_str().unwrap();
        assert!(
            reason.contains("a breakpoint of its own"),
            "{reason}\n{}",
            probe[0]
        );
    }
}

/// What a handler that only aggregates is given: hits and calls one by one
/// (`on_entry`, `on_return`), and hits counted or calls timed in the
/// program (`on_aggregate`).
#[derive(Default)]
struct Tally {
    entries: u64,
    returns: u64,
    /// Hits counted in the program.
    counted: u64,
    /// Calls timed in the program, their total, extremes and bucketed
    /// count.
    calls: u64,
    total: Duration,
    min: Option<Duration>,
    max: Duration,
    bucketed: u64,
    /// `on_aggregate` calls.
    reports: u64,
}

struct Counting(Rc<RefCell<Tally>>);

impl Handler for Counting {
    fn on_entry(&mut self, _: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().entries += 1;
        Ok(())
    }
    fn on_return(&mut self, _: &mut rtrace::Return<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().returns += 1;
        Ok(())
    }
    fn on_aggregate(&mut self, _: &Site, counts: &rtrace::Aggregate) -> rtrace::Result<()> {
        let mut t = self.0.borrow_mut();
        t.counted += counts.hits;
        t.reports += 1;
        if let Some(times) = &counts.times {
            t.calls += counts.calls;
            t.total += times.total;
            t.min = Some(t.min.map_or(times.min, |m| m.min(times.min)));
            t.max = t.max.max(times.max);
            t.bucketed += times.log2_ns.iter().sum::<u64>();
        }
        Ok(())
    }
    fn fast(&mut self, _: &Site, _: Option<&rtrace::symbols::Module>) -> Fast {
        Fast::Aggregate
    }
}

/// `hot 8 100000` traced fast with `entry_only` as given, `work` probed by
/// a [`Counting`] handler and, `with_recorder`, by a [`Counter`] that
/// wants each hit: what the first was given, and the second's (fast, int3)
/// hits.
fn aggregated(entry_only: bool, with_recorder: bool) -> (Tally, (u64, u64)) {
    bounded(move |session| {
        let mut cmd = Command::new(fixture("hot", Variant::O2));
        cmd.args(["8", "100000"]);
        let opts = Options {
            entry_only,
            ..FAST_ENTRIES
        };
        let mut tracer = session.launch(&cmd, opts).expect("launch");
        let tally = Rc::new(RefCell::new(Tally::default()));
        tracer
            .add_probe("work".parse().unwrap(), Counting(tally.clone()))
            .unwrap();
        let seen = Rc::new(RefCell::new(Seen::default()));
        if with_recorder {
            tracer
                .add_probe("work".parse().unwrap(), Counter(seen.clone()))
                .unwrap();
        }
        assert_eq!(tracer.run().expect("run"), Outcome::Exited(0));
        let t = std::mem::take(&mut *tally.borrow_mut());
        let s = seen.borrow();
        (t, (s.fast, s.int3))
    })
}

/// A handler that only counts (`Fast::Aggregate`) on a fast entry probe:
/// the program counts the hits itself, and the handler gets them all
/// through `on_aggregate` (8 threads × 100,000 calls: 800,000), none
/// through `on_entry`. With a second handler on the same site that wants
/// each hit (`Fast::Yes`), both get every hit through `on_entry` and
/// nothing is counted in the program.
#[test]
fn hits_counted_in_the_program_reach_on_aggregate() {
    let (t, _) = aggregated(true, false);
    assert_eq!((t.entries, t.counted), (0, 800_000));
    assert!(t.reports >= 1);
    let (t, recorded) = aggregated(true, true);
    assert_eq!((t.entries, t.counted, t.reports), (800_000, 0, 0));
    assert_eq!(recorded, (800_000, 0));
}

/// A handler that only aggregates (`Fast::Aggregate`) on a fast function
/// probe that watches returns: the program times the calls itself (the
/// detour keeps the entry's time, the return stub adds the duration to the
/// site's row), and the handler gets every call through `on_aggregate`
/// (8 threads × 100,000 calls: 800,000), none through `on_entry` or
/// `on_return`; the histogram's buckets add up to the calls, and the
/// average lies between the shortest and the longest. With a second
/// handler that wants each hit, both get every call one by one and
/// nothing is timed in the program.
#[test]
fn calls_timed_in_the_program_reach_on_aggregate() {
    let (t, _) = aggregated(false, false);
    assert_eq!(
        (t.entries, t.returns, t.calls, t.counted),
        (0, 0, 800_000, 0)
    );
    assert_eq!(t.bucketed, 800_000);
    let min = t.min.expect("some calls");
    let average = t.total / 800_000;
    assert!(
        min <= average && average <= t.max,
        "{min:?} {average:?} {:?}",
        t.max
    );
    let (t, recorded) = aggregated(false, true);
    assert_eq!((t.entries, t.returns, t.calls), (800_000, 800_000, 0));
    assert_eq!(recorded, (800_000, 0));
}

/// A child forked, and not followed, inside a function reached by a tail
/// call from a function whose return an int3 probe watches (`forktail`:
/// outer, an int3 probe, jumps to forkret, a fast one): its slot holds the
/// fast probes' return stub over the int3 trampoline, and the child gets
/// both layers back, returns through outer as untraced and exits with its
/// result (the parent checks it). It used to get the trampoline back, not
/// mapped in it, and die of SIGSEGV.
#[test]
fn a_child_forked_under_both_kinds_of_return_probe_returns_as_untraced() {
    let prog = fixture("forktail", Variant::O2);
    let untraced = crate::fixtures::run_untraced(&prog, &["5"]);
    assert_eq!(untraced.stdout, "children=5 ok=5\n");
    let mut cmd = Command::new(crate::fixtures::rtrace_bin());
    cmd.args(["--fast", "-s", "outer", "-s", "forkret", "--"])
        .arg(&prog)
        .arg("5");
    let run = crate::fixtures::run_command(cmd, crate::fixtures::TIMEOUT);
    // forkret is fast: nothing is said of it.
    assert!(
        !run.stderr.contains("rtrace: probe forkret:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("rtrace: probe outer: int3"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, untraced.stdout, "{}", run.stderr);
    assert_eq!(run.code(), 0, "{}", run.stderr);
}

/// dlsym reached by tail calls through both kinds of return probe in one
/// slot (`symlayer`: outer, an int3 probe, jumps to findsym, a fast one,
/// which jumps to dlsym): the slot holds the fast probes' return stub
/// over the int3 trampoline, and dlsym finds its caller's module, as
/// untraced (`found=200`), with dlsym probed and without, counted (`-c`)
/// and printed. findsym's call is chained to outer's and returns with
/// it: 200 calls each, none missed, as with int3 probes alone. (The int3
/// call used to be taken for one a call instruction had overwritten and
/// dropped, and dlsym got the trampoline for its caller: found=0.)
#[test]
fn dlsym_under_both_kinds_of_return_probe_finds_its_caller() {
    let prog = fixture("symlayer", Variant::O2);
    let untraced = run_untraced(&prog, &["200"]);
    assert_eq!(untraced.stdout, "found=200\n");
    for also in [&[][..], &["-s", "dlsym"]] {
        for count in [true, false] {
            let mut cmd = Command::new(crate::fixtures::rtrace_bin());
            cmd.args(["--fast", "-s", "outer", "-s", "findsym"])
                .args(also);
            if count {
                cmd.arg("-c");
            }
            cmd.arg("--").arg(&prog).arg("200");
            let run = crate::fixtures::run_command(cmd, crate::fixtures::TIMEOUT);
            let what = format!("{also:?} count={count}: {}", run.stderr);
            assert!(run.stderr.contains("rtrace: probe outer: int3"), "{what}");
            // findsym is fast: nothing is said of it.
            assert!(!run.stderr.contains("rtrace: probe findsym:"), "{what}");
            assert_eq!(run.stdout, untraced.stdout, "{what}");
            assert_eq!(run.code(), 0, "{what}");
            assert!(!run.stderr.contains("warning"), "{what}");
            let rows: Vec<&str> = run.stderr.lines().collect();
            for (f, n) in [("outer", 200), ("findsym", 200), ("dlsym", 201)] {
                if f == "dlsym" && also.is_empty() {
                    continue;
                }
                let seen = if count {
                    let row = rows
                        .iter()
                        .find(|l| l.ends_with(&format!(" {f} [{f}]")))
                        .unwrap_or_else(|| panic!("no row for {f}: {what}"));
                    let words: Vec<&str> = row.split_whitespace().collect();
                    assert_eq!(words[5], "0", "{f} missed: {what}");
                    words[0].parse::<usize>().unwrap()
                } else {
                    let resumed = format!("... {f} resumed = ");
                    let done = format!("] {f}(");
                    rows.iter()
                        .filter(|l| {
                            l.contains(&resumed) || (l.contains(&done) && !l.ends_with("..."))
                        })
                        .count()
                };
                assert_eq!(seen, n, "{f}: {what}");
            }
        }
    }
}

/// rdi, rbx and rsp as a hit has them, and whether it was fast.
type Seen4 = (u64, u64, u64, bool);

/// What a fast hit's registers read as, for a handler that asks for `regs`.
struct Registers {
    regs: Option<rtrace::RegSet>,
    seen: Rc<RefCell<Vec<Seen4>>>,
}

impl Handler for Registers {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let r = hit.regs().raw();
        self.seen
            .borrow_mut()
            .push((r.rdi, r.rbx, r.rsp, hit.is_fast()));
        Ok(())
    }
    fn fast(&mut self, _: &Site, _: Option<&rtrace::symbols::Module>) -> Fast {
        let mut c = Capture::default();
        if let Some(regs) = self.regs {
            c.registers(regs);
        }
        Fast::Yes(c)
    }
}

/// A handler that asks for rdi alone gets rdi and the stack pointer in
/// each fast hit, and the registers it did not ask for as 0 (the records
/// carry no more); one that says nothing gets every register, rbx (main's
/// loop keeps a value there) included.
#[test]
fn a_fast_hit_carries_the_registers_its_handler_asked_for() {
    let run = |regs: Option<rtrace::RegSet>| {
        bounded(move |session| {
            let mut cmd = Command::new(fixture("count", Variant::O2));
            cmd.arg("50");
            let mut tracer = session.launch(&cmd, FAST_ENTRIES).expect("launch");
            let seen = Rc::new(RefCell::new(Vec::new()));
            tracer
                .add_probe(
                    "work".parse().unwrap(),
                    Registers {
                        regs,
                        seen: seen.clone(),
                    },
                )
                .unwrap();
            assert_eq!(tracer.run().expect("run"), Outcome::Exited(0));
            let seen = seen.borrow().clone();
            seen
        })
    };
    let rdi = rtrace::Gpr::arg(0).unwrap();
    let few = run(Some(rtrace::RegSet::NONE.with(rdi)));
    let all = run(None);
    for seen in [&few, &all] {
        let args: Vec<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(args, (0..50).collect::<Vec<u64>>());
        assert!(seen.iter().all(|s| s.3 && s.2 % 8 == 0), "{seen:x?}");
    }
    assert!(few.iter().all(|s| s.1 == 0), "{few:x?}");
    assert!(all.iter().any(|s| s.1 != 0), "{all:x?}");
}

/// What a probe saw at its int3 hits: (ip, sp) in `on_entry`, and in
/// `on_post`; fast hits counted.
#[derive(Default)]
struct Posts {
    entries: Vec<(u64, u64)>,
    posts: Vec<(u64, u64)>,
    fast: u64,
}

struct PostWatcher(Rc<RefCell<Posts>>);

impl Handler for PostWatcher {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let mut p = self.0.borrow_mut();
        match hit.is_fast() {
            true => p.fast += 1,
            false => p.entries.push((hit.ip().get(), hit.sp().get())),
        }
        Ok(())
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0
            .borrow_mut()
            .posts
            .push((hit.ip().get(), hit.sp().get()));
        Ok(())
    }
    fn fast(&mut self, _: &Site, _: Option<&rtrace::symbols::Module>) -> Fast {
        Fast::Yes(Capture::default())
    }
}

/// The post handlers of the hit at which a site is patched
/// (`Options::first_hit`) see the probed instruction done, as at any int3
/// hit (they once saw the registers of the site, the instruction pointer
/// in the detour): count's work begins with `push rbp` (emulated: one byte
/// on, the stack pointer 8 bytes down), fills' add1 with `lea rax,
/// [rdi+1]` (its copy in the detour stepped: four bytes on) before a `ret`
/// the jump covers too (called 40 times, and entered 20 times by chk_add1
/// falling through), and tailpop+0x17 is a `pop rbx` patched as an
/// instruction pun (stepped: one byte on, 8 bytes up). The other calls are
/// fast, and every call is seen once, computing what it does untraced.
#[test]
fn the_post_handlers_of_a_first_hit_see_the_instruction_done() {
    let cases: [(&str, &str, &str, u64, i64, usize); 3] = [
        ("count", "50", "work", 1, -8, 50),
        ("fills", "20", "add1", 4, 0, 60),
        ("fills", "20", "tailpop+0x17", 1, 8, 20),
    ];
    for (name, arg, probe, ip_on, sp_on, calls) in cases {
        for first_hit in [false, true] {
            let posts = bounded(move |session| {
                let mut cmd = Command::new(fixture(name, Variant::Pie));
                cmd.arg(arg).stdout(std::process::Stdio::null());
                let opts = Options {
                    fast: first_hit,
                    first_hit,
                    ..FAST_ENTRIES
                };
                let mut tracer = session.launch(&cmd, opts).expect("launch");
                let posts = Rc::new(RefCell::new(Posts::default()));
                tracer
                    .add_probe(probe.parse().unwrap(), PostWatcher(posts.clone()))
                    .unwrap();
                // (fills checks every value it computes: 1 when one was
                // wrong.)
                assert_eq!(tracer.run().expect("run"), Outcome::Exited(0));
                drop(tracer);
                Rc::try_unwrap(posts).ok().unwrap().into_inner()
            });
            let what = format!("{name} {probe}, first_hit {first_hit}");
            let int3 = match first_hit {
                true => 1,
                false => calls,
            };
            assert_eq!(posts.entries.len(), int3, "{what}");
            assert_eq!(posts.fast as usize, calls - int3, "{what}");
            let after: Vec<(u64, u64)> = posts
                .entries
                .iter()
                .map(|&(ip, sp)| (ip + ip_on, sp.wrapping_add_signed(sp_on)))
                .collect();
            assert_eq!(posts.posts, after, "{what}");
        }
    }
}

/// A signal handler is running when rtrace attaches, and will return into
/// the middle of `work`'s first five bytes (sigfix: the handler of a fault
/// at work+2 fixes the faulting load's pointer and returns to it). The
/// site stays an int3 until its first hit, which shows every thread out of
/// those bytes: a jump written over them at the attach would have been
/// returned into in its middle. Every call after the fix-up is seen, and
/// the program's output and status are its own.
#[test]
fn a_signal_handler_returns_into_the_original_instructions() {
    const CALLS: usize = 1000;
    let prog = fixture("sigfix", Variant::Pie);
    let n = CALLS.to_string();
    let mut cmd = Command::new(&prog);
    cmd.arg(&n);
    let mut program = Spawned::with_stdin(cmd);
    assert_eq!(program.wait_stdout_line(|_| true), "fault");
    let pid = program.pid();
    let mut rtrace = Spawned::rtrace_attach(&["--json", "--entry-only", "-s", "work"], pid);
    wait_event(&mut rtrace, Duration::from_secs(30), |e| {
        str_field(e, "event") == "attach"
    });
    program.send("\n");
    let out = program.wait();
    assert_eq!(
        (out.stdout.as_str(), out.code()),
        (
            format!("fault\nfirst=42 sum={}\n", CALLS * (CALLS - 1) / 2 + CALLS).as_str(),
            0
        ),
        "sigfix under rtrace -p: {}",
        out.stderr
    );
    let run = rtrace.wait();
    let events = crate::events::parse_events(&run.stderr);
    assert_eq!(
        of_symbol(&events, "entry", "work").len(),
        CALLS,
        "{}",
        show(&events)
    );
}

/// Signals to threads that keep the ring busy: each is delivered at once
/// (its report waits for the records made before it, not the thread), and
/// reported once, after every call its thread made before it and before
/// every call after it (the handler's own calls of work too).
#[test]
fn signals_are_reported_between_their_threads_calls() {
    let prog = fixture("sigqueuer", Variant::Pie);
    // At most 25000 calls a worker: the workers call as fast as they can for
    // as long as the signals take, and a slow machine must not fill its disk.
    let args = ["4", "300", "25000"];
    let (run, events) = trace_json(
        "fast_sigqueuer_order",
        &["--fast", "--entry-only", "-s", "work"],
        &prog,
        &args,
    );
    assert_eq!(run.stdout, "received=300 bad=0\n", "{}", run.stderr);
    assert_eq!(run.code(), 0);
    let mut signals = 0;
    // Per thread: the last call's time, and the last signal's.
    let mut last_call: BTreeMap<u64, u64> = BTreeMap::new();
    let mut last_signal: BTreeMap<u64, u64> = BTreeMap::new();
    for e in &events {
        let (Some(tid), Some(time)) = (e["tid"].as_u64(), e["time_ns"].as_u64()) else {
            continue;
        };
        match str_field(e, "event") {
            "entry" => {
                if let Some(&s) = last_signal.get(&tid) {
                    assert!(
                        time > s,
                        "a call at {time} ns after a signal at {s} ns: {e}"
                    );
                }
                last_call.insert(tid, time);
            }
            "signal" => {
                signals += 1;
                if let Some(&c) = last_call.get(&tid) {
                    assert!(
                        time > c,
                        "a signal at {time} ns after a call at {c} ns: {e}"
                    );
                }
                last_signal.insert(tid, time);
            }
            _ => {}
        }
    }
    assert_eq!(signals, 300);
}

/// A fast call jumps to a function whose probe stays an int3 breakpoint,
/// which jumps to a fast one (mixtail: outer → middle → inner, tail calls
/// all): the int3 call's return slot holds the return stub, and it returns
/// with the call it was made for, through the stub. Every call's entry and
/// return are reported once, innermost return first, none missed.
#[test]
fn tail_calls_through_an_int3_probe_between_fast_ones() {
    const CALLS: usize = 500;
    let prog = fixture("mixtail", Variant::Pie);
    let n = CALLS.to_string();
    let args = [n.as_str()];
    let untraced = run_untraced(&prog, &args);
    assert_eq!(
        untraced.stdout,
        format!("sum={}\n", CALLS * (CALLS + 1) / 2)
    );
    let (run, events) = trace_json(
        "mixtail",
        &["--fast", "-s", "outer", "-s", "middle", "-s", "inner"],
        &prog,
        &args,
    );
    assert_same_as_untraced(&run, &untraced, "mixtail");
    for f in ["outer", "middle", "inner"] {
        assert_eq!(
            (
                of_symbol(&events, "entry", f).len(),
                of_symbol(&events, "return", f).len()
            ),
            (CALLS, CALLS),
            "{f}: {}",
            show(&events)
        );
    }
    // (A call missed is said by a warning.)
    assert!(of_kind(&events, "warning").is_empty(), "{}", show(&events));
    // Each call's returns, innermost first.
    let order: Vec<&str> = events
        .iter()
        .filter(|e| str_field(e, "event") == "return")
        .map(|e| str_field(e, "symbol"))
        .take(3)
        .collect();
    assert_eq!(order, ["inner", "middle", "outer"]);
}
