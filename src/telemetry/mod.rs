//! Metric names, the Prometheus recorder, log set-up and [`ErrorChain`] for error messages.
//!
//! Every request outcome is counted in [`REQUESTS`], labelled by source, outcome and reason; every
//! delivery attempt in [`DELIVERIES`]. Labels carry names and reason codes only: never a secret, a
//! signature, a body or a client-chosen string such as an unknown path.
//!
//! Every family is described here, in [`describe`], so that `/metrics` has a HELP line for each. The
//! counters that alerts watch exist at 0 from start ([`register_source`] for the per-source ones, at
//! start and on every reload), since an alert on `rate()` or `increase()` sees nothing of a series
//! that appears only with its first increment. The process metrics (`process_*`) are read from
//! `/proc/self` at each scrape ([`render`]).

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

mod batched;
mod error_chain;
mod json;
mod process;

pub use batched::{BatchedWriter, FlushGuard};
pub use error_chain::ErrorChain;
pub use json::JsonLines;

/// A duration in milliseconds, rounded to the microsecond, for log fields such as `latency_ms`
/// (`1.234`, not `1.2345678`).
pub fn millis(d: Duration) -> f64 {
    let micros = (d.as_nanos() + 500) / 1000;
    micros as f64 / 1000.0
}

/// The log fields whose value is a list of names, logged as `field = %List(&names)`: the JSON log
/// format writes them as JSON arrays rather than as strings. A field cannot say its own type through
/// `tracing` (its `Value` trait is sealed), hence the list of names.
pub(crate) const LIST_FIELDS: &[&str] = &["restart_required"];

/// A list of names as a log field (see [`LIST_FIELDS`]); its text is the JSON array, `["a","b"]`, so
/// that the text log format shows the same thing.
#[derive(Debug, Clone, Copy)]
pub struct List<'a>(pub &'a [String]);

impl std::fmt::Display for List<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self.0) {
            Ok(json) => f.write_str(&json),
            Err(_) => Err(std::fmt::Error),
        }
    }
}

/// Counter: requests by `source`, `outcome` (`accepted`, `duplicate`, `rejected`, `error`) and `reason`.
pub const REQUESTS: &str = "hookgate_requests_total";
/// Histogram: seconds from request head to response, by `source` and `outcome`.
pub const REQUEST_DURATION: &str = "hookgate_request_duration_seconds";
/// Counter: delivery attempts by `source`, `outcome` (`delivered`, `retry`, `dead_letter`) and
/// `error_source` (`app`, `network`, `tls`, `none`).
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

/// Gauge: the `notAfter` (Unix seconds) of a listener's TLS certificate, by `listener` (`webhook`,
/// `admin`); only for listeners with TLS.
pub const TLS_CERT_EXPIRY: &str = "hookgate_tls_certificate_expiry_seconds";

/// Counter: TLS handshakes that failed or did not finish within `header_read_timeout`, by
/// `listener` (`webhook`, `admin`).
pub const TLS_HANDSHAKE_FAILURES: &str = "hookgate_tls_handshake_failures_total";

/// Counter: connections refused for their PROXY protocol header (`[server] proxy_protocol`), by
/// `listener` and `reason` (`untrusted_peer`, `missing_header`, `invalid_header`, `header_too_large`,
/// `timeout`).
pub const PROXY_PROTOCOL_REFUSED: &str = "hookgate_proxy_protocol_refused_total";

/// The `reason`s of [`PROXY_PROTOCOL_REFUSED`], registered at 0 (`server::proxy_protocol`'s tests
/// check that they are the ones it counts).
pub(crate) const PROXY_PROTOCOL_REASONS: &[&str] = &[
    "untrusted_peer",
    "missing_header",
    "invalid_header",
    "header_too_large",
    "timeout",
];

/// Gauge: always 1, labelled with the running `version`.
pub const BUILD_INFO: &str = "hookgate_build_info";

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
        describe();
        register_global();
        handle
    })
}

/// The `/metrics` text: the recorder's families, then the process metrics read now.
pub fn render() -> String {
    let mut text = prometheus().render();
    process::Sample::read().render_into(&mut text);
    text
}

/// The HELP text of every family the gateway records.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REQUESTS,
        "Webhook requests by source, outcome (accepted, accepted_unverified, duplicate, handshake, rejected, error, other) and reason."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from request head to response, by source and outcome."
    );
    describe_counter!(
        DELIVERIES,
        "Delivery attempts by source, outcome (delivered, retry, dead_letter) and error_source (app, network, tls, none)."
    );
    describe_histogram!(
        DELIVERY_DURATION,
        Unit::Seconds,
        "Time one delivery attempt took, by source."
    );
    describe_gauge!(
        EVENTS,
        "Stored events by state (queued, dead, delivered), read from the store at scrape time."
    );
    describe_counter!(DEDUP_PURGED, "Dedup marks removed after their window.");
    describe_counter!(
        DELIVERED_PURGED,
        "Delivered events removed after the retention ([store] retention)."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time one group commit (one fdatasync of the event log) took."
    );
    describe_histogram!(COMMIT_BATCH, "Writes acknowledged by one group commit.");
    describe_counter!(STORE_ERRORS, "Store failures by operation.");
    describe_counter!(CONFIG_RELOADS, "Config reloads by result (applied, rejected).");
    describe_gauge!(
        SOURCE_SILENCE_SECONDS,
        Unit::Seconds,
        "Seconds since the source's last accepted event (or since start); sources with expect_within only."
    );
    describe_gauge!(
        SOURCE_SILENT,
        "1 while the source has been silent for longer than its expect_within, else 0."
    );
    describe_gauge!(
        TLS_CERT_EXPIRY,
        Unit::Seconds,
        "When the listener's TLS certificate expires (its notAfter), in Unix seconds, by listener."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed or did not finish within header_read_timeout, by listener."
    );
    describe_counter!(
        PROXY_PROTOCOL_REFUSED,
        "Connections refused for their PROXY protocol header, by listener and reason."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label is the running hookgate's."
    );
}

/// The store operations counted in [`STORE_ERRORS`], registered at 0.
const STORE_OPERATIONS: &[&str] = &[
    "accept",
    "sync",
    "settle",
    "record_attempt",
    "purge",
    "purge_delivered",
    "collect_segments",
    "admin",
];

/// The process-wide series that exist from start: build info and the counters alerts watch.
fn register_global() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for operation in STORE_OPERATIONS {
        metrics::counter!(STORE_ERRORS, "operation" => *operation).increment(0);
    }
    for result in ["applied", "rejected"] {
        metrics::counter!(CONFIG_RELOADS, "result" => result).increment(0);
    }
    metrics::counter!(DEDUP_PURGED).increment(0);
    metrics::counter!(DELIVERED_PURGED).increment(0);
    for reason in PROXY_PROTOCOL_REASONS {
        metrics::counter!(PROXY_PROTOCOL_REFUSED, "listener" => "webhook", "reason" => *reason).increment(0);
    }
}

/// The request outcomes registered at 0 for every source: `(outcome, reason)`. The rejection reasons
/// are `layers::rescue`'s (a test there checks that every one it answers with is listed).
pub(crate) const REQUEST_SERIES: &[(&str, &str)] = &[
    ("accepted", "none"),
    ("duplicate", "none"),
    ("rejected", "method_not_allowed"),
    ("rejected", "malformed_forwarded_for"),
    ("rejected", "ip_not_allowed"),
    ("rejected", "rate_limited"),
    ("rejected", "body_too_large"),
    ("rejected", "malformed_request"),
    ("rejected", "request_timeout"),
    ("rejected", "missing_signature"),
    ("rejected", "missing_header"),
    ("rejected", "malformed_signature"),
    ("rejected", "malformed_timestamp"),
    ("rejected", "timestamp_outside_tolerance"),
    ("rejected", "signature_mismatch"),
    ("rejected", "malformed_body"),
    ("rejected", "missing_token"),
    ("rejected", "token_mismatch"),
    ("error", "store_unavailable"),
    ("error", "queue_full"),
    ("error", "internal_error"),
];

/// The delivery outcomes registered at 0 for every source: `(outcome, error_source)`.
const DELIVERY_SERIES: &[(&str, &str)] = &[
    ("delivered", "none"),
    ("retry", "app"),
    ("retry", "network"),
    ("retry", "tls"),
    ("dead_letter", "app"),
    ("dead_letter", "network"),
    ("dead_letter", "tls"),
];

/// Registers `source`'s request counters at 0 (idempotent: an existing count is kept).
/// Called for every configured source at start and on every reload.
pub(crate) fn register_source(source: &str) {
    let name = metrics::SharedString::from(std::sync::Arc::<str>::from(source));
    for (outcome, reason) in REQUEST_SERIES {
        metrics::counter!(REQUESTS, "source" => name.clone(), "outcome" => *outcome, "reason" => *reason)
            .increment(0);
    }
}

/// Registers `source`'s delivery counters at 0 for its output kind (`http`, `nats`), idempotently.
/// Called by the forwarder for every source it starts delivering, at start and on every reload.
pub(crate) fn register_deliveries(source: &str, output: &'static str) {
    let name = metrics::SharedString::from(std::sync::Arc::<str>::from(source));
    for (outcome, error_source) in DELIVERY_SERIES {
        metrics::counter!(DELIVERIES, "source" => name.clone(), "output" => output, "outcome" => *outcome, "error_source" => *error_source)
            .increment(0);
    }
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
