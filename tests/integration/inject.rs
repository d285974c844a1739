//! Fault injection (`--inject`): the program sees exactly the configured
//! failure (return value and errno) at exactly the calls `when=` names, the
//! skipped function's body does not run, and the output marks those calls.

use std::path::Path;

use crate::events::{assert_one_error_line, of_symbol, show, trace_json};
use crate::fixtures::{fixture, run_rtrace, Variant};

/// What `answer` does: returns 21 untouched, or the injected 42 with its
/// body skipped, or 42 with its first instruction run.
#[derive(Clone, Copy)]
enum Answer {
    Untouched,
    Skipped,
    FirstInsnRan,
}

/// The stdout of `injectee PATH n` when the calls in `failing` fail with
/// ENOENT and `answer` behaves as said.
fn expected(n: usize, failing: &[usize], answer: Answer) -> String {
    let mut s = String::new();
    for i in 1..=n {
        if failing.contains(&i) {
            s.push_str(&format!("openat {i}: -1 errno=ENOENT\n"));
        } else {
            s.push_str(&format!("openat {i}: ok\n"));
        }
    }
    let (answer, ran) = match answer {
        Answer::Untouched => (21, "yes"),
        Answer::Skipped => (42, "no"),
        Answer::FirstInsnRan => (42, "yes"),
    };
    s.push_str(&format!("answer: {answer}\nbody ran: {ran}\n"));
    s
}

/// Runs `rtrace ARGS -- injectee <itself> n` and checks its stdout and status.
fn check(variant: Variant, args: &[&str], n: usize, failing: &[usize], answer: Answer) -> String {
    let prog = fixture("injectee", variant);
    let path = prog.to_str().expect("UTF-8 path");
    let count = n.to_string();
    let run = run_rtrace(args, &prog, &[path, &count]);
    assert_eq!(
        run.stdout,
        expected(n, failing, answer),
        "{variant} rtrace {args:?}\n--- stderr:\n{}",
        run.stderr
    );
    assert_eq!(run.code(), 0, "{variant} {args:?}\n{}", run.stderr);
    run.stderr
}

/// The text lines of `stderr` that report an openat return.
fn openat_returns(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("] openat(") && l.contains(" = "))
        .collect()
}

#[test]
fn openat_from_the_third_call_every_second() {
    let stderr = check(
        Variant::Pie,
        &["--inject", "libc:openat:retval=-1:errno=ENOENT:when=3+2"],
        8,
        &[3, 5, 7],
        Answer::Untouched,
    );
    let lines = openat_returns(&stderr);
    assert_eq!(lines.len(), 8, "{stderr}");
    for (i, line) in lines.iter().enumerate() {
        let injected = [3, 5, 7].contains(&(i + 1));
        assert_eq!(
            line.contains(" = -1 ENOENT (injected) <"),
            injected,
            "call {}: {line}\n{stderr}",
            i + 1
        );
    }
}

#[test]
fn openat_second_call_only() {
    check(
        Variant::Pie,
        &["--inject", "libc:openat:retval=-1:errno=ENOENT:when=2"],
        4,
        &[2],
        Answer::Untouched,
    );
}

#[test]
fn openat_range_of_calls() {
    check(
        Variant::Pie,
        &["--inject", "libc:openat:retval=-1:errno=2:when=2..3"],
        5,
        &[2, 3],
        Answer::Untouched,
    );
}

#[test]
fn openat_every_call_from_the_fourth() {
    check(
        Variant::NoPie,
        &["--inject", "libc:openat:retval=-1:errno=ENOENT:when=4+"],
        5,
        &[4, 5],
        Answer::Untouched,
    );
}

#[test]
fn probed_function_returns_the_value_and_its_body_is_skipped() {
    for variant in [
        Variant::Pie,
        Variant::NoPie,
        Variant::O2,
        Variant::Cet,
        Variant::Static,
    ] {
        // At -O2 `answer` starts with its store to `body_ran`: the first
        // instruction of an injected function still runs (see the docs of
        // rtrace::inject), so there the body is seen to have run.
        let answer = if variant == Variant::O2 {
            Answer::FirstInsnRan
        } else {
            Answer::Skipped
        };
        let stderr = check(variant, &["--inject", "answer:retval=42"], 2, &[], answer);
        assert!(
            stderr.contains("] answer(") && stderr.contains(" = 42 (injected) <"),
            "{variant}: {stderr}"
        );
    }
}

#[test]
fn every_step_mode() {
    for step in ["emulate", "xol", "inplace"] {
        check(
            Variant::Pie,
            &[
                "--step",
                step,
                "--inject",
                "libc:openat:retval=-1:errno=ENOENT:when=2",
                "--inject",
                "answer:retval=42",
            ],
            3,
            &[2],
            Answer::Skipped,
        );
    }
}

#[test]
fn traced_with_s_too_is_reported_once() {
    let stderr = check(
        Variant::Pie,
        &[
            "-s",
            "libc:openat",
            "-s",
            "answer",
            "--inject",
            "libc:openat:retval=-1:errno=ENOENT:when=1",
        ],
        2,
        &[1],
        Answer::Untouched,
    );
    assert_eq!(openat_returns(&stderr).len(), 2, "{stderr}");
    assert!(stderr.contains(" = 21 <"), "answer traced: {stderr}");
}

#[test]
fn json_marks_injected_returns() {
    let prog = fixture("injectee", Variant::Pie);
    let path = prog.to_str().expect("UTF-8 path");
    let (run, events) = trace_json(
        "inject_json",
        &["--inject", "libc:openat:retval=-1:errno=ENOENT:when=2"],
        &prog,
        &[path, "3"],
    );
    assert_eq!(
        run.stdout,
        expected(3, &[2], Answer::Untouched),
        "{}",
        run.stderr
    );
    let returns = of_symbol(&events, "return", "openat");
    assert_eq!(returns.len(), 3, "{}", show(&events));
    for (i, r) in returns.iter().enumerate() {
        if i == 1 {
            assert_eq!(r["injected"], true, "{r}");
            assert_eq!(r["retval"], -1, "{r}");
            assert_eq!(r["rendered"], "-1 ENOENT (injected)", "{r}");
        } else {
            assert!(r.get("injected").is_none(), "{r}");
        }
    }
}

#[test]
fn each_thread_sees_errno_in_its_own_errno() {
    let prog = fixture("injthreads", Variant::Pie);
    let run = run_rtrace(
        &["--inject", "libc:openat:retval=-1:errno=EMFILE"],
        &prog,
        &[path_of(&prog)],
    );
    let mut want: String = (0..4)
        .map(|i| format!("thread {i}: -1 errno=EMFILE\n"))
        .collect();
    want.push_str("main: -1 errno=EMFILE\n");
    assert_eq!(run.stdout, want, "{}", run.stderr);
    assert_eq!(run.code(), 0, "{}", run.stderr);
}

#[test]
fn bad_inject_syntax_is_a_usage_error() {
    let prog = fixture("injectee", Variant::Pie);
    for bad in [
        "libc:openat",
        "libc:openat:errno=ENOENT",
        "libc:openat:retval=minus-one",
        "libc:openat:retval=-1:errno=ENOTANERROR",
        "libc:openat:retval=-1:when=0",
        "libc:openat:retval=-1:when=5..2",
    ] {
        let run = run_rtrace(&["--inject", bad], &prog, &[path_of(&prog), "1"]);
        assert_one_error_line(&run, 2, &format!("--inject {bad}"));
    }
}

fn path_of(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A rule that gives a field twice, or names an instruction (an offset, an
/// address, a source line), is refused at startup with one usage line,
/// before the program runs: not at its first hit with the program running.
#[test]
fn rules_that_cannot_be_applied_are_refused_at_startup() {
    let prog = fixture("count", Variant::Pie);
    for (rule, why) in [
        ("work:retval=1:retval=2", "retval= is given twice"),
        ("work:errno=EIO:retval=1:errno=EIO", "errno= is given twice"),
        (
            "work+0x4:retval=1",
            "work+0x4 is an instruction probe; only a function's entry can be injected \
             (give the function's name)",
        ),
        (
            "count.c:12:retval=1",
            "count.c:12 is an instruction probe; only a function's entry can be injected \
             (give the function's name)",
        ),
    ] {
        let run = run_rtrace(&["--inject", rule], &prog, &["1"]);
        assert_eq!(run.code(), 2, "{rule}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{rule}: the program ran");
        assert_eq!(
            run.stderr,
            format!(
                "rtrace: invalid value '{rule}' for '--inject \
                 <SPEC:retval=VALUE[:errno=E][:when=WHEN]>': {why} (see 'rtrace --help')\n"
            ),
            "{rule}"
        );
    }
}
