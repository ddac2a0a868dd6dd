//! Kubernetes Events on the Node for what a pass did (worded by
//! [`crate::report::node_events`] from the pass's events): each renewal, each restart,
//! each failure and rollback, and each certificate left inside its renewal window
//! (`CertificateExpirationWarning`, the reason RKE2 and k3s use). Sent with the node's
//! own credentials (kubelet.conf: `system:node:NAME` may create Events), best effort:
//! all of a pass's Events and the summary on the Node (crate::report::node_summary) share one
//! deadline, the first transport failure ends the sending, and nothing here changes the
//! pass's outcome.

use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;

use super::{ApiClient, ApiError, ClientOptions};
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

/// A JSON merge patch of the node's own Node object (the summary of its certificates,
/// made by crate::report::node_summary), and how the journal says what it holds.
#[derive(Clone, Debug)]
pub struct NodePatch {
    pub body: serde_json::Value,
    pub said: String,
}

/// Sends the pass's Events when `[events]` is enabled. Never fails and never takes
/// longer than `timeout_seconds` (plus the local reading of the kubeconfig).
pub fn tell(root: &NodeRoot, s: &EventSettings, events: &[NodeEvent]) {
    tell_all(root, s, events, None)
}

/// Sends the pass's Events (when `enabled`), then the summary onto the Node (when
/// `node_summary`), all within one deadline of `timeout_seconds` (plus the local reading
/// of the kubeconfig). Never fails: what cannot be sent is said in the journal.
pub fn tell_all(
    root: &NodeRoot,
    s: &EventSettings,
    events: &[NodeEvent],
    summary: Option<&NodePatch>,
) {
    let events = if s.enabled { events } else { &[] };
    let summary = summary.filter(|_| s.node_summary);
    if events.is_empty() && summary.is_none() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(s.timeout_seconds);
    let Some(node) = crate::inventory::serving::node_name_of(root, &s.kubeconfig) else {
        tracing::warn!(
            "events: {}: no client certificate of a node (CN system:node:NAME); nothing sent to the cluster",
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
            tracing::warn!("events: {e}; nothing sent to the cluster");
            return;
        }
    };
    if !send_events(&api, &node, events, deadline) {
        return;
    }
    // The name is part of the URL path: node_name_of gives only Kubernetes object names.
    if let Some(summary) = summary {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!("events: no time left for the summary on Node {node}");
            return;
        }
        match api.merge_patch_within::<_, serde_json::Value>(
            &format!("/api/v1/nodes/{node}"),
            &summary.body,
            left,
        ) {
            Ok(_) => tracing::info!("events: summary on Node {node}: {}", summary.said),
            Err(e) => tracing::warn!("events: the summary on Node {node}: {e}"),
        }
    }
}

/// Posts the Events within the deadline; false when the API server could not be
/// reached (what would follow would fare alike).
fn send_events(api: &ApiClient, node: &str, events: &[NodeEvent], deadline: Instant) -> bool {
    if events.is_empty() {
        return true;
    }
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
                tracing::warn!("events: {err}; {} of {} Events sent", sent, events.len());
                // Refused (403, 422): the Node may still take its summary. Unreachable:
                // it would fare alike.
                return !matches!(err, ApiError::Transport { .. });
            }
        }
    }
    tracing::info!(
        "events: {sent} of {} Events sent on Node {node}",
        events.len()
    );
    true
}
