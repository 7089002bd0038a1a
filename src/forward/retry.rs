//! Retry decisions and backoff.
//!
//! After each attempt the forwarder asks [`decide`] what to do: the event is delivered, retried later
//! (network error, timeout, 429, 5xx), or dead-lettered (any other status, or attempts exhausted). Each
//! decision carries its reason, which is logged, counted and kept in the event's attempt history.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter: the n-th retry waits a uniform random time in
/// `[0, min(max, initial * 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

/// Why a [`Backoff`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    /// The initial backoff is zero.
    #[error("initial_backoff must be greater than zero")]
    ZeroInitial,
    /// The initial backoff exceeds the maximum.
    #[error("initial_backoff ({initial}) is greater than max_backoff ({max})")]
    InitialAboveMax {
        /// The initial backoff, humanized.
        initial: String,
        /// The maximum, humanized.
        max: String,
    },
}

impl Backoff {
    /// Validates that `0 < initial <= max`.
    pub fn try_new(initial: Duration, max: Duration) -> Result<Self, BackoffError> {
        if initial.is_zero() {
            return Err(BackoffError::ZeroInitial);
        }
        if initial > max {
            return Err(BackoffError::InitialAboveMax {
                initial: humantime::format_duration(initial).to_string(),
                max: humantime::format_duration(max).to_string(),
            });
        }
        Ok(Self { initial, max })
    }

    /// The largest backoff.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The upper bound of the wait after `attempt` failed attempts (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(40);
        self.initial.saturating_mul(1u32 << shift.min(31)).min(self.max)
    }

    /// A full-jitter wait after `attempt` failed attempts, honouring a `Retry-After` hint (capped at
    /// the maximum backoff): the wait is never shorter than the hint.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jittered = Duration::from_nanos(rng.gen_range(0..=ceiling.as_nanos() as u64));
        match retry_after {
            Some(hint) => jittered.max(hint.min(self.max)),
            None => jittered,
        }
    }
}

/// Who failed a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The app answered with an error status.
    App,
    /// The request never got an answer: connection refused or reset, timeout.
    Network,
}

/// What happened to one attempt, as the forwarder saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The app answered with this status; `retry_after` is its parsed `Retry-After` header.
    Status {
        /// The status code.
        status: u16,
        /// The `Retry-After` hint, if the app sent one that parses.
        retry_after: Option<Duration>,
    },
    /// No answer; the text names the failure kind, never a body.
    Network(String),
}

/// What to do after an attempt; each variant carries its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// A 2xx: done.
    Delivered,
    /// Try again after the delay.
    Retry {
        /// Why, e.g. `status 503` or `network: connection refused`.
        reason: String,
        /// Who failed.
        source: ErrorSource,
        /// How long to wait.
        delay: Duration,
    },
    /// Give up and keep the event as a dead letter.
    DeadLetter {
        /// Why, e.g. `status 400` or `status 503 after 12 attempts`.
        reason: String,
        /// Who failed.
        source: ErrorSource,
    },
}

/// Decides what follows attempt number `attempt` (1-based) of at most `max_attempts`.
pub fn decide(
    outcome: &AttemptOutcome,
    attempt: u32,
    max_attempts: u32,
    backoff: &Backoff,
    rng: &mut impl Rng,
) -> RetryAction {
    let (reason, source, retry_after) = match outcome {
        AttemptOutcome::Status { status, .. } if (200..300).contains(status) => {
            return RetryAction::Delivered
        }
        AttemptOutcome::Status { status, retry_after } if *status == 429 || (500..600).contains(status) => {
            (format!("status {status}"), ErrorSource::App, *retry_after)
        }
        AttemptOutcome::Status { status, .. } => {
            return RetryAction::DeadLetter {
                reason: format!("status {status}"),
                source: ErrorSource::App,
            };
        }
        AttemptOutcome::Network(what) => (format!("network: {what}"), ErrorSource::Network, None),
    };
    if attempt >= max_attempts {
        return RetryAction::DeadLetter {
            reason: format!("{reason} after {attempt} attempts"),
            source,
        };
    }
    RetryAction::Retry {
        reason,
        source,
        delay: backoff.delay(attempt, retry_after, rng),
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (relative to `now`).
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn backoff() -> Backoff {
        Backoff::try_new(Duration::from_secs(1), Duration::from_secs(60)).expect("valid")
    }

    #[test]
    fn ceiling_doubles_up_to_max() {
        let b = backoff();
        assert_eq!(b.ceiling(1), Duration::from_secs(1));
        assert_eq!(b.ceiling(2), Duration::from_secs(2));
        assert_eq!(b.ceiling(6), Duration::from_secs(32));
        assert_eq!(b.ceiling(7), Duration::from_secs(60));
        assert_eq!(b.ceiling(1000), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_ceiling_and_honours_retry_after() {
        let b = backoff();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..20 {
            let d = b.delay(attempt, None, &mut rng);
            assert!(d <= b.ceiling(attempt), "{d:?} > {:?}", b.ceiling(attempt));
            let hinted = b.delay(attempt, Some(Duration::from_secs(30)), &mut rng);
            assert!(hinted >= Duration::from_secs(30));
            let capped = b.delay(attempt, Some(Duration::from_secs(3600)), &mut rng);
            assert_eq!(capped, Duration::from_secs(60));
        }
    }

    #[test]
    fn invalid_backoffs_are_rejected() {
        assert_eq!(
            Backoff::try_new(Duration::ZERO, Duration::from_secs(1)),
            Err(BackoffError::ZeroInitial)
        );
        let err = Backoff::try_new(Duration::from_secs(120), Duration::from_secs(60)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "initial_backoff (2m) is greater than max_backoff (1m)"
        );
    }

    #[test]
    fn decisions() {
        let b = backoff();
        let mut rng = StdRng::seed_from_u64(1);
        let status = |s| AttemptOutcome::Status {
            status: s,
            retry_after: None,
        };
        assert_eq!(decide(&status(200), 1, 3, &b, &mut rng), RetryAction::Delivered);
        assert_eq!(decide(&status(204), 3, 3, &b, &mut rng), RetryAction::Delivered);
        assert!(matches!(
            decide(&status(500), 1, 3, &b, &mut rng),
            RetryAction::Retry { .. }
        ));
        assert!(matches!(
            decide(&status(429), 2, 3, &b, &mut rng),
            RetryAction::Retry { .. }
        ));
        assert_eq!(
            decide(&status(400), 1, 3, &b, &mut rng),
            RetryAction::DeadLetter {
                reason: "status 400".into(),
                source: ErrorSource::App
            }
        );
        assert_eq!(
            decide(&status(503), 3, 3, &b, &mut rng),
            RetryAction::DeadLetter {
                reason: "status 503 after 3 attempts".into(),
                source: ErrorSource::App
            }
        );
        match decide(
            &AttemptOutcome::Network("connection refused".into()),
            1,
            3,
            &b,
            &mut rng,
        ) {
            RetryAction::Retry { reason, source, .. } => {
                assert_eq!(reason, "network: connection refused");
                assert_eq!(source, ErrorSource::Network);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
