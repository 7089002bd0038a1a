//! The methods a route answers, as a typed list: checked against each request, and sent as the
//! `Allow` header of a 405, from the same value.

use http::{HeaderValue, Method};

/// The methods a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Allow(&'static [Method]);

impl Allow {
    pub(super) const GET: Allow = Allow(&[Method::GET]);
    pub(super) const GET_HEAD: Allow = Allow(&[Method::GET, Method::HEAD]);
    pub(super) const GET_DELETE: Allow = Allow(&[Method::GET, Method::DELETE]);
    pub(super) const POST: Allow = Allow(&[Method::POST]);
    pub(super) const DELETE: Allow = Allow(&[Method::DELETE]);

    /// Whether `method` is one of them.
    pub(super) fn permits(self, method: &Method) -> bool {
        self.0.contains(method)
    }

    /// The `Allow` header's value: the methods, comma-separated.
    pub(super) fn header(self) -> HeaderValue {
        let names: Vec<&str> = self.0.iter().map(Method::as_str).collect();
        HeaderValue::from_str(&names.join(", ")).expect("method names are valid header text")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_lists_what_is_permitted() {
        assert_eq!(Allow::GET_DELETE.header(), "GET, DELETE");
        assert_eq!(Allow::POST.header(), "POST");
        assert!(Allow::GET_DELETE.permits(&Method::DELETE));
        assert!(!Allow::GET_DELETE.permits(&Method::POST));
        assert!(Allow::GET_HEAD.permits(&Method::HEAD));
        assert!(!Allow::GET.permits(&Method::HEAD));
    }
}
