//! What each provider is, without building it: the data behind `hookgate providers` (text and
//! `--json`) and the README's provider table, which [`readme_table`] renders and a test compares
//! with the README.
//!
//! A code provider states its [`Listing`] in its own file; a catalogue entry's is derived from its
//! data, so the listing cannot drift from what the entry verifies.

use std::{fmt::Write as _, time::Duration};

use serde::Serialize;

use super::{
    catalogue::{Engine, Entry},
    hmac::{
        EventId, HmacAlgorithm, HmacEncoding, KeyForm, Layout, Part, Spec, TimestampSource, TimestampUnit,
    },
    standard, CatalogueId, ProviderKind,
};

/// A code provider's description, written in its file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing {
    /// The config name.
    pub(crate) name: &'static str,
    /// What is checked, in the README's words (Markdown).
    pub(crate) scheme: &'static str,
    /// The default timestamp window.
    pub(crate) window: &'static str,
    /// Where the event id comes from.
    pub(crate) event_id: &'static str,
    /// The document or SDK the provider follows; empty for hookgate's own schemes.
    pub(crate) docs: &'static str,
    /// Source keys the provider requires besides `secrets`.
    pub(crate) requires: &'static [&'static str],
}

/// Where a provider is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A file of code behind the `Provider` trait.
    Code,
    /// An entry of the compiled-in catalogue.
    Catalogue,
}

/// Where a provider's event id comes from, for catalogue entries; code providers describe it in text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventIdSource {
    /// The first of these headers present, else the body's digest.
    Headers(Vec<&'static str>),
    /// A string in the JSON body at this pointer (RFC 6901), else the body's digest.
    Body(String),
    /// Always the body's digest: `sha256:` and its hex SHA-256.
    Digest,
    /// As [`ProviderInfo::event_id`] says (code providers).
    Described,
}

/// How a catalogue entry's secrets become keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretForm {
    /// Used whole, as bytes.
    Whole,
    /// The base64 of the key.
    Base64,
    /// `whsec_` and base64, as the Standard Webhooks specification writes it.
    StandardWebhooks,
    /// As the provider's docs say (code providers).
    Described,
}

/// What `hookgate providers` shows of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// The config name, as in `provider = "gitea"`.
    pub name: &'static str,
    /// The sender's name as its docs write it (the config name for code providers).
    pub title: &'static str,
    /// Code or catalogue.
    pub origin: Origin,
    /// What is checked (Markdown, as in the README's table).
    pub scheme: String,
    /// The default timestamp window (`none` for untimed schemes).
    pub window: String,
    /// The sender's default window in seconds; `None` where there is none by default.
    pub window_secs: Option<u64>,
    /// Where the event id comes from (Markdown).
    pub event_id: String,
    /// The same, structured, for catalogue entries.
    pub event_id_source: EventIdSource,
    /// How the secrets are used, for catalogue entries.
    pub secret_form: SecretForm,
    /// Source keys required besides `secrets`, such as `public_url`.
    pub requires: Vec<&'static str>,
    /// The document or SDK followed; empty for hookgate's own schemes.
    pub docs: &'static str,
}

impl ProviderKind {
    /// What the provider is, without building it.
    pub fn info(self) -> ProviderInfo {
        match self {
            Self::Catalogue(id) => catalogue_info(id),
            code => code_info(code.listing()),
        }
    }
}

/// Every provider's [`ProviderInfo`], in the order of [`ProviderKind::NAMES`].
pub fn all() -> Vec<ProviderInfo> {
    ProviderKind::all().map(ProviderKind::info).collect()
}

fn code_info(l: &Listing) -> ProviderInfo {
    ProviderInfo {
        name: l.name,
        title: l.name,
        origin: Origin::Code,
        scheme: l.scheme.to_owned(),
        window: l.window.to_owned(),
        window_secs: None,
        event_id: l.event_id.to_owned(),
        event_id_source: EventIdSource::Described,
        secret_form: SecretForm::Described,
        requires: l.requires.to_vec(),
        docs: l.docs,
    }
}

/// A window as the README writes it: `5 min`, `180 s`.
fn window_text(window: Option<Duration>) -> String {
    match window.map(|d| d.as_secs()) {
        None => "none unless `tolerance`".to_owned(),
        Some(s) if s % 60 == 0 => format!("{} min", s / 60),
        Some(s) => format!("{s} s"),
    }
}

fn algorithm_text(a: HmacAlgorithm) -> &'static str {
    match a {
        HmacAlgorithm::Sha1 => "HMAC-SHA1",
        HmacAlgorithm::Sha256 => "HMAC-SHA256",
        HmacAlgorithm::Sha512 => "HMAC-SHA512",
    }
}

fn encoding_text(e: HmacEncoding) -> &'static str {
    match e {
        HmacEncoding::Hex => "hex",
        HmacEncoding::Base64 => "base64",
        HmacEncoding::Base64Url => "base64url",
    }
}

/// The signed template as the README writes it: `"{t}.{body}"`, `body`.
fn template_text(spec: &Spec) -> String {
    if spec.signed == [Part::Body] {
        return "body".to_owned();
    }
    let mut out = String::from("`\"");
    for part in spec.signed {
        match *part {
            Part::Literal(text) => out.push_str(text),
            Part::Body => out.push_str("{body}"),
            Part::Header(h) => {
                let _ = write!(out, "{{{h}}}");
            }
            Part::Timestamp => out.push_str("{timestamp}"),
            Part::PublicUrl => out.push_str("{public_url}"),
        }
    }
    out.push_str("\"`");
    out
}

fn unit_text(unit: TimestampUnit) -> &'static str {
    match unit {
        TimestampUnit::Seconds => "secs",
        TimestampUnit::Millis => "ms",
        TimestampUnit::Rfc3339 => "RFC 3339",
    }
}

fn hmac_scheme_text(spec: &Spec) -> String {
    let tag = format!(
        "<{} {}>",
        encoding_text(spec.encoding),
        algorithm_text(spec.algorithm)
    );
    let unit = spec.timestamp.map_or("", |t| unit_text(t.unit));
    let value = match spec.layout {
        Layout::Single => format!("{}{tag}", spec.prefix),
        Layout::List { separator } => format!("{}{tag}{separator}...", spec.prefix),
        Layout::Pairs {
            separator,
            timestamp_key,
            signature_key,
            groups,
        } => {
            let one = match timestamp_key {
                Some(tk) => format!("{tk}=<{unit}>{separator}{signature_key}={tag}"),
                None => format!("{signature_key}={tag}"),
            };
            match groups {
                Some(g) => format!("{one}[{g}...]"),
                None => one,
            }
        }
        Layout::TimestampFirst { separator } => format!("<{unit}>{separator}{tag}[{separator}...]"),
    };
    let mut text = match numbered_family(spec.headers) {
        Some((stem, last)) => format!(
            "`{stem}N: {value}` over {}, one per key, `N` from 1 to {last}",
            template_text(spec)
        ),
        None => format!(
            "`{}: {value}` over {}",
            spec.headers.join("` or `"),
            template_text(spec)
        ),
    };
    if let Some(ts) = spec.timestamp {
        if let TimestampSource::Header(h) = ts.source {
            let _ = write!(text, ", `{h}` in {}", unit_text(ts.unit));
        }
    }
    if spec.key == KeyForm::Base64 {
        text.push_str("; the secret is base64");
    }
    text
}

/// `Some((stem, n))` when `headers` are `{stem}1` to `{stem}n`, more than two of them (DocuSign's
/// `X-DocuSign-Signature-1` to `-100`), to be written as one.
fn numbered_family(headers: &[&'static str]) -> Option<(&'static str, usize)> {
    let stem = headers.first()?.strip_suffix('1')?;
    let numbered = headers
        .iter()
        .enumerate()
        .all(|(i, h)| h.strip_prefix(stem) == Some((i + 1).to_string().as_str()));
    (headers.len() > 2 && numbered).then_some((stem, headers.len()))
}

fn event_id_of(id: EventId) -> (String, EventIdSource) {
    match id {
        EventId::Digest => ("the body's SHA-256".to_owned(), EventIdSource::Digest),
        EventId::Header(h) => (format!("`{h}`"), EventIdSource::Headers(vec![h])),
        EventId::Headers(hs) => (
            hs.iter()
                .map(|h| format!("`{h}`"))
                .collect::<Vec<_>>()
                .join(", else "),
            EventIdSource::Headers(hs.to_vec()),
        ),
        EventId::JsonField(f) => (format!("the body's `{f}`"), EventIdSource::Body(format!("/{f}"))),
        EventId::JsonPointer(p) => (
            format!("the body's `{}`", p.trim_start_matches('/').replace('/', ".")),
            EventIdSource::Body(p.to_owned()),
        ),
    }
}

fn catalogue_info(id: CatalogueId) -> ProviderInfo {
    let entry: &Entry = id.entry();
    let (scheme, window, event_id, source, secret_form, requires) = match entry.engine {
        Engine::Hmac(ref spec) => {
            let (text, source) = event_id_of(spec.id);
            let window = spec.timestamp.map_or(Some(None), |t| Some(t.window));
            let requires = if spec.signed.contains(&Part::PublicUrl) {
                vec!["public_url"]
            } else {
                Vec::new()
            };
            let form = match spec.key {
                KeyForm::Raw => SecretForm::Whole,
                KeyForm::Base64 => SecretForm::Base64,
            };
            (hmac_scheme_text(spec), window, text, source, form, requires)
        }
        Engine::Standard { headers, key } => {
            let (id_h, ts_h, sig_h) = headers.names();
            let (scheme, form) = match key {
                standard::KeyForm::Specified => (
                    format!("Standard Webhooks: `{sig_h}: v1,<base64>` over `\"{{id}}.{{timestamp}}.{{body}}\"` (`whsec_` secrets)"),
                    SecretForm::StandardWebhooks,
                ),
                standard::KeyForm::Raw => (
                    format!("Standard Webhooks: `{sig_h}: v1,<base64>` over `\"{{id}}.{{timestamp}}.{{body}}\"`, the secret used whole"),
                    SecretForm::Whole,
                ),
            };
            let _ = ts_h;
            (
                scheme,
                Some(Some(Duration::from_secs(300))),
                format!("`{id_h}`"),
                EventIdSource::Headers(vec![id_h]),
                form,
                Vec::new(),
            )
        }
    };
    // `window`: None = untimed; Some(None) = timed without a default; Some(Some(d)) = default d.
    let untimed = matches!(entry.engine, Engine::Hmac(ref spec) if spec.timestamp.is_none());
    let (window, window_secs) = if untimed {
        ("none".to_owned(), None)
    } else {
        let w = window.flatten();
        (window_text(w), w.map(|d| d.as_secs()))
    };
    ProviderInfo {
        name: entry.name,
        title: entry.title,
        origin: Origin::Catalogue,
        scheme,
        window,
        window_secs,
        event_id,
        event_id_source: source,
        secret_form,
        requires,
        docs: entry.docs,
    }
}

/// The start of the README's generated provider table.
pub const README_BEGIN: &str =
    "<!-- providers: generated by `hookgate providers --markdown`; do not edit -->";
/// The end of the README's generated provider table.
pub const README_END: &str = "<!-- providers: end -->";

/// The README's provider table, one row per provider, in Markdown.
pub fn readme_table() -> String {
    let mut out = String::from(
        "| `provider` | what is checked | window | event id | follows |\n|---|---|---|---|---|\n",
    );
    for info in all() {
        let origin = match info.origin {
            Origin::Code => "",
            Origin::Catalogue => " (catalogue)",
        };
        let docs = if info.docs.is_empty() {
            "hookgate".to_owned()
        } else {
            format!("[docs]({})", info.docs)
        };
        let requires = if info.requires.is_empty() {
            String::new()
        } else {
            let keys: Vec<String> = info.requires.iter().map(|k| format!("`{k}`")).collect();
            format!("; needs {}", keys.join(", "))
        };
        let _ = writeln!(
            out,
            "| `{}` | {}{requires} | {} | {} | {docs}{origin} |",
            info.name,
            info.scheme.replace('|', "\\|"),
            info.window,
            info.event_id
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's provider table is [`readme_table`]: regenerate it with
    /// `cargo run -- providers --markdown` and paste it between the markers.
    #[test]
    fn readme_table_is_generated_from_the_listing() {
        let readme = include_str!("../../README.md");
        let begin = readme
            .find(README_BEGIN)
            .expect("README.md has the providers begin marker");
        let end = readme
            .find(README_END)
            .expect("README.md has the providers end marker");
        let table = readme[begin + README_BEGIN.len()..end].trim();
        assert!(
            table == readme_table().trim(),
            "README.md's provider table differs from the providers' data: regenerate it with \
             `cargo run -- providers --markdown` and put it between the markers"
        );
    }

    #[test]
    fn every_provider_is_listed_once_with_a_scheme() {
        let infos = all();
        assert_eq!(infos.len(), ProviderKind::NAMES.len());
        for (info, name) in infos.iter().zip(ProviderKind::NAMES) {
            assert_eq!(info.name, *name);
            assert!(
                !info.scheme.is_empty() && !info.window.is_empty() && !info.event_id.is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_catalogue_entry_is_described_from_its_data() {
        let info = ProviderKind::from_name("workos").expect("listed").info();
        assert_eq!(info.origin, Origin::Catalogue);
        assert_eq!(
            info.scheme,
            "`WorkOS-Signature: t=<ms>, v1=<hex HMAC-SHA256>` over `\"{timestamp}.{body}\"`"
        );
        assert_eq!(info.window, "3 min");
        assert_eq!(info.window_secs, Some(180));
        assert_eq!(info.event_id, "the body's `id`");
        assert_eq!(info.event_id_source, EventIdSource::Body("/id".into()));
        let gitea = ProviderKind::from_name("gitea").expect("listed").info();
        assert_eq!(gitea.window, "none");
        assert_eq!(
            gitea.event_id_source,
            EventIdSource::Headers(vec!["X-Gitea-Delivery"])
        );
    }
}
