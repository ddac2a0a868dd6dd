//! How a pass on a node restarts, from the node's [`Liveness`] alone: the edges are
//! used only where the node's components run here and `--no-restart` was not given.

use super::Restarts;
use crate::node::{Liveness, NodeRoot};

impl Restarts<'_> {
    /// What a pass on `root` does instead of restarting; `None` when it restarts, and
    /// the caller builds the [`super::Edges`] (a bus, a prober, the cluster's lock)
    /// only then.
    pub fn without_edges(root: &NodeRoot) -> Option<Restarts<'static>> {
        match root.liveness() {
            Liveness::Live => None,
            Liveness::NoRestart => Some(Restarts::Operator),
            Liveness::Offline => Some(Restarts::NotLive),
        }
    }
}
