//! Registers and the SysV calling convention.

use crate::addr::RuntimeAddr;

/// A thread's general-purpose registers, as `PTRACE_GETREGS` returns them.
#[derive(Clone, Copy)]
pub struct Regs(pub(crate) libc::user_regs_struct);

impl std::fmt::Debug for Regs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regs")
            .field("ip", &format_args!("{:#x}", self.0.rip))
            .field("sp", &format_args!("{:#x}", self.0.rsp))
            .finish_non_exhaustive()
    }
}

impl Default for Regs {
    /// Every register zero.
    fn default() -> Self {
        Regs(libc::user_regs_struct {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: 0,
            rip: 0,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        })
    }
}

impl Regs {
    /// The thread pointer (`fs_base`: glibc's TCB, what fast-probe records
    /// carry to tell threads apart).
    pub fn thread_pointer(&self) -> u64 {
        self.raw().fs_base
    }

    /// Wraps raw registers.
    pub fn from_raw(raw: libc::user_regs_struct) -> Self {
        Regs(raw)
    }
    /// The raw registers.
    pub fn raw(&self) -> &libc::user_regs_struct {
        &self.0
    }
    /// The raw registers, writable.
    pub fn raw_mut(&mut self) -> &mut libc::user_regs_struct {
        &mut self.0
    }
    /// The instruction pointer.
    pub fn ip(&self) -> u64 {
        self.0.rip
    }
    /// Sets the instruction pointer.
    pub fn set_ip(&mut self, ip: u64) {
        self.0.rip = ip;
    }
    /// The stack pointer.
    pub fn sp(&self) -> u64 {
        self.0.rsp
    }
    /// Sets the stack pointer.
    pub fn set_sp(&mut self, sp: u64) {
        self.0.rsp = sp;
    }
    /// Integer argument `n` (0-based) of the SysV AMD64 calling convention, as the
    /// registers hold it at a function's first instruction. Arguments past the sixth
    /// live on the stack and are not returned here (None).
    pub fn arg(&self, n: usize) -> Option<u64> {
        let r = &self.0;
        Some(match n {
            0 => r.rdi,
            1 => r.rsi,
            2 => r.rdx,
            3 => r.rcx,
            4 => r.r8,
            5 => r.r9,
            _ => return None,
        })
    }
    /// Sets integer argument `n` (0..6).
    pub fn set_arg(&mut self, n: usize, v: u64) -> bool {
        let r = &mut self.0;
        let slot = match n {
            0 => &mut r.rdi,
            1 => &mut r.rsi,
            2 => &mut r.rdx,
            3 => &mut r.rcx,
            4 => &mut r.r8,
            5 => &mut r.r9,
            _ => return false,
        };
        *slot = v;
        true
    }
    /// The integer return value.
    pub fn retval(&self) -> u64 {
        self.0.rax
    }
    /// The second integer return register (rdx): the high eightbyte of a
    /// value returned in two (an `__int128`, a 16-byte struct of integers).
    pub fn retval_high(&self) -> u64 {
        self.0.rdx
    }
    /// The general-purpose register with DWARF number `n` (the psABI's
    /// "DWARF Register Number Mapping": 0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi,
    /// 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15); None for any other number (16 is
    /// the return address column, vector registers are not read).
    pub fn dwarf(&self, n: u16) -> Option<u64> {
        let r = &self.0;
        Some(match n {
            0 => r.rax,
            1 => r.rdx,
            2 => r.rcx,
            3 => r.rbx,
            4 => r.rsi,
            5 => r.rdi,
            6 => r.rbp,
            7 => r.rsp,
            8 => r.r8,
            9 => r.r9,
            10 => r.r10,
            11 => r.r11,
            12 => r.r12,
            13 => r.r13,
            14 => r.r14,
            15 => r.r15,
            _ => return None,
        })
    }
    /// Sets the integer return value.
    pub fn set_retval(&mut self, v: u64) {
        self.0.rax = v;
    }
    /// Prepares the registers for an injected system call `nr(args…)` whose
    /// `syscall` instruction is at `ip`. `orig_rax` is set to -1 so that the
    /// kernel's syscall-restart logic leaves the injected call alone.
    pub fn setup_syscall(&mut self, ip: RuntimeAddr, nr: i64, args: &[u64]) {
        let r = &mut self.0;
        r.rip = ip.get();
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        let slots = [
            &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.r10, &mut r.r8, &mut r.r9,
        ];
        for (slot, &v) in slots.into_iter().zip(args) {
            *slot = v;
        }
    }
}

impl Regs {
    /// General-purpose register `r`, all 64 bits.
    pub fn gpr(&self, r: super::insn::Gpr) -> u64 {
        let x = &self.0;
        match r.0 {
            0 => x.rax,
            1 => x.rcx,
            2 => x.rdx,
            3 => x.rbx,
            4 => x.rsp,
            5 => x.rbp,
            6 => x.rsi,
            7 => x.rdi,
            8 => x.r8,
            9 => x.r9,
            10 => x.r10,
            11 => x.r11,
            12 => x.r12,
            13 => x.r13,
            14 => x.r14,
            _ => x.r15,
        }
    }

    /// Sets general-purpose register `r`.
    pub fn set_gpr(&mut self, r: super::insn::Gpr, v: u64) {
        let x = &mut self.0;
        *match r.0 {
            0 => &mut x.rax,
            1 => &mut x.rcx,
            2 => &mut x.rdx,
            3 => &mut x.rbx,
            4 => &mut x.rsp,
            5 => &mut x.rbp,
            6 => &mut x.rsi,
            7 => &mut x.rdi,
            8 => &mut x.r8,
            9 => &mut x.r9,
            10 => &mut x.r10,
            11 => &mut x.r11,
            12 => &mut x.r12,
            13 => &mut x.r13,
            14 => &mut x.r14,
            _ => &mut x.r15,
        } = v;
    }
}
