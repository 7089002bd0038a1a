use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tempfile::TempDir;

use crate::Config;

/// A CA, a server pair for 127.0.0.1 and a client pair, written as PEM files.
struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca = params.self_signed(&ca_key).expect("CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
        for name in ["server", "client", "other"] {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
                .expect("params")
                .signed_by(&key, &ca, &ca_key)
                .expect("leaf");
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).expect("write");
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).expect("write");
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name` as a TOML string.
    fn toml(&self, name: &str) -> String {
        format!("{:?}", self.path(name).display().to_string())
    }
}

fn source(name: &str, upstream: &str, forward: &str) -> String {
    format!(
        "\n[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nprovider = \"github\"\n\
         secrets = [\"s3cret\"]\nupstream = \"{upstream}\"\n{forward}"
    )
}

fn issues(text: &str) -> Vec<String> {
    match Config::from_toml(text, |_| None) {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(e) => e.issues.iter().map(ToString::to_string).collect(),
    }
}

fn shown(path: &Path) -> String {
    format!("{path:?}")
}

#[test]
fn listener_tables_load_their_files() {
    let f = Files::new();
    let text = format!(
        "[server.tls]\ncert = {}\nkey = {}\nclient_ca = {}\n[admin.tls]\ncert = {}\nkey = {}\n{}",
        f.toml("server.pem"),
        f.toml("server.key"),
        f.toml("ca.pem"),
        f.toml("server.pem"),
        f.toml("server.key"),
        source("a", "http://127.0.0.1:3000/a", "")
    );
    let config = Config::from_toml(&text, |_| None).expect("valid");
    let server = config.server.tls.as_ref().expect("server.tls");
    assert!(server.requires_client_cert());
    assert_eq!(server.files().cert, f.path("server.pem"));
    let admin = config.admin.tls.as_ref().expect("admin.tls");
    assert!(!admin.requires_client_cert());
}

#[test]
fn listener_file_problems_name_the_key() {
    let f = Files::new();
    let missing = f.path("missing.pem");
    let text = format!(
        "[server.tls]\ncert = {}\nkey = {}\n[admin.tls]\ncert = {}\nkey = {}\n{}",
        f.toml("missing.pem"),
        f.toml("server.key"),
        f.toml("server.pem"),
        f.toml("other.key"),
        source("a", "http://127.0.0.1:3000/a", "")
    );
    let got = issues(&text);
    // `[admin]` is validated before `[server]`.
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[1].starts_with(&format!("server.tls.cert: cannot read {}: ", shown(&missing))),
        "{got:#?}"
    );
    assert_eq!(
        got[0],
        format!(
            "admin.tls.key: {} does not match the certificate in {} (expected the private key of its first certificate)",
            shown(&f.path("other.key")),
            shown(&f.path("server.pem"))
        )
    );

    let text = format!(
        "[server.tls]\ncert = {}\nkey = {}\nclient_ca = {}\n{}",
        f.toml("server.key"),
        f.toml("server.key"),
        f.toml("server.key"),
        source("a", "http://127.0.0.1:3000/a", "")
    );
    assert_eq!(
        issues(&text),
        [
            format!(
                "server.tls.cert: {} holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks, leaf first)",
                shown(&f.path("server.key"))
            ),
            format!(
                "server.tls.client_ca: {} holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)",
                shown(&f.path("server.key"))
            ),
        ]
    );

    let text = format!(
        "[server.tls]\ncertificate = {}\n{}",
        f.toml("server.pem"),
        source("a", "http://127.0.0.1:3000/a", "")
    );
    let got = issues(&text);
    assert_eq!(
        got[0],
        "server.tls.certificate: unknown key (expected one of `cert`, `key`, `client_ca`)"
    );
}

#[test]
fn https_upstreams_get_the_forward_tls_and_sources_may_override_it() {
    let f = Files::new();
    let text = format!(
        "[forward]\nca_file = {}\nclient_cert = {}\nclient_key = {}\n{}{}{}{}",
        f.toml("ca.pem"),
        f.toml("client.pem"),
        f.toml("client.key"),
        source("a", "https://127.0.0.1:8443/a", ""),
        source("b", "https://app.internal:8443/b", ""),
        source("plain", "http://127.0.0.1:3000/p", ""),
        source(
            "own",
            "https://127.0.0.1:9443/o",
            &format!(
                "[sources.forward]\nclient_cert = {}\nclient_key = {}\n",
                f.toml("other.pem"),
                f.toml("other.key")
            )
        ),
    );
    let config = Config::from_toml(&text, |_| None).expect("valid");
    let tls = |i: usize| config.sources[i].forward.tls.clone();
    let (a, b, own) = (
        tls(0).expect("https"),
        tls(1).expect("https"),
        tls(3).expect("https"),
    );
    assert!(tls(2).is_none(), "an http:// upstream has no TLS");
    assert_eq!(a.fingerprint(), b.fingerprint(), "one setting, shared");
    assert_eq!(a.files().ca_file.as_deref(), Some(f.path("ca.pem").as_path()));
    assert_ne!(a.fingerprint(), own.fingerprint());
    assert_eq!(
        own.files().ca_file.as_deref(),
        Some(f.path("ca.pem").as_path()),
        "ca_file is the default's"
    );
    assert_eq!(
        own.files().client_cert.as_deref(),
        Some(f.path("other.pem").as_path())
    );
}

#[test]
fn forward_tls_problems_name_the_key_once() {
    let f = Files::new();
    let missing = f.path("missing.pem");
    let text = format!(
        "[forward]\nca_file = {}\nclient_cert = {}\n{}{}{}{}",
        f.toml("missing.pem"),
        f.toml("client.pem"),
        source("a", "https://127.0.0.1:8443/a", ""),
        source("b", "https://127.0.0.1:8443/b", ""),
        source(
            "c",
            "http://127.0.0.1:3000/c",
            &format!("[sources.forward]\nca_file = {}\n", f.toml("ca.pem"))
        ),
        source(
            "d",
            "https://127.0.0.1:8443/d",
            &format!(
                "[sources.forward]\nca_file = {}\nclient_key = {}\n",
                f.toml("server.key"),
                f.toml("client.key")
            )
        ),
    );
    let got = issues(&text);
    assert_eq!(
        got,
        [
            "forward.client_key: is missing: client_cert is set (expected client_cert and client_key together)".to_owned(),
            format!(
                "forward.ca_file: cannot read {}: No such file or directory (os error 2)",
                shown(&missing)
            ),
            "sources.c.forward.ca_file: is set, but upstream \"http://127.0.0.1:3000/c\" is not https:// \
             and never uses it (expected an https:// upstream, or no ca_file)"
                .to_owned(),
            "sources.d.forward.client_cert: is missing: client_key is set (expected client_cert and client_key together)".to_owned(),
        ],
    );

    // With the pair fixed: a missing ca_file is reported once for the two sources that share it,
    // and a source's own bad ca_file under its own key.
    let text = format!(
        "[forward]\nca_file = {}\n{}{}{}",
        f.toml("missing.pem"),
        source("a", "https://127.0.0.1:8443/a", ""),
        source("b", "https://127.0.0.1:8443/b", ""),
        source(
            "d",
            "https://127.0.0.1:8443/d",
            &format!("[sources.forward]\nca_file = {}\n", f.toml("server.key"))
        ),
    );
    let got = issues(&text);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with(&format!("forward.ca_file: cannot read {}: ", shown(&missing))),
        "{got:#?}"
    );
    assert_eq!(
        got[1],
        format!(
            "sources.d.forward.ca_file: {} holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)",
            shown(&f.path("server.key"))
        )
    );
}

#[test]
fn an_https_host_must_be_verifiable() {
    let text = source("a", "https://bad_host!/a", "");
    let got = issues(&text);
    assert!(
        got.iter().any(|i| i.starts_with("sources.a.upstream: ")),
        "{got:#?}"
    );
}
