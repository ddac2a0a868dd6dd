//! Renewal from the local CA refused with nothing changed: bad CAs and targets, an
//! expired CA, a read-only directory, a disk that fills during the write.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn renew_fails_and_changes_nothing(r: &Path, args: &[&str], expect: &[&str]) {
    fails_and_changes_nothing(r, &mut agent(r, args), expect);
}

#[test]
fn bad_cas_and_targets_are_refused_with_nothing_changed() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let pki = "/etc/kubernetes/pki";
    // CA key not matching CA certificate.
    renew_fails_and_changes_nothing(
        r,
        &[
            "renew",
            "--ca-cert",
            &format!("{pki}/ca.crt"),
            "--ca-key",
            &format!("{pki}/front-proxy-ca.key"),
            &format!("{pki}/apiserver.crt"),
        ],
        &[
            "/etc/kubernetes/pki/front-proxy-ca.key",
            "does not match CA certificate",
        ],
    );
    // Not a CA.
    renew_fails_and_changes_nothing(
        r,
        &[
            "renew",
            "--ca-cert",
            &format!("{pki}/apiserver.crt"),
            "--ca-key",
            &format!("{pki}/apiserver.key"),
            &format!("{pki}/apiserver-kubelet-client.crt"),
        ],
        &["/etc/kubernetes/pki/apiserver.crt", "not a CA"],
    );
    // Target signed by another CA than the one given.
    renew_fails_and_changes_nothing(
        r,
        &[
            "renew",
            "--ca-cert",
            &format!("{pki}/ca.crt"),
            "--ca-key",
            &format!("{pki}/ca.key"),
            &format!("{pki}/front-proxy-client.crt"),
        ],
        &["front-proxy-client", "not signed by", "break trust"],
    );
    // A target that is itself a CA.
    renew_fails_and_changes_nothing(
        r,
        &["renew", &format!("{pki}/etcd/ca.crt")],
        &["/etc/kubernetes/pki/etcd/ca.crt", "CA certificate"],
    );
    // A kubeconfig with neither embedded certificate nor file references (a token user).
    let kc = host(r, "/etc/kubernetes/token.conf");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context:\n    user: u\nusers:\n- name: u\n  user:\n    token: abc\n").unwrap();
    renew_fails_and_changes_nothing(
        r,
        &["renew", "/etc/kubernetes/token.conf"],
        &["/etc/kubernetes/token.conf", "not a client certificate"],
    );
}

/// admin.conf's user an alias of another user's data (YAML `&c` / `*c`): the bytes to
/// replace are the other user's, so the renewal is refused naming file and field.
#[test]
fn a_kubeconfig_user_aliasing_another_users_data_is_refused() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let conf = host(r, "/etc/kubernetes/admin.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let value = |field: &str| {
        let line = text.lines().find(|l| l.trim().starts_with(field)).unwrap();
        line.split_once(": ").unwrap().1.to_string()
    };
    let (cert, key) = (value("client-certificate-data:"), value("client-key-data:"));
    let other = format!(
        "users:\n- name: other\n  user:\n    client-certificate-data: &c {cert}\n    client-key-data: &k {key}\n"
    );
    let tied = text
        .replacen("users:\n", &other, 1)
        .replace(
            &format!("client-certificate-data: {cert}"),
            "client-certificate-data: *c",
        )
        .replace(&format!("client-key-data: {key}"), "client-key-data: *k")
        // `other`'s own lines were replaced too: put them back.
        .replace(
            "certificate-data: &c *c",
            &format!("certificate-data: &c {cert}"),
        )
        .replace("key-data: &k *k", &format!("key-data: &k {key}"));
    assert!(tied.contains("client-certificate-data: *c"), "{tied}");
    std::fs::write(&conf, tied).unwrap();
    renew_fails_and_changes_nothing(
        r,
        &["renew", "/etc/kubernetes/admin.conf"],
        &[
            "/etc/kubernetes/admin.conf",
            "client-certificate-data is a YAML alias (*c)",
            "edit it by hand",
        ],
    );
}

#[test]
fn expired_ca_is_refused() {
    let mut spec = NodeSpec::control_plane(now());
    spec.ca_validity = Validity::days(3650, -Duration::days(1));
    let d = node(&spec);
    renew_fails_and_changes_nothing(
        d.path(),
        &["renew", "/etc/kubernetes/pki/apiserver.crt"],
        &["/etc/kubernetes/pki/ca.crt", "CA certificate expired"],
    );
}

/// Mounts a tmpfs of `size` at `dir` (root is needed, as for a real rescue).
struct Mount(PathBuf);
impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs (tests run as root)");
        Mount(dir.to_path_buf())
    }
    fn read_only(&self) {
        assert!(Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap()
            .success());
    }
}
impl Mount {
    /// Moves the node's /etc/kubernetes/pki onto a tmpfs of `size`, contents kept.
    fn pki_on_tmpfs(r: &Path, size: &str) -> Mount {
        let pki = host(r, "/etc/kubernetes/pki");
        let saved = r.join("saved-pki");
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&pki)
            .arg(&saved)
            .status()
            .unwrap()
            .success());
        let m = Mount::tmpfs(&pki, size);
        let all = format!("{}/.", saved.display());
        assert!(Command::new("cp")
            .arg("-a")
            .arg(all)
            .arg(&pki)
            .status()
            .unwrap()
            .success());
        m
    }
}
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn read_only_directory_fails_cleanly() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let m = Mount::pki_on_tmpfs(r, "4m");
    m.read_only();
    renew_fails_and_changes_nothing(
        r,
        &["renew", "/etc/kubernetes/pki/apiserver.crt"],
        &["/etc/kubernetes/pki/apiserver", "Read-only file system"],
    );
    let (v, _) = status_json(r);
    assert!(v["unfinished_write"].is_null(), "{v:#}");
}

#[test]
fn a_disk_that_fills_during_the_write_leaves_the_original() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let pki = host(r, "/etc/kubernetes/pki");
    let _m = Mount::pki_on_tmpfs(r, "256k");
    // Leave exactly one free page: the staged certificate fits, its key does not.
    let st = nix::sys::statvfs::statvfs(&pki).unwrap();
    let free = st.blocks_available() * st.fragment_size();
    std::fs::write(pki.join(".filler"), vec![0u8; (free - 4096) as usize]).unwrap();
    renew_fails_and_changes_nothing(
        r,
        &["renew", "/etc/kubernetes/pki/apiserver.crt"],
        &["/etc/kubernetes/pki/apiserver", "No space left on device"],
    );
    let strays: Vec<_> = std::fs::read_dir(&pki)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("cert-rotator"))
        .collect();
    assert!(strays.is_empty(), "temp files left: {strays:?}");
}
