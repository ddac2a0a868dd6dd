//! `cert-rotator ca rotate NAME start|trust|issue|finish|abort`: one phase of a CA
//! rotation to a new key per command (src/authority/rotation). Each takes the state
//! lock, recovers an interrupted write first, refuses out of order (exit 1, nothing
//! changed), and where the node is live restarts and verifies what holds the CA; under
//! `--root DIR` (without `--live`) or with `--no-restart` it says what must restart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use time::OffsetDateTime;

use super::context::{CliError, Context, WhenBusy};
use super::run::with_edges;
use super::{errln, outln};
use crate::authority::rotation::{self, steps::Ctx, Command, RotationError, StartOptions};
use crate::inventory::anchors::canonical_name;
use crate::node::NodeRoot;

#[derive(clap::Args, Debug, Clone)]
pub struct RotateArgs {
    /// The CA as `status` names it: ca, front-proxy-ca, etcd/ca (kubeadm's etcd-ca too)
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(subcommand)]
    pub phase: RotatePhase,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RotatePhase {
    /// Stage a new CA (and a cross certificate signed by the old key) in the state
    /// directory and back up every file the rotation may touch; nothing live changes
    Start {
        /// The new CA certificate (node path) instead of a generated one: on every
        /// control-plane node after the first, the files `start` staged there
        #[arg(long, value_name = "FILE", requires = "new_key")]
        new_cert: Option<PathBuf>,
        /// The new CA's private key (node path)
        #[arg(long, value_name = "KEY", requires = "new_cert")]
        new_key: Option<PathBuf>,
        /// No cross certificate: clients that hold only the old CA stop verifying the
        /// new leaves at `issue` (a compromised old key)
        #[arg(long)]
        no_cross_sign: bool,
    },
    /// Every trust anchor holds [old, new] (old first: it still signs); the
    /// controller-manager signs from a single-certificate ca-signer.crt; restart, verify
    Trust,
    /// The new CA signs: ca.key and ca.crt [new, old]; every leaf and kubeconfig of
    /// the CA re-issued from it (serving chains carry the cross certificate); restart, verify
    Issue,
    /// Only the new CA is trusted; the old key is archived in the state directory;
    /// restart, verify. There is no abort after finish
    Finish,
    /// Back to the state before `start` (byte-identical files), from any phase before
    /// finish; restart, verify
    Abort {
        /// Only for a rotation journal that cannot be used (`ca status` says so): put
        /// back the byte copies `start` made of the node's known files, set the
        /// rotation directory aside, restart (docs/ca.md, "A broken rotation journal")
        #[arg(long)]
        force_from_backups: bool,
    },
}

pub fn rotate(root: &NodeRoot, config: Option<&Path>, args: RotateArgs) -> ExitCode {
    match run(root, config, args) {
        Ok(code) => code,
        Err(e) => e.exit(),
    }
}

fn run(root: &NodeRoot, config: Option<&Path>, args: RotateArgs) -> Result<ExitCode, CliError> {
    let Some(ca) = canonical_name(&args.name) else {
        return Err(CliError::Usage(format!(
            "{}: not a CA of a kubeadm node (ca, front-proxy-ca, etcd/ca or etcd-ca)",
            args.name
        )));
    };
    let forced = matches!(
        args.phase,
        RotatePhase::Abort {
            force_from_backups: true
        }
    );
    let (cmd, opts) = match args.phase.clone() {
        RotatePhase::Start {
            new_cert,
            new_key,
            no_cross_sign,
        } => (
            Command::Start,
            StartOptions {
                new_cert,
                new_key,
                cross_sign: !no_cross_sign,
            },
        ),
        RotatePhase::Trust => (Command::Trust, StartOptions::default()),
        RotatePhase::Issue => (Command::Issue, StartOptions::default()),
        RotatePhase::Finish => (Command::Finish, StartOptions::default()),
        RotatePhase::Abort { .. } => (Command::Abort, StartOptions::default()),
    };
    let ctx = Context::load(root, config)?;
    let layout = crate::inventory::layout(&ctx.settings, root);
    let Some(def) = layout.authorities.iter().find(|a| a.name == ca) else {
        return Err(CliError::Failed(format!(
            "{ca}: this node has no such CA (no {} here)",
            if ca == "etcd/ca" {
                "stacked etcd"
            } else {
                "control plane"
            }
        )));
    };
    if !root.exists(&def.key) {
        return Err(CliError::Failed(format!(
            "{}: the CA key is not on this node: a rotation runs where the key is (a control-plane node); on a worker, `ca import` the bundle each phase leaves",
            def.key.display()
        )));
    }
    let state = ctx.state();
    let Some(_lock) = ctx.lock_and_recover(&state, WhenBusy::Fail)? else {
        return Ok(ExitCode::from(1));
    };
    let settings = &ctx.settings;
    // --no-restart (global) leaves the phase unverified until it runs again with
    // restarts: with_edges gives the operator the restarts then.
    let result = with_edges(root, settings, |restarts| {
        let c = Ctx {
            root,
            settings,
            state: &state,
            restarts,
            now: OffsetDateTime::now_utc(),
        };
        if forced {
            rotation::forced::abort(&c, ca)
        } else {
            rotation::rotate(&c, ca, cmd, &opts)
        }
    });
    match result {
        Ok(out) => {
            for l in &out.lines {
                outln!("{l}");
            }
            for w in &out.warnings {
                errln!("WARNING: {w}");
            }
            if !out.must_restart.is_empty() {
                outln!("must restart, one at a time in this order, and verify, before the next phase:");
                for m in &out.must_restart {
                    outln!("  {m}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(RotationError::Refused(why)) => Err(CliError::Failed(why)),
        // The journal names itself and the way out (`abort --force-from-backups`).
        Err(RotationError::Journal(e)) => Err(CliError::Failed(format!(
            "{ca}: `ca rotate {ca} {}` refused: {e}",
            cmd.name()
        ))),
        Err(e) => Err(CliError::Failed(format!(
            "{ca}: `ca rotate {ca} {}` failed: {e}\n(the journal keeps the phase: re-run the command to resume, or `ca rotate {ca} abort` before finish)",
            cmd.name()
        ))),
    }
}
