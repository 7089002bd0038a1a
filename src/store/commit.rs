//! The group commit: one thread owns every store write and every flush.
//!
//! Request tasks prepare their write (keys and encoded values) themselves, send it to the commit thread
//! and wait on their own reply channel. The thread takes every write that is waiting (accepts, and the
//! forwarder's delivery outcomes), applies them as **one** atomic batch (each event's dedup check, mark
//! and queue entry together), flushes once and then answers each writer; a write that need not be
//! durable (a delivery outcome) is answered as soon as it is applied. Other writes (the admin API's,
//! the purges) run on the same thread as closures, in order with the rest. Writes that arrive while a flush runs wait for the next one, so one flush
//! acknowledges a whole batch, and a writer is never answered by a flush that started before its write.
//!
//! Because one thread checks and applies, two copies of the same event in one batch cannot both be new:
//! the second sees the first's mark. A duplicate is answered only after the flush of its batch, which
//! also covers whatever made its first copy visible, so its 200 never precedes the first copy's
//! durability. A failed flush fails every writer of its batch (503); the next batch tries again.
//!
//! Compared with writers that each run their own transaction and then elect a flush leader, this
//! costs one channel send and one wake-up per request, one batch and one flush per group, and no
//! contention on the storage engine's locks: the engine has a single writer.

use std::{
    sync::{mpsc, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::StoreError;

/// What the commit thread drives: the storage engine's batch write and flush.
pub(super) trait Engine: Send + Sync + 'static {
    /// One prepared write.
    type Write: Send + 'static;
    /// What a write did.
    type Outcome: Send + 'static;

    /// Applies `writes` in order as one atomic batch (in memory, not yet durable) and says what each
    /// did.
    fn apply(&self, writes: Vec<Self::Write>) -> Result<Vec<Self::Outcome>, StoreError>;

    /// Makes every applied accept write durable; with `everything`, every other write too.
    fn flush(&self, everything: bool) -> Result<(), StoreError>;

    /// Finishes work that the engine deferred, if `now` or if it is due; returns how long the work
    /// still deferred may wait. The thread calls it after each batch is flushed and answered (so that
    /// it never delays an answer), when it would otherwise wait for jobs, and before it stops.
    fn settle(&self, now: bool) -> Result<Option<Duration>, StoreError> {
        let _ = now;
        Ok(None)
    }
}

/// Under load, how long the thread waits for more writers before it flushes a batch that it could
/// flush at once: each flush costs the kernel far more than the wait (PostgreSQL's `commit_delay`).
/// Only used when the batch is small and writers arrived while the previous flush ran.
const COMMIT_DELAY: Duration = Duration::from_micros(200);

/// A batch at least this large is flushed without waiting.
const NO_DELAY_BATCH: usize = 16;

/// The most writes in one batch (bounds the batch's memory and the first writer's wait).
const MAX_BATCH: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
/// A write's outcome before the flush, shared by the group when it failed.
type Pending<T> = Result<T, Arc<StoreError>>;
/// A writer waiting for the flush, with its outcome so far.
type Waiting<T> = (Reply<T>, Pending<T>);

enum Job<E: Engine> {
    /// A write and whether its answer waits for the flush.
    Write(E::Write, Reply<E::Outcome>, bool),
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// Any other write: runs on the commit thread, in order with the accepts, and answers itself.
    Run(Box<dyn FnOnce(&E) + Send>),
}

/// The handle on the commit thread. Dropping it lets the thread finish its batch and waits for it, so
/// that the engine is released when the last handle goes.
pub(super) struct Committer<E: Engine> {
    jobs: Option<mpsc::Sender<Job<E>>>,
    thread: Option<JoinHandle<()>>,
}

impl<E: Engine> Committer<E> {
    /// Starts the commit thread over `engine`.
    pub(super) fn start(engine: Arc<E>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hookgate-commit".into())
            .spawn(move || {
                // Without this thread nothing can be stored: rather than answer 503 until someone
                // notices, stop; every accepted event is in the event log and comes back at the next
                // start. (The panic hook has already printed the cause.)
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&*engine, &rx))).is_err() {
                    eprintln!("hookgate: the store's commit thread panicked; aborting (accepted events are recovered from the event log at the next start)");
                    std::process::abort();
                }
            })
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Applies `write` with the next batch; resolves once that batch is applied and, if `durable`,
    /// flushed.
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
    /// without waiting for a flush. Blocks: never call it on a runtime thread.
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
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The commit thread: until every handle is gone, batch what is waiting, apply, flush, answer.
fn run<E: Engine>(engine: &E, jobs: &mpsc::Receiver<Job<E>>) {
    let mut batch = Vec::new();
    loop {
        if batch.is_empty() {
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
        } else if batch.len() < NO_DELAY_BATCH {
            // Writers arrived while the last batch was flushed: under load, a short wait fills this one.
            std::thread::sleep(COMMIT_DELAY);
        }
        drain(jobs, &mut batch);
        commit(engine, &mut batch);
        // Deferred work waits until the batch's writers have their answers.
        settle(engine, false);
        // Whatever arrived meanwhile goes into the next batch.
        drain(jobs, &mut batch);
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

/// Runs one batch in order, flushes once, then answers its writers; leaves `batch` empty.
/// Consecutive writes are applied together; `Run` jobs run between them, in their place. A write that
/// need not be durable is answered as soon as it is applied.
fn commit<E: Engine>(engine: &E, batch: &mut Vec<Job<E>>) {
    let mut group = Group::<E>::default();
    let mut flush_replies = Vec::new();
    for job in batch.drain(..) {
        match job {
            Job::Write(write, reply, durable) => {
                group.writes.push(write);
                group.replies.push((reply, durable));
            }
            Job::Flush(reply) => flush_replies.push(reply),
            Job::Run(write) => {
                group.apply(engine);
                write(engine);
            }
        }
    }
    group.apply(engine);
    let started = Instant::now();
    let flushed = engine.flush(!flush_replies.is_empty()).map_err(Arc::new);
    metrics::histogram!(crate::telemetry::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
    metrics::histogram!(crate::telemetry::COMMIT_BATCH).record(group.durable.len() as f64);
    for (reply, outcome) in group.durable {
        // A write is durable only if it was applied and then flushed.
        let outcome = outcome.and_then(|o| flushed.clone().map(|()| o));
        let _ = reply.send(outcome.map_err(StoreError::Commit));
    }
    for reply in flush_replies {
        let _ = reply.send(flushed.clone().map_err(StoreError::Commit));
    }
}

/// The writes of a batch waiting to be applied, and the answers waiting for the flush.
struct Group<E: Engine> {
    writes: Vec<E::Write>,
    replies: Vec<(Reply<E::Outcome>, bool)>,
    durable: Vec<Waiting<E::Outcome>>,
}

impl<E: Engine> Default for Group<E> {
    fn default() -> Self {
        Self {
            writes: Vec::new(),
            replies: Vec::new(),
            durable: Vec::new(),
        }
    }
}

impl<E: Engine> Group<E> {
    /// Applies the waiting writes (if any): answers those that need no flush, keeps the others.
    fn apply(&mut self, engine: &E) {
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
                self.durable.push((reply, outcome));
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
        flushes: AtomicUsize,
        fail_next_flush: std::sync::atomic::AtomicBool,
        /// While set, a flush waits for a message on this channel.
        gate: Mutex<Option<mpsc::Receiver<()>>>,
        flush_started: Mutex<Option<mpsc::Sender<()>>>,
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
                        Accepted::New(id)
                    }
                })
                .collect())
        }

        fn flush(&self, _everything: bool) -> Result<(), StoreError> {
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
        let flushes = engine.flushes.load(Ordering::SeqCst);
        assert!((1..64).contains(&flushes), "64 writers took {flushes} flushes");
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_writers_and_the_next_batch_recovers() {
        let engine = Arc::new(Fake::default());
        let committer = Committer::start(engine.clone()).expect("start");
        engine.fail_next_flush.store(true, Ordering::SeqCst);
        let err = committer.accept_id(1).await.expect_err("the flush failed");
        assert!(matches!(err, StoreError::Commit(_)), "{err:?}");
        assert!(matches!(committer.accept_id(2).await, Ok(Accepted::New(2))));
        committer.flush().await.expect("a later flush succeeds");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_never_rides_on_a_flush_that_started_before_its_write() {
        let engine = Arc::new(Fake::default());
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *engine.flush_started.lock().unwrap() = Some(started_tx);
        *engine.gate.lock().unwrap() = Some(release_rx);
        let committer = Arc::new(Committer::start(engine.clone()).expect("start"));
        let c = committer.clone();
        let first = tokio::spawn(async move { c.accept_id(1).await });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("join")
            .expect("the first flush started");
        // Written while the first flush runs: it must wait for a second flush.
        let c = committer.clone();
        let second = tokio::spawn(async move { c.accept_id(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !second.is_finished(),
            "answered by a flush that started before the write"
        );
        release_tx.send(()).expect("release the first flush");
        release_tx.send(()).expect("release the second flush");
        assert!(matches!(first.await.expect("join"), Ok(Accepted::New(1))));
        assert!(matches!(second.await.expect("join"), Ok(Accepted::New(2))));
        assert_eq!(engine.flushes.load(Ordering::SeqCst), 2);
        assert_eq!(*engine.batches.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_need_not_be_durable_is_answered_before_the_flush() {
        let engine = Arc::new(Fake::default());
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *engine.flush_started.lock().unwrap() = Some(started_tx);
        *engine.gate.lock().unwrap() = Some(release_rx);
        let committer = Committer::start(engine.clone()).expect("start");
        let outcome = tokio::time::timeout(Duration::from_secs(10), committer.write(5, false))
            .await
            .expect("answered while the flush is held");
        assert!(matches!(outcome, Ok(Accepted::New(5))));
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("join")
            .expect("the flush started");
        release_tx.send(()).expect("release the flush");
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
