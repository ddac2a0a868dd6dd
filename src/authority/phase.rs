//! Where a CA stands in a rotation to a new key. The rotation (issue #11, section 2) is
//! journaled in the state directory (rotation::journal).

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
/// state directory (an aborted rotation is phase none). Reads only.
pub fn phase_of(state: &StateDir, name: &str) -> RotationPhase {
    match super::rotation::journal::phase_of(state, name) {
        "started" => RotationPhase::Started,
        "trusting" => RotationPhase::Trusting,
        "issuing" => RotationPhase::Issuing,
        "finished" => RotationPhase::Finished,
        _ => RotationPhase::None,
    }
}
