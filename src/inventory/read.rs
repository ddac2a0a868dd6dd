//! Reading each target and authority into facts, or an error naming the file and the
//! problem. Nothing here writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;

/// Reads every target and authority of the layout.
pub fn read(layout: &Layout, root: &NodeRoot) -> Inventory {
    read_in(layout, &NodeFiles::new(root))
}

/// [`read`] within one reading of the node: each kubeconfig is read once.
pub fn read_in(layout: &Layout, files: &NodeFiles<'_>) -> Inventory {
    let authorities = read_authorities(layout, files.root());
    let certificates = layout
        .targets
        .iter()
        .map(|t| Observed {
            target: t.clone(),
            state: read_target_in(t, files, &authorities),
        })
        .collect();
    Inventory {
        role: layout.role,
        certificates,
        authorities,
    }
}

/// The layout's authorities alone: a reader that goes through the targets one at a time
/// ([`read_target`]) needs them first, to tell who signed each certificate.
pub fn read_authorities(layout: &Layout, root: &NodeRoot) -> Vec<ObservedAuthority> {
    layout
        .authorities
        .iter()
        .map(|def| read_authority(def, root))
        .collect()
}

fn read_authority(def: &AuthorityDef, root: &NodeRoot) -> ObservedAuthority {
    let certs = read_file(root, &def.cert).and_then(|(_, bytes)| {
        let blocks = pki::parse_pem(&bytes).map_err(at(&def.cert))?;
        pki::certificates(&blocks).map_err(at(&def.cert))
    });
    let (cert, bundle) = match certs {
        Ok(all) => {
            let first = match all.first() {
                None => Err(InventoryError::NoCertificate {
                    path: def.cert.clone(),
                }),
                Some(c) if !c.is_ca => Err(InventoryError::NotACa {
                    path: def.cert.clone(),
                }),
                Some(c) => Ok(c.clone()),
            };
            let cas = all.into_iter().filter(|c| c.is_ca).collect();
            (first, cas)
        }
        Err(e) => (Err(e), Vec::new()),
    };
    let key = keys::read_ca_key(root, &def.key, cert.as_ref().ok(), &def.cert);
    ObservedAuthority {
        def: def.clone(),
        cert,
        bundle,
        has_key: key.present,
        key_error: key.error,
        open_key: key.open,
    }
}

/// The node gate's read, with its error as this module's.
fn read_file(root: &NodeRoot, path: &Path) -> Result<(PathBuf, Vec<u8>), InventoryError> {
    Ok(root.read_file(path)?)
}

/// [`read_file`] of a file that may hold a private key, with its mode if it is open to
/// group or others (from the open descriptor, not the path).
fn read_with_mode(
    root: &NodeRoot,
    path: &Path,
) -> Result<(PathBuf, Vec<u8>, Option<keys::OpenKey>), InventoryError> {
    let file = root.open_file(path)?;
    let open = keys::OpenKey::of(&file.path, file.metadata());
    let resolved = file.path.clone();
    Ok((resolved, file.read_all()?, open))
}

/// One target, as [`read`] reads it: `status` reads targets one at a time so that what
/// it holds does not grow with their number.
pub fn read_target(t: &Target, root: &NodeRoot, authorities: &[ObservedAuthority]) -> TargetState {
    read_target_in(t, &NodeFiles::new(root), authorities)
}

/// [`read_target`] within one reading of the node: a kubeconfig the layout already read
/// is not read again.
pub fn read_target_in(
    t: &Target,
    files: &NodeFiles<'_>,
    authorities: &[ObservedAuthority],
) -> TargetState {
    if let Some(conflict) = &t.conflict {
        return TargetState::Error(conflict.clone());
    }
    match read_reading(t, files, authorities) {
        Ok(Found::Cert(r)) => TargetState::Read(r),
        Ok(Found::NotManaged(why)) => TargetState::NotManaged(why),
        // Every target's own file is read first: nothing at its path is an absent target
        // (asked only then, so a present one costs no look before its read). A dangling
        // symlink is something: its read says where it leads.
        Err(InventoryError::Node(e))
            if e.path == t.path && e.is_not_found() && !files.root().exists(&t.path) =>
        {
            if t.optional {
                TargetState::Missing
            } else {
                TargetState::Error(
                    InventoryError::NotFound {
                        path: t.path.clone(),
                    }
                    .to_string(),
                )
            }
        }
        // Shown to operators as it is: the typed error stays inside the inventory.
        Err(e) => TargetState::Error(e.to_string()),
    }
}

/// What a present target holds.
enum Found {
    Cert(Box<Reading>),
    NotManaged(String),
}

fn read_reading(
    t: &Target,
    files: &NodeFiles<'_>,
    authorities: &[ObservedAuthority],
) -> Result<Found, InventoryError> {
    let root = files.root();
    // (file the certs came from, cert blocks' file bytes, separate key file)
    let mut source: Option<Arc<Vec<u8>>> = None;
    let mut kubelet_link = None;
    // The mode of the file the certificate came from: it is the key's too when the key
    // is in it (the kubelet's pem, a kubeconfig's client-key-data).
    let mut cert_open: Option<keys::OpenKey> = None;
    let (cert_file, cert_bytes, key_source): (PathBuf, Vec<u8>, KeySource) = match t.kind {
        TargetKind::Certificate | TargetKind::KubeletServing => {
            let (f, b, _) = read_with_mode(root, &t.path)?;
            let key = match &t.key {
                Some(k) => KeySource::File(k.clone()),
                None => KeySource::None,
            };
            (f, b, key)
        }
        TargetKind::KubeletClient | TargetKind::KubeletServer => {
            let (f, b, open) = read_with_mode(root, &t.path)?;
            cert_open = open;
            (f.clone(), b, KeySource::SameFile(f))
        }
        TargetKind::Kubeconfig => {
            let read = files.kubeconfig(&t.path);
            let file = read
                .as_ref()
                .as_ref()
                .map_err(|e| InventoryError::Node(e.clone()))?;
            let f = file.resolved.clone();
            cert_open = keys::OpenKey::of_mode(&f, file.mode);
            let kc = file
                .kubeconfig
                .clone()
                .map_err(|source| InventoryError::Kubeconfig {
                    path: f.clone(),
                    source,
                })?;
            source = Some(file.bytes.clone());
            match kc.credential {
                ClientCredential::Embedded {
                    cert_pem, key_pem, ..
                } => {
                    let key = match key_pem {
                        Some(k) => KeySource::Embedded(k),
                        None => {
                            return Err(InventoryError::NoClientKeyData {
                                path: f,
                                user: kc.user,
                            })
                        }
                    };
                    (f, cert_pem, key)
                }
                ClientCredential::NotACertificate { method } => {
                    return Ok(Found::NotManaged(format!(
                        "user {:?} authenticates with {method}, not a client certificate: not managed",
                        kc.user
                    )))
                }
                ClientCredential::Files { cert, key } => {
                    if cert
                        .file_name()
                        .is_some_and(|n| n == "kubelet-client-current.pem")
                        && root.is_symlink(&cert)
                    {
                        kubelet_link = Some(cert.clone());
                    }
                    let (cf, cb, open) = read_with_mode(root, &cert)?;
                    cert_open = open;
                    let key = match key {
                        Some(k) => KeySource::File(k),
                        None => KeySource::SameFile(cf.clone()),
                    };
                    (cf, cb, key)
                }
            }
        }
    };
    // The target's own file is the certificate file itself, unless it is a kubeconfig.
    let own_file = source.is_none();
    let mut cert_bytes = cert_bytes;
    let source = source.unwrap_or_else(|| Arc::new(std::mem::take(&mut cert_bytes)));
    let pem: &[u8] = if own_file { &source } else { &cert_bytes };
    let blocks = pki::parse_pem(pem).map_err(at(&cert_file))?;
    let mut certs = pki::certificates(&blocks).map_err(at(&cert_file))?;
    if certs.is_empty() {
        return Err(InventoryError::NoCertificate { path: cert_file });
    }
    let cert = certs.remove(0);
    let (key, key_file, open_key) = match key_source {
        KeySource::None => (None, None, None),
        KeySource::SameFile(f) => {
            let k = PrivateKey::from_blocks(&blocks)
                .map_err(at(&f))?
                .ok_or_else(|| InventoryError::NoPrivateKey { path: f.clone() })?;
            (Some(k), None, cert_open)
        }
        KeySource::Embedded(pem) => {
            let k = PrivateKey::from_pem(&pem).map_err(|source| InventoryError::ClientKeyData {
                path: cert_file.clone(),
                source,
            })?;
            (Some(k), None, cert_open)
        }
        KeySource::File(kf) => {
            let (kf, kb, open) = read_with_mode(root, &kf)?;
            let k = PrivateKey::from_pem(&kb).map_err(at(&kf))?;
            (Some(k), Some(kf), open)
        }
    };
    // Only where the plan asks (serving-sans, cluster-ca only): the other targets' SANs
    // are copied, never compared.
    let alt_names = match &t.serving {
        Some(s)
            if t.kind == TargetKind::KubeletServing
                && s.mode == crate::config::serving::ServingMode::ClusterCa =>
        {
            Some(serving_names(&cert.der, &cert_file))
        }
        _ => None,
    };
    let Some(key) = key else {
        // A configured directory certificate without a key: watched, not renewable.
        return Ok(Found::Cert(Box::new(Reading {
            signer: identify_signer(t.kind, &cert, &certs, authorities),
            key_algorithm: KeyAlgorithm::EcdsaP256,
            key_encoding: KeyEncoding::Pkcs8,
            cert,
            chain: certs,
            cert_file,
            key_file: None,
            key: None,
            source,
            kubelet_link,
            alt_names,
            open_key: None,
        })));
    };
    if !key.matches(&cert) {
        return Err(InventoryError::KeyMismatch {
            key: key_file.unwrap_or_else(|| cert_file.clone()),
            cert: cert_file,
        });
    }
    if cert.is_ca && t.kind != TargetKind::KubeletServing {
        return Err(InventoryError::IsACa { path: cert_file });
    }
    Ok(Found::Cert(Box::new(Reading {
        signer: identify_signer(t.kind, &cert, &certs, authorities),
        key_algorithm: key.algorithm,
        key_encoding: key.encoding,
        cert,
        chain: certs,
        cert_file,
        key_file,
        key: Some(Arc::new(key)),
        source,
        kubelet_link,
        alt_names,
        open_key,
    })))
}

/// Prefixes a content error with the file it concerns.
fn at(p: &Path) -> impl Fn(PkiError) -> InventoryError + '_ {
    move |source| InventoryError::Pki {
        path: p.to_path_buf(),
        source,
    }
}

enum KeySource {
    None,
    SameFile(PathBuf),
    Embedded(Vec<u8>),
    File(PathBuf),
}

/// The node's CA that signed `cert`, else a certificate of its own file. The signature
/// decides, not the names. A chain after the leaf is kubelet.crt's throwaway CA only
/// for kubelet.crt; elsewhere it is an intermediate CA, which is kept when renewing.
fn identify_signer(
    kind: TargetKind,
    cert: &CertFacts,
    chain: &[CertFacts],
    cas: &[ObservedAuthority],
) -> Signer {
    // The whole CA file is searched: the authority key identifier is a hint at most,
    // the signature decides (as Go's verifier does).
    for a in cas {
        if a.cert.is_ok() && a.bundle.iter().any(|ca| cert.is_signed_by(ca)) {
            return Signer::Authority(a.def.name.clone());
        }
    }
    if let Some(c) = chain.iter().find(|c| cert.is_signed_by(c)) {
        return if kind == TargetKind::KubeletServing {
            Signer::Bundled
        } else {
            Signer::Intermediate(c.subject.clone())
        };
    }
    if cert.self_issued && cert.is_signed_by(cert) {
        return Signer::SelfSigned;
    }
    Signer::Unknown
}

/// kubelet.crt's DNS and IP SANs for the plan (serving-sans). Undecodable names are no
/// names, with a warning naming the file: the certificate stays readable and renewable
/// (then due for serving-sans), as it was before its names were read. (Today
/// `CertFacts` already refuses a certificate whose SAN extension does not decode, so
/// this is the seam's guard, not a path a node reaches.)
fn serving_names(der: &[u8], file: &Path) -> crate::pki::AltNames {
    crate::pki::alt_names(der).unwrap_or_else(|e| {
        tracing::warn!(file = %file.display(), error = %e, "kubelet.crt's subject alternative names cannot be decoded; taking it as naming nothing");
        crate::pki::AltNames::default()
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::serving::ServingMode;
    use crate::config::Settings;
    use crate::inventory::TargetState;
    use crate::pki::{self, AltNames};

    /// Names that cannot be decoded are no names (so under cluster-ca kubelet.crt is
    /// due for serving-sans), not an error that leaves the target unreadable.
    #[test]
    fn undecodable_names_are_no_names() {
        let (_dir, root) = crate::fixture::temp_control_plane();
        let file = Path::new("/var/lib/kubelet/pki/kubelet.crt");
        let text = std::fs::read(root.host(file)).unwrap();
        let der = &pki::parse_pem(&text).unwrap()[0].der;
        assert!(!super::serving_names(der, file).dns.is_empty());
        let broken = &der[..der.len() / 2];
        assert!(pki::alt_names(broken).is_err());
        assert_eq!(super::serving_names(broken, file), AltNames::default());
        let mut settings = Settings::default();
        settings.kubelet.serving = ServingMode::ClusterCa;
        let inv = crate::inventory::read_node(&root, &settings);
        let o = inv
            .certificates
            .iter()
            .find(|o| o.target.name == "kubelet.crt")
            .unwrap();
        let TargetState::Read(r) = &o.state else {
            panic!("kubelet.crt is readable: {:?}", o.state);
        };
        let serving = o.target.serving.as_ref().unwrap();
        let mut nameless = (**r).clone();
        nameless.alt_names = Some(AltNames::default());
        assert!(crate::plan::route::serving_sans_due(serving, &nameless));
    }
}
