//! The request path's layers, each small and each failing with a typed error.
//!
//! They are composed in one place, `server/stack.rs`. From the outside in:
//!
//! - [`client_ip`]: who is asking (the TCP peer, or `X-Forwarded-For` behind trusted proxies), once
//!   per request, before the request is routed to its source's stack;
//! - [`rescue`]: the single place that turns an error into a status, a reason code, a metric and a log
//!   line; a path that names no source goes through a rescue of its own (404);
//! - `post_only` (a `tower::filter` predicate in `server/stack.rs`): sources take `POST` only (405);
//! - `tower::timeout`: the whole-request deadline;
//! - [`ip_allow`]: the source's allowlist (403);
//! - [`rate_limit`]: the source's token bucket (429, with `Retry-After`);
//! - [`body_limit`]: the body size cap (413, before reading the body when `Content-Length` says so);
//! - [`verify`]: reads the exact body bytes within the [`buffer_budget`] (503 past it) and checks the
//!   signature (401);
//! - [`accept`]: dedup and durable enqueue, in one transaction (200, or 503).
//!
//! The facts they pass each other (peer address, client IP, the verified event, the outcome) are typed
//! extensions defined in [`facts`], so that no layer imports another layer's types for them.

use std::{future::Future, pin::Pin};

use bytes::Bytes;

pub(crate) mod accept;
pub(crate) mod body_limit;
pub(crate) mod buffer_budget;
pub(crate) mod client_ip;
pub(crate) mod facts;
pub(crate) mod ip_allow;
pub(crate) mod rate_limit;
pub(crate) mod request_id;
pub(crate) mod rescue;
pub(crate) mod verify;

/// The error type between layers; [`rescue`] downcasts it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request bodies inside the stack.
pub(crate) type ReqBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Response bodies: every response the gateway writes is a small JSON document.
pub(crate) type ResBody = http_body_util::Full<Bytes>;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A JSON response with `Content-Type: application/json`.
pub(crate) fn json_response(status: http::StatusCode, body: &'static [u8]) -> http::Response<ResBody> {
    let mut resp = http::Response::new(ResBody::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
