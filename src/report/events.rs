//! The Kubernetes Events a pass leaves on its Node (sent by `kube::events::tell`):
//! each renewal, each restart, each failure and rollback, and each certificate left
//! inside its renewal window (`CertificateExpirationWarning`, the reason RKE2 and k3s
//! use, so existing dashboards catch it).

use super::pass::PassReport;
use crate::kube::events::NodeEvent;

/// The Events of a pass, pure.
pub fn of_report(r: &PassReport) -> Vec<NodeEvent> {
    let mut out = Vec::new();
    for c in &r.renewed {
        out.push(NodeEvent::normal(
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
    for c in &r.ca_renewed {
        out.push(NodeEvent::normal(
            "CertificateAuthorityRenewed",
            format!("cert-rotator renewed CA {c}"),
        ));
    }
    for c in &r.restarted {
        out.push(NodeEvent::normal(
            "ComponentRestarted",
            format!("cert-rotator restarted {c} to load its renewed certificates"),
        ));
    }
    for f in &r.failed {
        out.push(NodeEvent::warning("CertificateRotationFailed", f.clone()));
    }
    for f in &r.rolled_back {
        out.push(NodeEvent::warning(
            "CertificateRotationRolledBack",
            format!("cert-rotator rolled back {f}"),
        ));
    }
    for d in r.deferred.iter().chain(&r.not_renewable) {
        out.push(NodeEvent::warning(
            "CertificateExpirationWarning",
            format!("inside its renewal window and not renewed by this pass: {d}"),
        ));
    }
    out
}
