//! One restart at a time across the cluster: a counting semaphore per group of
//! restarts (`control-plane`: the static pods, one slot; `workers`: systemd units such
//! as the kubelet, N slots), taken before a component restarts and given back once the
//! restarted component verified (docs/coordination.md).
//!
//! [`RestartLock`] is the seam, with one real implementation per backend: [`etcd`] (a
//! lease-backed semaphore in the cluster's own etcd, over its v3 JSON gateway) and
//! [`fleetlock`] (zincati's FleetLock protocol, for airlock or poseidon/fleetlock).
//! [`take_slot`] is the policy the pass applies: wait a while for a busy slot, fail
//! closed for a healthy component, and let a component that is already broken restart
//! without the lock after a per-node delay (an expired cluster's etcd may be
//! unreachable, and restarting a dead component cannot lower availability).

pub mod etcd;
pub mod fleetlock;

use std::time::Duration;

use crate::clock::Clock;
use crate::config::coordination::{Backend, CoordinationSettings};
use crate::config::Settings;
use crate::node::NodeRoot;
use crate::plan::Reload;

/// A group of restarts and how many of them may run at once across the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockGroup {
    /// `^[a-zA-Z0-9.-]+$`, as FleetLock requires.
    pub name: String,
    pub slots: u32,
}

/// Why a slot could not be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LockError {
    /// The backend did not answer (or not as it should).
    #[error("{backend}: unreachable: {detail}")]
    Unreachable { backend: String, detail: String },
    /// Every slot is held by other nodes (`slots`: how many there are; 0 when the
    /// server keeps the count, as FleetLock servers do).
    #[error(
        "{backend}: every slot of group {group} is held (by {})",
        list(holders)
    )]
    Busy {
        backend: String,
        group: String,
        slots: u32,
        holders: Vec<String>,
    },
    /// Another node's restart failed verification: the group's rollout stays stopped
    /// until that node succeeds or an operator clears its mark.
    #[error("{backend}: group {group} is stopped: the restart of {} failed verification (docs/coordination.md says how to clear it)", list(failed))]
    Stopped {
        backend: String,
        group: String,
        failed: Vec<String>,
    },
    /// The server answered with a failure (FleetLock: any status but 200).
    #[error("{backend}: {what}: HTTP {status}{}", detail(kind, value))]
    Refused {
        backend: String,
        what: String,
        status: u16,
        kind: Option<String>,
        value: Option<String>,
    },
    /// The lock cannot be used on this node at all (no credentials, no id, bad URL).
    #[error("{0}")]
    Setup(String),
    /// A held slot's lease was lost before the slot was given back (etcd let it expire
    /// or it was revoked): another node may have restarted in the same group meanwhile.
    #[error("{backend}: {key} was lost while held: {detail}")]
    Lost {
        backend: String,
        key: String,
        detail: String,
    },
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "unknown holders".into()
    } else {
        v.join(", ")
    }
}

fn detail(kind: &Option<String>, value: &Option<String>) -> String {
    match (kind, value) {
        (Some(k), Some(v)) => format!(" {k}: {v}"),
        (Some(k), None) => format!(" {k}"),
        (None, Some(v)) => format!(": {v}"),
        (None, None) => String::new(),
    }
}

impl LockError {
    /// Worth waiting for: the slots are held by nodes that will give them back.
    pub fn is_busy(&self) -> bool {
        matches!(self, LockError::Busy { .. })
    }

    /// The backend did not answer: worth a short retry (a just-restarted etcd member,
    /// ours or a peer's, takes a few seconds to serve again).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, LockError::Unreachable { .. })
    }

    /// A bounded-cardinality label for metrics and the summary.
    pub fn kind(&self) -> &'static str {
        match self {
            LockError::Unreachable { .. } => "unreachable",
            LockError::Busy { .. } => "busy",
            LockError::Stopped { .. } => "stopped",
            LockError::Refused { .. } => "refused",
            LockError::Setup(_) => "setup",
            LockError::Lost { .. } => "lost",
        }
    }
}

/// The cross-node restart lock.
pub trait RestartLock: Send + Sync {
    /// The backend and where it is, for messages (`etcd https://10.0.0.10:2379`).
    fn backend(&self) -> String;
    /// This node's holder id.
    fn id(&self) -> &str;
    /// Gives back a slot of `group` this node still holds from an earlier run that
    /// died (zincati's steady-state report at start). Idempotent.
    fn release_stale(&self, group: &LockGroup) -> Result<(), LockError>;
    /// Takes a slot of `group` for `purpose` (the component), or says why not. Never
    /// waits for a busy slot: [`take_slot`] does.
    fn acquire(
        &self,
        group: &LockGroup,
        purpose: &str,
    ) -> Result<Box<dyn HeldSlot + '_>, LockError>;
}

/// A slot this node holds.
pub trait HeldSlot {
    /// The restarted component verified: give the slot back (and clear this node's
    /// failed mark, if it left one earlier). [`LockError::Lost`] when the slot was
    /// found no longer this node's: its lease ended while the component restarted.
    fn release(self: Box<Self>) -> Result<(), LockError>;
    /// The restarted component failed verification: keep the group stopped (a
    /// persistent mark in etcd; the FleetLock slot stays held).
    fn keep_failed(self: Box<Self>, why: &str) -> Result<(), LockError>;
}

/// The group a restart takes a slot of: static pods (the control plane) take the
/// control-plane group, systemd units (the kubelet, configured units) the workers
/// group. A kubelet restart leaves the static pods running, so on a control-plane node
/// it counts with the nodes' restarts, not the control plane's. `None`: no restart.
pub fn group_for(settings: &CoordinationSettings, reload: &Reload) -> Option<LockGroup> {
    match reload {
        Reload::StaticPod(_) => Some(LockGroup {
            name: settings.control_plane_group.clone(),
            slots: settings.control_plane_slots,
        }),
        Reload::Unit(_) => Some(LockGroup {
            name: settings.workers_group.clone(),
            slots: settings.workers_slots,
        }),
        Reload::None | Reload::Itself => None,
    }
}

/// How long a broken component waits before it restarts without the lock:
/// hash(id) mod window, in milliseconds, so that the nodes of an expired cluster do
/// not all restart in the same second and each node always waits the same.
pub fn broken_delay(id: &str, window: Duration) -> Duration {
    let ms = window.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    Duration::from_millis(u64::from_be_bytes(first) % ms)
}

/// How often a busy slot is asked for again.
pub const POLL: Duration = Duration::from_secs(2);

/// How long an unreachable backend is retried before the restart is deferred: long
/// enough for an etcd member restarted a moment ago (this pass restarts etcd before
/// the apiserver) to serve again, short enough not to hold a pass up for nothing.
pub const UNREACHABLE_GRACE: Duration = Duration::from_secs(16);

/// What [`take_slot`] decided.
pub enum Decision<'l> {
    /// Restart, then release (or keep on failure) the slot.
    Held(Box<dyn HeldSlot + 'l>),
    /// Restart without the lock: the component is already broken.
    Unlocked { why: String },
    /// Do not restart now: the pass leaves it for the next pass.
    Deferred { why: String, kind: &'static str },
}

/// What one pass remembers of the restart lock across its restarts: whether this node
/// already waited its spread delay ([`broken_delay`]). The delay places the node in the
/// spread of an expired cluster's nodes; once placed, its later broken components do
/// not queue up again (four broken components used to wait it four times).
#[derive(Debug, Default)]
pub struct PassSpread {
    paid: std::cell::Cell<bool>,
}

impl PassSpread {
    /// The delay still to wait before a broken component restarts without the lock:
    /// this node's delay the first time in the pass, nothing after.
    pub fn take(&self, lock: &dyn RestartLock, settings: &CoordinationSettings) -> Duration {
        if self.paid.replace(true) {
            return Duration::ZERO;
        }
        broken_delay(
            lock.id(),
            Duration::from_secs(settings.broken_delay_window_seconds),
        )
    }
}

/// Takes a slot of `group` before a restart of `purpose`. A busy group is asked again
/// every [`POLL`] for up to `wait_seconds` on `clock`. A healthy component whose slot
/// cannot be had is deferred (fail closed). When `broken` says the component is
/// already broken, it waits what is left of the pass's spread delay ([`PassSpread`])
/// and tries once more; failing that, it restarts without the lock.
pub fn take_slot<'l>(
    lock: &'l dyn RestartLock,
    settings: &CoordinationSettings,
    group: &LockGroup,
    purpose: &str,
    clock: &dyn Clock,
    spread: &PassSpread,
    broken: &mut dyn FnMut() -> Option<String>,
) -> Decision<'l> {
    let deadline = clock.now() + Duration::from_secs(settings.wait_seconds);
    let grace = (clock.now() + UNREACHABLE_GRACE).min(deadline);
    let err = loop {
        match lock.acquire(group, purpose) {
            Ok(slot) => return Decision::Held(slot),
            Err(e) if e.is_busy() && clock.now() + POLL <= deadline => {
                tracing::info!(component = %purpose, group = %group.name, "waiting for a restart slot: {e}");
                clock.sleep(POLL);
            }
            Err(e) if e.is_unreachable() && clock.now() + POLL <= grace => {
                tracing::info!(component = %purpose, group = %group.name, "restart lock unreachable, trying again: {e}");
                clock.sleep(POLL);
            }
            Err(e) => break e,
        }
    };
    let Some(broken_why) = broken() else {
        return Decision::Deferred {
            why: format!("no restart slot of group {}: {err}", group.name),
            kind: err.kind(),
        };
    };
    let delay = spread.take(lock, settings);
    tracing::warn!(component = %purpose, group = %group.name, "no restart slot ({err}), but {purpose} is already broken ({broken_why}): restarting without the lock in {} ms", delay.as_millis());
    if !delay.is_zero() {
        clock.sleep(delay);
    }
    match lock.acquire(group, purpose) {
        Ok(slot) => Decision::Held(slot),
        Err(e) => Decision::Unlocked {
            why: format!(
                "{broken_why}; no restart slot of group {} ({e}); restarted after {} ms",
                group.name,
                delay.as_millis()
            ),
        },
    }
}

/// What the lock left for later passes, in the state directory
/// ([`STATE_FILE`]): restarts still owed, and groups whose slot this node keeps after
/// a failed verification.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LockState {
    pub pending: Vec<PendingRestart>,
    /// Groups whose slot this node keeps (FleetLock) or has a failed mark in (etcd):
    /// the pass-start release leaves them alone.
    #[serde(default)]
    pub failed_groups: Vec<String>,
}

/// The state directory's record of the lock.
pub const STATE_FILE: &str = crate::write::RESTART_RECORD;

/// A component whose renewed files are written but which did not restart, because no
/// restart slot could be had: the next pass restarts it although its files are no
/// longer due.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingRestart {
    /// The component's configured name (`kube-apiserver`, `kubelet`, `foo.service`).
    pub component: String,
    /// (node path written, backup directory of its change set): what a rollback puts
    /// back.
    pub files: Vec<crate::write::WrittenFile>,
    /// Serials of the certificates written, for the static pod's certs-hash.
    pub serials: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub since: time::OffsetDateTime,
    pub why: String,
}

/// A lock that cannot be had on this node (an explicit backend without what it
/// needs): every restart is deferred, except the broken ones.
pub struct Unavailable {
    pub id: String,
    pub why: String,
}

impl RestartLock for Unavailable {
    fn backend(&self) -> String {
        "unavailable".into()
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn release_stale(&self, _group: &LockGroup) -> Result<(), LockError> {
        Ok(())
    }
    fn acquire(&self, _g: &LockGroup, _p: &str) -> Result<Box<dyn HeldSlot + '_>, LockError> {
        Err(LockError::Setup(self.why.clone()))
    }
}

/// This node's holder id: `[coordination] id`, else derived from /etc/machine-id (an
/// HMAC of it keyed for this application, as systemd's app-specific ids are: never the
/// machine id itself, and not zincati's, so poseidon never drains the node for it),
/// else the host name in /etc/hostname.
pub fn node_id(root: &NodeRoot, settings: &CoordinationSettings) -> Result<String, LockError> {
    if let Some(id) = &settings.id {
        return Ok(id.clone());
    }
    if let Ok((_, bytes)) = root.read_file(std::path::Path::new("/etc/machine-id")) {
        let mid = String::from_utf8_lossy(&bytes).trim().to_string();
        if mid.len() == 32 && mid.bytes().all(|b| b.is_ascii_hexdigit()) {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, mid.as_bytes());
            let tag = aws_lc_rs::hmac::sign(&key, APP_ID);
            let hex: String = tag.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            return Ok(hex);
        }
    }
    if let Ok((_, bytes)) = root.read_file(std::path::Path::new("/etc/hostname")) {
        let h = String::from_utf8_lossy(&bytes).trim().to_string();
        if !h.is_empty() {
            return Ok(h);
        }
    }
    Err(LockError::Setup(
        "no lock holder id: /etc/machine-id and /etc/hostname are missing or empty; set [coordination] id".into(),
    ))
}

/// The application key of the machine-id derived id (a random UUID of ours).
const APP_ID: &[u8] = b"3f0e6a4c-9b1d-4c8e-a7f2-cert-rotator";

/// The restart lock the configuration asks for on this node, or `None` for no lock
/// (`backend = "none"`, or `auto` on a node without etcd client credentials). An
/// explicit backend that cannot be used gives [`Unavailable`]: restarts fail closed.
pub fn connect(root: &NodeRoot, settings: &Settings) -> Option<Box<dyn RestartLock>> {
    let c = &settings.coordination;
    if c.backend == Backend::None {
        return None;
    }
    let id = match node_id(root, c) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!("coordination: {e}");
            return Some(Box::new(Unavailable {
                id: String::new(),
                why: e.to_string(),
            }));
        }
    };
    let made = match c.backend {
        Backend::None => return None,
        Backend::Fleetlock => fleetlock::FleetLock::new(root, c, &id).map(boxed),
        Backend::Etcd | Backend::Auto => match etcd::EtcdLock::from_node(root, settings, &id) {
            Err(etcd::SetupError::NoCredentials(why)) if c.backend == Backend::Auto => {
                tracing::debug!("coordination: no etcd client credentials ({why}): restarts are not coordinated");
                return None;
            }
            other => other.map(boxed).map_err(|e| e.to_string()),
        },
    };
    Some(made.unwrap_or_else(|why| {
        tracing::error!("coordination: {why}: restarts of healthy components are deferred");
        Box::new(Unavailable { id, why })
    }))
}

fn boxed<L: RestartLock + 'static>(l: L) -> Box<dyn RestartLock> {
    Box::new(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broken_delay_is_per_node_within_the_window_and_stable() {
        let w = Duration::from_secs(60);
        let a = broken_delay("node-a", w);
        assert_eq!(a, broken_delay("node-a", w));
        assert!(a < w);
        let spread: std::collections::BTreeSet<u128> = (0..20)
            .map(|i| broken_delay(&format!("node-{i}"), w).as_millis() / 1000)
            .collect();
        assert!(spread.len() > 5, "{spread:?}");
        assert_eq!(broken_delay("x", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn ids_come_from_the_setting_the_machine_id_or_the_host_name() {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path());
        let mut s = CoordinationSettings::default();
        assert!(matches!(node_id(&root, &s), Err(LockError::Setup(_))));
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/hostname"), "cp-2\n").unwrap();
        assert_eq!(node_id(&root, &s).unwrap(), "cp-2");
        let mid = "4c1d0b7e2d8a4e0f9a3b5c7d1e2f3a01";
        std::fs::write(d.path().join("etc/machine-id"), format!("{mid}\n")).unwrap();
        let id = node_id(&root, &s).unwrap();
        assert_eq!(id.len(), 32);
        assert!(!id.contains(mid) && id != mid);
        s.id = Some("cp-x".into());
        assert_eq!(node_id(&root, &s).unwrap(), "cp-x");
    }

    #[test]
    fn the_backend_follows_the_configuration_and_the_nodes_credentials() {
        let (_cp, cp) = crate::fixture::temp_control_plane();
        let w = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        crate::fixture::build(w.path(), &crate::fixture::NodeSpec::worker(now)).unwrap();
        let worker = NodeRoot::new(w.path());
        let mut s = Settings::default();
        s.coordination.id = Some("n1".into());
        let backend = |root: &NodeRoot, s: &Settings| connect(root, s).map(|l| l.backend());
        assert_eq!(
            backend(&cp, &s).as_deref(),
            Some("etcd https://127.0.0.1:2379")
        );
        assert_eq!(backend(&worker, &s), None, "auto on a worker: no lock");
        s.coordination.backend = Backend::Etcd;
        let l = connect(&worker, &s).unwrap();
        assert_eq!(l.backend(), "unavailable");
        let e = l
            .acquire(
                &LockGroup {
                    name: "workers".into(),
                    slots: 1,
                },
                "kubelet",
            )
            .err()
            .unwrap();
        assert!(e.to_string().contains("no etcd client credentials"), "{e}");
        s.coordination.backend = Backend::None;
        assert_eq!(backend(&cp, &s), None);
        s.coordination.backend = Backend::Fleetlock;
        s.coordination.fleetlock = Some(crate::config::coordination::FleetLockSettings {
            url: "http://127.0.0.1:9/".into(),
            ca_file: None,
        });
        assert_eq!(
            backend(&worker, &s).as_deref(),
            Some("fleetlock http://127.0.0.1:9")
        );
    }

    #[test]
    fn static_pods_take_the_control_plane_group_units_the_workers_group() {
        let s = CoordinationSettings::default();
        assert_eq!(
            group_for(&s, &Reload::StaticPod("kube-apiserver".into())),
            Some(LockGroup {
                name: "control-plane".into(),
                slots: 1
            })
        );
        assert_eq!(
            group_for(&s, &Reload::Unit("kubelet.service".into())).map(|g| g.name),
            Some("workers".into())
        );
        assert_eq!(group_for(&s, &Reload::Itself), None);
        assert_eq!(group_for(&s, &Reload::None), None);
    }
}
