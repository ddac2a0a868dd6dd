//! The vocabulary every step shares, with no I/O: what reloads a certificate and what
//! kind of file holds it.

use std::path::PathBuf;

/// The names of the targets a kubeadm node has (as `status` prints them), besides the
/// kubeconfigs of people (`/root/.kube/config`, named by path) and `[[extra]]` ones.
/// `[targets."NAME"]` must name one of them.
pub const KUBEADM_TARGET_NAMES: &[&str] = &[
    "apiserver",
    "apiserver-kubelet-client",
    "front-proxy-client",
    "apiserver-etcd-client",
    "etcd/server",
    "etcd/peer",
    "etcd/healthcheck-client",
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "kubelet.conf",
    "kubelet-client-current.pem",
    "kubelet.crt",
    "kubelet-server-current.pem",
];

use serde::Serialize;

/// What must reload a certificate once it changed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    KubeApiserver,
    Etcd,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
    /// Any other systemd unit, restarted like the kubelet.
    Unit(String),
    /// Any other static pod, by its manifest name (without `.yaml`).
    StaticPod(String),
}

/// A configured component name that is none of the accepted forms. Names no path: it
/// is a value of the configuration, which adds the key it was found under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentError {
    /// `static-pod:NAME` whose NAME is not a bare manifest name.
    #[error("a static pod name is a manifest file name without .yaml")]
    StaticPodName { name: String },
    #[error("expected kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kubelet, none, a systemd unit name (foo.service) or static-pod:NAME")]
    Unknown { value: String },
}

impl Component {
    /// Parses a configured component; `none` is `Ok(None)`.
    pub fn parse(s: &str) -> Result<Option<Component>, ComponentError> {
        Ok(Some(match s {
            "none" | "" => return Ok(None),
            "kube-apiserver" => Component::KubeApiserver,
            "etcd" => Component::Etcd,
            "kube-controller-manager" => Component::KubeControllerManager,
            "kube-scheduler" => Component::KubeScheduler,
            "kubelet" => Component::Kubelet,
            s if s.starts_with("static-pod:") && s.len() > "static-pod:".len() => {
                let name = &s["static-pod:".len()..];
                if name.contains('/') || name.starts_with('.') {
                    return Err(ComponentError::StaticPodName {
                        name: name.to_string(),
                    });
                }
                Component::StaticPod(name.to_string())
            }
            s if s.contains('.') && !s.contains('/') => Component::Unit(s.to_string()),
            _ => {
                return Err(ComponentError::Unknown {
                    value: s.to_string(),
                })
            }
        }))
    }

    pub fn name(&self) -> String {
        match self {
            Component::KubeApiserver => "kube-apiserver".into(),
            Component::Etcd => "etcd".into(),
            Component::KubeControllerManager => "kube-controller-manager".into(),
            Component::KubeScheduler => "kube-scheduler".into(),
            Component::Kubelet => "kubelet".into(),
            Component::Unit(u) => u.clone(),
            Component::StaticPod(p) => format!("static-pod:{p}"),
        }
    }
}

impl Serialize for Component {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// A PEM certificate with a separate key file.
    Certificate,
    /// A kubeconfig's client certificate.
    Kubeconfig,
    /// The kubelet's client certificate: kubelet-client-current.pem, a symlink to a file
    /// holding certificate and key.
    KubeletClient,
    /// The kubelet's serving certificate kubelet.crt (+ kubelet.key), by default
    /// self-signed by a throwaway CA that follows the leaf in the same file.
    KubeletServing,
    /// The kubelet's serving certificate from the CSR API (`serverTLSBootstrap`):
    /// kubelet-server-current.pem, a symlink to a file holding certificate and key, in
    /// the same scheme as the client certificate's.
    KubeletServer,
}

/// The new content of one node path (compared, never shown: it may be a key).
#[derive(Clone, PartialEq, Eq)]
pub enum NewContent {
    File(Vec<u8>),
    Symlink(PathBuf),
}

/// One file to replace (or create).
#[derive(Clone)]
pub struct FileChange {
    /// Node path.
    pub path: PathBuf,
    pub content: NewContent,
    /// Mode when the file is new; an existing file's mode and owner are kept.
    pub mode: u32,
    /// Private keys: never more open than 0600, whatever the old file had.
    pub secret: bool,
    /// Stage in the parent directory (for /etc/kubernetes/manifests).
    pub stage_outside: bool,
    /// The staged name, when a convention asks for one (client-go's
    /// `kubelet-client-updated.pem`); otherwise a dot-prefixed temp name.
    pub staged_name: Option<String>,
}

impl std::fmt::Debug for FileChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileChange({})", self.path.display())
    }
}

impl FileChange {
    pub fn file(path: impl Into<PathBuf>, bytes: Vec<u8>, mode: u32, secret: bool) -> Self {
        FileChange {
            path: path.into(),
            content: NewContent::File(bytes),
            mode,
            secret,
            stage_outside: false,
            staged_name: None,
        }
    }

    /// A static-pod manifest (0600, as kubeadm writes them), staged in the parent
    /// directory: a temp file in the manifests directory would be run as a pod.
    pub fn manifest(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Self {
        FileChange {
            stage_outside: true,
            ..FileChange::file(path, bytes, 0o600, false)
        }
    }

    /// Staged outside `manifests_dir` when the file is in it (a restore of any file).
    pub fn outside_of(mut self, manifests_dir: &std::path::Path) -> Self {
        self.stage_outside = self.path.starts_with(manifests_dir);
        self
    }
}

/// A DNS-1123 subdomain (or, without dots, a label) of at most `max` characters: what a
/// Kubernetes object name (a Node's: 253) must be. Checked wherever a name read from a
/// file or a setting becomes part of an API URL path or a certificate's DNS name.
pub fn is_dns1123_name(v: &str, max: usize) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !v.is_empty()
        && v.len() <= max
        && v.bytes().all(|b| ok(b) || b == b'-' || b == b'.')
        && v.bytes().next().is_some_and(ok)
        && v.bytes().last().is_some_and(ok)
        && (max > 63 || !v.contains('.'))
}

/// Where a component listens, and what to check there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// An IP address (IPv6 without brackets) or a host name.
    pub host: String,
    pub port: u16,
    pub check: Check,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// The leaf served here must be the first certificate of this file (node path).
    ServedCert { cert: PathBuf },
    /// `GET /healthz` must answer 200 `ok`: the component serves a certificate it made
    /// itself in memory, so there is no file to compare with, but a healthy answer shows
    /// it runs again with its (renewed) kubeconfig.
    Healthz,
}

impl Endpoint {
    /// Where the certificate of the node file `cert` must be served.
    pub fn served(host: &str, port: u16, cert: &str) -> Self {
        Endpoint {
            host: host.into(),
            port,
            check: Check::ServedCert { cert: cert.into() },
        }
    }

    /// A component whose health answers on loopback (`/healthz`).
    pub fn healthz(port: u16) -> Self {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            check: Check::Healthz,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
