//! The gateway's policy and the keep-alive thread on a fake transport: answers as the
//! real etcd 3.4 gateway gives them (copied from its replies), and the hostile ones no
//! real etcd gives on purpose (a 200 cut short, a member that never answers). The wire
//! itself is tested against a real etcd and an in-test TLS server in
//! tests/lock_failures.rs.

use std::sync::{Arc, Mutex};

use super::super::keeper::{Keeper, Timing};
use super::*;

/// What the fake answers `url` on its `n`th call (from 0).
type Script = dyn Fn(usize, &str) -> Result<Reply, String> + Send + Sync;

/// A transport that answers from a script and records every call: (url, timeout).
struct Fake {
    calls: Arc<Mutex<Vec<(String, Duration)>>>,
    script: Box<Script>,
}

impl Transport for Fake {
    fn post(&self, url: &str, _body: &str, timeout: Duration) -> Result<Reply, String> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            c.push((url.to_string(), timeout));
            c.len() - 1
        };
        (self.script)(n, url)
    }
}

type Calls = Arc<Mutex<Vec<(String, Duration)>>>;

fn gateway(
    endpoints: &[&str],
    timeout: Duration,
    script: impl Fn(usize, &str) -> Result<Reply, String> + Send + Sync + 'static,
) -> (Arc<Gateway>, Calls) {
    let calls: Calls = Arc::default();
    let gw = Gateway {
        transport: Box::new(Fake {
            calls: Arc::clone(&calls),
            script: Box::new(script),
        }),
        timeout,
        endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        preferred: AtomicUsize::new(0),
    };
    (Arc::new(gw), calls)
}

fn ok(body: &str) -> Result<Reply, String> {
    Ok(Reply {
        status: 200,
        body: Ok(body.to_string()),
    })
}

const HEADER: &str = r#""header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"1","raft_term":"2"}"#;

fn renewed(ttl: u32) -> String {
    format!(r#"{{"result":{{{HEADER},"ID":"7587899412701485575","TTL":"{ttl}"}}}}"#)
}

/// etcd 3.4's answer to a keep-alive of a lease it no longer knows (revoked, expired).
fn gone() -> String {
    format!(r#"{{"result":{{{HEADER},"ID":"7587899412701485575"}}}}"#)
}

/// The gateway's report of a streaming call's error, inside a 200.
const NO_LEADER: &str = r#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#;

/// ureq's error for a body shorter than its Content-Length.
fn truncated() -> Result<Reply, String> {
    Ok(Reply {
        status: 200,
        body: Err("io: Unexpected EOF".into()),
    })
}

#[test]
fn a_200_that_cannot_be_read_is_not_a_json_object_or_carries_an_error_is_no_answer() {
    let e = answer(truncated().unwrap()).unwrap_err();
    assert!(e.contains("could not be read") && e.contains("EOF"), "{e}");
    let e = answer(ok(r#"{"result":{"ID":"1","#).unwrap()).unwrap_err();
    assert!(e.contains("not a JSON object"), "{e}");
    // etcd 3.7.4 answers a keep-alive it cannot parse with a 200 and no body at all.
    for body in ["", "null", "[]", "\"x\""] {
        assert!(answer(ok(body).unwrap()).is_err(), "{body:?}");
    }
    let e = answer(ok(NO_LEADER).unwrap()).unwrap_err();
    assert!(e.contains("etcdserver: no leader"), "{e}");
    let e = answer(Reply {
        status: 400,
        body: Ok(r#"{"error":"bad","message":"bad request","code":3}"#.into()),
    })
    .unwrap_err();
    assert_eq!(e, "HTTP 400: bad");
    // etcd 3.7.4 without a leader: a keep-alive, then a range.
    for (body, said) in [
        (
            r#"{"error":{"code":14,"message":"etcdserver: no leader"}}"#,
            "etcdserver: no leader",
        ),
        (
            r#"{"code":14, "message":"etcdserver: request timed out"}"#,
            "etcdserver: request timed out",
        ),
    ] {
        let e = answer(Reply {
            status: 503,
            body: Ok(body.into()),
        })
        .unwrap_err();
        assert_eq!(e, format!("HTTP 503: {said}"));
    }
    let v = answer(ok(&renewed(5)).unwrap()).unwrap();
    assert_eq!(renewal(&v), Ok(Renewal::Renewed(Duration::from_secs(5))));
}

#[test]
fn only_a_keepalive_result_without_a_ttl_says_the_lease_is_gone() {
    let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(renewal(&v(&gone())), Ok(Renewal::Gone));
    assert_eq!(
        renewal(&v(r#"{"result":{"ID":"1","TTL":"0"}}"#)),
        Ok(Renewal::Gone)
    );
    assert_eq!(
        renewal(&v(r#"{"result":{"ID":"1","TTL":3}}"#)),
        Ok(Renewal::Renewed(Duration::from_secs(3)))
    );
    // Says nothing of the lease: an error, retried, never "gone".
    for s in [r#"{}"#, r#"{"result":null}"#, r#"{"result":{"TTL":"x"}}"#] {
        assert!(renewal(&v(s)).is_err(), "{s}");
    }
}

#[test]
fn a_stuck_member_gets_its_share_and_the_next_call_starts_past_it() {
    let stuck = "https://10.0.0.1:2379";
    let good = "https://10.0.0.2:2379";
    let (gw, calls) = gateway(&[stuck, good], Duration::from_secs(10), move |_, url| {
        if url.starts_with(stuck) {
            Err("timeout: global".into())
        } else {
            ok(r#"{"kvs":[]}"#)
        }
    });
    gw.range_prefix("/a/", gw.deadline()).unwrap();
    let c = calls.lock().unwrap().clone();
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c[0].0.starts_with(stuck));
    // Its half of the 10 s, not all of them.
    assert!(
        c[0].1 <= Duration::from_secs(5) && c[0].1 > Duration::from_millis(4900),
        "{c:?}"
    );
    assert!(c[1].1 > Duration::from_millis(4900), "{c:?}");
    // The healthy member is asked first from now on.
    gw.range_prefix("/a/", gw.deadline()).unwrap();
    let c = calls.lock().unwrap().clone();
    assert_eq!(c.len(), 3);
    assert!(c[2].0.starts_with(good), "{c:?}");
}

#[test]
fn a_failed_member_is_not_asked_first_next_time_and_shares_have_a_floor() {
    let eps = ["https://a:1", "https://b:1", "https://c:1"];
    // a fails, b answers with an error in a 200, c answers.
    let (gw, calls) = gateway(&eps, Duration::from_secs(3), |_, url| match url {
        u if u.starts_with("https://a") => Err("connection refused".into()),
        u if u.starts_with("https://b") => ok(NO_LEADER),
        _ => ok("{}"),
    });
    gw.call_until("kv/range", &json!({}), gw.deadline())
        .unwrap();
    let c = calls.lock().unwrap().clone();
    // 3 s over 3 members: each at least 2 s (or what is left).
    assert!(c[0].1 > Duration::from_millis(1900), "{c:?}");
    assert_eq!(c.len(), 3);
    assert_eq!(gw.preferred.load(Ordering::Relaxed), 2);
    // Every member failing: the error names each, and the time left for none.
    let (gw, _) = gateway(&eps, Duration::from_secs(1), |_, _| truncated());
    let e = gw
        .call_until("kv/range", &json!({}), gw.deadline())
        .unwrap_err();
    assert!(matches!(e, LockError::Unreachable { .. }), "{e}");
    assert_eq!(e.to_string().matches("could not be read").count(), 3, "{e}");
}

/// A short lease for the keep-alive tests: 900 ms, renewed every 300 ms.
fn short() -> Timing {
    Timing {
        ttl: Duration::from_millis(900),
        every: Duration::from_millis(300),
    }
}

fn keepalives(calls: &Calls) -> usize {
    calls.lock().unwrap().len()
}

#[test]
fn a_keepalive_answer_cut_short_or_with_an_error_is_retried_and_the_lease_kept() {
    // The first keep-alive answers 200 with half a body, the second 200 with "no
    // leader" (as while this pass restarts etcd), every later one renews.
    let (gw, calls) = gateway(&["https://a:1"], Duration::from_secs(3), |n, _| match n {
        0 => truncated(),
        1 => ok(NO_LEADER),
        _ => ok(&renewed(1)),
    });
    let k = Keeper::start(gw, "1".into(), short(), Instant::now());
    // Four TTLs: the lease must have been renewed throughout.
    std::thread::sleep(Duration::from_millis(3600));
    let n = keepalives(&calls);
    assert_eq!(k.stop(), None, "lost although a renewal came in time");
    assert!(n >= 8, "only {n} keep-alives in 3.6 s after two failures");
}

#[test]
fn a_lease_etcd_no_longer_knows_is_lost_at_once_and_said() {
    let (gw, calls) = gateway(&["https://a:1"], Duration::from_secs(3), |n, _| match n {
        0 => ok(&renewed(1)),
        _ => ok(&gone()),
    });
    let k = Keeper::start(gw, "7587899412701485575".into(), short(), Instant::now());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        keepalives(&calls),
        2,
        "renewing a lease etcd no longer knows"
    );
    let why = k.stop().expect("the lost lease is said");
    assert!(
        why.contains("no longer knows lease 7587899412701485575"),
        "{why}"
    );
}

#[test]
fn keepalives_failing_for_a_whole_ttl_lose_the_lease_and_stop() {
    let (gw, calls) = gateway(&["https://a:1"], Duration::from_secs(3), |_, _| {
        Err("connection refused".into())
    });
    let started = Instant::now();
    let k = Keeper::start(gw, "1".into(), short(), started);
    std::thread::sleep(Duration::from_millis(1500));
    let n = keepalives(&calls);
    // Retried within the TTL (every 250 ms after the first failure at 300 ms), none
    // after it.
    assert!(n >= 2, "{n}");
    let c = calls.lock().unwrap().clone();
    assert!(
        c.iter().all(|(_, t)| *t <= Duration::from_millis(900)),
        "a keep-alive waited past the lease's end: {c:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(keepalives(&calls), n, "still renewing after the TTL");
    let why = k.stop().expect("the lost lease is said");
    assert!(
        why.contains("expired") && why.contains("connection refused"),
        "{why}"
    );
}
