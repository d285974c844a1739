//! Processes made and replaced while traced: fork, vfork, clone without
//! CLONE_THREAD (with and without CLONE_VM), posix_spawn, system() and
//! popen(), with and without `--follow-forks`; exec from a thread that is not
//! the leader; exec into an image that lacks a probed function; probes
//! pending on a library across an exec; attach/detach cycles on a busy
//! multi-threaded process.
//!
//! Every count is exact, and the traced program's stdout and exit status are
//! those of an untraced run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::attach::{tracer_pid, wait_detach, wait_event};
use crate::events::{
    assert_same_as_untraced, of_kind, of_symbol, parse_events, retvals, show, str_field, trace_json,
};
use crate::fixtures::{
    code_matches_files, fixture, library, process_state, run_untraced, supports, threads_of,
    Spawned, Variant,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The canonical form of `path`, as `/proc/PID/exe` (and so the `exec`
/// event) shows it.
fn canonical(path: &Path) -> String {
    fs::canonicalize(path)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", path.display()))
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

fn int(event: &Value, key: &str) -> i64 {
    event[key]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {event}"))
}

/// The pid of the `attach` event (the traced program); exactly one.
fn root_pid(events: &[Value], what: &str) -> i64 {
    let attach = of_kind(events, "attach");
    assert_eq!(
        attach.len(),
        1,
        "{what}: one attach event\n{}",
        show(events)
    );
    int(attach[0], "pid")
}

/// `symbol`'s return values per process, in order. Checks on the way that
/// each process has as many entries as returns.
fn retvals_by_pid(events: &[Value], symbol: &str, what: &str) -> BTreeMap<i64, Vec<i64>> {
    let mut entries: BTreeMap<i64, usize> = BTreeMap::new();
    for e in of_symbol(events, "entry", symbol) {
        *entries.entry(int(e, "pid")).or_default() += 1;
    }
    let mut returns: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for e in of_symbol(events, "return", symbol) {
        returns
            .entry(int(e, "pid"))
            .or_default()
            .push(int(e, "retval"));
    }
    let returned: BTreeMap<i64, usize> = returns.iter().map(|(p, r)| (*p, r.len())).collect();
    assert_eq!(
        entries,
        returned,
        "{what}: entries and returns of {symbol} per pid\n{}",
        show(events)
    );
    returns
}

/// Checks every `symbol` event (entry or return) runs in its process's main
/// thread: `tid == pid`.
fn assert_single_threaded(events: &[Value], symbol: &str, what: &str) {
    for e in events.iter().filter(|e| str_field(e, "symbol") == symbol) {
        assert_eq!(
            int(e, "tid"),
            int(e, "pid"),
            "{what}: tid of {e}\n{}",
            show(events)
        );
    }
}

/// The `exit` events as pid → code.
fn exits(events: &[Value]) -> BTreeMap<i64, i64> {
    of_kind(events, "exit")
        .iter()
        .map(|e| (int(e, "pid"), int(e, "code")))
        .collect()
}

/// The position of the first event satisfying `pred`, if any.
fn position(events: &[Value], pred: impl Fn(&Value) -> bool) -> Option<usize> {
    events.iter().position(pred)
}

// ---------------------------------------------------------------------------
// spawner: fork, vfork, clone, posix_spawn, system, popen
// ---------------------------------------------------------------------------

/// One way spawner makes its child (see `target-fixtures/spawner.c`).
struct Mode {
    /// spawner's MODE argument.
    name: &'static str,
    /// The `kind` of the `fork` event. The kernel reports a clone whose exit
    /// signal is SIGCHLD as a fork (glibc's fork() is such a clone), and
    /// posix_spawn, system and popen use clone(CLONE_VM | CLONE_VFORK).
    kind: &'static str,
    /// The return values of the child's own work() calls, before any exec.
    child_work: &'static [i64],
    /// How the child reaches count: not at all, by exec'ing it, or through
    /// the shell (`sh -c "exec count 3 5"`: two execs).
    exec: Exec,
    /// The child's exit status.
    child_code: i64,
    /// spawner's exact stdout (with PROGRAM = `count 3 5` when it execs).
    stdout: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Exec {
    None,
    Direct,
    Shell,
}

/// spawner's work(x) = 3x+1: the parent calls work(1) and work(2).
const PARENT_WORK: [i64; 2] = [4, 7];
/// count 3: work(0), work(1), work(2) = 2x+1.
const COUNT_WORK: [i64; 3] = [1, 3, 5];

/// Runs spawner in `mode` untraced, traced without -f and traced with -f,
/// in every variant, and checks exact counts, values, pids and events.
fn check_spawner(mode: &Mode) {
    for variant in Variant::ALL {
        if !supports("spawner", variant) {
            continue;
        }
        let prog = fixture("spawner", variant);
        let count = fixture("count", variant);
        let mut args = vec![mode.name];
        if mode.exec != Exec::None {
            args.extend([count.to_str().unwrap(), "3", "5"]);
        }
        let untraced = run_untraced(&prog, &args);
        assert_eq!(
            (untraced.stdout.as_str(), untraced.code()),
            (mode.stdout, 0),
            "spawner {args:?} ({variant}) untraced: {untraced:?}"
        );
        check_spawner_unfollowed(mode, variant, &[], &prog, &args, &untraced);
        check_spawner_followed(mode, variant, &prog, &count, &args, &untraced);
    }
}

/// Without -f (with rtrace's options `opts` besides): only the parent's
/// calls, no fork or exec event, one exit.
fn check_spawner_unfollowed(
    mode: &Mode,
    variant: Variant,
    opts: &[&str],
    prog: &Path,
    args: &[&str],
    untraced: &crate::fixtures::Run,
) {
    let what = format!(
        "rtrace {opts:?} -s work -- spawner {} ({variant})",
        mode.name
    );
    let test = format!("spawner_{}_{variant}", mode.name);
    let mut rtrace_args = opts.to_vec();
    rtrace_args.extend(["-s", "work"]);
    let (run, events) = trace_json(&test, &rtrace_args, prog, args);
    assert_same_as_untraced(&run, untraced, &what);
    assert_eq!(run.stderr, "", "{what}: rtrace's own stderr");
    let root = root_pid(&events, &what);
    let by_pid = retvals_by_pid(&events, "work", &what);
    assert_eq!(
        by_pid,
        BTreeMap::from([(root, PARENT_WORK.to_vec())]),
        "{what}: only the parent's calls\n{}",
        show(&events)
    );
    assert_single_threaded(&events, "work", &what);
    for kind in ["fork", "exec", "killed", "warning"] {
        assert!(
            of_kind(&events, kind).is_empty(),
            "{what}: no {kind} event without -f\n{}",
            show(&events)
        );
    }
    assert_eq!(
        exits(&events),
        BTreeMap::from([(root, 0)]),
        "{what}\n{}",
        show(&events)
    );
}

/// With -f: one fork event, the child's calls under its own pid (its own
/// work, then count's after the exec), its exec and exit events.
fn check_spawner_followed(
    mode: &Mode,
    variant: Variant,
    prog: &Path,
    count: &Path,
    args: &[&str],
    untraced: &crate::fixtures::Run,
) {
    let what = format!("rtrace -f -s work -- spawner {} ({variant})", mode.name);
    let test = format!("spawner_{}_follow_{variant}", mode.name);
    let (run, events) = trace_json(&test, &["-f", "-s", "work"], prog, args);
    assert_same_as_untraced(&run, untraced, &what);
    assert_eq!(run.stderr, "", "{what}: rtrace's own stderr");
    let root = root_pid(&events, &what);

    let forks = of_kind(&events, "fork");
    assert_eq!(forks.len(), 1, "{what}: one fork event\n{}", show(&events));
    let fork = forks[0];
    assert_eq!(int(fork, "pid"), root, "{what}: {fork}");
    assert_eq!(str_field(fork, "kind"), mode.kind, "{what}: {fork}");
    let child = int(fork, "child");
    assert_ne!(child, root, "{what}: {fork}");
    let fork_at = position(&events, |e| str_field(e, "event") == "fork").unwrap();
    let child_first = position(&events, |e| e["pid"].as_i64() == Some(child)).unwrap();
    assert!(
        fork_at < child_first,
        "{what}: the fork event comes before the child's events\n{}",
        show(&events)
    );

    // The child's own work() calls, then count's after the exec.
    let mut child_work = mode.child_work.to_vec();
    if mode.exec != Exec::None {
        child_work.extend(COUNT_WORK);
    }
    let by_pid = retvals_by_pid(&events, "work", &what);
    assert_eq!(
        by_pid,
        BTreeMap::from([(root, PARENT_WORK.to_vec()), (child, child_work)]),
        "{what}: the parent's and the child's calls\n{}",
        show(&events)
    );
    assert_single_threaded(&events, "work", &what);

    let execs = of_kind(&events, "exec");
    let expected_execs = match mode.exec {
        Exec::None => vec![],
        Exec::Direct => vec![canonical(count)],
        Exec::Shell => vec![canonical(Path::new("/bin/sh")), canonical(count)],
    };
    let exec_paths: Vec<&str> = execs.iter().map(|e| str_field(e, "path")).collect();
    assert_eq!(exec_paths, expected_execs, "{what}\n{}", show(&events));
    assert!(
        execs.iter().all(|e| int(e, "pid") == child),
        "{what}: the child execs\n{}",
        show(&events)
    );
    if mode.exec != Exec::None {
        // Every call of count's work comes after the last exec, and is
        // reported in count's module.
        let last_exec = events
            .iter()
            .rposition(|e| str_field(e, "event") == "exec")
            .unwrap();
        let count_module = canonical(count);
        let after: Vec<&Value> = events[last_exec..]
            .iter()
            .filter(|e| str_field(e, "event") == "entry" && int(e, "pid") == child)
            .collect();
        assert_eq!(after.len(), COUNT_WORK.len(), "{what}\n{}", show(&events));
        assert!(
            after.iter().all(|e| str_field(e, "module") == count_module),
            "{what}: count's calls in count's module\n{}",
            show(&events)
        );
    }
    assert_eq!(
        exits(&events),
        BTreeMap::from([(root, 0), (child, mode.child_code)]),
        "{what}: the child's and the parent's exit\n{}",
        show(&events)
    );
    for kind in ["killed", "warning"] {
        assert!(
            of_kind(&events, kind).is_empty(),
            "{what}: no {kind} event\n{}",
            show(&events)
        );
    }
}

#[test]
fn fork_child_calls_reported_only_with_follow_forks() {
    check_spawner(&Mode {
        name: "fork",
        kind: "fork",
        child_work: &[31, 34, 37],
        exec: Exec::None,
        child_code: 7,
        stdout: "child=7\n",
    });
}

/// The vfork child calls work() in its parent's memory, over its parent's
/// breakpoints, while the parent waits for it in the kernel.
#[test]
fn vfork_child_calls_work_in_the_parents_memory() {
    check_spawner(&Mode {
        name: "vfork",
        kind: "vfork",
        child_work: &[61, 64],
        exec: Exec::None,
        child_code: 8,
        stdout: "child=8\n",
    });
}

#[test]
fn vfork_child_calls_work_then_execs() {
    check_spawner(&Mode {
        name: "vforkexec",
        kind: "vfork",
        child_work: &[61],
        exec: Exec::Direct,
        child_code: 5,
        stdout: "sum=9\ntwice=41\nchild=5\n",
    });
}

/// A program that debugs its own child, as gdb starts its program: a
/// vfork child that asks its parent to trace it (PTRACE_TRACEME) and execs.
/// With every probe fast and no -f, rtrace lets the child go at its first
/// stop (its memory, its parent's, has no breakpoint of rtrace's), so the
/// request is granted as it is untraced; the child's call of work() before
/// its exec runs through the detour, unreported. (Traced, as with -f or
/// over breakpoints, the child's request fails, as under `strace -f`.)
#[test]
fn a_vfork_child_traced_by_its_parent_runs_as_untraced() {
    let mode = Mode {
        name: "traceme",
        kind: "vfork",
        child_work: &[61],
        exec: Exec::Direct,
        child_code: 5,
        stdout: "traced child stopped at its exec by signal 5\nsum=9\ntwice=41\nchild=5\n",
    };
    for variant in Variant::ALL {
        if !supports("spawner", variant) {
            continue;
        }
        let prog = fixture("spawner", variant);
        let count = fixture("count", variant);
        let args = [mode.name, count.to_str().unwrap(), "3", "5"];
        let untraced = run_untraced(&prog, &args);
        assert_eq!(
            (untraced.stdout.as_str(), untraced.code()),
            (mode.stdout, 0),
            "spawner {args:?} ({variant}) untraced: {untraced:?}"
        );
        check_spawner_unfollowed(&mode, variant, &["--fast"], &prog, &args, &untraced);
    }
}

#[test]
fn clone_child_with_its_own_memory_and_stack() {
    check_spawner(&Mode {
        name: "clone",
        kind: "fork",
        child_work: &[91, 94, 97],
        exec: Exec::None,
        child_code: 9,
        stdout: "child=9\n",
    });
}

/// clone(CLONE_VM | SIGCHLD): a process that shares its parent's memory,
/// breakpoints included, without being a thread of it nor a vfork child.
/// Removing "its" breakpoints would remove the parent's.
#[test]
fn clone_vm_child_shares_the_parents_memory() {
    check_spawner(&Mode {
        name: "clonevm",
        kind: "fork",
        child_work: &[121, 124],
        exec: Exec::None,
        child_code: 10,
        stdout: "child=10\n",
    });
}

#[test]
fn posix_spawn_child_execs_count() {
    check_spawner(&Mode {
        name: "spawn",
        kind: "vfork",
        child_work: &[],
        exec: Exec::Direct,
        child_code: 5,
        stdout: "sum=9\ntwice=41\nchild=5\n",
    });
}

/// The shell has no `work`: with -f the probe is simply not armed in it, and
/// arms again when the shell execs count.
#[test]
fn system_child_shell_execs_count() {
    check_spawner(&Mode {
        name: "system",
        kind: "vfork",
        child_work: &[],
        exec: Exec::Shell,
        child_code: 5,
        stdout: "sum=9\ntwice=41\nchild=5\n",
    });
}

#[test]
fn popen_child_shell_execs_count() {
    check_spawner(&Mode {
        name: "popen",
        kind: "vfork",
        child_work: &[],
        exec: Exec::Shell,
        child_code: 5,
        stdout: "read: sum=9\nread: twice=41\nchild=5\n",
    });
}

/// Followed children that exec count and end at once, four programs at a
/// time (the machine loaded): a child may have ended, its memory gone,
/// before rtrace's next pass patches its new image's probes. rtrace used to
/// patch it all the same: the code could not be read, which took its hooks
/// off, by a write that failed (ESRCH), and that error ended the trace;
/// then, waiting for the program, rtrace never reaped the exited child,
/// still its tracee, that the program's `pclose` waited for: both hung
/// until the test's timeout. Every run is exact: the program's output and
/// status, nothing said, each process's calls. 4 rounds, 100 with
/// `RTRACE_STRESS_ROUNDS`.
#[test]
fn followed_children_that_end_before_their_probes_are_patched() {
    let variant = Variant::Static;
    let prog = fixture("spawner", variant);
    let count = fixture("count", variant);
    let count = count.to_str().unwrap();
    let modes = [
        ("popen", "read: sum=9\nread: twice=41\nchild=5\n"),
        ("system", "sum=9\ntwice=41\nchild=5\n"),
        ("spawn", "sum=9\ntwice=41\nchild=5\n"),
        ("vforkexec", "sum=9\ntwice=41\nchild=5\n"),
    ];
    for round in 0..crate::fixtures::rounds(100, 4) {
        std::thread::scope(|scope| {
            for (mode, stdout) in modes {
                let prog = &prog;
                scope.spawn(move || {
                    let what = format!("round {round}: rtrace -f -s work -- spawner {mode}");
                    let out = crate::events::temp_path(&format!("ended_early_{mode}.jsonl"));
                    let out_str = out.to_str().unwrap();
                    let run = crate::fixtures::run_rtrace(
                        &["--json", "-o", out_str, "-f", "-s", "work"],
                        prog,
                        &[mode, count, "3", "5"],
                    );
                    assert_eq!(
                        (run.stdout.as_str(), run.code(), run.stderr.as_str()),
                        (stdout, 0, ""),
                        "{what}"
                    );
                    let events = crate::events::read_events(&out);
                    let root = root_pid(&events, &what);
                    let by_pid = retvals_by_pid(&events, "work", &what);
                    let child_work: Vec<i64> = match mode {
                        "vforkexec" => [61].into_iter().chain(COUNT_WORK).collect(),
                        _ => COUNT_WORK.to_vec(),
                    };
                    let child = *by_pid
                        .keys()
                        .find(|&&p| p != root)
                        .unwrap_or_else(|| panic!("{what}: no child\n{}", show(&events)));
                    assert_eq!(
                        by_pid,
                        BTreeMap::from([(root, PARENT_WORK.to_vec()), (child, child_work)]),
                        "{what}\n{}",
                        show(&events)
                    );
                });
            }
        });
    }
}

// ---------------------------------------------------------------------------
// exec
// ---------------------------------------------------------------------------

/// threadexec: a second thread execs count (its tid becomes the pid); with
/// `--leader-exits` the main thread has ended with pthread_exit before.
/// threadexec's work(x) = 5x+2: main's work(1) = 7, the thread's work(2) = 12.
fn check_thread_exec(leader_exits: bool) {
    for variant in [Variant::Pie, Variant::Static, Variant::O2] {
        let prog = fixture("threadexec", variant);
        let count = fixture("count", variant);
        let mut args = vec![];
        if leader_exits {
            args.push("--leader-exits");
        }
        args.extend([count.to_str().unwrap(), "3", "5"]);
        let untraced = run_untraced(&prog, &args);
        assert_eq!(
            (untraced.stdout.as_str(), untraced.code()),
            ("main=7\nthread=12\nsum=9\ntwice=41\n", 5),
            "threadexec {args:?} ({variant}) untraced"
        );
        let what = format!("rtrace -s work -- threadexec {args:?} ({variant})");
        let test = format!("threadexec_{leader_exits}_{variant}");
        let (run, events) = trace_json(&test, &["-s", "work"], &prog, &args);
        assert_same_as_untraced(&run, &untraced, &what);
        assert_eq!(run.stderr, "", "{what}: rtrace's own stderr");
        let root = root_pid(&events, &what);
        assert_eq!(
            retvals(&events, "work"),
            vec![7, 12, 1, 3, 5],
            "{what}\n{}",
            show(&events)
        );
        let entries = of_symbol(&events, "entry", "work");
        assert_eq!(entries.len(), 5, "{what}\n{}", show(&events));
        assert!(
            entries.iter().all(|e| int(e, "pid") == root),
            "{what}: one process\n{}",
            show(&events)
        );
        let tids: Vec<i64> = entries.iter().map(|e| int(e, "tid")).collect();
        assert_eq!(tids[0], root, "{what}: main's call\n{}", show(&events));
        assert_ne!(tids[1], root, "{what}: the second thread's call");
        assert_eq!(
            &tids[2..],
            &[root, root, root],
            "{what}: after the exec the thread has the pid as its tid\n{}",
            show(&events)
        );
        let execs = of_kind(&events, "exec");
        assert_eq!(execs.len(), 1, "{what}\n{}", show(&events));
        assert_eq!(int(execs[0], "pid"), root);
        assert_eq!(str_field(execs[0], "path"), canonical(&count));
        let exec_at = position(&events, |e| str_field(e, "event") == "exec").unwrap();
        let count_first = position(&events, |e| {
            // count's work(0): `x=0`, typed from DWARF.
            str_field(e, "event") == "entry" && e["args"][0] == "0"
        })
        .unwrap();
        assert!(exec_at < count_first, "{what}\n{}", show(&events));
        assert_eq!(
            exits(&events),
            BTreeMap::from([(root, 5)]),
            "{what}\n{}",
            show(&events)
        );
    }
}

#[test]
fn exec_from_a_second_thread_resolves_probes_again() {
    check_thread_exec(false);
}

/// The main thread ended with pthread_exit (a zombie until the process
/// ends: it never stops again, and waitpid does not report it) before
/// another thread hits a probe and execs.
#[test]
fn exec_from_a_second_thread_after_the_leader_exited() {
    check_thread_exec(true);
}

/// The leader ended with pthread_exit, the exec fails, the thread exits the
/// process: every hit of the remaining thread is reported and the exit
/// status passes through.
#[test]
fn leader_exited_then_the_last_thread_exits() {
    let prog = fixture("threadexec", Variant::Pie);
    let args = ["--leader-exits", "/nonexistent/program"];
    let untraced = run_untraced(&prog, &args);
    assert_eq!(
        (untraced.stdout.as_str(), untraced.code()),
        ("main=7\nthread=12\n", 127)
    );
    let (run, events) = trace_json("threadexec_exec_fails", &["-s", "work"], &prog, &args);
    let what = "rtrace -s work -- threadexec --leader-exits /nonexistent/program";
    assert_same_as_untraced(&run, &untraced, what);
    let root = root_pid(&events, what);
    assert_eq!(retvals(&events, "work"), vec![7, 12], "{}", show(&events));
    assert!(of_kind(&events, "exec").is_empty(), "{}", show(&events));
    assert_eq!(exits(&events), BTreeMap::from([(root, 127)]));
}

/// An image reached by exec need not have the probed function: the probe
/// is simply not armed there. The program runs to its end with its own
/// status, and rtrace reports no error.
#[test]
fn exec_into_an_image_without_the_probed_function() {
    let prog = fixture("execer", Variant::Pie);
    let args = ["/bin/true"];
    let untraced = run_untraced(&prog, &args);
    assert_eq!(
        (untraced.stdout.as_str(), untraced.code()),
        ("before=207\n", 0)
    );
    let (run, events) = trace_json("exec_without_work", &["-s", "work"], &prog, &args);
    let what = "rtrace -s work -- execer /bin/true";
    assert_same_as_untraced(&run, &untraced, what);
    assert_eq!(run.stderr, "", "{what}: rtrace's own stderr");
    let root = root_pid(&events, what);
    assert_eq!(retvals(&events, "work"), vec![207], "{}", show(&events));
    let execs = of_kind(&events, "exec");
    assert_eq!(execs.len(), 1, "{}", show(&events));
    assert_eq!(
        str_field(execs[0], "path"),
        canonical(Path::new("/bin/true"))
    );
    assert_eq!(exits(&events), BTreeMap::from([(root, 0)]));
    assert!(of_kind(&events, "warning").is_empty(), "{}", show(&events));
}

/// An unqualified libc function is found again after an exec, once the new
/// image's libraries are loaded (at the exec stop only the executable and
/// the dynamic linker are mapped). printf returns the bytes it wrote:
/// "before=207\n" in execer, "sum=9\n" and "twice=41\n" in count.
#[test]
fn exec_rearms_an_unqualified_library_function() {
    let prog = fixture("execer", Variant::Pie);
    let count = fixture("count", Variant::Pie);
    let args = [count.to_str().unwrap(), "3"];
    let untraced = run_untraced(&prog, &args);
    assert_eq!(untraced.stdout, "before=207\nsum=9\ntwice=41\n");
    let (run, events) = trace_json("exec_printf", &["-s", "printf"], &prog, &args);
    let what = "rtrace -s printf -- execer count 3";
    assert_same_as_untraced(&run, &untraced, what);
    assert_eq!(run.stderr, "", "{what}: rtrace's own stderr");
    assert_eq!(
        retvals(&events, "printf"),
        vec![11, 6, 9],
        "{what}\n{}",
        show(&events)
    );
    assert_eq!(of_symbol(&events, "entry", "printf").len(), 3);
    assert_eq!(of_kind(&events, "exec").len(), 1, "{}", show(&events));
}

/// A probe on a library that is not loaded stays pending across an exec and
/// arms when the new image dlopens the library.
#[test]
fn pending_library_probe_arms_on_dlopen_after_exec() {
    for variant in [Variant::Pie, Variant::O2, Variant::Stripped] {
        let prog = fixture("execer", variant);
        let dlopener = fixture("dlopener", variant);
        let lib = library("libplug", variant);
        let args = [dlopener.to_str().unwrap(), lib.to_str().unwrap()];
        let untraced = run_untraced(&prog, &args);
        assert_eq!(
            (untraced.stdout.as_str(), untraced.code()),
            ("before=207\nplug=306\n", 0)
        );
        let what = format!("rtrace -s libplug:plugin_fn -s work -- execer dlopener ({variant})");
        let test = format!("exec_dlopen_{variant}");
        let (run, events) = trace_json(
            &test,
            &[
                "-s",
                &crate::fixtures::in_library("libplug", variant, "plugin_fn"),
                "-s",
                "work",
            ],
            &prog,
            &args,
        );
        assert_same_as_untraced(&run, &untraced, &what);
        assert_eq!(run.stderr, "", "{what}: rtrace's own stderr");
        let attach = of_kind(&events, "attach");
        assert_eq!(attach.len(), 1, "{what}\n{}", show(&events));
        assert_eq!(attach[0]["pending"], 1, "{what}: {}", attach[0]);
        assert_eq!(attach[0]["probes"], 1, "{what}: {}", attach[0]);
        assert_eq!(
            retvals(&events, "work"),
            vec![207],
            "{what}\n{}",
            show(&events)
        );
        assert_eq!(
            of_symbol(&events, "entry", "plugin_fn").len(),
            3,
            "{what}\n{}",
            show(&events)
        );
        assert_eq!(
            retvals(&events, "plugin_fn"),
            vec![101, 102, 103],
            "{what}\n{}",
            show(&events)
        );
        let execs = of_kind(&events, "exec");
        assert_eq!(execs.len(), 1, "{what}\n{}", show(&events));
        assert_eq!(str_field(execs[0], "path"), canonical(&dlopener));
        assert!(
            of_kind(&events, "warning").is_empty(),
            "{what}: the pending probe armed\n{}",
            show(&events)
        );
    }
}

/// The same in a followed child made by posix_spawn: the pending probe arms
/// in the child's new image, its calls carry the child's pid.
#[test]
fn pending_library_probe_arms_in_a_spawned_child() {
    let prog = fixture("spawner", Variant::Pie);
    let dlopener = fixture("dlopener", Variant::Pie);
    let lib = library("libplug", Variant::Pie);
    let args = ["spawn", dlopener.to_str().unwrap(), lib.to_str().unwrap()];
    let untraced = run_untraced(&prog, &args);
    assert_eq!(
        (untraced.stdout.as_str(), untraced.code()),
        ("plug=306\nchild=0\n", 0)
    );
    let what = "rtrace -f -s libplug:plugin_fn -s work -- spawner spawn dlopener";
    let (run, events) = trace_json(
        "spawn_dlopen_follow",
        &[
            "-f",
            "-s",
            &crate::fixtures::in_library("libplug", Variant::Pie, "plugin_fn"),
            "-s",
            "work",
        ],
        &prog,
        &args,
    );
    assert_same_as_untraced(&run, &untraced, what);
    assert_eq!(run.stderr, "", "{what}: rtrace's own stderr");
    let root = root_pid(&events, what);
    let forks = of_kind(&events, "fork");
    assert_eq!(forks.len(), 1, "{}", show(&events));
    let child = int(forks[0], "child");
    assert_eq!(
        retvals_by_pid(&events, "work", what),
        BTreeMap::from([(root, PARENT_WORK.to_vec())]),
        "{}",
        show(&events)
    );
    assert_eq!(
        retvals_by_pid(&events, "plugin_fn", what),
        BTreeMap::from([(child, vec![101, 102, 103])]),
        "{}",
        show(&events)
    );
    assert_single_threaded(&events, "plugin_fn", what);
    assert!(of_kind(&events, "warning").is_empty(), "{}", show(&events));
    assert_eq!(exits(&events), BTreeMap::from([(root, 0), (child, 0)]));
}

// ---------------------------------------------------------------------------
// Attach and detach, again and again
// ---------------------------------------------------------------------------

const CYCLES: usize = 50;
const ENTRIES_PER_CYCLE: usize = 40;

/// Ctrl-C to rtrace in launch mode while four threads keep stepping out of
/// line (work() begins with a `lea` at -O2): rtrace detaches, then passes the
/// SIGINT on, as strace does. The program dies of that SIGINT (not of a trap
/// left behind), its end is the last event, and rtrace exits as a shell
/// reports it (130).
#[test]
fn ctrl_c_in_launch_mode_while_steps_are_in_flight() {
    let prog = fixture("threads", Variant::O2);
    let untraced = run_untraced(&prog, &["4", "300000"]);
    for _ in 0..5 {
        let mut cmd = std::process::Command::new(crate::fixtures::rtrace_bin());
        // (Int3 probes: the steps are theirs.)
        cmd.args([
            "--int3",
            "--json",
            "--entry-only",
            "--step",
            "xol",
            "-s",
            "work",
            "--",
        ])
        .arg(&prog)
        .args(["4", "300000"]);
        let mut rtrace = Spawned::command(cmd);
        for _ in 0..200 {
            wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                crate::events::str_field(e, "event") == "entry"
            });
        }
        rtrace.signal(Signal::SIGINT);
        wait_detach(&mut rtrace, "SIGINT in launch mode");
        let run = rtrace.wait();
        assert_eq!(run.code(), 130, "the program's status: {}", run.stderr);
        let events = parse_events(&run.stderr);
        let last = events.last().expect("events");
        assert_eq!(str_field(last, "event"), "killed", "{}", show(&events));
        assert_eq!(str_field(last, "signal"), "SIGINT", "{}", show(&events));
        // What it printed before the signal, it printed as untraced.
        assert!(untraced.stdout.starts_with(&run.stdout), "{}", run.stdout);
    }
}

/// A child that outlives the traced program: without -f it is left
/// unharmed, even when it runs in the program's memory (CLONE_VM), where the
/// breakpoints were; with -f its calls are reported until it exits, and
/// rtrace ends with the program's status.
#[test]
fn a_child_that_outlives_its_parent() {
    let prog = fixture("orphaner", Variant::Pie);
    for mode in ["fork", "vm"] {
        let args = [mode, "50"];
        let untraced = run_untraced(&prog, &args);
        assert_eq!(untraced.stdout, "parent done\nchild sum=2500\n");
        let (run, events) = trace_json(&format!("orphan_{mode}"), &["-s", "work"], &prog, &args);
        assert_same_as_untraced(&run, &untraced, &format!("orphaner {mode}"));
        assert!(
            of_kind(&events, "entry").is_empty(),
            "{mode}: {}",
            show(&events)
        );
        let (run, events) = trace_json(
            &format!("orphan_{mode}_follow"),
            &["-f", "-s", "work"],
            &prog,
            &args,
        );
        assert_same_as_untraced(&run, &untraced, &format!("orphaner {mode} -f"));
        let root = events[0]["pid"].as_i64().unwrap();
        let entries = of_kind(&events, "entry");
        assert_eq!(entries.len(), 50, "{mode} -f: {}", show(&events));
        assert!(entries.iter().all(|e| e["pid"].as_i64() != Some(root)));
        assert_eq!(retvals(&events, "work").iter().sum::<i64>(), 2500);
        let exits = of_kind(&events, "exit");
        assert_eq!(exits.len(), 2, "{mode} -f: the program's and the child's");
        assert_eq!(
            exits[0]["pid"].as_i64(),
            Some(root),
            "the program ends first"
        );
    }
}

/// `rtrace -p` on spin with 4 threads calling work(), then SIGINT, 50 times
/// on the same process. After each detach: the code is the files' code, no
/// thread has a tracer, all threads are alive and running. At the end spin
/// still stops normally on SIGTERM.
#[test]
fn attach_detach_fifty_cycles_on_four_busy_threads() {
    fifty_cycles(Variant::Pie, "auto");
}

/// The same with every hit stepped out of line (at -O2 work() begins with a
/// `lea`): a detach often comes while a thread is in its step, whose trap
/// must not reach the program.
#[test]
fn attach_detach_fifty_cycles_stepping_out_of_line() {
    fifty_cycles(Variant::O2, "xol");
}

fn fifty_cycles(variant: Variant, step: &str) {
    let prog = fixture("spin", variant);
    let spin = Spawned::start(&prog, &["threads", "4"]);
    let pid = spin.pid();
    let threads = threads_of(pid);
    assert_eq!(threads.len(), 5, "main + 4 threads: {threads:?}");
    let workers: BTreeSet<i64> = threads
        .iter()
        .filter(|&&t| t != pid)
        .map(|&t| t as i64)
        .collect();

    for cycle in 0..CYCLES {
        let what = format!("cycle {cycle}: rtrace -p {pid} -s work --json --step {step}");
        let mut args = vec!["-s", "work", "--json", "--step", step];
        if step == "xol" {
            // Int3 probes: the steps out of line are theirs.
            args.push("--int3");
        }
        let mut rtrace = Spawned::rtrace_attach(&args, pid);
        let attach = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "attach"
        });
        assert_eq!(attach["threads"], 5, "{what}: {attach}");
        assert_eq!(attach["probes"], 1, "{what}: {attach}");
        // Every worker is traced: wait for an entry from each, and for a few
        // dozen calls, so that the detach comes while they keep hitting.
        let mut seen = BTreeSet::new();
        let mut entries = 0;
        while seen != workers || entries < ENTRIES_PER_CYCLE {
            entries += 1;
            let e = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                str_field(e, "event") == "entry"
            });
            let tid = int(&e, "tid");
            assert!(workers.contains(&tid), "{what}: entry from {tid}: {e}");
            seen.insert(tid);
        }
        assert_eq!(tracer_pid(pid), rtrace.pid(), "{what}: the tracer");
        rtrace.signal(Signal::SIGINT);
        wait_detach(&mut rtrace, &what);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{what}: exit status\n{}", run.stderr);
        let events = parse_events(&run.stderr);
        assert_eq!(
            of_kind(&events, "detach").len(),
            1,
            "{what}\n{}",
            show(&events)
        );
        assert!(
            of_kind(&events, "exit").is_empty() && of_kind(&events, "killed").is_empty(),
            "{what}: spin must not have ended\n{}",
            show(&events)
        );
        assert!(
            of_kind(&events, "signal").is_empty(),
            "{what}: no signal reached spin\n{}",
            show(&events)
        );

        if let Err(e) = code_matches_files(pid) {
            panic!("{what}: after detach: {e}");
        }
        assert_eq!(threads_of(pid), threads, "{what}: threads after detach");
        for &tid in &threads {
            assert_eq!(tracer_pid(tid), 0, "{what}: thread {tid} still traced");
        }
        let state = process_state(pid);
        assert!(
            matches!(state, Some('R' | 'S' | 'D')),
            "{what}: state after detach {state:?}"
        );
    }

    let run = spin.terminate();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(run.code(), 0, "spin status; stdout:\n{}", run.stdout);
    assert_eq!(lines.len(), 4, "spin stdout:\n{}", run.stdout);
    assert_eq!(lines[0], format!("pid={pid}"));
    assert_eq!(lines[1], "ready");
    let calls: u64 = lines[2]
        .strip_prefix("calls=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("spin stdout:\n{}", run.stdout));
    assert!(calls >= 4 * CYCLES as u64, "calls={calls}");
    assert_eq!(lines[3], "done");
    assert_eq!(run.stderr, "");
}

/// A glob that skips a function says so once per run, not once per image:
/// execer runs itself twice, then count, and each image has ld.so's
/// `_dl_debug_state` (rtrace's own hook, skipped by globs).
#[test]
fn a_skip_warning_is_given_once_whatever_the_execs() {
    let prog = fixture("execer", Variant::Pie);
    let count = fixture("count", Variant::Pie);
    let (p, c) = (prog.to_str().unwrap(), count.to_str().unwrap());
    let args = [p, p, c, "1"];
    let untraced = run_untraced(&prog, &args);
    let spec = "ld-linux-x86-64.so.2:_dl_debug_st*";
    let (run, events) = trace_json("skip_once", &["-s", spec], &prog, &args);
    assert_same_as_untraced(&run, &untraced, spec);
    assert_eq!(of_kind(&events, "exec").len(), 3, "{}", show(&events));
    let warnings = of_kind(&events, "warning");
    assert_eq!(warnings.len(), 1, "{}", show(&events));
    assert_eq!(
        str_field(warnings[0], "message"),
        "probe ld-linux-x86-64.so.2:_dl_debug_st* skipped 1 function: 1 used by rtrace's \
         library-load hook: _dl_debug_state"
    );
}
