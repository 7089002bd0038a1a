//! The single place where an error becomes a response: status, reason code, metric and log line.
//!
//! Layers fail with typed errors boxed as [`BoxError`]; [`classify`] finds the first known error in the
//! source chain. The service returned here never fails (`Error = Infallible`), because an error that
//! reaches hyper drops the connection without a response. Clients get `{"error":"<reason>"}`, never
//! internals: no expected signature, no store error text.
//!
//! | error                | status | reason                       |
//! |----------------------|--------|------------------------------|
//! | [`UnknownSource`]    | 404    | `unknown_source`             |
//! | [`MethodNotAllowed`] | 405    | `method_not_allowed`         |
//! | [`IpNotAllowed`]     | 403    | `ip_not_allowed`             |
//! | [`BodyTooLarge`]     | 413    | `body_too_large`             |
//! | [`BodyReadError`]    | 400    | `malformed_request`          |
//! | [`VerifyError`]      | 401    | its [`reason`](VerifyError::reason) |
//! | timeout              | 408    | `request_timeout`            |
//! | [`StoreError`]       | 503    | `store_unavailable`          |
//! | anything else        | 500    | `internal_error`             |

use std::{
    convert::Infallible,
    error::Error,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Instant,
};

use http::{header, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};
use tracing::Level;

use super::{
    accept::Outcome, body_limit::BodyTooLarge, client_ip::ClientIp, ip_allow::IpNotAllowed,
    verify::BodyReadError, BoxError, BoxFuture, ResBody,
};
use crate::{providers::VerifyError, store::StoreError, telemetry};

/// No source is configured at the request's path.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no source at this path")]
pub(crate) struct UnknownSource;

/// Sources accept `POST` only.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("method not allowed")]
pub(crate) struct MethodNotAllowed;

/// How an error is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    level: Level,
}

impl Rejection {
    const fn new(status: StatusCode, reason: &'static str, level: Level) -> Self {
        Self {
            status,
            reason,
            level,
        }
    }
}

/// Maps an error to its answer by walking its source chain.
pub(crate) fn classify(err: &(dyn Error + 'static)) -> Rejection {
    let mut cause: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if e.is::<UnknownSource>() {
            return Rejection::new(StatusCode::NOT_FOUND, "unknown_source", Level::INFO);
        }
        if e.is::<MethodNotAllowed>() {
            return Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", Level::INFO);
        }
        if e.is::<IpNotAllowed>() {
            return Rejection::new(StatusCode::FORBIDDEN, "ip_not_allowed", Level::WARN);
        }
        if e.is::<BodyTooLarge>() {
            return Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", Level::WARN);
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
        if e.is::<StoreError>() {
            return Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", Level::ERROR);
        }
        cause = e.source();
    }
    Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", Level::ERROR)
}

/// Answers an error for `source`: counts it, logs it and builds the JSON response.
pub(crate) fn respond(
    source: &Arc<str>,
    err: &(dyn Error + 'static),
    client: Option<ClientIp>,
    started: Instant,
) -> Response<ResBody> {
    let rejection = classify(err);
    let outcome = if rejection.status.is_server_error() {
        "error"
    } else {
        "rejected"
    };
    record(source, outcome, rejection.reason, started);
    let client = client.map(|c| c.0.to_string()).unwrap_or_default();
    // The error's Display names what failed, never a value that could be secret.
    match rejection.level {
        Level::ERROR => {
            tracing::error!(source = %source, client_ip = %client, status = rejection.status.as_u16(), reason = rejection.reason, error = %ErrorChain(err), "request failed")
        }
        Level::WARN => {
            tracing::warn!(source = %source, client_ip = %client, status = rejection.status.as_u16(), reason = rejection.reason, "request rejected")
        }
        _ => {
            tracing::info!(source = %source, client_ip = %client, status = rejection.status.as_u16(), reason = rejection.reason, "request rejected")
        }
    }
    let body = format!("{{\"error\":\"{}\"}}", rejection.reason);
    let mut resp = Response::new(ResBody::new(body.into()));
    *resp.status_mut() = rejection.status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if rejection.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if rejection.status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
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

/// Displays an error with its causes, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// Turns a source's fallible stack into an infallible one.
#[derive(Debug, Clone)]
pub(crate) struct RescueLayer {
    source: Arc<str>,
}

impl RescueLayer {
    pub(crate) fn new(source: Arc<str>) -> Self {
        Self { source }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Rescue {
            inner,
            source: self.source.clone(),
            not_ready: None,
        }
    }
}

/// See [`RescueLayer`].
#[derive(Debug)]
pub(crate) struct Rescue<S> {
    inner: S,
    source: Arc<str>,
    /// An error from the inner `poll_ready`, answered on the next call.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for Rescue<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            source: self.source.clone(),
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
        let source = self.source.clone();
        if let Some(err) = self.not_ready.take() {
            return Box::pin(std::future::ready(Ok(respond(&source, &*err, client, started))));
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(resp) => {
                    match resp.extensions().get::<Outcome>() {
                        Some(Outcome::Accepted {
                            event_id,
                            failure: None,
                        }) => {
                            record(&source, "accepted", "none", started);
                            tracing::debug!(source = %source, event_id = %event_id, "event accepted");
                        }
                        Some(Outcome::Accepted {
                            event_id,
                            failure: Some(reason),
                        }) => {
                            // Shadow mode: accepted and forwarded marked unverified; the reason is kept.
                            record(&source, "accepted_unverified", reason, started);
                            let client = client.map(|c| c.0.to_string()).unwrap_or_default();
                            tracing::warn!(source = %source, client_ip = %client, event_id = %event_id, reason, "unverified event accepted (enforce = false)");
                        }
                        Some(Outcome::Handshake { event_id }) => {
                            record(&source, "handshake", "none", started);
                            tracing::info!(source = %source, event_id = %event_id, "endpoint check answered");
                        }
                        Some(Outcome::Duplicate { event_id }) => {
                            record(&source, "duplicate", "none", started);
                            tracing::debug!(source = %source, event_id = %event_id, "duplicate event");
                        }
                        None => record(&source, "other", "none", started),
                    }
                    Ok(resp)
                }
                Err(err) => {
                    let err: BoxError = err.into();
                    Ok(respond(&source, &*err, client, started))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
