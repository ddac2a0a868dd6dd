//! Crash safety: the process is killed at every step of a renewal (each write, fsync,
//! rename and directory fsync, via the `failpoints` feature, which aborts the process as
//! kill -9 would), and by real SIGKILLs at random instants. After the next start
//! (`recover`), every certificate must sit with its own key, each target must be wholly
//! old or wholly new, and no temp file may be left.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cert_rotator::pki::KeyAlgorithm;
use common::*;

const TARGETS: [&str; 3] = [
    "/etc/kubernetes/pki/apiserver.crt",
    "/etc/kubernetes/admin.conf",
    "/var/lib/kubelet/pki/kubelet-client-current.pem",
];

fn serials(r: &Path) -> BTreeMap<String, String> {
    let (v, code) = status_json(r);
    assert_eq!(code, 0, "a pair is broken after recovery: {v:#}");
    assert!(v["unfinished_write"].is_null(), "{v:#}");
    v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["serial"].is_null())
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["serial"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn no_strays(r: &Path) {
    for (p, _) in snapshot(r) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.contains("cert-rotator.tmp") && name != "kubelet-client-updated.pem",
            "stray file after recovery: {p:?}"
        );
    }
}

fn ecdsa_node() -> tempfile::TempDir {
    let mut spec = NodeSpec::control_plane(now());
    // ECDSA keys keep the hundreds of runs fast; the write path is the same for RSA.
    spec.key_algorithm = KeyAlgorithm::EcdsaP256;
    node(&spec)
}

#[test]
fn a_crash_at_every_step_leaves_old_or_new_pairs_after_recovery() {
    let d = ecdsa_node();
    let r = d.path();
    let mut points = 0;
    for n in 1.. {
        let before = serials(r);
        let out = Command::new(bin())
            .arg("--root")
            .arg(r)
            .arg("renew")
            .args(TARGETS)
            .env("CERT_ROTATOR_FAILPOINT", n.to_string())
            .output()
            .unwrap();
        let crashed = out.status.code().is_none();
        if !crashed {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(n > 20, "only {n} failpoints: is the failpoints feature on?");
            break;
        }
        points += 1;
        // Before recovery, status tells of an unfinished write when one was recorded.
        if host(r, "/var/lib/cert-rotator/journal.json").exists() {
            let (v, _) = status_json(r);
            let w = v["unfinished_write"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                w.contains("phase"),
                "failpoint {n}: status hides the unfinished write: {v:#}"
            );
        }
        let rec = run(r, &["recover"]);
        assert!(
            rec.status.success(),
            "recover after failpoint {n}: {}",
            String::from_utf8_lossy(&rec.stderr)
        );
        let after = serials(r);
        no_strays(r);
        // Each target is wholly old or wholly new; a status with exit 0 proved each
        // certificate still matches its key.
        let changed: Vec<_> = before.keys().filter(|k| before[*k] != after[*k]).collect();
        assert!(changed.len() <= TARGETS.len(), "failpoint {n}: {changed:?}");
        let link =
            std::fs::read_link(host(r, "/var/lib/kubelet/pki/kubelet-client-current.pem")).unwrap();
        assert!(
            host(r, link.to_str().unwrap()).is_file(),
            "failpoint {n}: symlink dangles"
        );
    }
    assert!(points > 20, "crashed at {points} points only");
}

#[test]
fn sigkill_at_random_instants_leaves_consistent_pairs() {
    let d = ecdsa_node();
    let r = d.path();
    let mut seed = std::process::id() as u64;
    for _ in 0..25 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = std::time::Duration::from_micros((seed >> 33) % 40_000);
        let mut child = Command::new(bin())
            .arg("--root")
            .arg(r)
            .arg("renew-all")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // Child::kill is SIGKILL on Unix.
        let _ = child.kill();
        let _ = child.wait();
        let rec = run(r, &["recover"]);
        assert!(
            rec.status.success(),
            "{}",
            String::from_utf8_lossy(&rec.stderr)
        );
        serials(r);
        no_strays(r);
    }
}

/// The copies of each CA as `ca status --json` reports them: per CA, the set of
/// fingerprints its copies hold, and whether every copy holds the CA file's certificate.
fn ca_copies(r: &Path) -> BTreeMap<String, (Vec<String>, bool)> {
    let out = run(r, &["ca", "status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut fps: Vec<String> = a["copies"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["sha256"].as_array().unwrap().clone())
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            fps.sort();
            fps.dedup();
            let current = a["copies"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["current"] == true);
            (a["name"].as_str().unwrap().to_string(), (fps, current))
        })
        .collect()
}

/// `ca renew` writes the CA files and every kubeconfig embedding a CA in one change set:
/// a crash at any step leaves, after recovery, every copy of each CA old or every copy
/// new, never a mix.
#[test]
fn a_crash_at_every_step_of_a_ca_renewal_leaves_every_copy_old_or_new() {
    let mut spec = NodeSpec::control_plane(now());
    spec.key_algorithm = KeyAlgorithm::EcdsaP256;
    spec.ca_validity = Validity::days(3650, Duration::days(500));
    let d = node(&spec);
    let r = d.path();
    let mut points = 0;
    for n in 1.. {
        let before = ca_copies(r);
        let out = Command::new(bin())
            .arg("--root")
            .arg(r)
            .args(["ca", "renew", "ca", "etcd/ca"])
            .env("CERT_ROTATOR_FAILPOINT", n.to_string())
            .output()
            .unwrap();
        if out.status.code().is_some() {
            assert!(out.status.success(), "{}", text(&out));
            assert!(n > 20, "only {n} failpoints: is the failpoints feature on?");
            break;
        }
        points += 1;
        let rec = run(r, &["recover"]);
        assert!(
            rec.status.success(),
            "recover after failpoint {n}: {}",
            text(&rec)
        );
        no_strays(r);
        let after = ca_copies(r);
        for (name, (fps, current)) in &after {
            assert_eq!(
                fps.len(),
                1,
                "failpoint {n}: copies of {name} differ: {after:?}"
            );
            assert!(current, "failpoint {n}: a stale copy of {name}");
        }
        // Both CAs are in the one change set: both old or both new.
        let renewed: Vec<bool> = ["ca", "etcd/ca"]
            .iter()
            .map(|c| before[*c] != after[*c])
            .collect();
        assert!(
            renewed[0] == renewed[1],
            "failpoint {n}: only one CA renewed: {renewed:?}"
        );
        assert_eq!(before["front-proxy-ca"], after["front-proxy-ca"]);
    }
    assert!(points > 20, "crashed at {points} points only");
}

/// A rename into place that fails part-way (an immutable key, EIO; injected here: the
/// 2nd rename of the process, the key's, fails) undoes the change set: the certificate
/// already renamed goes back, so it never sits with the old key, and no record stays.
/// The other target of the command is renewed as usual.
#[test]
fn a_failed_rename_undoes_the_change_set_and_keeps_each_pair() {
    let d = ecdsa_node();
    let r = d.path();
    let before = serials(r);
    let out = agent(
        r,
        &[
            "renew",
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/pki/front-proxy-client.crt",
        ],
    )
    .env("CERT_ROTATOR_FAIL_RENAMES", "2")
    .output()
    .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("/etc/kubernetes/pki/apiserver.key: renaming into place")
            && all.contains("the change set was undone"),
        "{all}"
    );
    let after = serials(r);
    no_strays(r);
    assert_eq!(before["apiserver"], after["apiserver"], "{all}");
    assert_ne!(
        before["front-proxy-client"], after["front-proxy-client"],
        "{all}"
    );
}

/// When the undo fails too, the record stays in `rolling-back`: the pass restarts
/// nothing, not even for the group's other target renewed before (front-proxy-client:
/// renames 1 and 2; apiserver.crt 3, apiserver.key 4 fails, the certificate's way back
/// 5 fails), so the manifest keeps its old bytes, and the restart is owed; `status`
/// shows the unfinished write, `recover` finishes the undo, and the next pass restarts.
#[test]
fn an_undo_that_fails_too_keeps_the_record_and_restarts_nothing() {
    let d = ecdsa_node();
    let r = d.path();
    let before = serials(r);
    let conf = r.join("undo-test.toml");
    std::fs::write(
        &conf,
        "[run]\nverify = false\nmin_restart_gap_seconds = 0\n[coordination]\nbackend = \"none\"\n",
    )
    .unwrap();
    let manifest = host(r, "/etc/kubernetes/manifests/kube-apiserver.yaml");
    let pod = std::fs::read(&manifest).unwrap();
    let out = agent(r, &["--live", "--config", conf.to_str().unwrap()])
        .args([
            "renew",
            "--restart",
            "/etc/kubernetes/pki/front-proxy-client.crt",
        ])
        .arg("/etc/kubernetes/pki/apiserver.crt")
        .env("CERT_ROTATOR_FAIL_RENAMES", "4,5")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("undoing the change set failed too"), "{all}");
    assert_eq!(std::fs::read(&manifest).unwrap(), pod, "restarted: {all}");
    let (v, _) = status_json(r);
    assert!(
        v["unfinished_write"]
            .as_str()
            .is_some_and(|w| w.contains("RollingBack")),
        "{v:#}"
    );
    // front-proxy-client is new on disk: its restart is owed, not lost.
    let owed = lock_state(r).pending;
    assert!(
        owed.iter().any(|p| p.component == "kube-apiserver"
            && p.files
                .iter()
                .any(|w| w.path.ends_with("front-proxy-client.crt"))),
        "{owed:#?} {all}"
    );
    let rec = run(r, &["recover"]);
    assert!(rec.status.success(), "{}", text(&rec));
    let after = serials(r);
    assert_eq!(after["apiserver"], before["apiserver"]);
    assert_ne!(after["front-proxy-client"], before["front-proxy-client"]);
    no_strays(r);
    // The next pass restarts it.
    let next = agent(r, &["--live", "--config", conf.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    assert!(next.status.success(), "{}", text(&next));
    assert_ne!(std::fs::read(&manifest).unwrap(), pod, "{}", text(&next));
    assert!(lock_state(r).pending.is_empty(), "{}", text(&next));
}
