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
    /// is empty) and maps it shared, every page faulted in now when
    /// `populate`, else as it is first touched. The file descriptor is
    /// closed again: the mapping keeps the file.
    pub fn open(path: &Path, len: usize, populate: bool) -> Result<SharedMap> {
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
                match populate {
                    true => libc::MAP_SHARED | libc::MAP_POPULATE,
                    false => libc::MAP_SHARED,
                },
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

    /// Its size in bytes (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
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

    /// Appends the `len` bytes at `offset` (both multiples of 8) to `out`,
    /// a word at a time (a record another process writes is read as its
    /// words are), without first filling the room they take.
    pub fn read_append(&self, offset: u64, len: usize, out: &mut Vec<u8>) {
        let offset = usize::try_from(offset).expect("an offset in the mapping");
        assert!(
            offset.is_multiple_of(8) && len.is_multiple_of(8) && offset + len <= self.len,
            "read outside the mapping"
        );
        out.reserve(len);
        let room = &mut out.spare_capacity_mut()[..len];
        for (i, chunk) in room.chunks_exact_mut(8).enumerate() {
            // SAFETY: in bounds and 8-aligned (checked above; the mapping is
            // page-aligned) in a live mapping; a volatile load of memory
            // another process may write is defined.
            let word = unsafe {
                std::ptr::read_volatile(self.ptr.as_ptr().add(offset + 8 * i).cast::<u64>())
            };
            for (d, b) in chunk.iter_mut().zip(word.to_ne_bytes()) {
                d.write(b);
            }
        }
        // SAFETY: the `len` bytes past the length were all written above.
        unsafe { out.set_len(out.len() + len) };
    }

    /// Asks the CPU to bring in the cache line at `offset` ahead of its
    /// use (a hint: nothing past the mapping is asked for, and a prefetch
    /// never faults nor changes memory).
    pub fn prefetch_at(&self, offset: u64) {
        let Ok(offset) = usize::try_from(offset) else {
            return;
        };
        if offset >= self.len {
            return;
        }
        // SAFETY: in the live mapping (checked above); prefetching has no
        // memory effect and never faults.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                self.ptr.as_ptr().add(offset).cast(),
            );
        }
    }

    /// Copies `bytes` to `offset` (for tests: the tracee writes the ring).
    #[cfg(test)]
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

// SAFETY: the mapping is plain memory that belongs to the value; every
// access through it is atomic or volatile (see the accessors), which is what
// another process writing it already requires, so threads of rtrace may
// share it too (the watchman thread sleeps on a word of it).
unsafe impl Send for SharedMap {}
// SAFETY: see `Send`: `&SharedMap` only offers atomic and volatile accesses.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    fn word32(&self, offset: u64) -> &std::sync::atomic::AtomicU32 {
        let offset = usize::try_from(offset).expect("an offset in the mapping");
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "word {offset:#x} outside a mapping of {:#x} bytes",
            self.len
        );
        // SAFETY: in bounds and 4-aligned (checked above), in a mapping that
        // lives as long as `self`; AtomicU32 has the layout of u32.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(offset)
                .cast::<std::sync::atomic::AtomicU32>()
        }
    }

    /// The 32-bit word at `offset`.
    pub fn load_u32(&self, offset: u64) -> u32 {
        self.word32(offset).load(Ordering::Acquire)
    }

    /// Stores the 32-bit word at `offset`.
    pub fn store_u32(&self, offset: u64, value: u32) {
        self.word32(offset).store(value, Ordering::Release)
    }

    /// Replaces the 32-bit word at `offset` with `new` if it is `current`.
    pub fn compare_exchange_u32(&self, offset: u64, current: u32, new: u32) -> bool {
        self.word32(offset)
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Adds 1 to the 32-bit word at `offset` (wrapping).
    pub fn bump_u32(&self, offset: u64) {
        self.word32(offset).fetch_add(1, Ordering::AcqRel);
    }

    /// The address of the 32-bit word at `offset` in this process.
    fn addr32(&self, offset: u64) -> *mut u32 {
        self.word32(offset).as_ptr()
    }

    /// Sleeps while the 32-bit word at `offset` is `expected`, at most
    /// `timeout` (for ever with None): a shared futex wait (not
    /// FUTEX_PRIVATE: the tracee wakes it from its own mapping of the file).
    /// Returns early on a wake, a signal, or a word that differs.
    pub fn futex_wait(&self, offset: u64, expected: u32, timeout: Option<std::time::Duration>) {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the word is in bounds of a live mapping (`addr32` checks);
        // `ts_ptr` is null or points at a timespec that outlives the call.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.addr32(offset),
                libc::FUTEX_WAIT,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    /// Wakes every waiter on the 32-bit word at `offset` (in any process
    /// that maps the file).
    pub fn futex_wake(&self, offset: u64) {
        // SAFETY: the word is in bounds of a live mapping (`addr32` checks).
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.addr32(offset),
                libc::FUTEX_WAKE,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    /// Makes the calling thread the owner of the 32-bit word at `offset` as
    /// a robust futex: the word holds the thread's id, and the kernel sets
    /// `FUTEX_OWNER_DIED` in it when the thread ends, however it ends
    /// (`exit_robust_list`, run from the exit of every thread, SIGKILL
    /// included: robust-futex-ABI.txt). `entry` must live as long as the
    /// thread holds the word; [`SharedMap::disown_robust`] ends it.
    pub fn own_robust(&self, offset: u64, entry: &mut RobustEntry) {
        // SAFETY: gettid takes nothing.
        let tid = unsafe { libc::gettid() } as u32;
        let word = self.addr32(offset);
        entry.head.list.next = &mut entry.node;
        entry.node.next = &mut entry.head.list;
        entry.head.futex_offset = (word as isize).wrapping_sub(&entry.node as *const _ as isize);
        entry.head.list_op_pending = std::ptr::null_mut();
        self.store_u32(offset, tid);
        // SAFETY: `entry` is a robust list of one node, its `next` back at
        // the head as the ABI requires, whose futex word (node + offset) is
        // in a live mapping; the caller keeps `entry` alive and calls
        // `disown_robust` before it goes. Only this thread's list changes.
        unsafe {
            libc::syscall(
                libc::SYS_set_robust_list,
                &mut entry.head as *mut RobustHead,
                std::mem::size_of::<RobustHead>(),
            );
        }
    }

    /// Ends [`SharedMap::own_robust`] for the calling thread: the list is
    /// emptied (so the kernel reads nothing of `entry` at the thread's exit)
    /// and the word cleared.
    pub fn disown_robust(&self, offset: u64, entry: &mut RobustEntry) {
        entry.head.list.next = &mut entry.head.list;
        // SAFETY: an empty robust list (the head pointing at itself), valid
        // for as long as `entry`, which the caller keeps until the thread
        // ends; the kernel only reads it at the exit.
        unsafe {
            libc::syscall(
                libc::SYS_set_robust_list,
                &mut entry.head as *mut RobustHead,
                std::mem::size_of::<RobustHead>(),
            );
        }
        self.store_u32(offset, 0);
    }
}

/// `struct robust_list` (linux/futex.h).
#[repr(C)]
#[derive(Debug)]
struct RobustNode {
    next: *mut RobustNode,
}

/// `struct robust_list_head` (linux/futex.h).
#[repr(C)]
#[derive(Debug)]
struct RobustHead {
    list: RobustNode,
    futex_offset: isize,
    list_op_pending: *mut RobustNode,
}

/// A robust futex list of one entry, for [`SharedMap::own_robust`]. Keep it
/// where it does not move (a `Box`) while it is registered.
#[derive(Debug)]
pub struct RobustEntry {
    head: RobustHead,
    node: RobustNode,
}

impl Default for RobustEntry {
    fn default() -> Self {
        RobustEntry {
            head: RobustHead {
                list: RobustNode {
                    next: std::ptr::null_mut(),
                },
                futex_offset: 0,
                list_op_pending: std::ptr::null_mut(),
            },
            node: RobustNode {
                next: std::ptr::null_mut(),
            },
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

/// Asks the CPU to bring the cache lines of `bytes` in ahead of their use
/// (a hint: it never faults, and changes nothing).
pub fn prefetch(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        // SAFETY: prefetching has no memory effect and never faults; the
        // address is that of live memory anyway.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            );
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
