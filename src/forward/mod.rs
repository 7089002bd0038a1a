//! Delivery: one dispatcher per source moves queued events to the app, with retries and dead letters.
//!
//! A dispatcher reads the source's due events from the store, up to `concurrency` at a time, makes at
//! most `concurrency` attempts at the app at once, and sleeps until the next event falls due, a new event is
//! accepted, a delivery ends, or the gateway shuts down (`dispatch` says when it reads the queue).
//! Each attempt ends with a [`RetryAction`]: delivered (the event leaves the queue and is kept for
//! the retention, for replay), retry (rescheduled with backoff), or dead letter (kept with its
//! attempt history) once it has been retried for its horizon. Acceptance never waits for delivery: a
//! slow or absent app only grows the queue. A replayed event continues its attempt count
//! (`X-Hookgate-Attempt`) and its horizon still counts from its acceptance.
//!
//! After an outage the events that failed wait for their drawn retry times, up to `max_backoff`
//! apart; the first delivery that succeeds again releases them at once instead (see [`dispatch`],
//! "Catching up"), within the source's `concurrency`.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use crate::{
    store::{unix_ms, AttemptRecord, AttemptResult, NextStep, Store},
    telemetry,
};

mod dispatchers;
mod output;
mod retry;
mod target;

pub(crate) use dispatchers::Dispatchers;
pub use output::{AmqpEndpoint, Endpoint, ForwardError, NatsEndpoint, RedisEndpoint};
pub use retry::{decide, AttemptOutcome, Backoff, BackoffError, ErrorSource, RetryAction, RetryPolicy};
pub use target::Target;

use output::{Attempt, Output};

/// How long a dispatcher waits before reading the store again after a store error.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// The longest sleep between two looks at the queue, a safety net against a missed wake-up.
const MAX_IDLE: Duration = Duration::from_secs(30);

/// How long a claim of an event keeps other replicas of a shared store from taking it: the attempt's
/// timeout, plus as long again for the wait for a free slot (a read claims up to `concurrency` events,
/// which may wait behind the deliveries under way), plus a margin for the store's writes.
fn lease(source: &Target) -> Duration {
    source.timeout.saturating_mul(2) + LEASE_MARGIN
}

/// What [`lease`] adds to the time the deliveries may take.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Gives back claimed events that will not be delivered now, in the background (an embedded store
/// has nothing to do; a shared one ends their leases so that they are due again at their own times).
fn release(store: &Store, source: &str, seqs: Vec<u64>) {
    if seqs.is_empty() {
        return;
    }
    let (store, source) = (store.clone(), source.to_owned());
    tokio::spawn(async move {
        if let Err(e) = store.release(seqs).await {
            tracing::warn!(source = %source, error = %e, "releasing claimed events failed; they are due again once their leases end");
        }
    });
}

/// Delivers `source`'s queued events until `shutdown`, then lets the deliveries in flight end.
///
/// # Reading the queue
///
/// [`Store::due`] walks the source's schedule from its start and passes over every event the
/// dispatcher has already claimed, so each read costs about `concurrency` key reads. A read therefore
/// claims up to `concurrency` due events at once: those that find no free slot wait, in due order, in
/// `ready` and take the next slots as deliveries end, and the queue is read again only once `ready` is
/// empty and a slot is free. Under a backlog that is one read per `concurrency` deliveries instead of
/// one per delivery, and no slot stays idle while claimed events wait.
///
/// The queue is read only when it may hold due events that are not claimed yet (`stale`): at start,
/// after a read that filled its batch, on a wake-up (an accepted or replayed event), and when the next
/// due time arrives: the earliest not-yet-due event seen by the last read, or an attempt's retry time.
/// The wake-up is the store's [`Store::waker`] for the source, which the store notifies whenever it
/// queues one of the source's events. A wake-up never gets lost: `Notify` keeps a permit for a
/// `notified()` that is not being polled, and passes one on when a notified `notified()` is dropped
/// unconsumed, so a wake-up that arrives while every slot is busy is acted on once one frees. An idle
/// dispatcher reads the queue as soon as it is woken, so a lone event goes out at once.
///
/// An event is in `claimed` from the read that returns it until its delivery task ends, so it is
/// never delivered twice at once; a task that panics leaves its event claimed (it is delivered again
/// after a restart) but frees its slot.
///
/// # Slots
///
/// `concurrency` bounds the attempts at the app (or broker) at once: a delivery task takes a slot for
/// its attempt and gives it back as soon as the attempt has its answer, then records the outcome.
/// The record goes through the store's commit thread, which under load takes a millisecond or more;
/// while it held the slot, a source with the default concurrency of 32 delivered to a fast app at
/// about 11k events/s, fell behind the store's settle age, and every event then cost the store more
/// (`docs/benchmarks.md`, "When the forwarder falls behind"). The event stays claimed until its outcome
/// is recorded, so it is never attempted twice at once, and the next read of the queue skips it.
///
/// # Catching up
///
/// Events that failed during an outage wait for retry times drawn up to `max_backoff` ahead. When a
/// delivery succeeds after a failure (or first after start, when the upstream's state is unknown), the
/// dispatcher catches up: it reads the queue as if every retry time had come (`due` up to the end of
/// time), a batch of `concurrency` at a time, so the waiting events go out in due order through the
/// same slots as any other, until a read finds no more. A failure that says the upstream is down
/// again ends the catch-up and puts the events it claimed early and has not started back to their
/// drawn times; a 429 or a `Retry-After` ends it too, and a success after one starts none, since the
/// app asked to be called less.
///
/// An event that was released early and failed again is not released by a later catch-up until it has
/// made an attempt at its own retry time (`pulled`), so an event the app keeps refusing while it
/// takes others is tried at most about twice as often as its backoff says, never once per success.
async fn dispatch(source: Arc<Target>, store: Store, output: Output, shutdown: CancellationToken) {
    let wake = store.waker(&source.name);
    let concurrency = source.concurrency;
    // One per attempt at the app (see "Slots"); a delivery task gives its back once the attempt has
    // its answer, before the outcome is recorded. `spare` is one that the loop took while waiting.
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut spare: Option<OwnedSemaphorePermit> = None;
    // In flight or waiting in `ready`: `due` skips these.
    let mut claimed: HashSet<u64> = HashSet::new();
    // Claimed events waiting for a slot, oldest due first.
    let mut ready: VecDeque<u64> = VecDeque::new();
    let mut deliveries: JoinSet<Settled> = JoinSet::new();
    // Whether the queue may hold due events that are not claimed (see above).
    let mut stale = true;
    let mut next_look = Instant::now() + MAX_IDLE;
    // Catching up (see above): whether a retryable failure came since the last success, whether a
    // catch-up is under way, the claimed events it took before their time, and the events released
    // early that failed again and have not yet made an attempt at their own time.
    let mut failing = true;
    let mut catching_up = false;
    let mut early: HashSet<u64> = HashSet::new();
    let mut pulled: HashSet<u64> = HashSet::new();
    loop {
        let free = spare.is_some() || slots.available_permits() > 0;
        if stale && ready.is_empty() && free {
            stale = false;
            next_look = Instant::now() + MAX_IDLE;
            let now_ms = unix_ms(SystemTime::now());
            // Owned copies (a few events each): the read may run on a blocking thread.
            let skipped: HashSet<u64> = if catching_up {
                claimed.union(&pulled).copied().collect()
            } else {
                claimed.clone()
            };
            let until_ms = if catching_up { u64::MAX } else { now_ms };
            match store
                .due(&source.name, until_ms, concurrency, skipped, lease(&source))
                .await
            {
                Ok(batch) => {
                    // A full batch may have left due events behind.
                    stale = batch.due.len() == concurrency;
                    if catching_up && !stale {
                        // Every waiting event is claimed. The next read is an ordinary one, which
                        // also finds when the events still scheduled fall due.
                        catching_up = false;
                        stale = true;
                    }
                    for due in batch.due {
                        claimed.insert(due.seq);
                        ready.push_back(due.seq);
                        if due.due_ms > now_ms {
                            early.insert(due.seq);
                        }
                    }
                    if let Some(due_ms) = batch.next_due_ms {
                        next_look = next_look.min(instant_at(due_ms));
                    }
                }
                Err(e) => {
                    tracing::error!(source = %source.name, error = %e, "reading the queue failed");
                    next_look = Instant::now() + STORE_ERROR_PAUSE;
                }
            }
        }
        while !ready.is_empty() {
            let Some(slot) = spare.take().or_else(|| slots.clone().try_acquire_owned().ok()) else {
                break;
            };
            let Some(seq) = ready.pop_front() else { break };
            deliveries.spawn(deliver(source.clone(), store.clone(), output.clone(), seq, slot));
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = deliveries.join_next() => {
                // Take every other delivery that has ended too, before the slots are refilled.
                let mut done = Some(done);
                while let Some(result) = done {
                    match result {
                        Ok(settled) => {
                            claimed.remove(&settled.seq);
                            let was_early = early.remove(&settled.seq);
                            if let Some(due_ms) = settled.due_again_ms {
                                next_look = next_look.min(instant_at(due_ms));
                            }
                            if was_early && settled.due_again_ms.is_some() {
                                pulled.insert(settled.seq);
                            } else {
                                pulled.remove(&settled.seq);
                            }
                            match settled.upstream {
                                Upstream::Up if failing => {
                                    failing = false;
                                    catching_up = true;
                                    stale = true;
                                    tracing::info!(source = %source.name, "upstream answers again: releasing the events waiting to be retried");
                                }
                                Upstream::Up | Upstream::Unknown => {}
                                Upstream::Down | Upstream::Throttled => {
                                    failing = settled.upstream == Upstream::Down;
                                    if catching_up {
                                        catching_up = false;
                                        // Back to their drawn times; the ordinary read that follows
                                        // finds when they fall due.
                                        let mut released = Vec::new();
                                        ready.retain(|seq| {
                                            let keep = !early.remove(seq);
                                            if !keep {
                                                claimed.remove(seq);
                                                released.push(*seq);
                                            }
                                            keep
                                        });
                                        release(&store, &source.name, released);
                                        stale = true;
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            // A delivery task panicked: its event stays scheduled and claimed, and is
                            // retried after a restart.
                            tracing::error!(source = %source.name, error = %e, "delivery task failed");
                        }
                    }
                    done = deliveries.try_join_next();
                }
            }
            // A slot freed while claimed events wait for one, or the queue is to be read.
            slot = slots.clone().acquire_owned(), if spare.is_none() && (!ready.is_empty() || stale) => {
                spare = slot.ok();
            }
            () = wake.notified() => stale = true,
            () = tokio::time::sleep_until(next_look.into()) => {
                stale = true;
                next_look = Instant::now() + MAX_IDLE;
            }
        }
    }
    // Let in-flight attempts finish (each is bounded by the forward timeout) so that their outcome is
    // recorded; anything cut short is simply delivered again after the restart. Events still in
    // `ready` stay queued in the store, and are given back so that another replica of a shared store
    // need not wait for their leases.
    if !ready.is_empty() {
        let _ = store.release(ready.drain(..).collect()).await;
    }
    let drain = source.timeout + Duration::from_secs(1);
    let _ = tokio::time::timeout(drain, async { while deliveries.join_next().await.is_some() {} }).await;
    deliveries.abort_all();
}

/// How one delivery task ended, for its dispatcher.
#[derive(Debug)]
struct Settled {
    /// The event.
    seq: u64,
    /// When the event is due again (Unix milliseconds) if it is still queued: the retry's time, or the
    /// time the task ended if the attempt could not be loaded or recorded (the event then stays due).
    due_again_ms: Option<u64>,
    /// What the attempt says about the upstream.
    upstream: Upstream,
}

/// What one attempt says about its upstream, for catching up after an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// A 2xx.
    Up,
    /// A failure that is retried: no answer, or a 5xx.
    Down,
    /// The app asked to be called less: a 429, or a `Retry-After`.
    Throttled,
    /// Nothing to go by: another status, or no attempt was made.
    Unknown,
}

impl Upstream {
    fn of(outcome: &AttemptOutcome, action: &RetryAction) -> Self {
        match (outcome, action) {
            (_, RetryAction::Delivered) => Self::Up,
            (AttemptOutcome::Status { status: 429, .. }, _)
            | (
                AttemptOutcome::Status {
                    retry_after: Some(_), ..
                },
                _,
            ) => Self::Throttled,
            (AttemptOutcome::Status { status, .. }, _) if *status < 500 => Self::Unknown,
            _ => Self::Down,
        }
    }
}

/// The instant at Unix millisecond `ms` (now, if that has passed).
fn instant_at(ms: u64) -> Instant {
    let wait = ms.saturating_sub(unix_ms(SystemTime::now()));
    Instant::now() + Duration::from_millis(wait)
}

/// Runs one attempt for event `seq` in `slot`, gives the slot back once the attempt has its answer, and
/// records the outcome.
async fn deliver(
    source: Arc<Target>,
    store: Store,
    output: Output,
    seq: u64,
    slot: OwnedSemaphorePermit,
) -> Settled {
    let settled = |due_again_ms, upstream| Settled {
        seq,
        due_again_ms,
        upstream,
    };
    let still_due = |upstream| settled(Some(unix_ms(SystemTime::now())), upstream);
    let (record, body) = match store.load(seq).await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return settled(None, Upstream::Unknown),
        Err(e) => {
            tracing::error!(source = %source.name, seq, error = %e, "loading an event failed");
            tokio::time::sleep(STORE_ERROR_PAUSE).await;
            return still_due(Upstream::Unknown);
        }
    };
    let attempt = record.attempts.len() as u32 + 1;
    let started = Instant::now();
    let now = SystemTime::now();
    let this = Attempt {
        record: &record,
        body,
        number: attempt,
        now,
    };
    let outcome = match output.deliver(&source, this).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Cannot happen for what the gateway stored itself; dead-letter rather than loop forever.
            tracing::error!(source = %source.name, seq, error = %e, "event cannot be forwarded");
            let attempt_record = AttemptRecord {
                at_ms: unix_ms(now),
                status: None,
                outcome: AttemptResult::DeadLetter {
                    reason: e.to_string(),
                },
            };
            let dead = NextStep::DeadLetter(e.to_string());
            return match store.record_attempt(seq, attempt_record, dead).await {
                Ok(()) => settled(None, Upstream::Unknown),
                Err(_) => still_due(Upstream::Unknown),
            };
        }
    };
    let elapsed = started.elapsed();
    // The app has answered: the next attempt may start while this one's outcome is recorded.
    drop(slot);
    // The horizon counts from acceptance, as the sender's own retries did.
    let age = Duration::from_millis(unix_ms(now).saturating_sub(record.received_at_ms));
    let action = decide(&outcome, attempt, age, &source.retry, &mut rand::thread_rng());
    let upstream = Upstream::of(&outcome, &action);
    let status = match &outcome {
        AttemptOutcome::Status { status, .. } => Some(*status),
        AttemptOutcome::Network(_) | AttemptOutcome::Tls(_) | AttemptOutcome::Taken => None,
    };
    let ended = SystemTime::now();
    let (next, label, error_source, result) = match &action {
        RetryAction::Delivered => (NextStep::Delivered, "delivered", "none", AttemptResult::Delivered),
        RetryAction::Retry {
            reason,
            source: who,
            delay,
        } => (
            NextStep::RetryAt(unix_ms(ended + *delay)),
            "retry",
            error_source_label(*who),
            AttemptResult::Retry {
                after: round_ms(*delay),
                reason: reason.clone(),
            },
        ),
        RetryAction::DeadLetter { reason, source: who } => (
            NextStep::DeadLetter(reason.clone()),
            "dead_letter",
            error_source_label(*who),
            AttemptResult::DeadLetter {
                reason: reason.clone(),
            },
        ),
    };
    let name = metrics::SharedString::from(source.name.clone());
    let kind = output.kind();
    metrics::counter!(telemetry::DELIVERIES, "source" => name.clone(), "output" => kind, "outcome" => label, "error_source" => error_source)
        .increment(1);
    metrics::histogram!(telemetry::DELIVERY_DURATION, "source" => name, "output" => kind)
        .record(elapsed.as_secs_f64());
    // One line per attempt; never the body or headers.
    let latency_ms = telemetry::millis(elapsed);
    // The id of the request that brought the event, stored among its headers; absent for events
    // stored before there were request ids.
    let request_id = record
        .headers
        .iter()
        .find(|(name, _)| name == output::http::X_REQUEST_ID)
        .and_then(|(_, value)| std::str::from_utf8(value).ok());
    match &action {
        RetryAction::Delivered | RetryAction::Retry { .. } => {
            tracing::info!(source = %source.name, output = kind, event_id = %record.event_id, request_id, attempt, status, latency_ms, outcome = %result, "delivery")
        }
        RetryAction::DeadLetter { .. } => {
            tracing::warn!(source = %source.name, output = kind, event_id = %record.event_id, request_id, attempt, status, latency_ms, outcome = %result, "delivery")
        }
    }
    let attempt_record = AttemptRecord {
        at_ms: unix_ms(ended),
        status,
        outcome: result,
    };
    let due_again_ms = match &next {
        NextStep::RetryAt(due_ms) => Some(*due_ms),
        NextStep::Delivered | NextStep::DeadLetter(_) => None,
    };
    if let Err(e) = store.record_attempt(seq, attempt_record, next).await {
        // The event stays scheduled as it was and is attempted again: at least once, never lost.
        metrics::counter!(telemetry::STORE_ERRORS, "operation" => "record_attempt").increment(1);
        tracing::error!(source = %source.name, seq, error = %e, "recording a delivery attempt failed");
        tokio::time::sleep(STORE_ERROR_PAUSE).await;
        return still_due(upstream);
    }
    settled(due_again_ms, upstream)
}

fn error_source_label(who: ErrorSource) -> &'static str {
    match who {
        ErrorSource::App => "app",
        ErrorSource::Network => "network",
        ErrorSource::Tls => "tls",
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
