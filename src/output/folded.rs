//! `--folded FILE` and `--flamegraph FILE.svg`: the stacks of every probe hit,
//! counted, written when tracing ends.
//!
//! [`StackCounter`] is an ordinary handler: attached to the probes, it walks
//! the hitting thread's stack at each entry and instruction hit and counts
//! the stack; registered as a listener too, it writes at `on_finish` (once).
//! The folded format is the one `stackcollapse-*.pl` write and
//! `flamegraph.pl` and inferno read: one line per distinct stack, its frames
//! root first joined by `;`, a space, the count (`main;a;b;c 3`), lines in
//! byte order. The leaf is the probed function (the site's name: for an
//! IFUNC probe, the name probed, not the implementation's). A frame without
//! a symbol is `[libfoo.so]` by its module's file name, `[unknown]` outside
//! every module. A stack cut by the depth limit starts at its outermost
//! frame found.
//!
//! It never fails a hit: the counts are memory only until the end, where a
//! write error is an [`Error::Output`].

use std::collections::HashMap;
use std::io::Write;

use crate::error::{Error, Result};
use crate::handler::{Fast, Handler, Hit, Site};
use crate::symbols::Module;
use crate::unwind::{Frame, Stack};

/// Counts stacks at probe hits; writes them folded and/or as a flame graph.
pub struct StackCounter {
    depth: usize,
    counts: HashMap<String, u64>,
    folded: Option<Box<dyn Write>>,
    flamegraph: Option<Box<dyn Write>>,
    finished: bool,
}

impl StackCounter {
    /// A counter walking at most `depth` frames per hit, writing the folded
    /// stacks to `folded` and an SVG flame graph to `flamegraph` at the end.
    pub fn new(
        depth: usize,
        folded: Option<Box<dyn Write>>,
        flamegraph: Option<Box<dyn Write>>,
    ) -> StackCounter {
        StackCounter {
            depth,
            counts: HashMap::new(),
            folded,
            flamegraph,
            finished: false,
        }
    }

    /// Counts one stack, whose innermost frame is in `leaf`.
    pub fn count(&mut self, stack: &Stack, leaf: &str) {
        let key = folded_line(stack, leaf);
        *self.counts.entry(key).or_insert(0) += 1;
    }

    /// The folded lines so far, `frames count`, in byte order.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .counts
            .iter()
            .map(|(stack, n)| format!("{stack} {n}"))
            .collect();
        lines.sort_unstable();
        lines
    }
}

/// The name of a frame in a folded stack. `;` separates frames, so one in a
/// name (none in C, C++ or Rust names; possible in anything else) becomes `:`.
fn frame_name(f: &Frame) -> String {
    let name = match (&f.symbol, &f.module) {
        (Some(sym), _) => sym.to_string(),
        (None, Some(m)) => format!(
            "[{}]",
            m.file_name()
                .map_or_else(|| m.to_string_lossy(), |n| n.to_string_lossy())
        ),
        (None, None) => "[unknown]".to_string(),
    };
    name.replace(';', ":")
}

/// `root;…;caller;leaf`: the frames outermost first, the innermost one
/// named `leaf` (when it is not empty).
fn folded_line(stack: &Stack, leaf: &str) -> String {
    let mut names: Vec<String> = stack.frames.iter().rev().map(frame_name).collect();
    match names.last_mut() {
        Some(last) if !leaf.is_empty() => *last = leaf.replace(';', ":"),
        Some(_) => {}
        None => names.push(leaf.replace(';', ":")),
    }
    names.join(";")
}

impl Handler for StackCounter {
    fn fast(&mut self, _: &Site, _: Option<&Module>) -> Fast {
        Fast::No("a stack is walked on the stopped thread".into())
    }

    /// Stacks are counted at the entry: a return needs nothing.
    fn returns(&mut self, _: &Site, _: Option<&Module>) -> crate::handler::Returns {
        crate::handler::Returns::Record {
            string: 0,
            errno: false,
        }
    }

    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let stack = hit.user_stack(self.depth);
        self.count(&stack, &hit.site().symbol);
        Ok(())
    }

    fn on_finish(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        let lines = self.lines();
        if let Some(w) = &mut self.folded {
            for line in &lines {
                writeln!(w, "{line}").map_err(Error::Output)?;
            }
            w.flush().map_err(Error::Output)?;
        }
        if let Some(w) = &mut self.flamegraph {
            let mut opts = inferno::flamegraph::Options::default();
            opts.title = "rtrace: stacks at probe hits".into();
            opts.count_name = "hits".into();
            // Colours from the names, not a random generator: the same
            // stacks give the same picture.
            opts.hash = true;
            opts.deterministic = true;
            match inferno::flamegraph::from_lines(
                &mut opts,
                lines.iter().map(String::as_str),
                &mut *w,
            ) {
                Ok(()) => {}
                // No hit at all: inferno has written an SVG saying there was
                // no input, which is the truth; the trace itself went fine.
                Err(e) if lines.is_empty() && e.kind() == std::io::ErrorKind::InvalidData => {}
                Err(e) => return Err(Error::Output(e)),
            }
            w.flush().map_err(Error::Output)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::addr::RuntimeAddr;
    use crate::output::testutil::SharedBuf;
    use crate::unwind::FrameSource;

    fn frame(symbol: Option<&str>, module: Option<&str>) -> Frame {
        Frame {
            address: RuntimeAddr(0x401000),
            symbol: symbol.map(Arc::from),
            offset: 0,
            module: module.map(PathBuf::from),
            file: None,
            line: None,
            source: FrameSource::Cfi,
        }
    }

    fn stack(frames: Vec<Frame>) -> Stack {
        Stack {
            frames,
            truncated: false,
        }
    }

    #[test]
    fn folded_lines_are_root_first_counted_and_sorted() {
        let exe = Some("/tmp/stacker");
        let libc = Some("/usr/lib/x86_64-linux-gnu/libc.so.6");
        let through_qsort = stack(vec![
            frame(Some("__strlen_avx2"), libc),
            frame(Some("cmp"), exe),
            frame(None, libc),
            frame(Some("main"), exe),
            frame(None, None),
        ]);
        let direct = stack(vec![frame(Some("c"), exe), frame(Some("main"), exe)]);
        let mut c = StackCounter::new(64, None, None);
        for _ in 0..3 {
            c.count(&direct, "c");
        }
        c.count(&through_qsort, "strlen");
        c.count(&through_qsort, "strlen");
        assert_eq!(
            c.lines(),
            ["[unknown];main;[libc.so.6];cmp;strlen 2", "main;c 3"]
        );
    }

    #[test]
    fn names_cannot_break_the_format() {
        let s = stack(vec![
            frame(Some("a;b"), None),
            frame(Some("ns::f(int) const"), None),
        ]);
        assert_eq!(folded_line(&s, ""), "ns::f(int) const;a:b");
        assert_eq!(folded_line(&stack(vec![]), "leaf"), "leaf");
    }

    /// The text of every `<title>` of an SVG, which must be well-formed XML.
    fn svg_titles(svg: &str) -> Vec<String> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(svg);
        reader.config_mut().check_end_names = true;
        let (mut titles, mut in_title, mut depth) = (Vec::new(), false, 0i32);
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) => {
                    depth += 1;
                    in_title = e.name().as_ref() == b"title";
                }
                Event::End(_) => {
                    depth -= 1;
                    in_title = false;
                }
                Event::Text(t) if in_title => {
                    titles.push(t.decode().expect("UTF-8").into_owned());
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0, "every element closed");
        titles
    }

    #[test]
    fn written_once_at_the_end_as_folded_and_svg() {
        let folded = SharedBuf::default();
        let svg = SharedBuf::default();
        let mut c = StackCounter::new(
            64,
            Some(Box::new(folded.clone())),
            Some(Box::new(svg.clone())),
        );
        let s = stack(vec![frame(Some("c"), None), frame(Some("main"), None)]);
        c.count(&s, "c");
        c.on_finish().unwrap();
        c.on_finish().unwrap();
        assert_eq!(folded.text(), "main;c 1\n");
        let svg = svg.text();
        assert!(svg.starts_with("<?xml"), "{svg}");
        let titles = svg_titles(&svg);
        assert!(
            titles.contains(&"main (1 hits, 100.00%)".to_string()),
            "{titles:?}"
        );
        assert!(
            titles.contains(&"c (1 hits, 100.00%)".to_string()),
            "{titles:?}"
        );
        // No hit: an SVG that says so, and no error.
        let svg = SharedBuf::default();
        let mut empty = StackCounter::new(64, None, Some(Box::new(svg.clone())));
        empty.on_finish().unwrap();
        assert!(svg.text().contains("No valid input"));
    }
}
