//! Before a restart: probe first. A component may already serve what was just written
//! (etcd reloads its leaf certificates on every new connection, kube-apiserver and a
//! recent kubelet reload their serving certificate files), and then restarting it
//! would only cost availability; or it may not answer at all, and then there is no
//! healthy component whose availability a pause before its restart would protect.
//!
//! Only what a probe can see counts as served: the serving certificate of a
//! [`Check::ServedCert`] endpoint. A client certificate or kubeconfig the component
//! uses cannot be seen from outside: it counts only when the component is known to
//! reload it by itself ([`reloads_by_itself`], the table of docs/reloads.md, measured
//! on the real components), else the group is restarted whatever the probes say
//! (scheduler.conf, controller-manager.conf, the kubelet's client certificate).
//! Verification runs afterwards all the same.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{serial_on_disk, Check, Endpoint, Prober};
use crate::model::Component;
use crate::node::{normalize, NodeRoot};

/// Whether `component` loads the renewed target `name` (kubeadm's name, as the
/// inventory gives it) again by itself, without a restart, while it runs. The table of
/// docs/reloads.md, each row measured on the real component (tests/k8s/controlplane.sh)
/// and read in its source at the pinned version:
/// - kube-apiserver: its serving certificate (a file watch, served anew within a
///   second), the front-proxy client certificate (the same dynamic file content), the
///   kubelet client certificate (client-go reloads certificate files every 5 minutes and
///   closes the old connections) and the etcd client certificate (etcd's client reads
///   the files at every new TLS handshake).
/// - kubelet: its serving certificate file (kubelet.crt; a file watch since the
///   ReloadKubeletServerCertificateFile gate, on by default), and the one it rotated
///   itself (kubelet-server-current.pem). Not its client certificate: the certificate
///   manager keeps it in memory.
/// - etcd: its server and peer certificates (read at every handshake).
/// - kube-controller-manager, kube-scheduler: nothing; their kubeconfigs embed the client
///   certificate, read once at start.
pub fn reloads_by_itself(component: &Component, name: &str) -> bool {
    match component {
        Component::KubeApiserver => matches!(
            name,
            "apiserver"
                | "apiserver-kubelet-client"
                | "apiserver-etcd-client"
                | "front-proxy-client"
        ),
        Component::Kubelet => matches!(name, "kubelet.crt" | "kubelet-server-current.pem"),
        Component::Etcd => matches!(name, "etcd/server" | "etcd/peer"),
        _ => false,
    }
}

/// One renewed target of the group, as [`decide`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewed {
    /// The node paths that name its certificate (the target's path and the file it was
    /// read from, which differ behind a symlink).
    pub names: Vec<PathBuf>,
    /// The component loads it again by itself ([`reloads_by_itself`]): it need not be
    /// seen served for the restart to be needless.
    pub reloaded_by_itself: bool,
}

/// How long the one probe before a restart may take: a component that does not answer
/// within it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one endpoint showed before the restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A served certificate: whether it is the one now on disk, and that file's names
    /// (as the endpoint names it, and at the end of its symlinks).
    Served { certs: Vec<PathBuf>, current: bool },
    /// `/healthz` answered ok (says nothing about which certificates are loaded).
    Healthy,
    /// No answer, a failed handshake, an unhealthy answer: the error's words.
    Down(String),
}

/// What to do about the restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeforeRestart {
    /// Every renewed certificate is served already and nothing else was renewed: the
    /// component reloaded by itself; no restart.
    AlreadyServing,
    /// An endpoint does not answer: the component is down. Restart it, without a pause.
    Down(String),
    /// It serves an older certificate, or the renewal holds files no probe can see.
    Restart,
}

/// Decides from what was renewed and what the probes saw. A renewal the component
/// reloads by itself need not be seen, but at least one endpoint must show a current
/// certificate (the component is up and reloads). Pure.
pub fn decide(renewed: &[Renewed], seen: &[Seen]) -> BeforeRestart {
    if let Some(Seen::Down(why)) = seen.iter().find(|s| matches!(s, Seen::Down(_))) {
        return BeforeRestart::Down(why.clone());
    }
    if renewed.is_empty() {
        return BeforeRestart::Restart;
    }
    let served: Vec<(&[PathBuf], bool)> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Served { certs, current } => Some((certs.as_slice(), *current)),
            _ => None,
        })
        .collect();
    let all_current = !served.is_empty() && served.iter().all(|(_, current)| *current);
    let every_renewal_seen = renewed.iter().all(|r| {
        served.iter().any(|(certs, current)| {
            *current && r.names.iter().any(|n| certs.iter().any(|c| same(n, c)))
        }) || (r.reloaded_by_itself && !seen_as_stale(&r.names, &served))
    });
    if all_current && every_renewal_seen {
        BeforeRestart::AlreadyServing
    } else {
        BeforeRestart::Restart
    }
}

/// Whether an endpoint serves the renewal's certificate file but not its new content.
fn seen_as_stale(names: &[PathBuf], served: &[(&[PathBuf], bool)]) -> bool {
    served
        .iter()
        .any(|(certs, current)| !*current && names.iter().any(|n| certs.iter().any(|c| same(n, c))))
}

/// Whether a restart may still turn out needless if the component is given a moment:
/// every renewal is one it reloads by itself, and nothing is down (a file watch takes
/// up to a second or two after the write).
pub fn worth_waiting_for(renewed: &[Renewed], seen: &[Seen]) -> bool {
    !renewed.is_empty()
        && renewed.iter().all(|r| r.reloaded_by_itself)
        && seen.iter().all(|s| !matches!(s, Seen::Down(_)))
}

fn same(a: &Path, b: &Path) -> bool {
    normalize(a) == normalize(b)
}

/// Probes each endpoint once (at most [`PROBE_TIMEOUT`]). A served certificate is
/// compared with the file now on disk; a file that cannot be read counts as not
/// current (the restart and the verification that follows will say more).
pub fn probe_once(prober: &dyn Prober, root: &NodeRoot, endpoints: &[Endpoint]) -> Vec<Seen> {
    endpoints
        .iter()
        .map(|ep| match &ep.check {
            Check::ServedCert { cert } => match prober.served_leaf(ep, PROBE_TIMEOUT) {
                Ok(s) => Seen::Served {
                    certs: vec![cert.clone(), resolved(root, cert)],
                    current: serial_on_disk(root, cert).is_ok_and(|want| want == s.serial),
                },
                Err(e) => Seen::Down(e.to_string()),
            },
            Check::Healthz => match prober.healthy(ep, PROBE_TIMEOUT) {
                Ok(()) => Seen::Healthy,
                Err(e) => Seen::Down(e.to_string()),
            },
        })
        .collect()
}

/// The node path of a certificate file at the end of its symlinks (as the inventory
/// names the file it read), or the path itself.
pub fn resolved(root: &NodeRoot, p: &Path) -> PathBuf {
    root.resolve(p).unwrap_or_else(|_| normalize(p))
}

/// Whether any endpoint of a component fails its probe: it is down (or broken).
pub fn is_down(prober: &dyn Prober, root: &NodeRoot, endpoints: &[Endpoint]) -> Option<String> {
    probe_once(prober, root, endpoints)
        .into_iter()
        .find_map(|s| match s {
            Seen::Down(why) => Some(why),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A renewal only a probe can vouch for.
    fn seen_only(names: &[&str]) -> Renewed {
        Renewed {
            names: names.iter().map(|n| p(n)).collect(),
            reloaded_by_itself: false,
        }
    }

    /// A renewal the component reloads by itself.
    fn reloaded(names: &[&str]) -> Renewed {
        Renewed {
            reloaded_by_itself: true,
            ..seen_only(names)
        }
    }

    fn served(cert: &str, current: bool) -> Seen {
        Seen::Served {
            certs: vec![p(cert)],
            current,
        }
    }

    const API: &str = "/etc/kubernetes/pki/apiserver.crt";

    #[test]
    fn a_component_serving_every_renewed_certificate_is_not_restarted() {
        let renewed = vec![seen_only(&[API])];
        assert_eq!(
            decide(&renewed, &[served(API, true), served(API, true)]),
            BeforeRestart::AlreadyServing
        );
        // One endpoint still on the old certificate: restart.
        assert_eq!(
            decide(&renewed, &[served(API, true), served(API, false)]),
            BeforeRestart::Restart
        );
    }

    #[test]
    fn what_no_probe_can_see_is_restarted_for() {
        // apiserver.crt served anew, but a client certificate no probe sees and the
        // component does not reload was renewed too.
        let renewed = vec![
            seen_only(&[API]),
            seen_only(&["/etc/kubernetes/pki/apiserver-etcd-client.crt"]),
        ];
        assert_eq!(
            decide(&renewed, &[served(API, true)]),
            BeforeRestart::Restart
        );
        // A kubeconfig behind a health check.
        let renewed = vec![seen_only(&["/etc/kubernetes/scheduler.conf"])];
        assert_eq!(decide(&renewed, &[Seen::Healthy]), BeforeRestart::Restart);
        // No endpoint at all: no way to tell.
        assert_eq!(decide(&[seen_only(&[API])], &[]), BeforeRestart::Restart);
        assert_eq!(decide(&[], &[served(API, true)]), BeforeRestart::Restart);
    }

    #[test]
    fn client_certificates_the_component_reloads_need_not_be_seen() {
        let etcd_client = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
        let renewed = vec![reloaded(&[API]), reloaded(&[etcd_client])];
        assert_eq!(
            decide(&renewed, &[served(API, true)]),
            BeforeRestart::AlreadyServing
        );
        // The serving certificate still the old one: the component has not reloaded.
        assert_eq!(
            decide(&renewed, &[served(API, false)]),
            BeforeRestart::Restart
        );
        // Only a client certificate renewed: the component must still be seen up with
        // a current certificate, a health answer says nothing.
        let only_client = vec![reloaded(&[etcd_client])];
        assert_eq!(
            decide(&only_client, &[served(API, true)]),
            BeforeRestart::AlreadyServing
        );
        assert_eq!(
            decide(&only_client, &[Seen::Healthy]),
            BeforeRestart::Restart
        );
        assert_eq!(decide(&only_client, &[]), BeforeRestart::Restart);
    }

    #[test]
    fn the_table_of_what_reloads_by_itself() {
        use Component::*;
        for name in [
            "apiserver",
            "apiserver-kubelet-client",
            "apiserver-etcd-client",
            "front-proxy-client",
        ] {
            assert!(reloads_by_itself(&KubeApiserver, name), "{name}");
        }
        assert!(reloads_by_itself(&Kubelet, "kubelet.crt"));
        assert!(!reloads_by_itself(&Kubelet, "kubelet-client-current.pem"));
        assert!(!reloads_by_itself(&Kubelet, "kubelet.conf"));
        assert!(!reloads_by_itself(
            &KubeControllerManager,
            "controller-manager.conf"
        ));
        assert!(!reloads_by_itself(&KubeScheduler, "scheduler.conf"));
        assert!(reloads_by_itself(&Etcd, "etcd/server"));
        assert!(!reloads_by_itself(&Unit("foo.service".into()), "foo"));
    }

    #[test]
    fn waiting_for_a_reload_only_when_every_renewal_reloads_by_itself() {
        let renewed = vec![reloaded(&[API])];
        assert!(worth_waiting_for(&renewed, &[served(API, false)]));
        assert!(!worth_waiting_for(
            &renewed,
            &[Seen::Down("refused".into())]
        ));
        let mixed = vec![
            reloaded(&[API]),
            seen_only(&["/etc/kubernetes/scheduler.conf"]),
        ];
        assert!(!worth_waiting_for(&mixed, &[served(API, false)]));
        assert!(!worth_waiting_for(&[], &[served(API, false)]));
    }

    #[test]
    fn a_symlinked_certificate_matches_by_either_name() {
        let link = "/var/lib/kubelet/pki/kubelet-server-current.pem";
        let file = "/var/lib/kubelet/pki/kubelet-server-2026-01-01-00-00-00.pem";
        // The inventory read the old file behind the link; the link now leads to the
        // new one, so the endpoint's own name (the link) is what matches.
        let renewed = vec![seen_only(&[link, file])];
        let new_file = "/var/lib/kubelet/pki/kubelet-server-2026-12-01-00-00-00.pem";
        let seen = Seen::Served {
            certs: vec![p(link), p(new_file)],
            current: true,
        };
        assert_eq!(decide(&renewed, &[seen]), BeforeRestart::AlreadyServing);
        assert_eq!(
            decide(
                &renewed,
                &[served(
                    "/var/lib/kubelet/pki/./kubelet-server-current.pem",
                    true
                )]
            ),
            BeforeRestart::AlreadyServing
        );
    }

    #[test]
    fn a_component_that_does_not_answer_is_down() {
        let renewed = vec![seen_only(&[API])];
        let d = decide(
            &renewed,
            &[
                served(API, true),
                Seen::Down("cannot connect to 127.0.0.1:6443: refused".into()),
            ],
        );
        assert_eq!(
            d,
            BeforeRestart::Down("cannot connect to 127.0.0.1:6443: refused".into())
        );
    }
}
