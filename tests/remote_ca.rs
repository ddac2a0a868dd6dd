//! Renewal through a real cfssl server (`cfssl serve`, Debian's golang-cfssl): the node
//! keeps its key, sends a CSR, checks what comes back with the real openssl; a wrong
//! auth key, a stopped server, a server with another CA and a server that changes the
//! identity are each refused with nothing changed on disk.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use cert_rotator::fixture::BuiltNode;
use cert_rotator::pki::x509::{CertTemplate, Issuer, EKU_CLIENT, EKU_SERVER, OID_CN, OID_O};
use cert_rotator::pki::{encode_pem, CertFacts, KeyAlgorithm, KeyEncoding, PrivateKey};
use common::*;
use x509_cert::ext::pkix::KeyUsages;

const AUTH_KEY: &str = "00112233445566778899aabbccddeeff";
const WRONG_KEY: &str = "ffeeddccbbaa99887766554433221100";

/// A CA (certificate, key) as the fixture makes them.
type Ca = (CertFacts, PrivateKey);

/// The TLS side of the test servers: a CA of its own and a server certificate for
/// 127.0.0.1, plus a client certificate for mutual TLS.
struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    fn new() -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca("cfssl-tls-ca");
        let server_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let server = CertTemplate {
            subject: vec![vec![(OID_CN, "cfssl.test".into())]],
            key_usage: vec![KeyUsages::DigitalSignature],
            ext_key_usage: vec![EKU_SERVER],
            dns_names: vec!["localhost".into()],
            ip_addresses: vec![Ipv4Addr::LOCALHOST.into()],
            ..Default::default()
        }
        .issue(&server_key, Some(&issuer(&ca)))
        .unwrap();
        let client_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let client = CertTemplate {
            subject: vec![vec![(OID_CN, "worker-1".into())]],
            key_usage: vec![KeyUsages::DigitalSignature],
            ext_key_usage: vec![EKU_CLIENT],
            ..Default::default()
        }
        .issue(&client_key, Some(&issuer(&ca)))
        .unwrap();
        let p = dir.path();
        std::fs::write(p.join("ca.pem"), encode_pem("CERTIFICATE", &ca.0.der)).unwrap();
        std::fs::write(p.join("server.pem"), encode_pem("CERTIFICATE", &server)).unwrap();
        std::fs::write(
            p.join("server-key.pem"),
            server_key.to_pem().unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::write(p.join("client.pem"), encode_pem("CERTIFICATE", &client)).unwrap();
        std::fs::write(
            p.join("client-key.pem"),
            client_key.to_pem().unwrap().as_bytes(),
        )
        .unwrap();
        Tls { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn make_ca(cn: &str) -> Ca {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs1).unwrap();
    let n = now();
    let der = CertTemplate::ca(
        vec![vec![(OID_CN, cn.into())]],
        n - Duration::days(1),
        n + Duration::days(3650),
    )
    .issue(&key, None)
    .unwrap();
    (CertFacts::from_der(&der).unwrap(), key)
}

fn issuer(ca: &Ca) -> Issuer<'_> {
    Issuer {
        cert: &ca.0,
        key: &ca.1,
    }
}

/// How a test server is started.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Https,
    MutualTls,
    Http,
}

/// A running `cfssl serve` on a free loopback port; killed when dropped.
struct Cfssl {
    child: Option<Child>,
    port: u16,
    mode: Mode,
    /// CA, key and config of the server, removed with it.
    _dir: tempfile::TempDir,
}

impl Cfssl {
    /// Starts cfssl with this CA, an auth key, a "kubelet" profile of 91 days and a
    /// default profile of 365 days (both server and client auth).
    fn start(ca: &Ca, tls: &Tls, mode: Mode) -> Cfssl {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("ca.pem"), encode_pem("CERTIFICATE", &ca.0.der)).unwrap();
        std::fs::write(p.join("ca-key.pem"), ca.1.to_pem().unwrap().as_bytes()).unwrap();
        let usages = r#"["signing", "key encipherment", "server auth", "client auth"]"#;
        std::fs::write(
            p.join("config.json"),
            format!(
                r#"{{"signing": {{
                    "default": {{"expiry": "8760h", "usages": {usages}, "auth_key": "main"}},
                    "profiles": {{"kubelet": {{"expiry": "2184h", "usages": {usages}, "auth_key": "main"}}}}
                  }},
                  "auth_keys": {{"main": {{"type": "standard", "key": "{AUTH_KEY}"}}}}}}"#
            ),
        )
        .unwrap();
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = std::fs::File::create(p.join("cfssl.log")).unwrap();
            let mut cmd = Command::new("cfssl");
            cmd.args(["serve", "-address", "127.0.0.1", "-port"])
                .arg(port.to_string())
                .arg("-ca")
                .arg(p.join("ca.pem"))
                .arg("-ca-key")
                .arg(p.join("ca-key.pem"))
                .arg("-config")
                .arg(p.join("config.json"));
            if mode != Mode::Http {
                cmd.arg("-tls-cert")
                    .arg(tls.file("server.pem"))
                    .arg("-tls-key")
                    .arg(tls.file("server-key.pem"));
            }
            if mode == Mode::MutualTls {
                cmd.arg("-mutual-tls-ca").arg(tls.file("ca.pem"));
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("cfssl: install Debian's golang-cfssl (.ci/run does)");
            let deadline = Instant::now() + StdDuration::from_secs(15);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Cfssl {
                        child: Some(child),
                        port,
                        mode,
                        _dir: dir,
                    };
                }
                std::thread::sleep(StdDuration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            // The port may have been taken meanwhile: try another.
            last_log = std::fs::read_to_string(p.join("cfssl.log")).unwrap_or_default();
        }
        panic!("cfssl serve did not start:\n{last_log}");
    }

    fn url(&self) -> String {
        let scheme = if self.mode == Mode::Http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cfssl {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes the agent's config (and the auth key, 0600) under the node root.
fn configure(root: &Path, url: &str, tls: &Tls, auth_key: &str, extra: &str) {
    let etc = host(root, "/etc/cert-rotator");
    std::fs::create_dir_all(&etc).unwrap();
    let key = etc.join("cfssl-auth.key");
    std::fs::write(&key, format!("{auth_key}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::copy(tls.file("ca.pem"), etc.join("cfssl-tls-ca.pem")).unwrap();
    std::fs::write(
        etc.join("config.toml"),
        format!(
            r#"[ca.remote]
url = "{url}"
auth_key_file = "/etc/cert-rotator/cfssl-auth.key"
tls_ca_bundle = "/etc/cert-rotator/cfssl-tls-ca.pem"
retry_delay_ms = 100

[ca.remote.targets."kubelet-client-current.pem"]
profile = "kubelet"

[ca.remote.targets."kubelet.crt"]
profile = "kubelet"
days = 91

[targets."kubelet.crt"]
ca = "remote"
{extra}"#
        ),
    )
    .unwrap();
}

fn build(spec: &NodeSpec) -> (tempfile::TempDir, BuiltNode) {
    let d = tempfile::tempdir().unwrap();
    let b = fixture::build(d.path(), spec).unwrap();
    (d, b)
}

/// A worker whose kubelet client certificate is a 91-day one with 10 days left.
fn worker_spec() -> NodeSpec {
    NodeSpec::worker(now()).with(
        "kubelet-client-current.pem",
        Validity::days(91, Duration::days(10)),
    )
}

/// What must not change: `openssl x509 -noout -subject -ext subjectAltName`.
fn identity(pem_file: &Path) -> String {
    openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-ext",
        "subjectAltName",
        "-in",
        pem_file.to_str().unwrap(),
    ])
}

fn verify(ca: &Path, pem_file: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        pem_file.to_str().unwrap(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
}

fn same_key(cert_file: &Path, key_file: &Path) {
    assert_eq!(
        openssl(&[
            "x509",
            "-noout",
            "-pubkey",
            "-in",
            cert_file.to_str().unwrap()
        ]),
        openssl(&["pkey", "-pubout", "-in", key_file.to_str().unwrap()]),
        "{} does not match {}",
        cert_file.display(),
        key_file.display()
    );
}

fn lifetime_seconds(root: &Path, name: &str) -> i64 {
    let (v, _) = status_json(root);
    cert(&v, name)["lifetime_seconds"].as_i64().unwrap()
}

fn certificates_in(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// The node tree except the agent's own state (lock, journal, backups).
const KUBELET_CLIENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
const KUBELET_CRT: &str = "/var/lib/kubelet/pki/kubelet.crt";

#[test]
fn a_worker_renews_its_kubelet_certificates_through_cfssl() {
    let (d, built) = build(&worker_spec());
    let r = d.path();
    assert!(!host(r, "/etc/kubernetes/pki/ca.key").exists());
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    let client_before = identity(&kubelet_client_file(r));
    let crt_before = identity(&host(r, KUBELET_CRT));
    let old_client_file = kubelet_client_file(r);
    let old_key = std::fs::read(host(r, "/var/lib/kubelet/pki/kubelet.key")).unwrap();

    let out = agent(r, &["renew", KUBELET_CLIENT, KUBELET_CRT])
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(all.matches("\trenewed\t").count(), 2, "{all}");

    let ca = host(r, "/etc/kubernetes/pki/ca.crt");
    // kubelet-client-current.pem: a new file behind the symlink, cert and new key.
    let client = kubelet_client_file(r);
    assert_ne!(client, old_client_file);
    verify(&ca, &client);
    same_key(&client, &client);
    assert_eq!(identity(&client), client_before);
    assert_eq!(
        std::fs::metadata(&client).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // kubelet.crt: now signed by the cluster CA, the throwaway CA gone from the file.
    let crt = host(r, KUBELET_CRT);
    verify(&ca, &crt);
    assert_eq!(certificates_in(&crt), 1);
    same_key(&crt, &host(r, "/var/lib/kubelet/pki/kubelet.key"));
    assert_ne!(
        old_key,
        std::fs::read(host(r, "/var/lib/kubelet/pki/kubelet.key")).unwrap(),
        "a new key, made on the node"
    );
    assert_eq!(identity(&crt), crt_before);
    // The kubelet profile's 91 days.
    assert_eq!(
        lifetime_seconds(r, "kubelet-client-current.pem"),
        91 * 86_400
    );
    assert_eq!(lifetime_seconds(r, "kubelet.crt"), 91 * 86_400);

    // renew-all on the worker: the CA key is absent and a remote is configured, so the
    // kubelet client goes to cfssl by default.
    let out = agent(r, &["renew-all"]).output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(all.matches("\trenewed\t").count(), 2, "{all}");
    verify(&ca, &kubelet_client_file(r));
    assert_eq!(identity(&kubelet_client_file(r)), client_before);
}

#[test]
fn cert_renew_remote_renews_through_cfssl() {
    let (d, built) = build(&worker_spec());
    let r = d.path();
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    let key_file = r.join("cfssl-auth.key");
    std::fs::write(&key_file, AUTH_KEY).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = host(r, "/etc/kubernetes/pki/ca.crt");
    let crt = host(r, KUBELET_CRT);
    let client = kubelet_client_file(r);
    let crt_before = identity(&crt);
    let client_before = identity(&client);
    let cert_renew = |extra: &[&str]| {
        let mut c = Command::new(renew_bin());
        c.args(["--remote", &server.url(), "--auth-key-file"])
            .arg(&key_file)
            .arg("--remote-ca")
            .arg(tls.file("ca.pem"))
            .args(["--profile", "kubelet", "--days", "91", "--state-dir"])
            .arg(r.join("var/lib/cert-rotator"))
            .args(extra);
        c
    };
    // With --ca-cert: kubelet.crt moves from its throwaway CA to the cluster CA.
    let out = cert_renew(&["--ca-cert", ca.to_str().unwrap(), crt.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    verify(&ca, &crt);
    assert_eq!(identity(&crt), crt_before);
    same_key(&crt, &host(r, "/var/lib/kubelet/pki/kubelet.key"));
    // Without --ca-cert: the old issuer and authority key id must be kept (the
    // certificate-and-key file of the kubelet client, renewed in place).
    let out = cert_renew(&[client.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    verify(&ca, &client);
    same_key(&client, &client);
    assert_eq!(identity(&client), client_before);
    // A server that signs with another CA is refused even then: the key id differs.
    let other = Cfssl::start(&make_ca("kubernetes"), &tls, Mode::Https);
    let mut c = Command::new(renew_bin());
    c.args(["--remote", &other.url(), "--auth-key-file"])
        .arg(&key_file)
        .arg("--remote-ca")
        .arg(tls.file("ca.pem"))
        .args(["--profile", "kubelet", "--days", "91", "--state-dir"])
        .arg(r.join("var/lib/cert-rotator"))
        .arg(&client);
    fails_and_changes_nothing(r, &mut c, &["FAILED", "authority key id"]);
    // Plain http is refused unless --insecure-http; --ca-key does not go with --remote.
    let mut c = Command::new(renew_bin());
    c.args(["--remote", "http://127.0.0.1:1", "--ca-cert"])
        .arg(&ca)
        .arg(&crt);
    let all = fails_and_changes_nothing(r, &mut c, &["plain http", "--insecure-http"]);
    assert!(!all.contains("renewed"));
    let mut c = Command::new(renew_bin());
    c.args(["--remote", &server.url(), "--ca-key", "/x", "--ca-cert"])
        .arg(&ca)
        .arg(&crt);
    fails_and_changes_nothing(r, &mut c, &["--ca-key"]);
    // Without --remote, --ca-key is still required.
    let mut c = Command::new(renew_bin());
    c.arg("--ca-cert").arg(&ca).arg(&crt);
    fails_and_changes_nothing(r, &mut c, &["--ca-key"]);
}

#[test]
fn a_control_plane_leaf_whose_ca_key_is_gone_renews_through_cfssl() {
    let mut spec = NodeSpec::control_plane(now()).with(
        "kubelet-client-current.pem",
        Validity::days(91, Duration::days(10)),
    );
    spec.admin_organizations = vec!["kubeadm:cluster-admins".into(), "system:masters".into()];
    let (d, built) = build(&spec);
    let r = d.path();
    std::fs::remove_file(host(r, "/etc/kubernetes/pki/ca.key")).unwrap();
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    // kubelet.crt stays with its throwaway CA here.
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    let toml = host(r, "/etc/cert-rotator/config.toml");
    let conf = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("[targets.\"kubelet.crt\"]\nca = \"remote\"\n", "");
    std::fs::write(&toml, conf).unwrap();
    let pki = host(r, "/etc/kubernetes/pki");
    let before: BTreeMap<&str, String> = [
        "apiserver",
        "apiserver-kubelet-client",
        "front-proxy-client",
    ]
    .into_iter()
    .map(|n| (n, identity(&pki.join(format!("{n}.crt")))))
    .collect();
    let admin_before = admin_identity(r);
    let out = agent(r, &["renew-all"]).output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    // Every leaf renewed: those of the external CA through cfssl, the others locally.
    assert_eq!(all.matches("\trenewed\t").count(), 14, "{all}");
    for (name, ca) in [
        ("apiserver", "ca.crt"),
        ("apiserver-kubelet-client", "ca.crt"),
        ("front-proxy-client", "front-proxy-ca.crt"),
    ] {
        let f = pki.join(format!("{name}.crt"));
        verify(&pki.join(ca), &f);
        same_key(&f, &pki.join(format!("{name}.key")));
        assert_eq!(identity(&f), before[name], "{name}");
    }
    // The two O values of admin.conf, one multi-valued RDN, came back as they were.
    assert_eq!(admin_identity(r), admin_before);
    assert!(
        admin_before.contains("kubeadm:cluster-admins") && admin_before.contains("system:masters")
    );
    assert_eq!(lifetime_seconds(r, "apiserver"), 365 * 86_400);
    // cfssl's certificates carry a subject key id; kubeadm's leaves had none.
    let t = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        pki.join("apiserver.crt").to_str().unwrap(),
    ]);
    assert!(t.contains("Subject Key Identifier"), "{t}");

    // A server with another CA: the external CA's leaves fail and stay as they are, the
    // pass goes on with the others; exit 1.
    let other = Cfssl::start(&make_ca("kubernetes"), &tls, Mode::Https);
    configure(r, &other.url(), &tls, AUTH_KEY, "");
    let conf = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("[targets.\"kubelet.crt\"]\nca = \"remote\"\n", "");
    std::fs::write(&toml, conf).unwrap();
    let apiserver = std::fs::read(pki.join("apiserver.crt")).unwrap();
    let admin = std::fs::read(host(r, "/etc/kubernetes/admin.conf")).unwrap();
    let out = agent(r, &["renew-all"]).output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(
            "pki/apiserver.crt\tFAILED\tapiserver: the certificate is signed by another CA"
        ),
        "{all}"
    );
    assert!(all.contains("front-proxy-client.crt\trenewed"), "{all}");
    assert!(all.contains("etcd/server.crt\trenewed"), "{all}");
    assert_eq!(all.matches("\tFAILED\t").count(), 8, "{all}");
    assert_eq!(apiserver, std::fs::read(pki.join("apiserver.crt")).unwrap());
    assert_eq!(
        admin,
        std::fs::read(host(r, "/etc/kubernetes/admin.conf")).unwrap()
    );
}

#[test]
fn targets_are_routed_by_their_choice_and_the_ca_key() {
    use cert_rotator::ca::remote::RemoteSettings;
    use cert_rotator::config::{CaChoice, Settings, TargetOverride};
    use cert_rotator::inventory::Signer;
    use cert_rotator::plan::{ca_route, CaRoute};
    let present = |_: &str| Some((PathBuf::from("/etc/kubernetes/pki/ca.key"), true));
    let absent = |_: &str| Some((PathBuf::from("/etc/kubernetes/pki/ca.key"), false));
    let ca = Signer::Authority("ca".into());
    let remote = |a: Option<&str>, switch_issuer| CaRoute::Remote {
        authority: a.map(String::from),
        switch_issuer,
    };
    let not_renewable = |r: CaRoute, want: &str| match r {
        CaRoute::NotRenewable(w) => assert!(w.contains(want), "{w}"),
        other => panic!("{other:?}"),
    };
    let mut s = Settings::default();
    // No remote configured: today's behaviour.
    assert_eq!(
        ca_route(&s, "apiserver", &ca, &present),
        CaRoute::Local("ca".into())
    );
    not_renewable(ca_route(&s, "apiserver", &ca, &absent), "external CA");
    not_renewable(ca_route(&s, "apiserver", &ca, &absent), "[ca.remote]");
    assert_eq!(
        ca_route(&s, "kubelet.crt", &Signer::Bundled, &absent),
        CaRoute::SelfBundled
    );
    not_renewable(
        ca_route(&s, "x", &Signer::Unknown, &absent),
        "no CA on this node",
    );
    // A remote configured: used where the key is absent, only there.
    s.ca.remote = Some(RemoteSettings {
        url: "https://ca.example:8888".into(),
        ..Default::default()
    });
    assert_eq!(
        ca_route(&s, "apiserver", &ca, &absent),
        remote(Some("ca"), false)
    );
    assert_eq!(
        ca_route(&s, "apiserver", &ca, &present),
        CaRoute::Local("ca".into())
    );
    assert_eq!(
        ca_route(&s, "kubelet.crt", &Signer::Bundled, &absent),
        CaRoute::SelfBundled
    );
    // Per target.
    let choose = |s: &mut Settings, name: &str, c| {
        s.targets.insert(
            name.into(),
            TargetOverride {
                ca: Some(c),
                ..Default::default()
            },
        );
    };
    choose(&mut s, "apiserver", CaChoice::Remote);
    assert_eq!(
        ca_route(&s, "apiserver", &ca, &present),
        remote(Some("ca"), false)
    );
    choose(&mut s, "admin.conf", CaChoice::Local);
    not_renewable(ca_route(&s, "admin.conf", &ca, &absent), "ca = \"local\"");
    choose(&mut s, "kubelet.crt", CaChoice::Remote);
    assert_eq!(
        ca_route(&s, "kubelet.crt", &Signer::Bundled, &absent),
        remote(Some("ca"), true)
    );
    // [ca] default = "remote": everything, even with the key present.
    s.ca.default = CaChoice::Remote;
    assert_eq!(
        ca_route(&s, "scheduler.conf", &ca, &present),
        remote(Some("ca"), false)
    );
    assert_eq!(
        ca_route(&s, "x", &Signer::Unknown, &present),
        remote(None, false)
    );
}

fn admin_identity(r: &Path) -> String {
    let text = std::fs::read_to_string(host(r, "/etc/kubernetes/admin.conf")).unwrap();
    let f = r.join("admin-cert.pem");
    write_embedded_client_cert(&text, &f);
    let id = identity(&f);
    std::fs::remove_file(&f).unwrap();
    id
}

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
fn subject_types(pem_file: &Path) -> String {
    openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "show_type",
        "-in",
        pem_file.to_str().unwrap(),
    ])
}

#[test]
fn a_certificate_openssl_made_renews_through_cfssl() {
    // OpenSSL writes subjects as UTF8String; cfssl (Go) answers with PrintableString.
    // The same name in another string type is no change of identity.
    let (d, built) = build(&worker_spec());
    let r = d.path();
    let tls = Tls::new();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    let work = tempfile::tempdir().unwrap();
    let w = |n: &str| work.path().join(n);
    std::fs::write(w("ca.pem"), encode_pem("CERTIFICATE", &built.ca.0.der)).unwrap();
    std::fs::write(w("ca-key.pem"), built.ca.1.to_pem().unwrap().as_bytes()).unwrap();
    std::fs::write(
        w("ext.cnf"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = clientAuth\n\
         subjectAltName = DNS:worker-1, IP:10.0.0.21\n",
    )
    .unwrap();
    let dir = host(r, "/etc/webhook");
    std::fs::create_dir_all(&dir).unwrap();
    let (crt, key) = (dir.join("openssl.crt"), dir.join("openssl.key"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/O=system:nodes/CN=system:node:worker-1",
        "-keyout",
        &s(&key),
        "-out",
        &s(&w("req.csr")),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&w("req.csr")),
        "-CA",
        &s(&w("ca.pem")),
        "-CAkey",
        &s(&w("ca-key.pem")),
        "-days",
        "365",
        "-extfile",
        &s(&w("ext.cnf")),
        "-out",
        &s(&crt),
    ]);
    let before = identity(&crt);
    assert!(
        subject_types(&crt).contains("UTF8STRING"),
        "{}",
        subject_types(&crt)
    );
    let out = agent(r, &["renew", "/etc/webhook/openssl.crt"])
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("openssl.crt\trenewed\t"), "{all}");
    // The same name, now in Go's encoding, signed by the cluster CA for the new key.
    assert_eq!(identity(&crt), before);
    let types = subject_types(&crt);
    assert!(
        types.contains("PRINTABLESTRING") && !types.contains("UTF8STRING"),
        "{types}"
    );
    verify(&host(r, "/etc/kubernetes/pki/ca.crt"), &crt);
    same_key(&crt, &key);
}

#[test]
fn a_profile_shorter_than_asked_is_accepted_loudly_only_when_it_ends_later() {
    // The kubelet client is a 365-day certificate; the server's kubelet profile gives 91
    // days and no `days` says so.
    let spec = |left| {
        NodeSpec::worker(now()).with("kubelet-client-current.pem", Validity::days(365, left))
    };
    let tls = Tls::new();

    // 10 days left: 91 days from now end later, so it is renewed, with a warning.
    let (d, built) = build(&spec(Duration::days(10)));
    let r = d.path();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    let out = agent(r, &["renew", KUBELET_CLIENT]).output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("\trenewed\t"), "{all}");
    assert!(
        all.contains("WARNING: kubelet-client-current.pem: the certificate lives 91 days but 365 days was asked for"),
        "{all}"
    );
    assert!(all.contains("later than the old certificate"), "{all}");
    assert_eq!(
        lifetime_seconds(r, "kubelet-client-current.pem"),
        91 * 86_400
    );
    verify(
        &host(r, "/etc/kubernetes/pki/ca.crt"),
        &kubelet_client_file(r),
    );

    // 100 days left: 91 days from now end sooner than the old certificate: refused.
    let (d, built) = build(&spec(Duration::days(100)));
    let r = d.path();
    let server = Cfssl::start(&built.ca, &tls, Mode::Https);
    configure(r, &server.url(), &tls, AUTH_KEY, "");
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["renew", KUBELET_CLIENT]),
        &[
            "FAILED",
            "lives 91 days but 365 days was asked for",
            "no later than the old certificate",
        ],
    );
}

#[test]
fn a_tls_handshake_that_hangs_is_reported_as_such() {
    // A server that accepts the connection and never speaks.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let (d, _) = build(&worker_spec());
    let r = d.path();
    let tls = Tls::new();
    configure(r, &format!("https://127.0.0.1:{port}"), &tls, AUTH_KEY, "");
    let toml = host(r, "/etc/cert-rotator/config.toml");
    let conf = std::fs::read_to_string(&toml).unwrap().replacen(
        "retry_delay_ms = 100\n",
        "retry_delay_ms = 100\nconnect_timeout_seconds = 1\nattempts = 2\n",
        1,
    );
    std::fs::write(&toml, conf).unwrap();
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
