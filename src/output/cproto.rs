//! User prototypes (`--proto`, `--proto-file`): C declarations of functions
//! that have no debug info, parsed into the [`Signature`] their DWARF would
//! give, so that they render exactly as DWARF-described functions do (named
//! arguments, C strings, floats from the vector registers, the fast probes'
//! captures), as ltrace's `-F` config file does in its own syntax.
//!
//! This file owns the declarations' grammar, a small hand-written parser of
//! C declaration syntax:
//!
//! ```text
//! declaration := type NAME '(' parameters ')' [';']
//! parameters  := '' | 'void' | parameter {',' parameter} [',' '...'] | '...'
//! parameter   := type [NAME] {'[' [SIZE] ']'}
//!              | type '(' '*' [NAME] ')' '(' … ')'         (a function pointer)
//! type        := specifier {specifier} {'*' {qualifier}}
//! ```
//!
//! NAME may be qualified (`ns::parse`, matched against the demangled name).
//! Qualifiers (`const`, `volatile`, `restrict`) and `extern`, `static`,
//! `inline` are accepted and ignored. The types are the C integer types in
//! every spelling, `bool`/`_Bool`, `float`, `double`, `long double`, the
//! fixed-width `intN_t`/`uintN_t`, a few POSIX typedefs (`size_t`, `mode_t`
//! shown in octal, …), pointers (a pointer to a one-byte character type is a
//! C string, as DWARF has it), and `struct`/`union`/`enum` names, `FILE` and
//! `DIR` behind a pointer only: by value their layout or size is not known.
//!
//! A mistake is one message with the column (1-based, in characters) where
//! it was found; the command line makes it a usage error.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::handler::Site;
use crate::symbols::dwarf::{Param, Signature, Type};

/// The user's prototypes, by function name. A later declaration of a name
/// replaces an earlier one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prototypes {
    by_name: HashMap<String, Arc<Signature>>,
}

impl Prototypes {
    /// No prototypes.
    pub fn new() -> Prototypes {
        Prototypes::default()
    }

    /// True when none was given.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// How many functions have one.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Adds one declaration, as `--proto` gives it:
    /// `int parse(const char *s, size_t n)`. The error says what is wrong
    /// and where: `--proto 'int parse(cons char *s)': unknown type "cons" at
    /// column 11`.
    pub fn add(&mut self, decl: &str) -> Result<()> {
        let (name, sig) = parse(decl).map_err(|bad| Error::InvalidValue {
            option: "--proto",
            reason: format!(
                "--proto '{}': {} at column {}",
                // On one line: a newline or another control character is
                // shown escaped.
                decl.trim().escape_default(),
                bad.message,
                bad.column
            ),
        })?;
        self.by_name.insert(name, Arc::new(sig));
        Ok(())
    }

    /// Adds the declarations of a `--proto-file` whose text is `text`
    /// (`file` names it in errors): one a line, `;` at the end optional,
    /// blank lines and comments (from `//` or `#` to the end of the line)
    /// ignored. The error has the compilers' form, `FILE:LINE:COLUMN: …`.
    /// Nothing is added from a file with an error.
    pub fn add_file(&mut self, file: &str, text: &str) -> Result<()> {
        let mut parsed = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = strip_comment(line);
            if line.trim().is_empty() {
                continue;
            }
            let (name, sig) = parse(line).map_err(|bad| Error::InvalidValue {
                option: "--proto-file",
                reason: format!(
                    "--proto-file {file}:{}:{}: {}",
                    n + 1,
                    bad.column,
                    bad.message
                ),
            })?;
            parsed.push((name, Arc::new(sig)));
        }
        self.by_name.extend(parsed);
        Ok(())
    }

    /// The prototype given for the function at `site`, by its symbol (a
    /// version, `@GLIBC_2.2.5`, left out), or by the name text output shows
    /// (a C++ function's demangled name, with or without its parameter
    /// types).
    pub(crate) fn get(&self, site: &Site) -> Option<Arc<Signature>> {
        if self.by_name.is_empty() {
            return None;
        }
        let symbol = site.symbol.split('@').next().unwrap_or(&site.symbol);
        [symbol, site.name.as_str()]
            .into_iter()
            .flat_map(|n| [n, without_parameters(n)])
            .find_map(|n| self.by_name.get(n))
            .cloned()
    }
}

/// `ns::parse` of `ns::parse(char const*)`: a demangled C++ name without
/// its parameter types.
fn without_parameters(name: &str) -> &str {
    match name.find('(') {
        Some(at) if at > 0 && name.ends_with(')') => &name[..at],
        _ => name,
    }
}

/// A line of a `--proto-file` up to its comment.
fn strip_comment(line: &str) -> &str {
    let end = [line.find("//"), line.find('#')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(line.len());
    &line[..end]
}

/// What is wrong with a declaration, and the column (1-based, in
/// characters) where it was found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Bad {
    pub(crate) column: usize,
    pub(crate) message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Number,
    Star,
    Open,
    Close,
    OpenSquare,
    CloseSquare,
    Comma,
    Semicolon,
    Ellipsis,
    Scope,
    /// A character no declaration has (`&`, `@`, `{`).
    Other(char),
    End,
}

impl Tok {
    /// The token as a message quotes it.
    fn show(&self) -> String {
        match self {
            Tok::Word(w) => format!("\"{w}\""),
            Tok::Number => "a number".into(),
            Tok::Star => "\"*\"".into(),
            Tok::Open => "\"(\"".into(),
            Tok::Close => "\")\"".into(),
            Tok::OpenSquare => "\"[\"".into(),
            Tok::CloseSquare => "\"]\"".into(),
            Tok::Comma => "\",\"".into(),
            Tok::Semicolon => "\";\"".into(),
            Tok::Ellipsis => "\"...\"".into(),
            Tok::Scope => "\"::\"".into(),
            Tok::Other(c) => format!("'{c}'"),
            Tok::End => "the end".into(),
        }
    }
}

/// The tokens of `decl`, each with its column; the last is [`Tok::End`].
fn tokens(decl: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = decl.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let rest = |s: &str| chars[i..].iter().take(s.len()).copied().eq(s.chars());
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                (Tok::Word(chars[i..i + len].iter().collect()), len)
            }
            c if c.is_ascii_digit() => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .count();
                (Tok::Number, len)
            }
            '*' => (Tok::Star, 1),
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            '[' => (Tok::OpenSquare, 1),
            ']' => (Tok::CloseSquare, 1),
            ',' => (Tok::Comma, 1),
            ';' => (Tok::Semicolon, 1),
            '.' if rest("...") => (Tok::Ellipsis, 3),
            ':' if rest("::") => (Tok::Scope, 2),
            c => (Tok::Other(c), 1),
        };
        out.push((tok, column));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    out
}

/// Words that change nothing rtrace shows.
const IGNORED: &[&str] = &[
    "const",
    "volatile",
    "restrict",
    "__restrict",
    "__restrict__",
    "extern",
    "static",
    "inline",
];

/// The words a base type is spelled with.
const KEYWORDS: &[&str] = &[
    "void", "char", "short", "int", "long", "signed", "unsigned", "float", "double", "bool",
    "_Bool",
];

/// The typedef names known, with their types on x86-64 (glibc's).
fn typedef(name: &str) -> Option<Base> {
    let int = |size, signed| Some(Base::Scalar(Type::Int { size, signed }));
    match name {
        "size_t" | "uintptr_t" => int(8, false),
        "ssize_t" | "off_t" | "off64_t" | "intptr_t" | "ptrdiff_t" | "time_t" => int(8, true),
        "pid_t" => int(4, true),
        "uid_t" | "gid_t" | "socklen_t" => int(4, false),
        "mode_t" => Some(Base::Scalar(Type::Octal { size: 4 })),
        "int8_t" => Some(Base::Byte(Type::Int {
            size: 1,
            signed: true,
        })),
        "uint8_t" => Some(Base::Byte(Type::Int {
            size: 1,
            signed: false,
        })),
        "int16_t" => int(2, true),
        "uint16_t" => int(2, false),
        "int32_t" => int(4, true),
        "uint32_t" => int(4, false),
        "int64_t" => int(8, true),
        "uint64_t" => int(8, false),
        "FILE" | "DIR" => Some(Base::Opaque(name.to_string())),
        _ => None,
    }
}

/// A type before its pointers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Base {
    /// `void`.
    Void,
    /// A one-byte character type (`char`, `signed char`, `unsigned char`):
    /// a pointer to it is a C string, as DWARF has it.
    Char(Type),
    /// `int8_t`, `uint8_t`: one byte, but numbers.
    Byte(Type),
    /// Any other scalar.
    Scalar(Type),
    /// `struct point`, `union u`, `enum color`, `FILE`: behind a pointer only.
    Opaque(String),
}

/// The specifier words of one type, counted.
#[derive(Default)]
struct Words {
    sign: Option<bool>,
    short: usize,
    long: usize,
    int: usize,
    char: usize,
    void: usize,
    float: usize,
    double: usize,
    bool: usize,
    named: Option<Base>,
    /// How many words, the named type included.
    any: usize,
}

impl Words {
    fn base(&self) -> Option<Base> {
        let int = |size, signed| Base::Scalar(Type::Int { size, signed });
        let signed = self.sign.unwrap_or(true);
        let counts = (
            self.short,
            self.long,
            self.int,
            self.char,
            self.void,
            self.float,
            self.double,
            self.bool,
        );
        if let Some(named) = &self.named {
            return (self.any == 1).then(|| named.clone());
        }
        Some(match (self.sign, counts) {
            (None, (0, 0, 0, 0, 1, 0, 0, 0)) => Base::Void,
            (None, (0, 0, 0, 1, 0, 0, 0, 0)) => Base::Char(Type::Char),
            (Some(s), (0, 0, 0, 1, 0, 0, 0, 0)) => Base::Char(Type::Int { size: 1, signed: s }),
            (_, (1, 0, 0 | 1, 0, 0, 0, 0, 0)) => int(2, signed),
            (_, (0, 0, 0 | 1, 0, 0, 0, 0, 0)) if self.any > 0 => int(4, signed),
            (_, (0, 1 | 2, 0 | 1, 0, 0, 0, 0, 0)) => int(8, signed),
            (None, (0, 0, 0, 0, 0, 1, 0, 0)) => Base::Scalar(Type::Float {
                size: 4,
                complex: false,
                x87: false,
            }),
            (None, (0, 0, 0, 0, 0, 0, 1, 0)) => Base::Scalar(Type::Float {
                size: 8,
                complex: false,
                x87: false,
            }),
            (None, (0, 1, 0, 0, 0, 0, 1, 0)) => Base::Scalar(Type::Float {
                size: 16,
                complex: false,
                x87: true,
            }),
            (None, (0, 0, 0, 0, 0, 0, 0, 1)) => Base::Scalar(Type::Bool { size: 1 }),
            _ => return None,
        })
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

type Parsed<T> = std::result::Result<T, Bad>;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn column(&self) -> usize {
        self.toks[self.at].1
    }

    fn next(&mut self) -> Tok {
        let tok = self.toks[self.at].0.clone();
        if tok != Tok::End {
            self.at += 1;
        }
        tok
    }

    fn bad<T>(&self, message: impl Into<String>) -> Parsed<T> {
        Err(Bad {
            column: self.column(),
            message: message.into(),
        })
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Parsed<()> {
        if *self.peek() == tok {
            self.next();
            return Ok(());
        }
        self.bad(format!("expected {what}, found {}", self.peek().show()))
    }

    /// The specifier words of a type, up to the first word that is not one
    /// (a name) or the first other token.
    fn base(&mut self) -> Parsed<Base> {
        let start = self.column();
        let mut words = Words::default();
        let mut spelled = Vec::new();
        while let Tok::Word(w) = self.peek().clone() {
            let column = self.column();
            if IGNORED.contains(&w.as_str()) {
                self.next();
                continue;
            }
            if matches!(w.as_str(), "struct" | "union" | "enum") {
                if words.any > 0 {
                    return self.bad(format!("\"{w}\" after another type word"));
                }
                self.next();
                let Tok::Word(tag) = self.peek().clone() else {
                    return self.bad(format!(
                        "expected the name of the {w}, found {}",
                        self.peek().show()
                    ));
                };
                self.next();
                words.named = Some(Base::Opaque(format!("{w} {tag}")));
                words.any += 1;
                continue;
            }
            if KEYWORDS.contains(&w.as_str()) {
                let count = match w.as_str() {
                    "signed" | "unsigned" => {
                        if words.sign.is_some() {
                            return self.bad(format!("\"{w}\" given twice, or with its opposite"));
                        }
                        words.sign = Some(w == "signed");
                        None
                    }
                    "short" => Some(&mut words.short),
                    "long" => Some(&mut words.long),
                    "int" => Some(&mut words.int),
                    "char" => Some(&mut words.char),
                    "void" => Some(&mut words.void),
                    "float" => Some(&mut words.float),
                    "double" => Some(&mut words.double),
                    _ => Some(&mut words.bool),
                };
                if let Some(c) = count {
                    *c += 1;
                }
                words.any += 1;
                spelled.push(w);
                self.next();
                continue;
            }
            if words.any > 0 {
                // The type is complete: this is the declarator's name.
                break;
            }
            match typedef(&w) {
                Some(t) => {
                    words.named = Some(t);
                    words.any += 1;
                    self.next();
                }
                None => {
                    return Err(Bad {
                        column,
                        message: format!("unknown type \"{w}\""),
                    })
                }
            }
        }
        if words.any == 0 {
            return self.bad(format!("expected a type, found {}", self.peek().show()));
        }
        match words.base() {
            Some(base) => Ok(base),
            None => Err(Bad {
                column: start,
                message: match &words.named {
                    Some(_) => "a type name cannot be combined with other type words".into(),
                    None => format!("\"{}\" is not a type", spelled.join(" ")),
                },
            }),
        }
    }

    /// `*`s (each with its qualifiers): how many.
    fn pointers(&mut self) -> usize {
        let mut n = 0;
        loop {
            match self.peek() {
                Tok::Star => n += 1,
                Tok::Word(w) if n > 0 && IGNORED.contains(&w.as_str()) => {}
                _ => return n,
            }
            self.next();
        }
    }

    /// A name, `ns::Class::method` for a C++ one.
    fn name(&mut self) -> Parsed<String> {
        let mut name = String::new();
        loop {
            match self.peek().clone() {
                Tok::Word(w) => {
                    name.push_str(&w);
                    self.next();
                }
                other => {
                    return self.bad(format!(
                        "expected the function's name, found {}",
                        other.show()
                    ))
                }
            }
            if *self.peek() != Tok::Scope {
                return Ok(name);
            }
            self.next();
            name.push_str("::");
        }
    }

    /// One parameter, named or not.
    fn parameter(&mut self) -> Parsed<Param> {
        let column = self.column();
        let base = self.base()?;
        let mut depth = self.pointers();
        let mut name = None;
        if *self.peek() == Tok::Open {
            // A function pointer: `int (*cmp)(const void *, const void *)`.
            self.next();
            self.expect(Tok::Star, "\"*\" (a function pointer)")?;
            while matches!(self.peek(), Tok::Word(w) if IGNORED.contains(&w.as_str())) {
                self.next();
            }
            if let Tok::Word(w) = self.peek().clone() {
                name = Some(w);
                self.next();
            }
            self.expect(Tok::Close, "\")\"")?;
            self.expect(Tok::Open, "the function pointer's parameters")?;
            let mut open = 1;
            while open > 0 {
                match self.next() {
                    Tok::Open => open += 1,
                    Tok::Close => open -= 1,
                    Tok::End => return self.bad("expected \")\", found the end"),
                    _ => {}
                }
            }
            return Ok(Param {
                name,
                ty: Type::Pointer { string: false },
            });
        }
        if *self.peek() == Tok::Other('&') {
            return self.bad("a C++ reference: write it as a pointer (T *)");
        }
        if let Tok::Word(w) = self.peek().clone() {
            name = Some(w);
            self.next();
        }
        // `char s[]`, `int v[4]`: passed as a pointer.
        while *self.peek() == Tok::OpenSquare {
            self.next();
            if matches!(self.peek(), Tok::Number | Tok::Word(_)) {
                self.next();
            }
            self.expect(Tok::CloseSquare, "\"]\"")?;
            depth += 1;
        }
        let ty = typed(base, depth).map_err(|message| Bad { column, message })?;
        if ty == Type::Void {
            return Err(Bad {
                column,
                message: "a parameter cannot be void (write (void) for none)".into(),
            });
        }
        Ok(Param { name, ty })
    }
}

/// The type of `base` behind `depth` pointers; the error says why there
/// is none.
fn typed(base: Base, depth: usize) -> std::result::Result<Type, String> {
    Ok(match (base, depth) {
        (Base::Char(_), 1) => Type::Pointer { string: true },
        (_, 1..) => Type::Pointer { string: false },
        (Base::Void, 0) => Type::Void,
        (Base::Char(t) | Base::Byte(t) | Base::Scalar(t), 0) => t,
        (Base::Opaque(name), 0) if name.starts_with("enum ") => {
            return Err(format!(
                "{name} by value: its size is not known here; give it as int, or as a \
                 pointer ({name} *)"
            ))
        }
        (Base::Opaque(name), 0) => {
            return Err(format!(
                "{name} by value: its layout is not known here, so neither is where it is \
                 passed; only a pointer to one can be given ({name} *)"
            ))
        }
    })
}

/// Parses one declaration: the function's name and its signature.
pub(crate) fn parse(decl: &str) -> std::result::Result<(String, Signature), Bad> {
    let mut p = Parser {
        toks: tokens(decl),
        at: 0,
    };
    let column = p.column();
    let base = p.base()?;
    let depth = p.pointers();
    let ret = typed(base, depth).map_err(|message| Bad { column, message })?;
    let name = p.name()?;
    p.expect(Tok::Open, "\"(\" after the function's name")?;
    let mut params = Vec::new();
    let mut variadic = false;
    let void_alone = p.toks.get(p.at + 1).map(|t| &t.0) == Some(&Tok::Close)
        && *p.peek() == Tok::Word("void".into());
    if void_alone {
        p.next();
    }
    if *p.peek() != Tok::Close {
        loop {
            if *p.peek() == Tok::Ellipsis {
                p.next();
                variadic = true;
                break;
            }
            params.push(p.parameter()?);
            match p.peek() {
                Tok::Comma => {
                    p.next();
                }
                _ => break,
            }
        }
    }
    let what = match variadic {
        true => "\")\" after \"...\"",
        false => "\",\" or \")\"",
    };
    p.expect(Tok::Close, what)?;
    if *p.peek() == Tok::Semicolon {
        p.next();
    }
    if *p.peek() != Tok::End {
        return p.bad(format!(
            "unexpected {} after the declaration",
            p.peek().show()
        ));
    }
    Ok((
        name,
        Signature {
            params,
            variadic,
            ret,
            described: None,
            located: Default::default(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(size: u64, signed: bool) -> Type {
        Type::Int { size, signed }
    }

    fn float(size: u64) -> Type {
        Type::Float {
            size,
            complex: false,
            x87: size == 16,
        }
    }

    /// The type of the only parameter of `void f(DECL)`.
    fn param(decl: &str) -> Type {
        let (_, sig) = parse(&format!("void f({decl})"))
            .unwrap_or_else(|e| panic!("{decl}: {} at {}", e.message, e.column));
        assert_eq!(sig.params.len(), 1, "{decl}");
        sig.params[0].ty.clone()
    }

    fn bad(decl: &str) -> (usize, String) {
        match parse(decl) {
            Ok(got) => panic!("{decl} parsed: {got:?}"),
            Err(b) => (b.column, b.message),
        }
    }

    #[test]
    fn every_integer_spelling() {
        for (spelled, ty) in [
            ("char", Type::Char),
            ("signed char", int(1, true)),
            ("unsigned char", int(1, false)),
            ("char unsigned", int(1, false)),
            ("short", int(2, true)),
            ("short int", int(2, true)),
            ("signed short", int(2, true)),
            ("unsigned short", int(2, false)),
            ("unsigned short int", int(2, false)),
            ("int", int(4, true)),
            ("signed", int(4, true)),
            ("signed int", int(4, true)),
            ("unsigned", int(4, false)),
            ("unsigned int", int(4, false)),
            ("long", int(8, true)),
            ("long int", int(8, true)),
            ("signed long", int(8, true)),
            ("unsigned long", int(8, false)),
            ("long unsigned int", int(8, false)),
            ("long long", int(8, true)),
            ("long long int", int(8, true)),
            ("signed long long", int(8, true)),
            ("unsigned long long", int(8, false)),
            ("const volatile int", int(4, true)),
        ] {
            assert_eq!(param(spelled), ty, "{spelled}");
            assert_eq!(param(&format!("{spelled} x")), ty, "{spelled} x");
        }
    }

    #[test]
    fn typedefs_bool_and_floats() {
        for (spelled, ty) in [
            ("size_t", int(8, false)),
            ("ssize_t", int(8, true)),
            ("off_t", int(8, true)),
            ("pid_t", int(4, true)),
            ("uid_t", int(4, false)),
            ("gid_t", int(4, false)),
            ("mode_t", Type::Octal { size: 4 }),
            ("bool", Type::Bool { size: 1 }),
            ("_Bool", Type::Bool { size: 1 }),
            ("int8_t", int(1, true)),
            ("uint8_t", int(1, false)),
            ("int16_t", int(2, true)),
            ("uint16_t", int(2, false)),
            ("int32_t", int(4, true)),
            ("uint32_t", int(4, false)),
            ("int64_t", int(8, true)),
            ("uint64_t", int(8, false)),
            ("float", float(4)),
            ("double", float(8)),
            ("long double", float(16)),
        ] {
            assert_eq!(param(spelled), ty, "{spelled}");
            assert_eq!(param(&format!("const {spelled} v")), ty, "{spelled} v");
        }
    }

    #[test]
    fn pointers_strings_and_opaque_types() {
        let string = Type::Pointer { string: true };
        let pointer = Type::Pointer { string: false };
        for (spelled, ty) in [
            ("char *s", &string),
            ("const char *s", &string),
            ("char const *s", &string),
            ("const char *const restrict s", &string),
            ("unsigned char *", &string),
            ("signed char*s", &string),
            ("char s[]", &string),
            ("const char name[16]", &string),
            ("char **argv", &pointer),
            ("char *argv[]", &pointer),
            ("uint8_t *buf", &pointer),
            ("void *p", &pointer),
            ("const void *", &pointer),
            ("int *out", &pointer),
            ("double *", &pointer),
            ("struct point *p", &pointer),
            ("const struct stat *st", &pointer),
            ("union u *", &pointer),
            ("enum color *c", &pointer),
            ("FILE *stream", &pointer),
            ("DIR *", &pointer),
            ("int (*cmp)(const void *, const void *)", &pointer),
            ("void (*)(int)", &pointer),
        ] {
            assert_eq!(param(spelled), *ty, "{spelled}");
        }
    }

    #[test]
    fn names_optional_void_variadic_return_types() {
        let (name, sig) = parse("int parse(const char *s, size_t n)").unwrap();
        assert_eq!(name, "parse");
        let names: Vec<Option<&str>> = sig.params.iter().map(|p| p.name.as_deref()).collect();
        assert_eq!(names, [Some("s"), Some("n")]);
        assert_eq!(sig.ret, int(4, true));
        assert!(!sig.variadic);
        assert_eq!(sig.described, None);

        let (_, sig) = parse("int parse(const char *, size_t);").unwrap();
        let names: Vec<Option<&str>> = sig.params.iter().map(|p| p.name.as_deref()).collect();
        assert_eq!(names, [None, None]);

        for decl in [
            "void nothing(void)",
            "void nothing()",
            "  void nothing ( void ) ; ",
        ] {
            let (name, sig) = parse(decl).unwrap();
            assert_eq!((name.as_str(), sig.params.len()), ("nothing", 0), "{decl}");
            assert_eq!(sig.ret, Type::Void, "{decl}");
        }

        let (_, sig) = parse("int printf(const char *fmt, ...)").unwrap();
        assert_eq!(sig.params.len(), 1);
        assert!(sig.variadic);
        let (_, sig) = parse("int anything(...)").unwrap();
        assert!(sig.params.is_empty() && sig.variadic);

        for (decl, ret) in [
            (
                "char *getenv(const char *name)",
                Type::Pointer { string: true },
            ),
            ("const char *name_of(int c)", Type::Pointer { string: true }),
            ("void *malloc(size_t)", Type::Pointer { string: false }),
            (
                "struct tm *localtime(const time_t *t)",
                Type::Pointer { string: false },
            ),
            ("extern double mixed(double x, int a)", float(8)),
            ("static inline unsigned long long f(void)", int(8, false)),
            ("mode_t umask(mode_t mask)", Type::Octal { size: 4 }),
            ("bool flip(bool b)", Type::Bool { size: 1 }),
        ] {
            assert_eq!(parse(decl).unwrap().1.ret, ret, "{decl}");
        }

        let (name, _) = parse("int ns::Parser::parse(const char *s)").unwrap();
        assert_eq!(name, "ns::Parser::parse");
    }

    #[test]
    fn errors_say_what_and_where() {
        for (decl, column, message) in [
            ("int parse(cons char *s)", 11, "unknown type \"cons\""),
            ("foo parse(int x)", 1, "unknown type \"foo\""),
            ("int parse(int x, strin *s)", 18, "unknown type \"strin\""),
            (
                "int area(struct point p)",
                10,
                "struct point by value: its layout is not known here, so neither is where it \
                 is passed; only a pointer to one can be given (struct point *)",
            ),
            (
                "union u get(void)",
                1,
                "union u by value: its layout is not known here, so neither is where it is \
                 passed; only a pointer to one can be given (union u *)",
            ),
            (
                "int paint(enum color c)",
                11,
                "enum color by value: its size is not known here; give it as int, or as a \
                 pointer (enum color *)",
            ),
            (
                "FILE open_it(void)",
                1,
                "FILE by value: its layout is not known here, so neither is where it is \
                 passed; only a pointer to one can be given (FILE *)",
            ),
            (
                "int f(void x)",
                7,
                "a parameter cannot be void (write (void) for none)",
            ),
            (
                "int f(int, void)",
                12,
                "a parameter cannot be void (write (void) for none)",
            ),
            ("short char f(int)", 1, "\"short char\" is not a type"),
            ("int f(long short x)", 7, "\"long short\" is not a type"),
            (
                "int f(long long long x)",
                7,
                "\"long long long\" is not a type",
            ),
            (
                "int f(unsigned float x)",
                7,
                "\"unsigned float\" is not a type",
            ),
            (
                "int f(signed unsigned x)",
                14,
                "\"unsigned\" given twice, or with its opposite",
            ),
            (
                "int f(unsigned size_t x)",
                23,
                "expected \",\" or \")\", found \"x\"",
            ),
            (
                "int (int x)",
                5,
                "expected the function's name, found \"(\"",
            ),
            (
                "int f",
                6,
                "expected \"(\" after the function's name, found the end",
            ),
            ("int f(int x", 12, "expected \",\" or \")\", found the end"),
            (
                "int f(int x) x",
                14,
                "unexpected \"x\" after the declaration",
            ),
            (
                "int f(..., int x)",
                10,
                "expected \")\" after \"...\", found \",\"",
            ),
            ("int f(int x,)", 13, "expected a type, found \")\""),
            ("int f(const)", 12, "expected a type, found \")\""),
            ("", 1, "expected a type, found the end"),
            ("int f(int @x)", 11, "expected \",\" or \")\", found '@'"),
            ("int f(int x) {", 14, "unexpected '{' after the declaration"),
            ("int f(const string &s)", 13, "unknown type \"string\""),
            (
                "int f(int &x)",
                11,
                "a C++ reference: write it as a pointer (T *)",
            ),
            (
                "int f(long struct s *p)",
                12,
                "\"struct\" after another type word",
            ),
            (
                "int f(struct *p)",
                14,
                "expected the name of the struct, found \"*\"",
            ),
            ("int f(char s[)", 14, "expected \"]\", found \")\""),
        ] {
            assert_eq!(bad(decl), (column, message.to_string()), "{decl}");
        }
    }

    #[test]
    fn messages_of_the_command_line() {
        let mut p = Prototypes::new();
        let e = p.add("int parse(cons char *s)").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--proto 'int parse(cons char *s)': unknown type \"cons\" at column 11"
        );
        // One line, whatever the declaration holds.
        let e = p.add("int f(in\nt x)").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--proto 'int f(in\\nt x)': unknown type \"in\" at column 7"
        );
        let text = "// parsers\n\nint parse(const char *s); # the one\nlong tell(FIL *f)\n";
        let e = p.add_file("protos.h", text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--proto-file protos.h:4:11: unknown type \"FIL\""
        );
        assert!(p.is_empty(), "nothing is added by a declaration that fails");
    }

    /// A declaration renders as DWARF's signature does: names, strings, a
    /// `mode_t` in octal, and the `...` of a variadic function.
    #[test]
    fn rendered_through_the_dwarf_path() {
        use crate::addr::RuntimeAddr;
        use crate::arch::Regs;
        let (_, sig) =
            parse("int openat(int dirfd, const char *path, int flags, mode_t m, ...)").unwrap();
        let mut regs = Regs::default();
        for (n, v) in [(-100i64) as u64, 0x1000, 0o101, 0o644, 7, 7]
            .into_iter()
            .enumerate()
        {
            regs.set_arg(n, v);
        }
        let read = |_: RuntimeAddr, max: usize| -> Result<(Vec<u8>, bool)> {
            Ok((b"out.txt"[..max.min(7)].to_vec(), max > 7))
        };
        let args = crate::output::render::dwarf_args(
            &sig,
            &regs,
            &|_| None,
            &|_, _| None,
            &read,
            crate::output::DEFAULT_STRING_LIMIT,
        );
        assert_eq!(
            args.text(),
            "dirfd=-100, path=\"out.txt\", flags=65, m=0644, ..."
        );
        assert_eq!(
            args.raw,
            [
                Some((-100i64) as u64),
                Some(0x1000),
                Some(0o101),
                Some(0o644),
                None
            ]
        );
    }

    fn site(symbol: &str, name: &str) -> Site {
        Site {
            probe: symbol.into(),
            id: crate::handler::ProbeId(0),
            kind: crate::handler::ProbeKind::Function { returns: true },
            symbol: symbol.into(),
            name: name.into(),
            offset: 0,
            module: "/bin/x".into(),
            address: crate::addr::RuntimeAddr(0x1000),
        }
    }

    #[test]
    fn files_with_comments_and_lookup_by_name() {
        let mut p = Prototypes::new();
        let text = "\
# libparse
// the entry points
int parse(const char *s, size_t n);   // returns the count
   long tell(FILE *f)

int ns::Parser::feed(const char *s)
";
        p.add_file("protos.h", text).unwrap();
        assert_eq!(p.len(), 3);
        let parse = p.get(&site("parse", "parse")).expect("parse");
        assert_eq!(parse.params.len(), 2);
        assert!(p.get(&site("parse@@LIB_1.0", "parse@@LIB_1.0")).is_some());
        assert!(p.get(&site("tell", "tell")).is_some());
        assert!(p.get(&site("parser", "parser")).is_none());
        // C++: by the demangled name, with or without its parameter types.
        let feed = site("ns::Parser::feed(char const*)", "ns::Parser::feed");
        assert!(p.get(&feed).is_some());
        let overloaded = site(
            "ns::Parser::feed(char const*)",
            "ns::Parser::feed(char const*)",
        );
        assert!(p.get(&overloaded).is_some());
        // A later declaration replaces an earlier one.
        p.add("void parse(void)").unwrap();
        assert!(p.get(&site("parse", "parse")).unwrap().params.is_empty());
    }
}
