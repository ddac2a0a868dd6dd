//! Helpers of the CA suites (`ca renew`, `ca export`/`ca import`): nodes whose CAs
//! are due, what openssl and kubectl read of a CA and its copies.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;

use super::*;

/// A control plane whose CAs (10 years) have 500 days left: under 20%, due.
pub fn dying_node() -> tempfile::TempDir {
    let mut spec = NodeSpec::control_plane(now());
    spec.ca_validity = Validity::days(3650, Duration::days(500));
    node(&spec)
}

pub const CA: &str = "/etc/kubernetes/pki/ca.crt";
pub const FRONT_PROXY_CA: &str = "/etc/kubernetes/pki/front-proxy-ca.crt";
pub const ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const KUBECONFIGS: [&str; 6] = [
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/super-admin.conf",
    "/etc/kubernetes/controller-manager.conf",
    "/etc/kubernetes/scheduler.conf",
    "/etc/kubernetes/kubelet.conf",
    "/root/.kube/config",
];

/// What must stay and what must change of a CA certificate, as openssl prints it.
pub struct CaFacts {
    pub subject: String,
    pub pubkey: String,
    pub ski: String,
    pub serial: String,
    pub not_after: String,
}

pub fn ca_facts(file: &Path) -> CaFacts {
    let f = file.to_str().unwrap();
    let field = |opt: &str| {
        openssl(&["x509", "-in", f, "-noout", opt])
            .trim()
            .to_string()
    };
    let text = openssl(&["x509", "-in", f, "-noout", "-text"]);
    let ski = text
        .lines()
        .skip_while(|l| !l.contains("Subject Key Identifier"))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(!ski.is_empty(), "{f} has no SKI:\n{text}");
    CaFacts {
        subject: field("-subject"),
        pubkey: openssl(&["x509", "-in", f, "-noout", "-pubkey"]),
        ski,
        serial: field("-serial"),
        not_after: field("-enddate"),
    }
}

pub fn ok(out: &std::process::Output) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    t
}

/// `openssl verify -CAfile CA LEAF`, the CA file holding the renewed CA alone.
pub fn verifies(ca: &Path, leaf: &Path) {
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca)
        .arg(leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} does not verify against {}: {}{}",
        leaf.display(),
        ca.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The certificate-authority-data of a kubeconfig as real kubectl reads it, decoded.
pub fn kubectl_ca(kubeconfig: &Path) -> Vec<u8> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl cannot read {}: {}",
        kubeconfig.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    base64::engine::general_purpose::STANDARD
        .decode(out.stdout.trim_ascii())
        .expect("base64 certificate-authority-data")
}

pub fn ca_status(r: &Path) -> (serde_json::Value, i32) {
    let out = run(r, &["ca", "status", "--json"]);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ca status --json: {e}\n{}", text(&out)));
    (v, out.status.code().unwrap_or(-1))
}

pub fn authority<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no authority {name} in {v:#}"))
}

/// Every line of `after` equals `before` except the certificate-authority-data line.
pub fn only_ca_data_changed(before: &str, after: &str, what: &str) {
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    assert_eq!(b.len(), a.len(), "{what}: line count changed");
    let diff: Vec<(&str, &str)> = b
        .iter()
        .zip(&a)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (*x, *y))
        .collect();
    assert_eq!(diff.len(), 1, "{what}: {diff:?}");
    assert!(
        diff[0]
            .0
            .trim_start()
            .starts_with("certificate-authority-data: ")
            && diff[0]
                .1
                .trim_start()
                .starts_with("certificate-authority-data: "),
        "{what}: {diff:?}"
    );
    assert_eq!(after.ends_with('\n'), before.ends_with('\n'));
}

pub fn read(r: &Path, p: &str) -> String {
    std::fs::read_to_string(host(r, p)).unwrap()
}

/// Two control-plane nodes of one cluster: the second is a copy of the first (the same
/// CAs and keys, as `kubeadm join --control-plane` gives).
pub fn ha_pair() -> (tempfile::TempDir, tempfile::TempDir) {
    let a = dying_node();
    let b = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", a.path().display()))
        .arg(b.path())
        .status()
        .unwrap();
    assert!(status.success());
    (a, b)
}

/// A worker of the cluster: its ca.crt and kubelet.conf trust the control plane's CA,
/// and it has no CA key.
pub fn worker_of(cp: &Path) -> tempfile::TempDir {
    let mut spec = NodeSpec::worker(now());
    spec.kubelet_conf_embedded = true;
    let w = node(&spec);
    let r = w.path();
    let own = std::fs::read(host(r, CA)).unwrap();
    let cluster = std::fs::read(host(cp, CA)).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let conf = read(r, "/etc/kubernetes/kubelet.conf");
    assert!(conf.contains(&b64(&own)));
    std::fs::write(
        host(r, "/etc/kubernetes/kubelet.conf"),
        conf.replace(&b64(&own), &b64(&cluster)),
    )
    .unwrap();
    std::fs::write(host(r, CA), cluster).unwrap();
    w
}
