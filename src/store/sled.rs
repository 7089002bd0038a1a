//! The sled backend: the only file that names a sled type.
//!
//! Everything lives in one tree, under one-byte key prefixes, so that the accept path is a single-tree
//! transaction:
//!
//! | prefix | key after the prefix                    | value                               |
//! |--------|-----------------------------------------|-------------------------------------|
//! | `d`    | source, 0, event id                     | expiry ms (u64 BE), sequence number |
//! | `t`    | expiry ms (u64 BE), source, 0, event id | empty: the purge index              |
//! | `e`    | sequence number (u64 BE)                | [`EventRecord`], postcard           |
//! | `b`    | sequence number (u64 BE)                | the body bytes                      |
//! | `s`    | source, 0, due ms (u64 BE), sequence    | empty: the delivery schedule        |
//! | `x`    | sequence number (u64 BE)                | empty: the dead-letter index        |
//!
//! Sequence numbers come from sled's persistent id generator, so they keep growing across restarts.

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    Accepted, AttemptRecord, Counts, Due, DueBatch, EventRecord, EventState, NewEvent, NextStep, StoreError,
};

const DEDUP: u8 = b'd';
const EXPIRY: u8 = b't';
const EVENT: u8 = b'e';
const BODY: u8 = b'b';
const SCHEDULE: u8 = b's';
const DEAD: u8 = b'x';

/// Page cache size. sled's default is 1 GiB; the queue is read sequentially, so a small cache suffices.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

pub(super) struct SledBackend {
    db: sled::Db,
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

    pub(super) fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| StoreError::Flush(std::sync::Arc::new(e)))
    }

    pub(super) fn is_healthy(&self) -> bool {
        self.db.get([0xff]).is_ok()
    }

    pub(super) fn accept(
        &self,
        event: &NewEvent<'_>,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<Accepted, StoreError> {
        let dkey = dedup_key(event.source, event.event_id);
        // Taken outside the transaction, which may run more than once; an unused id is harmless.
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
        let encoded = encode(&record)?;
        let mut mark = [0u8; 16];
        mark[..8].copy_from_slice(&expires_ms.to_be_bytes());
        mark[8..].copy_from_slice(&seq.to_be_bytes());
        let ekey = expiry_key(expires_ms, &dkey);
        let skey = schedule_key(event.source, now_ms, seq);

        self.db
            .transaction(|tx| {
                if let Some(existing) = tx.get(&dkey)? {
                    // A mark past its expiry that the purge has not reached yet counts as absent.
                    if read_u64(&existing).is_some_and(|exp| exp > now_ms) {
                        return Ok(Accepted::Duplicate);
                    }
                }
                tx.insert(dkey.as_slice(), &mark[..])?;
                tx.insert(ekey.as_slice(), &[][..])?;
                tx.insert(&seq_key(EVENT, seq)[..], encoded.as_slice())?;
                tx.insert(&seq_key(BODY, seq)[..], event.body)?;
                tx.insert(skey.as_slice(), &[][..])?;
                Ok::<_, ConflictableTransactionError<StoreError>>(Accepted::New(seq))
            })
            .map_err(tx_error)
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
        let ekey = seq_key(EVENT, seq);
        self.db
            .transaction(|tx| {
                let Some(meta) = tx.get(ekey)? else {
                    return Ok(());
                };
                let mut record = decode(&meta).map_err(ConflictableTransactionError::Abort)?;
                if let EventState::Queued { due_ms } = record.state {
                    tx.remove(schedule_key(&record.source, due_ms, seq))?;
                }
                record.attempts.push(attempt.clone());
                match &next {
                    NextStep::Delivered => {
                        tx.remove(&ekey[..])?;
                        tx.remove(&seq_key(BODY, seq)[..])?;
                        return Ok(());
                    }
                    NextStep::RetryAt(due_ms) => {
                        tx.insert(schedule_key(&record.source, *due_ms, seq), &[][..])?;
                        record.state = EventState::Queued { due_ms: *due_ms };
                    }
                    NextStep::DeadLetter(reason) => {
                        tx.insert(&seq_key(DEAD, seq)[..], &[][..])?;
                        record.state = EventState::Dead {
                            reason: reason.clone(),
                        };
                    }
                }
                let encoded = encode(&record).map_err(ConflictableTransactionError::Abort)?;
                tx.insert(&ekey[..], encoded)?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(tx_error)
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
        })
    }
}
