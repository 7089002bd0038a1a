//! The admin API's routes: parse the path and query, run the store operation off the async workers,
//! answer JSON.
//!
//! The answers' JSON types are in [`wire`](super::wire), shared with the binary's admin client.
//! Every query parameter is checked: an unknown one, a repeated one or a bad value is a 400 naming it, so that a typo
//! (`?stat=dead`) never silently widens a bulk replay or purge.

use std::{borrow::Cow, collections::BTreeMap, time::SystemTime};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;
use tokio::sync::oneshot;

use super::{
    allow::Allow,
    wire::{self, param, rfc3339, ErrorBody, ErrorCode, Filter, Since},
    AdminApi,
};
use crate::{
    layers::ResBody,
    store::{EventQuery, EventRecord, EventState, StateFilter, Store, StoreError},
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
    /// The route exists, not with this method; carries the methods it answers.
    #[error("method not allowed")]
    MethodNotAllowed(Allow),
    /// The store failed.
    #[error("the store failed")]
    Store(#[source] StoreError),
    /// No reload loop is listening.
    #[error("reload is unavailable")]
    ReloadUnavailable,
}

impl ApiError {
    /// The code and message the client sees: never a store error's text, which names files.
    fn body(&self) -> ErrorBody {
        let (error, message) = match self {
            ApiError::Unauthorized => (ErrorCode::Unauthorized, None),
            ApiError::Forbidden(message) => (ErrorCode::Forbidden, Some((*message).to_owned())),
            ApiError::NotFound => (ErrorCode::NotFound, None),
            ApiError::BadRequest(message) => (ErrorCode::BadRequest, Some(message.clone())),
            ApiError::MethodNotAllowed(_) => (ErrorCode::MethodNotAllowed, None),
            ApiError::Store(_) => (ErrorCode::StoreUnavailable, None),
            ApiError::ReloadUnavailable => (ErrorCode::ReloadUnavailable, None),
        };
        ErrorBody { error, message }
    }

    pub(super) fn into_response(self) -> Response<ResBody> {
        let body = self.body();
        let mut resp = json(body.error.status(), &body);
        match self {
            ApiError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                resp.headers_mut().insert(header::ALLOW, allow.header());
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

    /// The methods the route answers.
    fn allow(self) -> Allow {
        match self {
            Route::Events | Route::Stats => Allow::GET,
            Route::Event(_) => Allow::GET_DELETE,
            Route::EventReplay(_) | Route::Replay | Route::Reload => Allow::POST,
            Route::Dlq => Allow::DELETE,
        }
    }

    /// The query parameters the route takes.
    fn params(self, method: &Method) -> &'static [&'static str] {
        match (self, method) {
            (Route::Events, _) => &[
                param::SOURCE,
                param::STATE,
                param::SINCE,
                param::LIMIT,
                param::INCLUDE,
            ],
            (Route::Event(_), &Method::GET) => &[param::INCLUDE],
            (Route::Replay, _) => &[param::SOURCE, param::STATE, param::SINCE],
            (Route::Dlq, _) => &[param::SOURCE, param::SINCE],
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
    if !route.allow().permits(method) {
        return Err(ApiError::MethodNotAllowed(route.allow()));
    }
    let now = SystemTime::now();
    let params = Params::parse(parts.uri.query().unwrap_or(""), route.params(method))?;
    match (route, method) {
        (Route::Events, _) => {
            let query = params.query(now, /* default_state */ None, params.limit()?)?;
            let include_body = params.include_body()?;
            let events = list(store, &query, include_body).await?;
            Ok(ok(&wire::EventList { events }))
        }
        (Route::Event(id), &Method::GET) => {
            let include_body = params.include_body()?;
            let event = show(store, id, include_body).await?.ok_or(ApiError::NotFound)?;
            Ok(ok(&wire::OneEvent { event }))
        }
        (Route::Event(id), _) => match store.delete(id).await? {
            true => Ok(ok(&wire::Deleted { deleted: 1 })),
            false => Err(ApiError::NotFound),
        },
        (Route::EventReplay(id), _) => match store.replay(id, now).await? {
            true => Ok(ok(&wire::Replayed { replayed: 1 })),
            false => Err(ApiError::NotFound),
        },
        (Route::Replay, _) => {
            let query = params.query(now, Some(StateFilter::Dead), usize::MAX)?;
            let n = store.replay_where(&query, now).await?;
            Ok(ok(&wire::Replayed { replayed: count(n) }))
        }
        (Route::Dlq, _) => {
            let query = params.query(now, Some(StateFilter::Dead), usize::MAX)?;
            let n = store.purge_dead(&query).await?;
            Ok(ok(&wire::Purged { purged: count(n) }))
        }
        (Route::Stats, _) => {
            let counts = store.counts_by_source().await?;
            Ok(ok(&wire::Stats {
                sources: stats(api, &counts),
            }))
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

    /// The filters `source`, `state` and `since`, as given.
    pub(super) fn filter(&self) -> Result<Filter, ApiError> {
        let source = match self.get(param::SOURCE) {
            Some("") => {
                return Err(ApiError::BadRequest(
                    "source: is empty (expected a source name)".into(),
                ))
            }
            other => other.map(str::to_owned),
        };
        let state = self
            .get(param::STATE)
            .map(|raw| {
                raw.parse::<StateFilter>()
                    .map_err(|e| ApiError::BadRequest(format!("state: {:?} is {e}", truncate(raw))))
            })
            .transpose()?;
        let since = self
            .get(param::SINCE)
            .map(|raw| {
                raw.parse::<Since>()
                    .map_err(|e| ApiError::BadRequest(format!("since: {:?} {e}", truncate(raw))))
            })
            .transpose()?;
        Ok(Filter { source, state, since })
    }

    /// The store query for the filters, with `state` defaulting to `default_state`, `since`
    /// resolved at `now`, and `limit`.
    pub(super) fn query(
        &self,
        now: SystemTime,
        default_state: Option<StateFilter>,
        limit: usize,
    ) -> Result<EventQuery, ApiError> {
        let filter = self.filter()?;
        Ok(EventQuery {
            source: filter.source,
            state: filter.state.or(default_state),
            since_ms: filter.since.map(|since| since.unix_ms(now)),
            limit,
        })
    }

    /// `limit`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    pub(super) fn limit(&self) -> Result<usize, ApiError> {
        let Some(raw) = self.get(param::LIMIT) else {
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
        match self.get(param::INCLUDE) {
            None => Ok(false),
            Some(param::INCLUDE_BODY) => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "include: {:?} is not valid (expected \"body\")",
                truncate(other)
            ))),
        }
    }
}

/// At most 64 characters of a client-chosen string, for error messages.
fn truncate(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(64) {
        Some((at, _)) => Cow::Owned(format!("{}...", &s[..at])),
        None => Cow::Borrowed(s),
    }
}

// === events ===

/// How many, as the API counts.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// An event as the API shows it, without its history, headers or body.
pub(super) fn event_json(id: u64, record: EventRecord) -> wire::Event {
    let last = record.attempts.last();
    let (next_attempt_at, delivered_at, dead_reason) = match &record.state {
        EventState::Queued { due_ms } => (Some(rfc3339(*due_ms)), None, None),
        EventState::Delivered { at_ms } => (None, Some(rfc3339(*at_ms)), None),
        EventState::Dead { reason } => (None, None, Some(reason.clone())),
    };
    wire::Event {
        id,
        state: record.state.filter(),
        attempts: count(record.attempts.len()),
        last_status: last.and_then(|a| a.status),
        last_error: last.and_then(|a| a.outcome.failure()),
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
pub(super) fn with_details(mut event: wire::Event, record: &EventRecord) -> wire::Event {
    event.history = Some(
        record
            .attempts
            .iter()
            .map(|a| wire::Attempt {
                at: rfc3339(a.at_ms),
                status: a.status,
                outcome: a.outcome.to_string(),
            })
            .collect(),
    );
    event.headers = Some(
        record
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), shown_header_value(name, value)))
            .collect(),
    );
    event
}

/// Adds the body: as text if it is UTF-8, else base64.
pub(super) fn with_body(mut event: wire::Event, body: &[u8]) -> wire::Event {
    match std::str::from_utf8(body) {
        Ok(text) => event.body = Some(text.to_owned()),
        Err(_) => event.body_base64 = Some(B64.encode(body)),
    }
    event
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

async fn list(store: &Store, query: &EventQuery, include_body: bool) -> Result<Vec<wire::Event>, StoreError> {
    let mut out = Vec::new();
    for (seq, record) in store.list(query).await? {
        let event = event_json(seq, record);
        if include_body {
            // Deleted or purged since it was listed: shown without a body.
            match store.load(seq).await? {
                Some((_, body)) => out.push(with_body(event, &body)),
                None => out.push(event),
            }
        } else {
            out.push(event);
        }
    }
    Ok(out)
}

async fn show(store: &Store, seq: u64, include_body: bool) -> Result<Option<wire::Event>, StoreError> {
    let Some((record, body)) = store.load(seq).await? else {
        return Ok(None);
    };
    let event = with_details(event_json(seq, record.clone()), &record);
    Ok(Some(if include_body {
        with_body(event, &body)
    } else {
        event
    }))
}

// === stats ===

fn stats(
    api: &AdminApi,
    counts: &std::collections::HashMap<String, crate::store::Counts>,
) -> Vec<wire::SourceStats> {
    (api.sources)()
        .into_iter()
        .map(|name| {
            let snap = api.stats.source(&name).snapshot();
            let c = counts.get(&*name).copied().unwrap_or_default();
            wire::SourceStats {
                accepted: snap.accepted,
                duplicates: snap.duplicates,
                rejected: snap
                    .rejected
                    .into_iter()
                    .map(|(reason, n)| (reason.to_owned(), n))
                    .collect(),
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
        ok(&wire::Reload::Reloaded {
            restart_required: report.restart_required,
        })
    } else {
        json(
            StatusCode::BAD_REQUEST,
            &wire::Reload::Rejected {
                errors: report.errors,
            },
        )
    })
}
