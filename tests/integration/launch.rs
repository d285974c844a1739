//! Launch mode: the program starts with exactly the descriptors rtrace was
//! given (one closed stays closed).
//!
//! The program here is `stdfds`, which writes what it saw of its descriptors
//! and the result of its work to a file, out of the way of what a test does
//! to stdout and stderr.

use std::fs;
use std::path::Path;
use std::process::Command;

use rtrace::{Handler, Hit, Options, Outcome, Tracer};

use crate::events::temp_path;
use crate::fixtures::{fixture, rtrace_bin, run_command, Run, Variant, TIMEOUT};

/// Runs `command args` through `sh -c 'exec "$@" REDIRECTIONS'`, so that it
/// starts with the descriptors the redirections leave it (`2>&-`: fd 2 really
/// closed, not open on /dev/null).
fn run_with(redirections: &str, command: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec \"$@\" {redirections}"))
        .arg("sh")
        .arg(command)
        .args(args);
    run_command(cmd, TIMEOUT)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// What `stdfds` writes when it starts with fds 0–2 as `redirections` leaves
/// them and calls work() `n` times.
fn stdfds_report(redirections: &str, n: u64) -> String {
    let state = |fd: &str| match redirections.contains(&format!("{fd}>&-"))
        || redirections.contains(&format!("{fd}<&-"))
    {
        true => "closed",
        false => "open",
    };
    let write2 = match state("2") {
        "closed" => "EBADF",
        _ => "ok",
    };
    format!(
        "fd0={} fd1={} fd2={} write2={write2}\nsum={}\n",
        state("0"),
        state("1"),
        state("2"),
        n * n
    )
}

/// A descriptor closed when rtrace starts is closed in the program it
/// launches, whichever of 0, 1 and 2 it is, as it is untraced: a write to a
/// closed fd 2 fails with EBADF. One open on /dev/null stays open. rtrace
/// itself, with fd 2 closed, has nowhere to write its events (Rust's runtime
/// gave it /dev/null there) and exits with the program's status as usual.
#[test]
fn closed_standard_descriptors_stay_closed() {
    let prog = fixture("stdfds", Variant::Pie);
    let cases = ["2>&-", "1>&-", "0<&-", "0<&- 1>&- 2>&-", "2>/dev/null", ""];
    for (i, redirections) in cases.into_iter().enumerate() {
        let what = format!("stdfds with `{redirections}`");
        let expected = stdfds_report(redirections, 3);
        let untraced_file = temp_path(&format!("stdfds_untraced_{i}.txt"));
        let untraced = run_with(
            redirections,
            &prog,
            &[untraced_file.to_str().unwrap(), "3", "5"],
        );
        assert_eq!(untraced.code(), 5, "{what}, untraced: {}", untraced.stderr);
        assert_eq!(read(&untraced_file), expected, "{what}, untraced");

        let traced_file = temp_path(&format!("stdfds_traced_{i}.txt"));
        let rtrace = rtrace_bin();
        let traced = run_with(
            redirections,
            &rtrace,
            &[
                "-s",
                "work",
                "--",
                prog.to_str().unwrap(),
                traced_file.to_str().unwrap(),
                "3",
                "5",
            ],
        );
        assert_eq!(traced.code(), 5, "{what}, traced: {}", traced.stderr);
        assert_eq!(read(&traced_file), expected, "{what}, traced");
        if !redirections.contains("2>") {
            // Traced for real: three calls, each reported.
            let calls = traced.stderr.matches("work(x=").count();
            assert_eq!(calls, 3, "{what}: {}", traced.stderr);
        }
    }
}

/// Where the host below finds its program and the file it passes it.
const HOST_PROGRAM: &str = "RTRACE_TEST_HOST_PROGRAM";
const HOST_FILE: &str = "RTRACE_TEST_HOST_FILE";

struct Nothing;
impl Handler for Nothing {
    fn on_entry(&mut self, _: &mut Hit<'_>) -> rtrace::Result<()> {
        Ok(())
    }
}

/// The host of [`a_library_host_started_without_stderr`]: this test binary,
/// run again with fd 2 closed, launches `stdfds` through the library. Run
/// any other way it does nothing.
#[test]
fn library_host() {
    let (Some(prog), Some(file)) = (std::env::var_os(HOST_PROGRAM), std::env::var_os(HOST_FILE))
    else {
        return;
    };
    let mut cmd = Command::new(prog);
    cmd.arg(file).args(["3", "5"]);
    let mut tracer = Tracer::launch(&cmd, Options::default()).expect("launch");
    tracer
        .add_probe("work".parse().unwrap(), Nothing)
        .expect("add work");
    assert_eq!(tracer.run().expect("run"), Outcome::Exited(5));
}

/// The library notes the descriptors its host was started without before
/// Rust's runtime opens /dev/null on them (a constructor the library links
/// into any program that uses it), so a program launched from a test binary
/// gets its fd 2 closed too.
#[test]
fn a_library_host_started_without_stderr() {
    let prog = fixture("stdfds", Variant::Pie);
    let file = temp_path("stdfds_library_host.txt");
    let me = std::env::current_exe().expect("the test binary");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec \"$@\" 2>&-")
        .arg("sh")
        .arg(me)
        .args(["--exact", "launch::library_host", "--test-threads", "1"])
        .env(HOST_PROGRAM, &prog)
        .env(HOST_FILE, &file);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(
        run.code(),
        0,
        "the host test failed:\n{}{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("1 passed"), "{}", run.stdout);
    assert_eq!(read(&file), stdfds_report("2>&-", 3));
}
