//! Shopify webhooks: an HMAC of the body, base64-encoded, in `X-Shopify-Hmac-Sha256`.
//!
//! Scheme, as documented in [Verify webhook deliveries][docs]:
//!
//! - `X-Shopify-Hmac-Sha256: <base64>`, where `<base64>` is the standard, padded base64 of the
//!   HMAC-SHA256 of the raw body, keyed with the app's client secret used whole as bytes (no decoding).
//! - Shopify sends one signature; the request is valid when it equals the HMAC under any configured secret
//!   (Shopify keeps signing with the old secret for up to an hour after a rotation).
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the `X-Shopify-Event-Id` header (the same for every delivery of one event; Shopify's
//!   [duplicate guide][dups] names it), else `X-Shopify-Webhook-Id` (one delivery), else [`body_digest_id`].
//!
//! Errors: no signature header → `MissingSignature`; a value that is not base64 of exactly 32 bytes →
//! `MalformedSignature`.
//!
//! [docs]: https://shopify.dev/docs/apps/build/webhooks/verify-deliveries
//! [dups]: https://shopify.dev/docs/apps/build/webhooks/ignore-duplicates

use std::{fmt, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    body_digest_id, header, mac, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `shopify`.
pub(crate) const LISTING: Listing = Listing {
    name: "shopify",
    scheme: "`X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(body)>`",
    window: "none",
    event_id: "`X-Shopify-Event-Id`, else `X-Shopify-Webhook-Id`",
    docs: "https://shopify.dev/docs/apps/build/webhooks/verify-deliveries",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-shopify-hmac-sha256";
/// The event's id, the same across deliveries of one event.
const EVENT_ID: &str = "x-shopify-event-id";
/// The delivery's id, used when [`EVENT_ID`] is absent.
const WEBHOOK_ID: &str = "x-shopify-webhook-id";
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies `X-Shopify-Hmac-Sha256` against any of the secrets.
pub(crate) struct Shopify {
    secrets: Vec<Secret>,
}

impl Shopify {
    /// Builds the provider; Shopify client secrets are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self { secrets })
    }
}

/// Decodes the base64 signature into a tag.
fn parse_signature(value: &HeaderValue) -> Result<[u8; TAG_LEN], VerifyError> {
    let malformed = VerifyError::MalformedSignature(SIGNATURE);
    let bytes = BASE64.decode(value.as_bytes()).map_err(|_| malformed.clone())?;
    <[u8; TAG_LEN]>::try_from(bytes).map_err(|_| malformed)
}

/// The first present, non-empty, visible-ASCII header among `names`.
fn first_header<'a>(req: &'a WebhookRequest<'_>, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| {
        req.headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    })
}

impl Provider for Shopify {
    fn name(&self) -> &'static str {
        "shopify"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let signature = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let signature = parse_signature(signature)?;
        let matched = self.secrets.iter().any(|secret| {
            mac::<Hmac<Sha256>>(secret.expose(), &[req.body])
                .verify_slice(&signature)
                .is_ok()
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        let event_id = first_header(req, &[EVENT_ID, WEBHOOK_ID])
            .map_or_else(|| body_digest_id(req.body), str::to_owned);
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &[req.body])
            .finalize()
            .into_bytes();
        Ok(vec![
            header(SIGNATURE, BASE64.encode(tag)),
            header(EVENT_ID, req.event_id),
            header(WEBHOOK_ID, req.event_id),
        ])
    }
}

impl fmt::Debug for Shopify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shopify")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
