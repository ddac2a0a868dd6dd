//! Before a restart: probe first. A component may already serve what was just written
//! (etcd reloads its leaf certificates on every new connection, kube-apiserver and a
//! recent kubelet reload their serving certificate files), and then restarting it
//! would only cost availability; or it may not answer at all, and then there is no
//! healthy component whose availability a pause before its restart would protect.
//!
//! Only what a probe can see counts as served: the serving certificate of a
//! [`Check::ServedCert`] endpoint. A client certificate or kubeconfig the component
//! uses (apiserver-etcd-client, scheduler.conf) cannot be seen from outside, so a group
//! that renewed one is restarted whatever the probes say. Verification runs afterwards
//! all the same.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{serial_on_disk, Check, Endpoint, Prober};
use crate::node::{normalize, NodeRoot};

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

/// Decides from what was renewed and what the probes saw. `renewed`: per renewed
/// target, the node paths that name its certificate (the target's path and the file
/// it was read from, which differ behind a symlink). Pure.
pub fn decide(renewed: &[Vec<PathBuf>], seen: &[Seen]) -> BeforeRestart {
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
    let all_current = served.iter().all(|(_, current)| *current);
    let every_renewal_seen = renewed.iter().all(|names| {
        served.iter().any(|(certs, current)| {
            *current && names.iter().any(|n| certs.iter().any(|c| same(n, c)))
        })
    });
    if all_current && every_renewal_seen {
        BeforeRestart::AlreadyServing
    } else {
        BeforeRestart::Restart
    }
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

    fn served(cert: &str, current: bool) -> Seen {
        Seen::Served {
            certs: vec![p(cert)],
            current,
        }
    }

    const API: &str = "/etc/kubernetes/pki/apiserver.crt";

    #[test]
    fn a_component_serving_every_renewed_certificate_is_not_restarted() {
        let renewed = vec![vec![p(API)]];
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
        // apiserver.crt served anew, but the etcd client certificate was renewed too.
        let renewed = vec![
            vec![p(API)],
            vec![p("/etc/kubernetes/pki/apiserver-etcd-client.crt")],
        ];
        assert_eq!(
            decide(&renewed, &[served(API, true)]),
            BeforeRestart::Restart
        );
        // A kubeconfig behind a health check.
        let renewed = vec![vec![p("/etc/kubernetes/scheduler.conf")]];
        assert_eq!(decide(&renewed, &[Seen::Healthy]), BeforeRestart::Restart);
        // No endpoint at all: no way to tell.
        assert_eq!(decide(&[vec![p(API)]], &[]), BeforeRestart::Restart);
        assert_eq!(decide(&[], &[served(API, true)]), BeforeRestart::Restart);
    }

    #[test]
    fn a_symlinked_certificate_matches_by_either_name() {
        let link = "/var/lib/kubelet/pki/kubelet-server-current.pem";
        let file = "/var/lib/kubelet/pki/kubelet-server-2026-01-01-00-00-00.pem";
        // The inventory read the old file behind the link; the link now leads to the
        // new one, so the endpoint's own name (the link) is what matches.
        let renewed = vec![vec![p(link), p(file)]];
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
        let renewed = vec![vec![p(API)]];
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
