//! The gateway's configuration: one TOML file, parsed then validated.
//!
//! [`Config::from_toml`] takes the file's text and a lookup function for environment variables
//! (`main.rs` passes `std::env::var`, tests pass a map), so that nothing here reads or mutates the
//! process environment. Loading happens in two steps:
//!
//! 1. **Parse** each table into the serde structs of `raw.rs`, which deny unknown keys.
//! 2. **Validate** into [`Config`]: cross-field rules, secret resolution, provider construction.
//!
//! Both steps collect every problem they find; a [`ConfigError`] lists them all, each naming the key
//! path, the offending value (never a secret) and what was expected.

use std::{fmt, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use ipnet::IpNet;

use crate::{
    forward::Target,
    layers::rate_limit::RateLimit,
    providers::{Provider, ProviderKind},
    tls::ServerTls,
};

mod file;
mod raw;
mod tls;
mod validate;

pub use crate::providers::Enforcement;
pub use crate::secret::Secret;
pub use file::ConfigFileError;

#[cfg(test)]
mod tests;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[[sources]]`, in file order; names and paths are unique.
    pub sources: Vec<Arc<Source>>,
}

/// `[server]`: the webhook listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the webhook listener.
    pub listen: SocketAddr,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Whether every connection from `trusted_proxies` starts with a PROXY protocol header (and a
    /// PROXY header from any other peer is refused).
    pub proxy_protocol: bool,
    /// Largest accepted body, in bytes.
    pub max_body_size: usize,
    /// Time a client has to send the request head.
    pub header_read_timeout: Duration,
    /// Time a whole request may take.
    pub request_timeout: Duration,
    /// Drain time on shutdown.
    pub shutdown_timeout: Duration,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// The bytes that request bodies may hold in memory at once, across all connections.
    pub max_buffered_bytes: usize,
    /// `[server.tls]`: the listener speaks TLS only, with this certificate.
    pub tls: Option<ServerTls>,
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The sled directory.
    pub path: PathBuf,
    /// How long an event id is remembered.
    pub dedup_window: Duration,
    /// How long delivered events are kept before they are purged.
    pub retention: Duration,
    /// The index's page cache, in bytes.
    pub cache_size: u64,
    /// Most events queued across sources before a new one is answered 503 `queue_full`.
    pub max_queued: u64,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address of the admin listener.
    pub listen: SocketAddr,
    /// The bearer token the admin API requires, if any.
    pub token: Option<Secret>,
    /// `[admin.tls]`: the admin listener speaks TLS only, with this certificate.
    pub tls: Option<ServerTls>,
    /// The names the listener answers to besides its own address and `localhost`: lowercase DNS names
    /// and IP addresses (without brackets), each checked at load.
    pub allowed_hosts: Vec<String>,
}

/// One `[[sources]]` entry, validated, with its provider built.
#[derive(Debug)]
pub struct Source {
    /// Unique name: `[a-z0-9_-]+`.
    pub name: Arc<str>,
    /// Unique request path.
    pub path: String,
    /// The provider's kind.
    pub kind: ProviderKind,
    /// The provider, holding its secrets.
    pub provider: Arc<dyn Provider>,
    /// Allowed client networks; `None` allows any address.
    pub allow_ips: Option<Vec<IpNet>>,
    /// What happens to requests that fail verification.
    pub enforcement: Enforcement,
    /// The longest expected silence, for silence alerts.
    pub expect_within: Option<Duration>,
    /// Where and how events are delivered (`upstream`, `[forward]` merged with `[sources.forward]`).
    pub forward: Arc<Target>,
    /// The source's token bucket, if it has a `rate_limit`.
    pub(crate) rate_limit: Option<RateLimit>,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// One entry per problem, in file order.
    pub issues: Vec<ConfigIssue>,
}

/// One problem: the key path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigIssue {
    /// The key path, e.g. `sources.github.tolerance`.
    pub key: String,
    /// The value (unless secret), what is wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Parses and validates a config file's text; `env` looks up environment variables for
    /// `{ env = "NAME" }` secrets.
    ///
    /// ```
    /// let text = r#"
    ///     [[sources]]
    ///     name = "github"
    ///     path = "/hooks/github"
    ///     provider = "github"
    ///     secrets = [{ env = "GH_SECRET" }]
    ///     upstream = "http://127.0.0.1:3000/github"
    /// "#;
    /// let env = |name: &str| (name == "GH_SECRET").then(|| "s3cret".to_string());
    /// let config = hookgate::Config::from_toml(text, env).unwrap();
    /// assert_eq!(&*config.sources[0].name, "github");
    ///
    /// let err = hookgate::Config::from_toml(text, |_| None).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"sources.github.secrets[0]: environment variable "GH_SECRET" is not set"#
    /// );
    /// ```
    pub fn from_toml(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        validate::load(text, &env)
    }

    /// Every source's delivery target, in file order: the forwarder's input.
    pub(crate) fn targets(&self) -> Vec<Arc<Target>> {
        self.sources.iter().map(|s| s.forward.clone()).collect()
    }
}
