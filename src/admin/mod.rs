//! The admin listener: `/healthz` (alias `/livez`), `/readyz` and `/metrics`, never on the webhook
//! listener, and on loopback by default.
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 once the store is open and the
//! listeners serve, and 503 during shutdown or when the store stops answering. `/metrics` renders the
//! Prometheus text format; the queue gauges are read from the store at scrape time.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tower::Service;

use crate::{layers::ResBody, store::Store, telemetry};

mod readiness;

pub use readiness::Readiness;

/// The outcome of a config reload, as `POST /reload` and SIGHUP report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Whether the new config was swapped in.
    pub applied: bool,
    /// Every problem of a rejected config (`key: message`); empty when applied.
    pub errors: Vec<String>,
    /// Changed keys that keep their old value until a restart, e.g. `server.listen`.
    pub restart_required: Vec<String>,
}

/// Asks the gateway to reload its config: send a oneshot, then await the [`ReloadReport`] on it.
pub type Reloader = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<ReloadReport>>;

/// Answers admin requests.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    store: Store,
    readiness: Readiness,
}

impl Admin {
    pub(crate) fn new(store: Store, readiness: Readiness) -> Self {
        Self { store, readiness }
    }

    fn answer(&self, method: &Method, path: &str) -> Response<ResBody> {
        if !matches!(path, "/healthz" | "/livez" | "/readyz" | "/metrics") {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if method != Method::GET && method != Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        match path {
            "/readyz" if self.readiness.is_ready() && self.store.is_healthy() => {
                text(StatusCode::OK, "ready\n")
            }
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            "/metrics" => {
                match self.store.counts() {
                    Ok(counts) => {
                        metrics::gauge!(telemetry::EVENTS, "state" => "queued").set(counts.queued as f64);
                        metrics::gauge!(telemetry::EVENTS, "state" => "dead").set(counts.dead as f64);
                    }
                    Err(e) => tracing::warn!(error = %e, "counting events for /metrics failed"),
                }
                let mut resp = Response::new(ResBody::new(Bytes::from(telemetry::prometheus().render())));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => text(StatusCode::OK, "ok\n"),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ResBody> {
    let mut resp = Response::new(ResBody::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        // Counting events scans the store: keep it off the async workers.
        Box::pin(async move {
            let resp = tokio::task::spawn_blocking(move || this.answer(&method, &path))
                .await
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"));
            Ok(resp)
        })
    }
}
