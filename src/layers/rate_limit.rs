//! Rejects a source's requests past its `rate_limit` with [`RateLimited`] (429, with `Retry-After`).
//!
//! Each source with `rate_limit = { per_second, burst }` has one token bucket: it holds up to `burst`
//! tokens, refills at `per_second`, and every request that reaches it takes one. A request that finds
//! no whole token is refused, and told in `Retry-After` (whole seconds, at least 1) when the next one
//! will be there.
//!
//! It sits after `ip_allow`, so that an address outside the allowlist cannot spend the sender's
//! tokens, and before `body_limit` and `verify`, so that a flood is shed before any body is buffered
//! or any signature computed. The price is that an unverified request from an allowed address spends a
//! token too: counting only verified requests would mean buffering and verifying the flood first.
//!
//! The buckets outlive the stacks: [`Buckets`] keeps one per source name for the process's life, and
//! a config reload (which rebuilds every stack) takes the same bucket again, so that a reload never
//! refills it (a reload must not be a way round the limit). A source whose `rate_limit` changed keeps
//! its current level, capped at the new burst, and refills at the new rate from then on.
//!
//! The bucket is written by hand rather than taken from `governor`: governor's limiter fixes its quota
//! when it is built and keeps its state in its own representation (a GCRA arrival time), so a new rate
//! on reload means a new limiter and a full bucket. Here the state is a level and a time under a
//! mutex, held for a few arithmetic operations per request of one source, which a reload can re-rate
//! in place.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use http::Request;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{BoxError, BoxFuture};

/// A source's rate: `per_second` tokens a second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateLimit {
    per_second: f64,
    burst: u32,
}

/// Why a `rate_limit` is not valid; the config names the key.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub(crate) enum RateLimitError {
    /// `per_second` is zero, negative or not a number.
    #[error("per_second must be greater than 0")]
    PerSecond,
    /// `burst` is below 1 (or past `u32::MAX`).
    #[error("burst must be at least 1")]
    Burst,
}

impl RateLimit {
    /// A rate of `per_second` (> 0, finite) with room for `burst` (>= 1) requests at once.
    pub(crate) fn try_new(per_second: f64, burst: i64) -> Result<Self, RateLimitError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(RateLimitError::PerSecond);
        }
        let burst = u32::try_from(burst)
            .ok()
            .filter(|b| *b >= 1)
            .ok_or(RateLimitError::Burst)?;
        Ok(Self { per_second, burst })
    }

    /// Tokens added per second.
    pub(crate) fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Most tokens held.
    pub(crate) fn burst(&self) -> u32 {
        self.burst
    }
}

/// The source's bucket was empty. Carries when the next token is there, for `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded")]
pub(crate) struct RateLimited {
    /// Whole seconds until a request would be let through, at least 1.
    pub(crate) retry_after_secs: u64,
}

/// One source's token bucket.
#[derive(Debug)]
pub(crate) struct Bucket {
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    rate: RateLimit,
    /// Tokens held at `at`, fractional: refill is continuous.
    tokens: f64,
    at: Instant,
}

impl BucketState {
    /// Adds what `rate` refilled since `at`, up to the burst.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
        self.at = now;
    }
}

impl Bucket {
    /// A full bucket.
    fn new(rate: RateLimit, now: Instant) -> Self {
        Self {
            state: Mutex::new(BucketState {
                rate,
                tokens: f64::from(rate.burst),
                at: now,
            }),
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub(crate) fn take(&self, now: Instant) -> Result<(), RateLimited> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.refill(now);
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - state.tokens) / state.rate.per_second;
        Err(RateLimited {
            retry_after_secs: (wait.ceil() as u64).max(1),
        })
    }

    /// Changes the rate from `now` on: what was refilled so far at the old rate is kept, capped at the
    /// new burst.
    fn set_rate(&self, rate: RateLimit, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.rate != rate {
            state.refill(now);
            state.rate = rate;
            state.tokens = state.tokens.min(f64::from(rate.burst));
        }
    }

    #[cfg(test)]
    fn tokens(&self, now: Instant) -> f64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.refill(now);
        state.tokens
    }
}

/// Every source's bucket, by source name, for the process's life (see the module docs). Cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Buckets {
    by_source: Arc<Mutex<HashMap<Arc<str>, Arc<Bucket>>>>,
}

impl Buckets {
    /// The bucket of `source` at `rate`: the one it already has (re-rated if `rate` changed), else a
    /// full one.
    pub(crate) fn bucket(&self, source: &Arc<str>, rate: RateLimit) -> Arc<Bucket> {
        let now = Instant::now();
        let mut by_source = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        match by_source.get(source) {
            Some(bucket) => {
                bucket.set_rate(rate, now);
                bucket.clone()
            }
            None => {
                let bucket = Arc::new(Bucket::new(rate, now));
                by_source.insert(source.clone(), bucket.clone());
                bucket
            }
        }
    }

    /// Forgets the buckets of sources not in `limited` (removed, or without a `rate_limit` now).
    pub(crate) fn retain(&self, limited: &[Arc<str>]) {
        let mut by_source = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        by_source.retain(|name, _| limited.contains(name));
    }
}

/// Applies a source's bucket; `None` lets everything through.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitLayer {
    bucket: Option<Arc<Bucket>>,
}

impl RateLimitLayer {
    pub(crate) fn new(bucket: Option<Arc<Bucket>>) -> Self {
        Self { bucket }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// See [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RateLimitService<S> {
    inner: S,
    bucket: Option<Arc<Bucket>>,
}

impl<S, B> Service<Request<B>> for RateLimitService<S>
where
    S: Service<Request<B>, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(bucket) = &self.bucket {
            if let Err(limited) = bucket.take(Instant::now()) {
                return Box::pin(std::future::ready(Err(limited.into())));
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    fn rate(per_second: f64, burst: i64) -> RateLimit {
        RateLimit::try_new(per_second, burst).expect("valid rate")
    }

    #[test]
    fn rates_are_checked() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                RateLimit::try_new(bad, 1),
                Err(RateLimitError::PerSecond),
                "{bad}"
            );
        }
        for bad in [0, -1, i64::from(u32::MAX) + 1] {
            assert_eq!(RateLimit::try_new(1.0, bad), Err(RateLimitError::Burst), "{bad}");
        }
        assert_eq!(rate(0.5, 1).burst(), 1);
    }

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_refuses_until_it_refills() {
        let t0 = Instant::now();
        let bucket = Bucket::new(rate(2.0, 3), t0);
        for _ in 0..3 {
            bucket.take(t0).expect("within the burst");
        }
        // Empty: the next token is half a second away, which is advertised as 1 s.
        assert_eq!(bucket.take(t0), Err(RateLimited { retry_after_secs: 1 }));
        bucket
            .take(t0 + Duration::from_millis(500))
            .expect("one token refilled");
        assert!(bucket.take(t0 + Duration::from_millis(500)).is_err());
        // Refill stops at the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(bucket.tokens(later), 3.0);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let t0 = Instant::now();
        let bucket = Bucket::new(rate(0.25, 1), t0);
        bucket.take(t0).expect("the burst");
        assert_eq!(bucket.take(t0), Err(RateLimited { retry_after_secs: 4 }));
        assert_eq!(
            bucket.take(t0 + Duration::from_millis(2500)),
            Err(RateLimited { retry_after_secs: 2 })
        );
        bucket.take(t0 + Duration::from_secs(4)).expect("refilled");
    }

    #[test]
    fn the_registry_keeps_a_bucket_across_rebuilds_and_rerates_it_in_place() {
        let buckets = Buckets::default();
        let name: Arc<str> = Arc::from("gh");
        let first = buckets.bucket(&name, rate(1.0, 10));
        let now = Instant::now();
        for _ in 0..8 {
            first.take(now).expect("within the burst");
        }
        // A rebuild with the same rate: the same bucket, not refilled.
        let again = buckets.bucket(&name, rate(1.0, 10));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(again.tokens(now) < 3.0);
        // A new rate keeps the level, capped at the new burst.
        let rerated = buckets.bucket(&name, rate(1.0, 1));
        assert!(Arc::ptr_eq(&first, &rerated));
        assert!(rerated.tokens(now) <= 1.0);
        // A source that loses its limit loses its bucket; a new one starts full.
        buckets.retain(&[]);
        let fresh = buckets.bucket(&name, rate(1.0, 10));
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert!(fresh.tokens(Instant::now()) >= 10.0);
    }

    #[tokio::test]
    async fn the_layer_refuses_with_rate_limited_and_lets_through_without_a_bucket() {
        let call = |bucket: Option<Arc<Bucket>>| async move {
            ServiceBuilder::new()
                .layer(RateLimitLayer::new(bucket))
                .service(service_fn(|_req: Request<()>| async {
                    Ok::<_, BoxError>("passed")
                }))
                .oneshot(Request::new(()))
                .await
        };
        let bucket = Arc::new(Bucket::new(rate(0.001, 1), Instant::now()));
        assert_eq!(call(Some(bucket.clone())).await.expect("the burst"), "passed");
        let err = call(Some(bucket)).await.expect_err("refused");
        let limited = err.downcast_ref::<RateLimited>().expect("a RateLimited");
        assert!(limited.retry_after_secs >= 999, "{limited:?}");
        for _ in 0..3 {
            assert_eq!(call(None).await.expect("no limit"), "passed");
        }
    }
}
