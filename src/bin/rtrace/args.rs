//! The command line, in two stages: what clap parses (raw), then a validated
//! [`Cli`]. Usage errors become one `rtrace: …` line and exit status 2.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use rtrace::inject::InjectRule;
use rtrace::output::Prototypes;
use rtrace::script::{Limits, Script, ScriptSource};
use rtrace::{Pid, ProbeSpec, StepMode};

/// When to colour text output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// Only when writing to a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// How `-c` orders its rows (`-S`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// Most calls first.
    Calls,
    /// Most total time first (the default).
    Time,
    /// Longest average first.
    Avg,
    /// Longest call first.
    Max,
    /// Most errors first.
    Errors,
    /// By function name.
    Name,
}

/// How the returns of int3 probes' calls are seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReturnsHow {
    /// Recorded by a return stub in the program, without a stop (one stop
    /// per call), where every handler of the probe allows it.
    Stub,
    /// At a stop of the returning thread (two stops per call).
    Stop,
}

/// What a fast probe does when the ring it shares with rtrace is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OverflowWhen {
    /// The thread waits for rtrace to make room (nothing is lost; the
    /// program slows to rtrace's pace, and never waits on a dead or stopped
    /// rtrace for more than a few milliseconds, on a stuck one for more
    /// than a second).
    Block,
    /// The record is dropped and counted as missed (the program never waits).
    Drop,
}

#[derive(Parser, Debug)]
#[command(
    name = "rtrace",
    version,
    about = "Trace function calls in a running process or a program it launches (int3 probes over ptrace).",
    override_usage = "rtrace [OPTIONS] -s SPEC... -p PID\n       rtrace [OPTIONS] -s SPEC... -- COMMAND [ARG]...\n       rtrace -l SPEC... (-p PID | -- COMMAND)\n       rtrace record [-o FILE] [OPTIONS] -s SPEC... (-p PID | -- COMMAND)\n       rtrace replay [FILE] [OPTIONS]   (rtrace replay --help)\n       rtrace report [FILE] [OPTIONS]",
    after_help = "Probe specs:\n  openat              function in the executable or any loaded library\n  libc:openat         function in the module named libc (or an absolute path)\n  'str*'  'libc:mem?py'   every function matching the glob\n  work+0x8            instruction at offset 8 into work (entry-only)\n  0x401136  count:0x1139  absolute address, or link address in a module\n  count.c:12          first instruction of a source line\nC++ and Rust functions match by demangled name too: 'ns::Class::method', 'app::parse', 'ns::*'.\n\nExamples:\n  rtrace -s open -s close -- cat /etc/hostname\n  rtrace -p 1234 -s libc:write -c"
)]
struct Raw {
    /// Attach to a running process (all its threads); repeatable, and
    /// several pids separated by commas, as strace's -p.
    #[arg(short = 'p', long = "pid", value_name = "PID[,PID...]", value_parser = parse_pids)]
    pid: Vec<Vec<i32>>,
    /// Add probes (repeatable; several specs separated by commas, as
    /// strace's -e trace=; !SPEC removes the functions it names from the
    /// others). See "Probe specs" below.
    #[arg(short = 's', long = "probe", value_name = "SPEC[,SPEC...]", value_parser = parse_specs)]
    probes: Vec<Specs>,
    /// List the probe points the specs match (address, module, function,
    /// source line) and exit without tracing. With -p, in that process; with
    /// -- COMMAND, in the program and the libraries it needs, read from disk
    /// (link-time addresses; COMMAND is not run).
    #[arg(short = 'l', long = "list", value_name = "SPEC", value_parser = parse_specs, num_args = 1..)]
    list: Vec<Specs>,
    /// Fault injection (repeatable): skip the function's chosen calls and
    /// return VALUE, with errno set to E (a name like ENOENT, or a number).
    /// WHEN counts calls from 1: N (the Nth only), N+ (from the Nth on), N+S
    /// (the Nth, then every Sth), N..M (the Nth to the Mth); default every
    /// call. The function is traced too; its skipped calls show `(injected)`.
    #[arg(long = "inject", value_name = "SPEC:retval=VALUE[:errno=E][:when=WHEN]",
          value_parser = parse_inject)]
    inject: Vec<InjectRule>,
    /// Run the Rhai script in FILE (repeatable): `PROBE { … }` blocks run at
    /// each hit, `PROBE:return { … }` at each return, BEGIN and END once.
    #[arg(long = "script", value_name = "FILE")]
    scripts: Vec<PathBuf>,
    /// Run a one-line script (repeatable), e.g. -x 'libc:openat { @opens[str(arg(1))] = count() }'.
    /// A block that returns true prints the call; @maps print at the end.
    #[arg(short = 'x', value_name = "PROGRAM")]
    programs: Vec<String>,
    /// The most Rhai operations one script block may take per run; a block
    /// that takes more (a runaway loop) ends tracing. 0: no limit (SIGINT
    /// still stops a block).
    #[arg(long, value_name = "N", default_value_t = rtrace::script::Limits::DEFAULT_OPERATIONS)]
    script_ops: u64,
    /// Render the function a C declaration names by it (repeatable), where it
    /// has no debug info or whatever its debug info says, e.g. --proto 'int
    /// parse(const char *s, size_t n)': arguments by name and type, as DWARF
    /// gives them.
    #[arg(long = "proto", value_name = "DECL")]
    protos: Vec<String>,
    /// Read prototypes from FILE (repeatable): one C declaration a line,
    /// `;` optional, `//` and `#` comments; --proto wins over a file.
    #[arg(long = "proto-file", value_name = "FILE")]
    proto_files: Vec<PathBuf>,
    /// Function probes report entries only (no return probes).
    #[arg(long)]
    entry_only: bool,
    /// Fast probes (the default): where the handlers allow it, the probed
    /// instruction is replaced by a jump to a detour that records each hit
    /// (and, through a return stub, each return) without stopping the
    /// thread; the other probes stay int3. Says which at attach.
    #[arg(long, conflicts_with = "int3")]
    fast: bool,
    /// Every probe an int3 breakpoint: each hit stops the thread (no jump is
    /// written into the program). Default: fast probes, unless
    /// $RTRACE_INT3 is 1.
    #[arg(long)]
    int3: bool,
    /// When the ring a fast probe records into is full: block (wait for
    /// rtrace to read; nothing lost) or drop (count the record missed).
    #[arg(long, value_enum, default_value_t = OverflowWhen::Block, value_name = "WHAT")]
    overflow: OverflowWhen,
    /// How an int3 probe sees a call's return: stub (recorded in the
    /// program by a return stub, no stop: one stop per call) where its
    /// handlers allow it, or stop (the thread stops at the return: two).
    /// The attach line says which. Default: $RTRACE_RETURNS, else stub.
    #[arg(long, value_enum, value_name = "HOW")]
    returns: Option<ReturnsHow>,
    /// Also trace children created by fork, vfork and clone.
    #[arg(short = 'f', long)]
    follow_forks: bool,
    /// How the instruction under a breakpoint runs: emulated, stepped out of
    /// line, or stepped in place with the other threads stopped.
    #[arg(long, value_name = "MODE", default_value = "auto",
          value_parser = ["auto", "emulate", "xol", "inplace"])]
    step: String,
    /// Run rtrace and the traced process on one CPU (the one the process runs
    /// on): each stop costs a switch, not a cross-CPU wake-up, about 3 times
    /// less. Serialises the process's threads on that CPU; their own
    /// affinity comes back when rtrace lets them go.
    #[arg(long)]
    pin: bool,
    /// A live, top-like view of the probes on the terminal (stderr): calls,
    /// rates, p50/p99/max durations, errors; keys sort, `p` pauses, `q`
    /// quits. Events go to -o FILE if given, else nowhere.
    #[arg(long)]
    tui: bool,
    /// Write events to FILE instead of stderr (`-` for stdout).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// One JSON object per line (JSON Lines) instead of text.
    #[arg(long)]
    json: bool,
    /// Also write a timeline of the calls to FILE: Chrome trace-event JSON,
    /// one track per thread, for ui.perfetto.dev or chrome://tracing.
    #[arg(long, value_name = "FILE")]
    perfetto: Option<PathBuf>,
    /// Prefix each line with the wall clock, as strace does: -t the time of
    /// day, -tt with microseconds, -ttt seconds since the epoch.
    #[arg(short = 't', action = clap::ArgAction::Count)]
    timestamps: u8,
    /// Prefix each line with the time since the previous line's event.
    #[arg(short = 'r')]
    relative: bool,
    /// Nest each thread's calls as a tree, uftrace/function_graph style:
    /// `work(x=1) {`, the calls it made indented, `} = 3 <0.000010>`; a
    /// call that made none on one line.
    #[arg(long)]
    tree: bool,
    /// Print a per-probe table of calls and times at the end (with --fast,
    /// the program counts and times the calls itself: no record per call).
    #[arg(short = 'c', long)]
    summary: bool,
    /// With -c: a log2 histogram of each probe's call durations (in
    /// nanoseconds), bpftrace style, under the table (in JSON, a `hist` in
    /// each summary event).
    #[arg(long)]
    hist: bool,
    /// With -c: order the rows by calls, time (the default), avg, max,
    /// errors or name, as strace's -S.
    #[arg(short = 'S', long = "sort", value_enum, value_name = "KEY")]
    sort: Option<SortKey>,
    /// Show at most N bytes of each C string argument (then `...`).
    #[arg(long, value_name = "N", default_value_t = rtrace::output::DEFAULT_STRING_LIMIT)]
    string_limit: usize,
    /// Show the user stack of the thread at each entry and instruction hit,
    /// one indented line per frame under the call (JSON: a `stack` array).
    #[arg(long)]
    stack: bool,
    /// The most frames a stack shows (--stack, --folded, --flamegraph).
    #[arg(long, value_name = "N", default_value_t = rtrace::unwind::DEFAULT_DEPTH)]
    stack_depth: usize,
    /// At the end, write the stacks of every hit to FILE in the folded format
    /// of flamegraph.pl and inferno (`main;a;b;c 3`: root first, the probed
    /// function last, then the number of hits).
    #[arg(long, value_name = "FILE")]
    folded: Option<PathBuf>,
    /// At the end, draw the stacks of every hit as an SVG flame graph in FILE.
    #[arg(long, value_name = "FILE")]
    flamegraph: Option<PathBuf>,
    /// Colour text output.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    color: ColorWhen,
    /// Write the man page or a shell's completion script to stdout and exit.
    #[arg(long, value_enum, value_name = "KIND", exclusive = true)]
    generate: Option<crate::generate::Kind>,
    /// The program to launch and its arguments (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Reads and compiles `--script` files and `-x` programs, in that order.
/// An unreadable file is a runtime error (exit 1); a script that does not
/// compile is a usage error (exit 2).
fn scripts(raw: &Raw) -> Result<Option<Script>, ExitCode> {
    let limits = Limits {
        operations: raw.script_ops,
        string: raw.string_limit,
        stack: raw.stack_depth,
    };
    compile_scripts(&raw.scripts, &raw.programs, limits, raw.json).map_err(ExitCode::from)
}

/// [`scripts`] of these files and programs, under `limits`; the warnings
/// said at once, or kept for JSON's `warning` events. Err with the exit
/// status after saying why.
pub fn compile_scripts(
    paths: &[PathBuf],
    programs: &[String],
    limits: Limits,
    json: bool,
) -> Result<Option<Script>, u8> {
    let mut sources = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push(ScriptSource {
                name: path.display().to_string(),
                text,
            }),
            Err(e) => {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "rtrace: cannot read script {}: {e} (check the path)",
                    path.display()
                );
                return Err(1);
            }
        }
    }
    // Errors name a -x program "script" (the Nth of several, "script #N"),
    // a file by its path: `script line 1, column 12: …`.
    for (i, text) in programs.iter().enumerate() {
        let name = match programs.len() {
            1 => "script".to_string(),
            _ => format!("script #{}", i + 1),
        };
        sources.push(ScriptSource {
            name,
            text: text.clone(),
        });
    }
    if sources.is_empty() {
        return Ok(None);
    }
    use std::io::Write;
    // A script's error says where in the script it is, and nothing of the
    // command line's help.
    let script = Script::compile(&sources, limits).map_err(|e| {
        let _ = writeln!(std::io::stderr(), "rtrace: {e}");
        2
    })?;
    let mut script = script;
    if json {
        // JSON: `warning` events, once tracing has begun.
        script.defer_warnings();
    } else {
        // Text: at once, before anything runs.
        let mut err = std::io::stderr().lock();
        for w in script.warnings() {
            let _ = writeln!(err, "rtrace: warning: {w}");
        }
    }
    Ok(Some(script))
}

/// Reads the `--proto-file`s, then the `--proto`s (a later declaration of
/// a name wins). An unreadable file is a runtime error (exit 1); a
/// declaration that does not parse is a usage error (exit 2).
fn prototypes(raw: &Raw) -> Result<Prototypes, ExitCode> {
    let mut prototypes = Prototypes::new();
    for path in &raw.proto_files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "rtrace: cannot read --proto-file {}: {e} (check the path)",
                path.display()
            );
            ExitCode::from(1)
        })?;
        prototypes
            .add_file(&path.display().to_string(), &text)
            .map_err(|e| usage(&e.to_string()))?;
    }
    for decl in &raw.protos {
        prototypes.add(decl).map_err(|e| usage(&e.to_string()))?;
    }
    Ok(prototypes)
}

fn parse_inject(s: &str) -> Result<InjectRule, String> {
    s.parse::<InjectRule>().map_err(|e| e.to_string())
}

/// The specs of one `-s` or `-l` argument, and its exclusions (`!spec`).
#[derive(Clone, Debug)]
pub struct Specs(Vec<ProbeSpec>, Vec<ProbeSpec>);

/// Parses `open,read,close`: the specs separated by commas outside
/// brackets (a C++ name's parameters and template arguments keep theirs:
/// `'ns::f(int, long)'`, `'std::map<int, int>::find'`). A spec after `!`
/// excludes the functions it names, as strace's `-e trace=!…` does.
/// `1234` or `1234,5678`: pids, each a positive integer.
fn parse_pids(s: &str) -> Result<Vec<i32>, String> {
    s.split(',')
        .map(|p| match p.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(pid),
            _ => Err(format!("invalid pid {p:?}")),
        })
        .collect()
}

fn parse_specs(s: &str) -> Result<Specs, String> {
    let parse = |one: &str| one.parse::<ProbeSpec>().map_err(|e| e.to_string());
    let mut specs = Specs(Vec::new(), Vec::new());
    for one in split_specs(s) {
        match one.strip_prefix('!') {
            Some(rest) => {
                let spec = parse(rest)?;
                if !spec.is_function() {
                    return Err(format!(
                        "{one}: an exclusion names functions (a name or a glob), not an \
                         instruction"
                    ));
                }
                specs.1.push(spec);
            }
            None => specs.0.push(parse(one)?),
        }
    }
    Ok(specs)
}

/// `s` cut at the commas that are not inside `()`, `<>` or `[]`.
fn split_specs(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[from..]);
    parts
}

/// What to trace.
#[derive(Debug)]
pub enum Target {
    /// `-p PID` (several: `-p A -p B`, `-p A,B`), the first first.
    Attach(Vec<Pid>),
    /// `-- COMMAND ARG…`.
    Launch(Vec<OsString>),
}

/// The validated command line.
#[derive(Debug)]
pub struct Cli {
    pub target: Target,
    /// `--list`: the specs to list instead of tracing (empty when tracing).
    pub list: Vec<ProbeSpec>,
    pub probes: Vec<ProbeSpec>,
    /// `-s '!spec'`: functions no probe arms.
    pub excluded: Vec<ProbeSpec>,
    pub inject: Vec<InjectRule>,
    /// The compiled scripts (`--script`, `-x`), if any.
    pub script: Option<Script>,
    pub entry_only: bool,
    /// Fast probes: not `--int3` (nor `RTRACE_INT3=1`).
    pub fast: bool,
    /// `--overflow`.
    pub overflow: OverflowWhen,
    /// `--returns`.
    pub returns: ReturnsHow,
    pub follow_forks: bool,
    pub step: StepMode,
    pub pin: bool,
    pub tui: bool,
    pub output: Option<PathBuf>,
    pub json: bool,
    /// `--perfetto FILE`: where the timeline goes.
    pub perfetto: Option<PathBuf>,
    pub summary: bool,
    /// `--hist`: histograms in the summary.
    pub hist: bool,
    /// `-S`: the order of the `-c` table's rows.
    pub order: rtrace::output::SummaryOrder,
    /// `-t`, `-tt`, `-ttt`, `-r`.
    pub timestamps: rtrace::output::Timestamps,
    /// `--tree`.
    pub tree: bool,
    pub color: ColorWhen,
    pub string_limit: usize,
    /// `--proto`, `--proto-file`.
    pub prototypes: Prototypes,
    /// How long the work before tracing goes on before a terminal shows its
    /// progress (`RTRACE_PROGRESS_DELAY_MS`, default one second).
    pub progress_delay: std::time::Duration,
    /// `--stack`: the depth of the stacks the printer shows.
    pub stack_depth: Option<usize>,
    /// `--stack-depth`, for `--folded` and `--flamegraph` too.
    pub depth: usize,
    pub folded: Option<PathBuf>,
    pub flamegraph: Option<PathBuf>,
    /// `rtrace record`: the calls go into the recording at `output`.
    pub record: bool,
}

/// The file `rtrace record` writes and `rtrace replay` reads when none is
/// named, as `perf.data` and uftrace's `uftrace.data`.
pub const RECORDING: &str = "rtrace.data";

/// `rtrace record [OPTIONS] -s SPEC… (-p PID | -- COMMAND)`: the tracing
/// options, the output a recording (`-o`, `rtrace.data` by default). What
/// renders or prints calls belongs to `rtrace replay` and `rtrace report`.
pub fn parse_record(args: Vec<OsString>) -> Result<Cli, ExitCode> {
    let mut args = args;
    args.remove(1);
    let mut cli = parse_from(args)?;
    let renders = [
        (cli.json, "--json"),
        (cli.summary, "-c"),
        (cli.hist, "--hist"),
        (cli.tree, "--tree"),
        (cli.tui, "--tui"),
        (
            cli.timestamps.clock.is_some() || cli.timestamps.relative,
            "-t",
        ),
        (cli.perfetto.is_some(), "--perfetto"),
        (cli.folded.is_some(), "--folded"),
        (cli.flamegraph.is_some(), "--flamegraph"),
        (cli.script.is_some(), "script (--script, -x)"),
        (!cli.inject.is_empty(), "--inject"),
        (!cli.list.is_empty(), "--list"),
    ];
    if let Some((_, what)) = renders.iter().find(|(given, _)| *given) {
        return Err(usage(&format!(
            "rtrace record takes no {what}: it writes the calls as they come; \
             `rtrace replay FILE` and `rtrace report FILE` render them"
        )));
    }
    if cli.output.as_ref().is_some_and(|o| o.as_os_str() == "-") {
        return Err(usage("rtrace record writes a file: name it with -o FILE"));
    }
    cli.output.get_or_insert_with(|| PathBuf::from(RECORDING));
    cli.record = true;
    Ok(cli)
}

/// `rtrace replay` / `rtrace report`.
#[derive(Debug, Parser)]
#[command(
    name = "rtrace replay",
    about = "Render a recording made by `rtrace record` (rtrace report: its -c table)",
    disable_version_flag = true
)]
struct ReplayRaw {
    /// The recording (default rtrace.data).
    file: Option<PathBuf>,
    /// JSON Lines, as `rtrace --json`.
    #[arg(long)]
    json: bool,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Nested calls indented, as `rtrace --tree`.
    #[arg(long)]
    tree: bool,
    /// Only these threads (repeatable).
    #[arg(long = "tid", value_name = "TID")]
    tids: Vec<i32>,
    /// Only the calls of these probes: a probe spec as given to `rtrace
    /// record`, or a function's name (repeatable).
    #[arg(short = 's', value_name = "SPEC")]
    probes: Vec<String>,
    /// Only events from this many seconds after the start of the
    /// recording.
    #[arg(long, value_name = "SECONDS")]
    from: Option<f64>,
    /// Only events before this many seconds after the start.
    #[arg(long, value_name = "SECONDS")]
    to: Option<f64>,
    /// The most bytes of a string or buffer shown (default: the
    /// recording's).
    #[arg(long = "string-limit", value_name = "N")]
    string_limit: Option<usize>,
    /// Colour: auto, always, never.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    color: ColorWhen,
    /// Show each hit's user stack, one indented line per frame under the
    /// call (recorded with `rtrace record --stack`).
    #[arg(long)]
    stack: bool,
    /// The most frames a stack shows (--stack, --folded, --flamegraph;
    /// default: the recording's).
    #[arg(long, value_name = "N")]
    stack_depth: Option<usize>,
    /// Write the calls to FILE as a timeline, one track per thread, for
    /// ui.perfetto.dev or chrome://tracing.
    #[arg(long, value_name = "FILE")]
    perfetto: Option<PathBuf>,
    /// Write the recorded stacks of every hit to FILE in the folded
    /// format of flamegraph.pl and inferno.
    #[arg(long, value_name = "FILE")]
    folded: Option<PathBuf>,
    /// Draw the recorded stacks of every hit as an SVG flame graph in FILE.
    #[arg(long, value_name = "FILE")]
    flamegraph: Option<PathBuf>,
    /// Run the Rhai script in FILE over the recorded calls (repeatable), as
    /// `rtrace --script` runs it over a live run's.
    #[arg(long = "script", value_name = "FILE")]
    scripts: Vec<PathBuf>,
    /// Run a one-line script over the recorded calls (repeatable), e.g. -x
    /// 'work { @calls[tid] = count() }'.
    #[arg(short = 'x', value_name = "PROGRAM")]
    programs: Vec<String>,
    /// The most Rhai operations one script block may take per run.
    #[arg(long, value_name = "N", default_value_t = rtrace::script::Limits::DEFAULT_OPERATIONS)]
    script_ops: u64,
    /// (report) Histograms of the calls' times under the table.
    #[arg(long)]
    hist: bool,
    /// (report) Order of the table's rows.
    #[arg(short = 'S', value_enum, value_name = "KEY")]
    sort: Option<SortKey>,
}

/// What `rtrace replay` and `rtrace report` were asked.
pub struct ReplayCli {
    pub file: PathBuf,
    pub json: bool,
    pub output: Option<PathBuf>,
    pub tree: bool,
    pub filter: rtrace::record::Filter,
    pub string_limit: Option<usize>,
    pub color: ColorWhen,
    /// `--stack`: each hit's recorded stack shown.
    pub stack: bool,
    /// `--stack-depth` (default: the recording's).
    pub stack_depth: Option<usize>,
    pub perfetto: Option<PathBuf>,
    pub folded: Option<PathBuf>,
    pub flamegraph: Option<PathBuf>,
    /// `--script` files and `-x` programs, compiled once the recording's
    /// limits are known, and `--script-ops`.
    pub scripts: Vec<PathBuf>,
    pub programs: Vec<String>,
    pub script_ops: u64,
    /// `rtrace report`: the `-c` table.
    pub summary: bool,
    pub hist: bool,
    pub order: rtrace::output::SummaryOrder,
}

/// Parses `rtrace replay …` (or `rtrace report …`, `report`).
pub fn parse_replay(args: Vec<OsString>, report: bool) -> Result<ReplayCli, ExitCode> {
    let mut args = args;
    let word = args.remove(1);
    args[0] = OsString::from(format!("rtrace {}", word.to_string_lossy()));
    let raw = match ReplayRaw::try_parse_from(args) {
        Ok(raw) => raw,
        Err(e) => {
            if let Some(code) = help_or_version(&e) {
                return Err(code);
            }
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            return Err(usage(first.trim_start_matches("error: ")));
        }
    };
    let seconds = |s: Option<f64>, what: &str| match s {
        None => Ok(None),
        // (Past what a duration holds, some 584 years: the end of any
        // recording.)
        Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(
            std::time::Duration::try_from_secs_f64(v).unwrap_or(std::time::Duration::MAX),
        )),
        Some(v) => Err(usage(&format!(
            "--{what} {v}: give seconds from the start, 0 or more"
        ))),
    };
    if !report && (raw.hist || raw.sort.is_some()) {
        return Err(usage("--hist and -S are for `rtrace report`"));
    }
    let drawn = [
        (raw.json, "--json"),
        (raw.tree, "--tree"),
        (raw.stack, "--stack"),
        (raw.perfetto.is_some(), "--perfetto"),
        (raw.folded.is_some(), "--folded"),
        (raw.flamegraph.is_some(), "--flamegraph"),
    ];
    if let Some((_, what)) = drawn.iter().find(|(given, _)| report && *given) {
        return Err(usage(&format!(
            "rtrace report prints the -c table: {what} is for `rtrace replay`"
        )));
    }
    if raw.stack_depth == Some(0) {
        return Err(usage("--stack-depth 0: give 1 or more frames"));
    }
    let scripted = !raw.scripts.is_empty() || !raw.programs.is_empty();
    if report && scripted {
        return Err(usage(
            "rtrace report prints the -c table: a script (--script, -x) is for `rtrace replay`",
        ));
    }
    let drawn = [
        (raw.perfetto.is_some(), "--perfetto"),
        (raw.folded.is_some(), "--folded"),
        (raw.flamegraph.is_some(), "--flamegraph"),
    ];
    if let Some((_, what)) = drawn.iter().find(|(given, _)| scripted && *given) {
        return Err(usage(&format!(
            "{what} is drawn from the whole recording: replay it without the script"
        )));
    }
    Ok(ReplayCli {
        file: raw.file.unwrap_or_else(|| PathBuf::from(RECORDING)),
        json: raw.json,
        output: raw.output,
        tree: raw.tree,
        filter: rtrace::record::Filter {
            tids: raw.tids,
            probes: raw.probes,
            from: seconds(raw.from, "from")?,
            to: seconds(raw.to, "to")?,
        },
        string_limit: raw.string_limit,
        color: raw.color,
        stack: raw.stack,
        stack_depth: raw.stack_depth,
        perfetto: raw.perfetto,
        folded: raw.folded,
        flamegraph: raw.flamegraph,
        scripts: raw.scripts,
        programs: raw.programs,
        script_ops: raw.script_ops,
        summary: report,
        hist: raw.hist,
        order: order(raw.sort),
    })
}

/// The `-c` table's order for `-S`.
fn order(sort: Option<SortKey>) -> rtrace::output::SummaryOrder {
    use rtrace::output::SummaryOrder;
    match sort.unwrap_or(SortKey::Time) {
        SortKey::Calls => SummaryOrder::Calls,
        SortKey::Time => SummaryOrder::Time,
        SortKey::Avg => SummaryOrder::Avg,
        SortKey::Max => SummaryOrder::Max,
        SortKey::Errors => SummaryOrder::Errors,
        SortKey::Name => SummaryOrder::Name,
    }
}

/// The clap definition of the command line, for `--generate`.
pub fn command() -> clap::Command {
    <Raw as clap::CommandFactory>::command()
}

/// `--returns` when the command line does not say: `RTRACE_RETURNS`
/// (`stub` or `stop`), else `stub`.
fn returns_from_env() -> Result<ReturnsHow, ExitCode> {
    match std::env::var("RTRACE_RETURNS") {
        Err(_) => Ok(ReturnsHow::Stub),
        Ok(v) => ReturnsHow::from_str(&v, false).map_err(|_| {
            usage(&format!(
                "RTRACE_RETURNS={v:?} is not a way to see returns; set it to stub or stop"
            ))
        }),
    }
}

/// `--int3` when the command line says neither `--int3` nor `--fast`:
/// `RTRACE_INT3` set to 1 (0 or empty: fast probes).
fn int3_from_env() -> Result<bool, ExitCode> {
    match std::env::var("RTRACE_INT3").as_deref() {
        Err(_) | Ok("" | "0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(v) => Err(usage(&format!(
            "RTRACE_INT3={v:?} is neither 1 (every probe an int3) nor 0 (fast probes)"
        ))),
    }
}

fn usage(msg: &str) -> ExitCode {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "rtrace: {msg} (see 'rtrace --help')");
    ExitCode::from(2)
}

/// Parses `std::env::args`. On `--help`/`--version` prints and returns exit 0,
/// on `--generate` writes what it names and returns its status;
/// on a usage error prints one line and returns exit 2.
pub fn parse() -> Result<Cli, ExitCode> {
    parse_from(std::env::args_os())
}

/// `--help` or `--version` asked for: printed, and exit 0.
fn help_or_version(e: &clap::Error) -> Option<ExitCode> {
    use clap::error::ErrorKind;
    if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return None;
    }
    let _ = e.print();
    Some(ExitCode::SUCCESS)
}

/// [`parse`] of `args` (the program's name first).
fn parse_from(args: impl IntoIterator<Item = OsString>) -> Result<Cli, ExitCode> {
    let raw = match Raw::try_parse_from(args) {
        Ok(raw) => raw,
        Err(e) => {
            use clap::error::ErrorKind;
            if let Some(code) = help_or_version(&e) {
                return Err(code);
            }
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            // clap's tips ("a similar argument exists: '--entry-only'") and
            // the possible values are the useful part: they stay, on the same
            // line. (Its tip to pass an argument "as a value" after `--` does
            // not apply: after `--` comes the command.)
            let tips: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter_map(|l| {
                    l.strip_prefix("tip: ")
                        .or_else(|| l.strip_prefix('[').and_then(|v| v.strip_suffix(']')))
                })
                .filter(|tip| !tip.contains("as a value"))
                .collect();
            let first = match tips.is_empty() {
                true => first.to_string(),
                false => format!("{first}; {}", tips.join("; ")),
            };
            let first = first.as_str();
            // `rtrace -s work ls`: the command was meant, without its `--`.
            let stray = match e.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(a)) => !a.starts_with('-'),
                _ => false,
            };
            if e.kind() == ErrorKind::UnknownArgument && stray {
                return Err(usage(&format!(
                    "{first}; the command to launch goes after --"
                )));
            }
            return Err(usage(first));
        }
    };
    if let Some(kind) = raw.generate {
        return Err(crate::generate::run(kind));
    }
    let script = scripts(&raw)?;
    let prototypes = prototypes(&raw)?;
    let progress_delay = match std::env::var("RTRACE_PROGRESS_DELAY_MS") {
        Err(_) => rtrace::output::PROGRESS_DELAY,
        Ok(ms) => match ms.parse() {
            Ok(ms) => std::time::Duration::from_millis(ms),
            Err(_) => {
                return Err(usage(&format!(
                    "RTRACE_PROGRESS_DELAY_MS={ms:?}: give a number of milliseconds"
                )))
            }
        },
    };
    let mut raw = raw;
    // `rtrace -l work ./prog`: the list's last word is the program when it
    // names a file (with `-l` taking several specs, clap cannot tell).
    if raw.pid.is_empty() && raw.command.is_empty() {
        let specs: usize = raw.list.iter().map(|s| s.0.len()).sum();
        let program = raw
            .list
            .last()
            .and_then(|s| s.0.last())
            .map(|p| p.as_str().to_string())
            .filter(|p| specs > 1 && std::path::Path::new(p).is_file());
        if let Some(program) = program {
            if let Some(last) = raw.list.last_mut() {
                last.0.pop();
            }
            raw.command.push(program.into());
        }
    }
    // The same pid twice is one process.
    let mut pids: Vec<Pid> = Vec::new();
    for pid in raw.pid.iter().flatten().map(|&p| Pid::from_raw(p)) {
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    let target = match (pids.is_empty(), raw.command.is_empty()) {
        (false, false) => return Err(usage("give either -p PID or a command, not both")),
        (true, true) => return Err(usage("give -p PID or a command to launch after --")),
        (false, true) => Target::Attach(pids),
        (true, false) => Target::Launch(raw.command),
    };
    if matches!(&target, Target::Attach(pids) if pids.len() > 1) && !raw.list.is_empty() {
        return Err(usage("--list reads one process: give one -p PID"));
    }
    if raw.list.iter().any(|s| !s.1.is_empty()) {
        return Err(usage(
            "an exclusion (!SPEC) removes functions from the probes of -s; --list takes none",
        ));
    }
    if raw.probes.iter().all(|s| s.0.is_empty()) && raw.probes.iter().any(|s| !s.1.is_empty()) {
        return Err(usage(
            "an exclusion (!SPEC) removes functions from the other probes; give one with -s SPEC",
        ));
    }
    if !raw.list.is_empty() && !raw.probes.is_empty() {
        return Err(usage(
            "--list lists specs instead of tracing; give no -s with it",
        ));
    }
    if !raw.list.is_empty() && !raw.inject.is_empty() {
        return Err(usage(
            "--list lists specs instead of tracing; give no --inject with it",
        ));
    }
    if !raw.list.is_empty() && (raw.stack || raw.folded.is_some() || raw.flamegraph.is_some()) {
        return Err(usage(
            "--list lists specs instead of tracing; give no --stack, --folded or --flamegraph with it",
        ));
    }
    if raw.stack_depth == 0 {
        return Err(usage("--stack-depth must be at least 1"));
    }
    let script_probes = script.as_ref().map_or(0, |s| s.probes().len());
    if raw.probes.is_empty() && raw.list.is_empty() && raw.inject.is_empty() && script_probes == 0 {
        return Err(usage("give at least one probe with -s SPEC"));
    }
    // The listing is a table of probe points, not a trace: the options that
    // shape a trace would be silently ignored. `-o` is honoured (the table
    // goes to the file).
    if !raw.list.is_empty() {
        for (given, option) in [
            (raw.json, "--json"),
            (raw.summary, "-c"),
            (raw.entry_only, "--entry-only"),
            (raw.follow_forks, "-f"),
            (raw.fast, "--fast"),
            (raw.int3, "--int3"),
            (!raw.protos.is_empty(), "--proto"),
            (!raw.proto_files.is_empty(), "--proto-file"),
        ] {
            if given {
                return Err(usage(&format!(
                    "--list prints probe points, not a trace; {option} does not apply to it"
                )));
            }
        }
    }
    if raw.sort.is_some() && !raw.summary {
        return Err(usage("-S orders the table of -c: give -c too"));
    }
    // The view takes the terminal: a script's prints, END and maps would
    // have nowhere to go, and are not thrown away unsaid.
    if raw.tui && script.is_some() && raw.output.is_none() {
        return Err(usage(
            "--tui shows no script output; write it to a file with -o FILE",
        ));
    }
    if raw.tui && raw.list.is_empty() && !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return Err(usage(
            "--tui needs a terminal on stderr; use -c for a summary",
        ));
    }
    if raw.tui && !raw.list.is_empty() {
        return Err(usage(
            "--list lists specs instead of tracing; give no --tui with it",
        ));
    }
    if raw.timestamps > 3 {
        return Err(usage("-t is given at most three times (-t, -tt, -ttt)"));
    }
    if (raw.timestamps > 0 || raw.relative) && raw.json {
        return Err(usage(
            "-t and -r stamp text lines; JSON events carry time_ns, and the attach event \
             realtime_ns (the wall clock)",
        ));
    }
    if raw.tree && (raw.json || raw.summary) {
        return Err(usage(
            "--tree nests the calls of the text output; give it without --json and -c",
        ));
    }
    if raw.hist && !raw.summary {
        return Err(usage(
            "--hist draws histograms in the summary; give -c with it",
        ));
    }
    if !raw.list.is_empty() && raw.perfetto.is_some() {
        return Err(usage(
            "--list lists specs instead of tracing; give no --perfetto with it",
        ));
    }
    if !raw.list.is_empty() && script.is_some() {
        return Err(usage(
            "--list lists specs instead of tracing; give no script with it",
        ));
    }
    if raw.entry_only
        && script
            .as_ref()
            .is_some_and(|s| s.probes().iter().any(|p| p.2))
    {
        return Err(usage(
            "the script has :return blocks, which --entry-only would never run",
        ));
    }
    // A spec given twice is one probe (its calls reported and counted once).
    let mut probes: Vec<ProbeSpec> = Vec::with_capacity(raw.probes.len());
    let excluded: Vec<ProbeSpec> = raw.probes.iter().flat_map(|s| s.1.clone()).collect();
    for p in raw.probes.into_iter().flat_map(|s| s.0) {
        if !probes.iter().any(|q| q.as_str() == p.as_str()) {
            probes.push(p);
        }
    }
    Ok(Cli {
        target,
        list: raw.list.into_iter().flat_map(|s| s.0).collect(),
        probes,
        excluded,
        inject: raw.inject,
        script,
        entry_only: raw.entry_only,
        fast: match (raw.fast, raw.int3) {
            (true, _) => true,
            (_, true) => false,
            _ => !int3_from_env()?,
        },
        overflow: raw.overflow,
        returns: match raw.returns {
            Some(how) => how,
            None => returns_from_env()?,
        },
        follow_forks: raw.follow_forks,
        step: raw.step.parse().expect("clap checked the value"),
        pin: raw.pin,
        tui: raw.tui,
        output: raw.output,
        json: raw.json,
        perfetto: raw.perfetto,
        summary: raw.summary,
        hist: raw.hist,
        order: order(raw.sort),
        tree: raw.tree,
        timestamps: rtrace::output::Timestamps {
            clock: match raw.timestamps {
                0 => None,
                1 => Some(rtrace::output::WallClock::Seconds),
                2 => Some(rtrace::output::WallClock::Micros),
                _ => Some(rtrace::output::WallClock::Epoch),
            },
            relative: raw.relative,
        },
        color: raw.color,
        string_limit: raw.string_limit,
        prototypes,
        progress_delay,
        stack_depth: raw.stack.then_some(raw.stack_depth),
        depth: raw.stack_depth,
        folded: raw.folded,
        flamegraph: raw.flamegraph,
        record: false,
    })
}

#[cfg(test)]
mod tests {
    use super::split_specs;

    #[test]
    fn specs_split_at_commas_outside_brackets() {
        assert_eq!(split_specs("open,read,close"), ["open", "read", "close"]);
        assert_eq!(split_specs("libc:str*"), ["libc:str*"]);
        assert_eq!(
            split_specs("ns::f(int, long),std::map<int, int>::find,work"),
            ["ns::f(int, long)", "std::map<int, int>::find", "work"]
        );
        assert_eq!(split_specs("work,"), ["work", ""]);
    }
}
