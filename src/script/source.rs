//! Splitting a script's text into its blocks: `HEADER { BODY }`, where a
//! probe block's header may end with a bpftrace predicate, `work /arg(0) >
//! 10/ { … }`: the block runs only when it holds (its body becomes `if
//! (PRED) { BODY }`, on the same lines).
//!
//! The bodies are Rhai; this file only has to find where each ends, which
//! means skipping braces inside strings (`"…"`, `'…'`, and backtick templates
//! whose `${…}` holds code with braces of its own) and comments. Nothing here
//! evaluates anything.

/// What a block is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    /// `BEGIN`: once, before tracing starts.
    Begin,
    /// `END`: once, when tracing is over.
    End,
    /// `SPEC`: at each hit (a function's entry).
    Entry(String),
    /// `SPEC:return`: when a call entered through the probe returns.
    Return(String),
}

/// One block of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// What it runs on.
    pub header: Header,
    /// The Rhai code between the braces.
    pub body: String,
    /// The line of the script the body starts on (from 1).
    pub line: usize,
}

/// A script that cannot be split, with the line where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// From 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Splits `text` into blocks, in order.
pub fn blocks(text: &str) -> Result<Vec<Block>, SyntaxError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // A `#!` first line is an interpreter line, as in a bpftrace script.
    if text.starts_with("#!") {
        i = text.find('\n').unwrap_or(text.len());
    }
    loop {
        i = skip_space_and_comments(b, i)?;
        if i >= b.len() {
            return Ok(out);
        }
        let header_start = i;
        while i < b.len() && b[i] != b'{' && b[i] != b'}' && b[i] != b'\n' {
            i += 1;
        }
        let header_line = line_at(b, header_start);
        if i < b.len() && b[i] == b'}' && i == header_start {
            return Err(SyntaxError {
                line: header_line,
                message: "this `}` closes no block".into(),
            });
        }
        if i >= b.len() || b[i] != b'{' {
            let found = String::from_utf8_lossy(&b[header_start..i])
                .trim()
                .to_string();
            return Err(SyntaxError {
                line: header_line,
                message: format!(
                    "expected `{found} {{ … }}`: a probe spec, BEGIN or END, then a block"
                ),
            });
        }
        let (spec, predicate) = predicate(text[header_start..i].trim());
        let header = parse_header(spec, header_line)?;
        let body_start = i + 1;
        let body_end = block_end(b, body_start)?;
        let body = &text[body_start..body_end];
        let body = match predicate {
            Some(p) if matches!(header, Header::Begin | Header::End) => {
                return Err(SyntaxError {
                    line: header_line,
                    message: format!("BEGIN and END take no predicate (/{p}/)"),
                })
            }
            Some(p) if p.trim().is_empty() => {
                return Err(SyntaxError {
                    line: header_line,
                    message: "an empty predicate (//)".into(),
                })
            }
            Some(p) => format!("if ({p}) {{{body}}}"),
            None => body.to_string(),
        };
        out.push(Block {
            header,
            body,
            line: line_at(b, body_start),
        });
        i = body_end + 1;
    }
}

/// A header's spec and its predicate, if it ends with one: `work /arg(0) >
/// 1/` is `work` and `arg(0) > 1`. The predicate starts at the first `/`
/// after a space (a spec's own `/`s, a module's path, come before any
/// space) and ends at the header's last `/`.
fn predicate(h: &str) -> (&str, Option<&str>) {
    if !h.ends_with('/') {
        return (h, None);
    }
    match h.find(|c: char| c.is_whitespace()) {
        Some(space) => match h[space..].find('/') {
            Some(at) if space + at < h.len() - 1 => {
                let start = space + at;
                (h[..start].trim_end(), Some(&h[start + 1..h.len() - 1]))
            }
            _ => (h, None),
        },
        None => (h, None),
    }
}

fn parse_header(h: &str, line: usize) -> Result<Header, SyntaxError> {
    let err = |message: String| SyntaxError { line, message };
    match h {
        "" => Err(err(
            "a block needs a probe spec, BEGIN or END before its `{`".into(),
        )),
        "BEGIN" => Ok(Header::Begin),
        "END" => Ok(Header::End),
        _ => match h.strip_suffix(":return") {
            Some("") => Err(err("`:return` needs a probe spec before it".into())),
            Some(spec) => Ok(Header::Return(spec.trim_end().to_string())),
            None => Ok(Header::Entry(h.to_string())),
        },
    }
}

/// The line of byte `at`, from 1.
pub(crate) fn line_at(b: &[u8], at: usize) -> usize {
    1 + b[..at.min(b.len())].iter().filter(|&&c| c == b'\n').count()
}

fn skip_space_and_comments(b: &[u8], mut i: usize) -> Result<usize, SyntaxError> {
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match comment_end(b, i)? {
            Some(end) => i = end,
            None => return Ok(i),
        }
    }
}

/// If a comment starts at `i`, where it ends.
fn comment_end(b: &[u8], i: usize) -> Result<Option<usize>, SyntaxError> {
    if b.get(i) != Some(&b'/') {
        return Ok(None);
    }
    match b.get(i + 1) {
        Some(b'/') => Ok(Some(
            b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n),
        )),
        Some(b'*') => {
            // Rhai block comments nest.
            let mut depth = 0;
            let mut j = i;
            while j + 1 < b.len() {
                match (b[j], b[j + 1]) {
                    (b'/', b'*') => {
                        depth += 1;
                        j += 2;
                    }
                    (b'*', b'/') => {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            return Ok(Some(j));
                        }
                    }
                    _ => j += 1,
                }
            }
            Err(SyntaxError {
                line: line_at(b, i),
                message: "this comment is never closed (`*/`)".into(),
            })
        }
        _ => Ok(None),
    }
}

/// The index of the `}` closing a block whose body starts at `start`.
fn block_end(b: &[u8], start: usize) -> Result<usize, SyntaxError> {
    // What encloses the current position: a brace, or the `${` of a template.
    #[derive(PartialEq)]
    enum Open {
        Brace,
        Interpolation,
    }
    let mut stack = vec![Open::Brace];
    let mut i = start;
    let mut in_template = false;
    while i < b.len() {
        if in_template {
            match b[i] {
                b'\\' => i += 2,
                b'`' => {
                    in_template = false;
                    i += 1;
                }
                b'$' if b.get(i + 1) == Some(&b'{') => {
                    stack.push(Open::Interpolation);
                    in_template = false;
                    i += 2;
                }
                _ => i += 1,
            }
            continue;
        }
        if let Some(end) = comment_end(b, i)? {
            i = end;
            continue;
        }
        match b[i] {
            q @ (b'"' | b'\'') => i = quoted_end(b, i, q)?,
            b'`' => {
                in_template = true;
                i += 1;
            }
            b'{' => {
                stack.push(Open::Brace);
                i += 1;
            }
            b'}' => match stack.pop() {
                Some(Open::Interpolation) => {
                    in_template = true;
                    i += 1;
                }
                _ if stack.is_empty() => return Ok(i),
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    Err(SyntaxError {
        line: line_at(b, start),
        message: "this block is never closed (`}`)".into(),
    })
}

/// The index after the closing quote of a string or character starting at `i`.
fn quoted_end(b: &[u8], i: usize, quote: u8) -> Result<usize, SyntaxError> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            c if c == quote => return Ok(j + 1),
            b'\n' if quote == b'\'' => break,
            _ => j += 1,
        }
    }
    Err(SyntaxError {
        line: line_at(b, i),
        message: "this string is never closed".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(text: &str) -> Vec<Header> {
        blocks(text)
            .unwrap()
            .into_iter()
            .map(|b| b.header)
            .collect()
    }

    #[test]
    fn headers_and_bodies() {
        let text = "#!/usr/bin/rtrace\n// counts\nBEGIN { let n = 0; }\nlibc:openat {\n  count[str(arg(1))] += 1\n}\n\
                    work:return { hist(duration) }\n/* the end */ END { print(count) }\n";
        let b = blocks(text).unwrap();
        assert_eq!(
            b.iter().map(|b| b.header.clone()).collect::<Vec<_>>(),
            [
                Header::Begin,
                Header::Entry("libc:openat".into()),
                Header::Return("work".into()),
                Header::End
            ]
        );
        assert_eq!(b[1].body, "\n  count[str(arg(1))] += 1\n");
        assert_eq!(
            b.iter().map(|b| b.line).collect::<Vec<_>>(),
            [3, 4, 7, 8],
            "the line each body starts on"
        );
    }

    #[test]
    fn predicates_guard_their_bodies() {
        let b = blocks(
            "work /arg(0) > 10/ { n += 1 }
/lib/x.so:f:return /retval < 0/ {
x
}",
        )
        .unwrap();
        assert_eq!(b[0].header, Header::Entry("work".into()));
        assert_eq!(b[0].body, "if (arg(0) > 10) { n += 1 }");
        assert_eq!(b[1].header, Header::Return("/lib/x.so:f".into()));
        assert_eq!(b[1].body, "if (retval < 0) {\nx\n}");
        assert_eq!(b[1].line, 2);
        let e = blocks("END /x/ { }").unwrap_err();
        assert_eq!(e.message, "BEGIN and END take no predicate (/x/)");
    }

    #[test]
    fn braces_in_strings_templates_and_comments_do_not_count() {
        let text = r#"w { print("}"); print('}'); /* } */ // }
            print(`a ${ #{x: 1}.x } }`); if true { 1 } }
            ns::Class::peek() const { true }"#;
        let b = blocks(text).unwrap();
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b[0].body.ends_with("if true { 1 } "), "{:?}", b[0].body);
        assert_eq!(b[1].header, Header::Entry("ns::Class::peek() const".into()));
    }

    #[test]
    fn what_cannot_be_split_names_its_line() {
        let e = |t: &str| blocks(t).unwrap_err();
        assert_eq!(e("work { 1 \n").line, 1);
        assert!(e("work { 1 \n").message.contains("never closed"));
        assert_eq!(
            e("\n\nwork\n{ }").line,
            3,
            "the header must be on the brace's line"
        );
        assert_eq!(e("{ 1 }").line, 1);
        assert_eq!(e("w { \"abc }").message, "this string is never closed");
        assert_eq!(
            e(":return { 1 }").message,
            "`:return` needs a probe spec before it"
        );
        assert_eq!(
            e("{ 1 }").message,
            "a block needs a probe spec, BEGIN or END before its `{`"
        );
        assert_eq!(
            e("x { } /* open").message,
            "this comment is never closed (`*/`)"
        );
        assert_eq!(e("x { }\n }").line, 2);
        assert_eq!(e("x { } }").message, "this `}` closes no block");
        assert_eq!(headers("  \n// nothing\n"), []);
    }
}
