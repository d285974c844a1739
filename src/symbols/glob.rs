//! Shell-style globs.

/// True when `s` contains a glob metacharacter (`*` or `?`).
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Matches `text` against `pattern` (`*` any run, `?` one character).
pub fn matches(pattern: &str, text: &str) -> bool {
    todo!("{pattern}{text}")
}
