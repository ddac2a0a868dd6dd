//! "Live" apart from `--root`: where the node's files are does not decide whether its
//! components run here. A tree under `--root DIR --live` restarts through the edges (a
//! harness whose control plane reads DIR); a running node with `--no-restart` restarts
//! nothing and lists what must restart. The decision is `Liveness::decide`, made once;
//! the pass gets its restarts from `Restarts::without_edges` exactly as the CLI does.

mod common;

use std::path::Path;

use cert_rotator::clock::SystemClock;
use cert_rotator::config::Settings;
use cert_rotator::node::{Liveness, NodeRoot};
use cert_rotator::pass::{self, Restarts};
use cert_rotator::report::pass::PassReport;
use cert_rotator::write::StateDir;
use common::fakes::{FakeProber, RecordingServiceManager};
use common::*;

/// Due: the scheduler's kubeconfig (a static pod) and the kubelet's client certificate
/// (a unit).
fn due_node() -> tempfile::TempDir {
    node(
        &NodeSpec::control_plane(now())
            .with("scheduler.conf", Validity::days(365, -Duration::days(1)))
            .with(
                "kubelet-client-current.pem",
                Validity::days(91, Duration::days(20)),
            ),
    )
}

const SCHEDULER: &str = "/etc/kubernetes/manifests/kube-scheduler.yaml";

fn manifest(r: &Path) -> String {
    std::fs::read_to_string(host(r, SCHEDULER)).unwrap()
}

/// One `run` pass on `root` as the CLI makes it: the edges (here the recording service
/// manager and a prober that sees what is on disk) only where the root's liveness
/// allows restarts.
fn pass_on(root: &NodeRoot, services: &RecordingServiceManager) -> PassReport {
    let mut s = Settings::default();
    s.run.min_restart_gap_seconds = 0;
    s.run.verify_timeout_seconds = 2;
    s.run.max_restarts_per_pass = 10;
    let state = StateDir::new(root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run_with(root, &s, &state, now(), &pass::plan_options(root));
    let prober = FakeProber::new(root.dir(), &[]);
    let p = TestPass::new(root, &s, &state);
    match Restarts::without_edges(root) {
        Some(restarts) => p.restarts(restarts),
        None => p.live(services, &prober, &SystemClock),
    }
    .execute(&plan)
}

#[test]
fn a_tree_under_root_with_live_restarts_through_the_edges() {
    let d = due_node();
    let r = d.path();
    // --root DIR --live: not the host's /, but its components run here.
    let root = NodeRoot::new(r).with_liveness(Liveness::decide(false, true, false));
    assert!(!root.is_host_root());
    let services = RecordingServiceManager::new();
    let report = pass_on(&root, &services);
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(services.restarted(), ["kubelet.service"]);
    assert!(
        manifest(r).contains("cert-rotator.k8s.io/certs-hash:"),
        "the static pod restarts by its manifest under DIR"
    );
    assert!(report.not_performed().is_empty() && report.must_restart().is_empty());
    assert!(
        report
            .verified()
            .iter()
            .any(|v| v.contains("kube-scheduler")),
        "{}",
        report.summary()
    );
}

#[test]
fn a_tree_under_root_without_live_restarts_nothing() {
    let d = due_node();
    let r = d.path();
    let before = manifest(r);
    let root = NodeRoot::new(r);
    assert_eq!(root.liveness(), Liveness::Offline);
    let services = RecordingServiceManager::new();
    let report = pass_on(&root, &services);
    assert!(report.ok(), "{}", report.summary());
    assert!(services.restarted().is_empty());
    assert_eq!(manifest(r), before);
    assert!(!report.not_performed().is_empty(), "{}", report.summary());
}

#[test]
fn a_running_node_with_no_restart_restarts_nothing_and_lists_what_must() {
    let d = due_node();
    let r = d.path();
    let before = manifest(r);
    // What `--no-restart` decides on `/` (the test cannot write the host's /), given to
    // a tree: the components run here, the operator restarts them.
    let liveness = Liveness::decide(true, false, true);
    assert_eq!(liveness, Liveness::NoRestart);
    let root = NodeRoot::new(r).with_liveness(liveness);
    let services = RecordingServiceManager::new();
    let report = pass_on(&root, &services);
    assert!(report.ok(), "{}", report.summary());
    assert!(services.restarted().is_empty(), "nothing restarted");
    assert_eq!(manifest(r), before, "no manifest annotated");
    assert_eq!(report.renewed().len(), 2, "{}", report.summary());
    let must = report.must_restart().join("\n");
    assert!(
        must.contains("kube-scheduler") && must.contains("kubelet"),
        "{}",
        report.summary()
    );
    assert!(report.not_performed().is_empty());
    assert!(report.summary().contains("must restart, one at a time"));
}

/// The binary with `--root DIR --live`: the scheduler's manifest under DIR is annotated
/// (verification off: nothing serves the scheduler's port in a test), and the kubelet's
/// restart is attempted through systemd, here a bus that does not exist. No restart
/// lock: the fixture's etcd is not running, and waiting for it proves nothing here.
#[test]
fn the_binary_under_root_with_live_restarts_the_static_pod_and_tries_systemd() {
    let d = due_node();
    let r = d.path();
    let conf = r.join("live-test.toml");
    std::fs::write(
        &conf,
        "[run]\nverify = false\nmin_restart_gap_seconds = 0\nrestart_timeout_seconds = 5\n\
         [coordination]\nbackend = \"none\"\n",
    )
    .unwrap();
    let conf = conf.display().to_string();
    let out = run(
        r,
        &[
            "--live",
            "--config",
            &conf,
            "renew",
            "--restart",
            "scheduler.conf",
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        manifest(r).contains("cert-rotator.k8s.io/certs-hash:"),
        "{all}"
    );
    assert!(all.contains("kube-scheduler: manifest"), "{all}");
    assert!(!all.contains("not performed"), "{all}");

    let bus = format!("unix:path={}", r.join("no-such-bus").display());
    let out = agent(
        r,
        &[
            "--live",
            "--config",
            &conf,
            "renew",
            "--restart",
            "kubelet-client-current.pem",
        ],
    )
    .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
    .output()
    .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("kubelet.service: cannot reach systemd"),
        "the kubelet's restart was attempted: {all}"
    );
}

/// The binary with `--no-restart` where the components run (`--live` stands in for
/// the host's `/`): `run` renews, restarts nothing and lists what must restart.
#[test]
fn the_binary_with_no_restart_lists_what_must_restart() {
    let d = due_node();
    let r = d.path();
    let before = manifest(r);
    let out = run(r, &["--live", "--no-restart", "run"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(manifest(r), before, "{all}");
    assert!(all.contains("[not performed: --no-restart]"), "{all}");
    assert!(all.contains("must restart, one at a time"), "{all}");
    assert!(all.contains("kube-scheduler (restart static pod"), "{all}");
    assert!(all.contains("kubelet (restart kubelet.service"), "{all}");
    assert!(!all.contains("not the live node"), "{all}");
}
