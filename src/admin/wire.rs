//! The admin API's JSON, written once: `admin/api.rs` serializes these types and the binary's admin
//! client (`hookgate events|replay|dlq|stats`) deserializes them, so that the two cannot drift apart.
//!
//! Times are RFC 3339 UTC with milliseconds ([`rfc3339`]); an event's `id` is its store sequence
//! number; a `since` filter is a [`Since`]; a state is a [`StateFilter`] (`queued`, `delivered`,
//! `dead`). Unknown fields are ignored when reading, so that a client reads a newer gateway's
//! answers.

use std::{
    collections::BTreeMap,
    fmt,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::store::{unix_ms, StateFilter};

// === answers ===

/// `GET /events`: `{"events":[...]}`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    /// The matching events.
    pub events: Vec<Event>,
}

/// `GET /events/{id}`: `{"event":{...}}`, with its history and headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneEvent {
    /// The event.
    pub event: Event,
}

/// A stored event as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The store's sequence number, which the other routes take.
    pub id: u64,
    /// The source's name.
    pub source: String,
    /// The event id the sender gave (or the gateway derived), as deduplicated.
    pub event_id: String,
    /// When it was accepted.
    pub received_at: String,
    /// Its delivery state.
    pub state: StateFilter,
    /// How many delivery attempts it has had.
    pub attempts: u64,
    /// The app's status at the last attempt, if it answered.
    pub last_status: Option<u16>,
    /// What went wrong at the last attempt; `None` after a delivery.
    pub last_error: Option<String>,
    /// When it is due, while queued.
    pub next_attempt_at: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<String>,
    /// Why it is a dead letter.
    pub dead_reason: Option<String>,
    /// The body, when asked for (`include=body`) and UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body in base64, when asked for and not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Every attempt, oldest first (`GET /events/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Attempt>>,
    /// The request's headers as `[name, value]` pairs, credentials redacted (`GET /events/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<(String, String)>>,
}

/// One delivery attempt in an event's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it ended.
    pub at: String,
    /// The app's status, if it answered.
    pub status: Option<u16>,
    /// What was decided and why, e.g. `retry in 1.2s: status 503`.
    pub outcome: String,
}

/// `POST /events/{id}/replay` and `POST /replay`: `{"replayed":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// How many events were queued again.
    pub replayed: u64,
}

/// `DELETE /dlq`: `{"purged":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// How many dead letters were deleted.
    pub purged: u64,
}

/// `DELETE /events/{id}`: `{"deleted":1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// How many events were deleted.
    pub deleted: u64,
}

/// `GET /stats`: `{"sources":[...]}`, one entry per configured source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The sources, in config order.
    pub sources: Vec<SourceStats>,
}

/// One source's counters (since start) and queue sizes (from the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// The source's name.
    pub name: String,
    /// Events accepted.
    pub accepted: u64,
    /// Duplicates answered 200 and dropped.
    pub duplicates: u64,
    /// Rejected requests by reason code (`signature_mismatch`, `ip_not_allowed`, ...).
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
    /// Events waiting for delivery.
    pub queued: u64,
    /// Dead letters.
    pub dead: u64,
    /// Delivered events still kept.
    pub delivered: u64,
    /// When the last event was accepted.
    pub last_event_at: Option<String>,
    /// Whether the source has had no event within its `expect_within`.
    #[serde(default)]
    pub silent: bool,
}

/// `POST /reload`: `{"status":"reloaded","restart_required":[..]}` (200) or
/// `{"status":"rejected","errors":[..]}` (400).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reload {
    /// The new config is in use.
    Reloaded {
        /// Keys whose change needs a restart, e.g. `server.listen`.
        restart_required: Vec<String>,
    },
    /// The new config is invalid; the old one stays.
    Rejected {
        /// Every problem, one message each.
        errors: Vec<String>,
    },
}

// === errors ===

/// An error answer: `{"error":"bad_request","message":"..."}`; `message` only where there is more to say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What failed.
    pub error: ErrorCode,
    /// Which parameter, and what was expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The API's error codes, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no or a wrong bearer token (with `WWW-Authenticate: Bearer`).
    Unauthorized,
    /// 403: the request is not addressed to the listener (`Host`), or is a change from another site
    /// (`Origin`); the message names the header.
    Forbidden,
    /// 404: no such route or event.
    NotFound,
    /// 400: a bad path or query value; the message names it.
    BadRequest,
    /// 405: the route exists, not with this method (with `Allow`).
    MethodNotAllowed,
    /// 503: the store failed.
    StoreUnavailable,
    /// 503: no reload loop is listening.
    ReloadUnavailable,
    /// 500: a bug.
    Internal,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::BadRequest,
        ErrorCode::MethodNotAllowed,
        ErrorCode::StoreUnavailable,
        ErrorCode::ReloadUnavailable,
        ErrorCode::Internal,
    ];

    /// The status the API answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::StoreUnavailable | ErrorCode::ReloadUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears in the JSON, e.g. `not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::ReloadUnavailable => "reload_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === since ===

/// A `since` filter: events received at or after a time, or within an age of the gateway's clock.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use hookgate::admin::wire::Since;
///
/// let age: Since = "2h".parse().unwrap();
/// assert_eq!(age, Since::Age(Duration::from_secs(7200)));
/// assert_eq!(age.to_string(), "2h");
/// let at: Since = "2026-11-23T21:30:00.5Z".parse().unwrap();
/// assert_eq!(at.to_string(), "2026-11-23T21:30:00.500Z");
/// assert_eq!(at.unix_ms(UNIX_EPOCH), 1_795_469_400_500);
/// assert!("yesterday".parse::<Since>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// An age such as `2h`, subtracted from the gateway's clock (not the client's) when it answers.
    Age(Duration),
    /// An RFC 3339 UTC time.
    At(SystemTime),
}

impl Since {
    /// The first Unix millisecond the filter takes in, at `now` (0 for an age older than the epoch).
    pub fn unix_ms(self, now: SystemTime) -> u64 {
        match self {
            Since::Age(age) => unix_ms(now.checked_sub(age).unwrap_or(UNIX_EPOCH)),
            Since::At(at) => unix_ms(at),
        }
    }
}

/// A `since` value that is neither an RFC 3339 UTC time nor an age.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(r#"is neither an RFC 3339 time nor an age (expected e.g. "2026-11-23T21:30:00Z" or "2h")"#)]
pub struct BadSince;

impl FromStr for Since {
    type Err = BadSince;

    fn from_str(s: &str) -> Result<Self, BadSince> {
        if let Ok(at) = humantime::parse_rfc3339_weak(s) {
            return Ok(Since::At(at));
        }
        humantime::parse_duration(s).map(Since::Age).map_err(|_| BadSince)
    }
}

impl fmt::Display for Since {
    /// The form the API takes: `1h 30m`, or RFC 3339 UTC with milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Since::Age(age) => write!(f, "{}", humantime::format_duration(*age)),
            Since::At(at) => write!(f, "{}", humantime::format_rfc3339_millis(*at)),
        }
    }
}

// === query parameters ===

/// The query parameters' names.
pub mod param {
    /// Only this source's events.
    pub const SOURCE: &str = "source";
    /// Only events in this state.
    pub const STATE: &str = "state";
    /// Only events received since this time or age.
    pub const SINCE: &str = "since";
    /// Only events received before this time or age (with `since`: a time window).
    pub const UNTIL: &str = "until";
    /// Only events whose id is below this one (`GET /events`): the next page, newest first.
    pub const BEFORE: &str = "before";
    /// At most this many events (`GET /events`).
    pub const LIMIT: &str = "limit";
    /// `include=body`: with the bodies (`GET /events`, `GET /events/{id}`).
    pub const INCLUDE: &str = "include";
    /// The one value `include` takes.
    pub const INCLUDE_BODY: &str = "body";
}

/// Which events `GET /events`, `POST /replay` and `DELETE /dlq` act on: every filter that is set
/// must match. `since` and `until` together are a time window, `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `source`: only this source's events.
    pub source: Option<String>,
    /// `state`: only events in this state (`POST /replay` and `DELETE /dlq` default to dead).
    pub state: Option<StateFilter>,
    /// `since`: only events received since then.
    pub since: Option<Since>,
    /// `until`: only events received before then.
    pub until: Option<Since>,
}

impl Filter {
    /// The filters that are set, as unencoded query pairs, in the order the docs list them.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(source) = &self.source {
            pairs.push((param::SOURCE, source.clone()));
        }
        if let Some(state) = self.state {
            pairs.push((param::STATE, state.as_str().to_owned()));
        }
        if let Some(since) = self.since {
            pairs.push((param::SINCE, since.to_string()));
        }
        if let Some(until) = self.until {
            pairs.push((param::UNTIL, until.to_string()));
        }
        pairs
    }
}

/// A Unix millisecond as the API shows times: RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use super::*;

    /// Serializes `value`, checks the JSON is `want`, and reads it back unchanged.
    fn round_trip<T>(value: &T, want: serde_json::Value)
    where
        T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        let json = serde_json::to_value(value).expect("serializes");
        assert_eq!(json, want);
        let back: T = serde_json::from_value(json).expect("reads back");
        assert_eq!(&back, value);
    }

    fn queued() -> Event {
        Event {
            id: 12,
            source: "github".into(),
            event_id: "abc".into(),
            received_at: rfc3339(1_000),
            state: StateFilter::Queued,
            attempts: 1,
            last_status: Some(503),
            last_error: Some("retry in 1.2s: status 503".into()),
            next_attempt_at: Some(rfc3339(3_200)),
            delivered_at: None,
            dead_reason: None,
            body: None,
            body_base64: None,
            history: None,
            headers: None,
        }
    }

    #[test]
    fn an_event_list_round_trips_without_the_details_it_lacks() {
        round_trip(
            &EventList {
                events: vec![queued()],
            },
            serde_json::json!({"events": [{
                "id": 12, "source": "github", "event_id": "abc",
                "received_at": "1970-01-01T00:00:01.000Z", "state": "queued", "attempts": 1,
                "last_status": 503, "last_error": "retry in 1.2s: status 503",
                "next_attempt_at": "1970-01-01T00:00:03.200Z", "delivered_at": null, "dead_reason": null,
            }]}),
        );
    }

    #[test]
    fn one_event_round_trips_with_history_headers_and_body() {
        let event = Event {
            state: StateFilter::Dead,
            next_attempt_at: None,
            dead_reason: Some("max attempts (1) reached".into()),
            body_base64: Some("/wA=".into()),
            history: Some(vec![Attempt {
                at: rfc3339(2_000),
                status: None,
                outcome: "retry in 1s: connection refused".into(),
            }]),
            headers: Some(vec![("x-hub-signature-256".into(), "[redacted]".into())]),
            ..queued()
        };
        round_trip(
            &OneEvent { event },
            serde_json::json!({"event": {
                "id": 12, "source": "github", "event_id": "abc",
                "received_at": "1970-01-01T00:00:01.000Z", "state": "dead", "attempts": 1,
                "last_status": 503, "last_error": "retry in 1.2s: status 503",
                "next_attempt_at": null, "delivered_at": null, "dead_reason": "max attempts (1) reached",
                "body_base64": "/wA=",
                "history": [{"at": "1970-01-01T00:00:02.000Z", "status": null,
                             "outcome": "retry in 1s: connection refused"}],
                "headers": [["x-hub-signature-256", "[redacted]"]],
            }}),
        );
    }

    #[test]
    fn counts_round_trip() {
        round_trip(&Replayed { replayed: 3 }, serde_json::json!({"replayed": 3}));
        round_trip(&Purged { purged: 0 }, serde_json::json!({"purged": 0}));
        round_trip(&Deleted { deleted: 1 }, serde_json::json!({"deleted": 1}));
    }

    #[test]
    fn stats_round_trip() {
        round_trip(
            &Stats {
                sources: vec![SourceStats {
                    name: "github".into(),
                    accepted: 10,
                    duplicates: 2,
                    rejected: [("signature_mismatch".to_owned(), 1)].into(),
                    queued: 3,
                    dead: 1,
                    delivered: 6,
                    last_event_at: Some(rfc3339(1_795_469_400_123)),
                    silent: true,
                }],
            },
            serde_json::json!({"sources": [{
                "name": "github", "accepted": 10, "duplicates": 2, "rejected": {"signature_mismatch": 1},
                "queued": 3, "dead": 1, "delivered": 6, "last_event_at": "2026-11-23T21:30:00.123Z",
                "silent": true,
            }]}),
        );
    }

    #[test]
    fn reload_answers_round_trip() {
        round_trip(
            &Reload::Reloaded {
                restart_required: vec!["server.listen".into()],
            },
            serde_json::json!({"status": "reloaded", "restart_required": ["server.listen"]}),
        );
        round_trip(
            &Reload::Rejected {
                errors: vec!["sources[0].name: is empty".into()],
            },
            serde_json::json!({"status": "rejected", "errors": ["sources[0].name: is empty"]}),
        );
    }

    #[test]
    fn every_error_code_round_trips_under_its_name() {
        for code in ErrorCode::ALL {
            round_trip(
                &ErrorBody {
                    error: code,
                    message: None,
                },
                serde_json::json!({ "error": code.as_str() }),
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
        round_trip(
            &ErrorBody {
                error: ErrorCode::BadRequest,
                message: Some("limit: \"0\" is not valid".into()),
            },
            serde_json::json!({"error": "bad_request", "message": "limit: \"0\" is not valid"}),
        );
        assert!(serde_json::from_str::<ErrorBody>(r#"{"error":"teapot"}"#).is_err());
    }

    #[test]
    fn a_client_reads_fields_it_does_not_know() {
        let json = r#"{"replayed":2,"took_ms":5}"#;
        assert_eq!(
            serde_json::from_str::<Replayed>(json).expect("reads"),
            Replayed { replayed: 2 }
        );
    }

    #[test]
    fn since_is_a_time_or_an_age_and_prints_as_the_api_reads_it() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        for (given, shown, ms) in [
            ("2h", "2h", (1_000_000 - 7_200) * 1000),
            ("1h 30m", "1h 30m", (1_000_000 - 5_400) * 1000),
            ("90s", "1m 30s", (1_000_000 - 90) * 1000),
            ("100000h", "11years 4months 27days 3h 45m 36s", 0),
            (
                "2026-11-23T21:30:00.123Z",
                "2026-11-23T21:30:00.123Z",
                1_795_469_400_123,
            ),
            (
                "2026-11-23T21:30:00Z",
                "2026-11-23T21:30:00.000Z",
                1_795_469_400_000,
            ),
        ] {
            let since: Since = given.parse().unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(since.to_string(), shown, "{given}");
            assert_eq!(since.unix_ms(now), ms, "{given}");
            assert_eq!(shown.parse::<Since>(), Ok(since), "{given} prints as it reads");
        }
        for bad in ["yesterday", "", "2026-11-23T21:30:00+02:00", "-5m"] {
            assert_eq!(bad.parse::<Since>(), Err(BadSince), "{bad:?}");
        }
    }

    #[test]
    fn times_are_rfc3339_millis() {
        assert_eq!(rfc3339(1_795_469_400_123), "2026-11-23T21:30:00.123Z");
    }
}
