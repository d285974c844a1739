//! Tracee memory: one `/proc/PID/mem` file per address space.
//!
//! Writes go through `/proc/PID/mem`, which the kernel lets a tracer use on
//! read-only text (FOLL_FORCE), so arming a breakpoint is a 1-byte `pwrite`.
//! Reads use `process_vm_readv` (one syscall, no page-table walk through /proc),
//! falling back to the file for pages `process_vm_readv` refuses (read-only text
//! is readable by both; the fallback covers pages mapped without read permission).

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};

use crate::addr::{Pid, RuntimeAddr};
use crate::error::{Error, Result};

/// Fills `buf` from `addr` in process `pid` with one `process_vm_readv`, which
/// needs no open file (so it works across an exec) and the ptrace access check
/// only. Fails unless every byte could be read.
pub fn read_process(pid: Pid, addr: RuntimeAddr, buf: &mut [u8]) -> Result<()> {
    let len = buf.len();
    let remote = [RemoteIoVec {
        base: addr.get() as usize,
        len,
    }];
    match process_vm_readv(pid, &mut [IoSliceMut::new(buf)], &remote) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(Error::Memory {
            pid,
            addr,
            errno: Errno::EFAULT,
        }),
        Err(errno) => Err(Error::Memory { pid, addr, errno }),
    }
}

/// Fills as much of `buf` from `addr` in process `pid` as can be read with one
/// `process_vm_readv`, and returns how many bytes that is: the bytes up to the
/// first page that cannot be read. process_vm_readv(2) transfers partially
/// only "at the granularity of iovec elements", so the remote range is given
/// as one element per page: a read that runs off the end of a mapping still
/// gives the pages before it. 0 when nothing could be read.
pub fn read_process_partial(pid: Pid, addr: RuntimeAddr, buf: &mut [u8]) -> usize {
    const PAGE: u64 = 4096;
    /// One element per page of the longest read asked for (a stack chunk).
    const MAX_PAGES: usize = 16;
    let mut remote = [RemoteIoVec { base: 0, len: 0 }; MAX_PAGES];
    let mut n = 0;
    let mut at = addr.get();
    let mut left = buf
        .len()
        .min(MAX_PAGES * PAGE as usize - (at % PAGE) as usize);
    let total = left;
    while left > 0 && n < MAX_PAGES {
        let len = ((PAGE - at % PAGE) as usize).min(left);
        remote[n] = RemoteIoVec {
            base: at as usize,
            len,
        };
        n += 1;
        left -= len;
        at = at.wrapping_add(len as u64);
    }
    if n == 0 {
        return 0;
    }
    let Some(local) = buf.get_mut(..total) else {
        return 0;
    };
    process_vm_readv(pid, &mut [IoSliceMut::new(local)], &remote[..n]).unwrap_or(0)
}

/// Read and write access to one process's memory.
#[derive(Debug)]
pub struct ProcMem {
    pid: Pid,
    file: File,
}

/// The errno of a failed access to `/proc/PID/mem`. The kernel's `mem_rw`
/// answers an unmapped address with EIO, but a process whose memory is gone
/// (it exited, and is a zombie until reaped) with 0 bytes: end of file on a
/// read, nothing written on a write. That is the process gone (ESRCH), not
/// a bad address.
fn errno_of(e: &std::io::Error) -> Errno {
    match (e.raw_os_error(), e.kind()) {
        (Some(raw), _) => Errno::from_raw(raw),
        (None, std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::WriteZero) => Errno::ESRCH,
        (None, _) => Errno::EIO,
    }
}

impl ProcMem {
    /// Opens `/proc/PID/mem` for reading and writing. The caller must be the
    /// process's tracer (or otherwise pass the ptrace access check).
    pub fn open(pid: Pid) -> Result<ProcMem> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|e| Error::Memory {
                pid,
                addr: RuntimeAddr(0),
                errno: errno_of(&e),
            })?;
        Ok(ProcMem { pid, file })
    }

    /// A second handle on the same memory (the descriptor duplicated), for
    /// a guard that must write there while the first is borrowed elsewhere.
    pub fn try_clone(&self) -> Result<ProcMem> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| self.err(RuntimeAddr(0), errno_of(&e)))?;
        Ok(ProcMem {
            pid: self.pid,
            file,
        })
    }

    /// The process whose memory this is.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    fn err(&self, addr: RuntimeAddr, errno: Errno) -> Error {
        Error::Memory {
            pid: self.pid,
            addr,
            errno,
        }
    }

    /// Fills `buf` from `addr`. Fails unless every byte could be read.
    pub fn read(&self, addr: RuntimeAddr, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        match read_process(self.pid, addr, buf) {
            Ok(()) => Ok(()),
            Err(_) => self
                .file
                .read_exact_at(buf, addr.get())
                .map_err(|e| self.err(addr, errno_of(&e))),
        }
    }

    /// Fills as much of `buf` from `addr` as one read gives (see
    /// [`read_process_partial`]); returns how many bytes that is. For reading a
    /// run of stack in one system call when its end may not be mapped.
    pub fn read_partial(&self, addr: RuntimeAddr, buf: &mut [u8]) -> usize {
        read_process_partial(self.pid, addr, buf)
    }

    /// Reads `len` bytes at `addr`.
    pub fn read_vec(&self, addr: RuntimeAddr, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, addr: RuntimeAddr) -> Result<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    /// Returns the bytes and whether the terminator was found within `max`.
    pub fn read_cstr(&self, addr: RuntimeAddr, max: usize) -> Result<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut at = addr;
        // Read up to the next page boundary at a time, so an unmapped page after
        // a short string is never touched.
        while out.len() < max {
            let to_page_end = 4096 - (at.get() % 4096) as usize;
            let want = to_page_end.min(max - out.len());
            let mut chunk = vec![0u8; want];
            self.read(at, &mut chunk)?;
            if let Some(nul) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..nul]);
                return Ok((out, true));
            }
            out.extend_from_slice(&chunk);
            at = at.offset(want as i64);
        }
        Ok((out, false))
    }

    /// Writes `bytes` at `addr`, even into read-only text.
    pub fn write(&self, addr: RuntimeAddr, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, addr.get())
            .map_err(|e| self.err(addr, errno_of(&e)))
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&self, addr: RuntimeAddr, v: u64) -> Result<()> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Writes `a` at `at_a` and `b` at `at_b`, both in writable memory, with
    /// one `process_vm_writev` (the file's two writes when it refuses:
    /// process_vm_writev(2) writes only where the process itself may).
    pub fn write_two(
        &self,
        (at_a, a): (RuntimeAddr, &[u8]),
        (at_b, b): (RuntimeAddr, &[u8]),
    ) -> Result<()> {
        let remote = [
            RemoteIoVec {
                base: at_a.get() as usize,
                len: a.len(),
            },
            RemoteIoVec {
                base: at_b.get() as usize,
                len: b.len(),
            },
        ];
        let local = [IoSlice::new(a), IoSlice::new(b)];
        match process_vm_writev(self.pid, &local, &remote) {
            Ok(n) if n == a.len() + b.len() => Ok(()),
            _ => {
                self.write(at_a, a)?;
                self.write(at_b, b)
            }
        }
    }
}
