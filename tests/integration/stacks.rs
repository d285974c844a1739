//! User stacks (`--stack`, `--folded`, `--flamegraph`, `Hit::user_stack`)
//! on `stacker`, whose call chains are known to the line: built without
//! frame pointers in every variant, through libc's qsort, through a
//! function without CFI, and with return probes rewriting the return
//! addresses of the outer calls.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use serde_json::Value;

use rtrace::{Handler, Hit, Options, Outcome, RuntimeAddr};

use crate::events::{assert_same_as_untraced, of_symbol, retvals, show, temp_path, trace_json};
use crate::fixtures::{bounded, fixture, normalize, run_rtrace, run_untraced, source_dir, Variant};

/// The fixture's own functions.
const OWN: [&str; 6] = ["a", "b", "c", "cmp", "main", "through_fp"];

/// One frame of a JSON `stack`: symbol ("" when null), module, offset,
/// source file and line (when present).
#[derive(Clone, Debug, PartialEq, Eq)]
struct F {
    symbol: String,
    module: String,
    offset: u64,
    file: Option<String>,
    line: Option<u64>,
}

fn frames(event: &Value) -> Vec<F> {
    event["stack"]
        .as_array()
        .unwrap_or_else(|| panic!("no stack array: {event}"))
        .iter()
        .map(|f| F {
            symbol: f["symbol"].as_str().unwrap_or("").to_string(),
            module: f["module"].as_str().unwrap_or("").to_string(),
            offset: f["offset"].as_u64().expect("offset"),
            file: f.get("file").and_then(Value::as_str).map(String::from),
            line: f.get("line").and_then(Value::as_u64),
        })
        .collect()
}

/// Whether the variant's program has a line table (its own or its debug
/// file's).
fn has_lines(variant: Variant) -> bool {
    !matches!(variant, Variant::NoDebug | Variant::Stripped)
}

/// The line of c's first instruction.
fn entry_line(variant: Variant) -> u64 {
    if variant == Variant::O2 {
        32
    } else {
        30
    }
}

/// Checks one stack of `c` against the chain `own` (the fixture's frames
/// from c to main, with the lines their return addresses name), with
/// `libc_between` frames of the C library expected between the second
/// frame and main (qsort's), and the start code above main ending in
/// `_start`.
fn check_chain(
    stack: &[F],
    prog: &Path,
    variant: Variant,
    own: &[(&str, Option<u64>)],
    libc_between: bool,
    what: &str,
) {
    let prog = prog.to_str().unwrap();
    let src = source_dir().join("stacker.c");
    let src = src.to_str().unwrap();
    let libc_module = |f: &F| match variant {
        Variant::Static | Variant::StaticPie => f.module == prog,
        _ => f.module.ends_with("/libc.so.6"),
    };
    let mut at = 0;
    for (k, (name, line)) in own.iter().enumerate() {
        if k == own.len() - 1 && libc_between {
            let start = at;
            while at < stack.len() && stack[at].symbol != "main" {
                assert!(
                    libc_module(&stack[at]) && !OWN.contains(&stack[at].symbol.as_str()),
                    "{what}: frame {at} should be in the C library: {stack:#?}"
                );
                at += 1;
            }
            assert!(at > start, "{what}: no libc frame before main: {stack:#?}");
        }
        let f = stack
            .get(at)
            .unwrap_or_else(|| panic!("{what}: no frame {at} ({name}): {stack:#?}"));
        assert_eq!(f.symbol, *name, "{what}: frame {at}: {stack:#?}");
        assert_eq!(f.module, prog, "{what}: frame {at}");
        let want_line = line.filter(|_| has_lines(variant));
        assert_eq!(f.line, want_line, "{what}: line of frame {at} ({name})");
        assert_eq!(
            f.file.as_deref(),
            want_line.map(|_| src),
            "{what}: file of frame {at}"
        );
        at += 1;
    }
    assert_eq!(stack[0].offset, 0, "{what}: the probe is at c's entry");
    // Above main: the C library's start code, then _start, the outermost.
    let rest = &stack[at..];
    let last = rest
        .last()
        .unwrap_or_else(|| panic!("{what}: nothing above main: {stack:#?}"));
    assert_eq!(
        (last.symbol.as_str(), last.module.as_str()),
        ("_start", prog),
        "{what}: {stack:#?}"
    );
    assert!(rest.len() >= 2, "{what}: start code above main: {stack:#?}");
    for f in &rest[..rest.len() - 1] {
        assert!(libc_module(f), "{what}: {f:?} above main");
    }
}

/// A chain of the fixture's frames: (function, line of its frame).
type Chain = Vec<(&'static str, Option<u64>)>;

/// The chains `stacker 2` makes, in order, as (function, line) from c out
/// to main; the third goes through qsort.
fn expected_chains(variant: Variant) -> Vec<(Chain, bool)> {
    let c = ("c", Some(entry_line(variant)));
    let a_chain = vec![c, ("b", Some(37)), ("a", Some(44)), ("main", Some(77))];
    vec![
        (a_chain.clone(), false),
        (a_chain, false),
        (
            vec![c, ("b", Some(37)), ("through_fp", None), ("main", Some(80))],
            false,
        ),
        (vec![c, ("cmp", Some(53)), ("main", Some(83))], true),
    ]
}

#[test]
fn stacks_name_the_call_chains_in_every_variant() {
    for variant in Variant::ALL {
        let prog = fixture("stacker", variant);
        let untraced = run_untraced(&prog, &["2"]);
        let test = format!("stacks_chain_{variant}");
        let (run, events) = trace_json(&test, &["--stack", "-s", "c"], &prog, &["2"]);
        let what = format!("rtrace --stack -s c -- stacker 2 ({variant})");
        assert_same_as_untraced(&run, &untraced, &what);
        let entries = of_symbol(&events, "entry", "c");
        assert_eq!(entries.len(), 4, "{what}\n{}", show(&events));
        for (i, (entry, (chain, through_libc))) in
            entries.iter().zip(expected_chains(variant)).enumerate()
        {
            let stack = frames(entry);
            check_chain(
                &stack,
                &prog,
                variant,
                &chain,
                through_libc,
                &format!("{what}, call {i}"),
            );
            assert_eq!(
                entry["stack"][0]["address"], entry["address"],
                "{what}: frame 0 is the probed address"
            );
            assert!(entry.get("stack_truncated").is_none());
        }
        assert_eq!(retvals(&events, "c"), vec![9, 9, 12, 3], "{what}");
    }
}

#[test]
fn return_probes_on_the_outer_calls_leave_the_stacks_unchanged() {
    // Every caller of c has its return watched by the trampoline while c
    // is hit: main, a, b, through_fp, qsort and cmp.
    let outer = [
        "-s",
        "main",
        "-s",
        "a",
        "-s",
        "b",
        "-s",
        "through_fp",
        "-s",
        "qsort",
        "-s",
        "cmp",
    ];
    for variant in [Variant::Pie, Variant::O2, Variant::NoPie, Variant::Static] {
        let prog = fixture("stacker", variant);
        let untraced = run_untraced(&prog, &["2"]);
        let test = format!("stacks_plain_{variant}");
        let (_, plain) = trace_json(
            &test,
            &["--stack", "--entry-only", "-s", "c"],
            &prog,
            &["2"],
        );
        let mut args = vec!["--stack", "-s", "c"];
        args.extend(outer);
        let test = format!("stacks_tramp_{variant}");
        let (run, events) = trace_json(&test, &args, &prog, &["2"]);
        let what = format!("rtrace --stack -s c and return probes ({variant})");
        assert_same_as_untraced(&run, &untraced, &what);
        assert_eq!(retvals(&events, "a"), vec![9, 9], "{what}");
        assert_eq!(retvals(&events, "b"), vec![9, 9, 12], "{what}");
        assert_eq!(retvals(&events, "through_fp"), vec![12], "{what}");
        assert_eq!(retvals(&events, "main"), vec![0], "{what}");
        let with: Vec<Vec<F>> = of_symbol(&events, "entry", "c")
            .iter()
            .map(|e| frames(e))
            .collect();
        let without: Vec<Vec<F>> = of_symbol(&plain, "entry", "c")
            .iter()
            .map(|e| frames(e))
            .collect();
        assert_eq!(with.len(), 4, "{what}\n{}", show(&events));
        assert_eq!(with, without, "{what}: the trampoline changed a stack");
        for (i, (stack, (chain, through_libc))) in
            with.iter().zip(expected_chains(variant)).enumerate()
        {
            check_chain(
                stack,
                &prog,
                variant,
                &chain,
                through_libc,
                &format!("{what}, call {i}"),
            );
        }
        // The outer functions' own entries show their stacks too: a's is
        // [a, main, …] while main's return is watched.
        let a_entry = &of_symbol(&events, "entry", "a")[0];
        let names: Vec<String> = frames(a_entry).into_iter().map(|f| f.symbol).collect();
        assert_eq!(names[..2], ["a", "main"], "{what}");
    }
}

#[test]
fn text_stack_lines_follow_their_call() {
    let prog = fixture("stacker", Variant::Pie);
    let out = temp_path("stacks_text.txt");
    let run = run_rtrace(
        &["--stack", "-s", "c", "-s", "b", "-o", out.to_str().unwrap()],
        &prog,
        &["1"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let text = normalize(&std::fs::read_to_string(&out).unwrap());
    let prog_s = prog.display().to_string();
    let src = source_dir().join("stacker.c").display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    // b's entry is held while c runs: it is printed unfinished, with its
    // stack under it, then c's whole call with its stack, then b's return.
    let expected = [
        "[pid N] b(x=2) ...".to_string(),
        format!("    #0 0xADDR b+0x0 ({prog_s}) {src}:36"),
        format!("    #1 0xADDR a+0x15 ({prog_s}) {src}:44"),
        format!("    #2 0xADDR main+0x4d ({prog_s}) {src}:77"),
    ];
    assert_eq!(lines[..4], expected, "{text}");
    let mut i = 4;
    while lines[i].starts_with("    #") {
        i += 1;
    }
    assert!(lines[i - 1].contains(" _start+0x"), "{text}");
    let expected = [
        "[pid N] c(x=3) = 9 <T>".to_string(),
        format!("    #0 0xADDR c+0x0 ({prog_s}) {src}:30"),
        format!("    #1 0xADDR b+0x16 ({prog_s}) {src}:37"),
        format!("    #2 0xADDR a+0x15 ({prog_s}) {src}:44"),
        format!("    #3 0xADDR main+0x4d ({prog_s}) {src}:77"),
    ];
    assert_eq!(lines[i..i + 5], expected, "{text}");
    i += 5;
    while lines[i].starts_with("    #") {
        i += 1;
    }
    assert_eq!(lines[i], "[pid N] ... b resumed = 9 <T>", "{text}");
}

#[test]
fn the_depth_limit_cuts_stacks_and_says_so() {
    let prog = fixture("stacker", Variant::O2);
    let (_, events) = trace_json(
        "stacks_depth",
        &["--stack", "--stack-depth", "2", "-s", "c"],
        &prog,
        &["1"],
    );
    let entries = of_symbol(&events, "entry", "c");
    assert_eq!(entries.len(), 3, "{}", show(&events));
    let names = |e: &Value| -> Vec<String> { frames(e).into_iter().map(|f| f.symbol).collect() };
    assert_eq!(names(entries[0]), ["c", "b"]);
    assert_eq!(names(entries[2]), ["c", "cmp"]);
    for e in entries {
        assert_eq!(e["stack_truncated"], true, "{e}");
    }
}

/// The folded lines of a file, as stack → count.
fn folded(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    let mut previous: Option<String> = None;
    for line in text.lines() {
        let (stack, count) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `stack count`: {line:?}"));
        if let Some(p) = &previous {
            assert!(
                p.as_str() < line,
                "lines in byte order: {p:?} then {line:?}"
            );
        }
        previous = Some(line.to_string());
        out.insert(stack.to_string(), count.parse().expect("a count"));
    }
    out
}

#[test]
fn folded_stacks_count_every_chain() {
    for variant in [Variant::Pie, Variant::O2, Variant::Static] {
        let prog = fixture("stacker", variant);
        let path = temp_path(&format!("stacks_{variant}.folded"));
        let run = run_rtrace(
            &["-c", "-s", "c", "--folded", path.to_str().unwrap()],
            &prog,
            &["5"],
        );
        let what = format!("rtrace --folded -- stacker 5 ({variant})");
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        let lines = folded(&path);
        assert_eq!(lines.len(), 3, "{what}: {lines:#?}");
        // The start code, root first, is the same for every chain.
        let (a_chain, n) = lines
            .iter()
            .find(|(s, _)| s.ends_with(";main;a;b;c"))
            .unwrap_or_else(|| panic!("{what}: no main;a;b;c line: {lines:#?}"));
        assert_eq!(*n, 5, "{what}");
        let root = a_chain.strip_suffix(";main;a;b;c").unwrap();
        assert!(root.starts_with("_start;"), "{what}: {root}");
        assert_eq!(
            lines.get(&format!("{root};main;through_fp;b;c")),
            Some(&1),
            "{what}: {lines:#?}"
        );
        let (qsort_chain, n) = lines
            .iter()
            .find(|(s, _)| s.ends_with(";cmp;c"))
            .unwrap_or_else(|| panic!("{what}: no cmp;c line: {lines:#?}"));
        assert_eq!(*n, 1, "{what}");
        let libc = qsort_chain
            .strip_prefix(&format!("{root};main;"))
            .and_then(|s| s.strip_suffix(";cmp;c"))
            .unwrap_or_else(|| panic!("{what}: {qsort_chain}"));
        assert!(
            libc.split(';').all(|f| !OWN.contains(&f)) && !libc.is_empty(),
            "{what}: {libc}"
        );
    }
}

#[test]
fn flamegraph_svg_is_well_formed_and_names_the_frames() {
    use quick_xml::events::Event;
    let prog = fixture("stacker", Variant::Pie);
    let svg = temp_path("stacks.svg");
    let folded_path = temp_path("stacks_with_svg.folded");
    let run = run_rtrace(
        &[
            "-c",
            "-s",
            "c",
            "--flamegraph",
            svg.to_str().unwrap(),
            "--folded",
            folded_path.to_str().unwrap(),
        ],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&svg).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    reader.config_mut().check_end_names = true;
    let (mut depth, mut in_title, mut titles) = (0i32, false, Vec::new());
    let mut root = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                depth += 1;
                root.get_or_insert_with(|| e.name().as_ref().to_vec());
                in_title = e.name().as_ref() == b"title";
            }
            Ok(Event::End(_)) => {
                depth -= 1;
                in_title = false;
            }
            Ok(Event::Text(t)) if in_title => titles.push(t.decode().unwrap().into_owned()),
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed XML at {}: {e}", reader.error_position()),
        }
    }
    assert_eq!(depth, 0, "every element closed");
    assert_eq!(root.as_deref(), Some(&b"svg"[..]));
    // Each frame's box is titled `name (hits, percent)`: 5 hits in all.
    let hits = |name: &str| -> Vec<String> {
        titles
            .iter()
            .filter(|t| t.starts_with(&format!("{name} (")))
            .cloned()
            .collect()
    };
    assert_eq!(hits("all"), ["all (5 hits, 100%)"], "{titles:?}");
    assert_eq!(hits("a"), ["a (3 hits, 60.00%)"], "{titles:?}");
    assert_eq!(hits("through_fp"), ["through_fp (1 hits, 20.00%)"]);
    assert_eq!(hits("cmp"), ["cmp (1 hits, 20.00%)"]);
    assert_eq!(hits("main"), ["main (5 hits, 100.00%)"]);
    assert_eq!(hits("_start"), ["_start (5 hits, 100.00%)"]);
    let mut b = hits("b");
    b.sort();
    assert_eq!(b, ["b (1 hits, 20.00%)", "b (3 hits, 60.00%)"]);
    assert_eq!(hits("c").len(), 3, "c under b twice and under cmp");
    // The same hits as the folded file.
    let counts: u64 = folded(&folded_path).values().sum();
    assert_eq!(counts, 5);
}

/// What a library handler saw of the stack and the trampoline at b.
#[derive(Default, Debug)]
struct SeenAtB {
    entry_stacks: Vec<Vec<String>>,
    post_stacks: Vec<Vec<String>>,
    /// (word at the entry sp during on_post, trampoline, original_return of
    /// that slot, the return address at entry).
    slots: Vec<(u64, Option<RuntimeAddr>, Option<RuntimeAddr>, u64)>,
}

struct AtB(Rc<RefCell<SeenAtB>>, u64, u64);

fn names(hit: &Hit<'_>) -> Vec<String> {
    hit.user_stack(8)
        .frames
        .iter()
        .map(|f| f.symbol.as_deref().unwrap_or("??").to_string())
        .collect()
}

impl Handler for AtB {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.1 = hit.regs().sp();
        self.2 = hit.read_u64(RuntimeAddr(self.1))?;
        // This call's own slot still holds its real return address.
        assert_eq!(hit.original_return(RuntimeAddr(self.1)), None);
        self.0.borrow_mut().entry_stacks.push(names(hit));
        Ok(())
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let word = hit.read_u64(RuntimeAddr(self.1))?;
        let original = hit.original_return(RuntimeAddr(self.1));
        let mut seen = self.0.borrow_mut();
        seen.slots.push((word, hit.trampoline(), original, self.2));
        seen.post_stacks.push(names(hit));
        Ok(())
    }
}

#[test]
fn a_handler_walks_the_stack_before_and_after_its_return_address_is_rewritten() {
    bounded(move |session| {
        let prog = fixture("stacker", Variant::O2);
        let mut tracer = session
            .launch(Command::new(&prog).arg("1"), Options::default())
            .unwrap();
        let seen = Rc::new(RefCell::new(SeenAtB::default()));
        tracer
            .add_probe("b".parse().unwrap(), AtB(seen.clone(), 0, 0))
            .unwrap();
        assert_eq!(tracer.run().unwrap(), Outcome::Exited(0));
        let seen = seen.borrow();
        assert_eq!(seen.entry_stacks.len(), 2, "{seen:?}");
        assert_eq!(seen.entry_stacks[0][..3], ["b", "a", "main"]);
        assert_eq!(seen.entry_stacks[1][..3], ["b", "through_fp", "main"]);
        // After the displaced instruction the slot holds the trampoline, and the
        // walk goes on with the real return address all the same.
        assert_eq!(seen.post_stacks, seen.entry_stacks);
        for &(word, trampoline, original, at_entry) in &seen.slots {
            let trampoline = trampoline.expect("a trampoline");
            assert_eq!(word, trampoline.get(), "the slot was rewritten");
            assert_eq!(original, Some(RuntimeAddr(at_entry)));
        }
    });
}

#[test]
fn stack_options_are_checked() {
    let prog = fixture("stacker", Variant::Pie);
    let run = run_rtrace(&["--stack-depth", "0", "--stack", "-s", "c"], &prog, &[]);
    let line = crate::events::assert_one_error_line(&run, 2, "--stack-depth 0");
    assert_eq!(
        line,
        "rtrace: --stack-depth must be at least 1 (see 'rtrace --help')"
    );
    let run = run_rtrace(&["-l", "c", "--stack"], &prog, &[]);
    crate::events::assert_one_error_line(&run, 2, "--list with --stack");
    let dir: PathBuf = temp_path("no-such-dir").join("x.folded");
    let run = run_rtrace(&["-s", "c", "--folded", dir.to_str().unwrap()], &prog, &[]);
    let line = crate::events::assert_one_error_line(&run, 1, "--folded into a missing directory");
    assert!(line.starts_with("rtrace: cannot create "), "{line}");
}
