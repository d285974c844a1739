//! The `-c/--summary` statistics: per probe and symbol, calls and their times.
//!
//! This file owns the counting and the text table; the JSON printer turns the
//! same rows into `summary` events. A function probe counts completed calls
//! (an entry whose return never came, after a longjmp or an exit, is not a call
//! and has no duration); an instruction probe, or a function probe traced with
//! `--entry-only`, counts hits, with no time.
//!
//! With `--hist`, each row of calls also counts its durations in a
//! [`Log2Hist`] of nanoseconds, drawn under the table, bpftrace style.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::hist::Log2Hist;
use crate::handler::{CallTimes, ProbeKind, Site};

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
    /// The function, as JSON has it (C++ with its parameter types).
    pub(crate) symbol: String,
    /// The function, as the text table shows it (see `Site::name`).
    pub(crate) name: String,
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
    /// Calls that failed (see `Renderer::failed`); None when some calls
    /// were counted in the program (fast probes), whose values rtrace never
    /// saw.
    pub(crate) errors: Option<u64>,
    /// `--hist`: the calls' durations in nanoseconds (None for hits, which
    /// have no time, and without `--hist`).
    pub(crate) hist: Option<Log2Hist>,
}

impl Row {
    fn new(probe: &str, symbol: &str, counted: Counted, hist: bool) -> Row {
        Row {
            probe: probe.to_string(),
            symbol: symbol.to_string(),
            name: symbol.to_string(),
            counted,
            calls: 0,
            total: Duration::ZERO,
            min: Duration::ZERO,
            max: Duration::ZERO,
            missed: 0,
            errors: Some(0),
            hist: (hist && counted == Counted::Calls).then(Log2Hist::default),
        }
    }

    fn add(&mut self, d: Duration) {
        self.min = if self.calls == 0 { d } else { self.min.min(d) };
        self.max = self.max.max(d);
        self.total += d;
        self.calls += 1;
        if let Some(h) = &mut self.hist {
            h.add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        }
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
#[derive(Debug)]
pub(crate) struct Stats {
    rows: BTreeMap<(String, String), Row>,
    /// `--hist`: rows of calls keep a histogram of their durations.
    hist: bool,
    /// The key of the row found last: calls come in runs of one probe's,
    /// found again without making a key.
    last: Option<(String, String)>,
}

impl Stats {
    /// Statistics, with histograms when `hist`.
    pub(crate) fn new(hist: bool) -> Stats {
        Stats {
            rows: BTreeMap::new(),
            hist,
            last: None,
        }
    }

    fn row(&mut self, site: &Site, counted: Counted) -> &mut Row {
        let hist = self.hist;
        let same = self
            .last
            .as_ref()
            .is_some_and(|(p, s)| *p == site.probe && *s == site.symbol);
        if !same {
            self.last = Some((site.probe.clone(), site.symbol.clone()));
        }
        let key = self.last.as_ref().expect("just set");
        if !self.rows.contains_key(key) {
            let mut row = Row::new(&site.probe, &site.symbol, counted, hist);
            row.name = site.name.clone();
            self.rows.insert(key.clone(), row);
        }
        let row = self.rows.get_mut(key).expect("just inserted");
        // (A row a missed call made first has only the symbol.)
        if row.name != site.name {
            row.name = site.name.clone();
        }
        row
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

    /// `n` hits of a probe without returns, counted in the program.
    pub(crate) fn hits(&mut self, site: &Site, n: u64) {
        if n > 0 {
            let row = self.row(site, Counted::Hits);
            row.min = Duration::ZERO;
            row.calls += n;
            row.errors = None;
        }
    }

    /// `calls` calls of a probe with returns, timed in the program.
    pub(crate) fn timed(&mut self, site: &Site, calls: u64, times: &CallTimes) {
        if calls == 0 {
            return;
        }
        let row = self.row(site, Counted::Calls);
        row.min = match row.calls {
            0 => times.min,
            _ => row.min.min(times.min),
        };
        row.max = row.max.max(times.max);
        row.total += times.total;
        row.calls += calls;
        // (Only the calls of a function that cannot fail are timed, not
        // recorded: its errors stay known, none.)
        if let Some(h) = &mut row.hist {
            h.add_buckets(&times.log2_ns);
        }
    }

    /// `n` hits or calls of `probe` at `symbol` were seen but not reported
    /// (returns that could not be watched, records lost).
    pub(crate) fn missed_n(&mut self, probe: &str, symbol: &str, n: u64) {
        let hist = self.hist;
        let row = self
            .rows
            .entry((probe.to_string(), symbol.to_string()))
            .or_insert_with(|| Row::new(probe, symbol, Counted::Calls, hist));
        row.missed += n;
    }

    /// A probed function returned after `d`; `failed` as `-c` counts errors.
    pub(crate) fn ret(&mut self, site: &Site, d: Duration, failed: bool) {
        let row = self.row(site, Counted::Calls);
        row.add(d);
        if failed {
            if let Some(e) = &mut row.errors {
                *e += 1;
            }
        }
    }

    /// The rows in `order`: by default most total time first, then most
    /// calls, then by name.
    pub(crate) fn rows(&self, order: SummaryOrder) -> Vec<Row> {
        let mut rows: Vec<Row> = self.rows.values().cloned().collect();
        // The BTreeMap gives name order; a stable sort keeps it among equals.
        match order {
            SummaryOrder::Time => {
                rows.sort_by(|a, b| b.total.cmp(&a.total).then(b.calls.cmp(&a.calls)))
            }
            SummaryOrder::Calls => rows.sort_by_key(|r| std::cmp::Reverse(r.calls)),
            SummaryOrder::Avg => rows.sort_by_key(|r| std::cmp::Reverse(r.average())),
            SummaryOrder::Max => rows.sort_by_key(|r| std::cmp::Reverse(r.max)),
            SummaryOrder::Errors => rows.sort_by_key(|r| std::cmp::Reverse(r.errors)),
            SummaryOrder::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        }
        rows
    }
}

fn micros(d: Duration) -> String {
    format!("{:.3}", d.as_nanos() as f64 / 1000.0)
}

/// How `-c` orders its rows (`-S`, as strace's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SummaryOrder {
    /// Most total time first (the default), then most calls.
    #[default]
    Time,
    /// Most calls first.
    Calls,
    /// Longest average first.
    Avg,
    /// Longest call first.
    Max,
    /// Most errors first.
    Errors,
    /// By function name.
    Name,
}

/// The strace-style table, with a total line: per row its calls, their
/// times, the missed returns, the errors (`-` where some calls were counted
/// in the program) and its share of all the rows' time (`% time`).
pub(crate) fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>7} {:>12} {:>11} {:>11} {:>11} {:>7} {:>7} {:>7}  function [probe]",
        "calls", "total(s)", "avg(us)", "min(us)", "max(us)", "missed", "errors", "% time"
    );
    let rule = format!(
        "{} {} {} {} {} {} {} {}  {}\n",
        "-".repeat(7),
        "-".repeat(12),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(7),
        "-".repeat(7),
        "-".repeat(7),
        "-".repeat(16)
    );
    s.push_str(&rule);
    let all: Duration = rows.iter().map(|r| r.total).sum();
    let share = |d: Duration| match all.is_zero() {
        true => "-".to_string(),
        false => format!("{:.2}", d.as_secs_f64() * 100.0 / all.as_secs_f64()),
    };
    let (mut calls, mut total, mut missed) = (0u64, Duration::ZERO, 0u64);
    let mut errors = Some(0u64);
    for r in rows {
        calls += r.calls;
        total += r.total;
        missed += r.missed;
        // Hits have no values: no errors either.
        let errs = match (r.counted, r.errors) {
            (Counted::Calls, Some(e)) => {
                errors = errors.map(|a| a + e);
                e.to_string()
            }
            (Counted::Calls, None) => {
                errors = None;
                "-".to_string()
            }
            (Counted::Hits, _) => "-".to_string(),
        };
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
        let pct = match r.counted {
            Counted::Calls => share(r.total),
            Counted::Hits => "-".into(),
        };
        let _ = writeln!(
            s,
            "{:>7} {:>12} {:>11} {:>11} {:>11} {:>7} {:>7} {:>7}  {} [{}]",
            r.calls, tot, avg, min, max, r.missed, errs, pct, r.name, r.probe
        );
    }
    s.push_str(&rule);
    let _ = writeln!(
        s,
        "{:>7} {:>12} {:>11} {:>11} {:>11} {:>7} {:>7} {:>7}  total",
        calls,
        super::render::seconds(total),
        "",
        "",
        "",
        missed,
        errors.map_or("-".to_string(), |e| e.to_string()),
        if all.is_zero() { "-" } else { "100.00" }
    );
    s
}

/// `--hist`: the histogram of each row of calls, in the table's order, as
/// bpftrace draws them: a title line naming the row and the unit, the
/// buckets, an empty line. Rows without calls have none.
pub(crate) fn histograms(rows: &[Row]) -> String {
    let mut s = String::new();
    for r in rows {
        let Some(h) = r.hist.as_ref().filter(|h| h.total() > 0) else {
            continue;
        };
        let _ = write!(s, "\n{} [{}], ns:\n{}", r.name, r.probe, h.render());
    }
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
            name: symbol.into(),
            offset: 0,
            module: "/bin/x".into(),
            address: RuntimeAddr(0x1000),
        }
    }

    #[test]
    fn counts_calls_and_hits() {
        let f = site("work", "work", ProbeKind::Function { returns: true });
        let i = site("work+0x8", "work", ProbeKind::Instruction);
        let mut st = Stats::new(false);
        st.entry(&f);
        st.ret(&f, Duration::from_micros(10), false);
        st.entry(&f);
        st.ret(&f, Duration::from_micros(30), false);
        st.entry(&f); // never returns: not a call
        st.entry(&i);
        let rows = st.rows(SummaryOrder::Time);
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
    fn histograms_count_each_call_in_its_power_of_two() {
        let f = site("work", "work", ProbeKind::Function { returns: true });
        let i = site("work+0x8", "work", ProbeKind::Instruction);
        let mut st = Stats::new(true);
        for ns in [9_000, 10_000, 16_383, 16_384, 55_000] {
            st.ret(&f, Duration::from_nanos(ns), false);
        }
        st.entry(&i);
        st.missed_n("libc:close", "close", 1);
        let rows = st.rows(SummaryOrder::Time);
        let work = rows.iter().find(|r| r.probe == "work").unwrap();
        let buckets: Vec<(Option<i64>, u64)> = work
            .hist
            .as_ref()
            .unwrap()
            .buckets()
            .iter()
            .map(|b| (b.low, b.count))
            .collect();
        assert_eq!(
            buckets,
            [(Some(8192), 3), (Some(16384), 1), (Some(32768), 1)]
        );
        let hits = rows.iter().find(|r| r.probe == "work+0x8").unwrap();
        assert_eq!(hits.hist, None, "hits have no time");
        assert_eq!(
            histograms(&rows),
            "
work [work], ns:
[8K, 16K)              3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[16K, 32K)             1 |@@@@@@@@@@@@@@@@@                                   |
[32K, 64K)             1 |@@@@@@@@@@@@@@@@@                                   |
",
            "a row without calls (close: missed only) draws nothing"
        );
        // Without --hist, nothing is kept.
        let mut st = Stats::new(false);
        st.ret(&f, Duration::from_nanos(9_000), false);
        assert_eq!(st.rows(SummaryOrder::Time)[0].hist, None);
        assert_eq!(histograms(&st.rows(SummaryOrder::Time)), "");
    }

    #[test]
    fn table_layout() {
        let f = site("work", "work", ProbeKind::Function { returns: true });
        let g = site("libc:str*", "strlen", ProbeKind::Function { returns: true });
        let i = site("work+0x8", "work", ProbeKind::Instruction);
        let mut st = Stats::new(false);
        st.ret(&f, Duration::from_nanos(9_000), false);
        st.ret(&f, Duration::from_nanos(55_000), false);
        st.ret(&g, Duration::from_nanos(100_000), false);
        st.entry(&i);
        st.entry(&i);
        let t = table(&st.rows(SummaryOrder::Time));
        let expected =
            "  calls     total(s)     avg(us)     min(us)     max(us)  missed  errors  % time  function [probe]
------- ------------ ----------- ----------- ----------- ------- ------- -------  ----------------
      1     0.000100     100.000     100.000     100.000       0       0   60.98  strlen [libc:str*]
      2     0.000064      32.000       9.000      55.000       0       0   39.02  work [work]
      2            -           -           -           -       0       -       -  work [work+0x8]
------- ------------ ----------- ----------- ----------- ------- ------- -------  ----------------
      5     0.000164                                           0       0  100.00  total
";
        assert_eq!(t, expected);
    }
}
