//! rtrace's own hooks as fast sites: the dynamic linker's `_dl_debug_state`,
//! the unwinders' entries, `__cxa_begin_catch`, the functions that read
//! their own return address, and the return sites of `_Unwind_Backtrace`.
//! With fast probes, an int3 rtrace keeps for itself would kill the program
//! if rtrace died (nobody left to take its SIGTRAP); these detours go on
//! without rtrace instead. Pure, like `detour`: byte arrays in, bytes out.
//!
//! Each hook does its work in the thread that reaches it, and asks rtrace
//! for what only rtrace can do, waiting for the answer while rtrace lives:
//!
//! - [`HookKind::Rtld`]: posts a request and waits (rtrace reads the new
//!   link map and arms the probes of the libraries it brings, before any of
//!   their code runs).
//! - [`HookKind::Unwind`]: *parks* the thread's calls whose return address
//!   the detours swapped for the return stub: every slot above the stack
//!   pointer that holds the stub gets its original back, and its table entry
//!   is marked [`table::PARKED`]. The unwinder then walks real frames.
//! - [`HookKind::Backtrace`]: parks, and asks rtrace to hook the return site
//!   of `_Unwind_Backtrace` with [`HookKind::Unpark`] (the frames it walked
//!   return normally; its own return address must stay real: it reads it).
//! - [`HookKind::Catch`]: records a catch (the calls at or below its stack
//!   pointer were unwound) and unparks the calls parked by an unwinder
//!   entered below it: a parked call at or below the stack pointer is dead
//!   and its entry freed, one above that still holds its original return
//!   address gets the stub back. (A call parked by an unwinder entered above
//!   it stays parked: that unwinder is still running, interrupted by the
//!   signal handler this catch is in.)
//! - [`HookKind::Unpark`]: unparks (at a return site of `_Unwind_Backtrace`).
//! - [`HookKind::Caller`]: when the stub is in the slot of a function that
//!   reads its own return address (reached by a tail call from a watched
//!   call), puts the original back and asks rtrace to hook that return
//!   site with [`HookKind::Returned`], which records the return there.
//!
//! A request (rtld, backtrace) is posted in the ring's header
//! (`ring::REQUESTS`) and rtrace's watchman thread, asleep on the doorbell,
//! is woken by a futex wake. The hook then waits on the request's state
//! word, a millisecond at a time, while rtrace lives: it goes on at once
//! when the kernel has marked `ring::ALIVE` (rtrace died: a robust futex),
//! or when the heartbeat rtrace keeps while requests wait has not moved for
//! [`STALE_WAITS`] waits (rtrace is stopped). A hook never blocks a program
//! whose tracer is gone.
//!
//! The tables' memory is the program's: a slot is read only once `mincore`
//! says its page is mapped, so a stale entry (a coroutine's freed stack)
//! never faults a hook.

use iced_x86::code_asm::*;

use super::detour::{
    assembled, claim_slot, count_lost, count_return_lost, find_entry, home_entry,
    load_thread_pointer, restore_and_resume, ring, save, stamp, table, Detour, DetourLabels, Patch,
    RingLayout, ThreadPointer, KIND_CATCH, KIND_RETURN, RED_ZONE,
};
use super::detour_wait::{enter_frame, leave_frame, leave_wait, wait_for_room, TO_EXTRA, TO_FLAGS};

/// Which of rtrace's hooks a detour is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `_dl_debug_state`: waits for rtrace to take the new link map in.
    Rtld,
    /// An unwinder's entry (`_Unwind_RaiseException`, `_Unwind_Resume`,
    /// `_Unwind_Resume_or_Rethrow`, `_Unwind_ForcedUnwind`): parks.
    Unwind,
    /// `_Unwind_Backtrace`: parks, and asks for its return site's unpark.
    Backtrace,
    /// `__cxa_begin_catch`: records the catch and unparks.
    Catch,
    /// A return site of `_Unwind_Backtrace`: unparks.
    Unpark,
    /// A function that reads its own return address: takes the stub out
    /// of its slot and asks rtrace to watch the return at the return site
    /// with [`HookKind::Returned`].
    Caller,
    /// A return site watched for a call whose slot lost the stub (see
    /// `Caller`): records every pass as a return (rax, rdx, rsp).
    Returned,
}

/// A request's state word (u32, at [`REQ_STATE`]).
pub mod request {
    /// Free.
    pub const FREE: u32 = 0;
    /// Claimed by a hook, being filled.
    pub const CLAIMED: u32 = 1;
    /// Posted: rtrace is to serve it.
    pub const POSTED: u32 = 2;
    /// Served by rtrace; the hook frees it.
    pub const DONE: u32 = 3;
    /// A new link map (rtld).
    pub const KIND_RTLD: u32 = 1;
    /// A backtrace started: hook the return site at `ADDR` with an unpark.
    pub const KIND_BACKTRACE: u32 = 2;
    /// A call's slot (at `SP`) lost the stub: hook its return site at
    /// `ADDR` to see the return.
    pub const KIND_RETURN_SITE: u32 = 3;
}

/// A request's fields, from its start.
pub const REQ_STATE: u64 = 0;
/// What is asked (u32, `request::KIND_*`).
pub const REQ_KIND: u64 = 4;
/// The thread pointer of the thread that asks.
pub const REQ_TP: u64 = 8;
/// An address: the return site, for a backtrace.
pub const REQ_ADDR: u64 = 16;
/// The stack pointer at the hook.
pub const REQ_SP: u64 = 24;

/// Waits of a millisecond without a heartbeat after which a hook takes
/// rtrace for stopped and goes on.
pub const STALE_WAITS: u64 = 100;

const SYS_MINCORE: i32 = 27;
const SYS_FUTEX: i32 = 202;
const FUTEX_WAIT: i32 = 0;
const FUTEX_WAKE: i32 = 1;

/// Scratch slots (the frame's, see `detour_wait`).
const S_TS: i32 = 0;
const S_VEC: i32 = 16;
const S_TP: i32 = 24;
const S_LIMIT: i32 = 32;
const S_BEAT: i32 = 40;
const S_STALE: i32 = 48;
/// From rsp in the body to the site's stack pointer.
const TO_SITE_SP: i32 = TO_FLAGS + 8 + RED_ZONE as i32;

/// What a hook needs to know.
#[derive(Clone, Copy, Debug)]
pub struct HookSpec {
    /// Where it will be.
    pub at: u64,
    /// The site it hooks.
    pub at_site: u64,
    /// Which hook.
    pub kind: HookKind,
    /// The ring: its header holds the requests; a catch or caller record
    /// goes in a slot.
    pub ring: RingLayout,
    /// The site's index (its records', its lost counter).
    pub index: u32,
    /// How it reads the thread pointer.
    pub tp: ThreadPointer,
    /// The table of swapped return addresses, and the stub's address.
    pub table: u64,
    /// See `table`.
    pub stub: u64,
    /// A record that finds the ring full waits for room (see
    /// `detour_wait`) instead of being dropped.
    pub block: bool,
}

/// Writes the hook detour of `patch` as `spec` says.
pub fn assemble_hook(patch: &Patch, spec: &HookSpec) -> Result<Detour, String> {
    if u64::from(spec.index) >= ring::MAX_SITES - 1 {
        return Err(format!(
            "more than {} fast sites in one process",
            ring::MAX_SITES
        ));
    }
    let Ok(mask) = i32::try_from(spec.ring.capacity - 1) else {
        return Err("the ring is too large".into());
    };
    build(patch, spec, mask).map_err(|e| format!("the hook cannot be assembled: {e}"))
}

fn build(patch: &Patch, spec: &HookSpec, mask: i32) -> Result<Detour, iced_x86::IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut entry = a.create_label();
    let mut pushf = a.create_label();
    let mut body = a.create_label();
    let mut body_end = a.create_label();
    let mut displaced = a.create_label();
    let mut after_first = a.create_label();

    save(&mut a, RED_ZONE as i32, &mut entry, &mut pushf)?;
    enter_frame(&mut a)?;
    a.set_label(&mut body)?;
    // The thread pointer and the site's stack pointer, kept in the scratch.
    load_thread_pointer(&mut a, spec.tp, rax)?;
    a.mov(qword_ptr(rsp + S_TP), rax)?;
    a.lea(rax, ptr(rsp + TO_SITE_SP))?;
    a.mov(qword_ptr(rsp + S_LIMIT), rax)?;
    match spec.kind {
        HookKind::Rtld => post_and_wait(&mut a, spec, request::KIND_RTLD)?,
        HookKind::Unwind => park(&mut a, spec)?,
        HookKind::Backtrace => {
            park(&mut a, spec)?;
            post_and_wait(&mut a, spec, request::KIND_BACKTRACE)?;
        }
        HookKind::Catch => {
            record(&mut a, spec, mask, KIND_CATCH, false)?;
            unpark(&mut a, spec)?;
        }
        HookKind::Unpark => {
            // The unwinder's own slot, just below: everything parked is
            // above it.
            a.sub(qword_ptr(rsp + S_LIMIT), 8)?;
            unpark(&mut a, spec)?;
        }
        HookKind::Caller => {
            let mut done = a.create_label();
            caller(&mut a, spec, done)?;
            post_and_wait(&mut a, spec, request::KIND_RETURN_SITE)?;
            a.set_label(&mut done)?;
            a.nop()?;
        }
        HookKind::Returned => record(&mut a, spec, mask, KIND_RETURN, true)?,
    }
    // (A label of the body may end it: one instruction before the end.)
    a.nop()?;
    a.set_label(&mut body_end)?;
    leave_frame(&mut a)?;
    let steps = restore_and_resume(&mut a, patch, &mut displaced, &mut after_first)?;
    let labels = DetourLabels {
        entry,
        pushf,
        displaced,
        after_first,
        steps,
        body: Some((body, body_end)),
        faults: Vec::new(),
    };
    assembled(&mut a, spec.at, labels)
}

/// `mincore(page of rdx, 1, scratch)`: rax 0 when the page of the address
/// in rdx is mapped. Clobbers rax, rcx, rsi, rdi, r11 (and rdx's copy is
/// kept in rdi's place: the caller reloads what it needs).
fn mapped(a: &mut CodeAssembler) -> Result<(), iced_x86::IcedError> {
    a.mov(rdi, rdx)?;
    a.and(rdi, -4096)?;
    a.mov(esi, 1)?;
    a.lea(rdx, ptr(rsp + S_VEC))?;
    a.mov(eax, SYS_MINCORE)?;
    a.syscall()?;
    Ok(())
}

/// Parks the thread's calls: each entry of the table whose thread pointer
/// is the thread's (not parked), whose slot is above the site's stack
/// pointer, mapped, and holds the stub, gets its original back in the slot,
/// [`table::PARKED`] in its thread pointer and the site's stack pointer in
/// [`table::PARK_SP`].
fn park(a: &mut CodeAssembler, spec: &HookSpec) -> Result<(), iced_x86::IcedError> {
    let mut lp = a.create_label();
    let mut next = a.create_label();
    a.mov(r8, spec.table)?;
    a.mov(r9, spec.table + table::SIZE)?;
    a.set_label(&mut lp)?;
    a.mov(rdx, qword_ptr(r8 + table::KEY as i32))?;
    a.test(rdx, rdx)?;
    a.je(next)?;
    a.cmp(rdx, qword_ptr(rsp + S_LIMIT))?;
    a.jbe(next)?;
    a.mov(rax, qword_ptr(rsp + S_TP))?;
    a.cmp(qword_ptr(r8 + table::TP as i32), rax)?;
    a.jne(next)?;
    mapped(a)?;
    a.test(rax, rax)?;
    a.jne(next)?;
    a.mov(rdx, qword_ptr(r8 + table::KEY as i32))?;
    a.mov(rax, spec.stub)?;
    a.cmp(qword_ptr(rdx), rax)?;
    a.jne(next)?;
    a.mov(rax, qword_ptr(r8 + table::ORIG as i32))?;
    a.mov(qword_ptr(rdx), rax)?;
    a.mov(rax, qword_ptr(rsp + S_LIMIT))?;
    a.mov(qword_ptr(r8 + table::PARK_SP as i32), rax)?;
    a.bts(qword_ptr(r8 + table::TP as i32), 63)?;
    a.set_label(&mut next)?;
    a.add(r8, table::ENTRY as i32)?;
    a.cmp(r8, r9)?;
    a.jb(lp)?;
    Ok(())
}

/// Unparks the thread's calls parked by an unwinder entered at or below the
/// limit (`S_LIMIT`): one whose slot is at or below the limit is dead
/// (unwound) and its entry freed; one above it whose slot still holds its
/// original return address gets the stub back; any other (its frame is
/// gone, the slot reused) is freed. A call parked by an unwinder entered
/// above the limit stays parked: that unwinder is still at work further out
/// (this catch, or this backtrace, is a signal handler's that interrupted
/// it), and would find the stub in the frames it walks.
fn unpark(a: &mut CodeAssembler, spec: &HookSpec) -> Result<(), iced_x86::IcedError> {
    let mut lp = a.create_label();
    let mut live = a.create_label();
    let mut free = a.create_label();
    let mut next = a.create_label();
    a.mov(r8, spec.table)?;
    a.mov(r9, spec.table + table::SIZE)?;
    a.set_label(&mut lp)?;
    a.mov(rdx, qword_ptr(r8 + table::KEY as i32))?;
    a.test(rdx, rdx)?;
    a.je(next)?;
    a.mov(rax, qword_ptr(rsp + S_TP))?;
    a.bts(rax, 63)?;
    a.cmp(qword_ptr(r8 + table::TP as i32), rax)?;
    a.jne(next)?;
    a.mov(rax, qword_ptr(r8 + table::PARK_SP as i32))?;
    a.cmp(rax, qword_ptr(rsp + S_LIMIT))?;
    a.ja(next)?;
    a.cmp(rdx, qword_ptr(rsp + S_LIMIT))?;
    a.ja(live)?;
    a.jmp(free)?;
    a.set_label(&mut live)?;
    mapped(a)?;
    a.test(rax, rax)?;
    a.jne(free)?;
    a.mov(rdx, qword_ptr(r8 + table::KEY as i32))?;
    a.mov(rax, qword_ptr(r8 + table::ORIG as i32))?;
    a.cmp(qword_ptr(rdx), rax)?;
    a.jne(free)?;
    a.mov(rax, spec.stub)?;
    a.mov(qword_ptr(rdx), rax)?;
    a.btr(qword_ptr(r8 + table::TP as i32), 63)?;
    a.jmp(next)?;
    a.set_label(&mut free)?;
    a.mov(qword_ptr(r8 + table::KEY as i32), 0)?;
    a.set_label(&mut next)?;
    a.add(r8, table::ENTRY as i32)?;
    a.cmp(r8, r9)?;
    a.jb(lp)?;
    Ok(())
}

/// Records `kind` (the site's stack pointer as its rsp; with `ret`, a
/// return to the site: rax, rdx, the site in `RET_ADDR`) into a slot of the
/// ring; a full ring counts it lost. Uses rax, rcx, rdx, r10, r11.
fn record(
    a: &mut CodeAssembler,
    spec: &HookSpec,
    mask: i32,
    kind: u32,
    ret: bool,
) -> Result<(), iced_x86::IcedError> {
    let mut full = a.create_label();
    let mut lost = a.create_label();
    let mut claim = a.create_label();
    let mut done = a.create_label();
    if ret {
        a.mov(rax, spec.at_site)?;
        a.mov(qword_ptr(rsp + S_BEAT), rax)?;
    }
    a.set_label(&mut claim)?;
    claim_slot(a, spec.ring, mask, full)?;
    a.mov(dword_ptr(r10 + ring::INDEX as i32), spec.index)?;
    a.mov(dword_ptr(r10 + ring::KIND as i32), kind)?;
    a.mov(rax, qword_ptr(rsp + S_LIMIT))?;
    a.mov(qword_ptr(r10 + ring::RET_SP as i32), rax)?;
    if ret {
        // A return: rax and rdx as the program has them, the site as where
        // the call returned to, no string.
        a.mov(rax, qword_ptr(rsp + TO_EXTRA + 64))?;
        a.mov(qword_ptr(r10 + ring::RET_RAX as i32), rax)?;
        a.mov(rax, qword_ptr(rsp + TO_EXTRA + 48))?;
        a.mov(qword_ptr(r10 + ring::RET_RDX as i32), rax)?;
        a.movq(qword_ptr(r10 + ring::RET_XMM0 as i32), xmm0)?;
        a.mov(rax, qword_ptr(rsp + S_BEAT))?;
        a.mov(qword_ptr(r10 + ring::RET_ADDR as i32), rax)?;
        a.mov(dword_ptr(r10 + ring::RET_WATCH as i32), 0)?;
    }
    stamp(a, spec.tp)?;
    a.mov(qword_ptr(r10 + ring::SEQ as i32), r11)?;
    a.jmp(done)?;
    a.set_label(&mut full)?;
    a.nop()?;
    if spec.block {
        wait_for_room(a, spec.ring, mask, claim, lost)?;
    }
    a.set_label(&mut lost)?;
    count_lost(a, spec.ring.base, ring::LOST + 8 * u64::from(spec.index))?;
    a.set_label(&mut done)?;
    a.nop()?;
    Ok(())
}

/// The caller hook: when `[site sp]` is the stub, the slot's entry is
/// looked up, the original put back and the entry freed; a timed call is
/// counted missed, and on to `skip`. Otherwise (or with no entry) on to
/// `skip`.
fn caller(
    a: &mut CodeAssembler,
    spec: &HookSpec,
    skip: CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    let mut found = a.create_label();
    let mut timed = a.create_label();
    let mut counted = a.create_label();
    let mut next = a.create_label();
    let mut chained = a.create_label();
    let mut recorded = a.create_label();
    a.mov(rdx, qword_ptr(rsp + S_LIMIT))?;
    a.mov(rax, spec.stub)?;
    a.cmp(qword_ptr(rdx), rax)?;
    a.jne(skip)?;
    home_entry(a)?;
    find_entry(a, spec.table, found)?;
    a.jmp(skip)?;
    a.set_label(&mut found)?;
    a.mov(rax, qword_ptr(r11 + table::ORIG as i32))?;
    a.mov(qword_ptr(rdx), rax)?;
    a.cmp(dword_ptr(r11 + table::TIMED as i32), 0)?;
    a.jne(timed)?;
    a.mov(qword_ptr(r11 + table::KEY as i32), 0)?;
    a.jmp(recorded)?;
    // A timed call (and the calls chained to it) returns unseen now:
    // counted missed, the entries freed, and no return site asked for (the
    // return site would see the calls of that site that return through
    // the stub too, which rtrace does not know). r8: the chained calls
    // left, r9: the slot (the hook saved both).
    a.set_label(&mut timed)?;
    count_unwatched(a, spec)?;
    a.mov(r8d, dword_ptr(r11 + table::CHAIN as i32))?;
    a.cmp(r8d, table::MAX_CHAIN as i32)?;
    a.jbe(counted)?;
    a.xor(r8d, r8d)?;
    a.set_label(&mut counted)?;
    a.mov(r9, rdx)?;
    a.mov(qword_ptr(r11 + table::KEY as i32), 0)?;
    a.set_label(&mut next)?;
    a.test(r8d, r8d)?;
    a.je(skip)?;
    a.lea(rdx, ptr(r9 + r8))?;
    a.dec(r8d)?;
    home_entry(a)?;
    find_entry(a, spec.table, chained)?;
    a.jmp(next)?;
    a.set_label(&mut chained)?;
    count_unwatched(a, spec)?;
    a.mov(qword_ptr(r11 + table::KEY as i32), 0)?;
    a.jmp(next)?;
    a.set_label(&mut recorded)?;
    a.nop()?;
    Ok(())
}

/// Counts the call of the timed entry at r11 missed: `RET_LOST` of the
/// site it names (an index the ring cannot have is not counted), and the
/// total. Uses rax, rcx.
fn count_unwatched(a: &mut CodeAssembler, spec: &HookSpec) -> Result<(), iced_x86::IcedError> {
    a.mov(eax, dword_ptr(r11 + table::INDEX as i32))?;
    count_return_lost(a, spec.ring.base, rax, rcx)
}

/// Posts a request of `kind` and waits for rtrace to serve it, while rtrace
/// lives and keeps a heartbeat. A hook finding no free request, or no
/// rtrace, goes on at once.
fn post_and_wait(
    a: &mut CodeAssembler,
    spec: &HookSpec,
    kind: u32,
) -> Result<(), iced_x86::IcedError> {
    let mut claim = a.create_label();
    let mut claimed = a.create_label();
    let mut wait = a.create_label();
    let mut beating = a.create_label();
    let mut sleep = a.create_label();
    let mut stale = a.create_label();
    let mut release = a.create_label();
    let mut done = a.create_label();
    let base = spec.ring.base;
    // Only while rtrace lives.
    a.mov(r11, base)?;
    a.mov(eax, dword_ptr(r11 + ring::ALIVE as i32))?;
    a.test(eax, eax)?;
    a.je(done)?;
    a.test(eax, ring::OWNER_DIED)?;
    a.jne(done)?;
    // Claim a free request: r8 points at it.
    a.lea(r8, ptr(r11 + ring::REQUESTS as i32))?;
    a.lea(
        r9,
        ptr(r8 + (ring::REQUEST_COUNT * ring::REQUEST_SIZE) as i32),
    )?;
    a.set_label(&mut claim)?;
    a.xor(eax, eax)?;
    a.mov(edx, request::CLAIMED)?;
    a.lock().cmpxchg(dword_ptr(r8 + REQ_STATE as i32), edx)?;
    a.je(claimed)?;
    a.add(r8, ring::REQUEST_SIZE as i32)?;
    a.cmp(r8, r9)?;
    a.jb(claim)?;
    a.jmp(done)?;
    a.set_label(&mut claimed)?;
    a.mov(dword_ptr(r8 + REQ_KIND as i32), kind)?;
    a.mov(rax, qword_ptr(rsp + S_TP))?;
    a.mov(qword_ptr(r8 + REQ_TP as i32), rax)?;
    a.mov(rax, qword_ptr(rsp + S_LIMIT))?;
    a.mov(qword_ptr(r8 + REQ_SP as i32), rax)?;
    a.mov(rax, qword_ptr(rax))?;
    a.mov(qword_ptr(r8 + REQ_ADDR as i32), rax)?;
    a.mov(dword_ptr(r8 + REQ_STATE as i32), request::POSTED)?;
    // Ring the doorbell: rtrace's watchman sleeps on it.
    a.mov(r11, base)?;
    a.lock().inc(dword_ptr(r11 + ring::DOORBELL as i32))?;
    a.lea(rdi, ptr(r11 + ring::DOORBELL as i32))?;
    a.mov(esi, FUTEX_WAKE)?;
    a.mov(edx, 1)?;
    a.mov(eax, SYS_FUTEX)?;
    a.syscall()?;
    a.mov(r11, base)?;
    a.mov(eax, dword_ptr(r11 + ring::HEARTBEAT as i32))?;
    a.mov(qword_ptr(rsp + S_BEAT), rax)?;
    a.mov(qword_ptr(rsp + S_STALE), 0)?;
    a.set_label(&mut wait)?;
    a.mov(r11, base)?;
    a.cmp(dword_ptr(r8 + REQ_STATE as i32), request::DONE)?;
    a.je(release)?;
    a.mov(eax, dword_ptr(r11 + ring::ALIVE as i32))?;
    a.test(eax, eax)?;
    a.je(release)?;
    a.test(eax, ring::OWNER_DIED)?;
    a.jne(release)?;
    a.mov(eax, dword_ptr(r11 + ring::HEARTBEAT as i32))?;
    a.cmp(rax, qword_ptr(rsp + S_BEAT))?;
    a.je(stale)?;
    a.set_label(&mut beating)?;
    a.mov(qword_ptr(rsp + S_BEAT), rax)?;
    a.mov(qword_ptr(rsp + S_STALE), 0)?;
    a.jmp(sleep)?;
    a.set_label(&mut stale)?;
    a.inc(qword_ptr(rsp + S_STALE))?;
    a.cmp(qword_ptr(rsp + S_STALE), STALE_WAITS as i32)?;
    a.jae(release)?;
    a.set_label(&mut sleep)?;
    // futex(&state, FUTEX_WAIT, POSTED, {0, 1 ms})
    a.mov(qword_ptr(rsp + S_TS), 0)?;
    a.mov(qword_ptr(rsp + S_TS + 8), 1_000_000)?;
    a.lea(rdi, ptr(r8 + REQ_STATE as i32))?;
    a.mov(esi, FUTEX_WAIT)?;
    a.mov(edx, request::POSTED)?;
    a.lea(r10, ptr(rsp + S_TS))?;
    a.mov(eax, SYS_FUTEX)?;
    a.syscall()?;
    a.jmp(wait)?;
    a.set_label(&mut release)?;
    a.mov(dword_ptr(r8 + REQ_STATE as i32), request::FREE)?;
    a.set_label(&mut done)?;
    a.nop()?;
    Ok(())
}

/// Sends a thread stopped in the body of hook `detour` (at `regs`) back to
/// the site `site`, with every register the hook saved given back and any
/// system call it was in not restarted. False when the thread is not in the
/// body.
pub fn abandon(
    detour: &Detour,
    site: u64,
    regs: &mut super::regs::Regs,
    stack: &dyn super::exec::Stack,
) -> crate::Result<bool> {
    let Some(body) = detour.body else {
        return Ok(false);
    };
    leave_wait(body, site, RED_ZONE, regs, stack)
}
