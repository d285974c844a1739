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

/// Where the interrupted instruction pointer sits in a signal frame, from
/// the frame's start (the handler's stack pointer at its entry, which holds
/// the restorer's address): the kernel's `struct rt_sigframe` is that
/// address, then a `ucontext` whose flags, link and `stack_t` take 40
/// bytes before its `sigcontext`, where rip follows r8–r15, rdi, rsi, rbp,
/// rbx, rdx, rax, rcx and rsp.
pub const SIGFRAME_RIP: usize = 8 + 40 + 16 * 8;

/// The code of a signal restorer, the address a handler returns to:
/// `rt_sigreturn` (15) into rax, then `syscall`. glibc's `__restore_rt`
/// loads it with `mov rax, 15`, musl's with `mov eax, 15`.
pub fn is_restorer(code: &[u8]) -> bool {
    const GLIBC: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05];
    const MUSL: [u8; 7] = [0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05];
    code.starts_with(&GLIBC) || code.starts_with(&MUSL)
}

/// The instruction pointers that signal handlers running on a thread will
/// return to: `stack` holds the thread's stack from its stack pointer on,
/// and every word (8-byte aligned from there) that `restorer` says is a
/// restorer's address begins a signal frame, whose interrupted instruction
/// pointer is returned. A word that only looks like one gives an address
/// too many, never one too few.
pub fn signal_returns(stack: &[u8], mut restorer: impl FnMut(u64) -> bool) -> Vec<u64> {
    let word = |at: usize| {
        stack
            .get(at..at + WORD as usize)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    (0..stack.len())
        .step_by(WORD as usize)
        .filter(|&at| word(at).is_some_and(&mut restorer))
        .filter_map(|at| word(at + SIGFRAME_RIP))
        .collect()
}

#[cfg(test)]
mod signal_frame_tests {
    use super::*;

    #[test]
    fn signal_frames_give_their_interrupted_instruction_pointers() {
        const RESTORER: u64 = 0x7f00_0000_1234;
        let mut stack = vec![0u8; 2048];
        let mut put = |at: usize, v: u64| stack[at..at + 8].copy_from_slice(&v.to_le_bytes());
        // Two nested frames: a handler interrupted at 0x401002, and, above
        // it, one interrupted at 0x401105 (a handler interrupted by a
        // signal); a word past the end's frame has no room for its rip.
        put(16, RESTORER);
        put(16 + SIGFRAME_RIP, 0x40_1002);
        put(1024, RESTORER);
        put(1024 + SIGFRAME_RIP, 0x40_1105);
        put(2040, RESTORER);
        // Other words, among them the rip slot's neighbours, are not frames.
        put(16 + SIGFRAME_RIP - 8, 0x7ffc_0000_0000);
        put(512, 0x40_1000);
        let seen = signal_returns(&stack, |w| w == RESTORER);
        assert_eq!(seen, [0x40_1002, 0x40_1105]);
    }

    #[test]
    fn restorers_of_glibc_and_musl() {
        // glibc's __restore_rt (mov rax, 15; syscall), then nops.
        assert!(is_restorer(&[
            0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05, 0x90
        ]));
        // musl's (mov eax, 15; syscall).
        assert!(is_restorer(&[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05]));
        // rt_sigreturn's number elsewhere, or another call.
        assert!(!is_restorer(&[0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0]));
        assert!(!is_restorer(&[0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05]));
        assert!(!is_restorer(&[]));
    }
}
