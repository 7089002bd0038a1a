//! Meta (WhatsApp Business Platform, Messenger, Instagram): `X-Hub-Signature-256`, and the `GET`
//! verification request that subscribes the callback URL.
//!
//! Scheme, as documented in [Getting Started with Webhooks][docs] ("Verification Requests",
//! "Event Notifications", "Validating Payloads"):
//!
//! - Events are `POST`s with `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed
//!   with the **app secret** (used whole). Hex digits in either case; any configured secret may match
//!   (rotation: the app secret can be reset). Meta sends one signature; there is no timestamp, so no
//!   replay window, and no event id: the id is [`body_digest_id`] (a redelivery has the same body).
//! - Verification: when the callback URL is saved, Meta sends
//!   `GET ?hub.mode=subscribe&hub.challenge=<int>&hub.verify_token=<token>`. The gateway answers 200
//!   with the `hub.challenge` value as the body (`text/plain`) when `hub.mode` is `subscribe` and
//!   `hub.verify_token` equals `[sources.challenge] verify_token` (compared in constant time, as
//!   SHA-256 digests), and refuses it otherwise (401). `verify_token` is required: without it a
//!   subscription could not be confirmed.
//! - `sign` signs with the first secret, as Meta would.
//!
//! Errors: no `X-Hub-Signature-256` → `MissingSignature`; a value without `sha256=` or not 64 hex
//! digits → `MalformedSignature`; a `GET` without `hub.verify_token` → `MissingToken`, with a wrong
//! one → `TokenMismatch`; no `hub.challenge` → `MissingParameter`; `hub.mode` other than `subscribe`,
//! or a challenge that is not visible ASCII → `MalformedParameter`.
//!
//! [docs]: https://developers.facebook.com/docs/graph-api/webhooks/getting-started

use std::{fmt, time::SystemTime};

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue, Method};
use sha2::Sha256;

use super::token::Digests;
use super::{
    any_mac_matches, body_digest_id, echo_value, header, mac, query_param, text_echo, EventMeta, Handshake,
    Listing, Provider, ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError,
    WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `meta`.
pub(crate) const LISTING: Listing = Listing {
    name: "meta",
    scheme: "`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`, the app secret as key (WhatsApp, Messenger, Instagram); answers the `hub.challenge` GET",
    window: "none",
    event_id: "the body's SHA-256",
    docs: "https://developers.facebook.com/docs/graph-api/webhooks/getting-started",
    requires: &["[sources.challenge]"],
};

/// The signature header.
const SIGNATURE: &str = "x-hub-signature-256";
/// The prefix of its value.
const PREFIX: &str = "sha256=";
/// The verification request's parameters.
const MODE: &str = "hub.mode";
const CHALLENGE: &str = "hub.challenge";
const VERIFY_TOKEN: &str = "hub.verify_token";

/// Verifies Meta's `X-Hub-Signature-256` and answers its verification request.
pub(crate) struct Meta {
    secrets: Vec<Secret>,
    verify_token: Digests,
}

impl Meta {
    /// Builds the provider: app secrets used whole, and `[sources.challenge] verify_token`, required.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        let token = settings
            .challenge
            .and_then(|c| c.verify_token.as_ref())
            .filter(|t| !t.expose().is_empty())
            .ok_or_else(|| ProviderConfigError::Setting {
                key: "challenge.verify_token",
                message: "is required with provider = \"meta\" (expected the verify token set with the \
                          callback URL, e.g. verify_token = { env = \"META_VERIFY_TOKEN\" })"
                    .to_owned(),
            })?;
        Ok(Self {
            secrets,
            verify_token: Digests::new([token.expose()]),
        })
    }
}

impl Provider for Meta {
    fn name(&self) -> &'static str {
        "meta"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let tag = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix(PREFIX))
            .and_then(|h| hex::decode(h).ok())
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
        Ok(vec![header(SIGNATURE, format!("{PREFIX}{}", hex::encode(tag)))])
    }

    fn answers_get(&self) -> bool {
        true
    }

    fn challenge(
        &self,
        req: &WebhookRequest<'_>,
        _now: SystemTime,
    ) -> Option<Result<Handshake, VerifyError>> {
        if req.method != Method::GET {
            return None;
        }
        Some((|| {
            let token = query_param(req.uri, VERIFY_TOKEN)
                .filter(|t| !t.is_empty())
                .ok_or(VerifyError::MissingToken(VERIFY_TOKEN))?;
            if !self.verify_token.matches(token.as_bytes()) {
                return Err(VerifyError::TokenMismatch);
            }
            if query_param(req.uri, MODE).as_deref() != Some("subscribe") {
                return Err(VerifyError::MalformedParameter(MODE));
            }
            let challenge = echo_value(query_param(req.uri, CHALLENGE), CHALLENGE)?;
            Ok(text_echo(challenge))
        })())
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("verify_token", &format_args!("[redacted]"))
            .finish()
    }
}

#[cfg(test)]
mod tests;
