//! Why a phase of a CA rotation did not complete.

use std::path::{Path, PathBuf};

use super::files::EditError;
use super::stage::StageError;
use super::trusted::JournalError;
use crate::ca::authorities::LoadError;
use crate::ca::CaError;
use crate::issue::IssueError;
use crate::write::WriteError;

/// Why a phase did not complete. Each names its file, CA or component. Large errors
/// are boxed, so that every step's `Result` stays small.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Out of order, or a precondition does not hold: nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Stage(Box<StageError>),
    #[error("{0}")]
    Edit(Box<EditError>),
    #[error("{0}")]
    Write(Box<WriteError>),
    #[error("{0}")]
    Issue(Box<IssueError>),
    #[error("{0}")]
    Ca(Box<CaError>),
    /// The staged CA could not be loaded to sign the leaves.
    #[error("{0}")]
    Signer(Box<LoadError>),
    #[error("{0}")]
    Copy(Box<crate::inventory::anchors::CopyError>),
    /// The journal or a staged file is not what the agent wrote: nothing was changed.
    #[error("{0}")]
    Journal(Box<JournalError>),
    /// A restart or its verification failed; the phase stays unverified.
    #[error("{0}")]
    RestartFailed(String),
    #[error("{}: {problem}", path.display())]
    Node { path: PathBuf, problem: String },
    #[error("{}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        source: Box<crate::node::kubeconfig::KubeconfigError>,
    },
    #[error("the {phase} phase's files are not as it promises:\n  {}", problems.join("\n  "))]
    Check {
        phase: &'static str,
        problems: Vec<String>,
    },
}

macro_rules! rotation_error_from {
    ($($variant:ident($error:ty)),*) => {
        $(impl From<$error> for RotationError {
            fn from(e: $error) -> Self {
                RotationError::$variant(Box::new(e))
            }
        })*
    };
}

rotation_error_from!(
    Stage(StageError),
    Edit(EditError),
    Write(WriteError),
    Issue(IssueError),
    Ca(CaError),
    Signer(LoadError),
    Copy(crate::inventory::anchors::CopyError),
    Journal(JournalError)
);

pub(super) fn node_err(path: &Path) -> impl FnOnce(crate::node::NodeError) -> RotationError + '_ {
    move |e| RotationError::Node {
        path: path.to_path_buf(),
        problem: e.problem.to_string(),
    }
}

impl From<crate::issue::PlannedError> for RotationError {
    fn from(e: crate::issue::PlannedError) -> Self {
        match e {
            crate::issue::PlannedError::Ca(e) => e.into(),
            crate::issue::PlannedError::Issue(e) => e.into(),
        }
    }
}
