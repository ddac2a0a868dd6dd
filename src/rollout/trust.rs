//! What the pass reads back from its state directory is checked against what the
//! agent itself could have written before any of it is acted on. The state directory
//! is root's and 0700, so this is defence in depth; but a restart-lock record names
//! files a rollback overwrites from "backups" and units a pass restarts, and a wrong
//! one costs the host (/etc/passwd written from a file of someone's choosing,
//! sshd.service restarted). So a record is trusted only when
//! - every file it names is one of the node's known target files or CA files (as the
//!   inventory reads them, through the node gate), or a dated file the kubelet scheme
//!   writes beside its `*-current.pem` link;
//! - every backup it names is a backup generation directly in `<state>/backup`, with
//!   no symlink on the way;
//! - every component it names is one the node's targets restart, and every group one
//!   of the configured lock groups.
//!
//! Anything else refuses the whole pass with an error naming the record: nothing is
//! renewed, restarted or rolled back until an operator looks at it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::coordination::LockState;
use crate::inventory::{self, TargetState};
use crate::node::{normalize, NodeRoot};
use crate::write::StateDir;

/// A state record that names something the agent never writes there.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}: the agent never writes this (edited by hand?); nothing was renewed, restarted or rolled back: correct or remove the file (docs/coordination.md)", path = path.display())]
pub struct UntrustedState {
    /// The record.
    pub path: PathBuf,
    /// What in it cannot be the agent's.
    pub what: String,
}

/// What the agent could have written into a restart-lock record on this node.
struct Known {
    files: BTreeSet<PathBuf>,
    /// (directory, prefix) of the kubelet's dated files: `<dir>/<prefix>-*.pem`.
    kubelet_dirs: Vec<(PathBuf, String)>,
    components: BTreeSet<String>,
    groups: BTreeSet<String>,
    backup_dir: PathBuf,
}

impl Known {
    fn of(root: &NodeRoot, settings: &Settings, state: &StateDir) -> Known {
        let layout = inventory::layout(settings, root);
        let inv = inventory::read(&layout, root);
        let mut files = BTreeSet::new();
        let mut kubelet_dirs = Vec::new();
        let mut add = |p: &Path| {
            files.insert(resolved(root, p));
        };
        let mut links = Vec::new();
        for o in &inv.certificates {
            add(&o.target.path);
            if let Some(k) = &o.target.key {
                add(k);
            }
            if let TargetState::Read(r) = &o.state {
                add(&r.cert_file);
                if let Some(k) = &r.key_file {
                    add(k);
                }
                if let Some(l) = &r.kubelet_link {
                    add(l);
                    links.push(l.clone());
                }
            }
            if o.target.path.to_string_lossy().ends_with("-current.pem") {
                links.push(o.target.path.clone());
            }
        }
        for a in &layout.authorities {
            add(&a.cert);
            add(&a.key);
        }
        for l in links {
            let name = l.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if let (Some(prefix), Some(dir)) = (name.strip_suffix("-current.pem"), l.parent()) {
                kubelet_dirs.push((resolved(root, dir), prefix.to_string()));
            }
        }
        let components = layout
            .targets
            .iter()
            .filter_map(|t| t.component.as_ref().map(|c| c.name()))
            .collect();
        let c = &settings.coordination;
        Known {
            files,
            kubelet_dirs,
            components,
            groups: [c.control_plane_group.clone(), c.workers_group.clone()].into(),
            backup_dir: resolved(root, &state.path("backup")),
        }
    }

    fn is_file(&self, root: &NodeRoot, p: &Path) -> bool {
        if !p.is_absolute() || has_parent_dir(p) {
            return false;
        }
        let r = resolved(root, p);
        if self.files.contains(&r) {
            return true;
        }
        let name = r.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        self.kubelet_dirs.iter().any(|(dir, prefix)| {
            r.parent() == Some(dir.as_path())
                && name
                    .strip_prefix(prefix.as_str())
                    .and_then(|n| n.strip_prefix('-'))
                    .is_some_and(|n| n.ends_with(".pem") && !n.contains('/'))
        })
    }

    /// A backup generation: a plain directory name right inside `<state>/backup`
    /// (compared once symlinks are followed: the state directory may be a link), and
    /// not itself a symlink leading elsewhere; or a change set's own directory in one,
    /// `<generation>/.before/<n>` (docs/operations.md).
    fn is_backup(&self, root: &NodeRoot, p: &Path) -> bool {
        let change_set = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && p.parent().and_then(|d| d.file_name()) == Some(std::ffi::OsStr::new(".before"));
        match p.parent().and_then(Path::parent) {
            Some(generation) if change_set => {
                self.is_generation(root, generation)
                    && !is_symlink(root, p)
                    && !p.parent().is_some_and(|d| is_symlink(root, d))
            }
            _ => self.is_generation(root, p),
        }
    }

    fn is_generation(&self, root: &NodeRoot, p: &Path) -> bool {
        p.is_absolute()
            && !has_parent_dir(p)
            && p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            && p.parent().map(|d| resolved(root, d)) == Some(self.backup_dir.clone())
            && !is_symlink(root, p)
    }
}

fn is_symlink(root: &NodeRoot, p: &Path) -> bool {
    root.symlink_metadata(p)
        .ok()
        .flatten()
        .is_some_and(|m| m.file_type().is_symlink())
}

fn has_parent_dir(p: &Path) -> bool {
    p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
}

/// The node path at the end of `p`'s symlinks; `p` itself when the gate refuses it (it
/// then matches nothing known).
fn resolved(root: &NodeRoot, p: &Path) -> PathBuf {
    root.resolve(p).unwrap_or_else(|_| normalize(p))
}

/// Checks a restart-lock record read back from `state` (its path: `path`).
pub fn check_lock_state(
    root: &NodeRoot,
    settings: &Settings,
    state: &StateDir,
    path: &Path,
    lock: &LockState,
) -> Result<(), UntrustedState> {
    if lock.pending.is_empty() && lock.failed_groups.is_empty() {
        return Ok(());
    }
    let known = Known::of(root, settings, state);
    let refuse = |what: String| {
        Err(UntrustedState {
            path: path.to_path_buf(),
            what,
        })
    };
    for g in &lock.failed_groups {
        if !known.groups.contains(g) {
            return refuse(format!(
                "group {g:?} is none of the configured lock groups ({})",
                list(&known.groups)
            ));
        }
    }
    for p in &lock.pending {
        if !known.components.contains(&p.component) {
            return refuse(format!(
                "a restart owed for {:?}, which is no component this node's certificates restart ({})",
                p.component,
                list(&known.components)
            ));
        }
        for (file, backup) in p.files.iter().map(|w| (&w.path, &w.backup_dir)) {
            if !known.is_file(root, file) {
                return refuse(format!(
                    "{} (to be restored for {}) is none of the node's certificate, key, kubeconfig or CA files",
                    file.display(),
                    p.component
                ));
            }
            if !known.is_backup(root, backup) {
                return refuse(format!(
                    "{} (the backup of {}) is not a backup directory in {}",
                    backup.display(),
                    file.display(),
                    known.backup_dir.display()
                ));
            }
        }
    }
    Ok(())
}

fn list(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(", ")
}
