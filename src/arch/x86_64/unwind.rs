//! What the unwinder needs to know of x86-64: the DWARF register numbers
//! (psABI 3.6.2, "DWARF Register Number Mapping"), which registers a call
//! preserves, and the frame layouts rtrace falls back on where a module has
//! no call frame information.
//!
//! Only the sixteen general-purpose registers and the return address column
//! are tracked: CFI for ordinary code never saves anything else, and the
//! registers a signal frame restores beyond these (vector state) play no
//! part in finding the next frame.

use super::regs::Regs;
use super::WORD;

/// How many DWARF registers the unwinder tracks: rax..r15 (0..=15) and the
/// return address column (16).
pub const DWARF_REGS: usize = 17;
/// DWARF number of the stack pointer (rsp).
pub const DWARF_SP: u16 = 7;
/// DWARF number of the frame pointer (rbp).
pub const DWARF_FP: u16 = 6;
/// The return address column (the psABI's "Return Address RA", rip).
pub const DWARF_RA: u16 = 16;

/// The registers a callee must preserve (psABI 3.2.1: rbx, rbp, r12–r15;
/// rsp is the CFA's business). A frame's CFI that says nothing of one of
/// these means the function left it alone; any other register it says
/// nothing of holds nothing the caller can rely on.
pub const CALLEE_SAVED: [u16; 6] = [3, 6, 12, 13, 14, 15];

/// At a function's first instruction, before its prologue ran: the
/// canonical frame address is `sp + WORD` and the return address is the
/// word at `sp` (the `call` just pushed it).
pub const ENTRY_CFA_OFFSET: i64 = WORD as i64;
/// With a frame pointer (`push %rbp; mov %rsp,%rbp`): the canonical frame
/// address is `rbp + 2 * WORD` (above the saved rbp and the return
/// address)…
pub const FP_CFA_OFFSET: i64 = 2 * WORD as i64;
/// …the return address is at `CFA - WORD`…
pub const RA_CFA_OFFSET: i64 = -(WORD as i64);
/// …and the caller's rbp at `CFA - 2 * WORD`.
pub const FP_SAVED_OFFSET: i64 = -2 * (WORD as i64);

/// The general-purpose registers of `regs` by DWARF number, with the
/// instruction pointer in the return address column: the state of the
/// innermost frame.
pub fn dwarf_registers(regs: &Regs) -> [Option<u64>; DWARF_REGS] {
    let r = regs.raw();
    [
        Some(r.rax),
        Some(r.rdx),
        Some(r.rcx),
        Some(r.rbx),
        Some(r.rsi),
        Some(r.rdi),
        Some(r.rbp),
        Some(r.rsp),
        Some(r.r8),
        Some(r.r9),
        Some(r.r10),
        Some(r.r11),
        Some(r.r12),
        Some(r.r13),
        Some(r.r14),
        Some(r.r15),
        Some(r.rip),
    ]
}
