//! Typeform webhooks: a base64 HMAC-SHA256 of the body in `Typeform-Signature`.
//!
//! Scheme, as documented in [Secure your webhooks][docs]:
//!
//! - `Typeform-Signature: sha256=<base64>`, where `<base64>` is the standard-alphabet, padded base64 of
//!   the HMAC-SHA256 of the raw body, keyed with the webhook secret's bytes used whole (no decoding).
//!   The `sha256=` prefix is matched exactly (case-sensitive); the value must decode to exactly one
//!   32-byte digest. The header carries one signature.
//! - There is no timestamp, so there is no replay window; deduplication relies on the event id.
//! - The event id is the top-level `event_id` string of the JSON body (stable across Typeform's
//!   retries), or [`body_digest_id`] when the body is not JSON or has no such string.
//!
//! [docs]: https://www.typeform.com/developers/webhooks/secure-your-webhooks/

//!
//! The scheme is a [`Preset`] of [`GenericHmac`]: an HMAC of the body alone, in one header.

use super::{
    hmac::{EventId, GenericHmac, HmacAlgorithm, HmacEncoding, Preset},
    Listing, ProviderConfigError, ProviderSettings,
};

/// What `hookgate providers` and the README's provider table say of `typeform`.
pub(crate) const LISTING: Listing = Listing {
    name: "typeform",
    scheme: "`Typeform-Signature: sha256=<base64 HMAC-SHA256(body)>`",
    window: "none",
    event_id: "the body's `event_id`",
    docs: "https://www.typeform.com/developers/webhooks/secure-your-webhooks/",
    requires: &[],
};

/// The scheme; only the secrets come from the config.
const PRESET: Preset = Preset {
    name: "typeform",
    header: "typeform-signature",
    algorithm: HmacAlgorithm::Sha256,
    encoding: HmacEncoding::Base64,
    prefix: "sha256=",
    id: EventId::JsonField("event_id"),
};

/// Builds the Typeform provider.
pub(crate) struct Typeform;

impl Typeform {
    /// Builds the provider; secrets are arbitrary strings, used whole.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<GenericHmac, ProviderConfigError> {
        GenericHmac::preset(&PRESET, settings)
    }
}

#[cfg(test)]
mod tests;
