//! Discord interactions endpoint: an Ed25519 signature of the timestamp and the body.
//!
//! Scheme, as documented in [Receiving and Responding to Interactions][docs] ("Security and
//! Authorization"):
//!
//! - `X-Signature-Ed25519: <hex>`: the 64-byte Ed25519 signature, hex-encoded (either case), of the
//!   `X-Signature-Timestamp` header's bytes followed directly (no separator) by the raw body bytes.
//! - The configured secret is the application's **public** key, as the Developer Portal shows it: 64 hex
//!   digits (32 bytes). It is checked when the provider is built. Signatures are checked with
//!   `verify_strict` (no small-order keys, canonical `S`). Any configured key may match (for example an
//!   old and a new application).
//! - Discord documents no timestamp window, so by default none is applied (deduplication uses the
//!   interaction id). With `tolerance` configured, the timestamp (Unix seconds) must be within it of now,
//!   in the past or the future; it is checked after the signature.
//! - The event id is the interaction's `id` (top-level `id` string of the JSON body), or
//!   [`body_digest_id`] when there is none.
//! - A `PING` (body `type` 1), sent by Discord when the endpoint URL is saved and from time to time, is
//!   answered by the gateway itself, after verification, with `{"type":1}` (`PONG`,
//!   `application/json`).
//! - The gateway holds only the public key, so it cannot sign: `sign` returns
//!   [`SignError::Unsupported`].
//!
//! Errors: no signature header → `MissingSignature`; no timestamp header → `MissingHeader`; a signature
//! that is not 128 hex digits → `MalformedSignature`; with a tolerance, a timestamp that is not an
//! integer → `MalformedTimestamp`.
//!
//! [docs]: https://discord.com/developers/docs/interactions/receiving-and-responding#security-and-authorization

use std::{fmt, time::Duration, time::SystemTime};

use ed25519_dalek::{Signature, VerifyingKey, SIGNATURE_LENGTH};
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::{
    body_digest_id, check_timestamp, EventMeta, Handshake, Listing, Provider, ProviderConfigError,
    ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};

/// What `hookgate providers` and the README's provider table say of `discord`.
pub(crate) const LISTING: Listing = Listing {
    name: "discord",
    scheme: "Ed25519 `X-Signature-Ed25519` over timestamp + body; the public key (hex) is the secret; answers PING",
    window: "none unless `tolerance`",
    event_id: "the body's `id`",
    docs: "https://discord.com/developers/docs/interactions/receiving-and-responding#security-and-authorization",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-signature-ed25519";
/// The timestamp header; its bytes are signed as they are.
const TIMESTAMP: &str = "x-signature-timestamp";

/// What a secret must look like, for [`ProviderConfigError::InvalidSecret`].
const SECRET_EXPECTED: &str = "a 64-digit hex Ed25519 public key";
/// The interaction type of a `PING`.
const PING: u64 = 1;
/// The answer to a `PING`: a `PONG`.
const PONG: &[u8] = br#"{"type":1}"#;

/// Verifies Discord's `X-Signature-Ed25519` against any of the configured public keys.
pub(crate) struct Discord {
    keys: Vec<VerifyingKey>,
    tolerance: Option<Duration>,
}

impl Discord {
    /// Builds the provider; every secret must be a hex Ed25519 public key.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let keys = settings
            .require_secrets()?
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(secret.expose(), &mut bytes)
                    .ok()
                    .and_then(|()| VerifyingKey::from_bytes(&bytes).ok())
                    .ok_or(ProviderConfigError::InvalidSecret {
                        index,
                        expected: SECRET_EXPECTED,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keys,
            tolerance: settings.tolerance,
        })
    }
}

impl Provider for Discord {
    fn name(&self) -> &'static str {
        "discord"
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
        let mut bytes = [0u8; SIGNATURE_LENGTH];
        hex::decode_to_slice(signature.as_bytes(), &mut bytes)
            .map_err(|_| VerifyError::MalformedSignature(SIGNATURE))?;
        let signature = Signature::from_bytes(&bytes);

        let mut message = Vec::with_capacity(timestamp.len() + req.body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(req.body);
        if !self
            .keys
            .iter()
            .any(|key| key.verify_strict(&message, &signature).is_ok())
        {
            return Err(VerifyError::SignatureMismatch);
        }
        if let Some(tolerance) = self.tolerance {
            let ts = timestamp
                .to_str()
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or(VerifyError::MalformedTimestamp(TIMESTAMP))?;
            check_timestamp(ts, now, tolerance)?;
        }

        let interaction = json_object(req.body);
        let event_id = interaction
            .as_ref()
            .and_then(|o| o.get("id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map_or_else(|| body_digest_id(req.body), str::to_owned);
        let is_ping = interaction
            .as_ref()
            .and_then(|o| o.get("type"))
            .and_then(Value::as_u64)
            == Some(PING);
        if is_ping {
            return Ok(EventMeta::handshake(
                event_id,
                Handshake {
                    content_type: "application/json",
                    headers: Vec::new(),
                    body: PONG.to_vec(),
                },
            ));
        }
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        _req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        Err(SignError::Unsupported("discord"))
    }
}

/// The body as a JSON object, if it is one.
fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice(body).ok()
}

impl fmt::Debug for Discord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discord")
            .field("public_keys", &format_args!("[redacted; {}]", self.keys.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
