//! Launching a program under ptrace from its first instruction.
//!
//! The child stops itself with SIGSTOP before `execve`; the parent seizes it
//! (PTRACE_SEIZE, so group-stops and PTRACE_INTERRUPT have their modern meaning)
//! with PTRACE_O_EXITKILL and the event options, then lets it go on with SIGCONT.
//! The first stop the tracer then sees for it is PTRACE_EVENT_EXEC, before the
//! new image has executed anything. (PTRACE_TRACEME would give the same start,
//! but a TRACEME tracee can never be seized, and without seize semantics SIGSTOP
//! and SIGCONT cannot behave as they do untraced.)
//!
//! If `execve` fails, the child writes its errno to a close-on-exec pipe and exits
//! with 127; [`Launched::exec_error`] reads it.
//!
//! The program inherits exactly the descriptors rtrace was given: each of fds
//! 0, 1 and 2 that was closed when rtrace started (and holds only the
//! `/dev/null` Rust's runtime put there, see [`super::stdfds`]) is closed in
//! the child before `execve`.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use crate::addr::Pid;
use crate::error::{Error, Result};
use crate::sys::{ptrace, stdfds};

/// What to run.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The resolved path of the program.
    pub path: CString,
    /// The arguments, `argv[0]` included.
    pub argv: Vec<CString>,
    /// The whole environment (`KEY=VALUE`).
    pub envp: Vec<CString>,
    /// The working directory, if it differs from ours.
    pub cwd: Option<CString>,
}

/// A launched child, seized and on its way to `execve`.
#[derive(Debug)]
pub struct Launched {
    /// Its pid.
    pub pid: Pid,
    errors: File,
}

impl Launched {
    /// After the child exited without reaching the exec stop: why `execve` failed.
    pub fn exec_error(&mut self) -> Option<Errno> {
        let mut buf = [0u8; 4];
        match self.errors.read(&mut buf) {
            Ok(4) => Some(Errno::from_raw(i32::from_ne_bytes(buf))),
            _ => None,
        }
    }
}

/// Converts an OS string to a C string (NUL bytes are refused).
pub fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::Launch {
        program: s.to_string_lossy().into_owned(),
        reason: "argument contains a NUL byte".into(),
    })
}

/// Forks, stops the child before `execve`, seizes it and lets it exec.
pub fn launch(spec: &LaunchSpec) -> Result<Launched> {
    let mut argv: Vec<*const libc::c_char> = spec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = spec.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());

    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two c_ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(Error::io("pipe2", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just returned these two descriptors; we own them.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Looked at before the fork: the child only closes.
    let placeholders = stdfds::placeholders();
    // The mask rtrace was started with: the program's, as untraced.
    let mask = super::signal::original_mask();

    // SAFETY: between fork and execve/_exit the child only calls async-signal-safe
    // functions (sigprocmask, signal, chdir, close, kill, getpid, execve, write,
    // _exit) on memory prepared before the fork; it allocates nothing and takes
    // no lock.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(Error::io("fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; every pointer was built before the fork and stays
        // valid in the child's copy of our memory.
        unsafe {
            libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
            // Rust ignores SIGPIPE; the program must start with the default.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if let Some(cwd) = &spec.cwd {
                if libc::chdir(cwd.as_ptr()) == -1 {
                    child_fail(wr.as_raw_fd());
                }
            }
            // The descriptors rtrace was started without, closed again. The
            // error pipe is above them: they were open (std's) when it was made.
            for (fd, placeholder) in placeholders.iter().enumerate() {
                if *placeholder {
                    libc::close(fd as libc::c_int);
                }
            }
            libc::kill(libc::getpid(), libc::SIGSTOP);
            libc::execve(spec.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            child_fail(wr.as_raw_fd());
        }
    }
    drop(wr);
    let pid = Pid::from_raw(pid);
    let mut status = 0;
    // SAFETY: `status` is a valid, writable c_int.
    let r = unsafe { libc::waitpid(pid.as_raw(), &mut status, libc::WUNTRACED) };
    if r == -1 || !libc::WIFSTOPPED(status) {
        return Err(Error::Launch {
            program: spec.path.to_string_lossy().into_owned(),
            reason: "the child did not start".into(),
        });
    }
    if let Err(errno) = ptrace::seize(pid, ptrace::options(true)) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        return Err(match errno {
            Errno::EPERM => Error::PermissionDenied { pid },
            errno => Error::Ptrace {
                op: "PTRACE_SEIZE",
                tid: pid,
                errno,
            },
        });
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    Ok(Launched {
        pid,
        errors: File::from(rd),
    })
}

/// Reports errno through the pipe and exits. Child side only.
unsafe fn child_fail(fd: libc::c_int) -> ! {
    let e = Errno::last_raw().to_ne_bytes();
    // SAFETY: `e` is 4 readable bytes; write and _exit are async-signal-safe.
    unsafe {
        libc::write(fd, e.as_ptr().cast(), e.len());
        libc::_exit(127)
    }
}
