//! Silence alerts: notices when a source that should hear from its sender regularly stops doing so.
//!
//! A source with `expect_within = "1h"` is watched by a background task that ticks every second:
//! it sets `hookgate_source_silence_seconds{source}` to the seconds since the source's last accepted
//! event (a duplicate counts too: the sender is alive), or since the gateway started watching it when it
//! has had none, and `hookgate_source_silent{source}` to 1 while that exceeds `expect_within`. The
//! change to silent is logged once as a warning, the recovery once as info. Silence is an alert for
//! the operator, not a failure of the gateway: `/readyz` ignores it.
//!
//! The last event times come from [`Stats`]; the [`Silence`] handle answers `/stats` (`is_silent`).
//! A config reload replaces the watched set ([`Silence::set_sources`]) and keeps what it knew about the
//! sources that remain.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use metrics::SharedString;
use tokio_util::sync::CancellationToken;

use crate::{config::Source, stats::Stats, store::unix_ms, telemetry};

/// How often silences are checked.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What is known about one watched source.
#[derive(Debug, Clone)]
struct Watch {
    /// The longest expected silence; `None`: not watched.
    expect_within: Option<Duration>,
    /// When the gateway started watching it, Unix milliseconds: the silence of a source that never
    /// had an event counts from here.
    since_ms: u64,
    /// Whether it was silent at the last check.
    silent: bool,
}

/// The silence state of every configured source. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Silence {
    sources: Arc<Mutex<HashMap<Arc<str>, Watch>>>,
}

impl Silence {
    /// Watches `sources` from `now`.
    #[cfg(test)]
    pub(crate) fn new(sources: &[Arc<Source>], now: SystemTime) -> Self {
        let this = Self::default();
        this.set_sources(sources, now);
        this
    }

    /// Replaces the configured sources (on reload). Sources that stay keep their start time and state;
    /// a source no longer watched has its gauges zeroed, so that no alert stays raised for it.
    pub(crate) fn set_sources(&self, sources: &[Arc<Source>], now: SystemTime) {
        let mut watched = self.lock();
        let mut next = HashMap::with_capacity(sources.len());
        for source in sources {
            let watch = match watched.remove(&source.name) {
                Some(old) => {
                    if old.expect_within.is_some() && source.expect_within.is_none() {
                        clear_gauges(&source.name);
                    }
                    Watch {
                        expect_within: source.expect_within,
                        silent: old.silent && source.expect_within.is_some(),
                        ..old
                    }
                }
                None => Watch {
                    expect_within: source.expect_within,
                    since_ms: unix_ms(now),
                    silent: false,
                },
            };
            next.insert(source.name.clone(), watch);
        }
        // Removed sources: the exporter cannot drop a series, so zero it.
        for (name, old) in watched.iter() {
            if old.expect_within.is_some() {
                clear_gauges(name);
            }
        }
        *watched = next;
    }

    /// Whether `source` has been silent for longer than its `expect_within` (at the last check);
    /// false for unknown and unwatched sources.
    #[allow(dead_code)] // Read by the admin API's `/stats`.
    pub(crate) fn is_silent(&self, source: &str) -> bool {
        self.lock().get(source).is_some_and(|w| w.silent)
    }

    /// Checks every watched source at `now`: sets the gauges and logs the changes.
    pub(crate) fn check(&self, stats: &Stats, now: SystemTime) {
        let now_ms = unix_ms(now);
        let mut watched = self.lock();
        for (name, watch) in watched.iter_mut() {
            let Some(expect_within) = watch.expect_within else {
                continue;
            };
            let last_ms = stats.source(name).last_event_ms().unwrap_or(watch.since_ms);
            let silence = Duration::from_millis(now_ms.saturating_sub(last_ms));
            let silent = silence > expect_within;
            let label = SharedString::from(name.clone());
            metrics::gauge!(telemetry::SOURCE_SILENCE_SECONDS, "source" => label.clone())
                .set(silence.as_secs_f64());
            metrics::gauge!(telemetry::SOURCE_SILENT, "source" => label).set(if silent { 1.0 } else { 0.0 });
            if silent != watch.silent {
                let silence_s = silence.as_secs();
                let expect_within = humantime::format_duration(expect_within).to_string();
                if silent {
                    tracing::warn!(source = %name, silence_s, %expect_within, "source is silent: no event within expect_within");
                } else {
                    tracing::info!(source = %name, %expect_within, "source is no longer silent");
                }
                watch.silent = silent;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Watch>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn clear_gauges(name: &Arc<str>) {
    let label = SharedString::from(name.clone());
    metrics::gauge!(telemetry::SOURCE_SILENCE_SECONDS, "source" => label.clone()).set(0.0);
    metrics::gauge!(telemetry::SOURCE_SILENT, "source" => label).set(0.0);
}

/// Checks `silence` every `every` until `stop` is cancelled.
pub(crate) async fn watch(silence: Silence, stats: Stats, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = ticks.tick() => silence.check(&stats, SystemTime::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::Config;

    fn sources(expect_within: Option<&str>) -> Vec<Arc<Source>> {
        let extra = expect_within.map_or(String::new(), |d| format!("expect_within = \"{d}\"\n"));
        let text = format!(
            "[[sources]]\nname = \"quiet\"\npath = \"/q\"\nprovider = \"github\"\nsecrets = [\"s3cret-s3cret\"]\nupstream = \"http://127.0.0.1:1/\"\n{extra}"
        );
        Config::from_toml(&text, |_| None).expect("valid").sources
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn silent_after_expect_within_then_recovers() {
        let stats = Stats::default();
        let silence = Silence::new(&sources(Some("10s")), at(1000));
        silence.check(&stats, at(1010));
        assert!(
            !silence.is_silent("quiet"),
            "exactly expect_within is not yet silent"
        );
        silence.check(&stats, at(1011));
        assert!(
            silence.is_silent("quiet"),
            "no event since start for longer than expect_within"
        );
        stats.source(&Arc::from("quiet")).accepted(at(1012));
        silence.check(&stats, at(1013));
        assert!(!silence.is_silent("quiet"), "an event ends the silence");
        silence.check(&stats, at(1023));
        assert!(silence.is_silent("quiet"), "counted from the last event");
        assert!(!silence.is_silent("other"), "unknown sources are not silent");
    }

    #[test]
    fn reload_keeps_state_and_unwatching_clears_it() {
        let stats = Stats::default();
        let silence = Silence::new(&sources(Some("10s")), at(1000));
        silence.set_sources(&sources(Some("20s")), at(1015));
        silence.check(&stats, at(1019));
        assert!(!silence.is_silent("quiet"), "the new expect_within applies");
        silence.check(&stats, at(1021));
        assert!(
            silence.is_silent("quiet"),
            "the start time is kept across a reload"
        );
        silence.set_sources(&sources(None), at(1022));
        assert!(!silence.is_silent("quiet"), "an unwatched source is never silent");
        silence.check(&stats, at(2000));
        assert!(!silence.is_silent("quiet"));
    }
}
