//! Instruction analysis, done once when a probe is armed.
//!
//! Like the kernel's `arch_uprobe_analyze_insn`, [`analyze`] decodes the
//! instruction a breakpoint displaces and decides how it will run, or refuses it
//! with a typed error. There are three ways, tried in this order in
//! [`StepMode::Auto`]:
//!
//! 1. **Emulate** ([`Emulation`]): the tracer computes the instruction's effect
//!    on the registers (and the stack) itself: no extra stop. The common
//!    function-entry instructions (endbr64, nops, `push reg`, `mov reg,reg`,
//!    `sub/add reg,imm`, `xor reg,reg`) and every relative branch (`call`,
//!    `jmp`, `jcc`, `loop`, `jrcxz`) and `ret`.
//! 2. **Out of line** ([`Xol`]): the instruction is copied to a slot in the
//!    scratch page, where the thread single-steps it while the breakpoint stays
//!    armed. A RIP-relative operand is re-encoded (iced-x86) to address a scratch
//!    register that holds the absolute address, as the kernel's `riprel_pre_xol`
//!    does, so the slot can be anywhere. After the step, [`Fixup`] moves the
//!    instruction pointer (or a pushed return address) from the slot back to the
//!    original code.
//! 3. **In place**: the original byte goes back while the thread steps it, and
//!    every other thread of the process is stopped meanwhile. For what neither of
//!    the others can do (an EIP-relative operand, a full scratch page).

use iced_x86::{
    Code, ConditionCode, Decoder, DecoderOptions, Encoder, FlowControl, Instruction,
    InstructionInfoFactory, Mnemonic, OpKind, Register,
};

use crate::addr::RuntimeAddr;
use crate::error::{Error, Result};

/// Which execution strategy to use for displaced instructions (`--step`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepMode {
    /// Emulate when possible, else out of line, else in place.
    #[default]
    Auto,
    /// Emulate every displaced instruction; refuse those that cannot be.
    Emulate,
    /// Step every displaced instruction out of line; relative branches, which
    /// cannot run anywhere but where they are, are emulated (as kernel uprobes do).
    Xol,
    /// Restore, step and re-arm, with the other threads stopped.
    InPlace,
}

impl std::str::FromStr for StepMode {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        Ok(match s {
            "auto" => StepMode::Auto,
            "emulate" => StepMode::Emulate,
            "xol" => StepMode::Xol,
            "inplace" => StepMode::InPlace,
            _ => {
                return Err(crate::error::Error::InvalidValue {
                    option: "--step",
                    reason: format!("unknown step mode '{s}' (auto, emulate, xol, inplace)"),
                })
            }
        })
    }
}

/// A general-purpose register, by its number in the instruction encoding
/// (0 = rax … 15 = r15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpr(pub u8);

impl Gpr {
    /// rsp.
    pub const RSP: Gpr = Gpr(4);

    /// The register of SysV integer argument `n` (0..6: rdi, rsi, rdx, rcx,
    /// r8, r9).
    pub fn arg(n: usize) -> Option<Gpr> {
        [7, 6, 2, 1, 8, 9].get(n).map(|&g| Gpr(g))
    }

    /// The register of DWARF number `n` (the psABI's mapping: 0 rax, 1 rdx,
    /// 2 rcx, 3 rbx, 4 rsi, 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15).
    pub fn from_dwarf(n: u16) -> Option<Gpr> {
        [0, 2, 1, 3, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15]
            .get(usize::from(n))
            .map(|&g| Gpr(g))
    }

    fn of(reg: Register) -> Option<Gpr> {
        let full = reg.full_register();
        if !full.is_gpr64() {
            return None;
        }
        Some(Gpr((full as u32 - Register::RAX as u32) as u8))
    }

    fn register(self) -> Register {
        Register::try_from(Register::RAX as usize + self.0 as usize).expect("a GPR number")
    }
}

/// Registers a fast probe's record carries: general-purpose registers by
/// encoding number, rflags, and the low 64 bits of xmm0 to xmm7 (the
/// vector registers of `float` and `double` arguments). A handler says
/// which it reads from a fast hit (`Capture::registers`); the stack pointer
/// is always recorded. The default is every general-purpose register and
/// rflags, no vector register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegSet(u32);

impl RegSet {
    /// Every general-purpose register and rflags.
    pub const ALL: RegSet = RegSet(0x1_ffff);
    /// None (the stack pointer is recorded all the same).
    pub const NONE: RegSet = RegSet(0);
    const FLAGS: u32 = 1 << 16;

    /// This set and `reg`.
    pub const fn with(self, reg: Gpr) -> RegSet {
        RegSet(self.0 | 1 << (reg.0 & 15))
    }

    /// This set and rflags.
    pub const fn with_flags(self) -> RegSet {
        RegSet(self.0 | Self::FLAGS)
    }

    /// This set and the six SysV integer argument registers (rdi, rsi,
    /// rdx, rcx, r8, r9).
    pub const fn with_args(self) -> RegSet {
        RegSet(self.0 | 1 << 7 | 1 << 6 | 1 << 2 | 1 << 1 | 1 << 8 | 1 << 9)
    }

    /// Both sets' registers.
    pub const fn union(self, other: RegSet) -> RegSet {
        RegSet(self.0 | other.0)
    }

    /// Whether `reg` is in the set.
    pub const fn has(self, reg: Gpr) -> bool {
        self.0 & 1 << (reg.0 & 15) != 0
    }

    /// Whether rflags is in the set.
    pub const fn has_flags(self) -> bool {
        self.0 & Self::FLAGS != 0
    }

    /// The general-purpose registers of the set, in encoding order.
    pub fn gprs(self) -> impl Iterator<Item = Gpr> {
        (0..16u8).filter(move |&n| self.0 & 1 << n != 0).map(Gpr)
    }

    /// This set and vector register xmm`n` (0..8: the SysV `float` and
    /// `double` arguments; its low 64 bits are recorded).
    pub const fn with_xmm(self, n: usize) -> RegSet {
        match n {
            0..8 => RegSet(self.0 | 1 << (17 + n)),
            _ => self,
        }
    }

    /// Whether xmm`n` is in the set.
    pub const fn has_xmm(self, n: usize) -> bool {
        n < 8 && self.0 & 1 << (17 + n) != 0
    }

    /// How many general-purpose registers and rflags it holds.
    pub const fn len(self) -> u32 {
        (self.0 & Self::ALL.0).count_ones()
    }

    /// How many xmm registers it holds before xmm`n`.
    pub const fn xmm_before(self, n: usize) -> u32 {
        (self.0 >> 17 & ((1 << n) - 1)).count_ones()
    }

    /// How many xmm registers it holds.
    pub const fn xmm_len(self) -> u32 {
        (self.0 >> 17 & 0xff).count_ones()
    }

    /// Whether it holds none.
    pub const fn is_empty(self) -> bool {
        self.len() == 0 && self.xmm_len() == 0
    }

    /// How many of its general-purpose registers come before `reg` in
    /// encoding order.
    pub const fn before(self, reg: Gpr) -> u32 {
        (self.0 & ((1 << (reg.0 & 15)) - 1)).count_ones()
    }
}

impl Default for RegSet {
    fn default() -> RegSet {
        RegSet::ALL
    }
}

/// A condition, as `jcc` tests it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// jo
    O,
    /// jno
    No,
    /// jb / jc
    B,
    /// jae / jnc
    Ae,
    /// je / jz
    E,
    /// jne / jnz
    Ne,
    /// jbe
    Be,
    /// ja
    A,
    /// js
    S,
    /// jns
    Ns,
    /// jp
    P,
    /// jnp
    Np,
    /// jl
    L,
    /// jge
    Ge,
    /// jle
    Le,
    /// jg
    G,
}

/// The counter tests of `jrcxz`, `jecxz` and the `loop` family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterBranch {
    /// jrcxz: jump when rcx is 0.
    Jrcxz,
    /// jecxz: jump when ecx is 0.
    Jecxz,
    /// loop: rcx -= 1, jump when it is not 0.
    Loop,
    /// loope: rcx -= 1, jump when it is not 0 and ZF is set.
    Loope,
    /// loopne: rcx -= 1, jump when it is not 0 and ZF is clear.
    Loopne,
}

/// An instruction the tracer executes itself, without a stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulation {
    /// endbr64, endbr32, the nop forms, pause: only the instruction pointer moves.
    Nop,
    /// `push r64`.
    Push(Gpr),
    /// `pushfq`: emulated, never stepped, because a single-step runs with the
    /// trap flag set, and a stepped `pushf` would push it (the program would
    /// later `popf` it and trap).
    Pushf,
    /// `mov r64, r64`.
    Mov64 {
        /// Destination.
        dst: Gpr,
        /// Source.
        src: Gpr,
    },
    /// `mov r32, r32` (the upper half of the destination is cleared).
    Mov32 {
        /// Destination.
        dst: Gpr,
        /// Source.
        src: Gpr,
    },
    /// `add r64, imm` or `sub r64, imm`, flags included.
    AddImm {
        /// The register.
        reg: Gpr,
        /// The sign-extended immediate.
        imm: i64,
        /// True for `sub`.
        sub: bool,
    },
    /// `xor r32, r32` of a register with itself: zero, and the flags of zero.
    Zero(Gpr),
    /// `jmp rel`, to the address given.
    Jmp(RuntimeAddr),
    /// `jcc rel`.
    Jcc(Cond, RuntimeAddr),
    /// `jrcxz`, `jecxz`, `loop`, `loope`, `loopne`.
    Counter(CounterBranch, RuntimeAddr),
    /// `call rel32`.
    Call(RuntimeAddr),
    /// `ret` / `ret imm16`.
    Ret(u16),
}

/// After an out-of-line step: how the instruction pointer gets back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixup {
    /// The instruction continues at the next one: the end of the slot becomes
    /// the end of the original instruction.
    Ip,
    /// An indirect call: the pointer is the target already, but the return
    /// address it pushed points into the slot, and is corrected.
    Call,
    /// An indirect jump or a return: the pointer is where it should be.
    Absolute,
}

/// A RIP-relative operand rewritten to use a scratch register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RipRel {
    /// The register the slot's copy addresses memory through; the instruction
    /// does not otherwise use it. It holds `target` during the step and gets its
    /// value back after.
    pub reg: Gpr,
    /// The absolute address the original operand referred to.
    pub target: RuntimeAddr,
}

/// How an instruction runs out of line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xol {
    /// The bytes to place in a slot. They run at any address: a RIP-relative
    /// operand has been rewritten to use [`RipRel::reg`].
    pub code: Vec<u8>,
    /// The rewritten operand, if any.
    pub riprel: Option<RipRel>,
    /// How the instruction pointer gets back after the step.
    pub fixup: Fixup,
}

/// How the displaced instruction at a probe site is executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// By the tracer, without a stop.
    Emulate(Emulation),
    /// Stepped in a scratch slot.
    Xol(Xol),
    /// Stepped in place with the other threads stopped.
    InPlace,
}

/// The analysis of a displaced instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsnPlan {
    /// The instruction's length in bytes.
    pub len: u8,
    /// How it runs.
    pub strategy: Strategy,
}

fn decode(bytes: &[u8], ip: u64) -> Instruction {
    let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    decoder.decode()
}

/// Decodes the instruction at `addr` (its bytes, as in the file) and decides how to
/// execute it in `mode`. Refuses invalid instructions and instructions that trap
/// by themselves (int3, int n, into, hlt and other privileged ones, transactional
/// memory): stepping them would not do what the program meant. In a forced mode,
/// refuses what that mode cannot do.
pub fn analyze(bytes: &[u8], addr: RuntimeAddr, mode: StepMode) -> Result<InsnPlan> {
    let insn = decode(bytes, addr.get());
    let refuse = |reason: String| Err(Error::UnsupportedInstruction { addr, reason });
    if insn.is_invalid() {
        return refuse("the bytes there do not decode as an instruction".into());
    }
    if insn.flow_control() == FlowControl::Interrupt
        || matches!(insn.code(), Code::Int3 | Code::Int1 | Code::Hlt)
    {
        return refuse("it is an interrupt or breakpoint instruction".into());
    }
    if insn.is_privileged() {
        return refuse("it is a privileged instruction".into());
    }
    if insn.flow_control() == FlowControl::XbeginXabortXend
        || matches!(
            insn.mnemonic(),
            Mnemonic::Xbegin | Mnemonic::Xabort | Mnemonic::Xend
        )
    {
        return refuse("it is a transactional-memory instruction".into());
    }
    let len = insn.len() as u8;
    let emulation = emulation(&insn);
    if emulation == Some(Emulation::Pushf) {
        // Whatever the mode: see `Emulation::Pushf`.
        return Ok(InsnPlan {
            len,
            strategy: Strategy::Emulate(Emulation::Pushf),
        });
    }
    let syscall = matches!(insn.mnemonic(), Mnemonic::Syscall | Mnemonic::Sysenter);
    let strategy = match mode {
        StepMode::InPlace if syscall => {
            return refuse(
                "a system call cannot be stepped in place: it may block for good while \
                 every other thread is stopped (use --step auto)"
                    .into(),
            )
        }
        StepMode::InPlace => Strategy::InPlace,
        StepMode::Auto => match emulation {
            Some(e) => Strategy::Emulate(e),
            None => xol(&insn, bytes).map_or(Strategy::InPlace, Strategy::Xol),
        },
        StepMode::Emulate => match emulation {
            Some(e) => Strategy::Emulate(e),
            None => return refuse(format!("'{insn}' cannot be emulated (use --step auto)")),
        },
        StepMode::Xol => match (is_relative_branch(&insn), emulation, xol(&insn, bytes)) {
            (true, Some(e), _) => Strategy::Emulate(e),
            (_, _, Some(x)) => Strategy::Xol(x),
            _ => {
                return refuse(format!(
                    "'{insn}' cannot be stepped out of line (use --step auto)"
                ))
            }
        },
    };
    Ok(InsnPlan { len, strategy })
}

fn is_relative_branch(insn: &Instruction) -> bool {
    matches!(
        insn.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    ) && insn.op_count() == 1
}

fn reg_op(insn: &Instruction, n: u32) -> Option<Register> {
    (insn.op_kind(n) == OpKind::Register).then(|| insn.op_register(n))
}

/// The emulation of `insn`, when it is one of the instructions emulated.
fn emulation(insn: &Instruction) -> Option<Emulation> {
    if matches!(
        insn.mnemonic(),
        Mnemonic::Nop | Mnemonic::Endbr64 | Mnemonic::Endbr32 | Mnemonic::Pause
    ) {
        return Some(Emulation::Nop);
    }
    let target = RuntimeAddr(insn.near_branch_target());
    Some(match insn.code() {
        Code::Push_r64 => Emulation::Push(Gpr::of(insn.op0_register())?),
        Code::Pushfq => Emulation::Pushf,
        Code::Mov_rm64_r64 | Code::Mov_r64_rm64 => Emulation::Mov64 {
            dst: Gpr::of(reg_op(insn, 0)?)?,
            src: Gpr::of(reg_op(insn, 1)?)?,
        },
        Code::Mov_rm32_r32 | Code::Mov_r32_rm32 => Emulation::Mov32 {
            dst: Gpr::of(reg_op(insn, 0)?)?,
            src: Gpr::of(reg_op(insn, 1)?)?,
        },
        Code::Add_rm64_imm8 | Code::Add_rm64_imm32 | Code::Sub_rm64_imm8 | Code::Sub_rm64_imm32 => {
            Emulation::AddImm {
                reg: Gpr::of(reg_op(insn, 0)?)?,
                imm: insn.immediate(1) as i64,
                sub: insn.mnemonic() == Mnemonic::Sub,
            }
        }
        Code::Xor_rm32_r32 | Code::Xor_r32_rm32 => {
            let (a, b) = (reg_op(insn, 0)?, reg_op(insn, 1)?);
            if a != b {
                return None;
            }
            Emulation::Zero(Gpr::of(a)?)
        }
        Code::Jmp_rel8_64 | Code::Jmp_rel32_64 => Emulation::Jmp(target),
        Code::Call_rel32_64 => Emulation::Call(target),
        Code::Jrcxz_rel8_64 => Emulation::Counter(CounterBranch::Jrcxz, target),
        Code::Jecxz_rel8_64 => Emulation::Counter(CounterBranch::Jecxz, target),
        Code::Loop_rel8_64_RCX => Emulation::Counter(CounterBranch::Loop, target),
        Code::Loope_rel8_64_RCX => Emulation::Counter(CounterBranch::Loope, target),
        Code::Loopne_rel8_64_RCX => Emulation::Counter(CounterBranch::Loopne, target),
        Code::Retnq => Emulation::Ret(0),
        Code::Retnq_imm16 => Emulation::Ret(insn.immediate16()),
        _ if insn.flow_control() == FlowControl::ConditionalBranch
            && insn.is_jcc_short_or_near()
            && insn.op0_kind() == OpKind::NearBranch64 =>
        {
            Emulation::Jcc(cond(insn.condition_code())?, target)
        }
        _ => return None,
    })
}

fn cond(c: ConditionCode) -> Option<Cond> {
    Some(match c {
        ConditionCode::o => Cond::O,
        ConditionCode::no => Cond::No,
        ConditionCode::b => Cond::B,
        ConditionCode::ae => Cond::Ae,
        ConditionCode::e => Cond::E,
        ConditionCode::ne => Cond::Ne,
        ConditionCode::be => Cond::Be,
        ConditionCode::a => Cond::A,
        ConditionCode::s => Cond::S,
        ConditionCode::ns => Cond::Ns,
        ConditionCode::p => Cond::P,
        ConditionCode::np => Cond::Np,
        ConditionCode::l => Cond::L,
        ConditionCode::ge => Cond::Ge,
        ConditionCode::le => Cond::Le,
        ConditionCode::g => Cond::G,
        ConditionCode::None => return None,
    })
}

/// Scratch-register candidates for a RIP-relative operand: never rsp, rbp,
/// r12 or r13, whose encodings need a SIB byte or a displacement.
const SCRATCH_CANDIDATES: [u8; 10] = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11];

/// How `insn` runs out of line, or None when it cannot (a relative branch, an
/// EIP-relative operand, no free scratch register).
fn xol(insn: &Instruction, bytes: &[u8]) -> Option<Xol> {
    if is_relative_branch(insn) {
        return None;
    }
    let fixup = match insn.flow_control() {
        // A system call returns to the next instruction.
        _ if insn.code() == Code::Syscall => Fixup::Ip,
        FlowControl::IndirectCall => Fixup::Call,
        FlowControl::IndirectBranch | FlowControl::Return => Fixup::Absolute,
        FlowControl::Next | FlowControl::Exception => Fixup::Ip,
        _ => return None,
    };
    if insn.memory_base() == Register::EIP {
        return None;
    }
    if !insn.is_ip_rel_memory_operand() {
        // Nothing in it depends on where it is: the bytes are the relocation.
        return Some(Xol {
            code: bytes[..insn.len()].to_vec(),
            riprel: None,
            fixup,
        });
    }
    let target = RuntimeAddr(insn.ip_rel_memory_address());
    let mut info = InstructionInfoFactory::new();
    let used = info.info(insn).used_registers();
    let busy = |g: u8| {
        let r = Gpr(g).register();
        used.iter().any(|u| u.register().full_register() == r)
    };
    let reg = Gpr(*SCRATCH_CANDIDATES.iter().find(|&&g| !busy(g))?);
    let mut copy = *insn;
    copy.set_memory_base(reg.register());
    copy.set_memory_index(Register::None);
    copy.set_memory_displacement64(0);
    copy.set_memory_displ_size(0);
    let mut encoder = Encoder::new(64);
    encoder.encode(&copy, 0).ok()?;
    Some(Xol {
        code: encoder.take_buffer(),
        riprel: Some(RipRel { reg, target }),
        fixup,
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

/// The length of a Go function's stack-bound check, when `code` (the
/// function's first bytes) starts with one: Go's prologue compares the stack
/// pointer (or `lea r12, [rsp-N]` for a large frame) with the goroutine's
/// stack guard, `[r14+16]`, and branches to `runtime.morestack` when it is
/// short. `morestack` grows (copies) the stack and jumps back to the
/// function's first instruction, so a probe there would see such calls
/// twice; just past the check it sees each call once, with the argument
/// registers untouched (`r12` is scratch in Go's ABI).
pub fn go_stack_check_len(code: &[u8]) -> Option<usize> {
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    decoder.decode_out(&mut insn);
    let mut compared = Register::RSP;
    if insn.mnemonic() == Mnemonic::Lea
        && insn.op0_register() == Register::R12
        && insn.memory_base() == Register::RSP
    {
        compared = Register::R12;
        decoder.decode_out(&mut insn);
    }
    let guard = insn.mnemonic() == Mnemonic::Cmp
        && insn.op0_kind() == OpKind::Register
        && insn.op0_register() == compared
        && insn.op1_kind() == OpKind::Memory
        && insn.memory_base() == Register::R14
        && insn.memory_displacement64() == 16;
    if !guard {
        return None;
    }
    decoder.decode_out(&mut insn);
    (insn.mnemonic() == Mnemonic::Jbe).then(|| decoder.ip() as usize)
}
