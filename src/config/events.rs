//! `[events]`: Kubernetes Events on the Node for what a `run` pass did, and the summary
//! of the node's certificates on its Node object (docs/csr.md, "Events", "The summary
//! on the Node"). Off by default; never required: the pass neither waits for the API
//! server nor fails because of it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Events for what the pass did.
    pub enabled: bool,
    /// Labels and an annotation on the Node: the earliest expiry, how many are due, one
    /// entry per certificate.
    pub node_summary: bool,
    /// The node's own credentials (system:node:NAME may create Events about itself);
    /// the Node's name is its client certificate's CN.
    pub kubeconfig: PathBuf,
    /// All of a pass's Events and the summary together, connect to last byte: the most
    /// a pass can be slowed down when the API server is unreachable.
    pub timeout_seconds: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            enabled: false,
            node_summary: false,
            kubeconfig: PathBuf::from("/etc/kubernetes/kubelet.conf"),
            timeout_seconds: 5,
        }
    }
}

impl EventSettings {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if !self.kubeconfig.is_absolute() {
            return Err(InvalidValue::new(
                "events.kubeconfig",
                &self.kubeconfig,
                "must be an absolute node path",
            ));
        }
        if !(1..=60).contains(&self.timeout_seconds) {
            return Err(InvalidValue::new(
                "events.timeout_seconds",
                self.timeout_seconds,
                "must be 1 to 60",
            ));
        }
        Ok(())
    }
}
