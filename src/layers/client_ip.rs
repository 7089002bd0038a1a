//! Works out the client's IP address and stores it as a [`ClientIp`] request extension.
//!
//! The TCP peer is the client, unless the peer is a trusted proxy: then `X-Forwarded-For` is read from
//! the right, skipping trusted proxies, and the first untrusted address is the client. Behind a
//! PROXY protocol header (`[server] proxy_protocol`), the header's source address, a
//! [`ProxiedClient`], stands for the TCP peer: the same rule then applies from it.
//!
//! An entry that the walk reaches and that is not a bare IP address (`garbage`, an empty entry, an
//! address with a port such as `203.0.113.5:1234`, a value that is not visible ASCII) makes the request
//! malformed: the layer records [`ForwardedForInvalid`] instead of a [`ClientIp`], and `rescue` answers
//! it with 400 `malformed_forwarded_for`. Taking the last trusted hop as the client instead would make
//! the proxy itself the client, and a proxy's address is often the one an allowlist lets in. Entries to
//! the left of the first untrusted address were written by the client itself and are not read.

use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request};
use ipnet::IpNet;
use tower::{Layer, Service};

use super::facts::{ClientIp, ForwardedForInvalid, PeerAddr, ProxiedClient};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Adds [`ClientIp`] to each request, or [`ForwardedForInvalid`] when the header cannot be believed.
#[derive(Debug, Clone)]
pub(crate) struct ClientIpLayer {
    trusted: Arc<[IpNet]>,
}

impl ClientIpLayer {
    pub(crate) fn new(trusted: Arc<[IpNet]>) -> Self {
        Self { trusted }
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            trusted: self.trusted.clone(),
        }
    }
}

/// See [`ClientIpLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ClientIpService<S> {
    inner: S,
    trusted: Arc<[IpNet]>,
}

impl<S, B> Service<Request<B>> for ClientIpService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // A test (or an embedding) may set the client address directly.
        if req.extensions().get::<ClientIp>().is_none() {
            let ext = req.extensions();
            let peer = (ext.get::<ProxiedClient>().map(|p| p.0)).or(ext.get::<PeerAddr>().map(|p| p.0));
            if let Some(peer) = peer {
                match client_ip(peer.ip(), req.headers(), &self.trusted) {
                    Ok(ip) => {
                        req.extensions_mut().insert(ClientIp(ip));
                    }
                    // Rescue, the next layer in, answers it: this layer cannot build a response.
                    Err(invalid) => {
                        req.extensions_mut().insert(invalid);
                    }
                }
            }
        }
        self.inner.call(req)
    }
}

/// Whether `ip` is in one of the `trusted` networks.
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack sockets) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client address for a request from `peer` with these headers, or [`ForwardedForInvalid`] when a
/// trusted hop's entry is not an IP address.
pub(crate) fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Result<IpAddr, ForwardedForInvalid> {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return Ok(peer);
    }
    let mut client = peer;
    // Later headers were appended by later hops: walk all values from the last one backwards.
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let text = value.to_str().map_err(|_| ForwardedForInvalid)?;
        for hop in text.rsplit(',').map(str::trim) {
            // `IpAddr`'s parser takes neither a port nor brackets nor spaces: exactly one bare address.
            let ip = hop
                .parse::<IpAddr>()
                .map(canonical)
                .map_err(|_| ForwardedForInvalid)?;
            client = ip;
            if !is_trusted(ip, trusted) {
                return Ok(client);
            }
        }
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, v.parse().expect("valid header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid ip")
    }

    fn ok(s: &str) -> Result<IpAddr, ForwardedForInvalid> {
        Ok(ip(s))
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted),
            ok("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &[]),
            ok("203.0.113.9")
        );
        // Not even a header that would be malformed from a trusted proxy is read.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["garbage"]), &trusted),
            ok("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let h = headers(&["1.1.1.1, 140.82.112.5, 10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ok("140.82.112.5"));
        let split = headers(&["1.1.1.1", "140.82.112.5", "10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &split, &trusted), ok("140.82.112.5"));
        // No header: the trusted peer is the client (a health check from the proxy itself).
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ok("10.0.0.1")
        );
    }

    #[test]
    fn an_entry_that_is_not_an_address_is_malformed_never_the_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        for value in [
            "garbage",
            "203.0.113.5:1234",
            "[2001:db8::1]:443",
            "",
            "203.0.113.5 10.0.0.7",
            // One bad hop in a list, between trusted hops and the client.
            "140.82.112.5, not-an-ip, 10.0.0.7",
            "140.82.112.5, 203.0.113.5:1234",
            "140.82.112.5, , 10.0.0.7",
        ] {
            assert_eq!(
                client_ip(ip("10.0.0.1"), &headers(&[value]), &trusted),
                Err(ForwardedForInvalid),
                "X-Forwarded-For: {value:?}"
            );
        }
        // A bad entry in a later header line is reached first.
        let split = headers(&["140.82.112.5", "garbage"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &split, &trusted),
            Err(ForwardedForInvalid)
        );
        let mut opaque = HeaderMap::new();
        opaque.insert(
            X_FORWARDED_FOR,
            http::HeaderValue::from_bytes(b"140.82.112.5\xff").expect("opaque bytes are a valid value"),
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &opaque, &trusted),
            Err(ForwardedForInvalid)
        );
    }

    #[test]
    fn entries_left_of_the_client_are_the_client_s_own_and_not_read() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let h = headers(&["garbage, 140.82.112.5, 10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ok("140.82.112.5"));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("cidr")];
        let h = headers(&["140.82.112.5"]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &trusted),
            ok("140.82.112.5")
        );
    }

    #[tokio::test]
    async fn the_layer_records_the_fault_instead_of_a_client() {
        use tower::{service_fn, ServiceExt};
        let trusted: Arc<[IpNet]> = vec!["127.0.0.0/8".parse().expect("cidr")].into();
        let svc = ClientIpLayer::new(trusted).layer(service_fn(|req: Request<()>| async move {
            let ext = req.extensions();
            Ok::<_, std::convert::Infallible>((
                ext.get::<ClientIp>().copied(),
                ext.get::<ForwardedForInvalid>().copied(),
            ))
        }));
        let mut req = Request::new(());
        req.headers_mut()
            .insert(X_FORWARDED_FOR, "garbage".parse().expect("value"));
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:5000".parse().expect("addr")));
        let seen = svc.clone().oneshot(req).await.expect("infallible");
        assert_eq!(seen, (None, Some(ForwardedForInvalid)));

        let mut req = Request::new(());
        req.headers_mut()
            .insert(X_FORWARDED_FOR, "140.82.112.5".parse().expect("value"));
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:5000".parse().expect("addr")));
        let seen = svc.clone().oneshot(req).await.expect("infallible");
        assert_eq!(seen, (Some(ClientIp(ip("140.82.112.5"))), None));

        // A PROXY header's source stands for the TCP peer: untrusted, so the header is not read.
        let mut req = Request::new(());
        req.headers_mut()
            .insert(X_FORWARDED_FOR, "140.82.112.5".parse().expect("value"));
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:5000".parse().expect("addr")));
        req.extensions_mut()
            .insert(ProxiedClient("203.0.113.9:4000".parse().expect("addr")));
        let seen = svc.oneshot(req).await.expect("infallible");
        assert_eq!(seen, (Some(ClientIp(ip("203.0.113.9"))), None));
    }
}
