//! The oracle suite: real programs that nobody here wrote, traced on libc's
//! `malloc`, `free`, `strlen` and `open*`, each run checked against the same
//! program untraced and against the kernel's own count of the same calls on
//! the same run.
//!
//! Programs: python3 (Debian's `/usr/bin/python3`), perl, gzip, sqlite3,
//! git (init, add, commit: three runs), `sort --parallel=2` and `xz -T2`
//! (both really start a second thread), each under
//! `rtrace -c -s libc:malloc -s libc:free -s libc:strlen -s 'libc:open*'`,
//! once with fast probes (the default) and once with `--int3`. For each run:
//! 1. the program's stdout and exit status equal an untraced run's (its
//!    stdout is its output file: gzip's and xz's compressed bytes);
//! 2. the calls of each function in rtrace's `-c` table equal the kernel's
//!    uprobe count of its entries in the same process on the same run, for
//!    every function the specs match (one rtrace did not list counts 0);
//! 3. python3 and sqlite3 also run long, attached to (`-p`), detached
//!    (SIGINT to rtrace): the code they map then equals their files' bytes,
//!    libc's included, and they go on answering correctly.
//!
//! Then `-s 'libc:*'` (every function of libc, fast probes) under ls,
//! python3 and sqlite3: no crash, stdout and exit status as untraced; the
//! coverage rtrace reports (`rtrace: probe libc:*: fast at N sites, int3 at
//! M …`) is printed, not asserted.
//!
//! **The kernel's count.** A uprobe and an rtrace probe cannot share an
//! address: both write the function's first byte (a uprobe's int3 over
//! rtrace's jump, or rtrace's over the uprobe's), and one of them misses
//! every call. So each function is counted past the bytes rtrace replaces:
//! its entry block is decoded (iced-x86, from libc's file) up to the first
//! instruction boundary k at or after byte 5 (rtrace displaces whole
//! instructions until it has 5 bytes for its jump), and every call leaves
//! those bytes either at k or through a conditional branch among them
//! (`free` starts `test %rdi,%rdi; je …`: `free(NULL)` leaves at the
//! branch's target, a `ret`). A uprobe goes on each such exit, and the
//! function's entries are the sum of their hits. That holds only where no
//! other direct branch or call in libc (a linear sweep of its code) lands on
//! an exit or on a boundary inside those bytes, where a branch target is not
//! also reached by falling through from the code before it, and where no
//! call, return or indirect branch is among the bytes; a function that
//! fails this fails the test, naming why.
//!
//! The uprobes are counted by the kernel: `upcount` (a fixture) makes each
//! as bpftrace makes a `uprobe:` probe, a perf_event_open(2) event of the
//! uprobe PMU with a BPF program attached that counts into a map, but opened
//! on the traced process only: the kernel writes its breakpoints into that
//! address space alone and counts every thread of it. bpftrace itself cannot
//! be the counter here. Debian 12's bpftrace 0.17 refuses any uprobe inside
//! a function ("Can't check if uprobe is in proper place (compiled without
//! (k|u)probe offset support)", `--unsafe` or not); and it attaches uprobes
//! to every process that maps the file (`-p` narrows only USDT probes; `pid
//! == N` filters in the BPF program, after the breakpoint), so its probes on
//! the system's libc would stop every program on the machine, and every
//! rtrace run meanwhile would find another tracer's int3 where it probes.
//! What bpftrace does check, on a private copy of libc
//! (`oracle_counting_matches_bpftrace`): on the same untraced runs of
//! python3 and xz, its entry counts (uprobes at the functions' first byte,
//! where nothing else is) equal the sums of the exits' hits.
//!
//! **Synchronisation.** rtrace launches `gate` (a fixture, static: it has no
//! libc.so.6, so nothing of it is counted by either side), which prints its
//! pid and waits for a line on its stdin (rtrace's). The test starts
//! upcount on that pid, waits for its `attached` line, then sends the line:
//! gate takes its stdin and stdout from files and execs the program, same
//! pid, with every uprobe already in force. When rtrace has exited, so has
//! the program: upcount is told to read its counters. The untraced run goes
//! through gate too (its stdin at end of file), so both runs exec the
//! program the same way.
//!
//! **Which strlen.** `strlen` is an IFUNC: rtrace probes the implementation
//! the program runs, and `rtrace -l libc:strlen -- PROGRAM` (files only,
//! nothing run) can only name the resolver. `rtrace -l libc:strlen -p PID`
//! names the implementation a live process's GOT holds; the suite asks it
//! of a waiting upcount (libc loaded and relocated), then lists that name
//! with the other functions for their link-time addresses.
//!
//! **Skips** (a line on stderr, the test passes): a program that is not
//! installed; for the counts, no uprobe PMU
//! (`/sys/bus/event_source/devices/uprobe/type`) or a counting uprobe that
//! cannot be made on this kernel (upcount's error is printed); for the
//! check of the method, no bpftrace or a bpftrace that does not attach.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic, OpKind};
use nix::sys::signal::Signal;

use crate::fixtures::{
    code_matches_files, fixture, maps, rounds, rtrace_bin, run_command, NoLine, Spawned, Variant,
    TIMEOUT,
};

/// The probes of every counted run.
const PROBES: [&str; 4] = ["libc:malloc", "libc:free", "libc:strlen", "libc:open*"];

/// How rtrace places its probes in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The default: fast probes where the handlers allow it.
    Default,
    /// `--int3`: every probe an int3 breakpoint.
    Int3,
}

impl Mode {
    const BOTH: [Mode; 2] = [Mode::Default, Mode::Int3];

    fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Default => &[],
            Mode::Int3 => &["--int3"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::Int3 => "--int3",
        }
    }
}

// ---------------------------------------------------------------------------
// Where each function is counted
// ---------------------------------------------------------------------------

/// One instruction of libc's linear sweep.
#[derive(Clone, Copy)]
struct Insn {
    ip: u64,
    len: u8,
    flow: FlowControl,
    mnemonic: Mnemonic,
    /// A direct branch's or call's target.
    target: Option<u64>,
}

impl Insn {
    /// Whether the next instruction can be reached by falling through this
    /// one. Conservative: a `syscall` (an interrupt to iced) falls through.
    fn falls_through(&self) -> bool {
        !matches!(
            self.flow,
            FlowControl::UnconditionalBranch | FlowControl::IndirectBranch | FlowControl::Return
        ) && !matches!(
            self.mnemonic,
            Mnemonic::Int3 | Mnemonic::Ud2 | Mnemonic::Hlt
        )
    }
}

/// libc's executable sections decoded in one linear sweep (glibc keeps no
/// data among its code), with every direct branch's and call's target.
struct Sweep {
    /// Sorted by address.
    insns: Vec<Insn>,
    /// Target → the addresses of the branches and calls that land there.
    targets: HashMap<u64, Vec<u64>>,
}

impl Sweep {
    fn of(elf: &goblin::elf::Elf, bytes: &[u8]) -> Sweep {
        let mut insns = Vec::new();
        let mut targets: HashMap<u64, Vec<u64>> = HashMap::new();
        for sh in &elf.section_headers {
            let exec = sh.sh_flags & u64::from(goblin::elf::section_header::SHF_EXECINSTR) != 0;
            if !exec || sh.sh_type != goblin::elf::section_header::SHT_PROGBITS {
                continue;
            }
            let start = sh.sh_offset as usize;
            let code = &bytes[start..start + sh.sh_size as usize];
            let mut decoder = Decoder::with_ip(64, code, sh.sh_addr, DecoderOptions::NONE);
            for insn in &mut decoder {
                let target = matches!(
                    insn.op0_kind(),
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                )
                .then(|| insn.near_branch_target());
                if let Some(target) = target {
                    targets.entry(target).or_default().push(insn.ip());
                }
                insns.push(Insn {
                    ip: insn.ip(),
                    len: insn.len() as u8,
                    flow: insn.flow_control(),
                    mnemonic: insn.mnemonic(),
                    target,
                });
            }
        }
        insns.sort_by_key(|i| i.ip);
        Sweep { insns, targets }
    }

    fn index_of(&self, ip: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&ip, |i| i.ip).ok()
    }

    /// The branches and calls landing at `ip` from outside `region`.
    fn landings_from_outside(&self, ip: u64, region: &[u64]) -> Vec<u64> {
        self.targets
            .get(&ip)
            .map(|sites| {
                sites
                    .iter()
                    .copied()
                    .filter(|s| !region.contains(s))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the instruction at index `at` can be reached by falling
    /// through the code before it: the last instruction before it that is
    /// not a `nop` (padding after a `ret` is never run) falls through.
    fn fallen_into(&self, at: usize) -> bool {
        self.insns[..at]
            .iter()
            .rev()
            .find(|i| i.mnemonic != Mnemonic::Nop)
            .is_some_and(|i| i.ip + u64::from(i.len) == self.insns[at].ip && i.falls_through())
    }

    /// The link addresses where each call of the function at `entry` is
    /// counted once: where it leaves the bytes rtrace replaces (whole
    /// instructions up to the first boundary at or after byte 5). Err says
    /// why the function cannot be counted so.
    fn exits(&self, entry: u64) -> Result<Vec<u64>, String> {
        let mut at = self
            .index_of(entry)
            .ok_or("its entry is not an instruction boundary of the sweep")?;
        let mut end = entry;
        let mut region = Vec::new();
        let mut exits = Vec::new();
        let mut falls = true;
        while end - entry < 5 {
            let insn = self.insns.get(at).filter(|i| i.ip == end).ok_or_else(|| {
                format!("no instruction decoded at +{} of its entry", end - entry)
            })?;
            region.push(insn.ip);
            end += u64::from(insn.len);
            let off = insn.ip - entry;
            match (insn.flow, insn.target) {
                (FlowControl::Next, _) => {}
                (FlowControl::ConditionalBranch, Some(t)) => exits.push(t),
                (FlowControl::UnconditionalBranch, Some(t)) if end - entry >= 5 => {
                    exits.push(t);
                    falls = false;
                }
                _ => {
                    return Err(format!(
                        "{:?} at +{off}, among the bytes rtrace replaces",
                        insn.mnemonic
                    ))
                }
            }
            at += 1;
        }
        for &boundary in region[1..].iter().chain([&end]) {
            if let Some(site) = self.landings_from_outside(boundary, &region).first() {
                return Err(format!(
                    "the branch at {site:#x} lands at +{}, inside or just past the bytes rtrace replaces",
                    boundary - entry
                ));
            }
        }
        for &exit in &exits {
            if exit > entry && exit <= end {
                return Err(format!(
                    "a branch among its first bytes lands at +{}",
                    exit - entry
                ));
            }
            let index = self
                .index_of(exit)
                .ok_or_else(|| format!("the branch target {exit:#x} is no instruction boundary"))?;
            if let Some(site) = self.landings_from_outside(exit, &region).first() {
                return Err(format!(
                    "the branch target {exit:#x} is also reached from {site:#x}"
                ));
            }
            if self.fallen_into(index) {
                return Err(format!(
                    "the branch target {exit:#x} is also reached by falling through"
                ));
            }
        }
        if falls {
            exits.push(end);
        }
        Ok(exits)
    }
}

/// A function of the counted runs.
#[derive(Clone)]
struct Counted {
    /// Its name as rtrace lists and counts it.
    name: String,
    /// Its link address (in libc's code, also its file offset).
    entry: u64,
    /// The file offsets in libc of the uprobes whose hits add up to its
    /// entries.
    points: Vec<u64>,
}

/// What every counted run needs to know of libc.
struct Oracle {
    /// The libc every program here maps (one file on a Debian system).
    libc: PathBuf,
    /// The functions rtrace probes.
    functions: Vec<Counted>,
    /// `pthread_create`, counted by the kernel alone: that the programs
    /// meant to run threads did.
    threads: Counted,
}

impl Oracle {
    /// upcount's OFFSET arguments: every function's points, then
    /// `pthread_create`'s.
    fn points(&self) -> impl Iterator<Item = String> + '_ {
        self.functions
            .iter()
            .chain([&self.threads])
            .flat_map(|f| &f.points)
            .map(|p| format!("{p:#x}"))
    }
}

/// The oracle, worked out once per test process; Err is why the counts
/// cannot be taken here (the tests that need them skip).
fn oracle() -> &'static Result<Oracle, String> {
    static ORACLE: OnceLock<Result<Oracle, String>> = OnceLock::new();
    ORACLE.get_or_init(make_oracle)
}

fn make_oracle() -> Result<Oracle, String> {
    let pmu = Path::new("/sys/bus/event_source/devices/uprobe/type");
    if !pmu.exists() {
        return Err(format!("no uprobe PMU ({} is absent)", pmu.display()));
    }
    let upcount = fixture("upcount", Variant::Pie);
    // A live process with libc loaded and relocated: upcount counting
    // nothing waits on its stdin.
    let mut helper = Spawned::with_stdin(command(&upcount, &["0", "-"]));
    helper.wait_stdout_line(|l| l == "attached 0");
    let libc = maps(helper.pid())
        .unwrap_or_else(|e| panic!("maps of upcount: {e}"))
        .into_iter()
        .find(|m| {
            m.perms.contains('x')
                && Path::new(&m.path)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libc.so"))
        })
        .map(|m| PathBuf::from(m.path))
        .expect("upcount maps libc");
    let strlen = list(&["-l", "libc:strlen", "-p", &helper.pid().to_string()]);
    helper.close_stdin();
    let helper_run = helper.wait();
    assert_eq!(helper_run.code(), 0, "upcount: {helper_run:?}");
    let [(_, strlen)] = &strlen[..] else {
        panic!("rtrace -l libc:strlen -p: {strlen:?}");
    };
    // Link-time addresses: the program's libraries read from disk.
    let listing = list(&[
        "-l",
        "libc:malloc",
        "libc:free",
        &format!("libc:{strlen}"),
        "libc:open*",
        "libc:pthread_create",
        "--",
        upcount.to_str().unwrap(),
    ]);
    let bytes = fs::read(&libc).unwrap_or_else(|e| panic!("read {}: {e}", libc.display()));
    let elf =
        goblin::elf::Elf::parse(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", libc.display()));
    let sweep = Sweep::of(&elf, &bytes);
    let file_offset = |vaddr: u64| -> u64 {
        elf.program_headers
            .iter()
            .find(|ph| {
                ph.p_type == goblin::elf::program_header::PT_LOAD
                    && (ph.p_vaddr..ph.p_vaddr + ph.p_filesz).contains(&vaddr)
            })
            .map(|ph| vaddr - ph.p_vaddr + ph.p_offset)
            .unwrap_or_else(|| panic!("{vaddr:#x} is in no segment of {}", libc.display()))
    };
    let mut functions = Vec::new();
    let mut refused = Vec::new();
    for (entry, name) in listing {
        match sweep.exits(entry) {
            Ok(exits) => functions.push(Counted {
                name,
                entry,
                points: exits.into_iter().map(file_offset).collect(),
            }),
            Err(why) => refused.push(format!("{name} at {entry:#x}: {why}")),
        }
    }
    assert!(
        refused.is_empty(),
        "functions whose entries cannot be counted past rtrace's bytes:\n{}",
        refused.join("\n")
    );
    let threads = functions.pop().expect("pthread_create, listed last");
    assert_eq!(threads.name, "pthread_create");
    let oracle = Oracle {
        libc,
        functions,
        threads,
    };
    // Can this kernel open them? upcount counts its own hits (pid 0).
    let mut probe = command(&upcount, &["0", oracle.libc.to_str().unwrap()]);
    probe.args(oracle.points());
    let run = run_command(probe, TIMEOUT);
    if run.code() != 0 {
        return Err(format!(
            "uprobes cannot be opened here: {}",
            run.stderr.trim()
        ));
    }
    Ok(oracle)
}

/// `rtrace ARGS` (a listing): (link or runtime address, function) per line.
fn list(args: &[&str]) -> Vec<(u64, String)> {
    let run = run_command(command(&rtrace_bin(), args), TIMEOUT);
    assert_eq!(run.code(), 0, "rtrace {args:?}: {run:?}");
    run.stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let addr = fields[0]
                .strip_prefix("0x")
                .and_then(|a| u64::from_str_radix(a, 16).ok())
                .unwrap_or_else(|| panic!("rtrace {args:?}: {line:?}"));
            (addr, fields[2].to_owned())
        })
        .collect()
}

fn command(program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

/// Whether this rtrace makes every probe an int3 (`RTRACE_INT3=1`, the third
/// pass of the suite): the default mode is then `--int3` too.
fn int3_forced() -> bool {
    std::env::var("RTRACE_INT3").is_ok_and(|v| v == "1")
}

/// One invocation of a real program.
struct Step {
    /// What the messages call it (`git add`).
    what: String,
    program: PathBuf,
    args: Vec<String>,
    /// Its stdin (`/dev/null` when it reads none).
    stdin: PathBuf,
    /// Where its stdout goes.
    stdout: PathBuf,
    /// Files it writes, compared after each run too.
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

/// What a run of a step left.
#[derive(PartialEq, Eq)]
struct Outcome {
    code: i32,
    stdout: Vec<u8>,
    files: Vec<Vec<u8>>,
}

impl Step {
    fn new(what: &str, program: &Path, args: &[&str], dir: &Path) -> Step {
        Step {
            what: what.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: PathBuf::from("/dev/null"),
            stdout: dir.join(format!("{}.out", what.replace(' ', "-"))),
            files: Vec::new(),
            env: vec![("LC_ALL".into(), "C".into()), ("TZ".into(), "UTC".into())],
            cwd: dir.to_owned(),
        }
    }

    fn stdin(mut self, path: &Path) -> Step {
        self.stdin = path.to_owned();
        self
    }

    fn file(mut self, path: &Path) -> Step {
        self.files.push(path.to_owned());
        self
    }

    fn env(mut self, key: &str, value: &str) -> Step {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `cmd` with gate's arguments `IN OUT PROGRAM ARGS` added, in the
    /// step's directory and environment.
    fn gated(&self, mut cmd: Command) -> Command {
        cmd.arg(&self.stdin)
            .arg(&self.stdout)
            .arg(&self.program)
            .args(&self.args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// gate itself (no tracer), its stdin a pipe: it waits for the line.
    fn gate(&self) -> (Spawned, i32) {
        let mut gate =
            Spawned::with_stdin(self.gated(Command::new(fixture("gate", Variant::Static))));
        let pid = gate_pid(&mut gate);
        (gate, pid)
    }

    fn outcome(&self, code: i32) -> Outcome {
        let read = |path: &Path| {
            fs::read(path).unwrap_or_else(|e| panic!("{}: read {}: {e}", self.what, path.display()))
        };
        Outcome {
            code,
            stdout: read(&self.stdout),
            files: self.files.iter().map(|f| read(f)).collect(),
        }
    }

    /// Runs the program untraced (gate's stdin at end of file: it goes on
    /// at once).
    fn untraced(&self) -> Outcome {
        let cmd = self.gated(Command::new(fixture("gate", Variant::Static)));
        let run = run_command(cmd, TIMEOUT);
        self.outcome(run.code())
    }

    /// Runs the program under `rtrace MODE -c -s SPEC… -- gate …`; with an
    /// oracle, the kernel counts the functions' entries in the same process
    /// meanwhile.
    fn traced(&self, mode: Mode, specs: &[&str], oracle: Option<&Oracle>) -> Traced {
        let mut cmd = Command::new(rtrace_bin());
        cmd.args(mode.args()).arg("-c");
        for spec in specs {
            cmd.arg("-s").arg(spec);
        }
        cmd.arg("--").arg(fixture("gate", Variant::Static));
        let mut rtrace = Spawned::with_stdin(self.gated(cmd));
        let pid = gate_pid(&mut rtrace);
        let counter = oracle.map(|o| Counter::attach(o, pid));
        rtrace.send("go\n");
        let run = rtrace.wait();
        let kernel = counter.map(Counter::counts);
        Traced {
            outcome: self.outcome(run.code()),
            rtrace: summary(&run.stderr),
            kernel,
            stderr: run.stderr,
        }
    }
}

/// Waits for gate's line and returns its pid.
fn gate_pid(process: &mut Spawned) -> i32 {
    let line = process.wait_stderr_line(|l| l.starts_with("gate: pid "));
    line["gate: pid ".len()..].parse().expect("gate's pid")
}

/// The kernel counting the oracle's uprobes in one process (upcount).
struct Counter<'a> {
    oracle: &'a Oracle,
    upcount: Spawned,
}

impl<'a> Counter<'a> {
    /// Starts upcount on `pid` and waits until its uprobes are in force.
    fn attach(oracle: &'a Oracle, pid: i32) -> Counter<'a> {
        let mut cmd = command(
            &fixture("upcount", Variant::Pie),
            &[&pid.to_string(), oracle.libc.to_str().unwrap()],
        );
        cmd.args(oracle.points());
        let mut upcount = Spawned::with_stdin(cmd);
        upcount.wait_stdout_line(|l| l.starts_with("attached "));
        Counter { oracle, upcount }
    }

    /// Once the process has ended: the entries of each function, and of
    /// `pthread_create` apart.
    fn counts(mut self) -> Counts {
        self.upcount.close_stdin();
        let lines: Vec<String> = (0..self.oracle.points().count())
            .map(|_| self.upcount.wait_stdout_line(|_| true))
            .collect();
        // Its exit unregisters the uprobes, some 100 ms each (the kernel
        // waits for an RCU grace period): reaped meanwhile.
        let upcount = self.upcount;
        std::thread::spawn(move || upcount.wait());
        let hits: HashMap<u64, u64> = lines
            .iter()
            .map(|l| {
                let (offset, count) = l.split_once(' ').expect("offset count");
                let offset = u64::from_str_radix(offset.trim_start_matches("0x"), 16);
                (offset.unwrap(), count.parse().unwrap())
            })
            .collect();
        let entries = |f: &Counted| f.points.iter().map(|p| hits[p]).sum::<u64>();
        Counts {
            functions: self
                .oracle
                .functions
                .iter()
                .map(|f| (f.name.clone(), entries(f)))
                .collect(),
            threads: entries(&self.oracle.threads),
        }
    }
}

/// The kernel's counts of one run.
struct Counts {
    /// Entries per function.
    functions: BTreeMap<String, u64>,
    /// Calls of `pthread_create`.
    threads: u64,
}

/// What a traced run gave.
struct Traced {
    outcome: Outcome,
    /// Calls per function, from rtrace's `-c` table.
    rtrace: BTreeMap<String, u64>,
    kernel: Option<Counts>,
    stderr: String,
}

/// The calls column of rtrace's `-c` table, per function: the rows that end
/// `FUNCTION [PROBE]`.
fn summary(stderr: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in stderr.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [first, .., name, probe] = words[..] else {
            continue;
        };
        if !(probe.starts_with('[') && probe.ends_with(']')) {
            continue;
        }
        if let Ok(n) = first.parse::<u64>() {
            *calls.entry(name.to_owned()).or_insert(0) += n;
        }
    }
    calls
}

/// The rows of a `-c` table with calls missed.
fn missed_rows(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.len() >= 9
                && words[0].parse::<u64>().is_ok()
                && words[5].parse::<u64>().is_ok_and(|m| m > 0)
                && words.last().is_some_and(|p| p.starts_with('['))
        })
        .collect()
}

/// Checks one traced run against the untraced one and, with the kernel's
/// counts, every function's calls against them. Returns the counts for the
/// log, a line per function: `what: name rtrace N kernel M`.
fn check(step: &Step, mode: Mode, reference: &Outcome, traced: &Traced) -> String {
    let what = format!("{} ({})", step.what, mode.name());
    let got = &traced.outcome;
    assert_eq!(
        got.code, reference.code,
        "{what}: exit status traced vs untraced\n{}",
        traced.stderr
    );
    let shown =
        |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
    assert!(
        got.stdout == reference.stdout,
        "{what}: stdout differs from the untraced run's ({} bytes vs {}):\n{}\n--- untraced:\n{}\n--- rtrace's stderr:\n{}",
        got.stdout.len(),
        reference.stdout.len(),
        shown(&got.stdout),
        shown(&reference.stdout),
        traced.stderr
    );
    for (i, path) in step.files.iter().enumerate() {
        assert!(
            got.files[i] == reference.files[i],
            "{what}: {} differs from the untraced run's",
            path.display()
        );
    }
    // Nothing lost: no call missed (a return not watched, a record
    // dropped).
    let missed = missed_rows(&traced.stderr);
    assert!(
        missed.is_empty(),
        "{what}: calls missed: {missed:?}\n{}",
        traced.stderr
    );
    let Some(kernel) = &traced.kernel else {
        return String::new();
    };
    let mut rtrace = traced.rtrace.clone();
    for name in kernel.functions.keys() {
        rtrace.entry(name.clone()).or_insert(0);
    }
    assert_eq!(
        &rtrace, &kernel.functions,
        "{what}: rtrace's calls (left) vs the kernel's uprobe counts (right)\n{}",
        traced.stderr
    );
    kernel
        .functions
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(name, n)| format!("  {what}: {name} rtrace {} kernel {n}\n", rtrace[name]))
        .chain([format!(
            "  {what}: pthread_create (kernel) {}\n",
            kernel.threads
        )])
        .collect()
}

/// Runs `steps` in order untraced, then traced in each mode with the
/// kernel's counts, `reset` before each sequence; checks every step, and
/// that a `threaded` program created threads.
fn oracle_test(name: &str, steps: &[Step], reset: &dyn Fn(), threaded: bool) {
    let oracle = match oracle() {
        Ok(o) => o,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let started = Instant::now();
    reset();
    let references: Vec<Outcome> = steps.iter().map(Step::untraced).collect();
    let mut log = String::new();
    for mode in Mode::BOTH {
        reset();
        for (step, reference) in steps.iter().zip(&references) {
            let traced = step.traced(mode, &PROBES, Some(oracle));
            log += &check(step, mode, reference, &traced);
            let threads = traced.kernel.map_or(0, |k| k.threads);
            assert!(
                !threaded || threads > 0,
                "{} ({}): no thread created, so the run does not test threads",
                step.what,
                mode.name()
            );
        }
    }
    eprint!(
        "{name} ({:.1} s): calls per function that was called, rtrace and the kernel:\n{log}",
        started.elapsed().as_secs_f64()
    );
}

/// A fresh directory for one test's files.
fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("oracle")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// `path` when it is a file, else None (and a line saying the test is
/// skipped).
fn installed(path: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    if path.is_file() {
        return Some(path);
    }
    eprintln!("skipped: {} is not installed", path.display());
    None
}

/// `name` as found on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Deterministic lines of text, `lines` of them: hex from a linear
/// congruential generator, then the line number (about 21 bytes a line).
fn text(lines: usize) -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(lines * 24);
    for i in 0..lines {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(format!("{:08x} line {i}\n", state >> 32).as_bytes());
    }
    out
}

// ---------------------------------------------------------------------------
// The programs
// ---------------------------------------------------------------------------

/// Builds 8,000 dictionaries, each holding a string too big for Python's
/// small-object allocator (512 bytes), so that each is a malloc and a free.
const PYTHON_LOOP: &str = "\
d = {}
for i in range(8000):
    d['k%d' % i] = {'v': str(i) * (200 + i % 50), 'n': i}
print(len(d), sum(len(v['v']) for v in d.values()))
";

fn python3_step(dir: &Path) -> Option<Step> {
    let python = installed("/usr/bin/python3")?;
    fs::write(dir.join("loop.py"), PYTHON_LOOP).unwrap();
    Some(
        Step::new("python3", &python, &["loop.py"], dir)
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    )
}

/// 10,000 rows inserted in one transaction into a fresh database file: 500
/// INSERT statements of one row each (each parsed: some 40 calls of the
/// probed functions), then 9,500 rows from one INSERT over a recursive
/// query (a few calls a row: int3 probes stop at every call). The database
/// file is compared too.
fn sqlite3_step(dir: &Path) -> Option<Step> {
    let sqlite3 = installed("/usr/bin/sqlite3")?;
    let mut sql =
        String::from("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, x INTEGER);\nBEGIN;\n");
    for i in 0..500u64 {
        sql += &format!(
            "INSERT INTO t(name, x) VALUES('row {i}', {});\n",
            i * 7 % 1000
        );
    }
    sql += "INSERT INTO t(name, x) SELECT 'row ' || v, v * 7 % 1000 FROM \
            (WITH RECURSIVE c(v) AS (SELECT 500 UNION ALL SELECT v + 1 FROM c WHERE v < 9999) \
            SELECT v FROM c);\n";
    sql += "COMMIT;\nSELECT count(*), sum(x), sum(length(name)) FROM t;\n";
    let input = dir.join("inserts.sql");
    fs::write(&input, sql).unwrap();
    Some(
        Step::new("sqlite3", &sqlite3, &["-batch", "test.db"], dir)
            .stdin(&input)
            .file(&dir.join("test.db")),
    )
}

fn sqlite3_reset(dir: &Path) -> impl Fn() + '_ {
    move || {
        let _ = fs::remove_file(dir.join("test.db"));
    }
}

/// xz's two threads compress blocks of 1 MiB of about 3 MB.
fn xz_step(dir: &Path) -> Option<Step> {
    let xz = installed("/usr/bin/xz")?;
    let input = dir.join("input.txt");
    fs::write(&input, text(140_000)).unwrap();
    Some(Step::new("xz", &xz, &["-T2", "--block-size=1MiB", "-2"], dir).stdin(&input))
}

#[test]
fn oracle_python3() {
    let dir = workdir("python3");
    let Some(step) = python3_step(&dir) else {
        return;
    };
    oracle_test("python3", &[step], &|| {}, false);
}

#[test]
fn oracle_perl() {
    let dir = workdir("perl");
    let Some(perl) = installed("/usr/bin/perl") else {
        return;
    };
    let script = r#"my %h; for my $i (1..5000) { $h{"k$i"} = "v" x (100 + $i % 300); }
my $s = 0; $s += length($h{$_}) for sort keys %h; print scalar(keys %h), " $s\n";"#;
    let step = Step::new("perl", &perl, &["-e", script], &dir);
    oracle_test("perl", &[step], &|| {}, false);
}

#[test]
fn oracle_gzip() {
    let dir = workdir("gzip");
    let Some(gzip) = installed("/usr/bin/gzip") else {
        return;
    };
    let input = dir.join("input.txt");
    fs::write(&input, text(100_000)).unwrap();
    let step = Step::new("gzip", &gzip, &["-9"], &dir).stdin(&input);
    oracle_test("gzip", &[step], &|| {}, false);
}

#[test]
fn oracle_sqlite3() {
    let dir = workdir("sqlite3");
    let Some(step) = sqlite3_step(&dir) else {
        return;
    };
    oracle_test("sqlite3", &[step], &sqlite3_reset(&dir), false);
}

#[test]
fn oracle_git() {
    let dir = workdir("git");
    let Some(git) = installed("/usr/bin/git").or_else(|| on_path("git")) else {
        return;
    };
    let home = dir.join("home");
    let repo = dir.join("repo");
    let env = |step: Step| {
        [
            ("HOME", home.to_str().unwrap()),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_AUTHOR_NAME", "Oracle Author"),
            ("GIT_AUTHOR_EMAIL", "author@example.org"),
            ("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z"),
            ("GIT_COMMITTER_NAME", "Oracle Committer"),
            ("GIT_COMMITTER_EMAIL", "committer@example.org"),
            ("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z"),
        ]
        .into_iter()
        .fold(step, |step, (k, v)| step.env(k, v))
    };
    // `git commit` prints the commit's hash: the same tree, author, dates
    // and message give the same hash, traced or not.
    let steps = [
        env(Step::new(
            "git init",
            &git,
            &["init", "--initial-branch=main", "repo"],
            &dir,
        )),
        env(Step::new(
            "git add",
            &git,
            &["-C", "repo", "add", "."],
            &dir,
        )),
        // No `git maintenance run --auto` child: rtrace follows no fork here.
        env(Step::new(
            "git commit",
            &git,
            &[
                "-C",
                "repo",
                "-c",
                "maintenance.auto=false",
                "commit",
                "-m",
                "oracle",
            ],
            &dir,
        )),
    ];
    // The files are there before `git init`, which leaves them alone.
    let reset = || {
        let _ = fs::remove_dir_all(&repo);
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(repo.join("src")).unwrap();
        for i in 0..40 {
            fs::write(repo.join("src").join(format!("f{i}.txt")), text(50 + i)).unwrap();
        }
    };
    oracle_test("git", &steps, &reset, false);
}

#[test]
fn oracle_sort() {
    let dir = workdir("sort");
    let Some(sort) = installed("/usr/bin/sort") else {
        return;
    };
    let input = dir.join("input.txt");
    fs::write(&input, text(200_000)).unwrap();
    // sort sorts a buffer on several threads when it holds at least 128Ki
    // lines (coreutils' SUBTHREAD_LINES_HEURISTIC): 200,000 lines of about
    // 21 bytes fit in 32 MiB with their line records (a smaller -S sorts
    // smaller buffers, each on one thread).
    let step = Step::new("sort", &sort, &["--parallel=2", "-S", "32M"], &dir).stdin(&input);
    oracle_test("sort", &[step], &|| {}, true);
}

#[test]
fn oracle_xz() {
    let dir = workdir("xz");
    let Some(step) = xz_step(&dir) else {
        return;
    };
    oracle_test("xz", &[step], &|| {}, true);
}

// ---------------------------------------------------------------------------
// The counting method against bpftrace
// ---------------------------------------------------------------------------

/// Runs `step` untraced with bpftrace's uprobes on the functions' first
/// bytes (where rtrace would be) and upcount's past them, both on the
/// process: each function's entries, as bpftrace counts them, must be the
/// sum of the hits of its exits. Err is why bpftrace could not count here.
fn against_bpftrace(step: &Step, oracle: &Oracle, bpftrace: &Path) -> Result<String, String> {
    let (mut gate, pid) = step.gate();
    let all = oracle.functions.iter().chain([&oracle.threads]);
    // A function's link address as bpftrace's address probe: it finds the
    // symbol there (offset 0, no check of instruction boundaries), or, in a
    // libc without symbols for it (no separate debug file), takes the
    // address as the file offset, which it is in libc's code.
    let program: String = all
        .clone()
        .map(|f| {
            format!(
                "uprobe:{}:{:#x} /pid == {pid}/ {{ @[\"{}\"] = count(); }}\n",
                oracle.libc.display(),
                f.entry,
                f.name
            )
        })
        .collect();
    // Its messages and maps on one stream, whichever each goes to.
    let mut cmd = command(Path::new("/bin/sh"), &["-c", "exec \"$@\" 2>&1", "sh"]);
    cmd.arg(bpftrace)
        .args(["--unsafe", "-p", &pid.to_string(), "-e", &program])
        // bpftrace prints this line once every probe is attached.
        .env("__BPFTRACE_NOTIFY_PROBES_ATTACHED", "1");
    let mut bpf = Spawned::command(cmd);
    loop {
        match bpf.next_stdout_line(TIMEOUT) {
            Ok(line) if line.contains("__BPFTRACE_NOTIFY_PROBES_ATTACHED") => break,
            Ok(_) => {}
            Err(NoLine::Eof) => {
                return Err(format!("bpftrace did not attach:\n{}", bpf.wait().stdout))
            }
            Err(NoLine::Timeout) => panic!("bpftrace: no attach within {TIMEOUT:?}"),
        }
    }
    let counter = Counter::attach(oracle, pid);
    gate.send("go\n");
    let run = gate.wait();
    assert_eq!(run.code(), 0, "{} untraced: {run:?}", step.what);
    let kernel = counter.counts();
    // bpftrace ends when the process it watches has (-p), printing its map.
    let out = bpf.wait().stdout;
    let mut entries: BTreeMap<String, u64> = all.map(|f| (f.name.clone(), 0)).collect();
    for line in out.lines() {
        if let Some((key, n)) = line.strip_prefix("@[").and_then(|l| l.split_once("]: ")) {
            entries.insert(key.to_owned(), n.parse().expect("a count"));
        }
    }
    let mut summed = kernel.functions.clone();
    summed.insert("pthread_create".into(), kernel.threads);
    assert!(
        entries["malloc"] > 0,
        "{}: no malloc counted: the program did not load {}\n{out}",
        step.what,
        oracle.libc.display()
    );
    assert_eq!(
        entries, summed,
        "{}: bpftrace's entries (left) vs the sums of the exits' hits (right)\n{out}",
        step.what
    );
    Ok(entries
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(name, n)| {
            format!(
                "  {}: {name} bpftrace {n} exits {}\n",
                step.what, summed[name]
            )
        })
        .collect())
}

/// The counting method itself, checked on python3 (one thread) and xz
/// (three): bpftrace's uprobes at the functions' entries count what the
/// uprobes at their exits add up to, on the same untraced run.
///
/// On a copy of libc that only these programs load (LD_LIBRARY_PATH): a
/// uprobe is set on a file, and bpftrace 0.17 (Debian 12's) writes its
/// breakpoints into every process that maps the file, filtering by pid only
/// in its BPF program (`-p` attaches only USDT probes to a process). On the
/// system's libc, every program on the machine would run them, and every
/// rtrace run meanwhile would find another tracer's int3 where it probes.
#[test]
fn oracle_counting_matches_bpftrace() {
    let oracle = match oracle() {
        Ok(o) => o,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let Some(bpftrace) = installed("/usr/bin/bpftrace") else {
        return;
    };
    let dir = workdir("bpftrace");
    let lib = dir.join("lib");
    fs::create_dir_all(&lib).unwrap();
    let copy = lib.join(oracle.libc.file_name().unwrap());
    fs::copy(&oracle.libc, &copy).unwrap();
    let private = Oracle {
        libc: copy,
        functions: oracle.functions.clone(),
        threads: oracle.threads.clone(),
    };
    let steps = [python3_step(&dir), xz_step(&dir)];
    let mut log = String::new();
    for step in steps.into_iter().flatten() {
        let step = step.env("LD_LIBRARY_PATH", lib.to_str().unwrap());
        match against_bpftrace(&step, &private, &bpftrace) {
            Ok(counts) => log += &counts,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    }
    eprint!("entries counted by bpftrace and at the exits:\n{log}");
}

// ---------------------------------------------------------------------------
// Attach, detach: the code is the files' again
// ---------------------------------------------------------------------------

/// Attaches `rtrace MODE -c -s PROBES… -p PID` to the running program,
/// sends it `work` (lines) and waits for the line `traced`, detaches with
/// SIGINT; then checks its code against its files, sends `work` again and
/// waits for `after`.
fn attach_round(program: &mut Spawned, mode: Mode, work: &str, traced: &str, after: &str) {
    let pid = program.pid();
    let mut args: Vec<&str> = mode.args().to_vec();
    args.push("-c");
    for probe in PROBES {
        args.extend(["-s", probe]);
    }
    let mut rtrace = Spawned::rtrace_attach(&args, pid);
    // The attach line comes once the breakpoints and the fast probes'
    // jumps are written.
    rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached to pid"));
    program.send(work);
    let got = program.wait_stdout_line(|_| true);
    assert_eq!(got, traced, "{} while traced", mode.name());
    rtrace.signal(Signal::SIGINT);
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "rtrace after SIGINT: {}", run.stderr);
    let calls = summary(&run.stderr);
    assert!(
        calls.get("malloc").is_some_and(|&n| n > 0),
        "{}: no malloc counted while attached:\n{}",
        mode.name(),
        run.stderr
    );
    code_matches_files(pid).unwrap_or_else(|e| panic!("after the detach ({}): {e}", mode.name()));
    program.send(work);
    let got = program.wait_stdout_line(|_| true);
    assert_eq!(got, after, "after the detach ({})", mode.name());
}

#[test]
fn oracle_attach_python3() {
    let Some(python) = installed("/usr/bin/python3") else {
        return;
    };
    let script = "\
import sys
def work(n):
    d = {}
    for i in range(n):
        d['k%d' % i] = {'v': str(i) * (200 + i % 50)}
    return sum(len(v['v']) for v in d.values())
print('ready', flush=True)
for line in sys.stdin:
    print(work(int(line)), flush=True)
";
    let mut cmd = command(&python, &["-c", script]);
    cmd.env("PYTHONHASHSEED", "0");
    let mut program = Spawned::with_stdin(cmd);
    program.wait_stdout_line(|l| l == "ready");
    let answer: usize = (0..3000usize)
        .map(|i| i.to_string().len() * (200 + i % 50))
        .sum();
    let answer = answer.to_string();
    for mode in Mode::BOTH {
        attach_round(&mut program, mode, "3000\n", &answer, &answer);
    }
    program.close_stdin();
    let run = program.wait();
    assert_eq!(run.code(), 0, "python3 after the detaches: {run:?}");
}

#[test]
fn oracle_attach_sqlite3() {
    let dir = workdir("attach-sqlite3");
    let Some(sqlite3) = installed("/usr/bin/sqlite3") else {
        return;
    };
    let mut cmd = command(&sqlite3, &["-batch", "attach.db"]);
    cmd.current_dir(&dir);
    let mut program = Spawned::with_stdin(cmd);
    program.send("CREATE TABLE t(x INTEGER, s TEXT);\nSELECT 'ready';\n");
    program.wait_stdout_line(|l| l == "ready");
    // Each time, 1,000 rows more and the totals so far.
    let mut work = String::from("BEGIN;\n");
    for i in 0..1000 {
        work += &format!("INSERT INTO t VALUES({i}, 'value {i}');\n");
    }
    work += "COMMIT;\nSELECT count(*), sum(x) FROM t;\n";
    let totals = |times: usize| format!("{}|{}", times * 1000, times * 499_500);
    for (round, mode) in Mode::BOTH.into_iter().enumerate() {
        let traced = totals(2 * round + 1);
        let after = totals(2 * round + 2);
        attach_round(&mut program, mode, &work, &traced, &after);
    }
    program.close_stdin();
    let run = program.wait();
    assert_eq!(run.code(), 0, "sqlite3 after the detaches: {run:?}");
}

// ---------------------------------------------------------------------------
// Every function of libc
// ---------------------------------------------------------------------------

/// Runs `step` under `rtrace -c -s 'libc:*'` (the default mode) and
/// untraced: same stdout (and files), same exit status. Prints rtrace's
/// coverage line. Once, or 5 times with `RTRACE_STRESS_ROUNDS` set (a
/// thousand functions probed make for many interleavings of fast and int3
/// sites' calls and returns).
fn all_of_libc(step: &Step, reset: &dyn Fn()) {
    reset();
    let reference = step.untraced();
    let mut coverage = String::new();
    for _ in 0..rounds(5, 1) {
        reset();
        let traced = step.traced(Mode::Default, &["libc:*"], None);
        check(step, Mode::Default, &reference, &traced);
        coverage = match int3_forced() {
            true => "every probe int3 (RTRACE_INT3=1)".into(),
            // (Nothing is said of a probe whose every site is fast.)
            false => traced
                .stderr
                .lines()
                .find(|l| l.starts_with("rtrace: probe libc:*:"))
                .unwrap_or("rtrace: probe libc:*: every site fast")
                .to_owned(),
        };
    }
    eprintln!("{} under -s 'libc:*': {coverage}", step.what);
    // At least 99.5% of libc's sites fast.
    if !int3_forced() {
        let number = |after: &str| -> u64 {
            let at = coverage.find(after).map_or(0, |i| i + after.len());
            coverage[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}: {coverage}", step.what))
        };
        let (fast, int3) = match coverage.contains("int3 at ") {
            true => (number("fast at "), number("int3 at ")),
            false => (1, 0),
        };
        assert!(
            fast * 1000 >= (fast + int3) * 995,
            "{}: {fast} fast, {int3} int3: {coverage}",
            step.what
        );
    }
}

#[test]
fn oracle_all_of_libc_ls() {
    let dir = workdir("all-ls");
    let Some(ls) = installed("/bin/ls") else {
        return;
    };
    let listed = dir.join("listed");
    fs::create_dir_all(listed.join("sub")).unwrap();
    for i in 0..12 {
        fs::write(listed.join(format!("file{i}.txt")), text(i * 10)).unwrap();
    }
    let step = Step::new("ls", &ls, &["-la", "listed"], &dir);
    all_of_libc(&step, &|| {});
}

#[test]
fn oracle_all_of_libc_python3() {
    let dir = workdir("all-python3");
    let Some(step) = python3_step(&dir) else {
        return;
    };
    all_of_libc(&step, &|| {});
}

#[test]
fn oracle_all_of_libc_sqlite3() {
    let dir = workdir("all-sqlite3");
    let Some(step) = sqlite3_step(&dir) else {
        return;
    };
    all_of_libc(&step, &sqlite3_reset(&dir));
}
