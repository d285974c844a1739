//! The `--perfetto FILE` timeline: every call as a slice on its thread's
//! track, in the JSON object form of Chrome's trace-event format, which
//! Perfetto's UI (ui.perfetto.dev) and `chrome://tracing` open.
//!
//! This file owns the layout of that file and the nesting of its slices. What
//! it must not do: keep the trace in memory (each event is written, through a
//! buffer, as soon as it is complete) or leave the file unterminated (the
//! array is closed by [`Handler::on_finish`], or when the timeline is dropped
//! without it, as on an error before tracing began).
//!
//! ```text
//! {"traceEvents":[
//! {"name":"process_name","ph":"M","pid":7,"tid":7,"args":{"name":"count"}},
//! {"name":"thread_name","ph":"M","pid":7,"tid":7,"args":{"name":"count"}},
//! {"name":"work","cat":"call","ph":"X","ts":1520.031,"dur":12.410,"pid":7,"tid":7,"args":{"x":"41","return":"83","retval":83}},
//! {"name":"SIGUSR1","cat":"signal","ph":"i","s":"t","ts":1600.100,"pid":7,"tid":7}
//! ],"displayTimeUnit":"ns"}
//! ```
//!
//! - **Slices** (`"ph":"X"`, category `call`): one per call of a function
//!   probe that returned, written at its return. `ts` and `dur` are
//!   microseconds since rtrace started, with three decimals (the
//!   nanoseconds, exactly), and the same as the printer's: a call is timed
//!   from the moment the thread goes on into the function. `args` holds the rendered arguments, keyed by
//!   parameter name (`arg0`… where the name is not known), then `return` (the
//!   value as the text output shows it), `retval` (the value as a number,
//!   as JSON Lines' `retval`; absent for `void`) and `injected` for a call
//!   fault injection skipped.
//! - **Instants** (`"ph":"i"`): `hit` (an offset, address or line probe;
//!   args `probe`, `address`), `entry` (a function probe's entry with
//!   `--entry-only`, args as a slice's), `signal` on the thread it was
//!   delivered to; `fork`, `vfork`, `clone` (args `child`) and `exec` (args
//!   `path`) on the process (`"s":"p"`).
//! - **Names** (`"ph":"M"`): `process_name` (the executable's file name) and
//!   `thread_name` (`/proc/PID/task/TID/comm`), each written once, before the
//!   first event of its process or thread; again after an exec. The names of
//!   the traced process and its main thread are read at the attach, a
//!   followed child's at the fork: a fast probe's records reach the
//!   timeline after they were made (an image's last ones at its exec, when
//!   `/proc` already names the new program).
//!
//! **Nesting.** The events of one thread must nest (any two slices of a track
//! are disjoint or one is inside the other) for a timeline to draw them.
//! Calls in flight are kept per thread, innermost last, as the engine keeps
//! them; a call that never returns (longjmp, an exception, the process
//! exiting, rtrace detaching) gets no slice. The engine drops such a call's
//! data (a ticket here) when it proves the frame gone, and the ticket's drop
//! takes the call off its thread's list, so that list stays as deep as the
//! stack really is. A call that returns while calls entered after it are
//! still listed ends them too, without slices: they were left without
//! returning (their tickets are dropped just after this return), or run on
//! another stack of the same thread (a coroutine) and would overlap. Only the
//! other probes of the same call (same entry, same address) stay: they
//! return at the same instant.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

use super::render::{Args, Known, Number, Renderer};
use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::error::{Error, Result};
use crate::handler::{signal_name, Capture, Event, Fast, Handler, Hit, ProbeKind, Return, Site};
use crate::symbols::Module;

/// Keys of a slice's `args` that are not parameters.
const RESERVED: [&str; 3] = ["return", "retval", "injected"];

/// How much of the file waits in memory before it is written.
const BUFFER: usize = 64 * 1024;

/// What a name is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Named {
    /// A process: its executable's file name.
    Process(Pid),
    /// A thread: its `comm`.
    Thread(Pid, Tid),
}

/// Where names come from (`/proc`, or a test's table).
type Names = Box<dyn Fn(Named) -> Option<String>>;

/// The `--perfetto` writer: an ordinary [`Handler`]. Attach it to every probe
/// (next to the printer, with [`Both`](crate::handler::Both)) and as a
/// listener (signals, forks, execs, the end).
pub struct Timeline {
    out: BufWriter<Box<dyn Write>>,
    renderer: Renderer,
    names: Names,
    /// The opening `{"traceEvents":[` is written.
    begun: bool,
    /// Events written (a comma goes before every one but the first).
    written: u64,
    /// The array is closed; nothing more is written.
    finished: bool,
    tracks: HashMap<Tid, Track>,
    /// Processes whose name is written.
    named: HashSet<Pid>,
    /// Names read at an attach or a fork, for a process or a thread not
    /// yet named: written before its first event, if it has one.
    early: HashMap<Named, String>,
    /// Calls the engine dropped without a return, (thread, call id), shared
    /// with their tickets.
    forgotten: Rc<RefCell<Vec<(Tid, u64)>>>,
    next_call: u64,
    /// Set by [`Timeline::mark_injected`] for the next return.
    injected: Option<Option<i32>>,
}

/// One thread's track.
struct Track {
    /// Its process.
    pid: Pid,
    /// Its thread's name is written.
    named: bool,
    /// Calls in flight, innermost last.
    open: Vec<Open>,
}

/// A call in flight, as its slice will need it.
struct Open {
    id: u64,
    entered: Duration,
    address: RuntimeAddr,
    args: Args,
    known: Known,
}

/// What an entry leaves in its probe's data slot. The engine gives it back at
/// the return, or drops it when the call can no longer return: then it tells
/// the timeline which call to forget.
struct Ticket {
    tid: Tid,
    id: u64,
    forgotten: Rc<RefCell<Vec<(Tid, u64)>>>,
    returned: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.returned {
            return;
        }
        // Dropped by the engine between two handler calls, never while the
        // timeline holds the list; a busy list would only leave the call
        // listed until an outer return ends it.
        if let Ok(mut f) = self.forgotten.try_borrow_mut() {
            f.push((self.tid, self.id));
        }
    }
}

/// One event being written.
struct Ev(Vec<u8>);

impl Ev {
    /// `{"name":…,"cat":…,"ph":…`.
    fn new(name: &str, cat: &str, ph: &str) -> Ev {
        let mut e = Ev(Vec::with_capacity(192));
        e.raw("{\"name\":");
        e.string(name);
        e.raw(",\"cat\":");
        e.string(cat);
        e.raw(",\"ph\":");
        e.string(ph);
        e
    }

    /// A metadata event: `{"name":…,"ph":"M"`.
    fn meta(name: &str) -> Ev {
        let mut e = Ev(Vec::with_capacity(96));
        e.raw("{\"name\":");
        e.string(name);
        e.raw(",\"ph\":\"M\"");
        e
    }

    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    fn string(&mut self, s: &str) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    /// `"s":…`, an instant's scope: `t` (its thread) or `p` (its process).
    fn scope(mut self, s: &str) -> Ev {
        self.raw(",\"s\":");
        self.string(s);
        self
    }

    /// A time field in microseconds.
    fn time(mut self, key: &str, d: Duration) -> Ev {
        self.raw(",\"");
        self.raw(key);
        self.raw("\":");
        self.raw(&micros(d));
        self
    }

    fn thread(mut self, pid: Pid, tid: Tid) -> Ev {
        self.raw(&format!(",\"pid\":{pid},\"tid\":{tid}"));
        self
    }

    fn args(mut self, args: &[(String, Value)]) -> Ev {
        self.raw(",\"args\":{");
        for (i, (k, v)) in args.iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            self.string(k);
            self.raw(":");
            let _ = serde_json::to_writer(&mut self.0, v);
        }
        self.raw("}");
        self
    }
}

/// `1520.031`: microseconds with the nanoseconds as three decimals, so no
/// float rounding moves an end past its parent's.
fn micros(d: Duration) -> String {
    let ns = d.as_nanos();
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

/// The `args` of a call: each argument under its parameter's name, or
/// `argN` (its position) when the name is not known. A name already taken,
/// or one of the keys that follow the parameters, gets `#N` added: `#`
/// appears in no identifier, and the position is unique.
fn arg_pairs(args: &Args) -> Vec<(String, Value)> {
    let mut pairs: Vec<(String, Value)> = Vec::with_capacity(args.values.len() + 3);
    for (i, value) in args.values.iter().enumerate() {
        let key = match args.names.get(i) {
            Some(Some(name)) if !name.is_empty() => name.clone(),
            _ => format!("arg{i}"),
        };
        let taken = RESERVED.contains(&key.as_str()) || pairs.iter().any(|(k, _)| *k == key);
        let key = if taken { format!("{key}#{i}") } else { key };
        pairs.push((key, value.as_str().into()));
    }
    pairs
}

/// `/proc`'s names: the executable's file name, a thread's `comm`.
pub(crate) fn proc_names(what: Named) -> Option<String> {
    match what {
        Named::Process(pid) => {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            file_name(&exe)
        }
        Named::Thread(pid, tid) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            Some(comm.trim_end_matches('\n').to_string())
        }
    }
}

/// The file name of an executable's path (`/proc/PID/exe` ends with
/// ` (deleted)` when the file was removed after it started).
fn file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy();
    Some(name.trim_end_matches(" (deleted)").to_string())
}

impl Timeline {
    /// A timeline writing to `out`, with C strings cut after `string_limit`
    /// bytes, as the printer cuts them.
    pub fn new(out: Box<dyn Write>, string_limit: usize) -> Timeline {
        Timeline::with_names(out, string_limit, Box::new(proc_names))
    }

    /// The same timeline, rendering the functions `prototypes` names by
    /// them (`--proto`).
    pub fn with_prototypes(mut self, prototypes: super::Prototypes) -> Timeline {
        self.renderer.set_prototypes(prototypes);
        self
    }

    /// A timeline of a recording: processes and threads are named as
    /// `names` has them (what [`replay`](crate::record::replay) read of
    /// the file so far), not from `/proc`.
    pub fn from_recording(
        out: Box<dyn Write>,
        string_limit: usize,
        names: crate::record::Names,
    ) -> Timeline {
        Timeline::with_names(out, string_limit, Box::new(move |what| names.get(what)))
    }

    /// Like [`Timeline::new`], with names from `names`.
    pub(crate) fn with_names(out: Box<dyn Write>, string_limit: usize, names: Names) -> Timeline {
        Timeline {
            out: BufWriter::with_capacity(BUFFER, out),
            renderer: Renderer::new(string_limit),
            names,
            begun: false,
            written: 0,
            finished: false,
            tracks: HashMap::new(),
            named: HashSet::new(),
            early: HashMap::new(),
            forgotten: Rc::new(RefCell::new(Vec::new())),
            next_call: 0,
            injected: None,
        }
    }

    /// The next return is of a call skipped by fault injection (`--inject`),
    /// with `errno` set to this error number if any: its `return` reads
    /// `-1 ENOENT (injected)` and its args get `"injected":true`.
    pub fn mark_injected(&mut self, errno: Option<i32>) {
        self.injected = Some(errno);
    }

    fn begin(&mut self) -> Result<()> {
        if !self.begun {
            self.begun = true;
            self.out
                .write_all(b"{\"traceEvents\":[\n")
                .map_err(Error::Output)?;
        }
        Ok(())
    }

    fn write(&mut self, mut ev: Ev) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.begin()?;
        ev.raw("}");
        if self.written > 0 {
            self.out.write_all(b",\n").map_err(Error::Output)?;
        }
        self.written += 1;
        self.out.write_all(&ev.0).map_err(Error::Output)
    }

    /// Closes the array and the object, and writes everything out. Once only.
    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.begin()?;
        self.finished = true;
        self.out
            .write_all(b"\n],\"displayTimeUnit\":\"ns\"}\n")
            .map_err(Error::Output)?;
        self.out.flush().map_err(Error::Output)
    }

    /// Takes the calls the engine dropped off their threads' lists.
    fn forget(&mut self) {
        let gone = match self.forgotten.try_borrow_mut() {
            Ok(mut f) if !f.is_empty() => std::mem::take(&mut *f),
            _ => return,
        };
        let mut by_thread: HashMap<Tid, HashSet<u64>> = HashMap::new();
        for (tid, id) in gone {
            by_thread.entry(tid).or_default().insert(id);
        }
        for (tid, ids) in by_thread {
            if let Some(track) = self.tracks.get_mut(&tid) {
                track.open.retain(|o| !ids.contains(&o.id));
            }
        }
    }

    /// Names the process, once.
    fn name_process(&mut self, pid: Pid) -> Result<()> {
        if !self.named.insert(pid) {
            return Ok(());
        }
        let name = self.early.remove(&Named::Process(pid));
        match name.or_else(|| (self.names)(Named::Process(pid))) {
            Some(name) => self.write_name("process_name", pid, pid, &name),
            None => Ok(()),
        }
    }

    /// Reads the names of process `pid` and its main thread now, for its
    /// first events: a fast probe's records are read after they were made
    /// (an image's last ones at its exec, when `/proc` names the new one).
    fn read_names_early(&mut self, pid: Pid) {
        for named in [Named::Process(pid), Named::Thread(pid, pid)] {
            if let Some(name) = (self.names)(named) {
                self.early.insert(named, name);
            }
        }
    }

    fn write_name(&mut self, what: &str, pid: Pid, tid: Tid, name: &str) -> Result<()> {
        let ev = Ev::meta(what)
            .thread(pid, tid)
            .args(&[("name".to_string(), name.into())]);
        self.write(ev)
    }

    /// The thread's track, its process and thread named first (once: a
    /// thread's `comm` is read at its first event).
    fn track(&mut self, pid: Pid, tid: Tid) -> Result<()> {
        self.name_process(pid)?;
        let track = self.tracks.entry(tid).or_insert_with(|| Track {
            pid,
            named: false,
            open: Vec::new(),
        });
        // A thread that execs becomes its process's leader; ids are reused.
        track.pid = pid;
        if track.named {
            return Ok(());
        }
        track.named = true;
        let name = self.early.remove(&Named::Thread(pid, tid));
        match name.or_else(|| (self.names)(Named::Thread(pid, tid))) {
            Some(name) => self.write_name("thread_name", pid, tid, &name),
            None => Ok(()),
        }
    }

    /// An instant on the thread: an instruction hit, an entry-only call.
    fn instant(
        &mut self,
        hit: &Hit<'_>,
        name: &str,
        cat: &str,
        args: &[(String, Value)],
    ) -> Result<()> {
        let ev = Ev::new(name, cat, "i")
            .scope("t")
            .time("ts", hit.time())
            .thread(hit.pid(), hit.tid())
            .args(args);
        self.write(ev)
    }

    /// An instant on the process: a fork, an exec.
    fn process_instant(
        &mut self,
        pid: Pid,
        name: &str,
        time: Duration,
        args: &[(String, Value)],
    ) -> Result<()> {
        self.name_process(pid)?;
        let ev = Ev::new(name, "process", "i")
            .scope("p")
            .time("ts", time)
            .thread(pid, pid)
            .args(args);
        self.write(ev)
    }
}

impl Handler for Timeline {
    fn returns(&mut self, site: &Site, module: Option<&Module>) -> crate::handler::Returns {
        self.renderer.returns(site, module)
    }

    fn fast(&mut self, site: &Site, module: Option<&Module>) -> Fast {
        // A record is drawn as its instant; a slice needs the return.
        match site.kind {
            ProbeKind::Instruction => Fast::Yes(Capture::nothing()),
            ProbeKind::Function { .. } => self.renderer.capture(site, module),
        }
    }

    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        self.forget();
        let (pid, tid, time) = (hit.pid(), hit.tid(), hit.time());
        self.track(pid, tid)?;
        let site = hit.site();
        let (kind, address) = (site.kind, site.address);
        match kind {
            ProbeKind::Function { returns: true } => {
                let known = self.renderer.known(hit);
                let args = self.renderer.args(&known, hit);
                let id = self.next_call;
                self.next_call += 1;
                if let Some(track) = self.tracks.get_mut(&tid) {
                    track.open.push(Open {
                        id,
                        entered: time,
                        address,
                        args,
                        known,
                    });
                }
                hit.set_data(Ticket {
                    tid,
                    id,
                    forgotten: self.forgotten.clone(),
                    returned: false,
                });
                Ok(())
            }
            ProbeKind::Function { returns: false } => {
                let known = self.renderer.known(hit);
                let args = arg_pairs(&self.renderer.args(&known, hit));
                let name = hit.site().name.clone();
                self.instant(hit, &name, "entry", &args)
            }
            ProbeKind::Instruction => {
                let site = hit.site();
                let name = match (site.name.is_empty(), site.offset) {
                    (true, _) => site.address.to_string(),
                    (false, 0) => site.name.clone(),
                    (false, off) => format!("{}+{off:#x}", site.name),
                };
                let args = [
                    ("probe".to_string(), site.probe.as_str().into()),
                    ("address".to_string(), site.address.to_string().into()),
                ];
                self.instant(hit, &name, "hit", &args)
            }
        }
    }

    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        self.forget();
        let injected = self.injected.take();
        // No ticket: the entry was not seen here (a child traced with -f
        // inherits calls in flight, not their data), so there is no start.
        let Some(mut ticket) = ret.take_data::<Ticket>() else {
            return Ok(());
        };
        ticket.returned = true;
        let tid = ret.tid();
        let Some(track) = self.tracks.get_mut(&tid) else {
            return Ok(());
        };
        // Not listed: a call that returned before it ended this one.
        let Some(k) = track.open.iter().rposition(|o| o.id == ticket.id) else {
            return Ok(());
        };
        let above = track.open.split_off(k + 1);
        let Some(call) = track.open.pop() else {
            return Ok(());
        };
        // The same call's other probes return now too; everything else above
        // it ends here, unsliced (see the module docs).
        track.open.extend(
            above
                .into_iter()
                .filter(|o| o.entered == call.entered && o.address == call.address),
        );
        let mut value = self.renderer.retval(Some(&call.known), ret);
        if let Some(errno) = injected {
            value.mark_injected(errno);
        }
        let mut args = arg_pairs(&call.args);
        args.push(("return".to_string(), value.text.as_str().into()));
        if value.number != Number::None {
            args.push(("retval".to_string(), value.number.into()));
        }
        if injected.is_some() {
            args.push(("injected".to_string(), true.into()));
        }
        // The engine times a call from when the thread went on into the
        // function, after the entry's handlers (the first hit of a function
        // parses its debug information): the slice says what the printer
        // says. It still starts after its parent's, and ends before.
        let dur = ret.duration();
        let ev = Ev::new(&ret.site().name, "call", "X")
            .time("ts", ret.time().saturating_sub(dur))
            .time("dur", dur)
            .thread(ret.pid(), tid)
            .args(&args);
        self.write(ev)
    }

    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        self.forget();
        match event {
            Event::Signal { pid, tid, signal } => {
                self.track(*pid, *tid)?;
                let ev = Ev::new(&signal_name(*signal), "signal", "i")
                    .scope("t")
                    .time("ts", time)
                    .thread(*pid, *tid);
                self.write(ev)
            }
            Event::Fork { pid, child, kind } => {
                // Its events may be read after it execs.
                self.read_names_early(*child);
                let args = [("child".to_string(), child.as_raw().into())];
                self.process_instant(*pid, kind.as_str(), time, &args)
            }
            Event::Exec { pid, path } => {
                let args = [("path".to_string(), path.to_string_lossy().as_ref().into())];
                self.process_instant(*pid, "exec", time, &args)?;
                // A new program: a new process name, and new thread names
                // (the kernel sets `comm` from the file), read at their next
                // event.
                if let Some(name) = file_name(path) {
                    self.write_name("process_name", *pid, *pid, &name)?;
                }
                for track in self.tracks.values_mut().filter(|t| t.pid == *pid) {
                    track.named = false;
                }
                self.early.retain(|named, _| match named {
                    Named::Process(p) | Named::Thread(p, _) => p != pid,
                });
                Ok(())
            }
            // Its first events may be read after an exec.
            Event::Attached { pid, .. } => {
                self.read_names_early(*pid);
                Ok(())
            }
            Event::Exited { .. }
            | Event::Killed { .. }
            | Event::Detached { .. }
            | Event::Missed { .. }
            | Event::Warning { .. }
            | Event::ProcessWarning { .. }
            | Event::NeverArmed { .. }
            | Event::ProbeMode { .. }
            | Event::Lost { .. }
            | Event::Unwatched { .. }
            | Event::Skipped { .. } => Ok(()),
        }
    }

    fn on_idle(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.out.flush().map_err(Error::Output)
    }

    /// Nobody reads the file while it is written: once a second is plenty,
    /// and never asks the other listeners to flush more often.
    fn idle_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn on_finish(&mut self) -> Result<()> {
        self.forget();
        self.finish()
    }
}

impl Drop for Timeline {
    /// The file is valid JSON even when tracing never ran to its end (an
    /// error before it began): the array is closed here if it was not.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests;
