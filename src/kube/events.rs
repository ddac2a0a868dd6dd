//! Kubernetes Events on the Node for what a pass did: each renewal, each restart, each
//! failure and rollback, and each certificate left inside its renewal window
//! (`CertificateExpirationWarning`, the reason RKE2 and k3s use, so existing dashboards
//! catch it). Sent with the node's own credentials (kubelet.conf: `system:node:NAME` may
//! create Events), best effort: all of a pass's Events share one deadline, the first
//! transport failure ends the sending, and nothing here changes the pass's outcome.
//! Which Events a pass leaves: `report::events`.

use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;

use super::{ApiClient, ClientOptions};
use crate::config::events::EventSettings;
use crate::node::NodeRoot;

/// An Event's type, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl NodeEvent {
    pub fn normal(reason: &'static str, message: String) -> NodeEvent {
        NodeEvent {
            warning: false,
            reason,
            message,
        }
    }

    pub fn warning(reason: &'static str, message: String) -> NodeEvent {
        NodeEvent {
            warning: true,
            reason,
            message,
        }
    }
}

/// Sends the pass's Events when `[events]` is enabled. Never fails and never takes
/// longer than `timeout_seconds` (plus the local reading of the kubeconfig).
pub fn tell(root: &NodeRoot, s: &EventSettings, events: &[NodeEvent]) {
    if !s.enabled || events.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(s.timeout_seconds);
    let Some(node) = crate::inventory::serving::node_name_of(root, &s.kubeconfig) else {
        tracing::warn!(
            "events: {}: no client certificate of a node (CN system:node:NAME); no Events sent",
            s.kubeconfig.display()
        );
        return;
    };
    let api = match ApiClient::from_kubeconfig(
        root,
        &s.kubeconfig,
        ClientOptions {
            connect_timeout_seconds: s.timeout_seconds.min(2),
            timeout_seconds: s.timeout_seconds,
            max_answer_bytes: 1 << 20,
        },
    ) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("events: {e}; no Events sent");
            return;
        }
    };
    let mut sent = 0;
    for e in events {
        // Each Event gets what is left of the one deadline, so the whole sending ends by it.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let now = crate::timefmt::rfc3339(OffsetDateTime::now_utc());
        let message: String = e.message.chars().take(1000).collect();
        let body = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": format!("{node}.cert-rotator."), "namespace": "default"},
            // The kubelet's form for Events about its Node: the uid is the node's name.
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node},
            "reason": e.reason,
            "message": message,
            "type": if e.warning { "Warning" } else { "Normal" },
            "source": {"component": "cert-rotator", "host": node},
            "reportingComponent": "cert-rotator",
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        match api.post_within::<_, serde_json::Value>(
            "/api/v1/namespaces/default/events",
            &body,
            left,
        ) {
            Ok(_) => sent += 1,
            Err(err) => {
                // The API server is unreachable or refuses: the rest would fare alike.
                tracing::warn!("events: {err}; {} of {} Events sent", sent, events.len());
                return;
            }
        }
    }
    tracing::info!(
        "events: {sent} of {} Events sent on Node {node}",
        events.len()
    );
}
