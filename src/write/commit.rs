//! Step 5 of a change set, the renames into place, and its undo when one fails.
//!
//! A rename can fail part-way (an immutable key, a full directory, EIO): the files
//! renamed before it are new, the rest old, so a certificate would sit with the key of
//! another renewal. The change set is then undone under the record's `rolling-back`
//! phase: every file goes back to its before-image (the change set's own backup), every
//! staged file is removed. Each step is idempotent, so a crash during the undo is
//! finished by the next command's recovery exactly as it began.

use std::path::Path;

use super::{failpoint, parent, Journal, JournalEntry, Phase, WriteError};
use crate::model::NewContent;
use crate::write::StateDir;

impl StateDir {
    /// Renames every staged file of `journal` (in `committing`) into place. When one
    /// fails, the change set is undone (see the module docs) and the error names the
    /// file whose rename failed, and says whether the undo completed: if not, the
    /// record stays, in `rolling-back`, for the next command to finish.
    pub(super) fn commit(&self, journal: &mut Journal) -> Result<(), WriteError> {
        let Err(failed) = journal
            .entries
            .iter()
            .try_for_each(|e| self.commit_entry(e))
        else {
            return Ok(());
        };
        journal.phase = Phase::RollingBack;
        let undo = self
            .write_journal(journal)
            .and_then(|()| self.roll_back_commit(journal))
            .and_then(|()| self.remove_journal());
        match &undo {
            Ok(()) => {
                self.drop_before_images(&journal.entries);
                tracing::warn!(label = %journal.label, error = %failed, "a rename into place failed: the change set was undone, the old files stay")
            }
            Err(e) => {
                tracing::error!(label = %journal.label, error = %failed, undo = %e, "a rename into place failed and the undo did not complete: the write-ahead record stays")
            }
        }
        Err(WriteError::Commit {
            source: Box::new(failed),
            undo: undo.err().map(Box::new),
        })
    }

    fn commit_entry(&self, e: &JournalEntry) -> Result<(), WriteError> {
        let root = self.root();
        injected::rename_failure(&e.path)?;
        root.rename(&e.staged, &e.path)
            .map_err(WriteError::node(&e.path, "renaming into place"))?;
        failpoint("rename");
        root.sync_dir(parent(&e.path))
            .map_err(WriteError::node(&e.path, "fsync directory"))?;
        failpoint("fsync-dir");
        Ok(())
    }

    /// Puts every file of the change set back to its before-image and removes every
    /// staged file. A file the change set created (no backup) stays, as after a
    /// restore: nothing points at it any more.
    pub(super) fn roll_back_commit(&self, j: &Journal) -> Result<(), WriteError> {
        let root = self.root();
        for e in &j.entries {
            if let Some(b) = &e.backup {
                self.put_back(e, b)?;
            }
            if root
                .symlink_metadata(&e.staged)
                .map_err(WriteError::node(&e.staged, "removing staged file"))?
                .is_some()
            {
                root.remove_file(&e.staged)
                    .map_err(WriteError::node(&e.staged, "removing staged file"))?;
                root.sync_dir(parent(&e.staged))
                    .map_err(WriteError::node(&e.staged, "fsync"))?;
            }
        }
        tracing::warn!(label = %j.label, "undid a change set whose commit failed: the old files are in place");
        Ok(())
    }

    /// Renames the before-image `backup` of `e.path` into place through the staged
    /// name, unless the file is that already (never renamed, or put back before a
    /// crash): the file whose rename failed is not touched again.
    fn put_back(&self, e: &JournalEntry, backup: &Path) -> Result<(), WriteError> {
        let root = self.root();
        let before = self.content_of(backup)?;
        let Some(before) = before else {
            return Err(WriteError::Recovery {
                path: e.path.clone(),
                message: format!(
                    "its backup {} is gone: cannot put the old file back",
                    backup.display()
                ),
            });
        };
        if self.content_of(&e.path)?.as_ref() == Some(&before) {
            return Ok(());
        }
        // The new file's owner and mode are the replaced file's (stage_all kept them).
        let (mode, owner) = self
            .owner_and_mode(&e.path)
            .map_or((0o600, None), |(m, o)| (m, Some(o)));
        match &before {
            NewContent::File(bytes) => root
                .stage_file(&e.staged, bytes, mode, owner)
                .map_err(WriteError::node(&e.path, "writing the old file back"))?,
            NewContent::Symlink(target) => root
                .symlink(target, &e.staged)
                .map_err(WriteError::node(&e.path, "writing the old link back"))?,
        }
        injected::rename_failure(&e.path)?;
        root.rename(&e.staged, &e.path)
            .map_err(WriteError::node(&e.path, "renaming the old file back"))?;
        root.sync_dir(parent(&e.path))
            .map_err(WriteError::node(&e.path, "fsync directory"))
    }

    /// What is at a node path: a symlink's target or a file's bytes; `None` when
    /// nothing is there.
    pub(super) fn content_of(&self, path: &Path) -> Result<Option<NewContent>, WriteError> {
        self.content_at(path, "reading")
    }

    /// [`content_of`](Self::content_of), its errors saying `doing` (a backup's read says
    /// so).
    pub(super) fn content_at(
        &self,
        path: &Path,
        doing: &'static str,
    ) -> Result<Option<NewContent>, WriteError> {
        let root = self.root();
        let Some(meta) = root
            .symlink_metadata(path)
            .map_err(WriteError::node(path, doing))?
        else {
            return Ok(None);
        };
        Ok(Some(if meta.file_type().is_symlink() {
            NewContent::Symlink(
                root.read_link(path)
                    .map_err(WriteError::node(path, doing))?,
            )
        } else {
            NewContent::File(
                root.read_file(path)
                    .map_err(WriteError::node(path, doing))?
                    .1,
            )
        }))
    }
}

/// An injected rename failure, for the tests of the undo: a rename can fail for real
/// only where the test cannot arrange it portably (chattr +i needs root and ext4).
mod injected {
    use std::path::Path;

    use crate::write::WriteError;

    /// With the `failpoints` feature, `CERT_ROTATOR_FAIL_RENAMES=2,3` fails the 2nd and
    /// 3rd renames into place of the process, an undo's included (EIO); without it, nothing.
    #[cfg(feature = "failpoints")]
    pub(super) fn rename_failure(path: &Path) -> Result<(), WriteError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = std::env::var("CERT_ROTATOR_FAIL_RENAMES")
            .unwrap_or_default()
            .split(',')
            .any(|v| v.trim().parse::<usize>().ok() == Some(n));
        if fail {
            return Err(WriteError::Io {
                path: path.to_path_buf(),
                action: "renaming into place",
                source: std::io::Error::from_raw_os_error(nix::libc::EIO),
            });
        }
        Ok(())
    }

    #[cfg(not(feature = "failpoints"))]
    #[inline(always)]
    pub(super) fn rename_failure(_path: &Path) -> Result<(), WriteError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeRoot;
    use crate::write::Phase;
    use std::fs;
    use std::path::PathBuf;

    const PKI: &str = "etc/kubernetes/pki";

    fn entry(name: &str, backup: Option<&str>) -> JournalEntry {
        JournalEntry {
            path: PathBuf::from(format!("/{PKI}/{name}")),
            staged: PathBuf::from(format!("/{PKI}/.{name}.cert-rotator.tmp")),
            backup: backup.map(|b| PathBuf::from(format!("/var/lib/cr/backup/g/{PKI}/{b}"))),
        }
    }

    /// A commit that failed after renaming the certificate: the new certificate sits
    /// with the old key, the new key is still staged.
    fn half_committed() -> (tempfile::TempDir, StateDir, Journal) {
        let d = tempfile::tempdir().unwrap();
        let pki = d.path().join(PKI);
        let backup = d.path().join("var/lib/cr/backup/g").join(PKI);
        fs::create_dir_all(&pki).unwrap();
        fs::create_dir_all(&backup).unwrap();
        fs::write(backup.join("a.crt"), b"old cert").unwrap();
        fs::write(backup.join("a.key"), b"old key").unwrap();
        fs::write(pki.join("a.crt"), b"new cert").unwrap();
        fs::write(pki.join("a.key"), b"old key").unwrap();
        fs::write(pki.join(".a.key.cert-rotator.tmp"), b"new key").unwrap();
        // Created by the change set and renamed already: it stays.
        fs::write(pki.join("c.pem"), b"created").unwrap();
        let s = StateDir::new(&NodeRoot::new(d.path()), Path::new("/var/lib/cr"), 3);
        let j = Journal {
            label: "renew a".into(),
            phase: Phase::RollingBack,
            started: time::OffsetDateTime::now_utc(),
            entries: vec![
                entry("a.crt", Some("a.crt")),
                entry("a.key", Some("a.key")),
                entry("c.pem", None),
            ],
        };
        s.write_journal(&j).unwrap();
        (d, s, j)
    }

    #[test]
    fn recovery_of_a_rolling_back_record_puts_the_old_pair_back() {
        let (d, s, _) = half_committed();
        let pki = d.path().join(PKI);
        let j = s.recover().unwrap().expect("a record");
        assert_eq!(j.phase, Phase::RollingBack);
        assert_eq!(fs::read(pki.join("a.crt")).unwrap(), b"old cert");
        assert_eq!(fs::read(pki.join("a.key")).unwrap(), b"old key");
        assert_eq!(fs::read(pki.join("c.pem")).unwrap(), b"created");
        let mut left: Vec<_> = fs::read_dir(&pki)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["a.crt", "a.key", "c.pem"]);
        assert!(s.pending().unwrap().is_none());
    }

    #[test]
    fn the_undo_is_idempotent_after_a_crash_part_way() {
        let (d, s, j) = half_committed();
        let pki = d.path().join(PKI);
        // A crash after the old certificate was staged back, before its rename.
        fs::write(pki.join(".a.crt.cert-rotator.tmp"), b"old c").unwrap();
        s.roll_back_commit(&j).unwrap();
        s.roll_back_commit(&j).unwrap();
        assert_eq!(fs::read(pki.join("a.crt")).unwrap(), b"old cert");
        assert_eq!(fs::read(pki.join("a.key")).unwrap(), b"old key");
        assert!(!pki.join(".a.crt.cert-rotator.tmp").exists());
        assert!(!pki.join(".a.key.cert-rotator.tmp").exists());
    }

    #[test]
    fn a_missing_backup_stops_the_undo_naming_the_file() {
        let (d, s, _) = half_committed();
        fs::remove_file(d.path().join("var/lib/cr/backup/g").join(PKI).join("a.crt")).unwrap();
        let e = s.recover().unwrap_err().to_string();
        assert!(
            e.contains("/etc/kubernetes/pki/a.crt") && e.contains("is gone"),
            "{e}"
        );
        // The record stays for the operator (status shows it).
        assert_eq!(s.pending().unwrap().unwrap().phase, Phase::RollingBack);
    }
}
