//! Scripts end to end, without a tracee: fake hits (from `output::testutil`)
//! in, exact printer bytes out.

use std::cell::RefCell;
use std::rc::Rc;

use super::{Limits, Script, ScriptListener, ScriptProbe, ScriptSource};
use crate::error::Error;
use crate::handler::{Event, Handler, ProbeKind};
use crate::output::testutil::{function, site, SharedBuf, Tracee, PID};
use crate::output::{Format, Printer, PrinterOptions};

fn compile(text: &str) -> Result<Script, Error> {
    compile_with(text, Limits::default())
}

fn compile_with(text: &str, limits: Limits) -> Result<Script, Error> {
    Script::compile(
        &[ScriptSource {
            name: "t.rhai".into(),
            text: text.into(),
        }],
        limits,
    )
}

fn error(text: &str) -> String {
    compile(text).unwrap_err().to_string()
}

struct Rig {
    script: Rc<RefCell<Script>>,
    printer: Rc<RefCell<Printer>>,
    out: SharedBuf,
    diag: SharedBuf,
}

fn rig(text: &str, format: Format) -> Rig {
    rig_with(text, format, Limits::default())
}

fn rig_with(text: &str, format: Format, limits: Limits) -> Rig {
    let out = SharedBuf::default();
    let diag = SharedBuf::default();
    let printer = Printer::with_diag(
        Box::new(out.clone()),
        Box::new(diag.clone()),
        PrinterOptions {
            format,
            color: false,
            summary: false,
            hist: false,
            order: Default::default(),
            timestamps: Default::default(),
            tree: false,
            string_limit: 64,
            flush_interval: None,
            stack_depth: None,
            prototypes: Default::default(),
        },
    );
    Rig {
        script: Rc::new(RefCell::new(compile_with(text, limits).unwrap())),
        printer: Rc::new(RefCell::new(printer)),
        out,
        diag,
    }
}

impl Rig {
    fn probe(&self, spec: &str) -> ScriptProbe {
        ScriptProbe::new(self.script.clone(), spec, self.printer.clone(), true)
    }

    fn finish(&self) {
        let mut l = ScriptListener::new(self.script.clone(), self.printer.clone()).begun();
        self.printer.borrow_mut().on_finish().unwrap();
        l.on_finish().unwrap();
    }
}

/// Calls `work(x)` returning `2x + 1` for each x, on thread 7, 10 µs each.
fn calls(rig: &Rig, h: &mut ScriptProbe, xs: &[u64]) {
    let t = Tracee::new();
    let work = function("work");
    for (i, &x) in xs.iter().enumerate() {
        let at = 100 * i as u64;
        let data = t.enter(h, &work, 7, at, [x, 0, 0, 0, 0, 0]).unwrap();
        t.leave(h, &work, 7, at, at + 10, 2 * x + 1, data).unwrap();
    }
    let _ = rig;
}

#[test]
fn an_entry_block_that_returns_true_prints_the_call() {
    let r = rig("work { arg(0) % 2 == 0 }", Format::Text);
    let mut h = r.probe("work");
    calls(&r, &mut h, &[1, 2, 3, 4]);
    r.finish();
    assert_eq!(
        r.out.text(),
        "[pid 7] work(0x2, 0x0, 0x0, 0x0, 0x0, 0x0) = 5 <0.000010>\n\
         [pid 7] work(0x4, 0x0, 0x0, 0x0, 0x0, 0x0) = 9 <0.000010>\n"
    );
}

#[test]
fn a_return_block_decides_and_the_whole_call_is_printed_then() {
    let r = rig(
        "work:return { retval > 5 && duration == 10000 }",
        Format::Text,
    );
    let mut h = r.probe("work");
    calls(&r, &mut h, &[1, 2, 3]);
    r.finish();
    assert_eq!(
        r.out.text(),
        "[pid 7] work(0x3, 0x0, 0x0, 0x0, 0x0, 0x0) = 7 <0.000010>\n"
    );
}

#[test]
fn a_block_without_true_prints_nothing_but_its_maps_at_the_end() {
    let r = rig(
        "work { @count[tid] += 1; @by[arg(0) % 2, \"odd\"] += 1; @n += 1; false }\n\
         work:return { @total += retval; hist(duration); hist(\"x\", arg(0)) }",
        Format::Text,
    );
    let mut h = r.probe("work");
    calls(&r, &mut h, &[1, 2, 3]);
    r.finish();
    assert_eq!(
        r.out.text(),
        "@by[0, odd]: 1\n@by[1, odd]: 2\n\n\
         @count[7]: 3\n\n\
         @n: 3\n\n\
         @total: 15\n\n\
         work:return:\n\
         [8K, 16K)              3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n\
         x:\n\
         [1]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |\n\
         [2, 4)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n"
    );
}

#[test]
fn begin_declares_globals_end_sees_maps_and_prints_come_in_order() {
    let r = rig(
        "BEGIN { let limit = 2; print(\"start\") }\n\
         work { if arg(0) <= limit { @seen[arg(0)] += 1; print(`x=${arg(0)} in ${func} of ${probe} pid ${pid}`) } }\n\
         END { print(`${@seen.len()} seen`) }",
        Format::Text,
    );
    let mut l = ScriptListener::new(r.script.clone(), r.printer.clone());
    let attached = Event::Attached {
        pid: nix::unistd::Pid::from_raw(PID),
        threads: 1,
        probes: 1,
        pending: 0,
        returns: None,
        realtime: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    };
    l.on_event(&attached, std::time::Duration::ZERO).unwrap();
    let mut h = r.probe("work");
    calls(&r, &mut h, &[1, 2, 3]);
    r.finish();
    assert_eq!(
        r.out.text(),
        "start\nx=1 in work of work pid 4242\nx=2 in work of work pid 4242\n2 seen\n\
         @seen[1]: 1\n@seen[2]: 1\n\n"
    );
}

#[test]
fn json_prints_maps_and_histograms_as_events() {
    let r = rig(
        "work:return { @m[\"a\"] += retval; @h = hist(arg(0)); @l[1] = lhist(arg(0), 0, 10, 5); false }",
        Format::Json,
    );
    let mut h = r.probe("work");
    calls(&r, &mut h, &[0]);
    r.finish();
    let lines: Vec<serde_json::Value> = r
        .out
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["event"], "hist");
    assert_eq!(lines[0]["name"], "@h");
    assert_eq!(lines[0].get("key"), None, "no key: {}", lines[0]);
    assert_eq!(
        lines[0]["buckets"],
        serde_json::json!([{"low": 0, "high": 1, "count": 1}])
    );
    assert_eq!(lines[1]["event"], "hist");
    assert_eq!(lines[1]["name"], "@l");
    assert_eq!(lines[1]["key"], 1);
    assert_eq!(
        lines[1]["buckets"],
        serde_json::json!([{"low": 0, "high": 5, "count": 1}])
    );
    assert_eq!(lines[2]["event"], "map");
    assert_eq!(lines[2]["name"], "@m");
    assert_eq!(
        lines[2]["entries"],
        serde_json::json!([{"key": "a", "value": 1}])
    );
}

#[test]
fn a_runtime_error_is_reported_once_with_its_line_and_counted() {
    let r = rig(
        "work {\n  true\n}\nwork:return {\n  let s = \"a\" - retval;\n}",
        Format::Text,
    );
    let mut h = r.probe("work");
    calls(&r, &mut h, &[1, 2, 3]);
    r.finish();
    assert_eq!(
        r.diag.text(),
        "rtrace: warning: t.rhai line 5, column 15: Function not found: - (&str | ImmutableString | String, i64) \
         (reported once for this block; later errors are counted)\n\
         rtrace: warning: t.rhai line 4, column 1: block work:return failed 3 times\n"
    );
    // The entry block let the calls through; the warning (on stderr) split
    // the first one, as any other line between an entry and its return does.
    assert_eq!(
        r.out.text(),
        "[pid 7] work(0x1, 0x0, 0x0, 0x0, 0x0, 0x0) ...\n\
         [pid 7] ... work resumed = 3 <0.000010>\n\
         [pid 7] work(0x2, 0x0, 0x0, 0x0, 0x0, 0x0) = 5 <0.000010>\n\
         [pid 7] work(0x3, 0x0, 0x0, 0x0, 0x0, 0x0) = 7 <0.000010>\n"
    );
}

#[test]
fn a_runaway_block_ends_tracing_with_an_error() {
    let r = rig("work {\n  let n = 0;\n  loop { n += 1; }\n}", Format::Text);
    let mut h = r.probe("work");
    let t = Tracee::new();
    let err = t
        .enter(&mut h, &function("work"), 7, 0, [0; 6])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "t.rhai line 3, column 15: block work ran past its limit of 100000 operations (a loop that never ends?); \
         raise --script-ops if it is meant to"
    );
}

#[test]
fn str_reads_tracee_memory_and_null_is_named() {
    let r = rig("work { print(str(arg(0))); print(str(arg(0), 3)); print(str(arg(1))); print(read(arg(0), 2)) }", Format::Text);
    let mut h = r.probe("work");
    let mut t = Tracee::new();
    let p = t.cstr("hello");
    t.enter(&mut h, &function("work"), 7, 0, [p, 0, 0, 0, 0, 0])
        .unwrap();
    r.finish();
    assert_eq!(r.out.text(), "hello\nhel\n(null)\n[6865]\n");
}

#[test]
fn an_instruction_probe_runs_its_entry_block() {
    let r = rig("work+0x4 { @hits += 1; true }", Format::Text);
    let mut h = r.probe("work+0x4");
    let t = Tracee::new();
    let s = site("work+0x4", "work", ProbeKind::Instruction, 4);
    t.enter(&mut h, &s, 7, 0, [0; 6]).unwrap();
    r.finish();
    assert!(
        r.out.text().starts_with("[pid 7] hit work+0x4 ("),
        "{}",
        r.out.text()
    );
    assert!(r.out.text().ends_with("@hits: 1\n\n"), "{}", r.out.text());
}

#[test]
fn what_cannot_compile_is_refused_with_its_line() {
    assert_eq!(
        error("work {\n  (\n}"),
        "t.rhai line 3, column 1: Script is incomplete"
    );
    assert_eq!(
        error("work {\n  let = 1;\n}"),
        "t.rhai line 2, column 7: Expecting name of a variable"
    );
    assert_eq!(
        error("work {\n  retval > 0\n}"),
        "t.rhai line 2, column 3: `retval` is only known in a :return block"
    );
    assert_eq!(
        error("BEGIN {\n print(tid)\n}"),
        "t.rhai line 2, column 8: `tid` is only known in a probe block"
    );
    assert_eq!(
        error("count.c:12:return { 1 }"),
        "t.rhai line 1, column 1: count.c:12 is not a function probe: it has no return"
    );
    assert_eq!(
        error("\n\nwork { 1 "),
        "t.rhai line 3, column 6: this block is never closed (`}`)"
    );
    assert!(error("work+0x { 1 }").starts_with("t.rhai line 1, column 1: "));
    assert_eq!(
        error("// nothing"),
        "t.rhai: no blocks; a script is `PROBE { … }` blocks"
    );
    // Per-hit values cannot be assigned.
    let r = rig("work { tid = 1 }", Format::Text);
    let mut h = r.probe("work");
    Tracee::new()
        .enter(&mut h, &function("work"), 7, 0, [0; 6])
        .unwrap();
    r.finish();
    assert!(
        r.diag
            .text()
            .contains("t.rhai line 1, column 8: Cannot modify constant"),
        "{}",
        r.diag.text()
    );
}

#[test]
fn probes_are_listed_once_with_their_kinds() {
    let s = compile("a { 1 }\nb:return { 1 }\na:return { 1 }\nBEGIN { 1 }\nEND { 1 }").unwrap();
    assert_eq!(
        s.probes(),
        [
            ("a".to_string(), true, true),
            ("b".to_string(), false, true)
        ]
    );
}

#[test]
fn a_map_holds_at_most_its_limit_of_keys() {
    let r = rig_with(
        "work {\n  for i in 0..arg(0) { @m[[tid, i]] = 1; }\n  @m[[tid, 0]] = 2;\n}",
        Format::Text,
        Limits {
            operations: 0,
            ..Limits::default()
        },
    );
    let mut h = r.probe("work");
    let limit = super::MAX_MAP_KEYS;
    // Up to the limit, and an update of a key it has, run fine; one key
    // more is an error, reported with the line.
    calls(&r, &mut h, &[limit as u64, limit as u64 + 1]);
    r.finish();
    assert_eq!(
        r.diag.text(),
        format!(
            "rtrace: warning: t.rhai line 2, column 26: this map has {limit} keys, as many as a map may hold \
                 (reported once for this block; later errors are counted)\n"
        )
    );
    let out = r.out.text();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), limit + 1, "the keys and a blank line");
    // The second run set every key to 1 again before it failed.
    assert_eq!(lines[0], "@m[7, 0]: 1");
    assert_eq!(lines[limit - 1], format!("@m[7, {}]: 1", limit - 1));
}

/// Every aggregation, keyed and not, printed as bpftrace prints it at the
/// end: maps by name; the numbers of a map by value, smallest first (ties
/// by key); the histograms of a map by their totals.
#[test]
fn aggregations_print_as_bpftrace_prints_them_sorted_by_value() {
    let r = rig(
        "work {\n\
           @c[arg(0) % 3] = count(); @s[arg(0) % 2] = sum(arg(0)); @a[1] = avg(arg(0));\n\
           @a[2] = avg(10); @mi[arg(0) % 2] = min(arg(0)); @ma[arg(0) % 2] = max(arg(0));\n\
           @h[arg(0) % 2] = hist(arg(0)); @l = lhist(arg(0), 0, 6, 2); @n = count();\n\
         }",
        Format::Text,
    );
    let mut h = r.probe("work");
    // 0..=6, then 6 again: by x % 3, 0 3 6 6 | 1 4 | 2 5.
    calls(&r, &mut h, &[0, 1, 2, 3, 4, 5, 6, 6]);
    r.finish();
    assert_eq!(
        r.out.text(),
        "@a[1]: 3\n@a[2]: 10\n\n\
         @c[1]: 2\n@c[2]: 2\n@c[0]: 4\n\n\
         @h[1]:\n\
         [1]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\
         [2, 4)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\
         [4, 8)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n\
         @h[0]:\n\
         [0]                    1 |@@@@@@@@@@@@@@@@@                                   |\n\
         [1]                    0 |                                                    |\n\
         [2, 4)                 1 |@@@@@@@@@@@@@@@@@                                   |\n\
         [4, 8)                 3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n\
         @l:\n\
         [0, 2)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\
         [2, 4)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\
         [4, 6)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\
         [6, ...)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n\
         @ma[1]: 5\n@ma[0]: 6\n\n\
         @mi[0]: 0\n@mi[1]: 1\n\n\
         @n: 8\n\n\
         @s[1]: 9\n@s[0]: 18\n\n"
    );
}

/// `print(@m)` prints the map as it is, `clear(@m)` empties it, `zero(@m)`
/// keeps its keys at zero; an entry read is its aggregation's value, or 0
/// where nothing is stored.
#[test]
fn print_clear_and_zero_as_bpftrace_has_them() {
    let r = rig(
        "work {\n\
           if @c[7] != 0 || @t != 0 && @c[1] == 0 { print(\"never\") }\n\
           @c[arg(0) % 2] = count(); @t = sum(arg(0));\n\
           if @c[0] == 2 { print(@c); zero(@t); clear(@c); }\n\
         }",
        Format::Text,
    );
    let mut h = r.probe("work");
    calls(&r, &mut h, &[0, 1, 2, 3]);
    r.finish();
    assert_eq!(r.out.text(), "@c[1]: 1\n@c[0]: 2\n\n@c[1]: 1\n\n@t: 3\n\n");
}

/// Interval blocks run when their period is over, once however many
/// periods went by, and not once tracing has ended.
#[test]
fn interval_blocks_run_each_period() {
    let r = rig(
        "work { @n = count(); } interval:1s { @ticks += 1; print(@n); clear(@n) }",
        Format::Text,
    );
    let start = std::time::Instant::now();
    let second = std::time::Duration::from_secs(1);
    r.script.borrow_mut().start_intervals(start);
    let mut h = r.probe("work");
    calls(&r, &mut h, &[1, 2]);
    let run = |at| {
        let printed = r.script.borrow_mut().run_intervals(at).unwrap();
        for p in printed {
            r.printer
                .borrow_mut()
                .script(&super::printed_item(p, None), std::time::Duration::ZERO)
                .unwrap();
        }
    };
    run(start);
    assert_eq!(r.out.text(), "", "not yet");
    run(start + second);
    calls(&r, &mut h, &[3]);
    run(start + second * 3 / 2);
    run(start + second * 5);
    assert_eq!(r.script.borrow().shortest_interval(), Some(second));
    r.finish();
    assert_eq!(r.out.text(), "@n: 2\n\n@n: 1\n\n@ticks: 2\n\n");
}

/// The names a script gets wrong are refused before anything runs, with
/// the line, the column and the likely name.
#[test]
fn unknown_names_are_refused_with_a_did_you_mean() {
    assert_eq!(
        error("work { @cnt[tdi] += 1 }"),
        "t.rhai line 1, column 13: unknown name \"tdi\" (did you mean tid?)"
    );
    assert_eq!(
        error("BEGIN { let limit = 3 }\nwork { arg(0) > limt }"),
        "t.rhai line 2, column 17: unknown name \"limt\" (did you mean limit?)"
    );
    assert_eq!(
        error("work { @total += 1 }\nEND {\n  print(totl)\n}"),
        "t.rhai line 3, column 9: unknown name \"totl\" (did you mean @total?)"
    );
    assert_eq!(
        error("work { @total += 1 } END { print(@totl) }"),
        "t.rhai line 1, column 34: unknown map \"@totl\": no block assigns it (did you mean @total?)"
    );
    assert_eq!(
        error("work { x }"),
        "t.rhai line 1, column 8: unknown name \"x\""
    );
    assert_eq!(
        error("interval:1s { ustack }"),
        "t.rhai line 1, column 1: ustack is only known in a probe block"
    );
}

/// Maps without their `@` and the older `hist()` forms still work, each
/// with one warning where it is first used.
#[test]
fn deprecated_forms_warn_once() {
    let s = compile("work { cnt[tid] += 1; cnt[1] += 1; n += 1; hist(arg(0)) }\nEND { print(n) }")
        .unwrap();
    assert_eq!(
        s.warnings(),
        [
            "t.rhai line 1, column 44: hist(x) without a map is deprecated; write @name = hist(x)",
            "t.rhai line 1, column 8: map \"cnt\" without its @ is deprecated; write @cnt",
            "t.rhai line 1, column 36: map \"n\" without its @ is deprecated; write @n",
        ]
    );
}
