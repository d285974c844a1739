//! Guards for changes rtrace makes to a stopped thread, undone on every
//! exit path, `?` included (as the kernel's uprobes leave a thread at the
//! probe address when a hit cannot go on).

use crate::addr::{RuntimeAddr, Tid};
use crate::error::Result;
use crate::sys::mem::ProcMem;
use crate::sys::ptrace;

/// A trap rtrace is handling, whose thread the kernel stopped past the int3
/// (or at the trampoline) with nothing of the hit done yet in its
/// registers. Until [`HitInProgress::done`], dropping the guard puts the
/// thread's instruction pointer at `resume_at`: the probe address, whose
/// original instruction the thread runs once the breakpoint is gone (after
/// the detach an engine error causes), or, for a return through the
/// trampoline, the return address the call had. So an error anywhere in a
/// hit leaves the thread where it would have been untraced.
///
/// Call `done` once the thread's registers are set for what follows the
/// hit (the displaced instruction run, emulated or set up out of line, or
/// a handler's own instruction pointer): from then on, its instruction
/// pointer is the engine's to keep.
#[must_use = "dropping the guard at once rewinds the thread"]
pub(super) struct HitInProgress {
    tid: Tid,
    resume_at: RuntimeAddr,
    live: bool,
}

impl HitInProgress {
    /// `tid` stopped by the trap whose thread must go on at `resume_at` if
    /// the hit does not complete.
    pub(super) fn new(tid: Tid, resume_at: RuntimeAddr) -> Self {
        HitInProgress {
            tid,
            resume_at,
            live: true,
        }
    }

    /// The hit completed: the thread's registers are the engine's.
    pub(super) fn done(mut self) {
        self.live = false;
    }
}

impl Drop for HitInProgress {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        // A thread that is gone, or no longer stopped, has nothing to
        // rewind: the errors are the answer.
        if let Ok(mut regs) = ptrace::getregs(self.tid) {
            if regs.ip() != self.resume_at.get() {
                regs.set_ip(self.resume_at.get());
                let _ = ptrace::setregs(self.tid, &regs);
            }
        }
    }
}

/// Code rtrace wrote over the program's own for a moment (the `syscall`
/// instruction it runs at a thread's instruction pointer to map the scratch
/// page, before it has a page of its own), with the bytes it replaced. They
/// go back at [`InjectedCode::undo`], or when the guard is dropped on any
/// other path.
#[must_use = "dropping the guard at once puts the program's bytes back"]
pub(super) struct InjectedCode {
    mem: ProcMem,
    at: RuntimeAddr,
    saved: Vec<u8>,
    live: bool,
}

impl InjectedCode {
    /// Writes `code` at `at` through `mem` (a handle of the guard's own),
    /// keeping the bytes it replaces. Nothing is written when reading them
    /// fails.
    pub(super) fn write(mem: ProcMem, at: RuntimeAddr, code: &[u8]) -> Result<Self> {
        let saved = mem.read_vec(at, code.len())?;
        let mut guard = InjectedCode {
            mem,
            at,
            saved,
            live: false,
        };
        // Armed before the write: a write that fails half-way is undone too.
        guard.live = true;
        guard.mem.write(at, code)?;
        Ok(guard)
    }

    /// Puts the program's bytes back, saying whether that worked.
    pub(super) fn undo(mut self) -> Result<()> {
        self.live = false;
        self.mem.write(self.at, &self.saved)
    }
}

impl Drop for InjectedCode {
    fn drop(&mut self) {
        if self.live {
            let _ = self.mem.write(self.at, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};

    use super::*;
    use crate::addr::Pid;

    /// A child process (`cat`, blocked reading its pipe once it echoed a
    /// first line: its program is in place), the start of its first
    /// executable mapping, and the bytes there.
    fn child() -> (Child, ProcMem, RuntimeAddr, Vec<u8>) {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn cat");
        child
            .stdin
            .as_mut()
            .expect("its stdin")
            .write_all(b"ready\n")
            .expect("write to cat");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("its stdout"))
            .read_line(&mut line)
            .expect("read from cat");
        assert_eq!(line, "ready\n");
        let pid = Pid::from_raw(child.id() as i32);
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
        let start = maps
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("r-xp"))
            .and_then(|l| l.split('-').next())
            .and_then(|a| u64::from_str_radix(a, 16).ok())
            .expect("an executable mapping");
        let mem = ProcMem::open(pid).expect("open its memory");
        let at = RuntimeAddr(start);
        let bytes = mem.read_vec(at, 2).expect("read its code");
        (child, mem, at, bytes)
    }

    #[test]
    fn injected_code_goes_back_on_undo_and_on_drop() {
        let (mut child, mem, at, original) = child();
        let code = [0x0f, 0x05];
        assert_ne!(original, code);

        let guard = InjectedCode::write(mem.try_clone().unwrap(), at, &code).unwrap();
        assert_eq!(mem.read_vec(at, 2).unwrap(), code);
        guard.undo().unwrap();
        assert_eq!(mem.read_vec(at, 2).unwrap(), original);

        // An early return (a `?`) drops the guard: the bytes go back too.
        let failing = || -> Result<()> {
            let _guard = InjectedCode::write(mem.try_clone()?, at, &code)?;
            assert_eq!(mem.read_vec(at, 2)?, code);
            Err(crate::Error::NoSuchProcess { pid: mem.pid() })
        };
        assert!(failing().is_err());
        assert_eq!(mem.read_vec(at, 2).unwrap(), original);

        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn injected_code_writes_nothing_where_it_cannot_read() {
        let (mut child, mem, _, _) = child();
        let nowhere = RuntimeAddr(8);
        assert!(InjectedCode::write(mem.try_clone().unwrap(), nowhere, &[0x0f, 0x05]).is_err());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
