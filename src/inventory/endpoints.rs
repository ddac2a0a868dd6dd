//! Where each component listens and what to check there, from the node's files alone:
//! the flags of its static pod manifest, or the kubelet's configuration file. Paths
//! that kubeadm would default come from the configured layout
//! ([`KubeadmPaths`]). Read through [`super::NodeReader::endpoints`], once per
//! component and command: verification probes them, it does not find them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::KubeadmPaths;
use crate::model::{Check, Component, Endpoint};
use crate::node::kubelet_config::KUBELET_CONFIG;
use crate::node::manifest::StaticPodManifest;
use crate::node::NodeRoot;

/// Where `component` serves and what to check there, from its static pod manifest in
/// `kubeadm.manifests_dir` or the kubelet's config file. Missing or unreadable files
/// give kubeadm's defaults (logged); components whose listening address cannot be
/// known (other units and static pods) give none.
pub(super) fn read_endpoints(
    root: &NodeRoot,
    kubeadm: &KubeadmPaths,
    component: &Component,
) -> Vec<Endpoint> {
    let manifest =
        |name: &str| manifest_flags(root, &kubeadm.manifests_dir.join(format!("{name}.yaml")));
    let pki = &kubeadm.pki_dir;
    let mut out = Vec::new();
    match component {
        Component::KubeApiserver => {
            let f = manifest("kube-apiserver").unwrap_or_default();
            let Some(port) = port_flag(&f, "secure-port", 6443) else {
                return out;
            };
            let cert = path_flag(&f, "tls-cert-file", pki.join("apiserver.crt"));
            let check = Check::ServedCert { cert };
            if let Some(a) = f.get("advertise-address").filter(|a| !is_unspecified(a)) {
                push(&mut out, a, port, &check);
            }
            push(&mut out, &local_host(f.get("bind-address")), port, &check);
        }
        Component::Etcd => {
            let f = manifest("etcd");
            let cert = path_flag(
                f.as_ref().unwrap_or(&HashMap::new()),
                "cert-file",
                pki.join("etcd/server.crt"),
            );
            let check = Check::ServedCert { cert };
            let urls = match &f {
                Some(f) => f.get("listen-client-urls").cloned().unwrap_or_default(),
                None => "https://127.0.0.1:2379".into(),
            };
            for (host, port) in urls
                .split(',')
                .filter_map(|u| https_host_port(u.trim(), 2379))
            {
                push(&mut out, &local_host(Some(&host)), port, &check);
            }
        }
        Component::KubeControllerManager | Component::KubeScheduler => {
            let (name, default_port) = if *component == Component::KubeScheduler {
                ("kube-scheduler", 10259)
            } else {
                ("kube-controller-manager", 10257)
            };
            let f = manifest(name).unwrap_or_default();
            if let Some(port) = port_flag(&f, "secure-port", default_port) {
                push(
                    &mut out,
                    &local_host(f.get("bind-address")),
                    port,
                    &Check::Healthz,
                );
            }
        }
        Component::Kubelet => {
            let k = kubelet_config(root);
            let kpki = &kubeadm.kubelet_pki_dir;
            let cert = match (k.tls_cert_file, k.server_tls_bootstrap) {
                (Some(c), _) if !c.is_empty() => PathBuf::from(c),
                // With serverTLSBootstrap the kubelet serves the certificate the cluster
                // signed, through the symlink it keeps current.
                (_, Some(true)) => kpki.join("kubelet-server-current.pem"),
                _ => kpki.join("kubelet.crt"),
            };
            let port = k.port.filter(|p| *p != 0).unwrap_or(10250);
            push(
                &mut out,
                &local_host(k.address.as_ref()),
                port,
                &Check::ServedCert { cert },
            );
        }
        Component::Unit(_) | Component::StaticPod(_) => {}
    }
    out
}

fn push(out: &mut Vec<Endpoint>, host: &str, port: u16, check: &Check) {
    let e = Endpoint {
        host: host.to_string(),
        port,
        check: check.clone(),
    };
    if !out.contains(&e) {
        out.push(e);
    }
}

fn is_unspecified(host: &str) -> bool {
    host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// The address to reach a server bound to `bind` from this node: loopback when it
/// listens on every address (or the flag is absent), else the address itself.
fn local_host(bind: Option<&String>) -> String {
    match bind {
        Some(b) if !is_unspecified(b) => b.clone(),
        _ => "127.0.0.1".into(),
    }
}

fn port_flag(flags: &HashMap<String, String>, name: &str, default: u16) -> Option<u16> {
    match flags.get(name) {
        None => Some(default),
        // Port 0 turns the secure port off: nothing to probe.
        Some(v) => match v.parse::<u16>() {
            Ok(0) => None,
            Ok(p) => Some(p),
            Err(_) => {
                tracing::warn!(flag = name, value = %v, "unreadable port flag; using the default");
                Some(default)
            }
        },
    }
}

fn path_flag(flags: &HashMap<String, String>, name: &str, default: PathBuf) -> PathBuf {
    flags.get(name).map(PathBuf::from).unwrap_or(default)
}

/// Host and port of an `https://` URL (etcd's `--listen-client-urls` entries); other
/// schemes (`http://`, `unix://`) serve no certificate.
fn https_host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host.to_string(), port))
}

/// The flags of a static pod's first container. `None` when the manifest is missing or
/// unreadable: the caller falls back to kubeadm's defaults.
fn manifest_flags(root: &NodeRoot, manifest: &Path) -> Option<HashMap<String, String>> {
    let bytes = match root.read_file(manifest) {
        Ok((_, b)) => b,
        Err(e) => {
            tracing::debug!(manifest = %manifest.display(), error = %e, "no manifest; using kubeadm's defaults");
            return None;
        }
    };
    match StaticPodManifest::parse(&bytes) {
        Ok(m) => Some(m.container_flags()),
        Err(e) => {
            tracing::warn!(manifest = %manifest.display(), error = %e, "unreadable manifest; using kubeadm's defaults");
            None
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KubeletConfig {
    address: Option<String>,
    port: Option<u16>,
    tls_cert_file: Option<String>,
    #[serde(rename = "serverTLSBootstrap")]
    server_tls_bootstrap: Option<bool>,
}

/// The kubelet's configuration file; defaults when absent or unreadable.
fn kubelet_config(root: &NodeRoot) -> KubeletConfig {
    let p = Path::new(KUBELET_CONFIG);
    match root.read_file(p) {
        Ok((_, b)) => serde_saphyr::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(file = %p.display(), error = %e, "unreadable kubelet configuration; using defaults");
            KubeletConfig::default()
        }),
        Err(_) => KubeletConfig::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn node() -> (tempfile::TempDir, NodeRoot) {
        fixture::temp_control_plane()
    }

    #[test]
    fn endpoints_of_a_kubeadm_control_plane() {
        let (_d, r) = node();
        let k = KubeadmPaths::default();
        let api = "/etc/kubernetes/pki/apiserver.crt";
        assert_eq!(
            read_endpoints(&r, &k, &Component::KubeApiserver),
            [
                Endpoint::served("10.0.0.10", 6443, api),
                Endpoint::served("127.0.0.1", 6443, api)
            ]
        );
        let etcd = "/etc/kubernetes/pki/etcd/server.crt";
        assert_eq!(
            read_endpoints(&r, &k, &Component::Etcd),
            [
                Endpoint::served("127.0.0.1", 2379, etcd),
                Endpoint::served("10.0.0.10", 2379, etcd)
            ]
        );
        assert_eq!(
            read_endpoints(&r, &k, &Component::Kubelet),
            [Endpoint::served(
                "127.0.0.1",
                10250,
                "/var/lib/kubelet/pki/kubelet.crt"
            )]
        );
        assert_eq!(
            read_endpoints(&r, &k, &Component::KubeControllerManager),
            [Endpoint::healthz(10257)]
        );
        assert_eq!(
            read_endpoints(&r, &k, &Component::KubeScheduler),
            [Endpoint::healthz(10259)]
        );
        assert!(read_endpoints(&r, &k, &Component::Unit("x.service".into())).is_empty());
        assert!(read_endpoints(&r, &k, &Component::StaticPod("x".into())).is_empty());
    }

    #[test]
    fn flags_and_kubelet_config_override_the_defaults() {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        let k = KubeadmPaths::default();
        let m = k.manifests_dir.as_path();
        // Nothing on disk: kubeadm's defaults.
        assert_eq!(
            read_endpoints(&r, &k, &Component::KubeApiserver),
            [Endpoint::served(
                "127.0.0.1",
                6443,
                "/etc/kubernetes/pki/apiserver.crt"
            )]
        );
        assert_eq!(
            read_endpoints(&r, &k, &Component::Etcd),
            [Endpoint::served(
                "127.0.0.1",
                2379,
                "/etc/kubernetes/pki/etcd/server.crt"
            )]
        );
        std::fs::create_dir_all(r.host(m)).unwrap();
        let pod = |args: &str| {
            format!("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - x\n    args:\n{args}    name: x\n")
        };
        std::fs::write(
            r.host(&m.join("kube-apiserver.yaml")),
            pod("    - --secure-port=8443\n    - --bind-address=192.168.1.5\n    - --advertise-address=0.0.0.0\n    - --tls-cert-file=/srv/a.crt\n"),
        )
        .unwrap();
        assert_eq!(
            read_endpoints(&r, &k, &Component::KubeApiserver),
            [Endpoint::served("192.168.1.5", 8443, "/srv/a.crt")]
        );
        std::fs::write(
            r.host(&m.join("etcd.yaml")),
            pod("    - --listen-client-urls=http://127.0.0.1:2381,https://[::1]:2379,https://0.0.0.0,unix://x\n"),
        )
        .unwrap();
        let etcd = "/etc/kubernetes/pki/etcd/server.crt";
        let got = read_endpoints(&r, &k, &Component::Etcd);
        assert_eq!(
            got,
            [
                Endpoint::served("::1", 2379, etcd),
                Endpoint::served("127.0.0.1", 2379, etcd)
            ]
        );
        assert_eq!(got[0].to_string(), "[::1]:2379");
        std::fs::write(
            r.host(&m.join("kube-scheduler.yaml")),
            pod("    - --secure-port=0\n"),
        )
        .unwrap();
        assert!(read_endpoints(&r, &k, &Component::KubeScheduler).is_empty());
        std::fs::write(
            r.host(&m.join("kube-controller-manager.yaml")),
            "{{{ not yaml",
        )
        .unwrap();
        assert_eq!(
            read_endpoints(&r, &k, &Component::KubeControllerManager),
            [Endpoint::healthz(10257)]
        );
        std::fs::create_dir_all(r.host(Path::new("/var/lib/kubelet"))).unwrap();
        std::fs::write(
            r.host(Path::new(KUBELET_CONFIG)),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nport: 10350\nserverTLSBootstrap: true\nauthentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n",
        )
        .unwrap();
        assert_eq!(
            read_endpoints(&r, &k, &Component::Kubelet),
            [Endpoint::served(
                "127.0.0.1",
                10350,
                "/var/lib/kubelet/pki/kubelet-server-current.pem"
            )]
        );
    }

    /// One command reads a component's endpoints once: every later look (the probe
    /// first, the lock's broken check, the verification, a rollback) gets what the
    /// first read, and reading them reads nothing else of the node.
    #[test]
    fn a_reader_reads_each_components_endpoints_once() {
        let (_d, r) = node();
        let s = crate::config::Settings::default();
        let reader = super::super::NodeReader::new(&r, &s);
        let first = reader.endpoints(&Component::KubeScheduler);
        assert_eq!(*first, [Endpoint::healthz(10259)]);
        assert!(reader.model.get().is_none(), "the model was read too");
        // Changed behind the command's back: the command keeps what it read.
        let m = s.kubeadm.manifests_dir.join("kube-scheduler.yaml");
        std::fs::write(
            r.host(&m),
            "spec:\n  containers:\n  - command: [kube-scheduler, --secure-port=11259]\n",
        )
        .unwrap();
        let again = reader.endpoints(&Component::KubeScheduler);
        assert!(std::rc::Rc::ptr_eq(&first, &again));
        assert_eq!(reader.endpoints.borrow().len(), 1);
        // Another component is read on its own first use.
        assert_eq!(
            reader.endpoints(&Component::KubeControllerManager).as_ref(),
            [Endpoint::healthz(10257)]
        );
        assert_eq!(reader.endpoints.borrow().len(), 2);
        // The next command reads the node anew.
        assert_eq!(
            super::super::NodeReader::new(&r, &s)
                .endpoints(&Component::KubeScheduler)
                .as_ref(),
            [Endpoint::healthz(11259)]
        );
    }

    #[test]
    fn the_configured_layout_gives_the_default_paths() {
        // A node whose kubeadm layout lives elsewhere: manifests are read there, and
        // the certificates kubeadm would default are looked for there.
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        let k = KubeadmPaths {
            pki_dir: "/srv/k8s/pki".into(),
            kubelet_pki_dir: "/srv/kubelet/pki".into(),
            manifests_dir: "/srv/k8s/manifests".into(),
            ..KubeadmPaths::default()
        };
        assert_eq!(
            read_endpoints(&r, &k, &Component::KubeApiserver),
            [Endpoint::served(
                "127.0.0.1",
                6443,
                "/srv/k8s/pki/apiserver.crt"
            )]
        );
        assert_eq!(
            read_endpoints(&r, &k, &Component::Etcd),
            [Endpoint::served(
                "127.0.0.1",
                2379,
                "/srv/k8s/pki/etcd/server.crt"
            )]
        );
        assert_eq!(
            read_endpoints(&r, &k, &Component::Kubelet),
            [Endpoint::served(
                "127.0.0.1",
                10250,
                "/srv/kubelet/pki/kubelet.crt"
            )]
        );
        std::fs::create_dir_all(r.host(&k.manifests_dir)).unwrap();
        std::fs::write(
            r.host(&k.manifests_dir.join("kube-scheduler.yaml")),
            "spec:\n  containers:\n  - command: [kube-scheduler, --secure-port=11259]\n",
        )
        .unwrap();
        assert_eq!(
            read_endpoints(&r, &k, &Component::KubeScheduler),
            [Endpoint::healthz(11259)]
        );
    }
}
