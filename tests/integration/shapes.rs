//! Sites whose first bytes a plain 5-byte `jmp rel32` cannot replace,
//! written by hand in `target-fixtures/shapes.S` (driven by `shapes.c`),
//! and a function with no free address within a jump's reach (`far`).
//! Each is a fast probe by default: a function shorter than a jump
//! patched over the padding after it, a branch target or a jump table
//! behind a 2-byte jump into nearby padding, a call relocated so that its
//! callee returns into the original code, a detour reached from code with
//! no room around it.
//!
//! For every site: launched, eight threads hit it and `-c` counts each call
//! exactly; attached while eight threads hammer it, exactly the calls made
//! between two marks are reported, rtrace detaches while the threads run
//! through it again, the code is its file's afterwards and the program ends
//! as it does untraced. `--int3` gives the same counts and output. The
//! probe's mode (`fast`: no `rtrace: probe ret1: …` line; the `probe`
//! event attached) is checked last, so a site that stays an int3 fails
//! there alone, once every count has been checked. `plain`, an ordinary function, is the control: fast as it is.

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use rtrace::{Capture, Fast, Handler, Hit, Options, Outcome, Site};

use crate::attach::{tracer_pid, wait_detach};
use crate::events::{assert_same_as_untraced, parse_events, show, str_field, temp_path};
use crate::fixtures::{
    bounded, code_matches_files, fixture, rounds, run_rtrace, run_untraced, Spawned, Variant,
};

/// Threads of every `shapes` and `far` run.
const THREADS: u64 = 8;
/// Calls per thread of a launched run.
const LAUNCH_CALLS: u64 = 200;
/// Calls per thread counted in an attached run.
const COUNT_CALLS: u64 = 100;
/// Entries of the site rtrace reports before the count, and after it
/// before the detach: the threads are hammering the site then.
const HAMMER_ENTRIES: usize = 20;

/// The argument of call `i` of thread `t` (shapes.c's and far.c's
/// `input`).
fn input(t: u64, i: u64) -> i64 {
    1 + ((7 * t + i) % 13) as i64
}

/// What `site` returns for `x` (shapes.S's header; `plain` and `far_work`
/// are C).
fn value(site: &str, x: i64) -> i64 {
    match site {
        "ret1" | "three" => x,
        "loop2" | "push1" | "evict" => x * (x + 1) / 2,
        "call0" | "call2" => x + 10,
        "jtab" => x + 11 * ((x & 3) + 1),
        "plain" | "far_work" => 2 * x + 1,
        _ => panic!("no site {site}"),
    }
}

/// The sum of the values of `calls` calls of `site` by each of `threads`
/// threads.
fn sum(site: &str, threads: u64, calls: u64) -> i64 {
    (0..threads)
        .flat_map(|t| (0..calls).map(move |i| value(site, input(t, i))))
        .sum()
}

/// How probes are made: fast where they can be (`--fast`, the default
/// made explicit so that `RTRACE_INT3` in the environment changes
/// nothing), or every one an int3 (`--int3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Fast,
    Int3,
}

impl Mode {
    fn flag(self) -> &'static str {
        match self {
            Mode::Fast => "--fast",
            Mode::Int3 => "--int3",
        }
    }
}

/// A `-c` row: calls and missed returns of `function [probe]` `site`.
fn summary_row(stderr: &str, site: &str) -> Option<(u64, u64)> {
    let end = format!(" {site} [{site}]");
    let line = stderr.lines().find(|l| l.ends_with(&end))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some((fields[0].parse().ok()?, fields[5].parse().ok()?))
}

/// What rtrace said of `site`'s mode in text (`rtrace: probe SITE: …`),
/// run `mode`: fast probes say a probe only when a site of it stays an
/// int3, so nothing said is `fast` there.
fn mode_line(stderr: &str, site: &str, mode: Mode) -> Option<String> {
    let prefix = format!("rtrace: probe {site}: ");
    let said = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string);
    match (said, mode) {
        (None, Mode::Fast) => Some("fast".to_string()),
        (said, _) => said,
    }
}

/// What rtrace said of `site`'s mode in JSON (its `probe` event), as the
/// text line says it: `fast`, or `int3 (reasons)`.
fn mode_event(events: &[Value], site: &str) -> Option<String> {
    let e = events
        .iter()
        .find(|e| str_field(e, "event") == "probe" && str_field(e, "probe") == site)?;
    let mode = str_field(e, "mode");
    let reasons: Vec<&str> = e["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    Some(match reasons.is_empty() {
        true => mode.to_string(),
        false => format!("{mode} ({})", reasons.join("; ")),
    })
}

/// `shapes launch 200 SITE` under `rtrace MODE -c -s SITE`: the program's
/// output and status as untraced (`untraced`), every call counted and
/// returned. Returns what rtrace said of the probe's mode.
fn launched(site: &str, mode: Mode, untraced: &crate::fixtures::Run) -> Option<String> {
    let prog = fixture("shapes", Variant::Pie);
    let n = LAUNCH_CALLS.to_string();
    let args = ["launch", n.as_str(), site];
    let what = format!(
        "rtrace {} -c -s {site} -- shapes launch {n} {site}",
        mode.flag()
    );
    let run = run_rtrace(&[mode.flag(), "-c", "-s", site], &prog, &args);
    assert_same_as_untraced(&run, untraced, &what);
    assert_eq!(
        summary_row(&run.stderr, site),
        Some((THREADS * LAUNCH_CALLS, 0)),
        "{what}: calls and missed returns\n{}",
        run.stderr
    );
    mode_line(&run.stderr, site, mode)
}

/// Reads rtrace's JSON events (its stderr, one a line) as they come.
struct EventReader<'a> {
    rtrace: &'a mut Spawned,
    deadline: Instant,
}

impl EventReader<'_> {
    fn next(&mut self, waiting_for: &str) -> Value {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.rtrace.next_stderr_line(left) {
                Ok(line) if line.starts_with('{') => {
                    return parse_events(&line).pop().expect("one event");
                }
                Ok(_) => {}
                Err(why) => panic!(
                    "{waiting_for}: not seen ({why:?})\n--- rtrace's stderr so far:\n{}",
                    self.rtrace.stderr_so_far()
                ),
            }
        }
    }
}

/// Whether `e` is an entry of `symbol`.
fn entry_of(e: &Value, symbol: &str) -> bool {
    str_field(e, "event") == "entry" && str_field(e, "symbol") == symbol
}

/// Starts `shapes attach SITE` (8 threads hammering SITE) and waits until
/// it runs.
fn hammering(site: &str) -> Spawned {
    let mut cmd = Command::new(fixture("shapes", Variant::Pie));
    cmd.args(["attach", site]);
    let mut program = Spawned::with_stdin(cmd);
    program.wait_stdout_line(|l| l == "ready");
    program
}

/// The line `shapes attach SITE` prints after `count N`.
fn counted_line(site: &str) -> String {
    format!(
        "counted {site} calls={} sum={}",
        THREADS * COUNT_CALLS,
        sum(site, THREADS, COUNT_CALLS)
    )
}

/// `shapes attach SITE` given `count N` `rounds` times, untraced: its
/// whole output, which every attached run of as many rounds must give too.
fn attach_untraced(site: &str, rounds: usize) -> crate::fixtures::Run {
    let mut program = hammering(site);
    for _ in 0..rounds {
        program.send(&format!("count {COUNT_CALLS}\n"));
        let line = program.wait_stdout_line(|l| l.starts_with("counted "));
        assert_eq!(line, counted_line(site), "untraced");
    }
    program.send("stop\n");
    let run = program.wait();
    let counted = format!("{}\n", counted_line(site)).repeat(rounds);
    assert_eq!(
        (run.stdout.as_str(), run.code()),
        (format!("ready\n{counted}done bad=0\n").as_str(), 0),
        "shapes attach {site}, untraced: {}",
        run.stderr
    );
    run
}

/// How many times [`attached`] attaches to and detaches from one program:
/// each round writes the jumps while the threads run through the site,
/// and takes them off again while they do.
fn attach_rounds() -> usize {
    rounds(20, 1)
}

/// `rtrace MODE --json --entry-only -s SITE -s mark -p PID` attached to
/// `shapes attach SITE` while its 8 threads hammer SITE (the jump is
/// written while they run through the bytes), [`attach_rounds`] times:
/// - SITE's entries are reported while they hammer;
/// - `count N`: between `mark(1)` and `mark(2)` (every thread waits at a
///   barrier around each), exactly the 8 × N counted calls are reported;
/// - the threads hammer again; once rtrace reported some of those calls,
///   SIGINT: it detaches while they run through the site;
/// - the code is its file's again, no tracer is left.
///
/// Then `stop`: the program's output and status are the untraced run's.
/// Returns what rtrace said of the probe's mode, each round.
fn attached(site: &str, mode: Mode, untraced: &crate::fixtures::Run) -> Vec<Option<String>> {
    let mut program = hammering(site);
    let pid = program.pid();
    let mut modes = Vec::new();
    for round in 0..attach_rounds() {
        let what = format!(
            "rtrace {} -s {site} -p (shapes attach {site}), round {round}",
            mode.flag()
        );
        modes.push(attach_round(&mut program, site, mode, &what));
        if let Err(e) = code_matches_files(pid) {
            panic!("{what}: after the detach: {e}");
        }
        assert_eq!(tracer_pid(pid), 0, "{what}: TracerPid after the detach");
    }
    program.send("stop\n");
    let out = program.wait();
    assert_same_as_untraced(
        &out,
        untraced,
        &format!("shapes attach {site}, {}", mode.flag()),
    );
    modes
}

/// One round of [`attached`], up to rtrace's end.
fn attach_round(program: &mut Spawned, site: &str, mode: Mode, what: &str) -> Option<String> {
    let mut rtrace = Spawned::rtrace_attach(
        &[
            mode.flag(),
            "--json",
            "--entry-only",
            "-s",
            site,
            "-s",
            "mark",
        ],
        program.pid(),
    );
    let mut events = EventReader {
        rtrace: &mut rtrace,
        deadline: Instant::now() + Duration::from_secs(40),
    };
    // Calls reported while the threads hammer.
    let mut seen = 0;
    while seen < HAMMER_ENTRIES {
        let e = events.next("the site's entries while the threads hammer it");
        assert!(
            !entry_of(&e, "mark"),
            "{what}: a mark before the count: {e}"
        );
        seen += usize::from(entry_of(&e, site));
    }
    // Exactly the counted calls between the marks.
    program.send(&format!("count {COUNT_CALLS}\n"));
    let line = program.wait_stdout_line(|l| l.starts_with("counted "));
    assert_eq!(line, counted_line(site), "{what}");
    loop {
        let e = events.next("mark(1)");
        if entry_of(&e, "mark") {
            assert_eq!(e["values"][0], 1, "{what}: {e}");
            break;
        }
    }
    let mut between = 0;
    loop {
        let e = events.next("mark(2)");
        if entry_of(&e, "mark") {
            assert_eq!(e["values"][0], 2, "{what}: {e}");
            break;
        }
        between += u64::from(entry_of(&e, site));
    }
    // The threads hammer again: detach while they run through the site.
    let mut after = 0;
    while after < HAMMER_ENTRIES {
        after += usize::from(entry_of(&events.next("entries after the count"), site));
    }
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, what);
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{what}: rtrace's status\n{}", run.stderr);
    assert_eq!(
        between,
        THREADS * COUNT_CALLS,
        "{what}: the calls reported between mark(1) and mark(2)"
    );
    let events: Vec<Value> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .flat_map(parse_events)
        .collect();
    assert!(
        !events.iter().any(|e| str_field(e, "event") == "exit"),
        "{what}: the program ended while traced\n{}",
        show(&events)
    );
    mode_event(&events, site)
}

/// Every run of `site`, both modes, launched and attached; then the mode
/// lines: `fast` under `--fast` when `fast` (else printed only), never
/// `fast` under `--int3`.
fn site(site: &str, fast: bool) {
    let prog = fixture("shapes", Variant::Pie);
    let n = LAUNCH_CALLS.to_string();
    let launch_untraced = run_untraced(&prog, &["launch", &n, site]);
    assert_eq!(
        (launch_untraced.stdout.as_str(), launch_untraced.code()),
        (
            format!(
                "{site} calls={} sum={} bad=0\n",
                THREADS * LAUNCH_CALLS,
                sum(site, THREADS, LAUNCH_CALLS)
            )
            .as_str(),
            0
        ),
        "shapes launch {n} {site}, untraced"
    );
    let attach_untraced = attach_untraced(site, attach_rounds());
    let mut modes = Vec::new();
    for mode in [Mode::Fast, Mode::Int3] {
        let said = launched(site, mode, &launch_untraced);
        modes.push((mode, "launched", said));
        for said in attached(site, mode, &attach_untraced) {
            modes.push((mode, "attached", said));
        }
    }
    // The modes last: every count above holds whichever way the site ran.
    let mut not_fast = Vec::new();
    for (mode, how, said) in modes {
        let what = format!("{site}, {how}, {}", mode.flag());
        let said_text = said.as_deref().unwrap_or("(no mode said)");
        match (mode, fast) {
            (Mode::Fast, true) if said.as_deref() != Some("fast") => {
                not_fast.push(format!("{what}: rtrace: probe {site}: {said_text}"))
            }
            (Mode::Fast, true) => {}
            (Mode::Fast, false) => eprintln!("{what}: rtrace: probe {site}: {said_text}"),
            (Mode::Int3, _) => assert!(
                said.as_ref().is_none_or(|s| s.starts_with("int3")),
                "{what}: the probe's mode: {said:?}"
            ),
        }
    }
    assert!(not_fast.is_empty(), "not fast:\n{}", not_fast.join("\n"));
}

/// A lone `ret` (1 byte, then nop fill).
#[test]
fn ret1_a_one_byte_function() {
    site("ret1", true);
}

/// `mov %edi,%eax; ret` (3 bytes, then int3 fill).
#[test]
fn three_a_three_byte_function() {
    site("three", true);
}

/// A 2-byte first instruction, then a loop whose head is byte 2.
#[test]
fn loop2_a_branch_target_at_byte_2() {
    site("loop2", true);
}

/// `call helper` at byte 0: the callee checks that it returns into the
/// original code, past the call.
#[test]
fn call0_a_call_at_byte_0() {
    site("call0", true);
}

/// A 2-byte first instruction, then `call helper` (returning to byte 7).
#[test]
fn call2_a_call_after_a_short_first_instruction() {
    site("call2", true);
}

/// A switch through a jump table of case offsets (`jmp *%rax`).
#[test]
fn jtab_a_jump_table() {
    site("jtab", true);
}

/// `push %rbx` (1 byte) before a branch target at byte 3: no hop (its
/// first instruction is too short), an instruction pun, whose jump lands
/// where the next bytes say (in a PIE, room is found there).
#[test]
fn push1_a_branch_target_behind_a_one_byte_instruction() {
    site("push1", true);
}

/// `push %rbx` (1 byte) before a loop whose head is byte 1, a 5-byte
/// `mov`: the pun's jump would lead into the program's own code (its
/// displacement is the `mov`'s bytes), so the `mov` is evicted to a
/// trampoline, and the two jumps lead where there is room.
#[test]
fn evict_a_pun_whose_jump_leads_into_code() {
    site("evict", true);
}

/// The control: an ordinary C function, fast as it is.
#[test]
fn plain_an_ordinary_function() {
    site("plain", true);
}

/// `far 200` (8 threads calling `far_work` 200 times each) after it filled
/// every free gap within ±2 GiB of its code, attached to by `rtrace MODE
/// -c -s far_work`, with returns (the detour hands them to the return
/// stub) and with `--entry-only`: fast with `--fast` (no detour area fits
/// where a `jmp rel32` reaches), every call counted (with its return), the
/// code its file's after the detach, the output and status the untraced
/// run's.
#[test]
fn far_a_function_with_no_room_within_reach() {
    let prog = fixture("far", Variant::Pie);
    let n = LAUNCH_CALLS.to_string();
    let expected = format!(
        "far_work calls={} sum={} bad=0",
        THREADS * LAUNCH_CALLS,
        sum("far_work", THREADS, LAUNCH_CALLS)
    );
    let start = || {
        let mut cmd = Command::new(&prog);
        cmd.arg(&n);
        let mut program = Spawned::with_stdin(cmd);
        program.wait_stdout_line(|l| l == "ready");
        program
    };
    let mut program = start();
    program.send("go\n");
    assert_eq!(
        program.wait_stdout_line(|l| l.starts_with("far_work ")),
        expected
    );
    program.send("stop\n");
    let untraced = program.wait();
    assert_eq!(
        (untraced.stdout.as_str(), untraced.code()),
        (format!("ready\n{expected}\ndone\n").as_str(), 0),
        "far, untraced: {}",
        untraced.stderr
    );
    let mut modes = Vec::new();
    for (mode, entry_only) in [(Mode::Fast, false), (Mode::Fast, true), (Mode::Int3, false)] {
        let mut args = vec![mode.flag(), "-c", "-s", "far_work"];
        if entry_only {
            args.push("--entry-only");
        }
        let what = format!("rtrace {} -p (far {n})", args.join(" "));
        let mut program = start();
        let pid = program.pid();
        let mut rtrace = Spawned::rtrace_attach(&args, pid);
        // (The jump is written before the attach line.)
        rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached"));
        program.send("go\n");
        assert_eq!(
            program.wait_stdout_line(|l| l.starts_with("far_work ")),
            expected,
            "{what}"
        );
        rtrace.signal(Signal::SIGINT);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{what}: rtrace's status\n{}", run.stderr);
        assert!(
            run.stderr.lines().any(|l| l == "+++ detached +++"),
            "{what}\n{}",
            run.stderr
        );
        assert_eq!(
            summary_row(&run.stderr, "far_work"),
            Some((THREADS * LAUNCH_CALLS, 0)),
            "{what}: calls and missed returns\n{}",
            run.stderr
        );
        if let Err(e) = code_matches_files(pid) {
            panic!("{what}: after the detach: {e}");
        }
        assert_eq!(tracer_pid(pid), 0, "{what}: TracerPid after the detach");
        program.send("stop\n");
        assert_same_as_untraced(&program.wait(), &untraced, &what);
        modes.push((what, mode, mode_line(&run.stderr, "far_work", mode)));
    }
    let mut failures = Vec::new();
    for (what, mode, said) in modes {
        match mode {
            Mode::Fast if said.as_deref() != Some("fast") => {
                failures.push(format!("{what}: {said:?}"))
            }
            Mode::Fast => {}
            Mode::Int3 => assert!(
                said.as_ref().is_none_or(|s| s.starts_with("int3")),
                "{what}: {said:?}"
            ),
        }
    }
    assert!(failures.is_empty(), "not fast:\n{}", failures.join("\n"));
}

/// Counts hits, fast and int3; takes fast hits with no captures.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Hits {
    fast: u64,
    int3: u64,
}

struct Counter(Rc<RefCell<Hits>>);

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

/// Records the first argument of each entry; an int3 probe (its handler
/// does not take fast hits).
struct Marks(Rc<RefCell<Vec<u64>>>);

impl Handler for Marks {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().push(hit.arg(0).unwrap());
        Ok(())
    }
}

/// `shapes one N SITE` (the main thread alone calls `mark(1)`, SITE N
/// times, `mark(2)`) launched by the library, with fast entry probes on
/// SITE and an int3 probe on `mark`: SITE's hits, fast and int3, and the
/// ptrace stops (`Tracer::stops`) between the stop at `mark(1)` and the
/// stop at `mark(2)`, that one not counted: SITE's stops. (Counted in
/// one run: the stops of whole runs differ by a few when the machine is
/// busy.)
fn one_thread(site: &'static str, n: u64, first_hit: bool) -> (Hits, u64) {
    bounded(move |session| {
        let prog = fixture("shapes", Variant::Pie);
        let out = temp_path(&format!("shapes_one_{site}_{n}_{first_hit}.out"));
        // The tracee inherits the tracer's stdout: a shell sends it to a file.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(format!(
            "exec {} one {n} {site} > {}",
            prog.display(),
            out.display()
        ));
        let opts = Options {
            entry_only: true,
            fast: true,
            first_hit,
            ..Options::default()
        };
        let mut tracer = session.launch(&cmd, opts).expect("launch");
        let hits = Rc::new(RefCell::new(Hits::default()));
        let marks = Rc::new(RefCell::new(Vec::new()));
        let module = prog.display();
        tracer
            .add_probe(
                format!("{module}:{site}").parse().unwrap(),
                Counter(hits.clone()),
            )
            .unwrap();
        tracer
            .add_probe(
                format!("{module}:mark").parse().unwrap(),
                Marks(marks.clone()),
            )
            .unwrap();
        let mut stops_at = Vec::new();
        for phase in [1, 2] {
            while marks.borrow().len() < phase {
                if let Some(outcome) = tracer.process_next().expect("process_next") {
                    panic!("{site} {n}: tracing ended before mark({phase}): {outcome:?}");
                }
            }
            stops_at.push(tracer.stops());
        }
        assert_eq!(tracer.run().expect("run"), Outcome::Exited(0), "{site} {n}");
        assert_eq!(*marks.borrow(), [1, 2], "{site} {n}: the marks");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{site} calls={n} sum={} bad=0\n", sum(site, 1, n)),
            "{site} {n}"
        );
        let hits = *hits.borrow();
        (hits, stops_at[1] - stops_at[0] - 1)
    })
}

/// Calls of [`a_site_whose_safety_is_proven_at_its_first_hit`]'s runs.
const ONE_THREAD_CALLS: u64 = 300;

/// First-hit patching (`Options::first_hit`): each site is an int3 until
/// its first hit, patched from that stop (the thread stopped there is not
/// inside the bytes), and the hits after it take the jump. From one
/// thread, the first hit is an int3's, every other fast, whatever the
/// technique the site takes: 30 calls and 300 cost the same stops (the
/// first hit's, and the system calls that make the ring and the detours'
/// area then).
const FIRST_HIT_SITES: [&str; 9] = [
    "ret1", "three", "loop2", "call0", "call2", "jtab", "push1", "evict", "plain",
];

#[test]
fn a_site_whose_safety_is_proven_at_its_first_hit() {
    let mut failures = Vec::new();
    for site in FIRST_HIT_SITES {
        // (The first hit's stop may also make the ring and the detours'
        // area, by system calls made in the program: its stops, once.)
        let (few, few_stops) = one_thread(site, 30, true);
        let (hits, stops) = one_thread(site, ONE_THREAD_CALLS, true);
        let want = |n| Hits {
            fast: n - 1,
            int3: 1,
        };
        if (few, hits) != (want(30), want(ONE_THREAD_CALLS)) || stops != few_stops || stops == 0 {
            failures.push(format!(
                "{site}: {few_stops} stops for 30 calls ({few:?}), {stops} for \
                 {ONE_THREAD_CALLS} ({hits:?}); want the first hit an int3's, the others \
                 fast, with no stop"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The control of the first-hit measure: patched when they are armed, the
/// same sites cost no stop at all, every hit fast.
#[test]
fn a_site_patched_when_armed_costs_no_stop() {
    for site in FIRST_HIT_SITES {
        let (hits, stops) = one_thread(site, ONE_THREAD_CALLS, false);
        let want = Hits {
            fast: ONE_THREAD_CALLS,
            int3: 0,
        };
        assert_eq!((hits, stops), (want, 0), "{site}");
    }
}

/// First-hit patching under eight threads started together at a barrier:
/// the other threads that trapped at the site's int3 meanwhile (their
/// traps not yet handled, or not yet reported: a thread interrupted as it
/// trapped) are not inside its bytes, so the jump is written at the first
/// hit all the same; each of them then goes back to the site and takes
/// the jump. The first hit is the only int3 hit, every call counted once.
#[test]
fn first_hits_of_eight_threads_patch_the_site_at_once() {
    const CALLS: u64 = 20_000;
    for site in ["plain", "loop2", "call0", "evict"] {
        let hits = bounded(move |session| {
            let prog = fixture("shapes", Variant::Pie);
            let out = temp_path(&format!("shapes_first_hits_{site}.out"));
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(format!(
                "exec {} launch {CALLS} {site} > {}",
                prog.display(),
                out.display()
            ));
            let opts = Options {
                entry_only: true,
                fast: true,
                first_hit: true,
                ..Options::default()
            };
            let mut tracer = session.launch(&cmd, opts).expect("launch");
            let hits = Rc::new(RefCell::new(Hits::default()));
            tracer
                .add_probe(
                    format!("{}:{site}", prog.display()).parse().unwrap(),
                    Counter(hits.clone()),
                )
                .unwrap();
            assert_eq!(tracer.run().expect("run"), Outcome::Exited(0), "{site}");
            assert_eq!(
                std::fs::read_to_string(&out).unwrap(),
                format!(
                    "{site} calls={} sum={} bad=0\n",
                    THREADS * CALLS,
                    sum(site, THREADS, CALLS)
                ),
                "{site}"
            );
            let hits = *hits.borrow();
            hits
        });
        assert_eq!(
            hits,
            Hits {
                fast: THREADS * CALLS - 1,
                int3: 1
            },
            "{site}: the first hit an int3's, every other fast"
        );
    }
}
