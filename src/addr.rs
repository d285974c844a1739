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
    fn conversions_and_formats() {
        let a = RuntimeAddr::from(0x7f00_dead_beefu64);
        assert_eq!(u64::from(a), 0x7f00_dead_beef);
        assert_eq!(
            format!("{a:x} {a:#x} {a:X} {a:016x}"),
            "7f00deadbeef 0x7f00deadbeef 7F00DEADBEEF 00007f00deadbeef"
        );
    }
}
