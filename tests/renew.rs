//! Renewal from the local CA, checked with the real openssl: identity preserved, chains
//! verify, keys match, kubeconfigs change only in their credentials, the kubelet's
//! symlink scheme is kept. Bad input: tests/renew_refused.rs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cert_rotator::pki::KeyAlgorithm;
use common::*;

/// `openssl x509 -text` with the parts a renewal may change masked: serial, validity,
/// public key bytes, signature bytes and key identifiers.
fn masked_text(pem_file: &Path) -> String {
    let text = openssl(&["x509", "-noout", "-text", "-in", pem_file.to_str().unwrap()]);
    let mut out = Vec::new();
    let mut skip_hex = false;
    let mut after_keyid = false;
    for line in text.lines() {
        let t = line.trim();
        let h = t.trim_end_matches(':');
        let is_hex = !h.is_empty()
            && h.split(':')
                .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
        if skip_hex && (is_hex || t.starts_with("ASN1 OID") || t.starts_with("NIST CURVE")) {
            if t.starts_with("ASN1 OID") || t.starts_with("NIST CURVE") {
                out.push(line.to_string());
            }
            continue;
        }
        skip_hex = false;
        if after_keyid {
            after_keyid = false;
            if is_hex {
                out.push("        <key id>".into());
                continue;
            }
        }
        if t.starts_with("Serial Number")
            || t.starts_with("Not Before")
            || t.starts_with("Not After")
        {
            out.push(format!("<{}>", t.split(':').next().unwrap()));
            skip_hex = t == "Serial Number:";
            continue;
        }
        if t.starts_with("Modulus:") || t.starts_with("pub:") || t.starts_with("Signature Value:") {
            out.push(line.to_string());
            skip_hex = true;
            continue;
        }
        if t.starts_with("X509v3 Subject Key Identifier")
            || t.starts_with("X509v3 Authority Key Identifier")
        {
            after_keyid = true;
        }
        out.push(line.to_string());
    }
    out.join("\n")
}

/// Every certificate of a node: (name, node path of a PEM file holding the leaf first).
fn leaf_files(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut m = BTreeMap::new();
    let pki = host(root, "/etc/kubernetes/pki");
    for n in [
        "apiserver",
        "apiserver-kubelet-client",
        "apiserver-etcd-client",
        "front-proxy-client",
        "etcd/server",
        "etcd/peer",
        "etcd/healthcheck-client",
    ] {
        m.insert(n.to_string(), pki.join(format!("{n}.crt")));
    }
    let extract = root.join("extracted");
    std::fs::create_dir_all(&extract).unwrap();
    for conf in [
        "admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "super-admin.conf",
    ] {
        let p = host(root, &format!("/etc/kubernetes/{conf}"));
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let f = extract.join(format!("{conf}.{}.pem", std::process::id()));
        write_embedded_client_cert(&text, &f);
        m.insert(conf.to_string(), f);
    }
    m.insert(
        "kubelet-client-current.pem".into(),
        kubelet_client_file(root),
    );
    m.insert(
        "kubelet.crt".into(),
        host(root, "/var/lib/kubelet/pki/kubelet.crt"),
    );
    m
}

fn snapshot_texts(root: &Path) -> BTreeMap<String, String> {
    leaf_files(root)
        .into_iter()
        .map(|(n, f)| (n, masked_text(&f)))
        .collect()
}

fn pubkey_of_cert(f: &Path) -> String {
    openssl(&["x509", "-noout", "-pubkey", "-in", f.to_str().unwrap()])
}

fn pubkey_of_key(f: &Path) -> String {
    openssl(&["pkey", "-pubout", "-in", f.to_str().unwrap()])
}

fn check_identity_preserved_on(alg: KeyAlgorithm) {
    let mut spec = NodeSpec::control_plane(now());
    spec.key_algorithm = alg;
    spec.admin_organizations = vec!["kubeadm:cluster-admins".into(), "system:masters".into()];
    let d = node(&spec);
    let r = d.path();
    let before = snapshot_texts(r);
    let (v0, _) = status_json(r);
    let out = run(r, &["renew-all"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("\trenewed\t").count(), 14, "{stdout}");
    let after = snapshot_texts(r);
    assert_eq!(
        before.len(),
        13,
        "every leaf but /root/.kube/config, a copy of admin.conf"
    );
    for (name, old) in &before {
        let new = &after[name];
        assert_eq!(old, new, "{name}: openssl x509 -text differs beyond serial, validity, key, signature and key ids");
    }
    let (v1, code) = status_json(r);
    assert_eq!(code, 0, "{v1:#}");
    let pki = host(r, "/etc/kubernetes/pki");
    for (ca, leaf) in [
        ("ca.crt", "apiserver"),
        ("ca.crt", "apiserver-kubelet-client"),
        ("front-proxy-ca.crt", "front-proxy-client"),
        ("etcd/ca.crt", "apiserver-etcd-client"),
        ("etcd/ca.crt", "etcd/server"),
        ("etcd/ca.crt", "etcd/peer"),
        ("etcd/ca.crt", "etcd/healthcheck-client"),
    ] {
        let crt = pki.join(format!("{leaf}.crt"));
        openssl(&[
            "verify",
            "-CAfile",
            pki.join(ca).to_str().unwrap(),
            crt.to_str().unwrap(),
        ]);
        assert_eq!(
            pubkey_of_cert(&crt),
            pubkey_of_key(&pki.join(format!("{leaf}.key"))),
            "{leaf}: key does not match"
        );
        let old = cert(&v0, leaf);
        let new = cert(&v1, leaf);
        assert_ne!(old["serial"], new["serial"], "{leaf}: serial must be fresh");
        assert_eq!(
            old["lifetime_seconds"], new["lifetime_seconds"],
            "{leaf}: lifetime kept"
        );
    }
    // kubelet client: leaf and key in one 0600 file behind the symlink; lifetime kept.
    let kc = kubelet_client_file(r);
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(pubkey_of_cert(&kc), pubkey_of_key(&kc));
    openssl(&[
        "verify",
        "-CAfile",
        pki.join("ca.crt").to_str().unwrap(),
        kc.to_str().unwrap(),
    ]);
    // kubelet.crt: a new throwaway CA, the leaf signed by it, one file, leaf first.
    let bundle = host(r, "/var/lib/kubelet/pki/kubelet.crt");
    let ca_file = r.join("kubelet-ca.pem");
    let text = std::fs::read_to_string(&bundle).unwrap();
    let second = text.find("-----END CERTIFICATE-----\n").unwrap() + 26;
    std::fs::write(&ca_file, &text[second..]).unwrap();
    openssl(&[
        "verify",
        "-CAfile",
        ca_file.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(
        pubkey_of_cert(&bundle),
        pubkey_of_key(&host(r, "/var/lib/kubelet/pki/kubelet.key"))
    );
    assert_ne!(
        cert(&v0, "kubelet.crt")["serial"],
        cert(&v1, "kubelet.crt")["serial"]
    );
}

#[test]
fn renew_all_preserves_identity_with_rsa_cas() {
    check_identity_preserved_on(KeyAlgorithm::Rsa { bits: 2048 });
}

#[test]
fn renew_all_preserves_identity_with_ecdsa_cas() {
    check_identity_preserved_on(KeyAlgorithm::EcdsaP256);
}

#[test]
fn kubeconfigs_change_only_in_their_credentials() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let before: Vec<(String, Vec<u8>)> = [
        "admin.conf",
        "scheduler.conf",
        "controller-manager.conf",
        "super-admin.conf",
        "kubelet.conf",
    ]
    .iter()
    .map(|c| {
        (
            c.to_string(),
            std::fs::read(host(r, &format!("/etc/kubernetes/{c}"))).unwrap(),
        )
    })
    .collect();
    let user_before = std::fs::read(host(r, "/root/.kube/config")).unwrap();
    let out = run(
        r,
        &[
            "renew",
            "/etc/kubernetes/admin.conf",
            "/etc/kubernetes/scheduler.conf",
            "/etc/kubernetes/controller-manager.conf",
            "/etc/kubernetes/super-admin.conf",
            "/root/.kube/config",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, old) in before {
        let new = std::fs::read(host(r, &format!("/etc/kubernetes/{name}"))).unwrap();
        if name == "kubelet.conf" {
            assert_eq!(
                old, new,
                "kubelet.conf points at the symlink and must not change"
            );
            continue;
        }
        assert_ne!(old, new, "{name} unchanged");
        // Put the old credential values back into the new file: it must be the old file.
        let value = |bytes: &[u8], key: &str| -> String {
            String::from_utf8_lossy(bytes)
                .lines()
                .find_map(|l| l.trim().strip_prefix(key).map(str::to_string))
                .unwrap()
        };
        let mut restored = String::from_utf8(new.clone()).unwrap();
        for key in ["client-certificate-data: ", "client-key-data: "] {
            restored = restored.replace(&value(&new, key), &value(&old, key));
        }
        assert_eq!(
            restored.as_bytes(),
            old.as_slice(),
            "{name}: bytes beyond the credentials changed"
        );
        assert_eq!(
            std::fs::metadata(host(r, &format!("/etc/kubernetes/{name}")))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    assert_ne!(
        user_before,
        std::fs::read(host(r, "/root/.kube/config")).unwrap()
    );
}

#[test]
fn kubelet_client_is_swapped_like_client_go_and_stays_a_symlink() {
    let d = node(&NodeSpec::control_plane(now()).with(
        "kubelet-client-current.pem",
        Validity::days(91, Duration::days(10)),
    ));
    let r = d.path();
    let old_target =
        std::fs::read_link(host(r, "/var/lib/kubelet/pki/kubelet-client-current.pem")).unwrap();
    let conf_before = std::fs::read(host(r, "/etc/kubernetes/kubelet.conf")).unwrap();
    let out = run(
        r,
        &["renew", "/var/lib/kubelet/pki/kubelet-client-current.pem"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let link = host(r, "/var/lib/kubelet/pki/kubelet-client-current.pem");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let new_target = std::fs::read_link(&link).unwrap();
    assert_ne!(new_target, old_target);
    let name = new_target
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        new_target.is_absolute()
            && name.len() == "kubelet-client-2026-11-23-09-39-56.pem".len()
            && name.starts_with("kubelet-client-20"),
        "{new_target:?}"
    );
    assert!(
        host(r, old_target.to_str().unwrap()).exists(),
        "old file stays, as the kubelet leaves it"
    );
    assert!(!host(r, "/var/lib/kubelet/pki/kubelet-client-updated.pem").exists());
    assert_eq!(
        conf_before,
        std::fs::read(host(r, "/etc/kubernetes/kubelet.conf")).unwrap()
    );
    let text = std::fs::read_to_string(kubelet_client_file(r)).unwrap();
    assert!(
        text.starts_with("-----BEGIN CERTIFICATE-----")
            && text.contains("-----BEGIN EC PRIVATE KEY-----")
    );
    let (v, _) = status_json(r);
    let k = cert(&v, "kubelet-client-current.pem");
    assert_eq!(
        k["lifetime_seconds"],
        91 * 86_400,
        "a 91-day certificate stays 91 days"
    );
    assert_eq!(k["due"], false);
}

#[test]
fn a_worker_without_the_ca_key_cannot_renew_locally_and_says_so() {
    let d = node(&NodeSpec::worker(now()));
    let before = snapshot(d.path());
    let out = run(
        d.path(),
        &["renew", "/var/lib/kubelet/pki/kubelet-client-current.pem"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "an explicitly named target that cannot be renewed is a failure"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("skipped") && stdout.contains("external CA"),
        "{stdout}"
    );
    let out = run(d.path(), &["renew-all"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "renew-all skips what it cannot renew"
    );
    let after = snapshot(d.path());
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, v)| !p.starts_with("var/lib/cert-rotator") && before.get(*p) != Some(*v))
        .collect();
    // Only the self-signed kubelet.crt bundle, which needs no cluster CA.
    let names: Vec<_> = changed
        .iter()
        .map(|(p, _)| p.to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "var/lib/kubelet/pki/kubelet.crt",
            "var/lib/kubelet/pki/kubelet.key"
        ]
    );
}

#[test]
fn reuse_key_keeps_the_key_and_days_sets_the_lifetime() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let key = host(r, "/etc/kubernetes/pki/apiserver.key");
    let before = std::fs::read(&key).unwrap();
    let out = run(
        r,
        &[
            "renew",
            "--reuse-key",
            "--days",
            "30",
            "/etc/kubernetes/pki/apiserver.crt",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(before, std::fs::read(&key).unwrap());
    let (v, _) = status_json(r);
    assert_eq!(cert(&v, "apiserver")["lifetime_seconds"], 30 * 86_400);
    let out = run(r, &["renew", "/etc/kubernetes/pki/apiserver.crt"]);
    assert!(out.status.success());
    assert_ne!(before, std::fs::read(&key).unwrap(), "new key by default");
}

#[test]
fn validity_is_capped_at_the_cas_end_with_a_warning() {
    let mut spec = NodeSpec::control_plane(now());
    spec.ca_validity = Validity::days(3650, Duration::days(100));
    let d = node(&spec);
    let out = run(d.path(), &["renew", "/etc/kubernetes/pki/apiserver.crt"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING") && err.contains("capped at its CA's end"),
        "{err}"
    );
    let (v, _) = status_json(d.path());
    assert_eq!(
        cert(&v, "apiserver")["not_after"],
        v["authorities"][0]["not_after"]
    );
    let w = v["authorities"][0]["warning"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        w.contains("CA ca ends on") && w.contains("plan the CA's rotation"),
        "{v:#}"
    );
    let out = run(d.path(), &["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("WARNING: CA ca ends on"));
}

/// The seed's manual tool: `cert-renew --ca-cert C --ca-key K --days N FILE...`.
#[test]
fn cert_renew_renews_files_and_kubeconfigs_and_prints_a_line_each() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let pki = host(r, "/etc/kubernetes/pki");
    let state = r.join("state");
    let out = Command::new(renew_bin())
        .args([
            "--ca-cert",
            pki.join("ca.crt").to_str().unwrap(),
            "--ca-key",
            pki.join("ca.key").to_str().unwrap(),
            "--days",
            "91",
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .arg(pki.join("apiserver.crt"))
        .arg(host(r, "/etc/kubernetes/admin.conf"))
        .arg(host(r, "/var/lib/kubelet/pki/kubelet.crt"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("\trenewed\tnot_after=") && l.contains("serial=")),
        "{stdout}"
    );
    assert!(lines[0].starts_with(pki.join("apiserver.crt").to_str().unwrap()));
    // kubelet.crt renewed with the given CA, as the seed's example does.
    openssl(&[
        "verify",
        "-CAfile",
        pki.join("ca.crt").to_str().unwrap(),
        host(r, "/var/lib/kubelet/pki/kubelet.crt")
            .to_str()
            .unwrap(),
    ]);
    let e = openssl(&[
        "x509",
        "-noout",
        "-enddate",
        "-startdate",
        "-in",
        pki.join("apiserver.crt").to_str().unwrap(),
    ]);
    assert!(!e.is_empty());
    let (v, _) = status_json(r);
    assert_eq!(cert(&v, "apiserver")["lifetime_seconds"], 91 * 86_400);
    assert!(
        std::fs::read_dir(state.join("backup")).unwrap().count() == 1,
        "one backup generation per command"
    );
    // A target signed by another CA fails, and is left untouched; the others still renew.
    let before = std::fs::read(pki.join("etcd/server.crt")).unwrap();
    let out = Command::new(renew_bin())
        .args([
            "--ca-cert",
            pki.join("ca.crt").to_str().unwrap(),
            "--ca-key",
            pki.join("ca.key").to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .arg(pki.join("etcd/server.crt"))
        .arg(pki.join("apiserver-kubelet-client.crt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("etcd/server.crt\tFAILED") && stdout.contains("break trust"),
        "{stdout}"
    );
    assert!(
        stdout.contains("apiserver-kubelet-client.crt\trenewed"),
        "{stdout}"
    );
    assert_eq!(before, std::fs::read(pki.join("etcd/server.crt")).unwrap());
}
