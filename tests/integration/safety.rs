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
use crate::fixtures::{code_matches_files_settled, fixture, rounds, Spawned, Variant};

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
