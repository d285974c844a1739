//! The code-reference scan: every place a module's code names another place
//! of its code by a constant (a direct jump or call, a RIP-relative operand).
//!
//! Owns decoding x86-64 for that purpose only; the caller (the ELF layer)
//! hands over the executable segments' bytes and says which addresses are
//! code. Fast probes ask it before replacing bytes: hand-written code jumps
//! from one function into another (glibc's `mempcpy` into `memmove` just
//! past its first instruction), which a scan of the probed function alone
//! cannot see.
use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind};

use crate::addr::LinkAddr;

/// Every direct branch target and RIP-relative address in `code` (pieces of
/// code, each with the address of its first byte) that `is_code` accepts,
/// with the address of the instruction that names it: (target, at), sorted
/// by target.
///
/// Each piece is decoded linearly from its start (about 30 ms for libc's
/// text). Bytes that do not decode are passed over one instruction at a
/// time, as the decoder resynchronises; data between functions can thus
/// yield a few spurious references, which only make a caller more careful.
pub fn code_refs<'a>(
    code: impl IntoIterator<Item = (LinkAddr, &'a [u8])>,
    is_code: impl Fn(LinkAddr) -> bool,
) -> Vec<(LinkAddr, LinkAddr)> {
    let mut refs = Vec::new();
    for (start, bytes) in code {
        let mut decoder = Decoder::with_ip(64, bytes, start.get(), DecoderOptions::NONE);
        let mut insn = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut insn);
            if insn.is_invalid() {
                continue;
            }
            let target = match insn.op0_kind() {
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                    Some(insn.near_branch_target())
                }
                _ if insn.is_ip_rel_memory_operand() => Some(insn.ip_rel_memory_address()),
                _ => None,
            };
            if let Some(t) = target.map(LinkAddr).filter(|&t| is_code(t)) {
                refs.push((t, LinkAddr(insn.ip())));
            }
        }
    }
    refs.sort_unstable();
    refs
}
