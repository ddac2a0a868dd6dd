//! The CA edge: who signs a renewed certificate.
//!
//! [`CertificateAuthority`] is the seam; [`LocalCa`] signs with a CA key on this node (a
//! control plane holds ca.key, front-proxy-ca.key, etcd/ca.key). A remote signer for
//! nodes without CA keys implements the same trait. The private key of the target never
//! crosses this seam except as a public key (local) or a CSR (remote).

pub mod remote;

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::node::NodeRoot;
use crate::pki::x509::{resign, Issuer, Reissue};
use crate::pki::{self, CertFacts, PrivateKey};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    Refused(String),
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
}

pub trait CertificateAuthority {
    /// A short description for logs and errors (`ca (/etc/kubernetes/pki/ca.crt)`).
    fn describe(&self) -> String;
    /// The CA's certificate, when known: for capping validity and verifying results.
    fn certificate(&self) -> Option<&CertFacts>;
    /// Signs and returns the new certificate's DER.
    fn sign(&self, req: &SigningRequest<'_>) -> Result<Vec<u8>, CaError>;
}

/// A CA whose key is on this node.
pub struct LocalCa {
    name: String,
    cert_path: PathBuf,
    cert: CertFacts,
    key: PrivateKey,
}

impl LocalCa {
    /// Loads and checks a CA: its certificate must be a CA, currently valid, and the key
    /// must belong to it. Paths are node paths under `root`.
    pub fn load(
        root: &NodeRoot,
        name: &str,
        cert_path: &Path,
        key_path: &Path,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let invalid = |path: &Path, message: String| CaError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let bytes = root
            .read(cert_path)
            .map_err(|e| invalid(cert_path, format!("cannot read CA certificate: {e}")))?;
        let blocks = pki::parse_pem(&bytes).map_err(|e| invalid(cert_path, e.to_string()))?;
        let cert = pki::certificates(&blocks)
            .map_err(|e| invalid(cert_path, e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| invalid(cert_path, "no CERTIFICATE block".into()))?;
        if !cert.is_ca {
            return Err(invalid(
                cert_path,
                "is not a CA certificate (CA:FALSE)".into(),
            ));
        }
        if cert.not_after <= now {
            return Err(invalid(
                cert_path,
                format!(
                    "CA certificate expired on {}: renew the CA first (kubeadm certs renew cannot do it either); leaves signed now would be invalid",
                    crate::timefmt::rfc3339(cert.not_after)
                ),
            ));
        }
        let key_bytes = root
            .read(key_path)
            .map_err(|e| invalid(key_path, format!("cannot read CA key: {e}")))?;
        let key = PrivateKey::from_pem(&key_bytes).map_err(|e| invalid(key_path, e.to_string()))?;
        if !key.matches(&cert) {
            return Err(invalid(
                key_path,
                format!(
                    "CA key does not match CA certificate {}",
                    cert_path.display()
                ),
            ));
        }
        Ok(LocalCa {
            name: name.to_string(),
            cert_path: cert_path.to_path_buf(),
            cert,
            key,
        })
    }
}

impl CertificateAuthority for LocalCa {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.cert_path.display())
    }

    fn certificate(&self) -> Option<&CertFacts> {
        Some(&self.cert)
    }

    fn sign(&self, req: &SigningRequest<'_>) -> Result<Vec<u8>, CaError> {
        if !req.switch_issuer && !req.old.is_signed_by(&self.cert) {
            return Err(CaError::Refused(format!(
                "{}: not signed by {} (issuer {}); renewing with this CA would break trust",
                req.target,
                self.describe(),
                req.old.issuer
            )));
        }
        resign(
            &Reissue {
                old_der: &req.old.der,
                new_key: req.key,
                not_before: req.not_before,
                not_after: req.not_after,
            },
            Some(&Issuer {
                cert: &self.cert,
                key: &self.key,
            }),
        )
        .map_err(|e| CaError::Refused(format!("{}: signing failed: {e}", req.target)))
    }
}
