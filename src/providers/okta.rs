//! Okta event hooks: the `Authorization` value the operator set on the hook, and the one-time
//! verification `GET`.
//!
//! Scheme, as documented in [Event hooks][docs] ("One-time verification request", "Authentication
//! header"):
//!
//! - Okta signs nothing: when the hook is created, the operator sets `authScheme` (`type: HEADER`,
//!   `key: Authorization`, `value: <secret>`), and Okta sends that value whole in `Authorization` with
//!   every request. The configured secrets are such values (any may match: rotation); the header's
//!   value is compared whole, in constant time, as SHA-256 digests (see [`token`](super::token)). It
//!   proves who sent the request, not that the body is unchanged: use HTTPS. It is removed before the
//!   request is stored or forwarded.
//! - No timestamp, so no replay window. The event id is the top-level `eventId` of the body (one per
//!   delivery, kept on Okta's retries), or [`body_digest_id`] when there is none.
//! - Verification: Okta sends `GET` with `X-Okta-Verification-Challenge: <value>` and expects
//!   `{"verification":"<value>"}` (`application/json`). The answer holds no secret; still, a
//!   verification that carries an `Authorization` value that is not a configured one is refused, and
//!   one without it is answered (so that a hook is verified whatever Okta sends with the check).
//!
//! Errors: no `Authorization` → `MissingToken`; another value → `TokenMismatch`; a `GET` without the
//! challenge header → `MissingHeader`, with one that is not visible ASCII of at most 512 bytes →
//! `MalformedParameter`.
//!
//! [docs]: https://developer.okta.com/docs/concepts/event-hooks/

use std::{fmt, time::SystemTime};

use http::{header::AUTHORIZATION, HeaderName, HeaderValue, Method};

use super::token::{header_safe, Digests};
use super::{
    body_digest_id, echo_value, json_string_field, EventMeta, Handshake, Listing, Provider,
    ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `okta`.
pub(crate) const LISTING: Listing = Listing {
    name: "okta",
    scheme: "the `Authorization` value set on the event hook, compared whole; answers the verification GET",
    window: "none",
    event_id: "the body's `eventId`",
    docs: "https://developer.okta.com/docs/concepts/event-hooks/",
    requires: &[],
};

/// The header the secret travels in, as named in errors.
const HEADER: &str = "authorization";
/// The verification request's header.
const CHALLENGE: &str = "x-okta-verification-challenge";

/// Checks Okta's `Authorization` value and answers the verification request.
pub(crate) struct Okta {
    digests: Digests,
    /// What `sign` sends: the first secret.
    first: Secret,
}

impl Okta {
    /// Builds the provider; every secret must be sendable in a header.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?;
        for (index, secret) in secrets.iter().enumerate() {
            header_safe(secret, index)?;
        }
        Ok(Self {
            digests: Digests::new(secrets.iter().map(Secret::expose)),
            first: secrets[0].clone(),
        })
    }
}

impl Provider for Okta {
    fn name(&self) -> &'static str {
        "okta"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let value = req
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.as_bytes().trim_ascii())
            .filter(|v| !v.is_empty())
            .ok_or(VerifyError::MissingToken(HEADER))?;
        if !self.digests.matches(value) {
            return Err(VerifyError::TokenMismatch);
        }
        let event_id = json_string_field(req.body, "eventId").unwrap_or_else(|| body_digest_id(req.body));
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        _req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let value = HeaderValue::from_bytes(self.first.expose())
            .map_err(|_| SignError::Unsignable("the first secret is not a valid header value"))?;
        Ok(vec![(AUTHORIZATION, value)])
    }

    fn strip_credentials(&self, head: &mut http::request::Parts) {
        head.headers.remove(AUTHORIZATION);
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
        Some((|| {
            if let Some(value) = req.headers.get(AUTHORIZATION) {
                if !self.digests.matches(value.as_bytes().trim_ascii()) {
                    return Err(VerifyError::TokenMismatch);
                }
            }
            let challenge = req
                .headers
                .get(CHALLENGE)
                .ok_or(VerifyError::MissingHeader(CHALLENGE))?
                .to_str()
                .map_err(|_| VerifyError::MalformedParameter(CHALLENGE))?;
            let challenge = echo_value(Some(challenge.to_owned()), CHALLENGE)?;
            let body = serde_json::json!({ "verification": challenge });
            Ok(Handshake {
                content_type: "application/json",
                headers: Vec::new(),
                body: body.to_string().into_bytes(),
            })
        })())
    }
}

impl fmt::Debug for Okta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Okta")
            .field("secrets", &format_args!("[redacted; {}]", self.digests.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests;
