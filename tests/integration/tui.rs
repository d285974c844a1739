//! The live view (`--tui`) in a real terminal: tmux runs rtrace in a pane,
//! `capture-pane` reads the screen, `send-keys` presses keys.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

use crate::events::{assert_one_error_line, temp_path};
use crate::fixtures::{fixture, rtrace_bin, run_command, run_rtrace, Variant};

/// A tmux server of this test's own, killed on drop. What its pane prints
/// is copied (`pipe-pane`) into a FIFO a thread reads: each chunk is a
/// notice that the screen may have changed, so waits for the screen block
/// on the pane's output, not on time.
struct Tmux {
    socket: String,
    output: Receiver<()>,
}

impl Tmux {
    fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "the live view tests need tmux (apt-get install tmux)"
        );
        let fifo = temp_path(&format!("tui-{name}.pipe"));
        mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR)
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", fifo.display()));
        let (tx, output) = mpsc::channel();
        let reader = fifo.clone();
        thread::spawn(move || {
            // Opening blocks until pipe-pane's `cat` opens the other end.
            let Ok(mut pipe) = File::open(&reader) else {
                return;
            };
            let mut chunk = [0u8; 4096];
            while let Ok(1..) = pipe.read(&mut chunk) {
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        let t = Tmux {
            socket: format!("rtrace-{name}-{}", std::process::id()),
            output,
        };
        let ok = t
            .cmd(&[
                "new-session",
                "-d",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                command,
            ])
            .status
            .success();
        assert!(ok, "tmux new-session");
        let pipe = format!("cat > {}", shell_quote(&fifo));
        assert!(
            t.cmd(&["pipe-pane", "-O", &pipe]).status.success(),
            "tmux pipe-pane"
        );
        t
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p"]).stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        self.cmd(&["send-keys", keys]);
    }

    /// Types `text` as it is (no key names).
    fn type_text(&self, text: &str) {
        self.cmd(&["send-keys", "-l", text]);
    }

    /// The screen's first line: the view's header.
    fn header(&self, screen: &str) -> String {
        screen.lines().next().unwrap_or("").to_string()
    }

    /// The screen once `want` holds; looked at again each time the pane
    /// prints something (tmux has drawn it by then: it copies what it read to
    /// the pipe after parsing it). Panics with the screen when 30 s pass
    /// without it.
    fn wait(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if want(&s) {
                return s;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(()) => {}
                Err(why) => panic!("waiting for {what} ({why:?}); screen:\n{s}"),
            }
        }
    }

    fn alternate_screen(&self) -> bool {
        let out = self.cmd(&["display-message", "-p", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

/// The numbers of the row of `probe` on `screen` (after its name, `function
/// [probe]`): calls, calls/s, p50, p99, max, errors, missed. (Empty while the
/// terminal shows the row cut after the name: a wait reads the next screen.)
fn row<'a>(screen: &'a str, probe: &str) -> Option<Vec<&'a str>> {
    let tag = format!(" [{probe}]");
    screen.lines().find(|l| l.contains(&tag)).map(|l| {
        let after = &l[l.find(&tag).unwrap() + tag.len()..];
        after.split_whitespace().collect()
    })
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// The tmux channel the pane's shell signals when rtrace has ended.
const DONE: &str = "rtrace-ended";

/// The column titles of a table header line (titles are one word but for
/// `function [probe]` and `last args`).
fn titles(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut titles = Vec::new();
    let mut i = 0;
    while i < words.len() {
        match (words[i], words.get(i + 1)) {
            ("function", Some(w)) if w.starts_with("[probe]") => {
                titles.push(format!("function {w}"));
                i += 1;
            }
            ("last", Some(&"args")) => {
                titles.push("last args".to_string());
                i += 1;
            }
            (w, _) => titles.push(w.to_string()),
        }
        i += 1;
    }
    titles
}

/// The table's header line on `screen`, as titles.
fn header_titles(screen: &str) -> Vec<String> {
    screen
        .lines()
        .find(|l| l.starts_with("function "))
        .map_or_else(Vec::new, titles)
}

/// As the terminal narrows, the function column keeps its names whole
/// while it can and the other columns drop in the README's order: last
/// args, missed, errors, max, p50. Calls, calls/s and p99 stay.
#[test]
fn columns_drop_in_order_as_the_terminal_narrows() {
    let spin = fixture("spin", Variant::Pie);
    let command = format!(
        "{} --tui -s work -s libc:nanosleep -- {}; tmux wait-for -S {DONE}; sleep 60",
        shell_quote(&rtrace_bin()),
        shell_quote(&spin),
    );
    let tmux = Tmux::start("columns", 120, 20, &command);
    tmux.wait("both rows", |s| {
        row(s, "work").is_some() && row(s, "libc:nanosleep").is_some()
    });
    let all = [
        "function [probe]",
        "calls*",
        "calls/s",
        "p50",
        "p99",
        "max",
        "errors",
        "missed",
        "last args",
    ];
    let dropped = ["last args", "missed", "errors", "max", "p50"];
    // (The longest name, `nanosleep [libc:nanosleep]`, is 26 characters.)
    for (width, n) in [(120, 0), (100, 1), (85, 2), (80, 3), (70, 4), (60, 5)] {
        tmux.cmd(&["resize-window", "-x", &width.to_string(), "-y", "20"]);
        let want: Vec<String> = all
            .iter()
            .filter(|t| !dropped[..n].contains(t))
            .map(|t| t.to_string())
            .collect();
        // Both rows drawn whole (a screen is read as tmux draws it), their
        // names whole.
        let screen = tmux.wait(&format!("the columns at {width}"), |s| {
            let whole = |p| row(s, p).is_some_and(|r| r.len() >= want.len() - 1);
            header_titles(s) == want
                && s.lines().all(|l| l.chars().count() <= width)
                && whole("work")
                && whole("libc:nanosleep")
                && s.contains("nanosleep [libc:nanosleep] ")
        });
        if width == 80 {
            let r = row(&screen, "work").unwrap();
            assert_eq!(r.len(), 5, "calls, calls/s, p50, p99, max:\n{screen}");
        }
    }
    tmux.keys("q");
    let mut wait = Command::new("tmux");
    wait.args(["-L", &tmux.socket, "wait-for", DONE]);
    let run = run_command(wait, Duration::from_secs(30));
    assert_eq!(run.code(), 0, "tmux wait-for: {run:?}\n{}", tmux.screen());
}

/// A row's detail (`Enter`): the histogram of its durations, bucket by
/// bucket as `--hist` draws it, and its last calls; the filter (`/`); the
/// keys (`?`); and `q` in launch mode: the header says rtrace waits for the
/// program, which got the SIGINT, until it ends; then the shell's prompt is
/// back.
#[test]
fn a_rows_histogram_the_filter_the_keys_and_q_waiting_for_the_program() {
    let naps = fixture("naps", Variant::Pie);
    let prompt = "tui-prompt$";
    let tmux = Tmux::start(
        "detail",
        100,
        40,
        &format!("env -i PATH=/usr/bin:/bin TERM=xterm PS1='{prompt} ' bash --norc --noprofile"),
    );
    tmux.wait("the shell", |s| s.contains(prompt));
    // nap(ms) sleeps ms milliseconds: two calls in [1G, 2G) ns (1.07 to
    // 2.15 s), one in [2G, 4G). Each sleeps just past the bottom of its
    // bucket, so that the time rtrace adds (a duration ends when rtrace sees
    // the return: on a loaded machine up to 0.8 s later was seen) does not
    // carry a call past the top.
    // (What the program prints at its end goes to a file: on the terminal
    // it would land on the alternate screen, which rtrace leaves after.)
    let out = temp_path("naps_out");
    tmux.type_text(&format!(
        "{} --tui -s nap -s libc:nanosleep -- {} 1100 1100 2200 > {}",
        shell_quote(&rtrace_bin()),
        shell_quote(&naps),
        shell_quote(&out)
    ));
    tmux.keys("Enter");
    let screen = tmux.wait("three calls of nap", |s| {
        row(s, "nap").is_some_and(|r| r.first() == Some(&"3"))
    });
    let pid: i32 = screen.split_whitespace().nth(2).unwrap().parse().unwrap();

    // The filter: the rows whose name holds the text typed.
    tmux.keys("/");
    tmux.type_text("NANO");
    tmux.wait("filtered", |s| {
        s.contains("filter: NANO ") && row(s, "nap").is_none() && row(s, "libc:nanosleep").is_some()
    });
    tmux.keys("Escape");
    tmux.wait("the filter cleared", |s| {
        !s.contains("filter:") && row(s, "nap").is_some() && row(s, "libc:nanosleep").is_some()
    });
    tmux.keys("/");
    tmux.type_text("nap");
    tmux.keys("Enter");
    tmux.wait("the filter kept", |s| {
        s.contains("filter: nap   (/ edits it") && row(s, "libc:nanosleep").is_none()
    });

    // The only row shown is selected: Enter opens it.
    tmux.keys("Enter");
    // (Drawn to its last line: the third call, its duration.)
    let screen = tmux.wait("nap's detail", |s| {
        s.contains("last 3 calls:")
            && s.lines()
                .filter(|l| l.contains("] nap(ms=") && l.ends_with('s'))
                .count()
                == 3
    });
    let hist: Vec<&str> = screen.lines().filter(|l| l.ends_with('|')).collect();
    assert_eq!(
        hist,
        [
            "[1G, 2G)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
            "[2G, 4G)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |",
        ],
        "{screen}"
    );
    let calls: Vec<&str> = screen
        .lines()
        .filter_map(|l| l.split_once("] nap(").map(|(_, c)| c))
        .map(|c| c.rsplit_once("  ").map_or(c, |(c, _)| c))
        .collect();
    assert_eq!(
        calls,
        ["ms=1100) = 2200", "ms=1100) = 2200", "ms=2200) = 4400"],
        "{screen}"
    );
    tmux.keys("Escape");
    tmux.wait("the table again", |s| row(s, "nap").is_some());
    tmux.keys("?");
    tmux.wait("the keys", |s| {
        s.contains("Esc or q: back to the table") && s.contains("filter rows by name")
    });
    tmux.keys("q");
    tmux.wait("the table again", |s| row(s, "nap").is_some());

    // q: naps counts the SIGINT and goes on; rtrace waits, and says so.
    tmux.keys("q");
    let screen = tmux.wait("waiting", |s| {
        tmux.header(s).starts_with(&format!(
            "rtrace [waiting for pid {pid} to end (SIGINT sent)]"
        ))
    });
    assert!(tmux.alternate_screen(), "{screen}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let screen = tmux.wait("the prompt back", |s| s.trim_end().ends_with(prompt));
    assert!(!tmux.alternate_screen(), "{screen}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "sigints=1\n",
        "the SIGINT reached naps once"
    );
    assert!(
        screen.contains(&format!("rtrace [exited with 0]  pid {pid} ")),
        "the last table: {screen}"
    );
}

#[test]
fn live_view_in_a_terminal() {
    let spin = fixture("spin", Variant::Pie);
    let rc: PathBuf = temp_path("tui_rc");
    let command = format!(
        "{} --tui -s work -s libc:nanosleep -- {} threads 2; echo $? > {}; tmux wait-for -S {DONE}; sleep 60",
        shell_quote(&rtrace_bin()),
        shell_quote(&spin),
        shell_quote(&rc)
    );
    let tmux = Tmux::start("live", 140, 30, &command);
    let screen = tmux.wait("two rows with calls", |s| {
        let calls = |p| {
            row(s, p)
                .and_then(|r| r.first()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // (Each row drawn whole, to its last arguments.)
        let whole = |p| row(s, p).is_some_and(|r| r.len() >= 8);
        calls("work") > 10
            && calls("libc:nanosleep") > 10
            && whole("work")
            && whole("libc:nanosleep")
            && s.lines().any(|l| l.contains("[work]") && l.contains(" x="))
    });
    assert!(tmux.alternate_screen(), "drawn on the alternate screen");
    let header = screen.lines().next().unwrap();
    assert!(header.starts_with("rtrace  pid "), "{screen}");
    // Every column at 140 columns, the sort column (calls) marked.
    assert!(
        screen.lines().any(|l| titles(l)
            == [
                "function [probe]",
                "calls*",
                "calls/s",
                "p50",
                "p99",
                "max",
                "errors",
                "missed",
                "last args"
            ]),
        "{screen}"
    );
    assert!(header.contains("threads 3"), "main + 2 threads: {screen}");
    let pid: i32 = header.split_whitespace().nth(2).unwrap().parse().unwrap();
    let work = row(&screen, "work").unwrap();
    assert!(
        work[6] == "0" && work[5] == "0",
        "no missed, no errors: {screen}"
    );
    assert!(
        screen.contains("x="),
        "the last arguments, by name: {screen}"
    );

    // Sorting by name puts libc:nanosleep's function before work, and
    // marks the function column.
    tmux.keys("n");
    tmux.wait("sorted by name", |s| {
        let at = |p: &str| s.find(&format!(" [{p}]"));
        matches!((at("libc:nanosleep"), at("work")), (Some(a), Some(b)) if a < b)
            && s.contains("function [probe]* ")
    });
    tmux.keys("p");
    tmux.wait("paused", |s| {
        s.lines().next().unwrap_or("").contains("[paused]")
    });
    tmux.keys("p");
    tmux.wait("running again", |s| {
        !s.lines().next().unwrap_or("").contains("[paused]")
    });

    // A narrower terminal: every line fits it.
    tmux.cmd(&["resize-window", "-x", "60", "-y", "20"]);
    let narrow = tmux.wait("redrawn narrower", |s| {
        s.lines().all(|l| l.chars().count() <= 60) && s.contains("[work]")
    });
    assert!(narrow.lines().count() <= 20, "{narrow}");

    // q does what Ctrl-C does: in launch mode rtrace detaches, passes the
    // SIGINT on to the program and waits for it, then puts the terminal
    // back; the final table stays, saying how the program ended.
    tmux.keys("q");
    let screen = tmux.wait("the terminal back", |s| {
        s.contains("[killed by SIGINT]") && s.contains(&format!("pid {pid}"))
    });
    assert!(
        !tmux.alternate_screen(),
        "left the alternate screen:\n{screen}"
    );
    // The pane's shell signals the channel once rtrace has ended.
    let mut wait = Command::new("tmux");
    wait.args(["-L", &tmux.socket, "wait-for", DONE]);
    let run = run_command(wait, Duration::from_secs(30));
    assert_eq!(run.code(), 0, "tmux wait-for: {run:?}\n{}", tmux.screen());
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap().trim(),
        "130",
        "spin's status: killed by SIGINT"
    );
}

#[test]
fn live_view_needs_a_terminal() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["--tui", "-s", "work"], &prog, &["3"]);
    // A usage error: the command line asks for what cannot be.
    let line = assert_one_error_line(&run, 2, "rtrace --tui with stderr a pipe");
    assert_eq!(
        line,
        "rtrace: --tui needs a terminal on stderr; use -c for a summary (see 'rtrace --help')"
    );
    assert_eq!(run.stdout, "", "the program never ran");
}

/// A script's output (its prints, END, its maps) has no place on the view's
/// screen: without -o it would be lost, and the command line is refused.
#[test]
fn a_script_under_the_live_view_needs_a_file() {
    let prog = fixture("count", Variant::Pie);
    let script = "work { @calls = count(); } END { print(\"done\") }";
    let run = run_rtrace(&["--tui", "-x", script], &prog, &["3"]);
    let line = assert_one_error_line(&run, 2, "rtrace --tui -x SCRIPT without -o");
    assert_eq!(
        line,
        "rtrace: --tui shows no script output; write it to a file with -o FILE (see 'rtrace --help')"
    );
    assert_eq!(run.stdout, "", "the program never ran");
}

/// Ctrl-C at a terminal reaches every process of the foreground group: the
/// program rtrace launched gets it from the terminal, so rtrace, which
/// detaches, does not send it again (ctrlc counts its SIGINTs: one, as
/// untraced). rtrace waits for it and exits with its status.
#[test]
fn ctrl_c_at_the_terminal_reaches_the_program_once() {
    let prog = fixture("ctrlc", Variant::Pie);
    let rc: PathBuf = temp_path("ctrlc_rc");
    let events = temp_path("ctrlc_events");
    // The shell catches SIGINT (its children start with the default), so
    // it goes on to say how rtrace ended.
    let command = format!(
        "trap true INT; {} -s work -o {} -- {}; echo $? > {}; tmux wait-for -S {DONE}; sleep 60",
        shell_quote(&rtrace_bin()),
        shell_quote(&events),
        shell_quote(&prog),
        shell_quote(&rc)
    );
    let tmux = Tmux::start("ctrlc", 100, 20, &command);
    tmux.wait("the program running", |s| s.contains("ready"));
    tmux.keys("C-c");
    let mut wait = Command::new("tmux");
    wait.args(["-L", &tmux.socket, "wait-for", DONE]);
    let run = run_command(wait, Duration::from_secs(30));
    assert_eq!(run.code(), 0, "tmux wait-for: {run:?}\n{}", tmux.screen());
    let screen = tmux.screen();
    assert!(screen.contains("sigints=1\n"), "{screen}");
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap().trim(),
        "0",
        "{screen}"
    );
    let events = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        ["+++ detached +++", "+++ exited with 0 +++"],
        "{events}"
    );
}

/// After `q` in launch mode rtrace waits for the program without reading
/// keys; a Ctrl-C then ends the wait as it does without the live view: the
/// program (which ignores SIGINT) runs on, and rtrace exits 130.
#[test]
fn ctrl_c_while_waiting_for_the_program_leaves_it_running() {
    let naps = fixture("naps", Variant::Pie);
    let rc: PathBuf = temp_path("naps_rc");
    let out = temp_path("naps_ctrlc_out");
    let command = format!(
        "trap true INT; {} --tui -s nap -- {} 1 > {}; echo $? > {}; tmux wait-for -S {DONE}; sleep 60",
        shell_quote(&rtrace_bin()),
        shell_quote(&naps),
        shell_quote(&out),
        shell_quote(&rc)
    );
    let tmux = Tmux::start("waiting", 100, 20, &command);
    let screen = tmux.wait("nap's call", |s| {
        row(s, "nap").is_some_and(|r| r.first() == Some(&"1"))
    });
    let pid: i32 = screen.split_whitespace().nth(2).unwrap().parse().unwrap();
    tmux.keys("q");
    // The keys line says what a key does now: Ctrl-C alone.
    let keys = format!("keys: none while rtrace waits; Ctrl-C: leave pid {pid} running and quit");
    tmux.wait("waiting, and what Ctrl-C does", |s| {
        tmux.header(s).starts_with(&format!(
            "rtrace [waiting for pid {pid} to end (SIGINT sent)]"
        )) && s.lines().nth(1).is_some_and(|l| l.trim_end() == keys)
    });
    tmux.keys("C-c");
    let mut wait = Command::new("tmux");
    wait.args(["-L", &tmux.socket, "wait-for", DONE]);
    let run = run_command(wait, Duration::from_secs(30));
    assert_eq!(run.code(), 0, "tmux wait-for: {run:?}\n{}", tmux.screen());
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap().trim(),
        "130",
        "{}",
        tmux.screen()
    );
    let program = nix::unistd::Pid::from_raw(pid);
    assert!(
        nix::sys::signal::kill(program, None).is_ok(),
        "naps runs on"
    );
    nix::sys::signal::kill(program, nix::sys::signal::Signal::SIGTERM).unwrap();
}
