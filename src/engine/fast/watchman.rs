//! The watchman: a thread of rtrace's per ring that holds the ring's
//! `ALIVE` word as a robust futex (the kernel marks it when rtrace dies),
//! keeps the heartbeat while requests or threads wait, and wakes the
//! tracing thread when a hook or a waiting thread rings the doorbell (see
//! `hooks.rs` and `arch::detour`'s wait for the protocols). A leaf of the
//! component: the per-space state (`state.rs`) owns one per ring.
//!
//! For a hook's request the heartbeat only says rtrace runs (not stopped).
//! For a thread waiting for room in a full ring it says more: rtrace is
//! reading. The watchman beats for such waiters only while the records
//! taken from the ring (counted by the copier and the tracing thread) have
//! moved within [`READING`]: a tracing thread stuck in a handler, or
//! writing to a pipe nobody reads, lets the waiters go once the copier
//! holds all it may (they drop their records, counted) rather than hold
//! the program.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// (the tracing thread) for requests; `taken` counts the records the
    /// copier and the tracing thread took from the ring. Returns once it
    /// holds `ALIVE`.
    pub fn start(
        map: Arc<SharedMap>,
        tracer: Tid,
        taken: Arc<AtomicU64>,
    ) -> std::io::Result<Watchman> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, held) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rtrace-watch".into())
            .stack_size(64 << 10)
            .spawn({
                let map = map.clone();
                let stop = stop.clone();
                move || watch(&map, &stop, tracer, &taken, ready)
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

/// How recently records must have been taken from the ring for the
/// watchman to beat for threads waiting for room: long enough that a slow
/// output, or a tracing thread left waiting by the scheduler of a busy
/// machine, slows the program down rather than make it drop records;
/// short enough that a tracing thread stuck for good lets it go soon.
pub(super) const READING: Duration = Duration::from_secs(1);

/// How long after the last ring of the doorbell threads may still be
/// waiting for room (each rings it before every wait of a millisecond).
const WAITERS_GONE: Duration = Duration::from_millis(5);

/// The watchman's thread: `ALIVE` held as a robust futex for as long as it
/// runs (so until rtrace ends, however it ends), a heartbeat every
/// millisecond while a request waits, or while threads wait for room and
/// rtrace is reading, and a wake-up of the tracer at every ring of the
/// doorbell (and every millisecond while a request waits: a wake-up that
/// came just before the tracer blocked is not lost).
fn watch(
    map: &SharedMap,
    stop: &AtomicBool,
    tracer: Tid,
    taken: &AtomicU64,
    ready: std::sync::mpsc::Sender<()>,
) {
    signal::block_all_here();
    let mut entry = Box::new(RobustEntry::default());
    map.own_robust(ring::ALIVE, &mut entry);
    let _ = ready.send(());
    let mut seen = map.load_u32(ring::DOORBELL);
    let mut rang = None::<Instant>;
    let (mut taken_seen, mut taken_at) = (taken.load(Ordering::Relaxed), Instant::now());
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let requests = (0..ring::REQUEST_COUNT).any(|i| {
            map.load_u32(ring::REQUESTS + i * ring::REQUEST_SIZE + hook::REQ_STATE)
                == request::POSTED
        });
        let t = taken.load(Ordering::Relaxed);
        if t != taken_seen {
            (taken_seen, taken_at) = (t, now);
        }
        let waiters = rang.is_some_and(|r| now - r < WAITERS_GONE);
        if requests || (waiters && now - taken_at < READING) {
            map.bump_u32(ring::HEARTBEAT);
        }
        if requests || waiters {
            signal::kick(tracer);
        }
        map.futex_wait(
            ring::DOORBELL,
            seen,
            (requests || waiters).then_some(Duration::from_millis(1)),
        );
        let now = map.load_u32(ring::DOORBELL);
        if now != seen {
            seen = now;
            rang = Some(Instant::now());
            signal::kick(tracer);
        }
    }
    map.disown_robust(ring::ALIVE, &mut entry);
}
