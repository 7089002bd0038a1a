//! X (Twitter) Account Activity API and V2 webhooks: `x-twitter-webhooks-signature`, and the
//! challenge-response check (CRC) over `GET`.
//!
//! Scheme, as documented in [Securing webhooks][docs]:
//!
//! - Events are `POST`s of JSON with `x-twitter-webhooks-signature: sha256=<base64>`, the standard
//!   (padded) base64 of the HMAC-SHA256 of the raw body keyed with the app's **consumer secret** (API
//!   secret key), used whole. Any configured secret may match (rotation: the key can be regenerated).
//!   No timestamp, so no replay window, and no event id: the id is [`body_digest_id`].
//! - CRC: at registration, hourly, and on demand, X sends `GET ?crc_token=<token>`; the gateway answers
//!   `{"response_token":"sha256=<base64 HMAC-SHA256(consumer secret, crc_token)>"}`
//!   (`application/json`), with the first secret.
//! - The CRC answer is an HMAC of a string the caller chooses, under the key that signs events: left
//!   open, it would sign any body anyone asks for. Two rules close that: a `crc_token` must be 1 to 128
//!   of `A-Z a-z 0-9 - _ = + /` (X sends a UUID-like or base64 token), and an event body must be a
//!   JSON object (after leading whitespace, `{`), which no such token can be. A CRC is otherwise not
//!   authenticated by X; an `allow_ips` list narrows who can ask.
//! - `sign` signs with the first secret, as X would.
//!
//! Errors: no signature header → `MissingSignature`; no `sha256=` prefix, or not base64 of 32 bytes →
//! `MalformedSignature`; a body that is not a JSON object → `MalformedBody`; a `GET` without
//! `crc_token` → `MissingParameter`, with one outside the alphabet or too long → `MalformedParameter`.
//!
//! [docs]: https://developer.x.com/en/docs/x-api/enterprise/account-activity-api/guides/securing-webhooks

use std::{fmt, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue, Method};
use sha2::Sha256;

use super::{
    any_mac_matches, body_digest_id, header, mac, query_param, EventMeta, Handshake, Listing, Provider,
    ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `x`.
pub(crate) const LISTING: Listing = Listing {
    name: "x",
    scheme: "`x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256(body)>`, the consumer secret as key; answers the CRC GET",
    window: "none",
    event_id: "the body's SHA-256",
    docs: "https://developer.x.com/en/docs/x-api/enterprise/account-activity-api/guides/securing-webhooks",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-twitter-webhooks-signature";
/// The prefix of its value, and of the CRC's `response_token`.
const PREFIX: &str = "sha256=";
/// The CRC's query parameter.
const CRC_TOKEN: &str = "crc_token";
/// The longest `crc_token` answered.
const MAX_CRC_TOKEN: usize = 128;

/// Verifies `x-twitter-webhooks-signature` and answers the CRC.
pub(crate) struct X {
    secrets: Vec<Secret>,
}

impl X {
    /// Builds the provider; consumer secrets are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            secrets: settings.require_secrets()?.to_vec(),
        })
    }

    /// `sha256=` and the base64 HMAC-SHA256 of `message` under the first secret.
    fn tag(&self, message: &[u8]) -> String {
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &[message])
            .finalize()
            .into_bytes();
        format!("{PREFIX}{}", BASE64.encode(tag))
    }
}

/// Whether `token` is of the form X sends, which no JSON object is.
fn crc_token_shape(token: &str) -> bool {
    (1..=MAX_CRC_TOKEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=+/".contains(&b))
}

impl Provider for X {
    fn name(&self) -> &'static str {
        "x"
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
            .and_then(|b| BASE64.decode(b).ok())
            .filter(|t| t.len() == 32)
            .ok_or(VerifyError::MalformedSignature(SIGNATURE))?;
        if !any_mac_matches::<Hmac<Sha256>>(&self.secrets, &[req.body], &tag) {
            return Err(VerifyError::SignatureMismatch);
        }
        // After the signature: an answered CRC cannot be replayed as an event (see the module docs).
        if req.body.trim_ascii_start().first() != Some(&b'{') {
            return Err(VerifyError::MalformedBody);
        }
        Ok(EventMeta::new(body_digest_id(req.body)))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        Ok(vec![header(SIGNATURE, self.tag(req.body))])
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
        let token = match query_param(req.uri, CRC_TOKEN).filter(|t| !t.is_empty()) {
            None => return Some(Err(VerifyError::MissingParameter(CRC_TOKEN))),
            Some(t) if !crc_token_shape(&t) => return Some(Err(VerifyError::MalformedParameter(CRC_TOKEN))),
            Some(t) => t,
        };
        let body = serde_json::json!({ "response_token": self.tag(token.as_bytes()) });
        Some(Ok(Handshake {
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }))
    }
}

impl fmt::Debug for X {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
