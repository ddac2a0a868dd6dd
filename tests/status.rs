//! `cert-rotator status` against kubeadm-faithful nodes: layouts, windows, the JSON
//! contract, bad input. Certificates are checked with the real openssl.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn fixture_is_faithful_to_kubeadm_as_openssl_sees_it() {
    let mut spec = NodeSpec::control_plane(now());
    spec.admin_organizations = vec!["kubeadm:cluster-admins".into(), "system:masters".into()];
    let d = node(&spec);
    let pki = host(d.path(), "/etc/kubernetes/pki");
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        pki.join("apiserver.crt").to_str().unwrap(),
    ]);
    for want in [
        "Issuer: CN = kubernetes",
        "Subject: CN = kube-apiserver",
        "Signature Algorithm: sha256WithRSAEncryption",
        "Public-Key: (2048 bit)",
        "X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment",
        "X509v3 Extended Key Usage: \n                TLS Web Server Authentication",
        "X509v3 Basic Constraints: critical\n                CA:FALSE",
        "X509v3 Authority Key Identifier: ",
        "DNS:cp-1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP Address:10.96.0.1, IP Address:10.0.0.10",
    ] {
        assert!(text.contains(want), "apiserver.crt lacks {want:?}:\n{text}");
    }
    assert!(
        !text.contains("Subject Key Identifier"),
        "kubeadm leaves carry no SKID"
    );
    let ca = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        pki.join("ca.crt").to_str().unwrap(),
    ]);
    assert!(
        ca.contains("Digital Signature, Key Encipherment, Certificate Sign"),
        "{ca}"
    );
    assert!(
        ca.contains("CA:TRUE") && ca.contains("Subject Key Identifier"),
        "{ca}"
    );
    // Key formats: kubeadm's PKCS#1 for RSA, the kubelet's SEC1 for its ECDSA client key.
    let key = std::fs::read_to_string(pki.join("apiserver.key")).unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(
        std::fs::metadata(pki.join("apiserver.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let etcd = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-in",
        pki.join("etcd/server.crt").to_str().unwrap(),
    ]);
    assert!(etcd.contains("DNS:cp-1, DNS:localhost, IP Address:10.0.0.10, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"), "{etcd}");
    assert!(
        etcd.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{etcd}"
    );
    for (ca, leaf) in [
        ("ca.crt", "apiserver.crt"),
        ("ca.crt", "apiserver-kubelet-client.crt"),
        ("front-proxy-ca.crt", "front-proxy-client.crt"),
        ("etcd/ca.crt", "apiserver-etcd-client.crt"),
        ("etcd/ca.crt", "etcd/server.crt"),
        ("etcd/ca.crt", "etcd/peer.crt"),
        ("etcd/ca.crt", "etcd/healthcheck-client.crt"),
    ] {
        openssl(&[
            "verify",
            "-CAfile",
            pki.join(ca).to_str().unwrap(),
            pki.join(leaf).to_str().unwrap(),
        ]);
    }
    // Multi-valued O in one RDN: RFC 2253 output joins them with '+'.
    let admin = std::fs::read_to_string(host(d.path(), "/etc/kubernetes/admin.conf")).unwrap();
    let b64 = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .unwrap();
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let f = d.path().join("admin.pem");
    std::fs::write(&f, pem).unwrap();
    let subj = openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
        "-in",
        f.to_str().unwrap(),
    ]);
    assert!(
        subj.contains("CN=kubernetes-admin,O=kubeadm:cluster-admins+O=system:masters")
            || subj.contains("CN=kubernetes-admin,O=system:masters+O=kubeadm:cluster-admins"),
        "{subj}"
    );
    // The kubelet's symlink scheme and self-signed serving bundle.
    let kpki = host(d.path(), "/var/lib/kubelet/pki");
    let link = std::fs::read_link(kpki.join("kubelet-client-current.pem")).unwrap();
    assert!(
        link.is_absolute()
            && link
                .to_string_lossy()
                .starts_with("/var/lib/kubelet/pki/kubelet-client-"),
        "{link:?}"
    );
    let client = std::fs::read_to_string(d.path().join(link.strip_prefix("/").unwrap())).unwrap();
    assert!(
        client.contains("-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----"),
        "leaf then SEC1 key"
    );
    let bundle = std::fs::read_to_string(kpki.join("kubelet.crt")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    let leaf = openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-issuer",
        "-in",
        kpki.join("kubelet.crt").to_str().unwrap(),
    ]);
    assert!(
        leaf.contains("subject=CN = cp-1@") && leaf.contains("issuer=CN = cp-1-ca@"),
        "{leaf}"
    );
}

#[test]
fn control_plane_status_json_follows_the_contract() {
    let spec = NodeSpec::control_plane(now())
        .with("apiserver", Validity::days(365, Duration::days(40)))
        .with(
            "kubelet-client-current.pem",
            Validity::days(91, Duration::days(25)),
        )
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)));
    let d = node(&spec);
    let (v, code) = status_json(d.path());
    assert_eq!(code, 0, "{v:#}");
    let names: Vec<&str> = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in [
        "apiserver",
        "apiserver-kubelet-client",
        "apiserver-etcd-client",
        "front-proxy-client",
        "etcd/server",
        "etcd/peer",
        "etcd/healthcheck-client",
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "/root/.kube/config",
        "kubelet-client-current.pem",
        "kubelet.crt",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    // kubelet.conf points at kubelet-client-current.pem: reported once.
    assert!(!names.contains(&"kubelet.conf"), "{names:?}");

    let a = cert(&v, "apiserver");
    assert_eq!(
        a["path"], "/etc/kubernetes/pki/apiserver.crt",
        "node path, no root prefix"
    );
    assert_eq!(a["kind"], "certificate");
    assert_eq!(a["component"], "kube-apiserver");
    assert_eq!(a["subject"], "CN=kube-apiserver");
    assert_eq!(a["issuer"], "CN=kubernetes");
    assert_eq!(a["due"], true);
    assert_eq!(a["due_reason"], "under-20-percent");
    assert_eq!(a["missing"], false);
    assert!(a["error"].is_null());
    assert_eq!(a["lifetime_seconds"], 365 * 86_400);
    let residual = a["residual_seconds"].as_i64().unwrap();
    assert!(
        (40 * 86_400 - 120..=40 * 86_400).contains(&residual),
        "{residual}"
    );
    let serial = a["serial"].as_str().unwrap();
    assert!(
        !serial.starts_with('0')
            && serial
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let openssl_serial = openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        host(d.path(), "/etc/kubernetes/pki/apiserver.crt")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(
        openssl_serial
            .trim()
            .trim_start_matches("serial=")
            .trim_start_matches('0')
            .to_lowercase(),
        serial
    );
    for f in ["not_before", "not_after", "renew_at"] {
        let s = a[f].as_str().unwrap();
        assert!(s.ends_with('Z') && s.len() == 20, "{f}={s}");
    }
    let na = openssl(&[
        "x509",
        "-noout",
        "-enddate",
        "-in",
        host(d.path(), "/etc/kubernetes/pki/apiserver.crt")
            .to_str()
            .unwrap(),
    ]);
    let na = time::PrimitiveDateTime::parse(
        na.trim()
            .trim_start_matches("notAfter=")
            .trim_end_matches(" GMT"),
        time::macros::format_description!(
            "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
        ),
    )
    .unwrap()
    .assume_utc();
    assert_eq!(a["not_after"], cert_rotator::timefmt::rfc3339(na));

    let k = cert(&v, "kubelet-client-current.pem");
    assert_eq!(k["kind"], "kubelet-client");
    assert_eq!(k["component"], "kubelet");
    assert_eq!(k["due_reason"], "under-30-days");
    assert!(k["subject"]
        .as_str()
        .unwrap()
        .contains("CN=system:node:cp-1"));
    assert!(k["cert_file"]
        .as_str()
        .unwrap()
        .starts_with("/var/lib/kubelet/pki/kubelet-client-2"));
    assert_eq!(cert(&v, "scheduler.conf")["due_reason"], "expired");
    assert_eq!(cert(&v, "scheduler.conf")["kind"], "kubeconfig");
    assert_eq!(cert(&v, "scheduler.conf")["component"], "kube-scheduler");
    assert_eq!(
        cert(&v, "controller-manager.conf")["component"],
        "kube-controller-manager"
    );
    assert!(cert(&v, "admin.conf")["component"].is_null());
    assert_eq!(cert(&v, "admin.conf")["due"], false);
    assert_eq!(cert(&v, "etcd/peer")["component"], "etcd");
    assert_eq!(cert(&v, "kubelet.crt")["kind"], "kubelet-serving");
    assert_eq!(cert(&v, "etcd/server")["signer"], "etcd/ca");
    assert_eq!(cert(&v, "front-proxy-client")["signer"], "front-proxy-ca");
    assert_eq!(
        cert(&v, "kubelet.crt")["signer"],
        "self-signed (bundled CA)"
    );

    let cas = v["authorities"].as_array().unwrap();
    let ca_names: Vec<&str> = cas.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(ca_names, ["ca", "front-proxy-ca", "etcd/ca"]);
    assert!(cas
        .iter()
        .all(|a| a["has_key"] == true && a["not_after"].is_string()));
    assert_eq!(cas[0]["path"], "/etc/kubernetes/pki/ca.crt");

    // The table says the same, like kubeadm certs check-expiration.
    let out = run(d.path(), &["status"]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("CERTIFICATE "), "{table}");
    assert!(table.contains("RESIDUAL TIME") && table.contains("CERTIFICATE AUTHORITY"));
    let line = table
        .lines()
        .find(|l| l.starts_with("scheduler.conf"))
        .unwrap();
    assert!(
        line.contains("expired") && line.contains("yes (expired)"),
        "{line}"
    );
    assert!(
        !table.contains(&d.path().display().to_string()),
        "root prefix leaked:\n{table}"
    );
}

#[test]
fn super_admin_conf_absent_on_a_secondary_control_plane_is_not_an_error() {
    let mut spec = NodeSpec::control_plane(now());
    spec.super_admin = false;
    spec.user_kubeconfig = false;
    let d = node(&spec);
    let (v, code) = status_json(d.path());
    assert_eq!(code, 0);
    let s = cert(&v, "super-admin.conf");
    assert_eq!(s["missing"], true);
    assert_eq!(s["due"], false);
    assert!(s["error"].is_null());
    assert_eq!(cert(&v, "/root/.kube/config")["missing"], true);
}

#[test]
fn worker_layout_is_detected_from_what_exists() {
    let d = node(&NodeSpec::worker(now()).with(
        "kubelet-client-current.pem",
        Validity::days(91, Duration::days(29)),
    ));
    // A worker has ca.crt but not ca.key.
    std::fs::remove_file(host(d.path(), "/etc/kubernetes/pki/ca.key")).ok();
    let (v, code) = status_json(d.path());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["role"], "worker");
    let names: Vec<&str> = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kubelet-client-current.pem", "kubelet.crt"]);
    assert_eq!(
        cert(&v, "kubelet-client-current.pem")["due_reason"],
        "under-30-days"
    );
    assert_eq!(cert(&v, "kubelet-client-current.pem")["signer"], "ca");
    let cas = v["authorities"].as_array().unwrap();
    assert_eq!(cas.len(), 1);
    assert_eq!(cas[0]["has_key"], false);
}

#[test]
fn embedded_kubelet_conf_is_its_own_target() {
    let mut spec = NodeSpec::worker(now());
    spec.kubelet_conf_embedded = true;
    let d = node(&spec);
    let (v, code) = status_json(d.path());
    assert_eq!(code, 0, "{v:#}");
    let k = cert(&v, "kubelet.conf");
    assert_eq!(k["kind"], "kubeconfig");
    assert_eq!(k["component"], "kubelet");
    assert_eq!(cert(&v, "kubelet-client-current.pem")["missing"], true);
}

#[test]
fn ecdsa_node_and_2050_generalized_time_read_correctly() {
    let mut spec = NodeSpec::control_plane(now());
    spec.key_algorithm = cert_rotator::pki::KeyAlgorithm::EcdsaP384;
    // A 30-year CA ends after 2050: its notAfter is a GeneralizedTime (RFC 5280).
    spec.ca_validity = Validity::days(365 * 30, Duration::days(365 * 30 - 10));
    let d = node(&spec);
    let key = std::fs::read_to_string(host(d.path(), "/etc/kubernetes/pki/apiserver.key")).unwrap();
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let dump = openssl(&[
        "asn1parse",
        "-in",
        host(d.path(), "/etc/kubernetes/pki/ca.crt")
            .to_str()
            .unwrap(),
    ]);
    assert!(dump.contains("GENERALIZEDTIME"), "{dump}");
    let (v, code) = status_json(d.path());
    assert_eq!(code, 0, "{v:#}");
    let ca = &v["authorities"][0];
    assert!(ca["not_after"].as_str().unwrap().starts_with("205"), "{ca}");
    assert_eq!(cert(&v, "apiserver")["key_algorithm"], "ECDSA-P384");
}

#[test]
fn config_errors_exit_2_naming_file_key_and_line() {
    let d = node(&NodeSpec::worker(now()));
    let cfg = host(d.path(), "/etc/cert-rotator/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "[window]\nremaining_days = 30\nbogus = 1\n").unwrap();
    let out = run(d.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/etc/cert-rotator/config.toml")
            && err.contains("bogus")
            && err.contains("line 3"),
        "{err}"
    );
    let out = run(d.path(), &["--config", "/nonexistent.toml", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
    let out = run(d.path(), &["status", "--jsn"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn per_target_windows_switches_and_extra_targets_come_from_config() {
    let spec =
        NodeSpec::control_plane(now()).with("admin.conf", Validity::days(365, Duration::days(80)));
    let d = node(&spec);
    // A directory of extra certificates, with one key next to its certificate.
    let extra = host(d.path(), "/etc/webhook/tls");
    std::fs::create_dir_all(&extra).unwrap();
    let pki = host(d.path(), "/etc/kubernetes/pki");
    std::fs::copy(pki.join("front-proxy-client.crt"), extra.join("a.crt")).unwrap();
    std::fs::copy(pki.join("front-proxy-client.key"), extra.join("a.key")).unwrap();
    std::fs::copy(pki.join("apiserver.crt"), extra.join("b.pem")).unwrap();
    let cfg = host(d.path(), "/etc/cert-rotator/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        r#"
[targets."admin.conf"]
remaining_days = 90
[targets."super-admin.conf"]
enabled = false
[[extra]]
name = "webhook"
kind = "directory"
path = "/etc/webhook/tls"
component = "webhook.service"
"#,
    )
    .unwrap();
    let (v, code) = status_json(d.path());
    assert_eq!(code, 0, "{v:#}");
    // The reason names the target's own threshold, not the default's 30 days.
    assert_eq!(cert(&v, "admin.conf")["due_reason"], "under-90-days");
    assert_eq!(cert(&v, "admin.conf")["due"], true);
    assert!(v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["name"] != "super-admin.conf"));
    assert_eq!(cert(&v, "webhook/a.crt")["component"], "webhook.service");
    assert_eq!(cert(&v, "webhook/b.pem")["subject"], "CN=kube-apiserver");
}

/// Each kind of damage is listed with the file and the problem; exit 1; nothing written.
#[test]
fn bad_input_is_reported_per_file_and_nothing_changes() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let pki = host(r, "/etc/kubernetes/pki");
    let good = std::fs::read_to_string(pki.join("apiserver.crt")).unwrap();
    // truncated PEM
    std::fs::write(pki.join("apiserver.crt"), &good[..good.len() / 2]).unwrap();
    // garbage between blocks
    let fp = std::fs::read_to_string(pki.join("front-proxy-client.crt")).unwrap();
    std::fs::write(
        pki.join("front-proxy-client.crt"),
        format!("{fp}garbage here\n{fp}"),
    )
    .unwrap();
    // a key that does not match its certificate
    std::fs::copy(
        pki.join("apiserver-kubelet-client.key"),
        pki.join("apiserver-etcd-client.key"),
    )
    .unwrap();
    // a kubeconfig that is not YAML
    std::fs::write(
        host(r, "/etc/kubernetes/scheduler.conf"),
        "{{{ : : not yaml [",
    )
    .unwrap();
    // current-context pointing nowhere
    let cm = std::fs::read_to_string(host(r, "/etc/kubernetes/controller-manager.conf")).unwrap();
    std::fs::write(
        host(r, "/etc/kubernetes/controller-manager.conf"),
        cm.replace(
            "current-context: system:kube-controller-manager@kubernetes",
            "current-context: nowhere",
        ),
    )
    .unwrap();
    // a directory where a file should be
    std::fs::remove_file(pki.join("etcd/peer.crt")).unwrap();
    std::fs::create_dir(pki.join("etcd/peer.crt")).unwrap();
    // a dangling symlink
    let link = host(r, "/var/lib/kubelet/pki/kubelet-client-current.pem");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("/var/lib/kubelet/pki/kubelet-client-gone.pem", &link).unwrap();
    // a negative serial (openssl makes one on request)
    let neg = pki.join("etcd/healthcheck-client.crt");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        pki.join("etcd/healthcheck-client.key").to_str().unwrap(),
        "-out",
        neg.to_str().unwrap(),
        "-subj",
        "/CN=neg",
        "-days",
        "10",
        "-set_serial",
        "-5",
    ]);

    let before = snapshot(r);
    let (v, code) = status_json(r);
    assert_eq!(code, 1, "{v:#}");
    let expect = [
        (
            "apiserver",
            "/etc/kubernetes/pki/apiserver.crt",
            "truncated PEM",
        ),
        (
            "front-proxy-client",
            "/etc/kubernetes/pki/front-proxy-client.crt",
            "outside a PEM block",
        ),
        (
            "apiserver-etcd-client",
            "/etc/kubernetes/pki/apiserver-etcd-client.key",
            "does not match",
        ),
        ("scheduler.conf", "/etc/kubernetes/scheduler.conf", "YAML"),
        (
            "controller-manager.conf",
            "/etc/kubernetes/controller-manager.conf",
            "\"nowhere\" names no context",
        ),
        (
            "etcd/peer",
            "/etc/kubernetes/pki/etcd/peer.crt",
            "is a directory",
        ),
        (
            "kubelet-client-current.pem",
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
            "dangling symlink",
        ),
        (
            "etcd/healthcheck-client",
            "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
            "negative serial",
        ),
    ];
    for (name, path, problem) in expect {
        let c = cert(&v, name);
        let e = c["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no error: {c:#}"));
        assert!(e.contains(path) && e.contains(problem), "{name}: {e}");
        assert_eq!(c["due"], false);
    }
    assert!(
        cert(&v, "admin.conf")["error"].is_null(),
        "undamaged targets still read"
    );
    let out = run(r, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Errors:") && table.contains("dangling symlink"),
        "{table}"
    );
    assert_eq!(before, snapshot(r), "status changed something on disk");
}

/// A file the agent may not read (run as an unprivileged user: root reads everything).
#[test]
fn unreadable_file_is_an_error_naming_it() {
    let d = node(&NodeSpec::worker(now()));
    let r = d.path();
    // Let "nobody" traverse and read everything but kubelet.key.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(r)
        .status()
        .unwrap();
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = host(r, "/var/lib/kubelet/pki/kubelet.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .arg("--root")
        .arg(r)
        .args(["status", "--json"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = cert(&v, "kubelet.crt")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.contains("/var/lib/kubelet/pki/kubelet.key") && e.contains("ermission denied"),
        "{e}"
    );
}

#[test]
fn demo_builds_a_sandbox_and_reports_due_and_expired() {
    let out = Command::new(bin()).arg("demo").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("3 of 14 certificates are due"), "{text}");
    for line in [
        "scheduler.conf               expired",
        "apiserver                    under-20-percent",
        "kubelet-client-current.pem   under-30-days",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert!(text.contains("super-admin.conf") && text.contains("missing (optional)"));
}
