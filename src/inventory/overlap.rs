//! One file, two targets: kubelet.crt where the kubelet's configuration puts it
//! (`tlsCertFile: /etc/kubernetes/pki/apiserver.crt`), or a directory `[[extra]]` over
//! kubeadm's pki directory, would have one pass write two certificates into the same
//! file, or a leaf into a CA's. The later target is refused (it is neither read nor
//! renewed), naming the file and whose it is; the configuration refuses what it can
//! see on its own (config::paths). A people's kubeconfig that is a symlink to another
//! kubeconfig target (`/root/.kube/config -> /etc/kubernetes/admin.conf`) is that
//! target: listed and renewed once, as it.

use std::path::{Path, PathBuf};

use super::{AuthorityDef, Target};
use crate::model::TargetKind;
use crate::node::kubelet_config::KUBELET_CONFIG;
use crate::node::{normalize, NodeRoot};

/// Marks each target one of whose files an earlier target or a CA has (`conflict`), and
/// drops the kubeconfigs `is_alias` allows to be another kubeconfig target's symlink.
pub(super) fn refuse_shared_files(
    targets: &mut Vec<Target>,
    authorities: &[AuthorityDef],
    root: &NodeRoot,
    is_alias: impl Fn(&Target) -> bool,
) {
    // Where renewals write: at the end of the file's symlinks (issue writes the file
    // the inventory read).
    let at = |p: &Path| root.resolve(p).unwrap_or_else(|_| normalize(p));
    let mut taken: Vec<(PathBuf, String)> = Vec::new();
    for a in authorities {
        taken.push((at(&a.cert), format!("the {} CA's certificate", a.name)));
        taken.push((at(&a.key), format!("the {} CA's key", a.name)));
    }
    // (resolved path, target) of the kubeconfig targets kept so far.
    let mut kubeconfigs: Vec<(PathBuf, String)> = Vec::new();
    let mut kept = Vec::with_capacity(targets.len());
    for mut t in targets.drain(..) {
        let path = at(&t.path);
        if is_alias(&t) {
            if let Some((_, name)) = kubeconfigs.iter().find(|(p, _)| *p == path) {
                tracing::debug!(target = %t.name, file = %path.display(), "a symlink to {name}: renewed as {name}");
                continue;
            }
        }
        let mut files = vec![("certificate", &t.path, path.clone())];
        if let Some(k) = t.key.as_ref().filter(|k| **k != t.path) {
            files.push(("key", k, at(k)));
        }
        // What is there but no file (a device, a directory) is left to the read,
        // which says what it is.
        let writable = |r: &Path| {
            root.symlink_metadata(r)
                .map_or(true, |m| m.is_none_or(|m| m.is_file()))
        };
        let clash = files.iter().find_map(|(what, p, r)| {
            let (_, whose) = taken.iter().find(|(q, _)| q == r)?;
            writable(r).then(|| shared(&t, what, p, r, whose))
        });
        match clash {
            Some(conflict) => t.conflict = Some(conflict),
            None => {
                for (what, _, r) in files {
                    taken.push((r, format!("{}'s {what}", t.name)));
                }
                if t.kind == TargetKind::Kubeconfig {
                    kubeconfigs.push((path, t.name.clone()));
                }
            }
        }
        kept.push(t);
    }
    *targets = kept;
}

/// What the refused target is told: its file, whose it is, and where its path was set
/// when that is not the configuration.
fn shared(t: &Target, what: &str, asked: &Path, resolved: &Path, whose: &str) -> String {
    let at = if asked == resolved {
        String::new()
    } else {
        format!(" (at {})", resolved.display())
    };
    let from = if t.kind == TargetKind::KubeletServing {
        format!(" (as tlsCertFile and tlsPrivateKeyFile in {KUBELET_CONFIG} name them)")
    } else {
        String::new()
    };
    format!(
        "{}{at}: {}'s {what} file{from} is also {whose}: one file cannot be two targets, \
         {} is not renewed until it has files of its own",
        asked.display(),
        t.name,
        t.name
    )
}

#[cfg(test)]
mod tests {
    use super::super::{layout, read, TargetState};
    use crate::config::{ExtraKind, ExtraTarget, Settings};

    fn conflicts(l: &super::super::Layout) -> Vec<(String, String)> {
        l.targets
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.conflict.clone()?)))
            .collect()
    }

    #[test]
    fn kubelet_crt_at_the_apiserver_s_files_is_refused_naming_the_file() {
        let (d, root) = crate::fixture::temp_control_plane();
        let s = Settings::default();
        assert!(conflicts(&layout(&s, &root)).is_empty());
        std::fs::write(
            d.path().join("var/lib/kubelet/config.yaml"),
            "kind: KubeletConfiguration\ntlsCertFile: /etc/kubernetes/pki/apiserver.crt\n\
             tlsPrivateKeyFile: /srv/kubelet.key\n",
        )
        .unwrap();
        let l = layout(&s, &root);
        let found = conflicts(&l);
        assert_eq!(found.len(), 1, "{found:?}");
        let (name, why) = &found[0];
        assert_eq!(name, "kubelet.crt");
        assert_eq!(
            why,
            "/etc/kubernetes/pki/apiserver.crt: kubelet.crt's certificate file (as tlsCertFile \
             and tlsPrivateKeyFile in /var/lib/kubelet/config.yaml name them) is also \
             apiserver's certificate: one file cannot be two targets, kubelet.crt is not \
             renewed until it has files of its own"
        );
        // Read as an error, never as the apiserver's certificate; the apiserver's stays.
        let inv = read(&l, &root);
        let state = |n: &str| {
            &inv.certificates
                .iter()
                .find(|o| o.target.name == n)
                .unwrap()
                .state
        };
        assert!(matches!(state("kubelet.crt"), TargetState::Error(e) if e == why));
        assert!(matches!(state("apiserver"), TargetState::Read(_)));
    }

    #[test]
    fn a_ca_s_file_or_one_behind_a_symlink_is_refused_and_a_kubeconfig_alias_renewed_once() {
        let (d, root) = crate::fixture::temp_control_plane();
        let pki = d.path().join("etc/kubernetes/pki");
        std::os::unix::fs::symlink("/etc/kubernetes/pki/ca.crt", pki.join("link.crt")).unwrap();
        std::os::unix::fs::symlink("/etc/kubernetes/pki", d.path().join("srv")).unwrap();
        let kube = d.path().join("root/.kube/config");
        std::fs::remove_file(&kube).unwrap();
        std::os::unix::fs::symlink("/etc/kubernetes/admin.conf", &kube).unwrap();
        let extra = |name: &str, path: &str, key: &str| ExtraTarget {
            name: name.into(),
            kind: ExtraKind::Certificate,
            path: path.into(),
            key: Some(key.into()),
            component: None,
            remaining_fraction: None,
            remaining_days: None,
        };
        let s = Settings {
            extra: vec![
                extra(
                    "a",
                    "/etc/kubernetes/pki/link.crt",
                    "/etc/kubernetes/pki/a.key",
                ),
                extra(
                    "b",
                    "/etc/kubernetes/pki/b.crt",
                    "/srv/front-proxy-client.key",
                ),
            ],
            ..Settings::default()
        };
        let l = layout(&s, &root);
        let found = conflicts(&l);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].1.starts_with(
                "/etc/kubernetes/pki/link.crt (at /etc/kubernetes/pki/ca.crt): a's certificate \
                 file is also the ca CA's certificate:"
            ),
            "{found:?}"
        );
        assert!(
            found[1].1.starts_with(
                "/srv/front-proxy-client.key (at /etc/kubernetes/pki/front-proxy-client.key): \
                 b's key file is also front-proxy-client's key:"
            ),
            "{found:?}"
        );
        // /root/.kube/config -> admin.conf: admin.conf, once.
        assert!(l.targets.iter().any(|t| t.name == "admin.conf"));
        assert!(!l.targets.iter().any(|t| t.name == "/root/.kube/config"));
    }
}
