//! One traced thread (the kernel's `uprobe_task`).

use std::rc::Rc;
use std::time::Duration;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::{self, InsnPlan, Regs, Stack, Strategy, Xol, XolEnd};
use crate::error::Error;
use crate::handler::Site;
use crate::probe::{HandlerData, ReturnStack, Watch};

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
    /// Every change made to code in the parent's memory, undone since or
    /// not (the child's copy may predate the undoing).
    pub sites: Vec<(RuntimeAddr, super::space::Undo)>,
    /// (stack slot, original return address).
    pub returns: Vec<(RuntimeAddr, RuntimeAddr)>,
    /// The trampoline address the child's stack slots may hold.
    pub trampoline: Option<RuntimeAddr>,
    /// The scratch page to unmap.
    pub scratch: Option<RuntimeAddr>,
    /// The out-of-line step it was created in the middle of, if any.
    pub step: Option<XolStep>,
    /// Fast probes' mappings it inherited: (address, length).
    pub unmap: Vec<(RuntimeAddr, u64)>,
    /// The fast return stub's address and the table (the child's copy says
    /// which slots of its stack hold the stub).
    pub fast_returns: Option<(u64, RuntimeAddr)>,
}

/// A thread stepping a displaced instruction in an out-of-line slot (the
/// kernel's `uprobe_task` in `UTASK_SSTEP`).
#[derive(Clone, Debug)]
pub(crate) struct XolStep {
    /// The probe site.
    pub site: RuntimeAddr,
    /// The slot it steps in.
    pub slot: RuntimeAddr,
    /// The instruction's plan (an out-of-line one).
    pub plan: Rc<InsnPlan>,
    /// The scratch register's own value, to give back after the step.
    pub saved_reg: u64,
}

/// How the return of a call being hit is watched.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hijack {
    /// The stack slot of the return address.
    pub slot: RuntimeAddr,
    /// The original return address.
    pub orig: RuntimeAddr,
    /// A tail call: the slot held the trampoline already.
    pub chained: bool,
    /// Trampoline in the slot, or a breakpoint at the return site.
    pub watch: Watch,
    /// The return stub is in the slot (or the call is chained to one whose
    /// slot holds it): the return is recorded by the stub, without a stop,
    /// and the call goes with the thread's fast calls in flight.
    pub by_stub: bool,
    /// The table entry rtrace claimed for the call, when `by_stub` and not
    /// chained (given back if the hit does not complete).
    pub entry: Option<RuntimeAddr>,
}

impl Hijack {
    /// A call made by a tail call from the fast call in flight in `slot`
    /// (among `fast_calls`), whose return the stub watches: it returns with
    /// that call, through the same slot and the stub. None when no fast call
    /// is known there.
    pub(crate) fn chained_to_fast(
        fast_calls: &crate::probe::ReturnStack,
        slot: RuntimeAddr,
    ) -> Option<Hijack> {
        fast_calls.in_slot(slot).map(|below| Hijack {
            slot,
            orig: below.orig_ret,
            chained: true,
            watch: Watch::Trampoline,
            by_stub: true,
            entry: None,
        })
    }
}

impl XolStep {
    fn xol(&self) -> &Xol {
        match &self.plan.strategy {
            Strategy::Xol(xol) => xol,
            Strategy::Emulate(_) | Strategy::InPlace => {
                unreachable!("only out-of-line sites are stepped asynchronously")
            }
        }
    }

    /// Fixes `regs` up after the step (see `arch::xol_finish`).
    pub fn finish(&self, regs: &mut Regs, stack: &dyn Stack) -> crate::Result<XolEnd> {
        arch::xol_finish(
            self.xol(),
            self.site,
            u64::from(self.plan.len),
            self.slot,
            self.saved_reg,
            regs,
            stack,
        )
    }

    /// Puts a thread that has not executed the slot back at the site.
    pub fn cancel(&self, regs: &mut Regs) {
        arch::xol_cancel(self.xol(), self.site, self.saved_reg, regs);
    }
}

/// The rest of a hit, waiting for the displaced instruction to complete: the
/// post handlers, the return instance to push.
#[derive(Debug)]
pub(crate) struct PendingHit {
    pub probes: Vec<Rc<Site>>,
    pub datas: Vec<HandlerData>,
    pub time: Duration,
    /// The return watched for this call, when it has a return probe.
    pub hijacked: Option<Hijack>,
    /// The call has a return probe but its return could not be watched
    /// (counted as missed once the hit is complete).
    pub missed: bool,
    /// The site is the dynamic linker's hook.
    pub rtld: bool,
    /// A pre handler's error, returned once the hit is complete.
    pub failed: Option<Error>,
    /// At the hit that patched its site (see `fast::AtHit`): the
    /// instruction pointer the post handlers see (where the original code
    /// has the next instruction), and where the thread goes on when they
    /// leave it so (the detour's copy of that instruction).
    pub resume: Option<(u64, u64)>,
}

/// A signal rtrace holds for a thread, to deliver it later as it came.
#[derive(Clone, Debug)]
pub(crate) struct HeldSignal {
    pub signal: i32,
    pub info: Option<crate::sys::ptrace::SigInfo>,
    /// Already reported to the listeners (when it was first handled).
    pub reported: bool,
}

/// A traced thread.
#[derive(Debug)]
pub(crate) struct Task {
    /// Its process (thread group).
    pub(super) pid: Pid,
    /// The key of its address space: its process, except for a vfork child, which
    /// runs in its parent's memory until it execs.
    pub(super) space: Pid,
    /// What we know of it.
    pub(super) state: TaskState,
    /// Calls in flight whose return address was rewritten.
    pub(super) returns: ReturnStack,
    /// Calls in flight whose return address a fast probe's detour swapped
    /// for the return stub, as the records read so far tell (their slots
    /// hold the stub).
    pub(super) fast_calls: ReturnStack,
    /// The latest time a record of its was given (see `drain::deliver`):
    /// the records of one thread come in the order it made them, and so do
    /// their times, whatever the clock's refinements between two reads.
    pub(super) records_time: Duration,
    /// Signals that arrived while the thread could not take them (stepping
    /// out of line or in place, or while rtrace detaches), oldest first, with
    /// their `siginfo_t`. They are delivered, one per signal-delivery stop,
    /// before any signal that came after them.
    pub(super) held: Vec<HeldSignal>,
    /// A signal rtrace sent the thread (tgkill) to get a signal-delivery
    /// stop at which to deliver its oldest held signal.
    pub(super) nudge: Option<i32>,
    /// Its own CPU affinity, while rtrace keeps it on rtrace's CPU (`--pin`):
    /// given back when it is let go.
    pub(super) affinity: Option<crate::sys::sched::CpuMask>,
    /// True while the thread is in a signal-delivery stop (a signal's, or a
    /// SIGTRAP's: a breakpoint or a step), where a restart can deliver any
    /// signal with any siginfo.
    pub(super) in_delivery_stop: bool,
    /// True for a task that is traced only to keep it unharmed (a vfork child
    /// without -f): no handler runs for it.
    pub(super) silent: bool,
    /// Set for a child to be scrubbed and released at its first stop.
    pub(super) scrub: Option<Scrub>,
    /// Set for a followed child forked before rtrace changed its parent's
    /// memory: its space is set up at its first stop, as after an exec.
    pub(super) needs_setup: bool,
    /// True once it reported a group-stop and has not been continued since.
    pub(super) group_stopped: bool,
    /// Set while it steps a displaced instruction out of line: every resume is
    /// a single-step until the step completes.
    pub(super) step: Option<XolStep>,
    /// The hit whose displaced instruction is being stepped.
    pub(super) pending_hit: Option<Box<PendingHit>>,
    /// A step completed at a signal stop: the step trap may still be reported
    /// after it, and is then ours.
    pub(super) stray_step: bool,
    /// It reported PTRACE_EVENT_EXIT: it will not stop again, only die.
    pub(super) exiting: bool,
    /// For a vfork child: the thread that vforked it. That thread is kept in its
    /// vfork event stop until this child execs or dies, or is let go (see
    /// `on_ptrace_event`, `let_go`).
    pub(super) vfork_parent: Option<Tid>,
    /// A vfork child not followed, in memory with no breakpoint of rtrace's
    /// (every probe there is fast): let go at its first stop, untraced, so
    /// that it may be traced by its own parent (`PTRACE_TRACEME`, as gdb's
    /// child asks before its exec). Its parent is resumed then, not at the
    /// child's exec.
    pub(super) let_go: bool,
}

impl Task {
    pub fn new(pid: Pid, space: Pid, state: TaskState) -> Self {
        Task {
            pid,
            space,
            state,
            returns: ReturnStack::default(),
            fast_calls: ReturnStack::default(),
            records_time: Duration::ZERO,
            held: Vec::new(),
            nudge: None,
            in_delivery_stop: false,
            affinity: None,
            silent: false,
            scrub: None,
            needs_setup: false,
            group_stopped: false,
            step: None,
            pending_hit: None,
            stray_step: false,
            exiting: false,
            vfork_parent: None,
            let_go: false,
        }
    }
}

/// Reads the thread-group id of `tid` from /proc.
pub(crate) fn tgid_of(tid: Tid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status_field(&status, "Tgid:").map(Pid::from_raw)
}

/// The children thread `tid` (of process `pid`) made that are still its
/// own (`/proc/PID/task/TID/children`), oldest first.
pub(crate) fn children_of(pid: Pid, tid: Tid) -> Vec<Tid> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// True when task `tid` is alive and traced by the calling thread (the
/// tracer: `TracerPid` is the tracing thread's id).
pub(crate) fn traced_by_us(tid: Tid) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| status_field(&s, "TracerPid:"))
        == Some(nix::unistd::gettid().as_raw())
        && !is_dead(tid)
}

/// True when thread `tid` is gone, or a zombie (it runs no more, and
/// reports nothing before its death).
pub(crate) fn is_dead(tid: Tid) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_none_or(|v| matches!(v.trim_start().chars().next(), Some('Z' | 'X')))
}

/// True when signal `sig` is pending for thread `tid` itself (`SigPnd` in
/// /proc/TID/status: the thread's own queue, where a trap's SIGTRAP goes).
pub(crate) fn signal_pending(tid: Tid, sig: i32) -> bool {
    signal_in_mask(tid, "SigPnd:", sig)
}

/// True when thread `tid` blocks signal `sig` (`SigBlk`): a signal injected
/// now would only be queued again, and delivered (and stopped for) later.
pub(crate) fn signal_blocked(tid: Tid, sig: i32) -> bool {
    signal_in_mask(tid, "SigBlk:", sig)
}

fn signal_in_mask(tid: Tid, field: &str, sig: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/task/{tid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| (1..=64).contains(&sig) && mask & (1 << (sig - 1)) != 0)
}

/// A numeric field of /proc/PID/status.
pub(crate) fn status_field(status: &str, key: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}
