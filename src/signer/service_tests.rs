//! The signer service's own rules: the Lease's term, and a cfssl server asked within it.

use super::*;
use crate::ca::remote::client::tests::{listener, silent_listener};
use crate::pki::x509::{CertTemplate, OID_CN};
use crate::pki::{KeyAlgorithm, KeyEncoding, PrivateKey};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn a_term_ends_one_timeout_before_the_lease() {
    let t0 = Instant::now();
    let term = Term::new(t0, Duration::from_secs(15), Duration::from_secs(10));
    assert!(!term.over_at(t0));
    assert!(!term.over_at(t0 + Duration::from_millis(4999)));
    assert!(term.over_at(t0 + Duration::from_secs(5)));
    assert!(term.over_at(t0 + Duration::from_secs(60)));
    // A clock read before the renewal (never, but monotonic clocks are compared).
    let late = Term::new(
        t0 + Duration::from_secs(1),
        Duration::from_secs(15),
        Duration::from_secs(10),
    );
    assert!(!late.over_at(t0));
    // A configuration that leaves no time (refused at load) writes nothing.
    let none = Term::new(t0, Duration::from_secs(10), Duration::from_secs(10));
    assert!(none.over_at(t0));
}

/// An approved CSR for CN=my-pod, and a signer for it through the cfssl at `port`
/// (three tries of 5 s each), its CA and the server's TLS bundle under a node root.
fn cfssl_signer(port: u16) -> (tempfile::TempDir, SignerSettings, CertificateSigningRequest) {
    let d = tempfile::tempdir().unwrap();
    let ca_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
    let ca = CertTemplate {
        subject: vec![vec![(OID_CN, "example-ca".into())]],
        is_ca: true,
        ..Default::default()
    }
    .issue(&ca_key, None)
    .unwrap();
    let ca_pem = encode_pem("CERTIFICATE", &ca);
    std::fs::write(d.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(d.path().join("tls-ca.pem"), &ca_pem).unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
    let der = CertTemplate {
        subject: vec![vec![(OID_CN, "my-pod".into())]],
        dns_names: vec!["my-pod.example".into()],
        ..Default::default()
    }
    .issue(&key, None)
    .unwrap();
    let request = crate::ca::remote::build_csr(&der, &key).unwrap();
    let csr: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "c1", "resourceVersion": "7"},
        "spec": {"request": b64(request.as_bytes()), "signerName": "example.com/cfssl-serving",
                 "usages": ["digital signature", "server auth"]},
        "status": {"conditions": [{"type": "Approved", "status": "True"}]}
    }))
    .unwrap();
    let s = SignerSettings {
        name: "example.com/cfssl-serving".into(),
        ca_cert: "/ca.pem".into(),
        ca_key: None,
        cfssl: Some(RemoteSettings {
            url: format!("https://127.0.0.1:{port}"),
            tls_ca_bundle: Some("/tls-ca.pem".into()),
            connect_timeout_seconds: 5,
            timeout_seconds: 5,
            attempts: 3,
            retry_delay_ms: 100,
            ..Default::default()
        }),
        usages: vec!["digital signature".into(), "server auth".into()],
        max_duration_seconds: 86_400,
        key_algorithms: vec!["ecdsa".into()],
    };
    (d, s, csr)
}

#[test]
fn a_silent_cfssl_is_asked_within_the_term_only_then_rests() {
    let (port, accepted) = silent_listener();
    let (d, s, csr) = cfssl_signer(port);
    let root = NodeRoot::new(d.path());
    let grant = evaluate(&csr, &s).unwrap();
    let mut memory = Memory::default();
    // A Lease of 3 s with requests of 1 s: 2 s to sign in, where three tries of 5 s
    // would take 15 s and more.
    let started = Instant::now();
    let term = Term::new(started, Duration::from_secs(3), Duration::from_secs(1));
    let c = s.cfssl.clone().unwrap();
    let signature = sign_with_cfssl(&root, &s, &c, &csr, &grant, &mut memory, &term);
    let took = started.elapsed();
    assert!(matches!(signature, Signature::Wait));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(term.over(), "the write after it is left to the next term");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let said = &memory.said[&s.name];
    assert!(
        said.contains("stopped after 1 attempt(s): the Lease's term ends")
            && said.ends_with("the CSR waits, and the signer's CSRs are not sent to cfssl for 5 s"),
        "{said}"
    );
    // Resting: the next rounds do not ask it.
    assert!(memory.resting.left(&s.name, Instant::now()).is_some());
}

#[test]
fn a_resting_signers_round_lists_nothing() {
    // The API server and cfssl alike accept and never answer: a round that asked either
    // would take its timeout.
    let (api_port, api_accepted) = silent_listener();
    let (port, accepted) = silent_listener();
    let (d, s, _) = cfssl_signer(port);
    let root = NodeRoot::new(d.path());
    let api = api_client(&d, api_port);
    let term = Term::new(
        Instant::now(),
        Duration::from_secs(15),
        Duration::from_secs(2),
    );
    let mut memory = Memory::default();
    memory.resting.failed(&s.name, Instant::now());
    let started = Instant::now();
    assert!(round(&root, &api, &s, &mut memory, &term));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(api_accepted.load(Ordering::SeqCst), 0);
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    // A signer with its CA key here never rests: its round lists (and meets the silent
    // API server's timeout).
    let local = SignerSettings {
        cfssl: None,
        ca_key: Some("/ca-key.pem".into()),
        ..s
    };
    assert!(round(&root, &api, &local, &mut memory, &term));
    assert_eq!(api_accepted.load(Ordering::SeqCst), 1);
}

/// A client of the API server at `api_port` (2 s timeouts), its kubeconfig under `d`.
fn api_client(d: &tempfile::TempDir, api_port: u16) -> ApiClient {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
    let cert = CertTemplate {
        subject: vec![vec![(OID_CN, "signer".into())]],
        ..Default::default()
    }
    .issue(&key, None)
    .unwrap();
    let ca = std::fs::read(d.path().join("ca.pem")).unwrap();
    std::fs::write(
        d.path().join("signer.conf"),
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&ca),
            b64(encode_pem("CERTIFICATE", &cert).as_bytes()),
            b64(key.to_pem().unwrap().as_bytes()),
        ),
    )
    .unwrap();
    let o = ClientOptions {
        connect_timeout_seconds: 2,
        timeout_seconds: 2,
        ..Default::default()
    };
    ApiClient::from_kubeconfig(
        &NodeRoot::new(d.path()),
        std::path::Path::new("/signer.conf"),
        o,
    )
    .unwrap()
}

/// A stand-in for a cfssl server that drops every connection, which no real cfssl can
/// be made to do on demand: a TCP listener that accepts and closes at once (the TLS
/// handshake ends early, a transport failure). Its port and the connections it took.
fn closing_listener() -> (u16, Arc<AtomicUsize>) {
    listener(|_| None)
}

#[test]
fn a_cfssl_that_fails_costs_a_round_one_csrs_tries_and_one_rest() {
    // The API server is never asked: nothing is written for a CSR that waits.
    let (api_port, api_accepted) = silent_listener();
    let (port, accepted) = closing_listener();
    let (d, s, csr) = cfssl_signer(port);
    let root = NodeRoot::new(d.path());
    let api = api_client(&d, api_port);
    let pending: Vec<CertificateSigningRequest> = ["c1", "c2", "c3"]
        .into_iter()
        .map(|name| {
            let mut c = csr.clone();
            c.metadata.name = Some(name.into());
            c
        })
        .collect();
    let term = Term::new(
        Instant::now(),
        Duration::from_secs(60),
        Duration::from_secs(2),
    );
    let mut memory = Memory::default();
    assert!(sign_listed(&root, &api, &s, pending, &mut memory, &term));
    // c1's three tries, neither c2's nor c3's.
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_eq!(api_accepted.load(Ordering::SeqCst), 0);
    // One failure counted: the first rest, 5 s, not 20 s.
    let left = memory.resting.left(&s.name, Instant::now()).unwrap();
    assert!(left <= crate::signer::rest::FIRST_REST, "{left:?}");
    let said = &memory.said[&s.name];
    assert!(
        said.contains("gave up after 3 attempts")
            && said.ends_with("the signer's CSRs are not sent to cfssl for 5 s"),
        "{said}"
    );
}
