//! Shell-style globs (`*` and `?`) for function-name patterns.
//!
//! Owns matching only; deciding what a pattern is matched against (which modules,
//! which symbols) is the resolver's job. Patterns come from the command line and
//! symbol names from arbitrary files, so matching must stay linear-ish on any input:
//! it never backtracks exponentially.

/// True when `s` contains a glob metacharacter (`*` or `?`).
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Matches `text` against `pattern` (`*` any run, `?` one character).
///
/// Characters are compared as Unicode scalar values, so `?` matches one character,
/// not one byte. Runs in O(len(pattern) × len(text)) in the worst case: the classic
/// iterative matcher that only ever remembers the most recent `*` (a later `*` can
/// absorb anything an earlier one could, so older ones never need revisiting).
pub fn matches(pattern: &str, text: &str) -> bool {
    let pat: Vec<char> = pattern.chars().collect();
    let txt: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index it
    // currently absorbs up to).
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        match pat.get(p) {
            Some('*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == txt[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` absorb one more character and retry from there.
                Some((sp, st)) => {
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    // The text is used up: what is left of the pattern must be all stars.
    pat.get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_globs() {
        assert!(is_glob("str*"));
        assert!(is_glob("mem?py"));
        assert!(!is_glob("openat"));
        assert!(!is_glob("ns::f"));
    }

    #[test]
    fn literal() {
        assert!(matches("openat", "openat"));
        assert!(!matches("openat", "openat64"));
        assert!(!matches("openat64", "openat"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(!matches("a", ""));
    }

    #[test]
    fn star() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("str*", "str"));
        assert!(matches("str*", "strlen"));
        assert!(!matches("str*", "memstr"));
        assert!(matches("*str", "memstr"));
        assert!(matches("*str*", "a_str_b"));
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("**", "x"));
        assert!(matches("a*", "a"));
        // The star must backtrack past a false partial match.
        assert!(matches("*aab", "aaab"));
        assert!(matches("*ab*ab", "abxabab"));
    }

    #[test]
    fn question_mark() {
        assert!(matches("mem?py", "memcpy"));
        assert!(!matches("mem?py", "memmove"));
        assert!(!matches("mem?py", "mempy"));
        assert!(matches("???", "abc"));
        assert!(!matches("???", "ab"));
        assert!(matches("?*", "a"));
        assert!(!matches("?*", ""));
        assert!(matches("?", "é"));
    }

    #[test]
    fn pathological_patterns_are_fast() {
        // Exponential in a naive recursive matcher; must be quick here.
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "a*".repeat(50));
        let start = std::time::Instant::now();
        assert!(!matches(&pattern, &text));
        assert!(matches(&"a*".repeat(50), &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
