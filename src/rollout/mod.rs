//! The rollout of a renewed component: probe first, pace control-plane restarts,
//! restart, verify that it serves what is on disk, or roll back; a slot of the
//! cross-node restart lock around it; the restart history. Below both the pass (which
//! rolls out each renewed group) and the CA lifecycle (which rolls out what holds a CA
//! in memory), so neither borrows the other's internals.
//!
//! Restarts, probes and the clock go through the [`Edges`]. Without them (a node whose
//! components do not run here, `--no-restart`, or `renew` without `--restart`:
//! [`Restarts::without_edges`]) nothing restarts and the caller says what must.

use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};

use crate::ca::authorities::LoadError;
use crate::clock::Clock;
use crate::config::Settings;
use crate::coordination::RestartLock;
use crate::inventory::NodeReader;
use crate::issue::IssueError;
use crate::model::{Component, FileChange};
use crate::node::NodeRoot;
use crate::plan::{DueReason, Group, History, Reload, RestartRecord};
use crate::report::event::{Failure, PassEvent, Restart, Verification};
use crate::report::journal;
use crate::report::pass::PassReport;
use crate::restart::{
    certs_hash, control_plane_wait, gap_exemption, static_pod_change, RestartError, ServiceManager,
};
use crate::verify::before::BeforeRestart;
use crate::verify::{wait_until_served_by, Prober, RestartRequested, VerifyError};
use crate::write::{StateDir, WriteError};
pub use slot::NoRestartSlot;
pub(crate) use slot::{owed_restarts, refused, PassLocks};

mod probe;
mod restarts;
mod slot;
pub mod trust;

/// Why a step of the pass failed. Each step's error already names its target, file or
/// component, so this displays it as it is: the report shows these words.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The CA of the target's route could not be loaded.
    #[error("{0}")]
    Ca(#[source] Box<LoadError>),
    #[error("{0}")]
    Issue(#[source] Box<IssueError>),
    /// Writing the renewed files, the manifest annotation or a rollback.
    #[error("{0}")]
    Write(#[source] Box<WriteError>),
    /// Restarting a unit, or preparing a static pod's manifest annotation.
    #[error("{0}")]
    Restart(#[source] Box<RestartError>),
    #[error("{0}")]
    Verify(#[source] Box<VerifyError>),
    /// No slot of the cross-node restart lock could be had: nothing was restarted.
    #[error("{0}")]
    NoRestartSlot(#[source] Box<NoRestartSlot>),
}

/// Boxed, so that the pass's `Result`s stay small whatever step failed.
macro_rules! pass_error_from {
    ($($variant:ident($error:ty)),*) => {
        $(impl From<$error> for PassError {
            fn from(e: $error) -> Self {
                PassError::$variant(Box::new(e))
            }
        })*
    };
}

pass_error_from!(
    Ca(LoadError),
    Issue(IssueError),
    Write(WriteError),
    Restart(RestartError),
    Verify(VerifyError),
    NoRestartSlot(NoRestartSlot)
);

impl From<crate::issue::PlannedError> for PassError {
    fn from(e: crate::issue::PlannedError) -> Self {
        match e {
            crate::issue::PlannedError::Ca(e) => e.into(),
            crate::issue::PlannedError::Issue(e) => e.into(),
        }
    }
}

/// The running node: what restarts components, what probes them, and the clock.
#[derive(Clone, Copy)]
pub struct Edges<'a> {
    pub services: &'a dyn ServiceManager,
    pub prober: &'a dyn Prober,
    pub clock: &'a dyn Clock,
    /// The cross-node restart lock; `None`: restarts are not coordinated.
    pub lock: Option<&'a dyn RestartLock>,
}

/// Whether the pass may restart what it renewed.
#[derive(Clone, Copy)]
pub enum Restarts<'a> {
    /// The node's components run here: restart and verify through these edges.
    Live(Edges<'a>),
    /// Files only (`--root DIR` without `--live`): there is nothing running to restart.
    NotLive,
    /// The operator restarts: `--no-restart`, or a renewal on request without `--restart`.
    Operator,
}

/// How a renewal on request differs from the defaults (`--days`, `--reuse-key`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    pub days: Option<i64>,
    pub reuse_key: bool,
}

/// Everything a pass works with besides the plan.
pub struct Pass<'a> {
    pub root: &'a NodeRoot,
    pub settings: &'a Settings,
    /// The command's one model of the node (over `root` and `settings`): where each
    /// component listens is read from it once, however often it is probed.
    pub node: &'a NodeReader<'a>,
    pub state: &'a StateDir,
    pub overrides: Overrides,
    pub restarts: Restarts<'a>,
}

/// Reads the history of earlier passes (missing or unreadable: empty, and said).
pub fn load_history(state: &StateDir) -> History {
    match state.read_json::<History>(HISTORY) {
        Ok(h) => h.unwrap_or_default(),
        Err(e) => {
            tracing::warn!("restart history unreadable, starting afresh: {e}");
            History::default()
        }
    }
}

/// The restarts of earlier passes, in the state directory.
const HISTORY: &str = "history.json";

fn save_history(state: &StateDir, history: &mut History, now: OffsetDateTime) {
    // A month of restarts is plenty to pace passes.
    history.restarts.retain(|r| now - r.at < Duration::days(31));
    if let Err(e) = state.write_json(HISTORY, history) {
        tracing::warn!("cannot record the restart history: {e}");
    }
}

pub(crate) fn status(msg: &str) {
    // systemctl status cert-rotator shows where the pass is; a no-op outside systemd.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(msg)]);
}

/// What a group's renewals wrote, for the restart and a rollback.
pub(crate) struct Written {
    /// (node path, backup dir of its change set's before-image: [`crate::write::Applied::files`])
    pub(crate) files: Vec<crate::write::WrittenFile>,
    pub(crate) serials: Vec<String>,
}

/// Restarts a component for something other than its own certificates (a CA it holds
/// in memory, whose copies changed) exactly as a pass restarts a renewed group: the
/// same pacing of control-plane restarts, history and manifest annotation (`serials`
/// name what changed), then waits until it serves again. Returns the restart and
/// verification events (already in the journal).
pub fn restart_and_verify(
    pass: &Pass<'_>,
    edges: &Edges<'_>,
    component: &Component,
    reload: Reload,
    serials: &[String],
) -> Result<Vec<PassEvent>, PassError> {
    restart_component(pass, edges, component, reload, None, serials)
}

/// Restarts a static pod by writing `manifest` (its whole new content, e.g. the bytes
/// it had before a CA rotation that `abort` undoes) instead of setting the restart
/// annotation, otherwise exactly as [`restart_and_verify`]: paced, under a slot of the
/// cross-node lock, recorded in the history, then verified. The kubelet recreates the
/// pod because the content changes; bytes equal to the manifest now restart nothing
/// (the write is then a no-op for the kubelet) but the pod is still verified.
pub fn restart_static_pod_with(
    pass: &Pass<'_>,
    edges: &Edges<'_>,
    component: &Component,
    pod: &str,
    manifest: &[u8],
) -> Result<Vec<PassEvent>, PassError> {
    let reload = Reload::StaticPod(pod.to_string());
    restart_component(pass, edges, component, reload, Some(manifest), &[])
}

/// A component's rollout outside a renewal: a group with no renewed target, so the
/// probe first never avoids the restart (the served leaf did not change; the CA the
/// component holds in memory did). It takes a slot of the cross-node restart lock as a
/// renewal's restart does.
fn restart_component(
    pass: &Pass<'_>,
    edges: &Edges<'_>,
    component: &Component,
    reload: Reload,
    manifest: Option<&[u8]>,
    serials: &[String],
) -> Result<Vec<PassEvent>, PassError> {
    let mut history = load_history(pass.state);
    let group = Group {
        component: Some(component.clone()),
        reload,
        targets: Vec::new(),
        urgent: false,
    };
    let comp = component.name();
    let live = Live {
        manifest,
        ..Live::new(pass, edges, &group, &comp)
    };
    live.under_restart_slot(|| live.reload_and_verify(serials, &mut history))
}

/// One group on the live node.
pub(crate) struct Live<'p, 'a> {
    pass: &'p Pass<'a>,
    edges: &'p Edges<'a>,
    group: &'p Group,
    comp: &'p str,
    /// A static pod's whole new manifest, written instead of the restart annotation.
    manifest: Option<&'p [u8]>,
    /// The moment to reload by itself was given already (the probe before a lock slot):
    /// a second probe does not wait again.
    reload_grace_spent: std::cell::Cell<bool>,
    /// When the last restart was requested: verification counts only answers from a
    /// process started after it (docs/reloads.md).
    restart_requested: std::cell::Cell<Option<RestartRequested>>,
}

/// A component failed verification after its restart: the pass stops, and defers the
/// groups after it.
pub(crate) struct Stopped {
    pub(crate) component: String,
}

impl<'p, 'a> Live<'p, 'a> {
    /// The rollout of a renewed `group` (its component named `comp`).
    pub(crate) fn new(
        pass: &'p Pass<'a>,
        edges: &'p Edges<'a>,
        group: &'p Group,
        comp: &'p str,
    ) -> Self {
        Live {
            pass,
            edges,
            group,
            comp,
            manifest: None,
            reload_grace_spent: Default::default(),
            restart_requested: Default::default(),
        }
    }

    /// Restarts and verifies the group, or rolls it back: the error of the step that
    /// failed (the component failed verification: the pass must stop).
    fn restart_and_verify_or_roll_back(
        &self,
        written: &Written,
        history: &mut History,
        report: &mut PassReport,
    ) -> Result<(), PassError> {
        let component = self.comp.to_string();
        match self.reload_and_verify(&written.serials, history) {
            Ok(done) => {
                report.extend(done);
                Ok(())
            }
            Err(e) => {
                report.emit(PassEvent::Failed(Failure::Verification {
                    component: component.clone(),
                    error: e.to_string(),
                }));
                match self.rollback(written, history) {
                    Ok(()) => report.emit(PassEvent::RolledBack { component }),
                    Err(e2) => report.emit(PassEvent::Failed(Failure::Rollback {
                        component,
                        error: e2.to_string(),
                    })),
                }
                Err(e)
            }
        }
    }

    /// Probes first, restarts what must reload (unless it serves the new certificates
    /// already) and waits until it serves what is on disk. Returns what it did (the
    /// restart or the restart avoided, then the verification), each already in the
    /// journal.
    fn reload_and_verify(
        &self,
        serials: &[String],
        history: &mut History,
    ) -> Result<Vec<PassEvent>, PassError> {
        let mut done: Vec<PassEvent> = Vec::new();
        match self.probe_first() {
            BeforeRestart::AlreadyServing => done.push(self.restart_avoided()),
            BeforeRestart::Down(why) => {
                let exempt = gap_exemption(Some(&why), &[]);
                done.extend(self.restart(serials, history, exempt)?);
            }
            BeforeRestart::Restart => {
                let exempt = gap_exemption(None, &self.expired_before_the_pass());
                done.extend(self.restart(serials, history, exempt)?);
            }
        }
        if let Some(c) = &self.group.component {
            done.extend(self.verify(c)?);
        }
        Ok(done)
    }

    /// The group's certificates that had expired when the pass planned.
    fn expired_before_the_pass(&self) -> Vec<&str> {
        self.group
            .targets
            .iter()
            .filter(|t| t.reason == Some(DueReason::Expired))
            .map(|t| t.name.as_str())
            .collect()
    }

    /// Restarts the group's component. `gap_exempt`: why a control-plane restart need
    /// not wait for the gap since the last one (see [`gap_exemption`]).
    fn restart(
        &self,
        serials: &[String],
        history: &mut History,
        gap_exempt: Option<String>,
    ) -> Result<Option<PassEvent>, PassError> {
        let settings = self.pass.settings;
        let clock = self.edges.clock;
        let comp = self.comp;
        let timeout = StdDuration::from_secs(settings.run.restart_timeout_seconds);
        let how = match &self.group.reload {
            Reload::None | Reload::Itself => return Ok(None),
            Reload::Unit(unit) => {
                status(&format!("restarting {unit}"));
                self.mark_restart_requested();
                let r = self.edges.services.restart_unit(unit, timeout)?;
                Restart::Unit {
                    unit: unit.clone(),
                    invocation: r.invocation_id,
                }
            }
            Reload::StaticPod(pod) => {
                // One control-plane component at a time, a gap between them, unless
                // there is nothing healthy to protect.
                let gap = Duration::seconds(settings.run.min_restart_gap_seconds as i64);
                let wait =
                    control_plane_wait(history.last_control_plane_restart(), gap, clock.now());
                match (wait, gap_exempt) {
                    (Some(wait), None) => {
                        status(&format!(
                            "waiting {}s before restarting {pod}",
                            wait.as_secs()
                        ));
                        clock.sleep(wait);
                    }
                    (Some(wait), Some(why)) => {
                        tracing::info!(component = %comp, action = "restart", "restarting {pod} without waiting {}s for the gap: {why}", wait.as_secs());
                    }
                    (None, _) => {}
                }
                status(&format!("restarting static pod {pod}"));
                self.mark_restart_requested();
                let manifest = settings.kubeadm.manifests_dir.join(format!("{pod}.yaml"));
                match self.manifest {
                    Some(bytes) => {
                        let change = FileChange::manifest(&manifest, bytes.to_vec());
                        self.pass
                            .state
                            .apply(&format!("restart {pod}"), &[change])?;
                        Restart::ManifestWritten {
                            pod: pod.clone(),
                            manifest,
                        }
                    }
                    None => {
                        let value =
                            format!("{}-{}", certs_hash(serials), clock.now().unix_timestamp());
                        let change = static_pod_change(self.pass.root, &manifest, &value)?;
                        self.pass
                            .state
                            .apply(&format!("restart {pod}"), &[change])?;
                        Restart::Annotated {
                            pod: pod.clone(),
                            manifest,
                            hash: value,
                        }
                    }
                }
            }
        };
        let now = clock.now();
        history.restarts.push(RestartRecord {
            component: comp.to_string(),
            control_plane: self.group.reload.is_control_plane(),
            at: now,
        });
        save_history(self.pass.state, history, now);
        let restarted = PassEvent::Restarted {
            component: comp.to_string(),
            how,
        };
        journal::log(&restarted);
        Ok(Some(restarted))
    }

    fn mark_restart_requested(&self) {
        let mark = self.edges.prober.restart_mark();
        if mark.is_none() {
            tracing::warn!(component = %self.comp, "cannot read what listens on this host: the restart of {} is verified without telling the new process from the old", self.comp);
        }
        self.restart_requested.replace(mark);
    }

    /// Waits until every endpoint of the component serves the certificate now on disk
    /// (or answers healthy), within the verification timeout, answered by a process
    /// started after the restart request.
    /// Returns what it found, already in the journal.
    fn verify(&self, component: &Component) -> Result<Vec<PassEvent>, PassError> {
        let settings = self.pass.settings;
        let verified = |check| PassEvent::Verified {
            component: component.name(),
            check,
        };
        if !settings.run.verify {
            return Ok(vec![verified(Verification::SwitchedOff)]);
        }
        let eps = self.pass.node.endpoints(component);
        status(&format!(
            "waiting for {} to serve its new certificates",
            component.name()
        ));
        let lines = wait_until_served_by(
            self.edges.prober,
            self.edges.clock,
            self.pass.root,
            component,
            &eps,
            StdDuration::from_secs(settings.run.verify_timeout_seconds),
            self.restart_requested.take().as_ref(),
        )?;
        let found: Vec<PassEvent> = lines
            .into_iter()
            .map(|l| verified(Verification::Served(l)))
            .collect();
        found.iter().for_each(journal::log);
        Ok(found)
    }

    /// Puts the group's files back as its own change sets found them, restarts the
    /// component again and checks it serves the old certificates.
    fn rollback(&self, written: &Written, history: &mut History) -> Result<(), PassError> {
        // Each file from the before-image of the group's first change set that wrote
        // it, not from what the pass found: the CA renewal's edit of the same kubeconfig
        // stays. A file the renewal created (the kubelet's new client file) has none and
        // stays, the restored symlink no longer points at it.
        let applied = self.pass.state.rollback_of(&written.files)?;
        self.pass
            .state
            .restore(&format!("roll back {}", self.comp), &applied)?;
        self.restart(&[], history, None)?;
        // The files are back to what the component loaded before this pass: a process
        // that never went away (the restart not taken up) serving them is the node as
        // it was, so the rollback is verified by whatever serves what is on disk.
        self.restart_requested.take();
        if let Some(c) = &self.group.component {
            self.verify(c)?;
        }
        Ok(())
    }
}
