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
/// [probe]`): calls, calls/s, p50, p99, max, errors, missed.
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
                .and_then(|r| r[0].parse::<u64>().ok())
                .unwrap_or(0)
        };
        calls("work") > 10 && calls("libc:nanosleep") > 10
    });
    assert!(tmux.alternate_screen(), "drawn on the alternate screen");
    let header = screen.lines().next().unwrap();
    assert!(header.starts_with("rtrace  pid "), "{screen}");
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

    // Sorting by name puts libc:nanosleep's function before work.
    tmux.keys("n");
    tmux.wait("sorted by name", |s| {
        let at = |p: &str| s.find(&format!(" [{p}]"));
        matches!((at("libc:nanosleep"), at("work")), (Some(a), Some(b)) if a < b)
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
