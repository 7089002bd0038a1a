//! `/metrics` of a fresh gateway: every family has HELP text, the build and process metrics are
//! there, and the counters that alerts watch exist at 0 before anything happened (for every
//! configured source, and for a source that a reload adds).

use std::{collections::BTreeSet, time::Duration};

use crate::support::{eventually, github_source, send, GatewayProcess};

/// The families in `text` (from their `# TYPE` lines) and those with a `# HELP` line.
fn families(text: &str) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let named = |prefix: &str| -> BTreeSet<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix)?.split_whitespace().next())
            .collect()
    };
    (named("# TYPE "), named("# HELP "))
}

/// Whether `text` has the sample `name{labels} value`, whatever the labels' order.
fn has_sample(text: &str, name: &str, labels: &[(&str, &str)], value: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        let Some((head, v)) = l.rsplit_once(' ') else {
            return false;
        };
        let Some(rest) = head.strip_prefix(name) else {
            return false;
        };
        let pairs: Vec<String> = match rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(inner) => inner.split(',').map(str::to_owned).collect(),
            None if rest.is_empty() => Vec::new(),
            None => return false,
        };
        v == value
            && pairs.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"")))
    })
}

/// The value of the unlabelled sample `name`.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The zero series every source has from the start.
fn assert_source_zeros(text: &str, source: &str) {
    for (outcome, reason) in [
        ("accepted", "none"),
        ("duplicate", "none"),
        ("rejected", "signature_mismatch"),
        ("error", "store_unavailable"),
    ] {
        assert!(
            has_sample(
                text,
                "hookgate_requests_total",
                &[("source", source), ("outcome", outcome), ("reason", reason)],
                "0"
            ),
            "no zero request series {source}/{outcome}/{reason} in:\n{text}"
        );
    }
    for (outcome, error_source) in [
        ("delivered", "none"),
        ("retry", "network"),
        ("dead_letter", "app"),
    ] {
        assert!(
            has_sample(
                text,
                "hookgate_deliveries_total",
                &[
                    ("source", source),
                    ("output", "http"),
                    ("outcome", outcome),
                    ("error_source", error_source)
                ],
                "0"
            ),
            "no zero delivery series {source}/{outcome}/{error_source} in:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_fresh_gateway_describes_every_family_and_has_its_alert_counters_at_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing listens upstream, and no request is ever sent: every counter must still exist.
    let gw = GatewayProcess::start(dir.path(), &github_source("metrics_a", "http://127.0.0.1:9/app")).await;
    let text = send("GET", &gw.admin_url("/metrics"), &[], "").await.body;

    let (typed, described) = families(&text);
    for family in &typed {
        assert!(
            described.contains(family),
            "{family} has no HELP line in:\n{text}"
        );
    }
    for expected in [
        "hookgate_build_info",
        "hookgate_requests_total",
        "hookgate_deliveries_total",
        "hookgate_store_errors_total",
        "hookgate_config_reloads_total",
        "hookgate_dedup_purged_total",
        "hookgate_delivered_purged_total",
        "hookgate_events",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(typed.contains(expected), "no {expected} family in:\n{text}");
    }

    let version = env!("CARGO_PKG_VERSION");
    assert!(
        has_sample(&text, "hookgate_build_info", &[("version", version)], "1"),
        "no build info for {version} in:\n{text}"
    );
    for operation in ["accept", "sync", "settle", "record_attempt", "purge"] {
        assert!(
            has_sample(
                &text,
                "hookgate_store_errors_total",
                &[("operation", operation)],
                "0"
            ),
            "no zero store error series for {operation} in:\n{text}"
        );
    }
    for result in ["applied", "rejected"] {
        assert!(
            has_sample(&text, "hookgate_config_reloads_total", &[("result", result)], "0"),
            "no zero reload series for {result} in:\n{text}"
        );
    }
    assert!(
        has_sample(&text, "hookgate_dedup_purged_total", &[], "0"),
        "{text}"
    );
    assert_source_zeros(&text, "metrics_a");

    // The process metrics describe this process: it has memory, some open files, and started
    // between a day ago and now.
    assert!(
        value(&text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6),
        "{text}"
    );
    assert!(
        value(&text, "process_open_fds").is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert!(
        value(&text, "process_cpu_seconds_total").is_some_and(|s| s >= 0.0),
        "{text}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let started = value(&text, "process_start_time_seconds").expect("start time");
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );

    // A source added by a reload gets its zero series too.
    gw.rewrite(&format!(
        "{}\n{}",
        github_source("metrics_a", "http://127.0.0.1:9/app"),
        github_source("metrics_b", "http://127.0.0.1:9/app")
    ));
    gw.sighup();
    let url = gw.admin_url("/metrics");
    eventually("the reload is applied", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let text = send("GET", &url, &[], "").await.body;
            has_sample(
                &text,
                "hookgate_config_reloads_total",
                &[("result", "applied")],
                "1",
            )
        }
    })
    .await;
    let text = send("GET", &url, &[], "").await.body;
    assert_source_zeros(&text, "metrics_b");
    gw.sigterm();
    assert_eq!(gw.wait(Duration::from_secs(30)).await, Some(0));
}
