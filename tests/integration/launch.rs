//! Launch mode, at both ends of the program's life: it starts with exactly
//! the descriptors rtrace was given (one closed stays closed), and an error
//! once tracing has begun never orphans it: rtrace says why, detaches, waits
//! for the program to end, says how it ended and exits 1.
//!
//! The program here is `stdfds`, which writes what it saw of its descriptors
//! and the result of its work to a file, out of the way of what a test does
//! to stdout and stderr.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rtrace::{Handler, Hit, Options, Outcome};

use crate::events::temp_path;
use crate::fixtures::{
    bounded, fixture, rtrace_bin, run_command, run_untraced, Run, Spawned, Variant, TIMEOUT,
};

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
    bounded(move |session| {
        let mut cmd = Command::new(prog);
        cmd.arg(file).args(["3", "5"]);
        let mut tracer = session.launch(&cmd, Options::default()).expect("launch");
        tracer
            .add_probe("work".parse().unwrap(), Nothing)
            .expect("add work");
        assert_eq!(tracer.run().expect("run"), Outcome::Exited(5));
    });
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

/// The last two lines of rtrace's stderr after an error once tracing had
/// begun, in launch mode: the error (checked to contain `error`), then how
/// the program that ran on ended (`ended`: `exited with 7`, `was killed by
/// SIGPIPE`). rtrace exits 1 and does not panic. Returns the error line.
pub fn assert_ran_on(run: &Run, error: &str, ended: &str, what: &str) -> String {
    assert_eq!(
        run.code(),
        1,
        "{what}: exit status\n--- stdout:\n{}--- stderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{what}: rtrace panicked:\n{}",
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    let [.., error_line, end_line] = lines[..] else {
        panic!("{what}: fewer than two lines:\n{}", run.stderr);
    };
    assert!(
        error_line.starts_with("rtrace: ") && error_line.contains(error),
        "{what}: the error line, with {error:?}, comes before the last:\n{}",
        run.stderr
    );
    let said = end_line
        .strip_prefix("rtrace: pid ")
        .and_then(|rest| rest.split_once(' '))
        .filter(|(pid, _)| pid.parse::<u32>().is_ok())
        .map(|(_, said)| said);
    assert_eq!(
        said,
        Some(format!("ran on untraced and {ended}").as_str()),
        "{what}: the last line says how the program ended:\n{}",
        run.stderr
    );
    error_line.to_string()
}

/// More calls of work than a fast probes' ring holds the records of (65,536
/// at the most; two per call): the program cannot end before rtrace has
/// read, and printed, some of them. (With int3 probes every call stops
/// it.)
pub const OUTRUN: &str = "100000";

/// The events cannot be written (a full disk): rtrace says so, detaches, and
/// waits for the program, which completes its work untraced and exits with
/// its own status, which rtrace says.
#[test]
fn an_output_error_waits_for_the_program() {
    let prog = fixture("stdfds", Variant::Pie);
    let untraced_file = temp_path("ran_on_full_untraced.txt");
    let untraced = run_untraced(&prog, &[untraced_file.to_str().unwrap(), OUTRUN, "7"]);
    assert_eq!(untraced.code(), 7);
    let file = temp_path("ran_on_full.txt");
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["-o", "/dev/full", "-s", "work", "--"])
        .arg(&prog)
        .args([file.to_str().unwrap(), OUTRUN, "7"]);
    let run = run_command(cmd, TIMEOUT);
    let what = "rtrace -o /dev/full -s work -- stdfds FILE 100000 7";
    assert_ran_on(&run, "No space left on device", "exited with 7", what);
    assert_eq!(read(&file), read(&untraced_file), "{what}");
}

/// Whenever the error comes, rtrace exits after the program: while the
/// program runs (rtrace waits, and says how it ended), or as it ends (its
/// end was seen traced: the error is the last line). The printer writes
/// when its 8 KiB buffer fills (about 195 calls of text; the flush every
/// 10 ms may come sooner) and at the end; the rounds sweep the number of
/// calls across that, so the error lands before, during and after the
/// program's exit. From 245 calls on (lines of 34 bytes at the least) the
/// buffer fills before the program ends: that error is always mid-run.
/// That holds while each call stops the program (`--int3`): fast probes
/// let it run ahead of the printer, its end comes first for every count
/// swept here (the tests above make it outrun the ring).
#[test]
fn an_error_at_any_moment_leaves_no_program_behind() {
    let prog = fixture("stdfds", Variant::Pie);
    let rounds = crate::fixtures::rounds(200, 5);
    let mut ran_on = 0;
    for round in 0..rounds {
        let n = 140 + (round * 53) % 130;
        let file = temp_path(&format!("ran_on_any_moment_{round}.txt"));
        let mut cmd = Command::new(rtrace_bin());
        cmd.args(["--int3", "-o", "/dev/full", "-s", "work", "--"])
            .arg(&prog)
            .args([file.to_str().unwrap(), &n.to_string(), "7"]);
        let run = run_command(cmd, TIMEOUT);
        let what =
            format!("round {round}: rtrace --int3 -o /dev/full -s work -- stdfds FILE {n} 7");
        let last = run.stderr.lines().last().unwrap_or_default();
        if last.ends_with("ran on untraced and exited with 7") {
            assert_ran_on(&run, "No space left on device", "exited with 7", &what);
            ran_on += 1;
        } else {
            assert!(n < 245, "{what}: the error came mid-run: {}", run.stderr);
            assert_eq!(run.code(), 1, "{what}: {}", run.stderr);
            assert!(
                last.contains("No space left on device"),
                "{what}: {}",
                run.stderr
            );
        }
        assert_eq!(
            fs::read_to_string(&file).ok(),
            Some(format!(
                "fd0=open fd1=open fd2=open write2=ok\nsum={}\n",
                n * n
            )),
            "{what}: the result, written before rtrace exited"
        );
    }
    eprintln!("{rounds} rounds, {ran_on} with the program running on after the error");
}

/// `rtrace -o /dev/stdout … | head -1`: the reader goes away after one
/// line, and the next write fails with EPIPE (rtrace ignores SIGPIPE, as
/// Rust programs do). rtrace says so on stderr, which still works, and waits
/// for the program, which writes nothing to stdout and so runs to its end.
#[test]
fn a_broken_pipe_on_the_output_waits_for_the_program() {
    let prog = fixture("stdfds", Variant::Pie);
    let file = temp_path("ran_on_epipe.txt");
    // Close-on-exec: only the write end, as stdout, goes to rtrace.
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // `timeout` bounds the run: run_command would capture stdout itself.
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "60"])
        .arg(rtrace_bin())
        .args(["-o", "/dev/stdout", "-s", "work", "--"])
        .arg(&prog)
        // 100,000 calls, 200,000 lines: more than the pipe holds and the
        // one read below takes, so rtrace writes again after the reader is
        // gone, and more than a fast probes' ring holds, so the program is
        // still running then.
        .args([file.to_str().unwrap(), OUTRUN, "7"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start rtrace");
    // The command holds the write end now: ours is closed with `cmd`.
    drop(cmd);
    let mut reader = BufReader::new(fs::File::from(read_end));
    let mut first = String::new();
    reader.read_line(&mut first).expect("read a line");
    assert!(first.contains("work(x=0)"), "{first:?}");
    drop(reader);
    let out = child.wait_with_output().expect("wait for rtrace");
    let run = Run {
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status,
    };
    let what = "rtrace -o /dev/stdout -s work -- stdfds FILE 100000 7 | head -1";
    assert_ran_on(&run, "Broken pipe", "exited with 7", what);
    assert_eq!(
        read(&file),
        "fd0=open fd1=open fd2=open write2=ok\nsum=10000000000\n"
    );
}

/// Events to stderr, a pipe whose reader is gone: rtrace has nowhere to say
/// anything, yet it waits for the program as ever. When rtrace has exited,
/// the program has completed its work and written its result. (The first
/// write fails early, and most of the 20 million calls are made untraced,
/// after the detach: a rtrace that did not wait would be gone long before
/// the result is written.)
#[test]
fn a_closed_stderr_pipe_waits_for_the_program() {
    let prog = fixture("stdfds", Variant::Pie);
    let file = temp_path("ran_on_closed_stderr.txt");
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    drop(read_end);
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "60"])
        .arg(rtrace_bin())
        .args(["-s", "work", "--"])
        .arg(&prog)
        .args([file.to_str().unwrap(), "20000000", "7"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write_end));
    let status = cmd.status().expect("run rtrace");
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert_eq!(
        fs::read_to_string(&file).ok().as_deref(),
        Some("fd0=open fd1=open fd2=open write2=ok\nsum=400000000000000\n"),
        "the result, written before rtrace exited"
    );
}

/// A hand-made i386 executable (ELF32, one PT_LOAD segment, no sections):
/// writes "ia32\n" to stdout with `int 0x80` and exits with 42.
fn ia32_program(path: &Path) {
    const BASE: u32 = 0x0804_8000;
    const CODE: u32 = 52 + 32; // after the ELF header and the program header
    let mut code: Vec<u8> = Vec::new();
    let msg_at = BASE + CODE + 34; // the instructions below take 34 bytes
    let mov = |code: &mut Vec<u8>, opcode: u8, value: u32| {
        code.push(opcode);
        code.extend_from_slice(&value.to_le_bytes());
    };
    mov(&mut code, 0xb8, 4); // mov eax, 4 (write)
    mov(&mut code, 0xbb, 1); // mov ebx, 1
    mov(&mut code, 0xb9, msg_at); // mov ecx, msg
    mov(&mut code, 0xba, 5); // mov edx, 5
    code.extend_from_slice(&[0xcd, 0x80]); // int 0x80
    mov(&mut code, 0xb8, 1); // mov eax, 1 (exit)
    mov(&mut code, 0xbb, 42); // mov ebx, 42
    code.extend_from_slice(&[0xcd, 0x80]); // int 0x80
    assert_eq!(code.len(), 34);
    code.extend_from_slice(b"ia32\n");
    let size = CODE + code.len() as u32;

    let mut elf: Vec<u8> = Vec::new();
    let u16 = |elf: &mut Vec<u8>, v: u16| elf.extend_from_slice(&v.to_le_bytes());
    let u32 = |elf: &mut Vec<u8>, v: u32| elf.extend_from_slice(&v.to_le_bytes());
    // e_ident: magic, ELFCLASS32, ELFDATA2LSB, EV_CURRENT, System V, padding.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1, 1, 0]);
    elf.extend_from_slice(&[0; 8]);
    u16(&mut elf, 2); // e_type: ET_EXEC
    u16(&mut elf, 3); // e_machine: EM_386
    u32(&mut elf, 1); // e_version
    u32(&mut elf, BASE + CODE); // e_entry
    u32(&mut elf, 52); // e_phoff
    u32(&mut elf, 0); // e_shoff
    u32(&mut elf, 0); // e_flags
    u16(&mut elf, 52); // e_ehsize
    u16(&mut elf, 32); // e_phentsize
    u16(&mut elf, 1); // e_phnum
    u16(&mut elf, 0); // e_shentsize
    u16(&mut elf, 0); // e_shnum
    u16(&mut elf, 0); // e_shstrndx
    u32(&mut elf, 1); // p_type: PT_LOAD
    u32(&mut elf, 0); // p_offset
    u32(&mut elf, BASE); // p_vaddr
    u32(&mut elf, BASE); // p_paddr
    u32(&mut elf, size); // p_filesz
    u32(&mut elf, size); // p_memsz
    u32(&mut elf, 5); // p_flags: R+X
    u32(&mut elf, 0x1000); // p_align
    assert_eq!(elf.len() as u32, CODE);
    elf.extend_from_slice(&code);
    fs::write(path, &elf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The traced program execs an i386 image, which rtrace cannot trace: it
/// says so, detaches, and waits; the new image runs to its end untraced,
/// its output and exit status as without rtrace.
#[test]
fn an_exec_into_a_32_bit_image_waits_for_the_program() {
    let prog = fixture("execer", Variant::Pie);
    let ia32: PathBuf = temp_path("ia32");
    ia32_program(&ia32);
    let ia32 = ia32.to_str().unwrap();
    let untraced = run_untraced(&prog, &[ia32]);
    assert_eq!(untraced.stdout, "before=207\nia32\n", "{}", untraced.stderr);
    assert_eq!(untraced.code(), 42);
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["-s", "work", "--"]).arg(&prog).arg(ia32);
    let run = run_command(cmd, TIMEOUT);
    let what = "rtrace -s work -- execer IA32";
    assert_ran_on(
        &run,
        "a 32-bit ELF file: rtrace traces 64-bit x86-64 programs only",
        "exited with 42",
        what,
    );
    assert_eq!(run.stdout, untraced.stdout, "{what}");
    assert!(run.stderr.contains("work(x=100) = 207"), "{}", run.stderr);
}

/// SIGINT, SIGTERM and SIGHUP to rtrace in launch mode end the program too,
/// as strace does: rtrace detaches (every call in flight let go, int3 and
/// fast alike), passes the same signal on, waits for the program, and exits
/// with its status. sleepers does not handle them: it dies of the signal,
/// and rtrace exits 128+N; the last two lines say it was let go, then how
/// it ended. spin ends on SIGTERM by itself (`calls=N`, `done`, status 0),
/// and rtrace says so and exits 0.
#[test]
fn a_signal_to_rtrace_ends_the_program_it_launched() {
    use nix::sys::signal::Signal;
    let sleepers = fixture("sleepers", Variant::Pie);
    let cases = [
        (Signal::SIGTERM, &["--int3"][..], 143),
        (Signal::SIGINT, &["--fast"][..], 130),
        (Signal::SIGHUP, &[][..], 129),
    ];
    for (signal, extra, status) in cases {
        let what = format!("{signal} to rtrace {extra:?} -s nap -- sleepers 2 1000");
        let mut cmd = Command::new(rtrace_bin());
        cmd.args(extra)
            .args(["-s", "nap", "--"])
            .arg(&sleepers)
            .args(["2", "1000"]);
        let mut rtrace = Spawned::command(cmd);
        rtrace.wait_stdout_line(|l| l == "ready");
        // A call returned: calls are in flight on both threads from now on.
        rtrace.wait_stderr_line(|l| l.contains("nap") && l.contains(" = 10"));
        rtrace.signal(signal);
        let run = rtrace.wait();
        assert_eq!(run.code(), status, "{what}: {}", run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines[lines.len() - 2..],
            [
                "+++ detached +++".to_string(),
                format!("+++ killed by {signal} +++")
            ],
            "{what}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "ready\n", "{what}");
    }
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["-s", "work", "--"])
        .arg(fixture("spin", Variant::Pie));
    let mut rtrace = Spawned::command(cmd);
    rtrace.wait_stdout_line(|l| l == "ready");
    rtrace.wait_stderr_line(|l| l.contains("work("));
    rtrace.signal(nix::sys::signal::Signal::SIGTERM);
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(run.stdout.ends_with("done\n"), "{}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        ["+++ detached +++", "+++ exited with 0 +++"],
        "{}",
        run.stderr
    );
}

/// A program that ignores the signal passed on runs on, and rtrace waits
/// for it; another signal to rtrace ends the wait (rtrace exits 128+N) and
/// leaves the program running, untraced, to its own end.
#[test]
fn a_second_signal_ends_the_wait_for_the_program() {
    use nix::sys::signal::Signal;
    let prog = fixture("seccomp", Variant::Pie);
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["-s", "work", "--"])
        .arg(&prog)
        .args(["none", "5", "wait"]);
    let mut rtrace = Spawned::with_stdin(cmd);
    let line = rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached to pid "));
    let pid: i32 = line["rtrace: attached to pid ".len()..]
        .split(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the attach line's pid");
    rtrace.wait_stdout_line(|l| l == "ready");
    // seccomp ignores SIGINT: rtrace has detached and waits.
    rtrace.signal(Signal::SIGINT);
    rtrace.wait_stderr_line(|l| l == "+++ detached +++");
    assert_eq!(crate::attach::tracer_pid(pid), 0);
    rtrace.signal(Signal::SIGTERM);
    assert_eq!(
        rtrace.wait_ended(),
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(rtrace.pid()), 143)
    );
    // rtrace has gone; the program runs on, and ends once told to.
    assert_eq!(crate::attach::tracer_pid(pid), 0);
    rtrace.send("go\ngo\n");
    let run = rtrace.wait();
    assert_eq!(run.stdout, "ready\nsum=25\n");
    assert_eq!(run.stderr.lines().last(), Some("+++ detached +++"));
}

/// The signals that are ignored in `/proc/PID/status` (`SigIgn`).
fn ignored_signals(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("SigIgn")
}

/// A program rtrace launches inherits what rtrace was started with: SIGINT
/// and SIGHUP ignored (a background job, `nohup`) stay ignored in it, as
/// untraced, and rtrace does not take them as requests to detach (it
/// never saw them as signals to it); SIGTERM still is, and spin ends on it
/// by itself.
#[test]
fn signals_ignored_when_rtrace_starts_stay_ignored_in_the_program() {
    use nix::sys::signal::Signal;
    let spin = fixture("spin", Variant::Pie);
    let shell = |program: &str| {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("trap '' INT HUP; exec {program}"));
        cmd
    };
    let mut untraced = Spawned::command(shell(&spin.display().to_string()));
    let line = untraced.wait_stdout_line(|l| l.starts_with("pid="));
    let pid: i32 = line["pid=".len()..].parse().unwrap();
    let want = ignored_signals(pid);
    let bits = (1u64 << (libc::SIGINT - 1)) | (1u64 << (libc::SIGHUP - 1));
    assert_eq!(want & bits, bits, "the shell ignored them: {want:#x}");
    untraced.signal(Signal::SIGTERM);
    let _ = untraced.wait();

    let traced = format!("{} -s work -- {}", rtrace_bin().display(), spin.display());
    let mut rtrace = Spawned::command(shell(&traced));
    let line = rtrace.wait_stdout_line(|l| l.starts_with("pid="));
    let pid: i32 = line["pid=".len()..].parse().unwrap();
    rtrace.wait_stderr_line(|l| l.contains("work("));
    assert_eq!(ignored_signals(pid), want, "the program's ignored signals");
    // Ignored by rtrace too: still tracing after them.
    rtrace.signal(Signal::SIGINT);
    rtrace.signal(Signal::SIGHUP);
    for _ in 0..3 {
        rtrace.wait_stderr_line(|l| l.contains("work("));
    }
    assert_eq!(crate::attach::tracer_pid(pid), rtrace.pid());
    rtrace.signal(Signal::SIGTERM);
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(run.stdout.ends_with("done\n"), "{}", run.stdout);
    assert_eq!(
        run.stderr.lines().last(),
        Some("+++ exited with 0 +++"),
        "{}",
        run.stderr
    );
}

/// A launched program that is stopped (SIGSTOP) when rtrace is told to end:
/// the signal passed on waits with it, as untraced; rtrace says why it
/// waits, and once the program is continued it takes the signal and rtrace
/// reports its end.
#[test]
fn a_stopped_program_is_said_to_be_waited_for() {
    use nix::sys::signal::{kill, Signal};
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["-s", "work", "--"])
        .arg(fixture("spin", Variant::Pie));
    let mut rtrace = Spawned::command(cmd);
    let line = rtrace.wait_stdout_line(|l| l.starts_with("pid="));
    let pid = nix::unistd::Pid::from_raw(line["pid=".len()..].parse().unwrap());
    rtrace.wait_stderr_line(|l| l.contains("work("));
    kill(pid, Signal::SIGSTOP).unwrap();
    rtrace.wait_stderr_line(|l| l.ends_with("--- SIGSTOP ---"));
    rtrace.signal(Signal::SIGTERM);
    let said = rtrace.wait_stderr_line(|l| l.starts_with("rtrace: warning: pid"));
    assert_eq!(
        said,
        format!(
            "rtrace: warning: pid {pid} is stopped (SIGSTOP): rtrace waits for it to end; \
             SIGCONT it, or send rtrace another signal to leave it"
        )
    );
    kill(pid, Signal::SIGCONT).unwrap();
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(run.stdout.ends_with("done\n"), "{}", run.stdout);
    assert_eq!(run.stderr.lines().last(), Some("+++ exited with 0 +++"));
}
