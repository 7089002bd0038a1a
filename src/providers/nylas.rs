//! Nylas (API v3): `X-Nylas-Signature`, and the `GET ?challenge=` that verifies a new webhook.
//!
//! Scheme, as documented in [Using webhooks with Nylas][docs] ("Respond to webhook verification
//! request", "Verify webhook signatures"):
//!
//! - Notifications are `POST`s of JSON with `X-Nylas-Signature: <hex>`, the HMAC-SHA256 of the raw
//!   body keyed with the webhook's **`webhook_secret`** (returned when the webhook is created, or
//!   rotated), used whole. Hex in either case; any configured secret may match (rotation). No
//!   timestamp, so no replay window.
//! - The event id is the notification's top-level `id`, or [`body_digest_id`] when there is none.
//! - Verification: when a webhook is created or reactivated, Nylas sends `GET ?challenge=<value>` and
//!   expects the exact value back as the body, nothing else, within 10 seconds. The gateway echoes it
//!   (`text/plain`, `X-Content-Type-Options: nosniff`). Nylas does not sign it, so the echo is limited
//!   to visible ASCII of at most 512 bytes.
//!
//! Errors: no signature → `MissingSignature`; not 64 hex digits → `MalformedSignature`; a `GET`
//! without `challenge` → `MissingParameter`, with one that is not visible ASCII → `MalformedParameter`.
//!
//! [docs]: https://developer.nylas.com/docs/v3/notifications/webhooks/

use std::{fmt, time::SystemTime};

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue, Method};
use sha2::Sha256;

use super::{
    any_mac_matches, body_digest_id, echo_value, header, json_string_field, mac, query_param, text_echo,
    EventMeta, Handshake, Listing, Provider, ProviderConfigError, ProviderSettings, SignError, SignRequest,
    VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `nylas`.
pub(crate) const LISTING: Listing = Listing {
    name: "nylas",
    scheme:
        "`X-Nylas-Signature: <hex HMAC-SHA256(body)>`, the webhook secret as key; answers the `challenge` GET",
    window: "none",
    event_id: "the body's `id`",
    docs: "https://developer.nylas.com/docs/v3/notifications/webhooks/",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-nylas-signature";
/// The verification request's parameter.
const CHALLENGE: &str = "challenge";

/// Verifies `X-Nylas-Signature` and answers the verification request.
pub(crate) struct Nylas {
    secrets: Vec<Secret>,
}

impl Nylas {
    /// Builds the provider; webhook secrets are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            secrets: settings.require_secrets()?.to_vec(),
        })
    }
}

impl Provider for Nylas {
    fn name(&self) -> &'static str {
        "nylas"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let tag = hex::decode(value.as_bytes())
            .ok()
            .filter(|t| t.len() == 32)
            .ok_or(VerifyError::MalformedSignature(SIGNATURE))?;
        if !any_mac_matches::<Hmac<Sha256>>(&self.secrets, &[req.body], &tag) {
            return Err(VerifyError::SignatureMismatch);
        }
        let event_id = json_string_field(req.body, "id").unwrap_or_else(|| body_digest_id(req.body));
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
        Ok(vec![header(SIGNATURE, hex::encode(tag))])
    }

    fn answers_get(&self) -> bool {
        true
    }

    fn challenge(
        &self,
        req: &WebhookRequest<'_>,
        _now: SystemTime,
    ) -> Option<Result<Handshake, VerifyError>> {
        (req.method == Method::GET)
            .then(|| echo_value(query_param(req.uri, CHALLENGE), CHALLENGE).map(text_echo))
    }
}

impl fmt::Debug for Nylas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nylas")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
