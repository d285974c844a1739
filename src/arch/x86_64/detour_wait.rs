//! Waiting for room in a full ring: what a detour, the return stub and a
//! hook do when the ring has no free slot and records must not be dropped
//! (`--overflow=block`, the default), and the frame their waits (and the
//! hooks' bodies) run in.
//!
//! A thread that finds the ring full spins briefly, then sleeps on the
//! ring's `ROOM` word, a millisecond at a time, until the slot at the
//! enqueue position is free again; rtrace bumps `ROOM` after each read that
//! freed slots and wakes the sleepers (`WAITING` tells it some may sleep).
//! Each wait rings the doorbell: rtrace's watchman wakes the tracing thread
//! to read, and keeps a heartbeat while rtrace is reading. The wait is
//! bounded by rtrace's liveness, never by the program's patience alone:
//!
//! - rtrace is gone (`ALIVE` 0, or marked by the kernel as a dead robust
//!   futex's owner): the record is dropped at once;
//! - neither the heartbeat nor `ROOM` has moved for
//!   [`ring::STALE_ROOM_WAITS`] waits (rtrace stopped, or not reading; a
//!   wait in which neither moves lasts its whole millisecond, since only a
//!   bump of `ROOM` ends one sooner): the thread writes `STALE` with the
//!   heartbeat it gave up at, and drops; every thread that finds the ring
//!   full while the heartbeat still stands there drops at once, without
//!   waiting, until rtrace reads again (it clears `STALE`).
//!
//! A dropped record is counted, as with `--overflow=drop`: never silent.
//!
//! The wait runs in a **frame** (rdi, r8 and r9 pushed after the six
//! registers every detour saves, then [`SCRATCH`] bytes), from the
//! instruction after it is made to the first that takes it down: its
//! `body`. A thread stopped there has written nothing but its stack and the
//! ring's header words, and is sent back to where it entered ([`leave_wait`])
//! rather than stepped. The hooks' bodies use the same frame.

use iced_x86::code_asm::*;

use super::detour::{ring, RingLayout, SAVED};

/// Registers the frame saves after the detours' own six, in push order:
/// what a system call may clobber or take as an argument.
pub(super) const EXTRA: usize = 3;
/// Scratch bytes on the stack below them.
pub(super) const SCRATCH: i32 = 96;
/// From rsp in the body to the saved r9 (then r8, rdi, then the six).
pub(super) const TO_EXTRA: i32 = SCRATCH;
/// From rsp in the body to the saved flags.
pub(super) const TO_FLAGS: i32 = TO_EXTRA + 8 * (EXTRA as i32 + SAVED.len() as i32);

// The wait's scratch slots (below 56 are the hooks').
/// The heartbeat as last seen.
const S_W_BEAT: i32 = 56;
/// Waits without a heartbeat.
const S_W_STALE: i32 = 64;
/// The futex's timeout (a timespec).
const S_W_TS: i32 = 72;
/// `ROOM` as last seen.
const S_W_ROOM: i32 = 88;

const _: () = assert!(S_W_ROOM + 8 <= SCRATCH, "the wait's scratch fits the frame");

/// Pauses spent looking for room before the first sleep.
const SPINS: i32 = 64;

const SYS_FUTEX: i32 = 202;
const FUTEX_WAIT: i32 = 0;
const FUTEX_WAKE: i32 = 1;

/// Makes the frame (the six registers and the flags are saved already).
pub(super) fn enter_frame(a: &mut CodeAssembler) -> Result<(), iced_x86::IcedError> {
    a.push(rdi)?;
    a.push(r8)?;
    a.push(r9)?;
    a.lea(rsp, ptr(rsp - SCRATCH))?;
    Ok(())
}

/// Takes the frame down.
pub(super) fn leave_frame(a: &mut CodeAssembler) -> Result<(), iced_x86::IcedError> {
    a.lea(rsp, ptr(rsp + SCRATCH))?;
    a.pop(r9)?;
    a.pop(r8)?;
    a.pop(rdi)?;
    Ok(())
}

/// Jumps to `room` when the slot at `ring`'s enqueue position is free for
/// its lap (r11 the ring's base). Uses rax, rdx, r10.
fn peek(
    a: &mut CodeAssembler,
    ring: RingLayout,
    mask: i32,
    room: CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    a.mov(rax, qword_ptr(r11 + ring::ENQUEUE as i32))?;
    a.mov(r10, rax)?;
    a.and(r10, mask)?;
    a.imul_3(r10, r10, ring.slot_size as i32)?;
    a.mov(rdx, rax)?;
    a.and(rdx, !mask)?;
    a.cmp(qword_ptr(r11 + r10 + (ring::SLOTS + ring::SEQ) as i32), rdx)?;
    a.je(room)?;
    Ok(())
}

/// Jumps to `gone` unless rtrace's watchman holds `ALIVE` (r11 the ring's
/// base). Uses rax.
fn unless_alive(a: &mut CodeAssembler, gone: CodeLabel) -> Result<(), iced_x86::IcedError> {
    a.mov(eax, dword_ptr(r11 + ring::ALIVE as i32))?;
    a.test(eax, eax)?;
    a.je(gone)?;
    a.test(eax, ring::OWNER_DIED)?;
    a.jne(gone)?;
    Ok(())
}

/// Waits, in the frame, until `ring` may have room (to `room`: claim
/// again) or rtrace is gone, stopped or not reading (to `give_up`: count
/// the record lost). Every register but rsp and the frame's is free.
pub(super) fn wait_for_room(
    a: &mut CodeAssembler,
    ring: RingLayout,
    mask: i32,
    room: CodeLabel,
    give_up: CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    let mut spin = a.create_label();
    let mut wait = a.create_label();
    let mut no_beat = a.create_label();
    let mut beat = a.create_label();
    let mut sleep = a.create_label();
    let mut stalled = a.create_label();
    let base = ring.base;
    a.mov(r11, base)?;
    unless_alive(a, give_up)?;
    // Given up at this heartbeat already: at once.
    a.mov(eax, dword_ptr(r11 + ring::HEARTBEAT as i32))?;
    a.mov(qword_ptr(rsp + S_W_BEAT), rax)?;
    a.bts(rax, 32)?;
    a.cmp(qword_ptr(r11 + ring::STALE as i32), rax)?;
    a.je(give_up)?;
    a.mov(qword_ptr(rsp + S_W_STALE), 0)?;
    a.mov(eax, dword_ptr(r11 + ring::ROOM as i32))?;
    a.mov(qword_ptr(rsp + S_W_ROOM), rax)?;
    a.mov(ecx, SPINS)?;
    a.set_label(&mut spin)?;
    a.pause()?;
    peek(a, ring, mask, room)?;
    a.dec(ecx)?;
    a.jne(spin)?;
    a.set_label(&mut wait)?;
    // WAITING before ROOM is read (xchg is a full barrier): rtrace bumps
    // ROOM before it clears WAITING, so a bump after the read is followed
    // by a wake-up, and one before it shows in the peek.
    a.mov(r11, base)?;
    a.mov(eax, 1)?;
    a.xchg(dword_ptr(r11 + ring::WAITING as i32), eax)?;
    a.lock().inc(dword_ptr(r11 + ring::DOORBELL as i32))?;
    a.lea(rdi, ptr(r11 + ring::DOORBELL as i32))?;
    a.mov(esi, FUTEX_WAKE)?;
    a.mov(edx, 1)?;
    a.mov(eax, SYS_FUTEX)?;
    a.syscall()?;
    a.mov(r11, base)?;
    a.mov(r8d, dword_ptr(r11 + ring::ROOM as i32))?;
    peek(a, ring, mask, room)?;
    unless_alive(a, give_up)?;
    // rtrace read since the last look (ROOM moved): it is reading, however
    // often the thread was woken meanwhile.
    a.cmp(r8, qword_ptr(rsp + S_W_ROOM))?;
    a.je(beat)?;
    a.mov(qword_ptr(rsp + S_W_ROOM), r8)?;
    a.mov(qword_ptr(rsp + S_W_STALE), 0)?;
    a.jmp(sleep)?;
    a.set_label(&mut beat)?;
    a.mov(eax, dword_ptr(r11 + ring::HEARTBEAT as i32))?;
    a.cmp(rax, qword_ptr(rsp + S_W_BEAT))?;
    a.je(no_beat)?;
    a.mov(qword_ptr(rsp + S_W_BEAT), rax)?;
    a.mov(qword_ptr(rsp + S_W_STALE), 0)?;
    a.jmp(sleep)?;
    a.set_label(&mut no_beat)?;
    a.inc(qword_ptr(rsp + S_W_STALE))?;
    a.cmp(qword_ptr(rsp + S_W_STALE), ring::STALE_ROOM_WAITS as i32)?;
    a.jae(stalled)?;
    a.set_label(&mut sleep)?;
    // futex(&ROOM, FUTEX_WAIT, r8d, {0, 1 ms})
    a.mov(qword_ptr(rsp + S_W_TS), 0)?;
    a.mov(qword_ptr(rsp + S_W_TS + 8), 1_000_000)?;
    a.lea(rdi, ptr(r11 + ring::ROOM as i32))?;
    a.mov(esi, FUTEX_WAIT)?;
    a.mov(edx, r8d)?;
    a.lea(r10, ptr(rsp + S_W_TS))?;
    a.mov(eax, SYS_FUTEX)?;
    a.syscall()?;
    a.jmp(wait)?;
    a.set_label(&mut stalled)?;
    a.mov(r11, base)?;
    a.mov(rax, qword_ptr(rsp + S_W_BEAT))?;
    a.bts(rax, 32)?;
    a.mov(qword_ptr(r11 + ring::STALE as i32), rax)?;
    a.jmp(give_up)?;
    Ok(())
}

/// Sends a thread stopped in a frame's `body` (at `regs`) back to
/// `resume_at`, where it entered the code that made the frame below
/// `below` bytes of stack (the red zone, and for the stub its slot), with
/// every register the frame saved given back and any system call it was in
/// not restarted. False, `regs` untouched, when the thread is not in the
/// body.
pub fn leave_wait(
    body: (u64, u64),
    resume_at: u64,
    below: u64,
    regs: &mut super::regs::Regs,
    stack: &dyn super::exec::Stack,
) -> crate::Result<bool> {
    if !(body.0..body.1).contains(&regs.ip()) {
        return Ok(false);
    }
    let base = regs.sp();
    let word = |off: i32| stack.read_word(base.wrapping_add(off as u64));
    use super::insn::Gpr;
    // r9, r8, rdi, then the six in reverse push order.
    let extra = [Gpr(9), Gpr(8), Gpr(7)];
    let six = [Gpr(11), Gpr(10), Gpr(6), Gpr(2), Gpr(1), Gpr(0)];
    let mut values = Vec::with_capacity(extra.len() + six.len());
    for i in 0..extra.len() + six.len() {
        values.push(word(TO_EXTRA + 8 * i as i32)?);
    }
    let flags = word(TO_FLAGS)?;
    for (reg, value) in extra.iter().chain(six.iter()).zip(values) {
        regs.set_gpr(*reg, value);
    }
    regs.raw_mut().eflags = flags;
    regs.set_sp(base.wrapping_add(TO_FLAGS as u64 + 8 + below));
    // Not back into a system call it was interrupted in.
    regs.raw_mut().orig_rax = u64::MAX;
    regs.set_ip(resume_at);
    Ok(true)
}
