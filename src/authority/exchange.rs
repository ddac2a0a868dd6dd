//! Moving a CA certificate between the nodes of a cluster: `ca export` writes it (and,
//! only when asked, its key) into a new file for the operator; `ca import` installs a
//! renewed CA certificate into this node's copies after checking it is the CA this node
//! already trusts (same subject, same public key), or, on a node that follows a CA
//! rotation run elsewhere (a worker), the bundle the rotating node's CA file holds after
//! a phase, when it shares a CA with the one this node trusts.
//!
//! The files are the operator's (host paths, like `--config`), not node paths: an
//! export is created new, never over an existing file.

use std::path::{Path, PathBuf};

use super::phase::RotationPhase;
use super::renew::{install_changes, read_key};
use super::AuthorityError;
use crate::inventory::anchors::{same_ca, AuthorityCopies, NodeCopies};
use crate::model::{Component, FileChange};
use crate::node::NodeRoot;
use crate::pki::{self, CertFacts, PrivateKey};
use time::OffsetDateTime;

/// What `ca export` writes.
pub struct Export {
    /// The CA file's certificates' PEM (its issuer first), then (with the key) the key's PEM.
    pub bytes: zeroize::Zeroizing<Vec<u8>>,
    /// 0600 with a key in it, else 0644.
    pub mode: u32,
    pub cert: CertFacts,
    pub with_key: bool,
}

/// The export of CA `ca`: its CA file's certificates (the issuing one first), and its key
/// when `with_key`.
pub fn export(
    root: &NodeRoot,
    ca: &AuthorityCopies,
    with_key: bool,
) -> Result<Export, AuthorityError> {
    let cert = ca
        .issuer()
        .map_err(|source| AuthorityError::NodeCopy {
            name: ca.name.clone(),
            source: Box::new(source),
        })?
        .clone();
    // The whole CA file: one certificate, or during a rotation the bundle the phase left,
    // which the nodes that follow the rotation (`ca import`) install as it is.
    let certs = ca
        .bundle
        .as_ref()
        .map_err(|source| AuthorityError::NodeCopy {
            name: ca.name.clone(),
            source: Box::new(source.clone()),
        })?;
    let mut bytes =
        zeroize::Zeroizing::new(crate::inventory::anchors::bundle_pem(certs).into_bytes());
    if with_key {
        let key = read_key(root, ca)?;
        if !key.matches(&cert) {
            return Err(AuthorityError::KeyMismatch {
                key: ca.key_path.clone(),
                cert: ca.cert_path.clone(),
            });
        }
        let key_pem = key.to_pem().map_err(|source| AuthorityError::Key {
            path: ca.key_path.clone(),
            source,
        })?;
        bytes.extend_from_slice(key_pem.as_bytes());
    }
    Ok(Export {
        bytes,
        mode: if with_key { 0o600 } else { 0o644 },
        cert,
        with_key,
    })
}

/// Writes an export to the operator's `file` (absolute host path), created new.
pub fn write_export(file: &Path, export: &Export) -> Result<(), AuthorityError> {
    let host = NodeRoot::new("/");
    if host.exists(file) {
        return Err(AuthorityError::ExportExists {
            file: file.to_path_buf(),
        });
    }
    host.write_new(file, &export.bytes, export.mode)
        .map_err(|source| AuthorityError::ExportWrite {
            file: file.to_path_buf(),
            source,
        })
}

/// What an import file holds.
pub struct ImportFile {
    pub file: PathBuf,
    pub certs: Vec<CertFacts>,
    /// A key exported with `--with-key`: checked against the certificate, never
    /// installed (a control-plane node of the cluster has the same key already).
    pub has_key: bool,
}

/// Reads the operator's import file (absolute host path).
pub fn read_import(file: &Path) -> Result<ImportFile, AuthorityError> {
    let (_, bytes) =
        NodeRoot::new("/")
            .read_file(file)
            .map_err(|source| AuthorityError::ImportRead {
                file: file.to_path_buf(),
                source,
            })?;
    parse_import(file, &bytes)
}

/// Parses an import file's bytes. Pure.
pub fn parse_import(file: &Path, bytes: &[u8]) -> Result<ImportFile, AuthorityError> {
    let at = |source| AuthorityError::ImportPem {
        file: file.to_path_buf(),
        source,
    };
    let blocks = pki::parse_pem(bytes).map_err(at)?;
    let certs = pki::certificates(&blocks).map_err(at)?;
    let Some(first) = certs.first() else {
        return Err(AuthorityError::ImportNoCertificate {
            file: file.to_path_buf(),
        });
    };
    super::import_checks::check_count(file, certs.len())?;
    let key = PrivateKey::from_blocks(&blocks).map_err(at)?;
    if let Some(k) = &key {
        if !k.matches(first) {
            return Err(AuthorityError::ImportKeyMismatch {
                file: file.to_path_buf(),
            });
        }
    }
    Ok(ImportFile {
        file: file.to_path_buf(),
        has_key: key.is_some(),
        certs,
    })
}

/// An import checked against the node, not yet written.
#[derive(Clone, Debug)]
pub struct Import {
    pub name: String,
    pub old: CertFacts,
    pub new: CertFacts,
    /// What every copy holds afterwards, in order: `[new]`, or the imported bundle.
    pub certs: Vec<CertFacts>,
    /// Empty when the node has this certificate already.
    pub changes: Vec<FileChange>,
    pub restarts: Vec<Component>,
}

/// Checks the file's CA certificate against the CAs this node trusts and computes the
/// change of every copy. `phase_of` gives each CA's rotation phase. Pure.
pub fn plan_import(
    f: &ImportFile,
    node: &NodeCopies,
    phase_of: &dyn Fn(&str) -> RotationPhase,
    now: OffsetDateTime,
) -> Result<Import, AuthorityError> {
    let file = &f.file;
    let new = &f.certs[0];
    if is_bundle_import(f, node) {
        return plan_bundle(f, node, phase_of, now);
    }
    if !new.is_ca {
        return Err(AuthorityError::ImportNotCa {
            file: file.clone(),
            subject: new.subject.clone(),
        });
    }
    let trusted = |a: &AuthorityCopies| a.issuer().ok().cloned();
    let Some((ca, old)) = node
        .authorities
        .iter()
        .find_map(|a| trusted(a).filter(|c| same_ca(c, new)).map(|c| (a, c)))
    else {
        return Err(mismatch(file, new, node));
    };
    not_held(file, &ca.name, phase_of(&ca.name))?;
    // What a client checks of an issuer: a certificate none accepts is never installed.
    super::import_checks::check_usable(file, new, now)?;
    if !new.is_signed_by(new) {
        return Err(AuthorityError::ImportBadSignature {
            file: file.clone(),
            subject: new.subject.clone(),
        });
    }
    let changes = if new.der == old.der {
        Vec::new()
    } else {
        if new.not_after < old.not_after {
            return Err(AuthorityError::ImportOlder {
                file: file.clone(),
                name: ca.name.clone(),
                theirs: new.not_after,
                ours: old.not_after,
            });
        }
        install_changes(ca, &old, new)?
    };
    Ok(Import {
        name: ca.name.clone(),
        old,
        new: new.clone(),
        certs: vec![new.clone()],
        changes,
        restarts: crate::plan::ca_restarts(&ca.name, node.role),
    })
}

/// Whether the file is a bundle to install as given rather than one renewed CA
/// certificate to put in the old one's place: it holds several certificates, or it
/// holds one that a CA file of this node holds among others (a rotation's finish:
/// `[new]` onto `[new, old]` or `[old, new]`).
fn is_bundle_import(f: &ImportFile, node: &NodeCopies) -> bool {
    f.certs.len() > 1
        || node.authorities.iter().any(|a| match &a.bundle {
            Ok(b) => b.len() > 1 && b.iter().any(|c| c.der == f.certs[0].der),
            Err(_) => false,
        })
}

/// A CA bundle from the node that rotates the CA (its CA file after a phase): accepted
/// when it is continuous with what this node trusts (they share a CA), so no phase
/// leaves this node trusting none of the CAs the cluster's certificates are signed by.
/// Every copy of that CA then holds the bundle, in the order given. Pure.
fn plan_bundle(
    f: &ImportFile,
    node: &NodeCopies,
    phase_of: &dyn Fn(&str) -> RotationPhase,
    now: OffsetDateTime,
) -> Result<Import, AuthorityError> {
    let file = &f.file;
    for (i, c) in f.certs.iter().enumerate() {
        super::import_checks::check_usable(file, c, now)?;
        if !c.is_signed_by(c) {
            return Err(AuthorityError::ImportBadSignature {
                file: file.clone(),
                subject: c.subject.clone(),
            });
        }
        if f.certs[..i].iter().any(|p| same_ca(p, c)) {
            return Err(AuthorityError::ImportDuplicate {
                file: file.clone(),
                subject: c.subject.clone(),
            });
        }
    }
    let shares = |a: &&AuthorityCopies| match &a.bundle {
        Ok(b) => b.iter().any(|o| f.certs.iter().any(|c| same_ca(o, c))),
        Err(_) => false,
    };
    let matching: Vec<&AuthorityCopies> = node.authorities.iter().filter(shares).collect();
    let ca = match matching.as_slice() {
        [one] => *one,
        [] => {
            let subjects: Vec<&str> = f.certs.iter().map(|c| c.subject.as_str()).collect();
            return Err(AuthorityError::ImportBundleNoShared {
                file: file.clone(),
                subjects: subjects.join("; "),
                cas: trusted_list(node),
            });
        }
        many => {
            let names: Vec<&str> = many.iter().map(|a| a.name.as_str()).collect();
            return Err(AuthorityError::ImportBundleAmbiguous {
                file: file.clone(),
                names: names.join(", "),
            });
        }
    };
    not_held(file, &ca.name, phase_of(&ca.name))?;
    let old = ca
        .issuer()
        .map_err(|source| AuthorityError::NodeCopy {
            name: ca.name.clone(),
            source: Box::new(source),
        })?
        .clone();
    // Every anchor is a copy of this CA (that is how it was found): each holds the
    // bundle; one that holds it already is left alone.
    let changes =
        ca.changes(|_| Some(f.certs.clone()))
            .map_err(|source| AuthorityError::NodeCopy {
                name: ca.name.clone(),
                source: Box::new(source),
            })?;
    Ok(Import {
        name: ca.name.clone(),
        old,
        new: f.certs[0].clone(),
        certs: f.certs.clone(),
        changes,
        restarts: crate::plan::ca_restarts(&ca.name, node.role),
    })
}

/// A rotation in progress here holds the CA (it follows the rotation with `ca rotate`,
/// not `ca import`), and so does a broken journal; a finished rotation is history.
fn not_held(file: &Path, name: &str, phase: RotationPhase) -> Result<(), AuthorityError> {
    match phase {
        RotationPhase::None | RotationPhase::Finished => Ok(()),
        RotationPhase::Broken => Err(AuthorityError::ImportJournalBroken {
            file: file.to_path_buf(),
            name: name.to_string(),
        }),
        p => Err(AuthorityError::ImportDuringRotation {
            file: file.to_path_buf(),
            name: name.to_string(),
            phase: p.as_str(),
        }),
    }
}

/// The node's CAs and their subjects, for an error.
fn trusted_list(node: &NodeCopies) -> String {
    let cas: Vec<String> = node
        .authorities
        .iter()
        .map(|a| match &a.bundle {
            Ok(b) => {
                let s: Vec<&str> = b.iter().map(|c| c.subject.as_str()).collect();
                format!("{} {}", a.name, s.join(" + "))
            }
            Err(_) => format!("{} unreadable", a.name),
        })
        .collect();
    cas.join(", ")
}

/// Why a CA certificate is none of the node's: the closest CA and what differs.
fn mismatch(file: &Path, new: &CertFacts, node: &NodeCopies) -> AuthorityError {
    for a in &node.authorities {
        let Ok(ours) = a.issuer() else { continue };
        if ours.raw_subject == new.raw_subject {
            return AuthorityError::ImportDifferentKey {
                file: file.to_path_buf(),
                subject: new.subject.clone(),
                name: a.name.clone(),
                path: a.cert_path.clone(),
            };
        }
        if ours.public_key == new.public_key {
            return AuthorityError::ImportDifferentSubject {
                file: file.to_path_buf(),
                theirs: new.subject.clone(),
                ours: ours.subject.clone(),
                name: a.name.clone(),
                path: a.cert_path.clone(),
            };
        }
    }
    let cas: Vec<String> = node
        .authorities
        .iter()
        .map(|a| match a.issuer() {
            Ok(c) => format!("{} {}", a.name, c.subject),
            Err(_) => format!("{} unreadable", a.name),
        })
        .collect();
    AuthorityError::ImportNoMatch {
        file: file.to_path_buf(),
        subject: new.subject.clone(),
        cas: cas.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::renew::{pem, plan_renewal, read_key};
    use crate::config::Settings;

    fn none(_: &str) -> RotationPhase {
        RotationPhase::None
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn import_of(cert: &CertFacts) -> ImportFile {
        parse_import(Path::new("/op/ca.crt"), pem(cert).as_bytes()).unwrap()
    }

    #[test]
    fn an_import_is_the_same_ca_newer_or_refused_saying_what_differs() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let node = NodeCopies::read(&root, &Settings::default());
        let ca = node.authority("ca").unwrap();
        let key = read_key(&root, ca).unwrap();
        let renewed = plan_renewal(ca, node.role, &key, time::OffsetDateTime::now_utc(), None)
            .unwrap()
            .new;
        let imp = plan_import(&import_of(&renewed), &node, &none, now()).unwrap();
        assert_eq!(imp.name, "ca");
        assert_eq!(imp.changes.len(), ca.anchors.len());
        // What the node has already: nothing to change.
        let same = plan_import(&import_of(ca.issuer().unwrap()), &node, &none, now()).unwrap();
        assert!(same.changes.is_empty());
        // Another node's CA with the same subject.
        let (_e, other_root) = crate::fixture::temp_control_plane();
        let other = NodeCopies::read(&other_root, &Settings::default());
        let theirs = other.authority("ca").unwrap().issuer().unwrap().clone();
        let e = plan_import(&import_of(&theirs), &node, &none, now())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/op/ca.crt: CN=kubernetes has the subject of CA ca (/etc/kubernetes/pki/ca.crt) but a different public key"),
            "{e}"
        );
        // A bundle that shares no CA with the node; one that does is installed as given.
        let front = other.authority("front-proxy-ca").unwrap().issuer().unwrap();
        let two = format!("{}{}", pem(&theirs), pem(front));
        let f = parse_import(Path::new("/op/b.crt"), two.as_bytes()).unwrap();
        let e = plan_import(&f, &node, &none, now())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/op/b.crt: does not contain a CA this node trusts (subjects CN=kubernetes; CN=front-proxy-ca"),
            "{e}"
        );
        let two = format!("{}{}", pem(ca.issuer().unwrap()), pem(&theirs));
        let f = parse_import(Path::new("/op/b.crt"), two.as_bytes()).unwrap();
        let imp = plan_import(&f, &node, &none, now()).unwrap();
        assert_eq!((imp.name.as_str(), imp.certs.len()), ("ca", 2));
        assert_eq!(imp.changes.len(), ca.anchors.len());
        // The same CA twice; one bundle for two of the node's CAs.
        let dup = format!("{}{}", pem(ca.issuer().unwrap()), pem(&renewed));
        let f = parse_import(Path::new("/op/d.crt"), dup.as_bytes()).unwrap();
        let e = plan_import(&f, &node, &none, now())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds the CA CN=kubernetes (same subject and key) twice"),
            "{e}"
        );
        let mine = node.authority("front-proxy-ca").unwrap().issuer().unwrap();
        let both = format!("{}{}", pem(ca.issuer().unwrap()), pem(mine));
        let f = parse_import(Path::new("/op/m.crt"), both.as_bytes()).unwrap();
        let e = plan_import(&f, &node, &none, now())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("several of this node's CAs (ca, front-proxy-ca)"),
            "{e}"
        );
        // A bundle during this node's own rotation of that CA.
        let f = parse_import(Path::new("/op/b.crt"), two.as_bytes()).unwrap();
        let rotating = |_: &str| RotationPhase::Issuing;
        let e = plan_import(&f, &node, &rotating, now())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("being rotated here (phase issuing)") && e.contains("`ca rotate ca`"),
            "{e}"
        );
        // A CA that has expired by `now`.
        let later = f.certs.iter().map(|c| c.not_after).min().unwrap() + time::Duration::days(1);
        let e = plan_import(&f, &node, &none, later)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expired"), "{e}");
        let rotating = |_: &str| RotationPhase::Trusting;
        let e = plan_import(&import_of(&renewed), &node, &rotating, now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("being rotated here (phase trusting)"), "{e}");
        let e = parse_import(Path::new("/op/x"), b"nothing")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("/op/x: "), "{e}");
        // A key that is not the certificate's.
        let wrong = read_key(&root, node.authority("etcd/ca").unwrap()).unwrap();
        let with_wrong = format!("{}{}", pem(&renewed), &*wrong.to_pem().unwrap());
        let e = parse_import(Path::new("/op/k"), with_wrong.as_bytes())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("does not match its certificate"), "{e}");
    }
}
