//! Retry decisions and backoff.
//!
//! After each attempt the forwarder asks [`decide`] what to do: the event is delivered (a 2xx, or a
//! broker's ack), retried later (network or broker error, TLS handshake failure, timeout, 429, 5xx), or dead-lettered (any other status, or the event has been
//! retried for its whole horizon). Each decision carries its reason, which is logged, counted and
//! kept in the event's attempt history.
//!
//! Senders retry for days (Stripe for three), so a gateway that answered 200 must keep trying for at
//! least as long: the limit is a horizon ([`RetryPolicy::max_age`], counted from acceptance), not a
//! small attempt count, and an attempt count ([`RetryPolicy::max_attempts`]) is only an optional cap.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with equal jitter: the n-th retry waits a uniform random time in
/// `[c/2, c]` where `c = min(max, initial * 2^(n-1))`.
///
/// Half the ceiling is fixed so that retries after an outage do not bunch up right after the failure
/// (full jitter draws from 0, and a burst of events failing together then comes back together), and
/// the cap bounds how long an event waits once its upstream is back.
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
        let shift = attempt.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << shift).min(self.max)
    }

    /// An equal-jitter wait after `attempt` failed attempts, in `[ceiling / 2, ceiling]`, honouring a
    /// `Retry-After` hint (capped at the maximum backoff): the wait is never shorter than the hint.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt).as_nanos() as u64;
        let jittered = Duration::from_nanos(rng.gen_range(ceiling - ceiling / 2..=ceiling));
        match retry_after {
            Some(hint) => jittered.max(hint.min(self.max)),
            None => jittered,
        }
    }
}

/// How long and how often an event is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait between attempts.
    pub backoff: Backoff,
    /// The retry horizon: an event is retried until an attempt this long after its acceptance fails.
    pub max_age: Duration,
    /// An optional cap on the attempts, whatever the horizon.
    pub max_attempts: Option<u32>,
}

/// Who failed a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The app answered with an error status.
    App,
    /// The request never got an answer: connection refused or reset, timeout.
    Network,
    /// The TLS handshake with the upstream failed: its certificate was not trusted or not for its
    /// host, or it refused the client's.
    Tls,
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
    /// The TLS handshake failed; the text is rustls's reason (e.g. `invalid peer certificate:
    /// UnknownIssuer`). Retried like a network failure: a certificate is often fixed without a
    /// redeploy of the gateway.
    Tls(String),
    /// A broker acknowledged that it has durably taken the message (a JetStream PubAck).
    Taken,
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
        /// Why, e.g. `status 400`, `status 503 after 12 attempts` or
        /// `status 503 after 40 attempts in 72h`.
        reason: String,
        /// Who failed.
        source: ErrorSource,
    },
}

/// Decides what follows attempt number `attempt` (1-based) of an event accepted `age` ago.
///
/// A failure that can be retried is retried while `age` is below the policy's horizon, and the wait is
/// cut so that the last attempt falls at the horizon: an event is dead-lettered only by an attempt
/// made at least `max_age` after its acceptance (or by the optional attempt cap).
pub fn decide(
    outcome: &AttemptOutcome,
    attempt: u32,
    age: Duration,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
) -> RetryAction {
    let (reason, source, retry_after) = match outcome {
        AttemptOutcome::Status { status, .. } if (200..300).contains(status) => {
            return RetryAction::Delivered
        }
        AttemptOutcome::Taken => return RetryAction::Delivered,
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
        AttemptOutcome::Tls(what) => (format!("tls: {what}"), ErrorSource::Tls, None),
    };
    if policy.max_attempts.is_some_and(|max| attempt >= max) {
        return RetryAction::DeadLetter {
            reason: format!("{reason} after {attempt} attempts"),
            source,
        };
    }
    let Some(left) = policy.max_age.checked_sub(age).filter(|left| !left.is_zero()) else {
        return RetryAction::DeadLetter {
            reason: format!("{reason} after {attempt} attempts in {}", horizon(policy.max_age)),
            source,
        };
    };
    RetryAction::Retry {
        reason,
        source,
        delay: policy.backoff.delay(attempt, retry_after, rng).min(left),
    }
}

/// A horizon as its config would spell it: `72h` rather than `3days`.
fn horizon(d: Duration) -> String {
    if d.subsec_nanos() == 0 && d.as_secs() % 3600 == 0 {
        format!("{}h", d.as_secs() / 3600)
    } else {
        humantime::format_duration(d).to_string()
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

    const HOUR: Duration = Duration::from_secs(3600);

    fn backoff() -> Backoff {
        Backoff::try_new(Duration::from_secs(1), Duration::from_secs(60)).expect("valid")
    }

    /// The default policy's shape: a 72 h horizon, no attempt cap.
    fn policy(max_attempts: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            backoff: backoff(),
            max_age: 72 * HOUR,
            max_attempts,
        }
    }

    fn status(s: u16) -> AttemptOutcome {
        AttemptOutcome::Status {
            status: s,
            retry_after: None,
        }
    }

    fn delay_of(action: RetryAction) -> Duration {
        match action {
            RetryAction::Retry { delay, .. } => delay,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn a_broker_ack_is_delivered() {
        let action = decide(
            &AttemptOutcome::Taken,
            1,
            Duration::ZERO,
            &policy(Some(1)),
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(action, RetryAction::Delivered);
    }

    #[test]
    fn ceiling_doubles_up_to_max() {
        let b = backoff();
        assert_eq!(b.ceiling(1), Duration::from_secs(1));
        assert_eq!(b.ceiling(2), Duration::from_secs(2));
        assert_eq!(b.ceiling(6), Duration::from_secs(32));
        assert_eq!(b.ceiling(7), Duration::from_secs(60));
        assert_eq!(b.ceiling(1000), Duration::from_secs(60));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn equal_jitter_stays_between_half_the_ceiling_and_the_ceiling() {
        let b = backoff();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..40 {
            let ceiling = b.ceiling(attempt);
            let (mut lowest, mut highest) = (Duration::MAX, Duration::ZERO);
            for _ in 0..200 {
                let d = b.delay(attempt, None, &mut rng);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "attempt {attempt}: {d:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
                (lowest, highest) = (lowest.min(d), highest.max(d));
            }
            // Jittered, not fixed: the draws spread over most of the range.
            assert!(
                highest - lowest > ceiling / 4,
                "attempt {attempt}: {lowest:?}..{highest:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let b = backoff();
        let mut rng = StdRng::seed_from_u64(3);
        for attempt in 1..20 {
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
        let p = policy(Some(3));
        let mut rng = StdRng::seed_from_u64(1);
        let age = Duration::from_secs(10);
        assert_eq!(decide(&status(200), 1, age, &p, &mut rng), RetryAction::Delivered);
        assert_eq!(decide(&status(204), 3, age, &p, &mut rng), RetryAction::Delivered);
        assert!(matches!(
            decide(&status(500), 1, age, &p, &mut rng),
            RetryAction::Retry { .. }
        ));
        assert!(matches!(
            decide(&status(429), 2, age, &p, &mut rng),
            RetryAction::Retry { .. }
        ));
        assert_eq!(
            decide(&status(400), 1, age, &p, &mut rng),
            RetryAction::DeadLetter {
                reason: "status 400".into(),
                source: ErrorSource::App
            }
        );
        assert_eq!(
            decide(&status(503), 3, age, &p, &mut rng),
            RetryAction::DeadLetter {
                reason: "status 503 after 3 attempts".into(),
                source: ErrorSource::App
            }
        );
        match decide(
            &AttemptOutcome::Network("connection refused".into()),
            1,
            age,
            &p,
            &mut rng,
        ) {
            RetryAction::Retry { reason, source, .. } => {
                assert_eq!(reason, "network: connection refused");
                assert_eq!(source, ErrorSource::Network);
            }
            other => panic!("unexpected {other:?}"),
        }
        let tls = AttemptOutcome::Tls("invalid peer certificate: UnknownIssuer".into());
        match decide(&tls, 1, age, &p, &mut rng) {
            RetryAction::Retry { reason, source, .. } => {
                assert_eq!(reason, "tls: invalid peer certificate: UnknownIssuer");
                assert_eq!(source, ErrorSource::Tls);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            decide(&tls, 3, age, &p, &mut rng),
            RetryAction::DeadLetter {
                reason: "tls: invalid peer certificate: UnknownIssuer after 3 attempts".into(),
                source: ErrorSource::Tls
            }
        );
    }

    #[test]
    fn without_a_cap_an_event_is_retried_until_its_horizon() {
        let p = policy(None);
        let mut rng = StdRng::seed_from_u64(5);
        // Far more attempts than any count the old defaults allowed.
        for attempt in [1, 12, 13, 500, 100_000] {
            let d = delay_of(decide(&status(503), attempt, 71 * HOUR, &p, &mut rng));
            assert!(d <= p.backoff.max());
        }
        // Close to the horizon the wait is cut so that the last attempt falls on it, not past it.
        let almost = 72 * HOUR - Duration::from_secs(5);
        let d = delay_of(decide(&status(503), 40, almost, &p, &mut rng));
        assert_eq!(d, Duration::from_secs(5));
        // An attempt at or past the horizon that fails is the last.
        for age in [72 * HOUR, 80 * HOUR] {
            assert_eq!(
                decide(&status(503), 41, age, &p, &mut rng),
                RetryAction::DeadLetter {
                    reason: "status 503 after 41 attempts in 72h".into(),
                    source: ErrorSource::App
                }
            );
        }
    }

    #[test]
    fn a_simulated_outage_keeps_every_event_and_stays_within_the_cap_after() {
        // 6,000 events failing through a 5 minute outage under the default shape (1 s doubling to a
        // 10 minute cap, 72 h horizon): none is dead-lettered, and each is retried within one cap of
        // the app coming back.
        let p = RetryPolicy {
            backoff: Backoff::try_new(Duration::from_secs(1), Duration::from_secs(600)).expect("valid"),
            max_age: 72 * HOUR,
            max_attempts: None,
        };
        let mut rng = StdRng::seed_from_u64(11);
        let outage = Duration::from_secs(300);
        for _ in 0..6_000 {
            let (mut at, mut attempt) = (Duration::ZERO, 1);
            while at < outage {
                at += delay_of(decide(&status(503), attempt, at, &p, &mut rng));
                attempt += 1;
            }
            assert!(
                at - outage <= p.backoff.max(),
                "retried {:?} after the outage",
                at - outage
            );
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
