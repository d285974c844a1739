//! User stacks: the frames of a stopped thread, found from its registers and
//! its stack memory, and named by function, module and source line.
//!
//! Owns the walk (evaluating call frame rules on a stack), its fallbacks and
//! its stopping rules, and reading the stack a chunk at a time. It reads the
//! tracee and never writes to it; it keeps no state between walks (rules are
//! cached per module by `symbols::cfi`, one `ElfFile` at a time).
//!
//! Its public part is what [`Hit::user_stack`](crate::Hit::user_stack)
//! answers: a [`Stack`] of [`Frame`]s.
//!
//! One step, from a frame whose registers are known (all of them for the
//! innermost frame; what the rules recovered for the others):
//!
//! 1. The frame's code address names a module. A return address is one past
//!    a `call`, which may be the last instruction of its function (a call to
//!    a function that never returns), so the rule and the name are looked up
//!    at the address minus one, except for the innermost frame and a frame
//!    interrupted by a signal, whose address is the instruction itself.
//! 2. The module's CFI row for it ([`ElfFile::frame_rule`]) gives the
//!    canonical frame address (CFA) and where the caller's registers are;
//!    where no FDE covers the address, a function entry (the innermost
//!    frame of a function probe: the return address is at the stack
//!    pointer) or else a frame pointer chain is assumed.
//! 3. The caller's registers: the rules' values, the CFA as its stack
//!    pointer, the callee-saved registers that no rule names unchanged, the
//!    others unknown. Its code address is the return address.
//! 4. A return address that is rtrace's trampoline (a call in flight whose
//!    return is watched) is replaced by the real one, found by the stack slot
//!    it was read from (`Trampoline`).
//!
//! The walk ends, cleanly, at an undefined return address (the outermost
//! frame's CFI says so: `_start`, `clone`'s child), a return address of 0,
//! an address in no module, a stack pointer that does not move up (a loop),
//! memory that cannot be read, a rule that cannot be evaluated, or the depth
//! asked for.
//!
//! [`ElfFile::frame_rule`]: crate::symbols::ElfFile::frame_rule

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::Arc;

use gimli::{EndianSlice, LittleEndian};

use crate::addr::RuntimeAddr;
use crate::arch::unwind::{
    CALLEE_SAVED, DWARF_FP, DWARF_RA, DWARF_REGS, DWARF_SP, ENTRY_CFA_OFFSET, FP_CFA_OFFSET,
    FP_SAVED_OFFSET, RA_CFA_OFFSET,
};
use crate::symbols::cfi::{CfaRule, FrameRule, RegisterRule};
use crate::symbols::ModuleMap;
use crate::sys::mem::ProcMem;

/// The default for how many frames a stack shows (`--stack-depth`).
pub const DEFAULT_DEPTH: usize = 64;

/// The register state of one frame, by DWARF number; None where the value
/// is not known.
pub(crate) type Registers = [Option<u64>; DWARF_REGS];

/// How a frame was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSource {
    /// The innermost frame: the thread's instruction pointer.
    Registers,
    /// Through the call frame information of the frame below it.
    Cfi,
    /// The frame below had no CFI and was at its function's first
    /// instruction: the return address was at its stack pointer.
    Entry,
    /// The frame below had no CFI: through its frame pointer.
    FramePointer,
}

/// Reads tracee memory, as much as it can: the number of bytes read from
/// the start of `buf` (0 when nothing can be read).
pub(crate) trait Memory {
    /// Fills a prefix of `buf` from `addr`; returns its length.
    fn read(&self, addr: RuntimeAddr, buf: &mut [u8]) -> usize;
}

impl Memory for ProcMem {
    fn read(&self, addr: RuntimeAddr, buf: &mut [u8]) -> usize {
        self.read_partial(addr, buf)
    }
}

/// What the address space knows about a code address.
pub(crate) enum Lookup {
    /// The call frame rule for it.
    Rule(Arc<FrameRule>),
    /// It is in a module, which has no CFI for it.
    NoRule,
    /// It is in no module (not code rtrace knows, or not code at all).
    Unknown,
}

/// Where call frame rules come from: a process's modules, or a test's
/// fabrication.
pub(crate) trait Rules {
    /// The rule for the code at `pc`.
    fn rule(&self, pc: RuntimeAddr) -> Lookup;
}

impl Rules for ModuleMap {
    fn rule(&self, pc: RuntimeAddr) -> Lookup {
        match self.module_at(pc) {
            Some(m) => match m.elf.frame_rule(m.to_link(pc)) {
                Some(rule) => Lookup::Rule(rule),
                None => Lookup::NoRule,
            },
            None => Lookup::Unknown,
        }
    }
}

/// rtrace's return trampoline, as the stack may show it while calls are in
/// flight: its address, and the real return address of the call whose
/// return address slot (the stack address the trampoline was read from)
/// is given.
pub(crate) struct Trampoline<'a> {
    /// The trampoline's address.
    pub addr: RuntimeAddr,
    /// The return stub's, when the process has one: a call whose return it
    /// watches has it in its slot.
    pub stub: Option<RuntimeAddr>,
    /// The original return address of the call whose slot this is.
    pub original: &'a dyn Fn(RuntimeAddr) -> Option<RuntimeAddr>,
}

/// How many bytes of stack one read takes: enough for the frames of a
/// typical stack from the probe to `main` in one system call.
const CHUNK: usize = 8192;
/// How many chunks one walk may read: a bound on the cost of a walk that a
/// corrupt stack sends far and wide.
const MAX_CHUNKS: usize = 16;
/// The most operations one CFI expression may take (a corrupt one may loop).
const MAX_EXPRESSION_OPS: u32 = 1000;

/// Tracee memory read a chunk at a time: the first read of an address
/// outside the chunks read so far reads 8 KiB from there (or up to
/// the end of its mapping) in one system call, and later reads nearby are
/// answered from it.
pub(crate) struct ChunkedMemory<'a> {
    mem: &'a dyn Memory,
    chunks: RefCell<Vec<(u64, Vec<u8>)>>,
    reads: Cell<usize>,
}

impl<'a> ChunkedMemory<'a> {
    /// Reads through `mem`.
    pub fn new(mem: &'a dyn Memory) -> ChunkedMemory<'a> {
        ChunkedMemory {
            mem,
            chunks: RefCell::new(Vec::new()),
            reads: Cell::new(0),
        }
    }

    /// How many reads of tracee memory were made (for tests).
    #[cfg(test)]
    pub fn reads(&self) -> usize {
        self.reads.get()
    }

    /// The `size` bytes (at most 8) at `addr`, little-endian.
    pub fn read_sized(&self, addr: u64, size: usize) -> Option<u64> {
        let size = size.min(8);
        let end = addr.checked_add(size as u64)?;
        let found = |chunks: &[(u64, Vec<u8>)]| {
            chunks.iter().find_map(|(start, bytes)| {
                let from = usize::try_from(addr.checked_sub(*start)?).ok()?;
                let to = usize::try_from(end - start).ok()?;
                let b = bytes.get(from..to)?;
                let mut word = [0u8; 8];
                word[..size].copy_from_slice(b);
                Some(u64::from_le_bytes(word))
            })
        };
        if let Some(v) = found(&self.chunks.borrow()) {
            return Some(v);
        }
        let mut chunks = self.chunks.borrow_mut();
        if chunks.len() >= MAX_CHUNKS {
            return None;
        }
        let mut buf = vec![0u8; CHUNK];
        self.reads.set(self.reads.get() + 1);
        let n = self.mem.read(RuntimeAddr(addr), &mut buf);
        if n < size {
            return None;
        }
        buf.truncate(n);
        chunks.push((addr, buf));
        found(&chunks)
    }

    /// The word at `addr`.
    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        self.read_sized(addr, 8)
    }
}

/// One frame of a walk, before it is named: its code address, whether that
/// is a return address (named by the `call` before it), and how it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawFrame {
    /// The instruction pointer (innermost frame, or a frame a signal
    /// interrupted) or the return address.
    pub pc: RuntimeAddr,
    /// `pc` is a return address: the frame is in the `call` before it.
    pub after_call: bool,
    /// How the frame was found.
    pub source: FrameSource,
}

impl RawFrame {
    /// The address to name the frame by: inside the instruction the frame is
    /// executing (for a caller, its `call`).
    pub fn lookup_pc(&self) -> RuntimeAddr {
        if self.after_call {
            self.pc.offset(-1)
        } else {
            self.pc
        }
    }
}

/// What a walk asks for and works with.
pub(crate) struct Walk<'a> {
    /// The innermost frame's registers (see `arch::unwind::dwarf_registers`).
    pub registers: Registers,
    /// The innermost frame is at its function's first instruction (a function
    /// probe's entry): where its code has no CFI, its return address is at
    /// the stack pointer.
    pub at_entry: bool,
    /// The most frames to find.
    pub max_depth: usize,
    /// The trampoline return addresses may be rewritten to, if any.
    pub trampoline: Option<Trampoline<'a>>,
}

/// Walks the stack: the innermost frame first, at most `walk.max_depth`
/// frames. The flag is true when the walk stopped at the depth limit with
/// more frames possibly beyond.
pub(crate) fn unwind(
    walk: &Walk<'_>,
    rules: &dyn Rules,
    mem: &ChunkedMemory<'_>,
) -> (Vec<RawFrame>, bool) {
    let mut frames = Vec::new();
    let mut regs = walk.registers;
    let mut after_call = false;
    let mut source = FrameSource::Registers;
    while let Some(pc) = regs[DWARF_RA as usize].filter(|&pc| pc != 0) {
        if frames.len() >= walk.max_depth {
            return (frames, true);
        }
        let frame = RawFrame {
            pc: RuntimeAddr(pc),
            after_call,
            source,
        };
        frames.push(frame);
        let (rule, next_source) = match rules.rule(frame.lookup_pc()) {
            Lookup::Rule(rule) => (rule, FrameSource::Cfi),
            Lookup::NoRule if frames.len() == 1 && walk.at_entry => {
                (Arc::new(entry_rule()), FrameSource::Entry)
            }
            Lookup::NoRule => (Arc::new(frame_pointer_rule()), FrameSource::FramePointer),
            Lookup::Unknown => break,
        };
        if next_source == FrameSource::FramePointer && !plausible_frame_pointer(&regs) {
            break;
        }
        let Some((next, ra_slot)) = step(&rule, &regs, mem) else {
            break;
        };
        // Stacks grow down: a caller's frame is above its callee's. A signal
        // frame may come from another stack (sigaltstack), so only it may
        // move the stack pointer anywhere; the depth limit bounds its loops.
        let (old_sp, new_sp) = (regs[DWARF_SP as usize], next[DWARF_SP as usize]);
        match (old_sp, new_sp) {
            (Some(old), Some(new)) if new > old || rule.signal_frame => {}
            _ => break,
        }
        regs = next;
        if let (Some(t), Some(ra)) = (&walk.trampoline, regs[DWARF_RA as usize]) {
            if ra == t.addr.get() || t.stub.is_some_and(|s| s.get() == ra) {
                match ra_slot.and_then(|slot| (t.original)(slot)) {
                    Some(real) => regs[DWARF_RA as usize] = Some(real.get()),
                    // A rewritten return address whose call is not known: the
                    // frames beyond it cannot be told.
                    None => break,
                }
            }
        }
        after_call = !rule.signal_frame;
        source = next_source;
    }
    (frames, false)
}

/// At a function's first instruction: CFA = sp + WORD, the return address
/// just below it, every other register as in the caller.
fn entry_rule() -> FrameRule {
    FrameRule {
        cfa: CfaRule::RegisterOffset {
            register: DWARF_SP,
            offset: ENTRY_CFA_OFFSET,
        },
        registers: vec![(DWARF_RA, RegisterRule::Offset(RA_CFA_OFFSET))],
        signal_frame: false,
    }
}

/// A frame set up with `push %rbp; mov %rsp,%rbp`: CFA = rbp + 2 WORDs, the
/// return address and the caller's rbp below it.
fn frame_pointer_rule() -> FrameRule {
    FrameRule {
        cfa: CfaRule::RegisterOffset {
            register: DWARF_FP,
            offset: FP_CFA_OFFSET,
        },
        registers: vec![
            (DWARF_RA, RegisterRule::Offset(RA_CFA_OFFSET)),
            (DWARF_FP, RegisterRule::Offset(FP_SAVED_OFFSET)),
        ],
        signal_frame: false,
    }
}

/// A frame pointer worth following: word-aligned, at or above the stack
/// pointer. (Code built without frame pointers uses rbp for anything.)
fn plausible_frame_pointer(regs: &Registers) -> bool {
    match (regs[DWARF_FP as usize], regs[DWARF_SP as usize]) {
        (Some(fp), Some(sp)) => fp % 8 == 0 && fp >= sp,
        _ => false,
    }
}

/// The caller's registers by `rule`, and the stack slot its return address
/// was read from (when it was read from memory).
fn step(
    rule: &FrameRule,
    regs: &Registers,
    mem: &ChunkedMemory<'_>,
) -> Option<(Registers, Option<RuntimeAddr>)> {
    let reg = |r: u16| regs.get(usize::from(r)).copied().flatten();
    let cfa = match &rule.cfa {
        CfaRule::RegisterOffset { register, offset } => {
            reg(*register)?.checked_add_signed(*offset)?
        }
        CfaRule::Expression(e) => evaluate(e, None, regs, mem)?,
    };
    let mut next: Registers = [None; DWARF_REGS];
    for r in CALLEE_SAVED {
        next[usize::from(r)] = reg(r);
    }
    next[DWARF_SP as usize] = Some(cfa);
    let mut ra_slot = None;
    for (r, how) in &rule.registers {
        let Some(at) = next.get_mut(usize::from(*r)) else {
            continue;
        };
        let (value, slot) = match how {
            RegisterRule::Undefined => (None, None),
            RegisterRule::SameValue => (reg(*r), None),
            RegisterRule::Offset(n) => {
                let slot = cfa.checked_add_signed(*n)?;
                (Some(mem.read_u64(slot)?), Some(slot))
            }
            RegisterRule::ValOffset(n) => (Some(cfa.checked_add_signed(*n)?), None),
            RegisterRule::Register(other) => (reg(*other), None),
            RegisterRule::Expression(e) => {
                let slot = evaluate(e, Some(cfa), regs, mem)?;
                (Some(mem.read_u64(slot)?), Some(slot))
            }
            RegisterRule::ValExpression(e) => (Some(evaluate(e, Some(cfa), regs, mem)?), None),
        };
        *at = value;
        if *r == DWARF_RA {
            ra_slot = slot.map(RuntimeAddr);
        }
    }
    // The row names no return address: nothing to return to.
    if rule.register(DWARF_RA).is_none() {
        next[DWARF_RA as usize] = None;
    }
    Some((next, ra_slot))
}

/// The value of a CFI expression (DWARF 5 §2.5) over this frame's registers
/// and the stack, `initial` pushed first (the CFA, for register rules).
fn evaluate(
    expr: &[u8],
    initial: Option<u64>,
    regs: &Registers,
    mem: &ChunkedMemory<'_>,
) -> Option<u64> {
    use gimli::{EvaluationResult, Location, Value};
    let encoding = gimli::Encoding {
        address_size: 8,
        format: gimli::Format::Dwarf32,
        version: 4,
    };
    let mut eval = gimli::Expression(EndianSlice::new(expr, LittleEndian)).evaluation(encoding);
    if let Some(v) = initial {
        eval.set_initial_value(v);
    }
    eval.set_max_iterations(MAX_EXPRESSION_OPS);
    let mut state = eval.evaluate().ok()?;
    loop {
        state = match state {
            EvaluationResult::Complete => break,
            EvaluationResult::RequiresMemory { address, size, .. } => {
                let v = mem.read_sized(address, usize::from(size))?;
                eval.resume_with_memory(Value::Generic(v)).ok()?
            }
            EvaluationResult::RequiresRegister { register, .. } => {
                let v = regs.get(usize::from(register.0)).copied().flatten()?;
                eval.resume_with_register(Value::Generic(v)).ok()?
            }
            // Nothing else has a meaning in call frame information.
            _ => return None,
        };
    }
    match eval.result().first()?.location {
        Location::Address { address } => Some(address),
        Location::Value { value } => value.to_u64(u64::MAX).ok(),
        _ => None,
    }
}

/// One frame of a user stack, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The instruction pointer (innermost frame) or the return address.
    pub address: RuntimeAddr,
    /// The function (demangled), when a symbol covers the frame's code.
    pub symbol: Option<Arc<str>>,
    /// `address` minus the function's start (0 without a symbol).
    pub offset: u64,
    /// The module's path, when the code is in one.
    pub module: Option<PathBuf>,
    /// The source file, when the module has a line table for the code.
    pub file: Option<PathBuf>,
    /// The source line, with `file`.
    pub line: Option<u32>,
    /// How the frame was found.
    pub source: FrameSource,
}

/// A thread's user stack, innermost frame first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stack {
    /// The frames.
    pub frames: Vec<Frame>,
    /// The walk stopped at the depth asked for; there may be more frames.
    pub truncated: bool,
}

/// Names `raw` by function, module and line.
pub(crate) fn symbolize(raw: &RawFrame, modules: &ModuleMap) -> Frame {
    let mut frame = Frame {
        address: raw.pc,
        symbol: None,
        offset: 0,
        module: None,
        file: None,
        line: None,
        source: raw.source,
    };
    let at = raw.lookup_pc();
    let Some(module) = modules.module_at(at) else {
        return frame;
    };
    frame.module = Some(module.path.clone());
    let link = module.to_link(at);
    if let Some((symbol, _)) = module.elf.frame_function(link) {
        frame.symbol = Some(module.elf.shown_name(symbol));
        frame.offset = raw
            .pc
            .get()
            .wrapping_sub(module.to_runtime(symbol.addr).get());
    }
    if let Some((file, line)) = module.elf.line_at(link) {
        frame.file = Some(file.to_path_buf());
        frame.line = Some(line);
    }
    frame
}

#[cfg(test)]
mod tests;
