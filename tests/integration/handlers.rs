//! The handler contract of `rtrace::handler`, checked: an error stops tracing
//! and leaves the tracee running, `on_finish` still runs, a probe removed on a
//! handler's decision is never called again, and what a panic does.

use std::cell::{Cell, RefCell};
use std::process::Command;
use std::rc::Rc;

use nix::sys::wait::{waitpid, WaitStatus};
use rtrace::{Error, Handler, Hit, Options, Outcome, Pid, Return};

use crate::fixtures::{bounded, fixture, Variant};

/// `count 5 3`: calls work 5 times, exits 3. (`Tracer::launch` takes the
/// program, arguments and environment of a `Command`; its stdio is inherited,
/// so the exit status is what these tests see of the tracee.)
fn count_command() -> Command {
    let mut cmd = Command::new(fixture("count", Variant::Pie));
    cmd.args(["5", "3"]);
    cmd
}

/// Waits for the launched tracee, a child of this process, after the tracer
/// let it go: a blocking wait, bounded by the [`bounded`] session it runs in.
fn wait_tracee(pid: Pid) -> WaitStatus {
    waitpid(pid, None).expect("waitpid")
}

/// Fails at the `nth` entry or return of its probe; counts `on_finish`.
struct FailAt {
    nth: u32,
    at_return: bool,
    seen: u32,
    finished: Rc<Cell<u32>>,
}

impl FailAt {
    fn step(&mut self) -> rtrace::Result<()> {
        self.seen += 1;
        if self.seen == self.nth {
            return Err(Error::Handler(format!("failed at call {}", self.nth)));
        }
        Ok(())
    }
}

impl Handler for FailAt {
    fn on_entry(&mut self, _hit: &mut Hit<'_>) -> rtrace::Result<()> {
        if self.at_return {
            return Ok(());
        }
        self.step()
    }
    fn on_return(&mut self, _ret: &mut Return<'_>) -> rtrace::Result<()> {
        if !self.at_return {
            return Ok(());
        }
        self.step()
    }
    fn on_finish(&mut self) -> rtrace::Result<()> {
        self.finished.set(self.finished.get() + 1);
        Ok(())
    }
}

fn check_error_leaves_the_tracee_running(at_return: bool) {
    bounded(move |session| {
        let mut tracer = session
            .launch(&count_command(), Options::default())
            .expect("launch");
        let pid = tracer.pid();
        let finished = Rc::new(Cell::new(0));
        let handler = FailAt {
            nth: 3,
            at_return,
            seen: 0,
            finished: finished.clone(),
        };
        tracer
            .add_probe("count:work".parse().unwrap(), handler)
            .unwrap();
        match tracer.run() {
            Err(Error::Handler(message)) => assert_eq!(message, "failed at call 3"),
            other => panic!("expected the handler's error, got {other:?}"),
        }
        assert_eq!(finished.get(), 1, "on_finish runs after the error");
        drop(tracer);
        assert_eq!(wait_tracee(pid), WaitStatus::Exited(pid, 3));
    });
}

#[test]
fn error_at_entry_detaches_and_the_tracee_runs_on() {
    check_error_leaves_the_tracee_running(false);
}

#[test]
fn error_at_return_detaches_and_the_tracee_runs_on() {
    check_error_leaves_the_tracee_running(true);
}

/// Records the first argument of the calls it sees and asks for its probe to
/// be removed after the second.
struct FirstTwo {
    args: Rc<RefCell<Vec<u64>>>,
    done: Rc<Cell<bool>>,
}

impl Handler for FirstTwo {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let mut args = self.args.borrow_mut();
        args.push(hit.arg(0).unwrap());
        self.done.set(args.len() == 2);
        Ok(())
    }
}

#[test]
fn a_probe_removed_on_its_handlers_flag_is_not_called_again() {
    bounded(move |session| {
        let mut tracer = session
            .launch(&count_command(), Options::default())
            .expect("launch");
        let args = Rc::new(RefCell::new(Vec::new()));
        let done = Rc::new(Cell::new(false));
        let handler = FirstTwo {
            args: args.clone(),
            done: done.clone(),
        };
        let id = tracer
            .add_probe("count:work".parse().unwrap(), handler)
            .unwrap();
        let mut removed = false;
        let outcome = loop {
            if let Some(outcome) = tracer.process_next().expect("process_next") {
                break outcome;
            }
            if done.get() && !removed {
                tracer.remove_probe(id).unwrap();
                removed = true;
            }
        };
        assert_eq!(outcome, Outcome::Exited(3));
        assert_eq!(*args.borrow(), [0, 1]);
    });
}

/// Panics at the second entry.
struct PanicAtSecond(u32);

impl Handler for PanicAtSecond {
    fn on_entry(&mut self, _hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0 += 1;
        assert!(self.0 < 2, "handler panics at entry");
        Ok(())
    }
}

/// A handler's panic is caught and handled as an error: the hit is completed,
/// the tracer detaches, and the tracee runs on to its normal end.
#[test]
fn a_panicking_handler_leaves_the_tracee_running() {
    bounded(move |session| {
        let cmd = count_command();
        let mut tracer = session.launch(&cmd, Options::default()).expect("launch");
        let pid = tracer.pid();
        tracer
            .add_probe("count:work".parse().unwrap(), PanicAtSecond(0))
            .unwrap();
        match tracer.run() {
            Err(rtrace::Error::Handler(msg)) => {
                assert_eq!(msg, "a handler panicked: handler panics at entry")
            }
            other => panic!("expected the panic as a handler error, got {other:?}"),
        }
        drop(tracer);
        let status = wait_tracee(pid);
        assert_eq!(status, WaitStatus::Exited(pid, 3));
    });
}
