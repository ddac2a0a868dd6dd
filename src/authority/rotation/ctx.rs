//! What every phase works with: the context, the options and outcome of a command,
//! and the staged CA and node files read or written as a rotation needs them.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::error::{node_err, RotationError};
use super::files;
use super::journal::RotationJournal;
use super::stage;
use super::Staged;
use crate::config::Settings;
use crate::inventory::NodeReader;
use crate::node::NodeRoot;
use crate::pki::{CertFacts, PrivateKey};
use crate::rollout::{Overrides, Pass, Restarts};
use crate::write::StateDir;

/// `start`'s options.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// A new CA the operator gives (node paths): the same on every control-plane node.
    pub new_cert: Option<PathBuf>,
    pub new_key: Option<PathBuf>,
    pub cross_sign: bool,
}

/// What a phase command did, for the operator.
#[derive(Debug, Default)]
pub struct Outcome {
    pub lines: Vec<String>,
    /// Not restarted (files only, `--no-restart`): what must, in order, before the next phase.
    pub must_restart: Vec<String>,
    pub warnings: Vec<String>,
}

/// Everything a phase works with.
pub struct Ctx<'a> {
    pub root: &'a NodeRoot,
    pub settings: &'a Settings,
    pub state: &'a StateDir,
    pub restarts: Restarts<'a>,
    pub now: OffsetDateTime,
}

impl<'a> Ctx<'a> {
    /// The pass whose restart path (one at a time, paced, verified, under the lock) a
    /// phase, an abort or a forced abort restarts through, on `node` (the command's
    /// reader of this node: each component's endpoints read once).
    pub fn pass<'b>(&'b self, node: &'b NodeReader<'b>) -> Pass<'b> {
        Pass {
            root: self.root,
            settings: self.settings,
            node,
            state: self.state,
            overrides: Overrides::default(),
            restarts: self.restarts,
        }
    }
}

pub(super) const NEW_CERT: &str = "new-ca.crt";
pub(super) const NEW_KEY: &str = "new-ca.key";
pub(super) const OLD_CERT: &str = "old-ca.crt";
pub(super) const CROSS: &str = "cross.crt";
pub(super) const ARCHIVED_KEY: &str = "old-ca.key";

pub(super) fn read_bytes(root: &NodeRoot, p: &Path) -> Result<Vec<u8>, RotationError> {
    root.read_file(p).map(|(_, b)| b).map_err(node_err(p))
}

pub(super) fn read_cert(root: &NodeRoot, p: &Path) -> Result<CertFacts, RotationError> {
    let b = read_bytes(root, p)?;
    let mut certs = files::certs_of(p, &b)?;
    if certs.is_empty() {
        return Err(RotationError::Node {
            path: p.to_path_buf(),
            problem: "no certificate".into(),
        });
    }
    Ok(certs.remove(0))
}

pub(super) fn read_key(root: &NodeRoot, p: &Path) -> Result<PrivateKey, RotationError> {
    let b = zeroize::Zeroizing::new(read_bytes(root, p)?);
    // A CA key read to sign or to be installed: checked fully.
    let key = PrivateKey::from_pem(&b).and_then(|k| k.check().map(|()| k));
    key.map_err(|e| RotationError::Node {
        path: p.to_path_buf(),
        problem: e.to_string(),
    })
}

pub(super) fn load_staged(
    root: &NodeRoot,
    dir: &Path,
    j: &RotationJournal,
) -> Result<Staged, RotationError> {
    let old = read_cert(root, &dir.join(OLD_CERT))?;
    let new = read_cert(root, &dir.join(NEW_CERT))?;
    let cross = if j.cross_sign {
        Some(read_cert(root, &dir.join(CROSS))?)
    } else {
        None
    };
    let mut staged = vec![
        (&old, &j.old_sha256, OLD_CERT),
        (&new, &j.new_sha256, NEW_CERT),
    ];
    if let (Some(x), Some(want)) = (&cross, &j.cross_sha256) {
        // `issue` serves it in every serving chain: it must be the one `start` made.
        staged.push((x, want, CROSS));
    }
    for (c, want, name) in staged {
        if &stage::sha256(c) != want {
            return Err(RotationError::Node {
                path: dir.join(name),
                problem:
                    "does not match the fingerprint the journal recorded: the staged CA was changed"
                        .into(),
            });
        }
    }
    Ok(Staged { old, new, cross })
}

pub(super) fn remove(root: &NodeRoot, p: &Path) -> Result<(), RotationError> {
    if root.remove_file(p).map_err(node_err(p))? {
        let dir = p.parent().unwrap_or(Path::new("/"));
        root.sync_dir(dir).map_err(node_err(dir))?;
    }
    Ok(())
}

pub(super) fn write_state_file(
    root: &NodeRoot,
    p: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), RotationError> {
    root.write_atomic(p, bytes, mode, None).map_err(node_err(p))
}
