//! The sequencer's failure paths and the pure issuing step, through the library with
//! fixture nodes: what fails is reported per target, the rest goes on, a forced plan
//! renews exactly what was selected, and no renewal writes a certificate born expired.

mod common;

use std::path::{Path, PathBuf};

use cert_rotator::config::Settings;
use cert_rotator::inventory::{self, TargetState};
use cert_rotator::issue::{self, RenewOptions};
use cert_rotator::node::NodeRoot;
use cert_rotator::pass::{self, Restarts, Selection};
use cert_rotator::report::pass::Outcome;
use cert_rotator::write::StateDir;
use common::*;

fn host(r: &Path, p: &str) -> PathBuf {
    r.join(p.trim_start_matches('/'))
}

/// A pass whose restarts the operator does (`--no-restart`).
fn offline_pass<'a>(root: &'a NodeRoot, s: &'a Settings, state: &'a StateDir) -> TestPass<'a> {
    TestPass::new(root, s, state).restarts(Restarts::Operator)
}

#[test]
fn a_forced_plan_renews_exactly_the_selection_and_reports_each_as_it_completes() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = Settings::default();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let selection = Selection::Named(vec![
        PathBuf::from("etcd-server"),
        PathBuf::from("admin.conf"),
        PathBuf::from("/etc/kubernetes/pki/apiserver.crt"),
    ]);
    let plan = pass::plan_request(&root, &s, &selection, None, now()).unwrap();
    let planned: Vec<&str> = plan
        .groups
        .iter()
        .flat_map(|g| g.targets.iter().map(|t| t.name.as_str()))
        .collect();
    assert_eq!(planned, ["etcd/server", "admin.conf", "apiserver"]);
    let mut seen = Vec::new();
    let report = offline_pass(&root, &s, &state)
        .with(|p| pass::execute(p, &plan, &mut |t| seen.push(t.name.clone())));
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(seen, ["etcd/server", "admin.conf", "apiserver"]);
    assert!(report
        .results
        .iter()
        .all(|t| matches!(t.outcome, Outcome::Renewed { .. })));
    // What must restart to load it is said, not done.
    assert!(
        report
            .must_restart()
            .iter()
            .any(|m| m.starts_with("kube-apiserver")),
        "{:?}",
        report.must_restart()
    );
    assert!(report.restarted().is_empty());
}

#[test]
fn an_unknown_name_is_refused_listing_the_valid_ones() {
    let d = node(&NodeSpec::control_plane(now()));
    let root = NodeRoot::new(d.path());
    let s = Settings::default();
    let e = pass::plan_request(
        &root,
        &s,
        &Selection::Named(vec![PathBuf::from("apiservr")]),
        None,
        now(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("apiservr") && e.contains("apiserver") && e.contains("etcd-server"),
        "{e}"
    );
}

#[test]
fn a_ca_key_that_does_not_load_fails_its_leaves_and_the_others_go_on() {
    let spec = NodeSpec::control_plane(now())
        .with("apiserver", Validity::days(365, Duration::days(10)))
        .with(
            "front-proxy-client",
            Validity::days(365, Duration::days(10)),
        );
    let d = node(&spec);
    let r = d.path();
    // The cluster CA's key is garbage; the front-proxy CA is fine.
    std::fs::write(host(r, "/etc/kubernetes/pki/ca.key"), b"not a key\n").unwrap();
    let root = NodeRoot::new(r);
    let s = Settings::default();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, now());
    let before = std::fs::read(host(r, "/etc/kubernetes/pki/apiserver.crt")).unwrap();
    let report = offline_pass(&root, &s, &state).execute(&plan);
    assert!(!report.ok());
    let outcome = |name: &str| {
        report
            .results
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.outcome.clone())
            .unwrap_or_else(|| panic!("no result for {name}"))
    };
    let Outcome::Failed(why) = outcome("apiserver") else {
        panic!("apiserver must fail: {:?}", outcome("apiserver"));
    };
    assert!(why.contains("/etc/kubernetes/pki/ca.key"), "{why}");
    assert!(matches!(
        outcome("front-proxy-client"),
        Outcome::Renewed { .. }
    ));
    assert_eq!(
        std::fs::read(host(r, "/etc/kubernetes/pki/apiserver.crt")).unwrap(),
        before,
        "a failed target is left untouched"
    );
}

#[test]
fn an_unreadable_ca_certificate_fails_the_pass_naming_it() {
    let d = node(
        &NodeSpec::control_plane(now())
            .with("scheduler.conf", Validity::days(365, -Duration::days(1))),
    );
    let r = d.path();
    std::fs::write(host(r, "/etc/kubernetes/pki/ca.crt"), b"garbage\n").unwrap();
    let root = NodeRoot::new(r);
    let s = Settings::default();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, now());
    let report = offline_pass(&root, &s, &state).execute(&plan);
    assert!(!report.ok());
    assert!(
        report
            .failed()
            .iter()
            .any(|f| f.contains("/etc/kubernetes/pki/ca.crt")),
        "{}",
        report.summary()
    );
}

#[test]
fn no_renewal_writes_a_certificate_born_expired() {
    let d = node(&NodeSpec::control_plane(now()));
    let root = NodeRoot::new(d.path());
    let s = Settings::default();
    let inv = inventory::read(&inventory::layout(&s, &root), &root);
    let o = inv
        .certificates
        .iter()
        .find(|o| o.target.name == "apiserver")
        .unwrap();
    let TargetState::Read(reading) = &o.state else {
        panic!("apiserver unreadable");
    };
    let mut reading = (**reading).clone();
    // notAfter before notBefore: no lifetime to copy.
    reading.cert.not_after = reading.cert.not_before - Duration::days(1);
    let opts = RenewOptions {
        days: None,
        reuse_key: false,
        now: now(),
        switch_issuer: false,
        serving: None,
    };
    let e = issue::prepare(&o.target, &reading, None, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/etc/kubernetes/pki/apiserver.crt") && e.contains("not after notBefore"),
        "{e}"
    );
}

/// One clock per pass: replayed at a chosen instant on a fake clock, the pass paces its
/// control-plane restarts on that clock (no real wait) and stamps the history with it.
#[test]
fn a_pass_replayed_on_a_fake_clock_paces_control_plane_restarts_on_it() {
    use common::fakes::{FakeClock, FakeProber, RecordingServiceManager};
    let at = now();
    let spec = NodeSpec::control_plane(at)
        .with("apiserver", Validity::days(365, Duration::days(10)))
        .with("scheduler.conf", Validity::days(365, Duration::days(12)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let mut s = Settings::default();
    s.run.min_restart_gap_seconds = 30;
    s.run.verify_timeout_seconds = 2;
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, at);
    assert_eq!(plan.groups.len(), 2, "{plan:?}");
    let clock = FakeClock::at(at);
    let services = RecordingServiceManager::new();
    // A healthy API server that loads its certificate only when its pod restarts.
    let prober = FakeProber::until_restarted(
        r,
        &[(
            6443,
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
        )],
    );
    let started = std::time::Instant::now();
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &clock)
        .execute(&plan);
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.restarted().len(), 2, "{}", report.summary());
    // First the 5 s an apiserver gets to reload by itself (docs/reloads.md; this one
    // does not), probed every 500 ms; then the gap before the second restart.
    let mut expected = vec![std::time::Duration::from_millis(500); 10];
    expected.push(std::time::Duration::from_secs(30));
    assert_eq!(
        clock.slept(),
        expected,
        "the second control-plane restart waits the gap, on the pass's clock"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
    let history = pass::load_history(&state);
    assert_eq!(
        history.restarts[0].at,
        at + time::Duration::seconds(5),
        "stamped with the fake clock, after the reload grace"
    );
}
