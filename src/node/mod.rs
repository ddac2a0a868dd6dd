//! The node's file system, seen through `--root`.
//!
//! Everything the agent knows is a *node path* (`/etc/kubernetes/pki/ca.crt`), which is
//! what it prints. Only at the moment of I/O is a node path turned into a *host path*
//! under the root, so tests on a temp dir, a rescue of a mounted disk and the live node
//! run the same code.

pub mod kubeconfig;
pub mod manifest;

use std::io;
use std::path::{Component, Path, PathBuf};

/// A node file that could not be read, with the node path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct NodeError {
    /// Node path.
    pub path: PathBuf,
    pub reason: String,
}

impl NodeError {
    pub fn new(path: &Path, reason: impl std::fmt::Display) -> Self {
        NodeError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// The root the node's paths live under: `/` on a live node.
#[derive(Clone, Debug)]
pub struct NodeRoot {
    root: PathBuf,
}

impl NodeRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NodeRoot { root: root.into() }
    }

    /// Whether this is the live node (`--root /`): only then may the agent touch the
    /// host's units and ports.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The host path of a node path. Relative node paths are taken from `/`.
    pub fn host(&self, node_path: &Path) -> PathBuf {
        let mut p = self.root.clone();
        for c in node_path.components() {
            match c {
                Component::Normal(s) => p.push(s),
                Component::ParentDir => {
                    // Never climb above the root, whatever a symlink says.
                    if p != self.root {
                        p.pop();
                    }
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        p
    }

    /// Follows the symlinks of a node path's last component until a non-link, keeping
    /// absolute targets inside the root (the kubelet writes absolute links such as
    /// `kubelet-client-current.pem -> /var/lib/kubelet/pki/kubelet-client-….pem`).
    /// Returns the node path of the final file, which need not exist.
    pub fn resolve(&self, node_path: &Path) -> io::Result<PathBuf> {
        let mut current = normalize(node_path);
        for _ in 0..40 {
            let host = self.host(&current);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(&host)?;
                    current = if target.is_absolute() {
                        normalize(&target)
                    } else {
                        let parent = current.parent().unwrap_or(Path::new("/"));
                        normalize(&parent.join(target))
                    };
                }
                _ => return Ok(current),
            }
        }
        Err(io::Error::other("too many levels of symbolic links"))
    }

    pub fn read(&self, node_path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(self.host(node_path))
    }

    /// Reads a node file, following symlinks inside the root: the resolved node path and
    /// the bytes. Only a regular file is read.
    pub fn read_file(&self, path: &Path) -> Result<(PathBuf, Vec<u8>), NodeError> {
        let resolved = self.resolve(path).map_err(|e| NodeError::new(path, e))?;
        let host = self.host(&resolved);
        let meta = match std::fs::metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && resolved != path => {
                return Err(NodeError::new(
                    path,
                    format!("dangling symlink to {}", resolved.display()),
                ))
            }
            Err(e) => return Err(NodeError::new(path, e)),
        };
        if meta.is_dir() {
            return Err(NodeError::new(&resolved, "is a directory, expected a file"));
        }
        if !meta.is_file() {
            return Err(NodeError::new(&resolved, "is not a regular file"));
        }
        let bytes = std::fs::read(&host).map_err(|e| NodeError::new(&resolved, e))?;
        Ok((resolved, bytes))
    }

    /// Whether the node path itself (not what it points to) is a symlink.
    pub fn is_symlink(&self, node_path: &Path) -> bool {
        std::fs::symlink_metadata(self.host(node_path)).is_ok_and(|m| m.file_type().is_symlink())
    }

    pub fn exists(&self, node_path: &Path) -> bool {
        std::fs::symlink_metadata(self.host(node_path)).is_ok()
    }
}

/// A node path made absolute with `.` and `..` folded, without touching the disk.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_stay_under_the_root() {
        let r = NodeRoot::new("/mnt/disk");
        assert_eq!(
            r.host(Path::new("/etc/kubernetes/pki/ca.crt")),
            Path::new("/mnt/disk/etc/kubernetes/pki/ca.crt")
        );
        assert_eq!(r.host(Path::new("/../../etc")), Path::new("/mnt/disk/etc"));
        assert!(!r.is_live());
        assert!(NodeRoot::new("/").is_live());
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        let pki = d.path().join("var/lib/kubelet/pki");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join("kubelet-client-2026.pem"), b"x").unwrap();
        std::os::unix::fs::symlink(
            "/var/lib/kubelet/pki/kubelet-client-2026.pem",
            pki.join("kubelet-client-current.pem"),
        )
        .unwrap();
        std::os::unix::fs::symlink("kubelet-client-current.pem", pki.join("rel.pem")).unwrap();
        let want = Path::new("/var/lib/kubelet/pki/kubelet-client-2026.pem");
        assert_eq!(
            r.resolve(Path::new("/var/lib/kubelet/pki/kubelet-client-current.pem"))
                .unwrap(),
            want
        );
        assert_eq!(
            r.resolve(Path::new("/var/lib/kubelet/pki/rel.pem"))
                .unwrap(),
            want
        );
        std::os::unix::fs::symlink("loop", pki.join("loop")).unwrap();
        assert!(r.resolve(Path::new("/var/lib/kubelet/pki/loop")).is_err());
    }
}
