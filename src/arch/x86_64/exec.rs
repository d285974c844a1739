//! Executing a displaced instruction: emulation, and the two halves of an
//! out-of-line step (the kernel's `pre_xol` and `post_xol`).
//!
//! Everything here works on a [`Regs`] value and a [`Stack`] (the tracee's
//! memory in the tracer, a map in the unit tests), never on a live thread.

use super::insn::{Cond, CounterBranch, Emulation, Fixup, Gpr, Xol};
use super::regs::Regs;
use super::WORD;
use crate::addr::RuntimeAddr;
use crate::error::Result;

/// The tracee memory emulation and fix-ups touch: stack words.
pub trait Stack {
    /// Reads the word at `addr`.
    fn read_word(&self, addr: u64) -> Result<u64>;
    /// Writes the word at `addr`.
    fn write_word(&self, addr: u64, value: u64) -> Result<()>;
}

impl Stack for crate::sys::mem::ProcMem {
    fn read_word(&self, addr: u64) -> Result<u64> {
        self.read_u64(RuntimeAddr(addr))
    }
    fn write_word(&self, addr: u64, value: u64) -> Result<()> {
        self.write_u64(RuntimeAddr(addr), value)
    }
}

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;
const ARITH_FLAGS: u64 = CF | PF | AF | ZF | SF | OF;

/// The arithmetic flags of `a + b = r` (or `a - b = r` when `sub`), 64-bit.
fn add_flags(a: u64, b: u64, r: u64, sub: bool) -> u64 {
    let carry = if sub { a < b } else { r < a };
    let overflow = if sub {
        ((a ^ b) & (a ^ r)) >> 63
    } else {
        (!(a ^ b) & (a ^ r)) >> 63
    };
    let mut f = logic_flags(r);
    if carry {
        f |= CF;
    }
    if overflow != 0 {
        f |= OF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    f
}

/// ZF, SF and PF of a result (CF, OF and AF clear), as a logic instruction sets them.
fn logic_flags(r: u64) -> u64 {
    let mut f = 0;
    if r == 0 {
        f |= ZF;
    }
    if r >> 63 != 0 {
        f |= SF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    f
}

fn set_arith_flags(regs: &mut Regs, flags: u64) {
    let r = regs.raw_mut();
    r.eflags = (r.eflags & !ARITH_FLAGS) | flags;
}

/// Whether `cond` holds for `eflags`.
pub fn holds(cond: Cond, eflags: u64) -> bool {
    let f = |bit: u64| eflags & bit != 0;
    let less = f(SF) != f(OF);
    match cond {
        Cond::O => f(OF),
        Cond::No => !f(OF),
        Cond::B => f(CF),
        Cond::Ae => !f(CF),
        Cond::E => f(ZF),
        Cond::Ne => !f(ZF),
        Cond::Be => f(CF) || f(ZF),
        Cond::A => !f(CF) && !f(ZF),
        Cond::S => f(SF),
        Cond::Ns => !f(SF),
        Cond::P => f(PF),
        Cond::Np => !f(PF),
        Cond::L => less,
        Cond::Ge => !less,
        Cond::Le => f(ZF) || less,
        Cond::G => !f(ZF) && !less,
    }
}

/// Executes `e`, the instruction of `len` bytes at `site`, on `regs` (whose
/// instruction pointer is `site`) and `stack`.
pub fn emulate(
    e: Emulation,
    site: RuntimeAddr,
    len: u64,
    regs: &mut Regs,
    stack: &dyn Stack,
) -> Result<()> {
    let next = site.get() + len;
    let mut ip = next;
    match e {
        Emulation::Nop => {}
        Emulation::Push(reg) => {
            let sp = regs.sp() - WORD;
            stack.write_word(sp, regs.gpr(reg))?;
            regs.set_sp(sp);
        }
        Emulation::Pushf => {
            // What the CPU pushes in user mode: RFLAGS with RF and VM clear
            // (and TF, which only a debugger's step would have set).
            const TF: u64 = 1 << 8;
            const RF: u64 = 1 << 16;
            const VM: u64 = 1 << 17;
            let sp = regs.sp() - WORD;
            stack.write_word(sp, regs.raw().eflags & !(TF | RF | VM))?;
            regs.set_sp(sp);
        }
        Emulation::Mov64 { dst, src } => regs.set_gpr(dst, regs.gpr(src)),
        Emulation::Mov32 { dst, src } => regs.set_gpr(dst, regs.gpr(src) & 0xffff_ffff),
        Emulation::AddImm { reg, imm, sub } => {
            let a = regs.gpr(reg);
            let b = imm as u64;
            let r = if sub {
                a.wrapping_sub(b)
            } else {
                a.wrapping_add(b)
            };
            regs.set_gpr(reg, r);
            set_arith_flags(regs, add_flags(a, b, r, sub));
        }
        Emulation::Zero(reg) => {
            regs.set_gpr(reg, 0);
            set_arith_flags(regs, logic_flags(0));
        }
        Emulation::Jmp(target) => ip = target.get(),
        Emulation::Jcc(cond, target) => {
            if holds(cond, regs.raw().eflags) {
                ip = target.get();
            }
        }
        Emulation::Counter(kind, target) => {
            const RCX: Gpr = Gpr(1);
            let zf = regs.raw().eflags & ZF != 0;
            let taken = match kind {
                CounterBranch::Jrcxz => regs.gpr(RCX) == 0,
                CounterBranch::Jecxz => regs.gpr(RCX) as u32 == 0,
                CounterBranch::Loop | CounterBranch::Loope | CounterBranch::Loopne => {
                    let rcx = regs.gpr(RCX).wrapping_sub(1);
                    regs.set_gpr(RCX, rcx);
                    rcx != 0
                        && match kind {
                            CounterBranch::Loope => zf,
                            CounterBranch::Loopne => !zf,
                            CounterBranch::Loop => true,
                            // Not counting branches: the arm above is theirs.
                            CounterBranch::Jrcxz | CounterBranch::Jecxz => true,
                        }
                }
            };
            if taken {
                ip = target.get();
            }
        }
        Emulation::Call(target) => {
            let sp = regs.sp() - WORD;
            stack.write_word(sp, next)?;
            regs.set_sp(sp);
            ip = target.get();
        }
        Emulation::Ret(pop) => {
            let sp = regs.sp();
            ip = stack.read_word(sp)?;
            regs.set_sp(sp + WORD + u64::from(pop));
        }
    }
    regs.set_ip(ip);
    Ok(())
}

/// Sets `regs` up to step `xol` in the slot at `slot`. Returns the value of the
/// scratch register, to give back in [`xol_finish`].
pub fn xol_prepare(xol: &Xol, slot: RuntimeAddr, regs: &mut Regs) -> u64 {
    regs.set_ip(slot.get());
    match xol.riprel {
        Some(rr) => {
            let saved = regs.gpr(rr.reg);
            regs.set_gpr(rr.reg, rr.target.get());
            saved
        }
        None => 0,
    }
}

/// Where a thread stands after an out-of-line step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XolEnd {
    /// The instruction is complete; `regs` are fixed up.
    Done,
    /// It has not completed (a `rep` instruction between iterations): step again.
    Again,
}

/// Fixes `regs` up after a step of `xol` (the instruction of `len` bytes at
/// `site`) in the slot at `slot`: the scratch register gets `saved` back, and the
/// instruction pointer (or the return address a call pushed) goes from the slot
/// back to the original code.
pub fn xol_finish(
    xol: &Xol,
    site: RuntimeAddr,
    len: u64,
    slot: RuntimeAddr,
    saved: u64,
    regs: &mut Regs,
    stack: &dyn Stack,
) -> Result<XolEnd> {
    let (site, slot) = (site.get(), slot.get());
    let slot_end = slot + xol.code.len() as u64;
    if regs.ip() == slot && xol.fixup == Fixup::Ip {
        return Ok(XolEnd::Again);
    }
    if let Some(rr) = xol.riprel {
        regs.set_gpr(rr.reg, saved);
    }
    match xol.fixup {
        Fixup::Ip => {
            // Past the slot's instruction (also past its guard breakpoint, if
            // something ran on to it): the original's next instruction.
            if (slot..=slot_end + 1).contains(&regs.ip()) {
                regs.set_ip(site + len);
            }
        }
        Fixup::Call => {
            let sp = regs.sp();
            if stack.read_word(sp)? == slot_end {
                stack.write_word(sp, site + len)?;
            }
        }
        Fixup::Absolute => {}
    }
    Ok(XolEnd::Done)
}

/// Undoes [`xol_prepare`] for a thread that has not executed the slot's
/// instruction yet: back at `site`, scratch register restored.
pub fn xol_cancel(xol: &Xol, site: RuntimeAddr, saved: u64, regs: &mut Regs) {
    if let Some(rr) = xol.riprel {
        regs.set_gpr(rr.reg, saved);
    }
    regs.set_ip(site.get());
}
