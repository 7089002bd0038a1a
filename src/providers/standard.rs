//! Standard Webhooks (and Svix, the same scheme under `svix-*` header names): a timestamped, id-bound
//! HMAC, base64-encoded.
//!
//! Scheme, as specified in the [Standard Webhooks specification][spec] and [Svix's docs][svix]:
//!
//! - Three headers: `webhook-id` (the message id, stable across retries), `webhook-timestamp` (Unix
//!   seconds) and `webhook-signature`; Svix sends `svix-id`, `svix-timestamp` and `svix-signature`.
//! - The signed content is `"{id}.{timestamp}.{body}"`: the id header's bytes, a full stop, the timestamp
//!   as a decimal integer, a full stop and the raw body bytes.
//! - The key is the secret with its `whsec_` prefix removed, base64-decoded (standard alphabet, padded).
//!   A secret without the prefix is base64-decoded whole, as the reference libraries do.
//! - The signature header is a space-separated list of `<version>,<base64 signature>` entries. Only `v1`
//!   (HMAC-SHA256, standard base64) is checked; other versions (`v1a`, ...) and entries that do not
//!   decode are skipped. The request is valid when any `v1` entry equals the HMAC under any secret.
//!   As in the reference libraries, a list with no usable `v1` entry is a signature mismatch, not a
//!   malformed header.
//! - The timestamp must be within the tolerance (default 5 minutes, `tolerance` in the source overrides
//!   it) of now, in the past **or** the future. It is checked after the signature, so an unauthenticated
//!   request never learns about the window.
//! - The event id is the id header.
//!
//! Errors: no signature header → `MissingSignature`; no id or timestamp header → `MissingHeader`; a
//! timestamp that is not an integer → `MalformedTimestamp`; a signature or id header that is not visible
//! ASCII → `MalformedSignature` (the id is part of the signed content).
//!
//! [`StandardSigner`] computes the same signatures, for the forwarder's outgoing requests.
//!
//! [spec]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
//! [svix]: https://docs.svix.com/receiving/verifying-payloads/how-manual

use std::{fmt, sync::Arc, time::Duration, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    check_timestamp, header, unix_secs, EventMeta, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest, Window,
};
use crate::config::Secret;

/// The Standard Webhooks id header.
const WEBHOOK_ID: &str = "webhook-id";
/// The Standard Webhooks timestamp header.
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The Standard Webhooks signature header.
const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Svix's id header.
const SVIX_ID: &str = "svix-id";
/// Svix's timestamp header.
const SVIX_TIMESTAMP: &str = "svix-timestamp";
/// Svix's signature header.
const SVIX_SIGNATURE: &str = "svix-signature";

/// The prefix of a secret as Standard Webhooks senders display it.
const SECRET_PREFIX: &str = "whsec_";
/// What a secret must look like, for [`ProviderConfigError::InvalidSecret`].
const SECRET_EXPECTED: &str = "\"whsec_\" followed by base64";
/// The only signature version checked.
const VERSION: &str = "v1";
/// The default timestamp window, both ways.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// The header names a Standard Webhooks sender uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

impl Headers {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    pub(crate) const STANDARD: Self = Self {
        id: WEBHOOK_ID,
        timestamp: WEBHOOK_TIMESTAMP,
        signature: WEBHOOK_SIGNATURE,
    };
    /// `svix-id`, `svix-timestamp`, `svix-signature`.
    pub(crate) const SVIX: Self = Self {
        id: SVIX_ID,
        timestamp: SVIX_TIMESTAMP,
        signature: SVIX_SIGNATURE,
    };
}

/// Verifies Standard Webhooks (or Svix) signatures against any of the secrets.
pub(crate) struct StandardWebhooks {
    headers: Headers,
    keys: Vec<StandardSigner>,
    tolerance: Duration,
}

impl StandardWebhooks {
    /// Builds the provider; every secret must be `whsec_` followed by base64 (or bare base64).
    pub(crate) fn try_new(
        settings: ProviderSettings<'_>,
        headers: Headers,
    ) -> Result<Self, ProviderConfigError> {
        let keys = settings
            .require_secrets()?
            .iter()
            .enumerate()
            .map(|(index, secret)| StandardSigner::decode(secret, index))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            headers,
            keys,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

impl Provider for StandardWebhooks {
    fn name(&self) -> &'static str {
        if self.headers == Headers::SVIX {
            "svix"
        } else {
            "standard_webhooks"
        }
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        verify_with(self.headers, &self.keys, self.tolerance, req, now)
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let ts = unix_secs(now);
        Ok(vec![
            header(self.headers.id, req.event_id),
            header(self.headers.timestamp, ts.to_string()),
            header(
                self.headers.signature,
                self.keys[0].sign(req.event_id, ts, req.body),
            ),
        ])
    }
}

/// Verifies `req` the Standard Webhooks way under `headers` against any of `keys`, with a two-sided
/// `tolerance`; the event id is the id header. Shared with providers that embed the scheme (GitLab).
pub(crate) fn verify_with(
    headers: Headers,
    keys: &[StandardSigner],
    tolerance: Duration,
    req: &WebhookRequest<'_>,
    now: SystemTime,
) -> Result<EventMeta, VerifyError> {
    let Headers {
        id: id_name,
        timestamp: ts_name,
        signature: sig_name,
    } = headers;
    let signatures = req
        .headers
        .get(sig_name)
        .ok_or(VerifyError::MissingSignature(sig_name))?;
    let signatures = signatures
        .to_str()
        .map_err(|_| VerifyError::MalformedSignature(sig_name))?;
    let id = req
        .headers
        .get(id_name)
        .ok_or(VerifyError::MissingHeader(id_name))?;
    let id = id
        .to_str()
        .map_err(|_| VerifyError::MalformedSignature(id_name))?;
    let timestamp = req
        .headers
        .get(ts_name)
        .ok_or(VerifyError::MissingHeader(ts_name))?;
    let timestamp = timestamp
        .to_str()
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or(VerifyError::MalformedTimestamp(ts_name))?;

    let candidates: Vec<[u8; TAG_LEN]> = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .filter_map(|(_, encoded)| {
            let mut tag = [0u8; TAG_LEN];
            // `decode_slice` also fails on output longer than the tag.
            match BASE64.decode_slice(encoded, &mut tag) {
                Ok(TAG_LEN) => Some(tag),
                _ => None,
            }
        })
        .collect();
    let matched = keys.iter().any(|key| {
        let mac = key.mac(id, timestamp, req.body);
        candidates.iter().any(|tag| mac.clone().verify_slice(tag).is_ok())
    });
    if !matched {
        return Err(VerifyError::SignatureMismatch);
    }
    check_timestamp(timestamp, now, tolerance, Window::TwoSided)?;
    Ok(EventMeta::new(id))
}

impl fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooks")
            .field("headers", &self.headers)
            .field("secrets", &format_args!("[redacted; {}]", self.keys.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// Signs outgoing requests the Standard Webhooks way, for the forwarder.
///
/// The key is decoded once; cloning shares it. `Debug` does not print it.
#[derive(Clone)]
pub(crate) struct StandardSigner {
    key: Arc<[u8]>,
}

impl StandardSigner {
    /// Decodes `secret`: `whsec_` followed by base64, or bare base64.
    pub(crate) fn try_new(secret: &Secret) -> Result<Self, ProviderConfigError> {
        Self::decode(secret, 0)
    }

    /// Decodes the secret at `index` of a source's `secrets`.
    pub(crate) fn decode(secret: &Secret, index: usize) -> Result<Self, ProviderConfigError> {
        let invalid = ProviderConfigError::InvalidSecret {
            index,
            expected: SECRET_EXPECTED,
        };
        if secret.expose().is_empty() {
            return Err(ProviderConfigError::EmptySecret { index });
        }
        let text = std::str::from_utf8(secret.expose()).map_err(|_| invalid.clone())?;
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = BASE64.decode(encoded).map_err(|_| invalid.clone())?;
        if key.is_empty() {
            return Err(invalid);
        }
        Ok(Self { key: key.into() })
    }

    /// The MAC of `"{msg_id}.{timestamp}.{body}"`, not yet finalized.
    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for a message: `v1,<base64 HMAC-SHA256>`.
    pub(crate) fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(msg_id, timestamp, body).finalize().into_bytes();
        format!("{VERSION},{}", BASE64.encode(tag))
    }
}

impl fmt::Debug for StandardSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StandardSigner { key: [redacted] }")
    }
}

#[cfg(test)]
mod tests;
