//! The admin API's bearer token check.
//!
//! Both the configured token and the presented one are hashed with SHA-256 and the digests compared in
//! constant time (`subtle`): the comparison takes the same time wherever the first difference is, and
//! comparing fixed-size digests does not reveal the token's length either. Only the digest is kept.

use http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The configured token's SHA-256.
#[derive(Clone)]
pub(super) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(super) fn new(token: &Secret) -> Self {
        Self(Sha256::digest(token.expose()).into())
    }

    /// Whether `headers` carry `Authorization: Bearer <the token>` (scheme case-insensitive).
    pub(super) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
        else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given).into();
        given.ct_eq(&self.0).into()
    }
}

/// The credentials of a `Bearer` authorization value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = value[SCHEME.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("valid"),
        );
        h
    }

    #[test]
    fn admits_only_the_bearer_token() {
        let digest = TokenDigest::new(&Secret::new("0123456789abcdef"));
        assert!(digest.admits(&with_auth("Bearer 0123456789abcdef")));
        assert!(digest.admits(&with_auth("bearer  0123456789abcdef ")));
        assert!(!digest.admits(&with_auth("Bearer 0123456789abcdeF")));
        assert!(!digest.admits(&with_auth("Bearer 0123456789abcde")));
        assert!(!digest.admits(&with_auth("Basic 0123456789abcdef")));
        assert!(!digest.admits(&with_auth("0123456789abcdef")));
        assert!(!digest.admits(&with_auth("Bearer ")));
        assert!(!digest.admits(&HeaderMap::new()));
    }
}
