//! The journal's line for each [`PassEvent`], with its structured fields and stable
//! MESSAGE_ID (docs/logging.md). Each line keeps the target of the module that made the
//! event (`cert_rotator::pass`, `cert_rotator::rollout`, ...), so a `CERT_ROTATOR_LOG`
//! filter by module selects what it always did, and each field its old form (a `%`
//! field is written bare, a string field quoted, by the stderr formatter).

use super::event::{CaCommandEvent, Deferral, Failure, PassEvent, Verification, Warning};
use super::pass::{
    avoided_line, ca_kept_line, ca_renewed_warning, restart_line, rollout_stopped_line,
};
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

use message_id::*;

/// Writes the journal line of `e`, if it has one (restarts left to the operator or not
/// performed, and targets a stopped pass defers, are in the summary only).
pub fn log(e: &PassEvent) {
    match e {
        PassEvent::CaRenewed(r) => {
            tracing::warn!(target: "cert_rotator::authority", ca = %r.name, serial = %r.serial, not_after = %rfc3339(r.not_after), action = "ca-renew", message_id = CA_RENEWED, "{}", ca_renewed_warning(r))
        }
        PassEvent::CaNotRenewed {
            name,
            reason,
            not_after,
            why,
        } => {
            tracing::warn!(target: "cert_rotator::authority", ca = %name, action = "ca-renew", message_id = CA_RENEWED, "{}", ca_kept_line(name, reason, *not_after, why))
        }
        PassEvent::Renewed { cert, component } => {
            tracing::info!(target: "cert_rotator::pass", cert_name = %cert.name, cert_path = %cert.path, serial = %cert.serial, not_after = %rfc3339(cert.not_after), component = %component, action = "renew", message_id = RENEWED, "renewed {}", cert.name)
        }
        PassEvent::Restarted { component, how } => {
            tracing::info!(target: "cert_rotator::rollout", component = %component, action = "restart", message_id = RESTARTED, "restarted {component}: {}", restart_line(how))
        }
        PassEvent::RestartAvoided { component, reload } => {
            tracing::info!(target: "cert_rotator::rollout::probe", component = %component, action = "restart", message_id = RESTART_AVOIDED, "{}", avoided_line(component, reload))
        }
        PassEvent::Verified {
            component,
            check: Verification::Served(line),
        } => {
            tracing::info!(target: "cert_rotator::rollout", component = %component, action = "verify", message_id = VERIFIED, "{line}")
        }
        PassEvent::RolledBack { component } => {
            tracing::error!(target: "cert_rotator::rollout", component = %component, action = "rollback", message_id = ROLLED_BACK, "{component}: restored the previous certificates, which it serves again")
        }
        PassEvent::Failed(f) => log_failure(f),
        PassEvent::Deferred {
            target: name,
            path,
            why: Deferral::Planned(why),
        } => {
            tracing::info!(target: "cert_rotator::pass", cert_name = %name, cert_path = %path, action = "defer", message_id = DEFERRED, "deferred: {why}")
        }
        PassEvent::AwaitingLock { component, why } => {
            tracing::warn!(target: "cert_rotator::rollout::slot", component = %component, action = "defer", message_id = DEFERRED, "{component}: not restarted, the next pass restarts it: {why}")
        }
        PassEvent::RolloutStopped {
            component,
            group,
            unmarked,
        } => {
            tracing::error!(target: "cert_rotator::rollout::slot", component = %component, group = group.as_str(), action = "verify", message_id = FAILED, "{}", rollout_stopped_line(component, group, unmarked))
        }
        PassEvent::Warned(w) => log_warning(w),
        PassEvent::Verified {
            check: Verification::SwitchedOff,
            ..
        }
        | PassEvent::NotPerformed { .. }
        | PassEvent::MustRestart { .. }
        | PassEvent::Deferred { .. }
        | PassEvent::NotRenewable { .. } => {}
    }
}

/// Writes the journal line of what `ca renew` or `ca import` did (the target stays the
/// command's module, as before these lines were typed).
pub fn log_ca_command(e: &CaCommandEvent) {
    match e {
        CaCommandEvent::Renewed(r) => {
            tracing::warn!(target: "cert_rotator::cli::ca", ca = %r.name, serial = %r.serial, not_after = %rfc3339(r.not_after), action = "ca-renew", message_id = CA_RENEWED,
                "renewed CA {} with its own key: serial {}, ends {} (was {}); every copy on this node updated", r.name, r.serial, rfc3339(r.not_after), rfc3339(r.was_not_after))
        }
        CaCommandEvent::Imported {
            name,
            serial,
            not_after,
            was_serial,
            from,
        } => {
            tracing::warn!(target: "cert_rotator::cli::ca", ca = %name, serial = %serial, action = "ca-import", message_id = CA_RENEWED,
                "installed CA {name} from {}: serial {serial}, ends {} (was serial {was_serial}); every copy on this node updated", from.display(), rfc3339(*not_after))
        }
    }
}

fn log_failure(f: &Failure) {
    match f {
        Failure::RotationJournal { error } => {
            tracing::error!(target: "cert_rotator::pass", action = "ca-rotation", message_id = FAILED, "{error}")
        }
        Failure::CaRenewal { error } => {
            tracing::error!(target: "cert_rotator::authority", action = "ca-renew", message_id = FAILED, "CA renewal: {error}")
        }
        Failure::CaRestart { component, error } => {
            tracing::error!(target: "cert_rotator::authority", component = %component, action = "restart", message_id = FAILED, "{error}")
        }
        Failure::Unreadable { target, path, why } => {
            tracing::error!(target: "cert_rotator::pass", cert_name = %target, cert_path = %path, action = "read", message_id = FAILED, "unreadable: {why}")
        }
        Failure::Renewal {
            target,
            path,
            component,
            error,
        } => {
            tracing::error!(target: "cert_rotator::pass", cert_name = %target, cert_path = %path, component = %component, action = "renew", message_id = FAILED, "renewal failed: {error}")
        }
        Failure::Verification { component, error } => {
            tracing::error!(target: "cert_rotator::rollout", component = %component, action = "verify", message_id = FAILED, "{component} does not serve its new certificates: {error}; rolling back")
        }
        Failure::Rollback { component, error } => {
            tracing::error!(target: "cert_rotator::rollout", component = %component, action = "rollback", message_id = FAILED, "{component}: ROLLBACK FAILED: {error}")
        }
        Failure::UntrustedState { error } => {
            tracing::error!(target: "cert_rotator::rollout::slot", action = "read", message_id = FAILED, "{error}")
        }
    }
}

fn log_warning(w: &Warning) {
    match w {
        Warning::Renewal {
            target,
            component,
            text,
        } => {
            tracing::warn!(target: "cert_rotator::pass", cert_name = %target, component = %component, action = "renew", "{text}")
        }
        Warning::RestartedWithoutLock {
            component,
            group,
            why,
        } => {
            tracing::warn!(target: "cert_rotator::rollout::slot", component = %component, action = "restart", group = %group, "{component}: restarting without the restart lock: {why}")
        }
        Warning::SlotNotGivenBack {
            component,
            group,
            error,
        } => {
            tracing::warn!(target: "cert_rotator::rollout::slot", component = %component, group = group.as_str(), "coordination: cannot give the restart slot back: {error}")
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
