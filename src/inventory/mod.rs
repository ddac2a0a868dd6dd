//! Inventory: what certificates this node holds, read from its files alone.
//!
//! [`layout`] decides which targets and CAs a node has (control plane or worker, stacked
//! etcd or not, kubelet.conf embedded or pointing at the kubelet's symlink), from the
//! configuration and what exists on disk. [`read`] then reads each target into facts or
//! an error that names the file and the problem. Nothing here writes.

pub mod anchors;
mod endpoints;
pub mod files;
pub mod kubeadm;
pub mod keys;
pub mod kubelet;
pub mod serving;
mod layout;
mod overlap;
mod read;
mod select;

pub use files::NodeFiles;
pub use layout::{layout, layout_in};
pub use read::{read, read_authorities, read_in, read_target, read_target_in};
pub use select::{select, SelectError};

/// What the node holds, read once: every target and CA of its layout.
pub fn read_node(root: &crate::node::NodeRoot, settings: &crate::config::Settings) -> Inventory {
    read(&layout(settings, root), root)
}

/// The node as one command sees it, read once after the lock: its layout, every target
/// and CA ([`Inventory`]), and every copy of each CA ([`anchors::NodeCopies`]: the CA
/// files and the kubeconfigs' `certificate-authority-data`). A command reads it again
/// only after its own writes, never to look something up it already read.
#[derive(Clone, Debug)]
pub struct NodeModel {
    pub layout: Layout,
    pub inventory: Inventory,
    pub anchors: anchors::NodeCopies,
}

/// One command's [`NodeModel`], read on first use and kept: a command that finds it has
/// nothing to do (no rotation journal, say) reads nothing. Each component's endpoints
/// ([`NodeReader::endpoints`]) are read apart from the model, on first use too: only a
/// command that probes a component reads its manifest for them (`status` never does).
pub struct NodeReader<'a> {
    pub root: &'a crate::node::NodeRoot,
    pub settings: &'a crate::config::Settings,
    model: std::cell::OnceCell<NodeModel>,
    endpoints: std::cell::RefCell<BTreeMap<Component, Rc<[Endpoint]>>>,
}

impl<'a> NodeReader<'a> {
    pub fn new(root: &'a crate::node::NodeRoot, settings: &'a crate::config::Settings) -> Self {
        NodeReader {
            root,
            settings,
            model: std::cell::OnceCell::new(),
            endpoints: Default::default(),
        }
    }

    /// The model, read now if this is its first use.
    pub fn get(&self) -> &NodeModel {
        self.model
            .get_or_init(|| NodeModel::read(self.root, self.settings))
    }

    /// Where `component` serves and what to check there (its static pod manifest's
    /// flags or the kubelet's configuration, else kubeadm's defaults), read on the
    /// first call for it and kept for the command: the broken check of a deferred
    /// group, the probe before a restart, the restart lock's check for a broken
    /// component and the verification after a restart or a rollback all look at the
    /// same endpoints. The agent's own manifest writes (the restart annotation, a
    /// rotation's signer flag) never change where a component listens.
    pub fn endpoints(&self, component: &Component) -> Rc<[Endpoint]> {
        if let Some(known) = self.endpoints.borrow().get(component) {
            return Rc::clone(known);
        }
        let read: Rc<[Endpoint]> =
            endpoints::read_endpoints(self.root, &self.settings.kubeadm, component).into();
        tracing::debug!(component = %component.name(), endpoints = ?read, "read where the component listens");
        self.endpoints
            .borrow_mut()
            .insert(component.clone(), Rc::clone(&read));
        read
    }
}

impl NodeModel {
    pub fn read(root: &crate::node::NodeRoot, settings: &crate::config::Settings) -> NodeModel {
        // One reading: the layout, the inventory and the CA copies share each
        // kubeconfig, read and parsed once.
        let files = NodeFiles::new(root);
        let layout = layout_in(settings, &files);
        let inventory = read_in(&layout, &files);
        let anchors = anchors::NodeCopies::read_in(&layout, &files, settings);
        NodeModel {
            layout,
            inventory,
            anchors,
        }
    }
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{ExtraKind, Settings, WindowSettings};
use crate::model::{Component, Endpoint, TargetKind};
use crate::node::kubeconfig::{ClientCredential, KubeconfigError};
use crate::node::{NodeError, NodeRoot};
use crate::pki::{self, CertFacts, KeyAlgorithm, KeyEncoding, PkiError, PrivateKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    ControlPlane,
    Worker,
}

/// One certificate the agent looks after.
#[derive(Clone, Debug)]
pub struct Target {
    /// kubeadm's name where it has one (apiserver, etcd/server, admin.conf,
    /// kubelet-client-current.pem, kubelet.crt), else the configured one.
    pub name: String,
    pub kind: TargetKind,
    /// Node path of the certificate file, kubeconfig or kubelet symlink.
    pub path: PathBuf,
    /// Node path of the separate key file, for certificates.
    pub key: Option<PathBuf>,
    pub component: Option<Component>,
    /// Absent is normal (super-admin.conf on a secondary control plane).
    pub optional: bool,
    pub window: WindowSettings,
    /// The kubelet rotates it itself (kubelet-client-current.pem with
    /// `rotateCertificates`, kubelet-server-current.pem with `serverTLSBootstrap`): the
    /// window gives way to the safety net. `None`: the agent's, by the window.
    pub handover: Option<Handover>,
    /// kubelet.crt issued by the cluster (`[kubelet] serving`), with what the node's
    /// files say about its names. `None`: renewed as it is.
    pub serving: Option<Arc<serving::ServingPlan>>,
    /// One of its files is another target's or a CA's ([`overlap`]): it is neither
    /// read nor renewed, and this says which file and whose it is.
    pub conflict: Option<String>,
}

/// A certificate the kubelet renews itself through the CSR API while it can: the agent
/// renews it only once `after_fraction` of its lifetime has passed (the kubelet's own
/// deadline is a jittered 70-90%), or once expired.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Handover {
    pub after_fraction: f64,
}

/// A certificate authority of the node.
#[derive(Clone, Debug)]
pub struct AuthorityDef {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which targets and authorities this node has.
#[derive(Clone, Debug)]
pub struct Layout {
    pub role: NodeRole,
    pub targets: Vec<Target>,
    pub authorities: Vec<AuthorityDef>,
}

/// Who signed a certificate, as far as the node can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signer {
    /// One of the node's authorities, by name.
    Authority(String),
    /// The throwaway CA that follows the leaf in the same file (the kubelet's own
    /// kubelet.crt scheme, and only kubelet.crt's).
    Bundled,
    /// An intermediate CA that follows the leaf in its file (an external intermediate
    /// CA), by subject: its key is not on the node.
    Intermediate(String),
    SelfSigned,
    /// Signed by no CA known on this node.
    Unknown,
}

impl Signer {
    pub fn label(&self) -> String {
        match self {
            Signer::Authority(n) => n.clone(),
            Signer::Bundled => "self-signed (bundled CA)".into(),
            Signer::Intermediate(subject) => format!("intermediate CA {subject} (in the file)"),
            Signer::SelfSigned => "self-signed".into(),
            Signer::Unknown => "unknown".into(),
        }
    }
}

/// What was read of a target.
#[derive(Clone)]
pub struct Reading {
    pub cert: CertFacts,
    /// Further certificates in the same file (kubelet.crt's throwaway CA).
    pub chain: Vec<CertFacts>,
    /// Node path of the file the certificate was read from (after following links and
    /// kubeconfig file references).
    pub cert_file: PathBuf,
    /// Node path of the key file, when separate from the certificate.
    pub key_file: Option<PathBuf>,
    pub key_algorithm: KeyAlgorithm,
    pub key_encoding: KeyEncoding,
    pub signer: Signer,
    /// The key in use now, as read (renewals with `--reuse-key` keep it); `None` for a
    /// watched certificate without a key.
    pub key: Option<Arc<PrivateKey>>,
    /// The bytes of the target's own file (a kubeconfig is rewritten from them, so the
    /// renewal changes nothing but the certificate fields).
    pub source: Arc<Vec<u8>>,
    /// A kubeconfig whose client certificate is the kubelet's
    /// kubelet-client-current.pem symlink: renewed by client-go's symlink scheme.
    pub kubelet_link: Option<PathBuf>,
    /// The DNS and IP SANs of kubelet.crt issued by the cluster (`[kubelet] serving`
    /// other than self-signed), for the plan to compare with what is wanted; `None`
    /// for every other target.
    pub alt_names: Option<crate::pki::AltNames>,
    /// The file holding the key (key file, certificate-and-key file or kubeconfig) is
    /// open to group or others.
    pub open_key: Option<keys::OpenKey>,
}

/// By hand, not derived: `source` holds the whole file, which for a kubeconfig or the
/// kubelet's .pem includes the private key; it shows as its length only.
impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading")
            .field("cert", &self.cert)
            .field("chain", &self.chain)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("key_algorithm", &self.key_algorithm)
            .field("key_encoding", &self.key_encoding)
            .field("signer", &self.signer)
            .field("key", &self.key)
            .field("source", &format_args!("<{} bytes>", self.source.len()))
            .field("kubelet_link", &self.kubelet_link)
            .field("alt_names", &self.alt_names)
            .field("open_key", &self.open_key)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub enum TargetState {
    Missing,
    /// Present, but nothing the agent renews: a kubeconfig whose user authenticates
    /// with a token, an exec plugin or OIDC. Listed, never an error.
    NotManaged(String),
    Error(String),
    Read(Box<Reading>),
}

#[derive(Clone, Debug)]
pub struct Observed {
    pub target: Target,
    pub state: TargetState,
}

/// Why a target or an authority could not be read: the file and what is wrong with it.
/// Sources that cannot be cloned are shared, since an inventory is cloned whole.
#[derive(Clone, Debug, thiserror::Error)]
pub enum InventoryError {
    /// The node gate refused or failed the read (its message names the path).
    #[error("{0}")]
    Node(Arc<NodeError>),
    #[error("{}: file not found", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: Arc<KubeconfigError>,
    },
    /// A PEM, certificate or key problem in `path`.
    #[error("{}: {source}", path.display())]
    Pki {
        path: PathBuf,
        #[source]
        source: PkiError,
    },
    #[error("{}: no CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: is not a CA certificate", path.display())]
    NotACa { path: PathBuf },
    #[error("{}: is a CA certificate, not a leaf to renew", path.display())]
    IsACa { path: PathBuf },
    #[error("{}: user {user:?} has client-certificate-data but no client-key-data", path.display())]
    NoClientKeyData { path: PathBuf, user: String },
    #[error("{}: client-key-data: {source}", path.display())]
    ClientKeyData {
        path: PathBuf,
        #[source]
        source: PkiError,
    },
    #[error("{}: holds no private key", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
}

impl From<NodeError> for InventoryError {
    fn from(e: NodeError) -> Self {
        InventoryError::Node(Arc::new(e))
    }
}

#[derive(Clone, Debug)]
pub struct ObservedAuthority {
    pub def: AuthorityDef,
    /// The issuing CA: the first certificate of the CA file (kubeadm pairs it with the
    /// key beside it).
    pub cert: Result<CertFacts, InventoryError>,
    /// Every certificate of the CA file: old and new during a manual CA rotation, or a
    /// chain. A leaf signed by any of them is this authority's.
    pub bundle: Vec<CertFacts>,
    pub has_key: bool,
    /// The key is there but cannot sign for the CA (unreadable, not a key, another
    /// CA's): what needs it is not renewable, and the read-only commands fail naming it.
    pub key_error: Option<InventoryError>,
    /// The key file is open to group or others.
    pub open_key: Option<keys::OpenKey>,
}

#[derive(Clone, Debug)]
pub struct Inventory {
    pub role: NodeRole,
    pub certificates: Vec<Observed>,
    pub authorities: Vec<ObservedAuthority>,
}

impl Inventory {
    /// Whether any present target could not be read.
    pub fn has_errors(&self) -> bool {
        self.certificates
            .iter()
            .any(|o| matches!(o.state, TargetState::Error(_)))
            || self
                .authorities
                .iter()
                .any(|a| a.cert.is_err() || a.key_error.is_some())
    }

    /// Every private key file of the node open to group or others: the CAs' and the
    /// targets' (`status`, `ca status` and `plan` warn; only `run` rewrites a key, 0600).
    pub fn open_keys(&self) -> Vec<&keys::OpenKey> {
        let cas = self.authorities.iter().filter_map(|a| a.open_key.as_ref());
        let leaves = self.certificates.iter().filter_map(|o| match &o.state {
            TargetState::Read(r) => r.open_key.as_ref(),
            _ => None,
        });
        cas.chain(leaves).collect()
    }

    pub fn authority(&self, name: &str) -> Option<&ObservedAuthority> {
        self.authorities.iter().find(|a| a.def.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[targets."NAME"]` is checked against model's list: it must hold every name the
    /// layout gives a kubeadm node.
    #[test]
    fn every_kubeadm_target_name_is_known_to_the_configuration() {
        let d = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        crate::fixture::build(d.path(), &crate::fixture::NodeSpec::control_plane(now)).unwrap();
        let root = NodeRoot::new(d.path());
        let s = Settings::default();
        for t in layout(&s, &root).targets {
            assert!(
                crate::model::KUBEADM_TARGET_NAMES.contains(&t.name.as_str())
                    || s.kubeadm.user_kubeconfigs.contains(&t.path),
                "{}",
                t.name
            );
        }
    }

    /// One reading of the node reads and parses each kubeconfig once: the inventory's
    /// reading of admin.conf and its CA copy are the same bytes, not a second read.
    #[test]
    fn the_model_reads_each_kubeconfig_once_for_inventory_and_anchors() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let s = Settings::default();
        let files = NodeFiles::new(&root);
        let layout = layout_in(&s, &files);
        let inventory = read_in(&layout, &files);
        let anchors = anchors::NodeCopies::read_in(&layout, &files, &s);
        // admin.conf, super-admin.conf, controller-manager.conf, scheduler.conf,
        // kubelet.conf and /root/.kube/config: each read once by the three of them.
        assert_eq!(files.kubeconfigs_read(), 6);
        let ca = anchors.authority("ca").unwrap();
        let mut shared = 0;
        for o in &inventory.certificates {
            let TargetState::Read(r) = &o.state else {
                continue;
            };
            if o.target.kind != TargetKind::Kubeconfig {
                continue;
            }
            let anchor = ca
                .anchors
                .iter()
                .find(|a| a.path == r.cert_file)
                .unwrap_or_else(|| panic!("{}: no CA copy", o.target.name));
            assert!(Arc::ptr_eq(&anchor.source, &r.source), "{}", o.target.name);
            shared += 1;
        }
        assert!(shared >= 4, "{shared}");
        // What a separate read of the model finds is the same.
        let model = NodeModel::read(&root, &s);
        let alone = anchors::NodeCopies::read(&root, &s);
        assert_eq!(model.anchors.authorities.len(), alone.authorities.len());
        for (a, b) in model.anchors.authorities.iter().zip(&alone.authorities) {
            let paths = |c: &anchors::AuthorityCopies| {
                c.anchors
                    .iter()
                    .map(|a| (a.path.clone(), a.kind.clone(), a.source.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(paths(a), paths(b));
        }
    }

    #[test]
    fn components_parse_and_print_their_kubernetes_names() {
        for n in [
            "kube-apiserver",
            "etcd",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "containerd.service",
            "static-pod:kube-vip",
        ] {
            assert_eq!(Component::parse(n).unwrap().unwrap().name(), n);
        }
        assert_eq!(Component::parse("none").unwrap(), None);
        assert!(Component::parse("apiserver").is_err());
        assert!(Component::parse("static-pod:../x").is_err());
    }
}
