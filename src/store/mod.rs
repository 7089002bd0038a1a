//! Durable storage: dedup marks, the delivery queue and dead letters, behind a narrow API.
//!
//! The accept path calls [`Store::accept`], which checks the event's dedup mark and, if the id is new,
//! writes the mark and the queued event **together**, in one log record and later in one tree batch:
//! written apart, a crash between the two would turn the sender's retry into a "duplicate" and lose the
//! event. `accept` returns only once the write is durable, through a group commit (`commit.rs`): one
//! thread applies every waiting write and flushes once for all of them, so throughput grows with
//! concurrency instead of paying one flush per request. A duplicate is answered after the same kind of
//! flush, so its 200 never precedes the first copy's durability.
//!
//! The forwarder reads due events with [`Store::due`], loads them with [`Store::load`] and records each
//! attempt with [`Store::record_attempt`]. A delivered event is kept, body and history included, for the
//! configured retention so that it can be inspected and replayed; [`retention_loop`] then purges it.
//!
//! The admin API lists events with [`Store::list`], puts them back in the queue with [`Store::replay`]
//! and [`Store::replay_where`] (which bypass dedup: the event is already stored), and removes them with
//! [`Store::delete`] and [`Store::purge_dead`].
//!
//! The store wakes a source's forwarder itself whenever it takes an event for it: a new event in
//! [`Store::accept`] (not a duplicate), and every replay. The forwarder waits on [`Store::waker`], one
//! `Notify` per source name for the store's life, so nothing else carries wake-ups around.
//!
//! Nothing outside `store/sled.rs` names a sled type.

use std::{
    collections::HashMap,
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

mod attempt;
mod commit;
mod log;
mod place;
mod sled;

pub use self::attempt::{AttemptResult, UnknownAttemptResult};
pub use self::place::Moved;

use self::{
    commit::{Committer, Engine},
    sled::{Applied, GroupWrite, SledBackend},
};

/// Why the store could not do what was asked. The accept path answers 503 to all of them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (I/O, corruption).
    #[error("storage failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Flushing to disk failed; what was written may not be durable.
    #[error("flushing to disk failed")]
    Flush(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The group commit of the batch with this write failed (every write of the batch shares it).
    #[error("the group commit failed")]
    Commit(#[source] Arc<StoreError>),
    /// The store directory holds an older, incompatible layout.
    #[error("{path} holds a store written by an older hookgate (a `db` file without `index/` and `log/`); move it aside or point store.path elsewhere")]
    OldFormat {
        /// The store directory.
        path: String,
    },
    /// A record of the event log is corrupt, and it is not a write that a crash cut short: opening
    /// stops rather than cut the log there and drop acknowledged events.
    #[error(
        "event log segment {segment} is corrupt at byte {offset}: the record there fails its check and is \
         not the end of a write that a crash cut short, so events acknowledged after it would be lost if \
         the log were cut there; hookgate changed nothing and will not start. To recover, stop every \
         hookgate on this store and copy the store directory aside; then restore the store from a backup, \
         or give up this record and the rest of its segment with `truncate -s {offset} {segment}` (the \
         events whose records were there are lost)"
    )]
    CorruptLog {
        /// The segment file.
        segment: String,
        /// Where the bad record starts, in bytes.
        offset: u64,
    },
    /// The store's directory, or a file of it, is gone or is not the one opened (removed, unmounted,
    /// replaced): what is written there would be lost at the next start.
    #[error(
        "the store's files are gone: {0}; no event can be made durable, so every one is answered 503 \
         until the store is back where it was (the same filesystem, remounted); restart hookgate on \
         a restored store otherwise"
    )]
    Gone(#[source] Moved),
    /// Another hookgate (or another store in this process) holds the store's lock.
    #[error(
        "another hookgate holds the store at {path} (waited 5 s for its lock on {path}/index): stop \
         that one first, or give this one a store.path of its own"
    )]
    Locked {
        /// The store directory.
        path: String,
    },
    /// The index (sled) failed to write earlier, and takes no more writes until hookgate restarts.
    #[error("the index failed to write ({0}) and takes no more writes; restart hookgate once the cause (e.g. a full disk) is fixed")]
    IndexFailed(String),
    /// A full flush made the event log durable, but the index could not take or persist what
    /// waited for it: nothing acknowledged is lost (the next start applies the log again), but
    /// delivery outcomes since the index's last flush are, and those events are delivered again.
    #[error("the event log is durable, but the index could not be flushed")]
    IndexFlush(#[source] Box<StoreError>),
    /// The store's commit thread has stopped (the store is shutting down).
    #[error("the store's commit thread has stopped")]
    Stopped,
    /// A stored record could not be decoded.
    #[error("stored record {what} is corrupt")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
    },
}

/// An event to accept: the verified request as received.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The sender's event id (dedup key within the source).
    pub event_id: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request's query string, if any.
    pub query: Option<&'a str>,
    /// The request headers, in order, values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The exact body bytes (shared, not copied: the store keeps them in memory until the event is
    /// delivered or settles).
    pub body: bytes::Bytes,
    /// Whether it passed verification (false only for sources in shadow mode).
    pub verified: bool,
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The event is new and now durably queued under this sequence number.
    New(u64),
    /// The event id was seen within the dedup window; nothing was written.
    Duplicate,
}

/// A stored event's metadata (its body is stored apart, see [`Store::load`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The source's name.
    pub source: String,
    /// The sender's event id.
    pub event_id: String,
    /// When the gateway accepted it, Unix milliseconds.
    pub received_at_ms: u64,
    /// The request method.
    pub method: String,
    /// The request's query string, if any.
    pub query: Option<String>,
    /// The request headers as received.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether it passed verification (false only for sources in shadow mode).
    pub verified: bool,
    /// Where the event stands.
    pub state: EventState,
    /// Every delivery attempt so far, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// Where an event stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventState {
    /// Waiting for delivery, due at this Unix millisecond.
    Queued {
        /// When the next attempt is due.
        due_ms: u64,
    },
    /// Given up on; kept for inspection and replay.
    Dead {
        /// Why.
        reason: String,
    },
    /// Delivered; kept with its body and history for the retention, then purged.
    /// (Last variant: records are postcard-encoded, so variants are only ever appended.)
    Delivered {
        /// When the delivering attempt ended, Unix milliseconds.
        at_ms: u64,
    },
}

impl EventState {
    /// The state's name: `queued`, `dead` or `delivered`.
    pub fn name(&self) -> &'static str {
        self.filter().as_str()
    }

    /// The filter this state matches.
    pub fn filter(&self) -> StateFilter {
        match self {
            EventState::Queued { .. } => StateFilter::Queued,
            EventState::Dead { .. } => StateFilter::Dead,
            EventState::Delivered { .. } => StateFilter::Delivered,
        }
    }
}

/// A state to select events by, and an event's state as the admin API names it
/// (`queued`, `delivered`, `dead`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateFilter {
    /// Waiting for delivery.
    Queued,
    /// Delivered and kept for the retention.
    Delivered,
    /// Dead letters.
    Dead,
}

impl StateFilter {
    /// Every state, in the order the docs list them.
    pub const ALL: [StateFilter; 3] = [StateFilter::Queued, StateFilter::Delivered, StateFilter::Dead];

    /// `queued`, `delivered` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Queued => "queued",
            StateFilter::Delivered => "delivered",
            StateFilter::Dead => "dead",
        }
    }
}

/// A state name that is not `queued`, `delivered` or `dead`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a state (expected queued, delivered or dead)")]
pub struct UnknownState;

impl FromStr for StateFilter {
    type Err = UnknownState;

    /// ```
    /// use hookgate::store::StateFilter;
    /// assert_eq!("dead".parse(), Ok(StateFilter::Dead));
    /// assert!("gone".parse::<StateFilter>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        match s {
            "queued" => Ok(StateFilter::Queued),
            "delivered" => Ok(StateFilter::Delivered),
            "dead" => Ok(StateFilter::Dead),
            _ => Err(UnknownState),
        }
    }
}

/// Which events [`Store::list`], [`Store::replay_where`] and [`Store::purge_dead`] act on: every
/// filter that is set must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this source's events.
    pub source: Option<String>,
    /// Only events in this state.
    pub state: Option<StateFilter>,
    /// Only events received at or after this Unix millisecond.
    pub since_ms: Option<u64>,
    /// Only events received before this Unix millisecond.
    pub until_ms: Option<u64>,
    /// Only events whose sequence number is below this one: the next page of a listing, newest first.
    pub before_seq: Option<u64>,
    /// At most this many events (the newest).
    pub limit: usize,
}

impl Default for EventQuery {
    /// Every event.
    fn default() -> Self {
        Self {
            source: None,
            state: None,
            since_ms: None,
            until_ms: None,
            before_seq: None,
            limit: usize::MAX,
        }
    }
}

impl EventQuery {
    /// Whether event `seq`'s `record` passes the filters (the limit aside).
    pub fn matches(&self, seq: u64, record: &EventRecord) -> bool {
        self.source.as_ref().is_none_or(|s| *s == record.source)
            && self.state.is_none_or(|s| s == record.state.filter())
            && self.since_ms.is_none_or(|ms| record.received_at_ms >= ms)
            && self.until_ms.is_none_or(|ms| record.received_at_ms < ms)
            && self.before_seq.is_none_or(|before| seq < before)
    }
}

/// One delivery attempt, kept in the event's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// When the attempt ended, Unix milliseconds.
    pub at_ms: u64,
    /// The app's status, if it answered.
    pub status: Option<u16>,
    /// What was decided and why.
    pub outcome: AttemptResult,
}

/// What follows an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered: the event leaves the queue and is kept (as [`EventState::Delivered`] at the attempt's
    /// time) for the retention.
    Delivered,
    /// Try again at this Unix millisecond.
    RetryAt(u64),
    /// Keep as a dead letter, for this reason.
    DeadLetter(String),
}

/// An event due for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Due {
    /// The event's sequence number.
    pub seq: u64,
    /// When it became due, Unix milliseconds.
    pub due_ms: u64,
}

/// The answer of [`Store::due`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DueBatch {
    /// Due events, oldest due first, not in the skip set.
    pub due: Vec<Due>,
    /// When the next not-yet-due event becomes due, if any.
    pub next_due_ms: Option<u64>,
}

/// Counts of events by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Waiting for delivery.
    pub queued: u64,
    /// Dead letters.
    pub dead: u64,
    /// Delivered, kept for the retention.
    pub delivered: u64,
}

/// The index's page cache unless configured (`[store] cache_size`). sled's default is 1 GiB; the
/// tree holds no bodies, the queue is read sequentially and fresh events are served from memory, so a
/// small cache suffices. Measured: 4 MiB rather than 8 kept about 6 MiB less resident under the 1 KiB
/// load benchmark at the same speed, but delivered a backlog from the tree about 10% more slowly.
pub const DEFAULT_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// How many entries one purge batch removes at most.
const PURGE_CHUNK: usize = 512;

/// The gateway's durable store. Cheap to clone.
///
/// Every write runs on the store's commit thread, so that sled has a single writer: concurrent writers
/// make sled rewrite more (measured: twice the bytes per event). Accepted events wait there briefly
/// before they reach the tree (see `sled.rs`, "Settling"), so the admin API's reads and writes (`list`,
/// the counts, `replay`, `delete`, the purges) first wait for that thread to settle them: call them from
/// a thread that may block, never a runtime thread. The forwarder's `due` and `load` never wait.
#[derive(Clone)]
pub struct Store {
    // Dropped first: the last handle waits for the commit thread, which holds the engine too.
    commit: Arc<Committer<SledBackend>>,
    backend: Arc<SledBackend>,
    wakers: Arc<Mutex<HashMap<Arc<str>, Arc<Notify>>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with an index page cache of `cache_bytes` (`[store] cache_size`).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::start(SledBackend::open(path, log::SEGMENT_BYTES, cache_bytes)?)
    }

    /// [`Store::open`] with event-log segments of `segment_bytes`.
    #[cfg(test)]
    fn open_with(path: &Path, segment_bytes: u64) -> Result<Self, StoreError> {
        Self::start(SledBackend::open(path, segment_bytes, DEFAULT_CACHE_BYTES)?)
    }

    /// [`Store::open`] with fresh events that settle only after `age` (or when a read needs them).
    #[cfg(test)]
    fn open_settling_after(path: &Path, age: Duration) -> Result<Self, StoreError> {
        let backend = SledBackend::open(path, log::SEGMENT_BYTES, DEFAULT_CACHE_BYTES)?;
        Self::start(backend.settling_after(age))
    }

    /// [`Store::open`] with fresh events that settle after `age`, and those still queued after up to
    /// `queued_age` while at most `events` of them, with at most `bytes` of bodies, wait past `age`.
    #[cfg(test)]
    fn open_holding_queued(
        path: &Path,
        age: Duration,
        queued_age: Duration,
        events: usize,
        bytes: usize,
    ) -> Result<Self, StoreError> {
        let backend = SledBackend::open(path, log::SEGMENT_BYTES, DEFAULT_CACHE_BYTES)?;
        Self::start(backend.holding_queued(age, queued_age, events, bytes))
    }

    fn start(backend: SledBackend) -> Result<Self, StoreError> {
        let backend = Arc::new(backend);
        Ok(Self {
            commit: Arc::new(Committer::start(backend.clone())?),
            backend,
            wakers: Arc::default(),
        })
    }

    /// The wake-up of `source`'s forwarder: the same `Notify` for the same name, for the store's life
    /// (so also across config reloads). The store notifies it when it queues an event of `source`
    /// (accept, replay); the forwarder waits on it.
    pub fn waker(&self, source: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = wakers.get(source) {
            return w.clone();
        }
        let w = Arc::new(Notify::new());
        wakers.insert(Arc::from(source), w.clone());
        w
    }

    fn wake(&self, source: &str) {
        self.waker(source).notify_one();
    }

    /// Accepts a verified event at time `now`: if its id is new within `window`, writes the dedup mark
    /// and the queued event in one atomic batch. Returns once that write (or, for a duplicate, the first
    /// copy's) is on disk; a new event then wakes the source's forwarder.
    pub async fn accept(
        &self,
        event: &NewEvent<'_>,
        now: SystemTime,
        window: Duration,
    ) -> Result<Accepted, StoreError> {
        let now_ms = unix_ms(now);
        let expires_ms = now_ms.saturating_add(window.as_millis() as u64);
        let write = self.backend.prepare_accept(event, now_ms, expires_ms)?;
        match self
            .commit
            .write(GroupWrite::Accept(Box::new(write)), true)
            .await?
        {
            Applied::Accept(accepted) => {
                if let Accepted::New(_) = accepted {
                    self.wake(event.source);
                }
                Ok(accepted)
            }
            Applied::Refused(e) => {
                metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "accept").increment(1);
                Err(e)
            }
            Applied::Recorded => unreachable!("an accept is answered with its outcome"),
        }
    }

    /// [`Store::due`] for a runtime thread: a read of the tree (which may wait on the disk) runs on
    /// a blocking thread; a source whose schedule holds nothing in the tree is answered from memory.
    pub async fn due_async(
        &self,
        source: &str,
        now_ms: u64,
        limit: usize,
        skip: impl Fn(u64) -> bool + Send + 'static,
    ) -> Result<DueBatch, StoreError> {
        if self.backend.schedule_known_empty(source) {
            return self.backend.due(source, now_ms, limit, &skip);
        }
        let backend = self.backend.clone();
        let source = source.to_owned();
        tokio::task::spawn_blocking(move || backend.due(&source, now_ms, limit, &skip))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    /// [`Store::load`] for a runtime thread: an event whose body is still in memory is answered at
    /// once; reading the tree or the event log runs on a blocking thread.
    pub async fn load_async(&self, seq: u64) -> Result<Option<(EventRecord, bytes::Bytes)>, StoreError> {
        if let Some(loaded) = self.backend.load_from_memory(seq) {
            return Ok(Some(loaded));
        }
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || backend.load(seq))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    /// Events of `source` due at `now_ms`, at most `limit`, skipping those in `skip` (in flight).
    /// May read the tree: on a runtime thread, use [`Store::due_async`].
    pub fn due(
        &self,
        source: &str,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<DueBatch, StoreError> {
        self.backend.due(source, now_ms, limit, skip)
    }

    /// An event's metadata and body; `None` if it is no longer stored. Reads the tree or the event
    /// log unless the event is in memory: on a runtime thread, use [`Store::load_async`].
    pub fn load(&self, seq: u64) -> Result<Option<(EventRecord, bytes::Bytes)>, StoreError> {
        self.backend.load(seq)
    }

    /// Records a delivery attempt and what follows it, atomically. Like every write but the accepts,
    /// it runs on the commit thread (one writer keeps sled's write amplification down) and is made
    /// durable by a later flush: lost in a crash, it only means the attempt is made again.
    pub async fn record_attempt(
        &self,
        seq: u64,
        attempt: AttemptRecord,
        next: NextStep,
    ) -> Result<(), StoreError> {
        self.commit
            .write(GroupWrite::Attempt { seq, attempt, next }, false)
            .await
            .map(drop)
    }

    /// Removes dedup marks that expired before `now`; returns how many.
    pub fn purge_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        let now_ms = unix_ms(now);
        self.in_chunks(move |backend| backend.purge_expired(now_ms, PURGE_CHUNK))
    }

    /// Dead-lettered events, oldest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        self.settled()?;
        self.backend.dead_letters(limit)
    }

    /// Queued, dead and delivered events, counted (from the indexes; no record is decoded).
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.settled()?;
        self.backend.counts()
    }

    /// [`Store::counts`] without settling the events that wait in memory first (it counts them where
    /// they are): for `/metrics`, so that a scrape does not hold up acceptance. Events that change
    /// state meanwhile are counted once, in one of their states.
    pub fn counts_now(&self) -> Result<Counts, StoreError> {
        self.backend.counts()
    }

    /// [`Store::counts`] per source name; a source without stored events is absent.
    pub fn counts_by_source(&self) -> Result<HashMap<String, Counts>, StoreError> {
        self.settled()?;
        self.backend.counts_by_source()
    }

    /// The events that match `query` with their sequence numbers, newest first (highest sequence
    /// number first, which is the order of acceptance), at most `query.limit`.
    pub fn list(&self, query: &EventQuery) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        self.settled()?;
        self.backend.list(query)
    }

    /// Puts event `seq` back in the queue, due at `now`, whatever its state (a queued event becomes
    /// due now). Its attempt history is kept, so the attempt counter continues; its dedup mark is not
    /// consulted. Wakes the source's forwarder. Returns false if the event is not stored.
    pub fn replay(&self, seq: u64, now: SystemTime) -> Result<bool, StoreError> {
        let now_ms = unix_ms(now);
        match self.on_commit_thread(move |backend| backend.replay(seq, now_ms))? {
            Some(source) => {
                self.wake(&source);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// [`Store::replay`] for every event that matches `query`; returns how many were replayed.
    pub fn replay_where(&self, query: &EventQuery, now: SystemTime) -> Result<usize, StoreError> {
        let now_ms = unix_ms(now);
        let mut replayed = 0;
        let mut sources = Vec::<String>::new();
        for (seq, _) in self.list(query)? {
            if let Some(source) = self.on_commit_thread(move |backend| backend.replay(seq, now_ms))? {
                replayed += 1;
                if !sources.contains(&source) {
                    sources.push(source);
                }
            }
        }
        for source in sources {
            self.wake(&source);
        }
        Ok(replayed)
    }

    /// Removes event `seq` (metadata, body, indexes), whatever its state. Its dedup mark stays, so a
    /// sender's retry of it is still a duplicate. Returns false if the event is not stored.
    pub fn delete(&self, seq: u64) -> Result<bool, StoreError> {
        self.on_commit_thread(move |backend| backend.delete(seq))
    }

    /// Removes the dead letters that match `query` (its `state` is ignored: only dead letters go);
    /// returns how many.
    pub fn purge_dead(&self, query: &EventQuery) -> Result<usize, StoreError> {
        let query = EventQuery {
            state: Some(StateFilter::Dead),
            ..query.clone()
        };
        let mut purged = 0;
        for (seq, _) in self.list(&query)? {
            // Checked again inside the delete: a replay in between takes it out of the dead letters.
            if self.on_commit_thread(move |backend| backend.delete_if(seq, StateFilter::Dead))? {
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Removes delivered events delivered before Unix millisecond `older_than_ms`; returns how many.
    /// Queued and dead events are never touched.
    pub fn purge_delivered(&self, older_than_ms: u64) -> Result<usize, StoreError> {
        self.in_chunks(move |backend| backend.purge_delivered(older_than_ms, PURGE_CHUNK))
    }

    /// Runs `write` on the commit thread once the accepted events waiting there are in the tree, so
    /// that it sees (and changes) every event. Blocks: call it from a blocking thread.
    fn on_commit_thread<T: Send + 'static>(
        &self,
        write: impl FnOnce(&SledBackend) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.commit.run_blocking(move |backend| {
            backend.settle(true)?;
            write(backend)
        })
    }

    /// Waits until the accepted events waiting on the commit thread are in the tree, so that a read
    /// that follows sees them. Blocks: call it from a blocking thread.
    fn settled(&self) -> Result<(), StoreError> {
        self.on_commit_thread(|_| Ok(()))
    }

    /// Runs a purge of at most [`PURGE_CHUNK`] entries on the commit thread until one removes fewer;
    /// returns the total. Each chunk is one sled batch, and accepts get their turn between chunks.
    fn in_chunks(
        &self,
        purge: impl Fn(&SledBackend) -> Result<usize, StoreError> + Send + Sync + Clone + 'static,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.on_commit_thread(purge.clone())?;
            total += n;
            if n < PURGE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Removes event-log segments that no stored event refers to any more; returns how many.
    pub fn collect_segments(&self) -> Result<usize, StoreError> {
        self.on_commit_thread(SledBackend::collect_segments)
    }

    /// Flushes everything to disk now.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.commit.flush().await
    }

    /// Whether an event can be made durable now, and why not (for `/readyz`). Blocks briefly (a few
    /// `stat` calls and an index read): call it from a thread that may block.
    pub fn readiness(&self) -> Result<(), NotReady> {
        self.backend.readiness()
    }
}

impl StoreError {
    /// Whether this is an [`StoreError::IndexFlush`] (directly or as a group's failure): the
    /// event log, which holds every acknowledged event, is durable.
    pub fn is_index_only(&self) -> bool {
        match self {
            StoreError::IndexFlush(_) => true,
            StoreError::Commit(inner) => inner.is_index_only(),
            _ => false,
        }
    }
}

/// Why the store cannot make an event durable now ([`Store::readiness`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// A sync of the event log failed: nothing is acknowledged until the store is opened again.
    #[error("a sync of the event log failed; restart hookgate to recover from what the disk holds")]
    SyncFailed,
    /// A sync of the event log has run for this long (a frozen or stalled filesystem).
    #[error("a sync of the event log has been running for {0:?}")]
    SyncStalled(Duration),
    /// The store's files are gone or replaced.
    #[error("{0}")]
    Gone(Moved),
    /// The log's volume has no room for the next records.
    #[error("{0}")]
    NoRoom(String),
    /// The index (sled) failed to write, and takes no more writes until hookgate restarts.
    #[error("the index failed to write ({0}); restart hookgate once the cause (e.g. a full disk) is fixed")]
    IndexFailed(String),
    /// The index does not answer reads.
    #[error("the index does not answer")]
    Unresponsive,
}

/// Removes expired dedup marks every `every` until `shutdown` is cancelled.
pub(crate) async fn purge_loop(store: Store, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let purging = store.clone();
        let result = tokio::task::spawn_blocking(move || purging.purge_expired(SystemTime::now()))
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(Box::new(e))));
        match result {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!(crate::telemetry::DEDUP_PURGED).increment(n as u64);
                tracing::debug!(purged = n, "expired dedup marks removed");
            }
            Err(e) => {
                metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "purge").increment(1);
                tracing::error!(error = %e, "purging expired dedup marks failed");
            }
        }
    }
}

/// Removes delivered events older than `retention` until `shutdown` is cancelled, looking every
/// quarter of the retention (at least every 50 ms, at most every minute) so that a short retention
/// is honoured closely.
pub(crate) async fn retention_loop(
    store: Store,
    retention: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let every = retention_period(retention);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let cutoff = unix_ms(SystemTime::now()).saturating_sub(retention.as_millis() as u64);
        let purging = store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let purged = purging.purge_delivered(cutoff)?;
            match purging.collect_segments() {
                Ok(0) => {}
                Ok(n) => tracing::debug!(segments = n, "unreferenced event-log segments removed"),
                Err(e) => {
                    metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "collect_segments")
                        .increment(1);
                    tracing::error!(error = %e, "removing unreferenced event-log segments failed");
                }
            }
            Ok::<_, StoreError>(purged)
        })
        .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                metrics::counter!(crate::telemetry::DELIVERED_PURGED).increment(n as u64);
                tracing::debug!(purged = n, "delivered events past the retention removed");
            }
            Ok(Err(e)) => {
                metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "purge_delivered")
                    .increment(1);
                tracing::error!(error = %e, "purging delivered events failed");
            }
            Err(e) => tracing::error!(error = %e, "the retention purge task failed"),
        }
    }
}

/// How often [`retention_loop`] looks.
fn retention_period(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(50), Duration::from_secs(60))
}

/// Milliseconds since the Unix epoch, 0 before it.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
