//! A shared secret in a header or a query parameter: `provider = "token"` and a `[sources.token]` table.
//!
//! ```toml
//! [sources.token]
//! header = "X-Webhook-Token"   # the secret is this header's value
//! # or
//! query = "token"              # the secret is this query parameter's value
//! ```
//!
//! Scheme (the "secret token" of many in-house senders, and of GitLab's `X-Gitlab-Token`):
//!
//! - The sender sends one of the configured secrets itself, unchanged: as the value of the named header,
//!   or as the value of the named query parameter (percent-decoded, as `application/x-www-form-urlencoded`
//!   decodes it). Exactly one of `header` and `query` is set.
//! - Nothing is signed and there is no timestamp: a token proves who sent the request, not that the body
//!   is unchanged, and there is no replay window (deduplication relies on the event id). Prefer a
//!   signature scheme where the sender offers one, and HTTPS either way.
//! - The presented token is compared with every configured secret (rotation) in constant time: both are
//!   hashed with SHA-256 and the digests compared with `subtle`, so neither the content nor the length of
//!   a secret leaks through timing.
//! - The token is removed from the request before it is stored or forwarded
//!   ([`Provider::strip_credentials`]), whether it verifies or not: the header, or the query parameter
//!   (other query parameters are kept as received). The app, the store and the admin API never see it;
//!   the app learns that the request was verified from `X-Hookgate-Verified`.
//! - The event id is the `id_header` value when the source sets `id_header` and the request has it, else
//!   [`body_digest_id`].
//!
//! Errors: the header or parameter is absent or empty → `MissingToken`; no secret equals it →
//! `TokenMismatch`.
//!
//! The helpers at the bottom ([`Digests`], [`IdHeader`], [`header_safe`]) are shared with
//! [`bearer`](super::bearer) and [`basic`](super::basic), which differ only in where the secret is.

use std::{fmt, time::SystemTime};

use http::{uri::PathAndQuery, HeaderName, HeaderValue, Uri};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    body_digest_id, hmac::intern, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `token`.
pub(crate) const LISTING: Listing = Listing {
    name: "token",
    scheme: "the secret itself, in the header or query parameter `[sources.token]` names",
    window: "none",
    event_id: "`id_header`, if set",
    docs: "",
    requires: &["[sources.token]"],
};

/// The config key of the table, for errors.
const KEY_TABLE: &str = "token";
/// The config key of the header name.
const KEY_HEADER: &str = "token.header";
/// The config key of the query parameter name.
const KEY_QUERY: &str = "token.query";
/// The config key of the event id header.
const KEY_ID_HEADER: &str = "id_header";

/// What `token` errors say is expected.
const EXPECTED_ONE: &str = "expected exactly one of header = \"X-Webhook-Token\" or query = \"token\"";

/// Where `provider = "token"` finds the secret: the `[sources.token]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLocation {
    /// The request header whose value is the secret, e.g. `"X-Webhook-Token"`. Default: none; exactly
    /// one of `header` and `query` is required.
    pub header: Option<String>,
    /// The query parameter whose value is the secret, e.g. `"token"`; it is removed from the request
    /// target before the request is stored or forwarded. Default: none; exactly one of `header` and
    /// `query` is required.
    pub query: Option<String>,
}

/// Where a [`Token`] source's secret travels.
enum Place {
    /// In this header.
    Header(HeaderName),
    /// In this query parameter (its decoded name); `label` names it in errors.
    Query { name: String, label: &'static str },
}

/// Verifies a shared secret in the header or query parameter that `[sources.token]` names.
pub(crate) struct Token {
    place: Place,
    digests: Digests,
    /// What `sign` sends: the first secret.
    first: Secret,
    id: IdHeader,
}

impl Token {
    /// Builds the provider; `[sources.token]` must name exactly one place, and a header-borne secret
    /// must be sendable in a header.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?;
        let place = place(settings.token)?;
        if matches!(place, Place::Header(_)) {
            for (index, secret) in secrets.iter().enumerate() {
                header_safe(secret, index)?;
            }
        }
        Ok(Self {
            place,
            digests: Digests::new(secrets.iter().map(Secret::expose)),
            first: secrets[0].clone(),
            id: IdHeader::try_new(settings.id_header)?,
        })
    }
}

/// The place `[sources.token]` names, checked.
fn place(location: Option<&TokenLocation>) -> Result<Place, ProviderConfigError> {
    let setting = |key, message: String| ProviderConfigError::Setting { key, message };
    let Some(location) = location else {
        return Err(setting(
            KEY_TABLE,
            format!("is required with provider = \"token\" ([sources.token] {EXPECTED_ONE})"),
        ));
    };
    match (&location.header, &location.query) {
        (Some(header), None) => HeaderName::from_bytes(header.as_bytes())
            .map(Place::Header)
            .map_err(|_| {
                setting(
                    KEY_HEADER,
                    format!("{header:?} is not a valid header name (expected e.g. \"X-Webhook-Token\")"),
                )
            }),
        (None, Some(query)) if query.is_empty() => Err(setting(
            KEY_QUERY,
            "\"\" is not valid (expected a query parameter name such as \"token\")".to_owned(),
        )),
        (None, Some(query)) => Ok(Place::Query {
            name: query.clone(),
            label: intern(&format!("query parameter {query}")),
        }),
        (Some(_), Some(_)) => Err(setting(
            KEY_TABLE,
            format!("has both header and query ({EXPECTED_ONE})"),
        )),
        (None, None) => Err(setting(
            KEY_TABLE,
            format!("has neither header nor query ({EXPECTED_ONE})"),
        )),
    }
}

/// The first value of query parameter `name` in `query`, if present and not empty.
fn query_value(query: &str, name: &str) -> Option<Vec<u8>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned().into_bytes())
        .filter(|value| !value.is_empty())
}

/// Whether one `key=value` piece of a raw query string is parameter `name` (compared decoded, as
/// [`query_value`] compares it).
fn is_param(piece: &str, name: &str) -> bool {
    let key = piece.split_once('=').map_or(piece, |(key, _)| key);
    form_urlencoded::parse(key.as_bytes())
        .next()
        .is_some_and(|(key, _)| key == name)
}

impl Provider for Token {
    fn name(&self) -> &'static str {
        "token"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let matched = match &self.place {
            Place::Header(name) => {
                let value = req
                    .headers
                    .get(name)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| VerifyError::MissingToken(intern(name.as_str())))?;
                self.digests.matches(value.as_bytes())
            }
            Place::Query { name, label } => {
                let value = req
                    .uri
                    .query()
                    .and_then(|q| query_value(q, name))
                    .ok_or(VerifyError::MissingToken(label))?;
                self.digests.matches(&value)
            }
        };
        if !matched {
            return Err(VerifyError::TokenMismatch);
        }
        Ok(EventMeta::new(self.id.event_id(req)))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let mut headers = Vec::new();
        if let Place::Header(name) = &self.place {
            let value = HeaderValue::from_bytes(self.first.expose())
                .map_err(|_| SignError::Unsignable("the first secret is not a valid header value"))?;
            headers.push((name.clone(), value));
        }
        headers.extend(self.id.sign(req.event_id));
        Ok(headers)
    }

    fn sign_target(&self, path: &str) -> Result<String, SignError> {
        Ok(match &self.place {
            Place::Header(_) => path.to_owned(),
            Place::Query { name, .. } => {
                let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
                let value: String = form_urlencoded::byte_serialize(self.first.expose()).collect();
                format!("{path}?{name}={value}")
            }
        })
    }

    fn strip_credentials(&self, head: &mut http::request::Parts) {
        match &self.place {
            Place::Header(name) => {
                head.headers.remove(name);
            }
            Place::Query { name, .. } => {
                if let Some(uri) = without_param(&head.uri, name) {
                    head.uri = uri;
                }
            }
        }
    }
}

/// `target` without any occurrence of query parameter `name` (compared decoded, as [`query_value`]
/// compares it), the other parameters kept byte for byte; `None` when it has none.
fn without_param(target: &Uri, name: &str) -> Option<Uri> {
    let query = target.query()?;
    if !query.split('&').any(|piece| is_param(piece, name)) {
        return None;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|piece| !piece.is_empty() && !is_param(piece, name))
        .collect();
    let path = target.path();
    let mut parts = target.clone().into_parts();
    // A subset of a valid query is valid; should it not parse, the whole query goes rather than the
    // token staying.
    let path_and_query = (!kept.is_empty())
        .then(|| format!("{path}?{}", kept.join("&")).parse::<PathAndQuery>().ok())
        .flatten()
        .or_else(|| path.parse().ok());
    parts.path_and_query = path_and_query;
    Some(Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/")))
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Token");
        match &self.place {
            Place::Header(name) => d.field("header", name),
            Place::Query { name, .. } => d.field("query", name),
        };
        d.field("secrets", &format_args!("[redacted; {}]", self.digests.len()))
            .field("id_header", &self.id)
            .finish()
    }
}

// === shared by the token schemes ===

/// SHA-256 digests of the configured secrets. Only the digests are compared, so that the comparison
/// takes the same time whatever the presented token's length and wherever it differs.
pub(super) struct Digests(Vec<[u8; 32]>);

impl Digests {
    pub(super) fn new<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> Self {
        Self(secrets.into_iter().map(|s| Sha256::digest(s).into()).collect())
    }

    /// Whether `given` equals any secret. Every digest is compared, in constant time, so the time
    /// taken does not tell which secret matched either.
    pub(super) fn matches(&self, given: &[u8]) -> bool {
        let given: [u8; 32] = Sha256::digest(given).into();
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&given))
            .into()
    }

    /// How many secrets there are.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Where a token scheme's event id is: the `id_header` header, else the body digest.
#[derive(Clone)]
pub(super) struct IdHeader(Option<HeaderName>);

impl IdHeader {
    /// Checks `id_header`: a valid header name, if set.
    pub(super) fn try_new(id_header: Option<&str>) -> Result<Self, ProviderConfigError> {
        id_header
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| ProviderConfigError::Setting {
                    key: KEY_ID_HEADER,
                    message: format!("{name:?} is not a valid header name (expected e.g. \"X-Request-Id\")"),
                })
            })
            .transpose()
            .map(Self)
    }

    /// The `id_header` value when set and present (visible ASCII, not empty), else [`body_digest_id`].
    pub(super) fn event_id(&self, req: &WebhookRequest<'_>) -> String {
        self.0
            .as_ref()
            .and_then(|name| req.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map_or_else(|| body_digest_id(req.body), str::to_owned)
    }

    /// The header `sign` adds for `event_id`: none without `id_header`.
    pub(super) fn sign(&self, event_id: &str) -> Option<(HeaderName, HeaderValue)> {
        let name = self.0.clone()?;
        Some((name, HeaderValue::from_str(event_id).ok()?))
    }
}

impl fmt::Debug for IdHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(name) => write!(f, "{:?}", name.as_str()),
            None => f.write_str("None"),
        }
    }
}

/// The credentials of an `Authorization` value of scheme `scheme` (lowercase, with its trailing
/// space), trimmed; `None` for another scheme or empty credentials.
pub(super) fn credentials<'a>(value: &'a HeaderValue, scheme: &[u8]) -> Option<&'a [u8]> {
    let value = value.as_bytes();
    let given = value.get(..scheme.len())?;
    if !given.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let credentials = value[scheme.len()..].trim_ascii();
    (!credentials.is_empty()).then_some(credentials)
}

/// Checks that a secret sent in a header can be: header values have no control characters, and HTTP
/// strips the whitespace around them, so a secret with either could never match.
pub(super) fn header_safe(secret: &Secret, index: usize) -> Result<(), ProviderConfigError> {
    let bytes = secret.expose();
    let padded = bytes.first().is_some_and(u8::is_ascii_whitespace)
        || bytes.last().is_some_and(u8::is_ascii_whitespace);
    if padded || HeaderValue::from_bytes(bytes).is_err() {
        return Err(ProviderConfigError::InvalidSecret {
            index,
            expected: "expected no control characters and no leading or trailing whitespace: \
                       the secret travels in a header",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
