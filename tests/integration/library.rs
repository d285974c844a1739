//! The library API driven step by step: `Tracer::process_next`, with probes
//! added and removed while the tracee runs.

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;

use rtrace::{Handler, Hit, Options, Outcome, Return, Tracer};

use crate::fixtures::{bounded, code_matches_files, fixture, read_memory, symbol_value, Variant};

/// What a [`Recorder`] saw: the first argument of each entry and each
/// return value, in order.
#[derive(Default, Debug)]
struct Seen {
    args: Vec<u64>,
    retvals: Vec<i64>,
}

struct Recorder(Rc<RefCell<Seen>>);

impl Handler for Recorder {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().args.push(hit.arg(0).unwrap());
        Ok(())
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> rtrace::Result<()> {
        self.0.borrow_mut().retvals.push(ret.retval());
        Ok(())
    }
}

/// Steps the tracer until `done` holds; panics if tracing ends first.
fn step_until(tracer: &mut Tracer, done: impl Fn() -> bool) {
    while !done() {
        if let Some(outcome) = tracer.process_next().expect("process_next") {
            panic!("tracing ended early: {outcome:?}");
        }
    }
}

/// `count 300 5`, built static (and so not position-independent): the
/// symbol values in the file are the runtime addresses.
///
/// Each probe is added while an armed one still holds the tracee back, so
/// what is seen does not depend on how fast the tracee runs meanwhile.
#[test]
fn add_and_remove_probes_while_the_tracee_runs() {
    bounded(move |session| {
        let prog = fixture("count", Variant::Static);
        let work_addr = symbol_value(&prog, "work");
        let twice_addr = symbol_value(&prog, "twice");
        let mut cmd = Command::new(&prog);
        cmd.args(["300", "5"]);
        let mut tracer = session.launch(&cmd, Options::default()).expect("launch");
        let pid = tracer.pid().as_raw();
        let code = |addr| read_memory(pid, addr, 16).expect("read tracee code");
        let (work_code, twice_code) = (code(work_addr), code(twice_addr));

        let work = Rc::new(RefCell::new(Seen::default()));
        let work_id = tracer
            .add_probe("work".parse().unwrap(), Recorder(work.clone()))
            .expect("add work");
        assert_eq!(tracer.armed_sites(), 1);
        assert_eq!(code(work_addr)[0], 0xcc, "int3 at work");
        step_until(&mut tracer, || work.borrow().args.len() == 100);

        let twice = Rc::new(RefCell::new(Seen::default()));
        tracer
            .add_probe("twice".parse().unwrap(), Recorder(twice.clone()))
            .expect("add twice");
        tracer.remove_probe(work_id).expect("remove work");
        assert_eq!(tracer.armed_sites(), 1);
        assert_eq!(code(work_addr), work_code, "work's code after removal");
        assert_eq!(code(twice_addr)[0], 0xcc, "int3 at twice");
        assert_eq!(code(twice_addr)[1..], twice_code[1..]);

        let outcome = tracer.run().expect("run");
        assert_eq!(outcome, Outcome::Exited(5));

        // Exactly the first 100 calls were seen. The 100th was still running
        // when its probe went: it returned normally, unreported.
        let work = work.borrow();
        assert_eq!(work.args, (0..100).collect::<Vec<u64>>());
        assert_eq!(
            work.retvals,
            (0..99).map(|i| 2 * i + 1).collect::<Vec<i64>>()
        );
        let twice = twice.borrow();
        assert_eq!(twice.args, vec![20]);
        assert_eq!(twice.retvals, vec![41]);
    });
}

/// A probe removed while another on the same address stays: the site stays
/// armed, and from then on only the remaining probe reports.
#[test]
fn a_probe_handed_over_to_another_on_the_same_address() {
    bounded(move |session| {
        let prog = fixture("count", Variant::Pie);
        let mut cmd = Command::new(&prog);
        cmd.args(["50"]);
        let mut tracer = session.launch(&cmd, Options::default()).expect("launch");

        let first = Rc::new(RefCell::new(Seen::default()));
        let id = tracer
            .add_probe("count:work".parse().unwrap(), Recorder(first.clone()))
            .expect("add");
        step_until(&mut tracer, || first.borrow().retvals.len() == 10);
        let second = Rc::new(RefCell::new(Seen::default()));
        tracer
            .add_probe("work".parse().unwrap(), Recorder(second.clone()))
            .expect("add the second");
        assert_eq!(tracer.armed_sites(), 1, "one site, two probes");
        tracer.remove_probe(id).expect("remove the first");
        assert_eq!(tracer.armed_sites(), 1);
        assert_eq!(tracer.run().expect("run"), Outcome::Exited(0));

        assert_eq!(first.borrow().args, (0..10).collect::<Vec<u64>>());
        assert_eq!(second.borrow().args, (10..50).collect::<Vec<u64>>());
        assert_eq!(
            second.borrow().retvals,
            (10..50).map(|i| 2 * i + 1).collect::<Vec<i64>>()
        );
    });
}

/// Removing the last probe restores the code; the program then finishes
/// untouched.
#[test]
fn removing_every_probe_restores_the_code() {
    bounded(move |session| {
        let prog = fixture("count", Variant::Static);
        let mut cmd = Command::new(&prog);
        cmd.args(["20", "4"]);
        let mut tracer = session.launch(&cmd, Options::default()).expect("launch");
        let pid = tracer.pid().as_raw();
        let seen = Rc::new(RefCell::new(Seen::default()));
        let id = tracer
            .add_probe("work".parse().unwrap(), Recorder(seen.clone()))
            .expect("add");
        step_until(&mut tracer, || seen.borrow().args.len() == 5);
        assert!(
            code_matches_files(pid).is_err(),
            "the probe shows in the code"
        );
        tracer.remove_probe(id).expect("remove");
        assert_eq!(tracer.armed_sites(), 0);
        code_matches_files(pid).expect("code after removing the only probe");
        assert_eq!(tracer.run().expect("run"), Outcome::Exited(4));
        assert_eq!(seen.borrow().args, (0..5).collect::<Vec<u64>>());
    });
}

/// Panics at the `at`-th entry.
struct PanicAt {
    at: u32,
    seen: u32,
}

impl Handler for PanicAt {
    fn on_entry(&mut self, _hit: &mut Hit<'_>) -> rtrace::Result<()> {
        self.seen += 1;
        if self.seen == self.at {
            panic!("boom at {}", self.at);
        }
        Ok(())
    }
}

/// A handler that panics ends tracing with an error, like a handler error:
/// the tracer detaches, and the program runs on to its normal end, its
/// return addresses and code restored.
#[test]
fn a_panicking_handler_ends_tracing_and_spares_the_program() {
    bounded(move |session| {
        let prog = fixture("count", Variant::Pie);
        let mut cmd = Command::new(&prog);
        cmd.args(["300", "7"]).stdout(std::process::Stdio::null());
        let mut tracer = session.launch(&cmd, Options::default()).expect("launch");
        let pid = tracer.pid();
        tracer
            .add_probe("work".parse().unwrap(), PanicAt { at: 5, seen: 0 })
            .unwrap();
        match tracer.run() {
            Err(rtrace::Error::Handler(msg)) => {
                assert_eq!(msg, "a handler panicked: boom at 5")
            }
            other => panic!("expected the handler's panic as an error, got {other:?}"),
        }
        drop(tracer);
        let status = nix::sys::wait::waitpid(pid, None).expect("wait for the program");
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 7));
    });
}

/// Skips the whole call at entry, returning `value`: rax, then `ret` done by
/// hand (the return address into rip, the stack pointer one word up).
struct SkipCall {
    value: u64,
    stack: Rc<RefCell<Vec<u64>>>,
}

impl Handler for SkipCall {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> rtrace::Result<()> {
        let sp = hit.regs().sp();
        let ret = hit.read_u64(sp.into())?;
        self.stack.borrow_mut().push(ret);
        let regs = hit.regs_mut();
        regs.set_retval(self.value);
        regs.set_ip(ret);
        regs.set_sp(sp + 8);
        Ok(())
    }
    fn on_post(&mut self, _hit: &mut Hit<'_>) -> rtrace::Result<()> {
        panic!("on_post must not run for a skipped hit");
    }
    fn on_return(&mut self, _ret: &mut Return<'_>) -> rtrace::Result<()> {
        panic!("a skipped call has no return");
    }
}

/// An entry handler that moves the instruction pointer skips the function:
/// `twice(20)` returns 99 without running, `work` runs as usual; the program
/// exits normally.
#[test]
fn an_entry_handler_can_skip_the_call() {
    bounded(move |session| {
        let prog = fixture("count", Variant::Pie);
        // The tracee inherits the tracer's stdout: a shell sends count's to a file
        // first (the probes arm in count's image after the exec).
        let out = crate::events::temp_path("skip_call.out");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("exec {} 10 6 > {}", prog.display(), out.display()));
        let mut tracer = session.launch(&cmd, Options::default()).expect("launch");
        let returns = Rc::new(RefCell::new(Vec::new()));
        tracer
            .add_probe(
                format!("{}:twice", prog.display()).parse().unwrap(),
                SkipCall {
                    value: 99,
                    stack: returns.clone(),
                },
            )
            .unwrap();
        let work = Rc::new(RefCell::new(Seen::default()));
        tracer
            .add_probe(
                format!("{}:work", prog.display()).parse().unwrap(),
                Recorder(work.clone()),
            )
            .unwrap();
        assert_eq!(tracer.run().expect("run"), Outcome::Exited(6));
        assert_eq!(returns.borrow().len(), 1, "twice was entered once");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "sum=100\ntwice=99\n"
        );
        assert_eq!(
            work.borrow().retvals,
            (0..10).map(|i| 2 * i + 1).collect::<Vec<i64>>()
        );
    });
}

/// Fails at the Nth entry.
struct FailAt {
    seen: u32,
    at: u32,
}

impl Handler for FailAt {
    fn on_entry(&mut self, _: &mut Hit<'_>) -> rtrace::Result<()> {
        self.seen += 1;
        match self.seen == self.at {
            true => Err(rtrace::Error::Handler("stop here".into())),
            false => Ok(()),
        }
    }
}

/// An error once tracing has begun: `run` detaches and returns it, and
/// `outcome` says the launched program runs on; it is still the caller's
/// child, and ends as it would have untraced.
#[test]
fn after_an_error_the_launched_program_runs_on_as_the_callers_child() {
    bounded(move |session| {
        let prog = fixture("stdfds", Variant::Pie);
        let file = crate::events::temp_path("library_error_runs_on.txt");
        let mut cmd = Command::new(&prog);
        cmd.arg(&file).args(["300", "5"]);
        let mut tracer = session.launch(&cmd, Options::default()).expect("launch");
        assert_eq!(tracer.outcome(), None);
        tracer
            .add_probe("work".parse().unwrap(), FailAt { seen: 0, at: 3 })
            .unwrap();
        let error = tracer.run().expect_err("the handler's error");
        assert!(matches!(error, rtrace::Error::Handler(_)), "{error}");
        assert_eq!(tracer.outcome(), Some(Outcome::Detached));
        let pid = tracer.pid();
        assert_eq!(
            nix::sys::wait::waitpid(pid, None).expect("waitpid"),
            nix::sys::wait::WaitStatus::Exited(pid, 5)
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "fd0=open fd1=open fd2=open write2=ok\nsum=90000\n"
        );
    });
}
