//! Stripe webhooks: a timestamped HMAC in `Stripe-Signature`.
//!
//! Scheme, as documented in [Verify webhook signatures manually][docs]:
//!
//! - `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`: comma-separated `key=value`
//!   elements. `t` is the signing time; each `v1` is a lowercase hex HMAC-SHA256 (several while a secret
//!   is being rolled); other schemes (`v0`, test-mode only) are ignored, as are elements without `=`.
//! - The signed payload is `"{t}.{body}"`: the timestamp as a decimal integer, a full stop and the raw
//!   body bytes.
//! - The key is the endpoint secret (`whsec_...`) used whole, as bytes; it is **not** base64-decoded.
//! - The request is valid when any `v1` signature equals the HMAC under any configured secret.
//! - As in Stripe's libraries, the signature is checked first, then the timestamp: a `t` more than the
//!   tolerance (default 300 s, `tolerance` in the source overrides it) in the past is rejected. Stripe's
//!   libraries bound only the past and accept a `t` decades ahead; this provider also rejects a `t` more
//!   than the tolerance ahead of now (see [`check_timestamp`]).
//! - The event id is the top-level `id` field of the JSON body (`evt_...`), or [`body_digest_id`] when
//!   the body has none.
//!
//! Errors: no header → `MissingSignature`; no `t`, two `t`s, no `v1` or a `v1` that is not 32 bytes of hex
//! → `MalformedSignature` (Stripe's libraries raise "unable to extract timestamp and signatures" or "no
//! signatures found with expected scheme" for these); a `t` that is not an integer → `MalformedTimestamp`.
//!
//! [docs]: https://docs.stripe.com/webhooks#verify-manually

use std::{fmt, time::Duration, time::SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    body_digest_id, check_timestamp, header, json_string_field, mac, unix_secs, EventMeta, Listing, Provider,
    ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `stripe`.
pub(crate) const LISTING: Listing = Listing {
    name: "stripe",
    scheme: "`Stripe-Signature: t=...,v1=...` over `\"{t}.{body}\"`, the `whsec_` secret used whole",
    window: "5 min",
    event_id: "the body's `id`",
    docs: "https://docs.stripe.com/webhooks#verify-manually",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "stripe-signature";
/// The element key of the signing timestamp.
const TIMESTAMP_KEY: &str = "t";
/// The element key of the signatures checked; every other scheme is ignored.
const SCHEME_KEY: &str = "v1";
/// Stripe's libraries' default tolerance.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies `Stripe-Signature` against any of the secrets.
pub(crate) struct Stripe {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Stripe {
    /// Builds the provider; Stripe secrets (`whsec_...`) are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self {
            secrets,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

/// The parts of a `Stripe-Signature` value this provider uses.
struct Parsed {
    timestamp: i64,
    signatures: Vec<[u8; TAG_LEN]>,
}

/// Parses a `Stripe-Signature` value.
fn parse(value: &http::HeaderValue) -> Result<Parsed, VerifyError> {
    let malformed = VerifyError::MalformedSignature(SIGNATURE);
    let text = value.to_str().map_err(|_| malformed.clone())?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for (key, value) in text
        .split(',')
        .filter_map(|element| element.trim().split_once('='))
    {
        match key {
            TIMESTAMP_KEY if timestamp.is_some() => return Err(malformed),
            TIMESTAMP_KEY => timestamp = Some(value),
            SCHEME_KEY => {
                let mut tag = [0u8; TAG_LEN];
                hex::decode_to_slice(value, &mut tag).map_err(|_| malformed.clone())?;
                signatures.push(tag);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed.clone())?;
    let timestamp = timestamp
        .parse::<i64>()
        .map_err(|_| VerifyError::MalformedTimestamp(SIGNATURE))?;
    if signatures.is_empty() {
        return Err(malformed);
    }
    Ok(Parsed {
        timestamp,
        signatures,
    })
}

impl Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let Parsed {
            timestamp,
            signatures,
        } = parse(value)?;

        // Stripe's libraries sign the timestamp as they parsed it (an integer), not the header's text.
        let t = timestamp.to_string();
        let matched = self.secrets.iter().any(|secret| {
            let mac = mac::<Hmac<Sha256>>(secret.expose(), &[t.as_bytes(), b".", req.body]);
            signatures
                .iter()
                .any(|signature| mac.clone().verify_slice(signature).is_ok())
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        check_timestamp(timestamp, now, self.tolerance)?;

        let event_id = json_string_field(req.body, "id").unwrap_or_else(|| body_digest_id(req.body));
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let t = unix_secs(now).to_string();
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &[t.as_bytes(), b".", req.body]);
        let v1 = hex::encode(tag.finalize().into_bytes());
        Ok(vec![header(
            SIGNATURE,
            format!("{TIMESTAMP_KEY}={t},{SCHEME_KEY}={v1}"),
        )])
    }
}

impl fmt::Debug for Stripe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stripe")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
