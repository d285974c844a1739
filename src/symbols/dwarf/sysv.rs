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
        /// The type's alignment, at least 8 (the stack argument area's).
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
    /// An aggregate whose eightbytes are split between integer argument
    /// registers (indices as in [`Loc::Gp`]) and vector registers (`None`,
    /// not read), low eightbyte first.
    Split(Vec<Option<usize>>),
    /// In the register of this DWARF number (0 rax, 1 rdx, 2 rcx, 3 rbx, 4
    /// rsi, 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15; 17-32 are vector registers),
    /// as a function's own debug info says: for a compiler clone, whose
    /// convention is not SysV's.
    Reg(u16),
    /// Not passed at all: the debug info gives its value, the same at every
    /// call (a parameter a `.constprop` clone was specialised for), as the
    /// little-endian bytes of a register.
    Const(u128),
    /// On the stack at `sp + 8 + offset` (above the return address), `size`
    /// bytes.
    Stack {
        /// Bytes above the first stack argument.
        offset: u64,
        /// Bytes.
        size: u64,
    },
    /// A `float` or `double` in vector register xmm`n` (its low bits).
    Vector(usize),
    /// Somewhere rtrace cannot read (a vector register of a complex or an
    /// aggregate) or cannot know.
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
    let align = align.max(8);
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
                (None | Some(Class::Sse | Class::Memory), Class::Sse | Class::Memory) => Class::Sse,
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

/// The alignment a value of type `ty` gets in the stack argument area: its
/// own alignment, at least 8 (psABI 3.2.3: "the size of each argument gets
/// rounded up to eightbytes"; an argument on the stack keeps its type's
/// alignment, so `__int128` and `_Alignas(16)` structs are 16-aligned).
fn stack_align(ty: &Type) -> u64 {
    let own = match ty {
        Type::Int { size, .. } | Type::Octal { size } | Type::Float { size, .. } => *size,
        Type::Aggregate { align, .. } => *align,
        Type::Char
        | Type::Bool { .. }
        | Type::Pointer { .. }
        | Type::Enum { .. }
        | Type::Void
        | Type::Unknown => 8,
    };
    own.max(8)
}

/// The bytes a value of type `ty` takes in a stack slot (its eightbytes for
/// an aggregate passed in registers); None when not known.
pub fn stack_size(ty: &Type) -> Option<u64> {
    match ty {
        Type::Int { size, .. }
        | Type::Octal { size }
        | Type::Bool { size }
        | Type::Enum { size, .. }
        | Type::Float { size, .. } => Some(*size),
        Type::Char => Some(1),
        Type::Pointer { .. } => Some(8),
        Type::Aggregate { passing, .. } => match passing {
            Passing::Memory { size, .. } => Some(*size),
            Passing::Regs(classes) => Some(classes.len() as u64 * 8),
            Passing::ByReference => Some(8),
            Passing::Nothing | Passing::Unknown => None,
        },
        Type::Void | Type::Unknown => None,
    }
}

/// How a value of type `ty` is passed.
pub fn passing(ty: &Type) -> Passing {
    match ty {
        Type::Int { size: 16, .. } => Passing::Regs(vec![Class::Integer, Class::Integer]),
        Type::Int { .. }
        | Type::Octal { .. }
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

/// Where each parameter of `sig` is at the function's first instruction,
/// by the SysV convention.
///
/// Registers are assigned in order whatever the stack holds, but a stack
/// argument whose alignment the ABI does not fix (more than 16 bytes: GCC
/// caps it at the largest alignment of the target, 16 without AVX, 32 with
/// it) leaves its own offset and every later stack argument's unknown:
/// those are [`Loc::Unavailable`], never guessed.
pub fn locate(sig: &Signature) -> Vec<Loc> {
    let mut gp = usize::from(returns_in_memory(&sig.ret));
    let mut sse = 0;
    let mut stack = Some(0u64);
    let mut known = true;
    let mut out = Vec::with_capacity(sig.params.len());
    for p in &sig.params {
        if !known {
            out.push(Loc::Unavailable);
            continue;
        }
        let align = stack_align(&p.ty);
        let loc = match passing(&p.ty) {
            Passing::Regs(classes) => {
                let ints = classes.iter().filter(|c| **c == Class::Integer).count();
                let vecs = classes.len() - ints;
                if gp + ints <= GP_REGS && sse + vecs <= SSE_REGS {
                    let mut next = gp;
                    let words: Vec<Option<usize>> = classes
                        .iter()
                        .map(|c| {
                            (*c == Class::Integer).then(|| {
                                next += 1;
                                next - 1
                            })
                        })
                        .collect();
                    let first_vector = sse;
                    gp += ints;
                    sse += vecs;
                    match (vecs, &p.ty) {
                        (0, _) => Loc::Gp(words.into_iter().flatten().collect()),
                        (_, Type::Aggregate { .. }) => Loc::Split(words),
                        // A float or a double: its own vector register.
                        (
                            1,
                            Type::Float {
                                size: 4 | 8,
                                complex: false,
                                x87: false,
                            },
                        ) => Loc::Vector(first_vector),
                        // A float, a double, a complex: all in vector registers.
                        (
                            _,
                            Type::Void
                            | Type::Int { .. }
                            | Type::Octal { .. }
                            | Type::Char
                            | Type::Bool { .. }
                            | Type::Float { .. }
                            | Type::Pointer { .. }
                            | Type::Enum { .. }
                            | Type::Unknown,
                        ) => Loc::Unavailable,
                    }
                } else {
                    // No room for every eightbyte: the whole argument goes on
                    // the stack, and no register is taken.
                    let bytes = (classes.len() as u64) * 8;
                    let size = match &p.ty {
                        Type::Int { size, .. } | Type::Octal { size } => (*size).min(bytes),
                        Type::Void
                        | Type::Char
                        | Type::Bool { .. }
                        | Type::Float { .. }
                        | Type::Pointer { .. }
                        | Type::Enum { .. }
                        | Type::Aggregate { .. }
                        | Type::Unknown => bytes,
                    };
                    on_stack(&mut stack, size, align)
                }
            }
            Passing::Memory { size, .. } => on_stack(&mut stack, size, align),
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

/// Places `size` bytes aligned to `align` in the stack argument area, whose
/// next free offset is `stack` (None once an offset could not be known).
fn on_stack(stack: &mut Option<u64>, size: u64, align: u64) -> Loc {
    let Some(next) = *stack else {
        return Loc::Unavailable;
    };
    if align > 16 {
        *stack = None;
        return Loc::Unavailable;
    }
    // Sizes come from the file: saturate rather than wrap on nonsense.
    let offset = next.div_ceil(align).saturating_mul(align);
    *stack = Some(offset.saturating_add(size.div_ceil(8).saturating_mul(8)));
    Loc::Stack { offset, size }
}
