//! Reads the body as received and verifies it with the source's provider: 401 on failure.
//!
//! The body is kept as the exact bytes received, whatever the content type: signatures are computed
//! over raw bytes, never over re-serialized JSON. On success the inner service gets a
//! `Request<Bytes>` carrying a [`Verified`] extension with the event id, and a head from which the
//! provider has removed any shared secret it reads, in a header or the query
//! ([`Provider::strip_credentials`]), so that nothing inside stores or forwards it.
//!
//! The body's buffer grows with what arrives, never by the declared `Content-Length`, and is charged
//! to the process-wide [`BufferBudget`] until the answer is ready.
//!
//! Fails with [`VerifyError`], [`BodyTooLarge`] (the `Limited` body passed its cap while being read),
//! [`BufferBudgetExhausted`] (bodies in memory already hold `max_buffered_bytes`) or
//! [`BodyReadError`] (the client went away or sent a broken body).

use std::{
    mem,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use bytes::Bytes;
use http::{request::Parts, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::{
    body_limit::BodyTooLarge,
    buffer_budget::{BufferBudget, BufferBudgetExhausted, Charge},
    facts::{MethodNotAllowed, Outcome, Verified},
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
    budget: BufferBudget,
}

impl VerifyLayer {
    /// Verifies with `provider`, buffering bodies within `budget` (shared by every source).
    pub(crate) fn new(provider: Arc<dyn Provider>, enforcement: Enforcement, budget: BufferBudget) -> Self {
        Self {
            provider,
            enforcement,
            budget,
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
            budget: self.budget.clone(),
        }
    }
}

/// See [`VerifyLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Verify<S> {
    inner: S,
    provider: Arc<dyn Provider>,
    enforcement: Enforcement,
    budget: BufferBudget,
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
        let budget = self.budget.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            // Held until the answer is ready: the durable commit holds the body too.
            let (body, _charge) = read_body(body, &budget).await.map_err(read_error)?;
            let now = SystemTime::now();
            // A sender's endpoint check is answered here, or refused, in shadow mode too: it is not an
            // event, and answering a forged one would confirm an endpoint the sender never checked.
            if let Some(answer) = answer_challenge(&*provider, &parts, &body, now) {
                return Ok(answer?);
            }
            if parts.method != http::Method::POST {
                // A GET passed the method filter for a challenge, and the provider did not take it as one.
                return Err(MethodNotAllowed::GET_POST.into());
            }
            let verified = match verify_parts(&*provider, &parts, &body, now) {
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
            // A shared secret (bearer, basic, token) goes before anything inside stores or forwards
            // the request, whether it verified or not.
            provider.strip_credentials(&mut parts);
            let mut req = Request::from_parts(parts, body);
            req.extensions_mut().insert(verified);
            inner.call(req).await
        })
    }
}

/// The first allocation of a body of unknown length (chunked), and the least a buffer grows by.
const MIN_ALLOC: usize = 8 * 1024;

/// Reads the whole body into a buffer of its own, copying each chunk as it arrives, and charges the
/// buffer's size to `budget`.
///
/// The buffer grows to the next power of two that holds what arrived (at least [`MIN_ALLOC`], at most
/// the declared length), so a client that declares 1 MiB and sends 64 KiB holds 64 KiB, not 1 MiB;
/// the copies cost at most twice the body. Kept, a chunk would pin hyper's whole read buffer, which the chunks borrow from, for as
/// long as the event stays in memory, and make hyper allocate another for the connection's next
/// request.
async fn read_body(mut body: ReqBody, budget: &BufferBudget) -> Result<(Bytes, Charge), BoxError> {
    let declared = body.size_hint().exact().and_then(|n| usize::try_from(n).ok());
    let mut charge = budget.charge();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers: not part of the body
        };
        let needed = buf.len().saturating_add(data.len());
        if needed > buf.capacity() {
            let capacity = grown_capacity(needed, declared);
            // Charged before it is allocated: past the budget, nothing more is allocated.
            charge.grow(capacity - buf.capacity())?;
            buf.reserve_exact(capacity - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    // No copy: `Bytes` takes the vector's allocation as it is.
    Ok((Bytes::from(buf), charge))
}

/// The capacity a buffer grows to when it must hold `needed` bytes: the next power of two, at least
/// [`MIN_ALLOC`], and never past a declared length that holds them (hyper never yields more than
/// `Content-Length`). Powers of two rather than doubling the current capacity: chunks that do not
/// start at a round size (the first one shares hyper's read with the head) would otherwise end at
/// up to twice the body.
fn grown_capacity(needed: usize, declared: Option<usize>) -> usize {
    let grown = needed
        .checked_next_power_of_two()
        .unwrap_or(needed)
        .max(MIN_ALLOC);
    match declared {
        Some(declared) if declared >= needed => grown.min(declared),
        _ => grown,
    }
}

fn read_error(e: BoxError) -> BoxError {
    if e.is::<BufferBudgetExhausted>() {
        return e;
    }
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

/// The answer to a sender's endpoint challenge ([`Provider::challenge`]), if the request is one: the
/// gateway's own 200, or why it is refused (401).
fn answer_challenge(
    provider: &dyn Provider,
    parts: &Parts,
    body: &[u8],
    now: SystemTime,
) -> Option<Result<Response<ResBody>, VerifyError>> {
    let req = WebhookRequest {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body,
    };
    let answer = provider.challenge(&req, now)?;
    // Logged and counted by rescue as a handshake, under this name: a challenge carries no event.
    let id = format!("{}-challenge", provider.name());
    Some(answer.map(|handshake| handshake_response(handshake, id)))
}

/// The gateway's own 200 to a sender's endpoint check; it is neither stored nor forwarded.
fn handshake_response(handshake: Handshake, event_id: String) -> Response<ResBody> {
    let mut resp = Response::new(ResBody::new(handshake.body.into()));
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(handshake.content_type),
    );
    for (name, value) in handshake.headers {
        headers.insert(name, value);
    }
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
            let (read, charge) = read_body(body(&chunks, declared, false), &unlimited())
                .await
                .expect("the body reads");
            assert_eq!(read, data, "declared: {declared:?}");
            assert!(charge.bytes() >= data.len(), "the buffer is charged whole");
        }
        // Small and in one piece, as most webhooks are.
        let (read, charge) = read_body(body(&[b"{\"a\":1}"], Some(7), false), &unlimited())
            .await
            .expect("the body reads");
        assert_eq!(read, &b"{\"a\":1}"[..]);
        assert_eq!(
            charge.bytes(),
            7,
            "a declared length that holds the body bounds its buffer"
        );
    }

    #[tokio::test]
    async fn trailers_are_not_part_of_the_body_and_errors_fail_the_read() {
        let (read, _) = read_body(body(&[b"ab", b"cd"], None, true), &unlimited())
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
        let err = read_body(failing.boxed(), &unlimited())
            .await
            .expect_err("a broken body fails");
        assert_eq!(err.to_string(), "connection reset");
    }

    fn unlimited() -> BufferBudget {
        BufferBudget::new(BufferBudget::MAX)
    }

    #[tokio::test]
    async fn the_buffer_follows_what_arrives_not_what_is_declared() {
        // Declares 1 MiB, sends 64 KiB in 16 KiB chunks (and then ends, as a broken client would).
        let chunk = [7u8; 16 * 1024];
        let chunks = [&chunk[..]; 4];
        let (read, charge) = read_body(body(&chunks, Some(1 << 20), false), &unlimited())
            .await
            .expect("the body reads");
        assert_eq!(read.len(), 64 * 1024);
        assert_eq!(
            charge.bytes(),
            64 * 1024,
            "grown with what arrived: 16, 32, 64 KiB"
        );
        // Chunks off the powers of two (the first shared hyper's read with the head) end the same.
        let data = vec![2u8; 64 * 1024];
        let chunks: Vec<&[u8]> = std::iter::once(&data[..16_000])
            .chain(data[16_000..].chunks(16 * 1024))
            .collect();
        let (_, charge) = read_body(body(&chunks, Some(1 << 20), false), &unlimited())
            .await
            .expect("the body reads");
        assert_eq!(charge.bytes(), 64 * 1024, "not 128 KiB");
        // An honest declared length caps the last doubling.
        let data = vec![1u8; 100_000];
        let chunks: Vec<&[u8]> = data.chunks(40_000).collect();
        let (_, charge) = read_body(body(&chunks, Some(100_000), false), &unlimited())
            .await
            .expect("the body reads");
        assert_eq!(
            charge.bytes(),
            100_000,
            "64 KiB, then 100 000 rather than 128 KiB"
        );
    }

    #[tokio::test]
    async fn past_the_budget_the_read_fails_and_gives_its_bytes_back() {
        let budget = BufferBudget::new(50_000);
        let data = vec![1u8; 100_000];
        let chunks: Vec<&[u8]> = data.chunks(10_000).collect();
        let held = read_body(body(&chunks[..2], Some(20_000), false), &budget)
            .await
            .expect("20 000 bytes fit");
        assert_eq!(budget.available(), 30_000, "a read body keeps its charge");
        let err = read_body(body(&chunks, Some(100_000), false), &budget)
            .await
            .expect_err("100 000 bytes do not");
        let err = read_error(err);
        assert!(err.is::<BufferBudgetExhausted>(), "{err}");
        assert_eq!(
            budget.available(),
            30_000,
            "the failed read took nothing for good"
        );
        drop(held);
        assert_eq!(budget.available(), 50_000);
    }

    #[test]
    fn buffers_grow_to_powers_of_two_from_a_minimum_up_to_a_declared_length() {
        assert_eq!(grown_capacity(10, None), MIN_ALLOC);
        assert_eq!(grown_capacity(10, Some(10)), 10);
        assert_eq!(grown_capacity(20_000, None), 32_768);
        assert_eq!(grown_capacity(32_769, None), 65_536);
        assert_eq!(grown_capacity(32_769, Some(40_000)), 40_000);
        // A declared length that does not hold the data is not believed.
        assert_eq!(grown_capacity(20_001, Some(20_000)), 32_768);
        assert_eq!(grown_capacity(usize::MAX, None), usize::MAX);
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
