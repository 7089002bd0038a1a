//! Delivery outputs: where an attempt goes, behind one interface.
//!
//! The dispatcher (`forward/mod.rs`) decides when to attempt and what follows an attempt; an
//! [`Output`] only delivers one attempt and says how it went, as an [`AttemptOutcome`] that
//! [`super::decide`] turns into delivered, retry or dead letter. Config picks the output from the
//! upstream's scheme and describes it as an [`Endpoint`]; [`Outputs`] turns endpoints into outputs and
//! owns what they share (the HTTP connection pool).
//!
//! Adding an output takes one file here, one [`Endpoint`] and one [`Output`] variant, and their match
//! arms in this file.

use std::{fmt, time::SystemTime};

use ::http::Uri;
use bytes::Bytes;

use super::{retry::AttemptOutcome, Target};
use crate::store::EventRecord;

pub(crate) mod http;

pub use self::http::ForwardError;
use self::http::HttpClient;

/// Where a source's events go, as config describes it.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// An app over HTTP (`http://` upstream).
    Http(Uri),
}

impl Endpoint {
    /// The output kind: the `output` label of delivery metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
        }
    }
}

/// Shown in the start-up summary; never the credentials of a URL.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(uri) => write!(f, "{uri}"),
        }
    }
}

/// One attempt of a stored event, as an output receives it.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    /// The event as stored.
    pub(crate) record: &'a EventRecord,
    /// Its exact body bytes.
    pub(crate) body: Bytes,
    /// The attempt number, 1-based (a replay continues the count).
    pub(crate) number: u32,
    /// When the attempt starts (signatures are timestamped with it).
    pub(crate) now: SystemTime,
}

/// A delivery output, ready to deliver one source's events.
#[derive(Debug, Clone)]
pub(crate) enum Output {
    /// An app over HTTP, through the shared connection pool.
    Http {
        /// The pool, shared by every HTTP source.
        client: HttpClient,
        /// The app's URL.
        upstream: Uri,
    },
}

impl Output {
    /// Delivers one attempt for `target`, bounded by its timeout. An error means the stored event
    /// cannot be turned into a message at all (it is dead-lettered); a failure to deliver is an
    /// [`AttemptOutcome`].
    pub(crate) async fn deliver(
        &self,
        target: &Target,
        attempt: Attempt<'_>,
    ) -> Result<AttemptOutcome, ForwardError> {
        match self {
            Self::Http { client, upstream } => {
                let req = http::build_request(
                    target,
                    upstream,
                    attempt.record,
                    attempt.body,
                    attempt.number,
                    attempt.now,
                )?;
                Ok(http::send(client, req, target.timeout).await)
            }
        }
    }
}

/// Builds the outputs of the sources, sharing what they can share.
#[derive(Debug, Clone)]
pub(crate) struct Outputs {
    /// One pool for every HTTP source.
    http: HttpClient,
}

impl Outputs {
    pub(crate) fn new() -> Self {
        Self {
            http: http::new_client(),
        }
    }

    /// The output for `target`'s endpoint.
    pub(crate) fn output(&mut self, target: &Target) -> Output {
        match &target.endpoint {
            Endpoint::Http(upstream) => Output::Http {
                client: self.http.clone(),
                upstream: upstream.clone(),
            },
        }
    }
}
