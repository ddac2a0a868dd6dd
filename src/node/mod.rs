//! The node's file system, seen through `--root`: the one gate to the node's files.
//!
//! Everything the agent knows is a *node path* (`/etc/kubernetes/pki/ca.crt`), which is
//! what it prints. Only at the moment of I/O is a node path turned into a *host path*
//! under the root, so tests on a temp dir, a rescue of a mounted disk and the live node
//! run the same code. Every read and write goes through [`NodeRoot`], which resolves
//! every symlink inside the root and refuses one that would leave it ([`resolve`]),
//! reads only regular files of a bounded size, and is the only writer ([`store`]).

mod direct;
mod error;
pub mod kubeconfig;
pub mod kubelet_config;
mod liveness;
pub mod manifest;
mod resolve;
mod store;

use direct::Direct;
pub use error::{Escape, NodeError, Problem};
pub use liveness::Liveness;
pub use store::failpoint;

use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The most the gate reads of one file. Certificates, keys, kubeconfigs, manifests and
/// the agent's own records are a few KiB; anything bigger is not one of them, and
/// reading it (a sparse file, a log) would only exhaust memory.
pub const MAX_FILE_SIZE: u64 = 4 << 20;

/// How the gate opens a file to read: a FIFO must not block the open, a terminal must
/// not become the controlling one.
const READ_FLAGS: i32 = nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY;

/// The root the node's paths live under (`/` on the host itself), and whether the
/// node's components run here ([`Liveness`]).
#[derive(Clone, Debug)]
pub struct NodeRoot {
    /// Absolute host path.
    root: PathBuf,
    liveness: Liveness,
}

/// A regular node file opened for reading: checked, not yet read.
#[derive(Debug)]
pub struct NodeFile {
    /// Node path of the file itself, every symlink resolved.
    pub path: PathBuf,
    /// The node path that was asked for, named in errors.
    asked: PathBuf,
    file: File,
    meta: Metadata,
}

impl NodeFile {
    /// Owner, mode and size of the open file (from the descriptor, not the path).
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Reads the whole file, at most [`MAX_FILE_SIZE`] bytes.
    pub fn read_all(mut self) -> Result<Vec<u8>, NodeError> {
        let mut bytes = Vec::with_capacity(self.meta.len().min(MAX_FILE_SIZE) as usize);
        // One byte more than the cap: a file that grew since fstat is still caught.
        (&mut self.file)
            .take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| failure(&self.asked, &self.path, Problem::Io(e)))?;
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(failure(
                &self.asked,
                &self.path,
                Problem::TooLarge {
                    limit: MAX_FILE_SIZE,
                },
            ));
        }
        Ok(bytes)
    }
}

impl NodeRoot {
    /// A root taken as given (made absolute against the working directory): for the
    /// demo and tests, whose roots are known to exist. `--root` goes through
    /// [`NodeRoot::open`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(&root))
                .unwrap_or(root)
        };
        NodeRoot::with_default_liveness(root)
    }

    /// Live when the root is the host's `/`, files only elsewhere, until
    /// [`NodeRoot::with_liveness`] says otherwise.
    fn with_default_liveness(root: PathBuf) -> Self {
        let files = NodeRoot {
            root,
            liveness: Liveness::Offline,
        };
        let liveness = Liveness::decide(files.is_host_root(), false, false);
        files.with_liveness(liveness)
    }

    /// The same root, with the liveness the command line decided
    /// ([`Liveness::decide`] from `--live` and `--no-restart`).
    pub fn with_liveness(mut self, liveness: Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// The root given with `--root`: it must be an existing directory (nothing is
    /// created). A relative one is taken from the working directory.
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        let abs = NodeRoot::new(dir).root;
        let canonical = std::fs::canonicalize(&abs).map_err(|e| NodeError::io(&abs, e))?;
        let meta = std::fs::metadata(&canonical).map_err(|e| NodeError::io(&abs, e))?;
        if !meta.is_dir() {
            return Err(NodeError::new(&abs, Problem::NotADirectory));
        }
        Ok(NodeRoot::with_default_liveness(canonical))
    }

    /// Whether the root is the host's own `/`: a question about paths only (`/..` is
    /// `/` there, so nothing can climb out of it). Whether the node's components run
    /// here is [`NodeRoot::liveness`].
    pub fn is_host_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Whether the node's components run here and may be restarted.
    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// The root's host path.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The host path of a node path, joined as text: no symlink is looked at. For
    /// messages and test set-up only; I/O goes through the methods of this type, which
    /// resolve and check ([`NodeRoot::host_checked`] where a host path must be handed on).
    /// Relative node paths are taken from `/`.
    pub fn host(&self, node_path: &Path) -> PathBuf {
        let node = normalize(node_path);
        if node == Path::new("/") {
            return self.root.clone();
        }
        // The root and the normal node path as one string: what pushing each component
        // onto the root gives, made at a fraction of the cost (every path the gate
        // resolves is joined here, once per component).
        let root = self.root.as_os_str().as_bytes();
        let end = root.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        let mut p = Vec::with_capacity(end + node.as_os_str().len());
        p.extend_from_slice(&root[..end]);
        p.extend_from_slice(node.as_os_str().as_bytes());
        PathBuf::from(OsString::from_vec(p))
    }

    /// Opens a node file for reading: symlinks followed inside the root, and only a
    /// regular file of at most [`MAX_FILE_SIZE`] bytes. A FIFO, socket or device is
    /// refused without blocking (opened non-blocking, checked on the descriptor).
    pub fn open_file(&self, path: &Path) -> Result<NodeFile, NodeError> {
        let normal = normalize(path);
        let (resolved, file) = match self.open_direct(&normal, direct::read_how(READ_FLAGS)) {
            Direct::Opened(fd) => (normal, Ok(File::from(fd))),
            // What the walk would report: no symlink on the way, so none at the end.
            Direct::Absent(e) => return Err(failure(path, &normal, Problem::Io(e))),
            // The walk itself: `resolve` would ask the kernel the same question again.
            Direct::Walk => {
                let resolved = self.walk(path, true)?;
                let host = self.host(&resolved);
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(READ_FLAGS | nix::libc::O_NOFOLLOW)
                    .open(&host);
                (resolved, file)
            }
        };
        let host = self.host(&resolved);
        let fail = |problem| failure(path, &resolved, problem);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.not_found(path, &resolved, e))
            }
            // A socket cannot be opened (ENXIO): say what it is.
            Err(e) => {
                return Err(fail(match std::fs::symlink_metadata(&host) {
                    Ok(m) if !m.is_file() && !m.is_dir() && !m.file_type().is_symlink() => {
                        Problem::NotRegular { kind: kind_of(&m) }
                    }
                    _ => Problem::Io(e),
                }))
            }
        };
        let meta = file.metadata().map_err(|e| fail(Problem::Io(e)))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            return Err(fail(Problem::IsDirectory));
        }
        if !ft.is_file() {
            return Err(fail(Problem::NotRegular {
                kind: kind_of(&meta),
            }));
        }
        if meta.len() > MAX_FILE_SIZE {
            return Err(fail(Problem::TooLarge {
                limit: MAX_FILE_SIZE,
            }));
        }
        Ok(NodeFile {
            path: resolved,
            asked: path.to_path_buf(),
            file,
            meta,
        })
    }

    fn not_found(&self, path: &Path, resolved: &Path, e: io::Error) -> NodeError {
        // A symlink at the path itself that leads nowhere is named as such.
        let leaf_is_link = self
            .entry(path)
            .ok()
            .and_then(|(_, h)| std::fs::symlink_metadata(h).ok())
            .is_some_and(|m| m.file_type().is_symlink());
        if leaf_is_link {
            return NodeError::new(
                path,
                Problem::Dangling {
                    target: resolved.to_path_buf(),
                },
            );
        }
        failure(path, resolved, Problem::Io(e))
    }

    /// Reads a node file, following symlinks inside the root: the resolved node path and
    /// the bytes. Only a regular file of at most [`MAX_FILE_SIZE`] bytes is read.
    pub fn read_file(&self, path: &Path) -> Result<(PathBuf, Vec<u8>), NodeError> {
        let f = self.open_file(path)?;
        let resolved = f.path.clone();
        Ok((resolved, f.read_all()?))
    }

    /// [`NodeRoot::read_file`]'s bytes, as an `io::Result` for callers that match on
    /// `io::ErrorKind::NotFound`; a refusal by the gate keeps its message.
    pub fn read(&self, node_path: &Path) -> io::Result<Vec<u8>> {
        self.read_file(node_path)
            .map(|(_, b)| b)
            .map_err(io::Error::from)
    }

    /// Whether anything is at the path (a dangling symlink counts). A path the gate
    /// refuses (a link out of the root, a loop) counts too: reading it will say what is
    /// wrong, rather than the file passing for absent.
    pub fn exists(&self, node_path: &Path) -> bool {
        match self.open_direct(&normalize(node_path), direct::entry_how()) {
            Direct::Opened(_) => return true,
            Direct::Absent(_) => return false,
            Direct::Walk => {}
        }
        // The walk itself: `symlink_metadata` would ask the kernel the same question again.
        match self.symlink_metadata_walked(node_path) {
            Ok(m) => m.is_some(),
            Err(e) => !e.is_not_found(),
        }
    }
}

/// An error about the file a path leads to, named by the path asked for and, when
/// symlinks led elsewhere, by where they lead.
fn failure(asked: &Path, resolved: &Path, problem: Problem) -> NodeError {
    if normalize(asked) == resolved {
        NodeError::new(asked, problem)
    } else {
        NodeError::new(
            asked,
            Problem::Via {
                target: resolved.to_path_buf(),
                problem: Box::new(problem),
            },
        )
    }
}

fn kind_of(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Whether a path is already in [`normalize`]'s form: absolute, every component a
/// name (no `.`, `..` or empty one), no trailing `/` but for `/` itself.
fn is_normal(p: &Path) -> bool {
    match p.as_os_str().as_bytes() {
        b"/" => true,
        [b'/', rest @ ..] => rest
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b".."),
        _ => false,
    }
}

/// A node path made absolute with `.` and `..` folded, without touching the disk.
pub fn normalize(p: &Path) -> PathBuf {
    if is_normal(p) {
        return p.to_path_buf();
    }
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
    use std::os::unix::fs::symlink;

    #[test]
    fn host_paths_stay_under_the_root() {
        let r = NodeRoot::new("/mnt/disk");
        assert_eq!(
            r.host(Path::new("/etc/kubernetes/pki/ca.crt")),
            Path::new("/mnt/disk/etc/kubernetes/pki/ca.crt")
        );
        assert_eq!(r.host(Path::new("/../../etc")), Path::new("/mnt/disk/etc"));
        assert_eq!(r.liveness(), Liveness::Offline);
        assert_eq!(NodeRoot::new("/").liveness(), Liveness::Live);
        let harness = r.with_liveness(Liveness::Live);
        assert!(!harness.is_host_root() && harness.liveness().restarts());
    }

    #[test]
    fn host_is_the_root_with_each_component_pushed() {
        // The joining by components that `host` and `normalize` shortcut for normal paths.
        let by_components = |root: &Path, node: &Path| {
            let mut p = root.to_path_buf();
            for c in node.components() {
                match c {
                    Component::Normal(s) => p.push(s),
                    Component::ParentDir if p != root => {
                        p.pop();
                    }
                    _ => {}
                }
            }
            p
        };
        for root in ["/", "/mnt/disk", "/mnt/disk/", "/mnt//disk"] {
            let r = NodeRoot::new(root);
            for node in [
                "/",
                "",
                "/etc",
                "etc/kubernetes",
                "/etc/kubernetes/pki/ca.crt",
                "/etc/",
                "/etc/./pki",
                "//etc//pki",
                "/etc/../var/lib",
                "/..",
                "/etc/.hidden",
                "/...",
            ] {
                let got = r.host(Path::new(node));
                let want = by_components(Path::new(root), Path::new(node));
                assert_eq!(got, want, "{root} + {node}");
                assert_eq!(got.as_os_str(), want.as_os_str(), "{root} + {node}");
            }
        }
        assert_eq!(
            normalize(Path::new("/etc/kubernetes")),
            Path::new("/etc/kubernetes")
        );
        assert_eq!(
            normalize(Path::new("/etc//x/./y/../z/")).as_os_str(),
            "/etc/x/z"
        );
    }

    #[test]
    fn open_needs_an_existing_directory_and_makes_it_absolute() {
        let d = tempfile::tempdir().unwrap();
        let e = NodeRoot::open(&d.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert!(!d.path().join("nope").exists());
        std::fs::write(d.path().join("file"), b"").unwrap();
        let e = NodeRoot::open(&d.path().join("file")).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let r = NodeRoot::open(d.path()).unwrap();
        assert!(r.dir().is_absolute());
        assert_eq!(
            NodeRoot::open(Path::new("/")).unwrap().liveness(),
            Liveness::Live
        );
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        let etc = d.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        nix::unistd::mkfifo(&etc.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = r.read_file(Path::new("/etc/fifo")).unwrap_err();
        assert!(e.to_string().contains("/etc/fifo: is a FIFO"), "{e}");
        let e = r.read_file(Path::new("/etc")).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let big = std::fs::File::create(etc.join("big")).unwrap();
        big.set_len(MAX_FILE_SIZE + 1).unwrap();
        let e = r.read_file(Path::new("/etc/big")).unwrap_err();
        assert!(matches!(e.problem, Problem::TooLarge { .. }), "{e}");
        symlink("big", etc.join("to-big")).unwrap();
        let e = r
            .read_file(Path::new("/etc/to-big"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/to-big: is larger than") && e.contains("(at /etc/big,"),
            "{e}"
        );
        std::fs::write(etc.join("ok"), b"x").unwrap();
        symlink("/etc/ok", etc.join("abs")).unwrap();
        symlink("gone", etc.join("dangling")).unwrap();
        let (p, b) = r.read_file(Path::new("/etc/abs")).unwrap();
        assert_eq!(
            (p.as_path(), b.as_slice()),
            (Path::new("/etc/ok"), &b"x"[..])
        );
        let e = r.read_file(Path::new("/etc/dangling")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/dangling: dangling symlink to /etc/gone"
        );
        assert!(r.exists(Path::new("/etc/dangling")));
        assert!(!r.exists(Path::new("/etc/none")));
        let e = r.read(Path::new("/etc/none")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        let pki = d.path().join("var/lib/kubelet/pki");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join("kubelet-client-2026.pem"), b"x").unwrap();
        symlink(
            "/var/lib/kubelet/pki/kubelet-client-2026.pem",
            pki.join("kubelet-client-current.pem"),
        )
        .unwrap();
        symlink("kubelet-client-current.pem", pki.join("rel.pem")).unwrap();
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
        symlink("loop", pki.join("loop")).unwrap();
        assert!(r.resolve(Path::new("/var/lib/kubelet/pki/loop")).is_err());
    }
}
