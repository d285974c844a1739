//! Makes every call of a function return a chosen value: fault injection from a
//! return probe, like bpftrace's `override()` (here without any kernel support).
//!
//! ```text
//! cargo run --example fake_retval -- FUNCTION VALUE -- COMMAND [ARG]...
//! ```
//!
//! The program runs as usual, except that each call of FUNCTION returns VALUE to
//! its caller (the function itself still runs). `fake_retval libc:getpid 1 -- sh
//! -c 'echo $$'` prints `1`. On stderr, when the program has exited:
//!
//! ```text
//! fake_retval: count:twice returned 41, 1 times; replaced by -7
//! ```
//!
//! (the last value the function really returned, and how many calls were
//! changed). The exit status is the traced program's.
//!
//! How it works: the handler does nothing at entry; `on_return` runs when the
//! call returns, stopped with the return value in its register and the caller not
//! yet resumed: it reads the real value (`Return::retval`) and writes VALUE over it
//! (`Return::set_retval`), which the tracer writes back before the thread
//! continues. The whole 64-bit register is written; a caller of a function
//! returning `int` reads its low 32 bits.

use std::process::{Command, ExitCode};

use rtrace::{Handler, Options, Outcome, Return, Tracer};

struct FakeRetval {
    name: String,
    value: i64,
    calls: u64,
    last: Option<i64>,
}

impl Handler for FakeRetval {
    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        self.last = Some(ret.retval());
        self.calls += 1;
        ret.set_retval(self.value);
        Ok(())
    }

    fn on_finish(&mut self) -> rtrace::Result<()> {
        match self.last {
            Some(last) => eprintln!(
                "fake_retval: {} returned {last}, {} times; replaced by {}",
                self.name, self.calls, self.value
            ),
            None => eprintln!("fake_retval: {} was never called", self.name),
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!("usage: fake_retval FUNCTION VALUE -- COMMAND [ARG]...");
        ExitCode::from(2)
    };
    let (Some(func), Some(value), Some("--"), Some(program)) = (
        args.first(),
        args.get(1).and_then(|v| parse_value(v)),
        args.get(2).map(String::as_str),
        args.get(3),
    ) else {
        return usage();
    };
    let mut cmd = Command::new(program);
    cmd.args(&args[4..]);
    let result = Tracer::launch(&cmd, Options::default()).and_then(|mut tracer| {
        let handler = FakeRetval {
            name: func.clone(),
            value,
            calls: 0,
            last: None,
        };
        tracer.add_probe(func.parse()?, handler)?;
        tracer.run()
    });
    match result {
        Ok(Outcome::Exited(code)) => ExitCode::from(code as u8),
        Ok(Outcome::Killed { signal, .. }) => ExitCode::from(128 + signal as u8),
        Ok(Outcome::Detached) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake_retval: {e}");
            ExitCode::from(1)
        }
    }
}

/// `-7`, `42` or `0x2a`.
fn parse_value(s: &str) -> Option<i64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok().map(|v| v as i64),
        None => s.parse().ok(),
    }
}
