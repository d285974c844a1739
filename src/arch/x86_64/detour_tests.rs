//! The detour generator on byte arrays: what can be patched, what is refused
//! and why, and what the generated code does with the displaced instructions.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};

use super::detour::*;
use super::detour_wait::leave_wait;
use super::insn::{Gpr, RegSet};

const START: u64 = 0x40_1136;
const DETOUR: u64 = 0x3f_0000;

fn ring() -> RingLayout {
    RingLayout {
        base: 0x7f00_0000_0000,
        capacity: 1024,
        slot_size: 256,
    }
}

fn decode_all(code: &[u8], ip: u64) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        out.push(d.decode());
    }
    out
}

/// A detour's spec with the tests' usual values: at `DETOUR`, site 3,
/// every register, no capture, no return, no waiting.
fn base_spec() -> DetourSpec<'static> {
    DetourSpec {
        at: DETOUR,
        ring: ring(),
        index: 3,
        regs: RegSet::ALL,
        captures: &[],
        tp: ThreadPointer::Rdfsbase,
        returns: None,
        block: false,
        count_only: false,
        timed: None,
    }
}

fn detour(function: &[u8], offset: u64, captures: &[CaptureField]) -> (Patch, Detour) {
    let patch = plan_patch(function, START, START + offset).expect("patchable");
    let spec = DetourSpec {
        captures,
        ..base_spec()
    };
    let d = assemble_detour(&patch, &spec).expect("assembled");
    (patch, d)
}

/// `work` of count.c at -O0 without CET: push rbp; mov rbp,rsp; mov
/// [rbp-0x14],edi; mov eax,[rbp-0x14]; add eax,eax; ... pop rbp; ret.
const WORK_O0: &[u8] = &[
    0x55, 0x48, 0x89, 0xe5, 0x89, 0x7d, 0xec, 0x8b, 0x45, 0xec, 0x01, 0xc0, 0x89, 0x45, 0xfc, 0x8b,
    0x45, 0xfc, 0x83, 0xc0, 0x01, 0x5d, 0xc3,
];

#[test]
fn whole_instructions_covering_a_jump_are_displaced() {
    let p = plan_patch(WORK_O0, START, START).unwrap();
    // push (1) + mov rbp,rsp (3) + mov [rbp-0x14],edi (3).
    assert_eq!(p.len, 7);
    assert_eq!(p.saved, WORK_O0[..7]);
    // endbr64 (4) + push rbp (1): exactly a jump.
    let cet = [0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
    assert_eq!(plan_patch(&cet, START, START).unwrap().len, 5);
    // An instruction probe in the middle of the function.
    let p = plan_patch(WORK_O0, START, START + 7).unwrap();
    assert_eq!(p.len, 5); // mov eax,[rbp-0x14] (3) + add eax,eax (2)
}

#[test]
fn the_patch_is_a_rel32_jump_padded_with_int3() {
    let p = plan_patch(WORK_O0, START, START).unwrap();
    let writes = jump(&p, DETOUR).unwrap();
    assert_eq!(writes.len(), 1);
    let (at, bytes) = &writes[0];
    assert_eq!(*at, START);
    assert_eq!(bytes.len(), 7);
    assert_eq!(bytes[0], 0xe9);
    let rel = i32::from_le_bytes(bytes[1..5].try_into().unwrap());
    assert_eq!((START as i64 + 5 + i64::from(rel)) as u64, DETOUR);
    assert_eq!(&bytes[5..], &[0xcc, 0xcc]);
    // Beyond a rel32's reach there is no patch.
    assert_eq!(jump(&p, START + (3 << 30)), None);
    assert!(jump(&p, START.wrapping_sub(1 << 30)).is_some());
}

#[test]
fn refused_when_the_function_is_shorter_than_a_jump() {
    // xor eax,eax; ret
    let err = plan_patch(&[0x31, 0xc0, 0xc3], START, START)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bytes a jump needs"), "{err}");
    // Near the end of a longer function too.
    let err = plan_patch(WORK_O0, START, START + 19)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bytes a jump needs"), "{err}");
}

#[test]
fn refused_when_a_displaced_instruction_cannot_move() {
    // A call before the jump's 5 bytes are covered: its return address
    // would land inside them.
    let f = [0xff, 0xd0, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
    let err = plan_patch(&f, START, START).unwrap_err().to_string();
    assert!(err.contains("is a call whose return address"), "{err}");
    // A call through the stack.
    let f = [0xff, 0x14, 0x24, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
    let err = plan_patch(&f, START, START).unwrap_err().to_string();
    assert!(err.contains("through the stack"), "{err}");
    // syscall.
    let f = [0x0f, 0x05, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
    let err = plan_patch(&f, START, START).unwrap_err().to_string();
    assert!(
        err.contains("system call") || err.contains("traps"),
        "{err}"
    );
    // pushfq.
    let f = [0x9c, 0x48, 0x89, 0xe5, 0x5d, 0x9d, 0xc3];
    let err = plan_patch(&f, START, START).unwrap_err().to_string();
    assert!(err.contains("moves the flags"), "{err}");
    // int3, ud2.
    let f = [0xcc, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
    assert!(plan_patch(&f, START, START).is_err());
    let f = [0x0f, 0x0b, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
    assert!(plan_patch(&f, START, START).is_err());
    // Garbage.
    let f = [0x06, 0x06, 0x06, 0x06, 0x06, 0x06];
    assert!(plan_patch(&f, START, START).is_err());
}

#[test]
fn refused_when_a_branch_lands_inside_the_replaced_bytes() {
    // loop: push rbp (0); mov rbp,rsp (1); dec edi (4); jnz -> 1 (6); pop rbp; ret
    let f = [0x55, 0x48, 0x89, 0xe5, 0xff, 0xcf, 0x75, 0xf9, 0x5d, 0xc3];
    assert_eq!(
        decode_all(&f, START)[3].near_branch_target(),
        START + 1,
        "the test's own encoding"
    );
    let err = plan_patch(&f, START, START).unwrap_err().to_string();
    assert!(err.contains("jumps into the bytes"), "{err}");
    // A branch to the probed address itself re-enters the probe, as it
    // would hit a breakpoint there: allowed.
    let f = [0x55, 0x48, 0x89, 0xe5, 0xff, 0xcf, 0x75, 0xf8, 0x5d, 0xc3];
    assert_eq!(decode_all(&f, START)[3].near_branch_target(), START);
    assert_eq!(plan_patch(&f, START, START).unwrap().len, 6);
    // A branch to just past the replaced bytes: allowed.
    let f = [0x55, 0x48, 0x89, 0xe5, 0xff, 0xcf, 0x75, 0xfe, 0x5d, 0xc3];
    assert_eq!(decode_all(&f, START)[3].near_branch_target(), START + 6);
    assert!(plan_patch(&f, START, START).is_ok());
}

#[test]
fn refused_when_the_function_jumps_through_a_register() {
    // push rbp; mov rbp,rsp; jmp rax; pop rbp; ret
    let f = [0x55, 0x48, 0x89, 0xe5, 0xff, 0xe0, 0x5d, 0xc3];
    let err = plan_patch(&f, START, START).unwrap_err().to_string();
    assert!(err.contains("jumps indirectly"), "{err}");
    // A tail call through a GOT slot is not a jump table: allowed.
    let f = [
        0x55, 0x48, 0x89, 0xe5, 0x5d, 0xff, 0x25, 0x10, 0x20, 0x00, 0x00,
    ];
    assert!(plan_patch(&f, START, START).is_ok());
}

#[test]
fn refused_when_an_address_inside_is_taken() {
    // lea rax,[rip-5] (the address START + 2, inside); push rbp; ret
    let f = [0x48, 0x8d, 0x05, 0xfb, 0xff, 0xff, 0xff, 0x55, 0xc3];
    assert_eq!(decode_all(&f, START)[0].ip_rel_memory_address(), START + 2);
    let err = plan_patch(&f, START, START).unwrap_err().to_string();
    assert!(err.contains("takes an address inside"), "{err}");
}

/// The relocated copy of the displaced instructions, as the detour holds it.
fn relocated(patch: &Patch, d: &Detour) -> Vec<Instruction> {
    let at = (d.displaced - DETOUR) as usize;
    decode_all(&d.code[at..], d.displaced)
        .into_iter()
        .take_while(|i| i.ip() < d.displaced + 64)
        .take(patch_insns(patch) + 1)
        .collect()
}

fn patch_insns(patch: &Patch) -> usize {
    decode_all(&patch.saved, patch.addr).len()
}

#[test]
fn rip_relative_operands_keep_their_target() {
    // mov rax,[rip+0x2ee2]; add eax,[rip+0x10]; ret
    let f = [
        0x48, 0x8b, 0x05, 0xe2, 0x2e, 0x00, 0x00, 0x03, 0x05, 0x10, 0x00, 0x00, 0x00, 0xc3,
    ];
    let original = decode_all(&f, START);
    let (patch, d) = detour(&f, 0, &[]);
    assert_eq!(patch.len, 7);
    let moved = relocated(&patch, &d);
    assert_eq!(moved[0].code(), Code::Mov_r64_rm64);
    assert!(moved[0].is_ip_rel_memory_operand());
    assert_eq!(
        moved[0].ip_rel_memory_address(),
        original[0].ip_rel_memory_address()
    );
    // Then the jump back past the displaced bytes.
    assert_eq!(moved[1].mnemonic(), Mnemonic::Jmp);
    assert_eq!(moved[1].near_branch_target(), START + 7);
}

#[test]
fn relative_branches_keep_their_target() {
    // test edi,edi; je +0x20; push rbx; ... (the target is far past)
    let mut f = vec![0x85, 0xff, 0x74, 0x20, 0x53];
    f.resize(0x40, 0x90);
    f.push(0xc3);
    let (patch, d) = detour(&f, 0, &[]);
    assert_eq!(patch.len, 5);
    let moved = relocated(&patch, &d);
    assert_eq!(moved[0].mnemonic(), Mnemonic::Test);
    assert_eq!(moved[1].mnemonic(), Mnemonic::Je);
    assert_eq!(moved[1].near_branch_target(), START + 0x24);
    assert_eq!(moved[2].code(), Code::Push_r64);
    assert_eq!(moved[3].near_branch_target(), START + 5);
}

#[test]
fn the_detour_saves_claims_records_and_restores() {
    let captures = layout_captures(
        &[
            CaptureKind::CStr {
                reg: Gpr(7),
                max: 65,
            },
            CaptureKind::Stack { len: 16 },
        ],
        RegSet::ALL,
    );
    // After the 16 registers and rflags.
    let start = ring::REGS + 17 * 8;
    assert_eq!(captures.0[0].offset as u64, start);
    // 8 status + 72 bytes, then 8 + 16; rounded to 64.
    assert_eq!(captures.0[1].offset as u64, start + 80);
    assert_eq!(captures.1, 320);
    let (_, d) = detour(WORK_O0, 0, &captures.0);
    let insns = decode_all(&d.code, DETOUR);
    assert_eq!(d.entry, DETOUR);
    // Below the red zone first, then the flags.
    assert_eq!(insns[0].mnemonic(), Mnemonic::Lea);
    assert_eq!(insns[0].memory_displacement64() as i64, -128);
    assert_eq!(insns[1].code(), Code::Pushfq);
    assert_eq!(d.pushf, insns[1].ip());
    assert!(insns
        .iter()
        .any(|i| i.mnemonic() == Mnemonic::Cmpxchg && i.has_lock_prefix()));
    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Rdtsc));
    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Rdfsbase));
    // The lost counter of index 3.
    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Inc
        && i.has_lock_prefix()
        && i.memory_displacement64() == ring::LOST + 24));
    assert!(insns.iter().any(|i| i.code() == Code::Popfq));
    // One fault fix-up per capture: the load, and a later instruction.
    assert_eq!(d.faults.len(), 2);
    for &(load, fixup) in &d.faults {
        let i = insns.iter().find(|i| i.ip() == load).expect("a load");
        assert_eq!(i.mnemonic(), Mnemonic::Movzx);
        assert_eq!(i.op1_kind(), OpKind::Memory);
        assert!(fixup > load && fixup < d.displaced);
    }
    // The displaced instructions, then the jump back.
    let at = insns.iter().position(|i| i.ip() == d.displaced).unwrap();
    assert_eq!(insns[at].code(), Code::Push_r64);
    assert_eq!(insns[at + 3].mnemonic(), Mnemonic::Jmp);
    assert_eq!(insns[at + 3].near_branch_target(), START + 7);
    // Every field rtrace reads is written, the watch too (the slot may
    // hold a return record's string limit there).
    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Mov
        && i.op0_kind() == OpKind::Memory
        && i.memory_displacement64() == ring::RET_WATCH
        && matches!(i.op1_kind(), OpKind::Immediate32)
        && i.immediate32() == WATCH_NONE));
}

#[test]
fn the_thread_pointer_without_fsgsbase_is_fs_0() {
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let spec = DetourSpec {
        index: 0,
        tp: ThreadPointer::FsSelf,
        ..base_spec()
    };
    let d = assemble_detour(&patch, &spec).unwrap();
    let insns = decode_all(&d.code, DETOUR);
    assert!(insns
        .iter()
        .any(|i| i.mnemonic() == Mnemonic::Mov && i.segment_prefix() == iced_x86::Register::FS));
    assert!(!insns.iter().any(|i| i.mnemonic() == Mnemonic::Rdfsbase));
}

#[test]
fn too_many_sites_for_one_ring_is_refused() {
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let spec = DetourSpec {
        index: ring::MAX_SITES as u32,
        ..base_spec()
    };
    assert!(assemble_detour(&patch, &spec).is_err());
}

/// A stack made of a map of words.
#[derive(Default)]
struct Words(std::cell::RefCell<std::collections::HashMap<u64, u64>>);

impl super::exec::Stack for Words {
    fn read_word(&self, addr: u64) -> crate::Result<u64> {
        Ok(*self.0.borrow().get(&addr).unwrap_or(&0))
    }
    fn write_word(&self, addr: u64, value: u64) -> crate::Result<()> {
        self.0.borrow_mut().insert(addr, value);
        Ok(())
    }
}

#[test]
fn a_thread_among_the_restoring_pops_is_finished_without_steps() {
    let (_, d) = detour(WORK_O0, 0, &[]);
    assert_eq!(d.restore.len(), 8);
    let insns = decode_all(&d.code, DETOUR);
    let at = |ip: u64| insns.iter().find(|i| i.ip() == ip).unwrap().mnemonic();
    assert_eq!(at(d.restore[0]), Mnemonic::Pop);
    assert_eq!(at(d.restore[6]), Mnemonic::Popfq);
    assert_eq!(at(d.restore[7]), Mnemonic::Lea);
    // Stopped after two pops (r11, r10): rsi, rdx, rcx, rax and the flags
    // are still on the stack.
    let sp = 0x7ffd_0000_1000u64;
    let stack = Words::default();
    for (i, v) in [6u64, 2, 1, 0, 0x246].iter().enumerate() {
        stack.0.borrow_mut().insert(sp + 8 * i as u64, 0x1000 + v);
    }
    let mut regs = super::regs::Regs::default();
    regs.set_sp(sp);
    regs.set_ip(d.restore[2]);
    assert!(finish_restore(&d, &mut regs, &stack).unwrap());
    assert_eq!(regs.ip(), d.displaced);
    assert_eq!(regs.sp(), sp + 5 * 8 + 128);
    assert_eq!(regs.gpr(Gpr(6)), 0x1006); // rsi
    assert_eq!(regs.gpr(Gpr(2)), 0x1002); // rdx
    assert_eq!(regs.gpr(Gpr(1)), 0x1001); // rcx
    assert_eq!(regs.gpr(Gpr(0)), 0x1000); // rax
    assert_eq!(regs.raw().eflags, 0x1246);
    // At the lea, only the red zone is left.
    regs.set_sp(sp);
    regs.set_ip(d.restore[7]);
    assert!(finish_restore(&d, &mut regs, &stack).unwrap());
    assert_eq!(regs.sp(), sp + 128);
    // Anywhere else it is not among them.
    regs.set_ip(d.entry);
    assert!(!finish_restore(&d, &mut regs, &stack).unwrap());
}

const STUB: u64 = 0x3f_8000;
const TABLE: u64 = 0x7f00_1000_0000;

fn returns_detour() -> Detour {
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let spec = DetourSpec {
        returns: Some(ReturnSpec {
            stub: STUB,
            table: TABLE,
            ret_string: 65,
            errno: 0,
            ret_buffer: None,
        }),
        ..base_spec()
    };
    assemble_detour(&patch, &spec).unwrap()
}

fn stub() -> Stub {
    assemble_stub(&StubSpec {
        at: STUB,
        ring: ring(),
        table: TABLE,
        tp: ThreadPointer::Rdfsbase,
        none_index: (ring::MAX_SITES - 1) as u32,
        block: false,
    })
    .unwrap()
}

/// A detour that watches returns compares the return address with the
/// stub (a tail call), claims a table entry with `lock cmpxchg`, keeps the
/// site and the string limit there, and swaps the return address for the
/// stub, before it publishes the record.
#[test]
fn a_returning_detour_swaps_the_return_address_for_the_stub() {
    let d = returns_detour();
    let insns = decode_all(&d.code, DETOUR);
    let imm64 = |v: u64| insns.iter().filter(|i| i.immediate64() == v).count();
    // The stub's address: compared (a chained call) and written.
    assert_eq!(imm64(STUB), 2);
    // The table's address, once per pass (the entry looked for, then a
    // free one claimed), and once more for a chained call's lookup of the
    // entry it shares (its string limit goes there).
    assert_eq!(imm64(TABLE), 3);
    // The entry's site index and string limit.
    let stores: Vec<(u64, u64)> = insns
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Mov && i.op0_kind() == OpKind::Memory)
        .filter(|i| matches!(i.op1_kind(), OpKind::Immediate32 | OpKind::Immediate32to64))
        .map(|i| (i.memory_displacement64(), i.immediate32() as u64))
        .collect();
    assert!(stores.contains(&(table::INDEX, 3)), "{stores:x?}");
    assert!(stores.contains(&(table::RET_STRING, 65)), "{stores:x?}");
    for watch in [WATCH_STUB, WATCH_CHAINED, WATCH_FULL] {
        assert!(
            stores.contains(&(ring::RET_WATCH, u64::from(watch))),
            "{watch}: {stores:x?}"
        );
    }
    // Two locked compare-and-swaps: the ring's slot, the table's entry.
    let locked = insns
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Cmpxchg && i.has_lock_prefix())
        .count();
    assert_eq!(locked, 2);
    // All of it before the record is published (the store of r11 to SEQ).
    let publish = insns
        .iter()
        .position(|i| {
            i.mnemonic() == Mnemonic::Mov
                && i.op0_kind() == OpKind::Memory
                && i.memory_displacement64() == ring::SEQ
                && i.op1_register() == iced_x86::Register::R11
        })
        .unwrap();
    let last_stub = insns.iter().rposition(|i| i.immediate64() == STUB).unwrap();
    assert!(last_stub < publish);
    // And the same restore as any detour.
    assert_eq!(d.restore.len(), 8);
}

/// The stub: below the slot, flags and six registers saved, the slot
/// looked up in the table (its home entry by the same hash as rtrace's
/// `table::home`), the original return address put back in the slot, the
/// return recorded, everything restored, and `ret`.
#[test]
fn the_stub_puts_the_return_address_back_and_records_the_return() {
    let s = stub();
    let insns = decode_all(&s.code, STUB);
    assert_eq!(s.entry, STUB);
    assert_eq!(insns[0].mnemonic(), Mnemonic::Lea);
    assert_eq!(insns[0].memory_displacement64() as i64, -136);
    assert_eq!(insns[1].code(), Code::Pushfq);
    assert_eq!(s.pushf, insns[1].ip());
    assert!(insns.iter().any(|i| i.immediate64() == table::GOLDEN));
    assert!(insns.iter().any(|i| i.immediate64() == TABLE));
    // The return record's kind.
    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Mov
        && i.op0_kind() == OpKind::Memory
        && i.memory_displacement64() == ring::KIND
        && i.immediate32() == KIND_RETURN));
    // A return it has no slot for, counted under its site.
    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Inc
        && i.has_lock_prefix()
        && i.memory_index() == iced_x86::Register::RSI
        && i.memory_displacement64() == ring::RET_LOST));
    let at = |ip: u64| insns.iter().find(|i| i.ip() == ip).unwrap();
    assert_eq!(at(s.ret).mnemonic(), Mnemonic::Ret);
    assert_eq!(at(s.orphan).mnemonic(), Mnemonic::Int3);
    // Two restores of eight steps: the return's, and the orphan's.
    assert_eq!(s.restore.len(), 16);
    assert_eq!(at(s.restore[6]).code(), Code::Popfq);
    assert_eq!(at(s.restore[14]).code(), Code::Popfq);
    // The returned string's copy may fault, and the filled buffer's: each
    // has its fix-up.
    assert_eq!(s.faults.len(), 2);
    for &(load, _) in &s.faults {
        assert_eq!(at(load).mnemonic(), Mnemonic::Movzx);
    }
    // A filled buffer's pointer, from the table entry, into the record.
    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Mov
        && i.op0_kind() == OpKind::Memory
        && i.memory_displacement64() == ring::RET_PTR));
}

/// A thread stopped among the stub's restoring pops is finished by rtrace:
/// to the `ret` (the slot has its return address back), or for an orphan
/// to its `int3`, with the stack pointer at the slot.
#[test]
fn a_thread_among_the_stubs_pops_is_finished_without_steps() {
    let s = stub();
    let slot = 0x7ffd_0000_2000u64;
    // All pushed: rsp = slot - 128 - 8 (flags) - 48.
    let sp = slot - 128 - 8 - 48;
    let stack = Words::default();
    for (i, v) in [11u64, 10, 6, 2, 1, 0, 0x202].iter().enumerate() {
        stack.0.borrow_mut().insert(sp + 8 * i as u64, 0x2000 + v);
    }
    for (half, next) in [(0, s.ret), (1, s.orphan)] {
        let mut regs = super::regs::Regs::default();
        regs.set_sp(sp);
        regs.set_ip(s.restore[half * 8]);
        assert!(finish_stub_restore(&s, &mut regs, &stack).unwrap());
        assert_eq!(regs.ip(), next);
        assert_eq!(regs.sp(), slot);
        assert_eq!(regs.gpr(Gpr(11)), 0x200b);
        assert_eq!(regs.gpr(Gpr(0)), 0x2000);
        assert_eq!(regs.raw().eflags, 0x2202);
    }
    let mut regs = super::regs::Regs::default();
    regs.set_ip(s.entry);
    assert!(!finish_stub_restore(&s, &mut regs, &stack).unwrap());
}

/// rtrace's lookup finds what the generated code stores: the slot's home
/// entry or one of the next ones.
#[test]
fn the_table_is_searched_from_the_home_entry() {
    let mut t = vec![0u8; table::SIZE as usize];
    let slot = 0x7ffd_1234_5678u64 & !7;
    let home = table::home(slot);
    assert!(home < table::ENTRIES);
    // Taken by another slot: the next entry (wrapping) holds ours.
    let put = |t: &mut Vec<u8>, e: u64, key: u64| {
        let at = (e * table::ENTRY) as usize;
        t[at..at + 8].copy_from_slice(&key.to_le_bytes());
    };
    put(&mut t, home, slot + 8);
    put(&mut t, (home + 1) % table::ENTRIES, slot);
    assert_eq!(table::find(&t, slot), Some((home + 1) % table::ENTRIES));
    assert_eq!(table::find(&t, slot + 16), None);
    // Past the probes, not found.
    let mut t = vec![0u8; table::SIZE as usize];
    put(&mut t, (home + table::PROBES) % table::ENTRIES, slot);
    assert_eq!(table::find(&t, slot), None);
}

/// The claim of a slot (detours and the stub alike): a slot found ahead of
/// the position read sends the producer back to read the position again,
/// unless the position has not moved (the ring was written over: the claim
/// would retry forever), in which case the record is counted lost: the
/// `cmp [r11+ENQUEUE], rax` is followed by a `je` on to the lost counter's
/// `lock inc` (the site's; for the stub, the site's lost returns, once the
/// table has named the site).
#[test]
fn a_claim_that_finds_the_position_unmoved_counts_the_record_lost() {
    let (_, d) = detour(WORK_O0, 0, &[]);
    let s = stub();
    for (code, at, lost) in [
        (&d.code, DETOUR, ring::LOST + 24),
        (&s.code, STUB, ring::RET_LOST),
    ] {
        let insns = decode_all(code, at);
        let recheck = insns
            .iter()
            .position(|i| {
                i.mnemonic() == Mnemonic::Cmp
                    && i.op0_kind() == OpKind::Memory
                    && i.memory_base() == iced_x86::Register::R11
                    && i.memory_displacement64() == ring::ENQUEUE
                    && i.op1_register() == iced_x86::Register::RAX
            })
            .expect("the enqueue position compared again");
        let je = &insns[recheck + 1];
        assert_eq!(je.mnemonic(), Mnemonic::Je);
        let target = insns
            .iter()
            .find(|i| {
                i.ip() >= je.near_branch_target()
                    && i.mnemonic() == Mnemonic::Inc
                    && i.has_lock_prefix()
            })
            .unwrap();
        assert!(target.has_lock_prefix());
        assert_eq!(target.memory_displacement64(), lost);
        // Otherwise back to the load of the position.
        let jmp = &insns[recheck + 2];
        assert_eq!(jmp.mnemonic(), Mnemonic::Jmp);
        let reload = insns
            .iter()
            .find(|i| i.ip() == jmp.near_branch_target())
            .unwrap();
        assert_eq!(reload.mnemonic(), Mnemonic::Mov);
        assert_eq!(reload.memory_displacement64(), ring::ENQUEUE);
    }
}

/// The stub copies the returned string up to the limit the table gave it,
/// which it keeps in the ring (the program may write there): the loop is
/// also bounded by the room the slot has, an immediate.
#[test]
fn the_stubs_string_copy_never_leaves_its_slot() {
    let s = stub();
    let insns = decode_all(&s.code, STUB);
    let load = insns.iter().position(|i| i.ip() == s.faults[0].0).unwrap();
    let room = (ring().slot_size - ring::RET_STRING - 8) as u32;
    let bounded = insns[..load].iter().rev().take(4).any(|i| {
        i.mnemonic() == Mnemonic::Cmp
            && i.op0_register() == iced_x86::Register::ECX
            && matches!(i.op1_kind(), OpKind::Immediate32 | OpKind::Immediate8to32)
            && i.immediate32() == room
    });
    assert!(bounded, "no bound of {room} before the load");
}

fn blocking_stub() -> Stub {
    assemble_stub(&StubSpec {
        at: STUB,
        ring: ring(),
        table: TABLE,
        tp: ThreadPointer::Rdfsbase,
        none_index: (ring::MAX_SITES - 1) as u32,
        block: true,
    })
    .unwrap()
}

/// The system calls in `insns`.
fn syscalls(insns: &[Instruction]) -> usize {
    insns
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Syscall)
        .count()
}

/// A detour that drops on a full ring makes no system call and has no
/// body; one that blocks waits in a body (the doorbell's wake, the sleep on
/// ROOM: two system calls, both inside it) after a claim that found the ring
/// full, and claims again from there.
#[test]
fn a_blocking_detour_waits_for_room_in_its_body() {
    let (_, dropping) = detour(WORK_O0, 0, &[]);
    assert_eq!(dropping.body, None);
    assert_eq!(syscalls(&decode_all(&dropping.code, DETOUR)), 0);
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let d = assemble_detour(
        &patch,
        &DetourSpec {
            block: true,
            ..base_spec()
        },
    )
    .unwrap();
    let (from, to) = d.body.expect("a body");
    let insns = decode_all(&d.code, DETOUR);
    assert_eq!(syscalls(&insns), 2);
    for i in insns.iter().filter(|i| i.mnemonic() == Mnemonic::Syscall) {
        assert!((from..to).contains(&i.ip()), "{:#x}", i.ip());
    }
    // The ring's words it reads and writes while it waits, each at its
    // offset from the ring's base (r11).
    let at = |off: u64| {
        insns
            .iter()
            .filter(|i| i.op_kinds().any(|k| k == OpKind::Memory))
            .filter(|i| i.memory_base() == iced_x86::Register::R11)
            .filter(|i| i.memory_displacement64() == off)
            .count()
    };
    for (what, off) in [
        ("ALIVE", ring::ALIVE),
        ("HEARTBEAT", ring::HEARTBEAT),
        ("DOORBELL", ring::DOORBELL),
        ("WAITING", ring::WAITING),
        ("ROOM", ring::ROOM),
        ("STALE", ring::STALE),
    ] {
        assert!(at(off) > 0, "{what}");
    }
    // Two claims of the enqueue position's slot: none inside the body.
    let claims: Vec<u64> = insns
        .iter()
        .filter(|i| i.has_lock_prefix() && i.mnemonic() == Mnemonic::Cmpxchg)
        .map(|i| i.ip())
        .collect();
    assert_eq!(claims.len(), 1);
    assert!(claims.iter().all(|ip| !(from..to).contains(ip)));
}

/// A thread stopped in a wait's body goes back to where it entered, with
/// the nine registers the frame holds, its flags and its stack pointer as
/// they were there, and no system call to restart.
#[test]
fn a_thread_waiting_for_room_is_sent_back_with_its_registers() {
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let spec = DetourSpec {
        block: true,
        ..base_spec()
    };
    let d = assemble_detour(&patch, &spec).unwrap();
    let (from, to) = d.body.unwrap();
    let sp = 0x7ffd_0000_1000u64;
    let stack = Words::default();
    // Scratch (96 bytes), then r9, r8, rdi, r11, r10, rsi, rdx, rcx, rax,
    // the flags.
    let saved = [9u64, 8, 7, 11, 10, 6, 2, 1, 0];
    for (i, n) in saved.iter().enumerate() {
        stack
            .0
            .borrow_mut()
            .insert(sp + 96 + 8 * i as u64, 0x1000 + n);
    }
    stack.0.borrow_mut().insert(sp + 96 + 72, 0x246);
    let mut regs = super::regs::Regs::default();
    regs.set_sp(sp);
    regs.set_ip(to);
    regs.raw_mut().orig_rax = 202;
    assert!(!leave_wait((from, to), START, RED_ZONE, &mut regs, &stack).unwrap());
    assert_eq!(regs.ip(), to);
    regs.set_ip(from + 1);
    assert!(leave_wait((from, to), START, RED_ZONE, &mut regs, &stack).unwrap());
    assert_eq!(regs.ip(), START);
    assert_eq!(regs.sp(), sp + 96 + 80 + 128);
    for n in saved {
        assert_eq!(regs.gpr(Gpr(n as u8)), 0x1000 + n, "register {n}");
    }
    assert_eq!(regs.raw().eflags, 0x246);
    assert_eq!(regs.raw().orig_rax, u64::MAX);
}

/// The blocking stub claims its slot before it takes a recorded call's
/// entry (a thread waiting for room has taken nothing yet: it goes back to
/// the stub's entry, one slot deeper than a detour's site; the lookup
/// before the claim only reads, for a timed call, which never waits),
/// publishes a claimed slot it has no entry for as nothing, and without a
/// slot counts the return lost under the site the table names.
#[test]
fn the_blocking_stub_claims_before_it_takes_the_entry() {
    let s = blocking_stub();
    let insns = decode_all(&s.code, STUB);
    let (from, to) = s.body.expect("a body");
    assert_eq!(syscalls(&insns), 2);
    let claim = insns
        .iter()
        .find(|i| {
            i.mnemonic() == Mnemonic::Cmpxchg
                && i.has_lock_prefix()
                && i.memory_base() == iced_x86::Register::R11
                && i.memory_displacement64() == ring::ENQUEUE
        })
        .map(|i| i.ip())
        .unwrap();
    let tables: Vec<u64> = insns
        .iter()
        .filter(|i| i.immediate64() == TABLE)
        .map(|i| i.ip())
        .collect();
    assert!(tables.first().is_some_and(|&t| t < claim), "{tables:x?}");
    assert!(tables.iter().any(|&t| t > claim && t < from), "{tables:x?}");
    assert!(to < s.ret + 0x1000 && from > claim);
    // KIND_NONE written once; the lost return counted under RET_LOST.
    assert_eq!(
        insns
            .iter()
            .filter(|i| i.op1_kind() == OpKind::Immediate32 && i.immediate32() == KIND_NONE)
            .filter(|i| i.memory_displacement64() == ring::KIND)
            .count(),
        1
    );
    assert_eq!(
        insns
            .iter()
            .filter(|i| i.has_lock_prefix() && i.mnemonic() == Mnemonic::Inc)
            .filter(|i| i.memory_displacement64() == ring::RET_LOST)
            .count(),
        1
    );
    assert!(!(from..to).contains(&s.entry));
    let dropping = stub();
    assert_eq!(dropping.body, None);
    assert_eq!(syscalls(&decode_all(&dropping.code, STUB)), 0);
}

/// A counting detour claims no slot, makes no system call and records
/// nothing: it adds one, with a locked add, to its site's counter in the
/// block its thread pointer hashes to (Fibonacci hashing: the table's
/// multiplier, the top three bits), then runs the displaced instructions.
#[test]
fn a_counting_detour_only_adds_one() {
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let spec = DetourSpec {
        block: true,
        count_only: true,
        ..base_spec()
    };
    let d = assemble_detour(&patch, &spec).unwrap();
    let insns = decode_all(&d.code, DETOUR);
    assert_eq!(syscalls(&insns), 0);
    assert!(!insns.iter().any(|i| i.mnemonic() == Mnemonic::Cmpxchg));
    assert!(insns.iter().any(|i| i.immediate64() == table::GOLDEN));
    assert!(insns
        .iter()
        .any(|i| i.immediate64() == ring().base + ring::AGG + 8 * 3));
    let adds: Vec<&Instruction> = insns.iter().filter(|i| i.has_lock_prefix()).collect();
    assert_eq!(adds.len(), 1);
    assert_eq!(adds[0].mnemonic(), Mnemonic::Inc);
    let shifts: Vec<u32> = insns
        .iter()
        .filter(|i| matches!(i.mnemonic(), Mnemonic::Shr | Mnemonic::Shl))
        .map(|i| i.immediate8() as u32)
        .collect();
    assert_eq!(shifts, [61, ring::AGG_SHARD.trailing_zeros()]);
    assert_eq!(d.body, None);
    assert_eq!(d.restore.len(), 8);
    // Not with a capture, nor returns.
    let field = layout_captures(&[CaptureKind::Stack { len: 8 }], RegSet::ALL).0;
    let with = DetourSpec {
        captures: &field,
        ..spec.clone()
    };
    assert!(assemble_detour(&patch, &with).is_err());
}

fn timed_detour(row: u32) -> Result<Detour, String> {
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let spec = DetourSpec {
        returns: Some(ReturnSpec {
            stub: STUB,
            table: TABLE,
            ret_string: 0,
            errno: 0,
            ret_buffer: None,
        }),
        block: true,
        timed: Some(row),
        ..base_spec()
    };
    assemble_detour(&patch, &spec)
}

/// A timed detour writes no record and never waits: it claims a table
/// entry (a locked compare-and-swap, not a ring slot), keeps its row plus
/// one, its site index and the time stamp counter there, and swaps the
/// return address for the stub; a tail call from a timed call gets an
/// entry of its own (the other compare-and-swap), with no thread pointer,
/// and bumps its caller's count of chained calls; a return it cannot watch
/// is counted lost under its site.
#[test]
fn a_timed_detour_keeps_the_entry_time_in_the_table() {
    let d = timed_detour(7).unwrap();
    let insns = decode_all(&d.code, DETOUR);
    assert_eq!(syscalls(&insns), 0);
    assert_eq!(d.body, None);
    let locked = |m: Mnemonic| {
        insns
            .iter()
            .filter(|i| i.mnemonic() == m && i.has_lock_prefix())
            .count()
    };
    assert_eq!(locked(Mnemonic::Cmpxchg), 2);
    // Lost: the site's lost-return counter and the total.
    assert_eq!(locked(Mnemonic::Inc), 2);
    assert!(insns
        .iter()
        .any(|i| i.has_lock_prefix() && i.memory_displacement64() == ring::RET_LOST + 8 * 3));
    let stores: Vec<(u64, u64)> = insns
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Mov && i.op0_kind() == OpKind::Memory)
        .filter(|i| matches!(i.op1_kind(), OpKind::Immediate32 | OpKind::Immediate32to64))
        .map(|i| (i.memory_displacement64(), i.immediate32() as u64))
        .collect();
    let twice = |want: (u64, u64)| stores.iter().filter(|&&s| s == want).count() == 2;
    assert!(twice((table::INDEX, 3)), "{stores:x?}");
    assert!(twice((table::TIMED, 8)), "{stores:x?}");
    assert!(stores.contains(&(table::TP, 0)), "{stores:x?}");
    let written = |field: u64| {
        insns
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Mov && i.op0_kind() == OpKind::Memory)
            .filter(|i| i.op1_kind() == OpKind::Register)
            .filter(|i| i.memory_displacement64() == field)
            .count()
    };
    assert_eq!(written(table::ENTERED), 2);
    assert_eq!(written(table::CHAIN), 1);
    assert!(insns
        .iter()
        .any(|i| i.mnemonic() == Mnemonic::Cmp && i.immediate32() == table::MAX_CHAIN as u32));
    assert_eq!(
        insns
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Rdtsc)
            .count(),
        2
    );
    assert_eq!(d.restore.len(), 8);
    // A row the ring does not have, a capture, or no return: refused.
    assert!(timed_detour(ring::MAX_TIMED as u32).is_err());
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let field = layout_captures(&[CaptureKind::Stack { len: 8 }], RegSet::ALL).0;
    let spec = DetourSpec {
        captures: &field,
        returns: Some(ReturnSpec {
            stub: STUB,
            table: TABLE,
            ret_string: 0,
            errno: 0,
            ret_buffer: None,
        }),
        block: true,
        timed: Some(1),
        ..base_spec()
    };
    assert!(assemble_detour(&patch, &spec).is_err());
    let spec = DetourSpec {
        captures: &[],
        returns: None,
        ..spec
    };
    assert!(assemble_detour(&patch, &spec).is_err());
}

/// The stub adds a timed call, and the call chained to it, to their rows
/// without claiming a slot: the duration converted by the ring's
/// `NS_MULT`, a locked add to the sum, a locked increment of the bucket,
/// the longest and the shortest kept by locked compare-and-swaps; the
/// entry freed last.
#[test]
fn the_stub_adds_a_timed_call_to_its_row() {
    let s = blocking_stub();
    let insns = decode_all(&s.code, STUB);
    let claim = insns
        .iter()
        .position(|i| {
            i.mnemonic() == Mnemonic::Cmpxchg
                && i.has_lock_prefix()
                && i.memory_displacement64() == ring::ENQUEUE
        })
        .unwrap();
    let timed = &insns[..claim];
    let count = |f: &dyn Fn(&Instruction) -> bool| timed.iter().filter(|i| f(i)).count();
    assert_eq!(
        count(&|i| i.mnemonic() == Mnemonic::Mul && i.memory_displacement64() == ring::NS_MULT),
        2
    );
    for (m, disp) in [
        (Mnemonic::Add, ring::ROW_SUM),
        (Mnemonic::Inc, ring::ROW_HIST),
        (Mnemonic::Cmpxchg, ring::ROW_MAX),
        (Mnemonic::Cmpxchg, ring::ROW_MIN_NOT),
    ] {
        assert_eq!(
            count(&|i| i.mnemonic() == m
                && i.has_lock_prefix()
                && i.memory_displacement64() == disp),
            2,
            "{m:?} at {disp:#x}"
        );
    }
    assert_eq!(syscalls(timed), 0);
    // Each call counted in its bucket before its duration is added to the
    // sum (rtrace reads the sum first).
    let at = |m: Mnemonic, disp: u64| -> Vec<usize> {
        (0..timed.len())
            .filter(|&k| {
                timed[k].mnemonic() == m
                    && timed[k].has_lock_prefix()
                    && timed[k].memory_displacement64() == disp
            })
            .collect()
    };
    let (counted, summed) = (
        at(Mnemonic::Inc, ring::ROW_HIST),
        at(Mnemonic::Add, ring::ROW_SUM),
    );
    assert!(
        counted.iter().zip(&summed).all(|(c, s)| c < s),
        "buckets at {counted:?}, sums at {summed:?}"
    );
    // The entry freed after the adds.
    let freed = timed
        .iter()
        .rposition(|i| {
            i.mnemonic() == Mnemonic::Mov
                && i.op0_kind() == OpKind::Memory
                && i.memory_displacement64() == table::KEY
                && i.op1_kind() == OpKind::Immediate32to64
        })
        .unwrap();
    let last_add = timed.iter().rposition(|i| i.has_lock_prefix()).unwrap();
    assert!(freed > last_add);
}

/// The detour of `work`'s entry recording `regs` and `fields`, no return.
fn recording_detour(regs: RegSet, fields: &[CaptureField]) -> Detour {
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let spec = DetourSpec {
        regs,
        captures: fields,
        ..base_spec()
    };
    assemble_detour(&patch, &spec).unwrap()
}

/// A site whose handlers ask for the argument registers records those and
/// the stack pointer, packed after the header in encoding order (rcx, rdx,
/// rsp, rsi, rdi, r8, r9), and no other register, nor rflags; its captures
/// follow them. `record_values` reads them back, the others as 0; with every
/// register asked for, all 16 and rflags are stored.
#[test]
fn a_record_carries_only_the_registers_asked_for() {
    let stored = |regs: RegSet| -> (Vec<u64>, Vec<CaptureField>) {
        let (fields, _) = layout_captures(
            &[CaptureKind::CStr {
                reg: Gpr(7),
                max: 8,
            }],
            regs,
        );
        let d = recording_detour(regs, &fields);
        let mut at: Vec<u64> = decode_all(&d.code, DETOUR)
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Mov && i.op0_kind() == OpKind::Memory)
            .filter(|i| i.memory_base() == iced_x86::Register::R10)
            .filter(|i| i.op1_kind() == OpKind::Register && i.op1_register().size() == 8)
            .map(|i| i.memory_displacement64())
            .filter(|&d| d >= ring::REGS && d < u64::from(fields[0].offset))
            .collect();
        at.sort_unstable();
        (at, fields)
    };
    let (at, fields) = stored(RegSet::NONE.with_args());
    assert_eq!(at, (0..7).map(|k| ring::REGS + 8 * k).collect::<Vec<_>>());
    assert_eq!(u64::from(fields[0].offset), ring::REGS + 7 * 8);
    let (at, _) = stored(RegSet::ALL);
    assert_eq!(at, (0..17).map(|k| ring::REGS + 8 * k).collect::<Vec<_>>());

    let mut record = vec![0u8; 256];
    for (k, v) in [1u64, 2, 0x7ffd_0000, 6, 7, 8, 9].iter().enumerate() {
        let off = (ring::REGS + 8 * k as u64) as usize;
        record[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    let regs = regs_of(&record_values(&record, RegSet::NONE.with_args(), 0x1234));
    let raw = regs.raw();
    assert_eq!(
        (raw.rcx, raw.rdx, raw.rsp, raw.rsi, raw.rdi, raw.r8, raw.r9),
        (1, 2, 0x7ffd_0000, 6, 7, 8, 9)
    );
    assert_eq!(
        (raw.rax, raw.rbx, raw.rbp, raw.r15, raw.eflags),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(raw.rip, 0x1234);
}

/// The vector registers asked for (xmm0 and xmm3 here) are stored after
/// the general-purpose ones, low 64 bits each (`movq`, which leaves them
/// as they are), and the captures come after them; the return stub stores
/// xmm0 (a `float` or `double` return value) at its fixed place.
#[test]
fn vector_registers_asked_for_are_recorded_after_the_others() {
    let regs = RegSet::NONE.with_xmm(0).with_xmm(3);
    let (fields, _) = layout_captures(&[CaptureKind::Stack { len: 8 }], regs);
    // rsp, then xmm0 and xmm3.
    assert_eq!(xmm_offset(entry_regs(regs), 0), Some(ring::REGS + 8));
    assert_eq!(xmm_offset(entry_regs(regs), 3), Some(ring::REGS + 16));
    assert_eq!(xmm_offset(entry_regs(regs), 1), None);
    assert_eq!(u64::from(fields[0].offset), ring::REGS + 24);
    let d = recording_detour(regs, &fields);
    let movq: Vec<(u64, iced_x86::Register)> = decode_all(&d.code, DETOUR)
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Movq && i.op0_kind() == OpKind::Memory)
        .map(|i| (i.memory_displacement64(), i.op1_register()))
        .collect();
    assert_eq!(
        movq,
        [
            (ring::REGS + 8, iced_x86::Register::XMM0),
            (ring::REGS + 16, iced_x86::Register::XMM3)
        ]
    );
    let s = stub();
    let stored = decode_all(&s.code, STUB).iter().any(|i| {
        i.mnemonic() == Mnemonic::Movq
            && i.memory_displacement64() == ring::RET_XMM0
            && i.op1_register() == iced_x86::Register::XMM0
    });
    assert!(stored, "the stub stores xmm0");
}

/// A detour's relocated instructions (the first few), and the word a
/// relocated call pushes (0: none).
fn resumed(d: &Detour) -> (Vec<Instruction>, u64) {
    let at = (d.displaced - DETOUR) as usize;
    let insns: Vec<Instruction> = decode_all(&d.code[at..], d.displaced)
        .into_iter()
        .take(4)
        .collect();
    let word = match insns[0].code() {
        Code::Push_rm64 => {
            let w = (insns[0].ip_rel_memory_address() - DETOUR) as usize;
            u64::from_le_bytes(d.code[w..w + 8].try_into().unwrap())
        }
        _ => 0,
    };
    (insns, word)
}

#[test]
fn a_call_at_the_site_is_moved_as_a_push_of_its_return_address_and_a_jump() {
    // call +0x100 (5 bytes); pop rbp; ret
    let f = [0xe8, 0x00, 0x01, 0x00, 0x00, 0x5d, 0xc3, 0x90];
    let patch = plan_patch(&f, START, START).unwrap();
    assert_eq!(patch.len, 5);
    let d = assemble_detour(&patch, &base_spec()).unwrap();
    let (moved, word) = resumed(&d);
    // push qword [rip+x] (x: the original return address); jmp callee;
    // then the jump back, never reached by the call.
    assert_eq!(moved[0].code(), Code::Push_rm64);
    assert!(moved[0].is_ip_rel_memory_operand());
    assert_eq!(moved[1].code(), Code::Jmp_rel32_64);
    assert_eq!(moved[1].near_branch_target(), START + 5 + 0x100);
    assert_eq!(moved[2].near_branch_target(), START + 5);
    assert_eq!(
        moved[0].ip_rel_memory_address(),
        moved[2].next_ip(),
        "the return address is the word after the jump back"
    );
    assert_eq!(word, START + 5, "the callee returns past the patch");
    // sub rsp,8 (4 bytes) then call [rip+0x2000]: the call is last.
    let f = [
        0x48, 0x83, 0xec, 0x08, 0xff, 0x15, 0x00, 0x20, 0x00, 0x00, 0xc3,
    ];
    let patch = plan_patch(&f, START, START).unwrap();
    assert_eq!(patch.len, 10);
    let d = assemble_detour(&patch, &base_spec()).unwrap();
    let (moved, _) = resumed(&d);
    assert_eq!(moved[0].mnemonic(), Mnemonic::Sub);
    assert_eq!(moved[1].code(), Code::Push_rm64);
    let w = (moved[1].ip_rel_memory_address() - DETOUR) as usize;
    let word = u64::from_le_bytes(d.code[w..w + 8].try_into().unwrap());
    assert_eq!(moved[2].code(), Code::Jmp_rm64);
    assert_eq!(moved[2].ip_rel_memory_address(), START + 10 + 0x2000);
    assert_eq!(word, START + 10);
}

#[test]
fn dead_fill_is_int3_bytes_and_whole_nops() {
    // nopw cs:[rax+rax] (10), xchg ax,ax (2), int3, int3, then push rbp.
    let fill = [
        0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0x66, 0x90, 0xcc, 0xcc, 0x55,
    ];
    assert_eq!(dead_fill(&fill, START), 14);
    assert_eq!(dead_fill(&[0x55, 0x90], START), 0);
    // A nop cut short by the end is not whole.
    assert_eq!(dead_fill(&[0x90, 0x0f, 0x1f], START), 1);
}

#[test]
fn padding_after_a_function_that_falls_through_runs() {
    // mov rax,rdi; ret | jmp rel8 | ud2: the flow ends.
    assert!(ends_flow_at_end(&[0x48, 0x89, 0xf8, 0xc3], START));
    assert!(ends_flow_at_end(&[0x48, 0x89, 0xf8, 0xeb, 0x10], START));
    assert!(ends_flow_at_end(&[0x0f, 0x0b], START));
    // cmp rcx,rdx; jb rel32 (glibc's __memcpy_chk_*): falls through.
    assert!(!ends_flow_at_end(
        &[0x48, 0x39, 0xd1, 0x0f, 0x82, 0x10, 0x00, 0x00, 0x00],
        START
    ));
    // A trailing call, an instruction cut short, nothing at all.
    assert!(!ends_flow_at_end(&[0xe8, 0, 0, 0, 0], START));
    assert!(!ends_flow_at_end(&[0x48, 0x89], START));
    assert!(!ends_flow_at_end(&[], START));
}

#[test]
fn a_short_function_is_patched_over_the_fill_after_it() {
    // mov eax,edi; ret (3 bytes), then nops.
    let f = [0x89, 0xf8, 0xc3];
    let after = [0x0f, 0x1f, 0x40, 0x00, 0x90];
    let p = plan_site(&f, &after, START, START).unwrap();
    assert!(!p.hop);
    assert_eq!(p.len, 5);
    assert_eq!(p.saved, [0x89, 0xf8, 0xc3, 0x0f, 0x1f]);
    assert_eq!(patch_insns(&p), 3, "mov, ret, and the start of the nop");
    let d = assemble_detour(&p, &base_spec()).unwrap();
    let (moved, _) = resumed(&d);
    assert_eq!(moved[0].mnemonic(), Mnemonic::Mov);
    assert_eq!(moved[1].mnemonic(), Mnemonic::Ret);
    // A function that does not end its flow before the fill is not.
    let f = [0x89, 0xf8, 0xff, 0xc0];
    assert!(plan_site(&f, &after, START, START).unwrap().hop);
    // Nor with too little fill: a hop then.
    let f = [0x89, 0xf8, 0xc3];
    let p = plan_site(&f, &[0x90], START, START).unwrap();
    assert!(p.hop);
    assert_eq!(p.len, 2);
}

#[test]
fn a_lone_ret_takes_a_hop_over_one_byte_of_fill() {
    let p = plan_site(&[0xc3], &[0xcc, 0xcc], START, START).unwrap();
    assert!(p.hop);
    assert_eq!(p.saved, [0xc3, 0xcc]);
    // Or a jump over the whole fill when there are four bytes of it.
    let p = plan_site(&[0xc3], &[0xcc; 7], START, START).unwrap();
    assert!(!p.hop);
    assert_eq!(p.saved, [0xc3, 0xcc, 0xcc, 0xcc, 0xcc]);
    // No fill: nothing.
    assert!(plan_site(&[0xc3], &[0x55], START, START).is_err());
}

#[test]
fn a_branch_into_the_first_bytes_takes_a_hop_over_the_first_instruction() {
    // mov ecx,edi (2); loop: dec ecx (2); jnz loop (2); ret
    let f = [0x89, 0xf9, 0xff, 0xc9, 0x75, 0xfc, 0xc3];
    assert_eq!(decode_all(&f, START)[2].near_branch_target(), START + 2);
    let mut p = plan_site(&f, &[], START, START).unwrap();
    assert!(p.hop);
    assert_eq!(p.len, 2);
    assert!(p
        .near_refusal
        .as_ref()
        .unwrap()
        .to_string()
        .contains("jumps into"));
    // Its jump: rel8 to the fill, the fill's rel32 to the detour.
    assert_eq!(jump(&p, DETOUR), None, "no fill chosen yet");
    let fill = START - 16;
    p.fill = Some(Fill {
        at: fill,
        saved: vec![0xcc; 5],
    });
    let writes = jump(&p, DETOUR).unwrap();
    assert_eq!(writes[0].0, fill, "the fill first");
    let rel = i32::from_le_bytes(writes[0].1[1..5].try_into().unwrap());
    assert_eq!(writes[0].1[0], 0xe9);
    assert_eq!((fill as i64 + 5 + i64::from(rel)) as u64, DETOUR);
    assert_eq!(writes[1], (START, vec![0xeb, (-18i8) as u8]));
    // Out of a short jump's reach: none.
    p.fill.as_mut().unwrap().at = START + 200;
    assert_eq!(jump(&p, DETOUR), None);
    // The detour runs the first instruction and goes back to the second.
    let d = assemble_detour(&p, &base_spec()).unwrap();
    let (moved, _) = resumed(&d);
    assert_eq!(moved[0].mnemonic(), Mnemonic::Mov);
    assert_eq!(moved[1].near_branch_target(), START + 2);
}

#[test]
fn a_jump_table_or_a_call_after_the_first_instruction_takes_a_hop() {
    // push r15 (2); push r14 (2); mov eax,edi (2); jmp rax; ret
    let f = [0x41, 0x57, 0x41, 0x56, 0x89, 0xf8, 0xff, 0xe0, 0xc3];
    let p = plan_site(&f, &[], START, START).unwrap();
    assert!(p.hop);
    assert!(p
        .near_refusal
        .as_ref()
        .unwrap()
        .to_string()
        .contains("jumps indirectly"));
    // call rax (2) first, then more: the return lands past the hop's bytes.
    let f = [0xff, 0xd0, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
    let p = plan_site(&f, &[], START, START).unwrap();
    assert!(p.hop);
    assert_eq!(p.len, 2);
    // A 1-byte first instruction cannot take a hop.
    let f = [0x53, 0x89, 0xfb, 0xff, 0xcb, 0x75, 0xfc, 0x5b, 0xc3];
    assert!(plan_site(&f, &[], START, START).is_err());
}

#[test]
fn a_detour_out_of_a_jumps_reach_goes_back_indirectly() {
    // push rbp; mov rbp,rsp; mov [rbp-0x14],edi (7 bytes): no RIP-relative
    // operand, so it runs anywhere.
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let far = START + (8 << 30);
    let d = assemble_detour(
        &patch,
        &DetourSpec {
            at: far,
            ..base_spec()
        },
    )
    .unwrap();
    let at = (d.displaced - far) as usize;
    let moved = decode_all(&d.code[at..], d.displaced);
    let back = &moved[patch_insns(&patch)];
    assert_eq!(back.code(), Code::Jmp_rm64, "{back}");
    let w = (back.ip_rel_memory_address() - far) as usize;
    let word = u64::from_le_bytes(d.code[w..w + 8].try_into().unwrap());
    assert_eq!(word, START + 7);
    // The far jump the site leads to reads its target after itself.
    let bytes = far_jump(far);
    assert_eq!(bytes.len(), FAR_JUMP_LEN);
    let j = decode_all(&bytes, START - 64)[0];
    assert_eq!(j.code(), Code::Jmp_rm64);
    assert_eq!(j.ip_rel_memory_address(), START - 64 + 6);
    assert_eq!(u64::from_le_bytes(bytes[6..].try_into().unwrap()), far);
}

/// A string a stack argument points to, and a buffer of a register's
/// length: each load that may fault has its fix-up (the stack string's
/// pointer load too), each fix-up past its load.
#[test]
fn stack_strings_and_buffers_are_copied_with_fix_ups() {
    let captures = layout_captures(
        &[
            CaptureKind::Stack { len: 16 },
            CaptureKind::StackStr { offset: 8, max: 33 },
            CaptureKind::Bytes {
                reg: Gpr(6),
                len: Gpr(2),
                max: 32,
            },
        ],
        RegSet::ALL,
    );
    let (_, d) = detour(WORK_O0, 0, &captures.0);
    let insns = decode_all(&d.code, DETOUR);
    // The stack's load, the pointer's and the string's, the buffer's.
    assert_eq!(d.faults.len(), 4);
    for &(load, fixup) in &d.faults {
        let i = insns.iter().find(|i| i.ip() == load).expect("a load");
        assert_eq!(i.op1_kind(), OpKind::Memory, "{i}");
        assert!(fixup > load && fixup < d.displaced);
    }
    // The pointer, read from rsp + 8 + 8 at the entry.
    assert!(d.faults.iter().any(|&(load, _)| {
        let i = insns.iter().find(|i| i.ip() == load).unwrap();
        i.mnemonic() == Mnemonic::Mov && i.memory_displacement64() == 16
    }));
    // The buffer's length bounded by its maximum (unsigned).
    assert!(insns.iter().any(|i| i.mnemonic() == Mnemonic::Cmova));
}

/// A detour whose return copies a filled buffer puts the buffer's pointer
/// and the flagged limit into its call's table entry, and, for a tail call
/// (the slot holds the stub already), into the entry of the call whose
/// slot it shares: two such writes each, the limit with `table::BUFFER`.
#[test]
fn a_filled_buffer_goes_into_the_entry_of_the_call_or_of_the_one_it_tail_calls() {
    let patch = plan_patch(WORK_O0, START, START).unwrap();
    let spec = DetourSpec {
        returns: Some(ReturnSpec {
            stub: STUB,
            table: TABLE,
            ret_string: 32,
            errno: 0,
            ret_buffer: Some(Gpr(6)),
        }),
        ..base_spec()
    };
    let d = assemble_detour(&patch, &spec).unwrap();
    let insns = decode_all(&d.code, DETOUR);
    let writes = |disp: u64| {
        insns
            .iter()
            .filter(|i| {
                i.mnemonic() == Mnemonic::Mov
                    && i.op0_kind() == OpKind::Memory
                    && i.memory_base() == iced_x86::Register::R11
                    && i.memory_displacement64() == disp
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(writes(table::ENTERED).len(), 2);
    let limits = writes(table::RET_STRING);
    assert_eq!(limits.len(), 2);
    for l in limits {
        assert_eq!(l.immediate32(), 32 | table::BUFFER, "{l}");
    }
    // Without a buffer, the entry's limit only: no pointer.
    let d = returns_detour();
    let insns = decode_all(&d.code, DETOUR);
    assert!(!insns.iter().any(|i| i.mnemonic() == Mnemonic::Mov
        && i.op0_kind() == OpKind::Memory
        && i.memory_base() == iced_x86::Register::R11
        && i.memory_displacement64() == table::ENTERED));
}

/// `push %rbx`, then a 5-byte `mov $0,%ebx` that a loop branches back to,
/// then `rest`.
fn evict_function(rest: &[u8]) -> Vec<u8> {
    let mut f = vec![0x53, 0xbb, 0, 0, 0, 0];
    f.extend_from_slice(rest);
    f
}

#[test]
fn a_successor_that_falls_through_is_evicted_whole() {
    const AT: u64 = 0x40_1000;
    // add %edi,%esi; dec %edi; jnz (to byte 1); mov %esi,%eax; pop; ret
    let f = evict_function(&[0x01, 0xfe, 0xff, 0xcf, 0x75, 0xf5, 0x89, 0xf0, 0x5b, 0xc3]);
    let pun = plan_pun(&f, &[], AT, AT).unwrap();
    let e = plan_evict(&f, AT, &pun).unwrap();
    assert_eq!((e.addr(), e.len(), e.insns.len()), (AT + 1, 5, 1));
    // Past the pun's 1 byte and the successor's 5, nothing is split; at
    // the successor's start, a thread takes its jump.
    let mut p = pun.clone();
    p.evict = Some(e.clone());
    assert_eq!(p.span(), 6);
    let split: Vec<u64> = (AT..AT + 8).filter(|&ip| p.splits(ip)).collect();
    assert_eq!(split, (AT + 2..AT + 6).collect::<Vec<_>>());
    // The trampoline runs the `mov` and jumps back to byte 6.
    let code = e.trampoline(0x7000_0000).unwrap();
    let insns = decode_all(&code, 0x7000_0000);
    assert_eq!(insns[0].code(), Code::Mov_r32_imm32);
    assert_eq!(insns[1].near_branch_target(), AT + 6);
    assert!(code.len() as u64 <= e.trampoline_room());
    // Taken: the bytes restored on undo are both instructions'.
    p.take_eviction(0x3000_0000, 0x7000_0000);
    assert_eq!(p.saved, f[..6]);
    assert_eq!(p.len, 6);
}

#[test]
fn a_successor_that_branches_or_is_branched_into_is_not_evicted() {
    const AT: u64 = 0x40_1000;
    // The successor is a call.
    let f = [0x53, 0xe8, 0, 0, 0, 0, 0x5b, 0xc3];
    let pun = plan_pun(&f, &[], AT, AT).unwrap();
    assert!(plan_evict(&f, AT, &pun).is_err());
    // Two short instructions (xor %eax,%eax; xor %ecx,%ecx; xor %edx,%edx),
    // the loop back to the second: a branch strictly inside them.
    let f = [
        0x53, 0x31, 0xc0, 0x31, 0xc9, 0x31, 0xd2, 0xff, 0xcf, 0x75, 0xf8, 0x5b, 0xc3,
    ];
    let pun = plan_pun(&f, &[], AT, AT).unwrap();
    assert!(matches!(
        plan_evict(&f, AT, &pun),
        Err(PatchRefusal::JumpsInto { .. })
    ));
    // The same with the loop back to the first (byte 1): evicted, three
    // instructions moved.
    let mut g = f;
    g[10] = 0xf6;
    let pun = plan_pun(&g, &[], AT, AT).unwrap();
    assert_eq!(plan_evict(&g, AT, &pun).unwrap().insns.len(), 3);
    // ... but not when the function jumps through a register: a jump
    // table's case could be the second or third.
    let mut h = g.to_vec();
    h.splice(11..11, [0xff, 0xe0]);
    let pun = plan_pun(&h, &[], AT, AT).unwrap();
    assert!(plan_evict(&h, AT, &pun).is_err());
}
