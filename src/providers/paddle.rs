//! Paddle Billing webhooks: a timestamped HMAC in `Paddle-Signature`.
//!
//! Scheme, as documented in [Verify webhook signatures][docs]:
//!
//! - `Paddle-Signature: ts=<unix seconds>;h1=<hex>[;h1=<hex>...]`: semicolon-separated `key=value`
//!   elements. `ts` is the signing time; each `h1` is a hex HMAC-SHA256 (several while a secret is being
//!   rotated; any may match). Other keys are ignored, as in Paddle's SDKs.
//! - The signed payload is `"{ts}:{body}"`: the `ts` value as sent, a colon and the raw body bytes.
//! - The key is the notification destination's secret key (`pdl_ntfset_...`) used whole, as bytes.
//! - The request is valid when any `h1` equals the HMAC under any configured secret.
//! - The signature is checked first, then the timestamp: a `ts` more than the tolerance in the past is
//!   rejected. The default tolerance is **5 seconds**, as in Paddle's official SDKs
//!   (`paddle-node-sdk` `WebhooksValidator.MAX_VALID_TIME_DIFFERENCE = 5`, rejecting when
//!   `now > ts + 5`; `paddle-python-sdk` `Verifier(maximum_variance=5)`, same test). The SDKs accept any
//!   timestamp in the future; this provider rejects one more than the tolerance ahead of now (see
//!   [`check_timestamp`]). `tolerance` in the source overrides the 5 seconds, which is tight for a
//!   gateway whose clock may drift: consider a larger value.
//! - The event id is the top-level `event_id` field of the JSON body (`evt_...`), or [`body_digest_id`]
//!   when the body has none.
//!
//! Errors: no header → `MissingSignature`; no `ts`, two `ts`, no `h1` or an `h1` that is not 32 bytes of
//! hex → `MalformedSignature` (the SDKs raise "Invalid webhook signature" for a missing `ts` or `h1`); a
//! `ts` that is not an integer → `MalformedTimestamp`.
//!
//! [docs]: https://developer.paddle.com/webhooks/signature-verification

use std::{fmt, time::Duration, time::SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    body_digest_id, check_timestamp, header, json_string_field, mac, unix_secs, EventMeta, Listing, Provider,
    ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `paddle`.
pub(crate) const LISTING: Listing = Listing {
    name: "paddle",
    scheme: "`Paddle-Signature: ts=...;h1=...` over `\"{ts}:{body}\"`",
    window: "5 s",
    event_id: "the body's `event_id`",
    docs: "https://developer.paddle.com/webhooks/signature-verification",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "paddle-signature";
/// The element key of the signing timestamp.
const TIMESTAMP_KEY: &str = "ts";
/// The element key of the signatures checked.
const SCHEME_KEY: &str = "h1";
/// Paddle's SDKs' default maximum variance.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies `Paddle-Signature` against any of the secrets.
pub(crate) struct Paddle {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Paddle {
    /// Builds the provider; Paddle secret keys are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self {
            secrets,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

/// The parts of a `Paddle-Signature` value this provider uses.
struct Parsed<'a> {
    /// The `ts` text as sent: it is what was signed.
    ts_text: &'a str,
    timestamp: i64,
    signatures: Vec<[u8; TAG_LEN]>,
}

/// Parses a `Paddle-Signature` value.
fn parse(value: &HeaderValue) -> Result<Parsed<'_>, VerifyError> {
    let malformed = VerifyError::MalformedSignature(SIGNATURE);
    let text = value.to_str().map_err(|_| malformed.clone())?;
    let mut ts_text = None;
    let mut signatures = Vec::new();
    for (key, value) in text
        .split(';')
        .filter_map(|element| element.trim().split_once('='))
    {
        match key {
            TIMESTAMP_KEY if ts_text.is_some() => return Err(malformed),
            TIMESTAMP_KEY => ts_text = Some(value),
            SCHEME_KEY => {
                let mut tag = [0u8; TAG_LEN];
                hex::decode_to_slice(value, &mut tag).map_err(|_| malformed.clone())?;
                signatures.push(tag);
            }
            _ => {}
        }
    }
    let ts_text = ts_text.ok_or_else(|| malformed.clone())?;
    if signatures.is_empty() {
        return Err(malformed);
    }
    let timestamp = ts_text
        .parse::<i64>()
        .map_err(|_| VerifyError::MalformedTimestamp(SIGNATURE))?;
    Ok(Parsed {
        ts_text,
        timestamp,
        signatures,
    })
}

impl Provider for Paddle {
    fn name(&self) -> &'static str {
        "paddle"
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let Parsed {
            ts_text,
            timestamp,
            signatures,
        } = parse(value)?;

        let matched = self.secrets.iter().any(|secret| {
            let mac = mac::<Hmac<Sha256>>(secret.expose(), &[ts_text.as_bytes(), b":", req.body]);
            signatures
                .iter()
                .any(|signature| mac.clone().verify_slice(signature).is_ok())
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        check_timestamp(timestamp, now, self.tolerance)?;

        let event_id = json_string_field(req.body, "event_id").unwrap_or_else(|| body_digest_id(req.body));
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let ts = unix_secs(now).to_string();
        let tag = mac::<Hmac<Sha256>>(self.secrets[0].expose(), &[ts.as_bytes(), b":", req.body]);
        let h1 = hex::encode(tag.finalize().into_bytes());
        Ok(vec![header(
            SIGNATURE,
            format!("{TIMESTAMP_KEY}={ts};{SCHEME_KEY}={h1}"),
        )])
    }
}

impl fmt::Debug for Paddle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paddle")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
