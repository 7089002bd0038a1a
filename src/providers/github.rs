//! GitHub webhooks: an HMAC of the body, hex-encoded, in `X-Hub-Signature-256`.
//!
//! Scheme, as documented in [Validating webhook deliveries][docs]:
//!
//! - `X-Hub-Signature-256: sha256=<hex>`, where `<hex>` is the lowercase hex HMAC-SHA256 of the body, keyed
//!   with the webhook secret's bytes used whole (no decoding).
//! - Only when `X-Hub-Signature-256` is absent, the legacy `X-Hub-Signature: sha1=<hex>` (HMAC-SHA1 of the
//!   body, same key) is checked instead. A present but wrong `X-Hub-Signature-256` is a mismatch: there is
//!   no fall back to the weaker SHA-1 signature, so stripping a header cannot downgrade the check.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the `X-GitHub-Delivery` header (a GUID, stable across redeliveries), or
//!   [`body_digest_id`] when that header is absent.
//!
//! Hex digits are accepted in either case; the value after the prefix must decode to exactly one digest.
//!
//! [docs]: https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries

use std::{fmt, time::SystemTime};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    body_digest_id, header, mac, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `github`.
pub(crate) const LISTING: Listing = Listing {
    name: "github",
    scheme:
        "`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`; the SHA-1 `X-Hub-Signature` only without it",
    window: "none",
    event_id: "`X-GitHub-Delivery`",
    docs: "https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries",
    requires: &[],
};

/// The SHA-256 signature header.
const SIGNATURE_256: &str = "x-hub-signature-256";
/// The legacy SHA-1 signature header, checked only when [`SIGNATURE_256`] is absent.
const SIGNATURE_SHA1: &str = "x-hub-signature";
/// The delivery's GUID, used as the event id.
const DELIVERY: &str = "x-github-delivery";

/// The prefix of an `X-Hub-Signature-256` value.
const PREFIX_256: &str = "sha256=";
/// The prefix of an `X-Hub-Signature` value.
const PREFIX_SHA1: &str = "sha1=";

/// Verifies GitHub's `X-Hub-Signature-256` (or legacy `X-Hub-Signature`) against any of the secrets.
pub(crate) struct GitHub {
    secrets: Vec<Secret>,
}

impl GitHub {
    /// Builds the provider; GitHub secrets are arbitrary strings, used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self { secrets })
    }

    /// Whether any secret's MAC of `body` equals `signature`, compared in constant time.
    fn matches<M: Mac + hmac::digest::KeyInit>(&self, body: &[u8], signature: &[u8]) -> bool {
        self.secrets.iter().any(|secret| {
            let mut mac =
                <M as Mac>::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
            mac.update(body);
            mac.verify_slice(signature).is_ok()
        })
    }
}

/// Decodes `<prefix><hex>` into `len` bytes, or reports the header as malformed.
fn decode(
    header: &'static str,
    value: &http::HeaderValue,
    prefix: &str,
    len: usize,
) -> Result<Vec<u8>, VerifyError> {
    let malformed = VerifyError::MalformedSignature(header);
    let text = value.to_str().map_err(|_| malformed.clone())?;
    let hex_digits = text.strip_prefix(prefix).ok_or_else(|| malformed.clone())?;
    let bytes = hex::decode(hex_digits).map_err(|_| malformed.clone())?;
    if bytes.len() != len {
        return Err(malformed);
    }
    Ok(bytes)
}

impl Provider for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let matched = if let Some(value) = req.headers.get(SIGNATURE_256) {
            let signature = decode(SIGNATURE_256, value, PREFIX_256, 32)?;
            self.matches::<Hmac<Sha256>>(req.body, &signature)
        } else if let Some(value) = req.headers.get(SIGNATURE_SHA1) {
            let signature = decode(SIGNATURE_SHA1, value, PREFIX_SHA1, 20)?;
            self.matches::<Hmac<Sha1>>(req.body, &signature)
        } else {
            return Err(VerifyError::MissingSignature(SIGNATURE_256));
        };
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
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
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &[req.body])
            .finalize()
            .into_bytes();
        Ok(vec![
            header(SIGNATURE_256, format!("{PREFIX_256}{}", hex::encode(tag))),
            header(DELIVERY, req.event_id),
        ])
    }
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
