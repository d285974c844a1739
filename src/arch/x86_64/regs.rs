//! Registers and the SysV calling convention.

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

impl Regs {
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
    /// Sets the integer return value.
    pub fn set_retval(&mut self, v: u64) {
        self.0.rax = v;
    }
    /// Prepares the registers for an injected system call `nr(args…)` whose
    /// `syscall` instruction is at `ip`. `orig_rax` is set to -1 so that the
    /// kernel's syscall-restart logic leaves the injected call alone.
    pub fn setup_syscall(&mut self, ip: u64, nr: i64, args: &[u64]) {
        let r = &mut self.0;
        r.rip = ip;
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
