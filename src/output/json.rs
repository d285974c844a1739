//! The JSON Lines format (`--json`): one object per event, one event per line.
//!
//! This file owns the event names and field sets of SPEC's "JSON Lines output"
//! table. Every object starts with `event`, `time_ns` and `pid`, in that order
//! (written by hand so that a human reading the stream sees them first; values
//! are escaped by serde_json). Two events are rtrace's own additions to the
//! table:
//!
//! - `warning`: `message` (the text line would say) and `probe`; emitted for a
//!   probe that never armed because its module was never loaded.
//! - `summary` events carry the `time_ns` of the last event seen, and the pid
//!   of the process attached to.
//!
//! `pid` is `null` only when an event comes before the attach event told us
//! the process (a warning or a summary with nothing traced).

use std::time::Duration;

use serde_json::Value;

use super::summary::Row;
use super::{render, Emitter, Out};
use crate::addr::Pid;
use crate::error::Result;
use crate::handler::{Event, Hit, ProbeKind, Return, Site};

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One JSON object being written.
struct Obj(String);

impl Obj {
    fn new(event: &str, time: Duration, pid: Option<Pid>) -> Obj {
        let pid = pid.map_or(Value::Null, |p| Value::from(p.as_raw()));
        Obj(format!(
            "{{\"event\":{},\"time_ns\":{},\"pid\":{}",
            Value::from(event),
            nanos(time),
            pid
        ))
    }

    fn field(mut self, key: &str, v: impl Into<Value>) -> Obj {
        self.0.push(',');
        self.0.push_str(&Value::from(key).to_string());
        self.0.push(':');
        self.0.push_str(&v.into().to_string());
        self
    }

    /// The fields naming a probe site.
    fn site(self, site: &Site) -> Obj {
        self.field("probe", site.probe.as_str())
            .field("symbol", site.symbol.as_str())
            .field("module", site.module.to_string_lossy().as_ref())
    }

    fn write(mut self, out: &mut Out) -> Result<()> {
        self.0.push_str("}\n");
        out.write(&self.0)
    }
}

/// The JSON printer's state.
#[derive(Default)]
pub(crate) struct JsonEmitter {
    /// The process attached to, for events that have no pid of their own.
    root: Option<Pid>,
    /// The latest event time, for the summary events written at the end.
    last: Duration,
}

impl JsonEmitter {
    fn saw(&mut self, time: Duration) {
        self.last = self.last.max(time);
    }
}

impl Emitter for JsonEmitter {
    fn entry(&mut self, out: &mut Out, hit: &mut Hit<'_>) -> Result<()> {
        self.saw(hit.time());
        let site = hit.site();
        let pid = Some(hit.pid());
        let address = site.address.to_string();
        match site.kind {
            ProbeKind::Function { .. } => Obj::new("entry", hit.time(), pid)
                .field("tid", hit.tid().as_raw())
                .site(site)
                .field("address", address)
                .field("args", render::hit_args(hit))
                .write(out),
            ProbeKind::Instruction => Obj::new("hit", hit.time(), pid)
                .field("tid", hit.tid().as_raw())
                .site(site)
                .field("address", address)
                .write(out),
        }
    }

    fn ret(&mut self, out: &mut Out, ret: &mut Return<'_>) -> Result<()> {
        self.saw(ret.time());
        Obj::new("return", ret.time(), Some(ret.pid()))
            .field("tid", ret.tid().as_raw())
            .site(ret.site())
            .field("retval", ret.retval())
            .field("duration_ns", nanos(ret.duration()))
            .write(out)
    }

    fn event(&mut self, out: &mut Out, event: &Event, time: Duration) -> Result<()> {
        self.saw(time);
        match event {
            Event::Attached {
                pid,
                threads,
                probes,
                pending,
            } => {
                self.root = Some(*pid);
                Obj::new("attach", time, Some(*pid))
                    .field("threads", *threads)
                    .field("probes", *probes)
                    .field("pending", *pending)
                    .write(out)
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
            Event::NeverArmed { probe } => Obj::new("warning", time, self.root)
                .field(
                    "message",
                    format!("probe {probe} never armed (its module was never loaded)"),
                )
                .field("probe", probe.as_str())
                .write(out),
        }
    }

    fn before_flush(&mut self, _out: &mut Out) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self, out: &mut Out, rows: Option<&[Row]>) -> Result<()> {
        for r in rows.unwrap_or_default() {
            Obj::new("summary", self.last, self.root)
                .field("probe", r.probe.as_str())
                .field("symbol", r.symbol.as_str())
                .field("calls", r.calls)
                .field("total_ns", nanos(r.total))
                .field("min_ns", nanos(r.min))
                .field("max_ns", nanos(r.max))
                .field("missed", r.missed)
                .write(out)?;
        }
        Ok(())
    }
}
