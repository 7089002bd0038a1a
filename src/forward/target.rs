//! Where and how one source's events are delivered: the forwarder's whole input.
//!
//! `config` builds one [`Target`] per source (its `[sources.forward]` merged with the `[forward]`
//! defaults, the upstream and the signer); the forwarder reads nothing else of the config, so it
//! depends on no config type.

use std::{sync::Arc, time::Duration};

use super::{Endpoint, RetryPolicy};
use crate::{providers::StandardSigner, tls::ClientTls};

/// One source's delivery settings.
#[derive(Debug, Clone)]
pub struct Target {
    /// The source's name: the store's queue to read, and `X-Hookgate-Source`.
    pub name: Arc<str>,
    /// Where events are delivered: the output and its settings (an `http://` or `https://` URL, or a
    /// broker).
    pub endpoint: Endpoint,
    /// How an `https://` upstream is verified and what certificate is presented to it; `None` for
    /// any other upstream.
    pub tls: Option<Arc<ClientTls>>,
    /// Time one attempt may take.
    pub timeout: Duration,
    /// How long and how often a failing delivery is retried.
    pub retry: RetryPolicy,
    /// Deliveries in flight at once; at least 1.
    pub concurrency: usize,
    /// Signs forwarded requests with the Standard Webhooks scheme, if configured.
    pub(crate) signer: Option<StandardSigner>,
}

impl Target {
    /// Whether forwarded requests are signed (`signing_secret` is set).
    pub fn is_signed(&self) -> bool {
        self.signer.is_some()
    }
}
