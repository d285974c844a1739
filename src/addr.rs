//! Typed addresses and process identifiers.
//!
//! Three address spaces meet in a tracer and must never be confused:
//! - [`RuntimeAddr`]: an address in the tracee's virtual memory (what `rip` holds);
//! - [`LinkAddr`]: an address as the ELF file states it (`st_value`, `p_vaddr`);
//! - [`FileOffset`]: a byte offset into the ELF file.
//!
//! Only a loaded module (`symbols::Module`) converts between them, because only it
//! knows the load bias. This module owns no policy and performs no I/O.

use std::fmt;

pub use nix::unistd::Pid;

/// A thread id. Linux threads and processes share one id space; the tgid of a
/// process is the tid of its first thread.
pub type Tid = Pid;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// This address moved by `delta` bytes (wrapping, as the hardware does).
            pub const fn offset(self, delta: i64) -> Self {
                Self(self.0.wrapping_add_signed(delta))
            }

            /// `self - base` in bytes, when `self >= base`.
            pub fn distance_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl fmt::UpperHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::UpperHex::fmt(&self.0, f)
            }
        }

        /// The address with this raw value (a register's, a pointer read
        /// from memory).
        impl From<u64> for $name {
            fn from(raw: u64) -> Self {
                Self(raw)
            }
        }

        /// The raw value.
        impl From<$name> for u64 {
            fn from(addr: $name) -> u64 {
                addr.0
            }
        }
    };
}

address_type!(
    /// An address in the tracee's virtual address space.
    RuntimeAddr
);
address_type!(
    /// An address as written in an ELF file (symbol values, segment addresses).
    LinkAddr
);
address_type!(
    /// A byte offset into a file.
    FileOffset
);

/// A hasher for maps keyed by addresses and small ids, looked up once or
/// twice per event (FxHash's multiply and rotate): far cheaper than the
/// standard library's SipHash, whose resistance to chosen keys nothing
/// here needs.
#[derive(Clone, Copy, Default)]
pub struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`AddrHasher`].
pub type AddrMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<AddrHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_distance() {
        let a = RuntimeAddr(0x1000);
        assert_eq!(a.offset(8), RuntimeAddr(0x1008));
        assert_eq!(a.offset(-1), RuntimeAddr(0xfff));
        assert_eq!(RuntimeAddr(0x1010).distance_from(a), Some(0x10));
        assert_eq!(a.distance_from(RuntimeAddr(0x1010)), None);
        assert_eq!(a.to_string(), "0x1000");
    }

    #[test]
    fn addr_map_keeps_what_it_is_given() {
        let mut m: AddrMap<(usize, RuntimeAddr), u64> = AddrMap::default();
        for i in 0..10_000u64 {
            m.insert((i as usize % 7, RuntimeAddr(0x5555_0000 + 16 * i)), i);
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(
            m[&(9_999 % 7, RuntimeAddr(0x5555_0000 + 16 * 9_999))],
            9_999
        );
        assert!(!m.contains_key(&(0, RuntimeAddr(0x5555_0008))));
    }

    #[test]
    fn conversions_and_formats() {
        let a = RuntimeAddr::from(0x7f00_dead_beefu64);
        assert_eq!(u64::from(a), 0x7f00_dead_beef);
        assert_eq!(
            format!("{a:x} {a:#x} {a:X} {a:016x}"),
            "7f00deadbeef 0x7f00deadbeef 7F00DEADBEEF 00007f00deadbeef"
        );
    }
}
