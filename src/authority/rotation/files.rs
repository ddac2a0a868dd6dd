//! The node files a rotation of one CA reads and writes: the CA file and key, the
//! controller-manager's single-certificate signer file and its manifest flag, the
//! kubeconfigs that embed the CA, the leaves the CA signed (the serving ones carry the
//! cross certificate), and what must restart. Edits of kubeconfigs and the manifest are
//! pure functions of their bytes, checked by re-parsing.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::inventory::{self, Inventory, NodeRole, Reading, Signer, TargetState};
use crate::model::Component;
use crate::node::manifest::StaticPodManifest;
use crate::node::NodeRoot;
use crate::pki::{self, CertFacts};

/// The controller-manager flag that must name a file with exactly one certificate.
pub const SIGNER_FLAG: &str = "cluster-signing-cert-file";

/// Why a node file cannot be edited as the rotation needs.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{}: {what}", path.display())]
    Unusable { path: PathBuf, what: String },
}

fn unusable(path: &Path, what: impl Into<String>) -> EditError {
    EditError::Unusable {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// A CA of the node and everything of it a rotation touches.
#[derive(Clone, Debug)]
pub struct CaFiles {
    pub name: &'static str,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `pki/ca-signer.crt` for the cluster CA (the KCM's signer during a rotation).
    pub signer: Option<PathBuf>,
    pub kcm_manifest: PathBuf,
    /// Certificate files whose served chain carries the cross certificate.
    pub serving: Vec<PathBuf>,
    /// What holds this CA in memory, in restart order.
    pub restart: Vec<Component>,
}

impl CaFiles {
    /// `role`: the node's ([`crate::inventory::Layout::role`]), which decides what restarts.
    pub fn of(settings: &Settings, role: NodeRole, name: &'static str) -> CaFiles {
        let k = &settings.kubeadm;
        let pki = &k.pki_dir;
        let (cert, key) = match name {
            "etcd/ca" => (pki.join("etcd/ca.crt"), pki.join("etcd/ca.key")),
            n => (pki.join(format!("{n}.crt")), pki.join(format!("{n}.key"))),
        };
        let (signer, serving) = match name {
            "ca" => (
                Some(pki.join("ca-signer.crt")),
                vec![pki.join("apiserver.crt")],
            ),
            "etcd/ca" => (
                None,
                vec![pki.join("etcd/server.crt"), pki.join("etcd/peer.crt")],
            ),
            _ => (None, Vec::new()),
        };
        let restart = crate::plan::ca_restarts(name, role);
        CaFiles {
            name,
            cert,
            key,
            signer,
            kcm_manifest: k.manifests_dir.join("kube-controller-manager.yaml"),
            serving,
            restart,
        }
    }

    /// Manifests of the static pods that restart for this CA.
    pub fn manifests(&self, settings: &Settings) -> Vec<PathBuf> {
        self.restart
            .iter()
            .filter_map(|c| static_pod(c))
            .map(|p| settings.kubeadm.manifests_dir.join(format!("{p}.yaml")))
            .collect()
    }
}

/// The static pod name of a control-plane component.
pub fn static_pod(c: &Component) -> Option<&'static str> {
    match c {
        Component::KubeApiserver => Some("kube-apiserver"),
        Component::KubeControllerManager => Some("kube-controller-manager"),
        Component::KubeScheduler => Some("kube-scheduler"),
        Component::Etcd => Some("etcd"),
        _ => None,
    }
}

/// The leaves this CA signed (any certificate of its file), as the inventory read them.
pub fn leaves<'i>(inv: &'i Inventory, ca: &str) -> Vec<(&'i inventory::Observed, &'i Reading)> {
    inv.certificates
        .iter()
        .filter_map(|o| leaf_of(o, ca).map(|r| (o, r)))
        .collect()
}

/// The reading of a target this CA signed.
pub fn leaf_of<'i>(o: &'i inventory::Observed, ca: &str) -> Option<&'i Reading> {
    match &o.state {
        TargetState::Read(r) if r.signer == Signer::Authority(ca.to_string()) => Some(r),
        _ => None,
    }
}

/// Every certificate of a PEM file's bytes.
pub fn certs_of(path: &Path, bytes: &[u8]) -> Result<Vec<CertFacts>, EditError> {
    let blocks = pki::parse_pem(bytes).map_err(|e| unusable(path, e.to_string()))?;
    pki::certificates(&blocks).map_err(|e| unusable(path, e.to_string()))
}

/// PEM of certificates in order.
pub fn bundle_pem(certs: &[&CertFacts]) -> String {
    certs.iter().map(|c| super::stage::pem(c)).collect()
}

/// The controller-manager's `--cluster-signing-cert-file`, if its manifest sets one.
pub fn signer_flag(path: &Path, bytes: &[u8]) -> Result<Option<String>, EditError> {
    let m = StaticPodManifest::parse(bytes).map_err(|e| unusable(path, e.to_string()))?;
    Ok(m.container_flags().get(SIGNER_FLAG).cloned())
}

/// The manifest with `--cluster-signing-cert-file=from` changed to `=to`, every other
/// byte kept; the model must see exactly that flag changed.
pub fn with_signer_flag(
    path: &Path,
    bytes: &[u8],
    from: &Path,
    to: &Path,
) -> Result<Vec<u8>, EditError> {
    let text = std::str::from_utf8(bytes).map_err(|_| unusable(path, "not UTF-8 text"))?;
    let old = format!("--{SIGNER_FLAG}={}", from.display());
    let new = format!("--{SIGNER_FLAG}={}", to.display());
    let hits = text
        .match_indices(&old)
        .filter(|(i, _)| {
            // The whole flag value, not a prefix of a longer path.
            let end = i + old.len();
            !text[end..].starts_with(|c: char| !c.is_whitespace() && c != '"' && c != '\'')
        })
        .count();
    if hits != 1 {
        return Err(unusable(
            path,
            format!(
                "expected the flag {old} once, found it {hits} times; edit the manifest by hand"
            ),
        ));
    }
    let edited = text.replacen(&old, &new, 1);
    let before = StaticPodManifest::parse(bytes).map_err(|e| unusable(path, e.to_string()))?;
    let after =
        StaticPodManifest::parse(edited.as_bytes()).map_err(|e| unusable(path, e.to_string()))?;
    let mut want = before.container_flags();
    want.insert(SIGNER_FLAG.into(), to.display().to_string());
    if after.container_flags() != want {
        return Err(unusable(
            path,
            "the edit would change more than the signer flag; edit the manifest by hand",
        ));
    }
    Ok(edited.into_bytes())
}

/// A kubeadm run in progress on this node, in words (inventory::kubeadm: a kubeadm
/// process where the node runs, a recently changed `/etc/kubernetes/tmp/kubeadm-*`
/// directory; older ones are leftovers of past upgrades and stop nothing).
pub fn kubeadm_running(root: &NodeRoot, settings: &Settings) -> Option<String> {
    crate::inventory::kubeadm::activity(root, &settings.kubeadm, time::OffsetDateTime::now_utc())
        .map(|a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signer_flag_moves_and_nothing_else() {
        let m = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-controller-manager\nspec:\n  containers:\n  - command:\n    - kube-controller-manager\n    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt\n    - --root-ca-file=/etc/kubernetes/pki/ca.crt\n    name: kube-controller-manager\n";
        let p = Path::new("/m.yaml");
        assert_eq!(
            signer_flag(p, m).unwrap().as_deref(),
            Some("/etc/kubernetes/pki/ca.crt")
        );
        let out = with_signer_flag(
            p,
            m,
            Path::new("/etc/kubernetes/pki/ca.crt"),
            Path::new("/etc/kubernetes/pki/ca-signer.crt"),
        )
        .unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("--cluster-signing-cert-file=/etc/kubernetes/pki/ca-signer.crt\n"));
        assert!(text.contains("--root-ca-file=/etc/kubernetes/pki/ca.crt\n"));
        assert_eq!(text.len(), m.len() + "-signer".len());
        let back = with_signer_flag(
            p,
            &out,
            Path::new("/etc/kubernetes/pki/ca-signer.crt"),
            Path::new("/etc/kubernetes/pki/ca.crt"),
        )
        .unwrap();
        assert_eq!(back, m.to_vec());
        let e = with_signer_flag(p, m, Path::new("/nope.crt"), Path::new("/x")).unwrap_err();
        assert!(
            e.to_string().starts_with("/m.yaml: expected the flag"),
            "{e}"
        );
    }
}
