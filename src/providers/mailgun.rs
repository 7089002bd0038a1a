//! Mailgun webhooks: an HMAC of a timestamp and a token, carried inside the body.
//!
//! Scheme, as documented in [Securing Webhooks][docs] and implemented by Mailgun's libraries
//! (`mailgun/mailgun-php` `Webhook::verifyWebhookSignature`):
//!
//! - The body carries the signature. Current webhooks post JSON:
//!   `{"signature": {"timestamp": "...", "token": "...", "signature": "<hex>"}, "event-data": {...}}`.
//!   Legacy webhooks post a form (`application/x-www-form-urlencoded`) with `timestamp`, `token` and
//!   `signature` fields. A body whose first non-blank byte is `{` is read as JSON, any other as a form;
//!   multipart bodies are not supported.
//! - `signature` is the lowercase hex HMAC-SHA256 of `timestamp` followed directly by `token` (no
//!   separator), keyed with the webhook signing key's bytes used whole. The timestamp is signed as it
//!   appears (a JSON string, or a JSON integer's decimal digits). Hex digits are accepted in either case.
//! - For subaccounts Mailgun adds `parent-signature` (the same HMAC under the primary account's key) to
//!   the JSON signature object; the request is valid when `signature` or `parent-signature` equals the
//!   HMAC under any configured key.
//! - Timestamp window: Mailgun makes the check optional ("check if the timestamp is not too far from the
//!   current time", warning that deliveries can be delayed). This provider rejects timestamps (Unix
//!   seconds) more than 5 minutes old, or more than 5 minutes ahead, by default (`tolerance` overrides it;
//!   see [`check_timestamp`]), checked after the signature.
//! - The event id is `event-data.id` of a JSON body, or else the signature's `token` (random, 50
//!   characters, unique per delivery; Mailgun suggests caching it against replays), or
//!   [`body_digest_id`] if the token is empty.
//! - The signed data lives in the body, so `sign` cannot produce it as headers:
//!   [`SignError::Unsignable`].
//!
//! Errors: a JSON body that does not parse → `MalformedBody`; no `signature` → `MissingSignature`; no
//! `timestamp` or `token` → `MissingHeader` (naming the field); a `signature` that is not 32 bytes of hex
//! → `MalformedSignature`; a timestamp that is not an integer → `MalformedTimestamp`.
//!
//! [docs]: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks

use std::{fmt, time::Duration, time::SystemTime};

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::{
    body_digest_id, check_timestamp, mac, EventMeta, Listing, Provider, ProviderConfigError,
    ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `mailgun`.
pub(crate) const LISTING: Listing = Listing {
    name: "mailgun",
    scheme: "the body's `signature`: hex HMAC-SHA256 of `timestamp + token` (JSON or form)",
    window: "5 min",
    event_id: "`event-data.id`, else `token`",
    docs: "https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks",
    requires: &[],
};

/// The JSON body's signature object.
const JSON_SIGNATURE: &str = "signature";
/// The signature inside the JSON signature object.
const JSON_SIGNATURE_VALUE: &str = "signature.signature";
/// The timestamp inside the JSON signature object.
const JSON_TIMESTAMP: &str = "signature.timestamp";
/// The token inside the JSON signature object.
const JSON_TOKEN: &str = "signature.token";
/// The signature form field of legacy webhooks.
const FORM_SIGNATURE: &str = "signature";
/// The timestamp form field of legacy webhooks.
const FORM_TIMESTAMP: &str = "timestamp";
/// The token form field of legacy webhooks.
const FORM_TOKEN: &str = "token";
/// The subaccount's primary-account signature, inside the JSON signature object.
const PARENT_SIGNATURE: &str = "parent-signature";

/// The default window: timestamps older than this, or further ahead, are rejected.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies the signature inside a Mailgun webhook body against any of the signing keys.
pub(crate) struct Mailgun {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Mailgun {
    /// Builds the provider; Mailgun signing keys are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            secrets: settings.require_secrets()?.to_vec(),
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

/// The signed fields of a delivery, and the names to report them by.
struct Fields {
    timestamp: String,
    timestamp_name: &'static str,
    token: String,
    signatures: Vec<[u8; TAG_LEN]>,
    event_id: Option<String>,
}

/// Decodes a hex tag, or reports `name` as malformed.
fn tag(hex_digits: &str, name: &'static str) -> Result<[u8; TAG_LEN], VerifyError> {
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(hex_digits, &mut tag).map_err(|_| VerifyError::MalformedSignature(name))?;
    Ok(tag)
}

/// Reads the signed fields of a JSON body.
fn json_fields(body: &[u8]) -> Result<Fields, VerifyError> {
    let body: Map<String, Value> = serde_json::from_slice(body).map_err(|_| VerifyError::MalformedBody)?;
    let signature = body
        .get(JSON_SIGNATURE)
        .and_then(Value::as_object)
        .ok_or(VerifyError::MissingSignature(JSON_SIGNATURE))?;
    let value = signature
        .get("signature")
        .ok_or(VerifyError::MissingSignature(JSON_SIGNATURE_VALUE))?
        .as_str()
        .ok_or(VerifyError::MalformedSignature(JSON_SIGNATURE_VALUE))?;
    let mut signatures = vec![tag(value, JSON_SIGNATURE_VALUE)?];
    // A parent signature that does not decode is ignored: it cannot match.
    if let Some(parent) = signature.get(PARENT_SIGNATURE).and_then(Value::as_str) {
        signatures.extend(tag(parent, JSON_SIGNATURE_VALUE).ok());
    }
    let timestamp = match signature.get("timestamp") {
        None => return Err(VerifyError::MissingHeader(JSON_TIMESTAMP)),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(VerifyError::MalformedTimestamp(JSON_TIMESTAMP)),
    };
    let token = signature
        .get("token")
        .ok_or(VerifyError::MissingHeader(JSON_TOKEN))?
        .as_str()
        .ok_or(VerifyError::MalformedBody)?
        .to_owned();
    let event_id = body
        .get("event-data")
        .and_then(|data| data.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    Ok(Fields {
        timestamp,
        timestamp_name: JSON_TIMESTAMP,
        token,
        signatures,
        event_id,
    })
}

/// Reads the signed fields of a form body (legacy webhooks). The first occurrence of a field counts.
fn form_fields(body: &[u8]) -> Result<Fields, VerifyError> {
    let (mut timestamp, mut token, mut signature) = (None, None, None);
    for (key, value) in form_urlencoded::parse(body) {
        let slot = match &*key {
            FORM_TIMESTAMP => &mut timestamp,
            FORM_TOKEN => &mut token,
            FORM_SIGNATURE => &mut signature,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.into_owned());
        }
    }
    let signature = signature.ok_or(VerifyError::MissingSignature(FORM_SIGNATURE))?;
    Ok(Fields {
        signatures: vec![tag(&signature, FORM_SIGNATURE)?],
        timestamp: timestamp.ok_or(VerifyError::MissingHeader(FORM_TIMESTAMP))?,
        timestamp_name: FORM_TIMESTAMP,
        token: token.ok_or(VerifyError::MissingHeader(FORM_TOKEN))?,
        event_id: None,
    })
}

impl Provider for Mailgun {
    fn name(&self) -> &'static str {
        "mailgun"
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let fields = if req.body.trim_ascii_start().first() == Some(&b'{') {
            json_fields(req.body)?
        } else {
            form_fields(req.body)?
        };
        let matched = self.secrets.iter().any(|secret| {
            let mac = mac::<Hmac<Sha256>>(
                secret.expose(),
                &[fields.timestamp.as_bytes(), fields.token.as_bytes()],
            );
            fields
                .signatures
                .iter()
                .any(|tag| mac.clone().verify_slice(tag).is_ok())
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        let timestamp = fields
            .timestamp
            .parse::<i64>()
            .map_err(|_| VerifyError::MalformedTimestamp(fields.timestamp_name))?;
        check_timestamp(timestamp, now, self.tolerance)?;

        let event_id = fields
            .event_id
            .or_else(|| Some(fields.token).filter(|t| !t.is_empty()))
            .unwrap_or_else(|| body_digest_id(req.body));
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        _req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        Err(SignError::Unsignable("mailgun signs fields inside the JSON body"))
    }
}

impl fmt::Debug for Mailgun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailgun")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
