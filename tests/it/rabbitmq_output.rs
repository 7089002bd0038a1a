//! The RabbitMQ output, against the real broker on 127.0.0.1:5672 (guest/guest), for the outage test
//! through a loopback proxy that the test opens and closes. Each test has an exchange and a queue of
//! its own (named for the test and the run), deleted at its end.

use std::time::Duration;

use lapin::{
    options::{
        BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};

use crate::support::{
    admin_event_id, deliveries, eventually, github_headers, post, replay, unique, TcpProxy, TestGateway,
    GH_SECRET,
};

pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(30);

/// A GitHub source `name` publishing to `exchange` with routing key `name` on `broker`, with quick
/// retries and `extra` keys in `[sources.forward]`.
pub fn amqp_source(name: &str, broker: &str, exchange: &str, declare: bool, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
path = "/hooks/{name}"
provider = "github"
secrets = ["{GH_SECRET}"]
upstream = "{broker}"
[sources.output]
exchange = "{exchange}"
routing_key = "{name}"
declare = {declare}
[sources.forward]
timeout = "2s"
initial_backoff = "20ms"
max_backoff = "200ms"
concurrency = 1
{extra}
"#
    )
}

/// The test's own view of the broker: a channel, and the exchange and queue it made.
pub struct Rabbit {
    _connection: Connection,
    pub channel: Channel,
    pub exchange: String,
    pub queue: String,
}

impl Rabbit {
    /// Connects; nothing is declared yet.
    pub async fn connect(test: &str) -> Self {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let connection = Connection::connect(BROKER, properties)
            .await
            .expect("the test connects to RabbitMQ");
        let channel = connection.create_channel().await.expect("channel");
        let name = unique(test);
        Self {
            _connection: connection,
            channel,
            exchange: name.clone(),
            queue: name,
        }
    }

    /// Declares the exchange (durable topic, as the gateway would).
    pub async fn declare_exchange(&self) {
        self.channel
            .exchange_declare(
                &self.exchange,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange declared");
    }

    /// Declares the queue and binds it to the exchange for `routing_key`.
    pub async fn bind_queue(&self, routing_key: &str) {
        self.channel
            .queue_declare(&self.queue, QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("queue declared");
        self.channel
            .queue_bind(
                &self.queue,
                &self.exchange,
                routing_key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue bound");
    }

    /// Messages waiting in the queue.
    pub async fn count(&self) -> u32 {
        self.channel
            .queue_declare(
                &self.queue,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the queue exists")
            .message_count()
    }

    /// Takes every message from the queue (acked as taken), at most `max`.
    pub async fn take_all(&self, max: usize) -> Vec<(BasicProperties, Vec<u8>)> {
        let mut out = Vec::new();
        while out.len() < max {
            let got = self
                .channel
                .basic_get(&self.queue, BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get");
            let Some(m) = got else { break };
            out.push((m.delivery.properties.clone(), m.delivery.data.clone()));
        }
        out
    }

    /// Deletes the queue and the exchange.
    pub async fn clean_up(self) {
        let _ = self
            .channel
            .queue_delete(&self.queue, QueueDeleteOptions::default())
            .await;
        let _ = self
            .channel
            .exchange_delete(&self.exchange, ExchangeDeleteOptions::default())
            .await;
    }
}

/// A header of a message, as bytes.
pub fn header(props: &BasicProperties, name: &str) -> Vec<u8> {
    let headers = props.headers().as_ref().expect("headers");
    match headers.inner().get(name) {
        Some(AMQPValue::LongString(s)) => s.as_bytes().to_vec(),
        other => panic!("header {name}: {other:?}"),
    }
}

/// The `hookgate-event-id` of a message.
pub fn event_id(props: &BasicProperties) -> String {
    String::from_utf8(header(props, "hookgate-event-id")).expect("UTF-8 id")
}

async fn send_event(gw: &TestGateway, name: &str, id: &str, body: &[u8]) {
    let r = post(
        &gw.url(&format!("/hooks/{name}")),
        &github_headers(id, body),
        body.to_vec(),
    )
    .await;
    assert!(r.status.is_success(), "{id}: {} {}", r.status, r.body);
}

async fn count(gw: &TestGateway, name: &str, outcome: &str, error_source: &str) -> f64 {
    deliveries(&gw.metrics().await, name, "rabbitmq", outcome, error_source)
}

#[tokio::test]
async fn events_arrive_byte_for_byte_with_their_headers_and_a_duplicate_is_not_published_again() {
    let name = "amqp_bytes";
    let rabbit = Rabbit::connect(name).await;
    rabbit.declare_exchange().await;
    rabbit.bind_queue(name).await;
    // declare = true on an exchange that exists: used as it is.
    let gw = TestGateway::start(&amqp_source(name, BROKER, &rabbit.exchange, true, "")).await;
    // Not UTF-8, with a NUL: the body must be the exact bytes.
    let body: &[u8] = b"{\"action\":\"opened\"}\xff\x00\xfe";
    send_event(&gw, name, "evt-1", body).await;
    eventually("evt-1 is in the queue", WAIT, || async {
        rabbit.count().await == 1
    })
    .await;

    // The sender's retry: 2xx, and not published again. evt-2 goes after it through the single
    // slot, so once evt-2 is counted, a forwarded duplicate would have been too.
    send_event(&gw, name, "evt-1", body).await;
    send_event(&gw, name, "evt-2", b"{}").await;
    eventually("evt-2 is delivered", WAIT, || async {
        count(&gw, name, "delivered", "none").await == 2.0
    })
    .await;
    let messages = rabbit.take_all(10).await;
    assert_eq!(messages.len(), 2, "one message per event");
    let (props, data) = &messages[0];
    assert_eq!(&data[..], body);
    assert_eq!(props.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str()),
        Some(format!("{name}:evt-1").as_str())
    );
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(header(props, "hookgate-source"), name.as_bytes());
    assert_eq!(header(props, "hookgate-event-id"), b"evt-1");
    assert_eq!(header(props, "hookgate-attempt"), b"1");
    assert_eq!(header(props, "hookgate-verified"), b"true");
    assert_eq!(header(props, "content-type"), b"application/json");
    assert_eq!(header(props, "x-github-event"), b"push");
    assert_eq!(header(props, "x-github-delivery"), b"evt-1");
    let headers = props.headers().as_ref().expect("headers");
    assert!(
        headers.inner().get("host").is_none(),
        "hop-by-hop headers are dropped"
    );
    assert_eq!(event_id(&messages[1].0), "evt-2");
    gw.stop().await;
    rabbit.clean_up().await;
}

#[tokio::test]
async fn a_broker_that_is_unreachable_makes_deliveries_retry_and_every_event_arrives_once_it_is_back() {
    let name = "amqp_outage";
    let rabbit = Rabbit::connect(name).await;
    rabbit.declare_exchange().await;
    rabbit.bind_queue(name).await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let gw = TestGateway::start(&amqp_source(name, &url, &rabbit.exchange, false, "")).await;
    // Connected and delivering first, so that the outage cuts a live connection.
    send_event(&gw, name, "o-0", b"o-0").await;
    eventually("o-0 is delivered", WAIT, || async {
        count(&gw, name, "delivered", "none").await == 1.0
    })
    .await;

    proxy.close();
    for id in ["o-1", "o-2", "o-3"] {
        // Accepted at once although the broker cannot be reached.
        send_event(&gw, name, id, id.as_bytes()).await;
    }
    eventually("failed attempts are retried", WAIT, || async {
        count(&gw, name, "retry", "network").await >= 2.0
    })
    .await;
    proxy.open();
    eventually("every event is delivered", WAIT, || async {
        count(&gw, name, "delivered", "none").await == 4.0
    })
    .await;
    let mut ids: Vec<String> = rabbit
        .take_all(20)
        .await
        .iter()
        .map(|(p, _)| event_id(p))
        .collect();
    ids.sort();
    assert_eq!(ids, ["o-0", "o-1", "o-2", "o-3"]);
    assert_eq!(count(&gw, name, "dead_letter", "network").await, 0.0);
    gw.stop().await;
    rabbit.clean_up().await;
}

#[tokio::test]
async fn an_unroutable_message_fails_is_dead_lettered_and_its_replay_publishes_it() {
    let name = "amqp_dead";
    let rabbit = Rabbit::connect(name).await;
    // The gateway declares the exchange; no queue is bound to it, so every publish comes back.
    let gw = TestGateway::start(&amqp_source(
        name,
        BROKER,
        &rabbit.exchange,
        true,
        "max_attempts = 2",
    ))
    .await;
    send_event(&gw, name, "d-1", b"{\"dead\":true}").await;
    eventually("the event is a dead letter", WAIT, || async {
        count(&gw, name, "dead_letter", "network").await == 1.0
    })
    .await;
    assert_eq!(count(&gw, name, "retry", "network").await, 1.0);
    assert_eq!(count(&gw, name, "delivered", "none").await, 0.0);
    let events = crate::support::send("GET", &gw.admin_url("/events?limit=10"), &[], "").await;
    assert!(
        events.body.contains("unroutable"),
        "the reason says why: {}",
        events.body
    );

    // The exchange was declared by the gateway (this declare is passive: it fails if it is absent).
    rabbit
        .channel
        .exchange_declare(
            &rabbit.exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the gateway declared the exchange");
    rabbit.bind_queue(name).await;
    replay(gw.admin, admin_event_id(gw.admin, "d-1").await).await;
    eventually("the replay is in the queue", WAIT, || async {
        rabbit.count().await == 1
    })
    .await;
    let messages = rabbit.take_all(10).await;
    assert_eq!(&messages[0].1[..], b"{\"dead\":true}");
    assert_eq!(
        header(&messages[0].0, "hookgate-attempt"),
        b"3",
        "the attempt count continues"
    );
    gw.stop().await;
    rabbit.clean_up().await;
}
