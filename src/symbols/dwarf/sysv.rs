//! Where the SysV AMD64 calling convention puts each argument of a
//! [`Signature`] at a function's first instruction (System V
//! psABI, AMD64 supplement, 3.2.3 "Parameter Passing").
//!
//! What it owns: classifying types into eightbytes (INTEGER, SSE, MEMORY) and
//! assigning the six integer argument registers, the eight vector registers and
//! the stack in order, exactly as the caller did. It says where a value is, not
//! what it is: a vector register is a location like any other, which the
//! printers cannot read (rtrace reads the general-purpose registers only).
//!
//! When a type's class cannot be known (a C++ class of unknown layout, a type
//! in another unit), nothing after it can be placed either: every later
//! argument is [`Loc::Unavailable`], never guessed.

use super::{Signature, Type};

/// The class of one eightbyte of an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A general-purpose register.
    Integer,
    /// A vector register.
    Sse,
    /// Passed in memory (x87 types, unaligned fields).
    Memory,
}

/// How a type is passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Passing {
    /// In registers, one class per eightbyte (at most two).
    Regs(Vec<Class>),
    /// On the stack, `size` bytes aligned to `align`.
    Memory {
        /// Bytes.
        size: u64,
        /// Alignment on the stack (8 or 16).
        align: u64,
    },
    /// A C++ object passed by invisible reference: a pointer in an integer
    /// register.
    ByReference,
    /// Takes no register and no stack (an empty struct in C).
    Nothing,
    /// Not known: neither it nor anything after it can be located.
    Unknown,
}

/// Where one argument is at the function's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loc {
    /// In integer argument registers (indices 0..6: rdi, rsi, rdx, rcx, r8,
    /// r9), low eightbyte first.
    Gp(Vec<usize>),
    /// On the stack at `sp + 8 + offset` (above the return address), `size`
    /// bytes.
    Stack {
        /// Bytes above the first stack argument.
        offset: u64,
        /// Bytes.
        size: u64,
    },
    /// Somewhere rtrace cannot read (a vector register) or cannot know.
    Unavailable,
    /// Nowhere: the type has no bytes to pass.
    Nowhere,
}

/// The number of integer and vector argument registers.
const GP_REGS: usize = 6;
const SSE_REGS: usize = 8;

/// The classification of an aggregate of `size` bytes whose scalar fields are
/// `(offset, size, class)`.
pub fn aggregate(size: u64, align: u64, fields: &[(u64, u64, Class)]) -> Passing {
    let align = align.clamp(8, 16);
    if size == 0 {
        return Passing::Nothing;
    }
    if size > 16 {
        return Passing::Memory { size, align };
    }
    let n = size.div_ceil(8) as usize;
    let mut classes: Vec<Option<Class>> = vec![None; n];
    for &(offset, len, class) in fields {
        if class == Class::Memory {
            return Passing::Memory { size, align };
        }
        let first = (offset / 8) as usize;
        let last = offset.saturating_add(len.max(1) - 1) / 8;
        for slot in classes.iter_mut().take(last as usize + 1).skip(first) {
            *slot = Some(match (*slot, class) {
                (Some(Class::Integer), _) | (_, Class::Integer) => Class::Integer,
                _ => Class::Sse,
            });
        }
    }
    // An eightbyte that is padding only (NO_CLASS, possible with alignment
    // attributes) is rare enough not to guess at.
    match classes.into_iter().collect::<Option<Vec<Class>>>() {
        Some(classes) => Passing::Regs(classes),
        None => Passing::Unknown,
    }
}

/// How a value of type `ty` is passed.
pub fn passing(ty: &Type) -> Passing {
    match ty {
        Type::Int { size: 16, .. } => Passing::Regs(vec![Class::Integer, Class::Integer]),
        Type::Int { .. }
        | Type::Char
        | Type::Bool { .. }
        | Type::Pointer { .. }
        | Type::Enum { .. } => Passing::Regs(vec![Class::Integer]),
        Type::Float {
            x87: true, size, ..
        } => Passing::Memory {
            size: *size,
            align: 16,
        },
        Type::Float {
            size: 4 | 8,
            complex: false,
            ..
        } => Passing::Regs(vec![Class::Sse]),
        Type::Float {
            size: 8,
            complex: true,
            ..
        } => Passing::Regs(vec![Class::Sse]),
        Type::Float {
            size: 16,
            complex: true,
            ..
        } => Passing::Regs(vec![Class::Sse, Class::Sse]),
        Type::Aggregate { passing, .. } => passing.clone(),
        Type::Float { .. } | Type::Void | Type::Unknown => Passing::Unknown,
    }
}

/// True when a function returning `ty` gets a hidden pointer to the return
/// buffer in the first integer register.
pub fn returns_in_memory(ty: &Type) -> bool {
    matches!(passing(ty), Passing::Memory { .. }) && !matches!(ty, Type::Float { .. })
}

/// Where each parameter of `sig` is at the function's first instruction.
pub fn locate(sig: &Signature) -> Vec<Loc> {
    let mut gp = usize::from(returns_in_memory(&sig.ret));
    let mut sse = 0;
    let mut stack: u64 = 0;
    let mut known = true;
    let mut out = Vec::with_capacity(sig.params.len());
    for p in &sig.params {
        if !known {
            out.push(Loc::Unavailable);
            continue;
        }
        let (size, align) = match &p.ty {
            Type::Int { size, .. } => (*size, (*size).clamp(8, 16)),
            _ => (8, 8),
        };
        let loc = match passing(&p.ty) {
            Passing::Regs(classes) => {
                let ints = classes.iter().filter(|c| **c == Class::Integer).count();
                let vecs = classes.len() - ints;
                if gp + ints <= GP_REGS && sse + vecs <= SSE_REGS {
                    let regs: Vec<usize> = (gp..gp + ints).collect();
                    gp += ints;
                    sse += vecs;
                    if vecs == 0 {
                        Loc::Gp(regs)
                    } else {
                        Loc::Unavailable
                    }
                } else {
                    // No room for every eightbyte: the whole argument goes on
                    // the stack, and no register is taken.
                    let bytes = (classes.len() as u64) * 8;
                    let size = match &p.ty {
                        Type::Aggregate { .. } => bytes,
                        _ => size.min(bytes),
                    };
                    on_stack(&mut stack, size, align)
                }
            }
            Passing::Memory { size, align } => on_stack(&mut stack, size, align),
            Passing::ByReference => {
                if gp < GP_REGS {
                    gp += 1;
                    Loc::Gp(vec![gp - 1])
                } else {
                    on_stack(&mut stack, 8, 8)
                }
            }
            Passing::Nothing => Loc::Nowhere,
            Passing::Unknown => {
                known = false;
                Loc::Unavailable
            }
        };
        out.push(loc);
    }
    out
}

fn on_stack(stack: &mut u64, size: u64, align: u64) -> Loc {
    let align = align.clamp(8, 16);
    // Sizes come from the file: saturate rather than wrap on nonsense.
    let offset = stack.div_ceil(align).saturating_mul(align);
    *stack = offset.saturating_add(size.div_ceil(8).saturating_mul(8));
    Loc::Stack { offset, size }
}
