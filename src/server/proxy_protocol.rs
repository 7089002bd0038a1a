//! PROXY protocol v1 (text) and v2 (binary) on the webhook listener (`[server] proxy_protocol`).
//!
//! An L4 load balancer (AWS NLB, HAProxy in TCP mode) opens its own TCP connection to the gateway, so
//! the TCP peer is the balancer; the PROXY header it writes first says who the client is. The header
//! is believed only from `[server] trusted_proxies`:
//!
//! - A connection from a trusted peer must start with a valid header. Its source address becomes the
//!   request's [`ProxiedClient`](crate::layers::facts::ProxiedClient), where `client_ip` starts (an
//!   allowlist, the logs and the metrics see the real client). A v2 `LOCAL` command (the balancer's
//!   own health check), a v1 `UNKNOWN` and a v2 header without IP addresses mean the peer itself.
//!   A trusted peer's connection without a header, or with one that does not parse, is refused.
//! - A connection from any other peer that starts with a PROXY signature is refused: such a header
//!   would otherwise let any client claim any address. Any other first bytes are served as usual.
//!
//! Refused connections are closed without an answer (there is no protocol to answer in yet), counted in
//! [`PROXY_PROTOCOL_REFUSED`](crate::telemetry::PROXY_PROTOCOL_REFUSED) by reason and logged with the
//! peer and the reason, never the bytes. The header precedes everything else, the TLS handshake too;
//! it is read within `header_read_timeout` (the caller's deadline) and is at most
//! [`MAX_HEADER_BYTES`]. Parsing is the `ppp` crate's. Bytes read past the header (the start of the
//! request or of the TLS handshake) are replayed by [`Rewind`].

use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
};

use ipnet::IpNet;
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::layers::client_ip::is_trusted;

/// The largest PROXY header read, TLVs included. A v1 header is at most 107 bytes; a v2 header from
/// a cloud balancer (addresses plus a few TLVs such as an endpoint id) is well under 1 KiB.
pub(crate) const MAX_HEADER_BYTES: usize = 4096;

/// The longest v1 header, `\r\n` included (the protocol's own bound).
const V1_MAX_BYTES: usize = 107;

/// Why a connection was refused, the `reason` label of the refusals counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A peer outside `trusted_proxies` sent a PROXY header.
    UntrustedPeer,
    /// A trusted peer's connection did not start with a PROXY header.
    MissingHeader,
    /// A trusted peer sent a PROXY header that does not parse (or ended the connection within it).
    InvalidHeader,
    /// The header is longer than [`MAX_HEADER_BYTES`].
    HeaderTooLarge,
    /// No complete header within `header_read_timeout`.
    Timeout,
}

impl Refused {
    /// Every reason (the tests check them against the series registered at 0).
    #[cfg(test)]
    pub(crate) const ALL: [Self; 5] = [
        Self::UntrustedPeer,
        Self::MissingHeader,
        Self::InvalidHeader,
        Self::HeaderTooLarge,
        Self::Timeout,
    ];

    /// The `reason` label.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::UntrustedPeer => "untrusted_peer",
            Self::MissingHeader => "missing_header",
            Self::InvalidHeader => "invalid_header",
            Self::HeaderTooLarge => "header_too_large",
            Self::Timeout => "timeout",
        }
    }
}

/// What reading the start of a connection came to.
#[derive(Debug)]
pub(crate) enum Start<S> {
    /// Serve the connection: `stream` replays the bytes read past the header; `client` is the
    /// header's source address, `None` when the peer is the client.
    Serve {
        stream: Rewind<S>,
        client: Option<SocketAddr>,
    },
    /// Close it, counted and logged.
    Refuse(Refused),
    /// The peer closed it, or the socket failed, before a decision: nothing to serve or count.
    Gone,
}

/// Reads the start of a connection from `peer`: a PROXY header if `peer` is in `trusted`, else only
/// enough bytes to tell that it does not start with one. The caller bounds the time it takes.
pub(crate) async fn read_start<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Start<S> {
    let trusted = is_trusted(peer, trusted);
    let mut buf = Vec::with_capacity(if trusted { MAX_HEADER_BYTES } else { 64 });
    loop {
        let decision = if trusted { header(&buf) } else { signature(&buf) };
        match decision {
            Decision::Serve { consumed, client } => {
                buf.drain(..consumed);
                return Start::Serve {
                    stream: Rewind::new(buf, stream),
                    client,
                };
            }
            Decision::Refuse(refused) => return Start::Refuse(refused),
            Decision::Pending if buf.len() >= MAX_HEADER_BYTES => {
                return Start::Refuse(Refused::HeaderTooLarge)
            }
            Decision::Pending => {}
        }
        let spare = MAX_HEADER_BYTES - buf.len();
        match (&mut stream).take(spare as u64).read_buf(&mut buf).await {
            Ok(0) if trusted && !buf.is_empty() => return Start::Refuse(Refused::InvalidHeader),
            // An untrusted peer's few bytes, then the end: hyper reads the same.
            Ok(0) if !buf.is_empty() => {
                return Start::Serve {
                    stream: Rewind::new(buf, stream),
                    client: None,
                }
            }
            // Closed before a byte (a TCP health check), or a socket error.
            Ok(0) | Err(_) => return Start::Gone,
            Ok(_) => {}
        }
    }
}

/// What the bytes read so far decide.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// More bytes may decide.
    Pending,
    /// Serve the connection after the first `consumed` bytes (the header); `client` as in
    /// [`Start::Serve`].
    Serve {
        consumed: usize,
        client: Option<SocketAddr>,
    },
    /// Refuse it.
    Refuse(Refused),
}

/// For a trusted peer: the header in `buf`, which must be there.
fn header(buf: &[u8]) -> Decision {
    // A v1 header is one line: parsed once its end is there (`ppp` takes a line cut after a space,
    // "... 5555 ", for a bad port), or once it is longer than a v1 header may be.
    let v1 = v1::PROTOCOL_PREFIX.as_bytes();
    if buf.starts_with(v1) && !buf.contains(&b'\n') && buf.len() <= V1_MAX_BYTES {
        return Decision::Pending;
    }
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        // A v2 header declares its length up front: one past the bound is refused at once.
        // `Partial(payload read, payload length)`, after the fixed 16 bytes.
        if let HeaderResult::V2(Err(v2::ParseError::Partial(read, length))) = parsed {
            if buf.len() - read + length > MAX_HEADER_BYTES {
                return Decision::Refuse(Refused::HeaderTooLarge);
            }
        }
        return Decision::Pending;
    }
    match parsed {
        HeaderResult::V1(Ok(h)) => Decision::Serve {
            consumed: h.header.len(),
            client: match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(h)) => Decision::Serve {
            consumed: h.len(),
            client: match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                // LOCAL (the balancer's own connection), AF_UNSPEC and AF_UNIX: the peer is the client.
                _ => None,
            },
        },
        HeaderResult::V1(Err(v1::BinaryParseError::Parse(v1::ParseError::HeaderTooLong))) => {
            Decision::Refuse(Refused::HeaderTooLarge)
        }
        _ if signature(buf) == Decision::Refuse(Refused::UntrustedPeer) => {
            Decision::Refuse(Refused::InvalidHeader)
        }
        _ => Decision::Refuse(Refused::MissingHeader),
    }
}

/// For an untrusted peer: pending while the bytes so far are a prefix of a PROXY signature, refused
/// once they start with one, served as they are once they cannot.
fn signature(buf: &[u8]) -> Decision {
    let signatures = [v1::PROTOCOL_PREFIX.as_bytes(), v2::PROTOCOL_PREFIX];
    if signatures.iter().any(|sig| buf.starts_with(sig)) {
        Decision::Refuse(Refused::UntrustedPeer)
    } else if signatures.iter().any(|sig| sig.starts_with(buf)) {
        Decision::Pending
    } else {
        Decision::Serve {
            consumed: 0,
            client: None,
        }
    }
}

/// A stream that yields `prefix` (bytes already read from `inner`) before reading `inner` again.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// `prefix` first, then `inner`.
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self { prefix, at: 0, inner }
    }

    /// No prefix: `inner` as it is.
    pub(crate) fn plain(inner: S) -> Self {
        Self::new(Vec::new(), inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().expect("cidr")]
    }

    fn v2_header(command: u8, source: [u8; 4], port: u16) -> Vec<u8> {
        let mut h = v2::PROTOCOL_PREFIX.to_vec();
        h.extend([0x20 | command, 0x11, 0, 12]);
        h.extend(source);
        h.extend([10, 0, 0, 1]);
        h.extend(port.to_be_bytes());
        h.extend(443u16.to_be_bytes());
        h
    }

    /// Runs `read_start` on `input` (then end of stream) from `peer`; returns the decision and what
    /// the stream yields after it.
    async fn start(input: &[u8], peer: &str) -> (Result<Option<SocketAddr>, Option<Refused>>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(MAX_HEADER_BYTES * 2);
        client.write_all(input).await.expect("write");
        drop(client);
        match read_start(server, peer.parse().expect("ip"), &trusted()).await {
            Start::Serve { mut stream, client } => {
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await.expect("read");
                (Ok(client), rest)
            }
            Start::Refuse(r) => (Err(Some(r)), Vec::new()),
            Start::Gone => (Err(None), Vec::new()),
        }
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("addr"))
    }

    #[tokio::test]
    async fn a_trusted_peer_s_v1_and_v2_headers_give_the_client_and_the_rest_is_replayed() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\nPOST / HTTP/1.1\r\n";
        assert_eq!(
            start(v1, "10.1.2.3").await,
            (Ok(addr("203.0.113.7:5555")), b"POST / HTTP/1.1\r\n".to_vec())
        );
        let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\nGET";
        assert_eq!(
            start(v1_6, "10.1.2.3").await,
            (Ok(addr("[2001:db8::7]:5555")), b"GET".to_vec())
        );
        let mut v2 = v2_header(1, [198, 51, 100, 9], 4000);
        v2.extend(b"\x16\x03\x01");
        assert_eq!(
            start(&v2, "10.1.2.3").await,
            (Ok(addr("198.51.100.9:4000")), b"\x16\x03\x01".to_vec())
        );
    }

    #[tokio::test]
    async fn local_and_unknown_mean_the_peer_itself() {
        let mut local = v2_header(0, [198, 51, 100, 9], 4000);
        local.extend(b"GET");
        assert_eq!(start(&local, "10.1.2.3").await, (Ok(None), b"GET".to_vec()));
        assert_eq!(
            start(b"PROXY UNKNOWN\r\nGET", "10.1.2.3").await,
            (Ok(None), b"GET".to_vec())
        );
    }

    #[tokio::test]
    async fn a_trusted_peer_without_a_valid_header_is_refused() {
        for (input, why) in [
            (&b"POST / HTTP/1.1\r\n\r\n"[..], Refused::MissingHeader),
            (b"PRI * HTTP/2.0\r\n", Refused::MissingHeader),
            (b"\x16\x03\x01\x02\x00", Refused::MissingHeader),
            (b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n", Refused::InvalidHeader),
            (b"PROXY TCP4 203.0.113.7", Refused::InvalidHeader),
        ] {
            assert_eq!(start(input, "10.1.2.3").await.0, Err(Some(why)), "{input:?}");
        }
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(200, b'1');
        assert_eq!(
            start(&long, "10.1.2.3").await.0,
            Err(Some(Refused::HeaderTooLarge))
        );
        // A v2 header that declares more than the bound is refused before it is read.
        let mut big = v2::PROTOCOL_PREFIX.to_vec();
        big.extend([0x21, 0x11, 0xff, 0xff]);
        assert_eq!(
            start(&big, "10.1.2.3").await.0,
            Err(Some(Refused::HeaderTooLarge))
        );
        assert_eq!(start(b"", "10.1.2.3").await.0, Err(None));
    }

    #[tokio::test]
    async fn an_untrusted_peer_s_header_is_refused_and_anything_else_served_as_sent() {
        let v2 = v2_header(1, [198, 51, 100, 9], 4000);
        for input in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\n"[..],
            &v2,
            b"PROXY",
        ] {
            assert_eq!(
                start(input, "203.0.113.50").await.0,
                Err(Some(Refused::UntrustedPeer)),
                "{input:?}"
            );
        }
        for input in [
            &b"POST / HTTP/1.1\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n",
            b"\x16\x03\x01",
            b"P",
        ] {
            assert_eq!(
                start(input, "203.0.113.50").await,
                (Ok(None), input.to_vec()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn the_reasons_counted_are_those_registered() {
        let reasons: Vec<&str> = Refused::ALL.iter().map(|r| r.reason()).collect();
        assert_eq!(reasons, crate::telemetry::PROXY_PROTOCOL_REASONS);
    }

    #[tokio::test]
    async fn a_header_sent_a_byte_at_a_time_is_read_whole() {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for b in b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\nGET" {
                client.write_all(&[*b]).await.expect("write");
                tokio::task::yield_now().await;
            }
        });
        let Start::Serve { mut stream, client } =
            read_start(server, "10.1.2.3".parse().expect("ip"), &trusted()).await
        else {
            panic!("refused");
        };
        assert_eq!(client, addr("203.0.113.7:5555"));
        writer.await.expect("writer");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"GET");
    }
}
