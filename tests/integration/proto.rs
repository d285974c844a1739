//! `--proto` and `--proto-file`: functions without debug info (the stripped
//! `typed`) rendered by the user's C declarations exactly as DWARF renders
//! them, in text and JSON, by int3 and fast probes alike; a declaration
//! wins over DWARF and over the built-in libc prototypes; one that does not
//! parse is a usage error before anything runs.

use std::fs;

use serde_json::{json, Value};

use crate::events::{assert_one_error_line, of_symbol, show, temp_path, trace_json};
use crate::fixtures::{fixture, normalize, run_rtrace, run_untraced, Variant};
use crate::harness_selftest::typed_stdout_without_point;

/// Declarations of `typed`'s functions: every kind of argument (integers of
/// each width and sign, a C string, plain char, bool, floats in vector
/// registers around integers in general ones, an unnamed parameter, none).
/// `mixed`'s struct passed in memory takes no register: leaving it out
/// leaves every other argument where it is.
const DECLS: [&str; 8] = [
    "int narrow(int8_t a, uint8_t b, int16_t c, uint16_t d)",
    "uint64_t wide_max(uint64_t d)",
    "int negate(int x)",
    "size_t measure(const char *s)",
    "int upper(char)",
    "bool flip(bool b)",
    "double mixed(double x, int a, float y, int c)",
    "void nothing(void)",
];

/// The text lines of `typed` traced with [`DECLS`] (after normalize()).
const TEXT: &str = "\
[pid N] narrow(a=-5, b=250, c=-300, d=65000) = 64945 <T>
[pid N] wide_max(d=18446744073709551615) = 18446744073709551615 <T>
[pid N] negate(x=1) = -1 <T>
[pid N] measure(s=\"hello\") = 5 <T>
[pid N] measure(s=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"...) = 100 <T>
[pid N] measure(s=NULL) = 0 <T>
[pid N] measure(s=\"say \\\"hi\\\"\\n\") = 9 <T>
[pid N] upper('a') = 65 <T>
[pid N] flip(b=true) = false <T>
[pid N] mixed(x=0.5, a=1, y=0.5, c=2) = 3.0 <T>
[pid N] nothing() = void <T>
+++ exited with 0 +++
";

/// `-s NAME` for each declaration, then `--proto DECL` for each.
fn proto_args(decls: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["--color", "never"];
    for d in decls {
        let name = d.split('(').next().unwrap_or(d);
        let name = name.rsplit([' ', '*']).next().unwrap_or(name);
        args.extend(["-s", name]);
    }
    for d in decls {
        args.extend(["--proto", d]);
    }
    args
}

/// rtrace's text for `args -- typed (stripped)`, normalized, the attach
/// line and the lines that say which probes are fast left out; the
/// program's own output is checked against an untraced run.
fn typed_text(args: &[&str]) -> String {
    let prog = fixture("typed", Variant::Stripped);
    let untraced = run_untraced(&prog, &[]);
    let run = run_rtrace(args, &prog, &[]);
    assert_eq!(run.code(), 0, "{args:?}\n{}", run.stderr);
    assert_eq!(
        typed_stdout_without_point(&run.stdout),
        typed_stdout_without_point(&untraced.stdout),
        "{args:?}: the program's own output"
    );
    normalize(&run.stderr)
        .lines()
        .filter(|l| !l.starts_with("rtrace: probe ") && !l.starts_with("rtrace: attached"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn proto_renders_a_stripped_function_as_dwarf_would() {
    assert_eq!(typed_text(&proto_args(&DECLS)), TEXT);
}

/// Fast probes capture what the declarations say is needed (the strings,
/// the vector registers) and print the same lines as int3 probes.
#[test]
fn proto_with_fast_probes_prints_the_same_lines() {
    let mut args = proto_args(&DECLS);
    args.push("--fast");
    let prog = fixture("typed", Variant::Stripped);
    let run = run_rtrace(&args, &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    // Every probe fast: none is said to stay int3.
    for d in ["narrow", "measure", "mixed", "nothing"] {
        assert!(
            !run.stderr.contains(&format!("rtrace: probe {d}:")),
            "{d} is not fast:\n{}",
            run.stderr
        );
    }
    assert_eq!(typed_text(&args), TEXT);
    let mut int3 = proto_args(&DECLS);
    int3.push("--int3");
    assert_eq!(typed_text(&int3), TEXT);
}

#[test]
fn proto_json_names_values_and_retvals() {
    let prog = fixture("typed", Variant::Stripped);
    let decls = [
        "int negate(int x)",
        "size_t measure(const char *s)",
        "int upper(char)",
        "double mixed(double x, int a, float y, int c)",
    ];
    let mut args = vec![
        "-s", "negate", "-s", "measure", "-s", "upper", "-s", "mixed",
    ];
    for d in decls {
        args.extend(["--proto", d]);
    }
    let (run, events) = trace_json("proto_json", &args, &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let entry = |symbol: &str, n: usize| -> Value {
        let e = of_symbol(&events, "entry", symbol);
        assert!(e.len() > n, "{symbol}\n{}", show(&events));
        json!([e[n]["args"], e[n]["arg_names"], e[n]["values"]])
    };
    let ret = |symbol: &str| -> Value {
        let r = of_symbol(&events, "return", symbol);
        assert!(!r.is_empty(), "{symbol}\n{}", show(&events));
        json!([r[0]["retval"], r[0]["rendered"]])
    };
    assert_eq!(entry("negate", 0), json!([["1"], ["x"], [1]]));
    assert_eq!(ret("negate"), json!([-1, "-1"]));
    // The string, its name, and the pointer itself as the value.
    let measure = entry("measure", 0);
    assert_eq!(measure[0], json!(["\"hello\""]));
    assert_eq!(measure[1], json!(["s"]));
    assert!(
        measure[2][0].as_u64().is_some_and(|p| p > 0x1000),
        "{measure}"
    );
    assert_eq!(entry("measure", 2), json!([["NULL"], ["s"], [0]]));
    assert_eq!(ret("measure"), json!([5, "5"]));
    // No name given: null, as for a DWARF parameter without one.
    assert_eq!(entry("upper", 0), json!([["'a'"], [null], [97]]));
    // Floats: no integer value; a double returned has no retval.
    assert_eq!(
        entry("mixed", 0),
        json!([
            ["0.5", "1", "0.5", "2"],
            ["x", "a", "y", "c"],
            [null, 1, null, 2]
        ])
    );
    assert_eq!(ret("mixed"), json!([null, "3.0"]));
}

#[test]
fn proto_file_with_comments_and_proto_over_it() {
    let path = temp_path("typed.protos");
    let mut text = String::from(
        "# typed's functions, by hand\n\n// negate is declared again on the command line\n\
         int negate(int value);   // this one loses\n",
    );
    for d in DECLS.iter().filter(|d| !d.contains("negate")) {
        text.push_str(&format!("  {d};\n"));
    }
    fs::write(&path, &text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let mut args = vec!["--color", "never", "--proto-file", path.to_str().unwrap()];
    for d in DECLS {
        let name = d.split('(').next().unwrap_or(d).rsplit([' ', '*']).next();
        args.extend(["-s", name.unwrap_or(d)]);
    }
    args.extend(["--proto", "int negate(int x)"]);
    assert_eq!(typed_text(&args), TEXT);
    // The file alone: its negate.
    let text = typed_text(&args[..args.len() - 2]);
    assert!(
        text.lines()
            .any(|l| l == "[pid N] negate(value=1) = -1 <T>"),
        "{text}"
    );
}

/// The user said so: a declaration wins over the function's DWARF and over
/// the built-in prototype of a libc function.
#[test]
fn proto_wins_over_dwarf_and_the_built_in_prototypes() {
    let prog = fixture("typed", Variant::Pie);
    let run = run_rtrace(
        &[
            "--color",
            "never",
            "-s",
            "negate",
            "-s",
            "puts",
            "--proto",
            "unsigned negate(unsigned value)",
            "--proto",
            "long puts(const char *text)",
        ],
        &prog,
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let text = normalize(&run.stderr);
    for line in [
        "[pid N] negate(value=1) = 4294967295 <T>",
        "[pid N] puts(text=\"nothing\") = 8 <T>",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
}

#[test]
fn a_bad_prototype_is_a_usage_error_before_anything_runs() {
    let prog = fixture("typed", Variant::Stripped);
    let run = run_rtrace(
        &["-s", "negate", "--proto", "int parse(cons char *s)"],
        &prog,
        &[],
    );
    let line = assert_one_error_line(&run, 2, "--proto with an unknown type");
    assert_eq!(
        line,
        "rtrace: --proto 'int parse(cons char *s)': unknown type \"cons\" at column 11 \
         (see 'rtrace --help')"
    );
    assert_eq!(run.stdout, "", "the program ran");

    let run = run_rtrace(
        &["-s", "area", "--proto", "int area(struct point p)"],
        &prog,
        &[],
    );
    let line = assert_one_error_line(&run, 2, "--proto with a struct by value");
    assert!(
        line.contains("struct point by value") && line.contains("(struct point *)"),
        "{line}"
    );
    assert_eq!(run.stdout, "", "the program ran");

    let path = temp_path("bad.protos");
    fs::write(&path, "// fine\nint negate(int x);\n\nlong tell(FIL *f)\n").unwrap();
    let run = run_rtrace(
        &["-s", "negate", "--proto-file", path.to_str().unwrap()],
        &prog,
        &[],
    );
    let line = assert_one_error_line(&run, 2, "--proto-file with an unknown type");
    assert_eq!(
        line,
        format!(
            "rtrace: --proto-file {}:4:11: unknown type \"FIL\" (see 'rtrace --help')",
            path.display()
        )
    );
    assert_eq!(run.stdout, "", "the program ran");

    let missing = temp_path("missing.protos");
    let run = run_rtrace(
        &["-s", "negate", "--proto-file", missing.to_str().unwrap()],
        &prog,
        &[],
    );
    let line = assert_one_error_line(&run, 1, "--proto-file that does not exist");
    assert!(
        line.starts_with(&format!(
            "rtrace: cannot read --proto-file {}: ",
            missing.display()
        )),
        "{line}"
    );
    assert_eq!(run.stdout, "", "the program ran");
}

/// The `--perfetto` timeline renders by the declarations too.
#[test]
fn proto_in_the_perfetto_timeline() {
    let prog = fixture("typed", Variant::Stripped);
    let path = temp_path("proto.trace.json");
    let run = run_rtrace(
        &[
            "--perfetto",
            path.to_str().unwrap(),
            "-s",
            "negate",
            "--proto",
            "int negate(int x)",
        ],
        &prog,
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let timeline: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let slices: Vec<&Value> = timeline["traceEvents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["ph"] == "X" && e["name"] == "negate")
        .collect();
    assert_eq!(slices.len(), 1, "{text}");
    assert_eq!(slices[0]["args"]["x"], "1", "{text}");
}

/// `--list` shows probe points, which no declaration changes.
#[test]
fn proto_does_not_apply_to_list() {
    let prog = fixture("typed", Variant::Stripped);
    let run = run_rtrace(
        &["-l", "negate", "--proto", "int negate(int x)"],
        &prog,
        &[],
    );
    let line = assert_one_error_line(&run, 2, "--list with --proto");
    assert_eq!(
        line,
        "rtrace: --list prints probe points, not a trace; --proto does not apply to it \
         (see 'rtrace --help')"
    );
}
