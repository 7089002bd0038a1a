//! The cases every provider must pass, written once.
//!
//! A provider's tests describe how its sender signs ([`Scheme`]) and call [`conformance_tests!`], which
//! writes one `#[test]` per case into a `conformance` module: a valid signature is accepted, a wrong
//! secret and a tampered body are mismatches, a request stripped of its credentials holds no secret, the second of two secrets matches (rotation), a missing
//! signature header is named, the timestamp window holds on both of its edges, in the past and the
//! future, and can be overridden, a timestamp decades ahead is refused, a forged request outside the
//! window still reports the signature, empty secrets are refused, `Debug`
//! shows no secret, and `sign` either round-trips with the first secret or says why it cannot.
//!
//! The description signs independently of the provider's own `sign` (it is how the sender computes
//! the signature, written again from the sender's documentation), so a mistake shared by `sign` and
//! `verify` still fails a case. Published vectors and a provider's odd cases stay in its own tests.

use std::{sync::Arc, time::Duration};

use http::{Method, Uri};

use super::test_support::{at, stripped, verify_at};
use super::{
    build, ChallengeSettings, EventMeta, HmacScheme, Provider, ProviderConfigError, ProviderKind,
    ProviderSettings, SignError, SignRequest, TokenLocation, VerifyError,
};
use crate::secret::Secret;

/// The instant the cases sign at, in Unix seconds.
pub(crate) const NOW: u64 = 1_700_000_000;

/// A request as the sender sends it.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// The request target: `/hook`, with a query for schemes that put the secret there.
    pub(crate) target: String,
    /// The headers, signature among them.
    pub(crate) headers: Vec<(String, String)>,
    /// The body, exactly as sent.
    pub(crate) body: Vec<u8>,
}

impl Signed {
    /// A request to `/hook` of `body` with `headers`.
    pub(crate) fn new(body: impl Into<Vec<u8>>, headers: &[(&str, String)]) -> Self {
        Self {
            target: "/hook".to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect(),
            body: body.into(),
        }
    }

    /// The same request sent to `target` instead of `/hook`.
    pub(crate) fn to(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// The value of the header `name` (any case), to change it.
    pub(crate) fn header_mut(&mut self, name: &str) -> &mut String {
        self.headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no header {name}"))
    }

    /// The request without the header `name` (any case).
    fn without(&self, name: &str) -> Self {
        let mut out = self.clone();
        out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        out
    }
}

/// One more byte at the end of the body: a space, so that JSON and forms stay well-formed and the
/// failure is the signature's, not the parser's.
pub(crate) fn append_to_body(req: &mut Signed) {
    req.body.push(b' ');
}

/// The scheme's timestamp window, for timestamped schemes.
#[derive(Clone, Copy)]
pub(crate) struct Timestamps {
    /// The window without a configured `tolerance`; `None` where there is none by default. Every
    /// window is two-sided (see [`super::check_timestamp`]).
    pub(crate) default: Option<Duration>,
    /// Whether `tolerance` changes the window.
    pub(crate) overridable: bool,
}

/// What the provider's own `sign` does.
#[derive(Clone)]
pub(crate) enum OwnSign {
    /// Signs with the first secret; `verify` accepts it.
    RoundTrip,
    /// Cannot sign, with this error.
    Refuses(SignError),
}

/// How a provider's sender signs, and what the provider is built from.
pub(crate) struct Scheme {
    /// The provider.
    pub(crate) kind: ProviderKind,
    /// The config strings of two keys the sender signs with (`sign`'s `key` 0 and 1).
    pub(crate) secrets: [&'static str; 2],
    /// A config string of a key the sender never signs with.
    pub(crate) wrong: &'static str,
    /// `public_url`, for URL-signing schemes.
    pub(crate) public_url: Option<&'static str>,
    /// `[sources.hmac]`, for `provider = "hmac"`.
    pub(crate) hmac: Option<fn() -> HmacScheme>,
    /// `[sources.token]`, for `provider = "token"`.
    pub(crate) token: Option<fn() -> TokenLocation>,
    /// Signs a request as the sender would, with `secrets[key]`, at `at` (Unix seconds).
    pub(crate) sign: fn(key: usize, at: u64) -> Signed,
    /// The header whose absence is reported as [`VerifyError::MissingSignature`] (for the token
    /// schemes, [`VerifyError::MissingToken`]); `None` where the signature is not in a header.
    pub(crate) signature_header: Option<&'static str>,
    /// Changes to a signed request that each make it a mismatch (a body byte, a signed header):
    /// [`append_to_body`] for most; empty where the scheme's tampering has tests of its own.
    pub(crate) tamper: Vec<fn(&mut Signed)>,
    /// The timestamp window; `None` for schemes without a timestamp.
    pub(crate) timestamps: Option<Timestamps>,
    /// What the provider's own `sign` does.
    pub(crate) own_sign: OwnSign,
}

impl Scheme {
    /// The provider built from `secrets` and `tolerance`.
    pub(crate) fn provider(
        &self,
        secrets: &[&str],
        tolerance: Option<Duration>,
    ) -> Result<Arc<dyn Provider>, ProviderConfigError> {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        let hmac = self.hmac.map(|scheme| scheme());
        let token = self.token.map(|location| location());
        // Meta cannot be built without the verify token of its GET challenge; its own tests cover it.
        let challenge = (self.kind == ProviderKind::Meta).then(|| ChallengeSettings {
            verify_token: Some(Secret::new("conformance-verify-token")),
        });
        build(
            self.kind,
            ProviderSettings {
                secrets: &secrets,
                tolerance,
                public_url: self.public_url,
                hmac: hmac.as_ref(),
                token: token.as_ref(),
                id_header: None,
                challenge: challenge.as_ref(),
            },
        )
    }

    /// What a wrong key is reported as: a token scheme compares the secret itself, not a signature.
    fn mismatch(&self) -> VerifyError {
        if self.kind.is_token() {
            VerifyError::TokenMismatch
        } else {
            VerifyError::SignatureMismatch
        }
    }

    fn built(&self, secrets: &[&str], tolerance: Option<Duration>) -> Arc<dyn Provider> {
        self.provider(secrets, tolerance)
            .unwrap_or_else(|e| panic!("{}: valid settings: {e}", self.kind.name()))
    }

    fn check(p: &dyn Provider, req: &Signed, now: u64) -> Result<EventMeta, VerifyError> {
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        verify_at(p, &req.target, &headers, &req.body, now)
    }

    fn accepts(&self, p: &dyn Provider, req: &Signed, now: u64, what: &str) {
        if let Err(e) = Self::check(p, req, now) {
            panic!("{}: {what}: expected Ok, got {e:?}", self.kind.name());
        }
    }

    /// `req`, signed at [`NOW`], is `age_secs` old at `NOW + age_secs`: outside the window.
    fn outside(&self, p: &dyn Provider, req: &Signed, age_secs: i64, what: &str) {
        let now = NOW.checked_add_signed(age_secs).expect("in range");
        assert_eq!(
            Self::check(p, req, now),
            Err(VerifyError::TimestampOutsideTolerance { age_secs }),
            "{}: {what}",
            self.kind.name()
        );
    }

    fn timestamps(&self) -> Timestamps {
        self.timestamps
            .unwrap_or_else(|| panic!("{}: the case needs a timestamped scheme", self.kind.name()))
    }

    /// A request signed with the first secret verifies, and its name is the config name.
    pub(crate) fn valid_signature_is_accepted(&self) {
        let p = self.built(&[self.secrets[0]], None);
        assert_eq!(p.name(), self.kind.name());
        let meta = Self::check(&*p, &(self.sign)(0, NOW), NOW).expect("a valid signature verifies");
        assert!(!meta.event_id.is_empty(), "{}: empty event id", self.kind.name());
    }

    /// A key the request was not signed with is a mismatch.
    pub(crate) fn wrong_secret_is_a_mismatch(&self) {
        let p = self.built(&[self.wrong], None);
        assert_eq!(
            Self::check(&*p, &(self.sign)(0, NOW), NOW),
            Err(self.mismatch()),
            "{}",
            self.kind.name()
        );
    }

    /// Any configured key matches, in either place of the list (rotation).
    pub(crate) fn second_secret_matches(&self) {
        let p = self.built(&self.secrets, None);
        self.accepts(&*p, &(self.sign)(1, NOW), NOW, "signed with the second secret");
        self.accepts(&*p, &(self.sign)(0, NOW), NOW, "signed with the first secret");
        let p = self.built(&[self.wrong, self.secrets[0]], None);
        self.accepts(&*p, &(self.sign)(0, NOW), NOW, "the right secret second");
    }

    /// Each of the scheme's changes to a signed request is a mismatch.
    pub(crate) fn tampered_request_is_a_mismatch(&self) {
        assert!(
            !self.tamper.is_empty(),
            "{}: the case needs a way to tamper",
            self.kind.name()
        );
        let p = self.built(&[self.secrets[0]], None);
        for (i, change) in self.tamper.iter().enumerate() {
            let mut req = (self.sign)(0, NOW);
            change(&mut req);
            assert_eq!(
                Self::check(&*p, &req, NOW),
                Err(self.mismatch()),
                "{}: change #{i}",
                self.kind.name()
            );
        }
    }

    /// Without the signature header, the error names it.
    pub(crate) fn missing_signature_is_named(&self) {
        let Some(header) = self.signature_header else {
            panic!("{}: the case needs a signature header", self.kind.name());
        };
        let p = self.built(&[self.secrets[0]], None);
        let req = (self.sign)(0, NOW).without(header);
        let missing = if self.kind.is_token() {
            VerifyError::MissingToken(header)
        } else {
            VerifyError::MissingSignature(header)
        };
        assert_eq!(Self::check(&*p, &req, NOW), Err(missing), "{}", self.kind.name());
    }

    /// The default window accepts its edges and rejects one second beyond them; without a default
    /// window, any age verifies.
    pub(crate) fn default_window_holds(&self) {
        let ts = self.timestamps();
        let p = self.built(&[self.secrets[0]], None);
        let req = (self.sign)(0, NOW);
        let Some(tol) = ts.default else {
            let decade = 10 * 365 * 24 * 3600;
            self.accepts(&*p, &req, NOW + decade, "no window by default: a decade later");
            self.accepts(&*p, &req, NOW - decade, "no window by default: a decade earlier");
            return;
        };
        self.window_holds(&*p, &req, tol.as_secs());
    }

    /// A configured `tolerance` replaces the default window.
    pub(crate) fn tolerance_is_overridable(&self) {
        let ts = self.timestamps();
        assert!(
            ts.overridable,
            "{}: the case needs an overridable window",
            self.kind.name()
        );
        let p = self.built(&[self.secrets[0]], Some(Duration::from_secs(30)));
        self.window_holds(&*p, &(self.sign)(0, NOW), 30);
    }

    fn window_holds(&self, p: &dyn Provider, req: &Signed, tol: u64) {
        let age = i64::try_from(tol).expect("a window in range") + 1;
        self.accepts(p, req, NOW + tol, "as old as the window allows");
        self.outside(p, req, age, "a second older than the window allows");
        self.accepts(p, req, NOW - tol, "as far ahead as the window allows");
        self.outside(p, req, -age, "a second further ahead than the window allows");
    }

    /// A request signed 31 years ahead of now (issue 23: Stripe accepted one) is outside the window,
    /// the default one or, where there is none by default, a configured one: otherwise it could be
    /// replayed until then.
    pub(crate) fn far_future_is_refused(&self) {
        let ts = self.timestamps();
        let tolerance = ts.default.is_none().then_some(Duration::from_secs(300));
        let p = self.built(&[self.secrets[0]], tolerance);
        let ahead: u64 = 31 * 365 * 24 * 3600;
        let req = (self.sign)(0, NOW + ahead);
        self.accepts(&*p, &req, NOW + ahead, "signed now");
        assert_eq!(
            Self::check(&*p, &req, NOW),
            Err(VerifyError::TimestampOutsideTolerance {
                age_secs: -i64::try_from(ahead).expect("in range")
            }),
            "{}: 31 years ahead",
            self.kind.name()
        );
    }

    /// A forged request outside the window reports the signature: the window is checked only for
    /// requests that verify, so a forger learns nothing from it.
    pub(crate) fn signature_is_checked_before_the_window(&self) {
        let ts = self.timestamps();
        let tol = ts.default.map_or(30, |d| d.as_secs());
        let tolerance = ts.default.is_none().then_some(Duration::from_secs(tol));
        let p = self.built(&[self.wrong], tolerance);
        let req = (self.sign)(0, NOW);
        assert_eq!(
            Self::check(&*p, &req, NOW + tol + 1),
            Err(VerifyError::SignatureMismatch),
            "{}: stale",
            self.kind.name()
        );
        assert_eq!(
            Self::check(&*p, &req, NOW - tol - 1),
            Err(VerifyError::SignatureMismatch),
            "{}: ahead",
            self.kind.name()
        );
    }

    /// No secret, or an empty one, is refused with its index.
    pub(crate) fn empty_secrets_are_refused(&self) {
        assert_eq!(
            self.provider(&[], None).err(),
            Some(ProviderConfigError::NoSecrets),
            "{}",
            self.kind.name()
        );
        assert_eq!(
            self.provider(&[self.secrets[0], ""], None).err(),
            Some(ProviderConfigError::EmptySecret { index: 1 }),
            "{}",
            self.kind.name()
        );
    }

    /// `Debug` names the provider, counts the keys and shows none of them.
    pub(crate) fn debug_shows_no_secret(&self) {
        let shown = format!("{:?}", self.built(&self.secrets, None));
        assert!(shown.contains("[redacted; 2]"), "{}: {shown}", self.kind.name());
        let folded: String = shown.to_lowercase().chars().filter(|c| *c != '_').collect();
        let name = self.kind.name().replace('_', "");
        assert!(
            folded.contains(&name),
            "{}: not named in {shown}",
            self.kind.name()
        );
        for secret in self.secrets {
            assert!(
                !shown.contains(secret),
                "{}: a secret in {shown}",
                self.kind.name()
            );
        }
    }

    /// The optional cases named in [`conformance_tests!`] are those the description can run, so that a
    /// description's window or tampering is never left unchecked by a forgotten name.
    pub(crate) fn lists_its_cases(&self, listed: &[&str]) {
        let ts = self.timestamps;
        for (case, described) in [
            ("tamper", !self.tamper.is_empty()),
            ("missing", self.signature_header.is_some()),
            ("window", ts.is_some()),
            ("future", ts.is_some()),
            ("override", ts.is_some_and(|t| t.overridable)),
            ("signature_first", ts.is_some()),
        ] {
            assert_eq!(
                listed.contains(&case),
                described,
                "{}: case {case} is described but not listed, or listed but not described",
                self.kind.name()
            );
        }
    }

    /// The provider's own `sign` uses the first secret and `verify` accepts what it signs; or it says
    /// why it cannot.
    pub(crate) fn own_sign_round_trips(&self) {
        let p = self.built(&self.secrets, None);
        let body = (self.sign)(0, NOW).body;
        let (method, uri) = (Method::POST, Uri::from_static("/hook"));
        let target = p.sign_target("/hook");
        let req = SignRequest {
            method: &method,
            uri: &uri,
            body: &body,
            event_id: "evt_conformance",
        };
        let headers = match (p.sign(&req, at(NOW)), &self.own_sign) {
            (Ok(headers), OwnSign::RoundTrip) => headers,
            (Err(got), OwnSign::Refuses(expected)) => {
                assert_eq!(&got, expected, "{}", self.kind.name());
                return;
            }
            (got, _) => panic!("{}: sign gave {got:?}", self.kind.name()),
        };
        let signed = Signed {
            target: target.expect("a scheme that signs the headers can sign the target"),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().expect("ascii").to_owned()))
                .collect(),
            body,
        };
        self.accepts(&*p, &signed, NOW, "what sign signs");
        let second_only = self.built(&[self.secrets[1]], None);
        assert_eq!(
            Self::check(&*second_only, &signed, NOW),
            Err(self.mismatch()),
            "{}: sign must use the first secret",
            self.kind.name()
        );
    }

    /// What the sender sent, once the verify layer has stripped credentials from it, holds no secret
    /// in any form a scheme sends one (as is, base64, percent-encoded): nothing stores, forwards or
    /// shows a shared secret.
    pub(crate) fn stripped_request_holds_no_secret(&self) {
        use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};

        let p = self.built(&self.secrets, None);
        for key in 0..self.secrets.len() {
            let signed = (self.sign)(key, NOW);
            self.accepts(&*p, &signed, NOW, "the signed request");
            let headers: Vec<(&str, &str)> = signed
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let head = stripped(&*p, &signed.target, &headers);
            let mut seen = vec![head.uri.to_string()];
            for (name, value) in &head.headers {
                seen.push(format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())));
            }
            let secret = self.secrets[key];
            let forms = [
                secret.to_owned(),
                BASE64.encode(secret),
                form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            ];
            for form in &forms {
                assert!(
                    !seen.iter().any(|s| s.contains(form.as_str())),
                    "{}: a secret is left in {seen:?}",
                    self.kind.name()
                );
            }
        }
    }
}

/// Writes the conformance cases for the [`Scheme`] that `$scheme` evaluates to, as `#[test]`s in a
/// `conformance` module. After the scheme, name the optional cases that apply: `tamper`, `missing`,
/// `window`, `future`, `override`, `signature_first`.
macro_rules! conformance_tests {
    ($scheme:expr $(, $case:ident)* $(,)?) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;

            fn scheme() -> $crate::providers::conformance::Scheme {
                $scheme
            }

            #[test]
            fn valid_signature_is_accepted() {
                scheme().valid_signature_is_accepted();
            }

            #[test]
            fn wrong_secret_is_a_mismatch() {
                scheme().wrong_secret_is_a_mismatch();
            }

            #[test]
            fn second_secret_matches() {
                scheme().second_secret_matches();
            }

            #[test]
            fn empty_secrets_are_refused() {
                scheme().empty_secrets_are_refused();
            }

            #[test]
            fn debug_shows_no_secret() {
                scheme().debug_shows_no_secret();
            }

            #[test]
            fn own_sign_round_trips() {
                scheme().own_sign_round_trips();
            }

            #[test]
            fn stripped_request_holds_no_secret() {
                scheme().stripped_request_holds_no_secret();
            }

            #[test]
            fn every_described_case_runs() {
                scheme().lists_its_cases(&[$(stringify!($case)),*]);
            }

            $( $crate::providers::conformance::conformance_tests!(@case $case); )*
        }
    };
    (@case tamper) => {
        #[test]
        fn tampered_request_is_a_mismatch() {
            scheme().tampered_request_is_a_mismatch();
        }
    };
    (@case missing) => {
        #[test]
        fn missing_signature_is_named() {
            scheme().missing_signature_is_named();
        }
    };
    (@case window) => {
        #[test]
        fn default_window_holds() {
            scheme().default_window_holds();
        }
    };
    (@case future) => {
        #[test]
        fn far_future_is_refused() {
            scheme().far_future_is_refused();
        }
    };
    (@case override) => {
        #[test]
        fn tolerance_is_overridable() {
            scheme().tolerance_is_overridable();
        }
    };
    (@case signature_first) => {
        #[test]
        fn signature_is_checked_before_the_window() {
            scheme().signature_is_checked_before_the_window();
        }
    };
}
pub(crate) use conformance_tests;

/// HMAC-SHA256 of the concatenated `parts` under `key`, computed here rather than by the providers' code.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA1 of the concatenated `parts` under `key`.
pub(crate) fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}
