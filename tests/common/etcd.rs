//! A 3-member etcd cluster (/usr/bin/etcd) on loopback with TLS and client certificate
//! authentication, its certificates signed with a fixture node's etcd CA by openssl;
//! for the tests of the etcd restart lock.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration as StdDuration, Instant};

use cert_rotator::coordination::etcd::PREFIX;
use std::path::Path;

use super::host;

// ------------------------------------------------------------ etcd cluster ---

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
