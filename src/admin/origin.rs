//! The admin listener answers only requests addressed to it, and changes only for same-origin callers.
//!
//! Without these checks, a web page open in a browser on the same machine could `POST
//! http://127.0.0.1:9090/replay` (a "simple" cross-site request needs no CORS preflight; the page
//! cannot read the answer, but the replay runs), and a page on a name that the attacker makes resolve
//! to 127.0.0.1 (DNS rebinding) could read the API as if it were same-origin. So, before any route
//! (probes and metrics included), and before the bearer token:
//!
//! - **Host**: the request's authority (the `Host` header, and the URI's authority where HTTP/2 or an
//!   absolute-form request gives one; every one present) must be the address the connection was
//!   accepted on (`127.0.0.1:9090`, `[::1]:9090`; the interface address on a wildcard listener),
//!   `localhost` with the listener's port, or a name (or address) in `[admin] allowed_hosts`, with any
//!   port. A rebinding page sends its own name, which is none of these. A missing or repeated `Host`
//!   is refused too.
//! - **Origin**: a request with a method other than `GET`, `HEAD` and `OPTIONS` that carries `Origin`
//!   is refused unless the origin is `http` or `https` and its authority passes the Host check: a page
//!   served by this listener (or by a proxy for it under an allowed name). `Origin: null` (sandboxed
//!   frames, `file:` pages) is refused. Clients that send no `Origin` (curl, the CLI, scrapers) are not
//!   browsers making cross-site requests and are not affected.
//!
//! Refusals are 403 `{"error":"forbidden","message":...}` naming the header, and a warning in the log
//! with the peer, method and path (never the token).

use std::net::{IpAddr, SocketAddr};

use http::{header, request::Parts, uri::Authority, HeaderValue, Method};

/// Which header a request was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The request is not addressed to this listener.
    Host,
    /// A state-changing request from a page of another origin.
    Origin,
}

impl Refused {
    /// The answer's message: which header, and how to allow a legitimate name.
    pub(super) fn message(self) -> &'static str {
        match self {
            Refused::Host => {
                "the Host header is not this listener's address, localhost with its port, or a name in \
                 admin.allowed_hosts"
            }
            Refused::Origin => {
                "the Origin header names another site: the admin API does not take changes from other \
                 origins"
            }
        }
    }
}

/// The names (and addresses) configured in `[admin] allowed_hosts`.
#[derive(Debug, Clone, Default)]
pub(super) struct AllowedHosts {
    /// Lowercase DNS names.
    names: Vec<String>,
    /// Addresses, compared as addresses (`::ffff:a.b.c.d` as `a.b.c.d`).
    ips: Vec<IpAddr>,
}

impl AllowedHosts {
    /// From `[admin] allowed_hosts`, which the config loader has checked and lowercased.
    pub(super) fn new(entries: &[String]) -> Self {
        let mut this = Self::default();
        for entry in entries {
            match entry.parse::<IpAddr>() {
                Ok(ip) => this.ips.push(canonical(ip)),
                Err(_) => this.names.push(entry.to_ascii_lowercase()),
            }
        }
        this
    }

    /// Checks `parts`, which arrived on a connection accepted on `local` (`None`: unknown, refused).
    pub(super) fn check(&self, parts: &Parts, local: Option<SocketAddr>) -> Result<(), Refused> {
        let local = local.ok_or(Refused::Host)?;
        let mut hosts = parts.headers.get_all(header::HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err(Refused::Host);
        }
        let from_header = match host {
            Some(value) => Some(authority(value).ok_or(Refused::Host)?),
            None => None,
        };
        let from_uri = parts.uri.authority().cloned();
        if from_header.is_none() && from_uri.is_none() {
            return Err(Refused::Host);
        }
        for authority in from_header.iter().chain(from_uri.iter()) {
            if !self.is_ours(authority, local) {
                return Err(Refused::Host);
            }
        }
        if is_safe(&parts.method) {
            return Ok(());
        }
        let mut origins = parts.headers.get_all(header::ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return Ok(());
        };
        if origins.next().is_some() {
            return Err(Refused::Origin);
        }
        match origin_authority(origin) {
            Some(authority) if self.is_ours(&authority, local) => Ok(()),
            _ => Err(Refused::Origin),
        }
    }

    /// Whether `authority` names this listener: its address, `localhost` with its port, or an
    /// allowed name with any port.
    fn is_ours(&self, authority: &Authority, local: SocketAddr) -> bool {
        // `user@host` is not a Host a browser sends, and not ours.
        if authority.as_str().contains('@') {
            return false;
        }
        // An absent port is the default one: 80 for the plain HTTP this listener speaks.
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            let ip = canonical(ip);
            return (ip == canonical(local.ip()) && port == local.port()) || self.ips.contains(&ip);
        }
        if host.eq_ignore_ascii_case("localhost") {
            return port == local.port();
        }
        self.names.iter().any(|name| name.eq_ignore_ascii_case(host))
    }
}

/// Methods that change nothing; any other method is checked against `Origin`.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A `Host` value as an authority, if it is one (and not empty).
fn authority(value: &HeaderValue) -> Option<Authority> {
    let text = value.to_str().ok()?;
    if text.is_empty() {
        return None;
    }
    text.parse().ok()
}

/// The authority of an `Origin` value `scheme://host[:port]`, for `http` and `https` only; `None`
/// for `null`, another scheme, or anything with a path.
fn origin_authority(value: &HeaderValue) -> Option<Authority> {
    let text = value.to_str().ok()?;
    let (scheme, rest) = text.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    if rest.is_empty() || rest.contains(['/', '?', '#']) {
        return None;
    }
    rest.parse().ok()
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of an IPv4 client) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "127.0.0.1:9090";

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).expect("valid request").into_parts().0
    }

    fn check(allowed: &[&str], local: &str, p: &Parts) -> Result<(), Refused> {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        AllowedHosts::new(&allowed).check(p, Some(local.parse().expect("addr")))
    }

    #[test]
    fn the_listener_s_own_address_and_localhost_are_its_hosts() {
        for host in ["127.0.0.1:9090", "localhost:9090", "LOCALHOST:9090"] {
            let p = parts("GET", "/stats", &[("host", host)]);
            assert_eq!(check(&[], LOCAL, &p), Ok(()), "{host}");
        }
        for host in [
            "127.0.0.1:9091",
            "127.0.0.2:9090",
            "127.0.0.1",
            "localhost",
            "rebind.example:9090",
            "localhost.rebind.example:9090",
            "user@127.0.0.1:9090",
            "",
        ] {
            let p = parts("GET", "/stats", &[("host", host)]);
            assert_eq!(check(&[], LOCAL, &p), Err(Refused::Host), "{host:?}");
        }
        assert_eq!(
            check(&[], LOCAL, &parts("GET", "/stats", &[])),
            Err(Refused::Host),
            "no Host at all"
        );
        let twice = parts(
            "GET",
            "/stats",
            &[("host", "127.0.0.1:9090"), ("host", "127.0.0.1:9090")],
        );
        assert_eq!(check(&[], LOCAL, &twice), Err(Refused::Host));
    }

    #[test]
    fn ipv6_dual_stack_and_wildcard_listeners_compare_the_accepting_address() {
        let p = parts("GET", "/stats", &[("host", "[::1]:9090")]);
        assert_eq!(check(&[], "[::1]:9090", &p), Ok(()));
        assert_eq!(check(&[], LOCAL, &p), Err(Refused::Host));
        // A dual-stack socket sees an IPv4 connection as ::ffff:127.0.0.1.
        let p = parts("GET", "/stats", &[("host", "127.0.0.1:9090")]);
        assert_eq!(check(&[], "[::ffff:127.0.0.1]:9090", &p), Ok(()));
        // On 0.0.0.0, the connection's local address is the interface the client used.
        let p = parts("GET", "/stats", &[("host", "10.1.2.3:9090")]);
        assert_eq!(check(&[], "10.1.2.3:9090", &p), Ok(()));
        let p = parts("GET", "/stats", &[("host", "80.1.2.3")]);
        assert_eq!(check(&[], "80.1.2.3:80", &p), Ok(()), "port 80 by default");
    }

    #[test]
    fn an_authority_in_the_uri_is_checked_too() {
        // HTTP/2's :authority, or an absolute-form HTTP/1.1 request line.
        let p = parts("GET", "http://rebind.example:9090/stats", &[]);
        assert_eq!(check(&[], LOCAL, &p), Err(Refused::Host));
        let p = parts("GET", "http://127.0.0.1:9090/stats", &[]);
        assert_eq!(check(&[], LOCAL, &p), Ok(()));
        let p = parts(
            "GET",
            "http://rebind.example:9090/stats",
            &[("host", "127.0.0.1:9090")],
        );
        assert_eq!(check(&[], LOCAL, &p), Err(Refused::Host), "both must be ours");
    }

    #[test]
    fn allowed_hosts_are_names_with_any_port_or_addresses() {
        let allowed = ["hookgate.internal", "192.0.2.10", "2001:db8::1"];
        for host in [
            "hookgate.internal",
            "HookGate.Internal:8443",
            "192.0.2.10:1",
            "[2001:db8::1]:9090",
        ] {
            let p = parts("GET", "/stats", &[("host", host)]);
            assert_eq!(check(&allowed, LOCAL, &p), Ok(()), "{host}");
        }
        for host in [
            "sub.hookgate.internal",
            "hookgate.internal.rebind.example",
            "192.0.2.11",
        ] {
            let p = parts("GET", "/stats", &[("host", host)]);
            assert_eq!(check(&allowed, LOCAL, &p), Err(Refused::Host), "{host}");
        }
    }

    #[test]
    fn unsafe_methods_from_another_origin_are_refused() {
        let host = ("host", "127.0.0.1:9090");
        for method in ["POST", "PUT", "PATCH", "DELETE", "PURGE"] {
            for origin in [
                "http://attacker.example",
                "https://attacker.example:9090",
                "http://127.0.0.1:9091",
                "null",
                "file://",
                "ftp://127.0.0.1:9090",
                "http://127.0.0.1:9090/path",
                "http://",
            ] {
                let p = parts(method, "/replay", &[host, ("origin", origin)]);
                assert_eq!(check(&[], LOCAL, &p), Err(Refused::Origin), "{method} {origin}");
            }
            for origin in [
                "http://127.0.0.1:9090",
                "http://localhost:9090",
                "HTTP://LOCALHOST:9090",
            ] {
                let p = parts(method, "/replay", &[host, ("origin", origin)]);
                assert_eq!(check(&[], LOCAL, &p), Ok(()), "{method} {origin}");
            }
            let p = parts(method, "/replay", &[host]);
            assert_eq!(check(&[], LOCAL, &p), Ok(()), "{method} without Origin");
        }
        let p = parts(
            "POST",
            "/replay",
            &[
                host,
                ("origin", "http://127.0.0.1:9090"),
                ("origin", "http://attacker.example"),
            ],
        );
        assert_eq!(check(&[], LOCAL, &p), Err(Refused::Origin), "two origins");
        for method in ["GET", "HEAD", "OPTIONS"] {
            let p = parts(method, "/stats", &[host, ("origin", "http://attacker.example")]);
            assert_eq!(check(&[], LOCAL, &p), Ok(()), "{method} reads");
        }
        // A proxy serving the API under an allowed name over TLS.
        let p = parts(
            "POST",
            "/replay",
            &[
                ("host", "hookgate.internal"),
                ("origin", "https://hookgate.internal"),
            ],
        );
        assert_eq!(check(&["hookgate.internal"], LOCAL, &p), Ok(()));
    }

    #[test]
    fn an_unknown_local_address_is_refused() {
        let p = parts("GET", "/stats", &[("host", "127.0.0.1:9090")]);
        assert_eq!(AllowedHosts::default().check(&p, None), Err(Refused::Host));
    }
}
