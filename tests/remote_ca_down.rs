//! A cfssl server that never answers costs a renewal pass one target's tries, not
//! every remote target's: the pass's other targets signed through cfssl fail at once,
//! saying so, and the targets a local CA signs are renewed. The server is an in-test
//! stand-in (tests/common/cfssl.rs `silent_server`: a TCP listener that accepts and
//! never speaks), as no real cfssl hangs; what a real one answers and refuses is
//! tests/remote_ca.rs and tests/remote_ca_refused.rs.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant};

use common::cfssl::*;
use common::*;

#[test]
fn a_silent_cfssl_fails_the_passs_remote_targets_fast_and_local_ones_renew() {
    // A control plane whose cluster CA key is elsewhere: every target the cluster CA
    // signs goes through cfssl; front-proxy and etcd still have their keys here.
    let spec = NodeSpec::control_plane(now()).with(
        "kubelet-client-current.pem",
        Validity::days(91, Duration::days(10)),
    );
    let (d, _) = build(&spec);
    let r = d.path();
    std::fs::remove_file(host(r, "/etc/kubernetes/pki/ca.key")).unwrap();
    let (port, accepted) = silent_server();
    configure_impatient(r, &format!("https://127.0.0.1:{port}"), &Tls::new());
    let started = Instant::now();
    let out = agent(r, &["renew-all"]).output().unwrap();
    let took = started.elapsed();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let failed: Vec<&str> = all.lines().filter(|l| l.contains("\tFAILED\t")).collect();
    assert!(failed.len() >= 3, "{all}");
    // One target tried twice, 1 s each; the others not at all.
    let gave_up: Vec<&&str> = failed
        .iter()
        .filter(|l| l.contains("timed out after 1s (gave up after 2 attempts)"))
        .collect();
    assert_eq!(gave_up.len(), 1, "{all}");
    let url = format!("cfssl https://127.0.0.1:{port}/api/v1/cfssl/authsign");
    for l in failed.iter().filter(|l| !gave_up.contains(l)) {
        assert!(
            l.contains(&format!("{url} unreachable earlier in this pass: TLS handshake with 127.0.0.1:{port} timed out after 1s; not retried")),
            "{l}\n{all}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "{all}");
    // The local CAs' targets renewed, and the whole pass well within the tries of one.
    for file in [
        "/etc/kubernetes/pki/front-proxy-client.crt",
        "/etc/kubernetes/pki/etcd/server.crt",
    ] {
        assert!(
            all.lines()
                .any(|l| l.starts_with(&format!("{file}\trenewed\t"))),
            "{file}: {all}"
        );
    }
    assert!(took < StdDuration::from_secs(20), "{took:?}: {all}");
}
