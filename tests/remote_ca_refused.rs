//! The remote CA's refusals and transports, through a real cfssl server: a wrong auth
//! key, a stopped server, a server with another CA and one that changes the identity
//! are each refused with nothing changed on disk; mutual TLS, plain HTTP only when
//! allowed, `[ca.remote]` spread over drop-ins, and a TLS handshake that hangs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration as StdDuration, Instant};

use cert_rotator::pki::x509::{CertTemplate, EKU_SERVER, OID_CN, OID_O};
use cert_rotator::pki::{encode_pem, KeyAlgorithm, KeyEncoding, PrivateKey};
use common::cfssl::*;
use common::*;
use x509_cert::ext::pkix::KeyUsages;

#[test]
fn wrong_key_stopped_server_and_foreign_ca_are_refused_with_nothing_changed() {
    let (d, built) = build(&worker_spec());
    let r = d.path();
    let tls = Tls::new();
    let mut server = Cfssl::start(&built.ca, &tls, Mode::Https);
    let targets = ["renew", KUBELET_CLIENT, KUBELET_CRT];

    configure(r, &server.url(), &tls, WRONG_KEY, "");
    fails_and_changes_nothing(
        r,
        &mut agent(r, &targets),
        &[
            "kubelet-client-current.pem: cfssl",
            "FAILED",
            "invalid token",
            "wrong auth key",
        ],
    );

    // A server with another CA of the same name.
    let other = Cfssl::start(&make_ca("kubernetes"), &tls, Mode::Https);
    configure(r, &other.url(), &tls, AUTH_KEY, "");
    fails_and_changes_nothing(
        r,
        &mut agent(r, &targets),
        &[
            "FAILED",
            "signed by another CA",
            "/etc/kubernetes/pki/ca.crt",
        ],
    );

    // The server stopped: three tries, then a failure; the next pass will try again.
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    server.stop();
    let started = Instant::now();
    let all = fails_and_changes_nothing(
        r,
        &mut agent(r, &targets),
        &["FAILED", "unreachable", "gave up after 3 attempts"],
    );
    assert!(started.elapsed() < StdDuration::from_secs(20), "{all}");

    // A wider auth key file is refused before anything is sent.
    configure(r, &other.url(), &tls, AUTH_KEY, "");
    std::fs::set_permissions(
        host(r, "/etc/cert-rotator/cfssl-auth.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &targets),
        &["cfssl-auth.key", "0640", "0600 or stricter"],
    );

    // Plain http in the configuration without allow_http: a configuration error.
    configure(r, "http://127.0.0.1:1", &tls, AUTH_KEY, "");
    let out = agent(r, &["renew", KUBELET_CLIENT]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("allow_http"), "{}", text(&out));
}

#[test]
fn a_server_that_changes_the_identity_is_refused() {
    let (d, built) = build(&worker_spec());
    let r = d.path();
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    // Certificates cfssl 1.2 cannot reproduce: CN before O (OpenSSL's order; Go's is O
    // then CN), and a URI SAN (cfssl 1.2 turns it into a DNS name).
    let n = now();
    let base = CertTemplate {
        not_before: Some(n - Duration::days(10)),
        not_after: Some(n + Duration::days(355)),
        key_usage: vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment],
        ext_key_usage: vec![EKU_SERVER],
        dns_names: vec!["webhook.example".into()],
        ..Default::default()
    };
    let reordered = CertTemplate {
        subject: vec![
            vec![(OID_CN, "webhook".into())],
            vec![(OID_O, "team".into())],
        ],
        ..base.clone()
    };
    let with_uri = CertTemplate {
        subject: vec![vec![(OID_CN, "spiffe-workload".into())]],
        uris: vec!["spiffe://cluster.local/ns/default/sa/web".into()],
        ..base
    };
    for (name, t) in [("reordered", reordered), ("uri", with_uri)] {
        let key =
            PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs1).unwrap();
        let der = t.issue(&key, Some(&issuer(&built.ca))).unwrap();
        let dir = host(r, "/etc/webhook");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.crt")),
            encode_pem("CERTIFICATE", &der),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{name}.key")),
            key.to_pem().unwrap().as_bytes(),
        )
        .unwrap();
    }
    let all = fails_and_changes_nothing(
        r,
        &mut agent(
            r,
            &[
                "renew",
                "/etc/webhook/reordered.crt",
                "/etc/webhook/uri.crt",
            ],
        ),
        &[
            "changed the subject",
            "changed the subject alternative names",
            "URI:spiffe://cluster.local/ns/default/sa/web",
        ],
    );
    assert_eq!(all.matches("\tFAILED\t").count(), 2, "{all}");
}

#[test]
fn mutual_tls_and_plain_http_when_allowed() {
    let (d, built) = build(&worker_spec());
    let r = d.path();
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::MutualTls);
    let etc = host(r, "/etc/cert-rotator");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(tls.file("client.pem"), etc.join("client.pem")).unwrap();
    std::fs::copy(tls.file("client-key.pem"), etc.join("client-key.pem")).unwrap();
    // No client certificate: the server refuses the handshake.
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["renew", KUBELET_CLIENT]),
        &["FAILED", "kubelet-client-current.pem: cfssl"],
    );
    // A server whose TLS certificate does not chain to the configured bundle.
    std::fs::copy(
        host(r, "/etc/kubernetes/pki/ca.crt"),
        etc.join("cfssl-tls-ca.pem"),
    )
    .unwrap();
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["renew", KUBELET_CLIENT]),
        &["FAILED", "TLS", "UnknownIssuer"],
    );
    std::fs::copy(tls.file("ca.pem"), etc.join("cfssl-tls-ca.pem")).unwrap();
    // With one: renewed.
    let conf = std::fs::read_to_string(etc.join("config.toml")).unwrap().replacen(
        "retry_delay_ms = 100\n",
        "retry_delay_ms = 100\nclient_cert = \"/etc/cert-rotator/client.pem\"\nclient_key = \"/etc/cert-rotator/client-key.pem\"\n",
        1,
    );
    std::fs::write(etc.join("config.toml"), conf).unwrap();
    let out = agent(r, &["renew", KUBELET_CLIENT]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    verify(
        &host(r, "/etc/kubernetes/pki/ca.crt"),
        &kubelet_client_file(r),
    );

    // Plain http, allowed explicitly: works, with a warning.
    let http = Cfssl::start(&built.ca, &tls, Mode::Http);
    configure(r, &http.url(), &tls, AUTH_KEY, "");
    let conf = std::fs::read_to_string(etc.join("config.toml"))
        .unwrap()
        .replacen(
            "retry_delay_ms = 100\n",
            "retry_delay_ms = 100\nallow_http = true\n",
            1,
        );
    std::fs::write(etc.join("config.toml"), conf).unwrap();
    let out = agent(r, &["renew", KUBELET_CLIENT]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("plain http"), "{}", text(&out));
    verify(
        &host(r, "/etc/kubernetes/pki/ca.crt"),
        &kubelet_client_file(r),
    );
}

#[test]
fn ca_remote_may_be_spread_over_dropins_and_is_checked_merged() {
    use cert_rotator::config::{load, CaChoice};
    use cert_rotator::node::NodeRoot;
    let d = tempfile::tempdir().unwrap();
    let write = |p: &str, text: &str| {
        let f = host(d.path(), p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    };
    write(
        "/etc/cert-rotator/config.toml",
        "[ca.remote]\nurl = \"https://ca.example:8888\"\n",
    );
    write(
        "/etc/cert-rotator/config.d/10-node.toml",
        "[ca.remote]\nprofile = \"node\"\n[targets.\"kubelet.crt\"]\nca = \"remote\"\n",
    );
    let root = NodeRoot::new(d.path());
    let s = load(&root, None).unwrap().settings;
    let remote = s.ca.remote.unwrap();
    assert_eq!(remote.url, "https://ca.example:8888");
    assert_eq!(remote.profile, "node");
    assert_eq!(remote.attempts, 3);
    assert_eq!(s.targets["kubelet.crt"].ca, Some(CaChoice::Remote));
    // A section without url, once merged, is an error naming the key.
    std::fs::remove_file(host(d.path(), "/etc/cert-rotator/config.toml")).unwrap();
    let e = load(&root, None).unwrap_err().to_string();
    assert!(e.contains("[ca.remote] url: missing"), "{e}");
    // The auth key is never inline.
    write(
        "/etc/cert-rotator/config.toml",
        "[ca.remote]\nurl = \"https://ca.example:8888\"\nauth_key = \"0011\"\n",
    );
    let e = load(&root, None).unwrap_err().to_string();
    assert!(e.contains("unknown field `auth_key`"), "{e}");
}

/// `openssl x509 -subject` with the ASN.1 string type of every value.

#[test]
fn a_tls_handshake_that_hangs_is_reported_as_such() {
    // A server that accepts the connection and never speaks (an in-test stand-in:
    // a real cfssl does not hang).
    let (port, _) = silent_server();
    let (d, _) = build(&worker_spec());
    let r = d.path();
    configure_impatient(r, &format!("https://127.0.0.1:{port}"), &Tls::new());
    let started = Instant::now();
    let all = fails_and_changes_nothing(
        r,
        &mut agent(r, &["renew", KUBELET_CLIENT]),
        &[
            "FAILED",
            &format!("TLS handshake with 127.0.0.1:{port} timed out after 1s"),
            "gave up after 2 attempts",
        ],
    );
    assert!(!all.contains("timed out (connect)"), "{all}");
    assert!(started.elapsed() < StdDuration::from_secs(15), "{all}");
}
