//! What a delivery attempt led to, as the event's history keeps it: [`AttemptResult`].
//!
//! It is stored as its text (`delivered`, `retry in 1s 200ms: status 503`, `dead letter: status 400`),
//! the form the store has always kept, so that the records of a store written before this type existed
//! still read; the admin API shows the same text.

use std::{fmt, str::FromStr, time::Duration};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// What the forwarder decided after an attempt, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The app took the event (a 2xx).
    Delivered,
    /// Tried again after `after`.
    Retry {
        /// The wait before the next attempt, to the millisecond.
        after: Duration,
        /// Why, e.g. `status 503` or `network: connect failed`.
        reason: String,
    },
    /// Kept as a dead letter.
    DeadLetter {
        /// Why, e.g. `status 400`.
        reason: String,
    },
}

impl AttemptResult {
    /// The failure it records, if any: its text, for the admin API's `last_error`.
    pub fn failure(&self) -> Option<String> {
        match self {
            AttemptResult::Delivered => None,
            failed => Some(failed.to_string()),
        }
    }
}

const DELIVERED: &str = "delivered";
const RETRY_IN: &str = "retry in ";
const DEAD_LETTER: &str = "dead letter: ";

impl fmt::Display for AttemptResult {
    /// ```
    /// use std::time::Duration;
    /// use hookgate::store::AttemptResult;
    /// let retry = AttemptResult::Retry { after: Duration::from_millis(1200), reason: "status 503".into() };
    /// assert_eq!(retry.to_string(), "retry in 1s 200ms: status 503");
    /// assert_eq!(retry.to_string().parse(), Ok(retry));
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptResult::Delivered => f.write_str(DELIVERED),
            AttemptResult::Retry { after, reason } => {
                write!(f, "{RETRY_IN}{}: {reason}", humantime::format_duration(*after))
            }
            AttemptResult::DeadLetter { reason } => write!(f, "{DEAD_LETTER}{reason}"),
        }
    }
}

/// Text that is not an attempt result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an attempt result (expected \"delivered\", \"retry in <duration>: <reason>\" or \"dead letter: <reason>\")")]
pub struct UnknownAttemptResult;

impl FromStr for AttemptResult {
    type Err = UnknownAttemptResult;

    fn from_str(s: &str) -> Result<Self, UnknownAttemptResult> {
        if s == DELIVERED {
            return Ok(AttemptResult::Delivered);
        }
        if let Some(reason) = s.strip_prefix(DEAD_LETTER) {
            return Ok(AttemptResult::DeadLetter {
                reason: reason.to_owned(),
            });
        }
        // A humanized duration never holds ':', so the first ": " ends it.
        let (after, reason) = s
            .strip_prefix(RETRY_IN)
            .and_then(|rest| rest.split_once(": "))
            .ok_or(UnknownAttemptResult)?;
        let after = humantime::parse_duration(after).map_err(|_| UnknownAttemptResult)?;
        Ok(AttemptResult::Retry {
            after,
            reason: reason.to_owned(),
        })
    }
}

impl Serialize for AttemptResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AttemptResult {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(ms: u64, reason: &str) -> AttemptResult {
        AttemptResult::Retry {
            after: Duration::from_millis(ms),
            reason: reason.into(),
        }
    }

    #[test]
    fn every_result_reads_back_from_its_text() {
        for (result, text) in [
            (AttemptResult::Delivered, "delivered"),
            (retry(1200, "status 503"), "retry in 1s 200ms: status 503"),
            (
                retry(0, "network: connect failed"),
                "retry in 0s: network: connect failed",
            ),
            (retry(90_000, "status 429"), "retry in 1m 30s: status 429"),
            (
                AttemptResult::DeadLetter {
                    reason: "status 503 after 12 attempts".into(),
                },
                "dead letter: status 503 after 12 attempts",
            ),
        ] {
            assert_eq!(result.to_string(), text);
            assert_eq!(text.parse::<AttemptResult>(), Ok(result.clone()), "{text}");
            // The stored form is the text, as it was when the field was a string.
            let stored = postcard::to_stdvec(&result).expect("encode");
            assert_eq!(stored, postcard::to_stdvec(text).expect("encode"), "{text}");
            assert_eq!(
                postcard::from_bytes::<AttemptResult>(&stored).expect("decode"),
                result
            );
        }
    }

    #[test]
    fn other_text_is_refused() {
        for text in [
            "",
            "Delivered",
            "retry: status 503",
            "retry in soon: status 503",
            "dead: x",
        ] {
            assert_eq!(
                text.parse::<AttemptResult>(),
                Err(UnknownAttemptResult),
                "{text:?}"
            );
        }
    }

    #[test]
    fn only_failures_are_failures() {
        assert_eq!(AttemptResult::Delivered.failure(), None);
        assert_eq!(
            retry(1000, "status 500").failure().as_deref(),
            Some("retry in 1s: status 500")
        );
    }
}
