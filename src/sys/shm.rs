//! Memory shared with a tracee: the file behind a fast-probe ring (a memfd
//! the tracee created, opened through `/proc/PID/fd/N`) mapped into rtrace
//! too, so records are read with plain loads, no system call per record.
//!
//! The tracee writes the mapping concurrently: every access here is an
//! atomic or volatile one, and nothing read from it is trusted (the caller
//! bounds-checks what it finds).

use std::fs::OpenOptions;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A shared mapping of a file, unmapped on drop.
#[derive(Debug)]
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedMap {
    /// Opens `path` read-write, sets its size to `len` bytes (a new memfd
    /// is empty) and maps it shared, every page faulted in now. The file
    /// descriptor is closed again: the mapping keeps the file.
    pub fn open(path: &Path, len: usize) -> Result<SharedMap> {
        let what = || format!("cannot map {}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(what(), e))?;
        file.set_len(len as u64).map_err(|e| Error::io(what(), e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL), of a file
        // we hold open; nothing of ours is overwritten. The result is checked
        // for MAP_FAILED before it is used.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::io(what(), std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| Error::io(what(), std::io::Error::from_raw_os_error(libc::ENOMEM)))?;
        Ok(SharedMap { ptr, len })
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn word(&self, offset: u64) -> &AtomicU64 {
        let offset = usize::try_from(offset).expect("an offset in the mapping");
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len,
            "word {offset:#x} outside a mapping of {:#x} bytes",
            self.len
        );
        // SAFETY: in bounds and 8-aligned (checked above; the mapping is
        // page-aligned); the mapping lives as long as `self`; AtomicU64 has
        // the layout of u64 and every access through it is atomic, which is
        // what concurrent writers in the tracee require.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The word at `offset`, with acquire ordering (a record published by a
    /// sequence word is complete once the word is seen).
    pub fn load_u64(&self, offset: u64) -> u64 {
        self.word(offset).load(Ordering::Acquire)
    }

    /// Stores the word at `offset` with release ordering.
    pub fn store_u64(&self, offset: u64, value: u64) {
        self.word(offset).store(value, Ordering::Release)
    }

    /// Copies `buf.len()` bytes from `offset`, which must be 8-aligned
    /// (volatile loads, a word at a time: the tracee writes the mapping,
    /// though not a record while it is published).
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        let offset = usize::try_from(offset).expect("an offset in the mapping");
        assert!(
            offset % 8 == 0 && offset + buf.len() <= self.len,
            "read outside the mapping"
        );
        let mut chunks = buf.chunks_exact_mut(8);
        let mut at = offset;
        for chunk in &mut chunks {
            // SAFETY: in bounds and 8-aligned (checked above; the mapping is
            // page-aligned) in a live mapping; a volatile load of memory
            // another process may write is defined.
            let word = unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(at).cast::<u64>()) };
            chunk.copy_from_slice(&word.to_ne_bytes());
            at += 8;
        }
        for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
            // SAFETY: in bounds (checked above) of a live mapping.
            *b = unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(at + i)) };
        }
    }

    /// Copies `bytes` to `offset`.
    pub fn write(&self, offset: u64, bytes: &[u8]) {
        let offset = usize::try_from(offset).expect("an offset in the mapping");
        assert!(
            offset + bytes.len() <= self.len,
            "write outside the mapping"
        );
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: in bounds (checked above) of a live, writable mapping.
            unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(offset + i), b) };
        }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, of this length, unmapped once;
        // no reference into it outlives `self` (accessors borrow `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The time stamp counter (`rdtsc`), the clock fast-probe records carry.
pub fn tsc() -> u64 {
    // SAFETY: rdtsc reads a counter; it has no memory effect (x86-64 has
    // the instruction unconditionally).
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// True when the kernel lets user space read `fs_base` with `rdfsbase`
/// (`HWCAP2_FSGSBASE` in the auxiliary vector, Linux 5.9 and later on a CPU
/// that has it). The tracee runs on the same kernel and CPUs.
pub fn has_fsgsbase() -> bool {
    const HWCAP2_FSGSBASE: u64 = 1 << 1;
    // SAFETY: getauxval reads this process's auxiliary vector; no pointer.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    hwcap2 & HWCAP2_FSGSBASE != 0
}
