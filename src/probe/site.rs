//! One breakpoint and the probes behind it (the kernel's aggregate kprobe).

use std::rc::Rc;

use crate::addr::RuntimeAddr;
use crate::arch::InsnPlan;
use crate::handler::{ProbeId, Site};

/// A breakpoint in one address space, and everything that runs when it is hit.
#[derive(Debug, Clone)]
pub struct ProbeSite {
    /// Where the breakpoint is.
    pub addr: RuntimeAddr,
    /// The bytes the breakpoint replaced.
    pub saved: Vec<u8>,
    /// The bytes rtrace wrote over them last: the breakpoint, or a fast
    /// probe's jump. Undoing checks the address still holds them (or a
    /// breakpoint, which every site began as): code the program rewrote
    /// since is left as the program wrote it.
    pub written: Vec<u8>,
    /// How the displaced instruction executes.
    pub plan: Rc<InsnPlan>,
    /// Its out-of-line slot, when it is stepped out of line.
    pub slot: Option<RuntimeAddr>,
    /// The user probes here, in registration order.
    pub probes: Vec<Rc<Site>>,
    /// True when rtrace itself watches this address (the dynamic linker's
    /// `r_brk`, where it reports library loads).
    pub rtld: bool,
    /// True at the entry of an unwinder (`_Unwind_RaiseException`…): a thread
    /// that gets here moves its calls in flight off the trampoline.
    pub unwind: bool,
    /// True at the entry of a function that reads its own return address
    /// (`dlsym`, `dlopen`…: `symbols::resolve::reads_return_address`): a
    /// return probe here watches the return site instead of rewriting the
    /// return address, and a thread entering with the trampoline or the fast
    /// return stub in its return address slot (a tail call from a function
    /// whose return is watched) gets the real one back first.
    pub reads_return_address: bool,
    /// True when rtrace hooks this entry for that last reason alone
    /// (`symbols::resolve::CALLER_LOOKUPS`, while return probes are in use).
    pub caller_hook: bool,
    /// Calls in flight watched at this return site.
    pub ret_refs: u32,
    /// True at the resolver of an IFUNC that no GOT slot resolves yet: the
    /// dynamic linker calls it when it binds a lazy PLT slot, and its answer
    /// is where the probe goes.
    pub resolver: bool,
    /// Resolver calls in flight returning here.
    pub resolver_returns: u32,
    /// A return site of `_Unwind_Backtrace` where the calls parked for the
    /// unwinder get the fast return stub back (`arch::hook`).
    pub unpark: bool,
    /// A return site hooked for fast calls whose slot lost the stub
    /// (`arch::hook`'s `Returned`).
    pub returned: bool,
    /// Not written yet: a fast probe's site placed where it is to be
    /// patched before any thread can reach it (a library the dynamic linker
    /// is loading); `written` is `saved` meanwhile.
    pub deferred: bool,
    /// Patched with a jump to a detour (a fast probe): its index among the
    /// address space's fast sites. `saved` then holds every byte the jump
    /// replaced.
    pub fast: Option<u32>,
}

/// Who needs a breakpoint.
#[derive(Clone, Debug)]
pub enum Owner {
    /// A user probe.
    Probe(Rc<Site>),
    /// The dynamic linker hook.
    Rtld,
    /// An unwinder entry.
    Unwind,
    /// The entry of a function that finds its caller from its return address.
    CallerHook,
    /// A return site watched for a call in flight.
    ReturnSite,
    /// An IFUNC resolver whose answer a probe waits for.
    Resolver,
    /// Where a watched resolver call returns.
    ResolverReturn,
    /// A return site of `_Unwind_Backtrace`: a thread passing there gets
    /// its calls parked for the unwinder back on the fast return stub.
    Unpark,
    /// A return site where a fast call returns whose slot lost the stub
    /// (it tail-called a function that reads its own return address).
    Returned,
}

impl ProbeSite {
    /// A site with no probes yet, where `written` replaced `saved`.
    pub fn new(addr: RuntimeAddr, saved: Vec<u8>, written: Vec<u8>, plan: InsnPlan) -> Self {
        ProbeSite {
            addr,
            saved,
            written,
            plan: Rc::new(plan),
            slot: None,
            probes: Vec::new(),
            rtld: false,
            unwind: false,
            reads_return_address: false,
            caller_hook: false,
            ret_refs: 0,
            resolver: false,
            resolver_returns: 0,
            unpark: false,
            returned: false,
            deferred: false,
            fast: None,
        }
    }

    /// Adds an owner.
    pub fn own(&mut self, owner: Owner) {
        match owner {
            Owner::Probe(site) => self.add(site),
            Owner::Rtld => self.rtld = true,
            Owner::Unwind => self.unwind = true,
            Owner::CallerHook => {
                self.caller_hook = true;
                self.reads_return_address = true;
            }
            Owner::ReturnSite => self.ret_refs += 1,
            Owner::Resolver => self.resolver = true,
            Owner::ResolverReturn => self.resolver_returns += 1,
            Owner::Unpark => self.unpark = true,
            Owner::Returned => self.returned = true,
        }
    }

    /// Adds a probe, keeping registration (id) order.
    pub fn add(&mut self, site: Rc<Site>) {
        let at = self.probes.partition_point(|p| p.id <= site.id);
        self.probes.insert(at, site);
    }

    /// Removes every probe of `id`; true when one was there.
    pub fn remove(&mut self, id: ProbeId) -> bool {
        let before = self.probes.len();
        self.probes.retain(|p| p.id != id);
        before != self.probes.len()
    }

    /// True when nothing needs the breakpoint any more.
    pub fn is_unused(&self) -> bool {
        self.probes.is_empty()
            && !self.rtld
            && !self.unwind
            && !self.caller_hook
            && self.ret_refs == 0
            && !self.resolver
            && self.resolver_returns == 0
            && !self.unpark
            && !self.returned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::ProbeKind;

    fn site(id: usize) -> Rc<Site> {
        Rc::new(Site {
            probe: format!("p{id}"),
            id: ProbeId(id),
            kind: ProbeKind::Function { returns: true },
            symbol: "work".into(),
            name: "work".into(),
            offset: 0,
            module: "/bin/x".into(),
            address: RuntimeAddr(0x1000),
        })
    }

    #[test]
    fn probes_run_in_registration_order() {
        let plan = InsnPlan {
            len: 1,
            strategy: crate::arch::Strategy::InPlace,
        };
        let mut s = ProbeSite::new(RuntimeAddr(0x1000), vec![0x55], vec![0xcc], plan);
        s.add(site(3));
        s.add(site(1));
        s.add(site(2));
        let ids: Vec<_> = s.probes.iter().map(|p| p.id.0).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(s.remove(ProbeId(2)));
        assert!(!s.remove(ProbeId(2)));
        assert!(!s.is_unused());
        s.remove(ProbeId(1));
        s.remove(ProbeId(3));
        assert!(s.is_unused());
        s.rtld = true;
        assert!(!s.is_unused());
    }
}
