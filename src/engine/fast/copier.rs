//! The copier: one thread of rtrace's that takes the records out of every
//! ring as soon as they are published, into batches in rtrace's memory, so
//! that the program's threads find room in the ring without waiting for
//! the tracing thread. The tracing thread hands the batches to the
//! handlers (renders them) at its own pace, every few milliseconds, in
//! order, and takes from the ring itself whatever the copier has not
//! taken yet when it must have everything up to now (an int3 hit after a
//! thread's fast records, a fork, an exec, an exit): both take under the
//! ring's one lock, the copier's batches first, so a thread's records stay
//! in order.
//!
//! The copier only reads and frees slots and wakes the threads waiting for
//! room (as the tracing thread does when it reads: `drain::made_room`);
//! it never stops the program or calls ptrace. It holds at most
//! [`MAX_QUEUED`] bytes of records in all: past that it leaves them in
//! the rings, which fill, and the program's threads wait for room as they
//! did before (`--overflow block`) or drop (`--overflow drop`), so
//! rtrace's memory stays bounded when the handlers are slower than the
//! program. A ring it finds corrupt (see `drain::take_records`) it reads
//! no more, and says why to the tracing thread.
//!
//! A leaf of the component: the rings (`state::Ring`) hold their
//! [`Copying`]; the copier holds them weakly, and forgets a ring once the
//! ring is gone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::arch::detour::{ring, RingLayout};
use crate::sys::shm::SharedMap;

use super::drain::{made_room, take_records, test_read_pause};

/// The most bytes of records the copier holds for the tracing thread, in
/// all (a ring's worth).
pub(super) const MAX_QUEUED: usize = 16 << 20;
/// Records one copy takes from one ring at most, before the next ring's
/// turn.
const COPY_BUDGET: u64 = 4096;
/// The copier's naps while the rings are empty: from the shortest, doubled
/// after each empty look, up to the longest (a ring of 65,536 records
/// written at 20 M records/s fills in 3 ms).
const SHORTEST_NAP: Duration = Duration::from_micros(50);
const LONGEST_NAP: Duration = Duration::from_millis(1);

/// Bytes of records held by the copier, in all rings' batches.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// What [`Copying::take`] took.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Taken {
    /// The records, whole slots, in order.
    pub records: Vec<u8>,
    /// The ring's position past them.
    pub upto: u64,
    /// What makes the ring corrupt, found after them.
    pub corrupt: Option<String>,
}

/// One ring as the copier and the tracing thread share it.
#[derive(Debug)]
pub(crate) struct Copying {
    map: Arc<SharedMap>,
    layout: RingLayout,
    /// Records taken from the ring, in all (the watchman's sign that
    /// rtrace reads).
    taken: Arc<AtomicU64>,
    copied: Mutex<Copied>,
}

#[derive(Debug, Default)]
struct Copied {
    /// The ring's dequeue position: the records before it are taken out.
    pos: u64,
    /// Records taken out and not handed over yet, oldest first, each batch
    /// whole slots, with the position past it.
    batches: VecDeque<(Vec<u8>, u64)>,
    /// What no detour writes, found in the ring by the copier (it reads the
    /// ring no more).
    corrupt: Option<String>,
}

impl Copying {
    /// Starts copying the ring mapped at `map` (shape `layout`, nothing
    /// read yet; `taken` counts what is read).
    pub(super) fn start(
        map: Arc<SharedMap>,
        layout: RingLayout,
        taken: Arc<AtomicU64>,
    ) -> Arc<Copying> {
        let copying = Arc::new(Copying {
            map,
            layout,
            taken,
            copied: Mutex::default(),
        });
        register(&copying);
        copying
    }

    /// A ring's copying that the copier does not know: only what
    /// [`Copying::take`] takes is taken (by the tracing thread). For a ring
    /// that serves only int3 probes' returns: their records come no faster
    /// than the stops of their entries, each of which reads the ring first,
    /// and a copier thread waking for each would cost the program a switch
    /// per call on a CPU it shares (`--pin`).
    pub(super) fn unregistered(
        map: Arc<SharedMap>,
        layout: RingLayout,
        taken: Arc<AtomicU64>,
    ) -> Arc<Copying> {
        Arc::new(Copying {
            map,
            layout,
            taken,
            copied: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Copied> {
        // A panic while the lock was held left nothing half done that the
        // state cannot say (a batch is pushed whole).
        self.copied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes up to about `budget` records, in order: the copier's batches
    /// first, then (with budget left) the ring's own, with
    /// `skip_unpublished` as `take_records` has it. Returns them with the
    /// ring's position past them (past the slots skipped too), and what
    /// makes the ring corrupt when that was found after them (by the
    /// copier, or by this read of the ring): they are to be handed over,
    /// then the ring declared corrupt. Err with what makes it corrupt when
    /// no record came before.
    pub(super) fn take(
        &self,
        skip_unpublished: bool,
        budget: u64,
    ) -> std::result::Result<Taken, String> {
        let slot = self.layout.slot_size as usize;
        let mut c = self.lock();
        let mut out = Vec::new();
        let mut upto = None;
        while (out.len() / slot) < budget as usize {
            let Some((batch, past)) = c.batches.pop_front() else {
                break;
            };
            QUEUED.fetch_sub(batch.len(), Ordering::Relaxed);
            match out.is_empty() {
                true => out = batch,
                false => out.extend_from_slice(&batch),
            }
            upto = Some(past);
        }
        let left = budget.saturating_sub((out.len() / slot) as u64);
        let mut corrupt = c.corrupt.clone();
        if corrupt.is_none() && left > 0 {
            let mut pos = c.pos;
            match take_records(
                &self.map,
                self.layout,
                &mut pos,
                skip_unpublished,
                left,
                spare(),
            ) {
                Ok(direct) => {
                    c.pos = pos;
                    upto = Some(pos);
                    if !direct.is_empty() {
                        made_room(&self.map, &self.taken, (direct.len() / slot) as u64);
                    }
                    match out.is_empty() {
                        true => out = direct,
                        false => out.extend_from_slice(&direct),
                    }
                }
                // The ring is read no more, by the copier either.
                Err(why) => {
                    c.corrupt = Some(why.clone());
                    corrupt = Some(why);
                }
            }
        }
        match (upto, corrupt) {
            (None, Some(why)) => Err(why),
            (upto, corrupt) => Ok(Taken {
                records: out,
                upto: upto.unwrap_or(c.pos),
                corrupt,
            }),
        }
    }

    /// The ring is corrupt (`why`, found by the tracing thread): the
    /// copier reads it no more, and its batches go.
    pub(super) fn abandon(&self, why: &str) {
        let mut c = self.lock();
        c.corrupt.get_or_insert_with(|| why.to_string());
        for (batch, _) in c.batches.drain(..) {
            QUEUED.fetch_sub(batch.len(), Ordering::Relaxed);
        }
    }

    /// True when there is nothing new: no batch waits, and the ring's next
    /// slot is free.
    pub(super) fn idle(&self) -> bool {
        let c = self.lock();
        let l = self.layout;
        let off = ring::SLOTS + (c.pos & (l.capacity - 1)) * l.slot_size;
        c.batches.is_empty()
            && c.corrupt.is_none()
            && self.map.load_u64(off + ring::SEQ) == c.pos & !(l.capacity - 1)
    }

    /// True when batches wait for the tracing thread.
    pub(super) fn waiting(&self) -> bool {
        !self.lock().batches.is_empty()
    }

    /// One copy: up to [`COPY_BUDGET`] records into a batch. True when it
    /// took some.
    fn copy(&self) -> bool {
        let mut c = self.lock();
        if c.corrupt.is_some() {
            return false;
        }
        let mut pos = c.pos;
        match take_records(
            &self.map,
            self.layout,
            &mut pos,
            false,
            COPY_BUDGET,
            spare(),
        ) {
            Ok(records) if records.is_empty() => {
                recycle(records);
                false
            }
            Ok(records) => {
                c.pos = pos;
                let n = records.len() / self.layout.slot_size as usize;
                QUEUED.fetch_add(records.len(), Ordering::Relaxed);
                c.batches.push_back((records, pos));
                drop(c);
                made_room(&self.map, &self.taken, n as u64);
                true
            }
            Err(why) => {
                // The records of this copy are not believed: the position
                // stays, and the tracing thread is told.
                c.corrupt = Some(why);
                false
            }
        }
    }
}

impl Drop for Copying {
    fn drop(&mut self) {
        let c = self.copied.get_mut().unwrap_or_else(|p| p.into_inner());
        let held: usize = c.batches.iter().map(|(b, _)| b.len()).sum();
        QUEUED.fetch_sub(held, Ordering::Relaxed);
    }
}

/// Buffers of records handed over, kept for the next copies (a copy into
/// fresh memory faults its pages in, which a machine short of free pages
/// can make take tens of milliseconds, while the ring fills).
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// The most buffers kept.
const SPARES: usize = 64;

/// A buffer for records: one kept, or a new one.
fn spare() -> Vec<u8> {
    SPARE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop()
        .unwrap_or_default()
}

/// Keeps `records` (handed over, or empty) for a later copy.
pub(super) fn recycle(records: Vec<u8>) {
    if records.capacity() == 0 {
        return;
    }
    let mut spare = SPARE.lock().unwrap_or_else(|p| p.into_inner());
    if spare.len() < SPARES {
        spare.push(records);
    }
}

/// The rings being copied, and the copier's wake-up when there were none.
struct Registry {
    rings: Mutex<Vec<Weak<Copying>>>,
    added: Condvar,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("rtrace-copy".into())
            .spawn(run);
        // Without the thread, the tracing thread reads the rings itself,
        // as it always can.
        drop(spawned);
        Registry {
            rings: Mutex::new(Vec::new()),
            added: Condvar::new(),
        }
    })
}

fn register(copying: &Arc<Copying>) {
    let r = registry();
    r.rings
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::downgrade(copying));
    r.added.notify_one();
}

/// The copier's loop: each ring in turn while any has records, a nap
/// growing up to [`LONGEST_NAP`] while none has, asleep while there is no
/// ring.
fn run() {
    let r = registry();
    let mut nap = SHORTEST_NAP;
    loop {
        let rings: Vec<Arc<Copying>> = {
            let mut rings = r.rings.lock().unwrap_or_else(|p| p.into_inner());
            rings.retain(|w| w.strong_count() > 0);
            while rings.is_empty() {
                rings = r.added.wait(rings).unwrap_or_else(|p| p.into_inner());
                rings.retain(|w| w.strong_count() > 0);
            }
            rings.iter().filter_map(Weak::upgrade).collect()
        };
        let mut took = false;
        for ring in &rings {
            if QUEUED.load(Ordering::Relaxed) >= MAX_QUEUED {
                break;
            }
            took |= ring.copy();
        }
        drop(rings);
        if took {
            nap = SHORTEST_NAP;
            if let Some(pause) = test_read_pause() {
                std::thread::sleep(pause);
            }
        } else {
            std::thread::sleep(nap);
            nap = (nap * 2).min(LONGEST_NAP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::drain::tests::{publish, test_ring};
    use super::*;

    fn tscs(records: &[u8]) -> Vec<u64> {
        records
            .chunks(256)
            .map(|rec| u64::from_le_bytes(rec[24..32].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn batches_copied_come_first_then_the_rings_own_records_in_order() {
        let r = test_ring(16);
        for pos in 0..10 {
            publish(&r, pos, 0, 7, 100 + pos);
        }
        assert!(r.copying.copy());
        assert!(!r.copying.copy(), "nothing more published");
        // Their slots are free: the ring takes a lap's worth more.
        for pos in 10..26 {
            publish(&r, pos, 0, 7, 100 + pos);
        }
        assert!(r.copying.waiting());
        assert!(!r.copying.idle());
        // A budget is met in whole batches: the copied one first.
        let Taken {
            records: first,
            upto,
            ..
        } = r.copying.take(false, 4).unwrap();
        assert_eq!(upto, 10);
        assert_eq!(tscs(&first), (100..110).collect::<Vec<_>>());
        assert!(!r.copying.waiting());
        let Taken {
            records: rest,
            upto,
            ..
        } = r.copying.take(false, 64).unwrap();
        assert_eq!(upto, 26);
        assert_eq!(tscs(&rest), (110..126).collect::<Vec<_>>());
        assert!(r.copying.idle());
        assert_eq!(
            r.copying.take(false, 64).unwrap(),
            Taken {
                records: vec![],
                upto: 26,
                corrupt: None
            }
        );
    }

    #[test]
    fn a_corrupt_ring_found_by_the_copier_is_said_with_its_batches() {
        let r = test_ring(16);
        for pos in 0..3 {
            publish(&r, pos, 0, 7, 100 + pos);
        }
        assert!(r.copying.copy());
        // An enqueue position no detour leaves.
        r.map.store_u64(ring::ENQUEUE, 1000);
        assert!(!r.copying.copy());
        assert!(!r.copying.idle());
        // The batch comes with the corruption found after it, in one take
        // (a last read of the ring is one take).
        let taken = r.copying.take(false, 64).unwrap();
        assert_eq!(tscs(&taken.records), [100, 101, 102]);
        let why = taken.corrupt.expect("the corruption");
        assert!(why.starts_with("its enqueue position is 1000"), "{why}");
        assert_eq!(r.copying.take(false, 64).unwrap_err(), why);
        assert!(!r.copying.copy(), "a corrupt ring is not read again");
    }

    /// A ring the tracing thread found corrupt is not copied any more, and
    /// its batches are let go (the copier's memory with them).
    #[test]
    fn a_ring_found_corrupt_by_the_tracing_thread_is_copied_no_more() {
        let r = test_ring(16);
        for pos in 0..3 {
            publish(&r, pos, 0, 7, 100 + pos);
        }
        assert!(r.copying.copy());
        r.copying.abandon("a record is of kind 7");
        assert!(!r.copying.waiting());
        publish(&r, 3, 0, 7, 103);
        assert!(!r.copying.copy());
        assert_eq!(
            r.copying.take(false, 64).unwrap_err(),
            "a record is of kind 7"
        );
    }
}
