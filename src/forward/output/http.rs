//! Building and sending one delivery attempt.
//!
//! The forwarded request keeps the sender's method, the exact body bytes and the original headers,
//! minus hop-by-hop ones, and adds `X-Hookgate-Source`, `X-Hookgate-Event-Id` and
//! `X-Hookgate-Attempt`. The stored headers include the request id as `X-Request-Id` (the accept path
//! puts it there), so every attempt carries the id of the request's log line. With a `signing_secret`, it is also signed with the Standard Webhooks scheme
//! (the sender's own `webhook-*` headers, if any, are replaced).
//!
//! One [`HttpClient`] serves every source with the same TLS settings: plain `http://` upstreams, and
//! `https://` ones verified with the source's [`ClientTls`] (HTTP/2 when the upstream offers it
//! through ALPN, else HTTP/1.1). A failed handshake is an [`AttemptOutcome::Tls`].

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpStream;

use crate::forward::retry::{parse_retry_after, AttemptOutcome};
use crate::forward::Target;
use crate::{
    store::EventRecord,
    tls::{self, ClientTls},
};

/// An HTTP client for the sources that share one TLS setting; it pools connections per upstream.
pub(crate) type HttpClient = Client<HttpsConnector<Connector>, Full<Bytes>>;

/// The most response body bytes read (and discarded) per attempt, so that the connection can be reused.
const MAX_RESPONSE_DRAIN: usize = 64 * 1024;

/// Headers that describe one connection, not the message (RFC 9110, section 7.6.1), plus those the
/// client sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The most headers [`build_request`] adds: the four `x-hookgate-*`, the three `webhook-*` and
/// `content-length`.
const ADDED_HEADERS: usize = 8;

const X_SOURCE: &str = "x-hookgate-source";
const X_EVENT_ID: &str = "x-hookgate-event-id";
const X_ATTEMPT: &str = "x-hookgate-attempt";
const X_VERIFIED: &str = "x-hookgate-verified";
/// The request id, stored among the event's headers by the accept path and forwarded like them.
pub(crate) const X_REQUEST_ID: &str = "x-request-id";
const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// A stored request that cannot be turned into an HTTP request (it was corrupted on disk).
#[derive(Debug, thiserror::Error)]
#[error("stored request cannot be forwarded: {0}")]
pub struct ForwardError(&'static str);

/// A client for upstreams verified with `tls`; without it, for `http://` upstreams only (config
/// gives every `https://` upstream a [`ClientTls`]), and an `https://` one fails verification.
pub(crate) fn new_client(tls: Option<&ClientTls>) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    // The TLS connector above it takes `https://`; this one only opens the TCP connection.
    connector.enforce_http(false);
    let config = match tls {
        Some(tls) => tls.rustls(),
        None => rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .expect("the ring provider supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(Connector(connector));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https)
}

/// [`HttpConnector`] that refuses a TCP self-connect.
///
/// While nothing listens on an app's port on this host, and that port is in the ephemeral range, a
/// connection attempt can get that very port as its source port and connect to itself (TCP's
/// simultaneous open). Kept, such a connection would hold the port and keep the app from binding it
/// when it comes back; so it is dropped and the attempt fails as a failed connect.
#[derive(Clone, Debug)]
pub(crate) struct Connector(HttpConnector);

/// A connection that turned out to be connected to itself.
#[derive(Debug, thiserror::Error)]
#[error("connected to itself: nothing listens on the upstream's port")]
struct SelfConnect;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            refuse_self_connect(io.inner())?;
            Ok(io)
        })
    }
}

/// Fails if `stream` is connected to itself (see [`Connector`]).
fn refuse_self_connect(stream: &TcpStream) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if stream.local_addr()? == stream.peer_addr()? {
        return Err(SelfConnect.into());
    }
    Ok(())
}

/// The upstream URL, with the sender's query string appended when the upstream has none.
fn target(upstream: &Uri, query: Option<&str>) -> Result<Uri, ForwardError> {
    match (query, upstream.query()) {
        (Some(q), None) => {
            let pq = format!("{}?{q}", upstream.path());
            let mut parts = upstream.clone().into_parts();
            parts.path_and_query = Some(pq.parse().map_err(|_| ForwardError("query string"))?);
            Uri::from_parts(parts).map_err(|_| ForwardError("query string"))
        }
        _ => Ok(upstream.clone()),
    }
}

/// The sender's headers that describe the message, in order: without hop-by-hop ones (and those the
/// `Connection` header names), and without `x-hookgate-*`, which only the gateway sets. Every output
/// carries these.
pub(crate) fn original_headers(record: &EventRecord) -> impl Iterator<Item = (&str, &[u8])> {
    let connection_named: Vec<String> = record
        .headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    record.headers.iter().filter_map(move |(name, value)| {
        let skip = HOP_BY_HOP.contains(&name.as_str())
            || connection_named.iter().any(|c| c == name)
            || name.starts_with("x-hookgate-");
        (!skip).then_some((name.as_str(), value.as_slice()))
    })
}

/// Builds attempt number `attempt` (1-based) of a stored event.
pub(crate) fn build_request(
    source: &Target,
    upstream: &Uri,
    record: &EventRecord,
    body: Bytes,
    attempt: u32,
    now: SystemTime,
) -> Result<Request<Full<Bytes>>, ForwardError> {
    let method = http::Method::from_bytes(record.method.as_bytes()).map_err(|_| ForwardError("method"))?;
    let mut req = Request::builder()
        .method(method)
        .uri(target(upstream, record.query.as_deref())?)
        .body(Full::new(body.clone()))
        .map_err(|_| ForwardError("request"))?;
    let headers = req.headers_mut();
    let signing = source.signer.is_some();
    // One allocation for every header instead of a few regrowths.
    headers.reserve(record.headers.len() + ADDED_HEADERS);
    for (name, value) in original_headers(record) {
        if signing && [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE].contains(&name) {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| ForwardError("header name"))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| ForwardError("header value"))?;
        headers.append(name, value);
    }
    let event_id = HeaderValue::from_str(&record.event_id).map_err(|_| ForwardError("event id"))?;
    let source_name = HeaderValue::from_str(&source.name).map_err(|_| ForwardError("source name"))?;
    headers.insert(X_SOURCE, source_name);
    headers.insert(X_EVENT_ID, event_id.clone());
    headers.insert(X_ATTEMPT, HeaderValue::from(attempt));
    headers.insert(
        X_VERIFIED,
        HeaderValue::from_static(if record.verified { "true" } else { "false" }),
    );
    if let Some(signer) = &source.signer {
        let ts = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let signature = signer.sign(&record.event_id, ts, &body);
        headers.insert(WEBHOOK_ID, event_id);
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(ts));
        headers.insert(
            WEBHOOK_SIGNATURE,
            HeaderValue::from_str(&signature).map_err(|_| ForwardError("signature"))?,
        );
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(req)
}

/// Sends one attempt, bounded by `timeout` (response head and drained body together).
pub(crate) async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> AttemptOutcome {
    let attempt = async {
        let resp = match client.request(req).await {
            Ok(resp) => resp,
            // A handshake failure is a connect error; an alert after the handshake (TLS 1.3 servers
            // refuse a client certificate only then) comes with the response.
            Err(e) => match tls::is_tls_failure(&e) {
                Some(what) => return AttemptOutcome::Tls(what),
                None if e.is_connect() => return AttemptOutcome::Network("connect failed".into()),
                None => return AttemptOutcome::Network("request failed".into()),
            },
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Drain a bounded amount so the pooled connection can be reused. Each frame is dropped as it
        // comes (collecting would hold up to the limit for nothing); past the limit, or on an error,
        // the body is dropped unread and the connection with it.
        let mut body = resp.into_body();
        let mut left = MAX_RESPONSE_DRAIN;
        while let Some(Ok(frame)) = body.frame().await {
            match frame.data_ref() {
                Some(data) if data.len() > left => break,
                Some(data) => left -= data.len(),
                None => {}
            }
        }
        AttemptOutcome::Status { status, retry_after }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => AttemptOutcome::Network("timeout".into()),
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    #[tokio::test]
    async fn a_connection_to_itself_is_refused_and_one_to_a_listener_is_not() {
        // A socket bound to a loopback port and connected to that same port, with nothing listening
        // there: TCP's simultaneous open connects it to itself, as a connect to an app that is down
        // can when the kernel picks the app's port as the source port.
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let own = socket.local_addr().expect("local addr");
        let looped = socket.connect(own).await.expect("self-connect");
        assert_eq!(
            looped.local_addr().expect("local"),
            looped.peer_addr().expect("peer")
        );
        let err = refuse_self_connect(&looped).expect_err("a self-connect must be refused");
        assert!(err.to_string().contains("connected to itself"), "{err}");

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind listener");
        let stream = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        refuse_self_connect(&stream).expect("a connection to a listener is kept");
    }
}
