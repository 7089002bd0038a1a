//! The request id: taken from the sender's `X-Request-Id` when it is sane, else made here.
//!
//! The server sets a [`RequestId`] on every request before routing, so that every log line of a
//! request names it, rejections included. A sender's value is kept only if it is one header of 1 to
//! [`MAX_LEN`] visible ASCII characters: anything else (too long, spaces, control or non-ASCII bytes,
//! repeated) could forge or break log lines downstream, and is replaced by a fresh UUID v4. `accept`
//! stores the id among the event's headers in place of the sender's, so every forward of the event
//! carries it as `X-Request-Id`.

use http::{HeaderMap, HeaderValue};

pub(crate) use super::facts::RequestId;

/// The header, on the way in and on the forwarded request.
pub(crate) const HEADER: &str = RequestId::HEADER;

/// The longest sender's id that is kept, in bytes (a UUID is 36, a ULID 26).
pub(crate) const MAX_LEN: usize = 128;

impl RequestId {
    /// The sender's id if sane (see the module docs), else a new one.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(HEADER).iter();
        match (values.next(), values.next()) {
            (Some(value), None) if sane(value) => Self(value.clone()),
            _ => Self::generate(),
        }
    }

    /// A new random id: a UUID v4 from the thread's RNG, hyphenated.
    pub(crate) fn generate() -> Self {
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buf = uuid::Uuid::encode_buffer();
        let text = uuid.hyphenated().encode_lower(&mut buf);
        Self(HeaderValue::from_str(text).expect("a hyphenated UUID is a valid header value"))
    }

    /// The id as text.
    pub(crate) fn as_str(&self) -> &str {
        // Both constructors hold visible ASCII only.
        self.0.to_str().unwrap_or_default()
    }
}

fn sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[&[u8]]) -> RequestId {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(HEADER, HeaderValue::from_bytes(v).expect("valid header value"));
        }
        RequestId::from_headers(&headers)
    }

    fn is_uuid_v4(id: &RequestId) -> bool {
        uuid::Uuid::parse_str(id.as_str()).is_ok_and(|u| u.get_version_num() == 4) && id.as_str().len() == 36
    }

    #[test]
    fn a_sane_sender_id_is_kept() {
        for id in [
            "abc",
            "req_01HZX3K9Q2",
            "4f1c7c2e-1b9a-4d1e-9a51-2f5c3e7b8a90",
            &"x".repeat(MAX_LEN),
        ] {
            assert_eq!(of(&[id.as_bytes()]).as_str(), id);
        }
    }

    #[test]
    fn a_missing_or_insane_sender_id_is_replaced_by_a_uuid_v4() {
        let long = "x".repeat(MAX_LEN + 1);
        let cases: [&[&[u8]]; 7] = [
            &[],
            &[b""],
            &[long.as_bytes()],
            &[b"two words"],
            &[b"tab\there"],
            &[b"caf\xc3\xa9"],
            &[b"one", b"two"],
        ];
        for values in cases {
            let id = of(values);
            assert!(is_uuid_v4(&id), "{values:?} gave {:?}", id.as_str());
        }
    }

    #[test]
    fn generated_ids_differ() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert!(is_uuid_v4(&a) && is_uuid_v4(&b));
        assert_ne!(a, b);
    }
}
