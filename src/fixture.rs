//! A kubeadm-faithful node, written under a directory: the sandbox of `cert-rotator demo`
//! and the node every test runs against.
//!
//! It lays out what `kubeadm init` (≥ 1.29) and the kubelet write: the CAs and seven
//! leaves under /etc/kubernetes/pki with kubeadm's subjects, multi-valued O, SANs, key
//! usages and PKCS#1 / SEC1 keys; the kubeconfigs with embedded client certificates;
//! kubelet.conf pointing at the kubelet's symlinked client certificate; the kubelet's
//! self-signed kubelet.crt bundle (leaf then throwaway CA); and static-pod manifests.
//! Each target's remaining validity can be chosen.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use time::{Duration, OffsetDateTime};
use x509_cert::ext::pkix::KeyUsages;

use crate::pki::x509::{CertTemplate, Issuer, EKU_CLIENT, EKU_SERVER, OID_CN, OID_O};
use crate::pki::{encode_pem, CertFacts, KeyAlgorithm, KeyEncoding, PkiError, PrivateKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    ControlPlane,
    Worker,
}

/// The validity of one certificate: how long it lives and how much of it is left.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub lifetime: Duration,
    pub remaining: Duration,
}

impl Validity {
    pub fn days(lifetime_days: i64, remaining: Duration) -> Self {
        Validity {
            lifetime: Duration::days(lifetime_days),
            remaining,
        }
    }
}

/// What node to build.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub node_name: String,
    pub advertise_address: Ipv4Addr,
    pub role: Role,
    /// kubeadm's `encryptionAlgorithm` for CAs and leaves (RSA-2048 by default).
    pub key_algorithm: KeyAlgorithm,
    pub stacked_etcd: bool,
    /// Only the node where `kubeadm init` ran has super-admin.conf.
    pub super_admin: bool,
    /// /root/.kube/config as a copy of admin.conf.
    pub user_kubeconfig: bool,
    /// Older nodes embed the kubelet's client certificate in kubelet.conf.
    pub kubelet_conf_embedded: bool,
    /// The O values of admin.conf (kubeadm puts several into one RDN).
    pub admin_organizations: Vec<String>,
    pub now: OffsetDateTime,
    /// Default validity of leaves: 365 days, issued 30 days ago.
    pub leaf_validity: Validity,
    /// The kubelet's client certificate (from the CSR API; 365 days by default).
    pub kubelet_client_validity: Validity,
    /// Per target name (apiserver, etcd/server, admin.conf, kubelet.crt, ...).
    pub validity: BTreeMap<String, Validity>,
    pub ca_validity: Validity,
}

impl NodeSpec {
    pub fn control_plane(now: OffsetDateTime) -> Self {
        NodeSpec {
            node_name: "cp-1".into(),
            advertise_address: Ipv4Addr::new(10, 0, 0, 10),
            role: Role::ControlPlane,
            key_algorithm: KeyAlgorithm::Rsa { bits: 2048 },
            stacked_etcd: true,
            super_admin: true,
            user_kubeconfig: true,
            kubelet_conf_embedded: false,
            admin_organizations: vec!["kubeadm:cluster-admins".into()],
            now,
            leaf_validity: Validity::days(365, Duration::days(335)),
            kubelet_client_validity: Validity::days(365, Duration::days(335)),
            validity: BTreeMap::new(),
            ca_validity: Validity::days(3650, Duration::days(3620)),
        }
    }

    pub fn worker(now: OffsetDateTime) -> Self {
        NodeSpec {
            node_name: "worker-1".into(),
            advertise_address: Ipv4Addr::new(10, 0, 0, 21),
            role: Role::Worker,
            super_admin: false,
            user_kubeconfig: false,
            ..Self::control_plane(now)
        }
    }

    /// Sets one target's validity.
    pub fn with(mut self, target: &str, v: Validity) -> Self {
        self.validity.insert(target.into(), v);
        self
    }

    fn validity_of(&self, target: &str, default: Validity) -> (OffsetDateTime, OffsetDateTime) {
        let v = self.validity.get(target).copied().unwrap_or(default);
        let not_after = self.now + v.remaining;
        (not_after - v.lifetime, not_after)
    }
}

/// The CAs of a built node, kept for tests that sign further certificates.
pub struct BuiltNode {
    pub root: PathBuf,
    pub ca: (CertFacts, PrivateKey),
    pub front_proxy_ca: Option<(CertFacts, PrivateKey)>,
    pub etcd_ca: Option<(CertFacts, PrivateKey)>,
}

/// Why a fixture node could not be built: the host path that could not be written, or
/// the certificate (by node path or kubeadm name) that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Pki {
        what: String,
        #[source]
        source: PkiError,
    },
    #[error("{what}: {source}")]
    TimeFormat {
        what: String,
        #[source]
        source: time::error::Format,
    },
}

type Res<T> = Result<T, FixtureError>;

fn pki_error(what: &str) -> impl FnOnce(PkiError) -> FixtureError + '_ {
    move |source| FixtureError::Pki {
        what: what.to_string(),
        source,
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FixtureError + '_ {
    move |source| FixtureError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the node under `root` (which need not exist).
pub fn build(root: &Path, spec: &NodeSpec) -> Res<BuiltNode> {
    let w = Writer { root };
    let pki = "/etc/kubernetes/pki";
    let node = spec.node_name.as_str();
    let ca = make_ca(spec, "ca", "kubernetes")?;
    w.cert_pair(
        &format!("{pki}/ca"),
        &ca.0,
        &ca.1,
        spec.role == Role::ControlPlane,
    )?;
    let mut front_proxy_ca = None;
    let mut etcd_ca = None;
    let alg = spec.key_algorithm;
    let enc = encoding_for(alg);
    let leaf_ku = leaf_key_usage(alg);
    if spec.role == Role::ControlPlane {
        let fp = make_ca(spec, "front-proxy-ca", "front-proxy-ca")?;
        w.cert_pair(&format!("{pki}/front-proxy-ca"), &fp.0, &fp.1, true)?;
        let etcd = if spec.stacked_etcd {
            let e = make_ca(spec, "etcd/ca", "etcd-ca")?;
            w.cert_pair(&format!("{pki}/etcd/ca"), &e.0, &e.1, true)?;
            Some(e)
        } else {
            None
        };
        let service_ip = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));
        let adv = IpAddr::V4(spec.advertise_address);
        let mut leaves: Vec<(&str, CertTemplate, &(CertFacts, PrivateKey))> = vec![
            (
                "apiserver",
                CertTemplate {
                    subject: cn("kube-apiserver"),
                    ext_key_usage: vec![EKU_SERVER],
                    dns_names: vec![
                        node.into(),
                        "kubernetes".into(),
                        "kubernetes.default".into(),
                        "kubernetes.default.svc".into(),
                        "kubernetes.default.svc.cluster.local".into(),
                    ],
                    ip_addresses: vec![service_ip, adv],
                    ..Default::default()
                },
                &ca,
            ),
            (
                "apiserver-kubelet-client",
                CertTemplate {
                    subject: org_cn(&["kubeadm:cluster-admins"], "kube-apiserver-kubelet-client"),
                    ext_key_usage: vec![EKU_CLIENT],
                    ..Default::default()
                },
                &ca,
            ),
            (
                "front-proxy-client",
                CertTemplate {
                    subject: cn("front-proxy-client"),
                    ext_key_usage: vec![EKU_CLIENT],
                    ..Default::default()
                },
                &fp,
            ),
        ];
        if let Some(e) = &etcd {
            let etcd_sans = |t: CertTemplate| CertTemplate {
                dns_names: vec![node.into(), "localhost".into()],
                ip_addresses: vec![
                    adv,
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ],
                ..t
            };
            leaves.push((
                "apiserver-etcd-client",
                CertTemplate {
                    subject: cn("kube-apiserver-etcd-client"),
                    ext_key_usage: vec![EKU_CLIENT],
                    ..Default::default()
                },
                e,
            ));
            for name in ["etcd/server", "etcd/peer"] {
                leaves.push((
                    name,
                    etcd_sans(CertTemplate {
                        subject: cn(node),
                        ext_key_usage: vec![EKU_SERVER, EKU_CLIENT],
                        ..Default::default()
                    }),
                    e,
                ));
            }
            leaves.push((
                "etcd/healthcheck-client",
                CertTemplate {
                    subject: cn("kube-etcd-healthcheck-client"),
                    ext_key_usage: vec![EKU_CLIENT],
                    ..Default::default()
                },
                e,
            ));
        }
        for (name, mut t, signer) in leaves {
            let (nb, na) = spec.validity_of(name, spec.leaf_validity);
            t.not_before = Some(nb);
            t.not_after = Some(na);
            t.key_usage = leaf_ku.clone();
            let key = PrivateKey::generate(alg, enc).map_err(pki_error(name))?;
            let der = t
                .issue(&key, Some(&issuer(signer)))
                .map_err(pki_error(name))?;
            let facts = CertFacts::from_der(&der).map_err(pki_error(name))?;
            w.cert_pair(&format!("{pki}/{name}"), &facts, &key, true)?;
        }
        let server = format!("https://{}:6443", spec.advertise_address);
        let admin_orgs: Vec<&str> = spec
            .admin_organizations
            .iter()
            .map(|s| s.as_str())
            .collect();
        let mut confs = vec![
            (
                "admin.conf",
                "kubernetes-admin",
                org_cn(&admin_orgs, "kubernetes-admin"),
            ),
            (
                "controller-manager.conf",
                "system:kube-controller-manager",
                cn("system:kube-controller-manager"),
            ),
            (
                "scheduler.conf",
                "system:kube-scheduler",
                cn("system:kube-scheduler"),
            ),
        ];
        if spec.super_admin {
            confs.push((
                "super-admin.conf",
                "kubernetes-super-admin",
                org_cn(&["system:masters"], "kubernetes-super-admin"),
            ));
        }
        for (file, user, subject) in confs {
            let (nb, na) = spec.validity_of(file, spec.leaf_validity);
            let t = CertTemplate {
                subject,
                not_before: Some(nb),
                not_after: Some(na),
                key_usage: leaf_ku.clone(),
                ext_key_usage: vec![EKU_CLIENT],
                ..Default::default()
            };
            let key = PrivateKey::generate(alg, enc).map_err(pki_error(file))?;
            let der = t.issue(&key, Some(&issuer(&ca))).map_err(pki_error(file))?;
            let text = kubeconfig_embedded(&server, user, &ca.0, &der, &key)?;
            w.file(&format!("/etc/kubernetes/{file}"), text.as_bytes(), 0o600)?;
            if file == "admin.conf" && spec.user_kubeconfig {
                w.file("/root/.kube/config", text.as_bytes(), 0o600)?;
            }
        }
        write_manifests(&w, spec)?;
        front_proxy_ca = Some(fp);
        etcd_ca = etcd;
    }
    write_kubelet(&w, spec, &ca)?;
    Ok(BuiltNode {
        root: root.to_path_buf(),
        ca,
        front_proxy_ca,
        etcd_ca,
    })
}

fn write_kubelet(w: &Writer<'_>, spec: &NodeSpec, ca: &(CertFacts, PrivateKey)) -> Res<()> {
    let node = spec.node_name.as_str();
    let kpki = "/var/lib/kubelet/pki";
    w.dir(kpki, 0o755)?;
    // The client certificate, as the CSR API returns it to the kubelet: ECDSA P-256.
    let (nb, na) = spec.validity_of("kubelet-client-current.pem", spec.kubelet_client_validity);
    let t = CertTemplate {
        subject: org_cn(&["system:nodes"], &format!("system:node:{node}")),
        not_before: Some(nb),
        not_after: Some(na),
        key_usage: vec![KeyUsages::DigitalSignature],
        ext_key_usage: vec![EKU_CLIENT],
        ..Default::default()
    };
    let client = "kubelet-client-current.pem";
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1)
        .map_err(pki_error(client))?;
    let der = t
        .issue(&key, Some(&issuer(ca)))
        .map_err(pki_error(client))?;
    let server = format!("https://{}:6443", spec.advertise_address);
    if spec.kubelet_conf_embedded {
        let text = kubeconfig_embedded(&server, &format!("system:node:{node}"), &ca.0, &der, &key)?;
        w.file("/etc/kubernetes/kubelet.conf", text.as_bytes(), 0o600)?;
    } else {
        let stamp = nb
            .format(time::macros::format_description!(
                "[year]-[month]-[day]-[hour]-[minute]-[second]"
            ))
            .map_err(|source| FixtureError::TimeFormat {
                what: client.to_string(),
                source,
            })?;
        let file = format!("{kpki}/kubelet-client-{stamp}.pem");
        let mut pem = encode_pem("CERTIFICATE", &der);
        pem.push_str(&key.to_pem().map_err(pki_error(&file))?);
        w.file(&file, pem.as_bytes(), 0o600)?;
        w.symlink(&file, &format!("{kpki}/kubelet-client-current.pem"))?;
        let text = kubeconfig_files(
            &server,
            &ca.0,
            &format!("{kpki}/kubelet-client-current.pem"),
        );
        w.file("/etc/kubernetes/kubelet.conf", text.as_bytes(), 0o600)?;
    }
    // kubelet.crt: self-signed by a throwaway CA "<node>-ca@<unix>", leaf first.
    let (nb, na) = spec.validity_of("kubelet.crt", Validity::days(365, Duration::days(335)));
    let unix = nb.unix_timestamp();
    let serving = "kubelet.crt";
    let ca_key = PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs1)
        .map_err(pki_error(serving))?;
    let ca_der = CertTemplate {
        subject: cn(&format!("{node}-ca@{unix}")),
        not_before: Some(nb),
        not_after: Some(na),
        is_ca: true,
        key_usage: vec![
            KeyUsages::DigitalSignature,
            KeyUsages::KeyEncipherment,
            KeyUsages::KeyCertSign,
        ],
        ..Default::default()
    }
    .issue(&ca_key, None)
    .map_err(pki_error(serving))?;
    let ca_facts = CertFacts::from_der(&ca_der).map_err(pki_error(serving))?;
    let leaf_key = PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs1)
        .map_err(pki_error(serving))?;
    let leaf = CertTemplate {
        subject: cn(&format!("{node}@{unix}")),
        not_before: Some(nb),
        not_after: Some(na),
        key_usage: vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment],
        ext_key_usage: vec![EKU_SERVER],
        dns_names: vec![node.into()],
        ..Default::default()
    }
    .issue(
        &leaf_key,
        Some(&Issuer {
            cert: &ca_facts,
            key: &ca_key,
        }),
    )
    .map_err(pki_error(serving))?;
    let mut bundle = encode_pem("CERTIFICATE", &leaf);
    bundle.push_str(&encode_pem("CERTIFICATE", &ca_der));
    w.file(&format!("{kpki}/kubelet.crt"), bundle.as_bytes(), 0o644)?;
    w.file(
        &format!("{kpki}/kubelet.key"),
        leaf_key.to_pem().map_err(pki_error(serving))?.as_bytes(),
        0o600,
    )?;
    Ok(())
}

fn make_ca(spec: &NodeSpec, name: &str, common_name: &str) -> Res<(CertFacts, PrivateKey)> {
    let (nb, na) = spec.validity_of(name, spec.ca_validity);
    let key = PrivateKey::generate(spec.key_algorithm, encoding_for(spec.key_algorithm))
        .map_err(pki_error(name))?;
    let der = CertTemplate {
        subject: cn(common_name),
        not_before: Some(nb),
        not_after: Some(na),
        is_ca: true,
        key_usage: vec![
            KeyUsages::DigitalSignature,
            KeyUsages::KeyEncipherment,
            KeyUsages::KeyCertSign,
        ],
        ..Default::default()
    }
    .issue(&key, None)
    .map_err(pki_error(name))?;
    Ok((CertFacts::from_der(&der).map_err(pki_error(name))?, key))
}

fn issuer(ca: &(CertFacts, PrivateKey)) -> Issuer<'_> {
    Issuer {
        cert: &ca.0,
        key: &ca.1,
    }
}

/// kubeadm writes RSA keys as PKCS#1 and ECDSA keys as SEC1.
fn encoding_for(alg: KeyAlgorithm) -> KeyEncoding {
    match alg {
        KeyAlgorithm::Rsa { .. } => KeyEncoding::Pkcs1,
        _ => KeyEncoding::Sec1,
    }
}

/// kubeadm's leaves: digitalSignature, plus keyEncipherment for RSA keys.
fn leaf_key_usage(alg: KeyAlgorithm) -> Vec<KeyUsages> {
    match alg {
        KeyAlgorithm::Rsa { .. } => vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment],
        _ => vec![KeyUsages::DigitalSignature],
    }
}

type Rdns = Vec<Vec<(der::asn1::ObjectIdentifier, String)>>;

fn cn(name: &str) -> Rdns {
    vec![vec![(OID_CN, name.to_string())]]
}

/// Go's order: O before CN, all O values in one multi-valued RDN.
fn org_cn(orgs: &[&str], name: &str) -> Rdns {
    vec![
        orgs.iter().map(|o| (OID_O, o.to_string())).collect(),
        vec![(OID_CN, name.to_string())],
    ]
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A kubeconfig as kubeadm writes it, with embedded client certificate and key.
pub fn kubeconfig_embedded(
    server: &str,
    user: &str,
    ca: &CertFacts,
    cert_der: &[u8],
    key: &PrivateKey,
) -> Res<String> {
    let key_pem = key.to_pem().map_err(pki_error(user))?;
    Ok(format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: {user}
  name: {user}@kubernetes
current-context: {user}@kubernetes
kind: Config
preferences: {{}}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(encode_pem("CERTIFICATE", &ca.der).as_bytes()),
        cert = b64(encode_pem("CERTIFICATE", cert_der).as_bytes()),
        key = b64(key_pem.as_bytes()),
    ))
}

fn kubeconfig_files(server: &str, ca: &CertFacts, pem: &str) -> String {
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default-cluster
contexts:
- context:
    cluster: default-cluster
    namespace: default
    user: default-auth
  name: default-context
current-context: default-context
kind: Config
preferences: {{}}
users:
- name: default-auth
  user:
    client-certificate: {pem}
    client-key: {pem}
",
        ca = b64(encode_pem("CERTIFICATE", &ca.der).as_bytes()),
    )
}

fn write_manifests(w: &Writer<'_>, spec: &NodeSpec) -> Res<()> {
    let adv = spec.advertise_address;
    let m = "/etc/kubernetes/manifests";
    w.dir(m, 0o700)?;
    let pki = "/etc/kubernetes/pki";
    w.file(
        &format!("{m}/kube-apiserver.yaml"),
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: {adv}:6443
  creationTimestamp: null
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address={adv}
    - --allow-privileged=true
    - --authorization-mode=Node,RBAC
    - --client-ca-file={pki}/ca.crt
    - --enable-admission-plugins=NodeRestriction
    - --enable-bootstrap-token-auth=true
    - --etcd-cafile={pki}/etcd/ca.crt
    - --etcd-certfile={pki}/apiserver-etcd-client.crt
    - --etcd-keyfile={pki}/apiserver-etcd-client.key
    - --etcd-servers=https://127.0.0.1:2379
    - --kubelet-client-certificate={pki}/apiserver-kubelet-client.crt
    - --kubelet-client-key={pki}/apiserver-kubelet-client.key
    - --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname
    - --proxy-client-cert-file={pki}/front-proxy-client.crt
    - --proxy-client-key-file={pki}/front-proxy-client.key
    - --requestheader-client-ca-file={pki}/front-proxy-ca.crt
    - --secure-port=6443
    - --service-account-issuer=https://kubernetes.default.svc.cluster.local
    - --service-account-key-file={pki}/sa.pub
    - --service-account-signing-key-file={pki}/sa.key
    - --service-cluster-ip-range=10.96.0.0/12
    - --tls-cert-file={pki}/apiserver.crt
    - --tls-private-key-file={pki}/apiserver.key
    image: registry.k8s.io/kube-apiserver:v1.31.2
    imagePullPolicy: IfNotPresent
    name: kube-apiserver
    resources:
      requests:
        cpu: 250m
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
status: {{}}
"
        )
        .as_bytes(),
        0o600,
    )?;
    for (name, flags) in [
        (
            "kube-controller-manager",
            "    - --authentication-kubeconfig=/etc/kubernetes/controller-manager.conf\n    - --authorization-kubeconfig=/etc/kubernetes/controller-manager.conf\n    - --bind-address=127.0.0.1\n    - --kubeconfig=/etc/kubernetes/controller-manager.conf\n    - --leader-elect=true\n",
        ),
        (
            "kube-scheduler",
            "    - --authentication-kubeconfig=/etc/kubernetes/scheduler.conf\n    - --authorization-kubeconfig=/etc/kubernetes/scheduler.conf\n    - --bind-address=127.0.0.1\n    - --kubeconfig=/etc/kubernetes/scheduler.conf\n    - --leader-elect=true\n",
        ),
    ] {
        w.file(
            &format!("{m}/{name}.yaml"),
            format!(
                "apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    component: {name}
    tier: control-plane
  name: {name}
  namespace: kube-system
spec:
  containers:
  - command:
    - {name}
{flags}    image: registry.k8s.io/{name}:v1.31.2
    imagePullPolicy: IfNotPresent
    name: {name}
  hostNetwork: true
  priorityClassName: system-node-critical
status: {{}}
"
            )
            .as_bytes(),
            0o600,
        )?;
    }
    if spec.stacked_etcd {
        w.file(
            &format!("{m}/etcd.yaml"),
            format!(
                "apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{adv}:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://{adv}:2379
    - --cert-file={pki}/etcd/server.crt
    - --client-cert-auth=true
    - --key-file={pki}/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:2379,https://{adv}:2379
    - --peer-cert-file={pki}/etcd/peer.crt
    - --peer-key-file={pki}/etcd/peer.key
    - --trusted-ca-file={pki}/etcd/ca.crt
    image: registry.k8s.io/etcd:3.5.15-0
    name: etcd
  hostNetwork: true
  priorityClassName: system-node-critical
status: {{}}
"
            )
            .as_bytes(),
            0o600,
        )?;
    }
    Ok(())
}

/// Writes node paths under the root with kubeadm's modes. Fixture files need no crash
/// safety: they are written once into a fresh directory.
struct Writer<'a> {
    root: &'a Path,
}

impl Writer<'_> {
    fn host(&self, node: &str) -> PathBuf {
        self.root.join(node.trim_start_matches('/'))
    }

    fn dir(&self, node: &str, mode: u32) -> Res<()> {
        let p = self.host(node);
        std::fs::create_dir_all(&p).map_err(io_error(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io_error(&p))
    }

    fn file(&self, node: &str, bytes: &[u8], mode: u32) -> Res<()> {
        let p = self.host(node);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        std::fs::write(&p, bytes).map_err(io_error(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io_error(&p))
    }

    fn symlink(&self, target_node: &str, link_node: &str) -> Res<()> {
        let p = self.host(link_node);
        std::os::unix::fs::symlink(target_node, &p).map_err(io_error(&p))
    }

    fn cert_pair(&self, base: &str, cert: &CertFacts, key: &PrivateKey, with_key: bool) -> Res<()> {
        self.file(
            &format!("{base}.crt"),
            encode_pem("CERTIFICATE", &cert.der).as_bytes(),
            0o644,
        )?;
        if with_key {
            let pem = key.to_pem().map_err(pki_error(base))?;
            self.file(&format!("{base}.key"), pem.as_bytes(), 0o600)?;
        }
        Ok(())
    }
}

/// A kubeadm control-plane node built now in a fresh temp dir, for unit tests: the dir
/// (removed when dropped) and its root.
pub fn temp_control_plane() -> (tempfile::TempDir, crate::node::NodeRoot) {
    let d = tempfile::tempdir().expect("a temp dir");
    build(
        d.path(),
        &NodeSpec::control_plane(OffsetDateTime::now_utc()),
    )
    .expect("the fixture node");
    let root = crate::node::NodeRoot::new(d.path());
    (d, root)
}
