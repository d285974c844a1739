//! The symbol index of one table set: rtrace's choice among the symbols a
//! file defines (which name an address is shown by, which copy a versioned
//! name means).
use std::sync::OnceLock;

use goblin::elf::sym;

use super::types::{Segment, Symbol};
use crate::addr::LinkAddr;
use crate::symbols::demangle::{demangle, Demangled};

/// Symbols of one table set, indexed.
pub(super) struct SymbolIndex {
    /// Functions, one per address, sorted by address.
    pub(super) functions: Vec<Symbol>,
    /// Every defined symbol, sorted by name then address.
    pub(super) by_name: Vec<Symbol>,
    /// The demangled forms of the mangled function names in `by_name` (index,
    /// forms), built on first use: C programs never pay for it.
    demangled: OnceLock<Vec<(usize, Demangled)>>,
}

impl SymbolIndex {
    pub(super) fn new(raw: Vec<RawSym>) -> SymbolIndex {
        let (functions, by_name) = index_symbols(raw);
        SymbolIndex {
            functions,
            by_name,
            demangled: OnceLock::new(),
        }
    }

    pub(super) fn named(&self, name: &str) -> Vec<&Symbol> {
        let start = self.by_name.partition_point(|s| s.name.as_str() < name);
        self.by_name
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|s| s.name == name)
            .collect()
    }

    pub(super) fn demangled(&self) -> impl Iterator<Item = (&Symbol, &Demangled)> {
        self.demangled
            .get_or_init(|| {
                self.by_name
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.kind.is_function())
                    .filter_map(|(i, s)| Some((i, demangle(&s.name)?)))
                    .collect()
            })
            .iter()
            .filter_map(|(i, d)| Some((self.by_name.get(*i)?, d)))
    }

    /// See [`ElfFile::function_at`]; `segments` bound an unsized last symbol.
    pub(super) fn function_at(
        &self,
        segments: &[Segment],
        addr: LinkAddr,
    ) -> Option<(&Symbol, u64)> {
        let idx = self.functions.partition_point(|f| f.addr <= addr);
        // Sized symbols may nest (a local label inside its function), so look a few
        // entries back for one that really contains the address.
        let lower = idx.saturating_sub(8);
        for i in (lower..idx).rev() {
            let f = self.functions.get(i)?;
            let off = addr.distance_from(f.addr)?;
            let end = if f.size > 0 {
                f.size
            } else if i + 1 == idx {
                let next = self.functions.get(idx).map(|n| n.addr);
                let seg_end = segments
                    .iter()
                    .find(|s| s.contains(f.addr))
                    .map(|s| s.vaddr.get().saturating_add(s.memsz));
                match (next, seg_end) {
                    (Some(n), _) => n.get().saturating_sub(f.addr.get()),
                    (None, Some(e)) => e.saturating_sub(f.addr.get()),
                    (None, None) => 0,
                }
            } else {
                // An unsized symbol is only a candidate when it is the nearest one.
                0
            };
            if off < end {
                return Some((f, off));
            }
        }
        None
    }
}

/// Binding preference when several functions share an address: the name a user
/// would recognise is the global one.
fn bind_rank(bind: u8) -> u8 {
    match bind {
        sym::STB_GLOBAL => 0,
        sym::STB_WEAK => 1,
        _ => 2,
    }
}

/// A symbol as read from a table, before deduplication.
pub(super) struct RawSym {
    pub(super) sym: Symbol,
    pub(super) bind: u8,
    /// A version that is not the default (`name@VER`, not `name@@VER`).
    pub(super) hidden: bool,
}

/// Builds the two indices: functions by address (one per address) and every
/// symbol by name.
fn index_symbols(raw: Vec<RawSym>) -> (Vec<Symbol>, Vec<Symbol>) {
    let mut funcs: Vec<&RawSym> = raw.iter().filter(|r| r.sym.kind.is_function()).collect();
    funcs.sort_by(|a, b| {
        (a.sym.addr, bind_rank(a.bind), a.sym.name.len(), &a.sym.name).cmp(&(
            b.sym.addr,
            bind_rank(b.bind),
            b.sym.name.len(),
            &b.sym.name,
        ))
    });
    let mut functions: Vec<Symbol> = Vec::new();
    for r in funcs {
        match functions.last_mut() {
            Some(last) if last.addr == r.sym.addr => {
                // An alias: keep the preferred name, but learn a size it lacked.
                if last.size == 0 {
                    last.size = r.sym.size;
                }
            }
            _ => functions.push(r.sym.clone()),
        }
    }
    // By name, the default version first: `pthread_cond_signal` is the
    // `@@GLIBC_2.3.2` one the linker binds, not the old `@GLIBC_2.2.5` copy
    // at a lower address.
    let mut raw = raw;
    raw.sort_by(|a, b| {
        (&a.sym.name, a.hidden, a.sym.addr, a.sym.size).cmp(&(
            &b.sym.name,
            b.hidden,
            b.sym.addr,
            b.sym.size,
        ))
    });
    let mut by_name: Vec<Symbol> = raw.into_iter().map(|r| r.sym).collect();
    // The same symbol in .symtab and .dynsym.
    by_name.dedup_by(|a, b| a.name == b.name && a.addr == b.addr && a.kind == b.kind);
    (functions, by_name)
}
