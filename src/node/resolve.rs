//! Node paths to host paths: every symlink, at every depth, resolved inside the root.
//!
//! The kernel would follow a relative symlink with enough `..` (or an ancestor
//! directory that is such a link) out of `--root`; a rescue of a mounted disk or a test
//! must never read or write there. So the walk is done here, one component at a time,
//! as a chroot would do it: absolute targets start again at the root (the kubelet
//! writes `kubelet-client-current.pem -> /var/lib/kubelet/pki/kubelet-client-….pem`),
//! relative ones continue from the link's directory, and a `..` above the root is
//! refused. On the live root `/` the kernel's rule applies (`/..` is `/`): nothing can
//! leave it.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::direct::{self, Direct};
use super::{normalize, Escape, NodeError, NodeRoot, Problem};

/// Symlinks followed in one resolution before it counts as a loop (Linux's MAXSYMLINKS).
const MAX_HOPS: usize = 40;

enum Part {
    Name(OsString),
    Up,
}

/// A path's parts, last first (a stack to pop).
fn parts(p: &Path) -> Vec<Part> {
    let mut v: Vec<Part> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(Part::Name(s.to_os_string())),
            Component::ParentDir => Some(Part::Up),
            _ => None,
        })
        .collect();
    v.reverse();
    v
}

impl NodeRoot {
    /// The node path a node path leads to, every symlink followed inside the root; the
    /// final file need not exist. With `follow_last` false the last component is kept
    /// as it is (for operations on the entry itself: rename, unlink, a new symlink).
    /// The path's own `.` and `..` are folded first, as they always were.
    pub(super) fn walk(&self, node_path: &Path, follow_last: bool) -> Result<PathBuf, NodeError> {
        let mut todo = parts(&normalize(node_path));
        let mut done = PathBuf::from("/");
        let mut hops = 0;
        // The last symlink followed: named when the walk would leave the root.
        let mut via: Option<(PathBuf, PathBuf)> = None;
        while let Some(part) = todo.pop() {
            let name = match part {
                Part::Up => {
                    if !done.pop() && !self.is_host_root() {
                        let (link, target) = via.clone().unwrap_or_default();
                        return Err(NodeError::new(
                            node_path,
                            Problem::OutsideRoot(Box::new(Escape {
                                link,
                                target,
                                root: self.dir().to_path_buf(),
                            })),
                        ));
                    }
                    continue;
                }
                Part::Name(n) => n,
            };
            let candidate = done.join(&name);
            if todo.is_empty() && !follow_last {
                return Ok(candidate);
            }
            let host = self.host(&candidate);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(NodeError::new(node_path, Problem::Loop));
                    }
                    let target =
                        std::fs::read_link(&host).map_err(|e| NodeError::io(&candidate, e))?;
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                    }
                    todo.extend(parts(&target));
                    via = Some((candidate, target));
                }
                // A directory, a file, or nothing yet: the rest is checked the same way
                // (a later `..` may climb back to where links exist).
                Ok(_) => done = candidate,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => done = candidate,
                Err(e) => return Err(NodeError::io(&candidate, e)),
            }
        }
        Ok(done)
    }

    /// Follows every symlink of a node path inside the root (see the module docs) and
    /// returns the node path of the final file, which need not exist. A link that would
    /// leave the root, or a loop, is an error naming the path.
    pub fn resolve(&self, node_path: &Path) -> Result<PathBuf, NodeError> {
        // No symlink on the way (to the end, or to where the path stops existing): the
        // path leads where it is written (see `direct`).
        let normal = normalize(node_path);
        match self.open_direct(&normal, direct::follow_how()) {
            Direct::Opened(_) | Direct::Absent(_) => Ok(normal),
            Direct::Walk => self.walk(node_path, true),
        }
    }

    /// The entry itself (its directory resolved, its last component not followed): the
    /// resolved node path and the host path to act on.
    pub(super) fn entry(&self, node_path: &Path) -> Result<(PathBuf, PathBuf), NodeError> {
        let resolved = self.walk(node_path, false)?;
        let host = self.host(&resolved);
        Ok((resolved, host))
    }

    /// The host path of a node path, every symlink resolved and checked (see
    /// [`NodeRoot::resolve`]). For code that must hand a path to another program.
    pub fn host_checked(&self, node_path: &Path) -> Result<PathBuf, NodeError> {
        Ok(self.host(&self.resolve(node_path)?))
    }

    /// Refuses a symlink the agent would write (`link -> target`) that leads out of the
    /// root: it could be followed later by a tool that is not this gate.
    pub(super) fn check_link_target(&self, link: &Path, target: &Path) -> Result<(), NodeError> {
        if self.is_host_root() || target.is_absolute() {
            return Ok(());
        }
        let mut depth = link.parent().map_or(0, |d| {
            d.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count()
        });
        for c in target.components() {
            match c {
                Component::Normal(_) => depth += 1,
                Component::ParentDir if depth == 0 => {
                    return Err(NodeError::new(
                        link,
                        Problem::OutsideRoot(Box::new(Escape {
                            link: link.to_path_buf(),
                            target: target.to_path_buf(),
                            root: self.dir().to_path_buf(),
                        })),
                    ))
                }
                Component::ParentDir => depth -= 1,
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, NodeRoot) {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        (d, r)
    }

    fn mkfile(d: &Path, node: &str) {
        let p = d.join(node.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    fn link(d: &Path, node: &str, target: &str) {
        let p = d.join(node.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    #[test]
    fn relative_and_absolute_leaf_links_resolve_inside() {
        let (d, r) = root();
        mkfile(d.path(), "/var/lib/kubelet/pki/kubelet-client-2026.pem");
        link(
            d.path(),
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
            "/var/lib/kubelet/pki/kubelet-client-2026.pem",
        );
        link(
            d.path(),
            "/var/lib/kubelet/pki/rel.pem",
            "../pki/./kubelet-client-current.pem",
        );
        let want = Path::new("/var/lib/kubelet/pki/kubelet-client-2026.pem");
        for p in ["kubelet-client-current.pem", "rel.pem"] {
            let got = r
                .resolve(&Path::new("/var/lib/kubelet/pki").join(p))
                .unwrap();
            assert_eq!(got, want, "{p}");
        }
    }

    #[test]
    fn nested_ancestor_links_are_resolved() {
        let (d, r) = root();
        mkfile(d.path(), "/data/k8s/pki/ca.crt");
        // /etc/kubernetes -> /data/k8s (absolute, under the root); /srv/pki -> a
        // relative link through that first link.
        link(d.path(), "/etc/kubernetes", "/data/k8s");
        link(d.path(), "/srv/pki", "../etc/kubernetes/pki");
        assert_eq!(
            r.resolve(Path::new("/etc/kubernetes/pki/ca.crt")).unwrap(),
            Path::new("/data/k8s/pki/ca.crt")
        );
        assert_eq!(
            r.resolve(Path::new("/srv/pki/ca.crt")).unwrap(),
            Path::new("/data/k8s/pki/ca.crt")
        );
        // A file that does not exist yet, below a linked directory.
        assert_eq!(
            r.resolve(Path::new("/srv/pki/new.crt")).unwrap(),
            Path::new("/data/k8s/pki/new.crt")
        );
        // The entry itself is not followed, its directory is.
        assert_eq!(
            r.entry(Path::new("/srv/pki")).unwrap().0,
            Path::new("/srv/pki")
        );
        assert_eq!(
            r.entry(Path::new("/srv/pki/ca.crt")).unwrap().0,
            Path::new("/data/k8s/pki/ca.crt")
        );
    }

    #[test]
    fn links_that_leave_the_root_are_refused_at_any_depth() {
        let (d, r) = root();
        mkfile(d.path(), "/etc/kubernetes/pki/ca.crt");
        link(
            d.path(),
            "/etc/kubernetes/pki/leaf.crt",
            "../../../../x.crt",
        );
        link(
            d.path(),
            "/etc/kubernetes/up",
            "../../../../../tmp/elsewhere",
        );
        link(d.path(), "/etc/kubernetes/pki/abs-up", "/../x");
        for p in [
            "/etc/kubernetes/pki/leaf.crt",
            "/etc/kubernetes/up/ca.crt",
            "/etc/kubernetes/up",
            "/etc/kubernetes/pki/abs-up",
        ] {
            let e = r.resolve(Path::new(p)).unwrap_err();
            assert!(matches!(e.problem, Problem::OutsideRoot(_)), "{p}: {e}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(p) && msg.contains("outside the root"),
                "{msg}"
            );
        }
        // Writing through the escaping directory is refused too, not only reading.
        assert!(r.entry(Path::new("/etc/kubernetes/up/x.crt")).is_err());
        // The entry itself may be acted on: it is inside.
        assert!(r.entry(Path::new("/etc/kubernetes/up")).is_ok());
        // The path's own `..` is folded, as before: no escape from text.
        assert_eq!(
            r.resolve(Path::new("/../../etc/kubernetes/pki/ca.crt"))
                .unwrap(),
            Path::new("/etc/kubernetes/pki/ca.crt")
        );
    }

    #[test]
    fn loops_are_errors_not_hangs() {
        let (d, r) = root();
        link(d.path(), "/a/loop", "loop");
        link(d.path(), "/a/ping", "pong");
        link(d.path(), "/a/pong", "/a/ping");
        link(d.path(), "/b", "/b/c");
        for p in ["/a/loop", "/a/ping", "/b/x"] {
            let e = r.resolve(Path::new(p)).unwrap_err();
            assert!(matches!(e.problem, Problem::Loop), "{p}: {e}");
        }
    }

    #[test]
    fn the_live_root_cannot_be_left() {
        let r = NodeRoot::new("/");
        assert!(r.is_host_root());
        assert!(r
            .check_link_target(Path::new("/a/b"), Path::new("../../../x"))
            .is_ok());
    }

    #[test]
    fn written_links_must_stay_inside() {
        let (_d, r) = root();
        let l = Path::new("/var/lib/kubelet/pki/kubelet-client-current.pem");
        assert!(r
            .check_link_target(l, Path::new("kubelet-client-1.pem"))
            .is_ok());
        assert!(r.check_link_target(l, Path::new("../../../../x")).is_ok());
        assert!(r
            .check_link_target(l, Path::new("../../../../../x"))
            .is_err());
        assert!(r.check_link_target(l, Path::new("/x")).is_ok());
    }
}
