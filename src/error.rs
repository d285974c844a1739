//! The library's one error type.
//!
//! Every variant carries the context a user needs (pid, symbol, path, address)
//! and renders as one line that says what went wrong; [`Error::hint`] adds what to
//! do about it. [`Error::is_tracee_gone`] classifies the errors that only mean the
//! traced process (or one of its threads) has died under us, which the engine treats
//! as an ordinary event rather than a failure.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::addr::{Pid, RuntimeAddr};

/// `Result` with rtrace's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while tracing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no process with this pid.
    #[error("no process with pid {pid}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: Pid,
    },
    /// Another tracer (a debugger, strace, …) is attached already.
    #[error("pid {pid} is already traced by pid {tracer}")]
    AlreadyTraced {
        /// The pid asked for.
        pid: Pid,
        /// The tracer's pid, from `TracerPid` in /proc/PID/status.
        tracer: Pid,
    },
    /// The kernel refused to let us trace the process.
    #[error("not permitted to trace pid {pid}")]
    PermissionDenied {
        /// The pid asked for.
        pid: Pid,
    },
    /// A process no tracer can trace, whatever its privileges: rtrace
    /// itself, a kernel thread, the system's init.
    #[error("cannot trace pid {pid}: {why}")]
    Untraceable {
        /// The pid asked for.
        pid: Pid,
        /// What it is.
        why: &'static str,
    },
    /// The program to launch was not found (or is not executable).
    #[error("cannot run {program}: {reason}")]
    Launch {
        /// The program as given.
        program: String,
        /// What went wrong.
        reason: String,
    },
    /// A file is not an ELF object.
    #[error("{}: not an ELF file", path.display())]
    NotElf {
        /// The file.
        path: PathBuf,
    },
    /// A well-formed ELF file of another kind than rtrace traces: 32-bit,
    /// big-endian, or for another machine.
    #[error("{}: {what}: rtrace traces 64-bit x86-64 programs only", path.display())]
    UnsupportedElf {
        /// The file.
        path: PathBuf,
        /// What it is: `a 32-bit ELF file`, `an ELF file for AARCH64`.
        what: String,
    },
    /// An ELF or DWARF file is truncated or malformed.
    #[error("{}: corrupt or truncated ELF: {reason}", path.display())]
    CorruptElf {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A file given as a recording cannot be read as one.
    #[error("{}: cannot be replayed: {why}", path.display())]
    Recording {
        /// The file.
        path: PathBuf,
        /// Why: foreign, of a newer format, or damaged (where).
        why: String,
    },
    /// A probe spec does not parse.
    #[error("invalid probe spec {spec:?}: {reason}")]
    InvalidSpec {
        /// The spec as given.
        spec: String,
        /// Why it was refused.
        reason: String,
    },
    /// No function or symbol of that name in the modules searched.
    #[error("no function {name:?} in {}", searched.join(", "))]
    UnknownSymbol {
        /// The name or pattern as given.
        name: String,
        /// The modules that were searched, by file name.
        searched: Vec<String>,
    },
    /// A probe names a module that is not loaded and that the process can
    /// never load (see `ModuleMap::never_loads`): waiting for it would
    /// trace nothing.
    #[error(
        "probe {probe}: no module {module:?} is loaded, and {why}{}",
        closest.as_ref().map(|c| format!(" (did you mean {c}?)")).unwrap_or_default()
    )]
    ModuleNeverLoads {
        /// The probe spec as given.
        probe: String,
        /// The module as given.
        module: String,
        /// Why it can never be loaded.
        why: String,
        /// The loaded module whose name is closest, as a name qualifier.
        closest: Option<String>,
    },
    /// No module of that name is loaded (and the spec is not allowed to wait for it).
    #[error("no module {module:?} is loaded (loaded: {})", loaded.join(", "))]
    UnknownModule {
        /// The module as given.
        module: String,
        /// The modules that are loaded, by file name.
        loaded: Vec<String>,
    },
    /// A file's DWARF does not describe what rtrace looks for (a function's
    /// parameters), or does not parse: its arguments are shown raw.
    #[error("{}: DWARF: {reason}", path.display())]
    Dwarf {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A source line has no code: no module searched has a line table naming
    /// the file.
    #[error("no code for {file}:{line}{}", in_line_tables(unbuilt.as_deref(), searched))]
    NoLineInfo {
        /// The file as given.
        file: String,
        /// The line as given.
        line: u32,
        /// The modules whose line tables were searched (those with DWARF), by
        /// file name: empty when no module searched has any.
        searched: Vec<String>,
        /// The first module searched (the executable, or the module named),
        /// when it has no line table: where the file most likely was.
        unbuilt: Option<String>,
    },
    /// A source line has no code, but other lines of the same file do.
    #[error(
        "no code at {file}:{line}; nearest line{} with code: {}",
        if nearest.len() == 1 { "" } else { "s" },
        nearest.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    NoCodeAtLine {
        /// The file as given.
        file: String,
        /// The line as given.
        line: u32,
        /// The nearest lines of that file that have code, ascending (at most two:
        /// the one before and the one after, or the two nearest on the one side
        /// that has any).
        nearest: Vec<u32>,
    },
    /// `name+off` does not fall on an instruction boundary.
    #[error("{spec}: offset {offset:#x} is not on an instruction boundary of {symbol}")]
    NotInstructionBoundary {
        /// The spec as given.
        spec: String,
        /// The function.
        symbol: String,
        /// The offset asked for.
        offset: u64,
    },
    /// The instruction at a probe address cannot be stepped safely.
    #[error("cannot probe {addr}: {reason}")]
    UnsupportedInstruction {
        /// The probe address.
        addr: RuntimeAddr,
        /// Why.
        reason: String,
    },
    /// Another tool's breakpoint is at a probe address: an int3 in memory
    /// where the module's file has another byte.
    #[error(
        "cannot probe {addr}: another tracer's breakpoint is there (an int3 in memory, where \
         {} has {byte:#04x}): a debugger or a kernel uprobe (perf probe, bpftrace, SystemTap) \
         owns this address",
        file.display()
    )]
    ForeignBreakpoint {
        /// The probe address.
        addr: RuntimeAddr,
        /// The module's file.
        file: std::path::PathBuf,
        /// The byte the file has there.
        byte: u8,
    },
    /// An IFUNC whose implementation no relocated GOT slot names.
    #[error("cannot tell which implementation of the IFUNC {name} the process uses (no GOT slot holds it yet)")]
    UnresolvedIfunc {
        /// The IFUNC's name.
        name: String,
    },
    /// A ptrace request failed.
    #[error("ptrace {op} on tid {tid}: {errno}")]
    Ptrace {
        /// The request.
        op: &'static str,
        /// The thread.
        tid: Pid,
        /// The error.
        errno: Errno,
    },
    /// Reading or writing tracee memory failed.
    #[error("cannot access memory of pid {pid} at {addr}: {errno}")]
    Memory {
        /// The process.
        pid: Pid,
        /// The address.
        addr: RuntimeAddr,
        /// The error.
        errno: Errno,
    },
    /// A system call rtrace made a tracee thread run (to map its scratch
    /// page, fast probes' ring or detour areas, or to unmap them) failed.
    #[error("{call} made by rtrace in thread {tid} failed: {errno}")]
    Syscall {
        /// The thread that ran it.
        tid: Pid,
        /// The call (`mmap`, `munmap`, `memfd_create`, `close`).
        call: &'static str,
        /// What the kernel answered.
        errno: Errno,
    },
    /// rtrace would have to make a tracee thread run a system call of its
    /// own, and that call would go through the thread's seccomp filter (or
    /// strict mode), which rtrace may not suspend: it makes none there.
    #[error("{}", seccomp_message(*pid, *tid, why.as_deref()))]
    Seccomp {
        /// The process.
        pid: Pid,
        /// The thread that would run the call.
        tid: Pid,
        /// Why the filter cannot be suspended (`no CAP_SYS_ADMIN`); None in
        /// strict mode, which no call of rtrace's may pass.
        why: Option<String>,
    },
    /// A thread came back through the return trampoline from a call rtrace has no
    /// record of; its return address is unknown.
    #[error("thread {tid} returned through the trampoline with no call in flight at sp {sp}")]
    LostReturn {
        /// The thread.
        tid: Pid,
        /// Its stack pointer.
        sp: RuntimeAddr,
    },
    /// A system call made on rtrace's own behalf failed.
    #[error("{context}: {source}")]
    Io {
        /// What rtrace was doing.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// Writing the trace output failed (closed pipe, full disk, …).
    #[error("cannot write output: {0}")]
    Output(io::Error),
    /// `-p` named a thread, not a process.
    #[error("{tid} is a thread of process {pid}, not a process")]
    NotAProcess {
        /// The thread given.
        tid: Pid,
        /// Its process.
        pid: Pid,
    },
    /// The process's main thread has exited (a zombie until the process ends).
    #[error("cannot attach to process {pid}: its main thread has exited")]
    LeaderExited {
        /// The process.
        pid: Pid,
    },
    /// An absolute address probe that no loaded module maps.
    #[error("no loaded module maps {addr}")]
    UnmappedAddress {
        /// The address.
        addr: RuntimeAddr,
    },
    /// A handler of a fast probe read tracee memory its record does not hold
    /// (a fast hit carries the registers and the memory its handlers asked
    /// to capture, nothing else).
    #[error("memory at {addr} was not captured by the fast probe")]
    NotCaptured {
        /// The address.
        addr: RuntimeAddr,
    },
    /// A command-line value does not parse (`--step`, `--inject`).
    #[error("{reason}")]
    InvalidValue {
        /// The option.
        option: &'static str,
        /// What is wrong, naming the value.
        reason: String,
    },
    /// A handler returned an error; tracing stopped.
    #[error("handler error: {0}")]
    Handler(String),
    /// A script does not compile, or ran past its limits
    /// (`trace.rhai:3: …`).
    #[error("{0}")]
    Script(String),
}

/// `NoLineInfo`'s account of the line tables searched.
fn in_line_tables(unbuilt: Option<&str>, searched: &[String]) -> String {
    match (unbuilt, searched) {
        (None, []) => String::new(),
        (Some(m), []) => format!(" ({m} has no line table)"),
        (None, s) => format!(" (not a file of the line tables of {})", s.join(", ")),
        (Some(m), s) => format!(
            " ({m} has no line table; not a file of those of {})",
            s.join(", ")
        ),
    }
}

/// `Seccomp`'s line: who runs under what, and why rtrace cannot suspend it.
fn seccomp_message(pid: Pid, tid: Pid, why: Option<&str>) -> String {
    let who = match pid == tid {
        true => format!("pid {pid}"),
        false => format!("thread {tid} of pid {pid}"),
    };
    match why {
        Some(why) => {
            format!("{who} runs under a seccomp filter that rtrace may not suspend ({why})")
        }
        None => format!("{who} runs in seccomp strict mode (only read, write, exit and sigreturn)"),
    }
}

impl Error {
    /// The same error again, for a failure that is cached and reported at
    /// every use (a section that does not inflate, a line table that does
    /// not parse): the error is not `Clone`, since an I/O error is not; one
    /// is copied by its kind and message, which is all that is shown of it.
    pub(crate) fn again(&self) -> Error {
        fn io_again(e: &io::Error) -> io::Error {
            io::Error::new(e.kind(), e.to_string())
        }
        match self {
            Error::NoSuchProcess { pid } => Error::NoSuchProcess { pid: *pid },
            Error::AlreadyTraced { pid, tracer } => Error::AlreadyTraced {
                pid: *pid,
                tracer: *tracer,
            },
            Error::PermissionDenied { pid } => Error::PermissionDenied { pid: *pid },
            Error::Untraceable { pid, why } => Error::Untraceable { pid: *pid, why },
            Error::Launch { program, reason } => Error::Launch {
                program: program.clone(),
                reason: reason.clone(),
            },
            Error::NotElf { path } => Error::NotElf { path: path.clone() },
            Error::UnsupportedElf { path, what } => Error::UnsupportedElf {
                path: path.clone(),
                what: what.clone(),
            },
            Error::CorruptElf { path, reason } => Error::CorruptElf {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::InvalidSpec { spec, reason } => Error::InvalidSpec {
                spec: spec.clone(),
                reason: reason.clone(),
            },
            Error::UnknownSymbol { name, searched } => Error::UnknownSymbol {
                name: name.clone(),
                searched: searched.clone(),
            },
            Error::UnknownModule { module, loaded } => Error::UnknownModule {
                module: module.clone(),
                loaded: loaded.clone(),
            },
            Error::ModuleNeverLoads {
                probe,
                module,
                why,
                closest,
            } => Error::ModuleNeverLoads {
                probe: probe.clone(),
                module: module.clone(),
                why: why.clone(),
                closest: closest.clone(),
            },
            Error::Dwarf { path, reason } => Error::Dwarf {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::NoLineInfo {
                file,
                line,
                searched,
                unbuilt,
            } => Error::NoLineInfo {
                file: file.clone(),
                line: *line,
                searched: searched.clone(),
                unbuilt: unbuilt.clone(),
            },
            Error::NoCodeAtLine {
                file,
                line,
                nearest,
            } => Error::NoCodeAtLine {
                file: file.clone(),
                line: *line,
                nearest: nearest.clone(),
            },
            Error::NotInstructionBoundary {
                spec,
                symbol,
                offset,
            } => Error::NotInstructionBoundary {
                spec: spec.clone(),
                symbol: symbol.clone(),
                offset: *offset,
            },
            Error::UnsupportedInstruction { addr, reason } => Error::UnsupportedInstruction {
                addr: *addr,
                reason: reason.clone(),
            },
            Error::ForeignBreakpoint { addr, file, byte } => Error::ForeignBreakpoint {
                addr: *addr,
                file: file.clone(),
                byte: *byte,
            },
            Error::UnresolvedIfunc { name } => Error::UnresolvedIfunc { name: name.clone() },
            Error::Ptrace { op, tid, errno } => Error::Ptrace {
                op,
                tid: *tid,
                errno: *errno,
            },
            Error::Memory { pid, addr, errno } => Error::Memory {
                pid: *pid,
                addr: *addr,
                errno: *errno,
            },
            Error::Syscall { tid, call, errno } => Error::Syscall {
                tid: *tid,
                call,
                errno: *errno,
            },
            Error::Seccomp { pid, tid, why } => Error::Seccomp {
                pid: *pid,
                tid: *tid,
                why: why.clone(),
            },
            Error::LostReturn { tid, sp } => Error::LostReturn { tid: *tid, sp: *sp },
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: io_again(source),
            },
            Error::Output(e) => Error::Output(io_again(e)),
            Error::Recording { path, why } => Error::Recording {
                path: path.clone(),
                why: why.clone(),
            },
            Error::NotAProcess { tid, pid } => Error::NotAProcess {
                tid: *tid,
                pid: *pid,
            },
            Error::LeaderExited { pid } => Error::LeaderExited { pid: *pid },
            Error::UnmappedAddress { addr } => Error::UnmappedAddress { addr: *addr },
            Error::NotCaptured { addr } => Error::NotCaptured { addr: *addr },
            Error::InvalidValue { option, reason } => Error::InvalidValue {
                option,
                reason: reason.clone(),
            },
            Error::Handler(message) => Error::Handler(message.clone()),
            Error::Script(message) => Error::Script(message.clone()),
        }
    }

    /// Wraps an I/O error with what rtrace was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the error only means that the tracee (or the thread concerned)
    /// has exited or been killed: ptrace's ESRCH, memory gone.
    pub fn is_tracee_gone(&self) -> bool {
        match self {
            Error::Ptrace { errno, .. } | Error::Memory { errno, .. } => {
                matches!(errno, Errno::ESRCH | Errno::ENOENT)
            }
            Error::NoSuchProcess { .. } => true,
            Error::AlreadyTraced { .. }
            | Error::PermissionDenied { .. }
            | Error::Untraceable { .. }
            | Error::Launch { .. }
            | Error::NotElf { .. }
            | Error::UnsupportedElf { .. }
            | Error::CorruptElf { .. }
            | Error::Dwarf { .. }
            | Error::InvalidSpec { .. }
            | Error::UnknownSymbol { .. }
            | Error::UnknownModule { .. }
            | Error::ModuleNeverLoads { .. }
            | Error::NoLineInfo { .. }
            | Error::NoCodeAtLine { .. }
            | Error::NotInstructionBoundary { .. }
            | Error::UnsupportedInstruction { .. }
            | Error::ForeignBreakpoint { .. }
            | Error::UnresolvedIfunc { .. }
            | Error::Syscall { .. }
            | Error::Seccomp { .. }
            | Error::LostReturn { .. }
            | Error::Io { .. }
            | Error::Output(_)
            | Error::Recording { .. }
            | Error::NotAProcess { .. }
            | Error::LeaderExited { .. }
            | Error::UnmappedAddress { .. }
            | Error::NotCaptured { .. }
            | Error::InvalidValue { .. }
            | Error::Handler(_)
            | Error::Script(_) => false,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NoSuchProcess { .. } => Some("check the pid with `ps`".into()),
            Error::AlreadyTraced { tracer, .. } => {
                Some(format!("detach the other tracer (pid {tracer}) first"))
            }
            Error::PermissionDenied { .. } => Some(
                "run as the same user with /proc/sys/kernel/yama/ptrace_scope set to 0, \
                 or as root / with CAP_SYS_PTRACE"
                    .into(),
            ),
            Error::Untraceable { .. } => Some("attach to a user process: `ps -e` lists them".into()),
            Error::Launch { .. } => Some("check the program path and permissions".into()),
            Error::NotElf { .. } | Error::CorruptElf { .. } => {
                Some("rtrace traces ELF executables only".into())
            }
            Error::UnsupportedElf { .. } => {
                Some("trace its x86-64 build; `file PROGRAM` says what a program is built for".into())
            }
            Error::Recording { .. } => Some(
                "give a file `rtrace record` wrote; a cut one is read up to its last whole record"
                    .into(),
            ),
            Error::Dwarf { .. } => {
                Some("build the program with -g, or install its debug package".into())
            }
            Error::InvalidSpec { .. } => Some(
                "a spec is FUNC, MODULE:FUNC, GLOB, FUNC+OFFSET, ADDRESS, MODULE:ADDRESS \
                 or FILE:LINE"
                    .into(),
            ),
            Error::UnknownSymbol { .. } => Some(
                "check the name with `nm -D` or qualify it with its module, e.g. libc:NAME".into(),
            ),
            Error::UnknownModule { .. } => {
                Some("name a loaded module by its file name, e.g. libc".into())
            }
            Error::ModuleNeverLoads { .. } => Some(
                "name a module by its file name, e.g. libc, or by its path, as a library or \
                 program loaded later from elsewhere (a plugin) must be"
                    .into(),
            ),
            // Without any line table the program was built without -g; with
            // some, the file is simply not one of theirs.
            Error::NoLineInfo {
                searched, unbuilt, ..
            } if searched.is_empty() || unbuilt.is_some() => {
                Some("build the program with -g, or install its debug package".into())
            }
            Error::NoLineInfo { .. } => Some(
                "check the file name: `rtrace -l FUNCTION -- PROGRAM` shows a function's source file"
                    .into(),
            ),
            // The message already says what to do.
            Error::NoCodeAtLine { .. } => None,
            Error::NotInstructionBoundary { .. } => {
                Some("pick an offset shown by `objdump -d`".into())
            }
            Error::UnsupportedInstruction { .. } => {
                Some("probe another instruction of the function".into())
            }
            Error::ForeignBreakpoint { .. } => Some(
                "remove that breakpoint (delete it in the debugger, `perf probe -d`, or end the \
                 bpftrace program) and run rtrace again, or probe another instruction"
                    .into(),
            ),
            Error::UnresolvedIfunc { name } => Some(format!(
                "probe its implementation by name; `rtrace --list '*{name}*' -- PROGRAM` lists candidates"
            )),
            Error::NotAProcess { pid, .. } => Some(format!("attach to the process: -p {pid}")),
            Error::InvalidValue { option, .. } => Some(format!("see `rtrace --help` for {option}")),
            Error::LeaderExited { .. } => Some(
                "ptrace cannot attach while the main thread is a zombie; \
                 launch the program under rtrace instead"
                    .into(),
            ),
            Error::UnmappedAddress { .. } => Some(
                "see /proc/PID/maps; in a PIE program or a library give the address \
                 relative to its module, e.g. prog:0x1139"
                    .into(),
            ),
            Error::Seccomp { why: Some(_), .. } => Some(
                "run rtrace as root (CAP_SYS_ADMIN), outside any seccomp sandbox, to \
                 suspend the filter for rtrace's own calls"
                    .into(),
            ),
            Error::Syscall {
                errno: Errno::EPERM | Errno::EACCES,
                ..
            } => Some(
                "a security policy the program runs under refused it (an LSM such as \
                 SELinux's execmem)"
                    .into(),
            ),
            Error::Ptrace { .. }
            | Error::Seccomp { .. }
            | Error::Syscall { .. }
            | Error::Memory { .. }
            | Error::LostReturn { .. }
            | Error::Io { .. }
            | Error::Output(_)
            | Error::NotCaptured { .. }
            | Error::Handler(_)
            | Error::Script(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn again_says_the_same() {
        let errors = [
            Error::CorruptElf {
                path: "/lib/x.so".into(),
                reason: ".debug_line: bad .zdebug header".into(),
            },
            Error::io("cannot read /x", io::Error::from_raw_os_error(libc::ENOENT)),
            Error::Output(io::Error::from(io::ErrorKind::BrokenPipe)),
            Error::Memory {
                pid: Pid::from_raw(7),
                addr: RuntimeAddr(0x1000),
                errno: Errno::EFAULT,
            },
            Error::UnresolvedIfunc {
                name: "strlen".into(),
            },
        ];
        for e in &errors {
            let again = e.again();
            assert_eq!(again.to_string(), e.to_string());
            assert_eq!(again.hint(), e.hint());
            assert_eq!(again.is_tracee_gone(), e.is_tracee_gone());
        }
    }
}
