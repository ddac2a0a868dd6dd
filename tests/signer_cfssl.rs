//! A `[[signer]]` whose CA is a cfssl server, against a real `cfssl serve` (Debian's
//! golang-cfssl, tests/common/cfssl.rs): the CSR's own request sent with the project's
//! one cfssl client (HTTPS, authsign), and what comes back judged by
//! `signer::cfssl::check_issued`. The API server side (Issued, Failed, pending while
//! cfssl is down) is judged by the real one in tests/k8s/csr.sh.

mod common;

use base64::Engine;
use cert_rotator::ca::remote::{build_csr, RemoteClient, RemoteError};
use cert_rotator::config::remote::RemoteSettings;
use cert_rotator::config::signer::SignerSettings;
use cert_rotator::kube::types::CertificateSigningRequest;
use cert_rotator::node::NodeRoot;
use cert_rotator::pki::x509::{CertTemplate, OID_CN};
use cert_rotator::pki::{encode_pem, CertFacts, KeyAlgorithm, KeyEncoding, PrivateKey};
use cert_rotator::signer::cfssl::{check_issued, request_body, Expected, Unfit};
use cert_rotator::signer::decide::evaluate;
use common::cfssl::*;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const SERVER_USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];

/// The node side: the auth key (0600) and the server's TLS CA under a node root.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(tls: &Tls, auth_key: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("auth.key");
        std::fs::write(&key, format!("{auth_key}\n")).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::copy(tls.file("ca.pem"), dir.path().join("tls-ca.pem")).unwrap();
        Node { dir }
    }

    fn root(&self) -> NodeRoot {
        NodeRoot::new(self.dir.path())
    }
}

fn signer(url: &str, usages: &[&str], profile: &str) -> SignerSettings {
    SignerSettings {
        name: "example.com/cfssl-serving".into(),
        ca_cert: "/ca.pem".into(),
        ca_key: None,
        cfssl: Some(RemoteSettings {
            url: url.into(),
            profile: profile.into(),
            auth_key_file: Some("/auth.key".into()),
            tls_ca_bundle: Some("/tls-ca.pem".into()),
            attempts: 1,
            timeout_seconds: 10,
            ..Default::default()
        }),
        usages: usages.iter().map(|u| u.to_string()).collect(),
        max_duration_seconds: 365 * 24 * 3600,
        key_algorithms: vec!["rsa".into(), "ecdsa".into()],
    }
}

/// An approved CSR for CN=my-pod with two DNS and one IP SAN, as `cfssl genkey` makes
/// one; its key.
fn approved(usages: &[&str], expiration: Option<i64>) -> (CertificateSigningRequest, PrivateKey) {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
    let der = CertTemplate {
        subject: vec![vec![(
            OID_CN,
            "my-pod.my-namespace.pod.cluster.local".into(),
        )]],
        dns_names: vec![
            "my-svc.my-namespace.svc.cluster.local".into(),
            "my-pod.my-namespace.pod.cluster.local".into(),
        ],
        ip_addresses: vec!["192.0.2.24".parse().unwrap()],
        ..Default::default()
    }
    .issue(&key, None)
    .unwrap();
    let pem = build_csr(&der, &key).unwrap();
    let mut spec = serde_json::json!({
        "request": base64::engine::general_purpose::STANDARD.encode(&pem),
        "signerName": "example.com/cfssl-serving",
        "usages": usages,
    });
    if let Some(s) = expiration {
        spec["expirationSeconds"] = s.into();
    }
    let csr = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "my-svc.my-namespace", "resourceVersion": "7"},
        "spec": spec,
        "status": {"conditions": [{"type": "Approved", "status": "True"}]},
    }))
    .unwrap();
    (csr, key)
}

/// What the signer does with one approved CSR: the exchange's error (the CSR waits), or
/// the check's verdict (written, or the CSR fails).
fn sign(
    node: &Node,
    s: &SignerSettings,
    csr: &CertificateSigningRequest,
    ca: &CertFacts,
) -> Result<Result<Vec<u8>, Unfit>, RemoteError> {
    let grant = evaluate(csr, s).unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(&csr.spec.request)
        .unwrap();
    let body = request_body(&grant, std::str::from_utf8(&pem).unwrap(), s).unwrap();
    let client = RemoteClient::new(&node.root(), s.cfssl.as_ref().unwrap()).unwrap();
    let answer = client.sign("my-svc.my-namespace", &body)?;
    Ok(check_issued(
        &answer,
        &Expected {
            grant: &grant,
            signer: s,
            ca_path: Path::new("/ca.pem"),
            ca: std::slice::from_ref(ca),
            asked_expiration: csr.spec.expiration_seconds.is_some(),
            now: now(),
        },
    ))
}

#[test]
fn cfssl_signs_the_csrs_own_request_and_the_answer_is_checked() {
    let ca = make_ca("My Example Signer");
    let tls = Tls::new();
    // The server's default profile: 8760h, signing, key encipherment, server and client
    // auth, behind the auth key.
    let mut server = Cfssl::start(&ca, &tls, Mode::Https);
    let node = Node::new(&tls, AUTH_KEY);
    let all = [SERVER_USAGES, &["client auth"]].concat();
    let s = signer(&server.url(), &all, "");

    let (csr, key) = approved(SERVER_USAGES, None);
    let der = sign(&node, &s, &csr, &ca.0).unwrap().unwrap();
    let cert = CertFacts::from_der(&der).unwrap();
    assert!(cert.is_signed_by(&ca.0));
    assert!(key.matches(&cert), "cfssl signed the request's own key");
    let dir = tempfile::tempdir().unwrap();
    let (crt, ca_file) = (dir.path().join("crt.pem"), dir.path().join("ca.pem"));
    std::fs::write(&crt, encode_pem("CERTIFICATE", &der)).unwrap();
    std::fs::write(&ca_file, encode_pem("CERTIFICATE", &ca.0.der)).unwrap();
    verify(&ca_file, &crt);
    let text = openssl(&["x509", "-noout", "-text", "-in", crt.to_str().unwrap()]);
    for want in [
        "CN = my-pod.my-namespace.pod.cluster.local",
        "DNS:my-svc.my-namespace.svc.cluster.local",
        "IP Address:192.0.2.24",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }

    // A signer that allows server usages only, behind a profile that also gives client
    // auth: refused, naming the usage and the fix.
    let narrow = signer(&server.url(), SERVER_USAGES, "");
    let e = sign(&node, &narrow, &csr, &ca.0).unwrap().unwrap_err();
    assert!(matches!(e, Unfit::ExtraUsages { .. }), "{e}");
    assert!(
        e.to_string().contains("client auth") && e.to_string().contains("fix the profile's usages"),
        "{e}"
    );

    // spec.expirationSeconds of an hour under a 365-day profile: never written longer.
    let (hour, _) = approved(SERVER_USAGES, Some(3600));
    let e = sign(&node, &s, &hour, &ca.0).unwrap().unwrap_err();
    assert!(matches!(e, Unfit::TooLong { .. }), "{e}");
    assert!(
        e.to_string().contains("365 days") && e.to_string().contains("spec.expirationSeconds"),
        "{e}"
    );

    // Checked against another CA than the server's: refused.
    let other = make_ca("My Example Signer");
    let e = sign(&node, &s, &csr, &other.0).unwrap().unwrap_err();
    assert!(matches!(e, Unfit::OtherCa { .. }), "{e}");

    // A wrong auth key: cfssl refuses, an exchange error (the CSR waits), naming the server.
    let wrong = Node::new(&tls, WRONG_KEY);
    let e = sign(&wrong, &s, &csr, &ca.0).unwrap_err().to_string();
    assert!(
        e.contains(&server.url()) && e.contains("invalid token"),
        "{e}"
    );

    // The server stopped: an exchange error naming it, never a verdict on the CSR.
    server.stop();
    let e = sign(&node, &s, &csr, &ca.0).unwrap_err();
    assert!(matches!(e, RemoteError::GaveUp { .. }), "{e}");
    assert!(e.to_string().contains(&server.url()), "{e}");
}

#[test]
fn a_certificate_that_would_outlive_its_ca_is_refused() {
    // The CA ends in 30 days; the server's profiles give 365 and 91 days, and cfssl does
    // not cap them at its CA's end.
    let key = PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs1).unwrap();
    let n = now();
    let der = CertTemplate::ca(
        vec![vec![(OID_CN, "Short-lived Signer".into())]],
        n - Duration::days(1),
        n + Duration::days(30),
    )
    .issue(&key, None)
    .unwrap();
    let ca = (CertFacts::from_der(&der).unwrap(), key);
    let tls = Tls::new();
    let server = Cfssl::start(&ca, &tls, Mode::Https);
    let node = Node::new(&tls, AUTH_KEY);
    let s = signer(
        &server.url(),
        &[SERVER_USAGES, &["client auth"]].concat(),
        "kubelet",
    );
    let (csr, _) = approved(SERVER_USAGES, None);
    let e = sign(&node, &s, &csr, &ca.0).unwrap().unwrap_err();
    assert!(matches!(e, Unfit::OutlivesCa { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("\"kubelet\"") && e.contains("outlive its CA") && e.contains("expiry"),
        "{e}"
    );
}
