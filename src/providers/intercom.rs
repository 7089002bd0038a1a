//! Intercom webhooks: a hex HMAC-SHA1 of the body in `X-Hub-Signature`.
//!
//! Scheme, as documented under "Signed notifications" in [Setting up webhooks][docs]:
//!
//! - `X-Hub-Signature: sha1=<hex>`, where `<hex>` is the hex HMAC-SHA1 of the raw body, keyed with the
//!   app's client secret (Developer Hub, Basic info) as bytes used whole. The `sha1=` prefix is matched
//!   exactly (case-sensitive); hex digits are accepted in either case and must decode to exactly one
//!   20-byte digest. The header carries one signature.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the top-level `id` string of the JSON notification (`"notif_..."`, stable across
//!   Intercom's retries), or [`body_digest_id`] when the body is not JSON or has no such string.
//!
//! [docs]: https://developers.intercom.com/docs/webhooks/setting-up-webhooks

//!
//! The scheme is a [`Preset`] of [`GenericHmac`]: an HMAC of the body alone, in one header.

use super::{
    hmac::{EventId, GenericHmac, HmacAlgorithm, HmacEncoding, Preset},
    Listing, ProviderConfigError, ProviderSettings,
};

/// What `hookgate providers` and the README's provider table say of `intercom`.
pub(crate) const LISTING: Listing = Listing {
    name: "intercom",
    scheme: "`X-Hub-Signature: sha1=<hex HMAC-SHA1(body)>`, the client secret as key",
    window: "none",
    event_id: "the body's `id`",
    docs: "https://developers.intercom.com/docs/webhooks/setting-up-webhooks",
    requires: &[],
};

/// The scheme; only the secrets come from the config.
const PRESET: Preset = Preset {
    name: "intercom",
    header: "x-hub-signature",
    algorithm: HmacAlgorithm::Sha1,
    encoding: HmacEncoding::Hex,
    prefix: "sha1=",
    id: EventId::JsonField("id"),
};

/// Builds the Intercom provider.
pub(crate) struct Intercom;

impl Intercom {
    /// Builds the provider; secrets are arbitrary strings, used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<GenericHmac, ProviderConfigError> {
        GenericHmac::preset(&PRESET, settings)
    }
}

#[cfg(test)]
mod tests;
