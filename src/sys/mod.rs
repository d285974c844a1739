//! The only module with `unsafe` or raw system calls. It owns no policy: it turns
//! ptrace, waitpid, /proc and signals into typed calls and a closed [`wait::Stop`] enum.

pub mod mem;
pub mod ptrace;
pub mod sched;
pub mod seccomp;
pub mod shm;
pub mod signal;
pub mod spawn;
pub mod stdfds;
pub mod time;
pub mod tty;
pub mod wait;
