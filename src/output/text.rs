//! The text format: one line per event, strace/ltrace style.
//!
//! This file owns the line layouts and the *held entry*. A function entry is
//! not printed when it happens but kept, so that when its return comes next on
//! the same thread the call reads as one line, `[pid 7] work(0x29) = 83
//! <0.000011>`. If anything else has to be printed first, the entry goes out as
//! `[pid 7] work(0x29) ...` and its return later as `[pid 7] ... work resumed =
//! 83 <0.000011>`, exactly as strace shows an interrupted syscall. The call id
//! the printer gives each entry (and hands back with its return) tells a return
//! whether it closes the held entry or an older one.
//!
//! Status lines (`rtrace: attached to …`) go to stderr, not to the event stream.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::render::{seconds, RetVal};
use super::summary::{self, Row};
use super::{Call, Emitter, Out, ScriptItem, Timestamps, WallClock};
use crate::addr::Pid;
use crate::error::Result;
use crate::handler::{Event, Hit, ProbeKind, Return};
use crate::unwind::Stack;

/// An entry waiting for its return.
/// How long an entry line waits for its return before a flush shows it
/// alone (`work(x=1)`, the rest written at the return): a call's return
/// that comes from the return stub's record arrives at the next read of
/// the ring, a few milliseconds on, and the line is then written whole,
/// not cut by the program's own output; a call that blocks (`read` on a
/// terminal) is shown as it waits.
pub(super) const SHOW_HELD_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

struct Held {
    call: u64,
    /// The thread that made it.
    tid: Pid,
    /// `[pid 7] work(0x29)`, without a newline.
    text: String,
    /// True once `text` has been written (by a flush) and only the rest of the
    /// line is owed.
    shown: bool,
    /// When it was held: a flush shows it without its return only once it
    /// has been held [`SHOW_HELD_AFTER`].
    since: std::time::Instant,
    /// The call's stack lines (`--stack`), written once its line is ended.
    frames: String,
    /// Where in `text` the argument the call fills is (`read`'s buf): what
    /// it filled replaces it there when the line is still unwritten at the
    /// return.
    fill: Option<std::ops::Range<usize>>,
}

/// The lines of `stack` under a call, strace -k / bpftrace `ustack` style:
/// `    #1 0x55d0c6a0d19e b+0x15 (/tmp/stacker) /src/stacker.c:27`, the
/// innermost frame first; `??` where no symbol covers the code, `[unknown]`
/// where no module does; a last `    ...` when the depth limit cut it.
pub(crate) fn stack_lines(stack: &Stack) -> String {
    let mut s = String::new();
    for (i, f) in stack.frames.iter().enumerate() {
        let _ = write!(s, "    #{i} {}", f.address);
        match &f.symbol {
            Some(sym) => {
                let _ = write!(s, " {sym}+{:#x}", f.offset);
            }
            None => s.push_str(" ??"),
        }
        match &f.module {
            Some(m) => {
                let _ = write!(s, " ({})", m.display());
            }
            None => s.push_str(" ([unknown])"),
        }
        if let (Some(file), Some(line)) = (&f.file, f.line) {
            let _ = write!(s, " {}:{line}", file.display());
        }
        s.push('\n');
    }
    if stack.truncated {
        s.push_str("    ...\n");
    }
    s
}

/// The text printer's state.
pub(crate) struct TextEmitter {
    color: bool,
    /// `-c`: print only the table and the `+++` lines.
    summary: bool,
    held: Option<Held>,
    /// The process we attached to; its exit line carries no pid prefix, a
    /// child's does (strace -f style).
    root: Option<Pid>,
    /// What each line's time stamp shows (`-t`, `-tt`, `-ttt`, `-r`).
    stamps: Timestamps,
    /// `--tree`: calls nested per thread, `work(x=1) {` … `} = 3`.
    tree: bool,
    /// With `tree`, each thread's calls printed open (`{`), outermost
    /// first, by call id.
    open: std::collections::HashMap<Pid, Vec<u64>>,
    /// An event time and the wall clock then (the attach event's).
    anchor: Option<(Duration, SystemTime)>,
    /// The time of the last line stamped, for `-r`.
    last: Option<Duration>,
}

/// `s` in the SGR attribute `code` (1 bold, 2 dim, 31 red, 32 green, 33
/// yellow), reset after. Written here rather than by a terminal library, which
/// leaves empty `ESC[m` pairs around the text when the environment says
/// `NO_COLOR`: the caller decides, once, whether there is colour at all.
fn sgr(code: &str, s: &str) -> String {
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// `n` and `noun`, plural but for one: "1 thread", "2 threads".
fn counted(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

impl TextEmitter {
    pub(crate) fn new(color: bool, summary: bool, stamps: Timestamps, tree: bool) -> TextEmitter {
        TextEmitter {
            color,
            summary,
            held: None,
            root: None,
            stamps,
            tree,
            open: Default::default(),
            anchor: None,
            last: None,
        }
    }

    /// The time stamps of a line of an event at `time`, each followed by a
    /// space, as strace writes them after the pid: the wall clock (`-t`
    /// `12:34:56`, `-tt` `12:34:56.123456`, `-ttt` `1700000000.123456`),
    /// then (`-r`) the time since the previous line's event, `     0.000123`.
    fn stamp(&mut self, time: Duration) -> String {
        let mut s = String::new();
        if let Some(clock) = self.stamps.clock {
            let wall = match self.anchor {
                Some((at, wall)) if time >= at => wall + (time - at),
                Some((at, wall)) => wall - (at - time),
                None => SystemTime::now(),
            };
            s.push_str(&wall_clock(wall, clock));
            s.push(' ');
        }
        if self.stamps.relative {
            let since = time.saturating_sub(self.last.unwrap_or(time));
            let _ = write!(s, "{:6}.{:06} ", since.as_secs(), since.subsec_micros());
            self.last = Some(time);
        }
        s
    }

    /// `[pid 7] `, the time stamps of an event at `time`, and (`--tree`)
    /// two spaces for each call of the thread printed open.
    fn lead(&mut self, pid: Pid, time: Duration) -> String {
        let stamp = self.stamp(time);
        format!("{} {stamp}{}", self.pid(pid), self.indent(pid))
    }

    /// Two spaces for each open call of thread `tid` (`--tree`).
    fn indent(&self, tid: Pid) -> String {
        match self.tree {
            true => "  ".repeat(self.open.get(&tid).map_or(0, Vec::len)),
            false => String::new(),
        }
    }

    fn pid(&self, pid: Pid) -> String {
        let s = format!("[pid {pid}]");
        if self.color {
            sgr("2", &s)
        } else {
            s
        }
    }

    fn name(&self, name: &str) -> String {
        if self.color {
            sgr("1", name)
        } else {
            name.to_string()
        }
    }

    fn retval(&self, v: String) -> String {
        match (self.color, v.starts_with('-')) {
            (false, _) => v,
            (true, false) => sgr("32", &v),
            (true, true) => sgr("31", &v),
        }
    }

    fn lifecycle(&self, s: String) -> String {
        if self.color {
            sgr("33", &s)
        } else {
            s
        }
    }

    /// Prints the held entry as unfinished, because something else is about to
    /// be printed.
    /// (`--tree`: it is printed open, `work(x=1) {`, and what the thread
    /// prints until its return is nested in it.)
    fn release(&mut self, out: &mut Out) -> Result<()> {
        let Some(h) = self.held.take() else {
            return Ok(());
        };
        let end = match self.tree {
            true => {
                self.open.entry(h.tid).or_default().push(h.call);
                " {\n"
            }
            false => " ...\n",
        };
        if !h.shown {
            out.write(&h.text)?;
        }
        out.write(end)?;
        out.write(&h.frames)
    }

    fn line(&mut self, out: &mut Out, line: &str) -> Result<()> {
        self.release(out)?;
        out.write(line)?;
        out.write("\n")
    }

    fn call_text(&mut self, hit: &Hit<'_>, call: &Call) -> String {
        let stamp = self.stamp(hit.time());
        let indent = self.indent(hit.tid());
        if self.color {
            return format!(
                "{} {stamp}{indent}{}({})",
                self.pid(hit.tid()),
                self.name(&hit.site().name),
                call.args.text()
            );
        }
        // Once per hit: one string, written in place.
        let symbol = &hit.site().name;
        let mut s = String::with_capacity(24 + symbol.len() + 24 * call.args.values.len());
        let _ = write!(s, "[pid {}] {stamp}{indent}{symbol}(", hit.tid());
        s.push_str(&call.args.text());
        s.push(')');
        s
    }

    fn exit_prefix(&mut self, pid: Pid, time: Duration) -> String {
        let stamp = self.stamp(time);
        match self.root {
            Some(root) if root != pid => format!("{} {stamp}", self.pid(pid)),
            _ => stamp,
        }
    }
}

impl Emitter for TextEmitter {
    fn entry(&mut self, out: &mut Out, hit: &mut Hit<'_>, call: &Call) -> Result<()> {
        if self.summary {
            return Ok(());
        }
        let frames = call.stack.as_deref().map(stack_lines).unwrap_or_default();
        match hit.site().kind {
            ProbeKind::Function { returns: true } => {
                // (Released first: under `--tree` an entry held on this
                // thread is the one this call is nested in.)
                self.release(out)?;
                let text = self.call_text(hit, call);
                // The arguments end the text, before its `)`.
                let fill = call.fill.and_then(|i| call.args.span(i)).map(|r| {
                    let args_at = text.len() - 1 - call.args.text().len();
                    r.start + args_at..r.end + args_at
                });
                self.held = Some(Held {
                    call: call.id,
                    tid: hit.tid(),
                    text,
                    shown: false,
                    since: std::time::Instant::now(),
                    frames,
                    fill,
                });
                Ok(())
            }
            ProbeKind::Function { returns: false } => {
                self.release(out)?;
                let text = self.call_text(hit, call);
                self.line(out, &text)?;
                out.write(&frames)
            }
            ProbeKind::Instruction => {
                let site = hit.site();
                let place = match (site.name.is_empty(), site.offset) {
                    (true, _) => site.address.to_string(),
                    (false, 0) => format!("{} ({})", self.name(&site.name), site.address),
                    (false, off) => {
                        format!("{}+{off:#x} ({})", self.name(&site.name), site.address)
                    }
                };
                self.release(out)?;
                let mut text = format!("{}hit {place}", self.lead(hit.tid(), hit.time()));
                if let Some(source) = &call.source {
                    text.push_str(" at ");
                    text.push_str(source);
                }
                self.line(out, &text)?;
                out.write(&frames)
            }
        }
    }

    fn ret(
        &mut self,
        out: &mut Out,
        ret: &mut Return<'_>,
        call: Option<u64>,
        value: &RetVal,
    ) -> Result<()> {
        if self.summary {
            return Ok(());
        }
        let tail = format!(
            " = {} <{}>\n",
            self.retval(value.text.clone()),
            seconds(ret.duration())
        );
        match self.held.take() {
            Some(mut h) if Some(h.call) == call => {
                match (h.shown, &value.filled) {
                    (false, filled) => {
                        if let (Some(at), Some((_, _, filled))) = (h.fill.clone(), filled) {
                            h.text.replace_range(at, filled);
                        }
                        out.write(&h.text)?;
                    }
                    // The line with the pointer is out (the call took long):
                    // what it filled is said after it, as on a resumed line.
                    (true, Some((_, name, filled))) => {
                        out.write(&format!(" ({name}={filled})"))?;
                    }
                    (true, None) => {}
                }
                out.write(&tail)?;
                out.write(&h.frames)
            }
            other => {
                self.held = other;
                self.release(out)?;
                // `--tree`: the call is closed where it was opened (the calls
                // opened after it on the thread never returned: longjmp).
                let tid = ret.tid();
                let closed = self.tree
                    && self.open.get_mut(&tid).is_some_and(|calls| {
                        match call.and_then(|c| calls.iter().rposition(|&o| o == c)) {
                            Some(at) => {
                                calls.truncate(at);
                                true
                            }
                            None => false,
                        }
                    });
                let mut head = match closed {
                    true => format!("{}}}", self.lead(tid, ret.time())),
                    false => format!(
                        "{}... {} resumed",
                        self.lead(tid, ret.time()),
                        self.name(&ret.site().name)
                    ),
                };
                // The line with the pointer is out: what it filled is said
                // here.
                if let Some((_, name, filled)) = &value.filled {
                    head.push_str(&format!(" ({name}={filled})"));
                }
                out.write(&head)?;
                out.write(&tail)
            }
        }
    }

    fn event(&mut self, out: &mut Out, event: &Event, time: Duration) -> Result<()> {
        self.release(out)?;
        match event {
            Event::Attached {
                pid,
                threads,
                probes,
                pending,
                returns,
                realtime,
            } => {
                // (With several processes attached to, the first is the
                // root: its lines go without a pid.)
                self.root.get_or_insert(*pid);
                self.anchor.get_or_insert((time, *realtime));
                let mut s = format!(
                    "rtrace: attached to pid {pid} ({}), {} armed",
                    counted(*threads, "thread"),
                    counted(*probes, "probe")
                );
                if *pending > 0 {
                    s.push_str(&format!(", {pending} pending"));
                }
                if let Some(how) = returns {
                    s.push_str(&format!(", returns: {}", how.as_str()));
                }
                out.diag(&s)
            }
            // The last line about the process: it runs on, untraced.
            Event::Detached { pid } => {
                let s = format!(
                    "{}{}",
                    self.exit_prefix(*pid, time),
                    self.lifecycle("+++ detached +++".into())
                );
                self.line(out, &s)
            }
            Event::Missed { probe, symbol, .. } | Event::Unwatched { probe, symbol, .. } => out
                .diag(&format!(
                "rtrace: warning: probe {probe}: the return of a call of {symbol} could not be \
                 watched; such calls are counted as missed in the summary (-c)"
            )),
            Event::Warning { probe, message } => {
                out.diag(&format!("rtrace: warning: probe {probe}: {message}"))
            }
            Event::ProcessWarning { message, .. } => {
                out.diag(&format!("rtrace: warning: {message}"))
            }
            // Fast is the default: a probe is said only when a site of it
            // stays an int3 breakpoint, with why.
            Event::ProbeMode { int3, .. } if int3.is_empty() => Ok(()),
            Event::ProbeMode {
                probe, fast, int3, ..
            } => out.diag(&format!(
                "rtrace: {}",
                crate::handler::probe_mode_message(probe, *fast, int3)
            )),
            Event::Lost {
                probe,
                symbol,
                count,
                ..
            } => out.diag(&format!(
                "rtrace: warning: {}",
                crate::handler::lost_message(probe, symbol, *count)
            )),
            Event::NeverArmed { probe } => out.diag(&format!(
                "rtrace: warning: probe {probe} never armed (its module was never loaded)"
            )),
            Event::Skipped { probe, reasons } => out.diag(&format!(
                "rtrace: warning: {}",
                crate::handler::skipped_message(probe, reasons)
            )),
            Event::Signal { tid, signal, .. } => {
                if self.summary {
                    return Ok(());
                }
                let s = format!(
                    "{}{}",
                    self.lead(*tid, time),
                    self.lifecycle(format!("--- {} ---", crate::handler::signal_name(*signal)))
                );
                self.line(out, &s)
            }
            Event::Fork { pid, child, kind } => {
                if self.summary {
                    return Ok(());
                }
                let s = format!(
                    "{}{}",
                    self.lead(*pid, time),
                    self.lifecycle(format!("--- {}: child {child} ---", kind.as_str()))
                );
                self.line(out, &s)
            }
            Event::Exec { pid, path } => {
                if self.summary {
                    return Ok(());
                }
                let s = format!(
                    "{}{}",
                    self.lead(*pid, time),
                    self.lifecycle(format!("--- exec {} ---", path.display()))
                );
                self.line(out, &s)
            }
            Event::Exited { pid, code } => {
                let s = format!(
                    "{}{}",
                    self.exit_prefix(*pid, time),
                    self.lifecycle(format!("+++ exited with {code} +++"))
                );
                self.line(out, &s)
            }
            Event::Killed {
                pid,
                signal,
                core_dumped,
            } => {
                let core = if *core_dumped { " (core dumped)" } else { "" };
                let s = format!(
                    "{}{}",
                    self.exit_prefix(*pid, time),
                    self.lifecycle(format!(
                        "+++ killed by {}{core} +++",
                        crate::handler::signal_name(*signal)
                    ))
                );
                self.line(out, &s)
            }
        }
    }

    fn script(&mut self, out: &mut Out, item: &ScriptItem, _time: Duration) -> Result<()> {
        match item {
            ScriptItem::Print { text, .. } => self.line(out, text),
            ScriptItem::Warning(w) => {
                self.release(out)?;
                out.diag(&format!("rtrace: warning: {w}"))
            }
            ScriptItem::Map { name, entries } => {
                self.release(out)?;
                for (key, value) in entries {
                    match key {
                        Some(key) => out.write(&format!("{name}[{key}]: {value}\n"))?,
                        None => out.write(&format!("{name}: {value}\n"))?,
                    }
                }
                out.write("\n")
            }
            ScriptItem::Global { name, value } => self.line(out, &format!("{name}: {value}\n")),
            ScriptItem::Hist { name, key, hist } => {
                self.release(out)?;
                match key {
                    Some(key) => out.write(&format!("{name}[{key}]:\n{}\n", hist.render())),
                    None => out.write(&format!("{name}:\n{}\n", hist.render())),
                }
            }
        }
    }

    fn before_flush(&mut self, out: &mut Out) -> Result<()> {
        if let Some(h) = &mut self.held {
            if !h.shown && h.since.elapsed() >= SHOW_HELD_AFTER {
                h.shown = true;
                out.write(&h.text)?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn age_held(&mut self, by: std::time::Duration) {
        if let Some(h) = &mut self.held {
            h.since -= by;
        }
    }

    fn held_shown_in(&self) -> Option<std::time::Duration> {
        let h = self.held.as_ref().filter(|h| !h.shown)?;
        Some(SHOW_HELD_AFTER.saturating_sub(h.since.elapsed()))
    }

    fn finish(&mut self, out: &mut Out, rows: Option<&[Row]>) -> Result<()> {
        self.release(out)?;
        match rows {
            Some(rows) => {
                out.write(&summary::table(rows))?;
                out.write(&summary::histograms(rows))
            }
            None => Ok(()),
        }
    }
}

/// `wall` as `clock` shows it: local time of day to the second (`-t`) or
/// the microsecond (`-tt`), or seconds since the Unix epoch (`-ttt`).
fn wall_clock(wall: SystemTime, clock: WallClock) -> String {
    let since = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let micros = since.subsec_micros();
    if clock == WallClock::Epoch {
        return format!("{}.{micros:06}", since.as_secs());
    }
    let (h, m, s) = crate::sys::time::local_time_of_day(since.as_secs()).unwrap_or_else(|| {
        let day = since.as_secs() % 86_400;
        (
            (day / 3600) as u32,
            (day / 60 % 60) as u32,
            (day % 60) as u32,
        )
    });
    match clock {
        WallClock::Seconds => format!("{h:02}:{m:02}:{s:02}"),
        _ => format!("{h:02}:{m:02}:{s:02}.{micros:06}"),
    }
}
