//! What the read-only commands (`status`, `ca status`, `plan`) say must match what `run`
//! would do: a CA key that cannot sign, a write-ahead record `run` refuses, private key
//! files open to others; and what they print of the node's text is safe for a terminal.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const CA_KEY: &str = "/etc/kubernetes/pki/ca.key";

/// A node with three certificates due from `ca` (as the demo's).
fn due_node() -> tempfile::TempDir {
    node(
        &NodeSpec::control_plane(now())
            .with("apiserver", Validity::days(365, Duration::days(20)))
            .with("scheduler.conf", Validity::days(365, -Duration::days(1))),
    )
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A FIFO, garbage or another CA's key at ca.key: `status`, `ca status` and `plan` exit
/// 1 naming the file, the plan promises no renewal that needs it, and `run` fails as
/// they said, changing nothing.
#[test]
fn a_ca_key_that_cannot_sign_fails_the_read_only_commands_naming_it() {
    for what in ["fifo", "garbage", "another CA's key"] {
        let d = due_node();
        let r = d.path();
        let key = host(r, CA_KEY);
        match what {
            "fifo" => {
                std::fs::remove_file(&key).unwrap();
                nix::unistd::mkfifo(&key, nix::sys::stat::Mode::S_IRUSR).unwrap();
            }
            "garbage" => std::fs::write(&key, "{x\n").unwrap(),
            _ => {
                std::fs::copy(host(r, "/etc/kubernetes/pki/front-proxy-ca.key"), &key).unwrap();
            }
        }
        let (v, status_code) = status_json(r);
        assert_eq!(status_code, 1, "{what}: {v:#}");
        let ca = &v["authorities"][0];
        assert_eq!(ca["name"], "ca");
        assert_eq!(ca["has_key"], true);
        let e = ca["key_error"].as_str().unwrap_or_default().to_string();
        assert!(
            e.starts_with("/etc/kubernetes/pki/ca.key: "),
            "{what}: {v:#}"
        );
        let table = run(r, &["status"]);
        assert_eq!(code(&table), 1);
        assert!(
            text(&table).contains(&format!("Errors:\n  ca: {e}\n")),
            "{what}: {}",
            text(&table)
        );
        let ca_status = run(r, &["ca", "status"]);
        assert_eq!(code(&ca_status), 1, "{what}: {}", text(&ca_status));
        assert!(text(&ca_status).contains(&format!("KEY ERROR: {e}")));
        let plan = run(r, &["plan"]);
        let plan_text = text(&plan);
        assert_eq!(code(&plan), 1, "{what}: {plan_text}");
        assert!(
            plan_text.contains(&format!("Unreadable: {e}")),
            "{what}: {plan_text}"
        );
        assert!(!plan_text.contains("     renew "), "{what}: {plan_text}");
        for t in ["apiserver", "scheduler.conf"] {
            assert!(
                plan_text.contains(&format!(
                    "Cannot be renewed: {t} (its CA ca's key cannot be used: {e})"
                )),
                "{what}: {plan_text}"
            );
        }
        if what == "fifo" {
            // The snapshot would read the FIFO: the exit status is checked alone.
            assert_eq!(code(&run(r, &["run"])), 1);
            continue;
        }
        let all = fails_and_changes_nothing(r, &mut agent(r, &["run"]), &[&e]);
        assert!(!all.contains("renewed ("), "{what}: {all}");
        // A renewal on request of a target that needs the key fails naming it too.
        fails_and_changes_nothing(r, &mut agent(r, &["renew", "apiserver"]), &[&e]);
    }
}

/// `plan` refuses a write-ahead record `run` refuses, in the same words, and writes
/// nothing, not even the state directory's lock.
#[test]
fn plan_refuses_an_unreadable_write_ahead_record_as_run_does() {
    let d = due_node();
    let r = d.path();
    let journal = host(r, "/var/lib/cert-rotator/journal.json");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    std::fs::write(&journal, "{x\n").unwrap();
    let before = snapshot(r);
    let plan = run(r, &["plan"]);
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    assert_eq!(snapshot(r), before, "plan wrote something");
    let said = String::from_utf8_lossy(&plan.stderr).to_string();
    assert!(
        said.starts_with("cert-rotator: /var/lib/cert-rotator/journal.json: "),
        "{said}"
    );
    let run_out = run(r, &["run"]);
    assert_eq!(code(&run_out), 1);
    assert!(
        String::from_utf8_lossy(&run_out.stderr).contains(said.trim_end()),
        "run said otherwise: {}",
        text(&run_out)
    );
    let dry = run(r, &["run", "--dry-run"]);
    assert_eq!(code(&dry), 1, "{}", text(&dry));
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// ca.key and apiserver.key at 0644: `status`, `ca status` and `plan` warn naming each
/// file and its mode and change nothing; `run` writes apiserver's new key 0600 and
/// warns about the CA key it does not rewrite.
#[test]
fn private_key_files_open_to_others_are_warned_about() {
    let d = due_node();
    let r = d.path();
    let (ca_key, apiserver_key) = (
        host(r, CA_KEY),
        host(r, "/etc/kubernetes/pki/apiserver.key"),
    );
    for k in [&ca_key, &apiserver_key] {
        std::fs::set_permissions(k, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let warning = |f: &str| format!("WARNING: {f}: private key file has mode 0644");
    let before = snapshot(r);
    for args in [&["status"][..], &["ca", "status"], &["plan"]] {
        let out = run(r, args);
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(&warning(CA_KEY)),
            "{args:?}: {}",
            text(&out)
        );
        if args != ["ca", "status"] {
            assert!(
                text(&out).contains(&warning("/etc/kubernetes/pki/apiserver.key")),
                "{args:?}: {}",
                text(&out)
            );
        }
    }
    let (v, _) = status_json(r);
    assert!(v["authorities"][0]["key_warning"]
        .as_str()
        .is_some_and(|w| w.contains("mode 0644")));
    assert!(cert(&v, "apiserver")["key_warning"].is_string());
    assert!(cert(&v, "etcd/peer")["key_warning"].is_null());
    assert_eq!(snapshot(r), before, "a read-only command changed the node");

    let out = run(r, &["run"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains(&warning(CA_KEY)), "{}", text(&out));
    assert_eq!(mode(&apiserver_key), 0o600);
    assert_eq!(mode(&ca_key), 0o644, "run changed the CA key's mode");
}

/// A CA whose CN holds terminal sequences: the text outputs show them escaped, the JSON
/// keeps the exact value.
#[test]
fn a_subject_with_terminal_sequences_is_shown_escaped() {
    use cert_rotator::pki::x509::{CertTemplate, OID_CN};
    let d = due_node();
    let r = d.path();
    let cn = "evil\u{1b}[31mred\u{1b}]0;title\u{7}";
    let key =
        cert_rotator::pki::PrivateKey::from_pem(&std::fs::read(host(r, CA_KEY)).unwrap()).unwrap();
    let der = CertTemplate::ca(
        vec![vec![(OID_CN, cn.into())]],
        now() - Duration::days(1),
        now() + Duration::days(3650),
    )
    .issue(&key, None)
    .unwrap();
    std::fs::write(
        host(r, "/etc/kubernetes/pki/ca.crt"),
        cert_rotator::pki::encode_pem("CERTIFICATE", &der),
    )
    .unwrap();
    for args in [&["ca", "status"][..], &["status"], &["plan"]] {
        let out = run(r, args);
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b) && !out.stdout.contains(&7),
            "{args:?} printed a raw escape: {}",
            text(&out)
        );
    }
    let shown = text(&run(r, &["ca", "status"]));
    assert!(
        shown.contains("CN=evil\\x1b[31mred\\x1b]0;title\\x07"),
        "{shown}"
    );
    let json = run(r, &["ca", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["authorities"][0]["subject"], format!("CN={cn}"));
    let (v, _) = status_json(r);
    assert_eq!(v["authorities"][0]["subject"], format!("CN={cn}"));
}
