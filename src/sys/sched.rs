//! CPU placement of the tracer itself.
//!
//! A ptrace stop is a switch from the tracee to the tracer and back; when the
//! two run on different CPUs, each switch is a cross-CPU wake-up, which costs
//! more than the switch. Pinning the tracer to the CPU the tracee runs on
//! lets the scheduler wake each on the other's CPU only if the tracee stays
//! there too: pinning the tracer alone changes nothing measurable (the
//! scheduler keeps the tracee on its own idle CPU), so `--pin` pins both,
//! and the engine gives the tracee's threads their own affinity back when it
//! lets them go.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use crate::addr::Tid;
use crate::error::{Error, Result};

/// The CPU thread `tid` last ran on (field 39 of /proc/TID/stat).
pub fn cpu_of(tid: Tid) -> Option<usize> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its closing ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(36)?.parse().ok()
}

/// Pins the calling thread to `cpu`.
pub fn pin_self(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
        .map_err(|e| Error::io(format!("cannot pin rtrace to CPU {cpu}"), e.into()))
}

/// A thread's CPU affinity.
pub type CpuMask = CpuSet;

/// The CPU affinity of thread `tid`.
pub fn affinity(tid: Tid) -> Option<CpuMask> {
    sched_getaffinity(tid).ok()
}

/// Sets the CPU affinity of thread `tid` (0: the caller). Failures (the
/// thread is gone) are ignored.
pub fn set_affinity(tid: Tid, mask: &CpuMask) {
    let _ = sched_setaffinity(tid, mask);
}

/// The mask of `cpu` alone.
pub fn only(cpu: usize) -> Result<CpuMask> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .map_err(|e| Error::io(format!("no CPU {cpu}"), e.into()))?;
    Ok(set)
}
