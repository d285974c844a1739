//! x86-64.

pub mod code_refs;
pub mod detour;
mod detour_layout;
mod detour_leave;
mod detour_refusal;
#[cfg(test)]
mod detour_tests;
mod detour_wait;
pub mod exec;
pub mod hook;
pub mod insn;
pub mod regs;
#[cfg(test)]
mod tests;
pub mod unwind;

/// The breakpoint instruction: `int3`.
pub const BREAKPOINT: [u8; 1] = [0xcc];
/// Its length: after the trap, the instruction pointer is the site plus this.
pub const BREAKPOINT_LEN: u64 = BREAKPOINT.len() as u64;
/// The longest instruction the CPU accepts.
pub const MAX_INSN_LEN: usize = 15;
/// The size of a return address on the stack.
pub const WORD: u64 = 8;

/// The scratch area's code: the return trampoline (a breakpoint) at offset 0,
/// then a `syscall` followed by a breakpoint, used to make system calls on the
/// tracee's behalf (unmapping the area itself, in a forked child). The
/// out-of-line slots follow, from [`XOL_SLOTS_OFFSET`].
pub const SCRATCH_CODE: [u8; 4] = [0xcc, 0x0f, 0x05, 0xcc];
/// Offset of the `syscall` instruction in [`SCRATCH_CODE`].
pub const SCRATCH_SYSCALL_OFFSET: i64 = 1;
/// The `syscall` instruction.
pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
/// Where the out-of-line slots begin in the scratch area.
pub const XOL_SLOTS_OFFSET: u64 = 64;
/// The size of one out-of-line slot: the longest instruction, then a guard
/// breakpoint.
pub const XOL_SLOT_SIZE: u64 = 32;
