//! Whether the node's components run on this host, apart from where its files are.
//!
//! `--root` says where the node's files are; it does not say whether the kubelet, the
//! static pods and their ports are here. A node tree mounted elsewhere can be the one
//! a control plane on this host reads (a test harness, a node in a chroot), and `/`
//! can be a node the operator restarts by hand. [`Liveness::decide`] is the one rule,
//! applied once per command; everything else asks the [`super::NodeRoot`].

/// What a command may do to the node's running components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The components run here: restart them through systemd and their manifests,
    /// probe their ports, take the cluster's restart lock.
    Live,
    /// They run here, but the operator restarts them (`--no-restart`): renew and
    /// write, then list what must restart.
    NoRestart,
    /// Files only (a sandbox, a mounted disk): nothing of this node runs here, so
    /// nothing is restarted or probed; what would be is reported as not performed.
    Offline,
}

impl Liveness {
    /// The rule: the components run here when the root is the host's `/` or `--live`
    /// says so; `--no-restart` then keeps the agent's hands off them. Without `--live`
    /// a root elsewhere is files only, whatever `--no-restart` says.
    pub fn decide(root_is_host: bool, live: bool, no_restart: bool) -> Liveness {
        match (root_is_host || live, no_restart) {
            (false, _) => Liveness::Offline,
            (true, false) => Liveness::Live,
            (true, true) => Liveness::NoRestart,
        }
    }

    /// Whether the node's components (and kubeadm working on them) are on this host.
    pub fn runs_here(self) -> bool {
        self != Liveness::Offline
    }

    /// Whether the agent restarts, probes and coordinates them.
    pub fn restarts(self) -> bool {
        self == Liveness::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_decides_only_by_default() {
        // --root / and nothing else: the timer's case.
        assert_eq!(Liveness::decide(true, false, false), Liveness::Live);
        // --root DIR: a sandbox or a mounted disk.
        assert_eq!(Liveness::decide(false, false, false), Liveness::Offline);
        // --root DIR --live: a tree a control plane on this host reads.
        assert_eq!(Liveness::decide(false, true, false), Liveness::Live);
        // / --no-restart: the operator restarts; --live --no-restart the same under DIR.
        assert_eq!(Liveness::decide(true, false, true), Liveness::NoRestart);
        assert_eq!(Liveness::decide(false, true, true), Liveness::NoRestart);
        assert_eq!(Liveness::decide(false, false, true), Liveness::Offline);
        assert!(Liveness::NoRestart.runs_here() && !Liveness::NoRestart.restarts());
        assert!(!Liveness::Offline.runs_here());
    }
}
