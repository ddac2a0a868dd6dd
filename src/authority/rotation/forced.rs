//! `ca rotate NAME abort --force-from-backups`: the way out of a broken journal.
//!
//! A journal that cannot be read, or that says something the agent never writes
//! ([`super::trusted`]), cannot drive `abort`: nobody knows its phase, and its paths are
//! not to be believed. What `start` made beside it still says what the node was: a byte
//! copy of every existing file the rotation may touch, at
//! `<rotation dir>/backup/<node path>`. This command
//!
//! 1. refuses when the journal is usable (plain `abort` is the way then);
//! 2. takes every copy under `backup/`, each of which must be a regular file whose node
//!    path is one of the node's known files (the check a journal's paths get), with
//!    the CA file's copy one CA certificate and the key's copy its key;
//! 3. writes those that differ back as ONE crash-safe change set, re-points the
//!    kubelet's `kubelet-client-current.pem` at the dated file `start` backed up when
//!    it now leads elsewhere, and removes the signer file `trust` created when the
//!    restored controller-manager manifest no longer names it;
//! 4. moves the rotation directory aside (`<slug>.broken-<unix time>`, kept for
//!    inspection), which ends the rotation's hold on the CA;
//! 5. restarts what holds the CA, one at a time and verified, as `abort` does (under
//!    `--root`, says what must restart).
//!
//! What only the journal knew is not undone: other files a phase created (left in
//! place: nothing names them any more).

use std::path::{Path, PathBuf};

use super::abort::present;
use super::files::{self, CaFiles};
use super::journal;
use super::steps::{node_err, read_bytes, remove, Ctx, Outcome, RotationError};
use super::trusted::{self, Known};
use crate::inventory::NodeReader;
use crate::model::{FileChange, NewContent};
use crate::pki::PrivateKey;

/// At most this many copies under `backup/` (a rotation backs up a few dozen files).
const MAX_COPIES: usize = 512;

fn refused(f: &CaFiles, why: String) -> RotationError {
    RotationError::Refused(format!(
        "{}: `ca rotate {} abort --force-from-backups` refused: {why}; nothing changed",
        f.name, f.name
    ))
}

/// Every regular file under `dir` (node paths), depth first; anything else is refused.
fn copies(
    ctx: &Ctx<'_>,
    f: &CaFiles,
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
) -> Result<(), RotationError> {
    if depth > 16 || out.len() > MAX_COPIES {
        return Err(refused(
            f,
            format!(
                "{} holds more than a rotation's backup (over {MAX_COPIES} files or 16 levels)",
                dir.display()
            ),
        ));
    }
    for (name, kind) in ctx.root.read_dir(dir).map_err(node_err(dir))? {
        let p = dir.join(name);
        if kind.is_dir() {
            copies(ctx, f, &p, depth + 1, out)?;
        } else if kind.is_file() {
            out.push(p);
        } else {
            return Err(refused(
                f,
                format!(
                    "{} is not a regular file: `start` writes only files",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Runs `ca rotate NAME abort --force-from-backups`.
pub fn abort(ctx: &Ctx<'_>, ca: &'static str) -> Result<Outcome, RotationError> {
    let root = ctx.root;
    let node = NodeReader::new(root, ctx.settings);
    let f = CaFiles::of(ctx.settings, node.get().layout.role, ca);
    let dir = journal::rotation_dir(ctx.state, ca);
    let journal_path = journal::journal_path(ctx.state, ca);
    let broken = match trusted::read(&node, ctx.state, ca) {
        Ok(Some(_)) => {
            return Err(refused(
                &f,
                format!(
                    "the journal {} is readable: run `ca rotate {ca} abort`, which restores exactly what the journal recorded",
                    journal_path.display()
                ),
            ))
        }
        Ok(None) if !root.exists(&dir) => {
            return Err(refused(
                &f,
                format!("no rotation of {ca} is recorded ({} does not exist)", dir.display()),
            ))
        }
        Ok(None) => format!("no journal at {}", journal_path.display()),
        Err(e) => e.to_string(),
    };
    if let Some(k) = files::kubeadm_running(root, ctx.settings) {
        return Err(refused(&f, format!("kubeadm is running ({k})")));
    }
    let backup = dir.join("backup");
    let mut found = Vec::new();
    copies(ctx, &f, &backup, 0, &mut found)?;
    let known = Known::of(node.get(), ctx.settings, &f);
    let mut restore: Vec<(PathBuf, PathBuf)> = Vec::new();
    for copy in found {
        let rel = copy.strip_prefix(&backup).unwrap_or(&copy);
        let node = Path::new("/").join(rel);
        if !known.may_restore(&node) {
            return Err(refused(
                &f,
                format!(
                    "{} is a copy of {}, which is not a file a rotation of {ca} touches",
                    copy.display(),
                    node.display()
                ),
            ));
        }
        restore.push((node, copy));
    }
    let copy_of = |p: &Path| restore.iter().find(|(n, _)| n == p).map(|(_, c)| c.clone());
    // The CA as `start` read it: one certificate, its key beside it.
    let Some(cert_copy) = copy_of(&f.cert) else {
        return Err(refused(
            &f,
            format!("{} holds no copy of {}", backup.display(), f.cert.display()),
        ));
    };
    let certs = files::certs_of(&cert_copy, &read_bytes(root, &cert_copy)?)?;
    let [old] = certs.as_slice() else {
        return Err(refused(
            &f,
            format!(
                "{} holds {} certificates, where `start` copied a CA file of one",
                cert_copy.display(),
                certs.len()
            ),
        ));
    };
    if let Some(key_copy) = copy_of(&f.key) {
        let bytes = zeroize::Zeroizing::new(read_bytes(root, &key_copy)?);
        if !PrivateKey::from_pem(&bytes).is_ok_and(|k| k.matches(old)) {
            return Err(refused(
                &f,
                format!(
                    "{} is not the key of the CA certificate in {}",
                    key_copy.display(),
                    cert_copy.display()
                ),
            ));
        }
    }
    let mut changes = Vec::new();
    for (node, copy) in &restore {
        let bytes = read_bytes(root, copy)?;
        let is_link = root.is_symlink(node);
        if !is_link && root.read_file(node).ok().map(|x| x.1).as_ref() == Some(&bytes) {
            continue;
        }
        changes.push(
            FileChange::file(
                node,
                bytes,
                0o600,
                node.extension().is_some_and(|e| e == "key"),
            )
            .outside_of(&ctx.settings.kubeadm.manifests_dir),
        );
    }
    let mut out = Outcome::default();
    relink_kubelet(ctx, &restore, &mut changes, &mut out);
    let applied = ctx.state.apply(
        &format!("ca rotate {ca} abort --force-from-backups"),
        &changes,
    )?;
    if let Some(signer) = &f.signer {
        let manifest = copy_of(&f.kcm_manifest).and_then(|c| read_bytes(root, &c).ok());
        let named = manifest
            .as_deref()
            .map(|m| String::from_utf8_lossy(m).contains(&*signer.to_string_lossy()))
            .unwrap_or(true);
        if copy_of(signer).is_none() && !named && root.exists(signer) {
            // `trust` created it; the restored manifest no longer names it.
            remove(root, signer)?;
            out.lines
                .push(format!("{ca}: removed {}", signer.display()));
        }
    }
    let aside = dir.with_file_name(format!(
        "{}.broken-{}",
        journal::slug(ca),
        ctx.now.unix_timestamp()
    ));
    root.rename_durably(&dir, &aside).map_err(node_err(&dir))?;
    out.lines
        .push(format!("{ca}: the journal could not be used ({broken})"));
    out.lines.push(format!(
        "{ca}: restored {} files from the copies `start` made (backup of the undone state {})",
        applied.entries.len(),
        applied.backup_dir.display()
    ));
    for e in &applied.entries {
        out.lines.push(format!("  wrote {}", e.path.display()));
    }
    out.lines.push(format!(
        "{ca}: the rotation directory is kept as {}; the CA is no longer held by a rotation",
        aside.display()
    ));
    restart(ctx, &f, &mut out)?;
    Ok(out)
}

/// `kubelet-client-current.pem` leads to the file `issue` wrote: back to the one dated
/// file `start` copied, when there is exactly one (otherwise said, not guessed).
fn relink_kubelet(
    ctx: &Ctx<'_>,
    restore: &[(PathBuf, PathBuf)],
    changes: &mut Vec<FileChange>,
    out: &mut Outcome,
) {
    let dir = &ctx.settings.kubeadm.kubelet_pki_dir;
    let link = dir.join("kubelet-client-current.pem");
    let Ok(now) = ctx.root.read_link(&link) else {
        return;
    };
    let dated: Vec<&PathBuf> = restore
        .iter()
        .map(|(n, _)| n)
        .filter(|n| {
            n.parent() == Some(dir.as_path())
                && n.file_name()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| x.starts_with("kubelet-client-2"))
        })
        .collect();
    let resolved = crate::node::normalize(&dir.join(&now));
    match dated.as_slice() {
        [one] if **one != resolved => changes.push(FileChange {
            content: NewContent::Symlink((*one).clone()),
            ..FileChange::file(&link, Vec::new(), 0o777, false)
        }),
        [_] => {}
        _ => out.warnings.push(format!(
            "{} leads to {}: check that it is the kubelet's client certificate signed by the restored CA",
            link.display(),
            resolved.display()
        )),
    }
}

/// What holds the CA restarts, as after `abort`.
fn restart(ctx: &Ctx<'_>, f: &CaFiles, out: &mut Outcome) -> Result<(), RotationError> {
    let node = NodeReader::new(ctx.root, ctx.settings);
    let pass = ctx.pass(&node);
    let done = crate::authority::restart(&pass, &present(ctx, f), &[]);
    out.lines.extend(
        done.restarted()
            .iter()
            .map(|l| format!("{}: restarted {l}", f.name)),
    );
    out.must_restart.extend(done.not_performed());
    out.must_restart.extend(done.must_restart());
    match done.failed() {
        Some(e) => Err(RotationError::RestartFailed(e)),
        None => Ok(()),
    }
}
