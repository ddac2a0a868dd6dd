//! State read back is trusted only as far as the agent could have written it (issue
//! 18, item 4, the restart lock's half): a hand-edited `<state>/restart-lock.json` must
//! not make a live pass's rollback write /etc/passwd from a "backup" it names, nor
//! restart a unit it names. The pass refuses, names the file, and changes nothing.

mod common;

use std::path::Path;

use cert_rotator::clock::Clock;
use cert_rotator::config::coordination::CoordinationSettings;
use cert_rotator::config::Settings;
use cert_rotator::coordination::{self, LockState, PendingRestart};
use cert_rotator::node::NodeRoot;
use cert_rotator::pass;
use cert_rotator::report::pass::PassReport;
use cert_rotator::verify::Prober;
use cert_rotator::write::{StateDir, WrittenFile};
use common::fakes::{FakeClock, FakeLock, FakeProber, RecordingServiceManager};
use common::*;

fn settings() -> Settings {
    let mut s = Settings::default();
    s.run.min_restart_gap_seconds = 0;
    s.run.verify_timeout_seconds = 3;
    s.coordination = CoordinationSettings {
        id: Some("cp-a".into()),
        ..Default::default()
    };
    s
}

/// A control-plane node whose apiserver certificate is due.
fn due_node() -> tempfile::TempDir {
    node(&NodeSpec::control_plane(now()).with("apiserver", Validity::days(365, Duration::days(10))))
}

fn owed(component: &str, files: &[(&str, &str)]) -> PendingRestart {
    PendingRestart {
        component: component.into(),
        files: files
            .iter()
            .map(|(f, b)| WrittenFile {
                path: f.into(),
                backup_dir: b.into(),
                created: Some(false),
            })
            .collect(),
        serials: vec!["01".into()],
        since: now(),
        why: "no restart slot".into(),
    }
}

/// A live pass on fakes: `prober` answers, every restart is recorded.
fn live_pass(r: &Path, prober: &dyn Prober, services: &RecordingServiceManager) -> PassReport {
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let clock = FakeClock::at(now());
    let plan = pass::plan_run(&root, &s, &state, clock.now());
    let lock = FakeLock::new("cp-a", vec![]);
    TestPass::new(&root, &s, &state)
        .live(services, prober, &clock)
        .lock(Some(&lock))
        .execute(&plan)
}

/// Node files but the agent's own state.
fn node_files(r: &Path) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    snapshot(r)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("var/lib/cert-rotator"))
        .collect()
}

#[test]
fn a_rollback_never_restores_a_file_the_record_names_outside_the_nodes_certificates() {
    let d = due_node();
    let r = d.path();
    std::fs::write(host(r, "/etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let evil = host(
        r,
        "/var/lib/cert-rotator/backup/2026-01-01T00:00:00Z/etc/passwd",
    );
    std::fs::create_dir_all(evil.parent().unwrap()).unwrap();
    std::fs::write(&evil, "root::0:0:pwned:/root:/bin/bash\n").unwrap();
    write_lock_state(
        r,
        &LockState {
            pending: vec![owed(
                "kube-apiserver",
                &[(
                    "/etc/passwd",
                    "/var/lib/cert-rotator/backup/2026-01-01T00:00:00Z",
                )],
            )],
            failed_groups: vec![],
        },
    );
    let before = node_files(r);
    // The apiserver keeps serving its old certificate: verification fails, the pass
    // rolls back what it wrote.
    let prober = FakeProber::new(r, &[(6443, "/etc/kubernetes/pki/apiserver.crt")]);
    let services = RecordingServiceManager::new();
    let rep = live_pass(r, &prober, &services);
    assert_eq!(
        std::fs::read_to_string(host(r, "/etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/bash\n"
    );
    assert!(!rep.ok(), "{}", rep.summary());
    let all = rep.failed().join("\n");
    assert!(
        all.contains("/var/lib/cert-rotator/restart-lock.json"),
        "{all}"
    );
    assert!(all.contains("/etc/passwd"), "{all}");
    assert!(rep.renewed().is_empty(), "{}", rep.summary());
    assert_eq!(node_files(r), before, "{}", rep.summary());
}

#[test]
fn a_unit_the_record_names_is_not_restarted_unless_a_target_restarts_it() {
    let d = due_node();
    let r = d.path();
    write_lock_state(
        r,
        &LockState {
            pending: vec![owed("sshd.service", &[])],
            failed_groups: vec![],
        },
    );
    let before = node_files(r);
    let prober = FakeProber::until_restarted(
        r,
        &[(
            6443,
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
        )],
    );
    let services = RecordingServiceManager::new();
    let rep = live_pass(r, &prober, &services);
    assert!(
        services.restarted().is_empty(),
        "{:?}",
        services.restarted()
    );
    let all = rep.failed().join("\n");
    assert!(
        all.contains("restart-lock.json") && all.contains("\"sshd.service\""),
        "{all}"
    );
    assert_eq!(node_files(r), before, "{}", rep.summary());
}

#[test]
fn backups_outside_the_state_directory_and_unknown_groups_are_refused() {
    for (state, expect) in [
        (
            LockState {
                pending: vec![owed(
                    "kube-apiserver",
                    &[("/etc/kubernetes/pki/apiserver.crt", "/etc")],
                )],
                failed_groups: vec![],
            },
            "/etc (the backup of /etc/kubernetes/pki/apiserver.crt) is not a backup directory",
        ),
        (
            LockState {
                pending: vec![owed(
                    "kube-apiserver",
                    &[(
                        "/etc/kubernetes/pki/apiserver.crt",
                        "/var/lib/cert-rotator/backup/../../../../etc",
                    )],
                )],
                failed_groups: vec![],
            },
            "is not a backup directory",
        ),
        (
            LockState {
                pending: vec![owed(
                    "kube-apiserver",
                    &[(
                        "/etc/kubernetes/pki/apiserver.crt",
                        "/var/lib/cert-rotator/backup/2026-12-01T10:00:00Z/.before/x",
                    )],
                )],
                failed_groups: vec![],
            },
            "is not a backup directory",
        ),
        (
            LockState {
                pending: vec![owed(
                    "kube-apiserver",
                    &[(
                        "/etc/kubernetes/pki/apiserver.crt",
                        "/var/lib/cert-rotator/.before/1",
                    )],
                )],
                failed_groups: vec![],
            },
            "is not a backup directory",
        ),
        (
            LockState {
                pending: vec![],
                failed_groups: vec!["sshd".into()],
            },
            "group \"sshd\" is none of the configured lock groups",
        ),
    ] {
        let d = due_node();
        let r = d.path();
        write_lock_state(r, &state);
        let before = node_files(r);
        let prober = FakeProber::new(r, &[]);
        let services = RecordingServiceManager::new();
        let rep = live_pass(r, &prober, &services);
        let all = rep.failed().join("\n");
        assert!(all.contains(expect), "{expect:?} not in {all}");
        assert!(services.restarted().is_empty());
        assert_eq!(node_files(r), before, "{}", rep.summary());
    }
}

#[test]
fn what_the_agent_itself_owes_is_still_restarted() {
    // A record as a pass that could not have a slot leaves it: the renewed apiserver
    // files with this pass's backup generation.
    let d = due_node();
    let r = d.path();
    write_lock_state(
        r,
        &LockState {
            pending: vec![owed(
                "kube-apiserver",
                &[
                    (
                        "/etc/kubernetes/pki/apiserver.crt",
                        "/var/lib/cert-rotator/backup/2026-12-01T10:00:00Z",
                    ),
                    // A change set's own before-images in the generation
                    // (the pass had written the key before).
                    (
                        "/etc/kubernetes/pki/apiserver.key",
                        "/var/lib/cert-rotator/backup/2026-12-01T10:00:00Z/.before/1",
                    ),
                ],
            )],
            failed_groups: vec!["control-plane".into()],
        },
    );
    let prober = FakeProber::until_restarted(
        r,
        &[(
            6443,
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
        )],
    );
    let services = RecordingServiceManager::new();
    let rep = live_pass(r, &prober, &services);
    assert!(rep.ok(), "{}", rep.summary());
    assert_eq!(rep.restarted().len(), 1, "{}", rep.summary());
}

#[test]
fn the_kubelets_dated_files_and_symlinked_paths_are_known() {
    let d = due_node();
    let r = d.path();
    let root = NodeRoot::new(r);
    let s = settings();
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let path = state.path(coordination::STATE_FILE);
    let b = "/var/lib/cert-rotator/backup/2026-12-01T10:00:00Z";
    let check = |component: &str, file: &str| {
        let ls = LockState {
            pending: vec![owed(component, &[(file, b)])],
            failed_groups: vec![],
        };
        pass::trust::check_lock_state(&root, &s, &state, &path, &ls).map_err(|e| e.to_string())
    };
    check(
        "kubelet",
        "/var/lib/kubelet/pki/kubelet-client-2026-12-01-10-00-00.pem",
    )
    .unwrap();
    check("kubelet", "/var/lib/kubelet/pki/kubelet-client-current.pem").unwrap();
    check("kube-scheduler", "/etc/kubernetes/scheduler.conf").unwrap();
    for bad in [
        "/var/lib/kubelet/pki/../../../../etc/shadow",
        "/var/lib/kubelet/pki/other-2026.pem",
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
        "etc/kubernetes/scheduler.conf",
    ] {
        let e = check("kubelet", bad).unwrap_err();
        assert!(
            e.contains("restart-lock.json") && e.contains("none of the node's"),
            "{bad}: {e}"
        );
    }
    // A backup generation that is a symlink out of the state directory.
    let link = host(r, "/var/lib/cert-rotator/backup/2026-12-02T10:00:00Z");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let ls = LockState {
        pending: vec![owed(
            "kube-scheduler",
            &[(
                "/etc/kubernetes/scheduler.conf",
                "/var/lib/cert-rotator/backup/2026-12-02T10:00:00Z",
            )],
        )],
        failed_groups: vec![],
    };
    let e = pass::trust::check_lock_state(&root, &s, &state, &path, &ls)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a backup directory"), "{e}");
}

#[test]
fn a_restart_history_from_the_future_holds_a_pass_up_for_two_gaps_at_most() {
    let d = due_node();
    let r = d.path();
    let p = host(r, "/var/lib/cert-rotator/history.json");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let future = cert_rotator::timefmt::rfc3339(now() + Duration::days(3650));
    std::fs::write(
        &p,
        format!(r#"{{"restarts":[{{"component":"etcd","control_plane":true,"at":"{future}"}}]}}"#),
    )
    .unwrap();
    let root = NodeRoot::new(r);
    let mut s = settings();
    s.run.min_restart_gap_seconds = 30;
    let state = StateDir::new(&root, &s.state_dir, s.keep_backups);
    let clock = FakeClock::at(now());
    let plan = pass::plan_run(&root, &s, &state, clock.now());
    let prober = FakeProber::until_restarted(
        r,
        &[(
            6443,
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
        )],
    );
    let services = RecordingServiceManager::new();
    let rep = TestPass::new(&root, &s, &state)
        .live(&services, &prober, &clock)
        .execute(&plan);
    assert!(rep.ok(), "{}", rep.summary());
    let slept: std::time::Duration = clock.slept().iter().sum();
    // Two gaps at most, and the 5 s this apiserver stand-in (which never reloads by
    // itself) is given to do so (docs/reloads.md).
    assert!(
        slept <= std::time::Duration::from_secs(65),
        "a history dated ten years ahead held the pass up for {slept:?}"
    );
}

#[test]
fn a_hand_edited_write_ahead_record_deletes_and_moves_nothing() {
    for (phase, staged) in [("staging", "/etc/shadow"), ("committing", "/etc/shadow")] {
        let d = due_node();
        let r = d.path();
        std::fs::write(host(r, "/etc/shadow"), "root:*:20000::::::\n").unwrap();
        let j = host(r, "/var/lib/cert-rotator/journal.json");
        std::fs::create_dir_all(j.parent().unwrap()).unwrap();
        std::fs::write(
            &j,
            format!(
                r#"{{"label":"renew apiserver","phase":"{phase}","started":"2026-12-01T10:00:00Z",
                   "entries":[{{"path":"/etc/passwd","staged":"{staged}","backup":null}}]}}"#
            ),
        )
        .unwrap();
        for args in [&["recover"][..], &["run"][..]] {
            let all = fails_and_changes_nothing(
                r,
                &mut agent(r, args),
                &[
                    "/var/lib/cert-rotator/journal.json",
                    "/etc/shadow is not the agent's staged file for /etc/passwd",
                ],
            );
            assert!(host(r, "/etc/shadow").exists(), "{phase} {args:?}: {all}");
        }
    }
}
