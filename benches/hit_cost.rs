//! Per-hit cost of rtrace against a minimal ptrace tracer doing the same work
//! (`benches/floor.c`), and against ltrace, gdb and bpftrace when they are
//! installed; the cost of output, of many armed probes, of CPU placement; and
//! rtrace's peak memory with all of libc probed, against gdb's.
//!
//! ```text
//! cargo bench --bench hit_cost            # N = 20000 calls, 5 runs each
//! cargo bench --bench hit_cost -- 50000 7 # N calls, R runs
//! cargo bench --bench hit_cost -- 20000 5 'rtrace entry+return'  # only those
//! ```
//!
//! A fixture (`count N`, built non-PIE with `work()` starting with
//! `push %rbp`, which rtrace emulates) calls the probed `work()` N times.
//! Every configuration runs as whole processes at N/5 and at N calls, R
//! times each, all interleaved (A B A B …) so that a machine busy for a while
//! slows them all alike. The cost per call is the slope: (median time at N -
//! median time at N/5) / (4N/5), so what does not depend on the number of
//! calls (starting the process, attaching, arming thousands of probes,
//! bpftrace compiling its program) cancels out. The ratios, taken from one
//! run, are what the goals are about. The traced program's stdout goes to
//! /dev/null.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One way of running `count N`.
struct Config {
    name: &'static str,
    argv: Box<dyn Fn(u32) -> Vec<String>>,
}

fn build(out_dir: &Path) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let count = out_dir.join("count");
    let floor = out_dir.join("floor");
    let gcc = |args: &[&str]| {
        let status = Command::new("gcc").args(args).status().expect("run gcc");
        assert!(status.success(), "gcc {args:?}");
    };
    let fixtures = root.join("target-fixtures");
    gcc(&[
        "-O0",
        "-no-pie",
        "-fcf-protection=none",
        &format!("-I{}", fixtures.display()),
        fixtures.join("count.c").to_str().unwrap(),
        "-o",
        count.to_str().unwrap(),
    ]);
    gcc(&[
        "-O2",
        root.join("benches/floor.c").to_str().unwrap(),
        "-o",
        floor.to_str().unwrap(),
    ]);
    (count, floor)
}

fn symbol(path: &Path, name: &str) -> u64 {
    let out = Command::new("nm").arg(path).output().expect("run nm");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, _, sym) = (f.next()?, f.next()?, f.next()?);
            (sym == name).then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in {}", path.display()))
}

fn installed(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `argv` to completion: its wall time and its peak resident set (KiB).
fn run(argv: &[String]) -> (Duration, u64) {
    let (elapsed, _, kib) = run_read(argv, Path::new("/dev/null"));
    (elapsed, kib)
}

/// The cost per call of each configuration: the slope of the median times
/// between `small` and `n` calls, every run of every configuration
/// interleaved.
fn measure(configs: &[Config], small: u32, n: u32, runs: usize) -> Vec<f64> {
    let mut samples: Vec<[Vec<Duration>; 2]> = configs.iter().map(|_| [vec![], vec![]]).collect();
    for _ in 0..runs {
        for (i, c) in configs.iter().enumerate() {
            for (j, calls) in [small, n].into_iter().enumerate() {
                samples[i][j].push(run(&(c.argv)(calls)).0);
            }
        }
    }
    samples
        .iter_mut()
        .map(|[lo, hi]| {
            let (lo, hi) = (median(lo), median(hi));
            (hi.as_secs_f64() - lo.as_secs_f64()) * 1e6 / f64::from(n - small)
        })
        .collect()
}

/// The work was done: each rtrace configuration that counts (`-c`), run
/// once more at `n` calls with its table written to a file, counted every
/// call of `work`, and missed none (a return the stub could not record is
/// not a cheap call). Panics otherwise.
fn every_call_counted(configs: &[Config], n: u32, out_dir: &Path) {
    let table = out_dir.join("counted.txt");
    for c in configs.iter().filter(|c| c.name.starts_with("rtrace")) {
        let mut argv = (c.argv)(n);
        if !argv.iter().any(|a| a == "-c") {
            continue;
        }
        let Some(o) = argv.iter().position(|a| a == "-o") else {
            continue;
        };
        argv[o + 1] = table.to_str().unwrap().to_string();
        run(&argv);
        let text = std::fs::read_to_string(&table).expect("the -c table");
        // The row of `work`: calls first, `missed` sixth, `function [probe]` last.
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.ends_with(" [work]"))
            .unwrap_or_else(|| panic!("{}: no row for work in\n{text}", c.name))
            .split_whitespace()
            .collect();
        assert_eq!(
            (row[0], row[5]),
            (n.to_string().as_str(), "0"),
            "{}: calls and missed of work\n{text}",
            c.name
        );
    }
    println!("every rtrace -c configuration counted all {n} calls of work, none missed");
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let small = n / 5;
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let (count, floor) = build(&out_dir);
    let work = format!("{:#x}", symbol(&count, "work"));
    let rtrace = env!("CARGO_BIN_EXE_rtrace").to_string();
    let count = count.to_str().unwrap().to_string();
    let floor = floor.to_str().unwrap().to_string();
    let json_out = out_dir.join("events.jsonl").to_str().unwrap().to_string();
    // The CPU everything runs on when pinned: the last one.
    let cpu = (std::thread::available_parallelism().map_or(1, |n| n.get()) - 1).to_string();

    let mut configs: Vec<Config> = Vec::new();
    let mut add = |name: &'static str, f: Box<dyn Fn(u32) -> Vec<String>>| {
        configs.push(Config { name, argv: f });
    };
    {
        let count = count.clone();
        add(
            "untraced",
            Box::new(move |n| vec![count.clone(), n.to_string()]),
        );
    }
    for (name, mode, pinned) in [
        ("floor emulate (1 stop)", "emulate", false),
        ("floor step (2 stops)", "step", false),
        ("floor emulate+ret (2 stops)", "emulate-ret", false),
        ("floor step+ret (3 stops)", "step-ret", false),
        ("floor emulate, pinned", "emulate", true),
        ("floor step, pinned", "step", true),
        ("floor emulate+ret, pinned", "emulate-ret", true),
    ] {
        let (floor, work, count, cpu) = (floor.clone(), work.clone(), count.clone(), cpu.clone());
        add(
            name,
            Box::new(move |n| {
                let mut v = Vec::new();
                if pinned {
                    v.extend(strings(&["taskset", "-c", &cpu]));
                }
                v.extend(strings(&[&floor, mode, &work, &count, &n.to_string()]));
                v
            }),
        );
    }
    // The tracer's own cost: a counting handler (-c), nothing written per
    // hit; unpinned, and with --pin (rtrace and the program on one CPU, as
    // the pinned floor runs).
    for (name, extra) in [
        ("rtrace entry, emulated", &["-c", "--entry-only"][..]),
        (
            "rtrace entry, emulated, --pin",
            &["-c", "--entry-only", "--pin"][..],
        ),
        (
            "rtrace entry, xol",
            &["-c", "--entry-only", "--step", "xol"][..],
        ),
        (
            "rtrace entry, xol, --pin",
            &["-c", "--entry-only", "--step", "xol", "--pin"][..],
        ),
        ("rtrace entry+return", &["-c"][..]),
        ("rtrace entry+return, --pin", &["-c", "--pin"][..]),
        // The return at a stop of its own, as before the return stub.
        (
            "rtrace entry+return --returns stop",
            &["-c", "--returns", "stop"][..],
        ),
        (
            "rtrace entry+return --returns stop, --pin",
            &["-c", "--returns", "stop", "--pin"][..],
        ),
        (
            "rtrace entry+return, all of libc too",
            &["-c", "-s", "libc:*"][..],
        ),
        (
            "rtrace entry+return, all of libc too, --pin",
            &["-c", "--pin", "-s", "libc:*"][..],
        ),
        ("rtrace entry+return --stack", &["--stack"][..]),
        (
            "rtrace entry+return --stack, --pin",
            &["--stack", "--pin"][..],
        ),
    ] {
        let (rtrace, count) = (rtrace.clone(), count.clone());
        add(
            name,
            Box::new(move |n| {
                let mut v = strings(&[&rtrace, "-o", "/dev/null"]);
                v.extend(strings(extra));
                v.extend(strings(&["-s", "work", "--", &count, &n.to_string()]));
                v
            }),
        );
    }
    {
        // Stacks walked at every hit and counted, nothing printed per hit.
        let (rtrace, count) = (rtrace.clone(), count.clone());
        let folded = out_dir.join("stacks.folded").to_str().unwrap().to_string();
        add(
            "rtrace entry+return -c --folded FILE",
            Box::new(move |n| {
                strings(&[
                    &rtrace,
                    "-c",
                    "-o",
                    "/dev/null",
                    "--folded",
                    &folded,
                    "-s",
                    "work",
                    "--",
                    &count,
                    &n.to_string(),
                ])
            }),
        );
    }
    for (name, pin) in [
        ("rtrace entry+return --json -o FILE", false),
        ("rtrace entry+return --json -o FILE, --pin", true),
    ] {
        let (rtrace, count, json_out) = (rtrace.clone(), count.clone(), json_out.clone());
        add(
            name,
            Box::new(move |n| {
                let mut v = strings(&[&rtrace, "--json", "-o", &json_out]);
                if pin {
                    v.push("--pin".into());
                }
                v.extend(strings(&["-s", "work", "--", &count, &n.to_string()]));
                v
            }),
        );
    }
    let pinned = |cpu: &str, pin: bool, v: Vec<String>| -> Vec<String> {
        match pin {
            true => [strings(&["taskset", "-c", cpu]), v].concat(),
            false => v,
        }
    };
    if installed("ltrace") {
        for (name, pin) in [("ltrace -x work", false), ("ltrace -x work, pinned", true)] {
            let (count, cpu) = (count.clone(), cpu.clone());
            add(
                name,
                Box::new(move |n| {
                    let v = strings(&[
                        "ltrace",
                        "-o",
                        "/dev/null",
                        "-x",
                        "work",
                        &count,
                        &n.to_string(),
                    ]);
                    pinned(&cpu, pin, v)
                }),
            );
        }
    }
    if installed("gdb") {
        let script = out_dir.join("gdb-commands");
        std::fs::write(
            &script,
            "set pagination off\nbreak work\ncommands\nsilent\ncontinue\nend\nrun\n",
        )
        .unwrap();
        let script = script.to_str().unwrap().to_string();
        for (name, pin) in [
            ("gdb break + continue", false),
            ("gdb break + continue, pinned", true),
        ] {
            let (count, cpu, script) = (count.clone(), cpu.clone(), script.clone());
            add(
                name,
                Box::new(move |n| {
                    let v = strings(&[
                        "gdb",
                        "-batch",
                        "-nx",
                        "-x",
                        &script,
                        "--args",
                        &count,
                        &n.to_string(),
                    ]);
                    pinned(&cpu, pin, v)
                }),
            );
        }
    }

    // A third argument keeps only the configurations whose name contains it
    // (`-- 20000 5 rtrace` leaves out the floor, ltrace, gdb and bpftrace).
    if let Some(only) = args.get(2) {
        configs.retain(|c| c.name.contains(only.as_str()));
    }
    let per_call = measure(&configs, small, n, runs);
    every_call_counted(&configs, n, &out_dir);
    let mut table: Vec<(&'static str, f64)> =
        configs.iter().map(|c| c.name).zip(per_call).collect();

    // bpftrace stops nothing (a kernel uprobe is a trap, well under a
    // microsecond): a hundred times more calls, for a slope above its
    // seconds of startup.
    if installed("bpftrace") && args.get(2).is_none_or(|o| "bpftrace".contains(o.as_str())) {
        let mut bpf: Vec<Config> = Vec::new();
        for (name, program) in [
            ("bpftrace uprobe", "uprobe:COUNT:work { @n = count(); }"),
            (
                "bpftrace uprobe + uretprobe",
                "uprobe:COUNT:work { @s[tid] = nsecs; } uretprobe:COUNT:work { @t = sum(nsecs - @s[tid]); }",
            ),
        ] {
            let count = count.clone();
            let program = program.replace("COUNT", &count);
            bpf.push(Config {
                name,
                argv: Box::new(move |n| {
                    strings(&["bpftrace", "-q", "-e", &program, "-c", &format!("{count} {n}")])
                }),
            });
        }
        let (lo, hi) = (small.saturating_mul(100), n.saturating_mul(100));
        let per = measure(&bpf, lo, hi, runs);
        table.extend(bpf.iter().map(|c| c.name).zip(per));
    }

    println!("µs per call: the slope between {small} and {n} calls (bpftrace: x100), medians of {runs} runs");
    for (name, us) in &table {
        println!("  {name:<46} {us:>9.2}");
    }
    let get = |name: &str| table.iter().find(|(n, _)| *n == name).map(|(_, us)| *us);
    let ratio = |what: &str, a: &str, b: &str, goal: Option<f64>| {
        if let (Some(x), Some(y)) = (get(a), get(b)) {
            let r = x / y;
            match goal {
                Some(goal) => {
                    let verdict = if r <= goal { "met" } else { "MISSED" };
                    println!("  {what:<58} {r:>6.2}  (goal <= {goal}: {verdict})");
                }
                None => println!("  {what:<58} {r:>6.2}"),
            }
        }
    };
    println!("ratios (unpinned, then pinned: rtrace --pin against taskset for the others):");
    for (what, a, b, goal) in [
        (
            "entry emulated / floor emulate",
            "rtrace entry, emulated",
            "floor emulate (1 stop)",
            Some(1.2),
        ),
        (
            // One stop per call: the return is recorded by the return stub.
            "entry+return / floor emulate (1 stop)",
            "rtrace entry+return",
            "floor emulate (1 stop)",
            Some(1.3),
        ),
        (
            "entry+return --returns stop / floor emulate+ret",
            "rtrace entry+return --returns stop",
            "floor emulate+ret (2 stops)",
            Some(1.2),
        ),
        (
            "entry xol / floor step",
            "rtrace entry, xol",
            "floor step (2 stops)",
            Some(1.2),
        ),
        (
            "entry+return / ltrace",
            "rtrace entry+return",
            "ltrace -x work",
            Some(0.3),
        ),
        (
            // gdb's breakpoint reports entries only: against an entry probe.
            "entry / gdb",
            "rtrace entry, emulated",
            "gdb break + continue",
            Some(0.12),
        ),
        (
            "--json -o FILE / counting only (-c)",
            "rtrace entry+return --json -o FILE",
            "rtrace entry+return",
            Some(1.10),
        ),
        (
            "all of libc probed too / one probe",
            "rtrace entry+return, all of libc too",
            "rtrace entry+return",
            Some(1.10),
        ),
        (
            "--stack / no stack",
            "rtrace entry+return --stack",
            "rtrace entry+return",
            None,
        ),
    ] {
        ratio(what, a, b, goal);
        let pin = |c: &str| -> String {
            if c.starts_with("rtrace") {
                format!("{c}, --pin")
            } else if c.starts_with("floor") {
                format!("{}, pinned", c.split(" (").next().unwrap_or(c))
            } else {
                format!("{c}, pinned")
            }
        };
        ratio(&format!("{what}, pinned"), &pin(a), &pin(b), goal);
    }
    ratio(
        "floor emulate, pinned / unpinned",
        "floor emulate, pinned",
        "floor emulate (1 stop)",
        None,
    );
    ratio(
        "entry+return, --pin / unpinned",
        "rtrace entry+return, --pin",
        "rtrace entry+return",
        None,
    );
    ratio(
        "entry+return, --pin / bpftrace uprobe + uretprobe",
        "rtrace entry+return, --pin",
        "bpftrace uprobe + uretprobe",
        None,
    );
    // Fast probes, sustained: see `fast_probes`.
    if args
        .get(2)
        .is_none_or(|only| "fast".contains(only.as_str()))
    {
        let hot = build_fixture(&out_dir, "hot");
        let per = fast_probes(&rtrace, &hot, &out_dir, runs);
        let litter = build_fixture(&out_dir, "litter");
        live_children(&rtrace, &litter, &out_dir, runs);
        for (what, name, peer) in [
            (
                "fast entry / bpftrace uprobe",
                "rtrace --fast entry -c",
                "bpftrace uprobe",
            ),
            (
                "fast entry+return / bpftrace uprobe + uretprobe",
                "rtrace --fast entry+return -c",
                "bpftrace uprobe + uretprobe",
            ),
        ] {
            let fast = per.iter().find(|(n, _)| *n == name).map(|(_, us)| *us);
            if let (Some(x), Some(y)) = (fast, get(peer)) {
                println!("  {what:<58} {:>6.2}", x / y);
            }
        }
    }

    // Recordings: see `recording`.
    if args
        .get(2)
        .is_none_or(|only| "record".contains(only.as_str()))
    {
        let hot = build_fixture(&out_dir, "hot");
        recording(&rtrace, &hot, &out_dir, runs);
    }

    // Startup with all of libc probed: launch /bin/true, resolve and arm
    // every libc function, run it.
    let mut startup: Vec<Duration> = (0..runs)
        .map(|_| {
            run(&strings(&[
                &rtrace,
                "-o",
                "/dev/null",
                "-s",
                "libc:*",
                "--",
                "/bin/true",
            ]))
            .0
        })
        .collect();
    let startup = median(&mut startup);
    let verdict = if startup < Duration::from_secs(1) {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "startup, all of libc armed (rtrace -s 'libc:*' -- /bin/true): {:.1} ms  (goal < 1 s: {verdict})",
        startup.as_secs_f64() * 1e3
    );

    // Peak memory with all of libc probed, against gdb with the same
    // program stopped in main, libc loaded (a breakpoint on main).
    let (_, rtrace_kib) = run(&strings(&[
        &rtrace,
        "-c",
        "-o",
        "/dev/null",
        "-s",
        "libc:*",
        "--",
        &count,
        "1000",
    ]));
    println!("peak RSS, all of libc probed (2000+ functions):");
    println!("  {:<40} {:>7} KiB", "rtrace -s 'libc:*'", rtrace_kib);
    if installed("gdb") {
        let (_, gdb_kib) = run(&strings(&[
            "gdb",
            "-batch",
            "-nx",
            "-ex",
            "break main",
            "-ex",
            "run",
            "-ex",
            "info sharedlibrary",
            "--args",
            &count,
            "1000",
        ]));
        println!("  {:<40} {:>7} KiB", "gdb, stopped in main", gdb_kib);
        let r = rtrace_kib as f64 / gdb_kib as f64;
        let verdict = if r <= 1.0 { "met" } else { "MISSED" };
        println!("  {:<52} {r:>6.2}  (goal <= 1: {verdict})", "rtrace / gdb");
    }
}

/// `rtrace record` over millions of calls of `hot`'s `work()`, one thread
/// and eight, sustained: the cost per call over the untraced program (the
/// slope between a fifth of the calls and all of them, medians of `runs`),
/// the events written a second and the bytes an event, counted only when
/// every run recorded every entry and every return (the recorder's count);
/// then `rtrace replay --json` of the larger recording, its events a second,
/// into a pipe whose reader counts them and into a file, checked to be
/// every event; a recording of 10 M calls over 8 threads,
/// checked to hold every entry and return; and, with uftrace installed, `uftrace
/// record` of the same program built with -pg, the same calls (each run
/// checked by `uftrace report`: every call of work), as a ratio.
fn recording(rtrace: &str, hot: &str, out_dir: &Path, runs: usize) {
    const CALLS: u32 = 2_000_000;
    let data = out_dir.join("rtrace.data");
    let data_s = data.to_str().unwrap().to_string();
    let err = out_dir.join("record-stderr.txt");
    let recorded = |stderr: &str| -> Option<(u64, u64)> {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("rtrace: recorded "))?;
        let w: Vec<&str> = line.split_whitespace().collect();
        Some((w.get(2)?.parse().ok()?, w.get(5)?.parse().ok()?))
    };
    println!(
        "recordings (hot -O2, work() almost nothing; µs per call over the untraced program, the \
         slope between a fifth of the calls and all of them, medians of {runs} runs; every run \
         checked):"
    );
    let mut rtrace_us = None;
    for threads in [1u32, 8] {
        let argv = |record: bool, calls: u32| -> Vec<String> {
            let mut v = Vec::new();
            if record {
                v.extend(strings(&[
                    rtrace, "record", "-o", &data_s, "-s", "work", "--",
                ]));
            }
            v.extend(strings(&[
                hot,
                &threads.to_string(),
                &(calls / threads).to_string(),
            ]));
            v
        };
        let mut times: [Vec<Duration>; 2] = [vec![], vec![]];
        let mut bare: [Vec<Duration>; 2] = [vec![], vec![]];
        let mut exact = true;
        let mut bytes = 0u64;
        for _ in 0..runs {
            for (i, calls) in [CALLS / 5, CALLS].into_iter().enumerate() {
                let calls = calls / threads * threads;
                bare[i].push(run_read(&argv(false, calls), &err).0);
                let (t, stderr, _) = run_read(&argv(true, calls), &err);
                times[i].push(t);
                exact &= recorded(&stderr) == Some((u64::from(calls), u64::from(calls)));
                bytes = std::fs::metadata(&data).map_or(0, |m| m.len());
            }
        }
        let slope = |v: &mut [Vec<Duration>; 2]| {
            let (lo, hi) = (median(&mut v[0]), median(&mut v[1]));
            (hi.as_secs_f64() - lo.as_secs_f64()) * 1e6 / f64::from(CALLS - CALLS / 5)
        };
        let us = slope(&mut times) - slope(&mut bare);
        let per_s = 2.0 / (us * 1e-6) / 1e6;
        let per_event = bytes as f64 / (2.0 * f64::from(CALLS));
        let name = format!("rtrace record entry+return, {threads} thread(s)");
        match exact {
            true => {
                let met = |ok: bool| if ok { "met" } else { "MISSED" };
                println!(
                    "  {name:<50} {us:>6.3}  ({CALLS} calls, every event recorded; {per_s:.1} M \
                     events/s, goal >= 20: {}; {per_event:.0} bytes an event, goal <= 24: {})",
                    met(per_s >= 20.0),
                    met(per_event <= 24.0)
                );
                if threads == 1 {
                    rtrace_us = Some(us);
                }
            }
            false => println!("  {name:<50}      -  (CALLS LOST: no cost reported)"),
        }
    }
    // The replay of the last (largest) recording, as JSON: into a pipe
    // whose reader counts the events (the rendering's speed), and into a
    // file (the disk's too: the kernel's writeback of a gigabyte competes).
    let out = out_dir.join("replayed.jsonl");
    let replay = |to_file: bool| -> (Duration, bool) {
        let mut argv = strings(&[rtrace, "replay", "--json"]);
        if to_file {
            argv.extend(strings(&["-o", out.to_str().unwrap()]));
        }
        argv.push(data_s.clone());
        let start = Instant::now();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {argv:?}: {e}"));
        let piped = events_read(child.stdout.take().expect("the pipe"));
        let ok = child.wait().is_ok_and(|s| s.success());
        let elapsed = start.elapsed();
        let (entries, returns, _) = match to_file {
            true => events_in(&out),
            false => piped,
        };
        let _ = std::fs::remove_file(&out);
        (
            elapsed,
            ok && entries == u64::from(CALLS) && returns == u64::from(CALLS),
        )
    };
    for (to_file, name) in [
        (false, "rtrace replay --json | (a reader counting)"),
        (true, "rtrace replay --json -o FILE"),
    ] {
        let mut times = Vec::new();
        let mut all = true;
        for _ in 0..runs {
            let (t, every) = replay(to_file);
            times.push(t);
            all &= every;
        }
        let per_s = 2.0 * f64::from(CALLS) / median(&mut times).as_secs_f64() / 1e6;
        match all {
            true => println!(
                "  {name:<50} {per_s:>6.2}  (M events/s, every event rendered; goal >= 2: {})",
                if per_s >= 2.0 { "met" } else { "MISSED" }
            ),
            false => println!("  {name:<50}      -  (EVENTS MISSING)"),
        }
    }
    // Ten million calls over eight threads, once: the file holds every
    // entry and every return.
    let big: u32 = 10_000_000;
    let (t, stderr, _) = run_read(
        &strings(&[
            rtrace,
            "record",
            "-o",
            &data_s,
            "-s",
            "work",
            "--",
            hot,
            "8",
            &(big / 8).to_string(),
        ]),
        &err,
    );
    let size = std::fs::metadata(&data).map_or(0, |m| m.len());
    let name = "rtrace record, 10 M calls over 8 threads";
    match recorded(&stderr) == Some((u64::from(big), u64::from(big))) {
        true => println!(
            "  {name:<50} {:>6.2}  (s; every entry and return recorded, {:.0} MB, {:.1} M \
             events/s)",
            t.as_secs_f64(),
            size as f64 / 1e6,
            2.0 * f64::from(big) / t.as_secs_f64() / 1e6
        ),
        false => println!("  {name:<50}      -  (CALLS LOST: {:?})", recorded(&stderr)),
    }
    let _ = std::fs::remove_file(&data);
    if !installed("uftrace") {
        println!("  uftrace record: not installed (apt-get install uftrace)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("target-fixtures");
    let pg = out_dir.join("hot-pg");
    let status = Command::new("gcc")
        .args([
            "-O2",
            "-pg",
            "-pthread",
            &format!("-I{}", fixtures.display()),
        ])
        .arg(fixtures.join("hot.c"))
        .arg("-o")
        .arg(&pg)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc -pg hot.c");
    let pg = pg.to_str().unwrap().to_string();
    // (A -pg program writes gmon.out where it runs.)
    let back = std::env::current_dir().expect("the current directory");
    std::env::set_current_dir(out_dir).expect("cd to the bench's directory");
    let udata = out_dir.join("uftrace.data");
    let udata_s = udata.to_str().unwrap().to_string();
    let argv = |record: bool, calls: u32| -> Vec<String> {
        let mut v = Vec::new();
        if record {
            v.extend(strings(&["uftrace", "record", "-d", &udata_s]));
        }
        v.extend(strings(&[&pg, "1", &calls.to_string()]));
        v
    };
    let mut times: [Vec<Duration>; 2] = [vec![], vec![]];
    let mut bare: [Vec<Duration>; 2] = [vec![], vec![]];
    let mut exact = true;
    for _ in 0..runs {
        for (i, calls) in [CALLS / 5, CALLS].into_iter().enumerate() {
            bare[i].push(run_read(&argv(false, calls), &err).0);
            times[i].push(run_read(&argv(true, calls), &err).0);
            let report = Command::new("uftrace")
                .args(["report", "-d", &udata_s, "-F", "work", "-f", "call"])
                .output()
                .expect("uftrace report");
            let text = String::from_utf8_lossy(&report.stdout);
            exact &= text.lines().any(|l| {
                l.trim_end().ends_with("work")
                    && l.split_whitespace().next() == Some(&calls.to_string())
            });
        }
    }
    let slope = |v: &mut [Vec<Duration>; 2]| {
        let (lo, hi) = (median(&mut v[0]), median(&mut v[1]));
        (hi.as_secs_f64() - lo.as_secs_f64()) * 1e6 / f64::from(CALLS - CALLS / 5)
    };
    let us = slope(&mut times) - slope(&mut bare);
    let _ = std::fs::remove_dir_all(&udata);
    std::env::set_current_dir(back).expect("cd back");
    match exact {
        true => {
            println!(
                "  {:<50} {us:>6.3}  (every call recorded)",
                "uftrace record (-pg)"
            );
            if let Some(r) = rtrace_us {
                let ratio = r / us;
                let met = if ratio <= 1.0 { "met" } else { "MISSED" };
                println!(
                    "  {:<50} {ratio:>6.2}  (goal <= 1: {met})",
                    "rtrace record / uftrace record"
                );
            }
        }
        false => println!(
            "  {:<50}      -  (CALLS LOST: no cost reported)",
            "uftrace record (-pg)"
        ),
    }
}

/// Builds fixture `name` (target-fixtures/NAME.c, gcc -O2).
fn build_fixture(out_dir: &Path, name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("target-fixtures");
    let out = out_dir.join(name);
    let status = Command::new("gcc")
        .args(["-O2", "-pthread", &format!("-I{}", fixtures.display())])
        .arg(fixtures.join(format!("{name}.c")))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc {name}.c");
    out.to_str().unwrap().to_string()
}

/// 1,000 children alive at once, traced with `-f`: fast probes (a ring per
/// child) against int3 probes, the wall time and rtrace's peak RSS (medians
/// of `runs`), every run checked to have counted every call.
fn live_children(rtrace: &str, litter: &str, out_dir: &Path, runs: usize) {
    const CHILDREN: u64 = 1000;
    let err = out_dir.join("litter-stderr.txt");
    let mut rows = Vec::new();
    for (name, fast) in [("int3", false), ("--fast", true)] {
        let mut argv = strings(&[rtrace, "-f", "-c", "-s", "work"]);
        if fast {
            argv.push("--fast".into());
        }
        argv.extend(strings(&["--", litter, &CHILDREN.to_string()]));
        let (mut times, mut rss) = (Vec::new(), Vec::new());
        let mut exact = true;
        for _ in 0..runs {
            let (t, stderr, kib) = run_read(&argv, &err);
            times.push(t);
            rss.push(Duration::from_secs(kib));
            exact &= counted(&stderr) == Some((100 * (CHILDREN + 1), 0));
        }
        let (t, kib) = (median(&mut times), median(&mut rss).as_secs());
        rows.push((name, t, kib, exact));
    }
    println!("{CHILDREN} children alive at once (-f -c, litter), medians of {runs} runs:");
    for (name, t, kib, exact) in &rows {
        let seen = if *exact {
            "every call seen"
        } else {
            "CALLS LOST"
        };
        println!(
            "  {name:<8} {:>8.2} s  peak RSS {:>6} MiB  ({seen})",
            t.as_secs_f64(),
            kib / 1024
        );
    }
    if let [(_, t3, _, true), (_, tf, kf, true)] = rows[..] {
        let r = tf.as_secs_f64() / t3.as_secs_f64();
        let time = if r <= 2.0 { "met" } else { "MISSED" };
        let mem = if kf <= 200 * 1024 { "met" } else { "MISSED" };
        println!(
            "  --fast / int3 time {r:.2} (goal <= 2: {time}); --fast RSS (goal <= 200 MiB: {mem})"
        );
    }
}

/// One row of the fast-probe table.
struct FastRow {
    name: &'static str,
    /// rtrace's arguments before `-s work -- hot`.
    args: &'static [&'static str],
    threads: u32,
    /// Calls at the larger size (the smaller is a fifth).
    calls: u32,
    /// The events are written as JSON to a file (counted after each run).
    written: bool,
    /// Records may be dropped (`--overflow drop`): the row reports the
    /// loss instead of requiring none.
    drops: bool,
    /// The goal per call, in µs.
    goal: Option<f64>,
}

/// Runs `argv` to its end, its stderr into `err`: its wall time, that
/// stderr, and its peak resident set (KiB).
fn run_read(argv: &[String], err: &Path) -> (Duration, String, u64) {
    let start = Instant::now();
    let file = std::fs::File::create(err).expect("the stderr file");
    // Reaped by wait4 below (for its rusage), not by Child::wait.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("run {argv:?}: {e}"));
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert!(r > 0, "wait4 {argv:?}");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{argv:?}: status {status:#x}"
    );
    let text = std::fs::read_to_string(err).unwrap_or_default();
    (elapsed, text, usage.ru_maxrss as u64)
}

/// The calls and missed columns of `work`'s row of a `-c` table.
fn counted(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find(|l| l.ends_with(" [work]"))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    Some((w.first()?.parse().ok()?, w.get(5)?.parse().ok()?))
}

/// Entry and return events in a JSON Lines file, and the calls its
/// warnings say were not recorded (their `lost` fields).
fn events_in(path: &Path) -> (u64, u64, u64) {
    events_read(std::fs::File::open(path).expect("the events file"))
}

/// [`events_in`] of what `from` gives (one line buffer for all: a reader
/// of a pipe must keep up with the replay it measures).
fn events_read(from: impl std::io::Read) -> (u64, u64, u64) {
    use std::io::BufRead;
    let (mut entries, mut returns, mut lost) = (0, 0, 0);
    let mut from = std::io::BufReader::with_capacity(1 << 20, from);
    let mut line = Vec::new();
    loop {
        line.clear();
        if from.read_until(b'\n', &mut line).expect("a line") == 0 {
            break;
        }
        if line.starts_with(b"{\"event\":\"entry\"") {
            entries += 1;
        } else if line.starts_with(b"{\"event\":\"return\"") {
            returns += 1;
        } else if line.starts_with(b"{\"event\":\"warning\"") {
            let text = String::from_utf8_lossy(&line);
            if let Some(at) = text.find("\"lost\":") {
                let digits: String = text[at + 7..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                lost += digits.parse::<u64>().unwrap_or(0);
            }
        }
    }
    (entries, returns, lost)
}

/// Fast probes over millions of calls of `hot`'s `work()`, sustained: each
/// row's cost is the slope of the median wall time between a fifth of its
/// calls and all of them, less the untraced program's slope, and counts
/// only if every run of it was checked to have seen every call (the `-c`
/// table: calls counted = calls made, none missed; or, written as JSON, one
/// entry and one return event per call). A dropped record is not a cheap
/// hit: a row that lost any is said to have, and `--overflow drop` shows
/// what it lost instead. Returns the cost per call of the rows that passed.
fn fast_probes(rtrace: &str, hot: &str, out_dir: &Path, runs: usize) -> Vec<(&'static str, f64)> {
    const M: u32 = 1_000_000;
    let rows = [
        FastRow {
            name: "rtrace --fast entry -c",
            args: &["--fast", "--entry-only", "-c"],
            threads: 1,
            calls: 50 * M,
            written: false,
            drops: false,
            goal: Some(0.05),
        },
        FastRow {
            name: "rtrace --fast entry+return -c",
            args: &["--fast", "-c"],
            threads: 1,
            calls: 50 * M,
            written: false,
            drops: false,
            goal: Some(0.15),
        },
        FastRow {
            name: "rtrace --fast entry+return -c --hist",
            args: &["--fast", "-c", "--hist"],
            threads: 1,
            calls: 50 * M,
            written: false,
            drops: false,
            goal: Some(0.15),
        },
        FastRow {
            name: "rtrace --fast entry+return, 8 threads -c",
            args: &["--fast", "-c"],
            threads: 8,
            calls: 50 * M,
            written: false,
            drops: false,
            goal: Some(0.15),
        },
        FastRow {
            name: "rtrace --fast entry+return --json -o FILE",
            args: &["--fast", "--json"],
            threads: 1,
            calls: 2 * M,
            written: true,
            drops: false,
            goal: Some(1.0),
        },
        FastRow {
            name: "rtrace --fast entry+return --json -o FILE, 8 thr.",
            args: &["--fast", "--json"],
            threads: 8,
            calls: 2 * M,
            written: true,
            drops: false,
            goal: Some(1.0),
        },
        FastRow {
            name: "rtrace --fast entry+return --json --overflow drop",
            args: &["--fast", "--json", "--overflow", "drop"],
            threads: 1,
            calls: 2 * M,
            written: true,
            drops: true,
            goal: None,
        },
    ];
    let events = out_dir.join("fast-events.jsonl");
    let err = out_dir.join("fast-stderr.txt");
    let argv = |row: Option<&FastRow>, threads: u32, calls: u32| -> Vec<String> {
        let per_thread = (calls / threads).to_string();
        let mut v = Vec::new();
        if let Some(row) = row {
            v.push(rtrace.to_string());
            v.extend(strings(row.args));
            // A `-c` table goes to stderr, to be checked.
            if row.written {
                v.extend(strings(&["-o", events.to_str().unwrap()]));
            }
            v.extend(strings(&["-s", "work", "--"]));
        }
        v.extend(strings(&[hot, &threads.to_string(), &per_thread]));
        v
    };
    println!(
        "fast probes, sustained (hot -O2, work() almost nothing; µs per call over the untraced \
         program, the slope between a fifth of the calls and all of them, medians of {runs} runs; \
         every run checked):"
    );
    let mut out = Vec::new();
    for row in &rows {
        let mut times: [Vec<Duration>; 2] = [vec![], vec![]];
        let mut bare: [Vec<Duration>; 2] = [vec![], vec![]];
        let mut exact = true;
        let mut lost = (0u64, 0u64);
        let mut rss = 0;
        for _ in 0..runs {
            for (i, calls) in [row.calls / 5, row.calls].into_iter().enumerate() {
                let calls = calls / row.threads * row.threads;
                bare[i].push(run_read(&argv(None, row.threads, calls), &err).0);
                let (t, stderr, kib) = run_read(&argv(Some(row), row.threads, calls), &err);
                times[i].push(t);
                rss = rss.max(kib);
                let (seen, missed) = match row.written {
                    // Each call once: whole (an entry and a return event),
                    // or said not recorded.
                    true if row.drops => {
                        let (_, returns, lost) = events_in(&events);
                        let _ = std::fs::remove_file(&events);
                        (returns, lost)
                    }
                    true => {
                        let (entries, returns, _) = events_in(&events);
                        let _ = std::fs::remove_file(&events);
                        let seen = entries.min(returns);
                        (seen, u64::from(calls) - seen)
                    }
                    false => counted(&stderr).unwrap_or((0, u64::from(calls))),
                };
                if row.drops {
                    exact &= seen + missed == u64::from(calls);
                    lost = (lost.0 + missed, lost.1 + u64::from(calls));
                } else {
                    exact &= seen == u64::from(calls) && missed == 0;
                }
            }
        }
        let slope = |v: &mut [Vec<Duration>; 2], n: u32| {
            let (lo, hi) = (median(&mut v[0]), median(&mut v[1]));
            (hi.as_secs_f64() - lo.as_secs_f64()) * 1e6 / f64::from(n - n / 5)
        };
        let us = slope(&mut times, row.calls) - slope(&mut bare, row.calls);
        let verdict = match (exact, row.drops, row.goal) {
            (false, false, _) => "CALLS LOST: no cost reported".to_string(),
            (false, true, _) => "counts do not add up".to_string(),
            (true, true, _) => format!(
                "{:.1}% of the calls dropped, counted",
                100.0 * lost.0 as f64 / lost.1.max(1) as f64
            ),
            (true, false, Some(goal)) => {
                out.push((row.name, us));
                let met = if us <= goal { "met" } else { "MISSED" };
                format!("every call seen; goal <= {goal}: {met}")
            }
            (true, false, None) => {
                out.push((row.name, us));
                "every call seen".to_string()
            }
        };
        let shown = match exact {
            true => format!("{us:>6.3}"),
            false => "     -".to_string(),
        };
        println!(
            "  {:<50} {shown}  ({} calls, {verdict}; rtrace peak RSS {} MiB)",
            row.name,
            row.calls,
            rss / 1024
        );
    }
    out
}
