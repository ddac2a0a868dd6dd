//! `ca rotate NAME start|trust|issue|finish|abort` on fixture nodes, checked with real
//! openssl and kubectl: after each phase every leaf verifies against the old CA alone
//! and the new CA alone exactly as the phase promises; abort from each phase restores
//! every node file byte for byte; phases out of order and bad input fail naming the
//! file and change nothing; a kill -9 at every write step of each phase leaves a node
//! that the next command recovers (resumed or aborted).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::rotation::*;
use common::*;

struct Ca {
    name: &'static str,
    ca_file: &'static str,
    /// Leaves of this CA (certificate files) and kubeconfigs with client certificates.
    leaves: &'static [&'static str],
    kubeconfigs: &'static [&'static str],
    /// Leaves whose served chain carries the cross certificate during issue.
    serving: &'static [&'static str],
}

const CLUSTER: Ca = Ca {
    name: "ca",
    ca_file: "/etc/kubernetes/pki/ca.crt",
    leaves: &[
        "/etc/kubernetes/pki/apiserver.crt",
        "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        "/var/lib/kubelet/pki/kubelet-client-current.pem",
    ],
    kubeconfigs: &[
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/controller-manager.conf",
        "/etc/kubernetes/scheduler.conf",
    ],
    serving: &["/etc/kubernetes/pki/apiserver.crt"],
};

const ETCD: Ca = Ca {
    name: "etcd/ca",
    ca_file: "/etc/kubernetes/pki/etcd/ca.crt",
    leaves: &[
        "/etc/kubernetes/pki/etcd/server.crt",
        "/etc/kubernetes/pki/etcd/peer.crt",
        "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        "/etc/kubernetes/pki/apiserver-etcd-client.crt",
    ],
    kubeconfigs: &[],
    serving: &[
        "/etc/kubernetes/pki/etcd/server.crt",
        "/etc/kubernetes/pki/etcd/peer.crt",
    ],
};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Issued {
    Old,
    New,
}

/// Every leaf of `ca` against the old CA alone and the new CA alone, as `issued` says;
/// with `via_x`, a new leaf's served chain lets an old-only client verify it.
fn check_leaves(root: &Path, ca: &Ca, issued: Issued, via_x: bool, tmp: &Path) {
    let old = rotation_file(root, ca.name, "old-ca.crt");
    let new = rotation_file(root, ca.name, "new-ca.crt");
    let mut files: Vec<(String, PathBuf)> = ca
        .leaves
        .iter()
        .map(|l| {
            // The kubelet's symlink holds a node path: openssl reads the file it names.
            let f = if l.ends_with("kubelet-client-current.pem") {
                kubelet_client_file(root)
            } else {
                host(root, l)
            };
            (l.to_string(), f)
        })
        .collect();
    for k in ca.kubeconfigs {
        files.push((k.to_string(), client_pem(root, k, tmp)));
    }
    for (name, f) in &files {
        let served = ca.serving.contains(&name.as_str());
        let (with_old, with_new) = (verifies(&old, None, f), verifies(&new, None, f));
        match issued {
            Issued::Old => {
                assert!(
                    with_old,
                    "{name}: an old leaf must verify against the old CA"
                );
                assert!(
                    !with_new,
                    "{name}: an old leaf must not verify against the new CA alone"
                );
            }
            Issued::New => {
                assert!(
                    with_new,
                    "{name}: a new leaf must verify against the new CA alone"
                );
                assert!(
                    !with_old,
                    "{name}: a new leaf must not verify against the old CA without X"
                );
                // The served file as the untrusted chain: X travels with the leaf.
                let x = verifies(&old, Some(f), f);
                assert_eq!(
                    x,
                    via_x && served,
                    "{name}: old-only verification through the served chain"
                );
            }
        }
    }
}

fn check_bundle(root: &Path, ca: &Ca, order: &[&str]) {
    let want: Vec<String> = order
        .iter()
        .map(|w| {
            file_certs(
                root,
                rotation_file(root, ca.name, &format!("{w}-ca.crt"))
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap(),
            )[0]
            .clone()
        })
        .collect();
    assert_eq!(file_certs(root, ca.ca_file), want, "{} order", ca.ca_file);
    for k in ca.kubeconfigs {
        let mut got = kubectl_ca_data(root, k);
        let mut w = want.clone();
        got.sort();
        w.sort();
        assert_eq!(got, w, "{k}: certificate-authority-data");
    }
}

/// `ca status --json`'s phase of a CA.
fn phase(root: &Path, ca: &str) -> String {
    let out = run(root, &["ca", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ca status --json");
    v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == ca)
        .unwrap_or_else(|| panic!("no {ca} in {v:#}"))["phase"]
        .as_str()
        .unwrap()
        .to_string()
}

fn full_rotation(ca: &Ca) {
    let d = ecdsa_node();
    let r = d.path();
    let tmp = tempfile::tempdir().unwrap();
    let before = node_files(r);
    assert_eq!(phase(r, ca.name), "none");
    let t = rot(r, ca.name, "start");
    assert!(t.contains("nothing live changed"), "{t}");
    assert_eq!(phase(r, ca.name), "started");
    assert_eq!(node_files(r), before, "start changed a node file");
    let key = rotation_file(r, ca.name, "new-ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    check_leaves(r, ca, Issued::Old, true, tmp.path());
    // The staged new CA: like the old one under a unique CN; X chains it to the old.
    let new = rotation_file(r, ca.name, "new-ca.crt");
    let subject = openssl(&["x509", "-noout", "-subject", "-in", new.to_str().unwrap()]);
    assert!(subject.contains('@'), "{subject}");
    let old = rotation_file(r, ca.name, "old-ca.crt");
    let cross = rotation_file(r, ca.name, "cross.crt");
    assert!(
        verifies(&old, None, &cross),
        "X verifies against the old CA"
    );

    let t = rot(r, ca.name, "trust");
    assert!(
        t.contains("must restart"),
        "under --root the command says what restarts: {t}"
    );
    check_bundle(r, ca, &["old", "new"]);
    check_leaves(r, ca, Issued::Old, true, tmp.path());
    assert_eq!(phase(r, ca.name), "trusting");
    if ca.name == "ca" {
        let m = std::fs::read_to_string(host(
            r,
            "/etc/kubernetes/manifests/kube-controller-manager.yaml",
        ))
        .unwrap();
        assert!(
            m.contains("--cluster-signing-cert-file=/etc/kubernetes/pki/ca-signer.crt\n"),
            "{m}"
        );
        assert!(
            m.contains("--root-ca-file=/etc/kubernetes/pki/ca.crt\n"),
            "{m}"
        );
        assert_eq!(
            file_certs(r, "/etc/kubernetes/pki/ca-signer.crt"),
            file_certs(r, old.strip_prefix(r).unwrap().to_str().unwrap())
        );
        let strays: Vec<_> = std::fs::read_dir(host(r, "/etc/kubernetes/manifests"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(strays.len(), 4, "only the four manifests: {strays:?}");
    }
    // Idempotent: the same phase again is a no-op that says so.
    let snap = node_files(r);
    assert!(rot(r, ca.name, "trust").contains("nothing to do"));
    assert_eq!(node_files(r), snap);

    rot(r, ca.name, "issue");
    assert_eq!(phase(r, ca.name), "issuing");
    check_bundle(r, ca, &["new", "old"]);
    check_leaves(r, ca, Issued::New, true, tmp.path());
    if ca.name == "ca" {
        assert_eq!(
            file_certs(r, "/etc/kubernetes/pki/ca-signer.crt"),
            file_certs(r, new.strip_prefix(r).unwrap().to_str().unwrap())
        );
    }
    for s in ca.serving {
        assert_eq!(file_certs(r, s).len(), 2, "{s}: leaf and X");
    }
    let snap = node_files(r);
    assert!(rot(r, ca.name, "issue").contains("nothing to do"));
    assert_eq!(node_files(r), snap);
    // status still reads a node in the middle of a rotation: every pair matches.
    let (_, code) = status_json(r);
    assert_eq!(code, 0);

    rot(r, ca.name, "finish");
    assert_eq!(phase(r, ca.name), "finished");
    check_bundle(r, ca, &["new"]);
    check_leaves(r, ca, Issued::New, false, tmp.path());
    for s in ca.serving {
        assert_eq!(file_certs(r, s).len(), 1, "{s}: X dropped");
    }
    if ca.name == "ca" {
        let m = std::fs::read_to_string(host(
            r,
            "/etc/kubernetes/manifests/kube-controller-manager.yaml",
        ))
        .unwrap();
        assert!(
            m.contains("--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt\n"),
            "kubeadm's flag again: {m}"
        );
        assert!(!host(r, "/etc/kubernetes/pki/ca-signer.crt").exists());
    }
    let archived = rotation_file(r, ca.name, "old-ca.key");
    assert_eq!(
        std::fs::metadata(&archived).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let original_key = before
        .get(Path::new(&ca.ca_file.replace(".crt", ".key")[1..]))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(
        hex(&std::fs::read(&archived).unwrap()),
        original_key,
        "the old key is archived as it was"
    );
    assert!(rot(r, ca.name, "finish").contains("nothing to do"));
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "rotate", ca.name, "abort"]),
        &["no abort after finish"],
    );
    let (_, code) = status_json(r);
    assert_eq!(code, 0);
}

#[test]
fn a_full_rotation_of_the_cluster_ca() {
    full_rotation(&CLUSTER);
}

#[test]
fn a_full_rotation_of_the_etcd_ca_named_as_kubeadm_does_too() {
    full_rotation(&ETCD);
    let d = ecdsa_node();
    assert!(rot(d.path(), "etcd-ca", "start").contains("etcd/ca: staged"));
}

#[test]
fn abort_from_every_phase_before_finish_restores_every_file_byte_for_byte() {
    for upto in ["start", "trust", "issue"] {
        let d = ecdsa_node();
        let r = d.path();
        let before = node_files(r);
        for p in ["start", "trust", "issue"] {
            rot(r, "ca", p);
            if p == upto {
                break;
            }
        }
        assert_ne!(
            upto != "start",
            node_files(r) == before,
            "{upto} changed the node"
        );
        let t = rot(r, "ca", "abort");
        assert!(t.contains("as before `start`"), "{t}");
        assert_eq!(node_files(r), before, "abort after {upto}");
        assert!(!rotation_file(r, "ca", "journal.json").exists());
        assert!(rot(r, "ca", "abort").contains("nothing to abort"));
        // A new rotation may start again.
        rot(r, "ca", "start");
    }
}

#[test]
fn phases_out_of_order_exit_1_and_change_nothing() {
    let d = ecdsa_node();
    let r = d.path();
    let cmd = |p: &str| agent(r, &["ca", "rotate", "ca", p]);
    for p in ["trust", "issue", "finish"] {
        fails_and_changes_nothing(
            r,
            &mut cmd(p),
            &["run `start` first", "/etc/kubernetes/pki/ca.crt"],
        );
    }
    rot(r, "ca", "start");
    fails_and_changes_nothing(r, &mut cmd("issue"), &["run `trust` first"]);
    fails_and_changes_nothing(r, &mut cmd("finish"), &["run `issue` first"]);
    rot(r, "ca", "trust");
    fails_and_changes_nothing(r, &mut cmd("start"), &["in progress (phase trusting)"]);
    fails_and_changes_nothing(r, &mut cmd("finish"), &["run `issue` first"]);
    rot(r, "ca", "issue");
    fails_and_changes_nothing(r, &mut cmd("trust"), &["already in the issuing phase"]);
    let out = run(r, &["ca", "rotate", "no-such-ca", "start"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn bad_input_names_the_file_exits_1_and_changes_nothing() {
    let d = ecdsa_node();
    let r = d.path();
    let start = |cert: &str, key: &str| {
        agent(
            r,
            &[
                "ca",
                "rotate",
                "ca",
                "start",
                "--new-cert",
                cert,
                "--new-key",
                key,
            ],
        )
    };
    // Not a CA.
    fails_and_changes_nothing(
        r,
        &mut start(
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/pki/apiserver.key",
        ),
        &["/etc/kubernetes/pki/apiserver.crt: is not a CA certificate"],
    );
    // A CA whose key does not match: openssl makes both.
    let dir = host(r, "/root/newca");
    std::fs::create_dir_all(&dir).unwrap();
    for n in ["a", "b"] {
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            dir.join(format!("{n}.key")).to_str().unwrap(),
        ]);
    }
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        dir.join("a.key").to_str().unwrap(),
        "-subj",
        "/CN=kubernetes-next",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        dir.join("a.crt").to_str().unwrap(),
    ]);
    fails_and_changes_nothing(
        r,
        &mut start("/root/newca/a.crt", "/root/newca/b.key"),
        &["/root/newca/b.key: the key does not match the new CA certificate /root/newca/a.crt"],
    );
    // The old CA itself is no new CA.
    fails_and_changes_nothing(
        r,
        &mut start("/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key"),
        &["/etc/kubernetes/pki/ca.crt", "same key"],
    );
    // A given CA that is fine is staged as given: the same on every control-plane node.
    let t = ok(
        r,
        &[
            "ca",
            "rotate",
            "ca",
            "start",
            "--new-cert",
            "/root/newca/a.crt",
            "--new-key",
            "/root/newca/a.key",
        ],
    );
    assert!(t.contains("CN=kubernetes-next"), "{t}");
    assert_eq!(
        std::fs::read(rotation_file(r, "ca", "new-ca.crt")).unwrap(),
        std::fs::read(dir.join("a.crt")).unwrap()
    );
    rot(r, "ca", "trust");
    // A bundle whose order is wrong: new first while the old key still signs.
    let ca = host(r, "/etc/kubernetes/pki/ca.crt");
    let text_ca = std::fs::read_to_string(&ca).unwrap();
    let (first, second) =
        text_ca.split_at(text_ca.find("-----END CERTIFICATE-----\n").unwrap() + 26);
    std::fs::write(&ca, format!("{second}{first}")).unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "rotate", "ca", "issue"]),
        &["/etc/kubernetes/pki/ca.crt", "the order is wrong"],
    );
    // kubeadm at work: refused.
    std::fs::write(&ca, text_ca).unwrap();
    std::fs::create_dir_all(host(r, "/etc/kubernetes/tmp/kubeadm-backup-etcd-2026")).unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["ca", "rotate", "ca", "issue"]),
        &[
            "kubeadm is running",
            "/etc/kubernetes/tmp/kubeadm-backup-etcd-2026",
        ],
    );
}

/// One phase with a crash at every failpoint in turn, from a copy of `template`; after
/// each crash the same command resumes (even points) or `abort` undoes the rotation
/// (odd points, byte-identical to before `start`).
fn sweep(template: &Path, pristine: &BTreeMap<PathBuf, String>, phase: &str) -> usize {
    let mut points = 0;
    for n in 1.. {
        let w = tempfile::tempdir().unwrap();
        let r = w.path().join("node");
        let cp = Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(&r)
            .status()
            .unwrap();
        assert!(cp.success());
        let out = agent(&r, &["ca", "rotate", "ca", phase])
            .env("CERT_ROTATOR_FAILPOINT", n.to_string())
            .output()
            .unwrap();
        if out.status.code().is_some() {
            assert!(
                out.status.success(),
                "{phase} without a crash: {}",
                text(&out)
            );
            break;
        }
        points += 1;
        if n % 2 == 0 {
            let t = text(&agent(&r, &["ca", "rotate", "ca", phase]).output().unwrap());
            assert!(
                !t.contains("failed") && !t.contains("refused"),
                "{phase} after a crash at {n}: {t}"
            );
            let t = rot(&r, "ca", phase);
            assert!(
                t.contains("nothing to do"),
                "{phase} after a crash at {n}, then again: {t}"
            );
        } else {
            let t = text(
                &agent(&r, &["ca", "rotate", "ca", "abort"])
                    .output()
                    .unwrap(),
            );
            if t.contains("no abort after finish") {
                // finish recorded itself before the crash: only forward.
                assert!(rot(&r, "ca", "finish").contains("finished"), "{t}");
            } else {
                assert_eq!(
                    &node_files(&r),
                    pristine,
                    "abort after a crash of {phase} at {n}: {t}"
                );
            }
        }
        for (p, _) in node_files(&r) {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                !name.contains("cert-rotator.tmp"),
                "{phase} at {n}: stray {p:?}"
            );
        }
    }
    points
}

#[test]
fn a_crash_at_every_write_step_of_every_phase_is_recovered() {
    let d = ecdsa_node();
    let base = d.path();
    let pristine = node_files(base);
    let phases = ["start", "trust", "issue", "finish"];
    for (i, phase) in phases.iter().enumerate() {
        // The node as the phases before this one left it.
        let t = tempfile::tempdir().unwrap();
        let tpl = t.path().join("node");
        assert!(Command::new("cp")
            .arg("-a")
            .arg(base)
            .arg(&tpl)
            .status()
            .unwrap()
            .success());
        for p in &phases[..i] {
            rot(&tpl, "ca", p);
        }
        let points = sweep(&tpl, &pristine, phase);
        assert!(
            points > 3,
            "{phase}: only {points} failpoints: is the failpoints feature on?"
        );
        eprintln!("{phase}: {points} crash points recovered");
    }
}
