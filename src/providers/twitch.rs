//! Twitch EventSub webhooks: an HMAC over id, timestamp and body in `Twitch-Eventsub-Message-Signature`,
//! and the `webhook_callback_verification` handshake.
//!
//! Scheme, as documented in [Handling webhook events][docs] ("Verifying the event message", "Responding
//! to a challenge request") and [EventSub][eventsub] ("Guarding against replay attacks"):
//!
//! - `Twitch-Eventsub-Message-Signature: sha256=<hex>`, where `<hex>` is the hex HMAC-SHA256 of the
//!   concatenation of the `Twitch-Eventsub-Message-Id` header, the `Twitch-Eventsub-Message-Timestamp`
//!   header (its raw text, as sent) and the raw body bytes, with no separators. The key is the
//!   subscription's secret used whole, as bytes; Twitch requires it to be 10 to 100 ASCII characters,
//!   which the constructor checks. One signature per request; hex is accepted in either case.
//! - The timestamp is an RFC 3339 date-time (Twitch sends UTC with nanoseconds, e.g.
//!   `2019-11-16T10:11:12.634234626Z`), parsed by a strict parser here: `YYYY-MM-DDTHH:MM:SS`, an optional
//!   fraction, then `Z` or a `±HH:MM` offset (`t`, `z` and a space separator are not accepted). The fraction
//!   is dropped (the time is rounded down to the second). Twitch tells receivers to reject messages
//!   **older than 10 minutes**; this provider also rejects those more than 10 minutes ahead (see
//!   [`check_timestamp`]; `tolerance` overrides the 10 minutes), checked after the signature.
//! - The event id is the message id (stable across Twitch's retries, and signed).
//! - `Twitch-Eventsub-Message-Type`: `webhook_callback_verification` is answered by the gateway, after
//!   verification, with `200`, `text/plain` and the body's `challenge` string; `notification`,
//!   `revocation` and any other type are verified and forwarded.
//!
//! Errors: no signature header → `MissingSignature`; no id or timestamp header → `MissingHeader`; a
//! signature without the `sha256=` prefix or not hex of one digest, or an id header that is not visible
//! ASCII → `MalformedSignature`; a timestamp that is not RFC 3339 → `MalformedTimestamp`; a verification
//! request without a string `challenge` → `MalformedBody`.
//!
//! `sign` sets the id header to the event id, the timestamp to `now` as `YYYY-MM-DDTHH:MM:SSZ` and the type
//! to `notification`.
//!
//! [docs]: https://dev.twitch.tv/docs/eventsub/handling-webhook-events/
//! [eventsub]: https://dev.twitch.tv/docs/eventsub/

use std::{fmt, time::Duration, time::SystemTime};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use http::{HeaderName, HeaderValue};

use super::{
    check_timestamp, header, mac, unix_secs, EventMeta, Handshake, Listing, Provider, ProviderConfigError,
    ProviderSettings, SignError, SignRequest, VerifyError, WebhookRequest,
};
use crate::secret::Secret;

/// What `hookgate providers` and the README's provider table say of `twitch`.
pub(crate) const LISTING: Listing = Listing {
    name: "twitch",
    scheme:
        "`Twitch-Eventsub-Message-Signature: sha256=...` over id + timestamp + body; answers the challenge",
    window: "10 min",
    event_id: "`Twitch-Eventsub-Message-Id`",
    docs: "https://dev.twitch.tv/docs/eventsub/handling-webhook-events/",
    requires: &[],
};

/// The signature header.
const SIGNATURE: &str = "twitch-eventsub-message-signature";
/// The message id header, used as the event id.
const MESSAGE_ID: &str = "twitch-eventsub-message-id";
/// The RFC 3339 timestamp header.
const TIMESTAMP: &str = "twitch-eventsub-message-timestamp";
/// The message type header.
const MESSAGE_TYPE: &str = "twitch-eventsub-message-type";

/// The prefix of a signature.
const PREFIX: &str = "sha256=";
/// The message type of the subscription handshake.
const CALLBACK_VERIFICATION: &str = "webhook_callback_verification";
/// The message type `sign` sets.
const NOTIFICATION: &str = "notification";
/// Twitch's replay window (the past; this gateway bounds the future with it too).
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(10 * 60);
/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// What a secret must look like, for [`ProviderConfigError::InvalidSecret`].
const SECRET_EXPECTED: &str = "10 to 100 ASCII characters, as Twitch requires";

/// Verifies `Twitch-Eventsub-Message-Signature` against any of the secrets and answers the handshake.
pub(crate) struct Twitch {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Twitch {
    /// Builds the provider; every secret must be 10 to 100 ASCII characters.
    pub(crate) fn try_new(settings: ProviderSettings<'_>) -> Result<Self, ProviderConfigError> {
        let secrets = settings.require_secrets()?.to_vec();
        if let Some(index) = secrets.iter().position(|s| {
            let s = s.expose();
            !(10..=100).contains(&s.len()) || !s.is_ascii()
        }) {
            return Err(ProviderConfigError::InvalidSecret {
                index,
                expected: SECRET_EXPECTED,
            });
        }
        Ok(Self {
            secrets,
            tolerance: settings.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        })
    }
}

/// The body of a `webhook_callback_verification` message.
#[derive(Deserialize)]
struct Challenge {
    challenge: Option<String>,
}

impl Provider for Twitch {
    fn name(&self) -> &'static str {
        "twitch"
    }

    fn verify(&self, req: &WebhookRequest<'_>, now: SystemTime) -> Result<EventMeta, VerifyError> {
        let signature = req
            .headers
            .get(SIGNATURE)
            .ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let id = req
            .headers
            .get(MESSAGE_ID)
            .ok_or(VerifyError::MissingHeader(MESSAGE_ID))?;
        let timestamp = req
            .headers
            .get(TIMESTAMP)
            .ok_or(VerifyError::MissingHeader(TIMESTAMP))?;
        let malformed = VerifyError::MalformedSignature(SIGNATURE);
        let hex_digits = signature
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix(PREFIX))
            .ok_or_else(|| malformed.clone())?;
        let mut tag = [0u8; TAG_LEN];
        hex::decode_to_slice(hex_digits, &mut tag).map_err(|_| malformed)?;
        let id = id
            .to_str()
            .map_err(|_| VerifyError::MalformedSignature(MESSAGE_ID))?;
        let ts = timestamp
            .to_str()
            .ok()
            .and_then(parse_rfc3339)
            .ok_or(VerifyError::MalformedTimestamp(TIMESTAMP))?;

        let matched = self.secrets.iter().any(|secret| {
            mac::<Hmac<Sha256>>(secret.expose(), &[id.as_bytes(), timestamp.as_bytes(), req.body])
                .verify_slice(&tag)
                .is_ok()
        });
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        check_timestamp(ts, now, self.tolerance)?;

        let is_handshake = req
            .headers
            .get(MESSAGE_TYPE)
            .is_some_and(|t| t.as_bytes() == CALLBACK_VERIFICATION.as_bytes());
        if !is_handshake {
            return Ok(EventMeta::new(id));
        }
        let challenge = serde_json::from_slice::<Challenge>(req.body)
            .ok()
            .filter(|_| req.body.trim_ascii_start().first() == Some(&b'{'))
            .and_then(|c| c.challenge)
            .ok_or(VerifyError::MalformedBody)?;
        Ok(EventMeta::handshake(
            id,
            Handshake {
                content_type: "text/plain",
                headers: Vec::new(),
                body: challenge.into_bytes(),
            },
        ))
    }

    fn sign(
        &self,
        req: &SignRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let ts = format_rfc3339(unix_secs(now));
        let tag = mac::<Hmac<Sha256>>(
            self.secrets[0].expose(),
            &[req.event_id.as_bytes(), ts.as_bytes(), req.body],
        )
        .finalize()
        .into_bytes();
        Ok(vec![
            header(MESSAGE_ID, req.event_id),
            header(TIMESTAMP, ts),
            header(MESSAGE_TYPE, NOTIFICATION),
            header(SIGNATURE, format!("{PREFIX}{}", hex::encode(tag))),
        ])
    }
}

impl fmt::Debug for Twitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Twitch")
            .field("secrets", &format_args!("[redacted; {}]", self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// Parses an RFC 3339 date-time, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, into Unix seconds,
/// rounding down to the second. Every field must have exactly its digits and be in range (days checked
/// against the month, with leap years; a leap second `:60` is accepted and counts as the next second).
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        rest = &fraction[len..];
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn format_rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The value of a run of ASCII digits, or `None` if any byte is not a digit.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// The number of days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
