//! HTTP Basic authentication: `provider = "basic"`, `Authorization: Basic base64(user:password)`.
//!
//! Scheme ([RFC 7617][rfc]):
//!
//! - Each configured secret is `"user:password"`; the sender sends one of them as
//!   `Authorization: Basic <base64 of user:password>` (standard alphabet, padded). The scheme name is
//!   matched in any case. The user is what precedes the first colon, so it cannot contain one; the
//!   password may be empty (API keys sent as the user name).
//! - Nothing is signed and there is no timestamp: the credentials prove who sent the request, not that
//!   the body is unchanged, and there is no replay window. Use HTTPS.
//! - The decoded `user:password` is compared with every configured secret (rotation) in constant time, as
//!   SHA-256 digests, so that neither a secret's content nor its length leaks through timing (see
//!   [`token`](super::token)). User and password are compared together: a right user with a wrong
//!   password is as wrong as anything else.
//! - The event id is the `id_header` value when the source sets `id_header` and the request has it, else
//!   [`body_digest_id`](super::body_digest_id).
//! - The `Authorization` header is removed before the request is stored or forwarded
//!   ([`Provider::strip_credentials`](super::Provider::strip_credentials)), whether it verifies or not:
//!   the app, the store and the admin API never see the secret. The app learns that the request was
//!   verified from `X-Hookgate-Verified`.
//!
//! Errors: no `Authorization` header, another scheme, or empty credentials → `MissingToken`; credentials
//! that are not base64, or that no secret equals → `TokenMismatch`. A secret without a colon is a config
//! error.
//!
//! [rfc]: https://www.rfc-editor.org/rfc/rfc7617

use std::{fmt, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use http::{header::AUTHORIZATION, HeaderName, HeaderValue};

use super::token::{credentials, Digests, IdHeader};
use super::{
    EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError,
    WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `basic`.
pub(crate) const LISTING: Listing = Listing {
    name: "basic",
    scheme: "`Authorization: Basic base64(user:password)`; secrets are `\"user:password\"`",
    window: "none",
    event_id: "`id_header`, if set",
    docs: "https://www.rfc-editor.org/rfc/rfc7617",
    requires: &[],
};

/// The header the credentials travel in, as named in errors.
const HEADER: &str = "authorization";
/// The authorization scheme, with the space that ends it; matched in any case.
const SCHEME: &[u8] = b"basic ";

/// Verifies `Authorization: Basic ...` against any of the `user:password` secrets.
pub(crate) struct Basic {
    digests: Digests,
    /// What `sign` sends: the first secret, base64-encoded.
    first: String,
    id: IdHeader,
}

impl Basic {
    /// Builds the provider; every secret must be `user:password`.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?;
        for (index, secret) in secrets.iter().enumerate() {
            let bytes = secret.expose();
            if !bytes.contains(&b':') || bytes == b":" {
                return Err(ProviderConfigError::InvalidSecret {
                    index,
                    expected: "expected \"user:password\"",
                });
            }
        }
        Ok(Self {
            digests: Digests::new(secrets.iter().map(Secret::expose)),
            first: BASE64.encode(secrets[0].expose()),
            id: IdHeader::try_new(settings.id_header)?,
        })
    }
}

impl Provider for Basic {
    fn name(&self) -> &'static str {
        "basic"
    }

    fn verify(&self, req: &WebhookRequest<'_>, _now: SystemTime) -> Result<EventMeta, VerifyError> {
        let encoded = req
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| credentials(v, SCHEME))
            .ok_or(VerifyError::MissingToken(HEADER))?;
        let decoded = BASE64.decode(encoded).map_err(|_| VerifyError::TokenMismatch)?;
        if !self.digests.matches(&decoded) {
            return Err(VerifyError::TokenMismatch);
        }
        Ok(EventMeta::new(self.id.event_id(req)))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        _now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let value =
            HeaderValue::from_str(&format!("Basic {}", self.first)).expect("base64 is a valid header value");
        let mut headers = vec![(AUTHORIZATION, value)];
        headers.extend(self.id.sign(req.event_id));
        Ok(headers)
    }

    fn strip_credentials(&self, head: &mut http::request::Parts) {
        head.headers.remove(AUTHORIZATION);
    }
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Basic")
            .field("secrets", &format_args!("[redacted; {}]", self.digests.len()))
            .field("id_header", &self.id)
            .finish()
    }
}

#[cfg(test)]
mod tests;
