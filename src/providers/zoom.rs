//! Zoom webhooks: a timestamped HMAC in `x-zm-signature`, and the `endpoint.url_validation` handshake.
//!
//! Scheme, as documented in [Using webhooks][docs] ("Verify webhook events" and "Validate your webhook
//! endpoint") and implemented by Zoom's Rivet SDK (`zoom/rivet-javascript`, `CommonHttpRequest`):
//!
//! - `x-zm-signature: v0=<hex>`, where `<hex>` is the lowercase hex HMAC-SHA256 of
//!   `"v0:{x-zm-request-timestamp}:{body}"` (the literal `v0`, a colon, the timestamp header as sent, a
//!   colon and the raw body bytes), keyed with the app's secret token used whole, as bytes. One signature
//!   per request; hex is accepted in either case.
//! - `x-zm-request-timestamp` is Unix time in **seconds**. Zoom's docs advise a replay check but give no
//!   window and Rivet does none; this provider rejects a timestamp more than 5 minutes in the past, as
//!   the common reference sample does, or more than 5 minutes ahead, which the sample accepts (see
//!   [`check_timestamp`]; `tolerance` overrides it), checked after the signature.
//! - Event id: Zoom documents no per-delivery id. The body's `event_ts` is per event, not unique across
//!   events of the same instant, and `x-zm-trackingid` is documented only as a support tracking id,
//!   not as stable across retries or unique per event, so neither is used: the event id is
//!   [`body_digest_id`] (a retry carries the same body, so it deduplicates).
//! - Handshake: a verified body `{"event": "endpoint.url_validation", "payload": {"plainToken": "..."}}`
//!   is answered by the gateway with `200`, `application/json`
//!   `{"plainToken": "...", "encryptedToken": "<hex HMAC-SHA256 of plainToken>"}`, keyed with the secret
//!   that verified the request (during rotation, the one Zoom is using). Zoom signs these requests too
//!   (Rivet verifies them before answering), so an unsigned validation request is rejected.
//!
//! Errors: no signature header → `MissingSignature`; no timestamp header → `MissingHeader`; a signature
//! without the `v0=` prefix or not hex of one digest → `MalformedSignature`; a timestamp that is not an
//! integer → `MalformedTimestamp`; a validation request without a string `plainToken` → `MalformedBody`.
//!
//! [docs]: https://developers.zoom.us/docs/api/webhooks/

use std::{fmt, time::Duration, time::SystemTime};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    body_digest_id, check_timestamp, header, mac, unix_secs, EventMeta, Handshake, Listing, Provider,
    ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `zoom`.
pub(crate) const LISTING: Listing = Listing {
    name: "zoom",
    scheme: "`x-zm-signature: v0=...` over `\"v0:{timestamp}:{body}\"`; answers `endpoint.url_validation`",
    window: "5 min",
    event_id: "the body's SHA-256",
    docs: "https://developers.zoom.us/docs/api/webhooks/",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-zm-signature";
/// The timestamp header (Unix seconds).
const TIMESTAMP: &str = "x-zm-request-timestamp";
/// The version prefix of the signature and of the signed message.
const VERSION: &str = "v0";
/// The event of an endpoint validation request.
const URL_VALIDATION: &str = "endpoint.url_validation";
/// The default window, either way.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies `x-zm-signature` against any of the secrets and answers endpoint validation.
pub(crate) struct Zoom {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Zoom {
    /// Builds the provider; Zoom secret tokens are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self {
            secrets,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

/// The MAC of `"v0:{timestamp}:{body}"` under `key`, not yet finalized.
fn signed(key: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    mac::<Hmac<Sha256>>(key, &[VERSION.as_bytes(), b":", timestamp.as_bytes(), b":", body])
}

/// The fields of a Zoom body this provider reads.
#[derive(Deserialize)]
struct Event {
    event: Option<String>,
    payload: Option<Payload>,
}

/// The `payload` of an endpoint validation request.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "plainToken")]
    plain_token: Option<String>,
}

/// The answer to an endpoint validation request.
#[derive(Serialize)]
struct Validation<'a> {
    #[serde(rename = "plainToken")]
    plain_token: &'a str,
    #[serde(rename = "encryptedToken")]
    encrypted_token: String,
}

/// `Some(plainToken)` when the body is an endpoint validation request; `Err` when it is one without a
/// string `plainToken`.
fn validation_token(body: &[u8]) -> Result<Option<String>, VerifyError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Ok(None);
    }
    let Ok(event) = serde_json::from_slice::<Event>(body) else {
        return Ok(None);
    };
    if event.event.as_deref() != Some(URL_VALIDATION) {
        return Ok(None);
    }
    event
        .payload
        .and_then(|p| p.plain_token)
        .map(Some)
        .ok_or(VerifyError::MalformedBody)
}

impl Provider for Zoom {
    fn name(&self) -> &'static str {
        "zoom"
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let signature = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let timestamp = req
            .headers
            .get(TIMESTAMP)
            .ok_or(VerifyError::MissingHeader(TIMESTAMP))?;
        let malformed = VerifyError::MalformedSignature(SIGNATURE);
        let hex_digits = signature
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("v0="))
            .ok_or_else(|| malformed.clone())?;
        let mut tag = [0u8; TAG_LEN];
        hex::decode_to_slice(hex_digits, &mut tag).map_err(|_| malformed)?;
        let ts_text = timestamp
            .to_str()
            .map_err(|_| VerifyError::MalformedTimestamp(TIMESTAMP))?;
        let ts = ts_text
            .parse::<i64>()
            .map_err(|_| VerifyError::MalformedTimestamp(TIMESTAMP))?;

        let key = self
            .secrets
            .iter()
            .find(|secret| {
                signed(secret.expose(), ts_text, req.body)
                    .verify_slice(&tag)
                    .is_ok()
            })
            .ok_or(VerifyError::SignatureMismatch)?;
        check_timestamp(ts, now, self.tolerance)?;

        let event_id = body_digest_id(req.body);
        let Some(plain_token) = validation_token(req.body)? else {
            return Ok(EventMeta::new(event_id));
        };
        let encrypted = mac::<Hmac<Sha256>>(key.expose(), &[plain_token.as_bytes()])
            .finalize()
            .into_bytes();
        let body = serde_json::to_vec(&Validation {
            plain_token: &plain_token,
            encrypted_token: hex::encode(encrypted),
        })
        .expect("a struct of strings serializes");
        Ok(EventMeta::handshake(
            event_id,
            Handshake {
                content_type: "application/json",
                headers: Vec::new(),
                body,
            },
        ))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let ts = unix_secs(now).to_string();
        let tag = signed(self.secrets[0].expose(), &ts, req.body)
            .finalize()
            .into_bytes();
        Ok(vec![
            header(SIGNATURE, format!("{VERSION}={}", hex::encode(tag))),
            header(TIMESTAMP, ts),
        ])
    }
}

impl fmt::Debug for Zoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zoom")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
