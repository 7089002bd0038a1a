//! Twilio: an HMAC-SHA1 of the URL and the form parameters, base64-encoded, in `X-Twilio-Signature`.
//!
//! Scheme, as documented in [Webhooks security][docs] and implemented by `RequestValidator` in
//! Twilio's SDKs (`twilio/request_validator.py` in twilio-python):
//!
//! - `X-Twilio-Signature: <base64>`, the standard, padded base64 of the HMAC-SHA1 of the signed string,
//!   keyed with the account's auth token used whole as bytes. Any configured token may match (primary and
//!   secondary auth tokens during a rotation).
//! - The signed string starts with the full URL Twilio requested. That URL is the configured `public_url`
//!   (required; never rebuilt from the request's host or path, which a proxy may have rewritten). When
//!   `public_url` has no query but the request does, the request's query is appended as received (`?` and
//!   the raw query): Twilio signs the URL with its query, and for JSON bodies it appends a per-request
//!   `bodySHA256` parameter, so the query cannot be fixed in configuration.
//! - Form requests: the body is decoded as `application/x-www-form-urlencoded` (`+` and percent escapes,
//!   invalid UTF-8 replaced), the parameters are sorted by name and, for a repeated name, by value (byte
//!   order, which is Unicode code point order, as the SDKs sort), and each name and value is appended with no
//!   delimiters. A value repeated under the same name is appended once: twilio-python's
//!   `compute_signature` walks `sorted(set(values))` for each name (since 7.14, "support duplicated query
//!   param values"), so `Digits=1234&Digits=1234` signs as `Digits1234`. An empty body (a `GET`) appends
//!   nothing.
//! - JSON requests: when the URL's query has a `bodySHA256` parameter, the signed string is the URL alone
//!   and the hex SHA-256 of the raw body must equal that parameter (a mismatch is `SignatureMismatch`).
//! - As the SDK validators do, the URL is tried both without its port and with it (the scheme's default
//!   port, `:443` for `https` and `:80` otherwise, when the URL has none), since Twilio is inconsistent
//!   about including it.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the `I-Twilio-Idempotency-Token` header (stable across Twilio's retries), or
//!   [`body_digest_id`] when it is absent.
//!
//! Errors: no signature header → `MissingSignature`; a value that is not base64 of exactly 20 bytes →
//! `MalformedSignature`.
//!
//! [docs]: https://www.twilio.com/docs/usage/webhooks/webhooks-security

use std::{borrow::Cow, fmt, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use http::{HeaderName, HeaderValue, Uri};

use super::{
    body_digest_id, header, mac, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `twilio`.
pub(crate) const LISTING: Listing = Listing {
    name: "twilio",
    scheme: "`X-Twilio-Signature: <base64 HMAC-SHA1(public_url + sorted form)>`; JSON via `bodySHA256`",
    window: "none",
    event_id: "`I-Twilio-Idempotency-Token`",
    docs: "https://www.twilio.com/docs/usage/webhooks/webhooks-security",
    requires: &["public_url"],
};

/// The signature header.
const SIGNATURE: &str = "x-twilio-signature";
/// The idempotency token, used as the event id.
const IDEMPOTENCY_TOKEN: &str = "i-twilio-idempotency-token";
/// The query parameter carrying the hex SHA-256 of a JSON body.
const BODY_SHA256: &str = "bodySHA256";
/// The length of an HMAC-SHA1 tag.
const TAG_LEN: usize = 20;

/// Verifies `X-Twilio-Signature` against any of the auth tokens.
pub(crate) struct Twilio {
    secrets: Vec<Secret>,
    /// `public_url` as configured, for `sign`.
    public_url: String,
    /// `public_url` without its port, then with its port (the scheme's default when it has none).
    variants: Vec<String>,
    /// Whether `public_url` has a query (then the request's query is not appended).
    has_query: bool,
}

impl Twilio {
    /// Builds the provider; it needs the webhook URL (`public_url`). Auth tokens are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        let public_url = settings
            .public_url
            .ok_or_else(|| ProviderConfigError::Setting {
                key: "public_url",
                message: "is required with provider = \"twilio\" (expected the URL as the sender signs it, \
                          e.g. \"https://example.com/hooks/twilio\")"
                    .to_owned(),
            })?
            .to_owned();
        let (without_port, with_port) = port_variants(&public_url);
        let mut variants = vec![without_port];
        if with_port != variants[0] {
            variants.push(with_port);
        }
        Ok(Self {
            has_query: public_url.contains('?'),
            public_url,
            variants,
            secrets,
        })
    }

    /// `url`, followed by the request's query when `public_url` has none.
    fn signed_url<'u>(&self, url: &'u str, uri: &Uri) -> Cow<'u, str> {
        match uri.query() {
            Some(query) if !self.has_query => Cow::Owned(format!("{url}?{query}")),
            _ => Cow::Borrowed(url),
        }
    }
}

/// `url` without its port, and `url` with its port (the scheme's default when it has none), as the SDKs'
/// `remove_port` and `add_port` build them.
fn port_variants(url: &str) -> (String, String) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), url.to_owned());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rfind(':') {
        Some(i)
            if !authority[i + 1..].is_empty()
                && authority[i + 1..].bytes().all(|b| b.is_ascii_digit())
                && !authority[i..].contains(']') =>
        {
            &authority[..i]
        }
        _ => authority,
    };
    let without = format!("{scheme}://{host}{tail}");
    let with = if host.len() == authority.len() {
        let port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        format!("{scheme}://{host}:{port}{tail}")
    } else {
        url.to_owned()
    };
    (without, with)
}

/// The first `bodySHA256` value in `url`'s query, if any.
fn body_sha256(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == BODY_SHA256)
        .map(|(_, value)| value.into_owned())
}

/// The form parameters of `body`, sorted by name, then value, with a value repeated under one name kept
/// once, and concatenated as `name value ...` (twilio-python: `sorted(set(params))`, then
/// `sorted(set(values))` for each name).
fn sorted_params(body: &[u8]) -> Vec<u8> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    params.dedup();
    let mut out = Vec::with_capacity(body.len());
    for (name, value) in &params {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// What follows the URL in the signed string, and whether the body matches `bodySHA256` when the URL
/// carries one.
fn signed_rest(url: &str, body: &[u8]) -> (Vec<u8>, bool) {
    match body_sha256(url) {
        Some(expected) => {
            let matches = hex::decode(expected)
                .is_ok_and(|expected| expected.as_slice() == Sha256::digest(body).as_slice());
            (Vec::new(), matches)
        }
        None => (sorted_params(body), true),
    }
}

/// Decodes the base64 signature into a tag.
fn parse_signature(value: &HeaderValue) -> Result<[u8; TAG_LEN], VerifyError> {
    let malformed = VerifyError::MalformedSignature(SIGNATURE);
    let bytes = BASE64.decode(value.as_bytes()).map_err(|_| malformed.clone())?;
    <[u8; TAG_LEN]>::try_from(bytes).map_err(|_| malformed)
}

impl Provider for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let signature = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let signature = parse_signature(signature)?;

        let urls: Vec<Cow<'_, str>> = self
            .variants
            .iter()
            .map(|url| self.signed_url(url, req.uri))
            .collect();
        // The variants differ only in the port, so they share the query and its bodySHA256.
        let (rest, body_matches) = signed_rest(&urls[0], req.body);
        let matched = self.secrets.iter().any(|secret| {
            urls.iter().any(|url| {
                mac::<Hmac<Sha1>>(secret.expose(), &[url.as_bytes(), &rest])
                    .verify_slice(&signature)
                    .is_ok()
            })
        });
        if !matched || !body_matches {
            return Err(VerifyError::SignatureMismatch);
        }

        let event_id = req
            .headers
            .get(IDEMPOTENCY_TOKEN)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map_or_else(|| body_digest_id(req.body), str::to_owned);
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let url = self.signed_url(&self.public_url, req.uri);
        let (rest, body_matches) = signed_rest(&url, req.body);
        if !body_matches {
            return Err(SignError::Unsignable(
                "the URL's bodySHA256 parameter is not the body's SHA-256",
            ));
        }
        let tag = mac::<Hmac<Sha1>>(self.secrets[0].expose(), &[url.as_bytes(), &rest])
            .finalize()
            .into_bytes();
        Ok(vec![
            header(SIGNATURE, BASE64.encode(tag)),
            header(IDEMPOTENCY_TOKEN, req.event_id),
        ])
    }
}

impl fmt::Debug for Twilio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Twilio")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("public_url", &self.public_url)
            .finish()
    }
}

#[cfg(test)]
mod tests;
