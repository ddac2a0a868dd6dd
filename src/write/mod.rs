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
//! 5. rename each staged file over its final path, fsync its directory; a rename that
//!    fails part-way undoes the change set under `rolling-back` ([`commit`]);
//! 6. remove the journal.
//!
//! Recovery (at the start of every command that writes): a journal in `staging` means no
//! final file was touched, so staged files are removed (roll back); `committing` means
//! every staged file is durable, so the remaining renames are done (roll forward);
//! `rolling-back` means a rename failed, so every file goes back to its backup.
//! Each change set's backups are its own before-images ([`before`]), so a rollback puts
//! back what that change set replaced, not what the pass found.
//! [`StateDir::restore`] puts an earlier change set's files back from its backup, as a
//! new change set under the same protocol.
//!
//! Every file operation is a [`NodeRoot`] primitive on node paths, so no step can be led
//! out of `--root` by a symlink. The state directory itself (lock, backups, records) is
//! in [`state`].

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::node::NodeError;

mod before;
mod commit;
pub mod kubeadm_skips;
pub mod state;
mod trust;

pub use crate::model::{FileChange, NewContent};
pub use crate::node::failpoint;
pub use before::{WrittenFile, RESTART_RECORD};
pub use state::{PassLock, StateDir};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A node file could not be read or written; `path` is the file the step concerns.
    #[error("{path}: {action}: {}", detail(path, source))]
    Node {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: NodeError,
    },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: unfinished write-ahead record could not be recovered: {message}")]
    Recovery { path: PathBuf, message: String },
    /// The backup generation a restore needs is not there (pruned, removed by hand):
    /// restoring nothing would pass for a rollback done.
    #[error("{path}: the backup to restore {} from is gone: nothing was restored", file.display())]
    BackupGone { path: PathBuf, file: PathBuf },
    /// A rename into place failed (`source` names the file) and the change set was
    /// undone, or, with `undo`, could not be: the record stays for the next command.
    #[error("{source}; {}", match undo {
        None => "the change set was undone: the old files are in place".to_string(),
        Some(u) => format!("undoing the change set failed too ({u}): the write-ahead record stays and the next command finishes the undo"),
    })]
    Commit {
        source: Box<WriteError>,
        undo: Option<Box<WriteError>>,
    },
    /// A rollback would undo a later change set's write of the file.
    #[error("{path}: written again since, by another change set (its before-image: {before_image}): not rolled back, which would undo that write; the backups are under the state directory's backup/")]
    WrittenSince {
        path: PathBuf,
        before_image: PathBuf,
    },
}

/// The gate's message without its path when it is the path already named.
fn detail(path: &Path, e: &NodeError) -> String {
    if e.path == path {
        e.problem.to_string()
    } else {
        e.to_string()
    }
}

impl WriteError {
    fn node<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(NodeError) -> Self + 'a {
        move |source| WriteError::Node {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Staging,
    Committing,
    /// A rename into place failed: every file goes back to its backup.
    RollingBack,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct JournalEntry {
    /// Node paths.
    pub path: PathBuf,
    pub staged: PathBuf,
    pub backup: Option<PathBuf>,
}

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

/// Parent directory of a node path (`/` for `/`).
fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("/"))
}

impl StateDir {
    /// Reads an unfinished write-ahead record, if any (for `status`).
    pub fn pending(&self) -> Result<Option<Journal>, WriteError> {
        let j: Option<Journal> = self.read_json("journal.json").map_err(|e| match e {
            WriteError::Json { path, source } => WriteError::Recovery {
                path,
                message: format!("unreadable: {source}"),
            },
            e => e,
        })?;
        if let Some(j) = &j {
            trust::check_journal(&self.journal_path(), &self.path("backup"), j)?;
        }
        Ok(j)
    }

    fn write_journal(&self, j: &Journal) -> Result<(), WriteError> {
        self.write_record(&self.journal_path(), j, "writing write-ahead record")
    }

    fn remove_journal(&self) -> Result<(), WriteError> {
        let p = self.journal_path();
        self.root()
            .remove_file(&p)
            .map_err(WriteError::node(&p, "removing write-ahead record"))?;
        self.root()
            .sync_dir(self.dir())
            .map_err(WriteError::node(self.dir(), "fsync"))
    }

    /// Finishes or undoes an interrupted change set. Returns the record it found.
    pub fn recover(&self) -> Result<Option<Journal>, WriteError> {
        // A crash while writing a backup or the record itself leaves a temp file in the
        // state directory.
        self.sweep_once();
        let Some(j) = self.pending()? else {
            return Ok(None);
        };
        let root = self.root();
        match j.phase {
            Phase::Staging => {
                for e in &j.entries {
                    // Only what exists: on a read-only file system even a missing file's
                    // removal fails with EROFS.
                    let there = root
                        .symlink_metadata(&e.staged)
                        .map_err(WriteError::node(&e.staged, "removing staged file"))?;
                    if there.is_none() {
                        continue;
                    }
                    root.remove_file(&e.staged)
                        .map_err(WriteError::node(&e.staged, "removing staged file"))?;
                    root.sync_dir(parent(&e.staged))
                        .map_err(WriteError::node(&e.staged, "fsync"))?;
                }
                tracing::warn!(label = %j.label, "rolled back an interrupted renewal: the old files stay");
            }
            Phase::Committing => {
                for e in &j.entries {
                    let there = root
                        .symlink_metadata(&e.staged)
                        .map_err(WriteError::node(&e.path, "renaming staged file"))?;
                    if there.is_some() {
                        root.rename(&e.staged, &e.path)
                            .map_err(WriteError::node(&e.path, "renaming staged file"))?;
                        root.sync_dir(parent(&e.path))
                            .map_err(WriteError::node(&e.path, "fsync"))?;
                    }
                }
                tracing::warn!(label = %j.label, "finished an interrupted renewal: the new files are in place");
            }
            Phase::RollingBack => self.roll_back_commit(&j)?,
        }
        self.remove_journal()?;
        if !matches!(j.phase, Phase::Committing) {
            self.drop_before_images(&j.entries);
        }
        Ok(Some(j))
    }

    /// Applies a change set crash-safely (see the module docs).
    pub fn apply(&self, label: &str, changes: &[FileChange]) -> Result<Applied, WriteError> {
        self.ensure()?;
        // Never start over an unfinished record: finish or undo it first.
        self.recover()?;
        let now = OffsetDateTime::now_utc();
        let backup_dir = self.backup_generation(now)?;
        let entries: Vec<JournalEntry> = changes
            .iter()
            .zip(self.back_up_change_set(&backup_dir, changes)?)
            .map(|(c, backup)| JournalEntry {
                path: c.path.clone(),
                staged: staged_path(c),
                backup,
            })
            .collect();
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
        self.commit(&mut journal)?;
        self.remove_journal()?;
        failpoint("journal-removed");
        // Never this pass's own generation: a rollback of it restores from there.
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
        let root = self.root();
        for (c, e) in changes.iter().zip(entries) {
            // Keep the replaced file's owner and mode; keys never more open than 0600.
            let (mode, owner) = match self.owner_and_mode(&c.path) {
                Some((mode, owner)) => (mode, Some(owner)),
                None => (c.mode, None),
            };
            let mode = if c.secret { mode & 0o600 } else { mode };
            match &c.content {
                NewContent::File(bytes) => root
                    .stage_file(&e.staged, bytes, mode, owner)
                    .map_err(WriteError::node(&c.path, "writing staged file"))?,
                NewContent::Symlink(target) => root
                    .symlink(target, &e.staged)
                    .map_err(WriteError::node(&c.path, "creating staged symlink"))?,
            }
            failpoint("stage");
            root.sync_dir(parent(&e.staged))
                .map_err(WriteError::node(&c.path, "fsync directory"))?;
        }
        Ok(())
    }

    /// The changes that put back the files of earlier change sets from their backups:
    /// a file backed up as a symlink becomes that symlink again. A file the change set
    /// created has no backup and stays (the restored symlink no longer points at it);
    /// a backup that is gone is an error: restoring the rest would part a certificate
    /// from its key.
    pub fn restore_changes(&self, applied: &[Applied]) -> Result<Vec<FileChange>, WriteError> {
        let root = self.root();
        let mut changes = Vec::new();
        for a in applied {
            let generation = root
                .symlink_metadata(&a.backup_dir)
                .map_err(WriteError::node(&a.backup_dir, "reading backup"))?;
            if let (false, Some(e)) = (generation.is_some_and(|m| m.is_dir()), a.entries.first()) {
                return Err(WriteError::BackupGone {
                    path: a.backup_dir.clone(),
                    file: e.path.clone(),
                });
            }
        }
        for e in applied.iter().flat_map(|a| &a.entries) {
            let Some(b) = &e.backup else { continue };
            let Some(content) = self.content_at(b, "reading backup")? else {
                return Err(WriteError::BackupGone {
                    path: b.clone(),
                    file: e.path.clone(),
                });
            };
            changes.push(FileChange {
                content,
                ..FileChange::file(&e.path, Vec::new(), 0o600, false)
            });
        }
        Ok(changes)
    }

    /// Puts back the files of earlier change sets from their backups, as one new
    /// crash-safe change set `label` (see [`StateDir::restore_changes`]).
    pub fn restore(&self, label: &str, applied: &[Applied]) -> Result<Applied, WriteError> {
        let changes = self.restore_changes(applied)?;
        self.apply(label, &changes)
    }
}

fn staged_path(c: &FileChange) -> PathBuf {
    let name = c
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = parent(&c.path);
    let dir = if c.stage_outside { parent(dir) } else { dir };
    match &c.staged_name {
        Some(s) => dir.join(s),
        None => dir.join(format!(".{name}.cert-rotator.tmp")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeRoot;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
        let s = StateDir::new(&root, Path::new("/var/lib/cert-rotator"), 100);
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
            .root()
            .host(&applied.backup_dir)
            .join("etc/kubernetes/pki/a.key");
        assert_eq!(fs::read(&b).unwrap(), b"old key");
        assert_eq!(fs::metadata(&b).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(s.root().host(&applied.backup_dir))
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
        fs::create_dir_all(s.root().host(s.dir())).unwrap();
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
        let (_d, s) = setup();
        for _ in 0..4 {
            // A new process each time: a new generation.
            let s = StateDir::new(s.root(), s.dir(), 2);
            s.apply("a", &pair()).unwrap();
        }
        let n = fs::read_dir(s.root().host(&s.path("backup")))
            .unwrap()
            .count();
        assert_eq!(n, 2);
    }

    #[test]
    fn restore_puts_back_files_and_links_and_keeps_created_ones() {
        let (d, s) = setup();
        let pki = d.path().join("etc/kubernetes/pki");
        std::os::unix::fs::symlink("a.crt", pki.join("current.pem")).unwrap();
        let mut changes = pair();
        changes.push(FileChange {
            content: NewContent::Symlink("new.pem".into()),
            ..FileChange::file("/etc/kubernetes/pki/current.pem", vec![], 0o777, false)
        });
        changes.push(FileChange::file(
            "/etc/kubernetes/pki/new.pem",
            b"created".to_vec(),
            0o600,
            true,
        ));
        let applied = s.apply("a", &changes).unwrap();
        assert_eq!(fs::read(pki.join("a.crt")).unwrap(), b"new cert");
        // As a pass records it: the files and the backup directory.
        let recorded = s.rollback_of(&applied.files()).unwrap();
        let back = s.restore_changes(&recorded).unwrap();
        assert_eq!(back.len(), 3, "{back:?}");
        s.restore("roll back a", &recorded).unwrap();
        assert_eq!(fs::read(pki.join("a.crt")).unwrap(), b"old cert");
        assert_eq!(fs::read(pki.join("a.key")).unwrap(), b"old key");
        assert_eq!(
            fs::read_link(pki.join("current.pem")).unwrap(),
            Path::new("a.crt")
        );
        assert_eq!(fs::read(pki.join("new.pem")).unwrap(), b"created");
    }

    #[test]
    fn a_lost_before_image_is_an_error_and_nothing_is_restored() {
        let (d, s) = setup();
        let pki = d.path().join("etc/kubernetes/pki");
        let applied = s.apply("a", &pair()).unwrap();
        let key = s
            .root()
            .host(&applied.backup_dir)
            .join("etc/kubernetes/pki/a.key");
        fs::remove_file(key).unwrap();
        let back = s.rollback_of(&applied.files()).unwrap();
        let e = s.restore("roll back a", &back).unwrap_err().to_string();
        assert!(e.contains("a.key") && e.contains("is gone"), "{e}");
        assert_eq!(fs::read(pki.join("a.crt")).unwrap(), b"new cert");
    }
}
