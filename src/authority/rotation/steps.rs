//! What each phase does on the node. Every phase follows one protocol:
//!
//! 1. the phase machine decides from the journal and the CA files (nothing written on a
//!    refusal);
//! 2. the journal marks the phase `pending`;
//! 3. the phase's node files are written as ONE crash-safe change set
//!    ([`crate::write::StateDir::apply`]): a crash leaves all old or all new files;
//! 4. the journal records the phase (files in place, not yet verified);
//! 5. the files are checked against what the phase promises ([`super::check`]), then
//!    what holds the CA in memory restarts one at a time, each verified; the journal
//!    records the phase verified.
//!
//! A crash between 2 and 4 makes the same command run again (its writes are computed
//! from the staged CA and the backups, so they converge); a crash after 4 makes it
//! resume at 5. `abort` puts back the byte copies `start` made.
//!
//! Here the dispatch ([`rotate`]); `start` stages (start.rs), the change sets of
//! `trust`, `issue` and `finish` are computed in edits.rs, step 5 is settle.rs, and
//! ctx.rs and error.rs hold what they share.

use super::abort::abort;
use super::check;
use super::ctx::read_cert;
use super::edits::{finish_changes, issue_changes, trust_changes};
use super::files::{self, CaFiles};
use super::journal::{self, Phase, RotationJournal};
use super::phase::{self, Command, Decision, Observed, Recorded, Which};
use super::stage;
use super::start::start;
use crate::inventory::NodeReader;
use crate::node::NodeRoot;
use crate::pki::PrivateKey;

pub(super) use super::ctx::{load_staged, read_bytes, remove};
pub use super::ctx::{Ctx, Outcome, StartOptions};
pub use super::edits::kubeconfig_copies;
pub(super) use super::error::node_err;
pub use super::error::RotationError;
pub(super) use super::settle::finish_phase;
pub(super) use super::start::touched;

/// Runs `ca rotate NAME <cmd>`.
pub fn rotate(
    ctx: &Ctx<'_>,
    ca: &'static str,
    cmd: Command,
    opts: &StartOptions,
) -> Result<Outcome, RotationError> {
    // The node as this command finds it, read once: the decision, the drift check and
    // the phase's change set all work from it; only the settling after the write reads
    // the node again.
    let node = NodeReader::new(ctx.root, ctx.settings);
    let f = CaFiles::of(ctx.settings, node.get().layout.role, ca);
    let dir = journal::rotation_dir(ctx.state, ca);
    // The journal and the CA it staged: both or neither.
    let rotation = match super::trusted::read(&node, ctx.state, ca)? {
        Some(j) => {
            let s = load_staged(ctx.root, &dir, &j)?;
            Some((j, s))
        }
        None => None,
    };
    let kubeadm = files::kubeadm_running(ctx.root, ctx.settings);
    let seen = match &rotation {
        Some((j, s)) => {
            let (bundle, key) = check::observe_ca(ctx.root, &f, s);
            let drift = matches!(j.phase, Phase::Trusting | Phase::Issuing | Phase::Finished)
                && !check::problems(ctx.root, &f, j, s, node.get(), j.phase).is_empty();
            Observed {
                bundle,
                key,
                kubeadm,
                drift,
            }
        }
        None => observe_unstaged(ctx.root, &f, kubeadm)?,
    };
    let recorded = rotation.as_ref().map(|(j, _)| Recorded {
        phase: j.phase,
        verified: j.verified,
        pending: j.pending,
    });
    let decision = phase::decide(recorded, &seen, cmd);
    let mut out = Outcome::default();
    // The phase machine resumes, aborts or runs a phase only with a journal; without
    // one, say so rather than trust that.
    let no_rotation = || {
        RotationError::Refused(format!(
            "{ca}: `ca rotate {ca} {}` refused: no rotation of {ca} is in progress (journal {})",
            cmd.name(),
            journal::journal_path(ctx.state, ca).display()
        ))
    };
    match decision {
        Decision::Refuse(why) => {
            return Err(RotationError::Refused(format!(
                "{ca}: `ca rotate {ca} {}` refused: {why} (CA file {}, journal {})",
                cmd.name(),
                f.cert.display(),
                journal::journal_path(ctx.state, ca).display()
            )))
        }
        Decision::Done(why) => {
            if let (Command::Start, Some((j, _))) = (cmd, &rotation) {
                check_same_given(ctx, j, opts)?;
            }
            out.lines.push(format!("{ca}: {why}"));
            return Ok(out);
        }
        Decision::Resume => {
            let (mut j, s) = rotation.ok_or_else(no_rotation)?;
            out.lines.push(format!(
                "{ca}: the {} phase's files are in place; restarting and verifying",
                j.phase.name()
            ));
            finish_phase(ctx, &node, &f, &mut j, &s, &mut out)?;
            return Ok(out);
        }
        Decision::Run => {}
    }
    let edit = match cmd {
        Command::Start => {
            start(
                ctx,
                node.get(),
                &f,
                rotation.as_ref().map(|(j, _)| j),
                opts,
                &mut out,
            )?;
            return Ok(out);
        }
        Command::Abort => {
            let (mut j, s) = rotation.ok_or_else(no_rotation)?;
            abort(ctx, &f, &mut j, &s, &mut out)?;
            return Ok(out);
        }
        Command::Trust => Edit::Trust,
        Command::Issue => Edit::Issue,
        Command::Finish => Edit::Finish,
    };
    let (mut j, s) = rotation.ok_or_else(no_rotation)?;
    let target = cmd.target();
    j.pending = Some(target);
    journal::write(ctx.state, &j)?;
    let changes = match edit {
        Edit::Trust => trust_changes(ctx, node.get(), &f, &j, &s)?,
        Edit::Issue => issue_changes(ctx, node.get(), &f, &mut j, &s)?,
        Edit::Finish => finish_changes(ctx, node.get(), &f, &j, &s, &dir)?,
    };
    // Recorded before the write: an abort after a crash removes what it created.
    journal::write(ctx.state, &j)?;
    let applied = ctx
        .state
        .apply(&format!("ca rotate {ca} {}", cmd.name()), &changes)?;
    if target == Phase::Finished {
        if let Some(signer) = f.signer.as_ref().filter(|_| j.signer_flag_moved) {
            // The controller-manager no longer names it: kubeadm's layout again.
            remove(ctx.root, signer)?;
        }
    }
    out.lines.push(format!(
        "{ca}: {} phase written ({} files changed in one change set, backup {})",
        target.name(),
        applied.entries.len(),
        applied.backup_dir.display()
    ));
    for e in &applied.entries {
        out.lines.push(format!("  wrote {}", e.path.display()));
    }
    j.phase = target;
    j.pending = None;
    j.verified = false;
    j.phase_at = ctx.now;
    journal::write(ctx.state, &j)?;
    // The node after this command's own write.
    finish_phase(
        ctx,
        &NodeReader::new(ctx.root, ctx.settings),
        &f,
        &mut j,
        &s,
        &mut out,
    )?;
    Ok(out)
}

/// The phases that write a change set of node files.
enum Edit {
    Trust,
    Issue,
    Finish,
}

/// Before a rotation is recorded: the CA file's first certificate is "old".
fn observe_unstaged(
    root: &NodeRoot,
    f: &CaFiles,
    kubeadm: Option<String>,
) -> Result<Observed, RotationError> {
    let b = read_bytes(root, &f.cert)?;
    let certs = files::certs_of(&f.cert, &b)?;
    let bundle = certs
        .iter()
        .enumerate()
        .map(|(i, _)| if i == 0 { Which::Old } else { Which::Other })
        .collect();
    let key = match (root.read_file(&f.key), certs.first()) {
        (Ok((_, k)), Some(c)) => match PrivateKey::from_pem(&k) {
            Ok(k) if k.matches(c) => Which::Old,
            _ => Which::Other,
        },
        _ => Which::Other,
    };
    Ok(Observed {
        bundle,
        key,
        kubeadm,
        drift: false,
    })
}

/// `start` again with `--new-cert` must name the CA already staged.
fn check_same_given(
    ctx: &Ctx<'_>,
    j: &RotationJournal,
    opts: &StartOptions,
) -> Result<(), RotationError> {
    if let Some(p) = &opts.new_cert {
        let c = read_cert(ctx.root, p)?;
        if stage::sha256(&c) != j.new_sha256 {
            return Err(RotationError::Refused(format!(
                "{}: is not the new CA already staged (sha256 {}); `abort` first to stage another",
                p.display(),
                j.new_sha256
            )));
        }
    }
    Ok(())
}
