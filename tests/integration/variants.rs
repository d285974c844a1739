//! The ways a program can be linked that change how its code is reached:
//! static-pie (no dynamic linker, relocated by itself at a random base),
//! bind-now (every PLT slot bound before `main`), `-fno-plt` (library calls
//! through the GOT, no PLT stub): function probes in the program and in libc
//! report every call, and the program behaves as untraced.

use crate::events::{
    assert_same_as_untraced, of_kind, of_symbol, retvals, show, str_field, trace_json,
};
use crate::fixtures::{fixture, run_untraced, Variant};

const LINKAGES: [Variant; 3] = [Variant::StaticPie, Variant::BindNow, Variant::NoPlt];

#[test]
fn count_work_and_twice_in_every_linkage() {
    for variant in LINKAGES {
        let prog = fixture("count", variant);
        let untraced = run_untraced(&prog, &["50", "3"]);
        assert_eq!(untraced.stdout, "sum=2500\ntwice=41\n");
        assert_eq!(untraced.code(), 3);
        let test = format!("linkage_count_{variant}");
        let (run, events) = trace_json(&test, &["-s", "work", "-s", "twice"], &prog, &["50", "3"]);
        let what = format!("rtrace -s work -s twice -- count 50 3 ({variant})");
        assert_same_as_untraced(&run, &untraced, &what);
        assert_eq!(
            of_symbol(&events, "entry", "work").len(),
            50,
            "{what}\n{}",
            show(&events)
        );
        let expected: Vec<i64> = (0..50).map(|i| 2 * i + 1).collect();
        assert_eq!(retvals(&events, "work"), expected, "{what}");
        assert_eq!(retvals(&events, "twice"), vec![41], "{what}");
        let exits = of_kind(&events, "exit");
        assert_eq!(exits.len(), 1, "{what}\n{}", show(&events));
        assert_eq!(exits[0]["code"], 3, "{what}");
    }
}

#[test]
fn libc_printf_probe_when_calls_bypass_the_plt() {
    // count calls printf twice; each prints 9 bytes ("sum=2500\n", "twice=41\n").
    for (variant, spec) in [
        (Variant::Pie, "libc:printf"),
        (Variant::BindNow, "libc:printf"),
        (Variant::NoPlt, "libc:printf"),
        (Variant::BindNow, "printf"),
        (Variant::NoPlt, "printf"),
        // No libc module: printf is linked into the program.
        (Variant::StaticPie, "printf"),
        (Variant::Static, "printf"),
    ] {
        let prog = fixture("count", variant);
        let untraced = run_untraced(&prog, &["50"]);
        let test = format!("linkage_printf_{variant}_{}", spec.replace(':', "_"));
        let (run, events) = trace_json(&test, &["-s", spec], &prog, &["50"]);
        let what = format!("rtrace -s {spec} -- count 50 ({variant})");
        assert_same_as_untraced(&run, &untraced, &what);
        let entries = of_symbol(&events, "entry", "printf");
        assert_eq!(entries.len(), 2, "{what}\n{}", show(&events));
        assert_eq!(retvals(&events, "printf"), vec![9, 9], "{what}");
        let module = str_field(entries[0], "module");
        if matches!(variant, Variant::Static | Variant::StaticPie) {
            assert_eq!(module, prog.to_str().unwrap(), "{what}");
        } else {
            assert!(module.ends_with("/libc.so.6"), "{what}: {module}");
        }
    }
}
