//! A log2 histogram of one function's latency, like bpftrace's `hist()`.
//!
//! ```text
//! cargo run --example latency_histogram -- FUNCTION -- COMMAND [ARG]...
//! cargo run --example latency_histogram -- FUNCTION -p PID      (Ctrl-C to stop)
//! ```
//!
//! For example `latency_histogram libc:write -- ls -l /usr/bin` prints, at the end:
//!
//! ```text
//! libc:write: 212 calls, nanoseconds
//! [16K, 32K)             3 |@@                                      |
//! [32K, 64K)            60 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
//! …
//! ```
//!
//! How it works: the handler does nothing at entry; `on_return` gets the call's
//! duration (`Return::duration`, measured from the entry stop to the return stop,
//! so it includes the tracing overhead of one stop) and counts it in the bucket of
//! its power of two. `on_finish` prints the histogram when tracing ends — the
//! program exited, or Ctrl-C detached rtrace and left the process running. It
//! exits with the traced program's status (128+N if signal N killed it).

use std::process::{Command, ExitCode};

use rtrace::{Handler, Options, Outcome, Pid, Return, Tracer};

struct Histogram {
    name: String,
    /// buckets[i] counts durations in [2^i, 2^(i+1)) nanoseconds.
    buckets: [u64; 64],
}

impl Handler for Histogram {
    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        let ns = ret.duration().as_nanos().max(1) as u64;
        self.buckets[63 - ns.leading_zeros() as usize] += 1;
        Ok(())
    }

    fn on_finish(&mut self) -> rtrace::Result<()> {
        let total: u64 = self.buckets.iter().sum();
        println!("{}: {total} calls, nanoseconds", self.name);
        let max = self.buckets.iter().copied().max().unwrap_or(0).max(1);
        let used: Vec<usize> = (0..64).filter(|&i| self.buckets[i] > 0).collect();
        let (Some(&lo), Some(&hi)) = (used.first(), used.last()) else {
            return Ok(());
        };
        for i in lo..=hi {
            let n = self.buckets[i];
            let bar = "@".repeat((n * 40).div_ceil(max) as usize);
            let range = format!("[{}, {})", human(1 << i), human(1 << (i + 1)));
            println!("{range:<20} {n:>6} |{bar:<40}|");
        }
        Ok(())
    }
}

/// A power of two as bpftrace writes it: 1024 is `1K`, 2^20 is `1M`.
fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{}G", n >> 30),
        n if n >= 1 << 20 => format!("{}M", n >> 20),
        n if n >= 1 << 10 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!("usage: latency_histogram FUNCTION -- COMMAND [ARG]...\n       latency_histogram FUNCTION -p PID");
        ExitCode::from(2)
    };
    let (Some(func), Some(mode)) = (args.first(), args.get(1)) else {
        return usage();
    };
    let tracer = match mode.as_str() {
        "--" if args.len() > 2 => {
            let mut cmd = Command::new(&args[2]);
            cmd.args(&args[3..]);
            Tracer::launch(&cmd, Options::default())
        }
        "-p" => match args.get(2).and_then(|p| p.parse().ok()) {
            Some(pid) => {
                rtrace::install_detach_handlers();
                Tracer::attach(Pid::from_raw(pid), Options::default())
            }
            None => return usage(),
        },
        _ => return usage(),
    };
    let result = tracer.and_then(|mut tracer| {
        let hist = Histogram {
            name: func.clone(),
            buckets: [0; 64],
        };
        tracer.add_probe(func.parse()?, hist)?;
        tracer.run()
    });
    // Like rtrace itself: the traced program's exit status, or 128+N.
    match result {
        Ok(Outcome::Exited(code)) => ExitCode::from(code as u8),
        Ok(Outcome::Killed { signal, .. }) => ExitCode::from(128 + signal as u8),
        Ok(Outcome::Detached) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency_histogram: {e}");
            ExitCode::from(1)
        }
    }
}
