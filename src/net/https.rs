//! The agent's one way to make an HTTPS client: TLS roots and a client certificate read
//! from node files, rustls with the aws-lc-rs provider given explicitly, no proxy, no
//! redirects, per-phase timeouts, and the handshake stage that tells a hanging
//! handshake from a hanging connect. The cfssl client and the restart lock's etcd and
//! FleetLock clients are built here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use ureq::tls::{Certificate, ClientCert};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{Connector, RustlsConnector, TcpConnector};
use zeroize::Zeroizing;

use super::handshake::TlsStage;
use crate::node::NodeRoot;
use crate::pki::{self, CertFacts, PkiError};

/// A TLS file that cannot be used: the file and what is wrong, never a key's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Pem { path: PathBuf, source: PkiError },
    #[error("{}: no CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not a PEM private key", path.display())]
    NotAKey { path: PathBuf },
    /// rustls refuses the certificate or key as a client credential (an X.509 v1
    /// certificate, a key that does not match, an unsupported key type).
    #[error("{}: not usable as a TLS client certificate: {reason}", path.display())]
    ClientCertRefused { path: PathBuf, reason: String },
}

/// Whether rustls (with the aws-lc-rs provider) accepts `chain` and the PEM key as a
/// client credential. Checked before the agent is built: ureq builds its rustls
/// configuration at the first connection and panics on a credential rustls refuses.
pub fn rustls_accepts(chain: &[Certificate<'_>], key_pem: &[u8]) -> Result<(), CredentialRefused> {
    rustls_check(chain, key_pem).map_err(CredentialRefused)
}

/// Why rustls refuses a client credential (its words; never the key).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialRefused(String);

fn rustls_check(chain: &[Certificate<'_>], key_pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| e.to_string())?;
    let chain: Vec<CertificateDer<'static>> = chain
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_client_auth_cert(chain, key)
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The certificates of a node PEM file (TLS roots, client chain); at least one.
pub fn read_certificates(root: &NodeRoot, path: &Path) -> Result<Vec<CertFacts>, TlsFileError> {
    let (shown, bytes) = root.read_file(path).map_err(|e| TlsFileError::Read {
        path: e.path,
        reason: e.problem.to_string(),
    })?;
    let pem = |source| TlsFileError::Pem {
        path: shown.clone(),
        source,
    };
    let blocks = pki::parse_pem(&bytes).map_err(pem)?;
    let certs = pki::certificates(&blocks).map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate { path: shown });
    }
    Ok(certs)
}

/// The certificates of a node PEM file as TLS roots.
pub fn read_roots(root: &NodeRoot, path: &Path) -> Result<Vec<Certificate<'static>>, TlsFileError> {
    Ok(read_certificates(root, path)?
        .iter()
        .map(|c| Certificate::from_der(&c.der).to_owned())
        .collect())
}

/// A client certificate chain and its key, from node files. The key's bytes are wiped
/// once parsed.
pub fn read_client_cert(
    root: &NodeRoot,
    cert: &Path,
    key: &Path,
) -> Result<ClientCert, TlsFileError> {
    let chain: Vec<Certificate<'static>> = read_roots(root, cert)?;
    let (shown, bytes) = root.read_file(key).map_err(|e| TlsFileError::Read {
        path: e.path,
        reason: e.problem.to_string(),
    })?;
    let bytes = Zeroizing::new(bytes);
    let key = ureq::tls::PrivateKey::from_pem(&bytes).map_err(|_| TlsFileError::NotAKey {
        path: shown.clone(),
    })?;
    rustls_accepts(&chain, &bytes).map_err(|e| TlsFileError::ClientCertRefused {
        path: cert.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

/// How an agent made by [`https_agent`] behaves.
pub struct AgentOptions {
    /// Refuse `http://` URLs.
    pub https_only: bool,
    pub connect_timeout_seconds: u64,
    /// The whole request, connect to last byte.
    pub timeout_seconds: u64,
}

/// An HTTP agent trusting exactly `roots`, presenting `client` when given. HTTP error
/// statuses are answers, not errors: the caller reads their bodies.
pub fn https_agent(
    roots: Vec<Certificate<'static>>,
    client: Option<ClientCert>,
    o: &AgentOptions,
) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .client_cert(client)
        .build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .https_only(o.https_only)
        // A request goes where it is configured: no proxy from the environment, no
        // redirects (which could downgrade to http or leave the trusted host).
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(StdDuration::from_secs(o.connect_timeout_seconds)))
        .timeout_global(Some(StdDuration::from_secs(o.timeout_seconds)))
        .user_agent(format!("cert-rotator/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build();
    // ureq's own chain, minus the proxy stages (no proxy is used), with the TLS stage
    // wrapped so that a hanging handshake is reported as one.
    let connector = ().chain(TcpConnector::default()).chain(TlsStage {
        inner: RustlsConnector::default(),
        connect_timeout_seconds: o.connect_timeout_seconds,
        timeout_seconds: o.timeout_seconds,
    });
    ureq::Agent::with_parts(config, connector, DefaultResolver::default())
}
