//! The `rtrace` command: parse the command line, build a tracer, run it, map the
//! outcome to an exit status. Everything else lives in the library.

mod args;

use std::cell::RefCell;
use std::io::IsTerminal;
use std::process::{Command, ExitCode};
use std::rc::Rc;

use rtrace::output::{Format, Printer, PrinterOptions};
use rtrace::{Handler, Hit, Options, Outcome, Return, Tracer};

use args::{Cli, ColorWhen, Target};

fn main() -> ExitCode {
    let cli = match args::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}

/// One line: what went wrong, then what to do about it. If stderr itself is
/// gone there is nowhere left to say it; the exit status still tells.
fn report(e: &rtrace::Error) {
    use std::io::Write;
    let line = match e.hint() {
        Some(hint) => format!("rtrace: {e} ({hint})"),
        None => format!("rtrace: {e}"),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The printer is shared: each probe gets a `Forward` to it, and it is also the
/// listener (lifecycle events, idle flushes, the summary at the end). Only the
/// listener registration sees `on_finish`, so the summary is printed once.
struct Forward(Rc<RefCell<Printer>>);

impl Handler for Forward {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().on_entry(hit)
    }
    fn on_post(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().on_post(hit)
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().on_return(ret)
    }
}

fn run(cli: Cli) -> rtrace::Result<u8> {
    rtrace::sys::signal::install_detach_handlers();
    let (out, to_terminal): (Box<dyn std::io::Write>, bool) = match &cli.output {
        Some(path) => {
            let f = std::fs::File::create(path)
                .map_err(|e| rtrace::Error::io(format!("cannot create {}", path.display()), e))?;
            (Box::new(f), false)
        }
        None => (Box::new(std::io::stderr()), std::io::stderr().is_terminal()),
    };
    let color = match cli.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => to_terminal && !cli.json,
    };
    let printer = Rc::new(RefCell::new(Printer::new(
        out,
        PrinterOptions {
            format: if cli.json { Format::Json } else { Format::Text },
            color,
            summary: cli.summary,
        },
    )));
    let opts = Options {
        entry_only: cli.entry_only,
        follow_forks: cli.follow_forks,
    };
    let mut tracer = match &cli.target {
        Target::Attach(pid) => Tracer::attach(*pid, opts)?,
        Target::Launch(argv) => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            Tracer::launch(&cmd, opts)?
        }
    };
    for spec in cli.probes {
        tracer.add_probe(spec, Forward(printer.clone()))?;
    }
    tracer.add_listener(printer);
    let outcome = tracer.run()?;
    Ok(match (outcome, &cli.target) {
        (Outcome::Exited(code), _) => code as u8,
        (Outcome::Killed { signal, .. }, _) => 128u8.wrapping_add(signal as u8),
        (Outcome::Detached, Target::Attach(_)) => 0,
        // The launched program runs on untraced; it is still our child, so its
        // status is still ours to report, as when it runs traced to the end.
        (Outcome::Detached, Target::Launch(_)) => wait_child(tracer.pid()),
    })
}

fn wait_child(pid: rtrace::Pid) -> u8 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code as u8,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128u8.wrapping_add(sig as u8),
            Ok(_) => continue,
            // Interrupted by a second signal to rtrace: stop waiting.
            Err(nix::errno::Errno::EINTR) => {
                let sig = rtrace::sys::signal::detach_requested().unwrap_or(libc::SIGINT);
                return 128u8.wrapping_add(sig as u8);
            }
            Err(_) => return 0,
        }
    }
}
