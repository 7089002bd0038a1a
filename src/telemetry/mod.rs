//! Metric names, the Prometheus recorder and log set-up.
//!
//! Every request outcome is counted in [`REQUESTS`], labelled by source, outcome and reason; every
//! delivery attempt in [`DELIVERIES`]. Labels carry names and reason codes only: never a secret, a
//! signature, a body or a client-chosen string such as an unknown path.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

mod batched;
mod json;

pub use batched::{BatchedWriter, FlushGuard};
pub use json::JsonLines;

/// Counter: requests by `source`, `outcome` (`accepted`, `duplicate`, `rejected`, `error`) and `reason`.
pub const REQUESTS: &str = "hookgate_requests_total";
/// Histogram: seconds from request head to response, by `source` and `outcome`.
pub const REQUEST_DURATION: &str = "hookgate_request_duration_seconds";
/// Counter: delivery attempts by `source`, `outcome` (`delivered`, `retry`, `dead_letter`) and
/// `error_source` (`app`, `network`, `none`).
pub const DELIVERIES: &str = "hookgate_deliveries_total";
/// Histogram: seconds per delivery attempt, by `source`.
pub const DELIVERY_DURATION: &str = "hookgate_delivery_duration_seconds";
/// Gauge: events by `state` (`queued`, `dead`, `delivered`), read from the store at scrape time.
pub const EVENTS: &str = "hookgate_events";
/// Counter: dedup marks purged after their window.
pub const DEDUP_PURGED: &str = "hookgate_dedup_purged_total";
/// Counter: delivered events purged after the retention (`[store] retention`).
pub const DELIVERED_PURGED: &str = "hookgate_delivered_purged_total";
/// Histogram: seconds per group commit (one `fdatasync` of the event log, on the sync thread).
pub const COMMIT_SECONDS: &str = "hookgate_store_commit_seconds";
/// Histogram: writes acknowledged by one group commit (at most; some may already have been durable).
pub const COMMIT_BATCH: &str = "hookgate_store_commit_batch";
/// Counter: store failures by `operation`.
pub const STORE_ERRORS: &str = "hookgate_store_errors_total";
/// Counter: config reloads by `result` (`applied`, `rejected`).
pub const CONFIG_RELOADS: &str = "hookgate_config_reloads_total";
/// Gauge: seconds since a source's last accepted event (or since start), by `source`; only for
/// sources with `expect_within`.
pub const SOURCE_SILENCE_SECONDS: &str = "hookgate_source_silence_seconds";
/// Gauge: 1 while a source has been silent for longer than its `expect_within`, else 0, by `source`.
pub const SOURCE_SILENT: &str = "hookgate_source_silent";

/// Unknown paths are counted under this source label: the path itself is chosen by the client.
pub const UNKNOWN_SOURCE: &str = "_unknown";

const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder, installed on first use.
///
/// A process has one global `metrics` recorder; tests that start several gateways share it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(Matcher::Full(COMMIT_BATCH.into()), BATCH_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first, in which case ours stays unused but
        // rendering still works.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How often [`upkeep_loop`] folds the recorded histogram samples into their buckets.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Folds the histogram samples recorded since the last run into their buckets, every `every`, until
/// `stop`. The recorder keeps each sample until then (a rendering of `/metrics` folds them too), so
/// without this a gateway that nobody scrapes would grow by about two samples per request, without
/// bound.
pub async fn upkeep_loop(every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => prometheus().run_upkeep(),
            () = stop.cancelled() => return,
        }
    }
}
