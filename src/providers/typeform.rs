//! Typeform webhooks: a base64 HMAC-SHA256 of the body in `Typeform-Signature`.
//!
//! Scheme, as documented in [Secure your webhooks][docs]:
//!
//! - `Typeform-Signature: sha256=<base64>`, where `<base64>` is the standard-alphabet, padded base64 of
//!   the HMAC-SHA256 of the raw body, keyed with the webhook secret's bytes used whole (no decoding).
//!   The `sha256=` prefix is matched exactly (case-sensitive); the value must decode to exactly one
//!   32-byte digest. The header carries one signature.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the top-level `event_id` string of the JSON body (stable across Typeform's
//!   retries), or [`body_digest_id`] when the body is not JSON or has no such string.
//!
//! [docs]: https://www.typeform.com/developers/webhooks/secure-your-webhooks/

use std::{fmt, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    body_digest_id, header, mac, EventMeta, Provider, ProviderConfigError, ProviderSettings, SignError,
    SignRequest, VerifyError, WebhookRequest,
};
use crate::config::Secret;

/// The signature header.
const SIGNATURE: &str = "typeform-signature";

/// The prefix of a `Typeform-Signature` value.
const PREFIX: &str = "sha256=";

/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies Typeform's `Typeform-Signature` against any of the secrets.
pub(crate) struct Typeform {
    secrets: Vec<Secret>,
}

impl Typeform {
    /// Builds the provider; Typeform secrets are arbitrary strings, used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self { secrets })
    }
}

/// The part of the body that names the event.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    event_id: Option<serde_json::Value>,
}

/// The body's `event_id` string, or the body digest.
fn event_id(body: &[u8]) -> String {
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| match e.event_id {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id),
            _ => None,
        })
        .unwrap_or_else(|| body_digest_id(body))
}

impl Provider for Typeform {
    fn name(&self) -> &'static str {
        "typeform"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let malformed = VerifyError::MalformedSignature(SIGNATURE);
        let text = value.to_str().map_err(|_| malformed.clone())?;
        let encoded = text.strip_prefix(PREFIX).ok_or_else(|| malformed.clone())?;
        let tag = BASE64.decode(encoded).map_err(|_| malformed.clone())?;
        if tag.len() != TAG_LEN {
            return Err(malformed);
        }
        let matched = self.secrets.iter().any(|s| {
            mac::<Hmac<Sha256>>(s.expose(), &[req.body])
                .verify_slice(&tag)
                .is_ok()
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        Ok(EventMeta::new(event_id(req.body)))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &[req.body])
            .finalize()
            .into_bytes();
        Ok(vec![header(SIGNATURE, format!("{PREFIX}{}", BASE64.encode(tag)))])
    }
}

impl fmt::Debug for Typeform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Typeform")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
