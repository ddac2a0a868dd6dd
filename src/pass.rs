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
use crate::issue;
use crate::model::Component;
use crate::node::NodeRoot;
use crate::plan::{Plan, PlanOptions, PlannedTarget, Reload};
use crate::report::event::{Deferral, Failure, PassEvent, RenewedCert, Warning};
use crate::report::pass::{Outcome, PassReport, TargetResult};
use crate::rollout::{owed_restarts, status, Live, PassLocks, Stopped, Written};
use crate::verify::before;
use crate::write::StateDir;

// What a caller of the library hands the pass ([`execute`] takes a `Pass`; its restart
// history and lock record are read where the pass's tests look), re-exported on purpose:
// the pass is the library's entry point, the rollout below it an implementation detail.
// The command line imports these from `rollout` itself.
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
    node: &inventory::NodeReader<'_>,
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
        let eps = node.endpoints(c);
        if let Some(why) = before::is_down(edges.prober, node.root, &eps) {
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

/// What `run` tells its caller as it goes, in this order: the loud lines about CA
/// rotations, the plan, and the plan again when due CAs were renewed first.
pub enum RunNote<'a> {
    /// A CA rotation in progress whose files drifted (said with `WARNING:`).
    Warning(&'a str),
    /// A rotation journal that cannot be used (said with `ERROR:`; the pass fails).
    Error(&'a str),
    Plan(&'a Plan),
    /// The plan made again after due CAs were renewed with their own keys.
    PlanAfterCaRenewal(&'a Plan),
}

/// `run`, the timer's pass, in its whole order: the plan from the pass's node (read
/// once, under the lock, after recovery), the state of CA rotations, then the due CAs (so that no leaf
/// is renewed against, and capped by, a dying CA), the plan again if a CA was renewed,
/// then the groups. The CA outcome comes first in the report.
pub fn run(pass: &Pass<'_>, now: OffsetDateTime, note: &mut dyn FnMut(RunNote<'_>)) -> PassReport {
    let (root, settings, state, node) = (pass.root, pass.settings, pass.state, pass.node);
    let mut report = PassReport::default();
    // A CA rotation in progress whose bundles kubeadm collapsed or whose signer flag
    // `kubeadm upgrade` reverted: loud, with the command that re-applies the phase.
    for w in crate::authority::rotation::warnings(node, state) {
        tracing::warn!(action = "ca-rotation", "{w}");
        note(RunNote::Warning(&w));
    }
    // A rotation journal that cannot be used: nobody can tell what phase the CA is in,
    // so nothing renews it and the pass fails naming the journal (docs/ca.md).
    for e in crate::authority::rotation::broken(node, state) {
        let error = e.to_string();
        report.emit(PassEvent::Failed(Failure::RotationJournal {
            error: error.clone(),
        }));
        note(RunNote::Error(&error));
    }
    // The same plan before and after a CA renewal: what this pass can do (where
    // nothing restarts the restart cap defers nothing), the CAs a rotation holds, and
    // the broken components the cap does not hold back.
    let plan_of = |inv: &inventory::Inventory| {
        let mut plan = plan_inventory_with(settings, inv, state, now, &plan_options(root));
        crate::authority::rotation::mark(node, state, &mut plan.authorities_due);
        if let Restarts::Live(e) = &pass.restarts {
            let down = broken_deferred(e, node, &plan);
            crate::plan::lift_cap_for_broken(&mut plan, &down);
        }
        plan
    };
    let plan = plan_of(&node.get().inventory);
    note(RunNote::Plan(&plan));
    let renewed = crate::authority::renew_due(pass, node, &plan.authorities_due, now, &mut report);
    let plan = if renewed == 0 {
        plan
    } else {
        // The node after the CA renewal's own writes.
        let plan = plan_of(&read_node(root, settings));
        note(RunNote::PlanAfterCaRenewal(&plan));
        plan
    };
    execute_into(pass, &plan, &mut report, &mut |_| {});
    report
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
    execute_into(pass, plan, &mut report, on_result);
    report
}

/// [`execute`], adding to `report` (after what `run` did before the groups).
fn execute_into(
    pass: &Pass<'_>,
    plan: &Plan,
    report: &mut PassReport,
    on_result: &mut dyn FnMut(&TargetResult),
) {
    let mut history = load_history(pass.state);
    let mut record = |report: &mut PassReport, r: TargetResult| {
        on_result(&r);
        report.results.push(r);
    };
    for b in &plan.absent {
        record(
            report,
            blocked_result(&b.name, &b.path, Outcome::Skipped(b.why.clone())),
        );
    }
    for b in &plan.not_renewable {
        report.emit(PassEvent::NotRenewable {
            target: b.name.clone(),
            path: b.path.clone(),
            why: b.why.clone(),
        });
        record(
            report,
            blocked_result(&b.name, &b.path, Outcome::Skipped(b.why.clone())),
        );
    }
    // A target whose CA key cannot sign fails as an unreadable one does, naming the key.
    for b in plan.cannot_sign.iter().chain(&plan.unreadable) {
        report.emit(PassEvent::Failed(Failure::Unreadable {
            target: b.name.clone(),
            path: b.path.clone(),
            why: b.why.clone(),
        }));
        record(
            report,
            blocked_result(&b.name, &b.path, Outcome::Failed(b.why.clone())),
        );
    }
    for d in &plan.deferred {
        for t in &d.group.targets {
            report.emit(PassEvent::Deferred {
                target: t.name.clone(),
                path: t.path.clone(),
                why: Deferral::Planned(d.why.clone()),
            });
        }
    }
    let mut cas = Authorities::new(pass.root, pass.settings, &plan.authorities, plan.now);
    let mut locks = match PassLocks::open(pass) {
        Ok(l) => l,
        Err(e) => return crate::rollout::refused(report, plan, &e),
    };
    let mut stop: Option<Stopped> = owed_restarts(pass, plan, &mut locks, &mut history, report);
    for (i, group) in plan.groups.iter().enumerate() {
        let comp = group.component_name();
        if let Some(stopped) = &stop {
            for t in &group.targets {
                report.emit(PassEvent::Deferred {
                    target: t.name.clone(),
                    path: t.path.clone(),
                    why: Deferral::PassStopped {
                        failed: stopped.component.clone(),
                    },
                });
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
            let outcome = match renew(pass, plan.now, &mut cas, t, &comp, report) {
                Ok((applied_files, serial, not_after)) => {
                    written.files.extend(applied_files);
                    written.serials.push(serial.clone());
                    Outcome::Renewed { serial, not_after }
                }
                Err(e) => {
                    let why = e.to_string();
                    any_failed = true;
                    report.emit(PassEvent::Failed(Failure::Renewal {
                        target: t.name.clone(),
                        path: t.path.clone(),
                        component: comp.clone(),
                        error: why.clone(),
                    }));
                    Outcome::Failed(why)
                }
            };
            record(
                report,
                TargetResult {
                    name: t.name.clone(),
                    path: t.target.path.clone(),
                    outcome,
                },
            );
        }
        // A change set of this group could neither commit nor be undone: its files may
        // not belong together (a new certificate with its old key). Restarting would
        // load them; the next command finishes the undo first, and the restart for the
        // group's other renewals is owed to the pass after (with one owed before).
        let unfinished = any_failed && unfinished_write(pass.state);
        if unfinished {
            tracing::error!(component = %comp, "not restarted: a write of this component is unfinished; the pass stops");
            stop = Some(Stopped {
                component: comp.clone(),
            });
        } else if matches!(pass.restarts, Restarts::Live(_)) {
            locks.absorb_pending(&comp, &mut written);
        }
        if written.files.is_empty() {
            continue;
        }
        if any_failed && !unfinished {
            // The component still restarts for what was renewed: a half-renewed group
            // is no worse than before, and the next pass retries the rest.
            tracing::warn!(component = %comp, "some renewals of this component failed; restarting for the others");
        }
        let edges = match &pass.restarts {
            Restarts::Live(edges) => edges,
            Restarts::NotLive => {
                if group.reload != Reload::None {
                    report.emit(PassEvent::NotPerformed {
                        component: comp,
                        reload: group.reload.clone(),
                    });
                }
                continue;
            }
            Restarts::Operator => {
                if group.reload.is_restart() {
                    report.emit(PassEvent::MustRestart {
                        component: comp,
                        reload: group.reload.clone(),
                    });
                }
                continue;
            }
        };
        if unfinished {
            let why = "a write of this component is unfinished";
            locks.owe_also(&comp, written, why, edges.clock.now());
            continue;
        }
        let live = Live::new(pass, edges, group, &comp);
        if let Some(stopped) = live.coordinated_restart(&written, &mut history, report, &mut locks)
        {
            stop = Some(stopped);
        }
    }
    locks.save(pass.state);
    status(if report.ok() {
        "pass finished"
    } else {
        "pass finished with failures"
    });
}

/// Whether the state directory holds a write-ahead record a failed commit left (or
/// one that cannot be read): what it names is not known to be consistent.
fn unfinished_write(state: &StateDir) -> bool {
    !matches!(state.pending(), Ok(None))
}

fn blocked_result(name: &str, path: &str, outcome: Outcome) -> TargetResult {
    TargetResult {
        name: name.to_string(),
        path: PathBuf::from(path),
        outcome,
    }
}

/// Files written, each with the backup directory of its before-image.
type BackedUp = Vec<crate::write::WrittenFile>;

/// Issues and writes one planned target: (files written with the backup directory of
/// their before-images, serial, not_after).
fn renew(
    pass: &Pass<'_>,
    now: OffsetDateTime,
    cas: &mut Authorities<'_>,
    t: &PlannedTarget,
    comp: &str,
    report: &mut PassReport,
) -> Result<(BackedUp, String, OffsetDateTime), PassError> {
    let prepared = issue::prepare_planned(
        t,
        cas,
        pass.settings,
        pass.overrides.days,
        pass.overrides.reuse_key,
        now,
    )?;
    let applied = pass
        .state
        .apply(&format!("renew {}", t.name), &prepared.changes)?;
    for w in prepared.warnings {
        // A CA near its end caps every leaf it signs: the operator must hear it.
        report.emit(PassEvent::Warned(Warning::Renewal {
            target: t.name.clone(),
            component: comp.to_string(),
            text: w,
        }));
    }
    let serial = prepared.new_cert.serial.clone();
    let not_after = prepared.new_cert.not_after;
    report.emit(PassEvent::Renewed {
        cert: RenewedCert {
            name: t.name.clone(),
            path: t.path.clone(),
            serial: serial.clone(),
            not_after,
        },
        component: comp.to_string(),
    });
    Ok((applied.files(), serial, not_after))
}
