//! Shared test helpers: build fixture nodes, run the real binaries, snapshot trees.
#![allow(dead_code, unused_imports)]

pub mod etcd;
pub mod ca;
pub mod cfssl;
pub mod fakes;
pub mod rotation;
pub mod test_pass;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use cert_rotator::fixture::{self, NodeSpec, Validity};
pub use test_pass::TestPass;
pub use time::{Duration, OffsetDateTime};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cert-rotator"))
}

/// `cert-renew` is the cert-rotator executable run under that name (src/main.rs dispatches
/// on argv[0]; the packages install it as a symlink). This returns such a symlink,
/// `target/tmp/as-cert-renew/cert-renew` -> the built cert-rotator, made once per test
/// process. Made under a temporary name and renamed into place, so test binaries running
/// at the same time never see a half-made link, and a stale link to an older target
/// directory is replaced.
pub fn renew_bin() -> PathBuf {
    static LINK: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LINK.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("as-cert-renew");
        std::fs::create_dir_all(&dir).expect("create target/tmp/as-cert-renew");
        let link = dir.join("cert-renew");
        let tmp = dir.join(format!(".cert-renew.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(bin(), &tmp).expect("symlink cert-renew -> cert-rotator");
        std::fs::rename(&tmp, &link).expect("rename the cert-renew symlink into place");
        link
    })
    .clone()
}

pub fn node(spec: &NodeSpec) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    fixture::build(d.path(), spec).expect("fixture");
    d
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// cert-rotator with `--root DIR` and the given arguments, not yet run.
pub fn agent(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--root").arg(root).args(args);
    c
}

/// Runs cert-rotator with `--root DIR` and the given arguments.
pub fn run(root: &Path, args: &[&str]) -> Output {
    agent(root, args).output().expect("run cert-rotator")
}

/// What a command printed: stdout, then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, expects it to fail saying every one of `expect`, and checks that no
/// file of the node changed, appeared or went (the agent's own state may). Returns
/// what it printed.
pub fn fails_and_changes_nothing(root: &Path, cmd: &mut Command, expect: &[&str]) -> String {
    let node_files = |root: &Path| -> BTreeMap<PathBuf, String> {
        snapshot(root)
            .into_iter()
            .filter(|(p, _)| !p.starts_with("var/lib/cert-rotator"))
            .collect()
    };
    let before = node_files(root);
    let out = cmd.output().expect("run the command");
    let all = text(&out);
    assert_ne!(out.status.code(), Some(0), "{cmd:?} succeeded:\n{all}");
    for e in expect {
        assert!(all.contains(e), "{cmd:?}: {e:?} not in\n{all}");
    }
    let after = node_files(root);
    assert_eq!(before, after, "{cmd:?}: the node changed:\n{all}");
    eprintln!("refused as expected:\n{all}");
    all
}

/// Writes a kubeconfig's client-certificate-data, decoded, to `pem_file` (for openssl).
pub fn write_embedded_client_cert(kubeconfig_text: &str, pem_file: &Path) {
    use base64::Engine;
    let b64 = kubeconfig_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .expect("a kubeconfig with client-certificate-data");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("client-certificate-data is base64");
    std::fs::write(pem_file, pem).expect("write the PEM file");
}

/// The host path of the file kubelet-client-current.pem links to.
pub fn kubelet_client_file(root: &Path) -> PathBuf {
    let link = std::fs::read_link(host(
        root,
        "/var/lib/kubelet/pki/kubelet-client-current.pem",
    ))
    .expect("kubelet-client-current.pem is a symlink");
    host(root, link.to_str().expect("a UTF-8 link"))
}

pub fn status_json(root: &Path) -> (serde_json::Value, i32) {
    let out = run(root, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

pub fn cert<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no certificate {name} in {v:#}"))
}

/// Every entry under a directory: path -> (mode, size, mtime, content hash or link).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        if m.file_type().is_symlink() {
            out.insert(rel, format!("link {:?}", std::fs::read_link(&p).unwrap()));
        } else if m.is_dir() {
            out.insert(rel, format!("dir {:o}", m.mode()));
            walk(root, &p, out);
        } else {
            let content = std::fs::read(&p).unwrap_or_default();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &content);
            out.insert(
                rel,
                format!(
                    "file {:o} {} {} {:?}",
                    m.mode(),
                    m.len(),
                    m.mtime_nsec(),
                    digest.as_ref()
                ),
            );
        }
    }
}

/// Runs openssl with arguments, returning stdout; panics with stderr on failure.
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn host(root: &Path, node_path: &str) -> PathBuf {
    root.join(node_path.trim_start_matches('/'))
}

/// Writes the restart-lock record (`restart-lock.json` in the default state directory)
/// as an earlier pass would have left it.
pub fn write_lock_state(r: &Path, state: &cert_rotator::coordination::LockState) {
    let p = host(
        r,
        &format!(
            "/var/lib/cert-rotator/{}",
            cert_rotator::coordination::STATE_FILE
        ),
    );
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, serde_json::to_vec_pretty(state).unwrap()).unwrap();
}

/// The restart-lock record as the passes left it (empty when there is none).
pub fn lock_state(r: &Path) -> cert_rotator::coordination::LockState {
    let root = cert_rotator::node::NodeRoot::new(r);
    let s = cert_rotator::config::Settings::default();
    cert_rotator::write::StateDir::new(&root, &s.state_dir, s.keep_backups)
        .read_json::<cert_rotator::coordination::LockState>(cert_rotator::coordination::STATE_FILE)
        .unwrap()
        .unwrap_or_default()
}
