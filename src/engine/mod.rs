//! The tracer: the event loop, the tasks, the hit path, the lifecycle.
//!
//! # The path of one hit
//!
//! ```text
//! tracee executes int3 at site S ──► kernel stops the thread, SIGTRAP (SI_KERNEL)
//!   wait → Stop::Trap                                    (sys::wait classifies)
//!   hit::on_trap: fast records made before this stop are read first; the trap
//!     is ours (a site, the trampoline, a breakpoint just removed) or the
//!     program's own (delivered as untraced)
//!   hit::on_breakpoint, the site read once (own::SiteHit)
//!     0. rtrace's own consumers (own::own_consumers): return sites, IFUNC
//!        resolvers (ifunc), unwinders, functions that read their own return
//!        address; when that was the site's last reason, run the original
//!        instruction and resume
//!     1. for each probe at S: handler.on_entry(&mut Hit)     (pre handlers)
//!     2. function probe: rewrite the return address (or watch the return
//!        site) → the thread's ReturnStack gets the call at step 4
//!     3. the displaced instruction (arch::InsnPlan):
//!        emulated (a jump, a call, a push…: no extra stop),
//!        out of line (its copy in the scratch page, single-stepped, fixed up
//!        at the step trap: step::complete_step; 1 extra stop), or
//!        in place (every other thread stopped, the byte back, one step, the
//!        int3 again, the others resumed: step::step_displaced)
//!     4. hit::finish_hit: for each probe at S: handler.on_post(&mut Hit), the
//!        call recorded, then the dynamic linker's breakpoint (new libraries)
//!     5. resume
//!   an error before the registers are set leaves the thread at S
//!   (guards::HitInProgress)
//! later: the thread returns into the trampoline (an int3 in the scratch page)
//!   hit::on_trampoline: ReturnStack[tid]: drop instances abandoned by longjmp,
//!   pop the returning one, handler.on_return(&mut Return), ip = original
//!   return address, resume
//! ```
//!
//! Fast probes (`fast`) take the place of int3s where they can: a jump to a
//! detour that records the hit in a ring shared with rtrace, read at the next
//! stop or on a timer. The int3 engine reaches them only through the hooks
//! of `fast` (`fast::before_trap`, `before_arm`, `on_signal`,
//! `on_unwinder_entry`, `on_thread_seen`, `on_fork`, `on_exec`, `on_exit`,
//! `quiesce`, `on_requests`, `on_pass`, `drain`…: see `fast/mod.rs`).
//! Stepping in place is only safe because every other thread of the
//! address space is stopped while the breakpoint is lifted: no thread can
//! run past an unarmed probe.
//!
//! # Parts
//!
//! [`Tracer`] is defined in `tracer.rs`, in parts: the world (`World`: tasks,
//! address spaces with their probe tables, deferred stops), the consumers
//! (`Consumers`: probes and their handlers, listeners, warnings, the
//! reported-once sets) and the fast probes' pace (`fast::Pace`). This file
//! is the event loop; every other file adds the methods of one idea (`impl
//! Tracer`) and imports the type from `tracer.rs`, which imports only the
//! state it holds, so no file of the engine imports one that imports it back.
//!
//! # Glossary (the kernel's names)
//!
//! | kernel | here |
//! | --- | --- |
//! | `kprobe_table`, aggregate kprobe | `probe::ProbeTable`, `probe::ProbeSite` |
//! | `uprobe_task` | `task::Task` |
//! | `return_instance`, `cleanup_return_instances` | `probe::ReturnInstance`, `ReturnStack::pop_returning` |
//! | XOL area, slot 0 = trampoline | the scratch page (`space::SCRATCH_CODE`) |
//! | unknown trap → `send_sig(SIGTRAP)` | a trap that is not ours is delivered to the tracee |
//!
//! # Ownership of changes to the tracee
//!
//! The [`Tracer`] owns every change it makes (breakpoints, rewritten return
//! addresses, the scratch page, registers): [`Tracer::run`] undoes them on every
//! way out (exit, detach request, error), and so does `Drop` when `run` was never
//! reached or was left by a panic.

mod detach;
mod fast;
mod guards;
mod hit;
mod ifunc;
mod lifecycle;
mod own;
mod space;
mod step;
mod syscall;
mod task;
mod tracer;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::addr::{Pid, Tid};
use crate::error::{Error, Result};
use crate::handler::{Event, Handler, ProbeId};
use crate::symbols::ProbeSpec;
use crate::sys::ptrace::{self, Restart};
use crate::sys::wait::{self, Stop, Waited, Which};
use crate::sys::{signal, spawn};

use space::Space;
use task::{HeldSignal, Task, TaskState};
use tracer::{guarded, Probe};
pub use tracer::{Options, Outcome, Overflow, Progress, ReturnMode, Tracer};

impl Tracer {
    /// Launches `cmd` (program, arguments, environment and working directory are
    /// taken from it; its stdio is inherited, and a standard descriptor this
    /// process was started without stays closed) stopped at its first
    /// instruction.
    pub fn launch(cmd: &Command, opts: Options) -> Result<Tracer> {
        let spec = launch_spec(cmd)?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut launched = spawn::launch(&spec)?;
        let pid = launched.pid;
        // Until the exec stop the child is ours alone; wait for it specifically.
        loop {
            let stop = match wait::wait(Which::Tid(pid), true, false)? {
                Waited::Stop(s) => s,
                Waited::NotReady | Waited::Interrupted => continue,
                Waited::NoTracee => return Err(wait::no_tracee_error()),
            };
            match stop {
                Stop::Event {
                    event: wait::Event::Exec { .. },
                    ..
                } => break,
                Stop::Exited { .. } | Stop::Killed { .. } => {
                    let reason = match launched.exec_error() {
                        Some(Errno::ENOENT) => "no such file".to_string(),
                        Some(Errno::EACCES) => "permission denied".to_string(),
                        Some(Errno::ENOEXEC) => "not an executable format".to_string(),
                        Some(e) => e.desc().to_string(),
                        None => "it exited before starting".to_string(),
                    };
                    return Err(Error::Launch { program, reason });
                }
                // The SIGCONT that released it, and the stops around the seize.
                Stop::Trap { .. }
                | Stop::Signal { .. }
                | Stop::GroupStop { .. }
                | Stop::Interrupt { .. }
                | Stop::Event {
                    event:
                        wait::Event::Clone { .. }
                        | wait::Event::Fork { .. }
                        | wait::Event::Vfork { .. }
                        | wait::Event::VforkDone
                        | wait::Event::Exit,
                    ..
                } => ptrace::restart(pid, Restart::Continue(0))?,
            }
        }
        let mut t = Tracer::new(pid, opts);
        t.launched = Some(launched);
        t.exit_kill = true;
        t.world
            .tasks
            .insert(pid, Task::new(pid, pid, TaskState::Stopped));
        if let Err(e) = t.prepare_space(pid, pid) {
            t.kill_launched();
            return Err(e);
        }
        Ok(t)
    }

    /// Attaches to every thread of process `pid`, leaving them stopped until
    /// [`run`](Self::run).
    pub fn attach(pid: Pid, opts: Options) -> Result<Tracer> {
        Tracer::attach_all(&[pid], opts)
    }

    /// Attaches to several running processes (as `strace -p A -p B`): the
    /// first is the one [`Tracer::pid`] names and whose end is the outcome;
    /// the others are traced as a child followed with `-f` is, until they
    /// end or rtrace detaches from all of them. Probes are placed in each.
    /// Fails, attached to none, when one cannot be attached to.
    pub fn attach_all(pids: &[Pid], opts: Options) -> Result<Tracer> {
        let Some(&first) = pids.first() else {
            return Err(Error::NoSuchProcess {
                pid: Pid::from_raw(0),
            });
        };
        for &pid in pids {
            attachable(pid)?;
        }
        let mut t = Tracer::new(first, opts);
        t.extra_roots = pids[1..].to_vec();
        for &pid in pids {
            t.seize_process(pid)?;
        }
        t.stop_all()?;
        t.exec_during_attach();
        for &pid in pids {
            t.prepare_space(pid, pid)?;
        }
        Ok(t)
    }

    /// Seizes every thread of process `pid`, re-reading the list until it is
    /// stable: threads created meanwhile by a seized thread are
    /// auto-attached, but one created by a thread not seized yet must be
    /// found by the next read.
    fn seize_process(&mut self, pid: Pid) -> Result<()> {
        let before = self.world.tasks.len();
        loop {
            let mut added = false;
            for tid in list_threads(pid)? {
                if self.world.tasks.contains_key(&tid) {
                    continue;
                }
                match ptrace::seize(tid, ptrace::options(false)) {
                    Ok(()) => {
                        self.world
                            .tasks
                            .insert(tid, Task::new(pid, pid, TaskState::Running));
                        added = true;
                    }
                    Err(Errno::ESRCH) => {} // exited meanwhile
                    // Made by a thread seized already, and so traced by us
                    // already (its creator's clone event brings it in), or
                    // exiting: nothing to seize.
                    Err(Errno::EPERM) if traced_by_us_or_exiting(pid, tid) => {}
                    Err(Errno::EPERM) if self.world.tasks.len() == before => {
                        if pid.as_raw() == 1 && effective_root() {
                            return Err(Error::Untraceable {
                                pid,
                                why: "it is init, and the kernel refused to let even \
                                      root trace it",
                            });
                        }
                        return Err(attach_refused(pid));
                    }
                    Err(errno) => {
                        return Err(Error::Ptrace {
                            op: "PTRACE_SEIZE",
                            tid,
                            errno,
                        })
                    }
                }
            }
            if !added {
                break;
            }
        }
        if self.world.tasks.len() == before {
            return Err(Error::NoSuchProcess { pid });
        }
        Ok(())
    }

    /// A thread that was in `execve` as rtrace attached reports the exec
    /// event as its first stop, and the kernel reports it only once the new
    /// image is in place (`exec_binprm` calls `ptrace_event` after
    /// `begin_new_exec`): the memory rtrace is about to read is the new
    /// image already. The event is taken here, so that the image is set up
    /// once, now; handled later, it would set the new image up a second time
    /// over rtrace's own breakpoints.
    fn exec_during_attach(&mut self) {
        let Some(i) = self.world.deferred.iter().position(|s| {
            matches!(
                s,
                Stop::Event {
                    event: wait::Event::Exec { .. },
                    ..
                }
            )
        }) else {
            return;
        };
        if let Some(Stop::Event {
            tid,
            event: wait::Event::Exec { former },
        }) = self.world.deferred.remove(i)
        {
            self.adopt_exec(tid, former);
        }
    }

    /// The traced process.
    pub fn pid(&self) -> Pid {
        self.root
    }

    /// How tracing ended, once it has: what [`run`](Self::run) returned, or,
    /// after it returned an error, what became of the process (`Detached`: it
    /// runs on untraced; `Killed` with SIGKILL: a launched program killed
    /// before tracing began; `Exited` or `Killed`: it ended while traced).
    /// `None` while tracing goes on.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Time since the tracer started (what events' `time_ns` count).
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Adds a probe with its handler. The probe arms at once where it resolves;
    /// a probe on a library that is not loaded yet waits for it. An unqualified
    /// name that is found nowhere is an error once the startup libraries are loaded.
    pub fn add_probe(
        &mut self,
        spec: ProbeSpec,
        handler: impl Handler + 'static,
    ) -> Result<ProbeId> {
        self.add(spec, Box::new(handler), None)
    }

    /// Adds a probe whose handler is `recorder` (see [`add_probe`](Self::add_probe)):
    /// as `add_probe(spec, recorder)` does, but a fast probe's records are
    /// written into the recording as they are read, without the [`Hit`](crate::Hit)
    /// and [`Return`](crate::Return) a handler is given (the same records, at
    /// a fraction of the cost).
    pub fn add_recorded_probe(
        &mut self,
        spec: ProbeSpec,
        recorder: Rc<RefCell<crate::record::Recorder>>,
    ) -> Result<ProbeId> {
        self.add(spec, Box::new(recorder.clone()), Some(recorder))
    }

    fn add(
        &mut self,
        spec: ProbeSpec,
        handler: Box<dyn Handler>,
        recorder: Option<Rc<RefCell<crate::record::Recorder>>>,
    ) -> Result<ProbeId> {
        let id = ProbeId(self.consumers.probes.len());
        self.consumers.probes.push(Some(Probe {
            spec,
            handler,
            recorder,
        }));
        let keys: Vec<Pid> = self.world.spaces.keys().copied().collect();
        for key in keys {
            if let Err(e) = self.place_probe(key, id) {
                self.remove_probe(id)?;
                return Err(e);
            }
            self.place_unwind_hooks(key);
        }
        Ok(id)
    }

    /// Excludes the functions `spec` names (a function name or glob, in a
    /// module or not) from every probe placed from now on, as strace's
    /// `-e trace=!…` does: a site a probe would arm is left alone when
    /// `spec` resolves to it in that process (libraries loaded later
    /// included). Err for a spec that does not name functions.
    pub fn exclude(&mut self, spec: ProbeSpec) -> Result<()> {
        if !spec.is_function() {
            return Err(Error::InvalidSpec {
                spec: spec.as_str().to_string(),
                reason: "an exclusion names functions (a name or a glob), not an instruction"
                    .into(),
            });
        }
        self.excluded.push(spec);
        Ok(())
    }

    /// Removes a probe: its breakpoints go (unless another probe shares them),
    /// calls in flight still return normally but are no longer reported.
    pub fn remove_probe(&mut self, id: ProbeId) -> Result<()> {
        if self
            .consumers
            .probes
            .get_mut(id.0)
            .and_then(Option::take)
            .is_none()
        {
            return Ok(());
        }
        let last = self.consumers.probes.iter().all(Option::is_none);
        // Fast sites of the probe lose their jumps first (with the threads
        // stopped: a jump is more than one byte).
        let keys: Vec<Pid> = self.world.spaces.keys().copied().collect();
        for key in keys {
            if let Some(space::Placement::Armed(addrs)) = self.world.spaces[&key].placed.get(&id) {
                let addrs = addrs.clone();
                fast::before_disarm(self, key, &addrs)?;
            }
        }
        for space in self.world.spaces.values_mut() {
            space.disarm_probe(id)?;
            if last {
                space.drop_unwind_hooks()?;
            }
            if let Some(warning) = space.rewritten_report() {
                self.consumers.warnings.push(warning);
            }
        }
        Ok(())
    }

    /// Adds a listener: it receives lifecycle events through
    /// [`Handler::on_event`], [`Handler::on_idle`] before the tracer blocks, and
    /// [`Handler::on_finish`] at the end.
    pub fn add_listener(&mut self, listener: impl Handler + 'static) {
        self.consumers.listeners.push(Box::new(listener));
    }

    /// Calls `f` as the work before tracing begins goes on: each probe spec
    /// looked up, each probe point armed, then [`Progress::Idle`] whenever
    /// the tracer is about to wait or to tell the listeners something (so a
    /// progress line never sits in the middle of other output), and once
    /// more when tracing begins (the attach event), after which `f` is
    /// dropped. Set it before adding probes. `f` runs on the tracer's thread,
    /// in the middle of arming: it must be quick (drawing a line at most a
    /// few times a second is). A panic in it ends the reports, not tracing.
    pub fn on_progress(&mut self, f: impl FnMut(&Progress<'_>) + 'static) {
        self.consumers.progress.f = Some(Box::new(f));
    }

    /// Runs the tracer and every thread it traces on one CPU, the one the
    /// process runs on now, and returns it. A ptrace stop is then a switch
    /// between two threads of one CPU instead of a wake-up on another, about
    /// three times cheaper; threads the process creates later stay there too.
    /// It serialises a process's threads on that CPU, so it suits a
    /// single-threaded program (or one whose threads mostly wait). Every
    /// thread gets its own affinity back when rtrace lets it go (detach, or a
    /// child not followed), and, were rtrace killed, from a small process of
    /// rtrace's that outlives it (`sys::sched::Guardian`).
    pub fn pin_to_one_cpu(&mut self) -> Result<usize> {
        use crate::sys::sched;
        let cpu = sched::cpu_of(self.root).unwrap_or(0);
        let one = sched::only(cpu)?;
        sched::pin_self(cpu)?;
        // Started before any thread is pinned: were rtrace killed, it would
        // give each its own affinity back.
        let mut guardian = sched::Guardian::start()?;
        for (&tid, task) in self.world.tasks.iter_mut() {
            if task.affinity.is_none() {
                task.affinity = sched::affinity(tid);
                if let Some(own) = &task.affinity {
                    guardian.pinned(tid, own);
                }
                sched::set_affinity(tid, &one);
            }
        }
        self.guardian = Some(guardian);
        self.pinned = Some(cpu);
        Ok(cpu)
    }

    /// Asks the tracer to detach at the next opportunity (as SIGINT does).
    pub fn request_detach(&mut self) {
        self.detach_requested = true;
    }

    /// The ptrace stops rtrace has waited for so far: the unit of a ptrace
    /// tracer's cost. An emulated hit is one stop, an out-of-line or in-place
    /// step adds one, a return adds one.
    pub fn stops(&self) -> u64 {
        self.stops
    }

    /// Waits for a stop (see [`wait::wait`]), counting it.
    fn wait_stop(&mut self, which: Which, block: bool, interruptible: bool) -> Result<Waited> {
        let r = wait::wait(which, block, interruptible);
        if let Ok(Waited::Stop(stop)) = &r {
            self.stops += 1;
            self.saw(stop);
        }
        r
    }

    /// Breakpoints armed in the traced process (sites with user probes).
    pub fn armed_sites(&self) -> usize {
        self.world
            .spaces
            .get(&self.root)
            .map_or(0, Space::armed_sites)
    }

    /// Traces until the process exits or rtrace detaches.
    ///
    /// On an error (a handler's, or the tracer's) rtrace detaches first and then
    /// returns it; in launch mode, an error before tracing has begun (a probe
    /// that cannot be resolved or armed once the startup libraries are loaded)
    /// kills the launched program instead, since it never started to do real
    /// work and would otherwise run untraced. [`outcome`](Self::outcome) then
    /// says which: `Detached` when the process runs on (a launched program is
    /// still the caller's child, to wait for), `Killed` when it was killed.
    pub fn run(&mut self) -> Result<Outcome> {
        loop {
            match self.process_next() {
                Ok(Some(outcome)) => {
                    self.report_never_armed()?;
                    self.finish()?;
                    return Ok(outcome);
                }
                Ok(None) => {}
                Err(e) => {
                    // Before tracing has begun (the startup libraries are not
                    // all loaded, main has not run), a launched program is
                    // killed rather than let go: it would run untraced.
                    if self.launched.is_some() && !self.attach_reported {
                        self.kill_launched();
                    } else {
                        let _ = self.detach_all();
                        // Unless the process ended meanwhile (its end was
                        // waited for: the outcome says how), it runs on.
                        self.outcome
                            .get_or_insert(self.root_end.unwrap_or(Outcome::Detached));
                    }
                    let _ = self.finish();
                    return Err(e);
                }
            }
        }
    }

    /// Handles one stop (blocking until there is one). Returns the outcome once
    /// tracing is over. Between calls, probes may be added or removed.
    pub fn process_next(&mut self) -> Result<Option<Outcome>> {
        if let Some(o) = self.outcome {
            return Ok(Some(o));
        }
        self.flush_warnings()?;
        // Requests of rtrace's own hooks (a new link map, a backtrace): the
        // thread that posted one waits for it.
        fast::on_requests(self)?;
        if !self.started {
            self.started = true;
            self.report_attached_if_ready()?;
            self.resume_idle_tasks()?;
        }
        if self.detach_requested || signal::detach_requested().is_some() {
            // A handler that runs long from now on (END) stops only for a
            // signal that comes later.
            let signals = signal::honour();
            // As strace does, the signal that ended the tracing of a program
            // rtrace started ends the program too: sent while its threads
            // are stopped for the detach.
            let pass = match signal::detach_requested() {
                Some(sig)
                    if self.opts.pass_signal_on
                        && self.launched.is_some()
                        && self.root_end.is_none() =>
                {
                    // A terminal's signal reached the program already when
                    // it shares rtrace's process group: it gets it once.
                    let same_group = nix::unistd::getpgid(Some(self.root)).ok()
                        == nix::unistd::getpgid(None).ok();
                    if !(signal::from_kernel() && same_group) {
                        self.signal_at_release = Some(sig);
                    }
                    // Two signals before the detach began: the second is the
                    // one that would end the wait.
                    Some(signals < 2)
                }
                _ => None,
            };
            self.detach_all()?;
            // (With -f the launched program may have ended already, its
            // children still traced.)
            self.outcome = Some(self.root_end.unwrap_or(Outcome::Detached));
            if let Some(wait) = pass.filter(|_| self.root_end.is_none()) {
                self.wait_for_program(wait)?
            }
            return Ok(self.outcome);
        }
        // Dirty spaces patched and each probe's mode said (once tracing has
        // begun); the rings read on time.
        fast::on_pass(self, self.attach_reported)?;
        let stop = match self.next_stop()? {
            Some(s) => s,
            None => return Ok(None), // interrupted: look at the detach flag again
        };
        match self.dispatch(stop) {
            // The thread was killed while we handled its stop (another thread
            // called exit_group, say): its death is reported next.
            Err(e) if e.is_tracee_gone() => {}
            r => r?,
        }
        if self.world.tasks.is_empty() {
            self.outcome
                .get_or_insert(self.root_end.unwrap_or(Outcome::Detached));
            return Ok(self.outcome);
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<()> {
        // No more waits to end: the timer must not interrupt the caller's.
        // (Disarmed even when no deadline was set: a detach request arms it
        // once, in its handler.)
        self.timer = None;
        signal::set_timer(None);
        let mut first = Ok(());
        for p in self.consumers.probes.iter_mut().flatten() {
            let r = guarded(|| p.handler.on_finish());
            if first.is_ok() {
                first = r;
            }
        }
        for l in &mut self.consumers.listeners {
            let r = guarded(|| l.on_finish());
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// The next stop: deferred ones first; otherwise wait, telling the listeners
    /// (so they flush output) when the wait is going to block.
    fn next_stop(&mut self) -> Result<Option<Stop>> {
        if let Some(s) = self.world.deferred.pop_front() {
            return Ok(Some(s));
        }
        // The listeners are told the tracer is idle at most every interval
        // they asked for (a printer's flush to a file is a write: once per
        // hit would double the cost of a hit), and before the tracer blocks
        // once it is due, unless a stop is waiting already. Until then it
        // blocks at once, with the timer set to end the wait when it is due
        // (or to the live view's period, or to the next drain of the fast
        // probes' rings).
        self.consumers.progress.report(Progress::Idle);
        if self.pace.records_waiting() {
            // A drain stopped at its budget: only look for stops, and come
            // back to drain the rest.
            return match self.wait_stop(Which::Any, false, false)? {
                Waited::Stop(s) => Ok(Some(s)),
                Waited::NotReady | Waited::Interrupted => Ok(None),
                Waited::NoTracee => Err(wait::no_tracee_error()),
            };
        }
        let since = self.last_idle.elapsed();
        let interval = self
            .consumers
            .listeners
            .iter()
            .map(|l| l.idle_interval().unwrap_or_default())
            .min()
            .unwrap_or_default();
        let tick = self
            .consumers
            .listeners
            .iter()
            .filter_map(|l| l.tick_interval())
            .min();
        // Driven as a library without the signals there is no timer: the
        // listeners are told before every blocking wait.
        let due = since >= interval || !signal::installed();
        if due {
            match self.wait_stop(Which::Any, false, false)? {
                Waited::Stop(s) => return Ok(Some(s)),
                Waited::NotReady => {}
                Waited::Interrupted => return Ok(None),
                Waited::NoTracee => return Err(wait::no_tracee_error()),
            }
            // Fast records first, so what the listeners flush includes them.
            fast::drain(self)?;
            for l in &mut self.consumers.listeners {
                guarded(|| l.on_idle())?;
            }
            self.last_idle = Instant::now();
        }
        // A ring found corrupt just now (in that drain, or the one before
        // this wait): its jumps come off before the tracer blocks, which may
        // be for long (fast sites make no stops).
        if fast::switch_pending(&self.world, self.opts.fast && self.attach_reported) {
            return Ok(None);
        }
        // The next deadline: the live view's ticks, or the end of the
        // interval that started with the idle call just made (or earlier);
        // while fast sites may record, the next drain at the latest.
        let wanted = match (tick, due || interval.is_zero()) {
            (Some(t), _) => Some(t),
            (None, false) => Some(interval),
            (None, true) => None,
        };
        let pace = fast::pace(&self.world);
        let wanted = match (wanted, pace) {
            (Some(w), Some(p)) => Some(w.min(p)),
            (None, Some(p)) => Some(p),
            (w, None) => w,
        };
        if wanted != self.timer && signal::set_timer(wanted) {
            self.timer = wanted;
        }
        if let Some(pace) = pace.filter(|_| !signal::installed()) {
            // No timer (a library's tracer without the signals): a wait that
            // ends by itself, for the next drain.
            let r = wait::wait_timeout(Which::Any, pace);
            if let Ok(Some(stop)) = &r {
                self.stops += 1;
                self.saw(stop);
            }
            return r;
        }
        match self.wait_stop(Which::Any, true, true)? {
            Waited::Stop(s) => Ok(Some(s)),
            Waited::NotReady | Waited::Interrupted => Ok(None),
            Waited::NoTracee => Err(wait::no_tracee_error()),
        }
    }

    /// Sends a lifecycle event to the listeners.
    fn emit(&mut self, event: Event) -> Result<()> {
        self.consumers.emit(event, self.start.elapsed())
    }

    fn report_attached_if_ready(&mut self) -> Result<()> {
        if self.attach_reported {
            return Ok(());
        }
        let Some(space) = self.world.spaces.get(&self.root) else {
            return Ok(());
        };
        if !space.ready {
            return Ok(());
        }
        let pending = self
            .consumers
            .probes
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                p.is_some()
                    && !matches!(
                        space.placed.get(&ProbeId(*i)),
                        Some(space::Placement::Armed(_))
                    )
            })
            .count();
        // Fast probes are patched before tracing is said to begin, so the
        // attach line is followed by each probe's mode. Each process
        // attached to has its line (`-p A -p B`), the first first.
        let roots: Vec<Pid> = std::iter::once(self.root)
            .chain(self.extra_roots.iter().copied())
            .collect();
        let mut events = Vec::new();
        for pid in roots {
            fast::on_attach(self, pid)?;
            let Some(space) = self.world.spaces.get(&pid) else {
                continue;
            };
            let returns = space.sites.iter().any(|(_, s)| {
                s.probes
                    .iter()
                    .any(|p| p.kind == crate::handler::ProbeKind::Function { returns: true })
            });
            events.push(Event::Attached {
                pid,
                threads: self.world.tasks.values().filter(|t| t.pid == pid).count(),
                probes: space.armed_sites(),
                pending,
                returns: returns.then_some(self.opts.returns),
                realtime: std::time::SystemTime::now(),
            });
        }
        self.attach_reported = true;
        self.consumers.progress.end();
        self.release_exit_kill();
        for event in events {
            self.emit(event)?;
        }
        if !self.opts.fast {
            return Ok(());
        }
        fast::report_modes(&self.world, &mut self.consumers, self.root, self.start)
    }

    /// A launched program whose probes all began fast (no breakpoint in
    /// it) is no longer killed with rtrace: it runs on without it, its
    /// detours needing nothing of rtrace's. Its threads are all stopped
    /// here (tracing begins); the threads and children it makes later
    /// inherit the option.
    fn release_exit_kill(&mut self) {
        if !self.exit_kill {
            return;
        }
        if self.world.spaces.values().any(Space::has_breakpoints) {
            return;
        }
        let stopped = self.world.stopped();
        if stopped.len() != self.world.tasks.len() {
            return;
        }
        self.exit_kill = false;
        for tid in stopped {
            let _ = nix::sys::ptrace::setoptions(tid, ptrace::options(false));
        }
    }

    /// Resumes every stopped task that has no stop waiting to be handled.
    fn resume_idle_tasks(&mut self) -> Result<()> {
        let waiting: Vec<Tid> = self.world.deferred.iter().map(Stop::tid).collect();
        let idle: Vec<Tid> = self
            .world
            .tasks
            .iter()
            .filter(|(tid, t)| t.state == TaskState::Stopped && !waiting.contains(tid))
            .map(|(tid, _)| *tid)
            .collect();
        for tid in idle {
            self.resume(tid, 0)?;
        }
        Ok(())
    }

    /// Resumes a stopped task, delivering `sig` or else its first pending signal.
    /// While detaching, the task stays stopped and a signal is kept for the detach.
    fn resume(&mut self, tid: Tid, sig: i32) -> Result<()> {
        let Some(task) = self.world.tasks.get_mut(&tid) else {
            return Ok(());
        };
        if self.halting {
            // Stays stopped: the signal goes with the detach.
            if sig != 0 {
                let info = ptrace::getsiginfo(tid).ok();
                task.held.push(HeldSignal {
                    signal: sig,
                    info,
                    reported: true,
                });
            }
            return Ok(());
        }
        task.state = TaskState::Running;
        task.group_stopped = false;
        let in_delivery_stop = std::mem::take(&mut task.in_delivery_stop);
        if task.step.is_some() {
            // In an out-of-line step: one more instruction, and signals wait.
            if sig != 0 {
                let info = ptrace::getsiginfo(tid).ok();
                task.held.push(HeldSignal {
                    signal: sig,
                    info,
                    reported: true,
                });
            }
            return match ptrace::restart(tid, Restart::Step(0)) {
                Err(e) if e.is_tracee_gone() => Ok(()),
                r => r,
            };
        }
        let mut deliver = sig;
        let mut report = None;
        if !task.held.is_empty() {
            // (A signal the thread blocks now would only be queued again by
            // the kernel, and come back: it waits for the nudge below, which
            // arrives when the thread unblocks it.)
            if in_delivery_stop && !task::signal_blocked(tid, task.held[0].signal) {
                // Signals held during a step go first, oldest first, each with
                // its own siginfo: this stop delivers the oldest one, and the
                // signal it was for (if any) waits behind the others.
                if sig != 0 {
                    let info = ptrace::getsiginfo(tid).ok();
                    task.held.push(HeldSignal {
                        signal: sig,
                        info,
                        reported: true,
                    });
                }
                let held = task.held.remove(0);
                if let Some(info) = &held.info {
                    ptrace::setsiginfo(tid, info)?;
                }
                deliver = held.signal;
                if !held.reported && !task.silent {
                    report = Some((task.pid, held.signal));
                }
            }
            // More to deliver: a signal of rtrace's own brings the thread back
            // to a signal-delivery stop as soon as it can take the next one.
            if let (Some(next), None) = (task.held.first(), task.nudge) {
                signal::tgkill(task.pid, tid, next.signal);
                task.nudge = Some(next.signal);
            }
        }
        let mut reported = Ok(());
        if let Some((pid, signal)) = report {
            // (After the thread's calls recorded before it; an error is
            // returned once the signal is on its way.)
            let (event, time) = (Event::Signal { pid, tid, signal }, self.start.elapsed());
            let now = match self.world.tasks.get(&tid).map(|t| t.space) {
                Some(key) => fast::defer_signal(&mut self.reader(), key, event, time),
                None => Some((event, time)),
            };
            if let Some((event, time)) = now {
                reported = self.consumers.emit(event, time);
            }
        }
        let restarted = match ptrace::restart(tid, Restart::Continue(deliver)) {
            Err(e) if e.is_tracee_gone() => Ok(()), // its death is reported next
            r => r,
        };
        reported.and(restarted)
    }

    /// Notes what a stop left its thread in (see `Task::in_delivery_stop`).
    fn saw(&mut self, stop: &Stop) {
        if let Some(task) = self.world.tasks.get_mut(&stop.tid()) {
            task.in_delivery_stop = matches!(stop, Stop::Trap { .. } | Stop::Signal { .. });
        }
    }

    /// Interrupts every running task and waits until all are stopped; stops other
    /// than the interrupt itself are deferred. Used at attach.
    fn stop_all(&mut self) -> Result<()> {
        let running: Vec<Tid> = self
            .world
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Running && !t.exiting)
            .map(|(tid, _)| *tid)
            .collect();
        self.interrupt_and_collect(&running)?;
        Ok(())
    }

    /// Interrupts `tids` and waits for each to stop. Returns the ones whose stop was
    /// the interrupt itself (nothing else to handle: resume them when done); other
    /// stops are deferred. Stops of other tasks that arrive meanwhile are deferred.
    fn interrupt_and_collect(&mut self, tids: &[Tid]) -> Result<Vec<Tid>> {
        let mut waiting: Vec<Tid> = Vec::new();
        for &tid in tids {
            match ptrace::interrupt(tid) {
                Ok(()) => waiting.push(tid),
                Err(e) if e.is_tracee_gone() => {}
                Err(e) => return Err(e),
            }
        }
        let mut quiet = Vec::new();
        while !waiting.is_empty() {
            let stop = match self.wait_stop(Which::Any, true, false)? {
                Waited::Stop(s) => s,
                Waited::NotReady | Waited::Interrupted => continue,
                Waited::NoTracee => break,
            };
            let tid = stop.tid();
            if let Some(t) = self.world.tasks.get_mut(&tid) {
                if t.state != TaskState::Starting {
                    t.state = TaskState::Stopped;
                }
            }
            match waiting.iter().position(|&t| t == tid) {
                Some(i) => {
                    waiting.swap_remove(i);
                    match stop {
                        Stop::Interrupt { .. } => quiet.push(tid),
                        Stop::Exited { .. }
                        | Stop::Killed { .. }
                        | Stop::Trap { .. }
                        | Stop::Signal { .. }
                        | Stop::GroupStop { .. }
                        | Stop::Event { .. } => self.world.deferred.push_back(stop),
                    }
                }
                None => self.world.deferred.push_back(stop),
            }
        }
        Ok(quiet)
    }

    fn kill_launched(&mut self) {
        if let Some(l) = &self.launched {
            let pid = l.pid;
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            // Reap every thread so nothing is left behind as a zombie.
            while !self.world.tasks.is_empty() {
                match self.wait_stop(Which::Any, true, false) {
                    Ok(Waited::Stop(s)) if s.is_death() => {
                        self.world.tasks.remove(&s.tid());
                    }
                    // PTRACE_EVENT_EXIT, or a stop that raced with the kill.
                    Ok(Waited::Stop(s)) => {
                        let _ = ptrace::restart(s.tid(), Restart::Continue(0));
                    }
                    Ok(Waited::NotReady | Waited::Interrupted) => {}
                    Ok(Waited::NoTracee) | Err(_) => break,
                }
            }
            self.world.tasks.clear();
            self.world.spaces.clear();
            self.outcome = Some(Outcome::Killed {
                signal: libc::SIGKILL,
                core_dumped: false,
            });
        }
    }
}

impl Drop for Tracer {
    /// The owner of last resort: if tracing was never run to its end (an error
    /// before `run`, a panic), launched programs are killed (they never got to
    /// run) and attached ones are detached unharmed.
    fn drop(&mut self) {
        // (Disarmed even when no deadline was set: a detach request arms it
        // once, in its handler.)
        self.timer = None;
        signal::set_timer(None);
        if self.world.tasks.is_empty() {
            return;
        }
        if self.launched.is_some() && !self.started {
            self.kill_launched();
        } else {
            let _ = self.detach_all();
        }
    }
}

fn list_threads(pid: Pid) -> Result<Vec<Tid>> {
    let dir =
        std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|_| Error::NoSuchProcess { pid })?;
    Ok(dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .map(Tid::from_raw)
        .collect())
}

/// Why PTRACE_SEIZE said EPERM: someone else traces it, or we may not.
/// True when thread `tid` of process `pid` is traced by this process, or
/// is exiting (a zombie, or gone).
fn traced_by_us_or_exiting(pid: Pid, tid: Tid) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
        return true;
    };
    let exiting = status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|s| matches!(s.trim_start().chars().next(), Some('Z' | 'X')));
    exiting || task::status_field(&status, "TracerPid:") == Some(std::process::id() as i32)
}

fn attach_refused(pid: Pid) -> Error {
    let tracer = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| task::status_field(&s, "TracerPid:"))
        .filter(|&t| t != 0);
    let leader_gone = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("State:"))
                .map(|v| v.trim().starts_with('Z'))
        })
        .unwrap_or(false);
    match tracer {
        Some(t) => Error::AlreadyTraced {
            pid,
            tracer: Pid::from_raw(t),
        },
        // A main thread that called pthread_exit is a zombie until the whole
        // process ends, and ptrace refuses it whoever asks.
        None if leader_gone => Error::LeaderExited { pid },
        None => Error::PermissionDenied { pid },
    }
}

/// Finds `program` like execvp does: as a path when it contains a slash, else in
/// PATH. Checks it is an ELF file (or a `#!` script) before anything is started.
pub fn find_program(program: &std::ffi::OsStr) -> Result<PathBuf> {
    let name = program.to_string_lossy().into_owned();
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        std::env::var_os("PATH")
            .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"))
            .to_string_lossy()
            .split(':')
            .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(&name))
            .collect()
    };
    let found = candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Launch {
            program: name.clone(),
            reason: if name.contains('/') && Path::new(program).is_dir() {
                "it is a directory".into()
            } else if name.contains('/') {
                "no such file".into()
            } else {
                "not found in PATH".into()
            },
        })?;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&found).map_err(|e| Error::io(name.clone(), e))?;
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::Launch {
            program: name,
            reason: "permission denied (not executable)".into(),
        });
    }
    let mut head = [0u8; 4];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(&found).map_err(|e| Error::io(name.clone(), e))?;
        f.read(&mut head).map_err(|e| Error::io(name.clone(), e))?
    };
    if head[..n].starts_with(b"#!") {
        return Ok(found);
    }
    // Parse it fully: a truncated or corrupt ELF is refused here, with a clear
    // message, instead of failing obscurely after exec.
    crate::symbols::ElfFile::open(&found)?;
    Ok(found)
}

fn launch_spec(cmd: &Command) -> Result<spawn::LaunchSpec> {
    let path = find_program(cmd.get_program())?;
    let mut argv = vec![spawn::cstring(cmd.get_program())?];
    for a in cmd.get_args() {
        argv.push(spawn::cstring(a)?);
    }
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => env.insert(k.to_owned(), v.to_owned()),
            None => env.remove(k),
        };
    }
    let mut envp = Vec::new();
    for (k, v) in env {
        let mut kv = k;
        kv.push("=");
        kv.push(v);
        envp.push(spawn::cstring(&kv)?);
    }
    Ok(spawn::LaunchSpec {
        path: spawn::cstring(path.as_os_str())?,
        argv,
        envp,
        cwd: cmd
            .get_current_dir()
            .map(|d| spawn::cstring(d.as_os_str()))
            .transpose()?,
    })
}

/// True when rtrace runs with effective user id 0 (the second field of
/// `Uid:` in /proc/self/status).
fn effective_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether process `pid` may be attached to: it exists, is a process (not
/// one of its threads), and is not rtrace itself, a zombie, a kernel thread
/// or a process another tracer traces. Said with the reason when not.
fn attachable(pid: Pid) -> Result<()> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| Error::NoSuchProcess { pid })?;
    // What no privilege lets a tracer attach to: the kernel refuses it
    // (`ptrace_attach`: a thread of the tracer's own group, a kernel
    // thread), and "not permitted" would send the user after a
    // privilege that does not help.
    if u32::try_from(pid.as_raw()).ok() == Some(std::process::id()) {
        return Err(Error::Untraceable {
            pid,
            why: "it is rtrace itself",
        });
    }
    let zombie = status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|s| s.trim_start().starts_with('Z'));
    if zombie {
        return Err(Error::Untraceable {
            pid,
            why: "it is a zombie: it has exited, and waits for its parent to reap it",
        });
    }
    if task::status_field(&status, "Kthread:") == Some(1)
        || (task::status_field(&status, "PPid:") == Some(0) && pid.as_raw() != 1)
    {
        return Err(Error::Untraceable {
            pid,
            why: "it is a kernel thread",
        });
    }
    if let Some(tracer) = task::status_field(&status, "TracerPid:").filter(|&t| t != 0) {
        return Err(Error::AlreadyTraced {
            pid,
            tracer: Pid::from_raw(tracer),
        });
    }
    match task::status_field(&status, "Tgid:") {
        Some(tgid) if tgid == pid.as_raw() => {}
        Some(tgid) => {
            return Err(Error::NotAProcess {
                tid: pid,
                pid: Pid::from_raw(tgid),
            })
        }
        None => return Err(Error::NoSuchProcess { pid }),
    }
    Ok(())
}
