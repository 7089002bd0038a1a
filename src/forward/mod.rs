//! Delivery: one dispatcher per source moves queued events to the app, with retries and dead letters.
//!
//! A dispatcher reads the source's due events from the store, runs at most `concurrency` deliveries at
//! once, and sleeps until the next event falls due, a new event is accepted, a delivery ends, or the
//! gateway shuts down. Each attempt ends with a [`RetryAction`]: delivered (the event leaves the
//! queue and is kept for the retention, for replay), retry (rescheduled with backoff), or dead letter
//! (kept with its attempt history). Acceptance never waits for delivery: a slow or absent app only
//! grows the queue. A replayed event continues its attempt count (`X-Hookgate-Attempt`).

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Source,
    store::{unix_ms, AttemptRecord, NextStep, Store, DELIVERED_OUTCOME},
    telemetry,
};

mod client;
mod dispatchers;
mod retry;

pub use client::ForwardError;
pub(crate) use dispatchers::Dispatchers;
pub use retry::{decide, AttemptOutcome, Backoff, BackoffError, ErrorSource, RetryAction};

use client::HttpClient;

/// How long a dispatcher waits before reading the store again after a store error.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// The longest sleep between two looks at the queue, a safety net against a missed wake-up.
const MAX_IDLE: Duration = Duration::from_secs(30);

async fn dispatch(
    source: Arc<Source>,
    store: Store,
    client: HttpClient,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut in_flight: HashSet<u64> = HashSet::new();
    let mut deliveries: JoinSet<u64> = JoinSet::new();
    loop {
        let mut next_look = Instant::now() + MAX_IDLE;
        let free = source.forward.concurrency.saturating_sub(in_flight.len());
        if free > 0 {
            match store.due(&source.name, unix_ms(SystemTime::now()), free, &|seq| {
                in_flight.contains(&seq)
            }) {
                Ok(batch) => {
                    for due in batch.due {
                        in_flight.insert(due.seq);
                        deliveries.spawn(deliver(source.clone(), store.clone(), client.clone(), due.seq));
                    }
                    if let Some(next_ms) = batch.next_due_ms {
                        let wait = next_ms.saturating_sub(unix_ms(SystemTime::now()));
                        next_look = next_look.min(Instant::now() + Duration::from_millis(wait));
                    }
                }
                Err(e) => {
                    tracing::error!(source = %source.name, error = %e, "reading the queue failed");
                    next_look = Instant::now() + STORE_ERROR_PAUSE;
                }
            }
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = deliveries.join_next() => match done {
                Ok(seq) => { in_flight.remove(&seq); }
                Err(e) => {
                    // A delivery task panicked: its event stays scheduled and is retried after a restart.
                    tracing::error!(source = %source.name, error = %e, "delivery task failed");
                }
            },
            () = wake.notified() => {}
            () = tokio::time::sleep_until(next_look.into()) => {}
        }
    }
    // Let in-flight attempts finish (each is bounded by the forward timeout) so that their outcome is
    // recorded; anything cut short is simply delivered again after the restart.
    let drain = source.forward.timeout + Duration::from_secs(1);
    let _ = tokio::time::timeout(drain, async { while deliveries.join_next().await.is_some() {} }).await;
    deliveries.abort_all();
}

/// Runs one attempt for event `seq` and records its outcome. Returns `seq`.
async fn deliver(source: Arc<Source>, store: Store, client: HttpClient, seq: u64) -> u64 {
    let (record, body) = match store.load(seq) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return seq,
        Err(e) => {
            tracing::error!(source = %source.name, seq, error = %e, "loading an event failed");
            tokio::time::sleep(STORE_ERROR_PAUSE).await;
            return seq;
        }
    };
    let attempt = record.attempts.len() as u32 + 1;
    let started = Instant::now();
    let now = SystemTime::now();
    let outcome = match client::build_request(&source, &record, Bytes::from(body), attempt, now) {
        Ok(req) => client::send(&client, req, source.forward.timeout).await,
        Err(e) => {
            // Cannot happen for what the gateway stored itself; dead-letter rather than loop forever.
            tracing::error!(source = %source.name, seq, error = %e, "event cannot be forwarded");
            let attempt_record = AttemptRecord {
                at_ms: unix_ms(now),
                status: None,
                outcome: format!("dead letter: {e}"),
            };
            let _ = store
                .record_attempt(seq, attempt_record, NextStep::DeadLetter(e.to_string()))
                .await;
            return seq;
        }
    };
    let elapsed = started.elapsed();
    let policy = &source.forward;
    let action = decide(
        &outcome,
        attempt,
        policy.max_attempts,
        &policy.backoff,
        &mut rand::thread_rng(),
    );
    let status = match &outcome {
        AttemptOutcome::Status { status, .. } => Some(*status),
        AttemptOutcome::Network(_) => None,
    };
    let ended = SystemTime::now();
    let (next, label, error_source, description) = match &action {
        RetryAction::Delivered => (
            NextStep::Delivered,
            "delivered",
            "none",
            DELIVERED_OUTCOME.to_owned(),
        ),
        RetryAction::Retry {
            reason,
            source: who,
            delay,
        } => (
            NextStep::RetryAt(unix_ms(ended + *delay)),
            "retry",
            error_source_label(*who),
            format!(
                "retry in {}: {reason}",
                humantime::format_duration(round_ms(*delay))
            ),
        ),
        RetryAction::DeadLetter { reason, source: who } => (
            NextStep::DeadLetter(reason.clone()),
            "dead_letter",
            error_source_label(*who),
            format!("dead letter: {reason}"),
        ),
    };
    let name = metrics::SharedString::from(source.name.clone());
    metrics::counter!(telemetry::DELIVERIES, "source" => name.clone(), "outcome" => label, "error_source" => error_source)
        .increment(1);
    metrics::histogram!(telemetry::DELIVERY_DURATION, "source" => name).record(elapsed.as_secs_f64());
    // One line per attempt; never the body or headers.
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    match &action {
        RetryAction::Delivered | RetryAction::Retry { .. } => {
            tracing::info!(source = %source.name, event_id = %record.event_id, attempt, status, latency_ms, outcome = %description, "delivery")
        }
        RetryAction::DeadLetter { .. } => {
            tracing::warn!(source = %source.name, event_id = %record.event_id, attempt, status, latency_ms, outcome = %description, "delivery")
        }
    }
    let attempt_record = AttemptRecord {
        at_ms: unix_ms(ended),
        status,
        outcome: description,
    };
    if let Err(e) = store.record_attempt(seq, attempt_record, next).await {
        // The event stays scheduled as it was and is attempted again: at least once, never lost.
        metrics::counter!(telemetry::STORE_ERRORS, "operation" => "record_attempt").increment(1);
        tracing::error!(source = %source.name, seq, error = %e, "recording a delivery attempt failed");
        tokio::time::sleep(STORE_ERROR_PAUSE).await;
    }
    seq
}

fn error_source_label(who: ErrorSource) -> &'static str {
    match who {
        ErrorSource::App => "app",
        ErrorSource::Network => "network",
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
