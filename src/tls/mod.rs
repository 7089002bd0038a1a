//! TLS with rustls (the `ring` provider, no OpenSSL): the listeners' server side and the forwarder's
//! client side.
//!
//! - [`ServerTls`]: a listener's certificate chain, key and optional client CA (mTLS), read from PEM
//!   files and checked (a certificate in the file, a key that matches it, a CA that parses), built
//!   into one `rustls::ServerConfig` for TLS 1.2 and 1.3 with ALPN `h2` and `http/1.1`. `config`
//!   builds it at load and on every reload; the accept loop reads the current one per connection.
//! - [`ClientTls`]: how the forwarder verifies an `https://` upstream (the system's roots plus an
//!   optional private CA) and the client certificate it may present.
//!
//! Errors ([`TlsError`]) say which file ([`TlsFile`]) and what is wrong with it, never what a key file
//! holds; `config` turns them into issues keyed by the file's config key.
//!
//! This module names no config type: it sits below `config`, beside `forward`.

use std::{
    fmt,
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rustls::crypto::CryptoProvider;
use rustls_pki_types::{pem::PemObject, CertificateDer};

mod client;
mod server;

pub use client::{is_tls_failure, ClientTls, ClientTlsFiles};
pub use server::{ServerTls, ServerTlsFiles};

/// The largest PEM file read: a chain or a CA bundle is a few KiB, the system's bundle about 200 KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A certificate that expires within this long is reported at start and on every reload.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Which configured file a [`TlsError`] is about; [`TlsFile::key`] is its config key's last part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// A listener's certificate chain (`cert`).
    Cert,
    /// A listener's private key (`key`).
    Key,
    /// The CA that signs accepted client certificates (`client_ca`).
    ClientCa,
    /// The CA trusted for upstreams besides the system's (`ca_file`).
    CaFile,
    /// The certificate presented to upstreams (`client_cert`).
    ClientCert,
    /// The key of `client_cert` (`client_key`).
    ClientKey,
}

impl TlsFile {
    /// The config key's last part: `cert`, `key`, `client_ca`, `ca_file`, `client_cert`, `client_key`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Cert => "cert",
            Self::Key => "key",
            Self::ClientCa => "client_ca",
            Self::CaFile => "ca_file",
            Self::ClientCert => "client_cert",
            Self::ClientKey => "client_key",
        }
    }
}

/// Why TLS material cannot be used. The message names the path and what is wrong, never a key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {path:?}: {source}")]
    Read {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any PEM file of this kind.
    #[error("{path:?} is larger than {MAX_PEM_BYTES} bytes (expected a PEM file)")]
    TooLarge {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
    },
    /// The file is not well-formed PEM.
    #[error("{path:?} is not a valid PEM file: {what}")]
    Pem {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong, without the file's content.
        what: &'static str,
    },
    /// The file holds no certificate.
    #[error(
        "{path:?} holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks{})",
        if *file == TlsFile::Cert || *file == TlsFile::ClientCert { ", leaf first" } else { "" }
    )]
    NoCertificate {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
    },
    /// A certificate in the file does not parse.
    #[error("{path:?}: certificate {index} is not a valid X.509 certificate ({reason})")]
    BadCertificate {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// Its position in the file, from 1.
        index: usize,
        /// The parser's reason.
        reason: String,
    },
    /// The file holds no private key.
    #[error("{path:?} holds no private key (expected a PEM PKCS#8, RSA or SEC1 private key)")]
    NoKey {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
    },
    /// The key parses as PEM but the provider cannot use it.
    #[error("{path:?}: the private key is not usable ({reason}; expected an RSA, ECDSA P-256/P-384 or Ed25519 key)")]
    BadKey {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// rustls's reason, which holds no key material.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("{path:?} does not match the certificate in {cert:?} (expected the private key of its first certificate)")]
    KeyMismatch {
        /// Which file (the key).
        file: TlsFile,
        /// The key's path.
        path: PathBuf,
        /// The certificate's path.
        cert: PathBuf,
    },
    /// A CA certificate cannot be used as a trust anchor, or the verifier cannot be built.
    #[error("{path:?} cannot be used as a CA ({reason})")]
    BadCa {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the assembled configuration (for example no protocol version in common with
    /// the provider); not expected with the files checked.
    #[error("{path:?}: rustls refused the configuration ({reason})")]
    Config {
        /// The file the configuration was being built for.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

impl TlsError {
    /// The file the error is about.
    pub fn file(&self) -> TlsFile {
        match self {
            Self::Read { file, .. }
            | Self::TooLarge { file, .. }
            | Self::Pem { file, .. }
            | Self::NoCertificate { file, .. }
            | Self::BadCertificate { file, .. }
            | Self::NoKey { file, .. }
            | Self::BadKey { file, .. }
            | Self::KeyMismatch { file, .. }
            | Self::BadCa { file, .. }
            | Self::Config { file, .. } => *file,
        }
    }
}

/// The crypto provider every TLS config of the gateway uses.
///
/// *ring*, not aws-lc-rs: it builds with a C compiler alone (aws-lc-sys wants CMake or a prebuilt
/// library), and the issue allows either. rustls 0.23.48 deprecates it because it offers no
/// post-quantum key exchange (X25519MLKEM768); moving to aws-lc-rs is a change of this function
/// and the Cargo features only.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions the gateway speaks, both sides.
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Reads a PEM file, at most [`MAX_PEM_BYTES`].
fn read_pem(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read {
        file,
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            file,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// What is wrong with a PEM file, without quoting it (a key file's lines are secret).
fn pem_problem(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a section has no END line",
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        Error::Base64Decode(_) => "a section is not valid base64",
        Error::SectionTooLarge => "a section is too large",
        _ => "it cannot be parsed",
    }
}

/// Every certificate in `bytes` (the content of `path`), in order; each must parse as X.509.
fn certificates(file: TlsFile, path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        let cert = item.map_err(|e| TlsError::Pem {
            file,
            path: path.to_owned(),
            what: pem_problem(&e),
        })?;
        if let Err(e) = x509_parser::parse_x509_certificate(&cert) {
            return Err(TlsError::BadCertificate {
                file,
                path: path.to_owned(),
                index: certs.len() + 1,
                reason: e.to_string(),
            });
        }
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            file,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The end of a certificate's validity (its `notAfter`). `cert` has been parsed by [`certificates`].
fn not_after(cert: &CertificateDer<'_>) -> SystemTime {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, parsed)) => {
            let secs = parsed.validity().not_after.timestamp();
            if secs >= 0 {
                UNIX_EPOCH + Duration::from_secs(secs as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            }
        }
        // Not reached: `certificates` parsed it already. An unknown expiry is reported as expired.
        Err(_) => UNIX_EPOCH,
    }
}

/// A certificate's expiry as reported: whether it has passed, is close, or is far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `notAfter` has passed, this long ago.
    Expired(Duration),
    /// `notAfter` is within [`EXPIRY_WARNING`], this long from now.
    Soon(Duration),
    /// Further away than [`EXPIRY_WARNING`].
    Valid(Duration),
}

impl Expiry {
    /// How `not_after` looks at `now`.
    pub fn at(not_after: SystemTime, now: SystemTime) -> Self {
        match not_after.duration_since(now) {
            Err(past) => Self::Expired(past.duration()),
            Ok(left) if left <= EXPIRY_WARNING => Self::Soon(left),
            Ok(left) => Self::Valid(left),
        }
    }
}

/// Seconds since the Unix epoch of `t` (negative before it), for the expiry gauge.
fn unix_secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Reports a listener's certificate: sets `hookgate_tls_certificate_expiry_seconds{listener}` to its
/// `notAfter` (Unix seconds) and logs a WARN if it has expired or expires within [`EXPIRY_WARNING`].
/// Called at start and on every reload.
pub fn report_expiry(listener: &'static str, tls: &ServerTls, now: SystemTime) {
    metrics::gauge!(crate::telemetry::TLS_CERT_EXPIRY, "listener" => listener)
        .set(unix_secs(tls.not_after()));
    let cert = tls.files().cert.display().to_string();
    let not_after = httpdate::fmt_http_date(tls.not_after());
    match Expiry::at(tls.not_after(), now) {
        Expiry::Expired(ago) => tracing::warn!(
            listener,
            %cert,
            %not_after,
            expired_for = %humantime::format_duration(whole_minutes(ago)),
            "the TLS certificate has expired: clients will refuse it"
        ),
        Expiry::Soon(left) => tracing::warn!(
            listener,
            %cert,
            %not_after,
            expires_in = %humantime::format_duration(whole_minutes(left)),
            "the TLS certificate expires soon: replace it and reload"
        ),
        Expiry::Valid(_) => tracing::debug!(listener, %cert, %not_after, "TLS certificate loaded"),
    }
}

fn whole_minutes(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() / 60 * 60)
}

/// Paths for `Debug`, never the material.
struct Paths<'a>(&'a [(&'static str, Option<&'a Path>)]);

impl fmt::Debug for Paths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.0 {
            if let Some(v) = v {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests;
