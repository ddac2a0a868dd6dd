//! Not fighting the kubelet or kubeadm, through the real binary on fixture nodes: the
//! kubelet's own rotation (`rotateCertificates`, `serverTLSBootstrap` in
//! /var/lib/kubelet/config.yaml) leaves its certificates to it until the safety net,
//! and a pass started while kubeadm is at work changes nothing.

mod common;

use std::path::Path;

use cert_rotator::fixture::KubeletConfigSpec;
use common::*;

fn kubeadm_node(client: Validity) -> NodeSpec {
    let mut spec = NodeSpec::control_plane(now()).with_kubelet_config(KubeletConfigSpec::kubeadm());
    spec.kubelet_client_validity = client;
    spec
}

fn rfc3339(v: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(
        v.as_str().expect("a time"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

const CLIENT: &str = "kubelet-client-current.pem";

#[test]
fn status_leaves_a_365_day_client_certificate_to_the_kubelet_until_90_percent() {
    let d = node(&kubeadm_node(Validity::days(365, Duration::days(335))));
    let (v, code) = status_json(d.path());
    assert_eq!(code, 0, "{v:#}");
    let c = cert(&v, CLIENT);
    assert_eq!(c["due"], false, "{c:#}");
    assert_eq!(c["due_reason"], "kubelet-rotates", "{c:#}");
    // The safety net: 90% of the lifetime after not_before.
    let nb = rfc3339(&c["not_before"]);
    let na = rfc3339(&c["not_after"]);
    let want = nb + (na - nb) * 0.9_f64;
    assert!(
        (rfc3339(&c["renew_at"]) - want).abs() <= Duration::seconds(1),
        "{c:#}"
    );
    // kubelet.crt, which the kubelet never renews, keeps the window.
    let k = cert(&v, "kubelet.crt");
    assert!(k["due_reason"].is_null(), "{k:#}");
    let table = text(&run(d.path(), &["status"]));
    assert!(
        table.contains("no (the kubelet rotates it; safety net "),
        "{table}"
    );
}

#[test]
fn past_the_kubelet_s_deadline_the_safety_net_renews_it() {
    // 365 days, 30 left: 91.8% of the lifetime gone, the kubelet should have rotated it.
    let d = node(&kubeadm_node(Validity::days(365, Duration::days(30))));
    let (v, _) = status_json(d.path());
    let c = cert(&v, CLIENT);
    assert_eq!(c["due"], true, "{c:#}");
    assert_eq!(c["due_reason"], "kubelet-overdue-90-percent", "{c:#}");
    let before = kubelet_client_file(d.path());
    let out = run(d.path(), &["run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("{CLIENT} ")), "{}", text(&out));
    assert_ne!(kubelet_client_file(d.path()), before);
}

/// Whether a pass (`run`) replaced the kubelet's client certificate of a node made with
/// that validity, and what status said first.
fn due_and_renewed(client: Validity) -> (serde_json::Value, bool) {
    let d = node(&kubeadm_node(client));
    let (v, _) = status_json(d.path());
    let c = cert(&v, CLIENT).clone();
    let before = kubelet_client_file(d.path());
    let out = run(d.path(), &["run"]);
    assert!(out.status.success(), "{}", text(&out));
    (c, kubelet_client_file(d.path()) != before)
}

#[test]
fn a_91_day_client_certificate_is_the_kubelet_s_until_90_percent() {
    // 25 and 10 days left: the window (under 30 days) and urgency (under 14) would
    // renew it; the kubelet still may (its deadline is day 81.9 at the latest).
    for left in [25, 10] {
        let (c, renewed) = due_and_renewed(Validity::days(91, Duration::days(left)));
        assert_eq!(c["due"], false, "{left} days left: {c:#}");
        assert_eq!(c["due_reason"], "kubelet-rotates");
        let nb = rfc3339(&c["not_before"]);
        let na = rfc3339(&c["not_after"]);
        assert!(
            (rfc3339(&c["renew_at"]) - (nb + (na - nb) * 0.9_f64)).abs() <= Duration::seconds(1),
            "{c:#}"
        );
        assert!(!renewed, "{left} days left: a pass replaced it");
    }
    // 8 days left (91.2%): the kubelet failed to rotate it; the safety net does.
    let (c, renewed) = due_and_renewed(Validity::days(91, Duration::days(8)));
    assert_eq!(c["due_reason"], "kubelet-overdue-90-percent", "{c:#}");
    assert!(renewed);
}

/// A client certificate the controller-manager signed for 10 minutes
/// (`--cluster-signing-duration`): every days-based rule finds it due from its first
/// second; the kubelet rotates it at 7-9 minutes, the agent only after 9.
#[test]
fn a_short_lived_client_certificate_is_left_to_the_kubelet_until_its_deadline() {
    let short = |remaining| Validity {
        lifetime: Duration::minutes(10),
        remaining,
    };
    for remaining in [Duration::minutes(8), Duration::seconds(90)] {
        let (c, renewed) = due_and_renewed(short(remaining));
        assert_eq!(c["due"], false, "{remaining} left: {c:#}");
        assert_eq!(c["due_reason"], "kubelet-rotates", "{c:#}");
        assert!(!renewed, "{remaining} left: a pass replaced it");
    }
    let (c, renewed) = due_and_renewed(short(Duration::seconds(30)));
    assert_eq!(c["due_reason"], "kubelet-overdue-90-percent", "{c:#}");
    assert!(
        renewed,
        "past the kubelet's deadline the safety net renews it"
    );
    let (c, renewed) = due_and_renewed(short(Duration::seconds(-30)));
    assert_eq!(c["due_reason"], "expired", "{c:#}");
    assert!(renewed);
}

#[test]
fn without_rotate_certificates_the_agent_keeps_the_window() {
    for rotate in [None, Some(false)] {
        let mut spec = NodeSpec::control_plane(now()).with_kubelet_config(KubeletConfigSpec {
            rotate_certificates: rotate,
            server_tls_bootstrap: false,
        });
        spec.kubelet_client_validity = Validity::days(91, Duration::days(25));
        let d = node(&spec);
        let (v, _) = status_json(d.path());
        let c = cert(&v, CLIENT);
        assert_eq!(c["due"], true, "{rotate:?}: {c:#}");
        assert_eq!(c["due_reason"], "under-30-days", "{rotate:?}");
    }
    // No config.yaml at all: the same.
    let mut spec = NodeSpec::control_plane(now());
    spec.kubelet_client_validity = Validity::days(91, Duration::days(25));
    let d = node(&spec);
    let (v, _) = status_json(d.path());
    assert_eq!(cert(&v, CLIENT)["due_reason"], "under-30-days");
}

fn write_config(root: &Path, text: &str) {
    let p = host(root, "/etc/cert-rotator/config.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn the_kubelet_section_gives_the_certificate_back_to_the_agent() {
    let d = node(&kubeadm_node(Validity::days(91, Duration::days(25))));
    write_config(d.path(), "[kubelet]\nclient_rotation = \"agent\"\n");
    let (v, _) = status_json(d.path());
    assert_eq!(cert(&v, CLIENT)["due_reason"], "under-30-days");
    write_config(d.path(), "[kubelet]\nsafety_net_fraction = 0.5\n");
    let (v, _) = status_json(d.path());
    assert_eq!(cert(&v, CLIENT)["due_reason"], "kubelet-overdue-50-percent");
    // A fraction outside (0, 1] is refused, naming the key and the file.
    write_config(d.path(), "[kubelet]\nsafety_net_fraction = 1.5\n");
    let out = run(d.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("kubelet.safety_net_fraction") && all.contains("config.toml"),
        "{all}"
    );
}

fn bootstrap_node(remaining: Duration) -> NodeSpec {
    NodeSpec::control_plane(now())
        .with_kubelet_config(KubeletConfigSpec {
            rotate_certificates: Some(true),
            server_tls_bootstrap: true,
        })
        .with("kubelet-server-current.pem", Validity::days(365, remaining))
}

#[test]
fn a_bootstrapped_serving_certificate_is_a_target_the_kubelet_owns() {
    let d = node(&bootstrap_node(Duration::days(300)));
    let (v, code) = status_json(d.path());
    assert_eq!(code, 0, "{v:#}");
    let s = cert(&v, "kubelet-server-current.pem");
    assert_eq!(s["kind"], "kubelet-server", "{s:#}");
    assert_eq!(s["signer"], "ca", "{s:#}");
    assert_eq!(s["due_reason"], "kubelet-rotates", "{s:#}");
    assert_eq!(cert(&v, "kubelet.crt")["missing"], true);
    // Past its deadline the agent renews it from the cluster CA, in the kubelet's
    // scheme, with the node's names and the serving usage.
    let d = node(&bootstrap_node(Duration::days(20)));
    let (v, _) = status_json(d.path());
    let s = cert(&v, "kubelet-server-current.pem");
    assert_eq!(s["due_reason"], "kubelet-overdue-90-percent", "{s:#}");
    let old_serial = s["serial"].clone();
    let out = run(d.path(), &["run"]);
    assert!(out.status.success(), "{}", text(&out));
    let link = host(d.path(), "/var/lib/kubelet/pki/kubelet-server-current.pem");
    let target = std::fs::read_link(&link).unwrap();
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("kubelet-server-2"), "{name}");
    let file = host(d.path(), target.to_str().unwrap());
    openssl(&[
        "verify",
        "-CAfile",
        host(d.path(), "/etc/kubernetes/pki/ca.crt")
            .to_str()
            .unwrap(),
        file.to_str().unwrap(),
    ]);
    let ext = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-in",
        file.to_str().unwrap(),
    ]);
    assert!(ext.contains("DNS:cp-1, IP Address:10.0.0.10"), "{ext}");
    assert!(ext.contains("TLS Web Server Authentication"), "{ext}");
    let (v, _) = status_json(d.path());
    let s = cert(&v, "kubelet-server-current.pem");
    assert_ne!(s["serial"], old_serial);
    assert_eq!(s["due"], false);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

use std::os::unix::fs::PermissionsExt;

/// Node files, the agent's own state left out.
fn node_files(root: &Path) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    snapshot(root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("var/lib/cert-rotator"))
        .collect()
}

#[test]
fn a_pass_while_kubeadm_upgrades_changes_nothing_and_says_why() {
    let spec = NodeSpec::control_plane(now())
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)))
        .with("apiserver", Validity::days(365, Duration::days(20)));
    let d = node(&spec);
    let r = d.path();
    let tmp = host(
        r,
        "/etc/kubernetes/tmp/kubeadm-upgraded-manifests1284917823",
    );
    std::fs::create_dir_all(&tmp).unwrap();
    let before = node_files(r);
    for args in [
        &["run"][..],
        &["renew-all"][..],
        &["renew", "apiserver"][..],
    ] {
        let out = run(r, args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {all}");
        assert!(
            all.contains("kubeadm is at work on this node: /etc/kubernetes/tmp/kubeadm-upgraded-manifests1284917823"),
            "{args:?}: {all}"
        );
        assert!(all.contains("nothing changed"), "{args:?}: {all}");
        assert!(!all.contains("renewed"), "{args:?}: {all}");
        assert_eq!(node_files(r), before, "{args:?} changed the node:\n{all}");
    }
    // The pass record and the metrics say the pass was skipped, and why.
    let last: serde_json::Value = serde_json::from_slice(
        &std::fs::read(host(r, "/var/lib/cert-rotator/last-pass.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(last["skipped"], "kubeadm", "{last:#}");
    assert_eq!(last["renewed"], 0);
    let metrics =
        std::fs::read_to_string(host(r, "/var/lib/cert-rotator/metrics/cert-rotator.prom"))
            .unwrap();
    assert!(
        metrics.contains("cert_rotator_pass_skipped{reason=\"kubeadm\"} 1\n"),
        "{metrics}"
    );
    // kubeadm done: its directory gone, the next pass re-reads the node and renews.
    std::fs::remove_dir(&tmp).unwrap();
    let out = run(r, &["run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("renewed (2)"), "{}", text(&out));
    let last: serde_json::Value = serde_json::from_slice(
        &std::fs::read(host(r, "/var/lib/cert-rotator/last-pass.json")).unwrap(),
    )
    .unwrap();
    assert!(last.get("skipped").is_none(), "{last:#}");
}

#[test]
fn a_backup_kubeadm_kept_long_ago_does_not_stop_renewals() {
    let spec = NodeSpec::control_plane(now())
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)));
    let d = node(&spec);
    let r = d.path();
    let old = host(
        r,
        "/etc/kubernetes/tmp/kubeadm-backup-etcd-2025-01-01-00-00-00",
    );
    std::fs::create_dir_all(&old).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let out = run(r, &["run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("kubeadm is at work"), "{}", text(&out));
    assert!(text(&out).contains("renewed (1)"), "{}", text(&out));
}
