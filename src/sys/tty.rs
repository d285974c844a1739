//! The terminal the live view (`--tui`) draws on and reads keys from.

use std::os::fd::BorrowedFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The bytes waiting on standard input, read without blocking (the terminal
/// is in raw mode: one byte per key for the keys the live view knows).
pub fn pending_keys() -> Vec<u8> {
    let mut keys = Vec::new();
    // SAFETY: fd 0 stays open for the life of the process; the borrow does
    // not outlive this call.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    loop {
        let mut fds = [PollFd::new(stdin, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(1)
                if fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLIN)) => {}
            _ => return keys,
        }
        let mut buf = [0u8; 64];
        match nix::unistd::read(0, &mut buf) {
            Ok(0) | Err(_) => return keys,
            Ok(n) => keys.extend_from_slice(&buf[..n]),
        }
    }
}
