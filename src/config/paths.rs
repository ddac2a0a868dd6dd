//! The agent's own paths (state directory, metrics file) must stay clear of what it
//! renews and of what the kubelet reads: a metrics file named like ca.crt would be
//! overwritten with metrics text, a state directory in the manifests directory would
//! hand the kubelet a lock, a journal and backups as pods, and one that holds them
//! (`/`, `/etc`) would put its records and backups among them. The targets' own files
//! must not overlap either: one file renewed as two targets gets two certificates in
//! one pass. And at least one backup generation is kept, or a rollback restores nothing.

use std::path::{Path, PathBuf};

use super::{ExtraKind, InvalidValue, KubeadmPaths, Settings};

/// Where the kubelet keeps its own files (config.yaml, pki, pods).
const KUBELET_DIR: &str = "/var/lib/kubelet";
/// kubeadm's directory, whatever `kubeadm.kubeconfig_dir` says.
const KUBEADM_DIR: &str = "/etc/kubernetes";
/// The kubeconfigs kubeadm writes into `kubeadm.kubeconfig_dir`.
const KUBECONFIGS: [&str; 5] = [
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "kubelet.conf",
];

/// What the agent renews or the kubelet reads, with the key or role that names it.
fn managed(s: &Settings) -> Vec<(String, PathBuf)> {
    let k = &s.kubeadm;
    let mut v = vec![
        ("kubeadm.pki_dir".to_string(), k.pki_dir.clone()),
        ("kubeadm.manifests_dir".into(), k.manifests_dir.clone()),
        ("kubeadm.kubelet_pki_dir".into(), k.kubelet_pki_dir.clone()),
        ("the kubelet's directory".into(), KUBELET_DIR.into()),
    ];
    for name in KUBECONFIGS {
        v.push((format!("kubeadm's {name}"), k.kubeconfig_dir.join(name)));
    }
    for (i, p) in k.user_kubeconfigs.iter().enumerate() {
        v.push((format!("kubeadm.user_kubeconfigs[{i}]"), p.clone()));
    }
    for (i, x) in s.extra.iter().enumerate() {
        v.push((format!("extra[{i}].path"), x.path.clone()));
        if let Some(key) = &x.key {
            v.push((format!("extra[{i}].key"), key.clone()));
        }
    }
    v
}

/// `p` is `dir` or lies inside it.
fn within(p: &Path, dir: &Path) -> bool {
    p.starts_with(dir)
}

/// Checks `state_dir` and `metrics_file` against the managed paths, every path passed
/// through `resolve` first (folding `..`, and on load also following the node's links).
pub(super) fn check(s: &Settings, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<(), InvalidValue> {
    // The same paths come up again and again (pki/ for a dozen files): each is asked of
    // the node once per check, as every command loads the settings.
    let known = std::cell::RefCell::new(std::collections::HashMap::<PathBuf, PathBuf>::new());
    let once = |p: &Path| -> PathBuf {
        if let Some(r) = known.borrow().get(p) {
            return r.clone();
        }
        let r = resolve(p);
        known.borrow_mut().insert(p.to_path_buf(), r.clone());
        r
    };
    let resolve: &dyn Fn(&Path) -> PathBuf = &once;
    if s.keep_backups == 0 {
        return Err(InvalidValue::new(
            "keep_backups",
            s.keep_backups,
            "must be at least 1: a pass rolls a failed component back from the backup \
             generation it made, which 0 would delete as soon as it is made",
        ));
    }
    check_targets(s, resolve)?;
    let managed: Vec<(String, PathBuf)> = managed(s)
        .into_iter()
        .map(|(what, p)| (what, resolve(&p)))
        .collect();
    let state = resolve(&s.state_dir);
    let mut for_state = managed.clone();
    for_state.push((
        "kubeadm.kubeconfig_dir".into(),
        resolve(&s.kubeadm.kubeconfig_dir),
    ));
    for_state.push((
        "kubeadm's directory".into(),
        resolve(Path::new(KUBEADM_DIR)),
    ));
    let own = "the state directory (lock, write-ahead record, backups) needs a directory \
               of its own, such as /var/lib/cert-rotator";
    if state == Path::new("/") {
        return Err(InvalidValue::new(
            "state_dir",
            &s.state_dir,
            format!("is the node's root, which holds every file the agent renews: {own}"),
        ));
    }
    if let Some((what, p)) = for_state.iter().find(|(_, m)| within(&state, m)) {
        return Err(InvalidValue::new(
            "state_dir",
            &s.state_dir,
            format!(
                "inside {what} ({}), which the kubelet or the agent's renewals read: {own}",
                p.display()
            ),
        ));
    }
    if let Some((what, p)) = for_state.iter().find(|(_, m)| within(m, &state)) {
        return Err(InvalidValue::new(
            "state_dir",
            &s.state_dir,
            format!(
                "holds {what} ({}), which the kubelet or the agent's renewals read: {own}",
                p.display()
            ),
        ));
    }
    if s.metrics_file.as_os_str().is_empty() {
        return Ok(());
    }
    let metrics = resolve(&s.metrics_file);
    if let Some((what, p)) = managed.iter().find(|(_, m)| within(&metrics, m)) {
        return Err(InvalidValue::new(
            "metrics_file",
            &s.metrics_file,
            format!(
                "{} {what} ({}): writing metrics there would overwrite a file the \
                 kubelet or the agent's renewals read; point it into node_exporter's \
                 textfile directory",
                if metrics == *p { "is" } else { "inside" },
                p.display()
            ),
        ));
    }
    let records = [
        "journal.json",
        "history.json",
        "last-pass.json",
        "lock",
        "restart-lock.json",
        "kubeadm-skipped.json",
    ];
    if metrics == state
        || within(&metrics, &state.join("backup"))
        || records.iter().any(|r| metrics == state.join(r))
    {
        return Err(InvalidValue::new(
            "metrics_file",
            &s.metrics_file,
            "is one of the state directory's own records or backups",
        ));
    }
    Ok(())
}

/// The files kubeadm's targets and CAs are written to (at kubeadm's names, as the
/// settings place them), by what they are.
fn kubeadm_files(k: &KubeadmPaths) -> Vec<(String, PathBuf)> {
    let mut v = Vec::new();
    let mut pair = |what: &str, dir: &Path, cert: &str, key: &str| {
        v.push((format!("{what}'s certificate"), dir.join(cert)));
        v.push((format!("{what}'s key"), dir.join(key)));
    };
    for &name in crate::model::KUBEADM_TARGET_NAMES {
        if name == "kubelet.crt" {
            pair(name, &k.kubelet_pki_dir, name, "kubelet.key");
        } else if !name.ends_with(".conf") && !name.ends_with(".pem") {
            pair(
                name,
                &k.pki_dir,
                &format!("{name}.crt"),
                &format!("{name}.key"),
            );
        }
    }
    for ca in ["ca", "front-proxy-ca", "etcd/ca"] {
        pair(ca, &k.pki_dir, &format!("{ca}.crt"), &format!("{ca}.key"));
    }
    for sa in ["sa.pub", "sa.key"] {
        v.push((format!("kubeadm's {sa}"), k.pki_dir.join(sa)));
    }
    for &name in crate::model::KUBEADM_TARGET_NAMES {
        if name.ends_with(".conf") {
            v.push((format!("kubeadm's {name}"), k.kubeconfig_dir.join(name)));
        } else if name.ends_with(".pem") {
            v.push((name.to_string(), k.kubelet_pki_dir.join(name)));
        }
    }
    v
}

/// The files the configured targets are written to: (key, its value, what the file is).
fn configured_files(s: &Settings) -> Vec<(String, PathBuf, String, PathBuf)> {
    let mut v = Vec::new();
    for (i, p) in s.kubeadm.user_kubeconfigs.iter().enumerate() {
        let key = format!("kubeadm.user_kubeconfigs[{i}]");
        v.push((key.clone(), p.clone(), key, p.clone()));
    }
    for (i, x) in s.extra.iter().enumerate() {
        let path_key = format!("extra[{i}].path");
        match x.kind {
            // Its files are found on the node: the layout checks those.
            ExtraKind::Directory => {}
            ExtraKind::Kubeconfig => {
                v.push((path_key.clone(), x.path.clone(), path_key, x.path.clone()))
            }
            ExtraKind::Certificate => {
                v.push((
                    path_key.clone(),
                    x.path.clone(),
                    path_key.clone(),
                    x.path.clone(),
                ));
                v.push(match &x.key {
                    Some(k) => (
                        format!("extra[{i}].key"),
                        k.clone(),
                        format!("extra[{i}].key"),
                        k.clone(),
                    ),
                    None => {
                        let k = x.path.with_extension("key");
                        let what = format!(
                            "its key file {} (the path with .key: no key is set)",
                            k.display()
                        );
                        (path_key, x.path.clone(), what, k)
                    }
                });
            }
        }
    }
    v
}

/// Refuses a configured target whose certificate, key or kubeconfig is already another
/// target's (or a CA's) file, directories' symlinks followed: naming both.
fn check_targets(s: &Settings, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<(), InvalidValue> {
    // The entry written: a rename replaces a symlink at the file itself.
    let entry = |p: &Path| match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => resolve(dir).join(name),
        _ => resolve(p),
    };
    let mut seen: Vec<(String, PathBuf)> = kubeadm_files(&s.kubeadm)
        .into_iter()
        .map(|(what, p)| (what, entry(&p)))
        .collect();
    for (key, value, what, file) in configured_files(s) {
        let e = entry(&file);
        if let Some((other, _)) = seen.iter().find(|(_, f)| *f == e) {
            let what = if what == key {
                String::new()
            } else {
                format!("{what} ")
            };
            return Err(InvalidValue::new(
                key,
                value,
                format!(
                    "{what}is also {other} ({}): one file cannot be two targets (a pass \
                     would write two certificates into it); give each target files of its own",
                    e.display()
                ),
            ));
        }
        seen.push((what, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::normalize;

    fn check_lexical(s: &Settings) -> Result<(), InvalidValue> {
        check(s, &|p: &Path| normalize(p))
    }

    #[test]
    fn defaults_pass() {
        check_lexical(&Settings::default()).unwrap();
    }

    #[test]
    fn managed_files_and_directories_are_refused_naming_the_key() {
        for (state, metrics, key) in [
            ("/etc/kubernetes/manifests", "", "state_dir"),
            ("/etc/kubernetes", "", "state_dir"),
            ("/etc/kubernetes/pki/../agent", "", "state_dir"),
            ("/var/lib/kubelet/cert-rotator", "", "state_dir"),
            (
                "/var/lib/cert-rotator",
                "/etc/kubernetes/pki/ca.crt",
                "metrics_file",
            ),
            (
                "/var/lib/cert-rotator",
                "/etc/kubernetes/admin.conf",
                "metrics_file",
            ),
            (
                "/var/lib/cert-rotator",
                "/var/lib/kubelet/config.yaml",
                "metrics_file",
            ),
            (
                "/var/lib/cert-rotator",
                "/var/lib/kubelet/pki/x.prom",
                "metrics_file",
            ),
            (
                "/var/lib/cert-rotator",
                "/root/.kube/config",
                "metrics_file",
            ),
            (
                "/var/lib/cert-rotator",
                "/var/lib/cert-rotator/journal.json",
                "metrics_file",
            ),
        ] {
            let s = Settings {
                state_dir: state.into(),
                metrics_file: metrics.into(),
                ..Settings::default()
            };
            let e = check_lexical(&s).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().starts_with(&format!("{key} = \"")), "{e}");
        }
        let s = Settings {
            metrics_file: "/var/lib/node_exporter/textfile/cert-rotator.prom".into(),
            state_dir: "/srv/cert-rotator".into(),
            ..Settings::default()
        };
        check_lexical(&s).unwrap();
    }

    #[test]
    fn a_state_dir_holding_managed_paths_is_refused_naming_it() {
        for (state, holds) in [
            ("/", "is the node's root"),
            ("/etc", "holds kubeadm.pki_dir (/etc/kubernetes/pki)"),
            (
                "/var/lib",
                "holds kubeadm.kubelet_pki_dir (/var/lib/kubelet/pki)",
            ),
            ("/var", "holds kubeadm.kubelet_pki_dir"),
            (
                "/root",
                "holds kubeadm.user_kubeconfigs[0] (/root/.kube/config)",
            ),
        ] {
            let s = Settings {
                state_dir: state.into(),
                metrics_file: "".into(),
                ..Settings::default()
            };
            let e = check_lexical(&s).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("state_dir = \"{state}\": {holds}")),
                "{e}"
            );
            assert!(e.contains("a directory of its own"), "{e}");
        }
    }

    #[test]
    fn at_least_one_backup_generation_is_kept() {
        let s = Settings {
            keep_backups: 0,
            ..Settings::default()
        };
        let e = check_lexical(&s).unwrap_err();
        assert_eq!(e.key, "keep_backups");
        assert!(
            e.to_string()
                .starts_with("keep_backups = 0: must be at least 1"),
            "{e}"
        );
        check_lexical(&Settings {
            keep_backups: 1,
            ..Settings::default()
        })
        .unwrap();
    }

    fn extra(kind: ExtraKind, path: &str, key: Option<&str>) -> super::super::ExtraTarget {
        super::super::ExtraTarget {
            name: format!("x{path}"),
            kind,
            path: path.into(),
            key: key.map(PathBuf::from),
            component: None,
            remaining_fraction: None,
            remaining_days: None,
        }
    }

    #[test]
    fn one_file_as_two_targets_is_refused_naming_both() {
        use ExtraKind::*;
        for (extras, key, says) in [
            (
                vec![extra(Certificate, "/etc/kubernetes/pki/apiserver.crt", Some("/srv/a.key"))],
                "extra[0].path",
                "is also apiserver's certificate (/etc/kubernetes/pki/apiserver.crt)",
            ),
            (
                vec![extra(Certificate, "/etc/kubernetes/pki/../pki/ca.crt", Some("/srv/a.key"))],
                "extra[0].path",
                "is also ca's certificate (/etc/kubernetes/pki/ca.crt)",
            ),
            (
                vec![extra(Certificate, "/srv/x.crt", Some("/etc/kubernetes/pki/etcd/peer.key"))],
                "extra[0].key",
                "is also etcd/peer's key",
            ),
            (
                vec![extra(Certificate, "/etc/kubernetes/pki/sa.crt", None)],
                "extra[0].path",
                "its key file /etc/kubernetes/pki/sa.key (the path with .key: no key is set) is also kubeadm's sa.key",
            ),
            (
                vec![extra(Kubeconfig, "/etc/kubernetes/admin.conf", None)],
                "extra[0].path",
                "is also kubeadm's admin.conf",
            ),
            (
                vec![extra(Kubeconfig, "/srv/a.conf", None), extra(Kubeconfig, "/srv/a.conf", None)],
                "extra[1].path",
                "is also extra[0].path (/srv/a.conf)",
            ),
            (
                vec![extra(Certificate, "/srv/a.crt", None), extra(Certificate, "/srv/b.crt", Some("/srv/a.key"))],
                "extra[1].key",
                "is also its key file /srv/a.key",
            ),
            (
                vec![extra(Kubeconfig, "/root/.kube/config", None)],
                "extra[0].path",
                "is also kubeadm.user_kubeconfigs[0]",
            ),
        ] {
            let s = Settings {
                extra: extras,
                ..Settings::default()
            };
            let e = check_lexical(&s).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().contains(says), "{e}");
            assert!(e.to_string().contains("one file cannot be two targets"), "{e}");
        }
        // Files of their own, and a directory (whose files the layout checks), pass.
        let s = Settings {
            extra: vec![
                extra(Certificate, "/etc/kubernetes/pki/kube-vip.crt", None),
                extra(Kubeconfig, "/etc/kubernetes/kube-vip.conf", None),
                extra(Directory, "/etc/kubernetes/pki", None),
            ],
            ..Settings::default()
        };
        check_lexical(&s).unwrap();
    }
}
