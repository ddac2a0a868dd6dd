//! Each change set's own before-images.
//!
//! A pass can write a file more than once: a CA renewal rewrites a kubeconfig's
//! `certificate-authority-data`, then the kubeconfig's client certificate is renewed.
//! The pass's backup generation keeps every file as the pass found it (what an operator
//! copies back by hand, and what `keep_backups` counts); a later change set of the pass
//! that writes a file the generation holds already keeps its own before-image, in
//! `<generation>/.before/<n>/<node path>`, `n` counting up within the generation.
//!
//! A rollback puts a group's files back from its own change sets' before-images, so it
//! never undoes the CA renewal's edit; and it refuses a file another change set wrote
//! after the group's (rather than silently reverting that one too).

use std::path::{Path, PathBuf};

use super::{Applied, JournalEntry, WriteError};
use crate::model::FileChange;
use crate::write::StateDir;

/// The directory in a backup generation holding its later change sets' before-images.
pub(crate) const BEFORE: &str = ".before";

/// A file a change set wrote, as a pass records it for a rollback.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WrittenFile {
    /// The node path written.
    pub path: PathBuf,
    /// The change set's backup directory: the generation, or its own `.before/<n>`.
    pub backup_dir: PathBuf,
    /// Whether the change set created the file (it has no before-image, and a rollback
    /// leaves it). `None` in a record from before this was kept (a pair): a missing
    /// before-image is then taken for a created file.
    #[serde(default)]
    pub created: Option<bool>,
}

/// A node path as a path relative to a backup directory.
fn rel(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

impl StateDir {
    /// Backs up what `changes` replace (see the module docs): each change's backup
    /// path, `None` for a file the change set creates.
    pub(super) fn back_up_change_set(
        &self,
        generation: &Path,
        changes: &[FileChange],
    ) -> Result<Vec<Option<PathBuf>>, WriteError> {
        let mut own: Option<PathBuf> = None;
        let mut backups = Vec::new();
        for c in changes {
            let dir = if self.holds(generation, &c.path)? {
                match &own {
                    Some(d) => d.clone(),
                    None => own.insert(self.new_change_set_dir(generation)?).clone(),
                }
            } else {
                generation.to_path_buf()
            };
            backups.push(self.backup(&dir, &c.path)?);
        }
        Ok(backups)
    }

    /// Whether the backup directory `dir` holds a before-image of `path`.
    fn holds(&self, dir: &Path, path: &Path) -> Result<bool, WriteError> {
        let b = dir.join(rel(path));
        Ok(self
            .root()
            .symlink_metadata(&b)
            .map_err(WriteError::node(&b, "reading backup"))?
            .is_some())
    }

    /// Removes the before-images of a change set that did not commit (its staging
    /// failed, or it was undone), once its record is gone: they are of no write, and a
    /// rollback would take them for one ([`Self::writes_of`]). A file left (one that
    /// cannot be removed) is only a stricter rollback.
    pub(super) fn drop_before_images(&self, entries: &[JournalEntry]) {
        let mut dirs: Vec<&Path> = Vec::new();
        for b in entries.iter().filter_map(|e| e.backup.as_deref()) {
            if let Err(e) = self.root().remove_file(b) {
                tracing::warn!(backup = %b.display(), error = %e, "cannot remove the before-image of an undone change set");
            }
            if let Some(d) = b.parent().filter(|d| !dirs.contains(d)) {
                dirs.push(d);
            }
        }
        // Durable, as every removal: a before-image back after a power failure would be
        // taken for a write.
        for d in dirs {
            if let Err(e) = self.root().sync_dir(d) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot fsync a backup directory");
            }
        }
    }

    fn new_change_set_dir(&self, generation: &Path) -> Result<PathBuf, WriteError> {
        let base = generation.join(BEFORE);
        let n = numbered(&self.listing(&base)?).last().map_or(1, |n| n + 1);
        let dir = base.join(n.to_string());
        self.root()
            .create_dir_all(&dir, 0o700)
            .map_err(WriteError::node(&dir, "creating backup directory"))?;
        Ok(dir)
    }

    /// The names in a directory of the state directory; none when it is not there.
    fn listing(&self, dir: &Path) -> Result<Vec<String>, WriteError> {
        match self.root().read_dir(dir) {
            Ok(entries) => Ok(entries
                .into_iter()
                .filter_map(|(n, _)| n.into_string().ok())
                .collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(WriteError::node(dir, "reading backups")(e)),
        }
    }

    /// The backup directories of every change set that wrote `path` (replacing a file
    /// there) from generation `since` on, oldest first.
    fn writes_of(&self, path: &Path, since: &Path) -> Result<Vec<PathBuf>, WriteError> {
        let mut out = Vec::new();
        let since = since
            .file_name()
            .and_then(|n| super::state::generation_order(n.to_str()?));
        // The generations in the order they were made (`Z.10` after `Z.9`).
        for generation in self.generations()? {
            let made = generation
                .file_name()
                .and_then(|n| super::state::generation_order(n.to_str()?));
            if made < since {
                continue;
            }
            let mut dirs = vec![generation.clone()];
            let before = generation.join(BEFORE);
            for n in numbered(&self.listing(&before)?) {
                dirs.push(before.join(n.to_string()));
            }
            for d in dirs {
                if self.holds(&d, path)? {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// The change sets that put back what a group wrote: `written` holds each file
    /// with the backup directory of the change set that wrote it, in the order written
    /// (a restart owed by an earlier pass first). Each file goes back to its before-image
    /// in the group's first change set that wrote it. A file that a change set outside
    /// the group wrote since is an error naming it: putting it back would undo that write.
    /// A file the group's first change set created stays (see [`WrittenFile::created`]);
    /// for any other, a before-image that is gone is an error when restored.
    pub fn rollback_of(&self, written: &[WrittenFile]) -> Result<Vec<Applied>, WriteError> {
        let mut applied: Vec<Applied> = Vec::new();
        for (i, w) in written.iter().enumerate() {
            let (file, first) = (&w.path, &w.backup_dir);
            if written[..i].iter().any(|o| o.path == *file) {
                continue;
            }
            let own: Vec<&PathBuf> = written
                .iter()
                .filter(|o| o.path == *file)
                .map(|o| &o.backup_dir)
                .collect();
            let since = generation_of(first);
            let writes = self.writes_of(file, &since)?;
            let from = writes.iter().position(|d| d == first).unwrap_or(0);
            if let Some(other) = writes[from..].iter().find(|d| !own.contains(d)) {
                return Err(WriteError::WrittenSince {
                    path: file.clone(),
                    before_image: other.join(rel(file)),
                });
            }
            let image = first.join(rel(file));
            let created = match w.created {
                Some(c) => c,
                None => !self.holds(first, file)?,
            };
            applied.push(Applied {
                backup_dir: first.clone(),
                entries: vec![JournalEntry {
                    path: file.clone(),
                    staged: PathBuf::new(),
                    backup: (!created).then_some(image),
                }],
            });
        }
        Ok(applied)
    }
}

/// The state directory's record of the restart lock, written by
/// `coordination`: only what pruning must know of it.
pub const RESTART_RECORD: &str = "restart-lock.json";

#[derive(serde::Deserialize)]
struct OwedRecord {
    pending: Vec<OwedFiles>,
}

#[derive(serde::Deserialize)]
struct OwedFiles {
    files: Vec<WrittenFile>,
}

impl StateDir {
    /// The backup generations the restarts owed by earlier passes restore from when
    /// they fail verification; an error when the record cannot be read.
    pub(super) fn owed_generations(&self) -> Result<Vec<PathBuf>, WriteError> {
        let record = self.read_json::<OwedRecord>(RESTART_RECORD)?;
        Ok(record
            .into_iter()
            .flat_map(|r| r.pending)
            .flat_map(|p| p.files)
            .map(|w| generation_of(&w.backup_dir))
            .collect())
    }
}

/// The generation a change set's backup directory belongs to.
fn generation_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if p.file_name().is_some_and(|n| n == BEFORE) => {
            p.parent().unwrap_or(p).to_path_buf()
        }
        _ => dir.to_path_buf(),
    }
}

/// The numbered change-set directories among `names`, in order.
fn numbered(names: &[String]) -> Vec<u32> {
    let mut n: Vec<u32> = names.iter().filter_map(|s| s.parse().ok()).collect();
    n.sort_unstable();
    n
}

impl Applied {
    /// Each file the change set wrote with the backup directory its before-image is
    /// under (the generation, or the change set's own directory in it), for
    /// [`StateDir::rollback_of`]. A file it created has none: the generation stands in.
    pub fn files(&self) -> Vec<WrittenFile> {
        self.entries
            .iter()
            .map(|e| {
                let dir = e
                    .backup
                    .as_deref()
                    .and_then(|b| b.ancestors().nth(rel(&e.path).components().count()))
                    .map_or_else(|| self.backup_dir.clone(), Path::to_path_buf);
                WrittenFile {
                    path: e.path.clone(),
                    backup_dir: dir,
                    created: Some(e.backup.is_none()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeRoot;
    use std::fs;

    const CONF: &str = "/etc/kubernetes/scheduler.conf";

    fn kubeconfig(ca: &str, client: &str) -> Vec<u8> {
        format!("clusters:\n- cluster:\n    certificate-authority-data: {ca}\nusers:\n- user:\n    client-certificate-data: {client}\n").into_bytes()
    }

    fn node() -> (tempfile::TempDir, NodeRoot) {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc/kubernetes")).unwrap();
        fs::write(d.path().join(&CONF[1..]), kubeconfig("OLD-CA", "OLD-LEAF")).unwrap();
        let root = NodeRoot::new(d.path());
        (d, root)
    }

    fn write(s: &StateDir, label: &str, bytes: Vec<u8>) -> Applied {
        s.apply(label, &[FileChange::file(CONF, bytes, 0o600, true)])
            .unwrap()
    }

    /// Restores `back`: the kubeconfig is as the first pass found it.
    fn restores_the_old_leaf(s: &StateDir, back: &[Applied], host: &Path) {
        s.restore("roll back kube-scheduler", back).unwrap();
        assert_eq!(
            fs::read(host.join(&CONF[1..])).unwrap(),
            kubeconfig("OLD-CA", "OLD-LEAF")
        );
    }

    #[test]
    fn a_leaf_rollback_keeps_the_ca_renewals_edit_of_the_same_kubeconfig() {
        let (d, root) = node();
        let s = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
        // One pass: the CA renewal rewrites the CA data, then the leaf is renewed.
        let ca = write(&s, "renew CA", kubeconfig("NEW-CA", "OLD-LEAF"));
        let leaf = write(&s, "renew scheduler.conf", kubeconfig("NEW-CA", "NEW-LEAF"));
        assert_eq!(ca.backup_dir, leaf.backup_dir, "one generation per pass");
        let written = leaf.files();
        assert_eq!(written[0].backup_dir, leaf.backup_dir.join(".before/1"));
        // The leaf's group fails verification and rolls back.
        let back = s.rollback_of(&written).unwrap();
        s.restore("roll back kube-scheduler", &back).unwrap();
        assert_eq!(
            fs::read(d.path().join(&CONF[1..])).unwrap(),
            kubeconfig("NEW-CA", "OLD-LEAF")
        );
        // The generation still holds the file as the pass found it.
        let found = root.host(&leaf.backup_dir).join(&CONF[1..]);
        assert_eq!(fs::read(found).unwrap(), kubeconfig("OLD-CA", "OLD-LEAF"));
    }

    #[test]
    fn a_group_that_wrote_a_file_twice_goes_back_to_before_its_first_write() {
        let (d, root) = node();
        let s = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
        let mut written = write(&s, "one", kubeconfig("OLD-CA", "LEAF-1")).files();
        written.extend(write(&s, "two", kubeconfig("OLD-CA", "LEAF-2")).files());
        let back = s.rollback_of(&written).unwrap();
        assert_eq!(back.len(), 1);
        restores_the_old_leaf(&s, &back, d.path());
    }

    #[test]
    fn a_rollback_refuses_a_file_another_change_set_wrote_since() {
        let (d, root) = node();
        // An earlier pass renewed the leaf (its restart owed), this pass renews the CA.
        let earlier = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
        let owed = write(
            &earlier,
            "renew scheduler.conf",
            kubeconfig("OLD-CA", "NEW-LEAF"),
        );
        let this = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
        write(&this, "renew CA", kubeconfig("NEW-CA", "NEW-LEAF"));
        let e = this.rollback_of(&owed.files()).unwrap_err().to_string();
        assert!(
            e.starts_with(CONF) && e.contains("written again since"),
            "{e}"
        );
        assert_eq!(
            fs::read(d.path().join(&CONF[1..])).unwrap(),
            kubeconfig("NEW-CA", "NEW-LEAF")
        );
    }

    /// `restart-lock.json` owing a restart whose rollback restores from `written`.
    fn owe(s: &StateDir, written: &[WrittenFile]) {
        let record = serde_json::json!({"pending": [{
            "component": "kube-scheduler", "files": written, "serials": [],
            "since": "2026-12-07T12:00:00Z", "why": "no slot"}]});
        s.write_json(RESTART_RECORD, &record).unwrap();
    }

    #[test]
    fn pruning_keeps_the_generations_an_owed_restart_restores_from() {
        let (d, root) = node();
        let pass = |bytes| {
            write(
                &StateDir::new(&root, Path::new("/var/lib/cr"), 1),
                "w",
                bytes,
            )
        };
        // A pass renews the leaf after its CA edit: the owed files point into .before/1.
        let first = StateDir::new(&root, Path::new("/var/lib/cr"), 1);
        write(&first, "renew CA", kubeconfig("NEW-CA", "OLD-LEAF"));
        let owed = write(&first, "renew leaf", kubeconfig("NEW-CA", "NEW-LEAF"));
        owe(&first, &owed.files());
        // With keep_backups = 1 the next passes' writes prune older generations.
        pass(kubeconfig("NEW-CA", "NEW-LEAF-2"));
        pass(kubeconfig("NEW-CA", "NEW-LEAF-3"));
        let kept = root.host(&owed.backup_dir);
        assert!(kept.join(".before/1").join(&CONF[1..]).exists());
        // A record that cannot be read keeps every generation.
        let s = StateDir::new(&root, Path::new("/var/lib/cr"), 1);
        fs::write(root.host(&s.path(RESTART_RECORD)), "{").unwrap();
        let before = s.generations().unwrap().len();
        pass(kubeconfig("NEW-CA", "NEW-LEAF-4"));
        assert_eq!(s.generations().unwrap().len(), before + 1);
        // Once the restart is no longer owed, it goes.
        owe(&s, &[]);
        pass(kubeconfig("NEW-CA", "NEW-LEAF-5"));
        assert_eq!(s.generations().unwrap().len(), 1);
        drop(d);
    }

    #[test]
    fn an_owed_file_recorded_as_a_pair_still_rolls_back() {
        let (d, root) = node();
        let s = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
        let conf = write(&s, "renew", kubeconfig("OLD-CA", "NEW-LEAF"));
        let dir = conf.backup_dir.display();
        // A record written before `created` was kept: [path, backup directory].
        let text = format!(r#"[["{CONF}", "{dir}"], ["/etc/kubernetes/new.pem", "{dir}"]]"#);
        let old: Vec<WrittenFile> = serde_json::from_str(&text).unwrap();
        assert_eq!(old[0].created, None);
        // The file without a before-image is taken as created, as it was then.
        let back = s.rollback_of(&old).unwrap();
        assert!(back[1].entries[0].backup.is_none());
        restores_the_old_leaf(&s, &back, d.path());
    }

    #[test]
    fn the_before_images_of_a_change_set_that_did_not_commit_are_no_write() {
        let (d, root) = node();
        let owed = write(
            &StateDir::new(&root, Path::new("/var/lib/cr"), 10),
            "renew scheduler.conf",
            kubeconfig("OLD-CA", "NEW-LEAF"),
        );
        // The next pass backs the file up, records the change set and dies staging it.
        let next = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
        let change = FileChange::file(CONF, kubeconfig("NEW-CA", "NEW-LEAF"), 0o600, true);
        let generation = next
            .backup_generation(time::OffsetDateTime::now_utc())
            .unwrap();
        let images = next
            .back_up_change_set(&generation, std::slice::from_ref(&change))
            .unwrap();
        let entries = vec![JournalEntry {
            path: change.path.clone(),
            staged: super::super::staged_path(&change),
            backup: images[0].clone(),
        }];
        let journal = super::super::Journal {
            label: "renew CA".into(),
            phase: super::super::Phase::Staging,
            started: time::OffsetDateTime::now_utc(),
            entries,
        };
        next.write_journal(&journal).unwrap();
        // The command after undoes it: the earlier pass's group still rolls back.
        let s = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
        s.recover().unwrap();
        let back = s.rollback_of(&owed.files()).unwrap();
        restores_the_old_leaf(&s, &back, d.path());
    }
}
