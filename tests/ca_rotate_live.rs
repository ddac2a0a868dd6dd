//! `ca rotate` on the live node, through the library with the pass's doubles for
//! systemd, the TLS prober and the clock: what holds the CA restarts in order, one at
//! a time, each verified; a failed restart resumes; an abort restarts only what it
//! restored and leaves the manifests as before `start`.

mod common;

use common::rotation::*;
use common::*;

/// On the live node (the pass's doubles for systemd, the TLS prober and the clock):
/// each phase restarts what holds the CA, in order, one at a time, each verified; a
/// failed restart leaves the phase unverified, and the same command resumes it.
#[test]
fn on_the_live_node_each_phase_restarts_what_holds_the_ca_in_order_and_a_failure_resumes() {
    use cert_rotator::authority::rotation::{self, steps::Ctx, Command, StartOptions};
    use cert_rotator::config::Settings;
    use cert_rotator::node::NodeRoot;
    use cert_rotator::pass::{Edges, Restarts};
    use cert_rotator::write::StateDir;
    use common::fakes::{FakeClock, FakeProber, RecordingServiceManager};

    let d = ecdsa_node();
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = Settings::default();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let prober = FakeProber::new(r, &[]);
    let clock = FakeClock::at(now());
    let phase = |services: &RecordingServiceManager, ca: &'static str, cmd: Command| {
        let ctx = Ctx {
            root: &root,
            settings: &s,
            state: &state,
            restarts: Restarts::Live(Edges {
                services,
                prober: &prober,
                clock: &clock,
                lock: None,
            }),
            now: now(),
        };
        let opts = StartOptions {
            cross_sign: true,
            ..Default::default()
        };
        rotation::rotate(&ctx, ca, cmd, &opts)
    };
    let restarted = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.split_once(": restarted "))
            .map(|(_, rest)| rest.split(':').next().unwrap().to_string())
            .collect()
    };
    let ok = RecordingServiceManager::new();
    let out = phase(&ok, "etcd/ca", Command::Start).unwrap();
    assert!(
        restarted(&out.lines).is_empty(),
        "start restarts nothing: {out:?}"
    );
    let out = phase(&ok, "etcd/ca", Command::Trust).unwrap();
    assert_eq!(restarted(&out.lines), ["etcd", "kube-apiserver"], "{out:?}");
    assert!(
        out.lines.iter().any(|l| l.contains("etcd serves serial")),
        "{out:?}"
    );
    let out = phase(&ok, "etcd/ca", Command::Issue).unwrap();
    assert_eq!(restarted(&out.lines), ["etcd", "kube-apiserver"], "{out:?}");
    // Verified against what is on disk now: the new etcd serving certificate.
    let served = common::fakes::serial_of(&host(r, "/etc/kubernetes/pki/etcd/server.crt"));
    assert!(
        out.lines
            .iter()
            .any(|l| l.contains(&format!("etcd serves serial {served}"))),
        "{out:?}"
    );

    // The cluster CA, with a kubelet that fails to restart at trust.
    let failing = RecordingServiceManager::new();
    failing.fail_unit("kubelet.service", "failed");
    phase(&ok, "ca", Command::Start).unwrap();
    let e = phase(&failing, "ca", Command::Trust)
        .unwrap_err()
        .to_string();
    assert!(e.contains("kubelet"), "{e}");
    assert_eq!(
        rotation::phase_of(&state, "ca"),
        "trusting",
        "the files are in place"
    );
    let refused = phase(&ok, "ca", Command::Issue).unwrap_err().to_string();
    assert!(refused.contains("run `trust` again first"), "{refused}");
    let out = phase(&ok, "ca", Command::Trust).unwrap();
    assert!(
        out.lines
            .iter()
            .any(|l| l.contains("restarting and verifying")),
        "{out:?}"
    );
    assert_eq!(
        restarted(&out.lines),
        [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet.service"
        ],
        "{out:?}"
    );
    assert_eq!(
        ok.restarted().last().map(String::as_str),
        Some("kubelet.service")
    );
    // Control-plane restarts are paced by the pass's gap.
    assert!(!clock.slept().is_empty());
}

/// On the live node (the pass's doubles), `abort` restarts only what it restored:
/// nothing after `start`; after `trust` or `issue` each component that holds the CA,
/// in order, a static pod by its manifest of before `start` written back (no restart
/// annotation left behind), so every node file ends byte-identical, manifests too.
#[test]
fn a_live_abort_restarts_only_what_it_restored_and_leaves_the_manifests_as_before_start() {
    use cert_rotator::authority::rotation::{self, steps::Ctx, Command, StartOptions};
    use cert_rotator::config::Settings;
    use cert_rotator::node::NodeRoot;
    use cert_rotator::pass::{Edges, Restarts};
    use cert_rotator::write::StateDir;
    use common::fakes::{FakeClock, FakeProber, RecordingServiceManager};

    let restarted = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.split_once(": restarted "))
            .map(|(_, rest)| rest.split(':').next().unwrap().to_string())
            .collect()
    };
    // (CA, phases after start, what abort restarts in order, the units among them)
    type Case = (
        &'static str,
        &'static [Command],
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: [Case; 5] = [
        ("ca", &[], &[], &[]),
        ("etcd/ca", &[], &[], &[]),
        (
            "ca",
            &[Command::Trust],
            &[
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet.service",
            ],
            &["kubelet.service"],
        ),
        (
            "ca",
            &[Command::Trust, Command::Issue],
            &[
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet.service",
            ],
            &["kubelet.service"],
        ),
        (
            "etcd/ca",
            &[Command::Trust, Command::Issue],
            &["etcd", "kube-apiserver"],
            &[],
        ),
    ];
    for (ca, phases, want, units) in cases {
        let d = ecdsa_node();
        let r = d.path();
        let before = node_files(r);
        let root = NodeRoot::new(r);
        let s = Settings::default();
        let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
        let prober = FakeProber::new(r, &[]);
        let clock = FakeClock::at(now());
        let phase = |services: &RecordingServiceManager, cmd: Command| {
            let ctx = Ctx {
                root: &root,
                settings: &s,
                state: &state,
                restarts: Restarts::Live(Edges {
                    services,
                    prober: &prober,
                    clock: &clock,
                    lock: None,
                }),
                now: now(),
            };
            let opts = StartOptions {
                cross_sign: true,
                ..Default::default()
            };
            rotation::rotate(&ctx, ca, cmd, &opts)
        };
        let during = RecordingServiceManager::new();
        phase(&during, Command::Start).unwrap();
        for c in phases {
            phase(&during, *c).unwrap();
        }
        let manifests = "etc/kubernetes/manifests";
        if !phases.is_empty() {
            // The phases annotated the manifests: abort has something to undo there.
            assert!(node_files(r)
                .iter()
                .any(|(p, v)| p.starts_with(manifests) && before.get(p) != Some(v)));
        }
        let services = RecordingServiceManager::new();
        let out = phase(&services, Command::Abort).unwrap();
        let case = format!("{ca} abort after start{phases:?}: {out:?}");
        assert_eq!(restarted(&out.lines), want, "{case}");
        assert_eq!(services.restarted(), units, "{case}");
        let written_back = out
            .lines
            .iter()
            .filter(|l| l.contains("written back"))
            .count();
        assert_eq!(written_back, want.len() - units.len(), "{case}");
        assert!(out.must_restart.is_empty(), "{case}");
        assert_eq!(node_files(r), before, "{case}");
        assert_eq!(rotation::phase_of(&state, ca), "none", "{case}");
    }
}
