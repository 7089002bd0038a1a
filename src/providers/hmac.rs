//! A declarative HMAC scheme for senders without a provider of their own: `provider = "hmac"` and a
//! `[sources.hmac]` table.
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

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{digest::KeyInit, Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::{
    body_digest_id, check_timestamp, json_string_field, mac, unix_secs, EventMeta, Provider,
    ProviderConfigError, ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

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
}

impl HmacEncoding {
    /// Encodes a tag.
    fn encode(self, tag: &[u8]) -> String {
        match self {
            Self::Hex => hex::encode(tag),
            Self::Base64 => BASE64.encode(tag),
        }
    }

    /// Decodes `text`, or `None`.
    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Self::Hex => hex::decode(text).ok(),
            Self::Base64 => BASE64.decode(text).ok(),
        }
    }
}

/// One piece of a parsed `signed` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Literal text.
    Literal(String),
    /// The raw body.
    Body,
    /// A header's value; the name is lowercase.
    Header(&'static str),
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
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(parse_token(token)?);
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
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

/// Returns a `'static` copy of a configured header name, for [`VerifyError`] variants.
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
        };
        found.unwrap_or_else(|| body_digest_id(req.body))
    }

    /// The header that carries the id, which `sign` sets.
    fn header(self) -> Option<&'static str> {
        match self {
            Self::Headers(names) => names.first().copied(),
            Self::Header(name) => Some(name),
            Self::Digest | Self::JsonField(_) => None,
        }
    }
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

/// Verifies requests signed as a [`HmacScheme`] (or a [`Preset`]) describes, against any of the secrets.
pub(crate) struct GenericHmac {
    name: &'static str,
    secrets: Vec<Secret>,
    header: &'static str,
    algorithm: HmacAlgorithm,
    encoding: HmacEncoding,
    prefix: String,
    signed: Vec<Part>,
    timestamp_header: Option<&'static str>,
    id: EventId,
    tolerance: Duration,
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
        let secrets = settings.require_secrets()?.to_vec();
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
            secrets,
            header,
            algorithm: scheme.algorithm,
            encoding: scheme.encoding,
            prefix: scheme.prefix.clone(),
            signed,
            timestamp_header,
            id: id_header.map_or(EventId::Digest, EventId::Header),
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }

    /// Builds a provider with a fixed scheme; only the secrets come from the config.
    pub(crate) fn preset(
        preset: &Preset,
        settings: ProviderSettings<'_>,
    ) -> Result<Self, ProviderConfigError> {
        Ok(Self {
            name: preset.name,
            secrets: settings.require_secrets()?.to_vec(),
            header: preset.header,
            algorithm: preset.algorithm,
            encoding: preset.encoding,
            prefix: preset.prefix.to_owned(),
            signed: vec![Part::Body],
            timestamp_header: None,
            id: preset.id,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// Decodes the signature header into a tag of the algorithm's length.
    fn tag(&self, req: &WebhookRequest<'_>) -> Result<Vec<u8>, VerifyError> {
        let value = req
            .headers
            .get(self.header)
            .ok_or(VerifyError::MissingSignature(self.header))?;
        let malformed = VerifyError::MalformedSignature(self.header);
        let text = value.to_str().map_err(|_| malformed.clone())?;
        let encoded = text
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(|| malformed.clone())?;
        match self.encoding.decode(encoded) {
            Some(tag) if tag.len() == self.algorithm.tag_len() => Ok(tag),
            _ => Err(malformed),
        }
    }
}

impl Provider for GenericHmac {
    fn name(&self) -> &'static str {
        self.name
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let tag = self.tag(req)?;
        let message = self
            .signed
            .iter()
            .map(|part| match part {
                Part::Literal(text) => Ok(text.as_bytes()),
                Part::Body => Ok(req.body),
                &Part::Header(name) => req
                    .headers
                    .get(name)
                    .map(|v| v.as_bytes())
                    .ok_or(VerifyError::MissingHeader(name)),
            })
            .collect::<Result<Vec<&[u8]>, _>>()?;
        let timestamp = match self.timestamp_header {
            Some(name) => {
                let value = req.headers.get(name).ok_or(VerifyError::MissingHeader(name))?;
                let parsed = value.to_str().ok().and_then(|t| t.parse::<i64>().ok());
                Some(parsed.ok_or(VerifyError::MalformedTimestamp(name))?)
            }
            None => None,
        };

        let matched = self
            .secrets
            .iter()
            .any(|secret| self.algorithm.verify(secret.expose(), &message, &tag));
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        if let Some(timestamp) = timestamp {
            check_timestamp(timestamp, now, self.tolerance)?;
        }

        Ok(EventMeta::new(self.id.extract(req)))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let ts = unix_secs(now).to_string();
        let value_of = |name: &'static str| -> Result<&str, SignError> {
            if Some(name) == self.timestamp_header {
                Ok(&ts)
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
            .map(|part| match part {
                Part::Literal(text) => Ok(text.as_bytes()),
                Part::Body => Ok(req.body),
                &Part::Header(name) => value_of(name).map(str::as_bytes),
            })
            .collect::<Result<Vec<&[u8]>, _>>()?;
        let tag = self.algorithm.sign(self.secrets[0].expose(), &message);
        let mut headers = vec![header_owned(
            self.header,
            format!("{}{}", self.prefix, self.encoding.encode(&tag)),
        )?];
        if let Some(name) = self.timestamp_header {
            headers.push(header_owned(name, ts.clone())?);
        }
        if let Some(name) = self.id.header() {
            headers.push(header_owned(name, req.event_id.to_owned())?);
        }
        Ok(headers)
    }
}

/// A header whose name comes from the config (validated at load, so it parses).
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
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("header", &self.header)
            .field("algorithm", &self.algorithm)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .field("signed", &self.signed)
            .field("timestamp_header", &self.timestamp_header)
            .field("id", &self.id)
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests;
