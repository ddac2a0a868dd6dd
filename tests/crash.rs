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
