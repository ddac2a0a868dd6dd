//! Renewing a CA with its own key: the same subject, key and key identifiers, CA
//! extensions kept bit for bit, a new random serial and a new validity. Every leaf the
//! CA signed keeps verifying (same key, same subject), so no leaf is re-issued; only
//! the copies of the CA certificate change. Pure except [`read_key`].

use time::{Duration, OffsetDateTime};

use super::AuthorityError;
use crate::inventory::anchors::{same_ca, AuthorityCopies};
use crate::inventory::NodeRole;
use crate::model::{Component, FileChange};
use crate::node::NodeRoot;
use crate::pki::{self, x509, CertFacts, PrivateKey};

/// How far before now the new certificate starts, as kubeadm backdates the
/// certificates it makes (`CertificateBackdate`): a node whose clock is a little behind
/// accepts it at once.
pub const BACKDATE: Duration = Duration::minutes(5);

/// One CA's renewal, computed and not yet written.
#[derive(Clone, Debug)]
pub struct Renewal {
    pub name: String,
    pub old: CertFacts,
    pub new: CertFacts,
    /// Every copy that changes: the CA file and each kubeconfig embedding the CA.
    pub changes: Vec<FileChange>,
    /// What holds the CA in memory and must restart, in order.
    pub restarts: Vec<Component>,
}

/// The CA's key, read through the node gate (never logged). A CA without its key on
/// this node cannot be renewed here.
pub fn read_key(root: &NodeRoot, ca: &AuthorityCopies) -> Result<PrivateKey, AuthorityError> {
    if !ca.has_key {
        return Err(AuthorityError::NoKey {
            name: ca.name.clone(),
            key: ca.key_path.clone(),
        });
    }
    let (_, bytes) = root.read_file(&ca.key_path)?;
    let invalid = |source| AuthorityError::Key {
        path: ca.key_path.clone(),
        source,
    };
    // Read to sign (renew) or to be installed elsewhere (export): checked fully.
    let key = PrivateKey::from_pem(&bytes).map_err(invalid)?;
    key.check().map_err(invalid)?;
    Ok(key)
}

/// Re-issues `old` (a self-signed CA certificate at `path`) with its own `key`: valid
/// from [`BACKDATE`] before `now` for `days`, or for the old certificate's lifetime.
pub fn renew_certificate(
    path: &std::path::Path,
    old: &CertFacts,
    key: &PrivateKey,
    key_path: &std::path::Path,
    now: OffsetDateTime,
    days: Option<i64>,
) -> Result<CertFacts, AuthorityError> {
    if !key.matches(old) {
        return Err(AuthorityError::KeyMismatch {
            key: key_path.to_path_buf(),
            cert: path.to_path_buf(),
        });
    }
    if !old.self_issued || !old.is_signed_by(old) {
        return Err(AuthorityError::NotSelfSigned {
            path: path.to_path_buf(),
            issuer: old.issuer.clone(),
        });
    }
    let lifetime = days.map(Duration::days).unwrap_or_else(|| old.lifetime());
    let not_before = now - BACKDATE;
    let not_after = now + lifetime;
    let build = |source| AuthorityError::Build {
        path: path.to_path_buf(),
        source,
    };
    let der = x509::renew_self_signed(&old.der, key, not_before, not_after).map_err(build)?;
    let new = CertFacts::from_der(&der).map_err(build)?;
    // What leaves and clients verify against must be exactly the old certificate's.
    let changed = |what| {
        Err(AuthorityError::Changed {
            path: path.to_path_buf(),
            what,
        })
    };
    if new.raw_subject != old.raw_subject || new.raw_issuer != old.raw_issuer {
        return changed("subject");
    }
    if new.public_key != old.public_key {
        return changed("public key");
    }
    if new.subject_key_id != old.subject_key_id || new.authority_key_id != old.authority_key_id {
        return changed("key identifiers");
    }
    if !new.is_ca || !new.is_signed_by(&new) {
        return changed("CA constraints or signature");
    }
    Ok(new)
}

/// `certs` with every certificate of the CA `old` (same DER, or same subject and key)
/// replaced by `new`, the others kept in their places.
pub fn replace_in(certs: &[CertFacts], old: &CertFacts, new: &CertFacts) -> Vec<CertFacts> {
    let mut out: Vec<CertFacts> = Vec::with_capacity(certs.len());
    for c in certs {
        let c = if same_ca(c, old) { new } else { c };
        // A copy that held the CA twice holds the new certificate once.
        if !out.iter().any(|o| o.der == c.der) {
            out.push(c.clone());
        }
    }
    out
}

/// The renewal of one CA: its new certificate and the change of every copy. Pure.
pub fn plan_renewal(
    ca: &AuthorityCopies,
    role: NodeRole,
    key: &PrivateKey,
    now: OffsetDateTime,
    days: Option<i64>,
) -> Result<Renewal, AuthorityError> {
    let issuer = ca.issuer().map_err(|source| AuthorityError::NodeCopy {
        name: ca.name.clone(),
        source: Box::new(source),
    })?;
    let new = renew_certificate(&ca.cert_path, issuer, key, &ca.key_path, now, days)?;
    let changes = install_changes(ca, issuer, &new)?;
    Ok(Renewal {
        name: ca.name.clone(),
        old: issuer.clone(),
        new,
        changes,
        restarts: crate::plan::ca_restarts(&ca.name, role),
    })
}

/// The change of every copy of `ca` that holds `old`: it holds `new` in its place.
pub fn install_changes(
    ca: &AuthorityCopies,
    old: &CertFacts,
    new: &CertFacts,
) -> Result<Vec<FileChange>, AuthorityError> {
    ca.changes(|a| Some(replace_in(&a.certs, old, new)))
        .map_err(|source| AuthorityError::NodeCopy {
            name: ca.name.clone(),
            source: Box::new(source),
        })
}

/// Hex SHA-256 of a certificate's DER, as `openssl x509 -fingerprint -sha256` shows it
/// (lower case, no colons).
pub fn sha256_hex(cert: &CertFacts) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert.der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The PEM of one certificate.
pub fn pem(cert: &CertFacts) -> String {
    pki::encode_pem("CERTIFICATE", &cert.der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::inventory::anchors::NodeCopies;

    #[test]
    fn a_renewed_ca_keeps_what_leaves_verify_against() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let copies = NodeCopies::read(&root, &Settings::default());
        let ca = copies.authority("etcd/ca").unwrap();
        let key = read_key(&root, ca).unwrap();
        let now = OffsetDateTime::now_utc();
        let r = plan_renewal(ca, copies.role, &key, now, None).unwrap();
        assert_eq!(r.new.raw_subject, r.old.raw_subject);
        assert_eq!(r.new.public_key, r.old.public_key);
        assert_eq!(r.new.subject_key_id, r.old.subject_key_id);
        assert!(r.new.subject_key_id.is_some());
        assert_ne!(r.new.serial, r.old.serial);
        assert_eq!(
            r.new.not_before,
            (now - BACKDATE).replace_nanosecond(0).unwrap()
        );
        assert_eq!(r.new.lifetime(), r.old.lifetime() + BACKDATE);
        assert_eq!(r.changes.len(), 1, "etcd/ca has its file only");
        assert_eq!(r.restarts, [Component::Etcd, Component::KubeApiserver]);
        // A leaf of the old certificate verifies against the new one.
        let (_, leaf) = root
            .read_file(std::path::Path::new("/etc/kubernetes/pki/etcd/server.crt"))
            .unwrap();
        let leaf = &pki::certificates(&pki::parse_pem(&leaf).unwrap()).unwrap()[0];
        assert!(leaf.is_signed_by(&r.new));
        let days = plan_renewal(ca, copies.role, &key, now, Some(30)).unwrap();
        assert_eq!(
            days.new.not_after,
            (now + Duration::days(30)).replace_nanosecond(0).unwrap()
        );
    }

    #[test]
    fn another_key_or_an_intermediate_is_refused() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let copies = NodeCopies::read(&root, &Settings::default());
        let ca = copies.authority("ca").unwrap();
        let other = read_key(&root, copies.authority("front-proxy-ca").unwrap()).unwrap();
        let e = plan_renewal(ca, copies.role, &other, OffsetDateTime::now_utc(), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not match the first certificate of /etc/kubernetes/pki/ca.crt"),
            "{e}"
        );
        let (_, leaf) = root
            .read_file(std::path::Path::new("/etc/kubernetes/pki/apiserver.crt"))
            .unwrap();
        let leaf = pki::certificates(&pki::parse_pem(&leaf).unwrap())
            .unwrap()
            .remove(0);
        let (_, k) = root
            .read_file(std::path::Path::new("/etc/kubernetes/pki/apiserver.key"))
            .unwrap();
        let k = PrivateKey::from_pem(&k).unwrap();
        let e = renew_certificate(
            std::path::Path::new("/x.crt"),
            &leaf,
            &k,
            std::path::Path::new("/x.key"),
            OffsetDateTime::now_utc(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not self-signed"), "{e}");
    }

    #[test]
    fn replacing_keeps_the_other_certificates_in_place() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let copies = NodeCopies::read(&root, &Settings::default());
        let a = copies.authority("ca").unwrap().issuer().unwrap().clone();
        let b = copies
            .authority("front-proxy-ca")
            .unwrap()
            .issuer()
            .unwrap()
            .clone();
        let c = copies
            .authority("etcd/ca")
            .unwrap()
            .issuer()
            .unwrap()
            .clone();
        let out = replace_in(&[b.clone(), a.clone(), a.clone()], &a, &c);
        let ders: Vec<_> = out.iter().map(|x| x.der.clone()).collect();
        assert_eq!(ders, [b.der, c.der]);
    }
}
