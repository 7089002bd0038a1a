//! The admin web page: `/ui` on the admin listener (never on the webhook listener), a page of plain
//! HTML, CSS and JS embedded in the binary, which reads and changes the gateway only through the JSON
//! admin API in the browser (see `ui/app.js`). No build step: the files in `src/admin/ui/` are the
//! files served.
//!
//! The page itself holds no data, so it is served without the token (after the Host check, like every
//! admin request); the API calls it makes carry the token as a Bearer header, kept in the tab's
//! `sessionStorage`. `/ui/auth.json` says whether a token is needed, so that an open API (loopback
//! without a token) shows no sign-in form and a closed one is not probed with a request bound to fail.
//!
//! Every answer under `/ui` carries a strict Content-Security-Policy (only this origin's script, style
//! and fetches; no inline script or style, no framing), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`. Caching: `no-cache` with a strong `ETag` (a digest of the file), so
//! a browser revalidates each file with a 304 of a few bytes and picks up a new binary's page at once,
//! while the URLs stay fixed: hashed names would need a build step to rewrite `index.html`, for a
//! page that is loaded over loopback or a LAN where the round trip is cheap.
//!
//! Only `GET` and `HEAD`: anything else is 405 with `Allow`; an unknown file under `/ui/` is 404.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{header, request::Parts, HeaderMap, HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::allow::Allow;
use crate::layers::ResBody;

/// The page's Content-Security-Policy: nothing but this origin's files and API, no inline code.
pub(super) const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One embedded file.
struct Asset {
    /// The path it is served at.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/ui",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("ui/index.html"),
    },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("ui/app.js"),
    },
    Asset {
        path: "/ui/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("ui/app.css"),
    },
];

/// Each asset's `ETag`, in [`ASSETS`] order: the first 16 bytes of its SHA-256, quoted.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.bytes);
            HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16])))
                .expect("hex in quotes is a valid header value")
        })
        .collect()
});

/// Whether `path` is the page's: `/ui` and everything under `/ui/`.
pub(super) fn is_ui(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// The answer to a request for a path under `/ui`; `token_required` says whether the API needs the
/// bearer token (for `/ui/auth.json`).
pub(super) fn answer(parts: &Parts, token_required: bool) -> Response<ResBody> {
    let path = parts.uri.path();
    if !Allow::GET_HEAD.permits(&parts.method) {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut().insert(header::ALLOW, Allow::GET_HEAD.header());
        return resp;
    }
    if path == "/ui/" {
        // The page's links are relative to `/ui`: served at `/ui/` they would point under it.
        let mut resp = plain(StatusCode::PERMANENT_REDIRECT, "");
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/ui"));
        return resp;
    }
    if path == "/ui/auth.json" {
        let body: &'static [u8] = if token_required {
            br#"{"token_required":true}"#
        } else {
            br#"{"token_required":false}"#
        };
        let mut resp = secured(Response::new(ResBody::new(Bytes::from_static(body))));
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // The config can change on reload; never reuse an old answer.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return resp;
    }
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = if_none_match(&parts.headers, etag);
    let mut resp = if fresh {
        let mut resp = Response::new(ResBody::new(Bytes::new()));
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp
    } else {
        Response::new(ResBody::new(Bytes::from_static(asset.bytes)))
    };
    let h = resp.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secured(resp)
}

/// Whether `If-None-Match` names `etag` (or is `*`): the browser's copy is current.
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let want = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value.as_bytes().split(|b| *b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            // A weak comparison, as RFC 9110 asks for If-None-Match.
            let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
            tag == b"*" || tag == want
        })
    })
}

/// A plain-text answer with the page's security headers.
fn plain(status: StatusCode, body: &'static str) -> Response<ResBody> {
    let mut resp = Response::new(ResBody::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secured(resp)
}

/// Adds the security headers that every answer under `/ui` carries.
fn secured(mut resp: Response<ResBody>) -> Response<ResBody> {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // For browsers older than CSP's frame-ancestors.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use http::Method;
    use http_body_util::BodyExt as _;

    use super::*;

    fn get(method: Method, path: &str, headers: &[(&str, &str)]) -> Response<ResBody> {
        let mut req = http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(&req.body(()).expect("request").into_parts().0, true)
    }

    async fn body(resp: Response<ResBody>) -> Vec<u8> {
        resp.into_body()
            .collect()
            .await
            .expect("full body")
            .to_bytes()
            .to_vec()
    }

    fn header<'a>(resp: &'a Response<ResBody>, name: &str) -> &'a str {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii"))
            .unwrap_or_else(|| panic!("{name} is set"))
    }

    #[tokio::test]
    async fn each_file_is_served_with_its_type_cache_headers_and_the_policy() {
        for (path, content_type, starts) in [
            ("/ui", "text/html; charset=utf-8", "<!doctype html>"),
            ("/ui/app.js", "text/javascript; charset=utf-8", "//"),
            ("/ui/app.css", "text/css; charset=utf-8", "/*"),
        ] {
            let resp = get(Method::GET, path, &[]);
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&resp, "content-type"), content_type, "{path}");
            assert_eq!(header(&resp, "cache-control"), "no-cache", "{path}");
            assert_eq!(header(&resp, "content-security-policy"), CSP, "{path}");
            assert_eq!(header(&resp, "x-content-type-options"), "nosniff", "{path}");
            assert_eq!(header(&resp, "referrer-policy"), "no-referrer", "{path}");
            let etag = header(&resp, "etag").to_owned();
            assert_eq!(etag.len(), 34, "{path}: {etag}");
            let bytes = body(resp).await;
            assert!(
                bytes.starts_with(starts.as_bytes()),
                "{path}: {:?}",
                String::from_utf8_lossy(&bytes[..20])
            );

            // The browser's copy is current: 304 with no body, the same tag and the policy.
            for given in [
                etag.clone(),
                format!("W/{etag}"),
                format!("\"other\", {etag}"),
                "*".into(),
            ] {
                let resp = get(Method::GET, path, &[("if-none-match", &given)]);
                assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{path} {given}");
                assert_eq!(header(&resp, "etag"), etag);
                assert_eq!(header(&resp, "content-security-policy"), CSP);
                assert!(body(resp).await.is_empty());
            }
            let resp = get(Method::GET, path, &[("if-none-match", "\"stale\"")]);
            assert_eq!(resp.status(), StatusCode::OK, "{path}: a stale tag gets the file");
        }
    }

    #[tokio::test]
    async fn the_policy_forbids_inline_code_and_other_origins() {
        assert_eq!(
            CSP,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        );
        // The page obeys it: no inline script, style or handler in the HTML.
        let html = String::from_utf8(body(get(Method::GET, "/ui", &[])).await).expect("utf-8");
        for forbidden in [
            "<script>",
            "<style",
            "style=",
            "onclick",
            "onload",
            "javascript:",
            "http://",
            "https://",
        ] {
            assert!(!html.contains(forbidden), "index.html contains {forbidden:?}");
        }
        let js = String::from_utf8(body(get(Method::GET, "/ui/app.js", &[])).await).expect("utf-8");
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(forbidden), "app.js uses {forbidden:?}");
        }
    }

    #[tokio::test]
    async fn auth_json_says_whether_the_api_needs_the_token() {
        for (required, want) in [
            (true, r#"{"token_required":true}"#),
            (false, r#"{"token_required":false}"#),
        ] {
            let req = http::Request::get("/ui/auth.json").body(()).expect("request");
            let resp = answer(&req.into_parts().0, required);
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "content-type"), "application/json");
            assert_eq!(header(&resp, "cache-control"), "no-store");
            assert_eq!(body(resp).await, want.as_bytes());
        }
    }

    #[tokio::test]
    async fn other_methods_paths_and_the_trailing_slash() {
        let resp = get(Method::POST, "/ui", &[]);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&resp, "allow"), "GET, HEAD");
        let resp = get(Method::HEAD, "/ui/app.css", &[]);
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = get(Method::GET, "/ui/../stats", &[]);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(header(&resp, "content-security-policy"), CSP);
        let resp = get(Method::GET, "/ui/", &[]);
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&resp, "location"), "/ui");
        assert!(is_ui("/ui") && is_ui("/ui/app.js") && !is_ui("/uix") && !is_ui("/u"));
    }
}
