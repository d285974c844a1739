//! The progress line of the work before tracing begins: drawn on a terminal
//! only. `RTRACE_PROGRESS_DELAY_MS=0` makes it due at once, so the tests do
//! not depend on how long arming takes on this machine.

use std::path::Path;
use std::process::Command;

use crate::fixtures::{fixture, rtrace_bin, run_command, Variant, TIMEOUT};

/// Moves to column 1 and clears the line: how the line is drawn and cleared.
const CLEAR: &str = "\x1b[1G\x1b[2K";

#[test]
fn progress_is_never_shown_when_stderr_is_not_a_terminal() {
    let prog = fixture("count", Variant::Pie);
    let mut cmd = Command::new(rtrace_bin());
    cmd.env("RTRACE_PROGRESS_DELAY_MS", "0")
        .args(["-c", "-s", "libc:str*", "--"])
        .arg(&prog)
        .arg("3");
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("rtrace: attached to pid "),
        "{}",
        run.stderr
    );
    for unwanted in ["resolving probes", "arming probes", "\x1b"] {
        assert!(
            !run.stderr.contains(unwanted),
            "{unwanted:?} on a pipe:\n{}",
            run.stderr
        );
    }
}

#[test]
fn progress_is_drawn_on_a_terminal_and_cleared_before_tracing_begins() {
    // script(1) runs the command with a pseudo-terminal as its stderr and
    // copies what it wrote to our pipe.
    let script = Path::new("/usr/bin/script");
    if !script.exists() {
        eprintln!(
            "skipped: no {} (util-linux) to make a terminal",
            script.display()
        );
        return;
    }
    let prog = fixture("count", Variant::Pie);
    let line = format!(
        "{} -c -s 'libc:str*' -- {} 3",
        rtrace_bin().display(),
        prog.display()
    );
    let mut cmd = Command::new(script);
    cmd.env("RTRACE_PROGRESS_DELAY_MS", "0")
        .args(["-qec", &line, "/dev/null"]);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 0, "{}", run.stdout);
    let drawn = format!("{CLEAR}rtrace: resolving probes… (libc:str*)");
    let at = run
        .stdout
        .find(&drawn)
        .unwrap_or_else(|| panic!("no progress line:\n{:?}", run.stdout));
    let attached = run
        .stdout
        .find("rtrace: attached to pid ")
        .expect("attach line");
    assert!(at < attached, "{:?}", run.stdout);
    // The last thing before the attach line clears the progress line.
    assert!(
        run.stdout[..attached].ends_with(CLEAR),
        "the line is cleared before tracing begins:\n{:?}",
        run.stdout
    );
    assert!(
        !run.stdout[attached..].contains("probes…"),
        "{:?}",
        run.stdout
    );
}

#[test]
fn a_progress_delay_that_is_not_a_number_is_a_usage_error() {
    let prog = fixture("count", Variant::Pie);
    let mut cmd = Command::new(rtrace_bin());
    cmd.env("RTRACE_PROGRESS_DELAY_MS", "soon")
        .args(["-s", "work", "--"])
        .arg(&prog);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "rtrace: RTRACE_PROGRESS_DELAY_MS=\"soon\": give a number of milliseconds (see 'rtrace --help')\n"
    );
}
