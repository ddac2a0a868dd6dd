//! The targets a `renew` or `cert-renew` argument names: `status`'s names, kubeadm's,
//! or node paths, detected from their content when the layout does not know them.

use std::path::{Path, PathBuf};

use super::*;

/// kubeadm's names for targets whose node name differs (`kubeadm certs renew etcd-server`).
const KUBEADM_ALIASES: &[(&str, &str)] = &[
    ("etcd-server", "etcd/server"),
    ("etcd-peer", "etcd/peer"),
    ("etcd-healthcheck-client", "etcd/healthcheck-client"),
];

/// A target argument of `renew` or `cert-renew` that names nothing on this node.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("{arg}: not a target of this node; valid names: {valid} (or a node path of a certificate or kubeconfig)")]
    UnknownName { arg: String, valid: String },
    #[error("{}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
}

/// The targets `args` name, in order: the names `status` prints, kubeadm's names
/// (`etcd-server`, ...), or node paths (a certificate, its key, a kubeconfig, the file
/// behind the kubelet's symlink). A path that is no target of the layout is taken by
/// its content: a certificate with its key inside or `.key` beside it, else a
/// kubeconfig.
pub fn select(
    layout: &Layout,
    root: &NodeRoot,
    args: &[PathBuf],
) -> Result<Vec<Target>, SelectError> {
    args.iter().map(|a| select_one(layout, root, a)).collect()
}

fn select_one(layout: &Layout, root: &NodeRoot, arg: &Path) -> Result<Target, SelectError> {
    let text = arg.to_string_lossy();
    let name = KUBEADM_ALIASES
        .iter()
        .find(|(alias, _)| *alias == text)
        .map_or(text.as_ref(), |(_, name)| name);
    if let Some(t) = layout.targets.iter().find(|t| t.name == name) {
        return Ok(t.clone());
    }
    let path = crate::node::normalize(arg);
    let resolved = root.resolve(&path).unwrap_or_else(|_| path.clone());
    for t in &layout.targets {
        if t.path == path
            || t.key.as_deref() == Some(path.as_path())
            || root.resolve(&t.path).ok().as_deref() == Some(resolved.as_path())
        {
            return Ok(t.clone());
        }
    }
    if !arg.is_absolute() && !root.exists(&path) {
        let mut valid: Vec<&str> = layout.targets.iter().map(|t| t.name.as_str()).collect();
        valid.extend(KUBEADM_ALIASES.iter().map(|(a, _)| *a));
        return Err(SelectError::UnknownName {
            arg: text.into_owned(),
            valid: valid.join(", "),
        });
    }
    detect(root, &path)
}

/// A target for a file the layout does not know, from what the file holds.
fn detect(root: &NodeRoot, path: &Path) -> Result<Target, SelectError> {
    let unusable = |reason: String| SelectError::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    let (_, bytes) = root.read_file(path).map_err(|e| SelectError::Unusable {
        path: e.path.clone(),
        reason: e.problem.to_string(),
    })?;
    let base = |kind, key| Target {
        name: path.display().to_string(),
        kind,
        path: path.to_path_buf(),
        key,
        component: None,
        optional: false,
        window: Default::default(),
        handover: None,
        serving: None,
        conflict: None,
    };
    let has = |marker: &[u8]| bytes.windows(marker.len()).any(|w| w == marker);
    if !has(b"-----BEGIN CERTIFICATE-----") {
        return Ok(base(TargetKind::Kubeconfig, None));
    }
    if has(b"PRIVATE KEY-----") {
        // Certificate and key in one file; behind a symlink, the kubelet's scheme.
        return Ok(if root.is_symlink(path) {
            base(TargetKind::KubeletClient, None)
        } else {
            base(TargetKind::Certificate, Some(path.to_path_buf()))
        });
    }
    let key = path.with_extension("key");
    if !root.exists(&key) {
        return Err(unusable(format!(
            "no private key in the file and no {} beside it",
            key.display()
        )));
    }
    // The kubelet's serving certificate by its name: its bundled throwaway CA is renewed
    // with it (a chain in any other file is an intermediate CA, kept as it is).
    let kind = if path.file_name().is_some_and(|n| n == "kubelet.crt") {
        TargetKind::KubeletServing
    } else {
        TargetKind::Certificate
    };
    Ok(base(kind, Some(key)))
}
