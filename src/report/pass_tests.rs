//! The words of every kind of pass event, pinned: the summary, the Kubernetes Events and
//! the last-pass counts are what `run` printed when the report was still sentences.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::*;
use crate::plan::Reload;
use crate::report::event::{RenewedCa, Restart};

const KCM: &str = "kube-controller-manager";

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

fn failed(f: Failure) -> PassEvent {
    PassEvent::Failed(f)
}

/// One of each kind, in an order a pass could have them in.
fn every_kind() -> PassReport {
    let end = at("2027-01-01T00:00:00Z");
    let new_end = at("2036-01-01T00:00:00Z");
    let etcd_manifest = PathBuf::from("/etc/kubernetes/manifests/etcd.yaml");
    let s = |x: &str| x.to_string();
    let events = vec![
        failed(Failure::RotationJournal {
            error: s("journal J unusable"),
        }),
        PassEvent::CaNotRenewed {
            name: s("front-proxy-ca"),
            reason: s("expired"),
            not_after: end,
            why: CaKept::Held(s("rotation at phase trust")),
        },
        PassEvent::CaNotRenewed {
            name: s("etcd/ca"),
            reason: s("under-20-percent"),
            not_after: end,
            why: CaKept::NotAutomatic { has_key: false },
        },
        PassEvent::Restarted {
            component: s("etcd"),
            how: Restart::Annotated {
                pod: s("etcd"),
                manifest: etcd_manifest.clone(),
                hash: s("h-1"),
            },
        },
        PassEvent::Verified {
            component: s("etcd"),
            check: Verification::Served(s("etcd serves serial 01")),
        },
        PassEvent::CaRenewed(RenewedCa {
            name: s("ca"),
            serial: s("0a"),
            not_after: new_end,
            was_not_after: end,
            sha256: s("ff"),
        }),
        PassEvent::NotRenewable {
            target: s("x"),
            path: s("/x.crt"),
            why: s("external CA"),
        },
        failed(Failure::Unreadable {
            target: s("y"),
            path: s("/y.crt"),
            why: s("bad PEM"),
        }),
        PassEvent::Deferred {
            target: s("admin.conf"),
            path: s("/etc/kubernetes/admin.conf"),
            why: Deferral::Planned(s("restart cap")),
        },
        PassEvent::Warned(Warning::Renewal {
            target: s("apiserver"),
            component: s("kube-apiserver"),
            text: s("capped by CA ca"),
        }),
        PassEvent::Renewed {
            cert: RenewedCert {
                name: s("apiserver"),
                path: s("/p/apiserver.crt"),
                serial: s("0b"),
                not_after: new_end,
            },
            component: s("kube-apiserver"),
        },
        failed(Failure::Renewal {
            target: s("z"),
            path: s("/z.crt"),
            component: s("etcd"),
            error: s("signing failed"),
        }),
        PassEvent::Restarted {
            component: s("kubelet"),
            how: Restart::Unit {
                unit: s("kubelet.service"),
                invocation: s("abc"),
            },
        },
        PassEvent::RestartAvoided {
            component: s("kube-apiserver"),
            reload: Reload::StaticPod(s("kube-apiserver")),
        },
        PassEvent::Verified {
            component: s("kube-scheduler"),
            check: Verification::SwitchedOff,
        },
        PassEvent::NotPerformed {
            component: s("kube-scheduler"),
            reload: Reload::StaticPod(s("kube-scheduler")),
        },
        PassEvent::MustRestart {
            component: s("kubelet"),
            reload: Reload::Unit(s("kubelet.service")),
        },
        failed(Failure::Verification {
            component: s(KCM),
            error: s("still serves serial 01"),
        }),
        PassEvent::RolledBack { component: s(KCM) },
        failed(Failure::Rollback {
            component: s(KCM),
            error: s("restore failed"),
        }),
        PassEvent::RolloutStopped {
            component: s(KCM),
            group: s("control-plane"),
            unmarked: None,
        },
        PassEvent::RolloutStopped {
            component: s(KCM),
            group: s("control-plane"),
            unmarked: Some(s("unreachable")),
        },
        PassEvent::Deferred {
            target: s("sched"),
            path: s("/sched.conf"),
            why: Deferral::PassStopped { failed: s(KCM) },
        },
        PassEvent::Deferred {
            target: s("w"),
            path: s("/w.crt"),
            why: Deferral::PassRefused {
                record: PathBuf::from("/var/lib/cert-rotator/lock.json"),
            },
        },
        failed(Failure::UntrustedState {
            error: s("lock.json: names /etc/passwd"),
        }),
        PassEvent::AwaitingLock {
            component: s("kubelet"),
            why: s("group full"),
        },
        PassEvent::Warned(Warning::RestartedWithoutLock {
            component: s("etcd"),
            group: s("cp"),
            why: s("it fails its probe"),
        }),
        PassEvent::Warned(Warning::SlotNotGivenBack {
            component: s("etcd"),
            group: s("cp"),
            error: s("timeout"),
        }),
        failed(Failure::CaRenewal { error: s("no key") }),
        failed(Failure::CaRestart {
            component: s("kubelet"),
            error: s("kubelet: restart failed"),
        }),
        PassEvent::Restarted {
            component: s("etcd"),
            how: Restart::ManifestWritten {
                pod: s("etcd"),
                manifest: etcd_manifest,
            },
        },
    ];
    PassReport {
        events,
        results: Vec::new(),
    }
}

const SUMMARY: &str = "\
CA renewed with its own key (1):
  ca serial=0a not_after=2036-01-01T00:00:00Z sha256=ff
renewed (1):
  apiserver /p/apiserver.crt serial=0b not_after=2036-01-01T00:00:00Z
restarted (3):
  etcd: manifest /etc/kubernetes/manifests/etcd.yaml annotated cert-rotator.k8s.io/certs-hash=h-1
  kubelet.service: new run abc
  etcd: manifest /etc/kubernetes/manifests/etcd.yaml written back
not restarted (already serving the new certificates) (1):
  kube-apiserver: already serves its new certificates (it reloaded them itself): not restarted (restart static pod kube-apiserver (manifest annotation) not performed)
verified (2):
  etcd serves serial 01
  kube-scheduler: verification switched off
not performed (not the live node) (1):
  kube-scheduler: restart static pod kube-scheduler (manifest annotation), then verify (--root is not the live node)
must restart, one at a time (--no-restart: not restarted) (1):
  kubelet (restart kubelet.service through systemd)
rolled back (1):
  kube-controller-manager: previous certificates restored and served
FAILED (8):
  journal J unusable
  y /y.crt: bad PEM
  z: signing failed
  kube-controller-manager: still serves serial 01
  kube-controller-manager: rollback failed: restore failed
  lock.json: names /etc/passwd
  CA renewal: no key
  CA renewal: kubelet: restart failed
deferred to the next pass (3):
  admin.conf (restart cap)
  sched (pass stopped: kube-controller-manager failed verification)
  w (pass refused: /var/lib/cert-rotator/lock.json)
restart waiting for the restart lock (the next pass restarts it) (1):
  kubelet: group full
ROLLOUT STOPPED (2):
  kube-controller-manager: restarts of group control-plane stay stopped across the cluster until this node's next verified restart or an operator clears it (docs/coordination.md)
  kube-controller-manager: could not mark group control-plane stopped: unreachable
not renewable here (1):
  x /x.crt: external CA
WARNINGS (6):
  CA front-proxy-ca is due (expired, ends 2027-01-01T00:00:00Z) and is not renewed: rotation at phase trust
  CA etcd/ca is due (under-20-percent, ends 2027-01-01T00:00:00Z) and is not renewed automatically (its key is not on this node): run `cert-rotator ca renew etcd/ca` where its key is (docs/ca.md)
  renewed CA ca with its own key: serial 0a, ends 2036-01-01T00:00:00Z (was 2027-01-01T00:00:00Z); every copy on this node updated. The other nodes of the cluster need it too: `cert-rotator ca export ca FILE` here, `ca import FILE` there (docs/ca.md)
  capped by CA ca
  etcd: restarted without the restart lock: it fails its probe
  etcd: restart slot of group cp not given back: timeout
";

#[test]
fn the_summary_words_each_event_in_its_section_in_the_order_it_happened() {
    let r = every_kind();
    assert_eq!(r.summary(), SUMMARY);
    assert!(!r.ok());
    assert_eq!(
        r.restart_advice(),
        "\nRestart these to load the new certificates (or run again with --restart):\n  kubelet (restart kubelet.service through systemd)\n"
    );
    let empty = PassReport::default();
    assert!(empty.ok());
    assert_eq!(
        empty.summary(),
        "nothing due: no certificate renewed, no component restarted\n"
    );
}

#[test]
fn the_last_pass_record_counts_the_events() {
    let at = OffsetDateTime::UNIX_EPOCH;
    let r = every_kind().result(at);
    let want = PassResult {
        at,
        success: false,
        renewed: 1,
        failed: 8,
        warnings: 6,
        last_success: None,
        restarts_avoided: 1,
        skipped: None,
        restarts_awaiting_lock: 1,
        rollouts_stopped: 2,
    };
    assert_eq!(r, want);
}

#[test]
fn the_kubernetes_events_go_by_kind_each_in_order() {
    let events = crate::report::node_events::of_report(&every_kind());
    let said: Vec<String> = events
        .iter()
        .map(|e| format!("{} {} {}", e.warning, e.reason, e.message))
        .collect();
    assert_eq!(said[0], "false CertificateRenewed cert-rotator renewed apiserver (/p/apiserver.crt): serial 0b, valid until 2036-01-01T00:00:00Z");
    assert_eq!(said[1], "false CertificateAuthorityRenewed cert-rotator renewed CA ca serial=0a not_after=2036-01-01T00:00:00Z sha256=ff");
    assert_eq!(said[2], "false ComponentRestarted cert-rotator restarted etcd: manifest /etc/kubernetes/manifests/etcd.yaml annotated cert-rotator.k8s.io/certs-hash=h-1 to load its renewed certificates");
    assert_eq!(said[5], "true CertificateRotationFailed journal J unusable");
    assert_eq!(said[13], "true CertificateRotationRolledBack cert-rotator rolled back kube-controller-manager: previous certificates restored and served");
    // The certificates left due: the deferred ones, then the ones no CA here signs.
    assert_eq!(said[14], "true CertificateExpirationWarning inside its renewal window and not renewed by this pass: admin.conf (restart cap)");
    assert_eq!(said[17], "true CertificateExpirationWarning inside its renewal window and not renewed by this pass: x /x.crt: external CA");
    assert_eq!(said.len(), 18);
}

#[test]
fn a_result_line_keeps_one_record_of_tab_separated_fields_whatever_its_path_or_reason() {
    let r = TargetResult {
        name: "extra".into(),
        path: "/etc/odd\tname\n.crt".into(),
        outcome: Outcome::Failed("bad\tthing\nhere".into()),
    };
    let line = r.line();
    assert!(!line.contains('\n'), "{line:?}");
    assert_eq!(line.split('\t').count(), 3, "{line:?}");
    assert!(line.contains("FAILED"), "{line:?}");
}
