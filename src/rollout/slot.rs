//! The pass's side of the cross-node restart lock (docs/coordination.md): take a slot
//! of the restart's group before a restart, give it back once the component verified,
//! keep the group stopped when it did not; owe the restart to the next pass when no
//! slot could be had, and let an already broken component restart without one.

use std::time::Duration as StdDuration;

use time::OffsetDateTime;

use super::trust::{check_lock_state, UntrustedState};
use super::{status, Edges, Live, Pass, PassError, Restarts, Stopped, Written};
use crate::coordination::{
    self, Decision, HeldSlot, LockState, PassSpread, PendingRestart, RestartLock,
};
use crate::plan::{Group, History, Plan, Reload};
use crate::report::event::{Deferral, Failure, PassEvent, Warning};
use crate::report::pass::PassReport;
use crate::verify::before::BeforeRestart;
use crate::verify::Check;
use crate::write::StateDir;

/// No slot of the cross-node restart lock could be had for a component's restart:
/// nothing was restarted, and a pass owes the restart to the next one.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{component}: not restarted: {why}")]
pub struct NoRestartSlot {
    pub component: String,
    /// The lock group whose slot was refused.
    pub group: String,
    /// The lock's answer (a busy group, a backend out of reach), or the answer an
    /// earlier restart of this pass had from it for the same group.
    pub why: String,
}

/// The restart lock's record of this pass (docs/coordination.md): restarts owed by
/// earlier passes, groups kept stopped, and the groups whose slot this pass could not
/// have (their later restarts are deferred without asking again).
pub(crate) struct PassLocks {
    state: LockState,
    /// Whether this node waited its spread delay in this pass.
    spread: PassSpread,
    refused: std::collections::BTreeMap<String, String>,
    /// Whether `state` changed and must be saved.
    dirty: bool,
}

impl PassLocks {
    /// Reads the record and, on the live node with a lock, gives back the slots an
    /// earlier run of this node left held (it died between taking and releasing),
    /// except in groups this node keeps stopped after a failed verification.
    /// A record that names what the agent never writes there (a file outside the
    /// node's certificates, a backup outside the state directory, a unit no target
    /// restarts) is refused: the pass must change nothing ([`super::trust`]).
    pub(crate) fn open(pass: &Pass<'_>) -> Result<Self, UntrustedState> {
        let state = read_record(pass.state);
        let path = pass.state.path(coordination::STATE_FILE);
        check_lock_state(pass.root, pass.settings, pass.state, &path, &state)?;
        if let Restarts::Live(Edges {
            lock: Some(lock), ..
        }) = &pass.restarts
        {
            let c = &pass.settings.coordination;
            for reload in [
                Reload::StaticPod(String::new()),
                Reload::Unit(String::new()),
            ] {
                let Some(g) = coordination::group_for(c, &reload) else {
                    continue;
                };
                if state.failed_groups.contains(&g.name) {
                    continue;
                }
                match lock.release_stale(&g) {
                    Ok(()) => {}
                    // Nothing answers: the other group would cost another timeout.
                    Err(e @ coordination::LockError::Unreachable { .. }) => {
                        tracing::warn!(group = %g.name, "coordination: cannot give back a slot left by an earlier run: {e}");
                        break;
                    }
                    // A FleetLock server may know only the groups of this node's role
                    // (airlock answers 400 unknown_group): said, not alarming.
                    Err(e) => {
                        tracing::info!(group = %g.name, "coordination: steady-state report refused: {e}")
                    }
                }
            }
        }
        Ok(PassLocks {
            state,
            spread: PassSpread::default(),
            refused: Default::default(),
            dirty: false,
        })
    }

    /// Moves a restart owed for `comp` into this pass's group: its files first, so a
    /// rollback restores the backups taken before the first renewal. Every pair is
    /// kept, a file this pass wrote again too: its change set is the component's own,
    /// which [`crate::write::StateDir::rollback_of`] must know to put the file back.
    pub(crate) fn absorb_pending(&mut self, comp: &str, written: &mut Written) {
        let Some(i) = self.state.pending.iter().position(|p| p.component == comp) else {
            return;
        };
        let p = self.state.pending.remove(i);
        self.dirty = true;
        let mut files = p.files;
        files.append(&mut written.files);
        written.files = files;
        written.serials.extend(p.serials);
    }

    /// Adds `written` to the restart `comp` owes, or owes one for it: the pass could
    /// not restart it now (a write of its group is unfinished).
    pub(crate) fn owe_also(
        &mut self,
        comp: &str,
        mut written: Written,
        why: &str,
        now: OffsetDateTime,
    ) {
        let since = self.state.pending.iter().find(|p| p.component == comp);
        let since = since.map_or(now, |p| p.since);
        self.absorb_pending(comp, &mut written);
        self.owe(comp, &written, why, since);
    }

    /// Records (or updates) the restart `comp` owes until it is done.
    fn owe(&mut self, comp: &str, written: &Written, why: &str, now: OffsetDateTime) {
        let since = self
            .state
            .pending
            .iter()
            .find(|p| p.component == comp)
            .map(|p| p.since)
            .unwrap_or(now);
        self.state.pending.retain(|p| p.component != comp);
        self.state.pending.push(PendingRestart {
            component: comp.to_string(),
            files: written.files.clone(),
            serials: written.serials.clone(),
            since,
            why: why.to_string(),
        });
        self.dirty = true;
    }

    fn settle(&mut self, comp: &str) {
        let before = self.state.pending.len();
        self.state.pending.retain(|p| p.component != comp);
        self.dirty |= before != self.state.pending.len();
    }

    fn mark_failed(&mut self, group: &str, failed: bool) {
        self.dirty |= set_failed(&mut self.state, group, failed);
    }

    pub(crate) fn save(&mut self, state: &StateDir) {
        if !self.dirty {
            return;
        }
        match state.write_json(coordination::STATE_FILE, &self.state) {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::error!(
                "cannot record the restart lock's state (owed restarts may be lost): {e}"
            ),
        }
    }
}

/// The restart lock's record in `state`; a record that is not JSON is logged and
/// replaced (it names nothing that could be acted on).
fn read_record(state: &StateDir) -> LockState {
    match state.read_json::<LockState>(coordination::STATE_FILE) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            tracing::warn!("restart lock record unreadable, starting afresh: {e}");
            LockState::default()
        }
    }
}

/// Marks `group` kept stopped (`failed`) or not in `state`; whether that changed it.
fn set_failed(state: &mut LockState, group: &str, failed: bool) -> bool {
    let had = state.failed_groups.iter().any(|g| g == group);
    if failed && !had {
        state.failed_groups.push(group.to_string());
    } else if !failed && had {
        state.failed_groups.retain(|g| g != group);
    } else {
        return false;
    }
    true
}

/// [`PassLocks::mark_failed`] for a restart outside the renewals (a CA's copies
/// changed), which runs before the pass opens its [`PassLocks`] (`run` renews due CAs
/// first) or without one (`ca rotate`): written to the record at once, so that the
/// pass-start release that follows leaves a kept FleetLock slot held.
fn record_failed(state: &StateDir, group: &str, failed: bool) {
    // Read as it is, not as `read_record` starts afresh: writing an empty record over
    // one that could not be read would drop the restarts it owes, and with them the
    // backup generations pruning keeps for them.
    let mut record = match state.read_json::<LockState>(coordination::STATE_FILE) {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(group, "restart lock record unreadable, left as it is (a kept slot may be given back by the next pass): {e}");
            return;
        }
    };
    if !set_failed(&mut record, group, failed) {
        return;
    }
    if let Err(e) = state.write_json(coordination::STATE_FILE, &record) {
        tracing::error!(group, "cannot record the restart lock's state (a kept slot may be given back by the next pass): {e}");
    }
}

/// Restarts that earlier passes owe (no restart slot then) for components this pass's
/// plan does not renew again: their files are no longer due, but the component still
/// runs with the old certificates. `Some` when the pass must stop.
pub(crate) fn owed_restarts(
    pass: &Pass<'_>,
    plan: &Plan,
    locks: &mut PassLocks,
    history: &mut History,
    report: &mut PassReport,
) -> Option<Stopped> {
    let Restarts::Live(edges) = &pass.restarts else {
        return None;
    };
    let planned: Vec<String> = plan.groups.iter().map(|g| g.component_name()).collect();
    let owed: Vec<PendingRestart> = locks
        .state
        .pending
        .iter()
        .filter(|p| !planned.contains(&p.component))
        .cloned()
        .collect();
    for p in owed {
        let component = match crate::model::Component::parse(&p.component) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("restart lock record: {}: {e}; dropped", p.component);
                locks.settle(&p.component);
                continue;
            }
        };
        let group = Group {
            reload: Reload::of(component.as_ref()),
            component,
            targets: Vec::new(),
            urgent: false,
        };
        tracing::info!(component = %p.component, action = "restart", "restarting {}: owed since {} ({})", p.component, crate::timefmt::rfc3339(p.since), p.why);
        let written = Written {
            files: p.files.clone(),
            serials: p.serials.clone(),
        };
        locks.settle(&p.component);
        let live = Live {
            pass,
            edges,
            group: &group,
            comp: &p.component,
            manifest: None,
            reload_grace_spent: Default::default(),
            restart_requested: Default::default(),
        };
        if let Some(stopped) = live.coordinated_restart(&written, history, report, locks) {
            locks.save(pass.state);
            return Some(stopped);
        }
    }
    locks.save(pass.state);
    None
}

impl Written {
    /// Nothing written yet.
    pub(crate) fn none() -> Self {
        Written {
            files: Vec::new(),
            serials: Vec::new(),
        }
    }
}

/// The pass refused before it changed anything: said, every planned renewal
/// deferred, the report failed.
pub(crate) fn refused(report: &mut PassReport, plan: &Plan, e: &UntrustedState) {
    report.emit(PassEvent::Failed(Failure::UntrustedState {
        error: e.to_string(),
    }));
    for t in plan.groups.iter().flat_map(|g| &g.targets) {
        report.emit(PassEvent::Deferred {
            target: t.name.clone(),
            path: t.path.clone(),
            why: Deferral::PassRefused {
                record: e.path.clone(),
            },
        });
    }
}

impl<'a> Live<'_, 'a> {
    /// The group's restart under the cross-node lock: take a slot of its group (or
    /// restart a broken component without one), restart and verify, then give the slot
    /// back; keep it when verification failed, so the group's rollout stops. Without a
    /// slot the restart is owed to the next pass and the files stay written. `Some` when
    /// the pass must stop.
    pub(crate) fn coordinated_restart(
        &self,
        written: &Written,
        history: &mut History,
        report: &mut PassReport,
        locks: &mut PassLocks,
    ) -> Option<Stopped> {
        // A component that already serves what was written restarts nothing: it needs
        // no slot (and must not wait for one when the lock is out of reach). Probed
        // here only when a slot is at stake; the restart step probes first anyway.
        let lock_group = self
            .edges
            .lock
            .and_then(|_| {
                coordination::group_for(&self.pass.settings.coordination, &self.group.reload)
            })
            .filter(|_| !matches!(self.probe_first(), BeforeRestart::AlreadyServing));
        if lock_group.is_some() {
            // Owed from now on: a crash before the restart still leaves it to the next pass.
            locks.owe(
                self.comp,
                written,
                "restart not done yet",
                self.edges.clock.now(),
            );
            locks.save(self.pass.state);
        }
        let slot = match self.take_restart_slot(lock_group.as_ref(), report, locks) {
            Ok(slot) => slot,
            Err(no_slot) => {
                self.defer_restart(written, &no_slot, report, locks);
                return None;
            }
        };
        let result = self.restart_and_verify_or_roll_back(written, history, report);
        locks.settle(self.comp);
        if let (Some(slot), Some(g)) = (slot, &lock_group) {
            match &result {
                Ok(()) => self.give_back(slot, &g.name, report, locks),
                Err(e) => self.keep_stopped(slot, &g.name, e, report, locks),
            }
        }
        locks.save(self.pass.state);
        result.err().map(|_| Stopped {
            component: self.comp.to_string(),
        })
    }

    /// A restart outside a renewal (a CA's copies changed): `f` restarts and verifies
    /// while this node holds a slot of the component's group, given back when `f`
    /// succeeded and kept (the group's rollout stopped) when it failed. No slot to be
    /// had: nothing restarts, unless the component is already broken.
    pub(super) fn under_restart_slot<T>(
        &self,
        f: impl FnOnce() -> Result<T, PassError>,
    ) -> Result<T, PassError> {
        let settings = &self.pass.settings.coordination;
        let (Some(lock), Some(group)) = (
            self.edges.lock,
            coordination::group_for(settings, &self.group.reload),
        ) else {
            return f();
        };
        let comp = self.comp;
        // A restart outside the renewals (a CA's copies changed) has no pass record of
        // its own: it waits its own spread.
        let spread = PassSpread::default();
        let decision = coordination::take_slot(
            lock,
            settings,
            &group,
            comp,
            self.edges.clock,
            &spread,
            &mut || self.already_broken(),
        );
        match decision {
            Decision::Held(slot) => {
                let result = f();
                // A slot kept after a failure is recorded, so that the release at the
                // start of a pass (this one's, after `run`'s CA renewal, or the next
                // one's) leaves it held until a verified restart of the group gives it
                // back, as `keep_stopped` and `give_back` record it for a renewal.
                let given = match &result {
                    Ok(_) => {
                        let given = slot.release();
                        if gone_from_us(&given) {
                            record_failed(self.pass.state, &group.name, false);
                        }
                        given
                    }
                    Err(e) => {
                        record_failed(self.pass.state, &group.name, true);
                        slot.keep_failed(&e.to_string())
                    }
                };
                if let Err(e) = given {
                    tracing::warn!(component = %comp, group = %group.name, "coordination: restart slot: {e}");
                }
                result
            }
            Decision::Unlocked { why } => {
                tracing::warn!(component = %comp, action = "restart", group = %group.name, "{comp}: restarting without the restart lock: {why}");
                f()
            }
            Decision::Deferred { why, .. } => Err(NoRestartSlot {
                component: comp.to_string(),
                group: group.name,
                why,
            }
            .into()),
        }
    }

    /// `Ok(Some(slot))`: restart holding it; `Ok(None)`: restart without (no lock, a
    /// restart that takes none, or a broken component); `Err`: defer.
    fn take_restart_slot(
        &self,
        group: Option<&coordination::LockGroup>,
        report: &mut PassReport,
        locks: &mut PassLocks,
    ) -> Result<Option<Box<dyn HeldSlot + 'a>>, NoRestartSlot> {
        let (Some(lock), Some(group)) = (self.edges.lock, group) else {
            return Ok(None);
        };
        let comp = self.comp;
        let c = &self.pass.settings.coordination;
        let no_slot = |why: &str| NoRestartSlot {
            component: comp.to_string(),
            group: group.name.clone(),
            why: why.to_string(),
        };
        if let Some(why) = locks.refused.get(&group.name) {
            // This pass already could not have a slot of this group: the component is
            // deferred at once unless it is broken.
            if let Some(broken) = self.already_broken() {
                let delay = locks.spread.take(lock, &self.pass.settings.coordination);
                return Ok(self.unlocked(lock, group, &format!("{broken}; {why}"), delay, report));
            }
            return Err(no_slot(why));
        }
        status(&format!(
            "taking a restart slot of group {} for {comp}",
            group.name
        ));
        match coordination::take_slot(
            lock,
            c,
            group,
            comp,
            self.edges.clock,
            &locks.spread,
            &mut || self.already_broken(),
        ) {
            Decision::Held(slot) => Ok(Some(slot)),
            Decision::Unlocked { why } => {
                self.restarted_unlocked(group, why, report);
                Ok(None)
            }
            Decision::Deferred { why, kind } => {
                tracing::debug!(component = %comp, kind, "no restart slot");
                let e = no_slot(&why);
                locks.refused.insert(group.name.clone(), why);
                Err(e)
            }
        }
    }

    /// A broken component in a group this pass already found unavailable: after what
    /// is left of the pass's spread `delay`, restarted without the lock (one more try at
    /// a slot first).
    fn unlocked(
        &self,
        lock: &'a dyn RestartLock,
        group: &coordination::LockGroup,
        why: &str,
        delay: StdDuration,
        report: &mut PassReport,
    ) -> Option<Box<dyn HeldSlot + 'a>> {
        if !delay.is_zero() {
            self.edges.clock.sleep(delay);
        }
        if let Ok(slot) = lock.acquire(group, self.comp) {
            return Some(slot);
        }
        self.restarted_unlocked(group, why.to_string(), report);
        None
    }

    fn restarted_unlocked(
        &self,
        group: &coordination::LockGroup,
        why: String,
        report: &mut PassReport,
    ) {
        report.emit(PassEvent::Warned(Warning::RestartedWithoutLock {
            component: self.comp.to_string(),
            group: group.name.clone(),
            why,
        }));
    }

    /// No slot: the files stay written (they are valid; the component has not loaded
    /// them yet) and the restart is owed to the next pass.
    fn defer_restart(
        &self,
        written: &Written,
        no_slot: &NoRestartSlot,
        report: &mut PassReport,
        locks: &mut PassLocks,
    ) {
        report.emit(PassEvent::AwaitingLock {
            component: no_slot.component.clone(),
            why: no_slot.why.clone(),
        });
        locks.owe(self.comp, written, &no_slot.why, self.edges.clock.now());
    }

    fn give_back(
        &self,
        slot: Box<dyn HeldSlot + 'a>,
        group: &str,
        report: &mut PassReport,
        locks: &mut PassLocks,
    ) {
        let given = slot.release();
        if gone_from_us(&given) {
            locks.mark_failed(group, false);
        }
        if let Err(e) = given {
            report.emit(PassEvent::Warned(Warning::SlotNotGivenBack {
                component: self.comp.to_string(),
                group: group.to_string(),
                error: e.to_string(),
            }));
        }
    }

    fn keep_stopped(
        &self,
        slot: Box<dyn HeldSlot + 'a>,
        group: &str,
        why: &PassError,
        report: &mut PassReport,
        locks: &mut PassLocks,
    ) {
        let comp = self.comp;
        let e = slot.keep_failed(&format!("{comp}: {why}"));
        locks.mark_failed(group, true);
        report.emit(PassEvent::RolloutStopped {
            component: comp.to_string(),
            group: group.to_string(),
            unmarked: e.err().map(|e| e.to_string()),
        });
    }

    /// Why the component is already broken, if it is: a certificate of the group had
    /// expired before this pass renewed it, it serves an expired certificate, or it
    /// fails its probe. Restarting it cannot lower availability.
    fn already_broken(&self) -> Option<String> {
        let now = self.edges.clock.now();
        if let Some(t) = self.group.targets.iter().find(|t| t.not_after <= now) {
            return Some(format!(
                "its certificate {} expired at {}",
                t.name,
                crate::timefmt::rfc3339(t.not_after)
            ));
        }
        let c = self.group.component.as_ref()?;
        let timeout = StdDuration::from_secs(5);
        for ep in self.pass.node.endpoints(c).iter() {
            match &ep.check {
                Check::ServedCert { .. } => match self.edges.prober.served_leaf(ep, timeout) {
                    Err(e) => return Some(format!("it fails its probe: {e}")),
                    Ok(s) if s.not_after <= now => {
                        return Some(format!(
                            "it serves an expired certificate on {ep} (not after {})",
                            crate::timefmt::rfc3339(s.not_after)
                        ))
                    }
                    Ok(_) => {}
                },
                Check::Healthz => {
                    if let Err(e) = self.edges.prober.healthy(ep, timeout) {
                        return Some(format!("it fails its probe: {e}"));
                    }
                }
            }
        }
        None
    }
}

/// Whether a release left the slot no longer this node's: given back, or found lost
/// (its lease ended while the component restarted; the release still cleared this
/// node's failed mark in the lock). Either way the local record of a kept slot goes, or
/// the release at the start of later passes would keep skipping the group.
fn gone_from_us(released: &Result<(), coordination::LockError>) -> bool {
    matches!(released, Ok(()) | Err(coordination::LockError::Lost { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FileChange;
    use crate::node::NodeRoot;
    use std::path::Path;

    const CRT: &str = "/etc/kubernetes/pki/apiserver.crt";

    #[test]
    fn a_re_renewed_owed_component_rolls_back_to_before_its_first_renewal() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/kubernetes/pki")).unwrap();
        std::fs::write(d.path().join(&CRT[1..]), "OLD").unwrap();
        let root = NodeRoot::new(d.path());
        let write = |bytes: &str| {
            // Each pass has its own backup generation.
            let s = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
            let change = FileChange::file(CRT, bytes.as_bytes().to_vec(), 0o644, false);
            s.apply("renew apiserver.crt", &[change]).unwrap().files()
        };
        // The first pass renewed it but owes the restart (no slot).
        let owed = write("NEW-1");
        let mut locks = PassLocks {
            state: LockState::default(),
            spread: PassSpread::default(),
            refused: Default::default(),
            dirty: false,
        };
        let first = Written {
            files: owed.clone(),
            serials: vec!["1".into()],
        };
        let now = OffsetDateTime::UNIX_EPOCH;
        locks.owe("kube-apiserver", &first, "no slot", now);
        // `renew --restart apiserver.crt` renews it again before the restart.
        let mut written = Written {
            files: write("NEW-2"),
            serials: vec!["2".into()],
        };
        locks.absorb_pending("kube-apiserver", &mut written);
        assert_eq!(written.files[0], owed[0], "the owed change set first");
        assert_eq!(written.files.len(), 2, "this pass's change set kept");
        // Its verification fails: the rollback puts back what the first pass found.
        let s = StateDir::new(&root, Path::new("/var/lib/cr"), 10);
        let back = s.rollback_of(&written.files).unwrap();
        s.restore("roll back kube-apiserver", &back).unwrap();
        let now_there = std::fs::read_to_string(d.path().join(&CRT[1..])).unwrap();
        assert_eq!(now_there, "OLD");
    }
}
