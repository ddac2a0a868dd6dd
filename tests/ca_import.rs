//! `ca import` of the bundle a CA rotation leaves in the rotating node's CA file, on a
//! worker that follows it phase by phase (issue #11), checked with real openssl and
//! kubectl: after each import the worker's ca.crt and the CA data of its kubelet.conf
//! hold the control plane's bundle certificate for certificate; a bundle that is not
//! continuous with what the worker trusts, holds a leaf or an expired CA is refused
//! with exit 1 and the worker unchanged.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use cert_rotator::pki::KeyAlgorithm;
use common::ca::kubectl_ca;
use common::*;

const CA: &str = "/etc/kubernetes/pki/ca.crt";
const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The DER of each certificate of a PEM text, in order.
fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        match (line.trim(), &mut body) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b)) => {
                out.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(b.as_bytes())
                        .expect("base64 PEM body"),
                );
                body = None;
            }
            (l, Some(b)) => b.push_str(l),
            _ => {}
        }
    }
    out
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = run(root, args);
    let t = text(&out);
    assert!(out.status.success(), "{args:?} failed:\n{t}");
    t
}

/// A control plane with ECDSA keys (fast rotations).
fn control_plane() -> tempfile::TempDir {
    let mut spec = NodeSpec::control_plane(now());
    spec.key_algorithm = KeyAlgorithm::EcdsaP256;
    node(&spec)
}

/// A worker of the cluster: its ca.crt and kubelet.conf trust the control plane's CA,
/// and it has no CA key.
fn worker_of(cp: &Path) -> tempfile::TempDir {
    let mut spec = NodeSpec::worker(now());
    spec.kubelet_conf_embedded = true;
    let w = node(&spec);
    let r = w.path();
    let own = std::fs::read(host(r, CA)).unwrap();
    let cluster = std::fs::read(host(cp, CA)).unwrap();
    let conf = std::fs::read_to_string(host(r, KUBELET_CONF)).unwrap();
    assert!(conf.contains(&b64(&own)));
    std::fs::write(
        host(r, KUBELET_CONF),
        conf.replace(&b64(&own), &b64(&cluster)),
    )
    .unwrap();
    std::fs::write(host(r, CA), cluster).unwrap();
    assert!(!host(r, "/etc/kubernetes/pki/ca.key").exists());
    w
}

/// Copies the control plane's ca.crt (what the operator carries over) to a file.
fn carry(cp: &Path, dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::copy(host(cp, CA), &file).unwrap();
    file
}

/// Imports `file` on the worker: its ca.crt and kubelet.conf then hold the file's
/// certificates, in order, and the kubelet is the one restart.
fn import_onto(w: &Path, file: &Path, count: usize) {
    let t = ok(w, &["ca", "import", file.to_str().unwrap()]);
    assert!(t.contains("ca\timported"), "{t}");
    assert!(t.contains("kubelet: restart kubelet.service"), "{t}");
    assert!(!t.contains("kube-apiserver"), "{t}");
    let want = ders(&std::fs::read(file).unwrap());
    assert_eq!(want.len(), count);
    assert_eq!(ders(&std::fs::read(host(w, CA)).unwrap()), want, "ca.crt");
    assert_eq!(
        ders(&kubectl_ca(&host(w, KUBELET_CONF))),
        want,
        "kubelet.conf certificate-authority-data"
    );
    let (v, code) = ca_status(w);
    assert_eq!(code, 0, "{v:#}");
}

fn ca_status(r: &Path) -> (serde_json::Value, i32) {
    let out = run(r, &["ca", "status", "--json"]);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ca status --json: {e}\n{}", text(&out)));
    (v, out.status.code().unwrap_or(-1))
}

fn node_files(root: &Path) -> BTreeMap<PathBuf, String> {
    snapshot(root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("var/lib/cert-rotator"))
        .collect()
}

/// `ca import file` on `w` exits 1 saying each of `expect`, the node byte-identical.
fn refused(w: &Path, file: &Path, expect: &[&str]) {
    let before = node_files(w);
    let out = run(w, &["ca", "import", file.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&file.display().to_string()), "{t}");
    for e in expect {
        assert!(t.contains(e), "{e:?} not in\n{t}");
    }
    assert_eq!(node_files(w), before, "a refused import changed the worker");
}

fn verifies(ca: &Path, leaf: &Path) -> bool {
    Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca)
        .arg(leaf)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_worker_follows_a_rotation_by_importing_each_phase_bundle() {
    let cp = control_plane();
    let w = worker_of(cp.path());
    let (rc, rw) = (cp.path(), w.path());
    let files = tempfile::tempdir().unwrap();
    let old = ders(&std::fs::read(host(rc, CA)).unwrap());
    assert_eq!(old.len(), 1);

    ok(rc, &["ca", "rotate", "ca", "start"]);
    ok(rc, &["ca", "rotate", "ca", "trust"]);
    // `ca export` writes what the CA file holds: the bundle.
    let trust = files.path().join("trust.crt");
    ok(rc, &["ca", "export", "ca", trust.to_str().unwrap()]);
    let bundle = ders(&std::fs::read(&trust).unwrap());
    assert_eq!(bundle, ders(&std::fs::read(host(rc, CA)).unwrap()));
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[0], old[0], "trust: [old, new]");
    let conf = std::fs::read_to_string(host(rw, KUBELET_CONF)).unwrap();
    import_onto(rw, &trust, 2);
    // Only the CA data line of kubelet.conf changed.
    let after = std::fs::read_to_string(host(rw, KUBELET_CONF)).unwrap();
    let diff: Vec<_> = conf
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert!(diff[0].0.contains("certificate-authority-data"), "{diff:?}");
    // Importing it again changes nothing.
    let before = node_files(rw);
    let t = ok(rw, &["ca", "import", trust.to_str().unwrap()]);
    assert!(t.contains("already installed"), "{t}");
    assert_eq!(node_files(rw), before);

    ok(rc, &["ca", "rotate", "ca", "issue"]);
    let issue = carry(rc, files.path(), "issue.crt");
    let b = ders(&std::fs::read(&issue).unwrap());
    assert_eq!(
        (b[0].clone(), b[1].clone()),
        (bundle[1].clone(), old[0].clone())
    );
    import_onto(rw, &issue, 2);
    let apiserver = host(rc, "/etc/kubernetes/pki/apiserver.crt");
    assert!(
        verifies(&host(rw, CA), &apiserver),
        "the re-issued apiserver.crt verifies against the worker's ca.crt"
    );

    ok(rc, &["ca", "rotate", "ca", "finish"]);
    let finish = carry(rc, files.path(), "finish.crt");
    assert_eq!(ders(&std::fs::read(&finish).unwrap()), [bundle[1].clone()]);
    import_onto(rw, &finish, 1);
    assert!(verifies(&host(rw, CA), &apiserver));
}

#[test]
fn a_worker_that_skipped_a_phase_still_takes_the_next_bundle() {
    // finish ([new]) onto [old, new]: they share the new CA.
    let cp = control_plane();
    let w = worker_of(cp.path());
    let (rc, rw) = (cp.path(), w.path());
    let files = tempfile::tempdir().unwrap();
    ok(rc, &["ca", "rotate", "ca", "start"]);
    ok(rc, &["ca", "rotate", "ca", "trust"]);
    import_onto(rw, &carry(rc, files.path(), "trust.crt"), 2);
    ok(rc, &["ca", "rotate", "ca", "issue"]);
    ok(rc, &["ca", "rotate", "ca", "finish"]);
    import_onto(rw, &carry(rc, files.path(), "finish.crt"), 1);
}

#[test]
fn bundles_that_are_not_continuous_or_not_cas_are_refused_and_change_nothing() {
    let cp = control_plane();
    let w = worker_of(cp.path());
    let (rc, rw) = (cp.path(), w.path());
    let files = tempfile::tempdir().unwrap();
    let cluster = std::fs::read(host(rc, CA)).unwrap();

    // Another cluster's CAs: nothing this worker trusts.
    let other = control_plane();
    let mut unrelated = std::fs::read(host(other.path(), CA)).unwrap();
    unrelated.extend(
        std::fs::read(host(other.path(), "/etc/kubernetes/pki/front-proxy-ca.crt")).unwrap(),
    );
    let f = files.path().join("unrelated.crt");
    std::fs::write(&f, &unrelated).unwrap();
    refused(
        rw,
        &f,
        &["does not contain a CA this node trusts (subjects CN=kubernetes"],
    );

    // A leaf after the trusted CA.
    let mut leaf = cluster.clone();
    leaf.extend(std::fs::read(host(rc, "/etc/kubernetes/pki/apiserver.crt")).unwrap());
    let f = files.path().join("leaf.crt");
    std::fs::write(&f, &leaf).unwrap();
    refused(rw, &f, &["CN=kube-apiserver is not a CA certificate"]);

    // An expired CA after the trusted one.
    let mut spec = NodeSpec::control_plane(now());
    spec.key_algorithm = KeyAlgorithm::EcdsaP256;
    spec.ca_validity = Validity::days(30, Duration::days(-1));
    let dead = node(&spec);
    let mut expired = cluster.clone();
    expired.extend(std::fs::read(host(dead.path(), CA)).unwrap());
    let f = files.path().join("expired.crt");
    std::fs::write(&f, &expired).unwrap();
    refused(rw, &f, &["expired"]);

    // The trusted CA twice.
    let mut twice = cluster.clone();
    twice.extend(&cluster);
    let f = files.path().join("twice.crt");
    std::fs::write(&f, &twice).unwrap();
    refused(rw, &f, &["twice"]);
}

#[test]
fn the_node_that_rotates_uses_ca_rotate_not_ca_import() {
    let cp = control_plane();
    let rc = cp.path();
    let files = tempfile::tempdir().unwrap();
    ok(rc, &["ca", "rotate", "ca", "start"]);
    ok(rc, &["ca", "rotate", "ca", "trust"]);
    let trust = carry(rc, files.path(), "trust.crt");
    refused(
        rc,
        &trust,
        &["being rotated here (phase trusting)", "`ca rotate ca`"],
    );
}

/// A CA certificate with the control plane's CA subject and key, made by openssl with
/// `extra` arguments (extensions).
fn same_key_ca(cp: &Path, dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let key = host(cp, "/etc/kubernetes/pki/ca.key");
    // kubeadm's CA subject is a PrintableString: openssl's default mask picks that too.
    let cfg = dir.join("req.cnf");
    std::fs::write(
        &cfg,
        "[req]\ndistinguished_name = dn\nstring_mask = default\nprompt = no\n[dn]\nCN = kubernetes\n",
    )
    .unwrap();
    let mut args = vec![
        "req",
        "-config",
        cfg.to_str().unwrap(),
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-days",
        "7300",
        "-out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    openssl(&args);
    out
}

#[test]
fn an_import_no_client_would_accept_is_refused() {
    let cp = control_plane();
    let rc = cp.path();
    let files = tempfile::tempdir().unwrap();

    // Same subject and key, a notBefore tomorrow (an exporting node's clock ahead).
    let key_pem = std::fs::read(host(rc, "/etc/kubernetes/pki/ca.key")).unwrap();
    let key = cert_rotator::pki::PrivateKey::from_pem(&key_pem).unwrap();
    let der = cert_rotator::pki::x509::CertTemplate::ca(
        vec![vec![(cert_rotator::pki::x509::OID_CN, "kubernetes".into())]],
        now() + Duration::days(1),
        now() + Duration::days(7300),
    )
    .issue(&key, None)
    .unwrap();
    let future = files.path().join("future.crt");
    std::fs::write(&future, cert_rotator::pki::encode_pem("CERTIFICATE", &der)).unwrap();
    refused(rc, &future, &["is not valid yet (notBefore"]);

    // Same subject and key, a CA whose keyUsage lacks keyCertSign.
    let no_sign = same_key_ca(
        rc,
        files.path(),
        "no-sign.crt",
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature",
        ],
    );
    refused(rc, &no_sign, &["keyUsage does not include keyCertSign"]);

    // The same key, not a CA at all.
    let leaf = same_key_ca(
        rc,
        files.path(),
        "leaf.crt",
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    );
    refused(rc, &leaf, &["is not a CA certificate"]);

    // A sound renewal with the same key is still accepted.
    let good = same_key_ca(
        rc,
        files.path(),
        "good.crt",
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
        ],
    );
    let t = ok(rc, &["ca", "import", good.to_str().unwrap()]);
    assert!(t.contains("ca\timported"), "{t}");
}

#[test]
fn a_bundle_on_a_node_with_the_ca_key_keeps_kubeadms_invariants_or_is_refused() {
    let cp = control_plane();
    let rc = cp.path();
    let other = control_plane();
    let files = tempfile::tempdir().unwrap();
    let ours = std::fs::read(host(rc, CA)).unwrap();
    let theirs = std::fs::read(host(other.path(), CA)).unwrap();

    // [ours, other]: ca.crt would be a bundle while the controller-manager signs from it.
    let f = files.path().join("ours-first.crt");
    std::fs::write(&f, [ours.clone(), theirs.clone()].concat()).unwrap();
    refused(
        rc,
        &f,
        &["--cluster-signing-cert-file names /etc/kubernetes/pki/ca.crt"],
    );
    // [other, ours]: ca.crt's first certificate would not match ca.key.
    let f = files.path().join("theirs-first.crt");
    std::fs::write(&f, [theirs, ours].concat()).unwrap();
    refused(
        rc,
        &f,
        &["is not the one CA ca's key /etc/kubernetes/pki/ca.key signs with"],
    );
}

#[test]
fn after_a_finished_rotation_a_same_key_renewal_is_imported() {
    let cp = control_plane();
    let rc = cp.path();
    let files = tempfile::tempdir().unwrap();
    for phase in ["start", "trust", "issue", "finish"] {
        ok(rc, &["ca", "rotate", "ca", phase]);
    }
    // Another control-plane node of the cluster (a copy of this one) renews the CA with
    // its own key, as the HA runbook does; this node imports the renewal.
    let peer = tempfile::tempdir().unwrap();
    let rp = peer.path();
    let cp_status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", rc.display()))
        .arg(rp)
        .status()
        .unwrap();
    assert!(cp_status.success());
    ok(rp, &["ca", "renew", "ca", "--days", "4000"]);
    let renewed = files.path().join("renewed.crt");
    ok(rp, &["ca", "export", "ca", renewed.to_str().unwrap()]);
    let t = ok(rc, &["ca", "import", renewed.to_str().unwrap()]);
    assert!(t.contains("ca\timported"), "{t}");
    assert_eq!(
        ders(&std::fs::read(host(rc, CA)).unwrap()),
        ders(&std::fs::read(&renewed).unwrap())
    );
}

#[test]
fn a_bundle_of_more_certificates_than_a_ca_holds_is_refused() {
    let cp = control_plane();
    let w = worker_of(cp.path());
    let rw = w.path();
    let files = tempfile::tempdir().unwrap();
    // The cluster CA and eight other CAs: nine, one more than the cap.
    let mut bundle = std::fs::read(host(cp.path(), CA)).unwrap();
    for i in 0..8 {
        let out = files.path().join(format!("other-{i}.crt"));
        let key = files.path().join(format!("other-{i}.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN=other-{i}"),
            "-days",
            "100",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-out",
            out.to_str().unwrap(),
        ]);
        bundle.extend(std::fs::read(&out).unwrap());
    }
    let f = files.path().join("nine.crt");
    std::fs::write(&f, &bundle).unwrap();
    refused(
        rw,
        &f,
        &["holds 9 certificates; a CA file to import holds at most 8"],
    );
}
