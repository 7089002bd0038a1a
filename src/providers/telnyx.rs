//! Telnyx (API v2 webhooks): an Ed25519 signature of the timestamp and the body.
//!
//! Scheme, as documented in [Receiving webhooks][docs] ("Webhook signing") and implemented by
//! `telnyx.Webhook.verify` in telnyx-python (`telnyx/webhook.py`):
//!
//! - `telnyx-signature-ed25519: <base64>`: the 64-byte Ed25519 signature, standard base64, of the
//!   `telnyx-timestamp` header's bytes, `|`, and the raw body bytes.
//! - The configured secret is the account's **public** key, as the Mission Control Portal shows it:
//!   base64 of 32 bytes. It is checked when the provider is built. Signatures are checked with
//!   `verify_strict`. Any configured key may match (rotation).
//! - `telnyx-timestamp` is Unix seconds. The window is 5 minutes (the SDK's default tolerance), in
//!   the past or the future (the SDK bounds only the past; see [`check_timestamp`]); `tolerance`
//!   overrides it. It is checked after the signature.
//! - The event id is `data.id` of the body (the event's UUID, kept on retries), or [`body_digest_id`].
//! - The gateway holds only the public key, so it cannot sign: `sign` returns
//!   [`SignError::Unsupported`].
//!
//! Errors: no signature header → `MissingSignature`; no timestamp header → `MissingHeader`; a
//! signature that is not base64 of 64 bytes → `MalformedSignature`; a timestamp that is not an integer
//! → `MalformedTimestamp`; outside the window → `TimestampOutsideTolerance`.
//!
//! [docs]: https://developers.telnyx.com/docs/messaging/messages/receiving-webhooks

use std::{fmt, time::Duration, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use ed25519_dalek::{Signature, VerifyingKey, SIGNATURE_LENGTH};
use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::{
    body_digest_id, check_timestamp, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};

/// What `hookgate providers` and the README's provider table say of `telnyx`.
pub(crate) const LISTING: Listing = Listing {
    name: "telnyx",
    scheme: "Ed25519 `telnyx-signature-ed25519` (base64) over `\"{telnyx-timestamp}|{body}\"`; the public key (base64) is the secret",
    window: "5 min",
    event_id: "the body's `data.id`",
    docs: "https://developers.telnyx.com/docs/messaging/messages/receiving-webhooks",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "telnyx-signature-ed25519";
/// The timestamp header; its bytes are signed as they are.
const TIMESTAMP: &str = "telnyx-timestamp";
/// The SDK's default tolerance.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// What a secret must look like, for [`ProviderConfigError::InvalidSecret`].
const SECRET_EXPECTED: &str = "a base64 Ed25519 public key (32 bytes)";

/// Verifies `telnyx-signature-ed25519` against any of the configured public keys.
pub(crate) struct Telnyx {
    keys: Vec<VerifyingKey>,
    tolerance: Duration,
}

impl Telnyx {
    /// Builds the provider; every secret must be a base64 Ed25519 public key.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let keys = settings
            .require_secrets()?
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                BASE64
                    .decode(secret.expose().trim_ascii())
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
                    .ok_or(ProviderConfigError::InvalidSecret {
                        index,
                        expected: SECRET_EXPECTED,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keys,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

impl Provider for Telnyx {
    fn name(&self) -> &'static str {
        "telnyx"
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
        let bytes: [u8; SIGNATURE_LENGTH] = BASE64
            .decode(signature.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(VerifyError::MalformedSignature(SIGNATURE))?;
        let signature = Signature::from_bytes(&bytes);

        let mut message = Vec::with_capacity(timestamp.len() + 1 + req.body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.push(b'|');
        message.extend_from_slice(req.body);
        if !self
            .keys
            .iter()
            .any(|key| key.verify_strict(&message, &signature).is_ok())
        {
            return Err(VerifyError::SignatureMismatch);
        }
        let ts = timestamp
            .to_str()
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or(VerifyError::MalformedTimestamp(TIMESTAMP))?;
        check_timestamp(ts, now, self.tolerance)?;

        let event_id = serde_json::from_slice::<Value>(req.body)
            .ok()
            .as_ref()
            .and_then(|v| v.get("data")?.get("id")?.as_str().map(str::to_owned))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| body_digest_id(req.body));
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        _req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        Err(SignError::Unsupported("telnyx"))
    }
}

impl fmt::Debug for Telnyx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telnyx")
            .field("public_keys", &format_args!("[redacted; {}]", self.keys.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
