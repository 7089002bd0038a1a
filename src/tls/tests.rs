use std::{
    io,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tempfile::TempDir;

use super::*;

/// A CA, and files written under a temp dir.
struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A leaf's PEM files and its certificate's DER.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca = params.self_signed(&ca_key).expect("CA");
        Self {
            dir: TempDir::new().expect("temp dir"),
            ca,
            ca_key,
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn ca_file(&self) -> PathBuf {
        self.write("ca.pem", &self.ca.pem())
    }

    /// A leaf for 127.0.0.1 that expires at `not_after`, written as `name.pem` and `name.key`.
    fn leaf_until(&self, name: &str, not_after: time::OffsetDateTime) -> Leaf {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        params.not_after = not_after;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).expect("leaf");
        Leaf {
            cert: self.write(&format!("{name}.pem"), &cert.pem()),
            key: self.write(&format!("{name}.key"), &key.serialize_pem()),
            der: cert.der().to_vec(),
        }
    }

    fn leaf(&self, name: &str) -> Leaf {
        self.leaf_until(name, time::OffsetDateTime::now_utc() + time::Duration::days(90))
    }
}

fn files(leaf: &Leaf) -> ServerTlsFiles {
    ServerTlsFiles {
        cert: leaf.cert.clone(),
        key: leaf.key.clone(),
        client_ca: None,
    }
}

fn load_err(files: ServerTlsFiles) -> Vec<String> {
    ServerTls::load(files)
        .expect_err("invalid")
        .iter()
        .map(|e| format!("{}: {e}", e.file().key()))
        .collect()
}

#[test]
fn a_valid_pair_loads_for_tls_12_and_13_with_alpn() {
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    let tls = ServerTls::load(files(&leaf)).expect("valid");
    let config = tls.rustls();
    assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(!tls.requires_client_cert());
    let left = tls
        .not_after()
        .duration_since(SystemTime::now())
        .expect("in the future");
    assert!(left > Duration::from_secs(89 * 86400) && left <= Duration::from_secs(90 * 86400));
    let debug = format!("{tls:?}");
    assert!(
        debug.contains("server.key") && !debug.contains("PRIVATE"),
        "{debug}"
    );
}

#[test]
fn each_file_problem_names_its_file() {
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    let other = pki.leaf("other");
    let missing = pki.dir.path().join("missing.pem");

    let errors = load_err(ServerTlsFiles {
        cert: missing.clone(),
        key: missing.clone(),
        client_ca: Some(missing.clone()),
    });
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("cert: cannot read {missing:?}: ")),
        "{errors:?}"
    );
    assert!(errors[1].starts_with("key: cannot read"), "{errors:?}");
    assert!(errors[2].starts_with("client_ca: cannot read"), "{errors:?}");

    // A key where the chain should be, and a chain where the key should be.
    assert_eq!(
        load_err(ServerTlsFiles {
            cert: leaf.key.clone(),
            key: leaf.cert.clone(),
            client_ca: None,
        }),
        [
            format!(
                "cert: {:?} holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks, leaf first)",
                leaf.key
            ),
            format!(
                "key: {:?} holds no private key (expected a PEM PKCS#8, RSA or SEC1 private key)",
                leaf.cert
            ),
        ]
    );

    assert_eq!(
        load_err(ServerTlsFiles {
            cert: leaf.cert.clone(),
            key: other.key.clone(),
            client_ca: None,
        }),
        [format!(
            "key: {:?} does not match the certificate in {:?} (expected the private key of its first certificate)",
            other.key, leaf.cert
        )]
    );

    let truncated = pki.write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    assert_eq!(
        load_err(ServerTlsFiles {
            cert: truncated.clone(),
            ..files(&leaf)
        }),
        [format!(
            "cert: {truncated:?} is not a valid PEM file: a section has no END line"
        )]
    );
    let garbage = pki.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    );
    let errors = load_err(ServerTlsFiles {
        cert: garbage.clone(),
        ..files(&leaf)
    });
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(&format!(
            "cert: {garbage:?}: certificate 1 is not a valid X.509 certificate ("
        )),
        "{errors:?}"
    );

    let empty_ca = pki.write("empty-ca.pem", "");
    assert_eq!(
        load_err(ServerTlsFiles {
            client_ca: Some(empty_ca.clone()),
            ..files(&leaf)
        }),
        [format!(
            "client_ca: {empty_ca:?} holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)"
        )]
    );
}

#[test]
fn a_key_file_is_never_quoted() {
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    // A key file whose BEGIN line is malformed: the parser's error holds the line, ours does not.
    let key = pki.write("bad.key", "-----BEGIN PRIVATE KEY s3cretmaterial\nAAAA\n");
    let errors = load_err(ServerTlsFiles { key, ..files(&leaf) });
    assert_eq!(errors.len(), 1);
    assert!(!errors[0].contains("s3cretmaterial"), "{errors:?}");
}

#[test]
fn a_file_larger_than_any_pem_file_is_refused_unread() {
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    let big = pki.write("big.pem", &"A".repeat(MAX_PEM_BYTES as usize + 1));
    assert_eq!(
        load_err(ServerTlsFiles {
            cert: big.clone(),
            ..files(&leaf)
        }),
        [format!(
            "cert: {big:?} is larger than 1048576 bytes (expected a PEM file)"
        )]
    );
}

#[test]
fn a_client_ca_makes_client_certificates_required() {
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    let tls = ServerTls::load(ServerTlsFiles {
        client_ca: Some(pki.ca_file()),
        ..files(&leaf)
    })
    .expect("valid");
    assert!(tls.requires_client_cert());
}

#[test]
fn expiry_is_expired_soon_or_valid() {
    let now = SystemTime::now();
    let day = Duration::from_secs(86400);
    assert_eq!(Expiry::at(now - day, now), Expiry::Expired(day));
    assert_eq!(Expiry::at(now + day, now), Expiry::Soon(day));
    assert_eq!(
        Expiry::at(now + EXPIRY_WARNING, now),
        Expiry::Soon(EXPIRY_WARNING)
    );
    assert_eq!(
        Expiry::at(now + EXPIRY_WARNING + day, now),
        Expiry::Valid(EXPIRY_WARNING + day)
    );
}

#[test]
fn an_expiring_certificate_still_loads_and_reports_its_date() {
    let pki = Pki::new();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    let leaf = pki.leaf_until("soon", soon);
    let tls = ServerTls::load(files(&leaf)).expect("an expiring certificate is served, with a warning");
    let secs = tls
        .not_after()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    assert_eq!(secs, soon.unix_timestamp());
    assert!(matches!(
        Expiry::at(tls.not_after(), SystemTime::now()),
        Expiry::Soon(_)
    ));
    assert!(!leaf.der.is_empty());
}

#[test]
fn client_tls_fingerprints_follow_the_contents() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let client = pki.leaf("client");
    let files = ClientTlsFiles {
        ca_file: Some(ca.clone()),
        client_cert: Some(client.cert.clone()),
        client_key: Some(client.key.clone()),
    };
    let a = ClientTls::build(&[], &files).expect("valid");
    let b = ClientTls::build(&[], &files).expect("valid");
    assert_eq!(a.fingerprint(), b.fingerprint(), "same files, same contents");
    assert!(a.presents_client_cert());
    assert!(!format!("{a:?}").contains("PRIVATE"));
    // A rotated client certificate (same paths, new contents) is a new setting.
    let rotated = pki.leaf("client");
    assert_eq!(rotated.cert, client.cert);
    let c = ClientTls::build(&[], &files).expect("valid");
    assert_ne!(a.fingerprint(), c.fingerprint());
    let plain = ClientTls::build(&[], &ClientTlsFiles::default()).expect("valid");
    assert_ne!(plain.fingerprint(), a.fingerprint());

    let other = pki.leaf("other");
    let errors = ClientTls::build(
        &[],
        &ClientTlsFiles {
            client_key: Some(other.key.clone()),
            ..files
        },
    )
    .expect_err("mismatched");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file(), TlsFile::ClientKey);
}

#[test]
fn tls_failures_are_found_inside_io_errors() {
    let rustls_err = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    // As tokio-rustls and hyper-rustls report it: an io::Error around an io::Error around it.
    let nested = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, rustls_err));
    assert_eq!(
        is_tls_failure(&nested).as_deref(),
        Some("invalid peer certificate: UnknownIssuer")
    );
    let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
    assert_eq!(is_tls_failure(&refused), None);
}
