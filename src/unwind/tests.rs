//! The walk on fabricated stacks: code ranges with hand-written rules, and a
//! memory image of the stack, so that every frame and every stopping rule is
//! checked against addresses computed by hand.

use std::cell::Cell;

use super::*;

const SP0: u64 = 0x7000_0000;
const TRAMPOLINE: u64 = 0x9000_0000;

/// A stack image at `base`, written word by word; reads past its end come
/// back short, as at the end of a mapping.
struct FakeStack {
    base: u64,
    bytes: Vec<u8>,
    reads: Cell<usize>,
}

impl FakeStack {
    fn new(base: u64, len: usize) -> FakeStack {
        FakeStack {
            base,
            bytes: vec![0; len],
            reads: Cell::new(0),
        }
    }
    fn put(&mut self, addr: u64, value: u64) {
        let at = (addr - self.base) as usize;
        self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
}

impl Memory for FakeStack {
    fn read(&self, addr: RuntimeAddr, buf: &mut [u8]) -> usize {
        self.reads.set(self.reads.get() + 1);
        let Some(from) = addr.get().checked_sub(self.base) else {
            return 0;
        };
        let from = from as usize;
        if from >= self.bytes.len() {
            return 0;
        }
        let n = buf.len().min(self.bytes.len() - from);
        buf[..n].copy_from_slice(&self.bytes[from..from + n]);
        n
    }
}

/// Code ranges: a rule, or `None` for code without CFI. Outside every range
/// is no module.
struct FakeCode(Vec<(u64, u64, Option<Arc<FrameRule>>)>);

impl Rules for FakeCode {
    fn rule(&self, pc: RuntimeAddr) -> Lookup {
        match self
            .0
            .iter()
            .find(|(s, e, _)| *s <= pc.get() && pc.get() < *e)
        {
            Some((_, _, Some(rule))) => Lookup::Rule(rule.clone()),
            Some((_, _, None)) => Lookup::NoRule,
            None => Lookup::Unknown,
        }
    }
}

/// CFA = rsp + `cfa`, return address at CFA-8, and `more` rules.
fn sp_rule(cfa: i64, more: Vec<(u16, RegisterRule)>) -> Option<Arc<FrameRule>> {
    let mut registers = vec![(DWARF_RA, RegisterRule::Offset(-8))];
    registers.extend(more);
    Some(Arc::new(FrameRule {
        cfa: CfaRule::RegisterOffset {
            register: DWARF_SP,
            offset: cfa,
        },
        registers,
        signal_frame: false,
    }))
}

/// The outermost frame's rule: the return address is undefined.
fn outermost() -> Option<Arc<FrameRule>> {
    Some(Arc::new(FrameRule {
        cfa: CfaRule::RegisterOffset {
            register: DWARF_SP,
            offset: 8,
        },
        registers: vec![(DWARF_RA, RegisterRule::Undefined)],
        signal_frame: false,
    }))
}

/// main (0x4000, outermost) → a (0x3000, no CFI, frame pointer) → b (0x2000,
/// CFA = rsp+32, saves rbx) → c (0x1000, CFA = rsp+24), stopped in c at
/// 0x1010. Built without frame pointers except `a`.
fn chain() -> (FakeCode, FakeStack, Registers) {
    let code = FakeCode(vec![
        (0x1000, 0x1100, sp_rule(24, vec![])),
        (
            0x2000,
            0x2100,
            sp_rule(32, vec![(3, RegisterRule::Offset(-16))]),
        ),
        (0x3000, 0x3100, None),
        (0x4000, 0x4100, outermost()),
    ]);
    let mut stack = FakeStack::new(SP0, 0x200);
    stack.put(SP0 + 0x10, 0x2050); // c's return address, into b
    stack.put(SP0 + 0x28, 0xb0b); // b saved the caller's rbx
    stack.put(SP0 + 0x30, 0x3050); // b's return address, into a
    stack.put(SP0 + 0x40, SP0 + 0x100); // a's saved rbp (main's)
    stack.put(SP0 + 0x48, 0x4050); // a's return address, into main
    let mut regs: Registers = [Some(0); DWARF_REGS];
    regs[DWARF_SP as usize] = Some(SP0);
    regs[DWARF_FP as usize] = Some(SP0 + 0x40); // a's frame pointer
    regs[3] = Some(0x3333); // rbx as c sees it
    regs[DWARF_RA as usize] = Some(0x1010);
    (code, stack, regs)
}

fn walk(regs: Registers, max_depth: usize) -> Walk<'static> {
    Walk {
        registers: regs,
        at_entry: false,
        max_depth,
        trampoline: None,
    }
}

fn pcs(frames: &[RawFrame]) -> Vec<u64> {
    frames.iter().map(|f| f.pc.get()).collect()
}

#[test]
fn cfi_then_frame_pointer_to_the_outermost_frame() {
    let (code, stack, regs) = chain();
    let mem = ChunkedMemory::new(&stack);
    let (frames, truncated) = unwind(&walk(regs, 64), &code, &mem);
    assert_eq!(pcs(&frames), [0x1010, 0x2050, 0x3050, 0x4050]);
    assert!(!truncated);
    let sources: Vec<FrameSource> = frames.iter().map(|f| f.source).collect();
    assert_eq!(
        sources,
        [
            FrameSource::Registers,
            FrameSource::Cfi,
            FrameSource::Cfi,
            FrameSource::FramePointer
        ]
    );
    // The innermost frame is named by its own address, callers by their call.
    assert_eq!(frames[0].lookup_pc(), RuntimeAddr(0x1010));
    assert_eq!(frames[1].lookup_pc(), RuntimeAddr(0x204f));
    // The whole walk read the stack once.
    assert_eq!(mem.reads(), 1);
    assert_eq!(stack.reads.get(), 1);
}

#[test]
fn registers_are_recovered_as_the_rules_say() {
    let (code, stack, regs) = chain();
    let mem = ChunkedMemory::new(&stack);
    let Lookup::Rule(c) = code.rule(RuntimeAddr(0x1010)) else {
        panic!("c has a rule")
    };
    let (in_b, slot) = step(&c, &regs, &mem).expect("c steps");
    assert_eq!(in_b[DWARF_SP as usize], Some(SP0 + 24));
    assert_eq!(in_b[DWARF_RA as usize], Some(0x2050));
    assert_eq!(slot, Some(RuntimeAddr(SP0 + 0x10)));
    // Callee-saved and unnamed: unchanged; caller-saved: unknown.
    assert_eq!(in_b[3], Some(0x3333));
    assert_eq!(in_b[DWARF_FP as usize], Some(SP0 + 0x40));
    assert_eq!(in_b[0], None, "rax is not preserved by a call");
    let Lookup::Rule(b) = code.rule(RuntimeAddr(0x204f)) else {
        panic!("b has a rule")
    };
    let (in_a, _) = step(&b, &in_b, &mem).expect("b steps");
    assert_eq!(in_a[3], Some(0xb0b), "rbx restored from b's save slot");
    assert_eq!(in_a[DWARF_SP as usize], Some(SP0 + 0x38));
}

#[test]
fn the_trampoline_is_replaced_by_the_real_return_address() {
    let (code, mut stack, regs) = chain();
    // b's call is in flight with its return watched: its slot holds the
    // trampoline, and the return stack knows what was there.
    stack.put(SP0 + 0x30, TRAMPOLINE);
    let original =
        |slot: RuntimeAddr| (slot == RuntimeAddr(SP0 + 0x30)).then_some(RuntimeAddr(0x3050));
    let mut w = walk(regs, 64);
    w.trampoline = Some(Trampoline {
        stub: None,
        addr: RuntimeAddr(TRAMPOLINE),
        original: &original,
    });
    let mem = ChunkedMemory::new(&stack);
    let (frames, _) = unwind(&w, &code, &mem);
    assert_eq!(pcs(&frames), [0x1010, 0x2050, 0x3050, 0x4050]);

    // A trampoline whose call is unknown ends the walk there.
    let nothing = |_: RuntimeAddr| None;
    w.trampoline = Some(Trampoline {
        stub: None,
        addr: RuntimeAddr(TRAMPOLINE),
        original: &nothing,
    });
    let mem = ChunkedMemory::new(&stack);
    let (frames, truncated) = unwind(&w, &code, &mem);
    assert_eq!(pcs(&frames), [0x1010, 0x2050]);
    assert!(!truncated);
}

#[test]
fn the_depth_limit_truncates() {
    let (code, stack, regs) = chain();
    for (max, want) in [(1, &[0x1010][..]), (2, &[0x1010, 0x2050][..])] {
        let mem = ChunkedMemory::new(&stack);
        let (frames, truncated) = unwind(&walk(regs, max), &code, &mem);
        assert_eq!(pcs(&frames), want);
        assert!(truncated);
    }
    // Exactly as deep as the stack: not truncated.
    let mem = ChunkedMemory::new(&stack);
    let (frames, truncated) = unwind(&walk(regs, 4), &code, &mem);
    assert_eq!(frames.len(), 4);
    assert!(!truncated);
}

#[test]
fn garbage_ends_the_walk() {
    // A return address in no module: that frame, then nothing.
    let (code, mut stack, regs) = chain();
    stack.put(SP0 + 0x10, 0xdead_0000);
    let (frames, _) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
    assert_eq!(pcs(&frames), [0x1010, 0xdead_0000]);

    // A return address of 0.
    let (code, mut stack, regs) = chain();
    stack.put(SP0 + 0x30, 0);
    let (frames, _) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
    assert_eq!(pcs(&frames), [0x1010, 0x2050]);

    // A frame pointer below the stack pointer (code without frame pointers
    // using rbp for data) is not followed.
    let (code, stack, mut regs) = chain();
    regs[DWARF_FP as usize] = Some(SP0 - 0x100);
    let (frames, _) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
    assert_eq!(pcs(&frames), [0x1010, 0x2050, 0x3050]);

    // A misaligned one neither.
    let (code, stack, mut regs) = chain();
    regs[DWARF_FP as usize] = Some(SP0 + 0x41);
    let (frames, _) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
    assert_eq!(pcs(&frames), [0x1010, 0x2050, 0x3050]);

    // A frame pointer chain that points at itself loops no further than one
    // step: the stack pointer must move up.
    let code = FakeCode(vec![(0x3000, 0x3100, None)]);
    let mut stack = FakeStack::new(SP0, 0x100);
    stack.put(SP0 + 0x20, SP0 + 0x20);
    stack.put(SP0 + 0x28, 0x3050);
    let mut regs: Registers = [None; DWARF_REGS];
    regs[DWARF_SP as usize] = Some(SP0);
    regs[DWARF_FP as usize] = Some(SP0 + 0x20);
    regs[DWARF_RA as usize] = Some(0x3010);
    let (frames, truncated) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
    assert_eq!(pcs(&frames), [0x3010, 0x3050]);
    assert!(!truncated);

    // A CFA below the stack pointer (a corrupt rule).
    let code = FakeCode(vec![(0x1000, 0x1100, sp_rule(-64, vec![]))]);
    let mut regs: Registers = [None; DWARF_REGS];
    regs[DWARF_SP as usize] = Some(SP0 + 0x80);
    regs[DWARF_RA as usize] = Some(0x1010);
    let (frames, _) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
    assert_eq!(pcs(&frames), [0x1010]);
}

#[test]
fn unreadable_stack_ends_the_walk() {
    let (code, stack, regs) = chain();
    // The stack image ends before b's return address slot.
    let short = FakeStack {
        base: stack.base,
        bytes: stack.bytes[..0x30].to_vec(),
        reads: Cell::new(0),
    };
    let mem = ChunkedMemory::new(&short);
    let (frames, _) = unwind(&walk(regs, 64), &code, &mem);
    assert_eq!(pcs(&frames), [0x1010, 0x2050]);
    // No register at all: one frame (the instruction pointer) at most.
    let (frames, _) = unwind(&walk([None; DWARF_REGS], 64), &code, &mem);
    assert!(frames.is_empty());
}

#[test]
fn at_a_function_entry_without_cfi_the_return_address_is_at_sp() {
    let code = FakeCode(vec![(0x3000, 0x3100, None), (0x4000, 0x4100, outermost())]);
    let mut stack = FakeStack::new(SP0, 0x100);
    stack.put(SP0, 0x4050);
    let mut regs: Registers = [None; DWARF_REGS];
    regs[DWARF_SP as usize] = Some(SP0);
    // rbp is the caller's, and useless: the entry rule does not need it.
    regs[DWARF_FP as usize] = Some(1);
    regs[DWARF_RA as usize] = Some(0x3000);
    let mut w = walk(regs, 64);
    w.at_entry = true;
    let (frames, _) = unwind(&w, &code, &ChunkedMemory::new(&stack));
    assert_eq!(pcs(&frames), [0x3000, 0x4050]);
    assert_eq!(frames[1].source, FrameSource::Entry);
    // Not at an entry, the same registers lead nowhere (rbp is garbage).
    let (frames, _) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
    assert_eq!(pcs(&frames), [0x3000]);
}

/// DW_OP_breg7 (rsp) `off` (sleb128 < 64); DW_OP_deref when `deref`.
fn breg7(off: u8, deref: bool) -> Vec<u8> {
    let mut e = vec![0x77, off];
    if deref {
        e.push(0x06);
    }
    e
}

#[test]
fn a_signal_frame_by_expressions() {
    // The kernel's signal frame as glibc's __restore_rt describes it: the
    // interrupted rsp at sp+160, rip at sp+168, rbx at sp+128 (the offsets
    // of struct ucontext_t's gregs from the frame's sp, here made small).
    let restorer = Some(Arc::new(FrameRule {
        cfa: CfaRule::Expression(breg7(0x30, true)),
        registers: vec![
            (DWARF_SP, RegisterRule::Expression(breg7(0x30, false))),
            (DWARF_RA, RegisterRule::Expression(breg7(0x38, false))),
            (3, RegisterRule::Expression(breg7(0x20, false))),
        ],
        signal_frame: true,
    }));
    let code = FakeCode(vec![
        (0x5000, 0x5010, restorer),
        (0x1000, 0x1100, sp_rule(16, vec![])),
        (0x4000, 0x4100, outermost()),
    ]);
    let mut stack = FakeStack::new(SP0, 0x400);
    let interrupted_sp = SP0 + 0x200;
    stack.put(SP0 + 0x20, 0x1234); // saved rbx
    stack.put(SP0 + 0x30, interrupted_sp);
    stack.put(SP0 + 0x38, 0x1040); // the interrupted instruction
    stack.put(interrupted_sp + 8, 0x4050); // its function's return address
    let mut regs: Registers = [None; DWARF_REGS];
    regs[DWARF_SP as usize] = Some(SP0);
    // The handler returned into the restorer: the walk starts there.
    regs[DWARF_RA as usize] = Some(0x5000);
    let mem = ChunkedMemory::new(&stack);
    let (frames, _) = unwind(&walk(regs, 64), &code, &mem);
    assert_eq!(pcs(&frames), [0x5000, 0x1040, 0x4050]);
    // The interrupted frame is named by its own instruction, not the one before.
    assert!(!frames[1].after_call);
    assert_eq!(frames[1].lookup_pc(), RuntimeAddr(0x1040));
    assert!(frames[2].after_call);
    let Lookup::Rule(r) = code.rule(RuntimeAddr(0x5000)) else {
        panic!()
    };
    let (next, _) = step(&r, &regs, &mem).unwrap();
    assert_eq!(next[3], Some(0x1234));
    assert_eq!(next[DWARF_SP as usize], Some(interrupted_sp));
}

#[test]
fn a_plt_entry_cfa_expression() {
    // What .eh_frame says for .plt: CFA = rsp + 8 + ((rip & 15) >= 11) * 8
    // (DW_OP_breg7 8; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_lit11;
    // DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus).
    let expr = vec![0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22];
    let plt = Some(Arc::new(FrameRule {
        cfa: CfaRule::Expression(expr),
        registers: vec![(DWARF_RA, RegisterRule::Offset(-8))],
        signal_frame: false,
    }));
    let code = FakeCode(vec![(0x6000, 0x6100, plt), (0x4000, 0x4100, outermost())]);
    for (rip, ra_at) in [(0x6020u64, SP0), (0x602b, SP0 + 8)] {
        let mut stack = FakeStack::new(SP0, 0x100);
        stack.put(ra_at, 0x4050);
        let mut regs: Registers = [None; DWARF_REGS];
        regs[DWARF_SP as usize] = Some(SP0);
        regs[DWARF_RA as usize] = Some(rip);
        let (frames, _) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
        assert_eq!(pcs(&frames), [rip, 0x4050], "rip {rip:#x}");
    }
}

#[test]
fn bad_expressions_end_the_walk() {
    for expr in [
        vec![],                 // empty
        vec![0x06],             // deref of nothing
        vec![0x2f, 0xfd, 0xff], // DW_OP_skip -3: a loop, stopped by the bound
        vec![0x96],             // DW_OP_nop, leaving nothing
        vec![0x77],             // truncated operand
        vec![0x92, 99, 0],      // DW_OP_bregx of a register not tracked
    ] {
        let rule = Some(Arc::new(FrameRule {
            cfa: CfaRule::Expression(expr.clone()),
            registers: vec![(DWARF_RA, RegisterRule::Offset(-8))],
            signal_frame: false,
        }));
        let code = FakeCode(vec![(0x1000, 0x1100, rule)]);
        let stack = FakeStack::new(SP0, 0x100);
        let mut regs: Registers = [None; DWARF_REGS];
        regs[DWARF_SP as usize] = Some(SP0);
        regs[DWARF_RA as usize] = Some(0x1010);
        let (frames, _) = unwind(&walk(regs, 64), &code, &ChunkedMemory::new(&stack));
        assert_eq!(pcs(&frames), [0x1010], "{expr:?}");
    }
}

#[test]
fn chunks_are_read_once_and_bounded() {
    let stack = FakeStack::new(SP0, 3 * CHUNK);
    let mem = ChunkedMemory::new(&stack);
    for k in 0..(CHUNK as u64 / 8 - 1) {
        assert_eq!(mem.read_u64(SP0 + 8 * k), Some(0));
    }
    assert_eq!(mem.reads(), 1, "one chunk answers a whole run of words");
    // A word straddling the chunk's end is read with the next chunk.
    assert_eq!(mem.read_u64(SP0 + CHUNK as u64 - 4), Some(0));
    assert_eq!(mem.reads(), 2);
    // Outside the image: nothing, and each miss costs one read at most.
    assert_eq!(mem.read_u64(SP0 - 8), None);
    assert_eq!(mem.read_u64(u64::MAX - 3), None);
    // Far and wide: at most MAX_CHUNKS reads in all.
    let far = FakeStack::new(0, 1 << 20);
    let mem = ChunkedMemory::new(&far);
    for k in 0..100u64 {
        let _ = mem.read_u64(k * 2 * CHUNK as u64);
    }
    assert_eq!(far.reads.get(), MAX_CHUNKS);
    // Sizes under a word, little-endian.
    let mut small = FakeStack::new(SP0, 16);
    small.put(SP0, 0x1122_3344_5566_7788);
    let mem = ChunkedMemory::new(&small);
    assert_eq!(mem.read_sized(SP0, 2), Some(0x7788));
    assert_eq!(mem.read_sized(SP0 + 1, 4), Some(0x4455_6677));
}
