//! A rotation's journal and its staged files, read back before anything acts on them.
//!
//! The state directory is root's and 0700, so a journal that says something the agent
//! never writes is a hand edit or a damaged disk. Either way it must not steer a write:
//! `abort` writes every backed-up path from its copy, removes the paths recorded as
//! absent or created, and re-creates recorded symlinks. So before a journal is used
//! (by the phase commands, `run`, `ca status`, `ca renew`, `ca import`) every path in it
//! is checked against what `start` and the phases could have recorded on this node:
//!
//! - a backed-up path is one of the node's known files (the CA files of every CA, the
//!   controller-manager's signer file, the static pod manifests, the kubeconfigs, the
//!   certificate and key files of every target, the kubelet's dated PEM files), reached
//!   through the node gate like every other node path;
//! - its copy is exactly where `start` puts it: `<rotation dir>/backup/<node path>`;
//! - a CA certificate or key is never removed and never re-created as a symlink, and a
//!   symlink only ever leads to another known file;
//! - a file recorded as absent at `start` and present now is one the rotation creates
//!   (the signer file), and a file recorded as created is a leaf file, never a CA file,
//!   kubeconfig or manifest.
//!
//! Anything else is an error naming the journal and what is wrong; nothing is changed.

use std::path::{Path, PathBuf};

use super::files::{self, CaFiles};
use super::journal::{self, RotationJournal};
use crate::config::Settings;
use crate::inventory::{NodeModel, NodeReader};
use crate::model::TargetKind;
use crate::node::{normalize, NodeError, NodeRoot};
use crate::write::StateDir;

/// Why a rotation journal cannot be used. Each names the journal and says the way out.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("rotation journal {}: cannot be read: {source}; {}", path.display(), way_out(ca))]
    Unreadable {
        path: PathBuf,
        ca: String,
        #[source]
        source: Box<NodeError>,
    },
    #[error("rotation journal {}: is not a journal this agent writes ({source}); {}", path.display(), way_out(ca))]
    Malformed {
        path: PathBuf,
        ca: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("rotation journal {}: {problem}: this agent never writes that, so nothing in the journal is used and nothing was changed; {}", path.display(), way_out(ca))]
    Untrusted {
        path: PathBuf,
        ca: String,
        problem: String,
    },
}

impl JournalError {
    /// The journal's node path.
    pub fn path(&self) -> &Path {
        match self {
            JournalError::Unreadable { path, .. }
            | JournalError::Malformed { path, .. }
            | JournalError::Untrusted { path, .. } => path,
        }
    }
}

/// The documented way out of a broken journal (docs/ca.md).
pub fn way_out(ca: &str) -> String {
    format!(
        "to undo the rotation from the byte copies `start` made: `cert-rotator ca rotate {ca} abort --force-from-backups` (docs/ca.md, \"A broken rotation journal\")"
    )
}

/// The node files a rotation of one CA may back up, write, link to or remove.
pub struct Known {
    /// Files a backup may restore.
    files: Vec<PathBuf>,
    /// Every CA's certificate and key: never removed, never a symlink.
    ca_files: Vec<PathBuf>,
    /// Certificate and key files of the node's leaves (not kubeconfigs): what `issue`
    /// may create.
    leaves: Vec<PathBuf>,
    signer: Option<PathBuf>,
    kubelet_pki_dir: PathBuf,
}

impl Known {
    /// What this node's layout, inventory and CA files say a rotation of `f` may touch.
    pub fn of(node: &NodeModel, settings: &Settings, f: &CaFiles) -> Known {
        let k = &settings.kubeadm;
        let layout = &node.layout;
        let mut files = super::steps::touched(node, settings, f);
        let mut leaves = Vec::new();
        for t in &layout.targets {
            files.push(t.path.clone());
            files.extend(t.key.iter().cloned());
            if t.kind != TargetKind::Kubeconfig {
                leaves.push(t.path.clone());
                leaves.extend(t.key.iter().cloned());
            }
        }
        let mut ca_files = Vec::new();
        for a in &layout.authorities {
            ca_files.push(a.cert.clone());
            ca_files.push(a.key.clone());
        }
        for name in crate::authority::CA_NAMES {
            let c = CaFiles::of(settings, layout.role, name);
            ca_files.push(c.cert);
            ca_files.push(c.key);
        }
        files.extend(ca_files.iter().cloned());
        files.extend(f.signer.iter().cloned());
        files.extend(k.user_kubeconfigs.iter().cloned());
        for pod in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            files.push(k.manifests_dir.join(format!("{pod}.yaml")));
        }
        // Leaves are read through the inventory, which resolves kubelet-*-current.pem:
        // their resolved files are leaves too.
        for (_, r) in files::leaves(&node.inventory, f.name) {
            leaves.push(r.cert_file.clone());
            leaves.extend(r.key_file.iter().cloned());
        }
        files.extend(leaves.iter().cloned());
        Known {
            files,
            ca_files,
            leaves,
            signer: f.signer.clone(),
            kubelet_pki_dir: k.kubelet_pki_dir.clone(),
        }
    }

    /// The kubelet's dated certificate files (`kubelet-client-<time>.pem`), which its
    /// `-current.pem` links name and `issue` writes.
    fn kubelet_dated(&self, p: &Path) -> bool {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        p.parent() == Some(self.kubelet_pki_dir.as_path())
            && (name.starts_with("kubelet-client-") || name.starts_with("kubelet-server-"))
            && name.ends_with(".pem")
    }

    /// A node file a rotation of this CA may write back from a copy.
    pub fn may_restore(&self, p: &Path) -> bool {
        self.files.iter().any(|f| f == p) || self.kubelet_dated(p)
    }

    /// A file a phase may have created (and `abort` removes).
    fn may_create(&self, p: &Path) -> bool {
        !self.ca_files.iter().any(|c| c == p)
            && (self.leaves.iter().any(|l| l == p)
                || self.kubelet_dated(p)
                || self.signer.as_deref() == Some(p))
    }

    fn is_ca_file(&self, p: &Path) -> bool {
        self.ca_files.iter().any(|c| c == p)
    }
}

/// Where `start` puts the byte copy of a node file.
pub fn copy_path(state: &StateDir, ca: &str, node_path: &Path) -> PathBuf {
    journal::rotation_dir(state, ca)
        .join("backup")
        .join(node_path.strip_prefix("/").unwrap_or(node_path))
}

/// The journal of `ca`'s rotation, read and checked against what the agent could have
/// written on this node ([`check`]).
/// The node is read (once per command, through `node`) only when there is a journal.
pub fn read(
    node: &NodeReader<'_>,
    state: &StateDir,
    ca: &'static str,
) -> Result<Option<RotationJournal>, JournalError> {
    let Some(j) = journal::read(state, ca)? else {
        return Ok(None);
    };
    let model = node.get();
    let f = CaFiles::of(node.settings, model.layout.role, ca);
    check(
        node.root,
        state,
        &f,
        &Known::of(model, node.settings, &f),
        &j,
    )?;
    Ok(Some(j))
}

/// Every way `j` is not something `start` and the phases could have written for
/// `f` on this node; the first is the error.
pub fn check(
    root: &NodeRoot,
    state: &StateDir,
    f: &CaFiles,
    known: &Known,
    j: &RotationJournal,
) -> Result<(), JournalError> {
    let bad = |problem: String| JournalError::Untrusted {
        path: journal::journal_path(state, f.name),
        ca: f.name.to_string(),
        problem,
    };
    if j.ca != f.name {
        return Err(bad(format!("it is the journal of CA {:?}", j.ca)));
    }
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    for (what, v) in [("old_sha256", &j.old_sha256), ("new_sha256", &j.new_sha256)] {
        if !hex64(v) {
            return Err(bad(format!("{what} {v:?} is not a SHA-256")));
        }
    }
    if j.cross_sign != j.cross_sha256.as_deref().is_some_and(hex64) {
        return Err(bad(
            "cross_sign and cross_sha256 do not agree (a SHA-256 exactly when cross-signed)".into(),
        ));
    }
    let names: Vec<String> = f.restart.iter().map(|c| c.name()).collect();
    if let Some(n) = j.abort_restarts.iter().find(|n| !names.contains(n)) {
        return Err(bad(format!(
            "abort_restarts names {n:?}, which does not hold CA {} (only {})",
            f.name,
            names.join(", ")
        )));
    }
    let plain = |p: &Path| p.is_absolute() && normalize(p) == p;
    for b in &j.backups {
        let p = &b.path;
        if !plain(p) || !known.may_restore(p) {
            return Err(bad(format!(
                "backs up {}, which is not a file a rotation of {} touches",
                p.display(),
                f.name
            )));
        }
        match (&b.copy, &b.link) {
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "backs up {} both as a copy and as a symlink",
                    p.display()
                )))
            }
            (Some(copy), None) => {
                let want = copy_path(state, f.name, p);
                if *copy != want {
                    return Err(bad(format!(
                        "the copy of {} is {}, not {} where `start` puts it",
                        p.display(),
                        copy.display(),
                        want.display()
                    )));
                }
            }
            (None, Some(link)) => {
                let target = normalize(&p.parent().unwrap_or(Path::new("/")).join(link));
                if known.is_ca_file(p) || !known.may_restore(&target) || known.is_ca_file(&target) {
                    return Err(bad(format!(
                        "would make {} a symlink to {}",
                        p.display(),
                        link.display()
                    )));
                }
            }
            (None, None) => {
                // Recorded as absent at start: abort removes it. `start` read every CA
                // file, and the rotation creates only the signer file among the rest.
                let exists = root.exists(p);
                if known.is_ca_file(p) || (exists && known.signer.as_deref() != Some(p.as_path())) {
                    return Err(bad(format!(
                        "says {} did not exist before `start`, so `abort` would delete it",
                        p.display()
                    )));
                }
            }
        }
    }
    if let Some(p) = j.created.iter().find(|p| !plain(p) || !known.may_create(p)) {
        return Err(bad(format!(
            "lists {} as created by the rotation (`abort` would delete it); a rotation creates only leaf certificate files",
            p.display()
        )));
    }
    Ok(())
}
