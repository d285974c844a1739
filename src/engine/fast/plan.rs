//! Which sites can be fast: a site's owners and handlers judged
//! (`Tracer::plan_fast`), the bytes a jump would replace checked against
//! the function and the module (`Tracer::plan_bytes`), the reasons a site
//! stays an int3, and the attach line that groups them
//! (`Tracer::report_modes`).

use std::rc::Rc;

use crate::addr::{Pid, RuntimeAddr};
use crate::arch::detour::{self, ring, CaptureKind, Patch};
use crate::arch::RegSet;
use crate::engine::space::{Placement, Space};
use crate::symbols::Module;
use std::time::Instant;

use crate::engine::tracer::{Consumers, Tracer, World};

use super::refusal::{Refusal, MAX_RECORD};
use crate::error::Result;
use crate::handler::{Capture, Event, Fast, ProbeId, ProbeKind};
use crate::handler::{Site, SiteMode, SkipReason};

/// A site judged patchable, with what its detour must capture.
pub(super) struct Planned {
    pub(super) addr: RuntimeAddr,
    pub(super) patch: Patch,
    pub(super) kinds: Vec<CaptureKind>,
    /// The registers its records carry: what its handlers asked for, and
    /// the strings' registers.
    pub(super) regs: RegSet,
    pub(super) probes: Vec<Rc<Site>>,
    /// The detour swaps the return address for the stub.
    pub(super) returns: bool,
    /// The most bytes of the returned C string its return record copies
    /// (or of the filled buffer, with `ret_buffer`).
    pub(super) ret_string: u32,
    /// The register that points at the entry to the buffer the call fills,
    /// which its return record copies (see `Capture::ret_buffer`).
    pub(super) ret_buffer: Option<crate::arch::Gpr>,
    /// Every handler of the site only counts (`Fast::Aggregate`) and no
    /// probe there watches returns: the detour counts its hits and
    /// records nothing.
    pub(super) count_only: bool,
    /// Every handler of the site only aggregates and every probe there
    /// watches returns: the calls may be timed in the program (the detour
    /// and the stub record nothing).
    pub(super) timed: bool,
    /// A handler reads errno at the return (`Returns::Record`'s `errno`, a
    /// libc function's): the stub copies it into the return record.
    pub(super) errno: bool,
}

impl Tracer {
    /// Judges the site at `addr` of space `key`: the reason it cannot be
    /// fast, or what to patch and capture.
    pub(super) fn plan_fast(
        &mut self,
        key: Pid,
        addr: RuntimeAddr,
    ) -> std::result::Result<Planned, Refusal> {
        let (spaces, probes) = (&self.world.spaces, &mut self.consumers.probes);
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
        // What the handlers ask for, and nothing more.
        let mut capture = Capture::nothing();
        let mut returns = false;
        let mut count_only = true;
        let mut errno = false;
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
                Fast::Yes(c) => {
                    capture.merge(&c);
                    count_only = false;
                    // errno copied unless the handler says it reads none
                    // (one that would stop an int3 call's return, to read
                    // a filled buffer say, may read it too).
                    if s.kind == (ProbeKind::Function { returns: true }) {
                        errno |= !matches!(
                            probe.handler.returns(s, module),
                            crate::handler::Returns::Record { errno: false, .. }
                        );
                    }
                }
                Fast::Aggregate => {}
                Fast::No(why) => return Err(Refusal::Handler(why)),
            }
        }
        let aggregate = count_only && !site.probes.is_empty();
        let count_only = aggregate && !returns;
        let timed = aggregate
            && site
                .probes
                .iter()
                .all(|s| s.kind == ProbeKind::Function { returns: true });
        let probes_here = site.probes.clone();
        let patch = self.plan_bytes(key, addr, false)?;
        if let Some(space) = self.world.spaces.get_mut(&key) {
            // What this batch will write: no fill may be chosen in these
            // bytes, nor a jump run over a fill chosen.
            let planned = &mut space.fast.planned;
            planned.push(addr.get()..addr.get() + patch.span() as u64);
            if let Some(fill) = &patch.fill {
                planned.push(fill.at..fill.at + fill.saved.len() as u64);
            }
        }
        let mut kinds: Vec<CaptureKind> = capture
            .strings
            .iter()
            .map(|&(reg, max)| CaptureKind::CStr {
                reg,
                max: u32::try_from(max).unwrap_or(u32::MAX),
            })
            .collect();
        let bytes = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        if capture.stack > 0 {
            kinds.push(CaptureKind::Stack {
                len: bytes(capture.stack),
            });
        }
        for &(offset, max) in &capture.stack_strings {
            kinds.push(CaptureKind::StackStr {
                offset: bytes(offset),
                max: bytes(max),
            });
        }
        for &(reg, len, max) in &capture.buffers {
            kinds.push(CaptureKind::Bytes {
                reg,
                len,
                max: bytes(max),
            });
        }
        let ret_buffer = capture.ret_buffer.filter(|_| returns);
        let regs = capture
            .strings
            .iter()
            .map(|&(reg, _)| reg)
            .chain(capture.buffers.iter().flat_map(|&(p, l, _)| [p, l]))
            .chain(ret_buffer.map(|(reg, _)| reg))
            .fold(capture.registers, |set, reg| set.with(reg));
        // (The limit's top bit marks a buffer in the stub's table.)
        let ret_max = match ret_buffer {
            Some((_, max)) => max.min(detour::table::BUFFER as usize - 1),
            None => capture.ret_string,
        };
        if returns && ring::RET_STRING + 8 + ret_max as u64 > MAX_RECORD {
            return Err(Refusal::ReturnStringTooLong);
        }
        if detour::layout_captures(&kinds, regs).1 > MAX_RECORD {
            return Err(Refusal::CapturesTooLong);
        }
        Ok(Planned {
            addr,
            patch,
            kinds,
            regs,
            probes: probes_here,
            returns,
            ret_string: match returns {
                true => bytes(ret_max),
                false => 0,
            },
            ret_buffer: ret_buffer.map(|(reg, _)| reg),
            count_only,
            timed,
            errno: returns && errno,
        })
    }

    /// The patch a jump at `addr` of space `key` would make: the displaced
    /// instructions judged by [`detour::plan_patch`], with the whole
    /// function and module scanned for branches into the replaced bytes
    /// and the other sites checked, or why there is none.
    pub(super) fn plan_bytes(
        &self,
        key: Pid,
        addr: RuntimeAddr,
        hook: bool,
    ) -> std::result::Result<Patch, Refusal> {
        let space = self.world.spaces.get(&key).ok_or(Refusal::ProcessGone)?;
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
            false => {
                let after = fill_after(space, m, end);
                // A pun keeps the bytes after the first instruction, even the
                // next function's (a breakpoint or jump there refuses it).
                let raw = space.mem.read_vec(end, detour::JMP_LEN).unwrap_or_default();
                let pun = |why: detour::PatchRefusal, refusal: Refusal| {
                    let mut p = detour::plan_pun(&bytes, &raw, start.get(), addr.get())
                        .map_err(|_| refusal)?;
                    p.near_refusal = Some(why);
                    p.evict = evictable(space, m, &bytes, start, &p);
                    Ok::<_, Refusal>(p)
                };
                match detour::plan_site(&bytes, &after, start.get(), addr.get()) {
                    Ok(mut p) if p.hop => {
                        p.fill = fill_for(space, m, &p);
                        match p.fill {
                            Some(_) => p,
                            None => {
                                let why = p
                                    .near_refusal
                                    .clone()
                                    .unwrap_or(detour::PatchRefusal::TooShort { have: p.len });
                                pun(why.clone(), Refusal::NoFill(why))?
                            }
                        }
                    }
                    Ok(p) => p,
                    Err(why) if why.hop_may_help() => pun(why.clone(), Refusal::Patch(why))?,
                    Err(why) => return Err(why.into()),
                }
            }
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
        // Bytes written past the function's end must be fill: no function's
        // call frame information covers them (a pun writes the next bytes
        // as they are).
        let written_end = addr.get() + patch.len as u64;
        if patch.pun_free == 0 && written_end > end.get() {
            let over = written_end - end.get();
            if in_any_function(m, m.to_link(end).get(), over) {
                return Err(Refusal::Patch(detour::PatchRefusal::TooShort {
                    have: (end.get() - addr.get()) as usize,
                }));
            }
        }
        let why = match check_module(space, m, addr, &patch) {
            Ok(()) => return Ok(patch),
            Err(why) => why,
        };
        // Code elsewhere jumps into the bytes, or they hold something of
        // rtrace's: a hop or a pun replaces only the first instruction.
        if hook || patch.hop || patch.pun_free > 0 {
            return Err(why);
        }
        let after = fill_after(space, m, end);
        if let Ok(mut hop) = detour::plan_hop(&bytes, &after, start.get(), addr.get()) {
            hop.fill = fill_for(space, m, &hop);
            if hop.fill.is_some() && check_module(space, m, addr, &hop).is_ok() {
                return Ok(hop);
            }
        }
        let raw = space.mem.read_vec(end, detour::JMP_LEN).unwrap_or_default();
        match detour::plan_pun(&bytes, &raw, start.get(), addr.get()) {
            Ok(mut pun) if check_module(space, m, addr, &pun).is_ok() => {
                pun.evict = evictable(space, m, &bytes, start, &pun);
                Ok(pun)
            }
            _ => Err(why),
        }
    }
}

/// The eviction pun `pun` (of the function `bytes` at `start`, module `m`)
/// may fall back on: [`detour::plan_evict`], with the successor's bytes
/// checked against the module's code and what rtrace has there as the
/// site's are ([`check_module`]).
fn evictable(
    space: &Space,
    m: &Module,
    bytes: &[u8],
    start: RuntimeAddr,
    pun: &detour::Patch,
) -> Option<detour::Evict> {
    let e = detour::plan_evict(bytes, start.get(), pun).ok()?;
    let at = RuntimeAddr(e.addr());
    // (A breakpoint at the successor itself is inside too.)
    if space.sites.get(at).is_some() {
        return None;
    }
    check_bytes(space, m, at, e.len(), e.len()).ok()?;
    Some(e)
}

/// Refuses `patch` (at `addr`, in module `m`) when code elsewhere in the
/// module branches or refers strictly inside the bytes it replaces, another
/// function begins there, or another breakpoint or jump is there.
fn check_module(
    space: &Space,
    m: &Module,
    addr: RuntimeAddr,
    patch: &detour::Patch,
) -> std::result::Result<(), Refusal> {
    // Code elsewhere in the module (another function) may jump in too,
    // but not into the bytes a pun writes as they were.
    let moved = match patch.pun_free {
        0 => patch.len,
        n => n,
    };
    check_bytes(space, m, addr, patch.len, moved)
}

/// [`check_module`] for the `len` bytes at `addr`, of which the first
/// `moved` are moved (no code may refer strictly inside them).
fn check_bytes(
    space: &Space,
    m: &Module,
    addr: RuntimeAddr,
    len: usize,
    moved: usize,
) -> std::result::Result<(), Refusal> {
    let replaced = addr.get()..addr.get() + len as u64;
    let inside = m.to_link(addr.offset(1))..m.to_link(addr.offset(moved as i64));
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
    // A fill holding a hop's jump, written or planned in this batch (the
    // fill after a short function is where its own jump would run over).
    let fills = space
        .fills
        .iter()
        .map(|(a, u)| a.get()..a.get() + u.saved.len() as u64)
        .chain(space.fast.planned.iter().cloned())
        .any(|r| r.start < replaced.end && replaced.start < r.end);
    if overlaps || fills {
        return Err(Refusal::JumpOverlaps);
    }
    Ok(())
}

/// True when `span` (runtime addresses) holds anything rtrace wrote or is
/// about to write: a fill (a hop's or a far detour's jump), the bytes of a
/// live fast site (a jump run over padding, an instruction pun whose
/// displacement ends in the padding: the bytes it leaves as they were are
/// part of it), what this batch plans, or a breakpoint.
fn taken(space: &Space, span: &std::ops::Range<u64>) -> bool {
    let overlaps = |r: std::ops::Range<u64>| r.start < span.end && span.start < r.end;
    space
        .fills
        .iter()
        .any(|(a, u)| overlaps(a.get()..a.get() + u.saved.len() as u64))
        || space.fast.planned.iter().any(|r| overlaps(r.clone()))
        || space
            .fast
            .sites
            .iter()
            .any(|f| f.live && overlaps(f.addr.get()..f.addr.get() + f.len as u64))
        || space.sites.iter().any(|(a, _)| span.contains(&a.get()))
}

/// The dead fill after function `f` of module `m` (`functions`, sorted;
/// link addresses): where it begins, the file's bytes there, and how many
/// of them are dead. The fill runs up to the next known function, or, when
/// a function the symbols do not name may follow (a stripped static one),
/// up to the last 16-byte boundary within it: code begins on such a
/// boundary, never in the middle of the `nop`s that lead to it. None when
/// the function's last instruction does not end the flow: the padding
/// after it runs (see [`detour::ends_flow_at_end`]).
fn dead_after<'m>(m: &'m Module, f: &crate::symbols::elf::Symbol) -> Option<(u64, &'m [u8], u64)> {
    if f.size == 0 {
        return None;
    }
    let functions = m.elf.functions();
    let end = f.addr.get() + f.size;
    let next = functions[functions.partition_point(|g| g.addr.get() < end)..]
        .first()
        .map(|g| g.addr.get());
    let len = next.map_or(FILL_MAX, |n| (n - end).min(FILL_MAX)) as usize;
    let file = m.elf.bytes_at(crate::addr::LinkAddr(end), len)?;
    let mut dead = detour::dead_fill(file, end) as u64;
    if Some(end + dead) != next {
        dead = ((end + dead) & !15).saturating_sub(end);
    }
    if dead == 0 {
        return None;
    }
    let code = m.elf.bytes_at(f.addr, f.size as usize)?;
    detour::ends_flow_at_end(code, f.addr.get()).then_some((end, file, dead))
}

/// The most fill looked at after a function (functions are aligned to at
/// most 64 bytes).
const FILL_MAX: u64 = 64;

/// The bytes after the function ending at `end` (runtime) up to the next
/// function of module `m`, at most [`FILL_MAX`], as they are in memory now
/// (a hop's fill already written there is not dead).
fn fill_after(space: &Space, m: &Module, end: RuntimeAddr) -> Vec<u8> {
    let link = m.to_link(end);
    let functions = m.elf.functions();
    let i = functions.partition_point(|f| f.addr < link);
    let next = functions
        .get(i)
        .map_or(FILL_MAX, |f| (f.addr.get() - link.get()).min(FILL_MAX));
    space.mem.read_vec(end, next as usize).unwrap_or_default()
}

/// Dead fill for the hop of `patch` (module `m`): [`detour::JMP_LEN`]
/// bytes within a `jmp rel8`'s reach, in the fill right after the end of
/// one of the module's functions that ends its flow ([`dead_after`]), as
/// the file has them and the memory still does, that no code refers to,
/// outside the site's own replaced bytes and anything else rtrace wrote or
/// plans to write ([`taken`]).
pub(super) fn fill_for(space: &Space, m: &Module, patch: &detour::Patch) -> Option<detour::Fill> {
    let from = patch.addr as i64 + detour::HOP_LEN as i64;
    let (lo, hi) = (
        from + detour::HOP_REACH.0,
        from + detour::HOP_REACH.1 - detour::JMP_LEN as i64 + 1,
    );
    let reach = |slot: u64| (lo..=hi).contains(&(slot as i64));
    let replaced = patch.addr..patch.addr + patch.len as u64;
    let functions = m.elf.functions();
    let link_hi = m.to_link(RuntimeAddr(hi as u64)).get();
    let upto = functions.partition_point(|f| f.addr.get() <= link_hi);
    // Functions ending within reach start before its end; the nearest few
    // are enough (a long one could start far before: its end is checked).
    for f in functions[..upto].iter().rev().take(64) {
        if f.size == 0 {
            continue;
        }
        let end = f.addr.get() + f.size;
        let end_rt = m.to_runtime(crate::addr::LinkAddr(end)).get();
        if (end_rt as i64) > hi || (end_rt as i64) + (FILL_MAX as i64) < lo {
            continue;
        }
        let Some((_, file, dead)) = dead_after(m, f) else {
            continue;
        };
        let Ok(now) = space.mem.read_vec(RuntimeAddr(end_rt), dead as usize) else {
            continue;
        };
        let mut k = 0;
        while k + detour::JMP_LEN as u64 <= dead {
            let slot = end_rt + k;
            let span = slot..slot + detour::JMP_LEN as u64;
            k += detour::JMP_LEN as u64;
            let at = (slot - end_rt) as usize;
            let bytes = &file[at..at + detour::JMP_LEN];
            let free = reach(slot)
                && (span.start >= replaced.end || span.end <= replaced.start)
                && now[at..at + detour::JMP_LEN] == *bytes
                && !taken(space, &span)
                && m.elf
                    .code_ref_into(
                        crate::addr::LinkAddr(end + at as u64).offset(-1),
                        crate::addr::LinkAddr(end + at as u64 + detour::JMP_LEN as u64),
                    )
                    .is_none()
                && !in_any_function(m, end + at as u64, detour::JMP_LEN as u64);
            if free {
                return Some(detour::Fill {
                    at: slot,
                    saved: bytes.to_vec(),
                });
            }
        }
    }
    None
}

/// Whether any of the `len` bytes at link address `at` of module `m` is a
/// function's, by its call frame information (an FDE covers every
/// function the compiler emitted, named or not): then they are not fill.
fn in_any_function(m: &Module, at: u64, len: u64) -> bool {
    (at..at + len).any(|a| m.elf.cfi_covers(crate::addr::LinkAddr(a)) == Some(true))
}

/// Dead fill in module `m` for a far detour's indirect jump
/// ([`detour::FAR_JUMP_LEN`] bytes) within a `jmp rel32`'s reach of
/// `site`: the fill after one of its functions (as [`fill_for`] judges
/// fill), not [`taken`] (the site's own hop's fill, planned, included),
/// unchanged, that no code refers to.
pub(super) fn far_fill(space: &Space, m: &Module, site: RuntimeAddr) -> Option<detour::Fill> {
    const LEN: u64 = detour::FAR_JUMP_LEN as u64;
    for f in m.elf.functions() {
        let end = f.addr.get() + f.size;
        if f.size == 0
            || m.to_runtime(crate::addr::LinkAddr(end))
                .get()
                .abs_diff(site.get())
                >= super::patch::NEAR
        {
            continue;
        }
        let Some((end, file, dead)) = dead_after(m, f) else {
            continue;
        };
        if dead < LEN {
            continue;
        }
        let at = m.to_runtime(crate::addr::LinkAddr(end));
        let span = at.get()..at.get() + LEN;
        let unchanged = space
            .mem
            .read_vec(at, LEN as usize)
            .is_ok_and(|now| now == file[..LEN as usize]);
        let referred = m
            .elf
            .code_ref_into(
                crate::addr::LinkAddr(end).offset(-1),
                crate::addr::LinkAddr(end + LEN),
            )
            .is_some();
        if !taken(space, &span) && unchanged && !referred && !in_any_function(m, end, LEN) {
            return Some(detour::Fill {
                at: at.get(),
                saved: file[..LEN as usize].to_vec(),
            });
        }
    }
    None
}

/// Tells the listeners how the sites of each probe armed in the traced
/// process (`root`) run, once per probe. Needs the world and the
/// consumers only: it stops nothing.
pub(super) fn report_modes(
    world: &World,
    consumers: &mut Consumers,
    root: Pid,
    start: Instant,
) -> Result<()> {
    let Some(space) = world.spaces.get(&root) else {
        return Ok(());
    };
    let mut events = Vec::new();
    for (i, p) in consumers.probes.iter().enumerate() {
        let id = ProbeId(i);
        let Some(p) = p else {
            continue;
        };
        if consumers.modes_reported.contains(&id) {
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
        let mut sites = Vec::with_capacity(addrs.len());
        for &a in addrs {
            let symbol = space
                .sites
                .get(a)
                .and_then(|s| s.probes.first().map(|p| p.symbol.clone()))
                .unwrap_or_else(|| a.to_string());
            let refused = space.fast.refused.get(&a);
            match refused {
                Some(why) => {
                    // A glob's many sites are grouped by what refused
                    // them, not by the instruction or address.
                    let grouped = match addrs.len() {
                        1 => why.to_string(),
                        _ => why.general(),
                    };
                    SkipReason::add(&mut int3, &grouped, &symbol);
                }
                None => fast += 1,
            }
            sites.push(SiteMode {
                symbol,
                address: a,
                int3: refused.map(|why| why.to_string()),
            });
        }
        sites.sort_by_key(|s| s.address);
        events.push((
            id,
            Event::ProbeMode {
                probe: p.spec.as_str().to_string(),
                fast,
                int3,
                sites,
            },
        ));
    }
    for (id, e) in events {
        consumers.modes_reported.insert(id);
        consumers.emit(e, start.elapsed())?;
    }
    Ok(())
}
