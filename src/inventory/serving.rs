//! kubelet.crt issued by the cluster (`[kubelet] serving = "cluster-ca"` or `"csr"`):
//! the name and addresses the kubelet serves under, so the certificate names them.
//!
//! What the kubelet signer (`kubernetes.io/kubelet-serving`) issues, and what the kubelet
//! asks for itself with `serverTLSBootstrap`: subject `CN=system:node:NAME,
//! O=system:nodes`; DNS SANs the node's name and its Hostname/InternalDNS/ExternalDNS
//! addresses; IP SANs its InternalIP/ExternalIP addresses. The addresses are the Node
//! object's `status.addresses` when the API server answers (the kubelet builds its own
//! request from them, and the approver checks against them); without it, from the
//! node's files: the kubelet's `--node-ip` and `--hostname-override` (kubeadm's
//! `/var/lib/kubelet/kubeadm-flags.env`, the packages' `/etc/default/kubelet` or
//! `/etc/sysconfig/kubelet`), the host name, and the SANs of the certificate in place
//! (so an address learnt from the Node earlier is not lost while the API is down).
//! Under `cluster-ca` the certificate also carries the names the node's files want
//! ([`ServingFacts::wanted`]), and one it lacks makes it due (reason `serving-sans`), so
//! an address change re-issues it. Not under `csr`: an approver allows only what the
//! Node lists, so a wanted name beyond it would be denied at every pass.
//!
//! Reading the files here; deriving the names is pure ([`identity`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::NodeFiles;
use crate::config::serving::ServingMode;
use crate::config::Settings;
use crate::node::kubeconfig::ClientCredential;
use crate::node::NodeRoot;
use crate::pki::{self, AltNames};

/// The files that hold the kubelet's command-line flags, in the order systemd reads
/// them (the later wins, as in kubeadm's drop-in).
const FLAG_FILES: [&str; 3] = [
    "/var/lib/kubelet/kubeadm-flags.env",
    "/etc/default/kubelet",
    "/etc/sysconfig/kubelet",
];

/// How kubelet.crt is issued, and what the node's files say about its names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingPlan {
    pub mode: ServingMode,
    /// The kubelet's kubeconfig (its own credentials).
    pub kubeconfig: PathBuf,
    pub facts: ServingFacts,
    /// The names kubelet.crt must carry by what the node's files say
    /// ([`ServingFacts::wanted`]): under `cluster-ca`, one it lacks makes it due
    /// (`serving-sans`).
    pub wanted: AltNames,
}

/// What the node's files say about the kubelet's name and addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServingFacts {
    /// The CN `system:node:NAME` of the kubelet's client certificate: the name the API
    /// server knows the node by.
    pub client_name: Option<String>,
    pub hostname_override: Option<String>,
    /// `--node-ip` (comma-separated for dual stack).
    pub node_ips: Vec<IpAddr>,
    pub host_name: Option<String>,
}

impl ServingFacts {
    /// The Node's name, as the kubelet registers it: its client certificate's CN, else
    /// `--hostname-override`, else the host name (lower-cased, as the kubelet does).
    pub fn node_name(&self) -> Option<String> {
        self.client_name
            .clone()
            .or_else(|| self.hostname_override.clone())
            .or_else(|| self.host_name.clone())
            .map(|n| n.trim().to_lowercase())
            // A Node name: it goes into the API's URL path and the certificate's SANs.
            .filter(|n| crate::model::is_dns1123_name(n, 253))
    }

    /// The names kubelet.crt must carry whatever the Node object says: the Node's name,
    /// the kubelet's host name (`--hostname-override`, else the host's, which the
    /// kubelet reports as the Node's Hostname address) and its `--node-ip` addresses
    /// (its InternalIP). Not the host name beside an override: the Node does not list
    /// it, so a certificate issued from the Node's addresses would never carry it. Pure.
    pub fn wanted(&self) -> AltNames {
        let mut w = AltNames::default();
        if let Some(name) = self.node_name() {
            w.add_dns(&name);
        }
        if let Some(host) = self.hostname_override.as_ref().or(self.host_name.as_ref()) {
            let host = host.trim().to_lowercase();
            if crate::model::is_dns1123_name(&host, 253) {
                w.add_dns(&host);
            }
        }
        for ip in &self.node_ips {
            w.add_ip(*ip);
        }
        w
    }
}

/// One of the Node's `status.addresses`: its type (Hostname, InternalIP, ExternalIP,
/// InternalDNS, ExternalDNS) and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub kind: String,
    pub value: String,
}

/// The identity kubelet.crt is issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingIdentity {
    pub node: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServingIdentity {
    /// `system:node:NAME`, the subject's CN.
    pub fn common_name(&self) -> String {
        format!("system:node:{}", self.node)
    }
}

/// Why no identity can be derived.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the node's name is unknown: no client certificate CN system:node:NAME in {kubeconfig}, no --hostname-override, no host name")]
    NoNodeName { kubeconfig: String },
}

/// The names of kubelet.crt. `node` is the Node's addresses when the API server gave
/// them, then `wanted` beside them (`cluster-ca`: what the node's files want; `csr`:
/// none, as an approver allows only what the Node lists); else the node's files and the
/// DNS and IP SANs of the certificate in place (`existing`). Pure.
pub fn identity(
    facts: &ServingFacts,
    kubeconfig: &Path,
    node: Option<&[Address]>,
    wanted: Option<&AltNames>,
    existing: &[String],
) -> Result<ServingIdentity, IdentityError> {
    let name = facts.node_name().ok_or_else(|| IdentityError::NoNodeName {
        kubeconfig: kubeconfig.display().to_string(),
    })?;
    let mut id = ServingIdentity {
        node: name.clone(),
        dns: vec![name],
        ips: Vec::new(),
    };
    let mut add = |value: &str| match value.parse::<IpAddr>() {
        Ok(ip) => {
            if !id.ips.contains(&ip) {
                id.ips.push(ip);
            }
        }
        Err(_) => {
            let d = value.trim().to_lowercase();
            if !d.is_empty() && !id.dns.contains(&d) {
                id.dns.push(d);
            }
        }
    };
    match node {
        // What the kubelet's own serving CSR carries (and the approver allows); under
        // cluster-ca also what the node's files want (the same names on a kubeadm node;
        // were one missing from the Node, the certificate would be due again at every
        // pass). Not under csr: an approver denies a name the Node does not list.
        Some(addresses) => {
            for a in addresses {
                let ip = matches!(a.kind.as_str(), "InternalIP" | "ExternalIP");
                let dns = matches!(a.kind.as_str(), "Hostname" | "InternalDNS" | "ExternalDNS");
                if (ip && a.value.parse::<IpAddr>().is_ok())
                    || (dns && a.value.parse::<IpAddr>().is_err())
                {
                    add(&a.value);
                }
            }
            if let Some(w) = wanted {
                for d in &w.dns {
                    add(d);
                }
                for ip in &w.ips {
                    add(&ip.to_string());
                }
            }
        }
        None => {
            for ip in &facts.node_ips {
                add(&ip.to_string());
            }
            for n in facts.hostname_override.iter().chain(&facts.host_name) {
                add(n);
            }
            for s in existing {
                add(s);
            }
        }
    }
    Ok(id)
}

/// The kubelet's flags of interest from the text of environment files (`NAME="--a=b
/// --c d"` lines): `--node-ip` and `--hostname-override`, the last one winning. Pure.
pub fn flags_of(texts: &[String]) -> (Option<String>, Vec<IpAddr>) {
    let mut hostname_override = None;
    let mut node_ips = Vec::new();
    for text in texts {
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((_, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            let words: Vec<&str> = value.split_whitespace().collect();
            let mut i = 0;
            while i < words.len() {
                let w = words[i].trim_start_matches('-');
                let (flag, arg) = match w.split_once('=') {
                    Some((f, a)) => (f, Some(a.to_string())),
                    None => (w, words.get(i + 1).map(|s| s.to_string())),
                };
                let takes_next = !w.contains('=');
                match flag {
                    "node-ip" if words[i].starts_with('-') => {
                        if let Some(a) = arg {
                            node_ips = a
                                .split(',')
                                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                                .filter(|ip| !ip.is_unspecified())
                                .collect();
                            i += usize::from(takes_next);
                        }
                    }
                    "hostname-override" if words[i].starts_with('-') => {
                        if let Some(a) = arg.filter(|a| !a.is_empty()) {
                            hostname_override = Some(a);
                            i += usize::from(takes_next);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
    }
    (hostname_override, node_ips)
}

/// The Node's name: the CN `system:node:NAME` of the kubeconfig's client certificate.
pub fn node_name_of(root: &NodeRoot, path: &Path) -> Option<String> {
    node_name_in(&NodeFiles::new(root), path)
}

/// [`node_name_of`] within one reading of the node (the layout's).
fn node_name_in(files: &NodeFiles<'_>, path: &Path) -> Option<String> {
    let read = files.kubeconfig(path);
    let kc = read.as_ref().as_ref().ok()?.kubeconfig.as_ref().ok()?;
    let pem = match &kc.credential {
        ClientCredential::Embedded { cert_pem, .. } => cert_pem.clone(),
        ClientCredential::Files { cert, .. } => files.root().read_file(cert).ok()?.1,
        ClientCredential::NotACertificate { .. } => return None,
    };
    let certs = pki::certificates(&pki::parse_pem(&pem).ok()?).ok()?;
    let subject = pki::name_attributes(&certs.first()?.raw_subject).ok()?;
    subject
        .into_iter()
        .find(|(t, _)| t == "CN")
        .and_then(|(_, v)| v.strip_prefix("system:node:").map(str::to_string))
        // A Node name: it goes into the API's URL path.
        .filter(|n| crate::model::is_dns1123_name(n, 253))
}

/// Reads what the node's files say, for `[kubelet] serving` other than self-signed.
pub fn read(files: &NodeFiles<'_>, settings: &Settings) -> Option<Arc<ServingPlan>> {
    let root = files.root();
    let k = &settings.kubelet;
    if k.serving == ServingMode::SelfSigned {
        return None;
    }
    let texts: Vec<String> = FLAG_FILES
        .iter()
        .filter_map(|f| root.read_file(Path::new(f)).ok())
        .map(|(_, b)| String::from_utf8_lossy(&b[..b.len().min(64 << 10)]).into_owned())
        .collect();
    let (hostname_override, node_ips) = flags_of(&texts);
    // The running kernel's name first (the kubelet asks the kernel); /etc/hostname
    // for a node under --root.
    let host_name = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|f| root.read_file(Path::new(f)).ok())
        .map(|(_, b)| {
            String::from_utf8_lossy(&b[..b.len().min(256)])
                .trim()
                .to_string()
        })
        .find(|n| !n.is_empty());
    let facts = ServingFacts {
        client_name: node_name_in(files, &k.serving_kubeconfig),
        hostname_override,
        node_ips,
        host_name,
    };
    Some(Arc::new(ServingPlan {
        mode: k.serving,
        kubeconfig: k.serving_kubeconfig.clone(),
        wanted: facts.wanted(),
        facts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn kubeadm_flags_and_extra_args_give_node_ip_and_hostname_override() {
        let kubeadm = r#"KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock --node-ip=192.0.2.10 --pod-infra-container-image=registry.k8s.io/pause:3.10""#;
        let (h, ips) = flags_of(&[kubeadm.to_string()]);
        assert_eq!((h, ips), (None, vec![ip("192.0.2.10")]));
        // /etc/default/kubelet, read after kubeadm's file: its flags win (dual stack,
        // separate argument, quotes).
        let extra = "# local\nKUBELET_EXTRA_ARGS='--node-ip 10.0.0.5,fd00::5 --hostname-override=Worker-1.example'\n";
        let (h, ips) = flags_of(&[kubeadm.to_string(), extra.to_string()]);
        assert_eq!(h.as_deref(), Some("Worker-1.example"));
        assert_eq!(ips, vec![ip("10.0.0.5"), ip("fd00::5")]);
        // "0.0.0.0" is the kubelet's "pick one": no address.
        let (_, ips) = flags_of(&["KUBELET_EXTRA_ARGS=--node-ip=0.0.0.0".to_string()]);
        assert!(ips.is_empty());
        // A value that merely contains the words is no flag.
        let (h, ips) = flags_of(&["X=node-ip=1.2.3.4".to_string()]);
        assert_eq!((h, ips), (None, vec![]));
    }

    #[test]
    fn the_node_name_is_the_client_certificates_then_the_override_then_the_host() {
        let mut f = ServingFacts {
            host_name: Some("Host-A\n".into()),
            ..Default::default()
        };
        assert_eq!(f.node_name().as_deref(), Some("host-a"));
        f.hostname_override = Some("override".into());
        assert_eq!(f.node_name().as_deref(), Some("override"));
        f.client_name = Some("cp-1".into());
        assert_eq!(f.node_name().as_deref(), Some("cp-1"));
        let e = identity(
            &ServingFacts::default(),
            Path::new("/k.conf"),
            None,
            None,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("/k.conf"), "{e}");
    }

    #[test]
    fn the_wanted_names_are_the_node_name_the_kubelets_host_name_and_node_ips() {
        let mut f = ServingFacts {
            client_name: Some("cp-1".into()),
            host_name: Some("Cp-1".into()),
            node_ips: vec![ip("192.0.2.10"), ip("fd00::10")],
            ..Default::default()
        };
        let w = f.wanted();
        assert_eq!(w.dns, ["cp-1"]);
        assert_eq!(w.ips, [ip("192.0.2.10"), ip("fd00::10")]);
        // An override is the kubelet's host name; the host's own is then not the Node's.
        f.hostname_override = Some("cp-1.example.org".into());
        assert_eq!(f.wanted().dns, ["cp-1", "cp-1.example.org"]);
        // cluster-ca: whatever the Node lists, the certificate carries what is wanted.
        let node = [Address {
            kind: "Hostname".into(),
            value: "cp-1".into(),
        }];
        let w = f.wanted();
        let id = identity(&f, Path::new("/k"), Some(&node), Some(&w), &[]).unwrap();
        assert_eq!(id.dns, ["cp-1", "cp-1.example.org"]);
        assert_eq!(id.ips, [ip("192.0.2.10"), ip("fd00::10")]);
        // csr: only what the Node lists (an approver denies the rest).
        let id = identity(&f, Path::new("/k"), Some(&node), None, &[]).unwrap();
        assert_eq!(id.dns, ["cp-1"]);
        assert!(id.ips.is_empty());
    }

    #[test]
    fn the_nodes_addresses_decide_when_the_api_server_gave_them() {
        let f = ServingFacts {
            client_name: Some("cp-1".into()),
            node_ips: vec![ip("198.51.100.1")],
            host_name: Some("other".into()),
            ..Default::default()
        };
        let a = |kind: &str, value: &str| Address {
            kind: kind.into(),
            value: value.into(),
        };
        let node = [
            a("InternalIP", "192.0.2.10"),
            a("Hostname", "cp-1"),
            a("ExternalDNS", "cp-1.example.org"),
            a("ExternalIP", "2001:db8::1"),
            a("InternalIP", "not-an-ip"),
        ];
        // csr: the Node's addresses only, as the kubelet's own CSR; not the files' nor
        // the stale SAN of the certificate in place.
        let id = identity(&f, Path::new("/k"), Some(&node), None, &["stale".into()]).unwrap();
        assert_eq!(id.common_name(), "system:node:cp-1");
        assert_eq!(id.dns, ["cp-1", "cp-1.example.org"]);
        assert_eq!(id.ips, [ip("192.0.2.10"), ip("2001:db8::1")]);
        // cluster-ca: the Node's, then what the node's files want (the host name,
        // --node-ip) where the Node does not list it.
        let w = f.wanted();
        let id = identity(
            &f,
            Path::new("/k"),
            Some(&node),
            Some(&w),
            &["stale".into()],
        )
        .unwrap();
        assert_eq!(id.dns, ["cp-1", "cp-1.example.org", "other"]);
        assert_eq!(
            id.ips,
            [ip("192.0.2.10"), ip("2001:db8::1"), ip("198.51.100.1")]
        );
        // Without the API: the files, then what the certificate in place names.
        let id = identity(
            &f,
            Path::new("/k"),
            None,
            Some(&w),
            &["cp-1".into(), "192.0.2.10".into()],
        )
        .unwrap();
        assert_eq!(id.dns, ["cp-1", "other"]);
        assert_eq!(id.ips, [ip("198.51.100.1"), ip("192.0.2.10")]);
    }
}
