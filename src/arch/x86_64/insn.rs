//! Instruction analysis, done once when a probe is armed.
//!
//! Like the kernel's `arch_uprobe_analyze_insn`, [`analyze`] decodes the
//! instruction a breakpoint displaces and decides how it will be executed, or
//! refuses it with a typed error.

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction};

use crate::addr::RuntimeAddr;
use crate::error::{Error, Result};

/// How the displaced instruction at a probe site is executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsnPlan {
    /// The instruction's length in bytes.
    pub len: u8,
}

fn decode(bytes: &[u8], ip: u64) -> Instruction {
    let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    decoder.decode()
}

/// Decodes the instruction at `addr` (its bytes, as in the file) and decides how to
/// step it. Refuses invalid instructions and instructions that trap by themselves
/// (int3, int n, into, hlt and other privileged ones): single-stepping them would
/// not do what the program meant.
pub fn analyze(bytes: &[u8], addr: RuntimeAddr) -> Result<InsnPlan> {
    let insn = decode(bytes, addr.get());
    let refuse = |reason: &str| {
        Err(Error::UnsupportedInstruction {
            addr,
            reason: reason.to_string(),
        })
    };
    if insn.is_invalid() {
        return refuse("the bytes there do not decode as an instruction");
    }
    if insn.flow_control() == FlowControl::Interrupt
        || matches!(insn.code(), Code::Int3 | Code::Int1 | Code::Hlt)
    {
        return refuse("it is an interrupt or breakpoint instruction");
    }
    if insn.is_privileged() {
        return refuse("it is a privileged instruction");
    }
    Ok(InsnPlan {
        len: insn.len() as u8,
    })
}

/// True when `offset` bytes into `code` (a function's bytes, starting at its first
/// instruction) is the start of an instruction, decoding linearly from the start.
pub fn is_insn_boundary(code: &[u8], offset: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        let at = decoder.ip();
        if at == offset {
            return true;
        }
        if at > offset {
            return false;
        }
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            return false;
        }
    }
    decoder.ip() == offset && offset == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // push rbp; mov rbp,rsp; mov DWORD PTR [rbp-0x4],edi; mov eax,[rbp-4]; pop rbp; ret
    const WORK: [u8; 14] = [
        0x55, 0x48, 0x89, 0xe5, 0x89, 0x7d, 0xfc, 0x8b, 0x45, 0xfc, 0x01, 0xc0, 0x5d, 0xc3,
    ];

    #[test]
    fn boundaries() {
        let ok: Vec<u64> = (0..WORK.len() as u64)
            .filter(|&o| is_insn_boundary(&WORK, o))
            .collect();
        assert_eq!(ok, vec![0, 1, 4, 7, 10, 12, 13]);
    }

    #[test]
    fn analyze_accepts_and_refuses() {
        let at = RuntimeAddr(0x401000);
        assert_eq!(analyze(&WORK, at).unwrap().len, 1);
        assert_eq!(analyze(&[0xf3, 0x0f, 0x1e, 0xfa], at).unwrap().len, 4);
        assert!(matches!(
            analyze(&[0xcc], at),
            Err(Error::UnsupportedInstruction { .. })
        ));
        assert!(analyze(&[0xf4], at).is_err(), "hlt");
        assert!(analyze(&[0xcd, 0x80], at).is_err(), "int 0x80");
        assert!(analyze(&[0x06], at).is_err(), "invalid in 64-bit mode");
        assert_eq!(
            analyze(&[0x0f, 0x05], at).unwrap().len,
            2,
            "syscall is fine"
        );
    }
}
