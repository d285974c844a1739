//! The command line, in two stages: what clap parses (raw), then a validated
//! [`Cli`]. Usage errors become one `rtrace: …` line and exit status 2.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use rtrace::{Pid, ProbeSpec};

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

#[derive(Parser, Debug)]
#[command(
    name = "rtrace",
    version,
    about = "Trace function calls in a running process or a program it launches (int3 probes over ptrace).",
    override_usage = "rtrace [OPTIONS] -s SPEC... -p PID\n       rtrace [OPTIONS] -s SPEC... -- COMMAND [ARG]...",
    after_help = "Probe specs:\n  openat              function in the executable or any loaded library\n  libc:openat         function in the module named libc (or an absolute path)\n  'str*'  'libc:mem?py'   every function matching the glob\n  work+0x8            instruction at offset 8 into work (entry-only)\n  0x401136  count:0x1139  absolute address, or link address in a module\n  count.c:12          first instruction of a source line\n\nExamples:\n  rtrace -s openat -- cat /etc/hostname\n  rtrace -p 1234 -s libc:write -c"
)]
struct Raw {
    /// Attach to a running process (all its threads).
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pid: Option<i32>,
    /// Add a probe (repeatable). See "Probe specs" below.
    #[arg(short = 's', long = "probe", value_name = "SPEC", value_parser = parse_spec)]
    probes: Vec<ProbeSpec>,
    /// Function probes report entries only (no return probes).
    #[arg(long)]
    entry_only: bool,
    /// Also trace children created by fork, vfork and clone.
    #[arg(short = 'f', long)]
    follow_forks: bool,
    /// Write events to FILE instead of stderr.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// One JSON object per line (JSON Lines) instead of text.
    #[arg(long)]
    json: bool,
    /// Print a per-probe table of calls and times at the end.
    #[arg(short = 'c', long)]
    summary: bool,
    /// Colour text output.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    color: ColorWhen,
    /// The program to launch and its arguments (after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
}

fn parse_spec(s: &str) -> Result<ProbeSpec, String> {
    s.parse::<ProbeSpec>().map_err(|e| e.to_string())
}

/// What to trace.
#[derive(Debug)]
pub enum Target {
    /// `-p PID`.
    Attach(Pid),
    /// `-- COMMAND ARG…`.
    Launch(Vec<OsString>),
}

/// The validated command line.
#[derive(Debug)]
pub struct Cli {
    pub target: Target,
    pub probes: Vec<ProbeSpec>,
    pub entry_only: bool,
    pub follow_forks: bool,
    pub output: Option<PathBuf>,
    pub json: bool,
    pub summary: bool,
    pub color: ColorWhen,
}

fn usage(msg: &str) -> ExitCode {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "rtrace: {msg} (see 'rtrace --help')");
    ExitCode::from(2)
}

/// Parses `std::env::args`. On `--help`/`--version` prints and returns exit 0;
/// on a usage error prints one line and returns exit 2.
pub fn parse() -> Result<Cli, ExitCode> {
    let raw = match Raw::try_parse() {
        Ok(raw) => raw,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return Err(ExitCode::SUCCESS);
            }
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            return Err(usage(first.trim_start_matches("error: ")));
        }
    };
    let target = match (raw.pid, raw.command.is_empty()) {
        (Some(_), false) => return Err(usage("give either -p PID or a command, not both")),
        (None, true) => return Err(usage("give -p PID or a command to launch after --")),
        (Some(pid), true) if pid <= 0 => return Err(usage(&format!("invalid pid {pid}"))),
        (Some(pid), true) => Target::Attach(Pid::from_raw(pid)),
        (None, false) => Target::Launch(raw.command),
    };
    if raw.probes.is_empty() {
        return Err(usage("give at least one probe with -s SPEC"));
    }
    Ok(Cli {
        target,
        probes: raw.probes,
        entry_only: raw.entry_only,
        follow_forks: raw.follow_forks,
        output: raw.output,
        json: raw.json,
        summary: raw.summary,
        color: raw.color,
    })
}
