//! One traced thread (the kernel's `uprobe_task`).

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::probe::ReturnStack;

/// Where a thread is, as far as the tracer knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Resumed by us; it will report its next stop.
    Running,
    /// In a ptrace-stop we have seen; only we can resume it.
    Stopped,
    /// In group-stop under PTRACE_LISTEN: stopped, but it reports when SIGCONT comes.
    Listening,
    /// Created (clone/fork/vfork event) but its first stop is not seen yet; it
    /// executes nothing until we resume it.
    Starting,
}

/// What to undo in a child that will not be traced (fork without -f): the
/// breakpoints and rewritten return addresses it inherited, and the scratch page.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scrub {
    /// (site, bytes the breakpoint replaced).
    pub sites: Vec<(RuntimeAddr, Vec<u8>)>,
    /// (stack slot, original return address).
    pub returns: Vec<(RuntimeAddr, RuntimeAddr)>,
    /// The trampoline address the child's stack slots may hold.
    pub trampoline: Option<RuntimeAddr>,
    /// The scratch page to unmap.
    pub scratch: Option<RuntimeAddr>,
}

/// A traced thread.
#[derive(Debug)]
pub(crate) struct Task {
    /// Its process (thread group).
    pub pid: Pid,
    /// The key of its address space: its process, except for a vfork child, which
    /// runs in its parent's memory until it execs.
    pub space: Pid,
    /// What we know of it.
    pub state: TaskState,
    /// Calls in flight whose return address was rewritten.
    pub returns: ReturnStack,
    /// Signals to deliver when it next resumes (they arrived while it was being
    /// stepped, or while rtrace was detaching).
    pub pending_signals: Vec<i32>,
    /// True for a task that is traced only to keep it unharmed (a vfork child
    /// without -f): no handler runs for it.
    pub silent: bool,
    /// Set for a child to be scrubbed and released at its first stop.
    pub scrub: Option<Scrub>,
    /// True once it reported a group-stop and has not been continued since.
    pub group_stopped: bool,
}

impl Task {
    pub fn new(pid: Pid, space: Pid, state: TaskState) -> Self {
        Task {
            pid,
            space,
            state,
            returns: ReturnStack::default(),
            pending_signals: Vec::new(),
            silent: false,
            scrub: None,
            group_stopped: false,
        }
    }
}

/// Reads the thread-group id of `tid` from /proc.
pub(crate) fn tgid_of(tid: Tid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status_field(&status, "Tgid:").map(Pid::from_raw)
}

/// A numeric field of /proc/PID/status.
pub(crate) fn status_field(status: &str, key: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}
