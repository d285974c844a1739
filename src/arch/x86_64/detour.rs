//! Fast probes: the first bytes of a probed instruction are replaced by a
//! `jmp rel32` to a detour that records the hit into a ring shared with
//! rtrace, runs the displaced instructions and jumps back (the kernel's
//! optprobes, `arch/x86/kernel/kprobes/opt.c`, in userspace). No stop.
//!
//! Pure: byte arrays in, byte arrays out. [`plan_patch`] decides once, when
//! a site is patched, whether it can be (the kernel's `can_optimize`: the
//! displaced instructions must be relocatable, and no branch in the function
//! may land strictly inside the replaced bytes); [`assemble_detour`] writes
//! the detour for one site (iced-x86's `CodeAssembler`, whose block encoder
//! relocates RIP-relative operands and branches of the displaced
//! instructions); [`jump`] is the patch itself.
//!
//! The detour, at any distance from the site within ±2 GiB:
//!
//! ```text
//! lea rsp, [rsp-128]           ; past the red zone an instruction probe may be in
//! pushfq; push rax, rcx, rdx, rsi, r10, r11
//! claim a slot (Vyukov's bounded queue: lock cmpxchg on the enqueue position,
//!               a per-slot sequence number); the ring is full → lock inc lost[index], skip
//! record: index, kind, thread pointer, rdtsc, the site's registers (its
//!         `RegSet` and rsp; rflags when asked)
//! captures: C strings behind registers, stack bytes (each a byte loop whose
//!           load may fault: rtrace fixes such a fault up, see `Detour::faults`)
//! publish: slot.seq = position + 1
//! pop …; popfq; lea rsp, [rsp+128]
//! the displaced instructions, relocated
//! jmp back (site + patch length)
//! ```

pub use super::detour_leave::{back_to_site, emulate_rdtsc, stub_move, StubMove};
pub use super::detour_refusal::PatchRefusal;
use super::detour_wait::{enter_frame, leave_frame, wait_for_room};
use super::insn::{Gpr, RegSet};
use iced_x86::code_asm::*;
use iced_x86::{
    BlockEncoderOptions, Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind,
    Register,
};

/// The length of the patch's jump (`jmp rel32`); the displaced instructions
/// cover at least this much.
pub const JMP_LEN: usize = 5;
/// The x86-64 SysV red zone below the stack pointer, which the detour must
/// not touch (a leaf function may keep data there).
pub const RED_ZONE: u64 = 128;

pub use super::detour_layout::{
    ring, table, KIND_CATCH, KIND_ENTRY, KIND_NONE, KIND_RETURN, WATCH_CHAINED, WATCH_FULL,
    WATCH_NONE, WATCH_STUB,
};

/// A capture's status word, low 32 bits: the bytes copied.
pub const CAPTURE_LEN_MASK: u64 = 0xffff_ffff;
/// Status bit: a C string's NUL was found within the bytes asked for.
pub const CAPTURE_TERMINATED: u64 = 1 << 32;
/// Status bit: the memory could not be read (the status word's value until
/// the copy completes; a faulting load leaves it).
pub const CAPTURE_UNREADABLE: u64 = 1 << 33;

/// One shared ring, as a detour addresses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    /// Where the tracee maps it.
    pub base: u64,
    /// Slots (a power of two).
    pub capacity: u64,
    /// Bytes per slot (a multiple of 64).
    pub slot_size: u64,
}

impl RingLayout {
    /// The bytes the ring takes.
    pub fn size(&self) -> u64 {
        ring::SLOTS + self.capacity * self.slot_size
    }
}

/// What a detour copies besides the registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureKind {
    /// The C string `reg` points to: at most `max` bytes, up to its NUL.
    CStr {
        /// The register holding the pointer at the probed instruction.
        reg: Gpr,
        /// The most bytes copied.
        max: u32,
    },
    /// `len` bytes of the stack above the return address (from `sp + 8`).
    Stack {
        /// Bytes.
        len: u32,
    },
    /// The C string a stack argument points to: at most `max` bytes, up to
    /// its NUL.
    StackStr {
        /// The pointer's offset from `sp + 8`.
        offset: u32,
        /// The most bytes copied.
        max: u32,
    },
    /// The buffer `reg` points to: as many bytes as `len` holds, at most
    /// `max`.
    Bytes {
        /// The register holding the pointer at the probed instruction.
        reg: Gpr,
        /// The register holding the length.
        len: Gpr,
        /// The most bytes copied.
        max: u32,
    },
}

/// One capture in a record: what, and where its status word is (the bytes
/// follow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureField {
    /// What is copied.
    pub kind: CaptureKind,
    /// Offset of its status word in the slot.
    pub offset: u32,
}

impl CaptureField {
    /// The most bytes it copies.
    pub fn max(&self) -> u32 {
        match self.kind {
            CaptureKind::CStr { max, .. }
            | CaptureKind::StackStr { max, .. }
            | CaptureKind::Bytes { max, .. } => max,
            CaptureKind::Stack { len } => len,
        }
    }
}

/// Places `kinds` one after the other, after the registers of `regs` (see
/// [`entry_regs`]); returns the fields and the record size they need (a
/// multiple of 64).
pub fn layout_captures(kinds: &[CaptureKind], regs: RegSet) -> (Vec<CaptureField>, u64) {
    let regs = entry_regs(regs);
    let mut at = ring::REGS + 8 * u64::from(regs.len() + regs.xmm_len());
    let mut fields = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let field = CaptureField {
            kind,
            offset: at as u32,
        };
        at += 8 + u64::from(field.max()).div_ceil(8) * 8;
        fields.push(field);
    }
    (fields, at.div_ceil(64) * 64)
}

/// How a detour reads the thread pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadPointer {
    /// `rdfsbase` (the kernel enabled FSGSBASE for user space): never faults.
    Rdfsbase,
    /// `mov rax, fs:[0]`: the TCB's pointer to itself in glibc, which equals
    /// `fs_base`.
    FsSelf,
}

/// The displaced instructions of one site, judged relocatable.
#[derive(Clone, Debug)]
pub struct Patch {
    /// The probed address.
    pub addr: u64,
    /// The bytes replaced at `addr`: whole instructions, then, past a
    /// function's last instruction, dead fill (the alignment padding up to
    /// the next function). At least [`JMP_LEN`], or [`HOP_LEN`] for a hop.
    pub len: usize,
    /// The original bytes there.
    pub saved: Vec<u8>,
    pub(super) insns: Vec<Instruction>,
    /// The site takes a 2-byte `jmp rel8` (it replaces only its first
    /// instruction) to a `jmp rel32` written into dead fill within the
    /// short jump's reach: [`Patch::fill`], which the caller chooses.
    pub hop: bool,
    /// For a hop: where its `jmp rel32` goes, and the fill's bytes there.
    pub fill: Option<Fill>,
    /// For a hop or a pun: why a plain `jmp rel32` at the site would not do.
    pub near_refusal: Option<PatchRefusal>,
    /// An instruction pun (see [`plan_pun`]): the `jmp rel32` at the site
    /// replaces only its first instruction, the rest of its displacement
    /// being the bytes that follow, unchanged; it leads to this address
    /// (which the caller chooses within [`Patch::pun_window`] and fills with
    /// a `jmp rel32` to the detour).
    pub pun: Option<u64>,
    /// For a pun: its first instruction's length (the bytes it may choose).
    pub pun_free: usize,
    /// For a pun: the instructions after the first that may be evicted
    /// when no place in the pun's window can be had (see [`plan_evict`]).
    pub evict: Option<Evict>,
    /// The function jumps out of itself ([`tail_calls`]).
    pub tail_calls: bool,
}

/// The successor of a pun's first instruction, evicted (e9patch's
/// successor eviction): its instructions (whole, at least [`JMP_LEN`]
/// bytes, none a branch, a call or a return) are moved to a trampoline of
/// their own, which runs them and jumps back past them, and their bytes
/// take a `jmp rel32` to it. The site's jump then ends in that jump's bytes
/// (its `0xe9` and displacement), which rtrace chooses too: where the
/// original bytes would send the site's jump somewhere it cannot go
/// (past the top of the address space, into a mapping), the pair of jumps
/// can go where there is room. Code that branches to the successor still
/// lands on an instruction: its jump.
#[derive(Clone, Debug)]
pub struct Evict {
    /// The instructions moved, from the successor on.
    pub insns: Vec<Instruction>,
    /// Their bytes, as they were.
    pub saved: Vec<u8>,
    /// Where their trampoline is (chosen by the caller with the site's
    /// jump: see [`evicting_pun_rels`] and [`evicted_rels`]); None while
    /// the plain pun is tried.
    pub at: Option<u64>,
}

impl Evict {
    /// The successor's address.
    pub fn addr(&self) -> u64 {
        self.insns.first().map_or(0, Instruction::ip)
    }

    /// The bytes the successor's instructions take.
    pub fn len(&self) -> usize {
        self.saved.len()
    }

    /// The trampoline at `at`: the instructions, relocated, then `jmp`
    /// back past them.
    pub fn trampoline(&self, at: u64) -> Result<Vec<u8>, String> {
        let mut a = CodeAssembler::new(64).map_err(|e| e.to_string())?;
        let back = self.addr() + self.len() as u64;
        let built = (|| {
            for insn in &self.insns {
                a.add_instruction(*insn)?;
            }
            a.jmp(back)?;
            a.assemble(at)
        })();
        built.map_err(|e| format!("the evicted instructions cannot be moved there ({e})"))
    }

    /// The most bytes [`Evict::trampoline`] takes.
    pub fn trampoline_room(&self) -> u64 {
        (self.len() + JMP_LEN) as u64
    }
}

/// The displacements (of a `jmp rel32`) that a pun whose first
/// instruction is `pun_free` bytes long can take when the successor is
/// evicted: the displacement's byte `pun_free - 1` is the successor's
/// `jmp` opcode (`0xe9`), the bytes below it are free, and those above it
/// are the low bytes of the successor's own displacement. As a periodic
/// set: `(period, first, run)`: `r` is one when `r mod period` is in
/// `first..first + run`.
pub fn evicting_pun_rels(pun_free: usize) -> (i64, i64, i64) {
    let shift = 8 * (pun_free as u32 - 1);
    (1i64 << (shift + 8), 0xe9i64 << shift, 1i64 << shift)
}

/// The successor's displacements that go with the site's displacement
/// `rel` (one of [`evicting_pun_rels`]): its low bytes are `rel`'s high
/// ones; as `(period, first)`.
pub fn evicted_rels(pun_free: usize, rel: i32) -> (i64, i64) {
    let shift = 8 * pun_free as u32;
    let period = 1i64 << (32 - shift);
    let first = match shift {
        32 => 0,
        _ => i64::from((rel as u32) >> shift),
    };
    (period, first)
}

/// Whether `function` (at `start`) jumps out of itself: a direct jump
/// whose target is outside it (a tail call), or any indirect jump (a tail
/// call through a pointer, or a jump table: it cannot tell). Such a call's
/// return address may be the one another function returns to.
pub fn tail_calls(function: &[u8], start: u64) -> bool {
    let end = start + function.len() as u64;
    let mut decoder = decode_at(function, start);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        match insn.flow_control() {
            FlowControl::IndirectBranch => return true,
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                let t = insn.near_branch_target();
                if t < start || t >= end {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Dead fill that holds a hop's `jmp rel32`: its address and the
/// [`JMP_LEN`] bytes it had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    pub at: u64,
    pub saved: Vec<u8>,
}

/// The length of a hop (`jmp rel8`).
pub const HOP_LEN: usize = 2;

/// How far a hop reaches, before and after the end of its `jmp rel8`.
pub const HOP_REACH: (i64, i64) = (-128, 127);

/// How many leading bytes of `bytes` (at `ip`) are dead fill: `int3`
/// bytes and whole `nop` instructions, which compilers and assemblers put
/// between functions to align the next one. Nothing runs there.
pub fn dead_fill(bytes: &[u8], ip: u64) -> usize {
    let mut n = 0;
    let mut decoder = decode_at(bytes, ip);
    while n < bytes.len() {
        if bytes[n] == 0xcc {
            n += 1;
            decoder = decode_at(&bytes[n..], ip + n as u64);
            continue;
        }
        if !decoder.can_decode() {
            break;
        }
        let insn = decoder.decode();
        if insn.is_invalid() || insn.mnemonic() != Mnemonic::Nop {
            break;
        }
        n += insn.len();
    }
    n
}

/// A generated detour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detour {
    /// Its code, to be written at the address it was assembled for.
    pub code: Vec<u8>,
    /// (ip of a load that may fault, ip to go on at): a capture reading
    /// memory that is not mapped raises SIGSEGV there; rtrace moves the
    /// thread to the fix-up, which leaves the capture marked unreadable,
    /// instead of delivering the signal (the kernel's exception tables).
    pub faults: Vec<(u64, u64)>,
    /// The first instruction, and the `pushfq` after it: a thread stopped
    /// at either has done nothing yet but move its stack pointer below the
    /// red zone, and can be sent back to the site instead of stepped (a
    /// stepped `pushfq` would push the trap flag).
    pub entry: u64,
    /// See `entry`.
    pub pushf: u64,
    /// Where the relocated displaced instructions begin: past it the
    /// registers are the program's again.
    pub displaced: u64,
    /// What follows the relocated copy of the first displaced instruction
    /// (the next one's copy, or the jump back): a thread stepped there
    /// from `displaced` has run the probed instruction, and stands where
    /// the original code has the instruction after it.
    pub after_first: u64,
    /// The instructions that give the saved registers back (six pops,
    /// `popfq`, the `lea` back over the red zone), in order: a thread
    /// stopped at one of them is finished by [`finish_restore`] rather than
    /// single-stepped, because a stepped `popfq` leaves the kernel believing
    /// the program set the trap flag itself, and it is never cleared.
    pub restore: Vec<u64>,
    /// The body: for one of rtrace's own hooks (`hook::assemble_hook`),
    /// from the first instruction after every register is saved to the
    /// first that gives them back; for a detour that waits for room in a
    /// full ring, its wait (`detour_wait`). A thread stopped there is sent
    /// back to the site instead of stepped ([`leave_wait`]): what a hook
    /// does can be done again, a waiting detour has recorded nothing yet,
    /// and their loops and waits are long to step.
    pub body: Option<(u64, u64)>,
}

/// How many instructions the restore takes.
pub(super) const RESTORE_STEPS: usize = 8;

/// Finishes what a thread stopped at `regs.ip()` among `detour.restore`
/// had left of the restore, on `regs` and the stack words it pops, and
/// moves it to the displaced instructions. False when the thread is not
/// there.
pub fn finish_restore(
    detour: &Detour,
    regs: &mut super::regs::Regs,
    stack: &dyn super::exec::Stack,
) -> crate::Result<bool> {
    let Some(at) = detour.restore.iter().position(|&ip| ip == regs.ip()) else {
        return Ok(false);
    };
    restore_from(at, regs, stack)?;
    regs.set_ip(detour.displaced);
    Ok(true)
}

fn decode_at(code: &[u8], ip: u64) -> Decoder<'_> {
    Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
}

/// Decides whether the instruction(s) at `addr` can be replaced by a jump to
/// a detour. `function` is the whole function containing `addr` (its original
/// bytes: no breakpoint in them) starting at `start`; the patch must stay
/// inside it. Refused, with the reason, when:
///
/// - fewer than [`JMP_LEN`] bytes of whole instructions are left in the
///   function;
/// - a displaced instruction cannot run elsewhere: a system call or an
///   interrupt (a thread could block or stop inside the detour), `pushf`
///   (it would push the trap flag if a thread had to be stepped out of the
///   detour), transactional memory, an invalid or privileged instruction,
///   a call that is not the last displaced instruction (its return address
///   would land inside the replaced bytes) or that calls through the stack
///   pointer. The last displaced instruction may be a call: it moves as a
///   push of its return address in the original code and a jump;
/// - any direct branch in the function, or any RIP-relative address it
///   takes, lands strictly inside the replaced bytes (the kernel's
///   `can_optimize`), or the function jumps indirectly other than through a
///   RIP-relative slot (a jump table could land there).
#[cfg(test)]
pub fn plan_patch(function: &[u8], start: u64, addr: u64) -> Result<Patch, PatchRefusal> {
    plan(function, &[], start, addr, false)
}

/// [`plan_patch`] for one of rtrace's own hooks (see `hook`), at the entry
/// of a well-known runtime function (the dynamic linker's, the unwinder's,
/// the C++ runtime's). Two rules are relaxed:
///
/// - a function shorter than a jump (`_dl_debug_state` is a lone `ret`)
///   may be patched over the padding that follows it up to the next
///   function, when that padding is nothing but `nop`s: no code runs or
///   lands there;
/// - at a function's entry, an indirect jump in the function is not a
///   reason to refuse: its targets (a jump table's case blocks, the landing
///   pad an unwinder installs) are where control arrives from elsewhere,
///   never the middle of the function's first instructions, which only the
///   entry reaches; direct branches into them are still checked, in the
///   function and across the module.
pub fn plan_hook_patch(
    function: &[u8],
    padding: &[u8],
    start: u64,
    addr: u64,
) -> Result<Patch, PatchRefusal> {
    let mut extended = function.to_vec();
    let mut decoder = decode_at(padding, start + function.len() as u64);
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() || insn.mnemonic() != Mnemonic::Nop {
            break;
        }
        let at = (insn.ip() - start) as usize - function.len();
        extended.extend_from_slice(&padding[at..at + insn.len()]);
    }
    plan(&extended, &[], start, addr, addr == start)
}

/// [`plan_patch`] for a site of the program, with what follows its function
/// (`after`: the bytes up to the next function, of which the leading
/// [`dead_fill`] counts), and two more ways when a `jmp rel32` at the site
/// cannot be written:
///
/// - a function that ends (`ret`, `jmp`) before [`JMP_LEN`] bytes may be
///   patched over the dead fill that follows it;
/// - otherwise a **hop**: a 2-byte `jmp rel8` replaces only the site's
///   first instruction (at least 2 bytes, or its function's last one with
///   dead fill after it), and leads to a `jmp rel32` the caller writes into
///   dead fill nearby ([`Patch::fill`]). No other instruction moves, so a
///   branch to the second instruction, a jump table's case, a call's return
///   address past the first instruction, and a signal frame interrupted at
///   an instruction boundary all stay valid: an instruction is never entered
///   in its middle. The first instruction may be a call (see
///   [`plan_patch`]).
pub fn plan_site(
    function: &[u8],
    after: &[u8],
    start: u64,
    addr: u64,
) -> Result<Patch, PatchRefusal> {
    let fill = dead_fill(after, start + function.len() as u64);
    let near = plan(function, &after[..fill], start, addr, false);
    match near {
        Ok(p) => Ok(p),
        Err(why) if why.hop_may_help() => match hop(function, &after[..fill], start, addr) {
            Ok(mut p) => {
                p.near_refusal = Some(why);
                Ok(p)
            }
            Err(_) => Err(why),
        },
        Err(why) => Err(why),
    }
}

/// An instruction pun (e9patch's, Duck et al., PLDI 2020), for a site whose
/// first instruction is shorter than a jump and no hop reaches fill: `jmp
/// rel32` is written over the first instruction alone, and the bytes that
/// follow it (the next instructions, left as they are) complete its
/// displacement. The jump's target is then fixed but for the bytes the
/// first instruction frees (none for a 1-byte one: one address; a 2-byte
/// one: 256 addresses...): the caller maps a page there and writes a `jmp
/// rel32` to the detour at the address chosen ([`Patch::pun`]). Only the
/// first instruction is displaced and only its bytes change, so, as with a
/// hop, branches to the next instructions stay valid.
pub fn plan_pun(
    function: &[u8],
    after: &[u8],
    start: u64,
    addr: u64,
) -> Result<Patch, PatchRefusal> {
    let (first, from, _) = first_insn(function, start, addr)?;
    if first.len() >= JMP_LEN {
        return Err(PatchRefusal::TooShort { have: first.len() });
    }
    let mut bytes = function[from..].to_vec();
    bytes.extend_from_slice(after);
    if bytes.len() < JMP_LEN {
        return Err(PatchRefusal::TooShort { have: bytes.len() });
    }
    check_branches(function, start, addr..addr + first.len() as u64, true)?;
    Ok(Patch {
        addr,
        len: JMP_LEN,
        saved: bytes[..JMP_LEN].to_vec(),
        insns: vec![first],
        hop: false,
        fill: None,
        near_refusal: None,
        pun: None,
        pun_free: first.len(),
        evict: None,
        tail_calls: tail_calls(function, start),
    })
}

/// The successor eviction (see [`Evict`]) that pun `pun` (of `function`,
/// at `start`) may fall back on: whole instructions from the one after the
/// first, covering at least [`JMP_LEN`] bytes, inside the function, each
/// displaceable and none changing the flow, with no branch landing
/// strictly inside them (more than one only when the function has no
/// indirect jump, whose targets are not known: a lone instruction's start
/// stays an instruction's).
pub fn plan_evict(function: &[u8], start: u64, pun: &Patch) -> Result<Evict, PatchRefusal> {
    let at = pun.addr + pun.pun_free as u64;
    let end = start + function.len() as u64;
    if pun.pun_free == 0 || at < start || at >= end {
        return Err(PatchRefusal::OutsideFunction);
    }
    let from = (at - start) as usize;
    let mut decoder = decode_at(&function[from..], at);
    let mut insns = Vec::new();
    let mut len = 0;
    while len < JMP_LEN {
        if !decoder.can_decode() {
            return Err(PatchRefusal::TooShort { have: len });
        }
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(PatchRefusal::Undecodable);
        }
        displaceable(&insn)?;
        if insn.flow_control() != FlowControl::Next {
            return Err(PatchRefusal::Displaced {
                insn: insn.to_string(),
                why: "changes the flow (an evicted instruction must fall through)",
            });
        }
        len += insn.len();
        insns.push(insn);
    }
    check_branches(function, start, at..at + len as u64, insns.len() == 1)?;
    Ok(Evict {
        insns,
        saved: function[from..from + len].to_vec(),
        at: None,
    })
}

impl Patch {
    /// The most bytes from the site the patch may replace: a pun's
    /// successor's too, when it may be evicted.
    pub fn span(&self) -> usize {
        match &self.evict {
            Some(e) => self.len.max(self.pun_free + e.len()),
            None => self.len,
        }
    }

    /// True when a thread at `ip` would be in the middle of an instruction
    /// once the patch is written (or about to be): inside the bytes it
    /// replaces but at no instruction that keeps its start. A pun keeps the
    /// instructions after its first (the successor, when evicted, starts
    /// with its jump).
    pub fn splits(&self, ip: u64) -> bool {
        let inside = |from: u64, len: usize| (from + 1..from + len as u64).contains(&ip);
        match self.pun_free {
            0 => inside(self.addr, self.len),
            n => {
                inside(self.addr, n)
                    || self
                        .evict
                        .as_ref()
                        .is_some_and(|e| inside(e.addr(), e.len()))
            }
        }
    }

    /// Takes the eviction: the patch replaces the successor's bytes too,
    /// and its trampoline is at `at`; the site's jump leads to `pun`.
    pub fn take_eviction(&mut self, pun: u64, at: u64) {
        if let Some(e) = self.evict.as_mut() {
            e.at = Some(at);
            self.saved.truncate(self.pun_free);
            self.saved.extend_from_slice(&e.saved);
            self.len = self.saved.len();
            self.pun = Some(pun);
        }
    }

    /// For a pun, the addresses its jump can reach (inclusive): the bytes
    /// after the first instruction fixed, the others free.
    pub fn pun_window(&self) -> Option<(u64, u64)> {
        if self.pun_free == 0 {
            return None;
        }
        let free = self.pun_free - 1;
        let rel = |fill: u8| {
            let mut r = [fill; 4];
            r[free..].copy_from_slice(&self.saved[1 + free..JMP_LEN]);
            i64::from(i32::from_le_bytes(r))
        };
        let next = (self.addr + JMP_LEN as u64) as i64;
        Some(((next + rel(0)) as u64, (next + rel(0xff)) as u64))
    }
}

/// The instruction at `addr` of `function` (at `start`), judged
/// displaceable, with its offset in the function and the function's end.
fn first_insn(
    function: &[u8],
    start: u64,
    addr: u64,
) -> Result<(Instruction, usize, u64), PatchRefusal> {
    let end = start + function.len() as u64;
    if addr < start || addr >= end {
        return Err(PatchRefusal::OutsideFunction);
    }
    let from = (addr - start) as usize;
    let mut decoder = decode_at(&function[from..], addr);
    if !decoder.can_decode() {
        return Err(PatchRefusal::TooShort { have: 0 });
    }
    let first = decoder.decode();
    if first.is_invalid() {
        return Err(PatchRefusal::Undecodable);
    }
    displaceable(&first)?;
    Ok((first, from, end))
}

/// Whether `insn` ends the code that runs on: nothing after it runs unless
/// something jumps there.
fn ends_flow(insn: &Instruction) -> bool {
    matches!(
        insn.flow_control(),
        FlowControl::Return | FlowControl::UnconditionalBranch | FlowControl::IndirectBranch
    ) || matches!(insn.mnemonic(), Mnemonic::Ud2 | Mnemonic::Hlt)
}

/// Whether the code after `function` (its bytes, at `start`) can only be
/// reached by a branch: decoded from its start, its last instruction ends
/// exactly at its end and ends the flow (`ret`, a jump, `ud2`, `hlt`,
/// which faults in a program: `_start` ends with it). The
/// padding after a function that does not is run: glibc's
/// `__memcpy_chk_*` end with `jb __chk_fail` and fall through their
/// padding into `__memcpy_*`. (A trailing call to a function that does not
/// return counts as falling through: whether it returns is not known.)
pub fn ends_flow_at_end(function: &[u8], start: u64) -> bool {
    let mut decoder = decode_at(function, start);
    let mut insn = Instruction::default();
    let mut last = None;
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            return false;
        }
        last = Some(insn);
    }
    last.is_some_and(|i| i.next_ip() == start + function.len() as u64 && ends_flow(&i))
}

/// The hop of [`plan_site`], whether or not a `jmp rel32` would do (the
/// caller may know of branches from elsewhere into the bytes it would
/// replace).
pub fn plan_hop(
    function: &[u8],
    after: &[u8],
    start: u64,
    addr: u64,
) -> Result<Patch, PatchRefusal> {
    let fill = dead_fill(after, start + function.len() as u64);
    hop(function, &after[..fill], start, addr)
}

fn hop(function: &[u8], fill: &[u8], start: u64, addr: u64) -> Result<Patch, PatchRefusal> {
    let (first, from, end) = first_insn(function, start, addr)?;
    let mut len = first.len();
    let mut saved = function[from..from + len].to_vec();
    if len < HOP_LEN {
        // The function's last instruction, and dead fill after it.
        if first.next_ip() != end || !ends_flow(&first) || fill.len() < HOP_LEN - len {
            return Err(PatchRefusal::TooShort { have: len });
        }
        saved.extend_from_slice(&fill[..HOP_LEN - len]);
        len = HOP_LEN;
    }
    check_branches(function, start, addr..addr + first.len() as u64, true)?;
    Ok(Patch {
        addr,
        len,
        saved,
        insns: vec![first],
        hop: true,
        fill: None,
        near_refusal: None,
        pun: None,
        pun_free: 0,
        evict: None,
        tail_calls: tail_calls(function, start),
    })
}

fn plan(
    function: &[u8],
    fill: &[u8],
    start: u64,
    addr: u64,
    entry_hook: bool,
) -> Result<Patch, PatchRefusal> {
    let end = start + function.len() as u64;
    if addr < start || addr >= end {
        return Err(PatchRefusal::OutsideFunction);
    }
    let from = (addr - start) as usize;
    let mut decoder = decode_at(&function[from..], addr);
    let mut insns: Vec<Instruction> = Vec::new();
    let mut len = 0usize;
    let mut over_fill = 0;
    while len < JMP_LEN {
        if !decoder.can_decode() {
            // The function ends here: its last instruction must end the
            // flow, and dead fill follow, for the jump to run over it.
            let need = JMP_LEN - len;
            if insns.last().is_some_and(ends_flow) && fill.len() >= need {
                over_fill = need;
                break;
            }
            return Err(PatchRefusal::TooShort { have: len });
        }
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(PatchRefusal::Undecodable);
        }
        displaceable(&insn)?;
        let is_call = matches!(
            insn.flow_control(),
            FlowControl::Call | FlowControl::IndirectCall
        );
        len += insn.len();
        insns.push(insn);
        if is_call && len < JMP_LEN {
            return Err(PatchRefusal::Displaced {
                insn: insn.to_string(),
                why: "is a call whose return address would land inside the bytes a jump \
                      replaces",
            });
        }
    }
    let code_len = len;
    // A jump table's cases are instruction boundaries: none is strictly
    // inside a lone displaced instruction.
    check_branches(
        function,
        start,
        addr..addr + (code_len + over_fill) as u64,
        entry_hook || insns.len() == 1,
    )?;
    let mut saved = function[from..from + code_len].to_vec();
    saved.extend_from_slice(&fill[..over_fill]);
    Ok(Patch {
        addr,
        len: code_len + over_fill,
        saved,
        insns,
        hop: false,
        fill: None,
        near_refusal: None,
        pun: None,
        pun_free: 0,
        evict: None,
        tail_calls: tail_calls(function, start),
    })
}

/// Refuses when any direct branch in `function`, or any RIP-relative
/// address it takes, lands strictly inside `replaced`, or (unless
/// `indirect_ok`) the function jumps through anything but a RIP-relative
/// slot.
fn check_branches(
    function: &[u8],
    start: u64,
    replaced: std::ops::Range<u64>,
    indirect_ok: bool,
) -> Result<(), PatchRefusal> {
    let range = (replaced.start + 1)..replaced.end;
    let mut decoder = decode_at(function, start);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            return Err(PatchRefusal::UndecodableAt { at: insn.ip() });
        }
        let near = matches!(
            insn.op0_kind(),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        );
        if near && range.contains(&insn.near_branch_target()) {
            return Err(PatchRefusal::JumpsInto {
                insn: insn.to_string(),
                at: insn.ip(),
            });
        }
        if insn.is_ip_rel_memory_operand() && range.contains(&insn.ip_rel_memory_address()) {
            return Err(PatchRefusal::TakesAddress {
                insn: insn.to_string(),
                at: insn.ip(),
            });
        }
        let through_slot = insn.op0_kind() == OpKind::Memory && insn.is_ip_rel_memory_operand();
        if insn.flow_control() == FlowControl::IndirectBranch && !through_slot && !indirect_ok {
            return Err(PatchRefusal::IndirectJump {
                insn: insn.to_string(),
                at: insn.ip(),
            });
        }
    }
    Ok(())
}

/// Whether `insn` can be moved into a detour.
fn displaceable(insn: &Instruction) -> Result<(), PatchRefusal> {
    let refuse = |why: &'static str| {
        Err(PatchRefusal::Displaced {
            insn: insn.to_string(),
            why,
        })
    };
    if insn.is_privileged() {
        return refuse("is privileged");
    }
    // (iced-x86 counts `syscall` as a call.)
    if matches!(insn.mnemonic(), Mnemonic::Syscall | Mnemonic::Sysenter) {
        return refuse("is a system call (a thread could block inside the detour)");
    }
    match insn.flow_control() {
        // Moved as `push` of the return address in the original code, then
        // `jmp` to the callee (see `relocated_call`).
        FlowControl::Call | FlowControl::IndirectCall => {
            if call_as_jump(insn.code()).is_none() {
                return refuse("is a call of a kind rtrace does not move");
            }
            if insn.op0_kind() == OpKind::Memory
                && matches!(insn.memory_base(), Register::RSP | Register::ESP)
            {
                return refuse(
                    "is a call through the stack (the pushed return address would move it)",
                );
            }
        }
        FlowControl::Interrupt | FlowControl::Exception => {
            return refuse("traps (int, ud2, a system call)")
        }
        FlowControl::XbeginXabortXend => return refuse("is transactional memory"),
        FlowControl::Next
        | FlowControl::UnconditionalBranch
        | FlowControl::ConditionalBranch
        | FlowControl::IndirectBranch
        | FlowControl::Return => {}
    }
    if matches!(
        insn.code(),
        Code::Pushfq | Code::Pushfw | Code::Pushfd | Code::Popfq | Code::Popfw | Code::Popfd
    ) {
        return refuse(
            "moves the flags through the stack (a thread stepped out of the detour would get \
             the trap flag)",
        );
    }
    if insn.memory_base() == Register::EIP {
        return refuse("addresses memory relative to eip");
    }
    Ok(())
}

/// The jump that replaces a displaced call: the same operand, `jmp`.
fn call_as_jump(code: Code) -> Option<Code> {
    match code {
        Code::Call_rel32_64 => Some(Code::Jmp_rel32_64),
        Code::Call_rm64 => Some(Code::Jmp_rm64),
        _ => None,
    }
}

/// `jmp rel32` at `from` to `to`, when in reach.
fn jmp_rel32(from: u64, to: u64) -> Option<Vec<u8>> {
    let rel = (to as i64).wrapping_sub((from + JMP_LEN as u64) as i64);
    let rel = i32::try_from(rel).ok()?;
    let mut bytes = vec![0xe9];
    bytes.extend_from_slice(&rel.to_le_bytes());
    Some(bytes)
}

/// The length of [`far_jump`].
pub const FAR_JUMP_LEN: usize = 14;

/// `jmp qword [rip]` and the address it reads: an indirect jump to `to`,
/// at any distance, for a detour out of a `jmp rel32`'s reach (written into
/// dead fill within reach of the site).
pub fn far_jump(to: u64) -> Vec<u8> {
    let mut bytes = vec![0xff, 0x25, 0, 0, 0, 0];
    bytes.extend_from_slice(&to.to_le_bytes());
    bytes
}

/// The bytes of the patch, as (address, bytes) to write: `jmp rel32` from
/// `patch.addr` to `detour`, then `int3` over the rest of the replaced
/// bytes (never executed: no branch lands there); for a hop, the `jmp
/// rel8` at the site to its fill, and the fill's `jmp rel32`, the fill
/// first. None when the detour (or the fill) is out of reach.
pub fn jump(patch: &Patch, detour: u64) -> Option<Vec<(u64, Vec<u8>)>> {
    if let (Some(at), Some(e)) = (patch.pun, patch.evict.as_ref()) {
        if let Some(to) = e.at {
            // The site's jump, whose displacement ends in the successor's.
            let mut bytes = jmp_rel32(patch.addr, at)?;
            let mut successor = jmp_rel32(e.addr(), to)?;
            successor.resize(e.len(), 0xcc);
            if bytes[patch.pun_free..] != successor[..JMP_LEN - patch.pun_free] {
                return None;
            }
            bytes.truncate(patch.pun_free);
            bytes.extend_from_slice(&successor);
            return Some(vec![(at, jmp_rel32(at, detour)?), (patch.addr, bytes)]);
        }
    }
    if let Some(at) = patch.pun {
        // The site's jump, whose displacement ends in the bytes there.
        let bytes = jmp_rel32(patch.addr, at)?;
        if bytes[patch.pun_free..] != patch.saved[patch.pun_free..JMP_LEN] {
            return None;
        }
        return Some(vec![(at, jmp_rel32(at, detour)?), (patch.addr, bytes)]);
    }
    if !patch.hop {
        let mut bytes = jmp_rel32(patch.addr, detour)?;
        bytes.resize(patch.len, 0xcc);
        return Some(vec![(patch.addr, bytes)]);
    }
    let fill = patch.fill.as_ref()?;
    let rel = (fill.at as i64).wrapping_sub((patch.addr + HOP_LEN as u64) as i64);
    let rel = i8::try_from(rel).ok()?;
    let mut bytes = vec![0xeb, rel as u8];
    bytes.resize(patch.len, 0xcc);
    Some(vec![
        (fill.at, jmp_rel32(fill.at, detour)?),
        (patch.addr, bytes),
    ])
}

/// What one detour records.
#[derive(Clone, Debug)]
pub struct DetourSpec<'a> {
    /// Where the detour will be.
    pub at: u64,
    /// The ring it writes to.
    pub ring: RingLayout,
    /// The site's index (the record's `INDEX`, its lost counter).
    pub index: u32,
    /// The registers its records carry (the stack pointer is added).
    pub regs: RegSet,
    /// The captures, laid out by [`layout_captures`] for `regs` (they must
    /// fit the ring's slots).
    pub captures: &'a [CaptureField],
    /// How it reads the thread pointer.
    pub tp: ThreadPointer,
    /// Watch the function's return: swap the return address for the stub.
    pub returns: Option<ReturnSpec>,
    /// A hit that finds the ring full waits for room (see `detour_wait`)
    /// instead of being dropped.
    pub block: bool,
    /// The hit is counted in the ring's header ([`ring::AGG`]) and not
    /// recorded: no captures, no returns.
    pub count_only: bool,
    /// The call is timed in the program, in this row of the ring's
    /// [`ring::TIMED`] blocks, and not recorded: the detour keeps its entry
    /// time in the table, and the stub adds its duration to the row (see
    /// [`assemble_stub`]). With `returns`, and no captures.
    pub timed: Option<u32>,
}

/// Where the return stub and the table are, for a detour that watches
/// returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnSpec {
    /// The stub's address.
    pub stub: u64,
    /// The table's address.
    pub table: u64,
    /// The most bytes of the C string the return value points to, copied
    /// into the return record (0: none).
    pub ret_string: u32,
    /// Where errno is, as an offset from the thread pointer, for the stub
    /// to copy into the return record (`table::ERRNO`; 0: not copied).
    pub errno: u64,
    /// The register whose value at the entry points to the buffer the call
    /// fills: the stub copies as many bytes as the return value says (at
    /// most `ret_string`) from there, instead of a C string.
    pub ret_buffer: Option<Gpr>,
}

/// Saved on the stack by the detour, in push order (the last is at rsp).
pub(super) const SAVED: [Register; 6] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RSI,
    Register::R10,
    Register::R11,
];

/// Writes the detour of `patch` recording as `spec` says.
pub fn assemble_detour(patch: &Patch, spec: &DetourSpec<'_>) -> Result<Detour, String> {
    // (The last lost counter is the return stub's.)
    if u64::from(spec.index) >= ring::MAX_SITES - 1 {
        return Err(format!(
            "more than {} fast sites in one process",
            ring::MAX_SITES
        ));
    }
    let Ok(mask) = i32::try_from(spec.ring.capacity - 1) else {
        return Err("the ring is too large".into());
    };
    if spec.count_only {
        if spec.returns.is_some() || !spec.captures.is_empty() || spec.timed.is_some() {
            return Err("a counting detour records nothing".into());
        }
        return build_counting(patch, spec)
            .map_err(|e| format!("the detour cannot be assembled: {e}"));
    }
    if let Some(row) = spec.timed {
        let Some(ret) = spec.returns.filter(|_| spec.captures.is_empty()) else {
            return Err("a timed detour watches the return and records nothing".into());
        };
        if u64::from(row) >= ring::MAX_TIMED {
            return Err(format!(
                "more than {} timed fast sites in one process",
                ring::MAX_TIMED
            ));
        }
        return build_timed(patch, spec, ret, row)
            .map_err(|e| format!("the detour cannot be assembled: {e}"));
    }
    build(patch, spec, mask).map_err(|e| format!("the detour cannot be assembled: {e}"))
}

/// Jumps to `skip` when the thread pointer in rax is the one an untraced
/// vfork child borrows ([`ring::SILENT_TP`], not 0). Uses rdx.
fn unless_silent(
    a: &mut CodeAssembler,
    ring: RingLayout,
    skip: CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    let mut counted = a.create_label();
    a.mov(rdx, ring.base + ring::SILENT_TP)?;
    a.cmp(rax, qword_ptr(rdx))?;
    a.jne(counted)?;
    a.test(rax, rax)?;
    a.jne(skip)?;
    a.set_label(&mut counted)?;
    a.nop()?;
    Ok(())
}

/// A detour that only counts its hit:
///
/// ```text
/// lea rsp, [rsp-128]; pushfq; push rax, rcx, rdx, rsi, r10, r11
/// rax = the thread pointer; not counted when it is SILENT_TP's
/// rax = shard_of(rax) * AGG_SHARD
/// lock inc qword [ring + AGG + index * 8 + rax]
/// pop …; popfq; lea rsp, [rsp+128]
/// the displaced instructions, relocated; jmp back
/// ```
fn build_counting(patch: &Patch, spec: &DetourSpec<'_>) -> Result<Detour, iced_x86::IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut entry = a.create_label();
    let mut pushf = a.create_label();
    let mut displaced = a.create_label();
    let mut after_first = a.create_label();
    let mut silent = a.create_label();
    save(&mut a, RED_ZONE as i32, &mut entry, &mut pushf)?;
    load_thread_pointer(&mut a, spec.tp, rax)?;
    unless_silent(&mut a, spec.ring, silent)?;
    a.mov(rdx, table::GOLDEN)?;
    a.imul_2(rax, rdx)?;
    a.shr(rax, 64 - ring::AGG_SHARDS.trailing_zeros())?;
    a.shl(rax, ring::AGG_SHARD.trailing_zeros())?;
    a.mov(rdx, spec.ring.base + ring::AGG + 8 * u64::from(spec.index))?;
    a.lock().inc(qword_ptr(rdx + rax))?;
    a.set_label(&mut silent)?;
    a.nop()?;
    let steps = restore_and_resume(&mut a, patch, &mut displaced, &mut after_first)?;
    let labels = DetourLabels {
        entry,
        pushf,
        displaced,
        after_first,
        steps,
        body: None,
        faults: Vec::new(),
    };
    assembled(&mut a, spec.at, labels)
}

/// A detour that times its call in the program, recording nothing:
///
/// ```text
/// lea rsp, [rsp-128]; pushfq; push rax, rcx, rdx, rsi, r10, r11
/// the thread pointer is SILENT_TP's: nothing timed
/// the return address is the stub already (a tail call from a watched
///     call): when the caller's entry is timed, with fewer than MAX_CHAIN
///     calls chained to it, an entry keyed by the slot plus one more than
///     those (no thread pointer; index, row + 1, rdtsc), and the caller's
///     count bumped; otherwise the call is counted missed (ret_lost[index])
/// else: a table entry for the slot (as a recording detour's hijack):
///     original return address, thread pointer, index, row + 1, rdtsc;
///     the slot gets the stub (no entry free: counted missed)
/// pop …; popfq; lea rsp, [rsp+128]
/// the displaced instructions, relocated; jmp back
/// ```
fn build_timed(
    patch: &Patch,
    spec: &DetourSpec<'_>,
    ret: ReturnSpec,
    row: u32,
) -> Result<Detour, iced_x86::IcedError> {
    let frame = (SAVED.len() * 8 + 8) as i32 + RED_ZONE as i32;
    let timed = (row + 1) as i32;
    let mut a = CodeAssembler::new(64)?;
    let mut entry = a.create_label();
    let mut pushf = a.create_label();
    let mut displaced = a.create_label();
    let mut after_first = a.create_label();
    let mut chained = a.create_label();
    let mut take = a.create_label();
    let mut outer = a.create_label();
    let mut chain_take = a.create_label();
    let mut lost = a.create_label();
    let mut done = a.create_label();
    save(&mut a, RED_ZONE as i32, &mut entry, &mut pushf)?;
    // (An untraced vfork child's calls are not timed.)
    load_thread_pointer(&mut a, spec.tp, rax)?;
    unless_silent(&mut a, spec.ring, done)?;
    // rdx: the slot; r10: the return address in it.
    a.lea(rdx, ptr(rsp + frame))?;
    a.mov(r10, qword_ptr(rdx))?;
    a.mov(rax, ret.stub)?;
    a.cmp(r10, rax)?;
    a.je(chained)?;
    home_entry(&mut a)?;
    take_entry(&mut a, ret.table, take, lost)?;
    a.set_label(&mut take)?;
    a.mov(qword_ptr(r11 + table::ORIG as i32), r10)?;
    load_thread_pointer(&mut a, spec.tp, rax)?;
    a.mov(qword_ptr(r11 + table::TP as i32), rax)?;
    // The index, no string (one word); the row, no chained call (one word).
    a.mov(qword_ptr(r11 + table::INDEX as i32), spec.index as i32)?;
    a.mov(qword_ptr(r11 + table::TIMED as i32), timed)?;
    a.mov(rsi, rdx)?;
    read_tsc(&mut a)?;
    a.mov(qword_ptr(r11 + table::ENTERED as i32), rax)?;
    a.mov(rax, ret.stub)?;
    a.mov(qword_ptr(rsi), rax)?;
    a.jmp(done)?;
    a.set_label(&mut chained)?;
    home_entry(&mut a)?;
    find_entry(&mut a, ret.table, outer)?;
    a.jmp(lost)?;
    a.set_label(&mut outer)?;
    a.cmp(dword_ptr(r11 + table::TIMED as i32), 0)?;
    a.je(lost)?;
    a.mov(eax, dword_ptr(r11 + table::CHAIN as i32))?;
    a.cmp(eax, table::MAX_CHAIN as i32)?;
    a.jae(lost)?;
    // r10: the caller's entry; rdx: the key of this call's (the slot plus
    // its place in the chain).
    a.mov(r10, r11)?;
    a.lea(rdx, ptr(rdx + rax + 1))?;
    home_entry(&mut a)?;
    take_entry(&mut a, ret.table, chain_take, lost)?;
    a.set_label(&mut chain_take)?;
    a.mov(qword_ptr(r11 + table::TP as i32), 0)?;
    a.mov(qword_ptr(r11 + table::INDEX as i32), spec.index as i32)?;
    a.mov(qword_ptr(r11 + table::TIMED as i32), timed)?;
    a.mov(rsi, rdx)?;
    read_tsc(&mut a)?;
    a.mov(qword_ptr(r11 + table::ENTERED as i32), rax)?;
    a.and(esi, 7)?;
    a.mov(dword_ptr(r10 + table::CHAIN as i32), esi)?;
    a.jmp(done)?;
    // The return cannot be watched: the call is counted missed.
    a.set_label(&mut lost)?;
    count_lost(
        &mut a,
        spec.ring.base,
        ring::RET_LOST + 8 * u64::from(spec.index),
    )?;
    a.set_label(&mut done)?;
    a.nop()?;
    let steps = restore_and_resume(&mut a, patch, &mut displaced, &mut after_first)?;
    let labels = DetourLabels {
        entry,
        pushf,
        displaced,
        after_first,
        steps,
        body: None,
        faults: Vec::new(),
    };
    assembled(&mut a, spec.at, labels)
}

fn build(patch: &Patch, spec: &DetourSpec<'_>, mask: i32) -> Result<Detour, iced_x86::IcedError> {
    // Where a saved register is, relative to rsp once all are pushed.
    let saved_at = |r: Register| {
        let i = SAVED
            .iter()
            .position(|&s| s == r)
            .expect("a saved register");
        ((SAVED.len() - 1 - i) * 8) as i32
    };
    let flags_at = (SAVED.len() * 8) as i32;
    let frame = flags_at + 8 + RED_ZONE as i32;
    let regs = entry_regs(spec.regs);
    let gpr = |n: u8| reg_offset(regs, Gpr(n)).expect("a register of the set") as i32;

    let mut a = CodeAssembler::new(64)?;
    let mut entry = a.create_label();
    let mut pushf = a.create_label();
    let mut full = a.create_label();
    let mut lost = a.create_label();
    let mut claim = a.create_label();
    let mut displaced = a.create_label();
    let mut after_first = a.create_label();

    save(&mut a, RED_ZONE as i32, &mut entry, &mut pushf)?;
    a.set_label(&mut claim)?;
    claim_slot(&mut a, spec.ring, mask, full)?;
    a.mov(dword_ptr(r10 + ring::INDEX as i32), spec.index)?;
    a.mov(dword_ptr(r10 + ring::KIND as i32), KIND_ENTRY)?;
    if spec.returns.is_none() {
        // The slot may hold a return record's string limit there: every
        // field rtrace reads is written.
        a.mov(dword_ptr(r10 + ring::RET_WATCH as i32), WATCH_NONE)?;
    }
    // The site's registers only: the saved ones from the stack, the others
    // as they are, rsp as at the site.
    for (n, reg) in [
        (0, Register::RAX),
        (1, Register::RCX),
        (2, Register::RDX),
        (6, Register::RSI),
        (10, Register::R10),
        (11, Register::R11),
    ] {
        if regs.has(Gpr(n)) {
            a.mov(rax, qword_ptr(rsp + saved_at(reg)))?;
            a.mov(qword_ptr(r10 + gpr(n)), rax)?;
        }
    }
    for (n, reg) in [
        (3, rbx),
        (5, rbp),
        (7, rdi),
        (8, r8),
        (9, r9),
        (12, r12),
        (13, r13),
        (14, r14),
        (15, r15),
    ] {
        if regs.has(Gpr(n)) {
            a.mov(qword_ptr(r10 + gpr(n)), reg)?;
        }
    }
    a.lea(rax, ptr(rsp + frame))?;
    a.mov(qword_ptr(r10 + gpr(4)), rax)?;
    if regs.has_flags() {
        a.mov(rax, qword_ptr(rsp + flags_at))?;
        a.mov(qword_ptr(r10 + flags_offset(regs) as i32), rax)?;
    }
    // The vector registers asked for, low 64 bits (read, never written).
    for (n, xmm) in [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7]
        .into_iter()
        .enumerate()
    {
        if let Some(at) = xmm_offset(regs, n) {
            a.movq(qword_ptr(r10 + at as i32), xmm)?;
        }
    }
    stamp(&mut a, spec.tp)?;

    let mut faults = Vec::new();
    for field in spec.captures {
        let status = field.offset as i32;
        let mut lp = a.create_label();
        let mut load = a.create_label();
        let mut terminated = a.create_label();
        let mut cut = a.create_label();
        let mut done = a.create_label();
        let mut pointer = a.create_label();
        // Unreadable until the copy completes.
        a.mov(rax, CAPTURE_UNREADABLE)?;
        a.mov(qword_ptr(r10 + status), rax)?;
        let (max, string) = match field.kind {
            CaptureKind::CStr { reg, max } => {
                a.mov(rdx, qword_ptr(r10 + gpr(reg.0)))?;
                (max, true)
            }
            CaptureKind::Stack { len } => {
                a.mov(rdx, qword_ptr(r10 + gpr(4)))?;
                a.add(rdx, 8)?;
                (len, false)
            }
            CaptureKind::StackStr { offset, max } => {
                // The pointer, from the stack (a load that may fault too).
                a.mov(rdx, qword_ptr(r10 + gpr(4)))?;
                a.set_label(&mut pointer)?;
                a.mov(rdx, qword_ptr(rdx + 8 + offset as i32))?;
                (max, true)
            }
            CaptureKind::Bytes { reg, len, max } => {
                // As many bytes as the length says, at most `max`: counted
                // up from minus the count to 0 over the buffer's end.
                let mut load = a.create_label();
                let mut end = a.create_label();
                a.mov(rcx, qword_ptr(r10 + gpr(len.0)))?;
                a.mov(eax, max)?;
                a.cmp(rcx, rax)?;
                a.cmova(rcx, rax)?;
                a.mov(rdx, qword_ptr(r10 + gpr(reg.0)))?;
                copy_counted(&mut a, status, &mut load, &mut end)?;
                a.set_label(&mut done)?;
                faults.push((load, done));
                a.nop()?;
                continue;
            }
        };
        a.lea(rsi, ptr(r10 + status + 8))?;
        a.xor(ecx, ecx)?;
        a.set_label(&mut lp)?;
        a.cmp(rcx, max as i32)?;
        a.jae(cut)?;
        a.set_label(&mut load)?;
        a.movzx(eax, byte_ptr(rdx + rcx))?;
        a.mov(byte_ptr(rsi + rcx), al)?;
        if string {
            a.test(eax, eax)?;
            a.je(terminated)?;
        }
        a.inc(rcx)?;
        a.jmp(lp)?;
        a.set_label(&mut terminated)?;
        a.bts(rcx, 32)?;
        a.set_label(&mut cut)?;
        a.mov(qword_ptr(r10 + status), rcx)?;
        a.set_label(&mut done)?;
        faults.push((load, done));
        if matches!(field.kind, CaptureKind::StackStr { .. }) {
            faults.push((pointer, done));
        }
        a.nop()?;
    }
    if let Some(ret) = spec.returns {
        let buffer = ret.ret_buffer.map(|r| gpr(r.0));
        hijack(&mut a, ret, spec.index, gpr(4), buffer)?;
    }
    // Publish (x86 stores are not reordered with earlier stores).
    a.mov(qword_ptr(r10 + ring::SEQ as i32), r11)?;
    let steps = restore_and_resume(&mut a, patch, &mut displaced, &mut after_first)?;
    // The ring is full: wait for room, or count the record lost and record
    // nothing (the return is not watched either).
    a.set_label(&mut full)?;
    a.nop()?;
    let body = match spec.block {
        true => Some(wait_in_frame(&mut a, spec.ring, mask, claim, lost)?),
        false => None,
    };
    a.set_label(&mut lost)?;
    count_lost(
        &mut a,
        spec.ring.base,
        ring::LOST + 8 * u64::from(spec.index),
    )?;
    a.jmp(steps[0])?;

    let labels = DetourLabels {
        entry,
        pushf,
        displaced,
        after_first,
        steps,
        body: body.map(|(from, to, _)| (from, to)),
        faults,
    };
    assembled(&mut a, spec.at, labels)
}

/// The labels of a generated detour's parts, as [`Detour`] has their
/// addresses.
pub(super) struct DetourLabels {
    pub entry: CodeLabel,
    pub pushf: CodeLabel,
    pub displaced: CodeLabel,
    pub after_first: CodeLabel,
    /// The restore's steps.
    pub steps: Vec<CodeLabel>,
    pub body: Option<(CodeLabel, CodeLabel)>,
    /// (load that may fault, fix-up).
    pub faults: Vec<(CodeLabel, CodeLabel)>,
}

/// Assembles `a` for address `at` into a [`Detour`] with the addresses of
/// `labels`.
pub(super) fn assembled(
    a: &mut CodeAssembler,
    at: u64,
    labels: DetourLabels,
) -> Result<Detour, iced_x86::IcedError> {
    let out = a.assemble_options(at, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let ip = |l: &CodeLabel| out.label_ip(l);
    let faults = labels
        .faults
        .iter()
        .map(|(l, d)| Ok((ip(l)?, ip(d)?)))
        .collect::<Result<Vec<_>, iced_x86::IcedError>>()?;
    let restore = labels
        .steps
        .iter()
        .map(ip)
        .collect::<Result<Vec<_>, iced_x86::IcedError>>()?;
    let body = match &labels.body {
        Some((from, to)) => Some((ip(from)?, ip(to)?)),
        None => None,
    };
    Ok(Detour {
        restore,
        body,
        entry: ip(&labels.entry)?,
        pushf: ip(&labels.pushf)?,
        displaced: ip(&labels.displaced)?,
        after_first: ip(&labels.after_first)?,
        faults,
        code: out.inner.code_buffer,
    })
}

/// Copies rcx bytes from rdx into the capture whose status word is at
/// `status` in the record at r10, counting up from minus the count to 0
/// over both ends, and writes the count into the status word. `load` is
/// put at the load that may fault, `end` after the loop. Uses rax, rcx,
/// rdx, rsi.
fn copy_counted(
    a: &mut CodeAssembler,
    status: i32,
    load: &mut CodeLabel,
    end: &mut CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    a.lea(rsi, ptr(r10 + status + 8))?;
    a.add(rdx, rcx)?;
    a.add(rsi, rcx)?;
    a.neg(rcx)?;
    a.je(*end)?;
    a.set_label(load)?;
    a.movzx(eax, byte_ptr(rdx + rcx))?;
    a.mov(byte_ptr(rsi + rcx), al)?;
    a.inc(rcx)?;
    a.jne(*load)?;
    a.set_label(end)?;
    a.lea(rax, ptr(r10 + status + 8))?;
    a.sub(rsi, rax)?;
    a.mov(qword_ptr(r10 + status), rsi)?;
    Ok(())
}

/// The return hijack of a detour, with r10 pointing at the claimed slot of
/// the ring (the registers recorded). rax, rcx, rdx and rsi are free; r11
/// (the publishing word) is kept on the stack meanwhile. The return address
/// at the recorded rsp is swapped for the stub, its original kept in the
/// table under the slot; a slot holding the stub already is a tail call.
/// `buffer`: where the record holds the pointer of the buffer the stub
/// copies at the return (`ReturnSpec::ret_buffer`).
fn hijack(
    a: &mut CodeAssembler,
    ret: ReturnSpec,
    index: u32,
    gpr_rsp: i32,
    buffer: Option<i32>,
) -> Result<(), iced_x86::IcedError> {
    let mut not_chained = a.create_label();
    let mut full = a.create_label();
    let mut take = a.create_label();
    let mut done = a.create_label();
    a.push(r11)?;
    a.mov(rdx, qword_ptr(r10 + gpr_rsp))?;
    a.mov(rax, qword_ptr(rdx))?;
    a.mov(qword_ptr(r10 + ring::RET_ADDR as i32), rax)?;
    a.mov(rcx, ret.stub)?;
    a.cmp(rax, rcx)?;
    a.jne(not_chained)?;
    a.mov(dword_ptr(r10 + ring::RET_WATCH as i32), WATCH_CHAINED)?;
    if buffer.is_some() || ret.ret_string > 0 {
        // A tail call returns what the call whose slot it shares returns:
        // what it wants copied at the return goes into that call's entry
        // (the buffer it fills; the longer string), unless that call is
        // timed (its entry holds its entry time) or copies a buffer.
        let mut chained_entry = a.create_label();
        home_entry(a)?;
        find_entry(a, ret.table, chained_entry)?;
        a.jmp(done)?;
        a.set_label(&mut chained_entry)?;
        a.cmp(dword_ptr(r11 + table::TIMED as i32), 0)?;
        a.jne(done)?;
        match buffer {
            Some(at) => buffer_into_entry(a, at, ret.ret_string)?,
            None => {
                a.mov(eax, dword_ptr(r11 + table::RET_STRING as i32))?;
                a.cmp(eax, ret.ret_string)?;
                a.jae(done)?;
                a.mov(dword_ptr(r11 + table::RET_STRING as i32), ret.ret_string)?;
            }
        }
    }
    a.jmp(done)?;
    a.set_label(&mut not_chained)?;
    // rsi: the home entry of the slot.
    home_entry(a)?;
    take_entry(a, ret.table, take, full)?;
    a.set_label(&mut full)?;
    a.mov(dword_ptr(r10 + ring::RET_WATCH as i32), WATCH_FULL)?;
    a.jmp(done)?;
    a.set_label(&mut take)?;
    a.mov(rax, qword_ptr(r10 + ring::RET_ADDR as i32))?;
    a.mov(qword_ptr(r11 + table::ORIG as i32), rax)?;
    a.mov(rax, qword_ptr(r10 + ring::TP as i32))?;
    a.mov(qword_ptr(r11 + table::TP as i32), rax)?;
    a.mov(dword_ptr(r11 + table::INDEX as i32), index)?;
    match buffer {
        Some(at) => buffer_into_entry(a, at, ret.ret_string)?,
        None => a.mov(dword_ptr(r11 + table::RET_STRING as i32), ret.ret_string)?,
    }
    // Recorded, not timed (the entry may be a timed call's, taken over),
    // with errno copied where the handlers read it (a TLS offset fits a
    // sign-extended 32 bits).
    a.mov(qword_ptr(r11 + table::TIMED as i32), 0)?;
    match i32::try_from(ret.errno as i64) {
        Ok(offset) => a.mov(qword_ptr(r11 + table::ERRNO as i32), offset)?,
        Err(_) => {
            a.mov(rax, ret.errno)?;
            a.mov(qword_ptr(r11 + table::ERRNO as i32), rax)?;
        }
    }
    a.mov(rax, ret.stub)?;
    a.mov(qword_ptr(rdx), rax)?;
    a.mov(dword_ptr(r10 + ring::RET_WATCH as i32), WATCH_STUB)?;
    a.set_label(&mut done)?;
    a.pop(r11)?;
    Ok(())
}

/// Into the table entry at r11: the pointer of the buffer the call fills
/// (the record's word at `at`) and the limit `max`, flagged as a buffer's,
/// for the stub to copy at the return. Uses rax.
fn buffer_into_entry(a: &mut CodeAssembler, at: i32, max: u32) -> Result<(), iced_x86::IcedError> {
    a.mov(rax, qword_ptr(r10 + at))?;
    a.mov(qword_ptr(r11 + table::ENTERED as i32), rax)?;
    a.mov(
        dword_ptr(r11 + table::RET_STRING as i32),
        max | table::BUFFER,
    )?;
    Ok(())
}

/// The detours' and the stub's prologue: below `below` bytes of stack
/// (`entry`), then the flags (`pushf`) and the `SAVED` registers.
pub(super) fn save(
    a: &mut CodeAssembler,
    below: i32,
    entry: &mut CodeLabel,
    pushf: &mut CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    a.set_label(entry)?;
    a.lea(rsp, ptr(rsp - below))?;
    a.set_label(pushf)?;
    a.pushfq()?;
    a.push(rax)?;
    a.push(rcx)?;
    a.push(rdx)?;
    a.push(rsi)?;
    a.push(r10)?;
    a.push(r11)?;
    Ok(())
}

/// Claims a slot of `ring` (Vyukov's enqueue): r10 the slot, r11 from then
/// on the sequence word that publishes it; to `full` (r11 the ring's base)
/// when the ring is full. Uses rax, rcx, rdx.
///
/// A slot ahead of the position read (another producer claimed it) means
/// the enqueue position has moved on since: the position is read again.
/// When it has not moved, the ring was written over by the program (the
/// claim would retry forever, and rtrace, stepping a thread out of the
/// detour, with it): the record is counted lost instead.
pub(super) fn claim_slot(
    a: &mut CodeAssembler,
    ring: RingLayout,
    mask: i32,
    full: CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    let mut reload = a.create_label();
    let mut retry = a.create_label();
    let mut claim = a.create_label();
    a.mov(r11, ring.base)?;
    a.set_label(&mut reload)?;
    a.mov(rax, qword_ptr(r11 + ring::ENQUEUE as i32))?;
    a.set_label(&mut retry)?;
    a.mov(r10, rax)?;
    a.and(r10, mask)?;
    a.imul_3(r10, r10, ring.slot_size as i32)?;
    a.lea(r10, ptr(r11 + r10 + ring::SLOTS as i32))?;
    a.mov(rcx, rax)?;
    a.and(rcx, !mask)?;
    a.mov(rdx, qword_ptr(r10 + ring::SEQ as i32))?;
    a.sub(rdx, rcx)?;
    a.je(claim)?;
    a.jl(full)?;
    a.cmp(qword_ptr(r11 + ring::ENQUEUE as i32), rax)?;
    a.je(full)?;
    a.jmp(reload)?;
    a.set_label(&mut claim)?;
    a.lea(rdx, ptr(rax + 1))?;
    a.lock()
        .cmpxchg(qword_ptr(r11 + ring::ENQUEUE as i32), rdx)?;
    a.jne(retry)?;
    a.lea(r11, ptr(rcx + 1))?;
    Ok(())
}

/// The wait for room of a detour or of the stub (at the `full` label of
/// its claim): the frame made, the wait (its body, and where it gives up,
/// returned as labels), the frame taken down and back to `claim`, or to
/// `lost` when rtrace is gone, stopped or not reading.
pub(super) fn wait_in_frame(
    a: &mut CodeAssembler,
    ring: RingLayout,
    mask: i32,
    claim: CodeLabel,
    lost: CodeLabel,
) -> Result<(CodeLabel, CodeLabel, CodeLabel), iced_x86::IcedError> {
    let mut body = a.create_label();
    let mut body_end = a.create_label();
    let mut room = a.create_label();
    let mut give_up = a.create_label();
    enter_frame(a)?;
    a.set_label(&mut body)?;
    wait_for_room(a, ring, mask, room, give_up)?;
    a.set_label(&mut room)?;
    a.nop()?;
    a.set_label(&mut body_end)?;
    leave_frame(a)?;
    a.jmp(claim)?;
    a.set_label(&mut give_up)?;
    leave_frame(a)?;
    a.jmp(lost)?;
    Ok((body, body_end, give_up))
}

/// Loads the thread pointer into `reg`, as `tp` says to read it.
pub(super) fn load_thread_pointer(
    a: &mut CodeAssembler,
    tp: ThreadPointer,
    reg: AsmRegister64,
) -> Result<(), iced_x86::IcedError> {
    match tp {
        ThreadPointer::Rdfsbase => a.rdfsbase(reg),
        ThreadPointer::FsSelf => a.mov(reg, qword_ptr(0u64).fs()),
    }
}

/// Stores the thread pointer into the record at r10. Uses rax.
fn thread_pointer(a: &mut CodeAssembler, tp: ThreadPointer) -> Result<(), iced_x86::IcedError> {
    load_thread_pointer(a, tp, rax)?;
    a.mov(qword_ptr(r10 + ring::TP as i32), rax)?;
    Ok(())
}

/// Stores the thread pointer and the time stamp counter into the record at
/// r10. Uses rax, rdx.
pub(super) fn stamp(a: &mut CodeAssembler, tp: ThreadPointer) -> Result<(), iced_x86::IcedError> {
    thread_pointer(a, tp)?;
    read_tsc(a)?;
    a.mov(qword_ptr(r10 + ring::TSC as i32), rax)?;
    Ok(())
}

/// rsi = the home entry of the slot in rdx (as [`table::home`]). Uses rax.
pub(super) fn home_entry(a: &mut CodeAssembler) -> Result<(), iced_x86::IcedError> {
    a.mov(rsi, rdx)?;
    a.shr(rsi, 3)?;
    a.mov(rax, table::GOLDEN)?;
    a.imul_2(rsi, rax)?;
    a.shr(rsi, 64 - table::BITS)?;
    Ok(())
}

/// r11 = the byte offset of entry (rsi + ecx) mod ENTRIES.
pub(super) fn entry_at(a: &mut CodeAssembler) -> Result<(), iced_x86::IcedError> {
    a.lea(r11, ptr(rsi + rcx))?;
    a.and(r11, (table::ENTRIES - 1) as i32)?;
    a.shl(r11, table::ENTRY.trailing_zeros())?;
    Ok(())
}

/// What the return stub needs to know.
#[derive(Clone, Copy, Debug)]
pub struct StubSpec {
    /// Where it will be.
    pub at: u64,
    /// The ring it writes return records to.
    pub ring: RingLayout,
    /// The table of original return addresses.
    pub table: u64,
    /// How it reads the thread pointer.
    pub tp: ThreadPointer,
    /// The site index of its [`KIND_NONE`] records (one past the sites').
    pub none_index: u32,
    /// A return that finds the ring full waits for room (see
    /// `detour_wait`) instead of being dropped.
    pub block: bool,
}

/// The generated return stub: where a watched call returns to instead of
/// its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stub {
    /// Its code.
    pub code: Vec<u8>,
    /// The first instruction (the `lea` below the slot) and the `pushfq`:
    /// rtrace never steps `pushfq` (see [`Detour::entry`]); a thread there
    /// has them emulated.
    pub entry: u64,
    /// See `entry`.
    pub pushf: u64,
    /// The restore, as [`Detour::restore`].
    pub restore: Vec<u64>,
    /// The final `ret` to the original return address (back in the slot).
    pub ret: u64,
    /// The `int3` a thread reaches when the table has no entry for its slot
    /// (rtrace then returns it from what it knows), with rsp at the slot.
    pub orphan: u64,
    /// (load that may fault, fix-up): the copy of the returned string, as
    /// [`Detour::faults`].
    pub faults: Vec<(u64, u64)>,
    /// Its wait for room, as [`Detour::body`].
    pub body: Option<(u64, u64)>,
    /// Where its wait gives up (the frame still made): a thread rtrace must
    /// bring out of the wait goes on from there, as if rtrace were gone,
    /// and returns with its return counted lost. Stepped back into a claim
    /// instead, it could find the ring filled again by the other threads,
    /// for ever.
    pub give_up: Option<u64>,
}

/// The return stub, entered by `ret` with rsp just past the slot:
///
/// ```text
/// lea rsp, [rsp-136]           ; below the slot (the callee's frame is dead)
/// pushfq; push rax, rcx, rdx, rsi, r10, r11
/// rdtsc, kept below the slot (the return's time, before any wait)
/// the slot's entry is a timed call's: the slot gets its original back,
///     the call's duration is added to its row (`add_timed_call`), then
///     each call chained to it (its entry found by key, freed, added),
///     the entry freed; restore and ret, nothing recorded
/// claim a ring slot (full → wait for room, or no slot: see below)
/// look the slot up in the table → rsi: the site index; the slot gets its
///     original return address back, the entry is freed
///     (not found → the claimed slot published as KIND_NONE;
///      pop …; popfq; lea rsp, [rsp+128]; int3)
/// record: index, KIND_RETURN, thread pointer, rdtsc, rax, rdx, rsp, RET_ADDR,
///     and the C string at rax when the entry asks for it (at RET_STRING)
/// publish
/// pop …; popfq; lea rsp, [rsp+128]  ; rsp = the slot
/// ret                          ; to the original, as the function would have
/// no slot: the lookup as above, then lock inc ret_lost[site index] and
///     the restore and ret, recording nothing
/// ```
///
/// The slot is claimed before the table is touched, so that a thread
/// waiting for room has changed nothing yet and can be sent back to the
/// stub's entry.
pub fn assemble_stub(spec: &StubSpec) -> Result<Stub, String> {
    let Ok(mask) = i32::try_from(spec.ring.capacity - 1) else {
        return Err("the ring is too large".into());
    };
    build_stub(spec, mask).map_err(|e| format!("the return stub cannot be assembled: {e}"))
}

/// Searches the table at `table` for the entry of the slot at rdx, from
/// its home entry (rsi): on to `found` with r11 the entry's address; falls
/// through when none of the [`table::PROBES`] entries looked at is it.
/// Uses rax, rcx, r11.
pub(super) fn find_entry(
    a: &mut CodeAssembler,
    table: u64,
    found: CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    let mut find = a.create_label();
    a.xor(ecx, ecx)?;
    a.set_label(&mut find)?;
    entry_at(a)?;
    a.mov(rax, table)?;
    a.add(r11, rax)?;
    a.cmp(qword_ptr(r11 + table::KEY as i32), rdx)?;
    a.je(found)?;
    a.inc(ecx)?;
    a.cmp(ecx, table::PROBES as i32)?;
    a.jb(find)?;
    Ok(())
}

/// Takes the entry for the key in rdx (rsi: its home entry): the one that
/// holds the key already (left by a call that never returned: longjmp) is
/// taken over, else a free one is claimed with `lock cmpxchg`; on to `take`
/// with r11 the entry, or to `none` when none of the [`table::PROBES`]
/// entries looked at is either. Uses rax, rcx, r11.
fn take_entry(
    a: &mut CodeAssembler,
    table: u64,
    take: CodeLabel,
    none: CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    let mut claim = a.create_label();
    find_entry(a, table, take)?;
    a.xor(ecx, ecx)?;
    a.set_label(&mut claim)?;
    entry_at(a)?;
    a.mov(rax, table)?;
    a.add(r11, rax)?;
    a.xor(eax, eax)?;
    a.lock().cmpxchg(qword_ptr(r11 + table::KEY as i32), rdx)?;
    a.je(take)?;
    a.inc(ecx)?;
    a.cmp(ecx, table::PROBES as i32)?;
    a.jb(claim)?;
    a.jmp(none)?;
    Ok(())
}

/// rax = the time stamp counter. Uses rdx.
fn read_tsc(a: &mut CodeAssembler) -> Result<(), iced_x86::IcedError> {
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    Ok(())
}

/// Looks the stub's slot up in the table (rdx: the slot, `to_slot` bytes
/// above rsp): on to `found` with r11 the entry's address, else to
/// `not_found`. Uses rax, rcx, rdx, rsi, r11.
fn stub_lookup(
    a: &mut CodeAssembler,
    table: u64,
    to_slot: i32,
    found: CodeLabel,
    not_found: CodeLabel,
) -> Result<(), iced_x86::IcedError> {
    a.lea(rdx, ptr(rsp + to_slot))?;
    home_entry(a)?;
    find_entry(a, table, found)?;
    a.jmp(not_found)?;
    Ok(())
}

/// The entry at r11 found for the slot at rdx: the slot gets its original
/// return address back, rsi the site index (and in its high half the
/// string to copy), rcx errno's offset from the thread pointer (0: none),
/// and the entry is freed.
fn stub_take(a: &mut CodeAssembler) -> Result<(), iced_x86::IcedError> {
    a.mov(rax, qword_ptr(r11 + table::ORIG as i32))?;
    a.mov(qword_ptr(rdx), rax)?;
    a.mov(rsi, qword_ptr(r11 + table::INDEX as i32))?;
    a.mov(rcx, qword_ptr(r11 + table::ERRNO as i32))?;
    a.mov(rdx, qword_ptr(r11 + table::ENTERED as i32))?;
    a.mov(qword_ptr(r11 + table::KEY as i32), 0)?;
    Ok(())
}

fn build_stub(spec: &StubSpec, mask: i32) -> Result<Stub, iced_x86::IcedError> {
    let saved_at = |r: Register| {
        let i = SAVED
            .iter()
            .position(|&s| s == r)
            .expect("a saved register");
        ((SAVED.len() - 1 - i) * 8) as i32
    };
    // From rsp (all pushed) to the slot.
    let to_slot = (SAVED.len() * 8 + 8) as i32 + RED_ZONE as i32;

    let mut a = CodeAssembler::new(64)?;
    let mut entry = a.create_label();
    let mut pushf = a.create_label();
    let mut claim = a.create_label();
    let mut found = a.create_label();
    let mut not_found = a.create_label();
    let mut full = a.create_label();
    let mut lost = a.create_label();
    let mut lost_found = a.create_label();
    let mut ret_label = a.create_label();
    let mut orphan = a.create_label();
    let mut steps: Vec<CodeLabel> = (0..RESTORE_STEPS).map(|_| a.create_label()).collect();
    let mut orphan_steps: Vec<CodeLabel> = (0..RESTORE_STEPS).map(|_| a.create_label()).collect();

    save(&mut a, RED_ZONE as i32 + 8, &mut entry, &mut pushf)?;
    // The time of the return, before any wait for room (kept in the dead
    // callee frame the stub steps over, below the slot).
    let when = to_slot - 16;
    read_tsc(&mut a)?;
    a.mov(qword_ptr(rsp + when), rax)?;
    // A timed call (and the calls chained to it) is added to its row, and
    // nothing is recorded: no slot is claimed, there is no wait.
    let mut timed = a.create_label();
    let mut untimed = a.create_label();
    let mut counted = a.create_label();
    let mut next_chained = a.create_label();
    let mut chained = a.create_label();
    let mut chain_done = a.create_label();
    stub_lookup(&mut a, spec.table, to_slot, timed, untimed)?;
    a.set_label(&mut timed)?;
    a.cmp(dword_ptr(r11 + table::TIMED as i32), 0)?;
    a.je(untimed)?;
    a.mov(rax, qword_ptr(r11 + table::ORIG as i32))?;
    a.mov(qword_ptr(rdx), rax)?;
    // The entry, kept on the stack over the adds (it is freed last: until
    // then no other thread can claim it).
    a.push(r11)?;
    a.mov(esi, dword_ptr(r11 + table::TIMED as i32))?;
    a.mov(rcx, qword_ptr(r11 + table::ENTERED as i32))?;
    add_timed_call(&mut a, spec, when + 8)?;
    // The calls chained to it, from the last: each entry (the slot plus
    // its place) found, freed and added. Their count, kept on the stack,
    // is the program's memory: past MAX_CHAIN it is none.
    a.mov(r11, qword_ptr(rsp))?;
    a.mov(eax, dword_ptr(r11 + table::CHAIN as i32))?;
    a.cmp(eax, table::MAX_CHAIN as i32)?;
    a.jbe(counted)?;
    a.xor(eax, eax)?;
    a.set_label(&mut counted)?;
    a.push(rax)?;
    a.set_label(&mut next_chained)?;
    a.cmp(qword_ptr(rsp), 0)?;
    a.je(chain_done)?;
    a.lea(rdx, ptr(rsp + to_slot + 16))?;
    a.add(rdx, qword_ptr(rsp))?;
    a.dec(qword_ptr(rsp))?;
    home_entry(&mut a)?;
    find_entry(&mut a, spec.table, chained)?;
    a.jmp(next_chained)?;
    a.set_label(&mut chained)?;
    a.mov(esi, dword_ptr(r11 + table::TIMED as i32))?;
    a.mov(rcx, qword_ptr(r11 + table::ENTERED as i32))?;
    a.mov(qword_ptr(r11 + table::KEY as i32), 0)?;
    add_timed_call(&mut a, spec, when + 16)?;
    a.jmp(next_chained)?;
    a.set_label(&mut chain_done)?;
    a.pop(rax)?;
    a.pop(r11)?;
    a.mov(qword_ptr(r11 + table::KEY as i32), 0)?;
    a.jmp(steps[0])?;
    a.set_label(&mut untimed)?;
    a.nop()?;
    a.set_label(&mut claim)?;
    claim_slot(&mut a, spec.ring, mask, full)?;
    // r11 (the publishing word) is kept on the stack over the lookup.
    a.push(r11)?;
    stub_lookup(&mut a, spec.table, to_slot + 8, found, not_found)?;
    // No entry for the slot: the claimed slot is published with nothing
    // in it, the registers given back, and rtrace takes the trap.
    a.set_label(&mut not_found)?;
    a.pop(r11)?;
    a.mov(dword_ptr(r10 + ring::INDEX as i32), spec.none_index)?;
    a.mov(dword_ptr(r10 + ring::KIND as i32), KIND_NONE)?;
    a.mov(dword_ptr(r10 + ring::RET_WATCH as i32), WATCH_NONE)?;
    a.push(r11)?;
    stamp(&mut a, spec.tp)?;
    a.pop(r11)?;
    a.mov(qword_ptr(r10 + ring::SEQ as i32), r11)?;
    a.jmp(orphan_steps[0])?;
    a.set_label(&mut found)?;
    stub_take(&mut a)?;
    a.pop(r11)?;
    // errno as the function left it, when the entry says where it is.
    let mut no_errno = a.create_label();
    a.xor(eax, eax)?;
    a.test(rcx, rcx)?;
    a.je(no_errno)?;
    a.mov(eax, dword_ptr(rcx).fs())?;
    a.set_label(&mut no_errno)?;
    a.mov(dword_ptr(r10 + ring::RET_ERRNO as i32), eax)?;
    a.mov(dword_ptr(r10 + ring::INDEX as i32), esi)?;
    a.mov(dword_ptr(r10 + ring::KIND as i32), KIND_RETURN)?;
    a.mov(rax, qword_ptr(rsp + saved_at(Register::RAX)))?;
    a.mov(qword_ptr(r10 + ring::RET_RAX as i32), rax)?;
    a.mov(rax, qword_ptr(rsp + saved_at(Register::RDX)))?;
    a.mov(qword_ptr(r10 + ring::RET_RDX as i32), rax)?;
    a.lea(rax, ptr(rsp + to_slot + 8))?;
    a.mov(qword_ptr(r10 + ring::RET_SP as i32), rax)?;
    a.movq(qword_ptr(r10 + ring::RET_XMM0 as i32), xmm0)?;
    a.mov(rax, qword_ptr(rsp + to_slot))?;
    a.mov(qword_ptr(r10 + ring::RET_ADDR as i32), rax)?;
    thread_pointer(&mut a, spec.tp)?;
    a.mov(rax, qword_ptr(rsp + when))?;
    a.mov(qword_ptr(r10 + ring::TSC as i32), rax)?;
    // The returned string: at most (rsi >> 32) bytes from the saved rax,
    // the limit kept in the record's RET_WATCH word (unused in a return),
    // and never past the slot (the limit is read again from the ring, which
    // the program may write: the loop is bounded by `room` as well).
    let room = spec
        .ring
        .slot_size
        .saturating_sub(ring::RET_STRING + 8)
        .min(i32::MAX as u64) as i32;
    let mut lp = a.create_label();
    let mut load = a.create_label();
    let mut terminated = a.create_label();
    let mut cut = a.create_label();
    let mut copied = a.create_label();
    let mut publish = a.create_label();
    let status = ring::RET_STRING as i32;
    let mut string = a.create_label();
    let mut buffer_load = a.create_label();
    let mut buffer_end = a.create_label();
    a.mov(rcx, rsi)?;
    a.shr(rcx, 32)?;
    a.mov(dword_ptr(r10 + ring::RET_WATCH as i32), ecx)?;
    a.test(ecx, ecx)?;
    a.je(publish)?;
    a.mov(rax, CAPTURE_UNREADABLE)?;
    a.mov(qword_ptr(r10 + status), rax)?;
    a.btr(ecx, 31)?;
    a.jae(string)?;
    // A filled buffer (rdx: its pointer, from the entry): as many bytes as
    // the return value says when it is positive, at most the limit and
    // never past the slot, counted up from minus the count to 0 over the
    // buffer's end.
    a.mov(qword_ptr(r10 + ring::RET_PTR as i32), rdx)?;
    a.mov(rax, qword_ptr(rsp + saved_at(Register::RAX)))?;
    a.xor(esi, esi)?;
    a.test(rax, rax)?;
    a.cmovs(rax, rsi)?;
    a.cmp(rax, rcx)?;
    a.cmova(rax, rcx)?;
    a.mov(ecx, room)?;
    a.cmp(rax, rcx)?;
    a.cmova(rax, rcx)?;
    a.mov(rcx, rax)?;
    copy_counted(&mut a, status, &mut buffer_load, &mut buffer_end)?;
    a.jmp(copied)?;
    a.set_label(&mut string)?;
    a.mov(rdx, qword_ptr(rsp + saved_at(Register::RAX)))?;
    a.lea(rsi, ptr(r10 + status + 8))?;
    a.xor(ecx, ecx)?;
    a.set_label(&mut lp)?;
    a.cmp(ecx, room)?;
    a.jae(cut)?;
    a.cmp(ecx, dword_ptr(r10 + ring::RET_WATCH as i32))?;
    a.jae(cut)?;
    a.set_label(&mut load)?;
    a.movzx(eax, byte_ptr(rdx + rcx))?;
    a.mov(byte_ptr(rsi + rcx), al)?;
    a.test(eax, eax)?;
    a.je(terminated)?;
    a.inc(rcx)?;
    a.jmp(lp)?;
    a.set_label(&mut terminated)?;
    a.bts(rcx, 32)?;
    a.set_label(&mut cut)?;
    a.mov(qword_ptr(r10 + status), rcx)?;
    a.set_label(&mut copied)?;
    a.nop()?;
    a.set_label(&mut publish)?;
    a.mov(qword_ptr(r10 + ring::SEQ as i32), r11)?;
    restore(&mut a, &mut steps)?;
    a.set_label(&mut ret_label)?;
    a.ret()?;
    // The ring is full: wait for room, or go on without a slot.
    a.set_label(&mut full)?;
    a.nop()?;
    let body = match spec.block {
        true => Some(wait_in_frame(&mut a, spec.ring, mask, claim, lost)?),
        false => None,
    };
    // No slot: the call returns as it would, its return counted lost under
    // its site (an index the table cannot have is not counted).
    a.set_label(&mut lost)?;
    stub_lookup(&mut a, spec.table, to_slot, lost_found, orphan_steps[0])?;
    a.set_label(&mut lost_found)?;
    stub_take(&mut a)?;
    a.mov(esi, esi)?;
    count_return_lost(&mut a, spec.ring.base, rsi, r11)?;
    a.jmp(steps[0])?;
    // No entry for the slot: give the registers back and trap to rtrace.
    restore(&mut a, &mut orphan_steps)?;
    a.set_label(&mut orphan)?;
    a.int3()?;

    let out = a.assemble_options(spec.at, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let mut restore_ips = Vec::new();
    for l in steps.iter().chain(&orphan_steps) {
        restore_ips.push(out.label_ip(l)?);
    }
    let faults = vec![
        (out.label_ip(&load)?, out.label_ip(&copied)?),
        (out.label_ip(&buffer_load)?, out.label_ip(&copied)?),
    ];
    let (body, give_up) = match body {
        Some((from, to, give_up)) => (
            Some((out.label_ip(&from)?, out.label_ip(&to)?)),
            Some(out.label_ip(&give_up)?),
        ),
        None => (None, None),
    };
    Ok(Stub {
        faults,
        entry: out.label_ip(&entry)?,
        pushf: out.label_ip(&pushf)?,
        restore: restore_ips,
        ret: out.label_ip(&ret_label)?,
        orphan: out.label_ip(&orphan)?,
        body,
        give_up,
        code: out.inner.code_buffer,
    })
}

/// Counts one lost in the counter at `counter` of the ring at `base` (a
/// site's `LOST` or `RET_LOST`), and in the total. Uses r11.
pub(super) fn count_lost(
    a: &mut CodeAssembler,
    base: u64,
    counter: u64,
) -> Result<(), iced_x86::IcedError> {
    a.mov(r11, base)?;
    a.lock().inc(qword_ptr(r11 + counter as i32))?;
    a.lock().inc(qword_ptr(r11 + ring::LOST_TOTAL as i32))?;
    Ok(())
}

/// Counts a return lost under site `index` (a register holding the site
/// index, zero-extended; an index the ring cannot have is not counted),
/// and the total, in the ring at `base`. Uses `scratch`.
pub(super) fn count_return_lost(
    a: &mut CodeAssembler,
    base: u64,
    index: AsmRegister64,
    scratch: AsmRegister64,
) -> Result<(), iced_x86::IcedError> {
    let mut done = a.create_label();
    a.cmp(index, (ring::MAX_SITES - 1) as i32)?;
    a.jae(done)?;
    a.mov(scratch, base)?;
    a.lock()
        .inc(qword_ptr(scratch + index * 8 + ring::RET_LOST as i32))?;
    a.lock().inc(qword_ptr(scratch + ring::LOST_TOTAL as i32))?;
    a.set_label(&mut done)?;
    a.nop()?;
    Ok(())
}

/// Adds a timed call to its row (esi: the row plus one, as the table
/// has it; rcx: the time stamp counter at its entry; the return's at
/// `[rsp + when]`): its duration in nanoseconds (`ticks * NS_MULT >> 32`;
/// 0 when the counter went back) to the sum, one to its log2 bucket, and
/// the longest and shortest kept with `lock cmpxchg`. The block is the one
/// the thread pointer hashes to. A row out of range (the table is the
/// program's memory) is not added. Uses rax, rcx, rdx, rsi, r10, r11.
fn add_timed_call(
    a: &mut CodeAssembler,
    spec: &StubSpec,
    when: i32,
) -> Result<(), iced_x86::IcedError> {
    let mut skip = a.create_label();
    let mut ahead = a.create_label();
    let mut zero = a.create_label();
    let mut longest = a.create_label();
    let mut longer = a.create_label();
    let mut shortest = a.create_label();
    let mut shorter = a.create_label();
    a.dec(esi)?;
    a.cmp(esi, ring::MAX_TIMED as i32)?;
    a.jae(skip)?;
    a.mov(rax, qword_ptr(rsp + when))?;
    a.sub(rax, rcx)?;
    a.jae(ahead)?;
    a.xor(eax, eax)?;
    a.set_label(&mut ahead)?;
    a.mov(r11, spec.ring.base)?;
    a.mul(qword_ptr(r11 + ring::NS_MULT as i32))?;
    a.shrd(rax, rdx, 32)?;
    // r10: the row, in the thread's block.
    load_thread_pointer(a, spec.tp, rcx)?;
    a.mov(rdx, table::GOLDEN)?;
    a.imul_2(rcx, rdx)?;
    a.shr(rcx, 64 - ring::TIMED_SHARDS.trailing_zeros())?;
    a.imul_3(rcx, rcx, ring::TIMED_SHARD as i32)?;
    a.imul_3(rsi, rsi, ring::TIMED_ROW as i32)?;
    a.lea(r10, ptr(r11 + rsi + ring::TIMED as i32))?;
    a.add(r10, rcx)?;
    // The bucket: 1 for 0 ns, else 2 + log2. Counted before the sum is
    // added: rtrace reads a row's sum first and its buckets after, and
    // looks at the buckets again only once the sum (or the bucket of 0 ns)
    // moved, so a read between the two adds must not see the sum of a call
    // without its count (the call would never be counted, were it the
    // row's last).
    a.mov(rsi, rax)?;
    a.mov(ecx, 1)?;
    a.test(rax, rax)?;
    a.je(zero)?;
    a.bsr(rcx, rax)?;
    a.add(ecx, 2)?;
    a.set_label(&mut zero)?;
    a.lock()
        .inc(qword_ptr(r10 + rcx * 8 + ring::ROW_HIST as i32))?;
    a.lock().add(qword_ptr(r10 + ring::ROW_SUM as i32), rsi)?;
    // The longest (a failed cmpxchg loads the word again into rax).
    a.mov(rax, qword_ptr(r10 + ring::ROW_MAX as i32))?;
    a.set_label(&mut longest)?;
    a.cmp(rax, rsi)?;
    a.jae(longer)?;
    a.lock()
        .cmpxchg(qword_ptr(r10 + ring::ROW_MAX as i32), rsi)?;
    a.jne(longest)?;
    a.set_label(&mut longer)?;
    // The shortest, kept complemented.
    a.not(rsi)?;
    a.mov(rax, qword_ptr(r10 + ring::ROW_MIN_NOT as i32))?;
    a.set_label(&mut shortest)?;
    a.cmp(rax, rsi)?;
    a.jae(shorter)?;
    a.lock()
        .cmpxchg(qword_ptr(r10 + ring::ROW_MIN_NOT as i32), rsi)?;
    a.jne(shortest)?;
    a.set_label(&mut shorter)?;
    a.nop()?;
    a.set_label(&mut skip)?;
    a.nop()?;
    Ok(())
}

/// The end of a detour (or of a hook): the restore, each instruction of it
/// labelled (a thread stopped among them finishes it by `finish_restore`,
/// never by single steps; the labels are returned), then the displaced
/// instructions (the first at `displaced`, what follows its relocated copy
/// at `after_first`), then the jump back past the patch (unreachable after
/// a displaced `ret` or jump, and harmless).
pub(super) fn restore_and_resume(
    a: &mut CodeAssembler,
    patch: &Patch,
    displaced: &mut CodeLabel,
    after_first: &mut CodeLabel,
) -> Result<Vec<CodeLabel>, iced_x86::IcedError> {
    let mut steps: Vec<CodeLabel> = (0..RESTORE_STEPS).map(|_| a.create_label()).collect();
    restore(a, &mut steps)?;
    let mut returns = Vec::new();
    for (i, insn) in patch.insns.iter().enumerate() {
        // (On an empty instruction: the block encoder may make a branch's
        // copy longer, and a label cannot stay on an instruction it
        // rewrites.)
        match i {
            0 => a.set_label(displaced)?,
            1 => a.set_label(after_first)?,
            _ => {}
        }
        if i < 2 {
            a.zero_bytes()?;
        }
        match call_as_jump(insn.code()) {
            // A call (the last displaced instruction): its return address is
            // the original code's, past the patch, as if it had run there.
            Some(jump) => {
                let at = a.create_label();
                a.push(qword_ptr(at))?;
                let mut j = *insn;
                j.set_code(jump);
                a.add_instruction(j)?;
                returns.push((at, insn.next_ip()));
            }
            None => a.add_instruction(*insn)?,
        }
    }
    // (Past a function's last instruction, over fill: never reached.)
    let resume = patch.insns.last().map_or(patch.addr, Instruction::next_ip);
    if patch.insns.len() < 2 {
        a.set_label(after_first)?;
        a.zero_bytes()?;
    }
    a.jmp(resume)?;
    for (mut at, ret) in returns {
        a.set_label(&mut at)?;
        a.dq(&[ret])?;
    }
    Ok(steps)
}

/// The restore shared by the detours and the stub: six pops, `popfq`, the
/// `lea` back over the red zone, each at its label in `steps`.
pub(super) fn restore(
    a: &mut CodeAssembler,
    steps: &mut [CodeLabel],
) -> Result<(), iced_x86::IcedError> {
    for (reg, label) in SAVED.iter().rev().zip(steps.iter_mut()) {
        a.set_label(label)?;
        let r = match reg {
            Register::R11 => r11,
            Register::R10 => r10,
            Register::RSI => rsi,
            Register::RDX => rdx,
            Register::RCX => rcx,
            _ => rax,
        };
        a.pop(r)?;
    }
    a.set_label(&mut steps[SAVED.len()])?;
    a.popfq()?;
    a.set_label(&mut steps[SAVED.len() + 1])?;
    a.lea(rsp, ptr(rsp + RED_ZONE as i32))?;
    Ok(())
}

/// Finishes the restore of a thread stopped among `restore` (a stub's
/// restore: see [`finish_restore`]), leaving it at `next`. False when the
/// thread is not there.
pub fn finish_stub_restore(
    stub: &Stub,
    regs: &mut super::regs::Regs,
    stack: &dyn super::exec::Stack,
) -> crate::Result<bool> {
    for (half, next) in [(0, stub.ret), (1, stub.orphan)] {
        let steps = &stub.restore[half * RESTORE_STEPS..(half + 1) * RESTORE_STEPS];
        let Some(at) = steps.iter().position(|&ip| ip == regs.ip()) else {
            continue;
        };
        restore_from(at, regs, stack)?;
        regs.set_ip(next);
        return Ok(true);
    }
    Ok(false)
}

/// What is left of the restore from its step `at`, done on `regs` and the
/// words it pops.
pub(super) fn restore_from(
    at: usize,
    regs: &mut super::regs::Regs,
    stack: &dyn super::exec::Stack,
) -> crate::Result<()> {
    let gpr = |r: Register| match r {
        Register::RAX => Gpr(0),
        Register::RCX => Gpr(1),
        Register::RDX => Gpr(2),
        Register::RSI => Gpr(6),
        Register::R10 => Gpr(10),
        _ => Gpr(11),
    };
    for reg in SAVED.iter().rev().skip(at) {
        let value = stack.read_word(regs.sp())?;
        regs.set_gpr(gpr(*reg), value);
        regs.set_sp(regs.sp() + 8);
    }
    if at <= SAVED.len() {
        let flags = stack.read_word(regs.sp())?;
        regs.raw_mut().eflags = flags;
        regs.set_sp(regs.sp() + 8);
    }
    regs.set_sp(regs.sp() + RED_ZONE);
    Ok(())
}

/// The registers an entry record holds: those of `regs` and the stack
/// pointer.
pub fn entry_regs(regs: RegSet) -> RegSet {
    regs.with(Gpr::RSP)
}

/// Where register `reg` is in an entry record of registers `regs` (as
/// [`entry_regs`] has them), if it is there.
pub fn reg_offset(regs: RegSet, reg: Gpr) -> Option<u64> {
    regs.has(reg)
        .then(|| ring::REGS + 8 * u64::from(regs.before(reg)))
}

/// Where xmm`n` is in an entry record of registers `regs` (as
/// [`entry_regs`] has them), if it is there: after rflags.
pub fn xmm_offset(regs: RegSet, n: usize) -> Option<u64> {
    regs.has_xmm(n)
        .then(|| ring::REGS + 8 * u64::from(regs.len() + regs.xmm_before(n)))
}

/// Where rflags is in an entry record of registers `regs` (when they have
/// it): after the general-purpose ones.
fn flags_offset(regs: RegSet) -> u64 {
    ring::REGS + 8 * u64::from(regs.len() - 1)
}

/// The word at `off` of `record` (0 past its end: a record is the
/// program's to write, and may be short of nothing but sense).
fn record_word(record: &[u8], off: u64) -> u64 {
    let at = off as usize;
    record
        .get(at..at + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// How many registers [`record_values`] and [`return_values`] give: the
/// general-purpose ones in encoding order (rax, rcx, rdx, rbx, rsp, rbp,
/// rsi, rdi, r8–r15), then rip, rflags and `fs_base`.
pub const RECORD_VALUES: usize = 19;

/// The registers an entry record of registers `regs` holds, as at the
/// probed instruction `ip`, in the order [`RECORD_VALUES`] gives (`fs_base`
/// is the thread pointer; registers not recorded are 0).
pub fn record_values(record: &[u8], regs: RegSet, ip: u64) -> [u64; RECORD_VALUES] {
    let regs = entry_regs(regs);
    let word = |off| record_word(record, off);
    let mut out = [0; RECORD_VALUES];
    // In encoding order, one word each (as `reg_offset` places them).
    for (g, at) in regs.gprs().zip((ring::REGS..).step_by(8)) {
        out[usize::from(g.0)] = word(at);
    }
    out[16] = ip;
    if regs.has_flags() {
        out[17] = word(flags_offset(regs));
    }
    out[18] = word(ring::TP);
    out
}

/// The registers a return record holds (rax, rdx and the stack pointer
/// past the slot), at `ip`, the address returned to, in the order
/// [`RECORD_VALUES`] gives.
pub fn return_values(record: &[u8], ip: u64) -> [u64; RECORD_VALUES] {
    let word = |off| record_word(record, off);
    let mut out = [0; RECORD_VALUES];
    out[0] = word(ring::RET_RAX);
    out[2] = word(ring::RET_RDX);
    out[usize::from(Gpr::RSP.0)] = word(ring::RET_SP);
    out[16] = ip;
    out[18] = word(ring::TP);
    out
}

/// `values` (in the order [`RECORD_VALUES`] gives) as registers, not in a
/// system call (segment registers 0).
pub fn regs_of(values: &[u64; RECORD_VALUES]) -> super::regs::Regs {
    let mut out = super::regs::Regs::default();
    for (n, v) in values[..16].iter().enumerate() {
        out.set_gpr(Gpr(n as u8), *v);
    }
    let raw = out.raw_mut();
    raw.rip = values[16];
    raw.eflags = values[17];
    raw.fs_base = values[18];
    raw.orig_rax = u64::MAX;
    out
}
