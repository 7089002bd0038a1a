//! The RabbitMQ output: each event is published to an exchange with a routing key, and is delivered
//! once the broker confirms it (a publisher confirm on the channel).
//!
//! Messages are persistent (delivery mode 2) and published with `mandatory`: a message that no queue
//! is bound to take comes back (`basic.return`) and the attempt fails, instead of being dropped in
//! silence. With `declare = true` the exchange (durable, type `topic`) is declared at the first
//! delivery if it does not exist; an exchange that exists is used as it is. A nack, an unroutable
//! message, a closed channel or no confirm within the source's timeout: the attempt fails and the
//! forwarder retries it.
//!
//! Each message has `message_id = <source>:<event_id>`, so that consumers can drop a redelivery, and
//! the headers `hookgate-source`, `hookgate-event-id`, `hookgate-attempt`, `hookgate-verified` and
//! `content-type`, plus the sender's headers minus hop-by-hop ones (as AMQP long strings, which carry
//! any bytes; a repeated header is joined with `, `). The body is the exact bytes received.
//!
//! The sources that name the same broker URL share one connection ([`Broker`]); each source publishes
//! on a channel of its own on it, so that a channel the broker closes (a missing exchange) fails that
//! source's attempts only. A lost connection is opened again at the next attempt, no sooner than a
//! backoff that doubles from 100 ms to 10 s while connecting fails; meanwhile attempts fail at once.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
    publisher_confirm::Confirmation,
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::{Mutex, OnceCell};

use super::{event_headers, shown_url, Attempt};
use crate::forward::{retry::AttemptOutcome, Target};

/// How long opening the connection (TCP, TLS, AMQP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before connecting again after a failed connect; doubled per failure up to
/// [`MAX_RECONNECT_BACKOFF`].
const MIN_RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(10);
/// Persistent: the broker writes the message to disk in a durable queue.
const PERSISTENT: u8 = 2;

/// Where a source publishes, as config describes it.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpEndpoint {
    /// The broker URL (`amqp://user:password@host:port/vhost`); it may hold credentials, so it is never shown.
    url: String,
    /// The exchange messages are published to.
    pub exchange: String,
    /// The routing key of every message.
    pub routing_key: String,
    /// Declare the exchange (durable, `topic`) if it does not exist.
    pub declare: bool,
}

impl AmqpEndpoint {
    /// `url` is the broker's `amqp://` or `amqps://` URL (see [`Self::check_url`]).
    pub fn new(url: String, exchange: String, routing_key: String, declare: bool) -> Self {
        Self {
            url,
            exchange,
            routing_key,
            declare,
        }
    }

    /// Whether `url` is an AMQP URL the client can connect with. The parser's message is not kept:
    /// it can quote the URL, password included.
    pub fn check_url(url: &str) -> Result<(), &'static str> {
        url.parse::<lapin::uri::AMQPUri>()
            .map(|_| ())
            .map_err(|_| "the client cannot parse it")
    }

    /// The broker URL, credentials included: for connecting only.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

/// Never the credentials of the URL.
impl fmt::Debug for AmqpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpEndpoint")
            .field("broker", &shown_url(&self.url))
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("declare", &self.declare)
            .finish()
    }
}

/// `amqp://host:port/vhost exchange X routing key K`, never the credentials of the URL.
impl fmt::Display for AmqpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exchange {} routing key {}",
            shown_url(&self.url),
            self.exchange,
            self.routing_key
        )
    }
}

// === impl Broker ===

/// One broker's connection, shared by every source that names its URL.
#[derive(Clone)]
pub(crate) struct Broker(Arc<BrokerInner>);

struct BrokerInner {
    /// May hold credentials: never shown.
    url: String,
    state: Mutex<Connecting>,
}

/// The connection, and when the next connect may be tried after failures.
#[derive(Default)]
struct Connecting {
    connection: Option<Connection>,
    failures: u32,
    not_before: Option<Instant>,
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
            state: Mutex::new(Connecting::default()),
        }))
    }

    /// A new channel with publisher confirms on the connection, connecting first if there is none
    /// (or it was lost) and the backoff allows.
    async fn open_channel(&self) -> Result<Channel, AttemptOutcome> {
        let mut state = self.0.state.lock().await;
        let live = state.connection.as_ref().filter(|c| c.status().connected());
        let connection = match live {
            Some(connection) => connection,
            None => {
                state.connection = None;
                if state.not_before.is_some_and(|t| Instant::now() < t) {
                    return Err(network("broker: reconnecting after a failed connect"));
                }
                match self.connect().await {
                    Ok(connection) => {
                        state.failures = 0;
                        state.not_before = None;
                        tracing::info!(output = "rabbitmq", "connected to the broker");
                        state.connection.insert(connection)
                    }
                    Err(failed) => {
                        let wait = MIN_RECONNECT_BACKOFF
                            .saturating_mul(1 << state.failures.min(10))
                            .min(MAX_RECONNECT_BACKOFF);
                        state.failures = state.failures.saturating_add(1);
                        state.not_before = Some(Instant::now() + wait);
                        return Err(failed);
                    }
                }
            }
        };
        let channel = connection.create_channel().await.map_err(amqp_failed)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp_failed)?;
        Ok(channel)
    }

    async fn connect(&self) -> Result<Connection, AttemptOutcome> {
        let properties = ConnectionProperties::default()
            .with_connection_name("hookgate".into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.0.url, properties)).await {
            Ok(Ok(connection)) => Ok(connection),
            // The error's text may name the URL: only its kind is kept.
            Ok(Err(e)) => Err(network(match e.kind() {
                lapin::ErrorKind::ProtocolError(_) => {
                    "broker: connection refused by the broker (login or vhost)"
                }
                _ => "broker: connect failed",
            })),
            Err(_) => Err(network("broker: connect timed out")),
        }
    }
}

// === impl RabbitOutput ===

/// A source's RabbitMQ output: its channel on the broker's shared connection.
#[derive(Debug)]
pub(crate) struct RabbitOutput {
    broker: Broker,
    endpoint: AmqpEndpoint,
    /// The source's channel, opened again when the broker closed it or the connection was lost.
    channel: Mutex<Option<Channel>>,
    /// Set once the exchange is known to exist (with `declare` only).
    declared: OnceCell<()>,
}

impl RabbitOutput {
    pub(crate) fn new(broker: Broker, endpoint: AmqpEndpoint) -> Self {
        Self {
            broker,
            endpoint,
            channel: Mutex::new(None),
            declared: OnceCell::new(),
        }
    }

    /// The source's channel, opened if it has none that is open.
    async fn channel(&self) -> Result<Channel, AttemptOutcome> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        *slot = None;
        let channel = self.broker.open_channel().await?;
        Ok(slot.insert(channel).clone())
    }

    /// Declares the exchange unless it exists. A passive declare of a missing exchange closes its
    /// channel, so both run on channels of their own.
    async fn declare(&self) -> Result<(), AttemptOutcome> {
        let exchange = &self.endpoint.exchange;
        let check = self.broker.open_channel().await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        let exists = check
            .exchange_declare(exchange, ExchangeKind::Topic, passive, FieldTable::default())
            .await
            .is_ok();
        if exists {
            let _ = check.close(200, "done").await;
            return Ok(());
        }
        let declare = self.broker.open_channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        declare
            .exchange_declare(exchange, ExchangeKind::Topic, durable, FieldTable::default())
            .await
            .map_err(amqp_failed)?;
        tracing::info!(output = "rabbitmq", exchange = %exchange, "declared the exchange");
        let _ = declare.close(200, "done").await;
        Ok(())
    }

    /// Publishes one attempt and waits for its confirm, within `target.timeout`.
    pub(crate) async fn publish(&self, target: &Target, attempt: Attempt<'_>) -> AttemptOutcome {
        let publish = async {
            if self.endpoint.declare {
                self.declared.get_or_try_init(|| self.declare()).await?;
            }
            let channel = self.channel().await?;
            let confirm = channel
                .basic_publish(
                    &self.endpoint.exchange,
                    &self.endpoint.routing_key,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &attempt.body,
                    properties(target, &attempt),
                )
                .await
                .map_err(amqp_failed)?
                .await
                .map_err(amqp_failed)?;
            match confirm {
                Confirmation::Ack(None) => Ok(AttemptOutcome::Taken),
                Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                    Err(network(format!(
                        "broker: unroutable, returned with {} {}",
                        returned.reply_code, returned.reply_text
                    )))
                }
                Confirmation::Nack(None) => Err(network("broker: nack")),
                Confirmation::NotRequested => Err(network("broker: no publisher confirm")),
            }
        };
        match tokio::time::timeout(target.timeout, publish).await {
            Ok(Ok(taken)) => taken,
            Ok(Err(failed)) => failed,
            Err(_) => network("timeout"),
        }
    }
}

/// The message's properties: persistent, its id, content type and headers (see the module docs).
fn properties(target: &Target, attempt: &Attempt<'_>) -> BasicProperties {
    let mut headers = FieldTable::default();
    let mut content_type = None;
    for (name, value) in event_headers(target, attempt) {
        if name == "content-type" {
            content_type = std::str::from_utf8(&value).ok().map(ShortString::from);
        }
        let key = ShortString::from(name);
        let joined = match headers.inner().get(&key) {
            Some(AMQPValue::LongString(prev)) => {
                let mut bytes = prev.as_bytes().to_vec();
                bytes.extend_from_slice(b", ");
                bytes.extend_from_slice(&value);
                bytes
            }
            _ => value.into_owned(),
        };
        headers.insert(key, AMQPValue::LongString(LongString::from(joined)));
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(format!("{}:{}", target.name, attempt.record.event_id).into())
        .with_app_id("hookgate".into())
        .with_timestamp(attempt.record.received_at_ms / 1000)
        .with_headers(headers);
    if let Some(content_type) = content_type {
        props = props.with_content_type(content_type);
    }
    props
}

fn network(what: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome::Network(what.into())
}

/// A failed AMQP operation, by kind; a broker's refusal keeps the broker's reply (its code and text,
/// such as `NOT_FOUND - no exchange 'x' in vhost '/'`), which holds no credentials.
fn amqp_failed(e: lapin::Error) -> AttemptOutcome {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(reply) => network(format!("broker: {reply}")),
        lapin::ErrorKind::InvalidChannelState(..) => network("broker: channel closed"),
        lapin::ErrorKind::InvalidConnectionState(_) | lapin::ErrorKind::IOError(_) => {
            network("broker: connection lost")
        }
        _ => network("broker: publish failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_shown_without_its_credentials() {
        let e = AmqpEndpoint::new(
            "amqp://user:hunter2@broker.example:5672/%2f".into(),
            "webhooks".into(),
            "stripe".into(),
            true,
        );
        assert_eq!(
            e.to_string(),
            "amqp://broker.example:5672/%2f exchange webhooks routing key stripe"
        );
        let debug = format!("{e:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("user"), "{debug}");
        assert!(!format!("{:?}", Broker::new("amqp://u:hunter2@h:1/")).contains("hunter2"));
    }

    #[test]
    fn urls_are_checked_without_quoting_them() {
        assert!(AmqpEndpoint::check_url("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(AmqpEndpoint::check_url("amqps://u:p@broker.example/vhost").is_ok());
        let err = AmqpEndpoint::check_url("amqp://u:hunter2@[::1").expect_err("bad URL");
        assert!(!err.contains("hunter2"));
    }
}
