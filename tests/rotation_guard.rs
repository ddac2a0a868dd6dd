//! A CA rotation in progress is the rotation's alone, and what it reads back is checked
//! (issue #18, items 1, 4 and 6a), on fixture nodes under `--root` with the real binary:
//!
//! - `run` and `ca renew` leave a due CA that is being rotated alone and say why (`ca
//!   status` too), so the rotation goes on to `issue` and `finish`; a given new CA must
//!   outlive the old one;
//! - a hand-edited journal never makes `abort` write, delete or link a file outside the
//!   rotation's own, nor restore the CA from a changed copy: exit 1 naming the journal,
//!   the node unchanged;
//! - a journal that cannot be read is an error for `ca status`, `run` and the phase
//!   commands, naming it; `abort --force-from-backups` is the way out.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cert_rotator::pki::KeyAlgorithm;
use common::*;

const STATE: &str = "var/lib/cert-rotator";
const CA: &str = "/etc/kubernetes/pki/ca.crt";

fn spec() -> NodeSpec {
    let mut spec = NodeSpec::control_plane(now());
    // ECDSA keys keep the many runs fast; the rotation is the same for RSA.
    spec.key_algorithm = KeyAlgorithm::EcdsaP256;
    spec
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = run(root, args);
    let t = text(&out);
    assert!(out.status.success(), "{args:?} failed:\n{t}");
    t
}

fn journal(root: &Path) -> PathBuf {
    root.join(STATE).join("rotations/ca/journal.json")
}

/// Every node file outside the agent's state (never read: it may hold a FIFO): mode
/// and content, or link target. mtimes are not compared: abort restores bytes.
fn node_files(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with(STATE) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(rel, format!("link {:?}", std::fs::read_link(&p).unwrap()));
            } else if m.is_dir() {
                walk(root, &p, out);
            } else {
                let c = std::fs::read(&p).unwrap();
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &c);
                out.insert(
                    rel,
                    format!("{:o} {:?}", m.permissions().mode() & 0o7777, d.as_ref()),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `cert-rotator --root r args` fails saying each of `expect`; no node file changed.
fn fails_and_changes_nothing(r: &Path, args: &[&str], expect: &[&str]) {
    let before = node_files(r);
    let out = run(r, args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}:\n{t}");
    for e in expect {
        assert!(t.contains(e), "{args:?}: {e:?} not in\n{t}");
    }
    assert_eq!(node_files(r), before, "{args:?} changed the node:\n{t}");
}

fn ca_status(root: &Path) -> (serde_json::Value, i32, String) {
    let out = run(root, &["ca", "status", "--json"]);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ca status --json: {e}\n{}", text(&out)));
    (v, out.status.code().unwrap_or(-1), text(&out))
}

fn cluster_ca(v: &serde_json::Value) -> &serde_json::Value {
    v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "ca")
        .unwrap()
}

#[test]
fn a_due_ca_being_rotated_is_left_to_the_rotation_by_run_and_ca_renew() {
    let mut s = spec();
    // 300 of 3650 days left: every CA is due (under 20%).
    s.ca_validity = Validity::days(3650, Duration::days(300));
    let d = node(&s);
    let r = d.path();
    ok(r, &["ca", "rotate", "ca", "start"]);
    ok(r, &["ca", "rotate", "ca", "trust"]);
    let trusted = std::fs::read(host(r, CA)).unwrap();

    let (v, _, _) = ca_status(r);
    let ca = cluster_ca(&v);
    assert_eq!(ca["due"], true, "{ca:#}");
    assert_eq!(ca["phase"], "trusting", "{ca:#}");
    let held = ca["held"].as_str().unwrap_or_default();
    assert!(held.contains("being rotated (phase trusting)"), "{ca:#}");
    let table = ok(r, &["ca", "status"]);
    assert!(table.contains("held by the rotation"), "{table}");

    // The timer's pass: the CA is due, and left alone, saying why.
    let t = text(&run(r, &["run"]));
    assert!(
        t.contains("CA ca is due") && t.contains("CA ca is being rotated (phase trusting"),
        "{t}"
    );
    assert!(t.contains("next: `cert-rotator ca rotate ca issue`"), "{t}");
    assert_eq!(
        std::fs::read(host(r, CA)).unwrap(),
        trusted,
        "run changed ca.crt"
    );
    let plan = ok(r, &["plan"]);
    assert!(
        plan.contains("CA ca is due") && plan.contains("is not renewed"),
        "{plan}"
    );

    // `ca renew ca` by name: refused, nothing changed.
    fails_and_changes_nothing(
        r,
        &["ca", "renew", "ca"],
        &[
            "`ca renew ca` refused",
            "being rotated (phase trusting",
            "journal.json",
        ],
    );
    // `ca renew` of every due CA: the rotated one is skipped, saying so.
    let out = run(r, &["ca", "renew"]);
    let t = text(&out);
    assert!(t.contains("ca: not renewed: CA ca is being rotated"), "{t}");
    assert_eq!(std::fs::read(host(r, CA)).unwrap(), trusted);

    // So the rotation goes on, and once finished the CA is free again.
    ok(r, &["ca", "rotate", "ca", "issue"]);
    ok(r, &["ca", "rotate", "ca", "finish"]);
    let (v, _, _) = ca_status(r);
    assert!(cluster_ca(&v).get("held").is_none(), "{v:#}");
}

#[test]
fn a_given_new_ca_must_outlive_the_old_one() {
    let mut s = spec();
    s.ca_validity = Validity::days(3650, Duration::days(300));
    let d = node(&s);
    let r = d.path();
    // Another CA (its own subject and key) that ends in 200 days, before the node's
    // (300): openssl makes it.
    let dir = host(r, "/root");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("new-ca.key");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-subj",
        "/CN=kubernetes-next",
        "-days",
        "200",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        dir.join("new-ca.crt").to_str().unwrap(),
    ]);
    fails_and_changes_nothing(
        r,
        &[
            "ca",
            "rotate",
            "ca",
            "start",
            "--new-cert",
            "/root/new-ca.crt",
            "--new-key",
            "/root/new-ca.key",
        ],
        &["/root/new-ca.crt", "the new CA must outlive the old one"],
    );
    assert!(!journal(r).exists());
}

/// Edits the journal's JSON with `f`, runs `abort`, which must fail naming the journal
/// and `expect`, the node unchanged; then puts the journal back.
fn hostile(r: &Path, f: impl FnOnce(&mut serde_json::Value), expect: &[&str]) {
    let orig = std::fs::read(journal(r)).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&orig).unwrap();
    f(&mut v);
    std::fs::write(journal(r), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let j = format!("/{STATE}/rotations/ca/journal.json");
    let mut want = vec![j.as_str()];
    want.extend_from_slice(expect);
    fails_and_changes_nothing(r, &["ca", "rotate", "ca", "abort"], &want);
    std::fs::write(journal(r), orig).unwrap();
}

fn backup_of<'a>(v: &'a mut serde_json::Value, path: &str) -> &'a mut serde_json::Value {
    v["backups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["path"] == path)
        .unwrap_or_else(|| panic!("no backup of {path}"))
}

#[test]
fn a_hand_edited_journal_never_steers_abort_and_changes_nothing() {
    let d = node(&spec());
    let r = d.path();
    std::fs::write(host(r, "/etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(host(r, "/etc/shadow"), "root:*:1::::::\n").unwrap();
    let before = node_files(r);
    ok(r, &["ca", "rotate", "ca", "start"]);
    ok(r, &["ca", "rotate", "ca", "trust"]);
    let ca_copy = format!("/{STATE}/rotations/ca/backup/etc/kubernetes/pki/ca.crt");

    // Overwrite /etc/passwd with ca.crt.
    hostile(
        r,
        |v| {
            v["backups"].as_array_mut().unwrap().push(serde_json::json!(
                {"path": "/etc/passwd", "copy": ca_copy, "link": null}
            ))
        },
        &["backs up /etc/passwd", "--force-from-backups"],
    );
    // Delete /etc/shadow as "absent before start".
    hostile(
        r,
        |v| {
            v["backups"].as_array_mut().unwrap().push(serde_json::json!(
                {"path": "/etc/shadow", "copy": null, "link": null}
            ))
        },
        &["/etc/shadow"],
    );
    // Delete ca.key as "created by the rotation".
    hostile(
        r,
        |v| {
            v["created"]
                .as_array_mut()
                .unwrap()
                .push("/etc/kubernetes/pki/ca.key".into())
        },
        &["lists /etc/kubernetes/pki/ca.key as created"],
    );
    // Delete ca.key as "absent before start".
    hostile(
        r,
        |v| {
            let b = backup_of(v, "/etc/kubernetes/pki/ca.key");
            b["copy"] = serde_json::Value::Null;
        },
        &["/etc/kubernetes/pki/ca.key did not exist before `start`"],
    );
    // Replace ca.key by a symlink to /etc/shadow.
    hostile(
        r,
        |v| {
            let b = backup_of(v, "/etc/kubernetes/pki/ca.key");
            b["copy"] = serde_json::Value::Null;
            b["link"] = "/etc/shadow".into();
        },
        &["would make /etc/kubernetes/pki/ca.key a symlink to /etc/shadow"],
    );
    // A "copy" outside the rotation's backup directory.
    hostile(
        r,
        |v| {
            let b = backup_of(v, "/etc/kubernetes/pki/ca.crt");
            b["copy"] = "/etc/kubernetes/pki/front-proxy-ca.crt".into();
        },
        &["the copy of /etc/kubernetes/pki/ca.crt is /etc/kubernetes/pki/front-proxy-ca.crt"],
    );
    // A path that climbs out with "..".
    hostile(
        r,
        |v| {
            let b = backup_of(v, "/etc/kubernetes/pki/ca.crt");
            b["path"] = "/etc/kubernetes/pki/../../passwd".into();
        },
        &["backs up /etc/kubernetes/pki/../../passwd"],
    );
    // The copy of ca.crt itself replaced by another CA.
    let copy = host(r, &ca_copy);
    let saved = std::fs::read(&copy).unwrap();
    std::fs::copy(host(r, "/etc/kubernetes/pki/front-proxy-ca.crt"), &copy).unwrap();
    fails_and_changes_nothing(
        r,
        &["ca", "rotate", "ca", "abort"],
        &[
            &ca_copy,
            "is not the copy `start` made of /etc/kubernetes/pki/ca.crt",
        ],
    );
    std::fs::write(&copy, saved).unwrap();

    // The journal as the agent wrote it: abort puts every file back.
    ok(r, &["ca", "rotate", "ca", "abort"]);
    assert_eq!(node_files(r), before);
}

/// How to break a journal file in place.
type Breaker = Box<dyn Fn(&Path)>;

/// The ways a journal can be unreadable: (what, how to break it).
fn breakages() -> Vec<(&'static str, Breaker)> {
    let replace = |p: &Path| {
        let _ = std::fs::remove_file(p);
    };
    vec![
        (
            "truncated",
            Box::new(move |p: &Path| {
                let b = std::fs::read(p).unwrap();
                std::fs::write(p, &b[..b.len() / 2]).unwrap();
            }),
        ),
        (
            "garbage",
            Box::new(|p: &Path| std::fs::write(p, b"\x00\xffnot json").unwrap()),
        ),
        (
            "a FIFO",
            Box::new(move |p: &Path| {
                replace(p);
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap();
            }),
        ),
        (
            "a link to /dev/zero",
            Box::new(move |p: &Path| {
                replace(p);
                std::os::unix::fs::symlink("/dev/zero", p).unwrap();
            }),
        ),
        (
            "a directory",
            Box::new(move |p: &Path| {
                replace(p);
                std::fs::create_dir(p).unwrap();
            }),
        ),
        (
            "5 MB",
            Box::new(|p: &Path| std::fs::write(p, vec![b' '; 5 << 20]).unwrap()),
        ),
        (
            "wrong types",
            Box::new(|p: &Path| {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                v["backups"] = serde_json::json!("all of them");
                v["phase"] = serde_json::json!(7);
                std::fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap();
            }),
        ),
    ]
}

#[test]
fn a_broken_journal_is_an_error_everywhere_and_force_from_backups_is_the_way_out() {
    let template = node(&spec());
    let t = template.path();
    let before = node_files(t);
    ok(t, &["ca", "rotate", "ca", "start"]);
    ok(t, &["ca", "rotate", "ca", "trust"]);
    let j = format!("/{STATE}/rotations/ca/journal.json");
    for (what, break_it) in breakages() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", t.display()))
            .arg(r)
            .status()
            .unwrap();
        assert!(status.success());
        break_it(&journal(r));

        let (v, code, out) = ca_status(r);
        assert_eq!(code, 1, "{what}: ca status\n{out}");
        assert_eq!(cluster_ca(&v)["phase"], "broken", "{what}: {v:#}");
        let table = text(&run(r, &["ca", "status"]));
        assert!(
            table.contains(&j) && table.contains("abort --force-from-backups"),
            "{what}: {table}"
        );
        let out = run(r, &["run"]);
        assert_eq!(out.status.code(), Some(1), "{what}: run\n{}", text(&out));
        assert!(text(&out).contains(&j), "{what}: run\n{}", text(&out));
        for phase in ["issue", "abort", "trust"] {
            fails_and_changes_nothing(
                r,
                &["ca", "rotate", "ca", phase],
                &[&j, "--force-from-backups"],
            );
        }
        fails_and_changes_nothing(r, &["ca", "renew", "ca"], &[&j]);

        // The way out: the copies `start` made, back in place.
        let out = ok(r, &["ca", "rotate", "ca", "abort", "--force-from-backups"]);
        assert!(out.contains("restored"), "{what}: {out}");
        assert_eq!(node_files(r), before, "{what}: {out}");
        let (v, code, out) = ca_status(r);
        assert_eq!(
            (code, &cluster_ca(&v)["phase"]),
            (0, &"none".into()),
            "{what}: {out}"
        );
        // A readable journal is aborted the ordinary way.
        ok(r, &["ca", "rotate", "ca", "start"]);
        fails_and_changes_nothing(
            r,
            &["ca", "rotate", "ca", "abort", "--force-from-backups"],
            &["is readable: run `ca rotate ca abort`"],
        );
    }
}

#[test]
fn force_from_backups_after_issue_restores_the_old_ca_and_the_kubelet_link() {
    let d = node(&spec());
    let r = d.path();
    let before = node_files(r);
    ok(r, &["ca", "rotate", "ca", "start"]);
    ok(r, &["ca", "rotate", "ca", "trust"]);
    ok(r, &["ca", "rotate", "ca", "issue"]);
    std::fs::write(journal(r), b"{").unwrap();
    ok(r, &["ca", "rotate", "ca", "abort", "--force-from-backups"]);
    let after = node_files(r);
    // Every file of before `start` is back; the kubelet's new dated file is left.
    for (p, v) in &before {
        let got = after.get(p).map(String::as_str);
        if p.ends_with("kubelet-client-current.pem") {
            // Re-pointed by its absolute node path.
            assert!(got.is_some_and(|g| g.starts_with("link")), "{p:?}: {got:?}");
            continue;
        }
        assert_eq!(got, Some(v.as_str()), "{}", p.display());
    }
    let leaf = kubelet_client_file(r);
    assert!(openssl(&[
        "verify",
        "-CAfile",
        host(r, CA).to_str().unwrap(),
        leaf.to_str().unwrap()
    ])
    .contains("OK"));
}
