//! The only writer of node files. Every primitive takes node paths, resolves their
//! directories inside the root (see `resolve`) and acts on the entry itself: a rename
//! replaces a symlink, it does not write through it.

use std::ffi::OsString;
use std::fs::{self, File, FileType, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::direct::Direct;
use super::{normalize, NodeError, NodeRoot, Problem};

impl NodeRoot {
    /// The entry's metadata without following it; `None` when nothing is there.
    pub fn symlink_metadata(&self, path: &Path) -> Result<Option<Metadata>, NodeError> {
        // No symlink on the way: the entry is where the path says (see `direct`).
        let normal = normalize(path);
        match self.open_direct(&normal, super::direct::entry_how()) {
            Direct::Opened(fd) => {
                return File::from(fd)
                    .metadata()
                    .map(Some)
                    .map_err(|e| NodeError::io(&normal, e))
            }
            Direct::Absent(_) => return Ok(None),
            Direct::Walk => {}
        }
        self.symlink_metadata_walked(path)
    }

    /// [`Self::symlink_metadata`] found by the walk, for a path the kernel left to it.
    pub(super) fn symlink_metadata_walked(
        &self,
        path: &Path,
    ) -> Result<Option<Metadata>, NodeError> {
        let (node, host) = self.entry(path)?;
        match fs::symlink_metadata(&host) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(&node, e)),
        }
    }

    /// The metadata of what the path leads to (symlinks followed inside the root);
    /// `None` when nothing is there.
    pub fn metadata(&self, path: &Path) -> Result<Option<Metadata>, NodeError> {
        let node = self.resolve(path)?;
        match fs::symlink_metadata(self.host(&node)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(&node, e)),
        }
    }

    /// Whether the entry itself is a symlink.
    pub fn is_symlink(&self, path: &Path) -> bool {
        matches!(self.symlink_metadata(path), Ok(Some(m)) if m.file_type().is_symlink())
    }

    /// The target of the symlink at the path, as written in the link.
    pub fn read_link(&self, path: &Path) -> Result<PathBuf, NodeError> {
        let (node, host) = self.entry(path)?;
        fs::read_link(&host).map_err(|e| NodeError::io(&node, e))
    }

    /// The entries of a directory, sorted by name.
    pub fn read_dir(&self, dir: &Path) -> Result<Vec<(OsString, FileType)>, NodeError> {
        let node = self.resolve(dir)?;
        let rd = fs::read_dir(self.host(&node)).map_err(|e| NodeError::io(dir, e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| NodeError::io(&node, e))?;
            let t = e.file_type().map_err(|err| NodeError::io(&node, err))?;
            out.push((e.file_name(), t));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The subdirectories of `dir` whose names `keep` accepts, however many other entries
    /// there are (nothing is cut by a count), listed until `deadline`: `Ok(None)` when the
    /// listing ran out of time (the caller decides what an unfinished listing means), an
    /// empty list when `dir` does not exist. Unsorted.
    pub fn subdirs_matching(
        &self,
        dir: &Path,
        keep: impl Fn(&str) -> bool,
        deadline: std::time::Instant,
    ) -> Result<Option<Vec<String>>, NodeError> {
        let node = self.resolve(dir)?;
        let rd = match fs::read_dir(self.host(&node)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => return Err(NodeError::io(dir, e)),
        };
        let mut out = Vec::new();
        for e in rd {
            if std::time::Instant::now() > deadline {
                return Ok(None);
            }
            // One unreadable entry is skipped, not the whole listing.
            let Ok(e) = e else { continue };
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if keep(&name) && e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(name);
            }
        }
        Ok(Some(out))
    }

    /// Writes a new file at `path` (a temp name: whatever was there is replaced): write,
    /// owner, mode, fsync. Nothing is left behind when it fails (a full disk).
    pub fn stage_file(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), NodeError> {
        let (node, host) = self.entry(path)?;
        stage_host(&host, bytes, mode, owner).map_err(|e| NodeError::io(&node, e))
    }

    /// Writes one file atomically: dot temp in the same directory, fsync, rename, fsync
    /// the directory. For files with no partner (records, backups, metrics).
    pub fn write_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), NodeError> {
        let (node, host) = self.entry(path)?;
        let name = node
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| NodeError::new(&node, Problem::IsDirectory))?;
        let dir = host.parent().unwrap_or(Path::new("/"));
        let tmp = dir.join(format!(".{name}.cert-rotator.tmp"));
        let io = |e| NodeError::io(&node, e);
        stage_host(&tmp, bytes, mode, owner).map_err(io)?;
        if let Err(e) = fs::rename(&tmp, &host) {
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        fsync_host_dir(dir).map_err(io)
    }

    /// Creates a new file atomically and never over an existing one: a temp file in the
    /// same directory (written, fsynced, `mode`), hard-linked to its name, which fails
    /// if anything is there, then the temp removed and the directory fsynced. For files
    /// handed to an operator (`ca export`), where replacing one would lose it.
    pub fn write_new(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), NodeError> {
        let (node, host) = self.entry(path)?;
        let name = node
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| NodeError::new(&node, Problem::IsDirectory))?;
        let dir = host.parent().unwrap_or(Path::new("/"));
        let tmp = dir.join(format!(".{name}.{}.cert-rotator.tmp", std::process::id()));
        let io = |e| NodeError::io(&node, e);
        stage_host(&tmp, bytes, mode, None).map_err(io)?;
        let linked = fs::hard_link(&tmp, &host);
        let _ = fs::remove_file(&tmp);
        linked.map_err(io)?;
        fsync_host_dir(dir).map_err(io)
    }

    /// Makes `link` a symlink to `target` (the text of the link), replacing what was
    /// there. A relative target that would lead out of the root is refused.
    pub fn symlink(&self, target: &Path, link: &Path) -> Result<(), NodeError> {
        let (node, host) = self.entry(link)?;
        self.check_link_target(&node, target)?;
        let _ = fs::remove_file(&host);
        std::os::unix::fs::symlink(target, &host).map_err(|e| NodeError::io(&node, e))
    }

    /// Renames the entry `from` over `to` (both node paths; `to` is replaced, not followed).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), NodeError> {
        let (_, host_from) = self.entry(from)?;
        let (node_to, host_to) = self.entry(to)?;
        fs::rename(&host_from, &host_to).map_err(|e| NodeError::io(&node_to, e))
    }

    /// Removes the entry (a symlink, not its target). `false` when nothing was there.
    pub fn remove_file(&self, path: &Path) -> Result<bool, NodeError> {
        let (node, host) = self.entry(path)?;
        match fs::remove_file(&host) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(NodeError::io(&node, e)),
        }
    }

    /// Removes a directory and everything in it (symlinks inside are removed, not
    /// followed), then fsyncs its parent, so the removal survives a power failure.
    pub fn remove_dir_all(&self, dir: &Path) -> Result<(), NodeError> {
        let (node, host) = self.entry(dir)?;
        fs::remove_dir_all(&host).map_err(|e| NodeError::io(&node, e))?;
        sync_parent(&node, &host)
    }

    /// Renames a directory (or any entry) and fsyncs the directories it left and
    /// entered: a rename not yet durable may be undone by a power failure while what
    /// was written after it (a journal) survives.
    pub fn rename_durably(&self, from: &Path, to: &Path) -> Result<(), NodeError> {
        let (node_from, host_from) = self.entry(from)?;
        let (node_to, host_to) = self.entry(to)?;
        fs::rename(&host_from, &host_to).map_err(|e| NodeError::io(&node_to, e))?;
        sync_parent(&node_to, &host_to)?;
        if host_from.parent() != host_to.parent() {
            sync_parent(&node_from, &host_from)?;
        }
        Ok(())
    }

    /// fsyncs a directory, so the renames and removals in it are durable.
    pub fn sync_dir(&self, dir: &Path) -> Result<(), NodeError> {
        let node = self.resolve(dir)?;
        fsync_host_dir(&self.host(&node)).map_err(|e| NodeError::io(&node, e))
    }

    /// Creates a directory and its missing ancestors with `mode` (umask aside). A
    /// symlink on the way is followed inside the root; one that dangles, or a file where
    /// a directory should be, is an error naming it.
    pub fn create_dir_all(&self, dir: &Path, mode: u32) -> Result<(), NodeError> {
        let mut done = PathBuf::from("/");
        for name in normalize(dir).iter().skip(1) {
            let candidate = done.join(name);
            let resolved = self.resolve(&candidate)?;
            let host = self.host(&resolved);
            match fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(NodeError::new(&candidate, Problem::NotADirectory)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // `done` is resolved, so only `candidate` itself can be the link.
                    if resolved != candidate {
                        return Err(NodeError::new(
                            &candidate,
                            Problem::Dangling { target: resolved },
                        ));
                    }
                    match fs::DirBuilder::new().mode(mode).create(&host) {
                        Ok(()) => {
                            fs::set_permissions(&host, fs::Permissions::from_mode(mode))
                                .map_err(|e| NodeError::io(&candidate, e))?;
                            // The new entry is durable only once its parent is synced
                            // (a backup directory lost while the journal survives).
                            sync_parent(&candidate, &host)?;
                        }
                        // Made meanwhile by another process: fine if it is a directory.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && host.is_dir() => {}
                        Err(e) => return Err(NodeError::io(&candidate, e)),
                    }
                }
                Err(e) => return Err(NodeError::io(&candidate, e)),
            }
            done = resolved;
        }
        Ok(())
    }

    /// Opens (creating, 0600) a file to hold a lock on; never follows a symlink there,
    /// and only a regular file will do: the open never blocks (a FIFO would hold it
    /// until a reader came) and what it opened is checked on the descriptor.
    pub fn open_lock_file(&self, path: &Path) -> Result<File, NodeError> {
        let (node, host) = self.entry(path)?;
        let opened = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(
                nix::libc::O_NOFOLLOW
                    | nix::libc::O_NONBLOCK
                    | nix::libc::O_NOCTTY
                    | nix::libc::O_CLOEXEC,
            )
            .open(&host);
        let not_regular = |m: &Metadata| {
            NodeError::new(
                &node,
                Problem::NotRegular {
                    kind: super::kind_of(m),
                },
            )
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                // A FIFO without a reader (ENXIO), a socket: say what is there.
                return Err(match fs::symlink_metadata(&host) {
                    Ok(m) if m.is_dir() => NodeError::new(&node, Problem::IsDirectory),
                    Ok(m) if !m.is_file() && !m.file_type().is_symlink() => not_regular(&m),
                    _ => NodeError::io(&node, e),
                });
            }
        };
        let meta = file.metadata().map_err(|e| NodeError::io(&node, e))?;
        if !meta.is_file() {
            return Err(not_regular(&meta));
        }
        Ok(file)
    }
}

fn stage_host(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    // Only a stale temp of an earlier crash can be here; on a read-only file system
    // even removing nothing fails (EROFS), and the create below says so.
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    let result = (|| {
        f.write_all(bytes)?;
        failpoint("write");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        failpoint("fsync");
        Ok(())
    })();
    if result.is_err() {
        // A full disk: leave nothing behind but the original.
        let _ = fs::remove_file(path);
    }
    result
}

fn fsync_host_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsyncs the directory holding `host` (node path `node`, for the error).
fn sync_parent(node: &Path, host: &Path) -> Result<(), NodeError> {
    let dir = host.parent().unwrap_or(Path::new("/"));
    fsync_host_dir(dir).map_err(|e| NodeError::io(node.parent().unwrap_or(node), e))
}

/// Crash injection for the crash-safety test: with the `failpoints` feature and
/// CERT_ROTATOR_FAILPOINT=N, the process aborts (as kill -9 would stop it: no
/// destructors, no cleanup) at the Nth failpoint it passes.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if std::env::var("CERT_ROTATOR_FAILPOINT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(n)
    {
        eprintln!("failpoint {n} ({name}): aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    #[test]
    fn writes_stay_inside_and_replace_entries() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        r.create_dir_all(Path::new("/etc/kubernetes/pki"), 0o755)
            .unwrap();
        // A directory link that leaves the root: no write goes through it.
        let up = "../".repeat(d.path().components().count() + 2);
        symlink(
            format!("{up}{}", outside.path().display()),
            d.path().join("etc/kubernetes/escape"),
        )
        .unwrap();
        let p = Path::new("/etc/kubernetes/escape/ca.crt");
        assert!(r.write_atomic(p, b"x", 0o644, None).is_err());
        assert!(r.stage_file(p, b"x", 0o644, None).is_err());
        assert!(r
            .create_dir_all(Path::new("/etc/kubernetes/escape/d"), 0o700)
            .is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // A leaf symlink is replaced by the rename, its target untouched.
        r.write_atomic(Path::new("/etc/kubernetes/pki/t"), b"old", 0o600, None)
            .unwrap();
        symlink("t", d.path().join("etc/kubernetes/pki/l")).unwrap();
        r.write_atomic(Path::new("/etc/kubernetes/pki/l"), b"new", 0o644, None)
            .unwrap();
        let pki = d.path().join("etc/kubernetes/pki");
        assert_eq!(std::fs::read(pki.join("t")).unwrap(), b"old");
        assert_eq!(std::fs::read(pki.join("l")).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(pki.join("l")).unwrap().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read_dir(&pki).unwrap().count(), 2);
    }

    #[test]
    fn a_dangling_ancestor_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        std::fs::create_dir_all(d.path().join("var")).unwrap();
        symlink("/nowhere", d.path().join("var/lib")).unwrap();
        let e = r
            .create_dir_all(Path::new("/var/lib/cert-rotator/backup"), 0o700)
            .unwrap_err();
        assert_eq!(e.to_string(), "/var/lib: dangling symlink to /nowhere");
        assert!(!d.path().join("nowhere").exists());
        std::fs::write(d.path().join("var/file"), b"").unwrap();
        let e = r
            .create_dir_all(Path::new("/var/file/x"), 0o700)
            .unwrap_err();
        assert_eq!(e.to_string(), "/var/file: is not a directory");
        // Through a link that resolves, directories are made where it points, 0700.
        std::fs::remove_file(d.path().join("var/lib")).unwrap();
        symlink("../srv", d.path().join("var/lib")).unwrap();
        std::fs::create_dir(d.path().join("srv")).unwrap();
        r.create_dir_all(Path::new("/var/lib/cert-rotator"), 0o700)
            .unwrap();
        let m = std::fs::metadata(d.path().join("srv/cert-rotator")).unwrap();
        assert!(m.is_dir() && m.mode() & 0o777 == 0o700);
    }

    #[test]
    fn symlinks_renames_and_removals_act_on_entries() {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        r.create_dir_all(Path::new("/a"), 0o755).unwrap();
        r.symlink(Path::new("t1"), Path::new("/a/.l.tmp")).unwrap();
        r.rename(Path::new("/a/.l.tmp"), Path::new("/a/l")).unwrap();
        assert_eq!(r.read_link(Path::new("/a/l")).unwrap(), Path::new("t1"));
        assert!(r.is_symlink(Path::new("/a/l")));
        assert!(r
            .symlink(Path::new("../../x"), Path::new("/a/bad"))
            .is_err());
        assert!(r.remove_file(Path::new("/a/l")).unwrap());
        assert!(!r.remove_file(Path::new("/a/l")).unwrap());
        r.sync_dir(Path::new("/a")).unwrap();
        let names: Vec<_> = r
            .read_dir(Path::new("/"))
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, vec![OsString::from("a")]);
    }

    #[test]
    fn the_lock_file_is_a_regular_file_opened_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        r.create_dir_all(Path::new("/state"), 0o700).unwrap();
        let fifo = d.path().join("state/lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Run apart: an open that blocks fails the test instead of hanging it.
        let opened = |r: NodeRoot| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(r.open_lock_file(Path::new("/state/lock")).map(|_| ()));
            });
            rx.recv_timeout(std::time::Duration::from_secs(5))
                .expect("the lock's open blocked")
        };
        let e = opened(r.clone()).unwrap_err();
        assert_eq!(e.to_string(), "/state/lock: is a FIFO, not a regular file");
        // With a reader the open succeeds: the descriptor says what it is.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let e = opened(r.clone()).unwrap_err();
        assert_eq!(e.to_string(), "/state/lock: is a FIFO, not a regular file");
        std::fs::remove_file(&fifo).unwrap();
        std::fs::create_dir(&fifo).unwrap();
        let e = opened(r.clone()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/state/lock: is a directory, expected a file"
        );
        std::fs::remove_dir(&fifo).unwrap();
        opened(r.clone()).unwrap();
        let m = std::fs::metadata(&fifo).unwrap();
        assert!(m.is_file() && m.mode() & 0o777 == 0o600);
    }
}
