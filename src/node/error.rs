//! What can be wrong with a node file, always with the node path it concerns.

use std::io;
use std::path::{Path, PathBuf};

/// A node file that could not be read or written. Displays as `<path>: <what is wrong>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct NodeError {
    /// Node path (for [`NodeRoot::open`](super::NodeRoot::open), the root's host path).
    pub path: PathBuf,
    #[source]
    pub problem: Problem,
}

/// A symlink `link -> target` that leads out of the root.
#[derive(Debug, thiserror::Error)]
#[error("the symlink {} -> {} leads outside the root {}", link.display(), target.display(), root.display())]
pub struct Escape {
    /// Node path of the link.
    pub link: PathBuf,
    /// The link's text.
    pub target: PathBuf,
    /// Host path of the root.
    pub root: PathBuf,
}

/// The kinds of [`NodeError`].
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A symlink would lead out of `--root`: refused, never followed.
    #[error("{0}")]
    OutsideRoot(Box<Escape>),
    #[error("too many levels of symbolic links")]
    Loop,
    #[error("dangling symlink to {}", target.display())]
    Dangling {
        /// Node path the symlink resolves to.
        target: PathBuf,
    },
    #[error("is a directory, expected a file")]
    IsDirectory,
    #[error("is not a directory")]
    NotADirectory,
    /// A symlink where the agent keeps a directory of its own (the state directory's
    /// `backup`): what it prunes there must not be whatever the link leads to.
    #[error("is a symlink to {}, not a directory of its own: remove the link", target.display())]
    Symlink {
        /// The link's text.
        target: PathBuf,
    },
    /// A FIFO, socket or device where a file should be: reading it could hang or never end.
    #[error("is a {kind}, not a regular file")]
    NotRegular { kind: &'static str },
    /// Certificates, keys, kubeconfigs and manifests are small: a huge file is not one.
    #[error("is larger than {limit} bytes: not a certificate, key, kubeconfig or manifest")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Io(#[source] io::Error),
    /// What is wrong is at the end of the path's symlinks, not at the path itself.
    #[error("{problem} (at {}, where its symlinks lead)", target.display())]
    Via {
        /// Node path the symlinks lead to.
        target: PathBuf,
        problem: Box<Problem>,
    },
}

impl Problem {
    /// The problem itself, past any [`Problem::Via`].
    pub fn innermost(&self) -> &Problem {
        match self {
            Problem::Via { problem, .. } => problem.innermost(),
            p => p,
        }
    }
}

impl NodeError {
    pub fn new(path: &Path, problem: Problem) -> Self {
        NodeError {
            path: path.to_path_buf(),
            problem,
        }
    }

    pub fn io(path: &Path, source: io::Error) -> Self {
        NodeError::new(path, Problem::Io(source))
    }

    /// Nothing at the path (not even a dangling symlink).
    pub fn is_not_found(&self) -> bool {
        matches!(self.problem.innermost(), Problem::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// The closest `io::ErrorKind`, for callers that still speak `io::Error`.
    pub fn kind(&self) -> io::ErrorKind {
        match self.problem.innermost() {
            Problem::Io(e) => e.kind(),
            Problem::Dangling { .. } => io::ErrorKind::NotFound,
            Problem::IsDirectory => io::ErrorKind::IsADirectory,
            Problem::NotADirectory => io::ErrorKind::NotADirectory,
            Problem::TooLarge { .. } => io::ErrorKind::FileTooLarge,
            Problem::OutsideRoot(_) => io::ErrorKind::PermissionDenied,
            Problem::Loop
            | Problem::NotRegular { .. }
            | Problem::Symlink { .. }
            | Problem::Via { .. } => io::ErrorKind::InvalidInput,
        }
    }
}

/// For callers that still return `io::Error`: an I/O failure stays the OS error it was
/// (the caller names the path); a refusal by the gate carries its whole message.
impl From<NodeError> for io::Error {
    fn from(e: NodeError) -> Self {
        let kind = e.kind();
        match e.problem {
            Problem::Io(source) => source,
            _ => io::Error::new(kind, e),
        }
    }
}
