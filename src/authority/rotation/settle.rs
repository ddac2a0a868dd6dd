//! Settling a phase: its files checked against what it promises, then what holds the
//! CA restarted one at a time and verified, and the phase recorded verified.

use super::abort::{before_start, manifest_of, not_restored, present, restarted_by_manifest};
use super::check;
use super::ctx::{Ctx, Outcome, ARCHIVED_KEY};
use super::error::{node_err, RotationError};
use super::files::{self, CaFiles};
use super::journal::{self, Phase, RotationJournal};
use super::Staged;
use crate::inventory::NodeReader;
use crate::model::Component;
use crate::rollout::Restarts;

/// Checks the phase's promises on disk, then restarts and verifies what holds the CA,
/// and records the phase verified. An aborted rotation's directory is removed then.
pub(super) fn finish_phase(
    ctx: &Ctx<'_>,
    node: &NodeReader<'_>,
    f: &CaFiles,
    j: &mut RotationJournal,
    s: &Staged,
    out: &mut Outcome,
) -> Result<(), RotationError> {
    if j.phase == Phase::Aborted {
        // The manifests the restarts write back are checked after them.
        not_restored(ctx, j, &restarted_by_manifest(ctx, j))?;
    } else {
        let problems = check::problems(ctx.root, f, j, s, node.get(), j.phase);
        if !problems.is_empty() {
            return Err(RotationError::Check {
                phase: j.phase.name(),
                problems,
            });
        }
    }
    out.lines.push(format!(
        "{}: files verified for the {} phase",
        f.name,
        j.phase.name()
    ));
    if j.phase == Phase::Aborted {
        // Only what abort restored restarts (nothing after `start`); a static pod by
        // its manifest of before `start`, so the manifests end byte-identical too.
        let list: Vec<Component> = present(ctx, f)
            .into_iter()
            .filter(|c| j.abort_restarts.contains(&c.name()))
            .collect();
        restart_list(ctx, f, j, &list, out)?;
        if matches!(ctx.restarts, Restarts::Live(_)) {
            not_restored(ctx, j, &[])?;
        }
    } else if j.phase != Phase::Started {
        restart_all(ctx, f, j, out)?;
        if matches!(ctx.restarts, Restarts::Operator) && !out.must_restart.is_empty() {
            // --no-restart on the live node: the operator restarts; the phase counts
            // as verified once this command runs again and restarts and verifies.
            journal::write(ctx.state, j)?;
            out.lines.push(format!(
                "{}: the {} phase is written but not verified: restart what is listed, or run `ca rotate {} {}` again without --no-restart",
                f.name,
                j.phase.name(),
                f.name,
                j.phase.command()
            ));
            return Ok(());
        }
    }
    j.verified = true;
    if j.phase == Phase::Aborted {
        let dir = journal::rotation_dir(ctx.state, f.name);
        ctx.root.remove_dir_all(&dir).map_err(node_err(&dir))?;
        out.lines.push(format!(
            "{}: the rotation is undone; the node is as before `start`",
            f.name
        ));
    } else {
        journal::write(ctx.state, j)?;
        out.lines.push(match j.phase {
            Phase::Trusting => format!("{}: every trust anchor holds [old, new]; next, once every node trusts both: `ca rotate {} issue`", f.name, f.name),
            Phase::Issuing => format!("{}: the new CA signs; next, once every client has the new CA: `ca rotate {} finish`", f.name, f.name),
            Phase::Finished => format!("{}: the rotation is finished; the old CA's key is archived in {}", f.name, journal::rotation_dir(ctx.state, f.name).join(ARCHIVED_KEY).display()),
            _ => String::new(),
        });
    }
    Ok(())
}

pub(super) fn restart_all(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &RotationJournal,
    out: &mut Outcome,
) -> Result<(), RotationError> {
    restart_list(ctx, f, j, &present(ctx, f), out)
}

pub(super) fn restart_list(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &RotationJournal,
    present: &[Component],
    out: &mut Outcome,
) -> Result<(), RotationError> {
    let node = NodeReader::new(ctx.root, ctx.settings);
    let pass = ctx.pass(&node);
    // The same restarts as `ca renew` and a pass: one at a time, paced, each verified;
    // the static pods' annotation names the new CA and the phase.
    let serials = [j.new_sha256.clone(), j.phase.name().to_string()];
    let done = crate::authority::restart_writing(&pass, present, &serials, |c| {
        let pod = files::static_pod(c).filter(|_| j.phase == Phase::Aborted)?;
        before_start(ctx.root, j, &manifest_of(ctx, pod))
    });
    out.lines.extend(
        done.restarted()
            .iter()
            .map(|l| format!("{}: restarted {l}", f.name)),
    );
    out.lines.extend(
        done.verified()
            .iter()
            .map(|l| format!("{}: verified {l}", f.name)),
    );
    out.must_restart.extend(done.not_performed());
    out.must_restart.extend(done.must_restart());
    match done.failed() {
        Some(e) => Err(RotationError::RestartFailed(format!(
            "{e} (not restarted: {})",
            if done.not_restarted.is_empty() {
                "none".to_string()
            } else {
                done.not_restarted.join(", ")
            }
        ))),
        None => Ok(()),
    }
}
