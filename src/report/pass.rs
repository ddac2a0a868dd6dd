//! What a pass did, for people (the summary `run` prints), for the last-pass record and
//! for the manual commands (one line per target as it completes): the pass's
//! [`PassEvent`]s, worded here and nowhere else.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::event::{CaKept, Deferral, Failure, PassEvent, Restart, Verification, Warning};
use super::metrics::PassResult;
use super::reload_words;
use crate::timefmt::rfc3339;

pub use super::event::RenewedCert;
pub use super::journal::message_id;

/// What a pass did: its events in the order they happened, and every target's result.
#[derive(Clone, Debug, Default)]
pub struct PassReport {
    pub events: Vec<PassEvent>,
    /// Every target's result, in the order they completed.
    pub results: Vec<TargetResult>,
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
        // One record of tab-separated fields for scripts: a tab or newline inside a path
        // or a reason is escaped, not left to split the record.
        let path = self.path.display().to_string();
        let path = crate::shown::printable(&path);
        match &self.outcome {
            Outcome::Renewed { serial, not_after } => format!(
                "{path}\trenewed\tnot_after={}\tserial={serial}",
                rfc3339(*not_after)
            ),
            Outcome::Skipped(why) => format!("{path}\tskipped\t{}", crate::shown::printable(why)),
            Outcome::Failed(why) => format!("{path}\tFAILED\t{}", crate::shown::printable(why)),
        }
    }
}

/// The summary's sections, in the order it shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    CaRenewed,
    Renewed,
    Restarted,
    RestartsAvoided,
    Verified,
    NotPerformed,
    MustRestart,
    RolledBack,
    Failed,
    Deferred,
    AwaitingLock,
    RolloutsStopped,
    NotRenewable,
    Warnings,
}

impl Section {
    const ALL: [Section; 14] = [
        Section::CaRenewed,
        Section::Renewed,
        Section::Restarted,
        Section::RestartsAvoided,
        Section::Verified,
        Section::NotPerformed,
        Section::MustRestart,
        Section::RolledBack,
        Section::Failed,
        Section::Deferred,
        Section::AwaitingLock,
        Section::RolloutsStopped,
        Section::NotRenewable,
        Section::Warnings,
    ];

    fn title(self) -> &'static str {
        match self {
            Section::CaRenewed => "CA renewed with its own key",
            Section::Renewed => "renewed",
            Section::Restarted => "restarted",
            Section::RestartsAvoided => "not restarted (already serving the new certificates)",
            Section::Verified => "verified",
            Section::NotPerformed => "not performed (not the live node)",
            Section::MustRestart => "must restart, one at a time (--no-restart: not restarted)",
            Section::RolledBack => "rolled back",
            Section::Failed => "FAILED",
            Section::Deferred => "deferred to the next pass",
            Section::AwaitingLock => {
                "restart waiting for the restart lock (the next pass restarts it)"
            }
            Section::RolloutsStopped => "ROLLOUT STOPPED",
            Section::NotRenewable => "not renewable here",
            Section::Warnings => "WARNINGS",
        }
    }
}

/// The summary's line for a restart (also the journal's and the Kubernetes Event's).
pub fn restart_line(how: &Restart) -> String {
    match how {
        Restart::Unit { unit, invocation } => format!("{unit}: new run {invocation}"),
        Restart::Annotated {
            pod,
            manifest,
            hash,
        } => format!(
            "{pod}: manifest {} annotated cert-rotator.k8s.io/certs-hash={hash}",
            manifest.display()
        ),
        Restart::ManifestWritten { pod, manifest } => {
            format!("{pod}: manifest {} written back", manifest.display())
        }
    }
}

/// The line of a restart not made.
pub fn avoided_line(component: &str, reload: &crate::plan::Reload) -> String {
    format!(
        "{component}: already serves its new certificates (it reloaded them itself): not restarted ({} not performed)",
        reload_words(reload)
    )
}

fn verified_line(component: &str, check: &Verification) -> String {
    match check {
        Verification::Served(line) => line.clone(),
        Verification::SwitchedOff => format!("{component}: verification switched off"),
    }
}

/// The summary's line of a CA renewed with its own key.
fn ca_renewed_line(r: &super::event::RenewedCa) -> String {
    format!(
        "{} serial={} not_after={} sha256={}",
        r.name,
        r.serial,
        rfc3339(r.not_after),
        r.sha256
    )
}

/// The loud line of a CA renewed with its own key (a warning: the other nodes need it).
pub(super) fn ca_renewed_warning(r: &super::event::RenewedCa) -> String {
    format!(
        "renewed CA {} with its own key: serial {}, ends {} (was {}); every copy on this node updated. The other nodes of the cluster need it too: `cert-rotator ca export {} FILE` here, `ca import FILE` there (docs/ca.md)",
        r.name,
        r.serial,
        rfc3339(r.not_after),
        rfc3339(r.was_not_after),
        r.name
    )
}

pub(super) fn ca_kept_line(
    name: &str,
    reason: &str,
    not_after: OffsetDateTime,
    why: &CaKept,
) -> String {
    match why {
        CaKept::Held(held) => format!(
            "CA {name} is due ({reason}, ends {}) and is not renewed: {held}",
            rfc3339(not_after)
        ),
        CaKept::NotAutomatic { has_key } => {
            let why = if *has_key {
                "[authorities] renew = false"
            } else {
                "its key is not on this node"
            };
            format!(
                "CA {name} is due ({reason}, ends {}) and is not renewed automatically ({why}): run `cert-rotator ca renew {name}` where its key is (docs/ca.md)",
                rfc3339(not_after)
            )
        }
    }
}

pub(super) fn rollout_stopped_line(
    component: &str,
    group: &str,
    unmarked: &Option<String>,
) -> String {
    match unmarked {
        None => format!("{component}: restarts of group {group} stay stopped across the cluster until this node's next verified restart or an operator clears it (docs/coordination.md)"),
        Some(e) => format!("{component}: could not mark group {group} stopped: {e}"),
    }
}

fn warning_line(w: &Warning) -> String {
    match w {
        Warning::Renewal { text, .. } => text.clone(),
        Warning::RestartedWithoutLock { component, why, .. } => {
            format!("{component}: restarted without the restart lock: {why}")
        }
        Warning::SlotNotGivenBack {
            component,
            group,
            error,
        } => format!("{component}: restart slot of group {group} not given back: {error}"),
    }
}

fn failure_line(f: &Failure) -> String {
    match f {
        Failure::RotationJournal { error } | Failure::UntrustedState { error } => error.clone(),
        Failure::CaRenewal { error } | Failure::CaRestart { error, .. } => {
            format!("CA renewal: {error}")
        }
        Failure::Unreadable { target, path, why } => format!("{target} {path}: {why}"),
        Failure::Renewal { target, error, .. } => format!("{target}: {error}"),
        Failure::Verification { component, error } => format!("{component}: {error}"),
        Failure::Rollback { component, error } => format!("{component}: rollback failed: {error}"),
    }
}

fn deferral_line(target: &str, why: &Deferral) -> String {
    match why {
        Deferral::Planned(why) => format!("{target} ({why})"),
        Deferral::PassStopped { failed } => {
            format!("{target} (pass stopped: {failed} failed verification)")
        }
        Deferral::PassRefused { record } => {
            format!("{target} (pass refused: {})", record.display())
        }
    }
}

/// The summary's lines of one event, each in its section (a CA renewed with its own key
/// is also a warning).
fn lines(e: &PassEvent) -> Vec<(Section, String)> {
    let one = |s: Section, line: String| vec![(s, line)];
    match e {
        PassEvent::CaRenewed(r) => vec![
            (Section::CaRenewed, ca_renewed_line(r)),
            (Section::Warnings, ca_renewed_warning(r)),
        ],
        PassEvent::CaNotRenewed {
            name,
            reason,
            not_after,
            why,
        } => one(
            Section::Warnings,
            ca_kept_line(name, reason, *not_after, why),
        ),
        PassEvent::Renewed { cert: r, .. } => one(
            Section::Renewed,
            format!(
                "{} {} serial={} not_after={}",
                r.name,
                r.path,
                r.serial,
                rfc3339(r.not_after)
            ),
        ),
        PassEvent::Restarted { how, .. } => one(Section::Restarted, restart_line(how)),
        PassEvent::RestartAvoided { component, reload } => {
            one(Section::RestartsAvoided, avoided_line(component, reload))
        }
        PassEvent::Verified { component, check } => {
            one(Section::Verified, verified_line(component, check))
        }
        PassEvent::NotPerformed { component, reload } => one(
            Section::NotPerformed,
            format!(
                "{component}: {}, then verify (--root is not the live node)",
                reload_words(reload)
            ),
        ),
        PassEvent::MustRestart { component, reload } => one(
            Section::MustRestart,
            format!("{component} ({})", reload_words(reload)),
        ),
        PassEvent::RolledBack { component } => one(
            Section::RolledBack,
            format!("{component}: previous certificates restored and served"),
        ),
        PassEvent::Failed(f) => one(Section::Failed, failure_line(f)),
        PassEvent::Deferred { target, why, .. } => {
            one(Section::Deferred, deferral_line(target, why))
        }
        PassEvent::NotRenewable { target, path, why } => {
            one(Section::NotRenewable, format!("{target} {path}: {why}"))
        }
        PassEvent::AwaitingLock { component, why } => {
            one(Section::AwaitingLock, format!("{component}: {why}"))
        }
        PassEvent::RolloutStopped {
            component,
            group,
            unmarked,
        } => one(
            Section::RolloutsStopped,
            rollout_stopped_line(component, group, unmarked),
        ),
        PassEvent::Warned(w) => one(Section::Warnings, warning_line(w)),
    }
}

/// The lines of `events` in `section`, in the order they happened.
pub fn section(events: &[PassEvent], section: Section) -> Vec<String> {
    events
        .iter()
        .flat_map(lines)
        .filter(|(s, _)| *s == section)
        .map(|(_, l)| l)
        .collect()
}

/// The views of a report that its readers (the summary's sections, the tests) use.
macro_rules! sections {
    ($($name:ident: $section:ident),*) => {
        $(
            #[doc = concat!("The lines of section `", stringify!($section), "`.")]
            pub fn $name(&self) -> Vec<String> {
                section(&self.events, Section::$section)
            }
        )*
    };
}

impl PassReport {
    /// Records an event and writes its journal line.
    pub fn emit(&mut self, e: PassEvent) {
        super::journal::log(&e);
        self.events.push(e);
    }

    /// Records events whose journal lines were written when they happened (a restart
    /// is logged when it is made, though it is reported only once it verified).
    pub fn extend(&mut self, events: impl IntoIterator<Item = PassEvent>) {
        self.events.extend(events);
    }

    pub fn ok(&self) -> bool {
        !self
            .events
            .iter()
            .any(|e| matches!(e, PassEvent::Failed(_)))
    }

    /// The certificates renewed, in order.
    pub fn renewed(&self) -> Vec<&RenewedCert> {
        self.events
            .iter()
            .filter_map(|e| match e {
                PassEvent::Renewed { cert, .. } => Some(cert),
                _ => None,
            })
            .collect()
    }

    sections!(
        ca_renewed: CaRenewed,
        restarted: Restarted,
        restarts_avoided: RestartsAvoided,
        verified: Verified,
        not_performed: NotPerformed,
        must_restart: MustRestart,
        rolled_back: RolledBack,
        failed: Failed,
        deferred: Deferred,
        awaiting_lock: AwaitingLock,
        rollouts_stopped: RolloutsStopped,
        not_renewable: NotRenewable,
        warnings: Warnings
    );

    pub fn summary(&self) -> String {
        let mut out = String::new();
        for s in Section::ALL {
            let items = section(&self.events, s);
            if !items.is_empty() {
                out.push_str(&format!("{} ({}):\n", s.title(), items.len()));
                for i in items {
                    out.push_str(&format!("  {i}\n"));
                }
            }
        }
        if out.is_empty() {
            out.push_str("nothing due: no certificate renewed, no component restarted\n");
        }
        crate::shown::printable_text(&out).into_owned()
    }

    /// What a renewal on request ends with: which components must restart to load
    /// what was written (kubeadm prints the same after `kubeadm certs renew`).
    pub fn restart_advice(&self) -> String {
        let must = self.must_restart();
        if must.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\nRestart these to load the new certificates (or run again with --restart):\n",
        );
        for m in &must {
            out.push_str(&format!("  {m}\n"));
        }
        out
    }

    /// The record of this pass for `last-pass.json` and the metrics (the last success
    /// is set from the previous record by [`PassResult::after`]).
    pub fn result(&self, at: OffsetDateTime) -> PassResult {
        PassResult {
            at,
            success: self.ok(),
            renewed: self.renewed().len(),
            failed: self.failed().len(),
            warnings: self.warnings().len(),
            last_success: None,
            restarts_avoided: self.restarts_avoided().len(),
            skipped: None,
            restarts_awaiting_lock: self.awaiting_lock().len(),
            rollouts_stopped: self.rollouts_stopped().len(),
        }
    }
}

#[cfg(test)]
#[path = "pass_tests.rs"]
mod tests;
