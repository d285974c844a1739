//! The live view (`--tui`): a top-like screen of the probes, redrawn a few
//! times a second while the program runs.
//!
//! [`Tui`] is an ordinary [`Handler`]: the probes' hits and returns feed one
//! row per probe and function (calls, calls per second over the last
//! refresh, p50, p99 and max duration, error returns, missed returns, the
//! last arguments), and as a listener it draws, on stderr, when the tracer is
//! idle ([`Handler::tick_interval`] keeps it drawing while nothing stops) and
//! reads the keys: a column letter sorts by it, `p` pauses the display
//! (counting goes on), `q` asks rtrace to detach. The terminal is put back
//! (main screen, cursor, cooked mode) in [`Handler::on_finish`] and, should
//! anything go wrong, when the view is dropped; a final snapshot of the
//! table is then printed on stderr.
//!
//! Durations go into a log-linear histogram (8 steps per power of two, so a
//! percentile is within 1/8 of a power of two, about 9%), a few kilobytes per
//! row, whatever the number of calls.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crossterm::style::Stylize;
use crossterm::{cursor, execute, queue, terminal};

use super::render::{Known, Number, Renderer};
use crate::addr::Pid;
use crate::error::{Error, Result};
use crate::handler::{Capture, Event, Fast, Handler, Hit, ProbeKind, Return, Site};
use crate::symbols::Module;

/// Steps per power of two.
const SUB: usize = 8;

/// A log-linear histogram of durations in nanoseconds.
#[derive(Clone, Debug)]
pub struct LatencyHist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist {
            counts: vec![0; 62 * SUB],
            total: 0,
            max: 0,
        }
    }
}

impl LatencyHist {
    /// Values below SUB have a bucket each; above, a power of two 2^exp
    /// (exp >= 3) is cut in SUB steps by the SUB-1 bits after the top one.
    fn bucket(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros() as usize;
        let step = ((v >> (exp - 3)) & (SUB as u64 - 1)) as usize;
        (exp - 2) * SUB + step
    }

    /// The lowest value of bucket `i`.
    fn low(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let (exp, step) = (i / SUB + 2, (i % SUB) as u64);
        if exp > 63 {
            return u64::MAX;
        }
        (1u64 << exp) | (step << (exp - 3))
    }

    /// Counts `v`.
    pub fn add(&mut self, v: u64) {
        self.counts[Self::bucket(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// The value below which a fraction `q` of the counts lie (the middle of
    /// its bucket), or None when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = (Self::low(i), Self::low(i + 1));
                return Some((lo + (hi - lo) / 2).min(self.max));
            }
        }
        Some(self.max)
    }

    /// The largest value counted.
    pub fn max(&self) -> u64 {
        self.max
    }
}

/// One probe and function.
#[derive(Default)]
struct Row {
    calls: u64,
    /// Calls when the previous frame was drawn, for the rate.
    calls_then: u64,
    rate: f64,
    errors: u64,
    missed: u64,
    durations: LatencyHist,
    last_args: String,
    /// True for an instruction probe or `--entry-only`: hits, no durations.
    hits_only: bool,
}

/// What the table is sorted by (the key in brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    /// `c`
    Calls,
    /// `r`
    Rate,
    /// `5`
    P50,
    /// `9`
    P99,
    /// `m`
    Max,
    /// `e`
    Errors,
    /// `n`
    Name,
}

/// What an entry leaves for its return.
struct Entry {
    known: Known,
}

/// The live view. Attach it (as `Rc<RefCell<Tui>>`) to every probe and as a
/// listener.
pub struct Tui {
    rows: BTreeMap<(String, String), Row>,
    renderer: Renderer,
    sort: Sort,
    paused: bool,
    pid: Option<Pid>,
    /// The program ended (exited, killed, or rtrace detached).
    ended: Option<String>,
    started: Instant,
    last_frame: Instant,
    /// Hits of all probes, and that count at the previous frame.
    hits: u64,
    hits_then: u64,
    /// The terminal is in raw mode on the alternate screen.
    active: bool,
    /// Where frames go (stderr; a buffer in tests).
    out: Box<dyn Write>,
    /// Terminal size override for tests.
    size: Option<(u16, u16)>,
    /// `on_finish` has run (it is called once per probe and listener).
    finished: bool,
}

/// How often the screen is drawn.
const FRAME: Duration = Duration::from_millis(250);

/// The width of the first column, `function [probe]`: first, so that a
/// narrow terminal still shows which row is which.
const NAME_W: usize = 32;

/// `s` in at most `width` characters, `…` marking a cut.
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

impl Tui {
    /// A live view drawing on stderr, which must be a terminal: refuses
    /// otherwise with a line saying what to use instead.
    pub fn new(string_limit: usize) -> Result<Tui> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Err(Error::Output(std::io::Error::other(
                "--tui draws on a terminal, and stderr is not one (use -c for a summary)",
            )));
        }
        Ok(Tui::with_output(
            Box::new(std::io::stderr()),
            string_limit,
            None,
        ))
    }

    /// The same view, rendering the functions `prototypes` names by them
    /// (`--proto`).
    pub fn with_prototypes(mut self, prototypes: super::Prototypes) -> Tui {
        self.renderer.set_prototypes(prototypes);
        self
    }

    fn with_output(out: Box<dyn Write>, string_limit: usize, size: Option<(u16, u16)>) -> Tui {
        let now = Instant::now();
        Tui {
            rows: BTreeMap::new(),
            renderer: Renderer::new(string_limit),
            sort: Sort::Calls,
            paused: false,
            pid: None,
            ended: None,
            started: now,
            last_frame: now,
            hits: 0,
            hits_then: 0,
            active: false,
            out,
            size,
            finished: false,
        }
    }

    fn row(&mut self, probe: &str, symbol: &str) -> &mut Row {
        self.rows
            .entry((probe.to_string(), symbol.to_string()))
            .or_default()
    }

    fn start_screen(&mut self) -> Result<()> {
        if self.active || self.size.is_some() {
            return Ok(());
        }
        terminal::enable_raw_mode().map_err(Error::Output)?;
        self.active = true;
        execute!(self.out, terminal::EnterAlternateScreen, cursor::Hide).map_err(Error::Output)
    }

    /// Puts the terminal back as it was.
    fn stop_screen(&mut self) {
        if self.active {
            self.active = false;
            let _ = execute!(self.out, cursor::Show, terminal::LeaveAlternateScreen);
            let _ = terminal::disable_raw_mode();
        }
    }

    fn key(&mut self, k: u8) {
        self.sort = match k {
            b'q' | 3 => {
                // q, or Ctrl-C (raw mode makes it a byte): detach, as SIGINT.
                crate::sys::signal::request_detach();
                return;
            }
            b'p' => {
                self.paused = !self.paused;
                return;
            }
            b'c' => Sort::Calls,
            b'r' => Sort::Rate,
            b'5' => Sort::P50,
            b'9' => Sort::P99,
            b'm' => Sort::Max,
            b'e' => Sort::Errors,
            b'n' => Sort::Name,
            _ => return,
        };
    }

    /// The lines of one frame, `width` columns wide at most.
    fn frame(&self, width: usize, height: usize) -> Vec<String> {
        let elapsed = self.started.elapsed().as_secs_f64();
        let threads = self
            .pid
            .and_then(|p| std::fs::read_dir(format!("/proc/{p}/task")).ok())
            .map_or(0, |d| d.count());
        let total_rate: f64 = self.rows.values().map(|r| r.rate).sum::<f64>().max(0.0);
        let mut lines = Vec::new();
        let pid = self.pid.map_or("-".to_string(), |p| p.to_string());
        // What state the view is in comes first: it must show on the
        // narrowest terminal.
        let mut head = "rtrace".to_string();
        if self.paused {
            head.push_str(" [paused]");
        }
        if let Some(end) = &self.ended {
            head.push_str(&format!(" [{end}]"));
        }
        head.push_str(&format!(
            "  pid {pid}  threads {threads}  {total_rate:.0} hits/s  {} hits  {elapsed:.0}s",
            self.hits
        ));
        lines.push(head);
        lines.push(
            "keys: sort by (c)alls (r)ate p(5)0 p(9)9 (m)ax (e)rrors (n)ame, (p)ause, (q)uit"
                .to_string(),
        );
        lines.push(String::new());
        lines.push(format!(
            "{:<NAME_W$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6}  last args",
            "function [probe]", "calls", "calls/s", "p50", "p99", "max", "errors", "missed"
        ));
        let mut rows: Vec<(&(String, String), &Row)> = self.rows.iter().collect();
        let p = |r: &Row, q: f64| r.durations.quantile(q).unwrap_or(0);
        match self.sort {
            Sort::Calls => rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.calls)),
            Sort::Rate => rows.sort_by(|a, b| b.1.rate.total_cmp(&a.1.rate)),
            Sort::P50 => rows.sort_by_key(|(_, r)| std::cmp::Reverse(p(r, 0.5))),
            Sort::P99 => rows.sort_by_key(|(_, r)| std::cmp::Reverse(p(r, 0.99))),
            Sort::Max => rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.durations.max())),
            Sort::Errors => rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.errors)),
            Sort::Name => {}
        }
        for ((probe, symbol), r) in rows.into_iter().take(height.saturating_sub(lines.len())) {
            let time = |v: Option<u64>| match (r.hits_only, v) {
                (true, _) | (false, None) => "-".to_string(),
                (false, Some(ns)) => duration(ns),
            };
            lines.push(format!(
                "{:<NAME_W$} {:>9} {:>9.0} {:>9} {:>9} {:>9} {:>6} {:>6}  {}",
                cut(&format!("{symbol} [{probe}]"), NAME_W),
                r.calls,
                r.rate,
                time(r.durations.quantile(0.5)),
                time(r.durations.quantile(0.99)),
                time((r.durations.total > 0).then(|| r.durations.max())),
                r.errors,
                r.missed,
                r.last_args
            ));
        }
        for l in &mut lines {
            if l.chars().count() > width {
                *l = l.chars().take(width).collect();
            }
        }
        lines
    }

    fn draw(&mut self) -> Result<()> {
        let (w, h) = match self.size {
            Some(s) => s,
            None => terminal::size().unwrap_or((80, 24)),
        };
        let lines = self.frame(usize::from(w), usize::from(h));
        queue!(
            self.out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )
        .map_err(Error::Output)?;
        for (i, line) in lines.iter().enumerate() {
            queue!(self.out, cursor::MoveTo(0, i as u16)).map_err(Error::Output)?;
            let text = if i == 0 {
                line.clone().bold().to_string()
            } else {
                line.clone()
            };
            self.out.write_all(text.as_bytes()).map_err(Error::Output)?;
        }
        self.out.flush().map_err(Error::Output)
    }

    /// Updates the rates, once per frame.
    fn tick(&mut self) {
        let dt = self.last_frame.elapsed().as_secs_f64().max(1e-3);
        for r in self.rows.values_mut() {
            r.rate = (r.calls - r.calls_then) as f64 / dt;
            r.calls_then = r.calls;
        }
        self.hits_then = self.hits;
        self.last_frame = Instant::now();
    }
}

/// `812ns`, `12.5us`, `3.20ms`, `1.25s`.
fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{:.1}us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        self.stop_screen();
    }
}

impl Handler for Tui {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        self.hits += 1;
        let site = hit.site().clone();
        let function = matches!(site.kind, ProbeKind::Function { .. });
        let (known, args) = if function {
            let known = self.renderer.known(hit);
            let args = self.renderer.args(&known, hit).text();
            (known, args)
        } else {
            (Known::Raw, String::new())
        };
        let returns = site.kind == (ProbeKind::Function { returns: true });
        let row = self.row(&site.probe, &site.symbol);
        row.last_args = args;
        if returns {
            hit.set_data(Entry { known });
        } else {
            row.hits_only = true;
            row.calls += 1;
        }
        Ok(())
    }

    /// The live view shows arguments as the printer renders them: the same
    /// captures.
    fn returns(&mut self, site: &Site, module: Option<&Module>) -> crate::handler::Returns {
        self.renderer.returns(site, module)
    }

    fn fast(&mut self, site: &Site, module: Option<&Module>) -> Fast {
        if site.kind == ProbeKind::Instruction {
            return Fast::Yes(Capture::nothing());
        }
        self.renderer.capture(site, module)
    }

    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        let entry = ret.take_data::<Entry>();
        let value = self.renderer.retval(entry.as_ref().map(|e| &e.known), ret);
        let negative = matches!(value.number, Number::Signed(v) if v < 0);
        let ns = u64::try_from(ret.duration().as_nanos()).unwrap_or(u64::MAX);
        let site = ret.site();
        let row = self.row(&site.probe, &site.symbol);
        row.calls += 1;
        row.errors += u64::from(negative);
        row.durations.add(ns);
        Ok(())
    }

    fn on_event(&mut self, event: &Event, _time: Duration) -> Result<()> {
        match event {
            Event::Attached { pid, .. } => {
                self.pid = Some(*pid);
                self.start_screen()?;
                self.draw()?;
            }
            Event::Missed { probe, symbol, .. } => self.row(probe, symbol).missed += 1,
            Event::Lost {
                probe,
                symbol,
                count,
                ..
            }
            | Event::Unwatched {
                probe,
                symbol,
                count,
                ..
            } => self.row(probe, symbol).missed += count,
            Event::Exited { pid, code } if Some(*pid) == self.pid => {
                self.ended = Some(format!("exited with {code}"));
            }
            Event::Killed { pid, signal, .. } if Some(*pid) == self.pid => {
                self.ended = Some(format!(
                    "killed by {}",
                    crate::handler::signal_name(*signal)
                ));
            }
            Event::Detached { .. } => self.ended = Some("detached".into()),
            Event::Exited { .. }
            | Event::Killed { .. }
            | Event::Fork { .. }
            | Event::Exec { .. }
            | Event::Signal { .. }
            | Event::Warning { .. }
            | Event::ProcessWarning { .. }
            | Event::NeverArmed { .. }
            | Event::ProbeMode { .. }
            | Event::Skipped { .. } => {}
        }
        Ok(())
    }

    fn on_idle(&mut self) -> Result<()> {
        if !self.active && self.size.is_none() {
            return Ok(());
        }
        let keys = crate::sys::tty::pending_keys();
        for &k in &keys {
            self.key(k);
        }
        if self.last_frame.elapsed() >= FRAME {
            self.tick();
            if !self.paused {
                return self.draw();
            }
        }
        if !keys.is_empty() {
            // Show what the key did (a new order, the pause) at once.
            self.draw()?;
        }
        Ok(())
    }

    fn idle_interval(&self) -> Option<Duration> {
        Some(FRAME)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(FRAME)
    }

    fn on_finish(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        self.tick();
        self.stop_screen();
        if self.pid.is_none() {
            // Tracing never began: nothing to show.
            return Ok(());
        }
        // The last frame, on the main screen, for the record: as wide as the
        // terminal, every row.
        let width = match self.size {
            Some((w, _)) => w,
            None => terminal::size().map_or(u16::MAX, |(w, _)| w),
        };
        let lines = self.frame(usize::from(width), usize::MAX);
        let mut text = lines.join("\n");
        text.push('\n');
        self.out.write_all(text.as_bytes()).map_err(Error::Output)?;
        self.out.flush().map_err(Error::Output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{function, SharedBuf, Tracee, PID};

    #[test]
    fn quantiles_are_within_a_ninth_of_the_value() {
        let mut h = LatencyHist::default();
        for v in 1..=1000u64 {
            h.add(v * 1000);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.07, "{p50}");
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.07, "{p99}");
        assert_eq!(h.max(), 1_000_000);
        assert_eq!(LatencyHist::default().quantile(0.5), None);
        let mut small = LatencyHist::default();
        small.add(3);
        assert_eq!(small.quantile(0.5), Some(3));
        for v in [0, 1, 7, 8, 9, 15, 16, u64::MAX] {
            let b = LatencyHist::bucket(v);
            assert!(LatencyHist::low(b) <= v, "{v}");
            assert!(b + 1 == 62 * SUB || LatencyHist::low(b + 1) > v, "{v}");
        }
    }

    #[test]
    fn rows_count_calls_errors_and_sort_by_key() {
        let out = SharedBuf::default();
        let mut tui = Tui::with_output(Box::new(out.clone()), 64, Some((120, 20)));
        let t = Tracee::new();
        let (work, fail) = (function("work"), function("fail"));
        for i in 0..5 {
            let d = t.enter(&mut tui, &work, 7, 0, [i, 0, 0, 0, 0, 0]).unwrap();
            t.leave(&mut tui, &work, 7, 0, 10 + i, 2 * i + 1, d)
                .unwrap();
        }
        for _ in 0..2 {
            let d = t.enter(&mut tui, &fail, 7, 0, [0; 6]).unwrap();
            t.leave(&mut tui, &fail, 7, 0, 2000, (-1i64) as u64, d)
                .unwrap();
        }
        tui.on_event(
            &Event::Missed {
                pid: Pid::from_raw(PID),
                tid: Pid::from_raw(7),
                probe: "work".into(),
                symbol: "work".into(),
            },
            Duration::ZERO,
        )
        .unwrap();
        let lines = tui.frame(200, 20);
        let work_row = lines
            .iter()
            .position(|l| l.starts_with("work [work]"))
            .unwrap();
        let fail_row = lines
            .iter()
            .position(|l| l.starts_with("fail [fail]"))
            .unwrap();
        assert!(work_row < fail_row, "by calls: {lines:#?}");
        let numbers = |l: &str| -> Vec<String> {
            l[NAME_W..].split_whitespace().map(str::to_string).collect()
        };
        let fields = numbers(&lines[work_row]);
        assert_eq!(fields[0], "5", "{lines:#?}");
        assert_eq!(
            (fields[5].as_str(), fields[6].as_str()),
            ("0", "1"),
            "errors, missed"
        );
        let fields = numbers(&lines[fail_row]);
        assert_eq!(
            (fields[0].as_str(), fields[5].as_str()),
            ("2", "2"),
            "calls, errors: {lines:#?}"
        );
        assert_eq!(fields[4], "2.00ms", "max duration");
        assert_eq!(cut("abcdef", 4), "abc…");
        tui.key(b'e');
        let lines = tui.frame(200, 20);
        let work_row = lines
            .iter()
            .position(|l| l.starts_with("work [work]"))
            .unwrap();
        let fail_row = lines
            .iter()
            .position(|l| l.starts_with("fail [fail]"))
            .unwrap();
        assert!(fail_row < work_row, "by errors");
        // Narrow terminals cut lines; short ones drop rows.
        assert!(tui.frame(30, 20).iter().all(|l| l.chars().count() <= 30));
        assert_eq!(tui.frame(200, 5).len(), 5);
        tui.key(b'p');
        assert!(tui.frame(200, 20)[0].starts_with("rtrace [paused]  pid "));
    }
}
