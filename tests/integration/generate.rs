//! `rtrace --generate KIND`: the man page and the bash, zsh and fish
//! completion scripts, each checked by the tool that reads it (man, the
//! shell), and the usage errors around the option.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::events::{assert_one_error_line, temp_path};
use crate::fixtures::{rtrace_bin, run_command, Run, TIMEOUT};

/// `rtrace ARGS`, run to its end.
fn rtrace(args: &[&str]) -> Run {
    let mut cmd = Command::new(rtrace_bin());
    cmd.args(args);
    run_command(cmd, TIMEOUT)
}

/// `rtrace --generate KIND`, which must succeed, saying nothing on stderr;
/// what it wrote, also in a file of the test's target directory.
fn generated(kind: &str, file: &str) -> (String, std::path::PathBuf) {
    let run = rtrace(&["--generate", kind]);
    assert_eq!(
        run.code(),
        0,
        "rtrace --generate {kind}: exit status\n{}",
        run.stderr
    );
    assert_eq!(run.stderr, "", "rtrace --generate {kind}: stderr");
    assert!(
        !run.stdout.is_empty(),
        "rtrace --generate {kind}: no output"
    );
    let path = temp_path(file);
    fs::write(&path, &run.stdout).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    (run.stdout, path)
}

/// The path of `program` on PATH, or None (the test is then skipped, and
/// says so).
fn installed(program: &str, test: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("note: {program} not installed, {test} skipped");
    }
    found
}

/// `program ARGS`, run to its end.
fn run(program: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(cmd, TIMEOUT)
}

/// The long options `--help` names: every `--word` in it, definitions and
/// mentions alike (each is an option, so each has an entry in the man page).
fn long_options(help: &str) -> BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| {
            w.strip_prefix("--")
                .is_some_and(|name| name.starts_with(|c: char| c.is_ascii_lowercase()))
        })
        .map(|w| w.trim_end_matches('-').to_string())
        .collect()
}

#[test]
fn generate_man_page_has_every_option_and_man_renders_it_without_warnings() {
    let (page, path) = generated("man", "rtrace.1");
    // What clap_mangen writes first: roff's definition of the `Aq` string
    // (an apostrophe typeset as one), then the title, with an empty date
    // and the name and version as the source.
    let version = env!("CARGO_PKG_VERSION");
    let title =
        format!(".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH rtrace 1  \"rtrace {version}\" \n");
    assert!(
        page.starts_with(&title),
        "the page must start with\n{title}--- got:\n{}",
        page.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        page.matches(".ds Aq").count(),
        2,
        "the preamble once (its .ie and .el lines)"
    );
    let sections: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .collect();
    assert_eq!(
        sections,
        [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "\"PROBE SPECS\"",
            "EXAMPLES",
            "\"EXIT STATUS\"",
            "\"SEE ALSO\"",
        ],
        "the sections, in order"
    );
    assert!(
        page.contains(
            "\\fBstrace\\fR(1), \\fBltrace\\fR(1), \\fBgdb\\fR(1), \\fBuftrace\\fR(1), \
             \\fBbpftrace\\fR(8)\n"
        ),
        "SEE ALSO"
    );
    for text in [
        // The after_help of --help, in sections of its own.
        "\\fBlibc:openat\\fR\nfunction in the module named libc (or an absolute path)\n",
        "rtrace \\-s open \\-s close \\-\\- cat /etc/hostname\n",
        // The exit statuses.
        "The program\\*(Aqs own exit status, or 128+\\fIN\\fR when signal \\fIN\\fR killed it",
        "\\fB2\\fR\nA usage error, said in one line.\n",
    ] {
        assert!(page.contains(text), "the page lacks {text:?}");
    }

    let help = rtrace(&["--help"]);
    assert_eq!(help.code(), 0, "rtrace --help\n{}", help.stderr);
    let options = long_options(&help.stdout);
    for must in [
        "--probe",
        "--pid",
        "--list",
        "--generate",
        "--help",
        "--version",
    ] {
        assert!(options.contains(must), "--help lists {must}: {options:?}");
    }
    let options_section = page
        .split(".SH OPTIONS\n")
        .nth(1)
        .and_then(|s| s.split("\n.SH ").next())
        .expect("an OPTIONS section");
    for option in &options {
        // roff writes each `-` as `\-`; an option's entry starts in bold.
        let roff = format!("\\fB{}\\fR", option.replace('-', "\\-"));
        assert!(
            options_section.contains(&roff),
            "{option} (--help lists it) has no entry {roff:?} in OPTIONS"
        );
    }

    let Some(man) = installed("man", "rendering the man page") else {
        return;
    };
    let mut cmd = Command::new(man);
    cmd.args(["--warnings=w", "-l"])
        .arg(&path)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat");
    let rendered = run_command(cmd, TIMEOUT);
    assert_eq!(
        rendered.code(),
        0,
        "man -l {}\n{}",
        path.display(),
        rendered.stderr
    );
    assert_eq!(
        rendered.stderr,
        "",
        "man --warnings=w -l {}: warnings",
        path.display()
    );
    for heading in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "PROBE SPECS",
        "EXIT STATUS",
        "SEE ALSO",
    ] {
        assert!(
            rendered.stdout.lines().any(|l| l == heading),
            "man shows no {heading} heading:\n{}",
            rendered.stdout
        );
    }
}

#[test]
fn generate_bash_completion_parses_and_completes_options_and_kinds() {
    let (_, path) = generated("bash", "rtrace.bash");
    let Some(bash) = installed("bash", "the bash completion test") else {
        return;
    };
    let path = path.to_str().expect("a UTF-8 path");
    let syntax = run(&bash, &["-n", path]);
    assert_eq!(syntax.code(), 0, "bash -n {path}\n{}", syntax.stderr);

    // What bash does on Tab: COMP_WORDS and COMP_CWORD set, then the
    // function `complete -F` named, called with the command, the word being
    // completed and the word before it.
    let complete = |words: &str, cword: usize, args: &str| -> Vec<String> {
        let script = format!(
            "source {path} || exit 9\n\
             COMP_WORDS=({words}); COMP_CWORD={cword}\n\
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
             _rtrace {args}\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let run = run(&bash, &["--norc", "--noprofile", "-c", &script]);
        assert_eq!(run.code(), 0, "{script}\n{}", run.stderr);
        assert_eq!(run.stderr, "", "{script}: stderr");
        run.stdout.lines().map(str::to_string).collect()
    };
    let replies = complete("rtrace --pro", 1, "rtrace --pro rtrace");
    assert!(
        replies.iter().any(|r| r == "--probe"),
        "rtrace --pro<Tab>: {replies:?}"
    );
    assert!(
        replies.iter().all(|r| r.starts_with("--pro")),
        "rtrace --pro<Tab> offers only what starts --pro: {replies:?}"
    );
    let kinds = complete("rtrace --generate ''", 2, "rtrace '' --generate");
    assert_eq!(
        kinds,
        ["man", "bash", "zsh", "fish"],
        "rtrace --generate <Tab>"
    );
}

#[test]
fn generate_zsh_completion_parses_and_registers_for_rtrace() {
    let (_, path) = generated("zsh", "_rtrace");
    let Some(zsh) = installed("zsh", "the zsh completion test") else {
        return;
    };
    let path = path.to_str().expect("a UTF-8 path");
    let syntax = run(&zsh, &["-n", path]);
    assert_eq!(syntax.code(), 0, "zsh -n {path}\n{}", syntax.stderr);
    // Sourced after compinit, the file registers its function for rtrace.
    let script = format!(
        "autoload -U compinit && compinit -u -D && source {path} && print -r -- $_comps[rtrace]"
    );
    let registered = run(&zsh, &["-f", "-c", &script]);
    assert_eq!(registered.code(), 0, "{script}\n{}", registered.stderr);
    assert_eq!(registered.stdout, "_rtrace\n", "{script}");
}

#[test]
fn generate_fish_completion_parses_and_completes_options() {
    let (_, path) = generated("fish", "rtrace.fish");
    let Some(fish) = installed("fish", "the fish completion test") else {
        return;
    };
    let path = path.to_str().expect("a UTF-8 path");
    let syntax = run(&fish, &["-n", path]);
    assert_eq!(syntax.code(), 0, "fish -n {path}\n{}", syntax.stderr);
    assert_eq!(syntax.stderr, "", "fish -n {path}: stderr");
    // `complete -C LINE`: what fish offers on Tab after LINE (the option,
    // a tab, its description).
    let script = format!("source {path}; complete -C 'rtrace --pro'");
    let replies = run(&fish, &["--no-config", "-c", &script]);
    assert_eq!(replies.code(), 0, "{script}\n{}", replies.stderr);
    assert!(
        replies.stdout.lines().any(|l| l.starts_with("--probe\t")),
        "rtrace --pro<Tab> in fish: {}",
        replies.stdout
    );
}

#[test]
fn generate_unknown_kind_or_with_other_options_is_a_usage_error() {
    let run = rtrace(&["--generate", "nope"]);
    let line = assert_one_error_line(&run, 2, "rtrace --generate nope");
    assert!(
        line.contains("'nope'") && line.contains("man, bash, zsh, fish"),
        "names the value and the possible ones: {line}"
    );
    assert_eq!(run.stdout, "", "rtrace --generate nope: stdout");
    for args in [
        &["--generate", "man", "-s", "work"][..],
        &["--generate", "bash", "-p", "1"],
        &["--generate", "zsh", "--", "true"],
        &["--json", "--generate", "fish"],
    ] {
        let what = format!("rtrace {}", args.join(" "));
        let run = rtrace(args);
        let line = assert_one_error_line(&run, 2, &what);
        assert!(
            line.contains("--generate"),
            "{what}: says --generate stands alone: {line}"
        );
        assert_eq!(run.stdout, "", "{what}: stdout");
    }
}

/// What `cargo install` installs (the release profile) is at most 10 MB: its
/// symbol table, no debug information (the profiling profile keeps it).
#[test]
fn the_installed_binary_is_at_most_10_mb() {
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build: the size of the release binary is not measured");
        return;
    }
    let size = std::fs::metadata(crate::fixtures::rtrace_bin())
        .expect("the rtrace binary")
        .len();
    assert!(size <= 10_000_000, "{size} bytes");
}
