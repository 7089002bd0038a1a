//! Signature schemes, one file per sender, behind one trait.
//!
//! The `verify` layer hands every request's raw bytes to its source's [`Provider`]. A provider is pure and
//! synchronous: it reads the headers and the exact body bytes as received, takes the clock as an argument
//! and returns the event's id, or a [`VerifyError`] whose [`reason`](VerifyError::reason) becomes the
//! `{"error": ...}` code of a 401 and a metric label.
//!
//! Two kinds of provider share one registry, [`ProviderKind`]:
//! - the [catalogue](catalogue): senders whose scheme is data (an HMAC of a template, a Standard
//!   Webhooks preset), interpreted by the generic engines. Adding one is an entry in
//!   `catalogue.rs` and its fixture: no code.
//! - code providers, one file each, for schemes that need code (asymmetric signatures, fields inside
//!   the body, handshakes). Adding one takes its file (with its [`Listing`]), one [`ProviderKind`]
//!   variant, its name in `CODE_NAMES` and `CODE`, and one arm in `ProviderKind::registration`.
//!
//! [`ProviderKind::info`] describes any provider without building it, for `hookgate providers` and the
//! README's provider table.
//!
//! Every provider:
//! - compares signatures (or, for the token schemes `bearer`, `basic` and `token`, SHA-256 digests of
//!   the secrets) in constant time;
//! - accepts any of several secrets (key rotation) and, where the scheme allows, several signatures;
//! - never puts a secret, a signature or a body into an error, a log line or `Debug`.

use std::{fmt, sync::Arc, time::Duration, time::SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::{de, Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

pub(crate) mod adyen;
pub(crate) mod basic;
pub(crate) mod bearer;
pub(crate) mod bitbucket;
pub(crate) mod catalogue;
pub(crate) mod discord;
pub(crate) mod dropbox;
pub(crate) mod github;
pub(crate) mod gitlab;
pub(crate) mod hmac;
pub(crate) mod hubspot;
pub(crate) mod intercom;
pub(crate) mod linear;
pub mod listing;
pub(crate) mod mailgun;
pub(crate) mod meta;
pub(crate) mod nylas;
pub(crate) mod okta;
pub(crate) mod paddle;
pub(crate) mod pagerduty;
pub(crate) mod sendgrid;
pub(crate) mod shopify;
pub(crate) mod slack;
pub(crate) mod square;
pub(crate) mod standard;
pub(crate) mod stripe;
pub(crate) mod telnyx;
pub(crate) mod token;
pub(crate) mod twilio;
pub(crate) mod twitch;
pub(crate) mod typeform;
pub(crate) mod vercel;
pub(crate) mod x;
pub(crate) mod zoom;

pub use self::catalogue::CatalogueId;
pub use self::hmac::{HmacAlgorithm, HmacEncoding, HmacScheme};
pub(crate) use self::listing::Listing;
pub use self::listing::ProviderInfo;
pub(crate) use self::standard::StandardSigner;
pub use self::token::TokenLocation;

/// The request as received, borrowed: what a provider may look at.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target as received (path and query); URL-signing schemes use the configured
    /// `public_url` instead of rebuilding a URL from this.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The body, exactly as received.
    pub body: &'a [u8],
}

/// What a valid request tells about its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// The sender's id for the event, used for deduplication. Where the sender gives none, it is
    /// `sha256:` followed by the hex SHA-256 of the body (see [`body_digest_id`]).
    pub event_id: String,
    /// Set when the request is an endpoint check (Slack's `url_verification`, Zoom's
    /// `endpoint.url_validation`, Twitch's `webhook_callback_verification`): the gateway answers it
    /// itself, after verification, and neither stores nor forwards it.
    pub handshake: Option<Handshake>,
}

impl EventMeta {
    /// An event to store and forward.
    pub fn new(event_id: impl Into<String>) -> Self {
        Self {
            event_id: event_id.into(),
            handshake: None,
        }
    }

    /// An endpoint check, answered with `handshake`.
    pub fn handshake(event_id: impl Into<String>, handshake: Handshake) -> Self {
        Self {
            event_id: event_id.into(),
            handshake: Some(handshake),
        }
    }
}

/// The 200 answer to a sender's endpoint check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The response's `Content-Type`.
    pub content_type: &'static str,
    /// More response headers the sender expects (Dropbox's `X-Content-Type-Options: nosniff`, Asana's
    /// `X-Hook-Secret` echoed).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The response body.
    pub body: Vec<u8>,
}

/// What `hookgate sign` asks a provider to sign: the request as the sender would send it.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target at the gateway (path and query).
    pub uri: &'a Uri,
    /// The body, exactly as it will be sent.
    pub body: &'a [u8],
    /// A fresh id, for schemes whose event id travels in a header.
    pub event_id: &'a str,
}

/// Why a provider cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The scheme is asymmetric: the gateway holds only the sender's public key.
    #[error("provider {0} signs with a private key that only the sender holds")]
    Unsupported(&'static str),
    /// The scheme signs something `hookgate sign` cannot supply (for example a header it does not know).
    #[error("cannot sign: {0}")]
    Unsignable(&'static str),
}

/// Why a request failed verification. Variants carry names, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature header is absent.
    #[error("missing signature header {0}")]
    MissingSignature(&'static str),
    /// Another header the scheme needs (timestamp, id) is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The signature header is present but cannot be parsed (bad encoding, prefix or structure).
    #[error("malformed signature in header {0}")]
    MalformedSignature(&'static str),
    /// The timestamp header is present but is not a number.
    #[error("malformed timestamp in header {0}")]
    MalformedTimestamp(&'static str),
    /// The timestamp is too old, or too far in the future (see [`check_timestamp`]).
    #[error("timestamp outside tolerance (age {age_secs}s)")]
    TimestampOutsideTolerance {
        /// Seconds between the timestamp and now; negative for timestamps in the future.
        age_secs: i64,
    },
    /// No configured secret produces any of the request's signatures.
    #[error("signature mismatch")]
    SignatureMismatch,
    /// The body cannot be read where the scheme needs to read it (for example an event id field).
    #[error("malformed body")]
    MalformedBody,
    /// A token scheme's credential is absent where the source expects it: no such header or query
    /// parameter, or an `Authorization` header of another scheme. Names the place.
    #[error("missing token in {0}")]
    MissingToken(&'static str),
    /// No configured secret equals the presented token or credentials.
    #[error("token mismatch")]
    TokenMismatch,
    /// A query parameter an endpoint challenge needs (`hub.challenge`, `crc_token`, `challenge`) is
    /// absent or empty.
    #[error("missing query parameter {0}")]
    MissingParameter(&'static str),
    /// A challenge's parameter or header is present but not of the form the sender sends.
    #[error("malformed parameter {0}")]
    MalformedParameter(&'static str),
}

impl VerifyError {
    /// The reason code sent to the client and used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingSignature(_) => "missing_signature",
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::MalformedTimestamp(_) => "malformed_timestamp",
            Self::TimestampOutsideTolerance { .. } => "timestamp_outside_tolerance",
            Self::SignatureMismatch => "signature_mismatch",
            Self::MalformedBody => "malformed_body",
            Self::MissingToken(_) => "missing_token",
            Self::TokenMismatch => "token_mismatch",
            Self::MissingParameter(_) => "missing_parameter",
            Self::MalformedParameter(_) => "malformed_parameter",
        }
    }
}

/// A sender's signature scheme.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider's config name, as in `provider = "github"`.
    fn name(&self) -> &'static str;

    /// Checks the request's signature against the configured secrets at time `now`, and returns the
    /// event's id.
    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError>;

    /// Signs `req` at `now` with the first secret, as the sender would, and returns the headers to add
    /// (signature, timestamp, id). Used by `hookgate sign` to build test requests that `verify` accepts.
    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError>;

    /// The request target (path and query) that `hookgate sign` sends its request to, given the
    /// source's path. Schemes that carry the secret in the query add it here; the default is the
    /// path unchanged.
    fn sign_target(&self, path: &str) -> Result<String, SignError> {
        Ok(path.to_owned())
    }

    /// Removes from the request head the credential the scheme reads (a shared secret in a header or
    /// in the query), so that nothing inside the gateway stores, forwards or shows it; the default
    /// leaves the head as received. The `verify` layer calls it for every request, whether it
    /// verifies or not (shadow mode stores failures too), before anything stores or forwards it.
    fn strip_credentials(&self, head: &mut http::request::Parts) {
        let _ = head;
    }

    /// Whether the sender checks the endpoint with a `GET` ([`Provider::challenge`] answers it): the
    /// source then takes `GET` as well as `POST`. The default is `POST` only.
    fn answers_get(&self) -> bool {
        false
    }

    /// An endpoint challenge: `Some` when `req` is the sender's check of the endpoint rather than an
    /// event (Meta's `hub.challenge`, X's CRC, Okta's verification, Dropbox's and Nylas's `challenge`,
    /// Asana's `X-Hook-Secret`), with the answer, or why it is refused (a wrong verify token, a bad
    /// signature). The gateway answers it itself and neither stores nor forwards it; a refusal is a
    /// 401 in shadow mode too, since a challenge is not an event. `None` (the default) hands the
    /// request to [`Provider::verify`]. A provider whose [`answers_get`](Provider::answers_get) is
    /// true must answer `Some` for every `GET`: a `GET` it leaves is refused 405.
    fn challenge(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Option<Result<Handshake, VerifyError>> {
        let _ = (req, now);
        None
    }
}

/// Whether a source rejects requests that fail verification (`enforce = true`, the default) or accepts
/// and forwards them marked `X-Hookgate-Verified: false` (shadow mode, for migrating an endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Reject with 401.
    Enforce,
    /// Accept, mark, count and log.
    Shadow,
}

/// The config name of a provider: `provider = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// GitHub: `X-Hub-Signature-256` (or the legacy `X-Hub-Signature`).
    Github,
    /// Stripe: `Stripe-Signature` with `t=` and `v1=` entries.
    Stripe,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks,
    /// Svix: the Standard Webhooks scheme with `svix-*` headers.
    Svix,
    /// A declarative HMAC scheme for any other sender, described in `[sources.hmac]`.
    Hmac,
    /// Typeform: `Typeform-Signature: sha256=<base64>`.
    Typeform,
    /// Intercom: `X-Hub-Signature: sha1=<hex>`, keyed with the app's client secret.
    Intercom,
    /// Bitbucket Cloud and Data Center: `X-Hub-Signature: sha256=<hex>`.
    Bitbucket,
    /// Vercel: `x-vercel-signature: <hex>` (HMAC-SHA1).
    Vercel,
    /// GitLab: the `X-Gitlab-Token` secret token, or a `whsec_` signing token (Standard Webhooks headers).
    Gitlab,
    /// Paddle Billing: `Paddle-Signature` with `ts=` and `h1=` entries.
    Paddle,
    /// Linear: `Linear-Signature`, with `webhookTimestamp` in the body.
    Linear,
    /// Zoom: `x-zm-signature` and `x-zm-request-timestamp`; answers `endpoint.url_validation`.
    Zoom,
    /// Twitch EventSub: `Twitch-Eventsub-Message-Signature`; answers `webhook_callback_verification`.
    Twitch,
    /// Slack: `X-Slack-Signature` (`v0=`) over `v0:{X-Slack-Request-Timestamp}:{body}`.
    Slack,
    /// Shopify: `X-Shopify-Hmac-Sha256`, a base64 HMAC of the body.
    Shopify,
    /// Twilio: `X-Twilio-Signature` over `public_url` and the sorted form parameters.
    Twilio,
    /// Square: `x-square-hmacsha256-signature` over `public_url` and the body.
    Square,
    /// HubSpot: `X-HubSpot-Signature-v3` over method, `public_url`, body and millisecond timestamp.
    Hubspot,
    /// Discord interactions: `X-Signature-Ed25519` over `X-Signature-Timestamp` and the body.
    Discord,
    /// SendGrid signed Event Webhook: `X-Twilio-Email-Event-Webhook-Signature` (ECDSA P-256).
    Sendgrid,
    /// Mailgun: an HMAC of `timestamp` and `token`, inside the body.
    Mailgun,
    /// PagerDuty v3 webhooks: `X-PagerDuty-Signature` with `v1=` entries.
    Pagerduty,
    /// A shared secret as a bearer token: `Authorization: Bearer <secret>`.
    Bearer,
    /// HTTP Basic authentication: `Authorization: Basic base64(user:password)`; secrets are `"user:password"`.
    Basic,
    /// A shared secret in a header or a query parameter that `[sources.token]` names.
    Token,
    /// Meta (WhatsApp, Messenger, Instagram): `X-Hub-Signature-256`; answers the `hub.challenge` GET.
    Meta,
    /// X (Twitter) Account Activity: `x-twitter-webhooks-signature`; answers the CRC GET.
    X,
    /// Okta event hooks: the `Authorization` value set on the hook; answers the verification GET.
    Okta,
    /// Dropbox: `X-Dropbox-Signature` (hex HMAC-SHA256); answers the `challenge` GET.
    Dropbox,
    /// Nylas v3: `X-Nylas-Signature` (hex HMAC-SHA256); answers the `challenge` GET.
    Nylas,
    /// Telnyx: `telnyx-signature-ed25519` over `telnyx-timestamp|body`.
    Telnyx,
    /// Adyen standard webhooks: `additionalData.hmacSignature` of every notification item.
    Adyen,
    /// A sender of the [catalogue](catalogue), by position.
    Catalogue(CatalogueId),
}

impl ProviderKind {
    /// Every provider's config name, code providers first, then the catalogue's: for error
    /// messages and listings.
    pub const NAMES: &'static [&'static str] = &ALL_NAMES;

    /// The code providers, in the order of [`CODE_NAMES`].
    const CODE: [Self; CODE_NAMES.len()] = [
        Self::Github,
        Self::Stripe,
        Self::StandardWebhooks,
        Self::Svix,
        Self::Hmac,
        Self::Typeform,
        Self::Intercom,
        Self::Bitbucket,
        Self::Vercel,
        Self::Gitlab,
        Self::Paddle,
        Self::Linear,
        Self::Zoom,
        Self::Twitch,
        Self::Slack,
        Self::Shopify,
        Self::Twilio,
        Self::Square,
        Self::Hubspot,
        Self::Discord,
        Self::Sendgrid,
        Self::Mailgun,
        Self::Pagerduty,
        Self::Bearer,
        Self::Basic,
        Self::Token,
        Self::Meta,
        Self::X,
        Self::Okta,
        Self::Dropbox,
        Self::Nylas,
        Self::Telnyx,
        Self::Adyen,
    ];

    /// The provider whose config name is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::CODE
            .into_iter()
            .find(|kind| kind.name() == name)
            .or_else(|| CatalogueId::from_name(name).map(Self::Catalogue))
    }

    /// Every provider, in the order of [`NAMES`](Self::NAMES).
    pub fn all() -> impl Iterator<Item = Self> {
        Self::CODE
            .into_iter()
            .chain(CatalogueId::all().map(Self::Catalogue))
    }
}

/// The config names of the code providers, in declaration order.
const CODE_NAMES: [&str; 33] = [
    "github",
    "stripe",
    "standard_webhooks",
    "svix",
    "hmac",
    "typeform",
    "intercom",
    "bitbucket",
    "vercel",
    "gitlab",
    "paddle",
    "linear",
    "zoom",
    "twitch",
    "slack",
    "shopify",
    "twilio",
    "square",
    "hubspot",
    "discord",
    "sendgrid",
    "mailgun",
    "pagerduty",
    "bearer",
    "basic",
    "token",
    "meta",
    "x",
    "okta",
    "dropbox",
    "nylas",
    "telnyx",
    "adyen",
];

/// [`CODE_NAMES`], then the catalogue's names.
const ALL_NAMES: [&str; CODE_NAMES.len() + catalogue::COUNT] = {
    let mut names = [""; CODE_NAMES.len() + catalogue::COUNT];
    let mut i = 0;
    while i < CODE_NAMES.len() {
        names[i] = CODE_NAMES[i];
        i += 1;
    }
    let mut j = 0;
    while j < catalogue::COUNT {
        names[i + j] = catalogue::ENTRIES[j].name;
        j += 1;
    }
    names
};

impl ProviderKind {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::StandardWebhooks => "standard_webhooks",
            Self::Svix => "svix",
            Self::Hmac => "hmac",
            Self::Typeform => "typeform",
            Self::Intercom => "intercom",
            Self::Bitbucket => "bitbucket",
            Self::Vercel => "vercel",
            Self::Gitlab => "gitlab",
            Self::Paddle => "paddle",
            Self::Linear => "linear",
            Self::Zoom => "zoom",
            Self::Twitch => "twitch",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::Twilio => "twilio",
            Self::Square => "square",
            Self::Hubspot => "hubspot",
            Self::Discord => "discord",
            Self::Sendgrid => "sendgrid",
            Self::Mailgun => "mailgun",
            Self::Pagerduty => "pagerduty",
            Self::Bearer => "bearer",
            Self::Basic => "basic",
            Self::Token => "token",
            Self::Meta => "meta",
            Self::X => "x",
            Self::Okta => "okta",
            Self::Dropbox => "dropbox",
            Self::Nylas => "nylas",
            Self::Telnyx => "telnyx",
            Self::Adyen => "adyen",
            Self::Catalogue(id) => id.entry().name,
        }
    }

    /// A code provider's listing, stated in its file.
    fn listing(self) -> &'static Listing {
        match self {
            Self::Github => &github::LISTING,
            Self::Stripe => &stripe::LISTING,
            Self::StandardWebhooks => &standard::STANDARD_LISTING,
            Self::Svix => &standard::SVIX_LISTING,
            Self::Hmac => &hmac::LISTING,
            Self::Typeform => &typeform::LISTING,
            Self::Intercom => &intercom::LISTING,
            Self::Bitbucket => &bitbucket::LISTING,
            Self::Vercel => &vercel::LISTING,
            Self::Gitlab => &gitlab::LISTING,
            Self::Paddle => &paddle::LISTING,
            Self::Linear => &linear::LISTING,
            Self::Zoom => &zoom::LISTING,
            Self::Twitch => &twitch::LISTING,
            Self::Slack => &slack::LISTING,
            Self::Shopify => &shopify::LISTING,
            Self::Twilio => &twilio::LISTING,
            Self::Square => &square::LISTING,
            Self::Hubspot => &hubspot::LISTING,
            Self::Discord => &discord::LISTING,
            Self::Sendgrid => &sendgrid::LISTING,
            Self::Mailgun => &mailgun::LISTING,
            Self::Pagerduty => &pagerduty::LISTING,
            Self::Bearer => &bearer::LISTING,
            Self::Basic => &basic::LISTING,
            Self::Token => &token::LISTING,
            Self::Meta => &meta::LISTING,
            Self::X => &x::LISTING,
            Self::Okta => &okta::LISTING,
            Self::Dropbox => &dropbox::LISTING,
            Self::Nylas => &nylas::LISTING,
            Self::Telnyx => &telnyx::LISTING,
            Self::Adyen => &adyen::LISTING,
            Self::Catalogue(_) => unreachable!("catalogue entries are listed from their data"),
        }
    }

    /// Whether the sender sends the shared secret itself (`bearer`, `basic`, `token`, `okta`) rather than a
    /// signature: such a scheme proves who sent the request, not that its body is unchanged.
    pub fn is_token(self) -> bool {
        matches!(self, Self::Bearer | Self::Basic | Self::Token | Self::Okta)
    }
}

impl<'de> Deserialize<'de> for ProviderKind {
    /// A config name; an unknown one is serde's `unknown variant` error listing [`ProviderKind::NAMES`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::from_name(&name).ok_or_else(|| de::Error::unknown_variant(&name, Self::NAMES))
    }
}

/// What a provider is built from, already resolved by the config loader.
#[derive(Debug, Clone, Copy)]
pub struct ProviderSettings<'a> {
    /// One or more secrets; any of them may match (rotation).
    pub secrets: &'a [Secret],
    /// Overrides the provider's own timestamp window, for timestamped schemes.
    pub tolerance: Option<Duration>,
    /// The URL as the sender signs it, for URL-signing schemes.
    pub public_url: Option<&'a str>,
    /// The scheme description, for `provider = "hmac"` only.
    pub hmac: Option<&'a HmacScheme>,
    /// Where the secret is (`[sources.token]`), for `provider = "token"` only.
    pub token: Option<&'a TokenLocation>,
    /// The header holding the sender's event id (`id_header`), for `bearer`, `basic` and `token` only.
    pub id_header: Option<&'a str>,
    /// `[sources.challenge]`, for the providers whose endpoint check needs settings (`meta`).
    pub challenge: Option<&'a ChallengeSettings>,
}

/// `[sources.challenge]`, resolved: what a sender's endpoint check is answered with.
#[derive(Debug, Clone, Default)]
pub struct ChallengeSettings {
    /// Meta's `hub.verify_token`: the token set with the webhook's callback URL, compared in constant
    /// time (its SHA-256 digests, so that the length does not leak either).
    pub verify_token: Option<Secret>,
}

impl<'a> ProviderSettings<'a> {
    /// The secrets, checked to be at least one and none empty: an empty HMAC key can be forged by anyone.
    pub(crate) fn require_secrets(&self) -> Result<&'a [Secret], ProviderConfigError> {
        if self.secrets.is_empty() {
            return Err(ProviderConfigError::NoSecrets);
        }
        if let Some(index) = self.secrets.iter().position(|s| s.expose().is_empty()) {
            return Err(ProviderConfigError::EmptySecret { index });
        }
        Ok(self.secrets)
    }
}

/// Why a provider cannot be built from its settings. Messages name the entry, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderConfigError {
    /// `secrets` is empty.
    #[error("at least one secret is required")]
    NoSecrets,
    /// A secret is the empty string.
    #[error("secret #{index} is empty")]
    EmptySecret {
        /// 0-based position in `secrets`.
        index: usize,
    },
    /// A secret does not have the form the scheme requires.
    #[error("secret #{index} is invalid: {expected}")]
    InvalidSecret {
        /// 0-based position in `secrets`.
        index: usize,
        /// What the scheme expects, e.g. `expected "whsec_" followed by base64`.
        expected: &'static str,
    },
    /// Another setting is wrong; `key` is relative to the source, e.g. `hmac.signed`.
    #[error("{key}: {message}")]
    Setting {
        /// The key relative to the source.
        key: &'static str,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// Builds the provider for `kind`. This is the only place that maps a [`ProviderKind`] to code.
pub fn build(
    kind: ProviderKind,
    settings: ProviderSettings<'_>,
) -> Result<Arc<dyn Provider>, ProviderConfigError> {
    if kind != ProviderKind::Hmac && settings.hmac.is_some() {
        return Err(ProviderConfigError::Setting {
            key: "hmac",
            message: format!(
                "is only allowed with provider = \"hmac\", not \"{}\"",
                kind.name()
            ),
        });
    }
    if kind != ProviderKind::Token && settings.token.is_some() {
        return Err(ProviderConfigError::Setting {
            key: "token",
            message: format!(
                "is only allowed with provider = \"token\", not \"{}\"",
                kind.name()
            ),
        });
    }
    // Okta sends its event id in the body (`eventId`), so it takes no id_header.
    if !matches!(
        kind,
        ProviderKind::Bearer | ProviderKind::Basic | ProviderKind::Token
    ) && settings.id_header.is_some()
    {
        return Err(ProviderConfigError::Setting {
            key: "id_header",
            message: format!(
                "is only allowed with provider = \"bearer\", \"basic\" or \"token\", not \"{}\"",
                kind.name()
            ),
        });
    }
    if !matches!(kind, ProviderKind::Meta) && settings.challenge.is_some() {
        return Err(ProviderConfigError::Setting {
            key: "challenge",
            message: format!(
                "is only allowed with provider = \"meta\", not \"{}\"",
                kind.name()
            ),
        });
    }
    Ok(match kind {
        ProviderKind::Github => Arc::new(github::GitHub::try_new(settings)?),
        ProviderKind::Stripe => Arc::new(stripe::Stripe::try_new(settings)?),
        ProviderKind::StandardWebhooks => Arc::new(standard::StandardWebhooks::try_new(
            settings,
            standard::Headers::STANDARD,
        )?),
        ProviderKind::Svix => Arc::new(standard::StandardWebhooks::try_new(
            settings,
            standard::Headers::SVIX,
        )?),
        ProviderKind::Hmac => Arc::new(hmac::GenericHmac::try_new(settings)?),
        ProviderKind::Typeform => Arc::new(typeform::Typeform::try_new(settings)?),
        ProviderKind::Intercom => Arc::new(intercom::Intercom::try_new(settings)?),
        ProviderKind::Bitbucket => Arc::new(bitbucket::Bitbucket::try_new(settings)?),
        ProviderKind::Vercel => Arc::new(vercel::Vercel::try_new(settings)?),
        ProviderKind::Gitlab => Arc::new(gitlab::GitLab::try_new(settings)?),
        ProviderKind::Paddle => Arc::new(paddle::Paddle::try_new(settings)?),
        ProviderKind::Linear => Arc::new(linear::Linear::try_new(settings)?),
        ProviderKind::Zoom => Arc::new(zoom::Zoom::try_new(settings)?),
        ProviderKind::Twitch => Arc::new(twitch::Twitch::try_new(settings)?),
        ProviderKind::Slack => Arc::new(slack::Slack::try_new(settings)?),
        ProviderKind::Shopify => Arc::new(shopify::Shopify::try_new(settings)?),
        ProviderKind::Twilio => Arc::new(twilio::Twilio::try_new(settings)?),
        ProviderKind::Square => Arc::new(square::Square::try_new(settings)?),
        ProviderKind::Hubspot => Arc::new(hubspot::HubSpot::try_new(settings)?),
        ProviderKind::Discord => Arc::new(discord::Discord::try_new(settings)?),
        ProviderKind::Sendgrid => Arc::new(sendgrid::SendGrid::try_new(settings)?),
        ProviderKind::Mailgun => Arc::new(mailgun::Mailgun::try_new(settings)?),
        ProviderKind::Pagerduty => Arc::new(pagerduty::PagerDuty::try_new(settings)?),
        ProviderKind::Bearer => Arc::new(bearer::Bearer::try_new(settings)?),
        ProviderKind::Basic => Arc::new(basic::Basic::try_new(settings)?),
        ProviderKind::Token => Arc::new(token::Token::try_new(settings)?),
        ProviderKind::Meta => Arc::new(meta::Meta::try_new(settings)?),
        ProviderKind::X => Arc::new(x::X::try_new(settings)?),
        ProviderKind::Okta => Arc::new(okta::Okta::try_new(settings)?),
        ProviderKind::Dropbox => Arc::new(dropbox::Dropbox::try_new(settings)?),
        ProviderKind::Nylas => Arc::new(nylas::Nylas::try_new(settings)?),
        ProviderKind::Telnyx => Arc::new(telnyx::Telnyx::try_new(settings)?),
        ProviderKind::Adyen => Arc::new(adyen::Adyen::try_new(settings)?),
        ProviderKind::Catalogue(id) => catalogue::build(id, settings)?,
    })
}

/// The HMAC of the concatenated `parts` under `key`, not yet finalized: call `verify_slice` to compare
/// in constant time, or `finalize` to sign.
pub(crate) fn mac<M: ::hmac::digest::Mac + ::hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> M {
    let mut mac = <M as ::hmac::digest::Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Whether any secret's HMAC of the concatenated `parts` equals `tag`, each compared in constant time.
pub(crate) fn any_mac_matches<M: ::hmac::digest::Mac + ::hmac::digest::KeyInit>(
    secrets: &[Secret],
    parts: &[&[u8]],
    tag: &[u8],
) -> bool {
    secrets
        .iter()
        .any(|secret| mac::<M>(secret.expose(), parts).verify_slice(tag).is_ok())
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_secs(now: SystemTime) -> i64 {
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// A header for a signed request; `value` must be visible ASCII (it is built by the provider).
pub(crate) fn header(name: &'static str, value: impl Into<String>) -> (HeaderName, HeaderValue) {
    let value = HeaderValue::from_str(&value.into()).expect("providers build visible-ASCII header values");
    (HeaderName::from_static(name), value)
}

/// The top-level string `field` of a JSON object body, if present and not empty. Other values are
/// skipped without being built, so a large body costs one pass; a body that is not a JSON object
/// (an array, a form) has no fields.
pub(crate) fn json_string_field(body: &[u8], field: &str) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    struct Field<'a>(&'a str);

    impl<'de> Visitor<'de> for Field<'_> {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == self.0 && found.is_none() {
                    // A non-string value is not an id: skip it like any other.
                    found = map.next_value::<serde_json::Value>()?.as_str().map(str::to_owned);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }

    impl<'de> DeserializeSeed<'de> for Field<'_> {
        type Value = Option<String>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
            d.deserialize_map(self)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Field(field).deserialize(&mut de).ok()??;
    de.end().ok()?;
    Some(value).filter(|id| !id.is_empty())
}

/// The first value of query parameter `name` in `uri`, form-decoded, if present.
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// The value a sender's `GET` challenge asks to be echoed: present, not empty, at most
/// [`MAX_ECHO_LEN`] bytes, and visible ASCII only, so that an echo can never carry markup-breaking
/// whitespace, control characters or a body that could pass for an event.
pub(crate) fn echo_value(value: Option<String>, name: &'static str) -> Result<String, VerifyError> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingParameter(name))?;
    if value.len() > MAX_ECHO_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(VerifyError::MalformedParameter(name));
    }
    Ok(value)
}

/// The longest challenge value echoed back (senders send tens of characters).
pub(crate) const MAX_ECHO_LEN: usize = 512;

/// A plain-text echo of a `GET` challenge, with `X-Content-Type-Options: nosniff` so that no browser
/// reads it as anything else (Dropbox requires both).
pub(crate) fn text_echo(value: String) -> Handshake {
    Handshake {
        content_type: "text/plain",
        headers: vec![(
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        )],
        body: value.into_bytes(),
    }
}

/// The fallback event id for senders that give none: `sha256:` and the hex SHA-256 of the body.
pub fn body_digest_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Checks a timestamp (Unix seconds) against `now`: it must be within `tolerance` of now, in the
/// past **or the future**. Every timestamped provider checks its window here (or in
/// [`check_timestamp_millis`]).
///
/// Several senders' own libraries bound only the past (Stripe's, Paddle's, HubSpot's, Twitch's, and
/// Mailgun's and Zoom's docs); with them, a request signed with a timestamp decades ahead verifies
/// and can be replayed until then. The future is bounded by the same tolerance rather than a separate
/// skew allowance: a sender's clock running ahead of ours costs as much as one running behind, and
/// the one setting bounds both. `age_secs` is negative for a timestamp ahead of now.
pub(crate) fn check_timestamp(
    timestamp: i64,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let age_secs = unix_secs(now).saturating_sub(timestamp);
    let tol = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    within(age_secs, tol, age_secs)
}

/// [`check_timestamp`] for timestamps in Unix milliseconds, compared in milliseconds (HubSpot, Linear).
pub(crate) fn check_timestamp_millis(
    timestamp_ms: i64,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let age_ms = unix_millis(now).saturating_sub(timestamp_ms);
    let tol_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    within(age_ms, tol_ms, age_ms / 1000)
}

/// `age` (in some unit) is within `tolerance` (same unit, not negative) either way.
fn within(age: i64, tolerance: i64, age_secs: i64) -> Result<(), VerifyError> {
    // `unsigned_abs`: no overflow for i64::MIN (a timestamp of i64::MAX seconds).
    if age.unsigned_abs() > tolerance.unsigned_abs() {
        return Err(VerifyError::TimestampOutsideTolerance { age_secs });
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn unix_millis(now: SystemTime) -> i64 {
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod timestamp_tests {
    use std::time::Duration;

    use super::{check_timestamp, check_timestamp_millis, test_support::at, VerifyError};

    const NOW: i64 = 1_700_000_000;
    const YEARS_31: i64 = 31 * 365 * 24 * 3600;

    fn outside(age_secs: i64) -> Result<(), VerifyError> {
        Err(VerifyError::TimestampOutsideTolerance { age_secs })
    }

    #[test]
    fn the_window_bounds_the_past_and_the_future_alike() {
        let (now, tol) = (at(NOW as u64), Duration::from_secs(300));
        assert_eq!(check_timestamp(NOW - 300, now, tol), Ok(()));
        assert_eq!(check_timestamp(NOW + 300, now, tol), Ok(()));
        assert_eq!(check_timestamp(NOW - 301, now, tol), outside(301));
        assert_eq!(check_timestamp(NOW + 301, now, tol), outside(-301));
        assert_eq!(check_timestamp(NOW + YEARS_31, now, tol), outside(-YEARS_31));
        assert_eq!(check_timestamp(i64::MAX, now, tol), outside(NOW - i64::MAX));
        assert_eq!(check_timestamp(i64::MIN, now, tol), outside(i64::MAX));
        // A zero window takes only the current second.
        assert_eq!(check_timestamp(NOW, now, Duration::ZERO), Ok(()));
        assert_eq!(check_timestamp(NOW + 1, now, Duration::ZERO), outside(-1));
    }

    #[test]
    fn milliseconds_are_compared_in_milliseconds_both_ways() {
        let now_ms = NOW * 1000;
        let (now, tol) = (at(NOW as u64), Duration::from_secs(300));
        assert_eq!(check_timestamp_millis(now_ms + 300_000, now, tol), Ok(()));
        assert_eq!(check_timestamp_millis(now_ms - 300_000, now, tol), Ok(()));
        assert_eq!(check_timestamp_millis(now_ms + 300_001, now, tol), outside(-300));
        assert_eq!(check_timestamp_millis(now_ms - 300_001, now, tol), outside(300));
        assert_eq!(
            check_timestamp_millis(now_ms + YEARS_31 * 1000, now, tol),
            outside(-YEARS_31)
        );
        assert!(check_timestamp_millis(i64::MAX, now, tol).is_err());
        assert!(check_timestamp_millis(i64::MIN, now, tol).is_err());
    }
}

#[cfg(test)]
mod json_field_tests {
    use super::json_string_field;

    #[test]
    fn finds_top_level_strings_only() {
        assert_eq!(
            json_string_field(br#"{"a":1,"id":"evt_1","b":{"id":"x"}}"#, "id").as_deref(),
            Some("evt_1")
        );
        assert_eq!(
            json_string_field(br#" {"id":"with \"quote\""}"#, "id").as_deref(),
            Some("with \"quote\"")
        );
        assert_eq!(json_string_field(br#"{"b":{"id":"nested"}}"#, "id"), None);
        assert_eq!(json_string_field(br#"{"id":42}"#, "id"), None);
        assert_eq!(json_string_field(br#"{"id":""}"#, "id"), None);
        assert_eq!(
            json_string_field(br#"["evt_1"]"#, "id"),
            None,
            "an array is not an object"
        );
        assert_eq!(json_string_field(b"id=evt_1", "id"), None);
        assert_eq!(json_string_field(br#"{"id":"evt_1"} trailing"#, "id"), None);
    }
}

#[cfg(test)]
pub(crate) mod conformance;

/// Helpers shared by the providers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::{Duration, SystemTime};

    use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

    use super::{EventMeta, Provider, VerifyError, WebhookRequest};

    /// The instant `secs` seconds after the Unix epoch.
    pub(crate) fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The head of a `POST` to `target` with `headers` after `p.strip_credentials`.
    pub(crate) fn stripped(p: &dyn Provider, target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut req = http::Request::post(target);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let (mut head, ()) = req.body(()).expect("test requests are valid").into_parts();
        p.strip_credentials(&mut head);
        head
    }

    /// Runs `provider.challenge` on a request of `method` to `target` (path and query) with `headers`
    /// and an empty body, at `now` (Unix seconds).
    pub(crate) fn challenge(
        provider: &dyn Provider,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        now: u64,
    ) -> Option<Result<super::Handshake, VerifyError>> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("test header names are valid");
            let value = HeaderValue::from_str(value).expect("test header values are valid");
            map.append(name, value);
        }
        let uri: Uri = target.parse().expect("test targets are valid");
        let req = WebhookRequest {
            method: &method,
            uri: &uri,
            headers: &map,
            body: b"",
        };
        provider.challenge(&req, at(now))
    }

    /// Runs `provider.verify` on a `POST /hook` with `headers` and `body` at `now` (Unix seconds).
    pub(crate) fn verify(
        provider: &dyn Provider,
        headers: &[(&str, &str)],
        body: &[u8],
        now: u64,
    ) -> Result<EventMeta, VerifyError> {
        verify_at(provider, "/hook", headers, body, now)
    }

    /// Like [`verify`], on a `POST` to `target` (path and query).
    pub(crate) fn verify_at(
        provider: &dyn Provider,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: u64,
    ) -> Result<EventMeta, VerifyError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("test header names are valid");
            let value = HeaderValue::from_str(value).expect("test header values are valid");
            map.append(name, value);
        }
        let method = Method::POST;
        let uri: Uri = target.parse().expect("test targets are valid");
        let req = WebhookRequest {
            method: &method,
            uri: &uri,
            headers: &map,
            body,
        };
        provider.verify(&req, at(now))
    }
}
