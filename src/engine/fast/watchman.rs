//! The watchman: a thread of rtrace's per ring that holds the ring's
//! `ALIVE` word as a robust futex (the kernel marks it when rtrace dies),
//! keeps the heartbeat while requests wait, and wakes the tracing thread
//! when a hook rings the doorbell (see `hooks.rs` for the protocol). A leaf
//! of the component: the per-space state (`state.rs`) owns one per ring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::addr::Tid;
use crate::arch::detour::ring;
use crate::arch::hook::{self, request};
use crate::sys::shm::{RobustEntry, SharedMap};
use crate::sys::signal;

/// rtrace's side of one ring's liveness (see the module documentation).
#[derive(Debug)]
pub(crate) struct Watchman {
    map: Arc<SharedMap>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchman {
    /// Starts the watchman of the ring mapped at `map`, waking `tracer`
    /// (the tracing thread) for requests. Returns once it holds `ALIVE`.
    pub fn start(map: Arc<SharedMap>, tracer: Tid) -> std::io::Result<Watchman> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, held) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rtrace-watch".into())
            .stack_size(64 << 10)
            .spawn({
                let map = map.clone();
                let stop = stop.clone();
                move || watch(&map, &stop, tracer, ready)
            })?;
        let _ = held.recv();
        Ok(Watchman {
            map,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watchman {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.map.bump_u32(ring::DOORBELL);
        self.map.futex_wake(ring::DOORBELL);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The watchman's thread: `ALIVE` held as a robust futex for as long as it
/// runs (so until rtrace ends, however it ends), a heartbeat every
/// millisecond while a request waits, and a wake-up of the tracer at every
/// ring of the doorbell (and every millisecond while a request waits: a
/// wake-up that came just before the tracer blocked is not lost).
fn watch(map: &SharedMap, stop: &AtomicBool, tracer: Tid, ready: std::sync::mpsc::Sender<()>) {
    signal::block_all_here();
    let mut entry = Box::new(RobustEntry::default());
    map.own_robust(ring::ALIVE, &mut entry);
    let _ = ready.send(());
    let mut seen = map.load_u32(ring::DOORBELL);
    while !stop.load(Ordering::Acquire) {
        let waiting = (0..ring::REQUEST_COUNT).any(|i| {
            map.load_u32(ring::REQUESTS + i * ring::REQUEST_SIZE + hook::REQ_STATE)
                == request::POSTED
        });
        if waiting {
            map.bump_u32(ring::HEARTBEAT);
            signal::kick(tracer);
        }
        map.futex_wait(
            ring::DOORBELL,
            seen,
            waiting.then_some(Duration::from_millis(1)),
        );
        let now = map.load_u32(ring::DOORBELL);
        if now != seen {
            seen = now;
            signal::kick(tracer);
        }
    }
    map.disown_robust(ring::ALIVE, &mut entry);
}
