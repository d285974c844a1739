//! Names: probing C++ and Rust functions by their demangled names, IFUNCs
//! (`strlen`) at the implementation the process uses, globs over whole
//! libraries, and `--list`. Every count is exact: each fixture's header says
//! how many times it calls what.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::events::{
    assert_same_as_untraced, of_kind, of_symbol, retvals, show, str_field, trace_json,
};
use crate::fixtures::{fixture, normalize, run_rtrace, run_untraced, Variant};

/// Entry events per symbol.
fn entry_counts(events: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in of_kind(events, "entry") {
        *counts
            .entry(str_field(e, "symbol").to_string())
            .or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

#[test]
fn cpp_functions_by_demangled_name() {
    let prog = fixture("names", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "sum=91\n");
    // `inner` is `_Z5inneri`; `ns::over` names both overloads; a full
    // demangled name with its parameters names one.
    let (run, events) = trace_json(
        "names_cpp",
        &[
            "-s",
            "inner",
            "-s",
            "ns::Class::method",
            "-s",
            "ns::over",
            "-s",
            "ns::twice(int)",
        ],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "names");
    assert_eq!(
        entry_counts(&events),
        counts(&[
            ("inner(int)", 3),
            ("ns::Class::method(int)", 2),
            ("ns::over(double)", 1),
            ("ns::over(int)", 2),
            ("ns::twice(int)", 4),
        ]),
        "{}",
        show(&events)
    );
    assert_eq!(retvals(&events, "inner(int)"), vec![2, 3, 4]);
    assert_eq!(retvals(&events, "ns::over(double)"), vec![15]);
    // The probe is reported as given.
    let over = of_symbol(&events, "entry", "ns::over(int)");
    assert!(over.iter().all(|e| str_field(e, "probe") == "ns::over"));
}

#[test]
fn cpp_mangled_names_still_work_and_show_demangled() {
    let prog = fixture("names", Variant::Pie);
    let (run, events) = trace_json(
        "names_mangled",
        &["-s", "_Z5inneri", "-s", "_ZNK2ns5Class4peekEv"],
        &prog,
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        entry_counts(&events),
        counts(&[("inner(int)", 3), ("ns::Class::peek() const", 1)])
    );
    // A demangled name with spaces, as output shows it.
    let (_, events) = trace_json(
        "names_spaces",
        &["-s", "ns::Class::peek() const"],
        &prog,
        &[],
    );
    assert_eq!(
        entry_counts(&events),
        counts(&[("ns::Class::peek() const", 1)])
    );
    // Text output shows a C++ function by its name alone, as gdb and
    // uftrace do, with its parameter types only where an overload needs
    // them (JSON's `symbol` above keeps them all).
    let text = run_rtrace(
        &[
            "--color",
            "never",
            "-c",
            "-s",
            "_Z5inneri",
            "-s",
            "ns::over",
            "-s",
            "ns::twice",
        ],
        &prog,
        &[],
    );
    let rows: Vec<&str> = text
        .stderr
        .lines()
        .filter(|l| l.ends_with(']') && !l.contains("function ["))
        .map(|l| l.split_whitespace().rev().nth(1).unwrap())
        .collect();
    let mut rows = rows;
    rows.sort_unstable();
    assert_eq!(
        rows,
        ["inner", "ns::over(double)", "ns::over(int)", "ns::twice"],
        "{}",
        text.stderr
    );
    let text = run_rtrace(
        &["--color", "never", "-s", "_Z5inneri", "-s", "ns::over"],
        &prog,
        &[],
    );
    for line in [
        "] inner(x=1) = 2",
        "] ns::over(int)(x=3) = 6",
        "] ns::over(double)(x=",
    ] {
        assert!(
            text.stderr.contains(line),
            "text output shows {line:?}:\n{}",
            text.stderr
        );
    }
    assert!(!text.stderr.contains("inner(int)"), "{}", text.stderr);
}

#[test]
fn cpp_glob_over_demangled_names() {
    let prog = fixture("names", Variant::Pie);
    let (run, events) = trace_json("names_glob", &["-s", "ns::*"], &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        entry_counts(&events),
        counts(&[
            ("ns::Class::Class(int)", 1),
            ("ns::Class::method(int)", 2),
            ("ns::Class::peek() const", 1),
            ("ns::over(double)", 1),
            ("ns::over(int)", 2),
            ("ns::twice(int)", 4),
        ]),
        "{}",
        show(&events)
    );
    let (_, events) = trace_json("names_glob_params", &["-s", "ns::over(*)"], &prog, &[]);
    assert_eq!(
        entry_counts(&events),
        counts(&[("ns::over(double)", 1), ("ns::over(int)", 2)])
    );
}

#[test]
fn offset_into_an_overloaded_name_is_refused() {
    let prog = fixture("names", Variant::Pie);
    let run = run_rtrace(&["-s", "ns::over+0"], &prog, &[]);
    let line = crate::events::assert_one_error_line(&run, 1, "ns::over+0");
    assert!(line.contains("names 2 functions"), "{line}");
}

/// The legacy-mangled name of `rnames::parse` (`_ZN6rnames5parse17h…E`).
fn rust_parse_symbol(prog: &std::path::Path) -> String {
    let bytes = std::fs::read(prog).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    elf.syms
        .iter()
        .filter_map(|s| elf.strtab.get_at(s.st_name))
        .find(|n| n.starts_with("_ZN6rnames5parse17h"))
        .expect("rnames::parse in .symtab")
        .to_string()
}

#[test]
fn rust_functions_by_path_with_and_without_hash() {
    let prog = fixture("rnames", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "total=21\n");
    let (run, events) = trace_json(
        "rnames",
        &["-s", "rnames::parse", "-s", "rnames::inner::*"],
        &prog,
        &[],
    );
    assert_same_as_untraced(&run, &untraced, "rnames");
    assert_eq!(
        entry_counts(&events),
        counts(&[("rnames::inner::step", 2), ("rnames::parse", 3)]),
        "{}",
        show(&events)
    );
    assert_eq!(retvals(&events, "rnames::parse"), vec![1, 2, 3]);
    let mangled = rust_parse_symbol(&prog);
    let hash = &mangled["_ZN6rnames5parse17".len()..mangled.len() - 1];
    for spec in [format!("rnames::parse::{hash}"), mangled.clone()] {
        let (run, events) = trace_json("rnames_hash", &["-s", &spec], &prog, &[]);
        assert_eq!(run.code(), 0, "{spec}: {}", run.stderr);
        assert_eq!(
            entry_counts(&events),
            counts(&[("rnames::parse", 3)]),
            "{spec}"
        );
    }
}

#[test]
fn strlen_traces_the_implementation_the_process_uses() {
    let prog = fixture("ifuncs", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(untraced.stdout, "total=18\npicked=10\n");
    for spec in ["strlen", "libc:strlen"] {
        let (run, events) = trace_json("ifunc_strlen", &["-s", spec], &prog, &[]);
        assert_same_as_untraced(&run, &untraced, spec);
        let entries = of_kind(&events, "entry");
        // 5 calls through the PLT, 1 through a pointer; libc calls none.
        assert_eq!(entries.len(), 6, "{spec}: {}", show(&events));
        let symbol = str_field(entries[0], "symbol");
        assert!(
            symbol == "strlen" || symbol.starts_with("__strlen_"),
            "{symbol}"
        );
        assert!(entries.iter().all(|e| str_field(e, "probe") == spec));
        assert!(str_field(entries[0], "module").contains("libc"));
        assert_eq!(retvals(&events, symbol), vec![1, 2, 3, 4, 5, 3]);
    }
}

#[test]
fn own_ifunc_traces_the_chosen_implementation() {
    let prog = fixture("ifuncs", Variant::Pie);
    let (run, events) = trace_json("ifunc_pick", &["-s", "pick"], &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        entry_counts(&events),
        counts(&[("pick_impl", 4)]),
        "{}",
        show(&events)
    );
    assert!(of_kind(&events, "entry")
        .iter()
        .all(|e| str_field(e, "probe") == "pick"));
    assert_eq!(retvals(&events, "pick_impl"), vec![1, 2, 3, 4]);
}

#[test]
fn glob_over_all_of_libc() {
    let prog = fixture("ifuncs", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    let (run, events) = trace_json("libc_all", &["-s", "libc:*"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "libc:*");
    let strlen: Vec<&Value> = of_kind(&events, "entry")
        .into_iter()
        .filter(|e| {
            let s = str_field(e, "symbol");
            s == "strlen" || s.starts_with("__strlen_")
        })
        .collect();
    assert_eq!(strlen.len(), 6, "{}", show(&events));
    // Nothing is skipped: every function's first instruction can be
    // stepped, setjmp is probed (entry-only), and an IFUNC no GOT slot
    // resolves yet (bound lazily) is watched at its resolver.
    let warnings: Vec<&Value> = of_kind(&events, "warning")
        .into_iter()
        .filter(|w| str_field(w, "probe") == "libc:*")
        .collect();
    assert_eq!(warnings, Vec::<&Value>::new(), "{}", show(&events));

    // The summary lists what was called, with exact counts.
    let run = run_rtrace(&["-c", "-s", "libc:str*"], &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let rows: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("[libc:str*]"))
        .collect();
    let strlen = rows
        .iter()
        .find(|l| l.contains(" strlen [") || l.contains(" __strlen_"))
        .unwrap_or_else(|| panic!("no strlen row:\n{}", run.stderr));
    assert_eq!(strlen.split_whitespace().next(), Some("6"), "{strlen}");
    // Only functions that were called have a row.
    for row in rows {
        let calls: u64 = row.split_whitespace().next().unwrap().parse().unwrap();
        assert!(calls > 0, "{row}");
    }
}

#[test]
fn glob_over_all_of_libc_under_exceptions_threads_and_forks() {
    // `__libc_start_main` never returns: probed entry-only, so an exception
    // (whose unwinder moves calls in flight to their return sites) does not
    // trip over the `hlt` after its call.
    for name in ["thrower", "threads", "forker", "longjmper", "backtracer"] {
        let prog = fixture(name, Variant::Pie);
        let untraced = run_untraced(&prog, &[]);
        let (run, events) = trace_json(&format!("libc_all_{name}"), &["-s", "libc:*"], &prog, &[]);
        assert_same_as_untraced(&run, &untraced, &format!("libc:* on {name}"));
        let start = of_symbol(&events, "entry", "__libc_start_main");
        assert_eq!(start.len(), 1, "{name}");
        assert!(of_symbol(&events, "return", "__libc_start_main").is_empty());
    }
}

#[test]
fn glob_over_every_function_of_every_module() {
    // `_start` is entered with argc where a return address would be: it is
    // probed entry-only. Exceptions run through libstdc++ and libgcc_s probes.
    for name in ["thrower", "rnames"] {
        let prog = fixture(name, Variant::Pie);
        let untraced = run_untraced(&prog, &[]);
        let (run, events) = trace_json(&format!("star_{name}"), &["-s", "*"], &prog, &[]);
        assert_same_as_untraced(&run, &untraced, &format!("* on {name}"));
        assert_eq!(of_symbol(&events, "entry", "_start").len(), 1, "{name}");
        assert!(of_symbol(&events, "return", "_start").is_empty());
        assert_eq!(of_symbol(&events, "return", "main").len(), 1, "{name}");
    }
}

/// Every function of libc armed at once: thousands of probes, the program
/// runs as untraced. (How long arming takes is measured by the benchmark,
/// not here: test machines are shared.)
#[test]
fn arming_all_of_libc() {
    let (run, events) = trace_json(
        "libc_everything",
        &["-s", "libc:*"],
        std::path::Path::new("/bin/true"),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let attach = of_kind(&events, "attach");
    assert_eq!(attach.len(), 1, "{}", show(&events));
    let armed = attach[0]["probes"].as_u64().unwrap();
    assert!(armed > 2000, "{armed} sites armed");
}

/// Runs `rtrace ARGS` (no program to trace) to completion.
fn rtrace_only(args: &[&str]) -> crate::fixtures::Run {
    let mut cmd = std::process::Command::new(crate::fixtures::rtrace_bin());
    cmd.args(args);
    crate::fixtures::run_command(cmd, Duration::from_secs(60))
}

#[test]
fn list_reads_the_program_without_running_it() {
    let prog = fixture("names", Variant::Pie);
    let p = prog.to_str().unwrap();
    let run = rtrace_only(&["-l", "ns::*", "inner", "--", p]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split('\t').collect())
        .collect();
    let symbols: Vec<&str> = lines.iter().map(|f| f[2]).collect();
    assert_eq!(
        symbols,
        [
            "ns::Class::method(int)",
            "ns::Class::peek() const",
            "ns::over(int)",
            "ns::over(double)",
            "ns::twice(int)",
            "ns::Class::Class(int)",
            "inner(int)",
        ],
        "{}",
        run.stdout
    );
    for f in &lines {
        assert_eq!(f[1], "names");
        assert!(f[3].contains("names.cpp:"), "{f:?}");
    }
    // Link-time addresses, as nm prints them.
    let inner = crate::fixtures::symbol_value(&prog, "_Z5inneri");
    assert_eq!(lines[6][0], format!("{inner:#x}"));
    assert!(lines[6][3].ends_with("names.cpp:20"), "{:?}", lines[6]);

    // Libraries it needs are read too; an IFUNC shows its resolver.
    let prog = fixture("ifuncs", Variant::Pie);
    let run = rtrace_only(&["-l", "strlen", "--", prog.to_str().unwrap()]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let fields: Vec<&str> = run.stdout.trim_end().split('\t').collect();
    assert_eq!(fields[1], "libc.so.6", "{}", run.stdout);
    assert_eq!(fields[2], "strlen");
    assert_eq!(fields.last(), Some(&"ifunc strlen resolver"));
}

#[test]
fn list_offsets_and_lines() {
    let prog = fixture("count", Variant::Pie);
    let run = rtrace_only(&["-l", "work+0x4", "count.c:22", "--", prog.to_str().unwrap()]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(lines[0][2], "work+0x4");
    let work = crate::fixtures::symbol_value(&prog, "work");
    assert_eq!(lines[0][0], format!("{:#x}", work + 4));
    assert!(lines[1][2].starts_with("work+0x"), "{:?}", lines[1]);
    assert!(lines[1][3].ends_with("count.c:22"), "{:?}", lines[1]);
}

#[test]
fn list_in_a_running_process_shows_ifunc_implementations() {
    let mut child = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = child.id().to_string();
    // Wait until the dynamic linker has mapped libc.
    let start = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .contains("libc.so")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "libc never mapped"
        );
        std::thread::yield_now();
    }
    let run = rtrace_only(&["-l", "libc:strlen", "libc:nanosleep", "-p", &pid]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0][0].starts_with("0x7"),
        "runtime address: {:?}",
        lines[0]
    );
    assert_eq!(lines[0].last(), Some(&"ifunc strlen"), "{:?}", lines[0]);
    assert_eq!(lines[1][2], "nanosleep");
}

#[test]
fn list_errors() {
    let prog = fixture("names", Variant::Pie);
    let p = prog.to_str().unwrap();
    let run = rtrace_only(&["-l", "no_such_function", "--", p]);
    let line = crate::events::assert_one_error_line(&run, 1, "list nothing");
    assert!(line.contains("no_such_function"), "{line}");
    let run = rtrace_only(&["-l", "libnope:f", "--", p]);
    crate::events::assert_one_error_line(&run, 1, "list in a module not loaded");
    let run = rtrace_only(&["-l", "inner", "-s", "inner", "--", p]);
    crate::events::assert_one_error_line(&run, 2, "list and trace");
    let run = rtrace_only(&["-l", "inner"]);
    crate::events::assert_one_error_line(&run, 2, "list without a target");
    // Options that shape a trace are refused, not ignored.
    for option in ["--json", "-c", "--entry-only", "-f"] {
        let run = rtrace_only(&["-l", "inner", option, "--", p]);
        let line = crate::events::assert_one_error_line(&run, 2, option);
        assert!(line.contains(option), "{line}");
        assert_eq!(run.stdout, "", "{option}");
    }
}

/// `-o FILE` with `--list`: the table goes to the file, nothing to stdout.
#[test]
fn list_to_a_file() {
    let prog = fixture("names", Variant::Pie);
    let p = prog.to_str().unwrap();
    let to_stdout = rtrace_only(&["-l", "inner", "--", p]);
    assert_eq!(to_stdout.code(), 0, "{}", to_stdout.stderr);
    let file = crate::events::temp_path("list_to_a_file.txt");
    let run = rtrace_only(&["-l", "inner", "-o", file.to_str().unwrap(), "--", p]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), to_stdout.stdout);
    assert_eq!(to_stdout.stdout.lines().count(), 1, "{}", to_stdout.stdout);
}

/// In a static executable the IFUNC slots are filled by the program's own
/// start code, after the exec stop: their unrelocated contents are not taken
/// for an answer; the resolver is watched, and the implementation it returns
/// armed before the start code can call it. main's 6 calls are all there
/// (the start code and printf may add their own before and after).
#[test]
fn ifunc_in_a_static_executable_is_traced_at_its_resolvers_answer() {
    for variant in [Variant::Static, Variant::StaticPie] {
        let prog = fixture("ifuncs", variant);
        let untraced = run_untraced(&prog, &[]);
        let (run, events) = trace_json("static_strlen", &["-s", "strlen"], &prog, &[]);
        assert_same_as_untraced(&run, &untraced, "static strlen");
        let entries = of_kind(&events, "entry");
        let symbol = str_field(entries[0], "symbol");
        assert!(symbol.starts_with("__strlen_"), "{variant}: {symbol}");
        let got = retvals(&events, symbol);
        let mains = [1, 2, 3, 4, 5, 3];
        assert!(
            got.windows(6).any(|w| w == mains),
            "{variant}: {got:?}\n{}",
            show(&events)
        );
    }
}

/// With lazy binding (the default) no GOT slot holds `strncat`'s or
/// `wcsncmp`'s implementation before the program's first call of each (libc
/// calls neither): the resolver's answer to the dynamic linker's binding is
/// armed before the call reaches it, so the first call is seen like every
/// other. The same with every slot bound at startup, and in a static
/// executable.
#[test]
fn lazily_bound_ifuncs_miss_no_call() {
    for variant in [
        Variant::Pie,
        Variant::O2,
        Variant::BindNow,
        Variant::NoPlt,
        Variant::Static,
    ] {
        let prog = fixture("lazyifunc", variant);
        let untraced = run_untraced(&prog, &[]);
        let qualified = &["-s", "libc:strncat", "-s", "libc:wcsncmp"][..];
        // A static executable has no libc module to name.
        let qualified = (variant != Variant::Static).then_some(qualified);
        for specs in [&["-s", "strncat", "-s", "wcsncmp"][..]]
            .into_iter()
            .chain(qualified)
        {
            let what = format!("{specs:?} -- lazyifunc ({variant})");
            let (run, events) = trace_json("lazy_ifunc", specs, &prog, &[]);
            assert_same_as_untraced(&run, &untraced, &what);
            let entries = of_kind(&events, "entry");
            let by_probe = |p: &str| {
                entries
                    .iter()
                    .filter(|e| str_field(e, "probe").ends_with(p))
                    .count()
            };
            assert_eq!(
                (by_probe("strncat"), by_probe("wcsncmp")),
                (3, 1),
                "{what}\n{}",
                show(&events)
            );
            assert!(
                entries
                    .iter()
                    .all(|e| str_field(e, "module").ends_with("libc.so.6")
                        || variant == Variant::Static),
                "{what}"
            );
            assert_eq!(
                of_kind(&events, "return").len(),
                4,
                "{what}\n{}",
                show(&events)
            );
            assert_eq!(
                of_kind(&events, "warning").len(),
                0,
                "{what}\n{}",
                show(&events)
            );
        }
    }
    // A glob over libc sees them too.
    let prog = fixture("lazyifunc", Variant::Pie);
    let (run, events) = trace_json(
        "lazy_ifunc_glob",
        &["-s", "libc:*ncat", "-s", "libc:wcsn*"],
        &prog,
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(of_kind(&events, "entry").len(), 4, "{}", show(&events));
}

/// The same Rust program built with v0 mangling (`_R…`): matched by path and
/// shown demangled, without the crate disambiguator.
#[test]
fn rust_v0_mangled_functions_by_path() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("it");
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("rnames_v0");
    let source = crate::fixtures::source_dir().join("rnames.rs");
    let out = std::process::Command::new("rustc")
        .args([
            "-C",
            "symbol-mangling-version=v0",
            "-C",
            "debuginfo=2",
            "-o",
        ])
        .arg(&prog)
        .arg(&source)
        .output()
        .expect("run rustc");
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&prog).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    assert!(
        elf.syms
            .iter()
            .filter_map(|s| elf.strtab.get_at(s.st_name))
            .any(|n| n.starts_with("_R") && n.contains("6rnames5parse")),
        "v0 symbols in the build"
    );
    let untraced = run_untraced(&prog, &[]);
    let (run, events) = trace_json("rnames_v0", &["-s", "rnames::parse"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "rnames v0");
    assert_eq!(
        entry_counts(&events),
        counts(&[("rnames::parse", 3)]),
        "{}",
        show(&events)
    );
    assert_eq!(retvals(&events, "rnames::parse"), vec![1, 2, 3]);
}

/// GCC moves thrower's throw into `thrower(long) [clone .cold]`, a fragment
/// jumped to, never called: `-s thrower` arms thrower alone, and prints one
/// line per call (the throwing call unfinished, nothing for the fragment).
/// `-l` shows the fragment, marked as not probed, and so does a glob's list.
#[test]
fn cold_fragments_are_not_probed_and_said_in_the_list() {
    let prog = fixture("coldsplit", Variant::O2);
    let untraced = run_untraced(&prog, &["2"]);
    assert_eq!(untraced.stdout, "sum=1\n");
    let run = run_rtrace(&["--color", "never", "-s", "thrower"], &prog, &["2"]);
    assert_same_as_untraced(&run, &untraced, "-s thrower");
    let text = normalize(&run.stderr);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "rtrace: attached to pid N (1 thread), 1 probe armed, returns: R",
        "{text}"
    );
    let calls: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("[pid N]"))
        .collect();
    assert_eq!(calls.len(), 3, "{text}");
    assert!(calls.iter().all(|l| !l.contains("cold")), "{text}");
    assert!(calls[0].ends_with("(x=-1) ..."), "{text}");

    for spec in ["thrower", "thro*"] {
        let list = run_rtrace(&["-l", spec], &prog, &[]);
        assert_eq!(list.code(), 0, "{}", list.stderr);
        let rows: Vec<Vec<&str>> = list
            .stdout
            .lines()
            .filter(|l| l.contains("coldsplit\t"))
            .map(|l| l.split('\t').collect())
            .collect();
        assert_eq!(rows.len(), 2, "{spec}: {}", list.stdout);
        assert_eq!(rows[0][2], "thrower(long)", "{spec}: {}", list.stdout);
        assert!(
            !rows[0].iter().any(|f| f.starts_with("not probed")),
            "{}",
            list.stdout
        );
        assert_eq!(
            rows[1][2], "thrower(long) [clone .cold]",
            "{spec}: {}",
            list.stdout
        );
        assert_eq!(
            rows[1].last().copied(),
            Some("not probed: a .cold fragment: part of a function, jumped to, not called"),
            "{spec}: {}",
            list.stdout
        );
    }
}

/// `rtrace -l work ./prog` lists as `rtrace -l work -- ./prog` does: the
/// list's last word is the program when it names a file, as ltrace users
/// type it.
#[test]
fn list_takes_the_program_without_dashes() {
    let prog = fixture("count", Variant::Pie);
    let path = prog.to_str().expect("UTF-8 path");
    let with = run_rtrace(&["-l", "work", "twice"], &prog, &[]);
    assert_eq!(with.code(), 0, "{}", with.stderr);
    assert_eq!(with.stdout.lines().count(), 2, "{}", with.stdout);
    let mut cmd = std::process::Command::new(crate::fixtures::rtrace_bin());
    cmd.args(["-l", "work", "twice", path]);
    let without = crate::fixtures::run_command(cmd, crate::fixtures::TIMEOUT);
    assert_eq!(without.code(), 0, "{}", without.stderr);
    assert_eq!(without.stdout, with.stdout);
}

/// An IFUNC whose resolver answers with the vDSO's `time` (bound lazily, at
/// the first call): rtrace cannot probe the kernel's code, and says that in
/// those words, once, rather than "not code"; the program runs as untraced.
#[test]
fn an_ifunc_resolved_into_the_vdso_is_said_to_be_there() {
    let prog = fixture("vdsoifunc", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!((untraced.stdout.as_str(), untraced.code()), ("ok\n", 0));
    let run = run_rtrace(&["-s", "libvdso:kernel_time"], &prog, &[]);
    assert_same_as_untraced(&run, &untraced, "-s libvdso:kernel_time -- vdsoifunc");
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("rtrace: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    let (head, tail) = warnings[0]
        .split_once(" returned 0x")
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert_eq!(
        head,
        "rtrace: warning: probe libvdso:kernel_time: the resolver of the IFUNC kernel_time"
    );
    let (address, said) = tail.split_once(", ").unwrap();
    assert!(u64::from_str_radix(address, 16).is_ok(), "{address}");
    assert_eq!(
        said,
        "in the vDSO (the kernel's code in every process, which rtrace does not probe): its \
         calls through that binding are not traced"
    );
}
