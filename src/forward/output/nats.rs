//! The NATS JetStream output: each event is published to a subject, and is delivered once JetStream
//! acknowledges it (the PubAck says the stream has stored it).
//!
//! Every message carries `Nats-Msg-Id: <source>:<event_id>`, so that the stream's duplicate window
//! drops a republish (after a crash between the ack and its record, or a replay within the window),
//! and the headers `hookgate-source`, `hookgate-event-id`, `hookgate-attempt`, `hookgate-verified`
//! and `content-type`, plus the sender's headers minus hop-by-hop ones (a value that is not UTF-8,
//! which NATS headers cannot carry, is left out). The payload is the exact body bytes.
//!
//! The sources that name the same broker URL share one connection ([`Broker`]), opened at the first
//! delivery and reconnected by the client with backoff for as long as the gateway runs. While the
//! broker is away, attempts fail after the source's timeout and are retried like any other delivery;
//! acceptance never waits for the broker.

use std::{fmt, sync::Arc, time::Duration};

use async_nats::{
    header::{HeaderMap, NATS_MESSAGE_ID},
    jetstream::{self, context::PublishErrorKind},
    ConnectOptions,
};
use tokio::sync::OnceCell;

use super::{http::original_headers, Attempt};
use crate::forward::{retry::AttemptOutcome, Target};

/// How long one connection attempt to the broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a source publishes, as config describes it.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsEndpoint {
    /// The broker URL (`nats://host:port`); it may hold credentials, so it is never shown.
    url: String,
    /// The subject events are published to.
    pub subject: String,
    /// The stream to create for the subject if there is none (`create_stream = true`).
    pub create_stream: Option<String>,
}

impl NatsEndpoint {
    /// `url` is the broker's `nats://` URL, `subject` a subject without wildcards; with
    /// `create_stream`, the stream of that name (holding `subject`) is created at the first delivery
    /// if it does not exist.
    pub fn new(url: String, subject: String, create_stream: Option<String>) -> Self {
        Self {
            url,
            subject,
            create_stream,
        }
    }

    /// The stream name `create_stream` uses for `subject`: the subject with every character a stream
    /// name cannot hold (`.`, `*`, `>`, whitespace, path separators) replaced by `_`.
    pub fn stream_name_for(subject: &str) -> String {
        subject
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The broker URL, credentials included: for connecting only.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The broker's host and port, without credentials.
    fn shown(&self) -> String {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("nats://{}", host.trim_end_matches('/'))
    }
}

/// Never the credentials of the URL.
impl fmt::Debug for NatsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsEndpoint")
            .field("broker", &self.shown())
            .field("subject", &self.subject)
            .field("create_stream", &self.create_stream)
            .finish()
    }
}

/// `nats://host:port subject`, never the credentials of the URL.
impl fmt::Display for NatsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} subject {}", self.shown(), self.subject)
    }
}

/// One broker's connection, shared by every source that names its URL.
#[derive(Clone)]
pub(crate) struct Broker(Arc<BrokerInner>);

struct BrokerInner {
    /// May hold credentials: never shown.
    url: String,
    /// Opened at the first delivery; the client reconnects by itself from then on.
    jetstream: OnceCell<jetstream::Context>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Broker([redacted])")
    }
}

impl Broker {
    pub(crate) fn new(url: &str) -> Self {
        Self(Arc::new(BrokerInner {
            url: url.to_owned(),
            jetstream: OnceCell::new(),
        }))
    }

    /// The JetStream context, connecting first if this is the first use.
    ///
    /// With `retry_on_initial_connect` the client is returned at once and connects in the background,
    /// reconnecting with backoff whenever the connection drops; publishes made meanwhile wait for the
    /// connection or time out.
    async fn jetstream(&self) -> Result<&jetstream::Context, AttemptOutcome> {
        self.0
            .jetstream
            .get_or_try_init(|| async {
                ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connection_timeout(CONNECT_TIMEOUT)
                    .max_reconnects(None)
                    .connect(self.0.url.as_str())
                    .await
                    .map(jetstream::new)
                    // The error's text may name the URL: only its kind is kept.
                    .map_err(|_| AttemptOutcome::Network("broker connect failed".into()))
            })
            .await
    }
}

/// A source's JetStream output.
#[derive(Debug)]
pub(crate) struct NatsOutput {
    broker: Broker,
    endpoint: NatsEndpoint,
    /// Set once the stream is known to exist (with `create_stream` only).
    stream_ready: OnceCell<()>,
}

impl NatsOutput {
    pub(crate) fn new(broker: Broker, endpoint: NatsEndpoint) -> Self {
        Self {
            broker,
            endpoint,
            stream_ready: OnceCell::new(),
        }
    }

    /// Publishes one attempt and waits for its PubAck, within `target.timeout`.
    pub(crate) async fn publish(&self, target: &Target, attempt: Attempt<'_>) -> AttemptOutcome {
        let headers = message_headers(target, &attempt);
        let publish = async {
            let js = self.broker.jetstream().await?;
            if let Some(stream) = &self.endpoint.create_stream {
                self.stream_ready
                    .get_or_try_init(|| async {
                        let config = jetstream::stream::Config {
                            name: stream.clone(),
                            subjects: vec![self.endpoint.subject.clone()],
                            ..Default::default()
                        };
                        js.get_or_create_stream(config)
                            .await
                            .map(|_| ())
                            .map_err(|_| AttemptOutcome::Network("creating the stream failed".into()))
                    })
                    .await?;
            }
            let ack = js
                .publish_with_headers(self.endpoint.subject.clone(), headers, attempt.body)
                .await
                .map_err(|e| publish_failed(e.kind()))?;
            ack.await.map_err(|e| publish_failed(e.kind()))?;
            Ok::<_, AttemptOutcome>(AttemptOutcome::Taken)
        };
        match tokio::time::timeout(target.timeout, publish).await {
            Ok(Ok(taken)) => taken,
            Ok(Err(failed)) => failed,
            Err(_) => AttemptOutcome::Network("timeout".into()),
        }
    }
}

/// A failed publish, by kind (the error's own text is not kept: it may echo the message).
fn publish_failed(kind: PublishErrorKind) -> AttemptOutcome {
    let what = match kind {
        PublishErrorKind::StreamNotFound => "broker: no stream holds the subject",
        PublishErrorKind::TimedOut => "broker: no ack in time",
        PublishErrorKind::BrokenPipe => "broker: connection lost",
        PublishErrorKind::MaxPayloadExceeded => "broker: message larger than max_payload",
        _ => "broker: publish failed",
    };
    AttemptOutcome::Network(what.into())
}

/// The message's headers (see the module docs).
fn message_headers(target: &Target, attempt: &Attempt<'_>) -> HeaderMap {
    let record = attempt.record;
    let mut headers = HeaderMap::new();
    for (name, value) in original_headers(record) {
        if let Ok(value) = std::str::from_utf8(value) {
            headers.append(name, value);
        }
    }
    headers.insert(NATS_MESSAGE_ID, format!("{}:{}", target.name, record.event_id));
    headers.insert("hookgate-source", &*target.name);
    headers.insert("hookgate-event-id", record.event_id.as_str());
    headers.insert("hookgate-attempt", attempt.number.to_string());
    headers.insert(
        "hookgate-verified",
        if record.verified { "true" } else { "false" },
    );
    if headers.get("content-type").is_none() {
        headers.insert("content-type", "application/octet-stream");
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_shown_without_its_credentials() {
        let e = NatsEndpoint::new(
            "nats://user:hunter2@broker.example:4222".into(),
            "webhooks.stripe".into(),
            None,
        );
        assert_eq!(
            e.to_string(),
            "nats://broker.example:4222 subject webhooks.stripe"
        );
        let debug = format!("{e:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("user"), "{debug}");
        assert!(!format!("{:?}", Broker::new("nats://u:hunter2@h:1")).contains("hunter2"));
    }

    #[test]
    fn a_stream_name_holds_no_subject_separators() {
        assert_eq!(
            NatsEndpoint::stream_name_for("webhooks.stripe-live"),
            "webhooks_stripe-live"
        );
        assert_eq!(NatsEndpoint::stream_name_for("a.b c"), "a_b_c");
    }
}
