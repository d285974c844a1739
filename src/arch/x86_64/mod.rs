//! x86-64.

pub mod insn;
pub mod regs;

/// The breakpoint instruction: `int3`.
pub const BREAKPOINT: [u8; 1] = [0xcc];
/// Its length: after the trap, the instruction pointer is the site plus this.
pub const BREAKPOINT_LEN: u64 = BREAKPOINT.len() as u64;
/// The longest instruction the CPU accepts.
pub const MAX_INSN_LEN: usize = 15;
/// The size of a return address on the stack.
pub const WORD: u64 = 8;
