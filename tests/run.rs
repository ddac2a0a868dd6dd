//! The rotation pass against a temp root: order, grouping, limits, deferrals, the
//! static-pod manifest change, verification and rollback. Restarts go to the recording
//! service manager and probes to a fake that serves what is on disk (a component that
//! reloads) or a stale certificate (one that does not); the real edges are proven in the
//! booted-systemd test.

mod common;

use std::path::Path;
use std::time::Duration as StdDuration;

use cert_rotator::clock::SystemClock;
use cert_rotator::config::Settings;
use cert_rotator::node::NodeRoot;
use cert_rotator::pass;
use cert_rotator::restart::ServiceManager;
use cert_rotator::write::StateDir;
use common::fakes::{FakeProber, RecordedRestart, RecordingServiceManager};
use common::*;

fn settings() -> Settings {
    let mut s = Settings::default();
    s.run.min_restart_gap_seconds = 0;
    s.run.verify_timeout_seconds = 2;
    s.run.max_restarts_per_pass = 10;
    s
}

fn manifests(r: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(host(r, "/etc/kubernetes/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn a_pass_renews_groups_restarts_each_component_once_and_verifies() {
    let spec = NodeSpec::control_plane(now())
        .with("apiserver", Validity::days(365, Duration::days(50)))
        .with(
            "front-proxy-client",
            Validity::days(365, Duration::days(40)),
        )
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)))
        .with(
            "kubelet-client-current.pem",
            Validity::days(91, Duration::days(20)),
        )
        .with("etcd/server", Validity::days(365, Duration::days(45)))
        .with("admin.conf", Validity::days(365, Duration::days(10)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let sched_before =
        std::fs::read_to_string(host(r, "/etc/kubernetes/manifests/kube-scheduler.yaml")).unwrap();
    let etcd_before = std::fs::read(host(r, "/etc/kubernetes/manifests/etcd.yaml")).unwrap();
    let plan = pass::plan_run(&root, &s, &state, now());
    let services = RecordingServiceManager::new();
    let prober = FakeProber::new(r, &[]);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &SystemClock)
        .execute(&plan);
    assert!(report.ok(), "{}", report.summary());
    let renewed: Vec<&str> = report.renewed().iter().map(|c| c.name.as_str()).collect();
    // Expired first, then by renew_at; apiserver and front-proxy-client in one group.
    assert_eq!(
        renewed,
        [
            "scheduler.conf",
            "/root/.kube/config",
            "admin.conf",
            "front-proxy-client",
            "apiserver",
            "etcd/server",
            "kubelet-client-current.pem"
        ],
        "{}",
        report.summary()
    );
    assert_eq!(
        services.restarted(),
        ["kubelet.service"],
        "the kubelet restarts once, through systemd"
    );
    let restarted = report.restarted();
    let restarted: Vec<&str> = restarted
        .iter()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    // kube-apiserver serves its new apiserver.crt already and reloads front-proxy-client by
    // itself (docs/reloads.md): not restarted.
    assert_eq!(
        restarted,
        ["kube-scheduler", "kubelet.service"],
        "{}",
        report.summary()
    );
    assert_eq!(report.restarts_avoided().len(), 1, "{}", report.summary());
    assert!(report.restarts_avoided()[0].starts_with("kube-apiserver:"));
    // Static pods: the manifest content changes by one annotation; nothing else in the dir.
    let sched =
        std::fs::read_to_string(host(r, "/etc/kubernetes/manifests/kube-scheduler.yaml")).unwrap();
    assert!(sched.contains("cert-rotator.k8s.io/certs-hash:"), "{sched}");
    let removed: Vec<&str> = sched_before
        .lines()
        .filter(|l| !sched.lines().any(|n| n == *l))
        .collect();
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(sched.lines().count(), sched_before.lines().count() + 2);
    assert_eq!(
        manifests(r),
        [
            "etcd.yaml",
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml",
            "kube-scheduler.yaml"
        ]
    );
    assert_eq!(
        std::fs::read(host(r, "/etc/kubernetes/manifests/etcd.yaml")).unwrap(),
        etcd_before,
        "etcd reloads by itself"
    );
    // Verified: the apiserver serves apiserver.crt's new serial, etcd its server cert.
    let served = report.verified().join("\n");
    let new_api = report
        .renewed()
        .into_iter()
        .find(|c| c.name == "apiserver")
        .unwrap();
    assert!(
        served.contains(&format!("kube-apiserver serves serial {}", new_api.serial)),
        "{served}"
    );
    assert!(served.contains("etcd serves serial"), "{served}");
    assert!(served.contains("kube-scheduler healthy"), "{served}");
    // Backups never land in the manifests directory, and a second pass has nothing to do.
    let plan = pass::plan_run(&root, &s, &state, now());
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn a_component_that_does_not_serve_its_new_certificate_is_rolled_back() {
    let spec = NodeSpec::control_plane(now())
        .with("apiserver", Validity::days(365, Duration::days(20)))
        .with(
            "controller-manager.conf",
            Validity::days(365, Duration::days(10)),
        );
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let crt = host(r, "/etc/kubernetes/pki/apiserver.crt");
    let key = host(r, "/etc/kubernetes/pki/apiserver.key");
    let (old_crt, old_key) = (std::fs::read(&crt).unwrap(), std::fs::read(&key).unwrap());
    let plan = pass::plan_run(&root, &s, &state, now());
    // Order: controller-manager.conf (10 days) before apiserver (20 days)? renew_at decides.
    let services = RecordingServiceManager::new();
    let prober = FakeProber::new(r, &[(6443, "/etc/kubernetes/pki/apiserver.crt")]);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &SystemClock)
        .execute(&plan);
    assert!(!report.ok());
    assert!(
        report
            .failed()
            .iter()
            .any(|f| f.starts_with("kube-apiserver") && f.contains("still serves serial")),
        "{}",
        report.summary()
    );
    assert_eq!(report.rolled_back().len(), 1, "{}", report.summary());
    assert_eq!(
        std::fs::read(&crt).unwrap(),
        old_crt,
        "certificate restored from the backup"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        old_key,
        "key restored with it"
    );
    let (v, code) = status_json(r);
    assert_eq!(code, 0, "{v:#}");
    // The CLI reports it loudly: exit 1.
    assert!(report.summary().contains("FAILED"));
}

#[test]
fn the_restart_cap_defers_to_the_next_pass_and_history_keeps_the_gap() {
    let spec = NodeSpec::control_plane(now())
        .with("apiserver", Validity::days(365, Duration::days(50)))
        .with(
            "controller-manager.conf",
            Validity::days(365, Duration::days(55)),
        )
        .with("scheduler.conf", Validity::days(365, Duration::days(60)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let mut s = settings();
    s.run.max_restarts_per_pass = 1;
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let services = RecordingServiceManager::new();
    // The API server loads its serving certificate when its pod starts: probed before
    // the restart it still serves the old one, so it is restarted.
    let prober = FakeProber::until_restarted(
        r,
        &[(
            6443,
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
        )],
    );
    let mut order = Vec::new();
    for pass_no in 1..=3 {
        let plan = pass::plan_run(&root, &s, &state, now());
        assert_eq!(plan.groups.len(), 1, "pass {pass_no}: one restart per pass");
        assert_eq!(plan.deferred.len(), 3 - pass_no);
        let report = TestPass::new(&root, &s, &state)
            .live(&services, &prober, &SystemClock)
            .execute(&plan);
        assert!(report.ok(), "{}", report.summary());
        order.extend(
            report
                .restarted()
                .iter()
                .map(|l| l.split(':').next().unwrap().to_string()),
        );
    }
    assert_eq!(
        order,
        [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler"
        ]
    );
    let history = pass::load_history(&state);
    assert_eq!(history.restarts.len(), 3);
    // With a gap configured, the next plan waits for it.
    s.run.min_restart_gap_seconds = 600;
    let spec2 = spec.with("apiserver", Validity::days(365, Duration::days(1)));
    let _ = spec2;
    let plan = pass::plan_run(&root, &s, &state, now());
    assert!(plan.is_empty());
}

/// A node whose certificates all expired (API server down, kubelet locked out) comes back
/// with one `run`: no API, no kubectl.
#[test]
fn an_all_expired_node_comes_back_with_one_run() {
    let mut spec = NodeSpec::control_plane(now());
    spec.leaf_validity = Validity::days(365, -Duration::days(40));
    spec.kubelet_client_validity = Validity::days(365, -Duration::days(40));
    spec = spec.with("kubelet.crt", Validity::days(365, -Duration::days(40)));
    let d = node(&spec);
    let r = d.path();
    let (v, _) = status_json(r);
    let expired = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["due_reason"] == "expired")
        .count();
    assert_eq!(expired, 14);
    let out = run(r, &["run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("renewed (14)"), "{stdout}");
    assert!(
        stdout.contains("not performed (not the live node)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("deferred"),
        "expired certificates are never deferred:\n{stdout}"
    );
    let (v, code) = status_json(r);
    assert_eq!(code, 0);
    assert!(
        v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["due"] == false),
        "{v:#}"
    );
    // Metrics were written, and a second run has nothing to do.
    let prom = std::fs::read_to_string(host(r, "/var/lib/cert-rotator/metrics/cert-rotator.prom"))
        .unwrap();
    assert!(
        prom.contains("cert_rotator_pass_success 1")
            && prom.contains("cert_rotator_certificate_due{name=\"apiserver\""),
        "{prom}"
    );
    let out = run(r, &["run"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing is due"));
}

#[test]
fn a_second_concurrent_run_exits_0_saying_a_pass_is_active() {
    let d = node(&NodeSpec::worker(now()));
    let root = NodeRoot::new(d.path());
    let state = StateDir::new(&root, Path::new("/var/lib/cert-rotator"), 100);
    let _held = state.try_lock().unwrap().unwrap();
    let out = run(d.path(), &["run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("a pass is already active"));
}

#[test]
fn plan_and_dry_run_change_nothing() {
    let d = node(
        &NodeSpec::control_plane(now()).with("apiserver", Validity::days(365, Duration::days(20))),
    );
    let before = snapshot(d.path());
    let out = run(d.path(), &["plan"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1. kube-apiserver: restart static pod kube-apiserver")
            && text.contains("renew apiserver"),
        "{text}"
    );
    let out = run(d.path(), &["run", "--dry-run"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
    let out = run(d.path(), &["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["groups"][0]["reload"]["kind"], "static-pod");
    assert_eq!(before, snapshot(d.path()));
}

#[test]
fn the_recording_fake_records_and_fails_on_demand() {
    let m = RecordingServiceManager::new();
    m.fail_unit("bad.service", "failed");
    let t = StdDuration::from_secs(5);
    let r = m.restart_unit("kubelet.service", t).unwrap();
    assert!(r.previous_invocation_id.is_some());
    assert_ne!(Some(&r.invocation_id), r.previous_invocation_id.as_ref());
    let again = m.restart_unit("kubelet.service", t).unwrap();
    assert_eq!(
        again.previous_invocation_id.as_ref(),
        Some(&r.invocation_id)
    );
    let e = m.restart_unit("bad.service", t).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad.service: restart job ended with result \"failed\" (unit is now failed/failed)"
    );
    assert_eq!(
        m.restarted(),
        ["kubelet.service", "kubelet.service", "bad.service"]
    );
    assert_eq!(
        m.calls()[0],
        RecordedRestart {
            unit: "kubelet.service".into(),
            timeout: t
        }
    );
}

/// `run`'s whole order, as the library runs it (pass::run): the due CAs first, then the
/// plan again, then the leaves, which the renewed CA signs uncapped; the CA outcome
/// first in the report. Files only (a node tree under --root without --live): the
/// plan after the CA renewal defers nothing for the restart cap either, as the first.
#[test]
fn run_renews_due_cas_then_plans_again_then_renews_the_leaves() {
    use cert_rotator::pass::RunNote;
    let mut spec = NodeSpec::control_plane(now());
    spec.ca_validity = Validity::days(3650, Duration::days(100));
    spec.leaf_validity = Validity::days(365, Duration::days(60));
    let d = node(&spec);
    let root = NodeRoot::new(d.path());
    let s = Settings::default();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let mut notes = Vec::new();
    let report = TestPass::new(&root, &s, &state).with(|p| {
        pass::run(p, now(), &mut |n| {
            notes.push(match n {
                RunNote::Warning(w) => format!("warning {w}"),
                RunNote::Error(e) => format!("error {e}"),
                RunNote::Plan(plan) => format!("plan {}", plan.authorities_due.len()),
                RunNote::PlanAfterCaRenewal(plan) => {
                    format!("plan after {}", plan.authorities_due.len())
                }
            })
        })
    });
    assert_eq!(notes, ["plan 3", "plan after 0"], "{report:#?}");
    assert_eq!(report.ca_renewed().len(), 3, "{report:#?}");
    assert!(report.failed().is_empty(), "{report:#?}");
    assert!(report.deferred().is_empty(), "{:#?}", report.deferred());
    // Signed by the renewed CA, so not capped at the old one's end (100 days).
    let apiserver = report
        .renewed()
        .into_iter()
        .find(|c| c.name == "apiserver")
        .expect("apiserver renewed");
    assert!(
        apiserver.not_after > now() + Duration::days(300),
        "{apiserver:?}"
    );
    assert!(
        report.warnings().iter().all(|w| !w.contains("capped")),
        "{:#?}",
        report.warnings()
    );
    // What holds the CAs comes first among what the operator must restart.
    assert!(
        report.not_performed()[0].starts_with("etcd:"),
        "{:#?}",
        report.not_performed()
    );
}

/// The pass's CA renewal rewrote scheduler.conf's certificate-authority-data (the
/// apply below, in the pass's own backup generation, as `renew_due` writes it); the
/// scheduler.conf renewal then fails verification (the old process keeps the port) and
/// is rolled back: the client certificate goes back, the CA data stays the CA
/// renewal's. The rollback restores the group's own change set, not the file as the
/// pass found it.
#[test]
fn a_rollback_keeps_the_ca_renewals_edit_of_the_same_kubeconfig() {
    use base64::Engine;
    let spec = NodeSpec::control_plane(now())
        .with("scheduler.conf", Validity::days(365, Duration::days(10)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let conf = host(r, "/etc/kubernetes/scheduler.conf");
    let found = std::fs::read_to_string(&conf).unwrap();
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::to_string))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    };
    let ca_data = field(&found, "certificate-authority-data: ");
    let other = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(host(r, "/etc/kubernetes/pki/front-proxy-ca.crt")).unwrap());
    state
        .apply(
            "renew CA ca",
            &[cert_rotator::write::FileChange::file(
                "/etc/kubernetes/scheduler.conf",
                found.replace(&ca_data, &other).into_bytes(),
                0o600,
                true,
            )],
        )
        .unwrap();
    let plan = pass::plan_run(&root, &s, &state, now());
    let services = RecordingServiceManager::new();
    let prober = FakeProber::new(r, &[]).old_process_on(10259);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &SystemClock)
        .execute(&plan);
    assert_eq!(report.rolled_back().len(), 1, "{}", report.summary());
    let after = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(field(&after, "certificate-authority-data: "), other);
    assert_eq!(
        field(&after, "client-certificate-data: "),
        field(&found, "client-certificate-data: "),
        "the client certificate is back"
    );
}
