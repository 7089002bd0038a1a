//! Offline verification of a captured request, for `hookgate verify`, and signed test requests, for
//! `hookgate sign`.
//!
//! A capture is a raw HTTP/1.1 request: request line, headers, a blank line, then the body as exact
//! bytes. It is checked as the running gateway would check it: method, body size, signature and event
//! id, with the source's provider and an explicit clock. (The client address is not part of a capture,
//! so `allow_ips` is not checked.)

use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Method, Request};

use crate::{
    config::Config,
    layers::body_limit::BodyTooLarge,
    layers::{
        rescue::{classify, MethodNotAllowed},
        verify::verify_parts,
    },
    providers::{SignError, SignRequest},
};

/// The most headers a capture may have, as on the listener.
const MAX_HEADERS: usize = 100;

/// The result of checking a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The gateway would accept it.
    Valid {
        /// The event id it would be deduplicated by.
        event_id: String,
    },
    /// The gateway would reject it.
    Invalid {
        /// The reason code the gateway would answer.
        reason: &'static str,
    },
}

impl Verdict {
    /// The verdict as one JSON line: `{"verdict":"valid","event_id":"..."}` or
    /// `{"verdict":"invalid","reason":"..."}`.
    pub fn to_json(&self) -> String {
        // Structs, not `json!` maps, so that "verdict" always comes first.
        #[derive(serde::Serialize)]
        struct Valid<'a> {
            verdict: &'static str,
            event_id: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Invalid {
            verdict: &'static str,
            reason: &'static str,
        }
        let line = match self {
            Self::Valid { event_id } => serde_json::to_string(&Valid {
                verdict: "valid",
                event_id,
            }),
            Self::Invalid { reason } => serde_json::to_string(&Invalid {
                verdict: "invalid",
                reason,
            }),
        };
        line.expect("serializing strings cannot fail")
    }
}

/// Why a capture cannot be checked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// No source of that name in the config.
    #[error("no source named {0:?} in the config")]
    UnknownSource(String),
    /// The file is not a raw HTTP/1.1 request.
    #[error("not a raw HTTP/1.1 request: {0}")]
    Malformed(String),
    /// The source's provider cannot sign.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Builds a raw HTTP/1.1 request to source `source` carrying `body`, signed at `now` as the source's
/// provider signs (with its first secret), for `hookgate sign`: send it with any tool that writes raw
/// bytes (`nc`, `curl --data-binary` with its headers) to test a deployment end to end.
pub fn sign_request(
    config: &Config,
    source: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<u8>, CaptureError> {
    let Some(source) = config.sources.iter().find(|s| &*s.name == source) else {
        return Err(CaptureError::UnknownSource(source.to_owned()));
    };
    let uri: http::Uri = source
        .path
        .parse()
        .map_err(|_| CaptureError::Malformed("source path".into()))?;
    let event_id = format!(
        "hg_{}_{:08x}",
        crate::providers::unix_secs(now),
        rand::random::<u32>()
    );
    let req = SignRequest {
        method: &Method::POST,
        uri: &uri,
        body,
        event_id: &event_id,
    };
    let signed = source.provider.sign(&req, now)?;
    let target = source.provider.sign_target(&source.path)?;
    let mut out = Vec::with_capacity(body.len() + 512);
    out.extend_from_slice(format!("POST {target} HTTP/1.1\r\n").as_bytes());
    out.extend_from_slice(format!("host: {}\r\n", config.server.listen).as_bytes());
    if !signed.iter().any(|(name, _)| name == http::header::CONTENT_TYPE) {
        out.extend_from_slice(format!("content-type: {}\r\n", content_type(body)).as_bytes());
    }
    for (name, value) in &signed {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// A plausible content type for a body: JSON, a form, or bytes.
fn content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json"
    } else if !body.is_empty()
        && body.contains(&b'=')
        && body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"=&%+-._~*".contains(b))
    {
        "application/x-www-form-urlencoded"
    } else {
        "application/octet-stream"
    }
}

/// Checks `raw` against source `source` of `config` at time `now`.
pub fn verify_capture(
    config: &Config,
    source: &str,
    raw: &[u8],
    now: SystemTime,
) -> Result<Verdict, CaptureError> {
    let Some(source) = config.sources.iter().find(|s| &*s.name == source) else {
        return Err(CaptureError::UnknownSource(source.to_owned()));
    };
    let (req, body) = parse(raw)?;
    if req.method() != Method::POST {
        return Ok(Verdict::Invalid {
            reason: classify(&MethodNotAllowed::POST).reason,
        });
    }
    if body.len() > config.server.max_body_size {
        return Ok(Verdict::Invalid {
            reason: classify(&BodyTooLarge).reason,
        });
    }
    let (parts, ()) = req.into_parts();
    Ok(match verify_parts(&*source.provider, &parts, body, now) {
        Ok(verified) => Verdict::Valid {
            event_id: verified.event_id,
        },
        Err(e) => Verdict::Invalid { reason: e.reason() },
    })
}

/// Splits a capture into its head and its body. A `Content-Length` shorter than what follows the head
/// (an editor's trailing newline) wins; a longer one means the capture is truncated.
fn parse(raw: &[u8]) -> Result<(Request<()>, &[u8]), CaptureError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(CaptureError::Malformed(
                "the head does not end with a blank line".into(),
            ))
        }
        Err(e) => return Err(CaptureError::Malformed(e.to_string())),
    };
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| CaptureError::Malformed("invalid method".into()))?;
    let mut builder = Request::builder().method(method).uri(parsed.path.unwrap_or("/"));
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| CaptureError::Malformed(format!("invalid header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| CaptureError::Malformed(format!("invalid value of header {:?}", h.name)))?;
        builder = builder.header(name, value);
    }
    let req = builder
        .body(())
        .map_err(|e| CaptureError::Malformed(e.to_string()))?;
    let mut body = &raw[head_len..];
    if let Some(len) = req.headers().get(http::header::CONTENT_LENGTH) {
        let len: usize = len
            .to_str()
            .ok()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| CaptureError::Malformed("invalid Content-Length".into()))?;
        if len > body.len() {
            return Err(CaptureError::Malformed(format!(
                "Content-Length is {len} but only {} body bytes follow the head",
                body.len()
            )));
        }
        body = &body[..len];
    }
    Ok((req, body))
}
