//! Where a CA stands in a rotation to a new key. The rotation (issue #11, section 2) is
//! journaled in the state directory; until it is, every CA is in phase `none`.

use serde::Serialize;

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
}

impl RotationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationPhase::None => "none",
            RotationPhase::Started => "started",
            RotationPhase::Trusting => "trusting",
            RotationPhase::Issuing => "issuing",
            RotationPhase::Finished => "finished",
        }
    }
}

/// The rotation phase of CA `name` on this node, from the rotation's journal in the
/// state directory (`<state>/rotations/<name>/journal.json`). Reads only; an unreadable
/// journal reads as `none` (the rotation commands say why).
pub fn phase_of(state: &StateDir, name: &str) -> RotationPhase {
    use super::rotation::Phase;
    match super::rotation::journal::read(state, name) {
        Ok(Some(j)) => match j.phase {
            Phase::Started => RotationPhase::Started,
            Phase::Trusting => RotationPhase::Trusting,
            Phase::Issuing => RotationPhase::Issuing,
            Phase::Finished => RotationPhase::Finished,
            // An abort whose restarts were interrupted: the files are as before start.
            Phase::Aborted => RotationPhase::None,
        },
        _ => RotationPhase::None,
    }
}
