//! `ca renew`, `ca status`, `ca export`, `ca import` and `run` renewing a due CA, on
//! fixture nodes, checked with real openssl and kubectl (docs/ca.md).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::*;

/// A control plane whose CAs (10 years) have 500 days left: under 20%, due.
fn dying_node() -> tempfile::TempDir {
    let mut spec = NodeSpec::control_plane(now());
    spec.ca_validity = Validity::days(3650, Duration::days(500));
    node(&spec)
}

const CA: &str = "/etc/kubernetes/pki/ca.crt";
const FRONT_PROXY_CA: &str = "/etc/kubernetes/pki/front-proxy-ca.crt";
const ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";
const KUBECONFIGS: [&str; 6] = [
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/super-admin.conf",
    "/etc/kubernetes/controller-manager.conf",
    "/etc/kubernetes/scheduler.conf",
    "/etc/kubernetes/kubelet.conf",
    "/root/.kube/config",
];

/// What must stay and what must change of a CA certificate, as openssl prints it.
struct CaFacts {
    subject: String,
    pubkey: String,
    ski: String,
    serial: String,
    not_after: String,
}

fn ca_facts(file: &Path) -> CaFacts {
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

fn ok(out: &std::process::Output) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    t
}

/// `openssl verify -CAfile CA LEAF`, the CA file holding the renewed CA alone.
fn verifies(ca: &Path, leaf: &Path) {
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
fn kubectl_ca(kubeconfig: &Path) -> Vec<u8> {
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

fn ca_status(r: &Path) -> (serde_json::Value, i32) {
    let out = run(r, &["ca", "status", "--json"]);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ca status --json: {e}\n{}", text(&out)));
    (v, out.status.code().unwrap_or(-1))
}

fn authority<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no authority {name} in {v:#}"))
}

/// Every line of `after` equals `before` except the certificate-authority-data line.
fn only_ca_data_changed(before: &str, after: &str, what: &str) {
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

fn read(r: &Path, p: &str) -> String {
    std::fs::read_to_string(host(r, p)).unwrap()
}

#[test]
fn ca_renew_keeps_key_subject_and_ski_and_every_leaf_verifies() {
    let d = dying_node();
    let r = d.path();
    let before: BTreeMap<&str, CaFacts> = [CA, FRONT_PROXY_CA, ETCD_CA]
        .into_iter()
        .map(|p| (p, ca_facts(&host(r, p))))
        .collect();
    let confs: BTreeMap<&str, String> = KUBECONFIGS.iter().map(|k| (*k, read(r, k))).collect();
    let leaves_before = snapshot(&host(r, "/etc/kubernetes/pki"));
    let out = run(r, &["ca", "renew", "ca", "front-proxy-ca", "etcd-ca"]);
    let t = ok(&out);
    for name in ["ca\trenewed", "front-proxy-ca\trenewed", "etcd/ca\trenewed"] {
        assert!(t.contains(name), "{t}");
    }
    // Under --root nothing is restarted; what would be is said, etcd first.
    let etcd = t.find("etcd: restart static pod etcd").expect(&t);
    let apiserver = t.find("kube-apiserver: restart static pod").expect(&t);
    assert!(etcd < apiserver, "{t}");
    assert!(t.contains("kubelet: restart kubelet.service"), "{t}");
    for (p, old) in &before {
        let new = ca_facts(&host(r, p));
        assert_eq!(new.subject, old.subject, "{p}");
        assert_eq!(new.pubkey, old.pubkey, "{p}");
        assert_eq!(new.ski, old.ski, "{p}");
        assert_ne!(new.serial, old.serial, "{p}");
        assert_ne!(new.not_after, old.not_after, "{p}");
    }
    // The old lifetime from now: ten years.
    let (v, code) = ca_status(r);
    assert_eq!(code, 0, "{v:#}");
    for a in v["authorities"].as_array().unwrap() {
        assert_eq!(a["due"], false, "{a:#}");
        let left = a["residual_seconds"].as_i64().unwrap();
        assert!(left > 3649 * 86_400 && left <= 3650 * 86_400, "{a:#}");
    }
    // No leaf was touched, and every one verifies against the renewed CA alone.
    let leaves_after = snapshot(&host(r, "/etc/kubernetes/pki"));
    let changed: Vec<_> = leaves_after
        .iter()
        .filter(|(p, s)| leaves_before.get(*p) != Some(s))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert_eq!(
        changed,
        ["ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"],
        "only the CA files change"
    );
    let pki = |n: &str| host(r, &format!("/etc/kubernetes/pki/{n}"));
    for leaf in ["apiserver.crt", "apiserver-kubelet-client.crt"] {
        verifies(&pki("ca.crt"), &pki(leaf));
    }
    verifies(&pki("front-proxy-ca.crt"), &pki("front-proxy-client.crt"));
    for leaf in [
        "apiserver-etcd-client.crt",
        "etcd/server.crt",
        "etcd/peer.crt",
        "etcd/healthcheck-client.crt",
    ] {
        verifies(&pki("etcd/ca.crt"), &pki(leaf));
    }
    verifies(&pki("ca.crt"), &kubelet_client_file(r));
    let new_ca = std::fs::read(pki("ca.crt")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for k in KUBECONFIGS {
        let after = read(r, k);
        only_ca_data_changed(&confs[k], &after, k);
        assert_eq!(kubectl_ca(&host(r, k)), new_ca, "{k} holds the new CA");
        if after.contains("client-certificate-data") {
            let pem = tmp.path().join("client.pem");
            write_embedded_client_cert(&after, &pem);
            verifies(&pki("ca.crt"), &pem);
        }
    }
    // The state dir holds the backup of every file written.
    let backups = snapshot(&host(r, "/var/lib/cert-rotator/backup"));
    assert!(
        backups
            .keys()
            .any(|p| p.ends_with("etc/kubernetes/admin.conf")),
        "{backups:?}"
    );
}

#[test]
fn ca_status_json_is_the_contract() {
    let d = dying_node();
    let r = d.path();
    let (v, code) = ca_status(r);
    assert_eq!(code, 0, "{v:#}");
    let names: Vec<&str> = v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ca", "front-proxy-ca", "etcd/ca"]);
    for (name, path) in [
        ("ca", CA),
        ("front-proxy-ca", FRONT_PROXY_CA),
        ("etcd/ca", ETCD_CA),
    ] {
        let a = authority(&v, name);
        assert_eq!(a["path"], path);
        assert_eq!(a["has_key"], true);
        assert_eq!(a["due"], true, "{a:#}");
        assert_eq!(a["due_reason"], "under-20-percent");
        assert_eq!(a["phase"], "none");
        assert!(a["not_after"].as_str().unwrap().ends_with('Z'));
        let bundle = a["bundle"].as_array().unwrap();
        assert_eq!(bundle.len(), 1);
        let b = &bundle[0];
        let fp = openssl(&[
            "x509",
            "-in",
            host(r, path).to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ]);
        let fp = fp
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(b["sha256"], fp.as_str());
        let serial = openssl(&[
            "x509",
            "-in",
            host(r, path).to_str().unwrap(),
            "-noout",
            "-serial",
        ]);
        let serial = serial
            .trim()
            .trim_start_matches("serial=")
            .trim_start_matches('0')
            .to_lowercase();
        assert_eq!(b["serial"], serial.as_str());
        assert!(b["subject"].as_str().unwrap().starts_with("CN="));
        assert_eq!(b["not_after"], a["not_after"]);
    }
    let copies: Vec<&str> = authority(&v, "ca")["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(copies[0], CA);
    for k in KUBECONFIGS {
        assert!(copies.contains(&k), "{k} in {copies:?}");
    }
    // `status` shows the due CAs too, its other fields unchanged.
    let (s, code) = status_json(r);
    assert_eq!(code, 0);
    let a = &s["authorities"][0];
    assert_eq!(a["due"], true, "{s:#}");
    assert_eq!(a["due_reason"], "under-20-percent");
    assert!(a["warning"].is_null() && a["has_key"] == true);
    let table = text(&run(r, &["status"]));
    assert!(
        table.contains("yes (under-20-percent): cert-rotator ca renew ca"),
        "{table}"
    );
    let table = ok(&run(r, &["ca", "status"]));
    assert!(
        table.contains("yes (under-20-percent)") && table.contains("none"),
        "{table}"
    );
    // Read-only: nothing written, not even the state directory.
    assert!(!host(r, "/var/lib/cert-rotator").exists());
}

/// Two control-plane nodes of one cluster: the second is a copy of the first (the same
/// CAs and keys, as `kubeadm join --control-plane` gives).
fn ha_pair() -> (tempfile::TempDir, tempfile::TempDir) {
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

#[test]
fn export_on_one_node_and_import_on_another() {
    let (a, b) = ha_pair();
    let (ra, rb) = (a.path(), b.path());
    ok(&run(ra, &["ca", "renew", "ca"]));
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("ca.crt");
    let t = ok(&run(ra, &["ca", "export", "ca", file.to_str().unwrap()]));
    assert!(t.contains("ca\texported"), "{t}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(host(ra, CA)).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // Never over an existing file.
    std::fs::write(files.path().join("taken"), b"mine").unwrap();
    let out = run(
        ra,
        &[
            "ca",
            "export",
            "ca",
            files.path().join("taken").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    assert_eq!(std::fs::read(files.path().join("taken")).unwrap(), b"mine");

    let confs: BTreeMap<&str, String> = KUBECONFIGS.iter().map(|k| (*k, read(rb, k))).collect();
    let t = ok(&run(rb, &["ca", "import", file.to_str().unwrap()]));
    assert!(t.contains("ca\timported"), "{t}");
    assert!(t.contains("kube-apiserver: restart static pod"), "{t}");
    assert_eq!(
        std::fs::read(host(rb, CA)).unwrap(),
        std::fs::read(host(ra, CA)).unwrap()
    );
    for k in KUBECONFIGS {
        only_ca_data_changed(&confs[k], &read(rb, k), k);
        assert_eq!(read(rb, k), read(ra, k), "{k}: both nodes alike");
    }
    // The check an operator runs on each node: the same sha256.
    let (va, _) = ca_status(ra);
    let (vb, _) = ca_status(rb);
    assert_eq!(
        authority(&va, "ca")["bundle"][0]["sha256"],
        authority(&vb, "ca")["bundle"][0]["sha256"]
    );
    assert!(authority(&vb, "ca")["copies"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["current"] == true));
    // Importing it again changes nothing.
    let before = snapshot(rb);
    let t = ok(&run(rb, &["ca", "import", file.to_str().unwrap()]));
    assert!(t.contains("already installed"), "{t}");
    let after = snapshot(rb);
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, s)| before.get(*p) != Some(s) && !p.starts_with("var/lib/cert-rotator"))
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
}

#[test]
fn export_with_key_is_0600_loud_and_imports_without_installing_the_key() {
    let (a, b) = ha_pair();
    let (ra, rb) = (a.path(), b.path());
    ok(&run(ra, &["ca", "renew", "etcd/ca"]));
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("etcd-ca.pem");
    let out = run(
        ra,
        &[
            "ca",
            "export",
            "etcd-ca",
            file.to_str().unwrap(),
            "--with-key",
        ],
    );
    let t = ok(&out);
    assert!(
        t.contains("WARNING") && t.contains("PRIVATE KEY of CA etcd/ca"),
        "{t}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("BEGIN"),
        "the key is never logged: {stderr}"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read_to_string(&file).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"));
    let key_before = std::fs::read(host(rb, "/etc/kubernetes/pki/etcd/ca.key")).unwrap();
    let t = ok(&run(rb, &["ca", "import", file.to_str().unwrap()]));
    assert!(
        t.contains("etcd/ca\timported") && t.contains("not installed"),
        "{t}"
    );
    assert!(t.contains("etcd: restart static pod etcd"), "{t}");
    assert_eq!(
        std::fs::read(host(rb, ETCD_CA)).unwrap(),
        std::fs::read(host(ra, ETCD_CA)).unwrap()
    );
    assert_eq!(
        std::fs::read(host(rb, "/etc/kubernetes/pki/etcd/ca.key")).unwrap(),
        key_before
    );
    verifies(
        &host(rb, ETCD_CA),
        &host(rb, "/etc/kubernetes/pki/etcd/server.crt"),
    );
}

#[test]
fn import_refuses_another_key_another_subject_and_junk() {
    let (a, b) = ha_pair();
    let (ra, rb) = (a.path(), b.path());
    let files = tempfile::tempdir().unwrap();
    // Another cluster's CA: the same subject CN=kubernetes, another key.
    let other = dying_node();
    let theirs = files.path().join("other-ca.crt");
    ok(&run(
        other.path(),
        &["ca", "export", "ca", theirs.to_str().unwrap()],
    ));
    fails_and_changes_nothing(
        rb,
        &mut agent(rb, &["ca", "import", theirs.to_str().unwrap()]),
        &[theirs.to_str().unwrap(), "different public key", CA],
    );
    // This cluster's key under another subject.
    let renamed = files.path().join("renamed.crt");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        host(ra, "/etc/kubernetes/pki/ca.key").to_str().unwrap(),
        "-subj",
        "/CN=not-kubernetes",
        "-days",
        "3650",
        "-out",
        renamed.to_str().unwrap(),
    ]);
    fails_and_changes_nothing(
        rb,
        &mut agent(rb, &["ca", "import", renamed.to_str().unwrap()]),
        &[
            renamed.to_str().unwrap(),
            "subject CN=not-kubernetes, not CN=kubernetes",
        ],
    );
    // A leaf, a truncated file, a missing file.
    fails_and_changes_nothing(
        rb,
        &mut agent(
            rb,
            &[
                "ca",
                "import",
                host(ra, "/etc/kubernetes/pki/apiserver.crt")
                    .to_str()
                    .unwrap(),
            ],
        ),
        &["apiserver.crt", "is not a CA certificate"],
    );
    let cut = files.path().join("cut.crt");
    let full = std::fs::read_to_string(host(ra, CA)).unwrap();
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    fails_and_changes_nothing(
        rb,
        &mut agent(rb, &["ca", "import", cut.to_str().unwrap()]),
        &[cut.to_str().unwrap(), "truncated PEM"],
    );
    fails_and_changes_nothing(
        rb,
        &mut agent(rb, &["ca", "import", "/nonexistent/ca.crt"]),
        &["/nonexistent/ca.crt"],
    );
    // An older certificate of the same CA than the node has: refused.
    let old = files.path().join("old.crt");
    std::fs::copy(host(rb, CA), &old).unwrap();
    ok(&run(rb, &["ca", "renew", "ca"]));
    fails_and_changes_nothing(
        rb,
        &mut agent(rb, &["ca", "import", old.to_str().unwrap()]),
        &["before the one CA ca has here"],
    );
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

#[test]
fn a_worker_imports_the_renewed_ca_and_cannot_renew_it() {
    let cp = dying_node();
    let w = worker_of(cp.path());
    let rw = w.path();
    assert!(!host(rw, "/etc/kubernetes/pki/ca.key").exists());
    let (v, code) = ca_status(rw);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["role"], "worker");
    let a = authority(&v, "ca");
    assert_eq!(a["has_key"], false);
    assert_eq!(a["due"], true);
    let copies: Vec<&str> = a["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(copies, [CA, "/etc/kubernetes/kubelet.conf"]);
    fails_and_changes_nothing(
        rw,
        &mut agent(rw, &["ca", "renew", "ca"]),
        &["no key at /etc/kubernetes/pki/ca.key", "ca import"],
    );
    fails_and_changes_nothing(rw, &mut agent(rw, &["ca", "renew"]), &["no key"]);
    ok(&run(cp.path(), &["ca", "renew", "ca"]));
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("ca.crt");
    ok(&run(
        cp.path(),
        &["ca", "export", "ca", file.to_str().unwrap()],
    ));
    let conf = read(rw, "/etc/kubernetes/kubelet.conf");
    let t = ok(&run(rw, &["ca", "import", file.to_str().unwrap()]));
    assert!(t.contains("kubelet: restart kubelet.service"), "{t}");
    assert!(!t.contains("kube-apiserver"), "{t}");
    only_ca_data_changed(
        &conf,
        &read(rw, "/etc/kubernetes/kubelet.conf"),
        "kubelet.conf",
    );
    assert_eq!(
        kubectl_ca(&host(rw, "/etc/kubernetes/kubelet.conf")),
        std::fs::read(&file).unwrap()
    );
    assert_eq!(
        std::fs::read(host(rw, CA)).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

#[test]
fn bad_input_changes_nothing() {
    let d = dying_node();
    let r = d.path();
    let out = run(r, &["ca", "renew", "kubernetes-ca"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("\"kubernetes-ca\" is not a CA name")
            && t.contains("ca, front-proxy-ca, etcd/ca"),
        "{t}"
    );
    let out = run(r, &["ca", "export", "nope", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A CA without its key.
    std::fs::remove_file(host(r, "/etc/kubernetes/pki/front-proxy-ca.key")).unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "renew", "ca", "front-proxy-ca"]),
        &["CA front-proxy-ca: no key at /etc/kubernetes/pki/front-proxy-ca.key"],
    );
    // A truncated CA file.
    let full = read(r, ETCD_CA);
    std::fs::write(host(r, ETCD_CA), &full[..full.len() - 40]).unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "renew", "etcd/ca"]),
        &["/etc/kubernetes/pki/etcd/ca.crt", "truncated PEM"],
    );
    let out = run(r, &["ca", "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A kubeconfig that cannot be parsed: its CA copy could not be updated.
    std::fs::write(host(r, ETCD_CA), &full).unwrap();
    std::fs::write(host(r, "/etc/kubernetes/scheduler.conf"), "{{{ not yaml").unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "renew", "ca"]),
        &["/etc/kubernetes/scheduler.conf", "YAML"],
    );
    // etcd/ca on a node with external etcd is no CA of this node.
    let mut spec = NodeSpec::control_plane(now());
    spec.stacked_etcd = false;
    let ext = node(&spec);
    let out = run(ext.path(), &["ca", "renew", "etcd/ca"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("CA etcd/ca is not on this node (it has: ca, front-proxy-ca)"));
    // Nothing due, nothing named: nothing done.
    let fresh = node(&NodeSpec::control_plane(now()));
    let before = snapshot(fresh.path());
    let t = ok(&run(fresh.path(), &["ca", "renew"]));
    assert!(t.contains("no CA is due"), "{t}");
    assert_eq!(before, snapshot(fresh.path()));
}

#[test]
fn run_renews_a_due_ca_first_and_says_so() {
    let d = dying_node();
    let r = d.path();
    let before = ca_facts(&host(r, ETCD_CA));
    // plan and run --dry-run show it and change nothing.
    let snap = snapshot(r);
    for args in [&["plan"][..], &["run", "--dry-run"]] {
        let t = ok(&run(r, args));
        assert!(
            t.contains("CA etcd/ca: renew with its own key first (under-20-percent"),
            "{t}"
        );
        assert!(t.contains("then restart etcd, kube-apiserver"), "{t}");
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&run(r, &["plan", "--json"]).stdout).unwrap();
    assert_eq!(
        plan["authorities_due"].as_array().unwrap().len(),
        3,
        "{plan:#}"
    );
    assert_eq!(snap, snapshot(r));
    let out = run(r, &["run"]);
    let t = ok(&out);
    assert!(t.contains("CA renewed with its own key (3):"), "{t}");
    assert!(
        t.contains("WARNINGS") && t.contains("renewed CA etcd/ca with its own key"),
        "{t}"
    );
    assert!(t.contains("ca import FILE"), "{t}");
    let after = ca_facts(&host(r, ETCD_CA));
    assert_eq!(after.pubkey, before.pubkey);
    assert_ne!(after.serial, before.serial);
    let (v, _) = ca_status(r);
    assert!(v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["due"] == false));
    verifies(
        &host(r, ETCD_CA),
        &host(r, "/etc/kubernetes/pki/etcd/server.crt"),
    );
    // The next pass has nothing to do with the CAs.
    let t = ok(&run(r, &["run"]));
    assert!(!t.contains("CA renewed"), "{t}");
}

#[test]
fn authorities_renew_false_stops_run_and_warns() {
    let d = dying_node();
    let r = d.path();
    let conf = r.join("cert-rotator.toml");
    std::fs::write(&conf, "[authorities]\nrenew = false\n").unwrap();
    let c = conf.to_str().unwrap();
    let before = std::fs::read(host(r, CA)).unwrap();
    let t = ok(&run(r, &["--config", c, "plan"]));
    assert!(
        t.contains("CA ca is due (under-20-percent") && t.contains("[authorities] renew = false"),
        "{t}"
    );
    let t = ok(&run(r, &["--config", c, "run"]));
    assert!(
        t.contains("not renewed automatically ([authorities] renew = false)"),
        "{t}"
    );
    assert!(!t.contains("CA renewed with its own key"), "{t}");
    assert_eq!(std::fs::read(host(r, CA)).unwrap(), before);
    // A narrower window: not due at all.
    std::fs::write(&conf, "[authorities]\nremaining_fraction = 0.1\n").unwrap();
    let (v, _) = {
        let out = run(r, &["--config", c, "ca", "status", "--json"]);
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            0,
        )
    };
    assert_eq!(authority(&v, "ca")["due"], false, "{v:#}");
    std::fs::write(&conf, "[authorities]\nremaining_fraction = 1.5\n").unwrap();
    let out = run(r, &["--config", c, "ca", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("authorities.remaining_fraction"),
        "{}",
        text(&out)
    );
}

/// The live path through the library, with the pass's test doubles for systemd, the TLS
/// probe and the clock (the booted-systemd test runs it for real): what holds the CAs
/// restarts once each, etcd first, one at a time, each verified; a failed restart stops
/// the rest and is reported, the new files staying.
#[test]
fn on_the_live_node_what_holds_the_ca_restarts_in_order_each_verified() {
    use cert_rotator::authority::{self, renew::read_key, NodeCopies};
    use cert_rotator::config::Settings;
    use cert_rotator::node::NodeRoot;
    use cert_rotator::pass::{Edges, Overrides, Pass, Restarts};
    use cert_rotator::write::StateDir;
    use common::fakes::{FakeClock, FakeProber, RecordingServiceManager};

    for fail_kubelet in [false, true] {
        let d = dying_node();
        let r = d.path();
        let root = NodeRoot::new(r);
        let s = Settings::default();
        let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
        let services = RecordingServiceManager::new();
        if fail_kubelet {
            services.fail_unit("kubelet.service", "failed");
        }
        let prober = FakeProber::new(r, &[]);
        let clock = FakeClock::at(now());
        let pass = Pass {
            root: &root,
            settings: &s,
            state: &state,
            overrides: Overrides::default(),
            restarts: Restarts::Live(Edges {
                services: &services,
                prober: &prober,
                clock: &clock,
            }),
        };
        let node = NodeCopies::read(&root, &s);
        let renewals: Vec<_> = ["ca", "etcd/ca"]
            .iter()
            .map(|n| {
                let ca = node.authority(n).unwrap();
                let key = read_key(&root, ca).unwrap();
                authority::plan_renewal(ca, node.role, &key, now(), None).unwrap()
            })
            .collect();
        let changes: Vec<_> = renewals.iter().flat_map(|x| x.changes.clone()).collect();
        let restarts = authority::merge_restarts(renewals.iter().map(|x| x.restarts.as_slice()));
        let serials: Vec<String> = renewals.iter().map(|x| x.new.serial.clone()).collect();
        let done = authority::install(&pass, "renew CA ca, etcd/ca", &changes, &restarts, &serials)
            .unwrap();
        let order: Vec<&str> = done
            .restarted
            .iter()
            .map(|l| l.split(':').next().unwrap())
            .collect();
        let mut want = vec![
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ];
        if !fail_kubelet {
            want.push("kubelet.service");
        }
        assert_eq!(order, want, "{done:?}");
        for pod in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let m = read(r, &format!("/etc/kubernetes/manifests/{pod}.yaml"));
            assert!(m.contains("cert-rotator.k8s.io/certs-hash"), "{pod}: {m}");
        }
        assert_eq!(services.restarted(), ["kubelet.service"]);
        // Control-plane restarts are paced: the clock was slept on between them.
        assert!(clock.slept().len() >= 3, "{:?}", clock.slept());
        assert_eq!(
            std::fs::read(host(r, CA)).unwrap(),
            authority::renew::pem(&renewals[0].new).into_bytes()
        );
        if fail_kubelet {
            let f = done.failed.clone().expect("the kubelet's restart failed");
            assert!(f.starts_with("kubelet:"), "{f}");
            assert!(
                !done.verified.iter().any(|v| v.starts_with("kubelet")),
                "{done:?}"
            );
        } else {
            assert!(done.failed.is_none(), "{done:?}");
            assert!(
                done.verified
                    .iter()
                    .any(|v| v.starts_with("etcd serves serial")),
                "{done:?}"
            );
            assert!(
                done.verified.iter().any(|v| v.starts_with("kubelet")),
                "{done:?}"
            );
        }
    }
}
