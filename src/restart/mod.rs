//! Restarting what must reload a renewed certificate: the edge of the `run` pass that
//! touches the running system.
//!
//! Two ways a component reloads:
//!
//! - **systemd units** (the kubelet, configured units): [`ServiceManager::restart_unit`],
//!   whose one real implementation [`SystemdManager`] (in [`systemd`]) talks to systemd
//!   over the system D-Bus, waits for the restart job's result, then for the unit to be
//!   active again, and returns the unit's new InvocationID as proof of a new run;
//! - **static pods** (kube-apiserver, etcd, controller-manager, scheduler): the kubelet
//!   recreates a static pod only when its manifest's *content* changes, so
//!   [`static_pod_change`] (in [`static_pod`]) computes the manifest with a
//!   `cert-rotator.k8s.io/certs-hash` annotation set, as a [`FileChange`] for the
//!   crash-safe writer.
//!
//! Restarting the control plane is paced: [`control_plane_wait`] says how long to wait
//! before the next static pod restart. Test doubles of the seam live in the tests.
//!
//! [`FileChange`]: crate::model::FileChange

pub mod static_pod;
pub mod systemd;

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

pub use static_pod::{current_certs_hash, static_pod_change, AnnotationEditError};
pub use systemd::{SystemdManager, UnitState};

use crate::node::manifest::ManifestError;

/// The annotation whose value changes when a static pod's certificates changed.
pub const CERTS_HASH_ANNOTATION: &str = "cert-rotator.k8s.io/certs-hash";

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// [`SystemdManager::connect`] could not reach systemd (no unit concerned yet).
    #[error("cannot reach systemd on the system D-Bus: {source}")]
    Connect {
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("{unit}: cannot reach systemd on the system D-Bus: {source}")]
    Unreachable {
        unit: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("{unit}: no such unit")]
    NoSuchUnit { unit: String },
    #[error("{unit}: systemd call {call} failed: {source}")]
    Bus {
        unit: String,
        call: &'static str,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("{unit}: restart job ended with result \"{result}\" (unit is now {state})")]
    JobFailed {
        unit: String,
        result: String,
        /// `ActiveState/SubState` after the job, for the operator.
        state: String,
    },
    #[error("{unit}: restart job {job} did not finish within {timeout:?} (systemd may still be running it)")]
    Timeout {
        unit: String,
        job: String,
        timeout: Duration,
    },
    #[error("{unit}: lost the D-Bus connection while waiting for restart job {job}")]
    Disconnected { unit: String, job: String },
    #[error("{unit}: restart job done but the unit is {state}, not active, after {waited:?}")]
    NotActive {
        unit: String,
        state: String,
        waited: Duration,
    },
    #[error("{unit}: restart job done but the InvocationID is still {invocation_id}: no new run")]
    SameInvocation { unit: String, invocation_id: String },
    #[error("{}: cannot read the static pod manifest: {}", source.path.display(), source.problem.to_string())]
    ReadManifest {
        #[source]
        source: crate::node::NodeError,
    },
    #[error("{path}: unreadable static pod manifest: {source}")]
    UnreadableManifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("{path}: cannot set the {CERTS_HASH_ANNOTATION} annotation: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: AnnotationEditError,
    },
}

/// A finished, successful restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitRestart {
    pub unit: String,
    /// The job's object path, as systemd named it.
    pub job: String,
    /// Always `done` here: any other result is a [`RestartError::JobFailed`].
    pub result: String,
    pub previous_invocation_id: Option<String>,
    /// The new run's InvocationID (lower-case hex): differs from the previous one.
    pub invocation_id: String,
}

/// The service manager seam: restart a unit and wait until it runs again.
pub trait ServiceManager {
    /// Restarts `unit` (`kubelet.service`) and waits, at most `timeout` in all, for the
    /// restart job to succeed and the unit to be active in a new run.
    fn restart_unit(&self, unit: &str, timeout: Duration) -> Result<UnitRestart, RestartError>;
}

/// A short stable digest of the serials a static pod serves and uses: the first 16 hex
/// digits of the SHA-256 of the sorted, de-duplicated serials. Order-independent, so
/// the same set of certificates always gives the same annotation.
pub fn certs_hash(serials: &[String]) -> String {
    let mut s: Vec<&str> = serials.iter().map(|s| s.as_str()).collect();
    s.sort_unstable();
    s.dedup();
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.join("\n").as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// How long to wait, at `now`, before restarting a control-plane component, given the
/// last control-plane restart (of this pass or an earlier one) and the configured
/// minimum `gap` between two: `None` when it may restart at once. One component at a
/// time, with a gap, keeps a control plane with stacked etcd serving while it rolls.
pub fn control_plane_wait(
    last_restart: Option<OffsetDateTime>,
    gap: time::Duration,
    now: OffsetDateTime,
) -> Option<Duration> {
    // A clock stepped back by up to a gap waits the gap from the recorded restart; a
    // restart recorded further in the future (a hand-edited history.json, a clock set
    // years ahead) holds the pass up for twice the gap at most, not until then.
    let wait: Duration = (last_restart? + gap - now).min(gap * 2).try_into().ok()?;
    (!wait.is_zero()).then_some(wait)
}

/// Why a control-plane restart need not wait for the gap since the last one: the gap
/// keeps a healthy control plane serving while it rolls, and a component that is down
/// (`down`: its probe's error) or whose certificates had expired before the pass
/// (`expired`: their names) serves nobody meanwhile. `None`: the gap applies.
pub fn gap_exemption(down: Option<&str>, expired: &[&str]) -> Option<String> {
    if let Some(why) = down {
        return Some(format!("it is down ({why})"));
    }
    if !expired.is_empty() {
        return Some(format!(
            "its certificates had expired ({})",
            expired.join(", ")
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn certs_hash_is_short_stable_and_order_free() {
        let a = certs_hash(&["1f".into(), "a0".into()]);
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(a, certs_hash(&["a0".into(), "1f".into(), "a0".into()]));
        assert_ne!(a, certs_hash(&["1f".into()]));
        // SHA-256 of "1f\na0" (sha256sum agrees): annotations already on nodes
        // keep their meaning.
        assert_eq!(a, "2e3eed015dd8ca7f");
    }

    #[test]
    fn only_a_healthy_component_waits_for_the_gap() {
        assert_eq!(gap_exemption(None, &[]), None);
        assert_eq!(
            gap_exemption(Some("cannot connect to 127.0.0.1:6443"), &[]).unwrap(),
            "it is down (cannot connect to 127.0.0.1:6443)"
        );
        assert_eq!(
            gap_exemption(None, &["apiserver", "apiserver-etcd-client"]).unwrap(),
            "its certificates had expired (apiserver, apiserver-etcd-client)"
        );
    }

    #[test]
    fn control_plane_restarts_keep_their_gap() {
        let gap = time::Duration::seconds(30);
        let last = datetime!(2026-01-01 10:00:00 UTC);
        assert_eq!(control_plane_wait(None, gap, last), None);
        assert_eq!(
            control_plane_wait(Some(last), gap, last + time::Duration::seconds(10)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            control_plane_wait(Some(last), gap, last + time::Duration::milliseconds(29_500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(control_plane_wait(Some(last), gap, last + gap), None);
        assert_eq!(
            control_plane_wait(Some(last), gap, last + time::Duration::hours(1)),
            None
        );
        assert_eq!(
            control_plane_wait(Some(last), time::Duration::ZERO, last),
            None
        );
        // A clock that stepped back (last restart in the future) waits the gap from it.
        assert_eq!(
            control_plane_wait(Some(last), gap, last - time::Duration::seconds(5)),
            Some(Duration::from_secs(35))
        );
        // A restart recorded years ahead: twice the gap at most.
        assert_eq!(
            control_plane_wait(Some(last), gap, last - time::Duration::days(3650)),
            Some(Duration::from_secs(60))
        );
    }
}
