//! The sled backend: the only file that names a sled type.
//!
//! Everything lives in one tree, under one-byte key prefixes, so that the accept path is one atomic
//! batch on one tree:
//!
//! | prefix | key after the prefix                    | value                               |
//! |--------|-----------------------------------------|-------------------------------------|
//! | `d`    | source, 0, event id                     | expiry ms (u64 BE), sequence number |
//! | `T`    | expiry ms (u64 BE), sequence            | marks: the purge index (see below)  |
//! | `t`    | expiry ms (u64 BE), source, 0, event id | empty: the purge index, older form  |
//! | `e`    | sequence number (u64 BE)                | log position, [`EventRecord`]       |
//! | `s`    | source, 0, due ms (u64 BE), sequence    | empty: the delivery schedule        |
//! | `x`    | sequence number (u64 BE)                | source: the dead-letter index       |
//! | `r`    | delivered ms (u64 BE), sequence         | source: the retention index         |
//! | `R`    | delivered second (u64 BE), sequence     | events: the retention index, listed |
//! | `L`    | first sequence number (u64 BE)          | records: delivered events' `e` values |
//! | `c`    | (none)                                  | the log checkpoint (see below)      |
//! | `n`    | (none)                                  | the next sequence number (u64 BE)   |
//!
//! **The purge index.** A batch lists its dedup marks' expiries in a few `T` entries rather than one
//! entry per mark: the marks that expire within the same second go in one list (at most
//! [`EXPIRY_LIST_MARKS`] of them), under the latest of their expiries and the first one's sequence
//! number. The value repeats expiry ms (u64 BE), key length (u32 BE), dedup key. The purge takes a list
//! once its time has passed, so a mark may stay up to a second past its expiry: harmless, since the
//! duplicate check ignores expired marks. Stores written before the lists have a `t` entry per mark,
//! which the purge still reads.
//!
//! **The retention index.** A settling batch lists the events it settles delivered in a few `R` entries
//! rather than one `r` entry each: the events delivered within the same second go in one list (at most
//! [`RETAIN_LIST_EVENTS`] of them, in order), under that second and the first one's sequence number.
//! The value repeats sequence (u64 BE), delivered ms (u64 BE), source length (u32 BE), source. The
//! purge takes a list once its whole second is past the retention, so an event may stay up to a second
//! longer. A listed event that is replayed, deleted or delivered again leaves its list in the same
//! transaction (the list is found before it: a transaction cannot scan), so the lists stay exact for
//! counts and listings. Events delivered after they settled get an `r` entry, as before.
//!
//! **The record lists.** An event that settles delivered needs no key of its own either: its `e` value
//! goes in the batch's `L` entries, at most [`RECORD_LIST_EVENTS`] to an entry, in order, under the first
//! one's sequence number. The value repeats sequence (u64 BE), `e` value length (u32 BE), `e` value.
//! sled splits a leaf once it holds more than 16 entries, whatever their size, so its cost follows the
//! number of keys an event writes: a delivered event now writes its dedup mark and shares of lists,
//! where it wrote a mark and a record (README, "Benchmarks"). Lists never overlap: a settling batch
//! lists an event only if its sequence number is above every one listed before (the highest is kept
//! in memory and read back when the store opens); the rare one that is not, delivered later than a
//! newer event, gets its own `e` key. So the list that may hold event `seq` is the last one that starts
//! at or before it. An event leaves its list whenever it changes (replayed, deleted, delivered again):
//! the transaction rewrites the list without it (found before it, like its `R` list) and gives the
//! event its own `e` key. The retention purge takes listed records out with their `R` entries.
//!
//! Every stored event is in exactly one of the three state indexes (`s`, `x`, `r` or `R`), kept in
//! step with its record's [`EventState`] in the same transaction or batch. The source in the `x`, `r`
//! and `R` values lets counts per source be read without decoding records (dead-letter entries written
//! before it existed have an empty value; their record is read instead).
//!
//! **Bodies and durability.** Bodies live in the event log (`log.rs`), written once; the tree holds
//! where each one is. An accept writes its log record (which carries the sled writes too), and the
//! group commit then syncs the log, not sled: the tree gets the writes later (see "Settling") and sled
//! persists in the background (every [`SLED_FLUSH_MS`]). With each settling batch the commit thread
//! records in `c` the log position before which every record's writes are in the tree; when the store
//! opens, the records after the checkpoint that sled recovered are re-applied where their dedup mark is
//! missing (a batch is atomic, so a
//! missing mark means a missing batch; a deleted event keeps its mark and so stays deleted). An `e` value
//! starts with where the event's log record is (20 bytes, see `log::RecordRef`); the commit thread,
//! sled's only writer, counts in memory how many events each log segment holds, and a segment is
//! removed once it holds none and a flush has made that final.
//!
//! **Settling.** An accept's tree writes do not go to the tree with its log record. The commit thread
//! keeps the event in memory (its record, body and dedup mark: the "fresh" events) and applies the writes
//! of those that have waited [`SETTLE_AGE`] (those still queued: see [`Hold`]) every [`SETTLE_EVERY`],
//! in batches of at most [`SETTLE_BATCH`] events (all of them once they are [`SETTLE_EVENTS`] or hold
//! [`SETTLE_BYTES`] of bodies), each with the checkpoint, which then stays before the log record of
//! every event still fresh. Most deliveries end within that time, so a delivered event costs the tree
//! one insert (its mark) and a share of its batch's expiry, retention and record lists, instead of its
//! accept's inserts and then seven writes and a read: the queue entry written and removed, the record
//! read and written twice. A fresh event lets go of its body once
//! delivered or dead (`load` reads it from the log then). Meanwhile the duplicate check consults the
//! fresh marks, the forwarder's `due` and `load` read the fresh events, an attempt on a fresh event
//! updates it in memory, and everything else (the admin API's reads and writes, the purges, a full
//! flush) settles every fresh event first. A crash loses none of them: the log brings each back, queued
//! (a delivery that was not settled yet is made again: at least once). Only events whose log record is
//! durable settle: those of the group whose sync is under way (on the sync thread, see `commit.rs`)
//! wait for the next settle, and a settle of everything syncs the log first. So the tree never holds a
//! mark whose event a crash could lose, which would turn the sender's retry into a "duplicate".
//!
//! **Sequence numbers** are dense: 1, 2, 3, and on across restarts, in the order of acceptance (a
//! listing walks them backwards). The commit thread numbers each new event as it appends its log
//! record (a duplicate, or an accept the log refuses, takes no number) and writes the next number to
//! `n` with every settling batch, beside the checkpoint; opening takes the larger of `n` and the last
//! number in the log after the checkpoint, plus one. So a number is never given twice to events that
//! were acknowledged: an acknowledged event is in the log, after the checkpoint, or settled, below
//! `n`. (Before `n` existed, sled's persistent id generator numbered events, and it skips about two
//! million numbers at each restart; a store written then goes on from its generator's next id.)

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    time::{Duration, Instant},
};

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{
    commit::{DeferredSync, Engine},
    log::{self, LogReader, LogWriter, Position, RecordRef},
    place::{Moved, Place},
};
use crate::store::{
    Accepted, AttemptRecord, Counts, Due, DueBatch, EventQuery, EventRecord, EventState, NewEvent, NextStep,
    StateFilter, StoreError,
};

const DEDUP: u8 = b'd';
const EXPIRY: u8 = b't';
const EXPIRY_LIST: u8 = b'T';
const EVENT: u8 = b'e';
const SCHEDULE: u8 = b's';
const DEAD: u8 = b'x';
const RETAIN: u8 = b'r';
const RETAIN_LIST: u8 = b'R';
const RECORD_LIST: u8 = b'L';
const CHECKPOINT: [u8; 1] = [b'c'];
const NEXT_SEQ: [u8; 1] = [b'n'];

/// How many marks one `T` entry lists at most.
const EXPIRY_LIST_MARKS: usize = 256;
/// How many events one `R` entry lists at most.
const RETAIN_LIST_EVENTS: usize = 256;
/// How many records one `L` entry lists at most. A sled leaf holds up to 16 entries and is rewritten
/// whole now and then: lists of 64 (about 15 KiB each under the benchmark's load) raised the peak RSS
/// by 7-10 MiB; lists of 16 (about 4 KiB) made no difference (README, "Benchmarks").
const RECORD_LIST_EVENTS: usize = 16;

/// How often sled persists its tree in the background.
const SLED_FLUSH_MS: u64 = 500;
/// How long a sync of the event log may run before `/readyz` says the store is stalled.
const STALLED_SYNC: Duration = Duration::from_secs(5);
/// How long opening waits for sled's lock on the tree (see [`open_index`]).
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long an accepted event's tree writes wait in memory before they are applied (see "Settling" in
/// the module docs): long enough for most deliveries to end first.
const SETTLE_AGE: Duration = Duration::from_millis(10);
/// How often the events that have waited long enough are applied, as one batch.
///
/// Each sled batch, whatever its size, hands two log-buffer writes to sled's I/O thread pool, which
/// wakes every idle thread of the pool (seven or more) for each: at 500 batches a second, a third of
/// the process's context switches under load. Every 10 ms made an eighth of them, and took less CPU
/// per event in a calm hour; but its longer batches hold the commit thread (and so the delivery
/// outcomes the forwarder waits for) for a millisecond or two, and in a slower hour it fell behind the
/// settle age more often than every 2 ms, with higher p99s. Kept at 2 ms (README, "Benchmarks").
pub(super) const SETTLE_EVERY: Duration = Duration::from_millis(2);
/// How long an event still queued waits before it settles, at most: see [`Hold`].
const QUEUED_SETTLE_AGE: Duration = Duration::from_millis(200);
/// How many events still queued may wait longer than [`SETTLE_AGE`].
const QUEUED_HOLD_EVENTS: usize = 2048;
/// How many body bytes the fresh events may hold while queued ones wait longer than [`SETTLE_AGE`].
const QUEUED_HOLD_BYTES: usize = 4 * 1024 * 1024;
/// How many events one settling batch applies, at most: a sled batch holds its writes in memory two
/// or three times over while it is applied (settling 2,048 events at once raised the peak RSS by
/// 15-20 MiB).
pub(super) const SETTLE_BATCH: usize = 256;
/// How many accepted events may wait, at most.
const SETTLE_EVENTS: usize = 4096;
/// How many body bytes the waiting events may hold, at most.
const SETTLE_BYTES: usize = 16 * 1024 * 1024;

/// How far a listing with `since` reads past the first event received before `since`. Sequence numbers
/// and receive times agree only roughly: concurrent requests read the clock and take their number in
/// either order, and the clock may step back. Walking a little further keeps such events in the answer.
const SINCE_SLACK_MS: u64 = 10 * 60 * 1000;

pub(super) struct SledBackend {
    db: sled::Db,
    log: LogReader,
    /// Accepted events whose tree writes wait: written by the commit thread, read by `due` and `load`
    /// (on runtime threads: every hold is short, and the commit thread reads while it settles).
    fresh: RwLock<Fresh>,
    /// How long a fresh event waits before it settles: [`SETTLE_AGE`], but in tests.
    settle_age: Duration,
    /// How long, and how many, fresh events still queued may wait longer.
    hold: Hold,
    /// Counts the batches that added schedule entries: bumped after each is applied.
    schedule_writes: AtomicU64,
    /// Per source, the value of `schedule_writes` when `due` last found its schedule empty in the
    /// tree: while it has not changed, the schedule is still empty and `due` need not look.
    empty_schedules: Mutex<HashMap<String, u64>>,
    /// How many stored events each log segment holds.
    segments: SegmentCounts,
    /// The lowest sequence number that a new `L` list may hold: above every one listed (see "The record
    /// lists" in the module docs). Only the commit thread changes it.
    list_from: AtomicU64,
    /// The sequence number of the next new event (see "Sequence numbers" in the module docs); only
    /// the commit thread changes it.
    next_seq: AtomicU64,
    /// How many events are queued (accepted, not yet delivered or dead), fresh or settled: counted
    /// from the schedule when the store opens, then kept by the commit thread, sled's only writer, as
    /// it moves events in and out of the queue, so that `[store] max_queued` costs one load per accept.
    queued: AtomicU64,
    /// The log's appending side; only the commit thread (and `open`) use it.
    writer: Mutex<Writer>,
    /// Whether a sync of the log failed, and the log's segment and room (for readiness).
    log_health: log::LogHealth,
    /// The store's directories as opened (see `place.rs`).
    place: Place,
    /// Whether the last check found the store's files gone (to log the change once).
    gone: AtomicBool,
    /// Why a write to the tree failed, once one has: sled keeps failing after an I/O error (a full
    /// disk, say) until it is opened again.
    index_failed: Mutex<Option<String>>,
}

/// Events per log segment, kept by the commit thread (sled's only writer) and rebuilt when the store
/// opens.
#[derive(Default)]
struct SegmentCounts(Mutex<HashMap<u64, u64>>);

impl SegmentCounts {
    fn added(&self, segments: &[u64]) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for &segment in segments {
            *counts.entry(segment).or_default() += 1;
        }
    }

    fn removed(&self, segments: &[u64]) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for segment in segments {
            if let Some(n) = counts.get_mut(segment) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(segment);
                }
            }
        }
    }

    fn holds(&self, segment: u64) -> u64 {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&segment).copied().unwrap_or(0)
    }
}

struct Writer {
    log: LogWriter,
    /// When fresh events were last settled.
    settled_at: Option<Instant>,
}

/// Accepted events that are durable in the event log but not yet in the tree, by sequence number.
#[derive(Default)]
struct Fresh {
    events: BTreeMap<u64, FreshEvent>,
    /// Their dedup marks, for the duplicate check: key, then expiry ms and sequence number.
    marks: HashMap<Vec<u8>, (u64, u64)>,
    /// The size of their bodies.
    bytes: usize,
}

/// How long events still queued wait before they settle, and how many may.
///
/// An event that settles while still queued costs the tree three more writes and two reads when it is
/// delivered (its schedule entry written and removed, its record read and written again), and its
/// body a log read. When the cores are full, the forwarder can fall behind [`SETTLE_AGE`]; then more
/// events settle queued, each costs more, and it falls further behind: 7-16 KiB of disk writes per
/// 1 KiB event instead of about 5, and 80-110 µs of CPU instead of 60-70 (README, "Benchmarks").
/// Holding queued events longer lets a forwarder that is briefly behind catch up from memory.
///
/// The hold is bounded, and the bound is kept gradually: past it, only the oldest queued events settle,
/// as many as it takes to be back within it. (Settling every queued event at once when the bound was
/// crossed made sled batches of thousands of events, a stalled commit thread and a burst of memory.)
#[derive(Clone, Copy, Debug)]
struct Hold {
    /// How long a queued event waits at most: [`QUEUED_SETTLE_AGE`], but in tests.
    age: Duration,
    /// How many queued events may wait past the settle age: [`QUEUED_HOLD_EVENTS`], but in tests.
    events: usize,
    /// How many body bytes the fresh events may hold meanwhile: [`QUEUED_HOLD_BYTES`], but in tests.
    bytes: usize,
}

impl Hold {
    const DEFAULT: Self = Self {
        age: QUEUED_SETTLE_AGE,
        events: QUEUED_HOLD_EVENTS,
        bytes: QUEUED_HOLD_BYTES,
    };
}

/// One accepted event as the tree will hold it once settled.
struct FreshEvent {
    accepted: Instant,
    at: RecordRef,
    /// The number of the log write that holds its record (see [`LogWriter::is_durable`]).
    write: u64,
    dedup: Vec<u8>,
    expires_ms: u64,
    /// Its record, kept up to date with the delivery attempts made meanwhile.
    record: EventRecord,
    /// Its body, while the forwarder may still need it: released once the event is delivered or dead
    /// (the log has it for anyone who asks later).
    body: Option<bytes::Bytes>,
}

impl FreshEvent {
    fn is_queued(&self) -> bool {
        matches!(self.record.state, EventState::Queued { .. })
    }

    /// Adds this event's tree writes, in its current state, to `batch`, and its mark's expiry (and, if
    /// it was delivered, its retention entry and, unless a newer event is listed already, its record)
    /// to the batch's `lists`.
    fn apply_to<'a>(
        &'a self,
        seq: u64,
        batch: &mut sled::Batch,
        lists: &mut Lists<'a>,
    ) -> Result<(), StoreError> {
        lists
            .expiries
            .add(self.expires_ms, (seq, self.expires_ms, &self.dedup));
        let value = event_value(&self.at, &self.record)?;
        let index = match self.record.state {
            EventState::Delivered { at_ms } => {
                lists.retained.add(at_ms, (seq, at_ms, &self.record.source));
                if seq >= lists.list_from {
                    lists.list_from = seq + 1;
                    lists.records.push((seq, value));
                    batch.insert(&self.dedup[..], &mark_value(self.expires_ms, seq)[..]);
                    return Ok(());
                }
                None
            }
            _ => Some(index_entry(seq, &self.record)),
        };
        let index = index
            .as_ref()
            .map(|(key, value)| (key.as_slice(), value.as_slice()));
        insert_event(batch, &self.dedup, self.expires_ms, seq, value, index);
        Ok(())
    }
}

/// Adds an accepted event's tree writes to `batch`: its dedup mark, its `e` value and its state-index
/// entry, if it has one of its own. Its mark's expiry, and a delivered event's retention entry, go in
/// the batch's [`Lists`].
fn insert_event(
    batch: &mut sled::Batch,
    dedup: &[u8],
    expires_ms: u64,
    seq: u64,
    value: Vec<u8>,
    index: Option<(&[u8], &[u8])>,
) {
    batch.insert(dedup, &mark_value(expires_ms, seq)[..]);
    batch.insert(&seq_key(EVENT, seq)[..], value);
    if let Some((key, value)) = index {
        batch.insert(key, value);
    }
}

/// A dedup mark's value: its expiry ms and its event's sequence number (u64 BE each).
fn mark_value(expires_ms: u64, seq: u64) -> [u8; 16] {
    let mut mark = [0u8; 16];
    mark[..8].copy_from_slice(&expires_ms.to_be_bytes());
    mark[8..].copy_from_slice(&seq.to_be_bytes());
    mark
}

/// Appends `part` to `out`, preceded by its length (u32 BE).
fn put_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
}

/// Takes a part written by [`put_part`] off the front of `rest`.
fn take_part<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let part = rest.get(4..4 + len)?;
    *rest = &rest[4 + len..];
    Some(part)
}

/// A mark in an expiry list: its event's sequence number, its expiry ms and its key.
type ListedMark<'a> = (u64, u64, &'a [u8]);

/// An event in a retention list: its sequence number, when it was delivered (Unix ms), its source.
type Retained<'a, S = &'a str> = (u64, u64, S);

/// The marks a `T` list holds: expiry ms and dedup key.
fn expiry_list(value: &[u8]) -> Result<Vec<(u64, &[u8])>, StoreError> {
    decode_list(value, "expiry list", |rest| {
        Some((take_u64(rest)?, take_part(rest)?))
    })
}

/// The items of a list value, each taken off its front by `item`; `what` names the list if one is cut
/// short.
fn decode_list<'v, T>(
    value: &'v [u8],
    what: &'static str,
    mut item: impl FnMut(&mut &'v [u8]) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
    let mut items = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        items.push(item(&mut rest).ok_or(StoreError::Corrupt { what })?);
    }
    Ok(items)
}

/// Takes a u64 (BE) off the front of `rest`.
fn take_u64(rest: &mut &[u8]) -> Option<u64> {
    let n = read_u64(rest)?;
    *rest = &rest[8..];
    Some(n)
}

/// The lists that one batch writes (see "The purge index", "The retention index" and "The record
/// lists" in the module docs): its marks' expiries as `T` entries, the events it settles delivered as
/// `R` entries, and their records as `L` entries.
#[derive(Default)]
struct Lists<'a> {
    expiries: BySecond<ListedMark<'a>>,
    retained: BySecond<Retained<'a>>,
    /// Records of events settled delivered, by sequence number, in order.
    records: Vec<(u64, Vec<u8>)>,
    /// The lowest sequence number that the batch may list in `L`: above every one listed so far.
    list_from: u64,
}

impl Lists<'_> {
    fn insert_into(&self, batch: &mut sled::Batch) {
        for marks in self.expiries.lists(EXPIRY_LIST_MARKS) {
            let latest = marks
                .iter()
                .map(|&(_, expires_ms, _)| expires_ms)
                .max()
                .unwrap_or(0);
            let mut key = Vec::with_capacity(17);
            key.push(EXPIRY_LIST);
            key.extend_from_slice(&latest.to_be_bytes());
            key.extend_from_slice(&marks[0].0.to_be_bytes());
            let mut value = Vec::with_capacity(marks.iter().map(|(_, _, d)| 12 + d.len()).sum());
            for &(_, expires_ms, dedup) in marks {
                value.extend_from_slice(&expires_ms.to_be_bytes());
                put_part(&mut value, dedup);
            }
            batch.insert(key, value);
        }
        for events in self.retained.lists(RETAIN_LIST_EVENTS) {
            let mut value = Vec::with_capacity(events.iter().map(|(_, _, s)| 20 + s.len()).sum());
            for &(seq, at_ms, source) in events {
                put_retained(&mut value, seq, at_ms, source.as_bytes());
            }
            let (first, at_ms, _) = events[0];
            batch.insert(&retain_list_key(at_ms / 1000, first)[..], value);
        }
        for records in self.records.chunks(RECORD_LIST_EVENTS) {
            let mut value = Vec::with_capacity(records.iter().map(|(_, r)| 12 + r.len()).sum());
            for (seq, record) in records {
                put_listed_record(&mut value, *seq, record);
            }
            batch.insert(&seq_key(RECORD_LIST, records[0].0)[..], value);
        }
    }
}

/// Appends one event's `e` value to an `L` list's value.
fn put_listed_record(value: &mut Vec<u8>, seq: u64, record: &[u8]) {
    value.extend_from_slice(&seq.to_be_bytes());
    put_part(value, record);
}

/// The events an `L` list holds: sequence number and `e` value, in order.
fn record_list(value: &[u8]) -> Result<Vec<(u64, &[u8])>, StoreError> {
    decode_list(value, "record list", |rest| {
        Some((take_u64(rest)?, take_part(rest)?))
    })
}

/// Event `seq`'s `e` value in the `L` list `value`, if it holds it.
fn listed_record(value: &[u8], seq: u64) -> Result<Option<&[u8]>, StoreError> {
    let records = record_list(value)?;
    Ok(records
        .binary_search_by_key(&seq, |&(listed, _)| listed)
        .ok()
        .map(|at| records[at].1))
}

/// An `L` list's value without the events that `drop` picks.
fn record_list_without(value: &[u8], drop: impl Fn(u64) -> bool) -> Result<Vec<u8>, StoreError> {
    let mut rest = Vec::with_capacity(value.len());
    for (seq, record) in record_list(value)? {
        if !drop(seq) {
            put_listed_record(&mut rest, seq, record);
        }
    }
    Ok(rest)
}

/// Items grouped by the second of their time, in the order they were added.
struct BySecond<T>(BTreeMap<u64, Vec<T>>);

impl<T> Default for BySecond<T> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<T> BySecond<T> {
    fn add(&mut self, ms: u64, item: T) {
        self.0.entry(ms / 1000).or_default().push(item);
    }

    /// The items, a second at a time, in lists of at most `max`.
    fn lists(&self, max: usize) -> impl Iterator<Item = &[T]> {
        self.0.values().flat_map(move |items| items.chunks(max))
    }
}

/// An `R` list's key: the second its events were delivered in, then the first one's sequence number.
fn retain_list_key(second: u64, first_seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RETAIN_LIST;
    k[1..9].copy_from_slice(&second.to_be_bytes());
    k[9..].copy_from_slice(&first_seq.to_be_bytes());
    k
}

/// Appends one event to an `R` list's value.
fn put_retained(value: &mut Vec<u8>, seq: u64, at_ms: u64, source: &[u8]) {
    value.extend_from_slice(&seq.to_be_bytes());
    value.extend_from_slice(&at_ms.to_be_bytes());
    put_part(value, source);
}

/// The events an `R` list holds: sequence number, delivered ms and source.
fn retained_list(value: &[u8]) -> Result<Vec<Retained<'_, &[u8]>>, StoreError> {
    decode_list(value, "retention list", |rest| {
        Some((take_u64(rest)?, take_u64(rest)?, take_part(rest)?))
    })
}

/// One event's accept write, encoded: applied by the commit thread unless its id is a duplicate.
pub(super) struct AcceptWrite {
    now_ms: u64,
    seq: u64,
    expires_ms: u64,
    /// The dedup key (also in the head).
    dedup: Vec<u8>,
    /// The log record's payload (see [`Logged`]) but the body.
    head: Vec<u8>,
    /// The body, shared with the request rather than copied.
    body: bytes::Bytes,
    /// The event's record, as encoded in the payload.
    record: EventRecord,
    /// Only answer whether the id is a duplicate: a new id is not written (the queue is full).
    duplicate_only: bool,
}

impl AcceptWrite {
    /// This write, but only to find out whether its id is a duplicate: a new id is answered
    /// [`Applied::NotDuplicate`] and nothing is written.
    pub(super) fn duplicate_only(mut self) -> Self {
        self.duplicate_only = true;
        self
    }

    /// Gives the write its sequence number, in the head's two places: its start and the end of the
    /// schedule key (see [`Logged`]).
    ///
    /// The commit thread numbers each new event as it applies it, rather than the request's task as it
    /// prepares it: sled's id generator takes the tree's read lock, which waits while the commit thread
    /// applies a batch (a settle of a few hundred writes takes a millisecond or so), and a runtime
    /// thread blocked there holds up every request it serves. Numbering here also keeps the order of
    /// the log and wastes no number on a duplicate.
    fn number(&mut self, seq: u64) {
        let schedule_at = 16 + 4 + self.dedup.len();
        let schedule_len = self.head[schedule_at..schedule_at + 4]
            .try_into()
            .map(u32::from_be_bytes)
            .expect("four bytes") as usize;
        let seq_at = schedule_at + 4 + schedule_len - 8;
        self.head[..8].copy_from_slice(&seq.to_be_bytes());
        self.head[seq_at..seq_at + 8].copy_from_slice(&seq.to_be_bytes());
        self.seq = seq;
    }
}

/// A log record's payload: the event's sled writes and its body.
///
/// `seq` (u64 BE), `expires_ms` (u64 BE), then the dedup key, the schedule key and the encoded
/// [`EventRecord`], each preceded by its length (u32 BE), then the body to the end.
struct Logged<'a> {
    seq: u64,
    expires_ms: u64,
    dedup: &'a [u8],
    schedule: &'a [u8],
    record: &'a [u8],
    body: &'a [u8],
}

impl<'a> Logged<'a> {
    /// The payload up to the body, which the log appends after it (see `LogWriter::append_parts`).
    fn encode_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.dedup.len() + self.schedule.len() + self.record.len());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        for part in [self.dedup, self.schedule, self.record] {
            put_part(&mut out, part);
        }
        out
    }

    fn decode(payload: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = StoreError::Corrupt { what: "log record" };
        let (Some(seq), Some(expires_ms)) = (read_u64(payload), payload.get(8..).and_then(read_u64)) else {
            return Err(corrupt);
        };
        let mut rest = &payload[16..];
        let (Some(dedup), Some(schedule), Some(record)) =
            (take_part(&mut rest), take_part(&mut rest), take_part(&mut rest))
        else {
            return Err(corrupt);
        };
        Ok(Self {
            seq,
            expires_ms,
            dedup,
            schedule,
            record,
            body: rest,
        })
    }

    /// Adds this event's sled writes, as accepted, with its log record at `at`, to `batch` (but for its
    /// mark's expiry: see [`Lists`]).
    fn apply_to(&self, at: RecordRef, batch: &mut sled::Batch) {
        let mut value = Vec::with_capacity(RecordRef::ENCODED + self.record.len());
        value.extend_from_slice(&at.encode());
        value.extend_from_slice(self.record);
        insert_event(
            batch,
            self.dedup,
            self.expires_ms,
            self.seq,
            value,
            Some((self.schedule, &[][..])),
        );
    }
}

/// A write that the commit thread applies in a group with others.
pub(super) enum GroupWrite {
    /// An accept.
    Accept(Box<AcceptWrite>),
    /// A delivery attempt and what follows it.
    Attempt {
        seq: u64,
        attempt: AttemptRecord,
        next: NextStep,
    },
}

/// Why a group's accepts are refused before any is written.
#[derive(Clone)]
enum Refusal {
    Gone(Moved),
    IndexFailed(String),
}

/// What a [`GroupWrite`] did.
pub(super) enum Applied {
    Accept(Accepted),
    /// The accept was refused: nothing of it was written (the log could not take its record).
    Refused(StoreError),
    /// The attempt was recorded (or its event was deleted meanwhile).
    Recorded,
    /// A duplicate-only accept's id is new: nothing was written.
    NotDuplicate,
}

impl Engine for SledBackend {
    type Write = GroupWrite;
    type Outcome = Applied;

    /// Applies a group of writes: the accepts to the event log and to memory (their tree writes wait
    /// to be settled, see the module docs), the other writes to the tree as one sled batch: one batch
    /// costs sled two log-buffer writes whatever its size, so grouping is what keeps sled cheap.
    ///
    /// An accept checks its dedup mark (in the tree, then among the fresh events) and, if new, appends
    /// its log record and joins the fresh events. An attempt updates its fresh event, or else reads its
    /// event in the tree and adds the new state to the batch. The commit thread is sled's only writer,
    /// so what is read here cannot change before the batch is applied.
    fn apply(&self, writes: Vec<GroupWrite>) -> Result<Vec<Applied>, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // After a failed sync no accept can be made durable (see `LogWriter::sync_later`): refuse them
        // here rather than keep events in memory that never settle.
        let mut refuse = None;
        if writes.iter().any(|w| matches!(w, GroupWrite::Accept(_))) {
            writer.log.refuse_if_failed().map_err(sync_error)?;
            refuse = self.check_place().err().map(Refusal::Gone);
            // sled takes no more writes after an I/O error: an accepted event would wait in memory
            // until the restart, however many came after it.
            if refuse.is_none() {
                refuse = self.index_failed().map(Refusal::IndexFailed);
            }
        }
        let mut batch = sled::Batch::default();
        let mut batched = false;
        let mut scheduled = false;
        // How the batch changes the queued count: applied only with the batch.
        let mut batch_queued: i64 = 0;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                GroupWrite::Accept(_) if refuse.is_some() => {
                    let refused = match refuse.clone().expect("checked") {
                        Refusal::Gone(moved) => StoreError::Gone(moved),
                        Refusal::IndexFailed(why) => StoreError::IndexFailed(why),
                    };
                    outcomes.push(Applied::Refused(refused));
                }
                GroupWrite::Accept(mut w) => {
                    // A mark past its expiry that the purge has not reached yet counts as absent.
                    let fresh_mark = self.fresh().marks.get(&w.dedup).copied();
                    let taken = fresh_mark.is_some_and(|(expires_ms, _)| expires_ms > w.now_ms)
                        || self
                            .db
                            .get(&w.dedup)
                            .map_err(backend)?
                            .is_some_and(|mark| read_u64(&mark).is_some_and(|exp| exp > w.now_ms));
                    if taken {
                        outcomes.push(Applied::Accept(Accepted::Duplicate));
                        continue;
                    }
                    if w.duplicate_only {
                        outcomes.push(Applied::NotDuplicate);
                        continue;
                    }
                    let seq = self.next_seq.load(Ordering::Relaxed);
                    w.number(seq);
                    let at = match writer.log.append_parts(&w.head, &w.body) {
                        Ok(at) => {
                            self.next_seq.store(seq + 1, Ordering::Relaxed);
                            at
                        }
                        // No room for a new segment, say: this accept fails alone (the others of
                        // the group are in the log already, or may fit), and nothing of it is kept.
                        Err(e) => {
                            outcomes.push(Applied::Refused(io_error(e)));
                            continue;
                        }
                    };
                    self.segments.added(&[at.at.segment]);
                    let (seq, dedup, expires_ms) = (w.seq, w.dedup, w.expires_ms);
                    let mut fresh = self.fresh_mut();
                    fresh.marks.insert(dedup.clone(), (expires_ms, seq));
                    fresh.bytes += w.body.len();
                    fresh.events.insert(
                        seq,
                        FreshEvent {
                            accepted: Instant::now(),
                            at,
                            write: writer.log.next_write(),
                            dedup,
                            expires_ms,
                            record: w.record,
                            body: Some(w.body),
                        },
                    );
                    self.queued.fetch_add(1, Ordering::Relaxed);
                    outcomes.push(Applied::Accept(Accepted::New(seq)));
                }
                GroupWrite::Attempt { seq, attempt, next } => {
                    let mut guard = self.fresh_mut();
                    let fresh = &mut *guard;
                    if let Some(event) = fresh.events.get_mut(&seq) {
                        let was_queued = event.is_queued();
                        record_attempt(&mut event.record, attempt, next);
                        self.count_queued(was_queued, event.is_queued());
                        if !event.is_queued() {
                            fresh.bytes -= event.body.take().map_or(0, |body| body.len());
                        }
                    } else {
                        drop(guard);
                        // Not fresh, so in the tree; unless deleted meanwhile (admin API): then there is
                        // nothing to record.
                        if let Some((at, record)) = self.stored(seq)? {
                            if matches!(record.state, EventState::Delivered { .. }) {
                                // Delivered twice (by an earlier forwarder still finishing, say): its
                                // place in a retention list is changed in a transaction.
                                self.record_again(seq, at, record, attempt, next)?;
                                outcomes.push(Applied::Recorded);
                                continue;
                            }
                            let mut record = record;
                            batch.remove(index_entry(seq, &record).0);
                            let was_queued = matches!(record.state, EventState::Queued { .. });
                            record_attempt(&mut record, attempt, next);
                            let is_queued = matches!(record.state, EventState::Queued { .. });
                            scheduled |= is_queued;
                            batch_queued += i64::from(is_queued) - i64::from(was_queued);
                            let (key, value) = index_entry(seq, &record);
                            batch.insert(key, value);
                            batch.insert(&seq_key(EVENT, seq)[..], event_value(&at, &record)?);
                            batched = true;
                        }
                    }
                    outcomes.push(Applied::Recorded);
                }
            }
        }
        writer.log.write().map_err(io_error)?;
        if batched {
            self.index_write(self.db.apply_batch(batch))?;
            self.add_queued(batch_queued);
            if scheduled {
                self.scheduled();
            }
        }
        Ok(outcomes)
    }

    fn settle(&self, now: bool) -> Result<Option<Duration>, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.settle_with(&mut writer, now)
    }

    fn sync_later(&self) -> Result<Option<DeferredSync>, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let sync = writer.log.sync_later().map_err(sync_error)?;
        Ok(sync.map(|sync| -> DeferredSync { Box::new(move || sync.run().map_err(sync_error)) }))
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.log.sync().map_err(sync_error)?;
        // The log is durable: whatever the index fails to take now, the next start applies again.
        let index_only = |e: StoreError| StoreError::IndexFlush(Box::new(e));
        self.settle_with(&mut writer, true).map_err(index_only)?;
        self.index_write(self.db.flush()).map_err(index_only)?;
        Ok(())
    }
}

/// Adds `attempt` to `record`'s history and moves it to the state that `next` says.
fn record_attempt(record: &mut EventRecord, attempt: AttemptRecord, next: NextStep) {
    let at_ms = attempt.at_ms;
    record.attempts.push(attempt);
    record.state = match next {
        NextStep::Delivered => EventState::Delivered { at_ms },
        NextStep::RetryAt(due_ms) => EventState::Queued { due_ms },
        NextStep::DeadLetter(reason) => EventState::Dead { reason },
    };
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn seq_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn dedup_key(source: &str, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + source.len() + event_id.len());
    k.push(DEDUP);
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(event_id.as_bytes());
    k
}

/// The older form of the purge index's entry for one mark (see the module docs).
#[cfg(test)]
fn expiry_key(expires_ms: u64, dedup_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + dedup_key.len());
    k.push(EXPIRY);
    k.extend_from_slice(&expires_ms.to_be_bytes());
    k.extend_from_slice(&dedup_key[1..]);
    k
}

fn schedule_prefix(source: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + source.len() + 16);
    k.push(SCHEDULE);
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k
}

fn schedule_key(source: &str, due_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = schedule_prefix(source);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// A failure to open the event log: a corrupt record says where it is.
fn open_error(e: std::io::Error) -> StoreError {
    let corrupt = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<log::CorruptRecord>())
        .map(|c| StoreError::CorruptLog {
            segment: c.segment.display().to_string(),
            offset: c.offset,
        });
    corrupt.unwrap_or_else(|| io_error(e))
}

/// A failure to make the event log durable.
fn sync_error(e: std::io::Error) -> StoreError {
    StoreError::Flush(Box::new(e))
}

fn retain_key(at_ms: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RETAIN;
    k[1..9].copy_from_slice(&at_ms.to_be_bytes());
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The state-index entry (key, value) of event `seq` in `record`'s state.
fn index_entry(seq: u64, record: &EventRecord) -> (Vec<u8>, Vec<u8>) {
    match &record.state {
        EventState::Queued { due_ms } => (schedule_key(&record.source, *due_ms, seq), Vec::new()),
        EventState::Dead { .. } => (seq_key(DEAD, seq).to_vec(), record.source.clone().into_bytes()),
        EventState::Delivered { at_ms } => (
            retain_key(*at_ms, seq).to_vec(),
            record.source.clone().into_bytes(),
        ),
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// The lists that hold a settled event, found by [`SledBackend::listed`] before a transaction that
/// changes it: a transaction cannot scan.
struct Listed {
    /// The `R` list with its retention entry.
    retained: Option<sled::IVec>,
    /// The `L` list with its record.
    record: Option<sled::IVec>,
}

/// Removes `record`'s state-index entry (its own, or its place in its `R` list) and its place in its
/// `L` list: the caller stores the record under its own key, or deletes it.
fn unindex(tx: &TransactionalTree, seq: u64, record: &EventRecord, listed: &Listed) -> TxResult<()> {
    tx.remove(index_entry(seq, record).0)?;
    if let Some(key) = &listed.retained {
        rewrite_list(tx, key, |value| list_without(value, seq))?;
    }
    if let Some(key) = &listed.record {
        rewrite_list(tx, key, |value| {
            record_list_without(value, |listed| listed == seq)
        })?;
    }
    Ok(())
}

/// Rewrites list `key` as `without` makes it, or removes it once that leaves it empty.
fn rewrite_list(
    tx: &TransactionalTree,
    key: &[u8],
    without: impl Fn(&[u8]) -> Result<Vec<u8>, StoreError>,
) -> TxResult<()> {
    if let Some(value) = tx.get(key)? {
        let rest = without(&value).map_err(ConflictableTransactionError::Abort)?;
        if rest.is_empty() {
            tx.remove(key)?;
        } else {
            tx.insert(key, rest)?;
        }
    }
    Ok(())
}

/// An `R` list's value without event `seq`.
fn list_without(value: &[u8], seq: u64) -> Result<Vec<u8>, StoreError> {
    let mut rest = Vec::with_capacity(value.len());
    for (listed, at_ms, source) in retained_list(value)? {
        if listed != seq {
            put_retained(&mut rest, listed, at_ms, source);
        }
    }
    Ok(rest)
}

/// Writes `record` (whose log record is at `at`) and its state-index entry.
fn store_record(tx: &TransactionalTree, seq: u64, at: &RecordRef, record: &EventRecord) -> TxResult<()> {
    let (key, value) = index_entry(seq, record);
    tx.insert(key, value)?;
    let value = event_value(at, record).map_err(ConflictableTransactionError::Abort)?;
    tx.insert(&seq_key(EVENT, seq)[..], value)?;
    Ok(())
}

/// Reads and decodes event `seq` inside a transaction: under its own key, or else in its `L` list.
fn tx_record(
    tx: &TransactionalTree,
    seq: u64,
    listed: &Listed,
) -> TxResult<Option<(RecordRef, EventRecord)>> {
    let abort = ConflictableTransactionError::Abort;
    if let Some(value) = tx.get(seq_key(EVENT, seq))? {
        return decode_stored(&value).map(Some).map_err(abort);
    }
    let Some(list) = listed
        .record
        .as_ref()
        .map(|key| tx.get(key))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    let record = listed_record(&list, seq).map_err(abort)?;
    record.map(decode_stored).transpose().map_err(abort)
}

/// Removes event `seq` (record and state index) inside a transaction. Its body stays in its log
/// segment until the segment holds no event any more; the caller counts the removal once the
/// transaction has committed.
fn tx_delete(tx: &TransactionalTree, seq: u64, record: &EventRecord, listed: &Listed) -> TxResult<()> {
    unindex(tx, seq, record, listed)?;
    tx.remove(&seq_key(EVENT, seq)[..])?;
    Ok(())
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn encode(record: &EventRecord) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(record).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// An `e` value: where the event's log record is, then the record.
fn event_value(at: &RecordRef, record: &EventRecord) -> Result<Vec<u8>, StoreError> {
    let mut value = at.encode().to_vec();
    value.extend_from_slice(&encode(record)?);
    Ok(value)
}

/// The record in an `e` value.
fn decode(value: &[u8]) -> Result<EventRecord, StoreError> {
    Ok(decode_stored(value)?.1)
}

/// The log position and the record in an `e` value.
fn decode_stored(value: &[u8]) -> Result<(RecordRef, EventRecord), StoreError> {
    let at = RecordRef::decode(value).ok_or(StoreError::Corrupt { what: "event" })?;
    let record = postcard::from_bytes(&value[RecordRef::ENCODED..])
        .map_err(|_| StoreError::Corrupt { what: "event" })?;
    Ok((at, record))
}

/// Opens sled's tree in `dir`. sled locks it, and a store closed a moment ago in this process (a
/// restart in place, as the tests do) keeps the lock until sled's I/O threads have ended their last
/// write; so a held lock is waited for, up to [`LOCK_WAIT`], before the open fails.
fn open_index(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Accepts are made durable by the event log; this bounds the loss window of forwarder
            // updates (an update lost in a crash only means a delivery is attempted again).
            .flush_every_ms(Some(SLED_FLUSH_MS))
            .open();
        match opened {
            // sled 0.34 says so only in the message.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(StoreError::Locked {
                    path: dir.parent().unwrap_or(dir).display().to_string(),
                })
            }
            opened => return opened.map_err(backend),
        }
    }
}

impl SledBackend {
    /// Opens the store in `path`: the tree in `index/`, the event log in `log/`. Re-applies the log
    /// records after the checkpoint whose batch the tree lost in a crash.
    pub(super) fn open(path: &Path, segment_bytes: u64, cache_bytes: u64) -> Result<Self, StoreError> {
        if path.join("db").exists() && !path.join("index").exists() {
            return Err(StoreError::OldFormat {
                path: path.display().to_string(),
            });
        }
        let db = open_index(&path.join("index"), cache_bytes)?;
        let from = match db.get(CHECKPOINT).map_err(backend)? {
            Some(at) => Position::decode(&at).ok_or(StoreError::Corrupt {
                what: "log checkpoint",
            })?,
            None => Position {
                segment: 0,
                offset: 0,
            },
        };
        let log_dir = path.join("log");
        // Re-apply, in one batch, the records whose mark the tree lacks (their bodies stay in the log).
        let mut batch = sled::Batch::default();
        let mut recovered_marks = Vec::new();
        let mut claimed = HashSet::new();
        let mut last_seq = None;
        let mut failed = None;
        let mut visit = |at: RecordRef, payload: &[u8]| {
            let result = Logged::decode(payload).and_then(|logged| {
                last_seq = last_seq.max(Some(logged.seq));
                let lost = db.get(logged.dedup).map_err(backend)?.is_none();
                if lost && claimed.insert(logged.dedup.to_vec()) {
                    logged.apply_to(at, &mut batch);
                    recovered_marks.push((logged.seq, logged.expires_ms, logged.dedup.to_vec()));
                }
                Ok(())
            });
            if let Err(e) = result {
                failed.get_or_insert(e);
            }
        };
        let log = LogWriter::open(&log_dir, from, segment_bytes, &mut visit).map_err(open_error)?;
        if let Some(e) = failed {
            return Err(e);
        }
        let mut lists = Lists::default();
        for (seq, expires_ms, dedup) in &recovered_marks {
            lists
                .expiries
                .add(*expires_ms, (*seq, *expires_ms, dedup.as_slice()));
        }
        lists.insert_into(&mut batch);
        db.apply_batch(batch).map_err(backend)?;
        let next_seq = match db.get(NEXT_SEQ).map_err(backend)? {
            Some(n) => read_u64(&n).ok_or(StoreError::Corrupt {
                what: "next sequence number",
            })?,
            // A new store starts at 1; one written before `n` existed goes on from sled's id
            // generator, which is past every number it gave.
            None if db.is_empty() => 1,
            None => db.generate_id().map_err(backend)?.max(1),
        };
        let next_seq = next_seq.max(last_seq.map_or(0, |last| last + 1));
        db.insert(NEXT_SEQ, &next_seq.to_be_bytes()[..])
            .map_err(backend)?;
        db.insert(CHECKPOINT, &log.position().encode()[..])
            .map_err(backend)?;
        db.flush().map_err(backend)?;
        if !recovered_marks.is_empty() {
            tracing::warn!(
                events = recovered_marks.len(),
                "recovered accepted events from the event log"
            );
        }
        let segments = SegmentCounts::default();
        for item in db.scan_prefix([EVENT]).values() {
            let value = item.map_err(backend)?;
            let at = RecordRef::decode(&value).ok_or(StoreError::Corrupt { what: "event" })?;
            segments.added(&[at.at.segment]);
        }
        let mut list_from = 0;
        for item in db.scan_prefix([RECORD_LIST]).values() {
            for (seq, value) in record_list(&item.map_err(backend)?)? {
                let at = RecordRef::decode(value).ok_or(StoreError::Corrupt { what: "event" })?;
                segments.added(&[at.at.segment]);
                list_from = list_from.max(seq + 1);
            }
        }
        let place = Place::record(&[path, &path.join("index"), &log_dir]).map_err(io_error)?;
        // Every queued event has one schedule entry (and nothing is fresh yet).
        let queued = db.scan_prefix([SCHEDULE]).keys().count() as u64;
        Ok(Self {
            db,
            place,
            gone: AtomicBool::new(false),
            index_failed: Mutex::new(None),
            next_seq: AtomicU64::new(next_seq),
            queued: AtomicU64::new(queued),
            segments,
            list_from: AtomicU64::new(list_from),
            fresh: RwLock::default(),
            settle_age: SETTLE_AGE,
            hold: Hold::DEFAULT,
            schedule_writes: AtomicU64::new(0),
            empty_schedules: Mutex::default(),
            log: LogReader::new(&log_dir),
            log_health: log.health(),
            writer: Mutex::new(Writer {
                log,
                settled_at: None,
            }),
        })
    }

    /// How many events are queued now (see the field).
    pub(super) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Counts an event that was queued or not (`was`) and is queued or not now (`is`).
    fn count_queued(&self, was: bool, is: bool) {
        self.add_queued(i64::from(is) - i64::from(was));
    }

    fn add_queued(&self, delta: i64) {
        // Only the commit thread writes, so load-then-store cannot lose an update; saturating, so
        // that a bug cannot wrap the count round to "full".
        let now = self.queued.load(Ordering::Relaxed);
        self.queued
            .store(now.saturating_add_signed(delta), Ordering::Relaxed);
    }

    /// Says that schedule entries were just added to the tree (call it after the write).
    fn scheduled(&self) {
        self.schedule_writes.fetch_add(1, Ordering::Release);
    }

    fn fresh(&self) -> RwLockReadGuard<'_, Fresh> {
        self.fresh.read().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh_mut(&self) -> RwLockWriteGuard<'_, Fresh> {
        self.fresh.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the tree writes of the fresh events that have waited [`SETTLE_AGE`] (every one if `now`
    /// or if they are many; see [`Hold`] for those still queued), in their current state, at most
    /// every [`SETTLE_EVERY`], in batches of at most [`SETTLE_BATCH`] events; records the checkpoint
    /// with each. Returns how long until it should be called again, if events are left. Only the
    /// commit thread calls it.
    fn settle_with(&self, writer: &mut Writer, now: bool) -> Result<Option<Duration>, StoreError> {
        // An event settles once its log record is durable: sled persists in the background, and a tree
        // that held a mark whose record a crash then lost would answer the sender's retry "duplicate"
        // for an event stored nowhere. On the commit thread's schedule, the records in the sync that
        // is under way wait for the next settle; when everything must settle now, the log is synced
        // here (unless a sync failed: then the events it held stay out of the tree, and reads see the
        // rest).
        if now && !writer.log.has_failed() {
            writer.log.sync().map_err(sync_error)?;
        }
        let all = {
            let fresh = self.fresh();
            if fresh.events.is_empty() {
                return Ok(None);
            }
            let since = writer.settled_at.get_or_insert_with(Instant::now).elapsed();
            let all = now || fresh.events.len() >= SETTLE_EVENTS || fresh.bytes >= SETTLE_BYTES;
            if !all && since < SETTLE_EVERY {
                return Ok(Some(SETTLE_EVERY - since));
            }
            all
        };
        // When everything settles, batch after batch; else one batch, and the rest at the next call.
        while self.settle_batch(writer, all)? && all {}
        writer.settled_at = Some(Instant::now());
        Ok((!self.fresh().events.is_empty()).then_some(SETTLE_EVERY))
    }

    /// Applies one batch of at most [`SETTLE_BATCH`] fresh events that are ready to settle (every
    /// durable one if `all`), oldest first, with the checkpoint; returns whether more are ready.
    fn settle_batch(&self, writer: &Writer, all: bool) -> Result<bool, StoreError> {
        let Some((settled, more)) = self.apply_settling(writer, all)? else {
            return Ok(false);
        };
        self.forget_settled(settled);
        Ok(more)
    }

    /// The first half of [`Self::settle_batch`]: applies the batch to the tree and returns the events
    /// it holds, which are still fresh too (readers find them in memory until then), and whether more
    /// are ready; `None` if none was.
    fn apply_settling(&self, writer: &Writer, all: bool) -> Result<Option<(Vec<u64>, bool)>, StoreError> {
        let mut batch = sled::Batch::default();
        let (settled, checkpoint, scheduled, more, list_from) = {
            let fresh = self.fresh();
            let mut settled = Vec::new();
            let (mut scheduled, mut more) = (false, false);
            // Every record before this position has its writes in this batch or an earlier one: the
            // log holds every fresh event's record (the commit thread writes the log before it
            // settles), and those that stay fresh are at or after it.
            let mut checkpoint = writer.log.position();
            let mut lists = Lists {
                list_from: self.list_from.load(Ordering::Relaxed),
                ..Lists::default()
            };
            // How far the queued events past the settle age are over the hold's bound: the oldest
            // of them settle until they are within it (only queued events hold their body).
            let now_at = Instant::now();
            let age = |event: &FreshEvent| now_at.saturating_duration_since(event.accepted);
            let (mut queued, mut bytes) = (0, fresh.bytes);
            for event in fresh.events.values() {
                queued += usize::from(event.is_queued() && age(event) >= self.settle_age);
            }
            for (&seq, event) in &fresh.events {
                let age = age(event);
                let ready = writer.log.is_durable(event.write)
                    && (all
                        || age >= self.settle_age
                            && (!event.is_queued()
                                || age >= self.hold.age
                                || queued > self.hold.events
                                || bytes > self.hold.bytes));
                if ready && settled.len() < SETTLE_BATCH {
                    if event.is_queued() {
                        queued = queued.saturating_sub(1);
                        bytes = bytes.saturating_sub(event.body.as_ref().map_or(0, |body| body.len()));
                    }
                    event.apply_to(seq, &mut batch, &mut lists)?;
                    settled.push(seq);
                    scheduled |= event.is_queued();
                } else {
                    more |= ready;
                    checkpoint = checkpoint.min(event.at.at);
                }
            }
            if settled.is_empty() {
                return Ok(None);
            }
            lists.insert_into(&mut batch);
            (settled, checkpoint, scheduled, more, lists.list_from)
        };
        batch.insert(&CHECKPOINT[..], &checkpoint.encode()[..]);
        // Past every event in the log, so past every one this batch settles (see "Sequence numbers").
        batch.insert(
            &NEXT_SEQ[..],
            &self.next_seq.load(Ordering::Relaxed).to_be_bytes()[..],
        );
        self.index_write(self.db.apply_batch(batch))?;
        self.list_from.store(list_from, Ordering::Relaxed);
        if scheduled {
            self.scheduled();
        }
        Ok(Some((settled, more)))
    }

    /// The second half of [`Self::settle_batch`]: lets go of the events the tree now holds.
    fn forget_settled(&self, settled: Vec<u64>) {
        let mut fresh = self.fresh_mut();
        for seq in settled {
            if let Some(event) = fresh.events.remove(&seq) {
                fresh.bytes -= event.body.map_or(0, |body| body.len());
                // Unless a later copy, accepted once this one's mark expired, holds it now.
                if fresh.marks.get(&event.dedup).is_some_and(|&(_, s)| s == seq) {
                    fresh.marks.remove(&event.dedup);
                }
            }
        }
    }

    /// Removes the log segments that no stored event refers to any more, older than the checkpoint;
    /// returns how many.
    pub(super) fn collect_segments(&self) -> Result<usize, StoreError> {
        let Some(checkpoint) = self
            .db
            .get(CHECKPOINT)
            .map_err(backend)?
            .and_then(|at| Position::decode(&at))
        else {
            return Ok(0);
        };
        let unused: Vec<u64> = log::segments(self.log.dir())
            .map_err(io_error)?
            .into_iter()
            .take_while(|&segment| segment < checkpoint.segment)
            .filter(|&segment| self.segments.holds(segment) == 0)
            .collect();
        if unused.is_empty() {
            return Ok(0);
        }
        // The deletions that emptied these segments must be durable before the segments go, and so
        // must the checkpoint past them (the log is never read before it).
        self.db.flush().map_err(backend)?;
        for &segment in &unused {
            self.log.remove(segment).map_err(io_error)?;
        }
        Ok(unused.len())
    }

    /// This backend with fresh events, queued or not, waiting `age` before they settle.
    #[cfg(test)]
    pub(super) fn settling_after(mut self, age: Duration) -> Self {
        self.settle_age = age;
        self.hold.age = age;
        self
    }

    /// This backend with fresh events waiting `age` before they settle, and those still queued up to
    /// `queued_age` while at most `events` of them, holding at most `bytes` of bodies, wait past `age`.
    #[cfg(test)]
    pub(super) fn holding_queued(
        mut self,
        age: Duration,
        queued_age: Duration,
        events: usize,
        bytes: usize,
    ) -> Self {
        self.settle_age = age;
        self.hold = Hold {
            age: queued_age,
            events,
            bytes,
        };
        self
    }

    /// How many accepted events wait to be settled.
    #[cfg(test)]
    pub(super) fn fresh_events(&self) -> usize {
        self.fresh().events.len()
    }

    /// Applies the fresh events (at most [`SETTLE_BATCH`]) to the tree but keeps them fresh as well:
    /// the moment inside a settle when they are in both.
    #[cfg(test)]
    pub(super) fn settle_halfway(&self) {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.log.sync().expect("sync");
        let (_, more) = self
            .apply_settling(&writer, true)
            .expect("apply")
            .expect("fresh events");
        assert!(!more, "at most SETTLE_BATCH fresh events");
    }

    /// The sequence numbers of the accepted events that wait to be settled.
    #[cfg(test)]
    pub(super) fn fresh_seqs(&self) -> Vec<u64> {
        self.fresh().events.keys().copied().collect()
    }

    /// How many body bytes the fresh events hold in memory.
    #[cfg(test)]
    pub(super) fn fresh_bytes(&self) -> usize {
        self.fresh().bytes
    }

    /// Writes a dedup mark for `source`/`event_id` with the older form of its purge index entry, as a
    /// store written before the expiry lists holds it.
    #[cfg(test)]
    pub(super) fn insert_mark_in_older_form(&self, source: &str, event_id: &str, expires_ms: u64) {
        let dedup = dedup_key(source, event_id);
        let mark = mark_value(expires_ms, 0);
        self.db
            .insert(expiry_key(expires_ms, &dedup), &[][..])
            .expect("insert");
        self.db.insert(dedup, &mark[..]).expect("insert");
    }

    /// How many `T` lists the purge index holds.
    #[cfg(test)]
    pub(super) fn expiry_lists(&self) -> usize {
        self.db.scan_prefix([EXPIRY_LIST]).count()
    }

    /// Makes the event log's next sync fail, as a disk error would.
    #[cfg(test)]
    pub(super) fn fail_next_log_sync(&self) {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log
            .fail_next_sync();
    }

    /// Whether the log holds appended records that are not durable yet.
    #[cfg(test)]
    pub(super) fn log_is_dirty(&self) -> bool {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log
            .is_dirty()
    }

    /// How many `L` lists there are, and how many events they and the `e` entries hold.
    #[cfg(test)]
    pub(super) fn record_index(&self) -> (usize, usize, usize) {
        let (mut lists, mut listed) = (0, 0);
        for item in self.db.scan_prefix([RECORD_LIST]).values() {
            lists += 1;
            listed += record_list(&item.expect("list")).expect("list").len();
        }
        (lists, listed, self.db.scan_prefix([EVENT]).count())
    }

    /// How many `R` lists and `r` entries the retention index holds.
    #[cfg(test)]
    pub(super) fn retention_index(&self) -> (usize, usize) {
        let lists = self.db.scan_prefix([RETAIN_LIST]).count();
        (lists, self.db.scan_prefix([RETAIN]).count())
    }

    /// Persists the tree as it is (without settling) and the log: what a crash would leave on disk.
    #[cfg(test)]
    pub(super) fn persist_unsettled(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.log.sync().map_err(io_error)
    }

    /// See [`crate::store::Store::readiness`].
    pub(super) fn readiness(&self) -> Result<(), crate::store::NotReady> {
        use crate::store::NotReady;
        if self.log_health.has_failed() {
            return Err(NotReady::SyncFailed);
        }
        if let Some(running) = self.log_health.syncing_for().filter(|&t| t >= STALLED_SYNC) {
            return Err(NotReady::SyncStalled(running));
        }
        self.check_place().map_err(NotReady::Gone)?;
        if let Some(why) = self
            .index_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(NotReady::IndexFailed(why));
        }
        self.log_health
            .check_room()
            .map_err(|e| NotReady::NoRoom(e.to_string()))?;
        self.db.get([0xff]).map_err(|_| NotReady::Unresponsive)?;
        Ok(())
    }

    /// Whether the store's directories and the log's segment are still the ones opened; logs the
    /// change when they go, or come back.
    fn check_place(&self) -> Result<(), Moved> {
        let checked = self.place.check().and_then(|()| self.log_health.check_segment());
        match &checked {
            Err(moved) if !self.gone.swap(true, Ordering::AcqRel) => tracing::error!(
                error = %moved,
                "the store's files are gone or replaced: every event is answered 503 until they are back; \
                 events accepted before are delivered from the files still open, but what is not \
                 delivered when hookgate stops is lost"
            ),
            Ok(()) if self.gone.swap(false, Ordering::AcqRel) => {
                tracing::warn!("the store's files are back where they were: accepting events again")
            }
            _ => {}
        }
        checked
    }

    /// Why the tree failed to write, once it has.
    fn index_failed(&self) -> Option<String> {
        self.index_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A write to the tree (a batch, a flush): a failure is kept for readiness, since sled takes no
    /// more writes after an I/O error until it is opened again.
    fn index_write<T>(&self, result: sled::Result<T>) -> Result<T, StoreError> {
        result.map_err(|e| {
            if matches!(e, sled::Error::Io(_)) {
                let mut failed = self.index_failed.lock().unwrap_or_else(|e| e.into_inner());
                if failed.is_none() {
                    tracing::error!(error = %e, "the index failed to write: sled takes no more writes until hookgate restarts (accepted events are kept in the event log)");
                    *failed = Some(e.to_string());
                }
            }
            backend(e)
        })
    }

    /// Encodes `event`'s accept write (done by the request's task, off the commit thread).
    pub(super) fn prepare_accept(
        &self,
        event: &NewEvent<'_>,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<AcceptWrite, StoreError> {
        let dedup = dedup_key(event.source, event.event_id);
        // The sequence number is taken on the commit thread (see `AcceptWrite::number`): sled's id
        // generator waits for any batch being applied, and a request's task must not.
        let seq = 0;
        let record = EventRecord {
            source: event.source.to_owned(),
            event_id: event.event_id.to_owned(),
            received_at_ms: now_ms,
            method: event.method.to_owned(),
            query: event.query.map(str::to_owned),
            headers: event.headers.clone(),
            verified: event.verified,
            state: EventState::Queued { due_ms: now_ms },
            attempts: Vec::new(),
        };
        let encoded = encode(&record)?;
        let schedule = schedule_key(event.source, now_ms, seq);
        let head = Logged {
            seq,
            expires_ms,
            dedup: &dedup,
            schedule: &schedule,
            record: &encoded,
            body: event.body.as_ref(),
        }
        .encode_head();
        Ok(AcceptWrite {
            now_ms,
            seq,
            expires_ms,
            dedup,
            head,
            body: event.body.clone(),
            record,
            duplicate_only: false,
        })
    }

    pub(super) fn due(
        &self,
        source: &str,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<DueBatch, StoreError> {
        let prefix = schedule_prefix(source);
        let mut batch = DueBatch::default();
        // The fresh events first: one that is settled meanwhile is then also found in the tree.
        let mut fresh_due = Vec::new();
        for (&seq, event) in &self.fresh().events {
            if let EventState::Queued { due_ms } = event.record.state {
                // Only what is durable reaches the app: an event whose log record is still in its
                // group's sync may yet be lost (a crash, a failed sync), and its sender, answered 503
                // or not at all, sends it again. The accept wakes the forwarder once it is durable.
                if event.record.source != source || !self.log_health.is_durable(event.write) {
                    continue;
                }
                if due_ms > now_ms {
                    batch.next_due_ms = Some(batch.next_due_ms.map_or(due_ms, |n| n.min(due_ms)));
                } else if !skip(seq) {
                    fresh_due.push(Due { seq, due_ms });
                }
            }
        }
        let fresh_next = batch.next_due_ms.take();
        // Read before the tree: a schedule entry written after this is also counted after it.
        let writes = self.schedule_writes.load(Ordering::Acquire);
        let known_empty = self
            .empty_schedules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(source)
            == Some(&writes);
        // (`schedule_known_empty` is the same test, for callers that choose a thread by it.)
        if !known_empty {
            let mut entries = self.db.scan_prefix(&prefix).keys().peekable();
            if entries.peek().is_none() {
                self.empty_schedules
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(source.to_owned(), writes);
            }
            for item in entries {
                let key = item.map_err(backend)?;
                let rest = &key[prefix.len()..];
                let (Some(due_ms), Some(seq)) = (read_u64(rest), rest.get(8..).and_then(read_u64)) else {
                    return Err(StoreError::Corrupt { what: "schedule" });
                };
                if due_ms > now_ms {
                    batch.next_due_ms = Some(due_ms);
                    break;
                }
                if skip(seq) {
                    continue;
                }
                if batch.due.len() == limit {
                    break;
                }
                batch.due.push(Due { seq, due_ms });
            }
        }
        if let Some(next) = fresh_next {
            batch.next_due_ms = Some(batch.next_due_ms.map_or(next, |n| n.min(next)));
        }
        if !fresh_due.is_empty() {
            let in_tree: HashSet<u64> = batch.due.iter().map(|d| d.seq).collect();
            batch
                .due
                .extend(fresh_due.into_iter().filter(|d| !in_tree.contains(&d.seq)));
            batch.due.sort_unstable_by_key(|d| (d.due_ms, d.seq));
            batch.due.truncate(limit);
        }
        Ok(batch)
    }

    /// Whether `due` would find `source`'s schedule empty in the tree without reading it.
    pub(super) fn schedule_known_empty(&self, source: &str) -> bool {
        let writes = self.schedule_writes.load(Ordering::Acquire);
        self.empty_schedules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(source)
            == Some(&writes)
    }

    /// Event `seq` if it is fresh and still holds its body: what `load` answers without a read.
    pub(super) fn load_from_memory(&self, seq: u64) -> Option<(EventRecord, bytes::Bytes)> {
        match self.fresh().events.get(&seq) {
            Some(FreshEvent {
                record,
                body: Some(body),
                ..
            }) => Some((record.clone(), body.clone())),
            _ => None,
        }
    }

    pub(super) fn load(&self, seq: u64) -> Result<Option<(EventRecord, bytes::Bytes)>, StoreError> {
        // Delivered or dead fresh events have released their body: the log has it.
        let released = match self.fresh().events.get(&seq) {
            Some(FreshEvent {
                record,
                body: Some(body),
                ..
            }) => return Ok(Some((record.clone(), body.clone()))),
            Some(event) => Some((event.at, event.record.clone())),
            None => None,
        };
        let (at, record) = match released {
            Some(released) => released,
            None => match self.stored(seq)? {
                Some(stored) => stored,
                None => return Ok(None),
            },
        };
        let payload = bytes::Bytes::from(self.log.read(at).map_err(io_error)?);
        // The body is the payload's tail: share it rather than copy it.
        let body_at = payload.len() - Logged::decode(&payload)?.body.len();
        Ok(Some((record, payload.slice(body_at..))))
    }

    /// The lists that hold event `seq` (read before a transaction that changes the event: the commit
    /// thread, sled's only writer, runs both).
    fn listed(&self, seq: u64) -> Result<Listed, StoreError> {
        Ok(Listed {
            retained: self.retaining_list(seq)?,
            record: self.record_list_of(seq)?.map(|(key, _)| key),
        })
    }

    /// The key of the `R` list that holds event `seq`, if one does. The lists of a second are keyed by
    /// their first sequence number, and a settling batch lists its events in order, so the list that
    /// holds `seq` is almost always the last one before it.
    fn retaining_list(&self, seq: u64) -> Result<Option<sled::IVec>, StoreError> {
        let Some(EventState::Delivered { at_ms }) = self.record(seq)?.map(|r| r.state) else {
            return Ok(None);
        };
        let second = at_ms / 1000;
        let lists = self
            .db
            .range(retain_list_key(second, 0)..=retain_list_key(second, seq));
        for item in lists.rev() {
            let (key, value) = item.map_err(backend)?;
            if retained_list(&value)?.iter().any(|&(listed, _, _)| listed == seq) {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// Records an attempt on event `seq`, already delivered, at once and in a transaction.
    fn record_again(
        &self,
        seq: u64,
        at: RecordRef,
        record: EventRecord,
        attempt: AttemptRecord,
        next: NextStep,
    ) -> Result<(), StoreError> {
        let listed = self.listed(seq)?;
        self.db
            .transaction(|tx| {
                unindex(tx, seq, &record, &listed)?;
                let mut record = record.clone();
                record_attempt(&mut record, attempt.clone(), next.clone());
                store_record(tx, seq, &at, &record)
            })
            .map_err(tx_error)?;
        if let NextStep::RetryAt(_) = next {
            // From delivered back to queued.
            self.count_queued(false, true);
            self.scheduled();
        }
        Ok(())
    }

    /// Puts event `seq` back in the queue, due at `now_ms`; returns its source, or `None` if it is
    /// not stored.
    pub(super) fn replay(&self, seq: u64, now_ms: u64) -> Result<Option<String>, StoreError> {
        let listed = self.listed(seq)?;
        let replayed = self
            .db
            .transaction(|tx| {
                let Some((at, mut record)) = tx_record(tx, seq, &listed)? else {
                    return Ok(None);
                };
                unindex(tx, seq, &record, &listed)?;
                let was_queued = matches!(record.state, EventState::Queued { .. });
                record.state = EventState::Queued { due_ms: now_ms };
                store_record(tx, seq, &at, &record)?;
                Ok(Some((record.source, was_queued)))
            })
            .map_err(tx_error)?;
        self.scheduled();
        Ok(replayed.map(|(source, was_queued)| {
            self.count_queued(was_queued, true);
            source
        }))
    }

    pub(super) fn delete(&self, seq: u64) -> Result<bool, StoreError> {
        self.delete_where(seq, |_| true)
    }

    /// Deletes event `seq` only if it is (still) in `state`.
    pub(super) fn delete_if(&self, seq: u64, state: StateFilter) -> Result<bool, StoreError> {
        self.delete_where(seq, |r| r.state.filter() == state)
    }

    fn delete_where(&self, seq: u64, keep_unless: impl Fn(&EventRecord) -> bool) -> Result<bool, StoreError> {
        let listed = self.listed(seq)?;
        let deleted = self
            .db
            .transaction(|tx| {
                let Some((at, record)) = tx_record(tx, seq, &listed)? else {
                    return Ok(None);
                };
                if !keep_unless(&record) {
                    return Ok(None);
                }
                tx_delete(tx, seq, &record, &listed)?;
                Ok(Some((at, matches!(record.state, EventState::Queued { .. }))))
            })
            .map_err(tx_error)?;
        if let Some((at, was_queued)) = deleted {
            self.segments.removed(&[at.at.segment]);
            self.count_queued(was_queued, false);
        }
        Ok(deleted.is_some())
    }

    /// Removes delivered events delivered before `older_than_ms`, in one batch (run by the commit
    /// thread, sled's only writer, so that what is read here stays true until the batch): those of at
    /// most `limit` entries of the retention index, or of whole lists. Returns how many it removed.
    pub(super) fn purge_delivered(&self, older_than_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut segments = Vec::new();
        let mut seen = 0;
        // The records to take out of each `L` list: the list as read, and their sequence numbers.
        let mut unlisted: HashMap<sled::IVec, (sled::IVec, HashSet<u64>)> = HashMap::new();
        let mut remove = |batch: &mut sled::Batch, seq: u64, at_ms: u64| -> Result<(), StoreError> {
            let own = self.db.get(seq_key(EVENT, seq)).map_err(backend)?;
            let list = if own.is_none() {
                self.record_list_of(seq)?
            } else {
                None
            };
            let value = match (&own, &list) {
                (Some(value), _) => Some(&value[..]),
                (None, Some((_, list))) => listed_record(list, seq)?,
                (None, None) => None,
            };
            let Some((at, record)) = value.map(decode_stored).transpose()? else {
                return Ok(());
            };
            // Replayed since it was delivered: queued again, it stays (only the stale entry goes).
            if record.state != (EventState::Delivered { at_ms }) {
                return Ok(());
            }
            match list {
                Some((key, list)) => {
                    unlisted
                        .entry(key)
                        .or_insert_with(|| (list, HashSet::new()))
                        .1
                        .insert(seq);
                }
                None => batch.remove(&seq_key(EVENT, seq)[..]),
            }
            segments.push(at.at.segment);
            Ok(())
        };
        for item in self.db.scan_prefix([RETAIN]).keys().take(limit) {
            let key = item.map_err(backend)?;
            let (Some(at_ms), Some(seq)) = (read_u64(&key[1..]), key.get(9..).and_then(read_u64)) else {
                return Err(StoreError::Corrupt {
                    what: "retention index",
                });
            };
            if at_ms >= older_than_ms {
                break;
            }
            batch.remove(&key);
            remove(&mut batch, seq, at_ms)?;
            seen += 1;
        }
        // A list goes whole once its second has passed.
        for item in self.db.scan_prefix([RETAIN_LIST]) {
            if seen >= limit {
                break;
            }
            let (key, value) = item.map_err(backend)?;
            let Some(second) = read_u64(&key[1..]) else {
                return Err(StoreError::Corrupt {
                    what: "retention list",
                });
            };
            if second.saturating_add(1).saturating_mul(1000) > older_than_ms {
                break;
            }
            for (seq, at_ms, _) in retained_list(&value)? {
                remove(&mut batch, seq, at_ms)?;
                seen += 1;
            }
            batch.remove(&key);
        }
        for (key, (list, seqs)) in unlisted {
            let rest = record_list_without(&list, |seq| seqs.contains(&seq))?;
            if rest.is_empty() {
                batch.remove(key);
            } else {
                batch.insert(key, rest);
            }
        }
        self.db.apply_batch(batch).map_err(backend)?;
        self.segments.removed(&segments);
        Ok(segments.len())
    }

    /// Event `seq`'s log position and record: under its own key, or else in a record list.
    fn stored(&self, seq: u64) -> Result<Option<(RecordRef, EventRecord)>, StoreError> {
        if let Some(value) = self.db.get(seq_key(EVENT, seq)).map_err(backend)? {
            return decode_stored(&value).map(Some);
        }
        match self.record_list_of(seq)? {
            Some((_, list)) => listed_record(&list, seq)?.map(decode_stored).transpose(),
            None => Ok(None),
        }
    }

    /// Event `seq`'s record without its body.
    fn record(&self, seq: u64) -> Result<Option<EventRecord>, StoreError> {
        Ok(self.stored(seq)?.map(|(_, record)| record))
    }

    /// The `L` list (key and value) that holds event `seq`'s record, if one does: lists never overlap,
    /// so only the last one that starts at or before `seq` can.
    fn record_list_of(&self, seq: u64) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        let mut lists = self.db.range(seq_key(RECORD_LIST, 0)..=seq_key(RECORD_LIST, seq));
        let Some(item) = lists.next_back() else {
            return Ok(None);
        };
        let (key, list) = item.map_err(backend)?;
        Ok(listed_record(&list, seq)?.is_some().then_some((key, list)))
    }

    /// Sequence numbers of the events in `state` (of `source`, where the index tells it cheaply).
    fn indexed(&self, state: StateFilter, source: Option<&str>) -> Result<Vec<u64>, StoreError> {
        let mut seqs = Vec::new();
        match state {
            StateFilter::Queued => {
                let prefix = source.map_or_else(|| vec![SCHEDULE], schedule_prefix);
                for item in self.db.scan_prefix(&prefix).keys() {
                    let key = item.map_err(backend)?;
                    let seq = key
                        .len()
                        .checked_sub(8)
                        .and_then(|at| read_u64(&key[at..]))
                        .ok_or(StoreError::Corrupt { what: "schedule" })?;
                    seqs.push(seq);
                }
            }
            StateFilter::Dead | StateFilter::Delivered => {
                let (prefix, seq_at) = if state == StateFilter::Dead {
                    (DEAD, 1)
                } else {
                    (RETAIN, 9)
                };
                for item in self.db.scan_prefix([prefix]) {
                    let (key, value) = item.map_err(backend)?;
                    let seq = key
                        .get(seq_at..)
                        .and_then(read_u64)
                        .ok_or(StoreError::Corrupt { what: "state index" })?;
                    // An empty value (older dead letters) names no source: the record decides.
                    if let Some(source) = source {
                        if !value.is_empty() && *value != *source.as_bytes() {
                            continue;
                        }
                    }
                    seqs.push(seq);
                }
                if state == StateFilter::Delivered {
                    self.each_listed(|seq, listed| {
                        if source.is_none_or(|source| listed == source.as_bytes()) {
                            seqs.push(seq);
                        }
                    })?;
                }
            }
        }
        Ok(seqs)
    }

    /// Calls `f` with the sequence number and source of every event in the retention lists.
    fn each_listed(&self, mut f: impl FnMut(u64, &[u8])) -> Result<(), StoreError> {
        for item in self.db.scan_prefix([RETAIN_LIST]).values() {
            for (seq, _, source) in retained_list(&item.map_err(backend)?)? {
                f(seq, source);
            }
        }
        Ok(())
    }

    pub(super) fn list(&self, query: &EventQuery) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        let mut out = Vec::new();
        if query.limit == 0 {
            return Ok(out);
        }
        let mut take = |seq: u64, record: EventRecord| -> bool {
            if let Some(since) = query.since_ms {
                if record.received_at_ms.saturating_add(SINCE_SLACK_MS) < since {
                    return false;
                }
            }
            if query.matches(&record) {
                out.push((seq, record));
            }
            out.len() < query.limit
        };
        match query.state {
            Some(state) => {
                let mut seqs = self.indexed(state, query.source.as_deref())?;
                seqs.sort_unstable_by(|a, b| b.cmp(a));
                seqs.dedup();
                for seq in seqs {
                    let Some(record) = self.record(seq)? else { continue };
                    if record.state.filter() != state {
                        continue;
                    }
                    if !take(seq, record) {
                        break;
                    }
                }
            }
            None => {
                // Newest first: the events under their own keys and those in record lists, merged.
                let mut own = self.db.scan_prefix([EVENT]).rev();
                let mut next_own = || -> Result<Option<(u64, sled::IVec)>, StoreError> {
                    let Some(item) = own.next() else { return Ok(None) };
                    let (key, value) = item.map_err(backend)?;
                    let seq = read_u64(&key[1..]).ok_or(StoreError::Corrupt { what: "event key" })?;
                    Ok(Some((seq, value)))
                };
                let mut lists = self.db.scan_prefix([RECORD_LIST]).rev();
                let mut own_head = next_own()?;
                // The records of the list being read, oldest first: the next one is the last.
                let mut listed: Vec<(u64, EventRecord)> = Vec::new();
                loop {
                    if listed.is_empty() {
                        if let Some(item) = lists.next() {
                            let list = item.map_err(backend)?.1;
                            for (seq, value) in record_list(&list)? {
                                listed.push((seq, decode(value)?));
                            }
                            continue;
                        }
                    }
                    let take_own = match (&own_head, listed.last()) {
                        (None, None) => break,
                        (Some((own_seq, _)), Some((listed_seq, _))) => own_seq > listed_seq,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                    };
                    let (seq, record) = if take_own {
                        let Some((seq, value)) = own_head.take() else {
                            break;
                        };
                        own_head = next_own()?;
                        (seq, decode(&value)?)
                    } else {
                        let Some(next) = listed.pop() else { break };
                        next
                    };
                    if !take(seq, record) {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes the dedup marks that expired before `now_ms`, about `limit` of them at most (whole lists),
    /// in one batch (run by the commit thread, sled's only writer); returns how many entries of the
    /// purge index it went through. A mark renewed after it expired stays.
    pub(super) fn purge_expired(&self, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut purged = 0;
        let unmark = |batch: &mut sled::Batch, dedup: &[u8], expires_ms: u64| -> Result<(), StoreError> {
            if let Some(mark) = self.db.get(dedup).map_err(backend)? {
                if read_u64(&mark) == Some(expires_ms) {
                    batch.remove(dedup);
                }
            }
            Ok(())
        };
        // The older form first: one entry per mark.
        for item in self.db.scan_prefix([EXPIRY]).keys() {
            if purged >= limit {
                break;
            }
            let key = item.map_err(backend)?;
            let Some(expires_ms) = read_u64(&key[1..]) else {
                return Err(StoreError::Corrupt { what: "expiry index" });
            };
            if expires_ms > now_ms {
                break;
            }
            let mut dedup = Vec::with_capacity(key.len() - 8);
            dedup.push(DEDUP);
            dedup.extend_from_slice(&key[9..]);
            unmark(&mut batch, &dedup, expires_ms)?;
            batch.remove(&key);
            purged += 1;
        }
        for item in self.db.scan_prefix([EXPIRY_LIST]) {
            if purged >= limit {
                break;
            }
            let (key, value) = item.map_err(backend)?;
            let Some(latest) = read_u64(&key[1..]) else {
                return Err(StoreError::Corrupt { what: "expiry list" });
            };
            if latest > now_ms {
                break;
            }
            for (expires_ms, dedup) in expiry_list(&value)? {
                unmark(&mut batch, dedup, expires_ms)?;
                purged += 1;
            }
            batch.remove(&key);
        }
        self.db.apply_batch(batch).map_err(backend)?;
        Ok(purged)
    }

    /// Queued, dead and delivered events, in the tree's indexes and among the fresh events, without
    /// settling them (so that a `/metrics` scrape neither syncs the log nor holds up the commit
    /// thread; the admin API settles first).
    ///
    /// The fresh events are read first, and those whose log record is not durable yet (or never will
    /// be, after a failed sync) are left out, as they are out of the tree: none has been answered
    /// 2xx. One that settles while the indexes are scanned is then in both, and is counted once: as
    /// it was when read. One accepted after that read is counted if it has settled by the time its
    /// index is scanned, and at the next call otherwise.
    pub(super) fn counts(&self) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        let fresh: HashSet<u64> = {
            let fresh = self.fresh();
            for event in fresh.events.values() {
                if !self.log_health.is_durable(event.write) {
                    continue;
                }
                match event.record.state {
                    EventState::Queued { .. } => counts.queued += 1,
                    EventState::Dead { .. } => counts.dead += 1,
                    EventState::Delivered { .. } => counts.delivered += 1,
                }
            }
            fresh.events.keys().copied().collect()
        };
        // An entry whose sequence number cannot be read is counted: it is in the tree.
        let settled = |seq: Option<u64>| !seq.is_some_and(|seq| fresh.contains(&seq));
        // The sequence number ends a schedule key, follows a dead-letter key's prefix and a
        // retention key's delivery time.
        for (prefix, seq_at, n) in [
            (SCHEDULE, None, &mut counts.queued),
            (DEAD, Some(1), &mut counts.dead),
            (RETAIN, Some(9), &mut counts.delivered),
        ] {
            for item in self.db.scan_prefix([prefix]).keys() {
                let key = item.map_err(backend)?;
                let at = seq_at.unwrap_or(key.len().saturating_sub(8));
                *n += u64::from(settled(key.get(at..).and_then(read_u64)));
            }
        }
        self.each_listed(|seq, _| counts.delivered += u64::from(settled(Some(seq))))?;
        Ok(counts)
    }

    pub(super) fn counts_by_source(&self) -> Result<HashMap<String, Counts>, StoreError> {
        let mut all: HashMap<String, Counts> = HashMap::new();
        for item in self.db.scan_prefix([SCHEDULE]).keys() {
            let key = item.map_err(backend)?;
            // `s`, source, 0, due ms (8), sequence (8).
            let source = key
                .len()
                .checked_sub(17)
                .filter(|&end| end >= 1)
                .map(|end| &key[1..end])
                .ok_or(StoreError::Corrupt { what: "schedule" })?;
            entry(&mut all, source).queued += 1;
        }
        for (prefix, seq_at) in [(DEAD, 1), (RETAIN, 9)] {
            for item in self.db.scan_prefix([prefix]) {
                let (key, value) = item.map_err(backend)?;
                let counts = if value.is_empty() {
                    let Some(record) = key
                        .get(seq_at..)
                        .and_then(read_u64)
                        .map(|seq| self.record(seq))
                        .transpose()?
                        .flatten()
                    else {
                        continue;
                    };
                    entry(&mut all, record.source.as_bytes())
                } else {
                    entry(&mut all, &value)
                };
                if prefix == DEAD {
                    counts.dead += 1;
                } else {
                    counts.delivered += 1;
                }
            }
        }
        self.each_listed(|_, source| entry(&mut all, source).delivered += 1)?;
        Ok(all)
    }
}

fn entry<'a>(all: &'a mut HashMap<String, Counts>, source: &[u8]) -> &'a mut Counts {
    all.entry(String::from_utf8_lossy(source).into_owned())
        .or_default()
}
