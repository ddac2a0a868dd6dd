//! The CA edge: who signs a renewed certificate.
//!
//! [`CertificateAuthority`] is the seam; [`LocalCa`] (local.rs) signs with a CA key on
//! this node (a control plane holds ca.key, front-proxy-ca.key, etcd/ca.key), and
//! [`remote::RemoteCa`] asks a cfssl server for nodes without CA keys. The private key of
//! the target never crosses this seam except as a public key (local) or a CSR (remote).
//!
//! Both kinds read the CA certificate they sign with, or verify against, through
//! [`load_ca_certificate`]: one rule for "a CA certificate must be a CA and valid now".

pub mod authorities;
pub mod local;
pub mod remote;

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::node::NodeRoot;
use crate::pki::{self, CertFacts, PkiError, PrivateKey};

pub use local::LocalCa;

/// Why a CA could not be loaded or would not sign. Loading errors name the file; signing
/// errors name the target (the old certificate has no path of its own at this seam).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: cannot read CA certificate: {reason}", path.display())]
    ReadCertificate { path: PathBuf, reason: String },
    #[error("{}: cannot read CA key: {reason}", path.display())]
    ReadKey { path: PathBuf, reason: String },
    /// Not PEM, not a certificate or not a key.
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: PkiError },
    #[error("{}: no CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: is not a CA certificate (CA:FALSE)", path.display())]
    NotCa { path: PathBuf },
    #[error(
        "{}: CA certificate expired on {}: renew the CA first (kubeadm certs renew cannot do it either); leaves signed now would be invalid",
        path.display(),
        crate::timefmt::rfc3339(*not_after)
    )]
    Expired {
        path: PathBuf,
        not_after: OffsetDateTime,
    },
    #[error("{}: CA key does not match CA certificate {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    /// The old certificate was signed by another CA and no switch was asked for.
    #[error(
        "{target}: not signed by {ca} (issuer {issuer}); renewing with this CA would break trust"
    )]
    NotSignedBy {
        target: String,
        /// The CA as [`CertificateAuthority::describe`] gives it (name and path).
        ca: String,
        issuer: String,
    },
    #[error("{target}: signing failed: {source}")]
    Signing { target: String, source: PkiError },
    /// The certificates API (kubelet.crt with `[kubelet] serving = "csr"`): the CSR's
    /// exchange with the API server, or its refusal (Denied, Failed, no answer in time).
    #[error("{target}: {source}")]
    CertificatesApi {
        target: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The remote CA: the request, the exchange with cfssl, or a refused answer.
    #[error("{target}: {source}")]
    Remote {
        target: String,
        source: Box<remote::RemoteSignError>,
    },
}

/// What to sign: the old certificate's identity for a (new or reused) key.
pub struct SigningRequest<'a> {
    /// Target name, for errors and per-target signing profiles.
    pub target: &'a str,
    /// The certificate being renewed; its subject, SANs and extensions are kept.
    pub old: &'a CertFacts,
    pub key: &'a PrivateKey,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Sign even though another CA signed the old certificate: an operator's explicit
    /// choice (kubelet.crt moved from its throwaway CA to the cluster CA).
    pub switch_issuer: bool,
    /// The pass's clock: what "valid now" means for a returned certificate. A CA never
    /// reads the system clock itself, so a pass is judged at one instant.
    pub now: OffsetDateTime,
}

/// A signed certificate and what the operator must hear about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    pub der: Vec<u8>,
    /// Loud conditions the pass puts in its journal, summary and metrics, each prefixed
    /// with the target name (a remote profile that gave a shorter lifetime than asked).
    pub warnings: Vec<String>,
}

impl Signed {
    pub fn quiet(der: Vec<u8>) -> Self {
        Signed {
            der,
            warnings: Vec::new(),
        }
    }
}

pub trait CertificateAuthority {
    /// A short description for logs and errors (`ca (/etc/kubernetes/pki/ca.crt)`).
    fn describe(&self) -> String;
    /// The CA's certificate, when known: for capping validity and verifying results.
    fn certificate(&self) -> Option<&CertFacts>;
    /// Signs and returns the new certificate's DER with its warnings.
    fn sign(&self, req: &SigningRequest<'_>) -> Result<Signed, CaError>;
}

/// Loads a CA certificate (the first certificate of a node file) and checks that it is a
/// CA and valid at `now`: the certificate a local CA signs with, and the one a remote
/// CA's answers must verify against.
pub fn load_ca_certificate(
    root: &NodeRoot,
    path: &Path,
    now: OffsetDateTime,
) -> Result<CertFacts, CaError> {
    load_ca_bundle(root, path, now).map(|mut b| b.remove(0))
}

/// Every certificate of a CA file, the first checked as [`load_ca_certificate`] does. A
/// CA file may hold several (old and new during a manual CA rotation, or a chain): the
/// first is the issuing CA, whose key is beside it (kubeadm pairs them so); a leaf
/// signed by any of them is this CA's.
pub fn load_ca_bundle(
    root: &NodeRoot,
    path: &Path,
    now: OffsetDateTime,
) -> Result<Vec<CertFacts>, CaError> {
    let (_, bytes) = root.read_file(path).map_err(|e| CaError::ReadCertificate {
        path: path.to_path_buf(),
        reason: e.problem.to_string(),
    })?;
    let parse = |source| CaError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let blocks = pki::parse_pem(&bytes).map_err(parse)?;
    let bundle = pki::certificates(&blocks).map_err(parse)?;
    let cert = bundle.first().ok_or_else(|| CaError::NoCertificate {
        path: path.to_path_buf(),
    })?;
    if !cert.is_ca {
        return Err(CaError::NotCa {
            path: path.to_path_buf(),
        });
    }
    if cert.not_after <= now {
        return Err(CaError::Expired {
            path: path.to_path_buf(),
            not_after: cert.not_after,
        });
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::encode_pem;
    use crate::pki::x509::{CertTemplate, OID_CN};
    use crate::pki::{KeyAlgorithm, KeyEncoding};
    use time::Duration;

    fn write_cert(dir: &Path, name: &str, is_ca: bool, not_after: OffsetDateTime) {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let der = CertTemplate {
            subject: vec![vec![(OID_CN, "kubernetes".into())]],
            not_before: Some(not_after - Duration::days(3650)),
            not_after: Some(not_after),
            is_ca,
            ..Default::default()
        }
        .issue(&key, None)
        .unwrap();
        std::fs::write(dir.join(name), encode_pem("CERTIFICATE", &der)).unwrap();
    }

    #[test]
    fn a_ca_certificate_must_be_a_ca_and_valid_now() {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path());
        let now = OffsetDateTime::now_utc();
        write_cert(d.path(), "ca.crt", true, now + Duration::days(1));
        write_cert(d.path(), "leaf.crt", false, now + Duration::days(1));
        write_cert(d.path(), "old.crt", true, now - Duration::days(1));
        // A PEM file without a certificate (a key where the CA certificate should be).
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        std::fs::write(d.path().join("empty.crt"), key.to_pem().unwrap().as_bytes()).unwrap();
        let load = |p: &str| load_ca_certificate(&root, Path::new(p), now);
        assert!(load("/ca.crt").unwrap().is_ca);
        let e = load("/leaf.crt").unwrap_err();
        assert!(matches!(&e, CaError::NotCa { path } if path == Path::new("/leaf.crt")));
        assert_eq!(
            e.to_string(),
            "/leaf.crt: is not a CA certificate (CA:FALSE)"
        );
        let e = load("/old.crt").unwrap_err();
        assert!(matches!(e, CaError::Expired { .. }));
        assert!(e
            .to_string()
            .starts_with("/old.crt: CA certificate expired on "));
        assert!(e.to_string().contains("renew the CA first"));
        let e = load("/missing.crt").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("/missing.crt: cannot read CA certificate: "));
        assert!(matches!(
            load("/empty.crt").unwrap_err(),
            CaError::NoCertificate { .. }
        ));
        // The same check a day later: now is the caller's, not the system clock.
        let later = load_ca_certificate(&root, Path::new("/ca.crt"), now + Duration::days(2));
        assert!(matches!(later.unwrap_err(), CaError::Expired { .. }));
    }
}
