//! The node's CAs in the plan: which are due by their own window (`[authorities]`), and
//! what holds each in memory and must restart once its copies changed.

use serde::Serialize;
use time::OffsetDateTime;

use super::window::{assess, Assessment};
use crate::config::{AuthoritySettings, WindowSettings};
use crate::inventory::{Inventory, NodeRole};
use crate::model::Component;
use crate::pki::CertFacts;

/// A CA's window: due when less than `remaining_fraction` of its lifetime remains (no
/// days rule: a CA's lifetime is years).
pub fn assess_ca(
    settings: &AuthoritySettings,
    cert: &CertFacts,
    now: OffsetDateTime,
) -> Assessment {
    let window = WindowSettings {
        remaining_fraction: settings.remaining_fraction,
        remaining_days: 0.0,
    };
    assess(&window, cert.not_before, cert.not_after, now)
}

/// A due CA of the node, for `plan` and `run`.
#[derive(Clone, Debug, Serialize)]
pub struct DueAuthority {
    pub name: String,
    pub path: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// `expired` or `under-P-percent`.
    pub reason: String,
    /// Its key is on the node: it can be renewed here.
    pub has_key: bool,
    /// `run` renews it (`[authorities] renew` and the key is here).
    pub automatic: bool,
    /// What restarts once it is renewed, in order.
    pub restarts: Vec<Component>,
    /// Why it is not renewed although due: a rotation in progress holds it
    /// (authority::rotation::guard; set where the state directory is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// The CAs of `inv` that are due at `now`, in the inventory's order. Pure.
pub fn due_authorities(
    settings: &AuthoritySettings,
    inv: &Inventory,
    now: OffsetDateTime,
) -> Vec<DueAuthority> {
    let mut out = Vec::new();
    for a in &inv.authorities {
        let Ok(cert) = &a.cert else { continue };
        let assessed = assess_ca(settings, cert, now);
        let Some(reason) = assessed.reason else {
            continue;
        };
        out.push(DueAuthority {
            name: a.def.name.clone(),
            path: a.def.cert.display().to_string(),
            not_after: cert.not_after,
            reason: reason.as_str().into_owned(),
            // A key that cannot sign is no key to renew with (the plan fails naming it).
            has_key: a.has_key && a.key_error.is_none(),
            automatic: settings.renew && a.has_key && a.key_error.is_none(),
            restarts: ca_restarts(&a.def.name, inv.role),
            held: None,
        });
    }
    out
}

/// What holds a CA in memory and must restart, in order, once its copies changed
/// (research 2.8): etcd never reloads its trusted-CA files and the apiserver reads
/// `--etcd-cafile` once; every kubeconfig's embedded CA is read at start. On a worker
/// only the kubelet holds `ca`.
pub fn ca_restarts(name: &str, role: NodeRole) -> Vec<Component> {
    use Component::*;
    match (name, role) {
        (_, NodeRole::Worker) => vec![Kubelet],
        ("etcd/ca", _) => vec![Etcd, KubeApiserver],
        ("front-proxy-ca", _) => vec![KubeApiserver, KubeControllerManager],
        _ => vec![KubeApiserver, KubeControllerManager, KubeScheduler, Kubelet],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn what_holds_each_ca_restarts_in_order() {
        use Component::*;
        assert_eq!(ca_restarts("ca", NodeRole::Worker), [Kubelet]);
        assert_eq!(
            ca_restarts("etcd/ca", NodeRole::ControlPlane),
            [Etcd, KubeApiserver]
        );
        assert_eq!(
            ca_restarts("front-proxy-ca", NodeRole::ControlPlane),
            [KubeApiserver, KubeControllerManager]
        );
        assert_eq!(
            ca_restarts("ca", NodeRole::ControlPlane),
            [KubeApiserver, KubeControllerManager, KubeScheduler, Kubelet]
        );
    }

    #[test]
    fn a_ca_is_due_under_its_fraction_only() {
        let now = OffsetDateTime::now_utc();
        let d = tempfile::tempdir().unwrap();
        let mut spec = crate::fixture::NodeSpec::control_plane(now);
        // 10 years, 700 days left: under 20% (730 days).
        spec.ca_validity = crate::fixture::Validity::days(3650, Duration::days(700));
        crate::fixture::build(d.path(), &spec).unwrap();
        let root = crate::node::NodeRoot::new(d.path());
        let s = crate::config::Settings::default();
        let inv = crate::inventory::read(&crate::inventory::layout(&s, &root), &root);
        let due = due_authorities(&s.authorities, &inv, now);
        let names: Vec<&str> = due.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["ca", "front-proxy-ca", "etcd/ca"]);
        assert_eq!(due[0].reason, "under-20-percent");
        assert!(due.iter().all(|d| d.automatic && d.has_key));
        let off = AuthoritySettings {
            renew: false,
            ..s.authorities
        };
        assert!(due_authorities(&off, &inv, now)
            .iter()
            .all(|d| !d.automatic));
        let narrow = AuthoritySettings {
            remaining_fraction: 0.1,
            ..s.authorities
        };
        assert!(due_authorities(&narrow, &inv, now).is_empty());
    }
}
