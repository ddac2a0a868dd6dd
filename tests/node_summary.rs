//! The summary of a node's inventory that `run` puts on its Node with `[events]
//! node_summary` (src/report/node_summary.rs), from a fixture kubeadm node: the earliest expiry
//! as a date label, the count of certificates inside their window, and one annotation
//! entry per certificate saying who renews it. The real API server takes the patch in
//! tests/k8s/csr.sh.

mod common;

use cert_rotator::config::Settings;
use cert_rotator::node::NodeRoot;
use cert_rotator::report::event::{PassEvent, Restart};
use cert_rotator::report::node_summary::{NodeSummary, CERTIFICATES, DUE, NEXT_EXPIRY};
use common::{fixture, Duration, NodeSpec, OffsetDateTime, Validity};
use serde_json::Value;

#[test]
fn a_control_plane_summed_up_for_kubectl_get_nodes() {
    let now = OffsetDateTime::now_utc();
    let spec = NodeSpec::control_plane(now)
        .with_kubelet_config(fixture::KubeletConfigSpec::kubeadm())
        .with("apiserver", Validity::days(365, Duration::days(20)))
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)))
        .with(
            "kubelet-client-current.pem",
            Validity::days(365, Duration::days(100)),
        );
    let d = tempfile::tempdir().unwrap();
    fixture::build(d.path(), &spec).unwrap();
    let root = NodeRoot::new(d.path());
    let inv = cert_rotator::pass::read_node(&root, &Settings::default());
    let s = NodeSummary::of(&inv, now);

    // scheduler.conf ended yesterday: the earliest expiry, UTC date.
    let yesterday = (now - Duration::days(1)).date().to_string();
    assert_eq!(s.next_expiry.as_deref(), Some(yesterday.as_str()));
    // apiserver (20 of 365 days left) and scheduler.conf (expired) are due; the kubelet's
    // client certificate (100 days left) is the kubelet's, not yet the safety net's.
    assert_eq!(s.due, 2, "{}", s.annotation);
    let patch = s.patch();
    assert_eq!(patch["metadata"]["labels"][DUE], "2");
    assert_eq!(patch["metadata"]["labels"][NEXT_EXPIRY], yesterday.as_str());
    let a: Value = serde_json::from_str(
        patch["metadata"]["annotations"][CERTIFICATES]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let entry = |name: &str| {
        a["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {a}"))
            .clone()
    };
    assert_eq!(entry("apiserver")["state"], "due");
    assert_eq!(entry("scheduler.conf")["state"], "expired");
    assert_eq!(entry("admin.conf")["state"], "ok");
    assert_eq!(entry("admin.conf")["renewedBy"], "cert-rotator");
    assert_eq!(entry("kubelet-client-current.pem")["renewedBy"], "kubelet");
    assert!(entry("apiserver")["notAfter"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(
        a["certificates"].as_array().unwrap().len(),
        inv.certificates.len()
    );
    assert!(a.get("omitted").is_none());
    assert!(s.annotation.len() < 4096, "{}", s.annotation.len());
}

/// The summary and 20 Events against an API server that accepts connections and never
/// answers: together they cost the pass no more than the one `events.timeout_seconds`.
#[test]
fn an_api_server_that_never_answers_costs_events_and_summary_one_timeout() {
    use cert_rotator::config::events::EventSettings;
    use cert_rotator::kube::events::tell_all;
    use cert_rotator::report::node_events::of_report;
    use cert_rotator::report::pass::PassReport;

    let (d, root) = cert_rotator::fixture::temp_control_plane();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = format!("https://{}", silent.local_addr().unwrap());
    let conf = d.path().join("etc/kubernetes/kubelet.conf");
    let pointed: Vec<String> = std::fs::read_to_string(&conf)
        .unwrap()
        .lines()
        .map(|l| match l.split_once("server: ") {
            Some((indent, _)) => format!("{indent}server: {at}"),
            None => l.to_string(),
        })
        .collect();
    std::fs::write(&conf, pointed.join("\n")).unwrap();
    let summary = NodeSummary::of(
        &cert_rotator::pass::read_node(&root, &Settings::default()),
        OffsetDateTime::now_utc(),
    );
    let restarted = PassEvent::Restarted {
        component: "kube-scheduler".into(),
        how: Restart::Unit {
            unit: "kube-scheduler".into(),
            invocation: "0".into(),
        },
    };
    let events = of_report(&PassReport {
        events: vec![restarted; 20],
        ..Default::default()
    });
    for (enabled, node_summary) in [(false, true), (true, true)] {
        let s = EventSettings {
            enabled,
            node_summary,
            timeout_seconds: 2,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        tell_all(&root, &s, &events, Some(&summary.node_patch()));
        let took = started.elapsed();
        assert!(
            took.as_secs_f64() < 3.0,
            "{enabled} {node_summary}: {took:?}"
        );
    }
}
