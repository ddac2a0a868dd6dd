//! The node's inventory, summed up on its own Node object (`[events] node_summary`,
//! docs/csr.md "The summary on the Node"): two labels for `kubectl get nodes -L`, the
//! earliest notAfter of the node's certificates (`cert-rotator.io/next-expiry`, a UTC
//! date) and how many are inside their renewal window (`cert-rotator.io/due`), and an
//! annotation with one compact JSON entry per certificate (`cert-rotator.io/certificates`).
//!
//! On the Node rather than in a ConfigMap per node: the Node authorizer and the
//! NodeRestriction admission plugin already let a node's own credentials (kubelet.conf)
//! patch its own Node object and nothing else's, so no RBAC is needed and no node can
//! overwrite another's summary. Labels outside kubernetes.io and k8s.io are the ones
//! NodeRestriction leaves to a node. Pure: crate::kube::events sends it.

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::status::CertificateStatus;
use crate::inventory::Inventory;
use crate::kube::events::NodePatch;
use crate::timefmt::rfc3339;

pub const NEXT_EXPIRY: &str = "cert-rotator.io/next-expiry";
pub const DUE: &str = "cert-rotator.io/due";
pub const CERTIFICATES: &str = "cert-rotator.io/certificates";

/// The annotation's largest size: the API server allows 256 KiB for all of an
/// object's annotations together, which the kubelet and others share. Entries past it
/// are left out and counted (`omitted`).
pub const MAX_ANNOTATION_BYTES: usize = 32 * 1024;

/// One certificate in the annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    /// RFC 3339; absent for a certificate that is missing or cannot be read.
    #[serde(rename = "notAfter", skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `ok`, `due` (inside its renewal window), `expired`, `missing` (optional and
    /// absent), `not-managed` (a token or exec kubeconfig), `error` (unreadable).
    pub state: &'static str,
    /// Who renews it: `cert-rotator`, or `kubelet` (it rotates the certificate itself
    /// through the CSR API; cert-rotator is its safety net).
    #[serde(rename = "renewedBy")]
    pub renewed_by: &'static str,
}

/// What goes on the Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSummary {
    /// The earliest notAfter of the certificates read, `YYYY-MM-DD` (UTC).
    pub next_expiry: Option<String>,
    pub due: usize,
    /// The annotation's JSON, within [`MAX_ANNOTATION_BYTES`].
    pub annotation: String,
}

impl NodeSummary {
    /// The summary of the node's inventory at `now`.
    pub fn of(inv: &Inventory, now: OffsetDateTime) -> NodeSummary {
        let mut entries = Vec::new();
        let mut next: Option<OffsetDateTime> = None;
        let mut due = 0;
        for o in &inv.certificates {
            let s = CertificateStatus::of(&o.target, &o.state, now);
            let state = if s.missing {
                "missing"
            } else if s.not_managed.is_some() {
                "not-managed"
            } else if s.error.is_some() || s.not_after.is_none() {
                "error"
            } else if s.not_after.is_some_and(|t| t <= now) {
                "expired"
            } else if s.due {
                "due"
            } else {
                "ok"
            };
            if s.due {
                due += 1;
            }
            if let Some(t) = s.not_after {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            entries.push(Entry {
                name: s.name,
                not_after: s.not_after.map(rfc3339),
                state,
                renewed_by: if o.target.handover.is_some() {
                    "kubelet"
                } else {
                    "cert-rotator"
                },
            });
        }
        NodeSummary {
            next_expiry: next.map(date),
            due,
            annotation: annotation(now, &entries, MAX_ANNOTATION_BYTES),
        }
    }

    /// The patch the Node gets, and how the journal says it.
    pub fn node_patch(&self) -> NodePatch {
        NodePatch {
            body: self.patch(),
            said: format!(
                "next expiry {}, {} due",
                self.next_expiry.as_deref().unwrap_or("none"),
                self.due
            ),
        }
    }

    /// The JSON merge patch of the Node's metadata: the labels and the annotation,
    /// a label without a value (no certificate read) removed.
    pub fn patch(&self) -> Value {
        json!({
            "metadata": {
                "labels": {
                    NEXT_EXPIRY: self.next_expiry,
                    DUE: self.due.to_string(),
                },
                "annotations": { CERTIFICATES: self.annotation },
            }
        })
    }
}

/// A label value: `2027-12-07` (UTC).
fn date(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

/// `{"updated": ..., "certificates": [...], "omitted": N}` within `max` bytes: the
/// entries that fit, in the inventory's order, the rest counted.
fn annotation(now: OffsetDateTime, entries: &[Entry], max: usize) -> String {
    let head = json!({"updated": rfc3339(now), "certificates": []}).to_string();
    // Room for `,"omitted":N` with any count.
    let mut room = max.saturating_sub(head.len() + 32);
    let mut kept = Vec::new();
    for e in entries {
        let v = serde_json::to_value(e).unwrap_or(Value::Null);
        let len = v.to_string().len() + 1;
        if len > room {
            break;
        }
        room -= len;
        kept.push(v);
    }
    let omitted = entries.len() - kept.len();
    let mut doc = json!({"updated": rfc3339(now), "certificates": kept});
    if omitted > 0 {
        doc["omitted"] = omitted.into();
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            name: format!("cert-{i}"),
            not_after: Some("2027-01-01T00:00:00Z".into()),
            state: "ok",
            renewed_by: "cert-rotator",
        }
    }

    #[test]
    fn the_annotation_keeps_within_its_bound_and_counts_what_it_left_out() {
        let now = time::macros::datetime!(2026-12-07 05:00 UTC);
        let all: Vec<Entry> = (0..1000).map(entry).collect();
        let a = annotation(now, &all, 4096);
        assert!(a.len() <= 4096, "{}", a.len());
        let v: Value = serde_json::from_str(&a).unwrap();
        let kept = v["certificates"].as_array().unwrap().len();
        assert!(kept > 10);
        assert_eq!(v["omitted"], (1000 - kept) as u64);
        assert_eq!(v["certificates"][0]["name"], "cert-0");
        assert_eq!(v["certificates"][0]["renewedBy"], "cert-rotator");
        let few = annotation(now, &all[..3], 4096);
        let v: Value = serde_json::from_str(&few).unwrap();
        assert_eq!(v["updated"], "2026-12-07T05:00:00Z");
        assert!(v.get("omitted").is_none());
    }

    #[test]
    fn the_patch_is_labels_and_the_annotation_only() {
        let s = NodeSummary {
            next_expiry: Some(date(time::macros::datetime!(2027-03-04 23:59 UTC))),
            due: 2,
            annotation: "{}".into(),
        };
        assert_eq!(
            s.patch(),
            json!({"metadata": {
                "labels": {"cert-rotator.io/next-expiry": "2027-03-04", "cert-rotator.io/due": "2"},
                "annotations": {"cert-rotator.io/certificates": "{}"},
            }})
        );
        let none = NodeSummary {
            next_expiry: None,
            ..s
        };
        assert_eq!(
            none.patch()["metadata"]["labels"]["cert-rotator.io/next-expiry"],
            Value::Null
        );
    }
}
