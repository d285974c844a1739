//! Heap blocks still allocated when a program exits, grouped by the call site
//! that allocated them: probes on libc's `malloc`, `calloc`, `realloc` and `free`.
//!
//! ```text
//! cargo run --example leak_report -- COMMAND [ARG]...
//! ```
//!
//! prints, when the program has exited, the blocks it allocated from its own
//! code and never freed, one line per call site (the caller's function and the
//! offset of the return address in it), most bytes first:
//!
//! ```text
//! leaked 4 blocks, 350 bytes
//!  blocks   bytes  site
//!       3     300  leak_a+0x1b
//!       1      50  leak_b+0x2c
//! ```
//!
//! or `no leaks` when every block was freed.
//!
//! How it works: `on_entry` reads the call site — the return address, at the
//! stack pointer on a function's first instruction — and the size arguments, and
//! keeps them with the call (`Hit::set_data`). `on_return` gets them back with the
//! returned pointer and records the block; `free` (and a `realloc` that moved or
//! freed a block) forgets it. Only calls made from the program's executable are
//! recorded: the ones libc makes for itself (stdio buffers) or on the program's
//! behalf (`strdup`, `fopen`), and an allocator calling another inside libc, have
//! their call site in libc and are left out. A free of a block that was not
//! recorded is ignored.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::rc::Rc;

use rtrace::{Handler, Hit, Options, Outcome, Pid, Return, Tracer};

/// What an allocator call was asked for, kept from entry to return.
struct Call {
    /// `caller+0xOFF`: where the call returns to.
    site: String,
    /// Bytes asked for.
    size: u64,
    /// The block a `realloc` resizes (0 for `malloc` and `calloc`).
    old: u64,
}

#[derive(Default)]
struct LeakReport {
    /// The executable of each traced process (`/proc/PID/exe`).
    exes: HashMap<Pid, Option<PathBuf>>,
    /// Live blocks recorded: address → (site, size).
    live: HashMap<u64, (String, u64)>,
}

impl LeakReport {
    /// The call site of a call stopped at a function's first instruction, when
    /// the caller is in the executable.
    fn call_site(&mut self, hit: &Hit<'_>) -> Option<String> {
        let ret = hit.read_u64(hit.sp()).ok()?;
        let sym = hit.symbolize(ret.into())?;
        let exe = self
            .exes
            .entry(hit.pid())
            .or_insert_with(|| std::fs::read_link(format!("/proc/{}/exe", hit.pid())).ok());
        if exe.as_deref() != Some(sym.module) {
            return None;
        }
        Some(format!("{}+{:#x}", sym.symbol, sym.offset))
    }
}

impl Handler for LeakReport {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let arg = |n| hit.arg(n).unwrap_or(0);
        let (size, old) = match hit.site().symbol.as_str() {
            "free" => {
                self.live.remove(&arg(0));
                return Ok(());
            }
            "calloc" => (arg(0).saturating_mul(arg(1)), 0),
            "realloc" => (arg(1), arg(0)),
            _ => (arg(0), 0),
        };
        if let Some(site) = self.call_site(hit) {
            hit.set_data(Call { site, size, old });
        }
        Ok(())
    }

    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        let Some(call) = ret.take_data::<Call>() else {
            return Ok(());
        };
        let block = ret.retval() as u64;
        // realloc(p, 0) frees p and returns NULL; a failed realloc leaves p.
        if call.old != 0 && (block != 0 || call.size == 0) {
            self.live.remove(&call.old);
        }
        if block != 0 {
            self.live.insert(block, (call.site, call.size));
        }
        Ok(())
    }
}

impl LeakReport {
    /// The report: one line per site, most bytes first, then by name.
    fn print(&self) {
        if self.live.is_empty() {
            println!("no leaks");
            return;
        }
        let mut sites: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (site, size) in self.live.values() {
            let entry = sites.entry(site).or_default();
            entry.0 += 1;
            entry.1 += size;
        }
        let mut sites: Vec<_> = sites.into_iter().collect();
        sites.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        let blocks: u64 = sites.iter().map(|s| s.1 .0).sum();
        let bytes: u64 = sites.iter().map(|s| s.1 .1).sum();
        println!("leaked {blocks} blocks, {bytes} bytes");
        println!(" blocks   bytes  site");
        for (site, (count, size)) in sites {
            println!("{count:>7} {size:>7}  {site}");
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: leak_report COMMAND [ARG]...");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("leak_report: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> rtrace::Result<u8> {
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    let mut tracer = Tracer::launch(&cmd, Options::default())?;
    let report = Rc::new(RefCell::new(LeakReport::default()));
    for function in ["malloc", "calloc", "realloc", "free"] {
        tracer.add_probe(format!("libc:{function}").parse()?, report.clone())?;
    }
    let outcome = tracer.run()?;
    report.borrow().print();
    Ok(match outcome {
        Outcome::Exited(code) => code as u8,
        Outcome::Killed { signal, .. } => 128 + signal as u8,
        Outcome::Detached => 0,
    })
}
