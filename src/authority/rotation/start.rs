//! `start`: stage the new CA (and the cross certificate), back up every node file
//! the rotation may touch; nothing live changes.

use std::path::{Path, PathBuf};

use super::ctx::{
    read_bytes, read_cert, read_key, write_state_file, Ctx, Outcome, StartOptions, CROSS, NEW_CERT,
    NEW_KEY, OLD_CERT,
};
use super::edits::kubeconfig_copies;
use super::error::{node_err, RotationError};
use super::files::{self, CaFiles};
use super::journal::{self, BackedUp, Phase, RotationJournal};
use super::stage;
use crate::config::Settings;
use crate::inventory::NodeModel;

/// Every node file a rotation of this CA may touch.
pub(super) fn touched(node: &NodeModel, settings: &Settings, f: &CaFiles) -> Vec<PathBuf> {
    let mut v = vec![f.cert.clone(), f.key.clone()];
    v.extend(f.signer.iter().cloned());
    v.push(f.kcm_manifest.clone());
    v.extend(f.manifests(settings));
    v.extend(kubeconfig_copies(node, f).into_iter().map(|(p, _)| p));
    for (o, r) in files::leaves(&node.inventory, f.name) {
        v.push(o.target.path.clone());
        v.push(r.cert_file.clone());
        v.extend(r.key_file.iter().cloned());
    }
    let mut seen = Vec::new();
    v.retain(|p| {
        let new = !seen.contains(p);
        seen.push(p.clone());
        new
    });
    v
}

pub(super) fn start(
    ctx: &Ctx<'_>,
    node: &NodeModel,
    f: &CaFiles,
    previous: Option<&RotationJournal>,
    opts: &StartOptions,
    out: &mut Outcome,
) -> Result<(), RotationError> {
    let root = ctx.root;
    let dir = journal::rotation_dir(ctx.state, f.name);
    let old = read_cert(root, &f.cert)?;
    let old_key = read_key(root, &f.key)?;
    let new = match (&opts.new_cert, &opts.new_key) {
        (Some(c), Some(k)) => stage::load_given(root, c, k, &old, ctx.now)?,
        (None, None) => stage::generate(&old, &old_key, ctx.now)?,
        _ => {
            return Err(RotationError::Refused(
                "--new-cert and --new-key go together".into(),
            ))
        }
    };
    let cross = if opts.cross_sign {
        Some(stage::cross_sign(&new.cert, &old, &old_key, &f.cert)?)
    } else {
        None
    };
    if let Some(p) = previous {
        // A finished rotation is kept under its own name beside the new one.
        let to = dir.with_file_name(format!(
            "{}.finished-{}",
            journal::slug(f.name),
            p.phase_at.unix_timestamp()
        ));
        root.rename_durably(&dir, &to).map_err(node_err(&dir))?;
    }
    // A crash before the journal is written leaves no rotation: a next `start` writes
    // these files again.
    root.create_dir_all(&dir.join("backup"), 0o700)
        .map_err(node_err(&dir))?;
    write_state_file(
        root,
        &dir.join(OLD_CERT),
        stage::pem(&old).as_bytes(),
        0o600,
    )?;
    write_state_file(
        root,
        &dir.join(NEW_CERT),
        stage::pem(&new.cert).as_bytes(),
        0o600,
    )?;
    let key_pem = new.key.to_pem().map_err(|e| RotationError::Node {
        path: dir.join(NEW_KEY),
        problem: e.to_string(),
    })?;
    write_state_file(root, &dir.join(NEW_KEY), key_pem.as_bytes(), 0o600)?;
    if let Some(x) = &cross {
        write_state_file(root, &dir.join(CROSS), stage::pem(x).as_bytes(), 0o600)?;
    }
    let mut backups = Vec::new();
    for p in touched(node, ctx.settings, f) {
        let meta = root.symlink_metadata(&p).map_err(node_err(&p))?;
        let b = match meta {
            None => BackedUp {
                path: p,
                copy: None,
                link: None,
            },
            Some(m) if m.file_type().is_symlink() => BackedUp {
                link: Some(root.read_link(&p).map_err(node_err(&p))?),
                path: p,
                copy: None,
            },
            Some(_) => {
                let copy = dir.join("backup").join(p.strip_prefix("/").unwrap_or(&p));
                if let Some(parent) = copy.parent() {
                    root.create_dir_all(parent, 0o700)
                        .map_err(node_err(parent))?;
                }
                write_state_file(root, &copy, &read_bytes(root, &p)?, 0o600)?;
                BackedUp {
                    path: p,
                    copy: Some(copy),
                    link: None,
                }
            }
        };
        backups.push(b);
    }
    let signer_flag_moved = match (&f.signer, root.read_file(&f.kcm_manifest)) {
        (Some(_), Ok((_, m))) => files::signer_flag(&f.kcm_manifest, &m)?
            .is_some_and(|v| Path::new(&v) == f.cert.as_path()),
        _ => false,
    };
    let j = RotationJournal {
        ca: f.name.to_string(),
        phase: Phase::Started,
        verified: true,
        pending: None,
        cross_sign: cross.is_some(),
        old_sha256: stage::sha256(&old),
        new_sha256: stage::sha256(&new.cert),
        cross_sha256: cross.as_ref().map(stage::sha256),
        started_at: ctx.now,
        phase_at: ctx.now,
        backups,
        signer_flag_moved,
        created: Vec::new(),
        abort_restarts: Vec::new(),
    };
    journal::write(ctx.state, &j)?;
    out.lines.push(format!(
        "{}: staged the new CA {} (sha256 {}) in {}; nothing live changed",
        f.name,
        new.cert.subject,
        j.new_sha256,
        dir.display()
    ));
    if let Some(x) = &j.cross_sha256 {
        out.lines.push(format!(
            "{}: cross certificate (the new CA signed by the old key) sha256 {x}",
            f.name
        ));
    }
    out.lines.push(format!(
        "{}: backed up {} files the rotation may touch; next: `ca rotate {} trust` on every node",
        f.name,
        j.backups.len(),
        f.name
    ));
    Ok(())
}
