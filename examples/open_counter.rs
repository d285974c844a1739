//! Counts the files a program opens, per path: one [`Handler`] on libc's `open`
//! and `openat` (glibc's `open()` does not go through `openat()`, so both are
//! probed).
//!
//! ```text
//! cargo run --example open_counter -- cat /etc/hostname /etc/hostname
//! ```
//!
//! prints, when the program has finished, one line per path with how many times it
//! was opened and how many of those opens failed, the most opened first (paths
//! opened as often in name order):
//!
//! ```text
//!   opens  failed  path
//!       2       0  /etc/hostname
//!       1       0  /etc/ld.so.cache
//! ```
//!
//! How it works: `on_entry` runs at the function's first instruction, where the
//! path is the first SysV argument of `open` and the second of `openat`; it reads the C string from the tracee and keeps it
//! with the call (`Hit::set_data`). `on_return` gets it back with the return value:
//! a negative value is a failed open.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::rc::Rc;

use rtrace::{Handler, Hit, Options, Outcome, Return, Tracer};

#[derive(Default)]
struct OpenCounter {
    /// path → (opens, failures)
    counts: BTreeMap<String, (u64, u64)>,
}

impl Handler for OpenCounter {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let path_arg = if hit.site().symbol == "openat" { 1 } else { 0 };
        let path = match hit.arg(path_arg) {
            Some(0) | None => "(null)".to_string(),
            Some(ptr) => match hit.read_cstr(ptr.into(), 4096) {
                Ok((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => format!("{ptr:#x}"),
            },
        };
        hit.set_data(path);
        Ok(())
    }

    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        // open and openat return an int: only eax is meaningful.
        let failed = (ret.retval() as i32) < 0;
        if let Some(path) = ret.take_data::<String>() {
            let entry = self.counts.entry(path).or_default();
            entry.0 += 1;
            entry.1 += u64::from(failed);
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: open_counter COMMAND [ARG]...");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("open_counter: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> rtrace::Result<u8> {
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    let mut tracer = Tracer::launch(&cmd, Options::default())?;
    let counter = Rc::new(RefCell::new(OpenCounter::default()));
    tracer.add_probe("libc:open".parse()?, counter.clone())?;
    tracer.add_probe("libc:openat".parse()?, counter.clone())?;
    let outcome = tracer.run()?;
    let counter = counter.borrow();
    let mut rows: Vec<_> = counter.counts.iter().collect();
    // Most opened first; the sort is stable, so ties stay in path order.
    rows.sort_by_key(|(_, (opens, _))| std::cmp::Reverse(*opens));
    println!("  opens  failed  path");
    for (path, (opens, failed)) in rows {
        println!("{opens:>7} {failed:>7}  {path}");
    }
    Ok(match outcome {
        Outcome::Exited(code) => code as u8,
        Outcome::Killed { signal, .. } => 128 + signal as u8,
        Outcome::Detached => 0,
    })
}
