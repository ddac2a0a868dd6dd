//! `[kubelet] serving`: who issues the kubelet's serving certificate kubelet.crt
//! (docs/csr.md, "kubelet.crt a client can verify"). Off by default: `"self-signed"`
//! renews it with its own throwaway CA, as the kubelet made it.

use serde::{Deserialize, Serialize};

use super::{InvalidValue, KubeletSettings};

/// Who issues kubelet.crt.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ServingMode {
    /// Renewed self-signed with a new throwaway CA: nothing can verify the kubelet.
    #[default]
    SelfSigned,
    /// Issued by the cluster CA: its key on this node, else `[ca.remote]`.
    ClusterCa,
    /// Issued through the certificates API (signer `kubernetes.io/kubelet-serving`),
    /// requested with the kubelet's own credentials: for a worker without a CA.
    Csr,
}

impl ServingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServingMode::SelfSigned => "self-signed",
            ServingMode::ClusterCa => "cluster-ca",
            ServingMode::Csr => "csr",
        }
    }
}

pub(super) fn validate(k: &KubeletSettings) -> Result<(), InvalidValue> {
    if !k.serving_kubeconfig.is_absolute() {
        return Err(InvalidValue::new(
            "kubelet.serving_kubeconfig",
            &k.serving_kubeconfig,
            "must be an absolute node path",
        ));
    }
    if !(1..=600).contains(&k.serving_timeout_seconds) {
        return Err(InvalidValue::new(
            "kubelet.serving_timeout_seconds",
            k.serving_timeout_seconds,
            "must be 1 to 600",
        ));
    }
    Ok(())
}
