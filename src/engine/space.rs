//! One address space: its memory, modules, probe sites and scratch page.
//!
//! Everything rtrace writes into a tracee's memory is recorded here, so that it
//! can be undone: the breakpoints (each [`ProbeSite`] keeps the bytes it
//! replaced) and the scratch page (which holds the return trampoline).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;

use crate::addr::{Pid, RuntimeAddr};
use crate::arch::{self, BREAKPOINT, MAX_INSN_LEN};
use crate::error::Result;
use crate::handler::{ProbeId, Site};
use crate::probe::{ProbeSite, ProbeTable};
use crate::symbols::{self, ElfCache, ModuleMap};
use crate::sys::mem::ProcMem;

/// Size of the scratch page.
pub(crate) const SCRATCH_SIZE: u64 = 4096;

/// The dynamic linker's rendezvous: where it reports library loads (gdb's solib
/// event breakpoint).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rtld {
    /// `_dl_debug_state`, called at every change of the link map.
    pub r_brk: RuntimeAddr,
    /// `_r_debug`, whose `r_state` says whether the map is consistent.
    pub r_debug: Option<RuntimeAddr>,
    /// Hits so far.
    pub hits: u32,
}

/// `r_state` offset in `struct r_debug` (int r_version; link_map *r_map;
/// ElfW(Addr) r_brk; enum r_state …) on LP64.
pub(crate) const R_STATE_OFFSET: i64 = 24;
/// `RT_CONSISTENT`.
pub(crate) const RT_CONSISTENT: i32 = 0;

/// Where a probe stands in one address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Armed at these addresses.
    Armed(Vec<RuntimeAddr>),
    /// Its module is not loaded; it arms when a library load brings it.
    Pending,
}

/// One address space.
#[derive(Debug)]
pub(crate) struct Space {
    pub pid: Pid,
    pub mem: ProcMem,
    pub exe: PathBuf,
    pub modules: ModuleMap,
    pub sites: ProbeTable<ProbeSite>,
    /// Addresses whose breakpoint was removed: a thread that trapped there just
    /// before the removal is rewound, not handed a SIGTRAP.
    pub tombstones: HashSet<RuntimeAddr>,
    /// The scratch page, once mapped.
    pub scratch: Option<RuntimeAddr>,
    pub rtld: Option<Rtld>,
    /// True once the libraries loaded at startup are mapped: an unqualified
    /// name not found from then on is an error, not something to wait for.
    pub ready: bool,
    pub placed: HashMap<ProbeId, Placement>,
}

impl Space {
    /// Opens the address space of `pid` and maps its modules.
    pub fn open(pid: Pid, cache: &mut ElfCache) -> Result<Space> {
        let mem = ProcMem::open(pid)?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map_err(|e| crate::Error::io(format!("cannot read /proc/{pid}/exe"), e))?;
        let maps = symbols::maps::read(pid)?;
        let modules = ModuleMap::new(&maps, &exe, cache)?;
        Ok(Space {
            pid,
            mem,
            exe,
            modules,
            sites: ProbeTable::new(),
            tombstones: HashSet::new(),
            scratch: None,
            rtld: None,
            ready: false,
            placed: HashMap::new(),
        })
    }

    /// Re-reads the module map (after the dynamic linker reported a change).
    /// Sites in modules that are gone are forgotten without writing: their memory
    /// is unmapped.
    pub fn rescan(&mut self, cache: &mut ElfCache) -> Result<()> {
        let maps = symbols::maps::read(self.pid)?;
        self.modules = ModuleMap::new(&maps, &self.exe, cache)?;
        let gone: Vec<RuntimeAddr> = self
            .sites
            .iter()
            .filter(|(a, _)| self.modules.module_at(*a).is_none())
            .map(|(a, _)| a)
            .collect();
        for a in gone {
            if let Some(site) = self.sites.remove(a) {
                for p in &site.probes {
                    self.placed.remove(&p.id);
                }
            }
        }
        Ok(())
    }

    /// The return trampoline's address.
    pub fn trampoline(&self) -> Option<RuntimeAddr> {
        self.scratch
    }

    /// Plants a breakpoint at `addr` (or joins the one there) for `probe`, or for
    /// the dynamic linker hook when `probe` is None. The displaced instruction is
    /// analysed first; one that cannot be stepped is refused.
    pub fn arm(&mut self, addr: RuntimeAddr, probe: Option<Rc<Site>>) -> Result<()> {
        if let Some(site) = self.sites.get_mut(addr) {
            match probe {
                Some(p) => site.add(p),
                None => site.rtld = true,
            }
            return Ok(());
        }
        let code = self.read_code(addr)?;
        let plan = arch::analyze(&code, addr)?;
        let mut site = ProbeSite::new(addr, code[..BREAKPOINT.len()].to_vec(), plan);
        match probe {
            Some(p) => site.add(p),
            None => site.rtld = true,
        }
        self.mem.write(addr, &BREAKPOINT)?;
        self.sites.insert(addr, site);
        self.tombstones.remove(&addr);
        Ok(())
    }

    /// Up to MAX_INSN_LEN bytes at `addr`, fewer near the end of a mapping.
    fn read_code(&self, addr: RuntimeAddr) -> Result<Vec<u8>> {
        let mut len = MAX_INSN_LEN;
        loop {
            match self.mem.read_vec(addr, len) {
                Ok(v) => return Ok(v),
                Err(e) if len == 1 => return Err(e),
                Err(_) => len /= 2,
            }
        }
    }

    /// Removes `id` from every site; breakpoints nothing else needs are removed.
    pub fn disarm_probe(&mut self, id: ProbeId) -> Result<()> {
        let addrs = match self.placed.remove(&id) {
            Some(Placement::Armed(addrs)) => addrs,
            _ => return Ok(()),
        };
        for addr in addrs {
            let unused = match self.sites.get_mut(addr) {
                Some(site) => {
                    site.remove(id);
                    site.is_unused()
                }
                None => false,
            };
            if unused {
                self.remove_site(addr)?;
            }
        }
        Ok(())
    }

    /// Restores the original bytes at `addr` and forgets the site.
    pub fn remove_site(&mut self, addr: RuntimeAddr) -> Result<()> {
        if let Some(site) = self.sites.remove(addr) {
            self.tombstones.insert(addr);
            self.mem.write(addr, &site.saved)?;
        }
        Ok(())
    }

    /// Removes every breakpoint (detach). Tries them all, returns the first error.
    pub fn disarm_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        for (addr, site) in self.sites.drain() {
            self.tombstones.insert(addr);
            let r = self.mem.write(addr, &site.saved);
            if first.is_ok() {
                first = r;
            }
        }
        self.placed.clear();
        first
    }

    /// Sites with user probes (what "probes armed" counts).
    pub fn armed_sites(&self) -> usize {
        self.sites
            .iter()
            .filter(|(_, s)| !s.probes.is_empty())
            .count()
    }

    /// True when `ip` is a trap just past one of our breakpoints (armed, or removed
    /// since the thread trapped).
    pub fn is_our_trap(&self, site: RuntimeAddr) -> bool {
        self.sites.get(site).is_some() || self.tombstones.contains(&site)
    }

    /// The breakpoints and their saved bytes, for scrubbing a forked child.
    pub fn site_bytes(&self) -> Vec<(RuntimeAddr, Vec<u8>)> {
        self.sites
            .iter()
            .map(|(a, s)| (a, s.saved.clone()))
            .collect()
    }
}
