//! Reads the body as received and verifies it with the source's provider: 401 on failure.
//!
//! The body is kept as the exact bytes received, whatever the content type: signatures are computed
//! over raw bytes, never over re-serialized JSON. On success the inner service gets a
//! `Request<Bytes>` carrying a [`Verified`] extension with the event id.
//!
//! Fails with [`VerifyError`], [`BodyTooLarge`] (the `Limited` body passed its cap while being read)
//! or [`BodyReadError`] (the client went away or sent a broken body).

use std::{
    mem,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use bytes::{Bytes, BytesMut};
use http::{request::Parts, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::{
    body_limit::BodyTooLarge,
    facts::{Outcome, Verified},
    BoxError, BoxFuture, ReqBody, ResBody,
};
use crate::providers::{body_digest_id, Enforcement, Handshake, Provider, VerifyError, WebhookRequest};

/// Event ids longer than this, or with bytes that cannot go in a header, are replaced by the body
/// digest, so that every id can be forwarded in `X-Hookgate-Event-Id` and used as a bounded key.
const MAX_EVENT_ID_LEN: usize = 200;

/// The request body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("request body could not be read")]
pub(crate) struct BodyReadError(#[source] pub BoxError);

/// Verifies requests with one provider.
#[derive(Debug, Clone)]
pub(crate) struct VerifyLayer {
    provider: Arc<dyn Provider>,
    enforcement: Enforcement,
}

impl VerifyLayer {
    pub(crate) fn new(provider: Arc<dyn Provider>, enforcement: Enforcement) -> Self {
        Self {
            provider,
            enforcement,
        }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Verify {
            inner,
            provider: self.provider.clone(),
            enforcement: self.enforcement,
        }
    }
}

/// See [`VerifyLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Verify<S> {
    inner: S,
    provider: Arc<dyn Provider>,
    enforcement: Enforcement,
}

impl<S> Service<Request<ReqBody>> for Verify<S>
where
    S: Service<Request<Bytes>, Response = Response<ResBody>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let (provider, enforcement) = (self.provider.clone(), self.enforcement);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = read_body(body).await.map_err(read_error)?;
            let verified = match verify_parts(&*provider, &parts, &body, SystemTime::now()) {
                Ok(verified) => verified,
                Err(e) if enforcement == Enforcement::Shadow => Verified {
                    event_id: body_digest_id(&body),
                    handshake: None,
                    failure: Some(e.reason()),
                },
                Err(e) => return Err(e.into()),
            };
            if let Some(handshake) = verified.handshake {
                return Ok(handshake_response(handshake, verified.event_id));
            }
            let mut req = Request::from_parts(parts, body);
            req.extensions_mut().insert(verified);
            inner.call(req).await
        })
    }
}

/// How much of a declared body is allocated before any of it has arrived: a client that declares a
/// large `Content-Length` and sends nothing gets no more than this.
const PREALLOCATE: u64 = 64 * 1024;

/// Reads the whole body into a buffer of its own, sized by its declared length, copying each chunk as
/// it arrives. The stored body then holds no more memory than its length, and hyper's read buffer,
/// which the chunks borrow from, is free for the connection's next request at once: kept, a chunk
/// would pin the whole read buffer for as long as the event stays in memory, and make hyper allocate
/// another.
async fn read_body(mut body: ReqBody) -> Result<Bytes, BoxError> {
    let declared = body.size_hint().exact();
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n.min(PREALLOCATE)) as usize);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers: not part of the body
        };
        if buf.capacity() - buf.len() < data.len() {
            // Past what was allocated up front, so at least `PREALLOCATE` bytes have arrived: the rest
            // of the declared length, at once. Undeclared (chunked): room for this chunk, which
            // `reserve` rounds up by doubling.
            let rest = declared.map_or(0, |n| n.saturating_sub(buf.len() as u64)) as usize;
            buf.reserve(rest.max(data.len()));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

fn read_error(e: BoxError) -> BoxError {
    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
        return BodyTooLarge.into();
    }
    BodyReadError(e).into()
}

/// Verifies a request's head and exact body at `now`, as the gateway does: also used by
/// `hookgate verify` on captured requests.
pub(crate) fn verify_parts(
    provider: &dyn Provider,
    parts: &Parts,
    body: &[u8],
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    let req = WebhookRequest {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body,
    };
    let meta = provider.verify(&req, now)?;
    let event_id = if usable_id(&meta.event_id) {
        meta.event_id
    } else {
        body_digest_id(body)
    };
    Ok(Verified {
        event_id,
        handshake: meta.handshake,
        failure: None,
    })
}

/// The gateway's own 200 to a sender's endpoint check; it is neither stored nor forwarded.
fn handshake_response(handshake: Handshake, event_id: String) -> Response<ResBody> {
    let mut resp = Response::new(ResBody::new(handshake.body.into()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(handshake.content_type),
    );
    resp.extensions_mut().insert(Outcome::Handshake { event_id });
    resp
}

fn usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| (0x21..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields `frames`, one per poll, and declares `declared` as its exact length.
    struct Frames {
        frames: std::collections::VecDeque<Result<http_body::Frame<Bytes>, BoxError>>,
        declared: Option<u64>,
    }

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.frames.pop_front())
        }

        fn size_hint(&self) -> http_body::SizeHint {
            self.declared
                .map_or_else(http_body::SizeHint::default, http_body::SizeHint::with_exact)
        }
    }

    fn body(chunks: &[&[u8]], declared: Option<u64>, trailers: bool) -> ReqBody {
        let mut frames: std::collections::VecDeque<_> = chunks
            .iter()
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        if trailers {
            frames.push_back(Ok(http_body::Frame::trailers(http::HeaderMap::new())));
        }
        Frames { frames, declared }.boxed()
    }

    #[tokio::test]
    async fn a_body_is_read_whole_from_its_chunks() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<&[u8]> = data.chunks(40_000).collect();
        // Declared (larger than what is allocated up front), and not declared (chunked).
        for declared in [Some(data.len() as u64), None] {
            let read = read_body(body(&chunks, declared, false))
                .await
                .expect("the body reads");
            assert_eq!(read, data, "declared: {declared:?}");
        }
        // Small and in one piece, as most webhooks are.
        let read = read_body(body(&[b"{\"a\":1}"], Some(7), false))
            .await
            .expect("the body reads");
        assert_eq!(read, &b"{\"a\":1}"[..]);
    }

    #[tokio::test]
    async fn trailers_are_not_part_of_the_body_and_errors_fail_the_read() {
        let read = read_body(body(&[b"ab", b"cd"], None, true))
            .await
            .expect("the body reads");
        assert_eq!(read, &b"abcd"[..]);

        let failing = Frames {
            frames: [
                Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
                Err("connection reset".into()),
            ]
            .into(),
            declared: Some(10),
        };
        let err = read_body(failing.boxed()).await.expect_err("a broken body fails");
        assert_eq!(err.to_string(), "connection reset");
    }

    #[test]
    fn usable_ids() {
        assert!(usable_id("evt_1NGKq2LkdIwHu7ix7Yvh2YcS"));
        assert!(usable_id("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert!(!usable_id(""));
        assert!(!usable_id("has space"));
        assert!(!usable_id("line\nbreak"));
        assert!(!usable_id(&"a".repeat(MAX_EVENT_ID_LEN + 1)));
    }
}
