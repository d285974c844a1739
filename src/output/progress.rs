//! The progress line the command line shows on a terminal while the work
//! before tracing begins takes long: `rtrace: arming probes… 1200/2210 (libc:*)`,
//! rewritten in place.
//!
//! This file owns the line's text and when it is drawn: only once the work
//! has gone on for a while (a second, by default), at most four times a
//! second, and cleared as soon as the engine says the work is over
//! ([`Progress::Idle`]) or the line is dropped. It must not decide whether
//! there is a terminal (the caller makes a line only for one) and never
//! fails: a progress line that cannot be written is not worth stopping for.

use std::io::Write;
use std::time::{Duration, Instant};

use crossterm::cursor::MoveToColumn;
use crossterm::style::Print;
use crossterm::terminal::{Clear, ClearType};
use crossterm::QueueableCommand;

use crate::Progress;

/// How long the work goes on before the line appears, unless told otherwise.
pub const PROGRESS_DELAY: Duration = Duration::from_secs(1);

/// The shortest time between two drawings.
const INTERVAL: Duration = Duration::from_millis(250);

/// The longest probe spec shown whole (the line must fit an 80-column
/// terminal: a line that wraps cannot be cleared in place).
const SPEC_WIDTH: usize = 32;

/// A progress line on a terminal.
pub struct ProgressLine<W: Write> {
    out: W,
    /// When the work began.
    start: Instant,
    /// How long it goes on before the line is drawn.
    delay: Duration,
    last_drawn: Option<Instant>,
    /// The line is on the screen.
    shown: bool,
}

impl<W: Write> ProgressLine<W> {
    /// A line on `out` for work that began at `start`, drawn once `delay`
    /// has passed.
    pub fn new(out: W, start: Instant, delay: Duration) -> ProgressLine<W> {
        ProgressLine {
            out,
            start,
            delay,
            last_drawn: None,
            shown: false,
        }
    }

    /// Shows `p`, as of `now`: drawn when it is time to, cleared for
    /// [`Progress::Idle`].
    pub fn update(&mut self, p: &Progress<'_>, now: Instant) {
        let Some(text) = describe(p) else {
            self.clear();
            return;
        };
        if now.saturating_duration_since(self.start) < self.delay {
            return;
        }
        if let Some(last) = self.last_drawn {
            if now.saturating_duration_since(last) < INTERVAL {
                return;
            }
        }
        self.last_drawn = Some(now);
        self.shown = true;
        let _ = self
            .out
            .queue(MoveToColumn(0))
            .and_then(|o| o.queue(Clear(ClearType::CurrentLine)))
            .and_then(|o| o.queue(Print(text)));
        let _ = self.out.flush();
    }

    /// Takes the line off the screen, if it is on it.
    pub fn clear(&mut self) {
        if !std::mem::take(&mut self.shown) {
            return;
        }
        let _ = self
            .out
            .queue(MoveToColumn(0))
            .and_then(|o| o.queue(Clear(ClearType::CurrentLine)));
        let _ = self.out.flush();
    }
}

impl<W: Write> Drop for ProgressLine<W> {
    /// Whatever ended the work (an error before tracing began, say), the
    /// next line written starts on a clean line.
    fn drop(&mut self) {
        self.clear();
    }
}

/// The text of the line, none for `Idle`.
fn describe(p: &Progress<'_>) -> Option<String> {
    match p {
        Progress::Resolving { probe } => {
            Some(format!("rtrace: resolving probes… ({})", short(probe)))
        }
        Progress::Arming { probe, done, total } => Some(format!(
            "rtrace: arming probes… {done}/{total} ({})",
            short(probe)
        )),
        Progress::Idle => None,
    }
}

/// `probe`, cut to [`SPEC_WIDTH`] characters with `…`.
fn short(probe: &str) -> String {
    if probe.chars().count() <= SPEC_WIDTH {
        return probe.to_string();
    }
    let mut s: String = probe.chars().take(SPEC_WIDTH - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAR: &str = "\x1b[1G\x1b[2K";

    fn arming(done: usize) -> Progress<'static> {
        Progress::Arming {
            probe: "libc:*",
            done,
            total: 2210,
        }
    }

    #[test]
    fn drawn_only_after_the_delay_at_most_four_times_a_second_then_cleared() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut out = Vec::new();
        {
            let mut line = ProgressLine::new(&mut out, t0, Duration::from_secs(1));
            line.update(&Progress::Resolving { probe: "libc:*" }, ms(10));
            line.update(&arming(100), ms(999));
            line.update(&arming(1200), ms(1000));
            line.update(&arming(1300), ms(1100));
            line.update(&arming(1400), ms(1249));
            line.update(&arming(1500), ms(1250));
            line.update(&Progress::Idle, ms(1300));
            line.update(&Progress::Idle, ms(1301));
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "{CLEAR}rtrace: arming probes… 1200/2210 (libc:*)\
                 {CLEAR}rtrace: arming probes… 1500/2210 (libc:*)\
                 {CLEAR}"
            )
        );
    }

    #[test]
    fn work_done_within_the_delay_prints_nothing() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        {
            let mut line = ProgressLine::new(&mut out, t0, Duration::from_secs(1));
            for done in 0..=2210 {
                line.update(&arming(done), t0 + Duration::from_micros(done as u64));
            }
            line.update(&Progress::Idle, t0 + Duration::from_millis(3));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn dropping_the_line_clears_it() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        {
            let mut line = ProgressLine::new(&mut out, t0, Duration::ZERO);
            let long = "libstdc++:std::__cxx11::basic_string*::_M_construct*";
            line.update(&Progress::Resolving { probe: long }, t0);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{CLEAR}rtrace: resolving probes… (libstdc++:std::__cxx11::basic_s…){CLEAR}")
        );
    }
}
