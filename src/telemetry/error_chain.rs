//! [`ErrorChain`]: an error with its causes on one line, for log fields and the binary's messages.

use std::{error::Error, fmt};

/// Displays an error with its causes, `a: b: c`, leaving out a cause whose text is already shown
/// (hyper's and io's errors often repeat their source in their own message).
///
/// ```
/// use hookgate::telemetry::ErrorChain;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("cannot open the store")]
/// struct Open(#[source] std::io::Error);
///
/// let e = Open(std::io::Error::new(std::io::ErrorKind::Other, "disk full"));
/// assert_eq!(ErrorChain(&e).to_string(), "cannot open the store: disk full");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !shown.contains(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&shown)
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn chain(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                })
            })
            .expect("at least one")
    }

    #[test]
    fn causes_follow_in_order_and_repeats_are_left_out() {
        assert_eq!(ErrorChain(&chain(&["a"])).to_string(), "a");
        assert_eq!(ErrorChain(&chain(&["a", "b", "c"])).to_string(), "a: b: c");
        assert_eq!(
            ErrorChain(&chain(&[
                "client error (Connect)",
                "tcp connect error: Connection refused (os error 111)",
                "Connection refused (os error 111)",
            ]))
            .to_string(),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
    }
}
