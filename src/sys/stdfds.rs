//! The standard descriptors (0, 1, 2) this process was started without.
//!
//! Rust's runtime opens `/dev/null` on each of fds 0, 1 and 2 that is closed
//! when a program starts (`sanitize_standard_fds` in std's Unix `init`, which
//! `lang_start` runs before `main`), so that a file opened later cannot land
//! on fd 1 and take what is printed. A program rtrace launches must get the
//! descriptors rtrace was given, not those placeholders: started with fd 2
//! closed, its writes to fd 2 fail with EBADF, and they must fail traced too.
//!
//! So a constructor in `.init_array` notes which of the three were closed
//! before std opened anything on them: glibc's start code runs the
//! executable's `.init_array` before it calls `main` (`__libc_start_main` →
//! `call_init`, csu/libc-start.c), and Rust's `main` is what calls
//! `lang_start`. [`placeholders`] then names those that still hold the
//! `/dev/null` std put there, and the launch closes them in the child before
//! `execve` ([`super::spawn`]).

use std::sync::atomic::{AtomicU8, Ordering};

/// Bit N set: fd N was closed when the process started.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

/// Runs before `main` (and so before std's runtime init): it only calls
/// `fcntl` and stores an atomic.
extern "C" fn note_closed_fds() {
    let mut closed = 0u8;
    for fd in 0..3 {
        // SAFETY: F_GETFD on any integer is harmless: it reads the
        // descriptor's flags, or fails (EBADF, its only error) when there is
        // no such descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            closed |= 1 << fd;
        }
    }
    CLOSED_AT_START.store(closed, Ordering::Relaxed);
}

// SAFETY: an `.init_array` entry is a pointer to a function the C runtime
// calls once, before `main`, with (argc, argv, envp), which a function that
// takes no arguments ignores under the SysV ABI. `#[used]` keeps the entry
// although nothing refers to it, in every program that links this library:
// rustc makes the linker take the `#[used]` statics of every rlib it links
// (through the synthetic object it adds to each link, `symbols.o`), so the
// entry is in `rtrace` and in the test binaries alike; the tests of
// `launch.rs` check it runs in both.
#[used]
#[unsafe(link_section = ".init_array")]
static NOTE_CLOSED_FDS: extern "C" fn() = note_closed_fds;

/// The standard descriptors that were closed when this process started and
/// still hold what std opened there (`/dev/null`): those a launched program
/// must not inherit. One that was replaced since (a library user's own
/// `dup2` onto fd 2) is a descriptor of the caller's, and is passed on.
pub fn placeholders() -> [bool; 3] {
    let closed = CLOSED_AT_START.load(Ordering::Relaxed);
    let mut out = [false; 3];
    for (fd, slot) in out.iter_mut().enumerate() {
        *slot = closed & (1 << fd) != 0 && is_dev_null(fd as libc::c_int);
    }
    out
}

/// Whether `fd` is open on `/dev/null` (the character device 1:3).
fn is_dev_null(fd: libc::c_int) -> bool {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct,
    // which fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } == -1 {
        return false;
    }
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
}
