//! Caps the request body at `[server] max_body_size` bytes, failing with [`BodyTooLarge`] (413).
//!
//! A `Content-Length` above the cap is rejected before a byte of the body is read. Otherwise the body
//! is wrapped in [`http_body_util::Limited`], so a chunked or lying body fails as soon as it passes the
//! cap, in the `verify` layer that reads it. (tower-http's `RequestBodyLimitLayer` does the same, but
//! answers 413 by itself with a text body; here every rejection goes through `rescue`.)

use std::task::{Context, Poll};

use http::{header::CONTENT_LENGTH, Request};
use http_body_util::{BodyExt, Limited};
use tower::{Layer, Service};

use super::{BoxError, BoxFuture, ReqBody};

/// The body is larger than the configured cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body larger than the configured max_body_size")]
pub(crate) struct BodyTooLarge;

/// Applies the body cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// See [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> Service<Request<ReqBody>> for BodyLimit<S>
where
    S: Service<Request<ReqBody>, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limit as u64) {
            return Box::pin(std::future::ready(Err(BodyTooLarge.into())));
        }
        let limit = self.limit;
        let req = req.map(|body| Limited::new(body, limit).boxed());
        Box::pin(self.inner.call(req))
    }
}
