//! Certificates made at test time (rcgen), and a TLS client that keeps one connection open.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Reply2;

/// Any error of a TLS client attempt.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A certificate authority.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate issued by a [`Ca`], with its key.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `127.0.0.1` (server or client), valid for 90 days.
    pub fn issue(&self) -> Pair {
        self.issue_until(time::OffsetDateTime::now_utc() + time::Duration::days(90))
    }

    /// A certificate for `127.0.0.1` whose validity ends at `not_after`.
    pub fn issue_until(&self, not_after: time::OffsetDateTime) -> Pair {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        params.not_before = not_after - time::Duration::days(365);
        params.not_after = not_after;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("a CA certificate");
        roots
    }
}

impl Pair {
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.der.clone())]
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("a key")
    }

    /// Writes `name.pem` and `name.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    /// A server config for an app (a [`super::TestSink`]) with this certificate, offering `alpn`,
    /// and requiring client certificates from `client_ca` if given.
    pub fn server_config(&self, alpn: &[&[u8]], client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder();
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(Arc::new(ca.roots()))
                    .build()
                    .expect("verifier"),
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.chain(), self.key())
            .expect("server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Writes `text` to `dir/name`; returns the path as a TOML string.
pub fn write_toml_path(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    toml_path(&path)
}

/// `path` as a TOML string.
pub fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A client config trusting `ca`, offering `alpn`, presenting `client` if given.
pub fn client_config(ca: &Ca, alpn: &[&[u8]], client: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder().with_root_certificates(ca.roots());
    let mut config = match client {
        Some(pair) => builder
            .with_client_auth_cert(pair.chain(), pair.key())
            .expect("client config"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One TLS connection to a listener, kept open across requests.
pub struct TlsConn {
    sender: Sender,
    /// `127.0.0.1:port`, for `Host` and `:authority`.
    authority: String,
    /// The server's leaf certificate, DER.
    pub peer_cert: Vec<u8>,
    /// HTTP/2 if the server chose `h2` through ALPN, else HTTP/1.1.
    pub version: Version,
}

impl TlsConn {
    /// Connects to `addr` and completes the handshake (the server is verified as `127.0.0.1`).
    pub async fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Self, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        Self::open_on(tcp, addr, config).await
    }

    /// Completes the handshake on `tcp`, a connection to `addr` that may have sent bytes already (a
    /// PROXY protocol header).
    pub async fn open_on(
        tcp: TcpStream,
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, BoxError> {
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        let (_, session) = tls.get_ref();
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or("no peer certificate")?;
        let h2 = session.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let (sender, version) = if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            (Sender::H2(sender), Version::HTTP_2)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            (Sender::H1(sender), Version::HTTP_11)
        };
        Ok(Self {
            sender,
            authority: addr.to_string(),
            peer_cert,
            version,
        })
    }

    /// Sends one request on this connection and reads the whole response.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: impl Into<Bytes>,
    ) -> Result<Reply2, BoxError> {
        let mut req = Request::builder().method(method).uri(path);
        if matches!(self.sender, Sender::H1(_)) {
            req = req.header("host", self.authority.as_str());
        } else {
            req = req.uri(format!("https://{}{path}", self.authority));
        }
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(body.into()))?;
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply2 {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Opens a connection, sends one request, and returns the reply (or the first error).
pub async fn tls_request(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Result<(Reply2, Version), BoxError> {
    let mut conn = TlsConn::open(addr, config).await?;
    let reply = conn.send(method, path, headers, body).await?;
    Ok((reply, conn.version))
}
