//! Where a CA stands in a rotation to a new key. The rotation (issue #11, section 2) is
//! journaled in the state directory; until it is, every CA is in phase `none`.

use serde::Serialize;

use crate::inventory::NodeReader;
use crate::write::StateDir;

/// A CA's rotation phase, as `ca status` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationPhase {
    None,
    Started,
    Trusting,
    Issuing,
    Finished,
    /// The journal cannot be read or is not one the agent wrote: nobody can tell the
    /// phase, so the CA is held as during a rotation (docs/ca.md).
    Broken,
}

impl RotationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationPhase::None => "none",
            RotationPhase::Started => "started",
            RotationPhase::Trusting => "trusting",
            RotationPhase::Issuing => "issuing",
            RotationPhase::Finished => "finished",
            RotationPhase::Broken => "broken",
        }
    }
}

/// The rotation phase of CA `name` on this node, from the rotation's journal in the
/// state directory (`<state>/rotations/<name>/journal.json`), checked as every use of
/// it is. Reads only; a journal that cannot be used is `Broken`
/// ([`super::rotation::broken`] says why).
pub fn phase_of(node: &NodeReader<'_>, state: &StateDir, name: &str) -> RotationPhase {
    use super::rotation::Phase;
    let Some(name) = crate::inventory::anchors::canonical_name(name) else {
        return RotationPhase::None;
    };
    match super::rotation::trusted::read(node, state, name) {
        Ok(Some(j)) => match j.phase {
            Phase::Started => RotationPhase::Started,
            Phase::Trusting => RotationPhase::Trusting,
            Phase::Issuing => RotationPhase::Issuing,
            Phase::Finished => RotationPhase::Finished,
            // An abort whose restarts were interrupted: the files are as before start.
            Phase::Aborted => RotationPhase::None,
        },
        Ok(None) => RotationPhase::None,
        Err(_) => RotationPhase::Broken,
    }
}
