//! Bringing a thread out of fast code without stepping what must not be
//! stepped: the return stub's `lea`, `pushfq` and `ret` emulated
//! ([`stub_move`]), a thread at a detour's start sent back to its site
//! ([`back_to_site`]), a faulting `rdtsc` emulated ([`emulate_rdtsc`]).

use super::detour::{finish_stub_restore, Detour, Stub, RED_ZONE};

/// rflags' trap flag (TF): set, the CPU traps after the next instruction.
pub(crate) const TRAP_FLAG: u64 = 0x100;

/// What [`stub_move`] did with a thread stopped in the return stub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubMove {
    /// Its registers moved it on inside the stub (the `lea` or the `pushfq`
    /// emulated, the restore finished): set them and look again.
    Moved,
    /// Its registers take it out: the final `ret` emulated, at the original
    /// return address.
    Out,
    /// It was at the orphan `int3`: its registers are as just past it (the
    /// table had no entry for its slot).
    Orphan,
    /// Nothing done: its next instruction is to be single-stepped.
    Step,
}

/// One move of a thread stopped in `stub` with `regs`, without stepping
/// the instructions that must not be stepped: the first `lea` and the
/// `pushfq` are emulated (a stepped `pushfq` would push the trap flag),
/// the restore is finished from the saved words on `stack`
/// ([`finish_stub_restore`]), the final `ret` is emulated.
pub fn stub_move(
    stub: &Stub,
    regs: &mut super::regs::Regs,
    stack: &dyn super::exec::Stack,
) -> crate::Result<StubMove> {
    let ip = regs.ip();
    if ip == stub.entry {
        regs.set_sp(regs.sp().wrapping_sub(RED_ZONE + 8));
        regs.set_ip(stub.pushf);
    } else if ip == stub.pushf {
        let below = regs.sp().wrapping_sub(8);
        stack.write_word(below, regs.raw().eflags & !TRAP_FLAG)?;
        regs.set_sp(below);
        regs.set_ip(stub.pushf + 1);
    } else if ip == stub.ret {
        let to = stack.read_word(regs.sp())?;
        regs.set_sp(regs.sp() + 8);
        regs.set_ip(to);
        return Ok(StubMove::Out);
    } else if ip == stub.orphan {
        regs.set_ip(stub.orphan + 1);
        return Ok(StubMove::Orphan);
    } else if !finish_stub_restore(stub, regs, stack)? {
        return Ok(StubMove::Step);
    }
    Ok(StubMove::Moved)
}

/// A thread stopped at the first instruction of `detour` or at its
/// `pushfq` has done nothing yet: `regs` are sent back to the probed
/// address `site`, as if it had not got there (the red zone the `lea`
/// stepped over given back). False, `regs` untouched, anywhere else.
pub fn back_to_site(detour: &Detour, site: u64, regs: &mut super::regs::Regs) -> bool {
    let ip = regs.ip();
    if ip != detour.entry && ip != detour.pushf {
        return false;
    }
    if ip == detour.pushf {
        regs.set_sp(regs.sp().wrapping_add(RED_ZONE));
    }
    regs.set_ip(site);
    true
}

/// The `rdtsc` instruction.
const RDTSC: [u8; 2] = [0x0f, 0x31];

/// `regs` stopped at `code` (the bytes at the instruction pointer) faulted:
/// when that is an `rdtsc` (the thread disabled the time stamp counter), it
/// is emulated with the reading `tsc` (edx:eax, the instruction pointer
/// past it). False, `regs` untouched, for any other instruction.
pub fn emulate_rdtsc(code: &[u8], tsc: u64, regs: &mut super::regs::Regs) -> bool {
    if !code.starts_with(&RDTSC) {
        return false;
    }
    let ip = regs.ip();
    let r = regs.raw_mut();
    r.rax = tsc & 0xffff_ffff;
    r.rdx = tsc >> 32;
    regs.set_ip(ip + RDTSC.len() as u64);
    true
}
