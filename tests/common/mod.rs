//! Shared test helpers: build fixture nodes, run the real binaries, snapshot trees.
#![allow(dead_code, unused_imports)]

pub mod fakes;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use cert_rotator::fixture::{self, NodeSpec, Validity};
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

/// Runs cert-rotator with `--root DIR` and the given arguments.
pub fn run(root: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run cert-rotator")
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
