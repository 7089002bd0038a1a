//! The group commit: one thread owns every store write, another makes them durable.
//!
//! Request tasks prepare their write (keys and encoded values) themselves, send it to the commit thread
//! and wait on their own reply channel. The commit thread takes every write that is waiting (accepts,
//! and the forwarder's delivery outcomes) and applies them as **one** atomic batch (each event's dedup
//! check, mark and queue entry together); a write that need not be durable (a delivery outcome) is
//! answered as soon as it is applied. Other writes (the admin API's, the purges) run on the same thread
//! as closures, in order with the rest.
//!
//! Durability is pipelined: the commit thread writes a batch out and hands its sync (one `fdatasync`)
//! and its writers' answers to the sync thread, which answers them once the sync returns. While that
//! sync runs, the commit thread does its deferred work (settling) and applies what has arrived, then
//! waits for the sync to end, and starts no other sync meanwhile: what arrived is written out and synced
//! as the next group the moment the sync under way ends. So one sync acknowledges a whole group, a
//! writer is never answered by a sync that started before its write, and the commit thread's work
//! overlaps the disk's wait instead of adding to it.
//!
//! Because one thread checks and applies, two copies of the same event cannot both be new: the second
//! sees the first's mark. A duplicate is answered only after the sync of its group, which starts after
//! the sync that covers its first copy has ended, so its 200 never precedes the first copy's
//! durability. A failed sync fails every writer of its group (503); whether a later group may try again
//! is the engine's call (the event log refuses: see `LogWriter::sync_later`).
//!
//! Compared with writers that each run their own transaction and then elect a flush leader, this
//! costs one channel send and one wake-up per request, one batch and one sync per group, and no
//! contention on the storage engine's locks: the engine has a single writer.

use std::{
    sync::{mpsc, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use crate::store::StoreError;

/// A sync that makes the writes before it durable; it runs on the sync thread.
pub(super) type DeferredSync = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;

/// What the commit thread drives: the storage engine's batch write and sync.
pub(super) trait Engine: Send + Sync + 'static {
    /// One prepared write.
    type Write: Send + 'static;
    /// What a write did.
    type Outcome: Send + 'static;

    /// Applies `writes` in order as one atomic batch (in memory, not yet durable) and says what each
    /// did.
    fn apply(&self, writes: Vec<Self::Write>) -> Result<Vec<Self::Outcome>, StoreError>;

    /// Writes out every applied accept and returns the sync that makes them durable (`None` if all
    /// are durable already). The sync may run on another thread while the engine applies more; it
    /// covers every write applied before this call.
    fn sync_later(&self) -> Result<Option<DeferredSync>, StoreError>;

    /// Makes every applied write durable, accepts and all others, before it returns.
    fn flush(&self) -> Result<(), StoreError>;

    /// Finishes work that the engine deferred, if `now` or if it is due; returns how long the work
    /// still deferred may wait. The thread calls it while a sync runs and after handing one over (so
    /// that it never delays an answer), when it would otherwise wait for jobs, and before it stops.
    fn settle(&self, now: bool) -> Result<Option<Duration>, StoreError> {
        let _ = now;
        Ok(None)
    }
}

/// The most writes in one batch (bounds the batch's memory and the first writer's wait).
const MAX_BATCH: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
/// A write's outcome before the sync, shared by the group when it failed.
type Pending<T> = Result<T, Arc<StoreError>>;
/// A writer waiting for the sync, with its outcome so far.
type Waiting<T> = (Reply<T>, Pending<T>);

enum Job<E: Engine> {
    /// A write and whether its answer waits for the sync.
    Write(E::Write, Reply<E::Outcome>, bool),
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// Any other write: runs on the commit thread, in order with the accepts, and answers itself.
    Run(Box<dyn FnOnce(&E) + Send>),
}

/// A group handed to the sync thread: its sync, and the writers it answers.
struct Group<T> {
    sync: DeferredSync,
    waiting: Vec<Waiting<T>>,
}

/// The handle on the commit thread. Dropping it lets the thread finish its batch and waits for it, so
/// that the engine is released when the last handle goes.
pub(super) struct Committer<E: Engine> {
    jobs: Option<mpsc::Sender<Job<E>>>,
    threads: Vec<JoinHandle<()>>,
}

impl<E: Engine> Committer<E> {
    /// Starts the commit thread over `engine`, and its sync thread.
    pub(super) fn start(engine: Arc<E>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let (groups_tx, groups_rx) = mpsc::channel::<Group<E::Outcome>>();
        let (synced_tx, synced_rx) = mpsc::channel();
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            let what = name.to_owned();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    // Without these threads nothing can be stored: rather than answer 503 until someone
                    // notices, stop; every accepted event is in the event log and comes back at the next
                    // start. (The panic hook has already printed the cause.)
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
                        eprintln!("hookgate: the store's {what} thread panicked; aborting (accepted events are recovered from the event log at the next start)");
                        std::process::abort();
                    }
                })
                .map_err(|e| StoreError::Backend(Box::new(e)))
        };
        let syncer = spawn(
            "hookgate-sync",
            Box::new(move || sync_groups(&groups_rx, &synced_tx)),
        )?;
        let commit = spawn(
            "hookgate-commit",
            Box::new(move || run(&*engine, &rx, &groups_tx, &synced_rx)),
        )?;
        Ok(Self {
            jobs: Some(tx),
            // The commit thread first: when it ends, it lets the sync thread go.
            threads: vec![commit, syncer],
        })
    }

    /// Applies `write` with the next batch; resolves once that batch is applied and, if `durable`,
    /// synced.
    pub(super) async fn write(&self, write: E::Write, durable: bool) -> Result<E::Outcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Write(write, tx, durable))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Resolves once everything written before the call, accepts and other writes, is durable.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Flush(tx))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Runs `write` on the commit thread, after every write sent before it, and returns its result
    /// without waiting for a sync. Blocks: never call it on a runtime thread.
    pub(super) fn run_blocking<T: Send + 'static>(
        &self,
        write: impl FnOnce(&E) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Run(Box::new(move |engine| {
            let _ = tx.send(write(engine));
        })))?;
        rx.recv().map_err(|_| StoreError::Stopped)?
    }

    fn send(&self, job: Job<E>) -> Result<(), StoreError> {
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or(StoreError::Stopped)
    }
}

impl<E: Engine> Drop for Committer<E> {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The commit thread: until every handle is gone, batch what is waiting, apply it, and hand the
/// writers that wait for durability to the sync thread, one group at a time. While a group syncs, the
/// thread settles, then waits for the sync to end: the writers that arrive meanwhile form the next group.
fn run<E: Engine>(
    engine: &E,
    jobs: &mpsc::Receiver<Job<E>>,
    groups: &mpsc::Sender<Group<E::Outcome>>,
    synced: &mpsc::Receiver<()>,
) {
    let mut batch = Vec::new();
    let mut waiting = Vec::new();
    let mut syncing = false;
    loop {
        if !syncing && waiting.is_empty() {
            let received = match settle(engine, false) {
                Some(wait) => jobs.recv_timeout(wait),
                None => jobs
                    .recv()
                    .map_err(|mpsc::RecvError| mpsc::RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(job) => batch.push(job),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    settle(engine, true);
                    return;
                }
            }
        }
        drain(jobs, &mut batch);
        apply(engine, &mut batch, &mut waiting);
        if syncing {
            if synced.recv().is_err() {
                return; // The sync thread is gone (it aborts the process when it fails).
            }
            syncing = false;
            // What arrived during the sync joins what was applied meanwhile.
            continue;
        }
        if !waiting.is_empty() {
            let group = std::mem::take(&mut waiting);
            match engine.sync_later() {
                Ok(Some(sync)) => match groups.send(Group { sync, waiting: group }) {
                    Ok(()) => syncing = true,
                    Err(mpsc::SendError(group)) => answer(group.waiting, &Err(Arc::new(StoreError::Stopped))),
                },
                // Already durable: the sync that covered them has ended.
                Ok(None) => answer(group, &Ok(())),
                Err(e) => answer(group, &Err(Arc::new(e))),
            }
        }
        // Deferred work overlaps the sync that was just handed over.
        settle(engine, false);
    }
}

/// The sync thread: runs each group's sync, answers its writers, then tells the commit thread.
fn sync_groups<T>(groups: &mpsc::Receiver<Group<T>>, synced: &mpsc::Sender<()>) {
    while let Ok(group) = groups.recv() {
        let started = Instant::now();
        let result = (group.sync)().map_err(Arc::new);
        if let Err(e) = &result {
            metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "sync").increment(1);
            tracing::error!(error = %e, writers = group.waiting.len(), "syncing accepted events failed: each is answered 503");
        }
        metrics::histogram!(crate::telemetry::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(crate::telemetry::COMMIT_BATCH).record(group.waiting.len() as f64);
        answer(group.waiting, &result);
        let _ = synced.send(());
    }
}

/// Answers writers that waited for a sync with its result: a write is durable only if it was applied
/// and then synced.
fn answer<T>(waiting: Vec<Waiting<T>>, synced: &Result<(), Arc<StoreError>>) {
    for (reply, outcome) in waiting {
        let outcome = outcome.and_then(|o| synced.clone().map(|()| o));
        let _ = reply.send(outcome.map_err(StoreError::Commit));
    }
}

/// [`Engine::settle`]; a failure is logged and the work is tried again a second later.
fn settle<E: Engine>(engine: &E, now: bool) -> Option<Duration> {
    engine.settle(now).unwrap_or_else(|e| {
        metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "settle").increment(1);
        tracing::error!(error = %e, "applying accepted events to the index failed; the event log keeps them");
        Some(Duration::from_secs(1))
    })
}

/// Moves every waiting job into `batch`, up to [`MAX_BATCH`].
fn drain<E: Engine>(jobs: &mpsc::Receiver<Job<E>>, batch: &mut Vec<Job<E>>) {
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Runs one batch in order and leaves it empty. Consecutive writes are applied together; `Run` jobs
/// run between them, in their place. A write that need not be durable is answered as soon as it is
/// applied, one that must joins `waiting`. A `Flush` makes everything durable at once, and answers
/// the waiting writers too.
fn apply<E: Engine>(engine: &E, batch: &mut Vec<Job<E>>, waiting: &mut Vec<Waiting<E::Outcome>>) {
    let mut writes = Writes::<E>::default();
    for job in batch.drain(..) {
        match job {
            Job::Write(write, reply, durable) => {
                writes.writes.push(write);
                writes.replies.push((reply, durable));
            }
            Job::Flush(reply) => {
                writes.apply(engine, waiting);
                let flushed = engine.flush().map_err(Arc::new);
                answer(std::mem::take(waiting), &flushed);
                let _ = reply.send(flushed.map_err(StoreError::Commit));
            }
            Job::Run(write) => {
                writes.apply(engine, waiting);
                write(engine);
            }
        }
    }
    writes.apply(engine, waiting);
}

/// Writes of a batch waiting to be applied together.
struct Writes<E: Engine> {
    writes: Vec<E::Write>,
    replies: Vec<(Reply<E::Outcome>, bool)>,
}

impl<E: Engine> Default for Writes<E> {
    fn default() -> Self {
        Self {
            writes: Vec::new(),
            replies: Vec::new(),
        }
    }
}

impl<E: Engine> Writes<E> {
    /// Applies the writes (if any): answers those that need no sync, adds the others to `waiting`.
    fn apply(&mut self, engine: &E, waiting: &mut Vec<Waiting<E::Outcome>>) {
        if self.writes.is_empty() {
            return;
        }
        let replies = std::mem::take(&mut self.replies);
        let outcomes: Vec<Pending<E::Outcome>> = match engine.apply(std::mem::take(&mut self.writes)) {
            Ok(applied) => applied.into_iter().map(Ok).collect(),
            Err(e) => {
                let e = Arc::new(e);
                replies.iter().map(|_| Err(e.clone())).collect()
            }
        };
        debug_assert_eq!(outcomes.len(), replies.len());
        for ((reply, durable), outcome) in replies.into_iter().zip(outcomes) {
            if durable {
                waiting.push((reply, outcome));
            } else {
                let _ = reply.send(outcome.map_err(StoreError::Commit));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    };

    use super::*;
    use crate::store::Accepted;

    /// An engine whose writes are event ids: a repeated id is a duplicate. It records every batch and
    /// can be made to fail or to block its flushes.
    impl Committer<Fake> {
        async fn accept_id(&self, id: u64) -> Result<Accepted, StoreError> {
            self.write(id, true).await
        }
    }

    #[derive(Default)]
    struct Fake {
        seen: Mutex<Vec<u64>>,
        batches: Mutex<Vec<usize>>,
        disk: Arc<Disk>,
    }

    /// The fake's syncs: counted, and made to fail or to block.
    #[derive(Default)]
    struct Disk {
        /// Whether a new id was applied since the last sync was handed out.
        unsynced: std::sync::atomic::AtomicBool,
        flushes: AtomicUsize,
        fail_next_flush: std::sync::atomic::AtomicBool,
        /// While set, a sync waits for a message on this channel.
        gate: Mutex<Option<mpsc::Receiver<()>>>,
        flush_started: Mutex<Option<mpsc::Sender<()>>>,
    }

    impl Disk {
        fn sync(&self) -> Result<(), StoreError> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            if let Some(started) = self.flush_started.lock().unwrap().as_ref() {
                let _ = started.send(());
            }
            if let Some(gate) = self.gate.lock().unwrap().as_ref() {
                let _ = gate.recv();
            }
            if self.fail_next_flush.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Corrupt { what: "test" });
            }
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        }
    }

    impl Engine for Fake {
        type Write = u64;
        type Outcome = Accepted;

        fn apply(&self, writes: Vec<u64>) -> Result<Vec<Accepted>, StoreError> {
            self.batches.lock().unwrap().push(writes.len());
            let mut seen = self.seen.lock().unwrap();
            Ok(writes
                .into_iter()
                .map(|id| {
                    if seen.contains(&id) {
                        Accepted::Duplicate
                    } else {
                        seen.push(id);
                        self.disk.unsynced.store(true, Ordering::SeqCst);
                        Accepted::New(id)
                    }
                })
                .collect())
        }

        fn sync_later(&self) -> Result<Option<DeferredSync>, StoreError> {
            if !self.disk.unsynced.swap(false, Ordering::SeqCst) {
                return Ok(None);
            }
            let disk = self.disk.clone();
            Ok(Some(Box::new(move || {
                let synced = disk.sync();
                if synced.is_err() {
                    disk.unsynced.store(true, Ordering::SeqCst);
                }
                synced
            })))
        }

        fn flush(&self) -> Result<(), StoreError> {
            self.disk.unsynced.store(false, Ordering::SeqCst);
            self.disk.sync()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes_and_each_gets_its_own_answer() {
        let engine = Arc::new(Fake::default());
        let committer = Arc::new(Committer::start(engine.clone()).expect("start"));
        let mut tasks = Vec::new();
        for id in 0..64u64 {
            let committer = committer.clone();
            // Ids 0..32 twice: each pair has exactly one new copy.
            tasks.push(tokio::spawn(async move {
                (id % 32, committer.accept_id(id % 32).await)
            }));
        }
        let mut new = Vec::new();
        for t in tasks {
            let (id, outcome) = t.await.expect("task");
            match outcome.expect("durable") {
                Accepted::New(n) => {
                    assert_eq!(n, id);
                    new.push(id);
                }
                Accepted::Duplicate => {}
            }
        }
        new.sort_unstable();
        assert_eq!(
            new,
            (0..32).collect::<Vec<_>>(),
            "exactly one copy of each id is new"
        );
        let flushes = engine.disk.flushes.load(Ordering::SeqCst);
        assert!((1..64).contains(&flushes), "64 writers took {flushes} flushes");
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_writers_and_the_next_batch_recovers() {
        let engine = Arc::new(Fake::default());
        let committer = Committer::start(engine.clone()).expect("start");
        engine.disk.fail_next_flush.store(true, Ordering::SeqCst);
        let err = committer.accept_id(1).await.expect_err("the flush failed");
        assert!(matches!(err, StoreError::Commit(_)), "{err:?}");
        assert!(matches!(committer.accept_id(2).await, Ok(Accepted::New(2))));
        committer.flush().await.expect("a later flush succeeds");
    }

    /// Holds the fake's syncs until released; returns the receiver of "a sync started" and the sender
    /// that releases one sync per message.
    fn hold_syncs(engine: &Fake) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *engine.disk.flush_started.lock().unwrap() = Some(started_tx);
        *engine.disk.gate.lock().unwrap() = Some(release_rx);
        (started_rx, release_tx)
    }

    async fn sync_started(started: mpsc::Receiver<()>) -> mpsc::Receiver<()> {
        tokio::task::spawn_blocking(move || {
            started.recv().expect("a sync started");
            started
        })
        .await
        .expect("join")
    }

    type Accepting = tokio::task::JoinHandle<Result<Accepted, StoreError>>;

    /// Accepts `first`, and once its sync has started (and is held), `then`; returns the engine, both
    /// writers' tasks, and the sender that releases one held sync per message.
    async fn accept_during_a_held_sync(
        first: u64,
        then: u64,
    ) -> (Arc<Fake>, Accepting, Accepting, mpsc::Sender<()>) {
        let engine = Arc::new(Fake::default());
        let (started, release) = hold_syncs(&engine);
        let committer = Arc::new(Committer::start(engine.clone()).expect("start"));
        let c = committer.clone();
        let first = tokio::spawn(async move { c.accept_id(first).await });
        let _started = sync_started(started).await;
        let second = tokio::spawn(async move { committer.accept_id(then).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        (engine, first, second, release)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_never_rides_on_a_sync_that_started_before_its_write() {
        // Written while the first sync runs: it must wait for a second sync.
        let (engine, first, second, release) = accept_during_a_held_sync(1, 2).await;
        assert!(
            !second.is_finished(),
            "answered by a sync that started before the write"
        );
        release.send(()).expect("release the first sync");
        release.send(()).expect("release the second sync");
        assert!(matches!(first.await.expect("join"), Ok(Accepted::New(1))));
        assert!(matches!(second.await.expect("join"), Ok(Accepted::New(2))));
        assert_eq!(engine.disk.flushes.load(Ordering::SeqCst), 2);
        assert_eq!(*engine.batches.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_need_not_be_durable_is_answered_without_a_sync() {
        let engine = Arc::new(Fake::default());
        let (_started, _release) = hold_syncs(&engine);
        let committer = Committer::start(engine.clone()).expect("start");
        let outcome = tokio::time::timeout(Duration::from_secs(10), committer.write(5, false))
            .await
            .expect("answered while syncs are held");
        assert!(matches!(outcome, Ok(Accepted::New(5))));
        assert_eq!(engine.disk.flushes.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_duplicate_is_answered_only_once_its_first_copy_is_synced() {
        let (engine, first, duplicate, release) = accept_during_a_held_sync(9, 9).await;
        assert!(
            !duplicate.is_finished(),
            "a duplicate was answered before its first copy was durable"
        );
        release.send(()).expect("release the sync");
        assert!(matches!(first.await.expect("join"), Ok(Accepted::New(9))));
        assert!(matches!(duplicate.await.expect("join"), Ok(Accepted::Duplicate)));
        // Its group wrote nothing new, so it needed no sync of its own.
        assert_eq!(engine.disk.flushes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_thread_after_its_batch() {
        let engine = Arc::new(Fake::default());
        let committer = Committer::start(engine.clone()).expect("start");
        committer.accept_id(7).await.expect("durable");
        drop(committer);
        // The thread has ended and released its handle on the engine.
        assert_eq!(Arc::strong_count(&engine), 1);
    }
}
