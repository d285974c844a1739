//! The probe table: 64 buckets keyed by address, like the kernel's `kprobe_table`.
//!
//! The bucket is `hash_ptr(addr, 6)`: the address times the 64-bit golden ratio,
//! top 6 bits. Function entries are 16-byte aligned, so `addr % 64` would put every
//! probe in 4 buckets; the multiplicative hash spreads them evenly. Each bucket is a
//! short vector (the kernel's chained hlist), so a trap finds its site in O(1)
//! for any number of probes the table is sized for.

use crate::addr::RuntimeAddr;

/// log2 of the number of buckets.
pub const TABLE_BITS: u32 = 6;
/// The number of buckets.
pub const TABLE_SIZE: usize = 1 << TABLE_BITS;

const GOLDEN_RATIO_64: u64 = 0x61C8_8646_80B5_83EB;

/// The kernel's `hash_64(addr, TABLE_BITS)`.
pub fn bucket_of(addr: RuntimeAddr) -> usize {
    (addr.get().wrapping_mul(GOLDEN_RATIO_64) >> (64 - TABLE_BITS)) as usize
}

/// Values of type `T` keyed by runtime address, in 64 hashed buckets.
#[derive(Debug, Clone)]
pub struct ProbeTable<T> {
    buckets: Vec<Vec<(RuntimeAddr, T)>>,
}

impl<T> Default for ProbeTable<T> {
    fn default() -> Self {
        ProbeTable {
            buckets: (0..TABLE_SIZE).map(|_| Vec::new()).collect(),
        }
    }
}

impl<T> ProbeTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of entries (for tests: the engine never counts them).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// True when empty.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry at `addr`.
    pub fn get(&self, addr: RuntimeAddr) -> Option<&T> {
        self.buckets[bucket_of(addr)]
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, v)| v)
    }

    /// The entry at `addr`, writable.
    pub fn get_mut(&mut self, addr: RuntimeAddr) -> Option<&mut T> {
        self.buckets[bucket_of(addr)]
            .iter_mut()
            .find(|(a, _)| *a == addr)
            .map(|(_, v)| v)
    }

    /// Inserts `value` at `addr`, returning the value it replaces.
    pub fn insert(&mut self, addr: RuntimeAddr, value: T) -> Option<T> {
        let bucket = &mut self.buckets[bucket_of(addr)];
        if let Some(slot) = bucket.iter_mut().find(|(a, _)| *a == addr) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        bucket.push((addr, value));
        None
    }

    /// Removes the entry at `addr`.
    pub fn remove(&mut self, addr: RuntimeAddr) -> Option<T> {
        let bucket = &mut self.buckets[bucket_of(addr)];
        let i = bucket.iter().position(|(a, _)| *a == addr)?;
        Some(bucket.swap_remove(i).1)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (RuntimeAddr, &T)> {
        self.buckets.iter().flatten().map(|(a, v)| (*a, v))
    }

    /// Removes and returns every entry.
    pub fn drain(&mut self) -> Vec<(RuntimeAddr, T)> {
        self.buckets.iter_mut().flat_map(std::mem::take).collect()
    }

    /// The number of entries in each bucket (for tests).
    #[cfg(test)]
    fn bucket_lengths(&self) -> Vec<usize> {
        self.buckets.iter().map(Vec::len).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut t = ProbeTable::new();
        assert!(t.is_empty());
        assert_eq!(t.insert(RuntimeAddr(0x401136), "a"), None);
        assert_eq!(t.insert(RuntimeAddr(0x401136), "b"), Some("a"));
        assert_eq!(t.insert(RuntimeAddr(0x401150), "c"), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(RuntimeAddr(0x401136)), Some(&"b"));
        assert_eq!(t.get(RuntimeAddr(0x401137)), None);
        *t.get_mut(RuntimeAddr(0x401150)).unwrap() = "d";
        assert_eq!(t.remove(RuntimeAddr(0x401150)), Some("d"));
        assert_eq!(t.remove(RuntimeAddr(0x401150)), None);
        assert_eq!(t.len(), 1);
        let drained = t.drain();
        assert_eq!(drained, vec![(RuntimeAddr(0x401136), "b")]);
        assert!(t.is_empty());
    }

    #[test]
    fn kernel_hash_values() {
        // hash_64(val, 6) = (val * GOLDEN_RATIO_64) >> 58, as in include/linux/hash.h.
        assert_eq!(bucket_of(RuntimeAddr(0)), 0);
        assert_eq!(bucket_of(RuntimeAddr(1)), 0x61C8_8646_80B5_83EB >> 58);
        for a in [0x1000u64, 0x401136, 0x7fff_ffff_f000] {
            assert_eq!(
                bucket_of(RuntimeAddr(a)),
                (a.wrapping_mul(GOLDEN_RATIO_64) >> 58) as usize
            );
            assert!(bucket_of(RuntimeAddr(a)) < TABLE_SIZE);
        }
    }

    #[test]
    fn aligned_function_entries_spread_over_buckets() {
        // 3,000 16-byte-aligned entries, as in a libc: every bucket is used and
        // none holds more than twice its fair share.
        let mut t = ProbeTable::new();
        for i in 0..3000u64 {
            t.insert(RuntimeAddr(0x7f12_3400_0000 + i * 16), i);
        }
        let lens = t.bucket_lengths();
        assert_eq!(lens.iter().sum::<usize>(), 3000);
        let fair = 3000 / TABLE_SIZE;
        assert!(lens.iter().all(|&l| l > 0), "{lens:?}");
        assert!(lens.iter().all(|&l| l <= 2 * fair), "{lens:?}");
        for i in 0..3000u64 {
            assert_eq!(t.get(RuntimeAddr(0x7f12_3400_0000 + i * 16)), Some(&i));
        }
    }
}
