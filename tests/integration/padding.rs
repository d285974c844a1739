//! Fast probes and the dead fill (alignment padding) between functions:
//! the jump of a hop written there, a short function's jump run over it,
//! an instruction pun whose displacement ends in it. Padding that runs
//! (a function falling through it into the next) holds nothing of
//! rtrace's; no two of those writes ever share a byte, whether planned in
//! one batch or one after the other; and a detach gives the padding back.
//! On `fills`, whose three regions are laid out by hand for each case.

use std::cell::RefCell;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::Signal;

use rtrace::{Capture, Fast, Handler, Hit, Options, Outcome, Site};

use crate::attach::{tracer_pid, wait_detach, wait_event};
use crate::events::{assert_same_as_untraced, of_symbol, show, str_field, trace_json};
use crate::fast::our_mappings;
use crate::fixtures::{
    bounded, code_matches_files, fixture, in_library, library, process_state, rtrace_bin,
    run_untraced, Spawned, Variant,
};

/// Runs `fills` untraced and with `--fast --entry-only` and `probes`:
/// the same output and status, and each `(symbol, kind, hits)` of
/// `expected` hit exactly that many times.
fn same_as_untraced(variant: Variant, probes: &[&str], expected: &[(&str, &str, usize)]) {
    let prog = fixture("fills", variant);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.code(), 0);
    let mut args = vec!["--fast", "--entry-only"];
    for p in probes {
        args.extend(["-s", p]);
    }
    let what = format!("fills ({variant}) {probes:?}");
    let (run, events) = trace_json(&format!("padding_{}", probes.join("_")), &args, &prog, &[]);
    assert_same_as_untraced(&run, &untraced, &what);
    for &(symbol, kind, hits) in expected {
        assert_eq!(
            of_symbol(&events, kind, symbol).len(),
            hits,
            "{what}: {kind}s of {symbol}\n{}",
            show(&events)
        );
    }
}

/// chk_add1 ends with a conditional jump and falls through its padding
/// into add1, as glibc's `__memcpy_chk_*` fall into `__memcpy_*`: that
/// padding runs, and twice's hop must not put its jump there (a call of
/// chk_add1 would run twice's detour and return 2x, and count as twice's).
#[test]
fn padding_a_function_falls_through_holds_no_jump() {
    for variant in [Variant::Pie, Variant::Static] {
        same_as_untraced(variant, &["twice"], &[("twice", "entry", 6)]);
    }
}

/// short2's jump runs over the first byte of the padding after it, where
/// hop2's hop would put its jump; tailpop's last `pop rbx` is an
/// instruction pun whose displacement ends in the padding where hop3's
/// hop would put its jump. Planned together, each pair once wrote over
/// itself (the program died of SIGSEGV).
#[test]
fn jumps_over_padding_and_hops_into_it_never_overlap() {
    for variant in [Variant::Pie, Variant::Static] {
        same_as_untraced(
            variant,
            &["short2", "hop2"],
            &[("short2", "entry", 6), ("hop2", "entry", 6)],
        );
        same_as_untraced(
            variant,
            &["tailpop+0x17", "hop3"],
            &[("tailpop", "hit", 3), ("hop3", "entry", 6)],
        );
        same_as_untraced(
            variant,
            &[
                "twice",
                "short2",
                "hop2",
                "tailpop+0x17",
                "hop3",
                "into2",
                "into3",
            ],
            &[
                ("twice", "entry", 6),
                ("short2", "entry", 6),
                ("hop2", "entry", 6),
                ("tailpop", "hit", 3),
                ("hop3", "entry", 6),
                ("into2", "entry", 6),
                ("into3", "entry", 6),
            ],
        );
    }
}

/// Counts hits, fast or not; takes fast hits with no captures.
#[derive(Default)]
struct Seen {
    fast: u64,
    int3: u64,
}

struct Counter(Rc<RefCell<Seen>>);

impl Handler for Counter {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let mut c = self.0.borrow_mut();
        match hit.is_fast() {
            true => c.fast += 1,
            false => c.int3 += 1,
        }
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

/// tailpop's pun is patched first, and runs; hop3's probe comes later, in
/// a batch of its own: its hop's jump must keep out of the padding bytes
/// the pun's displacement ends in, which the pun left as they were (they
/// once looked free, and the next call of tailpop jumped into the
/// weeds). Every one of the 200,000 hits of tailpop+0x17 is counted, fast.
/// hop3's int3 is live from `add_probe` until the next pass writes its
/// jump, while the program runs on: its one thread may hit it once as an
/// int3 (the pass runs before that stop is handled), never twice.
#[test]
fn a_hop_planned_later_keeps_out_of_a_puns_bytes() {
    const ROUNDS: u64 = 200_000;
    let prog = fixture("fills", Variant::Pie);
    let (outcome, pun, hop) = bounded(move |session| {
        let mut cmd = Command::new(&prog);
        cmd.arg(ROUNDS.to_string()).stdout(Stdio::null());
        let mut tracer = session.launch(&cmd, FAST_ENTRIES).expect("launch");
        let pun = Rc::new(RefCell::new(Seen::default()));
        tracer
            .add_probe("tailpop+0x17".parse().unwrap(), Counter(pun.clone()))
            .unwrap();
        while pun.borrow().fast < 1000 {
            if let Some(o) = tracer.process_next().expect("process_next") {
                panic!("tracing ended early: {o:?}");
            }
        }
        let hop = Rc::new(RefCell::new(Seen::default()));
        tracer
            .add_probe("hop3".parse().unwrap(), Counter(hop.clone()))
            .unwrap();
        let outcome = tracer.run().expect("run");
        let (p, h) = (pun.borrow(), hop.borrow());
        (outcome, (p.fast, p.int3), (h.fast, h.int3))
    });
    // (fills checks every value it computes: 1 when one was wrong.)
    assert_eq!(outcome, Outcome::Exited(0));
    assert_eq!(pun, (ROUNDS, 0), "tailpop+0x17: (fast, int3)");
    assert!(hop.0 > 0 && hop.1 <= 1, "hop3: (fast, int3) {hop:?}");
}

/// The probes of [`a_detach_gives_the_padding_back`]: every kind of write
/// into padding.
const EVERY_KIND: [&str; 10] = [
    "hop0",
    "into0",
    "twice",
    "short2",
    "hop2",
    "into2",
    "tailpop+0x17",
    "hop3",
    "into3",
    "add1",
];

/// Attaches to `pid` (fills) with `probes`, waits for their modes and for
/// 100 hits of each, and detaches: the code is its files' again (the
/// padding included), the mappings are `before`'s (the pun's page and the
/// detour areas are gone), the program runs on. The modes said.
fn attach_and_detach(pid: i32, probes: &[&str], before: (usize, usize), what: &str) -> Vec<String> {
    let mut args = vec!["--fast", "--entry-only", "--json"];
    for p in probes {
        args.extend(["-s", p]);
    }
    let mut rtrace = Spawned::rtrace_attach(&args, pid);
    let mut modes = Vec::new();
    for _ in probes {
        let e = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "probe"
        });
        modes.push(format!(
            "{} {}",
            str_field(&e, "probe"),
            str_field(&e, "mode")
        ));
    }
    for p in probes {
        let symbol = p.split('+').next().unwrap();
        for _ in 0..100 {
            wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                matches!(str_field(e, "event"), "entry" | "hit") && str_field(e, "symbol") == symbol
            });
        }
    }
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, what);
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
    if let Err(e) = code_matches_files(pid) {
        panic!("{what}: after detach: {e}");
    }
    assert_eq!(our_mappings(pid), before, "{what}: mappings after detach");
    assert_eq!(tracer_pid(pid), 0, "{what}");
    assert!(matches!(process_state(pid), Some('R' | 'S')), "{what}");
    modes.sort();
    modes
}

/// Attached to fills with every kind of write into padding at once, and
/// detached, three times: each time the code is its files' again, nothing
/// of rtrace's is left mapped, and the program runs on; at the end it
/// finishes normally, every value right.
#[test]
fn a_detach_gives_the_padding_back() {
    let fills = Spawned::start(&fixture("fills", Variant::Pie), &["0"]);
    let pid = fills.pid();
    let before = our_mappings(pid);
    for round in 0..3 {
        attach_and_detach(pid, &EVERY_KIND, before, &format!("round {round}"));
    }
    let run = fills.terminate();
    assert_eq!(run.code(), 0, "{}", run.stdout);
    assert!(run.stdout.ends_with("done\n"), "{}", run.stdout);
}

/// With the address space around the code taken (fills' `crowd`), the
/// detours go anywhere, and each site's jump (or its hop's) leads to an
/// indirect jump in padding: hop0's hop and the far jump it leads to once
/// took the same padding (the first of the module), the far jump written
/// over by a jump to itself, and hop0 spun forever. Each far jump now has
/// padding of its own; every site but the pun (whose page cannot be
/// placed) and twice (no padding a hop may use) is fast, the detach gives
/// everything back, and the program computes what it does untraced.
#[test]
fn far_detours_keep_out_of_the_hops_padding() {
    let fills = Spawned::start(&fixture("fills", Variant::Pie), &["0", "crowd"]);
    let pid = fills.pid();
    let before = our_mappings(pid);
    for round in 0..2 {
        let what = format!("crowded, round {round}");
        let modes = attach_and_detach(pid, &EVERY_KIND, before, &what);
        assert_eq!(
            modes,
            [
                "add1 fast",
                "hop0 fast",
                "hop2 fast",
                "hop3 fast",
                "into0 fast",
                "into2 fast",
                "into3 fast",
                "short2 fast",
                "tailpop+0x17 int3",
                "twice int3",
            ],
            "{what}"
        );
    }
    let run = fills.terminate();
    assert_eq!(run.code(), 0, "{}", run.stdout);
    assert!(run.stdout.ends_with("done\n"), "{}", run.stdout);
}

/// libfilla's lib_hop takes a hop into the padding after it; the library
/// is unloaded and libfillb loaded at its address, with a thread blocked
/// in a read(2) whose `syscall` ends where that padding was. At the
/// detach, rtrace once took that thread for one at the hop's jump and
/// single-stepped it, into its read again: the detach waited for the
/// program's input. Now it is immediate, and the program goes on.
#[test]
fn an_unloaded_librarys_padding_is_forgotten() {
    let (a, b) = (
        library("libfilla", Variant::Pie),
        library("libfillb", Variant::Pie),
    );
    let probe = in_library("libfilla", Variant::Pie, "lib_hop");
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["--fast", "--entry-only", "--json", "-s", &probe, "--"])
        .arg(fixture("dlfill", Variant::Pie))
        .args([&a, &b]);
    let mut rtrace = Spawned::with_stdin(cmd);
    let mode = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
        str_field(e, "event") == "probe"
    });
    assert_eq!(str_field(&mode, "mode"), "fast", "{mode}");
    rtrace.wait_stdout_line(|l| l == "loaded");
    rtrace.send("go\n");
    let line = rtrace.wait_stdout_line(|l| l == "ready" || l == "moved");
    assert_eq!(
        line, "ready",
        "libfillb was not loaded at libfilla's address"
    );
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, "libfillb loaded where libfilla was");
    rtrace.send("go\n");
    rtrace.wait_stdout_line(|l| l == "done");
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
}
