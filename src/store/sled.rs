//! The sled backend: the only file that names a sled type.
//!
//! Everything lives in one tree, under one-byte key prefixes, so that the accept path is one atomic
//! batch on one tree:
//!
//! | prefix | key after the prefix                    | value                               |
//! |--------|-----------------------------------------|-------------------------------------|
//! | `d`    | source, 0, event id                     | expiry ms (u64 BE), sequence number |
//! | `t`    | expiry ms (u64 BE), source, 0, event id | empty: the purge index              |
//! | `e`    | sequence number (u64 BE)                | [`EventRecord`], postcard           |
//! | `b`    | sequence number (u64 BE)                | the body bytes                      |
//! | `s`    | source, 0, due ms (u64 BE), sequence    | empty: the delivery schedule        |
//! | `x`    | sequence number (u64 BE)                | source: the dead-letter index       |
//! | `r`    | delivered ms (u64 BE), sequence         | source: the retention index         |
//!
//! Every stored event is in exactly one of the three state indexes (`s`, `x`, `r`), kept in step with
//! its record's [`EventState`] in the same transaction or batch. The source in the `x` and `r` values lets counts
//! per source be read without decoding records (dead-letter entries written before it existed have an
//! empty value; their record is read instead).
//!
//! Sequence numbers come from sled's persistent id generator, so they keep growing across restarts,
//! and they follow the order of acceptance: a listing walks them backwards.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{
    commit::Engine, Accepted, AttemptRecord, Counts, Due, DueBatch, EventQuery, EventRecord, EventState,
    NewEvent, NextStep, StateFilter, StoreError,
};

const DEDUP: u8 = b'd';
const EXPIRY: u8 = b't';
const EVENT: u8 = b'e';
const BODY: u8 = b'b';
const SCHEDULE: u8 = b's';
const DEAD: u8 = b'x';
const RETAIN: u8 = b'r';

/// How far a listing with `since` reads past the first event received before `since`. Sequence numbers
/// and receive times agree only roughly: concurrent requests read the clock and take their number in
/// either order, and the clock may step back. Walking a little further keeps such events in the answer.
const SINCE_SLACK_MS: u64 = 10 * 60 * 1000;

/// Page cache size. sled's default is 1 GiB; the queue is read sequentially, so a small cache suffices.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

pub(super) struct SledBackend {
    db: sled::Db,
}

/// One event's accept write, encoded: applied by the commit thread unless its id is a duplicate.
pub(super) struct AcceptWrite {
    dedup: Vec<u8>,
    mark: [u8; 16],
    expiry: Vec<u8>,
    schedule: Vec<u8>,
    now_ms: u64,
    seq: u64,
    record: sled::IVec,
    body: sled::IVec,
}

impl Engine for SledBackend {
    type Write = AcceptWrite;

    /// Checks each write's dedup mark (in the tree, then among the batch's earlier writes) and applies
    /// the new ones, mark and queued event together, in one sled batch. Only the commit thread writes
    /// dedup marks (the purge removes expired ones in transactions that recheck them), so nothing can
    /// come between the check and the batch.
    fn apply(&self, writes: Vec<AcceptWrite>) -> Result<Vec<Accepted>, StoreError> {
        let mut batch = sled::Batch::default();
        let mut claimed: HashSet<&[u8]> = HashSet::with_capacity(writes.len());
        let mut outcomes = Vec::with_capacity(writes.len());
        for w in &writes {
            let taken = claimed.contains(w.dedup.as_slice())
                // A mark past its expiry that the purge has not reached yet counts as absent.
                || self
                    .db
                    .get(&w.dedup)
                    .map_err(backend)?
                    .is_some_and(|mark| read_u64(&mark).is_some_and(|exp| exp > w.now_ms));
            if taken {
                outcomes.push(Accepted::Duplicate);
                continue;
            }
            claimed.insert(&w.dedup);
            batch.insert(w.dedup.as_slice(), &w.mark[..]);
            batch.insert(w.expiry.as_slice(), &[][..]);
            batch.insert(&seq_key(EVENT, w.seq)[..], w.record.clone());
            batch.insert(&seq_key(BODY, w.seq)[..], w.body.clone());
            batch.insert(w.schedule.as_slice(), &[][..]);
            outcomes.push(Accepted::New(w.seq));
        }
        self.db.apply_batch(batch).map_err(backend)?;
        Ok(outcomes)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| StoreError::Flush(Box::new(e)))
    }
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

/// Removes `record`'s state-index entry.
fn unindex(tx: &TransactionalTree, seq: u64, record: &EventRecord) -> TxResult<()> {
    tx.remove(index_entry(seq, record).0)?;
    Ok(())
}

/// Writes `record` and its state-index entry.
fn store_record(tx: &TransactionalTree, seq: u64, record: &EventRecord) -> TxResult<()> {
    let (key, value) = index_entry(seq, record);
    tx.insert(key, value)?;
    let encoded = encode(record).map_err(ConflictableTransactionError::Abort)?;
    tx.insert(&seq_key(EVENT, seq)[..], encoded)?;
    Ok(())
}

/// Reads and decodes event `seq` inside a transaction.
fn tx_record(tx: &TransactionalTree, seq: u64) -> TxResult<Option<EventRecord>> {
    match tx.get(seq_key(EVENT, seq))? {
        Some(meta) => decode(&meta)
            .map(Some)
            .map_err(ConflictableTransactionError::Abort),
        None => Ok(None),
    }
}

/// Removes event `seq` (record, body, state index) inside a transaction.
fn tx_delete(tx: &TransactionalTree, seq: u64, record: &EventRecord) -> TxResult<()> {
    unindex(tx, seq, record)?;
    tx.remove(&seq_key(EVENT, seq)[..])?;
    tx.remove(&seq_key(BODY, seq)[..])?;
    Ok(())
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn encode(record: &EventRecord) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(record).map_err(|e| StoreError::Backend(Box::new(e)))
}

fn decode(bytes: &[u8]) -> Result<EventRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|_| StoreError::Corrupt { what: "event" })
}

impl SledBackend {
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            // The group commit flushes on demand; this bounds the loss window of forwarder updates.
            .flush_every_ms(Some(500))
            .open()
            .map_err(backend)?;
        Ok(Self { db })
    }

    pub(super) fn is_healthy(&self) -> bool {
        self.db.get([0xff]).is_ok()
    }

    /// Encodes `event`'s accept write (done by the request's task, off the commit thread).
    pub(super) fn prepare_accept(
        &self,
        event: &NewEvent<'_>,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<AcceptWrite, StoreError> {
        let dedup = dedup_key(event.source, event.event_id);
        // An id taken by a write that turns out to be a duplicate is simply never used.
        let seq = self.db.generate_id().map_err(backend)?;
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
        let mut mark = [0u8; 16];
        mark[..8].copy_from_slice(&expires_ms.to_be_bytes());
        mark[8..].copy_from_slice(&seq.to_be_bytes());
        Ok(AcceptWrite {
            expiry: expiry_key(expires_ms, &dedup),
            schedule: schedule_key(event.source, now_ms, seq),
            dedup,
            mark,
            now_ms,
            seq,
            record: encode(&record)?.into(),
            body: event.body.into(),
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
        for item in self.db.scan_prefix(&prefix).keys() {
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
        Ok(batch)
    }

    pub(super) fn load(&self, seq: u64) -> Result<Option<(EventRecord, Vec<u8>)>, StoreError> {
        let Some(meta) = self.db.get(seq_key(EVENT, seq)).map_err(backend)? else {
            return Ok(None);
        };
        let body = self
            .db
            .get(seq_key(BODY, seq))
            .map_err(backend)?
            .ok_or(StoreError::Corrupt { what: "body" })?;
        Ok(Some((decode(&meta)?, body.to_vec())))
    }

    pub(super) fn record_attempt(
        &self,
        seq: u64,
        attempt: AttemptRecord,
        next: NextStep,
    ) -> Result<(), StoreError> {
        self.db
            .transaction(|tx| {
                let Some(mut record) = tx_record(tx, seq)? else {
                    // Deleted meanwhile (admin API): nothing to record.
                    return Ok(());
                };
                unindex(tx, seq, &record)?;
                record.attempts.push(attempt.clone());
                record.state = match &next {
                    NextStep::Delivered => EventState::Delivered { at_ms: attempt.at_ms },
                    NextStep::RetryAt(due_ms) => EventState::Queued { due_ms: *due_ms },
                    NextStep::DeadLetter(reason) => EventState::Dead {
                        reason: reason.clone(),
                    },
                };
                store_record(tx, seq, &record)
            })
            .map_err(tx_error)
    }

    /// Puts event `seq` back in the queue, due at `now_ms`; returns its source, or `None` if it is
    /// not stored.
    pub(super) fn replay(&self, seq: u64, now_ms: u64) -> Result<Option<String>, StoreError> {
        self.db
            .transaction(|tx| {
                let Some(mut record) = tx_record(tx, seq)? else {
                    return Ok(None);
                };
                unindex(tx, seq, &record)?;
                record.state = EventState::Queued { due_ms: now_ms };
                store_record(tx, seq, &record)?;
                Ok(Some(record.source))
            })
            .map_err(tx_error)
    }

    pub(super) fn delete(&self, seq: u64) -> Result<bool, StoreError> {
        self.delete_where(seq, |_| true)
    }

    /// Deletes event `seq` only if it is (still) in `state`.
    pub(super) fn delete_if(&self, seq: u64, state: StateFilter) -> Result<bool, StoreError> {
        self.delete_where(seq, |r| r.state.filter() == state)
    }

    fn delete_where(&self, seq: u64, keep_unless: impl Fn(&EventRecord) -> bool) -> Result<bool, StoreError> {
        self.db
            .transaction(|tx| {
                let Some(record) = tx_record(tx, seq)? else {
                    return Ok(false);
                };
                if !keep_unless(&record) {
                    return Ok(false);
                }
                tx_delete(tx, seq, &record)?;
                Ok(true)
            })
            .map_err(tx_error)
    }

    pub(super) fn purge_delivered(&self, older_than_ms: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for item in self.db.scan_prefix([RETAIN]).keys() {
            let key = item.map_err(backend)?;
            let (Some(at_ms), Some(seq)) = (read_u64(&key[1..]), key.get(9..).and_then(read_u64)) else {
                return Err(StoreError::Corrupt {
                    what: "retention index",
                });
            };
            if at_ms >= older_than_ms {
                break;
            }
            let removed = self
                .db
                .transaction(|tx| {
                    let record = tx_record(tx, seq)?;
                    // Replayed since the scan read the key: the event is queued again and stays.
                    let still = record
                        .as_ref()
                        .filter(|r| r.state == EventState::Delivered { at_ms });
                    match still {
                        Some(record) => {
                            tx_delete(tx, seq, record)?;
                            Ok(true)
                        }
                        None => {
                            tx.remove(key.clone())?;
                            Ok(false)
                        }
                    }
                })
                .map_err(tx_error)?;
            purged += usize::from(removed);
        }
        Ok(purged)
    }

    /// Event `seq`'s record without its body.
    fn record(&self, seq: u64) -> Result<Option<EventRecord>, StoreError> {
        match self.db.get(seq_key(EVENT, seq)).map_err(backend)? {
            Some(meta) => decode(&meta).map(Some),
            None => Ok(None),
        }
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
            }
        }
        Ok(seqs)
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
                    if !take(seq, record) {
                        break;
                    }
                }
            }
            None => {
                for item in self.db.scan_prefix([EVENT]).rev() {
                    let (key, meta) = item.map_err(backend)?;
                    let seq = read_u64(&key[1..]).ok_or(StoreError::Corrupt { what: "event key" })?;
                    if !take(seq, decode(&meta)?) {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    pub(super) fn purge_expired(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for item in self.db.scan_prefix([EXPIRY]).keys() {
            let key = item.map_err(backend)?;
            let Some(expires_ms) = read_u64(&key[1..]) else {
                return Err(StoreError::Corrupt { what: "expiry index" });
            };
            if expires_ms > now_ms {
                break;
            }
            let mut dkey = Vec::with_capacity(key.len() - 8);
            dkey.push(DEDUP);
            dkey.extend_from_slice(&key[9..]);
            let ekey = key.to_vec();
            self.db
                .transaction(|tx| {
                    // The mark may have been renewed after it expired; only an unrenewed one goes.
                    if let Some(mark) = tx.get(&dkey)? {
                        if read_u64(&mark) == Some(expires_ms) {
                            tx.remove(dkey.as_slice())?;
                        }
                    }
                    tx.remove(ekey.as_slice())?;
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                })
                .map_err(tx_error)?;
            purged += 1;
        }
        Ok(purged)
    }

    pub(super) fn dead_letters(&self, limit: usize) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([DEAD]).keys().take(limit) {
            let key = item.map_err(backend)?;
            let seq = read_u64(&key[1..]).ok_or(StoreError::Corrupt {
                what: "dead-letter index",
            })?;
            if let Some((record, _)) = self.load(seq)? {
                out.push((seq, record));
            }
        }
        Ok(out)
    }

    pub(super) fn counts(&self) -> Result<Counts, StoreError> {
        let count = |prefix: u8| -> Result<u64, StoreError> {
            let mut n = 0;
            for item in self.db.scan_prefix([prefix]).keys() {
                item.map_err(backend)?;
                n += 1;
            }
            Ok(n)
        };
        Ok(Counts {
            queued: count(SCHEDULE)?,
            dead: count(DEAD)?,
            delivered: count(RETAIN)?,
        })
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
        Ok(all)
    }
}

fn entry<'a>(all: &'a mut HashMap<String, Counts>, source: &[u8]) -> &'a mut Counts {
    all.entry(String::from_utf8_lossy(source).into_owned())
        .or_default()
}
