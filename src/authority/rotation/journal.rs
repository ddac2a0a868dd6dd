//! The rotation journal: one JSON record per CA under
//! `<state>/rotations/<slug>/journal.json`, beside the staged new CA, the cross
//! certificate and the byte copies of every node file the rotation may touch.
//!
//! The journal says which phase's files are in place (`phase`), whether that phase's
//! restarts and verification finished (`verified`), and which phase's writes began
//! (`pending`), so a crash at any step either resumes the phase or is undone by `abort`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use super::trusted::JournalError;
use crate::write::{StateDir, WriteError};

/// The phases of a rotation, in order. `Aborted` is the end of an `abort` whose files
/// are back but whose restarts may not have finished yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Started,
    Trusting,
    Issuing,
    Finished,
    Aborted,
}

impl Phase {
    /// As `ca status` shows it (`none` is the absence of a journal).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Started => "started",
            Phase::Trusting => "trusting",
            Phase::Issuing => "issuing",
            Phase::Finished => "finished",
            Phase::Aborted => "aborted",
        }
    }

    /// The command that brings a rotation into this phase.
    pub fn command(self) -> &'static str {
        match self {
            Phase::Started => "start",
            Phase::Trusting => "trust",
            Phase::Issuing => "issue",
            Phase::Finished => "finish",
            Phase::Aborted => "abort",
        }
    }
}

/// A node file as it was before `start`: its byte copy in the rotation directory, or
/// absent (a file the rotation creates, removed again by `abort`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackedUp {
    /// Node path.
    pub path: PathBuf,
    /// Node path of the copy; `None`: the file did not exist before `start`.
    pub copy: Option<PathBuf>,
    /// A symlink is backed up as its target text.
    pub link: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationJournal {
    /// The CA as `status` names it: `ca`, `front-proxy-ca`, `etcd/ca`.
    pub ca: String,
    pub phase: Phase,
    /// The phase's restarts and verification finished.
    pub verified: bool,
    /// A phase whose writes began and may not have been committed.
    pub pending: Option<Phase>,
    pub cross_sign: bool,
    /// SHA-256 of the DER of the old CA, the new CA and the cross certificate.
    pub old_sha256: String,
    pub new_sha256: String,
    pub cross_sha256: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub phase_at: OffsetDateTime,
    /// Every file the rotation may touch, as it was before `start`.
    pub backups: Vec<BackedUp>,
    /// The KCM's --cluster-signing-cert-file was ca.crt at start: trust moves it to
    /// ca-signer.crt, finish moves it back.
    pub signer_flag_moved: bool,
    /// Files the phases created that were not there at start (kubelet-client-<time>.pem):
    /// `abort` removes them.
    pub created: Vec<PathBuf>,
    /// `abort`: the components whose inputs it restores (names, in the CA's restart
    /// order), recorded before its change set so that a crash after it still restarts
    /// them. Nothing else restarts: an abort from `started` restarts nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abort_restarts: Vec<String>,
}

/// Directory name of a CA's rotation: `etcd/ca` -> `etcd-ca`.
pub fn slug(ca: &str) -> String {
    ca.replace('/', "-")
}

/// Node path of a CA's rotation directory.
pub fn rotation_dir(state: &StateDir, ca: &str) -> PathBuf {
    state.path(crate::write::state::ROTATIONS).join(slug(ca))
}

pub fn journal_path(state: &StateDir, ca: &str) -> PathBuf {
    rotation_dir(state, ca).join("journal.json")
}

/// The largest journal the agent reads: it writes a few kilobytes (one entry per file
/// the rotation may touch), so anything near this is not its own.
pub const MAX_JOURNAL_BYTES: usize = 256 << 10;

/// The journal of a CA's rotation, if one is recorded, parsed but not yet checked
/// against the node ([`super::trusted::read`] does that before anything in it is used
/// as a path). Anything but a missing file or a journal the agent could have written
/// is an error naming the journal: a broken journal is never read as "no rotation".
pub fn read(state: &StateDir, ca: &str) -> Result<Option<RotationJournal>, JournalError> {
    let path = journal_path(state, ca);
    let bytes = match state.root().read_file(&path) {
        Ok((_, b)) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(source) => {
            return Err(JournalError::Unreadable {
                path,
                ca: ca.to_string(),
                source: Box::new(source),
            })
        }
    };
    if bytes.len() > MAX_JOURNAL_BYTES {
        return Err(JournalError::Untrusted {
            path,
            ca: ca.to_string(),
            problem: format!(
                "{} bytes, more than the {MAX_JOURNAL_BYTES} a journal can be",
                bytes.len()
            ),
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| JournalError::Malformed {
            path,
            ca: ca.to_string(),
            source,
        })
}

/// Writes the journal atomically, 0600.
pub fn write(state: &StateDir, j: &RotationJournal) -> Result<(), WriteError> {
    let rel = Path::new(crate::write::state::ROTATIONS)
        .join(slug(&j.ca))
        .join("journal.json");
    let dir = rotation_dir(state, &j.ca);
    state
        .root()
        .create_dir_all(&dir, 0o700)
        .map_err(|source| WriteError::Node {
            path: dir.clone(),
            action: "creating rotation directory",
            source,
        })?;
    state.write_json(&rel.to_string_lossy(), j)
}

/// `ca status`'s phase of a CA: none|started|trusting|issuing|finished, or `broken`
/// for a journal that cannot be read.
pub fn phase_of(state: &StateDir, ca: &str) -> &'static str {
    match read(
        state,
        crate::inventory::anchors::canonical_name(ca).unwrap_or(ca),
    ) {
        Ok(Some(j)) if j.phase != Phase::Aborted => j.phase.name(),
        Ok(_) => "none",
        Err(_) => "broken",
    }
}
