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
    let start = Instant::now();
    // Reaped by wait4 below (for its rusage), not by Child::wait.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
    (elapsed, usage.ru_maxrss as u64)
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
        ("floor emulate, both pinned", "emulate", true),
        ("floor emulate+ret, both pinned", "emulate-ret", true),
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
    for (name, extra, pinned) in [
        ("rtrace entry, emulated", &["--entry-only"][..], false),
        (
            "rtrace entry, emulated, --pin",
            &["--entry-only", "--pin"][..],
            false,
        ),
        (
            "rtrace entry, xol",
            &["--entry-only", "--step", "xol"][..],
            false,
        ),
        ("rtrace entry+return", &[][..], false),
        ("rtrace entry+return, --pin", &["--pin"][..], false),
        ("rtrace entry+return, both pinned", &[][..], true),
        ("rtrace entry+return -c", &["-c"][..], false),
        ("rtrace entry+return --stack", &["--stack"][..], false),
        (
            "rtrace entry+return --stack, --pin",
            &["--stack", "--pin"][..],
            false,
        ),
        (
            "rtrace -c, all of libc probed too",
            &["-c", "-s", "libc:*"][..],
            false,
        ),
    ] {
        let (rtrace, count, cpu) = (rtrace.clone(), count.clone(), cpu.clone());
        add(
            name,
            Box::new(move |n| {
                let mut v = Vec::new();
                if pinned {
                    v.extend(strings(&["taskset", "-c", &cpu]));
                }
                v.extend(strings(&[&rtrace, "-o", "/dev/null"]));
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
    {
        let (rtrace, count, json_out) = (rtrace.clone(), count.clone(), json_out.clone());
        add(
            "rtrace entry+return --json -o FILE",
            Box::new(move |n| {
                strings(&[
                    &rtrace,
                    "--json",
                    "-o",
                    &json_out,
                    "-s",
                    "work",
                    "--",
                    &count,
                    &n.to_string(),
                ])
            }),
        );
    }
    if installed("ltrace") {
        let count = count.clone();
        add(
            "ltrace -x work",
            Box::new(move |n| {
                strings(&[
                    "ltrace",
                    "-o",
                    "/dev/null",
                    "-x",
                    "work",
                    &count,
                    &n.to_string(),
                ])
            }),
        );
    }
    if installed("gdb") {
        let script = out_dir.join("gdb-commands");
        std::fs::write(
            &script,
            "set pagination off\nbreak work\ncommands\nsilent\ncontinue\nend\nrun\n",
        )
        .unwrap();
        let script = script.to_str().unwrap().to_string();
        let count = count.clone();
        add(
            "gdb break + continue",
            Box::new(move |n| {
                strings(&[
                    "gdb",
                    "-batch",
                    "-nx",
                    "-x",
                    &script,
                    "--args",
                    &count,
                    &n.to_string(),
                ])
            }),
        );
    }
    if installed("bpftrace") {
        for (name, program) in [
            ("bpftrace uprobe", "uprobe:COUNT:work { @n = count(); }"),
            (
                "bpftrace uprobe + uretprobe",
                "uprobe:COUNT:work { @s[tid] = nsecs; } uretprobe:COUNT:work { @t = sum(nsecs - @s[tid]); }",
            ),
        ] {
            let count = count.clone();
            let program = program.replace("COUNT", &count);
            add(
                name,
                Box::new(move |n| {
                    strings(&["bpftrace", "-q", "-e", &program, "-c", &format!("{count} {n}")])
                }),
            );
        }
    }

    // A third argument keeps only the configurations whose name contains it
    // (`-- 20000 5 rtrace` leaves out the floor, ltrace, gdb and bpftrace).
    if let Some(only) = args.get(2) {
        configs.retain(|c| c.name.contains(only.as_str()));
    }
    let mut samples: Vec<[Vec<Duration>; 2]> = configs.iter().map(|_| [vec![], vec![]]).collect();
    for _ in 0..runs {
        for (i, c) in configs.iter().enumerate() {
            for (j, calls) in [small, n].into_iter().enumerate() {
                samples[i][j].push(run(&(c.argv)(calls)).0);
            }
        }
    }
    let per_call: Vec<f64> = samples
        .iter_mut()
        .map(|[lo, hi]| {
            let (lo, hi) = (median(lo), median(hi));
            (hi.as_secs_f64() - lo.as_secs_f64()) * 1e6 / f64::from(n - small)
        })
        .collect();
    println!("µs per call: the slope between {small} and {n} calls, medians of {runs} runs");
    for (c, us) in configs.iter().zip(&per_call) {
        println!("  {:<40} {us:>9.2}", c.name);
    }
    let get = |name: &str| {
        configs
            .iter()
            .position(|c| c.name == name)
            .map(|i| per_call[i])
    };
    let ratio = |what: &str, a: &str, b: &str, goal: Option<f64>| {
        if let (Some(x), Some(y)) = (get(a), get(b)) {
            let r = x / y;
            match goal {
                Some(goal) => {
                    let verdict = if r <= goal { "met" } else { "MISSED" };
                    println!("  {what:<52} {r:>6.2}  (goal <= {goal}: {verdict})");
                }
                None => println!("  {what:<52} {r:>6.2}"),
            }
        }
    };
    println!("ratios:");
    ratio(
        "entry emulated / floor emulate",
        "rtrace entry, emulated",
        "floor emulate (1 stop)",
        Some(1.2),
    );
    ratio(
        "entry+return / floor emulate+ret",
        "rtrace entry+return",
        "floor emulate+ret (2 stops)",
        Some(1.2),
    );
    ratio(
        "entry xol / floor step",
        "rtrace entry, xol",
        "floor step (2 stops)",
        Some(1.2),
    );
    ratio(
        "entry+return / ltrace",
        "rtrace entry+return",
        "ltrace -x work",
        Some(0.45),
    );
    ratio(
        "entry+return / gdb",
        "rtrace entry+return",
        "gdb break + continue",
        Some(0.15),
    );
    ratio(
        "--json -o FILE / -c",
        "rtrace entry+return --json -o FILE",
        "rtrace entry+return -c",
        Some(1.10),
    );
    ratio(
        "all of libc probed / one probe (-c)",
        "rtrace -c, all of libc probed too",
        "rtrace entry+return -c",
        Some(1.10),
    );
    ratio(
        "--stack / no stack (entry+return)",
        "rtrace entry+return --stack",
        "rtrace entry+return",
        None,
    );
    ratio(
        "--stack / no stack, both --pin",
        "rtrace entry+return --stack, --pin",
        "rtrace entry+return, --pin",
        None,
    );
    ratio(
        "--folded / no stack (-c)",
        "rtrace entry+return -c --folded FILE",
        "rtrace entry+return -c",
        None,
    );
    ratio(
        "entry, --pin / unpinned",
        "rtrace entry, emulated, --pin",
        "rtrace entry, emulated",
        None,
    );
    ratio(
        "entry+return, --pin / unpinned",
        "rtrace entry+return, --pin",
        "rtrace entry+return",
        None,
    );
    ratio(
        "entry+return, both pinned / unpinned",
        "rtrace entry+return, both pinned",
        "rtrace entry+return",
        None,
    );
    ratio(
        "floor emulate, both pinned / unpinned",
        "floor emulate, both pinned",
        "floor emulate (1 stop)",
        None,
    );
    ratio(
        "entry+return / bpftrace uprobe + uretprobe",
        "rtrace entry+return",
        "bpftrace uprobe + uretprobe",
        None,
    );

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
