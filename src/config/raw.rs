//! The config file as written: serde structs, one per TOML table.
//!
//! Every struct denies unknown fields and deserializes straight into domain types (socket addresses,
//! CIDRs, URIs, durations). Cross-field rules, secret resolution and provider construction happen in
//! [`super::validate`]. No `#[serde(flatten)]`: it would silently weaken `deny_unknown_fields`.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use http::Uri;
use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer};

use crate::providers::{HmacScheme, ProviderKind, TokenLocation};

/// `[server]`: the webhook listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    /// Address of the webhook listener. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub(crate) listen: SocketAddr,
    /// CIDRs of proxies whose `X-Forwarded-For` is believed. Default: none, so the TCP peer is the client.
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<IpNet>,
    /// Whether connections start with a PROXY protocol header (v1 or v2), required from
    /// `trusted_proxies` and refused from anyone else. Default false.
    #[serde(default)]
    pub(crate) proxy_protocol: bool,
    /// Largest accepted request body, in bytes. Default 1 MiB.
    #[serde(default = "default_max_body_size")]
    pub(crate) max_body_size: u64,
    /// Time a client has to send the request head. Default 10 s.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub(crate) header_read_timeout: Duration,
    /// Time a whole request may take, body and durable commit included. Default 30 s.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub(crate) request_timeout: Duration,
    /// On SIGTERM, how long in-flight requests get to finish. Default 30 s.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub(crate) shutdown_timeout: Duration,
    /// Most concurrent connections; more wait in the kernel's backlog. Default 4096.
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// The bytes that request bodies may hold in memory at once, across every connection and source;
    /// past it a request is answered 503 with `Retry-After`. At least `max_body_size`. Default
    /// 64 MiB, or 4 × `max_body_size` if that is more (see `default_max_buffered_bytes`).
    #[serde(default)]
    pub(crate) max_buffered_bytes: Option<u64>,
    /// `[server.tls]`: if set, the listener speaks TLS only. Default: plain HTTP.
    #[serde(default)]
    pub(crate) tls: Option<RawTls>,
}

/// `[server.tls]` and `[admin.tls]`: a listener's certificate, key and optional client CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// PEM certificate chain, leaf first. Required.
    pub(crate) cert: PathBuf,
    /// PEM private key of the leaf: PKCS#8, RSA or SEC1. Required.
    pub(crate) key: PathBuf,
    /// PEM CA certificates: if set, clients must present a certificate signed by one (mTLS).
    /// Default: no client certificate is asked for.
    #[serde(default)]
    pub(crate) client_ca: Option<PathBuf>,
}

/// `[store]`: where events and dedup marks live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    /// The sled directory, created if absent. Default `data`.
    #[serde(default = "default_store_path")]
    pub(crate) path: PathBuf,
    /// How long an event id is remembered. Default 72 h, which is also the minimum.
    #[serde(default = "default_dedup_window", with = "humantime_serde")]
    pub(crate) dedup_window: Duration,
    /// How long delivered events are kept (for inspection and replay) before they are purged.
    /// Default 24 h.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub(crate) retention: Duration,
    /// The index's page cache, in bytes. Default 4 MiB.
    #[serde(default = "default_cache_size")]
    pub(crate) cache_size: u64,
    /// Most events queued (accepted, not yet delivered or dead) across sources; past it a new event
    /// is answered 503 `queue_full`. Default 1000000.
    #[serde(default = "default_max_queued")]
    pub(crate) max_queued: u64,
}

/// `[admin]`: health, readiness and metrics, on a listener of their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    /// Address of the admin listener. Default `127.0.0.1:9090`.
    #[serde(default = "default_admin_listen")]
    pub(crate) listen: SocketAddr,
    /// Bearer token required by the admin API (not by health probes and metrics). Required when
    /// `listen` is not a loopback address. Default: none.
    #[serde(default)]
    pub(crate) token: Option<RawSecret>,
    /// `[admin.tls]`: if set, the admin listener speaks TLS only. Default: plain HTTP.
    #[serde(default)]
    pub(crate) tls: Option<RawTls>,
    /// Names (or IP addresses) the admin listener answers to in `Host`, besides its own address and
    /// `localhost`: the names it is reached by (a DNS name, a proxy's name). Default: none.
    #[serde(default)]
    pub(crate) allowed_hosts: Vec<String>,
}

/// `[forward]`: delivery to the app, the defaults of every source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForward {
    /// Time one delivery attempt may take. Default 10 s.
    #[serde(default = "default_forward_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// The retry horizon: an event whose delivery keeps failing is retried until an attempt this long
    /// after its acceptance fails, then dead-lettered. Default 72 h (as long as Stripe retries).
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub(crate) max_age: Duration,
    /// An optional cap on the attempts, dead-lettering an event sooner than `max_age`. Default: none.
    #[serde(default)]
    pub(crate) max_attempts: Option<u32>,
    /// Backoff before the second attempt; doubles on each retry, equal jitter. Default 1 s.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub(crate) initial_backoff: Duration,
    /// Upper bound of one backoff, and of an honoured `Retry-After`. Default 10 min.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub(crate) max_backoff: Duration,
    /// Deliveries in flight at once, per source. Default 32.
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: u32,
    /// If set, forwarded requests are also signed with the Standard Webhooks scheme (`whsec_...`).
    #[serde(default)]
    pub(crate) signing_secret: Option<RawSecret>,
    /// PEM CA certificates trusted for `https://` upstreams besides the system's roots (a private
    /// CA). Default: the system's roots only.
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to `https://` upstreams (mTLS), with `client_key`. Default: none.
    #[serde(default)]
    pub(crate) client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`. Default: none.
    #[serde(default)]
    pub(crate) client_key: Option<PathBuf>,
}

/// A source's `upstream`: a URL, or `{ env = "NAME" }` / `{ file = "PATH" }` holding one (a broker URL
/// may carry a password). Only the literal form is parsed here; the others are read at validation.
#[derive(Debug)]
pub(crate) enum RawUpstream {
    /// Written in the config.
    Url(Uri),
    /// In a variable or a file: [`RawSecret::Env`] or [`RawSecret::File`], never a literal.
    Secret(RawSecret),
}

impl<'de> Deserialize<'de> for RawUpstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawSecret::deserialize(d)? {
            RawSecret::Literal(text) => parse_url(&text).map(Self::Url).map_err(de::Error::custom),
            other => Ok(Self::Secret(other)),
        }
    }
}

/// `[sources.output]`: a broker upstream's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    /// NATS: the subject events are published to, without wildcards. Required.
    pub(crate) subject: Option<String>,
    /// NATS: create a stream for the subject (named after it, `.` as `_`) at the first delivery if
    /// none holds it. Default `false`: the stream must exist, and publishes fail (and are retried) until it does.
    #[serde(default)]
    pub(crate) create_stream: bool,
    /// RabbitMQ: the exchange events are published to (durable). Required.
    pub(crate) exchange: Option<String>,
    /// RabbitMQ: the routing key of every message. Default: the source's name.
    pub(crate) routing_key: Option<String>,
    /// RabbitMQ: declare the exchange (durable, type `topic`) at the first delivery if it does not
    /// exist. Default `false`: it must exist, and publishes fail (and are retried) until it does.
    #[serde(default)]
    pub(crate) declare: bool,
    /// Redis: the stream (key) events are appended to with `XADD`. Required.
    pub(crate) stream: Option<String>,
    /// Redis: trim the stream to about this many entries at each `XADD` (`MAXLEN ~`). Default: no trim.
    pub(crate) maxlen: Option<std::num::NonZeroU64>,
}

/// `[sources.forward]`: a source's overrides of `[forward]`; an absent key keeps the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForwardOverride {
    /// See [`RawForward::timeout`].
    #[serde(default, with = "humantime_serde")]
    pub(crate) timeout: Option<Duration>,
    /// See [`RawForward::max_age`].
    #[serde(default, with = "humantime_serde")]
    pub(crate) max_age: Option<Duration>,
    /// See [`RawForward::max_attempts`].
    pub(crate) max_attempts: Option<u32>,
    /// See [`RawForward::initial_backoff`].
    #[serde(default, with = "humantime_serde")]
    pub(crate) initial_backoff: Option<Duration>,
    /// See [`RawForward::max_backoff`].
    #[serde(default, with = "humantime_serde")]
    pub(crate) max_backoff: Option<Duration>,
    /// See [`RawForward::concurrency`].
    pub(crate) concurrency: Option<u32>,
    /// See [`RawForward::signing_secret`].
    pub(crate) signing_secret: Option<RawSecret>,
    /// See [`RawForward::ca_file`].
    pub(crate) ca_file: Option<PathBuf>,
    /// See [`RawForward::client_cert`]; overridden together with `client_key`.
    pub(crate) client_cert: Option<PathBuf>,
    /// See [`RawForward::client_key`].
    pub(crate) client_key: Option<PathBuf>,
}

/// `[[sources]]`: one sender, one path, one upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    /// Unique name, used in metrics, logs and the `X-Hookgate-Source` header. Required.
    pub(crate) name: String,
    /// Unique request path, e.g. `/hooks/github`. Required.
    pub(crate) path: String,
    /// The signature scheme. Required.
    pub(crate) provider: ProviderKind,
    /// One or more secrets; any may match (rotation). Required.
    pub(crate) secrets: Vec<RawSecret>,
    /// CIDRs allowed to send. Default: any address.
    #[serde(default)]
    pub(crate) allow_ips: Option<Vec<IpNet>>,
    /// Timestamp window for timestamped schemes. Default: the provider's own.
    #[serde(default, with = "humantime_serde")]
    pub(crate) tolerance: Option<Duration>,
    /// The URL as the sender signs it, for URL-signing schemes. Default: none.
    #[serde(default, deserialize_with = "optional_uri")]
    pub(crate) public_url: Option<Uri>,
    /// Where events are delivered: an app's `http://` or `https://` URL, or a `nats://`, `amqp(s)://`
    /// or `redis(s)://` broker (then `[sources.output]` says where on it). A URL with a password is a
    /// secret: it may be given as `{ env = "NAME" }` or `{ file = "PATH" }`. Required.
    pub(crate) upstream: RawUpstream,
    /// `[sources.output]`: where on a broker upstream events go. Required for a broker, refused for HTTP.
    #[serde(default)]
    pub(crate) output: Option<RawOutput>,
    /// Overrides of `[forward]`.
    #[serde(default)]
    pub(crate) forward: RawForwardOverride,
    /// If set, the source is reported silent (`hookgate_source_silent`, a log line) when no event was
    /// accepted for this long. Default: none.
    #[serde(default, with = "humantime_serde")]
    pub(crate) expect_within: Option<Duration>,
    /// `false` turns on shadow mode: requests that fail verification are still accepted and forwarded,
    /// marked `X-Hookgate-Verified: false`, and counted and logged with their reason. Default `true`.
    #[serde(default = "default_enforce")]
    pub(crate) enforce: bool,
    /// The scheme, with `provider = "hmac"` only.
    #[serde(default)]
    pub(crate) hmac: Option<HmacScheme>,
    /// A header holding the sender's event id, for deduplication, with the token schemes (`bearer`,
    /// `basic`, `token`) only. Default: none (the id is `sha256:` and the hex SHA-256 of the body).
    #[serde(default)]
    pub(crate) id_header: Option<String>,
    /// Where the secret is (`header` or `query`), with `provider = "token"` only (where it is required).
    #[serde(default)]
    pub(crate) token: Option<TokenLocation>,
    /// `[sources.challenge]`: what the sender's endpoint check is answered with, for the providers whose
    /// check needs a setting (`meta`'s `verify_token`). Default: none.
    #[serde(default)]
    pub(crate) challenge: Option<RawChallenge>,
    /// `rate_limit = { per_second = 100, burst = 200 }`: a token bucket over the source's requests;
    /// past it they are answered 429. Default: no limit.
    #[serde(default)]
    pub(crate) rate_limit: Option<RawRateLimit>,
}

/// `[sources.challenge]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChallenge {
    /// Meta's verify token: the string set with the callback URL in the app dashboard, which Meta sends
    /// back as `hub.verify_token` (a secret: a literal, `{ env = "NAME" }` or `{ file = "PATH" }`).
    /// Required with `provider = "meta"`.
    #[serde(default)]
    pub(crate) verify_token: Option<RawSecret>,
}

/// A source's `rate_limit`. Read as plain numbers and checked in validation, so that a zero or a
/// negative value gets a message naming the key rather than serde's.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    /// Requests per second refilled, greater than 0 (fractions allowed: 0.5 is one every 2 s). Required.
    pub(crate) per_second: f64,
    /// Requests let through at once when the bucket is full, at least 1. Required.
    pub(crate) burst: i64,
}

/// A `secrets` entry: a literal string, `{ env = "NAME" }` or `{ file = "PATH" }`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum RawSecret {
    /// The secret itself.
    Literal(String),
    /// The name of an environment variable that holds the secret.
    Env(String),
    /// A file that holds the secret; one trailing newline is ignored.
    File(PathBuf),
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(_) => f.write_str("Literal([redacted])"),
            Self::Env(name) => f.debug_tuple("Env").field(name).finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

const SECRET_EXPECTED: &str = r#"a string, { env = "NAME" } or { file = "PATH" }"#;

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SECRET_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Literal(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!(
                        "empty table (expected {SECRET_EXPECTED})"
                    )));
                };
                let secret = match key.as_str() {
                    "env" => RawSecret::Env(map.next_value()?),
                    "file" => RawSecret::File(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected key `{extra}` (expected {SECRET_EXPECTED})"
                    )));
                }
                Ok(secret)
            }
        }
        d.deserialize_any(V)
    }
}

// === URIs ===

fn uri<'de, D: Deserializer<'de>>(d: D) -> Result<Uri, D::Error> {
    let text = String::deserialize(d)?;
    parse_url(&text).map_err(de::Error::custom)
}

/// Parses a URL; the message never shows a user and password it may hold.
pub(crate) fn parse_url(text: &str) -> Result<Uri, String> {
    text.parse()
        .map_err(|e| format!("\"{}\" is not a URL: {e}", shown_url(text)))
}

/// A URL's text for a message: whatever stands before an `@` after the scheme may be a user and
/// password, so it is replaced by `[redacted]`; the URL did not parse, so this works on the text.
fn shown_url(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) if rest.contains('@') => {
            let host = rest.rsplit_once('@').map_or("", |(_, host)| host);
            format!("{scheme}://[redacted]@{host}")
        }
        _ if text.contains('@') => "[redacted]".to_owned(),
        _ => text.to_owned(),
    }
}

fn optional_uri<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uri>, D::Error> {
    uri(d).map(Some)
}

// === defaults ===

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_max_body_size() -> u64 {
    1024 * 1024
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    4096
}
/// 64 MiB holds a thousand typical webhooks mid-read (about 1,000 at 64 KiB, 64 at the 1 MiB
/// default `max_body_size`), and four of the largest bodies when `max_body_size` is raised past 16 MiB.
pub(crate) fn default_max_buffered_bytes(max_body_size: u64) -> u64 {
    (64 * 1024 * 1024u64).max(max_body_size.saturating_mul(4))
}
fn default_store_path() -> PathBuf {
    PathBuf::from("data")
}
pub(crate) fn default_dedup_window() -> Duration {
    Duration::from_secs(72 * 3600)
}
fn default_enforce() -> bool {
    true
}
pub(crate) fn default_cache_size() -> u64 {
    crate::store::DEFAULT_CACHE_BYTES
}
pub(crate) fn default_max_queued() -> u64 {
    1_000_000
}
pub(crate) fn default_retention() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_forward_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_age() -> Duration {
    Duration::from_secs(72 * 3600)
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_concurrency() -> u32 {
    32
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            max_body_size: default_max_body_size(),
            header_read_timeout: default_header_read_timeout(),
            request_timeout: default_request_timeout(),
            shutdown_timeout: default_shutdown_timeout(),
            max_connections: default_max_connections(),
            max_buffered_bytes: None,
            tls: None,
        }
    }
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            dedup_window: default_dedup_window(),
            retention: default_retention(),
            cache_size: default_cache_size(),
            max_queued: default_max_queued(),
        }
    }
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token: None,
            tls: None,
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for RawForward {
    fn default() -> Self {
        Self {
            timeout: default_forward_timeout(),
            max_age: default_max_age(),
            max_attempts: None,
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            concurrency: default_concurrency(),
            signing_secret: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}
