//! What a pass did, for people (the summary `run` prints), for the journal (stable
//! MESSAGE_IDs) and for the manual commands (one line per target as it completes).

use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;

use crate::timefmt::rfc3339;

/// Stable journal MESSAGE_IDs, one per kind of event (docs/logging.md).
pub mod message_id {
    pub const RENEWED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a01";
    pub const RESTARTED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a02";
    pub const VERIFIED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a03";
    pub const ROLLED_BACK: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a04";
    pub const FAILED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a05";
    pub const DEFERRED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a06";
    /// A pass that changed nothing because kubeadm was at work on the node.
    pub const SKIPPED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a07";
    /// A restart not made: the component already served its new certificate.
    pub const RESTART_AVOIDED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a08";
    /// A CA renewed with its own key (by `run` or `ca renew`), or installed by `ca import`.
    pub const CA_RENEWED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a09";
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub renewed: Vec<RenewedCert>,
    pub restarted: Vec<String>,
    pub verified: Vec<String>,
    /// Restarts and verifications not performed: the node's components do not run
    /// here (`--root DIR` without `--live`).
    pub not_performed: Vec<String>,
    pub rolled_back: Vec<String>,
    pub failed: Vec<String>,
    pub deferred: Vec<String>,
    pub not_renewable: Vec<String>,
    /// Loud conditions, such as a validity capped by a CA near its end.
    pub warnings: Vec<String>,
    /// Components that must restart to load what was written and were not restarted.
    pub must_restart: Vec<String>,
    /// Components not restarted because they already served their new certificates
    /// (they reloaded by themselves); verification still ran.
    pub restarts_avoided: Vec<String>,
    /// CAs renewed with their own key before the leaves (`run`), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ca_renewed: Vec<String>,
    /// Restarts left to the next pass because no restart slot could be had (the
    /// renewed files stay written).
    pub awaiting_lock: Vec<String>,
    /// Groups whose restarts this pass stopped across the cluster (a failed
    /// verification kept the lock).
    pub rollouts_stopped: Vec<String>,
    /// Every target's result, in the order they completed.
    #[serde(skip)]
    pub results: Vec<TargetResult>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RenewedCert {
    pub name: String,
    pub path: String,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// One target of a pass and what became of it.
#[derive(Clone, Debug)]
pub struct TargetResult {
    pub name: String,
    /// Node path, as the target is known.
    pub path: PathBuf,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Renewed {
        serial: String,
        not_after: OffsetDateTime,
    },
    /// Not renewed, and not an error: absent and optional, or no CA here can sign it.
    Skipped(String),
    Failed(String),
}

impl TargetResult {
    /// The line `renew`, `renew-all` and `cert-renew` print (tab-separated).
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Renewed { serial, not_after } => format!(
                "{}\trenewed\tnot_after={}\tserial={serial}",
                self.path.display(),
                rfc3339(*not_after)
            ),
            Outcome::Skipped(why) => format!("{}\tskipped\t{why}", self.path.display()),
            Outcome::Failed(why) => format!("{}\tFAILED\t{why}", self.path.display()),
        }
    }
}

impl PassReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut section = |title: &str, items: &[String]| {
            if !items.is_empty() {
                out.push_str(&format!("{title} ({}):\n", items.len()));
                for i in items {
                    out.push_str(&format!("  {i}\n"));
                }
            }
        };
        let renewed: Vec<String> = self
            .renewed
            .iter()
            .map(|r| {
                format!(
                    "{} {} serial={} not_after={}",
                    r.name,
                    r.path,
                    r.serial,
                    rfc3339(r.not_after)
                )
            })
            .collect();
        section("CA renewed with its own key", &self.ca_renewed);
        section("renewed", &renewed);
        section("restarted", &self.restarted);
        section(
            "not restarted (already serving the new certificates)",
            &self.restarts_avoided,
        );
        section("verified", &self.verified);
        section("not performed (not the live node)", &self.not_performed);
        section(
            "must restart, one at a time (--no-restart: not restarted)",
            &self.must_restart,
        );
        section("rolled back", &self.rolled_back);
        section("FAILED", &self.failed);
        section("deferred to the next pass", &self.deferred);
        section(
            "restart waiting for the restart lock (the next pass restarts it)",
            &self.awaiting_lock,
        );
        section("ROLLOUT STOPPED", &self.rollouts_stopped);
        section("not renewable here", &self.not_renewable);
        section("WARNINGS", &self.warnings);
        if out.is_empty() {
            out.push_str("nothing due: no certificate renewed, no component restarted\n");
        }
        out
    }

    /// What a renewal on request ends with: which components must restart to load
    /// what was written (kubeadm prints the same after `kubeadm certs renew`).
    pub fn restart_advice(&self) -> String {
        if self.must_restart.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\nRestart these to load the new certificates (or run again with --restart):\n",
        );
        for m in &self.must_restart {
            out.push_str(&format!("  {m}\n"));
        }
        out
    }
}
