//! The admin API's routes: parse the path and query, run the store operation off the async workers,
//! answer JSON.
//!
//! Times are RFC 3339 UTC with milliseconds; an event's `id` is its store sequence number. Every query
//! parameter is checked: an unknown one, a repeated one or a bad value is a 400 naming it, so that a typo
//! (`?stat=dead`) never silently widens a bulk replay or purge.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;
use tokio::sync::oneshot;

use super::AdminApi;
use crate::{
    layers::ResBody,
    store::{
        unix_ms, EventQuery, EventRecord, EventState, StateFilter, Store, StoreError, DELIVERED_OUTCOME,
    },
};

/// `limit` when absent.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
const MAX_LIMIT: usize = 1000;

/// Header names containing any of these have their values shown as `[redacted]`: signatures, tokens,
/// credentials, secrets, HMACs (Shopify's `X-Shopify-Hmac-Sha256`), cookies and API keys.
const REDACT_IF_NAME_CONTAINS: &[&str] = &[
    "sig", "token", "auth", "secret", "hmac", "cookie", "key", "password",
];

/// Why an admin API request failed; [`ApiError::into_response`] is the one place that maps it to an answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// No or a wrong bearer token.
    #[error("unauthorized")]
    Unauthorized,
    /// A request not addressed to this listener, or a change from another origin; the message names
    /// the header.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// No such route or event.
    #[error("not found")]
    NotFound,
    /// A bad path or query value; the message names it.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The route exists, not with this method; carries the `Allow` value.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// The store failed.
    #[error("the store failed")]
    Store(#[source] StoreError),
    /// No reload loop is listening.
    #[error("reload is unavailable")]
    ReloadUnavailable,
    /// A blocking task panicked.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub(super) fn into_response(self) -> Response<ResBody> {
        let (status, body) = match &self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "unauthorized"}),
            ),
            ApiError::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                serde_json::json!({"error": "forbidden", "message": message}),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, serde_json::json!({"error": "not_found"})),
            ApiError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "bad_request", "message": message}),
            ),
            ApiError::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"error": "method_not_allowed"}),
            ),
            ApiError::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "store_unavailable"}),
            ),
            ApiError::ReloadUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "reload_unavailable"}),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": "internal"}),
            ),
        };
        let mut resp = json(status, &body);
        match self {
            ApiError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<ResBody> {
    let bytes = serde_json::to_vec(body).expect("admin API answers serialize: plain structs, string keys");
    let mut resp = Response::new(ResBody::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn ok(body: &impl Serialize) -> Response<ResBody> {
    json(StatusCode::OK, body)
}

/// Runs a store operation on the blocking pool (sled blocks).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(ApiError::Store)
}

// === routes ===

/// The admin API's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// `/events`
    Events,
    /// `/events/{id}`
    Event(u64),
    /// `/events/{id}/replay`
    EventReplay(u64),
    /// `/replay`
    Replay,
    /// `/dlq`
    Dlq,
    /// `/stats`
    Stats,
    /// `/reload`
    Reload,
}

impl Route {
    /// The route at `path`; `None` for an unknown path. A non-numeric id is a bad request.
    pub(super) fn parse(path: &str) -> Result<Option<Self>, ApiError> {
        let route = match path {
            "/events" => Route::Events,
            "/replay" => Route::Replay,
            "/dlq" => Route::Dlq,
            "/stats" => Route::Stats,
            "/reload" => Route::Reload,
            _ => {
                let Some(rest) = path.strip_prefix("/events/").filter(|r| !r.is_empty()) else {
                    return Ok(None);
                };
                let (id, replay) = match rest.split_once('/') {
                    None => (rest, false),
                    Some((id, "replay")) => (id, true),
                    Some(_) => return Ok(None),
                };
                let id = id.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "id: {:?} is not an event id (expected a number, as listed by GET /events)",
                        truncate(id)
                    ))
                })?;
                if replay {
                    Route::EventReplay(id)
                } else {
                    Route::Event(id)
                }
            }
        };
        Ok(Some(route))
    }

    /// The methods the route answers, as an `Allow` value.
    fn allow(self) -> &'static str {
        match self {
            Route::Events | Route::Stats => "GET",
            Route::Event(_) => "GET, DELETE",
            Route::EventReplay(_) | Route::Replay | Route::Reload => "POST",
            Route::Dlq => "DELETE",
        }
    }

    /// The query parameters the route takes.
    fn params(self, method: &Method) -> &'static [&'static str] {
        match (self, method) {
            (Route::Events, _) => &["source", "state", "since", "limit", "include"],
            (Route::Event(_), &Method::GET) => &["include"],
            (Route::Replay, _) => &["source", "state", "since"],
            (Route::Dlq, _) => &["source", "since"],
            _ => &[],
        }
    }
}

/// Answers an authorized API request.
pub(super) async fn answer(
    store: &Store,
    api: &AdminApi,
    parts: &http::request::Parts,
) -> Result<Response<ResBody>, ApiError> {
    let route = Route::parse(parts.uri.path())?.ok_or(ApiError::NotFound)?;
    let method = &parts.method;
    if !route.allow().split(", ").any(|m| m == method.as_str()) {
        return Err(ApiError::MethodNotAllowed(route.allow()));
    }
    let now = SystemTime::now();
    let params = Params::parse(parts.uri.query().unwrap_or(""), route.params(method))?;
    let store = store.clone();
    match (route, method) {
        (Route::Events, _) => {
            let query = params.query(now, /* default_state */ None, params.limit()?)?;
            let include_body = params.include_body()?;
            let events = blocking(move || list(&store, &query, include_body)).await?;
            Ok(ok(&serde_json::json!({ "events": events })))
        }
        (Route::Event(id), &Method::GET) => {
            let include_body = params.include_body()?;
            let event = blocking(move || show(&store, id, include_body))
                .await?
                .ok_or(ApiError::NotFound)?;
            Ok(ok(&serde_json::json!({ "event": event })))
        }
        (Route::Event(id), _) => match blocking(move || store.delete(id)).await? {
            true => Ok(ok(&serde_json::json!({ "deleted": 1 }))),
            false => Err(ApiError::NotFound),
        },
        (Route::EventReplay(id), _) => match blocking(move || store.replay(id, now)).await? {
            true => Ok(ok(&serde_json::json!({ "replayed": 1 }))),
            false => Err(ApiError::NotFound),
        },
        (Route::Replay, _) => {
            let query = params.query(now, Some(StateFilter::Dead), usize::MAX)?;
            let n = blocking(move || store.replay_where(&query, now)).await?;
            Ok(ok(&serde_json::json!({ "replayed": n })))
        }
        (Route::Dlq, _) => {
            let query = params.query(now, Some(StateFilter::Dead), usize::MAX)?;
            let n = blocking(move || store.purge_dead(&query)).await?;
            Ok(ok(&serde_json::json!({ "purged": n })))
        }
        (Route::Stats, _) => {
            let counts = blocking(move || store.counts_by_source()).await?;
            Ok(ok(&serde_json::json!({ "sources": stats(api, &counts) })))
        }
        (Route::Reload, _) => reload(api).await,
    }
}

// === query parameters ===

/// A request's query parameters, each given at most once and each one the route takes.
#[derive(Debug, Default)]
pub(super) struct Params(BTreeMap<String, String>);

impl Params {
    pub(super) fn parse(query: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut params = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if !allowed.contains(&key.as_ref()) {
                let expected = if allowed.is_empty() {
                    "this route takes no parameters".to_owned()
                } else {
                    format!("expected one of: {}", allowed.join(", "))
                };
                return Err(ApiError::BadRequest(format!(
                    "{:?} is not a parameter of this route ({expected})",
                    truncate(&key)
                )));
            }
            if params.insert(key.to_string(), value.into_owned()).is_some() {
                return Err(ApiError::BadRequest(format!("{key}: given more than once")));
            }
        }
        Ok(Self(params))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The filters `source`, `state` (or `default_state`) and `since`, with `limit`.
    pub(super) fn query(
        &self,
        now: SystemTime,
        default_state: Option<StateFilter>,
        limit: usize,
    ) -> Result<EventQuery, ApiError> {
        let source = match self.get("source") {
            Some("") => {
                return Err(ApiError::BadRequest(
                    "source: is empty (expected a source name)".into(),
                ))
            }
            other => other.map(str::to_owned),
        };
        let state = match self.get("state") {
            Some(s) => Some(
                s.parse::<StateFilter>()
                    .map_err(|e| ApiError::BadRequest(format!("state: {:?} is {e}", truncate(s))))?,
            ),
            None => default_state,
        };
        let since_ms = self.get("since").map(|s| parse_since(s, now)).transpose()?;
        Ok(EventQuery {
            source,
            state,
            since_ms,
            limit,
        })
    }

    /// `limit`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    pub(super) fn limit(&self) -> Result<usize, ApiError> {
        let Some(raw) = self.get("limit") else {
            return Ok(DEFAULT_LIMIT);
        };
        match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "limit: {:?} is not valid (expected a number from 1 to {MAX_LIMIT})",
                truncate(raw)
            ))),
        }
    }

    /// Whether `include=body` was asked for.
    pub(super) fn include_body(&self) -> Result<bool, ApiError> {
        match self.get("include") {
            None => Ok(false),
            Some("body") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "include: {:?} is not valid (expected \"body\")",
                truncate(other)
            ))),
        }
    }
}

/// `since`: an RFC 3339 UTC time, or an age such as `2h` (meaning `now` minus 2 hours); Unix ms.
pub(super) fn parse_since(raw: &str, now: SystemTime) -> Result<u64, ApiError> {
    if let Ok(at) = humantime::parse_rfc3339_weak(raw) {
        return Ok(unix_ms(at));
    }
    if let Ok(age) = humantime::parse_duration(raw) {
        return Ok(unix_ms(now.checked_sub(age).unwrap_or(UNIX_EPOCH)));
    }
    Err(ApiError::BadRequest(format!(
        "since: {:?} is neither an RFC 3339 time nor an age (expected e.g. \"2026-11-23T21:30:00Z\" or \"2h\")",
        truncate(raw)
    )))
}

/// At most 64 characters of a client-chosen string, for error messages.
fn truncate(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(64) {
        Some((at, _)) => Cow::Owned(format!("{}...", &s[..at])),
        None => Cow::Borrowed(s),
    }
}

// === events ===

/// An event as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct EventJson {
    id: u64,
    source: String,
    event_id: String,
    received_at: String,
    state: &'static str,
    attempts: usize,
    last_status: Option<u16>,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
    delivered_at: Option<String>,
    dead_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<AttemptJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Vec<(String, String)>>,
}

/// One attempt in an event's history.
#[derive(Debug, Serialize)]
pub(super) struct AttemptJson {
    at: String,
    status: Option<u16>,
    outcome: String,
}

impl EventJson {
    pub(super) fn new(id: u64, record: EventRecord) -> Self {
        let last = record.attempts.last();
        let (next_attempt_at, delivered_at, dead_reason) = match &record.state {
            EventState::Queued { due_ms } => (Some(rfc3339(*due_ms)), None, None),
            EventState::Delivered { at_ms } => (None, Some(rfc3339(*at_ms)), None),
            EventState::Dead { reason } => (None, None, Some(reason.clone())),
        };
        Self {
            id,
            state: record.state.name(),
            attempts: record.attempts.len(),
            last_status: last.and_then(|a| a.status),
            last_error: last
                .filter(|a| a.outcome != DELIVERED_OUTCOME)
                .map(|a| a.outcome.clone()),
            next_attempt_at,
            delivered_at,
            dead_reason,
            received_at: rfc3339(record.received_at_ms),
            body: None,
            body_base64: None,
            history: None,
            headers: None,
            source: record.source,
            event_id: record.event_id,
        }
    }

    /// Adds the attempt history and the headers, redacted.
    pub(super) fn with_details(mut self, record: &EventRecord) -> Self {
        self.history = Some(
            record
                .attempts
                .iter()
                .map(|a| AttemptJson {
                    at: rfc3339(a.at_ms),
                    status: a.status,
                    outcome: a.outcome.clone(),
                })
                .collect(),
        );
        self.headers = Some(
            record
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), shown_header_value(name, value)))
                .collect(),
        );
        self
    }

    /// Adds the body: as text if it is UTF-8, else base64.
    pub(super) fn with_body(mut self, body: &[u8]) -> Self {
        match std::str::from_utf8(body) {
            Ok(text) => self.body = Some(text.to_owned()),
            Err(_) => self.body_base64 = Some(B64.encode(body)),
        }
        self
    }
}

/// A header's value as shown: lossy UTF-8, or `[redacted]` for credential-like names.
pub(super) fn shown_header_value(name: &str, value: &[u8]) -> String {
    let lower = name.to_ascii_lowercase();
    if REDACT_IF_NAME_CONTAINS.iter().any(|w| lower.contains(w)) {
        "[redacted]".to_owned()
    } else {
        String::from_utf8_lossy(value).into_owned()
    }
}

fn list(store: &Store, query: &EventQuery, include_body: bool) -> Result<Vec<EventJson>, StoreError> {
    let mut out = Vec::new();
    for (seq, record) in store.list(query)? {
        let event = EventJson::new(seq, record);
        if include_body {
            // Deleted or purged since it was listed: shown without a body.
            match store.load(seq)? {
                Some((_, body)) => out.push(event.with_body(&body)),
                None => out.push(event),
            }
        } else {
            out.push(event);
        }
    }
    Ok(out)
}

fn show(store: &Store, seq: u64, include_body: bool) -> Result<Option<EventJson>, StoreError> {
    let Some((record, body)) = store.load(seq)? else {
        return Ok(None);
    };
    let event = EventJson::new(seq, record.clone()).with_details(&record);
    Ok(Some(if include_body {
        event.with_body(&body)
    } else {
        event
    }))
}

/// RFC 3339 UTC with milliseconds.
pub(super) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

// === stats ===

#[derive(Debug, Serialize)]
struct SourceJson {
    name: String,
    accepted: u64,
    duplicates: u64,
    rejected: BTreeMap<&'static str, u64>,
    queued: u64,
    dead: u64,
    delivered: u64,
    last_event_at: Option<String>,
    silent: bool,
}

fn stats(
    api: &AdminApi,
    counts: &std::collections::HashMap<String, crate::store::Counts>,
) -> Vec<SourceJson> {
    (api.sources)()
        .into_iter()
        .map(|name| {
            let snap = api.stats.source(&name).snapshot();
            let c = counts.get(&*name).copied().unwrap_or_default();
            SourceJson {
                accepted: snap.accepted,
                duplicates: snap.duplicates,
                rejected: snap.rejected,
                queued: c.queued,
                dead: c.dead,
                delivered: c.delivered,
                last_event_at: snap.last_event_ms.map(rfc3339),
                silent: api.silent.as_ref().is_some_and(|silent| silent(&name)),
                name: name.to_string(),
            }
        })
        .collect()
}

// === reload ===

async fn reload(api: &AdminApi) -> Result<Response<ResBody>, ApiError> {
    let reloader = api.reloader.as_ref().ok_or(ApiError::ReloadUnavailable)?;
    let (tx, rx) = oneshot::channel();
    reloader.send(tx).await.map_err(|_| ApiError::ReloadUnavailable)?;
    let report = rx.await.map_err(|_| ApiError::ReloadUnavailable)?;
    Ok(if report.applied {
        ok(&serde_json::json!({ "status": "reloaded", "restart_required": report.restart_required }))
    } else {
        json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "status": "rejected", "errors": report.errors }),
        )
    })
}
