//! Arguments and return values rendered from DWARF types, from built-in libc
//! prototypes, and as raw registers when neither is known: the `typed`
//! fixture's every function, in text and JSON, with and without debug info.

use std::fs;
use std::process::Command;

use serde_json::{json, Value};

use crate::events::{assert_same_as_untraced, of_symbol, show, str_field, temp_path, trace_json};
use crate::fixtures::{
    fixture, normalize, rtrace_bin, run_command, run_rtrace, run_untraced, Variant, TIMEOUT,
};
use crate::harness_selftest::{typed_stdout_without_point, TYPED_STDOUT};

/// Every probed function of `typed`, in the order main calls them.
const FUNCTIONS: [&str; 14] = [
    "narrow", "wide", "wide_max", "negate", "measure", "upper", "paint", "name_of", "flip", "move",
    "area", "mixed", "eight", "nothing",
];

fn probe_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args: Vec<&str> = FUNCTIONS.iter().flat_map(|f| ["-s", *f]).collect();
    args.extend_from_slice(extra);
    args
}

/// The text lines for one run of `typed` (after normalize(): `pid N`, `<T>`,
/// the struct pointer as `0xADDR`).
const TYPED_TEXT: &str = "\
rtrace: attached to pid N (1 thread), 14 probes armed, returns: R
[pid N] narrow(a=-5, b=250, c=-300, d=65000) = 64945 <T>
[pid N] wide(a=-7, b=4000000000, c=-9000000000, d=18446744073709551615) = -9000000007 <T>
[pid N] wide_max(d=18446744073709551615) = 18446744073709551615 <T>
[pid N] negate(x=1) = -1 <T>
[pid N] measure(s=\"hello\") = 5 <T>
[pid N] measure(s=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"...) = 100 <T>
[pid N] measure(s=NULL) = 0 <T>
[pid N] measure(s=\"say \\\"hi\\\"\\n\") = 9 <T>
[pid N] upper(c='a') = 65 <T>
[pid N] paint(c=RED) = GREEN <T>
[pid N] paint(c=BLUE) = 42 <T>
[pid N] name_of(c=GREEN) = \"green\" <T>
[pid N] flip(b=true) = false <T>
[pid N] move(p=0xADDR, dx=3) = 4 <T>
[pid N] area(p={struct point: 0xADDR}) = 6 <T>
[pid N] mixed(x=0.5, a=1, b={struct big @ 0xADDR}, y=0.5, c=2) = 3.0 <T>
[pid N] eight(a=1, b=-2, c=3, d=4, e=5, f=6, g=-7, h=-21) = -11 <T>
[pid N] nothing() = void <T>
+++ exited with 0 +++
";

/// The `point=0x…` line `typed` prints: the address `move` is passed.
fn point(stdout: &str) -> &str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("point="))
        .unwrap_or_else(|| panic!("no point= line in {stdout:?}"))
}

#[test]
fn typed_text_lines_exact_with_debug_info() {
    for variant in [Variant::Pie, Variant::O2, Variant::Static, Variant::NoPie] {
        let prog = fixture("typed", variant);
        let run = run_rtrace(&probe_args(&["--color", "never"]), &prog, &[]);
        let what = format!("rtrace -s … -- typed ({variant})");
        assert_eq!(run.code(), 0, "{what}\n{}", run.stderr);
        assert_eq!(
            typed_stdout_without_point(&run.stdout),
            TYPED_STDOUT,
            "{what}: the tracee's own output"
        );
        // At -O2 `nothing` is a lone `ret`: its jump runs over the padding
        // after it, and every probe is fast (nothing said of them).
        let expected = TYPED_TEXT.to_string();
        assert_eq!(normalize(&run.stderr), expected, "{what}");
        // The struct pointer is the very address the program printed.
        let move_line = format!("move(p={}, dx=3) = 4", point(&run.stdout));
        assert!(
            run.stderr.contains(&move_line),
            "{what}: expected {move_line:?} in\n{}",
            run.stderr
        );
    }
}

/// `(args, arg_names)` of each entry and `(retval, rendered)` of each return,
/// in call order.
type Pairs = Vec<(Value, Value)>;

/// The entry and return pairs of `symbol`'s calls.
fn calls(events: &[Value], symbol: &str) -> (Pairs, Pairs) {
    let entries = of_symbol(events, "entry", symbol)
        .iter()
        .map(|e| (e["args"].clone(), e["arg_names"].clone()))
        .collect();
    let returns = of_symbol(events, "return", symbol)
        .iter()
        .map(|e| (e["retval"].clone(), e["rendered"].clone()))
        .collect();
    (entries, returns)
}

#[test]
fn typed_json_args_names_and_retvals() {
    for variant in [Variant::Pie, Variant::O2] {
        let prog = fixture("typed", variant);
        let test = format!("typed_json_{variant}");
        let (run, events) = trace_json(&test, &probe_args(&[]), &prog, &[]);
        let what = format!("rtrace --json -s … -- typed ({variant})");
        assert_eq!(run.code(), 0, "{what}\n{}", run.stderr);
        let p = point(&run.stdout).to_string();
        let expect: Vec<(&str, Pairs, Pairs)> = vec![
            (
                "narrow",
                vec![(
                    json!(["-5", "250", "-300", "65000"]),
                    json!(["a", "b", "c", "d"]),
                )],
                vec![(json!(64945), json!("64945"))],
            ),
            (
                "wide",
                vec![(
                    json!(["-7", "4000000000", "-9000000000", "18446744073709551615"]),
                    json!(["a", "b", "c", "d"]),
                )],
                vec![(json!(-9000000007i64), json!("-9000000007"))],
            ),
            (
                "wide_max",
                vec![(json!(["18446744073709551615"]), json!(["d"]))],
                vec![(json!(u64::MAX), json!("18446744073709551615"))],
            ),
            (
                "negate",
                vec![(json!(["1"]), json!(["x"]))],
                vec![(json!(-1), json!("-1"))],
            ),
            (
                "measure",
                vec![
                    (json!(["\"hello\""]), json!(["s"])),
                    (json!([format!("\"{}\"...", "a".repeat(64))]), json!(["s"])),
                    (json!(["NULL"]), json!(["s"])),
                    (json!(["\"say \\\"hi\\\"\\n\""]), json!(["s"])),
                ],
                vec![
                    (json!(5), json!("5")),
                    (json!(100), json!("100")),
                    (json!(0), json!("0")),
                    (json!(9), json!("9")),
                ],
            ),
            (
                "upper",
                vec![(json!(["'a'"]), json!(["c"]))],
                vec![(json!(65), json!("65"))],
            ),
            (
                "paint",
                vec![
                    (json!(["RED"]), json!(["c"])),
                    (json!(["BLUE"]), json!(["c"])),
                ],
                vec![(json!(5), json!("GREEN")), (json!(42), json!("42"))],
            ),
            (
                "flip",
                vec![(json!(["true"]), json!(["b"]))],
                vec![(json!(0), json!("false"))],
            ),
            (
                "move",
                vec![(json!([p, "3"]), json!(["p", "dx"]))],
                vec![(json!(4), json!("4"))],
            ),
            (
                "area",
                vec![(json!(["{struct point: 0x300000002}"]), json!(["p"]))],
                vec![(json!(6), json!("6"))],
            ),
            (
                "mixed",
                vec![(
                    json!(["0.5", "1", "{struct big @ ADDR}", "0.5", "2"]),
                    json!(["x", "a", "b", "y", "c"]),
                )],
                vec![(Value::Null, json!("3.0"))],
            ),
            (
                "eight",
                vec![(
                    json!(["1", "-2", "3", "4", "5", "6", "-7", "-21"]),
                    json!(["a", "b", "c", "d", "e", "f", "g", "h"]),
                )],
                vec![(json!(-11), json!("-11"))],
            ),
            (
                "nothing",
                vec![(json!([]), json!([]))],
                vec![(Value::Null, json!("void"))],
            ),
        ];
        for (symbol, entries, returns) in expect {
            let (mut got_entries, got_returns) = calls(&events, symbol);
            // A struct in memory is shown at its stack address: hidden here,
            // checked exactly by `abi_stack_alignment_register_pairs_and_memory`.
            for (args, _) in &mut got_entries {
                for a in args.as_array_mut().into_iter().flatten() {
                    if let Some(at) = a.as_str().and_then(|s| s.find(" @ 0x")) {
                        *a = json!(format!(
                            "{} @ ADDR}}",
                            &a.as_str().unwrap_or_default()[..at]
                        ));
                    }
                }
            }
            assert_eq!(
                (got_entries, got_returns),
                (entries, returns),
                "{what}: {symbol}\n{}",
                show(&events)
            );
        }
        // name_of returns a char *: rendered as the string, retval the pointer.
        let name_of = of_symbol(&events, "return", "name_of");
        assert_eq!(name_of.len(), 1, "{what}\n{}", show(&events));
        assert_eq!(name_of[0]["rendered"], "\"green\"", "{what}");
        assert!(name_of[0]["retval"].as_u64().is_some_and(|v| v > 0x1000));
    }
}

#[test]
fn string_limit_cuts_longer_strings_only() {
    let prog = fixture("typed", Variant::Pie);
    for (limit, expect) in [
        ("3", ["\"hel\"...", "\"aaa\"...", "NULL", "\"say\"..."]),
        (
            "5",
            ["\"hello\"", "\"aaaaa\"...", "NULL", "\"say \\\"\"..."],
        ),
    ] {
        let test = format!("typed_string_limit_{limit}");
        let (run, events) = trace_json(
            &test,
            &["-s", "measure", "--string-limit", limit],
            &prog,
            &[],
        );
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let args: Vec<&str> = of_symbol(&events, "entry", "measure")
            .iter()
            .map(|e| e["args"][0].as_str().unwrap_or("<not a string>"))
            .collect();
        assert_eq!(args, expect, "--string-limit {limit}\n{}", show(&events));
    }
}

#[test]
fn string_limit_must_be_a_number() {
    let prog = fixture("typed", Variant::Pie);
    let run = run_rtrace(&["-s", "measure", "--string-limit", "lots"], &prog, &[]);
    crate::events::assert_one_error_line(&run, 2, "--string-limit lots");
}

#[test]
fn without_debug_info_registers_in_hex_and_libc_by_prototype() {
    for variant in [Variant::NoDebug, Variant::Stripped] {
        let prog = fixture("typed", variant);
        let untraced = run_untraced(&prog, &[]);
        let test = format!("typed_nodebug_{variant}");
        let (run, events) = trace_json(
            &test,
            &[
                "-s", "narrow", "-s", "negate", "-s", "nothing", "-s", "puts",
            ],
            &prog,
            &[],
        );
        let what = format!("typed ({variant})");
        assert_eq!(run.code(), 0, "{what}\n{}", run.stderr);
        assert_eq!(
            typed_stdout_without_point(&run.stdout),
            typed_stdout_without_point(&untraced.stdout),
            "{what}"
        );
        let narrow = of_symbol(&events, "entry", "narrow");
        assert_eq!(narrow.len(), 1, "{what}\n{}", show(&events));
        let args = narrow[0]["args"].as_array().expect("args");
        assert_eq!(args.len(), 6, "{what}: six raw registers");
        assert!(
            args.iter()
                .all(|a| a.as_str().is_some_and(|s| s.starts_with("0x"))),
            "{what}: {args:?}"
        );
        // The int8_t -5 is in the register as the caller left it.
        assert!(
            args[0] == "0xfffffffb" || args[0] == "0xfffffffffffffffb",
            "{what}: {args:?}"
        );
        assert_eq!(
            narrow[0]["arg_names"],
            json!([null, null, null, null, null, null])
        );
        // Untyped: rax as a signed 64-bit integer; -1 as an int is 0xffffffff.
        let negate = of_symbol(&events, "return", "negate");
        assert_eq!(negate[0]["retval"], 0xffff_ffffu64, "{what}");
        assert_eq!(negate[0]["rendered"], "0xffffffff", "{what}");
        assert_eq!(of_symbol(&events, "return", "nothing").len(), 1);
        // libc's puts by its built-in prototype.
        let puts = of_symbol(&events, "entry", "puts");
        assert_eq!(puts.len(), 1, "{what}\n{}", show(&events));
        assert_eq!(puts[0]["args"], json!(["\"nothing\""]), "{what}");
        assert_eq!(puts[0]["arg_names"], json!(["s"]), "{what}");
        assert_eq!(str_field(puts[0], "symbol"), "puts");
    }
}

#[test]
fn libc_prototypes_with_debug_info_in_the_executable() {
    // The executable's DWARF does not describe libc's functions: puts in libc
    // still renders by its prototype, strace style, in text.
    let prog = fixture("typed", Variant::Pie);
    let run = run_rtrace(&["-s", "puts", "--color", "never"], &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let text = normalize(&run.stderr);
    assert!(
        text.lines()
            .any(|l| l == "[pid N] puts(\"nothing\") = 8 <T>"),
        "{text}"
    );
}

#[test]
fn a_library_loaded_later_is_typed_from_its_own_debug_info() {
    for (variant, args, names) in [
        (
            Variant::Pie,
            json!([["1"], ["2"], ["3"]]),
            json!([["x"], ["x"], ["x"]]),
        ),
        (
            Variant::NoDebug,
            Value::Null,
            json!(vec![vec![Value::Null; 6]; 3]),
        ),
    ] {
        let prog = fixture("dlopener", variant);
        let lib = crate::fixtures::library("libplug", variant);
        let test = format!("typed_libplug_{variant}");
        let plug = crate::fixtures::in_library("libplug", variant, "plugin_fn");
        let (run, events) = trace_json(&test, &["-s", &plug], &prog, &[lib.to_str().unwrap()]);
        let what = format!("rtrace -s libplug:plugin_fn -- dlopener ({variant})");
        assert_eq!(run.code(), 0, "{what}\n{}", run.stderr);
        let entries = of_symbol(&events, "entry", "plugin_fn");
        assert_eq!(entries.len(), 3, "{what}\n{}", show(&events));
        let got_names: Vec<&Value> = entries.iter().map(|e| &e["arg_names"]).collect();
        assert_eq!(json!(got_names), names, "{what}");
        if !args.is_null() {
            let got: Vec<&Value> = entries.iter().map(|e| &e["args"]).collect();
            assert_eq!(json!(got), args, "{what}");
        }
        let rendered: Vec<&Value> = of_symbol(&events, "return", "plugin_fn")
            .iter()
            .map(|e| &e["rendered"])
            .collect();
        assert_eq!(json!(rendered), json!(["101", "102", "103"]), "{what}");
    }
}

/// `abi`: the stack arguments after a 16-byte-aligned aggregate, values
/// returned in rax:rdx, structs in memory shown at their address (the very
/// address the function sees), a struct split between a vector and an
/// integer register.
#[test]
fn abi_stack_alignment_register_pairs_and_memory() {
    const ABI: [&str; 7] = [
        "wide_on_stack",
        "aligned_on_stack",
        "pair",
        "wide_ret",
        "in_memory",
        "make_big",
        "mixed_regs",
    ];
    for variant in [Variant::Pie, Variant::O2, Variant::NoPie] {
        let prog = fixture("abi", variant);
        let mut args: Vec<&str> = ABI.iter().flat_map(|f| ["-s", *f]).collect();
        args.extend(["--color", "never"]);
        let run = run_rtrace(&args, &prog, &[]);
        let what = format!("rtrace -s … -- abi ({variant})");
        assert_eq!(run.code(), 0, "{what}\n{}", run.stderr);
        let (stdout, addrs) = crate::harness_selftest::abi_stdout(&run.stdout);
        assert_eq!(stdout, crate::harness_selftest::ABI_STDOUT, "{what}");
        let (big, res) = (&addrs[0], &addrs[1]);
        let expect = format!(
            "\
rtrace: attached to pid N (1 thread), 7 probes armed, returns: R
[pid N] wide_on_stack(a=1, b=2, c=3, d=4, e=5, f=6, s=50, x={{struct w: 0x7, 0x0}}, h=2) = 80 <T>
[pid N] aligned_on_stack(a=1, b=2, c=3, d=4, e=5, f=6, s=50, x={{struct al: 0xb, 0xc}}, h=-3) = 91 <T>
[pid N] pair(a=4) = {{struct two: 0x4, 0x5}} <T>
[pid N] wide_ret(hi=1, lo=7) = 18446744073709551623 <T>
[pid N] in_memory(b={{struct big @ {big}}}, x=3) = 36 <T>
[pid N] make_big(a=7) = {{struct big @ {res}}} <T>
[pid N] mixed_regs(m={{struct mix: ?, 0x2a}}, k=2) = 45 <T>
+++ exited with 0 +++
"
        );
        // Addresses compared exactly, before normalize() hides them.
        let text = run
            .stderr
            .replace(big.as_str(), "BIG")
            .replace(res.as_str(), "RES");
        let expect = expect
            .replace(big.as_str(), "BIG")
            .replace(res.as_str(), "RES");
        assert_eq!(normalize(&text), expect, "{what}");
    }
}

/// GCC's clones at -O2 (`scale.constprop.0.isra.0`, `pick.constprop.0`) are
/// not called by the SysV convention: each parameter is shown where the
/// clone's own debug info puts it (`k` in another register, `mode` the
/// constant it was specialised for), `?` where it does not say (`unused`
/// dropped, `c` replaced by the field it was read for), never the original's
/// parameter list laid over the registers. The IPA-SRA clone's return value
/// is rax as it is (the clone may have dropped it). At -O0 nothing is cloned.
#[test]
fn compiler_clones_show_their_own_parameters() {
    for (variant, scale, pick) in [
        (Variant::O2, "scale.constprop.0.isra.0", "pick.constprop.0"),
        (Variant::Pie, "scale", "pick"),
    ] {
        let prog = fixture("clones", variant);
        let run = run_rtrace(
            &[
                "-s",
                "clones:scale*",
                "-s",
                "clones:pick*",
                "--color",
                "never",
            ],
            &prog,
            &[],
        );
        let what = format!("rtrace -s 'clones:scale*' -s 'clones:pick*' -- clones ({variant})");
        assert_eq!(run.code(), 0, "{what}\n{}", run.stderr);
        assert_eq!(run.stdout, "36\n", "{what}");
        let mut expect =
            String::from("rtrace: attached to pid N (1 thread), 2 probes armed, returns: R\n");
        for i in 0..3 {
            let args = if variant == Variant::O2 {
                format!("unused=?, c=?, k={}", i + 1)
            } else {
                format!("unused={i}, c=0xADDR, k={}", i + 1)
            };
            expect.push_str(&format!(
                "[pid N] {scale}({args}) = {} <T>\n[pid N] {pick}(mode=3, v={i}) = {} <T>\n",
                5 * (i + 1),
                2 * i
            ));
        }
        expect.push_str("+++ exited with 0 +++\n");
        assert_eq!(normalize(&run.stderr), expect, "{what}");
    }
}

/// `-s open,read,close` is three probes, as strace's `-e trace=` lists are;
/// a comma inside a C++ name's brackets is the name's. `-o -` writes the
/// events to standard output (no file named `-`).
#[test]
fn comma_lists_and_output_to_stdout() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["--color", "never", "-s", "work,twice"], &prog, &["1"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        normalize(&run.stderr),
        "rtrace: attached to pid N (1 thread), 2 probes armed, returns: R\n\
         [pid N] work(x=0) = 1 <T>\n\
         [pid N] twice(x=20) = 41 <T>\n\
         +++ exited with 0 +++\n"
    );
    let run = run_rtrace(&["-s", "work,"], &prog, &["1"]);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(run.stderr.contains("the spec is empty"), "{}", run.stderr);

    let dir = temp_path("dash-output");
    fs::create_dir_all(&dir).expect("a directory");
    let mut cmd = Command::new(rtrace_bin());
    cmd.current_dir(&dir)
        .args(["--color", "never", "-o", "-", "-s", "work", "--"])
        .arg(&prog)
        .arg("1");
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let out = normalize(&run.stdout);
    assert!(out.starts_with("sum=1\ntwice=41\n"), "{out}");
    assert!(out.contains("[pid N] work(x=0) = 1 <T>\n"), "{out}");
    assert!(!run.stderr.contains("work("), "{}", run.stderr);
    assert!(!dir.join("-").exists(), "a file named - was written");
}

/// JSON `values` beside `args`: each argument as a raw 64-bit integer
/// (its register), `null` where it is not one (a double or a float, a
/// struct, in registers or in memory), so that scripts do not parse the
/// rendered text.
#[test]
fn typed_json_values_are_the_raw_integers() {
    let prog = fixture("typed", Variant::Pie);
    let (run, events) = trace_json("typed_json_values", &probe_args(&[]), &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let values = |symbol: &str| -> Vec<Value> {
        of_symbol(&events, "entry", symbol)
            .iter()
            .map(|e| e["values"].clone())
            .collect()
    };
    assert_eq!(values("negate"), [json!([1])]);
    assert_eq!(values("wide_max"), [json!([u64::MAX])]);
    assert_eq!(values("measure")[2], json!([0]));
    assert_eq!(values("area"), [json!([null])]);
    assert_eq!(values("mixed"), [json!([null, 1, null, null, 2])]);
    assert_eq!(values("nothing"), [json!([])]);
}

/// A read tail-called from a probed function (`pull`: `jmp read`, as
/// glibc's `_IO_file_read` makes one) returns through the same return
/// address, recorded by the return stub with the caller's: the bytes it
/// filled still show, fast and with `--int3` (its entry an int3 stop,
/// chained to pull's return).
#[test]
fn a_tail_called_read_shows_what_it_filled() {
    let prog = fixture("buffers", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    for mode in ["--fast", "--int3"] {
        let run = run_rtrace(&[mode, "-s", "pull", "-s", "libc:read"], &prog, &[]);
        assert_same_as_untraced(&run, &untraced, mode);
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
            .map(|l| l.rsplit_once(" <").map_or(l, |(call, _)| call))
            .filter(|l| l.contains("pull"))
            // (pull's raw arguments: the first two are enough.)
            .map(|l| match l.starts_with("pull(") {
                true => &l[..12],
                false => l,
            })
            .collect();
        assert_eq!(
            lines,
            [
                "pull(0x4, 0x",
                r#"read(4, "pulled\n", 64) = 7"#,
                "... pull resumed = 7"
            ],
            "{mode}\n{}",
            run.stderr
        );
    }
}

/// Buffers as strace shows them: what `write`, `fwrite` and `memcpy` read,
/// at their entry; what `read` and `fread` filled, at their return, as many
/// bytes as they say (`fread`'s count is in units of its size); escapes and
/// binary bytes, a cut at `--string-limit`; a failed read shows its pointer.
/// JSON's return event carries what was filled; the entry, the pointer.
#[test]
fn buffers_show_the_bytes_moved() {
    let prog = fixture("buffers", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(
        (untraced.stdout.as_str(), untraced.code()),
        ("hello\ndone\n", 0)
    );
    let specs = "libc:write,libc:read,libc:fwrite,libc:fread,libc:memcpy";
    let run = run_rtrace(&["-s", specs, "--string-limit", "32"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "buffers");
    // Fast probes copy the buffers (write's and memcpy's at the entry,
    // read's at the return): only fwrite and fread, whose lengths are
    // products, stop.
    if !crate::fixtures::int3_by_default() {
        let modes: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("rtrace: probe "))
            .collect();
        let product = "int3 (its data buffer's length is a product, read at the stop)";
        assert_eq!(
            modes,
            [
                format!("rtrace: probe libc:fwrite: {product}"),
                format!("rtrace: probe libc:fread: {product}"),
            ],
            "{}",
            run.stderr
        );
    }
    // `[pid N] ` off, and the duration.
    let calls: Vec<String> = run
        .stderr
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
        .filter_map(|l| l.rsplit_once(" <").map(|(call, _)| call.to_string()))
        .collect();
    let has = |want: &str| calls.iter().any(|c| c == want);
    for want in [
        r#"write(1, "hello\n", 6) = 6"#,
        r#"write(3, "a\x00\x01\x7f\xff\"\\z", 8) = 8"#,
        r#"write(5, "hello world\n", 12) = 12"#,
        r#"read(4, "hello world\n", 64) = 12"#,
        r#"fwrite("abcdefghijkl", 4, 3, 0x"#,
    ] {
        let found = match want.ends_with("0x") {
            true => calls.iter().any(|c| c.starts_with(want)),
            false => has(want),
        };
        assert!(found, "no call {want:?} in:\n{}", run.stderr);
    }
    let failed = calls
        .iter()
        .find(|c| c.starts_with("read(-1, "))
        .unwrap_or_else(|| panic!("the failed read:\n{}", run.stderr));
    assert!(
        failed.starts_with("read(-1, 0x") && failed.ends_with(", 64) = -1 EBADF (Bad file number)"),
        "{failed}"
    );
    let x32 = "x".repeat(32);
    let copy = calls
        .iter()
        .find(|c| c.contains(&x32))
        .unwrap_or_else(|| panic!("the memcpy of 100 x:\n{}", run.stderr));
    // (memcpy is an IFUNC: the line names its implementation.)
    assert!(copy.contains("memcpy") && copy.contains("(0x"), "{copy}");
    assert!(
        copy.contains(&format!(", \"{x32}\"..., 100) = 0x")),
        "{copy}"
    );
    // fread reads the pipe with read before it returns: its line is out
    // with the pointer, and its return says what it filled.
    let fread_line = run
        .stderr
        .lines()
        .find(|l| l.contains("] fread("))
        .unwrap_or_else(|| panic!("the fread:\n{}", run.stderr));
    assert!(
        fread_line.contains("] fread(0x") && fread_line.ends_with(") ..."),
        "{fread_line}"
    );
    assert!(
        has(r#"... fread resumed (ptr="0123456789") = 5"#),
        "{}",
        run.stderr
    );

    let (run, events) = trace_json("buffers_json", &["-s", "libc:read"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "buffers --json");
    let returns = of_symbol(&events, "return", "read");
    // main's two reads (fread's come after).
    let filled: Vec<(&Value, &Value, &Value)> = returns[..2]
        .iter()
        .map(|r| (&r["filled_arg"], &r["filled_name"], &r["filled"]))
        .collect();
    assert_eq!(
        filled,
        [
            (&json!(1), &json!("buf"), &json!("\"hello world\\n\"")),
            (&Value::Null, &Value::Null, &Value::Null),
        ],
        "{}",
        show(&events)
    );
    let entry = &of_symbol(&events, "entry", "read")[0];
    assert!(
        entry["args"][1].as_str().unwrap().starts_with("0x"),
        "{entry}"
    );
}

/// C strings passed on the stack (the seventh and eighth arguments) are
/// shown as live, cut at the string limit, NULL as NULL and an unmapped
/// pointer as the pointer: by fast probes (whose detour copies them, and
/// says nothing of the probe: it is fast) and by int3 probes alike.
#[test]
fn strings_passed_on_the_stack() {
    let prog = fixture("stackstr", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(
        (untraced.stdout.as_str(), untraced.code()),
        ("sum=292\n", 0)
    );
    for mode in ["--fast", "--int3"] {
        let run = run_rtrace(&[mode, "-s", "seven", "--string-limit", "32"], &prog, &[]);
        assert_same_as_untraced(&run, &untraced, &format!("stackstr {mode}"));
        // Nothing said of the probe's mode: every site fast (with --fast),
        // or int3 as asked.
        assert!(
            !run.stderr.contains("rtrace: probe seven"),
            "{mode}:\n{}",
            run.stderr
        );
        // `[pid N] ` off, and the duration.
        let calls: Vec<&str> = run
            .stderr
            .lines()
            .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
            .filter_map(|l| l.rsplit_once(" <").map(|(call, _)| call))
            .collect();
        assert_eq!(calls.len(), 4, "{mode}:\n{}", run.stderr);
        assert_eq!(
            calls[..3],
            [
                r#"seven(a=1, b=2, c=3, d=4, e=5, f=6, g="seventh", h="eighth") = 34"#,
                r#"seven(a=1, b=1, c=1, d=1, e=1, f=1, g="", h=NULL) = 6"#,
                r#"seven(a=10, b=20, c=30, d=40, e=50, f=60, g="01234567890123456789012345678901"..., h="x") = 251"#,
            ],
            "{mode}"
        );
        let last = calls[3];
        assert!(
            last.starts_with(r#"seven(a=0, b=0, c=0, d=0, e=0, f=0, g="g", h=0x"#)
                && last.ends_with(") = 1"),
            "{mode}: {last}"
        );
    }
}

/// A read that blocks: its line is shown alone while the call waits (the
/// pointer where the bytes will go), and the return says what it filled
/// after it, as a resumed line does (not lost with the line already out).
#[test]
fn a_read_that_blocks_says_what_it_filled() {
    for mode in ["--fast", "--int3"] {
        let out = temp_path(&format!("blocking_read{mode}.txt"));
        let mut cmd = Command::new(rtrace_bin());
        cmd.args([mode, "--color", "never", "-s", "read", "-o"])
            .arg(&out)
            .args(["--", "cat"]);
        let mut rtrace = crate::fixtures::Spawned::with_stdin(cmd);
        // The line shown alone: the call is waiting for the pipe.
        let deadline = std::time::Instant::now() + TIMEOUT;
        while !fs::read_to_string(&out).is_ok_and(|t| t.contains("read(0, 0x")) {
            assert!(
                std::time::Instant::now() < deadline,
                "{mode}: no read shown: {:?}",
                fs::read_to_string(&out)
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        rtrace.send("hello\n");
        rtrace.close_stdin();
        let run = rtrace.wait();
        assert_eq!((run.stdout.as_str(), run.code()), ("hello\n", 0), "{mode}");
        let text = fs::read_to_string(&out).unwrap();
        let first = text
            .lines()
            .find(|l| l.contains("read(0, "))
            .unwrap_or_else(|| panic!("{mode}: {text}"));
        let (call, _) = first.rsplit_once(" <").unwrap();
        let (_, call) = call.split_once("] ").unwrap();
        assert!(
            call.starts_with("read(0, 0x") && call.ends_with(r#") (buf="hello\n") = 6"#),
            "{mode}: {call}"
        );
    }
}
