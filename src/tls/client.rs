//! The forwarder's TLS: how an `https://` upstream is verified, and the certificate presented to it.

use std::{error::Error as StdError, fmt, path::PathBuf, sync::Arc};

use rustls::{
    sign::{CertifiedKey, SingleCertAndKey},
    RootCertStore,
};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::{
    certificates, provider, read_pem,
    server::{check_pair, read_key, roots},
    Paths, TlsError, TlsFile, VERSIONS,
};

/// The files of `[forward]` (or a source's `[sources.forward]`) that shape its TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientTlsFiles {
    /// PEM CA certificates trusted besides the system's roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the upstream (mTLS), leaf first; with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// How the forwarder speaks TLS to a source's `https://` upstream: the system's roots plus an
/// optional private CA, hostname verification (rustls's), an optional client certificate.
///
/// Cheap to clone. Two values built from the same roots and file contents have the same
/// [`ClientTls::fingerprint`], so that a reload that changes nothing keeps the forwarder's pooled
/// connections. `Debug` shows the paths, never the key.
#[derive(Clone)]
pub struct ClientTls {
    files: ClientTlsFiles,
    config: Arc<rustls::ClientConfig>,
    fingerprint: [u8; 32],
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field(
                "files",
                &Paths(&[
                    ("ca_file", self.files.ca_file.as_deref()),
                    ("client_cert", self.files.client_cert.as_deref()),
                    ("client_key", self.files.client_key.as_deref()),
                ]),
            )
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Builds the client side from `native` (the system's roots, see [`ClientTls::native_roots`]) and
    /// `files`. `client_cert` and `client_key` go together; the caller checks that both or neither
    /// are set. Every problem found is returned, each naming its file.
    pub fn build(native: &[CertificateDer<'static>], files: &ClientTlsFiles) -> Result<Self, Vec<TlsError>> {
        let provider = provider();
        let mut errors = Vec::new();
        let mut digest = Sha256::new();
        let mut store = RootCertStore::empty();
        // The system's bundle holds a few certificates webpki cannot use as anchors; they are skipped.
        let _ = store.add_parsable_certificates(native.iter().cloned());
        for cert in native {
            digest.update((cert.len() as u64).to_be_bytes());
            digest.update(cert);
        }
        digest.update(b"ca_file");
        if let Some(path) = &files.ca_file {
            match read_pem(TlsFile::CaFile, path) {
                Ok(bytes) => {
                    digest.update(&bytes);
                    if let Err(e) = roots(TlsFile::CaFile, path, &mut store) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let mut certified = None;
        digest.update(b"client_cert");
        if let (Some(cert_path), Some(key_path)) = (&files.client_cert, &files.client_key) {
            let certs = read_pem(TlsFile::ClientCert, cert_path).and_then(|bytes| {
                digest.update(&bytes);
                certificates(TlsFile::ClientCert, cert_path, &bytes)
            });
            // The key is hashed too, so that a rotated key is picked up; the digest is only ever
            // compared, never shown.
            let key = read_pem(TlsFile::ClientKey, key_path).and_then(|bytes| {
                digest.update(&bytes);
                read_key(TlsFile::ClientKey, key_path, &provider)
            });
            match (certs, key) {
                (Ok(certs), Ok(key)) => {
                    let pair = CertifiedKey::new(certs, key);
                    match check_pair(&pair, TlsFile::ClientKey, key_path, cert_path) {
                        Ok(()) => certified = Some(pair),
                        Err(e) => errors.push(e),
                    }
                }
                (certs, key) => errors.extend(certs.err().into_iter().chain(key.err())),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let config_err = |e: rustls::Error| {
            vec![TlsError::Config {
                file: TlsFile::CaFile,
                path: files.ca_file.clone().unwrap_or_default(),
                reason: e.to_string(),
            }]
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(config_err)?
            .with_root_certificates(store);
        let config = match certified {
            Some(pair) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(pair))),
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            files: files.clone(),
            config: Arc::new(config),
            fingerprint: digest.finalize().into(),
        })
    }

    /// The system's trusted CA certificates, for [`ClientTls::build`] (rustls-native-certs:
    /// `SSL_CERT_FILE`, `SSL_CERT_DIR`, or the distribution's bundle). Certificates that cannot be
    /// read are left out; the result may be empty.
    pub fn native_roots() -> Vec<CertificateDer<'static>> {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!(%error, "a system CA certificate could not be loaded");
        }
        found.certs
    }

    /// The files it was built from.
    pub fn files(&self) -> &ClientTlsFiles {
        &self.files
    }

    /// Whether a client certificate is presented.
    pub fn presents_client_cert(&self) -> bool {
        self.files.client_cert.is_some()
    }

    /// A digest of everything it was built from (roots, CA, client certificate and key).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The rustls configuration (ALPN is set by the connector).
    pub(crate) fn rustls(&self) -> rustls::ClientConfig {
        (*self.config).clone()
    }
}

/// If `err` or one of its causes is a TLS failure (a handshake or certificate error, a TLS alert, a
/// host name that cannot be verified), what it says; else `None`.
///
/// `std::io::Error::source` skips the error it wraps, so each `io::Error` is looked into with
/// `get_ref`: tokio-rustls reports rustls errors as `io::Error`s around them.
pub fn is_tls_failure(err: &(dyn StdError + 'static)) -> Option<String> {
    // Bounded: an error chain is short, and this guards against a cycle.
    let mut next = Some(err);
    for _ in 0..32 {
        let e = next?;
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if e.downcast_ref::<rustls_pki_types::InvalidDnsNameError>()
            .is_some()
        {
            return Some("the upstream's host is not a valid DNS name".into());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                let inner: &(dyn StdError + 'static) = inner;
                if let Some(found) = is_tls_failure(inner) {
                    return Some(found);
                }
            }
        }
        next = e.source();
    }
    None
}
