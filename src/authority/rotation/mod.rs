//! CA rotation to a new key, in phases: `start` stages a new CA (and a cross
//! certificate signed by the old key), `trust` makes every trust anchor hold old and
//! new, `issue` makes the new CA sign and re-issues every leaf, `finish` drops the old
//! CA; `abort` returns to the state before `start` from any phase before `finish`.
//!
//! [`phase`] decides (a pure function), [`steps`] does; [`journal`] records each phase
//! in the state directory; [`check`] is what each phase promises, verified after it and
//! on every `run` and `ca status` while a rotation is in progress. [`trusted`] checks a
//! journal read back before anything in it is used; [`guard`] keeps `run`, `ca renew`
//! and `ca import` off a CA while it is rotated; [`forced`] is the way out of a broken
//! journal (`abort --force-from-backups`).

mod abort;
pub mod check;
mod ctx;
mod edits;
mod error;
pub mod files;
pub mod forced;
pub mod guard;
pub mod journal;
pub mod phase;
mod settle;
pub mod stage;
mod start;
pub mod steps;
pub mod trusted;

use crate::pki::CertFacts;

pub use guard::{broken, hold, mark, warnings, Hold};
pub use journal::{phase_of, Phase, RotationJournal};
pub use phase::Command;
pub use steps::{rotate, Outcome, RotationError, StartOptions};
pub use trusted::JournalError;

/// The certificates of a rotation in progress: the old CA, the new one and the cross
/// certificate X (the new CA signed by the old key), read from the rotation directory.
#[derive(Clone, Debug)]
pub struct Staged {
    pub old: CertFacts,
    pub new: CertFacts,
    pub cross: Option<CertFacts>,
}
