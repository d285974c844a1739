//! The command-line tool in launch mode: function, offset, address and line
//! probes over the fixture variant matrix, the summary, the text format,
//! libc probes and probes on libraries loaded later.
//!
//! Every count here is exact: a fixture calls a function a documented number
//! of times, and rtrace must report each call once.

use std::fs;
use std::path::Path;
use std::process::Command;

use goblin::elf::{program_header, Elf};
use iced_x86::{Decoder, DecoderOptions};

use crate::events::{
    assert_one_error_line, assert_same_as_untraced, of_kind, of_symbol, retvals, show, str_field,
    trace_json,
};
use crate::fixtures::{
    code_matches_files, fixture, library, normalize, rtrace_bin, run_command, run_rtrace,
    run_untraced, source_dir, supports, symbol_value, Spawned, Variant, TIMEOUT,
};

/// `work(i)` returns 2*i+1, for i in 0..n.
fn expected_work_retvals(n: i64) -> Vec<i64> {
    (0..n).map(|i| 2 * i + 1).collect()
}

#[test]
fn count_work_every_variant_exact_entries_returns_and_values() {
    for variant in Variant::ALL {
        if !supports("count", variant) {
            continue;
        }
        let prog = fixture("count", variant);
        let untraced = run_untraced(&prog, &["50", "3"]);
        assert_eq!(untraced.stdout, "sum=2500\ntwice=41\n");
        assert_eq!(untraced.code(), 3);

        let test = format!("count_work_{variant}");
        let (run, events) = trace_json(&test, &["-s", "work"], &prog, &["50", "3"]);
        let what = format!("rtrace -s work -- count 50 3 ({variant})");
        assert_same_as_untraced(&run, &untraced, &what);
        assert_eq!(
            of_symbol(&events, "entry", "work").len(),
            50,
            "{what}: entries\n{}",
            show(&events)
        );
        assert_eq!(
            retvals(&events, "work"),
            expected_work_retvals(50),
            "{what}: return values in order\n{}",
            show(&events)
        );
        let exits = of_kind(&events, "exit");
        assert_eq!(exits.len(), 1, "{what}: one exit event\n{}", show(&events));
        assert_eq!(exits[0]["code"], 3, "{what}: exit event code");
    }
}

#[test]
fn count_twice_every_variant_one_call_returning_41() {
    for variant in Variant::ALL {
        if !supports("count", variant) {
            continue;
        }
        let prog = fixture("count", variant);
        let test = format!("count_twice_{variant}");
        let (run, events) = trace_json(&test, &["-s", "twice"], &prog, &["5"]);
        let what = format!("rtrace -s twice -- count 5 ({variant})");
        assert_eq!(run.stdout, "sum=25\ntwice=41\n", "{what}: stdout");
        assert_eq!(run.code(), 0, "{what}: status\n{}", run.stderr);
        assert_eq!(
            of_symbol(&events, "entry", "twice").len(),
            1,
            "{what}\n{}",
            show(&events)
        );
        assert_eq!(
            retvals(&events, "twice"),
            vec![41],
            "{what}\n{}",
            show(&events)
        );
        assert!(
            of_symbol(&events, "entry", "work").is_empty(),
            "{what}: work was not probed\n{}",
            show(&events)
        );
    }
}

#[test]
fn two_probes_on_one_function_both_report() {
    let prog = fixture("count", Variant::Pie);
    // Two specs naming one function: two probes behind one breakpoint. (The
    // same spec twice is one probe: `a_spec_given_twice_is_one_probe`.)
    let (run, events) = trace_json(
        "two_probes",
        &["-s", "work", "-s", "count:work"],
        &prog,
        &["50"],
    );
    assert_eq!(run.stdout, "sum=2500\ntwice=41\n");
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        of_symbol(&events, "entry", "work").len(),
        100,
        "two probes on work, 50 calls\n{}",
        show(&events)
    );
    assert_eq!(
        of_symbol(&events, "return", "work").len(),
        100,
        "{}",
        show(&events)
    );
}

#[test]
fn glob_matches_twice_only() {
    let prog = fixture("count", Variant::Pie);
    let (run, events) = trace_json("glob_tw", &["-s", "tw*"], &prog, &["7"]);
    assert_eq!(run.stdout, "sum=49\ntwice=41\n");
    let entries = of_kind(&events, "entry");
    assert_eq!(entries.len(), 1, "{}", show(&events));
    assert_eq!(str_field(entries[0], "symbol"), "twice");
    assert_eq!(str_field(entries[0], "probe"), "tw*");
    assert_eq!(retvals(&events, "twice"), vec![41]);
}

#[test]
fn module_qualified_by_executable_file_name() {
    let prog = fixture("count", Variant::Pie);
    let (run, events) = trace_json("module_qualified", &["-s", "count:work"], &prog, &["50"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.stdout, "sum=2500\ntwice=41\n");
    let entries = of_symbol(&events, "entry", "work");
    assert_eq!(entries.len(), 50, "{}", show(&events));
    assert_eq!(str_field(entries[0], "probe"), "count:work");
    assert_eq!(
        Path::new(str_field(entries[0], "module")),
        prog.as_path(),
        "module is the executable"
    );
    assert_eq!(retvals(&events, "work"), expected_work_retvals(50));
}

/// The offsets (from the function's start) of every instruction of
/// function `name` in the file, decoded from its bytes.
fn instruction_offsets(path: &Path, name: &str) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    let sym = elf
        .syms
        .iter()
        .find(|s| elf.strtab.get_at(s.st_name) == Some(name))
        .or_else(|| {
            elf.dynsyms
                .iter()
                .find(|s| elf.dynstrtab.get_at(s.st_name) == Some(name))
        })
        .unwrap_or_else(|| panic!("no {name} in {}", path.display()));
    assert!(sym.st_size > 0, "{name} has no size");
    let load = elf
        .program_headers
        .iter()
        .find(|ph| {
            ph.p_type == program_header::PT_LOAD
                && (ph.p_vaddr..ph.p_vaddr + ph.p_filesz).contains(&sym.st_value)
        })
        .expect("symbol in a PT_LOAD segment");
    let start = (sym.st_value - load.p_vaddr + load.p_offset) as usize;
    let code = &bytes[start..start + sym.st_size as usize];
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut offsets = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        assert!(
            !insn.is_invalid(),
            "{name}: undecodable byte at +{:#x}",
            insn.ip()
        );
        offsets.push(insn.ip());
    }
    offsets
}

#[test]
fn offset_probe_on_instruction_boundary_every_variant() {
    for variant in Variant::ALL {
        let prog = fixture("count", variant);
        let offsets = instruction_offsets(&prog, "work");
        assert!(offsets.len() >= 3, "{variant}: work is {offsets:?}");
        let off = offsets[1];
        let spec = format!("work+{off:#x}");
        let test = format!("offset_probe_{variant}");
        let (run, events) = trace_json(&test, &["-s", &spec], &prog, &["50"]);
        let what = format!("rtrace -s {spec} -- count 50 ({variant})");
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        assert_eq!(run.stdout, "sum=2500\ntwice=41\n", "{what}");
        let hits = of_kind(&events, "hit");
        assert_eq!(hits.len(), 50, "{what}: hits\n{}", show(&events));
        assert!(
            hits.iter().all(|h| str_field(h, "symbol") == "work"),
            "{what}: {}",
            show(&events)
        );
        assert!(
            of_kind(&events, "entry").is_empty() && of_kind(&events, "return").is_empty(),
            "{what}: offset probes report hits only\n{}",
            show(&events)
        );
    }
}

#[test]
fn offset_probe_inside_an_instruction_is_refused() {
    for variant in [Variant::Pie, Variant::O2, Variant::Cet] {
        let prog = fixture("count", variant);
        let offsets = instruction_offsets(&prog, "work");
        // One byte into the first instruction longer than one byte.
        let inside = offsets
            .windows(2)
            .find(|w| w[1] - w[0] > 1)
            .map(|w| w[0] + 1)
            .expect("an instruction of more than one byte");
        let spec = format!("work+{inside:#x}");
        let run = run_rtrace(&["-s", &spec], &prog, &["3"]);
        let what = format!("rtrace -s {spec} -- count 3 ({variant})");
        let line = assert_one_error_line(&run, 1, &what);
        assert!(
            line.contains("instruction boundary"),
            "{what}: message should say why: {line}"
        );
        assert_eq!(run.stdout, "", "{what}: the program must not have run");
    }
}

/// An address probe is checked as an offset is: inside an instruction, or
/// in data, it is refused before the program runs (a breakpoint there would
/// corrupt the instruction or the data).
#[test]
fn address_probes_inside_an_instruction_or_in_data_are_refused() {
    let nopie = fixture("count", Variant::NoPie);
    let work = symbol_value(&nopie, "work");
    let offsets = instruction_offsets(&nopie, "work");
    let inside = offsets
        .windows(2)
        .find(|w| w[1] - w[0] > 1)
        .map(|w| w[0] + 1)
        .expect("an instruction of more than one byte");
    let pie = fixture("count", Variant::Pie);
    let pie_work = symbol_value(&pie, "work");
    let rodata = section_address(&pie, ".rodata");
    let cases = [
        (
            format!("{:#x}", work + inside),
            &nopie,
            "instruction boundary",
        ),
        (
            format!("count:{:#x}", pie_work + inside),
            &pie,
            "instruction boundary",
        ),
        (format!("count:{rodata:#x}"), &pie, "not in its code"),
        // A library's function plus an offset, in launch mode: the program
        // is killed before it runs, not let go untraced.
        (
            format!("libc:getpid+{:#x}", 1),
            &pie,
            "instruction boundary",
        ),
    ];
    for (spec, prog, why) in cases {
        let run = run_rtrace(&["-s", &spec], prog, &["3"]);
        let what = format!("rtrace -s {spec}");
        let line = assert_one_error_line(&run, 1, &what);
        assert!(line.contains(why), "{what}: {line}");
        assert_eq!(run.stdout, "", "{what}: the program must not have run");
    }
}

/// The link-time address of section `name` of `path` (readelf).
fn section_address(path: &Path, name: &str) -> u64 {
    let out = std::process::Command::new("readelf")
        .arg("-SW")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == name))
        .unwrap_or_else(|| panic!("no {name} in {}", path.display()));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields.iter().position(|&w| w == name).unwrap();
    u64::from_str_radix(fields[at + 2], 16).unwrap()
}

/// `--pin` in launch mode: the program runs as untraced, every call counted.
#[test]
fn pinned_launch_reports_every_call() {
    let prog = fixture("threads", Variant::Pie);
    let untraced = run_untraced(&prog, &["4", "500"]);
    let (run, events) = trace_json(
        "pinned_launch",
        &["--pin", "-s", "work"],
        &prog,
        &["4", "500"],
    );
    assert_eq!(run.stdout, untraced.stdout, "{}", run.stderr);
    assert_eq!(run.code(), 0);
    assert_eq!(of_kind(&events, "entry").len(), 2000);
    assert_eq!(of_kind(&events, "return").len(), 2000);
}

/// The same spec twice is one probe: each call reported and counted once.
#[test]
fn a_spec_given_twice_is_one_probe() {
    let prog = fixture("count", Variant::Pie);
    let (run, events) = trace_json("spec_twice", &["-s", "work", "-s", "work"], &prog, &["3"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(of_kind(&events, "entry").len(), 3, "{}", show(&events));
    // `-c` counts, and writes no call.
    let (run, events) = trace_json(
        "spec_twice_counted",
        &["-c", "-s", "work", "-s", "work"],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(of_kind(&events, "entry").len(), 0, "{}", show(&events));
    let summaries = of_kind(&events, "summary");
    assert_eq!(summaries.len(), 1, "{}", show(&events));
    assert_eq!(summaries[0]["calls"], 3);
}

#[test]
fn absolute_address_probe_nopie() {
    let prog = fixture("count", Variant::NoPie);
    let spec = format!("{:#x}", symbol_value(&prog, "work"));
    let (run, events) = trace_json("address_nopie", &["-s", &spec], &prog, &["50"]);
    assert_eq!(run.code(), 0, "rtrace -s {spec}: {}", run.stderr);
    assert_eq!(run.stdout, "sum=2500\ntwice=41\n");
    let hits = of_kind(&events, "hit");
    assert_eq!(hits.len(), 50, "rtrace -s {spec}\n{}", show(&events));
    assert_eq!(str_field(hits[0], "address"), spec);
}

#[test]
fn module_relative_address_probe_pie() {
    let prog = fixture("count", Variant::Pie);
    let spec = format!("count:{:#x}", symbol_value(&prog, "work"));
    let (run, events) = trace_json("address_pie", &["-s", &spec], &prog, &["50"]);
    assert_eq!(run.code(), 0, "rtrace -s {spec}: {}", run.stderr);
    assert_eq!(run.stdout, "sum=2500\ntwice=41\n");
    let hits = of_kind(&events, "hit");
    assert_eq!(hits.len(), 50, "rtrace -s {spec}\n{}", show(&events));
    assert!(hits.iter().all(|h| str_field(h, "symbol") == "work"));
}

/// The 1-based line of count.c that contains `marker`.
fn line_of(file: &str, marker: &str) -> usize {
    let text = fs::read_to_string(source_dir().join(file)).unwrap();
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "{marker:?} must occur once in {file}");
    lines[0]
}

#[test]
fn line_probe_in_work_body() {
    let prog = fixture("count", Variant::Pie);
    let spec = format!("count.c:{}", line_of("count.c", "return doubled + 1;"));
    let (run, events) = trace_json("line_probe", &["-s", &spec], &prog, &["50"]);
    assert_eq!(run.code(), 0, "rtrace -s {spec}: {}", run.stderr);
    assert_eq!(run.stdout, "sum=2500\ntwice=41\n");
    let hits = of_kind(&events, "hit");
    assert_eq!(hits.len(), 50, "rtrace -s {spec}\n{}", show(&events));
    assert!(
        hits.iter().all(|h| str_field(h, "symbol") == "work"),
        "{}",
        show(&events)
    );
}

#[test]
fn entry_only_reports_no_returns() {
    let prog = fixture("count", Variant::Pie);
    let (run, events) = trace_json(
        "entry_only",
        &["--entry-only", "-s", "work"],
        &prog,
        &["50"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.stdout, "sum=2500\ntwice=41\n");
    assert_eq!(
        of_symbol(&events, "entry", "work").len(),
        50,
        "{}",
        show(&events)
    );
    assert_eq!(of_kind(&events, "return").len(), 0, "{}", show(&events));
}

/// JSON as scripts want it: `--json -c` writes the lifecycle events and
/// the summaries, no call (as text `-c` prints only the table); a summary of
/// hits (an entry-only probe) has no duration fields; a return carries the
/// probe's address, as its entry does.
#[test]
fn json_summaries_and_returns() {
    let prog = fixture("count", Variant::Pie);
    let (run, events) = trace_json(
        "json_counted",
        &["-c", "-s", "work", "-s", "twice", "--entry-only"],
        &prog,
        &["3"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    // (Fast probes add how each probe's sites run, `probe` events.)
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| str_field(e, "event"))
        .filter(|&k| k != "probe")
        .collect();
    assert_eq!(
        kinds,
        ["attach", "exit", "summary", "summary"],
        "{}",
        show(&events)
    );
    for s in of_kind(&events, "summary") {
        let keys: Vec<&String> = s.as_object().expect("an object").keys().collect();
        assert_eq!(
            keys,
            ["calls", "event", "missed", "pid", "probe", "symbol", "time_ns"],
            "{s}"
        );
    }
    let (run, events) = trace_json("json_return_address", &["-s", "work"], &prog, &["2"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let entries = of_kind(&events, "entry");
    let returns = of_kind(&events, "return");
    assert_eq!(returns.len(), 2, "{}", show(&events));
    for (entry, ret) in entries.iter().zip(&returns) {
        assert_eq!(ret["address"], entry["address"], "{ret}");
        assert!(str_field(ret, "address").starts_with("0x"), "{ret}");
    }
}

/// A line or offset probe's hit says where in the source it stopped, as
/// gdb does: `at FILE:LINE` in text, `source` in JSON. The line is the one
/// whose code covers the address (work's `{`, line 21 of count.c, for its
/// first instructions).
#[test]
fn instruction_hits_show_their_source_line() {
    let prog = fixture("count", Variant::Pie);
    let source = source_dir().join("count.c");
    let text = fs::read_to_string(&source).expect("count.c");
    let line = text
        .lines()
        .position(|l| l.starts_with("PROBED int work(int x)"))
        .expect("work's definition")
        + 2;
    let at = format!("{}:{line}", source.display());
    let spec = format!("count.c:{line}");
    let run = run_rtrace(
        &["--color", "never", "-s", &spec, "-s", "work+0x4"],
        &prog,
        &["1"],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let hits: Vec<String> = normalize(&run.stderr)
        .lines()
        .filter(|l| l.contains("] hit "))
        .map(str::to_string)
        .collect();
    assert_eq!(hits.len(), 2, "{}", run.stderr);
    assert!(hits[0].starts_with("[pid N] hit work ("), "{hits:?}");
    assert!(hits[0].ends_with(&format!(") at {at}")), "{hits:?}");
    assert!(hits[1].starts_with("[pid N] hit work+0x4 ("), "{hits:?}");
    assert!(hits[1].ends_with(&format!(") at {at}")), "{hits:?}");
    let (run, events) = trace_json("hit_source", &["-s", &spec], &prog, &["1"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let hits = of_kind(&events, "hit");
    assert_eq!(hits.len(), 1, "{}", show(&events));
    assert_eq!(str_field(hits[0], "source"), at);
}

#[test]
fn summary_json_counts_calls() {
    let prog = fixture("count", Variant::Pie);
    let (run, events) = trace_json("summary_json", &["-c", "-s", "work"], &prog, &["50"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let summaries = of_kind(&events, "summary");
    assert_eq!(summaries.len(), 1, "{}", show(&events));
    let s = summaries[0];
    assert_eq!(str_field(s, "symbol"), "work");
    assert_eq!(str_field(s, "probe"), "work");
    assert_eq!(s["calls"], 50, "{s}");
    assert_eq!(s["missed"], 0, "{s}");
    let (min, max, total) = (
        s["min_ns"].as_u64().unwrap(),
        s["max_ns"].as_u64().unwrap(),
        s["total_ns"].as_u64().unwrap(),
    );
    assert!(min <= max && max <= total && min * 50 <= total, "{s}");
}

#[test]
fn summary_text_table_lists_work_with_50_calls() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-c", "--color", "never", "-s", "work"], &prog, &["50"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.stdout, "sum=2500\ntwice=41\n");
    let row = run
        .stderr
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == "work"))
        .unwrap_or_else(|| panic!("no row for work in:\n{}", run.stderr));
    assert_eq!(
        row.split_whitespace().next(),
        Some("50"),
        "calls column of {row:?}"
    );
    assert!(
        !run.stderr.contains("work(0x"),
        "-c prints the table, not the calls:\n{}",
        run.stderr
    );
}

/// A function that cannot fail has no errors in the table, whether its
/// calls are timed in the program (fast probes) or seen at stops (int3):
/// `0` in the errors column and the total row alike, never `-` (unknown).
#[test]
fn summary_errors_of_a_function_that_cannot_fail_are_none_in_every_mode() {
    let prog = fixture("count", Variant::Pie);
    for mode in ["--fast", "--int3"] {
        let run = run_rtrace(
            &[mode, "-c", "--color", "never", "-s", "work"],
            &prog,
            &["50"],
        );
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let columns = |name: &str| -> Vec<String> {
            run.stderr
                .lines()
                .find(|l| l.split_whitespace().last() == Some(name))
                .unwrap_or_else(|| panic!("{mode}: no row {name} in:\n{}", run.stderr))
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        // calls, total, avg, min, max, missed, errors, % time, function [probe]
        let work = columns("[work]");
        assert_eq!(
            (work[0].as_str(), work[5].as_str(), work[6].as_str()),
            ("50", "0", "0"),
            "{mode}: {work:?}"
        );
        // calls, total, missed, errors, % time, "total"
        let total = columns("total");
        assert_eq!(
            (total[0].as_str(), total[2].as_str(), total[3].as_str()),
            ("50", "0", "0"),
            "{mode}: {total:?}"
        );
    }
}

#[test]
fn text_output_golden_twice() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-s", "twice", "--color", "never"], &prog, &["1"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.stdout, "sum=1\ntwice=41\n");
    let text = normalize(&run.stderr);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "stderr:\n{text}");
    assert_eq!(
        lines[0],
        "rtrace: attached to pid N (1 thread), 1 probe armed, returns: R"
    );
    // twice has DWARF: its parameter by name and type.
    assert_eq!(lines[1], "[pid N] twice(x=20) = 41 <T>");
    assert_eq!(lines[2], "+++ exited with 0 +++");
    assert!(!run.stderr.contains('\x1b'), "--color never printed ESC");
}

#[test]
fn color_always_has_escapes() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-s", "twice", "--color", "always"], &prog, &["1"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.stdout, "sum=1\ntwice=41\n");
    assert!(
        run.stderr.contains('\x1b'),
        "--color always printed no ESC:\n{}",
        run.stderr
    );
}

/// Runs rtrace with `args` on `count 1` in a pseudo-terminal (`script`,
/// util-linux), with `NO_COLOR` set to `no_color` or unset: what the
/// terminal showed.
fn on_a_terminal(args: &[&str], no_color: Option<&str>) -> String {
    let prog = fixture("count", Variant::Pie);
    let mut line = format!("{} {}", rtrace_bin().display(), args.join(" "));
    line.push_str(&format!(" -- {} 1", prog.display()));
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("twice=41"), "{}", run.stdout);
    run.stdout
}

/// On a terminal, `--color auto` colours; `NO_COLOR` (set, not empty)
/// turns off every escape sequence, bold and dim too; an empty `NO_COLOR`
/// does not count (no-color.org). `--color always` is asked for explicitly
/// and wins, with whole sequences: no empty `ESC[m`.
#[test]
fn no_color_turns_every_escape_off() {
    let coloured = on_a_terminal(&["-s", "twice"], None);
    assert!(coloured.contains("\x1b[1mtwice\x1b[0m"), "{coloured:?}");
    assert!(coloured.contains("\x1b[2m[pid "), "{coloured:?}");
    let plain = on_a_terminal(&["-s", "twice"], Some("1"));
    assert!(!plain.contains('\x1b'), "{plain:?}");
    // On a terminal a call's entry may be shown before its return comes
    // (`... twice resumed>`), when rtrace goes idle in between.
    assert!(plain.contains("twice(x=20)"), "{plain:?}");
    let empty = on_a_terminal(&["-s", "twice"], Some(""));
    assert!(empty.contains("\x1b[1mtwice\x1b[0m"), "{empty:?}");

    let prog = fixture("count", Variant::Pie);
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["--color", "always", "-s", "twice", "--"])
        .arg(&prog)
        .arg("1")
        .env("NO_COLOR", "1");
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("\x1b[1mtwice\x1b[0m(x=20) = \x1b[32m41\x1b[0m"),
        "{:?}",
        run.stderr
    );
    assert!(!run.stderr.contains("\x1b[m"), "{:?}", run.stderr);
}

/// Every example of `rtrace --help` that launches a program runs on this
/// machine and prints a call of each function it probes.
#[test]
fn help_examples_print_what_they_promise() {
    let mut cmd = Command::new(rtrace_bin());
    cmd.arg("--help");
    let help = run_command(cmd, TIMEOUT);
    assert_eq!(help.code(), 0, "{}", help.stderr);
    let examples: Vec<&str> = help
        .stdout
        .split("Examples:\n")
        .nth(1)
        .expect("an Examples section")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("rtrace ") && l.contains(" -- "))
        .collect();
    assert!(!examples.is_empty(), "{}", help.stdout);
    for example in examples {
        let words: Vec<&str> = example.split_whitespace().skip(1).collect();
        let mut cmd = Command::new(rtrace_bin());
        cmd.args(&words);
        let run = run_command(cmd, TIMEOUT);
        assert_eq!(run.code(), 0, "{example}: {}", run.stderr);
        let probed = words
            .windows(2)
            .filter(|w| w[0] == "-s")
            .map(|w| w[1].rsplit(':').next().unwrap_or(w[1]));
        for name in probed {
            assert!(
                run.stderr
                    .lines()
                    .any(|l| l.starts_with("[pid ") && l.contains(&format!("] {name}("))),
                "{example}: no call of {name}\n{}",
                run.stderr
            );
        }
    }
}

#[test]
fn libc_open_in_cat() {
    let cat = Path::new("/bin/cat");
    let file = "/etc/hostname";
    let content = fs::read_to_string(file).expect("/etc/hostname");
    let untraced = run_untraced(cat, &[file]);
    assert_eq!(untraced.stdout, content);
    let (run, events) = trace_json("libc_open_cat", &["-s", "open"], cat, &[file]);
    assert_same_as_untraced(&run, &untraced, "rtrace -s open -- cat /etc/hostname");
    let entries = of_symbol(&events, "entry", "open");
    assert_eq!(entries.len(), 1, "{}", show(&events));
    assert_eq!(entries[0]["args"][0], "\"/etc/hostname\"", "{}", entries[0]);
    assert!(
        str_field(entries[0], "module").contains("libc"),
        "{}",
        entries[0]
    );
    let rets = retvals(&events, "open");
    assert_eq!(rets.len(), 1, "{}", show(&events));
    assert!(rets[0] >= 3, "open returned {}", rets[0]);
}

#[test]
fn libc_openat_in_opener_renders_path() {
    let prog = fixture("opener", Variant::Pie);
    let untraced = run_untraced(&prog, &["/etc/hostname"]);
    for (i, spec) in ["openat", "libc:openat"].into_iter().enumerate() {
        let what = format!("rtrace -s {spec} -- opener /etc/hostname");
        let test = format!("libc_openat_opener_{i}");
        let (run, events) = trace_json(&test, &["-s", spec], &prog, &["/etc/hostname"]);
        assert_same_as_untraced(&run, &untraced, &what);
        assert_eq!(run.stdout, "ok\n");
        let entries = of_symbol(&events, "entry", "openat");
        assert_eq!(entries.len(), 1, "{what}\n{}", show(&events));
        assert_eq!(
            entries[0]["args"][1], "\"/etc/hostname\"",
            "{what}: {}",
            entries[0]
        );
        let rets = retvals(&events, "openat");
        assert_eq!(rets.len(), 1, "{what}");
        assert!(rets[0] >= 3, "{what}: openat returned {}", rets[0]);
    }
}

#[test]
fn failed_open_returns_negative() {
    let prog = fixture("opener", Variant::Pie);
    let (run, events) = trace_json(
        "libc_open_fail",
        &["-s", "libc:open"],
        &prog,
        &["/etc/hostname"],
    );
    assert_eq!(run.stdout, "ok\n");
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let entries = of_symbol(&events, "entry", "open");
    assert_eq!(entries.len(), 2, "{}", show(&events));
    assert_eq!(entries[1]["args"][0], "\"/nonexistent/x\"");
    // JSON carries rax as it is (SPEC); open() returns an int, so the low
    // 32 bits are -1.
    let rets = retvals(&events, "open");
    assert_eq!(rets.len(), 2, "{}", show(&events));
    assert!(
        rets[0] >= 3 && rets[1] as i32 == -1,
        "open returned {rets:?}"
    );
    // The failing return says why, as strace does: errno as the function
    // left it, read at the stop or copied by the return stub (int3 probes'
    // calls and fast probes' alike).
    let returns = of_symbol(&events, "return", "open");
    assert_eq!(returns[0].get("errno"), None, "{}", returns[0]);
    assert_eq!(returns[1]["errno"], libc::ENOENT, "{}", returns[1]);
    assert_eq!(returns[1]["errno_name"], "ENOENT", "{}", returns[1]);
    assert_eq!(
        returns[1]["rendered"],
        "-1 ENOENT (No such file or directory)"
    );

    // Text renders it with open()'s prototype: an int, -1, and its errno.
    let run = run_rtrace(
        &["-s", "libc:open", "--color", "never"],
        &prog,
        &["/etc/hostname"],
    );
    let text = normalize(&run.stderr);
    assert!(
        text.lines().any(|l| l
            == "[pid N] open(\"/nonexistent/x\", O_RDONLY) = -1 ENOENT (No such file or \
                directory) <T>"),
        "failed open line in:\n{text}"
    );
}

#[test]
fn dlopen_arms_pending_probe() {
    for variant in [Variant::Pie, Variant::O2, Variant::Stripped] {
        let prog = fixture("dlopener", variant);
        let lib = library("libplug", variant);
        let lib_arg = lib.to_str().unwrap();
        let untraced = run_untraced(&prog, &[lib_arg]);
        assert_eq!(untraced.stdout, "plug=306\n");
        let test = format!("dlopen_{variant}");
        let plug = crate::fixtures::in_library("libplug", variant, "plugin_fn");
        let (run, events) = trace_json(&test, &["-s", &plug], &prog, &[lib_arg]);
        let what = format!("rtrace -s libplug:plugin_fn -- dlopener ({variant})");
        assert_same_as_untraced(&run, &untraced, &what);
        let attach = of_kind(&events, "attach");
        assert_eq!(attach.len(), 1, "{what}\n{}", show(&events));
        assert_eq!(attach[0]["pending"], 1, "{what}: {}", attach[0]);
        assert_eq!(
            of_symbol(&events, "entry", "plugin_fn").len(),
            3,
            "{what}\n{}",
            show(&events)
        );
        assert_eq!(
            retvals(&events, "plugin_fn"),
            vec![101, 102, 103],
            "{what}\n{}",
            show(&events)
        );
        assert!(
            of_kind(&events, "warning").is_empty(),
            "{what}\n{}",
            show(&events)
        );
    }
}

/// A module that can be loaded (a library file, named by its path) but never
/// is: the probe waits for it, and one warning at the end names it.
#[test]
fn never_loaded_module_warns_text() {
    let prog = fixture("count", Variant::Pie);
    let spec = crate::fixtures::in_library("libplug", Variant::Pie, "f");
    let run = run_rtrace(&["-s", &spec, "--color", "never"], &prog, &["3"]);
    assert_eq!(run.stdout, "sum=9\ntwice=41\n");
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("warning") && l.contains(&spec))
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "rtrace: warning: probe {spec} never armed (its module was never loaded)"
        )],
        "rtrace -s {spec} -- count 3: one warning line naming the probe expected, stderr:\n{}",
        run.stderr
    );
}

#[test]
fn never_loaded_module_warns_json() {
    let prog = fixture("count", Variant::Pie);
    let spec = crate::fixtures::in_library("libplug", Variant::Pie, "f");
    let (run, events) = trace_json("never_loaded_json", &["-s", &spec], &prog, &["3"]);
    assert_eq!(run.stdout, "sum=9\ntwice=41\n");
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let warnings = of_kind(&events, "warning");
    assert_eq!(
        warnings.len(),
        1,
        "rtrace --json -s {spec} -- count 3: one warning event expected\n{}",
        show(&events)
    );
    assert_eq!(str_field(warnings[0], "probe"), spec);
}

/// A module no process could load is an error at startup, before the
/// program runs (launch) or with the program untouched (attach), not a
/// warning at the end of a run that traced nothing: a name the dynamic
/// linker would not find (with the closest loaded module as a suggestion),
/// and paths that are no library.
#[test]
fn a_module_that_can_never_load_is_an_error_at_startup() {
    let prog = fixture("count", Variant::Pie);
    let not_found = "no library or program of that name can be found";
    let cases = [
        (
            "lbc:puts",
            format!("no module \"lbc\" is loaded, and {not_found} (did you mean libc?)"),
        ),
        (
            "nosuchlib:malloc",
            format!("no module \"nosuchlib\" is loaded, and {not_found}"),
        ),
        (
            "/etc/passwd:foo",
            "no module \"/etc/passwd\" is loaded, and /etc/passwd is not an ELF file".into(),
        ),
        (
            "/etc:foo",
            "no module \"/etc\" is loaded, and /etc is a directory".into(),
        ),
        (
            "/dev/null:foo",
            "no module \"/dev/null\" is loaded, and /dev/null is not a regular file".into(),
        ),
        (
            "/no/such/lib.so:foo",
            "no module \"/no/such/lib.so\" is loaded, and /no/such/lib.so does not exist".into(),
        ),
        (
            "./lib.so:foo",
            "no module \"./lib.so\" is loaded, and ./lib.so is a relative path (give the \
             absolute one)"
                .into(),
        ),
    ];
    let hint = " (name a module by its file name, e.g. libc, or by its path, as a library \
                or program loaded later from elsewhere (a plugin) must be)";
    for (spec, said) in &cases {
        let run = run_rtrace(&["-s", spec], &prog, &["3"]);
        let what = format!("rtrace -s {spec} -- count 3");
        assert_eq!(run.code(), 1, "{what}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{what}: the program never ran");
        assert_eq!(
            run.stderr,
            format!("rtrace: probe {spec}: {said}{hint}\n"),
            "{what}"
        );
    }
    // Attached: the same line, and the process runs on untouched.
    let spin = Spawned::start(&fixture("spin", Variant::Pie), &[]);
    let pid = spin.pid();
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(["-s", "lbc:puts", "-p", &pid.to_string()]);
    let run = run_command(cmd, TIMEOUT);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!("rtrace: probe lbc:puts: {}{hint}\n", cases[0].1)
    );
    code_matches_files(pid).unwrap_or_else(|e| panic!("after the error: {e}"));
    let run = spin.terminate();
    assert_eq!(run.code(), 0);
}

/// Time stamps as strace writes them, after the pid: under `-ttt` every
/// line of `count 3` (three `work` calls, one `twice`, the exit) carries the
/// wall clock, in the run and never going back; `-tt` the time of day to
/// the microsecond; `-r` the time since the previous line's event, the
/// first 0, adding up to no more than the run. JSON carries the wall clock
/// as the attach event's `realtime_ns`, and `-t` with `--json` is a usage
/// error.
#[test]
fn timestamps_as_strace_writes_them() {
    use std::time::SystemTime;
    let prog = fixture("count", Variant::Pie);
    let now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let event_lines = |run: &crate::fixtures::Run| -> Vec<String> {
        run.stderr
            .lines()
            .filter(|l| !l.starts_with("rtrace:"))
            .map(str::to_string)
            .collect()
    };
    // The stamp after `[pid N] ` (or at the start of the `+++` line), and
    // the rest.
    let split = |line: &str| -> (String, String) {
        let line = match line.strip_prefix("[pid ") {
            Some(rest) => &rest[rest.find("] ").expect("a pid") + 2..],
            None => line,
        };
        let (stamp, rest) = line.trim_start().split_once(' ').expect("a stamp");
        (stamp.to_string(), rest.trim_start().to_string())
    };

    let before = now();
    let run = run_rtrace(&["-ttt", "-s", "work", "-s", "twice"], &prog, &["3"]);
    let after = now();
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let lines = event_lines(&run);
    let rests: Vec<String> = lines.iter().map(|l| split(l).1).collect();
    assert_eq!(
        rests,
        [
            "work(x=0) = 1",
            "work(x=1) = 3",
            "work(x=2) = 5",
            "twice(x=20) = 41",
            "+++ exited with 0 +++"
        ]
        .iter()
        .zip(&rests)
        .map(|(want, got)| match got.split_once(" <") {
            Some((_, t)) if !want.starts_with("+++") => format!("{want} <{t}"),
            _ => want.to_string(),
        })
        .collect::<Vec<_>>(),
        "{}",
        run.stderr
    );
    let stamps: Vec<f64> = lines
        .iter()
        .map(|l| split(l).0.parse().expect("seconds.micros"))
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(
        stamps[0] >= before - 0.001 && stamps[4] <= after + 0.001,
        "{before} {stamps:?} {after}"
    );

    let run = run_rtrace(&["-tt", "-s", "work"], &prog, &["3"]);
    for line in event_lines(&run) {
        let (stamp, _) = split(&line);
        let b = stamp.as_bytes();
        assert!(
            b.len() == 15
                && stamp.char_indices().all(|(i, c)| match i {
                    2 | 5 => c == ':',
                    8 => c == '.',
                    _ => c.is_ascii_digit(),
                }),
            "{line}"
        );
    }

    let start = now();
    let run = run_rtrace(&["-r", "-s", "work"], &prog, &["3"]);
    let took = now() - start;
    let deltas: Vec<f64> = event_lines(&run)
        .iter()
        .map(|l| split(l).0.parse().expect("seconds.micros"))
        .collect();
    assert_eq!(deltas.len(), 4, "{}", run.stderr);
    assert_eq!(deltas[0], 0.0);
    assert!(deltas.iter().sum::<f64>() <= took, "{deltas:?} {took}");

    let before = now();
    let run = run_rtrace(&["--json", "-s", "work"], &prog, &["1"]);
    let after = now();
    let events = crate::events::parse_events(&run.stderr);
    let attach = &events[0];
    assert_eq!(attach["event"], "attach");
    let wall = attach["realtime_ns"].as_u64().expect("realtime_ns") as f64 / 1e9;
    assert!(wall >= before && wall <= after, "{before} {wall} {after}");

    let run = run_rtrace(&["-t", "--json", "-s", "work"], &prog, &["1"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr.starts_with("rtrace: -t and -r stamp text lines"),
        "{}",
        run.stderr
    );
}

/// `!SPEC` removes the functions SPEC names from the other probes, as
/// strace's `-e trace=!…` does: `count:*` less `count:w*` arms exactly the
/// sites of the one less those of the other, and no call of a `w…`
/// function of count is reported, while twice's is; `work,twice,!work`
/// reports twice alone. An exclusion alone, or of an instruction, is a
/// usage error.
#[test]
fn exclusions_remove_functions_from_the_probes() {
    let prog = fixture("count", Variant::Pie);
    let armed = |specs: &str| {
        let (run, events) = trace_json(
            &format!("exclusions-{specs}"),
            &["-s", specs],
            &prog,
            &["2"],
        );
        assert_eq!(run.code(), 0, "{specs}: {}", run.stderr);
        let attach = of_kind(&events, "attach");
        (attach[0]["probes"].as_u64().unwrap(), events)
    };
    let (all, _) = armed("count:*");
    let (w, _) = armed("count:w*");
    let (rest, events) = armed("count:*,!count:w*");
    assert!(w >= 1 && all > w, "{all} {w}");
    assert_eq!(rest, all - w);
    let entries = of_kind(&events, "entry");
    assert!(
        !entries
            .iter()
            .any(|e| str_field(e, "symbol").starts_with('w')),
        "{}",
        show(&events)
    );
    assert_eq!(of_symbol(&events, "entry", "twice").len(), 1);

    let (_, events) = armed("work,twice,!work");
    let symbols: Vec<&str> = of_kind(&events, "entry")
        .iter()
        .map(|e| str_field(e, "symbol"))
        .collect();
    assert_eq!(symbols, ["twice"], "{}", show(&events));

    for (specs, says) in [
        (
            "!work",
            "an exclusion (!SPEC) removes functions from the other probes",
        ),
        ("work,!work+0x1", "an exclusion names functions"),
    ] {
        let run = run_rtrace(&["-s", specs], &prog, &["2"]);
        assert_eq!(run.code(), 2, "{specs}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{specs}: {}", run.stderr);
    }
}

/// `--tree` nests a recursion 5 deep exactly, as uftrace's replay and
/// ftrace's function_graph do: each call that made calls opens with `{`,
/// the calls it made two spaces further in, and closes with `} = value`;
/// the innermost, which made none, is one line. `--tree` with `--json` or
/// `-c` is a usage error.
#[test]
fn tree_nests_a_recursion_exactly() {
    let prog = fixture("recurse", Variant::Pie);
    let run = run_rtrace(&["--tree", "-s", "fact"], &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.stdout, "fact=120\n");
    let text = normalize(&run.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("rtrace:")).collect();
    assert_eq!(
        lines,
        [
            "[pid N] fact(n=5) {",
            "[pid N]   fact(n=4) {",
            "[pid N]     fact(n=3) {",
            "[pid N]       fact(n=2) {",
            "[pid N]         fact(n=1) {",
            "[pid N]           fact(n=0) = 1 <T>",
            "[pid N]         } = 1 <T>",
            "[pid N]       } = 2 <T>",
            "[pid N]     } = 6 <T>",
            "[pid N]   } = 24 <T>",
            "[pid N] } = 120 <T>",
            "+++ exited with 0 +++",
        ],
        "{text}"
    );
    for extra in ["--json", "-c"] {
        let run = run_rtrace(&["--tree", extra, "-s", "fact"], &prog, &[]);
        assert_eq!(run.code(), 2, "{extra}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("rtrace: --tree nests"),
            "{}",
            run.stderr
        );
    }
}

/// An entry's `time_ns` is its stop; its return's `duration_ns` counts from
/// `entered_ns`, after rtrace's handlers at the entry, to the return's
/// `time_ns`: the three agree exactly, and the call's clock never starts
/// before its entry.
#[test]
fn return_times_agree_with_durations() {
    let prog = fixture("count", Variant::Pie);
    let (run, events) = trace_json("times_agree", &["-s", "work"], &prog, &["5"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let entries = of_symbol(&events, "entry", "work");
    let returns = of_symbol(&events, "return", "work");
    assert_eq!((entries.len(), returns.len()), (5, 5), "{}", show(&events));
    for (entry, ret) in entries.iter().zip(&returns) {
        let n =
            |e: &serde_json::Value, k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k}: {e}"));
        assert_eq!(
            n(ret, "time_ns") - n(ret, "entered_ns"),
            n(ret, "duration_ns"),
            "{ret}"
        );
        assert!(
            n(ret, "entered_ns") >= n(entry, "time_ns"),
            "{entry}\n{ret}"
        );
    }
}

/// A module named by a path through a symbolic link is the module the maps
/// name by its canonical path: `/lib/…/libc.so.6` is libc where `/lib`
/// links to `/usr/lib`, and its probe arms.
#[test]
fn a_module_path_through_a_symbolic_link_names_the_module() {
    let prog = fixture("count", Variant::Pie);
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").expect("libc");
    let dir = crate::events::temp_path("linked_lib_dir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("libc.so.6");
    std::os::unix::fs::symlink(&libc, &link).unwrap();
    let spec = format!("{}:puts", link.display());
    let run = run_rtrace(&["-s", &spec, "--color", "never"], &prog, &["3"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        normalize(&run.stderr).contains(", 1 probe armed, returns: R\n"),
        "{spec}: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("never armed"), "{}", run.stderr);
}

/// The rows of a `-c` table, as (function, calls, errors, % time), in order.
fn table_rows(stderr: &str) -> Vec<(String, u64, String, String)> {
    stderr
        .lines()
        .filter(|l| l.ends_with(']'))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let calls = w.first()?.parse().ok()?;
            Some((
                w.get(8)?.to_string(),
                calls,
                w[6].to_string(),
                w[7].to_string(),
            ))
        })
        .collect()
}

/// The `-c` columns strace users look for: `errors` (a libc call's -1, by
/// the errno rule) and `% time` (each row's share, summing to 100); `-S`
/// orders the rows by a column, as strace's. Errors are counted from the
/// calls' values: int3 probes see them at their stops, fast probes record
/// the calls of a function that can fail (the others are timed in the
/// program, whose values rtrace never sees).
#[test]
fn summary_errors_time_shares_and_order() {
    let opener = fixture("opener", Variant::Pie);
    for engine in ["--int3", "--fast"] {
        let run = run_rtrace(
            &[engine, "-c", "-S", "name", "-s", "libc:open,libc:close"],
            &opener,
            &["/etc/hostname"],
        );
        assert_eq!(run.code(), 0, "{engine}: {}", run.stderr);
        let rows = table_rows(&run.stderr);
        let counts: Vec<(&str, u64, &str)> = rows
            .iter()
            .map(|(f, c, e, _)| (f.as_str(), *c, e.as_str()))
            .collect();
        // open succeeds once and fails once (/nonexistent/x); both fds closed.
        assert_eq!(
            counts,
            [("close", 2, "0"), ("open", 2, "1")],
            "{engine}: {}",
            run.stderr
        );
        let total = run.stderr.lines().find(|l| l.ends_with(" total")).unwrap();
        let w: Vec<&str> = total.split_whitespace().collect();
        assert_eq!(
            (w[0], w[3], w[4]),
            ("4", "1", "100.00"),
            "{engine}: {total}"
        );
    }

    let count = fixture("count", Variant::Pie);
    for (order, want) in [("calls", ["work", "twice"]), ("name", ["twice", "work"])] {
        let run = run_rtrace(&["-c", "-S", order, "-s", "work,twice"], &count, &["30"]);
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let rows = table_rows(&run.stderr);
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, want, "-S {order}: {}", run.stderr);
        let shares: f64 = rows.iter().map(|r| r.3.parse::<f64>().unwrap()).sum();
        assert!(
            (shares - 100.0).abs() <= 0.1,
            "-S {order}: {shares}\n{}",
            run.stderr
        );
    }
    let run = run_rtrace(&["-S", "calls", "-s", "work"], &count, &["3"]);
    let line = assert_one_error_line(&run, 2, "-S without -c");
    assert_eq!(
        line,
        "rtrace: -S orders the table of -c: give -c too (see 'rtrace --help')"
    );
}
