//! Slack: a timestamped HMAC, hex-encoded, in `X-Slack-Signature`; the Events API's `url_verification`
//! check is answered by the gateway.
//!
//! Scheme, as documented in [Verifying requests from Slack][docs]:
//!
//! - `X-Slack-Request-Timestamp: <unix seconds>` and `X-Slack-Signature: v0=<hex>`, where `<hex>` is the
//!   lowercase hex HMAC-SHA256 of `"v0:{timestamp}:{body}"`: the version `v0`, a colon, the timestamp
//!   header's value as sent, a colon and the raw body bytes (JSON for the Events API, form-encoded for
//!   slash commands and interactivity).
//! - The key is the app's signing secret, used whole as bytes (no decoding).
//! - Slack sends one signature; the request is valid when it equals the HMAC under any configured secret
//!   (rotation). Hex digits are accepted in either case; only the `v0` version exists.
//! - The signature is checked first, then the timestamp: it must be within the tolerance (default 5
//!   minutes, `tolerance` in the source overrides it) of now, in the past **or** the future, as in the
//!   docs' check (`abs(now - timestamp) > 60 * 5` rejects) and Slack's Python SDK
//!   (`slack_sdk.signature.SignatureVerifier`). Bolt for JavaScript bounds only the past; this provider
//!   follows the docs, as every timestamped provider does (see [`check_timestamp`]).
//! - The event id is the top-level `event_id` string of a JSON object body (Events API callbacks; it is
//!   stable across Slack's retries), or [`body_digest_id`] for other bodies (slash commands, interactive
//!   payloads).
//! - A verified JSON body with `"type": "url_verification"` is Slack's endpoint check: the gateway answers
//!   it with the `challenge` value as `text/plain`, the first form the [url_verification docs][challenge]
//!   give. Such a body without a string `challenge` is `MalformedBody`.
//!
//! Errors: no signature header → `MissingSignature`; no timestamp header → `MissingHeader`; a signature
//! that is not `v0=` followed by 32 bytes of hex → `MalformedSignature`; a timestamp that is not an
//! integer → `MalformedTimestamp`.
//!
//! [docs]: https://api.slack.com/authentication/verifying-requests-from-slack
//! [challenge]: https://api.slack.com/events/url_verification

use std::{fmt, time::Duration, time::SystemTime};

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    body_digest_id, check_timestamp, header, mac, unix_secs, EventMeta, Handshake, Listing, Provider,
    ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `slack`.
pub(crate) const LISTING: Listing = Listing {
    name: "slack",
    scheme: "`X-Slack-Signature: v0=...` over `\"v0:{timestamp}:{body}\"`; answers `url_verification`",
    window: "5 min",
    event_id: "the body's `event_id`",
    docs: "https://api.slack.com/authentication/verifying-requests-from-slack",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-slack-signature";
/// The timestamp header (Unix seconds).
const TIMESTAMP: &str = "x-slack-request-timestamp";

/// The signature version, both as the header's prefix and as the signed content's first field.
const VERSION: &str = "v0";
/// Slack's documented window, both ways.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// The `type` of Slack's endpoint check.
const URL_VERIFICATION: &str = "url_verification";
/// The content type of the answer to the endpoint check.
const CHALLENGE_CONTENT_TYPE: &str = "text/plain";

/// Verifies `X-Slack-Signature` against any of the signing secrets.
pub(crate) struct Slack {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Slack {
    /// Builds the provider; Slack signing secrets are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self {
            secrets,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

/// The header value as text, or the header reported as malformed.
fn text(value: &HeaderValue, malformed: VerifyError) -> Result<&str, VerifyError> {
    value.to_str().map_err(|_| malformed)
}

/// Decodes `v0=<hex>` into a tag.
fn parse_signature(value: &HeaderValue) -> Result<[u8; TAG_LEN], VerifyError> {
    let malformed = VerifyError::MalformedSignature(SIGNATURE);
    let text = text(value, malformed.clone())?;
    let hex_digits = text
        .strip_prefix(VERSION)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or_else(|| malformed.clone())?;
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(hex_digits, &mut tag).map_err(|_| malformed)?;
    Ok(tag)
}

impl Provider for Slack {
    fn name(&self) -> &'static str {
        "slack"
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
            .ok_or(VerifyError::MissingHeader(TIMESTAMP))?;
        let ts_text = text(ts_text, VerifyError::MalformedTimestamp(TIMESTAMP))?;
        let timestamp = ts_text
            .parse::<i64>()
            .map_err(|_| VerifyError::MalformedTimestamp(TIMESTAMP))?;

        let parts: [&[u8]; 5] = [VERSION.as_bytes(), b":", ts_text.as_bytes(), b":", req.body];
        let matched = self.secrets.iter().any(|secret| {
            mac::<Hmac<Sha256>>(secret.expose(), &parts)
                .verify_slice(&signature)
                .is_ok()
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        check_timestamp(timestamp, now, self.tolerance)?;

        meta(req.body)
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let ts = unix_secs(now).to_string();
        let parts: [&[u8]; 5] = [VERSION.as_bytes(), b":", ts.as_bytes(), b":", req.body];
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &parts)
            .finalize()
            .into_bytes();
        Ok(vec![
            header(SIGNATURE, format!("{VERSION}={}", hex::encode(tag))),
            header(TIMESTAMP, ts),
        ])
    }
}

/// The event id, and the handshake for a `url_verification` body.
fn meta(body: &[u8]) -> Result<EventMeta, VerifyError> {
    let Some(object) = json_object(body) else {
        return Ok(EventMeta::new(body_digest_id(body)));
    };
    if object.get("type").and_then(Value::as_str) == Some(URL_VERIFICATION) {
        let challenge = object
            .get("challenge")
            .and_then(Value::as_str)
            .ok_or(VerifyError::MalformedBody)?;
        return Ok(EventMeta::handshake(
            body_digest_id(body),
            Handshake {
                content_type: CHALLENGE_CONTENT_TYPE,
                headers: Vec::new(),
                body: challenge.as_bytes().to_vec(),
            },
        ));
    }
    let event_id = object
        .get("event_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(|| body_digest_id(body), str::to_owned);
    Ok(EventMeta::new(event_id))
}

/// The body as a JSON object, if it is one.
fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(body).ok()
}

impl fmt::Debug for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slack")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
