//! Guards for changes rtrace makes to a stopped thread, undone on every
//! exit path, `?` included (as the kernel's uprobes leave a thread at the
//! probe address when a hit cannot go on).

use crate::addr::{RuntimeAddr, Tid};
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
