//! Standard Webhooks (and Svix, the same scheme under `svix-*` header names): a timestamped, id-bound
//! HMAC (`v1`) or Ed25519 signature (`v1a`), base64-encoded.
//!
//! Scheme, as specified in the [Standard Webhooks specification][spec] and [Svix's docs][svix]:
//!
//! - Three headers: `webhook-id` (the message id, stable across retries), `webhook-timestamp` (Unix
//!   seconds) and `webhook-signature`; Svix sends `svix-id`, `svix-timestamp` and `svix-signature`.
//! - The signed content is `"{id}.{timestamp}.{body}"`: the id header's bytes, a full stop, the timestamp
//!   as a decimal integer, a full stop and the raw body bytes.
//! - Symmetric secrets: the HMAC key is the secret with its `whsec_` prefix removed, base64-decoded
//!   (standard alphabet, padded). A secret without the prefix is base64-decoded whole, as the reference
//!   libraries do.
//! - Asymmetric secrets: a secret starting with `whpk_` is the sender's Ed25519 **public** key, the rest
//!   being the standard base64 of its 32 bytes (the spec's "secret serialization": `whsk_` for the
//!   sender's secret key, `whpk_` for the public key). It is checked when the provider is built.
//! - The signature header is a space-separated list of `<version>,<base64 signature>` entries: `v1` is
//!   the HMAC-SHA256 of the signed content (32 bytes), `v1a` its Ed25519 signature (64 bytes, checked
//!   with `verify_strict`), both standard base64. Other versions and entries that do not decode to the
//!   right length are skipped. The request is valid when any `v1` entry equals the HMAC under any
//!   `whsec_` secret, or any `v1a` entry verifies under any `whpk_` key; one list may mix both, and one
//!   source may configure both kinds of secret. As in the reference libraries, a list with no usable
//!   entry is a signature mismatch, not a malformed header.
//! - The timestamp must be within the tolerance (default 5 minutes, `tolerance` in the source overrides
//!   it) of now, in the past **or** the future. It is checked after the signature, so an unauthenticated
//!   request never learns about the window.
//! - The event id is the id header.
//!
//! Errors: no signature header → `MissingSignature`; no id or timestamp header → `MissingHeader`; a
//! timestamp that is not an integer → `MalformedTimestamp`; a signature or id header that is not visible
//! ASCII → `MalformedSignature` (the id is part of the signed content).
//!
//! `sign` signs with the first secret, which must be a `whsec_` secret: with a `whpk_` key the gateway
//! holds only the public half, and `sign` returns [`SignError::Unsupported`].
//!
//! [`StandardSigner`] computes the same `v1` signatures, for the forwarder's outgoing requests; it
//! accepts only symmetric secrets.
//!
//! [spec]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
//! [svix]: https://docs.svix.com/receiving/verifying-payloads/how-manual

use std::{fmt, sync::Arc, time::Duration, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use ed25519_dalek::{Signature, VerifyingKey, PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    check_timestamp, header, unix_secs, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `svix`.
pub(crate) const SVIX_LISTING: Listing = Listing {
    name: "svix",
    scheme: "the same with `svix-id`, `svix-timestamp`, `svix-signature`",
    window: "5 min",
    event_id: "`svix-id`",
    docs: "https://docs.svix.com/receiving/verifying-payloads/how-manual",
    requires: &[],
};

/// What `hookgate providers` and the README's provider table say of `standard_webhooks`.
pub(crate) const STANDARD_LISTING: Listing = Listing {
    name: "standard_webhooks",
    scheme: "`webhook-signature: v1,<base64>` over `\"{id}.{timestamp}.{body}\"` (`whsec_` secrets); `v1a` Ed25519 (`whpk_` keys)",
    window: "5 min",
    event_id: "`webhook-id`",
    docs: "https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md",
    requires: &[],
};

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
/// The prefix of an Ed25519 public key as Standard Webhooks senders display it.
const PUBLIC_KEY_PREFIX: &str = "whpk_";
/// What a `whpk_` secret must look like, for [`ProviderConfigError::InvalidSecret`].
const PUBLIC_KEY_EXPECTED: &str = "\"whpk_\" followed by the base64 of a 32-byte Ed25519 public key";
/// The symmetric (HMAC-SHA256) signature version.
const VERSION: &str = "v1";
/// The asymmetric (Ed25519) signature version.
const VERSION_ASYMMETRIC: &str = "v1a";
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
    /// The id, timestamp and signature header names.
    pub(crate) fn names(self) -> (&'static str, &'static str, &'static str) {
        (self.id, self.timestamp, self.signature)
    }

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

/// How a secret becomes an HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyForm {
    /// `whsec_` and base64 (or bare base64), or a `whpk_` public key: the specification's form.
    Specified,
    /// The secret's bytes used whole, for senders whose secrets are not base64 (Polar: its SDK
    /// base64-encodes the secret before handing it to the Standard Webhooks library).
    Raw,
}

/// Verifies Standard Webhooks (or Svix) signatures against any of the secrets.
pub(crate) struct StandardWebhooks {
    name: &'static str,
    headers: Headers,
    keys: Vec<Key>,
    tolerance: Duration,
}

/// One configured secret: an HMAC key (`whsec_`) or an Ed25519 public key (`whpk_`).
pub(crate) enum Key {
    /// Checks `v1` entries.
    Symmetric(StandardSigner),
    /// Checks `v1a` entries.
    Asymmetric(VerifyingKey),
}

impl Key {
    /// Decodes the secret at `index`: `whpk_` and base64 is a public key, anything else an HMAC key.
    fn decode(secret: &Secret, index: usize) -> Result<Self, ProviderConfigError> {
        let public = std::str::from_utf8(secret.expose())
            .ok()
            .and_then(|text| text.strip_prefix(PUBLIC_KEY_PREFIX));
        let Some(encoded) = public else {
            return StandardSigner::decode(secret, index).map(Self::Symmetric);
        };
        let mut bytes = [0u8; PUBLIC_KEY_LENGTH];
        match BASE64.decode_slice(encoded, &mut bytes) {
            Ok(PUBLIC_KEY_LENGTH) => VerifyingKey::from_bytes(&bytes).ok(),
            _ => None,
        }
        .map(Self::Asymmetric)
        .ok_or(ProviderConfigError::InvalidSecret {
            index,
            expected: PUBLIC_KEY_EXPECTED,
        })
    }
}

impl StandardWebhooks {
    /// Builds the provider; every secret must be `whsec_` followed by base64 (or bare base64), or
    /// `whpk_` followed by the base64 of an Ed25519 public key.
    pub(crate) fn try_new(
        settings: ProviderSettings<'_>,
        headers: Headers,
    ) -> Result<Self, ProviderConfigError> {
        let name = if headers == Headers::SVIX {
            "svix"
        } else {
            "standard_webhooks"
        };
        Self::named(name, settings, headers, KeyForm::Specified)
    }

    /// Builds the scheme under another sender's name (a catalogue preset).
    pub(crate) fn named(
        name: &'static str,
        settings: ProviderSettings<'_>,
        headers: Headers,
        form: KeyForm,
    ) -> Result<Self, ProviderConfigError> {
        let keys = settings
            .require_secrets()?
            .iter()
            .enumerate()
            .map(|(index, secret)| match form {
                KeyForm::Specified => Key::decode(secret, index),
                KeyForm::Raw => Ok(Key::Symmetric(StandardSigner {
                    key: secret.expose().into(),
                })),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name,
            headers,
            keys,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

impl Provider for StandardWebhooks {
    fn name(&self) -> &'static str {
        self.name
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        verify_with(self.headers, &self.keys, self.tolerance, req, now)
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let Key::Symmetric(signer) = &self.keys[0] else {
            return Err(SignError::Unsupported(self.name()));
        };
        let ts = unix_secs(now);
        Ok(vec![
            header(self.headers.id, req.event_id),
            header(self.headers.timestamp, ts.to_string()),
            header(self.headers.signature, signer.sign(req.event_id, ts, req.body)),
        ])
    }
}

/// Verifies `req` the Standard Webhooks way under `headers` against any of `keys`, with a two-sided
/// `tolerance`; the event id is the id header. Shared with providers that embed the scheme (GitLab).
pub(crate) fn verify_with(
    headers: Headers,
    keys: &[Key],
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

    let mut tags: Vec<[u8; TAG_LEN]> = Vec::new();
    let mut asymmetric: Vec<Signature> = Vec::new();
    for (version, encoded) in signatures.split(' ').filter_map(|entry| entry.split_once(',')) {
        // `decode_slice` also fails on output longer than the buffer.
        if version == VERSION {
            let mut tag = [0u8; TAG_LEN];
            if let Ok(TAG_LEN) = BASE64.decode_slice(encoded, &mut tag) {
                tags.push(tag);
            }
        } else if version == VERSION_ASYMMETRIC {
            let mut bytes = [0u8; SIGNATURE_LENGTH];
            if let Ok(SIGNATURE_LENGTH) = BASE64.decode_slice(encoded, &mut bytes) {
                asymmetric.push(Signature::from_bytes(&bytes));
            }
        }
    }
    // The signed content, built only when an Ed25519 check needs it as one slice.
    let mut content = None;
    let matched = keys.iter().any(|key| match key {
        Key::Symmetric(signer) => {
            let mac = signer.mac(id, timestamp, req.body);
            tags.iter().any(|tag| mac.clone().verify_slice(tag).is_ok())
        }
        Key::Asymmetric(public) => {
            if asymmetric.is_empty() {
                return false;
            }
            let content = content.get_or_insert_with(|| signed_content(id, timestamp, req.body));
            asymmetric
                .iter()
                .any(|signature| public.verify_strict(content, signature).is_ok())
        }
    });
    if !matched {
        return Err(VerifyError::SignatureMismatch);
    }
    check_timestamp(timestamp, now, tolerance)?;
    Ok(EventMeta::new(id))
}

impl fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooks")
            .field("name", &self.name)
            .field("headers", &self.headers)
            .field("secrets", &format_args!("[redacted; {}]", self.keys.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// `"{msg_id}.{timestamp}.{body}"`, the content every version signs.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{msg_id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
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
