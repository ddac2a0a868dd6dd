//! The read-only commands (`status`, `plan`, `run --dry-run`) as operators meet them:
//! reasons that name the configured thresholds, nothing written, closed pipes and full
//! disks, logs without colour codes in a pipe, a host that is no Kubernetes node.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

fn write_config(root: &Path, text: &str) {
    let cfg = host(root, "/etc/cert-rotator/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, text).unwrap();
}

fn stdout_text(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Every due reason in `status --json`.
fn due_reasons(v: &serde_json::Value) -> Vec<String> {
    v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["due_reason"].as_str().map(String::from))
        .collect()
}

/// The table, the JSON and the plan name the configured thresholds, never the defaults'.
#[test]
fn due_reasons_name_the_configured_thresholds() {
    let spec = NodeSpec::control_plane(now())
        .with("apiserver", Validity::days(365, Duration::days(100)))
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)));
    let d = node(&spec);
    let r = d.path();

    // 400 days: longer than any lifetime, so everything is due by days.
    write_config(r, "[window]\nremaining_days = 400\n");
    let (v, code) = status_json(r);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(cert(&v, "apiserver")["due_reason"], "under-400-days");
    let reasons = due_reasons(&v);
    assert!(
        reasons.len() > 5
            && reasons
                .iter()
                .all(|x| x == "under-400-days" || x == "expired"),
        "{reasons:?}"
    );
    let table = stdout_text(&run(r, &["status"]));
    let line = table.lines().find(|l| l.starts_with("apiserver ")).unwrap();
    assert!(line.ends_with("yes (under-400-days)"), "{line}");
    assert!(
        !table.contains("under-30-days") && !table.contains("under-20-percent"),
        "{table}"
    );
    let plan = run(r, &["plan", "--json"]);
    let p: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned: Vec<&str> = p["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["targets"].as_array().unwrap())
        .map(|t| t["reason"].as_str().unwrap())
        .collect();
    assert!(planned.contains(&"under-400-days"), "{p:#}");
    assert!(
        planned
            .iter()
            .all(|x| *x == "under-400-days" || *x == "expired"),
        "{planned:?}"
    );
    let text = stdout_text(&run(r, &["plan"]));
    assert!(
        text.contains("under-400-days") && !text.contains("under-30-days"),
        "{text}"
    );

    // Half the lifetime: the apiserver (100 of 365 days left) is due by fraction.
    write_config(r, "[window]\nremaining_fraction = 0.5\n");
    let (v, code) = status_json(r);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(cert(&v, "apiserver")["due_reason"], "under-50-percent");
    assert_eq!(cert(&v, "scheduler.conf")["due_reason"], "expired");
    assert!(
        !due_reasons(&v).iter().any(|x| x == "under-20-percent"),
        "{v:#}"
    );
    let table = stdout_text(&run(r, &["status"]));
    let line = table.lines().find(|l| l.starts_with("apiserver ")).unwrap();
    assert!(line.ends_with("yes (under-50-percent)"), "{line}");
    assert!(!table.contains("under-20-percent"), "{table}");
}

const READ_ONLY: [&[&str]; 7] = [
    &["status"],
    &["status", "--json"],
    &["plan"],
    &["plan", "--json"],
    &["run", "--dry-run"],
    &["ca", "status"],
    &["ca", "status", "--json"],
];

/// During a CA rotation the read-only commands read the rotation's journal (its phase,
/// the invariants they warn about) and still write nothing.
#[test]
fn read_only_commands_write_nothing_during_a_ca_rotation() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let out = run(r, &["ca", "rotate", "ca", "start"]);
    assert!(out.status.success(), "{out:?}");
    let before = snapshot(r);
    for args in READ_ONLY {
        let out = run(r, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&run(r, &["ca", "status", "--json"]).stdout).unwrap();
    let ca = v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "ca")
        .unwrap();
    assert_eq!(ca["phase"], "started");
    assert_eq!(
        before,
        snapshot(r),
        "a read-only command wrote during a rotation"
    );
}

/// Reading a node writes nothing: no state directory where the agent never ran, and
/// after a pass the state directory and the metrics file stay byte-identical.
#[test]
fn status_and_plan_write_nothing() {
    let spec =
        NodeSpec::control_plane(now()).with("apiserver", Validity::days(365, Duration::days(20)));
    let d = node(&spec);
    let r = d.path();
    let before = snapshot(r);
    for args in READ_ONLY {
        let out = run(r, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    assert_eq!(before, snapshot(r), "a read-only command wrote");
    assert!(!host(r, "/var/lib/cert-rotator").exists());

    let out = run(r, &["run"]);
    assert!(out.status.success(), "{out:?}");
    let metrics = host(r, "/var/lib/cert-rotator/metrics/cert-rotator.prom");
    let prom = std::fs::read(&metrics).unwrap();
    assert!(host(r, "/var/lib/cert-rotator/last-pass.json").exists());
    // Something is due again, so a refreshed metrics file would differ in content too.
    write_config(r, "[window]\nremaining_days = 400\n");
    let before = snapshot(r);
    let state = snapshot(&host(r, "/var/lib/cert-rotator"));
    for args in READ_ONLY {
        let out = run(r, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    assert_eq!(std::fs::read(&metrics).unwrap(), prom, "metrics rewritten");
    assert_eq!(state, snapshot(&host(r, "/var/lib/cert-rotator")));
    assert_eq!(before, snapshot(r), "a read-only command wrote");
}

fn run_to(root: &Path, args: &[&str], stdout: Stdio) -> Output {
    Command::new(bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run cert-rotator")
}

/// `status | head -1` and a full disk end quietly or with a clear error, never a panic.
#[test]
fn output_to_a_closed_pipe_or_a_full_disk_is_no_panic() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    for args in READ_ONLY {
        // The reader is gone before the first write: every write fails with EPIPE.
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        drop(read_end);
        let out = run_to(r, args, Stdio::from(write_end));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: quiet, as usual: {err}"
        );
        assert!(err.is_empty(), "{args:?}: a closed pipe is quiet: {err}");

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = run_to(r, args, Stdio::from(full));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("cannot write to standard output")
                && err.contains("No space left on device"),
            "{args:?}: {err}"
        );
    }
}

/// Logs in a file or a pipe carry no colour codes; the level variable is documented.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let crt = host(r, "/etc/kubernetes/pki/apiserver.crt");
    let good = std::fs::read_to_string(&crt).unwrap();
    std::fs::write(&crt, &good[..good.len() / 2]).unwrap();
    // `run` logs the unreadable certificate at error level and exits 1.
    let out = Command::new(bin())
        .arg("--root")
        .arg(r)
        .arg("run")
        .env("CERT_ROTATOR_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ERROR") && err.contains("truncated PEM"),
        "{err}"
    );
    assert!(!err.contains("\x1b["), "colour codes in a pipe: {err:?}");

    for b in [bin(), renew_bin()] {
        let help = Command::new(&b).arg("--help").output().unwrap();
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("CERT_ROTATOR_LOG="),
            "{b:?} --help does not document CERT_ROTATOR_LOG"
        );
    }
}

/// A host with nothing of a Kubernetes node says so, naming what it looked for and where.
#[test]
fn a_host_that_is_no_node_says_so_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let out = run(r, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "no table of absent rows: {out:?}");
    for want in [
        "not a Kubernetes node",
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/kubelet.conf",
        "/var/lib/kubelet/pki/kubelet-client-current.pem",
        &format!("under {}", r.display()),
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert!(!err.contains("panicked"));
    // Programs still get the document, and the same sentence on stderr.
    let out = run(r, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["missing"] == true));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Kubernetes node"));
    assert!(snapshot(r).is_empty(), "status created something");

    // One file of a node is enough to be one (here a worker missing its CA).
    std::fs::create_dir_all(host(r, "/etc/kubernetes")).unwrap();
    std::fs::write(host(r, "/etc/kubernetes/kubelet.conf"), "not yaml [").unwrap();
    let out = run(r, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not a Kubernetes node"));
    assert!(stdout_text(&out).contains("Errors:"));
}
