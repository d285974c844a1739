//! Return probes in the cases that break naive ones: deep recursion,
//! longjmp, C++ exceptions, tail calls, a program walking its own stack.
//! The program must behave exactly as untraced, and exactly the calls that
//! return must be reported as returning, with their values.

use serde_json::Value;

use crate::events::{
    assert_same_as_untraced, of_kind, of_symbol, retvals, show, str_field, trace_json,
};
use crate::fixtures::{fixture, run_untraced, Variant};

/// The return events, in order, as (symbol, retval).
fn returns(events: &[Value]) -> Vec<(String, i64)> {
    events
        .iter()
        .filter(|e| str_field(e, "event") == "return")
        .map(|e| {
            (
                str_field(e, "symbol").to_string(),
                e["retval"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn recursion_ten_thousand_deep() {
    let prog = fixture("deep", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "depth=10000\n");
    let (run, events) = trace_json("deep_10000", &["-s", "depth"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "rtrace -s depth -- deep");
    assert_eq!(of_symbol(&events, "entry", "depth").len(), 10001);
    // Innermost first: depth(0) = 0 up to depth(10000) = 10000.
    let expected: Vec<i64> = (0..=10000).collect();
    assert_eq!(retvals(&events, "depth"), expected);
}

#[test]
fn longjmp_out_of_probed_calls_drops_them() {
    let prog = fixture("longjmper", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    let (run, events) = trace_json("longjmp", &["-s", "escape", "-s", "work"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "longjmper");
    // 3 rounds of escape(3) → … → escape(0), which longjmps out of all four.
    assert_eq!(
        of_symbol(&events, "entry", "escape").len(),
        12,
        "{}",
        show(&events)
    );
    assert_eq!(retvals(&events, "escape"), Vec::<i64>::new());
    assert_eq!(retvals(&events, "work"), vec![15]);
}

const THROWER_PROBES: [&str; 5] = [
    "_Z5inneri",
    "_Z6middlei",
    "_Z5outeri",
    "_Z9rethroweri",
    "_Z6outer2i",
];

#[test]
fn exceptions_through_return_probes() {
    for variant in Variant::ALL {
        let prog = fixture("thrower", variant);
        let untraced = run_untraced(&prog, &[]);
        assert_eq!(
            untraced.stdout,
            "outer=-1,3,5,-1,9,11\ncleanups=6\nrethrown=2\n"
        );
        let mut args = Vec::new();
        for p in THROWER_PROBES {
            args.extend(["-s", p]);
        }
        let (run, events) = trace_json(&format!("thrower_{variant}"), &args, &prog, &[]);
        assert_same_as_untraced(&run, &untraced, &format!("thrower ({variant})"));
        // Probed by their mangled names, shown demangled.
        let entries = |s| of_symbol(&events, "entry", s).len();
        assert_eq!(entries("outer(int)"), 6);
        assert_eq!(entries("middle(int)"), 6);
        assert_eq!(entries("inner(int)"), 9);
        assert_eq!(entries("outer2(int)"), 3);
        // Unwound calls (inner of 0, 3, 6 and the middle and rethrower
        // frames above them) never return; the catching ones do.
        let int = |v: &[i64]| v.iter().map(|&x| x as i32 as i64).collect::<Vec<_>>();
        assert_eq!(
            int(&retvals(&events, "outer(int)")),
            vec![-1, 3, 5, -1, 9, 11]
        );
        assert_eq!(retvals(&events, "middle(int)"), vec![3, 5, 9, 11]);
        assert_eq!(retvals(&events, "inner(int)"), vec![2, 4, 8, 10, 2]);
        assert_eq!(retvals(&events, "rethrower(int)"), vec![2]);
        assert_eq!(retvals(&events, "outer2(int)"), vec![1, 1, 2]);
    }
}

/// A program with libstdc++ and the unwinder linked in and every symbol of
/// theirs stripped: no unwinder entry can be hooked, so returns are watched
/// at their return sites from the start, and the exceptions are caught as
/// untraced (the trampoline would make the unwinder call terminate).
#[test]
fn exceptions_in_a_stripped_program_with_its_own_unwinder() {
    use crate::events::temp_path;
    use crate::fixtures::source_dir;
    let prog = temp_path("thrower_static_unwinder");
    let src = source_dir().join("thrower.cpp");
    let status = std::process::Command::new("g++")
        .args(["-O0", "-rdynamic", "-static-libstdc++", "-static-libgcc"])
        .arg("-Wl,--exclude-libs,ALL")
        .arg(format!("-I{}", source_dir().display()))
        .arg(&src)
        .arg("-o")
        .arg(&prog)
        .status()
        .expect("run g++");
    assert!(status.success());
    let status = std::process::Command::new("strip")
        .arg("--strip-all")
        .arg(&prog)
        .status()
        .expect("run strip");
    assert!(status.success());
    let nm = std::process::Command::new("nm")
        .arg("-D")
        .arg(&prog)
        .output()
        .unwrap();
    let dynsym = String::from_utf8_lossy(&nm.stdout);
    assert!(dynsym.contains(" _Z5inneri"), "{dynsym}");
    assert!(!dynsym.contains("_Unwind_RaiseException"), "{dynsym}");

    let untraced = run_untraced(&prog, &[]);
    assert_eq!(
        untraced.stdout,
        "outer=-1,3,5,-1,9,11\ncleanups=6\nrethrown=2\n"
    );
    let mut args = Vec::new();
    for p in THROWER_PROBES {
        args.extend(["-s", p]);
    }
    let (run, events) = trace_json("thrower_static_unwinder", &args, &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "thrower with its own unwinder");
    assert_eq!(
        retvals(&events, "middle(int)"),
        vec![3, 5, 9, 11],
        "{}",
        show(&events)
    );
    assert_eq!(retvals(&events, "inner(int)"), vec![2, 4, 8, 10, 2]);
    assert_eq!(retvals(&events, "outer2(int)"), vec![1, 1, 2]);

    // With --fast, no detour may swap a return address where no unwinder
    // can be hooked: those probes stay int3, and say why.
    let mut fast = vec!["--fast"];
    fast.extend(&args);
    let (run, events) = trace_json("thrower_static_unwinder_fast", &fast, &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "thrower with its own unwinder, --fast");
    assert_eq!(retvals(&events, "middle(int)"), vec![3, 5, 9, 11]);
    for e in of_kind(&events, "probe") {
        assert_eq!(str_field(e, "mode"), "int3", "{e}");
        assert!(e["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("unwinder could not be found")));
    }
}

/// With fewer functions probed, no probed frame catches: the calls the
/// exception unwinds are still dropped, at -O0 and -O2 alike.
#[test]
fn exceptions_through_probes_that_do_not_catch() {
    for variant in [Variant::Pie, Variant::O2, Variant::Static] {
        let prog = fixture("thrower", variant);
        let untraced = run_untraced(&prog, &[]);
        let args = ["-s", "_Z5inneri", "-s", "_Z6middlei"];
        let (run, events) = trace_json(&format!("thrower_some_{variant}"), &args, &prog, &[]);
        assert_same_as_untraced(&run, &untraced, &format!("thrower ({variant})"));
        assert_eq!(of_symbol(&events, "entry", "inner(int)").len(), 9);
        assert_eq!(
            retvals(&events, "inner(int)"),
            vec![2, 4, 8, 10, 2],
            "{variant}: {}",
            show(&events)
        );
        assert_eq!(
            retvals(&events, "middle(int)"),
            vec![3, 5, 9, 11],
            "{variant}"
        );
    }
}

/// The caller catches what its callee threw and calls it again from the
/// same place: the unwound call is never taken for a return, though the
/// caller's stack pointer is where a return would leave it.
#[test]
fn exceptions_caught_by_the_caller_in_a_loop() {
    for variant in Variant::ALL {
        let prog = fixture("catcher", variant);
        let untraced = run_untraced(&prog, &[]);
        let (run, events) = trace_json(
            &format!("catcher_{variant}"),
            &["-s", "_Z1fi", "-s", "_Z6calleri"],
            &prog,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, &format!("catcher ({variant})"));
        assert_eq!(of_symbol(&events, "entry", "f(int)").len(), 6, "{variant}");
        assert_eq!(
            retvals(&events, "f(int)"),
            vec![10, 30, 50],
            "{variant}: {}",
            show(&events)
        );
        assert_eq!(retvals(&events, "caller(int)"), vec![87], "{variant}");
    }
}

/// swapcontext moves a thread between two stacks with calls in flight on
/// each: a return on one leaves the other's calls alone.
#[test]
fn calls_in_flight_on_two_stacks() {
    for variant in [Variant::Pie, Variant::O2, Variant::Static] {
        let prog = fixture("coroutine", variant);
        let untraced = run_untraced(&prog, &[]);
        let (run, events) = trace_json(
            &format!("coroutine_{variant}"),
            &["-s", "resume_co", "-s", "co_yield_in", "-s", "co_body"],
            &prog,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, &format!("coroutine ({variant})"));
        assert_eq!(
            retvals(&events, "resume_co"),
            vec![0, 2, 4, 6],
            "{}",
            show(&events)
        );
        assert_eq!(
            retvals(&events, "co_yield_in"),
            vec![1, 2, 3],
            "{}",
            show(&events)
        );
        assert_eq!(of_symbol(&events, "return", "co_body").len(), 1);
        // swapcontext itself saves its return address for a later jump: it is
        // probed entry-only, and the program is unharmed.
        let (run, events) = trace_json(
            &format!("swapcontext_{variant}"),
            &["-s", "swapcontext", "-s", "resume_co"],
            &prog,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, &format!("swapcontext ({variant})"));
        // Four from resume_co, three from co_yield_in.
        assert_eq!(of_symbol(&events, "entry", "swapcontext").len(), 7);
        assert!(of_symbol(&events, "return", "swapcontext").is_empty());
        assert_eq!(retvals(&events, "resume_co"), vec![0, 2, 4, 6]);
    }
}

/// setjmp returns twice: probed by name it is entry-only, and longjmp back
/// into it harms nothing.
#[test]
fn setjmp_named_alone_is_entry_only() {
    let prog = fixture("longjmper", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    let (run, events) = trace_json(
        "setjmp_alone",
        &["-s", "_setjmp", "-s", "escape"],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "setjmp probed");
    // Three rounds, and the one glibc's start code makes before main (its
    // thread-cancellation buffer).
    assert_eq!(
        of_symbol(&events, "entry", "_setjmp").len(),
        4,
        "{}",
        show(&events)
    );
    assert!(of_symbol(&events, "return", "_setjmp").is_empty());
}

/// A call longjmp abandoned shares its slot with the live call made since
/// from another call site of the same frame: the live call returns where it
/// should, and a fork inside it gives the child the live return address.
#[test]
fn a_live_call_in_the_slot_of_an_abandoned_one() {
    for variant in [Variant::Pie, Variant::O2] {
        let prog = fixture("stalejmp", variant);
        let untraced = run_untraced(&prog, &["0"]);
        let probes = ["-s", "jump_away", "-s", "nap", "-s", "forker", "-s", "step"];
        let (run, events) = trace_json(&format!("stale_{variant}"), &probes, &prog, &["0"]);
        assert_same_as_untraced(&run, &untraced, &format!("stalejmp 0 ({variant})"));
        assert_eq!(of_symbol(&events, "entry", "jump_away").len(), 1);
        assert!(of_symbol(&events, "return", "jump_away").is_empty());
        assert_eq!(retvals(&events, "nap"), vec![42], "{}", show(&events));
        assert_eq!(of_symbol(&events, "return", "step").len(), 1);

        let untraced = run_untraced(&prog, &["1"]);
        assert_eq!(untraced.stdout, "ready\nchild ok\nparent=105\nend\n");
        let (run, events) = trace_json(&format!("stale_fork_{variant}"), &probes, &prog, &["1"]);
        assert_same_as_untraced(&run, &untraced, &format!("stalejmp 1 ({variant})"));
        assert_eq!(retvals(&events, "forker"), vec![105], "{}", show(&events));
        let mut follow = vec!["-f"];
        follow.extend(probes);
        let (run, events) = trace_json(&format!("stale_follow_{variant}"), &follow, &prog, &["1"]);
        assert_same_as_untraced(&run, &untraced, &format!("stalejmp 1 -f ({variant})"));
        let mut forker = retvals(&events, "forker");
        forker.sort();
        assert_eq!(forker, vec![7, 105], "{}", show(&events));
    }
}

/// Detach while the live call is in flight in the slot of an abandoned one:
/// the slot gets the live call's return address back, not the other's.
#[test]
fn detach_with_a_live_call_in_the_slot_of_an_abandoned_one() {
    use crate::attach::{tracer_pid, wait_detach, wait_event};
    use crate::fixtures::{code_matches_files, Spawned};
    use std::time::Duration;

    let prog = fixture("stalejmp", Variant::Pie);
    let stale = Spawned::start(&prog, &["0", "3"]);
    let pid = stale.pid();
    let mut rtrace = Spawned::rtrace_attach(&["--json", "-s", "jump_away", "-s", "nap"], pid);
    wait_event(&mut rtrace, Duration::from_secs(30), |e| {
        str_field(e, "event") == "attach"
    });
    stale.signal(nix::sys::signal::Signal::SIGUSR1);
    wait_event(&mut rtrace, Duration::from_secs(30), |e| {
        str_field(e, "event") == "entry" && str_field(e, "symbol") == "nap"
    });
    rtrace.signal(nix::sys::signal::Signal::SIGINT);
    wait_detach(&mut rtrace, "detach inside nap");
    let run = rtrace.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    code_matches_files(pid).unwrap_or_else(|e| panic!("after detach: {e}"));
    assert_eq!(tracer_pid(pid), 0);
    let run = stale.wait();
    assert_eq!(run.stdout, "ready\nnapped=42 naps=1\nend\n", "{run:?}");
    assert_eq!(run.code(), 0);
}

#[test]
fn tail_call_reports_both_returns() {
    let prog = fixture("tailcall", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "tail=106,108,101\n");
    let (run, events) = trace_json("tailcall", &["-s", "mid", "-s", "leaf"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "tailcall");
    let expected: Vec<(String, i64)> = [
        ("leaf", 106),
        ("mid", 106),
        ("leaf", 108),
        ("mid", 108),
        ("leaf", 101),
    ]
    .iter()
    .map(|(s, v)| (s.to_string(), *v))
    .collect();
    assert_eq!(returns(&events), expected, "{}", show(&events));
}

#[test]
fn backtrace_inside_probed_functions_sees_real_frames() {
    for variant in [Variant::Pie, Variant::Static] {
        let prog = fixture("backtracer", variant);
        let untraced = run_untraced(&prog, &[]);
        assert!(untraced.stdout.starts_with("frames="), "{untraced:?}");
        let (run, events) = trace_json(
            &format!("backtracer_{variant}"),
            &["-s", "level1", "-s", "level2"],
            &prog,
            &[],
        );
        assert_same_as_untraced(&run, &untraced, &format!("backtracer ({variant})"));
        assert_eq!(retvals(&events, "level2"), vec![2]);
        assert_eq!(retvals(&events, "level1"), vec![3]);
    }
}

/// Detach while four threads are inside a probed function that sleeps: every
/// rewritten return address gets its original back, the code is the files',
/// and every call returns where it should: the program finishes with the
/// total it computes untraced.
#[test]
fn detach_with_calls_in_flight_on_four_threads() {
    use crate::attach::{tracer_pid, wait_detach, wait_event};
    use crate::fixtures::{code_matches_files, Spawned};
    use std::collections::BTreeSet;
    use std::time::Duration;

    let prog = fixture("sleepers", Variant::Pie);
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        // (150 naps of 20 ms: the program runs on for seconds after the
        // detach, while its code is checked, on a busy machine too.)
        let sleepers = Spawned::start(&prog, &["4", "150"]);
        let pid = sleepers.pid();
        let mut rtrace = Spawned::rtrace_attach(&["-s", "nap", "--json"], pid);
        let mut tids = BTreeSet::new();
        while tids.len() < 4 {
            let e = wait_event(&mut rtrace, Duration::from_secs(30), |e| {
                str_field(e, "event") == "entry"
            });
            tids.insert(e["tid"].as_i64().unwrap());
        }
        // Each thread is now inside nap (sleeping) or about to return.
        rtrace.signal(signal);
        wait_detach(&mut rtrace, "detach with calls in flight");
        let run = rtrace.wait();
        assert_eq!(run.code(), 0, "{}", run.stderr);
        code_matches_files(pid).unwrap_or_else(|e| panic!("after detach: {e}"));
        assert_eq!(tracer_pid(pid), 0);
        let run = sleepers.wait();
        assert_eq!(run.stdout, "ready\ntotal=644700\n", "{run:?}");
        assert_eq!(run.code(), 0);
    }
}

/// fork() inside a probed call: without -f the child gets the original
/// return address back and runs on untraced; with -f it is traced with its
/// own copy of the call in flight, whose return is reported under its pid.
#[test]
fn fork_while_a_call_is_in_flight() {
    let prog = fixture("forkin", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "child=18 work=3\n");

    let (run, events) = trace_json(
        "forkin_nofollow",
        &["-s", "spawn", "-s", "work"],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "forkin without -f");
    let parent = events[0]["pid"].as_i64().unwrap();
    assert!(events
        .iter()
        .all(|e| e.get("pid").is_none_or(|p| p.as_i64() == Some(parent))));
    assert_eq!(retvals(&events, "work"), vec![3]);
    assert_eq!(retvals(&events, "spawn").len(), 1);

    let (run, events) = trace_json(
        "forkin_follow",
        &["-f", "-s", "spawn", "-s", "work"],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "forkin with -f");
    let parent = events[0]["pid"].as_i64().unwrap();
    let of_pid = |symbol: &str, pid: i64| -> Vec<i64> {
        of_symbol(&events, "return", symbol)
            .iter()
            .filter(|e| e["pid"].as_i64() == Some(pid))
            .map(|e| e["retval"].as_i64().unwrap())
            .collect()
    };
    let forks: Vec<&Value> = events
        .iter()
        .filter(|e| str_field(e, "event") == "fork")
        .collect();
    assert_eq!(forks.len(), 1, "{}", show(&events));
    let child = forks[0]["child"].as_i64().unwrap();
    assert_eq!(of_pid("spawn", child), vec![7]);
    assert_eq!(of_pid("spawn", parent), vec![child]);
    assert_eq!(of_pid("work", child), vec![11]);
    assert_eq!(of_pid("work", parent), vec![3]);
}

/// In Go code (a `.go.buildinfo` section) return addresses are never
/// rewritten: goroutine stacks move and change threads, so Go functions are
/// probed entry-only, with one warning. The function that reads its own
/// return address sees the real one.
#[test]
fn go_code_keeps_its_return_addresses() {
    let built = fixture("retaddr", Variant::Pie);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("it");
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("go_buildinfo");
    std::fs::write(&marker, b"\xff Go buildinf:go1.22").unwrap();
    let prog = dir.join("retaddr_go");
    let out = std::process::Command::new("objcopy")
        .arg(format!("--add-section=.go.buildinfo={}", marker.display()))
        .arg(&built)
        .arg(&prog)
        .output()
        .expect("run objcopy");
    assert!(out.status.success(), "{out:?}");
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "inside=3\n");
    let (run, events) = trace_json("retaddr_go", &["-s", "check"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "retaddr with .go.buildinfo");
    assert_eq!(of_symbol(&events, "entry", "check").len(), 3);
    assert!(of_symbol(&events, "return", "check").is_empty());
    let warnings: Vec<&str> = events
        .iter()
        .filter(|e| str_field(e, "event") == "warning")
        .map(|e| str_field(e, "message"))
        .collect();
    assert_eq!(
        warnings,
        [
            "probe check: Go code: entries only (a goroutine's stack moves and it changes \
          threads, so its returns cannot be watched)"
        ]
    );
}

/// The same cases with `--fast`: the detours swap the return addresses for
/// the fast return stub, and every probe must be patched (no int3 probe
/// stands in for one).
mod fast {
    use crate::events::with_fast;

    macro_rules! through_detours {
        ($($name:ident),* $(,)?) => {
            $(
                #[test]
                fn $name() {
                    with_fast(super::$name);
                }
            )*
        };
    }

    through_detours!(
        recursion_ten_thousand_deep,
        longjmp_out_of_probed_calls_drops_them,
        exceptions_through_return_probes,
        exceptions_through_probes_that_do_not_catch,
        exceptions_caught_by_the_caller_in_a_loop,
        calls_in_flight_on_two_stacks,
        a_live_call_in_the_slot_of_an_abandoned_one,
        detach_with_a_live_call_in_the_slot_of_an_abandoned_one,
        tail_call_reports_both_returns,
        backtrace_inside_probed_functions_sees_real_frames,
        detach_with_calls_in_flight_on_four_threads,
        fork_while_a_call_is_in_flight,
    );
}

// One stop per call: an int3 probe's return recorded by the return stub.

/// What a [`Watcher`] saw: entries, returns (with their values), and the
/// returns at which the thread's memory could be read (a stop).
#[derive(Default)]
struct Calls {
    entries: u64,
    retvals: Vec<i64>,
    live: u64,
}

/// Counts the calls of its probe; `how` is its answer to
/// `Handler::returns` (None: the default).
struct Watcher {
    calls: std::rc::Rc<std::cell::RefCell<Calls>>,
    how: Option<rtrace::Returns>,
}

impl rtrace::Handler for Watcher {
    fn on_entry(&mut self, _: &mut rtrace::Hit<'_>) -> rtrace::Result<()> {
        self.calls.borrow_mut().entries += 1;
        Ok(())
    }
    fn on_return(&mut self, ret: &mut rtrace::Return<'_>) -> rtrace::Result<()> {
        let mut c = self.calls.borrow_mut();
        c.retvals.push(ret.retval());
        // The word under the stack pointer: readable only at a stop (a
        // record holds no stack).
        let sp = rtrace::RuntimeAddr(ret.regs().sp());
        if ret.read_u64(sp).is_ok() {
            c.live += 1;
        }
        Ok(())
    }
    fn fast(&mut self, _: &rtrace::Site, _: Option<&rtrace::symbols::Module>) -> rtrace::Fast {
        rtrace::Fast::Yes(rtrace::Capture::nothing())
    }
    fn returns(
        &mut self,
        site: &rtrace::Site,
        module: Option<&rtrace::symbols::Module>,
    ) -> rtrace::Returns {
        match self.how {
            Some(how) => how,
            None => {
                // The trait's default, from `fast`.
                struct Default;
                impl rtrace::Handler for Default {
                    fn fast(
                        &mut self,
                        _: &rtrace::Site,
                        _: Option<&rtrace::symbols::Module>,
                    ) -> rtrace::Fast {
                        rtrace::Fast::Yes(rtrace::Capture::nothing())
                    }
                }
                Default.returns(site, module)
            }
        }
    }
}

/// Runs `count N` with a [`Watcher`] per entry of `how` on `work`, int3
/// probes whose returns are seen `mode`: what each saw, and the stops.
fn watched(n: u32, mode: rtrace::ReturnMode, how: &[Option<rtrace::Returns>]) -> (Vec<Calls>, u64) {
    let opts = rtrace::Options {
        returns: mode,
        ..rtrace::Options::default()
    };
    watched_with(n, opts, how)
}

/// [`watched`] with the tracer's options given.
fn watched_with(
    n: u32,
    opts: rtrace::Options,
    how: &[Option<rtrace::Returns>],
) -> (Vec<Calls>, u64) {
    let how = how.to_vec();
    crate::fixtures::bounded(move |session| {
        let mut cmd = std::process::Command::new(fixture("count", Variant::Pie));
        cmd.arg(n.to_string());
        let mut tracer = session.launch(&cmd, opts).expect("launch");
        let seen: Vec<_> = how
            .iter()
            .map(|&how| {
                let calls = std::rc::Rc::new(std::cell::RefCell::new(Calls::default()));
                let w = Watcher {
                    calls: calls.clone(),
                    how,
                };
                tracer.add_probe("work".parse().unwrap(), w).unwrap();
                calls
            })
            .collect();
        assert_eq!(tracer.run().expect("run"), rtrace::Outcome::Exited(0));
        let stops = tracer.stops();
        drop(tracer);
        let seen = seen
            .into_iter()
            .map(|c| std::rc::Rc::try_unwrap(c).ok().unwrap().into_inner())
            .collect();
        (seen, stops)
    })
}

/// work(i) = 2i + 1 for i = 0..n.
fn work_values(n: u32) -> Vec<i64> {
    (0..i64::from(n)).map(|i| 2 * i + 1).collect()
}

/// A call an int3 probe stops at the entry of costs one stop when its
/// return is recorded by the return stub, two with `--returns stop`
/// (counted by the tracer, not timed): between 100 and 2,100 calls the
/// stops grow by exactly 2,000 and 4,000. Every call is seen, with its
/// value, either way.
#[test]
fn an_int3_call_costs_one_stop_with_the_return_stub_and_two_without() {
    for (mode, per_call) in [(rtrace::ReturnMode::Stub, 1), (rtrace::ReturnMode::Stop, 2)] {
        let (small, small_stops) = watched(100, mode, &[None]);
        let (big, big_stops) = watched(2100, mode, &[None]);
        assert_eq!(small[0].entries, 100, "{mode:?}");
        assert_eq!(small[0].retvals, work_values(100), "{mode:?}");
        assert_eq!(big[0].entries, 2100, "{mode:?}");
        assert_eq!(big[0].retvals, work_values(2100), "{mode:?}");
        assert_eq!(
            big_stops - small_stops,
            per_call * 2000,
            "{mode:?}: {small_stops} stops for 100 calls, {big_stops} for 2100"
        );
        // Recorded returns hold no memory; a stop's are live.
        let live = match mode {
            rtrace::ReturnMode::Stub => 0,
            rtrace::ReturnMode::Stop => 2100,
        };
        assert_eq!(big[0].live, live, "{mode:?}");
    }
}

/// A fast site patched at its first hit (`Options::first_hit`): the first
/// call is an int3 stop (one stop more than the same run with the site
/// patched when armed), and every later call takes the jump (between 100
/// and 2,100 calls the stops do not grow). Every call is seen, with its
/// value, either way.
#[test]
fn a_site_patched_at_its_first_hit_stops_once() {
    let opts = |first_hit| rtrace::Options {
        fast: true,
        first_hit,
        ..rtrace::Options::default()
    };
    let mut stops = Vec::new();
    for first_hit in [false, true] {
        let (small, small_stops) = watched_with(100, opts(first_hit), &[None]);
        let (big, big_stops) = watched_with(2100, opts(first_hit), &[None]);
        assert_eq!(small[0].entries, 100, "first_hit {first_hit}");
        assert_eq!(small[0].retvals, work_values(100), "first_hit {first_hit}");
        assert_eq!(big[0].entries, 2100, "first_hit {first_hit}");
        assert_eq!(big[0].retvals, work_values(2100), "first_hit {first_hit}");
        assert_eq!(
            big_stops, small_stops,
            "first_hit {first_hit}: {small_stops} stops for 100 calls, {big_stops} for 2100"
        );
        stops.push(small_stops);
    }
    assert_eq!(
        stops[1],
        stops[0] + 1,
        "patched when armed, at its first hit: {stops:?}"
    );
}

/// A handler that asks for a stop at the return (`Returns::Stop`) gets it,
/// and the thread's memory there; a handler on the same probe that would
/// take records gets the same returns, at the same stops. Alone, the second
/// takes records.
#[test]
fn a_handler_that_asks_for_a_stop_at_the_return_gets_it() {
    let (seen, stops_small) = watched(
        100,
        rtrace::ReturnMode::Stub,
        &[Some(rtrace::Returns::Stop), None],
    );
    let (seen_big, stops_big) = watched(
        1100,
        rtrace::ReturnMode::Stub,
        &[Some(rtrace::Returns::Stop), None],
    );
    for (s, n) in [(&seen, 100), (&seen_big, 1100)] {
        for (i, c) in s.iter().enumerate() {
            assert_eq!(c.entries, u64::from(n), "handler {i}");
            assert_eq!(c.retvals, work_values(n), "handler {i}");
            assert_eq!(c.live, u64::from(n), "handler {i}: returns at a stop");
        }
    }
    assert_eq!(stops_big - stops_small, 2 * 1000);
    let (alone, _) = watched(100, rtrace::ReturnMode::Stub, &[None]);
    assert_eq!(alone[0].retvals, work_values(100));
    assert_eq!(alone[0].live, 0);
}

/// The attach line says how returns are seen (`--returns`, else
/// `RTRACE_RETURNS`, else stub), and so does the JSON attach event; with no
/// return probe, nothing is said. A bad `RTRACE_RETURNS` is a usage error.
#[test]
fn the_attach_line_says_how_returns_are_seen() {
    use crate::fixtures::{rtrace_bin, run_command, TIMEOUT};
    // (The suite may run with RTRACE_RETURNS set: each run says its own.)
    let run_rtrace_env =
        |args: &[&str], prog: &std::path::Path, prog_args: &[&str], env: &[(&str, &str)]| {
            let mut cmd = std::process::Command::new(rtrace_bin());
            cmd.env_remove("RTRACE_RETURNS")
                .envs(env.iter().copied())
                .args(args)
                .arg("--")
                .arg(prog)
                .args(prog_args);
            run_command(cmd, TIMEOUT)
        };
    let prog = fixture("count", Variant::Pie);
    let attach = |stderr: &str| stderr.lines().next().unwrap_or("").to_string();
    for (args, env, says) in [
        (&["--returns", "stub"][..], None, Some("stub")),
        (&["--returns", "stop"][..], None, Some("stop")),
        (&[][..], Some("stop"), Some("stop")),
        (&[][..], Some("stub"), Some("stub")),
        (&["--returns", "stub"][..], Some("stop"), Some("stub")),
        (&["--entry-only"][..], None, None),
    ] {
        let mut all = vec!["-s", "work", "--color", "never"];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = env.map(|v| ("RTRACE_RETURNS", v)).into_iter().collect();
        let run = run_rtrace_env(&all, &prog, &["2"], &env);
        assert_eq!(run.code(), 0, "{all:?} {env:?}: {}", run.stderr);
        let line = attach(&run.stderr);
        let expect = match says {
            Some(how) => format!(", 1 probe armed, returns: {how}"),
            None => ", 1 probe armed".into(),
        };
        assert!(line.ends_with(&expect), "{all:?} {env:?}: {line}");
        all.push("--json");
        let run = run_rtrace_env(&all, &prog, &["2"], &env);
        let event: Value = serde_json::from_str(&attach(&run.stderr)).unwrap();
        assert_eq!(event["returns"].as_str(), says, "{all:?} {env:?}: {event}");
    }
    let run = run_rtrace_env(
        &["-s", "work"],
        &prog,
        &["2"],
        &[("RTRACE_RETURNS", "sometimes")],
    );
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "rtrace: RTRACE_RETURNS=\"sometimes\" is not a way to see returns; set it to stub or stop (see 'rtrace --help')\n"
    );
}

/// A thread's return recorded by the stub is reported before the signal
/// the thread then gets (signals: work(1) returns, then SIGUSR1 comes):
/// every line whole, none cut by the signal's.
#[test]
fn a_return_is_reported_before_the_signal_that_follows_it() {
    let prog = fixture("signals", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    let run =
        crate::fixtures::run_rtrace(&["--color", "never", "-s", "in_handler,work"], &prog, &[]);
    assert_eq!(run.code(), untraced.code(), "{}", run.stderr);
    assert_eq!(run.stdout, untraced.stdout);
    let text = crate::fixtures::normalize(&run.stderr);
    assert!(!text.contains("resumed"), "{text}");
    let works: Vec<&str> = text.lines().filter(|l| l.contains("work(")).collect();
    assert!(!works.is_empty(), "{text}");
    for (i, line) in works.iter().enumerate() {
        let x = i + 1;
        assert_eq!(
            *line,
            format!("[pid N] work(x={x}) = {} <T>", 2 * x + 1),
            "{text}"
        );
    }
}
