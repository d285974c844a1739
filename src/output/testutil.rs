//! Test scaffolding for the printers: a shared output buffer, a failing writer,
//! and the engine's side of a hit and a return, built by hand.
//!
//! Memory reads go to this test process's own memory, so a test can point an
//! argument at a real C string.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::CString;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

use crate::addr::{Pid, RuntimeAddr};
use crate::arch::Regs;
use crate::error::Result;
use crate::handler::{Handler, Hit, ProbeId, ProbeKind, Return, Site};
use crate::symbols::ModuleMap;
use crate::sys::mem::ProcMem;

/// A writer whose bytes the test can read back.
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(Rc<RefCell<Vec<u8>>>);

impl SharedBuf {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.bytes()).expect("utf-8 output")
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.0.borrow().clone()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer like a pipe whose reader has gone.
pub(crate) struct BrokenPipe;

impl Write for BrokenPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// The pid the fake hits report.
pub(crate) const PID: i32 = 4242;

/// A site of a probe.
pub(crate) fn site(probe: &str, symbol: &str, kind: ProbeKind, offset: u64) -> Site {
    Site {
        probe: probe.into(),
        id: ProbeId(0),
        kind,
        symbol: symbol.into(),
        name: symbol.into(),
        offset,
        module: "/usr/bin/count".into(),
        address: RuntimeAddr(0x55d0_c6a0_d139 + offset),
    }
}

/// A function probe with returns.
pub(crate) fn function(name: &str) -> Site {
    site(name, name, ProbeKind::Function { returns: true }, 0)
}

/// The engine's state for the fake tracee (this process).
pub(crate) struct Tracee {
    mem: ProcMem,
    modules: ModuleMap,
    /// C strings kept alive for arguments to point at.
    strings: Vec<CString>,
}

impl Tracee {
    pub(crate) fn new() -> Tracee {
        Tracee {
            mem: ProcMem::open(nix::unistd::getpid()).expect("own /proc/self/mem"),
            modules: ModuleMap::default(),
            strings: Vec::new(),
        }
    }

    /// A pointer to a NUL-terminated copy of `s` in this process.
    pub(crate) fn cstr(&mut self, s: &str) -> u64 {
        let c = CString::new(s).expect("no NUL");
        let p = c.as_ptr() as u64;
        self.strings.push(c);
        p
    }

    /// Runs `on_entry` (then `on_post`) as the engine would; returns the
    /// handler's data slot, for the return.
    pub(crate) fn enter(
        &self,
        h: &mut dyn Handler,
        site: &Site,
        tid: i32,
        at_us: u64,
        args: [u64; 6],
    ) -> Result<Option<Box<dyn Any>>> {
        let mut regs = regs();
        for (n, v) in args.into_iter().enumerate() {
            regs.set_arg(n, v);
        }
        let mut dirty = false;
        let mut data = None;
        let mut hit = Hit {
            pid: Pid::from_raw(PID),
            tid: Pid::from_raw(tid),
            site,
            regs: &mut regs,
            regs_dirty: &mut dirty,
            mem: crate::handler::Memory::Live(&self.mem),
            modules: &self.modules,
            time: Duration::from_micros(at_us),
            data: &mut data,
            returns: Default::default(),
            stack: Default::default(),
        };
        h.on_entry(&mut hit)?;
        h.on_post(&mut hit)?;
        Ok(data)
    }

    /// Runs `on_return` for a call entered at `entered_us`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn leave(
        &self,
        h: &mut dyn Handler,
        site: &Site,
        tid: i32,
        entered_us: u64,
        at_us: u64,
        rax: u64,
        data: Option<Box<dyn Any>>,
    ) -> Result<()> {
        let mut regs = regs();
        regs.set_retval(rax);
        let mut dirty = false;
        let mut ret = Return {
            pid: Pid::from_raw(PID),
            tid: Pid::from_raw(tid),
            site,
            regs: &mut regs,
            regs_dirty: &mut dirty,
            mem: crate::handler::Memory::Live(&self.mem),
            modules: &self.modules,
            time: Duration::from_micros(at_us),
            entered: Duration::from_micros(entered_us),
            data,
            errno: None,
        };
        h.on_return(&mut ret)
    }
}

fn regs() -> Regs {
    Regs::default()
}
