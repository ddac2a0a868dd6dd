//! Every copy of a CA on this node, and the file changes that make a copy hold given
//! certificates.
//!
//! A copy ([`TrustAnchor`]) is a place a component or a person reads a CA from: the CA
//! file itself (a PEM bundle, its order kept: kubeadm pairs the first certificate with
//! the key) and every kubeconfig cluster entry whose `certificate-authority-data` holds
//! a certificate of that CA. Kubeconfigs are matched by the certificates they hold (DER
//! or public key), never by file name: an operator's copy of admin.conf under
//! /root/.kube is found like admin.conf itself, and a kubeconfig for another cluster is
//! left alone. A worker has `ca` alone: its ca.crt (no ca.key) and kubelet.conf.
//!
//! [`NodeCopies::read`] reads through [`NodeRoot`] once; everything after it is pure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{KubeconfigFile, NodeFiles};
use super::{Layout, NodeRole};
use crate::config::{ExtraKind, Settings};
use crate::model::FileChange;
use crate::node::kubeconfig::{self, ClusterTrust, KubeconfigError};
use crate::node::{NodeError, NodeRoot};
use crate::pki::{self, encode_pem, CertFacts, PkiError};

/// The CAs a kubeadm node has, as `status` names them.
pub const CA_NAMES: &[&str] = &["ca", "front-proxy-ca", "etcd/ca"];

/// A CA name as `status` prints it, from that name or kubeadm's (`etcd-ca`).
pub fn canonical_name(arg: &str) -> Option<&'static str> {
    match arg {
        "ca" => Some("ca"),
        "front-proxy-ca" => Some("front-proxy-ca"),
        "etcd/ca" | "etcd-ca" => Some("etcd/ca"),
        _ => None,
    }
}

/// Why the copies of a CA cannot be read or rewritten: the file and what is wrong.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Node(Arc<NodeError>),
    #[error("{}: {source}", path.display())]
    Pki {
        path: PathBuf,
        #[source]
        source: PkiError,
    },
    #[error("{}: no CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: the first certificate is not a CA certificate", path.display())]
    NotACa { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: Arc<KubeconfigError>,
    },
    #[error("{}: cluster {cluster:?}: certificate-authority-data: {source}", path.display())]
    ClusterCa {
        path: PathBuf,
        cluster: String,
        #[source]
        source: Box<PkiError>,
    },
    #[error("{}: a copy must hold at least one certificate", path.display())]
    Empty { path: PathBuf },
}

impl CopyError {
    fn node(e: NodeError) -> Self {
        CopyError::Node(Arc::new(e))
    }
}

/// Where in a file a copy sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorKind {
    /// The CA file itself: the whole file is the PEM bundle.
    CaFile,
    /// The `certificate-authority-data` of one cluster entry of a kubeconfig.
    Kubeconfig { cluster: String },
}

/// One copy of a CA: a file (or a kubeconfig entry) and the certificates it holds now.
#[derive(Clone)]
pub struct TrustAnchor {
    /// Node path of the file itself, every symlink resolved (so a symlinked
    /// /root/.kube/config is written through to admin.conf, once).
    pub path: PathBuf,
    pub kind: AnchorKind,
    /// The certificates it holds, in order.
    pub certs: Vec<CertFacts>,
    /// The file's bytes as read: a change is computed from them.
    pub source: Arc<Vec<u8>>,
}

// Not derived: a kubeconfig's bytes hold its client key; a `{:?}` shows their length.
impl std::fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustAnchor")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("certs", &self.certs)
            .field("source", &format_args!("<{} bytes>", self.source.len()))
            .finish()
    }
}

impl TrustAnchor {
    /// Whether this copy holds a certificate of the CA whose certificates are `ca`.
    fn holds_any(&self, ca: &[CertFacts]) -> bool {
        self.certs.iter().any(|c| ca.iter().any(|a| same_ca(c, a)))
    }
}

/// Two certificates of the same CA: the same DER, or the same subject and key (a CA
/// renewed with its own key is the same CA).
pub fn same_ca(a: &CertFacts, b: &CertFacts) -> bool {
    a.der == b.der || (a.public_key == b.public_key && a.raw_subject == b.raw_subject)
}

/// One CA of the node and every copy of it.
#[derive(Clone, Debug)]
pub struct AuthorityCopies {
    /// `ca`, `front-proxy-ca` or `etcd/ca`.
    pub name: String,
    /// Node path of the CA file (as configured).
    pub cert_path: PathBuf,
    /// Node path of the key beside it.
    pub key_path: PathBuf,
    pub has_key: bool,
    /// The key is there but cannot sign for the CA (see [`super::keys`]).
    pub key_error: Option<super::InventoryError>,
    /// The key file is open to group or others.
    pub open_key: Option<super::keys::OpenKey>,
    /// The CA file's certificates in order, or why they cannot be read.
    pub bundle: Result<Vec<CertFacts>, CopyError>,
    /// Every copy, the CA file first. Empty when the CA file cannot be read.
    pub anchors: Vec<TrustAnchor>,
}

impl AuthorityCopies {
    /// The issuing certificate: the first of the CA file.
    pub fn issuer(&self) -> Result<&CertFacts, CopyError> {
        match &self.bundle {
            Ok(b) => b.first().ok_or_else(|| CopyError::NoCertificate {
                path: self.cert_path.clone(),
            }),
            Err(e) => Err(e.clone()),
        }
    }

    /// The file changes that make each copy hold `new(anchor)`; a copy for which it
    /// returns `None`, or whose content would not change, is left alone.
    pub fn changes(
        &self,
        mut new: impl FnMut(&TrustAnchor) -> Option<Vec<CertFacts>>,
    ) -> Result<Vec<FileChange>, CopyError> {
        let mut out: Vec<FileChange> = Vec::new();
        for a in &self.anchors {
            let Some(certs) = new(a) else { continue };
            let prior = out.iter().position(|c| c.path == a.path);
            let base: Vec<u8> = match prior {
                // Two cluster entries of one kubeconfig: the second edit applies to the
                // first one's output.
                Some(i) => match &out[i].content {
                    crate::model::NewContent::File(b) => b.clone(),
                    crate::model::NewContent::Symlink(_) => a.source.to_vec(),
                },
                None => a.source.to_vec(),
            };
            let bytes = rewrite(a, &base, &certs)?;
            if bytes == base {
                continue;
            }
            // A kubeconfig holds a client key: written as a renewal writes it (never more
            // open than 0600); the CA file is public.
            let change = match a.kind {
                AnchorKind::CaFile => FileChange::file(&a.path, bytes, 0o644, false),
                AnchorKind::Kubeconfig { .. } => FileChange::file(&a.path, bytes, 0o600, true),
            };
            match prior {
                Some(i) => out[i] = change,
                None => out.push(change),
            }
        }
        Ok(out)
    }
}

/// The PEM text of certificates, in order.
pub fn bundle_pem(certs: &[CertFacts]) -> String {
    certs
        .iter()
        .map(|c| encode_pem("CERTIFICATE", &c.der))
        .collect()
}

/// `base` with the copy `a` holding `certs`: the whole file for the CA file, only the
/// base64 value for a kubeconfig entry.
fn rewrite(a: &TrustAnchor, base: &[u8], certs: &[CertFacts]) -> Result<Vec<u8>, CopyError> {
    if certs.is_empty() {
        return Err(CopyError::Empty {
            path: a.path.clone(),
        });
    }
    let pem = bundle_pem(certs);
    match &a.kind {
        AnchorKind::CaFile => Ok(pem.into_bytes()),
        AnchorKind::Kubeconfig { cluster } => {
            kubeconfig::replace_cluster_ca(base, &a.path, &[(cluster, pem.as_bytes())]).map_err(
                |e| CopyError::Kubeconfig {
                    path: a.path.clone(),
                    source: Arc::new(e),
                },
            )
        }
    }
}

/// The node's CAs and their copies, read once.
#[derive(Clone, Debug)]
pub struct NodeCopies {
    pub role: NodeRole,
    pub authorities: Vec<AuthorityCopies>,
    /// Kubeconfigs that exist but cannot be read or parsed: a CA copy in them cannot
    /// be updated, so a change of any CA refuses to start while one is listed.
    pub unreadable: Vec<CopyError>,
}

impl NodeCopies {
    /// Reads the CA files and every kubeconfig the node has (kubeadm's, the configured
    /// user kubeconfigs, `[[extra]]` kubeconfigs), and assigns each embedded CA to the
    /// node CA it holds a certificate of.
    pub fn read(root: &NodeRoot, settings: &Settings) -> NodeCopies {
        let files = NodeFiles::new(root);
        Self::read_in(&super::layout_in(settings, &files), &files, settings)
    }

    /// [`NodeCopies::read`] with the layout the command already computed, within one
    /// reading of the node: a kubeconfig the inventory read is not read again.
    pub fn read_in(layout: &Layout, files: &NodeFiles<'_>, settings: &Settings) -> NodeCopies {
        let root = files.root();
        let mut authorities: Vec<AuthorityCopies> = layout
            .authorities
            .iter()
            .map(|def| read_ca_file(root, &def.name, &def.cert, &def.key))
            .collect();
        let mut unreadable = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        for path in kubeconfig_paths(settings) {
            if !root.exists(&path) {
                continue;
            }
            let read = files.kubeconfig(&path);
            let file = match read.as_ref() {
                Ok(f) => f,
                Err(e) => {
                    unreadable.push(CopyError::Node(e.clone()));
                    continue;
                }
            };
            if seen.contains(&file.resolved) {
                continue;
            }
            seen.push(file.resolved.clone());
            match kubeconfig_anchors(file) {
                Ok(anchors) => {
                    for anchor in anchors {
                        if let Some(a) = authorities.iter_mut().find(|a| {
                            a.bundle
                                .as_ref()
                                .is_ok_and(|b| !b.is_empty() && anchor.holds_any(b))
                        }) {
                            a.anchors.push(anchor);
                        }
                    }
                }
                Err(e) => unreadable.push(e),
            }
        }
        NodeCopies {
            role: layout.role,
            authorities,
            unreadable,
        }
    }

    pub fn authority(&self, name: &str) -> Option<&AuthorityCopies> {
        self.authorities.iter().find(|a| a.name == name)
    }
}

/// Every kubeconfig that may embed one of the node's CAs, in a fixed order.
fn kubeconfig_paths(settings: &Settings) -> Vec<PathBuf> {
    let k = &settings.kubeadm;
    let mut out: Vec<PathBuf> = [
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet.conf",
    ]
    .iter()
    .map(|n| k.kubeconfig_dir.join(n))
    .collect();
    out.extend(k.user_kubeconfigs.iter().cloned());
    out.extend(
        settings
            .extra
            .iter()
            .filter(|x| x.kind == ExtraKind::Kubeconfig)
            .map(|x| x.path.clone()),
    );
    out
}

fn read_ca_file(root: &NodeRoot, name: &str, cert: &Path, key: &Path) -> AuthorityCopies {
    let read = root
        .read_file(cert)
        .map_err(CopyError::node)
        .and_then(|(resolved, bytes)| {
            let at = |source| CopyError::Pki {
                path: cert.to_path_buf(),
                source,
            };
            let blocks = pki::parse_pem(&bytes).map_err(at)?;
            let certs = pki::certificates(&blocks).map_err(at)?;
            match certs.first() {
                None => {
                    return Err(CopyError::NoCertificate {
                        path: cert.to_path_buf(),
                    })
                }
                Some(c) if !c.is_ca => {
                    return Err(CopyError::NotACa {
                        path: cert.to_path_buf(),
                    })
                }
                Some(_) => {}
            }
            Ok((resolved, bytes, certs))
        });
    let (bundle, anchors) = match read {
        Ok((resolved, bytes, certs)) => {
            let anchor = TrustAnchor {
                path: resolved,
                kind: AnchorKind::CaFile,
                certs: certs.clone(),
                source: Arc::new(bytes),
            };
            (Ok(certs), vec![anchor])
        }
        Err(e) => (Err(e), Vec::new()),
    };
    let issuer = bundle
        .as_ref()
        .ok()
        .and_then(|b: &Vec<CertFacts>| b.first());
    let read_key = super::keys::read_ca_key(root, key, issuer, cert);
    AuthorityCopies {
        name: name.to_string(),
        cert_path: cert.to_path_buf(),
        key_path: key.to_path_buf(),
        has_key: read_key.present,
        key_error: read_key.error,
        open_key: read_key.open,
        bundle,
        anchors,
    }
}

/// The embedded CAs of a kubeconfig, one anchor per cluster entry that has one.
fn kubeconfig_anchors(file: &KubeconfigFile) -> Result<Vec<TrustAnchor>, CopyError> {
    let path = &file.resolved;
    let entries = file.clusters.as_ref().map_err(|e| CopyError::Kubeconfig {
        path: path.to_path_buf(),
        source: e.clone(),
    })?;
    let mut out = Vec::new();
    for e in entries {
        let ClusterTrust::Embedded { pem, .. } = &e.trust else {
            // A file reference is that file's copy (ca.crt itself, or one of the
            // operator's); the system roots are no copy of ours.
            continue;
        };
        let at = |source| CopyError::ClusterCa {
            path: path.to_path_buf(),
            cluster: e.name.clone(),
            source: Box::new(source),
        };
        let certs = pki::parse_pem(pem)
            .and_then(|b| pki::certificates(&b))
            .map_err(at)?;
        out.push(TrustAnchor {
            path: path.to_path_buf(),
            kind: AnchorKind::Kubeconfig {
                cluster: e.name.clone(),
            },
            certs,
            source: file.bytes.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn node() -> (tempfile::TempDir, NodeRoot, Settings) {
        let (d, root) = fixture::temp_control_plane();
        (d, root, Settings::default())
    }

    #[test]
    fn every_copy_of_each_ca_is_found_by_its_certificates() {
        let (_d, root, s) = node();
        let copies = NodeCopies::read(&root, &s);
        assert!(copies.unreadable.is_empty(), "{:?}", copies.unreadable);
        let ca = copies.authority("ca").unwrap();
        let paths: Vec<String> = ca
            .anchors
            .iter()
            .map(|a| a.path.display().to_string())
            .collect();
        assert_eq!(paths[0], "/etc/kubernetes/pki/ca.crt");
        for conf in [
            "/etc/kubernetes/admin.conf",
            "/etc/kubernetes/super-admin.conf",
            "/etc/kubernetes/controller-manager.conf",
            "/etc/kubernetes/scheduler.conf",
            "/etc/kubernetes/kubelet.conf",
            "/root/.kube/config",
        ] {
            assert!(paths.contains(&conf.to_string()), "{conf} in {paths:?}");
        }
        for other in ["front-proxy-ca", "etcd/ca"] {
            let a = copies.authority(other).unwrap();
            assert_eq!(a.anchors.len(), 1, "{other}: only its CA file");
            assert!(a.has_key);
        }
    }

    #[test]
    fn a_kubeconfig_for_another_cluster_is_no_copy() {
        let (d, root, mut s) = node();
        let other = fixture::temp_control_plane();
        let foreign = std::fs::read(other.0.path().join("etc/kubernetes/admin.conf")).unwrap();
        std::fs::write(d.path().join("root/other.conf"), foreign).unwrap();
        s.kubeadm.user_kubeconfigs.push("/root/other.conf".into());
        let copies = NodeCopies::read(&root, &s);
        let ca = copies.authority("ca").unwrap();
        assert!(ca
            .anchors
            .iter()
            .all(|a| a.path != Path::new("/root/other.conf")));
    }

    #[test]
    fn changes_touch_only_the_ca_data_and_skip_unchanged_copies() {
        let (_d, root, s) = node();
        let copies = NodeCopies::read(&root, &s);
        let ca = copies.authority("ca").unwrap();
        let fp = copies.authority("front-proxy-ca").unwrap();
        let extra = fp.issuer().unwrap().clone();
        // Unchanged content: no change at all.
        assert!(ca.changes(|a| Some(a.certs.clone())).unwrap().is_empty());
        let changes = ca
            .changes(|a| {
                let mut c = a.certs.clone();
                c.push(extra.clone());
                Some(c)
            })
            .unwrap();
        assert_eq!(changes.len(), ca.anchors.len());
        for (c, a) in changes.iter().zip(&ca.anchors) {
            let crate::model::NewContent::File(bytes) = &c.content else {
                panic!()
            };
            match &a.kind {
                AnchorKind::CaFile => {
                    let certs = pki::certificates(&pki::parse_pem(bytes).unwrap()).unwrap();
                    assert_eq!(certs.len(), 2);
                    assert_eq!(certs[0].der, a.certs[0].der);
                }
                AnchorKind::Kubeconfig { cluster } => {
                    let old = String::from_utf8(a.source.to_vec()).unwrap();
                    let new = String::from_utf8(bytes.clone()).unwrap();
                    // Only the one value differs: every other line is the same.
                    let diff: Vec<_> = old
                        .lines()
                        .zip(new.lines())
                        .filter(|(x, y)| x != y)
                        .collect();
                    assert_eq!(diff.len(), 1, "{cluster}");
                    assert!(diff[0].0.contains("certificate-authority-data: "));
                    let e = kubeconfig::clusters(bytes, &a.path).unwrap();
                    let ClusterTrust::Embedded { pem, .. } = &e[0].trust else {
                        panic!()
                    };
                    assert_eq!(
                        pem,
                        bundle_pem(&[a.certs[0].clone(), extra.clone()]).as_bytes()
                    );
                }
            }
        }
        let e = ca.changes(|_| Some(Vec::new())).unwrap_err();
        assert!(e.to_string().contains("at least one certificate"), "{e}");
    }

    #[test]
    fn a_worker_has_its_ca_file_and_kubelet_conf() {
        let d = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let mut spec = fixture::NodeSpec::worker(now);
        spec.kubelet_conf_embedded = true;
        fixture::build(d.path(), &spec).unwrap();
        let root = NodeRoot::new(d.path());
        let copies = NodeCopies::read(&root, &Settings::default());
        assert_eq!(copies.role, NodeRole::Worker);
        assert_eq!(copies.authorities.len(), 1);
        let ca = &copies.authorities[0];
        assert!(!ca.has_key);
        let paths: Vec<_> = ca.anchors.iter().map(|a| a.path.clone()).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("/etc/kubernetes/pki/ca.crt"),
                PathBuf::from("/etc/kubernetes/kubelet.conf")
            ]
        );
    }

    #[test]
    fn an_unparsable_kubeconfig_is_listed() {
        let (d, root, s) = node();
        std::fs::write(d.path().join("etc/kubernetes/scheduler.conf"), "{{{ no").unwrap();
        let copies = NodeCopies::read(&root, &s);
        assert_eq!(copies.unreadable.len(), 1);
        let e = copies.unreadable[0].to_string();
        assert!(e.starts_with("/etc/kubernetes/scheduler.conf: "), "{e}");
    }

    #[test]
    fn names() {
        assert_eq!(canonical_name("etcd-ca"), Some("etcd/ca"));
        assert_eq!(canonical_name("etcd/ca"), Some("etcd/ca"));
        assert_eq!(canonical_name("apiserver"), None);
    }
}
