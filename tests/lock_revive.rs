//! Reviving a dead control-plane node under the restart lock (issue 18, item 5, and the
//! bound of 6d): the lock client presents the credentials the pass renewed, an expired
//! etcd is renewed before the restarts that need it, the per-node spread delay is paid
//! once per pass, and one lock request over many silent members takes one timeout.
//!
//! The revive runs on the FakeClock with a fake lock that answers as a kubeadm node's
//! own etcd does: while etcd serves an expired certificate the TLS handshake fails; once
//! etcd serves its renewed one (it reloads its files on new connections), it refuses a
//! client certificate that has expired; then it grants. That the real etcd lock presents
//! the renewed client certificate is checked against a real etcd below.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use cert_rotator::clock::Clock;
use cert_rotator::config::Settings;
use cert_rotator::coordination::etcd::{EtcdAccess, EtcdLock};
use cert_rotator::coordination::{self, HeldSlot, LockError, LockGroup, RestartLock};
use cert_rotator::node::NodeRoot;
use cert_rotator::pass;
use cert_rotator::report::pass::PassReport;
use cert_rotator::write::StateDir;
use common::etcd::Cluster;
use common::fakes::{FakeClock, FakeLock, FakeProber, RecordingServiceManager};
use common::*;

const APISERVER_YAML: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

/// When the first certificate of a host file ends.
fn not_after(f: &Path) -> OffsetDateTime {
    let text = std::fs::read(f).unwrap();
    let blocks = cert_rotator::pki::parse_pem(&text).unwrap();
    cert_rotator::pki::certificates(&blocks).unwrap()[0].not_after
}

/// The node's own etcd as the lock's backend (see the module docs).
struct NodeEtcd {
    id: String,
    serving: PathBuf,
    client: PathBuf,
    calls: Mutex<Vec<String>>,
}

impl NodeEtcd {
    fn new(r: &Path, id: &str) -> Self {
        NodeEtcd {
            id: id.into(),
            serving: host(r, "/etc/kubernetes/pki/etcd/server.crt"),
            client: host(r, "/etc/kubernetes/pki/apiserver-etcd-client.crt"),
            calls: Mutex::default(),
        }
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

struct Slot<'l>(&'l NodeEtcd, String);

impl HeldSlot for Slot<'_> {
    fn release(self: Box<Self>) -> Result<(), LockError> {
        self.0
            .calls
            .lock()
            .unwrap()
            .push(format!("release {}", self.1));
        Ok(())
    }
    fn keep_failed(self: Box<Self>, _why: &str) -> Result<(), LockError> {
        Ok(())
    }
}

impl RestartLock for NodeEtcd {
    fn backend(&self) -> String {
        "etcd https://127.0.0.1:2379".into()
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn release_stale(&self, _g: &LockGroup) -> Result<(), LockError> {
        Ok(())
    }
    fn acquire(&self, g: &LockGroup, purpose: &str) -> Result<Box<dyn HeldSlot + '_>, LockError> {
        let now = OffsetDateTime::now_utc();
        let refuse = |detail: &str| {
            self.calls
                .lock()
                .unwrap()
                .push(format!("refused {purpose}: {detail}"));
            Err(LockError::Unreachable {
                backend: self.backend(),
                detail: detail.into(),
            })
        };
        if not_after(&self.serving) <= now {
            return refuse("invalid peer certificate: Expired");
        }
        if not_after(&self.client) <= now {
            return refuse("received fatal alert: BadCertificate");
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("acquire {} for {purpose}", g.name));
        Ok(Box::new(Slot(self, g.name.clone())))
    }
}

/// A control-plane node whose certificates all expired 40 days ago.
fn all_expired() -> tempfile::TempDir {
    let mut spec = NodeSpec::control_plane(now());
    spec.leaf_validity = Validity::days(365, -Duration::days(40));
    spec.kubelet_client_validity = Validity::days(365, -Duration::days(40));
    node(&spec.with("kubelet.crt", Validity::days(365, -Duration::days(40))))
}

/// A node id whose spread delay in the packaged 60 s window is above 30 s: the revive
/// must not pay it (it used to, once per broken component).
fn slow_id() -> String {
    let window =
        StdDuration::from_secs(Settings::default().coordination.broken_delay_window_seconds);
    (0..)
        .map(|i| format!("cp-{i}"))
        .find(|id| coordination::broken_delay(id, window) >= StdDuration::from_secs(30))
        .unwrap()
}

fn live_pass(
    r: &Path,
    s: &Settings,
    lock: &dyn RestartLock,
    clock: &FakeClock,
    services: &RecordingServiceManager,
) -> PassReport {
    let root = NodeRoot::new(r);
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, s, &state, clock.now());
    let prober = FakeProber::down_until_restarted(r, &[(6443, APISERVER_YAML)]);
    TestPass::new(&root, s, &state)
        .live(services, &prober, clock)
        .lock(Some(lock))
        .execute(&plan)
}

/// The packaged defaults (lock backend `auto`: the node's etcd), on the FakeClock.
#[test]
fn an_all_expired_control_plane_node_revives_in_under_30_s_under_the_lock() {
    let d = all_expired();
    let r = d.path();
    let mut s = Settings::default();
    s.coordination.id = Some(slow_id());
    let lock = NodeEtcd::new(r, s.coordination.id.as_deref().unwrap());
    let clock = FakeClock::at(now());
    let services = RecordingServiceManager::new();
    let started = Instant::now();
    let rep = live_pass(r, &s, &lock, &clock, &services);
    let slept: StdDuration = clock.slept().iter().sum();
    // For benches/revive.sh (timings are the benchmark's business).
    eprintln!(
        "revive_locked: {} certificates renewed, {} restarts, pass work {} ms, slept {} s on the pass's clock",
        rep.renewed().len(),
        rep.restarted().len(),
        started.elapsed().as_millis(),
        slept.as_secs()
    );
    assert!(rep.ok(), "{}", rep.summary());
    assert_eq!(rep.renewed().len(), 14, "{}", rep.summary());
    assert_eq!(
        services.restarted(),
        ["kubelet.service"],
        "{}",
        rep.summary()
    );
    assert_eq!(rep.restarted().len(), 4, "{}", rep.summary());
    assert!(
        slept < StdDuration::from_secs(30),
        "slept {slept:?}: {:?}\n{:?}",
        clock.slept(),
        lock.calls()
    );
    // Every restart had a real slot: the revived etcd answered the renewed client.
    assert_eq!(
        lock.calls()
            .iter()
            .filter(|c| c.starts_with("release "))
            .count(),
        4,
        "{:?}",
        lock.calls()
    );
    assert!(
        rep.warnings()
            .iter()
            .all(|w| !w.contains("without the restart lock")),
        "{:?}",
        rep.warnings()
    );
}

/// etcd gone for good: every broken component restarts without the lock, after the
/// unreachable grace each, but the node's spread delay only once.
#[test]
fn the_spread_delay_is_paid_once_per_pass() {
    let d = all_expired();
    let r = d.path();
    let mut s = Settings::default();
    s.coordination.id = Some(slow_id());
    let delay = coordination::broken_delay(
        s.coordination.id.as_deref().unwrap(),
        StdDuration::from_secs(s.coordination.broken_delay_window_seconds),
    );
    let lock = FakeLock::new(
        s.coordination.id.as_deref().unwrap(),
        vec![Some(FakeLock::unreachable()); 200],
    );
    let clock = FakeClock::at(now());
    let services = RecordingServiceManager::new();
    let rep = live_pass(r, &s, &lock, &clock, &services);
    assert_eq!(rep.restarted().len(), 4, "{}", rep.summary());
    let slept = clock.slept();
    assert_eq!(
        slept.iter().filter(|d| **d == delay).count(),
        1,
        "the spread delay {delay:?} more than once: {slept:?}"
    );
    assert!(
        slept
            .iter()
            .all(|d| *d == delay || *d == coordination::POLL),
        "{slept:?}"
    );
}

// ------------------------------------------------------------ the real etcd lock ---

/// A fixture control-plane node (ECDSA keys, fast) whose apiserver names `endpoints` as
/// its etcd.
fn node_for(endpoints: &[String], apiserver_etcd_client: Validity) -> tempfile::TempDir {
    let spec = NodeSpec {
        key_algorithm: cert_rotator::pki::KeyAlgorithm::EcdsaP256,
        ..NodeSpec::control_plane(now())
    };
    let d = node(&spec.with("apiserver-etcd-client", apiserver_etcd_client));
    let m = host(d.path(), APISERVER_YAML);
    let text = std::fs::read_to_string(&m).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("--etcd-servers="))
        .unwrap()
        .to_string();
    let indent = &line[..line.find('-').unwrap()];
    std::fs::write(
        &m,
        text.replace(
            &line,
            &format!("{indent}- --etcd-servers={}", endpoints.join(",")),
        ),
    )
    .unwrap();
    d
}

#[test]
fn the_etcd_lock_presents_the_client_certificate_renewed_during_the_pass() {
    let d = node_for(&[], Validity::days(365, Duration::days(100)));
    let cluster = Cluster::start(d.path());
    let d = node_for(&cluster.endpoints, Validity::days(365, Duration::days(100)));
    let r = d.path();
    // Same cluster as the etcd: the etcd CA and client of the node it trusts.
    let pki = |f: &str| host(r, &format!("/etc/kubernetes/pki/{f}"));
    std::fs::copy(&cluster.ca, pki("etcd/ca.crt")).unwrap();
    std::fs::copy(&cluster.cert, pki("apiserver-etcd-client.crt")).unwrap();
    std::fs::copy(&cluster.key, pki("apiserver-etcd-client.key")).unwrap();
    let good = (
        std::fs::read(pki("apiserver-etcd-client.crt")).unwrap(),
        std::fs::read(pki("apiserver-etcd-client.key")).unwrap(),
    );
    // At the start of the pass the node's client certificate is one etcd refuses (an
    // expired one in the field; here one of a CA etcd does not trust, refused alike).
    let other = node_for(&[], Validity::days(365, Duration::days(100)));
    for f in ["apiserver-etcd-client.crt", "apiserver-etcd-client.key"] {
        std::fs::copy(
            host(other.path(), &format!("/etc/kubernetes/pki/{f}")),
            pki(f),
        )
        .unwrap();
    }
    let root = NodeRoot::new(r);
    let mut s = Settings::default();
    s.coordination.timeout_seconds = 3;
    let lock = EtcdLock::from_node(&root, &s, "cp-renewed").expect("the etcd lock");
    let group = LockGroup {
        name: "control-plane".into(),
        slots: 1,
    };
    let e = lock
        .acquire(&group, "kube-apiserver")
        .err()
        .expect("a client etcd does not accept is refused");
    assert!(matches!(e, LockError::Unreachable { .. }), "{e}");
    // The pass renews it (written as the pass writes: a new file renamed over).
    for (f, bytes) in [
        ("apiserver-etcd-client.crt", &good.0),
        ("apiserver-etcd-client.key", &good.1),
    ] {
        let tmp = pki(&format!(".{f}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, pki(f)).unwrap();
    }
    // The same lock, as the pass holds it: it now presents the renewed certificate.
    let slot = lock
        .acquire(&group, "kube-apiserver")
        .unwrap_or_else(|e| panic!("the renewed client certificate is not used: {e}"));
    slot.release().unwrap();
}

/// Listeners that accept connections and never answer.
fn silent_members(n: usize) -> (Vec<std::net::TcpListener>, Vec<String>) {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let urls = ls
        .iter()
        .map(|l| format!("https://127.0.0.1:{}", l.local_addr().unwrap().port()))
        .collect();
    (ls, urls)
}

#[test]
fn one_lock_request_over_five_silent_members_takes_one_timeout() {
    let (_listeners, endpoints) = silent_members(5);
    let d = node_for(&endpoints, Validity::days(365, Duration::days(100)));
    let r = d.path();
    let root = NodeRoot::new(r);
    let a = EtcdAccess {
        endpoints,
        ca: "/etc/kubernetes/pki/etcd/ca.crt".into(),
        cert: "/etc/kubernetes/pki/apiserver-etcd-client.crt".into(),
        key: "/etc/kubernetes/pki/apiserver-etcd-client.key".into(),
        from: APISERVER_YAML.into(),
    };
    let lock = EtcdLock::new(&root, &a, "cp-silent", 60, 2).unwrap();
    let group = LockGroup {
        name: "control-plane".into(),
        slots: 1,
    };
    let started = Instant::now();
    let e = lock.acquire(&group, "kube-apiserver").err().unwrap();
    let took = started.elapsed();
    assert!(matches!(e, LockError::Unreachable { .. }), "{e}");
    assert!(
        took < StdDuration::from_millis(3500),
        "five silent members took {took:?} for a 2 s timeout: {e}"
    );
    assert!(e.to_string().contains("not tried"), "{e}");
    let started = Instant::now();
    let _ = lock.release_stale(&group);
    assert!(started.elapsed() < StdDuration::from_millis(3500));
}
