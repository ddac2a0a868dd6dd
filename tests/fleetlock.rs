//! The FleetLock client (docs/coordination.md) against a small HTTP server in the test
//! that checks the header and the body and answers 200, 423 or 500: a test of our
//! protocol code, not of airlock or poseidon; and the pass's use of a kept slot.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use cert_rotator::config::coordination::CoordinationSettings;
use cert_rotator::coordination::fleetlock::FleetLock;
use cert_rotator::coordination::{LockError, LockGroup, RestartLock};
use cert_rotator::node::NodeRoot;
use common::etcd::free_port;

// ---------------------------------------------------------------- FleetLock ---

/// A FleetLock server in the test: checks the header and body of every request and
/// answers the status `answer` gives for the path; records the requests.
struct FleetServer {
    url: String,
    seen: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

fn fleet_server(answer: fn(&str) -> (u16, &'static str)) -> FleetServer {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut len = 0;
            let mut header = false;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
                if k.eq_ignore_ascii_case("fleet-lock-protocol") && v.trim() == "true" {
                    header = true;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let (status, reply) = if method != "POST" {
                (405, "")
            } else if !header {
                (
                    400,
                    r#"{"kind":"missing_header","value":"fleet-lock-protocol header missing"}"#,
                )
            } else if json["client_params"]["id"]
                .as_str()
                .is_none_or(str::is_empty)
                || json["client_params"]["group"]
                    .as_str()
                    .is_none_or(str::is_empty)
            {
                (
                    400,
                    r#"{"kind":"decode_error","value":"bad client_params"}"#,
                )
            } else {
                answer(&path)
            };
            log.lock().unwrap().push((path, json));
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    FleetServer { url, seen }
}

fn fleet_client(url: &str, id: &str) -> FleetLock {
    let c = CoordinationSettings {
        fleetlock: Some(cert_rotator::config::coordination::FleetLockSettings {
            url: format!("{url}/"),
            ca_file: None,
        }),
        timeout_seconds: 3,
        ..Default::default()
    };
    FleetLock::new(&NodeRoot::new("/nonexistent"), &c, id).unwrap()
}

#[test]
fn fleetlock_client_speaks_zincatis_protocol() {
    let srv = fleet_server(|_| (200, ""));
    let lock = fleet_client(&srv.url, "cr-3f0e");
    let group = LockGroup {
        name: "control-plane".into(),
        slots: 1,
    };
    lock.release_stale(&group).unwrap();
    let slot = lock.acquire(&group, "kube-apiserver").unwrap();
    slot.release().unwrap();
    let seen = srv.seen.lock().unwrap().clone();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/v1/steady-state", "/v1/pre-reboot", "/v1/steady-state"]
    );
    for (_, body) in &seen {
        assert_eq!(
            body,
            &serde_json::json!({"client_params": {"id": "cr-3f0e", "group": "control-plane"}})
        );
    }
    // A failed verification keeps the slot: no steady-state is sent.
    let slot = lock.acquire(&group, "kube-apiserver").unwrap();
    slot.keep_failed("kube-apiserver: not verified").unwrap();
    assert_eq!(srv.seen.lock().unwrap().last().unwrap().0, "/v1/pre-reboot");
}

#[test]
fn fleetlock_refusals_are_busy_or_failures_with_the_servers_words() {
    // poseidon: 423 lock_held.
    let srv = fleet_server(|p| match p {
        "/v1/pre-reboot" => (
            423,
            r#"{"kind":"lock_held","value":"lock is held by cr-other"}"#,
        ),
        _ => (
            500,
            r#"{"kind":"internal_error","value":"lease update failed"}"#,
        ),
    });
    let lock = fleet_client(&srv.url, "cr-a");
    let group = LockGroup {
        name: "workers".into(),
        slots: 2,
    };
    match lock.acquire(&group, "kubelet") {
        Err(e @ LockError::Busy { .. }) => assert!(e.to_string().contains("cr-other"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("423 is no lock"),
    }
    let e = lock.release_stale(&group).unwrap_err();
    assert!(
        matches!(&e, LockError::Refused { status: 500, .. }),
        "{e:?}"
    );
    let s = e.to_string();
    assert!(
        s.contains("internal_error") && s.contains("lease update failed"),
        "{s}"
    );
    // airlock: 500 failed_lock when every slot is taken is "busy" too.
    let srv = fleet_server(|_| {
        (
            500,
            r#"{"kind":"failed_lock","value":"all 1 semaphore slots currently locked"}"#,
        )
    });
    let e = fleet_client(&srv.url, "cr-a")
        .acquire(&group, "kubelet")
        .err()
        .unwrap();
    assert!(e.is_busy(), "{e}");
    // Nothing there: unreachable.
    let e = fleet_client(&format!("http://127.0.0.1:{}", free_port()), "cr-a")
        .acquire(&group, "kubelet")
        .err()
        .unwrap();
    assert!(matches!(e, LockError::Unreachable { .. }), "{e}");
}

// ------------------------------------------- the policy, on a fake lock and clock ---

/// A FleetLock slot kept after a failed restart for a CA's copies stays held: by the
/// same `run` (which renews due CAs before it opens its record and gives back the slots
/// an earlier run left) and by the next run, until a verified restart of the group gives
/// it back. The FleetLock server is the test's stand-in (no server binary is built).
#[test]
fn a_slot_kept_after_a_failed_ca_restart_stays_held_until_a_verified_restart() {
    use cert_rotator::clock::Clock;
    use cert_rotator::config::Settings;
    use cert_rotator::coordination::{LockState, STATE_FILE};
    use cert_rotator::model::Component;
    use cert_rotator::pass;
    use cert_rotator::write::StateDir;
    use common::fakes::{FakeClock, FakeProber, RecordingServiceManager};
    use common::TestPass;

    let srv = fleet_server(|_| (200, ""));
    let d = common::ca::dying_node();
    let r = d.path();
    let root = NodeRoot::new(r).with_liveness(cert_rotator::node::Liveness::Live);
    let mut s = Settings::default();
    s.run.verify_timeout_seconds = 2;
    s.run.min_restart_gap_seconds = 0;
    s.coordination.id = Some("cp-a".into());
    s.coordination.wait_seconds = 0;
    let lock = fleet_client(&srv.url, "cp-a");
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(common::now());
    let requests = || -> Vec<String> {
        let seen = std::mem::take(&mut *srv.seen.lock().unwrap());
        seen.iter()
            .map(|(p, b)| format!("{p} {}", b["client_params"]["group"].as_str().unwrap()))
            .collect()
    };
    let kept = || {
        let record = state.read_json::<LockState>(STATE_FILE).unwrap();
        record.unwrap_or_default().failed_groups
    };
    let run = |prober: &FakeProber| {
        TestPass::new(&root, &s, &state)
            .live(&services, prober, &clock)
            .lock(Some(&lock))
            .with(|p| pass::run(p, clock.now(), &mut |_| {}))
    };

    // etcd's old process keeps its port: its restart for the renewed CAs never verifies.
    let stuck = FakeProber::new(r, &[]).old_process_on(2379);
    let rep = run(&stuck);
    assert!(!rep.ok(), "{}", rep.summary());
    assert_eq!(rep.ca_renewed().len(), 3, "{}", rep.summary());
    assert!(rep.summary().contains("etcd"), "{}", rep.summary());
    assert_eq!(
        requests(),
        ["/v1/pre-reboot control-plane", "/v1/steady-state workers"],
        "the slot taken for etcd is kept, not given back by the pass's start"
    );
    assert_eq!(kept(), ["control-plane"]);

    // The next run (nothing due now) leaves it held as well.
    clock.advance(time::Duration::hours(1));
    let rep = run(&stuck);
    assert!(rep.ca_renewed().is_empty(), "{}", rep.summary());
    assert_eq!(requests(), ["/v1/steady-state workers"]);
    assert_eq!(kept(), ["control-plane"]);

    // A verified restart of the group (`ca rotate`'s, here etcd once more) gives it back.
    let healthy = FakeProber::new(r, &[]);
    let etcd = Component::parse("etcd").unwrap().expect("a component");
    let done = TestPass::new(&root, &s, &state)
        .live(&services, &healthy, &clock)
        .lock(Some(&lock))
        .with(|p| cert_rotator::authority::restart(p, &[etcd], &[]));
    assert!(done.failed().is_none(), "{done:?}");
    assert_eq!(
        requests(),
        [
            "/v1/pre-reboot control-plane",
            "/v1/steady-state control-plane"
        ]
    );
    assert!(kept().is_empty());
}
