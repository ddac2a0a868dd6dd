//! Helpers of the `ca rotate` suites: fixture nodes, the phase commands, what real
//! kubectl and openssl read from the node.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use cert_rotator::pki::KeyAlgorithm;

use super::*;

pub const STATE: &str = "var/lib/cert-rotator";

pub fn ecdsa_node() -> tempfile::TempDir {
    let mut spec = NodeSpec::control_plane(now());
    // ECDSA keys keep the many runs fast; the rotation is the same for RSA.
    spec.key_algorithm = KeyAlgorithm::EcdsaP256;
    node(&spec)
}

pub fn ok(root: &Path, args: &[&str]) -> String {
    let out = run(root, args);
    let t = text(&out);
    assert!(out.status.success(), "{args:?} failed:\n{t}");
    t
}

pub fn rot(root: &Path, ca: &str, phase: &str) -> String {
    ok(root, &["ca", "rotate", ca, phase])
}

pub fn rotation_file(root: &Path, ca: &str, name: &str) -> PathBuf {
    root.join(STATE)
        .join("rotations")
        .join(ca.replace('/', "-"))
        .join(name)
}

/// Every node file outside the agent's state: path -> mode and content (a symlink by
/// its target). mtimes are not compared: abort restores bytes, not timestamps.
pub fn node_files(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with(STATE) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(rel, format!("link {:?}", std::fs::read_link(&p).unwrap()));
            } else if m.is_dir() {
                walk(root, &p, out);
            } else {
                let c = std::fs::read(&p).unwrap();
                out.insert(
                    rel,
                    format!("{:o} {}", m.permissions().mode() & 0o7777, hex(&c)),
                );
            }
        }
    }
    walk(root, root, &mut out);
    out
}

pub fn hex(b: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

/// `openssl verify -CAfile ca [-untrusted chain] leaf` succeeds.
pub fn verifies(ca: &Path, untrusted: Option<&Path>, leaf: &Path) -> bool {
    let mut c = Command::new("openssl");
    c.arg("verify").arg("-CAfile").arg(ca);
    if let Some(u) = untrusted {
        c.arg("-untrusted").arg(u);
    }
    c.arg(leaf);
    c.output().expect("openssl").status.success()
}

/// The client certificate of a kubeconfig as a PEM file under `dir`.
pub fn client_pem(root: &Path, conf: &str, dir: &Path) -> PathBuf {
    let out = dir.join(conf.replace('/', "_"));
    let t = std::fs::read_to_string(host(root, conf)).unwrap();
    write_embedded_client_cert(&t, &out);
    out
}

/// The certificates of each cluster's certificate-authority-data, as real kubectl
/// reads the kubeconfig.
pub fn kubectl_ca_data(root: &Path, conf: &str) -> Vec<String> {
    let out = Command::new("kubectl")
        .args(["config", "view", "--raw", "-o"])
        .arg("jsonpath={.clusters[0].cluster.certificate-authority-data}")
        .arg("--kubeconfig")
        .arg(host(root, conf))
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl config view {conf}: {}",
        text(&out)
    );
    let pem = base64::engine::general_purpose::STANDARD
        .decode(out.stdout.trim_ascii())
        .expect("base64");
    pem_certs(&pem)
}

/// The DER (hex) of every certificate of a PEM text, in order.
pub fn pem_certs(pem: &[u8]) -> Vec<String> {
    let blocks = cert_rotator::pki::parse_pem(pem).unwrap();
    blocks.iter().map(|b| hex(&b.der)).collect()
}

pub fn file_certs(root: &Path, p: &str) -> Vec<String> {
    pem_certs(&std::fs::read(host(root, p)).unwrap())
}
