//! The node files each phase writes, as one change set: the CA file and key, the
//! signer file and its manifest flag, the kubeconfigs' CA data, the leaves re-issued by
//! the new CA, the serving chains. Computed from the staged CA and the node now, so a
//! phase run again converges.

use std::path::{Path, PathBuf};

use super::ctx::{read_bytes, read_key, write_state_file, Ctx, ARCHIVED_KEY, NEW_CERT, NEW_KEY};
use super::error::RotationError;
use super::files::{self, CaFiles};
use super::journal::{self, RotationJournal};
use super::stage;
use super::Staged;
use crate::ca::authorities::Authorities;
use crate::inventory::anchors::{AnchorKind, NodeCopies};
use crate::inventory::NodeModel;
use crate::issue;
use crate::model::{FileChange, NewContent};
use crate::node::kubeconfig::replace_cluster_ca;
use crate::node::NodeRoot;
use crate::pki::CertFacts;
use crate::plan::route::CaOverride;

/// Adds or replaces the change of `path`: `edit` gets the bytes the change set would
/// write (a change already planned, else the file now) and returns the new bytes, or
/// `None` to leave it.
pub(super) fn edit(
    root: &NodeRoot,
    changes: &mut Vec<FileChange>,
    path: &Path,
    secret: bool,
    edit: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, RotationError>,
) -> Result<(), RotationError> {
    edit_over(changes, path, secret, &|p| read_bytes(root, p), edit)
}

/// [`edit`] with the file's bytes now from `current`: pure. A planned change keeps
/// everything but its content (mode, staging), so an edit on top of a renewal's change
/// writes the file as the renewal would, with the edit.
fn edit_over(
    changes: &mut Vec<FileChange>,
    path: &Path,
    secret: bool,
    current: &dyn Fn(&Path) -> Result<Vec<u8>, RotationError>,
    edit: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, RotationError>,
) -> Result<(), RotationError> {
    let at = changes.iter().position(|c| c.path == path);
    let now = match at.map(|i| &changes[i].content) {
        Some(NewContent::File(b)) => b.clone(),
        _ => current(path)?,
    };
    if let Some(new) = edit(&now)? {
        match at {
            Some(i) => changes[i].content = NewContent::File(new),
            None => changes.push(FileChange::file(
                path,
                new,
                if secret { 0o600 } else { 0o644 },
                secret,
            )),
        }
    }
    Ok(())
}

/// Adds a leaf's renewal to the phase's change set: one change per file, the
/// renewal's replacing an earlier change of the same path. What the phase itself puts
/// into a file a renewal writes (a kubeconfig's CA data: [`with_cluster_ca`]; a serving
/// chain's cross certificate) is edited on top of it afterwards, never before.
pub(super) fn merge_issued(changes: &mut Vec<FileChange>, issued: Vec<FileChange>) {
    for c in issued {
        changes.retain(|x| x.path != c.path);
        changes.push(c);
    }
}

/// A whole file's content, unless it already is that.
pub(super) fn set(
    root: &NodeRoot,
    changes: &mut Vec<FileChange>,
    path: &Path,
    bytes: Vec<u8>,
    secret: bool,
) -> Result<(), RotationError> {
    let now = root.read_file(path).ok().map(|(_, b)| b);
    if now.as_deref() != Some(bytes.as_slice()) {
        changes.retain(|c| c.path != path);
        changes.push(FileChange::file(
            path,
            bytes,
            if secret { 0o600 } else { 0o644 },
            secret,
        ));
    }
    Ok(())
}

/// The kubeconfig copies of this CA: (resolved node path, cluster entry).
pub fn kubeconfig_copies(node: &NodeModel, f: &CaFiles) -> Vec<(PathBuf, String)> {
    copies_in_kubeconfigs(&node.anchors, f.name)
}

fn copies_in_kubeconfigs(nc: &NodeCopies, ca: &str) -> Vec<(PathBuf, String)> {
    nc.authority(ca)
        .map(|a| {
            a.anchors
                .iter()
                .filter_map(|t| match &t.kind {
                    AnchorKind::Kubeconfig { cluster } => Some((t.path.clone(), cluster.clone())),
                    AnchorKind::CaFile => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every kubeconfig copy of this CA holds `bundle`, edited on top of what the change
/// set already writes to that kubeconfig (a re-issued client certificate).
pub(super) fn kubeconfigs_to(
    root: &NodeRoot,
    node: &NodeModel,
    f: &CaFiles,
    changes: &mut Vec<FileChange>,
    bundle: &[&CertFacts],
) -> Result<(), RotationError> {
    let nc = &node.anchors;
    if let Some(e) = nc.unreadable.first() {
        return Err(RotationError::Refused(format!(
            "{e}: the CA copy in it cannot be updated; fix or remove the file first"
        )));
    }
    let pem = files::bundle_pem(bundle);
    with_cluster_ca(
        changes,
        &copies_in_kubeconfigs(nc, f.name),
        pem.as_bytes(),
        &|p| read_bytes(root, p),
    )
}

/// The one merge of a kubeconfig's two edits in a phase: each kubeconfig copy
/// `(path, cluster)` gets `pem` as its cluster's `certificate-authority-data`, edited on
/// top of what `changes` already writes to it (the client certificate a renewal
/// re-issued, built from the file as it was, CA data and all), else on top of the file
/// now (`current`). Pure.
pub(super) fn with_cluster_ca(
    changes: &mut Vec<FileChange>,
    copies: &[(PathBuf, String)],
    pem: &[u8],
    current: &dyn Fn(&Path) -> Result<Vec<u8>, RotationError>,
) -> Result<(), RotationError> {
    for (path, cluster) in copies {
        edit_over(changes, path, true, current, |b| {
            let new = replace_cluster_ca(b, path, &[(cluster, pem)]).map_err(|source| {
                RotationError::Kubeconfig {
                    path: path.clone(),
                    source: Box::new(source),
                }
            })?;
            Ok((new != b).then_some(new))
        })?;
    }
    Ok(())
}

pub(super) fn signer_flag_to(
    root: &NodeRoot,
    f: &CaFiles,
    changes: &mut Vec<FileChange>,
    from: &Path,
    to: &Path,
) -> Result<(), RotationError> {
    let m = &f.kcm_manifest;
    let bytes = read_bytes(root, m)?;
    match files::signer_flag(m, &bytes)? {
        Some(v) if Path::new(&v) == to => Ok(()),
        _ => {
            let new = files::with_signer_flag(m, &bytes, from, to)?;
            changes.push(FileChange::manifest(m, new));
            Ok(())
        }
    }
}

pub(super) fn trust_changes(
    ctx: &Ctx<'_>,
    node: &NodeModel,
    f: &CaFiles,
    j: &RotationJournal,
    s: &Staged,
) -> Result<Vec<FileChange>, RotationError> {
    let root = ctx.root;
    let mut changes = Vec::new();
    if let (Some(signer), true) = (&f.signer, j.signer_flag_moved) {
        // One certificate, the issuing one, before ca.crt becomes a bundle: the
        // controller-manager's signer refuses a bundle ("expected 1 certificate").
        set(
            root,
            &mut changes,
            signer,
            stage::pem(&s.old).into_bytes(),
            false,
        )?;
        signer_flag_to(root, f, &mut changes, &f.cert, signer)?;
    }
    set(
        root,
        &mut changes,
        &f.cert,
        files::bundle_pem(&[&s.old, &s.new]).into_bytes(),
        false,
    )?;
    kubeconfigs_to(root, node, f, &mut changes, &[&s.old, &s.new])?;
    Ok(changes)
}

pub(super) fn issue_changes(
    ctx: &Ctx<'_>,
    node: &NodeModel,
    f: &CaFiles,
    j: &mut RotationJournal,
    s: &Staged,
) -> Result<Vec<FileChange>, RotationError> {
    let root = ctx.root;
    let dir = journal::rotation_dir(ctx.state, f.name);
    let mut changes = Vec::new();
    let new_key = read_key(root, &dir.join(NEW_KEY))?;
    if !new_key.matches(&s.new) {
        // It becomes the CA key: one that does not match the staged CA is not ours.
        return Err(RotationError::Node {
            path: dir.join(NEW_KEY),
            problem: format!(
                "does not match the staged new CA {}: the staged key was changed",
                dir.join(NEW_CERT).display()
            ),
        });
    }
    let key_pem = new_key.to_pem().map_err(|e| RotationError::Node {
        path: dir.join(NEW_KEY),
        problem: e.to_string(),
    })?;
    set(
        root,
        &mut changes,
        &f.key,
        key_pem.as_bytes().to_vec(),
        true,
    )?;
    set(
        root,
        &mut changes,
        &f.cert,
        files::bundle_pem(&[&s.new, &s.old]).into_bytes(),
        false,
    )?;
    if let (Some(signer), true) = (&f.signer, j.signer_flag_moved) {
        set(
            root,
            &mut changes,
            signer,
            stage::pem(&s.new).into_bytes(),
            false,
        )?;
        signer_flag_to(root, f, &mut changes, &f.cert, signer)?;
    }
    // Every leaf of this CA from the new one, as a renewal would issue it (same
    // identity, new key), then the kubeconfigs' CA data on top of the client
    // certificates just re-issued into them.
    merge_issued(&mut changes, issue_leaves(ctx, node, f, s, &dir)?);
    kubeconfigs_to(root, node, f, &mut changes, &[&s.old, &s.new])?;
    // Serving chains: leaf, then X, for clients that trust only the old CA.
    for path in &f.serving {
        if !root.exists(path) {
            continue;
        }
        let cross = s.cross.clone();
        edit(root, &mut changes, path, false, |b| {
            let certs = files::certs_of(path, b)?;
            let Some(leaf) = certs.first() else {
                return Ok(None);
            };
            let mut chain = vec![leaf];
            chain.extend(
                certs[1..]
                    .iter()
                    .filter(|c| cross.as_ref().is_none_or(|x| x.der != c.der)),
            );
            if let Some(x) = &cross {
                chain.insert(1, x);
            }
            let new = files::bundle_pem(&chain).into_bytes();
            Ok((new != b).then_some(new))
        })?;
    }
    for c in &changes {
        let known = j.backups.iter().any(|b| b.path == c.path);
        if !known && !root.exists(&c.path) && !j.created.contains(&c.path) {
            j.created.push(c.path.clone());
        }
    }
    Ok(changes)
}

/// The changes that re-issue every leaf of this CA the new one does not sign yet:
/// through the plan, as `renew --ca-cert new-ca.crt --ca-key new-ca.key` of those
/// leaves would (a forced plan, the staged CA given and replacing the old issuer), and
/// [`crate::issue::prepare_planned`], the pass's own issuing path.
fn issue_leaves(
    ctx: &Ctx<'_>,
    node: &NodeModel,
    f: &CaFiles,
    s: &Staged,
    dir: &Path,
) -> Result<Vec<FileChange>, RotationError> {
    let mut inv = node.inventory.clone();
    inv.certificates
        .retain(|o| files::leaf_of(o, f.name).is_some_and(|r| !r.cert.is_signed_by(&s.new)));
    let given = CaOverride {
        cert: dir.join(NEW_CERT),
        key: dir.join(NEW_KEY),
        // From the old CA to the new: the operator's explicit choice.
        replaces_issuer: true,
    };
    let plan = crate::plan::forced(ctx.settings, &inv, Some(&given), ctx.now);
    let mut cas = Authorities::new(ctx.root, ctx.settings, &plan.authorities, ctx.now);
    let mut changes = Vec::new();
    for t in plan.groups.iter().flat_map(|g| &g.targets) {
        let prepared = issue::prepare_planned(t, &mut cas, ctx.settings, None, false, ctx.now)?;
        for w in &prepared.warnings {
            tracing::warn!("{w}");
        }
        changes.extend(prepared.changes);
    }
    Ok(changes)
}

pub(super) fn finish_changes(
    ctx: &Ctx<'_>,
    node: &NodeModel,
    f: &CaFiles,
    j: &RotationJournal,
    s: &Staged,
    dir: &Path,
) -> Result<Vec<FileChange>, RotationError> {
    let root = ctx.root;
    // Nothing of the old CA may be left in use: it stops being trusted now.
    let stale: Vec<String> = files::leaves(&node.inventory, f.name)
        .into_iter()
        .filter(|(_, r)| !r.cert.is_signed_by(&s.new))
        .map(|(o, r)| format!("{} ({})", o.target.name, r.cert_file.display()))
        .collect();
    if !stale.is_empty() {
        return Err(RotationError::Refused(format!(
            "{}: still issued by the old CA, which finish stops trusting: {}; run `ca rotate {} issue` again",
            f.name,
            stale.join(", "),
            f.name
        )));
    }
    // The old key is archived, not deleted: an emergency re-add stays possible.
    let archived = dir.join(ARCHIVED_KEY);
    if let Some(copy) = j
        .backups
        .iter()
        .find(|b| b.path == f.key)
        .and_then(|b| b.copy.clone())
    {
        write_state_file(root, &archived, &read_bytes(root, &copy)?, 0o600)?;
    }
    let mut changes = Vec::new();
    set(
        root,
        &mut changes,
        &f.cert,
        stage::pem(&s.new).into_bytes(),
        false,
    )?;
    if let (Some(signer), true) = (&f.signer, j.signer_flag_moved) {
        // Back to kubeadm's manifest: ca.crt is a single certificate again.
        signer_flag_to(root, f, &mut changes, signer, &f.cert)?;
    }
    kubeconfigs_to(root, node, f, &mut changes, &[&s.new])?;
    for path in &f.serving {
        if !root.exists(path) {
            continue;
        }
        let cross = s.cross.clone();
        edit(root, &mut changes, path, false, |b| {
            let certs = files::certs_of(path, b)?;
            let kept: Vec<&CertFacts> = certs
                .iter()
                .filter(|c| cross.as_ref().is_none_or(|x| x.der != c.der))
                .collect();
            let new = files::bundle_pem(&kept).into_bytes();
            Ok((new != b).then_some(new))
        })?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::kubeconfig::{
        clusters, parse, replace_embedded, ClientCredential, ClusterTrust,
    };

    fn ca_data(bytes: &[u8]) -> Vec<u8> {
        let entries = clusters(bytes, Path::new("/admin.conf")).unwrap();
        match &entries[0].trust {
            ClusterTrust::Embedded { pem, .. } => pem.clone(),
            t => panic!("not embedded: {t:?}"),
        }
    }

    fn content(c: &FileChange) -> &[u8] {
        match &c.content {
            NewContent::File(b) => b,
            _ => panic!("not a file"),
        }
    }

    /// A kubeconfig both re-issued (its client certificate) and a copy of the CA (its
    /// CA data): the renewal's change, built from the file as read, collapsed CA data
    /// and all, must keep its client certificate and get the phase's bundle.
    #[test]
    fn the_bundle_is_edited_on_top_of_a_re_issued_kubeconfig() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let admin = PathBuf::from("/etc/kubernetes/admin.conf");
        let now = root.read(&admin).unwrap();
        let cluster = clusters(&now, &admin).unwrap()[0].name.clone();
        let issued = replace_embedded(&now, &admin, b"NEW CLIENT", b"NEW KEY").unwrap();
        let mut changes = vec![FileChange::file(
            &admin,
            b"planned earlier".to_vec(),
            0o600,
            true,
        )];
        merge_issued(
            &mut changes,
            vec![FileChange {
                staged_name: Some("kept".into()),
                ..FileChange::file(&admin, issued.clone(), 0o600, true)
            }],
        );
        assert_eq!(changes.len(), 1, "one change per file: the renewal's");
        let never = |p: &Path| -> Result<Vec<u8>, RotationError> {
            panic!("{}: read, though the change set writes it", p.display())
        };
        with_cluster_ca(
            &mut changes,
            &[(admin.clone(), cluster.clone())],
            b"OLD+NEW BUNDLE",
            &never,
        )
        .unwrap();
        let written = content(&changes[0]);
        assert_eq!(ca_data(written), b"OLD+NEW BUNDLE");
        let client = |b: &[u8]| match parse(b, &admin).unwrap().credential {
            ClientCredential::Embedded {
                cert_pem, key_pem, ..
            } => (cert_pem, key_pem),
            c => panic!("not embedded: {c:?}"),
        };
        assert_eq!(
            client(written),
            (b"NEW CLIENT".to_vec(), Some(b"NEW KEY".to_vec())),
            "the re-issued client certificate stays"
        );
        assert_eq!(changes[0].staged_name.as_deref(), Some("kept"));
        // A kubeconfig the change set does not write is edited from the file now; one
        // that already holds the bundle is left alone.
        let mut changes = Vec::new();
        let from_node = |p: &Path| Ok(root.read(p).unwrap());
        with_cluster_ca(
            &mut changes,
            &[(admin.clone(), cluster.clone())],
            b"B",
            &from_node,
        )
        .unwrap();
        assert_eq!(ca_data(content(&changes[0])), b"B");
        let mut again = changes.clone();
        with_cluster_ca(&mut again, &[(admin, cluster)], b"B", &from_node).unwrap();
        assert_eq!(content(&again[0]), content(&changes[0]));
    }
}
