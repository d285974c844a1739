//! Never harm the traced program: hostile timing (an attach during an exec,
//! a detach during a fork), and the process running on exactly as it would
//! untraced: its own output and exit status, its code equal to its files.
//!
//! Race tests run a few rounds by default and the full count when
//! `RTRACE_STRESS_ROUNDS` is set (see `fixtures::rounds`). Every wait is on
//! an event (a line of rtrace's JSON output, the program's exit), never on
//! time.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::attach::{tracer_pid, wait_detach, wait_event};
use crate::events::{str_field, temp_path};
use crate::fixtures::{
    code_matches_files, code_matches_files_settled, fixture, rounds, Spawned, Variant,
};

/// `execloop`'s last line: `execs=N sum=S ok`. Returns N.
fn execloop_result(stdout: &str) -> u64 {
    let last = stdout.lines().last().unwrap_or_default();
    let words: Vec<&str> = last.split(' ').collect();
    assert!(
        words.len() == 3 && words[2] == "ok",
        "execloop's own check failed: {stdout:?}"
    );
    words[0]
        .strip_prefix("execs=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exec count in {last:?}"))
}

/// Attach to a process that replaces its image in a loop (about two thousand
/// execs a second), and detach, round after round. An attach that lands in
/// the middle of an `execve` sees the new image already: it must be set up
/// once, not a second time over rtrace's own breakpoints (which rtrace would
/// then refuse to probe, exit 1 and leave an int3 behind: the program died
/// of SIGTRAP). The program counts its execs and checks every image's
/// result; after every detach its code is its files'.
#[test]
fn attach_and_detach_while_the_program_execs_in_a_loop() {
    let prog = fixture("execloop", Variant::Pie);
    let stop = temp_path("execloop_attach_stop");
    let stop_str = stop.to_str().expect("UTF-8 temp path");
    let program = Spawned::start(&prog, &[stop_str]);
    let pid = program.pid();
    let per_mode = rounds(50, 4);
    for extra in [&[][..], &["--fast"], &["-f"], &["-f", "--fast"]] {
        for round in 0..per_mode {
            let mut args = vec!["-s", "work", "--json"];
            args.extend_from_slice(extra);
            let what = format!("round {round}: rtrace {} -p {pid}", args.join(" "));
            let mut rtrace = Spawned::rtrace_attach(&args, pid);
            wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                str_field(e, "event") == "attach"
            });
            // Every other round, trace across an exec before detaching.
            if round % 2 == 1 {
                wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                    str_field(e, "event") == "exec"
                });
            }
            rtrace.signal(Signal::SIGINT);
            wait_detach(&mut rtrace, &what);
            let run = rtrace.wait();
            assert_eq!(run.code(), 0, "{what}: exit status\n{}", run.stderr);
            assert_eq!(tracer_pid(pid), 0, "{what}: still traced");
            code_matches_files_settled(pid).unwrap_or_else(|e| panic!("{what}: after detach: {e}"));
        }
    }
    fs::write(&stop, b"").expect("create the stop file");
    let run = program.wait();
    assert_eq!(run.code(), 0, "execloop's exit status\n{}", run.stdout);
    assert!(execloop_result(&run.stdout) > 0, "{}", run.stdout);
}

/// `forkloop`'s last line: `forks=N bad=0`. Returns N.
fn forkloop_result(stdout: &str) -> u64 {
    let last = stdout.lines().last().unwrap_or_default();
    let rest = last
        .strip_suffix(" bad=0")
        .unwrap_or_else(|| panic!("children did not exit with their own status: {stdout:?}"));
    rest.strip_prefix("forks=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fork count in {last:?}"))
}

/// Detach (SIGINT) from a program that forks in a tight loop, from inside a
/// probed function, round after round. The child of a fork whose event
/// rtrace handles after it changed the parent's memory (the fork came
/// during the attach, before the scratch page was mapped) has a copy of the
/// memory older than those changes: rtrace used to take the parent's state
/// for the child's and killed the child with SIGSEGV, running its unmap of a
/// scratch page the child never had. Every child must exit with its own
/// status, rtrace with 0, and the code must be the files' after each detach.
#[test]
fn detach_while_the_program_forks_in_a_loop() {
    let prog = fixture("forkloop", Variant::Pie);
    let stop = temp_path("forkloop_detach_stop");
    let stop_str = stop.to_str().expect("UTF-8 temp path");
    let mut program = Spawned::start(&prog, &[stop_str]);
    let pid = program.pid();
    let modes: [(&[&str], usize); 4] = [
        (&[], rounds(100, 5)),
        (&["--fast"], rounds(50, 5)),
        (&["-f"], rounds(50, 3)),
        (&["-f", "--fast"], rounds(50, 3)),
    ];
    for (extra, count) in modes {
        for round in 0..count {
            let mut args = vec!["-s", "work", "-s", "spawn", "--json"];
            args.extend_from_slice(extra);
            let what = format!("round {round}: rtrace {} -p {pid}", args.join(" "));
            let mut rtrace = Spawned::rtrace_attach(&args, pid);
            wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                str_field(e, "event") == "attach"
            });
            // Every other round, detach once a fork has been seen.
            if round % 2 == 1 {
                wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                    str_field(e, "event") == "entry" && str_field(e, "symbol") == "spawn"
                });
            }
            rtrace.signal(Signal::SIGINT);
            wait_detach(&mut rtrace, &what);
            let run = rtrace.wait();
            assert_eq!(run.code(), 0, "{what}: exit status\n{}", run.stderr);
            assert_eq!(tracer_pid(pid), 0, "{what}: still traced");
            code_matches_files(pid).unwrap_or_else(|e| panic!("{what}: after detach: {e}"));
            // forkloop reports a child that did not exit with its own status
            // at once, on stderr.
            if let Ok(line) = program.next_stderr_line(Duration::ZERO) {
                panic!("{what}: {line}\n--- rtrace's output:\n{}", run.stderr);
            }
        }
    }
    fs::write(&stop, b"").expect("create the stop file");
    let run = program.wait();
    assert_eq!(
        run.code(),
        0,
        "forkloop's exit status\n{}{}",
        run.stdout,
        run.stderr
    );
    assert!(forkloop_result(&run.stdout) > 0, "{}", run.stdout);
}
