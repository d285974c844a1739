//! The architecture behind a few hooks.
//!
//! Generic code never names a register or an opcode: it asks this module for the
//! breakpoint instruction, the instruction pointer after a trap, the SysV argument
//! registers, an analysis of the instruction a probe displaces, and the scan of a
//! module's code for references into it ([`code_refs`]). Only x86-64 is
//! implemented.

mod x86_64;

pub use x86_64::code_refs::code_refs;
pub use x86_64::detour;
pub use x86_64::exec::{emulate, xol_cancel, xol_finish, xol_prepare, Stack, XolEnd};
pub use x86_64::hook;
pub use x86_64::insn::{
    analyze, go_stack_check_len, is_insn_boundary, Gpr, InsnPlan, RegSet, StepMode, Strategy, Xol,
};
pub use x86_64::regs::Regs;
pub use x86_64::unwind;
pub use x86_64::{
    BREAKPOINT, BREAKPOINT_LEN, MAX_INSN_LEN, SCRATCH_CODE, SCRATCH_SYSCALL_OFFSET, SYSCALL_INSN,
    WORD, XOL_SLOTS_OFFSET, XOL_SLOT_SIZE,
};
