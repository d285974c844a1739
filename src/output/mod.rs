//! The command-line tool's printers. They are ordinary [`Handler`]s.
//!
//! One [`Printer`] is attached as the handler of every probe and as a lifecycle
//! listener; it writes text (strace/ltrace style) or JSON Lines, and the `-c`
//! summary at [`Handler::on_finish`]. Files:
//!
//! - `render`: arguments and return values as strings (shared by both formats);
//! - `cproto`: the user's prototypes (`--proto`, `--proto-file`), C
//!   declarations parsed into the signatures `render` renders;
//! - `text`: the text format, including the held entry that becomes one
//!   `work(…) = 83 <0.000011>` line when nothing else comes in between;
//! - `json`: the JSON Lines format;
//! - `summary`: the per-probe statistics and the text table;
//! - `timeline`: the `--perfetto` file, a [`Timeline`] handler of its own;
//! - `progress`: the [`ProgressLine`] shown on a terminal while probes are
//!   resolved and armed (fed by `Tracer::on_progress`, not a handler).
//! - `folded`: [`StackCounter`], the stacks of every hit counted for
//!   `--folded` and `--flamegraph`, a handler of its own.
//!
//! Output is buffered; it is flushed by [`Printer::flush`] (the engine calls it
//! before it blocks waiting for the tracee, so events show up live) and at the
//! end. Every write error, a closed pipe included, comes back as
//! [`Error::Output`] so that the engine detaches cleanly; nothing here panics on
//! what the tracee passes.

mod cproto;
mod folded;
mod hist;
mod json;
mod progress;
pub(crate) mod render;
mod summary;
mod text;
pub(crate) mod timeline;
mod tui;

pub use cproto::Prototypes;
pub use folded::StackCounter;
pub(crate) use hist::{LinearHist, Log2Hist};
pub use progress::{ProgressLine, PROGRESS_DELAY};
pub use render::DEFAULT_STRING_LIMIT;
pub use summary::SummaryOrder;
pub use timeline::Timeline;
pub use tui::Tui;

/// Why a probe whose stacks are shown (or recorded) is an int3.
pub(crate) const STACK_WALKED: &str = "--stack walks the stack of the stopped thread";

use std::io::{self, BufWriter, Write};
use std::rc::Rc;
use std::time::Duration;

use crate::addr::{Pid, Tid};
use crate::error::{Error, Result};
use crate::handler::{Capture, Event, Fast, Handler, Hit, ProbeKind, Return, Site};
use crate::symbols::Module;
use crate::unwind::Stack;
use render::{Args, Known, Renderer, RetVal};

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One line per event, strace/ltrace style.
    Text,
    /// One JSON object per line (`--json`).
    Json,
}

/// The wall clock on text lines (`-t`, `-tt`, `-ttt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WallClock {
    /// `-t`: the local time of day, `12:34:56`.
    Seconds,
    /// `-tt`: with microseconds, `12:34:56.123456`.
    Micros,
    /// `-ttt`: seconds since the Unix epoch, `1700000000.123456`.
    Epoch,
}

/// The time stamps of text lines, as strace writes them after the pid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timestamps {
    /// The wall clock at the event (`-t`, `-tt`, `-ttt`).
    pub clock: Option<WallClock>,
    /// `-r`: the time since the previous line's event, `     0.000123`.
    pub relative: bool,
}

/// How a [`Printer`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterOptions {
    /// Text or JSON Lines.
    pub format: Format,
    /// ANSI colours in text output (the caller resolves `--color auto`).
    pub color: bool,
    /// `-c`: gather per-probe statistics and print them at the end, and no
    /// call: in text mode the table and the `+++` lines, as `strace -c` does;
    /// in JSON mode the lifecycle events and one `summary` event per probe and
    /// symbol (hits, without time, have no duration fields).
    pub summary: bool,
    /// `--hist` (with `summary`): a log2 histogram of each probe's call
    /// durations, in nanoseconds, under the text table or in each JSON
    /// `summary` event (`hist`: buckets of `low`, `high`, `count`).
    pub hist: bool,
    /// `-S` (with `summary`): how the table's rows (and the JSON `summary`
    /// events) are ordered.
    pub order: SummaryOrder,
    /// How many bytes of a C string are shown before `...`
    /// ([`DEFAULT_STRING_LIMIT`] unless `--string-limit` says otherwise).
    pub string_limit: usize,
    /// How long written events may stay buffered ([`Handler::idle_interval`]):
    /// `None` to flush whenever the tracer waits (output to a terminal, in step
    /// with the program's), e.g. 10 ms for a file or a pipe.
    pub flush_interval: Option<std::time::Duration>,
    /// Time stamps on text lines (`-t`, `-tt`, `-ttt`, `-r`); JSON events
    /// carry `time_ns`, and the attach event `realtime_ns`.
    pub timestamps: Timestamps,
    /// `--tree` (text): each thread's calls nested, as uftrace's `replay`
    /// and ftrace's function_graph show them: `work(x=1) {`, the calls it
    /// made indented by two spaces, `} = 3 <0.000010>`; a call that made
    /// none on one line.
    pub tree: bool,
    /// `--stack`: show the user stack of each entry and instruction hit, at
    /// most this many frames (text: one indented line per frame under the
    /// call; JSON: a `stack` array).
    pub stack_depth: Option<usize>,
    /// The user's prototypes (`--proto`, `--proto-file`): a function named
    /// in one is rendered by it, whatever its debug info says.
    pub prototypes: Prototypes,
}

/// Where a printer writes: the buffered event stream, and stderr for the
/// status lines (`rtrace: attached to …`) that go there in text mode.
pub(crate) struct Out {
    events: BufWriter<Box<dyn Write>>,
    diag: Box<dyn Write>,
}

impl Out {
    fn new(events: Box<dyn Write>, diag: Box<dyn Write>) -> Out {
        Out {
            events: BufWriter::new(events),
            diag,
        }
    }

    /// Appends `s` to the event stream.
    pub(crate) fn write(&mut self, s: &str) -> Result<()> {
        self.write_bytes(s.as_bytes())
    }

    /// Writes part of an event, already encoded.
    pub(crate) fn write_bytes(&mut self, b: &[u8]) -> Result<()> {
        self.events.write_all(b).map_err(Error::Output)
    }

    /// Writes the buffered events out.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.events.flush().map_err(Error::Output)
    }

    /// Writes one status line to stderr. The event stream is flushed first:
    /// it is stderr too unless `-o` was given, and the lines must stay in order.
    pub(crate) fn diag(&mut self, line: &str) -> Result<()> {
        self.flush()?;
        writeln!(self.diag, "{line}").map_err(Error::Output)?;
        self.diag.flush().map_err(Error::Output)
    }
}

/// Whether `site` is in glibc's libc, whose functions that return -1 set
/// errno.
fn in_libc(site: &Site) -> bool {
    site.module
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libc.so") || n.starts_with("libc-"))
}

/// One probe hit, as the printer saw it: a number that its return (if any)
/// carries back, and the rendered arguments (none for an instruction probe).
pub(crate) struct Call {
    pub(crate) id: u64,
    pub(crate) args: Args,
    /// The user stack at the hit, with `--stack`.
    pub(crate) stack: Option<Rc<Stack>>,
    /// `FILE:LINE` of an instruction probe's address, when its module has a
    /// line table (as gdb says where a breakpoint stopped).
    pub(crate) source: Option<String>,
    /// The argument the call fills, shown at its return
    /// ([`RetVal::filled`](render::RetVal)).
    pub(crate) fill: Option<usize>,
}

/// `FILE:LINE` of the address `hit` stopped at, from its module's line table.
fn source_line(hit: &Hit<'_>) -> Option<String> {
    let m = hit.module()?;
    // The row covering the address: an offset or address probe is not
    // always where a line begins.
    let (file, line) = m.elf.line_at(m.to_link(hit.site().address))?;
    Some(format!("{}:{line}", file.display()))
}

/// What a function entry leaves for its return, in the probe's data slot.
struct Pending {
    id: u64,
    known: Known,
    /// The argument the call fills (`read`'s buf), shown at the return.
    fill: Option<render::Fill>,
}

/// A value a script printed (a map entry, a global).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ScriptValue {
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Anything else, as text.
    Text(String),
}

impl std::fmt::Display for ScriptValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptValue::Int(i) => write!(f, "{i}"),
            ScriptValue::Float(x) => write!(f, "{x}"),
            ScriptValue::Bool(b) => write!(f, "{b}"),
            ScriptValue::Text(t) => f.write_str(t),
        }
    }
}

/// A script's histogram: `hist()` (powers of two) or `lhist()` (linear).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ScriptHist {
    /// `hist(x)`.
    Log2(Box<Log2Hist>),
    /// `lhist(x, min, max, step)`.
    Linear(LinearHist),
}

impl ScriptHist {
    /// The buckets, from the first that counted something to the last.
    pub(crate) fn buckets(&self) -> Vec<hist::Bucket> {
        match self {
            ScriptHist::Log2(h) => h.buckets(),
            ScriptHist::Linear(h) => h.buckets(),
        }
    }

    /// Drawn as bpftrace draws it.
    pub(crate) fn render(&self) -> String {
        match self {
            ScriptHist::Log2(h) => h.render(),
            ScriptHist::Linear(h) => h.render(),
        }
    }

    /// Values counted in all.
    pub(crate) fn total(&self) -> u64 {
        match self {
            ScriptHist::Log2(h) => h.total(),
            ScriptHist::Linear(h) => h.total(),
        }
    }
}

/// What a script writes to the trace output (`crate::script`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ScriptItem {
    /// A line from `print(…)`; `pid` and `tid` are the hit's (None in BEGIN
    /// and END).
    Print {
        /// The process of the hit.
        pid: Option<Pid>,
        /// The thread of the hit.
        tid: Option<Tid>,
        /// The line.
        text: String,
    },
    /// A script error reported while tracing goes on.
    Warning(String),
    /// A map (at the end, or `print(@m)`): `@count[key]: value` lines, or
    /// `@n: value` for the entry of no key, then an empty line.
    Map {
        /// The map, as the script names it (`@count`; `count` for a map
        /// without its `@`).
        name: String,
        /// Keys (None: the entry of no key) and values, in print order.
        entries: Vec<(Option<ScriptValue>, ScriptValue)>,
    },
    /// A global that holds one value at the end: `n: 12`.
    Global {
        /// The variable.
        name: String,
        /// Its value.
        value: ScriptValue,
    },
    /// A histogram (at the end, or `print(@h)`): `@h[key]:` and its
    /// buckets.
    Hist {
        /// Its name: the map's (`@h`), or the block's or the one given to
        /// the older `hist(x)` and `hist("name", x)`.
        name: String,
        /// The map's key (None: the entry of no key, or no map).
        key: Option<ScriptValue>,
        /// Its counts.
        hist: Box<ScriptHist>,
    },
}

/// What differs between the formats. The [`Printer`] does the bookkeeping they
/// share (statistics, rendering, finishing once) and hands each event to one
/// of these.
trait Emitter {
    /// A probe was hit (function entry or instruction).
    fn entry(&mut self, out: &mut Out, hit: &mut Hit<'_>, call: &Call) -> Result<()>;
    /// A probed function returned; `call` is the id its entry was given (None
    /// when the entry was not seen).
    fn ret(
        &mut self,
        out: &mut Out,
        ret: &mut Return<'_>,
        call: Option<u64>,
        value: &RetVal,
    ) -> Result<()>;
    /// A lifecycle event.
    fn event(&mut self, out: &mut Out, event: &Event, time: Duration) -> Result<()>;
    /// The output is about to be flushed for the user to see while tracing goes on.
    fn before_flush(&mut self, out: &mut Out) -> Result<()>;
    /// How soon an entry held for its return is to be shown by a flush,
    /// if one waits (the printer then asks to be told it is idle by then).
    fn held_shown_in(&self) -> Option<Duration> {
        None
    }
    /// Makes the entry held for its return look held `by` longer.
    #[cfg(test)]
    fn age_held(&mut self, by: Duration) {
        let _ = by;
    }
    /// Tracing is over; `rows` is the summary when one was asked for.
    fn finish(&mut self, out: &mut Out, rows: Option<&[summary::Row]>) -> Result<()>;
    /// The next `ret` is of a call skipped by fault injection.
    fn injected(&mut self) {}
    /// Something a script printed.
    fn script(&mut self, out: &mut Out, item: &ScriptItem, time: Duration) -> Result<()>;
}

/// The command line's event printer: text or JSON Lines, with an optional
/// summary. Attach one instance (as `Rc<RefCell<Printer>>`) to every probe and
/// as a listener, and call [`Handler::on_finish`] at the end.
pub struct Printer {
    out: Out,
    emitter: Box<dyn Emitter>,
    stats: Option<summary::Stats>,
    /// See [`PrinterOptions::order`].
    order: SummaryOrder,
    finished: bool,
    renderer: Renderer,
    /// False in text mode with `-c`, where no call is printed.
    render_calls: bool,
    next_call: u64,
    /// Set by [`Printer::mark_injected`] for the next return.
    injected: Option<Option<i32>>,
    /// See [`PrinterOptions::flush_interval`].
    flush_interval: Option<std::time::Duration>,
    /// The latest event time seen.
    last: Duration,
    /// Probes already warned about a missed return.
    missed_warned: std::collections::HashSet<String>,
    /// Fast calls lost, by probe and function (with the first process that
    /// lost one): said once each, at the end, with the final count.
    lost: std::collections::BTreeMap<(String, String), (crate::Pid, u64)>,
    /// See [`PrinterOptions::stack_depth`].
    stack_depth: Option<usize>,
    /// See [`Printer::summary_once_attached`]; and whether an attach was
    /// seen.
    needs_attach: bool,
    attached: bool,
}

impl Printer {
    /// Ends with the `-c` summary (and what else ends the output) only
    /// once tracing has begun, an attach seen: a live run that fails
    /// before it says its error alone, as strace does, and no empty table.
    pub fn summary_once_attached(mut self) -> Printer {
        self.needs_attach = true;
        self
    }

    /// A printer writing events to `out`, and its status lines (text mode) to
    /// the process's stderr.
    pub fn new(out: Box<dyn Write>, opts: PrinterOptions) -> Printer {
        Printer::with_diag(out, Box::new(io::stderr()), opts)
    }

    /// Like [`Printer::new`], with the status lines going to `diag`.
    pub fn with_diag(out: Box<dyn Write>, diag: Box<dyn Write>, opts: PrinterOptions) -> Printer {
        let emitter: Box<dyn Emitter> = match opts.format {
            Format::Text => Box::new(text::TextEmitter::new(
                opts.color,
                opts.summary,
                opts.timestamps,
                opts.tree,
            )),
            Format::Json => Box::new(json::JsonEmitter::default()),
        };
        Printer {
            out: Out::new(out, diag),
            emitter,
            stats: opts.summary.then(|| summary::Stats::new(opts.hist)),
            order: opts.order,
            finished: false,
            renderer: Renderer::with_prototypes(opts.string_limit, opts.prototypes),
            render_calls: !opts.summary,
            flush_interval: opts.flush_interval,
            next_call: 0,
            injected: None,
            last: Duration::ZERO,
            missed_warned: std::collections::HashSet::new(),
            lost: Default::default(),
            stack_depth: opts.stack_depth,
            needs_attach: false,
            attached: false,
        }
    }

    /// The depth of the stacks this printer shows (`--stack`), if it shows
    /// any: a handler that prints a call later, from a `Hit` it rebuilds,
    /// walks the stack at the entry with this depth and hands it over.
    pub fn stack_depth(&self) -> Option<usize> {
        self.stack_depth
    }

    /// Writes what a script printed, in its place among the events.
    pub(crate) fn script(&mut self, item: &ScriptItem, time: Duration) -> Result<()> {
        self.last = self.last.max(time);
        self.emitter.script(&mut self.out, item, time)
    }

    /// The time of the latest event printed, for output made at the end.
    pub fn last_time(&self) -> Duration {
        self.last
    }

    /// The next return reported is of a call skipped by fault injection
    /// (`--inject`), with `errno` set to this error number if any: the text
    /// shows `= -1 ENOENT (injected)`, JSON adds `"injected":true`.
    pub fn mark_injected(&mut self, errno: Option<i32>) {
        self.injected = Some(errno);
    }

    /// Makes the entry line held for its return look held `by` longer.
    #[cfg(test)]
    pub(crate) fn age_held(&mut self, by: Duration) {
        self.emitter.age_held(by);
    }

    /// Writes out what is buffered, so the user sees events while the tracee
    /// runs. In text mode an entry that has waited a while for its return
    /// (10 ms: a return the program recorded comes within a few) is shown
    /// unterminated (`[pid 7] work(0x29, …)`), as strace shows a pending
    /// syscall; the line is completed when the return or another event comes.
    pub fn flush(&mut self) -> Result<()> {
        self.emitter.before_flush(&mut self.out)?;
        self.out.flush()
    }
}

impl Handler for Printer {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        self.last = self.last.max(hit.time());
        if let Some(stats) = &mut self.stats {
            stats.entry(hit.site());
        }
        let kind = hit.site().kind;
        let function = matches!(kind, ProbeKind::Function { .. });
        let (known, args) = if self.render_calls && function {
            let known = self.renderer.known(hit);
            let args = self.renderer.args(&known, hit);
            (known, args)
        } else {
            (Known::Raw, Args::default())
        };
        if !self.render_calls {
            // `-c`: counted above, not printed.
            return Ok(());
        }
        let id = self.next_call;
        self.next_call += 1;
        let fill = self.renderer.fill(&known, &args);
        let stack = self.stack_depth.map(|depth| hit.user_stack(depth));
        let source = match kind {
            ProbeKind::Instruction => source_line(hit),
            ProbeKind::Function { .. } => None,
        };
        self.emitter.entry(
            &mut self.out,
            hit,
            &Call {
                id,
                args,
                stack,
                source,
                fill: fill.map(|f| f.index),
            },
        )?;
        if kind == (ProbeKind::Function { returns: true }) {
            hit.set_data(Pending { id, known, fill });
        }
        Ok(())
    }

    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        self.last = self.last.max(ret.time());
        if self.stats.is_some() {
            let failed = self.renderer.failed(ret);
            if let Some(stats) = &mut self.stats {
                stats.ret(ret.site(), ret.duration(), failed);
            }
        }
        let injected = self.injected.take();
        if !self.render_calls {
            return Ok(());
        }
        let pending = ret.take_data::<Pending>();
        let mut value = self
            .renderer
            .retval(pending.as_ref().map(|p| &p.known), ret);
        // What the call filled (`read`'s buf), now that it has.
        if let Some(fill) = pending.as_ref().and_then(|p| p.fill) {
            if injected.is_none() {
                if let Some(text) = self.renderer.filled(&fill, ret, &value) {
                    value.filled = Some((fill.index, fill.name, text));
                }
            }
        }
        if let Some(errno) = injected {
            value.mark_injected(errno);
            self.emitter.injected();
        } else if value.is_failure() && in_libc(ret.site()) {
            // A libc function that failed says why in errno (the thread is
            // stopped at an int3 return: a fast return's has gone on).
            if let Some(errno) = ret.errno().filter(|&e| e > 0) {
                value.mark_errno(errno);
            }
        }
        self.emitter
            .ret(&mut self.out, ret, pending.map(|p| p.id), &value)
    }

    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        self.last = self.last.max(time);
        self.attached |= matches!(event, Event::Attached { .. });
        // A return that could not be watched (a timed call's: counted),
        // said once per probe; the summary has the count.
        let missed = match event {
            Event::Missed { probe, symbol, .. } => Some((probe, symbol, 1)),
            Event::Unwatched {
                probe,
                symbol,
                count,
                ..
            } => Some((probe, symbol, *count)),
            _ => None,
        };
        if let Some((probe, symbol, count)) = missed {
            if let Some(stats) = &mut self.stats {
                stats.missed_n(probe, symbol, count);
            }
            if !self.missed_warned.insert(probe.clone()) {
                return Ok(());
            }
        }
        if let Event::Lost {
            pid,
            probe,
            symbol,
            count,
        } = event
        {
            if let Some(stats) = &mut self.stats {
                stats.missed_n(probe, symbol, *count);
            }
            // Said at the end, once per probe and function, with the total.
            let lost = self
                .lost
                .entry((probe.clone(), symbol.clone()))
                .or_insert((*pid, 0));
            lost.1 += count;
            return Ok(());
        }
        self.emitter.event(&mut self.out, event, time)
    }

    fn on_idle(&mut self) -> Result<()> {
        self.flush()
    }

    /// Printing needs nothing but the registers and the strings the
    /// arguments point to: every site may be fast.
    fn fast(&mut self, site: &Site, module: Option<&Module>) -> Fast {
        if self.render_calls && self.stack_depth.is_some() {
            return Fast::No(STACK_WALKED.into());
        }
        if !self.render_calls {
            // The summary counts a call that failed by its value (see
            // `Renderer::failed`): the calls of a function that can fail so
            // are recorded, one by one, without a stop. Otherwise it only
            // aggregates: hits may be counted, and calls timed, in the
            // program.
            if site.kind == (ProbeKind::Function { returns: true })
                && self.renderer.may_fail(site, module)
            {
                return Fast::Yes(Capture::nothing());
            }
            return Fast::Aggregate;
        }
        if site.kind == ProbeKind::Instruction {
            return Fast::Yes(Capture::nothing());
        }
        self.renderer.capture(site, module)
    }

    /// A return recorded by the stub holds what the line (or the summary)
    /// shows of it: the value, the returned string, errno. `--stack` is
    /// walked at the entry.
    fn returns(&mut self, site: &Site, module: Option<&Module>) -> crate::handler::Returns {
        if !self.render_calls {
            // The summary counts the call, its time, and a failure by the
            // value alone.
            return crate::handler::Returns::Record {
                string: 0,
                errno: false,
            };
        }
        self.renderer.returns(site, module)
    }

    fn on_aggregate(&mut self, site: &Site, counts: &crate::handler::Aggregate) -> Result<()> {
        if let Some(stats) = &mut self.stats {
            stats.hits(site, counts.hits);
            if let Some(times) = &counts.times {
                stats.timed(site, counts.calls, times);
            }
        }
        Ok(())
    }

    fn idle_interval(&self) -> Option<std::time::Duration> {
        self.flush_interval
    }

    /// An entry line held for its return is shown on its own once it has
    /// waited a while (see `text::SHOW_HELD_AFTER`): the tracer's idle
    /// call must come then, even if nothing stops.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        self.emitter
            .held_shown_in()
            .map(|d| d.max(std::time::Duration::from_millis(1)))
    }

    fn on_finish(&mut self) -> Result<()> {
        if !self.finished {
            self.finished = true;
            for ((probe, symbol), (pid, count)) in std::mem::take(&mut self.lost) {
                let event = Event::Lost {
                    pid,
                    probe,
                    symbol,
                    count,
                };
                self.emitter.event(&mut self.out, &event, self.last)?;
            }
            let rows = self.stats.as_ref().map(|s| s.rows(self.order));
            if self.attached || !self.needs_attach {
                self.emitter.finish(&mut self.out, rows.as_deref())?;
            }
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
