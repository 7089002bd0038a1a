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

//!
//! The scheme is a [`Preset`] of [`GenericHmac`]: an HMAC of the body alone, in one header.

use super::{
    hmac::{EventId, GenericHmac, HmacAlgorithm, HmacEncoding, Preset},
    Listing, ProviderConfigError, ProviderSettings,
};

/// What `hookgate providers` and the README's provider table say of `bitbucket`.
pub(crate) const LISTING: Listing = Listing {
    name: "bitbucket",
    scheme: "`X-Hub-Signature: sha256=<hex HMAC-SHA256(body)>`",
    window: "none",
    event_id: "`X-Request-UUID`, else `X-Request-Id`",
    docs: "https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/",
    requires: &[],
};

/// The scheme; only the secrets come from the config.
const PRESET: Preset = Preset {
    name: "bitbucket",
    header: "x-hub-signature",
    algorithm: HmacAlgorithm::Sha256,
    encoding: HmacEncoding::Hex,
    prefix: "sha256=",
    id: EventId::Headers(&["x-request-uuid", "x-request-id"]),
};

/// Builds the Bitbucket provider.
pub(crate) struct Bitbucket;

impl Bitbucket {
    /// Builds the provider; secrets are arbitrary strings, used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<GenericHmac, ProviderConfigError> {
        GenericHmac::preset(&PRESET, settings)
    }
}

#[cfg(test)]
mod tests;
