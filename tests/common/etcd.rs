//! A 3-member etcd cluster (/usr/bin/etcd) on loopback with TLS and client certificate
//! authentication, its certificates signed with a fixture node's etcd CA by openssl;
//! for the tests of the etcd restart lock; and the agents of those tests: control-plane
//! fixture nodes pointed at it, running the library's pass with the real etcd lock.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration as StdDuration, Instant};

use cert_rotator::clock::SystemClock;
use cert_rotator::config::coordination::CoordinationSettings;
use cert_rotator::config::Settings;
use cert_rotator::coordination::etcd::{EtcdLock, PREFIX};
use cert_rotator::coordination::RestartLock;
use cert_rotator::node::NodeRoot;
use cert_rotator::pass;
use cert_rotator::report::pass::PassReport;
use cert_rotator::verify::Prober;
use cert_rotator::write::StateDir;

use super::fakes::RecordingServiceManager;
use super::{host, node, now, Duration, NodeSpec, TestPass, Validity};

// ------------------------------------------------------------ etcd cluster ---

/// `server.crt`/`server.key` in `d` for 127.0.0.1 and localhost, signed by the etcd CA
/// `ca.crt`/`ca.key` in `d`: what the test cluster's members serve, and the in-test
/// servers that stand in for hostile members.
pub fn serving_cert(d: &Path) {
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    sh(Command::new("openssl").current_dir(d).args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-subj",
        "/CN=etcd-test",
        "-out",
        "server.csr",
    ]));
    sh(Command::new("openssl").current_dir(d).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "4242",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]));
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three etcd members on loopback, killed when dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Child>,
    pub endpoints: Vec<String>,
    /// etcdctl's client credentials (host paths).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Cluster {
    /// Trusting and serving with the etcd CA of `node` (a fixture root); etcdctl uses
    /// that node's apiserver-etcd-client certificate.
    pub fn start(node: &Path) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = d.join("ca.crt");
        let ca_key = d.join("ca.key");
        std::fs::copy(host(node, "/etc/kubernetes/pki/etcd/ca.crt"), &ca).unwrap();
        std::fs::copy(host(node, "/etc/kubernetes/pki/etcd/ca.key"), &ca_key).unwrap();
        serving_cert(d);
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let client = format!("https://127.0.0.1:{c}");
            let log = std::fs::File::create(d.join(format!("m{i}.log"))).unwrap();
            let child = Command::new("/usr/bin/etcd")
                .current_dir(d)
                .args([
                    &format!("--name=m{i}"),
                    &format!("--data-dir={}", d.join(format!("m{i}")).display()),
                    &format!("--listen-client-urls={client}"),
                    &format!("--advertise-client-urls={client}"),
                    &format!("--listen-peer-urls=http://127.0.0.1:{p}"),
                    &format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
                    &format!("--initial-cluster={}", initial.join(",")),
                    "--initial-cluster-token=cert-rotator-test",
                    "--initial-cluster-state=new",
                    "--cert-file=server.crt",
                    "--key-file=server.key",
                    "--client-cert-auth",
                    "--trusted-ca-file=ca.crt",
                ])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start /usr/bin/etcd");
            members.push(child);
            endpoints.push(client);
        }
        let cluster = Cluster {
            members,
            endpoints,
            ca,
            cert: host(node, "/etc/kubernetes/pki/apiserver-etcd-client.crt"),
            key: host(node, "/etc/kubernetes/pki/apiserver-etcd-client.key"),
            dir,
        };
        let started = Instant::now();
        loop {
            let out = cluster.etcdctl(&["endpoint", "health"]);
            if out.status.success() {
                break;
            }
            assert!(
                started.elapsed() < StdDuration::from_secs(30),
                "the etcd cluster did not become healthy: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(cluster.dir.path().join("m0.log")).unwrap_or_default()
            );
            std::thread::sleep(StdDuration::from_millis(200));
        }
        cluster
    }

    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints.join(",")))
            .arg(format!("--cacert={}", self.ca.display()))
            .arg(format!("--cert={}", self.cert.display()))
            .arg(format!("--key={}", self.key.display()))
            .arg("--dial-timeout=3s")
            .args(args)
            .output()
            .expect("run etcdctl")
    }

    /// The keys under our prefix, as etcdctl lists them.
    pub fn keys(&self) -> Vec<String> {
        let out = self.etcdctl(&["get", "--prefix", "--keys-only", PREFIX]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

// ------------------------------------------------------------------ agents ---

/// A control-plane fixture node whose apiserver certificate is due (or expired), with
/// the etcd CA and etcd client certificate of `pki_from` (the nodes of one cluster
/// share them, as kubeadm's do) and its kube-apiserver manifest pointing at
/// `etcd_servers`.
pub fn agent_node(
    apiserver_left: Duration,
    pki_from: Option<&Path>,
    etcd_servers: &str,
) -> tempfile::TempDir {
    // ECDSA keys: RSA key generation would make the six nodes most of the test's time.
    let spec = NodeSpec {
        key_algorithm: cert_rotator::pki::KeyAlgorithm::EcdsaP256,
        ..NodeSpec::control_plane(now())
    };
    let d = node(&spec.with("apiserver", Validity::days(365, apiserver_left)));
    let r = d.path();
    if let Some(from) = pki_from {
        for f in [
            "etcd/ca.crt",
            "etcd/ca.key",
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
        ] {
            let p = format!("/etc/kubernetes/pki/{f}");
            std::fs::copy(host(from, &p), host(r, &p)).unwrap();
        }
    }
    point_at(r, etcd_servers);
    d
}

pub fn point_at(r: &Path, etcd_servers: &str) {
    let m = host(r, "/etc/kubernetes/manifests/kube-apiserver.yaml");
    let text = std::fs::read_to_string(&m).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("--etcd-servers="))
        .expect("the fixture's apiserver names its etcd")
        .to_string();
    let indent = &line[..line.find('-').unwrap()];
    std::fs::write(
        &m,
        text.replace(&line, &format!("{indent}- --etcd-servers={etcd_servers}")),
    )
    .unwrap();
}

pub fn settings(id: &str) -> Settings {
    let mut s = Settings::default();
    s.run.min_restart_gap_seconds = 0;
    s.run.verify_timeout_seconds = 3;
    s.run.max_restarts_per_pass = 10;
    s.coordination = CoordinationSettings {
        id: Some(id.into()),
        lease_ttl_seconds: 3,
        wait_seconds: 30,
        broken_delay_window_seconds: 2,
        timeout_seconds: 3,
        ..Default::default()
    };
    s
}

/// One pass of the library's sequencer on `r`, with the etcd lock this node's
/// manifests lead to (`None`: no lock) and `prober`.
pub fn agent_pass(r: &Path, s: &Settings, locked: bool, prober: &dyn Prober) -> PassReport {
    let root = NodeRoot::new(r);
    let lock = locked.then(|| {
        EtcdLock::from_node(&root, s, s.coordination.id.as_deref().unwrap()).expect("the etcd lock")
    });
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, s, &state, now());
    let services = RecordingServiceManager::new();
    TestPass::new(&root, s, &state)
        .live(&services, prober, &SystemClock)
        .lock(lock.as_ref().map(|l| l as &dyn RestartLock))
        .execute(&plan)
}
