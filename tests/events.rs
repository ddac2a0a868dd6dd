//! A pass's Kubernetes Events on its Node (src/report/node_events.rs words them,
//! src/kube/events.rs sends them): one per renewal, restart, failure and certificate left
//! due, and an API server that never answers costs the pass at most the timeout.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Instant;

use cert_rotator::config::events::EventSettings;
use cert_rotator::fixture::temp_control_plane;
use cert_rotator::kube::events::tell;
use cert_rotator::plan::Reload;
use cert_rotator::report::event::{Deferral, Failure, PassEvent, RenewedCert, Restart};
use cert_rotator::report::node_events::of_report;
use cert_rotator::report::pass::PassReport;
use time::OffsetDateTime;

fn restarted(unit: &str) -> PassEvent {
    PassEvent::Restarted {
        component: unit.into(),
        how: Restart::Unit {
            unit: unit.into(),
            invocation: "0".into(),
        },
    }
}

#[test]
fn a_pass_becomes_one_event_per_renewal_restart_failure_and_certificate_left_due() {
    let r = PassReport {
        events: vec![
            PassEvent::Deferred {
                target: "admin.conf".into(),
                path: "/etc/kubernetes/admin.conf".into(),
                why: Deferral::Planned("at most 2 restarts a pass".into()),
            },
            PassEvent::Renewed {
                cert: RenewedCert {
                    name: "apiserver".into(),
                    path: "/etc/kubernetes/pki/apiserver.crt".into(),
                    serial: "ab".into(),
                    not_after: OffsetDateTime::UNIX_EPOCH,
                },
                component: "kube-apiserver".into(),
            },
            PassEvent::Failed(Failure::Renewal {
                target: "etcd/server".into(),
                path: "/etc/kubernetes/pki/etcd/server.crt".into(),
                component: "etcd".into(),
                error: "signing failed".into(),
            }),
            restarted("kube-scheduler"),
            PassEvent::MustRestart {
                component: "kubelet".into(),
                reload: Reload::Unit("kubelet.service".into()),
            },
        ],
        ..Default::default()
    };
    let reasons: Vec<(bool, &str)> = of_report(&r)
        .iter()
        .map(|e| (e.warning, e.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (false, "CertificateRenewed"),
            (false, "ComponentRestarted"),
            (true, "CertificateRotationFailed"),
            (true, "CertificateExpirationWarning"),
        ]
    );
    assert!(of_report(&PassReport::default()).is_empty());
}

#[test]
fn an_api_server_that_never_answers_costs_the_pass_at_most_the_timeout() {
    let (d, root) = temp_control_plane();
    // Accepts connections (the kernel's backlog) and never speaks TLS.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let conf = d.path().join("etc/kubernetes/kubelet.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    std::fs::write(
        &conf,
        text.replace(&server, &format!("https://127.0.0.1:{port}")),
    )
    .unwrap();
    let r = PassReport {
        events: vec![restarted("kubelet"); 20],
        ..Default::default()
    };
    let s = EventSettings {
        enabled: true,
        kubeconfig: PathBuf::from("/etc/kubernetes/kubelet.conf"),
        timeout_seconds: 2,
        ..Default::default()
    };
    let started = Instant::now();
    tell(&root, &s, &of_report(&r));
    assert!(
        started.elapsed().as_secs_f64() < 3.5,
        "{:?}",
        started.elapsed()
    );
    // It did dial the silent server (a return before connecting proves no bound).
    silent.set_nonblocking(true).unwrap();
    assert!(
        silent.accept().is_ok(),
        "the Events were never sent to the API server"
    );
}
