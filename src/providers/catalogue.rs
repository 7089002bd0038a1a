//! The catalogue: senders whose scheme is data, compiled into the binary and interpreted by the
//! generic engines, with no code of their own.
//!
//! Most senders sign one way: an HMAC of the body, or of a template of a timestamp, an id, the body
//! (and, for a few, the URL they call), written as hex or base64 after a prefix, in one header or as a
//! list; a timestamp in seconds, milliseconds or RFC 3339 with a window. Each such sender is one
//! [`Entry`] below: its header names, algorithm, encoding, prefix, signed template, list layout,
//! timestamp (where, unit, window), key form, event-id source and the document or SDK it follows.
//! [`GenericHmac`] interprets an [`Engine::Hmac`] entry; an [`Engine::Standard`] entry is a preset of
//! the Standard Webhooks provider under the sender's name.
//!
//! Adding a sender of that shape is one entry here and its fixture, `tests/fixtures/catalogue/NAME.json`
//! (its published example where there is one, cited there); the conformance cases run for every entry
//! (`catalogue/tests.rs`), and `hookgate providers` and the README's provider table list it. A sender
//! whose scheme needs code (asymmetric signatures, fields inside the body, handshakes) is a file of
//! its own behind the [`Provider`](super::Provider) trait instead.
//!
//! Every window is two-sided: the sender's documented tolerance bounds the past and the future alike
//! (see [`check_timestamp`](super::check_timestamp)), and `tolerance` in the source overrides it.

use std::{sync::Arc, time::Duration};

use EventId::{Digest, Header as IdHeader, JsonField, JsonPointer};
use HmacAlgorithm::{Sha1, Sha256, Sha512};
use HmacEncoding::{Base64, Base64Url, Hex};

use super::{
    hmac::{
        EventId, GenericHmac, HmacAlgorithm, HmacEncoding, KeyForm, Layout, Part, Spec, Timestamp,
        TimestampSource, TimestampUnit,
    },
    standard::{self, Headers},
    Provider, ProviderConfigError, ProviderSettings,
};

/// One sender of the catalogue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// The config name, as in `provider = "gitea"`.
    pub(crate) name: &'static str,
    /// The sender's name as its docs write it.
    pub(crate) title: &'static str,
    /// The document or official SDK the entry follows.
    pub(crate) docs: &'static str,
    /// How it is verified.
    pub(crate) engine: Engine,
}

/// The engine that interprets an entry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Engine {
    /// The generic HMAC engine.
    Hmac(Spec),
    /// The Standard Webhooks scheme under these header names; `key` says how the secret becomes the key.
    Standard {
        /// The header names.
        headers: Headers,
        /// How the secret becomes the HMAC key.
        key: standard::KeyForm,
    },
}

/// The position of an entry in [`ENTRIES`]; built only from a name, so it is always in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CatalogueId(u16);

impl CatalogueId {
    /// The entry named `name`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        ENTRIES
            .iter()
            .position(|e| e.name == name)
            .map(|i| Self(u16::try_from(i).expect("fewer than 65536 entries")))
    }

    /// Every entry, in catalogue order.
    pub(crate) fn all() -> impl Iterator<Item = Self> {
        (0..ENTRIES.len()).map(|i| Self(u16::try_from(i).expect("fewer than 65536 entries")))
    }

    /// The entry.
    pub(crate) fn entry(self) -> &'static Entry {
        &ENTRIES[usize::from(self.0)]
    }
}

/// Builds the provider of a catalogue entry.
pub(crate) fn build(
    id: CatalogueId,
    settings: ProviderSettings<'_>,
) -> Result<Arc<dyn Provider>, ProviderConfigError> {
    let entry = id.entry();
    Ok(match entry.engine {
        Engine::Hmac(ref spec) => Arc::new(GenericHmac::from_spec(entry.name, spec, settings)?),
        Engine::Standard { headers, key } => Arc::new(standard::StandardWebhooks::named(
            entry.name, settings, headers, key,
        )?),
    })
}

/// The number of entries.
pub(crate) const COUNT: usize = ENTRIES.len();

/// Seconds, for windows.
const fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

/// The body alone.
const BODY: &[Part] = &[Part::Body];

/// An HMAC of the body alone, hex, in one header, with `prefix`; the commonest shape.
const fn body_hex(
    header: &'static [&'static str],
    algorithm: HmacAlgorithm,
    prefix: &'static str,
    id: EventId,
) -> Spec {
    body_signed(header, algorithm, HmacEncoding::Hex, prefix, id)
}

/// An HMAC of the body alone, in one header.
const fn body_signed(
    headers: &'static [&'static str],
    algorithm: HmacAlgorithm,
    encoding: HmacEncoding,
    prefix: &'static str,
    id: EventId,
) -> Spec {
    Spec {
        headers,
        layout: Layout::Single,
        algorithm,
        encoding,
        prefix,
        key: KeyForm::Raw,
        signed: BODY,
        timestamp: None,
        id,
    }
}

/// `[$prefix1, $prefix2, ...]`: a family of numbered headers, one per key.
macro_rules! numbered {
    ($prefix:literal; $($n:literal)*) => {
        [$(concat!($prefix, $n)),*]
    };
}

/// DocuSign Connect sends one signature per active HMAC key of the account, in
/// `X-DocuSign-Signature-1` up to `X-DocuSign-Signature-100` (its ceiling of 100 keys).
const DOCUSIGN_SIGNATURES: &[&str] = &numbered!("X-DocuSign-Signature-";
    1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35
    36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67
    68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99
    100);

/// The catalogue, by config name.
pub(crate) const ENTRIES: &[Entry] = &[
    // Airtable: `X-Airtable-Content-MAC: hmac-sha256=<hex>`, keyed with the webhook's
    // `macSecretBase64` decoded.
    Entry {
        name: "airtable",
        title: "Airtable",
        docs: "https://airtable.com/developers/web/api/webhooks-overview#webhook-notification-delivery",
        engine: Engine::Hmac(Spec {
            key: KeyForm::Base64,
            ..body_hex(&["X-Airtable-Content-MAC"], Sha256, "hmac-sha256=", Digest)
        }),
    },
    // Box signs the body followed by `BOX-DELIVERY-TIMESTAMP` (RFC 3339) with each of two keys, one
    // signature per key; any configured key may match either. The SDKs reject a delivery more than
    // ten minutes old or ahead. `BOX-DELIVERY-ID` changes when Box retries while the body's `id`
    // stays, so the body's `id` is the event id.
    Entry {
        name: "box",
        title: "Box",
        docs: "https://developer.box.com/guides/webhooks/v2/signatures-v2/",
        engine: Engine::Hmac(Spec {
            headers: &["BOX-SIGNATURE-PRIMARY", "BOX-SIGNATURE-SECONDARY"],
            layout: Layout::Single,
            algorithm: Sha256,
            encoding: Base64,
            prefix: "",
            key: KeyForm::Raw,
            signed: &[Part::Body, Part::Timestamp],
            timestamp: Some(Timestamp {
                source: TimestampSource::Header("BOX-DELIVERY-TIMESTAMP"),
                unit: TimestampUnit::Rfc3339,
                window: secs(600),
            }),
            id: JsonField("id"),
        }),
    },
    // Brex signs the Standard Webhooks way under `Webhook-*` headers; the secrets listed by
    // `GET /v1/webhooks/secrets` (two while one is rotated) are base64, `whsec_` accepted.
    Entry {
        name: "brex",
        title: "Brex",
        docs: "https://developer.brex.com/docs/webhooks/",
        engine: Engine::Standard {
            headers: Headers::STANDARD,
            key: standard::KeyForm::Specified,
        },
    },
    // Stripe's shape: `t=<secs>,v1=<hex HMAC-SHA256("{t}.{body}")>`; the docs' example rejects a `t`
    // more than three minutes old.
    Entry {
        name: "calendly",
        title: "Calendly",
        docs: "https://developer.calendly.com/api-docs/overview/webhooks/webhook-signatures",
        engine: Engine::Hmac(Spec {
            headers: &["Calendly-Webhook-Signature"],
            layout: Layout::Pairs {
                separator: ",",
                timestamp_key: Some("t"),
                signature_key: "v1",
                groups: None,
            },
            algorithm: Sha256,
            encoding: Hex,
            prefix: "",
            key: KeyForm::Raw,
            signed: &[Part::Timestamp, Part::Literal("."), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Signature,
                unit: TimestampUnit::Seconds,
                window: secs(180),
            }),
            id: Digest,
        }),
    },
    Entry {
        name: "checkout",
        title: "Checkout.com",
        docs: "https://www.checkout.com/docs/developer-resources/webhooks/manage-webhooks/receive-webhooks",
        engine: Engine::Hmac(body_hex(&["Cko-Signature"], Sha256, "", JsonField("id"))),
    },
    // `circleci-signature` is a comma list of versioned signatures; only `v1` exists.
    Entry {
        name: "circleci",
        title: "CircleCI",
        docs: "https://circleci.com/docs/webhooks/#validate-webhooks",
        engine: Engine::Hmac(Spec {
            layout: Layout::List { separator: "," },
            ..body_hex(&["circleci-signature"], Sha256, "v1=", JsonField("id"))
        }),
    },
    // Clerk delivers through Svix.
    Entry {
        name: "clerk",
        title: "Clerk",
        docs: "https://clerk.com/docs/webhooks/sync-data",
        engine: Engine::Standard {
            headers: Headers::SVIX,
            key: standard::KeyForm::Specified,
        },
    },
    Entry {
        name: "coinbase_commerce",
        title: "Coinbase Commerce",
        docs: "https://docs.cdp.coinbase.com/commerce/api-arcitecture/webhooks-security",
        // The body wraps the event: `{"id": <delivery>, "event": {"id": ...}}`.
        engine: Engine::Hmac(body_hex(&["X-CC-Webhook-Signature"], Sha256, "", JsonPointer("/event/id"))),
    },
    // DocuSign Connect: base64(HMAC-SHA256(key, body)), one header per active key (see
    // [`DOCUSIGN_SIGNATURES`]); the key is the secret as Connect shows it, used as UTF-8 text (not
    // base64-decoded, as DocuSign's own examples do). Connect signs no timestamp and documents no
    // delivery id, and a retry's body carries a new `retryCount`, so the id is the body's digest.
    Entry {
        name: "docusign",
        title: "Docusign Connect",
        docs: "https://developers.docusign.com/platform/webhooks/connect/validate/",
        engine: Engine::Hmac(body_signed(DOCUSIGN_SIGNATURES, Sha256, Base64, "", Digest)),
    },
    // `ElevenLabs-Signature: t=<secs>,v0=<hex HMAC-SHA256("{t}.{body}")>`; the SDKs refuse a `t` more
    // than 30 minutes old.
    Entry {
        name: "elevenlabs",
        title: "ElevenLabs",
        docs: "https://elevenlabs.io/docs/product-guides/administration/webhooks",
        engine: Engine::Hmac(Spec {
            headers: &["ElevenLabs-Signature"],
            layout: Layout::Pairs {
                separator: ",",
                timestamp_key: Some("t"),
                signature_key: "v0",
                groups: None,
            },
            signed: &[Part::Timestamp, Part::Literal("."), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Signature,
                unit: TimestampUnit::Seconds,
                window: secs(30 * 60),
            }),
            ..body_hex(&["ElevenLabs-Signature"], Sha256, "", Digest)
        }),
    },
    Entry {
        name: "fastspring",
        title: "FastSpring",
        docs: "https://developer.fastspring.com/reference/message-secret-and-security",
        engine: Engine::Hmac(body_signed(&["X-FS-Signature"], Sha256, Base64, "", Digest)),
    },
    // Frame.io: Slack's shape, `v0=<hex>` over `"v0:{timestamp}:{body}"`, five minutes.
    Entry {
        name: "frameio",
        title: "Frame.io",
        docs: "https://developer.frame.io/docs/automations-webhooks/webhooks-overview#security",
        engine: Engine::Hmac(Spec {
            signed: &[Part::Literal("v0:"), Part::Timestamp, Part::Literal(":"), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Header("X-Frameio-Request-Timestamp"),
                unit: TimestampUnit::Seconds,
                window: secs(300),
            }),
            ..body_hex(&["X-Frameio-Signature"], Sha256, "v0=", Digest)
        }),
    },
    // Gitea signs the payload it stores (`services/webhook/deliver.go`): with the JSON content type
    // that is the body; with the form type the body is `payload=...` and does not verify.
    Entry {
        name: "gitea",
        title: "Gitea",
        docs: "https://docs.gitea.com/usage/webhooks",
        engine: Engine::Hmac(body_hex(&["X-Gitea-Signature"], Sha256, "", IdHeader("X-Gitea-Delivery"))),
    },
    Entry {
        name: "gocardless",
        title: "GoCardless",
        docs: "https://developer.gocardless.com/getting-started/staying-up-to-date-with-webhooks",
        engine: Engine::Hmac(body_hex(&["Webhook-Signature"], Sha256, "", Digest)),
    },
    // As Gitea (`internal/database/webhook.go`): the JSON payload is signed, so use the JSON content
    // type; `X-Gogs-Delivery` is the hook task's UUID.
    Entry {
        name: "gogs",
        title: "Gogs",
        docs: "https://gogs.io/docs/features/webhook",
        engine: Engine::Hmac(body_hex(&["X-Gogs-Signature"], Sha256, "", IdHeader("X-Gogs-Delivery"))),
    },
    // Jira Cloud admin webhooks with a secret.
    Entry {
        name: "jira",
        title: "Jira Cloud",
        docs: "https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks",
        engine: Engine::Hmac(body_hex(
            &["X-Hub-Signature"],
            Sha256,
            "sha256=",
            IdHeader("X-Atlassian-Webhook-Identifier"),
        )),
    },
    Entry {
        name: "launchdarkly",
        title: "LaunchDarkly",
        docs: "https://docs.launchdarkly.com/home/infrastructure/webhooks#sign-webhooks",
        engine: Engine::Hmac(body_hex(&["X-LD-Signature"], Sha256, "", Digest)),
    },
    Entry {
        name: "lemonsqueezy",
        title: "Lemon Squeezy",
        docs: "https://docs.lemonsqueezy.com/help/webhooks/signing-requests",
        engine: Engine::Hmac(body_hex(&["X-Signature"], Sha256, "", Digest)),
    },
    // Outgoing webhooks: the security token Teams shows is the base64 of the HMAC key.
    Entry {
        name: "microsoft_teams",
        title: "Microsoft Teams (outgoing webhooks)",
        docs: "https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-outgoing-webhook",
        engine: Engine::Hmac(Spec {
            key: KeyForm::Base64,
            ..body_signed(&["Authorization"], Sha256, Base64, "HMAC ", JsonField("id"))
        }),
    },
    Entry {
        name: "modern_treasury",
        title: "Modern Treasury",
        docs: "https://docs.moderntreasury.com/platform/docs/signature-verification",
        engine: Engine::Hmac(body_hex(&["X-Signature"], Sha256, "", Digest)),
    },
    // `Mux-Signature: t=<secs>,v1=<hex HMAC-SHA256("{t}.{body}")>`; the SDKs' tolerance is 300 s.
    Entry {
        name: "mux",
        title: "Mux",
        docs: "https://docs.mux.com/core/verify-webhook-signatures",
        engine: Engine::Hmac(Spec {
            layout: Layout::Pairs {
                separator: ",",
                timestamp_key: Some("t"),
                signature_key: "v1",
                groups: None,
            },
            signed: &[Part::Timestamp, Part::Literal("."), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Signature,
                unit: TimestampUnit::Seconds,
                window: secs(300),
            }),
            ..body_hex(&["Mux-Signature"], Sha256, "", JsonField("id"))
        }),
    },
    // Keyed with the subscription's `verification_token`. Notion's first request, which carries
    // that token unsigned, is not answered: read the token from Notion's integration settings.
    Entry {
        name: "notion",
        title: "Notion",
        docs: "https://developers.notion.com/reference/webhooks#step-3-validating-event-payloads-recommended",
        engine: Engine::Hmac(body_hex(&["X-Notion-Signature"], Sha256, "sha256=", JsonField("id"))),
    },
    Entry {
        name: "openai",
        title: "OpenAI",
        docs: "https://platform.openai.com/docs/guides/webhooks",
        engine: Engine::Standard {
            headers: Headers::STANDARD,
            key: standard::KeyForm::Specified,
        },
    },
    // `Persona-Signature: t=<secs>,v1=<hex>`, a space between sets while a secret is rotated.
    Entry {
        name: "persona",
        title: "Persona",
        docs: "https://docs.withpersona.com/docs/webhooks-best-practices#checking-signatures",
        engine: Engine::Hmac(Spec {
            layout: Layout::Pairs {
                separator: ",",
                timestamp_key: Some("t"),
                signature_key: "v1",
                groups: Some(' '),
            },
            signed: &[Part::Timestamp, Part::Literal("."), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Signature,
                unit: TimestampUnit::Seconds,
                window: None,
            }),
            ..body_hex(&["Persona-Signature"], Sha256, "", JsonPointer("/data/id"))
        }),
    },
    // Polar's SDKs base64-encode the secret before the Standard Webhooks library decodes it: the
    // key is the secret's bytes.
    Entry {
        name: "polar",
        title: "Polar",
        docs: "https://docs.polar.sh/integrate/webhooks/delivery",
        engine: Engine::Standard {
            headers: Headers::STANDARD,
            key: standard::KeyForm::Raw,
        },
    },
    // Pusher Channels webhooks, keyed with the app secret (`X-Pusher-Key` names the app key).
    Entry {
        name: "pusher",
        title: "Pusher Channels",
        docs: "https://pusher.com/docs/channels/server_api/webhooks/#authentication",
        engine: Engine::Hmac(body_hex(&["X-Pusher-Signature"], Sha256, "", Digest)),
    },
    Entry {
        name: "razorpay",
        title: "Razorpay",
        docs: "https://razorpay.com/docs/webhooks/validate-test/",
        engine: Engine::Hmac(body_hex(&["X-Razorpay-Signature"], Sha256, "", IdHeader("x-razorpay-event-id"))),
    },
    // `recurly-signature: <ms>,<hex>[,<hex>...]`, over `"{ms}.{body}"`, one signature per active key;
    // the client libraries' default tolerance is five minutes (`DEFAULT_WEBHOOK_TOLERANCE` in
    // recurly-client-go).
    Entry {
        name: "recurly",
        title: "Recurly",
        docs: "https://docs.recurly.com/recurly-subscriptions/docs/signature-verification",
        engine: Engine::Hmac(Spec {
            headers: &["recurly-signature"],
            layout: Layout::TimestampFirst { separator: "," },
            algorithm: Sha256,
            encoding: Hex,
            prefix: "",
            key: KeyForm::Raw,
            signed: &[Part::Timestamp, Part::Literal("."), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Signature,
                unit: TimestampUnit::Millis,
                window: secs(300),
            }),
            id: JsonField("id"),
        }),
    },
    Entry {
        name: "replicate",
        title: "Replicate",
        docs: "https://replicate.com/docs/topics/webhooks/verify-webhook",
        engine: Engine::Standard {
            headers: Headers::STANDARD,
            key: standard::KeyForm::Specified,
        },
    },
    // Resend delivers through Svix.
    Entry {
        name: "resend",
        title: "Resend",
        docs: "https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests",
        engine: Engine::Standard {
            headers: Headers::SVIX,
            key: standard::KeyForm::Specified,
        },
    },
    // `t=<ms>,v1=<base64url, unpadded>` over `"{t}.{body}"`; `@sanity/webhook` checks no window.
    Entry {
        name: "sanity",
        title: "Sanity (GROQ-powered webhooks)",
        docs: "https://github.com/sanity-io/webhook-toolkit/blob/main/src/signature.ts",
        engine: Engine::Hmac(Spec {
            headers: &["sanity-webhook-signature"],
            layout: Layout::Pairs {
                separator: ",",
                timestamp_key: Some("t"),
                signature_key: "v1",
                groups: None,
            },
            algorithm: Sha256,
            encoding: Base64Url,
            prefix: "",
            key: KeyForm::Raw,
            signed: &[Part::Timestamp, Part::Literal("."), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Signature,
                unit: TimestampUnit::Millis,
                window: None,
            }),
            id: Digest,
        }),
    },
    Entry {
        name: "sentry",
        title: "Sentry (integration platform)",
        docs: "https://docs.sentry.io/integrations/integration-platform/webhooks/",
        // Keyed with the integration's client secret; `Sentry-Hook-Timestamp` is not signed.
        engine: Engine::Hmac(body_hex(&["Sentry-Hook-Signature"], Sha256, "", IdHeader("Request-ID"))),
    },
    Entry {
        name: "tally",
        title: "Tally",
        docs: "https://tally.so/help/webhooks",
        engine: Engine::Hmac(body_signed(&["Tally-Signature"], Sha256, Base64, "", JsonField("eventId"))),
    },
    // HCP Terraform / Terraform Enterprise generic notifications, keyed with the configuration's token.
    Entry {
        name: "terraform_cloud",
        title: "HCP Terraform (notifications)",
        docs: "https://developer.hashicorp.com/terraform/cloud-docs/api-docs/notification-configurations#notification-authenticity",
        engine: Engine::Hmac(body_hex(&["X-TFE-Notification-Signature"], Sha512, "", Digest)),
    },
    // Trello signs the body followed by the callback URL it calls: `public_url` is required.
    Entry {
        name: "trello",
        title: "Trello",
        docs: "https://developer.atlassian.com/cloud/trello/guides/rest-api/webhooks/#webhook-signatures",
        engine: Engine::Hmac(Spec {
            signed: &[Part::Body, Part::PublicUrl],
            ..body_signed(&["X-Trello-Webhook"], Sha1, Base64, "", JsonPointer("/action/id"))
        }),
    },
    Entry {
        name: "webex",
        title: "Webex",
        docs: "https://developer.webex.com/docs/webhooks#handling-requests-from-webex",
        // The body's `id` is the webhook's, the same in every event it sends: the id is the digest.
        engine: Engine::Hmac(body_hex(&["X-Spark-Signature"], Sha1, "", Digest)),
    },
    // `x-webflow-signature: <hex HMAC-SHA256("{timestamp}:{body}")>`, `x-webflow-timestamp` in
    // milliseconds, within five minutes.
    Entry {
        name: "webflow",
        title: "Webflow",
        docs: "https://developers.webflow.com/data/docs/working-with-webhooks#validating-request-signatures",
        engine: Engine::Hmac(Spec {
            signed: &[Part::Timestamp, Part::Literal(":"), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Header("x-webflow-timestamp"),
                unit: TimestampUnit::Millis,
                window: secs(300),
            }),
            ..body_hex(&["x-webflow-signature"], Sha256, "", Digest)
        }),
    },
    Entry {
        name: "woocommerce",
        title: "WooCommerce",
        docs: "https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks",
        engine: Engine::Hmac(body_signed(
            &["X-WC-Webhook-Signature"],
            Sha256,
            Base64,
            "",
            IdHeader("X-WC-Webhook-Delivery-ID"),
        )),
    },
    // `WorkOS-Signature: t=<ms>, v1=<hex HMAC-SHA256("{t}.{body}")>`; the SDKs' tolerance is 180 s
    // (`verifyHeader` in workos-node, `DEFAULT_TOLERANCE` in workos-python).
    Entry {
        name: "workos",
        title: "WorkOS",
        docs: "https://workos.com/docs/events/data-syncing/webhooks",
        engine: Engine::Hmac(Spec {
            headers: &["WorkOS-Signature"],
            layout: Layout::Pairs {
                separator: ", ",
                timestamp_key: Some("t"),
                signature_key: "v1",
                groups: None,
            },
            algorithm: Sha256,
            encoding: Hex,
            prefix: "",
            key: KeyForm::Raw,
            signed: &[Part::Timestamp, Part::Literal("."), Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Signature,
                unit: TimestampUnit::Millis,
                window: secs(180),
            }),
            id: JsonField("id"),
        }),
    },
    Entry {
        name: "xero",
        title: "Xero",
        docs: "https://developer.xero.com/documentation/guides/webhooks/configuring-your-server/",
        engine: Engine::Hmac(body_signed(&["x-xero-signature"], Sha256, Base64, "", Digest)),
    },
    // base64(HMAC-SHA256(TIMESTAMP + BODY)), the timestamp in RFC 3339; Zendesk documents no window.
    Entry {
        name: "zendesk",
        title: "Zendesk",
        docs: "https://developer.zendesk.com/documentation/webhooks/verifying/",
        engine: Engine::Hmac(Spec {
            signed: &[Part::Timestamp, Part::Body],
            timestamp: Some(Timestamp {
                source: TimestampSource::Header("X-Zendesk-Webhook-Signature-Timestamp"),
                unit: TimestampUnit::Rfc3339,
                window: None,
            }),
            ..body_signed(&["X-Zendesk-Webhook-Signature"], Sha256, Base64, "", Digest)
        }),
    },
];

#[cfg(test)]
mod tests;
