//! `rtrace --generate KIND`: the man page (roff, section 1) and the bash, zsh
//! and fish completion scripts, generated from the clap definition of the
//! command line ([`crate::args::command`]), so that they name every option
//! `--help` names, with the same words.
//!
//! clap_mangen renders the title, NAME, SYNOPSIS, DESCRIPTION and OPTIONS;
//! the sections it has no source for (the "Probe specs" and "Examples" of
//! `--help`, EXIT STATUS, SEE ALSO) are written here with the roff crate
//! clap_mangen itself renders with, so they are escaped the same way.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::ValueEnum;
use clap_complete::Shell;
use clap_mangen::Man;
use roff::{bold, italic, roman, Roff};

/// What `--generate` writes to stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// The man page (roff, section 1).
    Man,
    /// The bash completion script.
    Bash,
    /// The zsh completion script (a `_rtrace` file in a $fpath directory).
    Zsh,
    /// The fish completion script.
    Fish,
}

/// The man page's DESCRIPTION: `--help` has one line (its `about`, which the
/// NAME section shows); a man page says more. Paragraphs are separated by a
/// blank line, which clap_mangen turns into `.PP`.
const DESCRIPTION: &str = "\
rtrace traces the calls of functions in a running process (-p PID, all its threads) \
or in a program it launches (-- COMMAND), traced from its first instruction. \
It reads the symbols of the executable and of every shared library from their ELF \
and DWARF, plants int3 breakpoints at the functions, source lines and addresses \
the probe specs name, and reports each call with its arguments and each return \
with its value and duration, as text or JSON Lines, on stderr or in a file (-o). \
Scripts (-x, --script) filter the calls and aggregate them.

Every change rtrace makes to the traced program is undone on every way out. \
Ctrl-C, SIGTERM or SIGHUP make rtrace remove its breakpoints and detach: \
an attached process runs on as if it had never been traced; \
a launched program is passed the same signal, as strace does, and rtrace waits for it.

Tracing needs ptrace permission: the same user with \
/proc/sys/kernel/yama/ptrace_scope at 0, or root (CAP_SYS_PTRACE).";

/// Writes what `kind` names to stdout. Exit 0; 1 when stdout cannot take
/// it (a closed pipe, a full disk), said in one `rtrace: ` line.
pub fn run(kind: Kind) -> ExitCode {
    let mut text = Vec::new();
    let mut cmd = crate::args::command();
    let shell = match kind {
        Kind::Man => None,
        Kind::Bash => Some(Shell::Bash),
        Kind::Zsh => Some(Shell::Zsh),
        Kind::Fish => Some(Shell::Fish),
    };
    let rendered = match shell {
        None => man(cmd, &mut text),
        Some(shell) => {
            clap_complete::generate(shell, &mut cmd, "rtrace", &mut text);
            Ok(())
        }
    };
    let mut out = io::stdout().lock();
    match rendered.and_then(|()| out.write_all(&text).and_then(|()| out.flush())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::report(&rtrace::Error::Output(e));
            ExitCode::from(1)
        }
    }
}

/// One of clap_mangen's `Man::render_*_section`.
type Section = fn(&Man, &mut dyn Write) -> io::Result<()>;

/// The man page: clap_mangen's sections, then the `after_help` of `--help`
/// as sections of their own, EXIT STATUS and SEE ALSO.
fn man(cmd: clap::Command, page: &mut Vec<u8>) -> io::Result<()> {
    let after_help = cmd
        .get_after_help()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let man = Man::new(cmd.long_about(DESCRIPTION));
    // Every render_* of clap_mangen, and every Roff rendered here, starts
    // with roff's preamble (the definition of the `Aq` string that typesets
    // an apostrophe as one): the page has it once, before the title.
    let preamble = Roff::new().render();
    man.render_title(page)?;
    let sections: [Section; 4] = [
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
        Man::render_options_section,
    ];
    for render in sections {
        let mut section = Vec::new();
        render(&man, &mut section)?;
        let section = section
            .strip_prefix(preamble.as_bytes())
            .unwrap_or(&section);
        page.extend_from_slice(section);
    }
    let mut roff = Roff::new();
    after_help_sections(&after_help, &mut roff);
    exit_status(&mut roff);
    see_also(&mut roff);
    let rest = roff.render();
    page.extend_from_slice(rest.strip_prefix(&preamble).unwrap_or(&rest).as_bytes());
    Ok(())
}

/// The `after_help` of `--help` (`Probe specs:` and `Examples:`), one section
/// per block. A block's first line (`Probe specs:`) is its title, in
/// capitals; under it, an indented line of two columns (`openat   function
/// in …`, the columns two spaces or more apart) is a tagged paragraph, whose
/// description man fills to the page's width (a line as `--help` prints it
/// is too wide for 80 columns at a man page's indent); another indented line
/// (an example) is kept as it is; a line that is not indented is text.
fn after_help_sections(text: &str, roff: &mut Roff) {
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let Some(title) = lines.next() else {
            continue;
        };
        let title = title.strip_suffix(':').unwrap_or(title).to_uppercase();
        roff.control("SH", [title.as_str()]);
        let rows: Vec<Row> = lines.map(Row::of).collect();
        // Every tag of the block in one column, two ens wider than the widest.
        let width = rows
            .iter()
            .map(|row| match row {
                Row::Tagged(tag, _) => tag.chars().count() + 2,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let width = format!("{width}n");
        let mut verbatim = false;
        for (i, row) in rows.iter().enumerate() {
            let kept = matches!(row, Row::Kept(_));
            if kept && !verbatim {
                roff.control("nf", []);
            }
            if !kept && verbatim {
                roff.control("fi", []);
            }
            verbatim = kept;
            match row {
                Row::Tagged(tag, what) => {
                    roff.control("TP", [width.as_str()])
                        .text([bold(*tag)])
                        .text([roman(*what)]);
                }
                Row::Kept(line) => {
                    roff.text([roman(*line)]);
                }
                Row::Text(line) => {
                    if i > 0 {
                        roff.control("PP", []);
                    }
                    roff.text([roman(*line)]);
                }
            }
        }
        if verbatim {
            roff.control("fi", []);
        }
    }
}

/// One line of the `after_help`, as [`after_help_sections`] renders it.
enum Row<'a> {
    /// `  TAG   DESCRIPTION`.
    Tagged(&'a str, &'a str),
    /// `  LINE`: one column.
    Kept(&'a str),
    /// Not indented.
    Text(&'a str),
}

impl<'a> Row<'a> {
    fn of(line: &'a str) -> Row<'a> {
        let Some(indented) = line.strip_prefix("  ") else {
            return Row::Text(line);
        };
        // The description is what follows the last run of two spaces: a
        // tag may hold such runs itself (`'str*'  'libc:mem?py'`), a
        // description does not.
        match indented.rfind("  ") {
            Some(at) => Row::Tagged(indented[..at].trim_end(), indented[at..].trim_start()),
            None => Row::Kept(indented),
        }
    }
}

/// What rtrace's exit status says, as the README states it ("Exit status
/// and errors") and `main` maps an outcome to it.
fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    roff.control("TP", []).text([roman("launch mode")]).text([
        roman("The program's own exit status, or 128+"),
        italic("N"),
        roman(" when signal "),
        italic("N"),
        roman(" killed it (130 after Ctrl-C)."),
    ]);
    roff.control("TP", [])
        .text([roman("attach mode")])
        .text([roman("0 after a clean detach.")]);
    roff.control("TP", []).text([bold("1")]).text([
        roman("A runtime error, said in one line on stderr starting with "),
        bold("rtrace:"),
        roman(
            ". Also when an error ends the tracing of a program rtrace \
             launched: the program runs on untraced to its end, and its status \
             is in the last line, but the trace is incomplete.",
        ),
    ]);
    roff.control("TP", [])
        .text([bold("2")])
        .text([roman("A usage error, said in one line.")]);
    roff.control("PP", []).text([
        bold("--list"),
        roman(", "),
        bold("--generate"),
        roman(", "),
        bold("--help"),
        roman(" and "),
        bold("--version"),
        roman(" exit 0."),
    ]);
}

/// The tools rtrace's users know it from.
fn see_also(roff: &mut Roff) {
    roff.control("SH", ["SEE ALSO"]);
    let tools = [
        ("strace", "1"),
        ("ltrace", "1"),
        ("gdb", "1"),
        ("uftrace", "1"),
        ("bpftrace", "8"),
    ];
    let mut line = Vec::new();
    for (i, (name, section)) in tools.iter().enumerate() {
        let end = if i + 1 < tools.len() { ", " } else { "" };
        line.push(bold(*name));
        line.push(roman(format!("({section}){end}")));
    }
    roff.text(line);
}
