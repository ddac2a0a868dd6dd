//! The metrics textfile: families, values and labels, checked against fixture nodes.

use super::*;
use crate::config::Settings;
use crate::fixture::{NodeSpec, Validity};
use crate::node::NodeRoot;
use time::Duration;

fn record(success: bool) -> PassResult {
    PassResult {
        at: time::macros::datetime!(2026-03-01 12:00:00 UTC),
        success,
        renewed: 3,
        failed: 1,
        warnings: 0,
        last_success: None,
        restarts_avoided: 1,
        skipped: None,
        restarts_awaiting_lock: 0,
        rollouts_stopped: 0,
    }
}

#[test]
fn the_last_pass_record_round_trips() {
    let p = record(false);
    let bytes = p.to_json();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["at"], "2026-03-01T12:00:00Z");
    assert_eq!(v["renewed"], 3);
    assert_eq!(PassResult::from_json(&bytes).unwrap(), p);
    assert!(PassResult::from_json(b"{").is_err());
    // A record of a release before last_success still reads.
    let old = br#"{"at":"2026-03-01T12:00:00Z","success":true,"renewed":0,"failed":0}"#;
    let old = PassResult::from_json(old).unwrap();
    assert_eq!(old.last_success(), Some(old.at));
}

#[test]
fn a_failed_pass_keeps_the_last_success() {
    let ok = record(true).after(None);
    assert_eq!(ok.last_success, Some(ok.at));
    let mut failed = record(false);
    failed.at += Duration::days(1);
    let failed = failed.after(Some(&ok));
    assert_eq!(failed.last_success, Some(ok.at));
    assert_eq!(
        PassResult::from_json(&failed.to_json())
            .unwrap()
            .last_success(),
        Some(ok.at)
    );
    // Never a success: none, and no family sample for it.
    let never = record(false).after(None);
    assert_eq!(never.last_success(), None);
    let inv = Inventory {
        role: crate::inventory::NodeRole::Worker,
        certificates: vec![],
        authorities: vec![],
    };
    let authorities = AuthoritySettings::default();
    let text = |p: &PassResult| {
        metrics_text(&MetricsInput {
            inventory: &inv,
            now: p.at,
            last_pass: Some(p),
            authorities: &authorities,
        })
    };
    assert!(!text(&never).contains("cert_rotator_last_success_timestamp_seconds"));
    assert!(text(&failed).contains(&format!(
        "cert_rotator_last_success_timestamp_seconds {}\n",
        ok.at.unix_timestamp()
    )));
}

#[test]
fn pass_families_appear_only_after_a_pass() {
    let inv = Inventory {
        role: crate::inventory::NodeRole::Worker,
        certificates: vec![],
        authorities: vec![],
    };
    let authorities = AuthoritySettings::default();
    let input = |last_pass| MetricsInput {
        inventory: &inv,
        now: time::macros::datetime!(2026-03-01 12:00:00 UTC),
        last_pass,
        authorities: &authorities,
    };
    assert!(!metrics_text(&input(None)).contains("cert_rotator_pass_"));
    let p = PassResult {
        success: true,
        renewed: 2,
        failed: 0,
        restarts_awaiting_lock: 1,
        ..record(true)
    };
    let text = metrics_text(&input(Some(&p)));
    assert!(text.contains("cert_rotator_pass_success 1\n"), "{text}");
    assert!(text.contains("cert_rotator_pass_renewed 2\n"), "{text}");
    assert!(
        text.contains("# TYPE cert_rotator_pass_success gauge\n"),
        "{text}"
    );
    assert!(text.contains("cert_rotator_restarts_avoided 1\n"), "{text}");
    assert!(!text.contains("cert_rotator_pass_skipped"), "{text}");
    let skipped = PassResult {
        skipped: Some("kubeadm".into()),
        ..p
    };
    let text = metrics_text(&input(Some(&skipped)));
    assert!(
        text.contains("cert_rotator_pass_skipped{reason=\"kubeadm\"} 1\n"),
        "{text}"
    );
    // A record written before these fields existed still reads.
    let old = br#"{"at":"2026-03-01T12:00:00Z","success":true,"renewed":0,"failed":0}"#;
    let r = PassResult::from_json(old).unwrap();
    assert_eq!((r.restarts_avoided, r.skipped), (0, None));
    assert!(
        text.contains("cert_rotator_pass_restarts_awaiting_lock 1\n"),
        "{text}"
    );
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(
        label_set(&[("filepath", "/x/\"q\".crt".into())]),
        "{filepath=\"/x/\\\"q\\\".crt\"}"
    );
}

#[test]
fn serials_are_decimal_as_the_exporter_writes_them() {
    assert_eq!(hex_to_decimal("0"), "0");
    assert_eq!(hex_to_decimal("ff"), "255");
    assert_eq!(hex_to_decimal("3b9aca00"), "1000000000");
    assert_eq!(hex_to_decimal("3b9aca01"), "1000000001");
    // 20 octets, past u128 (Python's int(h, 16)).
    assert_eq!(
        hex_to_decimal("7fffffffffffffffffffffffffffffffffffffff"),
        "730750818665451459101842416358141509827966271487"
    );
    assert_eq!(
        hex_to_decimal("1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"),
        "149397945149380861402979012087172760560581950541"
    );
    for v in [1u128, 9, 10, 999_999_999, 1 << 64, u128::MAX] {
        assert_eq!(hex_to_decimal(&format!("{v:x}")), v.to_string());
    }
}

/// A fixture node's metrics at `now`, and the node.
fn node_metrics_at(
    spec: &NodeSpec,
    edit: impl FnOnce(&std::path::Path),
) -> (String, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    crate::fixture::build(d.path(), spec).unwrap();
    edit(d.path());
    let root = NodeRoot::new(d.path());
    let s = Settings::default();
    let inv = crate::inventory::read(&crate::inventory::layout(&s, &root), &root);
    let text = metrics_text(&MetricsInput {
        inventory: &inv,
        now: spec.now,
        last_pass: None,
        authorities: &s.authorities,
    });
    (text, d)
}

fn node_metrics(spec: &NodeSpec, edit: impl FnOnce(&std::path::Path)) -> String {
    node_metrics_at(spec, edit).0
}

/// The lines of `family` whose labels contain every one of `labels`.
fn lines<'t>(text: &'t str, family: &str, labels: &[&str]) -> Vec<&'t str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .collect()
}

#[test]
fn every_certificate_of_every_target_and_ca_in_the_exporters_labels() {
    let now = time::macros::datetime!(2026-03-01 12:00:00 UTC);
    let mut spec = NodeSpec::control_plane(now)
        .with("apiserver", Validity::days(365, Duration::days(20)))
        .with("scheduler.conf", Validity::days(365, Duration::days(-3)));
    // One RDN of two O values; DER sorts a SET by encoding, so the shorter is stored first.
    spec.admin_organizations = vec![
        "kubeadm:cluster-admins".into(),
        "a-longer-second:organization".into(),
    ];
    let (text, d) = node_metrics_at(&spec, |_| {});
    let api = lines(
        &text,
        "x509_cert_not_after",
        &[
            "filename=\"apiserver.crt\"",
            "filepath=\"/etc/kubernetes/pki/apiserver.crt\"",
            "embedded_kind=\"\"",
            "subject_CN=\"kube-apiserver\"",
            "issuer_CN=\"kubernetes\"",
        ],
    );
    assert_eq!(api.len(), 1, "{text}");
    let not_after = (now + Duration::days(20)).unix_timestamp();
    assert!(api[0].ends_with(&format!(" {not_after}")), "{}", api[0]);
    // The label order is the exporter's.
    assert!(
        api[0].starts_with(
            "x509_cert_not_after{filename=\"apiserver.crt\",filepath=\"/etc/kubernetes/pki/apiserver.crt\",\
             embedded_kind=\"\",embedded_key=\"\",serial_number=\""
        ),
        "{}",
        api[0]
    );
    // The serial in decimal, as the exporter (Go's big.Int) writes it.
    let pem = std::fs::read(d.path().join("etc/kubernetes/pki/apiserver.crt")).unwrap();
    let c = crate::pki::certificates(&crate::pki::parse_pem(&pem).unwrap()).unwrap();
    let serial = u128::from_str_radix(&c[0].serial, 16).unwrap();
    assert!(
        api[0].contains(&format!("serial_number=\"{serial}\"")),
        "{} {}",
        c[0].serial,
        api[0]
    );

    // Kubeconfigs: the user block's certificate, named by the user; multi-valued O
    // gives the first value stored, as Go's pkix.Name does.
    let admin = lines(
        &text,
        "x509_cert_not_after",
        &[
            "filepath=\"/etc/kubernetes/admin.conf\"",
            "embedded_kind=\"user\"",
            "embedded_key=\"kubernetes-admin\"",
            "subject_O=\"kubeadm:cluster-admins\"",
            "subject_CN=\"kubernetes-admin\"",
        ],
    );
    assert_eq!(admin.len(), 1, "{text}");
    // kubelet.conf references kubelet-client-current.pem: the inventory reports that
    // certificate once, as the file.
    assert!(lines(&text, "x509_cert_not_after", &["filename=\"kubelet.conf\""]).is_empty());
    assert_eq!(
        lines(
            &text,
            "x509_cert_not_after",
            &["filepath=\"/var/lib/kubelet/pki/kubelet-client-current.pem\""]
        )
        .len(),
        1,
        "{text}"
    );
    // kubelet.crt holds the leaf and its throwaway CA: both, as the exporter reads
    // every block.
    assert_eq!(
        lines(&text, "x509_cert_not_after", &["filename=\"kubelet.crt\""]).len(),
        2,
        "{text}"
    );
    // Every CA file.
    for ca in ["ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"] {
        let f = format!("filepath=\"/etc/kubernetes/pki/{ca}\"");
        assert_eq!(
            lines(&text, "x509_cert_not_after", &[&f]).len(),
            1,
            "{ca}\n{text}"
        );
        assert_eq!(lines(&text, "x509_cert_error", &[&f]).len(), 1);
    }
    // Expired at the pass: scheduler.conf only.
    let expired: Vec<_> = lines(&text, "x509_cert_expired", &[])
        .into_iter()
        .filter(|l| l.ends_with(" 1"))
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(expired[0].contains("filename=\"scheduler.conf\""));
    // One x509_cert_error per certificate (all 0), x509_cert_not_before as well.
    assert_eq!(
        lines(&text, "x509_cert_error", &[]).len(),
        lines(&text, "x509_cert_not_after", &[]).len()
    );
    assert_eq!(
        lines(&text, "x509_cert_not_before", &[]).len(),
        lines(&text, "x509_cert_not_after", &[]).len()
    );
    assert!(lines(&text, "x509_cert_error", &[])
        .iter()
        .all(|l| l.ends_with(" 0")));
    // Stale "seconds from now" families are not written (docs/metrics.md).
    assert!(!text.contains("x509_cert_expires_in_seconds"));
    assert!(!text.contains("x509_cert_valid_since_seconds"));
    for family in [
        "x509_cert_not_before",
        "x509_cert_not_after",
        "x509_cert_expired",
        "x509_cert_error",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(
            text.contains(&format!("# TYPE {family} gauge\n")),
            "{family}"
        );
    }
}

#[test]
fn a_ca_bundle_gives_each_certificate_once_and_an_unreadable_file_an_error() {
    let now = time::macros::datetime!(2026-03-01 12:00:00 UTC);
    let spec = NodeSpec::control_plane(now);
    let text = node_metrics(&spec, |d| {
        let pki = d.join("etc/kubernetes/pki");
        let ca = std::fs::read(pki.join("ca.crt")).unwrap();
        let other = std::fs::read(pki.join("front-proxy-ca.crt")).unwrap();
        // Old and new CA during a rotation, and the first listed twice.
        std::fs::write(pki.join("ca.crt"), [&ca[..], &other, &ca].concat()).unwrap();
        std::fs::write(pki.join("apiserver.crt"), b"not a certificate").unwrap();
    });
    let ca = lines(
        &text,
        "x509_cert_not_after",
        &["filepath=\"/etc/kubernetes/pki/ca.crt\""],
    );
    assert_eq!(ca.len(), 2, "{text}");
    assert!(ca.iter().any(|l| l.contains("subject_CN=\"kubernetes\"")));
    assert!(ca
        .iter()
        .any(|l| l.contains("subject_CN=\"front-proxy-ca\"")));
    let err = lines(&text, "x509_cert_error", &["filename=\"apiserver.crt\""]);
    assert_eq!(
        err,
        vec![
            "x509_cert_error{filename=\"apiserver.crt\",filepath=\"/etc/kubernetes/pki/apiserver.crt\",\
             embedded_kind=\"\",embedded_key=\"\",serial_number=\"\",issuer_C=\"\",issuer_ST=\"\",\
             issuer_L=\"\",issuer_O=\"\",issuer_OU=\"\",issuer_CN=\"\",subject_C=\"\",subject_ST=\"\",\
             subject_L=\"\",subject_O=\"\",subject_OU=\"\",subject_CN=\"\"} 1"
        ],
        "{text}"
    );
    assert!(lines(
        &text,
        "x509_cert_not_after",
        &["filename=\"apiserver.crt\""]
    )
    .is_empty());
    assert!(text.contains(
        "cert_rotator_certificate_error{name=\"apiserver\",path=\"/etc/kubernetes/pki/apiserver.crt\"} 1\n"
    ));
}

#[test]
fn an_authority_is_due_in_its_last_fifth() {
    let now = time::macros::datetime!(2026-03-01 12:00:00 UTC);
    let due = |remaining_days| {
        let mut spec = NodeSpec::worker(now);
        spec.ca_validity = Validity::days(3650, Duration::days(remaining_days));
        node_metrics(&spec, |_| {})
    };
    let line = "cert_rotator_authority_due{name=\"ca\",path=\"/etc/kubernetes/pki/ca.crt\"}";
    // 20% of 3650 days is 730.
    assert!(due(729).contains(&format!("{line} 1\n")));
    assert!(due(731).contains(&format!("{line} 0\n")));
    assert!(due(-1).contains(&format!("{line} 1\n")));
}
