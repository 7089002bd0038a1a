//! A listener's TLS: certificate chain, key and optional client CA, checked and built into one
//! `rustls::ServerConfig`.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use rustls::{
    server::WebPkiClientVerifier,
    sign::{CertifiedKey, SingleCertAndKey},
    RootCertStore,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::{certificates, not_after, pem_problem, provider, read_pem, Paths, TlsError, TlsFile, VERSIONS};

/// ALPN protocols offered to clients, preferred first.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The files of a listener's `tls` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, RSA or SEC1) of the leaf.
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to; `None` asks for none.
    pub client_ca: Option<PathBuf>,
}

/// A listener's TLS, read from its files and checked: what a connection is accepted with.
///
/// Cheap to clone. `Debug` shows the paths and the expiry, never the key.
#[derive(Clone)]
pub struct ServerTls {
    files: ServerTlsFiles,
    config: Arc<rustls::ServerConfig>,
    not_after: SystemTime,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field(
                "files",
                &Paths(&[
                    ("cert", Some(&self.files.cert)),
                    ("key", Some(&self.files.key)),
                    ("client_ca", self.files.client_ca.as_deref()),
                ]),
            )
            .field("not_after", &httpdate::fmt_http_date(self.not_after))
            .finish()
    }
}

impl ServerTls {
    /// Reads and checks `files`: the chain holds a certificate and each parses, the key is one the
    /// provider can sign with and is the leaf's, the client CA holds certificates usable as trust
    /// anchors. Every problem found is returned, each naming its file.
    pub fn load(files: ServerTlsFiles) -> Result<Self, Vec<TlsError>> {
        let provider = provider();
        let mut errors = Vec::new();
        let certs = read_pem(TlsFile::Cert, &files.cert)
            .and_then(|bytes| certificates(TlsFile::Cert, &files.cert, &bytes))
            .map_err(|e| errors.push(e))
            .ok();
        let key = read_key(TlsFile::Key, &files.key, &provider)
            .map_err(|e| errors.push(e))
            .ok();
        let verifier = files
            .client_ca
            .as_deref()
            .map(|path| client_verifier(path, &provider))
            .transpose()
            .map_err(|e| errors.push(e))
            .ok();
        let (Some(certs), Some(key), Some(verifier)) = (certs, key, verifier) else {
            return Err(errors);
        };
        let not_after = not_after(&certs[0]);
        let certified = matching(certs, key, &files)?;
        let config_err = |e: rustls::Error| {
            vec![TlsError::Config {
                file: TlsFile::Cert,
                path: files.cert.clone(),
                reason: e.to_string(),
            }]
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(config_err)?;
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            files,
            config: Arc::new(config),
            not_after,
        })
    }

    /// The files it was read from.
    pub fn files(&self) -> &ServerTlsFiles {
        &self.files
    }

    /// The leaf certificate's `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Whether clients must present a certificate signed by `client_ca`.
    pub fn requires_client_cert(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The rustls configuration connections are accepted with.
    pub fn rustls(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }
}

/// Reads the private key at `path` and loads it with the provider.
pub(super) fn read_key(
    file: TlsFile,
    path: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<dyn rustls::sign::SigningKey>, TlsError> {
    let bytes = read_pem(file, path)?;
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            file,
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            file,
            path: path.to_owned(),
            what: pem_problem(&e),
        },
    })?;
    provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::BadKey {
            file,
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// The chain and key as one, if the key is the leaf's.
fn matching(
    certs: Vec<CertificateDer<'static>>,
    key: Arc<dyn rustls::sign::SigningKey>,
    files: &ServerTlsFiles,
) -> Result<CertifiedKey, Vec<TlsError>> {
    let certified = CertifiedKey::new(certs, key);
    check_pair(&certified, TlsFile::Key, &files.key, &files.cert).map_err(|e| vec![e])?;
    Ok(certified)
}

/// Fails if `certified`'s key is not its leaf's (`key` at `key_path` names the key file).
pub(super) fn check_pair(
    certified: &CertifiedKey,
    key: TlsFile,
    key_path: &Path,
    cert_path: &Path,
) -> Result<(), TlsError> {
    match certified.keys_match() {
        // rustls cannot tell for some key types; the handshake's own signature check then decides.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            file: key,
            path: key_path.to_owned(),
            cert: cert_path.to_owned(),
        }),
        Err(e) => Err(TlsError::BadKey {
            file: key,
            path: key_path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Trust anchors from the PEM file at `path`.
pub(super) fn roots(file: TlsFile, path: &Path, store: &mut RootCertStore) -> Result<(), TlsError> {
    let bytes = read_pem(file, path)?;
    for (i, cert) in certificates(file, path, &bytes)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| TlsError::BadCa {
            file,
            path: path.to_owned(),
            reason: format!("certificate {}: {e}", i + 1),
        })?;
    }
    Ok(())
}

/// A verifier that requires a client certificate chaining to the CA at `path`.
fn client_verifier(
    path: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut store = RootCertStore::empty();
    roots(TlsFile::ClientCa, path, &mut store)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| TlsError::BadCa {
            file: TlsFile::ClientCa,
            path: path.to_owned(),
            reason: e.to_string(),
        })
}
