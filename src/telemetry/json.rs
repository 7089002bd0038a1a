//! The JSON log line: one object per event, written straight into the line buffer.
//!
//! The line has the shape of tracing-subscriber's JSON format with the event's fields flattened, which
//! hookgate used before: `timestamp` (RFC 3339, microseconds, UTC), `level`, the event's fields in their
//! order (`message` among them), then `target`. tracing-subscriber builds its line through serde_json
//! and a map serializer, with a `String` for the timestamp and a boxed adaptor per event; under load
//! that took about a tenth of the runtime threads' time, for the two lines each request logs. This
//! formatter writes the same bytes with no allocation of its own.
//!
//! Numbers up to 64 bits are JSON numbers (a float that is not finite becomes `null`, as serde_json
//! writes it); 128-bit integers, which many JSON readers would round, are strings, as before.
//! Everything else, `Debug` and `Display` values included, is a JSON string, escaped as it is
//! written. hookgate logs no spans, so none are written. Events from the `log` crate (sled logs
//! through it) get the target of their `log` record, as in tracing-subscriber.

use std::fmt::{self, Write as _};

use tracing::{
    field::{Field, Visit},
    Event, Subscriber,
};
use tracing_log::NormalizeEvent;
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    registry::LookupSpan,
};

/// The event formatter for JSON lines; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        write!(
            writer,
            "{{\"timestamp\":\"{}\",\"level\":\"{}\"",
            humantime::format_rfc3339_micros(std::time::SystemTime::now()),
            meta.level()
        )?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`, keeping the first error.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self
                .out
                .write_char(',')
                .and_then(|()| string(self.out, field.name()))
                .and_then(|()| self.out.write_char(':'))
                .and_then(|()| value(self.out));
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if super::LIST_FIELDS.contains(&field.name()) {
            // Written as it is only if it is the array of strings that `List` writes; anything else
            // logged under such a name stays a string, so a line is always valid JSON.
            let text = format!("{value:?}");
            if serde_json::from_str::<Vec<String>>(&text).is_ok() {
                return self.entry(field, |out| out.write_str(&text));
            }
        }
        self.entry(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.entry(field, |out| string(out, itoa::Buffer::new().format(value)));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.entry(field, |out| string(out, itoa::Buffer::new().format(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |out| {
            if value.is_finite() {
                out.write_str(ryu::Buffer::new().format_finite(value))
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| out.write_str(if value { "true" } else { "false" }));
    }
}

/// Writes `s` as a JSON string.
fn string(out: &mut Writer<'_>, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what is written through it for the inside of a JSON string: quotes, backslashes and
/// control characters (as serde_json does: the short forms where JSON has them, else `\u00XX`).
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, byte) in s.bytes().enumerate() {
            let short = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if short.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(short)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::JsonLines;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// What `log` writes, through ours and through tracing-subscriber's JSON format, as lines.
    fn both(log: impl Fn()) -> (String, String) {
        let ours = Lines::default();
        let theirs = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ours.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(theirs.clone())
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let text = |lines: Lines| String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        (text(ours), text(theirs))
    }

    /// The lines with their timestamps (which differ) taken out, after checking them.
    fn untimed(text: &str) -> Vec<String> {
        text.lines()
            .map(|line| {
                let rest = line
                    .strip_prefix("{\"timestamp\":\"")
                    .unwrap_or_else(|| panic!("{line:?} does not start with its timestamp"));
                let (timestamp, rest) = rest.split_once('"').expect("a closed timestamp");
                assert!(humantime::parse_rfc3339(timestamp).is_ok(), "{timestamp}");
                assert_eq!(
                    timestamp.len(),
                    "2026-11-24T12:00:00.000000Z".len(),
                    "{timestamp}"
                );
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
                rest.to_owned()
            })
            .collect()
    }

    #[test]
    fn a_line_is_tracing_subscribers_flattened_json_byte_for_byte() {
        let client = std::net::IpAddr::from([127, 0, 0, 1]);
        let (ours, theirs) = both(|| {
            tracing::info!(
                source = "github",
                status = 200u16,
                latency_ms = 1.25,
                negative = -3i64,
                ok = true,
                client_ip = %client,
                "request"
            );
            tracing::warn!(error = ?"a \"quoted\"\\ value\n\t\u{1}\u{7f} é", "delivery failed");
            tracing::error!(
                big = u128::MAX,
                small = i128::MIN,
                nan = f64::NAN,
                tiny = 1e-7,
                "edges"
            );
            // A record of the `log` crate, as sled writes them: its own target, not tracing-log's.
            tracing_log::format_trace(
                &log::Record::builder()
                    .target("sled::pagecache")
                    .level(log::Level::Warn)
                    .args(format_args!("slow"))
                    .build(),
            )
            .unwrap();
        });
        assert_eq!(ours.lines().count(), 4, "{ours}");
        assert!(ours.contains("\"target\":\"sled::pagecache\"}"), "{ours}");
        assert_eq!(untimed(&ours), untimed(&theirs));
    }

    #[test]
    fn control_characters_and_quotes_are_escaped_as_serde_json_escapes_them() {
        let nasty = "\"\\\u{0}\u{8}\u{c}\n\r\t\u{1f} \u{2028} end";
        let (ours, theirs) = both(|| tracing::info!(value = nasty, "x"));
        assert_eq!(untimed(&ours), untimed(&theirs));
        let line: serde_json::Value = serde_json::from_str(ours.trim_end()).unwrap();
        assert_eq!(line["value"], nasty);
    }

    /// What `log` writes through ours alone, parsed.
    fn ours(log: impl Fn()) -> Vec<serde_json::Value> {
        let (ours, _) = both(log);
        ours.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    #[test]
    fn a_list_field_is_a_json_array_and_anything_else_under_its_name_a_string() {
        let keys = vec!["server.listen".to_owned(), "admin \"listen\"".to_owned()];
        let none: Vec<String> = Vec::new();
        let lines = ours(|| {
            tracing::info!(restart_required = %crate::telemetry::List(&keys), "config reloaded");
            tracing::info!(restart_required = %crate::telemetry::List(&none), "config reloaded");
            tracing::info!(restart_required = %"[not, json", "x");
            tracing::info!(other = %crate::telemetry::List(&keys), "x");
        });
        assert_eq!(
            lines[0]["restart_required"],
            serde_json::json!(["server.listen", "admin \"listen\""])
        );
        assert_eq!(lines[1]["restart_required"], serde_json::json!([]));
        assert_eq!(lines[2]["restart_required"], "[not, json");
        // Only the listed names: another field keeps the text.
        assert_eq!(lines[3]["other"], r#"["server.listen","admin \"listen\""]"#);
    }

    #[test]
    fn latency_is_logged_to_the_microsecond() {
        use std::time::Duration;
        let millis = crate::telemetry::millis;
        assert_eq!(millis(Duration::from_nanos(1_234_567)), 1.235);
        assert_eq!(millis(Duration::from_nanos(1_234_499)), 1.234);
        assert_eq!(millis(Duration::from_micros(250)), 0.25);
        assert_eq!(millis(Duration::ZERO), 0.0);
        assert_eq!(millis(Duration::from_secs(12)), 12_000.0);
        let lines = ours(|| tracing::info!(latency_ms = millis(Duration::from_nanos(1_234_567_891)), "x"));
        let (ours, _) =
            both(|| tracing::info!(latency_ms = millis(Duration::from_nanos(1_234_567_891)), "x"));
        assert!(ours.contains("\"latency_ms\":1234.568,"), "{ours}");
        assert_eq!(lines[0]["latency_ms"], 1234.568);
    }
}
