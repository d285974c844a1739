//! The script front end: splits a script's text into its blocks (`HEADER {
//! BODY }`), and translates each body from bpftrace's forms into the Rhai the
//! engine runs, laid out so that every position Rhai reports is the
//! script's own line and column.
//!
//! - A probe block's header may end with a predicate, `work /arg(0) > 10/ {
//!   … }`: the block becomes `if(_truthy(PRED)) { BODY }`, the `if(` written
//!   over the spec and the first slash, `_truthy(`, `))` and every other
//!   edit recorded, so positions map back. `_truthy` holds as bpftrace's
//!   predicates do: a non-zero number, a non-empty string, true.
//! - Maps carry bpftrace's sigil: `@name` (and `@` alone, the anonymous
//!   map) is the Rhai global `_m_name`, a table; indexed (`@c[k]`, `@c[a,
//!   b]`) it is that entry (`_m_c[[k]]`: the keys are an array), alone
//!   (`@n`) the table's entry of no key, `_m_n[()]`, but as the sole
//!   argument of `print`, `clear`, `zero` or `len`, or the first of
//!   `delete(@m, key)`, the table itself; bpftrace's `delete(@m[k])` is
//!   `delete(_m_m, [k])`. `@n++` and `@n--` are `+= 1` and
//!   `-= 1`.
//! - `ustack` without parentheses is `ustack()`.
//! - The older statement form `hist(x)` (a histogram named after the block)
//!   becomes `_block_hist(x)`; `@h = hist(x)` is the aggregation.
//!
//! Every edit that changes a line's length is recorded ([`Block::position`]
//! maps Rhai's positions back). Names starting with `_` are rtrace's own, so
//! a script cannot collide with them. The front end also lists what the
//! script names ([`Names`]): the maps, those assigned, the bare names
//! assigned without `let` (the deprecated maps), the locals, for the
//! compiler's errors and did-you-means. Nothing here evaluates anything.

use std::collections::BTreeSet;
use std::time::Duration;

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
    /// `interval:1s`, `interval:500ms`: every period while tracing.
    Interval(Duration),
}

/// One block of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// What it runs on.
    pub header: Header,
    /// The Rhai code: the body translated, after as many newlines and
    /// spaces as put it where it was in the script.
    pub code: String,
    /// The line of the block's header (from 1).
    pub line: usize,
    /// The column of the block's header (from 1, in characters).
    pub column: usize,
    /// The edits that changed a line's length, in order.
    edits: Vec<Edit>,
    /// The block uses `ustack`.
    pub ustack: bool,
}

impl Block {
    /// The script's line and column of Rhai's `line` and `column` in
    /// [`Block::code`].
    pub fn position(&self, line: usize, column: usize) -> (usize, usize) {
        let mut col = column;
        for e in self.edits.iter().filter(|e| e.line == line) {
            if column < e.out_start {
                break;
            }
            col = if column < e.out_end {
                e.orig_start
            } else {
                e.orig_end + (column - e.out_end)
            };
        }
        (line, col)
    }
}

/// A replacement in a block's code: columns `orig_start..orig_end` of the
/// script became `out_start..out_end` of the code, on `line`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Edit {
    line: usize,
    orig_start: usize,
    orig_end: usize,
    out_start: usize,
    out_end: usize,
}

/// A script that cannot be read, with where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// From 1.
    pub line: usize,
    /// From 1, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Where a name is first seen: line and column, from 1.
pub type At = (usize, usize);

/// What a script names, over all its blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// The maps (without their `@`; `""` for `@` alone), each once, with
    /// where each is first named.
    pub maps: Vec<(String, At)>,
    /// The maps assigned somewhere (`@c = …`, `@c[k] += …`, `@c++`).
    pub assigned: BTreeSet<String>,
    /// The bare names assigned somewhere (`n += 1`, `cnt[k] = 1`), with the
    /// first place: the deprecated maps, if they are no local.
    pub bare_assigned: Vec<(String, At)>,
    /// The names declared with `let` or `const`.
    pub locals: BTreeSet<String>,
    /// The places of the older `hist(x)` and `hist("name", x)` forms.
    pub old_hists: Vec<At>,
}

/// Splits `text` into blocks, in order, and translates them.
#[cfg(test)]
pub fn blocks(text: &str) -> Result<Vec<Block>, SyntaxError> {
    parse(text).map(|(b, _)| b)
}

/// Splits `text` into blocks, in order, translates them, and lists what
/// they name.
pub fn parse(text: &str) -> Result<(Vec<Block>, Names), SyntaxError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut names = Names::default();
    let mut i = 0;
    // A `#!` first line is an interpreter line, as in a bpftrace script.
    if text.starts_with("#!") {
        i = text.find('\n').unwrap_or(text.len());
    }
    loop {
        i = skip_space_and_comments(b, i)?;
        if i >= b.len() {
            return Ok((out, names));
        }
        let header_start = i;
        // The header runs to its `{`; a predicate's strings may hold braces
        // and slashes, and a comment is a comment (`work /* c */ { … }`),
        // as in bpftrace.
        let mut comments = Vec::new();
        while i < b.len() && b[i] != b'{' && b[i] != b'}' && b[i] != b'\n' {
            if b[i] == b'"' {
                i = quoted_end(b, i, b'"')?;
            } else if let Some(end) = comment_end(b, i)? {
                comments.push(i..end);
                i = end;
            } else {
                i += 1;
            }
        }
        let err = |at: usize, message: String| SyntaxError {
            line: line_at(b, at),
            column: column_at(text, at),
            message,
        };
        if i < b.len() && b[i] == b'}' && i == header_start {
            return Err(err(header_start, "this `}` closes no block".into()));
        }
        if i >= b.len() || b[i] != b'{' {
            let found = String::from_utf8_lossy(&b[header_start..i])
                .trim()
                .to_string();
            return Err(err(
                header_start,
                format!("expected `{found} {{ … }}`: a probe spec, BEGIN, END or interval, then a block"),
            ));
        }
        let open = i;
        // The header with its comments made spaces (character for
        // character, newlines kept), so columns stay the script's own.
        let blank: String = text[header_start..open]
            .char_indices()
            .map(|(k, c)| {
                let in_comment = comments.iter().any(|r| r.contains(&(header_start + k)));
                if in_comment && c != '\n' {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let trimmed = blank.trim_end();
        let (spec, predicate) = predicate(trimmed);
        let header = parse_header(spec).map_err(|m| err(header_start, m))?;
        let body_end = block_end(text, open + 1)?;
        // The code, laid out where the block is: spaces for the header (an
        // `if(…)` over it for a predicate), the body, and for a predicate
        // the braces that close it.
        let mut laid = String::new();
        // Where the predicate's `if(` and its `)` are laid, if it has one.
        let mut predicate_at = None;
        let line = line_at(b, header_start);
        let column = column_at(text, header_start);
        laid.extend(std::iter::repeat_n('\n', line - 1));
        laid.extend(std::iter::repeat_n(' ', column - 1));
        match predicate {
            Some(p) => {
                if matches!(header, Header::Begin | Header::End) {
                    return Err(err(
                        header_start,
                        format!("BEGIN and END take no predicate (/{p}/)"),
                    ));
                }
                if p.trim().is_empty() {
                    return Err(err(header_start, "an empty predicate (//)".into()));
                }
                // `spec /p/`: the predicate's slashes are at `slash` and at
                // the end of the trimmed header; at least one character of
                // the spec and one space come before the first.
                let slash = trimmed.len() - p.len() - 2;
                let before = blank[..slash].chars().count();
                laid.extend(std::iter::repeat_n(' ', before - 2));
                let at = laid.chars().count();
                predicate_at = Some((at, at + 3 + p.chars().count()));
                laid.push_str("if(");
                laid.push_str(p);
                laid.push(')');
                laid.push_str(&blank[trimmed.len()..]);
                laid.push_str(&text[open..=body_end]);
            }
            None => {
                laid.extend(blank.chars().map(|c| if c == '\n' { c } else { ' ' }));
                laid.push(' ');
                laid.push_str(&text[open + 1..body_end]);
            }
        }
        let mut t = Translator::new(&laid, &mut names);
        t.predicate = predicate_at;
        t.code(false)?;
        let Translator {
            out: code,
            edits,
            ustack,
            ..
        } = t;
        out.push(Block {
            header,
            code,
            line,
            column,
            edits,
            ustack,
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
        return (h.trim(), None);
    }
    match h.find(|c: char| c.is_whitespace()) {
        Some(space) => match h[space..].find('/') {
            Some(at) if space + at < h.len() - 1 => {
                let start = space + at;
                (h[..start].trim(), Some(&h[start + 1..h.len() - 1]))
            }
            _ => (h.trim(), None),
        },
        None => (h.trim(), None),
    }
}

/// The longest period an interval block may have: one day. A longer one
/// never runs in any trace worth having, and keeping periods this small
/// keeps every deadline (`now + period`) far from the end of `Instant`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

fn parse_header(h: &str) -> Result<Header, String> {
    match h {
        "" => Err("a block needs a probe spec, BEGIN, END or interval before its `{`".into()),
        "BEGIN" => Ok(Header::Begin),
        "END" => Ok(Header::End),
        _ if h.starts_with("interval:") => interval(&h["interval:".len()..]).map(Header::Interval),
        _ => match h.strip_suffix(":return") {
            Some("") => Err("`:return` needs a probe spec before it".into()),
            Some(spec) => Ok(Header::Return(spec.trim_end().to_string())),
            None => Ok(Header::Entry(h.to_string())),
        },
    }
}

/// The period of `interval:1s`, `interval:500ms`, `interval:100us` (and
/// bpftrace's older `interval:s:1`, `interval:ms:500`): at least 1 ms, at
/// most [`MAX_INTERVAL`].
fn interval(spec: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "interval:{spec}: a period is a number and a unit, s, ms or us (interval:1s, interval:500ms)"
        )
    };
    let (number, unit) = match spec.split_once(':') {
        Some((unit, number)) => (number, unit),
        None => {
            let digits = spec
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(spec.len());
            (&spec[..digits], &spec[digits..])
        }
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let period = match unit {
        "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        _ => return Err(bad()),
    };
    if period < Duration::from_millis(1) {
        return Err(format!("interval:{spec}: the period must be at least 1ms"));
    }
    if period > MAX_INTERVAL {
        return Err(format!(
            "interval:{spec}: the period must be at most 1 day (86400s)"
        ));
    }
    Ok(period)
}

/// The line of byte `at`, from 1.
pub(crate) fn line_at(b: &[u8], at: usize) -> usize {
    1 + b[..at.min(b.len())].iter().filter(|&&c| c == b'\n').count()
}

/// The column of byte `at` (from 1, in characters).
fn column_at(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |n| n + 1);
    1 + text[start..at].chars().count()
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

/// The error at byte `at` of `b` (a script's text).
fn error_at(b: &[u8], at: usize, message: &str) -> SyntaxError {
    let text = String::from_utf8_lossy(b);
    SyntaxError {
        line: line_at(b, at),
        column: column_at(&text, at),
        message: message.into(),
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
            Err(error_at(b, i, "this comment is never closed (`*/`)"))
        }
        _ => Ok(None),
    }
}

/// The index of the `}` closing a block whose body starts at `start`.
fn block_end(text: &str, start: usize) -> Result<usize, SyntaxError> {
    let b = text.as_bytes();
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
    Err(error_at(b, start - 1, "this block is never closed (`}`)"))
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
    Err(error_at(b, i, "this string is never closed"))
}

/// Functions whose sole argument `@m` is the map itself, not its entry of
/// no key.
const TAKE_MAPS: [&str; 4] = ["print", "clear", "zero", "len"];

/// Rhai's assignment operators.
const ASSIGN: [&str; 12] = [
    "=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", "**=",
];

/// Rhai's operators of more than one character, longest first.
const OPERATORS: [&str; 30] = [
    "<<=", ">>=", "**=", "...", "..=", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "&=",
    "|=", "^=", "&&", "||", "<<", ">>", "**", "->", "=>", "::", "..", "?.", "?[", "??", "++",
];

/// A token the translator looks back at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Map,
    Op(String),
    Other,
}

/// What an open `[` indexes: a map (its `]` may be followed by `++`), a
/// bare name (an assignment after its `]` makes it a deprecated map), or
/// anything else.
enum Bracket {
    Map(String),
    Bare(String, At),
    Other,
}

/// Rewrites a block's laid-out code (see the module's docs).
struct Translator<'a> {
    src: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
    out: String,
    out_col: usize,
    edits: Vec<Edit>,
    ustack: bool,
    names: &'a mut Names,
    /// The last two significant tokens, the latest last.
    prev: [Tok; 2],
    brackets: Vec<Bracket>,
    /// How many template interpolations (`${`) enclose the position: each
    /// is one more call of [`Translator::code`], so their depth is bounded
    /// ([`MAX_INTERPOLATION_DEPTH`]) to keep rtrace's own stack whole.
    interpolations: usize,
    /// Where a predicate's laid `if(` and its closing `)` are (character
    /// indices): the predicate is wrapped in `_truthy(…)`, so that it
    /// holds as bpftrace's does (a non-zero number, a non-empty string,
    /// true; not 0, "", false or an unset map entry).
    predicate: Option<(usize, usize)>,
}

/// How deep template interpolations may nest (`${`…`${…}`…`}`).
const MAX_INTERPOLATION_DEPTH: usize = 64;

impl<'a> Translator<'a> {
    fn new(code: &str, names: &'a mut Names) -> Translator<'a> {
        Translator {
            src: code.chars().collect(),
            i: 0,
            line: 1,
            col: 1,
            out: String::with_capacity(code.len()),
            out_col: 1,
            edits: Vec::new(),
            ustack: false,
            names,
            prev: [Tok::Other, Tok::Other],
            brackets: Vec::new(),
            interpolations: 0,
            predicate: None,
        }
    }

    fn at(&self, k: usize) -> Option<char> {
        self.src.get(self.i + k).copied()
    }

    fn err(&self, line: usize, column: usize, message: String) -> SyntaxError {
        SyntaxError {
            line,
            column,
            message,
        }
    }

    /// Copies `n` characters as they are.
    fn copy(&mut self, n: usize) {
        for _ in 0..n {
            let Some(c) = self.at(0) else { return };
            self.out.push(c);
            self.i += 1;
            if c == '\n' {
                self.line += 1;
                self.col = 1;
                self.out_col = 1;
            } else {
                self.col += 1;
                self.out_col += 1;
            }
        }
    }

    /// Replaces the next `n` characters (on one line) with `with`.
    fn replace(&mut self, n: usize, with: &str) {
        let width = with.chars().count();
        if width != n {
            self.edits.push(Edit {
                line: self.line,
                orig_start: self.col,
                orig_end: self.col + n,
                out_start: self.out_col,
                out_end: self.out_col + width,
            });
        }
        self.out.push_str(with);
        self.i += n;
        self.col += n;
        self.out_col += width;
    }

    fn push(&mut self, t: Tok) {
        self.prev.swap(0, 1);
        self.prev[1] = t;
    }

    /// The next significant characters, after spaces and comments on the
    /// way (not consumed).
    fn peek(&self) -> String {
        let mut j = self.i;
        while j < self.src.len() && self.src[j].is_whitespace() {
            j += 1;
        }
        self.src[j..self.src.len().min(j + 3)].iter().collect()
    }

    fn ident_len(&self, from: usize) -> usize {
        let mut n = 0;
        while let Some(&c) = self.src.get(self.i + from + n) {
            if c.is_ascii_alphanumeric() || c == '_' {
                n += 1;
            } else {
                break;
            }
        }
        n
    }

    /// Whether the next operator is an assignment, `++` or `--`.
    fn assigned_next(&self) -> bool {
        let next = self.peek();
        next.starts_with("++")
            || next.starts_with("--")
            || ASSIGN.iter().any(|op| {
                next.starts_with(op)
                    && !next[op.len()..].starts_with('=')
                    && !(*op == "=" && next.starts_with("=>"))
            })
    }

    /// After a map's name or its `]`: `++` and `--` become `+= 1` and `-= 1`.
    fn postfix(&mut self) {
        let mut j = 0;
        while self.at(j).is_some_and(|c| c == ' ' || c == '\t') {
            j += 1;
        }
        let (a, b) = (self.at(j), self.at(j + 1));
        if a == b && matches!(a, Some('+' | '-')) {
            self.copy(j);
            let op = if a == Some('+') { " += 1" } else { " -= 1" };
            self.replace(2, op);
            self.push(Tok::Other);
        }
    }

    /// Translates code up to its end, or (in a template's `${…}`) up to the
    /// `}` that closes it, which is copied.
    fn code(&mut self, interpolation: bool) -> Result<(), SyntaxError> {
        let mut depth = 0usize;
        while let Some(c) = self.at(0) {
            if let Some((open, close)) = self.predicate {
                if self.i == open {
                    self.replace(3, "if(_truthy(");
                    self.push(Tok::Ident("_truthy".into()));
                    self.push(Tok::Op("(".into()));
                    continue;
                }
                if self.i == close {
                    self.replace(1, "))");
                    self.push(Tok::Other);
                    continue;
                }
            }
            match c {
                c if c.is_whitespace() => self.copy(1),
                '/' if self.at(1) == Some('/') => {
                    while self.at(0).is_some_and(|c| c != '\n') {
                        self.copy(1);
                    }
                }
                '/' if self.at(1) == Some('*') => {
                    let mut nest = 0;
                    while let Some(c) = self.at(0) {
                        if c == '/' && self.at(1) == Some('*') {
                            nest += 1;
                            self.copy(2);
                        } else if c == '*' && self.at(1) == Some('/') {
                            nest -= 1;
                            self.copy(2);
                            if nest == 0 {
                                break;
                            }
                        } else {
                            self.copy(1);
                        }
                    }
                }
                '"' | '\'' => {
                    self.copy(1);
                    while let Some(d) = self.at(0) {
                        if d == '\\' {
                            self.copy(2);
                        } else {
                            self.copy(1);
                            if d == c {
                                break;
                            }
                        }
                    }
                    self.push(Tok::Other);
                }
                '`' => {
                    self.copy(1);
                    while let Some(d) = self.at(0) {
                        match d {
                            '\\' => self.copy(2),
                            '`' => {
                                self.copy(1);
                                break;
                            }
                            '$' if self.at(1) == Some('{') => {
                                if self.interpolations == MAX_INTERPOLATION_DEPTH {
                                    return Err(self.err(
                                        self.line,
                                        self.col,
                                        format!(
                                            "templates nest `${{…}}` at most {MAX_INTERPOLATION_DEPTH} deep"
                                        ),
                                    ));
                                }
                                self.copy(2);
                                self.interpolations += 1;
                                self.code(true)?;
                                self.interpolations -= 1;
                            }
                            _ => self.copy(1),
                        }
                    }
                    self.push(Tok::Other);
                }
                '{' => {
                    depth += 1;
                    self.copy(1);
                    self.push(Tok::Op("{".into()));
                }
                '}' => {
                    if interpolation && depth == 0 {
                        self.copy(1);
                        return Ok(());
                    }
                    depth = depth.saturating_sub(1);
                    self.copy(1);
                    self.push(Tok::Op("}".into()));
                }
                '@' => self.map()?,
                c if c.is_ascii_alphabetic() || c == '_' => self.ident()?,
                c if c.is_ascii_digit() => {
                    let mut n = 1;
                    while let Some(d) = self.at(n) {
                        let fraction =
                            d == '.' && self.at(n + 1).is_some_and(|e| e.is_ascii_digit());
                        if d.is_ascii_alphanumeric() || d == '_' || fraction {
                            n += 1;
                        } else {
                            break;
                        }
                    }
                    self.copy(n);
                    self.push(Tok::Other);
                }
                '[' => {
                    self.brackets.push(Bracket::Other);
                    self.copy(1);
                    self.push(Tok::Op("[".into()));
                }
                ']' => {
                    let closing = self.brackets.pop();
                    match closing {
                        Some(Bracket::Map(_)) => self.replace(1, "]]"),
                        _ => self.copy(1),
                    }
                    self.push(Tok::Other);
                    match closing {
                        Some(Bracket::Map(name)) => {
                            if self.assigned_next() {
                                self.names.assigned.insert(name);
                            }
                            self.postfix();
                        }
                        Some(Bracket::Bare(name, at)) => {
                            if self.assigned_next() {
                                self.bare_assigned(name, at);
                            }
                        }
                        Some(Bracket::Other) | None => {}
                    }
                }
                _ => {
                    let rest: String = self.src[self.i..self.src.len().min(self.i + 3)]
                        .iter()
                        .collect();
                    let op = OPERATORS
                        .iter()
                        .find(|op| rest.starts_with(**op))
                        .map_or_else(|| c.to_string(), |op| op.to_string());
                    self.copy(op.chars().count());
                    self.push(Tok::Op(op));
                }
            }
        }
        Ok(())
    }

    fn bare_assigned(&mut self, name: String, at: At) {
        if !self.names.bare_assigned.iter().any(|(n, _)| *n == name) {
            self.names.bare_assigned.push((name, at));
        }
    }

    /// Whether the name of `n` characters here is followed by `(@map)`.
    fn map_argument(&self, n: usize) -> bool {
        let rest: String = self.src[self.i + n..]
            .iter()
            .take(200)
            .filter(|c| !c.is_whitespace())
            .collect();
        let Some(rest) = rest.strip_prefix("(@") else {
            return false;
        };
        let name = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        rest[name..].starts_with(')')
    }

    /// `@name`, `@name[…]`, `@` (the anonymous map).
    fn map(&mut self) -> Result<(), SyntaxError> {
        let at = (self.line, self.col);
        let n = self.ident_len(1);
        let name: String = self.src[self.i + 1..self.i + 1 + n].iter().collect();
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.err(
                at.0,
                at.1,
                format!("@{name}: a map's name starts with a letter"),
            ));
        }
        if !self.names.maps.iter().any(|(m, _)| *m == name) {
            self.names.maps.push((name.clone(), at));
        }
        let var = format!("_m_{name}");
        let after: String = {
            let mut j = self.i + 1 + n;
            while j < self.src.len() && self.src[j].is_whitespace() {
                j += 1;
            }
            self.src.get(j).map(|c| c.to_string()).unwrap_or_default()
        };
        let whole_map = self.prev[1] == Tok::Op("(".into())
            && match &self.prev[0] {
                Tok::Ident(f) if f == "delete" => after == ",",
                Tok::Ident(f) => after == ")" && TAKE_MAPS.contains(&f.as_str()),
                _ => false,
            };
        if after == "["
            && self.prev[1] == Tok::Op("(".into())
            && self.prev[0] == Tok::Ident("delete".into())
        {
            // bpftrace's `delete(@m[k])` is `delete(@m, k)`: the key,
            // an array as everywhere, becomes the second argument.
            self.replace(1 + n, &var);
            while self.at(0).is_some_and(char::is_whitespace) {
                self.copy(1);
            }
            self.replace(1, ", [");
            self.brackets.push(Bracket::Other);
            self.push(Tok::Op("[".into()));
            return Ok(());
        }
        if after == "[" {
            self.replace(1 + n, &var);
            // The key is an array, so that `@m[a, b]` keys by both (one
            // value alone is its own key); its `]` knows it closes a map's
            // key.
            while self.at(0).is_some_and(char::is_whitespace) {
                self.copy(1);
            }
            self.replace(1, "[[");
            self.brackets.push(Bracket::Map(name));
            self.push(Tok::Op("[".into()));
            return Ok(());
        }
        if after == "." || whole_map {
            self.replace(1 + n, &var);
            self.push(Tok::Map);
            return Ok(());
        }
        self.replace(1 + n, &format!("{var}[()]"));
        self.push(Tok::Map);
        if self.assigned_next() {
            self.names.assigned.insert(name);
        }
        self.postfix();
        Ok(())
    }

    /// A name: a keyword, a local, a function, a built-in, or a bare global.
    fn ident(&mut self) -> Result<(), SyntaxError> {
        let at = (self.line, self.col);
        let n = self.ident_len(0);
        let name: String = self.src[self.i..self.i + n].iter().collect();
        let member = matches!(&self.prev[1], Tok::Op(op) if op == "." || op == "?.");
        if name.starts_with('_') && !member {
            return Err(self.err(
                at.0,
                at.1,
                format!("{name}: names starting with `_` are rtrace's own"),
            ));
        }
        if matches!(&self.prev[1], Tok::Ident(k) if k == "let" || k == "const") {
            self.names.locals.insert(name.clone());
        }
        let call = self.src[self.i + n..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
        if member {
            self.copy(n);
        } else if name == "print" && self.map_argument(n) {
            // print(@map): the map as bpftrace prints it.
            self.replace(n, "_print_map");
        } else if name == "ustack" {
            self.ustack = true;
            if call {
                self.copy(n);
            } else {
                self.replace(n, "ustack()");
            }
        } else if name == "hist" && call && self.prev[1] != Tok::Op("=".into()) {
            // The older statement forms: `hist(x)`, named after the block,
            // and `hist("name", x)`.
            self.names.old_hists.push(at);
            let named = self.src[self.i + n..]
                .iter()
                .filter(|c| !c.is_whitespace())
                .nth(1)
                == Some(&'"');
            if named {
                self.copy(n);
            } else {
                self.replace(n, "_block_hist");
            }
        } else {
            self.copy(n);
            let keyword = matches!(
                name.as_str(),
                "let"
                    | "const"
                    | "fn"
                    | "if"
                    | "else"
                    | "while"
                    | "loop"
                    | "for"
                    | "in"
                    | "return"
                    | "break"
                    | "continue"
                    | "true"
                    | "false"
                    | "switch"
                    | "do"
                    | "until"
                    | "throw"
                    | "try"
                    | "catch"
                    | "private"
                    | "this"
                    | "global"
            );
            if !call && !keyword {
                if self.src.get(self.i).is_some_and(|c| *c == '[') || self.peek().starts_with('[') {
                    self.push(Tok::Ident(name.clone()));
                    while self.at(0).is_some_and(char::is_whitespace) {
                        self.copy(1);
                    }
                    self.copy(1);
                    self.brackets.push(Bracket::Bare(name, at));
                    self.push(Tok::Op("[".into()));
                    return Ok(());
                }
                if self.assigned_next()
                    && !matches!(&self.prev[1], Tok::Ident(k) if k == "let" || k == "const" || k == "for")
                {
                    self.bare_assigned(name.clone(), at);
                }
            }
        }
        self.push(Tok::Ident(name));
        Ok(())
    }
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

    /// The code of each block without the spaces and newlines that lay it
    /// out.
    fn codes(text: &str) -> Vec<String> {
        blocks(text)
            .unwrap()
            .into_iter()
            .map(|b| b.code.trim_start().to_string())
            .collect()
    }

    #[test]
    fn headers_and_bodies() {
        let text = "#!/usr/bin/rtrace\n// counts\nBEGIN { let n = 0; }\nlibc:openat {\n  @count[str(arg(1))] += 1\n}\n\
                    work:return { @h = hist(duration) }\n/* the end */ END { print(@count) }\n interval:500ms { }";
        let b = blocks(text).unwrap();
        assert_eq!(
            b.iter().map(|b| b.header.clone()).collect::<Vec<_>>(),
            [
                Header::Begin,
                Header::Entry("libc:openat".into()),
                Header::Return("work".into()),
                Header::End,
                Header::Interval(Duration::from_millis(500)),
            ]
        );
        assert_eq!(
            b[1].code,
            "\n\n\n             \n  _m_count[[str(arg(1))]] += 1\n"
        );
        assert_eq!(
            b.iter().map(|b| (b.line, b.column)).collect::<Vec<_>>(),
            [(3, 1), (4, 1), (7, 1), (8, 15), (9, 2)],
            "where each header is"
        );
        assert_eq!(
            codes(text)[3],
            "_print_map(_m_count) ",
            "print(@map) prints the map"
        );
    }

    /// `${…}` in a template is a recursion of the translator: its depth is
    /// bounded, an error where the first interpolation too deep opens.
    #[test]
    fn template_interpolations_nest_a_bounded_depth() {
        let nested = |n: usize| format!("w {{ let s = {}1{}; }}", "`${".repeat(n), "}`".repeat(n));
        assert!(blocks(&nested(MAX_INTERPOLATION_DEPTH)).is_ok());
        let e = blocks(&nested(MAX_INTERPOLATION_DEPTH + 1)).unwrap_err();
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (
                1,
                13 + 3 * MAX_INTERPOLATION_DEPTH + 1,
                "templates nest `${…}` at most 64 deep"
            )
        );
        // Far deeper than any stack would hold: the same error, no crash.
        let e = blocks(&nested(100_000)).unwrap_err();
        assert_eq!(e.column, 13 + 3 * MAX_INTERPOLATION_DEPTH + 1);
    }

    #[test]
    fn intervals_take_a_period_and_a_unit() {
        let h = |t: &str| blocks(t).map(|b| b[0].header.clone());
        assert_eq!(
            h("interval:1s { }"),
            Ok(Header::Interval(Duration::from_secs(1)))
        );
        assert_eq!(
            h("interval:ms:20 { }"),
            Ok(Header::Interval(Duration::from_millis(20)))
        );
        assert_eq!(
            h("interval:1500us { }"),
            Ok(Header::Interval(Duration::from_micros(1500)))
        );
        assert_eq!(
            h("interval:5 { }").unwrap_err().message,
            "interval:5: a period is a number and a unit, s, ms or us (interval:1s, interval:500ms)"
        );
        assert_eq!(
            h("interval:10us { }").unwrap_err().message,
            "interval:10us: the period must be at least 1ms"
        );
        assert_eq!(
            h("interval:18446744073709551615s { }").unwrap_err().message,
            "interval:18446744073709551615s: the period must be at most 1 day (86400s)"
        );
        assert_eq!(
            h("interval:86401s { }").unwrap_err().message,
            "interval:86401s: the period must be at most 1 day (86400s)"
        );
        assert_eq!(
            h("interval:ms:86400000 { }"),
            Ok(Header::Interval(Duration::from_secs(86_400)))
        );
    }

    #[test]
    fn maps_take_their_sigil_off_and_positions_map_back() {
        let text = "w { @n++; @c[tid, @n] = count(); @ = count(); x = @n + 1; print(@c) }";
        let (b, names) = parse(text).unwrap();
        assert_eq!(
            b[0].code.trim_start(),
            "_m_n[()] += 1; _m_c[[tid, _m_n[()]]] = count(); _m_[()] = count(); x = _m_n[()] + 1; _print_map(_m_c) "
        );
        assert_eq!(
            names.maps,
            [
                ("n".to_string(), (1, 5)),
                ("c".into(), (1, 11)),
                ("".into(), (1, 34))
            ]
        );
        assert_eq!(
            names.assigned.iter().collect::<Vec<_>>(),
            ["", "c", "n"],
            "@n read in @c's key is assigned elsewhere"
        );
        assert_eq!(names.bare_assigned, [("x".to_string(), (1, 47))]);
        // `x` is at column 47 of the script: after three edits on its line.
        let out = b[0].code.find("x =").unwrap() + 1;
        assert_eq!(b[0].position(1, out), (1, 47));
        // Inside an edit: where the edit starts.
        let inside = b[0].code.find("_m_c").unwrap() + 3;
        assert_eq!(b[0].position(1, inside), (1, 11));
    }

    #[test]
    fn what_the_front_end_rewrites_and_leaves() {
        assert_eq!(
            codes("w { hist(1); hist(\"a\", 2); @h = hist(3); x.hist(4) }")[0],
            "_block_hist(1); hist(\"a\", 2); _m_h[()] = hist(3); x.hist(4) "
        );
        assert_eq!(
            codes("w { @s[ustack] = count(); ustack(3) }")[0],
            "_m_s[[ustack()]] = count(); ustack(3) "
        );
        assert_eq!(
            codes("w { print(\"@x\"); print(`${@x} @y`); @x = 1 // @z\n}")[0],
            "print(\"@x\"); print(`${_m_x[()]} @y`); _m_x[()] = 1 // @z\n"
        );
        assert_eq!(
            blocks("w { _m_x = 1 }").unwrap_err().message,
            "_m_x: names starting with `_` are rtrace's own"
        );
        let (_, names) =
            parse("w { let a = 1; for i in 0..2 { }; b[1] += a; c == 1; d = 2 }").unwrap();
        assert_eq!(names.locals.iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            names
                .bare_assigned
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["b", "d"]
        );
    }

    #[test]
    fn predicates_guard_their_bodies() {
        let b = blocks(
            "work /arg(0) > 10/ { @n += 1 }
/lib/x.so:f:return /retval < 0/ {
x
}",
        )
        .unwrap();
        assert_eq!(b[0].header, Header::Entry("work".into()));
        assert_eq!(b[0].code, "   if(_truthy(arg(0) > 10)) { _m_n[()] += 1 }");
        assert_eq!(b[1].header, Header::Return("/lib/x.so:f".into()));
        assert_eq!(
            b[1].code,
            "\n                 if(_truthy(retval < 0)) {\nx\n}"
        );
        assert_eq!(b[1].line, 2);
        // bpftrace's forms: a value as the predicate, `delete(@m[k])`.
        let b = blocks("w /@start[tid]/ { delete(@start[tid]); delete(@m[a, b]) }").unwrap();
        assert_eq!(
            b[0].code,
            "if(_truthy(_m_start[[tid]])) { delete(_m_start, [tid]); delete(_m_m, [a, b]) }"
        );
        // Positions past the wrapping map back to the script's own.
        assert_eq!(b[0].position(1, 57), (1, 40));
        assert_eq!(b[0].position(1, 74), (1, 53));
        let e = blocks("END /x/ { }").unwrap_err();
        assert_eq!(e.message, "BEGIN and END take no predicate (/x/)");
    }

    /// A predicate's strings may hold braces and slashes; a comment in a
    /// header is a comment, as bpftrace's lexer has them.
    #[test]
    fn headers_skip_strings_and_comments() {
        let one = |t: &str| {
            let b = blocks(t).unwrap_or_else(|e| panic!("{t}: {e:?}"));
            assert_eq!(b.len(), 1, "{t}");
            (b[0].header.clone(), b[0].code.clone())
        };
        let work = Header::Entry("work".into());
        assert_eq!(
            one(r#"work /str(arg(0)) == "{"/ { @n = count() }"#),
            (
                work.clone(),
                r#"   if(_truthy(str(arg(0)) == "{")) { _m_n[()] = count() }"#.into()
            )
        );
        assert_eq!(
            one(r#"work /str(arg(0)) != "}"/ { 1 }"#),
            (
                work.clone(),
                r#"   if(_truthy(str(arg(0)) != "}")) { 1 }"#.into()
            )
        );
        assert_eq!(
            one(r#"work /str(arg(0)) == "/"/ { 1 }"#),
            (
                work.clone(),
                r#"   if(_truthy(str(arg(0)) == "/")) { 1 }"#.into()
            )
        );
        assert_eq!(
            one("work /* c */ { 1 }"),
            (work.clone(), "               1 ".into())
        );
        assert_eq!(
            one("work /**/ { 1 }"),
            (work.clone(), "            1 ".into())
        );
        assert_eq!(
            one("work /x>0/ /* c */ { 1 }"),
            (work.clone(), "   if(_truthy(x>0))         { 1 }".into())
        );
        // A multi-line comment keeps the body on its own lines.
        let b = blocks("work /* a\nb */ { x }").unwrap();
        assert_eq!(b[0].code, "         \n       x ");
        assert_eq!(
            blocks(r#"work /str(arg(0)) == "{/ { }"#)
                .unwrap_err()
                .message,
            "this string is never closed"
        );
    }

    #[test]
    fn braces_in_strings_templates_and_comments_do_not_count() {
        let text = r#"w { print("}"); print('}'); /* } */ // }
            print(`a ${ #{x: 1}.x } }`); if true { 1 } }
            ns::Class::peek() const { true }"#;
        let b = blocks(text).unwrap();
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b[0].code.ends_with("if true { 1 } "), "{:?}", b[0].code);
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
            "a block needs a probe spec, BEGIN, END or interval before its `{`"
        );
        assert_eq!(
            (e("x { }\n  y { \"a }").line, e("x { }\n  y { \"a }").column),
            (2, 7)
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
