//! Who renews the kubelet's certificates. Where /var/lib/kubelet/config.yaml lets the
//! kubelet rotate a certificate itself through the CSR API (`rotateCertificates` for
//! kubelet-client-current.pem, `serverTLSBootstrap` for kubelet-server-current.pem),
//! the kubelet owns it while it can and the agent is only its safety net
//! ([`Handover`]); `[kubelet]` may give it back to the agent. kubelet.crt, which the
//! kubelet never renews, and a kubelet.conf with embedded credentials, which the
//! kubelet cannot rewrite, stay the agent's.

use std::path::Path;

use super::{Handover, Target};
use crate::config::{KubeletRotation, Settings};
use crate::model::TargetKind;
use crate::node::kubelet_config::{KubeletConfiguration, KUBELET_CONFIG};
use crate::node::NodeRoot;

/// The kubelet's configuration file. Absent: the kubelet's defaults (it rotates
/// nothing itself, as far as the node's files tell). Unreadable: the same, said in the
/// journal: the agent keeps renewing rather than trust a file it cannot read.
pub fn read_config(root: &NodeRoot) -> KubeletConfiguration {
    let path = Path::new(KUBELET_CONFIG);
    let bytes = match root.read_file(path) {
        Ok((_, b)) => b,
        Err(e) if e.is_not_found() => return KubeletConfiguration::default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "kubelet configuration unreadable: the agent renews the kubelet's certificates itself");
            return KubeletConfiguration::default();
        }
    };
    KubeletConfiguration::parse(&bytes).unwrap_or_else(|e| {
        tracing::warn!(file = %path.display(), error = %e, "kubelet configuration unreadable: the agent renews the kubelet's certificates itself");
        KubeletConfiguration::default()
    })
}

/// The handover of one target, by kind: only the kubelet's symlinked client and
/// server files, and only where the kubelet rotates them and `[kubelet]` leaves them to
/// it. Pure.
pub fn handover_of(
    kind: TargetKind,
    config: &KubeletConfiguration,
    settings: &Settings,
) -> Option<Handover> {
    let k = &settings.kubelet;
    let (kubelet_rotates, rotation) = match kind {
        TargetKind::KubeletClient => (config.rotates_client(), k.client_rotation),
        TargetKind::KubeletServer => (config.bootstraps_server(), k.server_rotation),
        _ => return None,
    };
    (kubelet_rotates && rotation == KubeletRotation::SafetyNet).then_some(Handover {
        after_fraction: k.safety_net_fraction,
    })
}

/// Sets the handover of the layout's kubelet targets.
pub(super) fn hand_over(targets: &mut [Target], config: &KubeletConfiguration, s: &Settings) {
    for t in targets.iter_mut() {
        t.handover = handover_of(t.kind, config, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rotate: Option<bool>, server: Option<bool>) -> KubeletConfiguration {
        KubeletConfiguration {
            rotate_certificates: rotate,
            server_tls_bootstrap: server,
            ..Default::default()
        }
    }

    #[test]
    fn the_kubelet_owns_its_client_certificate_only_with_rotate_certificates() {
        let s = Settings::default();
        let h = handover_of(TargetKind::KubeletClient, &cfg(Some(true), None), &s).unwrap();
        assert_eq!(h.after_fraction, 0.9);
        // Absent is the kubelet's default, false; so is false.
        assert_eq!(
            handover_of(TargetKind::KubeletClient, &cfg(None, None), &s),
            None
        );
        assert_eq!(
            handover_of(TargetKind::KubeletClient, &cfg(Some(false), None), &s),
            None
        );
        // kubelet.crt and every other kind stay the agent's.
        for kind in [
            TargetKind::KubeletServing,
            TargetKind::Certificate,
            TargetKind::Kubeconfig,
        ] {
            assert_eq!(handover_of(kind, &cfg(Some(true), Some(true)), &s), None);
        }
    }

    #[test]
    fn server_certificates_follow_server_tls_bootstrap_and_settings_decide() {
        let mut s = Settings::default();
        assert!(handover_of(TargetKind::KubeletServer, &cfg(None, Some(true)), &s).is_some());
        assert!(handover_of(TargetKind::KubeletServer, &cfg(Some(true), None), &s).is_none());
        s.kubelet.server_rotation = KubeletRotation::Agent;
        assert!(handover_of(TargetKind::KubeletServer, &cfg(None, Some(true)), &s).is_none());
        s.kubelet.client_rotation = KubeletRotation::Agent;
        assert!(handover_of(TargetKind::KubeletClient, &cfg(Some(true), None), &s).is_none());
        let mut s = Settings::default();
        s.kubelet.safety_net_fraction = 0.95;
        let h = handover_of(TargetKind::KubeletClient, &cfg(Some(true), None), &s).unwrap();
        assert_eq!(h.after_fraction, 0.95);
    }

    #[test]
    fn an_unreadable_config_leaves_the_certificates_to_the_agent() {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path());
        assert_eq!(read_config(&root), KubeletConfiguration::default());
        let host = root.host(Path::new(KUBELET_CONFIG));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(&host, "rotateCertificates: maybe\n").unwrap();
        assert_eq!(read_config(&root), KubeletConfiguration::default());
        std::fs::write(
            &host,
            "kind: KubeletConfiguration\nrotateCertificates: true\n",
        )
        .unwrap();
        assert!(read_config(&root).rotates_client());
    }
}
