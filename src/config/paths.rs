//! The agent's own paths (state directory, metrics file) must stay clear of what it
//! renews and of what the kubelet reads: a metrics file named like ca.crt would be
//! overwritten with metrics text, a state directory in the manifests directory would
//! hand the kubelet a lock, a journal and backups as pods.

use std::path::{Path, PathBuf};

use super::{InvalidValue, Settings};

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
    if let Some((what, p)) = for_state.iter().find(|(_, m)| within(&state, m)) {
        return Err(InvalidValue::new(
            "state_dir",
            &s.state_dir,
            format!(
                "inside {what} ({}), which the kubelet or the agent's renewals read: \
                 the state directory (lock, write-ahead record, backups) needs a \
                 directory of its own, such as /var/lib/cert-rotator",
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
}
