//! What the tracer is made of: [`Tracer`]'s fields, its options and what it
//! reports ([`Options`], [`Outcome`], [`Progress`]), and the two helpers
//! every part of the engine uses ([`guarded`], [`kind_for`]). Every other
//! file of the engine adds behaviour (`impl Tracer`) and imports the type
//! from here; this file imports only the state it holds (tasks, spaces, the
//! fast-probe clock), so no file of the engine imports one that imports it
//! back.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::addr::{Pid, Tid};
use crate::arch::StepMode;
use crate::error::{Error, Result};
use crate::handler::{Event, Handler, ProbeId, ProbeKind};
use crate::symbols::{ElfCache, ProbeSpec};
use crate::sys::spawn;
use crate::sys::wait::Stop;

use super::fast::Pace;
use super::space::Space;
use super::task::Task;

/// How tracing ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The traced process exited with this code.
    Exited(i32),
    /// The traced process was killed by this signal.
    Killed {
        /// The signal number.
        signal: i32,
        /// Core dumped.
        core_dumped: bool,
    },
    /// rtrace detached (SIGINT, SIGTERM, SIGHUP, [`Tracer::request_detach`], or
    /// an error once tracing had begun); the process runs on.
    Detached,
}

/// Tracing options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Function probes report entries only: no return address is rewritten.
    pub entry_only: bool,
    /// Trace children created by fork, vfork and clone too.
    pub follow_forks: bool,
    /// How displaced instructions execute (`--step`).
    pub step: StepMode,
    /// Fast probes (`--fast`): sites whose handlers allow it are patched
    /// with a jump to a detour that records each hit without stopping the
    /// thread; the records reach the handlers' `on_entry` within a few
    /// milliseconds. Every other site stays an int3 breakpoint.
    pub fast: bool,
    /// Fast sites are patched at their first hit rather than when they are
    /// armed: each is an int3 until a thread stops there, then the jump
    /// is written from that stop and the next hits take it (one stop per
    /// site, whatever its calls). rtrace does this by itself for a site a
    /// thread is inside when it is armed. Off, the others are patched at
    /// once.
    pub first_hit: bool,
    /// What a fast probe does when the ring it shares with rtrace is full
    /// (`--overflow`).
    pub overflow: Overflow,
    /// In launch mode, a SIGINT, SIGTERM or SIGHUP that makes rtrace detach
    /// is then sent to the program it started, and [`Tracer::run`] waits for
    /// the program to end: the outcome is its exit or its death, as if it had
    /// been traced to the end (strace's Ctrl-C). A second such signal ends
    /// the wait: the outcome is then `Detached`, and the program runs on.
    /// Off, a launched program runs on untraced after any detach.
    pub pass_signal_on: bool,
    /// How the returns of int3 probes' calls are seen (`--returns`).
    pub returns: ReturnMode,
}

/// How the return of a call an int3 probe stopped at the entry of is seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReturnMode {
    /// Through the return stub in the program, which records the return
    /// without stopping the thread (one stop per call): wherever every
    /// handler of the probe takes its returns from a record
    /// ([`crate::handler::Handler::returns`]), the process can have the
    /// stub, and no fast probe of the process claims the table of return
    /// addresses. Elsewhere, as `Stop`.
    #[default]
    Stub,
    /// At a stop: the return address is replaced by the trampoline's `int3`
    /// (two stops per call), as kretprobes do.
    Stop,
}

impl ReturnMode {
    /// As `--returns` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnMode::Stub => "stub",
            ReturnMode::Stop => "stop",
        }
    }
}

/// What a fast probe does when the ring it shares with rtrace is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// The thread waits for rtrace to make room: the program slows down to
    /// rtrace's pace and nothing is lost. The wait is bounded by rtrace's
    /// liveness: when rtrace is gone, stopped, or has not read for a while,
    /// the record is dropped and counted, and the program runs on.
    #[default]
    Block,
    /// The record is dropped at once and counted (`missed` in the summary):
    /// the program never waits for rtrace.
    Drop,
}

pub(super) struct Probe {
    pub(super) spec: ProbeSpec,
    pub(super) handler: Box<dyn Handler>,
    /// The recording `handler` is, when added as one
    /// (`Tracer::add_recorded_probe`): its fast records go to it directly.
    pub(super) recorder: Option<std::rc::Rc<std::cell::RefCell<crate::record::Recorder>>>,
}

/// Work before tracing begins that can take a while (a glob over every
/// module arms thousands of breakpoints; a line probe reads DWARF), told to
/// the hook set with [`Tracer::on_progress`] so a front end can show it. The
/// engine only reports; drawing is the caller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress<'a> {
    /// A probe spec is being looked up in the modules loaded so far (their
    /// symbol tables; DWARF line tables for a source line).
    Resolving {
        /// The probe spec as given.
        probe: &'a str,
    },
    /// A probe's breakpoints are being planted: `done` of its `total` probe
    /// points so far.
    Arming {
        /// The probe spec as given.
        probe: &'a str,
        /// Probe points armed (or skipped) so far.
        done: usize,
        /// Probe points the spec resolved to.
        total: usize,
    },
    /// The work reported so far is over: the tracer is about to wait for the
    /// tracee or to tell the listeners something. A display clears itself.
    Idle,
}

/// What [`Tracer::on_progress`] is given.
type ProgressFn = Box<dyn FnMut(&Progress<'_>)>;

/// The progress hook, and whether what it was last told is still going on.
#[derive(Default)]
pub(super) struct ProgressHook {
    pub(super) f: Option<ProgressFn>,
    /// Something other than `Idle` was reported last.
    pub(super) busy: bool,
}

impl ProgressHook {
    pub(super) fn report(&mut self, p: Progress<'_>) {
        let Some(f) = &mut self.f else {
            return;
        };
        let idle = p == Progress::Idle;
        if idle && !self.busy {
            return;
        }
        self.busy = !idle;
        // A display that panics is not worth stopping tracing for: it goes.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&p))).is_err() {
            self.f = None;
        }
    }

    /// Tracing has begun: the display is told `Idle` and dropped.
    pub(super) fn end(&mut self) {
        self.report(Progress::Idle);
        self.f = None;
    }
}

/// Traces one process (and, with `follow_forks`, its children).
///
/// A `Tracer` is `!Send`: ptrace ties tracees to the OS thread that attached.
pub struct Tracer {
    pub(super) start: Instant,
    pub(super) opts: Options,
    /// The process traced first; its end ends tracing.
    pub(super) root: Pid,
    /// The other processes given to attach to ([`Tracer::attach_all`]):
    /// traced as followed children are, and detached from with the root.
    pub(super) extra_roots: Vec<Pid>,
    /// Set in launch mode: the child we forked.
    pub(super) launched: Option<spawn::Launched>,
    /// The launched program is killed if rtrace dies (PTRACE_O_EXITKILL):
    /// until tracing begins, and on while int3 breakpoints are in it then
    /// (it would die of the next one it reached), and again from an exec.
    /// A program whose probes all began fast runs on without rtrace, as
    /// one attached to does.
    pub(super) exit_kill: bool,
    /// What is traced: tasks, address spaces (each with its probe table),
    /// stops waiting to be handled.
    pub(super) world: World,
    /// Who is told: the probes' handlers, the listeners, warnings waiting,
    /// what was reported once.
    pub(super) consumers: Consumers,
    /// The fast-probe component's own timing: its clock, when the rings
    /// were read, whether records wait (per-space state is in each space).
    pub(super) pace: Pace,
    pub(super) cache: ElfCache,
    /// Probes that armed somewhere at least once (the others are reported at
    /// the end as never armed).
    pub(super) ever_armed: std::collections::HashSet<ProbeId>,
    /// Specs whose functions no probe arms (`Tracer::exclude`).
    pub(super) excluded: Vec<crate::symbols::ProbeSpec>,
    pub(super) outcome: Option<Outcome>,
    /// The CPU everything runs on (`pin_to_one_cpu`).
    pub(super) pinned: Option<usize>,
    /// Gives the pinned threads their affinity back if rtrace dies.
    pub(super) guardian: Option<crate::sys::sched::Guardian>,
    /// The period the tracer's timer is armed with (see `next_stop`).
    pub(super) timer: Option<Duration>,
    /// With -f: how the root process ended while followed children live on
    /// (the outcome once the last of them has ended, as strace -f does).
    pub(super) root_end: Option<Outcome>,
    pub(super) attach_reported: bool,
    /// Set once the traced process has exec'd: a probe that does not resolve in
    /// the new image (or any image reached by exec) is not an error.
    pub(super) root_execd: bool,
    pub(super) started: bool,
    pub(super) detach_requested: bool,
    /// Set while detaching: threads are brought to a stop and kept there.
    pub(super) halting: bool,
    /// The signal that ended the tracing, to send to the launched program
    /// while its threads are still stopped for the detach: pending when
    /// they are let go, it is the first thing each sees untraced (a program
    /// near its end cannot finish before it arrives).
    pub(super) signal_at_release: Option<i32>,
    /// Stops waited for so far.
    pub(super) stops: u64,
    /// When the listeners were last told the tracer is idle.
    pub(super) last_idle: Instant,
    /// Why the kernel will not let rtrace suspend a tracee's seccomp filter
    /// (`no CAP_SYS_ADMIN`), once it has said so.
    pub(super) seccomp_refused: Option<String>,
    /// Processes told they get no scratch page for their seccomp mode.
    pub(super) seccomp_warned: std::collections::HashSet<Pid>,
    pub(super) _not_send: PhantomData<*const ()>,
}

/// The world the tracer acts on: every traced thread, every address space
/// (its memory, its probe table, its fast-probe state), and the stops
/// waited for but not yet handled.
#[derive(Default)]
pub(super) struct World {
    pub(super) tasks: BTreeMap<Tid, Task>,
    pub(super) spaces: BTreeMap<Pid, Space>,
    /// Stops already waited for but not yet handled (collected while the world
    /// was being stopped, or while a thread was stepped).
    pub(super) deferred: VecDeque<Stop>,
    /// Stops of tasks whose creation event has not been handled yet.
    pub(super) orphans: HashMap<Tid, Stop>,
}

impl World {
    /// The tasks stopped now (in tracer-stop), in order.
    pub(super) fn stopped(&self) -> Vec<Tid> {
        self.tasks
            .iter()
            .filter(|(_, t)| t.state == super::task::TaskState::Stopped)
            .map(|(tid, _)| *tid)
            .collect()
    }
}

/// The consumers of what the tracer sees: the probes (spec and handler),
/// the listeners (printers), warnings waiting for the listeners, and the
/// sets that make a report once per probe.
#[derive(Default)]
pub(super) struct Consumers {
    /// `on_progress`: told about the work before tracing begins.
    pub(super) progress: ProgressHook,
    pub(super) probes: Vec<Option<Probe>>,
    pub(super) listeners: Vec<Box<dyn Handler>>,
    /// Warnings from placing probes (skipped functions), sent to the listeners
    /// before the next stop is handled: probes are added before listeners.
    pub(super) warnings: Vec<Event>,
    /// Probes whose skipped functions (or Go code) were reported already: an
    /// image reached by exec, a shell run by `system()`, skips the same again
    /// and is not reported again (once per probe per run).
    pub(super) skips_reported: std::collections::HashSet<ProbeId>,
    pub(super) go_reported: std::collections::HashSet<ProbeId>,
    /// Probes whose fast or int3 mode was reported.
    pub(super) modes_reported: std::collections::HashSet<ProbeId>,
    /// Each return probe's handler's answer to `Handler::returns` at an
    /// address (with the function it was for).
    pub(super) returns_wanted:
        HashMap<(ProbeId, crate::addr::RuntimeAddr), (String, crate::handler::Returns)>,
}

impl Consumers {
    /// Tells the listeners `event`, seen at `time` (since the tracer
    /// started); a progress display is told the work reported is over.
    pub(super) fn emit(&mut self, event: Event, time: Duration) -> Result<()> {
        self.progress.report(Progress::Idle);
        for l in &mut self.listeners {
            guarded(|| l.on_event(&event, time))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("root", &self.root)
            .field("tasks", &self.world.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Tracer {
    pub(super) fn new(root: Pid, opts: Options) -> Tracer {
        Tracer {
            start: Instant::now(),
            opts,
            root,
            launched: None,
            exit_kill: false,
            world: World::default(),
            consumers: Consumers::default(),
            pace: Pace::default(),
            cache: ElfCache::default(),
            ever_armed: Default::default(),
            excluded: Vec::new(),
            outcome: None,
            pinned: None,
            guardian: None,
            timer: None,
            root_end: None,
            attach_reported: false,
            root_execd: false,
            extra_roots: Vec::new(),
            started: false,
            detach_requested: false,
            halting: false,
            signal_at_release: None,
            stops: 0,
            last_idle: Instant::now(),
            seccomp_refused: None,
            seccomp_warned: Default::default(),
            _not_send: PhantomData,
        }
    }
}

/// Runs one handler method. A panic in it becomes an error, like any handler
/// error: tracing stops, and the tracer detaches (or, before the launched
/// program started, kills it) instead of unwinding through the event loop with
/// the tracee half-way through a hit.
pub(super) fn guarded(call: impl FnOnce() -> Result<()>) -> Result<()> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Err(Error::Handler(format!("a handler panicked: {what}")))
        }
    }
}

/// The kind a probe reports at a resolved location.
pub(super) fn kind_for(function_entry: bool, opts: &Options) -> ProbeKind {
    if function_entry {
        ProbeKind::Function {
            returns: !opts.entry_only,
        }
    } else {
        ProbeKind::Instruction
    }
}
