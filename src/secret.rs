//! Secrets (signing secrets, the admin token): a newtype that never prints its value.
//!
//! This module sits at the bottom of the crate, below `config`: providers, the forwarder's signer and the
//! admin API take a [`Secret`] without depending on the config that resolves it. A source's `secrets` list
//! holds literals, `{ env = "NAME" }` and `{ file = "PATH" }` entries; `config` resolves them once, at
//! load, into [`Secret`]s (a missing variable, an unreadable file or an empty value is a config error that
//! names the entry, never the value) and re-exports the type as `config::Secret`.

use std::fmt;

/// A secret's bytes as configured (for example `whsec_...` or a GitHub webhook secret).
///
/// `Debug` prints `[redacted]`; there is no `Display` and no `Serialize`, so a secret cannot end up in a
/// log line, an error message or a metric by accident. Each provider interprets the bytes its own way
/// (used whole, or base64-decoded after a prefix).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The secret's bytes, for computing a MAC. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), b"hunter2");
    }
}
