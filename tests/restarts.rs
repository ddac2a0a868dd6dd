//! No restart that is not needed, no wait that protects nothing: the sequencer probes a
//! component before restarting it, skips the gap between control-plane restarts when
//! the component is down or its certificates had expired, and the restart cap holds
//! back neither broken components nor passes that restart nothing. Restarts go to the
//! recording service manager, probes to the fake prober, waits to the fake clock (the
//! real edges are proven in the booted-systemd test).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use cert_rotator::config::Settings;
use cert_rotator::inventory::NodeReader;
use cert_rotator::node::NodeRoot;
use cert_rotator::pass::{self, Edges};
use cert_rotator::report::pass::{section, Section};
use cert_rotator::write::StateDir;
use common::fakes::{FakeClock, FakeProber, RecordingServiceManager};
use common::*;

fn settings() -> Settings {
    let mut s = Settings::default();
    s.run.verify_timeout_seconds = 2;
    s
}

const APISERVER_YAML: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

#[test]
fn a_component_already_serving_its_new_certificate_is_not_restarted() {
    let at = now();
    let spec =
        NodeSpec::control_plane(at).with("apiserver", Validity::days(365, Duration::days(50)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let manifest_before = std::fs::read(host(r, APISERVER_YAML)).unwrap();
    let plan = pass::plan_run(&root, &s, &state, at);
    assert_eq!(plan.groups.len(), 1, "{plan:?}");
    // Serves what is on disk: it reloaded apiserver.crt by itself.
    let prober = FakeProber::new(r, &[]);
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(at);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &clock)
        .execute(&plan);
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.renewed().len(), 1);
    assert!(report.restarted().is_empty(), "{}", report.summary());
    assert_eq!(report.restarts_avoided().len(), 1, "{}", report.summary());
    assert!(
        report.restarts_avoided()[0]
            .starts_with("kube-apiserver: already serves its new certificates"),
        "{}",
        report.summary()
    );
    assert!(report
        .summary()
        .contains("not restarted (already serving the new certificates) (1):"));
    // No manifest change, no history entry: nothing was restarted.
    assert_eq!(
        std::fs::read(host(r, APISERVER_YAML)).unwrap(),
        manifest_before
    );
    assert!(pass::load_history(&state).restarts.is_empty());
    // Verification still ran, on every endpoint.
    let serial = common::fakes::serial_of(&host(r, "/etc/kubernetes/pki/apiserver.crt"));
    assert_eq!(
        report.verified(),
        [
            format!("kube-apiserver serves serial {serial} on 10.0.0.10:6443"),
            format!("kube-apiserver serves serial {serial} on 127.0.0.1:6443"),
            "kube-apiserver ready on 127.0.0.1:6443 (/readyz)".into(),
        ]
    );
    assert_eq!(
        prober.probes(),
        [
            "10.0.0.10:6443",
            "127.0.0.1:6443",
            "10.0.0.10:6443",
            "127.0.0.1:6443",
            "readyz 127.0.0.1:6443"
        ],
        "one probe of each endpoint first, then the verification and readiness"
    );
    assert!(clock.slept().is_empty());
}

/// kube-apiserver reloads its client certificates by itself too (etcd's client at each
/// handshake, client-go's kubelet client every 5 minutes, the front-proxy client as
/// dynamic file content: docs/reloads.md), so renewing its whole group while it serves
/// the new apiserver.crt restarts nothing; the controller-manager's kubeconfig, read at
/// start only, still restarts it.
#[test]
fn an_apiserver_serving_anew_is_not_restarted_for_the_client_certificates_it_reloads() {
    let at = now();
    let spec = NodeSpec::control_plane(at)
        .with("apiserver", Validity::days(365, Duration::days(50)))
        .with(
            "apiserver-etcd-client",
            Validity::days(365, Duration::days(50)),
        )
        .with(
            "apiserver-kubelet-client",
            Validity::days(365, Duration::days(50)),
        )
        .with(
            "front-proxy-client",
            Validity::days(365, Duration::days(50)),
        )
        .with(
            "controller-manager.conf",
            Validity::days(365, Duration::days(50)),
        );
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let mut s = settings();
    s.run.max_restarts_per_pass = 10;
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, at);
    let prober = FakeProber::new(r, &[]);
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(at);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &clock)
        .execute(&plan);
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.renewed().len(), 5, "{}", report.summary());
    assert_eq!(report.restarts_avoided().len(), 1, "{}", report.summary());
    assert!(report.restarts_avoided()[0].starts_with("kube-apiserver:"));
    let restarted = report.restarted();
    let restarted: Vec<&str> = restarted
        .iter()
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        restarted,
        ["kube-controller-manager"],
        "{}",
        report.summary()
    );
}

#[test]
fn the_kubelet_serving_kubelet_crt_anew_is_not_restarted_but_one_that_loads_it_at_start_is() {
    let at = now();
    let spec =
        NodeSpec::control_plane(at).with("kubelet.crt", Validity::days(365, Duration::days(10)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, at);
    let services = RecordingServiceManager::new();
    let prober = FakeProber::new(r, &[]);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &FakeClock::at(at))
        .execute(&plan);
    assert!(report.ok(), "{}", report.summary());
    assert!(services.restarted().is_empty(), "{}", report.summary());
    assert_eq!(report.restarts_avoided().len(), 1);
    // A renewed client certificate no probe can see: the kubelet restarts.
    let spec = NodeSpec::control_plane(at)
        .with("kubelet.crt", Validity::days(365, Duration::days(10)))
        .with(
            "kubelet-client-current.pem",
            Validity::days(365, Duration::days(11)),
        );
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, at);
    let services = RecordingServiceManager::new();
    let prober = FakeProber::new(r, &[]);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &FakeClock::at(at))
        .execute(&plan);
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(services.restarted(), ["kubelet.service"]);
    assert!(report.restarts_avoided().is_empty());
}

/// A node whose certificates all expired: every component restarts in one pass, with
/// no gap between the control-plane restarts (nothing healthy to keep serving), under
/// the default settings (30 s gap, 2 restarts per pass).
#[test]
fn an_all_expired_node_revives_in_one_pass_without_waiting() {
    let at = now();
    let mut spec = NodeSpec::control_plane(at);
    spec.leaf_validity = Validity::days(365, -Duration::days(40));
    spec.kubelet_client_validity = Validity::days(365, -Duration::days(40));
    spec = spec.with("kubelet.crt", Validity::days(365, -Duration::days(40)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    assert_eq!(s.run.min_restart_gap_seconds, 30);
    assert_eq!(s.run.max_restarts_per_pass, 2);
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, at);
    assert!(plan.deferred.is_empty(), "{plan:?}");
    // The API server is down until its pod is recreated.
    let prober = FakeProber::down_until_restarted(r, &[(6443, APISERVER_YAML)]);
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(at);
    let started = std::time::Instant::now();
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &clock)
        .execute(&plan);
    // For benches/revive.sh (never asserted: timings are the benchmark's business).
    eprintln!(
        "revive: {} certificates renewed, {} restarts, pass work {} ms, slept {} s on the pass's clock",
        report.renewed().len(),
        report.restarted().len(),
        started.elapsed().as_millis(),
        clock.slept().iter().map(|d| d.as_secs()).sum::<u64>()
    );
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.renewed().len(), 14, "{}", report.summary());
    let restarted = report.restarted();
    let mut restarted: Vec<&str> = restarted
        .iter()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    restarted.sort();
    assert_eq!(
        restarted,
        [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet.service"
        ],
        "{}",
        report.summary()
    );
    assert_eq!(
        clock.slept(),
        Vec::<StdDuration>::new(),
        "no gap before a restart that protects nothing; the old rule slept 2 x 30 s here"
    );
    // All three control-plane restarts at the same instant of the pass's clock.
    let h = pass::load_history(&state);
    assert_eq!(h.restarts.iter().filter(|r| r.control_plane).count(), 3);
    assert!(h.restarts.iter().all(|x| x.at == at));
}

/// The same node with every certificate due but valid and every component healthy:
/// the gap stands, 30 s before each further control-plane restart.
#[test]
fn a_healthy_control_plane_keeps_its_gaps() {
    let at = now();
    let mut spec = NodeSpec::control_plane(at);
    spec.leaf_validity = Validity::days(365, Duration::days(20));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let mut s = settings();
    s.run.max_restarts_per_pass = 10;
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, at);
    let prober = FakeProber::until_restarted(
        r,
        &[(6443, "/etc/kubernetes/pki/apiserver.crt", APISERVER_YAML)],
    );
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(at);
    let started = std::time::Instant::now();
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &clock)
        .execute(&plan);
    eprintln!(
        "healthy: {} certificates renewed, {} restarts, pass work {} ms, slept {} s on the pass's clock",
        report.renewed().len(),
        report.restarted().len(),
        started.elapsed().as_millis(),
        clock.slept().iter().map(|d| d.as_secs()).sum::<u64>()
    );
    assert!(report.ok(), "{}", report.summary());
    // The API server reloads every file of its group by itself (docs/reloads.md), so
    // it is given 5 s to serve the new certificate, probed every 500 ms; this fake keeps
    // the old one until restarted, so it is restarted after all. Then the gaps.
    let mut expected = vec![StdDuration::from_millis(500); 10];
    expected.extend([StdDuration::from_secs(30), StdDuration::from_secs(30)]);
    assert_eq!(clock.slept(), expected, "{}", report.summary());
}

/// A healthy scheduler first, then an API server that is down: its restart does not wait.
#[test]
fn a_component_that_is_down_restarts_without_the_gap() {
    let at = now();
    let spec = NodeSpec::control_plane(at)
        .with("scheduler.conf", Validity::days(365, Duration::days(12)))
        .with("apiserver", Validity::days(365, Duration::days(50)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let plan = pass::plan_run(&root, &s, &state, at);
    let comps: Vec<String> = plan.groups.iter().map(|g| g.component_name()).collect();
    assert_eq!(comps, ["kube-scheduler", "kube-apiserver"]);
    let prober = FakeProber::down_until_restarted(r, &[(6443, APISERVER_YAML)]);
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(at);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &clock)
        .execute(&plan);
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.restarted().len(), 2, "{}", report.summary());
    assert!(clock.slept().is_empty(), "{:?}", clock.slept());
    let h = pass::load_history(&state);
    assert_eq!(h.restarts.len(), 2);
}

/// The cap defers a healthy component's renewal to the next pass, not a broken one's.
#[test]
fn the_restart_cap_does_not_hold_back_a_broken_component() {
    let at = now();
    let spec = NodeSpec::control_plane(at)
        .with("scheduler.conf", Validity::days(365, Duration::days(20)))
        .with("apiserver", Validity::days(365, Duration::days(50)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let mut s = settings();
    s.run.max_restarts_per_pass = 1;
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let mut plan = pass::plan_run(&root, &s, &state, at);
    assert_eq!(plan.deferred.len(), 1);
    assert_eq!(plan.deferred[0].group.component_name(), "kube-apiserver");
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(at);
    let healthy = FakeProber::until_restarted(
        r,
        &[(6443, "/etc/kubernetes/pki/apiserver.crt", APISERVER_YAML)],
    );
    let edges = Edges {
        services: &services,
        prober: &healthy,
        clock: &clock,
        lock: None,
    };
    assert!(pass::broken_deferred(&edges, &NodeReader::new(&root, &s), &plan).is_empty());
    let down = FakeProber::down_until_restarted(r, &[(6443, APISERVER_YAML)]);
    let edges = Edges {
        services: &services,
        prober: &down,
        clock: &clock,
        lock: None,
    };
    let broken = pass::broken_deferred(&edges, &NodeReader::new(&root, &s), &plan);
    assert_eq!(broken.len(), 1);
    assert!(broken[0].1.contains("127.0.0.1:6443") || broken[0].1.contains("10.0.0.10:6443"));
    cert_rotator::plan::lift_cap_for_broken(&mut plan, &broken);
    assert!(plan.deferred.is_empty());
    assert_eq!(plan.groups.len(), 2);
    let report = TestPass::new(&root, &s, &state)
        .live(&services, &down, &clock)
        .execute(&plan);
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.restarted().len(), 2, "{}", report.summary());
}

/// Under `--root` nothing restarts, so the cap defers nothing: the demo's node is
/// renewed whole, its kubelet client certificate included.
#[test]
fn a_pass_that_restarts_nothing_defers_nothing() {
    let at = now();
    let spec = NodeSpec::control_plane(at)
        .with("apiserver", Validity::days(365, Duration::days(20)))
        .with("scheduler.conf", Validity::days(365, -Duration::days(3)))
        .with(
            "kubelet-client-current.pem",
            Validity::days(91, Duration::days(25)),
        );
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    // A live pass would restart three components: the cap (2) defers one.
    assert_eq!(pass::plan_run(&root, &s, &state, at).deferred.len(), 1);
    let plan = pass::plan_run_with(&root, &s, &state, at, &pass::plan_options(&root));
    assert!(plan.deferred.is_empty(), "{plan:?}");
    assert_eq!(plan.groups.len(), 3);
    let out = run(r, &["run"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("renewed (3)"), "{all}");
    assert!(!all.contains("deferred"), "{all}");
}

/// After a restart, only a process started after it counts: kube-apiserver's old process
/// serves the new files and is ready until it is stopped (docs/reloads.md), so a restart
/// it survives (the kubelet never recreated the pod, or the new one never came up) fails
/// the verification; the new process's answers pass it, naming its pid.
#[test]
fn a_restart_is_verified_by_the_new_process_only() {
    let at = now();
    let d = node(&NodeSpec::control_plane(at));
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(at);
    let restart = |prober: &FakeProber| {
        // Files only: the restart's edges are handed to it, not taken from the pass.
        let edges = Edges {
            services: &services,
            prober,
            clock: &clock,
            lock: None,
        };
        TestPass::new(&root, &s, &state).with(|p| {
            cert_rotator::rollout::restart_and_verify(
                p,
                &edges,
                &cert_rotator::model::Component::KubeApiserver,
                cert_rotator::plan::Reload::StaticPod("kube-apiserver".into()),
                &["1".into()],
            )
        })
    };
    // The kubelet recreates the pod: verified by its new process.
    let prober = FakeProber::until_restarted(
        r,
        &[(6443, "/etc/kubernetes/pki/apiserver.crt", APISERVER_YAML)],
    );
    let done = restart(&prober).unwrap();
    let (restarted, verified) = (
        section(&done, Section::Restarted),
        section(&done, Section::Verified),
    );
    assert_eq!(restarted.len(), 1, "{restarted:?}");
    assert_eq!(verified.len(), 3, "{verified:?}");
    for line in &verified {
        assert!(line.contains(", answered by pid 101 (started "), "{line}");
    }
    // The old process serves the new certificate, ready, for ever: not verified.
    let prober = FakeProber::new(r, &[]).old_process_on(6443);
    clock.advance(time::Duration::minutes(10));
    let e = restart(&prober).unwrap_err().to_string();
    assert_eq!(
        e,
        "not verified within 2s: 10.0.0.10:6443 is still answered by pid 100, which was there before the restart was requested"
    );
}

/// Counts, per component, the inventory's reads of where it listens (its debug line
/// `read where the component listens`, with the `component` and `endpoints` fields).
#[derive(Clone, Default)]
struct EndpointReads(Arc<Mutex<BTreeMap<String, usize>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EndpointReads {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            component: Option<String>,
            endpoints: bool,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                match f.name() {
                    "component" => self.component = Some(format!("{v:?}")),
                    "endpoints" => self.endpoints = true,
                    _ => {}
                }
            }
        }
        if e.metadata().target() != "cert_rotator::inventory" {
            return;
        }
        let mut f = Fields::default();
        e.record(&mut f);
        if let (Some(c), true) = (f.component, f.endpoints) {
            *self.0.lock().unwrap().entry(c).or_default() += 1;
        }
    }
}

/// One `run` reads each component's endpoints once, however many steps look at them:
/// the broken check of a deferred group, the probe before the restart lock and before
/// the restart, the lock's check for a broken component, and the verification.
#[test]
fn one_run_reads_each_components_endpoints_once() {
    use tracing_subscriber::layer::SubscriberExt;
    let at = now();
    let spec = NodeSpec::control_plane(at)
        .with("scheduler.conf", Validity::days(365, Duration::days(20)))
        .with("apiserver", Validity::days(365, Duration::days(50)));
    let d = node(&spec);
    let r = d.path();
    let root = NodeRoot::new(r).with_liveness(cert_rotator::node::Liveness::Live);
    let mut s = settings();
    // The cap defers kube-apiserver, which is down: lifted as broken.
    s.run.max_restarts_per_pass = 1;
    s.coordination.id = Some("cp-a".into());
    s.coordination.wait_seconds = 0;
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let services = RecordingServiceManager::new();
    let clock = FakeClock::at(at);
    let prober = FakeProber::down_until_restarted(r, &[(6443, APISERVER_YAML)]);
    // The control-plane group's first slot is refused: the lock checks whether the
    // component is already broken.
    let lock = common::fakes::FakeLock::new("cp-a", vec![Some(common::fakes::FakeLock::busy("x"))]);
    let p = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &clock)
        .lock(Some(&lock));
    let reads = EndpointReads::default();
    let subscriber = tracing_subscriber::registry().with(reads.clone());
    let report =
        tracing::subscriber::with_default(subscriber, || p.with(|p| pass::run(p, at, &mut |_| {})));
    assert!(report.ok(), "{}", report.summary());
    // kube-apiserver restarted without the slot (broken); kube-scheduler waits for one.
    assert_eq!(report.restarted().len(), 1, "{}", report.summary());
    assert!(
        lock.calls().iter().any(|c| c.starts_with("acquire")),
        "{:?}",
        lock.calls()
    );
    assert_eq!(
        *reads.0.lock().unwrap(),
        BTreeMap::from([
            ("kube-apiserver".to_string(), 1),
            ("kube-scheduler".to_string(), 1)
        ]),
        "{}",
        report.summary()
    );
}
