//! The plugin surface: [`Handler`], [`Hit`] and [`Return`].
//!
//! A handler is attached to a probe with `Tracer::add_probe`, or added as a
//! listener with `Tracer::add_listener`; the command-line tool's printers are
//! handlers like any other. Every method has a default that does nothing, so a
//! handler implements only what it needs. The programs in `examples/` are
//! complete handlers: counting, timing, a leak report, a return value override.
//! Two handlers share one probe, each with its own data slot, as [`Both`].
//!
//! # The contract
//!
//! **Which thread.** Every method runs on the thread that calls `Tracer::run`
//! (or `Tracer::process_next`); a `Tracer` is not `Send`, so there is only one.
//! While `on_entry`, `on_post` and `on_return` run, the tracee thread that hit
//! the probe is stopped (between the two it executes only the displaced
//! instruction): a handler that blocks blocks that thread. Other threads of the
//! traced process may be running meanwhile (they are stopped only while a
//! displaced instruction is stepped in place), so memory a handler reads can
//! change under it, as in any debugger.
//!
//! **Call order at a probe site.** When a thread executes the breakpoint at
//! address S:
//!
//! 1. `on_entry` of every probe at S, in registration order (the order of the
//!    `add_probe` calls; the kprobe pre handlers). Each probe has its own data
//!    slot ([`Hit::set_data`]).
//! 2. For a function probe that reports returns, the return address is replaced,
//!    using the stack pointer as `on_entry` left it: by the return stub's,
//!    when every handler of the site's return probes takes its returns from a
//!    record ([`Handler::returns`]), else by the trampoline's.
//! 3. The displaced instruction executes (emulated, stepped out of line, or
//!    stepped in place).
//! 4. `on_post` of every probe at S, in the same order (the post handlers), with
//!    the registers as the instruction left them.
//! 5. The registers are written back and the thread resumes.
//!
//! Later, when the probed function returns — through the trampoline, or, in
//! code where return addresses must stay untouched (an unwinder is walking the
//! stack), at its real return site — `on_return` runs on the same thread, once
//! per probe of that call, innermost call first when several return at once
//! (tail calls). Through the return stub the thread does not stop: the stub
//! records the return and `on_return` gets it from that record, within a few
//! milliseconds and before the thread's next event, with the same value,
//! duration, errno and returned string (one stop per call instead of two;
//! memory elsewhere cannot be read, and [`Return::set_retval`] changes
//! nothing: a handler that needs either answers [`Returns::Stop`]). Calls whose frames are left without returning (`longjmp`, a C++
//! exception unwinding through them) are dropped silently: no `on_return`,
//! and what their handlers kept with [`Hit::set_data`] is dropped. A probe that
//! does not report returns (an instruction probe, `--entry-only`) never gets
//! `on_return`. A thread that is traced but not reported (a `vfork` child
//! running in the parent's memory when forks are not followed) passes the
//! breakpoints without calling any handler.
//!
//! Lifecycle events (attach, fork, exec, signals, exit, detach) go only to
//! listeners, through [`Handler::on_event`], in the order they happen; so does
//! [`Handler::on_idle`], when the tracer is about to wait for the tracee (before
//! every wait, or batched: see [`Handler::idle_interval`]).
//! `Tracer::run` calls [`Handler::on_finish`] at the end, on the handler of every
//! probe still registered (so a handler shared by several probes through
//! `Rc<RefCell<_>>` is called once per probe; a removed probe's handler has been
//! dropped) and then on every listener. A caller that drives the
//! tracer with `Tracer::process_next` instead gets no `on_finish`.
//!
//! **What a handler may change.** `on_entry` may change registers through
//! [`Hit::regs_mut`]: the displaced instruction executes with them. Moving the
//! instruction pointer away from the probe skips the hit's rest, as a kprobe
//! pre handler returning 1 does: the thread resumes where the pointer says,
//! the probed instruction does not run, no return is watched and no `on_post`
//! is called (to skip a whole call: set the return value, pop the return address
//! into the pointer, add 8 to the stack pointer). `on_post`
//! may change them too; they are written back before the thread resumes, the
//! instruction pointer included. `on_return` may change the return value with
//! [`Return::set_retval`] (the whole register; the caller of a function
//! returning `int` reads its low 32 bits); the thread then resumes at the real
//! return address. Tracee memory is read-only through `Hit` and `Return`.
//!
//! **What an error does.** A handler that returns an error stops tracing, but
//! not in the middle of a hit: the other handlers of the hit still run (the first
//! error is kept), the hit is completed and the thread resumed, and then
//! `Tracer::process_next` returns the error. `Tracer::run` then detaches cleanly
//! (every breakpoint and rewritten return address restored, the scratch page
//! unmapped, pending signals delivered), calls `on_finish` on every handler, and
//! returns the error. The tracee runs on unharmed, untraced. An error from
//! `on_event` or `on_idle` is handled the same way.
//!
//! **A handler that runs long** keeps the tracer from doing anything else,
//! a Ctrl-C included: the tracer looks at its detach request between two
//! stops. One that may loop for long (a script with no operations budget)
//! should ask [`crate::stop_requested`] as it goes and return
//! (an `Ok`, or an error) once it is true: the tracer then detaches as for
//! any SIGINT.
//!
//! **What a panic does.** The engine catches a panic in any handler method and
//! turns it into an error, [`Error::Handler`] with the
//! panic's message (`a handler panicked: …`): the hit is completed, tracing
//! stops, the tracer detaches and `Tracer::run` returns that error, exactly as
//! for a returned error. The tracee runs on unharmed. (The panic message is
//! still printed by the panic hook.) With `panic = "abort"` nothing can be
//! caught: the tracer process dies at once and the kernel kills a launched
//! tracee (`PTRACE_O_EXITKILL`). Returning an error is the better way.
//!
//! **Fast probes.** With `Options::fast` (`--fast`), when a site is armed the
//! handler of every probe there is asked [`Handler::fast`]; when all say yes
//! (and the instructions there allow it) the site is patched with a jump to a
//! detour that records each hit into a ring shared with rtrace, and the thread
//! never stops. The records reach `on_entry` after the fact, with a [`Hit`]
//! built from the record ([`Hit::is_fast`]):
//!
//! - when: the tracer reads the ring before it waits for the tracee, every
//!   2 ms while it is busy, and before the events that follow the hits (a
//!   thread's id reused, exec, exit, detach); so fast hits are reported a little
//!   late, in the order the threads made them, and interleave with int3 hits
//!   and signals in the order they are read, not made;
//! - what: the registers as they were at the probed instruction (those the
//!   handlers asked for in [`Capture::registers`], every one by default, and
//!   the stack pointer and `fs_base`; the others read as 0; the instruction
//!   pointer is the probed address), the time from the time stamp counter, and the memory
//!   the handlers asked for in their [`Capture`] (C strings behind registers
//!   or stack arguments, stack bytes, data buffers): `read_cstr`, `read_bytes` and `read_u64` answer from it as
//!   the live reads would have at that moment, and fail with
//!   [`Error::NotCaptured`] elsewhere;
//! - `on_entry`, and `on_return` for a function probe that reports returns
//!   (the detour swaps the return address for a return stub, which records
//!   the return: rax and rdx as returned, rsp, the time, and the C string
//!   rax points to when [`Capture::ret_string`] asks for it, or the buffer
//!   the call filled when [`Capture::ret_buffer`] does); no `on_post`;
//!   `regs_mut` changes nothing (the hit is over); data kept with
//!   [`Hit::set_data`] comes back in [`Return::data`] as for int3 calls. A
//!   call whose return was not recorded (the ring was full, or an unwinder
//!   ran through it and it was left to an int3 at its return site) is
//!   reported the int3 way or counted missed, never made up;
//! - a handler that only counts answers [`Fast::Aggregate`]: when every
//!   handler of a site does, the program counts the hits (or times the
//!   calls) itself and writes no record, and the handlers get
//!   [`Handler::on_aggregate`] with the totals as the rings are read. The
//!   `-c` summary (with `--hist` too) is such a handler.
//!
//! A site stays an int3 breakpoint when a handler says no (the reason is shown:
//! `rtrace: probe P: int3 (why)`), and so does a site whose instructions a jump
//! cannot replace.
//!
//! **Removing or disabling a probe.** Handlers see only [`Hit`] and
//! [`Return`], not the tracer, so a handler cannot remove its own probe from
//! inside a call. The pattern is a flag shared with the code that drives the
//! tracer, which removes the probe between two `Tracer::process_next` calls:
//!
//! ```no_run
//! use std::cell::Cell;
//! use std::process::Command;
//! use std::rc::Rc;
//! use rtrace::{Handler, Hit, Options, Tracer};
//!
//! /// Reports the first call only.
//! struct FirstCall(Rc<Cell<bool>>);
//!
//! impl Handler for FirstCall {
//!     fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
//!         if !self.0.get() {
//!             println!("first call from thread {}", hit.tid());
//!             self.0.set(true);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> rtrace::Result<()> {
//! let mut tracer = Tracer::launch(&Command::new("ls"), Options::default())?;
//! let done = Rc::new(Cell::new(false));
//! let id = tracer.add_probe("libc:opendir".parse()?, FirstCall(done.clone()))?;
//! let mut removed = false;
//! let outcome = loop {
//!     if let Some(outcome) = tracer.process_next()? {
//!         break outcome;
//!     }
//!     if done.get() && !removed {
//!         tracer.remove_probe(id)?; // the breakpoint goes; ls runs at full speed
//!         removed = true;
//!     }
//! };
//! # let _ = outcome;
//! # Ok(())
//! # }
//! ```
//!
//! Once `remove_probe` has returned, none of that probe's methods is called
//! again: a thread already stopped at its breakpoint is sent through the
//! original instruction, and calls in flight return normally, unreported.
//! Between the hit that set the flag and the removal, no other stop is handled,
//! so no other hit is reported. (Driving the loop with `process_next` means
//! calling what `run` does at the end, `on_finish` included, yourself; and
//! `process_next` does not detach on an error: drop the `Tracer` to detach.)
//! A handler that only wants to ignore further hits can also keep the flag to
//! itself and return early; the breakpoint then stays, and so does its cost.

use std::any::Any;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::{Gpr, RegSet, Regs};
use crate::error::{Error, Result};
use crate::probe::HandlerData;
use crate::probe::ReturnStack;
use crate::symbols::{Module, ModuleMap, Symbolized};
use crate::sys::mem::ProcMem;
use crate::unwind::{self, Stack};

/// Identifies a probe added to a tracer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeId(pub usize);

/// What a probe reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A function probe: entries, and returns unless `--entry-only`.
    Function {
        /// True when returns are reported.
        returns: bool,
    },
    /// An offset, address or line probe: the hit only.
    Instruction,
}

/// Where a probe hit: one resolved location of a probe spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The probe spec as given (`libc:openat`).
    pub probe: String,
    /// The probe's id.
    pub id: ProbeId,
    /// What it reports.
    pub kind: ProbeKind,
    /// The function containing the address (C++ with its parameter types,
    /// as JSON output has it).
    pub symbol: String,
    /// How text output names that function: C++ without its parameter
    /// types (`thrower`, as gdb and uftrace show it), unless the module
    /// has another function of that name (an overload); otherwise as
    /// `symbol`.
    pub name: String,
    /// Bytes into `symbol` (0 for function entries).
    pub offset: u64,
    /// The module's path.
    pub module: std::path::PathBuf,
    /// The probed address.
    pub address: RuntimeAddr,
}

/// Lifecycle events, delivered to listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Attaching and arming are complete; tracing has begun.
    Attached {
        /// The traced process.
        pid: Pid,
        /// Threads traced.
        threads: usize,
        /// Sites armed.
        probes: usize,
        /// Probes waiting for a library.
        pending: usize,
        /// How the returns of int3 probes' calls are seen
        /// (`Options::returns`), when a probe armed watches returns.
        returns: Option<crate::engine::ReturnMode>,
        /// The wall clock at this event: an event's wall-clock time is this
        /// plus its time less this event's (event times are the tracer's
        /// monotonic clock, from its start).
        realtime: std::time::SystemTime,
    },
    /// A traced process created a child.
    Fork {
        /// The parent.
        pid: Pid,
        /// The child.
        child: Pid,
        /// `fork`, `vfork` or `clone`.
        kind: ForkKind,
    },
    /// A traced process executed a new program.
    Exec {
        /// The process.
        pid: Pid,
        /// The new program's path.
        path: std::path::PathBuf,
    },
    /// A signal was delivered to a traced thread.
    Signal {
        /// The process.
        pid: Pid,
        /// The thread.
        tid: Tid,
        /// The signal number (see [`signal_name`]).
        signal: i32,
    },
    /// The traced process exited.
    Exited {
        /// The process.
        pid: Pid,
        /// Its exit code.
        code: i32,
    },
    /// The traced process was killed by a signal.
    Killed {
        /// The process.
        pid: Pid,
        /// The signal number (see [`signal_name`]).
        signal: i32,
        /// True when it dumped core.
        core_dumped: bool,
    },
    /// rtrace detached; the process runs on untraced.
    Detached {
        /// The process.
        pid: Pid,
    },
    /// A call entered through a function probe whose return cannot be
    /// watched (its return address slot already holds the trampoline, but no
    /// call in flight owns it): its return will
    /// not be reported, and it counts as missed (kretprobe's `nmissed`).
    Missed {
        /// The process.
        pid: Pid,
        /// The thread.
        tid: Tid,
        /// The probe spec.
        probe: String,
        /// The function.
        symbol: String,
    },
    /// Something about a probe the user should know (once per probe and
    /// address space): `rtrace: warning: probe P: MESSAGE`.
    Warning {
        /// The probe spec.
        probe: String,
        /// What to know.
        message: String,
    },
    /// Something about a traced process the user should know:
    /// `rtrace: warning: MESSAGE` (a seccomp filter that keeps rtrace from
    /// mapping anything into it, pages rtrace could not unmap).
    ProcessWarning {
        /// The process.
        pid: Pid,
        /// What to know.
        message: String,
    },
    /// A probe never armed (its module never loaded).
    NeverArmed {
        /// The probe spec.
        probe: String,
    },
    /// With fast probes asked for (`Options::fast`): how the sites of a
    /// probe run, once per probe, when tracing begins or when it first arms.
    /// The text printer says it only when a site stays an int3 breakpoint
    /// (`rtrace: probe work: int3 (why)`); JSON has one `probe` event each.
    ProbeMode {
        /// The probe spec.
        probe: String,
        /// Sites patched with a jump to a detour.
        fast: usize,
        /// Sites left to int3 breakpoints, by reason.
        int3: Vec<SkipReason>,
        /// Every site, in address order, with its own mode.
        sites: Vec<SiteMode>,
    },
    /// Records of fast hits were lost: the ring shared with the tracee was
    /// full when they were made (the tracee never waits for rtrace). They
    /// count as missed.
    Lost {
        /// The process.
        pid: Pid,
        /// The probe spec.
        probe: String,
        /// The function.
        symbol: String,
        /// How many, since the last such event (the printers add them
        /// up, and say the total once, at the end).
        count: u64,
    },
    /// Calls of a fast site timed in the program (see [`Fast::Aggregate`])
    /// whose returns could not be watched: the eighth tail call in a row
    /// from a timed call, a full table of return addresses, or a function
    /// that reads its own return address reached by a tail call. They count as
    /// missed, as a return an int3 probe cannot watch does
    /// ([`Event::Missed`], one event per call), and are no lost records.
    Unwatched {
        /// The process.
        pid: Pid,
        /// The probe spec.
        probe: String,
        /// The function.
        symbol: String,
        /// How many, since the last such event.
        count: u64,
    },
    /// A glob probe left some of the functions it matches unprobed (once per
    /// probe and address space).
    Skipped {
        /// The probe spec.
        probe: String,
        /// Why, with how many functions and the first few names, one entry per
        /// reason.
        reasons: Vec<SkipReason>,
    },
}

/// How one site of a probe runs (an [`Event::ProbeMode`]'s `sites`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteMode {
    /// The function the site is in (its symbol).
    pub symbol: String,
    /// The probed address.
    pub address: RuntimeAddr,
    /// `None` when the site is patched with a jump to a detour; why it stays
    /// an int3 breakpoint otherwise, said for this one site (with its
    /// instruction or address where the reason has one).
    pub int3: Option<String>,
}

/// Functions a glob probe skipped for one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkipReason {
    /// Why (`cannot step 'syscall'…`, `rtrace's unwinder hooks`).
    pub reason: String,
    /// How many functions.
    pub count: usize,
    /// The first few of them (at most 3).
    pub examples: Vec<String>,
}

impl SkipReason {
    /// Adds `symbol` to the reason `reason` of `reasons`.
    pub(crate) fn add(reasons: &mut Vec<SkipReason>, reason: &str, symbol: &str) {
        let i = match reasons.iter().position(|r| r.reason == reason) {
            Some(i) => i,
            None => {
                reasons.push(SkipReason {
                    reason: reason.to_string(),
                    count: 0,
                    examples: Vec::new(),
                });
                reasons.len() - 1
            }
        };
        let r = &mut reasons[i];
        r.count += 1;
        if r.examples.len() < 3 {
            r.examples.push(symbol.to_string());
        }
    }

    /// `12 cannot be stepped (a, b, c, …)`.
    pub fn describe(&self) -> String {
        let more = if self.count > self.examples.len() {
            ", …"
        } else {
            ""
        };
        format!(
            "{} {}: {}{more}",
            self.count,
            self.reason,
            self.examples.join(", ")
        )
    }
}

/// `probe work: fast`, `probe work: int3 (why)`, `probe 'str*': fast at
/// 12 sites, int3 at 3 (2 why: a, b; 1 why: c)`: the text of an
/// [`Event::ProbeMode`].
pub(crate) fn probe_mode_message(probe: &str, fast: usize, int3: &[SkipReason]) -> String {
    let slow: usize = int3.iter().map(|r| r.count).sum();
    match (fast, slow, int3) {
        (_, 0, _) => format!("probe {probe}: fast"),
        (0, 1, [only]) => format!("probe {probe}: int3 ({})", only.reason),
        (0, _, _) => {
            let parts: Vec<String> = int3.iter().map(SkipReason::describe).collect();
            format!("probe {probe}: int3 ({})", parts.join("; "))
        }
        _ => {
            let parts: Vec<String> = int3.iter().map(SkipReason::describe).collect();
            format!(
                "probe {probe}: fast at {fast} site{}, int3 at {slow} ({})",
                if fast == 1 { "" } else { "s" },
                parts.join("; ")
            )
        }
    }
}

/// What a printer says of the fast calls of `symbol` (probe `probe`) whose
/// records were lost: `count` of them, in all.
pub(crate) fn lost_message(probe: &str, symbol: &str, count: u64) -> String {
    format!(
        "probe {probe}: {count} fast call{} of {symbol} not recorded: the ring shared with the \
         program was full while rtrace was not reading (stopped, stuck or gone) or with \
         --overflow drop; counted as missed in the summary (-c)",
        if count == 1 { "" } else { "s" }
    )
}

/// `probe libc:* skipped 5 functions: 3 whose first instruction cannot be
/// stepped (…): a, b, c, …; 2 …`: the text of an [`Event::Skipped`].
pub(crate) fn skipped_message(probe: &str, reasons: &[SkipReason]) -> String {
    let total: usize = reasons.iter().map(|r| r.count).sum();
    let parts: Vec<String> = reasons.iter().map(SkipReason::describe).collect();
    let s = if total == 1 { "" } else { "s" };
    format!(
        "probe {probe} skipped {total} function{s}: {}",
        parts.join("; ")
    )
}

/// The name of a signal number: `SIGUSR1`, `SIGRTMIN+3`.
pub fn signal_name(signal: i32) -> String {
    crate::sys::signal::name(signal)
}

/// How a child was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForkKind {
    /// fork(2).
    Fork,
    /// vfork(2).
    Vfork,
    /// clone(2) without CLONE_THREAD.
    Clone,
}

impl ForkKind {
    /// `fork`, `vfork` or `clone`.
    pub fn as_str(self) -> &'static str {
        match self {
            ForkKind::Fork => "fork",
            ForkKind::Vfork => "vfork",
            ForkKind::Clone => "clone",
        }
    }
}

/// Probe logic: what runs when a probe is hit, when a probed call returns, and
/// (for listeners) when the traced process changes.
///
/// Every method has a default that does nothing and returns `Ok(())`. Every
/// method runs on the tracer's thread; the three hit methods run with the tracee
/// thread that hit the probe stopped until they return. An error from any method
/// stops tracing: `Tracer::run` detaches cleanly and returns it, and the tracee
/// runs on. A panic is caught and handled as an error.
/// The [module docs](self) give the contract in full: call order, threads, what
/// may be changed, errors, panics, and removing a probe.
pub trait Handler {
    /// Called when a thread reaches the probe, before the instruction at the
    /// probed address executes (the kprobe pre handler). At a function probe
    /// this is the function's first instruction: the arguments are in their
    /// registers ([`Hit::arg`]) and the return address is at the stack pointer.
    ///
    /// Probes sharing the address are called in registration order. Registers
    /// changed through [`Hit::regs_mut`] are what the instruction executes with;
    /// moving the instruction pointer skips the instruction (see the module
    /// docs). Data kept with [`Hit::set_data`] comes back
    /// in [`Handler::on_return`] for this call.
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let _ = hit;
        Ok(())
    }
    /// Called after the probed instruction executed, before the thread resumes
    /// (the kprobe post handler), in the same order as `on_entry`. The
    /// registers are the ones the instruction left; changes through
    /// [`Hit::regs_mut`], instruction pointer included, are written back before
    /// the thread resumes. Not called when the instruction faulted: the
    /// program gets its signal at the probed address instead, as untraced.
    fn on_post(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let _ = hit;
        Ok(())
    }
    /// Called when a call entered through a function probe returns (the
    /// kretprobe handler), on the thread that made the call, with the return
    /// value in its register ([`Return::retval`]) and the caller not yet
    /// resumed; [`Return::set_retval`] changes what the caller gets.
    ///
    /// Called once per call whose entry was reported, except calls left without
    /// returning (`longjmp`, an exception unwinding through them) and calls in
    /// flight when the probe is removed or the tracer detaches. When several
    /// calls return at once (tail calls), the innermost is reported first.
    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        let _ = ret;
        Ok(())
    }
    /// Called on a listener (`Tracer::add_listener`) for each lifecycle event,
    /// in the order they happen; `time` is the time since the tracer started.
    /// Never called on a probe's handler.
    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        let _ = (event, time);
        Ok(())
    }
    /// Called on a listener when the tracer is about to wait for the tracee:
    /// flush buffered output here so a person watching sees it. How often
    /// depends on [`Handler::idle_interval`]. Never called on a probe's handler.
    fn on_idle(&mut self) -> Result<()> {
        Ok(())
    }
    /// How long this listener's buffered output may wait. `None` (the default):
    /// [`Handler::on_idle`] before every wait, so output to a terminal stays in
    /// step with the program's own. `Some(d)`: while the tracee keeps stopping,
    /// at most every `d` (a flush per hit costs a write per hit), and at most `d`
    /// after it stops stopping. The shortest wish of all listeners wins. (Driven
    /// as a library without the command line's signal handling, the tracer tells
    /// listeners before every blocking wait.)
    fn idle_interval(&self) -> Option<Duration> {
        None
    }
    /// How often this listener wants [`Handler::on_idle`] even when the
    /// tracee does not stop at all (a live display redraws, reads keys).
    /// `None` (the default): only around stops, as `idle_interval` says.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }
    /// Asked when a probe of this handler is armed with `Options::fast`:
    /// may its hits at `site` be fast, recorded by a detour without stopping
    /// the thread, and handed to [`Handler::on_entry`] afterwards (see
    /// "Fast probes" in the module docs)? `module` is the module of the
    /// site, for its symbols and DWARF. The default is no: a handler must say
    /// what it reads, and that it changes nothing.
    fn fast(&mut self, site: &Site, module: Option<&Module>) -> Fast {
        let _ = (site, module);
        Fast::No("its handler does not take fast hits".into())
    }
    /// How this handler wants the returns of the calls an int3 probe at
    /// `site` stopped at the entry of (asked once per probe and address).
    /// [`Returns::Record`] (the default for a handler that takes fast hits,
    /// [`Handler::fast`] not `No`): the thread is not stopped at the
    /// return; the return stub in the program records it (rax, rdx, xmm0,
    /// the stack pointer, the time, errno, the C string at rax up to the
    /// length `fast` asked for) and [`Handler::on_return`] gets it from
    /// that record, as a fast probe's return: [`Return::retval`],
    /// [`Return::duration`], [`Return::errno`] and the string are what a
    /// stop would have shown; other memory cannot be read, and a changed
    /// return value is not written back. [`Returns::Stop`] (the default
    /// otherwise): the thread stops at the return, as a kretprobe does, so
    /// the handler may read memory live there, or change the return value.
    /// A call's return is recorded only when every handler of the site's
    /// return probes says `Record` (and `Options::returns` allows it).
    fn returns(&mut self, site: &Site, module: Option<&Module>) -> Returns {
        match self.fast(site, module) {
            Fast::Yes(capture) => Returns::Record {
                string: capture.ret_string,
                errno: true,
            },
            Fast::Aggregate => Returns::Record {
                string: 0,
                errno: false,
            },
            Fast::No(_) => Returns::Stop,
        }
    }
    /// The hits, or the calls and their times, of fast `site` the program
    /// counted since the last call (`counts`), for a handler that answered
    /// [`Fast::Aggregate`] when every handler of the site did: instead of
    /// [`Handler::on_entry`] (and [`Handler::on_return`]) for each of them.
    /// Called as the rings are read, and a last time before the process
    /// ends, execs or is let go.
    fn on_aggregate(&mut self, site: &Site, counts: &Aggregate) -> Result<()> {
        let _ = (site, counts);
        Ok(())
    }
    /// Called once by `Tracer::run` when tracing is over — the tracee exited or
    /// was killed, rtrace detached, or an error stopped tracing (after the
    /// detach) — on every probe's handler and then every listener: flush,
    /// summarise. A handler registered for several probes is called once per
    /// probe; a removed probe's handler is not called. Not called when the
    /// tracer is driven with `Tracer::process_next` alone.
    fn on_finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// One handler shared between several probes (and listeners).
impl<H: Handler + ?Sized> Handler for Rc<RefCell<H>> {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        self.borrow_mut().on_entry(hit)
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        self.borrow_mut().on_post(hit)
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        self.borrow_mut().on_return(ret)
    }
    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        self.borrow_mut().on_event(event, time)
    }
    fn on_idle(&mut self) -> Result<()> {
        self.borrow_mut().on_idle()
    }
    fn idle_interval(&self) -> Option<Duration> {
        self.borrow().idle_interval()
    }
    fn tick_interval(&self) -> Option<Duration> {
        self.borrow().tick_interval()
    }
    fn fast(&mut self, site: &Site, module: Option<&Module>) -> Fast {
        self.borrow_mut().fast(site, module)
    }
    fn returns(&mut self, site: &Site, module: Option<&Module>) -> Returns {
        self.borrow_mut().returns(site, module)
    }
    fn on_aggregate(&mut self, site: &Site, counts: &Aggregate) -> Result<()> {
        self.borrow_mut().on_aggregate(site, counts)
    }
    fn on_finish(&mut self) -> Result<()> {
        self.borrow_mut().on_finish()
    }
}

/// A handler's answer to [`Handler::returns`]: how the return of a call an
/// int3 probe stopped at the entry of comes to [`Handler::on_return`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    /// From the return stub's record, with no stop.
    Record {
        /// The most bytes of the C string at rax the handler reads (0:
        /// none).
        string: usize,
        /// The handler reads errno ([`Return::errno`]).
        errno: bool,
    },
    /// At a stop of the returning thread.
    Stop,
}

impl Returns {
    /// What two handlers of one site want together: a stop when either
    /// does, else a record with what either reads.
    pub fn both(a: Returns, b: Returns) -> Returns {
        match (a, b) {
            (
                Returns::Record {
                    string: x,
                    errno: e,
                },
                Returns::Record {
                    string: y,
                    errno: f,
                },
            ) => Returns::Record {
                string: x.max(y),
                errno: e || f,
            },
            _ => Returns::Stop,
        }
    }
}

/// A handler's answer to [`Handler::fast`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fast {
    /// Yes: hits may be fast, the detour capturing this memory with the
    /// registers.
    Yes(Capture),
    /// Yes, and the handler only aggregates: it counts the site's hits, or
    /// its calls with their durations (a count, the sum, the shortest and
    /// longest, a log2 histogram), and reads nothing else. When every
    /// handler of a site says so, the program does the counting and no
    /// record is written: at a site without return probes the detour adds
    /// one to the site's hits; at a site where every probe watches returns
    /// the detour keeps the entry's time and the return stub adds the
    /// call's duration to the site's row (a call in flight when an int3
    /// probe on an unwinder's entry, or on a function that reads its own
    /// return address, is hit comes to `on_return` as an int3 call's
    /// does, without `on_entry`). Both are locked adds in the
    /// program's memory, in blocks chosen by thread, as bpftrace's per-CPU
    /// maps do. The handlers then get [`Handler::on_aggregate`] instead of
    /// `on_entry` and `on_return`. Otherwise (another handler wants the
    /// hits, a site mixing entry-only and return probes, or more timed
    /// sites than a process's ring has rows for, 1,024) the hits come to
    /// `on_entry` and `on_return` as with `Yes` and no capture.
    Aggregate,
    /// No, and why (the user sees `rtrace: probe P: int3 (WHY)`).
    No(String),
}

/// What the program counted of a fast site's hits or calls, for
/// [`Handler::on_aggregate`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Aggregate {
    /// The process.
    pub pid: Pid,
    /// Hits since the last call, at a site without return probes.
    pub hits: u64,
    /// Calls completed since the last call, at a site whose calls are
    /// timed in the program (as `on_return` would have seen them: a call
    /// left by longjmp or an exception never completes).
    pub calls: u64,
    /// Those calls' durations (None at a site without return probes).
    pub times: Option<CallTimes>,
}

/// The durations of the calls an [`Aggregate`] counts, measured in the
/// program between the detour's and the return stub's time stamp counter
/// readings, in nanoseconds as rtrace's clock converts them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallTimes {
    /// The sum of the calls' durations.
    pub total: Duration,
    /// The shortest call so far in this process (not only among these).
    pub min: Duration,
    /// The longest call so far in this process.
    pub max: Duration,
    /// The calls by duration in nanoseconds, in log2 buckets: `[0]` is
    /// unused (a negative time), `[1]` counts 0 ns, `[2 + k]` from `2^k`
    /// to `2^(k+1)` ns. The counts add up to `calls`.
    pub log2_ns: [u64; 65],
}

/// What the detour of a fast probe copies for a handler besides the
/// registers: the memory the handler will read from a fast [`Hit`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    /// C strings: the register holding the pointer at the probed instruction,
    /// and the most bytes to copy (its NUL ends the copy sooner). For a fast
    /// hit, `read_cstr(pointer, max)` returns what it would have read live
    /// at that moment, for any `max` up to this one.
    pub strings: Vec<(Gpr, usize)>,
    /// Bytes of the stack from `sp + 8` (above a function's return address:
    /// its stack arguments), served to `read_bytes` and `read_u64`.
    pub stack: usize,
    /// At a fast return: the most bytes of the C string the return value
    /// (rax) points to, served to `read_cstr` on the [`Return`] (0: none).
    pub ret_string: usize,
    /// C strings whose pointers are stack arguments: the pointer's offset
    /// from `sp + 8` (as [`Capture::stack`] counts), and the most bytes to
    /// copy. The pointer is served to `read_u64` (the stack is captured up
    /// to it), the string to `read_cstr`.
    pub stack_strings: Vec<(usize, usize)>,
    /// Data buffers: the register holding the pointer, the register holding
    /// the length in bytes, and the most bytes to copy (the length is
    /// copied when it is less). Served to `read_bytes` for any length up
    /// to what was copied.
    pub buffers: Vec<(Gpr, Gpr, usize)>,
    /// At a fast return: the buffer the register held a pointer to at the
    /// entry, as the call filled it (`read`'s): as many bytes as the return
    /// value says when it is positive, at most the given number, served to
    /// `read_bytes` on the [`Return`]. Only with no `ret_string`.
    pub ret_buffer: Option<(Gpr, usize)>,
    /// The registers a fast [`Hit`] carries: every general-purpose one and
    /// rflags by default; a handler that says fewer makes each record
    /// smaller and the detour shorter (the printers ask for the argument
    /// registers, and the xmm registers of `float` and `double` arguments:
    /// [`Hit::xmm`]). The others read as 0 (an xmm one as None) in a fast
    /// hit. The stack pointer, and the registers the strings are read from,
    /// are always recorded.
    pub registers: RegSet,
}

impl Capture {
    /// Nothing: no register (but the stack pointer), no memory; for a
    /// handler that reads only the site and the time of a fast hit.
    pub fn nothing() -> Capture {
        Capture {
            registers: RegSet::NONE,
            ..Capture::default()
        }
    }

    /// Also the C string that SysV argument `n` (0..6) points to at a
    /// function's entry, at most `max` bytes.
    pub fn string_arg(&mut self, n: usize, max: usize) -> &mut Self {
        if let Some(reg) = Gpr::arg(n) {
            self.string(reg, max);
        }
        self
    }

    /// Also the C string register `reg` points to, at most `max` bytes.
    pub fn string(&mut self, reg: Gpr, max: usize) -> &mut Self {
        match self.strings.iter_mut().find(|(r, _)| *r == reg) {
            Some((_, m)) => *m = (*m).max(max),
            None => self.strings.push((reg, max)),
        }
        self
    }

    /// Also the C string that the stack argument at `offset` from `sp + 8`
    /// points to, at most `max` bytes (and the stack up to that argument).
    pub fn stack_string(&mut self, offset: usize, max: usize) -> &mut Self {
        match self.stack_strings.iter_mut().find(|(o, _)| *o == offset) {
            Some((_, m)) => *m = (*m).max(max),
            None => self.stack_strings.push((offset, max)),
        }
        self.stack = self.stack.max(offset.saturating_add(8));
        self
    }

    /// Also the buffer register `ptr` points to, as many bytes as register
    /// `len` says, at most `max`.
    pub fn buffer(&mut self, ptr: Gpr, len: Gpr, max: usize) -> &mut Self {
        match self
            .buffers
            .iter_mut()
            .find(|(p, l, _)| (*p, *l) == (ptr, len))
        {
            Some((_, _, m)) => *m = (*m).max(max),
            None => self.buffers.push((ptr, len, max)),
        }
        self
    }

    /// Only `regs` (and the stack pointer, and the registers of the
    /// strings and buffers) in a fast hit, rather than every register.
    pub fn registers(&mut self, regs: RegSet) -> &mut Self {
        self.registers = regs;
        self
    }

    /// Also everything `other` captures.
    pub fn merge(&mut self, other: &Capture) {
        self.registers = self.registers.union(other.registers);
        for &(reg, max) in &other.strings {
            self.string(reg, max);
        }
        self.stack = self.stack.max(other.stack);
        self.ret_string = self.ret_string.max(other.ret_string);
        for &(offset, max) in &other.stack_strings {
            self.stack_string(offset, max);
        }
        for &(ptr, len, max) in &other.buffers {
            self.buffer(ptr, len, max);
        }
        self.ret_buffer = match (self.ret_buffer, other.ret_buffer) {
            (Some((a, x)), Some((b, y))) if a == b => Some((a, x.max(y))),
            (Some(mine), None) => Some(mine),
            (None, theirs) => theirs,
            // Two buffers at one return: a record holds one; the first wins.
            (Some(mine), Some(_)) => Some(mine),
        };
    }
}

/// Memory a hit reads: the live tracee's, or what a fast probe's detour
/// copied when the hit happened.
#[derive(Clone, Copy)]
pub(crate) enum Memory<'a> {
    /// The stopped tracee's.
    Live(&'a ProcMem),
    /// A fast record's captures.
    Captured(&'a Captured),
    /// The stopped tracee's, each read kept in the log as a capture would
    /// have it (a recording's int3 hits: what the printers read of them is
    /// what a replay has).
    Logged(&'a ProcMem, &'a RefCell<Captured>),
}

/// One C string a detour copied.
#[derive(Clone, Debug, Default)]
pub(crate) struct CapturedStr {
    /// The pointer.
    pub ptr: RuntimeAddr,
    /// The bytes copied, without the NUL.
    pub bytes: Vec<u8>,
    /// The NUL was among the bytes asked for.
    pub terminated: bool,
    /// The memory could be read.
    pub readable: bool,
}

/// One data buffer a detour (or the return stub) copied.
#[derive(Clone, Debug, Default)]
pub(crate) struct CapturedBuf {
    /// Where it is.
    pub ptr: RuntimeAddr,
    /// The bytes copied (as many as asked for, or its length).
    pub bytes: Vec<u8>,
    /// The memory could be read.
    pub readable: bool,
}

/// What a fast record holds of the tracee's memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Captured {
    /// C strings.
    pub strings: Vec<CapturedStr>,
    /// Data buffers.
    pub buffers: Vec<CapturedBuf>,
    /// Stack bytes from this address, when they could be read.
    pub stack: Option<(RuntimeAddr, Vec<u8>)>,
    /// The low 64 bits of xmm0 to xmm7, those recorded.
    pub xmm: [Option<u64>; 8],
}

impl Captured {
    fn not_captured(addr: RuntimeAddr) -> Error {
        Error::NotCaptured { addr }
    }

    pub(crate) fn read_cstr(&self, addr: RuntimeAddr, max: usize) -> Result<(Vec<u8>, bool)> {
        let best = self
            .strings
            .iter()
            .filter(|s| s.ptr == addr)
            .max_by_key(|s| (s.readable, s.terminated, s.bytes.len()));
        let Some(s) = best else {
            return Err(Self::not_captured(addr));
        };
        if !s.readable {
            return Err(Error::Memory {
                pid: Pid::from_raw(0),
                addr,
                errno: nix::errno::Errno::EFAULT,
            });
        }
        if s.terminated && s.bytes.len() < max {
            return Ok((s.bytes.clone(), true));
        }
        Ok((s.bytes[..s.bytes.len().min(max)].to_vec(), false))
    }

    pub(crate) fn read_bytes(&self, addr: RuntimeAddr, len: usize) -> Result<Vec<u8>> {
        if let Some((at, bytes)) = &self.stack {
            let from = addr.distance_from(*at).unwrap_or(u64::MAX);
            if from.saturating_add(len as u64) <= bytes.len() as u64 {
                return Ok(bytes[from as usize..from as usize + len].to_vec());
            }
        }
        let copied = self
            .buffers
            .iter()
            .filter(|b| b.ptr == addr)
            .max_by_key(|b| (b.readable, b.bytes.len()));
        match copied {
            Some(b) if !b.readable => Err(Error::Memory {
                pid: Pid::from_raw(0),
                addr,
                errno: nix::errno::Errno::EFAULT,
            }),
            Some(b) if b.bytes.len() >= len => Ok(b.bytes[..len].to_vec()),
            _ => Err(Self::not_captured(addr)),
        }
    }
}

/// A stack walk over a fast record reads what the detour copied of the
/// stack (nothing else of the thread's memory is known).
impl unwind::Memory for Memory<'_> {
    fn read(&self, addr: RuntimeAddr, buf: &mut [u8]) -> usize {
        match self {
            Memory::Live(mem) | Memory::Logged(mem, _) => mem.read_partial(addr, buf),
            Memory::Captured(c) => match &c.stack {
                Some((at, bytes)) if addr >= *at => {
                    let from = (addr.get() - at.get()) as usize;
                    let avail = bytes.get(from..).unwrap_or_default();
                    let n = avail.len().min(buf.len());
                    buf[..n].copy_from_slice(&avail[..n]);
                    n
                }
                _ => 0,
            },
        }
    }
}

impl<'a> Memory<'a> {
    /// The live tracee's memory, unless this is a fast record.
    pub(crate) fn live(&self) -> Option<&'a ProcMem> {
        match self {
            Memory::Live(mem) | Memory::Logged(mem, _) => Some(mem),
            Memory::Captured(_) => None,
        }
    }

    /// What a record holds of the memory, when this is a record.
    pub(crate) fn captured(&self) -> Option<&'a Captured> {
        match self {
            Memory::Captured(c) => Some(c),
            Memory::Live(_) | Memory::Logged(..) => None,
        }
    }

    fn read_bytes(&self, addr: RuntimeAddr, len: usize) -> Result<Vec<u8>> {
        match self {
            Memory::Live(mem) => mem.read_vec(addr, len),
            Memory::Captured(c) => c.read_bytes(addr, len),
            Memory::Logged(mem, log) => {
                let got = mem.read_vec(addr, len);
                log.borrow_mut().buffers.push(CapturedBuf {
                    ptr: addr,
                    bytes: got.as_ref().map_or_else(|_| Vec::new(), Clone::clone),
                    readable: got.is_ok(),
                });
                got
            }
        }
    }

    fn read_u64(&self, addr: RuntimeAddr) -> Result<u64> {
        match self {
            Memory::Live(mem) => mem.read_u64(addr),
            Memory::Captured(_) | Memory::Logged(..) => {
                let b = self.read_bytes(addr, 8)?;
                Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
        }
    }

    fn read_cstr(&self, addr: RuntimeAddr, max: usize) -> Result<(Vec<u8>, bool)> {
        match self {
            Memory::Live(mem) => mem.read_cstr(addr, max),
            Memory::Captured(c) => c.read_cstr(addr, max),
            Memory::Logged(mem, log) => {
                let got = mem.read_cstr(addr, max);
                let (bytes, terminated) = got.as_ref().map_or((Vec::new(), false), Clone::clone);
                log.borrow_mut().strings.push(CapturedStr {
                    ptr: addr,
                    bytes,
                    terminated,
                    readable: got.is_ok(),
                });
                got
            }
        }
    }
}

/// Two handlers on one probe: `.0` runs first at every call, then `.1`, each
/// with its own data slot. What one keeps with [`Hit::set_data`] the other
/// never sees, and each gets its own back in [`Handler::on_return`], so two
/// handlers written for a probe of their own can share one (the command
/// line's printer and its timeline, say) without a second breakpoint.
///
/// As for probes sharing an address, an error from `.0` does not keep `.1`
/// from running; the first error is returned. As a listener, both get every
/// event, and the shorter [`Handler::idle_interval`] wins.
pub struct Both<A, B>(pub A, pub B);

/// The two data slots of a [`Both`], kept in its probe's one slot between the
/// entry and the return.
struct BothData(HandlerData, HandlerData);

/// Takes what a [`Both`] keeps in `slot`: nothing at an entry, the pair after.
fn split_slots(slot: &mut HandlerData) -> (HandlerData, HandlerData) {
    match slot.take().map(|b| b.downcast::<BothData>()) {
        Some(Ok(both)) => (both.0, both.1),
        // The slot is this probe's alone, so only a pair is ever in it.
        Some(Err(_)) | None => (None, None),
    }
}

/// Runs `f` on `hit` with `data` in its slot; returns the result and what
/// the slot holds after.
fn with_slot(
    hit: &mut Hit<'_>,
    data: HandlerData,
    f: impl FnOnce(&mut Hit<'_>) -> Result<()>,
) -> (Result<()>, HandlerData) {
    *hit.data = data;
    let r = f(hit);
    (r, hit.data.take())
}

/// Both phases of a hit go the same way: `.0` with its slot, `.1` with its own.
fn both_at_hit(
    hit: &mut Hit<'_>,
    first: impl FnOnce(&mut Hit<'_>) -> Result<()>,
    second: impl FnOnce(&mut Hit<'_>) -> Result<()>,
) -> Result<()> {
    let (a, b) = split_slots(hit.data);
    let (ra, a) = with_slot(hit, a, first);
    let (rb, b) = with_slot(hit, b, second);
    if a.is_some() || b.is_some() {
        *hit.data = Some(Box::new(BothData(a, b)));
    }
    ra.and(rb)
}

impl<A: Handler, B: Handler> Handler for Both<A, B> {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let Both(first, second) = self;
        both_at_hit(hit, |h| first.on_entry(h), |h| second.on_entry(h))
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let Both(first, second) = self;
        both_at_hit(hit, |h| first.on_post(h), |h| second.on_post(h))
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        let (a, b) = split_slots(&mut ret.data);
        ret.data = a;
        let ra = self.0.on_return(ret);
        ret.data = b;
        let rb = self.1.on_return(ret);
        ret.data = None;
        ra.and(rb)
    }
    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        let ra = self.0.on_event(event, time);
        let rb = self.1.on_event(event, time);
        ra.and(rb)
    }
    fn on_idle(&mut self) -> Result<()> {
        let ra = self.0.on_idle();
        let rb = self.1.on_idle();
        ra.and(rb)
    }
    fn idle_interval(&self) -> Option<Duration> {
        // `None` asks for the most (before every wait).
        match (self.0.idle_interval(), self.1.idle_interval()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (None, _) | (_, None) => None,
        }
    }
    fn tick_interval(&self) -> Option<Duration> {
        match (self.0.tick_interval(), self.1.tick_interval()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn fast(&mut self, site: &Site, module: Option<&Module>) -> Fast {
        // Fast only when both take fast hits, capturing what either reads;
        // counted in the program only when both only count.
        match (self.0.fast(site, module), self.1.fast(site, module)) {
            (Fast::No(why), _) | (_, Fast::No(why)) => Fast::No(why),
            (Fast::Aggregate, Fast::Aggregate) => Fast::Aggregate,
            (Fast::Yes(mut a), Fast::Yes(b)) => {
                a.merge(&b);
                Fast::Yes(a)
            }
            (Fast::Yes(c), Fast::Aggregate) | (Fast::Aggregate, Fast::Yes(c)) => Fast::Yes(c),
        }
    }
    fn returns(&mut self, site: &Site, module: Option<&Module>) -> Returns {
        Returns::both(self.0.returns(site, module), self.1.returns(site, module))
    }
    fn on_aggregate(&mut self, site: &Site, counts: &Aggregate) -> Result<()> {
        let ra = self.0.on_aggregate(site, counts);
        let rb = self.1.on_aggregate(site, counts);
        ra.and(rb)
    }
    fn on_finish(&mut self) -> Result<()> {
        let ra = self.0.on_finish();
        let rb = self.1.on_finish();
        ra.and(rb)
    }
}

/// What the engine knows of the return addresses it rewrote on the hitting
/// thread's stack: enough to walk a stack the trampoline appears on, and no
/// more of the engine's state.
#[derive(Clone, Copy, Default)]
pub(crate) struct ReturnAddrs<'a> {
    /// The trampoline's address (None: the space has none, so no return
    /// address is rewritten).
    pub trampoline: Option<RuntimeAddr>,
    /// The thread's calls in flight.
    pub calls: Option<&'a ReturnStack>,
    /// The return stub's address, when the process has one.
    pub stub: Option<RuntimeAddr>,
    /// The thread's calls in flight whose returns the stub watches.
    pub stub_calls: Option<&'a ReturnStack>,
    /// (slot, original) rewritten for this very hit: the post handlers run
    /// before the call is recorded in `calls`.
    pub pending: Option<(RuntimeAddr, RuntimeAddr)>,
}

impl ReturnAddrs<'_> {
    fn original(&self, slot: RuntimeAddr) -> Option<RuntimeAddr> {
        match self.pending {
            Some((s, orig)) if s == slot => Some(orig),
            _ => self
                .calls
                .and_then(|c| c.original_at(slot))
                .or_else(|| self.stub_calls?.original_at(slot)),
        }
    }
}

/// What a handler sees of a tracee stopped at a probe, or of a fast
/// probe's record of a hit.
pub struct Hit<'a> {
    pub(crate) pid: Pid,
    pub(crate) tid: Tid,
    pub(crate) site: &'a Site,
    pub(crate) regs: &'a mut Regs,
    pub(crate) regs_dirty: &'a mut bool,
    pub(crate) mem: Memory<'a>,
    pub(crate) modules: &'a ModuleMap,
    pub(crate) time: Duration,
    pub(crate) data: &'a mut Option<Box<dyn Any>>,
    pub(crate) returns: ReturnAddrs<'a>,
    /// The stack walked at this hit (with the depth asked for), so handlers
    /// sharing the hit walk it once; set beforehand when the hit is rebuilt
    /// from an entry seen earlier.
    pub(crate) stack: RefCell<Option<(usize, Rc<Stack>)>>,
}

impl<'a> Hit<'a> {
    /// The process.
    pub fn pid(&self) -> Pid {
        self.pid
    }
    /// The thread that hit the probe.
    pub fn tid(&self) -> Tid {
        self.tid
    }
    /// The probe and where it is.
    pub fn site(&self) -> &Site {
        self.site
    }
    /// When the hit happened, since the tracer started.
    pub fn time(&self) -> Duration {
        self.time
    }
    /// The thread's registers.
    pub fn regs(&self) -> &Regs {
        self.regs
    }
    /// The thread's registers, for writing (written back before it resumes;
    /// for a fast hit, which happened already, changes go nowhere).
    pub fn regs_mut(&mut self) -> &mut Regs {
        *self.regs_dirty = true;
        self.regs
    }
    /// True for a fast hit: a record, taken without stopping the thread,
    /// handed over after the fact. Its registers are as they were at the
    /// probed instruction (the instruction pointer is the probed address);
    /// memory reads see what the detour captured ([`Handler::fast`]), and
    /// fail with [`Error::NotCaptured`] elsewhere.
    pub fn is_fast(&self) -> bool {
        matches!(self.mem, Memory::Captured(_))
    }
    /// The low 64 bits of xmm register `n` (a float or double argument of
    /// the SysV ABI: the first in xmm0), read from the stopped thread, or
    /// from a fast hit's record when its handlers asked for it
    /// ([`RegSet::with_xmm`]); None otherwise.
    pub fn xmm(&self, n: usize) -> Option<u64> {
        match self.mem {
            Memory::Captured(c) => c.xmm.get(n).copied().flatten(),
            Memory::Live(_) => crate::sys::ptrace::xmm_low(self.tid).ok()?.get(n).copied(),
            Memory::Logged(_, log) => {
                let v = crate::sys::ptrace::xmm_low(self.tid).ok()?.get(n).copied();
                if let Some(slot) = log.borrow_mut().xmm.get_mut(n) {
                    *slot = v;
                }
                v
            }
        }
    }
    /// SysV integer argument `n` (0..6) at a function's entry. A pointer
    /// argument becomes an address with `RuntimeAddr::from`.
    pub fn arg(&self, n: usize) -> Option<u64> {
        self.regs.arg(n)
    }
    /// The instruction pointer: the probed address in `on_entry` (unless an
    /// earlier handler moved it), the next instruction in `on_post`.
    pub fn ip(&self) -> RuntimeAddr {
        RuntimeAddr(self.regs.ip())
    }
    /// The stack pointer. At a function's entry the return address is the
    /// word there: `hit.read_u64(hit.sp())`.
    pub fn sp(&self) -> RuntimeAddr {
        RuntimeAddr(self.regs.sp())
    }
    /// Reads `len` bytes of tracee memory at `addr`.
    pub fn read_bytes(&self, addr: RuntimeAddr, len: usize) -> Result<Vec<u8>> {
        self.mem.read_bytes(addr, len)
    }
    /// Reads a u64 of tracee memory at `addr`.
    pub fn read_u64(&self, addr: RuntimeAddr) -> Result<u64> {
        self.mem.read_u64(addr)
    }
    /// Reads the C string at `addr`, at most `max` bytes; the flag is false
    /// when it was cut.
    pub fn read_cstr(&self, addr: RuntimeAddr, max: usize) -> Result<(Vec<u8>, bool)> {
        self.mem.read_cstr(addr, max)
    }
    /// Names an address by function and module.
    pub fn symbolize(&self, addr: RuntimeAddr) -> Option<Symbolized<'_>> {
        self.modules.symbolize(addr)
    }
    /// The module mapping the probe.
    pub fn module_path(&self) -> &Path {
        &self.site.module
    }
    /// The loaded module the probe is in: its parsed file (symbols, DWARF) and
    /// load bias. None only if the address space changed under the site.
    pub fn module(&self) -> Option<&Module> {
        self.modules
            .module_at(self.site.address)
            .filter(|m| m.path == self.site.module)
    }
    /// rtrace's return trampoline, when return probes can rewrite return
    /// addresses in this process: while a watched call is in flight, its
    /// return address slot on the stack holds this address instead of the
    /// real one (see [`Hit::original_return`]).
    pub fn trampoline(&self) -> Option<RuntimeAddr> {
        self.returns.trampoline
    }

    /// The real return address of the call in flight whose return address
    /// slot is the stack address `slot`, when that slot holds the trampoline
    /// (the call's return is watched). None for any other slot. A stack
    /// walker that reads the trampoline from a slot goes on with this.
    pub fn original_return(&self, slot: RuntimeAddr) -> Option<RuntimeAddr> {
        self.returns.trampoline?;
        self.returns.original(slot)
    }

    /// The thread's user stack, innermost frame first (the probed function,
    /// or the function of an instruction probe), at most `max_depth` frames,
    /// each named by function, module and (where the module has a line
    /// table) source line. Walked with the modules' call frame information,
    /// frame pointers where there is none, and the real return addresses of
    /// calls whose return addresses the trampoline replaced (see
    /// [`crate::unwind`]). The walk reads the stack a chunk per system call;
    /// its result is kept for the rest of this handler call, so a second
    /// call with the same depth costs nothing.
    pub fn user_stack(&self, max_depth: usize) -> Rc<Stack> {
        if let Some((depth, stack)) = &*self.stack.borrow() {
            if *depth == max_depth {
                return stack.clone();
            }
            // A deeper walk's first frames are this one's (a recording's
            // stack is set as the deepest there is).
            if *depth > max_depth {
                return Rc::new(Stack {
                    frames: stack.frames.iter().take(max_depth).cloned().collect(),
                    truncated: stack.truncated || stack.frames.len() > max_depth,
                });
            }
        }
        let (raw, truncated) = self.raw_stack(max_depth);
        let stack = Rc::new(Stack {
            frames: raw
                .iter()
                .map(|f| unwind::symbolize(f, self.modules))
                .collect(),
            truncated,
        });
        *self.stack.borrow_mut() = Some((max_depth, stack.clone()));
        stack
    }

    /// The frames of [`Hit::user_stack`], unnamed, and whether the walk
    /// stopped at `max_depth` (what a recording keeps).
    pub(crate) fn raw_stack(&self, max_depth: usize) -> (Vec<unwind::RawFrame>, bool) {
        let original = |slot| self.returns.original(slot);
        let walk = unwind::Walk {
            registers: crate::arch::unwind::dwarf_registers(self.regs),
            at_entry: matches!(self.site.kind, ProbeKind::Function { .. })
                && self.ip() == self.site.address,
            max_depth,
            trampoline: self.returns.trampoline.map(|addr| unwind::Trampoline {
                addr,
                stub: self.returns.stub,
                original: &original,
            }),
        };
        let chunked = unwind::ChunkedMemory::new(&self.mem);
        unwind::unwind(&walk, self.modules, &chunked)
    }

    /// Keeps `data` with this call; [`Return::data`] gives it back at return.
    /// Each probe's handler has its own slot; setting it again (in `on_entry`
    /// or `on_post`) replaces it. It is dropped, unseen, when the probe does not
    /// report returns or the call never returns.
    pub fn set_data<T: Any>(&mut self, data: T) {
        *self.data = Some(Box::new(data));
    }
}

/// What a handler sees when a probed function returns.
pub struct Return<'a> {
    pub(crate) pid: Pid,
    pub(crate) tid: Tid,
    pub(crate) site: &'a Site,
    pub(crate) regs: &'a mut Regs,
    pub(crate) regs_dirty: &'a mut bool,
    pub(crate) mem: Memory<'a>,
    pub(crate) modules: &'a ModuleMap,
    pub(crate) time: Duration,
    pub(crate) entered: Duration,
    pub(crate) data: Option<Box<dyn Any>>,
    /// errno as the return stub copied it (a return recorded without a
    /// stop, for a handler that asked: [`Returns::Record`]).
    pub(crate) errno: Option<i32>,
}

impl<'a> Return<'a> {
    /// The process.
    pub fn pid(&self) -> Pid {
        self.pid
    }
    /// The thread.
    pub fn tid(&self) -> Tid {
        self.tid
    }
    /// The probe and where it is.
    pub fn site(&self) -> &Site {
        self.site
    }
    /// The loaded module the probe is in (see [`Hit::module`]).
    pub fn module(&self) -> Option<&Module> {
        self.modules
            .module_at(self.site.address)
            .filter(|m| m.path == self.site.module)
    }
    /// When the function returned, since the tracer started.
    pub fn time(&self) -> Duration {
        self.time
    }
    /// How long the call took.
    pub fn duration(&self) -> Duration {
        self.time.saturating_sub(self.entered)
    }
    /// The return value register, as a signed 64-bit integer.
    pub fn retval(&self) -> i64 {
        self.regs.retval() as i64
    }
    /// Changes the value the caller will see (at a stop: a return recorded
    /// by the return stub has reached the caller already, and is not
    /// changed; a handler that sets return values answers
    /// [`Returns::Stop`] to [`Handler::returns`]).
    pub fn set_retval(&mut self, v: i64) {
        *self.regs_dirty = true;
        self.regs.set_retval(v as u64);
    }
    /// The thread's registers at the return.
    pub fn regs(&self) -> &Regs {
        self.regs
    }
    /// Reads `len` bytes of tracee memory at `addr`.
    pub fn read_bytes(&self, addr: RuntimeAddr, len: usize) -> Result<Vec<u8>> {
        self.mem.read_bytes(addr, len)
    }
    /// Reads a u64 of tracee memory at `addr`.
    pub fn read_u64(&self, addr: RuntimeAddr) -> Result<u64> {
        self.mem.read_u64(addr)
    }
    /// Reads the C string at `addr`, at most `max` bytes; the flag is false
    /// when it was cut.
    pub fn read_cstr(&self, addr: RuntimeAddr, max: usize) -> Result<(Vec<u8>, bool)> {
        self.mem.read_cstr(addr, max)
    }
    /// The low 64 bits of xmm register `n` at the return (a float or
    /// double return value is in xmm0), read from the stopped thread; a
    /// fast return's record holds xmm0 alone.
    pub fn xmm(&self, n: usize) -> Option<u64> {
        match self.mem {
            Memory::Captured(c) => c.xmm.get(n).copied().flatten(),
            Memory::Live(_) => crate::sys::ptrace::xmm_low(self.tid).ok()?.get(n).copied(),
            Memory::Logged(_, log) => {
                let v = crate::sys::ptrace::xmm_low(self.tid).ok()?.get(n).copied();
                if let Some(slot) = log.borrow_mut().xmm.get_mut(n) {
                    *slot = v;
                }
                v
            }
        }
    }
    /// glibc's `errno` of the returning thread, live (not for a fast
    /// return, whose thread went on): read where libc's own code reads it,
    /// the thread pointer plus the offset the dynamic linker wrote into its
    /// R_X86_64_TPOFF64 slot. None without libc, or where that cannot be
    /// read.
    pub fn errno(&self) -> Option<i32> {
        if self.errno.is_some() {
            return self.errno;
        }
        let libc = self.modules.modules().iter().find(|m| m.matches("libc"))?;
        let slot = libc.elf.tls_offset_slot("errno")?;
        let mem = self.mem.live()?;
        let tpoff = mem.read_u64(libc.to_runtime(slot)).ok()?;
        let addr = self.regs.thread_pointer().wrapping_add(tpoff);
        let mut bytes = [0u8; 4];
        mem.read(RuntimeAddr(addr), &mut bytes).ok()?;
        Some(i32::from_le_bytes(bytes))
    }
    /// Names an address by function and module.
    pub fn symbolize(&self, addr: RuntimeAddr) -> Option<Symbolized<'_>> {
        self.modules.symbolize(addr)
    }
    /// What this probe's handler kept at entry with [`Hit::set_data`].
    pub fn data<T: Any>(&self) -> Option<&T> {
        self.data.as_ref()?.downcast_ref()
    }
    /// Takes what this probe's handler kept at entry.
    pub fn take_data<T: Any>(&mut self) -> Option<T> {
        let b = self.data.take()?;
        match b.downcast::<T>() {
            Ok(t) => Some(*t),
            Err(b) => {
                self.data = Some(b);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::output::testutil::{function, Tracee};

    /// Keeps a label at the entry, appends to it after the instruction, and
    /// records what comes back at the return.
    struct Keeper {
        label: &'static str,
        fail_entry: bool,
        entries: usize,
        returned: Vec<Option<String>>,
    }

    impl Keeper {
        fn new(label: &'static str, fail_entry: bool) -> Keeper {
            Keeper {
                label,
                fail_entry,
                entries: 0,
                returned: Vec::new(),
            }
        }
    }

    impl Handler for Keeper {
        fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
            self.entries += 1;
            hit.set_data(self.label.to_string());
            if self.fail_entry {
                return Err(Error::Handler(format!("{} failed", self.label)));
            }
            Ok(())
        }
        fn on_post(&mut self, hit: &mut Hit<'_>) -> Result<()> {
            let mut kept = hit
                .data
                .take()
                .and_then(|b| b.downcast::<String>().ok())
                .map(|b| *b)
                .unwrap_or_default();
            kept.push_str("+post");
            hit.set_data(kept);
            Ok(())
        }
        fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
            self.returned.push(ret.take_data::<String>());
            Ok(())
        }
    }

    #[test]
    fn both_gives_each_handler_its_own_data_slot() {
        let t = Tracee::new();
        let work = function("work");
        let mut both = Both(Keeper::new("a", false), Keeper::new("b", false));
        let data = t.enter(&mut both, &work, 7, 100, [0; 6]).unwrap();
        t.leave(&mut both, &work, 7, 100, 110, 0, data).unwrap();
        assert_eq!(both.0.returned, [Some("a+post".to_string())]);
        assert_eq!(both.1.returned, [Some("b+post".to_string())]);
    }

    #[test]
    fn both_runs_the_second_handler_after_an_error_of_the_first() {
        let t = Tracee::new();
        let work = function("work");
        let mut both = Both(Keeper::new("a", true), Keeper::new("b", true));
        let err = t.enter(&mut both, &work, 7, 100, [0; 6]).unwrap_err();
        assert_eq!(
            err.to_string(),
            Error::Handler("a failed".into()).to_string()
        );
        assert_eq!((both.0.entries, both.1.entries), (1, 1));
    }

    #[test]
    fn both_keeps_nothing_when_neither_handler_does() {
        struct Quiet;
        impl Handler for Quiet {}
        let t = Tracee::new();
        let work = function("work");
        let mut both = Both(Quiet, Quiet);
        let data = t.enter(&mut both, &work, 7, 100, [0; 6]).unwrap();
        assert!(
            data.is_none(),
            "no allocation for handlers that keep nothing"
        );
    }

    #[test]
    fn both_idle_interval_is_the_shorter_wish() {
        struct Wants(Option<Duration>);
        impl Handler for Wants {
            fn idle_interval(&self) -> Option<Duration> {
                self.0
            }
        }
        let ms = Duration::from_millis;
        assert_eq!(
            Both(Wants(Some(ms(10))), Wants(Some(ms(1000)))).idle_interval(),
            Some(ms(10))
        );
        assert_eq!(Both(Wants(None), Wants(Some(ms(10)))).idle_interval(), None);
    }
}
