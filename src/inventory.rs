//! Inventory: what certificates this node holds, read from its files alone.
//!
//! [`layout`] decides which targets and CAs a node has (control plane or worker, stacked
//! etcd or not, kubelet.conf embedded or pointing at the kubelet's symlink), from the
//! configuration and what exists on disk. [`read`] then reads each target into facts or
//! an error that names the file and the problem. Nothing here writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::config::{ExtraKind, Settings, WindowSettings};
use crate::model::{Component, TargetKind};
use crate::node::kubeconfig::{self, ClientCredential, KubeconfigError};
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

/// Decides the node's targets from the settings and what exists under the root.
pub fn layout(settings: &Settings, root: &NodeRoot) -> Layout {
    let k = &settings.kubeadm;
    let pki = &k.pki_dir;
    let confs = &k.kubeconfig_dir;
    let kubelet_pki = &k.kubelet_pki_dir;
    let control_plane = root.exists(&pki.join("apiserver.crt"))
        || root.exists(&pki.join("ca.key"))
        || root.exists(&k.manifests_dir.join("kube-apiserver.yaml"));
    let stacked_etcd = root.exists(&pki.join("etcd/ca.crt"));
    let mut targets = Vec::new();
    let mut add = |name: &str,
                   kind: TargetKind,
                   path: PathBuf,
                   key: Option<PathBuf>,
                   component: Option<Component>,
                   optional: bool| {
        targets.push(Target {
            name: name.to_string(),
            kind,
            path,
            key,
            component,
            optional,
            window: settings.window,
        })
    };
    use Component::*;
    use TargetKind::*;
    let pair = |n: &str| {
        (
            pki.join(format!("{n}.crt")),
            Some(pki.join(format!("{n}.key"))),
        )
    };
    let mut authorities = Vec::new();
    if control_plane {
        for (name, comp) in [
            ("apiserver", KubeApiserver),
            ("apiserver-kubelet-client", KubeApiserver),
            ("front-proxy-client", KubeApiserver),
        ] {
            let (c, key) = pair(name);
            add(name, Certificate, c, key, Some(comp), false);
        }
        // With external etcd the etcd client pair is the operator's, and may be absent.
        let (c, key) = pair("apiserver-etcd-client");
        add(
            "apiserver-etcd-client",
            Certificate,
            c,
            key,
            Some(KubeApiserver),
            !stacked_etcd,
        );
        if stacked_etcd {
            for name in ["etcd/server", "etcd/peer", "etcd/healthcheck-client"] {
                let (c, key) = pair(name);
                add(name, Certificate, c, key, Some(Etcd), false);
            }
        }
        add(
            "admin.conf",
            Kubeconfig,
            confs.join("admin.conf"),
            None,
            None,
            false,
        );
        // Exists only on the node where `kubeadm init` ran.
        add(
            "super-admin.conf",
            Kubeconfig,
            confs.join("super-admin.conf"),
            None,
            None,
            true,
        );
        add(
            "controller-manager.conf",
            Kubeconfig,
            confs.join("controller-manager.conf"),
            None,
            Some(KubeControllerManager),
            false,
        );
        add(
            "scheduler.conf",
            Kubeconfig,
            confs.join("scheduler.conf"),
            None,
            Some(KubeScheduler),
            false,
        );
        for u in &k.user_kubeconfigs {
            add(
                &u.to_string_lossy(),
                Kubeconfig,
                u.clone(),
                None,
                None,
                true,
            );
        }
        for name in ["ca", "front-proxy-ca"] {
            authorities.push(AuthorityDef {
                name: name.into(),
                cert: pki.join(format!("{name}.crt")),
                key: pki.join(format!("{name}.key")),
            });
        }
        if stacked_etcd {
            authorities.push(AuthorityDef {
                name: "etcd/ca".into(),
                cert: pki.join("etcd/ca.crt"),
                key: pki.join("etcd/ca.key"),
            });
        }
    } else {
        authorities.push(AuthorityDef {
            name: "ca".into(),
            cert: pki.join("ca.crt"),
            key: pki.join("ca.key"),
        });
    }
    // kubelet.conf usually points at kubelet-client-current.pem: then the client
    // certificate is reported once, as kubelet-client-current.pem.
    let kubelet_conf = confs.join("kubelet.conf");
    let current = kubelet_pki.join("kubelet-client-current.pem");
    let conf_uses_current = match root.read(&kubelet_conf) {
        Ok(bytes) => match kubeconfig::parse(&bytes, &kubelet_conf) {
            Ok(kc) => match kc.credential {
                ClientCredential::Files { cert, .. } => {
                    let a = root.resolve(&cert).ok();
                    let b = root.resolve(&current).ok();
                    cert == current || (a.is_some() && a == b)
                }
                ClientCredential::Embedded { .. } | ClientCredential::NotACertificate { .. } => {
                    false
                }
            },
            Err(_) => false,
        },
        Err(_) => false,
    };
    let conf_present = root.exists(&kubelet_conf);
    if !conf_uses_current {
        add(
            "kubelet.conf",
            Kubeconfig,
            kubelet_conf,
            None,
            Some(Kubelet),
            !control_plane && !conf_present,
        );
    }
    // An older node embeds the client certificate in kubelet.conf and has no symlink.
    add(
        "kubelet-client-current.pem",
        KubeletClient,
        current,
        None,
        Some(Kubelet),
        !conf_uses_current,
    );
    // Absent when the kubelet's serving certificate is bootstrapped through the API.
    add(
        "kubelet.crt",
        KubeletServing,
        kubelet_pki.join("kubelet.crt"),
        Some(kubelet_pki.join("kubelet.key")),
        Some(Kubelet),
        true,
    );

    for x in &settings.extra {
        let component = x
            .component
            .as_deref()
            .and_then(|c| Component::parse(c).ok().flatten());
        let window = WindowSettings {
            remaining_fraction: x
                .remaining_fraction
                .unwrap_or(settings.window.remaining_fraction),
            remaining_days: x.remaining_days.unwrap_or(settings.window.remaining_days),
        };
        let mut push = |name: String, kind, path: PathBuf, key: Option<PathBuf>| {
            targets.push(Target {
                name,
                kind,
                path,
                key,
                component: component.clone(),
                optional: false,
                window,
            })
        };
        match x.kind {
            ExtraKind::Certificate => {
                let key = x.key.clone().or_else(|| Some(x.path.with_extension("key")));
                push(x.name.clone(), Certificate, x.path.clone(), key);
            }
            ExtraKind::Kubeconfig => push(x.name.clone(), Kubeconfig, x.path.clone(), None),
            ExtraKind::Directory => {
                let Ok(entries) = root.read_dir(&x.path) else {
                    // A configured directory that is not there is an error, not an empty
                    // result: listed as its own target, whose read names the problem.
                    push(x.name.clone(), Certificate, x.path.clone(), None);
                    continue;
                };
                let mut names: Vec<String> = entries
                    .into_iter()
                    .map(|(n, _)| n.to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.') && (n.ends_with(".crt") || n.ends_with(".pem")))
                    .collect();
                names.sort();
                for n in names {
                    let path = x.path.join(&n);
                    let key = path.with_extension("key");
                    let key = root.exists(&key).then_some(key);
                    push(format!("{}/{n}", x.name), Certificate, path, key);
                }
            }
        }
    }
    for t in targets.iter_mut() {
        if let Some(o) = settings.targets.get(&t.name) {
            if let Some(f) = o.remaining_fraction {
                t.window.remaining_fraction = f;
            }
            if let Some(d) = o.remaining_days {
                t.window.remaining_days = d;
            }
        }
    }
    targets.retain(|t| {
        settings
            .targets
            .get(&t.name)
            .and_then(|o| o.enabled)
            .unwrap_or(true)
    });
    Layout {
        role: if control_plane {
            NodeRole::ControlPlane
        } else {
            NodeRole::Worker
        },
        targets,
        authorities,
    }
}

/// kubeadm's names for targets whose node name differs (`kubeadm certs renew etcd-server`).
const KUBEADM_ALIASES: &[(&str, &str)] = &[
    ("etcd-server", "etcd/server"),
    ("etcd-peer", "etcd/peer"),
    ("etcd-healthcheck-client", "etcd/healthcheck-client"),
];

/// A target argument of `renew` or `cert-renew` that names nothing on this node.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("{arg}: not a target of this node; valid names: {valid} (or a node path of a certificate or kubeconfig)")]
    UnknownName { arg: String, valid: String },
    #[error("{}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
}

/// The targets `args` name, in order: the names `status` prints, kubeadm's names
/// (`etcd-server`, ...), or node paths (a certificate, its key, a kubeconfig, the file
/// behind the kubelet's symlink). A path that is no target of the layout is taken by
/// its content: a certificate with its key inside or `.key` beside it, else a
/// kubeconfig.
pub fn select(
    layout: &Layout,
    root: &NodeRoot,
    args: &[PathBuf],
) -> Result<Vec<Target>, SelectError> {
    args.iter().map(|a| select_one(layout, root, a)).collect()
}

fn select_one(layout: &Layout, root: &NodeRoot, arg: &Path) -> Result<Target, SelectError> {
    let text = arg.to_string_lossy();
    let name = KUBEADM_ALIASES
        .iter()
        .find(|(alias, _)| *alias == text)
        .map_or(text.as_ref(), |(_, name)| name);
    if let Some(t) = layout.targets.iter().find(|t| t.name == name) {
        return Ok(t.clone());
    }
    let path = crate::node::normalize(arg);
    let resolved = root.resolve(&path).unwrap_or_else(|_| path.clone());
    for t in &layout.targets {
        if t.path == path
            || t.key.as_deref() == Some(path.as_path())
            || root.resolve(&t.path).ok().as_deref() == Some(resolved.as_path())
        {
            return Ok(t.clone());
        }
    }
    if !arg.is_absolute() && !root.exists(&path) {
        let mut valid: Vec<&str> = layout.targets.iter().map(|t| t.name.as_str()).collect();
        valid.extend(KUBEADM_ALIASES.iter().map(|(a, _)| *a));
        return Err(SelectError::UnknownName {
            arg: text.into_owned(),
            valid: valid.join(", "),
        });
    }
    detect(root, &path)
}

/// A target for a file the layout does not know, from what the file holds.
fn detect(root: &NodeRoot, path: &Path) -> Result<Target, SelectError> {
    let unusable = |reason: String| SelectError::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    let (_, bytes) = root.read_file(path).map_err(|e| SelectError::Unusable {
        path: e.path.clone(),
        reason: e.problem.to_string(),
    })?;
    let base = |kind, key| Target {
        name: path.display().to_string(),
        kind,
        path: path.to_path_buf(),
        key,
        component: None,
        optional: false,
        window: Default::default(),
    };
    let has = |marker: &[u8]| bytes.windows(marker.len()).any(|w| w == marker);
    if !has(b"-----BEGIN CERTIFICATE-----") {
        return Ok(base(TargetKind::Kubeconfig, None));
    }
    if has(b"PRIVATE KEY-----") {
        // Certificate and key in one file; behind a symlink, the kubelet's scheme.
        return Ok(if root.is_symlink(path) {
            base(TargetKind::KubeletClient, None)
        } else {
            base(TargetKind::Certificate, Some(path.to_path_buf()))
        });
    }
    let key = path.with_extension("key");
    if !root.exists(&key) {
        return Err(unusable(format!(
            "no private key in the file and no {} beside it",
            key.display()
        )));
    }
    // The kubelet's serving certificate by its name: its bundled throwaway CA is renewed
    // with it (a chain in any other file is an intermediate CA, kept as it is).
    let kind = if path.file_name().is_some_and(|n| n == "kubelet.crt") {
        TargetKind::KubeletServing
    } else {
        TargetKind::Certificate
    };
    Ok(base(kind, Some(key)))
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
#[derive(Clone, Debug)]
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
            || self.authorities.iter().any(|a| a.cert.is_err())
    }

    pub fn authority(&self, name: &str) -> Option<&ObservedAuthority> {
        self.authorities.iter().find(|a| a.def.name == name)
    }
}

/// Reads every target and authority of the layout.
pub fn read(layout: &Layout, root: &NodeRoot) -> Inventory {
    let authorities: Vec<ObservedAuthority> = layout
        .authorities
        .iter()
        .map(|def| read_authority(def, root))
        .collect();
    let certificates = layout
        .targets
        .iter()
        .map(|t| Observed {
            target: t.clone(),
            state: read_target(t, root, &authorities),
        })
        .collect();
    Inventory {
        role: layout.role,
        certificates,
        authorities,
    }
}

fn read_authority(def: &AuthorityDef, root: &NodeRoot) -> ObservedAuthority {
    let certs = read_file(root, &def.cert).and_then(|(_, bytes)| {
        let blocks = pki::parse_pem(&bytes).map_err(at(&def.cert))?;
        Ok(pki::certificates(&blocks).map_err(at(&def.cert))?)
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
    ObservedAuthority {
        def: def.clone(),
        cert,
        bundle,
        has_key: root.exists(&def.key),
    }
}

/// The node gate's read, with its error as this module's.
fn read_file(root: &NodeRoot, path: &Path) -> Result<(PathBuf, Vec<u8>), InventoryError> {
    Ok(root.read_file(path)?)
}

fn read_target(t: &Target, root: &NodeRoot, authorities: &[ObservedAuthority]) -> TargetState {
    if !root.exists(&t.path) {
        return if t.optional {
            TargetState::Missing
        } else {
            TargetState::Error(
                InventoryError::NotFound {
                    path: t.path.clone(),
                }
                .to_string(),
            )
        };
    }
    match read_reading(t, root, authorities) {
        Ok(Found::Cert(r)) => TargetState::Read(r),
        Ok(Found::NotManaged(why)) => TargetState::NotManaged(why),
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
    root: &NodeRoot,
    authorities: &[ObservedAuthority],
) -> Result<Found, InventoryError> {
    // (file the certs came from, cert blocks' file bytes, separate key file)
    let mut source: Option<Vec<u8>> = None;
    let mut kubelet_link = None;
    let (cert_file, cert_bytes, key_source): (PathBuf, Vec<u8>, KeySource) = match t.kind {
        TargetKind::Certificate | TargetKind::KubeletServing => {
            let (f, b) = read_file(root, &t.path)?;
            let key = match &t.key {
                Some(k) => KeySource::File(k.clone()),
                None => KeySource::None,
            };
            (f, b, key)
        }
        TargetKind::KubeletClient => {
            let (f, b) = read_file(root, &t.path)?;
            (f.clone(), b, KeySource::SameFile(f))
        }
        TargetKind::Kubeconfig => {
            let (f, b) = read_file(root, &t.path)?;
            let kc = kubeconfig::parse(&b, &t.path).map_err(|e| InventoryError::Kubeconfig {
                path: f.clone(),
                source: Arc::new(e),
            })?;
            source = Some(b);
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
                    let (cf, cb) = read_file(root, &cert)?;
                    let key = match key {
                        Some(k) => KeySource::File(k),
                        None => KeySource::SameFile(cf.clone()),
                    };
                    (cf, cb, key)
                }
            }
        }
    };
    let blocks = pki::parse_pem(&cert_bytes).map_err(at(&cert_file))?;
    let source = Arc::new(source.unwrap_or_else(|| cert_bytes.clone()));
    let mut certs = pki::certificates(&blocks).map_err(at(&cert_file))?;
    if certs.is_empty() {
        return Err(InventoryError::NoCertificate { path: cert_file });
    }
    let cert = certs.remove(0);
    let (key, key_file) = match key_source {
        KeySource::None => (None, None),
        KeySource::SameFile(f) => {
            let k = PrivateKey::from_blocks(&blocks)
                .map_err(at(&f))?
                .ok_or_else(|| InventoryError::NoPrivateKey { path: f.clone() })?;
            (Some(k), None)
        }
        KeySource::Embedded(pem) => {
            let k = PrivateKey::from_pem(&pem).map_err(|source| InventoryError::ClientKeyData {
                path: cert_file.clone(),
                source,
            })?;
            (Some(k), None)
        }
        KeySource::File(kf) => {
            let (kf, kb) = read_file(root, &kf)?;
            let k = PrivateKey::from_pem(&kb).map_err(at(&kf))?;
            (Some(k), Some(kf))
        }
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
