//! A shared secret as a bearer token: `provider = "bearer"`, `Authorization: Bearer <secret>`.
//!
//! Scheme ([RFC 6750, section 2.1][rfc]):
//!
//! - The sender sends one of the configured secrets in `Authorization: Bearer <secret>`. The scheme name
//!   is matched in any case; whitespace around the token is ignored.
//! - Nothing is signed and there is no timestamp: the token proves who sent the request, not that the
//!   body is unchanged, and there is no replay window (deduplication relies on the event id). Use HTTPS.
//! - The token is compared with every configured secret (rotation) in constant time, as SHA-256 digests,
//!   so neither a secret's content nor its length leaks through timing (see [`token`](super::token)).
//! - The event id is the `id_header` value when the source sets `id_header` and the request has it, else
//!   [`body_digest_id`](super::body_digest_id).
//! - The `Authorization` header is removed before the request is stored or forwarded
//!   ([`Provider::strip_credentials`](super::Provider::strip_credentials)), whether it verifies or not:
//!   the app, the store and the admin API never see the secret. The app learns that the request was
//!   verified from `X-Hookgate-Verified`.
//!
//! Errors: no `Authorization` header, another scheme, or an empty token → `MissingToken`; no secret
//! equals the token → `TokenMismatch`. Secrets must be sendable in a header (no control characters, no
//! surrounding whitespace).
//!
//! [rfc]: https://www.rfc-editor.org/rfc/rfc6750#section-2.1

use std::{fmt, time::SystemTime};

use http::{header::AUTHORIZATION, HeaderName, HeaderValue};

use super::token::{credentials, header_safe, Digests, IdHeader};
use super::{
    EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError,
    WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `bearer`.
pub(crate) const LISTING: Listing = Listing {
    name: "bearer",
    scheme: "`Authorization: Bearer <secret>`",
    window: "none",
    event_id: "`id_header`, if set",
    docs: "https://www.rfc-editor.org/rfc/rfc6750#section-2.1",
    requires: &[],
};

/// The header the token travels in, as named in errors.
const HEADER: &str = "authorization";
/// The authorization scheme, with the space that ends it; matched in any case.
const SCHEME: &[u8] = b"bearer ";

/// Verifies `Authorization: Bearer <secret>` against any of the secrets.
pub(crate) struct Bearer {
    digests: Digests,
    /// What `sign` sends: the first secret.
    first: Secret,
    id: IdHeader,
}

impl Bearer {
    /// Builds the provider; every secret must be sendable in a header.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?;
        for (index, secret) in secrets.iter().enumerate() {
            header_safe(secret, index)?;
        }
        Ok(Self {
            digests: Digests::new(secrets.iter().map(Secret::expose)),
            first: secrets[0].clone(),
            id: IdHeader::try_new(settings.id_header)?,
        })
    }
}

impl Provider for Bearer {
    fn name(&self) -> &'static str {
        "bearer"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let token = req
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| credentials(v, SCHEME))
            .ok_or(VerifyError::MissingToken(HEADER))?;
        if !self.digests.matches(token) {
            return Err(VerifyError::TokenMismatch);
        }
        Ok(EventMeta::new(self.id.event_id(req)))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(self.first.expose());
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| SignError::Unsignable("the first secret is not a valid header value"))?;
        let mut headers = vec![(AUTHORIZATION, value)];
        headers.extend(self.id.sign(req.event_id));
        Ok(headers)
    }

    fn strip_credentials(&self, head: &mut http::request::Parts) {
        head.headers.remove(AUTHORIZATION);
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer")
            .field("secrets", &format_args!("[redacted; {}]", self.digests.len()))
            .field("id_header", &self.id)
            .finish()
    }
}

#[cfg(test)]
mod tests;
