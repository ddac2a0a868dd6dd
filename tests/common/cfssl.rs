//! The cfssl side of the remote-CA suites: a real `cfssl serve` on loopback (HTTPS,
//! mutual TLS or plain HTTP) with a CA of the test's making, and what real openssl
//! says about the certificates it signs.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use cert_rotator::fixture::BuiltNode;
use cert_rotator::pki::x509::{CertTemplate, Issuer, EKU_CLIENT, EKU_SERVER, OID_CN, OID_O};
use cert_rotator::pki::{encode_pem, CertFacts, KeyAlgorithm, KeyEncoding, PrivateKey};
use x509_cert::ext::pkix::KeyUsages;

use super::*;

pub const AUTH_KEY: &str = "00112233445566778899aabbccddeeff";
pub const WRONG_KEY: &str = "ffeeddccbbaa99887766554433221100";

/// A CA (certificate, key) as the fixture makes them.
pub type Ca = (CertFacts, PrivateKey);

/// The TLS side of the test servers: a CA of its own and a server certificate for
/// 127.0.0.1, plus a client certificate for mutual TLS.
pub struct Tls {
    pub dir: tempfile::TempDir,
}

impl Tls {
    pub fn new() -> Tls {
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

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn make_ca(cn: &str) -> Ca {
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

pub fn issuer(ca: &Ca) -> Issuer<'_> {
    Issuer {
        cert: &ca.0,
        key: &ca.1,
    }
}

/// How a test server is started.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Https,
    MutualTls,
    Http,
}

/// A running `cfssl serve` on a free loopback port; killed when dropped.
pub struct Cfssl {
    pub child: Option<Child>,
    pub port: u16,
    pub mode: Mode,
    /// CA, key and config of the server, removed with it.
    pub _dir: tempfile::TempDir,
}

impl Cfssl {
    /// Starts cfssl with this CA, an auth key, a "kubelet" profile of 91 days and a
    /// default profile of 365 days (both server and client auth).
    pub fn start(ca: &Ca, tls: &Tls, mode: Mode) -> Cfssl {
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

    pub fn url(&self) -> String {
        let scheme = if self.mode == Mode::Http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
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

/// A stand-in for a hung server, which no real cfssl can be made to be: a TCP listener
/// on loopback that accepts connections and never speaks. Its port and the count of
/// connections it accepted.
pub fn silent_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (port, accepted)
}

/// [`configure`]d for a server that never answers: 1 s to connect, 2 attempts.
pub fn configure_impatient(root: &Path, url: &str, tls: &Tls) {
    configure(root, url, tls, AUTH_KEY, "");
    let toml = host(root, "/etc/cert-rotator/config.toml");
    let conf = std::fs::read_to_string(&toml).unwrap().replacen(
        "retry_delay_ms = 100\n",
        "retry_delay_ms = 100\nconnect_timeout_seconds = 1\nattempts = 2\n",
        1,
    );
    std::fs::write(&toml, conf).unwrap();
}

/// Writes the agent's config (and the auth key, 0600) under the node root.
pub fn configure(root: &Path, url: &str, tls: &Tls, auth_key: &str, extra: &str) {
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

pub fn build(spec: &NodeSpec) -> (tempfile::TempDir, BuiltNode) {
    let d = tempfile::tempdir().unwrap();
    let b = fixture::build(d.path(), spec).unwrap();
    (d, b)
}

/// A worker whose kubelet client certificate is a 91-day one with 10 days left.
pub fn worker_spec() -> NodeSpec {
    NodeSpec::worker(now()).with(
        "kubelet-client-current.pem",
        Validity::days(91, Duration::days(10)),
    )
}

/// What must not change: `openssl x509 -noout -subject -ext subjectAltName`.
pub fn identity(pem_file: &Path) -> String {
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

pub fn verify(ca: &Path, pem_file: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        pem_file.to_str().unwrap(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
}

pub fn same_key(cert_file: &Path, key_file: &Path) {
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

pub fn lifetime_seconds(root: &Path, name: &str) -> i64 {
    let (v, _) = status_json(root);
    cert(&v, name)["lifetime_seconds"].as_i64().unwrap()
}

pub fn certificates_in(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// The node tree except the agent's own state (lock, journal, backups).
pub const KUBELET_CLIENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
pub const KUBELET_CRT: &str = "/var/lib/kubelet/pki/kubelet.crt";

pub fn admin_identity(r: &Path) -> String {
    let text = std::fs::read_to_string(host(r, "/etc/kubernetes/admin.conf")).unwrap();
    let f = r.join("admin-cert.pem");
    write_embedded_client_cert(&text, &f);
    let id = identity(&f);
    std::fs::remove_file(&f).unwrap();
    id
}
