//! Call frame information: for an address in a module, the rule that finds
//! the frame of the function's caller (DWARF 5 §6.4, and the `.eh_frame`
//! form the psABI and the LSB define).
//!
//! Owns reading `.eh_frame` (always loaded, what the C++ runtime unwinds
//! with) and `.debug_frame` (in the file or its separate debug file; what
//! `-g` without unwind tables leaves) through gimli's `UnwindSection`, and
//! turning one row of the CFI table into a [`FrameRule`] that owns its bytes.
//! It knows nothing of processes: addresses are link addresses, and
//! evaluating a rule on a stack is the unwinder's business (`crate::unwind`).
//!
//! Cost model: the first question about a module indexes its `.eh_frame`
//! FDEs by address (one pass over the section, CIEs parsed once each);
//! `.debug_frame` is indexed only when `.eh_frame` has no answer, so a module
//! whose code has unwind tables never opens its debug file for CFI. A rule is
//! computed by running its FDE's instructions up to the address (gimli's
//! `UnwindTable`) and kept per address, so the same return address on the
//! next hit costs a hash lookup. Corrupt CFI yields no rule, never a panic:
//! every error from gimli ends in `None`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gimli::{
    BaseAddresses, CieOrFde, CommonInformationEntry, DebugFrame, EhFrame, EndianSlice,
    LittleEndian, UnwindContext, UnwindSection, UnwindTableRow,
};

use crate::addr::LinkAddr;

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// How to compute the canonical frame address (CFA): the value of the stack
/// pointer in the caller just before its `call`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CfaRule {
    /// A register's value plus an offset.
    RegisterOffset {
        /// DWARF register number.
        register: u16,
        /// Added to its value.
        offset: i64,
    },
    /// The value a DWARF expression computes.
    Expression(Vec<u8>),
}

/// How to recover one register of the caller (DWARF 5 §6.4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterRule {
    /// Not recoverable (for the return address column: the outermost frame).
    Undefined,
    /// Unchanged by this frame.
    SameValue,
    /// Saved at `CFA + offset`.
    Offset(i64),
    /// Is `CFA + offset`.
    ValOffset(i64),
    /// Held in another register.
    Register(u16),
    /// Saved at the address the expression computes (the CFA pushed first).
    Expression(Vec<u8>),
    /// Is the value the expression computes (the CFA pushed first).
    ValExpression(Vec<u8>),
}

/// One row of a module's CFI table, owning its expressions: how to find the
/// caller's frame from anywhere in `[start, end)` of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRule {
    /// The canonical frame address.
    pub cfa: CfaRule,
    /// The registers the row has a rule for (DWARF numbers), the return
    /// address column among them. A register not listed has no rule in the
    /// row: callee-saved registers are then unchanged, the others unknown.
    pub registers: Vec<(u16, RegisterRule)>,
    /// The CIE has the `S` augmentation: the frame is a signal handler's
    /// return trampoline, whose "return address" is the interrupted
    /// instruction itself, not one past a call.
    pub signal_frame: bool,
}

impl FrameRule {
    /// The rule for register `register`, when the row has one.
    pub fn register(&self, register: u16) -> Option<&RegisterRule> {
        self.registers
            .iter()
            .find(|(r, _)| *r == register)
            .map(|(_, rule)| rule)
    }
}

/// Which CFI section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SectionKind {
    /// `.eh_frame`: pointers encoded as the CIE says (pc-relative usually).
    EhFrame,
    /// `.debug_frame`: absolute addresses.
    DebugFrame,
}

/// A CFI section's bytes and the link addresses its relative pointers are
/// relative to.
pub(crate) struct CfiSection<'a> {
    pub kind: SectionKind,
    pub data: &'a [u8],
    pub bases: BaseAddresses,
}

/// The FDEs of one section by address: `(start, end, offset of the FDE)`,
/// sorted by start.
#[derive(Debug, Default)]
pub(crate) struct FdeIndex {
    fdes: Vec<(u64, u64, usize)>,
}

impl FdeIndex {
    /// Indexes every FDE of `section`. Entries that do not parse are left
    /// out; a section that stops parsing keeps what came before.
    pub fn build(section: &CfiSection<'_>) -> FdeIndex {
        let data = Slice::new(section.data, LittleEndian);
        let mut fdes = match section.kind {
            SectionKind::EhFrame => {
                let mut eh = EhFrame::from(data);
                eh.set_address_size(8);
                index_entries(&eh, &section.bases)
            }
            SectionKind::DebugFrame => {
                let mut debug = DebugFrame::from(data);
                debug.set_address_size(8);
                index_entries(&debug, &section.bases)
            }
        };
        fdes.sort_unstable();
        FdeIndex { fdes }
    }

    /// The offset of the FDE covering `pc`.
    pub fn find(&self, pc: u64) -> Option<usize> {
        let i = self.fdes.partition_point(|&(start, _, _)| start <= pc);
        // FDEs do not overlap in a linked file; a few are looked at in case
        // they do (hand-written CFI), nearest first.
        let near = self.fdes.get(i.saturating_sub(4)..i)?;
        near.iter()
            .rev()
            .find(|&&(_, end, _)| pc < end)
            .map(|&(_, _, offset)| offset)
    }

    /// How many FDEs the section has.
    pub fn len(&self) -> usize {
        self.fdes.len()
    }
}

fn index_entries<'a, S>(section: &S, bases: &BaseAddresses) -> Vec<(u64, u64, usize)>
where
    S: UnwindSection<Slice<'a>>,
    S::Offset: gimli::UnwindOffset<usize>,
{
    let mut out = Vec::new();
    let mut cies: HashMap<usize, CommonInformationEntry<Slice<'a>>> = HashMap::new();
    let mut entries = section.entries(bases);
    // A corrupt length ends the walk: nothing after it can be found.
    while let Ok(Some(entry)) = entries.next() {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let fde = partial.parse(|s, b, offset| {
            let key = gimli::UnwindOffset::into(offset);
            if let Some(cie) = cies.get(&key) {
                return Ok(cie.clone());
            }
            let cie = s.cie_from_offset(b, offset)?;
            cies.insert(key, cie.clone());
            Ok(cie)
        });
        let Ok(fde) = fde else { continue };
        let (start, len) = (fde.initial_address(), fde.len());
        // A zero-length FDE (a function the linker discarded) covers nothing.
        if len == 0 {
            continue;
        }
        if let Some(end) = start.checked_add(len) {
            out.push((start, end, fde.offset()));
        }
    }
    out
}

/// Whether the function whose FDE in `section` (an `.eh_frame`) covers
/// `pc` has a language-specific data area (an LSDA: the C++ exception table
/// that lists its landing pads); None when no FDE covers `pc` or the
/// section is not an `.eh_frame`. Walks the section: for an occasional
/// question, not for every hit.
pub(crate) fn has_lsda(section: &CfiSection<'_>, pc: u64) -> Option<bool> {
    if section.kind != SectionKind::EhFrame {
        return None;
    }
    let mut eh = EhFrame::from(Slice::new(section.data, LittleEndian));
    eh.set_address_size(8);
    let mut cies: HashMap<usize, CommonInformationEntry<Slice<'_>>> = HashMap::new();
    let mut entries = eh.entries(&section.bases);
    while let Ok(Some(entry)) = entries.next() {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let fde = partial.parse(|s, b, offset| {
            let key = gimli::UnwindOffset::into(offset);
            if let Some(cie) = cies.get(&key) {
                return Ok(cie.clone());
            }
            let cie = s.cie_from_offset(b, offset)?;
            cies.insert(key, cie.clone());
            Ok(cie)
        });
        let Ok(fde) = fde else { continue };
        if fde.contains(pc) {
            return Some(fde.lsda().is_some());
        }
    }
    None
}

/// The rule for `pc` from the FDE at `offset` of `section`; None when the
/// FDE or its instructions do not parse, or do not cover `pc`.
pub(crate) fn rule_at(
    section: &CfiSection<'_>,
    offset: usize,
    pc: u64,
    ctx: &mut UnwindContext<usize>,
) -> Option<FrameRule> {
    let data = Slice::new(section.data, LittleEndian);
    match section.kind {
        SectionKind::EhFrame => {
            let mut eh = EhFrame::from(data);
            eh.set_address_size(8);
            row_rule(&eh, &section.bases, offset.into(), pc, ctx)
        }
        SectionKind::DebugFrame => {
            let mut debug = DebugFrame::from(data);
            debug.set_address_size(8);
            row_rule(&debug, &section.bases, offset.into(), pc, ctx)
        }
    }
}

fn row_rule<'a, S>(
    section: &S,
    bases: &BaseAddresses,
    offset: S::Offset,
    pc: u64,
    ctx: &mut UnwindContext<usize>,
) -> Option<FrameRule>
where
    S: UnwindSection<Slice<'a>>,
{
    let fde = section
        .fde_from_offset(bases, offset, S::cie_from_offset)
        .ok()?;
    let signal_frame = fde.is_signal_trampoline();
    let row = fde.unwind_info_for_address(section, bases, ctx, pc).ok()?;
    convert(row, section, signal_frame)
}

/// gimli's row, with its expressions copied out of the section.
fn convert<'a, S>(row: &UnwindTableRow<usize>, section: &S, signal_frame: bool) -> Option<FrameRule>
where
    S: UnwindSection<Slice<'a>>,
{
    let bytes = |e: &gimli::UnwindExpression<usize>| -> Option<Vec<u8>> {
        let expr: gimli::Expression<Slice<'a>> = e.get(section).ok()?;
        Some(expr.0.slice().to_vec())
    };
    let cfa = match row.cfa() {
        gimli::CfaRule::RegisterAndOffset { register, offset } => CfaRule::RegisterOffset {
            register: register.0,
            offset: *offset,
        },
        gimli::CfaRule::Expression(e) => CfaRule::Expression(bytes(e)?),
    };
    let mut registers = Vec::new();
    for (register, rule) in row.registers() {
        let rule = match rule {
            gimli::RegisterRule::Undefined => RegisterRule::Undefined,
            gimli::RegisterRule::SameValue => RegisterRule::SameValue,
            gimli::RegisterRule::Offset(n) => RegisterRule::Offset(*n),
            gimli::RegisterRule::ValOffset(n) => RegisterRule::ValOffset(*n),
            gimli::RegisterRule::Register(r) => RegisterRule::Register(r.0),
            gimli::RegisterRule::Expression(e) => RegisterRule::Expression(bytes(e)?),
            gimli::RegisterRule::ValExpression(e) => RegisterRule::ValExpression(bytes(e)?),
            // Neither has a meaning on x86-64: the value is not known.
            gimli::RegisterRule::Architectural | gimli::RegisterRule::Constant(_) => {
                RegisterRule::Undefined
            }
        };
        registers.push((register.0, rule));
    }
    Some(FrameRule {
        cfa,
        registers,
        signal_frame,
    })
}

/// How many rules a module keeps before starting again: a bound on memory
/// when a program's stacks keep reaching new addresses.
const MAX_RULES: usize = 1 << 16;

/// The rules of one file computed so far, with the context gimli evaluates
/// CFI instructions in (reused: it holds the allocations).
struct RuleCache {
    ctx: Box<UnwindContext<usize>>,
    rules: HashMap<u64, Option<Arc<FrameRule>>>,
}

/// One file's CFI state: the two indexes, built on first use, and the rules
/// computed so far (answers of "no rule" included).
pub(crate) struct CfiCache {
    eh: OnceLock<FdeIndex>,
    debug: OnceLock<FdeIndex>,
    rules: Mutex<RuleCache>,
}

impl Default for CfiCache {
    fn default() -> Self {
        CfiCache {
            eh: OnceLock::new(),
            debug: OnceLock::new(),
            rules: Mutex::new(RuleCache {
                ctx: Box::new(UnwindContext::new()),
                rules: HashMap::new(),
            }),
        }
    }
}

impl std::fmt::Debug for CfiCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CfiCache")
            .field("eh_fdes", &self.eh.get().map(FdeIndex::len))
            .field("debug_fdes", &self.debug.get().map(FdeIndex::len))
            .finish_non_exhaustive()
    }
}

impl CfiCache {
    /// Whether an FDE of `.eh_frame` (`eh()`) covers `pc`: code of some
    /// function, named or not. None without the section.
    pub fn covers<'a>(
        &self,
        pc: LinkAddr,
        eh: impl FnOnce() -> Option<CfiSection<'a>>,
    ) -> Option<bool> {
        if let Some(index) = self.eh.get() {
            return Some(index.find(pc.get()).is_some());
        }
        let section = eh()?;
        let index = self.eh.get_or_init(|| FdeIndex::build(&section));
        Some(index.find(pc.get()).is_some())
    }

    /// The rule for `pc`: from `.eh_frame` (`eh()`), else from `.debug_frame`
    /// (`debug()`); each section is asked for (and indexed) only when needed.
    pub fn rule<'a>(
        &self,
        pc: LinkAddr,
        eh: impl FnOnce() -> Option<CfiSection<'a>>,
        debug: impl FnOnce() -> Option<CfiSection<'a>>,
    ) -> Option<Arc<FrameRule>> {
        // A poisoned lock only means a panic elsewhere while it was held; the
        // cache itself is still consistent (a map insert either happened or
        // did not).
        let mut cache = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rule) = cache.rules.get(&pc.get()) {
            return rule.clone();
        }
        let RuleCache { ctx, rules } = &mut *cache;
        let rule = Self::lookup(&self.eh, eh, pc.get(), ctx)
            .or_else(|| Self::lookup(&self.debug, debug, pc.get(), ctx))
            .map(Arc::new);
        if rules.len() >= MAX_RULES {
            rules.clear();
        }
        rules.insert(pc.get(), rule.clone());
        rule
    }

    fn lookup<'a>(
        index: &OnceLock<FdeIndex>,
        section: impl FnOnce() -> Option<CfiSection<'a>>,
        pc: u64,
        ctx: &mut UnwindContext<usize>,
    ) -> Option<FrameRule> {
        let section = section()?;
        let offset = index.get_or_init(|| FdeIndex::build(&section)).find(pc)?;
        rule_at(&section, offset, pc, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.debug_frame` made by hand: one CIE (CFA = rsp+8, RA at CFA-8, as
    /// at a function's entry) and one FDE for [0x1000, 0x1010) whose
    /// instructions say: after 1 byte (`push %rbp`) CFA = rsp+16 and rbp at
    /// CFA-16; after 3 more (`mov %rsp,%rbp`) CFA = rbp+16.
    fn debug_frame() -> Vec<u8> {
        let mut cie = vec![
            0xff, 0xff, 0xff, 0xff, // CIE id
            4,    // version
            0,    // augmentation ""
            8,    // address size
            0,    // segment selector size
            1,    // code alignment factor
            0x78, // data alignment factor -8 (sleb128)
            16,   // return address register (uleb128)
            0x0c, 7, 8, // DW_CFA_def_cfa rsp, 8
            0x90, 1, // DW_CFA_offset r16, 1*-8
        ];
        while (cie.len() + 4) % 8 != 0 {
            cie.push(0); // DW_CFA_nop
        }
        let mut out = (cie.len() as u32).to_le_bytes().to_vec();
        out.extend(cie);
        let mut fde = vec![0, 0, 0, 0]; // CIE pointer: offset 0
        fde.extend(0x1000u64.to_le_bytes());
        fde.extend(0x10u64.to_le_bytes());
        fde.extend([
            0x41, // DW_CFA_advance_loc 1
            0x0e, 16, // DW_CFA_def_cfa_offset 16
            0x86, 2,    // DW_CFA_offset r6, 2*-8
            0x43, // DW_CFA_advance_loc 3
            0x0d, 6, // DW_CFA_def_cfa_register r6
        ]);
        while (fde.len() + 4) % 8 != 0 {
            fde.push(0);
        }
        out.extend((fde.len() as u32).to_le_bytes());
        out.extend(fde);
        out
    }

    fn section(data: &[u8]) -> CfiSection<'_> {
        CfiSection {
            kind: SectionKind::DebugFrame,
            data,
            bases: BaseAddresses::default(),
        }
    }

    #[test]
    fn rows_of_a_fabricated_fde() {
        let data = debug_frame();
        let s = section(&data);
        let index = FdeIndex::build(&s);
        assert_eq!(index.len(), 1);
        assert_eq!(index.find(0xfff), None);
        assert_eq!(index.find(0x1010), None);
        let offset = index.find(0x1000).expect("covered");
        let mut ctx = UnwindContext::new();
        let mut at = |pc| rule_at(&s, offset, pc, &mut ctx).expect("a row");
        let entry = at(0x1000);
        assert_eq!(
            entry.cfa,
            CfaRule::RegisterOffset {
                register: 7,
                offset: 8
            }
        );
        assert_eq!(entry.register(16), Some(&RegisterRule::Offset(-8)));
        assert_eq!(entry.register(6), None);
        assert!(!entry.signal_frame);
        let pushed = at(0x1002);
        assert_eq!(
            pushed.cfa,
            CfaRule::RegisterOffset {
                register: 7,
                offset: 16
            }
        );
        assert_eq!(pushed.register(6), Some(&RegisterRule::Offset(-16)));
        let framed = at(0x100f);
        assert_eq!(
            framed.cfa,
            CfaRule::RegisterOffset {
                register: 6,
                offset: 16
            }
        );
        assert_eq!(framed.register(16), Some(&RegisterRule::Offset(-8)));
    }

    #[test]
    fn corrupt_cfi_gives_no_rule_and_no_panic() {
        let good = debug_frame();
        // Every truncation and every single-byte corruption of the section.
        for len in 0..good.len() {
            let s = section(&good[..len]);
            let index = FdeIndex::build(&s);
            if let Some(offset) = index.find(0x1004) {
                let _ = rule_at(&s, offset, 0x1004, &mut UnwindContext::new());
            }
        }
        for i in 0..good.len() {
            for b in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let s = section(&bad);
                let index = FdeIndex::build(&s);
                for pc in [0x1000, 0x1004, 0x100f] {
                    if let Some(offset) = index.find(pc) {
                        let _ = rule_at(&s, offset, pc, &mut UnwindContext::new());
                    }
                }
            }
        }
        // An FDE offset that is not an FDE.
        let s = section(&good);
        assert_eq!(rule_at(&s, 0, 0x1000, &mut UnwindContext::new()), None);
        assert_eq!(rule_at(&s, 9999, 0x1000, &mut UnwindContext::new()), None);
    }

    #[test]
    fn the_cache_answers_from_eh_frame_then_debug_frame() {
        let data = debug_frame();
        let cache = CfiCache::default();
        let mut asked_debug = 0;
        let rule = cache.rule(
            LinkAddr(0x1004),
            || None,
            || {
                asked_debug += 1;
                Some(section(&data))
            },
        );
        assert_eq!(asked_debug, 1);
        let rule = rule.expect("from .debug_frame");
        assert_eq!(
            rule.cfa,
            CfaRule::RegisterOffset {
                register: 6,
                offset: 16
            }
        );
        // The second question is answered from the cache: no section is read.
        let again = cache
            .rule(LinkAddr(0x1004), || unreachable!(), || unreachable!())
            .expect("cached");
        assert!(Arc::ptr_eq(&rule, &again));
        // No rule is an answer too.
        assert!(cache.rule(LinkAddr(0x2000), || None, || None).is_none());
        assert!(cache
            .rule(LinkAddr(0x2000), || unreachable!(), || unreachable!())
            .is_none());
    }
}
