//! Lifecycle: address spaces coming and going (startup, exec, library loads),
//! threads and children being born and dying, and the stops that are not hits.

use std::rc::Rc;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::error::{Error, Result};
use crate::handler::{Event, ForkKind, ProbeId, Site};
use crate::symbols::{resolve, Resolution};
use crate::sys::wait::{self, Stop};
use crate::sys::{ptrace, signal};

use super::space::{Placement, Rtld, Space, RT_CONSISTENT, R_STATE_OFFSET};
use super::task::{tgid_of, Scrub, Task, TaskState};
use super::{kind_for, Outcome, Tracer};

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
        self.spaces.insert(pid, space);
        let scratch = self.map_scratch(tid, pid)?;
        let space = self.space_mut(pid)?;
        space.scratch = Some(scratch);
        if let Some(r_brk) = space.rtld.map(|r| r.r_brk) {
            space.arm(r_brk, None)?;
        }
        self.place_all(pid)
    }

    pub(super) fn space_mut(&mut self, key: Pid) -> Result<&mut Space> {
        self.spaces
            .get_mut(&key)
            .ok_or(Error::NoSuchProcess { pid: key })
    }

    /// Places every probe that is not armed yet in space `key`.
    pub(super) fn place_all(&mut self, key: Pid) -> Result<()> {
        for i in 0..self.probes.len() {
            self.place_probe(key, ProbeId(i))?;
        }
        Ok(())
    }

    /// Resolves probe `id` in space `key` and arms it, unless it is armed already.
    pub(super) fn place_probe(&mut self, key: Pid, id: ProbeId) -> Result<()> {
        let Some(probe) = self.probes.get(id.0).and_then(Option::as_ref) else {
            return Ok(());
        };
        let space = self
            .spaces
            .get_mut(&key)
            .ok_or(Error::NoSuchProcess { pid: key })?;
        if matches!(space.placed.get(&id), Some(Placement::Armed(_))) {
            return Ok(());
        }
        match resolve(&probe.spec, &space.modules)? {
            Resolution::Found(locations) => {
                let mut addrs = Vec::with_capacity(locations.len());
                for loc in locations {
                    let site = Rc::new(Site {
                        probe: probe.spec.as_str().to_string(),
                        id,
                        kind: kind_for(loc.function_entry, &self.opts),
                        symbol: loc.symbol,
                        offset: loc.offset,
                        module: loc.module,
                        address: loc.addr,
                    });
                    space.arm(loc.addr, Some(site))?;
                    addrs.push(loc.addr);
                }
                space.placed.insert(id, Placement::Armed(addrs));
                self.ever_armed.insert(id);
            }
            Resolution::Pending => {
                space.placed.insert(id, Placement::Pending);
            }
            Resolution::NotFound { searched } => {
                space.placed.remove(&id);
                if space.ready {
                    return Err(not_found(&probe.spec, searched));
                }
            }
        }
        Ok(())
    }

    /// Handles one stop outside the hit path.
    pub(super) fn dispatch(&mut self, stop: Stop) -> Result<()> {
        let tid = stop.tid();
        if stop.is_death() {
            return self.on_death(stop);
        }
        let Some(task) = self.tasks.get_mut(&tid) else {
            // A new task whose creation event has not been handled yet.
            self.orphans.insert(tid, stop);
            return Ok(());
        };
        let was_starting = task.state == TaskState::Starting;
        task.state = TaskState::Stopped;
        if was_starting {
            return self.on_first_stop(tid, stop);
        }
        match stop {
            Stop::Trap { cause, .. } => self.on_trap(tid, cause),
            Stop::Signal { signal, .. } => self.deliver_signal(tid, signal),
            Stop::GroupStop { .. } => {
                let task = self.tasks.get_mut(&tid).expect("task checked above");
                task.group_stopped = true;
                if self.halting {
                    return Ok(());
                }
                // Stay stopped as an untraced process would, but hear about SIGCONT.
                task.state = TaskState::Listening;
                match ptrace::listen(tid) {
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
        let task = &self.tasks[&tid];
        if !task.silent {
            let event = Event::Signal {
                pid: task.pid,
                tid,
                signal,
            };
            self.emit(event)?;
        }
        self.resume(tid, signal)
    }

    fn on_ptrace_event(&mut self, tid: Tid, event: wait::Event) -> Result<()> {
        match event {
            wait::Event::Clone { child } => self.on_new_child(tid, child, ForkKind::Clone)?,
            wait::Event::Fork { child } => self.on_new_child(tid, child, ForkKind::Fork)?,
            wait::Event::Vfork { child } => self.on_new_child(tid, child, ForkKind::Vfork)?,
            wait::Event::VforkDone => {}
            wait::Event::Exec { former } => return self.on_exec(tid, former),
        }
        self.resume(tid, 0)
    }

    /// A traced task created `child` (a thread or a process). Registers it; its
    /// first stop may already have arrived (it is then among the orphans).
    pub(super) fn on_new_child(&mut self, parent: Tid, child: Tid, kind: ForkKind) -> Result<()> {
        let p = &self.tasks[&parent];
        let (ppid, pspace, psilent) = (p.pid, p.space, p.silent);
        let is_thread = kind == ForkKind::Clone && tgid_of(child) == Some(ppid);
        let mut task;
        if is_thread {
            task = Task::new(ppid, pspace, TaskState::Starting);
            task.silent = psilent;
        } else {
            let shares_memory = match kind {
                ForkKind::Vfork => true,
                ForkKind::Fork => false,
                ForkKind::Clone => signal::same_address_space(parent, child).unwrap_or(false),
            };
            task = Task::new(child, pspace, TaskState::Starting);
            if self.opts.follow_forks && !psilent {
                if !shares_memory {
                    self.fork_space(pspace, child)?;
                    task.space = child;
                    // The child's stack is a copy of the parent thread's: the same
                    // slots hold the trampoline, so it gets the same return stack.
                    let copies = self.tasks[&parent].returns.clone_without_data();
                    task.returns = copies;
                }
                self.emit(Event::Fork {
                    pid: ppid,
                    child,
                    kind,
                })?;
            } else if shares_memory {
                // It runs in our memory, over our breakpoints, until it execs:
                // keep it traced, silently, so a hit there is stepped, not fatal.
                task.silent = true;
            } else {
                let space = &self.spaces[&pspace];
                task.scrub = Some(Scrub {
                    sites: space.site_bytes(),
                    returns: self.tasks[&parent]
                        .returns
                        .iter()
                        .map(|i| (i.slot, i.orig_ret))
                        .collect(),
                    trampoline: space.trampoline(),
                    scratch: space.scratch,
                });
            }
        }
        self.tasks.insert(child, task);
        if let Some(stop) = self.orphans.remove(&child) {
            self.deferred.push_front(stop);
        }
        Ok(())
    }

    /// A copy of space `from` for a forked child that will be traced.
    fn fork_space(&mut self, from: Pid, child: Pid) -> Result<()> {
        let src = &self.spaces[&from];
        let space = Space {
            pid: child,
            mem: crate::sys::mem::ProcMem::open(child)?,
            exe: src.exe.clone(),
            modules: src.modules.clone(),
            sites: src.sites.clone(),
            tombstones: src.tombstones.clone(),
            scratch: src.scratch,
            rtld: src.rtld,
            ready: src.ready,
            placed: src.placed.clone(),
        };
        self.spaces.insert(child, space);
        Ok(())
    }

    /// The first stop of a new task.
    fn on_first_stop(&mut self, tid: Tid, stop: Stop) -> Result<()> {
        if let Some(scrub) = self.tasks.get_mut(&tid).and_then(|t| t.scrub.take()) {
            return self.release_child(tid, stop, scrub);
        }
        match stop {
            // The usual first stop; anything else (a signal that raced in) is
            // handled as it would be later.
            Stop::Interrupt { .. } => self.resume(tid, 0),
            other => self.dispatch(other),
        }
    }

    /// Removes from a forked child (which will not be traced) everything it
    /// inherited from us, then lets it go.
    fn release_child(&mut self, tid: Tid, stop: Stop, scrub: Scrub) -> Result<()> {
        let sig = match stop {
            Stop::Signal { signal, .. } => signal,
            _ => 0,
        };
        let result = (|| -> Result<()> {
            let mem = crate::sys::mem::ProcMem::open(tid)?;
            for (addr, saved) in &scrub.sites {
                mem.write(*addr, saved)?;
            }
            if let Some(tramp) = scrub.trampoline {
                for (slot, orig) in &scrub.returns {
                    if mem.read_u64(*slot)? == tramp.get() {
                        mem.write_u64(*slot, orig.get())?;
                    }
                }
            }
            if let Some(scratch) = scrub.scratch {
                self.unmap_scratch(tid, scratch)?;
            }
            Ok(())
        })();
        let mut task = self.tasks.remove(&tid).expect("child registered");
        task.pending_signals.insert(0, sig);
        let sigs = task.pending_signals;
        match ptrace::detach(tid, sigs[0]) {
            Err(e) if !e.is_tracee_gone() => return Err(e),
            _ => {}
        }
        for &s in sigs.iter().skip(1).filter(|&&s| s != 0) {
            signal::tgkill(tid, tid, s);
        }
        match result {
            Err(e) if !e.is_tracee_gone() => Err(e),
            _ => Ok(()),
        }
    }

    /// A task exec'd: its process has a new image (and no other thread).
    fn on_exec(&mut self, tid: Tid, former: Tid) -> Result<()> {
        if former != tid {
            // A non-leader exec'd: it now has the leader's id.
            if let Some(t) = self.tasks.remove(&former) {
                self.tasks.insert(tid, t);
            }
        }
        let task = self.tasks.get_mut(&tid).expect("exec of a known task");
        task.returns.take_all();
        task.state = TaskState::Stopped;
        if task.silent {
            // A vfork child we kept only to protect its parent: its new image
            // carries nothing of ours.
            self.tasks.remove(&tid);
            return match ptrace::detach(tid, 0) {
                Err(e) if !e.is_tracee_gone() => Err(e),
                _ => Ok(()),
            };
        }
        let pid = task.pid;
        task.space = pid;
        // Other threads of the old image are gone.
        let stale: Vec<Tid> = self
            .tasks
            .iter()
            .filter(|(t, k)| k.pid == pid && **t != tid)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.tasks.remove(&t);
        }
        self.spaces.remove(&pid);
        self.prepare_space(pid, tid)?;
        let path = self.spaces[&pid].exe.clone();
        self.emit(Event::Exec { pid, path })?;
        self.report_attached_if_ready()?;
        self.resume(tid, 0)
    }

    /// The dynamic linker reported a change of the link map (a thread is stopped
    /// at `r_brk`). When the map is consistent, pick up new libraries, arm the
    /// probes waiting for them, and at the first one, finish startup.
    pub(super) fn on_rtld_event(&mut self, key: Pid) -> Result<()> {
        let cache = &mut self.cache;
        let space = self
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

    /// A thread died.
    fn on_death(&mut self, stop: Stop) -> Result<()> {
        let tid = stop.tid();
        self.orphans.remove(&tid);
        let Some(task) = self.tasks.remove(&tid) else {
            return Ok(());
        };
        if tid != task.pid {
            return Ok(()); // a thread; its process lives on
        }
        // The thread-group leader is reported last: the process is gone.
        if task.space == task.pid {
            self.spaces.remove(&task.pid);
        }
        if task.silent {
            return Ok(());
        }
        let event = match stop {
            Stop::Exited { code, .. } => {
                if task.pid == self.root {
                    self.outcome = Some(Outcome::Exited(code));
                }
                Event::Exited {
                    pid: task.pid,
                    code,
                }
            }
            Stop::Killed { signal, core, .. } => {
                if task.pid == self.root {
                    self.outcome = Some(Outcome::Killed {
                        signal,
                        core_dumped: core,
                    });
                }
                Event::Killed {
                    pid: task.pid,
                    signal,
                    core_dumped: core,
                }
            }
            _ => unreachable!("on_death takes deaths"),
        };
        self.emit(event)?;
        if task.pid == self.root && self.tasks.values().all(|t| t.pid == self.root) {
            // Only stale tasks of the root could be left (they die with it).
            self.tasks.retain(|_, t| t.pid != self.root);
        }
        Ok(())
    }

    /// Warns about probes that never armed (their library never loaded).
    pub(super) fn report_never_armed(&mut self) -> Result<()> {
        let never: Vec<String> = self
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
        let task = self.tasks.get(&tid)?;
        self.spaces.get(&task.space)?.trampoline()
    }
}

fn not_found(spec: &crate::ProbeSpec, searched: Vec<String>) -> Error {
    use crate::symbols::Target;
    let name = match &spec.target {
        Target::Function { name } => name.clone(),
        Target::Offset { function, .. } => function.clone(),
        Target::Address { addr } => format!("{addr:#x}"),
        Target::Line { file, line } => format!("{file}:{line}"),
    };
    Error::UnknownSymbol { name, searched }
}
