//! What `ca import` checks beyond "the CA this node trusts": that every client will
//! accept what it installs, and that a node holding the CA key keeps kubeadm's layout.
//!
//! - Each certificate is what a verifier accepts as an issuer: CA:TRUE, a keyUsage (if
//!   any) with keyCertSign, valid now. openssl and Go refuse the chain otherwise, and an
//!   import restarts everything that holds the CA: a certificate no client accepts
//!   would take the node down ("certificate is not yet valid", "key usage does not
//!   include certificate signing").
//! - A file holds at most [`MAX_BUNDLE`] certificates: a CA bundle in a rotation holds
//!   two, and every one of them is written into the CA file and every kubeconfig.
//! - On a node with the CA key, the CA file's first certificate is the one the key
//!   signs with (kubeadm pairs them), and the controller-manager's
//!   `--cluster-signing-cert-file` names a file of exactly one certificate: a bundle is
//!   installed only where neither breaks (`ca rotate trust` moves the signer flag to a
//!   single-certificate file first; an import does not edit manifests).

use der::Decode;
use time::OffsetDateTime;
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};

use super::exchange::Import;
use super::renew::read_key;
use super::AuthorityError;
use crate::config::Settings;
use crate::inventory::anchors::AuthorityCopies;
use crate::node::NodeRoot;
use crate::pki::CertFacts;
use std::path::Path;

/// The most certificates a CA file to import may hold.
pub const MAX_BUNDLE: usize = 8;

/// The file holds at most [`MAX_BUNDLE`] certificates.
pub fn check_count(file: &Path, count: usize) -> Result<(), AuthorityError> {
    if count > MAX_BUNDLE {
        return Err(AuthorityError::ImportTooMany {
            file: file.to_path_buf(),
            count,
            max: MAX_BUNDLE,
        });
    }
    Ok(())
}

/// Whether a certificate's keyUsage lets it sign certificates, as a verifier reads it:
/// no keyUsage at all allows every use; an unparsable one allows none.
fn may_sign_certificates(c: &CertFacts) -> bool {
    let Ok(cert) = x509_cert::Certificate::from_der(&c.der) else {
        return false;
    };
    match cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|x| x.extn_id == der::oid::db::rfc5280::ID_CE_KEY_USAGE)
    {
        None => true,
        Some(x) => KeyUsage::from_der(x.extn_value.as_bytes())
            .is_ok_and(|ku| ku.0.contains(KeyUsages::KeyCertSign)),
    }
}

/// `c` is a CA certificate a client accepts as an issuer at `now`.
pub fn check_usable(file: &Path, c: &CertFacts, now: OffsetDateTime) -> Result<(), AuthorityError> {
    let file = file.to_path_buf();
    if !c.is_ca {
        return Err(AuthorityError::ImportNotCa {
            file,
            subject: c.subject.clone(),
        });
    }
    if !may_sign_certificates(c) {
        return Err(AuthorityError::ImportNoKeyCertSign {
            file,
            subject: c.subject.clone(),
        });
    }
    if c.not_before > now {
        return Err(AuthorityError::ImportNotYetValid {
            file,
            subject: c.subject.clone(),
            not_before: c.not_before,
        });
    }
    if c.not_after <= now {
        return Err(AuthorityError::ImportExpired {
            file,
            subject: c.subject.clone(),
            not_after: c.not_after,
        });
    }
    Ok(())
}

/// On a node with the CA's key: the import keeps kubeadm's invariants, or is refused.
pub fn check_key_node(
    root: &NodeRoot,
    settings: &Settings,
    ca: &AuthorityCopies,
    imp: &Import,
    file: &Path,
) -> Result<(), AuthorityError> {
    if !ca.has_key || imp.changes.is_empty() {
        return Ok(());
    }
    let key = read_key(root, ca)?;
    if let Some(first) = imp.certs.first().filter(|c| !key.matches(c)) {
        return Err(AuthorityError::ImportKeyNotFirst {
            file: file.to_path_buf(),
            name: ca.name.clone(),
            subject: first.subject.clone(),
            key: ca.key_path.clone(),
        });
    }
    if imp.certs.len() > 1 {
        let manifest = settings
            .kubeadm
            .manifests_dir
            .join("kube-controller-manager.yaml");
        if let Ok((_, bytes)) = root.read_file(&manifest) {
            let flag = super::rotation::files::signer_flag(&manifest, &bytes).map_err(|e| {
                AuthorityError::ImportSignerFlag {
                    file: file.to_path_buf(),
                    name: ca.name.clone(),
                    manifest: manifest.clone(),
                    why: e.to_string(),
                }
            })?;
            if flag.is_some_and(|v| Path::new(&v) == ca.cert_path) {
                return Err(AuthorityError::ImportSignerFlag {
                    file: file.to_path_buf(),
                    name: ca.name.clone(),
                    manifest,
                    why: format!(
                        "its --cluster-signing-cert-file names {}, which must hold exactly one certificate, and the file holds {}",
                        ca.cert_path.display(),
                        imp.certs.len()
                    ),
                });
            }
        }
    }
    Ok(())
}
