//! The kubeadm guard (issue 18, item 3): it must see a kubeadm run however full its
//! tmp directory is, and nobody but root (or the Kubernetes directory's owner) may trip
//! it; a directory dated in the future is no run.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant, SystemTime};

use cert_rotator::inventory::kubeadm;
use common::*;

/// Node files, the agent's own state left out.
fn node_files(root: &Path) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    snapshot(root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("var/lib/cert-rotator"))
        .collect()
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::open(p).unwrap().set_modified(t).unwrap();
}

#[test]
fn a_fresh_upgrade_is_seen_among_thousands_of_kept_backups_and_status_says_since_when() {
    let spec = NodeSpec::control_plane(now())
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)));
    let d = node(&spec);
    let r = d.path();
    let tmp = host(r, "/etc/kubernetes/tmp");
    let long_ago = SystemTime::now() - StdDuration::from_secs(3 * 3600);
    // More entries than the old scan looked at, all sorting before the fresh one.
    for i in 0..5000 {
        let b = tmp.join(format!("kubeadm-backup-manifests-2025-01-01-00-{i:05}"));
        std::fs::create_dir_all(&b).unwrap();
        set_mtime(&b, long_ago);
    }
    let fresh = tmp.join("kubeadm-upgraded-manifests1284917823");
    std::fs::create_dir(&fresh).unwrap();
    let before = node_files(r);
    for pass in 1..=2 {
        let out = run(r, &["run"]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(0), "{all}");
        assert!(
            all.contains("kubeadm is at work on this node: /etc/kubernetes/tmp/kubeadm-upgraded-manifests1284917823"),
            "{all}"
        );
        assert!(
            all.contains(&format!("{pass} pass(es) skipped since")),
            "{all}"
        );
        assert_eq!(node_files(r), before, "the node changed:\n{all}");
    }
    let out = run(r, &["status"]);
    assert!(
        text(&out).contains("kubeadm: 2 pass(es) skipped since"),
        "{}",
        text(&out)
    );
    let (v, _) = status_json(r);
    assert!(
        v["kubeadm_skipped"]
            .as_str()
            .is_some_and(|s| s.contains("because kubeadm was at work")),
        "{v:#}"
    );
    // kubeadm done: the next pass renews and the row of skips ends.
    std::fs::remove_dir(&fresh).unwrap();
    let out = run(r, &["run"]);
    assert!(text(&out).contains("renewed (1)"), "{}", text(&out));
    let (v, _) = status_json(r);
    assert!(v.get("kubeadm_skipped").is_none(), "{v:#}");
}

#[test]
fn a_kubeadm_directory_dated_far_in_the_future_stops_nothing() {
    let spec = NodeSpec::control_plane(now())
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)));
    let d = node(&spec);
    let r = d.path();
    let dir = host(
        r,
        "/etc/kubernetes/tmp/kubeadm-backup-etcd-2027-01-01-00-00-00",
    );
    std::fs::create_dir_all(&dir).unwrap();
    set_mtime(&dir, SystemTime::now() + StdDuration::from_secs(2 * 86400));
    let out = run(r, &["run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("kubeadm is at work"), "{}", text(&out));
    assert!(text(&out).contains("renewed (1)"), "{}", text(&out));
    // Within the clock-skew tolerance it is a run.
    let d = node(&spec);
    let r = d.path();
    let dir = host(r, "/etc/kubernetes/tmp/kubeadm-upgraded-manifests7");
    std::fs::create_dir_all(&dir).unwrap();
    set_mtime(&dir, SystemTime::now() + StdDuration::from_secs(60));
    let out = run(r, &["run"]);
    assert!(text(&out).contains("kubeadm is at work"), "{}", text(&out));
}

/// A copy of sleep named `kubeadm`, run as `uid`; killed when dropped.
struct FakeKubeadm {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl FakeKubeadm {
    fn start(uid: u32) -> FakeKubeadm {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.path().join("kubeadm");
        let sleep = ["/usr/bin/sleep", "/bin/sleep"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sleep");
        std::fs::copy(sleep, &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let child = Command::new(&exe)
            .arg("60")
            .uid(uid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fake kubeadm");
        let comm = format!("/proc/{}/comm", child.id());
        let started = Instant::now();
        while std::fs::read_to_string(&comm)
            .map(|c| c.trim() == "kubeadm")
            .ok()
            != Some(true)
        {
            assert!(started.elapsed() < StdDuration::from_secs(10), "{comm}");
            std::thread::sleep(StdDuration::from_millis(20));
        }
        FakeKubeadm { child, _dir: dir }
    }
}

impl Drop for FakeKubeadm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_process_named_kubeadm_counts_only_when_root_runs_a_kubeadm_binary() {
    if !nix_is_root() {
        eprintln!("skipped: needs root to run a process as another user");
        return;
    }
    let nobody = FakeKubeadm::start(65534);
    let found = kubeadm::processes(Path::new("/proc"), std::process::id());
    assert!(
        found.iter().all(|p| p.pid != nobody.child.id()),
        "nobody's copy of sleep named kubeadm stops the root agent: {found:?}"
    );
    // Root's is a kubeadm at work, with its age.
    let rooted = FakeKubeadm::start(0);
    let found = kubeadm::processes(Path::new("/proc"), std::process::id());
    let p = found
        .iter()
        .find(|p| p.pid == rooted.child.id())
        .unwrap_or_else(|| panic!("root's kubeadm not seen: {found:?}"));
    assert_eq!(p.uid, 0);
    assert!(p.age_seconds.is_some_and(|a| a < 60), "{p:?}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
