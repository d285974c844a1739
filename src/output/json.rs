//! The JSON Lines format (`--json`): one object per event, one event per line.
//!
//! This file owns the event names and field sets of the README's JSON Lines output
//! table. Every object starts with `event`, `time_ns` and `pid`, in that order
//! (written by hand so that a human reading the stream sees them first; values
//! are escaped by serde_json). Two events are rtrace's own additions to the
//! table:
//!
//! - `warning`: `message` (the text line would say) and `probe`; emitted for a
//!   probe that never armed because its module was never loaded.
//! - `summary` events carry the `time_ns` of the last event seen, and the pid
//!   of the process attached to; with `--hist`, `hist`: the buckets of the
//!   durations' log2 histogram in nanoseconds (`low`, `high`, `count`, as a
//!   script's `hist` event has them).
//!
//! And fields beyond the first description of the events:
//!
//! - `entry` and `hit`, with `--stack`: `stack`, the user stack at the hit,
//!   innermost frame first, each `{"address","symbol","offset","module"}`
//!   plus `"file"` and `"line"` where the module has a line table;
//!   `stack_truncated: true` when `--stack-depth` cut it.
//! - `attach`: `realtime_ns`, the wall clock at the attach event in
//!   nanoseconds since the Unix epoch: an event happened at `realtime_ns +
//!   time_ns - (the attach event's time_ns)`.
//! - `entry`: `arg_names`, parallel to `args`: each parameter's name, `null`
//!   where it is not known (raw registers, the `...` of a variadic function);
//!   `values`, parallel too: each argument as a raw 64-bit integer (its
//!   register, or its first eightbyte on the stack), `null` where it is not
//!   one (an aggregate, a float or a double, the `...`), so that scripts
//!   need not parse `args`.
//! - `return`: `rendered`, the value as the text format shows it (`-1`,
//!   `true`, `RED`, `"green"`, `void`, `?`); `retval` is the value as its type
//!   reads it (an `int` -1 is -1, an unsigned 64-bit value is unsigned),
//!   `null` when the function returns no integer (`void`, floating point, a
//!   struct), and rax as a signed 64-bit integer when the type is not known.
//!
//! `pid` is `null` only when an event comes before the attach event told us
//! the process (a warning or a summary with nothing traced).

use std::time::Duration;

use serde_json::Value;

use super::hist::Log2Hist;
use super::render::RetVal;
use super::summary::{Counted, Row};
use super::{Call, Emitter, Out, ScriptItem, ScriptValue};
use crate::addr::{AddrMap, Pid, RuntimeAddr};
use crate::error::Result;
use crate::handler::{Event, Hit, ProbeId, ProbeKind, Return, Site};
use crate::unwind::Stack;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A histogram's buckets, `{"low":…,"high":…,"count":…}` each, from the
/// first that counted something to the last (`null` for an open end).
fn buckets(h: &Log2Hist) -> Vec<Value> {
    bucket_values(&h.buckets())
}

fn bucket_values(buckets: &[super::hist::Bucket]) -> Vec<Value> {
    buckets
        .iter()
        .map(|b| serde_json::json!({"low": b.low, "high": b.high, "count": b.count}))
        .collect()
}

/// One JSON object being written (JSON text is UTF-8: serde_json writes
/// strings and numbers straight into the buffer, with no `Value` and no
/// string per field on the paths of calls and returns).
struct Obj(Vec<u8>);

thread_local! {
    /// The buffer of the last [`Obj`] written, for the next.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Obj {
    fn new(event: &str, time: Duration, pid: Option<Pid>) -> Obj {
        // The buffer of the last object written, emptied (no allocation
        // per event).
        let mut buf = SPARE.take();
        buf.clear();
        buf.reserve(256);
        let mut obj = Obj(buf);
        obj.0.extend_from_slice(b"{\"event\":");
        obj.string(event);
        obj.0.extend_from_slice(b",\"time_ns\":");
        obj.number(nanos(time));
        obj.0.extend_from_slice(b",\"pid\":");
        match pid {
            Some(p) => obj.number(p.as_raw()),
            None => obj.0.extend_from_slice(b"null"),
        }
        obj
    }

    /// Appends `,"key":` (keys are this file's own ASCII words: nothing to
    /// escape).
    fn key(&mut self, key: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    // (Writing into a Vec cannot fail, and these always serialize.)
    fn string(&mut self, s: &str) {
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    fn number(&mut self, n: impl Into<serde_json::Number>) {
        let n = n.into();
        let mut digits = itoa::Buffer::new();
        match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => self.0.extend_from_slice(digits.format(u).as_bytes()),
            (None, Some(i)) => self.0.extend_from_slice(digits.format(i).as_bytes()),
            _ => {
                let _ = serde_json::to_writer(&mut self.0, &n);
            }
        }
    }

    /// A field of any JSON value (the events that are not calls).
    fn field(mut self, key: &str, v: impl Into<Value>) -> Obj {
        self.key(key);
        let _ = serde_json::to_writer(&mut self.0, &v.into());
        self
    }

    fn text(mut self, key: &str, v: &str) -> Obj {
        self.key(key);
        self.string(v);
        self
    }

    fn uint(mut self, key: &str, v: impl Into<serde_json::Number>) -> Obj {
        self.key(key);
        self.number(v);
        self
    }

    /// The fields naming a probe site and its address, written once per
    /// site into `sites` and copied from there. (A probe's address may be
    /// another function's in another process: the entry is kept for the
    /// symbol and module it was written for.)
    fn site(mut self, site: &Site, sites: &mut SiteFields) -> Obj {
        let fields = sites
            .entry((site.id, site.address))
            .or_insert_with(|| SiteEntry::of(site));
        if fields.symbol != site.symbol || fields.module != site.module.as_os_str() {
            *fields = SiteEntry::of(site);
        }
        self.0.extend_from_slice(&fields.json);
        self
    }

    fn write(mut self, out: &mut Out) -> Result<()> {
        self.0.extend_from_slice(b"}\n");
        let r = out.write_bytes(&self.0);
        SPARE.set(std::mem::take(&mut self.0));
        r
    }
}

/// Each probe site's `probe`, `symbol`, `module` and `address` fields, as
/// JSON text.
type SiteFields = AddrMap<(ProbeId, RuntimeAddr), SiteEntry>;

struct SiteEntry {
    symbol: String,
    module: std::ffi::OsString,
    json: Vec<u8>,
}

impl SiteEntry {
    fn of(site: &Site) -> SiteEntry {
        SiteEntry {
            symbol: site.symbol.clone(),
            module: site.module.clone().into_os_string(),
            json: Obj(Vec::new())
                .text("probe", &site.probe)
                .text("symbol", &site.symbol)
                .text("module", &site.module.to_string_lossy())
                .text("address", &site.address.to_string())
                .0,
        }
    }
}

/// One site of a `probe` event: `symbol`, `address` (hex string), `mode`
/// (`fast` or `int3`) and, for an int3 site, `reason`.
fn site_mode(site: &crate::handler::SiteMode) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("symbol".into(), site.symbol.as_str().into());
    o.insert("address".into(), site.address.to_string().into());
    let mode = match site.int3 {
        None => "fast",
        Some(_) => "int3",
    };
    o.insert("mode".into(), mode.into());
    if let Some(why) = &site.int3 {
        o.insert("reason".into(), why.as_str().into());
    }
    Value::Object(o)
}

/// A stack as JSON: one object per frame, innermost first, with `address`
/// (hex string), `symbol` and `module` (null when unknown), `offset`, and
/// `file` and `line` when the module has a line table for the code.
fn stack_json(stack: &Stack) -> Value {
    let frames: Vec<Value> = stack
        .frames
        .iter()
        .map(|f| {
            let mut o = serde_json::Map::new();
            o.insert("address".into(), f.address.to_string().into());
            o.insert(
                "symbol".into(),
                f.symbol.as_deref().map_or(Value::Null, Value::from),
            );
            o.insert("offset".into(), f.offset.into());
            o.insert(
                "module".into(),
                f.module
                    .as_ref()
                    .map_or(Value::Null, |m| m.to_string_lossy().into()),
            );
            if let (Some(file), Some(line)) = (&f.file, f.line) {
                o.insert("file".into(), file.to_string_lossy().into());
                o.insert("line".into(), line.into());
            }
            Value::Object(o)
        })
        .collect();
    Value::Array(frames)
}

/// The JSON printer's state.
#[derive(Default)]
pub(crate) struct JsonEmitter {
    /// The process attached to, for events that have no pid of their own.
    root: Option<Pid>,
    /// The latest event time, for the summary events written at the end.
    last: Duration,
    /// The next return is of a call skipped by fault injection.
    injected: bool,
    /// The fields naming each site seen.
    sites: SiteFields,
}

impl JsonEmitter {
    fn saw(&mut self, time: Duration) {
        self.last = self.last.max(time);
    }
}

impl Emitter for JsonEmitter {
    fn injected(&mut self) {
        self.injected = true;
    }

    fn entry(&mut self, out: &mut Out, hit: &mut Hit<'_>, call: &Call) -> Result<()> {
        self.saw(hit.time());
        let site = hit.site();
        let pid = Some(hit.pid());
        let obj = match site.kind {
            ProbeKind::Function { .. } => {
                let mut obj = Obj::new("entry", hit.time(), pid)
                    .uint("tid", hit.tid().as_raw())
                    .site(site, &mut self.sites);
                obj.key("args");
                let _ = serde_json::to_writer(&mut obj.0, &call.args.values);
                obj.key("arg_names");
                let _ = serde_json::to_writer(&mut obj.0, &call.args.names);
                obj.key("values");
                let _ = serde_json::to_writer(&mut obj.0, &call.args.raw);
                obj
            }
            ProbeKind::Instruction => {
                let obj = Obj::new("hit", hit.time(), pid)
                    .uint("tid", hit.tid().as_raw())
                    .site(site, &mut self.sites);
                match &call.source {
                    Some(source) => obj.text("source", source),
                    None => obj,
                }
            }
        };
        match &call.stack {
            Some(stack) => {
                let obj = obj.field("stack", stack_json(stack));
                match stack.truncated {
                    true => obj.field("stack_truncated", true).write(out),
                    false => obj.write(out),
                }
            }
            None => obj.write(out),
        }
    }

    fn ret(
        &mut self,
        out: &mut Out,
        ret: &mut Return<'_>,
        _call: Option<u64>,
        value: &RetVal,
    ) -> Result<()> {
        self.saw(ret.time());
        let obj = Obj::new("return", ret.time(), Some(ret.pid()))
            .uint("tid", ret.tid().as_raw())
            .site(ret.site(), &mut self.sites)
            .field("retval", value.number)
            .text("rendered", &value.text)
            .uint("duration_ns", nanos(ret.duration()))
            // When the call's clock started: its entry's stop, plus what
            // the handlers took there (not the function's time), so that
            // time_ns - entered_ns is duration_ns.
            .uint(
                "entered_ns",
                nanos(ret.time().saturating_sub(ret.duration())),
            );
        let obj = match value.errno {
            Some(e) => obj
                .field("errno", e)
                .text("errno_name", &crate::inject::errno_name(e)),
            None => obj,
        };
        // The argument the call filled (`read`'s buf), rendered now that it
        // has: its entry event had the pointer.
        let obj = match &value.filled {
            Some((index, name, text)) => obj
                .uint("filled_arg", *index as u64)
                .text("filled_name", name)
                .text("filled", text),
            None => obj,
        };
        match std::mem::take(&mut self.injected) {
            true => obj.field("injected", true).write(out),
            false => obj.write(out),
        }
    }

    fn event(&mut self, out: &mut Out, event: &Event, time: Duration) -> Result<()> {
        self.saw(time);
        match event {
            Event::Attached {
                pid,
                threads,
                probes,
                pending,
                returns,
                realtime,
            } => {
                self.root.get_or_insert(*pid);
                let realtime = realtime
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, nanos);
                let mut obj = Obj::new("attach", time, Some(*pid))
                    .field("threads", *threads)
                    .field("probes", *probes)
                    .field("pending", *pending);
                if let Some(how) = returns {
                    obj = obj.field("returns", how.as_str());
                }
                obj.uint("realtime_ns", realtime).write(out)
            }
            Event::Fork { pid, child, kind } => Obj::new("fork", time, Some(*pid))
                .field("child", child.as_raw())
                .field("kind", kind.as_str())
                .write(out),
            Event::Exec { pid, path } => Obj::new("exec", time, Some(*pid))
                .field("path", path.to_string_lossy().as_ref())
                .write(out),
            Event::Signal { pid, tid, signal } => Obj::new("signal", time, Some(*pid))
                .field("tid", tid.as_raw())
                .field("signal", crate::handler::signal_name(*signal))
                .write(out),
            Event::Exited { pid, code } => Obj::new("exit", time, Some(*pid))
                .field("code", *code)
                .write(out),
            Event::Killed { pid, signal, .. } => Obj::new("killed", time, Some(*pid))
                .field("signal", crate::handler::signal_name(*signal))
                .write(out),
            Event::Detached { pid } => Obj::new("detach", time, Some(*pid)).write(out),
            Event::Missed {
                pid, probe, symbol, ..
            }
            | Event::Unwatched {
                pid, probe, symbol, ..
            } => Obj::new("warning", time, Some(*pid))
                .field(
                    "message",
                    format!(
                        "probe {probe}: the return of a call of {symbol} could not be watched; \
                         such calls are counted as missed in the summary"
                    ),
                )
                .field("probe", probe.as_str())
                .write(out),
            Event::Warning { probe, message } => Obj::new("warning", time, self.root)
                .field("message", format!("probe {probe}: {message}"))
                .field("probe", probe.as_str())
                .write(out),
            Event::ProcessWarning { pid, message } => Obj::new("warning", time, Some(*pid))
                .field("message", message.as_str())
                .write(out),
            Event::ProbeMode {
                probe,
                fast,
                int3,
                sites,
            } => {
                let slow: usize = int3.iter().map(|r| r.count).sum();
                let mode = match (*fast, slow) {
                    (_, 0) => "fast",
                    (0, _) => "int3",
                    _ => "mixed",
                };
                let reasons: Vec<Value> = int3.iter().map(|r| Value::from(r.describe())).collect();
                let sites: Vec<Value> = sites.iter().map(site_mode).collect();
                Obj::new("probe", time, self.root)
                    .field("probe", probe.as_str())
                    .field("mode", mode)
                    .field("fast_sites", *fast as u64)
                    .field("int3_sites", slow as u64)
                    .field("reasons", reasons)
                    .field("sites", sites)
                    .write(out)
            }
            Event::Lost {
                pid,
                probe,
                symbol,
                count,
            } => Obj::new("warning", time, Some(*pid))
                .field(
                    "message",
                    crate::handler::lost_message(probe, symbol, *count),
                )
                .field("probe", probe.as_str())
                .field("lost", *count)
                .write(out),
            Event::NeverArmed { probe } => Obj::new("warning", time, self.root)
                .field(
                    "message",
                    format!("probe {probe} never armed (its module was never loaded)"),
                )
                .field("probe", probe.as_str())
                .write(out),
            Event::Skipped { probe, reasons } => Obj::new("warning", time, self.root)
                .field("message", crate::handler::skipped_message(probe, reasons))
                .field("probe", probe.as_str())
                .field(
                    "skipped",
                    reasons.iter().map(|r| r.count).sum::<usize>() as u64,
                )
                .write(out),
        }
    }

    fn script(&mut self, out: &mut Out, item: &ScriptItem, time: Duration) -> Result<()> {
        self.saw(time);
        fn json(v: &ScriptValue) -> Value {
            match v {
                ScriptValue::Int(i) => (*i).into(),
                ScriptValue::Float(f) => (*f).into(),
                ScriptValue::Bool(b) => (*b).into(),
                ScriptValue::Text(t) => t.as_str().into(),
            }
        }
        match item {
            ScriptItem::Print { pid, tid, text } => {
                let obj = Obj::new("print", time, pid.or(self.root));
                let obj = match tid {
                    Some(t) => obj.field("tid", t.as_raw()),
                    None => obj,
                };
                obj.field("text", text.as_str()).write(out)
            }
            ScriptItem::Warning(w) => Obj::new("warning", time, self.root)
                .field("message", w.as_str())
                .write(out),
            // A map of one entry of no key (`@n`) is one value, as a global.
            ScriptItem::Map { name, entries } if matches!(entries[..], [(None, _)]) => {
                Obj::new("map", time, self.root)
                    .field("name", name.as_str())
                    .field("value", json(&entries[0].1))
                    .write(out)
            }
            ScriptItem::Map { name, entries } => {
                let entries: Vec<Value> = entries
                    .iter()
                    .map(|(k, v)| {
                        let key = k.as_ref().map_or(Value::Null, json);
                        serde_json::json!({"key": key, "value": json(v)})
                    })
                    .collect();
                Obj::new("map", time, self.root)
                    .field("name", name.as_str())
                    .field("entries", entries)
                    .write(out)
            }
            ScriptItem::Global { name, value } => Obj::new("map", time, self.root)
                .field("name", name.as_str())
                .field("value", json(value))
                .write(out),
            ScriptItem::Hist { name, key, hist } => {
                let obj = Obj::new("hist", time, self.root).field("name", name.as_str());
                let obj = match key {
                    Some(k) => obj.field("key", json(k)),
                    None => obj,
                };
                obj.field("buckets", bucket_values(&hist.buckets()))
                    .write(out)
            }
        }
    }

    fn before_flush(&mut self, _out: &mut Out) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self, out: &mut Out, rows: Option<&[Row]>) -> Result<()> {
        for r in rows.unwrap_or_default() {
            let obj = Obj::new("summary", self.last, self.root)
                .field("probe", r.probe.as_str())
                .field("symbol", r.symbol.as_str())
                .field("calls", r.calls);
            // Hits (entry-only and instruction probes) have no time: no
            // duration fields, rather than zeros that read as measured.
            let obj = match r.counted {
                Counted::Calls => obj
                    .field("total_ns", nanos(r.total))
                    .field("min_ns", nanos(r.min))
                    .field("max_ns", nanos(r.max))
                    .field("avg_ns", nanos(r.average())),
                Counted::Hits => obj,
            }
            .field("missed", r.missed);
            // Calls that failed, when rtrace saw every value (no fast
            // probe counted some in the program).
            let obj = match (r.counted, r.errors) {
                (Counted::Calls, Some(e)) => obj.field("errors", e),
                _ => obj,
            };
            let obj = match &r.hist {
                Some(h) => obj.field("hist", buckets(h)),
                None => obj,
            };
            obj.write(out)?;
        }
        Ok(())
    }
}
