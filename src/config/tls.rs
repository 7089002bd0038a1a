//! The TLS keys: `[server.tls]`, `[admin.tls]`, and the `ca_file`, `client_cert` and `client_key` of
//! `[forward]` and `[sources.forward]`. The files are read and checked here, at every load and
//! reload, through [`crate::tls`]; each problem is keyed by the file's config key.

use std::{collections::HashMap, sync::Arc};

use http::Uri;
use rustls_pki_types::{CertificateDer, ServerName};

use super::{
    raw::{RawForward, RawForwardOverride, RawTls},
    validate::{without_credentials, Issues},
};
use crate::tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles, TlsError, TlsFile};

/// A listener's `tls` table (`prefix` is `server.tls` or `admin.tls`), read and checked.
pub(super) fn listener(prefix: &str, raw: &RawTls, issues: &mut Issues) -> Option<ServerTls> {
    let files = ServerTlsFiles {
        cert: raw.cert.clone(),
        key: raw.key.clone(),
        client_ca: raw.client_ca.clone(),
    };
    ServerTls::load(files)
        .map_err(|errors| {
            for e in errors {
                issues.push(format!("{prefix}.{}", e.file().key()), e.to_string());
            }
        })
        .ok()
}

/// Builds the forwarder's TLS settings of one load: the system's roots are read once, when first
/// needed, and each distinct set of files is read and checked once.
#[derive(Default)]
pub(super) struct ClientTlsBuilder {
    native: Option<Vec<CertificateDer<'static>>>,
    /// `None`: the set failed, and its problems were reported.
    built: HashMap<ClientTlsFiles, Option<Arc<ClientTls>>>,
}

/// Where a file of a source's set comes from, for the key of its problems.
#[derive(Clone, Copy)]
struct Origin {
    /// `ca_file` is the source's own.
    ca_file: bool,
    /// `client_cert` and `client_key` are the source's own.
    client: bool,
}

impl ClientTlsBuilder {
    fn native(&mut self) -> &[CertificateDer<'static>] {
        self.native.get_or_insert_with(ClientTls::native_roots)
    }

    /// Checks the `[forward]` files: `client_cert` and `client_key` together, and every set file
    /// readable and valid, whether or not an `https://` upstream uses them yet.
    pub(super) fn defaults(&mut self, raw: &RawForward, issues: &mut Issues) {
        // A half pair is reported, and the CA checked all the same.
        let paired = pair(
            "forward",
            raw.client_cert.is_some(),
            raw.client_key.is_some(),
            issues,
        );
        let files = ClientTlsFiles {
            ca_file: raw.ca_file.clone(),
            client_cert: raw.client_cert.clone().filter(|_| paired),
            client_key: raw.client_key.clone().filter(|_| paired),
        };
        if files != ClientTlsFiles::default() {
            let origin = Origin {
                ca_file: false,
                client: false,
            };
            self.build("", files, origin, issues);
        }
    }

    /// A source's TLS for `upstream`: `None` for an `http://` upstream, else its `[sources.forward]`
    /// files over the `[forward]` ones (`client_cert` and `client_key` are overridden together).
    /// `Err` after reporting a problem.
    pub(super) fn source(
        &mut self,
        label: &str,
        upstream: &Uri,
        own: &RawForwardOverride,
        defaults: &RawForward,
        issues: &mut Issues,
    ) -> Result<Option<Arc<ClientTls>>, ()> {
        let prefix = format!("{label}.forward");
        if !pair(
            &prefix,
            own.client_cert.is_some(),
            own.client_key.is_some(),
            issues,
        ) {
            return Err(());
        }
        if upstream.scheme_str() != Some("https") {
            let mut ok = true;
            for (key, set) in [
                ("ca_file", own.ca_file.is_some()),
                ("client_cert", own.client_cert.is_some()),
            ] {
                if set {
                    issues.push(
                        format!("{prefix}.{key}"),
                        format!(
                            "is set, but upstream \"{}\" is not https:// and never uses it \
                             (expected an https:// upstream, or no {key})",
                            without_credentials(upstream)
                        ),
                    );
                    ok = false;
                }
            }
            return if ok { Ok(None) } else { Err(()) };
        }
        let host = upstream.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if ServerName::try_from(host).is_err() {
            issues.push(
                format!("{label}.upstream"),
                format!(
                    "\"{upstream}\": the host {host:?} is not a DNS name or IP address a certificate \
                     can be verified for (expected e.g. \"https://app.internal:8443/hooks\")"
                ),
            );
            return Err(());
        }
        let origin = Origin {
            ca_file: own.ca_file.is_some(),
            client: own.client_cert.is_some(),
        };
        let (client_cert, client_key) = if origin.client {
            (own.client_cert.clone(), own.client_key.clone())
        } else {
            (defaults.client_cert.clone(), defaults.client_key.clone())
        };
        let files = ClientTlsFiles {
            ca_file: own.ca_file.clone().or_else(|| defaults.ca_file.clone()),
            client_cert,
            client_key,
        };
        if files.ca_file.is_none() && self.native().is_empty() {
            issues.push(
                format!("{label}.upstream"),
                format!(
                    "\"{upstream}\" cannot be verified: no CA certificates were found on this system \
                     (expected forward.ca_file, or the system's CA bundle, e.g. the ca-certificates package)"
                ),
            );
            return Err(());
        }
        self.build(label, files, origin, issues).map(Some).ok_or(())
    }

    fn build(
        &mut self,
        label: &str,
        files: ClientTlsFiles,
        origin: Origin,
        issues: &mut Issues,
    ) -> Option<Arc<ClientTls>> {
        if let Some(built) = self.built.get(&files) {
            return built.clone();
        }
        let built = match ClientTls::build(self.native(), &files) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(errors) => {
                for e in errors {
                    let own = match e.file() {
                        TlsFile::CaFile => origin.ca_file,
                        _ => origin.client,
                    };
                    let key = if own {
                        format!("{label}.forward.{}", e.file().key())
                    } else {
                        format!("forward.{}", e.file().key())
                    };
                    push_once(issues, key, &e);
                }
                None
            }
        };
        self.built.insert(files, built.clone());
        built
    }
}

/// Whether `client_cert` and `client_key` under `prefix` are both set or both unset; reports if not.
fn pair(prefix: &str, cert: bool, key: bool, issues: &mut Issues) -> bool {
    match (cert, key) {
        (true, false) => issues.push(
            format!("{prefix}.client_key"),
            "is missing: client_cert is set (expected client_cert and client_key together)",
        ),
        (false, true) => issues.push(
            format!("{prefix}.client_cert"),
            "is missing: client_key is set (expected client_cert and client_key together)",
        ),
        _ => return true,
    }
    false
}

/// A problem of a `[forward]` file is reported once, however many sets of files share it.
fn push_once(issues: &mut Issues, key: String, e: &TlsError) {
    let message = e.to_string();
    if !issues.0.iter().any(|i| i.key == key && i.message == message) {
        issues.push(key, message);
    }
}

#[cfg(test)]
mod tests;
