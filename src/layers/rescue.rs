//! The single place where an error becomes a response: status, reason code, metric and log line.
//!
//! Layers fail with typed errors boxed as [`BoxError`]; [`classify`] finds the first known error in the
//! source chain. The service returned here never fails (`Error = Infallible`), because an error that
//! reaches hyper drops the connection without a response. Clients get `{"error":"<reason>"}`, never
//! internals: no expected signature, no store error text.
//!
//! Every request goes through a rescue: a source's stack has one for that source, and a request whose
//! path names no source goes through [`RescueLayer::unknown_source`] over a service that fails with
//! [`UnknownSource`]. A wrong method is a [`MethodNotAllowed`] error from inside the source's stack.
//!
//! `client_ip`, outside rescue (once per request, before routing) so that the log line names the
//! client, cannot answer a request itself: it records [`ForwardedForInvalid`] in the request's
//! extensions, and rescue answers that first.
//!
//! | error                | status | reason                       |
//! |----------------------|--------|------------------------------|
//! | [`UnknownSource`]    | 404    | `unknown_source`             |
//! | [`MethodNotAllowed`] | 405    | `method_not_allowed`         |
//! | [`ForwardedForInvalid`] | 400 | `malformed_forwarded_for`    |
//! | [`IpNotAllowed`]     | 403    | `ip_not_allowed`             |
//! | [`RateLimited`]      | 429    | `rate_limited` (with `Retry-After`) |
//! | [`BodyTooLarge`]     | 413    | `body_too_large`             |
//! | [`BodyReadError`]    | 400    | `malformed_request`          |
//! | [`BufferBudgetExhausted`] | 503 | `buffer_budget_exhausted` |
//! | [`VerifyError`]      | 401    | its [`reason`](VerifyError::reason) |
//! | timeout              | 408    | `request_timeout`            |
//! | [`StoreError`]       | 503    | `store_unavailable`          |
//! | [`QueueFull`]        | 503    | `queue_full` (`Retry-After: 30`) |
//! | anything else        | 500    | `internal_error`             |

use std::{
    convert::Infallible,
    error::Error,
    sync::Arc,
    task::{ready, Context, Poll},
    time::{Instant, SystemTime},
};

use http::{header, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};
use tracing::Level;

use super::{
    accept::QueueFull,
    body_limit::BodyTooLarge,
    buffer_budget::BufferBudgetExhausted,
    facts::{ClientIp, ForwardedForInvalid, Outcome, RequestId},
    ip_allow::IpNotAllowed,
    rate_limit::RateLimited,
    verify::BodyReadError,
    BoxError, BoxFuture, ResBody,
};
use crate::{
    providers::VerifyError,
    stats::SourceStats,
    store::StoreError,
    telemetry::{self, ErrorChain},
};

/// No source is configured at the request's path.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no source at this path")]
pub(crate) struct UnknownSource;

pub(crate) use super::facts::MethodNotAllowed;

/// How an error is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    level: Level,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
    /// The `Retry-After` to send, in seconds: every 503 has one (5 s unless the error says
    /// otherwise), and so does a 429.
    pub(crate) retry_after_secs: Option<u64>,
}

/// `Retry-After` on a 503 whose error does not say when to come back.
const RETRY_AFTER_SECS: u64 = 5;
/// `Retry-After` of a `queue_full`.
const QUEUE_FULL_RETRY_AFTER_SECS: u64 = 30;

impl Rejection {
    const fn new(status: StatusCode, reason: &'static str, level: Level) -> Self {
        let retry_after_secs = if status.as_u16() == StatusCode::SERVICE_UNAVAILABLE.as_u16() {
            Some(RETRY_AFTER_SECS)
        } else {
            None
        };
        Self {
            status,
            reason,
            level,
            allow: None,
            retry_after_secs,
        }
    }

    const fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

/// Maps an error to its answer by walking its source chain.
pub(crate) fn classify(err: &(dyn Error + 'static)) -> Rejection {
    let mut cause: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if e.is::<UnknownSource>() {
            return Rejection::new(StatusCode::NOT_FOUND, "unknown_source", Level::INFO);
        }
        if let Some(m) = e.downcast_ref::<MethodNotAllowed>() {
            return Rejection {
                allow: Some(m.allow),
                ..Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", Level::INFO)
            };
        }
        if e.is::<ForwardedForInvalid>() {
            return Rejection::new(StatusCode::BAD_REQUEST, "malformed_forwarded_for", Level::WARN);
        }
        if e.is::<IpNotAllowed>() {
            return Rejection::new(StatusCode::FORBIDDEN, "ip_not_allowed", Level::WARN);
        }
        if let Some(limited) = e.downcast_ref::<RateLimited>() {
            // The sender's own pace, not an attack by itself: INFO, like a timeout.
            return Rejection::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", Level::INFO)
                .retry_after(limited.retry_after_secs);
        }
        if e.is::<BodyTooLarge>() {
            return Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", Level::WARN);
        }
        if e.is::<BufferBudgetExhausted>() {
            // Not the client's fault and not a broken gateway: a load it sheds (with Retry-After).
            return Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "buffer_budget_exhausted",
                Level::WARN,
            );
        }
        if e.is::<BodyReadError>() {
            return Rejection::new(StatusCode::BAD_REQUEST, "malformed_request", Level::INFO);
        }
        if let Some(v) = e.downcast_ref::<VerifyError>() {
            return Rejection::new(StatusCode::UNAUTHORIZED, v.reason(), Level::WARN);
        }
        if e.is::<tower::timeout::error::Elapsed>() {
            return Rejection::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", Level::INFO);
        }
        if e.is::<QueueFull>() {
            // The app is behind, not the gateway broken: the queue drains at the app's pace, so
            // senders are asked to wait longer than for a store hiccup.
            return Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", Level::WARN)
                .retry_after(QUEUE_FULL_RETRY_AFTER_SECS);
        }
        if e.is::<StoreError>() {
            return Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", Level::ERROR);
        }
        cause = e.source();
    }
    Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", Level::ERROR)
}

/// Counts and logs a request that the HTTP layer refused before any layer saw it (a head over the
/// limit, answered `431` by hyper itself): its source is unknown, and so is its latency (0).
pub(crate) fn refused_by_http(reason: &'static str, status: StatusCode, client: std::net::IpAddr) {
    let source: Arc<str> = Arc::from(telemetry::UNKNOWN_SOURCE);
    let started = Instant::now();
    record(&source, "rejected", reason, started);
    // hyper refused the head, so there is no sender's id to take.
    let request_id = RequestId::generate();
    RequestLine {
        source: &source,
        outcome: "rejected",
        reason,
        status: status.as_u16(),
        event_id: None,
        request_id: Some(&request_id),
        client: Some(ClientIp(client)),
        started,
    }
    .log(Level::WARN);
}

/// Answers an error for `source`: counts it, logs it and builds the JSON response.
pub(crate) fn respond(
    source: &Arc<str>,
    stats: Option<&SourceStats>,
    err: &(dyn Error + 'static),
    client: Option<ClientIp>,
    request_id: Option<&RequestId>,
    started: Instant,
) -> Response<ResBody> {
    let rejection = classify(err);
    let outcome = if rejection.status.is_server_error() {
        "error"
    } else {
        "rejected"
    };
    record(source, outcome, rejection.reason, started);
    if let Some(stats) = stats {
        stats.rejected(rejection.reason);
    }
    let line = RequestLine {
        source,
        outcome,
        reason: rejection.reason,
        status: rejection.status.as_u16(),
        event_id: None,
        request_id,
        client,
        started,
    };
    // The error's Display names what failed, never a value that could be secret.
    match rejection.level {
        Level::ERROR => line.log_error(err),
        Level::WARN => line.log(Level::WARN),
        _ => line.log(Level::INFO),
    }
    let body = format!("{{\"error\":\"{}\"}}", rejection.reason);
    let mut resp = Response::new(ResBody::new(body.into()));
    *resp.status_mut() = rejection.status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(allow) = rejection.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(secs) = rejection.retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn record(source: &Arc<str>, outcome: &'static str, reason: &'static str, started: Instant) {
    let source = metrics::SharedString::from(source.clone());
    metrics::counter!(telemetry::REQUESTS, "source" => source.clone(), "outcome" => outcome, "reason" => reason)
        .increment(1);
    metrics::histogram!(telemetry::REQUEST_DURATION, "source" => source, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

/// The one log line of a request: source, outcome, reason, status, event id, request id, latency and
/// client IP; never a body, a secret or a signature.
struct RequestLine<'a> {
    source: &'a str,
    outcome: &'static str,
    reason: &'static str,
    status: u16,
    event_id: Option<&'a str>,
    /// Absent only where the stack runs without the server (tests).
    request_id: Option<&'a RequestId>,
    client: Option<ClientIp>,
    started: Instant,
}

impl RequestLine<'_> {
    fn log(&self, level: Level) {
        let client = self.client.map(|c| c.0.to_string()).unwrap_or_default();
        let latency_ms = telemetry::millis(self.started.elapsed());
        let event_id = self.event_id.unwrap_or("");
        let request_id = self.request_id.map(RequestId::as_str);
        macro_rules! line {
            ($lvl:ident) => {
                tracing::$lvl!(
                    source = self.source,
                    outcome = self.outcome,
                    reason = self.reason,
                    status = self.status,
                    event_id,
                    request_id,
                    latency_ms,
                    client_ip = %client,
                    "request"
                )
            };
        }
        match level {
            Level::WARN => line!(warn),
            Level::DEBUG => line!(debug),
            _ => line!(info),
        }
    }

    fn log_error(&self, err: &(dyn Error + 'static)) {
        let client = self.client.map(|c| c.0.to_string()).unwrap_or_default();
        let latency_ms = telemetry::millis(self.started.elapsed());
        let request_id = self.request_id.map(RequestId::as_str);
        tracing::error!(
            source = self.source,
            outcome = self.outcome,
            reason = self.reason,
            status = self.status,
            request_id,
            latency_ms,
            client_ip = %client,
            error = %ErrorChain(err),
            "request"
        );
    }
}

/// Turns a source's fallible stack into an infallible one.
#[derive(Debug, Clone)]
pub(crate) struct RescueLayer {
    source: Arc<str>,
    /// The source's `/stats` counters; `None` for requests to no source.
    stats: Option<Arc<SourceStats>>,
}

impl RescueLayer {
    /// Rescue for `source`. Built for each source at start and on every reload, so this is also where
    /// the source's counters are registered at 0.
    pub(crate) fn new(source: Arc<str>, stats: Arc<SourceStats>) -> Self {
        telemetry::register_source(&source);
        Self {
            source,
            stats: Some(stats),
        }
    }

    /// Rescue for requests whose path names no source: counted and logged under
    /// [`telemetry::UNKNOWN_SOURCE`], with no `/stats` counters.
    pub(crate) fn unknown_source() -> Self {
        Self {
            source: Arc::from(telemetry::UNKNOWN_SOURCE),
            stats: None,
        }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Rescue {
            inner,
            source: self.source.clone(),
            stats: self.stats.clone(),
            not_ready: None,
        }
    }
}

/// See [`RescueLayer`].
#[derive(Debug)]
pub(crate) struct Rescue<S> {
    inner: S,
    source: Arc<str>,
    stats: Option<Arc<SourceStats>>,
    /// An error from the inner `poll_ready`, answered on the next call.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for Rescue<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            source: self.source.clone(),
            stats: self.stats.clone(),
            not_ready: None,
        }
    }
}

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_none() {
            if let Err(e) = ready!(self.inner.poll_ready(cx)) {
                self.not_ready = Some(e.into());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let client = req.extensions().get::<ClientIp>().copied();
        let request_id = req.extensions().get::<RequestId>().cloned();
        let (source, stats) = (self.source.clone(), self.stats.clone());
        let invalid = req.extensions().get::<ForwardedForInvalid>().copied();
        if let Some(err) = invalid {
            // Not one layer inside runs: without a client address, the allowlist cannot be applied.
            return Box::pin(std::future::ready(Ok(respond(
                &source,
                stats.as_deref(),
                &err,
                client,
                request_id.as_ref(),
                started,
            ))));
        }
        if let Some(err) = self.not_ready.take() {
            return Box::pin(std::future::ready(Ok(respond(
                &source,
                stats.as_deref(),
                &*err,
                client,
                request_id.as_ref(),
                started,
            ))));
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = match fut.await {
                Ok(resp) => resp,
                Err(err) => {
                    let err: BoxError = err.into();
                    return Ok(respond(
                        &source,
                        stats.as_deref(),
                        &*err,
                        client,
                        request_id.as_ref(),
                        started,
                    ));
                }
            };
            let now = SystemTime::now();
            let (outcome, reason, event_id, level) = match resp.extensions().get::<Outcome>() {
                Some(Outcome::Accepted {
                    event_id,
                    failure: None,
                }) => {
                    if let Some(stats) = &stats {
                        stats.accepted(now);
                    }
                    ("accepted", "none", Some(event_id), Level::INFO)
                }
                // Shadow mode: accepted and forwarded marked unverified; the reason is kept.
                Some(Outcome::Accepted {
                    event_id,
                    failure: Some(reason),
                }) => {
                    if let Some(stats) = &stats {
                        stats.accepted(now);
                    }
                    ("accepted_unverified", *reason, Some(event_id), Level::WARN)
                }
                Some(Outcome::Duplicate { event_id }) => {
                    if let Some(stats) = &stats {
                        stats.duplicate(now);
                    }
                    ("duplicate", "none", Some(event_id), Level::INFO)
                }
                Some(Outcome::Handshake { event_id }) => ("handshake", "none", Some(event_id), Level::INFO),
                None => ("other", "none", None, Level::INFO),
            };
            record(&source, outcome, reason, started);
            let line = RequestLine {
                source: &source,
                outcome,
                reason,
                status: resp.status().as_u16(),
                event_id: event_id.map(String::as_str),
                request_id: request_id.as_ref(),
                client,
                started,
            };
            line.log(level);
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests;
