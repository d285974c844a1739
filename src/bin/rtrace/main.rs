//! The `rtrace` command: parse the command line, build a tracer, run it, map the
//! outcome to an exit status (or, with `--generate`, write the man page or a
//! completion script: `generate.rs`). Everything else lives in the library.

mod args;
mod generate;
mod writer;

use std::cell::RefCell;
use std::io::IsTerminal;
use std::process::{Command, ExitCode};
use std::rc::Rc;

use rtrace::output::{Format, Printer, PrinterOptions, ProgressLine, StackCounter, Timeline, Tui};
use rtrace::script::{ScriptListener, ScriptProbe};
use rtrace::{
    Aggregate, Both, Fast, Handler, Hit, Options, Outcome, Overflow, ProbeId, ProbeSpec, Return,
    Tracer,
};

use args::{Cli, ColorWhen, Target};

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let word = argv.get(1).and_then(|a| a.to_str()).map(str::to_string);
    let done = match word.as_deref() {
        Some(word @ ("replay" | "report")) => match args::parse_replay(argv, word == "report") {
            // A reader that has seen enough (`| head`) ends the replay, as
            // it ends `cat`: quietly.
            Ok(cli) => match replay(cli) {
                Err(rtrace::Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    Ok(0)
                }
                done => done,
            },
            Err(code) => return code,
        },
        Some("record") => match args::parse_record(argv) {
            Ok(cli) => run(cli),
            Err(code) => return code,
        },
        _ => match args::parse() {
            Ok(cli) => run(cli),
            Err(code) => return code,
        },
    };
    match done {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}

/// One line: what went wrong, then what to do about it.
fn report(e: &rtrace::Error) {
    match e.hint() {
        Some(hint) => say(&format!("rtrace: {e} ({hint})")),
        None => say(&format!("rtrace: {e}")),
    }
}

/// Writes one line to stderr. If stderr itself is gone (a closed pipe, a full
/// disk: perhaps the very error being reported) there is nowhere left to say
/// it: the line is dropped, and the exit status still tells.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The printer (and the timeline) is shared: each probe gets a `Forward` to
/// it, and it is also the listener (lifecycle events, idle flushes, the
/// summary at the end). Only the listener registration sees `on_finish`, so
/// the summary is printed, and the timeline closed, once.
struct Forward<H>(Rc<RefCell<H>>);

/// A probe's handler, and the stack counter of `--folded`/`--flamegraph`
/// after it, on the same hit: the stack the printer walked for `--stack` is
/// the one counted, walked once. The counter is a listener too, for its
/// `on_finish`.
struct Counted<H> {
    inner: H,
    counter: Option<Rc<RefCell<StackCounter>>>,
}

impl<H: Handler> Handler for Counted<H> {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.inner.on_entry(hit)?;
        match &self.counter {
            Some(c) => c.borrow_mut().on_entry(hit),
            None => Ok(()),
        }
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.inner.on_post(hit)
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        self.inner.on_return(ret)
    }
    fn fast(&mut self, site: &rtrace::Site, module: Option<&rtrace::symbols::Module>) -> Fast {
        match &self.counter {
            Some(c) => c.borrow_mut().fast(site, module),
            None => self.inner.fast(site, module),
        }
    }
    fn returns(
        &mut self,
        site: &rtrace::Site,
        module: Option<&rtrace::symbols::Module>,
    ) -> rtrace::Returns {
        let inner = self.inner.returns(site, module);
        match &self.counter {
            Some(c) => rtrace::Returns::both(inner, c.borrow_mut().returns(site, module)),
            None => inner,
        }
    }
    fn on_aggregate(&mut self, site: &rtrace::Site, counts: &Aggregate) -> rtrace::Result<()> {
        self.inner.on_aggregate(site, counts)
    }
}

impl<H: Handler> Handler for Forward<H> {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().on_entry(hit)
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().on_post(hit)
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().on_return(ret)
    }
    fn fast(&mut self, site: &rtrace::Site, module: Option<&rtrace::symbols::Module>) -> Fast {
        self.0.borrow_mut().fast(site, module)
    }
    fn returns(
        &mut self,
        site: &rtrace::Site,
        module: Option<&rtrace::symbols::Module>,
    ) -> rtrace::Returns {
        self.0.borrow_mut().returns(site, module)
    }
    fn on_aggregate(&mut self, site: &rtrace::Site, counts: &Aggregate) -> rtrace::Result<()> {
        self.0.borrow_mut().on_aggregate(site, counts)
    }
}

/// `--inject`: the injector of one rule and the printer on the same probe. A
/// return the injector skipped is marked before the printer reports it.
struct Injecting {
    injector: rtrace::inject::Injector,
    printer: Rc<RefCell<Printer>>,
    /// Told too: its handler runs right after this one, on the same return.
    timeline: Option<Rc<RefCell<Timeline>>>,
}

impl Handler for Injecting {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.printer.borrow_mut().on_entry(hit)?;
        self.injector.on_entry(hit)
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.injector.on_post(hit)?;
        self.printer.borrow_mut().on_post(hit)
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        let mut printer = self.printer.borrow_mut();
        if let Some(injected) = self.injector.take_injected(ret) {
            printer.mark_injected(injected.errno);
            if let Some(t) = &self.timeline {
                t.borrow_mut().mark_injected(injected.errno);
            }
        }
        printer.on_return(ret)
    }
    fn fast(&mut self, _: &rtrace::Site, _: Option<&rtrace::symbols::Module>) -> Fast {
        Fast::No("fault injection changes registers".into())
    }
}

/// `--list`: prints the probe points of every spec, one per line, fields
/// separated by tabs (a C++ name may contain spaces): `ADDRESS MODULE
/// FUNCTION[+OFFSET]`, then `FILE:LINE` when known, then `ifunc NAME` for an
/// IFUNC's implementation or `ifunc NAME resolver` when only its resolver is
/// known, and `not probed: WHY` for what the spec names but rtrace leaves
/// alone (a `.cold` fragment). Nothing is traced; the program is not run. To stdout, or to the
/// file `-o` names.
fn list(cli: &Cli) -> rtrace::Result<u8> {
    use rtrace::listing::{list, ListIn};
    use std::io::Write;
    let listed = match &cli.target {
        Target::Attach(pids) => list(&cli.list, ListIn::Process(pids[0]))?,
        Target::Launch(argv) => {
            let program = rtrace::find_program(&argv[0])?;
            list(&cli.list, ListIn::Program(&program))?
        }
    };
    let mut out = String::new();
    for l in listed {
        let loc = &l.location;
        let module = loc
            .module
            .file_name()
            .map_or_else(|| loc.module.to_string_lossy(), |n| n.to_string_lossy());
        out.push_str(&format!("{}\t{module}\t{}", loc.addr, loc.symbol));
        if loc.offset > 0 {
            out.push_str(&format!("+{:#x}", loc.offset));
        }
        if let Some((file, line)) = &l.line {
            out.push_str(&format!("\t{}:{line}", file.display()));
        }
        match (&l.ifunc, l.at_resolver) {
            (Some(name), false) => out.push_str(&format!("\tifunc {name}")),
            (Some(name), true) => out.push_str(&format!("\tifunc {name} resolver")),
            (None, _) => {}
        }
        if let Some(why) = l.skipped {
            out.push_str(&format!("\tnot probed: {why}"));
        }
        out.push('\n');
    }
    match cli.output.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(path) => std::fs::write(path, out.as_bytes())
            .map_err(|e| rtrace::Error::io(format!("cannot write {}", path.display()), e))?,
        None => std::io::stdout()
            .write_all(out.as_bytes())
            .map_err(rtrace::Error::Output)?,
    }
    Ok(0)
}

/// Adds a probe with its handler, and with the timeline beside it (each with
/// its own data slot) when there is one.
fn add_probe(
    tracer: &mut Tracer,
    spec: ProbeSpec,
    handler: impl Handler + 'static,
    timeline: Option<&Rc<RefCell<Timeline>>>,
    counter: Option<&Rc<RefCell<StackCounter>>>,
) -> rtrace::Result<ProbeId> {
    let handler = Counted {
        inner: handler,
        counter: counter.cloned(),
    };
    match timeline {
        Some(t) => tracer.add_probe(spec, Both(handler, Forward(t.clone()))),
        None => tracer.add_probe(spec, handler),
    }
}

/// The file of `-o FILE` (a live run's or a replay's events). A regular
/// file is written by a thread of its own: the kernel's copy of the events
/// overlaps with reading and rendering the next ones. Anything else (a
/// device, a FIFO) is written as it comes, so that it pushes back, or
/// fails, at once.
fn events_file(path: &std::path::Path) -> rtrace::Result<Box<dyn std::io::Write>> {
    events_writer(OutputFile::create(path)?, path)
}

/// The writer of events file `file`, at `path`: written from a thread of
/// its own when it is a regular file.
fn events_writer(
    file: OutputFile,
    path: &std::path::Path,
) -> rtrace::Result<Box<dyn std::io::Write>> {
    Ok(match file.file.metadata().is_ok_and(|m| m.is_file()) {
        true => Box::new(
            writer::Background::new(file)
                .map_err(|e| rtrace::Error::io(format!("cannot write {}", path.display()), e))?,
        ),
        false => Box::new(file),
    })
}

/// A recording written under another name in its directory until
/// tracing begins (the attach), then renamed to its path: until then a
/// recording already at the path stays, and stays if tracing never begins.
struct Unborn {
    written: std::path::PathBuf,
    path: std::path::PathBuf,
    born: bool,
}

impl Unborn {
    /// For the recording at `path`, the file made beside it (created new,
    /// with the mode of the one it is to replace). None when the path is
    /// not simply a file of its own to replace, or none yet: a symbolic
    /// link (`/dev/stdout`; written through), a FIFO or a device, a file
    /// with other names (hard links), a path ending in `/`, or a directory
    /// rtrace may not create in. Such a path is written to as it is.
    fn beside(path: &std::path::Path) -> Option<(Unborn, OutputFile)> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let mode = match std::fs::symlink_metadata(path) {
            // (One rtrace may not write: refused there, as always.)
            Ok(m) if m.file_type().is_file() && m.nlink() == 1 => {
                std::fs::OpenOptions::new().write(true).open(path).ok()?;
                m.mode() & 0o7777
            }
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0o666,
            Err(_) => return None,
        };
        if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
            return None;
        }
        let name = path.file_name()?.to_string_lossy();
        let written = path.with_file_name(format!(".{name}.rtrace-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&written)
            .ok()?;
        let unborn = Unborn {
            written: written.clone(),
            path: path.to_path_buf(),
            born: false,
        };
        // (Its errors name the path given.)
        let file = OutputFile {
            file,
            path: path.to_path_buf(),
        };
        Some((unborn, file))
    }
}

impl Drop for Unborn {
    /// Tracing never began (an error before it, wherever it came from):
    /// the recording made for it goes.
    fn drop(&mut self) {
        if !self.born {
            let _ = std::fs::remove_file(&self.written);
        }
    }
}

impl Handler for Unborn {
    /// Tracing begins at the first attach (events before it, warnings of
    /// the probes placed, are not a beginning).
    fn on_event(&mut self, event: &rtrace::Event, _: std::time::Duration) -> rtrace::Result<()> {
        if !self.born && matches!(event, rtrace::Event::Attached { .. }) {
            std::fs::rename(&self.written, &self.path).map_err(|e| {
                rtrace::Error::io(format!("cannot write {}", self.path.display()), e)
            })?;
            self.born = true;
        }
        Ok(())
    }
}

/// A file rtrace writes its output to (`-o`, `--perfetto`, `--folded`,
/// `--flamegraph`), whose write errors name it: `rtrace: cannot write
/// output: out.json: No space left on device (os error 28)`.
struct OutputFile {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl OutputFile {
    /// Creates (or truncates) `path`.
    fn create(path: &std::path::Path) -> rtrace::Result<OutputFile> {
        let file = std::fs::File::create(path)
            .map_err(|e| rtrace::Error::io(format!("cannot create {}", path.display()), e))?;
        Ok(OutputFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// `e`, of the same kind, saying the file.
    fn named(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }
}

impl std::io::Write for OutputFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.file.write(bytes).map_err(|e| self.named(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().map_err(|e| self.named(e))
    }
}

fn run(cli: Cli) -> rtrace::Result<u8> {
    if !cli.list.is_empty() {
        return list(&cli);
    }
    // The work before tracing (reading the program, resolving and arming
    // probes) is timed from here.
    let start = std::time::Instant::now();
    rtrace::install_detach_handlers();
    // The live view draws on stderr: events go to -o FILE, or nowhere.
    let tui = match cli.tui {
        true => Some(Rc::new(RefCell::new(
            Tui::new(cli.string_limit)?
                .with_prototypes(cli.prototypes.clone())
                .launched(matches!(cli.target, Target::Launch(_))),
        ))),
        false => None,
    };
    let mut unborn_recording = None;
    let (out, to_terminal): (Box<dyn std::io::Write>, bool) = match &cli.output {
        // `-o -`: standard output, as for strace.
        Some(path) if path.as_os_str() == "-" => {
            (Box::new(std::io::stdout()), std::io::stdout().is_terminal())
        }
        // A recording is written beside its path, and put in its place once
        // tracing begins: a run that fails before (a probe that names
        // nothing, a program that cannot be started) leaves the last
        // recording there as it was.
        // (A directory rtrace may not create in: the path itself.)
        Some(path) if cli.record => match Unborn::beside(path) {
            Some((unborn, file)) => {
                let out = events_writer(file, path)?;
                unborn_recording = Some(unborn);
                (out, false)
            }
            None => (events_file(path)?, false),
        },
        Some(path) => (events_file(path)?, false),
        None if tui.is_some() => (Box::new(std::io::sink()), false),
        None => (Box::new(std::io::stderr()), std::io::stderr().is_terminal()),
    };
    let color = colored(cli.color, to_terminal, cli.json);
    // `rtrace record`: the calls go into the recording, rendered by
    // nothing; the printer says only what a run says on stderr (attached,
    // the probes' modes, warnings).
    let (out, recorder) = match cli.record {
        true => {
            let header = serde_json::json!({
                "command": match &cli.target {
                    Target::Launch(argv) => argv
                        .iter()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect::<Vec<String>>(),
                    Target::Attach(_) => Vec::new(),
                },
                "attached": match &cli.target {
                    Target::Attach(pids) => pids.iter().map(|p| p.as_raw()).collect(),
                    Target::Launch(_) => Vec::new(),
                },
            });
            let recorder = rtrace::record::Recorder::new(
                out,
                cli.string_limit,
                cli.prototypes.clone(),
                cli.stack_depth,
                header,
            )?;
            let none: Box<dyn std::io::Write> = Box::new(std::io::sink());
            (none, Some(Rc::new(RefCell::new(recorder))))
        }
        false => (out, None),
    };
    let printer = Rc::new(RefCell::new(
        Printer::new(
            out,
            PrinterOptions {
                format: if cli.json { Format::Json } else { Format::Text },
                color,
                summary: cli.summary,
                hist: cli.hist,
                order: cli.order,
                timestamps: cli.timestamps,
                tree: cli.tree,
                string_limit: cli.string_limit,
                // On a terminal, events keep in step with the program's own
                // output; to a file or a pipe they are written in batches.
                flush_interval: (!to_terminal).then(|| std::time::Duration::from_millis(10)),
                stack_depth: cli.stack_depth,
                prototypes: cli.prototypes.clone(),
            },
        )
        .summary_once_attached(),
    ));
    // Created before anything runs, so a path that cannot be written is
    // said at once; dropped on every way out, which closes the file.
    let timeline = match &cli.perfetto {
        Some(path) => Some(Rc::new(RefCell::new(
            Timeline::new(Box::new(OutputFile::create(path)?), cli.string_limit)
                .with_prototypes(cli.prototypes.clone()),
        ))),
        None => None,
    };
    // The files of --folded and --flamegraph are made now, so a path that
    // cannot be written is an error before anything is traced.
    let create = |path: &std::path::PathBuf| -> rtrace::Result<Box<dyn std::io::Write>> {
        Ok(Box::new(std::io::BufWriter::new(OutputFile::create(path)?)))
    };
    let counter = match (&cli.folded, &cli.flamegraph) {
        (None, None) => None,
        (folded, svg) => Some(Rc::new(RefCell::new(StackCounter::new(
            cli.depth,
            folded.as_ref().map(create).transpose()?,
            svg.as_ref().map(create).transpose()?,
        )))),
    };
    let opts = Options {
        entry_only: cli.entry_only,
        follow_forks: cli.follow_forks,
        step: cli.step,
        fast: cli.fast,
        first_hit: false,
        overflow: match cli.overflow {
            args::OverflowWhen::Block => Overflow::Block,
            args::OverflowWhen::Drop => Overflow::Drop,
        },
        pass_signal_on: true,
        returns: match cli.returns {
            args::ReturnsHow::Stub => rtrace::ReturnMode::Stub,
            args::ReturnsHow::Stop => rtrace::ReturnMode::Stop,
        },
    };
    // exit() in BEGIN ends the script before any probe could fire, as in
    // bpftrace: nothing is launched or attached to; BEGIN's output, END's
    // and the maps are printed.
    if cli.script.as_ref().is_some_and(|s| s.exited_in_begin()) {
        if let Some(script) = cli.script {
            ScriptListener::new(Rc::new(RefCell::new(script)), printer).end_before_tracing()?;
        }
        return Ok(0);
    }
    let mut tracer = match &cli.target {
        Target::Attach(pids) => Tracer::attach_all(pids, opts)?,
        Target::Launch(argv) => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            Tracer::launch(&cmd, opts)?
        }
    };
    for spec in &cli.excluded {
        tracer.exclude(spec.clone())?;
    }
    if cli.pin {
        tracer.pin_to_one_cpu()?;
    }
    // Only a person at a terminal wants to see the work go on; a log or a
    // pipe would keep the escape sequences.
    if std::io::stderr().is_terminal() {
        let mut line = ProgressLine::new(std::io::stderr(), start, cli.progress_delay);
        tracer.on_progress(move |p| line.update(p, std::time::Instant::now()));
    }
    for rule in cli.inject.iter() {
        let spec = rule.spec.clone();
        let injector = rtrace::inject::Injector::new(rule.clone());
        let injecting = Injecting {
            injector,
            printer: printer.clone(),
            timeline: timeline.clone(),
        };
        add_probe(
            &mut tracer,
            spec,
            injecting,
            timeline.as_ref(),
            counter.as_ref(),
        )?;
    }
    // A function injected into is traced by its --inject already.
    for spec in &cli.probes {
        if cli.inject.iter().any(|r| &r.spec == spec) {
            continue;
        }
        match &recorder {
            Some(r) => {
                tracer.add_recorded_probe(spec.clone(), r.clone())?;
            }
            None => {
                let forward = Forward(printer.clone());
                add_probe(
                    &mut tracer,
                    spec.clone(),
                    forward,
                    timeline.as_ref(),
                    counter.as_ref(),
                )?;
            }
        }
    }
    if let Some(r) = &recorder {
        tracer.add_listener(r.clone());
    }
    let unborn_recording = unborn_recording.map(|u| Rc::new(RefCell::new(u)));
    if let Some(u) = &unborn_recording {
        tracer.add_listener(u.clone());
    }
    if let Some(tui) = &tui {
        // Its own probe beside each one given: the same breakpoints.
        let mut specs: Vec<String> = cli.probes.iter().map(|p| p.as_str().to_string()).collect();
        specs.extend(cli.inject.iter().map(|r| r.spec_text.clone()));
        if let Some(script) = &cli.script {
            specs.extend(script.probes().into_iter().map(|(s, _, _)| s));
        }
        let mut seen = std::collections::HashSet::new();
        for spec in specs {
            if seen.insert(spec.clone()) {
                tracer.add_probe(spec.parse()?, tui.clone())?;
            }
        }
    }
    tracer.add_listener(printer.clone());
    if let Some(t) = &timeline {
        tracer.add_listener(t.clone());
    }
    if let Some(c) = &counter {
        tracer.add_listener(c.clone());
    }
    if let Some(script) = cli.script {
        let probes = script.probes();
        let script = Rc::new(RefCell::new(script));
        for (spec, _, _) in probes {
            let parsed: rtrace::ProbeSpec = spec.parse()?;
            // Calls of a spec given with -s (or --inject) are printed there.
            let printed_elsewhere = cli.probes.iter().any(|p| p.as_str() == spec)
                || cli.inject.iter().any(|r| r.spec_text == spec);
            let handler =
                ScriptProbe::new(script.clone(), &spec, printer.clone(), !printed_elsewhere);
            // A spec traced by -s too is counted there: once per hit.
            let counter = counter.as_ref().filter(|_| !printed_elsewhere);
            add_probe(&mut tracer, parsed, handler, timeline.as_ref(), counter)?;
        }
        tracer.add_listener(ScriptListener::new(script, printer));
    }
    if let Some(tui) = tui {
        tracer.add_listener(tui);
    }
    let launched = matches!(cli.target, Target::Launch(_));
    let ran = tracer.run();
    // Tracing never began (an error before it): the recording made for it
    // goes, and the path keeps what it held.
    let unborn = unborn_recording.as_ref().is_some_and(|u| !u.borrow().born);
    if let (true, Err(_)) = (unborn, &ran) {
        return ran.map(|_| 1);
    }
    if let (Some(r), Some(path), false) = (&recorder, &cli.output, unborn) {
        let (entries, returns) = r.borrow().written();
        say(&format!(
            "rtrace: recorded {entries} entries and {returns} returns in {} (`rtrace replay {0}` shows them)",
            path.display()
        ));
    }
    let outcome = match ran {
        Ok(outcome) => outcome,
        // Tracing stopped on an error once it had begun (an output error, a
        // script past its limit, an exec into an image rtrace cannot trace):
        // rtrace has detached, and the launched program runs on untraced. As
        // after Ctrl-C it is waited for, so it is never orphaned with its
        // output still to come; the error is said first, so the user knows
        // tracing stopped while the program runs, and how the program ended
        // last, since rtrace's own status is 1: tracing failed.
        Err(e) if launched && tracer.outcome() == Some(Outcome::Detached) => {
            report(&e);
            let pid = tracer.pid();
            let ended = wait_child(pid);
            if let Some(end) = ended.describe() {
                say(&format!("rtrace: pid {pid} ran on untraced and {end}"));
            }
            return Ok(1);
        }
        Err(e) => return Err(e),
    };
    Ok(match (outcome, &cli.target) {
        (Outcome::Exited(code), _) => code as u8,
        (Outcome::Killed { signal, .. }, _) => 128u8.wrapping_add(signal as u8),
        (Outcome::Detached, Target::Attach(_)) => 0,
        // A signal to rtrace was passed on to the launched program and the
        // wait for it was ended by another: the program runs on.
        (Outcome::Detached, Target::Launch(_)) if rtrace::detach_requested().is_some() => {
            128u8.wrapping_add(rtrace::detach_requested().unwrap_or(libc::SIGINT) as u8)
        }
        // The launched program runs on untraced; it is still our child, so its
        // status is still ours to report, as when it runs traced to the end.
        (Outcome::Detached, Target::Launch(_)) => wait_child(tracer.pid()).status(),
    })
}

/// Whether text goes out with colour: asked for, or on a terminal (not
/// JSON). NO_COLOR (no-color.org), set and not empty, turns every escape
/// sequence off, attributes too; `--color always` is asked for
/// explicitly, and wins.
fn colored(when: ColorWhen, to_terminal: bool, json: bool) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            to_terminal && !json && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// What a replay renders with: the printer, and the stack counter of
/// `--folded`/`--flamegraph` after it at each entry. Both see the events
/// and the end, as a live run's listeners do.
struct Replaying {
    printer: Printer,
    counter: Option<StackCounter>,
}

impl Handler for Replaying {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.printer.on_entry(hit)?;
        match &mut self.counter {
            Some(c) => c.on_entry(hit),
            None => Ok(()),
        }
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.printer.on_post(hit)
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        self.printer.on_return(ret)
    }
    fn on_event(&mut self, event: &rtrace::Event, time: std::time::Duration) -> rtrace::Result<()> {
        self.printer.on_event(event, time)
    }
    fn on_finish(&mut self) -> rtrace::Result<()> {
        self.printer.on_finish()?;
        match &mut self.counter {
            Some(c) => c.on_finish(),
            None => Ok(()),
        }
    }
}

/// `rtrace replay FILE` and `rtrace report FILE`: the recording rendered by
/// the printer, as the live run would have rendered it.
fn replay(cli: args::ReplayCli) -> rtrace::Result<u8> {
    let bytes = rtrace::record::read(&cli.file)?;
    let header = rtrace::record::header(&bytes);
    // The string limit and stack depth the recording was made with, unless
    // asked.
    let recorded = |key: &str| {
        header
            .as_ref()
            .and_then(|h| h[key].as_u64())
            .and_then(|n| usize::try_from(n).ok())
    };
    let limit = cli
        .string_limit
        .or_else(|| recorded("string_limit"))
        .unwrap_or(rtrace::output::DEFAULT_STRING_LIMIT);
    let stacks = cli.stack || cli.folded.is_some() || cli.flamegraph.is_some();
    let depth = match (recorded("stack_depth"), cli.stack_depth) {
        (Some(kept), asked) => asked.unwrap_or(kept),
        (None, _) if stacks && header.is_some() => {
            return Err(rtrace::Error::InvalidValue {
                option: "--stack",
                reason: format!(
                    "{} holds no stacks: record them with `rtrace record --stack`",
                    cli.file.display()
                ),
            })
        }
        (None, asked) => asked.unwrap_or(rtrace::unwind::DEFAULT_DEPTH),
    };
    let (out, to_terminal): (Box<dyn std::io::Write>, bool) = match &cli.output {
        Some(path) if path.as_os_str() != "-" => (events_file(path)?, false),
        _ if std::io::stdout().is_terminal() => {
            (Box::new(std::io::BufWriter::new(std::io::stdout())), true)
        }
        // A pipe or a file: written from a thread of its own, as -o's file
        // is, in large writes while the next events render.
        _ => (
            Box::new(
                writer::Background::new(std::io::stdout())
                    .map_err(|e| rtrace::Error::io("cannot write output", e))?,
            ),
            false,
        ),
    };
    let color = colored(cli.color, to_terminal, cli.json);
    // The report is the table alone; a replay says what the run said on
    // stderr, as the run did.
    let diag: Box<dyn std::io::Write> = match cli.summary {
        true => Box::new(std::io::sink()),
        false => Box::new(std::io::stderr()),
    };
    let printer = Printer::with_diag(
        out,
        diag,
        PrinterOptions {
            format: if cli.json { Format::Json } else { Format::Text },
            color,
            summary: cli.summary,
            hist: cli.hist,
            order: cli.order,
            timestamps: Default::default(),
            tree: cli.tree,
            string_limit: limit,
            flush_interval: None,
            stack_depth: cli.stack.then_some(depth),
            prototypes: Default::default(),
        },
    );
    let create = |path: &std::path::PathBuf| -> rtrace::Result<Box<dyn std::io::Write>> {
        Ok(Box::new(std::io::BufWriter::new(OutputFile::create(path)?)))
    };
    let counter = match (&cli.folded, &cli.flamegraph) {
        (None, None) => None,
        (folded, svg) => Some(StackCounter::new(
            depth,
            folded.as_ref().map(create).transpose()?,
            svg.as_ref().map(create).transpose()?,
        )),
    };
    let names = rtrace::record::Names::default();
    let limits = rtrace::script::Limits {
        operations: cli.script_ops,
        string: limit,
        stack: depth,
    };
    let script = match args::compile_scripts(&cli.scripts, &cli.programs, limits, cli.json) {
        Ok(script) => script,
        Err(code) => return Ok(code),
    };
    if let Some(mut script) = script {
        if script.has_intervals() {
            say(
                "rtrace: interval blocks run on a live run's clock, which a replay has not: \
                 take them out of the script",
            );
            return Ok(2);
        }
        script.replaying(names.clone());
        let printer = Rc::new(RefCell::new(printer));
        // exit() in BEGIN: nothing is read; END runs, the maps are printed.
        if script.exited_in_begin() {
            ScriptListener::new(Rc::new(RefCell::new(script)), printer).end_before_tracing()?;
            return Ok(0);
        }
        let mut scripted = rtrace::script::ScriptReplay::new(script, printer.clone());
        let read = rtrace::record::replay(&cli.file, &bytes, &mut scripted, &cli.filter, &names)?;
        printer.borrow_mut().flush()?;
        for spec in scripted.unmatched() {
            say(&format!(
                "rtrace: warning: the script's probe {spec} names no call in {} (a probe is \
                 named as it was recorded, or by its function)",
                cli.file.display()
            ));
        }
        say_how_it_was_read(&cli.file, &read);
        return Ok(0);
    }
    let mut part = Replaying { printer, counter };
    let read = match &cli.perfetto {
        Some(path) => {
            let timeline =
                Timeline::from_recording(Box::new(OutputFile::create(path)?), limit, names.clone());
            let mut both = Both(part, timeline);
            let read = rtrace::record::replay(&cli.file, &bytes, &mut both, &cli.filter, &names);
            part = both.0;
            read?
        }
        None => rtrace::record::replay(&cli.file, &bytes, &mut part, &cli.filter, &names)?,
    };
    let mut printer = part.printer;
    printer.flush()?;
    say_how_it_was_read(&cli.file, &read);
    Ok(0)
}

/// The warnings of a replay of `file`: `-s` filters that named nothing,
/// the binaries that changed since, and a recording that was cut.
fn say_how_it_was_read(file: &std::path::Path, read: &rtrace::record::Replayed) {
    for name in &read.unmatched {
        say(&format!(
            "rtrace: warning: -s {name} names no probe or function of {} (give a probe spec as \
             recorded, or a function's name: `rtrace report` lists them)",
            file.display()
        ));
    }
    for path in &read.changed {
        say(&format!(
            "rtrace: warning: {path} changed since it was recorded (its build-id differs, or it is gone): \
             its calls are shown without what its symbols and debug information say"
        ));
    }
    if read.unfinished {
        say(&format!(
            "rtrace: warning: {} ends before its recording did (rtrace was killed, or the file \
             was cut): what came before is shown",
            file.display()
        ));
    }
    if read.truncated {
        say(&format!(
            "rtrace: warning: {} ends inside a record (the recording was cut): what came before it is shown",
            file.display()
        ));
    }
}

/// How the wait for a launched program rtrace has let go ended.
enum Waited {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Killed { signal: i32, core_dumped: bool },
    /// A second signal to rtrace (this one) ended the wait; the program runs on.
    Interrupted(i32),
    /// It could not be waited for (it is no longer our child).
    Lost,
}

impl Waited {
    /// rtrace's exit status after a detach: the program's, as a shell gives
    /// it (128+N for signal N).
    fn status(&self) -> u8 {
        match *self {
            Waited::Exited(code) => code as u8,
            Waited::Killed { signal, .. } | Waited::Interrupted(signal) => {
                128u8.wrapping_add(signal as u8)
            }
            Waited::Lost => 0,
        }
    }

    /// How the program ended, as the end of a sentence; `None` when it is
    /// not known.
    fn describe(&self) -> Option<String> {
        match *self {
            Waited::Exited(code) => Some(format!("exited with {code}")),
            Waited::Killed {
                signal,
                core_dumped,
            } => Some(format!(
                "was killed by {}{}",
                rtrace::signal_name(signal),
                if core_dumped { " (core dumped)" } else { "" }
            )),
            Waited::Interrupted(_) | Waited::Lost => None,
        }
    }
}

fn wait_child(pid: rtrace::Pid) -> Waited {
    use nix::sys::wait::WaitStatus;
    let requests = rtrace::requests();
    loop {
        // (Reaping any thread the detach left exiting, for its parent.)
        match rtrace::wait_program(pid, false) {
            Ok(WaitStatus::Exited(_, code)) => return Waited::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, core_dumped)) => {
                return Waited::Killed {
                    signal: sig as i32,
                    core_dumped,
                }
            }
            Ok(_) => continue,
            // The timer the detach request armed, say: wait on.
            Err(nix::errno::Errno::EINTR) if rtrace::requests() == requests => continue,
            // Interrupted by a second signal to rtrace: stop waiting.
            Err(nix::errno::Errno::EINTR) => {
                let sig = rtrace::detach_requested().unwrap_or(libc::SIGINT);
                return Waited::Interrupted(sig);
            }
            Err(_) => return Waited::Lost,
        }
    }
}
