//! Why the bytes at an address cannot take a jump to a detour
//! ([`PatchRefusal`], from `detour::plan_patch`).

use super::detour::JMP_LEN;

/// Why the bytes at an address cannot take a jump to a detour
/// ([`plan_patch`]). `Display` says it for one site; [`general`](Self::general)
/// says it without what differs from one site to the next (the instruction,
/// the addresses), so that the many sites of a glob group by what refused
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchRefusal {
    /// The address is not inside the function given.
    OutsideFunction,
    /// Fewer than [`JMP_LEN`] bytes of whole instructions are left.
    TooShort {
        /// The bytes there are.
        have: usize,
    },
    /// The bytes at the address do not decode.
    Undecodable,
    /// The function holds bytes that do not decode, at `at`.
    UndecodableAt {
        /// Where.
        at: u64,
    },
    /// A displaced instruction cannot run elsewhere: `why`.
    Displaced {
        /// The instruction, as iced-x86 shows it.
        insn: String,
        /// Why it cannot move.
        why: &'static str,
    },
    /// A branch at `at` lands strictly inside the replaced bytes.
    JumpsInto {
        /// The branch.
        insn: String,
        /// Its address.
        at: u64,
    },
    /// An instruction at `at` takes an address strictly inside them.
    TakesAddress {
        /// The instruction.
        insn: String,
        /// Its address.
        at: u64,
    },
    /// The function jumps through a register at `at` (a jump table).
    IndirectJump {
        /// The jump.
        insn: String,
        /// Its address.
        at: u64,
    },
}

/// What the jump would replace, as the refusals say it.
const REPLACED: &str = "the bytes a jump would replace";

impl std::fmt::Display for PatchRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatchRefusal::OutsideFunction => f.write_str("the address is outside its function"),
            PatchRefusal::TooShort { have } => write!(
                f,
                "the function has {have} of the {JMP_LEN} bytes a jump needs there"
            ),
            PatchRefusal::Undecodable => {
                f.write_str("the bytes there do not decode as instructions")
            }
            PatchRefusal::UndecodableAt { at } => write!(
                f,
                "the function has bytes at {at:#x} that do not decode as instructions"
            ),
            PatchRefusal::Displaced { insn, why } => write!(f, "'{insn}' {why}"),
            PatchRefusal::JumpsInto { insn, at } => {
                write!(f, "'{insn}' at {at:#x} jumps into {REPLACED}")
            }
            PatchRefusal::TakesAddress { insn, at } => {
                write!(f, "'{insn}' at {at:#x} takes an address inside {REPLACED}")
            }
            PatchRefusal::IndirectJump { insn, at } => write!(
                f,
                "the function jumps indirectly ('{insn}' at {at:#x}): a jump table could land \
                 inside {REPLACED}"
            ),
        }
    }
}

impl PatchRefusal {
    /// Whether a hop (only the site's first instruction replaced, see
    /// [`super::detour::plan_site`]) may do where a `jmp rel32` would not.
    pub fn hop_may_help(&self) -> bool {
        !matches!(
            self,
            PatchRefusal::OutsideFunction
                | PatchRefusal::Undecodable
                | PatchRefusal::UndecodableAt { .. }
        )
    }

    /// The refusal without the instruction (`'…'`) and the addresses
    /// (`…`): the same for every site refused for the same reason.
    pub fn general(&self) -> String {
        match self {
            PatchRefusal::OutsideFunction
            | PatchRefusal::TooShort { .. }
            | PatchRefusal::Undecodable => self.to_string(),
            PatchRefusal::UndecodableAt { .. } => {
                "the function has bytes at … that do not decode as instructions".into()
            }
            PatchRefusal::Displaced { why, .. } => format!("'…' {why}"),
            PatchRefusal::JumpsInto { .. } => format!("'…' at … jumps into {REPLACED}"),
            PatchRefusal::TakesAddress { .. } => {
                format!("'…' at … takes an address inside {REPLACED}")
            }
            PatchRefusal::IndirectJump { .. } => format!(
                "the function jumps indirectly ('…' at …): a jump table could land inside \
                 {REPLACED}"
            ),
        }
    }
}
