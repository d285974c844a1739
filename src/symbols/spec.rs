//! Probe spec parsing: the text a user gives to `-s` becomes a [`ProbeSpec`].
//!
//! Owns the grammar only (the README's "Probe specs"). It looks nothing up: whether the
//! module is loaded or the function exists is decided by `resolve`, against a
//! module map.
use std::str::FromStr;

use super::glob::is_glob;
use crate::error::{Error, Result};

/// What a probe spec points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A function by name, or every function matching a glob (`*`, `?`).
    Function {
        /// The name or glob.
        name: String,
    },
    /// An instruction at `offset` bytes into `function` (entry-only).
    Offset {
        /// The function.
        function: String,
        /// Bytes from its first instruction.
        offset: u64,
    },
    /// An address: absolute when the spec names no module, else a link-time address
    /// in that module (as `nm` and `objdump` print it).
    Address {
        /// The address.
        addr: u64,
    },
    /// The first instruction of a source line.
    Line {
        /// The source file as given (matched against the end of DWARF file paths).
        file: String,
        /// The line number.
        line: u32,
    },
}

/// A parsed probe spec. See the README's "Probe specs".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    text: String,
    /// The module qualifier: a file name prefix (`libc`) or an absolute path.
    pub module: Option<String>,
    /// What the spec points at.
    pub target: Target,
}

impl ProbeSpec {
    /// The spec exactly as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for function probes, which report entry and return.
    pub fn is_function(&self) -> bool {
        matches!(self.target, Target::Function { .. })
    }

    /// True for a glob over function names (`str*`, `libc:*`): functions it
    /// matches that cannot be probed are skipped (and reported), not an error.
    pub fn is_glob(&self) -> bool {
        matches!(&self.target, Target::Function { name } if is_glob(name))
    }
}

impl FromStr for ProbeSpec {
    type Err = Error;

    /// Parses a spec as the README's "Probe specs" describes it:
    ///
    /// ```text
    /// spec    := [module ':'] target | file ':' line
    /// target  := name | glob | name '+' number | '0x' hex
    /// ```
    ///
    /// The module separator is a single `:` that is not part of a `::`, so C++ names
    /// (`ns::Class::method`, `libfoo:ns::f`) keep their scope operators. When there
    /// are several single colons the last one separates, because a path may contain
    /// a colon but a function name never contains a lone one. `X:N` with `N` all
    /// decimal digits is a source line, never a module-relative address (those are
    /// hex, `count:0x1139`, as `nm` prints them).
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidSpec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("the spec is empty"));
        }
        // Whitespace is part of a C++ name only inside or after its parameter
        // or template list (`ns::f(int, char)`, `C::k() const`).
        let list = s.find(['(', '<']).unwrap_or(s.len());
        if s[..list].contains(char::is_whitespace)
            || s.starts_with(char::is_whitespace)
            || s.ends_with(char::is_whitespace)
        {
            return Err(invalid("the spec contains whitespace"));
        }
        let (module, rest) = match module_separator(s) {
            Some(i) => (Some(&s[..i]), &s[i + 1..]),
            None => (None, s),
        };
        if let Some(module) = module {
            if module.is_empty() {
                return Err(invalid("the module before ':' is empty"));
            }
            if rest.is_empty() {
                return Err(invalid("nothing follows the module's ':'"));
            }
            // `count.c:12`: a source line. The part before ':' is a file, not a module.
            if rest.bytes().all(|b| b.is_ascii_digit()) {
                let line = rest
                    .parse::<u32>()
                    .map_err(|_| invalid("the line number is too large"))?;
                if line == 0 {
                    return Err(invalid("line numbers start at 1"));
                }
                return Ok(ProbeSpec {
                    text: s.to_string(),
                    module: None,
                    target: Target::Line {
                        file: module.to_string(),
                        line,
                    },
                });
            }
            if is_glob(module) {
                return Err(invalid(
                    "a module cannot be a glob; name it by file name or absolute path",
                ));
            }
        }
        let target = parse_target(s, rest)?;
        Ok(ProbeSpec {
            text: s.to_string(),
            module: module.map(str::to_string),
            target,
        })
    }
}

/// The byte index of the `:` separating a module from the target: the last colon
/// that is neither preceded nor followed by another colon.
fn module_separator(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).rev().find(|&i| {
        b.get(i) == Some(&b':')
            && (i == 0 || b.get(i - 1) != Some(&b':'))
            && b.get(i + 1) != Some(&b':')
    })
}

/// Parses what follows the module (if any): an address, `name+offset`, a name or a
/// glob; `spec` is the whole spec, for the error.
fn parse_target(spec: &str, t: &str) -> Result<Target> {
    let invalid = |reason: String| invalid_spec(spec, reason);
    if t.starts_with(|c: char| c.is_ascii_digit()) {
        // A symbol name never starts with a digit: this is an address.
        let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) else {
            return Err(invalid(format!(
                "{t:?} is neither a name nor an address; write addresses in hex (0x401136)"
            )));
        };
        let addr =
            parse_hex(hex).ok_or_else(|| invalid(format!("{t:?} is not a valid hex address")))?;
        return Ok(Target::Address { addr });
    }
    if let Some((function, offset)) = t.rsplit_once('+') {
        if function.is_empty() {
            return Err(invalid("the function before '+' is empty".into()));
        }
        if is_glob(function) {
            return Err(invalid(
                "an offset applies to one function, not a glob".into(),
            ));
        }
        check_name(spec, function)?;
        let offset = parse_number(offset)
            .ok_or_else(|| invalid(format!("{offset:?} is not an offset (0x8 or 8)")))?;
        return Ok(Target::Offset {
            function: function.to_string(),
            offset,
        });
    }
    check_name(spec, t)?;
    Ok(Target::Function {
        name: t.to_string(),
    })
}

/// Refuses names that cannot be a symbol: empty, or with a colon that is not part
/// of a C++ `::`; `spec` is the whole spec, for the error.
fn check_name(spec: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid_spec(spec, "the function name is empty".into()));
    }
    if name.split("::").any(|part| part.contains(':')) {
        return Err(invalid_spec(spec, format!("stray ':' in {name:?}")));
    }
    Ok(())
}

/// The error of spec `spec`, refused for `reason`.
fn invalid_spec(spec: &str, reason: String) -> Error {
    Error::InvalidSpec {
        spec: spec.to_string(),
        reason,
    }
}

/// `0x1f` or `31`.
fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => parse_hex(hex),
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

/// Hex digits only (no sign, no prefix, not empty), as `u64`.
fn parse_hex(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ProbeSpec {
        match s.parse::<ProbeSpec>() {
            Ok(spec) => spec,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn function(module: Option<&str>, name: &str) -> (Option<String>, Target) {
        (
            module.map(str::to_string),
            Target::Function {
                name: name.to_string(),
            },
        )
    }

    fn parts(s: &str) -> (Option<String>, Target) {
        let spec = parse(s);
        assert_eq!(spec.as_str(), s, "the text is kept as given");
        (spec.module, spec.target)
    }

    /// The reason of a refused spec, checking that the spec text is carried.
    fn refused(s: &str) -> String {
        match s.parse::<ProbeSpec>() {
            Ok(spec) => panic!("{s:?} should be refused, got {spec:?}"),
            Err(Error::InvalidSpec { spec, reason }) => {
                assert_eq!(spec, s);
                assert!(!reason.is_empty());
                reason
            }
            Err(e) => panic!("{s:?}: unexpected error {e:?}"),
        }
    }

    #[test]
    fn plain_function() {
        assert_eq!(parts("openat"), function(None, "openat"));
        assert!(parse("openat").is_function());
        assert_eq!(parts("_start"), function(None, "_start"));
    }

    #[test]
    fn qualified_function() {
        assert_eq!(parts("libc:openat"), function(Some("libc"), "openat"));
        assert_eq!(
            parts("/usr/lib/x86_64-linux-gnu/libc.so.6:openat"),
            function(Some("/usr/lib/x86_64-linux-gnu/libc.so.6"), "openat")
        );
        assert_eq!(
            parts("ld-linux-x86-64.so.2:_dl_debug_state"),
            function(Some("ld-linux-x86-64.so.2"), "_dl_debug_state")
        );
    }

    #[test]
    fn globs() {
        assert_eq!(parts("str*"), function(None, "str*"));
        assert_eq!(parts("libc:mem?py"), function(Some("libc"), "mem?py"));
        assert!(parse("str*").is_function());
        assert!(parse("libc:*").is_glob());
        assert!(!parse("strlen").is_glob());
    }

    #[test]
    fn offsets() {
        let off = |f: &str, o: u64| Target::Offset {
            function: f.to_string(),
            offset: o,
        };
        assert_eq!(parts("work+0x8"), (None, off("work", 8)));
        assert_eq!(parts("work+8"), (None, off("work", 8)));
        assert_eq!(parts("work+0X1f"), (None, off("work", 0x1f)));
        assert_eq!(parts("work+0"), (None, off("work", 0)));
        assert_eq!(
            parts("libc:openat+4"),
            (Some("libc".into()), off("openat", 4))
        );
        assert!(!parse("work+8").is_function());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parts("0x401136"),
            (None, Target::Address { addr: 0x401136 })
        );
        assert_eq!(
            parts("count:0x1139"),
            (Some("count".into()), Target::Address { addr: 0x1139 })
        );
        assert_eq!(
            parts("0xffffffffffffffff"),
            (None, Target::Address { addr: u64::MAX })
        );
        assert!(!parse("0x401136").is_function());
    }

    #[test]
    fn lines() {
        let line = |f: &str, l: u32| Target::Line {
            file: f.to_string(),
            line: l,
        };
        assert_eq!(parts("count.c:12"), (None, line("count.c", 12)));
        assert_eq!(
            parts("src/fixtures/count.c:7"),
            (None, line("src/fixtures/count.c", 7))
        );
        // All digits after the colon: a line, even without an extension.
        assert_eq!(parts("count:1139"), (None, line("count", 1139)));
        assert!(!parse("count.c:12").is_function());
    }

    #[test]
    fn cpp_scopes_stay_in_the_name() {
        assert_eq!(
            parts("ns::Class::method"),
            function(None, "ns::Class::method")
        );
        assert_eq!(parts("libfoo:ns::f"), function(Some("libfoo"), "ns::f"));
        assert_eq!(parts("::f"), function(None, "::f"));
        assert_eq!(
            parts("ns::f+0x4"),
            (
                None,
                Target::Offset {
                    function: "ns::f".into(),
                    offset: 4
                }
            )
        );
        assert_eq!(parts("ns::*"), function(None, "ns::*"));
        // Demangled names with parameter lists and qualifiers.
        assert_eq!(
            parts("ns::f(int, char)"),
            function(None, "ns::f(int, char)")
        );
        assert_eq!(
            parts("app:ns::C::k() const"),
            function(Some("app"), "ns::C::k() const")
        );
    }

    #[test]
    fn errors() {
        assert!(refused("").contains("empty"));
        assert!(refused(":openat").contains("module"));
        assert!(refused("libc:").contains("follows"));
        assert!(refused("+8").contains("empty"));
        assert!(refused("libc:+8").contains("empty"));
        assert!(refused("work+").contains("offset"));
        assert!(refused("work+0x").contains("offset"));
        assert!(refused("work+zz").contains("offset"));
        assert!(refused("work+-8").contains("offset"));
        assert!(refused("work+99999999999999999999999").contains("offset"));
        assert!(refused("count.c:0").contains("line"));
        assert!(refused("count.c:99999999999").contains("line"));
        assert!(refused(" openat").contains("whitespace"));
        assert!(refused("openat ").contains("whitespace"));
        assert!(refused("libc: openat").contains("whitespace"));
        assert!(refused("lib c:openat").contains("whitespace"));
        assert!(refused("open\tat").contains("whitespace"));
        assert!(refused("f(int) ").contains("whitespace"));
        assert!(refused("ns ::f(int)").contains("whitespace"));
        assert!(refused("str*+8").contains("glob"));
        assert!(refused("mem?py+0x4").contains("glob"));
        assert!(refused("0x").contains("hex"));
        assert!(refused("0xzz").contains("hex"));
        assert!(refused("0x10000000000000000").contains("hex"));
        assert!(refused("4198710").contains("hex"));
        assert!(refused("lib*:f").contains("glob"));
        assert!(refused("a:::b").contains("':'"));
    }
}
