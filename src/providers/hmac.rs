//! The generic HMAC engine: a declarative scheme for senders without a provider of their own
//! (`provider = "hmac"` and a `[sources.hmac]` table), and the interpreter of the compiled-in
//! [catalogue](super::catalogue), whose entries are each a [`Spec`].
//!
//! A catalogue [`Spec`] can say more than a `[sources.hmac]` table: several signature headers, a
//! [`Layout`] with several signatures or a `t=` timestamp inside the signature header, a timestamp in
//! milliseconds or RFC 3339 with the sender's own window, a base64 key, the `public_url` in the signed
//! template and an event id at a JSON pointer. The rules below hold for both; where a catalogue entry
//! differs (a list layout), the entry's docs say so.
//!
//! ```toml
//! [sources.hmac]
//! header = "X-Signature"                       # where the signature is
//! algorithm = "sha256"                         # sha1 | sha256 | sha512
//! encoding = "hex"                             # hex | base64
//! prefix = "sha256="                           # stripped before decoding
//! signed = "{header:X-Timestamp}.{body}"       # what is signed
//! timestamp_header = "X-Timestamp"             # optional replay window
//! id_header = "X-Delivery"                     # optional event id
//! ```
//!
//! Scheme:
//!
//! - The signature header holds exactly **one** signature: `prefix` followed by the HMAC tag in `encoding`.
//!   The value is not split on commas or spaces; a sender that sends several signatures in one header
//!   needs a provider of its own. The prefix is matched exactly (case-sensitive). Hex is accepted in
//!   either case (the tag is decoded, then compared); base64 is the standard alphabet with padding.
//!   A missing prefix, a value that does not decode or a tag of the wrong length is a malformed signature.
//! - The MAC input is the `signed` template with its tokens replaced: `{body}` by the raw body bytes and
//!   `{header:Name}` by the named header's value bytes as received. Other text is literal; `{{` and `}}`
//!   stand for literal braces. The template must contain `{body}`.
//! - The key is each secret used whole, as bytes; any secret may match.
//! - With `timestamp_header`, that header must hold Unix seconds within the source's `tolerance` (default
//!   5 minutes) of now, past or future. It is checked after the signature. Include it in `signed`
//!   (`{header:...}`) for it to protect against replays: an unsigned timestamp can be rewritten.
//! - The event id is the `id_header` value when configured and present, else [`body_digest_id`].
//!
//! Errors: no signature header → `MissingSignature`; a header named in `signed` or `timestamp_header`
//! absent → `MissingHeader`; a timestamp that is not an integer → `MalformedTimestamp`.

use std::{
    collections::HashSet,
    fmt,
    sync::{Mutex, OnceLock, PoisonError},
    time::Duration,
    time::SystemTime,
};

use base64::{
    engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL},
    Engine as _,
};
use hmac::{digest::KeyInit, Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::{
    body_digest_id, check_timestamp, check_timestamp_millis, json_string_field, mac, unix_millis, unix_secs,
    EventMeta, Listing, Provider, ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError,
    WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `hmac`.
pub(crate) const LISTING: Listing = Listing {
    name: "hmac",
    scheme: "what `[sources.hmac]` declares",
    window: "5 min, with `timestamp_header`",
    event_id: "`id_header`, if set",
    docs: "",
    requires: &["[sources.hmac]"],
};

/// The config key of the whole table, for errors.
const KEY_TABLE: &str = "hmac";
/// The config key of the signature header name.
const KEY_HEADER: &str = "hmac.header";
/// The config key of the template.
const KEY_SIGNED: &str = "hmac.signed";
/// The config key of the timestamp header name.
const KEY_TIMESTAMP_HEADER: &str = "hmac.timestamp_header";
/// The config key of the id header name.
const KEY_ID_HEADER: &str = "hmac.id_header";

/// The body token of a template.
const TOKEN_BODY: &str = "body";
/// The prefix of a header token of a template.
const TOKEN_HEADER: &str = "header:";
/// The default timestamp window, both ways.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// How a sender signs its requests: the `[sources.hmac]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacScheme {
    /// The request header that carries the signature, e.g. `"X-Signature"`. Required.
    pub header: String,
    /// The HMAC's hash function: `"sha1"`, `"sha256"` or `"sha512"`. Default: `"sha256"`.
    #[serde(default = "default_algorithm")]
    pub algorithm: HmacAlgorithm,
    /// How the tag is written in the header: `"hex"` (either case) or `"base64"` (standard alphabet,
    /// padded). Default: `"hex"`.
    #[serde(default = "default_encoding")]
    pub encoding: HmacEncoding,
    /// Text before the tag in the header, matched exactly and stripped before decoding, e.g. `"sha256="`.
    /// Default: `""` (none).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// What is signed: literal text with `{body}` (the raw body, required) and `{header:Name}` (a header's
    /// value) tokens; `{{` and `}}` are literal braces. Example: `"{header:X-Timestamp}.{body}"`.
    /// Default: `"{body}"`.
    #[serde(default = "default_signed")]
    pub signed: String,
    /// A header holding the signing time in Unix seconds, checked against the source's `tolerance`
    /// (default 5 minutes, past or future). Default: none (no replay window).
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: Option<String>,
    /// A header holding the sender's event id, used for deduplication. Default: none (the id is
    /// `sha256:` and the hex SHA-256 of the body).
    #[serde(default = "default_id_header")]
    pub id_header: Option<String>,
}

/// The default of [`HmacScheme::algorithm`]: SHA-256.
fn default_algorithm() -> HmacAlgorithm {
    HmacAlgorithm::Sha256
}

/// The default of [`HmacScheme::encoding`]: hex.
fn default_encoding() -> HmacEncoding {
    HmacEncoding::Hex
}

/// The default of [`HmacScheme::prefix`]: none.
fn default_prefix() -> String {
    String::new()
}

/// The default of [`HmacScheme::signed`]: the body alone.
fn default_signed() -> String {
    "{body}".to_owned()
}

/// The default of [`HmacScheme::timestamp_header`]: none.
fn default_timestamp_header() -> Option<String> {
    None
}

/// The default of [`HmacScheme::id_header`]: none.
fn default_id_header() -> Option<String> {
    None
}

/// The hash function of an [`HmacScheme`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (20-byte tags); only for senders that still use it.
    Sha1,
    /// HMAC-SHA256 (32-byte tags).
    Sha256,
    /// HMAC-SHA512 (64-byte tags).
    Sha512,
}

impl HmacAlgorithm {
    /// The tag length in bytes.
    fn tag_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The HMAC of the concatenated `message` parts under `key`.
    fn sign(self, key: &[u8], message: &[&[u8]]) -> Vec<u8> {
        match self {
            Self::Sha1 => mac::<Hmac<Sha1>>(key, message).finalize().into_bytes().to_vec(),
            Self::Sha256 => mac::<Hmac<Sha256>>(key, message).finalize().into_bytes().to_vec(),
            Self::Sha512 => mac::<Hmac<Sha512>>(key, message).finalize().into_bytes().to_vec(),
        }
    }

    /// Whether the HMAC of the concatenated `message` parts under `key` equals `tag`, in constant time.
    fn verify(self, key: &[u8], message: &[&[u8]], tag: &[u8]) -> bool {
        match self {
            Self::Sha1 => verify_with::<Hmac<Sha1>>(key, message, tag),
            Self::Sha256 => verify_with::<Hmac<Sha256>>(key, message, tag),
            Self::Sha512 => verify_with::<Hmac<Sha512>>(key, message, tag),
        }
    }
}

/// [`HmacAlgorithm::verify`] for one MAC type.
fn verify_with<M: Mac + KeyInit>(key: &[u8], message: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in message {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// How the tag of an [`HmacScheme`] is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacEncoding {
    /// Hex digits, either case.
    Hex,
    /// Base64, standard alphabet, padded.
    Base64,
    /// Base64, URL-safe alphabet, without padding (`base64url`).
    Base64Url,
}

impl HmacEncoding {
    /// Encodes a tag.
    fn encode(self, tag: &[u8]) -> String {
        match self {
            Self::Hex => hex::encode(tag),
            Self::Base64 => BASE64.encode(tag),
            Self::Base64Url => BASE64URL.encode(tag),
        }
    }

    /// Decodes `text`, or `None`.
    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Self::Hex => hex::decode(text).ok(),
            Self::Base64 => BASE64.decode(text).ok(),
            Self::Base64Url => BASE64URL.decode(text).ok(),
        }
    }
}

/// One piece of a signed template: what the MAC input is made of, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Literal text.
    Literal(&'static str),
    /// The raw body.
    Body,
    /// A header's value as received; the name is lowercase.
    Header(&'static str),
    /// The timestamp's text as received (from its header or from the signature header).
    Timestamp,
    /// The configured `public_url`, as the sender signs it.
    PublicUrl,
}

/// Parses a `signed` template; the error is the message of a [`ProviderConfigError::Setting`].
fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.next_if(|&(_, c)| c == '{').is_some() => literal.push('{'),
            '}' if chars.next_if(|&(_, c)| c == '}').is_some() => literal.push('}'),
            '}' => {
                return Err(format!(
                    "unmatched \"}}\" at byte {at}; write \"}}}}\" for a literal \"}}\""
                ))
            }
            '{' => {
                let rest = &template[at + 1..];
                let Some(len) = rest.find('}').filter(|&len| !rest[..len].contains('{')) else {
                    return Err(format!(
                        "unclosed \"{{\" at byte {at}; expected \"{{body}}\" or \"{{header:Name}}\", \
                         or \"{{{{\" for a literal \"{{\""
                    ));
                };
                let token = &rest[..len];
                for _ in token.chars().chain(['}']) {
                    chars.next();
                }
                if !literal.is_empty() {
                    parts.push(Part::Literal(intern(&std::mem::take(&mut literal))));
                }
                parts.push(parse_token(token)?);
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(intern(&literal)));
    }
    if !parts.contains(&Part::Body) {
        return Err(
            "does not contain \"{body}\"; expected a template that signs the body, such as \
                    \"{body}\" or \"{header:X-Timestamp}.{body}\""
                .to_owned(),
        );
    }
    Ok(parts)
}

/// Parses the inside of a `{...}` token.
fn parse_token(token: &str) -> Result<Part, String> {
    if token == TOKEN_BODY {
        return Ok(Part::Body);
    }
    match token.strip_prefix(TOKEN_HEADER) {
        Some(name) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Ok(Part::Header(intern(name.as_str()))),
            Err(_) => Err(format!(
                "\"{{{token}}}\" does not name a valid header; expected a token such as \
                 \"{{header:X-Timestamp}}\""
            )),
        },
        None => Err(format!(
            "unknown token \"{{{token}}}\"; expected \"{{body}}\" or \"{{header:Name}}\""
        )),
    }
}

/// Validates a configured header name and returns it lowercase, with a `'static` lifetime.
fn header_name(key: &'static str, name: &str) -> Result<&'static str, ProviderConfigError> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(name) => Ok(intern(name.as_str())),
        Err(_) => Err(ProviderConfigError::Setting {
            key,
            message: format!(
                "\"{name}\" is not a valid header name; expected a name such as \"X-Signature\""
            ),
        }),
    }
}

/// Returns a `'static` copy of a configured header name (for [`VerifyError`] variants) or template text.
///
/// Each distinct name is allocated once for the life of the process, so rebuilding providers on a
/// config reload does not grow memory.
pub(super) fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Where a scheme built on [`GenericHmac`] finds the event id; [`body_digest_id`] when it is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventId {
    /// Always the body digest.
    Digest,
    /// The first of these headers that is present and not empty (lowercase names).
    Headers(&'static [&'static str]),
    /// One header, named in the config.
    Header(&'static str),
    /// A top-level string field of a JSON object body.
    JsonField(&'static str),
    /// A string at a JSON pointer (RFC 6901, such as `/event/id`) into a JSON body.
    JsonPointer(&'static str),
}

impl EventId {
    fn extract(self, req: &WebhookRequest<'_>) -> String {
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let found = match self {
            Self::Digest => None,
            Self::Headers(names) => names.iter().find_map(|n| header(n)),
            Self::Header(name) => header(name),
            Self::JsonField(field) => json_string_field(req.body, field),
            Self::JsonPointer(pointer) => json_pointer_string(req.body, pointer),
        };
        found.unwrap_or_else(|| body_digest_id(req.body))
    }

    /// The header that carries the id, which `sign` sets.
    pub(crate) fn header(self) -> Option<&'static str> {
        match self {
            Self::Headers(names) => names.first().copied(),
            Self::Header(name) => Some(name),
            Self::Digest | Self::JsonField(_) | Self::JsonPointer(_) => None,
        }
    }
}

/// The string at `pointer` in a JSON body, if there is one and it is not empty.
fn json_pointer_string(body: &[u8], pointer: &str) -> Option<String> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .pointer(pointer)?
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// How the signature header's value is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The whole value is one signature: the prefix, then the tag. Anything else is malformed.
    Single,
    /// Several signatures separated by `separator` (surrounding spaces trimmed), each the prefix then
    /// the tag; entries with another prefix (another version) are skipped.
    List {
        /// Written between entries; split on its first non-space character.
        separator: &'static str,
    },
    /// `key=value` pairs separated by `separator` (Stripe's `t=...,v1=...`): the timestamp under
    /// `timestamp_key`, signatures under `signature_key`, other keys skipped. With `groups`, the value
    /// holds several such sets separated by that character, each with its own timestamp.
    Pairs {
        /// Written between pairs; split on its first non-space character.
        separator: &'static str,
        /// The key of the timestamp, when the signature header carries it.
        timestamp_key: Option<&'static str>,
        /// The key of each signature.
        signature_key: &'static str,
        /// The separator between sets of pairs, if several may come.
        groups: Option<char>,
    },
    /// The timestamp first, then the signatures, all separated by `separator` (Recurly).
    TimestampFirst {
        /// Written between fields; split on its first non-space character.
        separator: &'static str,
    },
}

impl Layout {
    /// The character the value is split on.
    fn split_char(separator: &str) -> char {
        separator.trim().chars().next().unwrap_or(' ')
    }
}

/// Where a scheme's timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampSource {
    /// In its own header (lowercase name).
    Header(&'static str),
    /// Inside the signature header ([`Layout::Pairs`] with a `timestamp_key`, or
    /// [`Layout::TimestampFirst`]).
    Signature,
}

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampUnit {
    /// Unix seconds, a decimal integer.
    Seconds,
    /// Unix milliseconds, a decimal integer.
    Millis,
    /// An RFC 3339 date and time (`2024-01-01T12:00:00Z`, `2024-01-01T04:00:00-08:00`, with optional
    /// fractional seconds); compared in whole seconds.
    Rfc3339,
}

impl TimestampUnit {
    /// The timestamp's value in this unit (seconds for RFC 3339), or `None` if `text` is not one.
    fn parse(self, text: &str) -> Option<i64> {
        match self {
            Self::Seconds | Self::Millis => text.parse::<i64>().ok(),
            Self::Rfc3339 => parse_rfc3339(text),
        }
    }

    /// `now` written in this unit.
    fn format(self, now: SystemTime) -> String {
        match self {
            Self::Seconds => unix_secs(now).to_string(),
            Self::Millis => unix_millis(now).to_string(),
            Self::Rfc3339 => humantime::format_rfc3339_seconds(now).to_string(),
        }
    }

    /// Checks the window, in the unit's precision.
    fn check(self, value: i64, now: SystemTime, tolerance: Duration) -> Result<(), VerifyError> {
        match self {
            Self::Seconds | Self::Rfc3339 => check_timestamp(value, now, tolerance),
            Self::Millis => check_timestamp_millis(value, now, tolerance),
        }
    }
}

/// Unix seconds of an RFC 3339 date and time: `YYYY-MM-DDTHH:MM:SS`, optional `.fraction` (dropped),
/// then `Z` or `±HH:MM`. `t` and `z` are accepted in either case, as RFC 3339 allows.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hh = num_of(*h1, *h2)?;
            let mm = num_of(*m1, *m2)?;
            if hh > 23 || mm > 59 {
                return None;
            }
            let offset = hh * 3600 + mm * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Two ASCII digits as a number.
fn num_of(a: u8, b: u8) -> Option<i64> {
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A scheme's timestamp: where it is, how it is written and the sender's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp {
    /// Where it is written.
    pub(crate) source: TimestampSource,
    /// How it is written.
    pub(crate) unit: TimestampUnit,
    /// The sender's window, both ways; `None` where the sender documents none (a configured
    /// `tolerance` then sets one).
    pub(crate) window: Option<Duration>,
}

/// How the secret becomes the HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyForm {
    /// The secret's bytes, used whole.
    Raw,
    /// The standard base64 (padded) of the key, decoded once when the provider is built.
    Base64,
}

impl KeyForm {
    /// The HMAC key of the secret at `index`.
    fn decode(self, secret: &Secret, index: usize) -> Result<Secret, ProviderConfigError> {
        match self {
            Self::Raw => Ok(secret.clone()),
            Self::Base64 => BASE64
                .decode(secret.expose())
                .ok()
                .filter(|key| !key.is_empty())
                .map(Secret::new)
                .ok_or(ProviderConfigError::InvalidSecret {
                    index,
                    expected: "the base64 of the key, as the sender shows it",
                }),
        }
    }
}

/// A fixed HMAC scheme, as the catalogue describes it: every part is compiled in, and only the
/// secrets, `tolerance` and `public_url` come from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spec {
    /// The headers that carry signatures, as documented (any case); any of them may match. The
    /// first is the one named when all are missing.
    pub(crate) headers: &'static [&'static str],
    /// How a signature header's value is laid out.
    pub(crate) layout: Layout,
    /// The hash function.
    pub(crate) algorithm: HmacAlgorithm,
    /// How each tag is written.
    pub(crate) encoding: HmacEncoding,
    /// The exact text before each tag ([`Layout::Single`] and [`Layout::List`]).
    pub(crate) prefix: &'static str,
    /// How the secret becomes the key.
    pub(crate) key: KeyForm,
    /// What is signed, in order.
    pub(crate) signed: &'static [Part],
    /// The timestamp, for timestamped schemes.
    pub(crate) timestamp: Option<Timestamp>,
    /// Where the event id is.
    pub(crate) id: EventId,
}

/// A fixed scheme of the simplest kind: an HMAC of the body alone in one header, no timestamp. The
/// providers that sign this way (Intercom, Typeform, Vercel, Bitbucket) are each a `Preset`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Preset {
    /// The provider's config name.
    pub(crate) name: &'static str,
    /// The signature header (lowercase).
    pub(crate) header: &'static str,
    /// The hash function.
    pub(crate) algorithm: HmacAlgorithm,
    /// How the tag is written.
    pub(crate) encoding: HmacEncoding,
    /// The exact text before the tag.
    pub(crate) prefix: &'static str,
    /// Where the event id is.
    pub(crate) id: EventId,
}

/// One signature header's parse: the timestamp it carries (if any) and its tags.
struct Candidate<'a> {
    timestamp: Option<&'a str>,
    tags: Vec<Vec<u8>>,
}

/// Verifies requests signed as a [`HmacScheme`], a [`Preset`] or a catalogue [`Spec`] describes,
/// against any of the secrets.
pub(crate) struct GenericHmac {
    name: &'static str,
    keys: Vec<Secret>,
    /// Lowercase signature header names; the first is named when all are missing.
    headers: Vec<&'static str>,
    layout: Layout,
    algorithm: HmacAlgorithm,
    encoding: HmacEncoding,
    prefix: &'static str,
    signed: Vec<Part>,
    timestamp: Option<(TimestampSource, TimestampUnit)>,
    /// The window: the configured `tolerance`, else the scheme's; `None` for none.
    tolerance: Option<Duration>,
    id: EventId,
    public_url: Option<String>,
}

impl GenericHmac {
    /// Builds the provider from `settings.hmac`, validating its header names and template.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let Some(scheme) = settings.hmac else {
            return Err(ProviderConfigError::Setting {
                key: KEY_TABLE,
                message: "a [sources.hmac] table is required with provider = \"hmac\"".into(),
            });
        };
        let keys = settings.require_secrets()?.to_vec();
        let header = header_name(KEY_HEADER, &scheme.header)?;
        let signed = parse_template(&scheme.signed).map_err(|message| ProviderConfigError::Setting {
            key: KEY_SIGNED,
            message,
        })?;
        let timestamp_header = scheme
            .timestamp_header
            .as_deref()
            .map(|h| header_name(KEY_TIMESTAMP_HEADER, h))
            .transpose()?;
        let id_header = scheme
            .id_header
            .as_deref()
            .map(|h| header_name(KEY_ID_HEADER, h))
            .transpose()?;
        Ok(Self {
            name: "hmac",
            keys,
            headers: vec![header],
            layout: Layout::Single,
            algorithm: scheme.algorithm,
            encoding: scheme.encoding,
            prefix: intern(&scheme.prefix),
            signed,
            timestamp: timestamp_header.map(|h| (TimestampSource::Header(h), TimestampUnit::Seconds)),
            tolerance: timestamp_header.map(|_| settings.tolerance.unwrap_or(DEFAULT_TOLERANCE)),
            id: id_header.map_or(EventId::Digest, EventId::Header),
            public_url: None,
        })
    }

    /// Builds a provider with a fixed scheme; only the secrets come from the config.
    pub(crate) fn preset(
        preset: &Preset,
        settings: ProviderSettings<'_>,
    ) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            name: preset.name,
            keys: settings.require_secrets()?.to_vec(),
            headers: vec![preset.header],
            layout: Layout::Single,
            algorithm: preset.algorithm,
            encoding: preset.encoding,
            prefix: preset.prefix,
            signed: vec![Part::Body],
            timestamp: None,
            tolerance: None,
            id: preset.id,
            public_url: None,
        })
    }

    /// Builds the catalogue provider `name` from its [`Spec`]; the secrets, `tolerance` and
    /// `public_url` come from the config.
    pub(crate) fn from_spec(
        name: &'static str,
        spec: &Spec,
        settings: ProviderSettings<'_>,
    ) -> Result<Self, ProviderConfigError> {
        let keys = settings
            .require_secrets()?
            .iter()
            .enumerate()
            .map(|(index, secret)| spec.key.decode(secret, index))
            .collect::<Result<Vec<_>, _>>()?;
        let public_url = if spec.signed.contains(&Part::PublicUrl) {
            let url = settings.public_url.ok_or_else(|| ProviderConfigError::Setting {
                key: "public_url",
                message: format!(
                    "is required with provider = \"{name}\" (expected the URL as the sender signs it, \
                     e.g. \"https://example.com/hooks/{name}\")"
                ),
            })?;
            Some(url.to_owned())
        } else {
            None
        };
        let lower = |h: &str| intern(&h.to_ascii_lowercase());
        let signed = spec
            .signed
            .iter()
            .map(|part| match *part {
                Part::Header(h) => Part::Header(lower(h)),
                other => other,
            })
            .collect();
        let timestamp = spec.timestamp.map(|ts| {
            let source = match ts.source {
                TimestampSource::Header(h) => TimestampSource::Header(lower(h)),
                TimestampSource::Signature => TimestampSource::Signature,
            };
            (source, ts.unit)
        });
        let id = match spec.id {
            EventId::Header(h) => EventId::Header(lower(h)),
            other => other,
        };
        Ok(Self {
            name,
            keys,
            headers: spec.headers.iter().map(|h| lower(h)).collect(),
            layout: spec.layout,
            algorithm: spec.algorithm,
            encoding: spec.encoding,
            prefix: spec.prefix,
            signed,
            timestamp,
            tolerance: spec.timestamp.and_then(|ts| settings.tolerance.or(ts.window)),
            id,
            public_url,
        })
    }

    /// The name reported for a problem with the timestamp.
    fn timestamp_name(&self) -> &'static str {
        match self.timestamp {
            Some((TimestampSource::Header(name), _)) => name,
            _ => self.headers[0],
        }
    }

    /// Decodes `<prefix><tag>` into a tag of the algorithm's length.
    fn decode_tag(&self, text: &str, header: &'static str) -> Result<Vec<u8>, VerifyError> {
        let malformed = VerifyError::MalformedSignature(header);
        let encoded = text.strip_prefix(self.prefix).ok_or_else(|| malformed.clone())?;
        self.decode_bare(encoded).ok_or(malformed)
    }

    /// Decodes an encoded tag of the algorithm's length.
    fn decode_bare(&self, encoded: &str) -> Option<Vec<u8>> {
        self.encoding
            .decode(encoded)
            .filter(|tag| tag.len() == self.algorithm.tag_len())
    }

    /// Parses one signature header's value into candidates.
    fn parse<'a>(&self, text: &'a str, header: &'static str) -> Result<Vec<Candidate<'a>>, VerifyError> {
        let malformed = VerifyError::MalformedSignature(header);
        match self.layout {
            Layout::Single => Ok(vec![Candidate {
                timestamp: None,
                tags: vec![self.decode_tag(text, header)?],
            }]),
            Layout::List { separator } => {
                let mut tags = Vec::new();
                for entry in text.split(Layout::split_char(separator)).map(str::trim) {
                    if let Some(encoded) = entry.strip_prefix(self.prefix) {
                        tags.push(self.decode_bare(encoded).ok_or_else(|| malformed.clone())?);
                    }
                }
                if tags.is_empty() {
                    return Err(malformed);
                }
                Ok(vec![Candidate {
                    timestamp: None,
                    tags,
                }])
            }
            Layout::Pairs {
                separator,
                timestamp_key,
                signature_key,
                groups,
            } => {
                let sets: Vec<&str> = match groups {
                    Some(g) => text.split(g).filter(|s| !s.trim().is_empty()).collect(),
                    None => vec![text],
                };
                let mut out = Vec::with_capacity(sets.len());
                for set in sets {
                    let mut timestamp = None;
                    let mut tags = Vec::new();
                    for (key, value) in set
                        .split(Layout::split_char(separator))
                        .filter_map(|pair| pair.trim().split_once('='))
                    {
                        if Some(key) == timestamp_key {
                            if timestamp.is_some() {
                                return Err(malformed);
                            }
                            timestamp = Some(value);
                        } else if key == signature_key {
                            tags.push(self.decode_bare(value).ok_or_else(|| malformed.clone())?);
                        }
                    }
                    if tags.is_empty() || (timestamp_key.is_some() && timestamp.is_none()) {
                        return Err(malformed);
                    }
                    out.push(Candidate { timestamp, tags });
                }
                if out.is_empty() {
                    return Err(malformed);
                }
                Ok(out)
            }
            Layout::TimestampFirst { separator } => {
                let mut fields = text.split(Layout::split_char(separator)).map(str::trim);
                let timestamp = fields
                    .next()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| malformed.clone())?;
                let tags = fields
                    .map(|f| self.decode_bare(f).ok_or_else(|| malformed.clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                if tags.is_empty() {
                    return Err(malformed);
                }
                Ok(vec![Candidate {
                    timestamp: Some(timestamp),
                    tags,
                }])
            }
        }
    }

    /// Every candidate of every signature header present. With several headers, one that does not
    /// parse is skipped when another does.
    fn candidates<'a>(&self, req: &'a WebhookRequest<'_>) -> Result<Vec<Candidate<'a>>, VerifyError> {
        let mut out = Vec::new();
        let mut first_error = None;
        let mut present = false;
        for &name in &self.headers {
            let Some(value) = req.headers.get(name) else {
                continue;
            };
            present = true;
            let parsed = value
                .to_str()
                .map_err(|_| VerifyError::MalformedSignature(name))
                .and_then(|text| self.parse(text, name));
            match parsed {
                Ok(found) => out.extend(found),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !present {
            return Err(VerifyError::MissingSignature(self.headers[0]));
        }
        match first_error {
            Some(e) if out.is_empty() || self.headers.len() == 1 => Err(e),
            _ => Ok(out),
        }
    }

    /// The MAC input for a timestamp text, as slices of the request.
    fn message<'a>(
        &'a self,
        req: &'a WebhookRequest<'_>,
        timestamp: Option<&'a str>,
    ) -> Result<Vec<&'a [u8]>, VerifyError> {
        self.signed
            .iter()
            .map(|part| match *part {
                Part::Literal(text) => Ok(text.as_bytes()),
                Part::Body => Ok(req.body),
                Part::Header(name) => req
                    .headers
                    .get(name)
                    .map(|v| v.as_bytes())
                    .ok_or(VerifyError::MissingHeader(name)),
                Part::Timestamp => Ok(timestamp.unwrap_or_default().as_bytes()),
                Part::PublicUrl => Ok(self.public_url.as_deref().unwrap_or_default().as_bytes()),
            })
            .collect()
    }
}

impl Provider for GenericHmac {
    fn name(&self) -> &'static str {
        self.name
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let candidates = self.candidates(req)?;
        let header_timestamp = match self.timestamp {
            Some((TimestampSource::Header(name), _)) => {
                let value = req.headers.get(name).ok_or(VerifyError::MissingHeader(name))?;
                Some(
                    value
                        .to_str()
                        .map_err(|_| VerifyError::MalformedTimestamp(name))?,
                )
            }
            _ => None,
        };
        let mut matched = None;
        for candidate in &candidates {
            let text = candidate.timestamp.or(header_timestamp);
            let value = match (self.timestamp, text) {
                (Some((_, unit)), Some(text)) => Some(
                    unit.parse(text)
                        .ok_or(VerifyError::MalformedTimestamp(self.timestamp_name()))?,
                ),
                _ => None,
            };
            let message = self.message(req, text)?;
            let ok = self.keys.iter().any(|key| {
                candidate
                    .tags
                    .iter()
                    .any(|tag| self.algorithm.verify(key.expose(), &message, tag))
            });
            if ok && matched.is_none() {
                matched = Some(value);
            }
        }
        let Some(value) = matched else {
            return Err(VerifyError::SignatureMismatch);
        };
        if let (Some((_, unit)), Some(value), Some(tolerance)) = (self.timestamp, value, self.tolerance) {
            unit.check(value, now, tolerance)?;
        }
        Ok(EventMeta::new(self.id.extract(req)))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let ts = self.timestamp.map(|(_, unit)| unit.format(now));
        let ts_header = match self.timestamp {
            Some((TimestampSource::Header(name), _)) => Some(name),
            _ => None,
        };
        let value_of = |name: &'static str| -> Result<&str, SignError> {
            if Some(name) == ts_header {
                Ok(ts.as_deref().unwrap_or_default())
            } else if Some(name) == self.id.header() {
                Ok(req.event_id)
            } else {
                Err(SignError::Unsignable(
                    "the template signs a header other than timestamp_header and id_header",
                ))
            }
        };
        let message = self
            .signed
            .iter()
            .map(|part| match *part {
                Part::Literal(text) => Ok(text.as_bytes()),
                Part::Body => Ok(req.body),
                Part::Header(name) => value_of(name).map(str::as_bytes),
                Part::Timestamp => Ok(ts.as_deref().unwrap_or_default().as_bytes()),
                Part::PublicUrl => Ok(self.public_url.as_deref().unwrap_or_default().as_bytes()),
            })
            .collect::<Result<Vec<&[u8]>, _>>()?;
        let tag = self
            .encoding
            .encode(&self.algorithm.sign(self.keys[0].expose(), &message));
        let ts_text = ts.clone().unwrap_or_default();
        let value = match self.layout {
            Layout::Single | Layout::List { .. } => format!("{}{tag}", self.prefix),
            Layout::Pairs {
                separator,
                timestamp_key,
                signature_key,
                ..
            } => match timestamp_key {
                Some(tk) => format!("{tk}={ts_text}{separator}{signature_key}={tag}"),
                None => format!("{signature_key}={tag}"),
            },
            Layout::TimestampFirst { separator } => format!("{ts_text}{separator}{tag}"),
        };
        let mut headers = vec![header_owned(self.headers[0], value)?];
        if let (Some(name), Some(ts)) = (ts_header, ts) {
            headers.push(header_owned(name, ts)?);
        }
        if let Some(name) = self.id.header() {
            headers.push(header_owned(name, req.event_id.to_owned())?);
        }
        Ok(headers)
    }
}

/// A header whose name comes from the config or the catalogue (validated, so it parses).
fn header_owned(name: &'static str, value: String) -> Result<(HeaderName, HeaderValue), SignError> {
    let name = HeaderName::from_static(name);
    let value = HeaderValue::from_str(&value)
        .map_err(|_| SignError::Unsignable("the prefix is not a valid header value"))?;
    Ok((name, value))
}

impl fmt::Debug for GenericHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericHmac")
            .field("name", &self.name)
            .field("secrets", &format_args!("[redacted; {}]", self.keys.len()))
            .field("headers", &self.headers)
            .field("layout", &self.layout)
            .field("algorithm", &self.algorithm)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .field("signed", &self.signed)
            .field("timestamp", &self.timestamp)
            .field("tolerance", &self.tolerance)
            .field("id", &self.id)
            .field("public_url", &self.public_url)
            .finish()
    }
}

#[cfg(test)]
mod tests;
