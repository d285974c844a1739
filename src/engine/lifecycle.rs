//! Lifecycle: address spaces coming and going (startup, exec, library loads),
//! threads and children being born and dying, and the stops that are not hits.

use std::collections::HashSet;
use std::rc::Rc;

use super::tracer::Progress;
use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::error::{Error, Result};
use crate::handler::{Event, ForkKind, ProbeId, Site, SkipReason};
use crate::probe::Owner;
use crate::symbols::elf::Tables;
use crate::symbols::resolve::{
    function_reads_return_address, never_returns, not_found, returns_twice,
};
use crate::symbols::{ifunc, reserved, resolve, Location, Resolution};
use crate::sys::ptrace::{self, Restart};
use crate::sys::signal;
use crate::sys::wait::{self, Stop};

use super::fast::{self, Exit, Fork};
use super::space::{Placement, Rtld, Space, RT_CONSISTENT, R_STATE_OFFSET};
use super::task::{self, status_field, tgid_of, Scrub, Task, TaskState};
use super::tracer::{kind_for, Outcome, Tracer};

impl Tracer {
    /// Sets up the address space of process `pid` (after attach, or after an
    /// exec) with thread `tid` stopped: maps the scratch page, hooks the dynamic
    /// linker, and places every probe.
    pub(super) fn prepare_space(&mut self, pid: Pid, tid: Tid) -> Result<()> {
        let mut space = Space::open(pid, &mut self.cache)?;
        let attach_mode = self.launched.is_none() || self.attach_reported;
        // A static executable has no dynamic linker: everything it will ever run
        // is mapped now. After attach, the startup libraries are all loaded.
        let interp = space
            .modules
            .modules()
            .first()
            .and_then(|m| m.elf.interpreter().map(str::to_owned));
        space.ready = interp.is_none() || attach_mode;
        if let Some(interp) = &interp {
            let rtld = space.modules.modules().iter().find(|m| {
                m.path.as_os_str() == interp.as_str()
                    || std::fs::canonicalize(&m.path).ok() == std::fs::canonicalize(interp).ok()
            });
            if let Some(m) = rtld {
                let find = |name: &str| {
                    m.elf
                        .symbols_named(name)
                        .first()
                        .map(|s| m.to_runtime(s.addr))
                };
                if let Some(r_brk) = find("_dl_debug_state") {
                    space.rtld = Some(Rtld {
                        r_brk,
                        r_debug: find("_r_debug"),
                        hits: 0,
                    });
                }
            }
        }
        self.world.spaces.insert(pid, space);
        // Without a scratch page (a seccomp filter rtrace may not suspend):
        // no out-of-line slot, so instructions are emulated or stepped in
        // place (`Space::arm`); no trampoline, so returns are watched at
        // their return sites (`hijack_return`); no fast probe
        // (`patch_fast`).
        let scratch = match self.map_scratch(tid, pid) {
            Ok(page) => {
                self.restore_group_stop(tid)?;
                Some(page)
            }
            Err(e @ Error::Seccomp { .. }) => {
                self.warn_no_injection(pid, &e);
                self.space_mut(pid)?.no_injection = Some(e.to_string());
                None
            }
            Err(e) => return Err(e),
        };
        let space = self.space_mut(pid)?;
        space.scratch = scratch;
        if let Some(r_brk) = space.rtld.map(|r| r.r_brk) {
            // rtrace's own hook: whatever `--step` says for the user's probes.
            space.arm(r_brk, Owner::Rtld, crate::arch::StepMode::Auto)?;
        }
        self.place_all(pid)
    }

    /// `tid` was in a group-stop (rtrace attached to a stopped process) and has
    /// just been stepped to run a system call for rtrace, which took it out of
    /// the group-stop: an untraced process would still be stopped, and a
    /// PTRACE_LISTEN now would fail. It is sent SIGSTOP again (delivered
    /// while the group is stopped anyway), which puts it back into the
    /// group-stop it left; other signals that come first are held for later.
    fn restore_group_stop(&mut self, tid: Tid) -> Result<()> {
        let was_stopped = self
            .world
            .deferred
            .iter()
            .any(|s| matches!(s, Stop::GroupStop { tid: t, .. } if *t == tid));
        if !was_stopped {
            return Ok(());
        }
        let pid = self.world.tasks[&tid].pid;
        signal::tgkill(pid, tid, libc::SIGSTOP);
        ptrace::restart(tid, Restart::Continue(0))?;
        loop {
            let stop = match self.wait_stop(wait::Which::Tid(tid), true, false)? {
                wait::Waited::Stop(stop) => stop,
                wait::Waited::NotReady | wait::Waited::Interrupted => continue,
                wait::Waited::NoTracee => return Err(wait::no_tracee_error()),
            };
            match stop {
                Stop::Signal {
                    signal: libc::SIGSTOP,
                    ..
                } => ptrace::restart(tid, Restart::Continue(libc::SIGSTOP))?,
                Stop::Signal { signal, .. } => {
                    let info = ptrace::getsiginfo(tid).ok();
                    let task = self.world.tasks.get_mut(&tid).expect("a known task");
                    task.held.push(super::task::HeldSignal {
                        signal,
                        info,
                        reported: false,
                    });
                    ptrace::restart(tid, Restart::Continue(0))?;
                }
                // Back in the group-stop (the one deferred stands for it).
                Stop::GroupStop { .. } => return Ok(()),
                other @ (Stop::Exited { .. }
                | Stop::Killed { .. }
                | Stop::Trap { .. }
                | Stop::Interrupt { .. }
                | Stop::Event { .. }) => {
                    self.world.deferred.push_back(other);
                    return Ok(());
                }
            }
        }
    }

    pub(super) fn space_mut(&mut self, key: Pid) -> Result<&mut Space> {
        self.world
            .spaces
            .get_mut(&key)
            .ok_or(Error::NoSuchProcess { pid: key })
    }

    /// Places every probe that is not armed yet in space `key`, and the
    /// unwinder hooks.
    pub(super) fn place_all(&mut self, key: Pid) -> Result<()> {
        for i in 0..self.consumers.probes.len() {
            self.place_probe(key, ProbeId(i))?;
        }
        self.place_unwind_hooks(key);
        Ok(())
    }

    /// Watches the entries of the stack unwinders of every module (libgcc's, in
    /// libgcc_s or linked statically), when return probes may rewrite return
    /// addresses: see `watch_at_return_sites`. And the entries of the
    /// functions that find their caller from their return address
    /// (`CALLER_LOOKUPS`: `dlopen`, `dlsym`…), which a function whose return
    /// is watched may reach by a tail call, with the trampoline or the fast
    /// return stub where their return address should be: see
    /// `own_return_address_back`. Best effort: an entry that cannot be
    /// probed is left alone.
    pub(super) fn place_unwind_hooks(&mut self, key: Pid) {
        if self.opts.entry_only || self.consumers.probes.iter().all(Option::is_none) {
            return;
        }
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return;
        };
        let mut addrs = Vec::new();
        let mut callers = Vec::new();
        let mut unwinder = false;
        // The modules' own symbol tables only: libc6-dbg's names glibc's
        // internal `_Unwind_Resume` wrapper, which is not the unwinder a
        // program's exceptions run.
        for m in space.modules.modules() {
            for name in crate::symbols::resolve::UNWINDERS {
                if let Some(sym) = m.elf.function_named_in(name, Tables::Own) {
                    addrs.push(m.to_runtime(sym.addr));
                    unwinder = true;
                }
            }
            // Where a catch handler starts: the frames the exception unwound
            // end there, even when the handler's code goes on through the
            // return site of the call that threw.
            if let Some(sym) = m
                .elf
                .function_named_in(crate::symbols::resolve::CATCH_HOOK, Tables::Own)
            {
                addrs.push(m.to_runtime(sym.addr));
            }
            for name in crate::symbols::resolve::CALLER_LOOKUPS {
                if let Some(sym) = m.elf.function_named_in(name, Tables::Own) {
                    callers.push(m.to_runtime(sym.addr));
                }
            }
        }
        let exe_has_eh = space
            .modules
            .modules()
            .first()
            .is_some_and(|m| m.elf.has_exception_tables());
        space.unknown_unwinder = exe_has_eh && !unwinder;
        let hooks = addrs
            .into_iter()
            .map(|a| (a, Owner::Unwind))
            .chain(callers.into_iter().map(|a| (a, Owner::CallerHook)));
        for (addr, owner) in hooks {
            // Hooked already (maybe as a fast hook, whose jump stays).
            let hooked = self
                .world
                .spaces
                .get(&key)
                .and_then(|s| s.sites.get(addr))
                .is_some_and(|s| match owner {
                    Owner::Unwind => s.unwind,
                    Owner::CallerHook => s.caller_hook,
                    // The list above holds the two hooks only.
                    Owner::Probe(_)
                    | Owner::Rtld
                    | Owner::ReturnSite
                    | Owner::Resolver
                    | Owner::ResolverReturn
                    | Owner::Unpark
                    | Owner::Returned => false,
                });
            if hooked || fast::before_arm(self, key, addr).is_err() {
                continue;
            }
            if let Some(space) = self.world.spaces.get_mut(&key) {
                let _ = space.arm(addr, owner, crate::arch::StepMode::Auto);
            }
        }
    }

    /// Resolves probe `id` in space `key` and arms it, unless it is armed already.
    ///
    /// An IFUNC is armed at the implementation the process uses (read from the
    /// GOT slots the dynamic linker filled, see `symbols::ifunc`). A glob skips
    /// the functions it cannot probe (an instruction that cannot be stepped, an
    /// IFUNC not resolved yet, a function rtrace's own hooks use:
    /// `symbols::reserved`) and reports them in one warning; a single function
    /// that cannot be probed is an error.
    pub(super) fn place_probe(&mut self, key: Pid, id: ProbeId) -> Result<()> {
        let Some(probe) = self.consumers.probes.get(id.0).and_then(Option::as_ref) else {
            return Ok(());
        };
        let space = self
            .world
            .spaces
            .get_mut(&key)
            .ok_or(Error::NoSuchProcess { pid: key })?;
        if matches!(space.placed.get(&id), Some(Placement::Armed(_))) {
            return Ok(());
        }
        // An unqualified glob searches every module: wait until the startup
        // libraries are all loaded (no code of the program runs before).
        if probe.spec.is_glob() && probe.spec.module.is_none() && !space.ready {
            return Ok(());
        }
        self.consumers.progress.report(Progress::Resolving {
            probe: probe.spec.as_str(),
        });
        match resolve(&probe.spec, &space.modules)? {
            Resolution::Found(found) => {
                // The sites the exclusions name in this process.
                let excluded: HashSet<RuntimeAddr> = self
                    .excluded
                    .iter()
                    .filter_map(|x| match resolve(x, &space.modules) {
                        Ok(Resolution::Found(locs)) => Some(locs),
                        _ => None,
                    })
                    .flatten()
                    .map(|l| l.addr)
                    .collect();
                let found: Vec<_> = found
                    .into_iter()
                    .filter(|l| !excluded.contains(&l.addr))
                    .collect();
                let glob = probe.spec.is_glob();
                let spec = probe.spec.as_str().to_string();
                let mut skipped = Vec::new();
                let mut locations = Vec::with_capacity(found.len());
                let mut unresolved = Vec::new();
                let mut seen = HashSet::new();
                for loc in found {
                    if glob {
                        if let Some(why) = reserved(&loc.linkage_name) {
                            SkipReason::add(&mut skipped, why, &loc.symbol);
                            continue;
                        }
                    }
                    let loc = if loc.ifunc {
                        match ifunc_implementation(space, &loc) {
                            Some(implementation) => implementation,
                            // Before the startup libraries are relocated (the
                            // exec stop), no slot is filled yet: try again at
                            // the next library event.
                            None if !space.ready => {
                                space.placed.remove(&id);
                                return Ok(());
                            }
                            // No slot holds it yet: its PLT slots are bound
                            // lazily (at their first call), or the start code
                            // of a static executable has not relocated it.
                            // Its resolver is watched: what the first call
                            // of it returns is armed before anything calls
                            // the implementation.
                            None => {
                                unresolved.push(loc);
                                continue;
                            }
                        }
                    } else {
                        loc
                    };
                    // An IFUNC's implementation may be matched by its own name too.
                    if seen.insert(loc.addr) {
                        locations.push(loc);
                    }
                }
                space.placed.insert(id, Placement::Armed(Vec::new()));
                self.ever_armed.insert(id);
                let go_code = self.arm_locations(key, id, locations, glob, &mut skipped)?;
                for loc in unresolved {
                    self.watch_resolver(key, id, loc, glob, &mut skipped)?;
                }
                if go_code && !self.opts.entry_only && self.consumers.go_reported.insert(id) {
                    self.consumers.warnings.push(Event::Warning {
                        probe: spec.clone(),
                        message: "Go code: entries only (a goroutine's stack moves and it \
                                  changes threads, so its returns cannot be watched)"
                            .into(),
                    });
                }
                self.report_skipped(id, spec, skipped);
            }
            Resolution::Pending => {
                // Said at startup, not at the end after a run that traced
                // nothing: a module the program can never load (a typo, a
                // file that is no library) is an error, as an unknown name is.
                let first_image = key == self.root && !self.root_execd;
                if space.ready && first_image && !self.attach_reported {
                    let module = probe.spec.module.as_deref().unwrap_or_default();
                    if let Some(why) = never_loads(&space.modules, key, module) {
                        return Err(Error::ModuleNeverLoads {
                            probe: probe.spec.as_str().to_string(),
                            module: module.to_string(),
                            why,
                            closest: space.modules.closest(module),
                        });
                    }
                }
                space.placed.insert(id, Placement::Pending);
            }
            Resolution::NotFound { searched } => {
                space.placed.remove(&id);
                // The rule (an unqualified name must be found once the startup
                // libraries are loaded) is about the program rtrace launched or
                // attached to. An image reached by exec (a child running a shell,
                // or the program itself running another) may well not have the
                // function: the probe is simply not armed there.
                let first_image = key == self.root && !self.root_execd;
                if space.ready && first_image {
                    return Err(not_found(&probe.spec, searched, &space.modules));
                }
            }
        }
        Ok(())
    }

    /// Arms probe `id` at `locations` in space `key` (its placement is
    /// `Armed` already), recording each address armed. A location that cannot
    /// be probed is a skip reason for a glob, an error otherwise. Returns
    /// true when a location is Go code (probed entry-only).
    pub(super) fn arm_locations(
        &mut self,
        key: Pid,
        id: ProbeId,
        locations: Vec<Location>,
        glob: bool,
        skipped: &mut Vec<SkipReason>,
    ) -> Result<bool> {
        let Some(probe) = self.consumers.probes.get(id.0).and_then(Option::as_ref) else {
            return Ok(false);
        };
        let spec = probe.spec.as_str().to_string();
        let entry_only = crate::Options {
            entry_only: true,
            ..self.opts
        };
        let mut go_code = false;
        let total = locations.len();
        for (done, mut loc) in locations.into_iter().enumerate() {
            self.consumers.progress.report(Progress::Arming {
                probe: &spec,
                done,
                total,
            });
            // An int3 never goes into a jump of a fast probe.
            fast::before_arm(self, key, loc.addr)?;
            let space = self
                .world
                .spaces
                .get_mut(&key)
                .ok_or(Error::NoSuchProcess { pid: key })?;
            // Go: see `arch::go_stack_check_len`; and no return address
            // of a goroutine can be watched, its stack moves.
            let go = loc.function_entry
                && space
                    .modules
                    .module_at(loc.addr)
                    .is_some_and(|m| m.elf.is_go());
            if go {
                go_code = true;
                // lea (8 bytes) + cmp (4) + jbe rel32 (6).
                let code = space.mem.read_vec(loc.addr, 18).unwrap_or_default();
                let skip = crate::arch::go_stack_check_len(&code).unwrap_or(0);
                loc.addr = loc.addr.offset(skip as i64);
                loc.offset += skip as u64;
            }
            // A function that reads its own return address has its returns
            // watched at the return site (see `hijack_return`).
            let reads_ret = loc.function_entry
                && space.modules.module_at(loc.addr).is_some_and(|m| {
                    function_reads_return_address(m, m.to_link(loc.addr), &loc.linkage_name)
                });
            let name = match space.modules.module_at(loc.addr) {
                Some(m) if !loc.symbol.is_empty() => {
                    crate::symbols::short_name(m, &loc.linkage_name)
                }
                _ => loc.symbol.clone(),
            };
            let site = Rc::new(Site {
                probe: spec.clone(),
                id,
                kind: if go || never_returns(&loc.linkage_name) || returns_twice(&loc.linkage_name)
                {
                    kind_for(loc.function_entry, &entry_only)
                } else {
                    kind_for(loc.function_entry, &self.opts)
                },
                symbol: loc.symbol.clone(),
                name,
                offset: loc.offset,
                module: loc.module,
                address: loc.addr,
            });
            match space.arm(loc.addr, Owner::Probe(site), self.opts.step) {
                Ok(()) => {
                    if let Some(Placement::Armed(addrs)) = space.placed.get_mut(&id) {
                        addrs.push(loc.addr);
                    }
                    if reads_ret {
                        if let Some(site) = space.sites.get_mut(loc.addr) {
                            site.reads_return_address = true;
                        }
                    }
                }
                Err(Error::UnsupportedInstruction { reason, .. }) if glob => {
                    let why = format!("whose first instruction cannot be stepped ({reason})");
                    SkipReason::add(skipped, &why, &loc.symbol);
                }
                Err(Error::ForeignBreakpoint { .. }) if glob => {
                    let why = "where another tracer's breakpoint is (a debugger's or a kernel \
                               uprobe's)";
                    SkipReason::add(skipped, why, &loc.symbol);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(go_code)
    }

    /// Queues the one warning of probe `id` (spec `probe`) about the functions
    /// it skipped, unless it was given in this run already.
    pub(super) fn report_skipped(&mut self, id: ProbeId, probe: String, reasons: Vec<SkipReason>) {
        if !reasons.is_empty() && self.consumers.skips_reported.insert(id) {
            self.consumers
                .warnings
                .push(Event::Skipped { probe, reasons });
        }
    }

    /// Sends the warnings collected while placing probes to the listeners.
    pub(super) fn flush_warnings(&mut self) -> Result<()> {
        if self.consumers.listeners.is_empty() {
            return Ok(());
        }
        for event in std::mem::take(&mut self.consumers.warnings) {
            self.emit(event)?;
        }
        Ok(())
    }

    /// Handles one stop outside the hit path.
    pub(super) fn dispatch(&mut self, stop: Stop) -> Result<()> {
        let tid = stop.tid();
        if stop.is_death() {
            let r = self.on_death(stop);
            return r.and_then(|()| self.adopt_orphans());
        }
        let Some(task) = self.world.tasks.get_mut(&tid) else {
            // A new task whose creation event has not been handled yet.
            self.world.orphans.insert(tid, stop);
            return self.adopt_orphans();
        };
        let was_starting = task.state == TaskState::Starting;
        task.state = TaskState::Stopped;
        let stray_step = std::mem::take(&mut task.stray_step);
        let stepping = task.step.is_some();
        if was_starting {
            return self.on_first_stop(tid, stop);
        }
        match stop {
            Stop::Trap { .. } => self.on_trap(tid, stray_step),
            Stop::Signal { signal, .. } if stepping => self.on_signal_in_step(tid, signal),
            Stop::Signal { signal, .. } => {
                // A fast probe's capture read a bad pointer: ours, fixed up.
                if fast::on_signal(self, tid, signal)? {
                    return Ok(());
                }
                self.deliver_signal(tid, signal)
            }
            Stop::GroupStop { .. } => {
                let task = self.world.tasks.get_mut(&tid).expect("task checked above");
                task.group_stopped = true;
                if self.halting {
                    return Ok(());
                }
                // Stay stopped as an untraced process would, but hear about SIGCONT.
                task.state = TaskState::Listening;
                match ptrace::restart(tid, Restart::Listen) {
                    Err(e) if e.is_tracee_gone() => Ok(()),
                    r => r,
                }
            }
            Stop::Interrupt { .. } => self.resume(tid, 0),
            Stop::Event { event, .. } => self.on_ptrace_event(tid, event),
            Stop::Exited { .. } | Stop::Killed { .. } => unreachable!("deaths handled above"),
        }
    }

    /// Delivers a signal that is not ours to the thread it was meant for,
    /// unchanged, and reports it.
    pub(super) fn deliver_signal(&mut self, tid: Tid, signal: i32) -> Result<()> {
        let task = self.world.tasks.get_mut(&tid).expect("a known task");
        if task.nudge == Some(signal)
            && ptrace::getsiginfo(tid).is_ok_and(|i| i.tkill_from(nix::unistd::getpid()))
        {
            // rtrace's own, to deliver a held signal at this stop: it is not
            // the program's, and goes no further.
            task.nudge = None;
            return self.resume(tid, 0);
        }
        // Delivered only out of the detours (the thread steps out first).
        if fast::before_deliver(self, tid, signal)? {
            return Ok(());
        }
        let task = &self.world.tasks[&tid];
        if task.silent {
            return self.resume(tid, signal);
        }
        let (pid, key) = (task.pid, task.space);
        // The thread's calls recorded before the signal are reported before
        // it: its line waits for the ring to be read that far, while the
        // thread goes on. An error of a listener is returned once the
        // signal is on its way.
        let time = self.start.elapsed();
        let event = Event::Signal { pid, tid, signal };
        let emitted = match fast::defer_signal(&mut self.reader(), key, event, time) {
            Some((event, time)) => self.consumers.emit(event, time),
            None => Ok(()),
        };
        let resumed = self.resume(tid, signal);
        emitted.and(resumed)
    }

    fn on_ptrace_event(&mut self, tid: Tid, event: wait::Event) -> Result<()> {
        match event {
            wait::Event::Clone { child } => self.on_new_child(tid, child, ForkKind::Clone)?,
            wait::Event::Fork { child } => self.on_new_child(tid, child, ForkKind::Fork)?,
            wait::Event::Vfork { child } => {
                self.on_new_child(tid, child, ForkKind::Vfork)?;
                // The parent stays in this stop until the child execs or dies.
                // Resumed now, it would wait for the child in the kernel, where
                // PTRACE_INTERRUPT cannot stop it: the first hit in the child,
                // which stops every other thread of the address space for its
                // step, would wait for it forever.
                let parent_space = self.world.tasks[&tid].space;
                if let Some(task) = self.world.tasks.get_mut(&child) {
                    task.vfork_parent = Some(tid);
                    if task.space == parent_space {
                        // It runs on its parent's TLS until it execs.
                        fast::on_fork(
                            &mut self.reader(),
                            parent_space,
                            tid,
                            Fork::Vfork { child },
                        )?;
                    }
                    // (A child let go releases it at once: see `let_go`.)
                    return Ok(());
                }
            }
            wait::Event::VforkDone => {
                // The child it lent its thread pointer to exec'd or died:
                // the records under it are the child's up to now.
                let key = self.world.tasks[&tid].space;
                fast::on_fork(&mut self.reader(), key, tid, Fork::VforkDone)?;
            }
            wait::Event::Exit => return self.on_exiting(tid),
            wait::Event::Exec { former } => return self.on_exec(tid, former),
        }
        self.resume(tid, 0)
    }

    /// A traced task created `child` (a thread or a process). Registers it; its
    /// first stop may already have arrived (it is then among the orphans).
    pub(super) fn on_new_child(&mut self, parent: Tid, child: Tid, kind: ForkKind) -> Result<()> {
        // A creator killed in the middle of fork may report the event with
        // no child (0). The child is among the thread's own processes
        // (`/proc/PID/task/TID/children`, newest last), not known yet and
        // traced by rtrace (attached with the event): the one whose first
        // stop came already (an orphan), else the newest. (A thread made so
        // is adopted from its first stop: `adopt_orphans`.)
        let child = match (child.as_raw(), kind) {
            (0, ForkKind::Clone) => return Ok(()),
            (0, ForkKind::Fork | ForkKind::Vfork) => {
                let Some(p) = self.world.tasks.get(&parent) else {
                    return Ok(());
                };
                let new: Vec<Tid> = task::children_of(p.pid, parent)
                    .into_iter()
                    .filter(|c| !self.world.tasks.contains_key(c) && task::traced_by_us(*c))
                    .collect();
                let stopped = new.iter().find(|c| self.world.orphans.contains_key(c));
                match stopped.or(new.last()) {
                    Some(&c) => c,
                    None => return Ok(()),
                }
            }
            _ => child,
        };
        // The parent's fast records up to the fork, so that its calls in
        // flight are known (a followed child inherits them).
        if let Some(space) = self.world.tasks.get(&parent).map(|t| t.space) {
            fast::on_fork(&mut self.reader(), space, parent, Fork::Child)?;
        }
        let p = &self.world.tasks[&parent];
        let (ppid, pspace, psilent) = (p.pid, p.space, p.silent);
        let is_thread = kind == ForkKind::Clone && tgid_of(child) == Some(ppid);
        let mut task;
        if is_thread {
            task = Task::new(ppid, pspace, TaskState::Starting);
            task.silent = psilent;
        } else {
            // The kernel reports a clone whose exit signal is SIGCHLD as a fork,
            // CLONE_VM or not: only vfork says by itself that memory is shared.
            let shares_memory = match kind {
                ForkKind::Vfork => true,
                ForkKind::Fork | ForkKind::Clone => {
                    signal::same_address_space(parent, child).unwrap_or(false)
                }
            };
            task = Task::new(child, pspace, TaskState::Starting);
            if shares_memory && kind != ForkKind::Vfork {
                fast::on_shared_child(self, parent)?;
            }
            if self.opts.follow_forks && !psilent {
                if !shares_memory {
                    task.needs_setup = self.fork_space(pspace, child)?;
                    task.space = child;
                    // The child's stack is a copy of the parent thread's: the same
                    // slots hold the trampoline, so it gets the same return stack.
                    let copies = self.world.tasks[&parent].returns.clone_without_data();
                    task.returns = copies;
                    task.fast_calls = self.world.tasks[&parent].fast_calls.clone_without_data();
                }
                self.emit(Event::Fork {
                    pid: ppid,
                    child,
                    kind,
                })?;
            } else if shares_memory {
                // It runs in our memory, over our breakpoints, until it execs:
                // keep it traced, silently, so a hit there is stepped, not fatal.
                // A vfork child in memory with no breakpoint (every probe
                // fast) is let go instead: its calls run through the detours
                // as its parent's would, their records silent under the
                // thread pointer it borrows, and it may be traced by its own
                // parent, as a debugger's child asks before its exec.
                task.silent = true;
                task.let_go = kind == ForkKind::Vfork
                    && self.world.tasks[&parent].step.is_none()
                    && !self.world.spaces[&pspace].has_breakpoints();
            } else {
                let space = &self.world.spaces[&pspace];
                let fast = space.fast.scrub();
                task.scrub = Some(Scrub {
                    fast_returns: fast.returns,
                    unmap: fast.unmap,
                    sites: space.code_changes(),
                    returns: self.world.tasks[&parent].returns.restorations(),
                    trampoline: space.trampoline(),
                    scratch: space.scratch,
                    step: None,
                });
            }
        }
        // It inherited the pinned CPU; its own affinity is its parent's.
        task.affinity = self.world.tasks[&parent].affinity;
        if let (Some(guardian), Some(own)) = (self.guardian.as_mut(), &task.affinity) {
            guardian.pinned(child, own);
        }
        // Created by a system call stepped out of line: the child is in the slot
        // too, just after that instruction, and finishes the step like its parent.
        task.step = self.world.tasks[&parent].step.clone();
        if let (Some(scrub), Some(step)) = (task.scrub.as_mut(), &task.step) {
            scrub.step = Some(step.clone());
        }
        self.world.tasks.insert(child, task);
        if let Some(stop) = self.world.orphans.remove(&child) {
            self.world.deferred.push_front(stop);
        }
        Ok(())
    }

    /// New tasks whose first stop came before the event of their creation,
    /// when that event will never come: their creator was killed as it made
    /// them (a group exit: another thread called `_exit`), and a task with
    /// a fatal signal pending does not stop for the event. Such a task
    /// would wait in its stop for ever, and its process with it (a leader
    /// is reaped after its last thread). When no task rtrace knows of the
    /// creator's process (the task's own for a thread, its parent for a
    /// process) is alive and not exiting, the task is registered as the
    /// event would have registered it, by a task of that process, and its
    /// stop is handled.
    fn adopt_orphans(&mut self) -> Result<()> {
        let orphans: Vec<Tid> = self.world.orphans.keys().copied().collect();
        for child in orphans {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{child}/status")) else {
                continue;
            };
            let (Some(tgid), Some(ppid)) = (
                status_field(&status, "Tgid:"),
                status_field(&status, "PPid:"),
            ) else {
                continue;
            };
            let creator = Pid::from_raw(if tgid == child.as_raw() { ppid } else { tgid });
            let mut parent = None;
            let mut live = false;
            for (&tid, t) in self.world.tasks.iter().filter(|(_, t)| t.pid == creator) {
                if parent.is_none() || tid == creator {
                    parent = Some(tid);
                }
                live |= !t.exiting && !task::is_dead(tid);
            }
            if let (Some(parent), false) = (parent, live) {
                self.on_new_child(parent, child, ForkKind::Clone)?;
            }
        }
        Ok(())
    }

    /// A copy of space `from` for a forked child that will be traced. The
    /// child's memory is a copy taken at the fork, which may be older than
    /// some of rtrace's changes to the parent (its event is handled later):
    /// the copy of the space is made to agree with it (`Space::reconcile`).
    /// A child forked before the scratch page was mapped has nothing of
    /// rtrace's: it gets a space of its own, set up at its first stop
    /// (`Task::needs_setup`).
    fn fork_space(&mut self, from: Pid, child: Pid) -> Result<bool> {
        let maps = crate::symbols::maps::read(child)?;
        let mapped = |a: RuntimeAddr| maps.iter().any(|m| m.start <= a && a < m.end);
        if !self.world.spaces[&from].scratch.is_some_and(mapped) {
            let space = Space::open(child, &mut self.cache)?;
            self.world.spaces.insert(child, space);
            return Ok(true);
        }
        let src = &self.world.spaces[&from];
        let mut space = src.for_child(child)?;
        space.reconcile(&mapped)?;
        self.world.spaces.insert(child, space);
        Ok(false)
    }

    /// The first stop of a new task.
    fn on_first_stop(&mut self, tid: Tid, stop: Stop) -> Result<()> {
        if let Some(scrub) = self.world.tasks.get_mut(&tid).and_then(|t| t.scrub.take()) {
            return self.release_child(tid, stop, scrub);
        }
        if self.world.tasks.get(&tid).is_some_and(|t| t.let_go) {
            // In its parent's memory, which stays as it is.
            return self.let_go(tid, &stop);
        }
        let key = self.world.tasks[&tid].space;
        if std::mem::take(
            &mut self
                .world
                .tasks
                .get_mut(&tid)
                .expect("a known task")
                .needs_setup,
        ) {
            // Forked before rtrace changed anything: set up like an image
            // after exec (unless rtrace is leaving: there is nothing to undo).
            if !self.halting {
                self.prepare_space(key, tid)?;
            }
            return match stop {
                Stop::Interrupt { .. } => self.resume(tid, 0),
                other @ (Stop::Exited { .. }
                | Stop::Killed { .. }
                | Stop::Trap { .. }
                | Stop::Signal { .. }
                | Stop::GroupStop { .. }
                | Stop::Event { .. }) => self.dispatch(other),
            };
        }
        // A forked child's own ring; a new thread's thread pointer (what
        // its fast records will carry).
        fast::on_thread_seen(self, key, tid)?;
        match stop {
            // The usual first stop; anything else (a signal that raced in) is
            // handled as it would be later.
            Stop::Interrupt { .. } => self.resume(tid, 0),
            other @ (Stop::Exited { .. }
            | Stop::Killed { .. }
            | Stop::Trap { .. }
            | Stop::Signal { .. }
            | Stop::GroupStop { .. }
            | Stop::Event { .. }) => self.dispatch(other),
        }
    }

    /// Removes from a forked child (which will not be traced) everything it
    /// inherited from us, then lets it go.
    fn release_child(&mut self, tid: Tid, stop: Stop, scrub: Scrub) -> Result<()> {
        let result = (|| -> Result<()> {
            let mem = crate::sys::mem::ProcMem::open(tid)?;
            let maps = crate::symbols::maps::read(tid)?;
            let mapped = |a: RuntimeAddr| maps.iter().any(|m| m.start <= a && a < m.end);
            if let Some(step) = &scrub.step {
                // It was created by a system call stepped out of line: it is in
                // the slot, after that instruction. Out before the unmap.
                let mut regs = ptrace::getregs(tid)?;
                step.finish(&mut regs, &mem)?;
                ptrace::setregs(tid, &regs)?;
            }
            // The child's copy of the memory was taken at the fork, which
            // may come before some of rtrace's changes (the fork event is
            // handled later): what the child has is read from it, never
            // assumed from the parent's state of now.
            for (addr, undo) in scrub.sites.iter().filter(|(a, _)| mapped(*a)) {
                super::space::undo_write(&mem, *addr, undo)?;
            }
            // A slot may hold the trampoline over the stub, or the stub
            // over the trampoline (a call of one kind of probe reached by a
            // tail call from a call of the other): each pass gives back one
            // layer, until a pass gives back nothing.
            let regs = ptrace::getregs(tid)?;
            let threads = [(regs.thread_pointer(), RuntimeAddr(regs.sp()))];
            let pid = crate::addr::Pid::from_raw(tid.as_raw());
            let mut maps = super::space::MapCache::default();
            for _ in 0..16 {
                let mut restored = 0;
                if let Some(tramp) = scrub.trampoline.filter(|t| mapped(*t)) {
                    for (slot, orig) in &scrub.returns {
                        if mem.read_u64(*slot)? == tramp.get() && *orig != tramp {
                            mem.write_u64(*slot, orig.get())?;
                            restored += 1;
                        }
                    }
                }
                if let Some((stub, table)) = scrub.fast_returns.filter(|(_, t)| mapped(*t)) {
                    // Its copy of the table says which slots of its copy of
                    // the stack hold the stub.
                    restored +=
                        fast::restore_stub_slots(&mem, stub, table, &threads, &mut |a, b| {
                            maps.same_mapping(pid, a, b)
                        })?;
                }
                if restored == 0 {
                    break;
                }
            }
            // The scratch page is the first change rtrace makes to a
            // process and the last it undoes: a child without it has none
            // of rtrace's mappings.
            if let Some(scratch) = scrub.scratch.filter(|s| mapped(*s)) {
                // Fast probes' ring (shared with the parent: it must not
                // write there) and detour areas. A seccomp filter rtrace may
                // not suspend leaves them (and the scratch page) mapped:
                // nothing in the child leads there any more, its code being
                // its files' again.
                let unmapped = (|| {
                    for (addr, len) in scrub.unmap.iter().filter(|(a, _)| mapped(*a)) {
                        self.inject_syscall(
                            tid,
                            scratch.offset(crate::arch::SCRATCH_SYSCALL_OFFSET),
                            libc::SYS_munmap,
                            &[addr.get(), *len],
                        )?;
                    }
                    self.unmap_scratch(tid, scratch)
                })();
                match unmapped {
                    Err(e @ Error::Seccomp { .. }) => {
                        let mut left = vec!["rtrace's scratch page"];
                        if !scrub.unmap.is_empty() {
                            left.push("fast probes' ring and detour areas");
                        }
                        self.warn_left_mapped(&e, &left);
                    }
                    r => r?,
                }
            }
            Ok(())
        })();
        let detached = self.let_go(tid, &stop);
        match result {
            Err(e) if !e.is_tracee_gone() => Err(e),
            _ => detached,
        }
    }

    /// Detaches new task `tid` (in its first stop, `stop`) for good: its
    /// CPUs are its own again, the signal of its stop is delivered by the
    /// detach, and signals held for it are queued again. A vfork child let
    /// go (`Task::let_go`) releases its parent, held in its vfork event stop
    /// until now (so that nothing of rtrace's waits for a parent in the
    /// kernel's vfork wait while the child is still rtrace's): the parent
    /// waits for the child in the kernel, and its VFORKDONE event gives the
    /// thread pointer it lent back.
    fn let_go(&mut self, tid: Tid, stop: &Stop) -> Result<()> {
        let sig = match stop {
            Stop::Signal { signal, .. } => *signal,
            Stop::Exited { .. }
            | Stop::Killed { .. }
            | Stop::Trap { .. }
            | Stop::GroupStop { .. }
            | Stop::Interrupt { .. }
            | Stop::Event { .. } => 0,
        };
        let task = self.world.tasks.remove(&tid).expect("child registered");
        if let Some(mask) = &task.affinity {
            crate::sys::sched::set_affinity(tid, mask);
        }
        match ptrace::restart(tid, Restart::Detach(sig)) {
            Err(e) if !e.is_tracee_gone() => return Err(e),
            _ => {}
        }
        for held in task.held.iter().skip(usize::from(task.nudge.is_some())) {
            signal::requeue(tid, tid, held.signal, held.info.as_ref());
        }
        match task.vfork_parent.filter(|_| task.let_go) {
            Some(parent)
                if self
                    .world
                    .tasks
                    .get(&parent)
                    .is_some_and(|t| t.state == TaskState::Stopped) =>
            {
                self.resume(parent, 0)
            }
            _ => Ok(()),
        }
    }

    /// A task exec'd: its process has a new image (and no other thread).
    fn on_exec(&mut self, tid: Tid, former: Tid) -> Result<()> {
        self.adopt_exec(tid, former);
        // A new image's probes begin as breakpoints: a launched program
        // (or a child of it) that execs dies with rtrace again, as one
        // with breakpoints in it at its launch does (one thread with the
        // option is enough: the kill is the whole process's). Stopped at
        // its exec event, it takes the option now.
        if self.launched.is_some() {
            self.exit_kill = true;
            let _ = nix::sys::ptrace::setoptions(tid, ptrace::options(true));
        }
        let task = self
            .world
            .tasks
            .get_mut(&tid)
            .expect("exec of a known task");
        let vfork_parent = task.vfork_parent.take();
        let old_space = task.space;
        // The old image's fast records, while the calls they return from
        // are known: a vfork child's are in its parent's ring, under the
        // thread pointer lent to it.
        fast::on_exec(&mut self.reader(), old_space)?;
        fast::on_thread_gone(&mut self.world, old_space, tid);
        let task = self
            .world
            .tasks
            .get_mut(&tid)
            .expect("exec of a known task");
        task.returns.take_all();
        task.fast_calls.take_all();
        // An exec stepped out of line: the new image starts afresh.
        task.step = None;
        task.pending_hit = None;
        task.state = TaskState::Stopped;
        if let Some(parent) = vfork_parent {
            self.release_vfork_parent(parent)?;
        }
        let task = self
            .world
            .tasks
            .get_mut(&tid)
            .expect("exec of a known task");
        if task.silent {
            // A vfork child we kept only to protect its parent: its new image
            // carries nothing of ours.
            self.world.tasks.remove(&tid);
            return match ptrace::restart(tid, Restart::Detach(0)) {
                Err(e) if !e.is_tracee_gone() => Err(e),
                _ => Ok(()),
            };
        }
        let pid = task.pid;
        task.space = pid;
        if pid == self.root {
            self.root_execd = true;
        }
        // (Its fast records were read above: the ring goes with it.)
        self.world.spaces.remove(&pid);
        self.prepare_space(pid, tid)?;
        let path = self.world.spaces[&pid].exe().to_path_buf();
        self.emit(Event::Exec { pid, path })?;
        self.report_attached_if_ready()?;
        self.resume(tid, 0)
    }

    /// The thread `former` exec'd and is now `tid` (a non-leader that execs
    /// takes the leader's id): the task is renamed, and the other threads of
    /// its process, gone with the old image, are forgotten.
    pub(super) fn adopt_exec(&mut self, tid: Tid, former: Tid) {
        if former != tid {
            if let Some(t) = self.world.tasks.remove(&former) {
                self.world.tasks.insert(tid, t);
            }
        }
        let Some(pid) = self.world.tasks.get(&tid).map(|t| t.pid) else {
            return;
        };
        self.world.tasks.retain(|t, k| k.pid != pid || *t == tid);
    }

    /// A vfork child exec'd or died: its parent, held in its vfork event stop,
    /// goes on.
    fn release_vfork_parent(&mut self, parent: Tid) -> Result<()> {
        if let Some(key) = self.world.tasks.get(&parent).map(|t| t.space) {
            fast::on_fork(&mut self.reader(), key, parent, Fork::VforkDone)?;
        }
        match self.world.tasks.get(&parent) {
            Some(t) if t.state == TaskState::Stopped => self.resume(parent, 0),
            _ => Ok(()),
        }
    }

    /// The dynamic linker reported a change of the link map (a thread is stopped
    /// at `r_brk`). When the map is consistent, pick up new libraries, arm the
    /// probes waiting for them, and at the first one, finish startup.
    pub(super) fn on_rtld_event(&mut self, key: Pid) -> Result<()> {
        let cache = &mut self.cache;
        let space = self
            .world
            .spaces
            .get_mut(&key)
            .ok_or(Error::NoSuchProcess { pid: key })?;
        let Some(rtld) = space.rtld.as_mut() else {
            return Ok(());
        };
        rtld.hits += 1;
        let consistent = match rtld.r_debug {
            Some(r_debug) => {
                let mut b = [0u8; 4];
                space.mem.read(r_debug.offset(R_STATE_OFFSET), &mut b)?;
                i32::from_ne_bytes(b) == RT_CONSISTENT
            }
            // Without `_r_debug`, the first report is RT_ADD, the second the
            // consistent map.
            None => rtld.hits >= 2,
        };
        if !consistent {
            return Ok(());
        }
        space.rescan(cache)?;
        space.ready = true;
        self.place_all(key)?;
        self.report_attached_if_ready()
    }

    /// A thread is exiting: it runs no user code any more, and will not stop
    /// again; its death is reported later (a leader's only once the whole group
    /// is gone). Let it go on dying.
    pub(super) fn on_exiting(&mut self, tid: Tid) -> Result<()> {
        // Its fast records, while its memory is still there to tell its
        // stacks apart.
        if let Some(space) = self.world.tasks.get(&tid).map(|t| t.space) {
            fast::on_exit(&mut self.reader(), space, Exit::Exiting)?;
        }
        let Some(task) = self.world.tasks.get_mut(&tid) else {
            return Ok(());
        };
        task.exiting = true;
        task.step = None;
        task.pending_hit = None;
        task.state = TaskState::Running;
        match ptrace::restart(tid, Restart::Continue(0)) {
            Err(e) if e.is_tracee_gone() => {}
            r => r?,
        }
        // The last of a process's other tasks may be this one: a leader's
        // death is not reported while an orphan of its process lives on, so
        // its exit is the last sign that the orphan's creator is gone.
        self.adopt_orphans()
    }

    /// A thread died.
    fn on_death(&mut self, stop: Stop) -> Result<()> {
        let tid = stop.tid();
        self.world.orphans.remove(&tid);
        // Its fast records first, while it is still known: the returns they
        // report are its calls'.
        if let Some(space) = self.world.tasks.get(&tid).map(|t| t.space) {
            fast::on_exit(&mut self.reader(), space, Exit::Died)?;
        }
        let Some(mut task) = self.world.tasks.remove(&tid) else {
            return Ok(());
        };
        let calls = std::mem::take(&mut task.fast_calls);
        fast::on_thread_died(&mut self.world, task.space, tid, task.pid, calls);
        fast::on_thread_gone(&mut self.world, task.space, tid);
        if let Some(parent) = task.vfork_parent {
            self.release_vfork_parent(parent)?;
        }
        if tid != task.pid {
            return Ok(()); // a thread; its process lives on
        }
        // The thread-group leader is reported last: the process is gone. Its
        // address space is not, while a child made with CLONE_VM (or vfork)
        // still runs in it: the breakpoints there are still to be removed.
        // Its fast records are all in (no thread of it will publish one).
        if task.space == task.pid {
            let heir = self.world.tasks.values().any(|t| t.space == task.pid);
            fast::on_exit(&mut self.reader(), task.space, Exit::Leader { heir })?;
        }
        if task.space == task.pid {
            let heir = self
                .world
                .tasks
                .iter()
                .find(|(_, t)| t.space == task.pid)
                .map(|(tid, _)| *tid);
            match heir.map(crate::sys::mem::ProcMem::open) {
                Some(Ok(mem)) => {
                    if let Some(space) = self.world.spaces.get_mut(&task.pid) {
                        space.pid = mem.pid();
                        space.mem = mem;
                    }
                }
                _ => {
                    self.world.spaces.remove(&task.pid);
                }
            }
        }
        if task.silent {
            return self.end_after_root();
        }
        let (event, end) = match stop {
            Stop::Exited { code, .. } => (
                Event::Exited {
                    pid: task.pid,
                    code,
                },
                Outcome::Exited(code),
            ),
            Stop::Killed { signal, core, .. } => (
                Event::Killed {
                    pid: task.pid,
                    signal,
                    core_dumped: core,
                },
                Outcome::Killed {
                    signal,
                    core_dumped: core,
                },
            ),
            Stop::Trap { .. }
            | Stop::Signal { .. }
            | Stop::GroupStop { .. }
            | Stop::Interrupt { .. }
            | Stop::Event { .. } => unreachable!("on_death takes deaths"),
        };
        if task.pid == self.root {
            // With -f, followed children keep being traced until they end.
            let followed = self
                .world
                .tasks
                .values()
                .any(|t| t.pid != self.root && !t.silent);
            // So do the other processes attached to.
            if (self.opts.follow_forks || !self.extra_roots.is_empty()) && followed {
                self.root_end = Some(end);
            } else {
                self.outcome = Some(end);
            }
        }
        self.emit(event)?;
        self.end_after_root()?;
        if task.pid == self.root && self.world.tasks.values().all(|t| t.pid == self.root) {
            // Only stale tasks of the root could be left (they die with it).
            self.world.tasks.retain(|_, t| t.pid != self.root);
        }
        Ok(())
    }

    /// The root process has ended and the last followed child with it: the
    /// outcome is the root's.
    fn end_after_root(&mut self) -> Result<()> {
        if self.outcome.is_none()
            && self.root_end.is_some()
            && !self.world.tasks.values().any(|t| !t.silent)
        {
            self.outcome = self.root_end;
        }
        Ok(())
    }

    /// Warns about probes that never armed (their library never loaded).
    pub(super) fn report_never_armed(&mut self) -> Result<()> {
        let never: Vec<String> = self
            .consumers
            .probes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.ever_armed.contains(&ProbeId(*i)))
            .filter_map(|(_, p)| Some(p.as_ref()?.spec.as_str().to_string()))
            .collect();
        for probe in never {
            self.emit(Event::NeverArmed { probe })?;
        }
        Ok(())
    }

    /// The trampoline address of the space of `tid`, if any.
    pub(super) fn trampoline_of(&self, tid: Tid) -> Option<RuntimeAddr> {
        let task = self.world.tasks.get(&tid)?;
        self.world.spaces.get(&task.space)?.trampoline()
    }
}

/// The implementation of the IFUNC at `loc` in `space`: the first GOT slot
/// (see `symbols::ifunc::slots`) that holds an answer. Called with the tracee
/// stopped.
fn ifunc_implementation(space: &Space, loc: &Location) -> Option<Location> {
    ifunc::read_implementation(&space.modules, loc, &|a| space.mem.read_u64(a).ok())
}

/// Why `module` can never be loaded into process `pid` (see
/// `ModuleMap::never_loads`), searched with the process's own
/// `LD_LIBRARY_PATH` and `PATH`.
fn never_loads(modules: &crate::symbols::ModuleMap, pid: Pid, module: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let var = |name: &[u8]| {
        env.split(|&b| b == 0)
            .find_map(|v| v.strip_prefix(name))
            .map(String::from_utf8_lossy)
    };
    let (libs, path) = (var(b"LD_LIBRARY_PATH="), var(b"PATH="));
    modules.never_loads(module, libs.as_deref(), path.as_deref())
}
