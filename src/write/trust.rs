//! The write-ahead record read back is checked against what [`super::StateDir::apply`]
//! writes into it before recovery acts on it: recovery deletes each entry's staged file
//! or renames it over the entry's path, so a hand-edited record could otherwise delete
//! any file (`staged: /etc/shadow`) or move one over another. The agent only ever
//! stages next to the file it replaces (or one directory up, for static pod
//! manifests, which the kubelet would run from their own directory), under its own
//! temp names, and backs up into `<state>/backup`.

use std::path::{Component, Path};

use super::{Journal, JournalEntry, WriteError};

/// The suffix of the agent's staged files: `.<name>.cert-rotator.tmp`.
const STAGED_SUFFIX: &str = ".cert-rotator.tmp";

/// Refuses a record the agent could not have written, naming it and the entry.
pub(super) fn check_journal(
    journal_path: &Path,
    backup_root: &Path,
    j: &Journal,
) -> Result<(), WriteError> {
    for e in &j.entries {
        if let Some(why) = untrusted(e, backup_root) {
            return Err(WriteError::Recovery {
                path: journal_path.to_path_buf(),
                message: format!(
                    "{why}: the agent never writes this (edited by hand?); nothing was changed: look at the record, then remove it"
                ),
            });
        }
    }
    Ok(())
}

fn plain(p: &Path) -> bool {
    p.is_absolute() && !p.components().any(|c| matches!(c, Component::ParentDir))
}

fn untrusted(e: &JournalEntry, backup_root: &Path) -> Option<String> {
    let (path, staged) = (&e.path, &e.staged);
    if !plain(path) || !plain(staged) || path.file_name().is_none() {
        return Some(format!(
            "entry {} is not a plain absolute path",
            path.display()
        ));
    }
    let name = path.file_name()?.to_string_lossy();
    let staged_name = staged.file_name()?.to_string_lossy();
    let dir = path.parent()?;
    let ours = (staged.parent() == Some(dir) || staged.parent() == dir.parent())
        && staged_name == format!(".{name}{STAGED_SUFFIX}");
    // The kubelet's scheme stages its symlink as `<prefix>-updated.pem` beside
    // `<prefix>-current.pem`.
    let kubelet = staged.parent() == Some(dir)
        && name
            .strip_suffix("-current.pem")
            .is_some_and(|p| staged_name == format!("{p}-updated.pem"));
    if !ours && !kubelet {
        return Some(format!(
            "{} is not the agent's staged file for {}",
            staged.display(),
            path.display()
        ));
    }
    if let Some(b) = &e.backup {
        if !plain(b) || !b.starts_with(backup_root) || b == backup_root {
            return Some(format!(
                "{} (the backup of {}) is not in {}",
                b.display(),
                path.display(),
                backup_root.display()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn entry(path: &str, staged: &str, backup: Option<&str>) -> JournalEntry {
        JournalEntry {
            path: path.into(),
            staged: staged.into(),
            backup: backup.map(PathBuf::from),
        }
    }

    #[test]
    fn only_the_agents_own_staged_files_and_backups_pass() {
        let b = Path::new("/var/lib/cr/backup");
        let ok = [
            entry(
                "/etc/kubernetes/pki/a.crt",
                "/etc/kubernetes/pki/.a.crt.cert-rotator.tmp",
                Some("/var/lib/cr/backup/2026/etc/kubernetes/pki/a.crt"),
            ),
            entry(
                "/etc/kubernetes/manifests/kube-apiserver.yaml",
                "/etc/kubernetes/.kube-apiserver.yaml.cert-rotator.tmp",
                None,
            ),
            entry(
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
                "/var/lib/kubelet/pki/kubelet-client-updated.pem",
                None,
            ),
        ];
        for e in &ok {
            assert_eq!(untrusted(e, b), None, "{e:?}");
        }
        let bad = [
            entry("/etc/passwd", "/etc/kubernetes/pki/ca.crt", None),
            entry("/etc/x", "/etc/shadow", None),
            entry("/etc/a", "/etc/../etc/.a.cert-rotator.tmp", None),
            entry(
                "/etc/kubernetes/pki/a.crt",
                "/etc/kubernetes/pki/.a.crt.cert-rotator.tmp",
                Some("/etc/shadow"),
            ),
        ];
        for e in &bad {
            assert!(untrusted(e, b).is_some(), "{e:?}");
        }
    }
}
