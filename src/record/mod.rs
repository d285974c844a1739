//! Record now, read later: [`Recorder`] writes what the probes saw into a
//! file, rendering nothing; [`replay`] reads the file back into the same
//! handlers the live run would have had (the printers: text, JSON, the
//! `-c` table), as often as wanted.
//!
//! A recording holds, for each call, what the printers read of it: the
//! registers, and the memory captured with them. A fast hit's captures are
//! what its detour copied (the printers' plan, [`Handler::fast`]); at an
//! int3 hit the [`Recorder`] runs the printers' reading of the arguments
//! (and at the return, of the value and the buffer filled) over the live
//! memory, and keeps each read. The replay serves the same reads from what
//! was kept, so it renders what the live run would have printed.
//!
//! Sites and the modules of each process are written before the first
//! event that needs them; lifecycle events go in as they come. The file's
//! layout is `format`'s, described in docs/RECORDING.md.

pub(crate) mod format;

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::addr::{Pid, RuntimeAddr};
use crate::arch::Regs;
use crate::error::{Error, Result};
use crate::handler::{
    Captured, CapturedBuf, CapturedStr, Event, Fast, ForkKind, Handler, Hit, Memory, ProbeId,
    ProbeKind, Return, Returns, Site, SiteMode, SkipReason,
};
use crate::output::render::{Known, Renderer};
use crate::output::timeline::Named;
use crate::output::Prototypes;
use crate::probe::HandlerData;
use crate::symbols::{Module, ModuleMap};
use crate::unwind::{FrameSource, RawFrame, Stack};
use format::{Get, Kind, Put, Short};

/// How many threads numbered lately the recorder finds without hashing.
const RECENT_THREADS: usize = 16;

/// The registers a record codes, in the order `reg_values` gives.
const REGS: usize = crate::arch::detour::RECORD_VALUES;

/// Writes a recording: attach it as the handler of every probe (with
/// `Tracer::add_recorded_probe`, which writes a fast probe's records
/// without building a hit for them) and as a listener, and call [`Handler::on_finish`] at the end (it flushes); the
/// recording's end record is written when the recorder is dropped, after
/// every event the tracer still sends (a detach's).
pub struct Recorder {
    out: Box<dyn Write>,
    renderer: Renderer,
    /// Site → its number in the file.
    sites: HashMap<(usize, u64, bool), u32>,
    /// Sites numbered in the file (an exec's new image numbers its sites
    /// anew: the same address may be another function there).
    numbered: u32,
    /// The modules last written for each process.
    modules: HashMap<Pid, Written>,
    /// The frame being built.
    buf: Put,
    /// What the calls' records are coded against.
    ctx: Context,
    /// Calls entered at int3 stops: what the printers knew of them.
    entries: u64,
    returns: u64,
    /// The most frames of the user stack kept at each hit (`--stack`).
    stack_depth: Option<usize>,
    /// The processes (tid 0) and threads whose names are written.
    named: std::collections::HashSet<(i32, i32)>,
    /// The last hit's answers, asked again by the next hit of a hot loop
    /// (no hashing then): its site and number, its thread's number, its
    /// thread (pid, tid) named, and its site found in the modules written for its process
    /// (pid, site, how many modules).
    last_site: Option<((usize, u64, bool), u32)>,
    last_thread: usize,
    last_named: Option<(i32, i32)>,
    /// Threads numbered lately, by tid: (pid, tid) and its number.
    recent: [Option<((i32, i32), usize)>; RECENT_THREADS],
    last_in_modules: Option<(Pid, u32, usize)>,
    /// Boxes of call numbers given back by returns, for the next entries
    /// (boxed: each is handed to a call as its data).
    #[allow(clippy::vec_box)]
    spare_ids: Vec<Box<u64>>,
}

/// The most boxes of call numbers kept for reuse.
const SPARE_IDS: usize = 256;

/// The modules written for a process: (path, bias) of each, and the sites
/// found in them since.
type Written = (Vec<(PathBuf, u64)>, std::collections::HashSet<u32>);

/// What the recorder keeps of a call between its entry and its return.
struct Call {
    id: u64,
    known: Known,
    fill: Option<crate::output::render::Fill>,
}

impl Recorder {
    /// A recorder writing to `out` (a file: it writes the header now),
    /// with the printers' string limit and prototypes, keeping the user
    /// stack at each hit up to `stack_depth` frames when given (its probes
    /// are then int3s: a stack is walked on the stopped thread); `header`
    /// is kept in the file's header (the command, the options).
    pub fn new(
        mut out: Box<dyn Write>,
        string_limit: usize,
        prototypes: Prototypes,
        stack_depth: Option<usize>,
        header: Value,
    ) -> Result<Recorder> {
        let mut head = header;
        head["format"] = json!(format::VERSION);
        head["string_limit"] = json!(string_limit);
        if let Some(depth) = stack_depth {
            head["stack_depth"] = json!(depth);
        }
        head["rtrace"] = json!(env!("CARGO_PKG_VERSION"));
        format::write_start(&mut out).map_err(Error::Output)?;
        format::write_frame(&mut out, Kind::Header, head.to_string().as_bytes())
            .map_err(Error::Output)?;
        Ok(Recorder {
            out,
            renderer: Renderer::with_prototypes(string_limit, prototypes),
            sites: HashMap::new(),
            numbered: 0,
            modules: HashMap::new(),
            buf: Put::default(),
            ctx: Context::default(),
            entries: 0,
            returns: 0,
            stack_depth,
            named: Default::default(),
            last_site: None,
            last_thread: 0,
            last_named: None,
            recent: [None; RECENT_THREADS],
            last_in_modules: None,
            spare_ids: Vec::new(),
        })
    }

    /// The number of thread `key` (pid, tid) in the file, if it has one.
    /// (The threads of a hot loop take turns: the last few are kept by
    /// tid, so that no hashing is done for them.)
    fn known_thread(&mut self, key: (i32, i32)) -> Option<usize> {
        if let Some(t) = self.ctx.threads.get(self.last_thread) {
            if (t.pid, t.tid) == key {
                return Some(self.last_thread);
            }
        }
        let recent = key.1 as usize % RECENT_THREADS;
        let t = match self.recent[recent] {
            Some((k, t)) if k == key => t,
            _ => {
                let t = *self.ctx.numbers.get(&key)?;
                self.recent[recent] = Some((key, t));
                t
            }
        };
        self.last_thread = t;
        Some(t)
    }

    /// The number of thread `tid` of process `pid` in the file, written
    /// first if new.
    fn thread(&mut self, pid: Pid, tid: Pid) -> Result<usize> {
        let key = (pid.as_raw(), tid.as_raw());
        if let Some(t) = self.known_thread(key) {
            return Ok(t);
        }
        let t = self.ctx.threads.len();
        let mut p = Put::default();
        p.var(t as u64)
            .var(u64::from(key.0 as u32))
            .var(u64::from(key.1 as u32));
        self.frame(Kind::Thread, &p.0)?;
        self.ctx.numbers.insert(key, t);
        self.ctx.threads.push(ThreadContext::new(key));
        self.last_thread = t;
        Ok(t)
    }

    /// Writes the names of process `pid` and of its thread `tid` (as
    /// `/proc` has them now), each the first time it is seen, for a
    /// timeline drawn from the file.
    fn name(&mut self, pid: Pid, tid: Pid) -> Result<()> {
        let key = (pid.as_raw(), tid.as_raw());
        if self.last_named == Some(key) {
            return Ok(());
        }
        self.last_named = Some(key);
        // (A thread numbered already, and named since its process's last
        // exec: both names are written.)
        let known = self.known_thread(key);
        if known.is_some_and(|t| self.ctx.threads[t].named) {
            return Ok(());
        }
        for (named, key) in [
            (Named::Process(pid), (pid.as_raw(), 0)),
            (Named::Thread(pid, tid), (pid.as_raw(), tid.as_raw())),
        ] {
            if !self.named.insert(key) {
                continue;
            }
            if let Some(name) = crate::output::timeline::proc_names(named) {
                let v = json!({"pid": key.0, "tid": key.1, "name": name});
                self.frame(Kind::Name, v.to_string().as_bytes())?;
            }
        }
        if let Some(t) = known {
            self.ctx.threads[t].named = true;
        }
        Ok(())
    }

    /// Entries and returns written so far.
    pub fn written(&self) -> (u64, u64) {
        (self.entries, self.returns)
    }

    fn frame(&mut self, kind: Kind, payload: &[u8]) -> Result<()> {
        format::write_frame(&mut self.out, kind, payload).map_err(Error::Output)
    }

    /// Writes the frame built in `buf`, of `kind` (its kind and length
    /// were left room for at the start), and empties `buf`.
    fn flush_built(&mut self, kind: Kind) -> Result<()> {
        let len = self.buf.0.len() - 5;
        if len as u64 > u64::from(format::MAX_FRAME) {
            self.buf.0.clear();
            return Err(Error::Output(std::io::Error::other(
                "a record too large for the file",
            )));
        }
        // The kind and the length go in the room left before the payload,
        // ending where it begins: one write, nothing allocated.
        let mut head = [0u8; 11];
        head[0] = kind as u8;
        let n = format::put_var(&mut head, 1, len as u64);
        let from = 5 - n;
        self.buf.0[from..5].copy_from_slice(&head[..n]);
        let r = self
            .out
            .write_all(&self.buf.0[from..])
            .map_err(Error::Output);
        self.buf.0.clear();
        r
    }

    /// The number of `site` in the file, written first if new.
    fn site(&mut self, site: &Site) -> Result<u32> {
        let key = (
            site.id.0,
            site.address.get(),
            site.kind == ProbeKind::Instruction,
        );
        if let Some((k, n)) = self.last_site {
            if k == key {
                return Ok(n);
            }
        }
        if let Some(&n) = self.sites.get(&key) {
            self.last_site = Some((key, n));
            return Ok(n);
        }
        let n = self.numbered;
        self.numbered += 1;
        let v = json!({
            "n": n,
            "probe": site.probe,
            "probe_id": site.id.0,
            "kind": match site.kind {
                ProbeKind::Function { returns: true } => "function",
                ProbeKind::Function { returns: false } => "entry",
                ProbeKind::Instruction => "instruction",
            },
            "symbol": site.symbol,
            "name": site.name,
            "offset": site.offset,
            "module": site.module.to_string_lossy(),
            "address": site.address.get(),
        });
        self.frame(Kind::Site, v.to_string().as_bytes())?;
        self.sites.insert(key, n);
        self.last_site = Some((key, n));
        Ok(n)
    }

    /// Writes the modules of `pid` when the site at `addr` is in none of
    /// those written last (a library loaded since, an exec).
    fn modules(
        &mut self,
        pid: Pid,
        modules: &ModuleMap,
        site: u32,
        addr: RuntimeAddr,
    ) -> Result<()> {
        let count = modules.modules().len();
        if self.last_in_modules == Some((pid, site, count)) {
            return Ok(());
        }
        if let Some((m, seen)) = self.modules.get_mut(&pid) {
            if m.len() == count {
                if seen.contains(&site) {
                    self.last_in_modules = Some((pid, site, count));
                    return Ok(());
                }
                let found = modules
                    .module_at(addr)
                    .is_none_or(|at| m.iter().any(|(p, b)| *p == at.path && *b == bias(at)));
                if found {
                    seen.insert(site);
                    return Ok(());
                }
            }
        }
        let list: Vec<Value> = modules
            .modules()
            .iter()
            .map(|m| {
                json!({
                    "path": m.path.to_string_lossy(),
                    "bias": bias(m),
                    "ranges": m.ranges.iter().map(|(s, e)| [s.get(), e.get()]).collect::<Vec<_>>(),
                    "build_id": m.elf.build_id().map(hex),
                })
            })
            .collect();
        let v = json!({"pid": pid.as_raw(), "modules": list});
        self.frame(Kind::Modules, v.to_string().as_bytes())?;
        self.last_in_modules = None;
        self.modules.insert(
            pid,
            (
                modules
                    .modules()
                    .iter()
                    .map(|m| (m.path.clone(), bias(m)))
                    .collect(),
                std::collections::HashSet::from([site]),
            ),
        );
        Ok(())
    }
}

impl Recorder {
    /// Writes the entry record of site number `n` by thread number `t` at
    /// `time`, with its registers (`values`, in the order `reg_values`
    /// gives), what it captured and its stack; returns its call number.
    fn entry_record(
        &mut self,
        n: u32,
        t: usize,
        time: Duration,
        values: &[u64; REGS],
        captured: &Captured,
        stack: Option<&(Vec<RawFrame>, bool)>,
    ) -> Result<u64> {
        let id = self.ctx.entries;
        let time = time.as_nanos() as u64;
        self.buf.0.extend_from_slice(&[0; 5]);
        let (p, ctx) = (&mut self.buf, &mut self.ctx);
        p.var(u64::from(n)).var(t as u64).delta(ctx.time, time);
        ctx.time = time;
        ctx.entries += 1;
        put_regs(p, values, &mut ctx.threads[t].entry);
        put_captured(p, captured);
        if let Some((frames, truncated)) = stack {
            put_stack(p, frames, *truncated);
        }
        self.flush_built(Kind::Entry)?;
        self.entries += 1;
        Ok(id)
    }

    /// Writes the return record of site number `n` by thread number `t`
    /// (`times`: its time and its entry's), of call number `id`
    /// (`u64::MAX`: not known).
    #[allow(clippy::too_many_arguments)]
    fn return_record(
        &mut self,
        n: u32,
        t: usize,
        (time, entered): (Duration, Duration),
        id: u64,
        errno: Option<i32>,
        values: &[u64; REGS],
        captured: &Captured,
    ) -> Result<()> {
        let time = time.as_nanos() as u64;
        self.buf.0.extend_from_slice(&[0; 5]);
        let (p, ctx) = (&mut self.buf, &mut self.ctx);
        p.var(u64::from(n)).var(t as u64).delta(ctx.time, time);
        ctx.time = time;
        // Its entry, as how many entries back (0: not known); how long
        // before it; errno plus one (0: none).
        p.var(ctx.entries.saturating_sub(id))
            .var(time.saturating_sub(entered.as_nanos() as u64))
            .var(errno.map_or(0, |e| u64::from(e as u32) + 1));
        put_regs(p, values, &mut ctx.threads[t].ret);
        put_captured(p, captured);
        self.flush_built(Kind::Return)?;
        self.returns += 1;
        Ok(())
    }

    /// Call number `id` as a call's data. (A box of a returned call's,
    /// reused: a hot loop allocates nothing for its calls' numbers.)
    fn call_box(&mut self, id: u64) -> Box<dyn Any> {
        match self.spare_ids.pop() {
            Some(mut b) => {
                *b = id;
                b
            }
            None => Box::new(id),
        }
    }

    /// The call number in a call's data (`u64::MAX`: none), and what the
    /// printers knew of it at a stop.
    fn call_of(&mut self, data: HandlerData) -> (u64, Option<Call>) {
        match data {
            Some(d) => match d.downcast::<Call>() {
                Ok(c) => (c.id, Some(*c)),
                Err(d) => match d.downcast::<u64>() {
                    Ok(b) => {
                        let id = *b;
                        if self.spare_ids.len() < SPARE_IDS {
                            self.spare_ids.push(b);
                        }
                        (id, None)
                    }
                    Err(_) => (u64::MAX, None),
                },
            },
            None => (u64::MAX, None),
        }
    }

    /// A fast probe's entry record, written as [`Handler::on_entry`] writes
    /// the hit made of it, without the hit: `site` hit by thread `tid` of
    /// `pid` (whose modules are `modules`) at `time`, its registers
    /// `values` (as `detour::record_values` reads them) and its xmm
    /// registers `xmm` (the record captured nothing else). Its call number
    /// goes to `data`, for [`Recorder::fast_return`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fast_entry(
        &mut self,
        site: &Site,
        pid: Pid,
        tid: Pid,
        modules: &ModuleMap,
        time: Duration,
        values: &[u64; REGS],
        xmm: [Option<u64>; 8],
        data: &mut HandlerData,
    ) -> Result<()> {
        let n = self.site(site)?;
        self.modules(pid, modules, n, site.address)?;
        self.name(pid, tid)?;
        let t = self.thread(pid, tid)?;
        let captured = Captured {
            xmm,
            ..Captured::default()
        };
        let id = self.entry_record(n, t, time, values, &captured, None)?;
        *data = Some(self.call_box(id));
        Ok(())
    }

    /// A fast probe's return record, written as [`Handler::on_return`]
    /// writes the return made of it, without the return: the call of
    /// `site` whose data is `data` (its entry at `entered`) returned in
    /// thread `tid` of `pid` at `time`, with registers `values` (as
    /// `detour::return_values` reads them), `xmm0`'s low 64 bits and
    /// `errno` (the record captured no string or buffer).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fast_return(
        &mut self,
        site: &Site,
        pid: Pid,
        tid: Pid,
        (time, entered): (Duration, Duration),
        data: HandlerData,
        errno: Option<i32>,
        values: &[u64; REGS],
        xmm0: u64,
    ) -> Result<()> {
        let n = self.site(site)?;
        self.name(pid, tid)?;
        let (id, _) = self.call_of(data);
        let mut captured = Captured::default();
        captured.xmm[0] = Some(xmm0);
        let t = self.thread(pid, tid)?;
        self.return_record(n, t, (time, entered), id, errno, values, &captured)
    }
}

/// What a call's record holds of memory: a fast record's captures, or
/// the reads `logged` at a stop (`none` when there were none).
fn captures<'c>(
    mem: &'c Memory<'_>,
    logged: &'c Option<Captured>,
    none: &'c Captured,
) -> &'c Captured {
    match (mem, logged) {
        (Memory::Captured(c), _) => c,
        (_, Some(c)) => c,
        _ => none,
    }
}

/// A module's bias: runtime address = link address + bias.
fn bias(m: &Module) -> u64 {
    m.to_runtime(crate::addr::LinkAddr(0)).get()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Handler for Recorder {
    fn fast(&mut self, site: &Site, module: Option<&Module>) -> Fast {
        if self.stack_depth.is_some() {
            return Fast::No(crate::output::STACK_WALKED.into());
        }
        match site.kind {
            ProbeKind::Instruction => Fast::Yes(crate::handler::Capture::nothing()),
            ProbeKind::Function { .. } => self.renderer.capture(site, module),
        }
    }

    fn returns(&mut self, site: &Site, module: Option<&Module>) -> Returns {
        self.renderer.returns(site, module)
    }

    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let n = self.site(hit.site)?;
        self.modules(hit.pid, hit.modules, n, hit.site.address)?;
        self.name(hit.pid, hit.tid)?;
        // The stack's frames, named at the replay from the modules.
        let stack = match (self.stack_depth, hit.mem) {
            (Some(depth), Memory::Live(_) | Memory::Logged(..)) => Some(hit.raw_stack(depth)),
            _ => None,
        };
        let t = self.thread(hit.pid, hit.tid)?;
        let function = matches!(hit.site.kind, ProbeKind::Function { .. });
        // At a stop: the printers' reads, kept.
        let (logged, known, fill) = match hit.mem {
            Memory::Captured(_) => (None, None, None),
            Memory::Live(mem) | Memory::Logged(mem, _) => {
                let log = RefCell::new(Captured::default());
                let mut regs = *hit.regs;
                let mut dirty = false;
                let mut data = None;
                let logged = Hit {
                    pid: hit.pid,
                    tid: hit.tid,
                    site: hit.site,
                    regs: &mut regs,
                    regs_dirty: &mut dirty,
                    mem: Memory::Logged(mem, &log),
                    modules: hit.modules,
                    time: hit.time,
                    data: &mut data,
                    returns: Default::default(),
                    stack: Default::default(),
                };
                let (known, fill) = match function {
                    true => {
                        let known = self.renderer.known(&logged);
                        let args = self.renderer.args(&known, &logged);
                        let fill = self.renderer.fill(&known, &args);
                        (Some(known), fill)
                    }
                    false => (None, None),
                };
                drop(logged);
                (Some(log.into_inner()), known, fill)
            }
        };
        let none = Captured::default();
        let captured = captures(&hit.mem, &logged, &none);
        let values = reg_values(hit.regs);
        // Its call number: the entries before it.
        let id = self.entry_record(n, t, hit.time, &values, captured, stack.as_ref())?;
        if let Some(known) = known {
            hit.set_data(Call { id, known, fill });
        } else {
            *hit.data = Some(self.call_box(id));
        }
        Ok(())
    }

    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        let n = self.site(ret.site)?;
        self.name(ret.pid, ret.tid)?;
        let (id, call) = self.call_of(ret.data.take());
        // (A recorded return has errno in its record, or none: no lookup
        // of libc's errno on every return.)
        let errno = match ret.mem {
            Memory::Captured(_) => ret.errno,
            _ => ret.errno(),
        };
        let logged = match ret.mem {
            Memory::Captured(_) => None,
            Memory::Live(mem) | Memory::Logged(mem, _) => {
                let log = RefCell::new(Captured::default());
                let mut regs = *ret.regs;
                let mut dirty = false;
                let logged = Return {
                    pid: ret.pid,
                    tid: ret.tid,
                    site: ret.site,
                    regs: &mut regs,
                    regs_dirty: &mut dirty,
                    mem: Memory::Logged(mem, &log),
                    modules: ret.modules,
                    time: ret.time,
                    entered: ret.entered,
                    data: None,
                    errno,
                };
                let value = self
                    .renderer
                    .retval(call.as_ref().map(|c| &c.known), &logged);
                if let Some(fill) = call.as_ref().and_then(|c| c.fill.as_ref()) {
                    let _ = self.renderer.filled(fill, &logged, &value);
                }
                drop(logged);
                Some(log.into_inner())
            }
        };
        let none = Captured::default();
        let captured = captures(&ret.mem, &logged, &none);
        let t = self.thread(ret.pid, ret.tid)?;
        let values = reg_values(ret.regs);
        let times = (ret.time, ret.entered);
        self.return_record(n, t, times, id, errno, &values, captured)
    }

    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        // Names are read as a live timeline reads them: at the attach and
        // the fork (a fast probe's records are read later, maybe after an
        // exec), and the new image's at its exec, written before its event.
        match event {
            Event::Attached { pid, .. } => self.name(*pid, *pid)?,
            Event::Fork { child, .. } => self.name(*child, *child)?,
            Event::Exec { pid, .. } => {
                let raw = pid.as_raw();
                self.named.retain(|&(p, _)| p != raw);
                for t in self.ctx.threads.iter_mut().filter(|t| t.pid == raw) {
                    t.named = false;
                }
                self.last_named = None;
                // A new image: its modules are written again at its first
                // call (the same site number and as many modules as before
                // are no sign that they are the same), and its sites, even
                // at an address a site of the old image had (another
                // function, or the same in another module).
                self.modules.remove(pid);
                self.last_in_modules = None;
                self.sites.clear();
                self.last_site = None;
                self.name(*pid, *pid)?;
            }
            _ => {}
        }
        let mut v = event_json(event);
        v["time_ns"] = json!(time.as_nanos() as u64);
        self.frame(Kind::Event, v.to_string().as_bytes())
    }

    fn on_finish(&mut self) -> Result<()> {
        self.out.flush().map_err(Error::Output)
    }
}

impl Drop for Recorder {
    /// The recording's end, its last frame: written once nothing more can
    /// come (a detach's events may follow the tracer's finish), and flushed
    /// as the output is dropped. An error here leaves the file without its
    /// end, which its replay says.
    fn drop(&mut self) {
        let v = json!({"entries": self.entries, "returns": self.returns});
        let _ = self.frame(Kind::End, v.to_string().as_bytes());
        let _ = self.out.flush();
    }
}

/// What the calls' records are coded against, the same when written and
/// read: the last record's time, the entries so far (an entry's call
/// number is their count before it), and each thread's number and its last
/// registers, apart for entries and returns.
#[derive(Default)]
struct Context {
    time: u64,
    entries: u64,
    threads: Vec<ThreadContext>,
    /// (pid, tid) → its number (written).
    numbers: HashMap<(i32, i32), usize>,
}

/// One thread's part of the [`Context`].
struct ThreadContext {
    pid: i32,
    tid: i32,
    entry: LastRegs,
    ret: LastRegs,
    /// Its process's name and its own are written (since the process's
    /// last exec), for the recorder; the reader leaves it false.
    named: bool,
}

impl ThreadContext {
    fn new((pid, tid): (i32, i32)) -> ThreadContext {
        ThreadContext {
            pid,
            tid,
            entry: LastRegs::default(),
            ret: LastRegs::default(),
            named: false,
        }
    }
}

/// A thread's registers in its last record of a kind (0 where not
/// recorded), and which were recorded.
#[derive(Default)]
struct LastRegs {
    values: [u64; REGS],
    mask: u32,
}

/// The registers: which are not zero (a mask of the general-purpose
/// registers 0..16, then rip, rflags, fs_base), as a varint of its
/// difference (xor) from the thread's last mask; then each, as its
/// difference from its value in the thread's last record of the kind (a
/// hot loop's registers repeat, or move a little).
fn put_regs(p: &mut Put, values: &[u64; REGS], last: &mut LastRegs) {
    let mut mask = 0u32;
    for (i, v) in values.iter().enumerate() {
        mask |= u32::from(*v != 0) << i;
    }
    // (At most a varint of each; `last` becomes `values` in place: those
    // left out were 0.)
    p.0.reserve(10 * (REGS + 1));
    p.var(u64::from(mask ^ last.mask));
    let mut dropped = last.mask & !mask;
    while dropped != 0 {
        last.values[dropped.trailing_zeros() as usize] = 0;
        dropped &= dropped - 1;
    }
    let mut left = mask;
    while left != 0 {
        let i = left.trailing_zeros() as usize;
        left &= left - 1;
        p.var(format::zigzag(last.values[i], values[i]));
        last.values[i] = values[i];
    }
    last.mask = mask;
}

/// The registers in the order [`put_regs`] codes them: the general-purpose
/// registers by their number (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi,
/// r8..r15), then rip, rflags and fs_base.
fn reg_values(regs: &Regs) -> [u64; REGS] {
    let r = regs.raw();
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip, r.eflags, r.fs_base,
    ]
}

#[cfg(test)]
fn get_regs(g: &mut Get<'_>, last: &mut LastRegs) -> std::result::Result<Regs, Short> {
    let mut regs = Regs::default();
    get_regs_into(g, last, &mut regs)?;
    Ok(regs)
}

/// [`get_regs`] into `regs` (all of them set).
fn get_regs_into(
    g: &mut Get<'_>,
    last: &mut LastRegs,
    regs: &mut Regs,
) -> std::result::Result<(), Short> {
    let mask = u32::try_from(g.var()?).map_err(|_| Short)? ^ last.mask;
    if mask >> 19 != 0 {
        return Err(Short);
    }
    let mut values = [0u64; REGS];
    for (i, v) in values.iter_mut().enumerate() {
        if mask & (1 << i) != 0 {
            *v = g.delta(last.values[i])?;
        }
    }
    *last = LastRegs { values, mask };
    let r = regs.raw_mut();
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip, r.eflags, r.fs_base,
    ] = values;
    Ok(())
}

/// What a call's record holds of memory: a byte of which parts follow
/// (bit 0 C strings, 1 buffers, 2 the stack copied, 3 xmm registers),
/// then each: a count (varint) of strings, each its pointer (8), flags
/// (1: bit 0 the NUL was read, bit 1 the memory was readable) and its
/// bytes (a varint length, the bytes); a count of buffers, each its
/// pointer (8), readable (1) and its bytes; the stack's address (8) and
/// bytes; a mask (1) of the xmm registers whose low 8 bytes follow.
fn put_captured(p: &mut Put, c: &Captured) {
    let xmm = c
        .xmm
        .iter()
        .enumerate()
        .filter(|(_, x)| x.is_some())
        .fold(0u8, |m, (i, _)| m | 1 << i);
    let parts = u8::from(!c.strings.is_empty())
        | u8::from(!c.buffers.is_empty()) << 1
        | u8::from(c.stack.is_some()) << 2
        | u8::from(xmm != 0) << 3;
    p.u8(parts);
    if !c.strings.is_empty() {
        p.var(c.strings.len() as u64);
        for s in &c.strings {
            p.u64(s.ptr.get())
                .u8(u8::from(s.terminated) | u8::from(s.readable) << 1)
                .bytes(&s.bytes);
        }
    }
    if !c.buffers.is_empty() {
        p.var(c.buffers.len() as u64);
        for b in &c.buffers {
            p.u64(b.ptr.get()).u8(u8::from(b.readable)).bytes(&b.bytes);
        }
    }
    if let Some((at, bytes)) = &c.stack {
        p.u64(at.get()).bytes(bytes);
    }
    if xmm != 0 {
        p.u8(xmm);
        for x in c.xmm.iter().flatten() {
            p.u64(*x);
        }
    }
}

#[cfg(test)]
fn get_captured(g: &mut Get<'_>) -> std::result::Result<Captured, Short> {
    let mut c = Captured::default();
    get_captured_into(g, &mut c)?;
    Ok(c)
}

/// [`get_captured`] into `c`, emptied first (its lists keep their room).
fn get_captured_into(g: &mut Get<'_>, c: &mut Captured) -> std::result::Result<(), Short> {
    c.strings.clear();
    c.buffers.clear();
    c.stack = None;
    c.xmm = [None; 8];
    let parts = g.u8()?;
    if parts >> 4 != 0 {
        return Err(Short);
    }
    if parts & 1 != 0 {
        for _ in 0..g.count(10)? {
            let ptr = RuntimeAddr(g.u64()?);
            let flags = g.u8()?;
            c.strings.push(CapturedStr {
                ptr,
                bytes: g.bytes()?.to_vec(),
                terminated: flags & 1 != 0,
                readable: flags & 2 != 0,
            });
        }
    }
    if parts & 2 != 0 {
        for _ in 0..g.count(10)? {
            let ptr = RuntimeAddr(g.u64()?);
            let readable = g.u8()? != 0;
            c.buffers.push(CapturedBuf {
                ptr,
                bytes: g.bytes()?.to_vec(),
                readable,
            });
        }
    }
    if parts & 4 != 0 {
        let at = RuntimeAddr(g.u64()?);
        c.stack = Some((at, g.bytes()?.to_vec()));
    }
    if parts & 8 != 0 {
        let mask = g.u8()?;
        for (i, x) in c.xmm.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *x = Some(g.u64()?);
            }
        }
    }
    Ok(())
}

/// A user stack (after an entry's captures): 1, whether the walk stopped
/// at its depth, the number of frames, then each frame's address and how
/// it was found (bit 0: a return address; bits 1–2: the source).
fn put_stack(p: &mut Put, frames: &[RawFrame], truncated: bool) {
    p.u8(1).u8(u8::from(truncated)).var(frames.len() as u64);
    for f in frames {
        let source = match f.source {
            FrameSource::Registers => 0,
            FrameSource::Cfi => 1,
            FrameSource::Entry => 2,
            FrameSource::FramePointer => 3,
        };
        p.u64(f.pc.get()).u8(u8::from(f.after_call) | source << 1);
    }
}

fn get_stack(g: &mut Get<'_>) -> std::result::Result<(Vec<RawFrame>, bool), Short> {
    if g.u8()? != 1 {
        return Err(Short);
    }
    let truncated = match g.u8()? {
        0 => false,
        1 => true,
        _ => return Err(Short),
    };
    let count = g.count(9)?;
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        let pc = RuntimeAddr(g.u64()?);
        let flags = g.u8()?;
        let source = match flags >> 1 {
            0 => FrameSource::Registers,
            1 => FrameSource::Cfi,
            2 => FrameSource::Entry,
            3 => FrameSource::FramePointer,
            _ => return Err(Short),
        };
        frames.push(RawFrame {
            pc,
            after_call: flags & 1 != 0,
            source,
        });
    }
    Ok((frames, truncated))
}

/// A lifecycle event as JSON (`e` names it).
fn event_json(event: &Event) -> Value {
    let reasons = |r: &[SkipReason]| {
        r.iter()
            .map(|s| json!({"reason": s.reason, "count": s.count, "examples": s.examples}))
            .collect::<Vec<_>>()
    };
    match event {
        Event::Attached {
            pid,
            threads,
            probes,
            pending,
            returns,
            realtime,
        } => json!({
            "e": "attached", "pid": pid.as_raw(), "threads": threads, "probes": probes,
            "pending": pending,
            "returns": returns.map(|r| match r {
                crate::engine::ReturnMode::Stub => "stub",
                crate::engine::ReturnMode::Stop => "stop",
            }),
            "realtime_ns": realtime
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }),
        Event::Fork { pid, child, kind } => json!({
            "e": "fork", "pid": pid.as_raw(), "child": child.as_raw(), "kind": kind.as_str(),
        }),
        Event::Exec { pid, path } => {
            json!({"e": "exec", "pid": pid.as_raw(), "path": path.to_string_lossy()})
        }
        Event::Signal { pid, tid, signal } => json!({
            "e": "signal", "pid": pid.as_raw(), "tid": tid.as_raw(), "signal": signal,
        }),
        Event::Exited { pid, code } => json!({"e": "exited", "pid": pid.as_raw(), "code": code}),
        Event::Killed {
            pid,
            signal,
            core_dumped,
        } => json!({
            "e": "killed", "pid": pid.as_raw(), "signal": signal, "core_dumped": core_dumped,
        }),
        Event::Detached { pid } => json!({"e": "detached", "pid": pid.as_raw()}),
        Event::Missed {
            pid,
            tid,
            probe,
            symbol,
        } => json!({
            "e": "missed", "pid": pid.as_raw(), "tid": tid.as_raw(), "probe": probe,
            "symbol": symbol,
        }),
        Event::Warning { probe, message } => {
            json!({"e": "warning", "probe": probe, "message": message})
        }
        Event::ProcessWarning { pid, message } => {
            json!({"e": "process_warning", "pid": pid.as_raw(), "message": message})
        }
        Event::NeverArmed { probe } => json!({"e": "never_armed", "probe": probe}),
        Event::ProbeMode {
            probe,
            fast,
            int3,
            sites,
        } => json!({
            "e": "probe_mode", "probe": probe, "fast": fast, "int3": reasons(int3),
            "sites": sites.iter().map(|s| json!({
                "symbol": s.symbol, "address": s.address.get(), "int3": s.int3,
            })).collect::<Vec<_>>(),
        }),
        Event::Lost {
            pid,
            probe,
            symbol,
            count,
        } => json!({
            "e": "lost", "pid": pid.as_raw(), "probe": probe, "symbol": symbol, "count": count,
        }),
        Event::Unwatched {
            pid,
            probe,
            symbol,
            count,
        } => json!({
            "e": "unwatched", "pid": pid.as_raw(), "probe": probe, "symbol": symbol,
            "count": count,
        }),
        Event::Skipped { probe, reasons: r } => {
            json!({"e": "skipped", "probe": probe, "reasons": reasons(r)})
        }
    }
}

/// The event `v` holds (see [`event_json`]), and its time; None when it
/// is not one.
fn json_event(v: &Value) -> Option<(Event, Duration)> {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let u = |k: &str| v[k].as_u64();
    let i = |k: &str| v[k].as_i64().and_then(|x| i32::try_from(x).ok());
    let pid = |k: &str| i(k).map(Pid::from_raw);
    let reasons = |k: &str| -> Option<Vec<SkipReason>> {
        v[k].as_array()?
            .iter()
            .map(|r| {
                Some(SkipReason {
                    reason: r["reason"].as_str()?.to_string(),
                    count: usize::try_from(r["count"].as_u64()?).ok()?,
                    examples: r["examples"]
                        .as_array()?
                        .iter()
                        .map(|e| e.as_str().map(str::to_string))
                        .collect::<Option<_>>()?,
                })
            })
            .collect()
    };
    let time = Duration::from_nanos(u("time_ns")?);
    let event = match v["e"].as_str()? {
        "attached" => Event::Attached {
            pid: pid("pid")?,
            threads: u("threads")? as usize,
            probes: u("probes")? as usize,
            pending: u("pending")? as usize,
            returns: match v["returns"].as_str() {
                Some("stub") => Some(crate::engine::ReturnMode::Stub),
                Some("stop") => Some(crate::engine::ReturnMode::Stop),
                _ => None,
            },
            realtime: std::time::UNIX_EPOCH + Duration::from_nanos(u("realtime_ns")?),
        },
        "fork" => Event::Fork {
            pid: pid("pid")?,
            child: pid("child")?,
            kind: match v["kind"].as_str()? {
                "vfork" => ForkKind::Vfork,
                "clone" => ForkKind::Clone,
                _ => ForkKind::Fork,
            },
        },
        "exec" => Event::Exec {
            pid: pid("pid")?,
            path: PathBuf::from(s("path")?),
        },
        "signal" => Event::Signal {
            pid: pid("pid")?,
            tid: pid("tid")?,
            signal: i("signal")?,
        },
        "exited" => Event::Exited {
            pid: pid("pid")?,
            code: i("code")?,
        },
        "killed" => Event::Killed {
            pid: pid("pid")?,
            signal: i("signal")?,
            core_dumped: v["core_dumped"].as_bool()?,
        },
        "detached" => Event::Detached { pid: pid("pid")? },
        "missed" => Event::Missed {
            pid: pid("pid")?,
            tid: pid("tid")?,
            probe: s("probe")?,
            symbol: s("symbol")?,
        },
        "warning" => Event::Warning {
            probe: s("probe")?,
            message: s("message")?,
        },
        "process_warning" => Event::ProcessWarning {
            pid: pid("pid")?,
            message: s("message")?,
        },
        "never_armed" => Event::NeverArmed { probe: s("probe")? },
        "probe_mode" => Event::ProbeMode {
            probe: s("probe")?,
            fast: u("fast")? as usize,
            int3: reasons("int3")?,
            sites: v["sites"]
                .as_array()?
                .iter()
                .map(|m| {
                    Some(SiteMode {
                        symbol: m["symbol"].as_str()?.to_string(),
                        address: RuntimeAddr(m["address"].as_u64()?),
                        int3: m["int3"].as_str().map(str::to_string),
                    })
                })
                .collect::<Option<_>>()?,
        },
        "lost" => Event::Lost {
            pid: pid("pid")?,
            probe: s("probe")?,
            symbol: s("symbol")?,
            count: u("count")?,
        },
        "unwatched" => Event::Unwatched {
            pid: pid("pid")?,
            probe: s("probe")?,
            symbol: s("symbol")?,
            count: u("count")?,
        },
        "skipped" => Event::Skipped {
            probe: s("probe")?,
            reasons: reasons("reasons")?,
        },
        _ => return None,
    };
    Some((event, time))
}

/// The bytes of the recording at `path`, its beginning checked first: a
/// file that is not a recording (`/dev/zero`, a log) is refused after its
/// first twelve bytes, not read to its end.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let failed = |why: String| Error::Recording {
        path: path.to_path_buf(),
        why,
    };
    let mut file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(12)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(e.to_string()))?;
    if bytes.len() == 12 {
        format::Frames::new(&bytes).map_err(|e| failed(e.to_string()))?;
    }
    file.read_to_end(&mut bytes)
        .map_err(|e| failed(e.to_string()))?;
    Ok(bytes)
}

/// The header of the recording `bytes` (the command, the string limit,
/// the stack depth when stacks were kept, rtrace's version); None when
/// the file does not begin with one (the replay says why).
pub fn header(bytes: &[u8]) -> Option<Value> {
    let (kind, _, payload) = format::Frames::new(bytes).ok()?.next()?.ok()?;
    if kind != Kind::Header {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

/// What a replay keeps to: the processes, threads and probes asked for,
/// and a window of time (from the start of the recording).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these threads' calls (empty: all).
    pub tids: Vec<i32>,
    /// Only the calls of probes whose spec or function is one of these
    /// (empty: all).
    pub probes: Vec<String>,
    /// Only events at or after this time.
    pub from: Option<Duration>,
    /// Only events before this time.
    pub to: Option<Duration>,
}

/// The names of processes and threads a recording holds, filled as
/// [`replay`] reads them (each before the first event that needs it): what
/// a timeline drawn from the file names its tracks by
/// ([`Timeline::from_recording`](crate::output::Timeline::from_recording)).
#[derive(Clone, Debug, Default)]
pub struct Names(Rc<RefCell<HashMap<(i32, i32), String>>>);

impl Names {
    pub(crate) fn get(&self, what: Named) -> Option<String> {
        let key = match what {
            Named::Process(pid) => (pid.as_raw(), 0),
            Named::Thread(pid, tid) => (pid.as_raw(), tid.as_raw()),
        };
        self.0.borrow().get(&key).cloned()
    }
}

/// What a replay read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Entries handed to the handler (those the filter kept).
    pub entries: u64,
    /// Returns handed to it.
    pub returns: u64,
    /// Lifecycle events handed to it.
    pub events: u64,
    /// The file ends inside a record (the recording was cut): every whole
    /// record before it was read.
    pub truncated: bool,
    /// The file ends at a record's end without the recording's end: rtrace
    /// stopped before it finished the file (killed), or it was cut there.
    pub unfinished: bool,
    /// Modules whose files changed since the recording (their build-ids
    /// differ, or they are gone), said once each.
    pub changed: Vec<String>,
    /// The `-s` filters that named no site of the recording.
    pub unmatched: Vec<String>,
    /// The header.
    pub header: Value,
}

/// Reads the recording `bytes` (of the file `path`) into `handler`, as the
/// live run would have called it (entries, returns and events in order,
/// then [`Handler::on_finish`]), keeping to `filter`. Modules are read
/// from the paths recorded; one whose build-id changed is
/// said in the result. A hit recorded with its stack has it as its
/// [`Hit::user_stack`] (at most the depth recorded). The names of
/// processes and threads go into `names`. A foreign or damaged file is an
/// error naming `path`; a cut one is read up to its last whole record.
pub fn replay(
    path: &Path,
    bytes: &[u8],
    handler: &mut dyn Handler,
    filter: &Filter,
    names: &Names,
) -> Result<Replayed> {
    let cache = &mut crate::symbols::ElfCache::new();
    let bad = |why: format::BadFile| Error::Recording {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let corrupt = |what: &str, at: usize| {
        bad(format::BadFile::Corrupt {
            what: what.to_string(),
            at,
        })
    };
    let mut frames = format::Frames::new(bytes).map_err(bad)?;
    let mut out = Replayed::default();
    let mut sites: HashMap<u32, Rc<Site>> = HashMap::new();
    let mut maps: HashMap<i32, ModuleMap> = HashMap::new();
    let mut calls: HashMap<u64, Option<Box<dyn Any>>, CallNumbers> = HashMap::default();
    let mut ctx = Context::default();
    // Decoded into, call after call (their lists keep their room).
    let mut regs = Regs::default();
    let mut captured = Captured::default();
    // The last site and process map asked for (a hot loop's, again).
    let mut last_site: Option<(u32, Rc<Site>)> = None;
    let empty = ModuleMap::default();
    let mut first = true;
    let mut ended = false;
    let keep_time =
        |t: Duration| filter.from.is_none_or(|f| t >= f) && filter.to.is_none_or(|e| t < e);
    let keep_site = |s: &Site| {
        filter.probes.is_empty()
            || filter
                .probes
                .iter()
                .any(|p| *p == s.probe || *p == s.symbol || *p == s.name)
    };
    let keep_tid = |t: i32| filter.tids.is_empty() || filter.tids.contains(&t);
    // A script's `exit()` during the replay ends it, as it ends a live run
    // (a request made before it began is not this replay's).
    let asked = crate::sys::signal::detach_requested();
    // (Stopped before the end: what follows is not known.)
    let mut stopped = false;
    for frame in frames.by_ref() {
        if !first && crate::sys::signal::detach_requested() != asked {
            stopped = true;
            break;
        }
        let (kind, at, payload) = frame.map_err(bad)?;
        if first != (kind == Kind::Header) {
            return Err(corrupt("the header is not first, or not alone", at));
        }
        first = false;
        let json = || -> Result<Value> {
            serde_json::from_slice(payload)
                .map_err(|e| corrupt(&format!("a record that is not JSON ({e})"), at))
        };
        if ended {
            return Err(corrupt("a record after the recording's end", at));
        }
        match kind {
            Kind::End => {
                let v = json()?;
                if !(v["entries"].is_u64() && v["returns"].is_u64()) {
                    return Err(corrupt("an end that does not count the calls", at));
                }
                ended = true;
            }
            Kind::Header => {
                out.header = json()?;
                if !out.header.is_object() {
                    return Err(corrupt("a header that is not an object", at));
                }
            }
            Kind::Site => {
                let v = json()?;
                let site = json_site(&v).ok_or_else(|| corrupt("a site record", at))?;
                sites.insert(site.0, Rc::new(site.1));
                last_site = None;
            }
            Kind::Modules => {
                let v = json()?;
                let (pid, map, changed) =
                    json_modules(&v, cache).ok_or_else(|| corrupt("a modules record", at))?;
                for c in changed {
                    if !out.changed.contains(&c) {
                        out.changed.push(c);
                    }
                }
                maps.insert(pid, map);
            }
            Kind::Thread => {
                let mut g = Get::new(payload);
                let t = (|| {
                    let n = g.var()?;
                    let id = |v: u64| u32::try_from(v).map(|v| v as i32).map_err(|_| Short);
                    let key = (id(g.var()?)?, id(g.var()?)?);
                    match (n == ctx.threads.len() as u64, g.done()) {
                        (true, true) => Ok(key),
                        _ => Err(Short),
                    }
                })();
                let key = t.map_err(|_| corrupt("a thread record", at))?;
                ctx.threads.push(ThreadContext::new(key));
            }
            Kind::Name => {
                let v = json()?;
                let name = (|| {
                    let id = |k: &str| i32::try_from(v[k].as_i64()?).ok();
                    Some(((id("pid")?, id("tid")?), v["name"].as_str()?.to_string()))
                })();
                let (key, name) = name.ok_or_else(|| corrupt("a name record", at))?;
                names.0.borrow_mut().insert(key, name);
            }
            Kind::Event => {
                let v = json()?;
                let (event, time) = json_event(&v).ok_or_else(|| corrupt("an event record", at))?;
                if keep_time(time) {
                    out.events += 1;
                    handler.on_event(&event, time)?;
                }
            }
            Kind::Entry => {
                let mut g = Get::new(payload);
                let e = (|| {
                    let n = u32::try_from(g.var()?).map_err(|_| Short)?;
                    let t = ctx.threads.get_mut(g.var()? as usize).ok_or(Short)?;
                    let (pid, tid) = (t.pid, t.tid);
                    ctx.time = g.delta(ctx.time)?;
                    let (time, id) = (Duration::from_nanos(ctx.time), ctx.entries);
                    ctx.entries += 1;
                    get_regs_into(&mut g, &mut t.entry, &mut regs)?;
                    get_captured_into(&mut g, &mut captured)?;
                    let stack = match g.done() {
                        true => None,
                        false => Some(get_stack(&mut g)?),
                    };
                    if !g.done() {
                        return Err(Short);
                    }
                    Ok::<_, Short>((n, pid, tid, time, id, stack))
                })();
                let Ok((n, pid, tid, time, id, stack)) = e else {
                    return Err(corrupt("an entry record", at));
                };
                let site = site_numbered(&sites, &mut last_site, n)
                    .ok_or_else(|| corrupt("an entry of no site", at))?;
                if !(keep_time(time) && keep_site(&site) && keep_tid(tid)) {
                    continue;
                }
                let modules = maps.get(&pid).unwrap_or(&empty);
                let mut dirty = false;
                let mut data = None;
                let mut hit = Hit {
                    pid: Pid::from_raw(pid),
                    tid: Pid::from_raw(tid),
                    site: &site,
                    regs: &mut regs,
                    regs_dirty: &mut dirty,
                    mem: Memory::Captured(&captured),
                    modules,
                    time,
                    data: &mut data,
                    returns: Default::default(),
                    // The deepest there is (see `Hit::user_stack`).
                    stack: RefCell::new(stack.map(|(frames, truncated)| {
                        let frames = frames
                            .iter()
                            .map(|f| crate::unwind::symbolize(f, modules))
                            .collect();
                        (usize::MAX, Rc::new(Stack { frames, truncated }))
                    })),
                };
                handler.on_entry(&mut hit)?;
                handler.on_post(&mut hit)?;
                out.entries += 1;
                if matches!(site.kind, ProbeKind::Function { returns: true }) {
                    calls.insert(id, data);
                }
            }
            Kind::Return => {
                let mut g = Get::new(payload);
                let r = (|| {
                    let n = u32::try_from(g.var()?).map_err(|_| Short)?;
                    let t = ctx.threads.get_mut(g.var()? as usize).ok_or(Short)?;
                    let (pid, tid) = (t.pid, t.tid);
                    ctx.time = g.delta(ctx.time)?;
                    let time = Duration::from_nanos(ctx.time);
                    // (u64::MAX: no entry known.)
                    let id = match g.var()? {
                        0 => u64::MAX,
                        back => ctx.entries.wrapping_sub(back),
                    };
                    let entered = Duration::from_nanos(ctx.time.saturating_sub(g.var()?));
                    let errno = match g.var()? {
                        0 => None,
                        e => Some(u32::try_from(e - 1).map_err(|_| Short)? as i32),
                    };
                    get_regs_into(&mut g, &mut t.ret, &mut regs)?;
                    get_captured_into(&mut g, &mut captured)?;
                    if !g.done() {
                        return Err(Short);
                    }
                    Ok::<_, Short>((n, pid, tid, time, entered, id, errno))
                })();
                let Ok((n, pid, tid, time, entered, id, errno)) = r else {
                    return Err(corrupt("a return record", at));
                };
                let site = site_numbered(&sites, &mut last_site, n)
                    .ok_or_else(|| corrupt("a return of no site", at))?;
                // The entry kept (a return whose entry was left out is).
                // A return of no entry recorded (a forked child's return of
                // a call its parent made) is shown as the live run showed
                // it, with nothing kept of its entry.
                let data = match id {
                    u64::MAX => None,
                    id => match calls.remove(&id) {
                        Some(data) => data,
                        None => continue,
                    },
                };
                if !(keep_time(time) && keep_site(&site) && keep_tid(tid)) {
                    continue;
                }
                let modules = maps.get(&pid).unwrap_or(&empty);
                let mut dirty = false;
                let mut ret = Return {
                    pid: Pid::from_raw(pid),
                    tid: Pid::from_raw(tid),
                    site: &site,
                    regs: &mut regs,
                    regs_dirty: &mut dirty,
                    mem: Memory::Captured(&captured),
                    modules,
                    time,
                    entered,
                    data,
                    errno,
                };
                handler.on_return(&mut ret)?;
                out.returns += 1;
            }
        }
    }
    if first {
        return Err(corrupt("no header", frames.offset()));
    }
    out.truncated = frames.truncated;
    out.unmatched = filter
        .probes
        .iter()
        .filter(|_| !stopped)
        .filter(|p| {
            !sites
                .values()
                .any(|s| **p == s.probe || **p == s.symbol || **p == s.name)
        })
        .cloned()
        .collect();
    out.unfinished = !ended && !stopped && !frames.truncated && frames.version >= 2;
    handler.on_finish()?;
    Ok(out)
}

/// Site `n` of `sites`, by way of the last one asked for.
fn site_numbered(
    sites: &HashMap<u32, Rc<Site>>,
    last: &mut Option<(u32, Rc<Site>)>,
    n: u32,
) -> Option<Rc<Site>> {
    match last {
        Some((m, site)) if *m == n => Some(site.clone()),
        _ => {
            let site = sites.get(&n)?.clone();
            *last = Some((n, site.clone()));
            Some(site)
        }
    }
}

/// Hashes the call numbers of the calls in flight at a replay: they are
/// counted up from 0, so spread by Fibonacci hashing, as the probe table
/// spreads addresses (no SipHash on every call).
#[derive(Default, Clone, Copy)]
struct CallNumbers;

impl std::hash::BuildHasher for CallNumbers {
    type Hasher = CallNumber;
    fn build_hasher(&self) -> CallNumber {
        CallNumber(0)
    }
}

struct CallNumber(u64);

impl std::hash::Hasher for CallNumber {
    fn finish(&self) -> u64 {
        // (The product's high bits folded down: the table takes its
        // buckets from the low ones, which a product alone leaves as they
        // were.)
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).rotate_left(5);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A site record: its number, and the site.
fn json_site(v: &Value) -> Option<(u32, Site)> {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let kind = match v["kind"].as_str()? {
        "function" => ProbeKind::Function { returns: true },
        "entry" => ProbeKind::Function { returns: false },
        "instruction" => ProbeKind::Instruction,
        _ => return None,
    };
    Some((
        u32::try_from(v["n"].as_u64()?).ok()?,
        Site {
            probe: s("probe")?,
            id: ProbeId(usize::try_from(v["probe_id"].as_u64()?).ok()?),
            kind,
            symbol: s("symbol")?,
            name: s("name")?,
            offset: v["offset"].as_u64()?,
            module: PathBuf::from(s("module")?),
            address: RuntimeAddr(v["address"].as_u64()?),
        },
    ))
}

/// A modules record: the process, its modules read from their files, and
/// the paths of those whose file changed since (or is gone).
fn json_modules(
    v: &Value,
    cache: &mut crate::symbols::ElfCache,
) -> Option<(i32, ModuleMap, Vec<String>)> {
    let pid = i32::try_from(v["pid"].as_i64()?).ok()?;
    let mut modules = Vec::new();
    let mut changed = Vec::new();
    for m in v["modules"].as_array()? {
        let path = PathBuf::from(m["path"].as_str()?);
        let bias = m["bias"].as_u64()?;
        let ranges = m["ranges"]
            .as_array()?
            .iter()
            .map(|r| Some((RuntimeAddr(r[0].as_u64()?), RuntimeAddr(r[1].as_u64()?))))
            .collect::<Option<Vec<_>>>()?;
        let want = m["build_id"].as_str().map(str::to_string);
        match cache.get(&path) {
            Ok(elf) if elf.build_id().map(hex) == want => {
                modules.push(Module::recorded(path, bias, ranges, elf));
            }
            _ => changed.push(path.to_string_lossy().into_owned()),
        }
    }
    Some((pid, ModuleMap::from_modules(modules), changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_comes_back_as_recorded() {
        let pid = Pid::from_raw(41);
        let reasons = vec![SkipReason {
            reason: "why".into(),
            count: 2,
            examples: vec!["a".into(), "b".into()],
        }];
        let events = [
            Event::Attached {
                pid,
                threads: 3,
                probes: 4,
                pending: 1,
                returns: Some(crate::engine::ReturnMode::Stop),
                realtime: std::time::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            },
            Event::Fork {
                pid,
                child: Pid::from_raw(42),
                kind: ForkKind::Vfork,
            },
            Event::Exec {
                pid,
                path: "/bin/true".into(),
            },
            Event::Signal {
                pid,
                tid: Pid::from_raw(43),
                signal: 10,
            },
            Event::Exited { pid, code: -1 },
            Event::Killed {
                pid,
                signal: 9,
                core_dumped: true,
            },
            Event::Detached { pid },
            Event::Missed {
                pid,
                tid: pid,
                probe: "p".into(),
                symbol: "s".into(),
            },
            Event::Warning {
                probe: "p".into(),
                message: "m \"quoted\"\n".into(),
            },
            Event::ProcessWarning {
                pid,
                message: "m".into(),
            },
            Event::NeverArmed { probe: "p".into() },
            Event::ProbeMode {
                probe: "libc:*".into(),
                fast: 5,
                int3: reasons.clone(),
                sites: vec![
                    SiteMode {
                        symbol: "f".into(),
                        address: RuntimeAddr(0x1000),
                        int3: None,
                    },
                    SiteMode {
                        symbol: "g".into(),
                        address: RuntimeAddr(0x2000),
                        int3: Some("why".into()),
                    },
                ],
            },
            Event::Lost {
                pid,
                probe: "p".into(),
                symbol: "s".into(),
                count: 7,
            },
            Event::Unwatched {
                pid,
                probe: "p".into(),
                symbol: "s".into(),
                count: 8,
            },
            Event::Skipped {
                probe: "p".into(),
                reasons,
            },
        ];
        for (n, e) in events.into_iter().enumerate() {
            let mut v = event_json(&e);
            v["time_ns"] = json!(n as u64 * 1000);
            let back = json_event(&serde_json::from_str(&v.to_string()).unwrap());
            assert_eq!(back, Some((e, Duration::from_nanos(n as u64 * 1000))));
        }
        assert_eq!(json_event(&json!({"e": "nonsense", "time_ns": 1})), None);
        assert_eq!(json_event(&json!({"e": "exited", "time_ns": 1})), None);
    }

    #[test]
    fn registers_and_captures_come_back_as_recorded() {
        let mut regs = Regs::default();
        regs.set_gpr(crate::arch::Gpr(7), 0xdead);
        regs.set_gpr(crate::arch::Gpr(15), u64::MAX);
        regs.raw_mut().rip = 0x40_1000;
        regs.raw_mut().fs_base = 0x7f00_0000;
        let captured = Captured {
            strings: vec![CapturedStr {
                ptr: RuntimeAddr(0x10),
                bytes: b"hi".to_vec(),
                terminated: true,
                readable: true,
            }],
            buffers: vec![CapturedBuf {
                ptr: RuntimeAddr(0x20),
                bytes: vec![0, 1, 2],
                readable: false,
            }],
            stack: Some((RuntimeAddr(0x30), vec![9; 16])),
            xmm: [None, Some(5), None, None, None, None, None, Some(7)],
        };
        let mut p = Put::default();
        let mut last = LastRegs::default();
        put_regs(&mut p, &reg_values(&regs), &mut last);
        put_captured(&mut p, &captured);
        // The same thread's next record: rdi moved by one, r15 gone;
        // coded against the first, it takes a byte a register left (and 3
        // for the change of mask).
        let mut next = regs;
        next.set_gpr(crate::arch::Gpr(7), 0xdeae);
        next.set_gpr(crate::arch::Gpr(15), 0);
        let second = p.0.len();
        put_regs(&mut p, &reg_values(&next), &mut last);
        assert_eq!(p.0.len() - second, 3 + 3);
        let mut g = Get::new(&p.0);
        let mut last = LastRegs::default();
        let back = get_regs(&mut g, &mut last).unwrap();
        assert_eq!(reg_values(&back), reg_values(&regs));
        let c = get_captured(&mut g).unwrap();
        let back = get_regs(&mut g, &mut last).unwrap();
        assert_eq!(reg_values(&back), reg_values(&next));
        assert!(g.done());
        assert_eq!(
            (
                c.strings[0].bytes.as_slice(),
                c.strings[0].terminated,
                c.strings[0].readable
            ),
            (&b"hi"[..], true, true)
        );
        assert_eq!(
            (c.buffers[0].bytes.len(), c.buffers[0].readable),
            (3, false)
        );
        assert_eq!(c.stack, captured.stack);
        assert_eq!(c.xmm, captured.xmm);
        // Cut anywhere: an error, never a panic.
        for cut in 0..second {
            let mut g = Get::new(&p.0[..cut]);
            let mut last = LastRegs::default();
            let r = get_regs(&mut g, &mut last).and_then(|_| get_captured(&mut g));
            assert!(r.is_err(), "{cut}");
        }
    }

    /// A fast probe's records written straight into the recording are
    /// the bytes its hit and its return (as `drain` makes them of the same
    /// records) would have been written as.
    #[test]
    fn a_fast_record_is_written_as_the_hit_made_of_it() {
        use crate::arch::detour::regs_of;
        use crate::output::testutil::{function, SharedBuf, PID};
        let site = function("work");
        let modules = ModuleMap::default();
        let (pid, tid) = (Pid::from_raw(PID), Pid::from_raw(PID + 1));
        let mut entry = [0u64; REGS];
        (entry[4], entry[7]) = (0x7ffd_1000, 41);
        (entry[16], entry[18]) = (site.address.get(), 0x7f00_0000);
        let mut back = [0u64; REGS];
        (back[0], back[4]) = (83, 0x7ffd_1008);
        (back[16], back[18]) = (0x55d0_0000_1234, 0x7f00_0000);
        let xmm = [None, Some(3), None, None, None, None, None, Some(u64::MAX)];
        let ret_xmm = |x0| std::array::from_fn(|n| (n == 0).then_some(x0));
        let recording = |fast: bool| -> Vec<u8> {
            let buf = SharedBuf::default();
            let out = Box::new(buf.clone());
            let mut r = Recorder::new(out, 32, Prototypes::default(), None, json!({})).unwrap();
            for k in 0..3u64 {
                let mut values = entry;
                values[7] += k;
                values[4] -= 64 * k;
                let at = Duration::from_nanos(1000 + 900 * k);
                let mut data = None;
                match fast {
                    true => r
                        .fast_entry(&site, pid, tid, &modules, at, &values, xmm, &mut data)
                        .unwrap(),
                    false => {
                        let mut regs = regs_of(&values);
                        let mut dirty = false;
                        let captured = Captured {
                            xmm,
                            ..Captured::default()
                        };
                        let mut hit = Hit {
                            pid,
                            tid,
                            site: &site,
                            regs: &mut regs,
                            regs_dirty: &mut dirty,
                            mem: Memory::Captured(&captured),
                            modules: &modules,
                            time: at,
                            data: &mut data,
                            returns: Default::default(),
                            stack: Default::default(),
                        };
                        r.on_entry(&mut hit).unwrap();
                    }
                }
                let mut values = back;
                values[0] += k;
                let times = (at + Duration::from_nanos(300 + k), at);
                let errno = (k == 1).then_some(2);
                match fast {
                    true => r
                        .fast_return(&site, pid, tid, times, data, errno, &values, k)
                        .unwrap(),
                    false => {
                        let mut regs = regs_of(&values);
                        let mut dirty = false;
                        let captured = Captured {
                            xmm: ret_xmm(k),
                            ..Captured::default()
                        };
                        let mut ret = Return {
                            pid,
                            tid,
                            site: &site,
                            regs: &mut regs,
                            regs_dirty: &mut dirty,
                            mem: Memory::Captured(&captured),
                            modules: &modules,
                            time: times.0,
                            entered: times.1,
                            data,
                            errno,
                        };
                        r.on_return(&mut ret).unwrap();
                    }
                }
            }
            assert_eq!(r.written(), (3, 3));
            drop(r);
            buf.bytes()
        };
        let (slow, fast) = (recording(false), recording(true));
        assert!(slow.len() > 80, "{slow:?}");
        assert_eq!(fast, slow);
    }

    #[test]
    fn a_stack_comes_back_as_recorded() {
        let frames = [
            (0x40_1000, false, FrameSource::Registers),
            (0x40_2004, true, FrameSource::Cfi),
            (0x7f00_0010, true, FrameSource::Entry),
            (0x40_0100, true, FrameSource::FramePointer),
        ]
        .map(|(pc, after_call, source)| RawFrame {
            pc: RuntimeAddr(pc),
            after_call,
            source,
        });
        let mut p = Put::default();
        put_stack(&mut p, &frames, true);
        let mut g = Get::new(&p.0);
        let (back, truncated) = get_stack(&mut g).unwrap();
        assert!(g.done() && truncated);
        let fields = |f: &[RawFrame]| -> Vec<_> {
            f.iter().map(|f| (f.pc, f.after_call, f.source)).collect()
        };
        assert_eq!(fields(&back), fields(&frames));
        // Cut anywhere, or a frame's source out of range: an error.
        for cut in 0..p.0.len() {
            assert!(get_stack(&mut Get::new(&p.0[..cut])).is_err(), "{cut}");
        }
        let mut bad = p.0.clone();
        *bad.last_mut().unwrap() = 4 << 1;
        assert!(get_stack(&mut Get::new(&bad)).is_err());
    }
}
