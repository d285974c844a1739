//! Demangled names: Rust (legacy `_ZN…17h<hash>E` and v0 `_R…`) and C++ (Itanium
//! `_Z…`), for showing functions by the name their source gives them and for
//! matching probe specs written that way.
//!
//! Owns the naming rules only; which symbols exist is `elf`'s business and which
//! one a spec picks is `resolve`'s. Symbol names come from arbitrary files, so a
//! name that does not demangle (or demangles into nonsense) is simply left alone.
//!
//! For each mangled name there are up to three forms a spec may use:
//!
//! | form | Rust | C++ |
//! | --- | --- | --- |
//! | `display` (shown in output) | `myapp::parse` | `ns::Class::method(int) const` |
//! | `full` | `myapp::parse::h0123456789abcdef` | same as `display` |
//! | `base` | `myapp::parse` | `ns::Class::method` (no parameters, no return type) |
//!
//! The mangled name itself always matches too.

/// The demangled forms of one mangled symbol name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demangled {
    /// What output shows: C++ with its parameter list, Rust without its hash.
    pub display: String,
    /// The complete demangling: C++ as `display`, Rust with the hash
    /// (legacy `::h…`) or crate disambiguators (v0 `[…]`).
    pub full: String,
    /// The name alone: C++ without parameters or return type, Rust without hash.
    pub base: String,
}

impl Demangled {
    /// True when `name` is one of the demangled forms.
    pub fn is(&self, name: &str) -> bool {
        self.display == name || self.full == name || self.base == name
    }

    /// True when the glob `pattern` matches one of the demangled forms.
    pub fn matches_glob(&self, pattern: &str) -> bool {
        super::glob::matches(pattern, &self.base)
            || super::glob::matches(pattern, &self.display)
            || super::glob::matches(pattern, &self.full)
    }
}

/// The demangled forms of `name`, or None when it is not a Rust or C++ mangled
/// name (a C function, a mangled name that does not parse).
///
/// Rust is tried first: legacy Rust symbols are valid Itanium names too, and a
/// C++ demangler would show their hash as a path component.
pub fn demangle(name: &str) -> Option<Demangled> {
    // Cheap refusal for the common case (C names), before any parsing.
    if !(name.starts_with("_Z") || name.starts_with("_R") || name.starts_with("__Z")) {
        return None;
    }
    rust(name).or_else(|| cpp(name))
}

fn rust(name: &str) -> Option<Demangled> {
    let d = rustc_demangle::try_demangle(name).ok()?;
    let full = format!("{d}");
    let base = format!("{d:#}");
    // rustc-demangle takes any `_ZN…E` as legacy Rust; only names that carry the
    // `h<16 hex digits>` hash (or are v0) are really Rust's.
    if name.starts_with("_Z") && full == base {
        return None;
    }
    Some(Demangled {
        display: base.clone(),
        full,
        base,
    })
}

fn cpp(name: &str) -> Option<Demangled> {
    use cpp_demangle::{DemangleOptions, Symbol};
    let sym = Symbol::new(name.as_bytes()).ok()?;
    let full = sym.demangle().ok()?;
    let base = sym
        .demangle_with_options(&DemangleOptions::new().no_params().no_return_type())
        .ok()?;
    if full.is_empty() || base.is_empty() {
        return None;
    }
    Some(Demangled {
        display: full.clone(),
        full,
        base,
    })
}

/// The name output shows for the symbol `name`: demangled when it is mangled.
pub fn display_name(name: &str) -> String {
    demangle(name).map_or_else(|| name.to_string(), |d| d.display)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(name: &str) -> (String, String, String) {
        let d = demangle(name).unwrap_or_else(|| panic!("{name} should demangle"));
        (d.display, d.full, d.base)
    }

    #[test]
    fn cpp_names() {
        assert_eq!(
            forms("_Z5inneri"),
            ("inner(int)".into(), "inner(int)".into(), "inner".into())
        );
        assert_eq!(
            forms("_ZN2ns5Class6methodEi"),
            (
                "ns::Class::method(int)".into(),
                "ns::Class::method(int)".into(),
                "ns::Class::method".into()
            )
        );
        let d = demangle("_ZNK2ns5Class4peekEv").unwrap();
        assert_eq!(d.display, "ns::Class::peek() const");
        assert_eq!(d.base, "ns::Class::peek");
        // A template with its return type: the base drops it.
        let d = demangle("_Z3maxIiET_S0_S0_").unwrap();
        assert_eq!(d.base, "max<int>");
        assert!(d.display.contains("max<int>(int, int)"), "{d:?}");
    }

    #[test]
    fn rust_legacy_and_v0() {
        let legacy = "_ZN5myapp5parse17h0123456789abcdefE";
        assert_eq!(
            forms(legacy),
            (
                "myapp::parse".into(),
                "myapp::parse::h0123456789abcdef".into(),
                "myapp::parse".into()
            )
        );
        // v0: `myapp::parse` in crate `myapp` with disambiguator.
        let v0 = "_RNvCs1234_5myapp5parse";
        let d = demangle(v0).expect("v0 demangles");
        assert_eq!(d.display, "myapp::parse");
        assert!(d.full.starts_with("myapp["), "{d:?}");
        assert!(d.is("myapp::parse"));
    }

    #[test]
    fn c_names_and_junk_are_left_alone() {
        for name in [
            "main",
            "strlen",
            "_start",
            "__libc_start_main",
            "_Z",
            "_Zjunk",
            "_R",
        ] {
            assert_eq!(demangle(name), None, "{name}");
            assert_eq!(display_name(name), name);
        }
        assert_eq!(display_name("_Z5inneri"), "inner(int)");
    }

    #[test]
    fn matching() {
        let d = demangle("_ZN2ns5Class6methodEi").unwrap();
        assert!(d.is("ns::Class::method"));
        assert!(d.is("ns::Class::method(int)"));
        assert!(!d.is("method"));
        assert!(!d.is("ns::Class"));
        assert!(d.matches_glob("ns::*"));
        assert!(d.matches_glob("*::method"));
        assert!(d.matches_glob("ns::Class::method(*)"));
        assert!(!d.matches_glob("other::*"));
        let r = demangle("_ZN5myapp5parse17h0123456789abcdefE").unwrap();
        assert!(r.is("myapp::parse"));
        assert!(r.is("myapp::parse::h0123456789abcdef"));
        assert!(r.matches_glob("myapp::*"));
    }
}
