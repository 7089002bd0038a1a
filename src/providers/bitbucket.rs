//! Bitbucket webhooks: a hex HMAC-SHA256 of the body in `X-Hub-Signature`.
//!
//! Scheme, as documented for Bitbucket Cloud in [Manage webhooks][docs] ("Secure webhooks") and
//! [Event payloads][headers], and for Bitbucket Data Center in [Event payload][dc]:
//!
//! - `X-Hub-Signature: sha256=<hex>`, where `<hex>` is the hex HMAC-SHA256 of the raw body, keyed with
//!   the webhook secret's bytes used whole (no decoding). Unlike GitHub's header of the same name, the
//!   digest is SHA-256. The `sha256=` prefix is matched exactly (case-sensitive); hex digits are
//!   accepted in either case and must decode to exactly one 32-byte digest. The header carries one
//!   signature. Data Center signs the same way (HMAC-SHA256 is its default and only documented
//!   algorithm).
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the `X-Request-UUID` header (Cloud: the delivery's UUID; `X-Hook-UUID` names the
//!   webhook, not the delivery, and is not used), else the `X-Request-Id` header (Data Center's
//!   per-request UUID), else [`body_digest_id`].
//!
//! [docs]: https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/
//! [headers]: https://support.atlassian.com/bitbucket-cloud/docs/event-payloads/
//! [dc]: https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html

use std::{fmt, time::SystemTime};

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use sha2::Sha256;

use super::{
    body_digest_id, header, mac, EventMeta, Provider, ProviderConfigError, ProviderSettings, SignError,
    SignRequest, VerifyError, WebhookRequest,
};
use crate::config::Secret;

/// The signature header.
const SIGNATURE: &str = "x-hub-signature";
/// Bitbucket Cloud's delivery UUID, the event id.
const REQUEST_UUID: &str = "x-request-uuid";
/// Bitbucket Data Center's request UUID, the event id when [`REQUEST_UUID`] is absent.
const REQUEST_ID: &str = "x-request-id";

/// The prefix of an `X-Hub-Signature` value.
const PREFIX: &str = "sha256=";

/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Verifies Bitbucket's `X-Hub-Signature` against any of the secrets.
pub(crate) struct Bitbucket {
    secrets: Vec<Secret>,
}

impl Bitbucket {
    /// Builds the provider; Bitbucket secrets are arbitrary strings, used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        Ok(Self { secrets })
    }
}

impl Provider for Bitbucket {
    fn name(&self) -> &'static str {
        "bitbucket"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let malformed = VerifyError::MalformedSignature(SIGNATURE);
        let text = value.to_str().map_err(|_| malformed.clone())?;
        let hex_digits = text.strip_prefix(PREFIX).ok_or_else(|| malformed.clone())?;
        let tag = hex::decode(hex_digits).map_err(|_| malformed.clone())?;
        if tag.len() != TAG_LEN {
            return Err(malformed);
        }
        let matched = self.secrets.iter().any(|s| {
            mac::<Hmac<Sha256>>(s.expose(), &[req.body])
                .verify_slice(&tag)
                .is_ok()
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        let event_id = [REQUEST_UUID, REQUEST_ID]
            .iter()
            .find_map(|name| {
                req.headers
                    .get(*name)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
            })
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
            header(SIGNATURE, format!("{PREFIX}{}", hex::encode(tag))),
            header(REQUEST_UUID, req.event_id),
        ])
    }
}

impl fmt::Debug for Bitbucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bitbucket")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
