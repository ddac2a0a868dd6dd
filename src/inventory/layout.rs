//! Which targets and CAs a node has, from the settings and what exists under the root:
//! control plane or worker, stacked etcd or not, kubelet.conf embedded or pointing at
//! the kubelet's symlink, and the configured extras.

use std::path::PathBuf;

use super::*;
use crate::inventory::overlap;

/// Decides the node's targets from the settings and what exists under the root.
pub fn layout(settings: &Settings, root: &NodeRoot) -> Layout {
    layout_in(settings, &super::NodeFiles::new(root))
}

/// [`layout`] within one reading of the node: the kubeconfigs it looks at are read once
/// for the inventory too.
pub fn layout_in(settings: &Settings, files: &super::NodeFiles<'_>) -> Layout {
    let root = files.root();
    let k = &settings.kubeadm;
    let pki = &k.pki_dir;
    let confs = &k.kubeconfig_dir;
    let kubelet_pki = &k.kubelet_pki_dir;
    let control_plane = root.exists(&pki.join("apiserver.crt"))
        || root.exists(&pki.join("ca.key"))
        || root.exists(&k.manifests_dir.join("kube-apiserver.yaml"));
    let stacked_etcd = root.exists(&pki.join("etcd/ca.crt"));
    let mut targets = Vec::new();
    let mut add = |name: &str,
                   kind: TargetKind,
                   path: PathBuf,
                   key: Option<PathBuf>,
                   component: Option<Component>,
                   optional: bool| {
        targets.push(Target {
            name: name.to_string(),
            kind,
            path,
            key,
            component,
            optional,
            window: settings.window,
            handover: None,
            serving: None,
            conflict: None,
        })
    };
    use Component::*;
    use TargetKind::*;
    let pair = |n: &str| {
        (
            pki.join(format!("{n}.crt")),
            Some(pki.join(format!("{n}.key"))),
        )
    };
    let mut authorities = Vec::new();
    if control_plane {
        for (name, comp) in [
            ("apiserver", KubeApiserver),
            ("apiserver-kubelet-client", KubeApiserver),
            ("front-proxy-client", KubeApiserver),
        ] {
            let (c, key) = pair(name);
            add(name, Certificate, c, key, Some(comp), false);
        }
        // With external etcd the etcd client pair is the operator's, and may be absent.
        let (c, key) = pair("apiserver-etcd-client");
        add(
            "apiserver-etcd-client",
            Certificate,
            c,
            key,
            Some(KubeApiserver),
            !stacked_etcd,
        );
        if stacked_etcd {
            for name in ["etcd/server", "etcd/peer", "etcd/healthcheck-client"] {
                let (c, key) = pair(name);
                add(name, Certificate, c, key, Some(Etcd), false);
            }
        }
        add(
            "admin.conf",
            Kubeconfig,
            confs.join("admin.conf"),
            None,
            None,
            false,
        );
        // Exists only on the node where `kubeadm init` ran.
        add(
            "super-admin.conf",
            Kubeconfig,
            confs.join("super-admin.conf"),
            None,
            None,
            true,
        );
        add(
            "controller-manager.conf",
            Kubeconfig,
            confs.join("controller-manager.conf"),
            None,
            Some(KubeControllerManager),
            false,
        );
        add(
            "scheduler.conf",
            Kubeconfig,
            confs.join("scheduler.conf"),
            None,
            Some(KubeScheduler),
            false,
        );
        for u in &k.user_kubeconfigs {
            add(
                &u.to_string_lossy(),
                Kubeconfig,
                u.clone(),
                None,
                None,
                true,
            );
        }
        for name in ["ca", "front-proxy-ca"] {
            authorities.push(AuthorityDef {
                name: name.into(),
                cert: pki.join(format!("{name}.crt")),
                key: pki.join(format!("{name}.key")),
            });
        }
        if stacked_etcd {
            authorities.push(AuthorityDef {
                name: "etcd/ca".into(),
                cert: pki.join("etcd/ca.crt"),
                key: pki.join("etcd/ca.key"),
            });
        }
    } else {
        authorities.push(AuthorityDef {
            name: "ca".into(),
            cert: pki.join("ca.crt"),
            key: pki.join("ca.key"),
        });
    }
    // kubelet.conf usually points at kubelet-client-current.pem: then the client
    // certificate is reported once, as kubelet-client-current.pem.
    let kubelet_conf = confs.join("kubelet.conf");
    let current = kubelet_pki.join("kubelet-client-current.pem");
    let read = files.kubeconfig(&kubelet_conf);
    let conf_uses_current = match read.as_ref().as_ref().map(|f| &f.kubeconfig) {
        Ok(Ok(kc)) => match &kc.credential {
            ClientCredential::Files { cert, .. } => {
                // kubeadm's own path needs no walk; another may lead to the same file.
                *cert == current || {
                    let a = root.resolve(cert).ok();
                    a.is_some() && a == root.resolve(&current).ok()
                }
            }
            ClientCredential::Embedded { .. } | ClientCredential::NotACertificate { .. } => false,
        },
        Ok(Err(_)) | Err(_) => false,
    };
    let conf_present = root.exists(&kubelet_conf);
    if !conf_uses_current {
        add(
            "kubelet.conf",
            Kubeconfig,
            kubelet_conf,
            None,
            Some(Kubelet),
            !control_plane && !conf_present,
        );
    }
    // An older node embeds the client certificate in kubelet.conf and has no symlink.
    add(
        "kubelet-client-current.pem",
        KubeletClient,
        current,
        None,
        Some(Kubelet),
        !conf_uses_current,
    );
    let kubelet_config = super::kubelet::read_config(root);
    // Absent when the kubelet's serving certificate is bootstrapped through the API.
    // Where the kubelet's configuration names its files (tlsCertFile,
    // tlsPrivateKeyFile), there: that is what it serves.
    let (serving_cert, serving_key) = kubelet_config.serving_files(kubelet_pki);
    add(
        "kubelet.crt",
        KubeletServing,
        serving_cert,
        Some(serving_key),
        Some(Kubelet),
        true,
    );
    // With serverTLSBootstrap the kubelet serves a certificate the cluster signed, behind
    // the symlink it keeps current; optional: its CSR may not be approved yet.
    if kubelet_config.bootstraps_server() {
        add(
            "kubelet-server-current.pem",
            KubeletServer,
            kubelet_pki.join("kubelet-server-current.pem"),
            None,
            Some(Kubelet),
            true,
        );
    }
    super::kubelet::hand_over(&mut targets, &kubelet_config, settings);
    let serving = super::serving::read(files, settings);
    for t in targets.iter_mut().filter(|t| t.kind == KubeletServing) {
        t.serving = serving.clone();
    }

    for x in &settings.extra {
        let component = x
            .component
            .as_deref()
            .and_then(|c| Component::parse(c).ok().flatten());
        let window = WindowSettings {
            remaining_fraction: x
                .remaining_fraction
                .unwrap_or(settings.window.remaining_fraction),
            remaining_days: x.remaining_days.unwrap_or(settings.window.remaining_days),
        };
        let mut push = |name: String, kind, path: PathBuf, key: Option<PathBuf>| {
            targets.push(Target {
                name,
                kind,
                path,
                key,
                component: component.clone(),
                optional: false,
                window,
                handover: None,
                serving: None,
                conflict: None,
            })
        };
        match x.kind {
            ExtraKind::Certificate => {
                let key = x.key.clone().or_else(|| Some(x.path.with_extension("key")));
                push(x.name.clone(), Certificate, x.path.clone(), key);
            }
            ExtraKind::Kubeconfig => push(x.name.clone(), Kubeconfig, x.path.clone(), None),
            ExtraKind::Directory => {
                let Ok(entries) = root.read_dir(&x.path) else {
                    // A configured directory that is not there is an error, not an empty
                    // result: listed as its own target, whose read names the problem.
                    push(x.name.clone(), Certificate, x.path.clone(), None);
                    continue;
                };
                let mut names: Vec<String> = entries
                    .into_iter()
                    .map(|(n, _)| n.to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.') && (n.ends_with(".crt") || n.ends_with(".pem")))
                    .collect();
                names.sort();
                for n in names {
                    let path = x.path.join(&n);
                    let key = path.with_extension("key");
                    let key = root.exists(&key).then_some(key);
                    push(format!("{}/{n}", x.name), Certificate, path, key);
                }
            }
        }
    }
    for t in targets.iter_mut() {
        if let Some(o) = settings.targets.get(&t.name) {
            if let Some(f) = o.remaining_fraction {
                t.window.remaining_fraction = f;
            }
            if let Some(d) = o.remaining_days {
                t.window.remaining_days = d;
            }
        }
    }
    targets.retain(|t| {
        settings
            .targets
            .get(&t.name)
            .and_then(|o| o.enabled)
            .unwrap_or(true)
    });
    overlap::refuse_shared_files(&mut targets, &authorities, root, |t| {
        t.kind == Kubeconfig && k.user_kubeconfigs.contains(&t.path)
    });
    Layout {
        role: if control_plane {
            NodeRole::ControlPlane
        } else {
            NodeRole::Worker
        },
        targets,
        authorities,
    }
}
