//! SendGrid signed Event Webhook: an ECDSA P-256 signature of the timestamp and the body.
//!
//! Scheme, as documented in [Getting Started with the Event Webhook Security Features][docs] and
//! implemented by SendGrid's `EventWebhook` helper (`sendgrid/sendgrid-nodejs`,
//! `packages/eventwebhook/src/eventwebhook.js`):
//!
//! - `X-Twilio-Email-Event-Webhook-Signature: <base64>`: an ECDSA P-256 / SHA-256 signature, DER-encoded
//!   then standard base64, of the `X-Twilio-Email-Event-Webhook-Timestamp` header's bytes followed
//!   directly (no separator) by the raw body bytes, including any trailing `\r\n`.
//! - The configured secret is the **verification key** SendGrid shows for the webhook: the base64 of the
//!   DER `SubjectPublicKeyInfo` of a P-256 public key (a PEM `PUBLIC KEY` block is accepted too). It is
//!   checked when the provider is built. Any configured key may match.
//! - Signatures with a high `S` are accepted: SendGrid's own published test signature has one, and its
//!   libraries do not normalize.
//! - SendGrid documents no timestamp window and its libraries apply none, so by default none is applied.
//!   With `tolerance` configured, the timestamp (Unix seconds) must be within it of now, in the past or
//!   the future; it is checked after the signature.
//! - The body is a JSON array of events (each with its own `sg_event_id`), so the request has no single
//!   id: the event id is [`body_digest_id`].
//! - The gateway holds only the public key, so it cannot sign: `sign` returns
//!   [`SignError::Unsupported`].
//!
//! Errors: no signature header → `MissingSignature`; no timestamp header → `MissingHeader`; a signature
//! that is not base64 of a DER ECDSA signature → `MalformedSignature`; with a tolerance, a timestamp
//! that is not an integer → `MalformedTimestamp`.
//!
//! [docs]: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features

use std::{fmt, time::Duration, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use http::{HeaderName, HeaderValue};
use p256::ecdsa::{signature::Verifier as _, Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use super::{
    body_digest_id, check_timestamp, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `sendgrid`.
pub(crate) const LISTING: Listing = Listing {
    name: "sendgrid",
    scheme: "ECDSA P-256 `X-Twilio-Email-Event-Webhook-Signature` over timestamp + body; the key (base64 DER) is the secret",
    window: "none unless `tolerance`",
    event_id: "the body's SHA-256",
    docs: "https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
/// The timestamp header; its bytes are signed as they are.
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

/// What a secret must look like, for [`ProviderConfigError::InvalidSecret`].
const SECRET_EXPECTED: &str =
    "the verification key: base64 of a DER SubjectPublicKeyInfo holding an ECDSA P-256 public key";
/// The first line of a PEM public key.
const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";

/// Verifies SendGrid's signed Event Webhook against any of the configured verification keys.
pub(crate) struct SendGrid {
    keys: Vec<VerifyingKey>,
    tolerance: Option<Duration>,
}

impl SendGrid {
    /// Builds the provider; every secret must be a P-256 verification key.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let keys = settings
            .require_secrets()?
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                decode_key(secret).ok_or(ProviderConfigError::InvalidSecret {
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

/// Decodes a verification key: base64 DER SPKI, or PEM.
fn decode_key(secret: &Secret) -> Option<VerifyingKey> {
    let text = std::str::from_utf8(secret.expose()).ok()?.trim();
    if text.starts_with(PEM_BEGIN) {
        return VerifyingKey::from_public_key_pem(text).ok();
    }
    let der = BASE64.decode(text).ok()?;
    VerifyingKey::from_public_key_der(&der).ok()
}

impl Provider for SendGrid {
    fn name(&self) -> &'static str {
        "sendgrid"
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
        let signature = BASE64
            .decode(signature.as_bytes())
            .ok()
            .and_then(|der| Signature::from_der(&der).ok())
            .ok_or(VerifyError::MalformedSignature(SIGNATURE))?;

        let mut message = Vec::with_capacity(timestamp.len() + req.body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(req.body);
        if !self
            .keys
            .iter()
            .any(|key| key.verify(&message, &signature).is_ok())
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
        Ok(EventMeta::new(body_digest_id(req.body)))
    }

    fn sign(
        &self,
        _req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        Err(SignError::Unsupported("sendgrid"))
    }
}

impl fmt::Debug for SendGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGrid")
            .field(
                "verification_keys",
                &format_args!("[redacted; {}]", self.keys.len()),
            )
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
