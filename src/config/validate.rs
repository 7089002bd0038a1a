//! Step two of loading: from the raw tables to a [`Config`], collecting every problem.

use http::Uri;
use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::{
    raw::{
        default_max_buffered_bytes, parse_url, RawAdmin, RawForward, RawOutput, RawRateLimit, RawSecret,
        RawServer, RawSource, RawStore, RawUpstream,
    },
    tls::{self, ClientTlsBuilder},
    AdminConfig, Config, ConfigError, ConfigIssue, Enforcement, Secret, ServerConfig, Source, StoreConfig,
};
use crate::{
    forward::{
        AmqpEndpoint, Backoff, BackoffError, Endpoint, NatsEndpoint, RedisEndpoint, RetryPolicy, Target,
    },
    layers::rate_limit::RateLimit,
    providers::{self, ChallengeSettings, ProviderConfigError, ProviderSettings, StandardSigner},
};

const SECTIONS: &[&str] = &["server", "store", "admin", "forward", "sources"];

/// Collects problems in file order.
#[derive(Default)]
pub(super) struct Issues(pub(super) Vec<ConfigIssue>);

impl Issues {
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            key: key.into(),
            message: message.into(),
        });
    }
}

pub(super) fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut issues = Issues::default();
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            // toml's message holds the line, the column and a snippet of the offending line.
            let message = format!("not valid TOML: {}", e.to_string().trim_end());
            return Err(ConfigError {
                issues: vec![ConfigIssue {
                    key: "(file)".into(),
                    message,
                }],
            });
        }
    };
    for key in table.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
        issues.push(
            key.as_str(),
            format!("unknown section (expected one of {})", SECTIONS.join(", ")),
        );
    }

    let server = section::<RawServer>(&table, "server", &mut issues);
    let store = section::<RawStore>(&table, "store", &mut issues);
    let admin = section::<RawAdmin>(&table, "admin", &mut issues);
    let forward = section::<RawForward>(&table, "forward", &mut issues);
    let raw_sources = sources(&table, &mut issues);

    let admin = admin.and_then(|a| validate_admin(a, env, &mut issues));
    let server = server.and_then(|s| validate_server(s, &mut issues));
    let store = store.and_then(|s| validate_store(s, &mut issues));
    if let (Some(admin), Some(server)) = (&admin, &server) {
        if admin.listen == server.listen {
            issues.push(
                "admin.listen",
                format!(
                    "\"{}\" is also server.listen (expected an address of its own)",
                    admin.listen
                ),
            );
        }
    }

    let mut sources = Vec::new();
    // A `[forward]` that does not parse has been reported; its sources are still checked, against
    // the defaults, so that their own problems are reported in the same run.
    let forward_ok = forward.is_some();
    let forward = forward.unwrap_or_default();
    let mut client_tls = ClientTlsBuilder::default();
    if forward_ok {
        validate_forward_defaults(&forward, &mut issues);
        client_tls.defaults(&forward, &mut issues);
    }
    let default_signer = forward
        .signing_secret
        .as_ref()
        .and_then(|raw| signer(raw, "forward.signing_secret", env, &mut issues));
    check_unique(&table, &mut issues);
    for (label, raw) in raw_sources.into_iter().flatten() {
        let context = SourceContext {
            defaults: &forward,
            default_signer: &default_signer,
            client_tls: &mut client_tls,
            env,
        };
        if let Some(source) = validate_source(&label, raw, context, &mut issues) {
            sources.push(Arc::new(source));
        }
    }
    match (server, store, admin, issues.0.is_empty()) {
        (Some(server), Some(store), Some(admin), true) if forward_ok => Ok(Config {
            server,
            store,
            admin,
            sources,
        }),
        _ => Err(ConfigError { issues: issues.0 }),
    }
}

/// Deserializes `[name]`, or its defaults if the table is absent.
fn section<T: DeserializeOwned + Default>(table: &toml::Table, name: &str, issues: &mut Issues) -> Option<T> {
    match table.get(name) {
        None => Some(T::default()),
        Some(value) => parse(value, name, issues),
    }
}

/// Deserializes one value, turning each serde error into an issue that names the full key path and,
/// unless it is a secret, the offending value.
///
/// serde stops at the first error, so to report every problem at once the offending key is removed and
/// the rest parsed again, up to [`MAX_PARSE_ROUNDS`] times. The "missing field" error that a removed
/// required key then causes is not reported twice. What finally parses is returned, so that the
/// validation step can look for more problems in the keys that were fine.
fn parse<T: DeserializeOwned>(value: &toml::Value, prefix: &str, issues: &mut Issues) -> Option<T> {
    let mut value = value.clone();
    let mut removed: Vec<Vec<String>> = Vec::new();
    for _ in 0..MAX_PARSE_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return Some(v),
            Err(err) => err,
        };
        let mut key = prefix.to_owned();
        // The path of map keys down to the error, and the deepest one that can be removed.
        let mut map_path: Vec<String> = Vec::new();
        let mut removable = 0;
        let mut at = Some(&value);
        for segment in err.path().iter() {
            match segment {
                Segment::Seq { index } => {
                    key.push_str(&format!("[{index}]"));
                    at = at.and_then(|v| v.get(*index));
                }
                Segment::Map { key: k } | Segment::Enum { variant: k } => {
                    key.push('.');
                    key.push_str(k);
                    at = at.and_then(|v| v.get(k.as_str()));
                    if removable == map_path.len() {
                        map_path.push(k.clone());
                        removable += 1;
                    }
                }
                Segment::Unknown => {}
            }
        }
        let message = err.into_inner().message().to_owned();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'));
        let already_reported = missing.is_some_and(|field| {
            removed.iter().any(|r| {
                r.len() == map_path.len() + 1
                    && r[..map_path.len()] == map_path[..]
                    && r[map_path.len()] == field
            })
        });
        if !already_reported {
            match missing {
                // serde names the table; the key that is missing is the one to fix.
                Some(field) => {
                    let key = format!("{key}.{field}");
                    let expected = expected_value(&key);
                    issues.push(key, format!("is missing (expected {expected})"));
                }
                None => issues.push(key.clone(), describe(&key, at, message.clone())),
            }
        }
        if missing.is_some() || map_path.is_empty() || !remove(&mut value, &map_path) {
            return None;
        }
        removed.push(map_path);
    }
    None
}

/// How many errors one table may report before the rest is given up on.
const MAX_PARSE_ROUNDS: usize = 32;

/// Removes the key at `path` from nested tables; false if it is not there.
fn remove(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut table = value;
    for k in parents {
        match table.get_mut(k.as_str()) {
            Some(next) => table = next,
            None => return false,
        }
    }
    table
        .as_table_mut()
        .is_some_and(|t| t.remove(last.as_str()).is_some())
}

/// Words serde's message for the issue at `key` whose value is `at`.
fn describe(key: &str, at: Option<&toml::Value>, message: String) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // "unknown field `lisen`, expected one of `listen`, ..." -> "unknown key (expected one of ...)"
        let expected = rest
            .split_once(", expected ")
            .map(|(_, e)| e)
            .unwrap_or("no other key");
        return format!("unknown key (expected {expected})");
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (given, expected) = rest.split_once("`, expected ").unwrap_or((rest, "another value"));
        return format!("\"{given}\" is not valid (expected {expected})");
    }
    if let Some(given) = message
        .strip_prefix("invalid value: string ")
        .and_then(|m| m.strip_suffix(", expected a duration"))
    {
        return format!("{given} is not a duration (expected e.g. \"30s\", \"5m\" or \"72h\")");
    }
    let hint = hint(key);
    // Secrets, and URLs that may hold a user and password: their raw value is never repeated (a URL
    // that does not parse is shown by its own message, credentials redacted).
    let secret = key.contains("secret") || key.ends_with("upstream") || key.ends_with("url");
    if let (Some(v), Some(rest)) = (at.filter(|_| !secret), message.strip_prefix("invalid type: ")) {
        // "invalid type: string \"many\", expected u32" -> "\"many\" is not valid (expected ...)"
        let serde_expected = rest.split_once(", expected ").map_or("another type", |(_, e)| e);
        return format!("{v} is not valid (expected {})", hint.unwrap_or(serde_expected));
    }
    let message = match at {
        // A missing field's path is its table, so only a leaf value is shown.
        Some(v) if !secret && !v.is_table() && !message.starts_with("missing field") => {
            let shown = v.to_string();
            if message.contains(&shown) {
                message
            } else {
                format!("{shown} is not valid: {message}")
            }
        }
        _ => message,
    };
    match hint {
        Some(hint) if !message.contains("expected") => format!("{message} (expected {hint})"),
        _ => message,
    }
}

/// What a required key takes, for the message that says it is missing.
fn expected_value(key: &str) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    match last {
        "provider" => {
            let names: Vec<String> = providers::ProviderKind::NAMES
                .iter()
                .map(|n| format!("`{n}`"))
                .collect();
            format!("one of {}", names.join(", "))
        }
        "name" => "a name of 1 to 64 of a-z, 0-9, '_' and '-', such as \"github\"".to_owned(),
        "path" => "an absolute path such as \"/hooks/github\"".to_owned(),
        "secrets" => "a list of secrets such as [{ env = \"GITHUB_SECRET\" }]".to_owned(),
        _ => hint(key).unwrap_or("a value").to_owned(),
    }
}

/// An example of a valid value, by the key's last segment.
fn hint(key: &str) -> Option<&'static str> {
    let last = key.rsplit('.').next().unwrap_or(key);
    let last = last.split('[').next().unwrap_or(last);
    Some(match last {
        "listen" => "an address and port such as \"127.0.0.1:8080\"",
        "trusted_proxies" | "allow_ips" if key.ends_with(']') => "a CIDR such as \"10.0.0.0/8\"",
        "trusted_proxies" | "allow_ips" => "a list of CIDRs such as [\"10.0.0.0/8\"]",
        "upstream" | "public_url" => "a URL such as \"http://127.0.0.1:3000/hooks\"",
        "max_body_size" | "max_connections" | "max_attempts" | "concurrency" => "a positive integer",
        _ => return None,
    })
}

/// Deserializes `[[sources]]`, labelling each by name when it has a usable one.
fn sources(table: &toml::Table, issues: &mut Issues) -> Vec<Option<(String, RawSource)>> {
    let Some(value) = table.get("sources") else {
        issues.push("sources", "no [[sources]] defined (expected at least one)");
        return Vec::new();
    };
    let Some(array) = value.as_array() else {
        issues.push("sources", "expected an array of tables: [[sources]]");
        return Vec::new();
    };
    if array.is_empty() {
        issues.push("sources", "no [[sources]] defined (expected at least one)");
    }
    let names: Vec<Option<&str>> = array
        .iter()
        .map(|v| v.get("name").and_then(|n| n.as_str()).filter(|n| valid_name(n)))
        .collect();
    array
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let label = match names[i] {
                Some(name) if names.iter().filter(|n| **n == Some(name)).count() == 1 => {
                    format!("sources.{name}")
                }
                _ => format!("sources[{i}]"),
            };
            parse::<RawSource>(value, &label, issues).map(|raw| (label, raw))
        })
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The largest `server.max_buffered_bytes`: 1 TiB, far past any memory, and within what the budget's
/// semaphore can count on 64-bit targets (`usize` bounds it on smaller ones).
const MAX_BUFFERED_BYTES: u64 = 1 << 40;

fn validate_server(raw: RawServer, issues: &mut Issues) -> Option<ServerConfig> {
    let before = issues.0.len();
    let max_body_size = match usize::try_from(raw.max_body_size) {
        Ok(n) if n > 0 => n,
        _ => {
            issues.push(
                "server.max_body_size",
                format!(
                    "{} is not valid (expected a size in bytes greater than 0)",
                    raw.max_body_size
                ),
            );
            0
        }
    };
    for (key, value) in [
        ("server.header_read_timeout", raw.header_read_timeout),
        ("server.request_timeout", raw.request_timeout),
    ] {
        nonzero_duration(key, value, issues);
    }
    if raw.max_connections == 0 {
        issues.push("server.max_connections", "0 is not valid (expected at least 1)");
    }
    let max_buffered_bytes = raw
        .max_buffered_bytes
        .unwrap_or_else(|| default_max_buffered_bytes(raw.max_body_size));
    let max_buffered_bytes = match usize::try_from(max_buffered_bytes) {
        Ok(n) if n as u64 <= MAX_BUFFERED_BYTES && n as u64 >= raw.max_body_size => n,
        _ => {
            issues.push(
                "server.max_buffered_bytes",
                format!(
                    "{max_buffered_bytes} is not valid (expected a size in bytes from server.max_body_size \
                     ({}) to {MAX_BUFFERED_BYTES})",
                    raw.max_body_size,
                ),
            );
            0
        }
    };
    // An entry that is not a CIDR is reported as such, and the list is then read as empty.
    let bad_entry = issues
        .0
        .iter()
        .any(|i| i.key.starts_with("server.trusted_proxies"));
    if raw.proxy_protocol && raw.trusted_proxies.is_empty() && !bad_entry {
        issues.push(
            "server.trusted_proxies",
            "is empty, but server.proxy_protocol = true believes a PROXY header only from these \
             proxies (expected a list of CIDRs such as [\"10.0.0.0/8\"])",
        );
    }
    let tls = raw
        .tls
        .as_ref()
        .and_then(|t| tls::listener("server.tls", t, issues));
    (issues.0.len() == before).then_some(ServerConfig {
        tls,
        listen: raw.listen,
        trusted_proxies: raw.trusted_proxies,
        proxy_protocol: raw.proxy_protocol,
        max_body_size,
        header_read_timeout: raw.header_read_timeout,
        request_timeout: raw.request_timeout,
        shutdown_timeout: raw.shutdown_timeout,
        max_connections: raw.max_connections,
        max_buffered_bytes,
    })
}

fn validate_admin(
    raw: RawAdmin,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<AdminConfig> {
    let before = issues.0.len();
    let allowed_hosts: Vec<String> = raw
        .allowed_hosts
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| match allowed_host(entry) {
            Ok(host) => Some(host),
            Err(message) => {
                issues.push(format!("admin.allowed_hosts[{i}]"), message);
                None
            }
        })
        .collect();
    let token = match &raw.token {
        None => None,
        Some(entry) => match resolve(entry, env) {
            Ok(token) => match admin_token(&token) {
                Ok(token) => Some(token),
                Err(message) => {
                    issues.push("admin.token", message);
                    return None;
                }
            },
            Err(message) => {
                issues.push("admin.token", message);
                return None;
            }
        },
    };
    if token.is_none() && !raw.listen.ip().is_loopback() {
        issues.push(
            "admin.token",
            format!(
                "is required when admin.listen (\"{}\") is not a loopback address \
                 (expected token = {{ env = \"NAME\" }}, or a loopback admin.listen)",
                raw.listen
            ),
        );
        return None;
    }
    let tls = raw
        .tls
        .as_ref()
        .and_then(|t| tls::listener("admin.tls", t, issues));
    if issues.0.len() != before {
        return None;
    }
    Some(AdminConfig {
        listen: raw.listen,
        token,
        allowed_hosts,
        tls,
    })
}

/// One `admin.allowed_hosts` entry, normalised: a DNS name in lowercase, or an IP address as it
/// displays (an IPv6 one without brackets).
fn allowed_host(entry: &str) -> Result<String, String> {
    let expected = "(expected a DNS name such as \"hookgate.internal\" or an IP address, without a \
                    scheme, port, path or wildcard)";
    let unbracketed = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    if let Ok(ip) = unbracketed.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    let is_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if entry.len() > 253 || !entry.split('.').all(is_label) {
        return Err(format!("{entry:?} is not a host name {expected}"));
    }
    // An all-numeric name would be read as an IPv4 address by clients.
    if entry.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "{entry:?} is not an IP address or a host name {expected}"
        ));
    }
    Ok(entry.to_ascii_lowercase())
}

/// The shortest admin token accepted: guessing must not be practical.
const MIN_TOKEN_LEN: usize = 16;

/// The admin token without surrounding whitespace, if long enough. The API trims the token a client
/// presents, so surrounding whitespace could never be sent; and twenty spaces are no secret. The
/// message never shows the value.
fn admin_token(token: &Secret) -> Result<Secret, String> {
    let trimmed = token.expose().trim_ascii();
    if trimmed.is_empty() {
        return Err(format!(
            "the token is empty or only whitespace (expected at least {MIN_TOKEN_LEN} characters)"
        ));
    }
    if String::from_utf8_lossy(trimmed).chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is too short (expected at least {MIN_TOKEN_LEN} characters)"
        ));
    }
    Ok(Secret::new(trimmed))
}

/// The smallest index page cache accepted: below it, sled reads its pages from disk at every step.
const MIN_CACHE_SIZE: u64 = 1024 * 1024;

fn validate_store(raw: RawStore, issues: &mut Issues) -> Option<StoreConfig> {
    let before = issues.0.len();
    let minimum = super::raw::default_dedup_window();
    if raw.dedup_window < minimum {
        issues.push(
            "store.dedup_window",
            format!(
                "\"{}\" is too short (expected at least \"72h\": senders such as Stripe retry for up to 3 days)",
                humantime::format_duration(raw.dedup_window)
            ),
        );
    }
    if raw.path.as_os_str().is_empty() {
        issues.push("store.path", "\"\" is not valid (expected a directory path)");
    }
    if raw.retention.is_zero() {
        issues.push(
            "store.retention",
            "\"0s\" is not valid (expected a duration such as \"24h\")",
        );
    }
    if raw.cache_size < MIN_CACHE_SIZE {
        issues.push(
            "store.cache_size",
            format!(
                "{} is too small (expected at least {MIN_CACHE_SIZE} bytes, 1 MiB)",
                raw.cache_size
            ),
        );
    }
    if raw.max_queued == 0 {
        issues.push(
            "store.max_queued",
            "0 is not valid (expected a number of events of at least 1, e.g. 1000000)",
        );
    }
    (issues.0.len() == before).then_some(StoreConfig {
        max_queued: raw.max_queued,
        path: raw.path,
        dedup_window: raw.dedup_window,
        retention: raw.retention,
        cache_size: raw.cache_size,
    })
}

fn nonzero_duration(key: &str, value: Duration, issues: &mut Issues) {
    if value.is_zero() {
        issues.push(
            key,
            "\"0s\" is not valid (expected a duration greater than zero, e.g. \"10s\")",
        );
    }
}

/// What every source's validation shares.
struct SourceContext<'a> {
    /// `[forward]`.
    defaults: &'a RawForward,
    /// `[forward] signing_secret`, resolved.
    default_signer: &'a Option<StandardSigner>,
    client_tls: &'a mut ClientTlsBuilder,
    env: &'a dyn Fn(&str) -> Option<String>,
}

fn validate_source(
    label: &str,
    raw: RawSource,
    cx: SourceContext<'_>,
    issues: &mut Issues,
) -> Option<Source> {
    let env = cx.env;
    let before = issues.0.len();
    if !valid_name(&raw.name) {
        issues.push(
            format!("{label}.name"),
            format!(
                "{:?} is not valid (expected 1 to 64 of a-z, 0-9, '_' and '-')",
                raw.name
            ),
        );
    }
    if !raw.path.starts_with('/') || raw.path.contains(['?', '#', ' ']) || raw.path.len() > 1024 {
        issues.push(
            format!("{label}.path"),
            format!(
                "{:?} is not valid (expected an absolute path such as \"/hooks/github\", without query)",
                raw.path
            ),
        );
    }
    let upstream = upstream(label, &raw.upstream, env, issues);
    let endpoint = upstream
        .as_ref()
        .and_then(|(uri, text)| endpoint(label, &raw, uri, text, issues));
    if let Some(url) = &raw.public_url {
        if url.scheme().is_none() || url.authority().is_none() {
            issues.push(
                format!("{label}.public_url"),
                format!("\"{url}\" is not valid (expected an absolute URL such as \"https://example.com/hooks/x\")"),
            );
        }
    }
    if let Some(tolerance) = raw.tolerance {
        nonzero_duration(&format!("{label}.tolerance"), tolerance, issues);
    }
    if let Some(expect_within) = raw.expect_within {
        nonzero_duration(&format!("{label}.expect_within"), expect_within, issues);
    }
    let rate_limit = raw.rate_limit.and_then(|r| rate_limit(label, r, issues));
    if raw.allow_ips.as_ref().is_some_and(|ips| ips.is_empty()) {
        issues.push(
            format!("{label}.allow_ips"),
            "[] allows no address (expected at least one CIDR, or no allow_ips key to allow any address)",
        );
    }

    let mut secrets = Vec::with_capacity(raw.secrets.len());
    for (i, entry) in raw.secrets.iter().enumerate() {
        match resolve(entry, env) {
            Ok(secret) => secrets.push(secret),
            Err(message) => issues.push(format!("{label}.secrets[{i}]"), message),
        }
    }
    let mut challenge_resolved = true;
    let challenge = raw.challenge.as_ref().map(|c| {
        let verify_token = c
            .verify_token
            .as_ref()
            .and_then(|entry| match resolve(entry, env) {
                Ok(secret) => Some(secret),
                Err(message) => {
                    issues.push(format!("{label}.challenge.verify_token"), message);
                    challenge_resolved = false;
                    None
                }
            });
        ChallengeSettings { verify_token }
    });
    let provider = if secrets.len() == raw.secrets.len() && challenge_resolved {
        let public_url = raw.public_url.as_ref().map(|u| u.to_string());
        let settings = ProviderSettings {
            secrets: &secrets,
            tolerance: raw.tolerance,
            public_url: public_url.as_deref(),
            hmac: raw.hmac.as_ref(),
            token: raw.token.as_ref(),
            id_header: raw.id_header.as_deref(),
            challenge: challenge.as_ref(),
        };
        match providers::build(raw.provider, settings) {
            Ok(p) => Some(p),
            Err(e) => {
                push_provider_error(label, e, issues);
                None
            }
        }
    } else {
        None
    };

    let forward = endpoint
        .zip(upstream.as_ref())
        .and_then(|(endpoint, (uri, _))| forward_policy(label, &raw, uri, endpoint, cx, issues));
    if issues.0.len() != before {
        return None;
    }
    Some(Source {
        name: Arc::from(raw.name.as_str()),
        path: raw.path,
        kind: raw.provider,
        provider: provider?,
        allow_ips: raw.allow_ips,
        expect_within: raw.expect_within,
        enforcement: if raw.enforce {
            Enforcement::Enforce
        } else {
            Enforcement::Shadow
        },
        forward: Arc::new(forward?),
        rate_limit,
    })
}

/// A source's `rate_limit`, each bad value reported under its own key.
fn rate_limit(label: &str, raw: RawRateLimit, issues: &mut Issues) -> Option<RateLimit> {
    let key = format!("{label}.rate_limit");
    match RateLimit::try_new(raw.per_second, raw.burst) {
        Ok(rate) => Some(rate),
        Err(_) => {
            if RateLimit::try_new(raw.per_second, 1).is_err() {
                issues.push(
                    format!("{key}.per_second"),
                    format!(
                        "{} is not valid (expected a number of requests per second greater than 0, e.g. 100)",
                        raw.per_second
                    ),
                );
            }
            if RateLimit::try_new(1.0, raw.burst).is_err() {
                issues.push(
                    format!("{key}.burst"),
                    format!(
                        "{} is not valid (expected a whole number of requests of at least 1, e.g. 200)",
                        raw.burst
                    ),
                );
            }
            None
        }
    }
}

fn push_provider_error(label: &str, err: ProviderConfigError, issues: &mut Issues) {
    match err {
        ProviderConfigError::NoSecrets => issues.push(
            format!("{label}.secrets"),
            "[] is empty (expected at least one secret)",
        ),
        ProviderConfigError::EmptySecret { index } => issues.push(
            format!("{label}.secrets[{index}]"),
            "the secret is empty (expected a non-empty secret)",
        ),
        ProviderConfigError::InvalidSecret { index, expected } => issues.push(
            format!("{label}.secrets[{index}]"),
            format!("the secret is invalid ({expected})"),
        ),
        ProviderConfigError::Setting { key, message } => issues.push(format!("{label}.{key}"), message),
    }
}

/// The source's `upstream`, read from its variable or file if it is given so, and parsed; with its
/// text as written (a broker client parses the URL itself). A message never shows the value.
fn upstream(
    label: &str,
    raw: &RawUpstream,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<(Uri, String)> {
    let key = format!("{label}.upstream");
    let secret = match raw {
        RawUpstream::Url(uri) => return Some((uri.clone(), uri.to_string())),
        RawUpstream::Secret(secret) => secret,
    };
    let text = match resolve(secret, env) {
        Ok(s) => String::from_utf8(s.expose().to_vec()).ok(),
        Err(message) => {
            issues.push(key, message);
            return None;
        }
    };
    let from = match secret {
        RawSecret::Env(name) => format!("environment variable {name:?}"),
        RawSecret::File(path) => format!("file {:?}", path.display()),
        RawSecret::Literal(_) => "the config".to_owned(),
    };
    let Some(text) = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
        issues.push(
            key,
            format!(
                "{from} holds no URL (expected a URL such as \"amqp://user:password@127.0.0.1:5672/%2f\")"
            ),
        );
        return None;
    };
    match parse_url(&text) {
        Ok(uri) => Some((uri, text)),
        Err(message) => {
            issues.push(key, format!("the URL in {from}: {message}"));
            None
        }
    }
}

/// `[sources.output]` keys by output: a key of another output is refused.
const OUTPUT_KEYS: &[(&str, &[&str])] = &[
    ("nats", &["subject", "create_stream"]),
    ("amqp", &["exchange", "routing_key", "declare"]),
    ("redis", &["stream", "maxlen"]),
];

/// The `[sources.output]` keys that are set.
fn output_keys_set(o: &RawOutput) -> Vec<&'static str> {
    let set = [
        ("subject", o.subject.is_some()),
        ("create_stream", o.create_stream),
        ("exchange", o.exchange.is_some()),
        ("routing_key", o.routing_key.is_some()),
        ("declare", o.declare),
        ("stream", o.stream.is_some()),
        ("maxlen", o.maxlen.is_some()),
    ];
    set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
}

/// Refuses the `[sources.output]` keys that `output` (a key of [`OUTPUT_KEYS`]) does not take.
fn foreign_output_keys(
    output_key: &str,
    output: &str,
    scheme: &str,
    raw: &RawOutput,
    issues: &mut Issues,
) -> bool {
    let own = OUTPUT_KEYS
        .iter()
        .find(|(o, _)| *o == output)
        .map_or(&[][..], |(_, keys)| *keys);
    let mut clean = true;
    for key in output_keys_set(raw) {
        if !own.contains(&key) {
            let owner = OUTPUT_KEYS
                .iter()
                .find(|(_, keys)| keys.contains(&key))
                .map_or("", |(o, _)| *o);
            issues.push(
                format!("{output_key}.{key}"),
                format!(
                    "is a key of the {owner} output, not for a {scheme}:// upstream (expected {})",
                    own.join(", ")
                ),
            );
            clean = false;
        }
    }
    clean
}

/// The source's output, from the upstream's scheme and `[sources.output]`.
fn endpoint(
    label: &str,
    raw: &RawSource,
    upstream: &Uri,
    text: &str,
    issues: &mut Issues,
) -> Option<Endpoint> {
    let output_key = format!("{label}.output");
    let missing = |key: &str, expected: &str, issues: &mut Issues| {
        issues.push(
            format!("{output_key}.{key}"),
            format!("is missing (expected {expected})"),
        );
    };
    let default_output = RawOutput::default();
    let output = raw.output.as_ref().unwrap_or(&default_output);
    match (upstream.scheme_str(), upstream.authority()) {
        (Some("http" | "https"), Some(authority)) => {
            if authority.as_str().contains('@') {
                // The HTTP client never sends a URL's user and password, and the URL is shown in the
                // summary and the logs: refuse it rather than ignore a credential and risk showing it.
                issues.push(
                    format!("{label}.upstream"),
                    format!(
                        "\"{}\" holds a user and password, which are never sent to the app (expected an \
                         http:// or https:// URL without them; use signing_secret to let the app check \
                         that a request comes from hookgate)",
                        without_credentials(upstream)
                    ),
                );
                return None;
            }
            if raw.output.is_some() {
                issues.push(
                    output_key,
                    "is only for a broker upstream (expected no [sources.output] with an http:// or https:// upstream)",
                );
                return None;
            }
            Some(Endpoint::Http(upstream.clone()))
        }
        (Some("nats"), Some(_)) => {
            if !foreign_output_keys(&output_key, "nats", "nats", output, issues) {
                return None;
            }
            let Some(subject) = &output.subject else {
                missing(
                    "subject",
                    "the subject to publish to, such as \"webhooks.stripe\", with a nats:// upstream",
                    issues,
                );
                return None;
            };
            let valid = !subject.is_empty()
                && subject.len() <= 255
                && subject.split('.').all(|token| {
                    !token.is_empty()
                        && !token.contains(['*', '>'])
                        && !token.chars().any(|c| c.is_whitespace() || c.is_control())
                });
            if !valid {
                issues.push(
                    format!("{output_key}.subject"),
                    format!("{subject:?} is not valid (expected dot-separated tokens without spaces or wildcards, such as \"webhooks.stripe\")"),
                );
                return None;
            }
            let create_stream = output
                .create_stream
                .then(|| NatsEndpoint::stream_name_for(subject));
            Some(Endpoint::Nats(NatsEndpoint::new(
                text.to_owned(),
                subject.clone(),
                create_stream,
            )))
        }
        (Some(scheme @ ("amqp" | "amqps")), Some(_)) => {
            if !foreign_output_keys(&output_key, "amqp", scheme, output, issues) {
                return None;
            }
            let Some(exchange) = &output.exchange else {
                missing(
                    "exchange",
                    "the exchange to publish to, such as \"webhooks\", with an amqp:// upstream",
                    issues,
                );
                return None;
            };
            let amqp_name = |s: &str| {
                s.len() <= 255
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            };
            let mut valid = true;
            if exchange.is_empty() || !amqp_name(exchange) {
                issues.push(
                    format!("{output_key}.exchange"),
                    format!("{exchange:?} is not valid (expected 1 to 255 of a-z, A-Z, 0-9, '-', '_', '.' and ':', such as \"webhooks\")"),
                );
                valid = false;
            }
            let routing_key = output.routing_key.clone().unwrap_or_else(|| raw.name.clone());
            if routing_key.len() > 255 {
                issues.push(
                    format!("{output_key}.routing_key"),
                    "is longer than 255 bytes (expected a routing key such as \"stripe\")",
                );
                valid = false;
            }
            if let Err(message) = AmqpEndpoint::check_url(text) {
                issues.push(
                    format!("{label}.upstream"),
                    format!(
                        "\"{}\" is not a valid AMQP URL: {message} (expected e.g. \"amqp://user:password@127.0.0.1:5672/%2f\")",
                        without_credentials(upstream)
                    ),
                );
                valid = false;
            }
            valid.then(|| {
                Endpoint::Amqp(AmqpEndpoint::new(
                    text.to_owned(),
                    exchange.clone(),
                    routing_key,
                    output.declare,
                ))
            })
        }
        (Some(scheme @ ("redis" | "rediss")), Some(_)) => {
            if !foreign_output_keys(&output_key, "redis", scheme, output, issues) {
                return None;
            }
            let Some(stream) = &output.stream else {
                missing(
                    "stream",
                    "the stream to add entries to, such as \"webhooks:stripe\", with a redis:// upstream",
                    issues,
                );
                return None;
            };
            let mut valid = true;
            if stream.is_empty() {
                issues.push(
                    format!("{output_key}.stream"),
                    "\"\" is not valid (expected a stream key such as \"webhooks:stripe\")",
                );
                valid = false;
            }
            if let Err(message) = RedisEndpoint::check_url(text) {
                issues.push(
                    format!("{label}.upstream"),
                    format!(
                        "\"{}\" is not a valid Redis URL: {message} (expected e.g. \"redis://127.0.0.1:6379/0\")",
                        without_credentials(upstream)
                    ),
                );
                valid = false;
            }
            valid.then(|| Endpoint::Redis(RedisEndpoint::new(text.to_owned(), stream.clone(), output.maxlen)))
        }
        _ => {
            issues.push(
                format!("{label}.upstream"),
                format!(
                    "\"{}\" is not valid (expected an http:// or https:// URL such as \"http://127.0.0.1:3000/hooks\", \
                     or a broker: nats://, amqp:// or amqps://, redis:// or rediss://)",
                    without_credentials(upstream)
                ),
            );
            None
        }
    }
}

/// `uri` without the user and password it may hold, for messages.
pub(super) fn without_credentials(uri: &Uri) -> String {
    match uri.authority() {
        Some(authority) if authority.as_str().contains('@') => {
            let host = authority.as_str().rsplit_once('@').map_or("", |(_, host)| host);
            let mut parts = uri.clone().into_parts();
            parts.authority = host.parse().ok();
            Uri::from_parts(parts).map_or_else(|_| "[redacted]".to_owned(), |u| u.to_string())
        }
        _ => uri.to_string(),
    }
}

fn forward_policy(
    label: &str,
    raw: &RawSource,
    upstream: &Uri,
    endpoint: Endpoint,
    cx: SourceContext<'_>,
    issues: &mut Issues,
) -> Option<Target> {
    let (defaults, default_signer, env) = (cx.defaults, cx.default_signer, cx.env);
    let o = &raw.forward;
    let before = issues.0.len();
    // Problems of the [forward] defaults are reported once, by `validate_forward_defaults`; here only
    // the source's own overrides are checked.
    let key = |name: &str| format!("{label}.forward.{name}");
    let timeout = o.timeout.unwrap_or(defaults.timeout);
    if o.timeout.is_some() {
        nonzero_duration(&key("timeout"), timeout, issues);
    }
    let max_age = o.max_age.unwrap_or(defaults.max_age);
    if o.max_age.is_some() {
        positive_horizon(&key("max_age"), max_age, issues);
    }
    let max_attempts = o.max_attempts.or(defaults.max_attempts);
    if o.max_attempts == Some(0) {
        issues.push(key("max_attempts"), "0 is not valid (expected at least 1)");
    }
    let concurrency = o.concurrency.unwrap_or(defaults.concurrency);
    if o.concurrency == Some(0) {
        issues.push(key("concurrency"), "0 is not valid (expected at least 1)");
    }
    let initial = o.initial_backoff.unwrap_or(defaults.initial_backoff);
    let max = o.max_backoff.unwrap_or(defaults.max_backoff);
    let backoff = Backoff::try_new(initial, max);
    if let Err(e) = &backoff {
        if o.initial_backoff.is_some() || o.max_backoff.is_some() {
            let which = if o.initial_backoff.is_some() {
                "initial_backoff"
            } else {
                "max_backoff"
            };
            issues.push(key(which), backoff_message(e));
        }
    }
    let defaults_valid =
        !timeout.is_zero() && !max_age.is_zero() && max_attempts != Some(0) && concurrency > 0;
    let signer = match &o.signing_secret {
        Some(raw) => signer(raw, &format!("{label}.forward.signing_secret"), env, issues),
        None => default_signer.clone(),
    };
    let tls = cx.client_tls.source(label, upstream, o, defaults, issues);
    if issues.0.len() != before || !defaults_valid {
        return None;
    }
    Some(Target {
        name: Arc::from(raw.name.as_str()),
        endpoint,
        tls: tls.ok()?,
        timeout,
        retry: RetryPolicy {
            backoff: backoff.ok()?,
            max_age,
            max_attempts,
        },
        concurrency: concurrency as usize,
        signer,
    })
}

/// A [`BackoffError`] as a config message: the value and what was expected.
fn backoff_message(err: &BackoffError) -> String {
    match err {
        BackoffError::ZeroInitial => {
            "\"0s\" is not valid (expected a duration greater than zero, e.g. \"1s\")".to_owned()
        }
        BackoffError::InitialAboveMax { initial, max } => format!(
            "initial_backoff \"{initial}\" is greater than max_backoff \"{max}\" \
             (expected initial_backoff <= max_backoff)"
        ),
    }
}

/// Checks `[forward]`, the defaults of every source.
fn validate_forward_defaults(raw: &RawForward, issues: &mut Issues) {
    nonzero_duration("forward.timeout", raw.timeout, issues);
    positive_horizon("forward.max_age", raw.max_age, issues);
    if raw.max_attempts == Some(0) {
        issues.push("forward.max_attempts", "0 is not valid (expected at least 1)");
    }
    if raw.concurrency == 0 {
        issues.push("forward.concurrency", "0 is not valid (expected at least 1)");
    }
    if let Err(e) = Backoff::try_new(raw.initial_backoff, raw.max_backoff) {
        issues.push("forward.initial_backoff", backoff_message(&e));
    }
}

/// The retry horizon must be above zero: a zero horizon would dead-letter an event at its first
/// failure, which is `max_attempts = 1`, said plainly.
fn positive_horizon(key: &str, value: Duration, issues: &mut Issues) {
    if value.is_zero() {
        issues.push(
            key,
            "\"0s\" is not valid (expected a retry horizon greater than zero, e.g. \"72h\"; \
             to give up after one attempt, set max_attempts = 1)",
        );
    }
}

fn signer(
    raw: &RawSecret,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<StandardSigner> {
    let secret = match resolve(raw, env) {
        Ok(s) => s,
        Err(message) => {
            issues.push(key, message);
            return None;
        }
    };
    match StandardSigner::try_new(&secret) {
        Ok(s) => Some(s),
        Err(ProviderConfigError::InvalidSecret { expected, .. }) => {
            issues.push(key, format!("the secret is invalid ({expected})"));
            None
        }
        Err(e) => {
            issues.push(key, e.to_string());
            None
        }
    }
}

/// Resolves one `secrets` entry. Messages name the variable or file, never the secret.
fn resolve(raw: &RawSecret, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, String> {
    match raw {
        RawSecret::Literal(s) => Ok(Secret::new(s.as_bytes())),
        RawSecret::Env(name) => env(name)
            .map(Secret::new)
            .ok_or_else(|| format!("environment variable {name:?} is not set")),
        RawSecret::File(path) => read_secret_file(path),
    }
}

/// The largest secret file read: far above any key (an Ed25519 or P-256 public key in PEM is a few
/// hundred bytes), so that `{ file = "/dev/zero" }` or a mistaken path to a log fails at once instead
/// of filling memory.
const MAX_SECRET_FILE: u64 = 64 * 1024;

fn read_secret_file(path: &Path) -> Result<Secret, String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| format!("cannot read file {:?}: {e}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "file {:?} is larger than {MAX_SECRET_FILE} bytes (expected a file holding only the secret)",
            path.display()
        ));
    }
    // Files written by `echo` or editors end in a newline that is not part of the secret.
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(Secret::new(bytes))
}

/// Checks that names and paths are unique, over every `[[sources]]` entry as written (whatever else
/// is wrong with it, even if it did not parse), so that a duplicate is reported along with the
/// sources' other problems.
fn check_unique(table: &toml::Table, issues: &mut Issues) {
    let Some(array) = table.get("sources").and_then(|v| v.as_array()) else {
        return;
    };
    let mut names = HashMap::new();
    let mut paths = HashMap::new();
    for entry in array {
        let Some(name) = entry.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        if valid_name(name) && names.insert(name, ()).is_some() {
            issues.push(
                format!("sources.{name}"),
                format!("name {name:?} is used by more than one source (expected unique names)"),
            );
        }
        let Some(path) = entry.get("path").and_then(|p| p.as_str()) else {
            continue;
        };
        if let Some(other) = paths.insert(path, name) {
            issues.push(
                format!("sources.{name}.path"),
                format!("{path:?} is also the path of source {other:?} (expected unique paths)"),
            );
        }
    }
}
