//! Which sites can be fast: a site's owners and handlers judged
//! (`Tracer::plan_fast`), the bytes a jump would replace checked against
//! the function and the module (`Tracer::plan_bytes`), the reasons a site
//! stays an int3, and the attach line that groups them
//! (`Tracer::report_modes`).

use std::rc::Rc;

use crate::addr::{Pid, RuntimeAddr};
use crate::arch::detour::{self, ring, CaptureKind, Patch, PatchRefusal};
use crate::engine::space::Placement;
use crate::engine::Tracer;
use crate::error::Result;
use crate::handler::{Capture, Event, Fast, ProbeId, ProbeKind};
use crate::handler::{Site, SkipReason};

/// The largest record (captures included) a fast site may need.
pub(super) const MAX_RECORD: u64 = 4096;

/// A site judged patchable, with what its detour must capture.
pub(super) struct Planned {
    pub(super) addr: RuntimeAddr,
    pub(super) patch: Patch,
    pub(super) kinds: Vec<CaptureKind>,
    pub(super) probes: Vec<Rc<Site>>,
    /// The detour swaps the return address for the stub.
    pub(super) returns: bool,
    /// The most bytes of the returned C string its return record copies.
    pub(super) ret_string: u32,
}

/// Why a site stays an int3 breakpoint under `--fast`. `Display` says it
/// for one site (the attach line of a probe with one site, the JSON
/// `reasons`); [`general`](Self::general) says it without what differs from
/// one site to the next, so that a glob's many sites are grouped by what
/// refused them, not by the instruction or address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The process went away while the site was judged.
    ProcessGone,
    /// The site went away while it was judged.
    SiteGone,
    /// The function reads its own return address (`dlsym`, `dlopen`…:
    /// `symbols::resolve::reads_return_address`): its returns are watched
    /// at their return sites, and it is hooked for tail calls into it (see
    /// `Tracer::own_return_address_back`). The detour would swap the return
    /// address for the return stub, which lies in no module.
    ReadsReturnAddress,
    /// rtrace keeps a breakpoint of its own there.
    OwnBreakpoint,
    /// The program's unwinder was not found: returns are watched at their
    /// return sites.
    UnknownUnwinder,
    /// No return stub could be made (why).
    NoStub(String),
    /// A handler of a probe there said no (its reason).
    Handler(String),
    /// The returned string does not fit a record.
    ReturnStringTooLong,
    /// The captures do not fit a record.
    CapturesTooLong,
    /// No module maps the address.
    NoModule,
    /// No symbol covers the address.
    NoSymbol,
    /// The function's size is unknown.
    SizeUnknown,
    /// The function is too large to scan.
    FunctionTooLarge,
    /// Past a function's entry, landing pads are not checked.
    LandingPads,
    /// The code could not be read (the error).
    CodeUnreadable(String),
    /// The bytes cannot take a jump ([`detour::plan_patch`]).
    Patch(PatchRefusal),
    /// Code elsewhere in the module (at `at`, in `whose`: function and
    /// offset) jumps to `to`, inside the bytes a jump would replace.
    CodeRefInto {
        at: u64,
        whose: Option<(String, u64)>,
        to: u64,
    },
    /// Another function begins inside the bytes.
    FunctionBeginsInside,
    /// Another breakpoint is inside the bytes.
    BreakpointInside,
    /// Another fast probe's jump overlaps the bytes.
    JumpOverlaps,
    /// The ring was written over (what was found).
    RingCorrupt(String),
    /// No code may be injected into the process (why: its seccomp mode).
    NoInjection(String),
    /// No ring could be made (why).
    NoRing(String),
    /// The detour or the jump could not be written (why).
    Failed(String),
    /// A task shares the memory and the thread pointer (CLONE_VM without
    /// TLS of its own): records could not be told apart.
    Suspended,
    /// A forked child could not get a ring of its own.
    ChildWithoutRing,
    /// The jump was written after this child was forked.
    PatchedAfterFork,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ProcessGone => f.write_str("the process is gone"),
            Refusal::SiteGone => f.write_str("the site is gone"),
            Refusal::ReadsReturnAddress => f.write_str(
                "the function reads its own return address: its returns are watched at their \
                 return sites, by int3",
            ),
            Refusal::OwnBreakpoint => {
                f.write_str("rtrace watches this address with a breakpoint of its own")
            }
            Refusal::UnknownUnwinder => f.write_str(
                "the program's unwinder could not be found: returns are watched at their \
                 return sites, by int3",
            ),
            Refusal::NoStub(why) => write!(f, "no return stub: {why}"),
            Refusal::Handler(why) => f.write_str(why),
            Refusal::ReturnStringTooLong => write!(
                f,
                "the string its return value points to does not fit a fast record \
                 ({MAX_RECORD} bytes)"
            ),
            Refusal::CapturesTooLong => write!(
                f,
                "what its handlers capture does not fit a fast record ({MAX_RECORD} bytes)"
            ),
            Refusal::NoModule => f.write_str("no module maps the address"),
            Refusal::NoSymbol => f.write_str("no symbol covers the address"),
            Refusal::SizeUnknown => f.write_str("the size of its function is unknown"),
            Refusal::FunctionTooLarge => f.write_str("its function is too large to scan"),
            Refusal::LandingPads => {
                f.write_str("exception landing pads inside the function are not checked")
            }
            Refusal::CodeUnreadable(e) => write!(f, "its code cannot be read ({e})"),
            Refusal::Patch(why) => write!(f, "{why}"),
            Refusal::CodeRefInto { at, whose, to } => {
                write!(f, "code at {at:#x}")?;
                if let Some((name, off)) = whose {
                    write!(f, " ({name}+{off:#x})")?;
                }
                write!(
                    f,
                    " jumps to {to:#x}, inside the bytes a jump would replace"
                )
            }
            Refusal::FunctionBeginsInside => {
                f.write_str("another function begins inside the bytes a jump would replace")
            }
            Refusal::BreakpointInside => {
                f.write_str("another breakpoint is in the bytes a jump would replace")
            }
            Refusal::JumpOverlaps => f.write_str("another fast probe's jump overlaps the bytes"),
            Refusal::RingCorrupt(why) => write!(f, "the fast probes' ring is corrupt ({why})"),
            Refusal::NoInjection(why) => f.write_str(why),
            Refusal::NoRing(why) => write!(f, "no ring: {why}"),
            Refusal::Failed(why) => f.write_str(why),
            Refusal::Suspended => f.write_str(
                "a process sharing the memory runs on the same thread pointer (clone with \
                 CLONE_VM and no TLS of its own)",
            ),
            Refusal::ChildWithoutRing => f.write_str("the child could not get a ring of its own"),
            Refusal::PatchedAfterFork => f.write_str("patched after this child was forked"),
        }
    }
}

impl From<PatchRefusal> for Refusal {
    fn from(why: PatchRefusal) -> Refusal {
        Refusal::Patch(why)
    }
}

impl Refusal {
    /// The reason as the sites of a glob are grouped by it: without the
    /// instruction (`'…'`), the addresses (`…`) and the function and offset
    /// of the code that jumps in. Text rtrace does not compose itself (a
    /// system error, a handler's reason, what a corrupt ring held, a
    /// function's name) may hold such things too: it goes through
    /// [`elide`].
    pub fn general(&self) -> String {
        match self {
            Refusal::ProcessGone
            | Refusal::SiteGone
            | Refusal::ReadsReturnAddress
            | Refusal::OwnBreakpoint
            | Refusal::UnknownUnwinder
            | Refusal::ReturnStringTooLong
            | Refusal::CapturesTooLong
            | Refusal::NoModule
            | Refusal::NoSymbol
            | Refusal::SizeUnknown
            | Refusal::FunctionTooLarge
            | Refusal::LandingPads
            | Refusal::FunctionBeginsInside
            | Refusal::BreakpointInside
            | Refusal::JumpOverlaps
            | Refusal::Suspended
            | Refusal::ChildWithoutRing
            | Refusal::PatchedAfterFork => self.to_string(),
            Refusal::Patch(why) => why.general(),
            Refusal::CodeRefInto { whose, .. } => {
                let whose = whose
                    .as_ref()
                    .map(|(name, off)| elide(&format!(" ({name}+{off:#x})")))
                    .unwrap_or_default();
                format!("code at …{whose} jumps to …, inside the bytes a jump would replace")
            }
            Refusal::NoStub(_)
            | Refusal::Handler(_)
            | Refusal::CodeUnreadable(_)
            | Refusal::RingCorrupt(_)
            | Refusal::NoInjection(_)
            | Refusal::NoRing(_)
            | Refusal::Failed(_) => elide(&self.to_string()),
        }
    }
}

/// Text rtrace did not compose (an error's, a handler's, a name) without
/// what may differ from one site to the next: a quoted part becomes `'…'`,
/// a hexadecimal number `…`, and a parenthesized `function+offset` goes.
fn elide(why: &str) -> String {
    let mut out = String::with_capacity(why.len());
    let mut rest = why;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            if let Some(end) = rest[1..].find('\'') {
                out.push_str("'…'");
                rest = &rest[end + 2..];
                continue;
            }
        }
        if rest.starts_with("0x") {
            let hex = rest[2..]
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(rest.len() - 2);
            out.push('…');
            rest = &rest[2 + hex..];
            continue;
        }
        if rest.starts_with(" (") && !rest.starts_with(" ('") {
            if let Some(end) = rest.find(')') {
                if rest[..end].contains('+') {
                    rest = &rest[end + 1..];
                    continue;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl Tracer {
    /// Judges the site at `addr` of space `key`: the reason it cannot be
    /// fast, or what to patch and capture.
    pub(super) fn plan_fast(
        &mut self,
        key: Pid,
        addr: RuntimeAddr,
    ) -> std::result::Result<Planned, Refusal> {
        let Tracer { spaces, probes, .. } = self;
        let space = spaces.get(&key).ok_or(Refusal::ProcessGone)?;
        let site = space.sites.get(addr).ok_or(Refusal::SiteGone)?;
        if site.caller_hook {
            return Err(Refusal::ReadsReturnAddress);
        }
        if site.rtld
            || site.unwind
            || site.ret_refs > 0
            || site.resolver
            || site.resolver_returns > 0
        {
            return Err(Refusal::OwnBreakpoint);
        }
        let module = space.modules.module_at(addr);
        let mut capture = Capture::default();
        let mut returns = false;
        for s in &site.probes {
            if s.kind == (ProbeKind::Function { returns: true }) {
                if space.unknown_unwinder {
                    return Err(Refusal::UnknownUnwinder);
                }
                if site.reads_return_address {
                    return Err(Refusal::ReadsReturnAddress);
                }
                if let Some(why) = &space.fast.stub_failed {
                    return Err(Refusal::NoStub(why.clone()));
                }
                returns = true;
            }
            let Some(probe) = probes.get_mut(s.id.0).and_then(Option::as_mut) else {
                continue;
            };
            match probe.handler.fast(s, module) {
                Fast::Yes(c) => capture.merge(&c),
                Fast::No(why) => return Err(Refusal::Handler(why)),
            }
        }
        let probes_here = site.probes.clone();
        let patch = self.plan_bytes(key, addr, false)?;
        let mut kinds: Vec<CaptureKind> = capture
            .strings
            .iter()
            .map(|&(reg, max)| CaptureKind::CStr {
                reg,
                max: u32::try_from(max).unwrap_or(u32::MAX),
            })
            .collect();
        if capture.stack > 0 {
            kinds.push(CaptureKind::Stack {
                len: u32::try_from(capture.stack).unwrap_or(u32::MAX),
            });
        }
        if returns && ring::CAPTURES + 8 + capture.ret_string as u64 > MAX_RECORD {
            return Err(Refusal::ReturnStringTooLong);
        }
        if detour::layout_captures(&kinds).1 > MAX_RECORD {
            return Err(Refusal::CapturesTooLong);
        }
        Ok(Planned {
            addr,
            patch,
            kinds,
            probes: probes_here,
            returns,
            ret_string: match returns {
                true => u32::try_from(capture.ret_string).unwrap_or(u32::MAX),
                false => 0,
            },
        })
    }

    /// The patch a jump at `addr` of space `key` would make: the displaced
    /// instructions judged by [`detour::plan_patch`], with the whole
    /// function and module scanned for branches into the replaced bytes
    /// and the other sites checked, or why there is none.
    pub(in crate::engine) fn plan_bytes(
        &self,
        key: Pid,
        addr: RuntimeAddr,
        hook: bool,
    ) -> std::result::Result<Patch, Refusal> {
        let space = self.spaces.get(&key).ok_or(Refusal::ProcessGone)?;
        let module = space.modules.module_at(addr);
        let m = module.ok_or(Refusal::NoModule)?;
        let (sym, offset) = m
            .elf
            .function_at(m.to_link(addr))
            .ok_or(Refusal::NoSymbol)?;
        if sym.size == 0 {
            return Err(Refusal::SizeUnknown);
        }
        if sym.size > 1 << 20 {
            return Err(Refusal::FunctionTooLarge);
        }
        // Landing pads (where an unwinder jumps, in the function's LSDA) are
        // not checked: a function with one is refused, past its entry.
        if offset > 0
            && m.elf.has_exception_tables()
            && m.elf.has_landing_pads(m.to_link(addr)) != Some(false)
        {
            return Err(Refusal::LandingPads);
        }
        let start = addr.offset(-(offset as i64));
        let end = start.offset(sym.size as i64);
        let mut bytes = space
            .mem
            .read_vec(start, sym.size as usize)
            .map_err(|e| Refusal::CodeUnreadable(e.to_string()))?;
        // The original bytes, under our breakpoints and jumps.
        for (a, s) in space.sites.iter() {
            if a >= start && a < end {
                let at = (a.get() - start.get()) as usize;
                let n = s.saved.len().min(bytes.len() - at);
                bytes[at..at + n].copy_from_slice(&s.saved[..n]);
            }
        }
        let patch = match hook {
            false => detour::plan_patch(&bytes, start.get(), addr.get())?,
            true => {
                // What follows the function up to the next one (at most a
                // jump's length is needed).
                let next = m
                    .elf
                    .functions()
                    .iter()
                    .map(|f| f.addr)
                    .filter(|a| *a >= m.to_link(end))
                    .min()
                    .map_or(0, |a| (a.get() - m.to_link(end).get()).min(16));
                let padding = space.mem.read_vec(end, next as usize).unwrap_or_default();
                detour::plan_hook_patch(&bytes, &padding, start.get(), addr.get())?
            }
        };
        let replaced = addr.get()..addr.get() + patch.len as u64;
        // Code elsewhere in the module (another function) may jump in too.
        let inside = m.to_link(addr.offset(1))..m.to_link(addr.offset(patch.len as i64));
        if let Some((at, to)) = m.elf.code_ref_into(inside.start, inside.end) {
            let whose = m
                .elf
                .function_at(at)
                .map(|(s, off)| (m.elf.shown_name(s).to_string(), off));
            return Err(Refusal::CodeRefInto {
                at: m.to_runtime(at).get(),
                whose,
                to: m.to_runtime(to).get(),
            });
        }
        // Nor may another function begin there.
        let starts = m
            .elf
            .functions()
            .iter()
            .any(|f| f.addr > inside.start.offset(-1) && f.addr < inside.end);
        if starts {
            return Err(Refusal::FunctionBeginsInside);
        }
        if space
            .sites
            .iter()
            .any(|(a, _)| a != addr && replaced.contains(&a.get()))
        {
            return Err(Refusal::BreakpointInside);
        }
        let overlaps = space.fast.sites.iter().any(|f| {
            f.live && f.addr.get() < replaced.end && replaced.start < f.addr.get() + f.len as u64
        });
        if overlaps {
            return Err(Refusal::JumpOverlaps);
        }
        Ok(patch)
    }

    /// Tells the listeners how the sites of each probe armed in the traced
    /// process run, once per probe.
    pub(in crate::engine) fn report_modes(&mut self) -> Result<()> {
        if !self.opts.fast {
            return Ok(());
        }
        let Some(space) = self.spaces.get(&self.root) else {
            return Ok(());
        };
        let mut events = Vec::new();
        for (i, p) in self.probes.iter().enumerate() {
            let id = ProbeId(i);
            let Some(p) = p else {
                continue;
            };
            if self.modes_reported.contains(&id) {
                continue;
            }
            let Some(Placement::Armed(addrs)) = space.placed.get(&id) else {
                continue;
            };
            if addrs.is_empty() {
                continue;
            }
            let mut fast = 0;
            let mut int3 = Vec::new();
            for &a in addrs {
                match space.fast.refused.get(&a) {
                    Some(why) => {
                        let symbol = space
                            .sites
                            .get(a)
                            .and_then(|s| s.probes.first().map(|p| p.symbol.clone()))
                            .unwrap_or_else(|| a.to_string());
                        // A glob's many sites are grouped by what refused
                        // them, not by the instruction or address.
                        let why = match addrs.len() {
                            1 => why.to_string(),
                            _ => why.general(),
                        };
                        SkipReason::add(&mut int3, &why, &symbol);
                    }
                    None => fast += 1,
                }
            }
            events.push((
                id,
                Event::ProbeMode {
                    probe: p.spec.as_str().to_string(),
                    fast,
                    int3,
                },
            ));
        }
        for (id, e) in events {
            self.modes_reported.insert(id);
            self.emit(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reason says the same for one site as its text did, and the
    /// same for a glob's many sites as that text had its instruction,
    /// addresses and `function+offset` taken out.
    fn says(why: Refusal, one: &str, many: &str) {
        assert_eq!(why.to_string(), one);
        assert_eq!(why.general(), many);
        assert_eq!(elide(one), many, "as the text was grouped");
    }

    #[test]
    fn reasons_of_many_sites_are_grouped_by_what_refused_them() {
        says(
            Refusal::Patch(PatchRefusal::IndirectJump {
                insn: "jmp rax".into(),
                at: 0x7ff98328a7b4,
            }),
            "the function jumps indirectly ('jmp rax' at 0x7ff98328a7b4): a jump \
             table could land inside the bytes a jump would replace",
            "the function jumps indirectly ('…' at …): a jump table could land inside \
             the bytes a jump would replace",
        );
        says(
            Refusal::Patch(PatchRefusal::Displaced {
                insn: "call 00007F2710DC8690h".into(),
                why: "is a call (its return address would point into the detour)",
            }),
            "'call 00007F2710DC8690h' is a call (its return address would point into the detour)",
            "'…' is a call (its return address would point into the detour)",
        );
        says(
            Refusal::CodeRefInto {
                at: 0x7fdc4327c7c6,
                whose: Some(("__mempcpy_avx512_unaligned_erms".into(), 6)),
                to: 0x7fdc4327c803,
            },
            "code at 0x7fdc4327c7c6 (__mempcpy_avx512_unaligned_erms+0x6) jumps to \
             0x7fdc4327c803, inside the bytes a jump would replace",
            "code at … jumps to …, inside the bytes a jump would replace",
        );
        for why in [
            PatchRefusal::JumpsInto {
                insn: "jne 0000000000401137h".into(),
                at: 0x40114a,
            },
            PatchRefusal::TakesAddress {
                insn: "lea rax,[401137h]".into(),
                at: 0x401130,
            },
            PatchRefusal::UndecodableAt { at: 0x401140 },
            PatchRefusal::TooShort { have: 3 },
            PatchRefusal::OutsideFunction,
        ] {
            let one = why.to_string();
            says(Refusal::Patch(why), &one, &elide(&one));
        }
        says(
            Refusal::NoRing("it failed".into()),
            "no ring: it failed",
            "no ring: it failed",
        );
    }
}
