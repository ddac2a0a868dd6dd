//! Kubernetes Events on the Node for what a pass did (worded by
//! [`crate::report::node_events`] from the pass's events): each renewal, each restart,
//! each failure and rollback, and each certificate left inside its renewal window
//! (`CertificateExpirationWarning`, the reason RKE2 and k3s use). Sent with the node's
//! own credentials (kubelet.conf: `system:node:NAME` may create Events), best effort:
//! all of a pass's Events and the summary on the Node (crate::report::node_summary) share one
//! deadline, the first transport failure or answer that would be the same for every
//! object (401, 429, 5xx) ends the sending (an object the API server refuses, 403, 409,
//! 422, is said and the others still go), and nothing here changes the pass's outcome.

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
    let post = |body: &serde_json::Value, left: Duration| {
        api.post_within::<_, serde_json::Value>(EVENTS_PATH, body, left)
            .map(|_| ())
    };
    // The name is part of the URL path: node_name_of gives only Kubernetes object names.
    let patch = |body: &serde_json::Value, left: Duration| {
        api.merge_patch_within::<_, serde_json::Value>(&format!("/api/v1/nodes/{node}"), body, left)
            .map(|_| ())
    };
    deliver(post, patch, &node, events, summary, deadline);
}

const EVENTS_PATH: &str = "/api/v1/namespaces/default/events";

/// What became of a pass's Events and summary: for the journal, and for the tests.
#[derive(Debug, Default, PartialEq, Eq)]
struct Delivery {
    sent: usize,
    /// The objects the API server refused (an Event's reason, or the Node for its
    /// summary), each said once in the journal with the status.
    refused: Vec<String>,
    summary_sent: bool,
    /// A transport failure, an answer for every object (401, 429, 5xx) or the deadline
    /// ended the sending.
    cut_short: bool,
}

/// Posts the Events, then patches the summary, all by `deadline`. A refusal (403, 409,
/// 422: an answer) is about that one object: it is said and the rest still go. Only a
/// transport failure (refused, reset, timed out), an answer that would be the same for
/// every object (401, 429, 5xx: [`ends_the_sending`]) or the deadline ends the sending,
/// with one warning.
fn deliver(
    mut post: impl FnMut(&serde_json::Value, Duration) -> Result<(), ApiError>,
    mut patch: impl FnMut(&serde_json::Value, Duration) -> Result<(), ApiError>,
    node: &str,
    events: &[NodeEvent],
    summary: Option<&NodePatch>,
    deadline: Instant,
) -> Delivery {
    let mut d = Delivery::default();
    for (i, e) in events.iter().enumerate() {
        // Each Event gets what is left of the one deadline, so the whole sending ends by it.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(
                "events: no time left for {} of {} Events on Node {node}",
                events.len() - i,
                events.len()
            );
            d.cut_short = true;
            break;
        }
        match post(&event_body(node, e), left) {
            Ok(()) => d.sent += 1,
            Err(err) if ends_the_sending(&err) => {
                tracing::warn!(
                    "events: {err}; {} of {} Events sent on Node {node}",
                    d.sent,
                    events.len()
                );
                d.cut_short = true;
                break;
            }
            Err(err) => {
                tracing::warn!("events: Event {} on Node {node} refused: {err}", e.reason);
                d.refused.push(format!("Event {}", e.reason));
            }
        }
    }
    if !events.is_empty() && !d.cut_short {
        tracing::info!(
            "events: {} of {} Events sent on Node {node}",
            d.sent,
            events.len()
        );
    }
    let Some(summary) = summary.filter(|_| !d.cut_short) else {
        return d;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        tracing::warn!("events: no time left for the summary on Node {node}");
        d.cut_short = true;
        return d;
    }
    match patch(&summary.body, left) {
        Ok(()) => {
            tracing::info!("events: summary on Node {node}: {}", summary.said);
            d.summary_sent = true;
        }
        Err(err) => {
            tracing::warn!("events: the summary on Node {node}: {err}");
            if !ends_the_sending(&err) {
                d.refused.push(format!("Node {node}"));
            }
        }
    }
    d
}

/// Whether `err` would answer every object alike, so the rest are not tried (one
/// warning): the API server unreachable, the credentials refused (401), too many
/// requests (429) or the server failing (5xx). A refusal of the object itself (403,
/// 409, 422, ...) is said for it and the others still go.
fn ends_the_sending(err: &ApiError) -> bool {
    match err {
        ApiError::Transport { .. } => true,
        ApiError::Http { status, .. } => matches!(status, 401 | 429 | 500..=599),
        _ => false,
    }
}

/// An Event about the Node `node`, as the kubelet makes them.
fn event_body(node: &str, e: &NodeEvent) -> serde_json::Value {
    let now = crate::timefmt::rfc3339(OffsetDateTime::now_utc());
    let message: String = e.message.chars().take(1000).collect();
    json!({
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
    })
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
