//! The sequencer: one pass over a [`Plan`], for the timer's `run` and for the renewals
//! on request alike. Per component group: issue -> write -> roll out (restart, verify,
//! or roll the component back: [`crate::rollout`]). The plan says what to do; nothing
//! here looks a target up again.
//!
//! Without edges (a node whose components do not run here, `--no-restart`, or `renew`
//! without `--restart`: [`Restarts::without_edges`]) the pass renews and writes and
//! says which components must restart.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::ca::authorities::Authorities;
use crate::config::Settings;
use crate::inventory::{self, SelectError};
use crate::issue::{self, RenewOptions};
use crate::model::Component;
use crate::node::NodeRoot;
use crate::plan::{CaRoute, Plan, PlanOptions, PlannedTarget, Reload};
use crate::report::pass::{message_id, Outcome, PassReport, RenewedCert, TargetResult};
use crate::report::reload_words;
use crate::rollout::{owed_restarts, status, Live, PassLocks, Written};
use crate::verify::before;
use crate::verify::endpoints;
use crate::write::StateDir;

// The rollout's vocabulary, where the pass's callers have always found it.
pub use crate::inventory::read_node;
pub use crate::rollout::{load_history, trust, Edges, Overrides, Pass, PassError, Restarts};

/// The options of a pass on `root`: where nothing restarts, the restart cap defers
/// nothing.
pub fn plan_options(root: &NodeRoot) -> PlanOptions {
    PlanOptions {
        no_restarts: !root.liveness().restarts(),
    }
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
        Err(e) => return crate::rollout::refused(report, plan, &e),
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
        let live = Live::new(pass, edges, group, &comp);
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
