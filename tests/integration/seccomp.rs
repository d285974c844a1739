//! Programs under seccomp filters of their own (`target-fixtures/seccomp.c`):
//! one that kills on `memfd_create`, one that refuses executable `mmap`
//! and `mprotect` with EPERM (MemoryDenyWriteExecute style), an allow-list
//! that kills on any call it does not list, and strict mode.
//!
//! rtrace never makes a system call through such a filter. As root it
//! suspends the filter for its own calls (PTRACE_O_SUSPEND_SECCOMP) and
//! traces as usual; without CAP_SYS_ADMIN (dropped with `setpriv`, which
//! keeps CAP_SYS_PTRACE) it maps nothing into the program, steps probed
//! instructions in place, watches returns at their return sites and keeps
//! fast probes int3. Either way the program is never killed and never sees
//! a call of its own fail: its output and status are its untraced ones,
//! including the last thing it does, the call its filter forbids (which
//! proves the filter still in force once rtrace has gone: a suspension left
//! on would let that call through). Entries and returns are counted
//! exactly.
//!
//! Every wait is on a line: the program's `ready` and `sum=`, rtrace's JSON
//! events.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::attach::{tracer_pid, wait_detach, wait_event};
use crate::events::{
    assert_same_as_untraced, of_kind, of_symbol, parse_events, read_events, retvals, show,
    str_field, temp_path,
};
use crate::fast::our_mappings;
use crate::fixtures::{
    code_matches_files, fixture, rtrace_bin, run_command, run_untraced, Spawned, Variant, TIMEOUT,
};

/// Calls of `work` the program makes.
const N: i64 = 200;

/// Every filter the fixture has.
const FILTERS: [&str; 4] = ["memfd", "wx", "allow", "strict"];

/// One way of tracing the program.
#[derive(Clone, Copy, Debug)]
struct Case {
    filter: &'static str,
    /// rtrace runs with CAP_SYS_ADMIN (as root), or without.
    privileged: bool,
    fast: bool,
}

impl Case {
    /// Every combination for `filter`.
    fn all(filter: &'static str) -> Vec<Case> {
        let mut cases = Vec::new();
        for privileged in [true, false] {
            for fast in [false, true] {
                cases.push(Case {
                    filter,
                    privileged,
                    fast,
                });
            }
        }
        cases
    }

    /// True when rtrace may make its system calls in the program once its
    /// filter is in place: it may suspend the filter, and the program is
    /// not in strict mode (never suspended).
    fn suspends(self) -> bool {
        self.privileged && self.filter != "strict"
    }

    fn what(self, how: &str) -> String {
        format!(
            "{} filter, {how}, {}, {}",
            self.filter,
            match self.privileged {
                true => "as root",
                false => "without CAP_SYS_ADMIN",
            },
            match self.fast {
                true => "--fast",
                false => "int3",
            }
        )
    }

    /// rtrace (with `--fast` or `--int3`, as the case has it), as root or without
    /// CAP_SYS_ADMIN: root's capabilities after an exec are its bounding
    /// and inheritable sets, from which `setpriv` drops CAP_SYS_ADMIN alone.
    fn rtrace(self) -> Command {
        let mut cmd = match self.privileged {
            true => Command::new(rtrace_bin()),
            false => {
                let mut cmd = Command::new("setpriv");
                cmd.args(["--inh-caps=-sys_admin", "--bounding-set=-sys_admin"])
                    .arg(rtrace_bin());
                cmd
            }
        };
        cmd.arg(match self.fast {
            true => "--fast",
            false => "--int3",
        });
        cmd
    }

    /// How rtrace says it may make no system call in the program.
    fn refusal(self) -> &'static str {
        match self.filter {
            "strict" => "runs in seccomp strict mode",
            _ => "runs under a seccomp filter that rtrace may not suspend (no CAP_SYS_ADMIN)",
        }
    }
}

/// The untraced run of the program with `filter`, to the end.
fn untraced(filter: &str) -> crate::fixtures::Run {
    let run = run_untraced(&fixture("seccomp", Variant::Pie), &[filter, &N.to_string()]);
    assert!(run.stdout.starts_with("ready\nsum="), "{run:?}");
    run
}

/// The `warning` events.
fn warnings(events: &[Value]) -> Vec<&Value> {
    of_kind(events, "warning")
}

/// Exactly N entries and N returns of `work`, the returns' values adding
/// up to N² (`work(x) = 2x + 1`), none missed.
fn assert_every_call(events: &[Value], what: &str) {
    assert_eq!(
        of_symbol(events, "entry", "work").len() as i64,
        N,
        "{what}: entries\n{}",
        show(events)
    );
    let values = retvals(events, "work");
    assert_eq!(values.len() as i64, N, "{what}: returns\n{}", show(events));
    assert_eq!(values.iter().sum::<i64>(), N * N, "{what}: return values");
    assert!(
        !warnings(events)
            .iter()
            .any(|w| str_field(w, "message").contains("could not be watched")),
        "{what}: a return was missed\n{}",
        show(events)
    );
}

/// The fast probe's mode: fast when rtrace could map its ring, else int3
/// saying why.
fn assert_mode(case: Case, events: &[Value], fast_possible: bool, what: &str) {
    let modes = of_kind(events, "probe");
    if !case.fast {
        assert!(modes.is_empty(), "{what}: {}", show(events));
        return;
    }
    assert_eq!(modes.len(), 1, "{what}: one probe event\n{}", show(events));
    if fast_possible {
        assert_eq!(modes[0]["mode"], "fast", "{what}: {}", modes[0]);
    } else {
        assert_eq!(modes[0]["mode"], "int3", "{what}: {}", modes[0]);
        assert!(
            modes[0].to_string().contains(case.refusal()),
            "{what}: the reason: {}",
            modes[0]
        );
    }
}

/// Attaches to the program once its filter is in place (it waits for a
/// line on stdin before calling `work`), lets it make its N calls, detaches
/// (SIGINT), and lets it finish: every call and return reported, rtrace's
/// one warning when it may not inject, the code its files' and nothing of
/// rtrace's mapped after the detach, and the program's output and status
/// its untraced ones.
fn attached(case: Case) {
    let what = case.what("attached");
    let untraced = untraced(case.filter);
    let mut cmd = Command::new(fixture("seccomp", Variant::Pie));
    cmd.args([case.filter, &N.to_string(), "wait"]);
    let mut program = Spawned::with_stdin(cmd);
    program.wait_stdout_line(|l| l == "ready");
    let pid = program.pid();
    let before = our_mappings(pid);

    let mut cmd = case.rtrace();
    cmd.args(["--json", "-s", "work", "-p", &pid.to_string()]);
    let mut rtrace = Spawned::command(cmd);
    let timeout = Duration::from_secs(30);
    wait_event(&mut rtrace, timeout, |e| str_field(e, "event") == "attach");
    let during = our_mappings(pid);
    match case.suspends() {
        true => assert!(during.0 > before.0, "{what}: the scratch page"),
        false => assert_eq!(during, before, "{what}: nothing mapped"),
    }
    program.send("go\n");
    let sum = program.wait_stdout_line(|l| l.starts_with("sum="));
    assert_eq!(sum, format!("sum={}", N * N), "{what}");
    for _ in 0..N {
        wait_event(&mut rtrace, timeout, |e| str_field(e, "event") == "return");
    }
    rtrace.signal(Signal::SIGINT);
    wait_detach(&mut rtrace, &what);
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{what}: rtrace's status\n{}", run.stderr);
    let events = parse_events(&run.stderr);
    assert_every_call(&events, &what);
    assert_mode(case, &events, case.suspends(), &what);
    let warned = warnings(&events);
    match case.suspends() {
        true => assert!(warned.is_empty(), "{what}: {}", show(&events)),
        false => {
            assert_eq!(warned.len(), 1, "{what}: one warning\n{}", show(&events));
            assert_eq!(warned[0]["pid"], pid, "{what}: {}", warned[0]);
            let message = str_field(warned[0], "message");
            assert!(
                message.contains(case.refusal()) && message.contains("maps nothing into it"),
                "{what}: {message}"
            );
        }
    }
    if let Err(e) = code_matches_files(pid) {
        panic!("{what}: after detach: {e}");
    }
    assert_eq!(our_mappings(pid), before, "{what}: mappings after detach");
    assert_eq!(tracer_pid(pid), 0, "{what}: TracerPid after detach");

    program.send("go\n");
    let run = program.wait();
    assert_eq!(run.stdout, untraced.stdout, "{what}: the program's output");
    assert_eq!(run.code(), untraced.code(), "{what}: the program's status");
}

/// A program that kills itself on `memfd_create` (what fast probes' ring
/// is made with) and the scratch page's `mmap`.
#[test]
fn memfd_create_killer_attached() {
    for case in Case::all("memfd") {
        attached(case);
    }
}

/// MemoryDenyWriteExecute style: an executable `mmap` (the scratch page,
/// the detour areas) fails with EPERM.
#[test]
fn executable_mmap_refuser_attached() {
    for case in Case::all("wx") {
        attached(case);
    }
}

/// An allow-list of read, write, exit and sigreturn: any call of rtrace's
/// would kill the program.
#[test]
fn allow_list_attached() {
    for case in Case::all("allow") {
        attached(case);
    }
}

/// Strict mode: no call of rtrace's is made even as root.
#[test]
fn strict_mode_attached() {
    for case in Case::all("strict") {
        attached(case);
    }
}

/// Launched, the program installs its filter after rtrace has mapped its
/// scratch page (at the exec stop) and fast probes' ring and detours (once
/// the startup libraries are loaded): they keep working under the filter.
/// Strict mode also disables the time stamp counter the detours read:
/// rtrace reads it for them, and says so once.
#[test]
fn filters_installed_after_launch() {
    let prog = fixture("seccomp", Variant::Pie);
    for filter in FILTERS {
        let untraced = untraced(filter);
        for case in Case::all(filter) {
            let what = case.what("launched");
            let out = temp_path(&format!(
                "seccomp_launched_{filter}_{}_{}.jsonl",
                case.privileged, case.fast
            ));
            let mut cmd = case.rtrace();
            cmd.args(["--json", "-o", out.to_str().unwrap(), "-s", "work", "--"])
                .arg(&prog)
                .args([filter, &N.to_string()]);
            let run = run_command(cmd, TIMEOUT);
            assert_same_as_untraced(&run, &untraced, &what);
            let events = read_events(&out);
            assert_every_call(&events, &what);
            assert_mode(case, &events, true, &what);
            let warned = warnings(&events);
            match (filter, case.fast) {
                ("strict", true) => {
                    assert_eq!(warned.len(), 1, "{what}: {}", show(&events));
                    assert!(
                        str_field(warned[0], "message").contains("disabled the time stamp counter"),
                        "{what}: {}",
                        warned[0]
                    );
                }
                _ => assert!(warned.is_empty(), "{what}: {}", show(&events)),
            }
        }
    }
}

/// Launched, then detached once the program has installed its filter (it
/// waits for a line on stdin, rtrace's stdin): the munmaps of the scratch
/// page, the ring and the detour areas go through the suspended filter as
/// root; without CAP_SYS_ADMIN (and in strict mode) they are not made, the
/// pages stay, unused, and one warning says so. The code is its files'
/// either way, and the program runs on to its untraced end.
#[test]
fn detach_after_the_filter_arrived() {
    let prog = fixture("seccomp", Variant::Pie);
    for filter in FILTERS {
        let untraced = untraced(filter);
        for case in Case::all(filter) {
            let what = case.what("launched and detached");
            let mut cmd = case.rtrace();
            cmd.args(["--json", "-s", "work", "--"]).arg(&prog).args([
                filter,
                &N.to_string(),
                "wait",
            ]);
            let mut rtrace = Spawned::with_stdin(cmd);
            let timeout = Duration::from_secs(30);
            let attach = wait_event(&mut rtrace, timeout, |e| str_field(e, "event") == "attach");
            let pid = attach["pid"].as_i64().expect("the attach event's pid") as i32;
            // The filter is in place.
            rtrace.wait_stdout_line(|l| l == "ready");
            rtrace.signal(Signal::SIGINT);
            wait_detach(&mut rtrace, &what);
            if let Err(e) = code_matches_files(pid) {
                panic!("{what}: after detach: {e}");
            }
            assert_eq!(tracer_pid(pid), 0, "{what}: TracerPid after detach");
            let (anon_x, memfd) = our_mappings(pid);
            match case.suspends() {
                true => assert_eq!((anon_x, memfd), (0, 0), "{what}: mappings after detach"),
                // The scratch page, and the ring and the detour areas (one
                // near the program, one near the dynamic linker's hook).
                false => assert!(
                    memfd == usize::from(case.fast)
                        && match case.fast {
                            true => (2..=3).contains(&anon_x),
                            false => anon_x == 1,
                        },
                    "{what}: mappings left: {anon_x} anonymous executable, {memfd} memfd"
                ),
            }
            rtrace.send("go\ngo\n");
            let run = rtrace.wait();
            assert_same_as_untraced(&run, &untraced, &what);
            let events = parse_events(&run.stderr);
            // The calls come after the detach.
            assert!(
                of_kind(&events, "entry").is_empty(),
                "{what}: {}",
                show(&events)
            );
            let warned = warnings(&events);
            match case.suspends() {
                true => assert!(warned.is_empty(), "{what}: {}", show(&events)),
                false => {
                    assert_eq!(warned.len(), 1, "{what}: one warning\n{}", show(&events));
                    let message = str_field(warned[0], "message");
                    let left = match case.fast {
                        true => "scratch page and fast probes' ring and detour areas stay mapped",
                        false => "scratch page stays mapped",
                    };
                    assert!(
                        message.contains(case.refusal()) && message.contains(left),
                        "{what}: {message}"
                    );
                }
            }
        }
    }
}

/// Attach as root with fast probes and detach at once, round after round,
/// while four threads (the main one among them) call work() and, after
/// every 100 calls, make an executable mmap their filter must refuse, and
/// a fifth waits in read(). rtrace's calls (the scratch page, the ring, the
/// detour areas and the table of return addresses, their unmapping) run in
/// whichever thread is at hand, stopped anywhere, each with its filter
/// suspended for the call: a suspension that outlived its call would let
/// that thread's next mmap through while rtrace is attached (a detach
/// clears every ptrace option), and the program would say so and exit 1.
/// Every other round is entry-only. 5 rounds, 300 with
/// `RTRACE_STRESS_ROUNDS`.
#[test]
fn suspensions_end_with_rtrace_s_calls() {
    let rounds = crate::fixtures::rounds(300, 5);
    let mut cmd = Command::new(fixture("seccomp", Variant::Pie));
    cmd.args(["wx", "100", "loop", "4"]);
    let mut program = Spawned::with_stdin(cmd);
    program.wait_stdout_line(|l| l == "ready");
    let pid = program.pid();
    let before = our_mappings(pid);
    for round in 0..rounds {
        let what = format!("round {round}");
        let mut cmd = Command::new(rtrace_bin());
        cmd.args(["--fast", "-c", "-s", "work", "-p", &pid.to_string()]);
        if round % 2 == 1 {
            cmd.arg("--entry-only");
        }
        // The ring, the detour area and the table are made and the jump
        // written before the attach line; the threads run through the
        // detours from then on, and the detach finds them there.
        let mut rtrace = Spawned::command(cmd);
        rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached to pid"));
        rtrace.signal(Signal::SIGINT);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        // work was fast: nothing is said of it.
        assert!(
            !run.stderr.contains("rtrace: probe work:"),
            "{what}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("+++ detached +++"),
            "{what}: {}",
            run.stderr
        );
        // Fast hits lost to a full ring are no concern here.
        let warned: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("rtrace: warning:") && !l.contains(" not recorded: "))
            .collect();
        assert!(warned.is_empty(), "{what}: {warned:?}");
        if let Err(e) = code_matches_files(pid) {
            panic!("{what}: after detach: {e}");
        }
        assert_eq!(our_mappings(pid), before, "{what}: mappings after detach");
        assert_eq!(tracer_pid(pid), 0, "{what}");
        assert!(
            matches!(crate::fixtures::process_state(pid), Some('R' | 'S')),
            "{what}: the program runs on\n{}",
            program.stdout_so_far()
        );
    }
    program.send("go\n");
    let run = program.wait();
    assert_eq!(run.stdout, "ready\nloops=ok\nexec mmap: EPERM\n", "{run:?}");
    assert_eq!(run.code(), 3);
}
