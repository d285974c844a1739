//! Every example command line of `rtrace --help` (its "Examples:") and of
//! the README (the `rtrace …` and `cargo run --release -- …` lines of its
//! `sh` blocks, and the `$ rtrace …` lines of any block), read from the help
//! and the README at test time, so that a new example is run too.
//!
//! An example that runs on any Debian machine (its program found in `PATH`,
//! `-p PID`, `--generate`) is run as written, with the binary under test for
//! `rtrace`, under the harness's timeout: it must exit as it should (the
//! program's status untraced, 0 after the SIGINT that ends an attach) and
//! print what it promises, at least one call (a `name(` line, or a JSON
//! `entry`) of each function it probes by name, a `-c` row with calls for
//! each probe, a listed point for `-l`, the output of its script. `-p PID`
//! examples attach to a shell loop that echoes, in lock step with the test,
//! each line it reads to `/dev/null` and back: reads, opens, writes and
//! closes. Examples that need a program of this repository or a file of the
//! reader are in [`SKIPPED`], each with why; one that is neither runnable nor
//! there fails the test, as does an entry of [`SKIPPED`] that no example
//! matches any more.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::fixtures::{rtrace_bin, run_command, Run, Spawned, TIMEOUT};

/// Examples not run, and why: they need a program of this repository's
/// fixtures or one the reader has. Each is written as the help or the
/// README writes it (without a `$ ` prompt or a trailing `# comment`).
const SKIPPED: &[(&str, &str)] = &[
    (
        "rtrace replay 2>/dev/null",
        "the recording the example before makes (that one is checked replayed)",
    ),
    (
        "rtrace replay -x 'open { @opened[str(arg(0))] = count(); } read:return /retval > 0/ { printf(\"%s read %d bytes\\n\", comm, retval); }' 2>/dev/null",
        "the recording the example before makes (that one is checked replayed; a script \
         over a recording is checked in recording.rs)",
    ),
    (
        "rtrace --stack -s c -- ./stacker",
        "the stacker fixture (stacks.rs)",
    ),
    (
        "rtrace -c --folded stacks.folded --flamegraph stacks.svg -s c -- ./stacker 3",
        "the stacker fixture (stacks.rs)",
    ),
    (
        "rtrace --inject 'libc:openat:retval=-1:errno=ENOENT:when=3+2' -- ./app",
        "a program of the reader's that calls openat (inject.rs)",
    ),
    (
        "rtrace --perfetto trace.json -s fact -- ./recurse 5",
        "the recurse fixture (timeline.rs)",
    ),
    (
        "rtrace -c --hist -s work -s twice -- ./count 50",
        "the count fixture (hist.rs)",
    ),
    (
        "rtrace -s work -s twice -- ./count 3",
        "the count fixture (fast.rs)",
    ),
    (
        "rtrace -s parse -s scale --proto 'int parse(const char *s, size_t n)' --proto 'double scale(double x, int)' -- ./app",
        "a stripped program of the reader's (proto.rs runs the typed fixture stripped)",
    ),
    (
        "rtrace -l 'ns::*' -- ./app",
        "a C++ program of the reader's (names.rs)",
    ),
    (
        "rtrace -l work twice ./app",
        "a program of the reader's (cli.rs)",
    ),
    (
        r#"rtrace -x 'count:* { @[func] = count() }' -- ./count 5"#,
        "the count fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'work { @[tid] = count() }' -- ./threads 4 1000"#,
        "the threads fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'work:return { @ns = hist(duration) }' -- ./count 100"#,
        "the count fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'work:return { @ret = hist(retval) }' -- ./count 10"#,
        "the count fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'work { @x = lhist(arg(0), 0, 100, 25) }' -- ./count 120"#,
        "the count fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'libc:write:return /retval > 0/ { @bytes[comm] = sum(retval) }' -- ./count 5"#,
        "the count fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'work { printf("%s(%d) in %s\n", func, arg(0), comm) }' -- ./count 3"#,
        "the count fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'work /arg(0) % 10 == 0/ { @tens = count() }' -- ./count 100"#,
        "the count fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'c { @[ustack] = count() }' -- ./stacker 3"#,
        "the stacker fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'work { @calls = count() } interval:1s { print(@calls); clear(@calls) }' -- ./spin"#,
        "the spin fixture (scripts.rs, one_liners_*)",
    ),
    (
        r#"rtrace -x 'work { @n = count(); if @n == 5 { exit() } }' -- ./spin"#,
        "the spin fixture (scripts.rs, one_liners_*)",
    ),
];

/// The process `-p PID` examples attach to: a shell that prints `ready`,
/// then for each line it reads, echoes it to `/dev/null` (an `open`, a
/// `write`, a `close`) and back to the test (a `write`), all in the one
/// process, as a builtin.
const ATTACH_TARGET: &str =
    r#"echo ready; while read -r l; do echo "$l" >/dev/null; echo "$l"; done"#;

/// One example command line, as written and as words.
#[derive(Clone, Debug)]
struct Example {
    /// Where it is written: `--help`, or `README.md:LINE`.
    place: String,
    /// As written, without a prompt or a trailing comment.
    text: String,
    /// rtrace's arguments (after `rtrace` or `cargo run --release --`).
    args: Vec<String>,
}

/// A shell command line split into words as sh splits it: quotes removed,
/// a `#` that starts a word ends the line, and an unquoted `>`, `<`, `|`,
/// `;` or `&` ends the command (the rest is a redirection or another
/// command, not rtrace's arguments). Returns the words and the length of
/// `line` up to the comment, if any.
fn shell_words(line: &str) -> (Vec<String>, usize) {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.char_indices().peekable();
    let mut stopped = false;
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' => {
                words.extend(word.take());
            }
            '#' if word.is_none() => return (finish(words, word, stopped), at),
            _ if stopped => {}
            '>' | '<' | '|' | ';' | '&' => {
                words.extend(word.take());
                stopped = true;
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for (_, c) in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&(_, next @ ('"' | '\\' | '$' | '`'))) => {
                                w.push(next);
                                chars.next();
                            }
                            _ => w.push('\\'),
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                if let Some((_, next)) = chars.next() {
                    w.push(next);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    (finish(words, word, stopped), line.len())
}

fn finish(mut words: Vec<String>, word: Option<String>, stopped: bool) -> Vec<String> {
    if !stopped {
        words.extend(word);
    }
    words
}

/// The example on `line` (at `place`), when it runs rtrace.
fn example_in(line: &str, place: String) -> Option<Example> {
    let line = line.trim();
    let line = line.strip_prefix("$ ").unwrap_or(line);
    let (words, end) = shell_words(line);
    let args = match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["rtrace", ..] => words[1..].to_vec(),
        ["cargo", "run", "--release", "--", ..] => words[4..].to_vec(),
        ["cargo", "run", "--", ..] => words[3..].to_vec(),
        _ => return None,
    };
    Some(Example {
        place,
        text: line[..end].trim_end().to_string(),
        args,
    })
}

/// The examples of `rtrace --help`: the lines after "Examples:".
fn help_examples() -> Vec<Example> {
    let mut cmd = Command::new(rtrace_bin());
    cmd.arg("--help");
    let help = run_command(cmd, TIMEOUT);
    assert_eq!(help.code(), 0, "rtrace --help: {}", help.stderr);
    let (_, examples) = help
        .stdout
        .split_once("Examples:\n")
        .unwrap_or_else(|| panic!("rtrace --help has no \"Examples:\"\n{}", help.stdout));
    let found: Vec<Example> = examples
        .lines()
        .filter_map(|line| example_in(line, "--help".to_string()))
        .collect();
    assert!(!found.is_empty(), "no example in\n{examples}");
    found
}

/// The examples of README.md: every line of an `sh` block that runs
/// rtrace, and every `$ rtrace` line of any other block. A line ending in
/// `\` goes on on the next.
fn readme_examples() -> Vec<Example> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut found = Vec::new();
    let mut block: Option<String> = None;
    let mut pending = String::new();
    for (n, line) in readme.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(lang.trim().to_string()),
            };
            continue;
        }
        let Some(lang) = &block else { continue };
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        let whole = std::mem::take(&mut pending) + trimmed;
        if lang == "sh" || whole.starts_with("$ ") {
            found.extend(example_in(&whole, format!("README.md:{}", n + 1)));
        }
    }
    assert!(
        found.len() > 5,
        "too few examples found in README.md: {found:?}"
    );
    found
}

/// What an example asks of rtrace, read from its arguments.
#[derive(Debug, Default)]
struct Asks {
    /// `-s` specs, one each (a comma list split, `!SPEC` left out).
    probes: Vec<String>,
    list: bool,
    summary: bool,
    json: bool,
    script: bool,
    generate: bool,
    /// The value of `-o`.
    output: Option<String>,
    /// The index of the value of `-p`.
    pid_at: Option<usize>,
    /// The traced program and its arguments.
    command: Vec<String>,
    /// `rtrace record`: the calls are in the recording, checked replayed.
    record: bool,
}

/// Options that take a value (the value is not a program to launch).
const WITH_VALUE: &[&str] = &[
    "-s",
    "--probe",
    "-o",
    "--output",
    "-p",
    "--pid",
    "--step",
    "--string-limit",
    "--inject",
    "-x",
    "--script",
    "--script-ops",
    "--stack-depth",
    "--folded",
    "--flamegraph",
    "--perfetto",
    "--overflow",
    "--color",
    "--generate",
];

fn asks(args: &[String]) -> Asks {
    let mut asks = Asks {
        record: args.first().is_some_and(|a| a == "record"),
        ..Asks::default()
    };
    let mut i = usize::from(asks.record);
    while i < args.len() {
        let arg = args[i].as_str();
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match arg {
            "--" => {
                asks.command = args[i + 1..].to_vec();
                break;
            }
            "-s" | "--probe" => asks.probes.extend(
                value
                    .split(',')
                    .filter(|s| !s.starts_with('!'))
                    .map(String::from),
            ),
            "-l" | "--list" => asks.list = true,
            "-c" | "--summary" => asks.summary = true,
            "--json" => asks.json = true,
            "-x" | "--script" => asks.script = true,
            "--generate" => asks.generate = true,
            "-o" | "--output" => asks.output = Some(value),
            "-p" | "--pid" => asks.pid_at = Some(i + 1),
            _ => {}
        }
        if WITH_VALUE.contains(&arg) {
            i += 1;
        } else if asks.list && !arg.starts_with('-') && i + 1 == args.len() {
            // `rtrace -l SPEC... PROGRAM`: a last word that is a file is
            // the program.
            asks.command = vec![arg.to_string()];
        }
        i += 1;
    }
    asks
}

/// `program` as the shell would find it, when it is a program every Debian
/// machine has: a name found in `PATH`, or an absolute path. A path
/// relative to the current directory is a program of the reader's.
fn installed(program: &str) -> Option<PathBuf> {
    if program.starts_with('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    if program.contains('/') {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Why `example` cannot run on a fresh Debian machine, if it cannot.
fn not_runnable(example: &Example, asks: &Asks) -> Option<String> {
    if asks.generate || asks.pid_at.is_some() {
        return None;
    }
    match asks.command.first() {
        None => Some("no program to run and no -p".to_string()),
        Some(program) if installed(program).is_none() => {
            Some(format!("{program} is not a program installed here"))
        }
        Some(_) if example.args.iter().any(|a| a == "--tui") => {
            Some("--tui needs a terminal".to_string())
        }
        Some(_) => None,
    }
}

/// A fresh, empty directory for the `n`th example of `source` to run in,
/// so that the files it writes (`-o`, `--perfetto`…) land there.
fn work_dir(source: &str, n: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("doc-examples")
        .join(format!("{source}-{n}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The trace an example wrote: its `-o` file, stdout for `-o -` (and for
/// `--list` and `--generate`, which print there), else stderr.
fn trace_of(asks: &Asks, run: &Run, dir: &Path) -> String {
    match asks.output.as_deref() {
        Some("-") => run.stdout.clone(),
        Some(file) => {
            let path = dir.join(file);
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        }
        None if asks.list || asks.generate => run.stdout.clone(),
        None => run.stderr.clone(),
    }
}

/// The function a spec names, for specs that name one function (not a
/// glob, an address, an offset or a line).
fn function_of(spec: &str) -> Option<&str> {
    let name = spec.rsplit(':').next().unwrap_or(spec);
    let plain = !name.is_empty()
        && !name.starts_with("0x")
        && !name.contains(['*', '?', '[', '+', '.', '(', ' '])
        && !name.chars().all(|c| c.is_ascii_digit());
    plain.then_some(name)
}

/// Whether `call` (`name(…`, `ns::Class::name(…`, as a call line or a
/// JSON `symbol` shows it) is a call of the function `name`.
fn names(call: &str, name: &str) -> bool {
    let function = call.split('(').next().unwrap_or_default();
    function == name || function.ends_with(&format!("::{name}"))
}

/// A text line of a call or a hit: `[pid N] name(…`, `[pid N] hit …`.
fn is_call_line(line: &str) -> bool {
    line.starts_with("[pid ")
        && line
            .split_once("] ")
            .is_some_and(|(_, rest)| rest.contains('(') || rest.starts_with("hit "))
}

/// A text line of rtrace's own: a call, a lifecycle line, a message.
fn is_rtrace_line(line: &str) -> bool {
    line.starts_with("[pid ") || line.starts_with("+++ ") || line.starts_with("rtrace: ")
}

/// Whether `trace` holds what `asks` promises; the first thing missing
/// otherwise.
fn promised(asks: &Asks, trace: &str) -> Result<(), String> {
    if asks.generate {
        if trace.trim().is_empty() {
            return Err("nothing written".to_string());
        }
        return Ok(());
    }
    if asks.list {
        let listed = trace.lines().any(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            fields.len() >= 3 && fields[0].starts_with("0x")
        });
        if !listed {
            return Err("no probe point listed".to_string());
        }
        return Ok(());
    }
    if asks.json {
        return promised_json(asks, trace);
    }
    for spec in &asks.probes {
        if asks.summary {
            // `  calls  total(s) … function [probe]`: a row of this probe
            // with calls.
            let row = trace.lines().any(|line| {
                line.ends_with(&format!(" [{spec}]"))
                    && line
                        .split_whitespace()
                        .next()
                        .and_then(|calls| calls.parse::<u64>().ok())
                        .is_some_and(|calls| calls > 0)
            });
            if !row {
                return Err(format!("no -c row with calls for {spec}"));
            }
        } else if let Some(name) = function_of(spec) {
            // `[pid N] name(…`, `[pid N] ns::Class::name(…`.
            let called = |line: &str| {
                is_call_line(line)
                    && line
                        .split_once("] ")
                        .is_some_and(|(_, call)| names(call, name))
            };
            if !trace.lines().any(called) {
                return Err(format!("no call of {name}"));
            }
        } else if !trace.lines().any(is_call_line) {
            return Err(format!("no call or hit of {spec}"));
        }
    }
    if asks.script && !trace.lines().any(|l| is_call_line(l) || !is_rtrace_line(l)) {
        return Err("no call printed, nor anything from the script".to_string());
    }
    if asks.probes.is_empty() && !asks.script {
        return Err("the example probes nothing".to_string());
    }
    Ok(())
}

/// [`promised`] for JSON Lines: `entry` events of the functions probed by
/// name, `summary` events with calls for `-c`, `print`, `map` or `hist`
/// events (or calls) for a script.
fn promised_json(asks: &Asks, trace: &str) -> Result<(), String> {
    let events: Vec<Value> = trace
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    let kind = |e: &Value, k: &str| e["event"] == k;
    for spec in &asks.probes {
        let seen = match (asks.summary, function_of(spec)) {
            (true, _) => events.iter().any(|e| {
                kind(e, "summary") && e["probe"] == *spec && e["calls"].as_u64() > Some(0)
            }),
            (false, Some(name)) => events
                .iter()
                .any(|e| kind(e, "entry") && e["symbol"].as_str().is_some_and(|s| names(s, name))),
            (false, None) => events.iter().any(|e| kind(e, "entry") || kind(e, "hit")),
        };
        if !seen {
            return Err(format!("no event of a call of {spec}"));
        }
    }
    let script = ["print", "map", "hist", "entry", "hit", "summary"];
    if asks.script && !events.iter().any(|e| script.iter().any(|k| kind(e, k))) {
        return Err("no event of a call, nor of the script".to_string());
    }
    Ok(())
}

/// Runs a launch, `--list -- PROGRAM` or `--generate` example to its end
/// in `dir`; returns the run and the status it must end with.
fn run_to_end(example: &Example, asks: &Asks, dir: &Path) -> (Run, i32) {
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(&example.args).current_dir(dir);
    let run = run_command(cmd, TIMEOUT);
    let expected = if asks.list || asks.generate {
        0
    } else {
        let mut untraced = Command::new(&asks.command[0]);
        untraced.args(&asks.command[1..]).current_dir(dir);
        run_command(untraced, TIMEOUT).code()
    };
    (run, expected)
}

/// Runs a `-p PID` example on [`ATTACH_TARGET`]: a `--list` to its end; a
/// trace until it is attached, the target has echoed a line (so it made
/// its calls under the probes) and the first call (or script output) is
/// printed, when it prints as it goes, then SIGINT, after which it must
/// detach and exit 0.
fn run_attached(example: &Example, asks: &Asks, dir: &Path) -> (Run, i32) {
    let mut sh = Command::new("/bin/sh");
    sh.args(["-c", ATTACH_TARGET]);
    let mut target = Spawned::with_stdin(sh);
    target.wait_stdout_line(|l| l == "ready");
    let mut args = example.args.clone();
    args[asks.pid_at.expect("a -p example")] = target.pid().to_string();
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(&args).current_dir(dir);
    if asks.list {
        return (run_command(cmd, TIMEOUT), 0);
    }
    let mut rtrace = Spawned::command(cmd);
    // rtrace says it is attached, with every probe armed, on stderr (a JSON
    // trace: in its attach event).
    match (asks.json, asks.output.as_deref()) {
        (false, _) => {
            rtrace.wait_stderr_line(|l| l.starts_with("rtrace: attached"));
        }
        (true, None) => {
            rtrace.wait_stderr_line(|l| l.starts_with(r#"{"event":"attach""#));
        }
        (true, Some("-")) => {
            rtrace.wait_stdout_line(|l| l.starts_with(r#"{"event":"attach""#));
        }
        (true, Some(_)) => panic!(
            "{} ({}): --json -o FILE with -p: nothing tells when it is attached; \
             run it another way here, or add it to SKIPPED",
            example.text, example.place
        ),
    }
    target.send("go\n");
    target.wait_stdout_line(|l| l == "go");
    // The first call (or script output) printed, when calls are printed as
    // they come to a stream this test reads (with -c, the table comes at
    // the end; a file is read at the end).
    let json = asks.json;
    let printed = move |l: &str| match json {
        true => ["entry", "hit", "print"]
            .iter()
            .any(|k| l.starts_with(&format!(r#"{{"event":"{k}""#))),
        false => is_call_line(l) || !is_rtrace_line(l),
    };
    match asks.output.as_deref() {
        _ if asks.summary => {}
        None => {
            rtrace.wait_stderr_line(printed);
        }
        Some("-") => {
            rtrace.wait_stdout_line(printed);
        }
        Some(_) => {}
    }
    rtrace.signal(Signal::SIGINT);
    (rtrace.wait(), 0)
}

/// Runs every example of `examples` that can run here and checks it; the
/// others must be in [`SKIPPED`].
fn run_all(source: &str, examples: &[Example]) {
    let mut unlisted = Vec::new();
    for (n, example) in examples.iter().enumerate() {
        let asks = asks(&example.args);
        let skipped = SKIPPED.iter().any(|(text, _)| *text == example.text);
        match (not_runnable(example, &asks), skipped) {
            (_, true) => continue,
            (Some(why), false) => {
                unlisted.push(format!("{} ({}): {why}", example.text, example.place));
                continue;
            }
            (None, false) => {}
        }
        let dir = work_dir(source, n);
        let (run, expected) = match asks.pid_at {
            Some(_) => run_attached(example, &asks, &dir),
            None => run_to_end(example, &asks, &dir),
        };
        let what = format!("{} ({})", example.text, example.place);
        assert_eq!(
            run.code(),
            expected,
            "{what}: exit status\n--- stdout:\n{}--- stderr:\n{}",
            run.stdout,
            run.stderr
        );
        let trace = match asks.record {
            // What `rtrace replay` shows of the recording.
            true => {
                let data = dir.join(asks.output.as_deref().unwrap_or("rtrace.data"));
                let mut replay = Command::new(rtrace_bin());
                replay.arg("replay").arg(&data);
                let replayed = run_command(replay, TIMEOUT);
                assert_eq!(replayed.code(), 0, "{}", replayed.stderr);
                replayed.stdout
            }
            false => trace_of(&asks, &run, &dir),
        };
        if let Err(missing) = promised(&asks, &trace) {
            panic!(
                "{what}: {missing}\n--- trace:\n{trace}--- stdout:\n{}--- stderr:\n{}",
                run.stdout, run.stderr
            );
        }
        println!(
            "{what}: ran, exit status {expected}, {} bytes of trace",
            trace.len()
        );
    }
    assert!(
        unlisted.is_empty(),
        "examples that cannot run here and are not in SKIPPED (make them \
         runnable, or add them with the reason):\n{}",
        unlisted.join("\n")
    );
}

#[test]
fn every_help_example_runs_and_prints_what_it_promises() {
    run_all("help", &help_examples());
}

#[test]
fn every_readme_example_runs_and_prints_what_it_promises() {
    run_all("readme", &readme_examples());
}

/// Each entry of [`SKIPPED`] is an example of the help or the README (an
/// example changed or removed takes its entry with it).
#[test]
fn every_skipped_example_exists() {
    let all: Vec<Example> = help_examples()
        .into_iter()
        .chain(readme_examples())
        .collect();
    for (text, why) in SKIPPED {
        assert!(
            all.iter().any(|e| e.text == *text),
            "SKIPPED names {text:?} ({why}), which is no example of --help or README.md; \
             the examples are:\n{}",
            all.iter()
                .map(|e| format!("{} ({})", e.text, e.place))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The word splitter reads the README's quoting as sh does.
#[test]
fn shell_words_reads_quotes_comments_and_redirections() {
    let words = |line: &str| shell_words(line).0;
    assert_eq!(
        words(r#"rtrace -x 'libc:open { print(`${tid}`) }' -- ls "a b" c\ d  # note"#),
        [
            "rtrace",
            "-x",
            "libc:open { print(`${tid}`) }",
            "--",
            "ls",
            "a b",
            "c d"
        ]
    );
    assert_eq!(
        words("rtrace --generate man > /usr/share/man/man1/rtrace.1   # man rtrace"),
        ["rtrace", "--generate", "man"]
    );
    assert_eq!(
        words(r#"sh -c "echo \"\$x\"" | cat"#),
        ["sh", "-c", r#"echo "$x""#]
    );
    let line = "rtrace -l 'ns::*' -- ./app            # nothing runs";
    assert_eq!(
        &line[..shell_words(line).1],
        "rtrace -l 'ns::*' -- ./app            "
    );
}
