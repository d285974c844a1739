//! Analysis, relocation, emulation and fix-ups, on byte arrays at fixed
//! addresses.

use std::cell::RefCell;
use std::collections::HashMap;

use super::exec::{emulate, holds, xol_cancel, xol_finish, xol_prepare, Stack, XolEnd};
use super::insn::*;
use super::regs::Regs;
use crate::addr::RuntimeAddr;
use crate::error::{Error, Result};

const SITE: u64 = 0x5555_5555_1000;
const SLOT: u64 = 0x7fff_f7ff_0040;

/// A stack made of a map of words.
#[derive(Default)]
struct Words(RefCell<HashMap<u64, u64>>);

impl Stack for Words {
    fn read_word(&self, addr: u64) -> Result<u64> {
        Ok(*self.0.borrow().get(&addr).unwrap_or(&0))
    }
    fn write_word(&self, addr: u64, value: u64) -> Result<()> {
        self.0.borrow_mut().insert(addr, value);
        Ok(())
    }
}

fn plan(bytes: &[u8], mode: StepMode) -> InsnPlan {
    analyze(bytes, RuntimeAddr(SITE), mode).unwrap()
}

fn regs() -> Regs {
    let mut r = Regs::default();
    r.raw_mut().eflags = 0x202; // interrupts enabled, as at rest
    r.set_ip(SITE);
    r.set_sp(0x7ffd_0000_1000);
    r
}

fn emulation_of(bytes: &[u8]) -> Emulation {
    match plan(bytes, StepMode::Auto).strategy {
        Strategy::Emulate(e) => e,
        other => panic!("{bytes:02x?} is not emulated: {other:?}"),
    }
}

fn xol_of(bytes: &[u8]) -> Xol {
    match plan(bytes, StepMode::Auto).strategy {
        Strategy::Xol(x) => x,
        other => panic!("{bytes:02x?} is not stepped out of line: {other:?}"),
    }
}

const RBP: Gpr = Gpr(5);
const RAX: Gpr = Gpr(0);
const RCX: Gpr = Gpr(1);
const RDI: Gpr = Gpr(7);

#[test]
fn function_entry_instructions_are_emulated() {
    assert_eq!(
        emulation_of(&[0xf3, 0x0f, 0x1e, 0xfa]),
        Emulation::Nop,
        "endbr64"
    );
    assert_eq!(emulation_of(&[0x90]), Emulation::Nop);
    assert_eq!(
        emulation_of(&[0x0f, 0x1f, 0x44, 0x00, 0x00]),
        Emulation::Nop,
        "nopl 0(rax,rax)"
    );
    assert_eq!(emulation_of(&[0x66, 0x90]), Emulation::Nop, "xchg ax,ax");
    assert_eq!(emulation_of(&[0x55]), Emulation::Push(RBP));
    assert_eq!(
        emulation_of(&[0x41, 0x57]),
        Emulation::Push(Gpr(15)),
        "push r15"
    );
    assert_eq!(
        emulation_of(&[0x48, 0x89, 0xe5]),
        Emulation::Mov64 {
            dst: RBP,
            src: Gpr::RSP
        },
        "mov rbp,rsp"
    );
    assert_eq!(
        emulation_of(&[0x89, 0xf8]),
        Emulation::Mov32 { dst: RAX, src: RDI },
        "mov eax,edi"
    );
    assert_eq!(
        emulation_of(&[0x48, 0x83, 0xec, 0x10]),
        Emulation::AddImm {
            reg: Gpr::RSP,
            imm: 16,
            sub: true
        },
        "sub rsp,0x10"
    );
    assert_eq!(
        emulation_of(&[0x48, 0x81, 0xec, 0x00, 0x01, 0x00, 0x00]),
        Emulation::AddImm {
            reg: Gpr::RSP,
            imm: 256,
            sub: true
        },
        "sub rsp,0x100"
    );
    assert_eq!(
        emulation_of(&[0x31, 0xc0]),
        Emulation::Zero(RAX),
        "xor eax,eax"
    );
}

#[test]
fn relative_branches_are_emulated_with_absolute_targets() {
    // call rel32 +0x100: target = SITE + 5 + 0x100
    assert_eq!(
        emulation_of(&[0xe8, 0x00, 0x01, 0x00, 0x00]),
        Emulation::Call(RuntimeAddr(SITE + 0x105))
    );
    assert_eq!(
        emulation_of(&[0xeb, 0xfe]),
        Emulation::Jmp(RuntimeAddr(SITE)),
        "jmp to itself"
    );
    assert_eq!(
        emulation_of(&[0xe9, 0xfb, 0xff, 0xff, 0xff]),
        Emulation::Jmp(RuntimeAddr(SITE))
    );
    assert_eq!(
        emulation_of(&[0x74, 0x10]),
        Emulation::Jcc(Cond::E, RuntimeAddr(SITE + 0x12))
    );
    assert_eq!(
        emulation_of(&[0x0f, 0x8f, 0x00, 0x10, 0x00, 0x00]),
        Emulation::Jcc(Cond::G, RuntimeAddr(SITE + 0x1006))
    );
    assert_eq!(emulation_of(&[0xc3]), Emulation::Ret(0));
    assert_eq!(emulation_of(&[0xc2, 0x08, 0x00]), Emulation::Ret(8));
    assert_eq!(
        emulation_of(&[0xe2, 0x02]),
        Emulation::Counter(CounterBranch::Loop, RuntimeAddr(SITE + 4))
    );
}

#[test]
fn emulated_prologue_matches_the_cpu() {
    let stack = Words::default();
    let mut r = regs();
    r.set_gpr(RBP, 0x1111);
    let sp0 = r.sp();
    emulate(emulation_of(&[0x55]), RuntimeAddr(SITE), 1, &mut r, &stack).unwrap();
    assert_eq!((r.ip(), r.sp()), (SITE + 1, sp0 - 8));
    assert_eq!(stack.read_word(sp0 - 8).unwrap(), 0x1111);
    emulate(
        emulation_of(&[0x48, 0x89, 0xe5]),
        RuntimeAddr(SITE + 1),
        3,
        &mut r,
        &stack,
    )
    .unwrap();
    assert_eq!(r.gpr(RBP), sp0 - 8);
    assert_eq!(r.ip(), SITE + 4);
    emulate(
        emulation_of(&[0x48, 0x83, 0xec, 0x10]),
        RuntimeAddr(SITE + 4),
        4,
        &mut r,
        &stack,
    )
    .unwrap();
    assert_eq!(r.sp(), sp0 - 8 - 16);
    // 0x7ffd00000ff8 - 0x10 = 0x7ffd00000fe8: no carry, no overflow, not
    // zero, positive, no borrow out of the low nibble; low byte 0xe8 has 4
    // bits set: even parity.
    let f = r.raw().eflags;
    assert_eq!(f & 0x8d5, 0x4, "flags {f:#x}");
    assert_eq!(f & 0x200, 0x200, "IF untouched");
}

#[test]
fn emulated_sub_sets_carry_zero_sign_and_overflow() {
    let stack = Words::default();
    let sub = |a: u64, imm: i64| {
        let mut r = regs();
        r.set_gpr(RAX, a);
        let e = Emulation::AddImm {
            reg: RAX,
            imm,
            sub: true,
        };
        emulate(e, RuntimeAddr(SITE), 4, &mut r, &stack).unwrap();
        (r.gpr(RAX), r.raw().eflags & 0x8d5)
    };
    assert_eq!(sub(5, 5), (0, 0x40 | 0x4), "zero, even parity");
    assert_eq!(
        sub(0, 1),
        (u64::MAX, 0x1 | 0x80 | 0x4 | 0x10),
        "borrow, sign"
    );
    assert_eq!(
        sub(1 << 63, 1),
        ((1 << 63) - 1, 0x800 | 0x4 | 0x10),
        "overflow"
    );
    let mut r = regs();
    r.set_gpr(RAX, u64::MAX);
    let e = Emulation::AddImm {
        reg: RAX,
        imm: 1,
        sub: false,
    };
    emulate(e, RuntimeAddr(SITE), 4, &mut r, &stack).unwrap();
    assert_eq!(
        (r.gpr(RAX), r.raw().eflags & 0x8d5),
        (0, 0x1 | 0x40 | 0x4 | 0x10)
    );
}

#[test]
fn emulated_branches() {
    let stack = Words::default();
    let mut r = regs();
    let sp0 = r.sp();
    emulate(
        Emulation::Call(RuntimeAddr(0x4000)),
        RuntimeAddr(SITE),
        5,
        &mut r,
        &stack,
    )
    .unwrap();
    assert_eq!((r.ip(), r.sp()), (0x4000, sp0 - 8));
    assert_eq!(stack.read_word(sp0 - 8).unwrap(), SITE + 5);
    emulate(Emulation::Ret(16), RuntimeAddr(0x4000), 3, &mut r, &stack).unwrap();
    assert_eq!((r.ip(), r.sp()), (SITE + 5, sp0 + 16));

    let mut r = regs();
    r.raw_mut().eflags |= 0x40; // ZF
    emulate(
        Emulation::Jcc(Cond::E, RuntimeAddr(0x9000)),
        RuntimeAddr(SITE),
        2,
        &mut r,
        &stack,
    )
    .unwrap();
    assert_eq!(r.ip(), 0x9000, "je taken");
    emulate(
        Emulation::Jcc(Cond::Ne, RuntimeAddr(0x9000)),
        RuntimeAddr(SITE),
        2,
        &mut r,
        &stack,
    )
    .unwrap();
    assert_eq!(r.ip(), SITE + 2, "jne not taken");

    let mut r = regs();
    r.set_gpr(RCX, 2);
    let lp = Emulation::Counter(CounterBranch::Loop, RuntimeAddr(0x9000));
    emulate(lp, RuntimeAddr(SITE), 2, &mut r, &stack).unwrap();
    assert_eq!((r.ip(), r.gpr(RCX)), (0x9000, 1));
    emulate(lp, RuntimeAddr(SITE), 2, &mut r, &stack).unwrap();
    assert_eq!((r.ip(), r.gpr(RCX)), (SITE + 2, 0));
}

#[test]
fn conditions_follow_the_manual() {
    let (cf, zf, sf, of) = (0x1, 0x40, 0x80, 0x800);
    assert!(holds(Cond::L, sf) && !holds(Cond::L, sf | of));
    assert!(holds(Cond::G, 0) && !holds(Cond::G, zf));
    assert!(holds(Cond::Le, zf) && holds(Cond::Le, of));
    assert!(holds(Cond::A, 0) && !holds(Cond::A, cf) && !holds(Cond::A, zf));
    assert!(holds(Cond::Be, cf) && holds(Cond::Ae, zf));
}

#[test]
fn rip_relative_load_is_rewritten_to_a_scratch_register() {
    // mov eax, [rip+0x2000]  (8b 05 00 20 00 00): the target is SITE+6+0x2000.
    let x = xol_of(&[0x8b, 0x05, 0x00, 0x20, 0x00, 0x00]);
    let rr = x.riprel.expect("rip-relative");
    assert_eq!(rr.target, RuntimeAddr(SITE + 6 + 0x2000));
    assert_ne!(rr.reg, RAX, "eax is the destination");
    assert_eq!(rr.reg, RCX);
    // mov eax, [rcx]
    assert_eq!(x.code, vec![0x8b, 0x01]);
    assert_eq!(x.fixup, Fixup::Ip);

    let mut r = regs();
    r.set_gpr(RCX, 0xc0ffee);
    let saved = xol_prepare(&x, RuntimeAddr(SLOT), &mut r);
    assert_eq!((r.ip(), r.gpr(RCX), saved), (SLOT, SITE + 0x2006, 0xc0ffee));
    // The CPU runs the slot: ip moves past it.
    r.set_ip(SLOT + 2);
    let stack = Words::default();
    assert_eq!(
        xol_finish(
            &x,
            RuntimeAddr(SITE),
            6,
            RuntimeAddr(SLOT),
            saved,
            &mut r,
            &stack
        )
        .unwrap(),
        XolEnd::Done
    );
    assert_eq!((r.ip(), r.gpr(RCX)), (SITE + 6, 0xc0ffee));
}

#[test]
fn rip_relative_store_and_lea_avoid_every_register_they_use() {
    // mov [rip+0x10], rcx  (48 89 0d 10 00 00 00): rax free, rcx used.
    let x = xol_of(&[0x48, 0x89, 0x0d, 0x10, 0x00, 0x00, 0x00]);
    assert_eq!(x.riprel.unwrap().reg, RAX);
    assert_eq!(x.code, vec![0x48, 0x89, 0x08], "mov [rax], rcx");
    // lea rax, [rip-0x10] (48 8d 05 f0 ff ff ff)
    let x = xol_of(&[0x48, 0x8d, 0x05, 0xf0, 0xff, 0xff, 0xff]);
    assert_eq!(x.riprel.unwrap().target, RuntimeAddr(SITE + 7 - 0x10));
    assert_eq!(x.riprel.unwrap().reg, RCX);
    // cmpxchg [rip+0], ecx uses rax and rcx implicitly/explicitly.
    let x = xol_of(&[0x0f, 0xb1, 0x0d, 0x00, 0x00, 0x00, 0x00]);
    assert_eq!(x.riprel.unwrap().reg, Gpr(2), "rdx");
}

#[test]
fn indirect_call_through_memory_fixes_the_pushed_return_address() {
    // call [rip+0x100] (ff 15 00 01 00 00): 6 bytes; the copy is call [rax].
    let x = xol_of(&[0xff, 0x15, 0x00, 0x01, 0x00, 0x00]);
    assert_eq!(x.fixup, Fixup::Call);
    assert_eq!(x.code, vec![0xff, 0x10]);
    let stack = Words::default();
    let mut r = regs();
    let saved = xol_prepare(&x, RuntimeAddr(SLOT), &mut r);
    // The CPU called the target from the slot: return address slot+2.
    let sp = r.sp() - 8;
    stack.write_word(sp, SLOT + 2).unwrap();
    r.set_sp(sp);
    r.set_ip(0x4000);
    xol_finish(
        &x,
        RuntimeAddr(SITE),
        6,
        RuntimeAddr(SLOT),
        saved,
        &mut r,
        &stack,
    )
    .unwrap();
    assert_eq!(r.ip(), 0x4000, "the target stays");
    assert_eq!(
        stack.read_word(sp).unwrap(),
        SITE + 6,
        "returns after the original call"
    );
}

#[test]
fn indirect_jump_and_plain_copies() {
    // jmp [rip+0x2fe2] — a PLT entry.
    let x = xol_of(&[0xff, 0x25, 0xe2, 0x2f, 0x00, 0x00]);
    assert_eq!(x.fixup, Fixup::Absolute);
    // jmp rax: nothing position-dependent, copied as is.
    let x = xol_of(&[0xff, 0xe0]);
    assert_eq!(
        (x.code.as_slice(), x.riprel, x.fixup),
        (&[0xff, 0xe0][..], None, Fixup::Absolute)
    );
    // syscall
    let x = xol_of(&[0x0f, 0x05]);
    assert_eq!((x.code.as_slice(), x.fixup), (&[0x0f, 0x05][..], Fixup::Ip));
    // imul eax, edi, 0x64: copied.
    assert_eq!(xol_of(&[0x6b, 0xc7, 0x64]).code, vec![0x6b, 0xc7, 0x64]);
}

#[test]
fn rep_instruction_between_iterations_steps_again() {
    let x = xol_of(&[0xf3, 0xa4]); // rep movsb
    let stack = Words::default();
    let mut r = regs();
    let saved = xol_prepare(&x, RuntimeAddr(SLOT), &mut r);
    assert_eq!(
        xol_finish(
            &x,
            RuntimeAddr(SITE),
            2,
            RuntimeAddr(SLOT),
            saved,
            &mut r,
            &stack
        )
        .unwrap(),
        XolEnd::Again
    );
    r.set_ip(SLOT + 2);
    assert_eq!(
        xol_finish(
            &x,
            RuntimeAddr(SITE),
            2,
            RuntimeAddr(SLOT),
            saved,
            &mut r,
            &stack
        )
        .unwrap(),
        XolEnd::Done
    );
    assert_eq!(r.ip(), SITE + 2);
}

#[test]
fn cancel_puts_the_thread_back_at_the_site() {
    let x = xol_of(&[0x8b, 0x05, 0x00, 0x20, 0x00, 0x00]);
    let mut r = regs();
    r.set_gpr(RCX, 7);
    let saved = xol_prepare(&x, RuntimeAddr(SLOT), &mut r);
    xol_cancel(&x, RuntimeAddr(SITE), saved, &mut r);
    assert_eq!((r.ip(), r.gpr(RCX)), (SITE, 7));
}

#[test]
fn modes_force_a_strategy() {
    let push = [0x55];
    assert_eq!(plan(&push, StepMode::InPlace).strategy, Strategy::InPlace);
    assert!(matches!(
        plan(&push, StepMode::Xol).strategy,
        Strategy::Xol(_)
    ));
    assert!(matches!(
        plan(&push, StepMode::Emulate).strategy,
        Strategy::Emulate(_)
    ));
    // A relative branch cannot run out of line: emulated even in xol mode.
    assert!(matches!(
        plan(&[0xe8, 0, 0, 0, 0], StepMode::Xol).strategy,
        Strategy::Emulate(_)
    ));
    // A load cannot be emulated: refused in emulate mode, named.
    match analyze(&[0x8b, 0x07], RuntimeAddr(SITE), StepMode::Emulate) {
        Err(Error::UnsupportedInstruction { reason, .. }) => {
            assert!(reason.contains("mov eax,[rdi]"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // EIP-relative: neither emulated nor out of line: in place in auto mode.
    let eip_rel = [0x67, 0x8b, 0x05, 0, 0, 0, 0];
    assert_eq!(plan(&eip_rel, StepMode::Auto).strategy, Strategy::InPlace);
    assert!(analyze(&eip_rel, RuntimeAddr(SITE), StepMode::Xol).is_err());
}

#[test]
fn unsafe_instructions_are_refused() {
    let at = RuntimeAddr(SITE);
    for (bytes, what) in [
        (&[0xcc][..], "int3"),
        (&[0xf4][..], "hlt"),
        (&[0xcd, 0x80][..], "int 0x80"),
        (&[0x06][..], "invalid in 64-bit mode"),
        (&[0x0f, 0x01, 0xd5][..], "xend"),
        (&[0xfa][..], "cli"),
    ] {
        assert!(
            matches!(
                analyze(bytes, at, StepMode::Auto),
                Err(Error::UnsupportedInstruction { .. })
            ),
            "{what}"
        );
    }
    assert_eq!(
        plan(&[0x0f, 0x05], StepMode::Auto).len,
        2,
        "syscall is fine"
    );
}

#[test]
fn boundaries() {
    // push rbp; mov rbp,rsp; mov [rbp-4],edi; mov eax,[rbp-4]; add eax,eax; pop rbp; ret
    const WORK: [u8; 14] = [
        0x55, 0x48, 0x89, 0xe5, 0x89, 0x7d, 0xfc, 0x8b, 0x45, 0xfc, 0x01, 0xc0, 0x5d, 0xc3,
    ];
    let ok: Vec<u64> = (0..WORK.len() as u64)
        .filter(|&o| is_insn_boundary(&WORK, o))
        .collect();
    assert_eq!(ok, vec![0, 1, 4, 7, 10, 12, 13]);
}

#[test]
fn go_stack_checks_are_measured_and_nothing_else() {
    // go1.19 main.main: cmp rsp,[r14+0x10]; jbe rel32; sub rsp,0x50.
    let small = [
        0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x8d, 0, 0, 0, 0x48, 0x83, 0xec, 0x50,
    ];
    assert_eq!(go_stack_check_len(&small), Some(10));
    // A large frame: lea r12,[rsp-0x1a0]; cmp r12,[r14+0x10]; jbe rel32.
    let large = [
        0x4c, 0x8d, 0xa4, 0x24, 0x60, 0xfe, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xfe,
        0, 0, 0,
    ];
    assert_eq!(go_stack_check_len(&large), Some(18));
    // jbe rel8.
    assert_eq!(
        go_stack_check_len(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x20]),
        Some(6)
    );
    // C prologues, another guard offset, another branch: no check.
    assert_eq!(go_stack_check_len(&[0x55, 0x48, 0x89, 0xe5]), None);
    assert_eq!(go_stack_check_len(&[0xf3, 0x0f, 0x1e, 0xfa, 0x55]), None);
    assert_eq!(
        go_stack_check_len(&[0x49, 0x3b, 0x66, 0x18, 0x76, 0x20]),
        None
    );
    assert_eq!(
        go_stack_check_len(&[0x49, 0x3b, 0x66, 0x10, 0x74, 0x20]),
        None
    );
    // Cut short: no check either.
    assert_eq!(go_stack_check_len(&large[..13]), None);
    assert_eq!(go_stack_check_len(&[]), None);
}

#[test]
fn pushf_is_emulated_in_every_mode_and_pushes_no_trap_flag() {
    for mode in [
        StepMode::Auto,
        StepMode::Xol,
        StepMode::InPlace,
        StepMode::Emulate,
    ] {
        let p = plan(&[0x9c], mode);
        assert_eq!(p.strategy, Strategy::Emulate(Emulation::Pushf), "{mode:?}");
    }
    let stack = Words::default();
    let mut r = regs();
    let sp = r.sp();
    // As if a step were in progress: TF and RF set, with ZF and CF.
    r.raw_mut().eflags = 0x202 | 0x100 | 0x10000 | 0x41;
    emulate(Emulation::Pushf, RuntimeAddr(SITE), 1, &mut r, &stack).unwrap();
    assert_eq!(r.sp(), sp - 8);
    assert_eq!(r.ip(), SITE + 1);
    assert_eq!(stack.0.borrow()[&(sp - 8)], 0x202 | 0x41);
}

#[test]
fn a_system_call_is_refused_in_place_only() {
    let syscall = [0x0f, 0x05];
    let e = analyze(&syscall, RuntimeAddr(SITE), StepMode::InPlace).unwrap_err();
    assert!(e.to_string().contains("cannot be stepped in place"), "{e}");
    assert!(matches!(
        plan(&syscall, StepMode::Auto).strategy,
        Strategy::Xol(_)
    ));
    assert!(matches!(
        plan(&syscall, StepMode::Xol).strategy,
        Strategy::Xol(_)
    ));
}
