//! What every command starts from, done once: the merged settings and the state
//! directory; for a writing command also its lock and the recovery of an interrupted
//! write. And the one CLI error, which maps to the exit codes.

use super::outln;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, ConfigError, Settings};
use crate::inventory::kubeadm::{self, KubeadmActivity};
use crate::node::NodeRoot;
use crate::report::pass::message_id;
use crate::write::{PassLock, StateDir};

use super::say;

/// A command's failure: 2 for usage and configuration errors, 1 for the rest.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// Says the error on stderr and gives its exit code.
    pub fn exit(self) -> ExitCode {
        say(&self.to_string());
        match self {
            CliError::Config(_) | CliError::Usage(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}

/// How a writing command meets another one that holds the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenBusy {
    /// `run`: another pass is doing the work; the timer fires again.
    Succeed,
    /// `renew`, `recover`: the operator asked for this one; try again later.
    Fail,
}

pub struct Context<'r> {
    pub root: &'r NodeRoot,
    pub settings: Settings,
    /// The configuration files read, in order.
    pub sources: Vec<PathBuf>,
}

impl<'r> Context<'r> {
    /// The settings from `--config FILE`, or the node's config.toml and config.d.
    pub fn load(root: &'r NodeRoot, config_file: Option<&Path>) -> Result<Self, CliError> {
        let loaded = config::load(root, config_file)?;
        Ok(Context {
            root,
            settings: loaded.settings,
            sources: loaded.sources,
        })
    }

    pub fn state(&self) -> StateDir {
        StateDir::new(
            self.root,
            &self.settings.state_dir,
            self.settings.keep_backups,
        )
    }

    /// Takes the state lock. `Ok(None)`: another command holds it and `busy` says that
    /// is fine (it has been said on stdout).
    pub fn lock(&self, state: &StateDir, busy: WhenBusy) -> Result<Option<PassLock>, CliError> {
        match state.try_lock() {
            Ok(Some(l)) => Ok(Some(l)),
            Ok(None) if busy == WhenBusy::Succeed => {
                outln!(
                    "a pass is already active (lock {} held); nothing to do",
                    state.lock_path().display()
                );
                Ok(None)
            }
            Ok(None) => Err(CliError::Failed(format!(
                "another cert-rotator is writing (lock {} held); try again when it has finished",
                state.lock_path().display()
            ))),
            Err(e) => Err(CliError::Failed(e.to_string())),
        }
    }

    /// kubeadm at work on the node (a kubeadm process of root or the Kubernetes
    /// directory's owner, or its fresh directories under /etc/kubernetes/tmp): said on
    /// stdout and in the journal. A writing command then changes nothing and succeeds:
    /// two writers of the same certificates, kubeconfigs and manifests would
    /// interleave, and the next pass re-reads everything. A kubeadm process running for
    /// longer than an upgrade takes stops nothing: said loudly, and the command goes on.
    pub fn kubeadm_at_work(&self) -> Option<KubeadmActivity> {
        let now = time::OffsetDateTime::now_utc();
        let scan = kubeadm::scan(self.root, &self.settings.kubeadm, now);
        for old in &scan.leftovers {
            if old.ahead_seconds > kubeadm::CLOCK_SKEW.as_secs() {
                tracing::warn!(
                    "{}: a kubeadm directory dated {}s in the future: not a run on this clock (a clock stepped back?), not kubeadm at work",
                    old.path.display(),
                    old.ahead_seconds
                );
            } else {
                tracing::info!(
                    "{}: a kubeadm directory unchanged for {}s: a kept backup or the remains of an earlier run, not kubeadm at work",
                    old.path.display(),
                    old.age_seconds
                );
            }
        }
        for p in &scan.overdue {
            let line = format!(
                "kubeadm process {} ({}) has been running for {}s, longer than an upgrade takes ({}s): not waiting for it any more; look at it",
                p.pid,
                p.cmdline,
                p.age_seconds.unwrap_or_default(),
                kubeadm::ACTIVE_WINDOW.as_secs()
            );
            tracing::warn!(action = "kubeadm", "{line}");
            say(&format!("WARNING: {line}"));
        }
        let seen = scan.activity?;
        tracing::warn!(
            action = "skip",
            message_id = message_id::SKIPPED,
            "{seen}; this pass changes nothing and the next one re-reads the node"
        );
        outln!("{seen}");
        outln!("nothing changed: cert-rotator does not write while kubeadm does; the next pass re-reads the node");
        Some(seen)
    }

    /// Takes the lock and finishes or undoes a write a crash interrupted, before any
    /// new work.
    pub fn lock_and_recover(
        &self,
        state: &StateDir,
        busy: WhenBusy,
    ) -> Result<Option<PassLock>, CliError> {
        let Some(lock) = self.lock(state, busy)? else {
            return Ok(None);
        };
        match state.recover() {
            Ok(Some(j)) => {
                tracing::warn!(
                    "recovered an interrupted write first ({}, phase {:?})",
                    j.label,
                    j.phase
                );
                say(&format!(
                    "recovered an interrupted write first ({}, phase {:?})",
                    j.label, j.phase
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(CliError::Failed(e.to_string())),
        }
        Ok(Some(lock))
    }
}
