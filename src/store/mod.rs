//! Durable storage: dedup marks, the delivery queue and dead letters, behind one narrow contract.
//!
//! [`Store`] is that contract. The request path, the forwarder, the admin API and the CLI (through the
//! admin API) use only it and never know which backend runs: `[store] backend` picks the embedded
//! sled backend (`sled/`, the default) or, for several replicas that act as one, PostgreSQL
//! (`postgres/`). Every method that may wait on a disk or a network is `async`; the sled backend runs
//! its blocking parts on a blocking thread, so no caller ever blocks a runtime thread.
//!
//! The accept path calls [`Store::accept`], which checks the event's dedup mark and, if the id is new,
//! writes the mark and the queued event **together**, atomically: written apart, a crash between the
//! two would turn the sender's retry into a "duplicate" and lose the event. `accept` returns only once
//! the write is durable, through a group commit (the accepts that wait share one flush or one
//! transaction), and a duplicate's answer waits for the first copy's durability.
//!
//! The forwarder claims due events with [`Store::due`], loads them with [`Store::load`] and records
//! each attempt with [`Store::record_attempt`]. A delivered event is kept, body and history included,
//! for the configured retention so that it can be inspected and replayed; [`retention_loop`] then
//! purges it.
//!
//! The admin API lists events with [`Store::list`], puts them back in the queue with [`Store::replay`]
//! and [`Store::replay_where`] (which bypass dedup: the event is already stored), and removes them with
//! [`Store::delete`] and [`Store::purge_dead`].
//!
//! The store wakes a source's forwarder itself whenever it takes an event for it: a new event in
//! [`Store::accept`] (not a duplicate), and every replay (with PostgreSQL, also another replica's,
//! through LISTEN/NOTIFY). The forwarder waits on [`Store::waker`], one `Notify` per source name for
//! the store's life, so nothing else carries wake-ups around.
//!
//! One contract test suite (`contract_tests.rs`) runs the same tests against every backend.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

mod attempt;
mod postgres;
mod sled;

#[cfg(test)]
mod contract_tests;

pub use self::attempt::{AttemptResult, UnknownAttemptResult};
pub use self::sled::Moved;

use self::{postgres::PgStore, sled::SledStore};

/// Where the PostgreSQL store at `url` is, for logs and messages: `host:port/dbname`, never the user
/// or the password; or why `url` is not a PostgreSQL URL (the reason does not repeat the URL).
pub fn describe_postgres_url(url: &str) -> Result<String, StoreError> {
    postgres::Connector::new(url).map(|c| c.describe())
}

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
    /// The database does not answer or refused the operation (a network backend: PostgreSQL down,
    /// unreachable, or the connection lost). Nothing was acknowledged; the store recovers by itself
    /// once the database is back.
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database's schema was written by a newer hookgate.
    #[error("the database's hookgate schema is version {found}, newer than this hookgate knows ({known}); run the newer hookgate, or restore the database")]
    NewerSchema {
        /// The version found.
        found: u32,
        /// The newest version this hookgate knows.
        known: u32,
    },
    /// `[store] url` is not a PostgreSQL URL (the reason never shows the URL).
    #[error("{0}")]
    BadUrl(String),
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

/// The index's page cache of the sled backend unless configured (`[store] cache_size`). sled's default
/// is 1 GiB; the tree holds no bodies, the queue is read sequentially and fresh events are served from
/// memory, so a small cache suffices. Measured: 4 MiB rather than 8 kept about 6 MiB less resident
/// under the 1 KiB load benchmark at the same speed, but delivered a backlog from the tree about 10%
/// more slowly.
pub const DEFAULT_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// The wake-ups of the sources' forwarders: one `Notify` per source name, for the store's life (so also
/// across config reloads). Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Wakers(Arc<Mutex<HashMap<Arc<str>, Arc<Notify>>>>);

impl Wakers {
    /// `source`'s wake-up, made on first use.
    pub(crate) fn get(&self, source: &str) -> Arc<Notify> {
        let mut wakers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = wakers.get(source) {
            return w.clone();
        }
        let w = Arc::new(Notify::new());
        wakers.insert(Arc::from(source), w.clone());
        w
    }

    /// Wakes `source`'s forwarder (a permit is kept if it is not waiting).
    pub(crate) fn wake(&self, source: &str) {
        self.get(source).notify_one();
    }

    /// Wakes every forwarder that has a wake-up: when wake-ups may have been missed.
    pub(crate) fn wake_all(&self) {
        let wakers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for w in wakers.values() {
            w.notify_one();
        }
    }
}

/// A job that runs every so often and, with several replicas on one database, once across them
/// ([`Store::claim_job`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Job {
    /// Removing expired dedup marks.
    PurgeMarks,
    /// Removing delivered events past the retention.
    PurgeDelivered,
}

/// The gateway's durable store: the one contract over every backend. Cheap to clone.
///
/// An enum rather than a trait object: the accept path's future is the backend's own, with no box,
/// and a `match` picks it.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sled(SledStore),
    Postgres(PgStore),
}

/// Runs a blocking call of the sled backend on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
}

impl Store {
    /// Opens (or creates) the sled store in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with an index page cache of `cache_bytes` (`[store] cache_size`).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Ok(Self::from(SledStore::open_with_cache(path, cache_bytes)?))
    }

    /// Opens the PostgreSQL store at `url` (the schema `hookgate` of its database, created or
    /// migrated now) with a pool of `pool_size` connections.
    pub async fn open_postgres(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Postgres(PgStore::open(url, pool_size).await?),
        })
    }

    /// The wake-up of `source`'s forwarder: the same `Notify` for the same name, for the store's life
    /// (so also across config reloads). The store notifies it when it queues an event of `source`
    /// (accept, replay); the forwarder waits on it.
    pub fn waker(&self, source: &str) -> Arc<Notify> {
        self.wakers().get(source)
    }

    fn wakers(&self) -> &Wakers {
        match &self.backend {
            Backend::Sled(s) => s.wakers(),
            Backend::Postgres(p) => p.wakers(),
        }
    }

    /// Accepts a verified event at time `now`: if its id is new within `window`, writes the dedup mark
    /// and the queued event in one atomic write. Returns once that write (or, for a duplicate, the first
    /// copy's) is durable; a new event then wakes the source's forwarder.
    pub async fn accept(
        &self,
        event: &NewEvent<'_>,
        now: SystemTime,
        window: Duration,
    ) -> Result<Accepted, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.accept(event, now, window).await,
            Backend::Postgres(p) => p.accept(event, now, window).await,
        }
    }

    /// Whether `event`'s id was seen within the dedup window at `now`: answered like [`Store::accept`]
    /// answers a duplicate (once the first copy is durable), but a new id is not stored. For the accept
    /// path when the queue is full (`[store] max_queued`), where a sender's retry of an event already
    /// stored is still answered 200.
    pub async fn accept_duplicate(&self, event: &NewEvent<'_>, now: SystemTime) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.accept_duplicate(event, now).await,
            Backend::Postgres(p) => p.accept_duplicate(event, now).await,
        }
    }

    /// How many events are queued (accepted, not yet delivered or dead), across sources. Cheap enough
    /// for every request: a backend keeps this count as events enter and leave the queue (accept,
    /// delivery, dead letter, replay, delete) rather than counting. Under concurrent writes it may
    /// lag them by a moment.
    pub fn queued(&self) -> u64 {
        match &self.backend {
            Backend::Sled(s) => s.queued(),
            Backend::Postgres(p) => p.queued(),
        }
    }

    /// Claims events of `source` due at `until_ms` (`u64::MAX`: every queued one), at most `limit`,
    /// oldest due first, passing over those in `skip` (claimed already). A network backend leases each
    /// claimed event for `lease`, so that no other replica takes it meanwhile; an embedded one has a
    /// single forwarder per source and ignores it.
    pub async fn due(
        &self,
        source: &str,
        until_ms: u64,
        limit: usize,
        skip: HashSet<u64>,
        lease: Duration,
    ) -> Result<DueBatch, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                s.due_async(source, until_ms, limit, move |seq| skip.contains(&seq))
                    .await
            }
            Backend::Postgres(p) => p.due(source, until_ms, limit, skip, lease).await,
        }
    }

    /// Gives back claimed events that will not be delivered now (their leases end at once), so that
    /// they are due again at their own times.
    pub async fn release(&self, seqs: Vec<u64>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(_) => {
                let _ = seqs;
                Ok(())
            }
            Backend::Postgres(p) => p.release(seqs).await,
        }
    }

    /// An event's metadata and body; `None` if it is no longer stored.
    pub async fn load(&self, seq: u64) -> Result<Option<(EventRecord, bytes::Bytes)>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.load_async(seq).await,
            Backend::Postgres(p) => p.load(seq).await,
        }
    }

    /// Records a delivery attempt and what follows it, atomically, and ends the event's lease. Made
    /// durable by a later flush at the latest: lost in a crash, it only means the attempt is made again.
    pub async fn record_attempt(
        &self,
        seq: u64,
        attempt: AttemptRecord,
        next: NextStep,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.record_attempt(seq, attempt, next).await,
            Backend::Postgres(p) => p.record_attempt(seq, attempt, next).await,
        }
    }

    /// Queued, dead and delivered events, counted.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let s = s.clone();
                blocking(move || s.counts()).await
            }
            Backend::Postgres(p) => p.counts().await,
        }
    }

    /// [`Store::counts`] as cheaply as the backend can (for `/metrics`, so that a scrape does not
    /// hold up acceptance): the sled backend counts the events that wait in memory where they are,
    /// without settling them. Events that change state meanwhile are counted once, in one state.
    pub async fn counts_now(&self) -> Result<Counts, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let s = s.clone();
                blocking(move || s.counts_now()).await
            }
            Backend::Postgres(p) => p.counts().await,
        }
    }

    /// [`Store::counts`] per source name; a source without stored events is absent.
    pub async fn counts_by_source(&self) -> Result<HashMap<String, Counts>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let s = s.clone();
                blocking(move || s.counts_by_source()).await
            }
            Backend::Postgres(p) => p.counts_by_source().await,
        }
    }

    /// The events that match `query` with their sequence numbers, newest first (highest sequence
    /// number first, which is the order of acceptance), at most `query.limit`.
    pub async fn list(&self, query: &EventQuery) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let (s, query) = (s.clone(), query.clone());
                blocking(move || s.list(&query)).await
            }
            Backend::Postgres(p) => p.list(query).await,
        }
    }

    /// Puts event `seq` back in the queue, due at `now`, whatever its state (a queued event becomes
    /// due now). Its attempt history is kept, so the attempt counter continues; its dedup mark is not
    /// consulted. Wakes the source's forwarder. Returns false if the event is not stored.
    pub async fn replay(&self, seq: u64, now: SystemTime) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let s = s.clone();
                blocking(move || s.replay(seq, now)).await
            }
            Backend::Postgres(p) => p.replay(seq, now).await,
        }
    }

    /// [`Store::replay`] for every event that matches `query`; returns how many were replayed.
    pub async fn replay_where(&self, query: &EventQuery, now: SystemTime) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let (s, query) = (s.clone(), query.clone());
                blocking(move || s.replay_where(&query, now)).await
            }
            Backend::Postgres(p) => p.replay_where(query, now).await,
        }
    }

    /// Removes event `seq` (metadata, body, indexes), whatever its state. Its dedup mark stays, so a
    /// sender's retry of it is still a duplicate. Returns false if the event is not stored.
    pub async fn delete(&self, seq: u64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let s = s.clone();
                blocking(move || s.delete(seq)).await
            }
            Backend::Postgres(p) => p.delete(seq).await,
        }
    }

    /// Removes the dead letters that match `query` (its `state` is ignored: only dead letters go);
    /// returns how many.
    pub async fn purge_dead(&self, query: &EventQuery) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let (s, query) = (s.clone(), query.clone());
                blocking(move || s.purge_dead(&query)).await
            }
            Backend::Postgres(p) => p.purge_dead(query).await,
        }
    }

    /// Removes dedup marks that expired before `now`; returns how many.
    pub async fn purge_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let s = s.clone();
                blocking(move || s.purge_expired(now)).await
            }
            Backend::Postgres(p) => p.purge_expired(now).await,
        }
    }

    /// Removes delivered events delivered before Unix millisecond `older_than_ms`, then the space
    /// that only they held; returns how many. Queued and dead events are never touched.
    pub async fn purge_delivered(&self, older_than_ms: u64) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let s = s.clone();
                blocking(move || {
                    let purged = s.purge_delivered(older_than_ms)?;
                    match s.collect_segments() {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(segments = n, "unreferenced event-log segments removed"),
                        Err(e) => {
                            metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "collect_segments")
                                .increment(1);
                            tracing::error!(error = %e, "removing unreferenced event-log segments failed");
                        }
                    }
                    Ok(purged)
                })
                .await
            }
            Backend::Postgres(p) => p.purge_delivered(older_than_ms).await,
        }
    }

    /// Whether this replica should run `job` now, `every` being its period: always with a store of
    /// its own; with a shared database, for one replica per period (the one that claims it).
    pub(crate) async fn claim_job(&self, job: Job, every: Duration) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sled(_) => {
                let _ = (job, every);
                Ok(true)
            }
            Backend::Postgres(p) => p.claim_job(job, every).await,
        }
    }

    /// Makes everything written durable now (on shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.flush().await,
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Whether an event can be made durable now, and why not (for `/readyz`).
    pub async fn readiness(&self) -> Result<(), NotReady> {
        match &self.backend {
            Backend::Sled(s) => {
                let s = s.clone();
                tokio::task::spawn_blocking(move || s.readiness())
                    .await
                    .unwrap_or(Err(NotReady::Unresponsive))
            }
            Backend::Postgres(p) => p.readiness().await,
        }
    }
}

impl From<SledStore> for Store {
    fn from(s: SledStore) -> Self {
        Self {
            backend: Backend::Sled(s),
        }
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
    /// The database does not answer (a network backend).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

/// Removes expired dedup marks every `every` until `shutdown` is cancelled (with a shared database,
/// once per period across the replicas).
pub(crate) async fn purge_loop(store: Store, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let result = match store.claim_job(Job::PurgeMarks, every).await {
            Ok(true) => store.purge_expired(SystemTime::now()).await,
            Ok(false) => continue,
            Err(e) => Err(e),
        };
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
/// is honoured closely (with a shared database, once per period across the replicas).
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
        let result = match store.claim_job(Job::PurgeDelivered, every).await {
            Ok(true) => store.purge_delivered(cutoff).await,
            Ok(false) => continue,
            Err(e) => Err(e),
        };
        match result {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!(crate::telemetry::DELIVERED_PURGED).increment(n as u64);
                tracing::debug!(purged = n, "delivered events past the retention removed");
            }
            Err(e) => {
                metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "purge_delivered")
                    .increment(1);
                tracing::error!(error = %e, "purging delivered events failed");
            }
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
