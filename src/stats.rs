//! Per-source request counters since start, for the admin API's `/stats` and silence alerts.
//!
//! Prometheus has the same numbers as counters; these are kept apart so that the admin API can answer
//! per source without parsing metrics text, and so that each gateway in a process (tests) has its own.
//! Each source's stack holds its own [`SourceStats`]: recording is a few atomic adds, no lock, except
//! for rejections, which are rare and keyed by reason.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use crate::store::unix_ms;

/// The counters of one source.
#[derive(Debug, Default)]
pub struct SourceStats {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    /// Unix milliseconds of the last accepted (or duplicate) event; 0 if none.
    last_event_ms: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of a source's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// Events accepted (stored for delivery).
    pub accepted: u64,
    /// Repeats answered `duplicate`.
    pub duplicates: u64,
    /// Rejections by reason code.
    pub rejected: BTreeMap<&'static str, u64>,
    /// When the last event was accepted, Unix milliseconds.
    pub last_event_ms: Option<u64>,
}

impl SourceStats {
    /// Counts an accepted event at `now`.
    pub fn accepted(&self, now: SystemTime) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.last_event_ms.fetch_max(unix_ms(now), Ordering::Relaxed);
    }

    /// Counts a duplicate at `now`.
    pub fn duplicate(&self, now: SystemTime) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
        self.last_event_ms.fetch_max(unix_ms(now), Ordering::Relaxed);
    }

    /// Counts a rejection.
    pub fn rejected(&self, reason: &'static str) {
        let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *rejected.entry(reason).or_default() += 1;
    }

    /// When the last event was accepted, Unix milliseconds.
    pub fn last_event_ms(&self) -> Option<u64> {
        Some(self.last_event_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> SourceSnapshot {
        SourceSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            last_event_ms: self.last_event_ms(),
        }
    }
}

/// Every source's counters, by name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    sources: Arc<Mutex<HashMap<Arc<str>, Arc<SourceStats>>>>,
}

impl Stats {
    /// The counters of `source`, created on first use (and kept across config reloads).
    pub fn source(&self, source: &Arc<str>) -> Arc<SourceStats> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.entry(source.clone()).or_default().clone()
    }

    /// Every source's counters, sorted by name.
    pub fn snapshot(&self) -> Vec<(Arc<str>, SourceSnapshot)> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = sources
            .iter()
            .map(|(name, s)| (name.clone(), s.snapshot()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn counts_per_source() {
        let stats = Stats::default();
        let gh: Arc<str> = Arc::from("github");
        let s = stats.source(&gh);
        assert!(Arc::ptr_eq(&s, &stats.source(&gh)), "one counter set per source");
        s.accepted(UNIX_EPOCH + Duration::from_millis(5));
        s.duplicate(UNIX_EPOCH + Duration::from_millis(3));
        s.rejected("signature_mismatch");
        s.rejected("signature_mismatch");
        s.rejected("ip_not_allowed");
        let snap = stats.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].1.accepted, 1);
        assert_eq!(snap[0].1.duplicates, 1);
        assert_eq!(snap[0].1.last_event_ms, Some(5), "the latest time wins");
        assert_eq!(snap[0].1.rejected.get("signature_mismatch"), Some(&2));
        assert_eq!(snap[0].1.rejected.get("ip_not_allowed"), Some(&1));
    }
}
