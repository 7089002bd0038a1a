//! Vercel webhooks: a hex HMAC-SHA1 of the body in `x-vercel-signature`.
//!
//! Scheme, as documented in [Webhooks API: Securing webhooks][docs]:
//!
//! - `x-vercel-signature: <hex>`, with no prefix, where `<hex>` is the hex HMAC-SHA1 of the raw body,
//!   keyed with the secret as bytes used whole: the webhook's secret (shown once when an account
//!   webhook is created) or, for an integration's webhooks, the integration's client secret. Hex digits
//!   are accepted in either case and must decode to exactly one 20-byte digest. The header carries one
//!   signature.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the top-level `id` string of the JSON event, or [`body_digest_id`] when the body is
//!   not JSON or has no such string.
//!
//! [docs]: https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks

//!
//! The scheme is a [`Preset`] of [`GenericHmac`]: an HMAC of the body alone, in one header.

use super::{
    hmac::{EventId, GenericHmac, HmacAlgorithm, HmacEncoding, Preset},
    Listing, ProviderConfigError, ProviderSettings,
};

/// What `hookgate providers` and the README's provider table say of `vercel`.
pub(crate) const LISTING: Listing = Listing {
    name: "vercel",
    scheme: "`x-vercel-signature: <hex HMAC-SHA1(body)>`",
    window: "none",
    event_id: "the body's `id`",
    docs: "https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks",
    requires: &[],
};

/// The scheme; only the secrets come from the config.
const PRESET: Preset = Preset {
    name: "vercel",
    header: "x-vercel-signature",
    algorithm: HmacAlgorithm::Sha1,
    encoding: HmacEncoding::Hex,
    prefix: "",
    id: EventId::JsonField("id"),
};

/// Builds the Vercel provider.
pub(crate) struct Vercel;

impl Vercel {
    /// Builds the provider; secrets are arbitrary strings, used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<GenericHmac, ProviderConfigError> {
        GenericHmac::preset(&PRESET, settings)
    }
}

#[cfg(test)]
mod tests;
