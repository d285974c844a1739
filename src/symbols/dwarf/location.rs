//! Where a formal parameter is at its function's first instruction, as the
//! function's own debug info says (`DW_AT_location`, `DW_AT_const_value`).
//!
//! Used only for compiler clones (`.isra.`, `.constprop.`, `.part.`), whose
//! calling convention is the compiler's own: for any other function the SysV
//! convention (`sysv`) says where the caller put each argument, which is
//! better than DWARF at the entry of unoptimised code (its locations are
//! frame slots the prologue has not filled yet).
//!
//! Only what is certain at the entry is taken: a register, the entry value
//! of a register (the same thing at the entry), a stack slot above the return
//! address, a constant. Anything else (`DW_OP_GNU_parameter_ref`, a value
//! the caller computes; pieces; arithmetic; a location list with no range at
//! the entry) is [`Loc::Unavailable`]. It must not panic: an expression that
//! does not parse is unavailable too.

use gimli::{AttributeValue, Operation};

use super::sysv::Loc;
use super::{Die, R};

/// `DW_OP_reg7`: rsp.
const RSP: u16 = 7;
/// The last general-purpose register's DWARF number (r15); 16 is the return
/// address column, 17 and up are vector registers.
const LAST_GP: u16 = 15;

/// Where `param` is at `pc`, the entry of its function, whose frame base is
/// the call frame address when `cfa_based`.
pub(super) fn at_entry(
    dwarf: &gimli::Dwarf<R<'_>>,
    unit: &gimli::Unit<R<'_>>,
    param: &Die<'_>,
    pc: u64,
    cfa_based: bool,
) -> gimli::Result<Loc> {
    if let Some(v) = param.attr_value(gimli::DW_AT_const_value) {
        return Ok(constant(&v).map_or(Loc::Unavailable, Loc::Const));
    }
    let Some(value) = param.attr_value(gimli::DW_AT_location) else {
        // Optimised out.
        return Ok(Loc::Unavailable);
    };
    let encoding = unit.encoding();
    if let AttributeValue::Exprloc(expr) = value {
        return Ok(evaluate(expr, encoding, cfa_based));
    }
    let Some(mut list) = dwarf.attr_locations(unit, value)? else {
        return Ok(Loc::Unavailable);
    };
    while let Some(entry) = list.next()? {
        if entry.range.begin <= pc && pc < entry.range.end {
            return Ok(evaluate(entry.data, encoding, cfa_based));
        }
    }
    Ok(Loc::Unavailable)
}

/// A `DW_AT_const_value` as register bytes.
fn constant(v: &AttributeValue<R<'_>>) -> Option<u128> {
    Some(match v {
        AttributeValue::Sdata(v) => *v as i128 as u128,
        AttributeValue::Udata(v) => u128::from(*v),
        AttributeValue::Data1(v) => u128::from(*v),
        AttributeValue::Data2(v) => u128::from(*v),
        AttributeValue::Data4(v) => u128::from(*v),
        AttributeValue::Data8(v) => u128::from(*v),
        AttributeValue::Block(b) => le_bytes(b.slice())?,
        _ => return None,
    })
}

/// Up to 16 little-endian bytes as one value.
fn le_bytes(b: &[u8]) -> Option<u128> {
    if b.len() > 16 {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes[..b.len()].copy_from_slice(b);
    Some(u128::from_le_bytes(bytes))
}

/// The location a whole expression describes at the function's entry.
fn evaluate(expr: gimli::Expression<R<'_>>, encoding: gimli::Encoding, cfa_based: bool) -> Loc {
    let mut ops = Vec::new();
    let mut iter = expr.operations(encoding);
    loop {
        match iter.next() {
            Ok(Some(op)) if ops.len() < 4 => ops.push(op),
            Ok(None) => break,
            // Longer than anything taken below, or does not parse.
            Ok(Some(_)) | Err(_) => return Loc::Unavailable,
        }
    }
    match ops.as_slice() {
        [Operation::Register { register }] if register.0 <= LAST_GP => Loc::Reg(register.0),
        // The value the register had at the entry: at the entry, the
        // register itself.
        [Operation::EntryValue { expression }, Operation::StackValue] => {
            match entry_register(*expression, encoding) {
                Some(r) => Loc::Reg(r),
                None => Loc::Unavailable,
            }
        }
        // In memory at rsp + offset: above the return address, a stack
        // argument.
        [Operation::RegisterOffset {
            register, offset, ..
        }] if register.0 == RSP && *offset >= 8 => Loc::Stack {
            offset: (*offset - 8) as u64,
            size: 0,
        },
        // The frame base is the CFA, `sp + 8` at the entry.
        [Operation::FrameOffset { offset }] if cfa_based && *offset >= 0 => Loc::Stack {
            offset: *offset as u64,
            size: 0,
        },
        [Operation::UnsignedConstant { value }, Operation::StackValue] => {
            Loc::Const(u128::from(*value))
        }
        [Operation::SignedConstant { value }, Operation::StackValue] => {
            Loc::Const(*value as i128 as u128)
        }
        [Operation::ImplicitValue { data }] => {
            le_bytes(data.slice()).map_or(Loc::Unavailable, Loc::Const)
        }
        _ => Loc::Unavailable,
    }
}

/// The register of a `DW_OP_entry_value` whose expression is one `DW_OP_regN`
/// (or `DW_OP_bregN 0`) of a general-purpose register.
fn entry_register(expr: R<'_>, encoding: gimli::Encoding) -> Option<u16> {
    let mut ops = gimli::Expression(expr).operations(encoding);
    let op = ops.next().ok()??;
    if !matches!(ops.next(), Ok(None)) {
        return None;
    }
    match op {
        Operation::Register { register } if register.0 <= LAST_GP => Some(register.0),
        Operation::RegisterOffset {
            register,
            offset: 0,
            ..
        } if register.0 <= LAST_GP => Some(register.0),
        _ => None,
    }
}
