//! The cluster's CAs on this node: every copy of each (the CA file, the kubeconfigs'
//! `certificate-authority-data`), renewing a CA with its own key, and moving a CA
//! certificate between nodes (export / import).
//!
//! - The copies themselves ([`NodeCopies`]: CA files and kubeconfig anchors) are part of
//!   the node model the inventory reads ([`crate::inventory::NodeModel`]); turning "this
//!   copy now holds these certificates" into [`FileChange`]s is pure, there;
//!   [`crate::plan::ca_restarts`] says what holds each CA in memory.
//! - [`renew`] re-issues a CA certificate with its own key ([`renew::plan_renewal`]).
//! - [`exchange`] writes an export and checks an import against the node's CAs.
//! - [`status`] is `ca status`; [`phase`] where a CA stands in a rotation.
//! - [`install`] writes the changes of one command as one crash-safe change set and
//!   restarts what holds the CAs, one at a time and verified, as a pass does;
//!   [`renew_due`] is what `run` does with the CAs that are due.

mod error;
pub mod exchange;
pub mod import_checks;
pub mod phase;
pub mod renew;
/// Rotation to a new key, in phases (`ca rotate NAME start|trust|issue|finish|abort`).
pub mod rotation;
pub mod status;

pub use crate::inventory::anchors::{
    canonical_name, same_ca, AnchorKind, AuthorityCopies, CopyError, NodeCopies, TrustAnchor,
    CA_NAMES,
};
pub use error::AuthorityError;
pub use phase::{phase_of, RotationPhase};
pub use renew::{plan_renewal, Renewal};

use time::OffsetDateTime;

use crate::inventory::NodeReader;
use crate::model::{Component, FileChange};
use crate::plan::{DueAuthority, Reload};
use crate::report::event::{CaKept, Failure, PassEvent, RenewedCa};
use crate::report::pass::{section, PassReport, Section};
use crate::rollout::{restart_and_verify, restart_static_pod_with, Pass, Restarts};

/// The CAs named on a command line, as `status` names them, in the order given and
/// each once; every one must be a CA of this node.
pub fn select(node: &NodeCopies, args: &[String]) -> Result<Vec<String>, AuthorityError> {
    let mut out: Vec<String> = Vec::new();
    for a in args {
        let name =
            canonical_name(a).ok_or_else(|| AuthorityError::UnknownName { name: a.clone() })?;
        if node.authority(name).is_none() {
            return Err(AuthorityError::NotOnNode {
                name: name.to_string(),
                has: node
                    .authorities
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// A change of CA copies refuses to start while a kubeconfig cannot be read: a copy of
/// the CA in it could not be updated.
pub fn check_readable(node: &NodeCopies) -> Result<(), AuthorityError> {
    match node.unreadable.first() {
        Some(e) => Err(AuthorityError::Copy(Box::new(e.clone()))),
        None => Ok(()),
    }
}

/// What an installation did after writing.
#[derive(Clone, Debug, Default)]
pub struct Installed {
    /// Node paths written.
    pub written: Vec<String>,
    /// What the restarts did, in order, each already in the journal: restarts and
    /// verifications; on a node whose components do not run here (`--root DIR` without
    /// `--live`) what would restart there; where restarts are the operator's
    /// (`--no-restart`) what must restart; a restart or verification that failed (the
    /// ones after it were not done).
    pub events: Vec<PassEvent>,
    /// Components left unrestarted after a failure.
    pub not_restarted: Vec<String>,
}

impl Installed {
    pub fn restarted(&self) -> Vec<String> {
        section(&self.events, Section::Restarted)
    }

    pub fn verified(&self) -> Vec<String> {
        section(&self.events, Section::Verified)
    }

    pub fn must_restart(&self) -> Vec<String> {
        section(&self.events, Section::MustRestart)
    }

    pub fn not_performed(&self) -> Vec<String> {
        section(&self.events, Section::NotPerformed)
    }

    /// The restart or verification that failed.
    pub fn failed(&self) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            PassEvent::Failed(Failure::CaRestart { error, .. }) => Some(error.clone()),
            _ => None,
        })
    }
}

/// How a component reloads a CA it holds: as for its own certificates, except etcd,
/// which never reloads its trusted-CA files and restarts as the static pod it is.
pub fn reload_for_ca(component: &Component) -> Reload {
    match component {
        Component::Etcd => Reload::StaticPod("etcd".into()),
        c => Reload::of(Some(c)),
    }
}

/// The restarts of several CAs, each component once, in the order etcd, apiserver,
/// controller-manager, scheduler, kubelet (etcd before the apiserver, which reads
/// `--etcd-cafile` at start).
pub fn merge_restarts<'a>(lists: impl IntoIterator<Item = &'a [Component]>) -> Vec<Component> {
    use Component::*;
    let rank = |c: &Component| match c {
        Etcd => 0,
        KubeApiserver => 1,
        KubeControllerManager => 2,
        KubeScheduler => 3,
        Kubelet => 4,
        _ => 5,
    };
    let mut out: Vec<Component> = Vec::new();
    for l in lists {
        for c in l {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
    }
    out.sort_by_key(rank);
    out
}

/// Writes `changes` as one crash-safe change set (`label` in the write-ahead record):
/// every copy of the CAs at once, or none. Returns the node paths written.
pub fn write(
    pass: &Pass<'_>,
    label: &str,
    changes: &[FileChange],
) -> Result<Vec<String>, AuthorityError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    pass.state.apply(label, changes)?;
    Ok(changes
        .iter()
        .map(|c| c.path.display().to_string())
        .collect())
}

/// Restarts `restarts` one at a time, each verified, as the pass's restarts say: on
/// the live node through its edges, else listed for the operator. `serials` name the
/// new CA certificates (the static pods' manifest annotation).
///
/// A restart that fails is recorded ([`Installed::failed`]) and stops the rest; the
/// files stay: a CA renewed with its own key is trusted by everything the old one was,
/// so undoing the write would not make a failing component healthier.
pub fn restart(pass: &Pass<'_>, restarts: &[Component], serials: &[String]) -> Installed {
    restart_writing(pass, restarts, serials, |_| None)
}

/// [`restart`], except that a static pod for which `manifest_of` gives bytes restarts
/// by having its manifest written with them (`abort` of a CA rotation puts back the
/// manifests of before `start`) instead of by the restart annotation.
pub fn restart_writing(
    pass: &Pass<'_>,
    restarts: &[Component],
    serials: &[String],
    manifest_of: impl Fn(&Component) -> Option<Vec<u8>>,
) -> Installed {
    let mut done = Installed::default();
    let mut failed = false;
    for c in restarts {
        let reload = reload_for_ca(c);
        let done_one = |edges: &crate::rollout::Edges<'_>| match (&reload, manifest_of(c)) {
            (Reload::StaticPod(pod), Some(bytes)) => {
                restart_static_pod_with(pass, edges, c, pod, &bytes)
            }
            _ => restart_and_verify(pass, edges, c, reload.clone(), serials),
        };
        match &pass.restarts {
            Restarts::Live(_) if failed => done.not_restarted.push(c.name()),
            Restarts::Live(edges) => match done_one(edges) {
                Ok(events) => done.events.extend(events),
                Err(e) => {
                    let e = AuthorityError::Restart {
                        component: c.name(),
                        source: Box::new(e),
                    };
                    let f = PassEvent::Failed(Failure::CaRestart {
                        component: c.name(),
                        error: e.to_string(),
                    });
                    crate::report::journal::log(&f);
                    done.events.push(f);
                    failed = true;
                }
            },
            Restarts::NotLive => done.events.push(PassEvent::NotPerformed {
                component: c.name(),
                reload,
            }),
            Restarts::Operator => done.events.push(PassEvent::MustRestart {
                component: c.name(),
                reload,
            }),
        }
    }
    done
}

/// [`write`], then [`restart`]. An error means nothing was written.
pub fn install(
    pass: &Pass<'_>,
    label: &str,
    changes: &[FileChange],
    restarts: &[Component],
    serials: &[String],
) -> Result<Installed, AuthorityError> {
    let written = write(pass, label, changes)?;
    let mut done = restart(pass, restarts, serials);
    done.written = written;
    Ok(done)
}

/// Renews the CAs `names` (each a CA of this node with its key here) with their own
/// keys: every copy of every one in one crash-safe change set, then what holds them
/// restarts, one at a time and verified ([`restart`]). `on_written` hears of the
/// renewals once they are on disk, before the first restart. `node`: every copy of the
/// node's CAs, read under the lock after recovery. An error means nothing was written.
pub fn renew_with_own_keys(
    pass: &Pass<'_>,
    node: &NodeCopies,
    names: &[&str],
    days: Option<i64>,
    now: OffsetDateTime,
    on_written: &mut dyn FnMut(&[Renewal]),
) -> Result<(Vec<Renewal>, Installed), AuthorityError> {
    check_readable(node)?;
    let mut renewals = Vec::new();
    for name in names {
        let Some(ca) = node.authority(name) else {
            continue;
        };
        let key = renew::read_key(pass.root, ca)?;
        renewals.push(plan_renewal(ca, node.role, &key, now, days)?);
    }
    let changes: Vec<FileChange> = renewals.iter().flat_map(|r| r.changes.clone()).collect();
    let restarts = merge_restarts(renewals.iter().map(|r| r.restarts.as_slice()));
    let serials: Vec<String> = renewals.iter().map(|r| r.new.serial.clone()).collect();
    let label = format!(
        "renew CA {}",
        renewals
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let written = write(pass, &label, &changes)?;
    on_written(&renewals);
    let mut done = restart(pass, &restarts, &serials);
    done.written = written;
    Ok((renewals, done))
}

/// `run`'s first step: renews every due CA it may (`[authorities] renew`, key on the
/// node) with its own key, all in one change set, then restarts what holds them, before
/// any leaf is planned; due CAs it may not renew are warned about. What it did goes to
/// `report`; returns how many CAs it renewed. `node`: the node as the pass read it (under
/// the lock, after recovery).
pub fn renew_due(
    pass: &Pass<'_>,
    node: &NodeReader<'_>,
    due: &[DueAuthority],
    now: OffsetDateTime,
    report: &mut PassReport,
) -> usize {
    let kept = |d: &DueAuthority, why: CaKept| PassEvent::CaNotRenewed {
        name: d.name.clone(),
        reason: d.reason.clone(),
        not_after: d.not_after,
        why,
    };
    // A CA being rotated is the rotation's alone (rotation::guard): renewing it with its
    // own key would put a third certificate where the phase left [old, new].
    let mut free = Vec::new();
    for d in due {
        let held = match rotation::hold(node, pass.state, &d.name) {
            Ok(None) => {
                free.push(d.clone());
                continue;
            }
            Ok(Some(h)) => h.to_string(),
            // `run` fails on the broken journal itself (rotation::broken).
            Err(e) => format!("its rotation journal {} cannot be used", e.path().display()),
        };
        report.emit(kept(d, CaKept::Held(held)));
    }
    let due = free.as_slice();
    for d in due.iter().filter(|d| !d.automatic) {
        report.emit(kept(d, CaKept::NotAutomatic { has_key: d.has_key }));
    }
    let names: Vec<&str> = due
        .iter()
        .filter(|d| d.automatic)
        .map(|d| d.name.as_str())
        .collect();
    if names.is_empty() {
        return 0;
    }
    match renew_with_own_keys(pass, &node.get().anchors, &names, None, now, &mut |_| {}) {
        Ok((renewals, done)) => {
            // The restarts first (they happened first, and are in the journal already),
            // then the renewals, loud: the other nodes need the new certificates.
            report.extend(done.events);
            for r in &renewals {
                report.emit(PassEvent::CaRenewed(RenewedCa {
                    name: r.name.clone(),
                    serial: r.new.serial.clone(),
                    not_after: r.new.not_after,
                    was_not_after: r.old.not_after,
                    sha256: renew::sha256_hex(&r.new),
                }));
            }
            renewals.len()
        }
        Err(e) => {
            report.emit(PassEvent::Failed(Failure::CaRenewal {
                error: e.to_string(),
            }));
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_of_several_cas_are_merged_in_dependency_order() {
        use Component::*;
        let etcd = crate::plan::ca_restarts("etcd/ca", crate::inventory::NodeRole::ControlPlane);
        let fp =
            crate::plan::ca_restarts("front-proxy-ca", crate::inventory::NodeRole::ControlPlane);
        let ca = crate::plan::ca_restarts("ca", crate::inventory::NodeRole::ControlPlane);
        assert_eq!(
            merge_restarts([fp.as_slice(), etcd.as_slice()]),
            [Etcd, KubeApiserver, KubeControllerManager]
        );
        assert_eq!(
            merge_restarts([ca.as_slice(), etcd.as_slice(), fp.as_slice()]),
            [
                Etcd,
                KubeApiserver,
                KubeControllerManager,
                KubeScheduler,
                Kubelet
            ]
        );
        assert_eq!(reload_for_ca(&Etcd), Reload::StaticPod("etcd".into()));
        assert_eq!(
            reload_for_ca(&Kubelet),
            Reload::Unit("kubelet.service".into())
        );
    }

    #[test]
    fn names_are_checked_against_the_node() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let node = NodeCopies::read(&root, &crate::config::Settings::default());
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            select(&node, &args(&["etcd-ca", "ca", "etcd/ca"])).unwrap(),
            ["etcd/ca", "ca"]
        );
        let e = select(&node, &args(&["kube-ca"])).unwrap_err();
        assert!(
            e.is_usage()
                && e.to_string()
                    .contains("valid names: ca, front-proxy-ca, etcd/ca")
        );
    }
}
