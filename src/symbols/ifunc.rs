//! IFUNCs: from a GNU indirect function (`strlen`) to the implementation the
//! process actually calls (`__strlen_avx2`).
//!
//! An IFUNC symbol's address is its resolver's, which the dynamic linker calls
//! once and whose answer it writes into GOT slots: the defining module's own
//! `R_X86_64_IRELATIVE` slots (addend = the resolver) and, in every module that
//! uses the symbol, the `JUMP_SLOT` / `GLOB_DAT` slots naming it. Reading one of
//! those slots, once relocated, gives the address every call lands on, whether it
//! comes through a PLT or a function pointer. This is the same answer the
//! dynamic linker got, without calling the resolver (which could run arbitrary
//! code in the tracee).
//!
//! When no slot holds an answer yet (lazily bound PLT slots, a static
//! executable before its start code), the engine watches the resolver's calls
//! that the dynamic linker or the start code makes, and [`answer`] judges what
//! one returned.
//!
//! This module stays pure: [`slots`] says where to look (from the ELF
//! relocations) and [`implementation`] judges a value read there. Reading the
//! tracee's memory is the engine's job, between the two.
use super::elf::{R_X86_64_GLOB_DAT, R_X86_64_IRELATIVE, R_X86_64_JUMP_SLOT};
use super::location::Location;
use super::modules::{Module, ModuleMap};
use crate::addr::{LinkAddr, RuntimeAddr};

/// The implementation of the IFUNC at `loc`: the first of its [`slots`] whose
/// value, read with `read` (tracee memory, the caller's business), is an
/// answer.
pub fn read_implementation(
    map: &ModuleMap,
    loc: &Location,
    read: &dyn Fn(RuntimeAddr) -> Option<u64>,
) -> Option<Location> {
    slots(map, loc)
        .iter()
        .find_map(|slot| implementation(map, loc, slot, read(slot.addr)?))
}

/// A GOT slot that may hold the implementation of an IFUNC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Its runtime address.
    pub addr: RuntimeAddr,
    /// True for a `JUMP_SLOT`, which may be bound lazily: until the first call
    /// it points back into its own module's PLT, which is not an answer.
    lazy: bool,
    /// What the slot holds before it is relocated: its bytes in the file (a
    /// link address), and the runtime address that names in the module. A
    /// value equal to either is not an answer.
    unrelocated: Option<(LinkAddr, RuntimeAddr)>,
}

impl Slot {
    fn new(m: &Module, offset: LinkAddr, lazy: bool) -> Slot {
        let unrelocated = m
            .elf
            .bytes_at(offset, 8)
            .and_then(|b| b.try_into().ok())
            .map(|b| LinkAddr(u64::from_le_bytes(b)))
            .map(|v| (v, m.to_runtime(v)));
        Slot {
            addr: m.to_runtime(offset),
            lazy,
            unrelocated,
        }
    }
}

/// The slots to read for the IFUNC at `loc` (its resolver), best first: the
/// defining module's IRELATIVE slots (relocated eagerly, before any of its code
/// runs), then GLOB_DAT and JUMP_SLOT slots naming it in every module.
pub fn slots(map: &ModuleMap, loc: &Location) -> Vec<Slot> {
    let mut out = Vec::new();
    let Some(def) = map.module_at(loc.addr) else {
        return out;
    };
    // An IRELATIVE relocation's addend is its resolver's link address.
    let resolver = def.to_link(loc.addr);
    for r in def.elf.relocations() {
        if r.kind == R_X86_64_IRELATIVE && LinkAddr(r.addend as u64) == resolver {
            out.push(Slot::new(def, r.offset, false));
        }
    }
    for m in map.modules() {
        for r in m.elf.relocations() {
            let named = r.symbol.as_deref() == Some(loc.linkage_name.as_str());
            if named && (r.kind == R_X86_64_GLOB_DAT || r.kind == R_X86_64_JUMP_SLOT) {
                out.push(Slot::new(m, r.offset, r.kind == R_X86_64_JUMP_SLOT));
            }
        }
    }
    out
}

/// The implementation of the IFUNC at `loc`, given `value` read from `slot`:
/// a function entry location named after the implementation (or after the
/// IFUNC, when no symbol names that address), or None when the slot does not
/// hold an answer yet (not relocated, or a lazy slot still pointing at its PLT).
pub fn implementation(
    map: &ModuleMap,
    loc: &Location,
    slot: &Slot,
    value: u64,
) -> Option<Location> {
    if slot
        .unrelocated
        .is_some_and(|(file, runtime)| value == file.get() || value == runtime.get())
    {
        // Not relocated yet (a static executable before its start code ran).
        return None;
    }
    let at = RuntimeAddr(value);
    if slot.lazy
        && map
            .module_at(slot.addr)
            .is_some_and(|h| map.module_at(at).is_some_and(|m| h.path == m.path))
    {
        // Back into the module that holds the slot: its PLT, not yet bound.
        return None;
    }
    answer(map, loc, value)
}

/// The implementation of the IFUNC at `loc` whose address is `value`: what a
/// relocated slot holds, or what a call of its resolver returned. None when
/// `value` is not code of a loaded module, or is the resolver itself.
pub fn answer(map: &ModuleMap, loc: &Location, value: u64) -> Option<Location> {
    let at = RuntimeAddr(value);
    if value == 0 || at == loc.addr {
        return None;
    }
    let m = map.module_at(at)?;
    let link = m.to_link(at);
    if !m.elf.is_code(link) {
        return None;
    }
    let (symbol, linkage_name) = match m.elf.function_at(link) {
        Some((f, 0)) => (super::demangle::display_name(&f.name), f.name.clone()),
        Some(_) | None => (loc.symbol.clone(), loc.linkage_name.clone()),
    };
    Some(Location {
        addr: at,
        module: m.path.clone(),
        symbol,
        linkage_name,
        offset: 0,
        function_entry: true,
        ifunc: false,
    })
}
