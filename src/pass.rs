//! The rotation pass (`cert-rotator run`): plan -> issue -> write -> restart -> verify,
//! one component group at a time, rolling a component back when it does not serve
//! its new certificate.
//!
//! Restarts and probes go through the [`ServiceManager`] and [`Prober`] seams. With
//! `--root` (a sandbox or a mounted disk) there is no running node to act on: the pass
//! renews and writes, and reports restarts and verifications as not performed.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::config::Settings;
use crate::inventory;
use crate::issue::RenewOptions;
use crate::model::Component;
use crate::node::NodeRoot;
use crate::pki;
use crate::plan::{self, Group, History, Plan, Reload, RestartRecord};
use crate::renew::{Outcome, Renewer, Selection};
use crate::restart::{certs_hash, static_pod_change, ServiceManager};
use crate::verify::{endpoints, Check, Prober};
use crate::write::{write_atomic_host, FileChange, NewContent, StateDir};

/// Stable journal MESSAGE_IDs, one per kind of event (docs/logging.md).
pub mod message_id {
    pub const RENEWED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a01";
    pub const RESTARTED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a02";
    pub const VERIFIED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a03";
    pub const ROLLED_BACK: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a04";
    pub const FAILED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a05";
    pub const DEFERRED: &str = "6c1f0b7e2d8a4e0f9a3b5c7d1e2f3a06";
}

/// The running node: present only on the live root.
pub struct Live<'a> {
    pub services: &'a dyn ServiceManager,
    pub prober: &'a dyn Prober,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub renewed: Vec<RenewedCert>,
    pub restarted: Vec<String>,
    pub verified: Vec<String>,
    /// Restarts and verifications skipped because the root is not the live node.
    pub not_performed: Vec<String>,
    pub rolled_back: Vec<String>,
    pub failed: Vec<String>,
    pub deferred: Vec<String>,
    pub not_renewable: Vec<String>,
    /// Loud conditions, such as a validity capped by a CA near its end.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RenewedCert {
    pub name: String,
    pub path: String,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
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
                    crate::timefmt::rfc3339(r.not_after)
                )
            })
            .collect();
        section("renewed", &renewed);
        section("restarted", &self.restarted);
        section("verified", &self.verified);
        section("not performed (not the live node)", &self.not_performed);
        section("rolled back", &self.rolled_back);
        section("FAILED", &self.failed);
        section("deferred to the next pass", &self.deferred);
        section("not renewable here", &self.not_renewable);
        section("WARNINGS", &self.warnings);
        if out.is_empty() {
            out.push_str("nothing due: no certificate renewed, no component restarted\n");
        }
        out
    }
}

/// Reads the history of earlier passes (missing or unreadable: empty, and said).
pub fn load_history(state: &StateDir) -> History {
    let p = state.path("history.json");
    match state.root().read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(path = %p.display(), "history unreadable, starting afresh: {e}");
            History::default()
        }),
        Err(_) => History::default(),
    }
}

fn save_history(state: &StateDir, history: &mut History, now: OffsetDateTime) {
    // A month of restarts is plenty to pace passes.
    history.restarts.retain(|r| now - r.at < Duration::days(31));
    let p = state.path("history.json");
    let bytes = serde_json::to_vec_pretty(history).unwrap_or_default();
    if let Err(e) = write_atomic_host(&state.root().host(&p), &bytes, 0o600, None) {
        tracing::warn!(path = %p.display(), "cannot record the restart history: {e}");
    }
}

fn status(msg: &str) {
    // systemctl status cert-rotator shows where the pass is; a no-op outside systemd.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(msg)]);
}

/// Runs a pass of `plan`. The caller holds the state lock and has recovered any
/// unfinished write.
pub fn execute(
    root: &NodeRoot,
    settings: &Settings,
    state: &StateDir,
    plan: &Plan,
    live: Option<&Live<'_>>,
) -> PassReport {
    let mut report = PassReport::default();
    let mut history = load_history(state);
    for b in &plan.not_renewable {
        report
            .not_renewable
            .push(format!("{} {}: {}", b.name, b.path, b.why));
    }
    for b in &plan.unreadable {
        report
            .failed
            .push(format!("{} {}: {}", b.name, b.path, b.why));
        tracing::error!(cert_name = %b.name, cert_path = %b.path, action = "read", message_id = message_id::FAILED, "unreadable: {}", b.why);
    }
    for d in &plan.deferred {
        for t in &d.group.targets {
            report.deferred.push(format!("{} ({})", t.name, d.why));
            tracing::info!(cert_name = %t.name, cert_path = %t.path, action = "defer", message_id = message_id::DEFERRED, "deferred: {}", d.why);
        }
    }
    let total = plan.groups.len();
    let mut stop: Option<String> = None;
    for (i, group) in plan.groups.iter().enumerate() {
        let comp = group
            .component
            .as_ref()
            .map(|c| c.name())
            .unwrap_or_else(|| "no component".into());
        if let Some(why) = &stop {
            for t in &group.targets {
                report
                    .deferred
                    .push(format!("{} (pass stopped: {why})", t.name));
            }
            continue;
        }
        let names: Vec<&str> = group.targets.iter().map(|t| t.name.as_str()).collect();
        status(&format!(
            "renewing {} ({}/{total})",
            names.join(", "),
            i + 1
        ));
        let renewer = Renewer {
            root,
            settings,
            state,
            ca: None,
            opts: RenewOptions {
                days: None,
                reuse_key: false,
                now: OffsetDateTime::now_utc(),
                switch_issuer: false,
            },
        };
        let outcomes = renewer.run(Selection::Paths(
            group
                .targets
                .iter()
                .map(|t| PathBuf::from(&t.path))
                .collect(),
        ));
        let mut written: Vec<(PathBuf, PathBuf)> = Vec::new(); // (file, backup dir)
        let mut new_serials = Vec::new();
        let mut any_failed = false;
        for o in outcomes {
            match o.outcome {
                Outcome::Renewed {
                    serial,
                    not_after,
                    files,
                    backup_dir,
                    warnings,
                } => {
                    for w in warnings {
                        // A CA near its end caps every leaf it signs: the operator must hear it.
                        tracing::warn!(cert_name = %o.name, component = %comp, action = "renew", "{w}");
                        report.warnings.push(w);
                    }
                    tracing::info!(cert_name = %o.name, cert_path = %o.path.display(), serial = %serial, not_after = %crate::timefmt::rfc3339(not_after), component = %comp, action = "renew", message_id = message_id::RENEWED, "renewed {}", o.name);
                    written.extend(files.into_iter().map(|f| (f, backup_dir.clone())));
                    new_serials.push(serial.clone());
                    report.renewed.push(RenewedCert {
                        name: o.name,
                        path: o.path.display().to_string(),
                        serial,
                        not_after,
                    });
                }
                Outcome::Skipped(why) | Outcome::Failed(why) => {
                    any_failed = true;
                    tracing::error!(cert_name = %o.name, cert_path = %o.path.display(), component = %comp, action = "renew", message_id = message_id::FAILED, "renewal failed: {why}");
                    report.failed.push(format!("{}: {why}", o.name));
                }
            }
        }
        if written.is_empty() {
            continue;
        }
        if any_failed {
            // The component still restarts for what was renewed: a half-renewed group
            // is no worse than before, and the next pass retries the rest.
            tracing::warn!(component = %comp, "some renewals of this component failed; restarting for the others");
        }
        let Some(live) = live else {
            if group.reload != Reload::None {
                report.not_performed.push(format!(
                    "{comp}: {} and verification (--root is not the live node)",
                    reload_word(&group.reload)
                ));
            }
            continue;
        };
        match reload_and_verify(
            root,
            settings,
            state,
            live,
            group,
            &new_serials,
            &mut history,
        ) {
            Ok(done) => {
                report.restarted.extend(done.restarted);
                report.verified.extend(done.verified);
            }
            Err(e) => {
                tracing::error!(component = %comp, action = "verify", message_id = message_id::FAILED, "{comp} does not serve its new certificates: {e}; rolling back");
                report.failed.push(format!("{comp}: {e}"));
                match rollback(root, settings, state, live, group, &written, &mut history) {
                    Ok(()) => {
                        tracing::error!(component = %comp, action = "rollback", message_id = message_id::ROLLED_BACK, "{comp}: restored the previous certificates, which it serves again");
                        report
                            .rolled_back
                            .push(format!("{comp}: previous certificates restored and served"));
                    }
                    Err(e2) => {
                        tracing::error!(component = %comp, action = "rollback", message_id = message_id::FAILED, "{comp}: ROLLBACK FAILED: {e2}");
                        report.failed.push(format!("{comp}: rollback failed: {e2}"));
                    }
                }
                stop = Some(format!("{comp} failed verification"));
            }
        }
    }
    status(if report.ok() {
        "pass finished"
    } else {
        "pass finished with failures"
    });
    report
}

fn reload_word(r: &Reload) -> &'static str {
    match r {
        Reload::Unit(_) => "unit restart",
        Reload::StaticPod(_) => "static pod restart",
        Reload::Itself | Reload::None => "no restart",
    }
}

struct Done {
    restarted: Vec<String>,
    verified: Vec<String>,
}

/// Restarts what must reload and waits until it serves what is on disk.
fn reload_and_verify(
    root: &NodeRoot,
    settings: &Settings,
    state: &StateDir,
    live: &Live<'_>,
    group: &Group,
    serials: &[String],
    history: &mut History,
) -> Result<Done, String> {
    let mut done = Done {
        restarted: Vec::new(),
        verified: Vec::new(),
    };
    let comp = group
        .component
        .as_ref()
        .map(|c| c.name())
        .unwrap_or_default();
    if let Some(line) = restart(
        root,
        settings,
        state,
        live,
        &group.reload,
        &comp,
        serials,
        history,
    )? {
        done.restarted.push(line);
    }
    if let Some(c) = &group.component {
        done.verified.extend(verify(root, settings, live, c)?);
    }
    Ok(done)
}

#[allow(clippy::too_many_arguments)]
fn restart(
    root: &NodeRoot,
    settings: &Settings,
    state: &StateDir,
    live: &Live<'_>,
    reload: &Reload,
    comp: &str,
    serials: &[String],
    history: &mut History,
) -> Result<Option<String>, String> {
    let timeout = StdDuration::from_secs(settings.run.restart_timeout_seconds);
    let line = match reload {
        Reload::None | Reload::Itself => return Ok(None),
        Reload::Unit(unit) => {
            status(&format!("restarting {unit}"));
            let r = live
                .services
                .restart_unit(unit, timeout)
                .map_err(|e| e.to_string())?;
            format!("{unit}: new run {}", r.invocation_id)
        }
        Reload::StaticPod(pod) => {
            // One control-plane component at a time, a gap between them.
            let gap = Duration::seconds(settings.run.min_restart_gap_seconds as i64);
            if let Some(last) = history.last_control_plane_restart() {
                let wait = last + gap - OffsetDateTime::now_utc();
                if wait.is_positive() {
                    status(&format!(
                        "waiting {}s before restarting {pod}",
                        wait.whole_seconds()
                    ));
                    std::thread::sleep(StdDuration::from_secs_f64(wait.as_seconds_f64()));
                }
            }
            status(&format!("restarting static pod {pod}"));
            let manifest = settings.kubeadm.manifests_dir.join(format!("{pod}.yaml"));
            let value = format!(
                "{}-{}",
                certs_hash(serials),
                OffsetDateTime::now_utc().unix_timestamp()
            );
            let change = static_pod_change(root, &manifest, &value).map_err(|e| e.to_string())?;
            state
                .apply(&format!("restart {pod}"), &[change])
                .map_err(|e| e.to_string())?;
            format!(
                "{pod}: manifest {} annotated cert-rotator.k8s.io/certs-hash={value}",
                manifest.display()
            )
        }
    };
    let now = OffsetDateTime::now_utc();
    history.restarts.push(RestartRecord {
        component: comp.to_string(),
        control_plane: reload.is_control_plane(),
        at: now,
    });
    save_history(state, history, now);
    tracing::info!(component = %comp, action = "restart", message_id = message_id::RESTARTED, "restarted {comp}: {line}");
    Ok(Some(line))
}

/// Waits until every endpoint of the component serves the certificate now on disk (or
/// answers healthy), within the verification timeout.
fn verify(
    root: &NodeRoot,
    settings: &Settings,
    live: &Live<'_>,
    component: &Component,
) -> Result<Vec<String>, String> {
    if !settings.run.verify {
        return Ok(vec![format!(
            "{}: verification switched off",
            component.name()
        )]);
    }
    let eps = endpoints(root, &settings.kubeadm.manifests_dir, component);
    let deadline =
        std::time::Instant::now() + StdDuration::from_secs(settings.run.verify_timeout_seconds);
    let mut out = Vec::new();
    for ep in eps {
        status(&format!(
            "waiting for {} to serve the new certificate on {ep}",
            component.name()
        ));
        let mut last_err;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let probe_timeout = left
                .min(StdDuration::from_secs(5))
                .max(StdDuration::from_millis(200));
            let result = match &ep.check {
                Check::ServedCert { cert } => {
                    let want = serial_on_disk(root, cert)?;
                    match live.prober.served_leaf(&ep, probe_timeout) {
                        Ok(s) if s.serial == want => {
                            Ok(format!("{} serves serial {want} on {ep}", component.name()))
                        }
                        Ok(s) => Err(format!(
                            "{ep} still serves serial {} (want {want})",
                            s.serial
                        )),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Check::Healthz => live
                    .prober
                    .healthy(&ep, probe_timeout)
                    .map(|()| format!("{} healthy on {ep}", component.name()))
                    .map_err(|e| e.to_string()),
            };
            match result {
                Ok(line) => {
                    tracing::info!(component = %component.name(), action = "verify", message_id = message_id::VERIFIED, "{line}");
                    out.push(line);
                    break;
                }
                Err(e) => last_err = e,
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "not verified within {}s: {last_err}",
                    settings.run.verify_timeout_seconds
                ));
            }
            std::thread::sleep(StdDuration::from_millis(500));
        }
    }
    Ok(out)
}

fn serial_on_disk(root: &NodeRoot, cert: &Path) -> Result<String, String> {
    let (_, bytes) = root.read_file(cert).map_err(|e| e.to_string())?;
    let blocks = pki::parse_pem(&bytes).map_err(|e| format!("{}: {e}", cert.display()))?;
    let certs = pki::certificates(&blocks).map_err(|e| format!("{}: {e}", cert.display()))?;
    certs
        .first()
        .map(|c| c.serial.clone())
        .ok_or_else(|| format!("{}: no certificate", cert.display()))
}

/// Puts the group's files back from this pass's backup, restarts the component again
/// and checks it serves the old certificates.
fn rollback(
    root: &NodeRoot,
    settings: &Settings,
    state: &StateDir,
    live: &Live<'_>,
    group: &Group,
    written: &[(PathBuf, PathBuf)],
    history: &mut History,
) -> Result<(), String> {
    let mut changes = Vec::new();
    for (file, backup_dir) in written {
        let backup = root.host(&backup_dir.join(file.strip_prefix("/").unwrap_or(file)));
        let meta = match std::fs::symlink_metadata(&backup) {
            Ok(m) => m,
            // A file the renewal created (the kubelet's new client file): it stays, the
            // restored symlink no longer points at it.
            Err(_) => continue,
        };
        let content = if meta.file_type().is_symlink() {
            NewContent::Symlink(
                std::fs::read_link(&backup).map_err(|e| format!("{}: {e}", backup.display()))?,
            )
        } else {
            NewContent::File(
                std::fs::read(&backup).map_err(|e| format!("{}: {e}", backup.display()))?,
            )
        };
        changes.push(FileChange {
            content,
            ..FileChange::file(file, Vec::new(), 0o600, false)
        });
    }
    let comp = group
        .component
        .as_ref()
        .map(|c| c.name())
        .unwrap_or_default();
    state
        .apply(&format!("roll back {comp}"), &changes)
        .map_err(|e| e.to_string())?;
    let serials: Vec<String> = Vec::new();
    restart(
        root,
        settings,
        state,
        live,
        &group.reload,
        &comp,
        &serials,
        history,
    )?;
    if let Some(c) = &group.component {
        verify(root, settings, live, c)?;
    }
    Ok(())
}

/// The whole `run` command below the CLI: plan from a fresh inventory, then execute.
pub fn plan_pass(
    root: &NodeRoot,
    settings: &Settings,
    state: &StateDir,
    now: OffsetDateTime,
) -> Plan {
    let layout = inventory::layout(settings, root);
    let inv = inventory::read(&layout, root);
    plan::make_plan(settings, &inv, &load_history(state), now)
}

/// For a live pass that restarts no unit (nothing due needs one): any call is a bug.
pub struct NoUnitRestarts;

impl ServiceManager for NoUnitRestarts {
    fn restart_unit(
        &self,
        unit: &str,
        _timeout: StdDuration,
    ) -> Result<crate::restart::UnitRestart, crate::restart::RestartError> {
        Err(crate::restart::RestartError::NoSuchUnit {
            unit: unit.to_string(),
        })
    }
    fn unit_state(
        &self,
        unit: &str,
    ) -> Result<crate::restart::UnitState, crate::restart::RestartError> {
        Err(crate::restart::RestartError::NoSuchUnit {
            unit: unit.to_string(),
        })
    }
}
