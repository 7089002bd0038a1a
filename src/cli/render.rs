//! Human output: the API's JSON answers as aligned tables, and its errors as one line.
//!
//! Times are printed as the API gave them. Everything that came from a webhook sender (event ids,
//! header values, bodies, error texts) is printed with control characters escaped, so that a
//! crafted event cannot move the cursor or recolour the operator's terminal.

use std::fmt::Write as _;

use hookgate::{
    admin::wire::{ErrorBody, ErrorCode, Event, EventList, OneEvent, Purged, Replayed, SourceStats, Stats},
    store::StateFilter,
};
use http::StatusCode;

/// What a command prints on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Show {
    /// `{"events":[...]}` as a table, with bodies after it if asked for.
    Events { body: bool },
    /// `{"event":{...}}`, field by field.
    Event { id: u64, body: bool },
    /// `{"replayed":N}`; `id` for a single replay.
    Replayed { id: Option<u64> },
    /// `{"purged":N}`.
    Purged,
    /// `{"sources":[...]}` as a table.
    Stats,
}

// === answers ===

/// The text printed for a successful answer `body`.
pub(super) fn answer(show: &Show, body: &[u8]) -> Result<String, serde_json::Error> {
    Ok(match *show {
        Show::Events { body: with_body } => {
            let list: EventList = serde_json::from_slice(body)?;
            events(&list.events, with_body)
        }
        Show::Event { .. } => {
            let one: OneEvent = serde_json::from_slice(body)?;
            event(&one.event)
        }
        Show::Replayed { id } => {
            let r: Replayed = serde_json::from_slice(body)?;
            match id {
                Some(id) => format!("replayed event {id}: queued for delivery now\n"),
                None => format!("replayed {} event{}\n", r.replayed, plural(r.replayed)),
            }
        }
        Show::Purged => {
            let p: Purged = serde_json::from_slice(body)?;
            format!("purged {} dead letter{}\n", p.purged, plural(p.purged))
        }
        Show::Stats => {
            let stats: Stats = serde_json::from_slice(body)?;
            stats_table(&stats.sources)
        }
    })
}

/// The one-line message for an error answer.
pub(super) fn api_error(status: StatusCode, body: &[u8], show: &Show, token_set: bool) -> String {
    let Ok(err) = serde_json::from_slice::<ErrorBody>(body) else {
        // Not the API's JSON: another server, or a gateway without the admin API.
        let text = String::from_utf8_lossy(body);
        let first = text.lines().next().unwrap_or("").trim();
        let first: String = first.chars().take(200).collect();
        return if first.is_empty() {
            format!("the admin API answered {status}")
        } else {
            format!("the admin API answered {status}: {}", escape(&first))
        };
    };
    let name = err.error.as_str();
    match (err.error, show) {
        (ErrorCode::Unauthorized, _) if token_set => {
            format!("{name} (the token in {} was refused)", super::TOKEN_ENV)
        }
        (ErrorCode::Unauthorized, _) => format!("{name} (set {})", super::TOKEN_ENV),
        (ErrorCode::NotFound, Show::Event { id, .. } | Show::Replayed { id: Some(id) }) => {
            format!("{name}: no event {id}")
        }
        _ => match err.message {
            Some(message) => format!("{name}: {}", escape(&message)),
            None => name.to_owned(),
        },
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `-` for a missing value.
fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn events(events: &[Event], with_body: bool) -> String {
    if events.is_empty() {
        return "no events\n".to_owned();
    }
    let mut table = Table::new(&[
        "ID",
        "SOURCE",
        "EVENT ID",
        "STATE",
        "RECEIVED",
        "ATTEMPTS",
        "LAST STATUS",
        "LAST ERROR",
    ]);
    for e in events {
        // A dead letter's reason says more than its last error; a delivered event has none.
        let error = match (&e.dead_reason, &e.last_error) {
            (Some(reason), _) if e.state == StateFilter::Dead => Some(reason.clone()),
            (_, error) => error.clone(),
        };
        table.row(vec![
            e.id.to_string(),
            escape(&e.source),
            escape(&e.event_id),
            e.state.as_str().to_owned(),
            escape(&e.received_at),
            e.attempts.to_string(),
            or_dash(e.last_status),
            error.map_or_else(|| "-".to_owned(), |s| escape(&s)),
        ]);
    }
    let mut out = table.render("");
    if with_body {
        for e in events {
            let _ = write!(
                out,
                "\nevent {} ({} {}) ",
                e.id,
                escape(&e.source),
                escape(&e.event_id)
            );
            out.push_str(&body_block(e));
        }
    }
    out
}

fn event(e: &Event) -> String {
    let mut fields = Table::headless();
    for (k, v) in [
        ("id", e.id.to_string()),
        ("source", escape(&e.source)),
        ("event id", escape(&e.event_id)),
        ("state", e.state.as_str().to_owned()),
        ("received", escape(&e.received_at)),
        ("attempts", e.attempts.to_string()),
        ("last status", or_dash(e.last_status)),
        ("last error", or_dash(e.last_error.as_deref().map(escape))),
        ("next attempt", or_dash(e.next_attempt_at.as_deref().map(escape))),
        ("delivered", or_dash(e.delivered_at.as_deref().map(escape))),
        ("dead reason", or_dash(e.dead_reason.as_deref().map(escape))),
    ] {
        fields.row(vec![k.to_owned(), v]);
    }
    let mut out = fields.render("");
    out.push_str("\nheaders\n");
    let headers = e.headers.as_deref().unwrap_or_default();
    if headers.is_empty() {
        out.push_str("  (none)\n");
    } else {
        let mut table = Table::headless();
        for (name, value) in headers {
            table.row(vec![format!("{}:", escape(name)), escape(value)]);
        }
        out.push_str(&table.render("  "));
    }
    out.push_str("\nhistory\n");
    let attempts = e.history.as_deref().unwrap_or_default();
    if attempts.is_empty() {
        out.push_str("  (no attempts yet)\n");
    } else {
        let mut history = Table::new(&["AT", "STATUS", "OUTCOME"]);
        for a in attempts {
            history.row(vec![escape(&a.at), or_dash(a.status), escape(&a.outcome)]);
        }
        out.push_str(&history.render("  "));
    }
    if e.body.is_some() || e.body_base64.is_some() {
        out.push('\n');
        out.push_str(&body_block(e));
    }
    out
}

/// `body:` and the body, or a note that it was not asked for.
fn body_block(e: &Event) -> String {
    match (&e.body, &e.body_base64) {
        (Some(text), _) => {
            let mut out = format!("body ({} bytes):\n{}", text.len(), escape_body(text));
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out
        }
        (None, Some(b64)) => format!("body (not UTF-8, base64):\n{}\n", escape(b64)),
        (None, None) => "body: (not included)\n".to_owned(),
    }
}

fn stats_table(sources: &[SourceStats]) -> String {
    if sources.is_empty() {
        return "no sources\n".to_owned();
    }
    let mut table = Table::new(&[
        "SOURCE",
        "ACCEPTED",
        "DUPLICATES",
        "REJECTED",
        "QUEUED",
        "DEAD",
        "DELIVERED",
        "LAST EVENT",
        "SILENT",
    ]);
    for s in sources {
        let total: u64 = s.rejected.values().sum();
        let rejected = if total == 0 {
            "0".to_owned()
        } else {
            let reasons: Vec<String> = s
                .rejected
                .iter()
                .map(|(r, n)| format!("{} {n}", escape(r)))
                .collect();
            format!("{total} ({})", reasons.join(", "))
        };
        table.row(vec![
            escape(&s.name),
            s.accepted.to_string(),
            s.duplicates.to_string(),
            rejected,
            s.queued.to_string(),
            s.dead.to_string(),
            s.delivered.to_string(),
            or_dash(s.last_event_at.as_deref().map(escape)),
            if s.silent { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table.render("")
}

// === tables ===

/// Rows of cells printed in aligned columns, two spaces apart, without trailing spaces.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn headless() -> Self {
        Self { rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Every row, each line starting with `indent`.
    fn render(&self, indent: &str) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = indent.to_owned();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

// === escaping ===

/// Whether `c` could change how a terminal shows what follows: control characters and the
/// bidirectional overrides.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A single-line cell: every unsafe character (newlines too) escaped as `\u{..}`.
fn escape(s: &str) -> String {
    if !s.chars().any(unsafe_char) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A body: newlines and tabs kept, every other unsafe character escaped.
fn escape_body(s: &str) -> String {
    s.split('\n')
        .map(|line| line.split('\t').map(escape).collect::<Vec<_>>().join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &str = r#"{"events":[
        {"id":12,"source":"github","event_id":"abc","received_at":"2026-11-23T21:30:00.123Z","state":"dead",
         "attempts":3,"last_status":503,"last_error":"retry in 1.2s: status 503","next_attempt_at":null,
         "delivered_at":null,"dead_reason":"max attempts (3) reached"},
        {"id":9,"source":"stripe","event_id":"evt_1","received_at":"2026-11-23T21:29:00.000Z","state":"delivered",
         "attempts":1,"last_status":200,"last_error":null,"next_attempt_at":null,
         "delivered_at":"2026-11-23T21:29:00.100Z","dead_reason":null}
    ]}"#;

    #[test]
    fn an_event_list_is_an_aligned_table() {
        let out = answer(&Show::Events { body: false }, EVENTS.as_bytes()).expect("valid");
        assert_eq!(
            out,
            "\
ID  SOURCE  EVENT ID  STATE      RECEIVED                  ATTEMPTS  LAST STATUS  LAST ERROR
12  github  abc       dead       2026-11-23T21:30:00.123Z  3         503          max attempts (3) reached
9   stripe  evt_1     delivered  2026-11-23T21:29:00.000Z  1         200          -
"
        );
        assert_eq!(
            answer(&Show::Events { body: false }, br#"{"events":[]}"#).expect("valid"),
            "no events\n"
        );
    }

    #[test]
    fn bodies_follow_the_table_escaped() {
        let json = r#"{"events":[
            {"id":1,"source":"a","event_id":"x","received_at":"t","state":"queued","attempts":0,
             "last_status":null,"last_error":null,"body":"{\"a\":1}\n\u001b[31mred"},
            {"id":2,"source":"a","event_id":"y","received_at":"t","state":"queued","attempts":0,
             "last_status":null,"last_error":null,"body_base64":"/w=="}]}"#;
        let out = answer(&Show::Events { body: true }, json.as_bytes()).expect("valid");
        assert!(
            out.ends_with(
                "\nevent 1 (a x) body (16 bytes):\n{\"a\":1}\n\\u{1b}[31mred\n\nevent 2 (a y) body (not UTF-8, base64):\n/w==\n"
            ),
            "{out}"
        );
        assert!(!out.contains('\u{1b}'));
    }

    #[test]
    fn one_event_with_headers_and_history() {
        let json = r#"{"event":{"id":12,"source":"github","event_id":"abc\u001b]0;x","received_at":"2026-11-23T21:30:00.123Z",
            "state":"queued","attempts":1,"last_status":503,"last_error":"retry in 1.2s: status 503",
            "next_attempt_at":"2026-11-23T21:30:01.400Z","delivered_at":null,"dead_reason":null,
            "history":[{"at":"2026-11-23T21:30:00.200Z","status":503,"outcome":"retry in 1.2s: status 503"}],
            "headers":[["content-type","application/json"],["x-hub-signature-256","[redacted]"]]}}"#;
        let out = answer(&Show::Event { id: 12, body: false }, json.as_bytes()).expect("valid");
        assert_eq!(
            out,
            "\
id            12
source        github
event id      abc\\u{1b}]0;x
state         queued
received      2026-11-23T21:30:00.123Z
attempts      1
last status   503
last error    retry in 1.2s: status 503
next attempt  2026-11-23T21:30:01.400Z
delivered     -
dead reason   -

headers
  content-type:         application/json
  x-hub-signature-256:  [redacted]

history
  AT                        STATUS  OUTCOME
  2026-11-23T21:30:00.200Z  503     retry in 1.2s: status 503
"
        );
    }

    #[test]
    fn stats_sum_rejections_and_name_their_reasons() {
        let json = r#"{"sources":[
            {"name":"github","accepted":10,"duplicates":2,"rejected":{"signature_mismatch":1,"ip_not_allowed":2},
             "queued":3,"dead":1,"delivered":6,"last_event_at":"2026-11-23T21:30:00.123Z","silent":false},
            {"name":"quiet","accepted":0,"duplicates":0,"rejected":{},"queued":0,"dead":0,"delivered":0,
             "last_event_at":null,"silent":true}]}"#;
        assert_eq!(
            answer(&Show::Stats, json.as_bytes()).expect("valid"),
            "\
SOURCE  ACCEPTED  DUPLICATES  REJECTED                                    QUEUED  DEAD  DELIVERED  LAST EVENT                SILENT
github  10        2           3 (ip_not_allowed 2, signature_mismatch 1)  3       1     6          2026-11-23T21:30:00.123Z  no
quiet   0         0           0                                           0       0     0          -                         yes
"
        );
    }

    #[test]
    fn counts() {
        assert_eq!(
            answer(&Show::Replayed { id: None }, br#"{"replayed":1}"#).expect("valid"),
            "replayed 1 event\n"
        );
        assert_eq!(
            answer(&Show::Replayed { id: Some(4) }, br#"{"replayed":1}"#).expect("valid"),
            "replayed event 4: queued for delivery now\n"
        );
        assert_eq!(
            answer(&Show::Purged, br#"{"purged":0}"#).expect("valid"),
            "purged 0 dead letters\n"
        );
        assert!(answer(&Show::Purged, b"not json").is_err());
    }

    #[test]
    fn errors() {
        let list = Show::Events { body: false };
        let cases: &[(u16, &[u8], Show, bool, &str)] = &[
            (
                401,
                br#"{"error":"unauthorized"}"#,
                list,
                false,
                "unauthorized (set HOOKGATE_ADMIN_TOKEN)",
            ),
            (
                401,
                br#"{"error":"unauthorized"}"#,
                list,
                true,
                "unauthorized (the token in HOOKGATE_ADMIN_TOKEN was refused)",
            ),
            (
                404,
                br#"{"error":"not_found"}"#,
                Show::Event { id: 3, body: false },
                false,
                "not_found: no event 3",
            ),
            (
                404,
                br#"{"error":"not_found"}"#,
                Show::Replayed { id: Some(5) },
                false,
                "not_found: no event 5",
            ),
            (
                400,
                br#"{"error":"bad_request","message":"state: \"x\" is not queued, delivered or dead"}"#,
                list,
                false,
                "bad_request: state: \"x\" is not queued, delivered or dead",
            ),
            (
                503,
                br#"{"error":"store_unavailable"}"#,
                Show::Stats,
                false,
                "store_unavailable",
            ),
            (
                404,
                b"not found\n",
                Show::Stats,
                false,
                "the admin API answered 404 Not Found: not found",
            ),
            (
                502,
                b"",
                Show::Stats,
                false,
                "the admin API answered 502 Bad Gateway",
            ),
        ];
        for (status, body, show, token, want) in cases {
            let status = StatusCode::from_u16(*status).expect("valid");
            assert_eq!(api_error(status, body, show, *token), *want);
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
        assert_eq!(escape("a\nb\u{202E}c"), "a\\u{a}b\\u{202e}c");
        assert_eq!(escape_body("a\n\tb\r\n\u{7}"), "a\n\tb\\u{d}\n\\u{7}");
    }
}
