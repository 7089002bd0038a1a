//! Adyen standard webhooks (payments): an HMAC-SHA256 of fields of each notification item, inside the
//! body.
//!
//! Scheme, as documented in [Verify HMAC signatures][docs] and implemented by Adyen's libraries
//! (`Adyen/util.py` `generate_notification_sig` in adyen-python-api-library):
//!
//! - The body is a JSON batch: `{"live": "...", "notificationItems": [{"NotificationRequestItem":
//!   {...}}, ...]}`. Each item carries its own signature in `additionalData.hmacSignature`: the
//!   standard base64 of the HMAC-SHA256 of `pspReference:originalReference:merchantAccountCode:
//!   merchantReference:value:currency:eventCode:success` (`value` and `currency` from `amount`; an
//!   absent field is the empty string; nothing is escaped), keyed with the **HMAC key** decoded from
//!   hex. **Every** item must verify (Adyen's own helper checks only the first item; an unsigned item
//!   appended to a signed batch would pass it). Any configured key may match (rotation: Adyen lets two
//!   keys be active while one replaces the other); each item is checked against every key.
//! - Numbers are signed as their JSON text (`1130`), strings as they are; any other value in a signed
//!   field (an object, an array, a boolean) is refused as `MalformedBody`, since the libraries would
//!   sign a text Adyen never produces.
//! - No timestamp is signed (`eventDate` is not), so there is no replay window.
//! - The event id: for a batch of one item, `eventCode:pspReference:success` (Adyen asks receivers to
//!   deduplicate on these); for a larger batch, [`body_digest_id`].
//! - Adyen accepts a webhook on any 2xx answer (the `[accepted]` body is no longer required), so the
//!   gateway's usual `{"status":"accepted"}` serves.
//! - The signature lives in the body, so `sign` cannot produce it as headers: [`SignError::Unsignable`].
//! - Not covered: the Balance Platform and Management webhooks, which sign the whole body in an
//!   `HmacSignature` header (that shape is a `provider = "hmac"` source).
//!
//! Errors: a body that is not such a batch, or an empty batch → `MalformedBody`; an item without
//! `additionalData.hmacSignature` → `MissingSignature`; one that is not base64 of 32 bytes →
//! `MalformedSignature`; an item no key signs → `SignatureMismatch`.
//!
//! [docs]: https://docs.adyen.com/development-resources/webhooks/verify-hmac-signatures

use std::{fmt, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use sha2::Sha256;

use super::{
    body_digest_id, mac, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings, SignError,
    SignRequest, VerifyError, WebhookRequest,
};

/// What `hookgate providers` and the README's provider table say of `adyen`.
pub(crate) const LISTING: Listing = Listing {
    name: "adyen",
    scheme: "every notification item's `additionalData.hmacSignature`: base64 HMAC-SHA256 of `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`, the HMAC key (hex) as key",
    window: "none",
    event_id: "`eventCode:pspReference:success` of a one-item batch",
    docs: "https://docs.adyen.com/development-resources/webhooks/verify-hmac-signatures",
    requires: &[],
};

/// Where each item's signature is, as named in errors.
const SIGNATURE: &str = "additionalData.hmacSignature";
/// What a secret must look like.
const SECRET_EXPECTED: &str = "the HMAC key as hex (an even number of hex digits)";

/// Verifies the `hmacSignature` of every notification item against any of the HMAC keys.
pub(crate) struct Adyen {
    keys: Vec<Vec<u8>>,
}

impl Adyen {
    /// Builds the provider; every secret must be an HMAC key in hex, as the Customer Area shows it.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let keys = settings
            .require_secrets()?
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                hex::decode(secret.expose().trim_ascii()).map_err(|_| ProviderConfigError::InvalidSecret {
                    index,
                    expected: SECRET_EXPECTED,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }
}

/// The text Adyen signs for a field's value: strings as they are, numbers as JSON writes them, an
/// absent field (or `null`) as nothing.
fn field_text(value: Option<&Value>) -> Result<String, VerifyError> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(VerifyError::MalformedBody),
    }
}

/// The string an item's signature covers.
pub(crate) fn signing_string(item: &serde_json::Map<String, Value>) -> Result<String, VerifyError> {
    let amount = item.get("amount");
    let fields = [
        field_text(item.get("pspReference"))?,
        field_text(item.get("originalReference"))?,
        field_text(item.get("merchantAccountCode"))?,
        field_text(item.get("merchantReference"))?,
        field_text(amount.and_then(|a| a.get("value")))?,
        field_text(amount.and_then(|a| a.get("currency")))?,
        field_text(item.get("eventCode"))?,
        field_text(item.get("success"))?,
    ];
    Ok(fields.join(":"))
}

/// The batch's items, each a JSON object.
fn items(body: &[u8]) -> Result<Vec<serde_json::Map<String, Value>>, VerifyError> {
    let batch: Value = serde_json::from_slice(body).map_err(|_| VerifyError::MalformedBody)?;
    let list = batch
        .get("notificationItems")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or(VerifyError::MalformedBody)?;
    list.iter()
        .map(|entry| match entry.get("NotificationRequestItem") {
            Some(Value::Object(item)) => Ok(item.clone()),
            _ => Err(VerifyError::MalformedBody),
        })
        .collect()
}

impl Provider for Adyen {
    fn name(&self) -> &'static str {
        "adyen"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let items = items(req.body)?;
        for item in &items {
            let signature = item
                .get("additionalData")
                .and_then(|d| d.get("hmacSignature"))
                .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
            let tag = signature
                .as_str()
                .and_then(|s| BASE64.decode(s).ok())
                .filter(|t| t.len() == 32)
                .ok_or(VerifyError::MalformedSignature(SIGNATURE))?;
            let signed = signing_string(item)?;
            let matched = self.keys.iter().any(|key| {
                mac::<Hmac<Sha256>>(key, &[signed.as_bytes()])
                    .verify_slice(&tag)
                    .is_ok()
            });
            if !matched {
                return Err(VerifyError::SignatureMismatch);
            }
        }
        let event_id = match items.as_slice() {
            [item] => {
                let part = |name: &str| field_text(item.get(name)).unwrap_or_default();
                let (code, psp) = (part("eventCode"), part("pspReference"));
                if code.is_empty() || psp.is_empty() {
                    body_digest_id(req.body)
                } else {
                    format!("{code}:{psp}:{}", part("success"))
                }
            }
            _ => body_digest_id(req.body),
        };
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        _req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        Err(SignError::Unsignable(
            "adyen signs fields inside each notification item of the body",
        ))
    }
}

impl fmt::Debug for Adyen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adyen")
            .field("hmac_keys", &format_args!("[redacted; {}]", self.keys.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
