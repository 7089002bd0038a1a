//! The innermost service: dedup and durable enqueue, then the 200.
//!
//! The dedup check and the enqueue are one atomic store write (see [`crate::store`]), which is why they
//! are one service and not two layers. The response is sent only once the write is fsynced; a
//! duplicate's 200 likewise waits for a flush, so it never precedes the first copy's durability. The
//! store wakes the source's forwarder itself when it queues a new event.
//!
//! This is also where `[store] max_queued` is kept, in one place over any store: once the store's
//! queued count (which it keeps as events come and go, so asking costs nothing) is at the bound, a new
//! event fails with [`QueueFull`] (503) and is not stored, so that a long app outage cannot fill the
//! disk; an event already stored is still answered 200 duplicate. The bound is soft by the requests in
//! flight: those that read the count before the others were queued are all stored.
//! Fails with [`StoreError`](crate::store::StoreError) (503).

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower::Service;

use super::{
    facts::{Outcome, RequestId, Verified},
    json_response, BoxError, BoxFuture, ResBody,
};
use crate::store::{Accepted, NewEvent, Store};

/// Stores verified events of one source.
#[derive(Clone)]
pub(crate) struct Accept {
    store: Store,
    source: Arc<str>,
    window: Duration,
    /// `[store] max_queued`.
    max_queued: u64,
}

impl Accept {
    pub(crate) fn new(store: Store, source: Arc<str>, window: Duration, max_queued: u64) -> Self {
        Self {
            store,
            source,
            window,
            max_queued,
        }
    }
}

impl Service<Request<Bytes>> for Accept {
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ResBody>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let Some(Verified {
                event_id, failure, ..
            }) = parts.extensions.get::<Verified>().cloned()
            else {
                return Err(NotVerified.into());
            };
            let request_id = parts.extensions.get::<RequestId>();
            // The request id replaces the sender's `X-Request-Id` (the same value when it was sane),
            // so that every forward of the event carries the id of the request's log line.
            let mut headers: Vec<(String, Vec<u8>)> = parts
                .headers
                .iter()
                .filter(|(name, _)| request_id.is_none() || name.as_str() != RequestId::HEADER)
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect();
            if let Some(id) = request_id {
                headers.push((RequestId::HEADER.to_owned(), id.0.as_bytes().to_vec()));
            }
            let event = NewEvent {
                source: &this.source,
                event_id: &event_id,
                method: parts.method.as_str(),
                query: parts.uri.query(),
                headers,
                body: body.clone(),
                verified: failure.is_none(),
            };
            let now = SystemTime::now();
            let accepted = if this.store.queued() >= this.max_queued {
                if !this.store.accept_duplicate(&event, now).await? {
                    return Err(QueueFull.into());
                }
                Accepted::Duplicate
            } else {
                this.store.accept(&event, now, this.window).await?
            };
            let mut resp = match accepted {
                Accepted::New(_) => {
                    let mut resp = json_response(StatusCode::OK, br#"{"status":"accepted"}"#);
                    resp.extensions_mut()
                        .insert(Outcome::Accepted { event_id, failure });
                    resp
                }
                Accepted::Duplicate => {
                    let mut resp = json_response(StatusCode::OK, br#"{"status":"duplicate"}"#);
                    resp.extensions_mut().insert(Outcome::Duplicate { event_id });
                    resp
                }
            };
            resp.headers_mut()
                .insert("cache-control", http::HeaderValue::from_static("no-store"));
            Ok(resp)
        })
    }
}

/// The store holds `[store] max_queued` events not yet delivered or dead: a new one is not taken.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the queue is full ([store] max_queued)")]
pub(crate) struct QueueFull;

/// A request reached the accept service without passing `verify`: a wiring bug.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request reached the store unverified")]
pub(crate) struct NotVerified;
