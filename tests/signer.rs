//! The certificates-API signer's own logic (src/signer), without an API server (the
//! real one judges it in tests/k8s/csr.sh): where a CSR stands (pending, approved,
//! denied, failed, issued), what a profile allows (usages, key algorithms and sizes,
//! lifetime within the maximum and the CA's end), bad requests refused with a reason,
//! and the certificate it issues checked with the real openssl.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use cert_rotator::ca::remote::build_csr;
use cert_rotator::config::signer::SignerSettings;
use cert_rotator::kube::types::{CertificateSigningRequest, CsrCondition, CsrSpec, CsrStatus};
use cert_rotator::pki::x509::{CertTemplate, Issuer, OID_CN};
use cert_rotator::pki::{encode_pem, CertFacts, KeyAlgorithm, KeyEncoding, PrivateKey};
use cert_rotator::signer::decide::{evaluate, lifetime, Phase};
use cert_rotator::signer::issue::{issue, window};
use time::OffsetDateTime;

fn profile() -> SignerSettings {
    SignerSettings {
        name: "example.com/serving".into(),
        ca_cert: "/ca.pem".into(),
        ca_key: "/ca-key.pem".into(),
        usages: vec![
            "signing".into(),
            "key encipherment".into(),
            "server auth".into(),
        ],
        max_duration_seconds: 30 * 24 * 3600,
        key_algorithms: vec!["rsa".into(), "ecdsa".into()],
    }
}

/// A PEM request for CN=svc with a DNS and an IP SAN, signed by `key`.
fn request(key: &PrivateKey) -> String {
    let template = CertTemplate {
        subject: vec![vec![(OID_CN, "svc".into())]],
        dns_names: vec!["svc.ns.svc.cluster.local".into()],
        ip_addresses: vec!["192.0.2.24".parse().unwrap()],
        ..Default::default()
    };
    let der = template.issue(key, None).unwrap();
    build_csr(&der, key).unwrap()
}

fn csr(pem: &str, usages: &[&str], conditions: &[&str]) -> CertificateSigningRequest {
    let json = serde_json::json!({
        "metadata": {"name": "x", "resourceVersion": "7"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": "example.com/serving",
            "usages": usages,
        },
        "status": {"conditions": conditions.iter().map(|c| serde_json::json!({"type": c, "status": "True"})).collect::<Vec<_>>()}
    });
    serde_json::from_value(json).unwrap()
}

fn ecdsa() -> PrivateKey {
    PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap()
}

#[test]
fn a_csr_is_pending_approved_denied_failed_or_issued() {
    let pem = request(&ecdsa());
    let phase = |c: &[&str]| Phase::of(&csr(&pem, &["server auth"], c));
    assert_eq!(phase(&[]), Phase::Pending);
    assert_eq!(phase(&["Approved"]), Phase::Approved);
    assert_eq!(phase(&["Denied"]), Phase::Denied);
    assert_eq!(phase(&["Approved", "Failed"]), Phase::Failed);
    // Denied wins over a (racing) approval: never signed.
    assert_eq!(phase(&["Approved", "Denied"]), Phase::Denied);
    let mut issued = csr(&pem, &["server auth"], &["Approved"]);
    issued.status.as_mut().unwrap().certificate = Some("LS0t".into());
    assert_eq!(Phase::of(&issued), Phase::Issued);
    // A condition explicitly "False" does not count.
    let mut no = csr(&pem, &["server auth"], &[]);
    no.status = Some(CsrStatus {
        conditions: Some(vec![CsrCondition {
            type_: "Approved".into(),
            status: "False".into(),
            reason: None,
            message: None,
            rest: Default::default(),
        }]),
        ..Default::default()
    });
    assert_eq!(Phase::of(&no), Phase::Pending);
}

#[test]
fn the_object_round_trips_with_the_fields_it_does_not_name() {
    let json = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "x", "resourceVersion": "7", "uid": "u-1", "managedFields": [{"manager": "kubectl"}]},
        "spec": {"request": "", "signerName": "a.b/c", "uid": "42", "extra": {"k": ["v"]}},
        "status": {"conditions": [{"type": "Approved", "status": "True", "lastUpdateTime": "2026-12-07T00:00:00Z"}]}
    });
    let c: CertificateSigningRequest = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&c).unwrap(), json);
    let _: CsrSpec = c.spec;
}

#[test]
fn usages_must_all_be_allowed_by_the_profile() {
    let pem = request(&ecdsa());
    let p = profile();
    // "digital signature" is the profile's "signing".
    let g = evaluate(
        &csr(
            &pem,
            &["digital signature", "key encipherment", "server auth"],
            &["Approved"],
        ),
        &p,
    )
    .unwrap();
    assert_eq!(g.usages.len(), 3);
    let e = evaluate(
        &csr(&pem, &["digital signature", "client auth"], &["Approved"]),
        &p,
    )
    .unwrap_err();
    assert!(
        e.0.contains("usages client auth are not allowed by signer example.com/serving"),
        "{}",
        e.0
    );
    let e = evaluate(&csr(&pem, &["cert sign"], &["Approved"]), &p).unwrap_err();
    assert!(e.0.contains("cert sign"), "{}", e.0);
    let e = evaluate(&csr(&pem, &[], &["Approved"]), &p).unwrap_err();
    assert_eq!(e.0, "the CSR asks for no usages");
}

#[test]
fn the_lifetime_is_the_asked_one_within_the_maximum() {
    assert_eq!(lifetime(None, 3600), Duration::from_secs(3600));
    assert_eq!(lifetime(Some(600), 3600), Duration::from_secs(600));
    assert_eq!(lifetime(Some(7200), 3600), Duration::from_secs(3600));
    assert_eq!(lifetime(Some(-5), 3600), Duration::from_secs(3600));
    assert_eq!(lifetime(Some(0), 3600), Duration::from_secs(3600));
    // Never past the CA's end, backdated five minutes but not before the CA's start.
    let now = OffsetDateTime::now_utc();
    let (nb, na) = window(
        now,
        Duration::from_secs(86400),
        now - time::Duration::minutes(1),
        now + time::Duration::hours(2),
    )
    .unwrap();
    assert_eq!(nb, now - time::Duration::minutes(1));
    assert_eq!(na, now + time::Duration::hours(2));
    let (nb, na) = window(
        now,
        Duration::from_secs(600),
        now - time::Duration::days(1),
        now + time::Duration::days(1),
    )
    .unwrap();
    assert_eq!(nb, now - time::Duration::minutes(5));
    assert_eq!(na, now + time::Duration::minutes(10));
    assert!(window(
        now,
        Duration::from_secs(600),
        now - time::Duration::days(1),
        now
    )
    .is_none());
}

/// openssl req with `args` (a key spec), the PEM request.
fn openssl_request(dir: &Path, args: &[&str]) -> String {
    let out = dir.join("r.csr");
    let st = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", "/CN=x", "-keyout"])
        .arg(dir.join("r.key"))
        .arg("-out")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn keys_the_profile_refuses_and_bad_requests_fail_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let p = profile();
    let reason = |pem: &str| {
        evaluate(&csr(pem, &["server auth"], &["Approved"]), &p)
            .unwrap_err()
            .0
    };
    let ed = openssl_request(d.path(), &["-newkey", "ed25519"]);
    assert_eq!(
        reason(&ed),
        "the request's key is Ed25519; signer example.com/serving issues for rsa, ecdsa keys only"
    );
    let mut with_ed = profile();
    with_ed.key_algorithms.push("ed25519".into());
    assert!(evaluate(&csr(&ed, &["server auth"], &["Approved"]), &with_ed).is_ok());
    let small = openssl_request(d.path(), &["-newkey", "rsa:1024"]);
    assert!(
        reason(&small).contains("RSA-1024; this signer issues for RSA keys of 2048 bits or more")
    );
    let p521 = openssl_request(
        d.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    );
    assert!(
        reason(&p521).contains("EC curve 1.3.132.0.35"),
        "{}",
        reason(&p521)
    );
    assert!(reason("not a pem").starts_with("spec.request is not PEM"));
    let cert = encode_pem("CERTIFICATE", b"\x30\x00");
    assert_eq!(
        reason(&cert),
        "spec.request holds a CERTIFICATE block, not a CERTIFICATE REQUEST"
    );
    let junk = encode_pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00");
    assert!(reason(&junk).starts_with("spec.request is not a valid PKCS#10 request"));
    let huge = "A".repeat(200 << 10);
    assert!(
        reason(&huge).contains("more than this signer reads"),
        "{}",
        reason(&huge)
    );
    // A request whose signature does not verify: the subject's CN changed after signing.
    let good = request(&ecdsa());
    let blocks = cert_rotator::pki::parse_pem(good.as_bytes()).unwrap();
    let mut der = blocks[0].der.clone();
    let at = der.windows(3).position(|w| w == b"svc").unwrap();
    der[at] = b'S';
    let forged = encode_pem("CERTIFICATE REQUEST", &der);
    assert!(
        reason(&forged).contains("does not verify with its own key"),
        "{}",
        reason(&forged)
    );
}

#[test]
fn the_certificate_is_the_requests_with_the_granted_usages_signed_by_the_ca() {
    let d = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let ca_key =
        PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs1).unwrap();
    let ca_der = CertTemplate::ca(
        vec![vec![(OID_CN, "My Example Signer".into())]],
        now - time::Duration::hours(1),
        now + time::Duration::days(365),
    )
    .issue(&ca_key, None)
    .unwrap();
    let ca = CertFacts::from_der(&ca_der).unwrap();
    let key = ecdsa();
    let g = evaluate(
        &csr(
            &request(&key),
            &["digital signature", "key encipherment", "server auth"],
            &["Approved"],
        ),
        &profile(),
    )
    .unwrap();
    let (nb, na) = window(now, g.lifetime, ca.not_before, ca.not_after).unwrap();
    let der = issue(
        &g,
        &Issuer {
            cert: &ca,
            key: &ca_key,
        },
        nb,
        na,
    )
    .unwrap();
    let facts = CertFacts::from_der(&der).unwrap();
    assert!(facts.is_signed_by(&ca));
    assert!(facts.public_key == key.public_key());
    std::fs::write(d.path().join("ca.pem"), encode_pem("CERTIFICATE", &ca_der)).unwrap();
    std::fs::write(d.path().join("leaf.pem"), encode_pem("CERTIFICATE", &der)).unwrap();
    let verify = Command::new("openssl")
        .args([
            "verify",
            "-no-CApath",
            "-no-CAstore",
            "-purpose",
            "sslserver",
            "-CAfile",
        ])
        .arg(d.path().join("ca.pem"))
        .arg(d.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(d.path().join("leaf.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for want in [
        "Subject: CN = svc",
        "Digital Signature, Key Encipherment",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "DNS:svc.ns.svc.cluster.local, IP Address:192.0.2.24",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(!text.contains("Client Authentication"));
    assert_eq!(
        (facts.not_after - facts.not_before).whole_minutes(),
        30 * 24 * 60 + 5
    );
}

mod kubelet_serving {
    use super::*;
    use cert_rotator::kube::types::{Node, NodeAddress};
    use cert_rotator::pki::x509::OID_O;
    use cert_rotator::signer::approve::{judge, Verdict};

    /// A kubelet's serving request as the kubelet makes it (O=system:nodes,
    /// CN=system:node:NAME, its name and addresses as SANs), requested by `user`.
    fn kubelet_csr(
        user: &str,
        cn: &str,
        dns: &[&str],
        ips: &[&str],
        usages: &[&str],
    ) -> CertificateSigningRequest {
        let key = ecdsa();
        let der = CertTemplate {
            subject: vec![
                vec![(OID_O, "system:nodes".into())],
                vec![(OID_CN, cn.into())],
            ],
            dns_names: dns.iter().map(|d| d.to_string()).collect(),
            ip_addresses: ips.iter().map(|i| i.parse().unwrap()).collect(),
            ..Default::default()
        }
        .issue(&key, None)
        .unwrap();
        let mut c = csr(&build_csr(&der, &key).unwrap(), usages, &[]);
        c.spec.signer_name = "kubernetes.io/kubelet-serving".into();
        c.spec.username = Some(user.into());
        c.spec.groups = Some(vec!["system:nodes".into(), "system:authenticated".into()]);
        c
    }

    fn node() -> Node {
        let mut n = Node::default();
        n.status.addresses = vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "192.0.2.10".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: "n1".into(),
            },
        ];
        n
    }

    const SERVING: &[&str] = &["digital signature", "server auth"];

    fn deny(c: &CertificateSigningRequest, n: Option<&Node>) -> String {
        match judge(c, n, 86400) {
            Verdict::Deny(m) => m,
            v => panic!("expected a denial, got {v:?}"),
        }
    }

    #[test]
    fn a_kubelets_own_request_is_approved() {
        let c = kubelet_csr(
            "system:node:n1",
            "system:node:n1",
            &["n1"],
            &["192.0.2.10"],
            SERVING,
        );
        assert!(matches!(
            judge(&c, Some(&node()), 86400),
            Verdict::Approve(_)
        ));
    }

    #[test]
    fn anything_not_the_nodes_own_is_denied_with_the_reason() {
        let n = node();
        let c = kubelet_csr(
            "kubernetes-admin",
            "system:node:n1",
            &["n1"],
            &["192.0.2.10"],
            SERVING,
        );
        assert!(deny(&c, Some(&n)).contains("not by a node"));
        let mut c = kubelet_csr(
            "system:node:n1",
            "system:node:n1",
            &["n1"],
            &["192.0.2.10"],
            SERVING,
        );
        c.spec.groups = Some(vec!["system:authenticated".into()]);
        assert!(deny(&c, Some(&n)).contains("not by a node"));
        let c = kubelet_csr(
            "system:node:n1",
            "system:node:n2",
            &["n1"],
            &["192.0.2.10"],
            SERVING,
        );
        assert!(deny(&c, Some(&n)).contains("CN=system:node:n2"));
        let c = kubelet_csr(
            "system:node:n1",
            "system:node:n1",
            &["n1", "evil.example"],
            &["192.0.2.10"],
            SERVING,
        );
        assert!(deny(&c, Some(&n)).contains("DNS SAN evil.example"));
        let c = kubelet_csr(
            "system:node:n1",
            "system:node:n1",
            &["n1"],
            &["203.0.113.9"],
            SERVING,
        );
        assert_eq!(
            deny(&c, Some(&n)),
            "IP SAN 203.0.113.9 is not one of node n1's addresses"
        );
        let c = kubelet_csr(
            "system:node:n1",
            "system:node:n1",
            &["n1"],
            &["192.0.2.10"],
            &["server auth", "client auth"],
        );
        assert!(deny(&c, Some(&n)).contains("\"client auth\""));
        let c = kubelet_csr(
            "system:node:n1",
            "system:node:n1",
            &["n1"],
            &["192.0.2.10"],
            &["digital signature"],
        );
        assert!(deny(&c, Some(&n)).contains("server auth"));
        let c = kubelet_csr("system:node:n1", "system:node:n1", &["n1"], &[], SERVING);
        assert_eq!(deny(&c, None), "Node n1 does not exist");
        let mut c = kubelet_csr(
            "system:node:n1",
            "system:node:n1",
            &["n1"],
            &["192.0.2.10"],
            SERVING,
        );
        c.spec.expiration_seconds = Some(86401);
        assert!(deny(&c, Some(&n)).contains("expirationSeconds 86401"));
    }
}

mod client {
    use std::path::Path;

    use cert_rotator::fixture::temp_control_plane;
    use cert_rotator::kube::{ApiClient, ClientOptions};

    #[test]
    fn a_kubeadm_kubeconfig_makes_a_client_and_a_call_that_fails_says_where() {
        let (d, root) = temp_control_plane();
        // The fixture's admin.conf, pointed at a port nothing listens on.
        let conf = d.path().join("etc/kubernetes/admin.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap()
            .to_string();
        std::fs::write(&conf, text.replace(&server, "https://127.0.0.1:9")).unwrap();
        let api = ApiClient::from_kubeconfig(
            &root,
            Path::new("/etc/kubernetes/admin.conf"),
            ClientOptions {
                connect_timeout_seconds: 2,
                timeout_seconds: 3,
                ..Default::default()
            },
        )
        .unwrap();
        let started = std::time::Instant::now();
        let e = api
            .get::<serde_json::Value>("/apis/certificates.k8s.io/v1/certificatesigningrequests")
            .unwrap_err();
        assert!(started.elapsed().as_secs() < 5);
        assert!(
            e.to_string()
                .starts_with("GET /apis/certificates.k8s.io/v1/certificatesigningrequests: "),
            "{e}"
        );
    }

    #[test]
    fn a_kubeconfig_the_agent_cannot_use_is_refused_naming_the_file() {
        let (d, root) = temp_control_plane();
        let open = |p: &str| {
            ApiClient::from_kubeconfig(&root, Path::new(p), ClientOptions::default())
                .err()
                .unwrap()
                .to_string()
        };
        assert!(open("/etc/kubernetes/none.conf").starts_with("/etc/kubernetes/none.conf: "));
        let token = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: /etc/kubernetes/pki/ca.crt\n  name: k\ncontexts:\n- context:\n    cluster: k\n    user: u\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: abc\n";
        std::fs::write(d.path().join("etc/kubernetes/token.conf"), token).unwrap();
        assert_eq!(
            open("/etc/kubernetes/token.conf"),
            "/etc/kubernetes/token.conf: user \"u\" authenticates with a bearer token; the agent needs a client certificate"
        );
        let plain = token.replace("https://127.0.0.1:6443", "http://127.0.0.1:6443");
        std::fs::write(d.path().join("etc/kubernetes/http.conf"), plain).unwrap();
        assert!(open("/etc/kubernetes/http.conf").contains("has no https:// server"));
    }

    #[test]
    fn a_client_certificate_rustls_refuses_is_an_error_not_a_crash() {
        // An X.509 v1 certificate (openssl x509 -req without extensions): ureq would
        // panic on it at the first connection.
        let (d, root) = temp_control_plane();
        let w = d.path();
        let sh = |args: &[&str]| {
            let o = std::process::Command::new("openssl")
                .args(args)
                .current_dir(w)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        sh(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "v1.key",
            "-subj",
            "/CN=v1",
            "-out",
            "v1.csr",
        ]);
        sh(&[
            "x509", "-req", "-in", "v1.csr", "-signkey", "v1.key", "-days", "1", "-out", "v1.crt",
        ]);
        let conf = w.join("etc/kubernetes/admin.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let b64 = |f: &str| {
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                std::fs::read(w.join(f)).unwrap(),
            )
        };
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .unwrap()
                .to_string()
        };
        let edited = text
            .replace(&value("client-certificate-data: "), &b64("v1.crt"))
            .replace(&value("client-key-data: "), &b64("v1.key"));
        std::fs::write(&conf, edited).unwrap();
        let e = ApiClient::from_kubeconfig(
            &root,
            Path::new("/etc/kubernetes/admin.conf"),
            ClientOptions::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("not usable as a TLS client certificate"), "{e}");
    }

    #[test]
    fn the_signer_command_with_nothing_to_do_exits_2() {
        let d = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cert-rotator"))
            .args(["--root"])
            .arg(d.path())
            .args(["signer", "--rounds", "1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no [[signer]] table is configured"));
    }
}

mod events {
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::time::Instant;

    use cert_rotator::config::events::EventSettings;
    use cert_rotator::fixture::temp_control_plane;
    use cert_rotator::kube::events::tell;
    use cert_rotator::report::events::of_report;
    use cert_rotator::report::pass::{PassReport, RenewedCert};
    use time::OffsetDateTime;

    #[test]
    fn a_pass_becomes_one_event_per_renewal_restart_failure_and_certificate_left_due() {
        let r = PassReport {
            renewed: vec![RenewedCert {
                name: "apiserver".into(),
                path: "/etc/kubernetes/pki/apiserver.crt".into(),
                serial: "ab".into(),
                not_after: OffsetDateTime::UNIX_EPOCH,
            }],
            restarted: vec!["kube-scheduler".into()],
            failed: vec!["etcd/server: signing failed".into()],
            deferred: vec!["admin.conf (at most 2 restarts a pass)".into()],
            ..Default::default()
        };
        let reasons: Vec<(bool, &str)> = of_report(&r)
            .iter()
            .map(|e| (e.warning, e.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (false, "CertificateRenewed"),
                (false, "ComponentRestarted"),
                (true, "CertificateRotationFailed"),
                (true, "CertificateExpirationWarning"),
            ]
        );
        assert!(of_report(&PassReport::default()).is_empty());
    }

    #[test]
    fn an_api_server_that_never_answers_costs_the_pass_at_most_the_timeout() {
        let (d, root) = temp_control_plane();
        // Accepts connections (the kernel's backlog) and never speaks TLS.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let conf = d.path().join("etc/kubernetes/kubelet.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap()
            .to_string();
        std::fs::write(
            &conf,
            text.replace(&server, &format!("https://127.0.0.1:{port}")),
        )
        .unwrap();
        let r = PassReport {
            restarted: vec!["kubelet".into(); 20],
            ..Default::default()
        };
        let s = EventSettings {
            enabled: true,
            kubeconfig: PathBuf::from("/etc/kubernetes/kubelet.conf"),
            timeout_seconds: 2,
        };
        let started = Instant::now();
        tell(&root, &s, &of_report(&r));
        assert!(
            started.elapsed().as_secs_f64() < 3.5,
            "{:?}",
            started.elapsed()
        );
    }
}
