//! Durable storage: dedup marks, the delivery queue and dead letters, behind a narrow API.
//!
//! The accept path calls [`Store::accept`], which checks the event's dedup mark and, if the id is new,
//! writes the mark and the queued event **in one transaction**: written apart, a crash between the two
//! would turn the sender's retry into a "duplicate" and lose the event. `accept` returns only once the
//! write is fsynced, through a group commit: one flush acknowledges every write made before it started,
//! so throughput grows with concurrency instead of paying one fsync per request. A duplicate waits for
//! the same kind of flush, so its 200 never precedes the first copy's durability.
//!
//! The forwarder reads due events with [`Store::due`], loads them with [`Store::load`] and records each
//! attempt with [`Store::record_attempt`]. Nothing outside `store/sled.rs` names a sled type.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

mod sled;

use self::sled::SledBackend;

/// Why the store could not do what was asked. The accept path answers 503 to all of them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (I/O, corruption).
    #[error("storage failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The group commit's fsync failed; the event may not be durable.
    #[error("flushing to disk failed")]
    Flush(#[source] Arc<dyn std::error::Error + Send + Sync>),
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
    /// The exact body bytes.
    pub body: &'a [u8],
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
}

/// One delivery attempt, kept in the event's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// When the attempt ended, Unix milliseconds.
    pub at_ms: u64,
    /// The app's status, if it answered.
    pub status: Option<u16>,
    /// What was decided and why, e.g. `retry: status 503`.
    pub outcome: String,
}

/// What follows an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered: the event leaves the queue.
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
}

/// The gateway's durable store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<SledBackend>,
    commit: Arc<GroupCommit>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let backend = Arc::new(SledBackend::open(path)?);
        Ok(Self {
            backend,
            commit: Arc::new(GroupCommit::new()),
        })
    }

    /// Accepts a verified event at time `now`: if its id is new within `window`, writes the dedup mark
    /// and the queued event in one transaction. Returns once that write (or, for a duplicate, the first
    /// copy's) is on disk.
    pub async fn accept(
        &self,
        event: &NewEvent<'_>,
        now: SystemTime,
        window: Duration,
    ) -> Result<Accepted, StoreError> {
        let now_ms = unix_ms(now);
        let expires_ms = now_ms.saturating_add(window.as_millis() as u64);
        let accepted = self.backend.accept(event, now_ms, expires_ms)?;
        let ticket = self.commit.ticket();
        let backend = self.backend.clone();
        self.commit.durable(ticket, move || backend.flush()).await?;
        Ok(accepted)
    }

    /// Events of `source` due at `now_ms`, at most `limit`, skipping those in `skip` (in flight).
    pub fn due(
        &self,
        source: &str,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<DueBatch, StoreError> {
        self.backend.due(source, now_ms, limit, skip)
    }

    /// An event's metadata and body; `None` if it is no longer stored.
    pub fn load(&self, seq: u64) -> Result<Option<(EventRecord, Vec<u8>)>, StoreError> {
        self.backend.load(seq)
    }

    /// Records a delivery attempt and what follows it, atomically.
    pub fn record_attempt(&self, seq: u64, attempt: AttemptRecord, next: NextStep) -> Result<(), StoreError> {
        self.backend.record_attempt(seq, attempt, next)
    }

    /// Removes dedup marks that expired before `now`; returns how many.
    pub fn purge_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        self.backend.purge_expired(unix_ms(now))
    }

    /// Dead-lettered events, oldest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        self.backend.dead_letters(limit)
    }

    /// Queued and dead events, counted.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.backend.counts()
    }

    /// Flushes everything to disk now.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let ticket = self.commit.ticket();
        let backend = self.backend.clone();
        self.commit.durable(ticket, move || backend.flush()).await
    }

    /// Whether the store still answers (for readiness).
    pub fn is_healthy(&self) -> bool {
        self.backend.is_healthy()
    }
}

/// Removes expired dedup marks every `every` until `shutdown` is cancelled.
pub(crate) async fn purge_loop(store: Store, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match store.purge_expired(SystemTime::now()) {
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

/// Milliseconds since the Unix epoch, 0 before it.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// === impl GroupCommit ===

/// Leader-based group commit.
///
/// Each writer takes a ticket after its write is visible in memory, then waits until a flush that
/// started after its ticket has finished. If no flush is running, the waiter starts one (it becomes the
/// leader); writers that arrive during a flush all ride on the next one. The flush runs on a blocking
/// thread and publishes its own result, so a leader whose request is cancelled cannot stall the others.
struct GroupCommit {
    /// Tickets handed out so far.
    written: AtomicU64,
    /// Whether a flush is running.
    flushing: AtomicBool,
    state: watch::Sender<CommitState>,
}

#[derive(Debug, Clone, Default)]
struct CommitState {
    /// Every ticket up to this one is on disk.
    durable: u64,
    /// The last failed flush covered tickets up to this one.
    failed: u64,
    error: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl GroupCommit {
    fn new() -> Self {
        Self {
            written: AtomicU64::new(0),
            flushing: AtomicBool::new(false),
            state: watch::Sender::new(CommitState::default()),
        }
    }

    /// A ticket for a write that is already visible in memory.
    fn ticket(&self) -> u64 {
        self.written.fetch_add(1, Ordering::AcqRel) + 1
    }

    async fn durable<F>(self: &Arc<Self>, ticket: u64, flush: F) -> Result<(), StoreError>
    where
        F: Fn() -> Result<(), StoreError> + Send + Sync + 'static,
    {
        let flush = Arc::new(flush);
        let mut rx = self.state.subscribe();
        loop {
            {
                let state = rx.borrow_and_update();
                if state.durable >= ticket {
                    return Ok(());
                }
                if state.failed >= ticket {
                    let err = state.error.clone().expect("a failed flush records its error");
                    return Err(StoreError::Flush(err));
                }
            }
            if !self.flushing.swap(true, Ordering::AcqRel) {
                self.lead(flush.clone());
            }
            if rx.changed().await.is_err() {
                unreachable!("the sender lives in self");
            }
        }
    }

    fn lead<F>(self: &Arc<Self>, flush: Arc<F>)
    where
        F: Fn() -> Result<(), StoreError> + Send + Sync + 'static,
    {
        let this = self.clone();
        // Every ticket up to `target` belongs to a write made before this flush starts.
        let target = self.written.load(Ordering::Acquire);
        tokio::task::spawn_blocking(move || {
            let result = flush();
            // Drop the flush (and its handle on the database) before anyone can learn that it ran, so
            // that a store dropped right after its last commit really is closed, and can be reopened.
            drop(flush);
            // Reset before publishing, so that a woken waiter with a later ticket can lead the next one.
            this.flushing.store(false, Ordering::Release);
            this.state.send_modify(|s| match result {
                Ok(()) => s.durable = s.durable.max(target),
                Err(e) => {
                    s.failed = s.failed.max(target);
                    s.error = Some(match e {
                        StoreError::Flush(inner) => inner,
                        other => Arc::new(other),
                    });
                }
            });
        });
    }
}

#[cfg(test)]
mod tests;
