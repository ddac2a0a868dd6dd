//! The state directory is the agent's own, and each target's files are its own: a
//! `backup` symlinked into the node, a FIFO at the lock, `keep_backups = 0`, a
//! `state_dir` that holds the node's files, and one file as two targets are refused,
//! naming the file or setting and what is wrong, with nothing on the node changed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use common::*;

const STATE: &str = "/var/lib/cert-rotator";

fn configure(r: &Path, text: &str) {
    let p = host(r, "/etc/cert-rotator/config.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A control-plane node whose apiserver certificate is due.
fn due_node() -> tempfile::TempDir {
    node(&NodeSpec::control_plane(now()).with("apiserver", Validity::days(365, Duration::days(10))))
}

#[test]
fn a_symlinked_backup_directory_is_refused_and_nothing_it_leads_to_is_touched() {
    for target in ["/etc/kubernetes", "/etc/kubernetes/manifests"] {
        let d = node(&NodeSpec::control_plane(now()));
        let r = d.path();
        std::fs::create_dir_all(host(r, STATE)).unwrap();
        std::os::unix::fs::symlink(target, host(r, &format!("{STATE}/backup"))).unwrap();
        configure(r, "keep_backups = 1\n");
        fails_and_changes_nothing(
            r,
            &mut agent(r, &["renew", "/etc/kubernetes/admin.conf"]),
            &[
                "/var/lib/cert-rotator/backup: backup directory: is a symlink to",
                target,
            ],
        );
    }
}

/// Runs `cmd`, failing the test if it has not ended within a minute.
fn output_within_a_minute(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} hangs");
        }
        std::thread::sleep(StdDuration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_fifo_at_the_lock_is_refused_naming_it_and_nothing_hangs() {
    let d = due_node();
    let r = d.path();
    let lock = host(r, &format!("{STATE}/lock"));
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // The node's files (a snapshot of the whole root would read the FIFO).
    let node_files = || {
        [
            snapshot(&host(r, "/etc")),
            snapshot(&host(r, "/var/lib/kubelet")),
        ]
    };
    let before = node_files();
    for args in [
        &["run"][..],
        &["renew", "/etc/kubernetes/admin.conf"],
        &["recover"],
    ] {
        let out = output_within_a_minute(&mut agent(r, args));
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}:\n{all}");
        assert!(
            all.contains("/var/lib/cert-rotator/lock: opening lock: is a FIFO, not a regular file"),
            "{args:?}:\n{all}"
        );
    }
    assert_eq!(before, node_files());
}

#[test]
fn keep_backups_0_and_a_state_dir_holding_the_node_are_refused_naming_the_setting() {
    let d = due_node();
    let r = d.path();
    // A crash's staged file: the temp sweep of a state directory at / deleted it.
    let staged = host(r, "/etc/kubernetes/pki/.apiserver.crt.cert-rotator.tmp");
    std::fs::write(&staged, b"staged").unwrap();
    for (config, says) in [
        ("keep_backups = 0\n", "keep_backups = 0: must be at least 1"),
        (
            "state_dir = \"/\"\n",
            "state_dir = \"/\": is the node's root",
        ),
        (
            "state_dir = \"/etc\"\n",
            "state_dir = \"/etc\": holds kubeadm.pki_dir (/etc/kubernetes/pki)",
        ),
        (
            "state_dir = \"/var/lib\"\n",
            "state_dir = \"/var/lib\": holds kubeadm.kubelet_pki_dir",
        ),
    ] {
        configure(r, config);
        for args in [&["run"][..], &["renew", "/etc/kubernetes/admin.conf"]] {
            fails_and_changes_nothing(
                r,
                &mut agent(r, args),
                &["/etc/cert-rotator/config.toml", says],
            );
        }
    }
    assert!(staged.exists());
    assert!(!host(r, "/lock").exists() && !host(r, "/backup").exists());
}

#[test]
fn an_extra_at_another_target_s_file_is_refused_naming_both() {
    let d = due_node();
    let r = d.path();
    configure(
        r,
        "[[extra]]\nname = \"mine\"\nkind = \"certificate\"\n\
         path = \"/etc/kubernetes/pki/apiserver.crt\"\nkey = \"/srv/mine.key\"\n",
    );
    fails_and_changes_nothing(
        r,
        &mut agent(r, &["run"]),
        &[
            "/etc/cert-rotator/config.toml",
            "extra[0].path = \"/etc/kubernetes/pki/apiserver.crt\": is also apiserver's certificate",
            "one file cannot be two targets",
        ],
    );
}

#[test]
fn kubelet_crt_at_the_apiserver_s_files_is_refused_and_the_apiserver_renewed_once() {
    let d = due_node();
    let r = d.path();
    std::fs::write(
        host(r, "/var/lib/kubelet/config.yaml"),
        "kind: KubeletConfiguration\ntlsCertFile: /etc/kubernetes/pki/apiserver.crt\n\
         tlsPrivateKeyFile: /etc/kubernetes/pki/apiserver.key\n",
    )
    .unwrap();
    let says = "/etc/kubernetes/pki/apiserver.crt: kubelet.crt's certificate file (as \
                tlsCertFile and tlsPrivateKeyFile in /var/lib/kubelet/config.yaml name them) \
                is also apiserver's certificate";
    fails_and_changes_nothing(r, &mut agent(r, &["renew", "kubelet.crt"]), &[says]);
    let out = run(r, &["run"]);
    let all = text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains(says), "{all}");
    // One certificate, the apiserver's, renewed once.
    let crt = host(r, "/etc/kubernetes/pki/apiserver.crt");
    let pem = std::fs::read_to_string(&crt).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1, "{pem}");
    let subject = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-subject"]);
    assert!(subject.contains("kube-apiserver"), "{subject}");
    let v: serde_json::Value =
        serde_json::from_slice(&run(r, &["status", "--json"]).stdout).unwrap();
    assert_eq!(cert(&v, "apiserver")["due"], false, "{v:#}");
}
