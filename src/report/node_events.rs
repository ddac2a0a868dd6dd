//! The Kubernetes Events of a pass (kube::events sends them on the Node): each renewal,
//! each restart, each failure and rollback, and each certificate left inside its renewal
//! window (`CertificateExpirationWarning`, the reason RKE2 and k3s use, so existing
//! dashboards catch it). Pure.

use super::pass::PassReport;

pub use crate::kube::events::NodeEvent;

fn normal(reason: &'static str, message: String) -> NodeEvent {
    NodeEvent::normal(reason, message)
}

fn warning(reason: &'static str, message: String) -> NodeEvent {
    NodeEvent::warning(reason, message)
}

/// The Events of a pass, by kind (renewals, CA renewals, restarts, failures, rollbacks,
/// certificates left due), each kind in the order it happened.
pub fn of_report(r: &PassReport) -> Vec<NodeEvent> {
    let mut out = Vec::new();
    for c in r.renewed() {
        out.push(normal(
            "CertificateRenewed",
            format!(
                "cert-rotator renewed {} ({}): serial {}, valid until {}",
                c.name,
                c.path,
                c.serial,
                crate::timefmt::rfc3339(c.not_after)
            ),
        ));
    }
    for c in r.ca_renewed() {
        out.push(normal(
            "CertificateAuthorityRenewed",
            format!("cert-rotator renewed CA {c}"),
        ));
    }
    for c in r.restarted() {
        out.push(normal(
            "ComponentRestarted",
            format!("cert-rotator restarted {c} to load its renewed certificates"),
        ));
    }
    for f in r.failed() {
        out.push(warning("CertificateRotationFailed", f));
    }
    for f in r.rolled_back() {
        out.push(warning(
            "CertificateRotationRolledBack",
            format!("cert-rotator rolled back {f}"),
        ));
    }
    for d in r.deferred().iter().chain(&r.not_renewable()) {
        out.push(warning(
            "CertificateExpirationWarning",
            format!("inside its renewal window and not renewed by this pass: {d}"),
        ));
    }
    out
}
