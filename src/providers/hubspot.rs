//! HubSpot: the v3 request signature, a timestamped HMAC of the method, URL and body, base64-encoded, in
//! `X-HubSpot-Signature-v3`.
//!
//! Scheme, as documented in [Validating requests from HubSpot][docs] ("Validate the v3 request
//! signature") and implemented by `Signature` in HubSpot's SDKs (`src/utils/signature.ts` in
//! hubspot-api-nodejs, `hubspot/utils/signature.py` in hubspot-api-python):
//!
//! - `X-HubSpot-Request-Timestamp: <unix milliseconds>` and `X-HubSpot-Signature-v3: <base64>`, the
//!   standard, padded base64 of the HMAC-SHA256 of `method + uri + body + timestamp`: the request method
//!   (`POST`, `GET`, ...), the full URL, the raw body bytes (empty for a `GET`) and the timestamp header's
//!   value as sent, with no separators.
//! - The key is the app's client secret, used whole as bytes. Any configured secret may match (rotation).
//! - The URL is the configured `public_url` (required; never rebuilt from the request's host or path,
//!   which a proxy may have rewritten). When `public_url` has no query but the request does, the request's
//!   query is appended as received: HubSpot signs the full URL, and workflow and CRM card requests carry
//!   per-request query parameters. As the docs require, these percent-encoded characters in the URL are
//!   decoded before signing (hex digits in either case), and no others: `%3A` `:`, `%2F` `/`, `%3F` `?`,
//!   `%40` `@`, `%21` `!`, `%24` `$`, `%27` `'`, `%28` `(`, `%29` `)`, `%2A` `*`, `%2C` `,`, `%3B` `;`.
//! - The signature is checked first, then the timestamp, in **milliseconds**: a request more than the
//!   tolerance (default 5 minutes, `tolerance` in the source overrides it) older than now is rejected,
//!   as in the docs ("reject the request if the timestamp is older than 5 minutes") and both SDKs; so is
//!   one more than the tolerance ahead of now, which they accept (see [`check_timestamp_millis`]).
//! - The event id is [`body_digest_id`]: a request carries a batch of events (each with its own
//!   `eventId`) and HubSpot documents no per-request id.
//!
//! Errors: no signature header → `MissingSignature`; no timestamp header → `MissingHeader`; a signature
//! that is not base64 of exactly 32 bytes → `MalformedSignature`; a timestamp that is not an integer →
//! `MalformedTimestamp`.
//!
//! [docs]: https://developers.hubspot.com/docs/api/webhooks/validating-requests

use std::{borrow::Cow, fmt, time::Duration, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use http::{HeaderName, HeaderValue, Uri};

use super::{
    body_digest_id, check_timestamp_millis, header, mac, unix_millis, EventMeta, Listing, Provider,
    ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `hubspot`.
pub(crate) const LISTING: Listing = Listing {
    name: "hubspot",
    scheme: "`X-HubSpot-Signature-v3` over method + `public_url` + body + timestamp",
    window: "5 min",
    event_id: "the body's SHA-256",
    docs: "https://developers.hubspot.com/docs/api/webhooks/validating-requests",
    requires: &["public_url"],
};

/// The v3 signature header.
const SIGNATURE: &str = "x-hubspot-signature-v3";
/// The timestamp header (Unix milliseconds).
const TIMESTAMP: &str = "x-hubspot-request-timestamp";
/// HubSpot's documented window (the past; this gateway bounds the future with it too).
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// The percent-encoded characters HubSpot decodes in the URL before signing (upper-case hex).
const DECODED: [(&[u8; 2], u8); 12] = [
    (b"3A", b':'),
    (b"2F", b'/'),
    (b"3F", b'?'),
    (b"40", b'@'),
    (b"21", b'!'),
    (b"24", b'$'),
    (b"27", b'\''),
    (b"28", b'('),
    (b"29", b')'),
    (b"2A", b'*'),
    (b"2C", b','),
    (b"3B", b';'),
];

/// Verifies `X-HubSpot-Signature-v3` against any of the client secrets.
pub(crate) struct HubSpot {
    secrets: Vec<Secret>,
    public_url: String,
    /// Whether `public_url` has a query (then the request's query is not appended).
    has_query: bool,
    tolerance: Duration,
}

impl HubSpot {
    /// Builds the provider; it needs the URL HubSpot calls (`public_url`). Client secrets are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        let public_url = settings
            .public_url
            .ok_or_else(|| ProviderConfigError::Setting {
                key: "public_url",
                message: "is required with provider = \"hubspot\" (expected the URL as the sender signs it, \
                          e.g. \"https://example.com/hooks/hubspot\")"
                    .to_owned(),
            })?
            .to_owned();
        Ok(Self {
            has_query: public_url.contains('?'),
            public_url,
            secrets,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }

    /// The URL as HubSpot signs it: `public_url` (with the request's query when it has none), with the
    /// documented characters decoded.
    fn signed_url(&self, uri: &Uri) -> Vec<u8> {
        let url = match uri.query() {
            Some(query) if !self.has_query => Cow::Owned(format!("{}?{query}", self.public_url)),
            _ => Cow::Borrowed(self.public_url.as_str()),
        };
        decode_reserved(url.as_bytes())
    }

    /// The HMAC of the signed content under `secret`, not yet finalized.
    fn mac(&self, secret: &Secret, method: &str, url: &[u8], body: &[u8], ts: &str) -> Hmac<Sha256> {
        mac::<Hmac<Sha256>>(secret.expose(), &[method.as_bytes(), url, body, ts.as_bytes()])
    }
}

/// `url` with the percent-encoded characters of [`DECODED`] decoded, in one left-to-right pass (so a
/// decoded `%` never starts a new escape).
fn decode_reserved(url: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(url.len());
    let mut i = 0;
    while i < url.len() {
        if url[i] == b'%' {
            if let Some(hex_digits) = url.get(i + 1..i + 3) {
                let upper = [
                    hex_digits[0].to_ascii_uppercase(),
                    hex_digits[1].to_ascii_uppercase(),
                ];
                if let Some((_, decoded)) = DECODED.iter().find(|(code, _)| **code == upper) {
                    out.push(*decoded);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(url[i]);
        i += 1;
    }
    out
}

/// Decodes the base64 signature into a tag.
fn parse_signature(value: &HeaderValue) -> Result<[u8; TAG_LEN], VerifyError> {
    let malformed = VerifyError::MalformedSignature(SIGNATURE);
    let bytes = BASE64.decode(value.as_bytes()).map_err(|_| malformed.clone())?;
    <[u8; TAG_LEN]>::try_from(bytes).map_err(|_| malformed)
}

impl Provider for HubSpot {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let signature = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let signature = parse_signature(signature)?;
        let ts_text = req
            .headers
            .get(TIMESTAMP)
            .ok_or(VerifyError::MissingHeader(TIMESTAMP))?
            .to_str()
            .map_err(|_| VerifyError::MalformedTimestamp(TIMESTAMP))?;
        let timestamp_ms = ts_text
            .parse::<i64>()
            .map_err(|_| VerifyError::MalformedTimestamp(TIMESTAMP))?;

        let url = self.signed_url(req.uri);
        let method = req.method.as_str();
        let matched = self.secrets.iter().any(|secret| {
            self.mac(secret, method, &url, req.body, ts_text)
                .verify_slice(&signature)
                .is_ok()
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        check_timestamp_millis(timestamp_ms, now, self.tolerance)?;

        Ok(EventMeta::new(body_digest_id(req.body)))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let ts = unix_millis(now).to_string();
        let url = self.signed_url(req.uri);
        let tag = self
            .mac(&self.secrets[0], req.method.as_str(), &url, req.body, &ts)
            .finalize()
            .into_bytes();
        Ok(vec![header(SIGNATURE, BASE64.encode(tag)), header(TIMESTAMP, ts)])
    }
}

impl fmt::Debug for HubSpot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpot")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("public_url", &self.public_url)
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
