//! Power-of-two histograms, drawn as bpftrace's `hist()` draws them.
//!
//! One bucket for negative values, one for 0, one for 1, then one per power of
//! two: `[2, 4)`, `[4, 8)`, … `[2^62, 2^63)`. Adding a value is a count of its
//! leading zeros; no allocation, so a handler can add on every hit.

use std::fmt::Write as _;

/// Buckets: negative, 0, then `[2^k, 2^(k+1))` for k in 0..63 (k = 0 is `[1]`).
const BUCKETS: usize = 2 + 63;

/// A log2 histogram of signed 64-bit values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log2Hist {
    counts: [u64; BUCKETS],
}

impl Default for Log2Hist {
    fn default() -> Self {
        Log2Hist {
            counts: [0; BUCKETS],
        }
    }
}

/// One bucket: the values `low..high` (`high` exclusive; `None` past `i64::MAX`
/// or for the negative bucket's lower end) and how many fell in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The lowest value of the bucket (`None`: every negative value).
    pub low: Option<i64>,
    /// One past the highest value (`None` for the last bucket).
    pub high: Option<i64>,
    /// Values counted.
    pub count: u64,
}

impl Log2Hist {
    /// Counts `v`.
    pub fn add(&mut self, v: i64) {
        let i = match v {
            i64::MIN..=-1 => 0,
            0 => 1,
            // 1 → 2, 2..4 → 3, …: 2 + floor(log2 v).
            v => 2 + (63 - v.leading_zeros() as usize),
        };
        self.counts[i] += 1;
    }

    /// Adds counts bucket by bucket, in this histogram's order (negative,
    /// 0, then one per power of two), as [`CallTimes::log2_ns`] has them.
    ///
    /// [`CallTimes::log2_ns`]: crate::handler::CallTimes::log2_ns
    pub fn add_buckets(&mut self, counts: &[u64; BUCKETS]) {
        for (c, &n) in self.counts.iter_mut().zip(counts) {
            *c += n;
        }
    }

    /// Values counted in all.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The buckets from the first to the last that counted something (the
    /// empty ones between included, as bpftrace prints them); empty when
    /// nothing was counted.
    pub fn buckets(&self) -> Vec<Bucket> {
        let Some(first) = self.counts.iter().position(|&c| c > 0) else {
            return Vec::new();
        };
        let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(first);
        (first..=last)
            .map(|i| {
                let (low, high) = match i {
                    0 => (None, Some(0)),
                    1 => (Some(0), Some(1)),
                    i => {
                        let k = (i - 2) as u32;
                        (Some(1i64 << k), 1i64.checked_shl(k + 1).filter(|&h| h > 0))
                    }
                };
                Bucket {
                    low,
                    high,
                    count: self.counts[i],
                }
            })
            .collect()
    }

    /// The histogram as bpftrace prints it: one line per bucket, the range,
    /// the count and a bar of `@` scaled to the largest bucket.
    ///
    /// ```text
    /// [256, 512)             3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
    /// [512, 1K)              1 |@@@@@@@@@@@@@@@@@                                   |
    /// ```
    pub fn render(&self) -> String {
        let rows: Vec<(String, u64)> = self
            .buckets()
            .iter()
            .map(|b| {
                let range = match (b.low, b.high) {
                    (None, _) => "(..., 0)".to_string(),
                    (Some(low), Some(high)) if high - low == 1 => format!("[{}]", human(low)),
                    (Some(low), Some(high)) => format!("[{}, {})", human(low), human(high)),
                    (Some(low), None) => format!("[{}, ...)", human(low)),
                };
                (range, b.count)
            })
            .collect();
        draw(&rows)
    }
}

/// Draws histogram rows as bpftrace does: the range in 16 columns, the
/// count in 8, a bar of `@` scaled to the largest count, rounded down (a
/// count far below the largest draws no `@`, as in bpftrace's `hist()`).
fn draw(rows: &[(String, u64)]) -> String {
    const WIDTH: u64 = 52;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let mut s = String::new();
    for (range, count) in rows {
        let bar = (count * WIDTH / max) as usize;
        let _ = writeln!(
            s,
            "{range:<16}{count:>8} |{:<width$}|",
            "@".repeat(bar),
            width = WIDTH as usize
        );
    }
    s
}

/// A linear histogram, bpftrace's `lhist(value, min, max, step)`: one bucket
/// below `min`, one per `step` from `min` up to `max`, one from `max` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearHist {
    min: i64,
    max: i64,
    step: i64,
    /// Below `min`, then the steps, then `max` and above.
    counts: Vec<u64>,
}

impl LinearHist {
    /// An empty histogram; `None` unless `step` > 0, `max` > `min`, and at
    /// most 1000 buckets.
    pub fn new(min: i64, max: i64, step: i64) -> Option<LinearHist> {
        if step <= 0 || max <= min {
            return None;
        }
        let steps = (max.checked_sub(min)? as u64).div_ceil(step as u64);
        (steps <= 1000).then(|| LinearHist {
            min,
            max,
            step,
            counts: vec![0; steps as usize + 2],
        })
    }

    /// Its `min`, `max` and `step`.
    pub fn shape(&self) -> (i64, i64, i64) {
        (self.min, self.max, self.step)
    }

    /// Counts `v`.
    pub fn add(&mut self, v: i64) {
        let last = self.counts.len() - 1;
        let i = if v < self.min {
            0
        } else if v >= self.max {
            last
        } else {
            (1 + (v - self.min) / self.step) as usize
        };
        self.counts[i.min(last)] += 1;
    }

    /// Adds another histogram of the same shape (false, and nothing
    /// added, if its shape differs).
    pub fn merge(&mut self, other: &LinearHist) -> bool {
        if self.shape() != other.shape() {
            return false;
        }
        for (c, n) in self.counts.iter_mut().zip(&other.counts) {
            *c += n;
        }
        true
    }

    /// Forgets every count.
    pub fn zero(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
    }

    /// Values counted in all.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The buckets from the first to the last that counted something.
    pub fn buckets(&self) -> Vec<Bucket> {
        let Some(first) = self.counts.iter().position(|&c| c > 0) else {
            return Vec::new();
        };
        let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(first);
        let end = self.counts.len() - 1;
        (first..=last)
            .map(|i| {
                let (low, high) = match i {
                    0 => (None, Some(self.min)),
                    i if i == end => (Some(self.max), None),
                    i => {
                        // `low` is below `max` (there are steps enough and
                        // no more), but `low + step` may pass `i64::MAX`
                        // when `max` is near it: the sums saturate, and the
                        // last bucket ends at `max`.
                        let low = (i as i64 - 1)
                            .saturating_mul(self.step)
                            .saturating_add(self.min);
                        (Some(low), Some(low.saturating_add(self.step).min(self.max)))
                    }
                };
                Bucket {
                    low,
                    high,
                    count: self.counts[i],
                }
            })
            .collect()
    }

    /// As bpftrace prints an lhist: `[0, 10)`, `(..., 0)`, `[100, ...)`.
    pub fn render(&self) -> String {
        let label = |v: i64| lhist_label(v, self.step);
        let rows: Vec<(String, u64)> = self
            .buckets()
            .iter()
            .map(|b| {
                let range = match (b.low, b.high) {
                    (None, Some(high)) => format!("(..., {})", label(high)),
                    (Some(low), None) => format!("[{}, ...)", label(low)),
                    (Some(low), Some(high)) => format!("[{}, {})", label(low), label(high)),
                    (None, None) => String::new(),
                };
                (range, b.count)
            })
            .collect();
        draw(&rows)
    }
}

/// An lhist bound as bpftrace writes it: with a K or M suffix when the
/// step is a multiple of 1024 and the bound of the unit.
fn lhist_label(v: i64, step: i64) -> String {
    const K: i64 = 1024;
    if step % K != 0 || v == 0 {
        return v.to_string();
    }
    if v % (K * K) == 0 {
        format!("{}M", v / (K * K))
    } else if v % K == 0 {
        format!("{}K", v / K)
    } else {
        v.to_string()
    }
}

/// `512`, `1K`, `4M`: a power of two with bpftrace's binary suffixes.
fn human(v: i64) -> String {
    const SUFFIXES: [(u32, &str); 6] = [
        (60, "E"),
        (50, "P"),
        (40, "T"),
        (30, "G"),
        (20, "M"),
        (10, "K"),
    ];
    for (shift, suffix) in SUFFIXES {
        let unit = 1i64 << shift;
        if v >= unit && v % unit == 0 {
            return format!("{}{suffix}", v / unit);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_their_power_of_two() {
        let mut h = Log2Hist::default();
        for v in [0, 1, 2, 3, 4, 7, 8, 1023, 1024, -5, i64::MAX] {
            h.add(v);
        }
        let b = h.buckets();
        assert_eq!(b.len(), BUCKETS, "from the negative bucket to the last");
        let count = |low: Option<i64>| b.iter().find(|b| b.low == low).unwrap().count;
        assert_eq!(count(None), 1);
        assert_eq!(count(Some(0)), 1);
        assert_eq!(count(Some(1)), 1);
        assert_eq!(count(Some(2)), 2, "2 and 3");
        assert_eq!(count(Some(4)), 2, "4 and 7");
        assert_eq!(count(Some(8)), 1);
        assert_eq!(count(Some(512)), 1, "1023");
        assert_eq!(count(Some(1024)), 1);
        assert_eq!(count(Some(1 << 62)), 1, "i64::MAX");
        assert_eq!(b.last().unwrap().high, None);
        assert_eq!(h.total(), 11);
    }

    #[test]
    fn linear_buckets_as_bpftrace_has_them() {
        let mut h = LinearHist::new(0, 30, 10).unwrap();
        for v in [-1, 0, 9, 10, 25, 30, 99] {
            h.add(v);
        }
        assert_eq!(h.total(), 7);
        let lines: Vec<String> = h.render().lines().map(|l| l[..24].to_string()).collect();
        assert_eq!(
            lines,
            [
                "(..., 0)               1",
                "[0, 10)                2",
                "[10, 20)               1",
                "[20, 30)               1",
                "[30, ...)              2",
            ]
        );
        let mut k = LinearHist::new(0, 4096, 1024).unwrap();
        k.add(1500);
        assert!(k.render().starts_with("[1K, 2K)  "), "{}", k.render());
        assert!(LinearHist::new(0, 10, 0).is_none());
        assert!(LinearHist::new(10, 10, 1).is_none());
        let mut other = LinearHist::new(0, 30, 10).unwrap();
        other.add(5);
        assert!(h.merge(&other));
        assert_eq!(h.total(), 8);
        assert!(!h.merge(&k));
    }

    /// Bounds near the ends of i64 do not wrap: the last step ends at `max`.
    #[test]
    fn linear_bounds_near_i64_max_and_min_do_not_wrap() {
        let mut h = LinearHist::new(i64::MAX - 7, i64::MAX, 5).unwrap();
        h.add(i64::MAX - 1);
        h.add(i64::MAX - 7);
        h.add(i64::MAX);
        let rendered = h.render();
        let lines: Vec<&str> = rendered
            .lines()
            .map(|l| l.split(" |").next().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "[9223372036854775800, 9223372036854775805)       1",
                "[9223372036854775805, 9223372036854775807)       1",
                "[9223372036854775807, ...)       1",
            ]
        );
        let mut l = LinearHist::new(i64::MIN, i64::MIN + 10, 7).unwrap();
        l.add(i64::MIN + 8);
        assert_eq!(
            l.buckets()[0].low.zip(l.buckets()[0].high),
            Some((i64::MIN + 7, i64::MIN + 10))
        );
    }

    #[test]
    fn renders_like_bpftrace() {
        let mut h = Log2Hist::default();
        for v in [300, 400, 500, 600] {
            h.add(v);
        }
        h.add(3000);
        let text = h.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "[256, 512)             3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
                "[512, 1K)              1 |@@@@@@@@@@@@@@@@@                                   |",
                "[1K, 2K)               0 |                                                    |",
                "[2K, 4K)               1 |@@@@@@@@@@@@@@@@@                                   |",
            ]
        );
        assert_eq!(Log2Hist::default().render(), "");
        let mut small = Log2Hist::default();
        small.add(0);
        small.add(1);
        small.add(-1);
        assert_eq!(
            small.render().lines().map(|l| &l[..16]).collect::<Vec<_>>(),
            ["(..., 0)        ", "[0]             ", "[1]             "]
        );
    }
}
