//! Errors: usage errors exit 2, runtime errors exit 1, and each is one line
//! on stderr starting `rtrace: ` (no panic, no backtrace). A launched
//! program that cannot be traced as asked must not run; a process rtrace
//! could not attach to is left alone; when the output goes away rtrace
//! detaches and the tracee finishes normally.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::attach::{tracer_pid, wait_detach, wait_event};
use crate::events::{assert_one_error_line, of_kind, parse_events, show, str_field, temp_path};
use crate::fixtures::{
    code_matches_files, fixture, rtrace_bin, run_command, run_rtrace, threads_of, Spawned, Variant,
    TIMEOUT,
};
use crate::launch::assert_ran_on;

fn rtrace(args: &[&str]) -> crate::fixtures::Run {
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(args);
    run_command(cmd, TIMEOUT)
}

#[test]
fn nonexistent_pid() {
    let run = rtrace(&["-p", "999999", "-s", "work"]);
    let line = assert_one_error_line(&run, 1, "rtrace -p 999999 -s work");
    assert!(line.contains("999999"), "names the pid: {line}");
}

#[test]
fn non_numeric_pid_is_usage_error() {
    let run = rtrace(&["-p", "abc", "-s", "work"]);
    assert_one_error_line(&run, 2, "rtrace -p abc -s work");
}

#[test]
fn missing_program() {
    let run = rtrace(&["-s", "work", "--", "/nonexistent/program"]);
    let line = assert_one_error_line(&run, 1, "rtrace -s work -- /nonexistent/program");
    assert!(line.contains("/nonexistent/program"), "names it: {line}");
}

#[test]
fn a_directory_is_not_a_program() {
    let run = rtrace(&["-s", "work", "--", "/tmp"]);
    let line = assert_one_error_line(&run, 1, "rtrace -s work -- /tmp");
    assert!(line.contains("/tmp: it is a directory"), "{line}");
}

/// Options are options wherever they are, and the command comes after `--`:
/// an unknown option or a command without `--` is a usage error, never run.
#[test]
fn unknown_options_and_commands_without_dashes_are_usage_errors() {
    let run = rtrace(&["-s", "work", "--bogus", "--", "true"]);
    let line = assert_one_error_line(&run, 2, "rtrace -s work --bogus -- true");
    assert!(line.contains("'--bogus'"), "{line}");
    let run = rtrace(&["-s", "work", "true"]);
    let line = assert_one_error_line(&run, 2, "rtrace -s work true");
    assert!(
        line.contains("the command to launch goes after --"),
        "{line}"
    );
}

#[test]
fn an_address_no_module_maps() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-s", "0x1"], &prog, &[]);
    let line = assert_one_error_line(&run, 1, "rtrace -s 0x1");
    assert!(line.contains("no loaded module maps 0x1"), "{line}");
    assert_eq!(run.stdout, "", "the program never ran");
}

/// `-p` with the id of a thread that is not its process's main thread.
#[test]
fn a_thread_is_not_a_process() {
    let spin = Spawned::start(&fixture("spin", Variant::Pie), &["threads", "2"]);
    let pid = spin.pid();
    let tid = threads_of(pid)
        .into_iter()
        .find(|&t| t != pid)
        .expect("a thread");
    let run = rtrace(&["-p", &tid.to_string(), "-s", "work"]);
    let line = assert_one_error_line(&run, 1, "rtrace -p TID");
    assert!(
        line.contains(&format!("{tid} is a thread of process {pid}"))
            && line.contains(&format!("-p {pid}")),
        "{line}"
    );
    assert_eq!(tracer_pid(pid), 0);
    spin.terminate();
}

/// A file with mode 755 holding `bytes`, named after the test.
fn executable_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = temp_path(name);
    fs::write(&path, bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn not_an_elf() {
    let path = executable_file("not_elf", b"hello, this is text\nnot a program\n");
    let run = run_rtrace(&["-s", "work"], &path, &[]);
    let what = "rtrace -s work -- <text file, mode 755>";
    let line = assert_one_error_line(&run, 1, what);
    assert!(
        line.to_lowercase().contains("not an elf")
            || line.contains("ENOEXEC")
            || line.contains("Exec format"),
        "{what}: says what is wrong: {line}"
    );
}

#[test]
fn truncated_elf() {
    let bytes = fs::read(fixture("count", Variant::Pie)).unwrap();
    for (name, len) in [("trunc_100", 100), ("trunc_half", bytes.len() / 2)] {
        let path = executable_file(name, &bytes[..len]);
        let run = run_rtrace(&["-s", "work"], &path, &["3"]);
        let what = format!("rtrace -s work -- <count truncated to {len} bytes>");
        assert_one_error_line(&run, 1, &what);
        assert_eq!(run.stdout, "", "{what}");
    }
}

#[test]
fn unknown_symbol_launch() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-s", "no_such_fn"], &prog, &["3"]);
    let what = "rtrace -s no_such_fn -- count 3";
    let line = assert_one_error_line(&run, 1, what);
    assert!(
        line.contains("no_such_fn"),
        "{what}: names the symbol: {line}"
    );
    assert!(
        line.contains("count") && line.contains("libc"),
        "{what}: lists the searched modules (count, libc): {line}"
    );
    assert_eq!(run.stdout, "", "{what}: the program must not have run");
    // With -c (text, JSON): the error alone, no table of nothing.
    for extra in [&["-c"][..], &["-c", "--json"]] {
        let mut args = extra.to_vec();
        args.extend(["-s", "no_such_fn"]);
        let run = run_rtrace(&args, &prog, &["3"]);
        let what = format!("rtrace {args:?} -- count 3");
        assert_one_error_line(&run, 1, &what);
        assert_eq!(run.stdout, "", "{what}");
    }
}

#[test]
fn unknown_symbol_attach_leaves_process_alone() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let pid = spin.pid();
    let run = rtrace(&["-p", &pid.to_string(), "-s", "no_such_fn"]);
    let what = format!("rtrace -p {pid} -s no_such_fn");
    let line = assert_one_error_line(&run, 1, &what);
    assert!(line.contains("no_such_fn"), "{what}: {line}");
    assert_eq!(tracer_pid(pid), 0, "{what}: still traced");
    code_matches_files(pid).unwrap_or_else(|e| panic!("{what}: {e}"));
    let run = spin.terminate();
    assert_eq!(run.code(), 0, "{}", run.stdout);
    assert!(run.stdout.ends_with("done\n"), "{}", run.stdout);
}

/// SPEC: a probe on a named module that is not loaded stays pending; at
/// exit, a probe that never armed is reported in one warning.
#[test]
fn unknown_module_attach_is_pending() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let pid = spin.pid();
    // A library spin never loads, named by its path.
    let spec = crate::fixtures::in_library("libplug", Variant::Pie, "f");
    let mut rt = Spawned::rtrace_attach(&["-s", &spec, "--json"], pid);
    let attach = wait_event(&mut rt, Duration::from_secs(30), |e| {
        str_field(e, "event") == "attach"
    });
    assert_eq!(attach["pending"], 1, "{attach}");
    assert_eq!(attach["probes"], 0, "{attach}");
    rt.signal(Signal::SIGINT);
    let what = format!("rtrace -p {pid} -s {spec} --json, SIGINT right after the attach event");
    wait_detach(&mut rt, &what);
    let run = rt.wait();
    assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
    let events = parse_events(&run.stderr);
    assert_eq!(of_kind(&events, "detach").len(), 1, "{}", show(&events));
    let warnings = of_kind(&events, "warning");
    assert_eq!(
        warnings.len(),
        1,
        "rtrace -p {pid} -s {spec} --json, then SIGINT: one warning for the probe that never armed\n{}",
        show(&events)
    );
    assert_eq!(str_field(warnings[0], "probe"), spec);
    let run = spin.terminate();
    assert_eq!(run.code(), 0);
}

#[test]
fn empty_spec_is_usage_error() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-s", ""], &prog, &["3"]);
    assert_one_error_line(&run, 2, "rtrace -s '' -- count 3");
    assert_eq!(run.stdout, "");
}

#[test]
fn no_probe_is_usage_error() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&[], &prog, &["3"]);
    assert_one_error_line(&run, 2, "rtrace -- count 3");
    assert_eq!(run.stdout, "");
}

#[test]
fn pid_and_command_is_usage_error() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-p", "1", "-s", "work"], &prog, &["3"]);
    assert_one_error_line(&run, 2, "rtrace -p 1 -s work -- count 3");
    assert_eq!(run.stdout, "");
}

#[test]
fn no_target_is_usage_error() {
    let run = rtrace(&["-s", "work"]);
    assert_one_error_line(&run, 2, "rtrace -s work");
}

#[test]
fn bad_color_is_usage_error() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["--color", "sometimes", "-s", "work"], &prog, &["3"]);
    assert_one_error_line(&run, 2, "rtrace --color sometimes -s work -- count 3");
}

#[test]
fn already_traced_by_another_rtrace() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let pid = spin.pid();
    let mut first = Spawned::rtrace_attach(&["-s", "work", "--json"], pid);
    wait_event(&mut first, Duration::from_secs(30), |e| {
        str_field(e, "event") == "attach"
    });
    let run = rtrace(&["-p", &pid.to_string(), "-s", "work"]);
    let what = format!(
        "second rtrace -p {pid} while rtrace {} traces it",
        first.pid()
    );
    let line = assert_one_error_line(&run, 1, &what);
    assert!(
        line.contains(&first.pid().to_string()),
        "{what}: the message names the tracer pid {}: {line}",
        first.pid()
    );
    // The first tracer is unaffected.
    assert_eq!(tracer_pid(pid), first.pid());
    wait_event(&mut first, Duration::from_secs(30), |e| {
        str_field(e, "event") == "entry"
    });
    first.signal(Signal::SIGINT);
    wait_detach(&mut first, "SIGINT to rtrace");
    let run = first.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    code_matches_files(pid).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spin.terminate().code(), 0);
}

#[test]
fn already_traced_by_strace() {
    if !Path::new("/usr/bin/strace").exists() {
        eprintln!("note: strace not installed, already_traced_by_strace skipped");
        return;
    }
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let pid = spin.pid();
    let mut cmd = Command::new("/usr/bin/strace");
    cmd.args([
        "-o",
        "/dev/null",
        "-e",
        "trace=none",
        "-p",
        &pid.to_string(),
    ]);
    let mut strace = Spawned::command(cmd);
    // strace says "Process N attached" on stderr once it is attached.
    strace.wait_stderr_line(|l| l.contains("attached"));
    let run = rtrace(&["-p", &pid.to_string(), "-s", "work"]);
    let what = format!("rtrace -p {pid} while strace {} traces it", strace.pid());
    let line = assert_one_error_line(&run, 1, &what);
    assert!(
        line.contains(&strace.pid().to_string()),
        "{what}: the message names the tracer pid: {line}"
    );
    strace.signal(Signal::SIGINT);
    strace.wait();
    assert_eq!(spin.terminate().code(), 0);
}

/// A file that cannot be written (`/dev/full`): the error comes while the
/// program runs (a device is written as the events come, not by the
/// thread that writes regular files; more calls than a fast probes' ring
/// holds), rtrace detaches and says so, and the program runs to its end;
/// with 50 calls too, rtrace exits 1.
#[test]
fn output_dev_full_detaches_and_tracee_completes() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(
        &["--json", "-o", "/dev/full", "-s", "work"],
        &prog,
        &[crate::launch::OUTRUN],
    );
    let what = "rtrace --json -o /dev/full -s work -- count 100000";
    assert_ran_on(&run, "No space left on device", "exited with 0", what);
    assert_eq!(
        run.stdout, "sum=10000000000\ntwice=41\n",
        "{what}: the tracee runs to its end"
    );
    let run = run_rtrace(&["--json", "-o", "/dev/full", "-s", "work"], &prog, &["50"]);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert_eq!(run.stdout, "sum=2500\ntwice=41\n");
    assert!(
        run.stderr
            .contains("rtrace: cannot write output: /dev/full: No space left on device"),
        "{}",
        run.stderr
    );
}

#[test]
fn output_dev_full_text_mode() {
    let prog = fixture("count", Variant::Pie);
    // More events than the printer's buffer holds, and than a fast probes'
    // ring holds: the first write, and the error, comes while the program
    // runs traced.
    let run = run_rtrace(
        &["-o", "/dev/full", "-s", "work"],
        &prog,
        &[crate::launch::OUTRUN, "3"],
    );
    let what = "rtrace -o /dev/full -s work -- count 100000 3";
    assert_ran_on(&run, "No space left on device", "exited with 3", what);
    // The attach line, the error, how the program ended: nothing else.
    assert_eq!(run.stderr.lines().count(), 3, "{what}: {}", run.stderr);
    assert_eq!(run.stdout, "sum=10000000000\ntwice=41\n", "{what}");
}

#[test]
fn closed_pipe_detaches_and_tracee_completes() {
    let prog = fixture("count", Variant::Pie);
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    // `timeout` bounds the run: this test cannot use run_command, which
    // captures stderr itself.
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "60"])
        .arg(rtrace_bin())
        .args(["-s", "work", "--"])
        .arg(&prog)
        .arg("50");
    // Events go to stderr, a pipe nobody reads; the tracee's stdout is
    // captured as usual.
    cmd.stderr(Stdio::from(write_end));
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "rtrace -s work -- count 50 with stderr a closed pipe: {:?}",
        out.status
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sum=2500\ntwice=41\n");
}

/// A mistyped option or value gets clap's suggestion on the one usage line,
/// not only "unexpected argument": what strace and cargo users rely on.
#[test]
fn usage_errors_keep_the_suggestion() {
    for (args, line) in [
        (
            &["--entryonly", "-s", "work", "--", "true"][..],
            "rtrace: unexpected argument '--entryonly' found; a similar argument exists: \
             '--entry-only' (see 'rtrace --help')\n",
        ),
        (
            &["--color", "sometimes", "-s", "work", "--", "true"],
            "rtrace: invalid value 'sometimes' for '--color <WHEN>'; possible values: auto, \
             always, never (see 'rtrace --help')\n",
        ),
    ] {
        let mut cmd = Command::new(rtrace_bin());
        cmd.args(args);
        let run = run_command(cmd, TIMEOUT);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr, line, "{args:?}");
    }
}

/// Another tool's breakpoint (an int3 a debugger or a kernel uprobe wrote)
/// at the probed function's first instruction: rtrace says whose it is
/// (the byte in memory differs from the file's), what to do, exits 1, and
/// leaves the process as it found it (the other tool's int3 included). A
/// glob over the program's functions skips that one and says so.
#[test]
fn another_tracers_breakpoint_is_named() {
    let prog = fixture("hot", Variant::NoPie);
    let work = crate::fixtures::symbol_value(&prog, "work");
    let mut cmd = Command::new(&prog);
    cmd.arg("1");
    let mut hot = Spawned::with_stdin(cmd);
    hot.wait_stdout_line(|l| l == "ready");
    let pid = hot.pid();
    let original = crate::fixtures::read_memory(pid, work, 1).expect("read work");
    assert_ne!(original, [0xcc]);
    crate::fixtures::write_memory(pid, work, &[0xcc]).expect("plant an int3");
    for fast in [false, true] {
        let what = format!("fast {fast}");
        let mut args = vec!["-s", "work", "-p"];
        let pid_s = pid.to_string();
        args.push(&pid_s);
        args.push(if fast { "--fast" } else { "--int3" });
        let run = rtrace(&args);
        let line = assert_one_error_line(&run, 1, &what);
        assert_eq!(
            line,
            format!(
                "rtrace: cannot probe {work:#x}: another tracer's breakpoint is there (an int3 \
                 in memory, where {} has {:#04x}): a debugger or a kernel uprobe (perf probe, \
                 bpftrace, SystemTap) owns this address (remove that breakpoint (delete it in \
                 the debugger, `perf probe -d`, or end the bpftrace program) and run rtrace \
                 again, or probe another instruction)",
                prog.display(),
                original[0]
            ),
            "{what}"
        );
        assert_eq!(tracer_pid(pid), 0, "{what}");
        assert_eq!(
            crate::fixtures::read_memory(pid, work, 1).unwrap(),
            [0xcc],
            "{what}: the other tool's breakpoint stays"
        );
    }
    // A glob: the other functions are probed, that one skipped, named.
    let mut rtrace_glob = Spawned::command({
        let mut c = Command::new(rtrace_bin());
        c.args(["-s", "hot:w*", "-s", "main", "-p", &pid.to_string()]);
        c
    });
    let warning = rtrace_glob.wait_stderr_line(|l| l.starts_with("rtrace: warning: probe hot:w* "));
    assert_eq!(
        warning,
        "rtrace: warning: probe hot:w* skipped 1 function: 1 where another tracer's breakpoint \
         is (a debugger's or a kernel uprobe's): work"
    );
    rtrace_glob.wait_stderr_line(|l| l.starts_with("rtrace: attached to pid "));
    rtrace_glob.signal(Signal::SIGINT);
    let run = rtrace_glob.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(tracer_pid(pid), 0);
    crate::fixtures::write_memory(pid, work, &original).expect("take the int3 back");
    hot.send("start\ngo\n");
    let done = hot.wait_stdout_line(|l| l.starts_with("calls="));
    assert_eq!(done, "calls=1000 sum=1000000");
    assert_eq!(hot.wait().code(), 0);
}

/// Processes no privilege lets rtrace trace are named for what they are,
/// not met with "run as root": rtrace itself (`sh -c 'exec rtrace -p $$'`)
/// and a kernel thread (the first process whose status says `Kthread: 1`,
/// or whose parent is 0 and that is not init).
#[test]
fn untraceable_processes_are_named() {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec {} -s work -p $$", rtrace_bin().display()));
    let run = run_command(cmd, TIMEOUT);
    let line = assert_one_error_line(&run, 1, "rtrace -p its own pid");
    assert!(
        line.starts_with("rtrace: cannot trace pid ")
            && line
                .ends_with(": it is rtrace itself (attach to a user process: `ps -e` lists them)"),
        "{line}"
    );
    let kthread = fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().any(|l| l == "Kthread:\t1")
                || (*pid != 1 && status.lines().any(|l| l == "PPid:\t0"))
        })
        .expect("a kernel thread");
    let run = rtrace(&["-s", "work", "-p", &kthread.to_string()]);
    let line = assert_one_error_line(&run, 1, "rtrace -p a kernel thread");
    assert_eq!(
        line,
        format!(
            "rtrace: cannot trace pid {kthread}: it is a kernel thread (attach to a user \
             process: `ps -e` lists them)"
        )
    );
    // A zombie: this test's child, exited and not reaped yet.
    let mut child = Command::new("true").spawn().expect("run true");
    let pid = child.id() as i32;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while crate::fixtures::process_state(pid) != Some('Z') {
        assert!(std::time::Instant::now() < deadline, "true never ended");
        std::thread::sleep(Duration::from_millis(2));
    }
    let run = rtrace(&["-s", "work", "-p", &pid.to_string()]);
    let line = assert_one_error_line(&run, 1, "rtrace -p a zombie");
    assert_eq!(
        line,
        format!(
            "rtrace: cannot trace pid {pid}: it is a zombie: it has exited, and waits for its \
             parent to reap it (attach to a user process: `ps -e` lists them)"
        )
    );
    child.wait().expect("reap it");
}

/// A file of rtrace's output that cannot be written is named in the error
/// (`-o`, `--perfetto`, `--folded`, `--flamegraph`), not only "output";
/// the program runs to its end as untraced, and rtrace exits 1.
#[test]
fn write_failures_name_the_file() {
    let prog = fixture("count", Variant::Pie);
    for args in [
        &["-o", "/dev/full"][..],
        &["-c", "--perfetto", "/dev/full"],
        &["-c", "--folded", "/dev/full"],
        &["-c", "--flamegraph", "/dev/full"],
    ] {
        let mut all = args.to_vec();
        all.extend(["-s", "work"]);
        let run = run_rtrace(&all, &prog, &["50"]);
        assert_eq!(run.code(), 1, "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "sum=2500\ntwice=41\n", "{args:?}");
        assert!(
            run.stderr.lines().any(|l| l
                == "rtrace: cannot write output: /dev/full: No space left on device (os error 28)"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

/// A program of another kind than rtrace traces is said to be so, not
/// called corrupt: a 32-bit ELF file (here `true` with its class byte made
/// ELFCLASS32) is refused with one line, exit status 1.
#[test]
fn a_32_bit_program_is_named_for_what_it_is() {
    let path = temp_path("true32");
    let mut bytes = std::fs::read("/bin/true").expect("/bin/true");
    bytes[4] = 1; // EI_CLASS: ELFCLASS32
    std::fs::write(&path, bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["-s", "main", "--"]).arg(&path);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "rtrace: {}: a 32-bit ELF file: rtrace traces 64-bit x86-64 programs only (trace its \
             x86-64 build; `file PROGRAM` says what a program is built for)\n",
            path.display()
        )
    );
}
