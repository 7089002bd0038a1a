//! PagerDuty v3 webhooks: an HMAC of the body, hex-encoded, in `X-PagerDuty-Signature`.
//!
//! Scheme, as documented in [Verifying Signatures][docs] (`PagerDuty/developer-docs`,
//! `docs/webhooks/04-Signatures.md`) and implemented by PagerDuty's [`go-pagerduty` `webhookv3`][sdk]:
//!
//! - `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`: a comma-separated list, one entry per signing
//!   secret while PagerDuty rotates the subscription's secret. Each `v1` entry is the hex HMAC-SHA256 of
//!   the raw body, keyed with the secret's bytes used whole (no decoding).
//! - Entries of other versions and `v1` entries that are not 32 bytes of hex are skipped (surrounding
//!   spaces are trimmed). The request is valid when any `v1` entry equals the HMAC under any configured
//!   secret. A header with no usable `v1` entry is malformed, as in the Go library.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the JSON body's `event.id`, or [`body_digest_id`] when it has none.
//!
//! Errors: no header → `MissingSignature`; no usable `v1` entry → `MalformedSignature`.
//!
//! [docs]: https://developer.pagerduty.com/docs/ZG9jOjExMDI5NTkz-verifying-signatures
//! [sdk]: https://github.com/PagerDuty/go-pagerduty/blob/master/webhookv3/webhookv3.go

use std::{fmt, time::SystemTime};

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::{
    body_digest_id, header, mac, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `pagerduty`.
pub(crate) const LISTING: Listing = Listing {
    name: "pagerduty",
    scheme: "`X-PagerDuty-Signature: v1=<hex>`, a comma list",
    window: "none",
    event_id: "the body's `event.id`",
    docs: "https://developer.pagerduty.com/docs/ZG9jOjExMDI5NTkz-verifying-signatures",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "x-pagerduty-signature";
/// The prefix of each checked entry.
const PREFIX: &str = "v1=";
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies `X-PagerDuty-Signature` against any of the secrets.
pub(crate) struct PagerDuty {
    secrets: Vec<Secret>,
}

impl PagerDuty {
    /// Builds the provider; PagerDuty secrets are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            secrets: settings.require_secrets()?.to_vec(),
        })
    }
}

/// The `v1` tags of an `X-PagerDuty-Signature` value.
fn parse(value: &HeaderValue) -> Result<Vec<[u8; TAG_LEN]>, VerifyError> {
    let malformed = VerifyError::MalformedSignature(SIGNATURE);
    let text = value.to_str().map_err(|_| malformed.clone())?;
    let tags: Vec<[u8; TAG_LEN]> = text
        .split(',')
        .filter_map(|entry| entry.trim().strip_prefix(PREFIX))
        .filter_map(|digits| {
            let mut tag = [0u8; TAG_LEN];
            hex::decode_to_slice(digits, &mut tag).ok().map(|()| tag)
        })
        .collect();
    if tags.is_empty() {
        return Err(malformed);
    }
    Ok(tags)
}

impl Provider for PagerDuty {
    fn name(&self) -> &'static str {
        "pagerduty"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let tags = parse(value)?;
        let matched = self.secrets.iter().any(|secret| {
            let mac = mac::<Hmac<Sha256>>(secret.expose(), &[req.body]);
            tags.iter().any(|tag| mac.clone().verify_slice(tag).is_ok())
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        let event_id = event_id(req.body).unwrap_or_else(|| body_digest_id(req.body));
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
        Ok(vec![header(SIGNATURE, format!("{PREFIX}{}", hex::encode(tag)))])
    }
}

/// The `event.id` string of a JSON object body, if any.
fn event_id(body: &[u8]) -> Option<String> {
    let body: Map<String, Value> = serde_json::from_slice(body).ok()?;
    body.get("event")?
        .get("id")?
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

impl fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDuty")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
