//! The admin API client: one request, one whole answer, within [`TIMEOUT`].
//!
//! Built on hyper-util's legacy client over plain HTTP: the admin listener is on loopback (or behind
//! a proxy the operator runs), and the gateway itself serves no TLS.

use std::{fmt, time::Duration};

use bytes::Bytes;
use hookgate::telemetry::ErrorChain;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

/// The longest a command waits for the whole answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An admin API at a base URL, with the bearer token if one is set.
pub(super) struct AdminClient {
    /// `scheme://authority` plus a path prefix without its trailing `/` (for an API behind a proxy).
    base: String,
    /// `Bearer <token>`, marked sensitive.
    authorization: Option<HeaderValue>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// A problem with the base URL or the token: a usage error, reported before anything is sent.
#[derive(Debug, thiserror::Error)]
pub(super) enum SetupError {
    /// The URL does not parse or is not `http://`.
    #[error("--admin {url:?} is not an http:// URL (expected e.g. \"http://127.0.0.1:9090\"): {why}")]
    BadUrl {
        /// The URL as given (it holds no secret: the token is never part of it).
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The token cannot be sent in a header. The value is not shown.
    #[error("{} holds characters that cannot be sent in an HTTP header", super::TOKEN_ENV)]
    BadToken,
}

/// Why no answer came back.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    /// Connection refused, timeout, or a connection closed before a whole answer.
    #[error("{why}")]
    Unreachable {
        /// What happened, with its causes.
        why: String,
    },
}

/// A whole answer.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
}

impl AdminClient {
    /// A client of the API at `url` (`http://host:port[/prefix]`; `host:port` alone means http).
    pub(super) fn new(url: &str, token: Option<String>) -> Result<Self, SetupError> {
        let bad = |why| SetupError::BadUrl {
            url: url.to_owned(),
            why,
        };
        let full = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = full.parse().map_err(|_| bad("it does not parse"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
        if uri.query().is_some() {
            return Err(bad("it has a query"));
        }
        let base = format!("http://{authority}{}", uri.path().trim_end_matches('/'));
        let authorization = match token {
            None => None,
            Some(token) => {
                let mut value =
                    HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| SetupError::BadToken)?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Self {
            base,
            authorization,
            client,
        })
    }

    /// The base URL, for messages.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method target` (a path and query, e.g. `/events?state=dead`) and reads the whole answer.
    pub(super) async fn send(&self, method: &Method, target: &str) -> Result<Answer, ClientError> {
        let url = format!("{}{target}", self.base);
        let uri: Uri = url.parse().map_err(|_| ClientError::Unreachable {
            why: format!("cannot build a request for {target:?}"),
        })?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("hookgate/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(auth) = &self.authorization {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let req = req.body(Empty::new()).map_err(|e| ClientError::Unreachable {
            why: format!("cannot build the request: {e}"),
        })?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| ErrorChain(&e).to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ErrorChain(&e).to_string())?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(why)) => Err(ClientError::Unreachable { why }),
            Err(_) => Err(ClientError::Unreachable {
                why: format!("no answer within {}", humantime::format_duration(TIMEOUT)),
            }),
        }
    }
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("token", &self.authorization.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for (given, base) in [
            ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
            ("http://127.0.0.1:9090/", "http://127.0.0.1:9090"),
            ("127.0.0.1:9090", "http://127.0.0.1:9090"),
            (
                "http://admin.internal/hookgate/",
                "http://admin.internal/hookgate",
            ),
        ] {
            let client = AdminClient::new(given, None).unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(client.base(), base, "{given}");
        }
        for bad in ["https://127.0.0.1:9090", "http://", "http://h:1/?x=1", "ftp://h"] {
            assert!(AdminClient::new(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_is_never_shown() {
        let client =
            AdminClient::new("http://127.0.0.1:1", Some("s3cr3t-token-value".into())).expect("valid");
        assert!(!format!("{client:?}").contains("s3cr3t"));
        let err = AdminClient::new("http://127.0.0.1:1", Some("s3cr3t\n".into())).expect_err("newline");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
