//! `abort`: the node files back as the byte copies `start` made, what the rotation
//! created removed, and only what was restored restarted (a static pod by its manifest
//! of before `start`, so manifests end byte-identical too). The journal it works from
//! is checked first ([`super::trusted`]); the copies of the CA file and key must hold
//! the old CA, as `start` wrote them.

use std::path::{Path, PathBuf};

use super::files::{self, CaFiles};
use super::journal::{self, BackedUp, Phase, RotationJournal};
use super::steps::{finish_phase, read_bytes, remove, Ctx, Outcome, RotationError};
use super::Staged;
use crate::inventory::NodeReader;
use crate::model::{Component, FileChange, NewContent};
use crate::node::NodeRoot;
use crate::rollout::Restarts;

/// The file is as it was before `start` (its bytes, its link, or its absence).
fn as_before(root: &NodeRoot, b: &BackedUp) -> bool {
    match (&b.copy, &b.link) {
        (Some(c), _) => {
            let now = root.symlink_metadata(&b.path).ok().flatten();
            now.is_some_and(|m| !m.file_type().is_symlink())
                && root.read_file(c).ok().map(|x| x.1) == root.read_file(&b.path).ok().map(|x| x.1)
        }
        (None, Some(l)) => root.read_link(&b.path).ok().as_ref() == Some(l),
        (None, None) => !root.exists(&b.path),
    }
}

/// The bytes a node file had before `start`, from its copy.
pub(super) fn before_start(root: &NodeRoot, j: &RotationJournal, p: &Path) -> Option<Vec<u8>> {
    let b = j.backups.iter().find(|b| b.path == p)?;
    root.read_file(b.copy.as_ref()?).ok().map(|x| x.1)
}

/// The CA's restarts whose component is on this node, in order.
pub(super) fn present(ctx: &Ctx<'_>, f: &CaFiles) -> Vec<Component> {
    f.restart
        .iter()
        .filter(|c| match files::static_pod(c) {
            Some(p) => ctx.root.exists(&manifest_of(ctx, p)),
            None => true,
        })
        .cloned()
        .collect()
}

pub(super) fn manifest_of(ctx: &Ctx<'_>, pod: &str) -> PathBuf {
    ctx.settings
        .kubeadm
        .manifests_dir
        .join(format!("{pod}.yaml"))
}

/// Whether `abort` restores something component `c` reads: a static pod's manifest,
/// or a file its manifest (before `start`) names; the kubelet's kubeconfig, client and
/// serving files, or the CA file (its client CA). `restored`: node paths abort writes
/// or removes.
fn inputs_restored(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &RotationJournal,
    c: &Component,
    restored: &[PathBuf],
) -> bool {
    match files::static_pod(c) {
        Some(pod) => {
            let m = manifest_of(ctx, pod);
            let text = before_start(ctx.root, j, &m)
                .or_else(|| ctx.root.read_file(&m).ok().map(|x| x.1))
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            restored
                .iter()
                .any(|p| *p == m || text.contains(&*p.to_string_lossy()))
        }
        None if *c == Component::Kubelet => {
            let k = &ctx.settings.kubeadm;
            restored.iter().any(|p| {
                *p == k.kubeconfig_dir.join("kubelet.conf")
                    || *p == f.cert
                    || p.starts_with(&k.kubelet_pki_dir)
            })
        }
        None => !restored.is_empty(),
    }
}

/// The static pods whose manifests `abort` writes back by restarting them (only when
/// it restarts through the edges): the manifest is then not in the change set.
pub(super) fn restarted_by_manifest(ctx: &Ctx<'_>, j: &RotationJournal) -> Vec<PathBuf> {
    if !matches!(ctx.restarts, Restarts::Live(_)) {
        return Vec::new();
    }
    [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
    ]
    .iter()
    .filter(|c| j.abort_restarts.contains(&c.name()))
    .filter_map(|c| files::static_pod(c))
    .map(|p| manifest_of(ctx, p))
    .collect()
}

pub(super) fn abort(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    j: &mut RotationJournal,
    s: &Staged,
    out: &mut Outcome,
) -> Result<(), RotationError> {
    let root = ctx.root;
    ca_copies_are_old(root, f, j, s)?;
    // What abort restores, and so what must restart: recorded before the change set (a
    // crash after it finds the files restored and would restart nothing otherwise).
    let restored: Vec<PathBuf> = j
        .backups
        .iter()
        .filter(|b| !as_before(root, b))
        .map(|b| b.path.clone())
        .chain(j.created.iter().filter(|p| root.exists(p)).cloned())
        .collect();
    let order = present(ctx, f);
    let mut names = j.abort_restarts.clone();
    for c in &order {
        if !names.contains(&c.name()) && inputs_restored(ctx, f, j, c, &restored) {
            names.push(c.name());
        }
    }
    j.abort_restarts = order
        .iter()
        .map(Component::name)
        .filter(|n| names.contains(n))
        .collect();
    j.pending = Some(Phase::Aborted);
    journal::write(ctx.state, j)?;
    // On the live node a restarted static pod's manifest is written back by its
    // restart, in the restart order, not here.
    let by_restart = restarted_by_manifest(ctx, j);
    let mut changes = Vec::new();
    let mut gone = Vec::new();
    for b in &j.backups {
        if by_restart.contains(&b.path) {
            continue;
        }
        match (&b.copy, &b.link) {
            (Some(copy), _) => {
                if !as_before(root, b) {
                    changes.push(
                        FileChange::file(
                            &b.path,
                            read_bytes(root, copy)?,
                            0o600,
                            b.path.extension().is_some_and(|e| e == "key"),
                        )
                        .outside_of(&ctx.settings.kubeadm.manifests_dir),
                    );
                }
            }
            (None, Some(link)) => {
                if !as_before(root, b) {
                    changes.push(FileChange {
                        content: NewContent::Symlink(link.clone()),
                        ..FileChange::file(&b.path, Vec::new(), 0o777, false)
                    });
                }
            }
            (None, None) => gone.push(b.path.clone()),
        }
    }
    gone.extend(j.created.iter().cloned());
    let applied = ctx
        .state
        .apply(&format!("ca rotate {} abort", f.name), &changes)?;
    // Restored links no longer point at what the rotation created: remove it.
    for p in &gone {
        remove(root, p)?;
    }
    out.lines.push(format!(
        "{}: restored {} files from the copies `start` made, removed {} it created (backup of the undone state {})",
        f.name,
        applied.entries.len(),
        gone.iter().filter(|p| !root.exists(p)).count(),
        applied.backup_dir.display()
    ));
    j.phase = Phase::Aborted;
    j.pending = None;
    j.verified = false;
    j.phase_at = ctx.now;
    journal::write(ctx.state, j)?;
    // An abort is settled by restarts alone: the node is read again only if needed.
    finish_phase(ctx, &NodeReader::new(root, ctx.settings), f, j, s, out)?;
    Ok(())
}

/// The copies `abort` writes the CA file and key from are the old CA as `start` read
/// it (one certificate, its key): a copy changed since would install another CA.
fn ca_copies_are_old(
    root: &NodeRoot,
    f: &CaFiles,
    j: &RotationJournal,
    s: &Staged,
) -> Result<(), RotationError> {
    let copy_of = |p: &Path| {
        j.backups
            .iter()
            .find(|b| b.path == p)
            .and_then(|b| b.copy.clone())
    };
    let bad = |p: &Path, problem: String| RotationError::Node {
        path: p.to_path_buf(),
        problem: format!("{problem}; nothing changed"),
    };
    if let Some(c) = copy_of(&f.cert) {
        let certs = files::certs_of(&c, &read_bytes(root, &c)?)?;
        if certs.len() != 1 || certs[0].der != s.old.der {
            return Err(bad(
                &c,
                format!(
                    "is not the copy `start` made of {}: it does not hold the old CA alone",
                    f.cert.display()
                ),
            ));
        }
    }
    if let Some(c) = copy_of(&f.key) {
        let bytes = zeroize::Zeroizing::new(read_bytes(root, &c)?);
        let ok = crate::pki::PrivateKey::from_pem(&bytes).is_ok_and(|k| k.matches(&s.old));
        if !ok {
            return Err(bad(
                &c,
                format!(
                    "is not the copy `start` made of {}: it is not the old CA's key",
                    f.key.display()
                ),
            ));
        }
    }
    Ok(())
}

/// After abort: every backed-up file not in `skip` that is not as before `start`.
pub(super) fn not_restored(
    ctx: &Ctx<'_>,
    j: &RotationJournal,
    skip: &[PathBuf],
) -> Result<(), RotationError> {
    let left: Vec<String> = j
        .backups
        .iter()
        .filter(|b| !skip.contains(&b.path) && !as_before(ctx.root, b))
        .map(|b| format!("{}: not as before start", b.path.display()))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(RotationError::Check {
            phase: "abort",
            problems: left,
        })
    }
}
