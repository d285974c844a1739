//! The live view (`--tui`) in a real terminal: tmux runs rtrace in a pane,
//! `capture-pane` reads the screen, `send-keys` presses keys.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::events::{assert_one_error_line, temp_path};
use crate::fixtures::{fixture, rtrace_bin, run_rtrace, Variant};

/// A tmux server of this test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "the live view tests need tmux (apt-get install tmux)"
        );
        let t = Tmux {
            socket: format!("rtrace-{name}-{}", std::process::id()),
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

    /// The screen once `want` holds, within 30 s; panics with the screen.
    fn wait(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if want(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
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

#[test]
fn live_view_in_a_terminal() {
    let spin = fixture("spin", Variant::Pie);
    let rc: PathBuf = temp_path("tui_rc");
    let command = format!(
        "{} --tui -s work -s libc:nanosleep -- {} threads 2; echo $? > {}; sleep 60",
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

    // q detaches and puts the terminal back; the final table stays.
    tmux.keys("q");
    let screen = tmux.wait("the terminal back", |s| s.contains("[detached]"));
    assert!(
        !tmux.alternate_screen(),
        "left the alternate screen:\n{screen}"
    );
    // In launch mode rtrace then waits for the program, as after Ctrl-C.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&rc).map_or(true, |s| s.trim().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "rtrace did not end:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap().trim(),
        "0",
        "spin's status"
    );
}

#[test]
fn live_view_needs_a_terminal() {
    let prog = fixture("count", Variant::Pie);
    let run = run_rtrace(&["--tui", "-s", "work"], &prog, &["3"]);
    let line = assert_one_error_line(&run, 1, "rtrace --tui with stderr a pipe");
    assert!(line.contains("--tui draws on a terminal"), "{line}");
    assert_eq!(run.stdout, "", "the program never ran");
}
