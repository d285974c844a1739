//! The fast-probe component's clock and pace: the time stamp counter's
//! clock ([`TscClock`]), how often the rings are read ([`DRAIN_INTERVAL`])
//! and how a drain treats records not yet published ([`Drain`]). A leaf:
//! the tracer keeps the clock and the event loop paces itself by it without
//! knowing how records are read (`drain.rs`).

use std::time::{Duration, Instant};

use crate::addr::Pid;
use crate::sys::shm;

/// How often records are drained while the tracer is busy, and the longest
/// it sleeps while fast sites may be recording.
pub(crate) const DRAIN_INTERVAL: Duration = Duration::from_millis(2);

/// How far (in time) a record's time stamp may lie outside the run and
/// still be believed: counters of different CPUs differ slightly.
pub(super) const TSC_SLACK: Duration = Duration::from_secs(1);

/// Time stamp counter readings → time since the tracer started: a line
/// through the first reading, its slope measured at the start (a 2 ms spin)
/// and refined at every drain (the longer the baseline, the better).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TscClock {
    pub(super) tsc0: u64,
    pub(super) t0: Duration,
    pub(super) ns_per_tick: f64,
}

impl TscClock {
    pub fn calibrate(start: Instant) -> TscClock {
        let (tsc0, t0) = (shm::tsc(), start.elapsed());
        let mut clock = TscClock {
            tsc0,
            t0,
            ns_per_tick: 1.0,
        };
        while start.elapsed() < t0 + Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        clock.refine(start);
        clock
    }

    pub fn refine(&mut self, start: Instant) {
        let (tsc, t) = (shm::tsc(), start.elapsed());
        if tsc > self.tsc0 && t > self.t0 {
            self.ns_per_tick = (t - self.t0).as_nanos() as f64 / (tsc - self.tsc0) as f64;
        }
    }

    /// The time stamps a record read when the counter is at `now` may
    /// carry: from the clock's first reading (before any ring existed) to
    /// `now`, give or take [`TSC_SLACK`].
    pub fn plausible(&self, now: u64) -> std::ops::RangeInclusive<u64> {
        let slack = (TSC_SLACK.as_nanos() as f64 / self.ns_per_tick.max(1e-3)) as u64;
        self.tsc0.saturating_sub(slack)..=now.saturating_add(slack)
    }

    /// Nanoseconds per tick, times 2^32: what the return stub multiplies
    /// a timed call's ticks by (`ring::NS_MULT`).
    pub fn ns_mult(&self) -> u64 {
        (self.ns_per_tick * (1u64 << 32) as f64) as u64
    }

    /// Gives the clock's rate to the program's timed calls, in `map` (a
    /// ring).
    pub fn share(&self, map: &shm::SharedMap) {
        map.store_u64(crate::arch::detour::ring::NS_MULT, self.ns_mult());
    }

    pub fn time(&self, tsc: u64) -> Duration {
        let ticks = tsc.wrapping_sub(self.tsc0) as i64;
        let ns = self.t0.as_nanos() as f64 + ticks as f64 * self.ns_per_tick;
        Duration::from_nanos(ns.max(0.0) as u64)
    }
}

/// How a drain treats slots claimed but not yet published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drain {
    /// Leave them for later; thread pointers not known yet may be looked
    /// up by stopping the threads (the tracer is between two stops).
    Safe,
    /// Leave them for later; no thread is stopped for it.
    Quick,
    /// No thread will publish them any more (the process is gone, or every
    /// thread has left the detours): skip them.
    Final,
}

/// The component's timing, kept by the tracer beside the per-space state:
/// the clock, when the rings were last read, whether a drain left records,
/// the processes told their time stamps are read by rtrace.
#[derive(Debug)]
pub(crate) struct Pace {
    /// Fast records' clock, once a ring exists.
    pub(super) clock: Option<TscClock>,
    /// When the rings were last drained.
    pub(super) last_drain: Instant,
    /// A drain stopped at its budget: records may be waiting.
    pub(super) more_records: bool,
    /// Processes told their fast records' time stamps are read by rtrace.
    pub(super) tsc_warned: std::collections::HashSet<Pid>,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            clock: None,
            last_drain: Instant::now(),
            more_records: false,
            tsc_warned: Default::default(),
        }
    }
}

impl Pace {
    /// A drain stopped at its budget: records may be waiting.
    pub(in crate::engine) fn records_waiting(&self) -> bool {
        self.more_records
    }
}
