//! GitLab webhooks: the classic secret token in `X-Gitlab-Token`, or a signing token (Standard Webhooks).
//!
//! GitLab offers two ways to authenticate a webhook, and a hook may use either or both:
//!
//! - **Secret token** ([docs]): GitLab sends the configured token itself, unchanged, in `X-Gitlab-Token`.
//!   Nothing is signed and there is no timestamp, so there is no replay window; deduplication relies on
//!   the event id. The header is compared with each configured token in constant time: both are hashed
//!   with SHA-256 first and the digests compared with `subtle`, so neither the content nor the length of
//!   a token leaks through timing.
//! - **Signing token** ([signing]): GitLab signs the request the [Standard Webhooks] way and sends
//!   `webhook-id` (equal to the `Idempotency-Key` value), `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature` (`v1,<base64 HMAC-SHA256>` of `"{webhook-id}.{webhook-timestamp}.{body}"`). The
//!   token has the form `whsec_<base64>`, and the key is its base64-decoded part. The timestamp must be
//!   within 5 minutes of now in either direction (the Standard Webhooks window; `tolerance` overrides it),
//!   checked after the signature. See [`standard`](super::standard), whose code this reuses.
//!
//! Secrets: a secret starting with `whsec_` is a signing token (it must be `whsec_` followed by base64);
//! any other secret is a secret token, used as bytes. Several of each may be configured (rotation).
//!
//! Mode, per request: when the request has a `webhook-signature` header and at least one signing token is
//! configured, the signing-token scheme is checked and its result is final (a wrong signature is a
//! mismatch even if an `X-Gitlab-Token` would match, so the check cannot be downgraded). Otherwise
//! `X-Gitlab-Token` is checked against the secret tokens; with none configured that is a mismatch.
//!
//! Event id: in signing mode the signed `webhook-id` (which GitLab sets to the `Idempotency-Key`, so it is
//! the same value, but one that cannot be altered on replay). In token mode the `Idempotency-Key` header
//! (a UUID, stable across retries of one event), else `X-Gitlab-Event-UUID`, else [`body_digest_id`].
//!
//! `X-Gitlab-Token` is removed before the request is stored or forwarded (it is the secret itself); the
//! signing-token headers are kept.
//!
//! `sign` uses the first secret: for a signing token it adds the three `webhook-*` headers and
//! `Idempotency-Key`; for a secret token it adds `X-Gitlab-Token` (the token itself: that is the scheme)
//! and `Idempotency-Key`.
//!
//! [docs]: https://docs.gitlab.com/ee/user/project/integrations/webhooks.html#validate-payloads-by-using-a-secret-token
//! [signing]: https://gitlab.com/gitlab-org/gitlab/-/merge_requests/230944
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

use std::{fmt, time::Duration, time::SystemTime};

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::standard::{self, Headers, Key, StandardSigner};
use super::{
    body_digest_id, header, unix_secs, EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings,
    SignError, SignRequest, VerifyError, WebhookRequest,
};

/// What `hookgate providers` and the README's provider table say of `gitlab`.
pub(crate) const LISTING: Listing = Listing {
    name: "gitlab",
    scheme: "`X-Gitlab-Token`, compared in constant time; or, with a `whsec_` signing token, the Standard Webhooks headers",
    window: "none (signed: 5 min)",
    event_id: "`Idempotency-Key`, else `X-Gitlab-Event-UUID`",
    docs: "https://docs.gitlab.com/ee/user/project/integrations/webhooks.html#validate-payloads-by-using-a-secret-token",
    requires: &[],
};

/// The secret token header.
const TOKEN: &str = "x-gitlab-token";
/// The retry-stable delivery id GitLab sends with every request.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The event's UUID, the fallback event id.
const EVENT_UUID: &str = "x-gitlab-event-uuid";
/// The signing-token id header (Standard Webhooks).
const WEBHOOK_ID: &str = "webhook-id";
/// The signing-token timestamp header (Standard Webhooks).
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The signing-token signature header (Standard Webhooks); its presence selects signing mode.
const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The prefix that marks a secret as a signing token.
const SIGNING_PREFIX: &str = "whsec_";
/// The Standard Webhooks window, both ways.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Verifies GitLab's secret token or signing-token signature against any of the secrets.
pub(crate) struct GitLab {
    /// SHA-256 digests of the secret tokens, compared in constant time.
    token_digests: Vec<[u8; 32]>,
    /// The decoded signing tokens.
    signing_keys: Vec<Key>,
    /// What `sign` uses: the first configured secret.
    first: FirstSecret,
    tolerance: Duration,
}

/// The first configured secret, for `sign`.
enum FirstSecret {
    /// A secret token, sent as is.
    Token(Vec<u8>),
    /// A signing token.
    Signing(StandardSigner),
}

impl GitLab {
    /// Builds the provider; `whsec_` secrets must be `whsec_` followed by base64, others are used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?;
        let mut token_digests = Vec::new();
        let mut signing_keys = Vec::new();
        let mut first = None;
        for (index, secret) in secrets.iter().enumerate() {
            let this = if secret.expose().starts_with(SIGNING_PREFIX.as_bytes()) {
                let key = StandardSigner::decode(secret, index)?;
                signing_keys.push(Key::Symmetric(key.clone()));
                FirstSecret::Signing(key)
            } else {
                token_digests.push(Sha256::digest(secret.expose()).into());
                FirstSecret::Token(secret.expose().to_vec())
            };
            first.get_or_insert(this);
        }
        Ok(Self {
            token_digests,
            signing_keys,
            first: first.expect("require_secrets guarantees at least one secret"),
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }

    /// Whether `token` equals any configured secret token; every token is compared, in constant time.
    fn token_matches(&self, token: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(token).into();
        self.token_digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest))
            .into()
    }
}

/// The value of header `name`, if present, visible ASCII and not empty.
fn header_str<'a>(req: &'a WebhookRequest<'_>, name: &str) -> Option<&'a str> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

impl Provider for GitLab {
    fn name(&self) -> &'static str {
        "gitlab"
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        if req.headers.contains_key(WEBHOOK_SIGNATURE) && !self.signing_keys.is_empty() {
            // The event id is the signed `webhook-id`.
            return standard::verify_with(Headers::STANDARD, &self.signing_keys, self.tolerance, req, now);
        }
        let token = req
            .headers
            .get(TOKEN)
            .ok_or(VerifyError::MissingSignature(TOKEN))?;
        if !self.token_matches(token.as_bytes()) {
            return Err(VerifyError::SignatureMismatch);
        }
        let event_id = header_str(req, IDEMPOTENCY_KEY)
            .or_else(|| header_str(req, EVENT_UUID))
            .map_or_else(|| body_digest_id(req.body), str::to_owned);
        Ok(EventMeta::new(event_id))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        match &self.first {
            FirstSecret::Signing(key) => {
                let ts = unix_secs(now);
                Ok(vec![
                    header(WEBHOOK_ID, req.event_id),
                    header(WEBHOOK_TIMESTAMP, ts.to_string()),
                    header(WEBHOOK_SIGNATURE, key.sign(req.event_id, ts, req.body)),
                    header(IDEMPOTENCY_KEY, req.event_id),
                ])
            }
            FirstSecret::Token(token) => {
                let value = HeaderValue::from_bytes(token).map_err(|_| {
                    SignError::Unsignable("the first secret token is not a valid header value")
                })?;
                Ok(vec![
                    (HeaderName::from_static(TOKEN), value),
                    header(IDEMPOTENCY_KEY, req.event_id),
                ])
            }
        }
    }

    /// `X-Gitlab-Token` is the shared secret itself: it goes before the request is stored or
    /// forwarded, in either mode, verified or not.
    fn strip_credentials(&self, head: &mut http::request::Parts) {
        head.headers.remove(TOKEN);
    }
}

impl fmt::Debug for GitLab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitLab")
            .field(
                "secret_tokens",
                &format_args!("[redacted; {}]", self.token_digests.len()),
            )
            .field(
                "signing_tokens",
                &format_args!("[redacted; {}]", self.signing_keys.len()),
            )
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
