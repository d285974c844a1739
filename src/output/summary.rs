//! The `-c/--summary` statistics: per probe and symbol, calls and their times.
//!
//! This file owns the counting and the text table; the JSON printer turns the
//! same rows into `summary` events. A function probe counts completed calls
//! (an entry whose return never came, after a longjmp or an exit, is not a call
//! and has no duration); an instruction probe, or a function probe traced with
//! `--entry-only`, counts hits, with no time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::handler::{ProbeKind, Site};

/// What a summary row counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    /// Completed calls, with durations.
    Calls,
    /// Hits, without time.
    Hits,
}

/// One probe and symbol's totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) probe: String,
    pub(crate) symbol: String,
    pub(crate) counted: Counted,
    pub(crate) calls: u64,
    pub(crate) total: Duration,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    /// Calls whose return could not be watched (kretprobe's `nmissed`,
    /// [`Event::Missed`](crate::handler::Event::Missed)). The ptrace engine has
    /// no depth limit (every call in flight is kept, where the kernel stops at
    /// 64); calls unwound by longjmp or an exception did not return, and are
    /// not missed returns.
    pub(crate) missed: u64,
}

impl Row {
    fn add(&mut self, d: Duration) {
        self.min = if self.calls == 0 { d } else { self.min.min(d) };
        self.max = self.max.max(d);
        self.total += d;
        self.calls += 1;
    }

    pub(crate) fn average(&self) -> Duration {
        match u32::try_from(self.calls) {
            Ok(0) => Duration::ZERO,
            Ok(n) => self.total / n,
            Err(_) => Duration::from_nanos((self.total.as_nanos() / u128::from(self.calls)) as u64),
        }
    }
}

/// The statistics being gathered.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    rows: BTreeMap<(String, String), Row>,
}

impl Stats {
    fn row(&mut self, site: &Site, counted: Counted) -> &mut Row {
        self.rows
            .entry((site.probe.clone(), site.symbol.clone()))
            .or_insert_with(|| Row {
                probe: site.probe.clone(),
                symbol: site.symbol.clone(),
                counted,
                calls: 0,
                total: Duration::ZERO,
                min: Duration::ZERO,
                max: Duration::ZERO,
                missed: 0,
            })
    }

    /// A probe was hit. Counts it unless a return will complete the call.
    pub(crate) fn entry(&mut self, site: &Site) {
        match site.kind {
            ProbeKind::Function { returns: true } => {}
            ProbeKind::Function { returns: false } | ProbeKind::Instruction => {
                self.row(site, Counted::Hits).add(Duration::ZERO)
            }
        }
    }

    /// A call of `symbol` through `probe` whose return could not be watched.
    pub(crate) fn missed(&mut self, probe: &str, symbol: &str) {
        self.missed_n(probe, symbol, 1);
    }

    /// `n` hits or calls of `probe` at `symbol` were seen but not reported.
    pub(crate) fn missed_n(&mut self, probe: &str, symbol: &str, n: u64) {
        let row = self
            .rows
            .entry((probe.to_string(), symbol.to_string()))
            .or_insert_with(|| Row {
                probe: probe.to_string(),
                symbol: symbol.to_string(),
                counted: Counted::Calls,
                calls: 0,
                total: Duration::ZERO,
                min: Duration::ZERO,
                max: Duration::ZERO,
                missed: 0,
            });
        row.missed += n;
    }

    /// A probed function returned after `d`.
    pub(crate) fn ret(&mut self, site: &Site, d: Duration) {
        self.row(site, Counted::Calls).add(d);
    }

    /// The rows, most total time first, then most calls, then by name.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self.rows.values().cloned().collect();
        // The BTreeMap gives name order; a stable sort keeps it among equals.
        rows.sort_by(|a, b| b.total.cmp(&a.total).then(b.calls.cmp(&a.calls)));
        rows
    }
}

fn micros(d: Duration) -> String {
    format!("{:.3}", d.as_nanos() as f64 / 1000.0)
}

/// The strace-style table, with a total line.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>7} {:>12} {:>11} {:>11} {:>11} {:>7}  function [probe]",
        "calls", "total(s)", "avg(us)", "min(us)", "max(us)", "missed"
    );
    let rule = format!(
        "{} {} {} {} {} {}  {}\n",
        "-".repeat(7),
        "-".repeat(12),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(7),
        "-".repeat(16)
    );
    s.push_str(&rule);
    let (mut calls, mut total, mut missed) = (0u64, Duration::ZERO, 0u64);
    for r in rows {
        calls += r.calls;
        total += r.total;
        missed += r.missed;
        // Hits have no time: a dash says so where a 0 would claim a measurement.
        let (tot, avg, min, max) = match r.counted {
            Counted::Calls => (
                super::render::seconds(r.total),
                micros(r.average()),
                micros(r.min),
                micros(r.max),
            ),
            Counted::Hits => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "{:>7} {:>12} {:>11} {:>11} {:>11} {:>7}  {} [{}]",
            r.calls, tot, avg, min, max, r.missed, r.symbol, r.probe
        );
    }
    s.push_str(&rule);
    let _ = writeln!(
        s,
        "{:>7} {:>12} {:>11} {:>11} {:>11} {:>7}  total",
        calls,
        super::render::seconds(total),
        "",
        "",
        "",
        missed
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::ProbeId;
    use crate::RuntimeAddr;

    fn site(probe: &str, symbol: &str, kind: ProbeKind) -> Site {
        Site {
            probe: probe.into(),
            id: ProbeId(0),
            kind,
            symbol: symbol.into(),
            offset: 0,
            module: "/bin/x".into(),
            address: RuntimeAddr(0x1000),
        }
    }

    #[test]
    fn counts_calls_and_hits() {
        let f = site("work", "work", ProbeKind::Function { returns: true });
        let i = site("work+0x8", "work", ProbeKind::Instruction);
        let mut st = Stats::default();
        st.entry(&f);
        st.ret(&f, Duration::from_micros(10));
        st.entry(&f);
        st.ret(&f, Duration::from_micros(30));
        st.entry(&f); // never returns: not a call
        st.entry(&i);
        let rows = st.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].symbol, "work");
        assert_eq!(rows[0].probe, "work");
        assert_eq!(rows[0].calls, 2);
        assert_eq!(rows[0].total, Duration::from_micros(40));
        assert_eq!(rows[0].min, Duration::from_micros(10));
        assert_eq!(rows[0].max, Duration::from_micros(30));
        assert_eq!(rows[0].average(), Duration::from_micros(20));
        assert_eq!(rows[1].probe, "work+0x8");
        assert_eq!(rows[1].counted, Counted::Hits);
        assert_eq!(rows[1].calls, 1);
    }

    #[test]
    fn table_layout() {
        let f = site("work", "work", ProbeKind::Function { returns: true });
        let g = site("libc:str*", "strlen", ProbeKind::Function { returns: true });
        let i = site("work+0x8", "work", ProbeKind::Instruction);
        let mut st = Stats::default();
        st.ret(&f, Duration::from_nanos(9_000));
        st.ret(&f, Duration::from_nanos(55_000));
        st.ret(&g, Duration::from_nanos(100_000));
        st.entry(&i);
        st.entry(&i);
        let t = table(&st.rows());
        let expected =
            "  calls     total(s)     avg(us)     min(us)     max(us)  missed  function [probe]
------- ------------ ----------- ----------- ----------- -------  ----------------
      1     0.000100     100.000     100.000     100.000       0  strlen [libc:str*]
      2     0.000064      32.000       9.000      55.000       0  work [work]
      2            -           -           -           -       0  work [work+0x8]
------- ------------ ----------- ----------- ----------- -------  ----------------
      5     0.000164                                           0  total
";
        assert_eq!(t, expected);
    }
}
