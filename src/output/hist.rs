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
        const WIDTH: u64 = 52;
        let buckets = self.buckets();
        let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
        let mut s = String::new();
        for b in &buckets {
            let range = match (b.low, b.high) {
                (None, _) => "(..., 0)".to_string(),
                (Some(low), Some(high)) if high - low == 1 => format!("[{}]", human(low)),
                (Some(low), Some(high)) => format!("[{}, {})", human(low), human(high)),
                (Some(low), None) => format!("[{}, ...)", human(low)),
            };
            let bar = (b.count * WIDTH).div_ceil(max) as usize;
            let _ = writeln!(
                s,
                "{range:<16}{:>8} |{:<width$}|",
                b.count,
                "@".repeat(bar),
                width = WIDTH as usize
            );
        }
        s
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
                "[512, 1K)              1 |@@@@@@@@@@@@@@@@@@                                  |",
                "[1K, 2K)               0 |                                                    |",
                "[2K, 4K)               1 |@@@@@@@@@@@@@@@@@@                                  |",
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
