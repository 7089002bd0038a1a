//! Dropbox: `X-Dropbox-Signature`, and the `GET ?challenge=` that verifies the webhook URI.
//!
//! Scheme, as documented in the [Webhooks reference][docs] ("Verification request", "Receiving
//! notifications"):
//!
//! - Notifications are `POST`s with `X-Dropbox-Signature: <hex>`, the HMAC-SHA256 of the raw body keyed
//!   with the **app secret**, used whole. Hex in either case; any configured secret may match
//!   (rotation). No timestamp, so no replay window, and no event id (a notification only says which
//!   accounts changed): the id is [`body_digest_id`].
//! - Verification: when the URI is added, Dropbox sends `GET ?challenge=<value>`; the gateway echoes
//!   the value as the body, with `Content-Type: text/plain` and `X-Content-Type-Options: nosniff`, as
//!   the reference requires. Dropbox does not sign it; the echo proves nothing but that the URI
//!   answers, so it is limited to visible ASCII of at most 512 bytes.
//!
//! Errors: no signature → `MissingSignature`; not 64 hex digits → `MalformedSignature`; a `GET`
//! without `challenge` → `MissingParameter`, with one that is not visible ASCII → `MalformedParameter`.
//!
//! [docs]: https://www.dropbox.com/developers/reference/webhooks

use std::{fmt, time::SystemTime};

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue, Method};
use sha2::Sha256;

use super::{
    any_mac_matches, body_digest_id, echo_value, header, mac, query_param, text_echo, EventMeta, Handshake,
    Listing, Provider, ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError,
    WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `dropbox`.
pub(crate) const LISTING: Listing = Listing {
    name: "dropbox",
    scheme:
        "`X-Dropbox-Signature: <hex HMAC-SHA256(body)>`, the app secret as key; answers the `challenge` GET",
    window: "none",
    event_id: "the body's SHA-256",
    docs: "https://www.dropbox.com/developers/reference/webhooks",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-dropbox-signature";
/// The verification request's parameter.
const CHALLENGE: &str = "challenge";

/// Verifies `X-Dropbox-Signature` and answers the verification request.
pub(crate) struct Dropbox {
    secrets: Vec<Secret>,
}

impl Dropbox {
    /// Builds the provider; app secrets are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            secrets: settings.require_secrets()?.to_vec(),
        })
    }
}

impl Provider for Dropbox {
    fn name(&self) -> &'static str {
        "dropbox"
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
        Ok(EventMeta::new(body_digest_id(req.body)))
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

impl fmt::Debug for Dropbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dropbox")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
