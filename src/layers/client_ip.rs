//! Works out the client's IP address and stores it as a [`ClientIp`] request extension.
//!
//! The TCP peer is the client, unless the peer is a trusted proxy: then `X-Forwarded-For` is read from
//! the right, skipping trusted proxies, and the first untrusted address is the client. An entry that does
//! not parse stops the walk, and the last trusted hop is taken as the client, so a forged header cannot
//! make a request look as if it came from an allowed address. This layer rejects nothing.

use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request};
use ipnet::IpNet;
use tower::{Layer, Service};

use super::facts::{ClientIp, PeerAddr};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Adds [`ClientIp`] to each request.
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
            if let Some(PeerAddr(peer)) = req.extensions().get::<PeerAddr>().copied() {
                let ip = client_ip(peer.ip(), req.headers(), &self.trusted);
                req.extensions_mut().insert(ClientIp(ip));
            }
        }
        self.inner.call(req)
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
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

/// The client address for a request from `peer` with these headers.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    // Later headers were appended by later hops: walk all values from the last one backwards.
    let hops = headers.get_all(X_FORWARDED_FOR).iter().rev().flat_map(|v| {
        let text = v.to_str().unwrap_or("");
        text.rsplit(',').map(str::trim).collect::<Vec<_>>()
    });
    for hop in hops {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
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

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let h = headers(&["1.1.1.1, 140.82.112.5, 10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("140.82.112.5"));
        let split = headers(&["1.1.1.1", "140.82.112.5", "10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &split, &trusted), ip("140.82.112.5"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let h = headers(&["140.82.112.5, not-an-ip, 10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.7"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("cidr")];
        let h = headers(&["140.82.112.5"]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("140.82.112.5")
        );
    }
}
