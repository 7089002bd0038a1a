//! Intercom webhooks: a hex HMAC-SHA1 of the body in `X-Hub-Signature`.
//!
//! Scheme, as documented under "Signed notifications" in [Setting up webhooks][docs]:
//!
//! - `X-Hub-Signature: sha1=<hex>`, where `<hex>` is the hex HMAC-SHA1 of the raw body, keyed with the
//!   app's client secret (Developer Hub, Basic info) as bytes used whole. The `sha1=` prefix is matched
//!   exactly (case-sensitive); hex digits are accepted in either case and must decode to exactly one
//!   20-byte digest. The header carries one signature.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the top-level `id` string of the JSON notification (`"notif_..."`, stable across
//!   Intercom's retries), or [`body_digest_id`] when the body is not JSON or has no such string.
//!
//! [docs]: https://developers.intercom.com/docs/webhooks/setting-up-webhooks

use std::{fmt, time::SystemTime};

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha1::Sha1;

use super::{
    body_digest_id, header, mac, EventMeta, Provider, ProviderConfigError, ProviderSettings, SignError,
    SignRequest, VerifyError, WebhookRequest,
};
use crate::config::Secret;

/// The signature header.
const SIGNATURE: &str = "x-hub-signature";

/// The prefix of an `X-Hub-Signature` value.
const PREFIX: &str = "sha1=";

/// The length of an HMAC-SHA1 tag.
const TAG_LEN: usize = 20;

/// Verifies Intercom's `X-Hub-Signature` against any of the client secrets.
pub(crate) struct Intercom {
    secrets: Vec<Secret>,
}

impl Intercom {
    /// Builds the provider; client secrets are arbitrary strings, used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self { secrets })
    }
}

/// The part of a notification that names it.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// The notification's `id` string, or the body digest.
fn event_id(body: &[u8]) -> String {
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| match e.id {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id),
            _ => None,
        })
        .unwrap_or_else(|| body_digest_id(body))
}

impl Provider for Intercom {
    fn name(&self) -> &'static str {
        "intercom"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let malformed = VerifyError::MalformedSignature(SIGNATURE);
        let text = value.to_str().map_err(|_| malformed.clone())?;
        let hex_digits = text.strip_prefix(PREFIX).ok_or_else(|| malformed.clone())?;
        let tag = hex::decode(hex_digits).map_err(|_| malformed.clone())?;
        if tag.len() != TAG_LEN {
            return Err(malformed);
        }
        let matched = self.secrets.iter().any(|s| {
            mac::<Hmac<Sha1>>(s.expose(), &[req.body])
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
        let tag = mac::<Hmac<Sha1>>(self.secrets[0].expose(), &[req.body])
            .finalize()
            .into_bytes();
        Ok(vec![header(SIGNATURE, format!("{PREFIX}{}", hex::encode(tag)))])
    }
}

impl fmt::Debug for Intercom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intercom")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
