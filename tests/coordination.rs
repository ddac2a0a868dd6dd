//! The cross-node restart lock for real: a 3-member etcd cluster (/usr/bin/etcd) on
//! loopback with TLS and client certificate authentication, its certificates signed
//! with a fixture node's etcd CA by openssl, and agents that run the library's
//! `pass::execute` on fixture nodes of their own, each with the real etcd lock in its
//! edges. Restarts are static pod manifest writes; the prober (a fake: there is no
//! kube-apiserver) serves what is on disk and takes a second for its first answer, as a
//! restarting apiserver would, and logs when, so overlaps are visible. Keys are read
//! back with etcdctl.
//!
//! The FleetLock client is tested in tests/fleetlock.rs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use cert_rotator::clock::Clock;
use cert_rotator::config::Settings;
use cert_rotator::coordination::etcd::{EtcdLock, PREFIX};
use cert_rotator::coordination::{self, LockError, LockGroup, RestartLock};
use cert_rotator::node::NodeRoot;
use cert_rotator::pass;
use cert_rotator::report::pass::PassReport;
use cert_rotator::write::StateDir;
use common::etcd::{agent_node, agent_pass, free_port, point_at, settings, Cluster};
use common::fakes::{
    FakeClock, FakeLock, FakeProber, Interval, RecordingServiceManager, TimedProber,
};
use common::*;

// ------------------------------------------------------------------ agents ---

fn manifest(r: &Path) -> String {
    std::fs::read_to_string(host(r, "/etc/kubernetes/manifests/kube-apiserver.yaml")).unwrap()
}

/// Three agents at once, each a thread running a pass on its own node.
fn three_at_once(nodes: &[tempfile::TempDir; 3], locked: bool) -> (Vec<PassReport>, Vec<Interval>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let reports = std::thread::scope(|sc| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let log = log.clone();
                sc.spawn(move || {
                    let id = format!("cp-{i}");
                    let prober = TimedProber::new(d.path(), &id, StdDuration::from_secs(1), log);
                    agent_pass(d.path(), &settings(&id), locked, &prober)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    (reports, TimedProber::intervals(&log))
}

fn overlaps(iv: &[Interval]) -> bool {
    iv.windows(2).any(|w| w[1].start < w[0].end)
}

#[test]
fn three_control_plane_nodes_restart_their_apiservers_one_at_a_time() {
    let t0 = Instant::now();
    let a = agent_node(Duration::days(10), None, "https://127.0.0.1:1");
    eprintln!("node: {:?}", t0.elapsed());
    let cluster = Cluster::start(a.path());
    eprintln!("cluster: {:?}", t0.elapsed());
    let e = &cluster.endpoints;
    // Each node's apiserver talks to its own member first, as stacked etcd does.
    point_at(a.path(), &format!("{},{},{}", e[0], e[1], e[2]));
    let b = agent_node(
        Duration::days(10),
        Some(a.path()),
        &format!("{},{},{}", e[1], e[2], e[0]),
    );
    let c = agent_node(
        Duration::days(10),
        Some(a.path()),
        &format!("{},{},{}", e[2], e[0], e[1]),
    );
    let nodes = [a, b, c];

    let t0 = Instant::now();
    let (reports, iv) = three_at_once(&nodes, true);
    eprintln!("three locked passes: {:?}: {iv:?}", t0.elapsed());
    for r in &reports {
        assert!(r.ok(), "{}", r.summary());
        assert_eq!(r.restarted().len(), 1, "{}", r.summary());
        assert!(r.awaiting_lock().is_empty(), "{}", r.summary());
    }
    assert_eq!(iv.len(), 3, "{iv:?}");
    assert!(
        !overlaps(&iv),
        "restarts overlapped under the lock: {iv:#?}"
    );
    // Every slot given back; nothing under /registry or elsewhere was written.
    assert!(cluster.keys().is_empty(), "{:?}", cluster.keys());
    for n in &nodes {
        assert!(lock_state(n.path()).pending.is_empty());
    }

    // The same three without the lock do overlap: the check above can fail.
    let fresh: [tempfile::TempDir; 3] =
        std::array::from_fn(|_| agent_node(Duration::days(10), None, "https://127.0.0.1:1"));
    let (reports, iv) = three_at_once(&fresh, false);
    assert!(reports.iter().all(|r| r.restarted().len() == 1));
    assert!(
        overlaps(&iv),
        "without the lock the restarts should overlap: {iv:#?}"
    );
}

/// The child of [`a_killed_holder_frees_its_slot_after_the_ttl`]: takes a slot and
/// holds it (keeping its lease alive) until killed.
#[test]
#[ignore = "run by a_killed_holder_frees_its_slot_after_the_ttl as a child process"]
fn lock_holder_child() {
    let Ok(r) = std::env::var("CR_HOLDER_ROOT") else {
        return;
    };
    let root = NodeRoot::new(&r);
    let s = settings("holder");
    let lock = EtcdLock::from_node(&root, &s, "holder").unwrap();
    let slot = lock
        .acquire(
            &LockGroup {
                name: "kill-test".into(),
                slots: 1,
            },
            "test",
        )
        .unwrap();
    println!("HELD");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(StdDuration::from_secs(120));
    drop(slot);
}

#[test]
fn a_killed_holder_frees_its_slot_after_the_ttl() {
    let a = agent_node(Duration::days(10), None, "https://127.0.0.1:1");
    let cluster = Cluster::start(a.path());
    point_at(a.path(), &cluster.endpoints.join(","));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "lock_holder_child", "--nocapture"])
        .env("CR_HOLDER_ROOT", a.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let held = lines.any(|l| l.map(|l| l.trim() == "HELD").unwrap_or(false));
    if !held {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("the holder child did not take the slot: {err}");
    }
    let keys = cluster.keys();
    assert_eq!(keys, [format!("{PREFIX}/kill-test/holders/0")], "{keys:?}");
    let group = LockGroup {
        name: "kill-test".into(),
        slots: 1,
    };
    let root = NodeRoot::new(a.path());
    let other = EtcdLock::from_node(&root, &settings("other"), "other").unwrap();
    // Alive and renewing: busy, well past one TTL.
    std::thread::sleep(StdDuration::from_secs(4));
    match other.acquire(&group, "test") {
        Err(LockError::Busy { holders, .. }) => assert_eq!(holders, ["holder"]),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("took a slot its live holder keeps alive"),
    }
    child.kill().unwrap(); // SIGKILL: no release, no revoke
    child.wait().unwrap();
    let killed = Instant::now();
    let slot = loop {
        match other.acquire(&group, "test") {
            Ok(slot) => break slot,
            Err(LockError::Busy { .. }) => {
                assert!(
                    killed.elapsed() < StdDuration::from_secs(3 + 3),
                    "the dead holder's slot did not expire"
                );
                std::thread::sleep(StdDuration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    };
    eprintln!("slot free {:?} after the kill (TTL 3 s)", killed.elapsed());
    assert!(
        killed.elapsed() > StdDuration::from_millis(500),
        "freed before the TTL"
    );
    slot.release().unwrap();
    assert!(cluster.keys().is_empty());
}

#[test]
fn unreachable_etcd_defers_a_healthy_restart_and_lets_an_expired_node_proceed() {
    let dead = format!("https://127.0.0.1:{}", free_port());
    // Healthy: renewed, not restarted, said, owed.
    let h = agent_node(Duration::days(10), None, &dead);
    let r = h.path();
    let before = manifest(r);
    let prober = restarting_apiserver(r);
    let rep = agent_pass(r, &settings("healthy"), true, &prober);
    assert!(rep.ok(), "{}", rep.summary());
    assert_eq!(rep.renewed().len(), 1);
    assert!(rep.restarted().is_empty(), "{}", rep.summary());
    assert_eq!(manifest(r), before, "restarted without the lock");
    let why = rep.awaiting_lock().join("\n");
    assert!(
        why.contains("kube-apiserver") && why.contains("unreachable"),
        "{why}"
    );
    assert!(
        rep.summary()
            .contains("restart waiting for the restart lock"),
        "{}",
        rep.summary()
    );
    let owed = lock_state(r).pending;
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].component, "kube-apiserver");

    // Expired: restarts without the lock after its delay, with a warning.
    let x = agent_node(-Duration::days(1), None, &dead);
    let prober = restarting_apiserver(x.path());
    let delay = coordination::broken_delay("expired", StdDuration::from_secs(2));
    let started = Instant::now();
    let rep = agent_pass(x.path(), &settings("expired"), true, &prober);
    assert!(rep.ok(), "{}", rep.summary());
    assert_eq!(rep.restarted().len(), 1, "{}", rep.summary());
    assert!(
        started.elapsed() >= delay,
        "{:?} < {delay:?}",
        started.elapsed()
    );
    let w = rep.warnings().join("\n");
    assert!(
        w.contains("without the restart lock") && w.contains("expired"),
        "{w}"
    );
    assert!(lock_state(x.path()).pending.is_empty());

    // etcd back: the next pass restarts the owed apiserver although nothing is due.
    let cluster = Cluster::start(r);
    point_at(r, &cluster.endpoints.join(","));
    let rep = agent_pass(r, &settings("healthy"), true, &prober_for(r));
    assert!(rep.ok(), "{}", rep.summary());
    assert!(rep.renewed().is_empty(), "{}", rep.summary());
    assert_eq!(rep.restarted().len(), 1, "{}", rep.summary());
    assert!(manifest(r).contains("cert-rotator.k8s.io/certs-hash"));
    assert!(lock_state(r).pending.is_empty());
    assert!(cluster.keys().is_empty(), "{:?}", cluster.keys());
}

fn prober_for(r: &Path) -> FakeProber {
    restarting_apiserver(r)
}

#[test]
fn a_failed_verification_keeps_the_group_stopped_until_that_node_succeeds() {
    let f = agent_node(Duration::days(10), None, "https://127.0.0.1:1");
    let cluster = Cluster::start(f.path());
    let servers = cluster.endpoints.join(",");
    point_at(f.path(), &servers);
    let g = agent_node(Duration::days(10), Some(f.path()), &servers);

    // f's apiserver keeps serving its old certificate: rolled back, group stopped.
    let stale = FakeProber::new(f.path(), &[(6443, "/etc/kubernetes/pki/apiserver.crt")]);
    let rep = agent_pass(f.path(), &settings("node-f"), true, &stale);
    assert!(!rep.ok());
    assert_eq!(rep.rolled_back().len(), 1, "{}", rep.summary());
    assert_eq!(rep.rollouts_stopped().len(), 1, "{}", rep.summary());
    let failed = format!("{PREFIX}/control-plane/failed/node-f");
    assert_eq!(cluster.keys(), std::slice::from_ref(&failed));
    let out = cluster.etcdctl(&["get", "--print-value-only", &failed]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], "node-f");
    assert!(v["why"].as_str().unwrap().contains("kube-apiserver"), "{v}");

    // Another node's healthy apiserver waits: no wait for a stopped group, said why.
    let rep = agent_pass(g.path(), &settings("node-g"), true, &prober_for(g.path()));
    assert!(rep.restarted().is_empty(), "{}", rep.summary());
    let why = rep.awaiting_lock().join("\n");
    assert!(why.contains("stopped") && why.contains("node-f"), "{why}");

    // f again, reloading this time: its own mark does not block it, and its success
    // clears the mark.
    let rep = agent_pass(f.path(), &settings("node-f"), true, &prober_for(f.path()));
    assert!(rep.ok(), "{}", rep.summary());
    assert_eq!(rep.restarted().len(), 1);
    assert!(cluster.keys().is_empty(), "{:?}", cluster.keys());
    assert!(lock_state(f.path()).failed_groups.is_empty());

    // The group open again, g's owed restart goes through.
    let rep = agent_pass(g.path(), &settings("node-g"), true, &prober_for(g.path()));
    assert!(rep.ok(), "{}", rep.summary());
    assert_eq!(rep.restarted().len(), 1, "{}", rep.summary());
    assert!(lock_state(g.path()).pending.is_empty());

    // An operator's `etcdctl del` (docs/coordination.md) clears a mark as well.
    let out = cluster.etcdctl(&[
        "put",
        &format!("{PREFIX}/control-plane/failed/node-x"),
        "{}",
    ]);
    assert!(out.status.success());
    let lock =
        EtcdLock::from_node(&NodeRoot::new(g.path()), &settings("node-g"), "node-g").unwrap();
    let group = LockGroup {
        name: "control-plane".into(),
        slots: 1,
    };
    assert!(matches!(
        lock.acquire(&group, "t"),
        Err(LockError::Stopped { .. })
    ));
    let out = cluster.etcdctl(&["del", &format!("{PREFIX}/control-plane/failed/node-x")]);
    assert!(out.status.success());
    lock.acquire(&group, "t").unwrap().release().unwrap();
}

/// A pass on a fake clock with a scripted lock: the waits of the policy cost no time.
fn fake_pass(r: &Path, s: &Settings, lock: &FakeLock, clock: &FakeClock) -> PassReport {
    let root = NodeRoot::new(r);
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, s, &state, clock.now());
    let services = RecordingServiceManager::new();
    let prober = restarting_apiserver(r);
    TestPass::new(&root, s, &state)
        .live(&services, &prober, clock)
        .lock(Some(lock))
        .execute(&plan)
}

/// The lock policy's sleeps. The pass also gives a component that reloads every renewed
/// file by itself 5 s to do so (probed every 500 ms, docs/reloads.md), once per group;
/// this stand-in apiserver never does, so those ten short sleeps come first.
fn policy_sleeps(clock: &FakeClock) -> Vec<std::time::Duration> {
    let all = clock.slept();
    let grace = all
        .iter()
        .take_while(|d| **d == std::time::Duration::from_millis(500))
        .count();
    assert_eq!(grace, 10, "one reload grace of 5 s: {all:?}");
    all[grace..].to_vec()
}

#[test]
fn a_busy_group_is_waited_for_on_the_pass_clock_then_released_after_verify() {
    let d = agent_node(Duration::days(10), None, "https://127.0.0.1:1");
    let clock = FakeClock::at(now());
    let busy = || Some(FakeLock::busy("control-plane"));
    let lock = FakeLock::new("cp-a", vec![busy(), busy(), busy()]);
    let rep = fake_pass(d.path(), &settings("cp-a"), &lock, &clock);
    assert!(rep.ok(), "{}", rep.summary());
    assert_eq!(rep.restarted().len(), 1);
    assert_eq!(policy_sleeps(&clock), [coordination::POLL; 3]);
    assert_eq!(
        lock.calls(),
        [
            "release_stale control-plane",
            "release_stale workers",
            "acquire control-plane",
            "acquire control-plane",
            "acquire control-plane",
            "acquire control-plane",
            "release control-plane",
        ]
    );
}

#[test]
fn busy_past_the_wait_defers_and_an_expired_component_goes_after_its_delay() {
    let d = agent_node(Duration::days(10), None, "https://127.0.0.1:1");
    let mut s = settings("cp-a");
    s.coordination.wait_seconds = 5;
    let clock = FakeClock::at(now());
    let lock = FakeLock::new(
        "cp-a",
        (0..10)
            .map(|_| Some(FakeLock::busy("control-plane")))
            .collect(),
    );
    let rep = fake_pass(d.path(), &s, &lock, &clock);
    assert!(rep.restarted().is_empty(), "{}", rep.summary());
    assert_eq!(
        policy_sleeps(&clock),
        [coordination::POLL; 2],
        "waited about wait_seconds"
    );
    assert!(
        rep.awaiting_lock()[0].contains("cp-other"),
        "{:?}",
        rep.awaiting_lock()
    );
    assert_eq!(lock_state(d.path()).pending.len(), 1);

    // Expired and the backend unreachable: the per-node delay on the pass clock, one
    // more try, then the restart without the lock.
    let x = agent_node(-Duration::days(1), None, "https://127.0.0.1:1");
    let clock = FakeClock::at(now());
    // Unreachable throughout: retried every POLL for the grace (bounded by the wait),
    // then the per-node delay, one more try, then the restart without the lock.
    let lock = FakeLock::new("cp-x", vec![Some(FakeLock::unreachable()); 20]);
    let rep = fake_pass(x.path(), &settings("cp-x"), &lock, &clock);
    assert_eq!(rep.restarted().len(), 1, "{}", rep.summary());
    let slept = policy_sleeps(&clock);
    let (delay, retries) = slept.split_last().expect("slept");
    assert_eq!(
        *delay,
        coordination::broken_delay("cp-x", StdDuration::from_secs(2))
    );
    assert!(!retries.is_empty(), "{slept:?}");
    assert!(
        retries.iter().all(|d| *d == coordination::POLL),
        "{slept:?}"
    );
    assert!(
        retries.iter().sum::<StdDuration>() <= coordination::UNREACHABLE_GRACE,
        "{slept:?}"
    );
    assert!(
        !lock.calls().iter().any(|c| c.starts_with("release ")),
        "{:?}",
        lock.calls()
    );
    assert!(
        rep.warnings()
            .iter()
            .any(|w| w.contains("without the restart lock")),
        "{:?}",
        rep.warnings()
    );
}

/// An apiserver that serves its old certificate until its static pod restarts (so the
/// pass's probe first does not spare the restart these tests are about).
fn restarting_apiserver(r: &Path) -> FakeProber {
    FakeProber::until_restarted(
        r,
        &[(
            6443,
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
        )],
    )
}
