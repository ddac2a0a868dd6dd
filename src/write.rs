//! Writing: crash-safe replacement of a set of node files as one unit.
//!
//! A renewal changes files that only make sense together (a certificate and its key; a
//! new kubelet client file and the symlink pointing at it). A crash at any instant must
//! leave either all old or all new files. The protocol, with a write-ahead record
//! (`journal.json`) in the state directory:
//!
//! 1. back up every file that will be replaced (state dir, 0700/0600);
//! 2. journal `staging`: the list of final and staged paths;
//! 3. stage every new file as a dot-prefixed temp file in the final file's directory
//!    (or, for static-pod manifests, in the directory above: the kubelet runs every file
//!    in the manifests directory): write, fsync, owner and mode of the replaced file;
//!    fsync the directory;
//! 4. journal `committing`;
//! 5. rename each staged file over its final path, fsync its directory;
//! 6. remove the journal.
//!
//! Recovery (at the start of every command that writes): a journal in `staging` means no
//! final file was touched, so staged files are removed (roll back); `committing` means
//! every staged file is durable, so the remaining renames are done (roll forward).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::node::NodeRoot;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{path}: unfinished write-ahead record could not be recovered: {message}")]
    Recovery { path: PathBuf, message: String },
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

pub use crate::model::{FileChange, NewContent};

/// The state directory (/var/lib/cert-rotator) under the root.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: NodeRoot,
    /// Node path.
    pub dir: PathBuf,
    /// How many backup generations to keep.
    pub keep_backups: usize,
    /// This process's backup generation, made on the first write: one directory per
    /// pass or command, so a component's files can be restored together.
    generation: std::sync::Arc<std::sync::Mutex<Option<PathBuf>>>,
    swept: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Staging,
    Committing,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct JournalEntry {
    /// Node paths.
    pub path: PathBuf,
    pub staged: PathBuf,
    pub backup: Option<PathBuf>,
}

/// The state directory's lock, held while a command writes; released on drop.
pub struct PassLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

/// The write-ahead record.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Journal {
    pub label: String,
    pub phase: Phase,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    pub entries: Vec<JournalEntry>,
}

/// What a committed change set left behind.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Node path of the backup directory of this change set.
    pub backup_dir: PathBuf,
    pub entries: Vec<JournalEntry>,
}

impl StateDir {
    pub fn new(root: &NodeRoot, dir: &Path) -> Self {
        StateDir {
            root: root.clone(),
            dir: dir.to_path_buf(),
            keep_backups: 30,
            generation: Default::default(),
            swept: Default::default(),
        }
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    /// Reads an unfinished write-ahead record, if any (for `status`).
    pub fn pending(&self) -> Result<Option<Journal>, WriteError> {
        let p = self.journal_path();
        match self.root.read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| WriteError::Recovery {
                    path: p,
                    message: format!("unreadable: {e}"),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(WriteError::Io {
                path: p,
                action: "reading",
                source: e,
            }),
        }
    }

    fn ensure(&self) -> Result<(), WriteError> {
        create_private_dir(&self.root.host(&self.dir))
            .map_err(io_err(&self.dir, "creating state directory"))
    }

    fn write_journal(&self, j: &Journal) -> Result<(), WriteError> {
        let bytes = serde_json::to_vec_pretty(j).unwrap_or_default();
        write_atomic_host(&self.root.host(&self.journal_path()), &bytes, 0o600, None)
            .map_err(io_err(&self.journal_path(), "writing write-ahead record"))
    }

    fn remove_journal(&self) -> Result<(), WriteError> {
        let p = self.root.host(&self.journal_path());
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io_err(&self.journal_path(), "removing write-ahead record")(
                    e,
                ))
            }
        }
        fsync_dir(&self.root.host(&self.dir)).map_err(io_err(&self.dir, "fsync"))
    }

    /// Finishes or undoes an interrupted change set. Returns the record it found.
    pub fn recover(&self) -> Result<Option<Journal>, WriteError> {
        // A crash while writing a backup or the record itself leaves a temp file in the
        // state directory (never on the node: node files change only under a record).
        // Once per process: the backup tree grows with every generation.
        if !self.swept.swap(true, std::sync::atomic::Ordering::SeqCst) {
            sweep_temp_files(&self.root.host(&self.dir));
        }
        let Some(j) = self.pending()? else {
            return Ok(None);
        };
        match j.phase {
            Phase::Staging => {
                for e in &j.entries {
                    let staged = self.root.host(&e.staged);
                    // Only what exists: on a read-only file system even a missing file's
                    // removal fails with EROFS.
                    if fs::symlink_metadata(&staged).is_err() {
                        continue;
                    }
                    fs::remove_file(&staged).map_err(io_err(&e.staged, "removing staged file"))?;
                    if let Some(parent) = staged.parent() {
                        fsync_dir(parent).map_err(io_err(&e.staged, "fsync"))?;
                    }
                }
                tracing::warn!(label = %j.label, "rolled back an interrupted renewal: the old files stay");
            }
            Phase::Committing => {
                for e in &j.entries {
                    let staged = self.root.host(&e.staged);
                    if fs::symlink_metadata(&staged).is_ok() {
                        let fin = self.root.host(&e.path);
                        fs::rename(&staged, &fin)
                            .map_err(io_err(&e.path, "renaming staged file"))?;
                        if let Some(parent) = fin.parent() {
                            fsync_dir(parent).map_err(io_err(&e.path, "fsync"))?;
                        }
                    }
                }
                tracing::warn!(label = %j.label, "finished an interrupted renewal: the new files are in place");
            }
        }
        self.remove_journal()?;
        Ok(Some(j))
    }

    /// Takes the state directory's lock without waiting: `None` when another
    /// cert-rotator holds it. Released when the returned file is dropped.
    pub fn try_lock(&self) -> Result<Option<PassLock>, WriteError> {
        self.ensure()?;
        let p = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.root.host(&p))
            .map_err(io_err(&p, "opening lock"))?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(PassLock(l))),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io_err(&p, "lock")(e.into())),
        }
    }

    /// Applies a change set crash-safely (see the module docs).
    pub fn apply(&self, label: &str, changes: &[FileChange]) -> Result<Applied, WriteError> {
        self.ensure()?;
        // Never start over an unfinished record: finish or undo it first.
        self.recover()?;
        let now = OffsetDateTime::now_utc();
        let backup_dir = self.backup_generation(now)?;
        let mut entries = Vec::new();
        for c in changes {
            let backup = self.backup(&backup_dir, &c.path)?;
            entries.push(JournalEntry {
                path: c.path.clone(),
                staged: staged_path(c),
                backup,
            });
        }
        let mut journal = Journal {
            label: label.to_string(),
            phase: Phase::Staging,
            started: now,
            entries: entries.clone(),
        };
        self.write_journal(&journal)?;
        failpoint("journal-staging");
        if let Err(e) = self.stage_all(changes, &entries) {
            // Nothing final was touched: undo the staging, keep the old files.
            let _ = self.recover();
            return Err(e);
        }
        journal.phase = Phase::Committing;
        self.write_journal(&journal)?;
        failpoint("journal-committing");
        for e in &entries {
            let fin = self.root.host(&e.path);
            fs::rename(self.root.host(&e.staged), &fin)
                .map_err(io_err(&e.path, "renaming into place"))?;
            failpoint("rename");
            if let Some(parent) = fin.parent() {
                fsync_dir(parent).map_err(io_err(&e.path, "fsync directory"))?;
            }
            failpoint("fsync-dir");
        }
        self.remove_journal()?;
        failpoint("journal-removed");
        self.prune_backups();
        Ok(Applied {
            backup_dir,
            entries,
        })
    }

    fn stage_all(
        &self,
        changes: &[FileChange],
        entries: &[JournalEntry],
    ) -> Result<(), WriteError> {
        for (c, e) in changes.iter().zip(entries) {
            let staged = self.root.host(&e.staged);
            let fin = self.root.host(&c.path);
            // Keep the replaced file's owner and mode; keys never more open than 0600.
            let (mode, owner) = match fs::metadata(&fin) {
                Ok(m) => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
                Err(_) => (c.mode, None),
            };
            let mode = if c.secret { mode & 0o600 } else { mode };
            match &c.content {
                NewContent::File(bytes) => {
                    stage_file(&staged, bytes, mode, owner)
                        .map_err(io_err(&c.path, "writing staged file"))?;
                }
                NewContent::Symlink(target) => {
                    let _ = fs::remove_file(&staged);
                    std::os::unix::fs::symlink(target, &staged)
                        .map_err(io_err(&c.path, "creating staged symlink"))?;
                }
            }
            failpoint("stage");
            if let Some(parent) = staged.parent() {
                fsync_dir(parent).map_err(io_err(&c.path, "fsync directory"))?;
            }
        }
        Ok(())
    }

    /// The backup directory of this process, made on first use.
    pub fn backup_generation(&self, now: OffsetDateTime) -> Result<PathBuf, WriteError> {
        let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = g.as_ref() {
            return Ok(d.clone());
        }
        let d = self.new_backup_dir(now)?;
        *g = Some(d.clone());
        Ok(d)
    }

    fn new_backup_dir(&self, now: OffsetDateTime) -> Result<PathBuf, WriteError> {
        let base = self.dir.join("backup");
        create_private_dir(&self.root.host(&base))
            .map_err(io_err(&base, "creating backup directory"))?;
        let stamp = crate::timefmt::rfc3339(now.replace_nanosecond(0).unwrap_or(now));
        let mut dir = base.join(&stamp);
        let mut n = 1;
        while self.root.exists(&dir) {
            n += 1;
            dir = base.join(format!("{stamp}.{n}"));
        }
        create_private_dir(&self.root.host(&dir))
            .map_err(io_err(&dir, "creating backup directory"))?;
        Ok(dir)
    }

    /// Copies a node file into the backup directory at its node path (0600; a symlink
    /// is backed up as a symlink). Returns the backup's node path.
    fn backup(&self, backup_dir: &Path, path: &Path) -> Result<Option<PathBuf>, WriteError> {
        let src = self.root.host(path);
        let meta = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path, "backing up")(e)),
        };
        let rel = path.strip_prefix("/").unwrap_or(path);
        let dst_node = backup_dir.join(rel);
        let dst = self.root.host(&dst_node);
        if fs::symlink_metadata(&dst).is_ok() {
            // Written twice in one pass: the backup keeps the state before the pass.
            return Ok(Some(dst_node));
        }
        if let Some(parent) = dst.parent() {
            create_private_dir_all(parent)
                .map_err(io_err(&dst_node, "creating backup directory"))?;
        }
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(io_err(path, "backing up"))?;
            std::os::unix::fs::symlink(target, &dst).map_err(io_err(&dst_node, "backing up"))?;
        } else {
            let bytes = fs::read(&src).map_err(io_err(path, "backing up"))?;
            write_atomic_host(&dst, &bytes, 0o600, None)
                .map_err(io_err(&dst_node, "writing backup"))?;
        }
        Ok(Some(dst_node))
    }

    /// Keeps the newest `keep_backups` backup generations.
    fn prune_backups(&self) {
        let base = self.root.host(&self.dir.join("backup"));
        let Ok(rd) = fs::read_dir(&base) else { return };
        let mut names: Vec<OsString> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        if names.len() > self.keep_backups {
            for n in &names[..names.len() - self.keep_backups] {
                if let Err(e) = fs::remove_dir_all(base.join(n)) {
                    tracing::warn!(backup = ?n, error = %e, "cannot prune old backup");
                }
            }
        }
    }
}

fn sweep_temp_files(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => sweep_temp_files(&p),
            Ok(_)
                if e.file_name()
                    .to_string_lossy()
                    .ends_with(".cert-rotator.tmp") =>
            {
                let _ = fs::remove_file(&p);
            }
            _ => {}
        }
    }
}

fn staged_path(c: &FileChange) -> PathBuf {
    let name = c
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = c.path.parent().unwrap_or(Path::new("/"));
    let dir = if c.stage_outside {
        dir.parent().unwrap_or(Path::new("/"))
    } else {
        dir
    };
    match &c.staged_name {
        Some(s) => dir.join(s),
        None => dir.join(format!(".{name}.cert-rotator.tmp")),
    }
}

fn stage_file(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
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

/// Writes one host file atomically: dot temp in the same directory, fsync, rename,
/// fsync the directory. For files with no partner (records, backups, metrics).
pub fn write_atomic_host(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(".{name}.cert-rotator.tmp"));
    stage_file(&tmp, bytes, mode, owner)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn create_private_dir(p: &Path) -> io::Result<()> {
    match fs::create_dir(p) {
        Ok(()) => fs::set_permissions(p, fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_private_dir_all(p),
        Err(e) => Err(e),
    }
}

fn create_private_dir_all(p: &Path) -> io::Result<()> {
    if p.is_dir() {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        create_private_dir_all(parent)?;
    }
    create_private_dir(p)
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

    fn setup() -> (tempfile::TempDir, StateDir) {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path());
        fs::create_dir_all(d.path().join("etc/kubernetes/pki")).unwrap();
        fs::write(d.path().join("etc/kubernetes/pki/a.crt"), b"old cert").unwrap();
        fs::write(d.path().join("etc/kubernetes/pki/a.key"), b"old key").unwrap();
        fs::set_permissions(
            d.path().join("etc/kubernetes/pki/a.key"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let s = StateDir::new(&root, Path::new("/var/lib/cert-rotator"));
        (d, s)
    }

    fn pair() -> Vec<FileChange> {
        vec![
            FileChange::file(
                "/etc/kubernetes/pki/a.crt",
                b"new cert".to_vec(),
                0o644,
                false,
            ),
            FileChange::file(
                "/etc/kubernetes/pki/a.key",
                b"new key".to_vec(),
                0o600,
                true,
            ),
        ]
    }

    #[test]
    fn apply_replaces_both_files_backs_up_and_tightens_key_mode() {
        let (d, s) = setup();
        let applied = s.apply("a", &pair()).unwrap();
        let pki = d.path().join("etc/kubernetes/pki");
        assert_eq!(fs::read(pki.join("a.crt")).unwrap(), b"new cert");
        assert_eq!(fs::read(pki.join("a.key")).unwrap(), b"new key");
        assert_eq!(
            fs::metadata(pki.join("a.key")).unwrap().mode() & 0o777,
            0o600
        );
        let b = s
            .root
            .host(&applied.backup_dir)
            .join("etc/kubernetes/pki/a.key");
        assert_eq!(fs::read(&b).unwrap(), b"old key");
        assert_eq!(fs::metadata(&b).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(s.root.host(&applied.backup_dir))
                .unwrap()
                .mode()
                & 0o777,
            0o700
        );
        assert!(s.pending().unwrap().is_none());
        let strays: Vec<_> = fs::read_dir(&pki)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(strays.len(), 2, "{strays:?}");
    }

    #[test]
    fn recovery_rolls_back_staging_and_forward_committing() {
        let (d, s) = setup();
        let pki = d.path().join("etc/kubernetes/pki");
        // Staging interrupted: staged files exist, journal says staging.
        fs::create_dir_all(s.root.host(&s.dir)).unwrap();
        fs::write(pki.join(".a.crt.cert-rotator.tmp"), b"new cert").unwrap();
        let entries = pair()
            .iter()
            .map(|c| JournalEntry {
                path: c.path.clone(),
                staged: staged_path(c),
                backup: None,
            })
            .collect::<Vec<_>>();
        let mut j = Journal {
            label: "a".into(),
            phase: Phase::Staging,
            started: OffsetDateTime::now_utc(),
            entries,
        };
        s.write_journal(&j).unwrap();
        assert!(s.recover().unwrap().is_some());
        assert_eq!(fs::read(pki.join("a.crt")).unwrap(), b"old cert");
        assert!(!pki.join(".a.crt.cert-rotator.tmp").exists());
        // Commit interrupted after the first rename.
        fs::write(pki.join("a.crt"), b"new cert").unwrap();
        fs::write(pki.join(".a.key.cert-rotator.tmp"), b"new key").unwrap();
        j.phase = Phase::Committing;
        s.write_journal(&j).unwrap();
        s.recover().unwrap();
        assert_eq!(fs::read(pki.join("a.key")).unwrap(), b"new key");
        assert!(s.pending().unwrap().is_none());
        assert!(s.recover().unwrap().is_none());
    }

    #[test]
    fn staging_outside_keeps_the_manifests_dir_clean() {
        let c = FileChange {
            stage_outside: true,
            ..FileChange::file(
                "/etc/kubernetes/manifests/kube-apiserver.yaml",
                vec![],
                0o600,
                false,
            )
        };
        assert_eq!(
            staged_path(&c),
            Path::new("/etc/kubernetes/.kube-apiserver.yaml.cert-rotator.tmp")
        );
    }

    #[test]
    fn backups_are_pruned_to_the_retention() {
        let (_d, mut s) = setup();
        s.keep_backups = 2;
        for _ in 0..4 {
            // A new process each time: a new generation.
            s = StateDir {
                keep_backups: 2,
                ..StateDir::new(&s.root, &s.dir)
            };
            s.apply("a", &pair()).unwrap();
        }
        let n = fs::read_dir(s.root.host(&s.dir.join("backup")))
            .unwrap()
            .count();
        assert_eq!(n, 2);
    }
}
