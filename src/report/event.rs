//! What a pass and the CA lifecycle did, as data: one [`PassEvent`] per thing done, not
//! done, or gone wrong, in the order it happened. The pass, the rollout and the CA
//! lifecycle emit them; report/ alone words them (the summary, the journal lines, the
//! Kubernetes Events, the counts of the last-pass record). This module sits low (it
//! needs only the plan's [`Reload`]), so every emitter can name the events without
//! importing upward.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::plan::Reload;

/// One thing a pass did or did not do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassEvent {
    /// A CA renewed with its own key, before the leaves (`run`).
    CaRenewed(RenewedCa),
    /// A due CA that `run` does not renew.
    CaNotRenewed {
        name: String,
        /// `expired` or `under-P-percent` (the plan's words).
        reason: String,
        not_after: OffsetDateTime,
        why: CaKept,
    },
    /// A certificate renewed and written.
    Renewed {
        cert: RenewedCert,
        /// The component of its group (`none` for a group that restarts nothing).
        component: String,
    },
    /// A component restarted to load what was written.
    Restarted {
        component: String,
        how: Restart,
    },
    /// A restart not made: the component already served its new certificates.
    RestartAvoided {
        component: String,
        reload: Reload,
    },
    /// What the verification after a restart found.
    Verified {
        component: String,
        check: Verification,
    },
    /// A restart and verification not performed: the node's components do not run here.
    NotPerformed {
        component: String,
        reload: Reload,
    },
    /// A restart left to the operator (`--no-restart`, a renewal without `--restart`).
    MustRestart {
        component: String,
        reload: Reload,
    },
    /// A component that failed verification, back on its previous certificates.
    RolledBack {
        component: String,
    },
    Failed(Failure),
    /// A target inside its renewal window that this pass does not renew.
    Deferred {
        target: String,
        path: String,
        why: Deferral,
    },
    /// A target no CA on this node can sign.
    NotRenewable {
        target: String,
        path: String,
        why: String,
    },
    /// A restart owed to the next pass: no slot of the restart lock could be had.
    AwaitingLock {
        component: String,
        why: String,
    },
    /// A failed verification kept the restart lock: the group's restarts stop across the
    /// cluster. `unmarked`: why the lock could not be told so.
    RolloutStopped {
        component: String,
        group: String,
        unmarked: Option<String>,
    },
    /// A loud condition the pass went on with.
    Warned(Warning),
}

/// A certificate renewed by a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewedCert {
    pub name: String,
    pub path: String,
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// A CA renewed with its own key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewedCa {
    pub name: String,
    pub serial: String,
    pub not_after: OffsetDateTime,
    /// The end of the certificate it replaces.
    pub was_not_after: OffsetDateTime,
    /// SHA-256 of the new certificate's DER, lower-case hex.
    pub sha256: String,
}

/// What `ca renew` or `ca import` did to one CA (their stdout lines are the command's;
/// report/journal.rs words the journal's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaCommandEvent {
    /// `ca renew`: renewed with its own key, every copy on this node updated.
    Renewed(RenewedCa),
    /// `ca import`: installed from another node's export, every copy updated.
    Imported {
        name: String,
        serial: String,
        not_after: OffsetDateTime,
        /// The serial of the certificate it replaces.
        was_serial: String,
        /// The export file (a path as the operator gave it).
        from: PathBuf,
    },
}

/// Why a due CA is not renewed by `run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaKept {
    /// A rotation in progress holds it, or its rotation journal cannot be used.
    Held(String),
    /// `[authorities] renew = false` (key here), or its key is not on this node.
    NotAutomatic { has_key: bool },
}

/// How a component was restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// A systemd unit, with the invocation ID of its new run.
    Unit { unit: String, invocation: String },
    /// A static pod whose manifest was annotated with the hash of what changed.
    Annotated {
        pod: String,
        manifest: PathBuf,
        hash: String,
    },
    /// A static pod whose manifest was written back whole (a CA rotation's abort).
    ManifestWritten { pod: String, manifest: PathBuf },
}

/// What a verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// An endpoint serves what is on disk, or answers healthy (the verifier's words).
    Served(String),
    /// `[run] verify = false`.
    SwitchedOff,
}

/// Why a target is left to the next pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deferral {
    /// The plan deferred it (the restart cap, a pacing rule), in the plan's words.
    Planned(String),
    /// A component failed verification earlier in this pass: the pass stopped.
    PassStopped { failed: String },
    /// The restart lock's record could not be trusted: the pass changed nothing.
    PassRefused { record: PathBuf },
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A CA rotation journal that cannot be used (the error names it).
    RotationJournal { error: String },
    /// Renewing the due CAs failed; nothing of it was written.
    CaRenewal { error: String },
    /// A restart for a CA's changed copies failed (the error names the component).
    CaRestart { component: String, error: String },
    /// A target that cannot be read.
    Unreadable {
        target: String,
        path: String,
        why: String,
    },
    /// Issuing or writing a target.
    Renewal {
        target: String,
        path: String,
        component: String,
        error: String,
    },
    /// A component that does not serve its new certificates (it is rolled back).
    Verification { component: String, error: String },
    /// The rollback after a failed verification.
    Rollback { component: String, error: String },
    /// The restart lock's record names what the agent never writes there.
    UntrustedState { error: String },
}

/// A loud condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A renewal's warning (a validity capped by a CA near its end), in the issuer's words.
    Renewal {
        target: String,
        component: String,
        text: String,
    },
    /// A restart made without the cross-node restart lock.
    RestartedWithoutLock {
        component: String,
        group: String,
        why: String,
    },
    /// A slot of the restart lock that could not be given back.
    SlotNotGivenBack {
        component: String,
        group: String,
        error: String,
    },
}
