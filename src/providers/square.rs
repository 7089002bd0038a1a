//! Square webhooks: an HMAC of the notification URL and the body, base64-encoded, in
//! `x-square-hmacsha256-signature`.
//!
//! Scheme, as documented in [Verify and validate an event notification][docs] and implemented by
//! `WebhooksHelper.isValidWebhookEventSignature` in Square's SDKs:
//!
//! - `x-square-hmacsha256-signature: <base64>`, where `<base64>` is the standard, padded base64 of the
//!   HMAC-SHA256 of the notification URL followed directly by the raw body bytes.
//! - The notification URL is the subscription's URL exactly as registered with Square, configured here as
//!   `public_url` (required); it is never rebuilt from the request, which a proxy may have rewritten.
//! - The key is the subscription's signature key, used whole as bytes (no decoding).
//! - Square sends one signature; the request is valid when it equals the HMAC under any configured key
//!   (rotation). The legacy `x-square-signature` (HMAC-SHA1) is not checked.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the top-level `event_id` string of the JSON body (stable across Square's retries),
//!   or [`body_digest_id`] when the body has none.
//!
//! Errors: no signature header → `MissingSignature`; a value that is not base64 of exactly 32 bytes →
//! `MalformedSignature`.
//!
//! [docs]: https://developer.squareup.com/docs/webhooks/step3validate

use std::{fmt, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    body_digest_id, header, json_string_field, mac, EventMeta, Listing, Provider, ProviderConfigError,
    ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `square`.
pub(crate) const LISTING: Listing = Listing {
    name: "square",
    scheme: "`x-square-hmacsha256-signature` over `public_url + body`",
    window: "none",
    event_id: "the body's `event_id`",
    docs: "https://developer.squareup.com/docs/webhooks/step3validate",
    requires: &["public_url"],
};

/// The signature header.
const SIGNATURE: &str = "x-square-hmacsha256-signature";
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies `x-square-hmacsha256-signature` against any of the signature keys.
pub(crate) struct Square {
    secrets: Vec<Secret>,
    notification_url: String,
}

impl Square {
    /// Builds the provider; it needs the notification URL (`public_url`). Signature keys are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        let notification_url = settings
            .public_url
            .ok_or_else(|| ProviderConfigError::Setting {
                key: "public_url",
                message: "is required with provider = \"square\" (expected the URL as the sender signs it, \
                          e.g. \"https://example.com/hooks/square\")"
                    .to_owned(),
            })?
            .to_owned();
        Ok(Self {
            secrets,
            notification_url,
        })
    }
}

/// Decodes the base64 signature into a tag.
fn parse_signature(value: &HeaderValue) -> Result<[u8; TAG_LEN], VerifyError> {
    let malformed = VerifyError::MalformedSignature(SIGNATURE);
    let bytes = BASE64.decode(value.as_bytes()).map_err(|_| malformed.clone())?;
    <[u8; TAG_LEN]>::try_from(bytes).map_err(|_| malformed)
}

impl Provider for Square {
    fn name(&self) -> &'static str {
        "square"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let signature = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let signature = parse_signature(signature)?;
        let parts = [self.notification_url.as_bytes(), req.body];
        let matched = self.secrets.iter().any(|secret| {
            mac::<Hmac<Sha256>>(secret.expose(), &parts)
                .verify_slice(&signature)
                .is_ok()
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        let event_id = json_string_field(req.body, "event_id").unwrap_or_else(|| body_digest_id(req.body));
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let parts = [self.notification_url.as_bytes(), req.body];
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &parts)
            .finalize()
            .into_bytes();
        Ok(vec![header(SIGNATURE, BASE64.encode(tag))])
    }
}

impl fmt::Debug for Square {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Square")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("notification_url", &self.notification_url)
            .finish()
    }
}

#[cfg(test)]
mod tests;
