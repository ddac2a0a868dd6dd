//! The sequencer: one pass over a [`Plan`], for the timer's `run` and for the renewals
//! on request alike. Per component group: issue -> write -> restart -> verify, or roll
//! the component back. The plan says what to do; nothing here looks a target up again.
//!
//! Restarts, probes and the clock go through the [`Edges`]. Without them (a node whose
//! components do not run here, `--no-restart`, or `renew` without `--restart`:
//! [`Restarts::without_edges`]) the pass renews and writes and says which components
//! must restart.

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};

use crate::ca::authorities::{Authorities, LoadError};
use crate::clock::Clock;
use crate::config::Settings;
use crate::coordination::RestartLock;
use crate::inventory::{self, SelectError};
use crate::issue::{self, IssueError, RenewOptions};
use crate::model::{Component, FileChange};
use crate::node::NodeRoot;
use crate::plan::{CaRoute, DueReason, Group, History, Plan, PlannedTarget, Reload, RestartRecord};
use crate::report::pass::{message_id, Outcome, PassReport, RenewedCert, TargetResult};
use crate::report::reload_words;
use crate::restart::{
    certs_hash, control_plane_wait, gap_exemption, static_pod_change, RestartError, ServiceManager,
};
use crate::verify::before::{self, BeforeRestart};
use crate::verify::{endpoints, wait_until_served_by, Prober, RestartRequested, VerifyError};
use crate::write::{Applied, StateDir, WriteError};
use lock::{owed_restarts, PassLocks};
pub use restarts::plan_options;

mod lock;
mod probe;
pub mod trust;
mod restarts;

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
    NoRestartSlot(String),
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
    Verify(VerifyError)
);

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
    pub state: &'a StateDir,
    pub overrides: Overrides,
    pub restarts: Restarts<'a>,
}

/// The timer's plan: a fresh inventory of the node, the window rule, the history.
pub fn plan_run(
    root: &NodeRoot,
    settings: &Settings,
    state: &StateDir,
    now: OffsetDateTime,
) -> Plan {
    plan_inventory(settings, &read_node(root, settings), state, now)
}

/// The timer's plan for a pass that can do what `opts` says (where nothing restarts,
/// [`plan_options`], the restart cap defers nothing).
pub fn plan_run_with(
    root: &NodeRoot,
    settings: &Settings,
    state: &StateDir,
    now: OffsetDateTime,
    opts: &crate::plan::PlanOptions,
) -> Plan {
    crate::plan::make_plan_with(
        settings,
        &read_node(root, settings),
        &load_history(state),
        now,
        opts,
    )
}

/// The components of the plan's deferred groups that fail their probe: down or
/// broken, so the restart cap does not hold them back ([`crate::plan::lift_cap_for_broken`]).
pub fn broken_deferred(
    edges: &Edges<'_>,
    root: &NodeRoot,
    settings: &Settings,
    plan: &Plan,
) -> Vec<(Component, String)> {
    let mut out: Vec<(Component, String)> = Vec::new();
    for d in &plan.deferred {
        let Some(c) = &d.group.component else {
            continue;
        };
        if out.iter().any(|(x, _)| x == c) {
            continue;
        }
        let eps = endpoints(root, &settings.kubeadm, c);
        if let Some(why) = before::is_down(edges.prober, root, &eps) {
            tracing::info!(component = %c.name(), "{} is down ({why}): its renewals are not held back by the restart cap", c.name());
            out.push((c.clone(), why));
        }
    }
    out
}

/// What the node holds, read once.
pub fn read_node(root: &NodeRoot, settings: &Settings) -> inventory::Inventory {
    inventory::read(&inventory::layout(settings, root), root)
}

/// The timer's plan from an inventory already read.
pub fn plan_inventory(
    settings: &Settings,
    inv: &inventory::Inventory,
    state: &StateDir,
    now: OffsetDateTime,
) -> Plan {
    crate::plan::make_plan(settings, inv, &load_history(state), now)
}

/// [`plan_inventory`] for a pass that can do what `opts` says.
pub fn plan_inventory_with(
    settings: &Settings,
    inv: &inventory::Inventory,
    state: &StateDir,
    now: OffsetDateTime,
    opts: &crate::plan::PlanOptions,
) -> Plan {
    crate::plan::make_plan_with(settings, inv, &load_history(state), now, opts)
}

/// What to renew on request.
pub enum Selection {
    /// Every target of the node (renew-all).
    All,
    /// Names (`status`'s or kubeadm's) or node paths (renew, cert-renew).
    Named(Vec<PathBuf>),
}

/// The plan of a renewal on request: the selected targets, read once, due or not.
pub fn plan_request(
    root: &NodeRoot,
    settings: &Settings,
    selection: &Selection,
    ca: Option<&crate::plan::route::CaOverride>,
    now: OffsetDateTime,
) -> Result<Plan, SelectError> {
    let layout = select(root, settings, selection)?;
    Ok(plan_selected(root, settings, &layout, ca, now))
}

/// The node's layout with only the selected targets: the command line checked against
/// the node before anything is locked or written.
pub fn select(
    root: &NodeRoot,
    settings: &Settings,
    selection: &Selection,
) -> Result<inventory::Layout, SelectError> {
    let mut layout = inventory::layout(settings, root);
    if let Selection::Named(args) = selection {
        layout.targets = inventory::select(&layout, root, args)?;
    }
    Ok(layout)
}

/// The forced plan of a selected layout: its targets read once, due or not.
pub fn plan_selected(
    root: &NodeRoot,
    settings: &Settings,
    layout: &inventory::Layout,
    ca: Option<&crate::plan::route::CaOverride>,
    now: OffsetDateTime,
) -> Plan {
    let inv = inventory::read(layout, root);
    crate::plan::forced(settings, &inv, ca, now)
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

fn status(msg: &str) {
    // systemctl status cert-rotator shows where the pass is; a no-op outside systemd.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(msg)]);
}

/// What a group's renewals wrote, for the restart and a rollback.
struct Written {
    /// (node path, backup dir of its change set)
    files: Vec<(PathBuf, PathBuf)>,
    serials: Vec<String>,
}

/// Runs `plan`. The caller holds the state lock and has recovered any unfinished
/// write. `on_result` hears of each target as it completes (the manual commands print
/// a line each, so an interrupted run shows what was done).
pub fn execute(
    pass: &Pass<'_>,
    plan: &Plan,
    on_result: &mut dyn FnMut(&TargetResult),
) -> PassReport {
    let mut report = PassReport::default();
    let mut history = load_history(pass.state);
    let mut record = |report: &mut PassReport, r: TargetResult| {
        on_result(&r);
        report.results.push(r);
    };
    for b in &plan.absent {
        record(
            &mut report,
            blocked_result(&b.name, &b.path, Outcome::Skipped(b.why.clone())),
        );
    }
    for b in &plan.not_renewable {
        report
            .not_renewable
            .push(format!("{} {}: {}", b.name, b.path, b.why));
        record(
            &mut report,
            blocked_result(&b.name, &b.path, Outcome::Skipped(b.why.clone())),
        );
    }
    for b in &plan.unreadable {
        report
            .failed
            .push(format!("{} {}: {}", b.name, b.path, b.why));
        tracing::error!(cert_name = %b.name, cert_path = %b.path, action = "read", message_id = message_id::FAILED, "unreadable: {}", b.why);
        record(
            &mut report,
            blocked_result(&b.name, &b.path, Outcome::Failed(b.why.clone())),
        );
    }
    for d in &plan.deferred {
        for t in &d.group.targets {
            report.deferred.push(format!("{} ({})", t.name, d.why));
            tracing::info!(cert_name = %t.name, cert_path = %t.path, action = "defer", message_id = message_id::DEFERRED, "deferred: {}", d.why);
        }
    }
    let mut cas = Authorities::new(pass.root, pass.settings, &plan.authorities, plan.now);
    let mut locks = match PassLocks::open(pass) {
        Ok(l) => l,
        Err(e) => return lock::refused(report, plan, &e),
    };
    let mut stop: Option<String> = owed_restarts(pass, plan, &mut locks, &mut history, &mut report);
    for (i, group) in plan.groups.iter().enumerate() {
        let comp = group.component_name();
        if let Some(why) = &stop {
            for t in &group.targets {
                report
                    .deferred
                    .push(format!("{} (pass stopped: {why})", t.name));
            }
            continue;
        }
        let names: Vec<&str> = group.targets.iter().map(|t| t.name.as_str()).collect();
        let total = plan.groups.len();
        status(&format!(
            "renewing {} ({}/{total})",
            names.join(", "),
            i + 1
        ));
        let mut written = Written::none();
        let mut any_failed = false;
        for t in &group.targets {
            let outcome = match renew(pass, plan.now, &mut cas, t, &comp, &mut report) {
                Ok((applied_files, backup_dir, serial, not_after)) => {
                    written
                        .files
                        .extend(applied_files.into_iter().map(|f| (f, backup_dir.clone())));
                    written.serials.push(serial.clone());
                    Outcome::Renewed { serial, not_after }
                }
                Err(e) => {
                    let why = e.to_string();
                    any_failed = true;
                    tracing::error!(cert_name = %t.name, cert_path = %t.path, component = %comp, action = "renew", message_id = message_id::FAILED, "renewal failed: {why}");
                    report.failed.push(format!("{}: {why}", t.name));
                    Outcome::Failed(why)
                }
            };
            record(
                &mut report,
                TargetResult {
                    name: t.name.clone(),
                    path: t.target.path.clone(),
                    outcome,
                },
            );
        }
        if matches!(pass.restarts, Restarts::Live(_)) {
            locks.absorb_pending(&comp, &mut written);
        }
        if written.files.is_empty() {
            continue;
        }
        if any_failed {
            // The component still restarts for what was renewed: a half-renewed group
            // is no worse than before, and the next pass retries the rest.
            tracing::warn!(component = %comp, "some renewals of this component failed; restarting for the others");
        }
        let edges = match &pass.restarts {
            Restarts::Live(edges) => edges,
            Restarts::NotLive => {
                if group.reload != Reload::None {
                    report.not_performed.push(format!(
                        "{comp}: {}, then verify (--root is not the live node)",
                        reload_words(&group.reload)
                    ));
                }
                continue;
            }
            Restarts::Operator => {
                if group.reload.is_restart() {
                    report
                        .must_restart
                        .push(format!("{comp} ({})", reload_words(&group.reload)));
                }
                continue;
            }
        };
        let live = Live {
            pass,
            edges,
            group,
            comp: &comp,
            manifest: None,
            reload_grace_spent: Default::default(),
            restart_requested: Default::default(),
        };
        if let Some(why) = live.coordinated_restart(&written, &mut history, &mut report, &mut locks)
        {
            stop = Some(why);
        }
    }
    locks.save(pass.state);
    status(if report.ok() {
        "pass finished"
    } else {
        "pass finished with failures"
    });
    report
}

fn blocked_result(name: &str, path: &str, outcome: Outcome) -> TargetResult {
    TargetResult {
        name: name.to_string(),
        path: PathBuf::from(path),
        outcome,
    }
}

/// Issues and writes one planned target: (files written, their backup dir, serial,
/// not_after).
fn renew(
    pass: &Pass<'_>,
    now: OffsetDateTime,
    cas: &mut Authorities<'_>,
    t: &PlannedTarget,
    comp: &str,
    report: &mut PassReport,
) -> Result<(Vec<PathBuf>, PathBuf, String, OffsetDateTime), PassError> {
    let mut opts = RenewOptions {
        days: pass.overrides.days,
        reuse_key: pass.overrides.reuse_key,
        now,
        switch_issuer: t.route.switches_issuer(&t.reading.signer),
    };
    if let (CaRoute::Remote { .. }, Some(remote), None) =
        (&t.route, &pass.settings.ca.remote, opts.days)
    {
        // cfssl's profile sets the lifetime: expect what the target's profile gives.
        opts.days = remote.days_for(&t.name);
    }
    let ca = cas.signer(&t.route)?;
    let prepared = issue::prepare(&t.target, &t.reading, ca, &opts)?;
    let applied = pass
        .state
        .apply(&format!("renew {}", t.name), &prepared.changes)?;
    for w in prepared.warnings {
        // A CA near its end caps every leaf it signs: the operator must hear it.
        tracing::warn!(cert_name = %t.name, component = %comp, action = "renew", "{w}");
        report.warnings.push(w);
    }
    let serial = prepared.new_cert.serial.clone();
    let not_after = prepared.new_cert.not_after;
    tracing::info!(cert_name = %t.name, cert_path = %t.path, serial = %serial, not_after = %crate::timefmt::rfc3339(not_after), component = %comp, action = "renew", message_id = message_id::RENEWED, "renewed {}", t.name);
    report.renewed.push(RenewedCert {
        name: t.name.clone(),
        path: t.path.clone(),
        serial: serial.clone(),
        not_after,
    });
    Ok((
        applied.entries.iter().map(|e| e.path.clone()).collect(),
        applied.backup_dir,
        serial,
        not_after,
    ))
}

/// Restarts a component for something other than its own certificates (a CA it holds
/// in memory, whose copies changed) exactly as a pass restarts a renewed group: the
/// same pacing of control-plane restarts, history and manifest annotation (`serials`
/// name what changed), then waits until it serves again. Returns the restart and
/// verification lines.
pub fn restart_and_verify(
    pass: &Pass<'_>,
    edges: &Edges<'_>,
    component: &Component,
    reload: Reload,
    serials: &[String],
) -> Result<(Vec<String>, Vec<String>), PassError> {
    let mut history = load_history(pass.state);
    let group = Group {
        component: Some(component.clone()),
        reload,
        targets: Vec::new(),
        urgent: false,
    };
    let comp = component.name();
    let live = Live {
        pass,
        edges,
        group: &group,
        comp: &comp,
        manifest: None,
        reload_grace_spent: Default::default(),
        restart_requested: Default::default(),
    };
    // No renewed target: the probe first never avoids this restart (the served leaf
    // did not change; the CA the component holds in memory did). It takes a slot of
    // the cross-node restart lock as a renewal's restart does.
    let done = live.under_restart_slot(|| live.reload_and_verify(serials, &mut history))?;
    Ok((done.restarted.into_iter().collect(), done.verified))
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
) -> Result<(Vec<String>, Vec<String>), PassError> {
    let mut history = load_history(pass.state);
    let group = Group {
        component: Some(component.clone()),
        reload: Reload::StaticPod(pod.to_string()),
        targets: Vec::new(),
        urgent: false,
    };
    let comp = component.name();
    let live = Live {
        pass,
        edges,
        group: &group,
        comp: &comp,
        manifest: Some(manifest),
        reload_grace_spent: Default::default(),
        restart_requested: Default::default(),
    };
    let done = live.under_restart_slot(|| live.reload_and_verify(&[], &mut history))?;
    Ok((done.restarted.into_iter().collect(), done.verified))
}

/// One group on the live node.
struct Live<'p, 'a> {
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

/// What reloading one group did.
struct Reloaded {
    restarted: Option<String>,
    /// The restart not made: the component already served its new certificates.
    avoided: Option<String>,
    verified: Vec<String>,
}

impl<'a> Live<'_, 'a> {
    /// Restarts and verifies the group, or rolls it back: `Err(why)` when the
    /// component failed verification (the pass must stop).
    fn restart_and_verify_or_roll_back(
        &self,
        written: &Written,
        history: &mut History,
        report: &mut PassReport,
    ) -> Result<(), String> {
        let comp = self.comp;
        match self.reload_and_verify(&written.serials, history) {
            Ok(done) => {
                report.restarted.extend(done.restarted);
                report.restarts_avoided.extend(done.avoided);
                report.verified.extend(done.verified);
                Ok(())
            }
            Err(e) => {
                tracing::error!(component = %comp, action = "verify", message_id = message_id::FAILED, "{comp} does not serve its new certificates: {e}; rolling back");
                report.failed.push(format!("{comp}: {e}"));
                match self.rollback(written, history) {
                    Ok(()) => {
                        tracing::error!(component = %comp, action = "rollback", message_id = message_id::ROLLED_BACK, "{comp}: restored the previous certificates, which it serves again");
                        report
                            .rolled_back
                            .push(format!("{comp}: previous certificates restored and served"));
                    }
                    Err(e2) => {
                        tracing::error!(component = %comp, action = "rollback", message_id = message_id::FAILED, "{comp}: ROLLBACK FAILED: {e2}");
                        report.failed.push(format!("{comp}: rollback failed: {e2}"));
                    }
                }
                Err(e.to_string())
            }
        }
    }

    /// Probes first, restarts what must reload (unless it serves the new certificates
    /// already) and waits until it serves what is on disk.
    fn reload_and_verify(
        &self,
        serials: &[String],
        history: &mut History,
    ) -> Result<Reloaded, PassError> {
        let mut done = Reloaded {
            restarted: None,
            avoided: None,
            verified: Vec::new(),
        };
        match self.probe_first() {
            BeforeRestart::AlreadyServing => done.avoided = Some(self.restart_avoided()),
            BeforeRestart::Down(why) => {
                let exempt = gap_exemption(Some(&why), &[]);
                done.restarted = self.restart(serials, history, exempt)?;
            }
            BeforeRestart::Restart => {
                let exempt = gap_exemption(None, &self.expired_before_the_pass());
                done.restarted = self.restart(serials, history, exempt)?;
            }
        }
        if let Some(c) = &self.group.component {
            done.verified = self.verify(c)?;
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
    ) -> Result<Option<String>, PassError> {
        let settings = self.pass.settings;
        let clock = self.edges.clock;
        let comp = self.comp;
        let timeout = StdDuration::from_secs(settings.run.restart_timeout_seconds);
        let line = match &self.group.reload {
            Reload::None | Reload::Itself => return Ok(None),
            Reload::Unit(unit) => {
                status(&format!("restarting {unit}"));
                self.mark_restart_requested();
                let r = self.edges.services.restart_unit(unit, timeout)?;
                format!("{unit}: new run {}", r.invocation_id)
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
                        // Never a temp file in the manifests directory: the kubelet
                        // would run it as a pod.
                        let change = FileChange {
                            stage_outside: true,
                            ..FileChange::file(&manifest, bytes.to_vec(), 0o600, false)
                        };
                        self.pass
                            .state
                            .apply(&format!("restart {pod}"), &[change])?;
                        format!("{pod}: manifest {} written back", manifest.display())
                    }
                    None => {
                        let value =
                            format!("{}-{}", certs_hash(serials), clock.now().unix_timestamp());
                        let change = static_pod_change(self.pass.root, &manifest, &value)?;
                        self.pass
                            .state
                            .apply(&format!("restart {pod}"), &[change])?;
                        format!(
                            "{pod}: manifest {} annotated cert-rotator.k8s.io/certs-hash={value}",
                            manifest.display()
                        )
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
        tracing::info!(component = %comp, action = "restart", message_id = message_id::RESTARTED, "restarted {comp}: {line}");
        Ok(Some(line))
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
    fn verify(&self, component: &Component) -> Result<Vec<String>, PassError> {
        let settings = self.pass.settings;
        if !settings.run.verify {
            return Ok(vec![format!(
                "{}: verification switched off",
                component.name()
            )]);
        }
        let root = self.pass.root;
        let eps = endpoints(root, &settings.kubeadm, component);
        status(&format!(
            "waiting for {} to serve its new certificates",
            component.name()
        ));
        let lines = wait_until_served_by(
            self.edges.prober,
            self.edges.clock,
            root,
            component,
            &eps,
            StdDuration::from_secs(settings.run.verify_timeout_seconds),
            self.restart_requested.take().as_ref(),
        )?;
        for line in &lines {
            tracing::info!(component = %component.name(), action = "verify", message_id = message_id::VERIFIED, "{line}");
        }
        Ok(lines)
    }

    /// Puts the group's files back from this pass's backup, restarts the component
    /// again and checks it serves the old certificates.
    fn rollback(&self, written: &Written, history: &mut History) -> Result<(), PassError> {
        // Each file from the backup of the change set that wrote it; a file the renewal
        // created (the kubelet's new client file) has none and stays, the restored
        // symlink no longer points at it.
        let applied: Vec<Applied> = written
            .files
            .iter()
            .map(|(file, backup)| Applied::recorded(backup, std::slice::from_ref(file)))
            .collect();
        self.pass
            .state
            .restore(&format!("roll back {}", self.comp), &applied)?;
        self.restart(&[], history, None)?;
        if let Some(c) = &self.group.component {
            self.verify(c)?;
        }
        Ok(())
    }
}
