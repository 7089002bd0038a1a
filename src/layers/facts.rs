//! The request's typed facts, in one module that every layer shares.
//!
//! Each fact is written by one party and read by those after it, as a request or response extension:
//!
//! | fact         | written by                        | read by                          |
//! |--------------|-----------------------------------|----------------------------------|
//! | [`PeerAddr`] | the server, for every connection  | `client_ip`, the admin API's log |
//! | [`ProxiedClient`] | the server, from a trusted proxy's PROXY header | `client_ip` (instead of `PeerAddr`) |
//! | [`LocalAddr`] | the server, for every connection | the admin listener's `Host` check |
//! | [`RequestId`] | the server, for every request    | `rescue`'s log line, `accept` (stored with the event) |
//! | [`ClientIp`] | `client_ip`, once, before routing | `ip_allow`, `rescue`'s log line  |
//! | [`ForwardedForInvalid`] | `client_ip`, instead of a `ClientIp` | `rescue` (answers 400) |
//! | [`Verified`] | `verify`                          | `accept`                         |
//! | [`Outcome`]  | `accept`, `verify` (handshakes)   | `rescue` (counters, log line)    |
//! | [`MethodNotAllowed`] | the method filter in `server/stack.rs`, `verify` (a `GET` that is no challenge) | `rescue` (answers 405 with `Allow`) |
//!
//! Keeping them here, and not in the layer that writes them, is what lets the layers depend on this
//! module and not on each other (`verify` and `accept` used to import each other's types).

use std::net::{IpAddr, SocketAddr};

use crate::providers::Handshake;

/// The TCP peer's address, set by the server on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr(pub SocketAddr);

/// The client's address from a trusted proxy's PROXY protocol header (`[server] proxy_protocol`), set
/// by the server on every request of that connection; absent when the header names no address (a v2
/// `LOCAL`). `client_ip` starts from it instead of the TCP peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxiedClient(pub SocketAddr);

/// The address the connection was accepted on (this end of the socket): on a wildcard listener, the
/// interface address the client connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalAddr(pub SocketAddr);

/// The request's id: the sender's `X-Request-Id` when it is sane, else one the gateway made (see
/// [`super::request_id`]). It is on the request's log line and is stored among the event's headers,
/// so the forwarded request carries it (after a restart too) and the app's logs join the gateway's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestId(pub(crate) http::HeaderValue);

impl RequestId {
    /// The header that carries it, on the way in and on the forwarded request.
    pub(crate) const HEADER: &'static str = "x-request-id";
}

/// The client's address as `client_ip` worked it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIp(pub IpAddr);

/// A trusted proxy sent an `X-Forwarded-For` entry that is not an IP address, so the request has no
/// client address: `client_ip` records this instead of a [`ClientIp`] (it sits outside `rescue` and
/// cannot answer), and `rescue` answers it as an error. Carries no value: the header is client input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("X-Forwarded-For from a trusted proxy has an entry that is not an IP address")]
pub(crate) struct ForwardedForInvalid;

/// What `verify` found, for the layers inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The event id (see [`crate::providers::EventMeta`]); the body digest for a request that failed
    /// verification in shadow mode.
    pub(crate) event_id: String,
    /// An endpoint check to answer instead of storing the request.
    pub(crate) handshake: Option<Handshake>,
    /// In shadow mode, why the request failed verification; `None` if it passed.
    pub(crate) failure: Option<&'static str>,
}

/// What the gateway did with a request it answered 200, as a response extension for `rescue` to count
/// and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored for delivery.
    Accepted {
        /// The event id.
        event_id: String,
        /// In shadow mode, why it failed verification.
        failure: Option<&'static str>,
    },
    /// Seen before within the dedup window; not stored again.
    Duplicate {
        /// The event id.
        event_id: String,
    },
    /// An endpoint check, answered by the gateway and not stored.
    Handshake {
        /// The event id.
        event_id: String,
    },
}

/// A source takes `POST`, and `GET` too when its provider answers a `GET` challenge
/// ([`crate::providers::Provider::answers_get`]); `allow` is the `Allow` header of the 405.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("method not allowed")]
pub(crate) struct MethodNotAllowed {
    pub(crate) allow: &'static str,
}

impl MethodNotAllowed {
    /// For a source that takes `POST` only.
    pub(crate) const POST: Self = Self { allow: "POST" };
    /// For a source that also answers a `GET` challenge.
    pub(crate) const GET_POST: Self = Self { allow: "GET, POST" };
}
