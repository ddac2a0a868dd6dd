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
use crate::node::{NodeError, NodeRoot, Problem};

/// The directory of the state directory holding each CA rotation's record and backups.
pub const ROTATIONS: &str = "rotations";

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
        let base = self.backup_base()?;
        let second = now.replace_nanosecond(0).unwrap_or(now);
        let stamp = crate::timefmt::rfc3339(second);
        // After every generation of the same second, even one pruned meanwhile: the
        // newest must sort last, or pruning would take it for the oldest.
        let mut n = self
            .generations()?
            .iter()
            .filter_map(|g| generation_order(g.file_name()?.to_str()?))
            .filter(|(t, _)| *t == second)
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0);
        let name = |n| match n {
            1 => stamp.clone(),
            n => format!("{stamp}.{n}"),
        };
        let mut dir;
        // Past anything else of that name; a path the gate refuses is an error here,
        // not "taken": the loop must end.
        loop {
            n += 1;
            dir = base.join(name(n));
            let taken = self
                .root
                .symlink_metadata(&dir)
                .map_err(WriteError::node(&dir, "creating backup directory"))?;
            if taken.is_none() {
                break;
            }
        }
        self.root
            .create_dir_all(&dir, 0o700)
            .map_err(WriteError::node(&dir, "creating backup directory"))?;
        Ok(dir)
    }

    /// `<state>/backup`, where generations are made and pruned: a directory of its own
    /// or nothing yet, never a symlink (pruning through one deletes what it leads to,
    /// and generations made through one land wherever it points).
    fn backup_base(&self) -> Result<PathBuf, WriteError> {
        let base = self.path("backup");
        let err = |problem| WriteError::Node {
            path: base.clone(),
            action: "backup directory",
            source: NodeError::new(&base, problem),
        };
        match self
            .root
            .symlink_metadata(&base)
            .map_err(WriteError::node(&base, "backup directory"))?
        {
            Some(m) if m.file_type().is_symlink() => Err(err(Problem::Symlink {
                target: self.root.read_link(&base).unwrap_or_default(),
            })),
            Some(m) if !m.is_dir() => Err(err(Problem::NotADirectory)),
            _ => Ok(base),
        }
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
            // Durable as write_atomic makes a file backup: the link is in its directory.
            let dir = dst.parent().unwrap_or(Path::new("/"));
            self.root
                .symlink(&target, &dst)
                .and_then(|()| self.root.sync_dir(dir))
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

    /// Keeps the newest `keep_backups` backup generations, always this process's own
    /// (a rollback of this pass restores from it) and every generation a restart owed
    /// by an earlier pass names (its rollback restores from that one; a record that
    /// cannot be read keeps them all). Only real directories named as
    /// [`Self::new_backup_dir`] names them are generations: anything else in `backup`
    /// is not the agent's to delete, and nothing is followed through a symlink.
    pub(super) fn prune_backups(&self) {
        let (generations, owed) = match self
            .generations()
            .and_then(|g| Ok((g, self.owed_generations()?)))
        {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prune old backups");
                return;
            }
        };
        let own = self
            .generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let excess = generations.len().saturating_sub(self.keep_backups);
        for dir in &generations[..excess] {
            if own.as_ref() == Some(dir) || owed.contains(dir) {
                continue;
            }
            if let Err(e) = self.root.remove_dir_all(dir) {
                tracing::warn!(backup = %dir.display(), error = %e, "cannot prune old backup");
            }
        }
    }

    /// Node paths of the backup generations, oldest first; none when `backup` is not
    /// there yet.
    pub(super) fn generations(&self) -> Result<Vec<PathBuf>, WriteError> {
        let base = self.backup_base()?;
        let entries = match self.root.read_dir(&base) {
            Ok(entries) => entries,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(WriteError::node(&base, "listing backups")(e)),
        };
        // The entry's own type: a symlink is never a directory here.
        let mut found: Vec<_> = entries
            .into_iter()
            .filter(|(_, kind)| kind.is_dir())
            .filter_map(|(name, _)| Some((generation_order(name.to_str()?)?, base.join(name))))
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, dir)| dir).collect())
    }

    /// Removes the temp files a crash left in the state directory (never on the node:
    /// node files change only under a record). Once per process: the backup tree grows
    /// with every generation.
    pub(super) fn sweep_once(&self) {
        if self.swept.swap(true, Ordering::SeqCst) {
            return;
        }
        // Where the agent writes: its records, right in the state directory, the CA
        // rotations' records and backups, and the backups, anywhere inside a
        // generation. Nothing else is walked, and no symlink is followed.
        self.sweep_temp_files(&self.dir, false);
        let rotations = self.path(ROTATIONS);
        if let Ok(Some(m)) = self.root.symlink_metadata(&rotations) {
            if m.is_dir() {
                self.sweep_temp_files(&rotations, true);
            }
        }
        if let Ok(generations) = self.generations() {
            for g in generations {
                self.sweep_temp_files(&g, true);
            }
        }
    }

    fn sweep_temp_files(&self, dir: &Path, recurse: bool) {
        let Ok(entries) = self.root.read_dir(dir) else {
            return;
        };
        for (name, kind) in entries {
            let p = dir.join(&name);
            if kind.is_dir() {
                if recurse {
                    self.sweep_temp_files(&p, true);
                }
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

/// Where a generation's name sorts: the name [`StateDir::new_backup_dir`] gives it,
/// the UTC second in RFC 3339 (`2026-12-07T11:19:00Z`), `.N` after it for the Nth of
/// that second (N from 2); `None` for any other name.
pub(super) fn generation_order(name: &str) -> Option<(OffsetDateTime, u32)> {
    let (stamp, n) = match name.split_once('.') {
        None => (name, 1),
        Some((stamp, n)) => (
            stamp,
            n.parse()
                .ok()
                .filter(|&k: &u32| k >= 2 && k.to_string() == n)?,
        ),
    };
    let t = OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    (t.offset().is_utc() && crate::timefmt::rfc3339(t) == stamp).then_some((t, n))
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

    /// A node with one file to renew and the agent's state directory.
    fn node(keep: usize) -> (tempfile::TempDir, StateDir) {
        let d = tempfile::tempdir().unwrap();
        let pki = d.path().join("etc/kubernetes/pki");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join("a.crt"), b"old").unwrap();
        let s = StateDir::new(&NodeRoot::new(d.path()), Path::new("/var/lib/cr"), keep);
        s.ensure().unwrap();
        (d, s)
    }

    fn renew(s: &StateDir, content: &[u8]) -> Result<super::super::Applied, WriteError> {
        let change = crate::model::FileChange::file(
            "/etc/kubernetes/pki/a.crt",
            content.to_vec(),
            0o644,
            false,
        );
        // A new process each time: a new generation.
        StateDir::new(s.root(), s.dir(), s.keep_backups()).apply("a", &[change])
    }

    #[test]
    fn a_symlinked_backup_directory_is_refused_and_nothing_is_pruned_through_it() {
        let (d, s) = node(1);
        let host = |p: &str| d.path().join(p);
        std::fs::create_dir_all(host("etc/kubernetes/manifests")).unwrap();
        std::fs::write(host("etc/kubernetes/admin.conf"), b"conf").unwrap();
        for target in ["/etc/kubernetes", "/etc/kubernetes/manifests"] {
            let _ = std::fs::remove_file(host("var/lib/cr/backup"));
            std::os::unix::fs::symlink(target, host("var/lib/cr/backup")).unwrap();
            let e = renew(&s, b"new").unwrap_err().to_string();
            assert!(
                e.starts_with("/var/lib/cr/backup: backup directory: is a symlink to ")
                    && e.contains(target),
                "{e}"
            );
            // Pruning on its own does not follow it either.
            s.prune_backups();
            assert_eq!(
                std::fs::read(host("etc/kubernetes/pki/a.crt")).unwrap(),
                b"old"
            );
            assert!(host("etc/kubernetes/admin.conf").is_file());
            assert_eq!(
                std::fs::read_dir(host("etc/kubernetes/manifests"))
                    .unwrap()
                    .count(),
                0
            );
        }
    }

    #[test]
    fn pruning_removes_only_old_generations_never_this_pass_s_or_other_entries() {
        let (d, s) = node(1);
        let backup = d.path().join("var/lib/cr/backup");
        std::fs::create_dir_all(backup.join("notes")).unwrap();
        std::fs::create_dir_all(backup.join("2020-01-01T00:00:00+01:00")).unwrap();
        std::fs::create_dir_all(backup.join("2020-01-01T00:00:00Z.02")).unwrap();
        std::fs::write(backup.join("2020-01-01T00:00:01Z"), b"a file").unwrap();
        std::os::unix::fs::symlink("/etc/kubernetes", backup.join("2020-01-01T00:00:02Z")).unwrap();
        std::fs::create_dir_all(backup.join("2020-01-01T00:00:03Z/etc")).unwrap();
        std::fs::create_dir_all(backup.join("2020-01-01T00:00:03Z.2")).unwrap();
        let first = renew(&s, b"one").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&backup)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let own = first
            .backup_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            left,
            [
                "2020-01-01T00:00:00+01:00",
                "2020-01-01T00:00:00Z.02",
                "2020-01-01T00:00:01Z",
                "2020-01-01T00:00:02Z",
                own.as_str(),
                "notes"
            ],
            "only the two older generations go"
        );
        assert!(d.path().join("etc/kubernetes/pki/a.crt").is_file());
        // Whatever the retention, this process's own generation stays for its rollback.
        let s0 = StateDir::new(s.root(), s.dir(), 0);
        let applied = s0
            .apply(
                "a",
                &[crate::model::FileChange::file(
                    "/etc/kubernetes/pki/a.crt",
                    b"two".to_vec(),
                    0o644,
                    false,
                )],
            )
            .unwrap();
        assert!(s.root().host(&applied.backup_dir).is_dir());
        assert!(!s.root().host(&first.backup_dir).exists());
        s0.restore("roll back", &[applied]).unwrap();
        assert_eq!(
            std::fs::read(d.path().join("etc/kubernetes/pki/a.crt")).unwrap(),
            b"one"
        );
    }

    #[test]
    fn generation_names_are_the_agent_s_own() {
        let t = time::macros::datetime!(2026-12-07 11:19:00 UTC);
        let order = |n| generation_order(n);
        assert_eq!(order("2026-12-07T11:19:00Z"), Some((t, 1)));
        assert_eq!(order("2026-12-07T11:19:00Z.2"), Some((t, 2)));
        assert!(order("2026-12-07T11:19:00Z.2") < order("2026-12-07T11:19:00Z.10"));
        for other in [
            "2026-12-07T11:19:00Z.1",
            "2026-12-07T11:19:00Z.x",
            "2026-12-07T11:19:00.5Z",
            "admin.conf",
            "manifests",
            ".2026-12-07T11:19:00Z",
        ] {
            assert_eq!(order(other), None, "{other}");
        }
    }

    #[test]
    fn a_restore_from_a_generation_that_is_gone_fails_and_writes_nothing() {
        let (d, s) = node(100);
        let applied = renew(&s, b"new").unwrap();
        std::fs::remove_dir_all(s.root().host(&applied.backup_dir)).unwrap();
        let e = s.restore("roll back", &[applied]).unwrap_err().to_string();
        assert!(
            e.contains("the backup to restore /etc/kubernetes/pki/a.crt from is gone"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(d.path().join("etc/kubernetes/pki/a.crt")).unwrap(),
            b"new"
        );
    }

    #[test]
    fn the_sweep_removes_temp_files_only_where_the_agent_writes() {
        let (d, s) = node(100);
        let applied = renew(&s, b"new").unwrap();
        let state = d.path().join("var/lib/cr");
        let generation = s
            .root()
            .host(&applied.backup_dir)
            .join("etc/kubernetes/pki");
        let other = state.join("elsewhere");
        std::fs::create_dir_all(&other).unwrap();
        let rotation = state.join("rotations/etcd-ca/backup/etc/kubernetes/pki/etcd");
        std::fs::create_dir_all(&rotation).unwrap();
        let tmp = ".x.cert-rotator.tmp";
        for dir in [&state, &generation, &other, &rotation] {
            std::fs::write(dir.join(tmp), b"").unwrap();
        }
        StateDir::new(s.root(), s.dir(), 100).sweep_once();
        assert!(!state.join(tmp).exists());
        assert!(!generation.join(tmp).exists());
        assert!(!rotation.join(tmp).exists(), "a CA rotation's backup");
        assert!(
            other.join(tmp).exists(),
            "not a directory the agent writes into"
        );
    }
}
