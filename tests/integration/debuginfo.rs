//! Separate debug files and line probes: `FILE:LINE` with the DWARF in a
//! `.gnu_debuglink` file next to the binary, in a build-id directory, in
//! Debian's libc6-dbg for libc; one breakpoint per function that has code for
//! the line; the error for a line without code.
//!
//! Every count here is exact: the fixtures call each function a documented
//! number of times.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rtrace::symbols::ElfFile;

use crate::events::{
    assert_one_error_line, assert_same_as_untraced, of_kind, read_events, show, str_field,
    temp_path, trace_json,
};
use crate::fixtures::{
    debug_file_of, fixture, rtrace_bin, run_command, run_rtrace, run_untraced, source_dir, Spawned,
    Variant, TIMEOUT,
};

/// The 1-based line of `file` (in `target-fixtures/`) that contains `marker`,
/// which must occur once.
fn line_of(file: &str, marker: &str) -> u32 {
    let text = fs::read_to_string(source_dir().join(file)).unwrap();
    let lines: Vec<u32> = (1..)
        .zip(text.lines())
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(lines.len(), 1, "{marker:?} must occur once in {file}");
    lines[0]
}

/// A fresh empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = temp_path(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn objcopy(args: &[&std::ffi::OsStr]) {
    let out = Command::new("objcopy")
        .args(args)
        .output()
        .expect("objcopy");
    assert!(
        out.status.success(),
        "objcopy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks a `count.c` line probe on `work`'s last line: 50 hits in `work`,
/// the program's output and status untouched.
fn check_work_line_probe(test: &str, prog: &Path, extra_env: Option<(&str, &Path)>) {
    let spec = format!("count.c:{}", line_of("count.c", "return doubled + 1;"));
    let untraced = run_untraced(prog, &["50", "3"]);
    let out = temp_path(&format!("{test}.jsonl"));
    let mut cmd = Command::new(rtrace_bin());
    if let Some((key, value)) = extra_env {
        cmd.env(key, value);
    }
    cmd.arg("--json")
        .arg("-o")
        .arg(&out)
        .args(["-s", &spec, "--"])
        .arg(prog)
        .args(["50", "3"]);
    let run = run_command(cmd, TIMEOUT);
    let what = format!("rtrace -s {spec} -- {} 50 3", prog.display());
    assert_same_as_untraced(&run, &untraced, &what);
    let events = read_events(&out);
    let hits = of_kind(&events, "hit");
    assert_eq!(hits.len(), 50, "{what}\n{}", show(&events));
    assert!(
        hits.iter().all(|h| str_field(h, "symbol") == "work"),
        "{what}\n{}",
        show(&events)
    );
}

/// `count` with every symbol and all its DWARF moved to `count.debug`
/// (`strip --strip-all`, then a debuglink): `work` exists only in the debug
/// file's `.symtab`.
fn fully_stripped_count(dir: &Path) -> PathBuf {
    let prog = dir.join("count");
    fs::copy(fixture("count", Variant::Pie), &prog).unwrap();
    let debug = dir.join("count.debug");
    objcopy(&[
        "--only-keep-debug".as_ref(),
        prog.as_os_str(),
        debug.as_os_str(),
    ]);
    let out = Command::new("strip")
        .arg("--strip-all")
        .arg(&prog)
        .output()
        .expect("strip");
    assert!(out.status.success(), "strip: {out:?}");
    let mut link = std::ffi::OsString::from("--add-gnu-debuglink=");
    link.push(&debug);
    objcopy(&[link.as_os_str(), prog.as_os_str()]);
    let elf = ElfFile::open(&prog).unwrap();
    assert!(
        elf.functions().iter().all(|f| f.name != "work"),
        "work stripped"
    );
    prog
}

/// Functions that only the separate debug file's `.symtab` names are found
/// by name, typed from its DWARF, and name the addresses a line probe hits,
/// as gdb finds them.
#[test]
fn functions_found_in_the_debug_files_symbol_table() {
    let dir = temp_dir("fully_stripped");
    let prog = fully_stripped_count(&dir);
    let untraced = run_untraced(&prog, &["3"]);
    let (run, events) = trace_json("stripped_work", &["-s", "work"], &prog, &["3"]);
    assert_same_as_untraced(&run, &untraced, "-s work");
    let entries = of_kind(&events, "entry");
    assert_eq!(entries.len(), 3, "{}", show(&events));
    assert!(entries.iter().all(|e| str_field(e, "symbol") == "work"));
    assert_eq!(entries[0]["arg_names"], serde_json::json!(["x"]));
    check_work_line_probe("stripped_line", &prog, None);
    // libc's internal functions are in libc6-dbg's symbol table only.
    let (run, events) = trace_json(
        "libc_internal",
        &["-s", "libc:__libc_start_call_main"],
        &prog,
        &["3"],
    );
    assert_same_as_untraced(&run, &untraced, "-s libc:__libc_start_call_main");
    let entries = of_kind(&events, "entry");
    assert_eq!(entries.len(), 1, "{}", show(&events));
    assert_eq!(str_field(entries[0], "symbol"), "__libc_start_call_main");
}

#[test]
fn line_probe_with_dwarf_in_a_debuglink_file() {
    let prog = fixture("count", Variant::Debuglink);
    assert!(debug_file_of(&prog).is_file());
    check_work_line_probe("debuglink_line", &prog, None);
}

#[test]
fn line_probe_without_the_debug_file_is_an_error() {
    // The same binary, alone in a directory: its debug file is nowhere.
    let dir = temp_dir("debuglink_missing");
    let prog = dir.join("count");
    fs::copy(fixture("count", Variant::Debuglink), &prog).unwrap();
    let line = line_of("count.c", "return doubled + 1;");
    let spec = format!("count.c:{line}");
    let run = run_rtrace(&["-s", &spec], &prog, &["5"]);
    let error = assert_one_error_line(&run, 1, &spec);
    assert_eq!(
        error,
        format!(
            "rtrace: no code for count.c:{line} (count has no line table; not a file of those \
             of libc.so.6, ld-linux-x86-64.so.2) (build the program with -g, or install its \
             debug package)"
        )
    );
}

#[test]
fn line_probe_with_dwarf_in_a_build_id_directory() {
    // No debuglink: only the build-id leads to the debug file, in a debug
    // directory given by RTRACE_DEBUG_FILE_DIRECTORY.
    let dir = temp_dir("build_id_dir");
    let prog = dir.join("count");
    let built = fixture("count", Variant::Debuglink);
    fs::copy(&built, &prog).unwrap();
    objcopy(&["--remove-section=.gnu_debuglink".as_ref(), prog.as_ref()]);
    let elf = ElfFile::open(&prog).unwrap();
    assert!(elf.debug_link().is_none());
    let hex: String = elf
        .build_id()
        .expect("gcc links with --build-id")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let debug_dir = dir.join("debug");
    let by_id = debug_dir.join(".build-id").join(&hex[..2]);
    fs::create_dir_all(&by_id).unwrap();
    fs::copy(
        debug_file_of(&built),
        by_id.join(format!("{}.debug", &hex[2..])),
    )
    .unwrap();
    check_work_line_probe(
        "build_id_line",
        &prog,
        Some(("RTRACE_DEBUG_FILE_DIRECTORY", &debug_dir)),
    );
    // Without the directory, no DWARF.
    let spec = format!("count.c:{}", line_of("count.c", "return doubled + 1;"));
    let run = run_rtrace(&["-s", &spec], &prog, &["5"]);
    assert_one_error_line(&run, 1, &spec);
}

/// The first line of `file` whose code includes the entry of libc's function
/// `name`, from libc's debug file (libc6-dbg, found by build-id).
fn libc_entry_line(file: &str, name: &str) -> u32 {
    let libc = ElfFile::open(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
    assert!(
        libc.has_dwarf(),
        "no DWARF for libc: install libc6-dbg (apt-get install libc6-dbg)"
    );
    let entry = libc.function_named(name).expect(name).addr;
    (1..500)
        .find(|&l| {
            libc.line_addresses(file, l)
                .is_ok_and(|a| a.contains(&entry))
        })
        .unwrap_or_else(|| panic!("no line of {file} at {name}'s entry"))
}

#[test]
fn libc_line_probe_with_libc6_dbg_on_attach() {
    // spin calls usleep once a millisecond; glibc's misc/usleep.c has its line.
    let spec = format!("usleep.c:{}", libc_entry_line("usleep.c", "usleep"));
    let spin = Spawned::start(&fixture("spin", Variant::Pie), &[]);
    let pid = spin.pid();
    let mut rtrace = Spawned::rtrace_attach(&["-s", &spec, "--json"], pid);
    let what = format!("rtrace -p {pid} -s {spec} --json");
    let mut hits = 0;
    while hits < 3 {
        let line = rtrace.wait_stderr_line(|l| l.starts_with('{'));
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        match str_field(&event, "event") {
            "attach" => assert_eq!(event["probes"], 1, "{what}: {event}"),
            // Fast probes (the default) say how the line's one site runs.
            "probe" => {
                assert_eq!(event["mode"], "fast", "{what}: {event}");
                assert_eq!(event["sites"][0]["symbol"], "usleep", "{what}: {event}");
            }
            "hit" => {
                assert_eq!(str_field(&event, "symbol"), "usleep", "{what}: {event}");
                assert!(
                    str_field(&event, "module").ends_with("/libc.so.6"),
                    "{what}: {event}"
                );
                hits += 1;
            }
            other => panic!("{what}: unexpected {other} event: {event}"),
        }
    }
    let run = rtrace.terminate();
    assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
    let spin = spin.terminate();
    assert_eq!(spin.code(), 0, "spin after detach: {spin:?}");
    assert!(spin.stdout.ends_with("done\n"), "{spin:?}");
}

/// In launch mode a line of a library waits for the library, as a function
/// name does: `count 2` calls printf twice.
#[test]
fn libc_line_probe_in_launch_mode() {
    let spec = format!("printf.c:{}", libc_entry_line("printf.c", "printf"));
    let prog = fixture("count", Variant::Pie);
    let untraced = run_untraced(&prog, &["2"]);
    let (run, events) = trace_json("libc_line_launch", &["-s", &spec], &prog, &["2"]);
    assert_same_as_untraced(&run, &untraced, &spec);
    let hits: Vec<_> = events
        .iter()
        .filter(|e| str_field(e, "event") == "hit")
        .collect();
    assert_eq!(hits.len(), 2, "{spec}: {events:?}");
    assert!(hits.iter().all(|e| str_field(e, "symbol") == "printf"));
}

/// A line of libc without code, in launch mode: found once the startup
/// libraries are loaded, it names libc's nearest lines and ends the launch
/// before the program runs.
#[test]
fn libc_line_without_code_names_the_nearest_lines() {
    let entry = libc_entry_line("printf.c", "printf");
    let spec = format!("printf.c:{}", entry - 1);
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-s", &spec], &prog, &["2"]);
    let error = assert_one_error_line(&run, 1, &spec);
    assert_eq!(
        error,
        format!(
            "rtrace: no code at {spec}; nearest lines with code: {entry}, {}",
            entry + 1
        )
    );
    assert_eq!(run.stdout, "", "{spec}: the program must not have run");
    // A file no line table has: the modules searched are named, and the
    // hint is not to rebuild with -g (both have debug info).
    let run = run_rtrace(&["-s", "nosuchfile.c:3"], &prog, &["2"]);
    let error = assert_one_error_line(&run, 1, "nosuchfile.c:3");
    assert!(
        error.starts_with(
            "rtrace: no code for nosuchfile.c:3 (not a file of the line tables of count, \
             libc.so.6, ld-linux-x86-64.so.2) (check the file name"
        ),
        "{error}"
    );
    assert!(!error.contains("-g"), "{error}");
    assert_eq!(run.stdout, "");
}

/// `--list` shows libc's source files as gdb does: `./stdio-common/printf.c`,
/// the relative compilation directory not doubled.
#[test]
fn list_shows_library_source_paths_like_gdb() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["-l", "libc:printf"], &prog, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let entry = libc_entry_line("printf.c", "printf");
    let fields: Vec<&str> = run.stdout.trim_end().split('\t').collect();
    assert_eq!(
        fields[1..],
        [
            "libc.so.6",
            "printf",
            &format!("./stdio-common/printf.c:{entry}")
        ],
        "{}",
        run.stdout
    );
}

#[test]
fn line_without_code_names_the_nearest_lines_with_code() {
    let work_open = line_of("count.c", "PROBED int work(int x)") + 1;
    let doubled = line_of("count.c", "int doubled = x * 2;");
    let asm = line_of("count.c", "__asm__ volatile");
    let work_close = line_of("count.c", "return doubled + 1;") + 1;
    let twice_open = line_of("count.c", "PROBED int twice(int x)") + 1;
    let return_status = line_of("count.c", "return status;");
    assert_eq!(doubled, work_open + 1);
    let cases = [
        (3, work_open, doubled),
        (doubled + 1, doubled, asm),
        (work_close + 1, work_close, twice_open),
        (1000, return_status, return_status + 1),
    ];
    for variant in [Variant::Pie, Variant::Debuglink] {
        let prog = fixture("count", variant);
        for (line, before, after) in cases {
            let spec = format!("count.c:{line}");
            let run = run_rtrace(&["-s", &spec], &prog, &["5"]);
            let error = assert_one_error_line(&run, 1, &format!("{spec} ({variant})"));
            assert_eq!(
                error,
                format!(
                    "rtrace: no code at count.c:{line}; nearest lines with code: {before}, {after}"
                ),
                "{variant}"
            );
            assert_eq!(run.stdout, "", "the program never ran");
        }
    }
}

#[test]
fn line_inlined_into_two_functions_hits_in_both() {
    let spec = format!("inlined.c:{}", line_of("inlined.c", "helper body"));
    for variant in [Variant::Pie, Variant::Debuglink, Variant::NoPie] {
        let prog = fixture("inlined", variant);
        let test = format!("inlined_line_{variant}");
        let (run, events) = trace_json(&test, &["-s", &spec], &prog, &["5"]);
        let what = format!("rtrace -s {spec} -- inlined 5 ({variant})");
        assert_eq!(run.stdout, "sum=60\n", "{what}: {}", run.stderr);
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        let symbols: Vec<&str> = of_kind(&events, "hit")
            .iter()
            .map(|h| str_field(h, "symbol"))
            .collect();
        assert_eq!(
            symbols,
            ["first", "second"].repeat(5),
            "{what}\n{}",
            show(&events)
        );
    }
}

#[test]
fn for_line_is_one_breakpoint_hit_once() {
    // The `for` line has code in three places (init, increment, test); the
    // breakpoint is at the first, the initialisation, which runs once.
    let spec = format!("inlined.c:{}", line_of("inlined.c", "the loop"));
    let prog = fixture("inlined", Variant::Pie);
    let (run, events) = trace_json("for_line", &["-s", &spec], &prog, &["7"]);
    assert_eq!(run.stdout, "sum=126\n", "{}", run.stderr);
    let hits = of_kind(&events, "hit");
    assert_eq!(hits.len(), 1, "{}", show(&events));
    assert_eq!(str_field(hits[0], "symbol"), "main");
}

#[test]
fn corrupt_debug_file_found_by_build_id_is_one_error_line() {
    // A debug file with the right build-id (so it is taken) and a line table
    // that is garbage: an error naming the debug file, never a panic.
    let dir = temp_dir("corrupt_debug");
    let prog = dir.join("count");
    let built = fixture("count", Variant::Debuglink);
    fs::copy(&built, &prog).unwrap();
    objcopy(&["--remove-section=.gnu_debuglink".as_ref(), prog.as_ref()]);
    let hex: String = ElfFile::open(&prog)
        .unwrap()
        .build_id()
        .expect("build-id")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let debug_dir = dir.join("debug");
    let by_id = debug_dir.join(".build-id").join(&hex[..2]);
    fs::create_dir_all(&by_id).unwrap();
    let debug = by_id.join(format!("{}.debug", &hex[2..]));
    let garbage = dir.join("garbage");
    fs::write(&garbage, [0xf0u8, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let mut update = std::ffi::OsString::from(".debug_line=");
    update.push(&garbage);
    objcopy(&[
        "--update-section".as_ref(),
        update.as_os_str(),
        debug_file_of(&built).as_os_str(),
        debug.as_os_str(),
    ]);
    let spec = format!("count.c:{}", line_of("count.c", "return doubled + 1;"));
    let mut cmd = Command::new(rtrace_bin());
    cmd.env("RTRACE_DEBUG_FILE_DIRECTORY", &debug_dir)
        .args(["-s", &spec, "--"])
        .arg(&prog)
        .arg("5");
    let run = run_command(cmd, TIMEOUT);
    let error = assert_one_error_line(&run, 1, &spec);
    assert!(
        error.contains("corrupt") && error.contains(debug.to_str().unwrap()),
        "{error}"
    );
}

#[test]
fn debuglink_file_under_the_debug_directory_mirror() {
    // gdb's third place for a debuglink name: DEBUGDIR/BINDIR/NAME.
    let dir = temp_dir("debuglink_mirror");
    let bin_dir = dir.join("bin");
    fs::create_dir_all(&bin_dir).unwrap();
    let prog = bin_dir.join("count");
    let built = fixture("count", Variant::Debuglink);
    fs::copy(&built, &prog).unwrap();
    objcopy(&[
        "--remove-section=.note.gnu.build-id".as_ref(),
        prog.as_ref(),
    ]);
    let debug_dir = dir.join("debug");
    let real_bin_dir = fs::canonicalize(&bin_dir).unwrap();
    let mirror = debug_dir.join(real_bin_dir.strip_prefix("/").unwrap());
    fs::create_dir_all(&mirror).unwrap();
    fs::copy(debug_file_of(&built), mirror.join("count.debug")).unwrap();
    check_work_line_probe(
        "debuglink_mirror_line",
        &prog,
        Some(("RTRACE_DEBUG_FILE_DIRECTORY", &debug_dir)),
    );
}

/// With libc6-dbg, a libc function without a built-in prototype is typed from
/// the DWARF in libc's debug file: printf's named parameter, then `...`.
#[test]
fn libc_arguments_typed_from_libc6_dbg() {
    let prog = fixture("count", Variant::Pie);
    let untraced = run_untraced(&prog, &["2"]);
    let (run, events) = trace_json("libc_dwarf_args", &["-s", "libc:printf"], &prog, &["2"]);
    assert_same_as_untraced(&run, &untraced, "-s libc:printf");
    let entries: Vec<_> = events
        .iter()
        .filter(|e| str_field(e, "event") == "entry")
        .map(|e| (e["args"].clone(), e["arg_names"].clone()))
        .collect();
    let names = serde_json::json!(["format", null]);
    assert_eq!(
        entries,
        vec![
            (serde_json::json!(["\"sum=%ld\\n\"", "..."]), names.clone()),
            (serde_json::json!(["\"twice=%d\\n\"", "..."]), names),
        ],
        "{}",
        show(&events)
    );
}
