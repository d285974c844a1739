//! Per-hit cost of rtrace against a minimal ptrace tracer doing the same work
//! (`benches/floor.c`), and against ltrace and gdb when they are installed.
//!
//! ```text
//! cargo bench --bench hit_cost            # N = 20000 calls, 5 runs each
//! cargo bench --bench hit_cost -- 50000 7 # N calls, R runs
//! ```
//!
//! Every figure is the median of R runs of whole processes, divided by N: a
//! fixture (`count N`, built non-PIE with `work()` starting with `push %rbp`)
//! calls the probed `work()` N times. The runs of all configurations are
//! interleaved, so that a machine busy for a while slows them all alike; the
//! ratios, taken in one run, are what the goals are about. No stdout of the
//! traced program is measured (it goes to /dev/null).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One way of running `count N`.
struct Config {
    name: &'static str,
    argv: Vec<String>,
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

fn time(argv: &[String]) -> Duration {
    let start = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {argv:?}: {e}"));
    let elapsed = start.elapsed();
    assert!(status.success(), "{argv:?}: {status}");
    elapsed
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let (count, floor) = build(&out_dir);
    let work = format!("{:#x}", symbol(&count, "work"));
    let rtrace = env!("CARGO_BIN_EXE_rtrace");
    let json_out = out_dir.join("events.jsonl");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let count_s = count.to_str().unwrap();
    let floor_s = floor.to_str().unwrap();
    let n_s = n.to_string();
    let floor_cfg = |mode: &str| s(&[floor_s, mode, &work, count_s, &n_s]);
    let rtrace_cfg = |extra: &[&str]| {
        let mut v = s(&[rtrace, "-o", "/dev/null"]);
        v.extend(s(extra));
        v.extend(s(&["-s", "work", "--", count_s, &n_s]));
        v
    };
    let mut configs = vec![
        Config {
            name: "untraced",
            argv: s(&[count_s, &n_s]),
        },
        Config {
            name: "floor emulate (1 stop)",
            argv: floor_cfg("emulate"),
        },
        Config {
            name: "floor step (2 stops)",
            argv: floor_cfg("step"),
        },
        Config {
            name: "floor emulate+ret (2 stops)",
            argv: floor_cfg("emulate-ret"),
        },
        Config {
            name: "floor step+ret (3 stops)",
            argv: floor_cfg("step-ret"),
        },
        Config {
            name: "rtrace entry, emulated",
            argv: rtrace_cfg(&["--entry-only"]),
        },
        Config {
            name: "rtrace entry, xol",
            argv: rtrace_cfg(&["--entry-only", "--step", "xol"]),
        },
        Config {
            name: "rtrace entry+return",
            argv: rtrace_cfg(&[]),
        },
        Config {
            name: "rtrace entry+return -c",
            argv: rtrace_cfg(&["-c"]),
        },
        Config {
            name: "rtrace entry+return --json -o FILE",
            argv: {
                let mut v = s(&[rtrace, "--json", "-o", json_out.to_str().unwrap()]);
                v.extend(s(&["-s", "work", "--", count_s, &n_s]));
                v
            },
        },
    ];
    if installed("ltrace") {
        configs.push(Config {
            name: "ltrace -x work",
            argv: s(&["ltrace", "-o", "/dev/null", "-x", "work", count_s, &n_s]),
        });
    }
    if installed("gdb") {
        let script = out_dir.join("gdb-commands");
        std::fs::write(
            &script,
            "set pagination off\nbreak work\ncommands\nsilent\ncontinue\nend\nrun\n",
        )
        .unwrap();
        configs.push(Config {
            name: "gdb break + continue",
            argv: s(&[
                "gdb",
                "-batch",
                "-nx",
                "-x",
                script.to_str().unwrap(),
                "--args",
                count_s,
                &n_s,
            ]),
        });
    }

    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); configs.len()];
    for _ in 0..runs {
        for (i, c) in configs.iter().enumerate() {
            samples[i].push(time(&c.argv));
        }
    }
    let per_hit: Vec<f64> = samples
        .iter_mut()
        .map(|v| {
            v.sort();
            v[v.len() / 2].as_secs_f64() * 1e6 / f64::from(n)
        })
        .collect();
    println!("{n} calls, median of {runs} runs, µs per call:");
    for (c, us) in configs.iter().zip(&per_hit) {
        println!("  {:<38} {us:>9.2}", c.name);
    }
    let get = |name: &str| {
        configs
            .iter()
            .position(|c| c.name == name)
            .map(|i| per_hit[i])
    };
    let ratio = |what: &str, a: &str, b: &str, goal: f64| {
        if let (Some(x), Some(y)) = (get(a), get(b)) {
            let r = x / y;
            let verdict = if r <= goal { "met" } else { "MISSED" };
            println!("  {what:<52} {r:>6.2}  (goal <= {goal}: {verdict})");
        }
    };
    println!("ratios:");
    ratio(
        "entry emulated / floor emulate",
        "rtrace entry, emulated",
        "floor emulate (1 stop)",
        1.2,
    );
    ratio(
        "entry+return / floor emulate+ret",
        "rtrace entry+return",
        "floor emulate+ret (2 stops)",
        1.2,
    );
    ratio(
        "entry xol / floor step",
        "rtrace entry, xol",
        "floor step (2 stops)",
        1.2,
    );
    ratio(
        "entry+return / ltrace",
        "rtrace entry+return",
        "ltrace -x work",
        0.45,
    );
    ratio(
        "entry+return / gdb",
        "rtrace entry+return",
        "gdb break + continue",
        0.15,
    );
    ratio(
        "--json -o FILE / -c",
        "rtrace entry+return --json -o FILE",
        "rtrace entry+return -c",
        1.10,
    );
}
