//! The live view (`--tui`): a top-like screen of the probes, redrawn a few
//! times a second while the program runs.
//!
//! [`Tui`] is an ordinary [`Handler`]: the probes' hits and returns feed one
//! row per probe and function (calls, calls per second over the last
//! refresh, p50, p99 and max duration, error returns, missed returns, the
//! last arguments; a log2 histogram of the durations and the last
//! [`RECENT`] calls for its detail view), and as a listener it draws, on
//! stderr, when the tracer is idle ([`Handler::tick_interval`] keeps it
//! drawing while nothing stops) and reads the keys ([`Key`]). The screen is
//! drawn by ratatui: a table whose function column takes the width the
//! terminal gives and whose other columns drop, in [`DROP_ORDER`], when it
//! is narrow; a row's detail view (its histogram as `--hist` draws it, its
//! last calls); the keys. `q` asks rtrace to detach, as a SIGINT would. The
//! terminal is put back (main screen, cursor, cooked mode) in
//! [`Handler::on_finish`] and, should anything go wrong, when the view is
//! dropped; a final snapshot of the table is then printed on stderr.
//!
//! Durations go into a log-linear histogram (8 steps per power of two, so a
//! percentile is within 1/8 of a power of two, about 9%), a few kilobytes per
//! row, whatever the number of calls.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Cell, Paragraph, Row as TableRow, StatefulWidget, Table, TableState, Widget,
};
use ratatui::Terminal;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::hist::Log2Hist;
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

/// How many calls a row keeps for its detail view.
pub const RECENT: usize = 10;

/// One call, as the detail view lists it.
struct Call {
    tid: i32,
    /// `symbol(args)`.
    call: String,
    /// The return value and the duration; None for a hit (no return).
    ret: Option<(String, u64)>,
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
    /// The same durations in powers of two, as `--hist` draws them.
    log2: Log2Hist,
    last_args: String,
    /// The last [`RECENT`] calls, oldest first.
    recent: VecDeque<Call>,
    /// True for an instruction probe or `--entry-only`: hits, no durations.
    hits_only: bool,
}

impl Row {
    fn remember(&mut self, call: Call) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(call);
    }

    fn time(&self, v: Option<u64>) -> String {
        match (self.hits_only, v) {
            (true, _) | (false, None) => "-".to_string(),
            (false, Some(ns)) => duration(ns),
        }
    }
}

/// A column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Function,
    Calls,
    Rate,
    P50,
    P99,
    Max,
    Errors,
    Missed,
    Args,
}

/// The columns, left to right.
const COLUMNS: [Column; 9] = [
    Column::Function,
    Column::Calls,
    Column::Rate,
    Column::P50,
    Column::P99,
    Column::Max,
    Column::Errors,
    Column::Missed,
    Column::Args,
];

/// The columns a narrow terminal drops, first dropped first: what says
/// least about where the time goes leaves first. The function, calls,
/// calls/s and p99 always stay.
const DROP_ORDER: [Column; 5] = [
    Column::Args,
    Column::Missed,
    Column::Errors,
    Column::Max,
    Column::P50,
];

/// The function column's width before a column of numbers is dropped for
/// it (or the longest name, when shorter); the last arguments are dropped
/// before any name is cut.
const FUNCTION_MIN: usize = 24;

/// The fewest cells of name the function column keeps (or the longest name,
/// when shorter): on a terminal too narrow for it and the columns that
/// otherwise stay, those go too, in [`LAST_DROPS`].
const NAME_MIN: usize = 8;

/// The columns dropped, after [`DROP_ORDER`], to keep [`NAME_MIN`] cells of
/// name: a row whose name cannot be read says nothing.
const LAST_DROPS: [Column; 3] = [Column::Rate, Column::P99, Column::Calls];

/// The last arguments' width before the column is dropped.
const ARGS_MIN: usize = 16;

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Function => "function [probe]",
            Column::Calls => "calls",
            Column::Rate => "calls/s",
            Column::P50 => "p50",
            Column::P99 => "p99",
            Column::Max => "max",
            Column::Errors => "errors",
            Column::Missed => "missed",
            Column::Args => "last args",
        }
    }

    /// The fixed width of a column of numbers.
    fn width(self) -> usize {
        match self {
            Column::Errors | Column::Missed => 7,
            Column::Function | Column::Args => 0,
            _ => 9,
        }
    }
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

impl Sort {
    /// The order a key asks for.
    fn by_key(c: char) -> Option<Sort> {
        Some(match c {
            'c' => Sort::Calls,
            'r' => Sort::Rate,
            '5' => Sort::P50,
            '9' => Sort::P99,
            'm' => Sort::Max,
            'e' => Sort::Errors,
            'n' => Sort::Name,
            _ => return None,
        })
    }

    fn column(self) -> Column {
        match self {
            Sort::Calls => Column::Calls,
            Sort::Rate => Column::Rate,
            Sort::P50 => Column::P50,
            Sort::P99 => Column::P99,
            Sort::Max => Column::Max,
            Sort::Errors => Column::Errors,
            Sort::Name => Column::Function,
        }
    }
}

/// A key, decoded from the bytes a terminal in raw mode sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Char(char),
    Enter,
    Esc,
    Backspace,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Ctrl-C: raw mode makes it a byte, not a SIGINT.
    Interrupt,
    /// A sequence the view has no use for.
    Other,
}

/// The keys in `bytes`: one byte each, but Esc starts a sequence (CSI `ESC
/// [`, SS3 `ESC O`: parameters, then a final byte, as xterm sends the
/// cursor keys) unless nothing follows it in the same read.
fn keys(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        let key = match b {
            3 => Key::Interrupt,
            b'\r' | b'\n' => Key::Enter,
            0x7f | 8 => Key::Backspace,
            0x1b if matches!(bytes.get(i), Some(b'[' | b'O')) => {
                let params = i + 1;
                let fin = bytes[params..]
                    .iter()
                    .position(|c| !(c.is_ascii_digit() || *c == b';'))
                    .map(|p| params + p);
                let Some(fin) = fin else {
                    i = bytes.len();
                    keys.push(Key::Other);
                    continue;
                };
                i = fin + 1;
                match (&bytes[params..fin], bytes[fin]) {
                    (_, b'A') => Key::Up,
                    (_, b'B') => Key::Down,
                    (_, b'H') | (b"1" | b"7", b'~') => Key::Home,
                    (_, b'F') | (b"4" | b"8", b'~') => Key::End,
                    (b"5", b'~') => Key::PageUp,
                    (b"6", b'~') => Key::PageDown,
                    _ => Key::Other,
                }
            }
            0x1b => Key::Esc,
            0x20..=0x7e => Key::Char(char::from(b)),
            // UTF-8 (a name typed into the filter): the length is in the
            // lead byte.
            0xc0.. => {
                let len = b.leading_ones() as usize;
                let end = (i - 1 + len).min(bytes.len());
                let c = std::str::from_utf8(&bytes[i - 1..end])
                    .ok()
                    .and_then(|s| s.chars().next());
                i = end;
                c.map_or(Key::Other, Key::Char)
            }
            _ => Key::Other,
        };
        keys.push(key);
    }
    keys
}

/// What the screen shows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum View {
    /// The table of rows.
    Table,
    /// One row (probe, symbol): its histogram and last calls.
    Detail((String, String)),
    /// The keys.
    Help,
}

/// What an entry leaves for its return.
struct Entry {
    known: Known,
    args: String,
}

/// The live view. Attach it (as `Rc<RefCell<Tui>>`) to every probe and as a
/// listener.
pub struct Tui {
    rows: BTreeMap<(String, String), Row>,
    renderer: Renderer,
    sort: Sort,
    paused: bool,
    pid: Option<Pid>,
    /// rtrace started the program: `q` passes it a SIGINT and waits.
    launched: bool,
    /// `q` (or Ctrl-C) was pressed: rtrace detaches.
    quitting: bool,
    /// rtrace has detached.
    detached: bool,
    /// The terminal is back in cooked mode while rtrace waits for the
    /// program.
    cooked: bool,
    /// The program ended (exited, killed, or rtrace detached).
    ended: Option<String>,
    view: View,
    /// Rows are shown when their `function [probe]` holds this text (any
    /// case).
    filter: String,
    /// Keys go to the filter (after `/`, until Enter or Esc).
    typing: bool,
    /// The selected row, followed as the order changes.
    selected: Option<(String, String)>,
    /// The table's first row shown and its selected row.
    table: TableState,
    /// Rows the table showed last: a page for PgUp and PgDn.
    page: usize,
    /// Something changed that the screen must show before the next frame.
    dirty: bool,
    started: Instant,
    last_frame: Instant,
    /// Hits of all probes.
    hits: u64,
    /// The terminal, in raw mode on the alternate screen, while drawing.
    terminal: Option<Terminal<CrosstermBackend<std::io::Stderr>>>,
    /// Where the last table goes (stderr; a buffer in tests).
    out: Box<dyn Write>,
    /// Terminal size override for tests (the view then draws nothing).
    size: Option<(u16, u16)>,
    /// `on_finish` has run (it is called once per probe and listener).
    finished: bool,
}

/// The width of the last table when the terminal's cannot be read.
const RECORD_WIDTH: u16 = 200;

/// How often the screen is drawn.
const FRAME: Duration = Duration::from_millis(250);

/// `s` in at most `width` terminal cells, `…` marking a cut. Widths are
/// counted as ratatui counts them (unicode-width: a CJK character takes two
/// cells, a combining mark none), so that ratatui never cuts the text again
/// and the `…` stays.
fn cut(s: &str, width: usize) -> String {
    if s.width() <= width {
        return s.to_string();
    }
    let Some(room) = width.checked_sub(1) else {
        return String::new();
    };
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// The keys, as `?` shows them.
const HELP: [(&str, &str); 11] = [
    (
        "c r 5 9 m e n",
        "sort by calls, calls/s, p50, p99, max, errors, name",
    ),
    ("Up Down, k j", "select a row"),
    (
        "PgUp PgDn Home End",
        "select a page up, down, the first, the last row",
    ),
    ("Enter", "the selected row: its durations, its last calls"),
    ("/", "filter rows by name: type, Enter keeps, Esc clears"),
    ("Esc", "clear the filter"),
    ("p", "pause the display (counting goes on)"),
    ("?", "this list"),
    ("Esc or q", "leave a view (this one, a row's)"),
    (
        "q, Ctrl-C",
        "detach; a program rtrace started gets the SIGINT,",
    ),
    ("", "and rtrace waits for it to end"),
];

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

    /// Says whether rtrace started the program (then `q` waits for it to
    /// end, and the header says so).
    pub fn launched(mut self, launched: bool) -> Tui {
        self.launched = launched;
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
            launched: false,
            quitting: false,
            detached: false,
            cooked: false,
            ended: None,
            view: View::Table,
            filter: String::new(),
            typing: false,
            selected: None,
            table: TableState::default(),
            page: 1,
            dirty: false,
            started: now,
            last_frame: now,
            hits: 0,
            terminal: None,
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
        if self.terminal.is_some() || self.size.is_some() {
            return Ok(());
        }
        terminal::enable_raw_mode().map_err(Error::Output)?;
        let mut stderr = std::io::stderr();
        let entered = execute!(stderr, terminal::EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(stderr)));
        match entered {
            Ok(t) => self.terminal = Some(t),
            Err(e) => {
                let _ = execute!(
                    std::io::stderr(),
                    cursor::Show,
                    terminal::LeaveAlternateScreen
                );
                let _ = terminal::disable_raw_mode();
                return Err(Error::Output(e));
            }
        }
        Ok(())
    }

    /// Puts the terminal back as it was.
    fn stop_screen(&mut self) {
        if self.terminal.take().is_some() {
            let _ = execute!(
                std::io::stderr(),
                cursor::Show,
                terminal::LeaveAlternateScreen
            );
            let _ = terminal::disable_raw_mode();
        }
    }

    /// The rows shown, in the table's order.
    fn visible(&self) -> Vec<(&(String, String), &Row)> {
        let filter = self.filter.to_lowercase();
        let mut rows: Vec<(&(String, String), &Row)> = self
            .rows
            .iter()
            .filter(|((probe, symbol), _)| {
                filter.is_empty() || name(probe, symbol).to_lowercase().contains(&filter)
            })
            .collect();
        let p = |r: &Row, q: f64| r.durations.quantile(q).unwrap_or(0);
        match self.sort {
            Sort::Calls => rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.calls)),
            Sort::Rate => rows.sort_by(|a, b| b.1.rate.total_cmp(&a.1.rate)),
            Sort::P50 => rows.sort_by_key(|(_, r)| std::cmp::Reverse(p(r, 0.5))),
            Sort::P99 => rows.sort_by_key(|(_, r)| std::cmp::Reverse(p(r, 0.99))),
            Sort::Max => rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.durations.max())),
            Sort::Errors => rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.errors)),
            Sort::Name => rows.sort_by_key(|((probe, symbol), _)| name(probe, symbol)),
        }
        rows
    }

    /// The index of the selected row among `visible`, the first row when
    /// the selected one is not shown.
    fn selection(&self, visible: &[(&(String, String), &Row)]) -> Option<usize> {
        if visible.is_empty() {
            return None;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|s| visible.iter().position(|(k, _)| *k == s));
        Some(at.unwrap_or(0))
    }

    /// Moves the selection `by` rows (clamped to the first and last).
    fn select(&mut self, by: isize) {
        let visible = self.visible();
        let Some(at) = self.selection(&visible) else {
            return;
        };
        let to = at.saturating_add_signed(by).min(visible.len() - 1);
        self.selected = Some(visible[to].0.clone());
    }

    /// What a key does: Ctrl-C quits from anywhere; while the filter is
    /// typed, text goes to it; a view other than the table is left with Esc
    /// or q.
    fn key(&mut self, key: Key) {
        self.dirty = true;
        if key == Key::Interrupt {
            self.quit();
            return;
        }
        if self.typing {
            match key {
                Key::Char(c) => self.filter.push(c),
                Key::Backspace => {
                    self.filter.pop();
                }
                Key::Enter => self.typing = false,
                Key::Esc => {
                    self.typing = false;
                    self.filter.clear();
                }
                other => self.table_key(other),
            }
            return;
        }
        match (&self.view, key) {
            (View::Table, key) => self.table_key(key),
            (_, Key::Esc | Key::Char('q')) => self.view = View::Table,
            (View::Help, Key::Char('?')) => self.view = View::Table,
            _ => {}
        }
    }

    /// A key in the table (or a key the filter has no use for).
    fn table_key(&mut self, key: Key) {
        let page = self.page.max(1) as isize;
        match key {
            Key::Char('q') => self.quit(),
            Key::Char('p') => self.paused = !self.paused,
            Key::Char('/') => self.typing = true,
            Key::Char('?') => self.view = View::Help,
            Key::Esc => self.filter.clear(),
            Key::Up | Key::Char('k') => self.select(-1),
            Key::Down | Key::Char('j') => self.select(1),
            Key::PageUp => self.select(-page),
            Key::PageDown => self.select(page),
            Key::Home => self.select(isize::MIN),
            Key::End => self.select(isize::MAX),
            Key::Enter => {
                let visible = self.visible();
                if let Some(at) = self.selection(&visible) {
                    let key = visible[at].0.clone();
                    self.selected = Some(key.clone());
                    self.view = View::Detail(key);
                }
            }
            Key::Char(c) => {
                if let Some(sort) = Sort::by_key(c) {
                    self.sort = sort;
                }
            }
            _ => {}
        }
    }

    /// `q`: detach, as a SIGINT to rtrace would.
    fn quit(&mut self) {
        crate::sys::signal::request_detach();
        self.quitting = true;
    }

    /// The signal a launched program was passed at the detach, which rtrace
    /// now waits for it to answer (by ending).
    fn waiting(&self) -> Option<i32> {
        let waits = self.launched && self.detached && self.ended.is_none() && !self.finished;
        waits.then(crate::sys::signal::detach_requested).flatten()
    }

    /// The first line: the state of the view, then the process.
    fn header(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let threads = self
            .pid
            .and_then(|p| std::fs::read_dir(format!("/proc/{p}/task")).ok())
            .map_or(0, |d| d.count());
        let total_rate: f64 = self.rows.values().map(|r| r.rate).sum::<f64>().max(0.0);
        let pid = self.pid.map_or("-".to_string(), |p| p.to_string());
        // What state the view is in comes first: it must show on the
        // narrowest terminal.
        let mut head = "rtrace".to_string();
        if self.paused {
            head.push_str(" [paused]");
        }
        match (&self.ended, self.waiting()) {
            (Some(end), _) => head.push_str(&format!(" [{end}]")),
            (None, Some(sig)) => head.push_str(&format!(
                " [waiting for pid {pid} to end ({} sent)]",
                crate::handler::signal_name(sig)
            )),
            (None, None) if self.detached => head.push_str(" [detached]"),
            (None, None) if self.quitting => head.push_str(" [detaching]"),
            (None, None) => {}
        }
        head.push_str(&format!(
            "  pid {pid}  threads {threads}  {total_rate:.0} hits/s  {} hits  {elapsed:.0}s",
            self.hits
        ));
        head
    }

    /// The columns that fit `width`, with the function column's width: the
    /// longest name shown, cut to what the terminal leaves it.
    fn columns(&self, width: usize, visible: &[(&(String, String), &Row)]) -> Vec<(Column, usize)> {
        let longest = visible
            .iter()
            .map(|((probe, symbol), _)| name(probe, symbol).width())
            .chain([Column::Function.title().len() + 1])
            .max()
            .unwrap_or(0);
        let fixed = |shown: &[Column]| -> usize {
            shown.iter().map(|c| c.width() + 1).sum::<usize>() - 1
                + usize::from(shown.contains(&Column::Args)) * ARGS_MIN
        };
        let mut shown: Vec<Column> = COLUMNS.to_vec();
        for drop in DROP_ORDER {
            // The last arguments come after the whole names; the other
            // columns before names longer than FUNCTION_MIN.
            let function = match shown.contains(&Column::Args) {
                true => longest,
                false => longest.min(FUNCTION_MIN),
            };
            if fixed(&shown) + function <= width {
                break;
            }
            shown.retain(|&c| c != drop);
        }
        let floor = longest.min(NAME_MIN);
        for drop in LAST_DROPS {
            if fixed(&shown) + floor <= width {
                break;
            }
            shown.retain(|&c| c != drop);
        }
        let function = longest.min(width.saturating_sub(fixed(&shown)));
        let used = function + fixed(&shown) - usize::from(shown.contains(&Column::Args)) * ARGS_MIN;
        shown
            .into_iter()
            .map(|c| match c {
                Column::Function => (c, function),
                Column::Args => (c, width.saturating_sub(used)),
                c => (c, c.width()),
            })
            .collect()
    }

    /// The table of rows in `area`, with the selected row highlighted when
    /// `select`.
    fn render_table(&mut self, area: Rect, buf: &mut Buffer, select: bool) {
        let visible = self.visible();
        let columns = self.columns(usize::from(area.width), &visible);
        let sorted = self.sort.column();
        let header = columns.iter().map(|&(c, w)| {
            // The sort column is marked with `*`.
            let mut title = c.title().to_string();
            if c == sorted {
                title.push('*');
            }
            let title = cut(&title, w);
            let line = match c {
                Column::Function | Column::Args => Line::from(title),
                _ => Line::from(title).right_aligned(),
            };
            let style = match c == sorted {
                true => Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
                false => Style::new(),
            };
            Cell::from(line).style(style)
        });
        let rows: Vec<TableRow<'static>> = visible
            .iter()
            .map(|((probe, symbol), r)| {
                let cells = columns.iter().map(|&(c, w)| {
                    let text = match c {
                        Column::Function => return Cell::from(cut(&name(probe, symbol), w)),
                        Column::Args => return Cell::from(cut(&r.last_args, w)),
                        Column::Calls => r.calls.to_string(),
                        Column::Rate => format!("{:.0}", r.rate),
                        Column::P50 => r.time(r.durations.quantile(0.5)),
                        Column::P99 => r.time(r.durations.quantile(0.99)),
                        Column::Max => r.time((r.durations.total > 0).then(|| r.durations.max())),
                        Column::Errors => r.errors.to_string(),
                        Column::Missed => r.missed.to_string(),
                    };
                    Cell::from(Line::from(text).right_aligned())
                });
                TableRow::new(cells)
            })
            .collect();
        let at = self.selection(&visible);
        if select {
            self.selected = at.map(|i| visible[i].0.clone());
        }
        self.page = usize::from(area.height.saturating_sub(1));
        let widths = columns.iter().map(|&(_, w)| Constraint::Length(w as u16));
        let table = Table::new(rows, widths)
            .header(TableRow::new(header).style(Style::new().add_modifier(Modifier::REVERSED)))
            .column_spacing(1)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        match select {
            true => {
                self.table.select(at);
                StatefulWidget::render(table, area, buf, &mut self.table);
            }
            // The record: every row from the first.
            false => StatefulWidget::render(table, area, buf, &mut TableState::default()),
        }
    }

    /// One row's detail: its numbers, its histogram, its last calls.
    fn render_detail(&self, key: &(String, String), area: Rect, buf: &mut Buffer) {
        let Some(r) = self.rows.get(key) else {
            return;
        };
        let mut lines = vec![
            Line::from(vec![
                Span::styled(
                    name(&key.0, &key.1),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(
                    "  calls {}  p50 {}  p99 {}  max {}  errors {}  missed {}",
                    r.calls,
                    r.time(r.durations.quantile(0.5)),
                    r.time(r.durations.quantile(0.99)),
                    r.time((r.durations.total > 0).then(|| r.durations.max())),
                    r.errors,
                    r.missed
                )),
            ]),
            Line::default(),
        ];
        if r.hits_only {
            lines.push(Line::from("hits with no return watched: no durations"));
        } else {
            lines.push(Line::from("durations in nanoseconds:"));
            lines.extend(r.log2.render().lines().map(|l| Line::from(l.to_string())));
        }
        lines.push(Line::default());
        lines.push(Line::from(format!("last {} calls:", r.recent.len())));
        for call in &r.recent {
            let text = match &call.ret {
                Some((value, ns)) => {
                    format!("[{}] {} = {value}  {}", call.tid, call.call, duration(*ns))
                }
                None => format!("[{}] {}", call.tid, call.call),
            };
            lines.push(Line::from(text));
        }
        Paragraph::new(lines).render(area, buf);
    }

    /// The whole screen in `area`.
    fn render(&mut self, area: Rect, buf: &mut Buffer) {
        let line = |y: u16| Rect::new(area.x, area.y + y, area.width, 1).intersection(area);
        let body = Rect::new(
            area.x,
            area.y + 2,
            area.width,
            area.height.saturating_sub(2),
        )
        .intersection(area);
        Line::from(self.header())
            .style(Style::new().add_modifier(Modifier::BOLD))
            .render(line(0), buf);
        // While rtrace waits for the program it launched, the terminal is in
        // cooked mode and no key is read: Ctrl-C alone does something.
        let waiting = self.waiting().map(|_| {
            let pid = self.pid.map_or("-".to_string(), |p| p.to_string());
            Line::from(format!(
                "keys: none while rtrace waits; Ctrl-C: leave pid {pid} running and quit"
            ))
        });
        match self.view.clone() {
            View::Table => {
                let second = if self.typing {
                    Line::from(vec![
                        Span::raw(format!("filter: {}", self.filter)),
                        Span::styled(" ", Style::new().add_modifier(Modifier::REVERSED)),
                        Span::raw("   (Enter keeps it, Esc clears it)"),
                    ])
                } else if !self.filter.is_empty() {
                    Line::from(format!(
                        "filter: {}   (/ edits it, Esc clears it)",
                        self.filter
                    ))
                } else {
                    Line::from("keys: c r 5 9 m e n sort, p pause, / filter, Enter details, ? help, q quit")
                };
                waiting.unwrap_or(second).render(line(1), buf);
                self.render_table(body, buf, true);
            }
            View::Detail(key) => {
                waiting
                    .unwrap_or(Line::from("Esc or q: back to the table"))
                    .render(line(1), buf);
                self.render_detail(&key, body, buf);
            }
            View::Help => {
                waiting
                    .unwrap_or(Line::from("Esc or q: back to the table"))
                    .render(line(1), buf);
                let mut lines = vec![Line::from("keys:")];
                lines.extend(
                    HELP.iter()
                        .map(|(k, what)| Line::from(format!("  {k:<20}{what}"))),
                );
                Paragraph::new(lines).render(body, buf);
            }
        }
    }

    /// The table as text, `width` columns wide and `height` lines at most,
    /// without the selection: the record left on the terminal at the end.
    fn frame(&mut self, width: u16, height: u16) -> Vec<String> {
        let height = height.min(u16::try_from(self.visible().len() + 3).unwrap_or(u16::MAX));
        let area = Rect::new(0, 0, width, height);
        let mut buf = Buffer::empty(area);
        Line::from(self.header()).render(Rect::new(0, 0, width, 1).intersection(area), &mut buf);
        let body = Rect::new(0, 2, width, height.saturating_sub(2)).intersection(area);
        self.render_table(body, &mut buf, false);
        text(&buf)
    }

    fn draw(&mut self, full: bool) -> Result<()> {
        self.dirty = false;
        let Some(mut t) = self.terminal.take() else {
            return Ok(());
        };
        // What the program wrote on the terminal is drawn over once a frame:
        // ratatui redraws only what changed in its own picture of it, so the
        // screen is cleared and both its pictures forgotten, in the same
        // write as the frame. (Not `Terminal::clear`: it asks the terminal
        // where the cursor is, and the answer would come in with the keys.)
        let r = match full {
            true => {
                t.swap_buffers();
                t.swap_buffers();
                crossterm::queue!(t.backend_mut(), terminal::Clear(terminal::ClearType::All))
            }
            false => Ok(()),
        }
        .and_then(|()| t.draw(|f| self.render(f.area(), f.buffer_mut())).map(drop));
        self.terminal = Some(t);
        r.map_err(Error::Output)
    }

    /// Updates the rates, once per frame.
    fn tick(&mut self) {
        let dt = self.last_frame.elapsed().as_secs_f64().max(1e-3);
        for r in self.rows.values_mut() {
            r.rate = (r.calls - r.calls_then) as f64 / dt;
            r.calls_then = r.calls;
        }
        self.last_frame = Instant::now();
    }
}

/// A row's name: `function [probe]`.
fn name(probe: &str, symbol: &str) -> String {
    format!("{symbol} [{probe}]")
}

/// A buffer's lines, without their trailing blanks. A character two cells
/// wide fills its cell and leaves the next one blank, a placeholder that is
/// skipped (as ratatui's `Buffer::diff` skips it when it draws).
fn text(buf: &Buffer) -> Vec<String> {
    let area = buf.area;
    (area.top()..area.bottom())
        .map(|y| {
            let mut line = String::new();
            let mut skip = 0;
            for x in area.left()..area.right() {
                let symbol = buf[(x, y)].symbol();
                if skip == 0 {
                    line.push_str(symbol);
                }
                skip = skip.max(symbol.width()).saturating_sub(1);
            }
            line.trim_end().to_string()
        })
        .collect()
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
        let tid = hit.tid().as_raw();
        let row = self.row(&site.probe, &site.symbol);
        row.last_args = args.clone();
        if returns {
            hit.set_data(Entry { known, args });
        } else {
            row.hits_only = true;
            row.calls += 1;
            row.remember(Call {
                tid,
                call: format!("{}({args})", site.symbol),
                ret: None,
            });
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
        let tid = ret.tid().as_raw();
        let site = ret.site();
        // (A return whose entry this view did not see, in a child traced
        // with -f, has no arguments to show.)
        let args = entry.map_or_else(|| "?".to_string(), |e| e.args);
        let call = format!("{}({args})", site.symbol);
        let row = self.row(&site.probe, &site.symbol);
        row.calls += 1;
        row.errors += u64::from(negative);
        row.durations.add(ns);
        row.log2.add(i64::try_from(ns).unwrap_or(i64::MAX));
        row.remember(Call {
            tid,
            call,
            ret: Some((value.text, ns)),
        });
        Ok(())
    }

    fn on_event(&mut self, event: &Event, _time: Duration) -> Result<()> {
        match event {
            Event::Attached { pid, .. } => {
                self.pid = Some(*pid);
                self.start_screen()?;
                self.draw(true)?;
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
            Event::Detached { .. } => {
                // In launch mode the wait for the program follows: the
                // header says so until it ends.
                self.detached = true;
                self.dirty = true;
            }
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
        if self.terminal.is_none() {
            return Ok(());
        }
        for k in keys(&crate::sys::tty::pending_keys()) {
            self.key(k);
        }
        if self.waiting().is_some() && !self.cooked {
            // rtrace has detached and is about to wait for the program (this
            // is the engine's last call before it blocks), reading no keys:
            // the terminal goes back to cooked mode, the picture staying, so
            // that a Ctrl-C is a SIGINT again and ends the wait as it does
            // without the live view, the program running on. (Not at `q`: a
            // SIGINT before the engine acts on the detach would count as the
            // one asking for it, not as a second.)
            let _ = terminal::disable_raw_mode();
            self.cooked = true;
        }
        if self.last_frame.elapsed() >= FRAME {
            self.tick();
            if !self.paused {
                return self.draw(true);
            }
        }
        if self.dirty {
            // Show what a key did (a new order, a view) at once.
            self.draw(false)?;
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
        // (A terminal whose size cannot be read gets RECORD_WIDTH columns:
        // the table is rendered into a buffer of its width.)
        let width = match (self.size, &self.terminal) {
            (Some((w, _)), _) => w,
            (None, Some(t)) => t.size().map_or(RECORD_WIDTH, |s| s.width),
            (None, None) => terminal::size().map_or(RECORD_WIDTH, |(w, _)| w),
        };
        self.stop_screen();
        if self.pid.is_none() {
            // Tracing never began: nothing to show.
            return Ok(());
        }
        // The last frame, on the main screen, for the record: as wide as the
        // terminal, every row.
        let lines = self.frame(width, u16::MAX);
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

    /// The words of the line of `name` after it.
    fn fields(lines: &[String], name: &str) -> Vec<String> {
        let l = lines.iter().find(|l| l.starts_with(name)).unwrap();
        l[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn position(lines: &[String], name: &str) -> usize {
        lines.iter().position(|l| l.starts_with(name)).unwrap()
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
        assert!(
            position(&lines, "work [work]") < position(&lines, "fail [fail]"),
            "by calls: {lines:#?}"
        );
        let head: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            head,
            [
                "function", "[probe]", "calls*", "calls/s", "p50", "p99", "max", "errors",
                "missed", "last", "args"
            ],
            "every column, the sort column marked"
        );
        let work_row = fields(&lines, "work [work]");
        assert_eq!(work_row[0], "5", "{lines:#?}");
        assert_eq!(
            (work_row[5].as_str(), work_row[6].as_str()),
            ("0", "1"),
            "errors, missed"
        );
        let fail_row = fields(&lines, "fail [fail]");
        assert_eq!(
            (fail_row[0].as_str(), fail_row[5].as_str()),
            ("2", "2"),
            "calls, errors: {lines:#?}"
        );
        assert_eq!(fail_row[4], "2.00ms", "max duration");
        assert_eq!(cut("abcdef", 4), "abc…");
        tui.key(Key::Char('e'));
        let lines = tui.frame(200, 20);
        assert!(
            position(&lines, "fail [fail]") < position(&lines, "work [work]"),
            "by errors"
        );
        assert!(lines[2].contains(" errors* "), "{lines:#?}");
        // Narrow terminals drop columns; short ones drop rows.
        assert!(tui.frame(30, 20).iter().all(|l| l.width() <= 30));
        assert_eq!(tui.frame(200, 4).len(), 4);
        tui.key(Key::Char('p'));
        assert!(tui.frame(200, 20)[0].starts_with("rtrace [paused]  pid "));
    }

    #[test]
    fn the_function_column_takes_the_width_and_columns_drop_in_order() {
        let mut tui = Tui::with_output(Box::new(SharedBuf::default()), 64, Some((160, 20)));
        let t = Tracee::new();
        let long = function("a_function_whose_name_is_longer_than_forty");
        let d = t.enter(&mut tui, &long, 7, 0, [1, 2, 0, 0, 0, 0]).unwrap();
        t.leave(&mut tui, &long, 7, 0, 10, 0, d).unwrap();
        let whole = name(&long.probe, &long.symbol);
        let lines = tui.frame(160, 10);
        assert!(
            lines[3].starts_with(&format!("{whole} ")),
            "not cut at 160 columns: {lines:#?}"
        );
        assert!(
            lines[2].ends_with("missed"),
            "the last arguments go first: {lines:#?}"
        );
        let lines = tui.frame(180, 10);
        assert!(lines[2].ends_with("last args"), "{lines:#?}");
        let mut titles = |width| {
            let lines = tui.frame(width, 10);
            assert!(lines.iter().all(|l| l.width() <= usize::from(width)));
            lines[2]
                .replace("function [probe]", "function")
                .replace("last args", "args")
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let all = [
            "function", "calls*", "calls/s", "p50", "p99", "max", "errors", "missed", "args",
        ];
        let without = |n: usize| -> Vec<String> {
            let dropped = &["args", "missed", "errors", "max", "p50"][..n];
            all.iter()
                .filter(|c| !dropped.contains(c))
                .map(|c| c.to_string())
                .collect()
        };
        assert_eq!(titles(180), without(0));
        assert_eq!(titles(120), without(1));
        assert_eq!(titles(90), without(1));
        assert_eq!(titles(85), without(2));
        assert_eq!(titles(80), without(3), "at 80 columns");
        assert_eq!(titles(70), without(4));
        assert_eq!(titles(60), without(5));
        assert_eq!(
            titles(40)[2..],
            without(5)[1..],
            "the key columns stay (function …)"
        );
        // The function column is cut to what is left, with a mark.
        let lines = tui.frame(80, 10);
        assert!(lines[3].starts_with(&cut(&whole, 30)), "{lines:#?}");
    }

    #[test]
    fn wide_and_combining_characters_are_measured_in_cells() {
        let mut tui = Tui::with_output(Box::new(SharedBuf::default()), 64, Some((160, 20)));
        let t = Tracee::new();
        // 名前空間 takes 8 cells in 4 characters; é is e and a combining
        // accent (1 cell, 2 characters); 🦀 takes 2 cells.
        let wide = function("名前空間::とても長い名前の関数");
        let mixed = function("cafe\u{301}_🦀_work");
        for f in [&wide, &mixed] {
            let d = t.enter(&mut tui, f, 7, 0, [1, 0, 0, 0, 0, 0]).unwrap();
            t.leave(&mut tui, f, 7, 0, 10, 0, d).unwrap();
        }
        let wide_name = name(&wide.probe, &wide.symbol);
        let mixed_name = name(&mixed.probe, &mixed.symbol);
        assert_eq!(
            (wide_name.width(), mixed_name.width()),
            (2 * 30 + 3, 2 * 12 + 3)
        );
        for width in [1000u16, 200, 100, 80, 60, 45, 41, 40] {
            let lines = tui.frame(width, 10);
            for l in &lines {
                assert!(l.width() <= usize::from(width), "{width}: {l:?}");
                assert!(
                    !l.contains("名 前"),
                    "a wide character's placeholder copied: {l:?}"
                );
            }
            let w = tui.columns(usize::from(width), &tui.visible())[0].1;
            for whole in [&wide_name, &mixed_name] {
                let shown = cut(whole, w);
                assert!(shown.width() <= w, "{width}: {shown:?} in {w}");
                assert!(
                    lines.iter().any(|l| l.starts_with(&shown)),
                    "{width}: {shown:?} in {lines:#?}"
                );
                if whole.width() > w {
                    assert!(shown.ends_with('…'), "{width}: {shown:?}");
                    assert!(shown.width() >= w - 1, "{width}: cut short: {shown:?}");
                }
            }
        }
        // Wide enough, the names are whole.
        let lines = tui.frame(1000, 10);
        for whole in [&wide_name, &mixed_name] {
            assert!(
                lines.iter().any(|l| l.starts_with(&format!("{whole} "))),
                "{whole} whole at 1000 columns: {lines:#?}"
            );
        }
        assert_eq!(cut("名前空間", 8), "名前空間");
        assert_eq!(cut("名前空間", 7), "名前空…");
        assert_eq!(cut("名前空間", 6), "名前…");
        assert_eq!(cut("名前空間", 1), "…");
        assert_eq!(cut("名前空間", 0), "");
        assert_eq!(cut("cafe\u{301}s", 5), "cafe\u{301}s");
        assert_eq!(cut("cafe\u{301}s", 4), "caf…");
    }

    #[test]
    fn a_tiny_terminal_keeps_a_few_cells_of_name() {
        let mut tui = Tui::with_output(Box::new(SharedBuf::default()), 64, Some((20, 5)));
        let t = Tracee::new();
        let f = function("a_function_with_a_long_name");
        let d = t.enter(&mut tui, &f, 7, 0, [1, 0, 0, 0, 0, 0]).unwrap();
        t.leave(&mut tui, &f, 7, 0, 10, 0, d).unwrap();
        let whole = name(&f.probe, &f.symbol);
        for (width, kept) in [
            (40u16, &["function", "calls*", "calls/s", "p99"][..]),
            (38, &["function", "calls*", "calls/s", "p99"]),
            (37, &["function", "calls*", "p99"]),
            (20, &["function", "calls*"]),
            (18, &["function", "calls*"]),
            (17, &["function"]),
            (5, &[]),
        ] {
            let lines = tui.frame(width, 5);
            assert!(lines.iter().all(|l| l.width() <= usize::from(width)));
            let columns = tui.columns(usize::from(width), &tui.visible());
            let w = columns[0].1;
            assert!(
                w >= NAME_MIN.min(usize::from(width)),
                "{width}: {columns:?}"
            );
            let titles: Vec<&str> = lines[2]
                .split_whitespace()
                .filter(|t| !t.starts_with('['))
                .collect();
            if !kept.is_empty() {
                // The function's title is cut with the name.
                assert!(titles[0].starts_with("functi"), "at {width}: {lines:#?}");
                let rest: Vec<&str> = titles[1..].iter().copied().filter(|&t| t != "…").collect();
                assert_eq!(rest, kept[1..], "at {width}: {lines:#?}");
            }
            assert!(
                lines[3].starts_with(&cut(&whole, w)) && cut(&whole, w).width() >= NAME_MIN.min(w),
                "at {width}: {lines:#?}"
            );
        }
    }

    #[test]
    fn keys_filter_select_and_open_a_row() {
        assert_eq!(
            keys(b"q\x1b[A\x1b[B\x1bOA\x1b[5~\x1b[6~\x1b[H\x1b[F\r\x7f\x03\x1b"),
            [
                Key::Char('q'),
                Key::Up,
                Key::Down,
                Key::Up,
                Key::PageUp,
                Key::PageDown,
                Key::Home,
                Key::End,
                Key::Enter,
                Key::Backspace,
                Key::Interrupt,
                Key::Esc
            ]
        );
        assert_eq!(keys("é".as_bytes()), [Key::Char('é')]);
        let mut tui = Tui::with_output(Box::new(SharedBuf::default()), 64, Some((100, 30)));
        let t = Tracee::new();
        let (work, nap) = (function("work"), function("nap"));
        for i in 0..12u64 {
            let site = if i < 3 { &nap } else { &work };
            let d = t.enter(&mut tui, site, 7, 0, [i, 0, 0, 0, 0, 0]).unwrap();
            t.leave(&mut tui, site, 7, 0, 1000 * (i + 1), i, d).unwrap();
        }
        let screen = |tui: &mut Tui| {
            let mut buf = Buffer::empty(Rect::new(0, 0, 100, 30));
            tui.render(buf.area, &mut buf);
            text(&buf)
        };
        for k in keys(b"/NA") {
            tui.key(k);
        }
        let lines = screen(&mut tui);
        assert!(
            lines[1].starts_with("filter: NA    (Enter keeps it"),
            "{lines:#?}"
        );
        assert!(lines.iter().any(|l| l.starts_with("nap [nap]")));
        assert!(
            !lines.iter().any(|l| l.starts_with("work [work]")),
            "filtered out"
        );
        tui.key(Key::Esc);
        let lines = screen(&mut tui);
        assert!(
            lines.iter().any(|l| l.starts_with("work [work]")),
            "Esc clears"
        );
        // Selection: the first row (work, by calls), then down to nap.
        tui.key(Key::Down);
        tui.key(Key::Enter);
        let lines = screen(&mut tui);
        assert!(lines[2].starts_with("nap [nap]  calls 3"), "{lines:#?}");
        // 1, 2 and 3 ms: the buckets as --hist draws them.
        let hist: Vec<&str> = lines
            .iter()
            .filter(|l| l.ends_with('|'))
            .map(|l| &l[..26])
            .collect();
        assert_eq!(
            hist,
            [
                "[512K, 1M)             1 |",
                "[1M, 2M)               1 |",
                "[2M, 4M)               1 |"
            ],
            "{lines:#?}"
        );
        let at = position(&lines, "last 3 calls:");
        assert_eq!(
            lines[at + 1..at + 4],
            [
                "[7] nap(0x0, 0x0, 0x0, 0x0, 0x0, 0x0) = 0  1.00ms",
                "[7] nap(0x1, 0x0, 0x0, 0x0, 0x0, 0x0) = 1  2.00ms",
                "[7] nap(0x2, 0x0, 0x0, 0x0, 0x0, 0x0) = 2  3.00ms"
            ],
            "{lines:#?}"
        );
        tui.key(Key::Char('q'));
        tui.key(Key::Char('?'));
        let lines = screen(&mut tui);
        assert_eq!(lines[1], "Esc or q: back to the table");
        assert_eq!(lines[2], "keys:");
        assert!(
            lines[3].starts_with("  c r 5 9 m e n       sort by calls"),
            "{lines:#?}"
        );
        tui.key(Key::Esc);
        assert_eq!(tui.view, View::Table);
        assert!(!tui.quitting, "q left a view, it did not quit");
    }
}
