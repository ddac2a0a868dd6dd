//! `run` (what the timer runs) and `plan` / `run --dry-run`: the node's plan by the
//! window rule, executed by the sequencer with the node's edges where it is live.

use super::{out, outln};
use std::process::ExitCode;

use time::OffsetDateTime;

use super::context::{CliError, Context, WhenBusy};
use super::{emit, say};
use crate::config;
use crate::inventory;
use crate::node::NodeRoot;
use crate::pass::RunNote;
use crate::report::{plan_text, MetricsInput, NotANode, PassResult};
use crate::rollout::{Edges, Overrides, Pass, Restarts};
use crate::write::kubeadm_skips as skips;
use crate::write::StateDir;

/// `plan`, `run --dry-run`: what a pass would do; writes nothing.
pub fn plan(root: &NodeRoot, config_file: Option<&std::path::Path>, json: bool) -> ExitCode {
    let ctx = match Context::load(root, config_file) {
        Ok(c) => c,
        Err(e) => return e.exit(),
    };
    // `run` would refuse before planning (it recovers an interrupted write first, and
    // cannot trust this one): the plan says so, with the same words, and reads on no
    // further. Nothing is written: the record is only read.
    if let Err(e) = ctx.state().pending() {
        return CliError::Failed(e.to_string()).exit();
    }
    let mut plan = crate::pass::plan_run_with(
        root,
        &ctx.settings,
        &ctx.state(),
        OffsetDateTime::now_utc(),
        &crate::pass::plan_options(root),
    );
    crate::authority::rotation::mark(
        &crate::inventory::NodeReader::new(root, &ctx.settings),
        &ctx.state(),
        &mut plan.authorities_due,
    );
    let text = if json {
        // The plan holds strings, numbers and times only: serializing it cannot fail.
        format!(
            "{}\n",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        )
    } else {
        plan_text(&plan, root.liveness())
    };
    let code = if plan.unreadable.is_empty() && plan.cannot_sign.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    emit(&text, code)
}

/// `run`: the rotation pass.
pub fn run(root: &NodeRoot, config_file: Option<&std::path::Path>) -> ExitCode {
    match run_pass(root, config_file) {
        Ok(code) => code,
        Err(e) => e.exit(),
    }
}

fn run_pass(root: &NodeRoot, config_file: Option<&std::path::Path>) -> Result<ExitCode, CliError> {
    let ctx = Context::load(root, config_file)?;
    let settings = &ctx.settings;
    let state = ctx.state();
    if let Some(seen) = ctx.kubeadm_at_work() {
        // Not even an interrupted write is finished: kubeadm may be rewriting the same
        // files. Only the agent's own records say the pass was skipped.
        if let Some(_lock) = ctx.lock(&state, WhenBusy::Succeed)? {
            let now = OffsetDateTime::now_utc();
            match skips::record(&state, now, &seen.to_string()) {
                Ok(s) => outln!("{}", s.describe(now)),
                Err(e) => tracing::warn!("cannot record the skipped pass: {e}"),
            }
            write_last_pass(
                root,
                &state,
                &PassResult::skipped(OffsetDateTime::now_utc(), "kubeadm"),
            );
            write_metrics(root, settings, &state);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(_lock) = ctx.lock_and_recover(&state, WhenBusy::Succeed)? else {
        return Ok(ExitCode::SUCCESS);
    };
    // This pass goes ahead: the row of passes skipped for kubeadm ends.
    if let Err(e) = skips::clear(&state) {
        tracing::warn!("{e}");
    }
    let now = OffsetDateTime::now_utc();
    // The node, read once under the lock after recovery: the pass works from it.
    let node = crate::inventory::NodeReader::new(root, settings);
    if let Some(n) = NotANode::detect(&node.get().inventory, root) {
        // Said plainly, and recorded as a failed pass: an alert must fire, not a
        // "success" on a host the agent cannot look after.
        say(&n.to_string());
        write_last_pass(
            root,
            &state,
            &PassResult {
                at: OffsetDateTime::now_utc(),
                success: false,
                renewed: 0,
                failed: 0,
                warnings: 0,
                last_success: None,
                restarts_avoided: 0,
                skipped: None,
                restarts_awaiting_lock: 0,
                rollouts_stopped: 0,
            },
        );
        write_metrics(root, settings, &state);
        return Ok(ExitCode::from(1));
    }
    let report = with_pass(&node, &state, |pass| {
        crate::pass::run(pass, now, &mut |n| match n {
            RunNote::Warning(w) => say(&format!("WARNING: {w}")),
            RunNote::Error(e) => say(&format!("ERROR: {e}")),
            RunNote::Plan(plan) => out!("{}", plan_text(plan, root.liveness())),
            RunNote::PlanAfterCaRenewal(plan) => {
                outln!("\nAfter the CA renewal:");
                out!("{}", plan_text(plan, root.liveness()));
            }
        })
    });
    outln!();
    out!("{}", report.summary());
    // Told to the cluster when it can be reached, within [events]'s timeout, after the
    // work: never a reason for the pass to wait or fail. The summary is of the node as
    // the pass left it.
    let summary = settings.events.node_summary.then(|| {
        crate::report::node_summary::NodeSummary::of(
            &crate::pass::read_node(root, settings),
            OffsetDateTime::now_utc(),
        )
        .node_patch()
    });
    crate::kube::events::tell_all(
        root,
        &settings.events,
        &crate::report::node_events::of_report(&report),
        summary.as_ref(),
    );
    // The last success is set from this pass and the previous record by write_last_pass.
    write_last_pass(root, &state, &report.result(OffsetDateTime::now_utc()));
    write_metrics(root, settings, &state);
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The last pass's record in the state directory, which the metrics file reports.
const LAST_PASS: &str = "last-pass.json";

/// Records the pass that just ended (with the last success carried over from the
/// previous record); a failure is logged, the pass's outcome stands.
fn write_last_pass(root: &NodeRoot, state: &StateDir, result: &PassResult) {
    let result = result.clone().after(read_last_pass(root, state).as_ref());
    if let Err(e) = state.write_json(LAST_PASS, &result) {
        tracing::warn!("cannot record the last pass: {e}");
    }
}

/// The recorded last pass; none yet (or an unreadable one, which is logged) is `None`.
fn read_last_pass(root: &NodeRoot, state: &StateDir) -> Option<PassResult> {
    let p = state.path(LAST_PASS);
    match root.read(&p) {
        Ok(b) => PassResult::from_json(&b)
            .map_err(|e| {
                tracing::warn!(
                    "{}: unreadable, ignored (the next pass replaces it): {e}",
                    p.display()
                )
            })
            .ok(),
        Err(_) => None,
    }
}

/// Writes the Prometheus textfile from a fresh inventory and the last pass. Only `run`
/// calls it: `status` and `plan` write nothing.
fn write_metrics(root: &NodeRoot, settings: &config::Settings, state: &StateDir) {
    if settings.metrics_file.as_os_str().is_empty() {
        return;
    }
    let inv = inventory::read(&inventory::layout(settings, root), root);
    // No record yet (or an unreadable one): the pass families are left out, not invented.
    let last = read_last_pass(root, state);
    let text = crate::report::metrics_text(&MetricsInput {
        inventory: &inv,
        now: OffsetDateTime::now_utc(),
        last_pass: last.as_ref(),
        authorities: &settings.authorities,
    });
    let file = &settings.metrics_file;
    if let Some(parent) = file.parent() {
        if let Err(e) = root.create_dir_all(parent, 0o755) {
            tracing::warn!(
                "{}: cannot create the metrics directory: {e}",
                file.display()
            );
            return;
        }
    }
    // node_exporter must read it: 0644.
    if let Err(e) = root.write_atomic(file, text.as_bytes(), 0o644, None) {
        tracing::warn!("{}: cannot write metrics: {e}", file.display());
    }
}

/// Runs `f` with a pass on `node` and its edges ([`with_edges`]), without overrides:
/// `run` and the CA commands.
pub fn with_pass<R>(
    node: &inventory::NodeReader<'_>,
    state: &StateDir,
    f: impl FnOnce(&Pass<'_>) -> R,
) -> R {
    let (root, settings) = (node.root, node.settings);
    with_edges(root, settings, |restarts| {
        f(&Pass {
            root,
            settings,
            node,
            state,
            overrides: Overrides::default(),
            restarts,
        })
    })
}

/// Runs `f` with the node's edges (restarts over systemd's D-Bus API, TLS probes, the
/// system clock, the cross-node restart lock `[coordination]` asks for) where its
/// liveness allows restarts, else with what replaces them ([`Restarts::without_edges`]).
pub fn with_edges<R>(
    root: &NodeRoot,
    settings: &config::Settings,
    f: impl FnOnce(Restarts<'_>) -> R,
) -> R {
    if let Some(restarts) = Restarts::without_edges(root) {
        return f(restarts);
    }
    let lock = crate::coordination::connect(root, settings);
    let prober = crate::verify::TlsProber::default();
    let clock = crate::clock::SystemClock;
    // Connects on the first restart: a pass that restarts nothing needs no bus.
    let services = crate::restart::SystemdManager::new();
    f(Restarts::Live(Edges {
        services: &services,
        prober: &prober,
        clock: &clock,
        lock: lock.as_deref(),
    }))
}
