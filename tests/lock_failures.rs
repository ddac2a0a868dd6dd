//! The etcd restart lock when etcd fails it while it is used.
//!
//! What a real etcd does is tested against the real one (common::etcd::Cluster, a
//! 3-member TLS cluster of /usr/bin/etcd): a lease revoked while the apiserver restarts
//! under it, and a healthy member beside a stuck one. What no real etcd gives on
//! purpose is played by a small TLS server in this file, said so where it is used: a
//! member that completes the TLS handshake and then never answers, and keep-alive
//! answers cut short (200, `Content-Length: 60`, 20 bytes, the connection closed) or
//! carrying the gateway's error inside a 200 (`{"error":...}`, as etcd's gateway reports
//! a streaming call's failure, e.g. "no leader" while the pass restarts etcd).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use cert_rotator::coordination::etcd::{EtcdAccess, EtcdLock, PREFIX};
use cert_rotator::coordination::{LockGroup, LockState, RestartLock};
use cert_rotator::node::NodeRoot;
use common::etcd::{agent_node, agent_pass, point_at, serving_cert, settings, Cluster};
use common::fakes::{Interval, TimedProber};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn control_plane() -> LockGroup {
    LockGroup {
        name: "control-plane".into(),
        slots: 1,
    }
}

/// The lock of fixture node `r` over `endpoints`, with the node's etcd client files.
fn lock_over(r: &Path, endpoints: Vec<String>, id: &str, ttl: u64, timeout: u64) -> EtcdLock {
    let a = EtcdAccess {
        endpoints,
        ca: "/etc/kubernetes/pki/etcd/ca.crt".into(),
        cert: "/etc/kubernetes/pki/apiserver-etcd-client.crt".into(),
        key: "/etc/kubernetes/pki/apiserver-etcd-client.key".into(),
        from: "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
    };
    EtcdLock::new(&NodeRoot::new(r), &a, id, ttl, timeout).unwrap()
}

// ------------------------------------------------------- the real etcd ---

/// The lease of the first holder key under our prefix, in the hex etcdctl takes.
fn holder_lease(cluster: &Cluster) -> Option<String> {
    let out = cluster.etcdctl(&["get", "--prefix", PREFIX, "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let lease = v["kvs"].as_array()?.first()?["lease"].as_i64()?;
    Some(format!("{lease:x}"))
}

#[test]
fn a_lease_lost_while_the_apiserver_restarts_is_said_by_the_pass() {
    let a = agent_node(Duration::days(10), None, "https://127.0.0.1:1");
    let cluster = Cluster::start(a.path());
    point_at(a.path(), &cluster.endpoints.join(","));
    let other = lock_over(a.path(), cluster.endpoints.clone(), "cp-other", 3, 3);
    // An earlier pass kept the group's slot after a failure: a verified restart whose
    // slot turns out lost must still clear that record, or the release at the start of
    // every later pass would skip the group.
    write_lock_state(
        a.path(),
        &LockState {
            pending: vec![],
            failed_groups: vec!["control-plane".into()],
        },
    );
    // The apiserver takes 5 s to come back; meanwhile an operator (or etcd, had the
    // keep-alives not come through) ends the lease, and another node takes the slot.
    let log: Arc<Mutex<Vec<Interval>>> = Arc::default();
    let prober = TimedProber::new(a.path(), "cp-a", StdDuration::from_secs(5), log);
    let (rep, taken) = std::thread::scope(|sc| {
        let revoker = sc.spawn(|| {
            let started = Instant::now();
            let lease = loop {
                if let Some(l) = holder_lease(&cluster) {
                    break l;
                }
                assert!(started.elapsed() < StdDuration::from_secs(20), "no holder");
                std::thread::sleep(StdDuration::from_millis(100));
            };
            let out = cluster.etcdctl(&["lease", "revoke", &lease]);
            assert!(out.status.success(), "{out:?}");
            // The slot is free while the apiserver still restarts.
            let slot = other.acquire(&control_plane(), "kube-apiserver").unwrap();
            slot.release().unwrap();
            Instant::now()
        });
        let rep = agent_pass(a.path(), &settings("cp-a"), true, &prober);
        (rep, revoker.join().unwrap())
    });
    assert!(rep.ok(), "{}", rep.summary());
    assert_eq!(rep.restarted().len(), 1, "{}", rep.summary());
    eprintln!("other node held the slot {taken:?}");
    let w = rep.warnings().join("\n");
    assert!(
        w.contains("restart slot of group control-plane not given back")
            && w.contains("lost while held")
            && w.contains("no longer knows lease"),
        "the pass did not say its slot was lost: {w}\n{}",
        rep.summary()
    );
    assert!(cluster.keys().is_empty(), "{:?}", cluster.keys());
    assert!(
        lock_state(a.path()).failed_groups.is_empty(),
        "a lost slot is no longer kept: {:?}",
        lock_state(a.path()).failed_groups
    );
}

#[test]
fn a_stuck_member_does_not_hide_the_healthy_one() {
    let a = agent_node(Duration::days(10), None, "https://127.0.0.1:1");
    let cluster = Cluster::start(a.path());
    // A stand-in: a member that completes TLS and never answers (a real etcd does so
    // only when wedged).
    let stuck = Hostile::start(cluster.dir.path(), |_, _| Answer::Never);
    let lock = lock_over(
        a.path(),
        vec![stuck.url.clone(), cluster.endpoints[0].clone()],
        "cp-a",
        60,
        10,
    );
    let started = Instant::now();
    let slot = lock
        .acquire(&control_plane(), "kube-apiserver")
        .unwrap_or_else(|e| panic!("a healthy member answers: {e}"));
    let took = started.elapsed();
    slot.release().unwrap();
    // Half the 10 s for the stuck member, not all of them.
    assert!(took < StdDuration::from_millis(6500), "{took:?}");
    // From then on the healthy member is asked first.
    let started = Instant::now();
    lock.acquire(&control_plane(), "kube-apiserver")
        .unwrap()
        .release()
        .unwrap();
    assert!(
        started.elapsed() < StdDuration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(cluster.keys().is_empty());
}

// --------------------------------------------- a hostile member (stand-in) ---

/// What the stand-in answers.
enum Answer {
    /// 200 with this JSON body.
    Json(&'static str),
    /// 200 announcing 60 bytes, 20 of them, then the connection closes.
    CutShort,
    /// Nothing, ever (the connection stays open).
    Never,
}

/// A TLS server on loopback serving `server.crt` of a directory ([`serving_cert`]),
/// answering each request by `answer(path, how many keep-alives came before)`, and
/// logging when each keep-alive came. Its threads end with the test process.
struct Hostile {
    url: String,
    keepalives: Arc<Mutex<Vec<Instant>>>,
}

impl Hostile {
    fn start(dir: &Path, answer: fn(&str, usize) -> Answer) -> Hostile {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("server.crt"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let keepalives: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let log = Arc::clone(&keepalives);
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, log) = (Arc::clone(&config), Arc::clone(&log));
                std::thread::spawn(move || serve(tcp, config, log, answer));
            }
        });
        Hostile { url, keepalives }
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    log: Arc<Mutex<Vec<Instant>>>,
    answer: fn(&str, usize) -> Answer,
) {
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    loop {
        let Some(path) = read_request(&mut tls) else {
            return;
        };
        let n = {
            let mut l = log.lock().unwrap();
            if path.ends_with("lease/keepalive") {
                l.push(Instant::now());
            }
            l.len() - usize::from(path.ends_with("lease/keepalive"))
        };
        let head = |len: usize| {
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
        };
        match answer(&path, n) {
            Answer::Json(body) => {
                let _ = tls.write_all(format!("{}{body}", head(body.len())).as_bytes());
            }
            Answer::CutShort => {
                let _ =
                    tls.write_all(format!("{}{{\"result\":{{\"ID\":\"1\",", head(60)).as_bytes());
                let _ = tls.flush();
                return;
            }
            Answer::Never => {
                std::thread::sleep(StdDuration::from_secs(120));
                return;
            }
        }
    }
}

/// The path of the next request on the connection (its body read and dropped).
fn read_request(tls: &mut impl Read) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut buf).ok().filter(|n| *n > 0)?;
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while data.len() < end + len {
        let n = tls.read(&mut buf).ok().filter(|n| *n > 0)?;
        data.extend_from_slice(&buf[..n]);
    }
    head.split(' ').nth(1).map(str::to_string)
}

/// A stand-in etcd member whose first keep-alive answer is cut short and whose second
/// reports "no leader" inside a 200; everything else it grants.
fn flaky_keepalives(path: &str, keepalives_before: usize) -> Answer {
    match path.rsplit("/v3/").next().unwrap_or_default() {
        "lease/grant" => Answer::Json(r#"{"ID":"1","TTL":"3"}"#),
        "kv/txn" => Answer::Json(r#"{"succeeded":true}"#),
        "lease/keepalive" => match keepalives_before {
            0 => Answer::CutShort,
            1 => Answer::Json(
                r#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#,
            ),
            _ => Answer::Json(r#"{"result":{"ID":"1","TTL":"3"}}"#),
        },
        _ => Answer::Json("{}"),
    }
}

#[test]
fn keepalive_answers_cut_short_or_with_an_error_in_a_200_keep_the_lease_renewed() {
    let a = agent_node(Duration::days(10), None, "https://127.0.0.1:1");
    let d = tempfile::tempdir().unwrap();
    for f in ["ca.crt", "ca.key"] {
        std::fs::copy(
            host(a.path(), &format!("/etc/kubernetes/pki/etcd/{f}")),
            d.path().join(f),
        )
        .unwrap();
    }
    serving_cert(d.path());
    // A stand-in: no real etcd answers this way on purpose.
    let member = Hostile::start(d.path(), flaky_keepalives);
    let lock = lock_over(a.path(), vec![member.url.clone()], "cp-a", 3, 3);
    let held = Instant::now();
    let slot = lock.acquire(&control_plane(), "kube-apiserver").unwrap();
    std::thread::sleep(StdDuration::from_secs(7));
    let released = Instant::now();
    slot.release().unwrap();
    let times: Vec<StdDuration> = member
        .keepalives
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(held))
        .collect();
    // Never a TTL (3 s) without a renewal sent, up to the release.
    let mut last = StdDuration::ZERO;
    for t in times.iter().chain([&released.duration_since(held)]) {
        assert!(
            *t - last < StdDuration::from_secs(3),
            "a gap of {:?} in {times:?}",
            *t - last
        );
        last = *t;
    }
    assert!(times.len() >= 5, "{times:?}");
}
