//! The plugin surface: [`Handler`], [`Hit`] and [`Return`].
//!
//! A handler is attached to a probe with `Tracer::add_probe`; the command-line
//! tool's printers are handlers like any other. The contract:
//!
//! - **Thread.** Every method runs on the tracer's thread, with the tracee thread
//!   that hit the probe stopped. Handlers must not block: the tracee waits.
//! - **Order.** At a probe site, `on_entry` of every probe on that address runs in
//!   registration order (the kprobe pre handlers); then the displaced instruction
//!   executes; then `on_post` of each probe, in the same order (the post handlers).
//!   For a function probe, `on_return` runs when the call returns, on the same thread.
//!   Lifecycle events (attach, fork, exec, signals, exit, detach) reach the
//!   listeners added with `Tracer::add_listener` through [`Handler::on_event`].
//! - **Writes.** `on_entry` may change registers through [`Hit::regs_mut`] (they
//!   are written back once, before the instruction executes); `on_return` may
//!   change the return value with [`Return::set_retval`].
//! - **Errors.** A handler that returns an error stops tracing: the tracer
//!   detaches cleanly (every breakpoint and return address restored) and
//!   `Tracer::run` returns the error. The tracee runs on.
//! - **Defaults.** Every method has a default that does nothing.

use std::any::Any;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::Regs;
use crate::error::Result;
use crate::symbols::{ModuleMap, Symbolized};
use crate::sys::mem::ProcMem;

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
    /// The function containing the address.
    pub symbol: String,
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
    /// A probe never armed (its module never loaded).
    NeverArmed {
        /// The probe spec.
        probe: String,
    },
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

/// Probe logic. See the module docs for the contract.
pub trait Handler {
    /// Before the probed instruction executes (kprobe pre handler).
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let _ = hit;
        Ok(())
    }
    /// After the probed instruction executed (kprobe post handler).
    fn on_post(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let _ = hit;
        Ok(())
    }
    /// When a probed function returns (kretprobe handler).
    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        let _ = ret;
        Ok(())
    }
    /// A lifecycle event (for listeners).
    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        let _ = (event, time);
        Ok(())
    }
    /// The tracer is about to block until the tracee does something (listeners
    /// only): flush buffered output here so a person watching sees it now.
    fn on_idle(&mut self) -> Result<()> {
        Ok(())
    }
    /// Tracing is over (the tracee exited, or rtrace detached): flush, summarise.
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
    fn on_finish(&mut self) -> Result<()> {
        self.borrow_mut().on_finish()
    }
}

/// What a handler sees of a tracee stopped at a probe.
pub struct Hit<'a> {
    pub(crate) pid: Pid,
    pub(crate) tid: Tid,
    pub(crate) site: &'a Site,
    pub(crate) regs: &'a mut Regs,
    pub(crate) regs_dirty: &'a mut bool,
    pub(crate) mem: &'a ProcMem,
    pub(crate) modules: &'a ModuleMap,
    pub(crate) time: Duration,
    pub(crate) data: &'a mut Option<Box<dyn Any>>,
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
    /// The thread's registers, for writing (written back before it resumes).
    pub fn regs_mut(&mut self) -> &mut Regs {
        *self.regs_dirty = true;
        self.regs
    }
    /// SysV integer argument `n` (0..6) at a function's entry.
    pub fn arg(&self, n: usize) -> Option<u64> {
        self.regs.arg(n)
    }
    /// Reads `len` bytes of tracee memory.
    pub fn read_bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        self.mem.read_vec(RuntimeAddr(addr), len)
    }
    /// Reads a u64 of tracee memory.
    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        self.mem.read_u64(RuntimeAddr(addr))
    }
    /// Reads a C string of at most `max` bytes; the flag is false when it was cut.
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<(Vec<u8>, bool)> {
        self.mem.read_cstr(RuntimeAddr(addr), max)
    }
    /// Names an address by function and module.
    pub fn symbolize(&self, addr: u64) -> Option<Symbolized<'_>> {
        self.modules.symbolize(RuntimeAddr(addr))
    }
    /// The module mapping the probe.
    pub fn module_path(&self) -> &Path {
        &self.site.module
    }
    /// Keeps `data` with this call; [`Return::data`] gives it back at return.
    /// Each probe's handler has its own slot.
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
    pub(crate) mem: &'a ProcMem,
    pub(crate) time: Duration,
    pub(crate) entered: Duration,
    pub(crate) data: Option<Box<dyn Any>>,
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
    /// Changes the value the caller will see.
    pub fn set_retval(&mut self, v: i64) {
        *self.regs_dirty = true;
        self.regs.set_retval(v as u64);
    }
    /// The thread's registers at the return.
    pub fn regs(&self) -> &Regs {
        self.regs
    }
    /// Reads `len` bytes of tracee memory.
    pub fn read_bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        self.mem.read_vec(RuntimeAddr(addr), len)
    }
    /// Reads a C string of at most `max` bytes; the flag is false when it was cut.
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<(Vec<u8>, bool)> {
        self.mem.read_cstr(RuntimeAddr(addr), max)
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
