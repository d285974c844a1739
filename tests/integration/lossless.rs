//! Fast probes that never lose a call: under sustained load the threads
//! wait for rtrace to make room in the ring (`--overflow block`, the
//! default) and every call is counted; a stopped or killed rtrace never
//! holds the program for more than a few milliseconds per wait, and every
//! record it could not take is counted as missed; with `--overflow drop`
//! the counts still add up to the calls made.
//!
//! Every wait is on a line of output, a process state or a thread's system
//! call, with a deadline.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::events::temp_path;
use crate::fixtures::{
    fixture, maps, process_state, rtrace_bin, run_command, run_untraced, threads_of, Spawned,
    Variant, TIMEOUT,
};

/// The summary row of `probe` in `table` (rows end with `function
/// [probe]`): its calls and missed columns.
fn summary_row(table: &str, probe: &str) -> (u64, u64) {
    let line = summary_line(table, probe);
    let words: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| -> u64 {
        words
            .get(i)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("column {i} of {line:?}"))
    };
    (n(0), n(5))
}

/// The line of the summary row of `probe` in `table`.
fn summary_line<'t>(table: &'t str, probe: &str) -> &'t str {
    table
        .lines()
        .find(|l| l.ends_with(&format!(" [{probe}]")))
        .unwrap_or_else(|| panic!("no summary row for {probe}:\n{table}"))
}

/// The warnings that say fast calls were not recorded.
fn lost_warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("not recorded"))
        .collect()
}

/// Arguments that make every call recorded into the ring beside `-c`
/// (`--perfetto /dev/null`: the timeline wants each call), for the tests
/// of a ring that fills up: `-c` alone times the calls in the program, and
/// writes no record. (The file is not what these tests look at; a disk
/// busy with other writes could hold rtrace's writes for longer than a
/// reader is given, and the program's threads would rightly drop.)
fn recorded() -> [&'static str; 2] {
    ["--perfetto", "/dev/null"]
}

/// hot's last line for `threads` × `calls`.
fn hot_result(threads: u64, calls: u64) -> String {
    format!("calls={} sum={}", threads * calls, threads * calls * calls)
}

/// `rtrace --fast <args> -c -s work -- hot threads calls`, run to its end
/// (hot starts at once: its stdin is empty).
fn count_hot(args: &[&str], variant: Variant, threads: u64, calls: u64) -> crate::fixtures::Run {
    let prog = fixture("hot", variant);
    let mut cmd = Command::new(rtrace_bin());
    cmd.arg("--fast")
        .args(args)
        .args(["-c", "-s", "work", "--"])
        .arg(&prog)
        .args([threads.to_string(), calls.to_string()]);
    run_command(cmd, TIMEOUT)
}

/// 8 threads × 200,000 calls of a function that does almost nothing, at
/// -O0 and -O2: `-c` counts every one of the 1,600,000 calls, none missed,
/// no warning of anything lost; the program's output and status are its
/// untraced ones.
#[test]
fn every_call_of_eight_threads_is_counted() {
    for variant in [Variant::Pie, Variant::O2] {
        let what = format!("{variant}");
        let untraced = run_untraced(&fixture("hot", variant), &["8", "200000"]);
        let run = count_hot(&[], variant, 8, 200_000);
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        assert_eq!(run.stdout, untraced.stdout, "{what}");
        assert!(
            untraced
                .stdout
                .ends_with(&format!("{}\n", hot_result(8, 200_000))),
            "{what}: {}",
            untraced.stdout
        );
        assert_eq!(summary_row(&run.stderr, "work"), (1_600_000, 0), "{what}");
        assert_eq!(lost_warnings(&run.stderr), Vec::<&str>::new(), "{what}");
    }
}

/// Ten million calls on one thread: `-c` counts ten million.
#[test]
fn ten_million_calls_are_ten_million_counted() {
    let run = count_hot(&[], Variant::O2, 1, 10_000_000);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stdout
            .ends_with(&format!("{}\n", hot_result(1, 10_000_000))),
        "{}",
        run.stdout
    );
    assert_eq!(summary_row(&run.stderr, "work"), (10_000_000, 0));
    assert_eq!(lost_warnings(&run.stderr), Vec::<&str>::new());
}

/// Every entry and every return of 8 threads × 200,000 calls written as
/// JSON Lines (read from a FIFO as rtrace writes them, and counted): one
/// entry and one return per call, at -O0 and -O2.
#[test]
fn every_event_of_eight_threads_is_written() {
    for variant in [Variant::Pie, Variant::O2] {
        let what = format!("{variant}");
        let fifo = temp_path(&format!("events-{variant}.fifo"));
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let file = std::fs::File::open(&fifo).expect("open the FIFO");
                let (mut entries, mut returns, mut other) = (0u64, 0u64, 0u64);
                for line in BufReader::with_capacity(1 << 20, file).lines() {
                    let line = line.expect("a line of JSON");
                    if line.starts_with("{\"event\":\"entry\"") {
                        entries += 1;
                    } else if line.starts_with("{\"event\":\"return\"") {
                        returns += 1;
                    } else if line.contains("not recorded") {
                        other += 1;
                    }
                }
                (entries, returns, other)
            })
        };
        let mut cmd = Command::new(rtrace_bin());
        cmd.args(["--fast", "--json", "-o"])
            .arg(&fifo)
            .args(["-s", "work", "--"])
            .arg(fixture("hot", variant))
            .args(["8", "200000"]);
        let run = run_command(cmd, TIMEOUT);
        let counted = reader.join().expect("the reader");
        let _ = std::fs::remove_file(&fifo);
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        assert!(
            run.stdout
                .ends_with(&format!("{}\n", hot_result(8, 200_000))),
            "{what}: {}",
            run.stdout
        );
        assert_eq!(counted, (1_600_000, 1_600_000, 0), "{what}");
    }
}

/// rtrace reading slowly (a pause after each read, a test knob): the
/// threads wait for room and nothing is lost. The same run with
/// `--overflow drop` loses records (the ring does fill up), and its counts
/// still add up: counted + missed = made, with one warning at the end that
/// gives the missed figure. (The pause is 5 ms, well under the 50 ms a
/// waiting thread gives rtrace between two signs of reading, so that the
/// test holds on a machine so loaded that rtrace's watchman thread, which
/// keeps the heartbeat meanwhile, is not run for that long: the threads
/// would then rightly drop, as for an rtrace that stopped reading.)
#[test]
fn a_slow_reader_loses_nothing_and_drop_counts_every_loss() {
    let slow = |args: &[&str]| {
        let mut cmd = Command::new(rtrace_bin());
        cmd.env("RTRACE_TEST_READ_PAUSE_MS", "5")
            .arg("--fast")
            .args(recorded())
            .args(args)
            .args(["-c", "-s", "work", "--"])
            .arg(fixture("hot", Variant::O2))
            .args(["4", "20000"]);
        run_command(cmd, TIMEOUT)
    };
    let blocked = slow(&[]);
    assert_eq!(blocked.code(), 0, "{}", blocked.stderr);
    assert!(blocked
        .stdout
        .ends_with(&format!("{}\n", hot_result(4, 20_000))));
    assert_eq!(summary_row(&blocked.stderr, "work"), (80_000, 0));
    assert_eq!(lost_warnings(&blocked.stderr), Vec::<&str>::new());

    let dropped = slow(&["--overflow", "drop"]);
    assert_eq!(dropped.code(), 0, "{}", dropped.stderr);
    assert!(dropped
        .stdout
        .ends_with(&format!("{}\n", hot_result(4, 20_000))));
    let (calls, missed) = summary_row(&dropped.stderr, "work");
    assert!(missed > 0, "the ring never filled:\n{}", dropped.stderr);
    assert_eq!(calls + missed, 80_000, "{}", dropped.stderr);
    let warnings = lost_warnings(&dropped.stderr);
    assert_eq!(warnings.len(), 1, "{}", dropped.stderr);
    assert!(
        warnings[0].starts_with(&format!(
            "rtrace: warning: probe work: {missed} fast calls of work not recorded: "
        )),
        "{}",
        warnings[0]
    );
}

/// hot, with rtrace attached to it (`--fast -c -s work`, recorded: see
/// [`recorded`]; `env` in rtrace's
/// environment), driven by its cues: its threads exist (`started`) before
/// the caller does anything to rtrace, and run once [`Hot::go`] is called.
/// Both are this test's children.
struct Hot {
    program: Spawned,
    rtrace: Spawned,
}

impl Hot {
    fn start(env: &[(&str, &str)], threads: u64, calls: u64) -> Hot {
        let mut cmd = Command::new(fixture("hot", Variant::O2));
        cmd.args([threads.to_string(), calls.to_string()]);
        let mut program = Spawned::with_stdin(cmd);
        program.wait_stdout_line(|l| l == "ready");
        let mut cmd = Command::new(rtrace_bin());
        cmd.envs(env.iter().copied())
            .args(recorded())
            .args(["--fast", "-c", "-s", "work", "-p"])
            .arg(program.pid().to_string());
        let mut rtrace = Spawned::command(cmd);
        // The jump is written before the attach line.
        rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached to pid "));
        program.send("start\n");
        program.wait_stdout_line(|l| l == "started");
        // Each new thread's first stop let go by rtrace: all of them asleep
        // (at the start barrier; the main thread reading its cue).
        let pid = program.pid();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let tids = threads_of(pid);
            let asleep = tids
                .iter()
                .filter(|&&t| process_state(t) == Some('S'))
                .count();
            if tids.len() as u64 == threads + 1 && asleep == tids.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "hot's threads never all slept at the barrier ({asleep} of {})",
                tids.len()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Hot { program, rtrace }
    }

    fn go(&mut self) {
        self.program.send("go\n");
    }
}

/// rtrace stopped (SIGSTOP) while 4 threads make 500,000 calls each: the
/// ring fills, the waiting threads see no heartbeat and go on, and the
/// program finishes its calls while rtrace is still stopped (no thread
/// waits on a stopped rtrace for good). Continued, rtrace counts every
/// call: counted + missed = 2,000,000, the missed ones said once.
#[test]
fn a_stopped_rtrace_never_holds_the_program() {
    let mut hot = Hot::start(&[], 4, 500_000);
    hot.rtrace.signal(Signal::SIGSTOP);
    hot.rtrace.wait_stopped();
    hot.go();
    let done = hot.program.wait_stdout_line(|l| l.starts_with("calls="));
    assert_eq!(done, hot_result(4, 500_000));
    hot.rtrace.signal(Signal::SIGCONT);
    let program = hot.program.wait();
    assert_eq!(program.code(), 0, "{}", program.stderr);
    let run = hot.rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let (calls, missed) = summary_row(&run.stderr, "work");
    assert!(missed > 0, "{}", run.stderr);
    assert_eq!(calls + missed, 2_000_000, "{}", run.stderr);
    assert_eq!(lost_warnings(&run.stderr).len(), 1, "{}", run.stderr);
}

/// The threads of `pid` blocked in a system call (from
/// `/proc/PID/task/TID/syscall`): the call's number and the instruction
/// pointer.
fn blocked_threads(pid: i32) -> Vec<(u64, u64)> {
    threads_of(pid)
        .into_iter()
        .filter_map(|tid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
            let words: Vec<&str> = text.split_whitespace().collect();
            let nr: u64 = words.first()?.parse().ok()?;
            let pc = u64::from_str_radix(words.last()?.trim_start_matches("0x"), 16).ok()?;
            Some((nr, pc))
        })
        .collect()
}

/// rtrace SIGKILLed while the program's 4 threads wait for room inside
/// their detours (rtrace reading slowly, the ring full: each thread is
/// seen asleep in `futex` at an address of the executable anonymous
/// mappings rtrace made): the threads see rtrace gone, drop their records
/// and go on, and the program finishes with its own output and status.
#[test]
fn rtrace_killed_while_threads_wait_for_room() {
    let mut hot = Hot::start(&[("RTRACE_TEST_READ_PAUSE_MS", "50")], 4, 2_000_000);
    let pid = hot.program.pid();
    let detours: Vec<(u64, u64)> = maps(pid)
        .expect("its maps")
        .iter()
        .filter(|m| m.perms.contains('x') && m.path.is_empty())
        .map(|m| (m.start, m.end))
        .collect();
    assert!(!detours.is_empty(), "no detour area");
    hot.go();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let waiting = blocked_threads(pid)
            .into_iter()
            .filter(|&(nr, pc)| {
                nr == libc::SYS_futex as u64 && detours.iter().any(|&(s, e)| (s..e).contains(&pc))
            })
            .count();
        if waiting == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the threads never all waited in their detours ({waiting} of 4)"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    hot.rtrace.signal(Signal::SIGKILL);
    let _ = hot.rtrace.wait();
    let done = hot.program.wait_stdout_line(|l| l.starts_with("calls="));
    assert_eq!(done, hot_result(4, 2_000_000));
    let program = hot.program.wait();
    assert_eq!(program.code(), 0, "{}", program.stderr);
}

/// The children of process `pid` (its main thread's).
fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// A process's peak resident set, in KiB (`VmHWM`).
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// 300 children alive at once under `--fast -f`, each with its fast
/// probes and a ring of its own (16 MiB of shared memory at its parent's
/// place): rtrace's peak resident memory while they all live stays under
/// 200 MB, as a child's ring takes memory only as records are written (300
/// rings made whole would be 4.8 GB); and every call of every process is
/// counted.
#[test]
fn many_live_children_do_not_take_a_ring_of_memory_each() {
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["--fast", "-f", "-c", "-s", "work", "--"])
        .arg(fixture("litter", Variant::O2))
        .arg("300");
    let mut rtrace = Spawned::with_stdin(cmd);
    let attached = rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached to pid "));
    let root: i32 = attached["rtrace: attached to pid ".len()..]
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the program's pid");
    rtrace.wait_stdout_line(|l| l == "forked 300");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let children = children_of(root);
        let with_ring = children
            .iter()
            .filter(|&&c| crate::fast::our_mappings(c).1 == 1)
            .count();
        if children.len() == 300 && with_ring == 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} children, {with_ring} with a ring",
            children.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let kib = peak_rss_kib(rtrace.pid());
    assert!(kib < 200 * 1024, "rtrace's peak RSS: {kib} KiB");
    rtrace.send("go\n");
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(run.stdout.ends_with("done 3010000\n"), "{}", run.stdout);
    assert_eq!(summary_row(&run.stderr, "work"), (30_100, 0));
}

/// `-c` (and `args`) over `hot 8 200000` (-O2): the program's output and
/// status are its own, and the table counts all 1,600,000 calls, none
/// missed. Returns the run.
fn every_hot_call_counted(args: &[&str]) -> crate::fixtures::Run {
    let run = count_hot(args, Variant::O2, 8, 200_000);
    assert_eq!(run.code(), 0, "{args:?}: {}", run.stderr);
    assert!(run
        .stdout
        .ends_with(&format!("{}\n", hot_result(8, 200_000))));
    assert_eq!(
        summary_row(&run.stderr, "work"),
        (1_600_000, 0),
        "{args:?}: {}",
        run.stderr
    );
    run
}

/// `--entry-only -c` counts every hit of 8 threads × 200,000 calls (in
/// the program: the detours add to counters rtrace reads), the table the
/// same as int3 probes give, and with `--perfetto` beside it (which wants
/// each hit: the hits are recorded) the same counts again.
#[test]
fn hits_counted_in_the_program_are_every_hit() {
    let recorded: Vec<&str> = ["--entry-only"].into_iter().chain(recorded()).collect();
    for args in [vec!["--entry-only"], recorded] {
        let run = every_hot_call_counted(&args);
        let row = summary_line(&run.stderr, "work");
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["1600000", "-", "-", "-", "-", "0", "-", "-", "work", "[work]"],
            "{args:?}"
        );
    }
}

/// Signals to threads that wait for room (rtrace reading slowly: 3 threads
/// mostly asleep in their detours and in the return stub): each of 200
/// SIGUSR1s is handled before the next is sent, and the program finishes
/// with its output, well within the test's deadline. (A thread rtrace
/// brought out of the stub's wait used to be stepped back into a claim of a
/// ring the other threads had filled again, over and over, its signal held
/// meanwhile for tens of seconds.) Every call is counted or missed.
#[test]
fn signals_reach_threads_that_wait_for_room() {
    let mut cmd = Command::new(rtrace_bin());
    cmd.env("RTRACE_TEST_READ_PAUSE_MS", "50")
        .args(recorded())
        .args(["--fast", "-c", "-s", "work", "--"])
        .arg(fixture("hot", Variant::O2))
        .args(["3", "200000", "200"]);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    // (The last thread's result and the signals' line, in either order.)
    let lines: Vec<&str> = run.stdout.lines().collect();
    let mut last = lines[2..].to_vec();
    last.sort_unstable();
    assert_eq!(lines[..2], ["ready", "started"], "{}", run.stdout);
    assert_eq!(last, [hot_result(3, 200_000).as_str(), "signals=200"]);
    let (calls, missed) = summary_row(&run.stderr, "work");
    assert_eq!(calls + missed, 600_000, "{}", run.stderr);
}

/// `-c` on a function probe times every call in the program (8 threads ×
/// 200,000 calls: 1,600,000 calls, none missed, no record written), with
/// `--hist` too (its buckets add up to the calls), and the table is the
/// same as when every call is recorded (`--perfetto` beside it): the
/// calls and missed columns equal, the average between the shortest and
/// the longest.
#[test]
fn calls_timed_in_the_program_are_every_call() {
    for args in [vec![], vec!["--hist"], recorded().to_vec()] {
        let run = every_hot_call_counted(&args);
        let row = summary_line(&run.stderr, "work");
        let us: Vec<f64> = row
            .split_whitespace()
            .skip(2)
            .take(3)
            .map(|w| w.parse().expect("microseconds"))
            .collect();
        assert!(us[1] <= us[0] && us[0] <= us[2], "{args:?}: {row}");
        if args == ["--hist"] {
            let bucketed: u64 = run
                .stderr
                .lines()
                .filter(|l| l.starts_with('['))
                .map(|l| {
                    // `[8, 16)   1019916 |@@…|`, `[0]   1 |@…|`: the count
                    // is the last word before the bar.
                    let label = &l[..l.find('|').expect("a bar")];
                    label
                        .split_whitespace()
                        .last()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                })
                .sum();
            assert_eq!(bucketed, 1_600_000, "{}", run.stderr);
        }
    }
}

/// Tail calls timed in the program (fixture `chain`: middle tail-jumps to
/// inner, outer to middle, 1,000 rounds of each): the calls chained to a
/// timed call, one and two deep, are timed with it, and the table's calls
/// are the ones int3 probes count, none missed, no warning; the program's
/// output is the same.
#[test]
fn tail_calls_timed_in_the_program_add_up() {
    let prog = fixture("chain", Variant::O2);
    let count = |fast: bool| {
        let mut cmd = Command::new(rtrace_bin());
        cmd.arg(if fast { "--fast" } else { "--int3" });
        cmd.args(["-c", "-s", "inner", "-s", "middle", "-s", "outer", "--"])
            .arg(&prog);
        run_command(cmd, TIMEOUT)
    };
    let (fast, int3) = (count(true), count(false));
    for run in [&fast, &int3] {
        assert_eq!(run.code(), 0, "{}", run.stderr);
        assert_eq!(run.stdout, "chain=1203000\n");
    }
    // Every probe fast: none is said to stay int3.
    assert!(!fast.stderr.contains("rtrace: probe "), "{}", fast.stderr);
    let rows = |run: &crate::fixtures::Run| {
        ["outer", "middle", "inner"].map(|f| summary_row(&run.stderr, f))
    };
    assert_eq!(rows(&int3), [(1_000, 0), (2_000, 0), (2_000, 0)]);
    assert_eq!(rows(&fast), rows(&int3));
    assert!(!fast.stderr.contains("warning"), "{}", fast.stderr);
}

/// Calls timed in the program whose returns an unwinder or a function that
/// reads its own return address, met at an int3, takes from the stub:
/// rtrace takes them out of the table and watches them as recorded calls,
/// and every count is the one int3 probes give, none missed. `thrower`
/// with the unwinder's entry probed too (`_Unwind_RaiseException`: the
/// hook that parks calls in the program cannot be there, so the unwinder
/// is met as an int3 with timed calls in flight); `tailsym`, whose findsym
/// reaches dlsym by a tail call, with dlsym probed and without. (Where
/// dlsym's hook runs in the program instead, it puts the real return
/// address back and counts the timed call missed: calls + missed stay the
/// calls made.)
#[test]
fn timed_calls_an_unwinder_or_a_caller_reader_meets_are_counted() {
    // (The program, its functions compared, other functions probed.)
    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "thrower",
            &["inner", "middle", "outer"],
            &["_Unwind_RaiseException"],
        ),
        ("tailsym", &["top", "wrapsym", "findsym"], &[]),
        ("tailsym", &["top", "wrapsym", "findsym"], &["dlsym"]),
    ];
    for (name, functions, also) in cases {
        let prog = fixture(name, Variant::O2);
        let untraced = run_untraced(&prog, &[]);
        let count = |fast: bool| {
            let mut cmd = Command::new(rtrace_bin());
            cmd.arg(if fast { "--fast" } else { "--int3" });
            cmd.arg("-c");
            for f in functions.iter().chain(also) {
                cmd.args(["-s", f]);
            }
            cmd.arg("--").arg(&prog);
            run_command(cmd, TIMEOUT)
        };
        let (fast, int3) = (count(true), count(false));
        for run in [&fast, &int3] {
            assert_eq!(run.code(), untraced.code(), "{name}: {}", run.stderr);
            assert_eq!(run.stdout, untraced.stdout, "{name}");
        }
        for f in functions {
            let (calls, missed) = summary_row(&int3.stderr, f);
            assert_ne!(calls, 0, "{name} {f}: {}", int3.stderr);
            assert_eq!(missed, 0, "{name} {f}");
            assert_eq!(summary_row(&fast.stderr, f), (calls, 0), "{name} {f}");
        }
    }
}
