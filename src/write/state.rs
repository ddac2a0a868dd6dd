//! The state directory (/var/lib/cert-rotator under the root): the pass lock, backup
//! generations and their pruning, and the agent's small JSON records (journal.json,
//! history.json, last-pass.json). All of it 0700/0600, all of it through the node gate.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Serialize};
use time::OffsetDateTime;

use super::WriteError;
use crate::node::NodeRoot;

/// The state directory under the root.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: NodeRoot,
    /// Node path.
    dir: PathBuf,
    /// How many backup generations to keep.
    keep_backups: usize,
    /// This process's backup generation, made on the first write: one directory per
    /// pass or command, so a component's files can be restored together.
    generation: Arc<Mutex<Option<PathBuf>>>,
    swept: Arc<AtomicBool>,
}

/// The state directory's lock, held while a command writes; released on drop.
pub struct PassLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

impl StateDir {
    /// `dir` is a node path; `keep_backups` generations are kept (the configuration's
    /// default is 100).
    pub fn new(root: &NodeRoot, dir: &Path, keep_backups: usize) -> Self {
        StateDir {
            root: root.clone(),
            dir: dir.to_path_buf(),
            keep_backups,
            generation: Default::default(),
            swept: Default::default(),
        }
    }

    pub fn root(&self) -> &NodeRoot {
        &self.root
    }

    /// Node path of the state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn keep_backups(&self) -> usize {
        self.keep_backups
    }

    /// Node path of a file in the state directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.path("journal.json")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.path("lock")
    }

    pub(super) fn ensure(&self) -> Result<(), WriteError> {
        self.root
            .create_dir_all(&self.dir, 0o700)
            .map_err(WriteError::node(&self.dir, "creating state directory"))
    }

    /// Reads a JSON record of the state directory (`history.json`, `last-pass.json`);
    /// `None` when there is none.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, WriteError> {
        let p = self.path(name);
        let bytes = match self.root.read_file(&p) {
            Ok((_, b)) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(WriteError::node(&p, "reading")(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| WriteError::Json { path: p, source })
    }

    /// Writes a JSON record into the state directory, atomically, 0600.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), WriteError> {
        self.ensure()?;
        self.write_record(&self.path(name), value, "writing")
    }

    /// Removes a record of the state directory; none there is fine.
    pub fn remove_record(&self, name: &str) -> Result<(), WriteError> {
        let p = self.path(name);
        self.root
            .remove_file(&p)
            .map(|_| ())
            .map_err(WriteError::node(&p, "removing"))
    }

    pub(super) fn write_record<T: Serialize>(
        &self,
        p: &Path,
        value: &T,
        action: &'static str,
    ) -> Result<(), WriteError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| WriteError::Json {
            path: p.to_path_buf(),
            source,
        })?;
        self.root
            .write_atomic(p, &bytes, 0o600, None)
            .map_err(WriteError::node(p, action))
    }

    /// Takes the state directory's lock without waiting: `None` when another
    /// cert-rotator holds it. Released when the returned lock is dropped.
    pub fn try_lock(&self) -> Result<Option<PassLock>, WriteError> {
        self.ensure()?;
        let p = self.lock_path();
        let f = self
            .root
            .open_lock_file(&p)
            .map_err(WriteError::node(&p, "opening lock"))?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(PassLock(l))),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(WriteError::Io {
                path: p,
                action: "lock",
                source: e.into(),
            }),
        }
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
        let base = self.path("backup");
        let stamp = crate::timefmt::rfc3339(now.replace_nanosecond(0).unwrap_or(now));
        let mut dir = base.join(&stamp);
        let mut n = 1;
        // A path the gate refuses is an error here, not "taken": the loop must end.
        while self
            .root
            .symlink_metadata(&dir)
            .map_err(WriteError::node(&dir, "creating backup directory"))?
            .is_some()
        {
            n += 1;
            dir = base.join(format!("{stamp}.{n}"));
        }
        self.root
            .create_dir_all(&dir, 0o700)
            .map_err(WriteError::node(&dir, "creating backup directory"))?;
        Ok(dir)
    }

    /// Copies a node file into the backup directory at its node path (0600; a symlink
    /// is backed up as a symlink). Returns the backup's node path, `None` when there is
    /// no file to back up.
    pub(super) fn backup(
        &self,
        backup_dir: &Path,
        path: &Path,
    ) -> Result<Option<PathBuf>, WriteError> {
        let Some(meta) = self
            .root
            .symlink_metadata(path)
            .map_err(WriteError::node(path, "backing up"))?
        else {
            return Ok(None);
        };
        let rel = path.strip_prefix("/").unwrap_or(path);
        let dst = backup_dir.join(rel);
        let backed_up = self
            .root
            .symlink_metadata(&dst)
            .map_err(WriteError::node(&dst, "backing up"))?;
        if backed_up.is_some() {
            // Written twice in one pass: the backup keeps the state before the pass.
            return Ok(Some(dst));
        }
        if let Some(parent) = dst.parent() {
            self.root
                .create_dir_all(parent, 0o700)
                .map_err(WriteError::node(&dst, "creating backup directory"))?;
        }
        if meta.file_type().is_symlink() {
            let target = self
                .root
                .read_link(path)
                .map_err(WriteError::node(path, "backing up"))?;
            self.root
                .symlink(&target, &dst)
                .map_err(WriteError::node(&dst, "backing up"))?;
        } else {
            let (_, bytes) = self
                .root
                .read_file(path)
                .map_err(WriteError::node(path, "backing up"))?;
            self.root
                .write_atomic(&dst, &bytes, 0o600, None)
                .map_err(WriteError::node(&dst, "writing backup"))?;
        }
        Ok(Some(dst))
    }

    /// Keeps the newest `keep_backups` backup generations.
    pub(super) fn prune_backups(&self) {
        let base = self.path("backup");
        let Ok(entries) = self.root.read_dir(&base) else {
            return;
        };
        if entries.len() > self.keep_backups {
            for (name, _) in &entries[..entries.len() - self.keep_backups] {
                if let Err(e) = self.root.remove_dir_all(&base.join(name)) {
                    tracing::warn!(backup = ?name, error = %e, "cannot prune old backup");
                }
            }
        }
    }

    /// Removes the temp files a crash left in the state directory (never on the node:
    /// node files change only under a record). Once per process: the backup tree grows
    /// with every generation.
    pub(super) fn sweep_once(&self) {
        if !self.swept.swap(true, Ordering::SeqCst) {
            self.sweep_temp_files(&self.dir);
        }
    }

    fn sweep_temp_files(&self, dir: &Path) {
        let Ok(entries) = self.root.read_dir(dir) else {
            return;
        };
        for (name, kind) in entries {
            let p = dir.join(&name);
            if kind.is_dir() {
                self.sweep_temp_files(&p);
            } else if name.to_string_lossy().ends_with(".cert-rotator.tmp") {
                let _ = self.root.remove_file(&p);
            }
        }
    }

    /// Owner and mode of a node file about to be replaced, to keep them.
    pub(super) fn owner_and_mode(&self, path: &Path) -> Option<(u32, (u32, u32))> {
        match self.root.metadata(path) {
            Ok(Some(m)) => Some((m.mode() & 0o7777, (m.uid(), m.gid()))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_round_trip_and_missing_is_none() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::new(&NodeRoot::new(d.path()), Path::new("/var/lib/cr"), 3);
        assert_eq!(s.keep_backups(), 3);
        assert!(s.read_json::<Vec<u32>>("history.json").unwrap().is_none());
        s.write_json("history.json", &vec![1u32, 2]).unwrap();
        assert_eq!(
            s.read_json::<Vec<u32>>("history.json").unwrap(),
            Some(vec![1, 2])
        );
        let host = d.path().join("var/lib/cr/history.json");
        assert_eq!(std::fs::metadata(&host).unwrap().mode() & 0o777, 0o600);
        std::fs::write(&host, b"{").unwrap();
        let e = s.read_json::<Vec<u32>>("history.json").unwrap_err();
        assert!(e.to_string().contains("/var/lib/cr/history.json"), "{e}");
    }

    #[test]
    fn a_dangling_ancestor_fails_the_lock_naming_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var")).unwrap();
        std::os::unix::fs::symlink("/gone", d.path().join("var/lib")).unwrap();
        let s = StateDir::new(
            &NodeRoot::new(d.path()),
            Path::new("/var/lib/cert-rotator"),
            100,
        );
        let e = s.try_lock().err().expect("an error").to_string();
        assert!(e.contains("/var/lib: dangling symlink to /gone"), "{e}");
    }
}
