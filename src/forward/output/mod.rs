//! Delivery outputs: where an attempt goes, behind one interface.
//!
//! The dispatcher (`forward/mod.rs`) decides when to attempt and what follows an attempt; an
//! [`Output`] only delivers one attempt and says how it went, as an [`AttemptOutcome`] that
//! [`super::decide`] turns into delivered, retry or dead letter. Config picks the output from the
//! upstream's scheme and describes it as an [`Endpoint`]; [`Outputs`] turns endpoints into outputs and
//! owns what they share: the HTTP connection pool, and one connection per broker URL.
//!
//! Adding an output takes one file here, one [`Endpoint`] and one [`Output`] variant, and their match
//! arms in this file.

use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc, time::SystemTime};

use ::http::Uri;
use bytes::Bytes;

use super::{retry::AttemptOutcome, Target};
use crate::store::EventRecord;
#[cfg(doc)]
use crate::tls::ClientTls;

pub(crate) mod http;
mod nats;
mod rabbitmq;
mod redis;

pub use self::http::ForwardError;
use self::http::HttpClient;
pub use self::nats::NatsEndpoint;
use self::nats::NatsOutput;
pub use self::rabbitmq::AmqpEndpoint;
use self::rabbitmq::RabbitOutput;
pub use self::redis::RedisEndpoint;
use self::redis::RedisOutput;

/// Where a source's events go, as config describes it.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// An app over HTTP (`http://` upstream).
    Http(Uri),
    /// A NATS JetStream subject (`nats://` upstream).
    Nats(NatsEndpoint),
    /// A RabbitMQ exchange (`amqp://` or `amqps://` upstream).
    Amqp(AmqpEndpoint),
    /// A Redis stream (`redis://` or `rediss://` upstream).
    Redis(RedisEndpoint),
}

impl Endpoint {
    /// The output kind: the `output` label of delivery metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Nats(_) => "nats",
            Self::Amqp(_) => "rabbitmq",
            Self::Redis(_) => "redis",
        }
    }
}

/// Shown in the start-up summary; never the credentials of a URL.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(uri) => write!(f, "{uri}"),
            Self::Nats(nats) => write!(f, "{nats}"),
            Self::Amqp(amqp) => write!(f, "{amqp}"),
            Self::Redis(redis) => write!(f, "{redis}"),
        }
    }
}

/// One attempt of a stored event, as an output receives it.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    /// The event as stored.
    pub(crate) record: &'a EventRecord,
    /// Its exact body bytes.
    pub(crate) body: Bytes,
    /// The attempt number, 1-based (a replay continues the count).
    pub(crate) number: u32,
    /// When the attempt starts (signatures are timestamped with it).
    pub(crate) now: SystemTime,
}

/// A source's HTTP output.
#[derive(Debug)]
pub(crate) struct HttpOutput {
    /// The pool, shared by every HTTP source with the same TLS setting.
    client: HttpClient,
    /// The app's URL.
    upstream: Uri,
}

/// A delivery output, ready to deliver one source's events. Cloned for each delivery: cheap.
#[derive(Debug, Clone)]
pub(crate) enum Output {
    /// An app over HTTP, through the shared connection pool.
    Http(Arc<HttpOutput>),
    /// A JetStream subject, over the broker's shared connection.
    Nats(Arc<NatsOutput>),
    /// A RabbitMQ exchange, on a channel of the broker's shared connection.
    Amqp(Arc<RabbitOutput>),
    /// A Redis stream, over the server's shared connection.
    Redis(Arc<RedisOutput>),
}

impl Output {
    /// Delivers one attempt for `target`, bounded by its timeout. An error means the stored event
    /// cannot be turned into a message at all (it is dead-lettered); a failure to deliver is an
    /// [`AttemptOutcome`].
    pub(crate) async fn deliver(
        &self,
        target: &Target,
        attempt: Attempt<'_>,
    ) -> Result<AttemptOutcome, ForwardError> {
        match self {
            Self::Http(out) => {
                let HttpOutput { client, upstream } = &**out;
                let req = http::build_request(
                    target,
                    upstream,
                    attempt.record,
                    attempt.body,
                    attempt.number,
                    attempt.now,
                )?;
                Ok(http::send(client, req, target.timeout).await)
            }
            Self::Nats(output) => Ok(output.publish(target, attempt).await),
            Self::Amqp(output) => Ok(output.publish(target, attempt).await),
            Self::Redis(output) => Ok(output.publish(target, attempt).await),
        }
    }

    /// The output kind: the `output` label of delivery metrics and logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Nats(_) => "nats",
            Self::Amqp(_) => "rabbitmq",
            Self::Redis(_) => "redis",
        }
    }
}

/// Builds the outputs of the sources, sharing what they can share.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    /// One HTTP client per TLS setting (by [`ClientTls::fingerprint`]; `None` for `http://`).
    http: HashMap<Option<[u8; 32]>, HttpClient>,
    /// One connection per broker URL, shared by the sources that name it (likewise below).
    nats: HashMap<String, nats::Broker>,
    amqp: HashMap<String, rabbitmq::Broker>,
    redis: HashMap<String, redis::Broker>,
}

impl Outputs {
    /// The outputs of `targets`, in order. What an earlier call built and a target still uses (an
    /// HTTP client, a broker connection) is reused; the rest is dropped (dispatchers still draining
    /// hold their own clones).
    pub(crate) fn for_sources(&mut self, targets: &[Arc<Target>]) -> Vec<Output> {
        let mut http = HashMap::new();
        let mut nats = HashMap::new();
        let mut amqp = HashMap::new();
        let mut redis = HashMap::new();
        let outputs = targets
            .iter()
            .map(|target| match &target.endpoint {
                Endpoint::Http(upstream) => {
                    let key = target.tls.as_ref().map(|t| t.fingerprint());
                    let client = http
                        .entry(key)
                        .or_insert_with(|| {
                            self.http
                                .remove(&key)
                                .unwrap_or_else(|| http::new_client(target.tls.as_deref()))
                        })
                        .clone();
                    Output::Http(Arc::new(HttpOutput {
                        client,
                        upstream: upstream.clone(),
                    }))
                }
                Endpoint::Nats(endpoint) => {
                    let url = endpoint.url();
                    let broker = nats
                        .entry(url.to_owned())
                        .or_insert_with(|| self.nats.remove(url).unwrap_or_else(|| nats::Broker::new(url)))
                        .clone();
                    Output::Nats(Arc::new(NatsOutput::new(broker, endpoint.clone())))
                }
                Endpoint::Amqp(endpoint) => {
                    let url = endpoint.url();
                    let broker = amqp
                        .entry(url.to_owned())
                        .or_insert_with(|| {
                            self.amqp
                                .remove(url)
                                .unwrap_or_else(|| rabbitmq::Broker::new(url))
                        })
                        .clone();
                    Output::Amqp(Arc::new(RabbitOutput::new(broker, endpoint.clone())))
                }
                Endpoint::Redis(endpoint) => {
                    let url = endpoint.url();
                    let broker = redis
                        .entry(url.to_owned())
                        .or_insert_with(|| self.redis.remove(url).unwrap_or_else(|| redis::Broker::new(url)))
                        .clone();
                    Output::Redis(Arc::new(RedisOutput::new(broker, endpoint.clone())))
                }
            })
            .collect();
        self.http = http;
        self.nats = nats;
        self.amqp = amqp;
        self.redis = redis;
        outputs
    }
}

/// The headers every broker message carries, in order: `hookgate-source`, `hookgate-event-id`,
/// `hookgate-attempt`, `hookgate-verified`, `content-type` (`application/octet-stream` if the
/// sender sent none), then the sender's other headers minus hop-by-hop ones. A sender's own
/// `hookgate-*` header is dropped: only the gateway sets those.
pub(crate) fn event_headers<'a>(
    target: &'a Target,
    attempt: &'a Attempt<'_>,
) -> Vec<(&'a str, Cow<'a, [u8]>)> {
    let record = attempt.record;
    let verified: &[u8] = if record.verified { b"true" } else { b"false" };
    let mut headers: Vec<(&str, Cow<'_, [u8]>)> = vec![
        ("hookgate-source", Cow::Borrowed(target.name.as_bytes())),
        ("hookgate-event-id", Cow::Borrowed(record.event_id.as_bytes())),
        (
            "hookgate-attempt",
            Cow::Owned(attempt.number.to_string().into_bytes()),
        ),
        ("hookgate-verified", Cow::Borrowed(verified)),
    ];
    let original: Vec<_> = http::original_headers(record)
        .filter(|(name, _)| !name.starts_with("hookgate-"))
        .collect();
    if !original.iter().any(|(name, _)| *name == "content-type") {
        headers.push(("content-type", Cow::Borrowed(b"application/octet-stream")));
    }
    headers.extend(original.into_iter().map(|(n, v)| (n, Cow::Borrowed(v))));
    headers
}

/// A broker URL for messages and the summary: the scheme, host, port and path, without the user
/// and password (or token) it may hold.
pub(crate) fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // A query may hold a password too (some clients take `?password=`): it is not shown. Whatever
    // stands before the last `@` goes, even a password with an unescaped `/` in it.
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    format!("{scheme}://{host_and_path}")
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn a_shown_url_holds_no_credentials() {
        assert_eq!(
            shown_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(shown_url("redis://:p@ss@h:6379/0?x=1"), "redis://h:6379/0");
        assert_eq!(shown_url("rediss://h"), "rediss://h");
        assert_eq!(shown_url("redis://:pa/ss@h:1"), "redis://h:1");
    }
}
