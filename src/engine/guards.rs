//! Guards for changes rtrace makes to a tracee, undone on every exit path,
//! `?` included:
//!
//! - [`HitInProgress`]: a thread stopped by a trap goes back to the probe
//!   address (or its call's return address) unless the hit completed, as
//!   the kernel's uprobes leave a thread at the probe address when a hit
//!   cannot go on;
//! - [`InjectedCode`]: code written over the program's own for a moment
//!   goes back;
//! - [`Tracer::with_world_stopped`]: the threads it stopped are resumed
//!   (the kernel's `stop_machine`, for one process);
//! - every restart of a stopped thread is one `sys::ptrace::Restart`.

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::error::Result;
use crate::sys::mem::ProcMem;
use crate::sys::ptrace;

use super::task::TaskState;
use super::tracer::Tracer;

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

/// The threads a world stop takes.
#[derive(Clone, Copy)]
pub(super) enum World {
    /// Every running thread of the address space.
    Space(Pid),
    /// Every running thread of the address space but this one (stopped
    /// already: the thread rtrace is working for).
    SpaceBut(Pid, Tid),
    /// None: every thread is stopped already (rtrace is halting for a
    /// detach).
    Stopped,
}

impl Tracer {
    /// The running threads of `world`.
    fn running(&self, world: World) -> Vec<Tid> {
        let (key, but) = match world {
            World::Space(key) => (key, None),
            World::SpaceBut(key, tid) => (key, Some(tid)),
            World::Stopped => return Vec::new(),
        };
        self.world
            .tasks
            .iter()
            .filter(|(t, k)| {
                k.space == key && Some(**t) != but && k.state == TaskState::Running && !k.exiting
            })
            .map(|(t, _)| *t)
            .collect()
    }

    /// Runs `f` with the running threads of `world` stopped: each is
    /// interrupted and its stop collected (other stops that come meanwhile
    /// are deferred), `f` gets the ones whose stop was the interrupt alone,
    /// and those are resumed when `f` returns, whatever it returns. An error
    /// of `f` comes first, then the first of the resumes (each is tried).
    pub(super) fn with_world_stopped<T>(
        &mut self,
        world: World,
        f: impl FnOnce(&mut Tracer, &[Tid]) -> Result<T>,
    ) -> Result<T> {
        let running = self.running(world);
        let quiet = self.interrupt_and_collect(&running)?;
        let r = f(self, &quiet);
        let mut resumed = Ok(());
        for t in quiet {
            let one = self.resume(t, 0);
            if resumed.is_ok() {
                resumed = one;
            }
        }
        let value = r?;
        resumed?;
        Ok(value)
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

    /// The state letter of thread `tid` in `/proc` (`t`: a tracing stop).
    fn state(tid: Pid) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).expect("its stat");
        let after = &stat[stat.rfind(')').expect("comm ends") + 2..];
        after.chars().next().expect("a state")
    }

    #[test]
    fn a_stopped_world_is_resumed_on_every_path() {
        let (mut child, _, _, _) = child();
        let pid = Pid::from_raw(child.id() as i32);
        let mut t = Tracer::attach(pid, crate::Options::default()).expect("attach");
        // Attached, every thread is stopped: let the one there is run.
        t.resume(pid, 0).expect("resume");
        assert_eq!(t.world.tasks[&pid].state, TaskState::Running);

        // The work succeeds: the thread it stopped runs again.
        let seen = t
            .with_world_stopped(World::Space(pid), |t, quiet| {
                assert_eq!(quiet, [pid]);
                assert_eq!(t.world.tasks[&pid].state, TaskState::Stopped);
                assert_eq!(state(pid), 't');
                Ok(quiet.len())
            })
            .expect("the work");
        assert_eq!(seen, 1);
        assert_eq!(t.world.tasks[&pid].state, TaskState::Running);
        assert_ne!(state(pid), 't');

        // The work fails half-way (a `?`): the same.
        let r: Result<()> = t.with_world_stopped(World::Space(pid), |_, quiet| {
            assert_eq!(quiet, [pid]);
            Err(crate::Error::NoSuchProcess { pid })
        });
        assert!(matches!(r, Err(crate::Error::NoSuchProcess { .. })));
        assert_eq!(t.world.tasks[&pid].state, TaskState::Running);
        assert_ne!(state(pid), 't');

        // A thread left out of the world is not touched.
        let r = t.with_world_stopped(World::SpaceBut(pid, pid), |_, quiet| Ok(quiet.len()));
        assert_eq!(r.expect("nothing to stop"), 0);

        drop(t);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
