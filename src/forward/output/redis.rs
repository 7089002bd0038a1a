//! The Redis Streams output: each event is appended to a stream with `XADD`, and is delivered once
//! Redis replies with the entry's id.
//!
//! The entry's fields are `hookgate-source`, `hookgate-event-id`, `hookgate-attempt`,
//! `hookgate-verified` and `content-type`, then the sender's headers minus hop-by-hop ones (a
//! repeated header joined with `, `; a sender's header named `body` is left out), then `body`, the
//! exact bytes received. Consumers drop a redelivery by `hookgate-source` and `hookgate-event-id`.
//! With `maxlen`, each `XADD` trims the stream to about that many entries (`MAXLEN ~`).
//!
//! The sources that name the same URL share one multiplexed connection ([`Broker`]), made at the first
//! delivery; redis-rs's connection manager reconnects it with backoff when it is lost. While Redis is
//! away, attempts fail and are retried like any other delivery; acceptance never waits for it.
//! A reply is durable as far as Redis's own persistence settings (`appendfsync`) make it.

use std::{fmt, num::NonZeroU64, sync::Arc, time::Duration};

use ::redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Client, RedisError,
};
use tokio::sync::OnceCell;

use super::{event_headers, shown_url, Attempt};
use crate::forward::{retry::AttemptOutcome, Target};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The field that holds the body.
const BODY: &str = "body";

/// Where a source appends, as config describes it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    /// The server URL (`redis://[:password@]host:port/db`); it may hold credentials, so it is never shown.
    url: String,
    /// The stream's key.
    pub stream: String,
    /// Trim to about this many entries at each append.
    pub maxlen: Option<NonZeroU64>,
}

impl RedisEndpoint {
    /// `url` is a `redis://` or `rediss://` URL (see [`Self::check_url`]).
    pub fn new(url: String, stream: String, maxlen: Option<NonZeroU64>) -> Self {
        Self { url, stream, maxlen }
    }

    /// Whether `url` is a Redis URL the client can connect with. The parser's message is not kept:
    /// it can quote the URL.
    pub fn check_url(url: &str) -> Result<(), &'static str> {
        Client::open(url)
            .map(|_| ())
            .map_err(|_| "the client cannot parse it")
    }

    /// The URL, credentials included: for connecting only.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

/// Never the credentials of the URL.
impl fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("server", &shown_url(&self.url))
            .field("stream", &self.stream)
            .field("maxlen", &self.maxlen)
            .finish()
    }
}

/// `redis://host:port/db stream S`, never the credentials of the URL.
impl fmt::Display for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} stream {}", shown_url(&self.url), self.stream)?;
        if let Some(n) = self.maxlen {
            write!(f, " (maxlen ~{n})")?;
        }
        Ok(())
    }
}

// === impl Broker ===

/// One server's connection, shared by every source that names its URL.
#[derive(Clone)]
pub(crate) struct Broker(Arc<BrokerInner>);

struct BrokerInner {
    /// May hold credentials: never shown.
    url: String,
    /// Made at the first delivery (until then, and while it fails, each attempt tries again); the
    /// manager reconnects by itself from then on.
    connection: OnceCell<ConnectionManager>,
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
            connection: OnceCell::new(),
        }))
    }

    async fn connection(&self) -> Result<ConnectionManager, AttemptOutcome> {
        self.0
            .connection
            .get_or_try_init(|| async {
                let client = Client::open(self.0.url.as_str())
                    .map_err(|_| network("broker: the URL does not parse"))?;
                // One try here: the forwarder retries a failed attempt with the source's backoff.
                // Once made, the manager reconnects with its own backoff (100 ms doubling, at most 10 s).
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(10));
                let manager = client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(redis_failed)?;
                tracing::info!(output = "redis", "connected to the server");
                Ok(manager)
            })
            .await
            .cloned()
    }
}

// === impl RedisOutput ===

/// A source's Redis Streams output.
#[derive(Debug)]
pub(crate) struct RedisOutput {
    broker: Broker,
    endpoint: RedisEndpoint,
}

impl RedisOutput {
    pub(crate) fn new(broker: Broker, endpoint: RedisEndpoint) -> Self {
        Self { broker, endpoint }
    }

    /// Appends one attempt with `XADD` and waits for the reply, within `target.timeout`.
    pub(crate) async fn publish(&self, target: &Target, attempt: Attempt<'_>) -> AttemptOutcome {
        let cmd = self.xadd(target, &attempt);
        let publish = async {
            let mut connection = self.broker.connection().await?;
            cmd.query_async::<String>(&mut connection)
                .await
                .map_err(redis_failed)?;
            Ok::<_, AttemptOutcome>(AttemptOutcome::Taken)
        };
        match tokio::time::timeout(target.timeout, publish).await {
            Ok(Ok(taken)) => taken,
            Ok(Err(failed)) => failed,
            Err(_) => network("timeout"),
        }
    }

    /// `XADD stream [MAXLEN ~ n] * field value ... body <bytes>`.
    fn xadd(&self, target: &Target, attempt: &Attempt<'_>) -> ::redis::Cmd {
        let mut fields: Vec<(&str, Vec<u8>)> = Vec::new();
        for (name, value) in event_headers(target, attempt) {
            if name == BODY {
                continue;
            }
            match fields.iter_mut().find(|(n, _)| *n == name) {
                Some((_, prev)) => {
                    prev.extend_from_slice(b", ");
                    prev.extend_from_slice(&value);
                }
                None => fields.push((name, value.into_owned())),
            }
        }
        let mut cmd = ::redis::cmd("XADD");
        cmd.arg(&self.endpoint.stream);
        if let Some(n) = self.endpoint.maxlen {
            cmd.arg("MAXLEN").arg("~").arg(n.get());
        }
        cmd.arg("*");
        for (name, value) in &fields {
            cmd.arg(*name).arg(value.as_slice());
        }
        cmd.arg(BODY).arg(&attempt.body[..]);
        cmd
    }
}

fn network(what: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome::Network(what.into())
}

/// A failed command, by kind; a server error keeps its code (such as `WRONGTYPE` or `NOAUTH`), not
/// its text.
fn redis_failed(e: RedisError) -> AttemptOutcome {
    if let Some(code) = e.code() {
        return network(format!("broker: {code}"));
    }
    network(if e.is_timeout() {
        "broker: no reply in time"
    } else if e.is_connection_refusal() {
        "broker: connection refused"
    } else if e.is_connection_dropped() || e.is_io_error() {
        "broker: connection lost"
    } else {
        "broker: command failed"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_shown_without_its_credentials() {
        let e = RedisEndpoint::new(
            "rediss://:hunter2@cache.example:6380/2".into(),
            "webhooks:stripe".into(),
            NonZeroU64::new(1000),
        );
        assert_eq!(
            e.to_string(),
            "rediss://cache.example:6380/2 stream webhooks:stripe (maxlen ~1000)"
        );
        let debug = format!("{e:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!format!("{:?}", Broker::new("redis://:hunter2@h:1")).contains("hunter2"));
    }

    #[test]
    fn urls_are_checked() {
        assert!(RedisEndpoint::check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(RedisEndpoint::check_url("rediss://user:pw@cache.example:6380").is_ok());
        assert!(RedisEndpoint::check_url("redis://h:notaport/0").is_err());
    }
}
