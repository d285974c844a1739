//! Fault injection into functions: `--inject SPEC:retval=V[:errno=E][:when=W]`.
//!
//! [`InjectRule`] is the parsed option; [`Injector`] is the handler that
//! carries it out. At a chosen call the function is skipped, as
//! `bpf_override_return` skips a kernel function: the caller sees the function
//! return at once with the configured value, and glibc's `errno` of the
//! calling thread set to the configured error. The function's body does not
//! run, except its first instruction (below).
//!
//! How the skip is done. The engine executes the instruction displaced by the
//! breakpoint after the entry handlers, whatever they did to the registers, so
//! the skip cannot happen at entry. [`Injector::on_entry`] decides and keeps
//! the thread's registers at the entry; [`Injector::on_post`] (after the
//! displaced instruction, before the registers are written back) puts those
//! registers back and performs the `ret` the function would have: the return
//! value in the return register, the instruction pointer loaded from the
//! stack pointer, the stack pointer one word up. The word at the stack pointer
//! is whatever the engine left there (the trampoline when the return is
//! reported), so the return is seen exactly as a real one. Its registers are
//! undone, but what the displaced instruction wrote to memory stays written.
//! For a first instruction that is `endbr64`, `push`, `sub $n,%rsp` or a
//! register move (what compilers emit without optimisation, and in most
//! library functions) nothing is left: a push writes below the stack pointer,
//! which the caller does not use across a call. An optimised function whose
//! first instruction stores to memory (`movl $1, flag(%rip)`) keeps that one
//! store.
//!
//! `errno` is glibc's TLS variable: its address is the thread pointer
//! (`Regs::thread_pointer`: `fs_base`) plus a fixed offset, which the
//! dynamic linker wrote into libc's GOT at startup (the R_X86_64_TPOFF64
//! relocation libc's own `errno` accesses use). Where that slot is comes from libc's parsed file
//! (`ElfFile::tls_offset_slot`, its relocations read once per file); the
//! offset is read from the tracee at each injection.
//!
//! This module must not change anything in the tracee but the registers of the
//! thread it injects into and that thread's `errno`.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use crate::addr::{RuntimeAddr, Tid};
use crate::arch::{Regs, WORD};
use crate::error::{Error, Result};
use crate::handler::{Handler, Hit, ProbeKind, Return};
use crate::symbols::{ProbeSpec, Target};

/// Which calls of the function are injected (strace's `when=`), counted from 1
/// over every thread of the traced processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// `when=N+S` (`N+` is `N+1`; no `when` is `1+1`): the Nth call, then every
    /// Sth after it.
    From {
        /// The first injected call.
        first: u64,
        /// The distance between injected calls.
        step: u64,
    },
    /// `when=N`: the Nth call only.
    Only(u64),
    /// `when=N..M`: calls N to M, both included.
    Range {
        /// The first injected call.
        first: u64,
        /// The last injected call.
        last: u64,
    },
}

impl When {
    /// True when call number `n` (from 1) is injected.
    pub fn matches(self, n: u64) -> bool {
        match self {
            When::From { first, step } => n >= first && (n - first).is_multiple_of(step),
            When::Only(first) => n == first,
            When::Range { first, last } => (first..=last).contains(&n),
        }
    }
}

impl FromStr for When {
    type Err = Error;

    fn from_str(s: &str) -> Result<When> {
        let num = |t: &str| -> Result<u64> {
            match t.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(invalid(format!(
                    "invalid when={s}: expected N, N+, N+STEP or N..M with numbers from 1"
                ))),
            }
        };
        if let Some((a, b)) = s.split_once("..") {
            let (first, last) = (num(a)?, num(b)?);
            if last < first {
                return Err(invalid(format!(
                    "invalid when={s}: the range ends before it starts"
                )));
            }
            return Ok(When::Range { first, last });
        }
        if let Some((a, b)) = s.split_once('+') {
            let step = if b.is_empty() { 1 } else { num(b)? };
            return Ok(When::From {
                first: num(a)?,
                step,
            });
        }
        Ok(When::Only(num(s)?))
    }
}

/// The error of an `--inject` rule refused for `reason`.
fn invalid(reason: String) -> Error {
    Error::InvalidValue {
        option: "--inject",
        reason,
    }
}

/// One `--inject` option, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectRule {
    /// The function to inject into, as given.
    pub spec: ProbeSpec,
    /// The spec text (`libc:openat`).
    pub spec_text: String,
    /// The value the caller gets.
    pub retval: i64,
    /// The error number set in `errno`, if any.
    pub errno: Option<i32>,
    /// Which calls.
    pub when: When,
}

/// The number of an errno name (`ENOENT`), or of a number (`2`).
fn errno_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..4096).contains(&n).then_some(n);
    }
    (1..4096).find(|&n| {
        let e = nix::errno::Errno::from_raw(n);
        e != nix::errno::Errno::UnknownErrno && format!("{e:?}") == s
    })
}

/// The name of an error number (`ENOENT`), or the number itself.
pub fn errno_name(n: i32) -> String {
    match nix::errno::Errno::from_raw(n) {
        nix::errno::Errno::UnknownErrno => n.to_string(),
        e => format!("{e:?}"),
    }
}

impl FromStr for InjectRule {
    type Err = Error;

    /// `SPEC:retval=V[:errno=E][:when=W]`. The spec may contain `:` itself
    /// (`libc:openat`), so the `key=value` fields are taken from the right.
    fn from_str(s: &str) -> Result<InjectRule> {
        let mut rest = s;
        let (mut retval, mut errno, mut when) = (None, None, None);
        while let Some((head, field)) = rest.rsplit_once(':') {
            let Some((key, value)) = field.split_once('=') else {
                break;
            };
            match key {
                "retval" => {
                    let v = parse_i64(value).ok_or_else(|| {
                        invalid(format!("invalid retval={value}: expected an integer"))
                    })?;
                    if retval.replace(v).is_some() {
                        return Err(invalid("retval= is given twice".to_string()));
                    }
                }
                "errno" => {
                    let e = errno_number(value).ok_or_else(|| {
                        invalid(format!(
                            "invalid errno={value}: expected a name like ENOENT or a number"
                        ))
                    })?;
                    if errno.replace(e).is_some() {
                        return Err(invalid("errno= is given twice".to_string()));
                    }
                }
                "when" => {
                    if when.replace(value.parse::<When>()?).is_some() {
                        return Err(invalid("when= is given twice".to_string()));
                    }
                }
                _ => break,
            }
            rest = head;
        }
        if rest.is_empty() || rest.contains('=') {
            return Err(invalid(
                "expected SPEC:retval=VALUE[:errno=E][:when=W]".to_string(),
            ));
        }
        let Some(retval) = retval else {
            return Err(invalid("retval=VALUE is missing".to_string()));
        };
        let spec = rest.parse::<ProbeSpec>()?;
        // Said now, before anything runs: a return value is given at a
        // function's entry, not in the middle of its code.
        match spec.target {
            Target::Function { .. } => {}
            Target::Offset { .. } | Target::Address { .. } | Target::Line { .. } => {
                return Err(invalid(format!(
                    "{rest} is an instruction probe; only a function's entry can be \
                     injected (give the function's name)"
                )))
            }
        }
        Ok(InjectRule {
            spec,
            spec_text: rest.to_string(),
            retval,
            errno,
            when: when.unwrap_or(When::From { first: 1, step: 1 }),
        })
    }
}

/// `-1`, `42`, `0x10`, `-0x10`.
fn parse_i64(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let v = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    if neg {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok().or(Some(v as i64))
    }
}

/// What a return reported as injected carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The error number set in `errno`, if any.
    pub errno: Option<i32>,
}

/// The handler of one [`InjectRule`]. Attach it to the rule's spec with
/// `Tracer::add_probe`; ask [`Injector::take_injected`] at each return which
/// calls it skipped.
pub struct Injector {
    rule: InjectRule,
    calls: u64,
    /// Entry registers of the threads whose current call is injected, from
    /// `on_entry` to `on_post` of the same hit.
    entering: HashMap<Tid, Regs>,
    /// (thread, stack pointer after the return) of the calls skipped whose
    /// return has not been seen yet.
    skipped: HashSet<(Tid, u64)>,
}

impl Injector {
    /// A handler injecting `rule`.
    pub fn new(rule: InjectRule) -> Injector {
        Injector {
            rule,
            calls: 0,
            entering: HashMap::new(),
            skipped: HashSet::new(),
        }
    }

    /// The rule.
    pub fn rule(&self) -> &InjectRule {
        &self.rule
    }

    /// True when the call returning in `ret` was skipped by this injector
    /// (forgotten after it is asked).
    pub fn take_injected(&mut self, ret: &Return<'_>) -> Option<Injected> {
        self.skipped
            .remove(&(ret.tid(), ret.regs().sp()))
            .then_some(Injected {
                errno: self.rule.errno,
            })
    }

    /// Sets glibc's `errno` of the thread of `hit` (stopped) to `errno`.
    fn set_errno(&self, hit: &Hit<'_>, errno: i32) -> Result<()> {
        let Some(libc) = hit.modules.modules().iter().find(|m| m.matches("libc")) else {
            return Err(Error::Handler(
                "--inject errno=: no libc is loaded in the process to hold errno".into(),
            ));
        };
        let Some(slot) = libc.elf.tls_offset_slot("errno") else {
            return Err(Error::Handler(format!(
                "--inject errno=: cannot locate errno in {} (no R_X86_64_TPOFF64 for its TLS symbol errno)",
                libc.path.display()
            )));
        };
        let mem = hit
            .mem
            .live()
            .ok_or_else(|| Error::Handler("--inject: a fast hit has no live thread".into()))?;
        let tpoff = mem.read_u64(libc.to_runtime(slot))?;
        let addr = hit.regs().thread_pointer().wrapping_add(tpoff);
        mem.write(RuntimeAddr(addr), &errno.to_le_bytes())
    }
}

impl Handler for Injector {
    /// Counts the call and, when it is one to inject, keeps the entry registers.
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let site = hit.site();
        if !matches!(site.kind, ProbeKind::Function { .. }) || site.offset != 0 {
            return Err(Error::Handler(format!(
                "--inject {}: only a function's entry can be injected",
                self.rule.spec_text
            )));
        }
        // An entry kept for a hit that never reached `on_post` (its
        // instruction faulted) must not be applied to this one.
        self.entering.remove(&hit.tid());
        self.calls += 1;
        if self.rule.when.matches(self.calls) {
            self.entering.insert(hit.tid(), *hit.regs());
        }
        Ok(())
    }

    /// The displaced instruction ran: back to the entry registers, and return.
    fn on_post(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let Some(mut regs) = self.entering.remove(&hit.tid()) else {
            return Ok(());
        };
        if let Some(e) = self.rule.errno {
            self.set_errno(hit, e)?;
        }
        let sp = regs.sp();
        let ret_addr = hit.read_u64(RuntimeAddr(sp))?;
        regs.set_retval(self.rule.retval as u64);
        regs.set_ip(ret_addr);
        regs.set_sp(sp + WORD);
        *hit.regs_mut() = regs;
        // Without a return probe no return comes to be marked.
        if hit.site().kind == (ProbeKind::Function { returns: true }) {
            self.skipped.insert((hit.tid(), sp + WORD));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_from_the_right() {
        let r: InjectRule = "libc:openat:retval=-1:errno=ENOENT:when=3+2"
            .parse()
            .unwrap();
        assert_eq!(r.spec_text, "libc:openat");
        assert_eq!(r.retval, -1);
        assert_eq!(r.errno, Some(libc::ENOENT));
        assert_eq!(r.when, When::From { first: 3, step: 2 });
        let r: InjectRule = "work:retval=42".parse().unwrap();
        assert_eq!(
            (r.spec_text.as_str(), r.retval, r.errno),
            ("work", 42, None)
        );
        assert_eq!(r.when, When::From { first: 1, step: 1 });
        let r: InjectRule = "open:when=2..3:errno=5:retval=0x10".parse().unwrap();
        assert_eq!(r.when, When::Range { first: 2, last: 3 });
        assert_eq!((r.retval, r.errno), (16, Some(5)));
    }

    #[test]
    fn refuses_bad_syntax() {
        for bad in [
            "openat",
            "openat:errno=ENOENT",
            "openat:retval=x",
            "openat:retval=-1:errno=ENOPE",
            "openat:retval=-1:when=0",
            "openat:retval=-1:when=3..2",
            "openat:retval=-1:when=a+",
            ":retval=1",
            "openat:retval=1:colour=red",
            "openat:retval=1:retval=2",
            "openat:errno=EIO:retval=1:errno=EIO",
            "openat:when=1:retval=1:when=2",
            "openat+0x4:retval=1",
            "0x401136:retval=1",
            "count.c:12:retval=1",
        ] {
            assert!(bad.parse::<InjectRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn when_matches_like_strace() {
        let hits = |w: &str| -> Vec<u64> {
            let w: When = w.parse().unwrap();
            (1..=8).filter(|&n| w.matches(n)).collect()
        };
        assert_eq!(hits("3+2"), [3, 5, 7]);
        assert_eq!(hits("2"), [2]);
        assert_eq!(hits("6+"), [6, 7, 8]);
        assert_eq!(hits("2..3"), [2, 3]);
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_number("EACCES"), Some(libc::EACCES));
        assert_eq!(errno_name(libc::ENOENT), "ENOENT");
    }
}
