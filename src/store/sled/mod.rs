//! The embedded backend (the default): an append-only event log for bodies and a sled tree for the
//! indexes, behind a group commit. See `docs/storage.md` for the design and the promises.
//!
//! [`SledStore`] is what [`Store`](super::Store) runs when `[store] backend = "sled"`. Its admin-side
//! methods block (they wait for the commit thread to settle fresh events): the contract in
//! `store/mod.rs` calls them on a blocking thread. Nothing outside this folder names a sled type.

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

mod backend;
mod commit;
mod log;
mod place;

pub use self::place::Moved;

use self::{
    backend::{Applied, GroupWrite, SledBackend},
    commit::{Committer, Engine},
};
#[cfg(test)]
use super::DEFAULT_CACHE_BYTES;
use super::{
    unix_ms, Accepted, AttemptRecord, Counts, DueBatch, EventQuery, EventRecord, NewEvent, NextStep,
    NotReady, StateFilter, StoreError, Wakers,
};

/// How many entries one purge batch removes at most.
const PURGE_CHUNK: usize = 512;

/// The sled backend's store. Cheap to clone.
///
/// Every write runs on the store's commit thread, so that sled has a single writer: concurrent writers
/// make sled rewrite more (measured: twice the bytes per event). Accepted events wait there briefly
/// before they reach the tree (see `backend.rs`, "Settling"), so the admin API's reads and writes (`list`,
/// the counts, `replay`, `delete`, the purges) first wait for that thread to settle them: call them from
/// a thread that may block, never a runtime thread. The forwarder's `due` and `load` never wait.
#[derive(Clone)]
pub(crate) struct SledStore {
    // Dropped first: the last handle waits for the commit thread, which holds the engine too.
    commit: Arc<Committer<SledBackend>>,
    backend: Arc<SledBackend>,
    wakers: Wakers,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`.
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::open`] with an index page cache of `cache_bytes` (`[store] cache_size`).
    pub(crate) fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::start(SledBackend::open(path, log::SEGMENT_BYTES, cache_bytes)?)
    }

    /// [`SledStore::open`] with event-log segments of `segment_bytes`.
    #[cfg(test)]
    fn open_with(path: &Path, segment_bytes: u64) -> Result<Self, StoreError> {
        Self::start(SledBackend::open(path, segment_bytes, DEFAULT_CACHE_BYTES)?)
    }

    /// [`SledStore::open`] with fresh events that settle only after `age` (or when a read needs them).
    #[cfg(test)]
    fn open_settling_after(path: &Path, age: Duration) -> Result<Self, StoreError> {
        let backend = SledBackend::open(path, log::SEGMENT_BYTES, DEFAULT_CACHE_BYTES)?;
        Self::start(backend.settling_after(age))
    }

    /// [`SledStore::open`] with fresh events that settle after `age`, and those still queued after up to
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
            wakers: Wakers::default(),
        })
    }

    /// The wake-ups of the sources' forwarders, which this store notifies when it queues an event.
    pub(crate) fn wakers(&self) -> &Wakers {
        &self.wakers
    }

    fn wake(&self, source: &str) {
        self.wakers.wake(source);
    }

    /// Accepts a verified event at time `now`: if its id is new within `window`, writes the dedup mark
    /// and the queued event in one atomic batch. Returns once that write (or, for a duplicate, the first
    /// copy's) is on disk; a new event then wakes the source's forwarder.
    pub(crate) async fn accept(
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
            Applied::Recorded | Applied::NotDuplicate => {
                unreachable!("an accept is answered with its outcome")
            }
        }
    }

    /// Whether `event`'s id is taken within its window at `now`, answered once the first copy is
    /// durable, as [`SledStore::accept`] answers a duplicate; a new id is not written.
    pub(crate) async fn accept_duplicate(
        &self,
        event: &NewEvent<'_>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let now_ms = unix_ms(now);
        let write = self
            .backend
            .prepare_accept(event, now_ms, now_ms)?
            .duplicate_only();
        match self
            .commit
            .write(GroupWrite::Accept(Box::new(write)), true)
            .await?
        {
            Applied::Accept(Accepted::Duplicate) => Ok(true),
            Applied::NotDuplicate => Ok(false),
            Applied::Refused(e) => {
                metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "accept").increment(1);
                Err(e)
            }
            Applied::Accept(Accepted::New(_)) | Applied::Recorded => {
                unreachable!("a duplicate-only accept writes nothing")
            }
        }
    }

    /// How many events are queued: kept by the commit thread, never counted on the way.
    pub(crate) fn queued(&self) -> u64 {
        self.backend.queued()
    }

    /// [`SledStore::due`] for a runtime thread: a read of the tree (which may wait on the disk) runs on
    /// a blocking thread; a source whose schedule holds nothing in the tree is answered from memory.
    pub(crate) async fn due_async(
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

    /// [`SledStore::load`] for a runtime thread: an event whose body is still in memory is answered at
    /// once; reading the tree or the event log runs on a blocking thread.
    pub(crate) async fn load_async(
        &self,
        seq: u64,
    ) -> Result<Option<(EventRecord, bytes::Bytes)>, StoreError> {
        if let Some(loaded) = self.backend.load_from_memory(seq) {
            return Ok(Some(loaded));
        }
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || backend.load(seq))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    #[cfg(test)]
    /// Events of `source` due at `now_ms`, at most `limit`, skipping those in `skip` (in flight).
    /// May read the tree: on a runtime thread, use [`SledStore::due_async`].
    pub(crate) fn due(
        &self,
        source: &str,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<DueBatch, StoreError> {
        self.backend.due(source, now_ms, limit, skip)
    }

    #[cfg(test)]
    /// An event's metadata and body; `None` if it is no longer stored. Reads the tree or the event
    /// log unless the event is in memory: on a runtime thread, use [`SledStore::load_async`].
    pub(crate) fn load(&self, seq: u64) -> Result<Option<(EventRecord, bytes::Bytes)>, StoreError> {
        self.backend.load(seq)
    }

    /// Records a delivery attempt and what follows it, atomically. Like every write but the accepts,
    /// it runs on the commit thread (one writer keeps sled's write amplification down) and is made
    /// durable by a later flush: lost in a crash, it only means the attempt is made again.
    pub(crate) async fn record_attempt(
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
    pub(crate) fn purge_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        let now_ms = unix_ms(now);
        self.in_chunks(move |backend| backend.purge_expired(now_ms, PURGE_CHUNK))
    }

    /// Queued, dead and delivered events, counted (from the indexes; no record is decoded).
    pub(crate) fn counts(&self) -> Result<Counts, StoreError> {
        self.settled()?;
        self.backend.counts()
    }

    /// [`SledStore::counts`] without settling the events that wait in memory first (it counts them where
    /// they are): for `/metrics`, so that a scrape does not hold up acceptance. Events that change
    /// state meanwhile are counted once, in one of their states.
    pub(crate) fn counts_now(&self) -> Result<Counts, StoreError> {
        self.backend.counts()
    }

    /// [`SledStore::counts`] per source name; a source without stored events is absent.
    pub(crate) fn counts_by_source(&self) -> Result<HashMap<String, Counts>, StoreError> {
        self.settled()?;
        self.backend.counts_by_source()
    }

    /// The events that match `query` with their sequence numbers, newest first (highest sequence
    /// number first, which is the order of acceptance), at most `query.limit`.
    pub(crate) fn list(&self, query: &EventQuery) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        self.settled()?;
        self.backend.list(query)
    }

    /// Puts event `seq` back in the queue, due at `now`, whatever its state (a queued event becomes
    /// due now). Its attempt history is kept, so the attempt counter continues; its dedup mark is not
    /// consulted. Wakes the source's forwarder. Returns false if the event is not stored.
    pub(crate) fn replay(&self, seq: u64, now: SystemTime) -> Result<bool, StoreError> {
        let now_ms = unix_ms(now);
        match self.on_commit_thread(move |backend| backend.replay(seq, now_ms))? {
            Some(source) => {
                self.wake(&source);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// [`SledStore::replay`] for every event that matches `query`; returns how many were replayed.
    pub(crate) fn replay_where(&self, query: &EventQuery, now: SystemTime) -> Result<usize, StoreError> {
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
    pub(crate) fn delete(&self, seq: u64) -> Result<bool, StoreError> {
        self.on_commit_thread(move |backend| backend.delete(seq))
    }

    /// Removes the dead letters that match `query` (its `state` is ignored: only dead letters go);
    /// returns how many.
    pub(crate) fn purge_dead(&self, query: &EventQuery) -> Result<usize, StoreError> {
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
    pub(crate) fn purge_delivered(&self, older_than_ms: u64) -> Result<usize, StoreError> {
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
    pub(crate) fn collect_segments(&self) -> Result<usize, StoreError> {
        self.on_commit_thread(SledBackend::collect_segments)
    }

    /// Flushes everything to disk now.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.commit.flush().await
    }

    /// Whether an event can be made durable now, and why not (for `/readyz`). Blocks briefly (a few
    /// `stat` calls and an index read): call it from a thread that may block.
    pub(crate) fn readiness(&self) -> Result<(), NotReady> {
        self.backend.readiness()
    }
}

#[cfg(test)]
mod tests;
