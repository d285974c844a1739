//! The layouts of the memory fast probes share with rtrace: the ring of
//! records (`ring`) and the table of original return addresses (`table`),
//! read by the detours, the return stub and rtrace's hooks, and by rtrace.

/// The layout of the shared ring (a memfd mapped in rtrace and the tracee).
///
/// ```text
/// 0        enqueue position (u64), advanced by producers with lock cmpxchg
/// 8        records lost because the ring was full, in all
/// 16       ALIVE (u32): rtrace's watchman thread id while rtrace lives; the
///          kernel sets FUTEX_OWNER_DIED in it when rtrace dies (a robust futex)
/// 20       HEARTBEAT (u32): bumped every millisecond while a request or a
///          thread waits and rtrace is reading
/// 24       DOORBELL (u32): bumped by a hook that posts a request, and by a
///          thread that waits for room
/// 28       WAITING (u32): set by a thread about to wait for room; rtrace
///          clears it when it wakes the waiters
/// 32       ROOM (u32): bumped by rtrace after each read that freed slots;
///          the waiters sleep on it
/// 40       STALE (u64): (1 << 32) | the heartbeat at which a waiter gave
///          rtrace up; cleared by rtrace when it reads
/// 48       NS_MULT (u64): nanoseconds per time stamp counter tick, in 32.32
///          fixed point, written by rtrace: the return stub's durations
/// 56       SILENT_TP (u64): the thread pointer an untraced vfork child
///          borrows while it runs (0: none): counting and timed detours
///          count nothing under it
/// LOST     one u64 per fast site: records lost because the ring was full
/// RET_LOST one u64 per fast site: its calls' return records lost
/// REQUESTS REQUEST_COUNT requests of rtrace's own hooks (see `hook`)
/// AGG      AGG_SHARDS blocks of one u64 per fast site: the hits of sites
///          counted in the program
/// TIMED    TIMED_SHARDS blocks of MAX_TIMED rows: the calls of sites timed
///          in the program (their durations' sum, extremes and log2
///          histogram)
/// SLOTS    capacity × slot_size bytes; each slot: seq, then one record
/// ```
///
/// A record, in its slot:
///
/// ```text
/// 0   SEQ, the slot's sequence word
/// 8   INDEX (u32): the site      12  KIND (u32): entry, return, catch, none
/// 16  TP: the thread pointer     24  TSC: the time stamp counter
/// 32  RET_ADDR                   40  RET_WATCH (u32)  44  RET_ERRNO (i32)
/// 48  an entry: its site's registers, packed (general-purpose ones,
///     rflags, then xmm ones), then its captures
///     a return: rax (48), rdx (56), the stack pointer (64), xmm0 (72), a
///     filled buffer's pointer (80), the string or the buffer (88)
/// ```
///
/// An entry carries only the registers its site's handlers asked for
/// (`Capture::registers`), so that a record costs the program what its
/// readers need: the printers ask for the argument registers.
///
/// Dmitry Vyukov's bounded MPMC queue, with each slot's sequence number
/// stored less its slot number, so that a fresh (zero) memfd is an empty
/// ring: for position `p` (slot `p % capacity`, lap base `b = p - p %
/// capacity`) the slot is free when its word is `b`, published when it is
/// `b + 1`; the consumer frees it for the next lap by writing `b + capacity`.
/// A producer that finds a word below `b` finds the ring full.
pub mod ring {
    /// The enqueue position.
    pub const ENQUEUE: u64 = 0;
    /// Records lost, in all.
    pub const LOST_TOTAL: u64 = 8;
    /// rtrace's liveness (u32): its watchman's thread id, with
    /// [`OWNER_DIED`] set by the kernel once rtrace is gone; 0 before.
    pub const ALIVE: u64 = 16;
    /// Bumped by rtrace every millisecond while a request waits (u32): a
    /// hook that sees it stand still knows rtrace is stopped.
    pub const HEARTBEAT: u64 = 20;
    /// Bumped by a hook that posts a request (u32); rtrace's watchman
    /// sleeps on it.
    pub const DOORBELL: u64 = 24;
    /// Set (u32) by a thread about to wait for room in a full ring;
    /// cleared by rtrace when it wakes the waiters.
    pub const WAITING: u64 = 28;
    /// Bumped (u32) by rtrace after each read that freed slots: the futex
    /// a thread waiting for room sleeps on.
    pub const ROOM: u64 = 32;
    /// The heartbeat with bit 32 set (u64), written by a thread that waited
    /// for room without a heartbeat for [`STALE_ROOM_WAITS`] waits: until
    /// the heartbeat moves, a full ring drops at once. rtrace clears it when
    /// it reads.
    pub const STALE: u64 = 40;
    /// Waits of a millisecond for room without a heartbeat or a read (no
    /// move of `ROOM`) after which a thread takes rtrace for stopped, or
    /// not reading, and drops its record (counted lost). 50: on a machine
    /// whose CPUs are all busy, rtrace's watchman thread was seen left
    /// waiting by the scheduler for up to 45 ms while rtrace read on, and
    /// 10 made the program drop what a little patience keeps.
    pub const STALE_ROOM_WAITS: u64 = 50;
    /// Nanoseconds per tick of the time stamp counter, times 2^32 (u64),
    /// as rtrace's clock has it: the return stub's durations of timed
    /// calls are `(ticks * NS_MULT) >> 32`.
    pub const NS_MULT: u64 = 48;
    /// The thread pointer a vfork child rtrace let go borrows from its
    /// parent while it runs (u64; 0: none), written by rtrace: the
    /// detours that count or time calls in the program count none made
    /// under it, as the child's records are not reported either.
    pub const SILENT_TP: u64 = 56;
    /// The bit the kernel sets in a robust futex whose owner died
    /// (`FUTEX_OWNER_DIED`, linux/futex.h).
    pub const OWNER_DIED: u32 = 0x4000_0000;
    /// The lost-record counters, one per site index.
    pub const LOST: u64 = 64;
    /// How many fast sites one ring serves.
    pub const MAX_SITES: u64 = 16384;
    /// The lost-return counters, one per site index: the return stub
    /// counts a return it could not record under the site of its call.
    pub const RET_LOST: u64 = LOST + 8 * MAX_SITES;
    /// The requests rtrace's own hooks post (see `hook::Request`).
    pub const REQUESTS: u64 = RET_LOST + 8 * MAX_SITES;
    /// How many requests can wait at once.
    pub const REQUEST_COUNT: u64 = 16;
    /// Bytes per request.
    pub const REQUEST_SIZE: u64 = 32;
    /// The hit counters of the sites that count in the program (see
    /// `detour`'s counting detours): [`AGG_SHARDS`] blocks of one u64 per
    /// site index, a thread adding to the block its thread pointer hashes
    /// to (`tp * table::GOLDEN >> 61`, Fibonacci hashing as the table's),
    /// so that threads on other CPUs seldom share its cache line.
    pub const AGG: u64 = (REQUESTS + REQUEST_COUNT * REQUEST_SIZE + 63) & !63;
    /// Blocks of hit counters (a power of two).
    pub const AGG_SHARDS: u64 = 8;
    /// The bytes of one block.
    pub const AGG_SHARD: u64 = 8 * MAX_SITES;
    /// The call rows of the sites timed in the program (see `detour`'s
    /// timed detours): [`TIMED_SHARDS`] blocks of [`MAX_TIMED`] rows, a
    /// thread adding to the block its thread pointer hashes to, as
    /// [`AGG`]'s.
    pub const TIMED: u64 = AGG + AGG_SHARDS * AGG_SHARD;
    /// Blocks of call rows (a power of two).
    pub const TIMED_SHARDS: u64 = 4;
    /// How many sites of one ring can be timed in the program (the others
    /// record their calls).
    pub const MAX_TIMED: u64 = 1024;
    /// Bytes per row (a multiple of 64: a row is cache lines of its own).
    pub const TIMED_ROW: u64 = 576;
    /// The bytes of one block.
    pub const TIMED_SHARD: u64 = MAX_TIMED * TIMED_ROW;
    /// In a row: the durations' sum, in nanoseconds.
    pub const ROW_SUM: u64 = 0;
    /// In a row: the longest duration.
    pub const ROW_MAX: u64 = 8;
    /// In a row: the shortest duration, complemented (`!ns`, so that it
    /// too is kept by a maximum; 0 before any call).
    pub const ROW_MIN_NOT: u64 = 16;
    /// In a row: [`ROW_BUCKETS`] counts of calls by duration, log2
    /// buckets as rtrace's histograms have them: `[0]` unused (negative),
    /// `[1]` 0 ns, `[2 + k]` from 2^k to 2^(k+1) ns. Their sum is the calls.
    pub const ROW_HIST: u64 = 24;
    /// Buckets in a row.
    pub const ROW_BUCKETS: u64 = 65;
    /// Where the slots begin.
    pub const SLOTS: u64 = (TIMED + TIMED_SHARDS * TIMED_SHARD + 4095) & !4095;

    /// A record's sequence word.
    pub const SEQ: u64 = 0;
    /// The site index (u32).
    pub const INDEX: u64 = 8;
    /// What the record is (u32, [`KIND_ENTRY`](super::KIND_ENTRY)).
    pub const KIND: u64 = 12;
    /// The thread pointer (`fs_base`).
    pub const TP: u64 = 16;
    /// The time stamp counter.
    pub const TSC: u64 = 24;
    /// The return address at the probed function's entry (`[rsp]`); in a
    /// return record, the original the stub went back to.
    pub const RET_ADDR: u64 = 32;
    /// How the return of an entry is watched (u32, `WATCH_*`).
    pub const RET_WATCH: u64 = 40;
    /// A return record's errno (i32) as the function left it, when its
    /// table entry gave errno's place (see `table::ERRNO`); else 0.
    pub const RET_ERRNO: u64 = 44;
    /// An entry record's registers: those of its site's set
    /// ([`RegSet`](crate::arch::RegSet), the stack pointer always among
    /// them), as at the probed instruction, one word each in encoding order,
    /// then rflags when the set has it; its captures follow
    /// (`detour::layout_captures`).
    pub const REGS: u64 = 48;
    /// A return record's rax, as the function returned it (a return: the
    /// return stub's, or rtrace's hook at a return site).
    pub const RET_RAX: u64 = 48;
    /// A return record's rdx.
    pub const RET_RDX: u64 = 56;
    /// A return record's stack pointer, just past the slot of the return
    /// address; a catch record's, at `__cxa_begin_catch`.
    pub const RET_SP: u64 = 64;
    /// A return record's xmm0, low 64 bits (a `float` or `double` return
    /// value).
    pub const RET_XMM0: u64 = 72;
    /// A return record's pointer to the buffer its call filled, when the
    /// entry asked for that buffer (`table::BUFFER`).
    pub const RET_PTR: u64 = 80;
    /// A return record's copy of the C string rax points to (a status
    /// word, then the bytes), when the entry asked for it; or of the buffer
    /// at `RET_PTR`, as many bytes as rax says.
    pub const RET_STRING: u64 = 88;
    /// The least slot size: a ring's slots hold whatever the sites armed
    /// later capture, up to what they would hold at this size.
    pub const MIN_SLOT: u64 = 256;
}

/// A record of a hit (the probed instruction reached).
pub const KIND_ENTRY: u32 = 0;
/// A record of a return through the stub: rax and rdx as returned, rsp
/// just past the slot, `RET_ADDR` the original return address.
pub const KIND_RETURN: u32 = 1;
/// A slot the return stub claimed and then had nothing to record in (the
/// table had no entry for its stack slot): skipped.
pub const KIND_NONE: u32 = 3;
/// A record of a catch handler starting (`__cxa_begin_catch`'s hook): the
/// thread's calls in flight at or below its `rsp` were unwound.
pub const KIND_CATCH: u32 = 2;

/// An entry whose return is not watched (the site does not ask for it).
pub const WATCH_NONE: u32 = 0;
/// The return address was swapped for the stub; the original is in the
/// table under the slot.
pub const WATCH_STUB: u32 = 1;
/// The slot held the stub already (a tail call from a watched call): this
/// call returns with the one below it.
pub const WATCH_CHAINED: u32 = 2;
/// The table had no free entry near the slot's: the return is not watched.
pub const WATCH_FULL: u32 = 3;

/// The table of swapped return addresses: a private anonymous mapping of
/// the tracee (so a forked child gets a copy matching its copy of the
/// stack), open-addressed by stack slot. Each entry is written only by the
/// thread whose stack holds its slot; a free one (key 0) is claimed with
/// `lock cmpxchg`.
///
/// ```text
/// 0   key: the stack slot (0: free)
/// 8   the original return address
/// 16  the thread pointer of the thread that made the call
/// 24  the site index (u32)
/// 28  the most bytes of the C string the return value points to, for the
///     return record (u32, 0: none)
/// 32  the unwinder's stack pointer while the entry is parked
/// 40  a timed call: its row in the ring's `TIMED` blocks, plus one (u32,
///     0: the call's return is recorded)
/// 44  a timed call: how many timed calls are chained to it (u32)
/// 48  a timed call: the time stamp counter at its entry; a recorded
///     call whose return copies a buffer (`BUFFER`): its pointer
/// 56  errno's offset from the thread pointer (0: not copied)
/// ```
///
/// A timed call chained to a timed call (a tail call: the slot holds the
/// stub already) has an entry of its own, keyed by the slot plus its place
/// in the chain (1 to [`MAX_CHAIN`]: slots are 8-aligned, so no slot is
/// such a key), with no thread pointer (no thread's scan of its own slots
/// meets it): its site index, row and entry time. The stub times the chain
/// with the call it returns for.
pub mod table {
    /// Bytes per entry.
    pub const ENTRY: u64 = 64;
    /// Entries (a power of two).
    pub const ENTRIES: u64 = 1 << BITS;
    /// log2 of `ENTRIES`.
    pub const BITS: u32 = 14;
    /// Entries looked at from a slot's hash before the table counts as full.
    pub const PROBES: u64 = 32;
    /// The table's size in bytes.
    pub const SIZE: u64 = ENTRIES * ENTRY;
    /// The key's offset in an entry.
    pub const KEY: u64 = 0;
    /// The original return address's offset.
    pub const ORIG: u64 = 8;
    /// The thread pointer's offset.
    pub const TP: u64 = 16;
    /// The site index's offset.
    pub const INDEX: u64 = 24;
    /// The return string capture's offset.
    pub const RET_STRING: u64 = 28;
    /// While the entry is [`PARKED`]: the stack pointer at the entry of the
    /// unwinder that parked it (its hook's site). Only an unpark at or above
    /// it gives the call the stub back: an unwinder entered further out is
    /// still running (a signal handler that catches an exception, or calls
    /// `backtrace()`, interrupted it) and walks the frames its entry parked.
    pub const PARK_SP: u64 = 32;
    /// A timed call's row plus one (u32; 0: the call is recorded).
    pub const TIMED: u64 = 40;
    /// How many timed calls are chained to a timed call (u32).
    pub const CHAIN: u64 = 44;
    /// The time stamp counter at the timed call's entry.
    pub const ENTERED: u64 = 48;
    /// Where errno is, as an offset from the thread pointer (`fs:`), for
    /// the stub to copy into the return record (`ring::RET_ERRNO`); 0: not
    /// copied. rtrace writes it for the calls of int3 probes whose handlers
    /// read errno at the return; a detour writes its site's
    /// (`ReturnSpec::errno`).
    pub const ERRNO: u64 = 56;
    /// Set in the return string's limit (`RET_STRING`): the stub copies
    /// the buffer whose pointer is at `ENTERED`, as many bytes as the
    /// return value says (at most the limit), not the C string at rax.
    pub const BUFFER: u32 = 1 << 31;
    /// The most timed calls chained to one (their keys are the slot plus
    /// 1 to 7).
    pub const MAX_CHAIN: u64 = 7;
    /// Set in the thread pointer of an entry whose slot was given its
    /// original back for an unwinder (parked, see `hook`): the call is in
    /// flight, its return goes straight to its caller until it is unparked.
    pub const PARKED: u64 = 1 << 63;
    /// Multiplier of the hash (Fibonacci hashing, like the kernel's
    /// `hash_64`).
    pub const GOLDEN: u64 = 0x61c8_8646_80b5_83eb;

    /// The first entry looked at for `slot`.
    pub fn home(slot: u64) -> u64 {
        (slot >> 3).wrapping_mul(GOLDEN) >> (64 - BITS)
    }

    /// The entry (its index) holding `slot` in `table` (its bytes), if any
    /// (the detours' own lookup, for tests).
    #[cfg(test)]
    pub fn find(table: &[u8], slot: u64) -> Option<u64> {
        let h = home(slot);
        (0..PROBES)
            .map(|i| (h + i) & (ENTRIES - 1))
            .find(|&e| word(table, e, KEY) == Some(slot))
    }

    /// Field `off` of entry `e` of `table`.
    pub fn word(table: &[u8], e: u64, off: u64) -> Option<u64> {
        let at = (e * ENTRY + off) as usize;
        let b = table.get(at..at + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}
