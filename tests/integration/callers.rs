//! Functions that find their caller from their own return address
//! (`dlsym`, `dlopen`…): a return probe on them, a fast probe on them, or a
//! probed function that reaches them by a tail call must leave them the real
//! return address. An interposer's `dlsym(RTLD_NEXT, …)` still finds the
//! next `malloc`, a plugin loader's `dlopen` still searches its own
//! `$ORIGIN`; the programs print and exit as untraced, and the returns of
//! the probed calls are all reported, with their values.

use serde_json::Value;

use crate::events::{assert_same_as_untraced, of_kind, of_symbol, show, str_field, trace_json};
use crate::fixtures::{fixture, library, run_untraced, Variant};

/// The reason a fast probe keeps its int3 on such a function.
const READS_RETURN_ADDRESS: &str = "the function reads its own return address";

/// The `retval`s of the returns of `symbol`, in order.
fn pointers(events: &[Value], symbol: &str) -> Vec<u64> {
    of_symbol(events, "return", symbol)
        .iter()
        .map(|e| {
            e["retval"]
                .as_i64()
                .unwrap_or_else(|| panic!("return without an integer retval: {e}"))
                as u64
        })
        .collect()
}

/// `symbol` was entered `calls` times and each call's return was reported
/// with a non-null pointer.
fn returned_pointers(events: &[Value], symbol: &str, calls: usize, what: &str) -> Vec<u64> {
    assert_eq!(
        of_symbol(events, "entry", symbol).len(),
        calls,
        "{what}: entries of {symbol}\n{}",
        show(events)
    );
    let values = pointers(events, symbol);
    assert_eq!(
        values.len(),
        calls,
        "{what}: returns of {symbol}\n{}",
        show(events)
    );
    assert!(
        values.iter().all(|&v| v != 0),
        "{what}: {symbol} returned NULL: {values:x?}"
    );
    values
}

/// The mode (`fast`, `int3`, `mixed`) and reasons reported for `probe`.
fn mode_of<'a>(events: &'a [Value], probe: &str) -> (&'a str, Vec<&'a str>) {
    let e = of_kind(events, "probe")
        .into_iter()
        .find(|e| str_field(e, "probe") == probe)
        .unwrap_or_else(|| panic!("no mode for {probe}\n{}", show(events)));
    let reasons = e["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    (str_field(e, "mode"), reasons)
}

/// Under `--fast`, `probe` (on `dlsym` or `dlopen`, or a glob holding them)
/// keeps an int3 there, and says why.
fn says_it_reads_its_return_address(events: &[Value], probe: &str, what: &str) {
    let (mode, reasons) = mode_of(events, probe);
    assert_ne!(mode, "fast", "{what}: {probe}");
    assert!(
        reasons.iter().any(|r| r.contains(READS_RETURN_ADDRESS)),
        "{what}: {probe}: {reasons:?}"
    );
}

/// `interposer`'s malloc is libinterpose's, which forwards through
/// `dlsym(RTLD_NEXT, "malloc")` (and `"free"`): with dlsym probed (by name,
/// in all of libc, with and without `--fast`) it still finds libc's, and
/// both calls of dlsym report their return.
#[test]
fn an_interposer_finds_the_next_malloc() {
    let prog = fixture("interposer", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    assert_eq!(
        (untraced.stdout.as_str(), untraced.code()),
        ("interposed=3\n", 0)
    );
    let specs: [&[&str]; 2] = [&["-s", "libc:*"], &["-s", "dlsym", "-s", "dlopen"]];
    for fast in [false, true] {
        for spec in specs {
            let mut args: Vec<&str> = vec![if fast { "--fast" } else { "--int3" }];
            args.extend(spec);
            let what = format!("interposer under {args:?}");
            let name = format!("interposer_{}_{}", fast, spec.len());
            let (run, events) = trace_json(&name, &args, &prog, &[]);
            assert_same_as_untraced(&run, &untraced, &what);
            let found = returned_pointers(&events, "dlsym", 2, &what);
            assert_ne!(found[0], found[1], "{what}: malloc and free");
            assert!(of_symbol(&events, "entry", "dlopen").is_empty(), "{what}");
            if fast {
                says_it_reads_its_return_address(&events, spec[1], &what);
            }
        }
    }
}

/// `pluginhost` loads libloader, whose RUNPATH alone finds libsecond: by a
/// call to dlopen (load_plugin) and, once that is closed, by a tail call
/// (load_again calls load_tail, which jumps to dlopen). With dlopen probed, with all of libc
/// probed, and with return probes only on the functions around the tail
/// call (dlopen then finds the trampoline, or the fast return stub, in its
/// return address slot: rtrace's hook gives it the real one), each with and
/// without `--fast`: the same output and status, and every return reported.
#[test]
fn a_plugin_loader_finds_its_origin() {
    let prog = fixture("pluginhost", Variant::Pie);
    library("libsecond", Variant::Pie);
    let loader = library("libloader", Variant::Pie);
    let loader = loader.to_str().unwrap();
    let untraced = run_untraced(&prog, &[loader]);
    assert_eq!(
        (untraced.stdout.as_str(), untraced.code()),
        ("second=42 again=42\n", 0)
    );
    // libloader is loaded by its path: it is named so.
    let tail = format!("{loader}:load_tail");
    let again = format!("{loader}:load_again");
    let around = ["-s", tail.as_str(), "-s", again.as_str()];
    let specs: [(&str, Vec<&str>); 4] = [
        ("libc", vec!["-s", "libc:*"]),
        ("named", vec!["-s", "dlopen", "-s", "dlsym"]),
        ("tail", around.to_vec()),
        ("tail_and_dlopen", [&around[..], &["-s", "dlopen"]].concat()),
    ];
    for fast in [false, true] {
        for (name, spec) in &specs {
            let mut args: Vec<&str> = vec![if fast { "--fast" } else { "--int3" }];
            args.extend(spec);
            let what = format!("pluginhost under {args:?}");
            let (run, events) = trace_json(
                &format!("pluginhost_{name}_{fast}"),
                &args,
                &prog,
                &[loader],
            );
            assert_same_as_untraced(&run, &untraced, &what);
            check_plugin_calls(&events, name, fast, loader, &what);
        }
    }
}

fn check_plugin_calls(events: &[Value], name: &str, fast: bool, loader: &str, what: &str) {
    let probes_dlopen = name != "tail";
    if probes_dlopen {
        // libloader by path, then libsecond twice.
        returned_pointers(events, "dlopen", 3, what);
        if fast {
            let probe = if name == "libc" { "libc:*" } else { "dlopen" };
            says_it_reads_its_return_address(events, probe, what);
        }
    }
    if name == "libc" || name == "named" {
        // load_plugin, load_again, and second_value after each load.
        returned_pointers(events, "dlsym", 4, what);
        return;
    }
    let tail = returned_pointers(events, "load_tail", 1, what);
    let again = returned_pointers(events, "load_again", 1, what);
    assert_eq!(tail, again, "{what}");
    if fast {
        // Both patched: dlopen is entered with the return stub in its slot.
        for function in ["load_tail", "load_again"] {
            let probe = format!("{loader}:{function}");
            assert_eq!(mode_of(events, &probe).0, "fast", "{what}: {probe}");
        }
    }
    // The tail call returns with its caller, innermost first.
    let returns: Vec<&str> = of_kind(events, "return")
        .into_iter()
        .map(|e| str_field(e, "symbol"))
        .filter(|s| ["dlopen", "load_tail", "load_again"].contains(s))
        .collect();
    let expected: &[&str] = match probes_dlopen {
        true => &["dlopen", "dlopen", "dlopen", "load_tail", "load_again"],
        false => &["load_tail", "load_again"],
    };
    assert_eq!(returns, expected, "{what}\n{}", show(events));
}

/// libgcc's unwinders start their walk from their own return address:
/// probed by name (where rtrace's own hook is too), they still find every
/// frame, and each exception is caught where it is caught untraced. They
/// return only when no handler is found: no return is reported.
#[test]
fn unwinders_probed_by_name_still_unwind() {
    let prog = fixture("thrower", Variant::Pie);
    let untraced = run_untraced(&prog, &[]);
    for fast in [false, true] {
        let mut args = vec!["-s", "_Unwind_RaiseException", "-s", "_Unwind_Resume"];
        args.insert(0, if fast { "--fast" } else { "--int3" });
        let what = format!("thrower under {args:?}");
        let (run, events) = trace_json(&format!("unwinders_{fast}"), &args, &prog, &[]);
        assert_same_as_untraced(&run, &untraced, &what);
        // Two throws in outer's loop, two in rethrower's and their two
        // rethrows; the cleanups of middle's frame resume four times.
        assert_eq!(
            of_symbol(&events, "entry", "_Unwind_RaiseException").len(),
            6,
            "{what}\n{}",
            show(&events)
        );
        assert_eq!(
            of_symbol(&events, "entry", "_Unwind_Resume").len(),
            4,
            "{what}"
        );
        assert!(of_kind(&events, "return").is_empty(), "{what}");
    }
}
