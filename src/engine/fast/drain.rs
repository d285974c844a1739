//! Reading the ring: records taken in order and checked (the ring is
//! untrusted input: see the module `fast`), each turned into a `Hit` for
//! its probes' `on_entry` or a `Return` for their `on_return`, lost records
//! counted, a ring written over declared corrupt.

use std::time::{Duration, Instant};

use crate::addr::{Pid, RuntimeAddr, Tid};
use crate::arch::detour::RingLayout;
use crate::arch::detour::{self, ring, CaptureField, CaptureKind};
use crate::arch::Gpr;
use crate::engine::tracer::{guarded, Consumers, Tracer, World};
use crate::error::{Error, Result};
use crate::handler::{
    Aggregate, CallTimes, Captured, CapturedBuf, CapturedStr, Event, Hit, Memory, ProbeKind, Return,
};
use crate::probe::{HandlerData, ReturnInstance, Watch};
use crate::sys::ptrace;
use crate::sys::shm::{self, SharedMap};
use std::sync::atomic::AtomicU64;

use super::clock::{Drain, Pace, TscClock};
use super::int3::{int3_index, int3_position};
use super::state::{Ring, STUB_INDEX};

/// The most records one drain reads while the tracee runs (about 2 ms of
/// printing): stops waiting meanwhile are not kept waiting longer.
pub(super) const DRAIN_BUDGET: u64 = 4096;

/// A thread pointer's thread and process, as [`deliver`] found them
/// (None: a silent thread, whose records are not reported).
type Found = Option<(Tid, Pid)>;

/// How many threads [`deliver`] keeps as it found them (by their thread
/// pointers) while it reads a batch.
const RECENT_THREADS: usize = 8;

/// How many records ahead of the one read [`take_records`] asks the CPU
/// to bring in.
const PREFETCH_AHEAD: u64 = 8;

/// Thread pointers no thread had, remembered so that the threads are not
/// stopped again for them; past this many (a ring written over with
/// garbage) no more are looked for.
pub(super) const MAX_UNKNOWN_TPS: usize = 1024;

/// More records than this lost per nanosecond cannot be: a lost record is
/// a detour's forty-odd instructions and two locked increments (tens of
/// nanoseconds on one CPU), and this allows for thousands of CPUs. A lost
/// counter that leaps further is not a count.
pub(super) const MAX_LOSSES_PER_NS: u64 = 4096;

/// True when `ring` has nothing new: no batch of records waits, the slot
/// at the next position is free (not published, and not something no
/// detour writes), no record lost since the last look.
pub(super) fn ring_idle(ring: &Ring) -> bool {
    ring.copying.idle() && ring.map.load_u64(ring::LOST_TOTAL) == ring.lost_seen
}

/// The thread pointers of `records` (each `slot` bytes), a run of one
/// thread's records once, in order.
pub(super) fn batch_tps(records: &[u8], slot: usize) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for rec in records.chunks(slot) {
        let at = ring::TP as usize;
        let Some(tp) = rec.get(at..at + 8) else {
            continue;
        };
        let tp = u64::from_le_bytes(tp.try_into().expect("8 bytes"));
        if out.last() != Some(&tp) {
            out.push(tp);
        }
    }
    out
}

/// Copies the published records out of the ring mapped at `map` (shape
/// `l`, dequeue position `consumed`) into `out` (emptied first: a buffer
/// to reuse) and frees their slots, in
/// order, at most `budget` (and never more than the ring holds); with
/// `skip_unpublished`, a slot claimed but never published (its writer is
/// gone) is passed over. Err, with what was found, when the ring holds what
/// no detour writes (the records copied so far are not to be believed
/// either):
///
/// - an enqueue position below the records read, or more than a ring's
///   length above them (a producer claims position `p` only once rtrace
///   has freed `p - capacity`);
/// - a slot whose sequence word is neither free for this lap nor published
///   in it (rtrace freed it for this lap itself);
/// - a published record that changed while it was copied (producers never
///   write a published slot; only rtrace frees it).
pub(super) fn take_records(
    map: &SharedMap,
    l: RingLayout,
    consumed: &mut u64,
    skip_unpublished: bool,
    budget: u64,
    mut out: Vec<u8>,
) -> std::result::Result<Vec<u8>, String> {
    let slot = l.slot_size as usize;
    let enqueued = map.load_u64(ring::ENQUEUE);
    if enqueued < *consumed || enqueued - *consumed > l.capacity {
        return Err(format!(
            "its enqueue position is {enqueued}, with {} records read from a ring of {}",
            *consumed, l.capacity
        ));
    }
    out.clear();
    let mut taken = 0;
    while taken < l.capacity.min(budget) {
        let pos = *consumed;
        let off = ring::SLOTS + (pos & (l.capacity - 1)) * l.slot_size;
        let lap = pos & !(l.capacity - 1);
        // (The records a few ahead are brought in meanwhile: their writer
        // ran on another CPU.)
        map.prefetch_at(ring::SLOTS + ((pos + PREFETCH_AHEAD) & (l.capacity - 1)) * l.slot_size);
        let seq = map.load_u64(off + ring::SEQ);
        if seq == lap && skip_unpublished && pos < enqueued {
            map.store_u64(off + ring::SEQ, lap + l.capacity);
            *consumed += 1;
            taken += 1;
            continue;
        }
        if seq == lap {
            break;
        }
        if seq != lap + 1 {
            return Err(format!(
                "the slot of record {pos} has sequence word {seq:#x}, where {lap:#x} (free) or \
                 {:#x} (published) belongs",
                lap + 1
            ));
        }
        map.read_append(off, slot, &mut out);
        if map.load_u64(off + ring::SEQ) != seq {
            return Err(format!("record {pos} was written while it was read"));
        }
        map.store_u64(off + ring::SEQ, lap + l.capacity);
        *consumed += 1;
        taken += 1;
    }
    Ok(out)
}

/// A pause after every read that took records, for the tests of a slow
/// reader (the environment variable `RTRACE_TEST_READ_PAUSE_MS`, read
/// once; not for users: it only makes rtrace slower).
pub(super) fn test_read_pause() -> Option<Duration> {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("RTRACE_TEST_READ_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

/// `n` records were taken from the ring mapped at `map` (their slots
/// freed; `taken` counts them in all): threads waiting for room are woken
/// (`ROOM` bumped before `WAITING` is cleared: see `arch::detour`'s wait),
/// a judgement that rtrace had stopped reading is taken back, and the
/// watchman sees rtrace reading.
pub(super) fn made_room(map: &SharedMap, taken: &AtomicU64, n: u64) {
    taken.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    map.bump_u32(ring::ROOM);
    if map.load_u64(ring::STALE) != 0 {
        map.store_u64(ring::STALE, 0);
    }
    if map.compare_exchange_u32(ring::WAITING, 1, 0) {
        map.futex_wake(ring::ROOM);
    }
}

/// Checks what a detour, the stub or a hook writes into record `rec` of a ring
/// serving `sites` fast sites and `int3` int3 sites whose returns the stub
/// watches (with a return stub, `stub`): its kind, its site index (an int3
/// site's only in a return), an entry's watch, and its time stamp (within
/// `stamps`). Err says what no detour writes.
pub(super) fn check_record(
    rec: &[u8],
    (sites, int3): (usize, usize),
    stub: bool,
    stamps: &std::ops::RangeInclusive<u64>,
) -> std::result::Result<(), String> {
    let word = |off: u64| {
        let at = off as usize;
        rec.get(at..at + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let (index, kind) = (word(ring::INDEX) as u32, word(ring::KIND) as u32);
    match kind {
        detour::KIND_ENTRY => {
            let watch = word(ring::RET_WATCH) as u32;
            if watch > detour::WATCH_FULL {
                return Err(format!("a record says its return is watched as {watch}"));
            }
        }
        detour::KIND_RETURN if stub => {}
        // rtrace's hook at `__cxa_begin_catch` (see `hooks`).
        detour::KIND_CATCH => {}
        // A slot the stub claimed and had nothing for (under its index).
        detour::KIND_NONE if stub && index == STUB_INDEX => {}
        _ => return Err(format!("a record is of kind {kind}")),
    }
    let int3_return = kind == detour::KIND_RETURN && int3_position(index, int3).is_some();
    if index as usize >= sites && kind != detour::KIND_NONE && !int3_return {
        return Err(format!(
            "a record is of fast site {index}, of {sites} patched"
        ));
    }
    let tsc = word(ring::TSC);
    if !stamps.contains(&tsc) {
        return Err(format!(
            "a record's time stamp {tsc:#x} is outside the run ({:#x} to {:#x})",
            stamps.start(),
            stamps.end()
        ));
    }
    Ok(())
}

/// The lost counters of a ring that moved since they were last seen.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Losses {
    /// The total now.
    total: u64,
    /// (site index, its count now) of the sites whose counter moved.
    sites: Vec<(usize, u64)>,
    /// (site index, its lost-return count now) of the sites whose counter
    /// moved.
    returns: Vec<(usize, u64)>,
}

/// Reads the lost counters of `ring` when its total has moved since
/// `ring.lost_seen` (None when it has not): `seen` has each site's index
/// and counts (records lost, returns lost) as last seen, `elapsed` the time since they
/// were read. Err when they cannot be counts of lost records: a counter
/// that went back, one that leapt further than records can be lost in
/// `elapsed` ([`MAX_LOSSES_PER_NS`]), or a total above the sum of the
/// counters (each detour, and the stub, counts its own before the total).
pub(super) fn read_losses(
    ring: &Ring,
    seen: &[(usize, u64, u64)],
    elapsed: Duration,
) -> std::result::Result<Option<Losses>, String> {
    let total = ring.map.load_u64(ring::LOST_TOTAL);
    if total == ring.lost_seen {
        return Ok(None);
    }
    let most = u64::try_from(elapsed.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1_000_000)
        .saturating_mul(MAX_LOSSES_PER_NS);
    let moved = |what: &dyn Fn() -> String, before: u64, now: u64| {
        if now < before {
            Err(format!("{} went back from {before} to {now}", what()))
        } else if now - before > most {
            Err(format!(
                "{} leapt from {before} to {now} in {} ms",
                what(),
                elapsed.as_millis()
            ))
        } else {
            Ok(())
        }
    };
    moved(
        &|| "its count of lost records".into(),
        ring.lost_seen,
        total,
    )?;
    let mut sum = 0u128;
    let mut losses = Losses {
        total,
        ..Losses::default()
    };
    for &(i, before, ret_before) in seen {
        let now = ring.map.load_u64(ring::LOST + 8 * i as u64);
        moved(&|| format!("the lost count of fast site {i}"), before, now)?;
        let ret_now = ring.map.load_u64(ring::RET_LOST + 8 * i as u64);
        moved(
            &|| format!("the lost-return count of fast site {i}"),
            ret_before,
            ret_now,
        )?;
        sum += u128::from(now) + u128::from(ret_now);
        if now != before {
            losses.sites.push((i, now));
        }
        if ret_now != ret_before {
            losses.returns.push((i, ret_now));
        }
    }
    if sum < u128::from(total) {
        return Err(format!(
            "{total} records lost in all, {sum} by the counts of its sites"
        ));
    }
    Ok(Some(losses))
}

/// What record `rec` captured, as `Hit` reads it.
pub(super) fn captured(
    rec: &[u8],
    fields: &[CaptureField],
    regs: &crate::arch::Regs,
    xmm: [Option<u64>; 8],
) -> Captured {
    let mut c = Captured {
        xmm,
        ..Captured::default()
    };
    if fields.is_empty() {
        return c;
    }
    // The stack first: a stack string's pointer is read from it.
    let is_stack = |f: &&CaptureField| matches!(f.kind, CaptureKind::Stack { .. });
    let ordered = fields
        .iter()
        .filter(is_stack)
        .chain(fields.iter().filter(|f| !is_stack(f)));
    for f in ordered {
        let at = f.offset as usize;
        let Some(status) = rec.get(at..at + 8) else {
            continue;
        };
        let status = u64::from_le_bytes(status.try_into().expect("8 bytes"));
        let len = ((status & detour::CAPTURE_LEN_MASK) as usize).min(f.max() as usize);
        let readable = status & detour::CAPTURE_UNREADABLE == 0;
        let bytes = rec.get(at + 8..at + 8 + len).unwrap_or_default().to_vec();
        let string = |ptr, bytes| CapturedStr {
            ptr,
            bytes,
            terminated: status & detour::CAPTURE_TERMINATED != 0,
            readable,
        };
        match f.kind {
            CaptureKind::CStr { reg, .. } => {
                c.strings.push(string(RuntimeAddr(regs.gpr(reg)), bytes));
            }
            CaptureKind::StackStr { offset, .. } => {
                let slot = RuntimeAddr(regs.sp()).offset(8 + i64::from(offset));
                // (Unknown when the stack could not be read: nothing to
                // serve then.)
                if let Ok(p) = c.read_bytes(slot, 8) {
                    let ptr = u64::from_le_bytes(p.try_into().expect("8 bytes"));
                    c.strings.push(string(RuntimeAddr(ptr), bytes));
                }
            }
            CaptureKind::Bytes { reg, .. } => c.buffers.push(CapturedBuf {
                ptr: RuntimeAddr(regs.gpr(reg)),
                bytes,
                readable,
            }),
            CaptureKind::Stack { .. } if readable => {
                c.stack = Some((RuntimeAddr(regs.sp()).offset(8), bytes));
            }
            CaptureKind::Stack { .. } => {}
        }
    }
    c
}

/// The buffer its call filled, as return record `rec` holds it (at most
/// `max` bytes, from `ptr`).
fn filled_buffer(rec: &[u8], max: u32, ptr: u64) -> CapturedBuf {
    let at = ring::RET_STRING as usize;
    let status = rec.get(at..at + 8).map_or(detour::CAPTURE_UNREADABLE, |s| {
        u64::from_le_bytes(s.try_into().expect("8 bytes"))
    });
    let len = ((status & detour::CAPTURE_LEN_MASK) as usize).min(max as usize);
    CapturedBuf {
        ptr: RuntimeAddr(ptr),
        bytes: rec.get(at + 8..at + 8 + len).unwrap_or_default().to_vec(),
        readable: status & detour::CAPTURE_UNREADABLE == 0,
    }
}

/// Records taken from a ring, checked, not yet handed to the handlers.
pub(super) struct Batch {
    /// The ring position of the first (None when the records skip slots
    /// never published).
    from: Option<u64>,
    records: Vec<u8>,
    /// What makes the ring corrupt, found after these records: said once
    /// they are handed over.
    corrupt: Option<String>,
    /// Bytes per record.
    slot: usize,
    /// The clock their time stamps are read with.
    clock: TscClock,
}

/// What reading the rings touches, borrowed from the tracer: the world
/// (the rings, the tasks' calls in flight), the consumers (the handlers
/// records are delivered to, the listeners told of losses) and the pace
/// (the clock, when the rings were last read). A reader stops no thread
/// and injects nothing: what needs that (noting the thread pointers of
/// threads not yet seen) is done before, by [`Tracer::drain`].
pub(in crate::engine) struct Reader<'a> {
    pub world: &'a mut World,
    pub consumers: &'a mut Consumers,
    pub pace: &'a mut Pace,
    /// When tracing started: event times are measured from it.
    pub start: Instant,
}

impl Tracer {
    /// The tracer's parts a drain touches.
    pub(in crate::engine) fn reader(&mut self) -> Reader<'_> {
        Reader {
            world: &mut self.world,
            consumers: &mut self.consumers,
            pace: &mut self.pace,
            start: self.start,
        }
    }

    /// Drains the ring of space `key` (see [`Reader::drain`]). In `Safe`
    /// mode, threads whose thread pointers the waiting records carry but
    /// no known thread has are looked for first (the space's world is
    /// stopped to read them), so their records are not dropped as
    /// strangers'.
    pub(super) fn drain(&mut self, key: Pid, mode: Drain) -> Result<()> {
        let Some(batch) = self.reader().take(key, mode)? else {
            return Ok(());
        };
        if mode == Drain::Safe {
            let strangers = strangers(&self.world, key, &batch);
            if !strangers.is_empty() {
                self.refresh_threads(key)?;
                if let Some(space) = self.world.spaces.get_mut(&key) {
                    let room = MAX_UNKNOWN_TPS.saturating_sub(space.fast.unknown.len());
                    let unknown: Vec<u64> = strangers
                        .into_iter()
                        .filter(|tp| space.fast.thread(*tp).is_none())
                        .take(room)
                        .collect();
                    space.fast.unknown.extend(unknown);
                }
            }
        }
        self.reader().hand_over(key, batch)
    }

    /// Drains every ring, `Safe`ly (see [`Tracer::drain`]).
    pub(super) fn drain_all_safely(&mut self) -> Result<()> {
        self.pace.last_drain = Instant::now();
        self.pace.more_records = false;
        let keys = self.reader().rings();
        let mut first = Ok(());
        for key in keys {
            let r = self.drain(key, Drain::Safe);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Reader<'_> {
    /// While vfork child `child` runs on its parent `parent`'s TLS, records
    /// under the parent's thread pointer are the child's (the parent waits
    /// in the kernel, until `Fork::VforkDone` gives the pointer back).
    /// Records made before are drained first.
    pub(super) fn lend_thread_pointer(&mut self, parent: Tid, child: Tid) -> Result<()> {
        let Some(key) = self.world.tasks.get(&child).map(|t| t.space) else {
            return Ok(());
        };
        if !self.world.spaces.get(&key).is_some_and(|s| s.fast.active()) {
            return Ok(());
        }
        let Ok(regs) = ptrace::getregs(parent) else {
            return Ok(());
        };
        let tp = regs.thread_pointer();
        self.drain_through(key)?;
        let silent = self.world.tasks.get(&child).is_some_and(|t| t.silent);
        if let Some(space) = self.world.spaces.get_mut(&key) {
            space.fast.lent.insert(tp, (child, silent));
            // Its calls are counted in the program by none of the detours
            // that count (one such child at a time: another's calls are).
            if let Some(ring) = space.fast.ring.as_ref().filter(|_| silent) {
                ring.map.store_u64(ring::SILENT_TP, tp);
            }
        }
        Ok(())
    }

    /// The TSC clock, calibrated once.
    pub(super) fn clock(&mut self) -> TscClock {
        let start = self.start;
        *self
            .pace
            .clock
            .get_or_insert_with(|| TscClock::calibrate(start))
    }

    /// The spaces that have a ring.
    fn rings(&self) -> Vec<Pid> {
        self.world
            .spaces
            .iter()
            .filter(|(_, s)| s.fast.ring.is_some())
            .map(|(k, _)| *k)
            .collect()
    }

    /// True when space `key` has a ring that is read (not corrupt).
    fn readable(&self, key: Pid) -> bool {
        self.world
            .spaces
            .get(&key)
            .is_some_and(|s| s.fast.ring.is_some() && s.fast.corrupt.is_none())
    }

    /// Hands every record published in the ring of space `key` to its
    /// probes' `on_entry`, in ring order, and reports records lost. At most
    /// [`DRAIN_BUDGET`] records unless `mode` is `Final` (the ring read to
    /// its end, its last records taken even if a detour is still writing
    /// them: the process is gone or leaving).
    pub(in crate::engine) fn drain(&mut self, key: Pid, mode: Drain) -> Result<()> {
        let handed = match self.take(key, mode)? {
            Some(batch) => self.hand_over(key, batch),
            None => Ok(()),
        };
        // Read to its end, or not read any more: every signal waiting for
        // records is reported.
        let signalled = match mode == Drain::Final || !self.readable(key) {
            true => self.report_signals(key, u64::MAX),
            false => Ok(()),
        };
        handed.and(signalled)
    }

    /// Reports the signals of space `key` whose records (those made before
    /// them) have been read up to ring position `upto`.
    fn report_signals(&mut self, key: Pid, upto: u64) -> Result<()> {
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return Ok(());
        };
        let mut first = Ok(());
        while space.fast.signals.front().is_some_and(|p| p.upto <= upto) {
            let p = space.fast.signals.pop_front().expect("looked at");
            let emitted = self.consumers.emit(p.event, p.time);
            if first.is_ok() {
                first = emitted;
            }
        }
        first
    }

    /// Signal `event` (at `time`) was delivered to a thread of space `key`:
    /// reported once the records made before it are read (it is handed
    /// back when there are none to wait for).
    pub(in crate::engine) fn defer_signal(
        &mut self,
        key: Pid,
        event: Event,
        time: Duration,
    ) -> Option<(Event, Duration)> {
        let readable = self.readable(key);
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return Some((event, time));
        };
        let Some(ring) = space.fast.ring.as_ref().filter(|_| readable) else {
            return Some((event, time));
        };
        let upto = ring.map.load_u64(ring::ENQUEUE);
        if upto <= ring.consumed && space.fast.signals.is_empty() {
            return Some((event, time));
        }
        space
            .fast
            .signals
            .push_back(super::state::PendingSignal { upto, event, time });
        None
    }

    /// Takes the records published in the ring of space `key` (see
    /// [`Reader::drain`]), checked: None when there is nothing to read (no
    /// ring, a corrupt one, nothing new) or the ring was found corrupt now.
    fn take(&mut self, key: Pid, mode: Drain) -> Result<Option<Batch>> {
        if !self.readable(key) {
            return Ok(None);
        }
        let space = &self.world.spaces[&key];
        let counting = space
            .fast
            .sites
            .iter()
            .any(|f| f.count_only || f.timed.is_some());
        if mode != Drain::Final && !counting && space.fast.ring.as_ref().is_some_and(ring_idle) {
            return Ok(None);
        }
        let mut clock = self.clock();
        clock.refine(self.start);
        self.pace.clock = Some(clock);
        let (taken, slot, from) = {
            let space = self.world.spaces.get_mut(&key).expect("checked above");
            let sites = (space.fast.sites.len(), space.fast.int3_sites.len());
            let stub = space.fast.stub.is_some();
            let ring = space.fast.ring.as_mut().expect("checked above");
            clock.share(&ring.map);
            let budget = match mode {
                // The copier's batches and the ring's own.
                Drain::Final => u64::MAX,
                Drain::Safe | Drain::Quick => DRAIN_BUDGET,
            };
            let slot = ring.layout.slot_size as usize;
            let taken = ring
                .copying
                .take(mode == Drain::Final, budget)
                .and_then(|taken| {
                    // Read after the records were: none is later than this.
                    let stamps = clock.plausible(shm::tsc());
                    let records = &taken.records;
                    records
                        .chunks(slot)
                        .enumerate()
                        .try_for_each(|(k, rec)| {
                            // (As `deliver` does: the copier wrote them.)
                            if let Some(ahead) = records.get((k + 4) * slot..(k + 4) * slot + 64) {
                                shm::prefetch(ahead);
                            }
                            check_record(rec, sites, stub, &stamps)
                        })
                        .map(|()| taken)
                });
            let from = ring.consumed;
            if let Ok(super::copier::Taken { records, upto, .. }) = &taken {
                // Stopped at the budget, or the copier has more: more may
                // wait (the tracer then only polls for stops before
                // reading on).
                let n = records.len() / slot;
                self.pace.more_records |= n >= budget as usize || ring.copying.waiting();
                ring.consumed = *upto;
                if n > 0 {
                    if let Some(pause) = test_read_pause() {
                        std::thread::sleep(pause);
                    }
                }
            }
            (taken, slot, from)
        };
        match taken {
            Ok(taken) => Ok(Some(Batch {
                records: taken.records,
                corrupt: taken.corrupt,
                slot,
                clock,
                // (A final read skips the slots never published.)
                from: (mode != Drain::Final).then_some(from),
            })),
            // None of this batch is believed.
            Err(why) => self.ring_corrupt(key, why).map(|()| None),
        }
    }

    /// Hands `batch` of space `key` to the handlers, and reports the
    /// records lost since the last look.
    fn hand_over(&mut self, key: Pid, batch: Batch) -> Result<()> {
        let mut failed = None;
        // In runs between the signals reported on the way: each after the
        // records made before it.
        let mut rest = &batch.records[..];
        let mut at = batch.from;
        while !rest.is_empty() {
            let mut run = rest.len();
            if let Some(at) = at {
                if let Err(e) = self.report_signals(key, at) {
                    failed.get_or_insert(e);
                }
                let next = self
                    .world
                    .spaces
                    .get(&key)
                    .and_then(|s| s.fast.signals.front())
                    .map(|p| p.upto);
                if let Some(next) = next {
                    let records = usize::try_from(next - at).unwrap_or(usize::MAX);
                    run = run.min(records.saturating_mul(batch.slot));
                }
            }
            deliver(
                self.world,
                self.consumers,
                self.start,
                key,
                &rest[..run],
                batch.slot,
                batch.clock,
                &mut failed,
            );
            rest = &rest[run..];
            at = at.map(|a| a + (run / batch.slot) as u64);
        }
        let read = self
            .world
            .spaces
            .get(&key)
            .and_then(|s| s.fast.ring.as_ref())
            .map(|r| r.consumed);
        if let Err(e) = self.report_signals(key, read.unwrap_or(u64::MAX)) {
            failed.get_or_insert(e);
        }
        if let Err(why) = report_lost(self.world, self.consumers, self.start, key, &mut failed) {
            self.ring_corrupt(key, why)?;
        } else if let Err(why) = report_counts(self.world, self.consumers, key, &mut failed) {
            self.ring_corrupt(key, why)?;
        }
        super::copier::recycle(batch.records);
        if let Some(why) = batch.corrupt {
            self.ring_corrupt(key, why)?;
        }
        // Threads that died whose records have all been read now.
        if let Some(space) = self.world.spaces.get_mut(&key) {
            if let Some(read) = space.fast.ring.as_ref().map(|r| r.consumed) {
                space.fast.departed.retain(|_, d| d.upto > read);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The ring of space `key` holds what no detour writes (`why`): the
    /// program wrote over it. Said once; the ring is not read again (it
    /// stays mapped: detours a thread is in and the return stub still write
    /// to it, unread); its sites go back to int3 at the next
    /// `Tracer::patch_fast`, which never patches there again; the calls in
    /// flight known from its records are counted missed (their returns would
    /// be recorded there).
    pub(in crate::engine) fn ring_corrupt(&mut self, key: Pid, why: String) -> Result<()> {
        let Some(space) = self.world.spaces.get_mut(&key) else {
            return Ok(());
        };
        if space.fast.corrupt.is_some() {
            return Ok(());
        }
        space.fast.corrupt = Some(why.clone());
        space.fast.dirty = true;
        if let Some(ring) = &space.fast.ring {
            ring.copying.abandon(&why);
        }
        self.pace.more_records = false;
        let pid = space.pid;
        let mut events = vec![Event::ProcessWarning {
            pid,
            message: format!(
                "the fast probes' ring of pid {pid} is corrupt ({why}): the program wrote over \
                 it; what it holds is not read any more, and its fast probes go back to int3 \
                 breakpoints"
            ),
        }];
        for (&tid, task) in self.world.tasks.iter_mut().filter(|(_, t)| t.space == key) {
            for inst in task.fast_calls.take_all() {
                for (site, _) in inst.probes {
                    events.push(Event::Missed {
                        pid: task.pid,
                        tid,
                        probe: site.probe.clone(),
                        symbol: site.symbol.clone(),
                    });
                }
            }
        }
        for e in events {
            self.consumers.emit(e, self.start.elapsed())?;
        }
        Ok(())
    }

    /// Reads the ring of space `key` up to where it was written when this
    /// began (the records made before now: not those the other threads
    /// go on making meanwhile), budget after budget.
    pub(in crate::engine) fn drain_through(&mut self, key: Pid) -> Result<()> {
        let Some((most, upto)) = self
            .world
            .spaces
            .get(&key)
            .and_then(|s| s.fast.ring.as_ref())
            .map(|r| {
                (
                    r.layout.capacity + (super::copier::MAX_QUEUED as u64) / r.layout.slot_size,
                    r.map.load_u64(ring::ENQUEUE),
                )
            })
        else {
            return Ok(());
        };
        // (A ring's worth, and what the copier may hold.)
        for _ in 0..=most / DRAIN_BUDGET {
            self.pace.more_records = false;
            self.drain(key, Drain::Quick)?;
            let read = self
                .world
                .spaces
                .get(&key)
                .and_then(|s| s.fast.ring.as_ref())
                .is_none_or(|r| r.consumed >= upto);
            if !self.pace.more_records || read {
                break;
            }
        }
        Ok(())
    }
}

/// True once tracing has begun (`begun`, with fast probes on) when a ring
/// found corrupt still has jumps to take off.
pub(super) fn switch_pending(world: &World, begun: bool) -> bool {
    begun
        && world
            .spaces
            .values()
            .any(|s| s.fast.corrupt.is_some() && s.fast.dirty)
}

/// True when a thread may be waiting for room in a ring that is read.
pub(super) fn waiting(world: &World) -> bool {
    world.spaces.values().any(|s| {
        s.fast.corrupt.is_none()
            && s.fast
                .ring
                .as_ref()
                .is_some_and(|r| r.map.load_u32(ring::WAITING) != 0)
    })
}

/// True when some ring may hold records (and is read: not corrupt).
pub(super) fn draining(world: &World) -> bool {
    world
        .spaces
        .values()
        .any(|s| s.fast.ring.is_some() && s.fast.corrupt.is_none())
}

/// The thread pointers of `batch` (of space `key`) no thread is known by
/// and that were not looked for already, unless too many were (see
/// [`MAX_UNKNOWN_TPS`]).
fn strangers(world: &World, key: Pid, batch: &Batch) -> Vec<u64> {
    let Some(space) = world.spaces.get(&key) else {
        return Vec::new();
    };
    if space.fast.unknown.len() >= MAX_UNKNOWN_TPS {
        return Vec::new();
    }
    let mut out = batch_tps(&batch.records, batch.slot);
    out.retain(|tp| space.fast.thread(*tp).is_none() && !space.fast.unknown.contains(tp));
    out.sort_unstable();
    out.dedup();
    out
}

/// Runs the entry handlers for `records` (each `slot` bytes) of space
/// `key`, and the return handlers of the calls they return from. The
/// first handler error is kept in `failed`. Given the world and the
/// consumers, not the tracer: it stops no thread and injects nothing.
#[allow(clippy::too_many_arguments)]
pub(super) fn deliver(
    world: &mut World,
    consumers: &mut Consumers,
    start: Instant,
    key: Pid,
    records: &[u8],
    slot: usize,
    clock: TscClock,
    failed: &mut Option<Error>,
) {
    let mut events = Vec::new();
    let (probes, spaces, tasks) = (&mut consumers.probes, &mut world.spaces, &mut world.tasks);
    let Some(space) = spaces.get_mut(&key) else {
        return;
    };
    let space_pid = space.pid;
    // (The threads looked up lately, by their thread pointers, are kept
    // with their processes: records come in runs of one thread's, or of a
    // few taking turns.)
    let mut recent: [Option<(u64, Found)>; RECENT_THREADS] = [None; RECENT_THREADS];
    let mut next_recent = 0;
    // The calls returning at a record, and the probes of a call entered:
    // vectors kept for the next record.
    let mut returning = Vec::new();
    let mut spare_kept: Vec<Vec<(std::rc::Rc<crate::handler::Site>, HandlerData)>> = Vec::new();
    for (k, rec) in records.chunks(slot).enumerate() {
        // (The records a few ahead are read from memory meanwhile: the
        // copier wrote them, maybe on the other CPU.)
        if let Some(ahead) = records.get((k + 4) * slot..(k + 4) * slot + slot.min(128)) {
            shm::prefetch(ahead);
        }
        let word = |off: u64| {
            let at = off as usize;
            u64::from_le_bytes(rec[at..at + 8].try_into().expect("8 bytes"))
        };
        let index = word(ring::INDEX) as u32;
        let kind = word(ring::KIND) as u32;
        if kind == detour::KIND_NONE {
            continue;
        }
        let tp = word(ring::TP);
        let found = match recent.iter().flatten().find(|(t, _)| *t == tp) {
            Some(&(_, found)) => found,
            None => {
                let found = match space.fast.thread(tp).unwrap_or((space_pid, false)) {
                    (_, true) => None,
                    (tid, false) => {
                        // A vfork child is a process of its own, and may
                        // be gone from the tasks already (its records are
                        // read as it dies).
                        let own = match space.fast.lent.contains_key(&tp) {
                            true => tid,
                            false => space_pid,
                        };
                        let pid = match (tasks.get(&tid), space.fast.departed.get(&tid)) {
                            (Some(t), _) => t.pid,
                            (None, Some(d)) => d.pid,
                            (None, None) => own,
                        };
                        Some((tid, pid))
                    }
                };
                recent[next_recent] = Some((tp, found));
                next_recent = (next_recent + 1) % RECENT_THREADS;
                found
            }
        };
        // (A silent thread's records are not reported.)
        let Some((tid, pid)) = found else {
            continue;
        };
        let departed = &mut space.fast.departed;
        // A thread's records come in the order it made them: their times
        // never go back, though the clock's slope is refined between reads
        // (a deep recursion's returns, read in several batches, once ended
        // a few nanoseconds before the returns inside them).
        // The thread's calls in flight: a live task's, or those of a
        // thread that died with records of its unread.
        let time = clock.time(word(ring::TSC));
        let (time, calls) = match tasks.get_mut(&tid) {
            Some(t) => {
                // (A nanosecond on at least: no two of them at once.)
                let after = t.records_time + Duration::from_nanos(1);
                t.records_time = match t.records_time.is_zero() {
                    true => time,
                    false => time.max(after),
                };
                (t.records_time, Some(&mut t.fast_calls))
            }
            None => (time, departed.get_mut(&tid).map(|d| &mut d.calls)),
        };
        let maps = &mut space.maps;
        let mut same_stack = |a, b| maps.same_mapping_known(space_pid, a, b);
        if kind == detour::KIND_RETURN {
            // The stub freed the slot's entry (rtrace's, for an int3 call).
            let ret_slot = word(ring::RET_SP).wrapping_sub(8);
            space.fast.int3_claims.returned(ret_slot, word(ring::TSC));
            let Some(calls) = calls else {
                continue;
            };
            let values = detour::return_values(rec, word(ring::RET_ADDR));
            let sp = RuntimeAddr(values[usize::from(Gpr::RSP.0)]);
            // Calls entered at an int3 stop after this return (read late,
            // behind another thread's unfinished record) are not its.
            let newer = calls.newer_than(word(ring::TSC));
            returning.clear();
            calls.pop_returning_into(sp, &mut same_stack, &mut returning);
            calls.put_back(newer);
            // The string the stub was asked for (an int3 site's, by its
            // call's table entry: the record keeps the limit it copied
            // under), never past the slot.
            // What the stub copied, as the call's table entry asked (its
            // site's, an int3 call's limit, or a tail call's: the record
            // keeps the limit it copied under, and whether of a buffer),
            // never past the slot.
            let watch = word(ring::RET_WATCH) as u32;
            let buffer = watch & detour::table::BUFFER != 0;
            let string = (watch & !detour::table::BUFFER)
                .min(slot.saturating_sub(ring::RET_STRING as usize + 8) as u32);
            let field = CaptureField {
                kind: CaptureKind::CStr {
                    reg: crate::arch::Gpr(0),
                    max: string,
                },
                offset: ring::RET_STRING as u32,
            };
            let fields = if string > 0 && !buffer {
                &[field][..]
            } else {
                &[][..]
            };
            // (0: not asked for, or no error: errno is read only after a
            // failure, which sets it.)
            let errno = Some(word(ring::RET_WATCH) >> 32)
                .map(|e| e as u32 as i32)
                .filter(|&e| e != 0);
            // Calls only recordings take, of a return that copied no
            // memory: written as they are.
            let recorded = fields.is_empty()
                && !buffer
                && returning.iter().all(|inst| {
                    inst.probes
                        .iter()
                        .all(|(site, _)| recorder(probes, site).is_some())
                });
            if recorded {
                let xmm0 = word(ring::RET_XMM0);
                for inst in returning.drain(..) {
                    let times = (time.max(inst.entered), inst.entered);
                    let mut done = inst.probes;
                    for (site, data) in done.drain(..) {
                        let Some(recorder) = recorder(probes, &site) else {
                            continue;
                        };
                        let written = guarded(|| {
                            recorder
                                .borrow_mut()
                                .fast_return(&site, pid, tid, times, data, errno, &values, xmm0)
                        });
                        if let Err(e) = written {
                            failed.get_or_insert(e);
                        }
                    }
                    if spare_kept.len() < 64 {
                        spare_kept.push(done);
                    }
                }
                continue;
            }
            let mut regs = detour::regs_of(&values);
            let mut dirty = false;
            let mut xmm = [None; 8];
            xmm[0] = Some(word(ring::RET_XMM0));
            let mut captured = captured(rec, fields, &regs, xmm);
            if buffer {
                captured
                    .buffers
                    .push(filled_buffer(rec, string, word(ring::RET_PTR)));
            }
            for inst in returning.drain(..) {
                let mut done = inst.probes;
                for (site, data) in done.drain(..) {
                    let Some(probe) = probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                        continue;
                    };
                    let mut ret = Return {
                        pid,
                        tid,
                        site: &site,
                        regs: &mut regs,
                        regs_dirty: &mut dirty,
                        mem: Memory::Captured(&captured),
                        modules: &space.modules,
                        // (An int3 entry's time is rtrace's own clock: a
                        // return mapped from the counter never before it.)
                        time: time.max(inst.entered),
                        entered: inst.entered,
                        data,
                        errno,
                    };
                    if let Err(e) = guarded(|| probe.handler.on_return(&mut ret)) {
                        failed.get_or_insert(e);
                    }
                }
                if spare_kept.len() < 64 {
                    spare_kept.push(done);
                }
            }
            continue;
        }
        if kind == detour::KIND_CATCH {
            // A catch handler began (rtrace's hook at `__cxa_begin_catch`):
            // the calls at or below its stack pointer were unwound.
            let sp = RuntimeAddr(word(ring::RET_SP));
            if let Some(calls) = calls {
                let newer = calls.newer_than(word(ring::TSC));
                calls.drop_abandoned(sp, true, &mut same_stack);
                calls.put_back(newer);
            }
            continue;
        }
        let Some(fs) = space.fast.sites.get(index as usize) else {
            continue;
        };
        let values = detour::record_values(rec, fs.regs, fs.addr.get());
        let xmm = std::array::from_fn(|n| detour::xmm_offset(fs.regs, n).map(&word));
        let watch = word(ring::RET_WATCH) as u32;
        let mut kept = spare_kept.pop().unwrap_or_default();
        // A site only recordings take, whose records hold registers only:
        // written as they are.
        let recorded = fs.captures.is_empty()
            && fs
                .probes
                .iter()
                .all(|site| recorder(probes, site).is_some());
        if recorded {
            for site in &fs.probes {
                let Some(recorder) = recorder(probes, site) else {
                    continue;
                };
                let mut data = None;
                let written = guarded(|| {
                    recorder.borrow_mut().fast_entry(
                        site,
                        pid,
                        tid,
                        &space.modules,
                        time,
                        &values,
                        xmm,
                        &mut data,
                    )
                });
                if let Err(e) = written {
                    failed.get_or_insert(e);
                }
                if site.kind == (ProbeKind::Function { returns: true }) {
                    kept.push((site.clone(), data));
                }
            }
        } else {
            let mut regs = detour::regs_of(&values);
            let captured = captured(rec, &fs.captures, &regs, xmm);
            for site in &fs.probes {
                let Some(probe) = probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                    continue;
                };
                let mut dirty = false;
                let mut data = None;
                let mut hit = Hit {
                    pid,
                    tid,
                    site,
                    regs: &mut regs,
                    regs_dirty: &mut dirty,
                    mem: Memory::Captured(&captured),
                    modules: &space.modules,
                    time,
                    data: &mut data,
                    returns: Default::default(),
                    stack: Default::default(),
                };
                if let Err(e) = guarded(|| probe.handler.on_entry(&mut hit)) {
                    failed.get_or_insert(e);
                }
                if site.kind == (ProbeKind::Function { returns: true }) {
                    kept.push((site.clone(), data));
                }
            }
        }
        if kept.is_empty() {
            if spare_kept.len() < 64 {
                spare_kept.push(kept);
            }
            continue;
        }
        let Some(calls) = calls else {
            continue;
        };
        let slot = RuntimeAddr(values[usize::from(Gpr::RSP.0)]);
        // Calls below this one's slot, or in it, cannot return any more
        // (left by longjmp or an exception): dropped, unreported.
        let chained = watch == detour::WATCH_CHAINED;
        let newer = calls.newer_than(word(ring::TSC));
        calls.drop_abandoned(slot, false, &mut same_stack);
        if !chained {
            calls.drop_overwritten(slot);
        }
        let orig = match watch {
            detour::WATCH_STUB => Some(RuntimeAddr(word(ring::RET_ADDR))),
            detour::WATCH_CHAINED => calls.in_slot(slot).map(|i| i.orig_ret),
            _ => None,
        };
        let Some(orig) = orig else {
            calls.put_back(newer);
            // The table was full (or the call it chains to was lost):
            // this return is not watched.
            for (site, _) in &kept {
                events.push(Event::Missed {
                    pid,
                    tid,
                    probe: site.probe.clone(),
                    symbol: site.symbol.clone(),
                });
            }
            continue;
        };
        calls.push(ReturnInstance {
            slot,
            orig_ret: orig,
            entered: time,
            probes: kept,
            chained,
            watch: Watch::Trampoline,
            after: 0,
        });
        calls.put_back(newer);
    }
    for event in events {
        if let Err(e) = consumers.emit(event, start.elapsed()) {
            failed.get_or_insert(e);
        }
    }
}

/// The recording `site`'s probe is, when it was added as one
/// (`Tracer::add_recorded_probe`).
fn recorder<'p>(
    probes: &'p [Option<crate::engine::tracer::Probe>],
    site: &crate::handler::Site,
) -> Option<&'p std::cell::RefCell<crate::record::Recorder>> {
    probes
        .get(site.id.0)
        .and_then(Option::as_ref)
        .and_then(|p| p.recorder.as_deref())
}

/// Reports records of space `key` lost since the last look (an emit
/// error goes to `failed`). Err when the counters cannot be counts (see
/// [`read_losses`]): nothing is reported then.
pub(super) fn report_lost(
    world: &mut World,
    consumers: &mut Consumers,
    start: Instant,
    key: Pid,
    failed: &mut Option<Error>,
) -> std::result::Result<(), String> {
    let mut events = Vec::new();
    if let Some(space) = world.spaces.get_mut(&key) {
        let pid = space.pid;
        let Some(ring) = space.fast.ring.as_mut() else {
            return Ok(());
        };
        // The fast sites', then the int3 sites' (whose calls' returns the
        // stub counts when it cannot record them).
        let seen: Vec<(usize, u64, u64)> = space
            .fast
            .sites
            .iter()
            .enumerate()
            .map(|(i, f)| (i, f.lost, f.ret_lost))
            .chain(
                space
                    .fast
                    .int3_sites
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (int3_index(i) as usize, 0, s.ret_lost)),
            )
            .collect();
        let now = Instant::now();
        let Some(losses) = read_losses(ring, &seen, now - ring.lost_at)? else {
            return Ok(());
        };
        ring.lost_seen = losses.total;
        ring.lost_at = now;
        // A call whose entry or return record was lost counts once, as
        // missed: its entry lost, nothing of it was seen; its return lost,
        // its entry was, and it stays in flight until a later call of the
        // thread takes its place (as a call left by longjmp does), never
        // counted as a call.
        let mut counts: Vec<(usize, u64)> = Vec::new();
        for (i, lost) in losses.sites {
            let Some(fs) = space.fast.sites.get_mut(i) else {
                continue;
            };
            counts.push((i, lost - fs.lost));
            fs.lost = lost;
        }
        let int3 = space.fast.int3_sites.len();
        for (i, lost) in losses.returns {
            if let Some(p) = int3_position(i as u32, int3).filter(|_| i >= space.fast.sites.len()) {
                let s = &mut space.fast.int3_sites[p];
                let count = lost - s.ret_lost;
                s.ret_lost = lost;
                for site in &s.probes {
                    events.push(Event::Lost {
                        pid,
                        probe: site.probe.clone(),
                        symbol: site.symbol.clone(),
                        count,
                    });
                }
                continue;
            }
            let Some(fs) = space.fast.sites.get_mut(i) else {
                continue;
            };
            counts.push((i, lost - fs.ret_lost));
            fs.ret_lost = lost;
        }
        for (i, count) in counts {
            let fs = &space.fast.sites[i];
            for site in &fs.probes {
                let (probe, symbol) = (site.probe.clone(), site.symbol.clone());
                events.push(match fs.timed {
                    // Its returns are counted by the stub, in its row: what
                    // its counter has are calls whose return was not seen.
                    Some(_) => Event::Unwatched {
                        pid,
                        probe,
                        symbol,
                        count,
                    },
                    None => Event::Lost {
                        pid,
                        probe,
                        symbol,
                        count,
                    },
                });
            }
        }
    }
    for e in events {
        if let Err(e) = consumers.emit(e, start.elapsed()) {
            failed.get_or_insert(e);
        }
    }
    Ok(())
}

/// The hits the counting sites of `ring` (`sites`: their index and their
/// sum as last seen) counted since, each site's shards added up; Err when
/// a sum cannot be a count (it went back, or leapt further than hits can
/// be made in `elapsed`).
pub(super) fn read_counts(
    ring: &Ring,
    sites: &[(usize, u64)],
    elapsed: Duration,
) -> std::result::Result<Vec<(usize, u64)>, String> {
    let most = u64::try_from(elapsed.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1_000_000)
        .saturating_mul(MAX_LOSSES_PER_NS);
    let mut out = Vec::new();
    for &(i, before) in sites {
        let now = (0..ring::AGG_SHARDS).fold(0u64, |sum, shard| {
            let at = ring::AGG + shard * ring::AGG_SHARD + 8 * i as u64;
            sum.wrapping_add(ring.map.load_u64(at))
        });
        if now < before {
            return Err(format!(
                "the hit count of fast site {i} went back from {before} to {now}"
            ));
        }
        if now - before > most {
            return Err(format!(
                "the hit count of fast site {i} leapt from {before} to {now} in {} ms",
                elapsed.as_millis()
            ));
        }
        out.push((i, now));
    }
    Ok(out)
}

/// A timed row's totals: its blocks added up (see `ring::TIMED`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowTotals {
    /// The durations' sum, in nanoseconds.
    pub sum_ns: u64,
    /// The longest.
    pub max_ns: u64,
    /// The shortest, complemented (0: no call yet).
    pub min_not: u64,
    /// The log2 buckets.
    pub hist: [u64; ring::ROW_BUCKETS as usize],
}

impl Default for RowTotals {
    fn default() -> RowTotals {
        RowTotals {
            sum_ns: 0,
            max_ns: 0,
            min_not: 0,
            hist: [0; ring::ROW_BUCKETS as usize],
        }
    }
}

/// Row `row` of `ring`'s timed blocks, added up: each block's sum read
/// before its buckets (the stub counts a call in its bucket before it adds
/// its duration to the sum: a sum read here has the calls it holds in the
/// buckets read after it).
pub(super) fn read_row(ring: &Ring, row: u32) -> RowTotals {
    let mut t = RowTotals::default();
    for shard in 0..ring::TIMED_SHARDS {
        let at = ring::TIMED + shard * ring::TIMED_SHARD + u64::from(row) * ring::TIMED_ROW;
        t.sum_ns = t.sum_ns.wrapping_add(ring.map.load_u64(at + ring::ROW_SUM));
        t.max_ns = t.max_ns.max(ring.map.load_u64(at + ring::ROW_MAX));
        t.min_not = t.min_not.max(ring.map.load_u64(at + ring::ROW_MIN_NOT));
        for (b, count) in t.hist.iter_mut().enumerate() {
            *count = count.wrapping_add(ring.map.load_u64(at + ring::ROW_HIST + 8 * b as u64));
        }
    }
    t
}

/// Whether row `row` of `ring` may have calls since `seen`: a call adds to
/// the sum, or, lasting 0 ns, to the bucket of 0 (two words a block,
/// where the whole row is 68).
fn row_moved(ring: &Ring, row: u32, seen: &RowTotals) -> bool {
    let (mut sum, mut zero) = (0u64, 0u64);
    for shard in 0..ring::TIMED_SHARDS {
        let at = ring::TIMED + shard * ring::TIMED_SHARD + u64::from(row) * ring::TIMED_ROW;
        sum = sum.wrapping_add(ring.map.load_u64(at + ring::ROW_SUM));
        zero = zero.wrapping_add(ring.map.load_u64(at + ring::ROW_HIST + 8));
    }
    sum != seen.sum_ns || zero != seen.hist[1]
}

/// The calls of a timed row between `before` and `now` (read at most
/// `elapsed` apart) and their times; Err when `now` cannot follow `before`:
/// a sum or a bucket went back, or the calls leapt further than calls can
/// be made in `elapsed`.
pub(super) fn row_since(
    before: &RowTotals,
    now: &RowTotals,
    elapsed: Duration,
) -> std::result::Result<(u64, CallTimes), String> {
    let most = u64::try_from(elapsed.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1_000_000)
        .saturating_mul(MAX_LOSSES_PER_NS);
    if now.sum_ns < before.sum_ns {
        return Err(format!(
            "a timed row's sum went back from {} to {} ns",
            before.sum_ns, now.sum_ns
        ));
    }
    let mut log2_ns = [0u64; ring::ROW_BUCKETS as usize];
    for (b, d) in log2_ns.iter_mut().enumerate() {
        let (was, is) = (before.hist[b], now.hist[b]);
        if is < was {
            return Err(format!(
                "a timed row's bucket {b} went back from {was} to {is}"
            ));
        }
        *d = is - was;
    }
    let calls = log2_ns.iter().fold(0u64, |a, &b| a.saturating_add(b));
    if calls > most {
        return Err(format!(
            "a timed row's calls leapt by {calls} in {} ms",
            elapsed.as_millis()
        ));
    }
    let ns = Duration::from_nanos;
    let times = CallTimes {
        total: ns(now.sum_ns - before.sum_ns),
        min: match now.min_not {
            0 => Duration::ZERO,
            m => ns(!m),
        },
        max: ns(now.max_ns),
        log2_ns,
    };
    Ok((calls, times))
}

/// Hands the hits the counting sites of space `key` counted, and the
/// calls its timed sites timed, since the last look to their probes'
/// `on_aggregate`. The first handler error is kept in `failed`; Err when
/// the counts cannot be believed (see [`read_counts`], [`row_since`]).
fn report_counts(
    world: &mut World,
    consumers: &mut Consumers,
    key: Pid,
    failed: &mut Option<Error>,
) -> std::result::Result<(), String> {
    let Some(space) = world.spaces.get_mut(&key) else {
        return Ok(());
    };
    let sites: Vec<(usize, u64)> = space
        .fast
        .sites
        .iter()
        .enumerate()
        .filter(|(_, f)| f.count_only)
        .map(|(i, f)| (i, f.counted))
        .collect();
    let timed: Vec<(usize, u32)> = space
        .fast
        .sites
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((i, f.timed?)))
        .collect();
    let Some(ring) = space.fast.ring.as_mut() else {
        return Ok(());
    };
    if sites.is_empty() && timed.is_empty() {
        return Ok(());
    }
    let now = Instant::now();
    let elapsed = now - ring.counted_at;
    let counts = read_counts(ring, &sites, elapsed)?;
    let mut aggregates = Vec::new();
    for (i, row) in timed {
        let fs = &space.fast.sites[i];
        let before = fs.timed_seen.as_deref().cloned().unwrap_or_default();
        if !row_moved(ring, row, &before) {
            continue;
        }
        let totals = read_row(ring, row);
        let (calls, times) = row_since(&before, &totals, elapsed)?;
        // (No call yet: what moved is kept for the look that sees it.)
        if calls > 0 {
            aggregates.push((i, calls, times, totals));
        }
    }
    ring.counted_at = now;
    let pid = space.pid;
    let mut handed = Vec::new();
    for (i, total) in counts {
        let fs = &mut space.fast.sites[i];
        let hits = total - fs.counted;
        fs.counted = total;
        if hits > 0 {
            let counts = Aggregate {
                pid,
                hits,
                calls: 0,
                times: None,
            };
            handed.push((i, counts));
        }
    }
    for (i, calls, times, totals) in aggregates {
        space.fast.sites[i].timed_seen = Some(Box::new(totals));
        let counts = Aggregate {
            pid,
            hits: 0,
            calls,
            times: Some(times),
        };
        handed.push((i, counts));
    }
    for (i, counts) in handed {
        for site in &space.fast.sites[i].probes {
            let Some(probe) = consumers.probes.get_mut(site.id.0).and_then(Option::as_mut) else {
                continue;
            };
            if let Err(e) = guarded(|| probe.handler.on_aggregate(site, &counts)) {
                failed.get_or_insert(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::arch::detour::RingLayout;
    use crate::sys::shm::SharedMap;

    /// A ring of `capacity` slots of 256 bytes over a file of its own (as
    /// the memfd is), all zero: empty.
    pub(in crate::engine::fast) fn test_ring(capacity: u64) -> Ring {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("rtrace-ring-{}-{n}", std::process::id()));
        std::fs::File::create(&path).unwrap();
        let layout = RingLayout {
            base: 0x7f00_0000_0000,
            capacity,
            slot_size: 256,
        };
        let map = SharedMap::open(&path, layout.size() as usize, false).unwrap();
        std::fs::remove_file(&path).unwrap();
        let map = std::sync::Arc::new(map);
        Ring {
            copying: super::super::copier::Copying::unregistered(
                map.clone(),
                layout,
                std::sync::Arc::default(),
            ),
            map,
            _watchman: None,
            layout,
            consumed: 0,
            lost_seen: 0,
            lost_at: Instant::now(),
            counted_at: Instant::now(),
        }
    }

    /// What the tracing thread takes from `r` (the copier not running).
    fn take_records(
        r: &mut Ring,
        skip_unpublished: bool,
        budget: u64,
    ) -> std::result::Result<Vec<u8>, String> {
        let taken = r.copying.take(skip_unpublished, budget)?;
        r.consumed = taken.upto;
        match taken.corrupt {
            Some(why) if taken.records.is_empty() => Err(why),
            _ => Ok(taken.records),
        }
    }

    /// Writes and publishes the record of position `pos`, as a detour does
    /// (the enqueue position claimed past it).
    pub(in crate::engine::fast) fn publish(ring: &Ring, pos: u64, index: u32, tp: u64, tsc: u64) {
        let l = ring.layout;
        let off = ring::SLOTS + (pos & (l.capacity - 1)) * l.slot_size;
        ring.map.store_u64(off + ring::INDEX, u64::from(index));
        ring.map.store_u64(off + ring::TP, tp);
        ring.map.store_u64(off + ring::TSC, tsc);
        ring.map
            .store_u64(off + ring::SEQ, (pos & !(l.capacity - 1)) + 1);
        let enq = ring.map.load_u64(ring::ENQUEUE).max(pos + 1);
        ring.map.store_u64(ring::ENQUEUE, enq);
    }

    /// Fills the whole ring as a program that writes over it would.
    fn scribble(ring: &Ring, seed: &mut u64, byte: Option<u8>) {
        let mut bytes = vec![0u8; ring.map.len()];
        for b in &mut bytes {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = byte.unwrap_or((*seed >> 56) as u8);
        }
        ring.map.write(0, &bytes);
    }

    #[test]
    fn published_records_are_taken_in_order_and_their_slots_freed() {
        let mut r = test_ring(16);
        for pos in 0..20 {
            publish(&r, pos, pos as u32, 7, 100 + pos);
            if pos == 9 {
                let got = take_records(&mut r, false, 64).unwrap();
                assert_eq!(got.len(), 10 * 256);
                assert_eq!(r.consumed, 10);
            }
        }
        let got = take_records(&mut r, false, 64).unwrap();
        let tscs: Vec<u64> = got
            .chunks(256)
            .map(|rec| u64::from_le_bytes(rec[24..32].try_into().unwrap()))
            .collect();
        assert_eq!(tscs, (110..120).collect::<Vec<_>>());
        // Freed for the next lap: nothing more, and the ring is idle.
        assert!(take_records(&mut r, false, 64).unwrap().is_empty());
        assert!(ring_idle(&r));
        // A slot claimed but never published stops a drain, and is passed
        // over by the last one.
        r.map.store_u64(ring::ENQUEUE, 21);
        publish(&r, 21, 0, 7, 0);
        assert!(take_records(&mut r, false, 64).unwrap().is_empty());
        assert_eq!(take_records(&mut r, true, 64).unwrap().len(), 256);
        assert_eq!(r.consumed, 22);
    }

    #[test]
    fn a_ring_written_over_is_corrupt_and_nothing_of_it_is_read() {
        // Every value no detour writes, one at a time.
        let mut r = test_ring(16);
        publish(&r, 0, 0, 7, 100);
        take_records(&mut r, false, 64).unwrap();
        let cases: [(&str, u64, u64); 4] = [
            ("enqueue position", ring::ENQUEUE, u64::MAX),
            ("enqueue position", ring::ENQUEUE, 0),
            ("enqueue position", ring::ENQUEUE, 1 + 16 + 1),
            ("sequence word", ring::SLOTS + 256 + ring::SEQ, 0xdead_beef),
        ];
        for (what, off, value) in cases {
            let mut r = test_ring(16);
            publish(&r, 0, 0, 7, 100);
            take_records(&mut r, false, 64).unwrap();
            publish(&r, 1, 0, 7, 100);
            r.map.store_u64(off, value);
            let e = take_records(&mut r, false, 64).expect_err(what);
            assert!(e.contains(what), "{e}");
            assert_eq!(r.consumed, 1, "{what}: nothing taken");
            assert!(!ring_idle(&r) || off == ring::ENQUEUE, "{what}");
        }
        // All 0xff, all zeros, and random bytes, many times: an error every
        // time, never a panic, never more than the budget looked at.
        let mut seed = 1;
        for round in 0..200 {
            let mut r = test_ring(16);
            publish(&r, 0, 0, 7, 100);
            take_records(&mut r, false, 64).unwrap();
            let byte = match round % 3 {
                0 => Some(0xff),
                1 => Some(0),
                _ => None,
            };
            scribble(&r, &mut seed, byte);
            let taken = take_records(&mut r, round % 2 == 0, 8);
            assert!(taken.is_err(), "round {round}: {taken:?}");
        }
    }

    #[test]
    fn a_full_looking_ring_is_read_a_ring_at_a_time() {
        // Every slot published, the position a ring ahead: legal, and read
        // in budgets, never more than the ring holds.
        let mut r = test_ring(16);
        for pos in 0..16 {
            publish(&r, pos, 0, pos, 100);
        }
        let five = take_records(&mut r, false, 5).unwrap();
        assert_eq!(five.len(), 5 * 256);
        // Their thread pointers (each record its own thread here).
        assert_eq!(batch_tps(&five, 256), [0, 1, 2, 3, 4]);
        assert_eq!(take_records(&mut r, true, 100).unwrap().len(), 11 * 256);
        assert!(take_records(&mut r, true, 100).unwrap().is_empty());
    }

    #[test]
    fn records_no_detour_writes_are_refused() {
        let stamps = 1000..=2000;
        let rec = |index: u32, kind: u32, watch: u32, tsc: u64| {
            let mut rec = vec![0u8; 256];
            rec[8..12].copy_from_slice(&index.to_le_bytes());
            rec[12..16].copy_from_slice(&kind.to_le_bytes());
            rec[24..32].copy_from_slice(&tsc.to_le_bytes());
            rec[ring::RET_WATCH as usize..ring::RET_WATCH as usize + 4]
                .copy_from_slice(&watch.to_le_bytes());
            rec
        };
        assert_eq!(
            check_record(&rec(2, 0, 1, 1500), (3, 0), false, &stamps),
            Ok(())
        );
        assert_eq!(
            check_record(&rec(2, 1, 9, 1500), (3, 0), true, &stamps),
            Ok(())
        );
        assert_eq!(
            check_record(&rec(2, 2, 0, 1500), (3, 0), true, &stamps),
            Ok(())
        );
        let bad = [
            (rec(3, 0, 0, 1500), false, "fast site 3, of 3"),
            (rec(u32::MAX, 0, 0, 1500), false, "fast site"),
            (rec(0, 7, 0, 1500), false, "kind 7"),
            (rec(0, 1, 0, 1500), false, "kind 1"),
            (rec(0, 0, 4, 1500), false, "watched as 4"),
            (rec(0, 0, 0, 999), false, "time stamp"),
            (rec(0, 0, 0, u64::MAX), true, "time stamp"),
        ];
        for (rec, stub, what) in bad {
            let e = check_record(&rec, (3, 0), stub, &stamps).expect_err(what);
            assert!(e.contains(what), "{e}");
        }
        // A truncated record reads as zeros, never panics.
        assert!(check_record(&[0xff; 10], (3, 0), true, &stamps).is_err());
    }

    #[test]
    fn lost_counters_that_cannot_be_counts_are_refused() {
        let ms = Duration::from_millis(2);
        let r = test_ring(16);
        // Nothing lost: nothing to read.
        assert_eq!(read_losses(&r, &[(0, 0, 0), (1, 0, 0)], ms), Ok(None));
        // Five records of site 1, two returns of site 0.
        r.map.store_u64(ring::LOST + 8, 5);
        r.map.store_u64(ring::RET_LOST, 2);
        r.map.store_u64(ring::LOST_TOTAL, 7);
        let l = read_losses(&r, &[(0, 0, 0), (1, 0, 0)], ms)
            .unwrap()
            .unwrap();
        assert_eq!(
            l,
            Losses {
                total: 7,
                sites: vec![(1, 5)],
                returns: vec![(0, 2)],
            }
        );
        // A site counted before the total: fine.
        r.map.store_u64(ring::LOST, 1);
        assert!(read_losses(&r, &[(0, 0, 0), (1, 0, 0)], ms)
            .unwrap()
            .is_some());
        let cases: [(&str, u64, u64); 6] = [
            ("leapt", ring::LOST_TOTAL, u64::MAX),
            ("leapt", ring::LOST + 8, u64::MAX),
            ("in all", ring::LOST_TOTAL, 100),
            ("went back", ring::LOST + 8, 4),
            (
                "lost-return count of fast site 1 went back",
                ring::RET_LOST + 8,
                0,
            ),
            (
                "lost-return count of fast site 0 leapt",
                ring::RET_LOST,
                u64::MAX,
            ),
        ];
        for (what, off, value) in cases {
            let r = test_ring(16);
            r.map.store_u64(ring::LOST + 8, 5);
            r.map.store_u64(ring::RET_LOST + 8, 1);
            r.map.store_u64(ring::LOST_TOTAL, 6);
            r.map.store_u64(off, value);
            let e = read_losses(&r, &[(0, 0, 0), (1, 5, 1)], ms)
                .map(|_| ())
                .expect_err(what);
            assert!(e.contains(what), "{what}: {e}");
        }
        // The total going back.
        let mut r = test_ring(16);
        r.lost_seen = 10;
        r.map.store_u64(ring::LOST_TOTAL, 3);
        let e = read_losses(&r, &[(0, 10, 0)], ms).unwrap_err();
        assert!(e.contains("went back from 10 to 3"), "{e}");
    }

    #[test]
    fn hit_counts_add_their_shards_and_must_be_counts() {
        let ms = Duration::from_millis(2);
        let r = test_ring(16);
        let counter = |shard: u64, site: u64| ring::AGG + shard * ring::AGG_SHARD + 8 * site;
        r.map.store_u64(counter(0, 2), 5);
        r.map.store_u64(counter(7, 2), 6);
        r.map.store_u64(counter(3, 1), 1);
        assert_eq!(
            read_counts(&r, &[(1, 0), (2, 4)], ms),
            Ok(vec![(1, 1), (2, 11)])
        );
        let e = read_counts(&r, &[(2, 12)], ms).unwrap_err();
        assert!(e.contains("went back from 12 to 11"), "{e}");
        r.map.store_u64(counter(4, 2), u64::MAX / 2);
        let e = read_counts(&r, &[(2, 11)], ms).unwrap_err();
        assert!(e.contains("leapt"), "{e}");
    }

    #[test]
    fn timed_rows_add_their_shards_and_must_be_counts() {
        let ms = Duration::from_millis(2);
        let r = test_ring(16);
        let row = |shard: u64, off: u64| {
            ring::TIMED + shard * ring::TIMED_SHARD + 5 * ring::TIMED_ROW + off
        };
        // Two calls in block 0 (3 ns and 40 ns), one in block 3 (0 ns).
        r.map.store_u64(row(0, ring::ROW_SUM), 43);
        r.map.store_u64(row(0, ring::ROW_MAX), 40);
        r.map.store_u64(row(0, ring::ROW_MIN_NOT), !3);
        r.map.store_u64(row(0, ring::ROW_HIST + 8 * 3), 1);
        r.map.store_u64(row(0, ring::ROW_HIST + 8 * 7), 1);
        r.map.store_u64(row(3, ring::ROW_HIST + 8), 1);
        r.map.store_u64(row(3, ring::ROW_MIN_NOT), !0);
        let now = read_row(&r, 5);
        assert_eq!((now.sum_ns, now.max_ns, now.min_not), (43, 40, !0));
        // Looked at again only when its sum or its bucket of 0 moved.
        assert!(row_moved(&r, 5, &RowTotals::default()));
        assert!(!row_moved(&r, 5, &now));
        let mut zero_less = now.clone();
        zero_less.hist[1] = 0;
        assert!(row_moved(&r, 5, &zero_less));
        let (calls, times) = row_since(&RowTotals::default(), &now, ms).unwrap();
        assert_eq!(calls, 3);
        assert_eq!(times.total, Duration::from_nanos(43));
        assert_eq!(times.min, Duration::ZERO);
        assert_eq!(times.max, Duration::from_nanos(40));
        let mut want = [0u64; 65];
        (want[1], want[3], want[7]) = (1, 1, 1);
        assert_eq!(times.log2_ns, want);
        // Since a later look: only what came after.
        let mut before = now.clone();
        before.hist[7] = 0;
        before.sum_ns = 3;
        let (calls, times) = row_since(&before, &now, ms).unwrap();
        assert_eq!((calls, times.total), (1, Duration::from_nanos(40)));
        // Counts that went back, or leapt, are not counts.
        let e = row_since(&now, &RowTotals::default(), ms).unwrap_err();
        assert!(e.contains("went back"), "{e}");
        let mut leap = now.clone();
        leap.hist[9] = u64::MAX / 2;
        let e = row_since(&now, &leap, ms).unwrap_err();
        assert!(e.contains("leapt"), "{e}");
        // No call yet: no shortest.
        let (_, times) = row_since(&RowTotals::default(), &RowTotals::default(), ms).unwrap();
        assert_eq!(times.min, Duration::ZERO);
    }

    #[test]
    fn the_clock_maps_ticks_to_time() {
        let clock = TscClock {
            tsc0: 1000,
            t0: Duration::from_micros(5),
            ns_per_tick: 0.5,
        };
        assert_eq!(clock.time(3000), Duration::from_nanos(6000));
        assert_eq!(clock.time(0), Duration::from_nanos(4500));
    }
}
