//! Why a site stays an int3 breakpoint under `--fast`: [`Refusal`]. A leaf
//! of the component: the address space (`engine::space`) keeps refusals
//! without knowing how sites are judged (`plan.rs`).

use crate::arch::detour::PatchRefusal;

/// The largest record (captures included) a fast site may need.
pub(super) const MAX_RECORD: u64 = 4096;

/// Why a site stays an int3 breakpoint under `--fast`. `Display` says it
/// for one site (the attach line of a probe with one site, the JSON
/// `reasons`); [`general`](Self::general) says it without what differs from
/// one site to the next, so that a glob's many sites are grouped by what
/// refused them, not by the instruction or address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The process went away while the site was judged.
    ProcessGone,
    /// The site went away while it was judged.
    SiteGone,
    /// The function reads its own return address (`dlsym`, `dlopen`…:
    /// `symbols::resolve::reads_return_address`): its returns are watched
    /// at their return sites, and it is hooked for tail calls into it (see
    /// `Tracer::own_return_address_back`). The detour would swap the return
    /// address for the return stub, which lies in no module.
    ReadsReturnAddress,
    /// rtrace keeps a breakpoint of its own there.
    OwnBreakpoint,
    /// The program's unwinder was not found: returns are watched at their
    /// return sites.
    UnknownUnwinder,
    /// No return stub could be made (why).
    NoStub(String),
    /// A handler of a probe there said no (its reason).
    Handler(String),
    /// The returned string does not fit a record.
    ReturnStringTooLong,
    /// The captures do not fit a record.
    CapturesTooLong,
    /// No module maps the address.
    NoModule,
    /// No symbol covers the address.
    NoSymbol,
    /// The function's size is unknown.
    SizeUnknown,
    /// The function is too large to scan.
    FunctionTooLarge,
    /// Past a function's entry, landing pads are not checked.
    LandingPads,
    /// The code could not be read (the error).
    CodeUnreadable(String),
    /// The bytes cannot take a jump ([`detour::plan_patch`]).
    Patch(PatchRefusal),
    /// The bytes cannot take a jump (why), and no dead fill is within a
    /// short jump's reach for a hop.
    NoFill(PatchRefusal),
    /// Code elsewhere in the module (at `at`, in `whose`: function and
    /// offset) jumps to `to`, inside the bytes a jump would replace.
    CodeRefInto {
        at: u64,
        whose: Option<(String, u64)>,
        to: u64,
    },
    /// Another function begins inside the bytes.
    FunctionBeginsInside,
    /// Another breakpoint is inside the bytes.
    BreakpointInside,
    /// Another fast probe's jump overlaps the bytes.
    JumpOverlaps,
    /// The ring was written over (what was found).
    RingCorrupt(String),
    /// No code may be injected into the process (why: its seccomp mode).
    NoInjection(String),
    /// No ring could be made (why).
    NoRing(String),
    /// The detour or the jump could not be written (why).
    Failed(String),
    /// A task shares the memory and the thread pointer (CLONE_VM without
    /// TLS of its own): records could not be told apart.
    Suspended,
    /// A forked child could not get a ring of its own.
    ChildWithoutRing,
    /// The jump was written after this child was forked.
    PatchedAfterFork,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ProcessGone => f.write_str("the process is gone"),
            Refusal::SiteGone => f.write_str("the site is gone"),
            Refusal::ReadsReturnAddress => f.write_str(
                "the function reads its own return address: its returns are watched at their \
                 return sites, by int3",
            ),
            Refusal::OwnBreakpoint => {
                f.write_str("rtrace watches this address with a breakpoint of its own")
            }
            Refusal::UnknownUnwinder => f.write_str(
                "the program's unwinder could not be found: returns are watched at their \
                 return sites, by int3",
            ),
            Refusal::NoStub(why) => write!(f, "no return stub: {why}"),
            Refusal::Handler(why) => f.write_str(why),
            Refusal::ReturnStringTooLong => write!(
                f,
                "the string its return value points to does not fit a fast record \
                 ({MAX_RECORD} bytes)"
            ),
            Refusal::CapturesTooLong => write!(
                f,
                "what its handlers capture does not fit a fast record ({MAX_RECORD} bytes)"
            ),
            Refusal::NoModule => f.write_str("no module maps the address"),
            Refusal::NoSymbol => f.write_str("no symbol covers the address"),
            Refusal::SizeUnknown => f.write_str("the size of its function is unknown"),
            Refusal::FunctionTooLarge => f.write_str("its function is too large to scan"),
            Refusal::LandingPads => {
                f.write_str("exception landing pads inside the function are not checked")
            }
            Refusal::CodeUnreadable(e) => write!(f, "its code cannot be read ({e})"),
            Refusal::Patch(why) => write!(f, "{why}"),
            Refusal::NoFill(why) => write!(f, "{why}, and no padding is near for a short jump"),
            Refusal::CodeRefInto { at, whose, to } => {
                write!(f, "code at {at:#x}")?;
                if let Some((name, off)) = whose {
                    write!(f, " ({name}+{off:#x})")?;
                }
                write!(
                    f,
                    " jumps to {to:#x}, inside the bytes a jump would replace"
                )
            }
            Refusal::FunctionBeginsInside => {
                f.write_str("another function begins inside the bytes a jump would replace")
            }
            Refusal::BreakpointInside => {
                f.write_str("another breakpoint is in the bytes a jump would replace")
            }
            Refusal::JumpOverlaps => f.write_str("another fast probe's jump overlaps the bytes"),
            Refusal::RingCorrupt(why) => write!(f, "the fast probes' ring is corrupt ({why})"),
            Refusal::NoInjection(why) => f.write_str(why),
            Refusal::NoRing(why) => write!(f, "no ring: {why}"),
            Refusal::Failed(why) => f.write_str(why),
            Refusal::Suspended => f.write_str(
                "a process sharing the memory runs on the same thread pointer (clone with \
                 CLONE_VM and no TLS of its own)",
            ),
            Refusal::ChildWithoutRing => f.write_str("the child could not get a ring of its own"),
            Refusal::PatchedAfterFork => f.write_str("patched after this child was forked"),
        }
    }
}

impl From<PatchRefusal> for Refusal {
    fn from(why: PatchRefusal) -> Refusal {
        Refusal::Patch(why)
    }
}

impl Refusal {
    /// The reason as the sites of a glob are grouped by it: without the
    /// instruction (`'…'`), the addresses (`…`) and the function and offset
    /// of the code that jumps in. Text rtrace does not compose itself (a
    /// system error, a handler's reason, what a corrupt ring held, a
    /// function's name) may hold such things too: it goes through
    /// [`elide`].
    pub fn general(&self) -> String {
        match self {
            Refusal::ProcessGone
            | Refusal::SiteGone
            | Refusal::ReadsReturnAddress
            | Refusal::OwnBreakpoint
            | Refusal::UnknownUnwinder
            | Refusal::ReturnStringTooLong
            | Refusal::CapturesTooLong
            | Refusal::NoModule
            | Refusal::NoSymbol
            | Refusal::SizeUnknown
            | Refusal::FunctionTooLarge
            | Refusal::LandingPads
            | Refusal::FunctionBeginsInside
            | Refusal::BreakpointInside
            | Refusal::JumpOverlaps
            | Refusal::Suspended
            | Refusal::ChildWithoutRing
            | Refusal::PatchedAfterFork => self.to_string(),
            Refusal::Patch(why) => why.general(),
            Refusal::NoFill(why) => {
                format!("{}, and no padding is near for a short jump", why.general())
            }
            Refusal::CodeRefInto { whose, .. } => {
                let whose = whose
                    .as_ref()
                    .map(|(name, off)| elide(&format!(" ({name}+{off:#x})")))
                    .unwrap_or_default();
                format!("code at …{whose} jumps to …, inside the bytes a jump would replace")
            }
            Refusal::NoStub(_)
            | Refusal::Handler(_)
            | Refusal::CodeUnreadable(_)
            | Refusal::RingCorrupt(_)
            | Refusal::NoInjection(_)
            | Refusal::NoRing(_)
            | Refusal::Failed(_) => elide(&self.to_string()),
        }
    }
}

/// Text rtrace did not compose (an error's, a handler's, a name) without
/// what may differ from one site to the next: a quoted part becomes `'…'`,
/// a hexadecimal number `…`, and a parenthesized `function+offset` goes.
fn elide(why: &str) -> String {
    let mut out = String::with_capacity(why.len());
    let mut rest = why;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            if let Some(end) = rest[1..].find('\'') {
                out.push_str("'…'");
                rest = &rest[end + 2..];
                continue;
            }
        }
        if rest.starts_with("0x") {
            let hex = rest[2..]
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(rest.len() - 2);
            out.push('…');
            rest = &rest[2 + hex..];
            continue;
        }
        if rest.starts_with(" (") && !rest.starts_with(" ('") {
            if let Some(end) = rest.find(')') {
                if rest[..end].contains('+') {
                    rest = &rest[end + 1..];
                    continue;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reason says the same for one site as its text did, and the
    /// same for a glob's many sites as that text had its instruction,
    /// addresses and `function+offset` taken out.
    fn says(why: Refusal, one: &str, many: &str) {
        assert_eq!(why.to_string(), one);
        assert_eq!(why.general(), many);
        assert_eq!(elide(one), many, "as the text was grouped");
    }

    #[test]
    fn reasons_of_many_sites_are_grouped_by_what_refused_them() {
        says(
            Refusal::Patch(PatchRefusal::IndirectJump {
                insn: "jmp rax".into(),
                at: 0x7ff98328a7b4,
            }),
            "the function jumps indirectly ('jmp rax' at 0x7ff98328a7b4): a jump \
             table could land inside the bytes a jump would replace",
            "the function jumps indirectly ('…' at …): a jump table could land inside \
             the bytes a jump would replace",
        );
        says(
            Refusal::Patch(PatchRefusal::Displaced {
                insn: "call 00007F2710DC8690h".into(),
                why: "is a call (its return address would point into the detour)",
            }),
            "'call 00007F2710DC8690h' is a call (its return address would point into the detour)",
            "'…' is a call (its return address would point into the detour)",
        );
        says(
            Refusal::CodeRefInto {
                at: 0x7fdc4327c7c6,
                whose: Some(("__mempcpy_avx512_unaligned_erms".into(), 6)),
                to: 0x7fdc4327c803,
            },
            "code at 0x7fdc4327c7c6 (__mempcpy_avx512_unaligned_erms+0x6) jumps to \
             0x7fdc4327c803, inside the bytes a jump would replace",
            "code at … jumps to …, inside the bytes a jump would replace",
        );
        for why in [
            PatchRefusal::JumpsInto {
                insn: "jne 0000000000401137h".into(),
                at: 0x40114a,
            },
            PatchRefusal::TakesAddress {
                insn: "lea rax,[401137h]".into(),
                at: 0x401130,
            },
            PatchRefusal::UndecodableAt { at: 0x401140 },
            PatchRefusal::TooShort { have: 3 },
            PatchRefusal::OutsideFunction,
        ] {
            let one = why.to_string();
            says(Refusal::Patch(why), &one, &elide(&one));
        }
        says(
            Refusal::NoRing("it failed".into()),
            "no ring: it failed",
            "no ring: it failed",
        );
    }
}
