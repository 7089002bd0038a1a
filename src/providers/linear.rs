//! Linear webhooks: an HMAC of the body, hex-encoded, in `Linear-Signature`; the timestamp is in the body.
//!
//! Scheme, as documented in [Securing webhooks][docs] and implemented by `LinearWebhookClient.verify` in
//! Linear's SDK (`linear/linear`, `packages/sdk/src/webhooks/client.ts`):
//!
//! - `Linear-Signature: <hex>`, the hex HMAC-SHA256 of the raw body, keyed with the webhook's signing
//!   secret used whole, as bytes. No prefix; one signature per request. Hex digits are accepted in either
//!   case; the value must decode to exactly one digest.
//! - The replay check uses the body's top-level `webhookTimestamp` field: Unix time in **milliseconds**.
//!   As in the SDK, it must be within 60 seconds of now **in either direction** (`Math.abs(now -
//!   webhookTimestamp) > 60_000` is rejected), compared in milliseconds; `tolerance` in the source
//!   overrides the 60 seconds. It is checked after the signature. The SDK skips the check when the field
//!   is absent; this provider rejects such a body as `MalformedBody`, since Linear always sends the field
//!   and skipping it would disable the replay window.
//! - The event id is the `Linear-Delivery` header (a UUID per delivery), or [`body_digest_id`] when it is
//!   absent.
//!
//! Errors: no header → `MissingSignature`; a header that is not hex of one digest → `MalformedSignature`;
//! a body that is not a JSON object with an integer `webhookTimestamp` → `MalformedBody` (after the
//! signature check, so a forged request still gets `SignatureMismatch`).
//!
//! `sign` computes the signature of the body and sets `Linear-Delivery`; the body must already carry
//! `webhookTimestamp` (the signature does not cover a header timestamp), else it is `Unsignable`.
//!
//! [docs]: https://linear.app/developers/webhooks#securing-webhooks

use std::{fmt, time::Duration, time::SystemTime};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    body_digest_id, check_timestamp_millis, header, mac, EventMeta, Listing, Provider, ProviderConfigError,
    ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `linear`.
pub(crate) const LISTING: Listing = Listing {
    name: "linear",
    scheme: "`Linear-Signature: <hex HMAC-SHA256(body)>` and the body's `webhookTimestamp`",
    window: "60 s",
    event_id: "`Linear-Delivery`",
    docs: "https://linear.app/developers/webhooks#securing-webhooks",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "linear-signature";
/// The delivery's id, used as the event id.
const DELIVERY: &str = "linear-delivery";
/// Linear's SDK's window, both ways.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(60);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies `Linear-Signature` against any of the secrets.
pub(crate) struct Linear {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Linear {
    /// Builds the provider; Linear signing secrets are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self {
            secrets,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

/// The top-level `webhookTimestamp` of a Linear payload.
#[derive(Deserialize)]
struct Timestamp {
    #[serde(rename = "webhookTimestamp")]
    webhook_timestamp: Option<i64>,
}

/// The body's `webhookTimestamp` (Unix milliseconds), if the body is a JSON object that has one.
fn webhook_timestamp(body: &[u8]) -> Option<i64> {
    // A derived struct also deserializes from a JSON array, by position; only objects count.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<Timestamp>(body).ok()?.webhook_timestamp
}

impl Provider for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let mut signature = [0u8; TAG_LEN];
        hex::decode_to_slice(value.as_bytes(), &mut signature)
            .map_err(|_| VerifyError::MalformedSignature(SIGNATURE))?;
        let matched = self.secrets.iter().any(|secret| {
            mac::<Hmac<Sha256>>(secret.expose(), &[req.body])
                .verify_slice(&signature)
                .is_ok()
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }

        let timestamp_ms = webhook_timestamp(req.body).ok_or(VerifyError::MalformedBody)?;
        check_timestamp_millis(timestamp_ms, now, self.tolerance)?;

        let event_id = req
            .headers
            .get(DELIVERY)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map_or_else(|| body_digest_id(req.body), str::to_owned);
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        if webhook_timestamp(req.body).is_none() {
            return Err(SignError::Unsignable(
                "the body has no integer \"webhookTimestamp\" field (Unix milliseconds)",
            ));
        }
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &[req.body])
            .finalize()
            .into_bytes();
        Ok(vec![
            header(SIGNATURE, hex::encode(tag)),
            header(DELIVERY, req.event_id),
        ])
    }
}

impl fmt::Debug for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Linear")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
