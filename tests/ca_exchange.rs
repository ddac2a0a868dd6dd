//! `ca export` on one node and `ca import` on another (an HA pair, a worker), on
//! fixture nodes, checked with real openssl and kubectl (docs/ca.md).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use common::ca::*;
use common::*;

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
